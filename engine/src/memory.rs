//! `MemoryStore`: the reference adapter. One lock makes every method trivially atomic and
//! linearizable; indexes make every per-session operation independent of the number of live
//! sessions, and reaping walk only what is due.
//!
//! Its primitives come from [`crate::sync`], so loom can explore every interleaving of it.

use std::collections::{BTreeSet, HashMap, HashSet, VecDeque};
use std::time::Duration;

use async_trait::async_trait;

use crate::codec;
use crate::crypto::Verifier;
use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};
use crate::policy::CapPolicy;
use crate::record::{RevokeReason, SessionRecord, SessionState, SlotRecord, TicketRecord};
use crate::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use crate::sync::{Arc, Mutex, MutexGuard};
use crate::time::Timestamp;

/// What the expiry index points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Session(SessionId),
    Ticket(TicketId),
    Slot(SlotId),
    /// A subject's creation log (for the rate limit): due when its newest entry leaves the window.
    Rate(Subject),
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, SessionRecord>,
    by_subject: HashMap<Subject, HashSet<SessionId>>,
    by_resource: HashMap<Resource, HashSet<SessionId>>,
    creations: HashMap<Subject, (Timestamp, VecDeque<Timestamp>)>,
    tickets: HashMap<TicketId, TicketRecord>,
    slots: HashMap<SlotId, SlotRecord>,
    slots_by_session: HashMap<SessionId, HashSet<SlotId>>,
    slots_by_resource: HashMap<Resource, HashSet<SlotId>>,
    expiry: BTreeSet<(Timestamp, Key)>,
    /// Active (not revoked) sessions by deadline: the global cap counts the live ones without
    /// scanning every session.
    active: BTreeSet<(Timestamp, SessionId)>,
}

fn index_add<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    m: &mut HashMap<K, HashSet<V>>,
    k: K,
    v: V,
) {
    m.entry(k).or_default().insert(v);
}

fn index_remove<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    m: &mut HashMap<K, HashSet<V>>,
    k: &K,
    v: &V,
) {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
        }
    }
}

impl Inner {
    fn put_session(&mut self, r: SessionRecord) {
        if let Some(old) = self.sessions.get(&r.id) {
            self.expiry.remove(&(old.expires_at, Key::Session(old.id)));
            self.active.remove(&(old.expires_at, old.id));
        }
        if r.state == SessionState::Active {
            self.active.insert((r.expires_at, r.id));
        }
        index_add(&mut self.by_subject, r.subject.clone(), r.id);
        if let Some(res) = &r.resource {
            index_add(&mut self.by_resource, res.clone(), r.id);
        }
        self.expiry.insert((r.expires_at, Key::Session(r.id)));
        self.sessions.insert(r.id, r);
    }

    fn remove_session(&mut self, id: &SessionId) -> bool {
        let Some(r) = self.sessions.remove(id) else {
            return false;
        };
        self.expiry.remove(&(r.expires_at, Key::Session(r.id)));
        self.active.remove(&(r.expires_at, r.id));
        index_remove(&mut self.by_subject, &r.subject, &r.id);
        if let Some(res) = &r.resource {
            index_remove(&mut self.by_resource, res, &r.id);
        }
        true
    }

    fn put_slot(&mut self, s: SlotRecord) {
        if let Some(old) = self.slots.get(&s.id) {
            self.expiry.remove(&(old.expires_at, Key::Slot(old.id)));
        }
        index_add(&mut self.slots_by_session, s.session, s.id);
        if let Some(res) = &s.resource {
            index_add(&mut self.slots_by_resource, res.clone(), s.id);
        }
        self.expiry.insert((s.expires_at, Key::Slot(s.id)));
        self.slots.insert(s.id, s);
    }

