//! Mixed group operations across 32 separate connections on one schema — evicting creates under
//! a subject cap and an evicting global cap (which tombstone other subjects' sessions), with and
//! without resources, `revoke_subject`, `revoke_resource`, capped slot acquisitions and reaps —
//! finish with no error, no deadlock (the adapter retries a deadlock silently, so it counts
//! them: the count must stay 0), and the caps hold at the end.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::{Arc, Mutex};

use leasehold::{
    CapPolicy, Clock, CreateOptions, Error, GlobalCap, Policy, Resource, Scope, SessionId,
    Sessions, Store, Subject, SubjectCap, SystemClock,
};
use leasehold_postgres::PostgresStore;

/// Sessions created so far, with their resource (slot acquisitions pick from them).
type Created = Arc<Mutex<Vec<(SessionId, Option<Resource>)>>>;

const CONNECTIONS: usize = 32;
const STEPS: usize = 25;

/// A small deterministic generator (no dependency): the test is the same on every run.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self, n: u64) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (self.0 >> 33) % n
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn mixed_group_operations_never_deadlock() {
    let url = common::url();
    let schema = common::fresh_schema("mixed");
    let _drop = common::DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let mut stores = Vec::new();
    for _ in 0..CONNECTIONS {
        let pool = common::pool(&url, 1).await.unwrap();
        stores.push(
            PostgresStore::open(pool, &schema)
                .await
                .map_err(|e| common::unreachable(&url, e))
                .unwrap(),
        );
    }
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 3,
            on_full: CapPolicy::EvictOldest,
        }))
        .global_cap(Some(GlobalCap {
            max: 10,
            on_full: CapPolicy::EvictOldest,
        }))
        .max_slots_per_resource(Some(2))
        .build()
        .unwrap();
    let ids: Created = Arc::default();
    let barrier = Arc::new(tokio::sync::Barrier::new(CONNECTIONS));
    let tasks = stores.iter().enumerate().map(|(i, store)| {
        let s = Sessions::new(store.clone(), policy.clone()).unwrap();
        let (ids, barrier) = (ids.clone(), barrier.clone());
        tokio::spawn(async move {
            let mut rng = Lcg(i as u64 + 1);
            let mut failures = Vec::new();
            barrier.wait().await;
            for _ in 0..STEPS {
                let who = Subject::new(format!("user-{}", rng.next(4))).unwrap();
                let res = Resource::new(format!("res-{}", rng.next(4))).unwrap();
                let outcome: Result<(), Error> = match rng.next(10) {
                    0..=4 => {
                        let opts = CreateOptions {
                            resource: (rng.next(2) == 0).then(|| res.clone()),
                            ..CreateOptions::default()
                        };
                        let r = opts.resource.clone();
                        s.create(&who, opts).await.map(|c| {
                            ids.lock().unwrap().push((c.session.id, r));
                        })
                    }
                    5 => s.revoke_subject(&who).await.map(drop),
                    6 => s.revoke_resource(&res).await.map(drop),
                    7 | 8 => {
                        let pick = {
                            let ids = ids.lock().unwrap();
                            (!ids.is_empty())
                                .then(|| ids[rng.next(ids.len() as u64) as usize].clone())
                        };
                        match pick {
                            Some((id, r)) => match s.acquire_slot(&id, r.as_ref()).await {
                                // Outcomes by design: a full resource, an ended session.
                                Err(Error::LimitReached { .. } | Error::SlotLost) => Ok(()),
                                Err(e) if e.is_unauthenticated() => Ok(()),
                                other => other.map(drop),
                            },
                            None => Ok(()),
                        }
                    }
                    _ => s.reap(100).await.map(drop),
                };
                if let Err(e) = outcome {
                    failures.push(format!("{e:?}"));
                }
            }
            failures
        })
    });
    let failures: Vec<String> = futures::future::join_all(tasks)
        .await
        .into_iter()
        .flat_map(|r| r.expect("task panicked"))
        .collect();
    assert!(failures.is_empty(), "{failures:?}");
    let retried: u64 = stores.iter().map(PostgresStore::statements_retried).sum();
    assert_eq!(
        retried, 0,
        "deadlocks or serialization failures were retried"
    );

    let now = SystemClock.now();
    let store = &stores[0];
    assert!(store.count_live(&Scope::All, now).await.unwrap() <= 10);
    for u in 0..4 {
        let who = Subject::new(format!("user-{u}")).unwrap();
        assert!(store.count_live(&Scope::Subject(who), now).await.unwrap() <= 3);
    }
    for s in stores {
        s.pool().close().await;
    }
}
