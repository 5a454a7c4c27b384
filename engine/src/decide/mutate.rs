//! Revocation by id and application-data updates.

use crate::crypto::{SecretKind, Verifier};
use crate::decide::rotation::{Presented as Presented_, classify};
use crate::decide::{Decision, bump, ending};
use crate::error::{Error, InputError};
use crate::event::Event;
use crate::ids::{Kind, Subject};
use crate::policy::Policy;
use crate::record::{RevokeReason, SessionRecord, SessionState};
use crate::time::Timestamp;
use crate::token::Presented;

/// What [`revoke`](crate::TrustedById::revoke) did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RevokeOutcome {
    /// This call wrote the session's tombstone (it was live, or past its deadline but not yet
    /// ended: a revocation never depends on a clock).
    Revoked,
    /// The session had already ended (revoked, evicted, reuse, or an observed expiry).
    AlreadyRevoked {
        /// Why it ended.
        reason: RevokeReason,
    },
    /// No such session: never issued, or already reaped.
    Unknown,
}

/// Revoking by id: any session that is not a tombstone yet becomes one — live or past its
/// deadline, whatever the clock says — so a logout is never lost to a stepped clock or to a
/// write decided before it. Idempotent: an existing tombstone is left as it is.
pub fn revoke(record: Option<&SessionRecord>, at: Timestamp) -> Decision<RevokeOutcome> {
    let Some(rec) = record else {
        return Decision {
            write: None,
            outcome: Ok(RevokeOutcome::Unknown),
            events: Vec::new(),
        };
    };
    match rec.state {
        SessionState::Revoked { reason, .. } => Decision {
            write: None,
            outcome: Ok(RevokeOutcome::AlreadyRevoked { reason }),
            events: Vec::new(),
        },
        // Planted bug for the loom twin tests (the rule before INV-store-time): a session past
        // its deadline at the revoker's clock counts as ended, and no tombstone is written.
        #[cfg(leasehold_planted_bug)]
        SessionState::Active if rec.is_due(at) => Decision {
            write: None,
            outcome: Ok(RevokeOutcome::AlreadyRevoked {
                reason: RevokeReason::Expired,
            }),
            events: Vec::new(),
        },
        SessionState::Active => Decision {
            write: Some(rec.tombstone(at, RevokeReason::Revoked)),
            outcome: Ok(RevokeOutcome::Revoked),
            events: vec![Event::Revoked {
                id: rec.id,
                reason: RevokeReason::Revoked,
            }],
        },
    }
}

/// Revoking by id from trusted server code ([`TrustedById`](crate::TrustedById)): as
/// [`revoke`], but a session of another kind answers [`RevokeOutcome::Unknown`] and is left as
/// it is (a driver acts only on its own kind's sessions).
pub fn revoke_of_kind(
    record: Option<&SessionRecord>,
    kind: &Kind,
    at: Timestamp,
) -> Decision<RevokeOutcome> {
    match record {
        Some(r) if r.kind != *kind => Decision {
            write: None,
            outcome: Ok(RevokeOutcome::Unknown),
            events: Vec::new(),
        },
        _ => revoke(record, at),
    }
}

/// Revoking by id for an owner ("sign out that device"): only a session of `subject` and of
/// `kind` is revoked; anyone else's answers [`RevokeOutcome::Unknown`], exactly as a session
/// that does not exist, so a public id reveals nothing and revokes nothing of another owner.
pub fn revoke_owned(
    record: Option<&SessionRecord>,
    subject: &Subject,
    kind: &Kind,
    at: Timestamp,
) -> Decision<RevokeOutcome> {
    match record {
        Some(r) if r.subject != *subject => revoke_of_kind(None, kind, at),
        _ => revoke_of_kind(record, kind, at),
    }
}

/// Logout by token: the presented secret must be one of the session's (current, predecessor
/// or retired — each proves the holder had the session); then the session is revoked as by
/// [`revoke`]. Never rotates, never touches; a second logout answers `AlreadyRevoked`. An
/// unknown secret, another kind's session or an absent one is `NotAuthenticated`.
pub fn logout(
    record: Option<&SessionRecord>,
    presented: &Presented,
    kind: &Kind,
    at: Timestamp,
) -> Decision<RevokeOutcome> {
    let Some(rec) = record else {
        return Decision::deny(Error::NotAuthenticated);
    };
    let v = Verifier::derive(SecretKind::Session, &presented.id, &presented.secret);
    let known = classify(&rec.credential, &v) != Presented_::Unknown;
    if !known || rec.kind != *kind || rec.id.as_bytes() != &presented.id {
        return Decision::deny(Error::NotAuthenticated);
    }
    revoke(record, at)
}

/// Refuses data over the policy's limit (before any store call).
pub fn check_data(data: &[u8], policy: &Policy) -> Result<(), InputError> {
    if data.len() > policy.max_data_len {
        return Err(InputError::TooLong {
            what: "data",
            max: policy.max_data_len,
        });
    }
    Ok(())
}

/// Replaces a live session's data if its data version is still `expected` (no lost updates).
pub fn update_data(
    record: Option<&SessionRecord>,
    expected: u64,
    data: &[u8],
    at: Timestamp,
    policy: &Policy,
) -> Decision<SessionRecord> {
    if let Err(e) = check_data(data, policy) {
        return Decision::deny(e.into());
    }
    if record.is_some_and(|r| r.kind.as_str() != policy.token_prefix) {
        return Decision::deny(Error::NotAuthenticated);
    }
    if let Some(d) = ending(record, at) {
        return d;
    }
    let Some(rec) = record else {
        return Decision::deny(Error::NotAuthenticated);
    };
    if rec.data_version != expected {
        return Decision::deny(Error::VersionConflict);
    }
    let mut next = rec.clone();
    next.data = data.to_vec();
    next.data_version = next.data_version.wrapping_add(1);
    // Like every write: drop the sealed successor once no predecessor window can use it.
    crate::decide::rotation::drop_sealed_if_closed(&mut next.credential, at, policy);
    let next = bump(next);
    Decision {
        write: Some(next.clone()),
        outcome: Ok(next),
        events: Vec::new(),
    }
}
