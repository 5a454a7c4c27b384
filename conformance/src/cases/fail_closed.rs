//! INV-fail-closed: a store error, timeout, lost reply or corrupt record never yields a valid
//! session; a lost reply followed by a retry converges (same successor, no double-spent
//! ticket); no acknowledged write is lost. Failures are injected by wrapping the store under
//! test in [`FaultyStore`].

use std::collections::{HashMap, HashSet};

use leasehold::{Context, Error, Limit, Policy, SessionId};
use leasehold_testkit::faults::{Fault, FaultyStore, Op};

use super::{build, text};
use crate::env::{
    CaseError, CaseResult, DynStore, Env, count, ensure, fail, mins, race, secs, subject,
};

type F = FaultyStore<DynStore>;

type Faulty = (F, std::sync::Arc<leasehold::Sessions<F>>);

fn faulty(env: &Env, policy: Policy) -> Result<Faulty, CaseError> {
    let f = FaultyStore::new(env.store().clone());
    let s = env.sessions_over(f.clone(), policy)?;
    Ok((f, s))
}

fn no_renewal() -> Result<Policy, CaseError> {
    build(Policy::builder().renewal_interval(None))
}

async fn generation(env: &Env, id: &SessionId) -> Result<u64, CaseError> {
    match env.store().load_session(id).await?.record {
        Some(r) => Ok(r.credential.generation),
        None => fail!("the session does not load"),
    }
}

/// Every kind of failed load denies validate, refresh, ticket minting and revoke with a typed
/// store error; nothing is granted.
pub(crate) async fn load_errors_deny(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    let t = text(&c);
    for fault in [
        Fault::ErrorBefore,
        Fault::Timeout,
        Fault::LostReply,
        Fault::TimeoutAfter,
    ] {
        f.inject_always(Op::Load, fault);
        let results = [
            s.validate(&t, &Context::none()).await.map(|_| ()),
            s.refresh(&t, &Context::none()).await.map(|_| ()),
            s.mint_ticket(&t, &Context::none()).await.map(|_| ()),
            s.trusted_by_id().revoke(&c.session.id).await.map(|_| ()),
            s.update_data(&c.session.id, 0, b"x").await.map(|_| ()),
        ];
        for (op, r) in [
            "validate",
            "refresh",
            "mint_ticket",
            "revoke",
            "update_data",
        ]
        .iter()
        .zip(&results)
        {
            ensure!(
                matches!(r, Err(Error::StoreUnavailable(_))),
                "{op} with a {fault:?} load: expected StoreUnavailable, got {r:?}"
            );
        }
        f.clear();
    }
    ensure!(
        s.validate(&t, &Context::none()).await.is_ok(),
        "the session does not validate once the store recovers"
    );
    Ok(())
}

/// Corrupt bytes on load: validate, refresh and revoke fail with `CorruptRecord`, a ticket
/// redemption fails, and no rotation is written.
pub(crate) async fn corrupt_load_denies(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    let t = text(&c);
    let ticket = s.mint_ticket(&t, &Context::none()).await?;
    f.inject_always(Op::Load, Fault::Corrupt);
    for (op, r) in [
        (
            "validate",
            s.validate(&t, &Context::none()).await.map(|_| ()),
        ),
        ("refresh", s.refresh(&t, &Context::none()).await.map(|_| ())),
        (
            "revoke",
            s.trusted_by_id().revoke(&c.session.id).await.map(|_| ()),
        ),
    ] {
        ensure!(
            matches!(r, Err(Error::CorruptRecord(_))),
            "{op} on a corrupt record: expected CorruptRecord, got {r:?}"
        );
    }
    let r = s.redeem_ticket(ticket.ticket.expose_secret()).await;
    ensure!(
        r.is_err(),
        "a ticket redeemed over a corrupt session record: {r:?}"
    );
    f.clear();
    ensure!(
        generation(&env, &c.session.id).await? == 0,
        "a rotation was written from a corrupt read"
    );
    ensure!(
        s.validate(&t, &Context::none()).await.is_ok(),
        "the (intact) session does not validate once loads are sound again"
    );
    Ok(())
}

