//! INV-no-resurrection: once a session is expired or revoked at time t, no operation at any
//! time ≥ t, under any interleaving or retry, makes it valid again.

use std::collections::HashSet;

use leasehold::store::{CreateLimits, StoreError};
use leasehold::{Context, Error, RevokeOutcome, RevokeReason};

use super::{S, build, create, default_policy, revoke_live, text, validates};
use crate::env::{CaseResult, Env, count, describe, ensure, fail, mins, ms, race, secs, subject};

fn revoked_by(e: &Error, want: RevokeReason) -> bool {
    matches!(e, Error::Revoked { reason } if *reason == want)
}

/// Revoke, then every operation on the session is refused, at once and later.
pub(crate) async fn revoke_then_validate(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    revoke_live(&s, &c.session.id).await?;
    for step in ["at once", "10 min later"] {
        match s.validate(&t, &Context::none()).await {
            Err(e) if revoked_by(&e, RevokeReason::Revoked) => {}
            other => fail!("validate {step} after revoke: expected Revoked, got {other:?}"),
        }
        match s.refresh(&t, &Context::none()).await {
            Err(e) if revoked_by(&e, RevokeReason::Revoked) => {}
            other => fail!("refresh {step} after revoke: expected Revoked, got {other:?}"),
        }
        ensure!(
            s.mint_ticket(&t, &Context::none()).await.is_err(),
            "a ticket was minted {step} after revoke"
        );
        ensure!(
            s.acquire_slot(&c.session.id, None).await.is_err(),
            "a slot was acquired {step} after revoke"
        );
        ensure!(
            s.update_data(&c.session.id, 0, b"x").await.is_err(),
            "data was updated {step} after revoke"
        );
        match s.trusted_by_id().revoke(&c.session.id).await? {
            RevokeOutcome::AlreadyRevoked {
                reason: RevokeReason::Revoked,
            } => {}
            other => {
                fail!("a second revoke {step}: expected AlreadyRevoked(Revoked), got {other:?}")
            }
        }
        env.advance(mins(10));
    }
    ensure!(
        s.list(&subject("alice")?).await?.is_empty(),
        "a revoked session is listed as live"
    );
    Ok(())
}

/// Idle expiry at exactly `last_seen + idle_timeout` is final for every operation.
pub(crate) async fn idle_expiry_is_final(env: Env) -> CaseResult {
    let s = env.sessions(build(leasehold::Policy::builder().renewal_interval(None))?)?;
    let alice = subject("alice")?;
    let a = create(&s, &alice).await?;
    let b = create(&s, &alice).await?;
    env.advance(mins(30) - ms(1));
    ensure!(
        validates(&s, &text(&b)).await,
        "a session 1 ms before its idle deadline does not validate"
    );
    env.advance(ms(1));
    for step in ["at the deadline", "an hour later"] {
        match s.validate(text(&a), &Context::none()).await {
            Err(Error::Expired) => {}
            other => fail!("validate {step}: expected Expired, got {other:?}"),
        }
        match s.refresh(text(&a), &Context::none()).await {
            Err(Error::Expired) => {}
            other => fail!("refresh {step}: expected Expired, got {other:?}"),
        }
        ensure!(
            s.update_data(&a.session.id, 0, b"x").await.is_err(),
            "update_data {step} succeeded on an expired session"
        );
        ensure!(
            s.acquire_slot(&a.session.id, None).await.is_err(),
            "a slot was acquired {step} on an expired session"
        );
        env.advance(mins(60));
    }
    Ok(())
}

/// A session used all along still dies at its absolute deadline, and stays dead.
pub(crate) async fn absolute_expiry_is_final(env: Env) -> CaseResult {
    let policy = build(
        leasehold::Policy::builder()
            .absolute_lifetime(mins(120))
            .renewal_interval(None),
    )?;
    let s = env.sessions(policy)?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let deadline = c.session.absolute_deadline;
    while env.now() < deadline.saturating_sub(mins(20)) {
        env.advance(mins(20));
        ensure!(
            validates(&s, &t).await,
            "a session in active use stopped validating before its absolute deadline"
        );
    }
    env.set_time(deadline.saturating_sub(ms(1)));
    ensure!(
        validates(&s, &t).await,
        "not valid 1 ms before the deadline"
    );
    env.set_time(deadline);
    for step in ["at the absolute deadline", "a day later"] {
        match s.validate(&t, &Context::none()).await {
            Err(Error::Expired | Error::NotAuthenticated) => {}
            other => fail!("validate {step}: expected Expired, got {other:?}"),
        }
        ensure!(
            s.refresh(&t, &Context::none()).await.is_err(),
            "refresh {step} succeeded"
        );
        env.advance(mins(24 * 60));
    }
    Ok(())
}

