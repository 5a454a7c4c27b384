//! The store contract: persist atomically, decide nothing.
//!
//! The engine decides every change; a store applies it atomically and linearizably per session
//! (and per subject/resource for group operations). Each method documents what must be atomic,
//! what it returns for a missing or already-changed record, and which [`StoreError`] means what.
//!
//! Conventions for every method:
//! - `now` is the caller's clock. A store with a clock of its own (a database server) should
//!   use the later of the two for expiry decisions, so a node with a lagging clock cannot revive
//!   what the store already let expire.
//! - "live" means [`SessionRecord::is_live`] / [`SlotRecord::is_live`] at `now`.
//! - An error means the outcome is **unknown** (the write may or may not have been applied: a
//!   lost reply). The engine fails closed on it and callers may retry; every method is safe to
//!   retry because each write is conditional (insert-if-absent, compare-and-swap on a version,
//!   take-once).
//! - Every method here is one atomic step and should be one round trip.

use std::time::Duration;

use async_trait::async_trait;

use crate::crypto::Verifier;
use crate::ids::{Resource, SessionId, SlotId, Subject, TicketId};
use crate::policy::{Rate, SubjectCap};
use crate::record::{SessionRecord, SlotRecord, TicketRecord};
use crate::time::Timestamp;

/// A store failure. Denials by design (caps, missing records) are outcomes, not errors.
#[derive(Debug, thiserror::Error)]
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

/// Limits checked in the same atomic step as a session insert.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CreateLimits {
    /// Live sessions per subject, with the policy when full.
    pub subject_cap: Option<SubjectCap>,
    /// Creations per subject per rolling window.
    pub creation_rate: Option<Rate>,
    /// Live sessions in the store.
    pub global_cap: Option<u64>,
}

/// The result of [`Store::insert_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum InsertOutcome {
    /// Inserted; these sessions (the subject's oldest live ones) were revoked with reason
    /// `Evicted` in the same atomic step.
    Inserted {
        /// Ids of evicted sessions, oldest first.
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

/// What a reap removed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReapOutcome {
    /// Sessions (expired or tombstones past their deadline) removed.
    pub sessions: u64,
    /// Tickets removed.
    pub tickets: u64,
    /// Slots removed.
    pub slots: u64,
}

impl ReapOutcome {
    /// Total records removed.
    pub fn total(&self) -> u64 {
        self.sessions + self.tickets + self.slots
    }
}

/// What an adapter supports beyond the contract; conformance cases needing one are skipped
/// (and reported as skipped) where it is absent.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// The store deletes expired records by itself (Redis TTL); `load_session` may return
    /// `None` for a record past `expires_at` instead of the expired record.
    pub native_expiry: bool,
    /// [`Store::raw_dump`] returns everything stored (for the hash-at-rest audit).
    pub raw_dump: bool,
    /// Several processes may share the store.
    pub multi_process: bool,
}

impl Capabilities {
    /// No optional capability.
    pub const NONE: Capabilities = Capabilities {
        native_expiry: false,
        raw_dump: false,
        multi_process: false,
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
}

/// Persistence for sessions, tickets and slots.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// What this store supports beyond the contract.
    fn capabilities(&self) -> Capabilities;

    /// The record with this id, live, expired or tombstone; `None` if absent (or, with
    /// `native_expiry`, past its deadline). One read, no write.
    ///
    /// Errors: `Corrupt` for undecodable bytes; `Unavailable`/`Timeout`.
    async fn load_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError>;

    /// Atomically, as one step: check `limits` for `record.subject` at `now` (creation rate
    /// over the rolling window, then the global cap, then the subject cap), evict the subject's
    /// oldest live sessions if the cap policy is `EvictOldest` (write their
    /// [`tombstone`](SessionRecord::tombstone) with reason `Evicted`), insert `record`, and count
    /// it as a creation for the rate. If a limit refuses, nothing is written.
    ///
    /// Two concurrent inserts for one subject must never both pass a cap: the count and the
    /// insert commit together.
    ///
    /// Errors: `AlreadyExists` if the id is present (nothing written).
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError>;

    /// Atomically replaces the record with id `new.id` by `new` if and only if the stored
    /// version equals `expected_version` and the stored record has not expired at `now`.
    /// Stores must keep the subject/resource/expiry indexes consistent with `new`.
    ///
    /// A tombstone is final: a `new` that would make a revoked record active is refused with
    /// `NotFound`, whatever its version (defence in depth against a stale or buggy writer).
    ///
    /// Errors: `NotFound` if absent, expired or a tombstone being revived (never recreate it);
    /// `Conflict` if the version differs.
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError>;

    /// Atomically writes the tombstone `record.tombstone(now, Subject)` for every live session
    /// of `subject`; returns how many. After it returns, no session of the subject created
    /// before the call is live.
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError>;

    /// As `revoke_subject`, for every live session tagged with `resource` (reason `Resource`).
    async fn revoke_resource(&self, resource: &Resource, now: Timestamp)
    -> Result<u64, StoreError>;

    /// Every record of `subject` not yet reaped (live, expired and tombstones), in any order.
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError>;

    /// Inserts a ticket. Errors: `AlreadyExists` if the id is present.
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
    /// frees its slots' capacity at once.
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError>;

    /// Atomically: if slot `id` is live and its session is live, set its expiry to
    /// `expires_at`; if its session is not live, delete it.
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
    /// not to what is live. Never removes a live record.
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError>;

    /// Every stored key and value as raw bytes: an audit hook for the hash-at-rest check.
    /// Stores without the `raw_dump` capability return `None`.
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        Ok(None)
    }
}

#[async_trait]
impl<S: Store + ?Sized> Store for std::sync::Arc<S> {
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
    async fn load_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
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
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        (**self).raw_dump().await
    }
}
