//! INV-bounded-storage: everything expired or revoked is reclaimed (reaper or native expiry),
//! nothing live is, and a reap removes at most its batch limit, counting only what it removes.

use leasehold::store::StoreError;
use leasehold::{Context, Error, Policy};

use super::{build, create, default_policy, revoke_live, text, validates};
use crate::env::{CaseResult, Env, ensure, fail, mins, secs, subject};

/// Expired sessions are all reaped; afterwards they neither load, list nor validate.
pub(crate) async fn reap_removes_expired(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..10 {
        made.push(create(&s, &alice).await?);
    }
    env.set_time(made[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 10,
        "reaped {} of 10 expired sessions",
        r.sessions
    );
    for c in &made {
        ensure!(
            env.store()
                .load_session(&c.session.id)
                .await?
                .record
                .is_none(),
            "a reaped session still loads"
        );
        match s.validate(text(c), &Context::none()).await {
            Err(Error::NotAuthenticated) => {}
            other => fail!("a reaped session: expected NotAuthenticated, got {other:?}"),
        }
    }
    let listed = env.store().list_subject(&alice).await?.len();
    ensure!(
        listed == 0,
        "list_subject still returns {listed} reaped records"
    );
    let r = s.reap(1000).await?;
    ensure!(
        r.total() == 0,
        "a second reap removed {} records",
        r.total()
    );
    Ok(())
}

/// With 10 expired and 10 live sessions, reap removes exactly the 10 expired.
pub(crate) async fn reap_never_removes_live(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let alice = subject("alice")?;
    let mut old = Vec::new();
    for _ in 0..10 {
        old.push(create(&s, &alice).await?);
    }
    env.advance(mins(20));
    let mut young = Vec::new();
    for _ in 0..10 {
        young.push(create(&s, &alice).await?);
    }
    env.set_time(old[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 10,
        "reaped {} sessions, expected the 10 expired",
        r.sessions
    );
    for c in &young {
        ensure!(validates(&s, &text(c)).await, "reap removed a live session");
    }
    for c in &old {
        ensure!(
            env.store()
                .load_session(&c.session.id)
                .await?
                .record
                .is_none(),
            "an expired session survived the reap"
        );
    }
    Ok(())
}

/// `reap(now, limit)` removes at most `limit` records per call and finishes the backlog over
/// successive calls.
pub(crate) async fn reap_batch_limit(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let mut last = None;
    for i in 0..25 {
        last = Some(create(&s, &subject(&format!("user-{}", i % 4))?).await?);
    }
    let Some(last) = last else {
        fail!("nothing created");
    };
    env.set_time(last.session.expires_at);
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(s.reap(10).await?.sessions);
    }
    ensure!(
        got == [10, 10, 5, 0],
        "successive reaps with limit 10 over 25 expired sessions removed {got:?}, expected \
         [10, 10, 5, 0]"
    );
    Ok(())
}

/// 300 live sessions do not count against the batch limit, and are all kept: reaps with
/// limit 2 over 3 expired sessions remove 2, 1, 0.
pub(crate) async fn reap_limit_ignores_live_volume(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(None))?)?;
    let mut expiring = Vec::new();
    for i in 0..3 {
        expiring.push(create(&s, &subject(&format!("old-{i}"))?).await?);
    }
    env.advance(mins(10));
    let subjects: Vec<_> = (0..5)
        .map(|i| subject(&format!("live-{i}")))
        .collect::<Result<_, _>>()?;
    for i in 0..300 {
        create(&s, &subjects[i % 5]).await?;
    }
    env.set_time(expiring[0].session.expires_at);
    let mut got = Vec::new();
    for _ in 0..3 {
        got.push(s.reap(2).await?.total());
    }
    ensure!(
        got == [2, 1, 0],
        "reaps with limit 2 (3 expired among 300 live) removed {got:?}, expected [2, 1, 0]"
    );
    let mut live = 0;
    for who in &subjects {
        live += s.list(who).await?.len();
    }
    ensure!(
        live == 300,
        "{live} of 300 live sessions remain after reaping"
    );
    Ok(())
}

/// Expired tickets and slots are reaped (and counted as such); their session is not.
pub(crate) async fn reap_tickets_and_slots(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .ticket_ttl(secs(30))
            .slot_ttl(secs(60))
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let mut tickets = Vec::new();
    for _ in 0..3 {
        tickets.push(s.mint_ticket(text(&c), &Context::none()).await?);
    }
    let mut slots = Vec::new();
    for _ in 0..2 {
        slots.push(s.acquire_slot(&c.session.id, None).await?);
    }
    env.advance(secs(60));
    let r = s.reap(1000).await?;
    ensure!(
        r.tickets == 3 && r.slots == 2 && r.sessions == 0,
        "reap removed {r:?}, expected 3 tickets, 2 slots, 0 sessions"
    );
    for t in &tickets {
        ensure!(
            s.redeem_ticket(t.ticket.expose_secret()).await.is_err(),
            "a reaped ticket was redeemed"
        );
    }
    for l in &slots {
        ensure!(
            s.heartbeat_slot(&l.id).await.is_err(),
            "a reaped slot was heartbeated"
        );
    }
    ensure!(
        validates(&s, &text(&c)).await,
        "the session was reaped with its tickets"
    );
    Ok(())
}

/// Tombstones are reaped at their deadline together with expired sessions, not before.
pub(crate) async fn reap_tombstones_after_deadline(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let alice = subject("alice")?;
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(create(&s, &alice).await?);
    }
    for c in &made[..3] {
        revoke_live(&s, &c.session.id).await?;
    }
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 0,
        "reaped {} sessions before any deadline",
        r.sessions
    );
    let stored = env.store().list_subject(&alice).await?.len();
    ensure!(
        stored == 5,
        "{stored} of 5 records (3 tombstones) are stored before the deadline"
    );
    env.set_time(made[0].session.expires_at);
    let r = s.reap(1000).await?;
    ensure!(
        r.sessions == 5,
        "reaped {} sessions at the deadline, expected 3 tombstones + 2 expired",
        r.sessions
    );
    Ok(())
}

/// A store with native expiry never serves a record past its deadline as live: it loads as
/// absent or expired, validates as denied, and cannot be written.
pub(crate) async fn native_expiry_never_serves_expired(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let Some(rec) = env.store().load_session(&c.session.id).await?.record else {
        fail!("a new session does not load");
    };
    env.set_time(c.session.expires_at);
    if let Some(r) = env.store().load_session(&c.session.id).await?.record {
        ensure!(
            !r.is_live(env.now()),
            "a record past its deadline loads as live"
        );
    }
    match s.validate(text(&c), &Context::none()).await {
        Err(Error::Expired | Error::NotAuthenticated) => {}
        other => fail!("past the deadline: expected Expired or NotAuthenticated, got {other:?}"),
    }
    let mut touched = rec.clone();
    touched.version = rec.version.wrapping_add(1);
    touched.expires_at = env.now().saturating_add(mins(30));
    match env
        .store()
        .compare_and_swap(&touched, rec.version, env.now())
        .await
    {
        Err(StoreError::NotFound) => {}
        other => fail!("CAS past the deadline: expected NotFound, got {other:?}"),
    }
    s.reap(1000).await?;
    Ok(())
}
