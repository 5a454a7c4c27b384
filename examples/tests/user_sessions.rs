//! Seed 004 (user-session manager library): what its declarations and doc comments promise, on
//! memory and sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use common::{MS, clock, hours, mins, on_both_stores, secs, subject};
use leasehold::{Error, InputError, ManualClock, RevokeOutcome, RevokeReason, Store, TokenError};
use leasehold_examples::user_sessions::{
    Device, UserSessionManager, UserSessionManagerOptions, UserSessionTimeouts,
};

fn options(idle: Option<Duration>, renewal: Option<Duration>) -> UserSessionManagerOptions {
    UserSessionManagerOptions {
        session_ttl: hours(24),
        timeouts: UserSessionTimeouts {
            idle,
            renewal,
            old_session_availability_after_renewal: secs(5),
        },
        kind: "usess".into(),
    }
}

fn manager<S: Store>(
    store: S,
    options: &UserSessionManagerOptions,
) -> (UserSessionManager<S>, ManualClock) {
    let c = clock();
    (
        UserSessionManager::new(store, options)
            .unwrap()
            .with_clock(c.clone()),
        c,
    )
}

/// `timeouts.idle`: "closing and invalidating the session upon the defined idle period since
/// the last HTTP request"; reads keep it alive.
async fn idle_timeout_ends_an_unused_session<S: Store>(store: S) {
    let (m, c) = manager(store, &options(Some(mins(10)), None));
    let alice = subject("alice");
    let t = m.create(&alice, None, None).await.unwrap();
    for _ in 0..6 {
        c.advance(mins(9));
        m.read(&alice, t.expose_secret(), None).await.unwrap();
    }
    // 54 minutes of use; now 10 minutes of silence.
    c.advance(mins(10));
    assert_eq!(
        m.read(&alice, t.expose_secret(), None).await.unwrap_err(),
        Error::Expired
    );
}

/// `timeouts.renewal` + `oldSessionAvailabilityAfterRenewal`: a read after the renewal time
/// returns a new id for `Set-Cookie`; the old one stays readable for the window (answered with
/// the same new id), then is refused — while the new one lives on.
async fn renewal_keeps_the_old_session_for_a_short_window<S: Store>(store: S) {
    let (m, c) = manager(store, &options(Some(mins(30)), Some(mins(15))));
    let alice = subject("alice");
    let old = m.create(&alice, None, None).await.unwrap();
    c.advance(mins(10));
    let (_, renewed) = m.read(&alice, old.expose_secret(), None).await.unwrap();
    assert!(renewed.is_none(), "not yet due");
    c.advance(mins(5));
    let (_, renewed) = m.read(&alice, old.expose_secret(), None).await.unwrap();
    let new = renewed.expect("renewed at 15 minutes");
    assert_ne!(new.expose_secret(), old.expose_secret());
    // An in-flight request with the old id, 4 s later: still served, pointed at the new id.
    c.advance(secs(4));
    let (_, again) = m.read(&alice, old.expose_secret(), None).await.unwrap();
    assert_eq!(again.unwrap().expose_secret(), new.expose_secret());
    let (_, none) = m.read(&alice, new.expose_secret(), None).await.unwrap();
    assert!(none.is_none());
    // After the 5 s window the old id is gone; the new session is not harmed.
    c.advance(secs(1) + MS);
    assert_eq!(
        m.read(&alice, old.expose_secret(), None).await.unwrap_err(),
        Error::NotAuthenticated
    );
    m.read(&alice, new.expose_secret(), None).await.unwrap();
}

