//! The store contract: persist atomically, decide nothing.
//!
//! The engine decides every change; a store applies it atomically and linearizably per session
//! (and per subject/resource for group operations). Each method documents what must be atomic,
//! what it returns for a missing or already-changed record, and which [`StoreError`] means what.
//!
//! Conventions for every method:
//! - **Time.** `now` is the caller's clock. A store with a clock of its own (a database
//!   server: capability `server_clock`) judges every conditional write at
//!   [`judged_at`]`(now, its clock)` — the later of the two — and returns its time with every
//!   record [`load_session`](Store::load_session) finds, so the engine decides on the same
//!   clock: a caller whose clock lags cannot stretch a window or revive what the store already
//!   let expire.
//!   Stores without a clock (in-process ones) judge at `now`. No store ever makes time sticky
//!   (a persisted high-water mark would turn one clock glitch into an outage of every session).
//! - **Endings are final.** A revocation never depends on a clock: it writes a
//!   [tombstone](SessionRecord::tombstone) over every record of its scope that is not one yet,
//!   expired or not. A tombstone may always be written over an expired record; nothing but
//!   [`reap`](Store::reap) ever replaces or removes a tombstone. [`check_swap`] is the one
//!   place these rules live for compare-and-swap: every adapter calls it.
//! - "live" means [`SessionRecord::is_live`] / [`SlotRecord::is_live`] at the judged time.
//! - An error means the outcome is **unknown** (the write may or may not have been applied: a
//!   lost reply). The engine fails closed on it and callers may retry; every method is safe to
//!   retry because each write is conditional (insert-if-absent, compare-and-swap on a version,
//!   take-once).
//! - Every method here is one atomic step and should be one round trip.

use std::time::Duration;

use async_trait::async_trait;

use crate::crypto::Verifier;
use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};
use crate::policy::{GlobalCap, Rate, SubjectCap};
use crate::record::RevokeReason;
use crate::record::{SessionRecord, SlotRecord, TicketRecord};
use crate::time::Timestamp;

/// A store failure. Denials by design (caps, missing records) are outcomes, not errors.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// `compare_and_swap`: the stored version is not the expected one (someone else wrote).
    #[error("version conflict")]
    Conflict,
    /// `compare_and_swap`: no such record, or it is past `expires_at` (expired records are
    /// immutable: nothing may revive them).
    #[error("record not found")]
    NotFound,
    /// An insert found the key already present.
    #[error("record already exists")]
    AlreadyExists,
    /// A write the contract forbids whatever the stored state: a compare-and-swap that changes
    /// a record's identity (id, subject, resource, creation time, absolute deadline) or does
    /// not increase its version. Nothing was written; it is a bug in the writer.
    #[error("invalid write: {0}")]
    InvalidWrite(&'static str),
    /// Stored bytes are not a valid record, or carry an unknown format version.
    #[error("corrupt record: {0}")]
    Corrupt(String),
    /// The operation did not complete in time; its outcome is unknown.
    #[error("store timed out")]
    Timeout,
    /// The store failed (connection, I/O, server error); the outcome is unknown.
    #[error("store unavailable: {0}")]
    Unavailable(String),
}

/// The time a store judges a conditional write at: the later of the caller's clock and the
/// store's own (if it has one). Never earlier than either, so neither a lagging caller nor a
/// lagging server can stretch a deadline.
pub fn judged_at(now: Timestamp, store_clock: Option<Timestamp>) -> Timestamp {
    store_clock.map_or(now, |t| t.max(now))
}

/// A deadline the caller computed as `now + ttl` (a slot's expiry, a heartbeat's, a ticket's),
/// moved onto the judged time `at`: `at + ttl`. A store with a clock of its own applies it, so
/// a lagging caller cannot store a lease that is already lapsed (and so never counts against a
/// cap) or a ticket that lives past its TTL on the store's clock. A no-op when `at == now`.
pub fn rebase(deadline: Timestamp, now: Timestamp, at: Timestamp) -> Timestamp {
    at.saturating_add(deadline.since(now))
}

