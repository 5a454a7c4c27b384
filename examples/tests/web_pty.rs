//! Seed 001 (web PTY session manager): what its code and comments promise, on memory and sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{MS, clock, mins, ms, on_both_stores, secs, subject};
use leasehold::{Error, Limit, ManualClock, RevokeOutcome, RevokeReason, Store, Subject};
use leasehold_examples::web_pty::{CreateError, Spawned, WebPty, WebPtyConfig};
use std::cell::Cell;

fn manager<S: Store>(store: S, config: WebPtyConfig) -> (WebPty<S>, ManualClock) {
    let c = clock();
    (WebPty::new(store, config).unwrap().with_clock(c.clone()), c)
}

/// A fake PTY.
#[derive(Debug, PartialEq, Eq)]
struct Pty(u32);

/// Creates with a spawn that succeeds, counting spawns.
async fn spawn_ok<S: Store>(
    m: &WebPty<S>,
    user: &Subject,
    spawns: &Cell<u32>,
) -> Result<Spawned<Pty>, CreateError<String>> {
    m.create(user, || {
        spawns.set(spawns.get() + 1);
        Ok::<_, String>(Pty(spawns.get()))
    })
    .await
}

fn refused<T: std::fmt::Debug>(r: Result<T, CreateError<String>>) -> Error {
    match r {
        Err(CreateError::Refused(e)) => e,
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// `if (this.isFull) return null;` — the server-wide cap, checked before any spawn.
async fn global_cap_refuses_before_spawning<S: Store>(store: S) {
    let (m, _c) = manager(
        store,
        WebPtyConfig {
            max_sessions: 2,
            ..WebPtyConfig::default()
        },
    );
    let spawns = Cell::new(0);
    spawn_ok(&m, &subject("a"), &spawns).await.unwrap();
    spawn_ok(&m, &subject("b"), &spawns).await.unwrap();
    let e = refused(spawn_ok(&m, &subject("c"), &spawns).await);
    assert_eq!(
        e,
        Error::LimitReached {
            limit: Limit::GlobalSessions
        }
    );
    assert_eq!(
        spawns.get(),
        2,
        "no PTY was spawned for the refused session"
    );
}

/// "Session limit reached for your account (max N)": per-user cap, other users unaffected.
async fn per_user_cap_refuses_only_that_user<S: Store>(store: S) {
    let (m, _c) = manager(
        store,
        WebPtyConfig {
            max_sessions: 10,
            max_sessions_per_user: Some(2),
            ..WebPtyConfig::default()
        },
    );
    let spawns = Cell::new(0);
    let alice = subject("alice");
    let first = spawn_ok(&m, &alice, &spawns).await.unwrap();
    spawn_ok(&m, &alice, &spawns).await.unwrap();
    assert_eq!(
        refused(spawn_ok(&m, &alice, &spawns).await),
        Error::LimitReached {
            limit: Limit::SubjectSessions
        }
    );
    spawn_ok(&m, &subject("bob"), &spawns).await.unwrap();
    assert_eq!(spawns.get(), 3);
    // Destroying one frees a place.
    m.destroy_session(&first.session.id).await.unwrap();
    spawn_ok(&m, &alice, &spawns).await.unwrap();
}

/// `UserHourlyRateLimiter`: a rolling hour; "Seconds until the oldest attempt in the window
/// falls off (for Retry-After)" with `Math.ceil`.
async fn hourly_rate_limit_answers_retry_after_in_whole_seconds<S: Store>(store: S) {
    let (m, c) = manager(
        store,
        WebPtyConfig {
            max_sessions: 100,
            max_sessions_per_hour: 2,
            ..WebPtyConfig::default()
        },
    );
    let spawns = Cell::new(0);
    let alice = subject("alice");
    let first = spawn_ok(&m, &alice, &spawns).await.unwrap();
    c.advance(ms(10_500));
    spawn_ok(&m, &alice, &spawns).await.unwrap();
    // Destroying a session gives no creation back: the limiter records creations.
    m.destroy_session(&first.session.id).await.unwrap();
    c.advance(ms(9_750)); // 20.25 s after the first creation
    let e = refused(spawn_ok(&m, &alice, &spawns).await);
    assert!(matches!(e, Error::RateLimited { .. }), "{e:?}");
    // 3600 - 20.25 = 3579.75 s → Retry-After: 3580 (a client waiting 3579 s is refused again).
    assert_eq!(e.retry_after_secs(), Some(3580));
    assert_eq!(m.retry_after_seconds(&alice).await.unwrap(), 3580);
    assert_eq!(
        spawns.get(),
        2,
        "no PTY was spawned for the refused session"
    );
    // Another user is not limited.
    spawn_ok(&m, &subject("bob"), &spawns).await.unwrap();
    // When the oldest creation leaves the window, one more is allowed.
    c.advance(ms(3_579_750) - MS);
    assert!(matches!(
        refused(spawn_ok(&m, &alice, &spawns).await),
        Error::RateLimited { .. }
    ));
    c.advance(MS);
    spawn_ok(&m, &alice, &spawns).await.unwrap();
}

/// "`allow(userId)` is a non-destructive peek so callers can check eligibility before
/// committing": peeking never consumes the rate, and reports each limit.
async fn peek_reports_limits_without_consuming_them<S: Store>(store: S) {
    let (m, _c) = manager(
        store,
        WebPtyConfig {
            max_sessions: 100,
            max_sessions_per_user: Some(1),
            max_sessions_per_hour: 1,
            ..WebPtyConfig::default()
        },
    );
    let alice = subject("alice");
    for _ in 0..5 {
        m.can_create(&alice).await.unwrap();
    }
    assert_eq!(m.retry_after_seconds(&alice).await.unwrap(), 0);
    let spawns = Cell::new(0);
    let s = spawn_ok(&m, &alice, &spawns).await.unwrap();
    // At the per-user cap (and at the rate): the peek says so.
    assert!(m.can_create(&alice).await.is_err());
    m.destroy_session(&s.session.id).await.unwrap();
    // Below the cap again, but the hourly rate is used up.
    let e = m.can_create(&alice).await.unwrap_err();
    assert!(matches!(e, Error::RateLimited { .. }), "{e:?}");
    assert_eq!(m.retry_after_seconds(&alice).await.unwrap(), 3600);
    m.can_create(&subject("bob")).await.unwrap();
}

/// "Record the creation only after a successful spawn": a failed spawn counts against neither
/// the hourly rate nor the per-user cap, and leaves no session behind.
async fn failed_spawns_are_not_counted<S: Store>(store: S) {
    let (m, _c) = manager(
        store,
        WebPtyConfig {
            max_sessions: 100,
            max_sessions_per_user: Some(1),
            max_sessions_per_hour: 1,
            ..WebPtyConfig::default()
        },
    );
    let alice = subject("alice");
    for _ in 0..3 {
        let r = m
            .create(&alice, || Err::<Pty, _>("ENOENT: node-pty".to_owned()))
            .await;
        assert!(matches!(r, Err(CreateError::Spawn(ref e)) if e == "ENOENT: node-pty"));
        assert!(m.user_sessions(&alice).await.unwrap().is_empty());
        assert_eq!(m.active_count().await.unwrap(), 0);
    }
    let spawns = Cell::new(0);
    spawn_ok(&m, &alice, &spawns).await.unwrap();
    // The one successful spawn used the hour's only creation.
    assert!(matches!(
        refused(spawn_ok(&m, &alice, &spawns).await),
        Error::LimitReached { .. } | Error::RateLimited { .. }
    ));
}

/// "On close/error, start the grace period instead of immediately destroying the session —
/// this keeps the PTY alive for reconnection": resume within grace, not after; pings while
/// attached keep it alive indefinitely.
async fn resume_works_within_the_grace_period_only<S: Store>(store: S) {
    let (m, c) = manager(
        store,
        WebPtyConfig {
            grace_period: secs(60),
            ..WebPtyConfig::default()
        },
    );
    let spawns = Cell::new(0);
    let alice = subject("alice");
    let s = spawn_ok(&m, &alice, &spawns).await.unwrap();
    let id = s.session.id;
    // Attached for 10 minutes, pinging every 30 s.
    for _ in 0..20 {
        c.advance(secs(30));
        m.keepalive(&id).await.unwrap();
    }
    // The WebSocket closes; the user reconnects 50 s later.
    c.advance(secs(50));
    let resumed = m.resume(&alice, &id).await.unwrap();
    assert_eq!(resumed.id, id);
    // Another user cannot take it over by id.
    assert_eq!(
        m.resume(&subject("mallory"), &id).await.unwrap_err(),
        Error::Refused
    );
    // Disconnected again, past the grace period: gone.
    c.advance(secs(60));
    assert_eq!(m.resume(&alice, &id).await.unwrap_err(), Error::Expired);
    assert_eq!(m.keepalive(&id).await.unwrap_err(), Error::Expired);
}

/// `getUserSessions` / `destroySession`: the per-user list and destroy by id.
async fn per_user_list_and_destroy_by_id<S: Store>(store: S) {
    let (m, c) = manager(store, WebPtyConfig::default());
    let spawns = Cell::new(0);
    let (alice, bob) = (subject("alice"), subject("bob"));
    let a1 = spawn_ok(&m, &alice, &spawns).await.unwrap();
    c.advance(ms(5));
    let a2 = spawn_ok(&m, &alice, &spawns).await.unwrap();
    let b1 = spawn_ok(&m, &bob, &spawns).await.unwrap();
    let ids: Vec<_> = m
        .user_sessions(&alice)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![a1.session.id, a2.session.id]);
    assert_eq!(
        m.destroy_session(&a1.session.id).await.unwrap(),
        RevokeOutcome::Revoked
    );
    let ids: Vec<_> = m
        .user_sessions(&alice)
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(ids, vec![a2.session.id]);
    assert_eq!(
        m.resume(&alice, &a1.session.id).await.unwrap_err(),
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    m.resume(&bob, &b1.session.id).await.unwrap();
}

/// `getAllSessions` (admin dashboard: id, userId, createdAt of every session), `activeCount`
/// and `destroyAll`.
async fn admin_lists_counts_and_destroys_everything<S: Store>(store: S) {
    let (m, c) = manager(store, WebPtyConfig::default());
    let spawns = Cell::new(0);
    let mut want = Vec::new();
    for user in ["alice", "alice", "bob", "carol", "dave"] {
        let s = spawn_ok(&m, &subject(user), &spawns).await.unwrap();
        want.push((s.session.id, user.to_owned(), s.session.created_at));
        c.advance(ms(3));
    }
    m.destroy_session(&want[3].0).await.unwrap();
    want.remove(3);
    want.sort();
    // A page size of 2 forces the dashboard to follow the cursor.
    let mut got: Vec<_> = m
        .all_sessions(2)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.id, r.user_id, r.created_at))
        .collect();
    got.sort();
    assert_eq!(got, want);
    assert_eq!(m.active_count().await.unwrap(), 4);
    assert_eq!(m.destroy_all().await.unwrap(), 4);
    assert_eq!(m.active_count().await.unwrap(), 0);
    assert!(m.all_sessions(10).await.unwrap().is_empty());
}

