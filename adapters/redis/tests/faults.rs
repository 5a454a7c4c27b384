//! Faults on real, throwaway servers (never the shared one): the adapter's connections killed
//! mid-run (`CLIENT KILL`) and a crash + restart of a server with `appendonly yes`,
//! `appendfsync always`. Every failure must be a typed `StoreUnavailable(Unavailable|Timeout)`
//! (never a panic, never a session granted), the same store must recover by itself, and after
//! the restart every acknowledged revocation, rotation and ticket redemption still holds.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leasehold::{Error, Policy, Sessions, StoreError, Subject};
use leasehold_redis::{RedisConfig, RedisStore};
use support::{Server, rt};

/// The only errors a fault may produce.
fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::StoreUnavailable(StoreError::Unavailable(_) | StoreError::Timeout)
    )
}

async fn open(server: &Server) -> Sessions<RedisStore> {
    let store = RedisStore::open(
        RedisConfig::new(server.url())
            .prefix(support::fresh_prefix())
            .timeout(Duration::from_millis(500)),
    )
    .await
    .unwrap();
    // No grace or orphan window: a rotated-out token is reuse at once.
    let policy = Policy::builder()
        .grace_window(Duration::ZERO)
        .orphan_window(Duration::ZERO)
        .build()
        .unwrap();
    Sessions::new(store, policy).unwrap()
}

/// Retries `validate` of a live token until the store answers again (bounded): the store
/// recovers by itself, without being reopened. Returns the number of failed attempts, each of
/// which must be a typed error.
async fn until_recovered(s: &Sessions<RedisStore>, token: &str) -> usize {
    for failed in 0..200 {
        match s.validate(token, &Default::default()).await {
            Ok(_) => return failed,
            Err(e) => assert!(typed(&e), "untyped error while reconnecting: {e:?}"),
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("the store did not recover by itself");
}

#[test]
fn client_kill_mid_run_gives_typed_errors_and_the_store_recovers() {
    let server = Server::start(&[]).unwrap();
    rt().block_on(async {
        let s = Arc::new(open(&server).await);
        let anchor = s
            .create(&Subject::new("anchor").unwrap(), Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        let done = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (s, done) = (s.clone(), done.clone());
            tokio::spawn(async move {
                // (acknowledged creations with their tokens, typed failures)
                let mut acked = Vec::new();
                let mut failures = 0;
                for i in 0..300 {
                    let sub = Subject::new(format!("u{i}")).unwrap();
                    match s.create(&sub, Default::default()).await {
                        Ok(c) => acked.push((c.session.id, c.token.expose_secret().to_string())),
                        Err(e) => {
                            assert!(typed(&e), "untyped error on create: {e:?}");
                            failures += 1;
                        }
                    }
                    if let Some((id, t)) = acked.last() {
                        match s.validate(t, &Default::default()).await {
                            Ok(v) => assert_eq!(v.session.id, *id),
                            Err(e) => {
                                assert!(typed(&e), "untyped error on validate: {e:?}");
                                failures += 1;
                            }
                        }
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                (acked, failures)
            })
        };
        // Kill every normal client connection (the adapter's) three times during the run,
        // each once the worker has made progress since the last kill.
        let mut killed = 0;
        for at in [50, 120, 190] {
            while done.load(Ordering::Relaxed) < at {
                tokio::task::yield_now().await;
            }
            let n = server.cli(&["client", "kill", "type", "normal"]);
            killed += n.trim().parse::<u32>().unwrap_or(0);
        }
        let (acked, failures) = worker.await.unwrap();
        assert!(killed >= 3, "CLIENT KILL closed {killed} connections");
        assert!(failures >= 1, "no request met a killed connection");
        eprintln!(
            "CLIENT KILL ×3: {failures} typed failures, {} acknowledged creations of 300",
            acked.len()
        );
        // Recovered: every acknowledged creation validates on the same store.
        until_recovered(&s, &anchor).await;
        for (id, t) in &acked {
            assert_eq!(
                s.validate(t, &Default::default()).await.unwrap().session.id,
                *id
            );
        }
        assert!(acked.len() >= 250, "{} acknowledged", acked.len());
    });
}

#[test]
fn a_crash_and_restart_lose_no_acknowledged_revocation_and_resurrect_nothing() {
    let server = Server::start(&["--appendonly", "yes", "--appendfsync", "always"]).unwrap();
    rt().block_on(async {
        let s = Arc::new(open(&server).await);
        let mut tokens = Vec::new();
        // Enough sessions that the worker below is still logging out when the SIGKILL lands
        // (it is sent by a child process once 15 logouts are acknowledged; with 40 sessions a
        // fast store could finish them all first on a loaded machine).
        for i in 0..400 {
            let c = s
                .create(&Subject::new(format!("u{i}")).unwrap(), Default::default())
                .await
                .unwrap();
            tokens.push(c.token.expose_secret().to_string());
        }
        let keeper = s
            .create(&Subject::new("keeper").unwrap(), Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        // A rotation and a ticket redemption, acknowledged before the crash.
        let rotated_old = tokens.pop().unwrap();
        let rotated_new = s
            .refresh(&rotated_old, &Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        let ticket = s
            .mint_ticket(&keeper, &Default::default())
            .await
            .unwrap()
            .ticket
            .expose_secret()
            .to_string();
        s.redeem_ticket(&ticket).await.unwrap();

        // Log out one session after another; crash the server once 15 logouts are
        // acknowledged, while the worker keeps going.
        let acked_n = Arc::new(AtomicUsize::new(0));
        let worker = {
            let (s, acked_n, tokens) = (s.clone(), acked_n.clone(), tokens.clone());
            tokio::spawn(async move {
                let (mut acked, mut failed) = (Vec::new(), Vec::new());
                for t in tokens {
                    match s.logout(&t).await {
                        Ok(_) => {
                            acked.push(t);
                            acked_n.fetch_add(1, Ordering::Relaxed);
                        }
                        Err(e) => {
                            assert!(typed(&e), "untyped error on logout: {e:?}");
                            failed.push(t);
                            if failed.len() >= 3 {
                                break;
                            }
                        }
                    }
                }
                (acked, failed)
            })
        };
        while acked_n.load(Ordering::Relaxed) < 15 {
            tokio::task::yield_now().await;
        }
        server.crash();
        let (acked, failed) = worker.await.unwrap();
        assert!(
            acked.len() >= 15 && !failed.is_empty(),
            "{acked:?} {failed:?}"
        );
        // Down: typed errors, never a session.
        for t in [&keeper, &rotated_new, &acked[0]] {
            let e = s.validate(t, &Default::default()).await.unwrap_err();
            assert!(typed(&e), "{e:?}");
        }

        server.restart().unwrap();
        let attempts = until_recovered(&s, &keeper).await;
        eprintln!(
            "restart: {} logouts acknowledged before the crash, {} typed failures, \
             recovered after {attempts} failed attempts",
            acked.len(),
            failed.len()
        );
        for t in &acked {
            let e = s.validate(t, &Default::default()).await.unwrap_err();
            assert!(matches!(e, Error::Revoked { .. }), "resurrected: {e:?}");
        }
        // The rotation held: the successor is valid, the old token is reuse.
        s.validate(&rotated_new, &Default::default()).await.unwrap();
        let e = s
            .validate(&rotated_old, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ReuseDetected), "{e:?}");
        // The ticket stays redeemed.
        assert!(s.redeem_ticket(&ticket).await.is_err());
    });
}
