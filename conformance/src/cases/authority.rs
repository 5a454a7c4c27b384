//! INV-authority: only the holder of one of a session's secrets, its owner (as the
//! application names it), or trusted server code acting by id can act on a session; a
//! session is judged only under the policy of the kind it was issued under; an application's
//! check refuses before anything is written.

use std::time::Duration;

use leasehold::{Context, CreateOptions, Error, Policy, RevokeOutcome, RevokeReason};

use super::{build, create, default_policy, ended_by, text, validates};
use crate::env::{CaseError, CaseResult, Env, ensure, fail, mins, secs, subject};

/// A token's prefix swapped to another kind's.
fn as_kind(token: &str, from: &str, to: &str) -> Result<String, CaseError> {
    token
        .strip_prefix(from)
        .map(|rest| format!("{to}{rest}"))
        .ok_or_else(|| CaseError(format!("token does not start with {from}")))
}

async fn stored(
    env: &Env,
    id: &leasehold::SessionId,
) -> Result<leasehold::SessionRecord, CaseError> {
    env.store()
        .load_session(id)
        .await?
        .record
        .map(|r| *r)
        .ok_or_else(|| CaseError("the session is not in the store".into()))
}

/// Two kinds over one store: a token of one, with its prefix swapped, is refused by the
/// other (which would apply *its* lifetimes), and stays valid under its own; the other
/// kind's by-id surface does not see it either. The kind is kept in the stored record.
pub(crate) async fn kind_is_bound_to_the_record(env: Env) -> CaseResult {
    let web = env.sessions(build(
        Policy::builder()
            .token_prefix("web".into())
            .idle_timeout(Some(mins(30))),
    )?)?;
    let api = env.sessions(build(
        Policy::builder()
            .token_prefix("api".into())
            .no_absolute_lifetime()
            .idle_timeout(None),
    )?)?;
    let c = create(&web, &subject("alice")?).await?;
    let swapped = as_kind(&text(&c), "web", "api")?;
    match api.validate(&swapped, &Context::none()).await {
        Err(Error::NotAuthenticated) => {}
        other => fail!("a web token presented as api: expected NotAuthenticated, got {other:?}"),
    }
    match api.trusted_by_id().get(&c.session.id).await {
        Err(Error::NotAuthenticated) => {}
        other => {
            fail!("api's by-id get of a web session: expected NotAuthenticated, got {other:?}")
        }
    }
    ensure!(
        api.trusted_by_id().revoke(&c.session.id).await? == RevokeOutcome::Unknown,
        "api's by-id revoke reached a web session"
    );
    ensure!(
        validates(&web, &text(&c)).await,
        "the web session no longer validates under its own kind"
    );
    let rec = stored(&env, &c.session.id).await?;
    ensure!(
        rec.kind.as_str() == "web" && c.session.kind.as_str() == "web",
        "the record's kind is {:?}, expected web",
        rec.kind
    );
    Ok(())
}

/// Logout by token checks the secret, never rotates, and is idempotent: a wrong secret
/// revokes nothing; the right one revokes; again answers `AlreadyRevoked`.
pub(crate) async fn logout_checks_the_secret_and_is_idempotent(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(Some(secs(1))))?)?;
    let alice = subject("alice")?;
    let c = create(&s, &alice).await?;
    let other = create(&s, &alice).await?;
    // Another session's secret under this session's id.
    let forged = format!(
        "{}{}",
        &text(&c)[..text(&c).len() - 43],
        &text(&other)[text(&other).len() - 43..]
    );
    match s.logout(&forged).await {
        Err(Error::NotAuthenticated) => {}
        other => fail!("logout with a wrong secret: expected NotAuthenticated, got {other:?}"),
    }
    ensure!(
        validates(&s, &text(&c)).await,
        "a forged logout revoked the session"
    );
    // Renewal is due: a logout must still not rotate (or touch) anything first.
    env.advance(secs(2));
    let before = stored(&env, &c.session.id).await?;
    ensure!(
        s.logout(text(&c)).await? == RevokeOutcome::Revoked,
        "the first logout did not revoke"
    );
    let after = stored(&env, &c.session.id).await?;
    ensure!(
        after.credential == before.credential && after.last_seen == before.last_seen,
        "logout rotated or touched the session before revoking it"
    );
    ensure!(
        ended_by(&after) == Some(RevokeReason::Revoked),
        "logout wrote {:?}",
        after.state
    );
    match s.logout(text(&c)).await? {
        RevokeOutcome::AlreadyRevoked {
            reason: RevokeReason::Revoked,
        } => {}
        other => fail!("a second logout: expected AlreadyRevoked, got {other:?}"),
    }
    ensure!(
        !validates(&s, &text(&c)).await,
        "the session validates after logout"
    );
    ensure!(
        validates(&s, &text(&other)).await,
        "logout ended another session"
    );
    Ok(())
}

