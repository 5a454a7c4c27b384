//! Races across separate connections, as separate processes would run them: 64 stores on one
//! schema, each on a pool of one connection (so 64 server backends), opened all at once (the
//! migration runs 64 times concurrently and must apply once), each driven by its own
//! `Sessions`, released together behind a barrier.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use leasehold::{
    CapPolicy, Context, CreateOptions, Error, Limit, Policy, Sessions, Store, Subject, SubjectCap,
};
use leasehold_postgres::PostgresStore;
use tokio::sync::Barrier;

const N: usize = 64;

/// `N` stores on one fresh schema, each with its own connection, opened concurrently.
async fn stores(schema: &str) -> Vec<PostgresStore> {
    let url = common::url();
    let opens = (0..N).map(|_| {
        let (url, schema) = (url.clone(), schema.to_owned());
        tokio::spawn(async move {
            let pool = common::pool(&url, 1).await?;
            PostgresStore::open(pool, &schema)
                .await
                .map_err(|e| common::unreachable(&url, e))
        })
    });
    let mut out = Vec::new();
    for r in futures::future::join_all(opens).await {
        match r.expect("open task panicked") {
            Ok(s) => out.push(s),
            Err(e) => panic!("{e}"),
        }
    }
    out
}

/// Runs `f(i, sessions_i)` on every store at once (a barrier releases them together).
async fn race<T, F, Fut>(all: &[Arc<Sessions<PostgresStore>>], f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize, Arc<Sessions<PostgresStore>>) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(Barrier::new(all.len()));
    let tasks = all.iter().enumerate().map(|(i, s)| {
        let b = barrier.clone();
        let fut = f(i, s.clone());
        tokio::spawn(async move {
            b.wait().await;
            fut.await
        })
    });
    futures::future::join_all(tasks)
        .await
        .into_iter()
        .map(|r| r.expect("race task panicked"))
        .collect()
}

fn sessions(stores: &[PostgresStore], policy: &Policy) -> Vec<Arc<Sessions<PostgresStore>>> {
    stores
        .iter()
        .map(|s| Arc::new(Sessions::new(s.clone(), policy.clone()).expect("policy")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn races_across_64_connections() {
    let schema = common::fresh_schema("race");
    let _drop = common::DropSchema {
        url: common::url(),
        schema: schema.clone(),
    };
    let stores = stores(&schema).await;
    let backends: HashSet<i32> = {
        let mut set = HashSet::new();
        for s in &stores {
            let pid: i32 = sqlx::query_scalar("SELECT pg_backend_pid()")
                .fetch_one(s.pool())
                .await
                .unwrap();
            set.insert(pid);
        }
        set
    };
    assert_eq!(backends.len(), N, "each store has a connection of its own");
    let applied: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM \"{schema}\".schema_migrations"
    ))
    .fetch_one(stores[0].pool())
    .await
    .unwrap();
    assert_eq!(applied, i64::from(leasehold_postgres::SCHEMA_VERSION));

    // 64 creators under a cap of 5 (reject): exactly 5.
    let capped = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 5,
            on_full: CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let all = sessions(&stores, &capped);
    let alice = Subject::new("alice").unwrap();
    let results = race(&all, |_, s| {
        let alice = alice.clone();
        async move { s.create(&alice, CreateOptions::default()).await }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let refused = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::LimitReached {
                    limit: Limit::SubjectSessions
                })
            )
        })
        .count();
    assert_eq!((ok, refused), (5, 59), "{results:?}");
    let now = leasehold::Clock::now(&leasehold::SystemClock);
    assert_eq!(
        stores[0]
            .count_live(&leasehold::Scope::Subject(alice.clone()), now)
            .await
            .unwrap(),
        5
    );

    // 64 refreshers of one token: one successor, the same for all.
    let plain = Policy::default();
    let all = sessions(&stores, &plain);
    let bob = Subject::new("bob").unwrap();
    let c = all[0].create(&bob, CreateOptions::default()).await.unwrap();
    let token = c.token.expose_secret().to_owned();
    let results = race(&all, |_, s| {
        let token = token.clone();
        async move {
            s.refresh(&token, &Context::none())
                .await
                .map(|r| r.token.expose_secret().to_owned())
        }
    })
    .await;
    let errors: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    assert!(errors.is_empty(), "{errors:?}");
    let distinct: HashSet<_> = results.iter().flatten().collect();
    assert_eq!(distinct.len(), 1, "one successor");
    let stored = stores[0].load_session(&c.session.id).await.unwrap();
    assert_eq!(stored.record.unwrap().credential.generation, 1);

    // 64 redeemers of one ticket: one.
    let minted = all[0]
        .mint_ticket(c.token.expose_secret(), &Context::none())
        .await;
    // The original token may be past its rotation: mint from the successor.
    let minted = match minted {
        Ok(m) => m,
        Err(_) => {
            let t = distinct.iter().next().unwrap();
            all[0]
                .mint_ticket(t.as_str(), &Context::none())
                .await
                .unwrap()
        }
    };
    let ticket = minted.ticket.expose_secret().to_owned();
    let results = race(&all, |_, s| {
        let ticket = ticket.clone();
        async move { s.redeem_ticket(&ticket).await }
    })
    .await;
    let redeemed = results.iter().filter(|r| r.is_ok()).count();
    let missing = results
        .iter()
        .filter(|r| matches!(r, Err(Error::NotAuthenticated)))
        .count();
    assert_eq!((redeemed, missing), (1, 63), "{results:?}");

    for s in stores {
        s.pool().close().await;
    }
}
