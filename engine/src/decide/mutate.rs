//! Revocation by id and application-data updates.

use crate::decide::{Decision, bump, ending};
use crate::error::{Error, InputError};
use crate::event::Event;
use crate::policy::Policy;
use crate::record::{RevokeReason, SessionRecord, SessionState};
use crate::time::Timestamp;

/// What [`revoke`](crate::Sessions::revoke) did.
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
    let next = bump(next);
    Decision {
        write: Some(next.clone()),
        outcome: Ok(next),
        events: Vec::new(),
    }
}
