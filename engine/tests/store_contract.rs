//! The store trait's own surface: defaults, the `Arc` forwarding, the reference store's
//! footprint (INV-bounded-storage), and fail-closed behaviour against a store that is down.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::executor::block_on;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    CreateLimits, HeartbeatOutcome, InsertOutcome, ReapOutcome, SlotCaps, SlotOutcome, TakeOutcome,
};
use leasehold::{
    CapPolicy, Capabilities, Context, CreateOptions, Error, ManualClock, MemoryStore, Policy, Rate,
    Resource, RevokeReason, SeededEntropy, SessionId, SessionRecord, Sessions, SlotId, Store,
    StoreError, Subject, SubjectCap, TicketId, Timestamp,
};

/// A store whose every call fails, as a store behind a dead network would; it keeps the
/// trait's defaults for everything optional.
/// A store that fails every call, declaring the capabilities it holds.
struct Down(Capabilities);

fn down<T>() -> Result<T, StoreError> {
    Err(StoreError::Unavailable("connection refused".into()))
}

#[async_trait]
impl Store for Down {
    fn capabilities(&self) -> Capabilities {
        self.0
    }
    async fn load_session(&self, _: &SessionId) -> Result<leasehold::Loaded, StoreError> {
        down()
    }
    async fn insert_session(
        &self,
        _: &SessionRecord,
        _: &CreateLimits,
        _: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        down()
    }
    async fn compare_and_swap(
        &self,
        _: &SessionRecord,
        _: u64,
        _: Timestamp,
    ) -> Result<(), StoreError> {
        down()
    }
    async fn revoke_subject(&self, _: &Subject, _: Timestamp) -> Result<u64, StoreError> {
        down()
    }
    async fn revoke_resource(&self, _: &Resource, _: Timestamp) -> Result<u64, StoreError> {
        down()
    }
    async fn list_subject(&self, _: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        down()
    }
    async fn put_ticket(&self, _: &TicketRecord) -> Result<(), StoreError> {
        down()
    }
    async fn take_ticket(
        &self,
        _: &TicketId,
        _: &Verifier,
        _: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        down()
    }
    async fn acquire_slot(
        &self,
        _: &SlotRecord,
        _: &SlotCaps,
        _: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        down()
    }
    async fn heartbeat_slot(
        &self,
        _: &SlotId,
        _: Timestamp,
        _: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        down()
    }
    async fn release_slot(&self, _: &SlotId) -> Result<bool, StoreError> {
        down()
    }
    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        let _ = (scope, after, limit);
        down()
    }
    async fn count_live(
        &self,
        scope: &leasehold::Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let _ = (scope, now);
        down()
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        let _ = (subject, limits, now);
        down()
    }
    async fn forget_creation(
        &self,
        subject: &leasehold::Subject,
        id: &leasehold::SessionId,
    ) -> Result<bool, StoreError> {
        let _ = (subject, id);
        down()
    }
    async fn reap(&self, _: Timestamp, _: usize) -> Result<ReapOutcome, StoreError> {
        down()
    }
}

fn unavailable<T: std::fmt::Debug>(r: Result<T, Error>) {
    assert!(matches!(r, Err(Error::StoreUnavailable(_))), "{r:?}");
}

#[test]
fn a_store_that_is_down_never_yields_a_session_and_every_error_is_typed() {
    // INV-fail-closed: the driver has nothing to decide from, so it grants nothing.
    let healthy = Sessions::new(MemoryStore::new(), Policy::default())
        .unwrap()
        .with_entropy(SeededEntropy::new(1));
    let alice = Subject::new("alice").unwrap();
    let token = block_on(healthy.create(&alice, CreateOptions::default())).unwrap();
    let token = token.token.expose_secret().to_owned();
    let s = Sessions::new(Down(Capabilities::NONE), Policy::default()).unwrap();
    block_on(async {
        unavailable(s.create(&alice, CreateOptions::default()).await);
        unavailable(s.validate(&token, &Context::none()).await);
        unavailable(s.refresh(&token, &Context::none()).await);
        unavailable(s.mint_ticket(&token, &Context::none()).await);
        let id = SessionId::parse(&token[4..40]).unwrap();
        unavailable(s.trusted_by_id().revoke(&id).await);
        unavailable(s.revoke_subject(&alice).await);
        unavailable(s.list(&alice).await);
        unavailable(s.update_data(&id, 0, b"x").await);
        unavailable(s.acquire_slot(&id, None).await);
        unavailable(s.reap(10).await);
        // The trait's default audit hook reports "not supported", not an empty store.
        assert_eq!(Down(Capabilities::NONE).raw_dump().await.unwrap(), None);
        // So do the other test hooks': no TTL audit (not an empty one), no clock to move.
        assert!(
            Down(Capabilities::NONE)
                .key_deadlines()
                .await
                .unwrap()
                .is_none()
        );
        assert!(!Down(Capabilities::NONE).set_clock_offset(1_000));
    });
}

#[test]
fn arc_forwards_capabilities_and_every_call() {
    let inner = Arc::new(MemoryStore::new());
    assert_eq!(inner.capabilities(), MemoryStore::new().capabilities());
    assert!(inner.capabilities().raw_dump);
    let s = Sessions::new(inner.clone(), Policy::default()).unwrap();
    let c = block_on(s.create(&Subject::new("a").unwrap(), CreateOptions::default())).unwrap();
    assert_eq!(inner.session_count(), 1);
    assert_eq!(
        block_on(s.trusted_by_id().revoke(&c.session.id)).unwrap(),
        leasehold::RevokeOutcome::Revoked
    );
    assert!(!block_on(inner.raw_dump()).unwrap().unwrap().is_empty());
}