/// `RenewSessionHooks` (renewed already from this / another process): concurrent reads of one
/// session at renewal time renew it once; every reader gets the same new id.
async fn concurrent_reads_at_renewal_get_the_same_new_session<S: Store>(store: S) {
    let (m, c) = manager(store, &options(Some(mins(30)), Some(mins(15))));
    let m = Arc::new(m);
    let alice = subject("alice");
    let old = m.create(&alice, None, None).await.unwrap();
    c.advance(mins(15));
    let tasks: Vec<_> = (0..6)
        .map(|_| {
            let m = Arc::clone(&m);
            let alice = alice.clone();
            let token = old.expose_secret().to_owned();
            tokio::spawn(async move { m.read(&alice, &token, None).await })
        })
        .collect();
    let mut successors = HashSet::new();
    for t in tasks {
        let (session, renewed) = t.await.unwrap().unwrap();
        assert_eq!(session.generation, 1, "renewed exactly once");
        successors.insert(
            renewed
                .expect("every reader is told the new id")
                .expose_secret()
                .to_owned(),
        );
    }
    assert_eq!(successors.len(), 1, "one successor for all readers");
    let new = successors.into_iter().next().unwrap();
    let (s, renewed) = m.read(&alice, &new, None).await.unwrap();
    assert!(renewed.is_none());
    assert_eq!(s.generation, 1);
}

/// `readUserSessionHook` default: "in case device is present in both context and session
/// metadata, their name and type needs to be equal" — else `USER_SESSION_EXPIRED`.
async fn read_from_another_device_is_refused<S: Store>(store: S) {
    let (m, _c) = manager(store, &options(Some(mins(30)), None));
    let alice = subject("alice");
    let phone = Device::new("Pixel 8", "smartphone");
    let t = m.create(&alice, Some(&phone), None).await.unwrap();
    let (s, _) = m
        .read(&alice, t.expose_secret(), Some(&phone))
        .await
        .unwrap();
    assert_eq!(s.summary.as_deref(), Some("Pixel 8 (smartphone)"));
    for other in [
        Device::new("Pixel 8", "tablet"),
        Device::new("Pixel 9", "smartphone"),
    ] {
        assert_eq!(
            m.read(&alice, t.expose_secret(), Some(&other))
                .await
                .unwrap_err(),
            Error::BindingMismatch
        );
    }
    // Refusals do not end the session for its own device.
    m.read(&alice, t.expose_secret(), Some(&phone))
        .await
        .unwrap();
    // A session created with no device is readable from any.
    let anywhere = m.create(&alice, None, None).await.unwrap();
    m.read(&alice, anywhere.expose_secret(), Some(&phone))
        .await
        .unwrap();
}

/// `read(subject, sessionId, …)`: a session of another subject is refused, and the refusal
/// writes nothing (it does not even trigger a due renewal).
async fn read_with_another_subject_is_refused<S: Store>(store: S) {
    let (m, c) = manager(store, &options(Some(mins(30)), Some(mins(15))));
    let (alice, bob) = (subject("alice"), subject("bob"));
    let t = m.create(&alice, None, None).await.unwrap();
    c.advance(mins(15));
    assert_eq!(
        m.read(&bob, t.expose_secret(), None).await.unwrap_err(),
        Error::Refused
    );
    let (s, renewed) = m.read(&alice, t.expose_secret(), None).await.unwrap();
    assert_eq!(s.subject, alice);
    assert!(
        renewed.is_some(),
        "the renewal was still due: bob's read wrote nothing"
    );
    assert_eq!(s.generation, 1);
}

/// `readAll(subject)` and `deleteAll(subject)` ("Number of deleted sessions").
async fn read_all_and_delete_all_for_a_subject<S: Store>(store: S) {
    let (m, c) = manager(store, &options(Some(mins(30)), None));
    let (alice, bob) = (subject("alice"), subject("bob"));
    let mut tokens = Vec::new();
    for _ in 0..3 {
        tokens.push(m.create(&alice, None, None).await.unwrap());
        c.advance(secs(1));
    }
    let bobs = m.create(&bob, None, None).await.unwrap();
    let all = m.read_all(&alice).await.unwrap();
    assert_eq!(
        all.iter().map(|s| s.id).collect::<Vec<_>>(),
        tokens.iter().map(|t| *t.id()).collect::<Vec<_>>()
    );
    assert_eq!(m.delete_all(&alice).await.unwrap(), 3);
    for t in &tokens {
        assert_eq!(
            m.read(&alice, t.expose_secret(), None).await.unwrap_err(),
            Error::Revoked {
                reason: RevokeReason::Subject
            }
        );
    }
    assert!(m.read_all(&alice).await.unwrap().is_empty());
    assert_eq!(m.delete_all(&alice).await.unwrap(), 0);
    m.read(&bob, bobs.expose_secret(), None).await.unwrap();
}

