//! `MemoryStore`: the reference adapter. One lock makes every method trivially atomic and
//! linearizable; indexes make every per-session operation independent of the number of live
//! sessions, and reaping walk only what is due.
//!
//! It has no clock of its own: it judges at the caller's `now`. For tests of the server-clock
//! rules, [`MemoryStore::with_server_clock`] gives it one, as a database server has (the
//! reference for what Postgres and Redis adapters must do with theirs), and
//! [`MemoryStore::with_native_expiry`] makes it expire keys on that clock as Redis does (the
//! reference for a store whose `reap` only cleans index entries).
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
    Capabilities, CreateLimits, HeartbeatOutcome, InsertCheck, InsertOutcome, KeyDeadline,
    KeyHolds, Loaded, ReapOutcome, SlotCaps, SlotOutcome, Store, StoreError, TakeOutcome,
    check_insert, check_loaded, check_swap, judged_at, rebase,
};
use crate::sync::{Arc, Mutex, MutexGuard};
use crate::time::{Clock, Timestamp};

/// What the expiry index points at.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum Key {
    Session(SessionId),
    Ticket(TicketId),
    Slot(SlotId),
    /// A subject's creation log (for the rate limit): due when its newest entry leaves the window.
    Rate(Subject),
}

/// A key of the native-expiry mode: what its "server" removes by TTL, as Redis removes keys.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
enum TtlKey {
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
struct Ttls {
    at: HashMap<TtlKey, Timestamp>,
    order: BTreeSet<(Timestamp, TtlKey)>,
}

impl Ttls {
    /// Sets the key's TTL (a record's: `SET … PXAT`).
    fn set(&mut self, k: TtlKey, t: Timestamp) {
        if let Some(old) = self.at.insert(k.clone(), t) {
            self.order.remove(&(old, k.clone()));
        }
        self.order.insert((t, k));
    }

    /// Moves the key's TTL to `t` unless it is later already (an index's: `PEXPIREAT NX`, then
    /// `GT`), so an index outlives every member it was given.
    fn at_least(&mut self, k: TtlKey, t: Timestamp) {
        if self.at.get(&k).is_none_or(|&old| old < t) {
            self.set(k, t);
        }
    }

    fn clear(&mut self, k: &TtlKey) {
        if let Some(old) = self.at.remove(k) {
            self.order.remove(&(old, k.clone()));
        }
    }

    /// The next key due at `t`, removed from the table.
    fn pop_due(&mut self, t: Timestamp) -> Option<TtlKey> {
        if self.order.first()?.0 > t {
            return None;
        }
        let (_, k) = self.order.pop_first()?;
        self.at.remove(&k);
        Some(k)
    }
}

#[derive(Default)]
struct Inner {
    sessions: HashMap<SessionId, SessionRecord>,
    by_subject: HashMap<Subject, HashSet<SessionId>>,
    /// The subject's sessions that have not ended (no tombstone): what a cap counts, so its
    /// cost follows the live sessions, not the tombstones kept until reaped.
    open_by_subject: HashMap<Subject, HashSet<SessionId>>,
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
    /// Test-only shift of the server clock ([`Store::set_clock_offset`]).
    clock_offset_ms: i64,
    /// Native-expiry mode only: every key's TTL.
    ttl: Option<Ttls>,
    /// Native-expiry mode: sessions and slots the TTL removed whose index entries remain (the
    /// index keys they were in), until `reap` cleans those entries.
    gone_sessions: HashMap<SessionId, (Subject, Option<Resource>)>,
    gone_slots: HashMap<SlotId, (SessionId, Option<Resource>)>,
}

fn index_add<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    m: &mut HashMap<K, HashSet<V>>,
    k: K,
    v: V,
) {
    m.entry(k).or_default().insert(v);
}

/// Removes `v` from the index `k`; true if that emptied (and so removed) the index.
fn index_remove<K: std::hash::Hash + Eq, V: std::hash::Hash + Eq>(
    m: &mut HashMap<K, HashSet<V>>,
    k: &K,
    v: &V,
) -> bool {
    if let Some(set) = m.get_mut(k) {
        set.remove(v);
        if set.is_empty() {
            m.remove(k);
            return true;
        }
    }
    false
}

/// When a session's record is due: what its native TTL is.
fn deadline(r: &SessionRecord) -> Timestamp {
    r.expires_at.min(r.absolute_deadline)
}

impl Inner {
    /// Native-expiry mode: sets a record's TTL.
    fn ttl_set(&mut self, k: Key, t: Timestamp) {
        if let Some(ttl) = &mut self.ttl {
            ttl.set(TtlKey::Record(k), t);
        }
    }

