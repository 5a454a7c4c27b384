//! Slots: short self-expiring leases held while a connection is attached.

use crate::entropy::{Entropy, EntropyError};
use crate::ids::{Resource, SessionId, SlotId};
use crate::policy::Policy;
use crate::record::SlotRecord;
use crate::store::SlotCaps;
use crate::time::Timestamp;

/// A new slot on `session`, counting against `resource` if given.
pub fn new_slot(
    session: &SessionId,
    resource: Option<&Resource>,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Result<SlotRecord, EntropyError> {
    Ok(SlotRecord {
        id: SlotId::generate(session.shard_tag(), entropy)?,
        session: *session,
        resource: resource.cloned(),
        acquired_at: now,
        expires_at: now.saturating_add(policy.slot_ttl),
    })
}

/// The slot expiry a heartbeat at `now` sets.
pub fn heartbeat_expiry(now: Timestamp, policy: &Policy) -> Timestamp {
    now.saturating_add(policy.slot_ttl)
}

/// The caps an acquisition is checked against.
pub fn caps(policy: &Policy) -> SlotCaps {
    SlotCaps {
        per_session: policy.max_slots_per_session,
        per_resource: policy.max_slots_per_resource,
    }
}