/// What [`Store::load_session`] read: the record, and — for a store with a clock of its own —
/// the store's time, read in the same round trip.
///
/// The record is boxed because it is large (about 400 bytes) and a validate hands it through
/// several futures and results on its way to the caller's [`Session`](crate::Session): boxed,
/// each of those moves copies a pointer instead of the record.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Loaded {
    /// The record (live, expired or tombstone), or `None` if absent.
    pub record: Option<Box<SessionRecord>>,
    /// The store's clock when it read the record; `None` for stores without a clock.
    pub store_time: Option<Timestamp>,
}

impl Loaded {
    /// A load result without a store time (stores without a clock of their own).
    pub fn new(record: Option<Box<SessionRecord>>) -> Self {
        Loaded {
            record,
            store_time: None,
        }
    }

    /// Adds the store's time.
    pub fn at_store_time(mut self, t: Timestamp) -> Self {
        self.store_time = Some(t);
        self
    }

    /// The time the engine decides at: [`judged_at`]`(now, store_time)`.
    pub fn judged_at(&self, now: Timestamp) -> Timestamp {
        judged_at(now, self.store_time)
    }
}

/// The compare-and-swap rules, the same for every adapter (call it inside the atomic step,
/// with `current` as stored and `at` = [`judged_at`]):
///
/// - absent → `NotFound` (a swap never creates);
/// - a tombstone is final → `NotFound`, whatever the version (only the reaper removes it);
/// - stored version ≠ `expected_version` → `Conflict`;
/// - the stored record is past its deadline at `at` → `NotFound`, *unless* `new` is its
///   tombstone (an ending may always be written down: revocation never depends on a clock);
/// - `new` changes the identity (id, subject, resource, kind, created_at, absolute_deadline) or does
///   not increase the version → `InvalidWrite` (indexes keyed on identity stay correct).
pub fn check_swap(
    current: Option<&SessionRecord>,
    new: &SessionRecord,
    expected_version: u64,
    at: Timestamp,
) -> Result<(), StoreError> {
    let Some(current) = current else {
        return Err(StoreError::NotFound);
    };
    if current.is_tombstone() {
        return Err(StoreError::NotFound);
    }
    if current.version != expected_version {
        return Err(StoreError::Conflict);
    }
    if current.is_due(at) && !new.is_tombstone() {
        return Err(StoreError::NotFound);
    }
    if new.id != current.id
        || new.subject != current.subject
        || new.resource != current.resource
        || new.kind != current.kind
        || new.created_at != current.created_at
        || new.absolute_deadline != current.absolute_deadline
    {
        return Err(StoreError::InvalidWrite("a swap may not change identity"));
    }
    if new.version <= current.version {
        return Err(StoreError::InvalidWrite("a swap must increase the version"));
    }
    Ok(())
}

/// What [`check_insert`] found under the new record's id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum InsertCheck {
    /// The id is free: count the limits, then insert.
    Fresh,
    /// The very same record is already stored: a retry after a lost reply. Answer
    /// `Inserted` (with no evictions) and write nothing, so the client holds a working token
    /// instead of an error while an orphan session takes a place under its cap.
    Replay,
}

/// The insert rules every adapter applies first, inside its atomic step, with `stored` the
/// record currently under `record.id` (if any):
/// - the id must carry its subject's [`ShardTag`](crate::ShardTag), so a sharded store can
///   place it next to its subject's index knowing only the id → else `InvalidWrite`;
/// - an id already present holding exactly this record → [`InsertCheck::Replay`]; holding
///   anything else → `AlreadyExists`.
pub fn check_insert(
    stored: Option<&SessionRecord>,
    record: &SessionRecord,
) -> Result<InsertCheck, StoreError> {
    if record.id.shard_tag() != crate::ShardTag::of(&record.subject) {
        return Err(StoreError::InvalidWrite(
            "a session id must carry its subject's shard tag",
        ));
    }
    match stored {
        None => Ok(InsertCheck::Fresh),
        Some(s) if s == record => Ok(InsertCheck::Replay),
        Some(_) => Err(StoreError::AlreadyExists),
    }
}

/// Refuses a record read under a key that is not its id (`Corrupt`): bytes copied or moved
/// between keys must never stand for another session.
pub fn check_loaded(key: &SessionId, record: &SessionRecord) -> Result<(), StoreError> {
    if record.id == *key {
        Ok(())
    } else {
        Err(StoreError::Corrupt(
            "session stored under another id".into(),
        ))
    }
}

