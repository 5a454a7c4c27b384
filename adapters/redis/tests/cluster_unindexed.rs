//! The shared conformance suite against `RedisStore` without the global index
//! (`RedisConfig::global_index(false)`) on a 3-node Redis Cluster the test starts on free
//! loopback ports (stopped when this test binary exits): `Scope::All` walks the records of
//! every node, and the marker of unindexed sessions lives in the global index's slot, another
//! slot than the sessions'. Plus the index rebuilt when the prefix is reopened with it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

leasehold_conformance::conformance_tests!(
    leasehold_conformance::fallible(|| async {
        let url = support::cluster_url()?;
        let (store, cleanup) = support::open_with(&url, |c| c.global_index(false)).await?;
        if !store.is_cluster() {
            return Err("expected a Cluster connection".to_string());
        }
        Ok::<_, String>(leasehold_conformance::Guarded::new(store, cleanup))
    }),
    capabilities = [
        native_expiry,
        raw_dump,
        multi_process,
        server_clock,
        sharded,
        no_global_index
    ],
);

/// Sessions of 40 subjects (slots on every node) created without the index: listed and counted
/// from every node, then indexed when the prefix is reopened with the index, so a global cap
/// counts them.
#[test]
fn sessions_created_without_the_index_on_every_node_are_listed_then_indexed() {
    use leasehold::{
        CapPolicy, Clock, GlobalCap, Limit, ManualClock, Policy, Scope, Sessions, Store, Subject,
        SystemClock,
    };
    use leasehold_redis::{RedisConfig, RedisStore};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = support::cluster_url().unwrap();
        let (off, _cleanup) = support::open_with(&url, |c| c.global_index(false))
            .await
            .unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let s = Sessions::new(off.clone(), Policy::default())
            .unwrap()
            .with_clock(clock.clone());
        for i in 0..40 {
            s.create(
                &Subject::new(format!("user-{i}")).unwrap(),
                Default::default(),
            )
            .await
            .unwrap();
        }
        assert_eq!(s.count(&Scope::All).await.unwrap(), 40);
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = off
                .list_sessions(&Scope::All, after.as_ref(), 7)
                .await
                .unwrap();
            seen.extend(page.records.iter().map(|r| r.id));
            match page.next {
                Some(n) => after = Some(n),
                None => break,
            }
        }
        let mut sorted = seen.clone();
        sorted.sort();
        sorted.dedup();
        assert_eq!(
            (seen.len(), sorted.len()),
            (40, 40),
            "each record once, in id order"
        );
        assert_eq!(seen, sorted);

        let on = RedisStore::open(RedisConfig::new(&url).prefix(off.prefix()))
            .await
            .unwrap();
        let capped = Policy::builder()
            .global_cap(Some(GlobalCap {
                max: 40,
                on_full: CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(true)
            .build()
            .unwrap();
        let s = Sessions::new(on, capped).unwrap().with_clock(clock);
        let r = s
            .create(&Subject::new("late").unwrap(), Default::default())
            .await;
        assert!(
            matches!(
                r,
                Err(leasehold::Error::LimitReached {
                    limit: Limit::GlobalSessions
                })
            ),
            "{r:?}"
        );
    });
}
