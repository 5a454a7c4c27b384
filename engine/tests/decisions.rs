//! Every engine decision, through `Sessions<MemoryStore>` driven by a `ManualClock` (and,
//! where the point is the decision itself, directly against the pure `leasehold::decide`
//! functions). Each test names the rule or invariant it checks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::Duration;

use common::*;
use leasehold::decide::read::{self, ReadMode};
use leasehold::decide::{self, Decision, Grant};
use leasehold::{
    CapPolicy, Context, CreateOptions, Error, Event, Limit, MemoryStore, Policy, Rate,
    RevokeOutcome, RevokeReason, SeededEntropy, SessionId, SessionRecord, SessionState, Store,
    SubjectCap, Timestamp, token,
};

macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {
        match $e {
            Err($p) $(if $g)? => {}
            Err(other) => panic!("expected Err({}), got Err({other:?})", stringify!($p)),
            Ok(v) => panic!("expected Err({}), got Ok({v:?})", stringify!($p)),
        }
    };
}

type H = Harness<MemoryStore>;

fn no_renewal() -> Policy {
    Policy::builder().renewal_interval(None).build().unwrap()
}

async fn create(h: &H, who: &str) -> (SessionId, String) {
    create_with(h, who, CreateOptions::default()).await
}

async fn create_with(h: &H, who: &str, opts: CreateOptions) -> (SessionId, String) {
    let c = h.sessions.create(&subject(who), opts).await.unwrap();
    (c.session.id, h.remember(c.token.expose_secret()))
}

async fn load(h: &H, id: &SessionId) -> SessionRecord {
    h.sessions
        .store()
        .load_session(id)
        .await
        .unwrap()
        .record
        .map(|r| *r)
        .expect("record present")
}

async fn validate(h: &H, token: &str) -> Result<leasehold::Validated, Error> {
    h.sessions.validate(token, &Context::none()).await
}

async fn refresh(h: &H, token: &str) -> String {
    let r = h.sessions.refresh(token, &Context::none()).await.unwrap();
    h.remember(r.token.expose_secret())
}

fn renewed_text(v: &leasehold::Validated) -> Option<String> {
    v.renewed.as_ref().map(|t| t.expose_secret().to_owned())
}

fn count<F: Fn(&Event) -> bool>(events: &[Event], f: F) -> usize {
    events.iter().filter(|e| f(e)).count()
}

// ---------------------------------------------------------------------------------------------
// Expiry: idle and absolute deadlines
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn idle_deadline_one_ms_before_is_valid_and_exactly_at_it_is_expired() {
    let h = H::new(no_renewal());
    let (_a, ta) = create(&h, "alice").await;
    let (b, tb) = create(&h, "alice").await;
    let idle_deadline = h.now().saturating_add(mins(30));
    assert_eq!(load(&h, &b).await.expires_at, idle_deadline);

    h.advance(mins(30) - MS);
    let v = validate(&h, &ta).await.unwrap();
    assert!(v.session.expires_at > h.now());

    h.advance(MS);
    assert_eq!(h.now(), idle_deadline);
    let before = load(&h, &b).await;
    let from = h.events().len();
    assert_err!(validate(&h, &tb).await, Error::Expired);
    assert_eq!(h.events_since(from), vec![Event::ExpiredOnRead { id: b }]);
    // The denial is given only once the ending is durable: its tombstone (reason Expired,
    // next version, same deadline) replaced the record; nothing else changed.
    let after = load(&h, &b).await;
    assert_eq!(
        after,
        before.tombstone(idle_deadline, RevokeReason::Expired),
        "an observed expiry writes exactly its tombstone"
    );
    // Read again: told Expired again, without another write or event.
    let from = h.events().len();
    assert_err!(validate(&h, &tb).await, Error::Expired);
    assert_eq!(load(&h, &b).await, after);
    assert!(h.events_since(from).is_empty());
    // The one touched 1 ms before its deadline is still valid.
    validate(&h, &ta).await.unwrap();
    h.assert_no_secret_leaks();
}

#[tokio::test]
async fn absolute_deadline_exactly_is_expired_even_for_a_session_in_constant_use() {
    let policy = Policy::builder()
        .absolute_lifetime(Duration::from_secs(2 * 3600))
        .renewal_interval(None)
        .build()
        .unwrap();
    let h = H::new(policy);
    let (id, t) = create(&h, "alice").await;
    let absolute = h.now().saturating_add(Duration::from_secs(2 * 3600));
    assert_eq!(load(&h, &id).await.absolute_deadline, absolute);

    // Used every 20 minutes: the idle deadline keeps moving, but never past the absolute one.
    for _ in 0..5 {
        h.advance(mins(20));
        let v = validate(&h, &t).await.unwrap();
        assert!(v.session.expires_at <= absolute);
        assert_eq!(v.session.absolute_deadline, absolute);
    }
    // 1h40m: min(2h10m, 2h) = 2h.
    assert_eq!(load(&h, &id).await.expires_at, absolute);

    h.clock.set(absolute.saturating_sub(MS));
    let v = validate(&h, &t).await.unwrap();
    assert_eq!(v.session.expires_at, absolute);

    h.clock.set(absolute);
    assert_err!(validate(&h, &t).await, Error::Expired);
    assert_err!(
        h.sessions.refresh(&t, &Context::none()).await,
        Error::Expired
    );
}

#[tokio::test]
async fn no_touch_refresh_or_renewal_moves_expiry_past_the_absolute_deadline() {
    // INV-absolute-bound, through the driver: touches, renewals and refreshes near the bound.
    let policy = Policy::builder()
        .absolute_lifetime(Duration::from_secs(3600))
        .idle_timeout(Some(mins(30)))
        .renewal_interval(Some(mins(10)))
        .build()
        .unwrap();
    let h = H::new(policy);
    let (id, mut t) = create(&h, "alice").await;
    let absolute = h.now().saturating_add(Duration::from_secs(3600));
    let mut step = 0u32;
    loop {
        h.advance(mins(7));
        step += 1;
        let result = if step % 3 == 0 {
            h.sessions
                .refresh(&t, &Context::none())
                .await
                .map(|r| (r.session, Some(r.token)))
        } else {
            validate(&h, &t).await.map(|v| (v.session, v.renewed))
        };
        match result {
            Ok((session, new_token)) => {
                assert!(h.now() < absolute);
                assert!(session.expires_at <= absolute, "step {step}: {session:?}");
                assert!(load(&h, &id).await.expires_at <= absolute);
                if let Some(nt) = new_token {
                    t = h.remember(nt.expose_secret());
                }
            }
            Err(Error::Expired) => {
                assert!(h.now() >= absolute);
                break;
            }
            Err(e) => panic!("step {step}: unexpected {e:?}"),
        }
    }
    // Refresh 1 ms before the bound: the successor expires at the bound, not later.
    let h = H::new(
        Policy::builder()
            .absolute_lifetime(Duration::from_secs(3600))
            .renewal_interval(None)
            .build()
            .unwrap(),
    );
    let (_id, t) = create(&h, "bob").await;
    let start = h.now();
    for m in [20, 40] {
        h.clock.set(start.saturating_add(mins(m)));
        validate(&h, &t).await.unwrap();
    }
    h.clock
        .set(start.saturating_add(Duration::from_secs(3600) - MS));
    let r = h.sessions.refresh(&t, &Context::none()).await.unwrap();
    assert_eq!(r.session.expires_at, r.session.absolute_deadline);
    h.advance(MS);
    assert_err!(validate(&h, r.token.expose_secret()).await, Error::Expired);
}

#[test]
fn pure_touch_one_ms_before_the_absolute_deadline_is_clamped_to_it() {
    let policy = Policy::builder()
        .absolute_lifetime(Duration::from_secs(3600))
        .renewal_interval(None)
        .build()
        .unwrap();
    let e = SeededEntropy::new(1);
    let t0 = Timestamp::from_millis(1_000_000);
    let (rec, tok) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        t0,
        &policy,
        &e,
    )
    .unwrap();
    let absolute = t0.saturating_add(Duration::from_secs(3600));
    assert_eq!(
        decide::create::expiry(absolute.saturating_sub(MS), absolute, &policy),
        absolute
    );
    // Move last_seen close to the deadline, so the next touch is due and would overshoot.
    let mut rec = rec;
    rec.last_seen = absolute.saturating_sub(mins(5));
    rec.expires_at = absolute;
    let p = token::parse(tok.expose_secret().as_bytes(), "lh1").unwrap();
    let now = absolute.saturating_sub(MS);
    let d = read::read(
        Some(&rec),
        &p,
        &Context::none(),
        ReadMode::Validate,
        now,
        &policy,
        &e,
    );
    let write = d.write.expect("touch is due");
    assert_eq!(write.last_seen, now);
    assert_eq!(write.expires_at, absolute);
    // And a refresh at the same instant.
    let d = read::read(
        Some(&rec),
        &p,
        &Context::none(),
        ReadMode::Refresh,
        now,
        &policy,
        &e,
    );
    assert_eq!(d.write.unwrap().expires_at, absolute);
    // At the deadline itself: expired, and the only write is its Expired tombstone.
    let d = read::read(
        Some(&rec),
        &p,
        &Context::none(),
        ReadMode::Validate,
        absolute,
        &policy,
        &e,
    );
    assert_eq!(
        d.write,
        Some(rec.tombstone(absolute, RevokeReason::Expired))
    );
    assert!(matches!(d.outcome, Err(Error::Expired)));
}

