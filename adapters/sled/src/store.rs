//! The store contract: every method forwards to the module that implements it (`session`,
//! `groups`, `tickets`, `slots`, `reap`, `open`). sled is blocking, so each runs on the
//! calling thread.

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps,
    SlotOutcome, TakeOutcome,
};
use leasehold::{
    Page, Resource, Scope, SessionId, SessionRecord, SlotId, Store, StoreError, Subject, TicketId,
    Timestamp,
};

use crate::SledStore;

#[async_trait]
impl Store for SledStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_raw_dump(true)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        self.load(id)
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.insert(record, limits, now)
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.swap(new, expected_version, now)
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.revoke_subject_now(subject, now)
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_resource_now(resource, now)
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_subject_records(subject)
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.put(ticket)
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.take(id, verifier, now)
    }

    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.acquire(slot, caps, now)
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.heartbeat(id, expires_at, now)
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.release(id)
    }

    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.list_page(scope, after, limit)
    }

    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        self.count(scope, now)
    }

    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.limits_check(subject, limits, now)
    }

    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        self.forget(subject, id)
    }

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        self.reap_due(now, limit)
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.dump()
    }
}
