//! Revocation by id and application-data updates.

use crate::decide::{Decision, bump};
use crate::error::{Error, InputError};
use crate::event::Event;
use crate::policy::Policy;
use crate::record::{RevokeReason, SessionRecord, SessionState};
use crate::time::Timestamp;

/// Revoking by id: a live session becomes a tombstone (`true`); anything else is left as it is
/// (`false`): revoking is idempotent, and an expired session needs no tombstone.
pub fn revoke(record: Option<&SessionRecord>, now: Timestamp) -> Decision<bool> {
    match record {
        Some(rec) if rec.is_live(now) => Decision {
            write: Some(rec.tombstone(now, RevokeReason::Revoked)),
            outcome: Ok(true),
            events: vec![Event::Revoked {
                id: rec.id,
                reason: RevokeReason::Revoked,
            }],
        },
        _ => Decision {
            write: None,
            outcome: Ok(false),
            events: Vec::new(),
        },
    }
}

/// Denial for a record that is not live (missing, revoked or expired), by cause.
pub fn not_live(record: Option<&SessionRecord>) -> Error {
    match record.map(|r| r.state) {
        None => Error::NotAuthenticated,
        Some(SessionState::Revoked { reason, .. }) => Error::Revoked { reason },
        Some(SessionState::Active) => Error::Expired,
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
    now: Timestamp,
    policy: &Policy,
) -> Decision<SessionRecord> {
    if let Err(e) = check_data(data, policy) {
        return Decision::deny(e.into());
    }
    let rec = match record {
        Some(r) if r.is_live(now) => r,
        other => return Decision::deny(not_live(other)),
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