/// A compare-and-swap based on the record as it was before a revoke must not overwrite the
/// tombstone, so a slow writer cannot revive the session. The contract answers `NotFound` (a
/// tombstone is final whatever the version); `Conflict` (the stale version) is accepted too —
/// either way nothing is written, and the tombstone stays exactly as it was.
pub(crate) async fn stale_cas_after_revoke_conflicts(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let Some(before) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a created session does not load");
    };
    env.advance(secs(5));
    revoke_live(&s, &c.session.id).await?;
    let Some(tomb) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a revoked session's tombstone does not load");
    };
    let mut stale = before.clone();
    stale.version = before.version.wrapping_add(1);
    stale.last_seen = env.now();
    stale.expires_at = env.now().saturating_add(mins(30));
    match env
        .store()
        .compare_and_swap(&stale, before.version, env.now())
        .await
    {
        Err(StoreError::NotFound | StoreError::Conflict) => {}
        other => fail!(
            "CAS with the pre-revoke version over a tombstone: expected NotFound (or Conflict), \
             got {other:?}"
        ),
    }
    match env.store().load_session(&c.session.id).await?.record {
        Some(after) if after == tomb => {}
        other => fail!("the stale CAS changed the tombstone:\n before {tomb:?}\n after  {other:?}"),
    }
    match s.validate(text(&c), &Context::none()).await {
        Err(e) if revoked_by(&e, RevokeReason::Revoked) => Ok(()),
        other => fail!("after the stale CAS: expected Revoked, got {other:?}"),
    }
}

/// Expired records are immutable: a CAS at or after `expires_at` is `NotFound`, even with the
/// right version, and nothing moves the deadline.
pub(crate) async fn cas_after_expiry_is_not_found(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let Some(rec) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a created session does not load");
    };
    env.set_time(rec.expires_at);
    let mut revived = rec.clone();
    revived.version = rec.version.wrapping_add(1);
    revived.last_seen = env.now();
    revived.expires_at = env.now().saturating_add(mins(30));
    match env
        .store()
        .compare_and_swap(&revived, rec.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!("CAS on an expired record: expected NotFound, got {other:?}"),
    }
    if let Some(after) = env.store().load_session(&c.session.id).await?.record {
        ensure!(
            after.expires_at == rec.expires_at && after.version == rec.version,
            "the expired record changed: expires_at {:?} → {:?}, version {} → {}",
            rec.expires_at,
            after.expires_at,
            rec.version,
            after.version
        );
    }
    ensure!(
        !validates(&s, &text(&c)).await,
        "an expired session validates after a CAS attempt"
    );
    Ok(())
}

/// A tombstone is final in the store itself: a CAS that would make a revoked record active is
/// refused with `NotFound` even when it carries the right version (a buggy or stale writer).
pub(crate) async fn cas_cannot_revive_tombstone(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    revoke_live(&s, &c.session.id).await?;
    let Some(tomb) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a revoked session's tombstone does not load");
    };
    let mut revived = tomb.clone();
    revived.state = leasehold::SessionState::Active;
    revived.version = tomb.version.wrapping_add(1);
    match env
        .store()
        .compare_and_swap(&revived, tomb.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!("CAS reviving a tombstone: expected NotFound, got {other:?}"),
    }
    ensure!(
        !validates(&s, &text(&c)).await,
        "a revoked session validates after a CAS tried to revive it"
    );
    Ok(())
}

