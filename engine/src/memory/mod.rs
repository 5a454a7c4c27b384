//! `MemoryStore`: the reference adapter. One lock makes every method trivially atomic and
//! linearizable; indexes make every per-session operation independent of the number of live
//! sessions, and reaping walk only what is due. No index grows all at once (see `inner::Inner`),
//! so no single call stalls the others while the store grows.
//!
//! It has no clock of its own: it judges at the caller's `now`. For tests of the server-clock
//! rules, [`MemoryStore::with_server_clock`] gives it one, as a database server has (the
//! reference for what Postgres and Redis adapters must do with theirs), and
//! [`MemoryStore::with_native_expiry`] makes it expire keys on that clock as Redis does (the
//! reference for a store whose `reap` only cleans index entries).
//!
//! Its primitives come from [`crate::sync`], so loom can explore every interleaving of it.

use std::collections::BTreeSet;
use std::time::Duration;

use async_trait::async_trait;

use crate::codec;
use crate::crypto::Verifier;
use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};
use crate::record::{RevokeReason, SessionRecord, SessionState, SlotRecord, TicketRecord};
use crate::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertCheck, InsertOutcome, KeyDeadline,
    KeyHolds, Loaded, MAX_PAGE, Page, ReapOutcome, Reaped, Scope, SlotCaps, SlotOutcome, Store,
    StoreError, TakeOutcome, check_insert, check_loaded, check_swap, judged_at, rebase,
};
use crate::sync::{Arc, Mutex, MutexGuard};

mod inner;
mod shard;
mod ttl;

use crate::time::{Clock, Timestamp};
use inner::{Inner, Key};
use shard::Sharded;
use ttl::{TtlKey, Ttls};

/// The in-memory reference store. Cheap to clone (clones share the data).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
    /// A clock of its own, as a database server has (tests of the server-clock rules).
    server_clock: Option<std::sync::Arc<dyn Clock>>,
    /// Keys expire on `server_clock`, as Redis TTLs do ([`MemoryStore::with_native_expiry`]).
    native_expiry: bool,
}

