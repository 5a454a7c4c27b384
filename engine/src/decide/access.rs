//! Access tokens: short-lived, multi-use credentials of a session (policy `access_ttl`).
//!
//! - Issued with the session and with every rotation; the record keeps only the verifier of
//!   the current one and its deadline, so a rotation replaces it and an ending ends it.
//! - Its secret is derived one-way from the session secret of that generation
//!   (`crypto::access_secret`): whoever is answered a session token (a create, a rotation, an
//!   idempotent re-issue of one) gets the very same access token, and nothing else is stored.
//! - Validating one is a pure read: one load, no write unless an ending must be written down.
//!   Activity is recorded when the session token is used (a refresh), not per access.

use crate::crypto::{Secret, SecretKind, Verifier, access_secret};
use crate::decide::{Decision, ending};
use crate::error::Error;
use crate::ids::{Kind, SessionId};
use crate::policy::Policy;
use crate::record::{AccessGrant, SessionRecord};
use crate::time::Timestamp;
use crate::token::{AccessToken, Presented};

/// The grant generation `generation` of session `id` gets at `now` (secret `session`), or
/// `None` if the policy issues no access tokens. It never outlives `absolute_deadline`.
pub fn grant(
    id: &SessionId,
    generation: u64,
    session: &Secret,
    now: Timestamp,
    absolute_deadline: Timestamp,
    policy: &Policy,
) -> Option<AccessGrant> {
    let ttl = policy.access_ttl?;
    let secret = access_secret(generation, session);
    Some(AccessGrant {
        verifier: Verifier::derive(SecretKind::Access, id.as_bytes(), &secret),
        expires_at: now.saturating_add(ttl).min(absolute_deadline),
    })
}

/// The access token that goes with session secret `session` of `record`'s current
/// generation, if the record holds an access grant.
pub fn token(record: &SessionRecord, session: &Secret, policy: &Policy) -> Option<AccessToken> {
    record.credential.access.as_ref()?;
    let secret = access_secret(record.credential.generation, session);
    Some(AccessToken::new(&policy.access_prefix, record.id, &secret))
}

/// The access token that goes with `session_token` (a token this driver just issued or
/// re-issued for `record`), if the record holds an access grant.
pub fn token_for(
    record: &SessionRecord,
    session_token: &crate::token::SessionToken,
    policy: &Policy,
) -> Option<AccessToken> {
    let presented = crate::token::parse(
        session_token.expose_secret().as_bytes(),
        &policy.token_prefix,
    )
    .ok()?;
    token(record, &presented.secret, policy)
}

/// Decides an access-token validation at `at` for a driver of `kind`: the session must be
/// live (an ending is written down first, as for every read) and of that kind, and the token
/// must be its current, unexpired access token. Never writes otherwise.
pub fn validate(
    record: Option<&SessionRecord>,
    presented: &Presented,
    kind: &Kind,
    at: Timestamp,
) -> Decision<SessionRecord> {
    let Some(rec) = record else {
        return Decision::deny(Error::NotAuthenticated);
    };
    let v = Verifier::derive(SecretKind::Access, &presented.id, &presented.secret);
    let matches = rec
        .credential
        .access
        .as_ref()
        .is_some_and(|a| a.verifier.ct_eq(&v));
    if !matches || rec.kind != *kind || rec.id.as_bytes() != &presented.id {
        return Decision::deny(Error::NotAuthenticated);
    }
    if let Some(d) = ending(Some(rec), at) {
        return d;
    }
    match &rec.credential.access {
        Some(a) if at < a.expires_at => Decision {
            write: None,
            outcome: Ok(rec.clone()),
            events: Vec::new(),
        },
        _ => Decision::deny(Error::AccessTokenExpired),
    }
}