/// `delete(subject, sessionId)`: deletes the subject's session; another subject cannot delete
/// it by naming its id.
async fn delete_is_checked_against_the_owner<S: Store>(store: S) {
    let (m, _c) = manager(store, &options(Some(mins(30)), None));
    let (alice, bob) = (subject("alice"), subject("bob"));
    let t = m.create(&alice, None, None).await.unwrap();
    let id = m.read_all(&alice).await.unwrap()[0].id;
    assert_eq!(m.delete(&bob, &id).await.unwrap(), RevokeOutcome::Unknown);
    m.read(&alice, t.expose_secret(), None).await.unwrap();
    assert_eq!(m.delete(&alice, &id).await.unwrap(), RevokeOutcome::Revoked);
    assert_eq!(
        m.read(&alice, t.expose_secret(), None).await.unwrap_err(),
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
}

/// `create(subject, context, sessionTtl?)`: "Session ttl. Takes precedence over the default
/// one" (shorter only: a longer one is refused rather than silently capped).
async fn per_session_ttl_overrides_the_default<S: Store>(store: S) {
    let (m, c) = manager(store, &options(None, None));
    let alice = subject("alice");
    let short = m.create(&alice, None, Some(hours(1))).await.unwrap();
    let default = m.create(&alice, None, None).await.unwrap();
    c.advance(hours(1) - MS);
    m.read(&alice, short.expose_secret(), None).await.unwrap();
    c.advance(MS);
    assert_eq!(
        m.read(&alice, short.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Expired
    );
    c.advance(hours(22));
    m.read(&alice, default.expose_secret(), None).await.unwrap();
    c.advance(hours(1));
    assert_eq!(
        m.read(&alice, default.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Expired
    );
    assert!(matches!(
        m.create(&alice, None, Some(hours(48))).await.unwrap_err(),
        Error::InvalidInput(InputError::Invalid(_))
    ));
}

/// Two managers of different kinds over one store: a token with its prefix swapped is refused
/// by the other kind (its lifetimes never apply to this session), and the original keeps
/// working.
async fn a_token_of_another_kind_is_refused<S: Store>(store: S) {
    let store = Arc::new(store);
    let (web, _c) = manager(Arc::clone(&store), &options(Some(mins(30)), None));
    let admin_opts = UserSessionManagerOptions {
        kind: "admin".into(),
        ..options(Some(mins(30)), None)
    };
    let (admin, _c2) = manager(Arc::clone(&store), &admin_opts);
    let alice = subject("alice");
    let t = web.create(&alice, None, None).await.unwrap();
    let swapped = t.expose_secret().replacen("usess_", "admin_", 1);
    assert_ne!(swapped, t.expose_secret());
    assert_eq!(
        admin.read(&alice, &swapped, None).await.unwrap_err(),
        Error::NotAuthenticated
    );
    // Unswapped, it is not even the admin kind's token shape.
    assert_eq!(
        admin
            .read(&alice, t.expose_secret(), None)
            .await
            .unwrap_err(),
        Error::Malformed(TokenError::WrongPrefix)
    );
    web.read(&alice, t.expose_secret(), None).await.unwrap();
    // And the reverse.
    let a = admin.create(&alice, None, None).await.unwrap();
    let swapped = a.expose_secret().replacen("admin_", "usess_", 1);
    assert_eq!(
        web.read(&alice, &swapped, None).await.unwrap_err(),
        Error::NotAuthenticated
    );
}

on_both_stores!(
    idle_timeout_ends_an_unused_session,
    renewal_keeps_the_old_session_for_a_short_window,
    concurrent_reads_at_renewal_get_the_same_new_session,
    read_from_another_device_is_refused,
    read_with_another_subject_is_refused,
    read_all_and_delete_all_for_a_subject,
    delete_is_checked_against_the_owner,
    per_session_ttl_overrides_the_default,
    a_token_of_another_kind_is_refused,
);