#[tokio::test]
async fn an_expired_session_stays_dead_whatever_is_tried_later() {
    // INV-no-resurrection (expiry): nothing done after the deadline makes it valid again.
    let h = H::new(Policy::default());
    let (id, t) = create(&h, "alice").await;
    h.advance(mins(30));
    assert_err!(validate(&h, &t).await, Error::Expired);
    assert_err!(
        h.sessions.refresh(&t, &Context::none()).await,
        Error::Expired
    );
    assert_err!(
        h.sessions.mint_ticket(&t, &Context::none()).await,
        Error::Expired
    );
    assert_err!(h.sessions.update_data(&id, 0, b"x").await, Error::Expired);
    // The first read past the deadline wrote the ending down (one write, reason Expired);
    // nothing after it writes again, and revoke reports the ending it found.
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::AlreadyRevoked {
            reason: RevokeReason::Expired
        }
    );
    assert_err!(h.sessions.acquire_slot(&id, None).await, Error::Expired);
    let rec = load(&h, &id).await;
    assert_eq!(rec.version, 1, "exactly one write: the Expired tombstone");
    assert!(matches!(
        rec.state,
        SessionState::Revoked {
            reason: RevokeReason::Expired,
            ..
        }
    ));
    assert_eq!(
        count(&h.events(), |e| matches!(e, Event::ExpiredOnRead { .. })),
        1,
        "the ending is observed (and written) once"
    );
    h.advance(Duration::from_secs(3600));
    assert_err!(validate(&h, &t).await, Error::Expired);
}

#[tokio::test]
async fn revoking_a_session_past_its_deadline_writes_its_tombstone() {
    // Revocation never depends on a clock: a session past its deadline but not yet ended is
    // revoked like a live one (a stepped clock cannot lose a logout).
    let h = H::new(Policy::default());
    let (id, t) = create(&h, "alice").await;
    h.advance(mins(30));
    let from = h.events().len();
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::Revoked {
            id,
            reason: RevokeReason::Revoked
        }]
    );
    let rec = load(&h, &id).await;
    assert_eq!(rec.version, 1);
    assert!(matches!(
        rec.state,
        SessionState::Revoked {
            reason: RevokeReason::Revoked,
            ..
        }
    ));
    assert_err!(
        validate(&h, &t).await,
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    assert_err!(
        h.sessions.acquire_slot(&id, None).await,
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::AlreadyRevoked {
            reason: RevokeReason::Revoked
        }
    );
    assert_eq!(
        load(&h, &id).await.version,
        1,
        "idempotent: no second write"
    );
}

// ---------------------------------------------------------------------------------------------
// Lazy touch
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn lazy_touch_writes_nothing_until_the_granularity_then_writes() {
    let h = H::new(no_renewal());
    let (id, t) = create(&h, "alice").await;
    let created = h.now();
    let rec0 = load(&h, &id).await;

    h.advance(secs(60) - MS);
    let v = validate(&h, &t).await.unwrap();
    assert_eq!(v.session.last_seen, created);
    assert_eq!(load(&h, &id).await, rec0, "no write when no touch is due");

    h.advance(MS);
    let v = validate(&h, &t).await.unwrap();
    let rec1 = load(&h, &id).await;
    assert_eq!(rec1.version, rec0.version + 1);
    assert_eq!(rec1.last_seen, h.now());
    assert_eq!(rec1.expires_at, h.now().saturating_add(mins(30)));
    assert_eq!(v.session.last_seen, h.now());
    assert_eq!(v.session.expires_at, rec1.expires_at);

    // Granularity counts from the last *written* touch.
    h.advance(secs(60) - MS);
    validate(&h, &t).await.unwrap();
    assert_eq!(load(&h, &id).await, rec1);
    h.advance(MS);
    validate(&h, &t).await.unwrap();
    assert_eq!(load(&h, &id).await.version, rec1.version + 1);
    // No event for a touch.
    assert_eq!(
        count(&h.events(), |e| !matches!(e, Event::Created { .. })),
        0
    );
}

#[test]
fn pure_read_decides_no_write_when_touch_not_due_and_one_when_due() {
    let policy = no_renewal();
    let e = SeededEntropy::new(2);
    let t0 = Timestamp::from_millis(5_000_000);
    let (rec, tok) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        t0,
        &policy,
        &e,
    )
    .unwrap();
    let p = token::parse(tok.expose_secret().as_bytes(), "lh1").unwrap();
    let decide_at = |now: Timestamp| -> Decision<Grant> {
        read::read(
            Some(&rec),
            &p,
            &Context::none(),
            ReadMode::Validate,
            now,
            &policy,
            &e,
        )
    };
    assert!(!read::touch_due(
        &rec,
        t0.saturating_add(secs(60) - MS),
        &policy
    ));
    assert!(read::touch_due(&rec, t0.saturating_add(secs(60)), &policy));

    let d = decide_at(t0.saturating_add(secs(60) - MS));
    assert!(d.write.is_none());
    assert!(d.events.is_empty());
    let g = d.outcome.unwrap();
    assert!(
        g.token.is_none(),
        "nothing due: the record is granted as it is"
    );

    let now = t0.saturating_add(secs(60));
    let d = decide_at(now);
    let w = d.write.expect("touch due");
    assert_eq!(w.version, rec.version + 1);
    assert_eq!(w.last_seen, now);
    assert_eq!(w.expires_at, now.saturating_add(mins(30)));
    assert_eq!(w.credential, rec.credential, "a touch does not rotate");
    assert!(d.events.is_empty());
    assert!(
        d.outcome.unwrap().token.is_none(),
        "the write is the granted record"
    );
}

// ---------------------------------------------------------------------------------------------
// Rotation: renewal, grace, orphan recovery, reuse
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn renewal_after_interval_returns_new_token_and_old_one_works_only_within_grace() {
    let h = H::new(Policy::default()); // renewal 15 min, grace 30 s
    let (id, a) = create(&h, "alice").await;

    h.advance(mins(15) - MS);
    let v = validate(&h, &a).await.unwrap();
    assert!(v.renewed.is_none(), "not yet due");
    assert_eq!(v.session.generation, 0);

    h.advance(MS);
    let from = h.events().len();
    let v = validate(&h, &a).await.unwrap();
    let b = h.remember(&renewed_text(&v).expect("renewal due"));
    assert_ne!(b, a);
    assert_eq!(v.renewed.as_ref().unwrap().id(), &id);
    assert_eq!(v.session.generation, 1);
    assert_eq!(
        h.events_since(from),
        vec![Event::Rotated { id, generation: 1 }]
    );
    let renewed_at = h.now();

    // The client switches to the new token (the successor has now been presented).
    let v = validate(&h, &b).await.unwrap();
    assert!(v.renewed.is_none());

    // The old one, inside grace: accepted and answered with the same successor.
    h.clock.set(renewed_at.saturating_add(secs(30) - MS));
    let v = validate(&h, &a).await.unwrap();
    assert_eq!(renewed_text(&v).as_deref(), Some(b.as_str()));

    // At grace exactly (successor seen): reuse, session revoked.
    h.clock.set(renewed_at.saturating_add(secs(30)));
    assert_err!(validate(&h, &a).await, Error::ReuseDetected);
    assert_err!(
        validate(&h, &b).await,
        Error::Revoked {
            reason: RevokeReason::ReuseDetected
        }
    );
    h.assert_no_secret_leaks();
}

#[tokio::test]
async fn grace_boundary_accepted_at_grace_minus_1ms_reuse_at_grace_once_successor_seen() {
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    h.advance(secs(5));
    let b = refresh(&h, &a).await;
    let t1 = h.now();
    validate(&h, &b).await.unwrap();
    assert!(
        load(&h, &id)
            .await
            .credential
            .previous
            .unwrap()
            .successor_seen
    );

    h.clock.set(t1.saturating_add(secs(30) - MS));
    let from = h.events().len();
    let v = validate(&h, &a).await.unwrap();
    assert_eq!(renewed_text(&v).unwrap(), b);
    assert_eq!(
        h.events_since(from),
        vec![Event::SuccessorReissued { id, orphan: false }]
    );

    h.clock.set(t1.saturating_add(secs(30)));
    let from = h.events().len();
    assert_err!(validate(&h, &a).await, Error::ReuseDetected);
    assert_eq!(
        h.events_since(from),
        vec![
            Event::ReuseDetected { id },
            Event::Revoked {
                id,
                reason: RevokeReason::ReuseDetected
            }
        ]
    );
    let rec = load(&h, &id).await;
    assert!(matches!(
        rec.state,
        SessionState::Revoked {
            reason: RevokeReason::ReuseDetected,
            ..
        }
    ));
}

