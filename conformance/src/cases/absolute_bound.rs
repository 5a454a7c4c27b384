//! INV-absolute-bound: no touch, refresh or renewal moves a session past
//! `created_at + absolute lifetime`.

use std::time::Duration;

use leasehold::{Context, Error, Policy, Session, SessionId};

use super::{S, build, create, text, validates};
use crate::env::{CaseResult, Env, ensure, fail, mins, ms, subject};

const LIFETIME: Duration = Duration::from_secs(3600);

/// Checks the returned session and the stored record against the bound.
async fn check_bound(env: &Env, session: &Session, step: &str) -> CaseResult {
    let bound = session.created_at.saturating_add(LIFETIME);
    ensure!(
        session.absolute_deadline == bound,
        "{step}: absolute deadline moved from {bound:?} to {:?}",
        session.absolute_deadline
    );
    ensure!(
        session.expires_at <= bound,
        "{step}: session expires at {:?}, past its absolute deadline {bound:?}",
        session.expires_at
    );
    check_stored(env, &session.id, bound, step).await
}

async fn check_stored(
    env: &Env,
    id: &SessionId,
    bound: leasehold::Timestamp,
    step: &str,
) -> CaseResult {
    let Some(rec) = env.store().load_session(id).await?.record else {
        fail!("{step}: the session does not load");
    };
    ensure!(
        rec.absolute_deadline == bound && rec.expires_at <= bound,
        "{step}: stored record has absolute_deadline {:?}, expires_at {:?}; bound is {bound:?}",
        rec.absolute_deadline,
        rec.expires_at
    );
    Ok(())
}

async fn expect_expired(s: &S, token: &str, what: &str) -> CaseResult {
    match s.validate(token, &Context::none()).await {
        Err(Error::Expired | Error::NotAuthenticated) => Ok(()),
        other => fail!("{what} at the absolute deadline: expected Expired, got {other:?}"),
    }
}

/// Touching on every read (granularity 0) for an hour never moves the deadline.
pub(crate) async fn touch_never_passes_absolute(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .absolute_lifetime(LIFETIME)
            .touch_granularity(Duration::ZERO)
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    check_bound(&env, &c.session, "create").await?;
    let end = c.session.created_at.saturating_add(LIFETIME);
    let mut n = 0;
    while env.now().saturating_add(mins(7)) < end {
        env.advance(mins(7));
        n += 1;
        let v = s.validate(&t, &Context::none()).await?;
        check_bound(&env, &v.session, &format!("touch #{n}")).await?;
    }
    env.set_time(end);
    expect_expired(&s, &t, "a session touched every 7 min").await
}

/// Refreshing every 10 minutes for an hour never moves the deadline.
pub(crate) async fn refresh_never_passes_absolute(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .absolute_lifetime(LIFETIME)
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let mut t = text(&c);
    let end = c.session.created_at.saturating_add(LIFETIME);
    let mut n = 0;
    while env.now().saturating_add(mins(10)) < end {
        env.advance(mins(10));
        n += 1;
        let r = s.refresh(&t, &Context::none()).await?;
        check_bound(&env, &r.session, &format!("refresh #{n}")).await?;
        t = r.token.expose_secret().to_owned();
    }
    env.set_time(end);
    expect_expired(&s, &t, "the latest refreshed token").await?;
    ensure!(
        s.refresh(&t, &Context::none()).await.is_err(),
        "a refresh at the absolute deadline succeeded"
    );
    Ok(())
}

/// Automatic renewal on validate (every 5 minutes) never moves the deadline.
pub(crate) async fn renewal_never_passes_absolute(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .absolute_lifetime(LIFETIME)
            .renewal_interval(Some(mins(5))),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let mut t = text(&c);
    let end = c.session.created_at.saturating_add(LIFETIME);
    let mut renewals = 0;
    while env.now().saturating_add(mins(6)) < end {
        env.advance(mins(6));
        let v = s.validate(&t, &Context::none()).await?;
        check_bound(&env, &v.session, &format!("renewal #{renewals}")).await?;
        if let Some(next) = v.renewed {
            renewals += 1;
            t = next.expose_secret().to_owned();
        }
    }
    ensure!(
        renewals >= 9,
        "only {renewals} renewals happened in an hour"
    );
    env.set_time(end);
    expect_expired(&s, &t, "the latest renewed token").await
}

/// With no idle timeout a session lives exactly its absolute lifetime, unused.
pub(crate) async fn no_idle_timeout_ends_at_absolute(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .absolute_lifetime(LIFETIME)
            .idle_timeout(None)
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let end = c.session.created_at.saturating_add(LIFETIME);
    ensure!(
        c.session.expires_at == end,
        "expires at {:?}, expected {end:?}",
        c.session.expires_at
    );
    env.set_time(end.saturating_sub(ms(1)));
    ensure!(
        validates(&s, &text(&c)).await,
        "an idle-timeout-free session does not validate 1 ms before its absolute deadline"
    );
    check_stored(&env, &c.session.id, end, "after the last touch").await?;
    env.set_time(end);
    expect_expired(&s, &text(&c), "an unused session").await
}

/// Updating data (a write) near the deadline does not move it either.
pub(crate) async fn update_data_never_passes_absolute(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .absolute_lifetime(LIFETIME)
            .renewal_interval(None),
    )?)?;
    let c = create(&s, &subject("alice")?).await?;
    let t = text(&c);
    let end = c.session.created_at.saturating_add(LIFETIME);
    let mut version = 0;
    for at in [mins(25), mins(50), mins(59)] {
        env.set_time(c.session.created_at.saturating_add(at));
        ensure!(validates(&s, &t).await, "not valid at +{at:?}");
        let updated = s.update_data(&c.session.id, version, b"cart=3").await?;
        version = updated.data_version;
        check_bound(&env, &updated, &format!("update_data at +{at:?}")).await?;
    }
    env.set_time(end);
    expect_expired(&s, &t, "a session with fresh data").await?;
    ensure!(
        s.update_data(&c.session.id, version, b"late")
            .await
            .is_err(),
        "update_data at the absolute deadline succeeded"
    );
    Ok(())
}
