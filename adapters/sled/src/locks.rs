//! Group locks: the fallback that keeps group operations from starving.
//!
//! Caps stay correct through optimistic snapshots (see the crate docs): a transaction aborts
//! and retries when a member joined its group since the snapshot. Correct, but not fair: a flood
//! of creations for one subject could keep a capped insert retrying for as long as the flood
//! lasts. sled allows one process per database, so an in-process lock per group is enough to
//! make every group-changing operation finish: capped inserts and slot acquisitions take the
//! lock of the group they count, so the only snapshots that can still go stale are those raced
//! by writers that need no count (uncapped inserts), which a retry then outlasts.
//!
//! An evicting global cap validates its walk of the creation-order index by a stamp that every
//! insert changes, so those inserts also take one store-wide lock (before any stripe, so lock
//! order stays fixed): evicting creators then wait their turn instead of invalidating each
//! other's walks.
//!
//! Revocations and listings need no lock and never retry: they act on the members present when
//! their scan ran (everything created before the call), which is exactly their contract.

use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::keys::GroupKind;

/// Stripes: groups hash onto these; two groups sharing a stripe only serialize, never deadlock.
const STRIPES: usize = 64;

/// A fixed array of striped mutexes and the store-wide lock, shared by clones of a store.
#[derive(Clone)]
pub(crate) struct GroupLocks {
    stripes: Arc<[Mutex<()>]>,
    global: Arc<Mutex<()>>,
}

/// Held while a group is counted and written.
pub(crate) struct Held<'a> {
    _global: Option<MutexGuard<'a, ()>>,
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl GroupLocks {
    pub(crate) fn new() -> Self {
        GroupLocks {
            stripes: (0..STRIPES).map(|_| Mutex::new(())).collect(),
            global: Arc::new(Mutex::new(())),
        }
    }

    fn stripe(kind: GroupKind, name: &[u8]) -> usize {
        let mut h = DefaultHasher::new();
        (kind as u8).hash(&mut h);
        name.hash(&mut h);
        (h.finish() % STRIPES as u64) as usize
    }

    /// Locks the store-wide lock if `global`, then the stripes of `groups`, in stripe order
    /// (so two callers never deadlock), each once.
    pub(crate) fn lock(&self, groups: &[(GroupKind, &[u8])], global: bool) -> Held<'_> {
        // Taken first: nobody holding a stripe ever waits for it.
        let global = global.then(|| self.global.lock().unwrap_or_else(|p| p.into_inner()));
        let mut stripes: Vec<usize> = groups.iter().map(|(k, n)| Self::stripe(*k, n)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        // The mutexes guard no data: a panic while one was held leaves nothing half-written,
        // so a poisoned stripe is still a valid lock.
        Held {
            _global: global,
            _guards: stripes
                .into_iter()
                .filter_map(|i| self.stripes.get(i))
                .map(|m| m.lock().unwrap_or_else(|p| p.into_inner()))
                .collect(),
        }
    }
}