#[tokio::test]
async fn at_grace_exactly_an_unseen_successor_is_still_reissued_by_the_orphan_rule() {
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    let t1 = h.now();

    h.clock.set(t1.saturating_add(secs(30) - MS));
    let from = h.events().len();
    let v = validate(&h, &a).await.unwrap();
    assert_eq!(renewed_text(&v).unwrap(), b);
    assert_eq!(
        h.events_since(from),
        vec![Event::SuccessorReissued { id, orphan: false }]
    );

    h.clock.set(t1.saturating_add(secs(30)));
    let from = h.events().len();
    let v = validate(&h, &a).await.unwrap();
    assert_eq!(renewed_text(&v).unwrap(), b);
    assert_eq!(
        h.events_since(from),
        vec![Event::SuccessorReissued { id, orphan: true }]
    );
}

#[tokio::test]
async fn orphan_recovery_answers_the_same_successor_until_the_orphan_window() {
    let h = H::new(no_renewal()); // grace 30 s, orphan window 5 min
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    let t1 = h.now();

    // The reply carrying `b` was lost: the client retries with `a`, well past grace.
    h.clock.set(t1.saturating_add(secs(31)));
    let r = h.sessions.refresh(&a, &Context::none()).await.unwrap();
    assert_eq!(r.token.expose_secret(), b, "same successor text");
    assert_eq!(r.session.generation, 1, "no second rotation");

    h.clock.set(t1.saturating_add(mins(5) - MS));
    let v = validate(&h, &a).await.unwrap();
    assert_eq!(renewed_text(&v).unwrap(), b);
    assert!(
        !load(&h, &id)
            .await
            .credential
            .previous
            .unwrap()
            .successor_seen,
        "presenting the predecessor does not mark the successor seen"
    );

    h.clock.set(t1.saturating_add(mins(5)));
    assert_err!(validate(&h, &a).await, Error::ReuseDetected);
    assert_err!(
        validate(&h, &b).await,
        Error::Revoked {
            reason: RevokeReason::ReuseDetected
        }
    );
    let ev = h.events();
    assert_eq!(count(&ev, |e| matches!(e, Event::Rotated { .. })), 1);
    assert_eq!(
        count(&ev, |e| matches!(
            e,
            Event::SuccessorReissued { orphan: true, .. }
        )),
        2
    );
}

#[tokio::test]
async fn once_the_successor_was_presented_the_predecessor_past_grace_is_reuse() {
    let h = H::new(no_renewal());
    let (_id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    let t1 = h.now();
    h.advance(secs(1));
    validate(&h, &b).await.unwrap(); // successor presented once

    // Past grace but well inside the orphan window: no longer an orphan, so reuse.
    h.clock.set(t1.saturating_add(secs(30) + MS));
    assert_err!(
        h.sessions.refresh(&a, &Context::none()).await,
        Error::ReuseDetected
    );
    assert_err!(
        validate(&h, &b).await,
        Error::Revoked {
            reason: RevokeReason::ReuseDetected
        }
    );
}

#[tokio::test]
async fn grand_predecessor_reuse_revokes_the_session_even_inside_grace() {
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    validate(&h, &b).await.unwrap();
    h.advance(secs(1));
    let c = refresh(&h, &b).await;
    h.advance(secs(1));
    // `b` (the predecessor, inside grace) is fine; `a` is older: reuse.
    let v = validate(&h, &b).await.unwrap();
    assert_eq!(renewed_text(&v).unwrap(), c);
    let from = h.events().len();
    assert_err!(validate(&h, &a).await, Error::ReuseDetected);
    assert_eq!(
        h.events_since(from),
        vec![
            Event::ReuseDetected { id },
            Event::Revoked {
                id,
                reason: RevokeReason::ReuseDetected
            }
        ]
    );
    for t in [&a, &b, &c] {
        assert_err!(
            validate(&h, t).await,
            Error::Revoked {
                reason: RevokeReason::ReuseDetected
            }
        );
    }
    h.assert_no_secret_leaks();
}

#[tokio::test]
async fn reuse_history_remembers_at_most_reuse_history_retired_tokens() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .reuse_history(2)
        .build()
        .unwrap();
    let h = H::new(policy);
    let (id, first) = create(&h, "alice").await;
    let mut chain = vec![first];
    for _ in 0..4 {
        h.advance(secs(1));
        let next = refresh(&h, chain.last().unwrap()).await;
        validate(&h, &next).await.unwrap();
        chain.push(next);
    }
    // chain: t0 .. t4 (current). t3 predecessor; retired = [t1, t2]; t0 is forgotten.
    assert_eq!(load(&h, &id).await.credential.retired.len(), 2);
    assert_err!(validate(&h, &chain[0]).await, Error::NotAuthenticated);
    validate(&h, &chain[4]).await.unwrap();
    // t1 is still remembered: reuse.
    assert_err!(validate(&h, &chain[1]).await, Error::ReuseDetected);
    assert_err!(validate(&h, &chain[4]).await, Error::Revoked { .. });
}

#[tokio::test]
async fn reuse_detection_off_makes_old_tokens_unauthenticated_without_revoking() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .reuse_detection(false)
        .build()
        .unwrap();
    let h = H::new(policy);
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    validate(&h, &b).await.unwrap();
    h.advance(secs(1));
    let c = refresh(&h, &b).await;
    validate(&h, &c).await.unwrap();

    // Grand-predecessor.
    assert_err!(validate(&h, &a).await, Error::NotAuthenticated);
    // Predecessor past grace with its successor seen.
    h.advance(secs(31));
    assert_err!(validate(&h, &b).await, Error::NotAuthenticated);
    assert_err!(
        h.sessions.refresh(&b, &Context::none()).await,
        Error::NotAuthenticated
    );
    // The session is untouched by those attempts.
    validate(&h, &c).await.unwrap();
    assert_eq!(load(&h, &id).await.state, SessionState::Active);
    let ev = h.events();
    assert_eq!(
        count(&ev, |e| matches!(
            e,
            Event::ReuseDetected { .. } | Event::Revoked { .. }
        )),
        0
    );
}

#[tokio::test]
async fn refresh_is_idempotent_within_grace() {
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    let b1 = refresh(&h, &a).await;
    let b2 = refresh(&h, &a).await;
    assert_eq!(
        b1, b2,
        "two refreshes of the same token: identical successor"
    );
    h.advance(secs(10));
    validate(&h, &b1).await.unwrap(); // successor seen
    h.advance(secs(20) - MS); // grace - 1 ms after the rotation
    let b3 = refresh(&h, &a).await;
    assert_eq!(b1, b3);
    assert_eq!(load(&h, &id).await.credential.generation, 1);
    assert_eq!(
        count(&h.events(), |e| matches!(e, Event::Rotated { .. })),
        1
    );
    // Refreshing the successor itself rotates again.
    let c = refresh(&h, &b1).await;
    assert_ne!(c, b1);
    assert_eq!(load(&h, &id).await.credential.generation, 2);
}

#[test]
fn pure_predecessor_rules_at_every_boundary() {
    let policy = no_renewal(); // grace 30 s, orphan 5 min
    let e = SeededEntropy::new(3);
    let t0 = Timestamp::from_millis(9_000_000);
    let (rec, a) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        t0,
        &policy,
        &e,
    )
    .unwrap();
    let pa = token::parse(a.expose_secret().as_bytes(), "lh1").unwrap();
    let d = read::read(
        Some(&rec),
        &pa,
        &Context::none(),
        ReadMode::Refresh,
        t0,
        &policy,
        &e,
    );
    let rotated = d.write.unwrap();
    let b = d.outcome.unwrap().token.unwrap();
    let mut seen = rotated.clone();
    seen.credential.previous.as_mut().unwrap().successor_seen = true;

    let at = |r: &SessionRecord, after: Duration| {
        read::read(
            Some(r),
            &pa,
            &Context::none(),
            ReadMode::Validate,
            t0.saturating_add(after),
            &policy,
            &e,
        )
    };
    let reissued = |d: Decision<Grant>| -> (String, Vec<Event>) {
        let ev = d.events.clone();
        (
            d.outcome.unwrap().token.unwrap().expose_secret().to_owned(),
            ev,
        )
    };
    let id = rec.id;
    for r in [&rotated, &seen] {
        let (t, ev) = reissued(at(r, secs(30) - MS));
        assert_eq!(t, b.expose_secret());
        assert_eq!(ev, vec![Event::SuccessorReissued { id, orphan: false }]);
    }
    // At grace: seen → reuse (tombstone write), unseen → orphan reissue.
    let d = at(&seen, secs(30));
    assert!(matches!(d.outcome, Err(Error::ReuseDetected)));
    let w = d.write.unwrap();
    assert_eq!(w.version, seen.version + 1);
    assert_eq!(
        w.expires_at, seen.expires_at,
        "tombstone keeps the deadline"
    );
    let (t, ev) = reissued(at(&rotated, secs(30)));
    assert_eq!(t, b.expose_secret());
    assert_eq!(ev, vec![Event::SuccessorReissued { id, orphan: true }]);
    let (t, _) = reissued(at(&rotated, mins(5) - MS));
    assert_eq!(t, b.expose_secret());
    assert!(matches!(
        at(&rotated, mins(5)).outcome,
        Err(Error::ReuseDetected)
    ));
}