/// Owner-checked revoke: another owner's session id answers `Unknown` (as a missing one) and
/// is left live; the owner's own is revoked.
pub(crate) async fn revoke_owned_only_reaches_the_owner(env: Env) -> CaseResult {
    let s = env.sessions(default_policy())?;
    let (alice, mallory) = (subject("alice")?, subject("mallory")?);
    let a = create(&s, &alice).await?;
    ensure!(
        s.revoke_owned(&mallory, &a.session.id).await? == RevokeOutcome::Unknown,
        "mallory's revoke of alice's session did not answer Unknown"
    );
    ensure!(
        validates(&s, &text(&a)).await,
        "mallory revoked alice's session"
    );
    ensure!(
        s.revoke_owned(&alice, &a.session.id).await? == RevokeOutcome::Revoked,
        "alice could not revoke her own session"
    );
    ensure!(
        !validates(&s, &text(&a)).await,
        "alice's session validates after her revoke"
    );
    Ok(())
}

/// A pre-grant check (validate, refresh, by-id keepalive) runs before its write: refused, the
/// stored record is
/// unchanged (no rotated token is stranded, so the real client is never later taken for a
/// thief); accepted, the renewal happens.
pub(crate) async fn refused_check_writes_nothing(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().renewal_interval(Some(mins(1))))?)?;
    let (alice, bob) = (subject("alice")?, subject("bob")?);
    let c = create(&s, &alice).await?;
    env.advance(mins(2));
    let before = stored(&env, &c.session.id).await?;
    match s.validate_as(text(&c), &Context::none(), &bob).await {
        Err(Error::Refused) => {}
        other => fail!("validate_as the wrong subject: expected Refused, got {other:?}"),
    }
    match s.refresh_with(text(&c), &Context::none(), |_| false).await {
        Err(Error::Refused) => {}
        other => fail!("a refusing refresh_with: expected Refused, got {other:?}"),
    }
    // A touch is due too: a refused by-id keepalive must not write it.
    match s
        .trusted_by_id()
        .keepalive_with(&c.session.id, |got| got.subject == bob)
        .await
    {
        Err(Error::Refused) => {}
        other => fail!("a refusing keepalive_with: expected Refused, got {other:?}"),
    }
    let after = stored(&env, &c.session.id).await?;
    ensure!(after == before, "a refused check wrote to the session");
    let v = s.validate_as(text(&c), &Context::none(), &alice).await?;
    ensure!(v.renewed.is_some(), "the accepted validate did not renew");
    Ok(())
}

/// Access tokens: valid with their session; refused past their own deadline while the session
/// lives (`AccessTokenExpired`); replaced by a refresh (the old one refused, an idempotent
/// retry of the refresh answers the same new one); refused once the session is revoked.
/// Never stored raw.
pub(crate) async fn access_token_lives_and_dies_with_its_session(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .access_ttl(Some(mins(15)))
            .idle_timeout(Some(Duration::from_secs(7 * 24 * 3600))),
    )?)?;
    let c = create(&s, &subject("did:web:example.com")?).await?;
    let Some(a0) = c.access.as_ref().map(|a| a.expose_secret().to_owned()) else {
        fail!("a create under access_ttl issued no access token");
    };
    let got = s.validate_access(&a0).await?;
    ensure!(
        got.id == c.session.id,
        "the access token opened another session"
    );
    ensure!(
        s.validate(&a0, &Context::none()).await.is_err(),
        "an access token was accepted as a session token"
    );
    env.advance(mins(16));
    match s.validate_access(&a0).await {
        Err(Error::AccessTokenExpired) => {}
        other => fail!("a 16-minute-old access token: expected AccessTokenExpired, got {other:?}"),
    }
    let r = s.refresh(text(&c), &Context::none()).await?;
    let retry = s.refresh(text(&c), &Context::none()).await?;
    let (Some(a1), Some(a1_again)) = (r.access.as_ref(), retry.access.as_ref()) else {
        fail!("a refresh under access_ttl issued no access token");
    };
    ensure!(
        a1.expose_secret() == a1_again.expose_secret(),
        "an idempotent retry of the refresh answered another access token"
    );
    s.validate_access(a1.expose_secret()).await?;
    ensure!(
        s.validate_access(&a0).await.is_err(),
        "the replaced access token still validates"
    );
    if let Some(dump) = env.store().raw_dump().await? {
        let secret = &a1.expose_secret().as_bytes()[a1.expose_secret().len() - 43..];
        ensure!(
            !dump
                .iter()
                .any(|b| b.windows(secret.len()).any(|w| w == secret)),
            "the access secret is stored in the clear"
        );
    }
    ensure!(
        s.logout(r.token.expose_secret()).await? == RevokeOutcome::Revoked,
        "logout did not revoke"
    );
    match s.validate_access(a1.expose_secret()).await {
        Err(Error::Revoked { .. }) => Ok(()),
        other => fail!("the access token of a revoked session: expected Revoked, got {other:?}"),
    }
}

