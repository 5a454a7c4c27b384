//! Trusted by-id decisions: reads and keepalive of a session named by its (non-secret) id, for
//! server-side code that has authenticated the caller by its own means (a PTY lease registry,
//! an admin console). Never reachable from a presented token: the driver exposes them only
//! through [`Sessions::trusted_by_id`](crate::Sessions::trusted_by_id).
//!
//! Each refuses a session of another kind (the driver's policy must never be applied to
//! another kind's session) and writes down an ending it observes, as every read does.

use crate::decide::read::{touch, touch_due};
use crate::decide::{Decision, bump, ending, rotation};
use crate::error::Error;
use crate::ids::Kind;
use crate::policy::Policy;
use crate::record::SessionRecord;
use crate::time::Timestamp;

/// The session, if it is live at `at` and of `kind`.
pub fn get(record: Option<&SessionRecord>, kind: &Kind, at: Timestamp) -> Decision<SessionRecord> {
    if record.is_some_and(|r| r.kind != *kind) {
        return Decision::deny(Error::NotAuthenticated);
    }
    if let Some(d) = ending(record, at) {
        return d;
    }
    match record {
        Some(r) => Decision {
            write: None,
            outcome: Ok(r.clone()),
            events: Vec::new(),
        },
        None => Decision::deny(Error::NotAuthenticated),
    }
}

/// Keeps a live session alive, as a validate would: moves its idle deadline to `at` plus the
/// idle timeout (never past the absolute deadline) when the touch is due, else writes
/// nothing. Never revives an ended session.
pub fn keepalive(
    record: Option<&SessionRecord>,
    kind: &Kind,
    at: Timestamp,
    policy: &Policy,
) -> Decision<SessionRecord> {
    let d = get(record, kind, at);
    let Ok(rec) = &d.outcome else {
        return d;
    };
    if !touch_due(rec, at, policy) {
        return d;
    }
    let mut next = rec.clone();
    touch(&mut next, at, policy);
    // Like every write: drop the sealed successor once no predecessor window can use it.
    rotation::drop_sealed_if_closed(&mut next.credential, at, policy);
    let next = bump(next);
    Decision {
        write: Some(next.clone()),
        outcome: Ok(next),
        events: Vec::new(),
    }
}