// ---------------------------------------------------------------------------------------------
// Caps, rate, global cap
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn subject_cap_reject_refuses_the_extra_session() {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 3,
            on_full: CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let h = H::new(policy);
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(create(&h, "alice").await);
        h.advance(MS);
    }
    let from = h.events().len();
    assert_err!(
        h.sessions
            .create(&subject("alice"), CreateOptions::default())
            .await,
        Error::LimitReached {
            limit: Limit::SubjectSessions
        }
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::CapRejected {
            subject: subject("alice")
        }]
    );
    // Other subjects are unaffected; alice's existing sessions are intact.
    create(&h, "bob").await;
    for (_, t) in &ids {
        validate(&h, t).await.unwrap();
    }
    let listed: Vec<SessionId> = h
        .sessions
        .list(&subject("alice"))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, ids.iter().map(|(id, _)| *id).collect::<Vec<_>>());
    // Revoking one frees a place.
    h.sessions.trusted_by_id().revoke(&ids[0].0).await.unwrap();
    create(&h, "alice").await;
    // Expired sessions do not count either.
    h.advance(mins(30));
    for _ in 0..3 {
        create(&h, "alice").await;
    }
}

#[tokio::test]
async fn subject_cap_evict_oldest_revokes_the_oldest_and_emits_evicted() {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }))
        .build()
        .unwrap();
    let h = H::new(policy);
    let (a, ta) = create(&h, "alice").await;
    h.advance(secs(1));
    let (b, tb) = create(&h, "alice").await;
    h.advance(secs(1));
    let from = h.events().len();
    let (c, tc) = create(&h, "alice").await;
    assert_eq!(
        h.events_since(from),
        vec![
            Event::Evicted { id: a },
            Event::Created {
                id: c,
                subject: subject("alice")
            }
        ]
    );
    assert_err!(
        validate(&h, &ta).await,
        Error::Revoked {
            reason: RevokeReason::Evicted
        }
    );
    validate(&h, &tb).await.unwrap();
    validate(&h, &tc).await.unwrap();
    let listed: Vec<SessionId> = h
        .sessions
        .list(&subject("alice"))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![b, c]);

    h.advance(secs(1));
    let from = h.events().len();
    let (d, _) = create(&h, "alice").await;
    assert_eq!(h.events_since(from)[0], Event::Evicted { id: b });
    assert_err!(
        validate(&h, &tb).await,
        Error::Revoked {
            reason: RevokeReason::Evicted
        }
    );
    let listed: Vec<SessionId> = h
        .sessions
        .list(&subject("alice"))
        .await
        .unwrap()
        .iter()
        .map(|s| s.id)
        .collect();
    assert_eq!(listed, vec![c, d]);
}

#[tokio::test]
async fn creation_rate_rejects_with_exact_retry_after_and_accepts_once_the_window_rolls() {
    let policy = Policy::builder()
        .creation_rate(Some(Rate {
            max: 2,
            window: secs(60),
        }))
        .build()
        .unwrap();
    let h = H::new(policy);
    let t0 = h.now();
    create(&h, "alice").await;
    h.clock.set(t0.saturating_add(secs(10)));
    create(&h, "alice").await;

    h.clock.set(t0.saturating_add(secs(20)));
    let from = h.events().len();
    assert_err!(
        h.sessions
            .create(&subject("alice"), CreateOptions::default())
            .await,
        Error::RateLimited { retry_after } if retry_after == secs(40)
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::RateLimited {
            subject: subject("alice"),
            retry_after: secs(40)
        }]
    );
    // Another subject has its own window.
    create(&h, "bob").await;

    h.clock.set(t0.saturating_add(secs(60) - MS));
    assert_err!(
        h.sessions
            .create(&subject("alice"), CreateOptions::default())
            .await,
        Error::RateLimited { retry_after } if retry_after == MS
    );
    // The window rolls: the t0 creation leaves it at exactly t0 + 60 s.
    h.clock.set(t0.saturating_add(secs(60)));
    create(&h, "alice").await;
    // Now the oldest in the window is t0 + 10 s.
    h.clock.set(t0.saturating_add(secs(61)));
    assert_err!(
        h.sessions
            .create(&subject("alice"), CreateOptions::default())
            .await,
        Error::RateLimited { retry_after } if retry_after == secs(9)
    );
    // Rejected attempts were not counted as creations.
    h.clock.set(t0.saturating_add(secs(70)));
    create(&h, "alice").await;
}

#[tokio::test]
async fn global_cap_counts_live_sessions_of_every_subject() {
    let policy = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 2,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let h = H::new(policy);
    let (a, _) = create(&h, "alice").await;
    create(&h, "bob").await;
    let from = h.events().len();
    assert_err!(
        h.sessions
            .create(&subject("carol"), CreateOptions::default())
            .await,
        Error::LimitReached {
            limit: Limit::GlobalSessions
        }
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::CapRejected {
            subject: subject("carol")
        }]
    );
    h.sessions.trusted_by_id().revoke(&a).await.unwrap();
    create(&h, "carol").await;
    assert_err!(
        h.sessions
            .create(&subject("dave"), CreateOptions::default())
            .await,
        Error::LimitReached {
            limit: Limit::GlobalSessions
        }
    );
    h.advance(mins(30)); // everything expires
    create(&h, "dave").await;
    create(&h, "erin").await;
}

// ---------------------------------------------------------------------------------------------
// Tickets
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn ticket_is_redeemed_once_then_not_authenticated() {
    let h = H::new(Policy::default());
    let (id, t) = create(&h, "alice").await;
    let from = h.events().len();
    let tk = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    let ticket = h.remember(tk.ticket.expose_secret());
    assert!(ticket.starts_with("lht1_"));
    assert_eq!(tk.validated.session.id, id);
    assert_eq!(tk.expires_at, h.now().saturating_add(secs(30)));

    let s = h.sessions.redeem_ticket(&ticket).await.unwrap();
    assert_eq!(s.id, id);
    assert_eq!(s.subject, subject("alice"));
    assert_err!(
        h.sessions.redeem_ticket(&ticket).await,
        Error::NotAuthenticated
    );
    assert_eq!(
        h.events_since(from),
        vec![
            Event::TicketMinted {
                ticket: *tk.ticket.id(),
                session: id
            },
            Event::TicketRedeemed {
                ticket: *tk.ticket.id(),
                session: id
            }
        ]
    );
    h.assert_no_secret_leaks();
}

#[tokio::test]
async fn ticket_expires_exactly_at_its_ttl() {
    let h = H::new(Policy::default());
    let (_, t) = create(&h, "alice").await;
    let t1 = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    let t2 = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    h.advance(secs(30) - MS);
    h.sessions
        .redeem_ticket(t1.ticket.expose_secret())
        .await
        .unwrap();
    h.advance(MS);
    assert_err!(
        h.sessions.redeem_ticket(t2.ticket.expose_secret()).await,
        Error::Expired
    );
    // And an expired ticket is consumed: presenting it again finds nothing.
    assert_err!(
        h.sessions.redeem_ticket(t2.ticket.expose_secret()).await,
        Error::NotAuthenticated
    );
}

#[tokio::test]
async fn ticket_never_outlives_its_session() {
    let policy = Policy::builder()
        .idle_timeout(Some(secs(20)))
        .touch_granularity(secs(1))
        .renewal_interval(None)
        .build()
        .unwrap();
    let h = H::new(policy);
    let (_, t) = create(&h, "alice").await;
    let tk = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    assert_eq!(tk.expires_at, tk.validated.session.expires_at);
    assert_eq!(tk.expires_at, h.now().saturating_add(secs(20)));
    h.advance(secs(20));
    assert_err!(
        h.sessions.redeem_ticket(tk.ticket.expose_secret()).await,
        Error::Expired
    );
}

