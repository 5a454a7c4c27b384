//! INV-one-shot: a ticket is redeemed at most once, whatever the concurrency, and never
//! outlives its session.

use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{Context, Error, Policy, RevokeReason};

use super::{S, build, create, default_policy, revoke_live, text};
use crate::env::{CaseResult, Env, count, describe, ensure, fail, ms, race, secs, subject};

async fn mint(s: &S, token: &str) -> Result<String, crate::env::CaseError> {
    Ok(s.mint_ticket(token, &Context::none())
        .await?
        .ticket
        .expose_secret()
        .to_owned())
}

/// Redeem once: the session; again: nothing.
pub(crate) async fn ticket_redeems_once(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let ticket = mint(&s, &text(&c)).await?;
    let got = s.redeem_ticket(&ticket).await?;
    ensure!(
        got.id == c.session.id,
        "the ticket redeemed to session {}, minted for {}",
        got.id,
        c.session.id
    );
    for step in ["at once", "a second later"] {
        match s.redeem_ticket(&ticket).await.map(|x| x.id) {
            Err(Error::NotAuthenticated) => {}
            other => fail!("second redemption {step}: expected NotAuthenticated, got {other:?}"),
        }
        env.advance(secs(1));
    }
    Ok(())
}

/// 64 tasks redeem one ticket at the same instant: exactly one succeeds.
pub(crate) async fn ticket_redemption_race(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let ticket = mint(&s, &text(&c)).await?;
    let results = race(64, |_| {
        let (s, ticket) = (s.clone(), ticket.clone());
        async move { s.redeem_ticket(&ticket).await.map(|x| x.id) }
    })
    .await?;
    let ok = count(&results, |r| r.is_ok());
    let missing = count(&results, |r| matches!(r, Err(Error::NotAuthenticated)));
    ensure!(
        ok == 1 && missing == 63,
        "64 racing redemptions: {ok} succeeded, {missing} NotAuthenticated (expected 1 and 63); \
         {}",
        describe(&results)
    );
    Ok(())
}

/// 8 tickets, each redeemed by 8 racing tasks: exactly one success per ticket.
pub(crate) async fn many_tickets_race_once_each(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let mut tickets = Vec::new();
    for i in 0..8 {
        let c = create(&s, &subject(&format!("user-{i}"))?).await?;
        tickets.push(mint(&s, &text(&c)).await?);
    }
    let results = race(64, |i| {
        let (s, ticket) = (s.clone(), tickets[i % 8].clone());
        async move { (i % 8, s.redeem_ticket(&ticket).await.is_ok()) }
    })
    .await?;
    for t in 0..8 {
        let ok = count(&results, |(i, ok)| *i == t && *ok);
        ensure!(ok == 1, "ticket #{t} was redeemed {ok} times by 8 racers");
    }
    Ok(())
}

/// A ticket is redeemable strictly before `created_at + ticket_ttl`, then never.
pub(crate) async fn expired_ticket_refused(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().ticket_ttl(secs(30)))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let early = mint(&s, &text(&c)).await?;
    let late = mint(&s, &text(&c)).await?;
    env.advance(secs(30) - ms(1));
    ensure!(
        s.redeem_ticket(&early).await.is_ok(),
        "a ticket 1 ms before its expiry was refused"
    );
    env.advance(ms(1));
    match s.redeem_ticket(&late).await {
        Err(Error::Expired | Error::NotAuthenticated) => {}
        other => fail!("redeem at the ticket's expiry: expected Expired, got {other:?}"),
    }
    env.advance(secs(60));
    ensure!(
        s.redeem_ticket(&late).await.is_err(),
        "an expired ticket was redeemed later"
    );
    Ok(())
}

/// A ticket minted near its session's idle deadline expires with the session.
pub(crate) async fn ticket_never_outlives_session(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .idle_timeout(Some(secs(60)))
            .touch_granularity(secs(10))
            .renewal_interval(None)
            .ticket_ttl(secs(120)),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let m = s.mint_ticket(text(&c), &Context::none()).await?;
    ensure!(
        m.expires_at <= c.session.expires_at,
        "ticket expires at {:?}, after its session ({:?})",
        m.expires_at,
        c.session.expires_at
    );
    env.set_time(c.session.expires_at);
    match s.redeem_ticket(m.ticket.expose_secret()).await {
        Err(Error::Expired | Error::NotAuthenticated) => Ok(()),
        other => fail!("redeem after the session expired: expected Expired, got {other:?}"),
    }
}

/// A ticket of a revoked session is refused, and spent by the attempt.
pub(crate) async fn ticket_of_revoked_session_refused(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let ticket = mint(&s, &text(&c)).await?;
    revoke_live(&s, &c.session.id).await?;
    match s.redeem_ticket(&ticket).await {
        Err(Error::Revoked {
            reason: RevokeReason::Revoked,
        }) => {}
        other => fail!("redeem for a revoked session: expected Revoked, got {other:?}"),
    }
    match s.redeem_ticket(&ticket).await {
        Err(Error::NotAuthenticated) => Ok(()),
        other => fail!("second attempt: expected NotAuthenticated, got {other:?}"),
    }
}

/// A wrong secret (or a session token presented as a ticket) is refused and leaves the ticket
/// in place for its rightful holder.
pub(crate) async fn wrong_ticket_secret_keeps_ticket(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let ticket = mint(&s, &text(&c)).await?;
    let at = ticket.len() - SECRET_TEXT_LEN;
    let mut forged = ticket.clone().into_bytes();
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap_or_default();
    for _ in 0..3 {
        match s.redeem_ticket(&forged).await {
            Err(Error::NotAuthenticated) => {}
            other => fail!("forged ticket secret: expected NotAuthenticated, got {other:?}"),
        }
    }
    ensure!(
        s.redeem_ticket(text(&c)).await.is_err(),
        "a session token was accepted as a ticket"
    );
    ensure!(
        s.redeem_ticket(&ticket).await.is_ok(),
        "the real ticket was consumed by forged attempts"
    );
    Ok(())
}
