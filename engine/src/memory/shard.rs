//! A hash map split into a fixed number of shards chosen by key, so that no single call pays
//! for rehashing the whole map.
//!
//! A std `HashMap` grows by rehashing every entry at once: at 1.8 M sessions one create under
//! the store's lock took seconds, stalling every caller. Here each shard grows on its own, so
//! a rehash moves at most 1/[`SHARDS`] of the entries, and an operation still costs one hash
//! more than a plain map (the shard pick). Everything else stays a plain map: the store keeps
//! its one lock, so nothing about atomicity or linearizability changes.

use std::collections::hash_map::{Entry, HashMap, RandomState};
use std::hash::{BuildHasher, Hash};

use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};

use super::ttl::TtlKey;

/// Shards per map: at 5 M entries one holds ~5 k, whose rehash (small or boxed values) takes
/// about a millisecond. Growing to 5 M (`examples/memory_growth.rs`, quiet machine), 256 shards
/// gave a longest call of 7.5–9.8 ms (p99.99 4.2 ms), at the 10 ms target's edge; 1 024 give
/// 2.9–9.9 ms (p99.99 1.4 ms). An empty shard allocates nothing, so an empty map costs one
/// allocation of `SHARDS` empty maps (~48 KiB).
const SHARDS: usize = 1024;

/// A key that picks its shard.
pub(super) trait ShardKey: Hash + Eq {
    /// A number whose low bits pick the shard: by default the key's hash under the map's own
    /// random keys.
    fn pick(&self, keys: &RandomState) -> u64 {
        keys.hash_one(self)
    }
}

/// Ids are random past their 2-byte shard tag (the engine draws them from its entropy), so
/// their own bytes pick the shard without a second hash per operation. Ids a caller chose
/// badly could only crowd one shard: its rehash grows back toward a whole map's, and nothing
/// else changes.
macro_rules! random_id_picks {
    ($($id:ty),*) => {$(
        impl ShardKey for $id {
            fn pick(&self, _: &RandomState) -> u64 {
                let b = self.as_bytes();
                u64::from_le_bytes([b[2], b[3], b[4], b[5], b[6], b[7], b[8], b[9]])
            }
        }
    )*};
}
random_id_picks!(SessionId, SlotId, TicketId);
impl ShardKey for Subject {}
impl ShardKey for Resource {}
impl ShardKey for TtlKey {}

/// A map whose entries are spread over [`SHARDS`] independent `HashMap`s by a hash of the key.
pub(super) struct Sharded<K, V> {
    /// Picks the shard. Its keys are independent of each shard's own hasher, so the entries
    /// of one shard still spread over that shard's buckets.
    pick: RandomState,
    shards: Box<[HashMap<K, V>]>,
}

impl<K, V> Default for Sharded<K, V> {
    fn default() -> Self {
        Sharded {
            pick: RandomState::new(),
            shards: (0..SHARDS).map(|_| HashMap::new()).collect(),
        }
    }
}

impl<K: ShardKey, V> Sharded<K, V> {
    fn shard(&self, k: &K) -> &HashMap<K, V> {
        &self.shards[k.pick(&self.pick) as usize % SHARDS]
    }

    fn shard_mut(&mut self, k: &K) -> &mut HashMap<K, V> {
        let i = k.pick(&self.pick) as usize % SHARDS;
        &mut self.shards[i]
    }

    pub(super) fn get(&self, k: &K) -> Option<&V> {
        self.shard(k).get(k)
    }

    pub(super) fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.shard_mut(k).get_mut(k)
    }

    pub(super) fn contains_key(&self, k: &K) -> bool {
        self.shard(k).contains_key(k)
    }

    pub(super) fn insert(&mut self, k: K, v: V) -> Option<V> {
        self.shard_mut(&k).insert(k, v)
    }

    pub(super) fn remove(&mut self, k: &K) -> Option<V> {
        self.shard_mut(k).remove(k)
    }

    pub(super) fn entry(&mut self, k: K) -> Entry<'_, K, V> {
        self.shard_mut(&k).entry(k)
    }
}

impl<K, V> Sharded<K, V> {
    /// The number of entries (a sum over the shards).
    pub(super) fn len(&self) -> usize {
        self.shards.iter().map(HashMap::len).sum()
    }

    pub(super) fn clear(&mut self) {
        self.shards.iter_mut().for_each(HashMap::clear);
    }

    pub(super) fn keys(&self) -> impl Iterator<Item = &K> {
        self.shards.iter().flat_map(HashMap::keys)
    }

    pub(super) fn values(&self) -> impl Iterator<Item = &V> {
        self.shards.iter().flat_map(HashMap::values)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    impl ShardKey for u32 {}

    #[test]
    fn behaves_as_one_map() {
        let mut m = Sharded::default();
        for i in 0..10_000u32 {
            assert_eq!(m.insert(i, i * 2), None);
        }
        assert_eq!(m.len(), 10_000);
        assert_eq!(m.get(&7), Some(&14));
        *m.get_mut(&7).unwrap_or(&mut 0) = 1;
        assert_eq!(m.get(&7), Some(&1));
        *m.entry(10_000).or_default() += 3;
        assert!(m.contains_key(&10_000));
        assert_eq!(m.remove(&10_000), Some(3));
        assert_eq!(m.keys().count(), 10_000);
        assert_eq!(
            m.values().map(|&v| u64::from(v)).sum::<u64>(),
            99_990_000 - 14 + 1
        );
        m.clear();
        assert_eq!(m.len(), 0);
    }
}
