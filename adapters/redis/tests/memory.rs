//! Memory per session, measured (ignored by default: it prints figures, asserts no size):
//! `cargo test -p leasehold-redis --test memory -- --ignored --nocapture`.
//!
//! On a throwaway server: N sessions with 64-byte subjects under the default policy, then
//! `MEMORY USAGE key SAMPLES 0` summed per kind of key (record, subject index, creation log,
//! global index, …) and divided by N, and the server's `used_memory` growth per session as a
//! cross-check. One, four and ten sessions per subject, with and without the global index
//! (`RedisConfig::global_index`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use leasehold::{Policy, Sessions, Subject};
use leasehold_redis::{RedisConfig, RedisStore};
use support::Server;

fn used_memory(s: &Server) -> i64 {
    s.info("memory", "used_memory").unwrap().parse().unwrap()
}

async fn measure(server: &Server, subjects: usize, per_subject: usize, global_index: bool) {
    // The default prefix (key names count), on an emptied throwaway server.
    server.cli(&["flushall"]);
    let prefix = "leasehold".to_string();
    let config = RedisConfig::new(server.url())
        .prefix(prefix.clone())
        .global_index(global_index);
    let store = RedisStore::open(config).await.unwrap();
    let s = Sessions::new(store, Policy::default()).unwrap();
    let before = used_memory(server);
    for i in 0..subjects {
        // 64 bytes
        let sub = Subject::new(format!("{i:0>8}-user@example.org-{}", "x".repeat(38))).unwrap();
        assert_eq!(sub.as_str().len(), 64);
        for _ in 0..per_subject {
            s.create(&sub, Default::default()).await.unwrap();
        }
    }
    let after = used_memory(server);
    let n = (subjects * per_subject) as f64;
    let client = redis::Client::open(server.url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{prefix}:*"))
        .query_async(&mut c)
        .await
        .unwrap();
    let mut by_kind: BTreeMap<String, (usize, i64)> = BTreeMap::new();
    for k in &keys {
        let bytes: i64 = redis::cmd("MEMORY")
            .arg("USAGE")
            .arg(k)
            .arg("SAMPLES")
            .arg(0)
            .query_async(&mut c)
            .await
            .unwrap();
        let kind = k[prefix.len() + 1..].split(':').next().unwrap().to_string();
        let e = by_kind.entry(kind).or_default();
        e.0 += 1;
        e.1 += bytes;
    }
    let total: i64 = by_kind.values().map(|v| v.1).sum();
    let record = keys
        .iter()
        .find(|k| k[prefix.len()..].starts_with(":s:"))
        .unwrap();
    let len: i64 = redis::cmd("STRLEN")
        .arg(record)
        .query_async(&mut c)
        .await
        .unwrap();
    println!(
        "a record: {len} B value under a {} B key name ({record})",
        record.len()
    );
    let index = if global_index {
        "with the global index"
    } else {
        "without the global index"
    };
    println!("{subjects} subject(s) × {per_subject} session(s), 64-byte subjects, {index}:");
    for (kind, (count, bytes)) in &by_kind {
        println!(
            "  {kind:>2}: {count:>5} key(s), {bytes:>8} B, {:>6.1} B per session",
            *bytes as f64 / n
        );
    }
    println!(
        "  MEMORY USAGE total {:.1} B per session; used_memory grew {:.1} B per session",
        total as f64 / n,
        (after - before) as f64 / n
    );
}

#[test]
#[ignore = "a measurement: prints figures"]
fn memory_per_session() {
    let server = Server::start(&[]).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for global_index in [true, false] {
            measure(&server, 2000, 1, global_index).await;
            measure(&server, 2500, 4, global_index).await;
            measure(&server, 200, 10, global_index).await;
        }
    });
}
