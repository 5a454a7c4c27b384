//! Connections killed under the store (`pg_terminate_backend`), between calls and in the
//! middle of them: every failure is a typed outcome-unknown error (`Unavailable` or `Timeout`),
//! the pool replaces the dead connections by itself, and no revocation that was acknowledged
//! is lost.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use leasehold::{
    Clock, Context, CreateOptions, Policy, SeededEntropy, Sessions, Store, StoreError, Subject,
    SystemClock,
};
use leasehold_postgres::PostgresStore;

const ROUNDS: usize = 60;

/// Terminates every backend of `app` (an application_name); how many.
async fn kill(admin: &sqlx::PgPool, app: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE application_name = $1) AS k",
    )
    .bind(app)
    .fetch_one(admin)
    .await
    .unwrap()
}

fn typed(e: &StoreError) -> bool {
    matches!(e, StoreError::Unavailable(_) | StoreError::Timeout)
}

/// Whether the killer is still at work: while it is, a call may fail any number of times.
static KILLING: AtomicBool = AtomicBool::new(true);

/// Retries `op` until it succeeds, checking that every failure is typed: for as long as the
/// killer runs (it is bounded), then at most 50 more tries, which is the recovery asserted.
async fn until_ok<T, F, Fut>(what: &str, errors: &mut Vec<String>, mut op: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, StoreError>>,
{
    let mut after_killer = 0;
    loop {
        match op().await {
            Ok(v) => return v,
            Err(e) => {
                assert!(typed(&e), "{what}: an untyped failure {e:?}");
                if errors.len() < 1000 {
                    errors.push(format!("{what}: {e}"));
                }
            }
        }
        if !KILLING.load(Ordering::Relaxed) {
            after_killer += 1;
            assert!(
                after_killer < 50,
                "{what}: the pool did not recover within 50 tries once the killer stopped"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_connections_give_typed_errors_and_lose_no_acknowledged_revoke() {
    let url = common::url();
    let schema = common::fresh_schema("fault");
    let _drop = common::DropSchema {
        url: url.clone(),
        schema: schema.clone(),
    };
    let app = schema.clone();
    let options = leasehold_postgres::recommended_connect_options(&url)
        .map_err(|e| common::unreachable(&url, e))
        .unwrap()
        .application_name(&app);
    let pool = leasehold_postgres::recommended_pool_options()
        .max_connections(4)
        .connect_with(options)
        .await
        .map_err(|e| common::unreachable(&url, e))
        .unwrap();
    let store = PostgresStore::open(pool, &schema).await.unwrap();
    let admin = common::pool(&url, 1).await.unwrap();
    let clock = leasehold::ManualClock::new(SystemClock.now());
    let s = Sessions::new(store.clone(), Policy::default())
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(9));

    // A killer in the background, terminating the store's backends every 7 ms (bounded).
    let stop = Arc::new(AtomicBool::new(false));
    let killer = {
        let (admin, app, stop) = (admin.clone(), app.clone(), stop.clone());
        tokio::spawn(async move {
            let mut killed = 0;
            for _ in 0..400 {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                killed += kill(&admin, &app).await;
                tokio::time::sleep(Duration::from_millis(7)).await;
            }
            KILLING.store(false, Ordering::Relaxed);
            killed
        })
    };

    let mut errors = Vec::new();
    let mut revoked = Vec::new();
    for i in 0..ROUNDS {
        let who = Subject::new(format!("user-{i}")).unwrap();
        // A create whose reply is lost may have been applied: its retry is a new session, and
        // the revocation below must end both.
        let created = until_ok("create", &mut errors, || async {
            s.create(&who, CreateOptions::default())
                .await
                .map_err(|e| match e {
                    leasehold::Error::StoreUnavailable(e) => e,
                    other => panic!("create: {other:?}"),
                })
        })
        .await;
        if i % 5 == 0 {
            // Between calls: the next statement meets a dead connection.
            kill(&admin, &app).await;
        }
        let now = clock.now();
        until_ok("revoke_subject", &mut errors, || {
            store.revoke_subject(&who, now)
        })
        .await;
        revoked.push((who, created));
    }
    stop.store(true, Ordering::Relaxed);
    let killed = killer.await.unwrap();
    assert!(killed > 0, "the killer terminated no backend");
    assert!(!errors.is_empty(), "no call met a killed connection");

    // A fresh pool on the same schema: every acknowledged revocation is there.
    let check = PostgresStore::open(common::pool(&url, 2).await.unwrap(), &schema)
        .await
        .unwrap();
    let checker = Sessions::new(check.clone(), Policy::default())
        .unwrap()
        .with_clock(clock.clone());
    for (who, created) in &revoked {
        for r in check.list_subject(who).await.unwrap() {
            assert!(
                r.is_tombstone(),
                "{who}: a session outlived its acknowledged revoke"
            );
        }
        assert!(
            checker
                .validate(created.token.expose_secret(), &Context::none())
                .await
                .is_err(),
            "{who}: a revoked session validates"
        );
    }
    assert_eq!(
        check
            .count_live(&leasehold::Scope::All, clock.now())
            .await
            .unwrap(),
        0
    );
    eprintln!(
        "{} typed failures over {ROUNDS} rounds, {killed} backends killed in the background",
        errors.len()
    );
    check.pool().close().await;
    store.pool().close().await;
    admin.close().await;
}
