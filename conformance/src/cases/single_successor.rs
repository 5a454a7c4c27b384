//! INV-single-successor: a rotation has exactly one successor; concurrent or retried refreshes
//! within the grace window converge on it; outside the window an old token is reuse.

use std::collections::HashSet;

use leasehold::{Context, Error, Policy, RevokeReason, SessionId};

use super::{S, build, create, default_policy, text, validates};
use crate::env::{
    CaseError, CaseResult, Env, describe, ensure, fail, mins, ms, race, secs, subject,
};

async fn generation(env: &Env, id: &SessionId) -> Result<u64, CaseError> {
    match env.store().load_session(id).await?.record {
        Some(r) => Ok(r.credential.generation),
        None => fail!("the session does not load"),
    }
}

async fn refresh(s: &S, token: &str) -> Result<String, CaseError> {
    Ok(s.refresh(token, &Context::none())
        .await?
        .token
        .expose_secret()
        .to_owned())
}

async fn expect_reuse(s: &S, old: &str, current: &str, what: &str) -> CaseResult {
    match s.validate(old, &Context::none()).await {
        Err(Error::ReuseDetected) => {}
        other => fail!("{what}: expected ReuseDetected, got {other:?}"),
    }
    match s.validate(current, &Context::none()).await {
        Err(Error::Revoked {
            reason: RevokeReason::ReuseDetected,
        }) => Ok(()),
        other => {
            fail!("the current token after {what}: expected Revoked(ReuseDetected), got {other:?}")
        }
    }
}

/// 64 concurrent refreshes of one token: all succeed, with one and the same successor, and the
/// store shows exactly one rotation.
pub(crate) async fn refresh_storm_one_successor(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let results = race(64, |_| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            s.refresh(&t, &Context::none())
                .await
                .map(|r| r.token.expose_secret().to_owned())
        }
    })
    .await?;
    let errors: Vec<_> = results.iter().filter(|r| r.is_err()).collect();
    ensure!(
        errors.is_empty(),
        "{} of 64 refreshes failed: {}",
        errors.len(),
        describe(&errors)
    );
    let distinct: HashSet<_> = results.iter().flatten().collect();
    ensure!(
        distinct.len() == 1,
        "64 concurrent refreshes produced {} distinct successors",
        distinct.len()
    );
    let g = generation(&env, &c.session.id).await?;
    ensure!(
        g == 1,
        "the store shows generation {g} after one logical rotation"
    );
    for tok in distinct {
        ensure!(validates(&s, tok).await, "the successor does not validate");
    }
    Ok(())
}

/// Retrying a refresh (or validating the predecessor) inside the grace window returns the same
/// successor, without rotating again.
pub(crate) async fn retry_in_grace_same_successor(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let a = text(&c);
    let b = refresh(&s, &a).await?;
    for (at, what) in [(secs(10), "10 s"), (secs(30) - ms(1), "29.999 s")] {
        env.set_time(c.session.created_at.saturating_add(at));
        let again = refresh(&s, &a).await?;
        ensure!(
            again == b,
            "a refresh retried after {what} got a different successor"
        );
        let v = s.validate(&a, &Context::none()).await?;
        ensure!(
            v.renewed.as_ref().map(|t| t.expose_secret()) == Some(b.as_str()),
            "validating the predecessor after {what} did not answer with the successor"
        );
    }
    let g = generation(&env, &c.session.id).await?;
    ensure!(g == 1, "retries rotated again: generation {g}");
    ensure!(validates(&s, &b).await, "the successor does not validate");
    Ok(())
}

/// 32 concurrent validations when renewal is due: all get the same renewed token.
pub(crate) async fn renewal_storm_one_successor(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(Some(mins(5))))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    env.advance(mins(6));
    let results = race(32, |_| {
        let (s, t) = (s.clone(), t.clone());
        async move {
            s.validate(&t, &Context::none())
                .await
                .map(|v| v.renewed.map(|r| r.expose_secret().to_owned()))
        }
    })
    .await?;
    let mut renewed = HashSet::new();
    for r in &results {
        match r {
            Ok(Some(tok)) => {
                renewed.insert(tok.clone());
            }
            other => fail!("a validation due for renewal returned {other:?}"),
        }
    }
    ensure!(
        renewed.len() == 1,
        "32 concurrent renewals produced {} distinct tokens",
        renewed.len()
    );
    let g = generation(&env, &c.session.id).await?;
    ensure!(g == 1, "generation {g} after one renewal");
    Ok(())
}

/// Once the successor has been used and the grace window has closed, the predecessor is reuse:
/// the session is revoked.
pub(crate) async fn predecessor_after_grace_is_reuse(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let a = text(&c);
    let b = refresh(&s, &a).await?;
    ensure!(validates(&s, &b).await, "the successor does not validate");
    env.advance(secs(30));
    expect_reuse(&s, &a, &b, "the predecessor after the grace window").await
}

/// A successor whose reply was lost (never presented) can be recovered with the predecessor
/// after the grace window, within the orphan window; then the predecessor is reuse.
pub(crate) async fn orphan_predecessor_recovers_then_expires(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let a = text(&c);
    let rotated = env.now();
    let b = refresh(&s, &a).await?; // the client never receives b
    env.set_time(rotated.saturating_add(mins(2)));
    let recovered = refresh(&s, &a).await?;
    ensure!(
        recovered == b,
        "the orphaned predecessor got a different successor"
    );
    ensure!(
        generation(&env, &c.session.id).await? == 1,
        "orphan recovery rotated again"
    );
    env.set_time(rotated.saturating_add(mins(5)));
    expect_reuse(&s, &a, &b, "the predecessor after the orphan window").await
}

/// A token two rotations old is reuse even inside the latest grace window.
pub(crate) async fn grand_predecessor_is_reuse(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let c = create(&s, &subject("alice")?).await?;
    let a = text(&c);
    let b = refresh(&s, &a).await?;
    env.advance(secs(1));
    let c2 = refresh(&s, &b).await?;
    env.advance(secs(1));
    expect_reuse(&s, &a, &c2, "the grand-predecessor").await
}

/// With reuse detection off, an old token is merely refused; the session lives on.
pub(crate) async fn reuse_detection_off_only_denies(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().reuse_detection(false))?)?;
    let c = create(&s, &subject("alice")?).await?;
    let a = text(&c);
    let b = refresh(&s, &a).await?;
    ensure!(validates(&s, &b).await, "the successor does not validate");
    env.advance(secs(31));
    match s.validate(&a, &Context::none()).await {
        Err(Error::NotAuthenticated) => {}
        other => {
            fail!("old token with reuse detection off: expected NotAuthenticated, got {other:?}")
        }
    }
    ensure!(
        validates(&s, &b).await,
        "the session was revoked although reuse detection is off"
    );
    Ok(())
}
