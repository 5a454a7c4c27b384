//! The native-expiry mode's TTL table: which key its "server" removes when, as Redis removes
//! keys by TTL.

use std::collections::BTreeSet;

use crate::ids::{Resource, SessionId, Subject};
use crate::time::Timestamp;

use super::inner::Key;
use super::shard::Sharded;

/// A key of the native-expiry mode: what its "server" removes by TTL, as Redis removes keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum TtlKey {
    /// A record (session, ticket, slot) or a subject's creation log.
    Record(Key),
    /// A subject's index (`by_subject`).
    Subject(Subject),
    /// A subject's index of sessions not ended (`open_by_subject`).
    Open(Subject),
    /// A resource's index (`by_resource`).
    Resource(Resource),
    /// A session's slots.
    SessionSlots(SessionId),
    /// A resource's slots.
    ResourceSlots(Resource),
    /// The reaper's walk list (`expiry`) with its side tables (`gone_*`).
    Expiry,
    /// The global-cap index (`active`).
    Active,
}

/// The native-expiry mode's TTL table: when each key is removed.
#[derive(Default)]
pub(super) struct Ttls {
    pub(super) at: Sharded<TtlKey, Timestamp>,
    order: BTreeSet<(Timestamp, TtlKey)>,
}

impl Ttls {
    /// Sets the key's TTL (a record's: `SET … PXAT`).
    pub(super) fn set(&mut self, k: TtlKey, t: Timestamp) {
        if let Some(old) = self.at.insert(k.clone(), t) {
            self.order.remove(&(old, k.clone()));
        }
        self.order.insert((t, k));
    }

    /// Moves the key's TTL to `t` unless it is later already (an index's: `PEXPIREAT NX`, then
    /// `GT`), so an index outlives every member it was given.
    pub(super) fn at_least(&mut self, k: TtlKey, t: Timestamp) {
        if self.at.get(&k).is_none_or(|&old| old < t) {
            self.set(k, t);
        }
    }

    pub(super) fn clear(&mut self, k: &TtlKey) {
        if let Some(old) = self.at.remove(k) {
            self.order.remove(&(old, k.clone()));
        }
    }

    /// The next key due at `t`, removed from the table.
    pub(super) fn pop_due(&mut self, t: Timestamp) -> Option<TtlKey> {
        if self.order.first()?.0 > t {
            return None;
        }
        let (_, k) = self.order.pop_first()?;
        self.at.remove(&k);
        Some(k)
    }
}
