//! The store contract: every method forwards to the module that implements it (`session`,
//! `groups`, `tickets`, `slots`, `reap`).

use std::sync::atomic::Ordering;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, KeyDeadline, Loaded, ReapOutcome,
    SlotCaps, SlotOutcome, TakeOutcome,
};
use leasehold::{
    Page, Resource, Scope, SessionId, SessionRecord, SlotId, Store, StoreError, Subject, TicketId,
    Timestamp,
};

use crate::RedisStore;

#[async_trait]
impl Store for RedisStore {
    /// `native_expiry`, `raw_dump`, `multi_process`, `server_clock` and `sharded` (on a
    /// standalone server too: same layout, same cross-slot protocols).
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with_native_expiry(true)
            .with_raw_dump(true)
            .with_multi_process(true)
            .with_server_clock(true)
            .with_sharded(true)
            .with_no_global_index(!self.inner.global_index)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        self.load(id).await
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.insert(record, limits, now).await
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.swap(new, expected_version, now).await
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.revoke_subject_now(subject, now).await
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_resource_now(resource, now).await
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_subject_records(subject).await
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.put(ticket).await
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.take(id, verifier, now).await
    }

    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.acquire(slot, caps, now).await
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.heartbeat(id, expires_at, now).await
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.release(id).await
    }

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        self.reap_now(now, limit).await
    }

    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.list(scope, after, limit).await
    }

    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        self.count(scope, now).await
    }

    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.check(subject, limits, now).await
    }

    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        self.forget(subject, id).await
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.dump().await.map(Some)
    }

    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        self.deadlines().await.map(Some)
    }

    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner.offset.store(offset_ms, Ordering::Relaxed);
        true
    }

    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        self.clock().await.map(Some)
    }
}
