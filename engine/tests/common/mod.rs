//! Shared helpers for the engine's integration tests: a store wrapper that counts calls per
//! method, a harness wiring `Sessions` to a `ManualClock`, `SeededEntropy` and a
//! `CollectingSink`, and a few token helpers.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps, SlotOutcome,
    TakeOutcome,
};
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{
    Capabilities, CollectingSink, Event, ManualClock, MemoryStore, Policy, Resource, SeededEntropy,
    SessionId, SessionRecord, Sessions, SlotId, Store, StoreError, Subject, TicketId, Timestamp,
};

pub const MS: Duration = Duration::from_millis(1);

pub fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

pub fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

pub fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

pub fn subject(s: &str) -> Subject {
    Subject::new(s).unwrap()
}

pub fn resource(s: &str) -> Resource {
    Resource::new(s).unwrap()
}

/// The secret part (last 43 characters) of a session or ticket token text.
pub fn secret_part(token_text: &str) -> &str {
    &token_text[token_text.len() - SECRET_TEXT_LEN..]
}

/// Calls made to a [`Counting`] store, per method.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Calls {
    pub load: u64,
    pub insert: u64,
    pub cas: u64,
    pub revoke_subject: u64,
    pub revoke_resource: u64,
    pub list: u64,
    pub put_ticket: u64,
    pub take_ticket: u64,
    pub acquire_slot: u64,
    pub heartbeat_slot: u64,
    pub release_slot: u64,
    pub reap: u64,
    pub raw_dump: u64,
}

impl Calls {
    /// Total store round trips.
    pub fn total(&self) -> u64 {
        self.load
            + self.insert
            + self.cas
            + self.revoke_subject
            + self.revoke_resource
            + self.list
            + self.put_ticket
            + self.take_ticket
            + self.acquire_slot
            + self.heartbeat_slot
            + self.release_slot
            + self.reap
            + self.raw_dump
    }
}

#[derive(Default)]
struct Counters {
    load: AtomicU64,
    insert: AtomicU64,
    cas: AtomicU64,
    revoke_subject: AtomicU64,
    revoke_resource: AtomicU64,
    list: AtomicU64,
    put_ticket: AtomicU64,
    take_ticket: AtomicU64,
    acquire_slot: AtomicU64,
    heartbeat_slot: AtomicU64,
    release_slot: AtomicU64,
    reap: AtomicU64,
    raw_dump: AtomicU64,
}

fn bump(c: &AtomicU64) {
    c.fetch_add(1, Ordering::SeqCst);
}

/// Returns `Pending` once (waking itself), so the executor may run other tasks: a stand-in
/// for the network hop a real store has between its calls.
struct YieldOnce(bool);

impl std::future::Future for YieldOnce {
    type Output = ();
    fn poll(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<()> {
        if self.0 {
            std::task::Poll::Ready(())
        } else {
            self.0 = true;
            cx.waker().wake_by_ref();
            std::task::Poll::Pending
        }
    }
}

/// A store that forwards every call to a [`MemoryStore`] and counts calls per method.
/// Built with [`Counting::yielding`], it also yields to the executor after every call, so
/// concurrent operations really interleave between their load and their compare-and-swap.
#[derive(Clone, Default)]
pub struct Counting {
    pub inner: MemoryStore,
    counters: Arc<Counters>,
    yielding: bool,
}

impl Counting {
    pub fn new(inner: MemoryStore) -> Self {
        Counting {
            inner,
            counters: Arc::default(),
            yielding: false,
        }
    }

    /// As [`new`](Self::new), yielding to the executor after every store call.
    pub fn yielding(inner: MemoryStore) -> Self {
        Counting {
            yielding: true,
            ..Counting::new(inner)
        }
    }

    async fn pause(&self) {
        if self.yielding {
            YieldOnce(false).await;
        }
    }

    /// The calls counted so far.
    pub fn calls(&self) -> Calls {
        let c = &self.counters;
        let g = |a: &AtomicU64| a.load(Ordering::SeqCst);
        Calls {
            load: g(&c.load),
            insert: g(&c.insert),
            cas: g(&c.cas),
            revoke_subject: g(&c.revoke_subject),
            revoke_resource: g(&c.revoke_resource),
            list: g(&c.list),
            put_ticket: g(&c.put_ticket),
            take_ticket: g(&c.take_ticket),
            acquire_slot: g(&c.acquire_slot),
            heartbeat_slot: g(&c.heartbeat_slot),
            release_slot: g(&c.release_slot),
            reap: g(&c.reap),
            raw_dump: g(&c.raw_dump),
        }
    }