/// The grace timer fires "logged inside startGrace" and the PTY is destroyed: the reaper names
/// each session that ended so its PTY can be killed, and only those.
async fn expiry_notification_names_the_sessions_to_tear_down<S: Store>(store: S) {
    let (m, c) = manager(
        store,
        WebPtyConfig {
            grace_period: mins(1),
            ..WebPtyConfig::default()
        },
    );
    let spawns = Cell::new(0);
    let idle = spawn_ok(&m, &subject("alice"), &spawns).await.unwrap();
    let attached = spawn_ok(&m, &subject("bob"), &spawns).await.unwrap();
    c.advance(secs(40));
    m.keepalive(&attached.session.id).await.unwrap();
    c.advance(secs(30));
    let ended = m.reap_expired(100).await.unwrap();
    assert_eq!(ended.len(), 1, "{ended:?}");
    assert_eq!(ended[0].id, idle.session.id);
    assert_eq!(ended[0].subject, subject("alice"));
    assert_eq!(ended[0].reason, Some(RevokeReason::Expired));
    m.resume(&subject("bob"), &attached.session.id)
        .await
        .unwrap();
    // Nothing is reported twice.
    assert!(m.reap_expired(100).await.unwrap().is_empty());
}

on_both_stores!(
    global_cap_refuses_before_spawning,
    per_user_cap_refuses_only_that_user,
    hourly_rate_limit_answers_retry_after_in_whole_seconds,
    peek_reports_limits_without_consuming_them,
    failed_spawns_are_not_counted,
    resume_works_within_the_grace_period_only,
    per_user_list_and_destroy_by_id,
    admin_lists_counts_and_destroys_everything,
    expiry_notification_names_the_sessions_to_tear_down,
);