#[tokio::test]
async fn ticket_of_a_revoked_session_cannot_be_redeemed() {
    let h = H::new(Policy::default());
    let (id, t) = create(&h, "alice").await;
    let tk = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    h.sessions.trusted_by_id().revoke(&id).await.unwrap();
    let from = h.events().len();
    assert_err!(
        h.sessions.redeem_ticket(tk.ticket.expose_secret()).await,
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    assert_eq!(
        count(&h.events_since(from), |e| matches!(
            e,
            Event::TicketRedeemed { .. }
        )),
        0
    );
    // Nor can a revoked session mint one.
    assert_err!(
        h.sessions.mint_ticket(&t, &Context::none()).await,
        Error::Revoked { .. }
    );
}

// ---------------------------------------------------------------------------------------------
// Slots
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn slot_acquire_heartbeat_release() {
    let h = H::new(Policy::default()); // slot ttl 60 s
    let (id, _) = create(&h, "alice").await;
    let from = h.events().len();
    let lease = h.sessions.acquire_slot(&id, None).await.unwrap();
    assert_eq!(lease.expires_at, h.now().saturating_add(secs(60)));
    h.advance(secs(59));
    let hb = h.sessions.heartbeat_slot(&lease.id).await.unwrap();
    assert_eq!(hb.id, lease.id);
    assert_eq!(hb.expires_at, h.now().saturating_add(secs(60)));
    // The heartbeat moved the expiry: past the original 60 s it is still held.
    h.advance(secs(30));
    h.sessions.heartbeat_slot(&lease.id).await.unwrap();
    assert!(h.sessions.release_slot(&lease.id).await.unwrap());
    assert!(!h.sessions.release_slot(&lease.id).await.unwrap());
    assert_err!(h.sessions.heartbeat_slot(&lease.id).await, Error::SlotLost);
    assert_eq!(
        h.events_since(from),
        vec![
            Event::SlotAcquired {
                slot: lease.id,
                session: id
            },
            Event::SlotReleased { slot: lease.id },
            Event::SlotExpired { slot: lease.id },
        ]
    );
}

#[tokio::test]
async fn slot_caps_per_session_and_per_resource() {
    let policy = Policy::builder()
        .max_slots_per_session(Some(2))
        .max_slots_per_resource(Some(3))
        .build()
        .unwrap();
    let h = H::new(policy);
    let r = resource("term-1");
    let (s1, _) = create(&h, "alice").await;
    let (s2, _) = create(&h, "bob").await;
    let l1 = h.sessions.acquire_slot(&s1, Some(&r)).await.unwrap();
    h.sessions.acquire_slot(&s1, Some(&r)).await.unwrap();
    assert_err!(
        h.sessions.acquire_slot(&s1, None).await,
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    );
    h.sessions.acquire_slot(&s2, Some(&r)).await.unwrap();
    assert_err!(
        h.sessions.acquire_slot(&s2, Some(&r)).await,
        Error::LimitReached {
            limit: Limit::ResourceSlots
        }
    );
    // Without the resource, s2 still has room of its own.
    h.sessions.acquire_slot(&s2, None).await.unwrap();
    assert_err!(
        h.sessions.acquire_slot(&s2, None).await,
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    );
    // Releasing frees both the session's and the resource's place.
    assert!(h.sessions.release_slot(&l1.id).await.unwrap());
    h.sessions.acquire_slot(&s1, Some(&r)).await.unwrap();
    assert_err!(
        h.sessions.acquire_slot(&s1, Some(&r)).await,
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    );
}

#[tokio::test]
async fn slot_self_expires_after_slot_ttl_and_frees_the_cap() {
    let policy = Policy::builder()
        .max_slots_per_session(Some(1))
        .build()
        .unwrap();
    let h = H::new(policy);
    let (id, _) = create(&h, "alice").await;
    let lease = h.sessions.acquire_slot(&id, None).await.unwrap();
    h.advance(secs(60) - MS);
    assert_err!(
        h.sessions.acquire_slot(&id, None).await,
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    );
    h.advance(MS);
    let lease2 = h.sessions.acquire_slot(&id, None).await.unwrap();
    assert_ne!(lease2.id, lease.id);
    assert_err!(h.sessions.heartbeat_slot(&lease.id).await, Error::SlotLost);
    h.sessions.heartbeat_slot(&lease2.id).await.unwrap();
}

#[tokio::test]
async fn heartbeat_of_a_slot_whose_session_was_revoked_is_slot_lost() {
    let h = H::new(Policy::default());
    let (a, _) = create(&h, "alice").await;
    let (b, _) = create(&h, "bob").await;
    let la = h.sessions.acquire_slot(&a, None).await.unwrap();
    let lb = h.sessions.acquire_slot(&b, None).await.unwrap();
    h.sessions.trusted_by_id().revoke(&a).await.unwrap();
    h.sessions.revoke_subject(&subject("bob")).await.unwrap();
    for l in [la, lb] {
        let from = h.events().len();
        assert_err!(h.sessions.heartbeat_slot(&l.id).await, Error::SlotLost);
        assert_eq!(
            h.events_since(from),
            vec![Event::SlotExpired { slot: l.id }]
        );
    }
    // A slot on a revoked session is refused with the session's ending.
    assert_err!(
        h.sessions.acquire_slot(&a, None).await,
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    assert_err!(
        h.sessions.acquire_slot(&b, None).await,
        Error::Revoked {
            reason: RevokeReason::Subject
        }
    );
}

// ---------------------------------------------------------------------------------------------
// Revocation
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_by_id_leaves_a_tombstone_and_is_idempotent() {
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await; // `a` is a predecessor inside grace
    let before = load(&h, &id).await;
    let from = h.events().len();
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::Revoked {
            id,
            reason: RevokeReason::Revoked
        }]
    );
    let rec = load(&h, &id).await;
    assert!(matches!(
        rec.state,
        SessionState::Revoked {
            reason: RevokeReason::Revoked,
            ..
        }
    ));
    assert_eq!(
        rec.expires_at, before.expires_at,
        "tombstone kept to deadline"
    );
    for t in [&a, &b] {
        assert_err!(
            validate(&h, t).await,
            Error::Revoked {
                reason: RevokeReason::Revoked
            }
        );
        assert_err!(
            h.sessions.refresh(t, &Context::none()).await,
            Error::Revoked { .. }
        );
    }
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::AlreadyRevoked {
            reason: RevokeReason::Revoked
        }
    );
    let unknown = SessionId::from_bytes([7; 18]);
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&unknown).await.unwrap(),
        RevokeOutcome::Unknown
    );
    assert_eq!(
        count(&h.events(), |e| matches!(e, Event::Revoked { .. })),
        1
    );
}

#[tokio::test]
async fn revoke_subject_revokes_every_session_of_the_subject_and_no_other() {
    let h = H::new(no_renewal());
    let (_, a1) = create(&h, "alice").await;
    let (_, a2) = create(&h, "alice").await;
    let (_, a3_old) = create(&h, "alice").await;
    let a3 = refresh(&h, &a3_old).await;
    let (_, b1) = create(&h, "bob").await;
    let from = h.events().len();
    assert_eq!(
        h.sessions.revoke_subject(&subject("alice")).await.unwrap(),
        3
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::SubjectRevoked {
            subject: subject("alice"),
            count: 3
        }]
    );
    for t in [&a1, &a2, &a3, &a3_old] {
        assert_err!(
            validate(&h, t).await,
            Error::Revoked {
                reason: RevokeReason::Subject
            }
        );
    }
    validate(&h, &b1).await.unwrap();
    assert!(h.sessions.list(&subject("alice")).await.unwrap().is_empty());
    assert_eq!(
        h.sessions.revoke_subject(&subject("alice")).await.unwrap(),
        0
    );
    // A session created after the call is unaffected.
    let (_, a4) = create(&h, "alice").await;
    validate(&h, &a4).await.unwrap();
}