/// What "acknowledged" must mean for a write: every store method is one of two classes.
///
/// - **Security** writes must survive a crash (and, on a replicated store, a failover) once
///   the method has returned `Ok`: `insert_session`, every tombstone (revocations, eviction,
///   reuse, an observed expiry), rotations and any other change to a session's credentials,
///   state or data, `put_ticket` and `take_ticket`. Acknowledged means: fsync'd (sled),
///   committed with `synchronous_commit` on (Postgres), in the AOF and, with replicas,
///   confirmed by `WAIT` (Redis).
/// - **Routine** writes may be lost in a crash without harm: a touch (only `last_seen`,
///   `expires_at` and the version move — losing one ends a session early at worst), slot
///   acquire/heartbeat/release (self-expiring leases), and reaping (it is redone).
///
/// Either way, an error after the write may have applied is an *unknown outcome*: every
/// method stays safe to retry.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum WriteClass {
    /// Loss after a crash is harmless.
    Routine,
    /// Must survive a crash once acknowledged.
    Security,
}

impl WriteClass {
    /// The class of a compare-and-swap from `old` to `new`: routine only for a pure touch
    /// (`new` differs from `old` in `last_seen`, `expires_at` and the version alone).
    pub fn of_swap(old: &SessionRecord, new: &SessionRecord) -> Self {
        let touch_only = old.id == new.id
            && old.subject == new.subject
            && old.resource == new.resource
            && old.kind == new.kind
            && old.created_at == new.created_at
            && old.absolute_deadline == new.absolute_deadline
            && old.state == new.state
            && old.credential == new.credential
            && old.binding == new.binding
            && old.context_summary == new.context_summary
            && old.data == new.data
            && old.data_version == new.data_version;
        if touch_only {
            WriteClass::Routine
        } else {
            WriteClass::Security
        }
    }
}

/// Limits checked in the same atomic step as a session insert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateLimits {
    /// Live sessions per subject, with the policy when full.
    pub subject_cap: Option<SubjectCap>,
    /// Creations per subject per rolling window.
    pub creation_rate: Option<Rate>,
    /// Live sessions in the store, with the policy when full.
    pub global_cap: Option<GlobalCap>,
}

/// The result of [`Store::insert_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Inserted; these sessions (the subject's oldest live ones under an evicting subject cap,
    /// then the store's oldest live ones under an evicting global cap) were revoked with reason
    /// `Evicted` in the same atomic step.
    Inserted {
        /// Ids of evicted sessions, oldest first within each cap.
        evicted: Vec<SessionId>,
    },
    /// The subject has `max` live sessions and the policy is `Reject`.
    SubjectCapReached,
    /// The store has `global_cap` live sessions.
    GlobalCapReached,
    /// The subject created `rate.max` sessions in the last `rate.window`.
    RateLimited {
        /// Until the oldest creation in the window leaves it.
        retry_after: Duration,
    },
}

/// The result of [`Store::take_ticket`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TakeOutcome {
    /// The ticket existed, matched, and was live: it is now deleted. Only one caller ever
    /// receives this for a given ticket.
    Taken(TicketRecord),
    /// The ticket existed and matched but had expired (it is deleted).
    Expired,
    /// No ticket with that id and verifier (never minted, already taken, or reaped).
    Missing,
}

/// Caps checked in the same atomic step as a slot acquisition.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SlotCaps {
    /// Live slots per session.
    pub per_session: Option<u32>,
    /// Live slots per resource (only for slots that name a resource).
    pub per_resource: Option<u32>,
}

/// The result of [`Store::acquire_slot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SlotOutcome {
    /// Acquired.
    Acquired,
    /// The session is missing, revoked or expired.
    SessionNotLive,
    /// The session holds `per_session` live slots.
    SessionCapReached,
    /// The resource has `per_resource` live slots.
    ResourceCapReached,
}

/// The result of [`Store::heartbeat_slot`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HeartbeatOutcome {
    /// The slot's expiry was moved.
    Extended,
    /// The slot is missing or already expired (it stays gone).
    Missing,
    /// The slot's session is missing, revoked or expired (the slot is deleted).
    SessionNotLive,
}