impl std::fmt::Debug for MemoryStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MemoryStore")
    }
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> Self {
        MemoryStore::default()
    }

    /// An empty store with a clock of its own, as a database server has: it judges every
    /// conditional write at the later of `clock` and the caller's `now`, returns its time from
    /// `load_session`, and declares `server_clock`. For tests: give the store and each caller
    /// their own [`ManualClock`](crate::ManualClock) to play skewed processes against one
    /// server.
    pub fn with_server_clock(clock: impl Clock) -> Self {
        MemoryStore {
            inner: Arc::default(),
            server_clock: Some(std::sync::Arc::new(clock)),
            native_expiry: false,
        }
    }

    /// An empty store whose "server" expires keys itself, as Redis does — the reference for
    /// adapters that declare `native_expiry`. It is [`with_server_clock`](Self::with_server_clock)
    /// plus TTLs: every record key expires at its record's deadline (a tombstone keeps its
    /// record's), every index key no earlier than its latest member's, each removed once
    /// `clock` passes it (before every call, as a server expires keys without being asked).
    /// `load_session` then returns `None` for an expired record, and `reap` only cleans index
    /// entries pointing at records already gone, counting nothing (it removes no record).
    /// [`Store::key_deadlines`] lists every key with its TTL.
    ///
    /// Keys expire on `clock` itself: [`Store::set_clock_offset`] moves the time the store
    /// judges at, not the time its keys expire at — as a Redis adapter's offset is a script
    /// argument while `PEXPIREAT` runs on the server's real clock.
    pub fn with_native_expiry(clock: impl Clock) -> Self {
        MemoryStore {
            inner: Arc::new(Mutex::new(Inner {
                ttl: Some(Ttls::default()),
                ..Inner::default()
            })),
            server_clock: Some(std::sync::Arc::new(clock)),
            native_expiry: true,
        }
    }

    /// The store's own time, if it has a clock.
    fn store_time(&self, g: &Inner) -> Option<Timestamp> {
        let t = self.server_clock.as_ref()?.now();
        let shift = Duration::from_millis(g.clock_offset_ms.unsigned_abs());
        Some(if g.clock_offset_ms >= 0 {
            t.saturating_add(shift)
        } else {
            t.saturating_sub(shift)
        })
    }

    /// The time a call is judged at: the later of the caller's and the store's clock.
    fn at(&self, g: &Inner, now: Timestamp) -> Timestamp {
        judged_at(now, self.store_time(g))
    }

    /// The store, locked, with every key whose TTL has passed removed (native-expiry mode).
    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic mid-update: refuse (fail closed) rather than read
        // possibly half-written state.
        let mut g = self
            .inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))?;
        if let (true, Some(clock)) = (self.native_expiry, &self.server_clock) {
            g.expire(clock.now());
        }
        Ok(g)
    }

    /// Number of stored session records (live, expired and tombstones).
    pub fn session_count(&self) -> usize {
        self.lock().map(|g| g.sessions.len()).unwrap_or(0)
    }

    /// Every entry the store holds — records, index entries, expiry-index entries, rate logs,
    /// and in native-expiry mode the TTLs and the notes of removed records' index entries —
    /// the footprint INV-bounded-storage bounds: it returns to zero once everything stored has
    /// expired and been reaped.
    pub fn stored_entries(&self) -> usize {
        fn sets<K, V>(m: &Sharded<K, BTreeSet<V>>) -> usize {
            m.values().map(BTreeSet::len).sum()
        }
        let Ok(g) = self.lock() else { return 0 };
        let logs: usize = g.creations.values().map(|(_, log)| log.len()).sum();
        let orders = g.ids.len() + g.open_by_creation.len();
        let ttls = g.ttl.as_ref().map_or(0, |t| t.at.len());
        [
            ttls,
            orders,
            g.gone_sessions.len(),
            g.gone_slots.len(),
            g.sessions.len(),
            sets(&g.by_subject),
            sets(&g.open_by_subject),
            sets(&g.by_resource),
            g.creations.len(),
            logs,
            g.tickets.len(),
            g.slots.len(),
            sets(&g.slots_by_session),
            sets(&g.slots_by_resource),
            g.expiry.len(),
            g.active.len(),
        ]
        .iter()
        .sum()
    }
}