/// The test hooks forward through `Arc` too: the TTL audit of a store with native expiry,
/// and moving the clock of a store with a clock of its own.
#[test]
fn arc_forwards_the_test_hooks() {
    let clock = ManualClock::new(Timestamp::from_millis(1_000_000));
    let inner = Arc::new(MemoryStore::with_native_expiry(clock.clone()));
    let s = Sessions::new(inner.clone(), Policy::default())
        .unwrap()
        .with_clock(clock);
    block_on(s.create(&Subject::new("a").unwrap(), CreateOptions::default())).unwrap();
    let deadlines = block_on(<Arc<MemoryStore> as Store>::key_deadlines(&inner)).unwrap();
    assert!(
        deadlines.is_some_and(|d| !d.is_empty()),
        "the session's keys, with their deadlines"
    );
    assert!(<Arc<MemoryStore> as Store>::set_clock_offset(&inner, 1_000));
    let clockless = Arc::new(MemoryStore::new());
    assert!(!<Arc<MemoryStore> as Store>::set_clock_offset(
        &clockless, 1_000
    ));
}

#[test]
fn reap_outcome_total_is_the_sum() {
    let r = ReapOutcome {
        sessions: 3,
        tickets: 5,
        slots: 7,
        quarantined: 11,
        ended: Vec::new(),
    };
    assert_eq!(r.total(), 15, "quarantined entries are not removed records");
}

#[test]
fn revoke_reason_codes_round_trip() {
    for r in [
        RevokeReason::Revoked,
        RevokeReason::Subject,
        RevokeReason::Resource,
        RevokeReason::ReuseDetected,
        RevokeReason::Evicted,
        RevokeReason::Expired,
    ] {
        assert_eq!(RevokeReason::from_code(r.code()), Some(r));
    }
    assert_eq!(
        RevokeReason::Expired.code(),
        6,
        "stable code of an observed expiry"
    );
    assert_eq!(RevokeReason::from_code(0), None);
    assert_eq!(RevokeReason::from_code(7), None);
}

#[test]
fn memory_store_footprint_returns_to_zero_once_everything_is_reaped() {
    // INV-bounded-storage on the reference store: records *and* every index entry go.
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    assert_eq!(format!("{store:?}"), "MemoryStore");
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }))
        .creation_rate(Some(Rate {
            max: 10,
            window: Duration::from_secs(60),
        }))
        .build()
        .unwrap();
    let s = Sessions::new(store.clone(), policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(3));
    let r = Resource::new("tenant-1").unwrap();
    block_on(async {
        // One session with a resource, one slot on it, one ticket, one creation logged:
        // session + subject index + open-subject index + resource index + active set + its
        // expiry entry + its id-order and creation-order entries (8),
        // slot + session and resource indexes + expiry entry (4), ticket + expiry entry (2),
        // rate log + its one creation + expiry entry (3).
        let opts = CreateOptions {
            resource: Some(r.clone()),
            ..CreateOptions::default()
        };
        let c = s
            .create(&Subject::new("carol").unwrap(), opts)
            .await
            .unwrap();
        s.acquire_slot(&c.session.id, Some(&r)).await.unwrap();
        s.mint_ticket(c.token.expose_secret(), &Context::none())
            .await
            .unwrap();
        assert_eq!(store.stored_entries(), 8 + 4 + 2 + 3);
        for who in ["alice", "alice", "alice", "bob"] {
            let opts = CreateOptions {
                resource: Some(r.clone()),
                ..CreateOptions::default()
            };
            let c = s.create(&Subject::new(who).unwrap(), opts).await.unwrap();
            s.acquire_slot(&c.session.id, Some(&r)).await.unwrap();
            s.mint_ticket(c.token.expose_secret(), &Context::none())
                .await
                .unwrap();
        }
        s.revoke_subject(&Subject::new("bob").unwrap())
            .await
            .unwrap();
        assert!(store.stored_entries() > 4 * 5);
        clock.advance(Duration::from_secs(24 * 3600));
        let mut removed = 0;
        loop {
            let n = s.reap(3).await.unwrap().total();
            if n == 0 {
                break;
            }
            removed += n;
        }
        assert_eq!(removed, 5 + 5 + 5, "sessions, slots and tickets");
        assert_eq!(store.stored_entries(), 0, "an index kept a dead entry");
    });
}

/// `Sessions::new` refuses a policy the store cannot guarantee, saying why: an exact global cap
/// on a sharded store; the same policy is accepted once it accepts an upper bound, and a
/// sharded store serves policies without a global cap.
#[test]
fn sessions_refuse_a_policy_the_store_cannot_guarantee() {
    let sharded = || Down(Capabilities::NONE.with_sharded(true));
    let capped = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 100,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    match Sessions::new(sharded(), capped.clone()) {
        Err(e @ leasehold::PolicyError::NotGuaranteed { .. }) => {
            assert!(e.to_string().contains("inexact_global_cap_ok"), "{e}");
        }
        Err(other) => panic!("unexpected refusal: {other}"),
        Ok(_) => panic!("an exact global cap was accepted on a sharded store"),
    }
    assert!(Sessions::new(Down(Capabilities::NONE), capped).is_ok());
    assert!(Sessions::new(sharded(), Policy::default()).is_ok());
    let accepted = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 100,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .inexact_global_cap_ok(true)
        .build()
        .unwrap();
    assert!(Sessions::new(sharded(), accepted).is_ok());
}