/// A session a reap removed, so the application can tear down what hung on it (a PTY, a
/// tunnel) without polling every id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reaped {
    /// Its id.
    pub id: SessionId,
    /// Its owner.
    pub subject: Subject,
    /// Its resource tag.
    pub resource: Option<Resource>,
    /// How it ended: its tombstone's reason, `Expired` for a record that lapsed without one, or
    /// `None` when a store's native expiry had already removed the record (only its index
    /// entries were left to clean).
    pub reason: Option<RevokeReason>,
}

/// What a reap removed.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Sessions (expired or tombstones past their deadline) removed.
    pub sessions: u64,
    /// Tickets removed.
    pub tickets: u64,
    /// Slots removed.
    pub slots: u64,
    /// Stored entries that did not decode, moved aside (kept for inspection, not counted in
    /// [`total`](Self::total)) so that one corrupt record never stalls reaping.
    pub quarantined: u64,
    /// The sessions removed (at most `sessions` of them; with native expiry, also those whose
    /// index entries this reap cleaned after the server had removed the record). It lists every
    /// ending once its record is reclaimed — lapses, and also revocations the application made
    /// itself (reason `Revoked`, `Evicted`…), reported again when their tombstone goes — so a
    /// teardown driven by it must be idempotent or filter on the reason.
    pub ended: Vec<Reaped>,
}

/// Which sessions a listing or a count covers.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Scope {
    /// Every session in the store.
    All,
    /// The sessions of one subject.
    Subject(Subject),
    /// The sessions tagged with one resource.
    Resource(Resource),
}

/// Largest page [`Store::list_sessions`] returns; larger requests are served this many.
pub const MAX_PAGE: usize = 1000;

/// One page of [`Store::list_sessions`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// Records of the scope not yet reaped (live, expired, tombstones), in ascending id order,
    /// all with ids after the cursor.
    pub records: Vec<SessionRecord>,
    /// The cursor of the next page (the last id returned), or `None` when this page ended
    /// the listing.
    pub next: Option<SessionId>,
}

impl ReapOutcome {
    /// Total records removed.
    pub fn total(&self) -> u64 {
        self.sessions + self.tickets + self.slots
    }
}

/// What a key listed by [`Store::key_deadlines`] holds, so the TTL audit can hold each record
/// key to its own record's deadline.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum KeyHolds {
    /// The record of this session (live, expired or tombstone).
    Session(SessionId),
    /// This ticket.
    Ticket(TicketId),
    /// This slot.
    Slot(SlotId),
    /// Anything else the store keeps: an index, a creation log, a reservation set.
    Index,
}

/// One stored key and when the store's server removes it ([`Store::key_deadlines`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyDeadline {
    /// The key as stored (for messages).
    pub key: Vec<u8>,
    /// What it holds.
    pub holds: KeyHolds,
    /// When the server removes it (Redis `PEXPIRETIME`); `None` if it has no TTL.
    pub deadline: Option<Timestamp>,
}

/// What an adapter supports beyond the contract; conformance cases needing one are skipped
/// (and reported as skipped) where it is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The store deletes expired records by itself (Redis TTL); `load_session` may return
    /// `None` for a record past `expires_at` instead of the expired record. Such a store must
    /// implement [`Store::key_deadlines`] (the conformance TTL audit).
    pub native_expiry: bool,
    /// [`Store::raw_dump`] returns everything stored (for the hash-at-rest audit).
    pub raw_dump: bool,
    /// Several processes may share the store.
    pub multi_process: bool,
    /// The store has a clock of its own: it judges conditional writes at the later of its
    /// clock and the caller's, returns its time from `load_session`, and implements
    /// [`Store::set_clock_offset`] for tests.
    pub server_clock: bool,
    /// Keys are spread over shards (Redis Cluster): only steps on one subject's keys are one
    /// atomic step. `revoke_resource`, per-resource slot caps and the global cap follow the
    /// multi-step protocols of `docs/writing-an-adapter.md` (each with its linearization
    /// point); the global cap is then an upper bound, which a policy must accept explicitly
    /// ([`Policy::check_against`](crate::Policy::check_against)).
    pub sharded: bool,
    /// The store keeps no index of every session (Redis with
    /// `RedisConfig::global_index(false)`): nothing counts the whole store in one step, so a
    /// global cap cannot be kept ([`Policy::check_against`](crate::Policy::check_against)
    /// refuses one), and listing or counting [`Scope::All`] walks the whole store. Saves the
    /// index's memory per session.
    pub no_global_index: bool,
}

