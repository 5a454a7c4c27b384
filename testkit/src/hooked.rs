//! One forwarding store wrapper with hooks around every call, so a test wrapper that only
//! needs to act *around* calls (yield, park, count) writes its hooks, not the whole `Store`
//! trait again. Wrappers that change what a call does (fault injection, planted flaws) keep
//! their own impls.

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    CreateLimits, HeartbeatOutcome, InsertOutcome, KeyDeadline, Loaded, ReapOutcome, SlotCaps,
    SlotOutcome, TakeOutcome,
};
use leasehold::{
    Capabilities, Resource, SessionId, SessionRecord, SlotId, Store, StoreError, Subject, TicketId,
    Timestamp,
};

use crate::faults::Op;

/// What runs around each store call of a [`Hooked`] store (`raw_dump`, `key_deadlines` and
/// the synchronous methods are audit hooks and pass straight through).
#[async_trait]
pub trait Hooks: Send + Sync + 'static {
    /// Before the call `op` reaches the store.
    async fn before(&self, op: Op) {
        let _ = op;
    }
    /// After it returned.
    async fn after(&self, op: Op) {
        let _ = op;
    }
}

/// `inner`, with `hooks` run around every call.
pub struct Hooked<S, H> {
    inner: S,
    hooks: H,
}

impl<S, H> Hooked<S, H> {
    /// Wraps `inner`.
    pub fn new(inner: S, hooks: H) -> Self {
        Hooked { inner, hooks }
    }

    /// The wrapped store.
    pub fn inner(&self) -> &S {
        &self.inner
    }

    /// The hooks.
    pub fn hooks(&self) -> &H {
        &self.hooks
    }
}

macro_rules! around {
    ($self:ident, $op:expr, $call:expr) => {{
        $self.hooks.before($op).await;
        let out = $call.await;
        $self.hooks.after($op).await;
        out
    }};
}

#[async_trait]
impl<S: Store, H: Hooks> Store for Hooked<S, H> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner.set_clock_offset(offset_ms)
    }
    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        self.inner.store_clock().await
    }
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        around!(self, Op::Load, self.inner.load_session(id))
    }
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        around!(
            self,
            Op::Insert,
            self.inner.insert_session(record, limits, now)
        )
    }
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        around!(
            self,
            Op::Cas,
            self.inner.compare_and_swap(new, expected_version, now)
        )
    }
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        around!(
            self,
            Op::RevokeSubject,
            self.inner.revoke_subject(subject, now)
        )
    }
    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        around!(
            self,
            Op::RevokeResource,
            self.inner.revoke_resource(resource, now)
        )
    }
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        around!(self, Op::List, self.inner.list_subject(subject))
    }
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        around!(self, Op::PutTicket, self.inner.put_ticket(ticket))
    }
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        around!(
            self,
            Op::TakeTicket,
            self.inner.take_ticket(id, verifier, now)
        )
    }
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        around!(
            self,
            Op::AcquireSlot,
            self.inner.acquire_slot(slot, caps, now)
        )
    }
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        around!(
            self,
            Op::HeartbeatSlot,
            self.inner.heartbeat_slot(id, expires_at, now)
        )
    }
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        around!(self, Op::ReleaseSlot, self.inner.release_slot(id))
    }
    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        around!(
            self,
            Op::ListSessions,
            self.inner.list_sessions(scope, after, limit)
        )
    }
    async fn count_live(
        &self,
        scope: &leasehold::Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        around!(self, Op::CountLive, self.inner.count_live(scope, now))
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        around!(
            self,
            Op::CheckLimits,
            self.inner.check_limits(subject, limits, now)
        )
    }
    async fn forget_creation(
        &self,
        subject: &leasehold::Subject,
        id: &leasehold::SessionId,
    ) -> Result<bool, StoreError> {
        around!(
            self,
            Op::ForgetCreation,
            self.inner.forget_creation(subject, id)
        )
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        around!(self, Op::Reap, self.inner.reap(now, limit))
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.raw_dump().await
    }
    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        self.inner.key_deadlines().await
    }
}