#[tokio::test]
async fn revoke_resource_revokes_every_session_on_it() {
    let h = H::new(no_renewal());
    let on = |r: &str| CreateOptions {
        resource: Some(resource(r)),
        ..CreateOptions::default()
    };
    let (_, a) = create_with(&h, "alice", on("sandbox-1")).await;
    let (_, b) = create_with(&h, "bob", on("sandbox-1")).await;
    let (_, c) = create_with(&h, "alice", on("sandbox-2")).await;
    let (_, d) = create(&h, "alice").await;
    let from = h.events().len();
    assert_eq!(
        h.sessions
            .revoke_resource(&resource("sandbox-1"))
            .await
            .unwrap(),
        2
    );
    assert_eq!(
        h.events_since(from),
        vec![Event::ResourceRevoked {
            resource: resource("sandbox-1"),
            count: 2
        }]
    );
    for t in [&a, &b] {
        assert_err!(
            validate(&h, t).await,
            Error::Revoked {
                reason: RevokeReason::Resource
            }
        );
    }
    validate(&h, &c).await.unwrap();
    validate(&h, &d).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// List, data, reap, binding
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn list_returns_only_live_sessions_oldest_first_and_never_secrets() {
    let h = H::new(no_renewal());
    let t0 = h.now();
    let mut made = Vec::new();
    for i in 0..8u64 {
        h.clock.set(t0.saturating_add(mins(i)));
        let opts = CreateOptions {
            summary: Some(format!("device {i}")),
            ..CreateOptions::default()
        };
        made.push(create_with(&h, "alice", opts).await);
    }
    create(&h, "bob").await;
    h.sessions.trusted_by_id().revoke(&made[3].0).await.unwrap();
    // At t0 + 30 min, session 0 (never touched) has expired; session 1 has not.
    h.clock.set(t0.saturating_add(mins(30)));
    let list = h.sessions.list(&subject("alice")).await.unwrap();
    let ids: Vec<SessionId> = list.iter().map(|s| s.id).collect();
    let want: Vec<SessionId> = [1, 2, 4, 5, 6, 7].iter().map(|&i| made[i].0).collect();
    assert_eq!(ids, want);
    assert!(list.windows(2).all(|w| w[0].created_at < w[1].created_at));
    assert!(list.iter().all(|s| s.subject == subject("alice")));
    assert_eq!(list[0].summary.as_deref(), Some("device 1"));
    let shown = format!("{list:?}");
    for (_, t) in &made {
        assert!(!shown.contains(secret_part(t)), "list leaks a secret");
    }
    assert!(
        h.sessions
            .list(&subject("nobody"))
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn update_data_is_compare_and_swap_on_the_data_version() {
    let h = H::new(no_renewal());
    let opts = CreateOptions {
        data: b"v0".to_vec(),
        ..CreateOptions::default()
    };
    let (id, t) = create_with(&h, "alice", opts).await;
    let v = validate(&h, &t).await.unwrap();
    assert_eq!(v.session.data, b"v0");
    assert_eq!(v.session.data_version, 0);

    let s = h.sessions.update_data(&id, 0, b"a").await.unwrap();
    assert_eq!((s.data.as_slice(), s.data_version), (&b"a"[..], 1));
    // A stale writer (still at version 0) is refused; its data is not written.
    assert_err!(
        h.sessions.update_data(&id, 0, b"stale").await,
        Error::VersionConflict
    );
    assert_eq!(validate(&h, &t).await.unwrap().session.data, b"a");

    // Two clients both read version 1: the first wins, the second conflicts, nothing is lost.
    let seen_by_both = validate(&h, &t).await.unwrap().session.data_version;
    h.sessions
        .update_data(&id, seen_by_both, b"client-1")
        .await
        .unwrap();
    assert_err!(
        h.sessions.update_data(&id, seen_by_both, b"client-2").await,
        Error::VersionConflict
    );
    let v = validate(&h, &t).await.unwrap();
    assert_eq!(v.session.data, b"client-1");
    assert_eq!(v.session.data_version, 2);
    // Client 2 re-reads and retries.
    h.sessions.update_data(&id, 2, b"client-2").await.unwrap();
    assert_eq!(validate(&h, &t).await.unwrap().session.data, b"client-2");

    // A data update survives a later touch and a rotation.
    h.advance(mins(2));
    let t2 = refresh(&h, &t).await;
    let v = validate(&h, &t2).await.unwrap();
    assert_eq!(
        (v.session.data.as_slice(), v.session.data_version),
        (&b"client-2"[..], 3)
    );

    h.sessions.trusted_by_id().revoke(&id).await.unwrap();
    assert_err!(
        h.sessions.update_data(&id, 3, b"x").await,
        Error::Revoked { .. }
    );
}

#[tokio::test]
async fn reap_removes_only_expired_and_dead_tombstones_within_the_batch_limit() {
    let h = H::new(no_renewal()); // idle 30 min
    let t0 = h.now();
    let mut expired = Vec::new();
    for _ in 0..3 {
        expired.push(create(&h, "alice").await);
    }
    let (r1, tr1) = create(&h, "alice").await;
    let (l1, tl1) = create(&h, "alice").await;
    h.clock.set(t0.saturating_add(mins(1)));
    h.sessions.trusted_by_id().revoke(&r1).await.unwrap(); // tombstone, deadline t0 + 30 min
    h.clock.set(t0.saturating_add(mins(10)));
    let (r2, tr2) = create(&h, "bob").await;
    h.sessions.trusted_by_id().revoke(&r2).await.unwrap(); // tombstone, deadline t0 + 40 min
    let (_l2, tl2) = create(&h, "bob").await; // deadline t0 + 40 min
    h.clock.set(t0.saturating_add(mins(20)));
    validate(&h, &tl1).await.unwrap(); // touched: deadline t0 + 50 min
    assert_eq!(h.sessions.store().session_count(), 7);

    // Nothing is due before the first deadline.
    h.clock.set(t0.saturating_add(mins(30) - MS));
    assert_eq!(h.sessions.reap(100).await.unwrap().total(), 0);

    h.clock.set(t0.saturating_add(mins(30)));
    let from = h.events().len();
    let r = h.sessions.reap(2).await.unwrap();
    assert_eq!((r.sessions, r.total()), (2, 2));
    assert_eq!(h.events_since(from), vec![Event::Reaped { count: 2 }]);
    assert_eq!(h.sessions.reap(2).await.unwrap().sessions, 2);
    assert_eq!(h.sessions.reap(2).await.unwrap().total(), 0);
    assert_eq!(h.sessions.store().session_count(), 3);
    // The reaped are gone (unknown), the live untouched, the retained tombstone still answers.
    for (_, t) in &expired {
        assert_err!(validate(&h, t).await, Error::NotAuthenticated);
    }
    assert_err!(validate(&h, &tr1).await, Error::NotAuthenticated);
    assert_err!(validate(&h, &tr2).await, Error::Revoked { .. });
    validate(&h, &tl1).await.unwrap();
    validate(&h, &tl2).await.unwrap(); // touched now: deadline t0 + 60 min
    assert_eq!(load(&h, &l1).await.state, SessionState::Active);

    h.clock.set(t0.saturating_add(mins(40)));
    let r = h.sessions.reap(100).await.unwrap();
    assert_eq!(r.sessions, 1, "only the tombstone past its deadline");
    assert_err!(validate(&h, &tr2).await, Error::NotAuthenticated);
    validate(&h, &tl1).await.unwrap();
    validate(&h, &tl2).await.unwrap();
    assert_eq!(h.sessions.store().session_count(), 2);
}

#[tokio::test]
async fn reap_removes_expired_tickets_and_slots_but_not_live_ones() {
    let h = H::new(no_renewal());
    let (id, t) = create(&h, "alice").await;
    let old_ticket = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    let old_slot = h.sessions.acquire_slot(&id, None).await.unwrap();
    h.advance(secs(60));
    let live_ticket = h.sessions.mint_ticket(&t, &Context::none()).await.unwrap();
    let live_slot = h.sessions.acquire_slot(&id, None).await.unwrap();
    let r = h.sessions.reap(100).await.unwrap();
    assert_eq!((r.sessions, r.tickets, r.slots), (0, 1, 1));
    assert_err!(
        h.sessions
            .redeem_ticket(old_ticket.ticket.expose_secret())
            .await,
        Error::NotAuthenticated
    );
    assert_err!(
        h.sessions.heartbeat_slot(&old_slot.id).await,
        Error::SlotLost
    );
    h.sessions
        .redeem_ticket(live_ticket.ticket.expose_secret())
        .await
        .unwrap();
    h.sessions.heartbeat_slot(&live_slot.id).await.unwrap();
    validate(&h, &t).await.unwrap();
}

#[tokio::test]
async fn context_binding_must_match_unless_not_enforced() {
    let bound = CreateOptions {
        context: Context::bound("device-1"),
        ..CreateOptions::default()
    };
    let h = H::new(no_renewal());
    let (id, t) = create_with(&h, "alice", bound.clone()).await;
    let (_, unbound) = create(&h, "alice").await;
    for ctx in [
        Context::none(),
        Context::bound("device-2"),
        Context::bound(""),
    ] {
        assert_err!(h.sessions.validate(&t, &ctx).await, Error::BindingMismatch);
        assert_err!(h.sessions.refresh(&t, &ctx).await, Error::BindingMismatch);
        assert_err!(
            h.sessions.mint_ticket(&t, &ctx).await,
            Error::BindingMismatch
        );
    }
    // Refused refreshes rotated nothing.
    assert_eq!(load(&h, &id).await.credential.generation, 0);
    h.sessions
        .validate(&t, &Context::bound("device-1"))
        .await
        .unwrap();
    // A session created without a binding accepts any context.
    h.sessions
        .validate(&unbound, &Context::bound("anything"))
        .await
        .unwrap();
    // The binding is stored only as a hash.
    let dump = h.sessions.store().raw_dump().await.unwrap().unwrap();
    assert!(!dump.iter().any(|b| b.windows(8).any(|w| w == b"device-1")));

    let h = H::new(
        Policy::builder()
            .renewal_interval(None)
            .enforce_binding(false)
            .build()
            .unwrap(),
    );
    let (_, t) = create_with(&h, "alice", bound).await;
    for ctx in [Context::none(), Context::bound("device-2")] {
        h.sessions.validate(&t, &ctx).await.unwrap();
    }
}

#[tokio::test]
async fn store_never_holds_a_token_secret() {
    // INV-hash-at-rest, for the reference store: neither the text nor the raw bytes.
    use base64::Engine as _;
    let h = H::new(no_renewal());
    let (id, a) = create(&h, "alice").await;
    let b = refresh(&h, &a).await;
    let tk = h.sessions.mint_ticket(&b, &Context::none()).await.unwrap();
    h.sessions.acquire_slot(&id, None).await.unwrap();
    let dump = h.sessions.store().raw_dump().await.unwrap().unwrap();
    assert!(!dump.is_empty());
    for t in [a.as_str(), b.as_str(), tk.ticket.expose_secret()] {
        let text = secret_part(t).as_bytes();
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret_part(t))
            .unwrap();
        for blob in &dump {
            assert!(!blob.windows(text.len()).any(|w| w == text));
            assert!(!blob.windows(raw.len()).any(|w| w == raw.as_slice()));
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Events and round trips
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn every_state_change_emits_its_event_and_no_event_shows_a_secret() {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }))
        .creation_rate(Some(Rate {
            max: 2,
            window: mins(1),
        }))
        .build()
        .unwrap();
    let h = H::new(policy);
    let res = CreateOptions {
        resource: Some(resource("box")),
        ..CreateOptions::default()
    };
    let (id, a) = create_with(&h, "alice", res.clone()).await;
    h.advance(secs(1));
    let b = refresh(&h, &a).await;
    validate(&h, &a).await.unwrap(); // SuccessorReissued
    let tk = h.sessions.mint_ticket(&b, &Context::none()).await.unwrap();
    h.remember(tk.ticket.expose_secret());
    h.sessions
        .redeem_ticket(tk.ticket.expose_secret())
        .await
        .unwrap();
    let slot = h.sessions.acquire_slot(&id, None).await.unwrap();
    h.sessions.release_slot(&slot.id).await.unwrap();
    let slot = h.sessions.acquire_slot(&id, None).await.unwrap();
    h.advance(secs(61));
    let _ = h.sessions.heartbeat_slot(&slot.id).await; // SlotExpired
    h.advance(secs(1));
    create(&h, "alice").await;
    create(&h, "alice").await; // evicts the first: Evicted
    assert_err!(
        h.sessions
            .create(&subject("alice"), CreateOptions::default())
            .await,
        Error::RateLimited { .. }
    );
    let (c, tc) = create_with(&h, "bob", res).await;
    h.advance(secs(1));
    let tc2 = refresh(&h, &tc).await;
    validate(&h, &tc2).await.unwrap();
    h.advance(secs(1));
    let _tc3 = refresh(&h, &tc2).await;
    assert_err!(validate(&h, &tc).await, Error::ReuseDetected); // ReuseDetected + Revoked
    let (d, _) = create(&h, "carol").await;
    h.sessions.trusted_by_id().revoke(&d).await.unwrap();
    create(&h, "dave").await;
    h.sessions.revoke_subject(&subject("dave")).await.unwrap();
    create_with(
        &h,
        "erin",
        CreateOptions {
            resource: Some(resource("box2")),
            ..CreateOptions::default()
        },
    )
    .await;
    h.sessions.revoke_resource(&resource("box2")).await.unwrap();
    let (_, te) = create(&h, "frank").await;
    h.advance(mins(30));
    assert_err!(validate(&h, &te).await, Error::Expired); // ExpiredOnRead
    let capped = Harness::new(
        Policy::builder()
            .global_cap(Some(leasehold::GlobalCap {
                max: 1,
                on_full: leasehold::CapPolicy::Reject,
            }))
            .build()
            .unwrap(),
    );
    capped
        .sessions
        .create(&subject("x"), CreateOptions::default())
        .await
        .unwrap();
    assert!(
        capped
            .sessions
            .create(&subject("y"), CreateOptions::default())
            .await
            .is_err()
    );
    h.advance(Duration::from_secs(25 * 3600));
    h.sessions.reap(1000).await.unwrap(); // Reaped

    let mut kinds: Vec<String> = h
        .events()
        .iter()
        .chain(capped.events().iter())
        .map(|e| {
            let s = format!("{e:?}");
            s.split([' ', '{', '(']).next().unwrap().to_owned()
        })
        .collect();
    kinds.sort();
    kinds.dedup();
    let want = [
        "CapRejected",
        "Created",
        "Evicted",
        "ExpiredOnRead",
        "Reaped",
        "RateLimited",
        "ResourceRevoked",
        "ReuseDetected",
        "Revoked",
        "Rotated",
        "SlotAcquired",
        "SlotExpired",
        "SlotReleased",
        "SubjectRevoked",
        "SuccessorReissued",
        "TicketMinted",
        "TicketRedeemed",
    ];
    let mut want: Vec<String> = want.iter().map(|s| s.to_string()).collect();
    want.sort();
    assert_eq!(kinds, want);
    assert!(h.events().contains(&Event::Revoked {
        id: c,
        reason: RevokeReason::ReuseDetected
    }));
    h.assert_no_secret_leaks();
    // Errors carry no secret either.
    let e = validate(&h, &b).await.unwrap_err();
    assert!(!format!("{e:?} {e}").contains(secret_part(&b)));
}

#[tokio::test]
async fn validate_with_no_touch_due_costs_exactly_one_store_round_trip() {
    let h = Harness::counting(no_renewal());
    let c = h
        .sessions
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let t = c.token.expose_secret().to_owned();
    assert_eq!(h.calls().insert, 1);
    h.reset_calls();

    h.advance(secs(30));
    validate_counting(&h, &t).await;
    let calls = h.calls();
    assert_eq!(
        (calls.load, calls.cas, calls.total()),
        (1, 0, 1),
        "{calls:?}"
    );

    h.reset_calls();
    h.advance(secs(30)); // 60 s since creation: touch due
    validate_counting(&h, &t).await;
    let calls = h.calls();
    assert_eq!(
        (calls.load, calls.cas, calls.total()),
        (1, 1, 2),
        "{calls:?}"
    );

    // Refresh and revoke: at most two round trips (load + CAS).
    h.reset_calls();
    let r = h.sessions.refresh(&t, &Context::none()).await.unwrap();
    let calls = h.calls();
    assert_eq!(
        (calls.load, calls.cas, calls.total()),
        (1, 1, 2),
        "{calls:?}"
    );
    // A predecessor inside grace, no touch due: one round trip.
    h.reset_calls();
    validate_counting(&h, &t).await;
    assert_eq!(h.calls().total(), 1);
    h.reset_calls();
    assert_eq!(
        h.sessions
            .trusted_by_id()
            .revoke(&r.session.id)
            .await
            .unwrap(),
        RevokeOutcome::Revoked
    );
    let calls = h.calls();
    assert_eq!(
        (calls.load, calls.cas, calls.total()),
        (1, 1, 2),
        "{calls:?}"
    );
}

async fn validate_counting(h: &Harness<Counting>, t: &str) {
    h.sessions.validate(t, &Context::none()).await.unwrap();
}

#[test]
fn pure_decisions_for_missing_foreign_and_revoked_records() {
    let policy = Policy::default();
    let e = SeededEntropy::new(4);
    let t0 = Timestamp::from_millis(1_000);
    let (rec, tok) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        t0,
        &policy,
        &e,
    )
    .unwrap();
    let (other, other_tok) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        t0,
        &policy,
        &e,
    )
    .unwrap();
    let p = token::parse(tok.expose_secret().as_bytes(), "lh1").unwrap();
    let run = |r: Option<&SessionRecord>, p: &token::Presented| {
        read::read(r, p, &Context::none(), ReadMode::Validate, t0, &policy, &e)
    };
    // No record: not authenticated, no write.
    let d = run(None, &p);
    assert!(d.write.is_none() && matches!(d.outcome, Err(Error::NotAuthenticated)));
    // A record stored under another id: fail closed.
    let d = run(Some(&other), &p);
    assert!(d.write.is_none() && matches!(d.outcome, Err(Error::CorruptRecord(_))));
    // Right id, wrong secret: not authenticated, nothing written, nothing revoked.
    let mut forged = tok.expose_secret().as_bytes().to_vec();
    let n = forged.len();
    forged[n - 43..].copy_from_slice(&other_tok.expose_secret().as_bytes()[n - 43..]);
    let pf = token::parse(&forged, "lh1").unwrap();
    let d = run(Some(&rec), &pf);
    assert!(d.write.is_none() && matches!(d.outcome, Err(Error::NotAuthenticated)));
    assert!(d.events.is_empty());
    // A tombstone: revoked, whatever the time.
    let dead = rec.tombstone(t0, RevokeReason::Revoked);
    let d = run(Some(&dead), &p);
    assert!(d.write.is_none());
    assert!(matches!(
        d.outcome,
        Err(Error::Revoked {
            reason: RevokeReason::Revoked
        })
    ));
    // Revoking: live → tombstone with next version; past its deadline (not yet ended) → a
    // tombstone too (a revocation never depends on a clock); a tombstone → no write, already
    // revoked with its reason; absent → no write, unknown.
    let d = decide::mutate::revoke(Some(&rec), t0);
    let w = d.write.unwrap();
    assert_eq!(w.version, rec.version + 1);
    assert!(matches!(
        w.state,
        SessionState::Revoked {
            reason: RevokeReason::Revoked,
            ..
        }
    ));
    assert!(matches!(d.outcome, Ok(RevokeOutcome::Revoked)));
    let d = decide::mutate::revoke(Some(&dead), t0);
    assert!(d.write.is_none());
    assert!(matches!(
        d.outcome,
        Ok(RevokeOutcome::AlreadyRevoked {
            reason: RevokeReason::Revoked
        })
    ));
    let d = decide::mutate::revoke(Some(&rec), rec.expires_at);
    let w = d
        .write
        .expect("an expired, unended session still gets its tombstone");
    assert_eq!(w.version, rec.version + 1);
    assert!(matches!(
        w.state,
        SessionState::Revoked {
            reason: RevokeReason::Revoked,
            ..
        }
    ));
    assert!(matches!(d.outcome, Ok(RevokeOutcome::Revoked)));
    let d = decide::mutate::revoke(Some(&rec), rec.expires_at.saturating_add(mins(600)));
    assert!(d.write.is_some() && matches!(d.outcome, Ok(RevokeOutcome::Revoked)));
    let d = decide::mutate::revoke(None, t0);
    assert!(d.write.is_none() && matches!(d.outcome, Ok(RevokeOutcome::Unknown)));
    // A ticket never outlives its session.
    let (ticket, _) =
        decide::ticket::mint(&rec, rec.expires_at.saturating_sub(secs(5)), &policy, &e).unwrap();
    assert_eq!(ticket.expires_at, rec.expires_at);
    // Redeeming: a tombstone is refused without a write; a session past its deadline is
    // refused only after its Expired tombstone is written; a live one is granted, no write.
    let d = decide::ticket::redeem(Some(&dead), t0);
    assert!(d.write.is_none());
    assert!(matches!(
        d.outcome,
        Err(Error::Revoked {
            reason: RevokeReason::Revoked
        })
    ));
    let d = decide::ticket::redeem(Some(&rec), rec.expires_at);
    assert!(matches!(d.outcome, Err(Error::Expired)));
    let w = d
        .write
        .expect("an observed expiry is written down before it is answered");
    assert_eq!(w.version, rec.version + 1);
    assert!(matches!(
        w.state,
        SessionState::Revoked {
            reason: RevokeReason::Expired,
            ..
        }
    ));
    assert_eq!(d.events, vec![Event::ExpiredOnRead { id: rec.id }]);
    let d = decide::ticket::redeem(Some(&rec), t0);
    assert!(d.write.is_none());
    assert_eq!(d.outcome.unwrap(), rec);
    let d = decide::ticket::redeem(None, t0);
    assert!(d.write.is_none() && matches!(d.outcome, Err(Error::NotAuthenticated)));
    // Renewal due exactly at the interval.
    assert!(!read::renewal_due(
        &rec,
        t0.saturating_add(mins(15) - MS),
        &policy
    ));
    assert!(read::renewal_due(
        &rec,
        t0.saturating_add(mins(15)),
        &policy
    ));
}