/// The trusted by-id surface: `get` and `keepalive` serve a live session; keepalive moves the
/// idle deadline but never past the absolute one and never revives an ended session; a
/// ticket minted by id redeems once.
pub(crate) async fn by_id_keepalive_never_revives(env: Env) -> CaseResult {
    let s = env.sessions(build(
        Policy::builder()
            .idle_timeout(Some(secs(1)))
            .absolute_lifetime(secs(10))
            .grace_window(secs(1))
            .orphan_window(secs(1)),
    )?)?;
    let c = create(&s, &subject("pty-user")?).await?;
    let by_id = s.trusted_by_id();
    for _ in 0..14 {
        env.advance(Duration::from_millis(800));
        let now = env.now();
        match by_id.keepalive(&c.session.id).await {
            Ok(got) => ensure!(
                got.expires_at <= got.absolute_deadline && got.expires_at > now,
                "keepalive answered a session expiring at {:?} (now {now:?}, absolute {:?})",
                got.expires_at,
                got.absolute_deadline
            ),
            Err(Error::Expired) => {
                ensure!(
                    now >= c.session.absolute_deadline,
                    "keepalive refused a session before its absolute deadline"
                );
                break;
            }
            Err(e) => fail!("keepalive: {e}"),
        }
    }
    match by_id.get(&c.session.id).await {
        Err(Error::Expired) => {}
        other => fail!("get past the absolute deadline: expected Expired, got {other:?}"),
    }
    match by_id.keepalive(&c.session.id).await {
        Err(Error::Expired) => {}
        other => fail!("keepalive of an ended session: expected Expired, got {other:?}"),
    }
    let d = create(&s, &subject("pty-user")?).await?;
    let m = by_id.mint_ticket(&d.session.id).await?;
    ensure!(
        m.session.id == d.session.id,
        "the ticket was minted for another session"
    );
    s.redeem_ticket(m.ticket.expose_secret()).await?;
    ensure!(
        s.redeem_ticket(m.ticket.expose_secret()).await.is_err(),
        "a ticket minted by id redeemed twice"
    );
    Ok(())
}

/// A per-session absolute lifetime shorter than the policy's is kept; a longer one is refused
/// before the store is touched.
pub(crate) async fn per_session_lifetime_within_policy(env: Env) -> CaseResult {
    let s = env.sessions(build(Policy::builder().idle_timeout(None))?)?;
    let alice = subject("alice")?;
    let short = s
        .create(
            &alice,
            CreateOptions {
                absolute_lifetime: Some(mins(5)),
                ..CreateOptions::default()
            },
        )
        .await?;
    ensure!(
        short.session.absolute_deadline == short.session.created_at.saturating_add(mins(5)),
        "the override was not applied"
    );
    env.advance(mins(6));
    ensure!(
        !validates(&s, &text(&short)).await,
        "a 5-minute session validates after 6 minutes"
    );
    let too_long = s
        .create(
            &alice,
            CreateOptions {
                absolute_lifetime: Some(Duration::from_secs(48 * 3600)),
                ..CreateOptions::default()
            },
        )
        .await;
    ensure!(
        matches!(too_long, Err(Error::InvalidInput(_))),
        "a lifetime longer than the policy's was accepted: {too_long:?}"
    );
    Ok(())
}