    /// Native-expiry mode: makes an index key live at least until `t`.
    fn ttl_at_least(&mut self, k: TtlKey, t: Timestamp) {
        if let Some(ttl) = &mut self.ttl {
            ttl.at_least(k, t);
        }
    }

    /// Native-expiry mode: drops a key's TTL (the key is gone). `removed` says whether it is.
    fn ttl_clear(&mut self, removed: bool, k: TtlKey) {
        if let (true, Some(ttl)) = (removed, &mut self.ttl) {
            ttl.clear(&k);
        }
    }

    /// Removes an entry of the expiry walk list (and that list's TTL once it is empty).
    fn expiry_remove(&mut self, entry: &(Timestamp, Key)) {
        self.expiry.remove(entry);
        self.ttl_clear(self.expiry.is_empty(), TtlKey::Expiry);
    }

    fn expiry_insert(&mut self, due: Timestamp, key: Key) {
        self.expiry.insert((due, key));
        self.ttl_at_least(TtlKey::Expiry, due);
    }

    fn active_remove(&mut self, entry: &(Timestamp, SessionId)) {
        self.active.remove(entry);
        self.ttl_clear(self.active.is_empty(), TtlKey::Active);
    }

    /// Removes session `id` from the index entries of `subject` and `resource`.
    fn unindex_session(&mut self, id: &SessionId, subject: &Subject, resource: Option<&Resource>) {
        let emptied = index_remove(&mut self.by_subject, subject, id);
        self.ttl_clear(emptied, TtlKey::Subject(subject.clone()));
        let emptied = index_remove(&mut self.open_by_subject, subject, id);
        self.ttl_clear(emptied, TtlKey::Open(subject.clone()));
        if let Some(res) = resource {
            let emptied = index_remove(&mut self.by_resource, res, id);
            self.ttl_clear(emptied, TtlKey::Resource(res.clone()));
        }
    }

    /// Removes slot `id` from the index entries of `session` and `resource`.
    fn unindex_slot(&mut self, id: &SlotId, session: &SessionId, resource: Option<&Resource>) {
        let emptied = index_remove(&mut self.slots_by_session, session, id);
        self.ttl_clear(emptied, TtlKey::SessionSlots(*session));
        if let Some(res) = resource {
            let emptied = index_remove(&mut self.slots_by_resource, res, id);
            self.ttl_clear(emptied, TtlKey::ResourceSlots(res.clone()));
        }
    }

    fn put_session(&mut self, r: SessionRecord) {
        if let Some(old) = self.sessions.get(&r.id) {
            let (due, id) = (old.expires_at, old.id);
            self.expiry_remove(&(due, Key::Session(id)));
            self.active_remove(&(due, id));
        }
        if r.state == SessionState::Active {
            self.active.insert((r.expires_at, r.id));
            self.ttl_at_least(TtlKey::Active, r.expires_at);
        }
        let due = deadline(&r);
        index_add(&mut self.by_subject, r.subject.clone(), r.id);
        self.ttl_at_least(TtlKey::Subject(r.subject.clone()), due);
        if r.is_tombstone() {
            let emptied = index_remove(&mut self.open_by_subject, &r.subject, &r.id);
            self.ttl_clear(emptied, TtlKey::Open(r.subject.clone()));
        } else {
            index_add(&mut self.open_by_subject, r.subject.clone(), r.id);
            self.ttl_at_least(TtlKey::Open(r.subject.clone()), due);
        }
        if let Some(res) = &r.resource {
            index_add(&mut self.by_resource, res.clone(), r.id);
            self.ttl_at_least(TtlKey::Resource(res.clone()), due);
        }
        self.expiry_insert(r.expires_at, Key::Session(r.id));
        self.ttl_set(Key::Session(r.id), due);
        self.gone_sessions.remove(&r.id);
        self.sessions.insert(r.id, r);
    }

    fn remove_session(&mut self, id: &SessionId) -> bool {
        let Some(r) = self.sessions.remove(id) else {
            return false;
        };
        self.ttl_clear(true, TtlKey::Record(Key::Session(r.id)));
        self.expiry_remove(&(r.expires_at, Key::Session(r.id)));
        self.active_remove(&(r.expires_at, r.id));
        self.unindex_session(&r.id, &r.subject, r.resource.as_ref());
        true
    }