#[tokio::test]
async fn a_rotated_out_token_from_another_device_is_still_reuse() {
    // Binding gates grants, never hides theft: presenting a retired secret from any device
    // revokes the session.
    let bound = CreateOptions {
        context: Context::bound("device-1"),
        ..CreateOptions::default()
    };
    let h = H::new(no_renewal());
    let (id, a) = create_with(&h, "alice", bound).await;
    let dev1 = Context::bound("device-1");
    let b = h.remember(
        h.sessions
            .refresh(&a, &dev1)
            .await
            .unwrap()
            .token
            .expose_secret(),
    );
    validate_ctx(&h, &b, &dev1).await.unwrap();
    let _c = h.remember(
        h.sessions
            .refresh(&b, &dev1)
            .await
            .unwrap()
            .token
            .expose_secret(),
    );
    // `a` is now a grand-predecessor; the thief presents it from device-2.
    assert_err!(
        h.sessions.validate(&a, &Context::bound("device-2")).await,
        Error::ReuseDetected
    );
    assert!(matches!(
        load(&h, &id).await.state,
        SessionState::Revoked {
            reason: RevokeReason::ReuseDetected,
            ..
        }
    ));
    // Inside grace, a predecessor from the wrong device is refused without revoking.
    let (id2, x) = create_with(
        &h,
        "bob",
        CreateOptions {
            context: Context::bound("device-1"),
            ..CreateOptions::default()
        },
    )
    .await;
    let _y = h.sessions.refresh(&x, &dev1).await.unwrap();
    assert_err!(
        h.sessions.validate(&x, &Context::bound("device-2")).await,
        Error::BindingMismatch
    );
    assert_eq!(load(&h, &id2).await.state, SessionState::Active);
}