    fn remove_slot(&mut self, id: &SlotId) -> bool {
        let Some(s) = self.slots.remove(id) else {
            return false;
        };
        self.expiry.remove(&(s.expires_at, Key::Slot(s.id)));
        index_remove(&mut self.slots_by_session, &s.session, &s.id);
        if let Some(res) = &s.resource {
            index_remove(&mut self.slots_by_resource, res, &s.id);
        }
        true
    }

    fn remove_ticket(&mut self, id: &TicketId) -> bool {
        let Some(t) = self.tickets.remove(id) else {
            return false;
        };
        self.expiry.remove(&(t.expires_at, Key::Ticket(t.id)));
        true
    }

    fn session_live(&self, id: &SessionId, now: Timestamp) -> bool {
        self.sessions.get(id).is_some_and(|r| r.is_live(now))
    }

    fn live_of_subject(&self, subject: &Subject, now: Timestamp) -> Vec<&SessionRecord> {
        self.by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .filter_map(|id| self.sessions.get(id))
            .filter(|r| r.is_live(now))
            .collect()
    }

    /// Slots that count against a cap: unexpired, and held by a live session (a revoked
    /// session's slots free their capacity at once, not after their TTL).
    fn live_slots(&self, ids: Option<&HashSet<SlotId>>, now: Timestamp) -> usize {
        ids.into_iter()
            .flatten()
            .filter_map(|id| self.slots.get(id))
            .filter(|s| s.is_live(now) && self.session_live(&s.session, now))
            .count()
    }

    /// Live sessions in the store: active ones minus those already past their deadline (a
    /// count bounded by reaper lag, not by the number of live sessions).
    fn live_sessions(&self, now: Timestamp) -> usize {
        let due = self
            .active
            .range(..=(now, SessionId::from_bytes([u8::MAX; crate::ids::ID_BYTES])))
            .count();
        self.active.len() - due
    }

    /// Rate check: the creations of `subject` still inside the window, trimmed.
    fn rate_retry_after(
        &mut self,
        subject: &Subject,
        max: u32,
        window: Duration,
        now: Timestamp,
    ) -> Option<Duration> {
        let (_, log) = self.creations.get_mut(subject)?;
        while log.front().is_some_and(|t| t.saturating_add(window) <= now) {
            log.pop_front();
        }
        if log.len() < max as usize {
            return None;
        }
        let oldest = *log.front()?;
        Some(oldest.saturating_add(window).since(now))
    }

    fn record_creation(&mut self, subject: &Subject, window: Duration, now: Timestamp) {
        let due = now.saturating_add(window);
        let entry = self
            .creations
            .entry(subject.clone())
            .or_insert_with(|| (due, VecDeque::new()));
        self.expiry.remove(&(entry.0, Key::Rate(subject.clone())));
        entry.0 = due;
        entry.1.push_back(now);
        self.expiry.insert((due, Key::Rate(subject.clone())));
    }

    fn revoke_ids(&mut self, ids: Vec<SessionId>, now: Timestamp, reason: RevokeReason) -> u64 {
        let mut n = 0;
        for id in ids {
            if let Some(r) = self.sessions.get(&id)
                && r.is_live(now)
            {
                let t = r.tombstone(now, reason);
                self.put_session(t);
                n += 1;
            }
        }
        n
    }
}

/// The in-memory reference store. Cheap to clone (clones share the data).
#[derive(Clone, Default)]
pub struct MemoryStore {
    inner: Arc<Mutex<Inner>>,
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