    fn put_slot(&mut self, s: SlotRecord) {
        if let Some(old) = self.slots.get(&s.id) {
            let entry = (old.expires_at, Key::Slot(old.id));
            self.expiry_remove(&entry);
        }
        index_add(&mut self.slots_by_session, s.session, s.id);
        self.ttl_at_least(TtlKey::SessionSlots(s.session), s.expires_at);
        if let Some(res) = &s.resource {
            index_add(&mut self.slots_by_resource, res.clone(), s.id);
            self.ttl_at_least(TtlKey::ResourceSlots(res.clone()), s.expires_at);
        }
        self.expiry_insert(s.expires_at, Key::Slot(s.id));
        self.ttl_set(Key::Slot(s.id), s.expires_at);
        self.gone_slots.remove(&s.id);
        self.slots.insert(s.id, s);
    }

    fn remove_slot(&mut self, id: &SlotId) -> bool {
        let Some(s) = self.slots.remove(id) else {
            return false;
        };
        self.ttl_clear(true, TtlKey::Record(Key::Slot(s.id)));
        self.expiry_remove(&(s.expires_at, Key::Slot(s.id)));
        self.unindex_slot(&s.id, &s.session, s.resource.as_ref());
        true
    }

    fn put_ticket(&mut self, t: TicketRecord) {
        self.expiry_insert(t.expires_at, Key::Ticket(t.id));
        self.ttl_set(Key::Ticket(t.id), t.expires_at);
        self.tickets.insert(t.id, t);
    }

    fn remove_ticket(&mut self, id: &TicketId) -> bool {
        let Some(t) = self.tickets.remove(id) else {
            return false;
        };
        self.ttl_clear(true, TtlKey::Record(Key::Ticket(t.id)));
        self.expiry_remove(&(t.expires_at, Key::Ticket(t.id)));
        true
    }

    /// Native-expiry mode: removes every key whose TTL has passed at `t` (the server's own
    /// clock), as the server would. Records go with their global-cap entry; the index entries
    /// pointing at them stay (noted in `gone_*`) until `reap` cleans them or their index key's
    /// own TTL passes.
    fn expire(&mut self, t: Timestamp) {
        while let Some(k) = self.ttl.as_mut().and_then(|ttl| ttl.pop_due(t)) {
            match k {
                TtlKey::Record(Key::Session(id)) => {
                    if let Some(r) = self.sessions.remove(&id) {
                        self.active_remove(&(r.expires_at, id));
                        self.gone_sessions.insert(id, (r.subject, r.resource));
                    }
                }
                TtlKey::Record(Key::Ticket(id)) => {
                    self.tickets.remove(&id);
                }
                TtlKey::Record(Key::Slot(id)) => {
                    if let Some(s) = self.slots.remove(&id) {
                        self.gone_slots.insert(id, (s.session, s.resource));
                    }
                }
                TtlKey::Record(Key::Rate(subject)) => {
                    self.creations.remove(&subject);
                }
                TtlKey::Subject(subject) => {
                    self.by_subject.remove(&subject);
                }
                TtlKey::Open(subject) => {
                    self.open_by_subject.remove(&subject);
                }
                TtlKey::Resource(res) => {
                    self.by_resource.remove(&res);
                }
                TtlKey::SessionSlots(id) => {
                    self.slots_by_session.remove(&id);
                }
                TtlKey::ResourceSlots(res) => {
                    self.slots_by_resource.remove(&res);
                }
                TtlKey::Expiry => {
                    self.expiry.clear();
                    self.gone_sessions.clear();
                    self.gone_slots.clear();
                }
                TtlKey::Active => {
                    self.active.clear();
                }
            }
        }
    }

    /// Native-expiry mode's reap: cleans at most `limit` index entries of records the TTL
    /// already removed (due at `t`, the server's own clock), and removes no record, so it
    /// counts none.
    fn reap_index_entries(&mut self, t: Timestamp, limit: usize) {
        let due: Vec<(Timestamp, Key)> = self
            .expiry
            .iter()
            .take_while(|(d, _)| *d <= t)
            .filter(|(_, k)| match k {
                Key::Session(id) => !self.sessions.contains_key(id),
                Key::Ticket(id) => !self.tickets.contains_key(id),
                Key::Slot(id) => !self.slots.contains_key(id),
                Key::Rate(subject) => !self.creations.contains_key(subject),
            })
            .take(limit)
            .cloned()
            .collect();
        for entry in due {
            self.expiry_remove(&entry);
            match entry.1 {
                Key::Session(id) => {
                    if let Some((subject, res)) = self.gone_sessions.remove(&id) {
                        self.unindex_session(&id, &subject, res.as_ref());
                    }
                }
                Key::Slot(id) => {
                    if let Some((session, res)) = self.gone_slots.remove(&id) {
                        self.unindex_slot(&id, &session, res.as_ref());
                    }
                }
                Key::Ticket(_) | Key::Rate(_) => {}
            }
        }
    }