async fn validate_ctx(h: &H, token: &str, ctx: &Context) -> Result<leasehold::Validated, Error> {
    h.sessions.validate(token, ctx).await
}

#[tokio::test]
async fn revoking_a_session_frees_its_slots_capacity_at_once() {
    let policy = Policy::builder()
        .max_slots_per_resource(Some(1))
        .build()
        .unwrap();
    let h = H::new(policy);
    let r = resource("sandbox-9");
    let (s1, _) = create(&h, "alice").await;
    let (s2, _) = create(&h, "bob").await;
    h.sessions.acquire_slot(&s1, Some(&r)).await.unwrap();
    assert_err!(
        h.sessions.acquire_slot(&s2, Some(&r)).await,
        Error::LimitReached {
            limit: Limit::ResourceSlots
        }
    );
    assert_eq!(
        h.sessions.trusted_by_id().revoke(&s1).await.unwrap(),
        RevokeOutcome::Revoked
    );
    // No waiting for the slot's TTL: a revoked session holds no capacity.
    h.sessions.acquire_slot(&s2, Some(&r)).await.unwrap();
}

#[tokio::test]
async fn an_over_long_binding_on_validate_is_refused_before_the_store() {
    let counting = Counting::new(MemoryStore::new());
    let h = Harness::with_store(counting.clone(), no_renewal());
    let c = h
        .sessions
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    counting.reset();
    let huge = Context::bound("x".repeat(decide::MAX_BINDING_LEN + 1));
    assert_err!(
        h.sessions.validate(c.token.expose_secret(), &huge).await,
        Error::InvalidInput(leasehold::InputError::TooLong {
            what: "binding",
            ..
        })
    );
    assert_eq!(counting.calls().total(), 0);
    let edge = Context::bound("x".repeat(decide::MAX_BINDING_LEN));
    h.sessions
        .validate(c.token.expose_secret(), &edge)
        .await
        .unwrap();
}

#[tokio::test]
async fn global_cap_frees_up_as_sessions_expire_without_reaping() {
    let policy = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 2,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .renewal_interval(None)
        .build()
        .unwrap();
    let h = H::new(policy);
    create(&h, "a").await;
    h.advance(mins(10));
    create(&h, "b").await;
    assert_err!(
        h.sessions
            .create(&subject("c"), CreateOptions::default())
            .await,
        Error::LimitReached {
            limit: Limit::GlobalSessions
        }
    );
    // The first session's idle deadline passes (30 min after creation); nothing is reaped,
    // yet it no longer counts.
    h.advance(mins(20));
    create(&h, "c").await;
    assert_err!(
        h.sessions
            .create(&subject("d"), CreateOptions::default())
            .await,
        Error::LimitReached {
            limit: Limit::GlobalSessions
        }
    );
    // A revoked session does not count either.
    let (e, _) = (h.sessions.list(&subject("c")).await.unwrap()[0].id, ());
    h.sessions.trusted_by_id().revoke(&e).await.unwrap();
    create(&h, "d").await;
}

#[tokio::test]
async fn with_zero_touch_granularity_a_second_read_at_the_same_instant_writes_nothing() {
    let h = H::new(
        Policy::builder()
            .renewal_interval(None)
            .touch_granularity(Duration::ZERO)
            .build()
            .unwrap(),
    );
    let (id, t) = create(&h, "alice").await;
    let created = load(&h, &id).await.version;
    // Same instant as the create: nothing moved, nothing to write.
    validate(&h, &t).await.unwrap();
    assert_eq!(load(&h, &id).await.version, created);
    h.advance(ms(1));
    validate(&h, &t).await.unwrap();
    assert_eq!(
        load(&h, &id).await.version,
        created + 1,
        "granularity 0 writes every move"
    );
    validate(&h, &t).await.unwrap();
    assert_eq!(load(&h, &id).await.version, created + 1);
}

#[tokio::test]
async fn update_data_accepts_exactly_max_data_len() {
    let h = H::new(Policy::builder().max_data_len(16).build().unwrap());
    let (id, _) = create(&h, "alice").await;
    let s = h.sessions.update_data(&id, 0, &[1; 16]).await.unwrap();
    assert_eq!(s.data, vec![1; 16]);
    assert_err!(
        h.sessions.update_data(&id, 1, &[1; 17]).await,
        Error::InvalidInput(leasehold::InputError::TooLong {
            what: "data",
            max: 16
        })
    );
}

/// The seed systems' hot reads cost one store round trip: an access token, a by-id `get`, a
/// by-id `keepalive` with no touch due, and a refused pre-grant check (it writes nothing).
#[tokio::test]
async fn access_by_id_and_checked_reads_cost_one_store_round_trip() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .access_ttl(Some(Duration::from_secs(15 * 60)))
        .build()
        .unwrap();
    let h = Harness::counting(policy);
    let c = h
        .sessions
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let access = c.access.unwrap();
    let t = c.token.expose_secret().to_owned();
    h.advance(secs(30));
    h.reset_calls();
    h.sessions
        .validate_access(access.expose_secret())
        .await
        .unwrap();
    h.sessions.trusted_by_id().get(&c.session.id).await.unwrap();
    h.sessions
        .trusted_by_id()
        .keepalive(&c.session.id)
        .await
        .unwrap();
    assert_eq!(
        h.sessions
            .validate_as(&t, &Context::none(), &subject("bob"))
            .await
            .err(),
        Some(Error::Refused)
    );
    let calls = h.calls();
    assert_eq!(
        (calls.load, calls.cas, calls.total()),
        (4, 0, 4),
        "{calls:?}"
    );
    // A refused check with a touch due still writes nothing.
    h.advance(secs(60));
    h.reset_calls();
    assert!(
        h.sessions
            .validate_with(&t, &Context::none(), |_| false)
            .await
            .is_err()
    );
    assert_eq!((h.calls().cas, h.calls().total()), (0, 1));
}