/// Insert-if-absent over a tombstone is refused: a retried create cannot recreate a revoked
/// session.
pub(crate) async fn insert_over_tombstone_refused(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let Some(rec) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a created session does not load");
    };
    revoke_live(&s, &c.session.id).await?;
    match env
        .store()
        .insert_session(&rec, &CreateLimits::default(), env.now())
        .await
    {
        Err(StoreError::AlreadyExists) => {}
        other => fail!("insert over a tombstone: expected AlreadyExists, got {other:?}"),
    }
    match s.validate(text(&c), &Context::none()).await {
        Err(e) if revoked_by(&e, RevokeReason::Revoked) => Ok(()),
        other => fail!("after the re-insert attempt: expected Revoked, got {other:?}"),
    }
}

/// A tombstone stays until the session's own deadline (reaping before it removes nothing), so
/// no stale write can recreate the session in between; at the deadline it is reaped.
pub(crate) async fn tombstone_outlives_early_reap(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    revoke_live(&s, &c.session.id).await?;
    for _ in 0..3 {
        let r = s.reap(1000).await?;
        ensure!(
            r.sessions == 0,
            "reap removed {} sessions before the tombstone's deadline",
            r.sessions
        );
        let Some(t) = env.store().load_session(&c.session.id).await?.record else {
            fail!("the tombstone vanished before its deadline");
        };
        ensure!(!t.is_live(env.now()), "the tombstone is live again");
        ensure!(
            !validates(&s, &text(&c)).await,
            "a revoked session validates"
        );
        env.advance(mins(9));
    }
    env.set_time(c.session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 1,
        "reap at the deadline removed {} sessions, expected the 1 tombstone",
        r.sessions
    );
    match s.validate(text(&c), &Context::none()).await {
        Err(Error::NotAuthenticated) => Ok(()),
        other => fail!("after reaping: expected NotAuthenticated, got {other:?}"),
    }
}

/// 32 refreshes race 8 revokes of one session: exactly one revoke wins, refreshes agree on at
/// most one successor, and afterwards no token of the session validates.
pub(crate) async fn refresh_vs_revoke_race(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let id = c.session.id;
    enum R {
        Refresh(Result<String, Error>),
        Revoke(Result<RevokeOutcome, Error>),
    }
    let results = race(40, |i| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            if i % 5 == 0 {
                R::Revoke(s.trusted_by_id().revoke(&id).await)
            } else {
                R::Refresh(
                    s.refresh(&t, &Context::none())
                        .await
                        .map(|r| r.token.expose_secret().to_owned()),
                )
            }
        }
    })
    .await?;
    let mut revoked = 0;
    let mut successors = HashSet::new();
    let mut odd = Vec::new();
    for r in results {
        match r {
            R::Revoke(Ok(RevokeOutcome::Revoked)) => revoked += 1,
            R::Revoke(Ok(RevokeOutcome::AlreadyRevoked {
                reason: RevokeReason::Revoked,
            })) => {}
            R::Revoke(Ok(o)) => odd.push(format!("revoke: {o:?}")),
            R::Refresh(Ok(tok)) => {
                successors.insert(tok);
            }
            R::Refresh(Err(e)) if revoked_by(&e, RevokeReason::Revoked) => {}
            R::Revoke(Err(e)) | R::Refresh(Err(e)) => odd.push(format!("{e:?}")),
        }
    }
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    ensure!(
        revoked == 1,
        "{revoked} revokes answered Revoked, expected exactly 1 (the others AlreadyRevoked)"
    );
    ensure!(
        successors.len() <= 1,
        "{} distinct successors were issued",
        successors.len()
    );
    for tok in successors.iter().chain([&t]) {
        ensure!(
            !validates(&s, tok).await,
            "a token of the revoked session validates after the race"
        );
    }
    Ok(())
}