    fn session_live(&self, id: &SessionId, now: Timestamp) -> bool {
        self.sessions.get(id).is_some_and(|r| r.is_live(now))
    }

    /// The subject's live sessions at `now`, as (created_at, id). Members this count treats
    /// as past their deadline get their tombstone (reason `Expired`) first: what this caller
    /// saw end stays ended for a caller whose clock lags.
    fn live_of_subject(
        &mut self,
        subject: &Subject,
        now: Timestamp,
    ) -> Vec<(Timestamp, SessionId)> {
        let members: Vec<SessionId> = self
            .open_by_subject
            .get(subject)
            .into_iter()
            .flatten()
            .copied()
            .collect();
        let mut live = Vec::new();
        for id in members {
            let Some(r) = self.sessions.get(&id) else {
                continue;
            };
            if r.is_live(now) {
                live.push((r.created_at, r.id));
            } else if !r.is_tombstone() {
                let t = r.tombstone(now, RevokeReason::Expired);
                self.put_session(t);
            }
        }
        live
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
    /// count bounded by reaper lag, not by the number of live sessions). Unlike a subject's
    /// count, this one writes no tombstones: it is store-wide, and one caller whose clock
    /// glitched ahead must not end every session in the store.
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
        // The window admits one more creation once all but `max - 1` of those in it have left
        // it: the (len - max + 1)-th oldest decides, not the oldest (the log can hold more than
        // `max` entries after the limit was lowered).
        let decisive = *log.get(log.len() - max as usize)?;
        Some(decisive.saturating_add(window).since(now))
    }

    fn record_creation(&mut self, subject: &Subject, window: Duration, now: Timestamp) {
        let due = now.saturating_add(window);
        let entry = self
            .creations
            .entry(subject.clone())
            .or_insert_with(|| (due, VecDeque::new()));
        let old = (entry.0, Key::Rate(subject.clone()));
        entry.0 = due;
        entry.1.push_back(now);
        self.expiry_remove(&old);
        self.expiry_insert(due, Key::Rate(subject.clone()));
        self.ttl_set(Key::Rate(subject.clone()), due);
    }

    /// Tombstones every listed session that is not one yet (expired or not: a revocation never
    /// depends on a clock); returns how many were live at `now`.
    fn revoke_ids(&mut self, ids: Vec<SessionId>, now: Timestamp, reason: RevokeReason) -> u64 {
        let mut n = 0;
        for id in ids {
            if let Some(r) = self.sessions.get(&id)
                && !r.is_tombstone()
            {
                // Planted bug for the loom twin tests (the rule before INV-store-time): skip a
                // session past its deadline at the caller's clock (no tombstone).
                #[cfg(leasehold_planted_bug)]
                if !r.is_live(now) {
                    continue;
                }
                n += u64::from(r.is_live(now));
                let t = r.tombstone(now, reason);
                self.put_session(t);
            }
        }
        n
    }
}

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
        fn sets<K, V>(m: &HashMap<K, HashSet<V>>) -> usize {
            m.values().map(HashSet::len).sum()
        }
        let Ok(g) = self.lock() else { return 0 };
        let logs: usize = g.creations.values().map(|(_, log)| log.len()).sum();
        let ttls = g.ttl.as_ref().map_or(0, |t| t.at.len());
        [
            ttls,
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
        let record = g.sessions.get(id).cloned();
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

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut g = self.lock()?;
        let now = self.at(&g, now);
        if check_insert(g.sessions.get(&record.id), record)? == InsertCheck::Replay {
            return Ok(InsertOutcome::Inserted {
                evicted: Vec::new(),
            });
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
            let mut live = g.live_of_subject(&record.subject, now);
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
        let at = self.at(&g, now);
        check_swap(g.sessions.get(&new.id), new, expected_version, at)?;
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
            .filter_map(|id| g.sessions.get(id).cloned())
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

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        let mut g = self.lock()?;
        if let (true, Some(clock)) = (self.native_expiry, &self.server_clock) {
            // The server reclaims records on its own clock; reaping only tidies indexes.
            g.reap_index_entries(clock.now(), limit);
            return Ok(ReapOutcome::default());
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