impl Capabilities {
    /// No optional capability.
    pub const NONE: Capabilities = Capabilities {
        native_expiry: false,
        raw_dump: false,
        multi_process: false,
        server_clock: false,
        sharded: false,
        no_global_index: false,
    };

    /// Sets `native_expiry`.
    pub const fn with_native_expiry(mut self, v: bool) -> Self {
        self.native_expiry = v;
        self
    }

    /// Sets `raw_dump`.
    pub const fn with_raw_dump(mut self, v: bool) -> Self {
        self.raw_dump = v;
        self
    }

    /// Sets `multi_process`.
    pub const fn with_multi_process(mut self, v: bool) -> Self {
        self.multi_process = v;
        self
    }

    /// Sets `server_clock`.
    pub const fn with_server_clock(mut self, v: bool) -> Self {
        self.server_clock = v;
        self
    }

    /// Sets `sharded`.
    pub const fn with_sharded(mut self, v: bool) -> Self {
        self.sharded = v;
        self
    }

    /// Sets `no_global_index`.
    pub const fn with_no_global_index(mut self, v: bool) -> Self {
        self.no_global_index = v;
        self
    }
}

/// Persistence for sessions, tickets and slots.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What this store supports beyond the contract.
    fn capabilities(&self) -> Capabilities;

    /// The record with this id, live, expired or tombstone; `None` if absent (or, with
    /// `native_expiry`, past its deadline). A store with a clock of its own returns its time
    /// with the record, in the same round trip ([`Loaded::store_time`]); with no record it may
    /// return none, since nothing is decided on the time of an absent session (every decision
    /// denies it without a write). One read, no write.
    ///
    /// Errors: `Corrupt` for undecodable bytes; `Unavailable`/`Timeout`.
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError>;

    /// Atomically, as one step: check `limits` for `record.subject` at `now` — the creation
    /// rate over the rolling window, then the subject cap, then the global cap counting the
    /// live sessions the subject cap is about to evict as gone — evict the oldest live
    /// sessions (the subject's, then the store's) where a cap's policy is `EvictOldest` (write
    /// their [`tombstone`](SessionRecord::tombstone) with reason `Evicted`), insert `record`,
    /// and count it as a creation for the rate. If a limit refuses, nothing is written.
    ///
    /// "Oldest" is creation order: by `created_at`, and among sessions created in the same
    /// millisecond, by the order the store inserted them (never by id).
    ///
    /// Two concurrent inserts for one subject must never both pass a cap: the count and the
    /// insert commit together. A member the count treated as past its deadline gets its
    /// tombstone (reason `Expired`) in the same step, so what this caller saw end stays ended
    /// for a caller whose clock lags (no cap of 1 ends with 2 live).
    ///
    /// Apply [`check_insert`] first: a replay of the stored record answers `Inserted` with no
    /// evictions and writes nothing.
    ///
    /// Errors: `AlreadyExists` if the id holds another record; `InvalidWrite` if the id does
    /// not carry its subject's shard tag (nothing written).
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError>;

    /// Atomically replaces the record with id `new.id` by `new` if [`check_swap`] allows it
    /// at the judged time (the stored version equals `expected_version`; the stored record is
    /// not a tombstone; it is not past its deadline unless `new` is its tombstone; identity
    /// unchanged; version increased). Stores keep their expiry index consistent with `new`.
    ///
    /// Errors: `NotFound` if absent, a tombstone, or expired (never recreate or revive);
    /// `Conflict` if the version differs; `InvalidWrite` for an identity change.
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Atomically writes the tombstone `record.tombstone(now, Subject)` over every session of
    /// `subject` that is not a tombstone yet — expired or not, by any clock (a revocation
    /// never depends on a clock) — and returns how many of them were live at the judged time.
    /// After it returns, no session of the subject created before the call validates, at any
    /// clock setting.
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError>;

    /// As `revoke_subject`, for every session tagged with `resource` (reason `Resource`).
    async fn revoke_resource(&self, resource: &Resource, now: Timestamp)
    -> Result<u64, StoreError>;

    /// Every record of `subject` not yet reaped (live, expired and tombstones), in any order.
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError>;

    /// Inserts a ticket. A store with a clock stores it [`rebase`]d from `ticket.created_at` onto
    /// `judged_at(created_at, its clock)`. Errors: `AlreadyExists` if the id is present.
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError>;

    /// Atomically deletes and returns the ticket `id` if its verifier equals `verifier` and it
    /// is live at `now`. Of any number of concurrent callers at most one gets `Taken`. A
    /// mismatched verifier leaves the ticket in place and returns `Missing`.
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError>;

    /// Atomically: if the slot's session is live and the caps allow one more live slot (per
    /// session, and per resource when the slot names one), insert `slot`. A slot counts
    /// against a cap while it is unexpired *and* its session is live, so revoking a session
    /// frees its slots' capacity at once. The stored slot is [`rebase`]d onto the judged time
    /// (`acquired_at` = judged time, `expires_at` = judged time + the slot's TTL).
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError>;

    /// Atomically: if slot `id` is live and its session is live, set its expiry to
    /// [`rebase`]`(expires_at, now, judged time)`; if its session is not live, delete it.
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError>;

    /// Deletes slot `id`; true if it existed.
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError>;

    /// Removes at most `limit` records whose `expires_at ≤ now` (sessions of any state,
    /// tickets, slots), walking an expiry index so the cost is proportional to what is removed,
    /// not to what is live. Never removes a live record. Bytes that do not decode are moved
    /// aside and counted in [`ReapOutcome::quarantined`] (they count against `limit`), never
    /// returned as an error: one corrupt record must not stall reaping.
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError>;

    /// Up to `limit` records of `scope` (live, expired, tombstones: the driver filters) with ids
    /// strictly greater than `after`, in ascending id order; `limit` is clamped to
    /// `1..=MAX_PAGE` (a page of none could not say where the listing stands). The listing is
    /// not a snapshot: a record inserted or reaped between pages may or may not appear, but
    /// every record present for the whole listing appears exactly once. Read-only. Cost in
    /// proportion to the page (plus the scope's index), never to the whole store.
    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError>;

    /// How many sessions of `scope` are live at the judged time. Read-only; exact on an
    /// unsharded store (a sharded one sums its shards' counts, each exact at its own instant).
    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError>;

    /// What [`insert_session`](Store::insert_session) of a session for `subject` would answer
    /// at `now` against `limits` (with `Inserted { evicted }` naming who it would evict), without
    /// writing anything. Only advice: a concurrent create may change the answer.
    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError>;

    /// Gives back the creation of session `id` (of `subject`) to the subject's creation-rate
    /// log: for an application that counts only creations whose follow-up succeeded (the
    /// driver ends the session first). Removes that session's entry only; `false` if it has
    /// none (never counted, already given back, or out of the window). Idempotent.
    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError>;

    /// Every stored key and value as raw bytes: an audit hook for the hash-at-rest check.
    /// Stores without the `raw_dump` capability return `None`.
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(None)
    }

    /// Test hook for the TTL audit of stores with `native_expiry`, which must implement it:
    /// every key the store holds, what it holds, and the deadline its server removes it at.
    /// Under native expiry a key's own TTL is what reclaims it (`reap` cleans index entries
    /// only), so no key may lack one, and no record key may outlive its record's deadline
    /// (`min(expires_at, absolute_deadline)` for a session — a tombstone keeps the one its
    /// record had —, `expires_at` for a ticket or a slot). Stores without native expiry
    /// return `None`. It walks every key: never call it in production.
    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        Ok(None)
    }

    /// Test hook for stores with `server_clock`: from now on the store's clock reads the wall
    /// clock plus `offset_ms` (negative: behind). Returns `false` (and does nothing) on stores
    /// without a clock of their own. Never call it in production.
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        let _ = offset_ms;
        false
    }

    /// The store's own clock (with any [`set_clock_offset`](Store::set_clock_offset) applied),
    /// for tools that must start their clocks relative to it: the simulation starts its
    /// virtual clocks a day ahead of it. `None` for a store without a clock of its own (the
    /// default). One round trip; nothing in the engine decides on it.
    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        (**self).load_session(id).await
    }
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        (**self).insert_session(record, limits, now).await
    }
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        (**self).compare_and_swap(new, expected_version, now).await
    }
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        (**self).revoke_subject(subject, now).await
    }
    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        (**self).revoke_resource(resource, now).await
    }
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        (**self).list_subject(subject).await
    }
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        (**self).put_ticket(ticket).await
    }
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        (**self).take_ticket(id, verifier, now).await
    }
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        (**self).acquire_slot(slot, caps, now).await
    }
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        (**self).heartbeat_slot(id, expires_at, now).await
    }
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        (**self).release_slot(id).await
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        (**self).reap(now, limit).await
    }
    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        (**self).list_sessions(scope, after, limit).await
    }
    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        (**self).count_live(scope, now).await
    }
    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        (**self).check_limits(subject, limits, now).await
    }
    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        (**self).forget_creation(subject, id).await
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        (**self).raw_dump().await
    }
    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        (**self).key_deadlines().await
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        (**self).set_clock_offset(offset_ms)
    }
    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        (**self).store_clock().await
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::record::{Credential, RevokeReason, SessionState};

    fn record() -> SessionRecord {
        SessionRecord {
            id: SessionId::from_bytes([1; crate::ids::ID_BYTES]),
            subject: Subject::new("alice").unwrap(),
            resource: None,
            kind: crate::Kind::legacy(),
            version: 3,
            created_at: Timestamp::from_millis(1_000),
            last_seen: Timestamp::from_millis(2_000),
            absolute_deadline: Timestamp::from_millis(100_000),
            expires_at: Timestamp::from_millis(50_000),
            state: SessionState::Active,
            credential: Credential {
                generation: 0,
                current: Verifier([7; 32]),
                rotated_at: Timestamp::from_millis(1_000),
                previous: None,
                retired: Vec::new(),
                access: None,
            },
            binding: None,
            context_summary: None,
            data: Vec::new(),
            data_version: 0,
        }
    }

    /// A record read under its own id loads; under any other id it is `Corrupt`, so bytes
    /// copied or moved between keys never stand for another session.
    #[test]
    fn a_record_under_another_id_is_corrupt() {
        let r = record();
        assert_eq!(check_loaded(&r.id, &r), Ok(()));
        let other = SessionId::from_bytes([2; crate::ids::ID_BYTES]);
        assert!(
            matches!(check_loaded(&other, &r), Err(StoreError::Corrupt(_))),
            "{:?}",
            check_loaded(&other, &r)
        );
    }

    #[test]
    fn only_last_seen_expires_at_and_version_make_a_routine_write() {
        let old = record();
        let mut touch = old.clone();
        touch.version += 1;
        touch.last_seen = Timestamp::from_millis(9_000);
        touch.expires_at = Timestamp::from_millis(60_000);
        assert_eq!(WriteClass::of_swap(&old, &touch), WriteClass::Routine);

        let revoked = old.tombstone(Timestamp::from_millis(3_000), RevokeReason::Revoked);
        assert_eq!(WriteClass::of_swap(&old, &revoked), WriteClass::Security);

        let mut rotated = touch.clone();
        rotated.credential.generation = 1;
        rotated.credential.current = Verifier([8; 32]);
        assert_eq!(WriteClass::of_swap(&old, &rotated), WriteClass::Security);

        let mut data = touch.clone();
        data.data = vec![1];
        data.data_version = 1;
        assert_eq!(WriteClass::of_swap(&old, &data), WriteClass::Security);

        let mut moved = touch.clone();
        moved.subject = Subject::new("bob").unwrap();
        assert_eq!(WriteClass::of_swap(&old, &moved), WriteClass::Security);

        let mut summary = touch;
        summary.context_summary = Some("x".into());
        assert_eq!(WriteClass::of_swap(&old, &summary), WriteClass::Security);
    }
}
