//! Store factories: how the suite gets a fresh, isolated store for every case.

use std::fmt::Display;
use std::future::Future;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, KeyDeadline, Loaded, ReapOutcome,
    SlotCaps, SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{Resource, SessionId, SessionRecord, SlotId, Subject, TicketId, Timestamp};

/// Makes a fresh, empty, isolated store for each conformance case (a new schema, key prefix,
/// temp dir or in-memory instance). Nothing a case writes may be visible to another case.
///
/// Any `Fn() -> impl Future<Output = S>` closure (with `S: Store`) is a factory, so the
/// common case is one line: `|| async { MyStore::new() }`. A factory that can fail (a server
/// that is down, a schema that cannot be created) implements this trait itself, or wraps a
/// closure returning `Result` in [`fallible`].
#[async_trait]
pub trait StoreFactory: Send + Sync {
    /// The store type made.
    type Store: Store;

    /// A fresh, empty store. `Err` says what went wrong in one line (e.g. "cannot connect to
    /// postgres at localhost:5432: connection refused").
    async fn make(&self) -> Result<Self::Store, String>;
}

#[async_trait]
impl<F, Fut, S> StoreFactory for F
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = S> + Send,
    S: Store,
{
    type Store = S;

    async fn make(&self) -> Result<S, String> {
        Ok(self().await)
    }
}

/// A factory from a closure returning `Result<S, E>`; see [`fallible`].
#[derive(Clone, Copy, Debug)]
pub struct Fallible<F>(F);

/// Wraps a closure returning `Result<S, E>` (with `E: Display`) as a [`StoreFactory`]:
///
/// ```
/// # use leasehold_conformance::{fallible, StoreFactory};
/// let factory = fallible(|| async { Ok::<_, String>(leasehold::MemoryStore::new()) });
/// # let _ = factory;
/// ```
pub fn fallible<F, Fut, S, E>(f: F) -> Fallible<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<S, E>> + Send,
    S: Store,
    E: Display,
{
    Fallible(f)
}

#[async_trait]
impl<F, Fut, S, E> StoreFactory for Fallible<F>
where
    F: Fn() -> Fut + Send + Sync,
    Fut: Future<Output = Result<S, E>> + Send,
    S: Store,
    E: Display,
{
    type Store = S;

    async fn make(&self) -> Result<S, String> {
        (self.0)().await.map_err(|e| e.to_string())
    }
}

/// A store that keeps a guard alive as long as itself: e.g. the temp dir an embedded store
/// lives in (`Guarded::new(SledStore::open(dir.path())?, dir)`). Every call goes to the store;
/// the guard is dropped after the store.
pub struct Guarded<S, G> {
    store: S,
    _guard: G,
}

impl<S, G> Guarded<S, G> {
    /// `store`, keeping `guard` alive until it is dropped.
    pub fn new(store: S, guard: G) -> Self {
        Guarded {
            store,
            _guard: guard,
        }
    }

    /// The wrapped store.
    pub fn store(&self) -> &S {
        &self.store
    }
}

#[async_trait]
impl<S: Store, G: Send + Sync + 'static> Store for Guarded<S, G> {
    fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        self.store.load_session(id).await
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.store.set_clock_offset(offset_ms)
    }
    async fn store_clock(&self) -> Result<Option<Timestamp>, StoreError> {
        self.store.store_clock().await
    }
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.store.insert_session(record, limits, now).await
    }
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.store
            .compare_and_swap(new, expected_version, now)
            .await
    }
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.store.revoke_subject(subject, now).await
    }
    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.store.revoke_resource(resource, now).await
    }
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.store.list_subject(subject).await
    }
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.store.put_ticket(ticket).await
    }
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.store.take_ticket(id, verifier, now).await
    }
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.store.acquire_slot(slot, caps, now).await
    }
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.store.heartbeat_slot(id, expires_at, now).await
    }
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.store.release_slot(id).await
    }
    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        self.store.list_sessions(scope, after, limit).await
    }
    async fn count_live(
        &self,
        scope: &leasehold::Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.store.count_live(scope, now).await
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        self.store.check_limits(subject, limits, now).await
    }
    async fn forget_creation(
        &self,
        subject: &leasehold::Subject,
        id: &leasehold::SessionId,
    ) -> Result<bool, StoreError> {
        self.store.forget_creation(subject, id).await
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        self.store.reap(now, limit).await
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.store.raw_dump().await
    }
    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        self.store.key_deadlines().await
    }
}