/// When the write a read needs (a due touch, a refresh's rotation) fails before reaching the
/// store, the read fails and nothing is applied.
pub(crate) async fn failed_touch_denies(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    let t = text(&c);
    env.advance(secs(61)); // a touch is due
    for fault in [Fault::ErrorBefore, Fault::Timeout] {
        f.inject_next(Op::Cas, fault);
        let r = s.validate(&t, &Context::none()).await;
        ensure!(
            matches!(r, Err(Error::StoreUnavailable(_))),
            "validate whose touch failed ({fault:?}): expected StoreUnavailable, got {r:?}"
        );
        f.inject_next(Op::Cas, fault);
        let r = s.refresh(&t, &Context::none()).await;
        ensure!(
            matches!(r, Err(Error::StoreUnavailable(_))),
            "refresh whose rotation failed ({fault:?}): expected StoreUnavailable, got {r:?}"
        );
    }
    ensure!(
        generation(&env, &c.session.id).await? == 0,
        "a failed rotation was applied"
    );
    s.refresh(&t, &Context::none()).await?;
    ensure!(
        generation(&env, &c.session.id).await? == 1,
        "the retried refresh did not rotate exactly once"
    );
    Ok(())
}

/// A refresh whose reply is lost (applied, then an error): retrying it returns the successor
/// that was written, once, and again on every retry.
pub(crate) async fn lost_reply_refresh_converges(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    for fault in [Fault::LostReply, Fault::TimeoutAfter] {
        let c = s.create(&subject("alice")?, Default::default()).await?;
        let a = text(&c);
        f.inject_next(Op::Cas, fault);
        let r = s.refresh(&a, &Context::none()).await;
        ensure!(
            r.is_err(),
            "the refresh with a {fault:?} CAS reported success"
        );
        ensure!(
            generation(&env, &c.session.id).await? == 1,
            "the lost-reply rotation was not applied"
        );
        let b = s.refresh(&a, &Context::none()).await?;
        let b = b.token.expose_secret().to_owned();
        ensure!(
            generation(&env, &c.session.id).await? == 1,
            "the retry rotated again instead of returning the written successor ({fault:?})"
        );
        let again = s.refresh(&a, &Context::none()).await?;
        ensure!(
            again.token.expose_secret() == b,
            "a second retry got a different successor"
        );
        ensure!(
            s.validate(&b, &Context::none()).await.is_ok(),
            "the recovered successor does not validate"
        );
    }
    Ok(())
}

/// A lost refresh reply retried after the grace window (the successor was never presented)
/// still converges on the written successor (orphan window).
pub(crate) async fn lost_reply_refresh_retry_after_grace(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    let a = text(&c);
    f.inject_next(Op::Cas, Fault::LostReply);
    ensure!(
        s.refresh(&a, &Context::none()).await.is_err(),
        "the lost-reply refresh reported success"
    );
    env.advance(mins(2));
    let b = s.refresh(&a, &Context::none()).await?;
    ensure!(
        generation(&env, &c.session.id).await? == 1,
        "the retry after the grace window rotated again"
    );
    ensure!(
        s.validate(b.token.expose_secret(), &Context::none())
            .await
            .is_ok(),
        "the recovered successor does not validate"
    );
    Ok(())
}

/// A redemption whose reply is lost consumed the ticket: 8 racing retries all fail (the ticket
/// is never spent twice).
pub(crate) async fn lost_reply_ticket_not_double_spent(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    let ticket = s
        .mint_ticket(text(&c), &Context::none())
        .await?
        .ticket
        .expose_secret()
        .to_owned();
    f.inject_next(Op::TakeTicket, Fault::LostReply);
    ensure!(
        s.redeem_ticket(&ticket).await.is_err(),
        "the lost-reply redemption reported success"
    );
    let results = race(8, |_| {
        let (s, ticket) = (s.clone(), ticket.clone());
        async move { s.redeem_ticket(&ticket).await.is_ok() }
    })
    .await?;
    let ok = count(&results, |x| *x);
    ensure!(
        ok == 0,
        "{ok} retries redeemed a ticket already taken by a lost-reply call"
    );
    Ok(())
}