/// 32 validations that each want to write a touch race 8 revokes: exactly one revoke wins and
/// afterwards the session is revoked (no touch overwrote the tombstone).
pub(crate) async fn touch_vs_revoke_race(env: Env) -> CaseResult {
    let s = env.sessions(build(leasehold::Policy::builder().renewal_interval(None))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let id = c.session.id;
    env.advance(secs(61)); // a touch is due
    let results = race(40, |i| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            if i % 5 == 0 {
                s.trusted_by_id().revoke(&id).await.map(Some)
            } else {
                s.validate(&t, &Context::none()).await.map(|_| None)
            }
        }
    })
    .await?;
    let revoked = count(&results, |r| matches!(r, Ok(Some(RevokeOutcome::Revoked))));
    let odd: Vec<_> = results
        .iter()
        .filter(|r| {
            !matches!(
                r,
                Ok(None
                    | Some(
                        RevokeOutcome::Revoked
                            | RevokeOutcome::AlreadyRevoked {
                                reason: RevokeReason::Revoked
                            }
                    ))
            )
        })
        .filter(|r| !matches!(r, Err(e) if revoked_by(e, RevokeReason::Revoked)))
        .collect();
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    ensure!(
        revoked == 1,
        "{revoked} revokes answered Revoked, expected exactly 1 (the others AlreadyRevoked)"
    );
    match s.validate(&t, &Context::none()).await {
        Err(e) if revoked_by(&e, RevokeReason::Revoked) => {}
        other => fail!("after the race: expected Revoked, got {other:?}"),
    }
    let Some(rec) = env.store().load_session(&id).await?.record else {
        fail!("the tombstone is gone");
    };
    ensure!(!rec.is_live(env.now()), "the stored record is live");
    Ok(())
}

/// At exactly the idle deadline, 16 refreshes race 4 reapers: no refresh succeeds, the session
/// is reaped exactly once, and nothing brings it back.
pub(crate) async fn reap_vs_refresh_at_deadline(env: Env) -> CaseResult {
    reap_vs_refresh(env, true).await
}

/// 1 ms before the idle deadline, 16 refreshes race 4 reapers: the session is live, so the
/// reapers remove nothing and every refresh gets the same successor.
pub(crate) async fn reap_vs_refresh_before_deadline(env: Env) -> CaseResult {
    reap_vs_refresh(env, false).await
}

async fn reap_vs_refresh(env: Env, at_deadline: bool) -> CaseResult {
    let s: S = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let deadline = c.session.expires_at;
    env.set_time(if at_deadline {
        deadline
    } else {
        deadline.saturating_sub(ms(1))
    });
    enum R {
        Refresh(Result<String, Error>),
        Reap(Result<u64, Error>),
    }
    let results = race(20, |i| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            if i % 5 == 0 {
                R::Reap(s.reap(1000).await.map(|r| r.sessions))
            } else {
                R::Refresh(
                    s.refresh(&t, &Context::none())
                        .await
                        .map(|r| r.token.expose_secret().to_owned()),
                )
            }
        }
    })
    .await?;
    let mut reaped = 0;
    let mut successors = HashSet::new();
    let mut denied = 0;
    let mut odd = Vec::new();
    for r in results {
        match r {
            R::Reap(Ok(n)) => reaped += n,
            R::Refresh(Ok(tok)) => {
                successors.insert(tok);
            }
            R::Refresh(Err(Error::Expired | Error::NotAuthenticated)) => denied += 1,
            R::Reap(Err(e)) | R::Refresh(Err(e)) => odd.push(format!("{e:?}")),
        }
    }
    ensure!(odd.is_empty(), "unexpected outcomes: {}", describe(&odd));
    if at_deadline {
        ensure!(
            successors.is_empty(),
            "{} refreshes succeeded at the deadline",
            successors.len()
        );
        ensure!(denied == 16, "{denied} of 16 refreshes were denied");
        ensure!(reaped == 1, "reapers removed {reaped} sessions, expected 1");
        ensure!(
            env.store()
                .load_session(&c.session.id)
                .await?
                .record
                .is_none(),
            "the reaped session still loads"
        );
        ensure!(!validates(&s, &t).await, "the reaped session validates");
    } else {
        ensure!(reaped == 0, "reapers removed {reaped} live sessions");
        ensure!(
            successors.len() == 1 && denied == 0,
            "expected all 16 refreshes to get one successor, got {} distinct and {denied} denials",
            successors.len()
        );
        env.advance(mins(29));
        for tok in &successors {
            ensure!(
                validates(&s, tok).await,
                "the refreshed session does not validate 29 min after its touch"
            );
        }
    }
    Ok(())
}