    /// Sets every counter back to zero.
    pub fn reset(&self) {
        let c = &self.counters;
        for a in [
            &c.load,
            &c.insert,
            &c.cas,
            &c.revoke_subject,
            &c.revoke_resource,
            &c.list,
            &c.put_ticket,
            &c.take_ticket,
            &c.acquire_slot,
            &c.heartbeat_slot,
            &c.release_slot,
            &c.reap,
            &c.raw_dump,
        ] {
            a.store(0, Ordering::SeqCst);
        }
    }
}

#[async_trait]
impl Store for Counting {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner.set_clock_offset(offset_ms)
    }
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        bump(&self.counters.load);
        let r = self.inner.load_session(id).await;
        self.pause().await;
        r
    }
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        bump(&self.counters.insert);
        let r = self.inner.insert_session(record, limits, now).await;
        self.pause().await;
        r
    }
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        bump(&self.counters.cas);
        let r = self
            .inner
            .compare_and_swap(new, expected_version, now)
            .await;
        self.pause().await;
        r
    }
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        bump(&self.counters.revoke_subject);
        let r = self.inner.revoke_subject(subject, now).await;
        self.pause().await;
        r
    }
    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        bump(&self.counters.revoke_resource);
        let r = self.inner.revoke_resource(resource, now).await;
        self.pause().await;
        r
    }
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        bump(&self.counters.list);
        let r = self.inner.list_subject(subject).await;
        self.pause().await;
        r
    }
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        bump(&self.counters.put_ticket);
        let r = self.inner.put_ticket(ticket).await;
        self.pause().await;
        r
    }
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        bump(&self.counters.take_ticket);
        let r = self.inner.take_ticket(id, verifier, now).await;
        self.pause().await;
        r
    }
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        bump(&self.counters.acquire_slot);
        let r = self.inner.acquire_slot(slot, caps, now).await;
        self.pause().await;
        r
    }
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        bump(&self.counters.heartbeat_slot);
        let r = self.inner.heartbeat_slot(id, expires_at, now).await;
        self.pause().await;
        r
    }
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        bump(&self.counters.release_slot);
        let r = self.inner.release_slot(id).await;
        self.pause().await;
        r
    }
    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        self.inner.list_sessions(scope, after, limit).await
    }
    async fn count_live(
        &self,
        scope: &leasehold::Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.count_live(scope, now).await
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        self.inner.check_limits(subject, limits, now).await
    }
    async fn forget_creation(
        &self,
        subject: &leasehold::Subject,
        id: &leasehold::SessionId,
    ) -> Result<bool, StoreError> {
        self.inner.forget_creation(subject, id).await
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        bump(&self.counters.reap);
        let r = self.inner.reap(now, limit).await;
        self.pause().await;
        r
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        bump(&self.counters.raw_dump);
        let r = self.inner.raw_dump().await;
        self.pause().await;
        r
    }
    async fn key_deadlines(
        &self,
    ) -> Result<Option<Vec<leasehold::store::KeyDeadline>>, StoreError> {
        self.inner.key_deadlines().await
    }
}

/// `Sessions` over a store, with a manual clock, seeded entropy and collected events.
pub struct Harness<S> {
    pub sessions: Sessions<S>,
    pub clock: ManualClock,
    pub sink: CollectingSink,
    /// Every token text the test has seen, to check nothing leaks them.
    seen_tokens: Mutex<Vec<String>>,
}

impl<S: Store> Harness<S> {
    pub fn with_store(store: S, policy: Policy) -> Self {
        let clock = ManualClock::default();
        let sink = CollectingSink::default();
        let sessions = Sessions::new(store, policy)
            .unwrap()
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(0x5eed))
            .with_events(sink.clone());
        Harness {
            sessions,
            clock,
            sink,
            seen_tokens: Mutex::new(Vec::new()),
        }
    }

    pub fn now(&self) -> Timestamp {
        self.sessions.now()
    }

    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Remembers a token text (for [`assert_no_secret_leaks`](Self::assert_no_secret_leaks));
    /// returns it as an owned string.
    pub fn remember(&self, token_text: &str) -> String {
        self.seen_tokens.lock().unwrap().push(token_text.to_owned());
        token_text.to_owned()
    }

    /// Events emitted so far.
    pub fn events(&self) -> Vec<Event> {
        self.sink.events()
    }

    /// Events emitted after the first `from`.
    pub fn events_since(&self, from: usize) -> Vec<Event> {
        self.sink.events().split_off(from)
    }

    /// No event's `Debug` contains the secret part of any remembered token.
    pub fn assert_no_secret_leaks(&self) {
        let tokens = self.seen_tokens.lock().unwrap().clone();
        assert!(
            !tokens.is_empty(),
            "no token remembered: the check is vacuous"
        );
        for e in self.sink.events() {
            let shown = format!("{e:?}");
            for t in &tokens {
                assert!(
                    !shown.contains(secret_part(t)),
                    "event {shown} leaks a token secret"
                );
            }
        }
    }
}

impl Harness<MemoryStore> {
    pub fn new(policy: Policy) -> Self {
        Harness::with_store(MemoryStore::new(), policy)
    }
}

impl Harness<Counting> {
    pub fn counting(policy: Policy) -> Self {
        Harness::with_store(Counting::new(MemoryStore::new()), policy)
    }

    pub fn calls(&self) -> Calls {
        self.sessions.store().calls()
    }

    pub fn reset_calls(&self) {
        self.sessions.store().reset();
    }
}
