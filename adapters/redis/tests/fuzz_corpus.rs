//! Replays the committed `redis_values` fuzz corpus (and any regressions) through the same entry
//! point the fuzz target calls, so stable `cargo test` checks every input found so far.
//!
//! The seeds are real stored bytes: `write_seed_corpus` (ignored; needs the standalone server)
//! creates a session on a resource, rotates it, mints a ticket and acquires a slot, then writes
//! each stored value, key name and reservation member behind its selector byte, plus
//! truncated and extended variants:
//! `LEASEHOLD_WRITE_SEEDS=1 cargo test -p leasehold-redis --test fuzz_corpus -- --ignored`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::path::{Path, PathBuf};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz")
}

fn replay(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        leasehold_redis::fuzzing::decode_stored(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn redis_values_corpus_replays_clean() {
    let corpus = fuzz_dir().join("corpus/redis_values");
    let n = replay(&corpus);
    assert!(n >= 10, "corpus {} has only {n} inputs", corpus.display());
    let regressions = fuzz_dir().join("regressions/redis_values");
    if regressions.is_dir() {
        replay(&regressions);
    }
}

#[test]
#[ignore = "writes the seed corpus from a live server"]
fn write_seed_corpus() {
    use leasehold::{CreateOptions, Policy, Resource, Sessions, Subject};
    if std::env::var_os("LEASEHOLD_WRITE_SEEDS").is_none() {
        return;
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let policy = Policy::builder()
            .max_slots_per_resource(Some(4))
            .build()
            .unwrap();
        let s = Sessions::new(store.clone(), policy).unwrap();
        let res = Resource::new("printer-7").unwrap();
        let made = s
            .create(
                &Subject::new("alice@example.org").unwrap(),
                CreateOptions {
                    resource: Some(res.clone()),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        let r = s
            .refresh(made.token.expose_secret(), &Default::default())
            .await
            .unwrap();
        s.mint_ticket(r.token.expose_secret(), &Default::default())
            .await
            .unwrap();
        s.acquire_slot(&made.session.id, Some(&res)).await.unwrap();
        let gone = s
            .create(&Subject::new("bob").unwrap(), Default::default())
            .await
            .unwrap();
        s.logout(gone.token.expose_secret()).await.unwrap();

        let client = redis::Client::open(support::url()).unwrap();
        let mut c = client.get_multiplexed_async_connection().await.unwrap();
        let prefix = store.prefix().to_string();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{prefix}:*"))
            .query_async(&mut c)
            .await
            .unwrap();
        let dir = fuzz_dir().join("corpus/redis_values");
        std::fs::create_dir_all(&dir).unwrap();
        let write = |name: String, which: u8, bytes: &[u8]| {
            let mut v = vec![which];
            v.extend_from_slice(bytes);
            std::fs::write(dir.join(format!("seed-{name}")), &v).unwrap();
            if !bytes.is_empty() {
                v.pop();
                std::fs::write(dir.join(format!("seed-{name}-truncated")), &v).unwrap();
                v.extend_from_slice(&[bytes[bytes.len() - 1], 0]);
                std::fs::write(dir.join(format!("seed-{name}-trailing")), &v).unwrap();
            }
        };
        for k in &keys {
            let rest = &k[prefix.len() + 1..];
            let kind = rest.split(':').next().unwrap();
            // Key names under the prefix the target uses ("lh").
            write(format!("key-{kind}"), 3, format!("lh:{rest}").as_bytes());
            let which = match kind {
                "s" => 0,
                "t" => 1,
                "l" => 2,
                "lr" => {
                    let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
                        .arg(k)
                        .arg(0)
                        .arg(-1)
                        .query_async(&mut c)
                        .await
                        .unwrap();
                    write("reservation".into(), 4, &members[0]);
                    continue;
                }
                _ => continue,
            };
            let v: Vec<u8> = redis::cmd("GET").arg(k).query_async(&mut c).await.unwrap();
            let tomb = if which == 0 && k.contains(&hex(gone.session.id.as_bytes())) {
                "-tombstone"
            } else {
                ""
            };
            write(format!("value-{kind}{tomb}"), which, &v);
        }
    });
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}