#[async_trait]
impl Store for MemoryStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with_raw_dump(true)
            .with_server_clock(self.server_clock.is_some())
            .with_native_expiry(self.native_expiry)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        let g = self.lock()?;
        let record = g.session(id).cloned().map(Box::new);
        if let Some(r) = &record {
            check_loaded(id, r)?;
        }
        let loaded = Loaded::new(record);
        Ok(match self.store_time(&g) {
            Some(t) => loaded.at_store_time(t),
            None => loaded,
        })
    }

    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        match (&self.server_clock, self.lock()) {
            (Some(_), Ok(mut g)) => {
                g.clock_offset_ms = offset_ms;
                true
            }
            _ => false,
        }
    }

    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(self.store_time(&*self.lock()?))
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut g = self.lock()?;
        let now = self.at(&g, now);
        if check_insert(g.session(&record.id), record)? == InsertCheck::Replay {
            return Ok(InsertOutcome::Inserted {
                evicted: Vec::new(),
            });
        }
        if let Some(rate) = limits.creation_rate {
            g.prune_creations(&record.subject, rate.window, now);
        }
        let plan = match g.plan_insert(&record.subject, limits, now) {
            Ok(plan) => plan,
            Err(refused) => return Ok(refused),
        };
        for id in plan.expired {
            if let Some(r) = g.session(&id) {
                let t = r.tombstone(now, RevokeReason::Expired);
                g.put_session(t);
            }
        }
        let evicted = plan.evicted;
        g.revoke_ids(evicted.clone(), now, RevokeReason::Evicted);
        #[cfg(leasehold_planted_bug)]
        {
            // Planted bug for the loom twin tests: count the subject's live sessions, release
            // the lock, then insert (the count-then-insert race DESIGN §8 rules out).
            drop(g);
            crate::sync::yield_now();
            g = self.lock()?;
        }
        if let Some(rate) = limits.creation_rate {
            g.record_creation(&record.subject, record.id, rate.window, now);
        }
        g.put_session(record.clone());
        Ok(InsertOutcome::Inserted { evicted })
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        let at = self.at(&g, now);
        check_swap(g.session(&new.id), new, expected_version, at)?;
        #[cfg(leasehold_planted_bug)]
        {
            // Planted bug for the loom twin tests: check, release the lock, then act.
            drop(g);
            crate::sync::yield_now();
            g = self.lock()?;
        }
        g.put_session(new.clone());
        Ok(())
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let now = self.at(&g, now);
        let ids = g
            .by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        Ok(g.revoke_ids(ids, now, RevokeReason::Subject))
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let mut g = self.lock()?;
        let now = self.at(&g, now);
        let ids = g
            .by_resource
            .get(resource)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        Ok(g.revoke_ids(ids, now, RevokeReason::Resource))
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        let g = self.lock()?;
        Ok(g.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| g.session(id).cloned())
            .collect())
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.tickets.contains_key(&ticket.id) {
            return Err(StoreError::AlreadyExists);
        }
        let at = self.at(&g, ticket.created_at);
        let ticket = TicketRecord {
            created_at: at,
            expires_at: rebase(ticket.expires_at, ticket.created_at, at),
            ..ticket.clone()
        };
        g.put_ticket(ticket);
        Ok(())
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let mut g = self.lock()?;
        let now = self.at(&g, now);
        let Some(t) = g.tickets.get(id) else {
            return Ok(TakeOutcome::Missing);
        };
        if !t.verifier.ct_eq(verifier) {
            return Ok(TakeOutcome::Missing);
        }
        let live = now < t.expires_at;
        let t = t.clone();
        #[cfg(leasehold_planted_bug)]
        {
            // Planted bug for the loom twin tests: look the ticket up, release the lock, then
            // delete it and hand it out (two redeemers can both pass the lookup).
            drop(g);
            crate::sync::yield_now();
            g = self.lock()?;
        }
        g.remove_ticket(id);
        Ok(if live {
            TakeOutcome::Taken(t)
        } else {
            TakeOutcome::Expired
        })
    }

    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        let mut g = self.lock()?;
        let caller_now = now;
        let now = self.at(&g, now);
        if !g.session_live(&slot.session, now) {
            return Ok(SlotOutcome::SessionNotLive);
        }
        if let Some(max) = caps.per_session
            && g.live_slots(g.slots_by_session.get(&slot.session), now) >= max as usize
        {
            return Ok(SlotOutcome::SessionCapReached);
        }
        if let (Some(max), Some(res)) = (caps.per_resource, &slot.resource)
            && g.live_slots(g.slots_by_resource.get(res), now) >= max as usize
        {
            return Ok(SlotOutcome::ResourceCapReached);
        }
        if g.slots.contains_key(&slot.id) {
            return Err(StoreError::AlreadyExists);
        }
        #[cfg(leasehold_planted_bug)]
        {
            // Planted bug for the loom twin tests: check the slot caps, release the lock, then
            // insert (two acquirers can both pass the count).
            drop(g);
            crate::sync::yield_now();
            g = self.lock()?;
        }
        g.put_slot(SlotRecord {
            acquired_at: now,
            expires_at: rebase(slot.expires_at, caller_now, now),
            ..slot.clone()
        });
        Ok(SlotOutcome::Acquired)
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let mut g = self.lock()?;
        let caller_now = now;
        let now = self.at(&g, now);
        let Some(s) = g.slots.get(id) else {
            return Ok(HeartbeatOutcome::Missing);
        };
        if !s.is_live(now) {
            g.remove_slot(id);
            return Ok(HeartbeatOutcome::Missing);
        }
        if !g.session_live(&s.session, now) {
            g.remove_slot(id);
            return Ok(HeartbeatOutcome::SessionNotLive);
        }
        let s = SlotRecord {
            expires_at: rebase(expires_at, caller_now, now),
            ..s.clone()
        };
        g.put_slot(s);
        Ok(HeartbeatOutcome::Extended)
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        Ok(self.lock()?.remove_slot(id))
    }

    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let g = self.lock()?;
        // A page of 0 would make no progress and could not say where the listing stands.
        let limit = limit.clamp(1, MAX_PAGE);
        let from = after.map_or(Bound::Unbounded, Bound::Excluded);
        // Groups are ordered sets: a page starts where the last one ended, without sorting.
        fn group<'a>(
            set: Option<&'a BTreeSet<SessionId>>,
            from: Bound<&'a SessionId>,
        ) -> impl Iterator<Item = SessionId> + 'a {
            set.into_iter()
                .flat_map(move |set| set.range((from, Bound::Unbounded)))
                .copied()
        }
        let ids: Box<dyn Iterator<Item = SessionId> + '_> = match scope {
            Scope::All => Box::new(g.ids.range((from, Bound::Unbounded)).map(|(id, _)| *id)),
            Scope::Subject(s) => Box::new(group(g.by_subject.get(s), from)),
            Scope::Resource(r) => Box::new(group(g.by_resource.get(r), from)),
        };
        // One more than the page, to know whether another page follows (index entries of
        // records a native expiry already removed are skipped).
        let mut records: Vec<SessionRecord> = ids
            .filter_map(|id| g.session(&id).cloned())
            .take(limit + 1)
            .collect();
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        let g = self.lock()?;
        let now = self.at(&g, now);
        let live = |set: Option<&BTreeSet<SessionId>>| {
            set.into_iter()
                .flatten()
                .filter(|id| g.session_live(id, now))
                .count()
        };
        let n = match scope {
            Scope::All => g.live_sessions(now),
            Scope::Subject(s) => live(g.open_by_subject.get(s)),
            Scope::Resource(r) => live(g.by_resource.get(r)),
        };
        Ok(n as u64)
    }

    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let g = self.lock()?;
        let now = self.at(&g, now);
        Ok(match g.plan_insert(subject, limits, now) {
            Ok(plan) => InsertOutcome::Inserted {
                evicted: plan.evicted,
            },
            Err(refused) => refused,
        })
    }

    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        Ok(self.lock()?.forget_creation(subject, id))
    }

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        let mut g = self.lock()?;
        if let (true, Some(clock)) = (self.native_expiry, &self.server_clock) {
            // The server reclaims records on its own clock; reaping only tidies indexes.
            let ended = g.reap_index_entries(clock.now(), limit);
            return Ok(ReapOutcome {
                ended,
                ..ReapOutcome::default()
            });
        }
        let now = self.at(&g, now);
        let mut out = ReapOutcome::default();
        let mut removed = 0usize;
        while removed < limit {
            let Some((due, key)) = g.expiry.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            g.expiry_remove(&(due, key.clone()));
            match key {
                Key::Session(id) => {
                    if let Some(r) = g.remove_session(&id) {
                        out.sessions += 1;
                        out.ended.push(Reaped {
                            reason: match r.state {
                                SessionState::Revoked { reason, .. } => Some(reason),
                                SessionState::Active => Some(RevokeReason::Expired),
                            },
                            id: r.id,
                            subject: r.subject,
                            resource: r.resource,
                        });
                    }
                }
                Key::Ticket(id) => {
                    if g.remove_ticket(&id) {
                        out.tickets += 1;
                    }
                }
                Key::Slot(id) => {
                    if g.remove_slot(&id) {
                        out.slots += 1;
                    }
                }
                Key::Rate(subject) => {
                    g.creations.remove(&subject);
                    g.ttl_clear(true, TtlKey::Record(Key::Rate(subject)));
                    continue; // bookkeeping, not a record
                }
            }
            removed += 1;
        }
        Ok(out)
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let g = self.lock()?;
        let mut out = Vec::new();
        for r in g.sessions.values() {
            out.push(r.id.as_bytes().to_vec());
            out.push(codec::encode_session(r));
        }
        for t in g.tickets.values() {
            out.push(t.id.as_bytes().to_vec());
            out.push(codec::encode_ticket(t));
        }
        for s in g.slots.values() {
            out.push(s.id.as_bytes().to_vec());
            out.push(codec::encode_slot(s));
        }
        Ok(Some(out))
    }

    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        let g = self.lock()?;
        let Some(ttl) = &g.ttl else {
            return Ok(None);
        };
        let mut out = Vec::new();
        let mut key = |name: String, holds: KeyHolds, k: TtlKey| {
            out.push(KeyDeadline {
                key: name.into_bytes(),
                holds,
                deadline: ttl.at.get(&k).copied(),
            });
        };
        for id in g.sessions.keys() {
            let k = TtlKey::Record(Key::Session(*id));
            key(format!("s:{id}"), KeyHolds::Session(*id), k);
        }
        for id in g.tickets.keys() {
            let k = TtlKey::Record(Key::Ticket(*id));
            key(format!("t:{id}"), KeyHolds::Ticket(*id), k);
        }
        for id in g.slots.keys() {
            let k = TtlKey::Record(Key::Slot(*id));
            key(format!("l:{id}"), KeyHolds::Slot(*id), k);
        }
        for who in g.creations.keys() {
            let k = TtlKey::Record(Key::Rate(who.clone()));
            key(format!("r:{who}"), KeyHolds::Index, k);
        }
        for who in g.by_subject.keys() {
            key(
                format!("u:{who}"),
                KeyHolds::Index,
                TtlKey::Subject(who.clone()),
            );
        }
        for who in g.open_by_subject.keys() {
            key(
                format!("o:{who}"),
                KeyHolds::Index,
                TtlKey::Open(who.clone()),
            );
        }
        for res in g.by_resource.keys() {
            key(
                format!("m:{res}"),
                KeyHolds::Index,
                TtlKey::Resource(res.clone()),
            );
        }
        for id in g.slots_by_session.keys() {
            key(
                format!("ls:{id}"),
                KeyHolds::Index,
                TtlKey::SessionSlots(*id),
            );
        }
        for res in g.slots_by_resource.keys() {
            let k = TtlKey::ResourceSlots(res.clone());
            key(format!("lr:{res}"), KeyHolds::Index, k);
        }
        if !g.expiry.is_empty() {
            key("x".to_owned(), KeyHolds::Index, TtlKey::Expiry);
        }
        if !g.active.is_empty() {
            key("g".to_owned(), KeyHolds::Index, TtlKey::Active);
        }
        Ok(Some(out))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use futures::executor::block_on;

    use super::*;
    use crate::record::TOMBSTONE_RETENTION;
    use crate::{CreateOptions, ManualClock, Policy, Rate, SeededEntropy, Sessions};

    fn sessions(store: &MemoryStore, clock: &ManualClock, p: Policy) -> Sessions<MemoryStore> {
        Sessions::new(store.clone(), p)
            .unwrap()
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(11))
    }

    fn ages() -> Policy {
        Policy::builder()
            .no_absolute_lifetime()
            .idle_timeout(None)
            .renewal_interval(None)
            .build()
            .unwrap()
    }

    #[test]
    fn a_tombstone_lowers_its_ttl_and_reap_reports_the_cleaned_entries() {
        // Native expiry: the tombstone of a 100-year session must expire at its own (earlier)
        // deadline, not at the record's, and reap then reports it with no reason.
        let clock = ManualClock::default();
        let store = MemoryStore::with_native_expiry(clock.clone());
        let s = sessions(&store, &clock, ages());
        let alice = Subject::new("alice").unwrap();
        let c = block_on(s.create(&alice, CreateOptions::default())).unwrap();
        block_on(s.trusted_by_id().revoke(&c.session.id)).unwrap();
        let revoked_at = clock.now();
        let keys = block_on(store.key_deadlines()).unwrap().unwrap();
        let key = keys
            .iter()
            .find(|k| k.holds == KeyHolds::Session(c.session.id))
            .unwrap();
        assert_eq!(
            key.deadline,
            Some(revoked_at.saturating_add(TOMBSTONE_RETENTION))
        );
        clock.advance(TOMBSTONE_RETENTION);
        assert_eq!(store.session_count(), 0, "the TTL removed the tombstone");
        let out = block_on(store.reap(clock.now(), 100)).unwrap();
        assert_eq!(out.sessions, 0);
        assert_eq!(
            out.ended,
            vec![Reaped {
                id: c.session.id,
                subject: alice,
                resource: None,
                reason: None,
            }]
        );
        assert_eq!(store.stored_entries(), 0);
    }

    #[test]
    fn a_tombstone_moves_its_expiry_entry_so_the_reaper_finds_it_at_its_own_deadline() {
        let clock = ManualClock::default();
        let store = MemoryStore::new();
        let s = sessions(&store, &clock, ages());
        let alice = Subject::new("alice").unwrap();
        block_on(s.create(&alice, CreateOptions::default())).unwrap();
        block_on(s.create(&alice, CreateOptions::default())).unwrap();
        assert_eq!(block_on(s.revoke_subject(&alice)).unwrap(), 2);
        clock.advance(TOMBSTONE_RETENTION);
        let out = block_on(store.reap(clock.now(), 100)).unwrap();
        assert_eq!(out.sessions, 2);
        assert!(
            out.ended
                .iter()
                .all(|e| e.reason == Some(RevokeReason::Subject))
        );
        assert_eq!(store.stored_entries(), 0);
    }

    #[test]
    fn giving_back_the_only_creation_leaves_no_rate_log_behind() {
        let clock = ManualClock::default();
        let store = MemoryStore::new();
        let p = Policy::builder()
            .creation_rate(Some(Rate {
                max: 1,
                window: Duration::from_secs(60),
            }))
            .build()
            .unwrap();
        let s = sessions(&store, &clock, p);
        let alice = Subject::new("alice").unwrap();
        let c = block_on(s.create(&alice, CreateOptions::default())).unwrap();
        let before = store.stored_entries();
        assert!(block_on(store.forget_creation(&alice, &c.session.id)).unwrap());
        // The log, its one entry and its expiry-index entry.
        assert_eq!(store.stored_entries(), before - 3);
        assert!(!block_on(store.forget_creation(&alice, &c.session.id)).unwrap());
        block_on(s.create(&alice, CreateOptions::default())).unwrap();
    }

    #[test]
    fn a_page_of_zero_is_served_as_one() {
        let clock = ManualClock::default();
        let store = MemoryStore::new();
        let s = sessions(&store, &clock, ages());
        let alice = Subject::new("alice").unwrap();
        for _ in 0..2 {
            block_on(s.create(&alice, CreateOptions::default())).unwrap();
        }
        for scope in [Scope::All, Scope::Subject(alice.clone())] {
            let page = block_on(store.list_sessions(&scope, None, 0)).unwrap();
            assert_eq!(page.records.len(), 1);
            assert_eq!(page.next, Some(page.records[0].id));
        }
    }
}