/// A revoke (by id, or of a subject) whose reply is lost was applied: the session is revoked,
/// and the retry says so.
pub(crate) async fn lost_reply_revoke_is_applied(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let alice = subject("alice")?;
    let c = s.create(&alice, Default::default()).await?;
    f.inject_next(Op::Cas, Fault::LostReply);
    ensure!(
        s.trusted_by_id().revoke(&c.session.id).await.is_err(),
        "the lost-reply revoke reported success"
    );
    ensure!(
        s.validate(text(&c), &Context::none()).await.is_err(),
        "the session validates after a lost-reply revoke"
    );
    match s.trusted_by_id().revoke(&c.session.id).await? {
        leasehold::RevokeOutcome::AlreadyRevoked {
            reason: leasehold::RevokeReason::Revoked,
        } => {}
        other => fail!(
            "the retried revoke after a lost reply: expected AlreadyRevoked(Revoked), got {other:?}"
        ),
    }
    let d = s.create(&alice, Default::default()).await?;
    f.inject_next(Op::RevokeSubject, Fault::TimeoutAfter);
    ensure!(
        s.revoke_subject(&alice).await.is_err(),
        "the timed-out revoke_subject reported success"
    );
    ensure!(
        s.validate(text(&d), &Context::none()).await.is_err(),
        "a session validates after a timed-out (applied) revoke_subject"
    );
    let n = s.revoke_subject(&alice).await?;
    ensure!(n == 0, "the retried revoke_subject found {n} live sessions");
    Ok(())
}

/// A failed create hands out no token; one that failed before the store left nothing behind.
pub(crate) async fn failed_create_grants_nothing(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    let alice = subject("alice")?;
    for fault in [Fault::ErrorBefore, Fault::Timeout] {
        f.inject_next(Op::Insert, fault);
        let r = s.create(&alice, Default::default()).await;
        ensure!(
            matches!(r, Err(Error::StoreUnavailable(_))),
            "create with a {fault:?} insert: expected StoreUnavailable, got {r:?}"
        );
    }
    let n = s.list(&alice).await?.len();
    ensure!(
        n == 0,
        "{n} sessions exist after creates that never reached the store"
    );
    f.inject_next(Op::Insert, Fault::LostReply);
    ensure!(
        s.create(&alice, Default::default()).await.is_err(),
        "the lost-reply create reported success"
    );
    let n = s.list(&alice).await?.len();
    ensure!(
        n == 1,
        "{n} sessions after a lost-reply create (it was applied: expected 1)"
    );
    Ok(())
}

/// A slot acquisition whose reply is lost holds capacity only until the slot TTL.
pub(crate) async fn lost_reply_slot_self_expires(env: Env) -> CaseResult {
    let (f, s) = faulty(
        &env,
        build(
            Policy::builder()
                .max_slots_per_session(Some(1))
                .slot_ttl(secs(60)),
        )?,
    )?;
    let c = s.create(&subject("alice")?, Default::default()).await?;
    f.inject_next(Op::AcquireSlot, Fault::LostReply);
    ensure!(
        s.acquire_slot(&c.session.id, None).await.is_err(),
        "the lost-reply acquisition reported success"
    );
    let r = s.acquire_slot(&c.session.id, None).await;
    ensure!(
        matches!(
            r,
            Err(Error::LimitReached {
                limit: Limit::SessionSlots
            })
        ),
        "the applied lost-reply slot does not count: {r:?}"
    );
    env.advance(secs(60));
    s.acquire_slot(&c.session.id, None).await.map_err(|e| {
        CaseError(format!(
            "a lost-reply slot still holds capacity after its TTL: {e:?}"
        ))
    })?;
    Ok(())
}