    fn lock(&self) -> Result<MutexGuard<'_, Inner>, StoreError> {
        // A poisoned lock means a panic mid-update: refuse (fail closed) rather than read
        // possibly half-written state.
        self.inner
            .lock()
            .map_err(|_| StoreError::Unavailable("memory store lock poisoned".into()))
    }

    /// Number of stored session records (live, expired and tombstones).
    pub fn session_count(&self) -> usize {
        self.lock().map(|g| g.sessions.len()).unwrap_or(0)
    }

    /// Every entry the store holds — records, index entries, expiry-index entries, rate logs —
    /// the footprint INV-bounded-storage bounds: it returns to zero once everything stored has
    /// expired and been reaped.
    pub fn stored_entries(&self) -> usize {
        fn sets<K, V>(m: &HashMap<K, HashSet<V>>) -> usize {
            m.values().map(HashSet::len).sum()
        }
        let Ok(g) = self.lock() else { return 0 };
        let logs: usize = g.creations.values().map(|(_, log)| log.len()).sum();
        [
            g.sessions.len(),
            sets(&g.by_subject),
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
        Capabilities::NONE.with_raw_dump(true)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        Ok(self.lock()?.sessions.get(id).cloned())
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut g = self.lock()?;
        if g.sessions.contains_key(&record.id) {
            return Err(StoreError::AlreadyExists);
        }
        if let Some(rate) = limits.creation_rate
            && let Some(retry_after) =
                g.rate_retry_after(&record.subject, rate.max, rate.window, now)
        {
            return Ok(InsertOutcome::RateLimited { retry_after });
        }
        if let Some(max) = limits.global_cap {
            if g.live_sessions(now) as u64 >= max {
                return Ok(InsertOutcome::GlobalCapReached);
            }
        }
        let mut evicted = Vec::new();
        if let Some(cap) = limits.subject_cap {
            let mut live: Vec<(Timestamp, SessionId)> = g
                .live_of_subject(&record.subject, now)
                .iter()
                .map(|r| (r.created_at, r.id))
                .collect();
            let excess = (live.len() + 1).saturating_sub(cap.max as usize);
            if excess > 0 {
                if cap.on_full == CapPolicy::Reject {
                    return Ok(InsertOutcome::SubjectCapReached);
                }
                live.sort();
                evicted = live.into_iter().take(excess).map(|(_, id)| id).collect();
                g.revoke_ids(evicted.clone(), now, RevokeReason::Evicted);
            }
        }
        #[cfg(leasehold_planted_bug)]
        {
            // Planted bug for the loom twin tests: count the subject's live sessions, release
            // the lock, then insert (the count-then-insert race DESIGN §8 rules out).
            drop(g);
            crate::sync::yield_now();
            g = self.lock()?;
        }
        if let Some(rate) = limits.creation_rate {
            g.record_creation(&record.subject, rate.window, now);
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
        let current = g.sessions.get(&new.id).ok_or(StoreError::NotFound)?;
        if now >= current.expires_at {
            return Err(StoreError::NotFound);
        }
        if current.version != expected_version {
            return Err(StoreError::Conflict);
        }
        if current.state != SessionState::Active && new.state == SessionState::Active {
            // A tombstone is final, whatever the writer believes.
            return Err(StoreError::NotFound);
        }
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
            .filter_map(|id| g.sessions.get(id).cloned())
            .collect())
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let mut g = self.lock()?;
        if g.tickets.contains_key(&ticket.id) {
            return Err(StoreError::AlreadyExists);
        }
        g.expiry.insert((ticket.expires_at, Key::Ticket(ticket.id)));
        g.tickets.insert(ticket.id, ticket.clone());
        Ok(())
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let mut g = self.lock()?;
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
        g.put_slot(slot.clone());
        Ok(SlotOutcome::Acquired)
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let mut g = self.lock()?;
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
            expires_at,
            ..s.clone()
        };
        g.put_slot(s);
        Ok(HeartbeatOutcome::Extended)
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        Ok(self.lock()?.remove_slot(id))
    }

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        let mut g = self.lock()?;
        let mut out = ReapOutcome::default();
        let mut removed = 0usize;
        while removed < limit {
            let Some((due, key)) = g.expiry.first().cloned() else {
                break;
            };
            if due > now {
                break;
            }
            g.expiry.remove(&(due, key.clone()));
            match key {
                Key::Session(id) => {
                    if g.remove_session(&id) {
                        out.sessions += 1;
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
}
