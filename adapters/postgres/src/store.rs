//! `impl Store for PostgresStore`: thin forwarding to the modules that do the work.

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, Page, ReapOutcome, Scope,
    SlotCaps, SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{Resource, SessionId, SessionRecord, SlotId, Subject, TicketId, Timestamp};
use sqlx::Row;

use crate::PostgresStore;

#[async_trait]
impl Store for PostgresStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE
            .with_raw_dump(true)
            .with_multi_process(true)
            .with_server_clock(true)
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
        self.cas(new, expected_version, now).await
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.revoke_subject_(subject, now).await
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_resource_(resource, now).await
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.list_subject_(subject).await
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.put_ticket_(ticket).await
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.take_ticket_(id, verifier, now).await
    }

    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.acquire_slot_(slot, caps, now).await
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.heartbeat_slot_(id, expires_at, now).await
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.release_slot_(id).await
    }

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        self.reap_(now, limit).await
    }

    async fn list_sessions(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        self.list_sessions_(scope, after, limit).await
    }

    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        self.count_live_(scope, now).await
    }

    async fn check_limits(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.check_limits_(subject, limits, now).await
    }

    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        self.forget_creation_(subject, id).await
    }

    /// Every row of every table of the schema (each as its text form, so every column is in
    /// it: `bytea` columns as hex), plus each ticket's verifier as raw bytes. Not the codec's
    /// encoding: an audit reads it for secrets, not for records.
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let sql = &self.inner.sql.raw_dump;
        let rows = self.run(|| sqlx::query(sql).fetch_all(self.pool())).await?;
        rows.iter()
            .map(|r| {
                r.try_get::<Vec<u8>, _>(0)
                    .map_err(|e| StoreError::Unavailable(format!("postgres dump: {e}")))
            })
            .collect::<Result<Vec<_>, _>>()
            .map(Some)
    }

    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner
            .offset_ms
            .store(offset_ms, std::sync::atomic::Ordering::Relaxed);
        true
    }

    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        self.clock().await.map(Some)
    }
}