/// A deterministic pseudo-random walk (creates, validates, refreshes, revokes, tickets) over a
/// store failing 25 % of calls: no revoked session ever validates, no ticket is redeemed
/// twice, and once faults stop every acknowledged create, refresh and revoke is in effect.
pub(crate) async fn random_faults_keep_acknowledged_writes(env: Env) -> CaseResult {
    let (f, s) = faulty(&env, no_renewal()?)?;
    f.random(0x5eed_fa17, 250);
    let mut rng = 0x0123_4567_89ab_cdefu64;
    let mut next = move |n: usize| {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        (rng % n as u64) as usize
    };
    // Per acknowledged session: its current token; whether a revoke was attempted/acknowledged.
    let mut current: Vec<(SessionId, String)> = Vec::new();
    let mut revoke_tried: HashSet<SessionId> = HashSet::new();
    let mut revoked: HashSet<SessionId> = HashSet::new();
    let mut tickets: Vec<String> = Vec::new();
    let mut redeemed: HashMap<usize, u32> = HashMap::new();
    for round in 0..200 {
        env.advance(secs(1));
        let pick = if current.is_empty() { 0 } else { next(10) };
        match pick {
            0 | 1 => {
                let who = subject(&format!("user-{}", round % 3))?;
                if let Ok(c) = s.create(&who, Default::default()).await {
                    current.push((c.session.id, text(&c)));
                }
            }
            2..=4 => {
                let i = next(current.len());
                let (id, t) = current[i].clone();
                if let Ok(v) = s.validate(&t, &Context::none()).await {
                    ensure!(
                        !revoked.contains(&id),
                        "round {round}: a session whose revoke was acknowledged validated"
                    );
                    if let Some(r) = v.renewed {
                        current[i].1 = r.expose_secret().to_owned();
                    }
                }
            }
            5 | 6 => {
                let i = next(current.len());
                let (id, t) = current[i].clone();
                if let Ok(r) = s.refresh(&t, &Context::none()).await {
                    ensure!(
                        !revoked.contains(&id),
                        "round {round}: a session whose revoke was acknowledged refreshed"
                    );
                    current[i].1 = r.token.expose_secret().to_owned();
                }
            }
            7 => {
                let i = next(current.len());
                let id = current[i].0;
                revoke_tried.insert(id);
                if s.trusted_by_id().revoke(&id).await.is_ok() {
                    revoked.insert(id);
                }
            }
            8 => {
                let i = next(current.len());
                if let Ok(m) = s.mint_ticket(&current[i].1, &Context::none()).await {
                    tickets.push(m.ticket.expose_secret().to_owned());
                }
            }
            _ => {
                if !tickets.is_empty() {
                    let k = next(tickets.len());
                    if s.redeem_ticket(&tickets[k]).await.is_ok() {
                        let n = redeemed.entry(k).or_default();
                        *n += 1;
                        ensure!(*n == 1, "round {round}: ticket #{k} was redeemed twice");
                    }
                }
            }
        }
    }
    f.clear();
    ensure!(
        !f.injected().is_empty(),
        "no fault was injected: the walk tested nothing"
    );
    let mut live = 0;
    for (id, t) in &current {
        let r = s.validate(t, &Context::none()).await;
        if revoked.contains(id) {
            ensure!(
                r.is_err(),
                "session {id}: acknowledged revoke, but it validates"
            );
        } else if !revoke_tried.contains(id) {
            ensure!(
                r.is_ok(),
                "session {id}: acknowledged create/refresh lost after faults: {r:?}"
            );
            live += 1;
        }
    }
    ensure!(
        live > 0,
        "no session stayed live: the walk checked nothing durable"
    );
    Ok(())
}
