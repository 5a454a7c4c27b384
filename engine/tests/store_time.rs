//! INV-store-time on the reference store: once any caller has been told `Expired` or `Revoked`,
//! no operation by any caller, at any clock setting, makes that session valid again; a clock
//! stepped forward only ends sessions early; revocation never depends on a clock; and on a
//! store with a clock of its own, windows and caps run on the store's clock.
//!
//! Each reproduction of issue 8 is here, on `MemoryStore`, with what it returns now. Time is
//! driven with `ManualClock`s only (one per caller where clocks differ); an in-flight request is
//! held between its load and its compare-and-swap by a store wrapper ([`Paused`]), never by a
//! sleep.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::{MS, mins, resource, secs, subject};
use leasehold::crypto::Verifier;
use leasehold::record::{Predecessor, SlotRecord, TicketRecord};
use leasehold::store::{
    CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps, SlotOutcome,
    TakeOutcome, check_swap,
};
use leasehold::{
    CapPolicy, Capabilities, Clock, CollectingSink, Context, CreateOptions, Error, Event,
    ManualClock, MemoryStore, Policy, Rate, Resource, RevokeOutcome, RevokeReason, SeededEntropy,
    SessionId, SessionRecord, SessionState, Sessions, SlotId, Store, StoreError, Subject,
    SubjectCap, TicketId, Timestamp, codec, decide,
};
use sha2::{Digest, Sha256};
use tokio::sync::Notify;

macro_rules! assert_err {
    ($e:expr, $p:pat $(if $g:expr)?) => {
        match $e {
            Err($p) $(if $g)? => {}
            Err(other) => panic!("expected Err({}), got Err({other:?})", stringify!($p)),
            Ok(v) => panic!("expected Err({}), got Ok({v:?})", stringify!($p)),
        }
    };
}

/// Idle timeout of the default policy: a session created at `t` is due at `t + IDLE`.
const IDLE: Duration = Duration::from_secs(30 * 60);

fn no_renewal() -> Policy {
    Policy::builder().renewal_interval(None).build().unwrap()
}

/// A driver over `store` with its own clock (seeded entropy: `seed` keeps ids apart).
fn driver<S: Store>(store: S, policy: &Policy, clock: &ManualClock, seed: u64) -> Sessions<S> {
    Sessions::new(store, policy.clone())
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(seed))
}

async fn create<S: Store>(s: &Sessions<S>, who: &str) -> (SessionId, String) {
    create_with(s, who, CreateOptions::default()).await
}

async fn create_with<S: Store>(
    s: &Sessions<S>,
    who: &str,
    opts: CreateOptions,
) -> (SessionId, String) {
    let c = s.create(&subject(who), opts).await.unwrap();
    (c.session.id, c.token.expose_secret().to_owned())
}

async fn stored<S: Store>(store: &S, id: &SessionId) -> Option<SessionRecord> {
    store.load_session(id).await.unwrap().record.map(|r| *r)
}

/// Refreshes `t` (which must succeed) and returns the successor's text.
async fn refreshed<S: Store>(s: &Sessions<S>, t: &str) -> String {
    s.refresh(t, &Context::none())
        .await
        .unwrap()
        .token
        .expose_secret()
        .to_owned()
}

async fn validate<S: Store>(s: &Sessions<S>, t: &str) -> Result<leasehold::Validated, Error> {
    s.validate(t, &Context::none()).await
}

fn reason_of(r: &SessionRecord) -> Option<RevokeReason> {
    match r.state {
        SessionState::Revoked { reason, .. } => Some(reason),
        SessionState::Active => None,
    }
}

/// Whether `e` is the error a read of a session ended with `reason` gives.
fn ended_as(e: &Error, reason: RevokeReason) -> bool {
    match (e, reason) {
        (Error::Expired, RevokeReason::Expired) => true,
        (Error::Revoked { reason: got }, want) => *got == want && want != RevokeReason::Expired,
        _ => false,
    }
}

/// INV-store-time: with `token` ended for `reason`, every way of using it at every clock setting
/// in `at` is refused with that ending, and nothing is written.
async fn never_valid_again<S: Store>(
    s: &Sessions<S>,
    clock: &ManualClock,
    id: &SessionId,
    token: &str,
    reason: RevokeReason,
    at: &[Timestamp],
) {
    let before = stored(s.store(), id).await.expect("the tombstone is kept");
    assert_eq!(reason_of(&before), Some(reason), "{before:?}");
    for &t in at {
        clock.set(t);
        let ctx = Context::none();
        let v = s.validate(token, &ctx).await;
        assert!(
            matches!(&v, Err(e) if ended_as(e, reason)),
            "INV-store-time violated: validate at {t:?} gave {v:?}"
        );
        let r = s.refresh(token, &ctx).await;
        assert!(
            matches!(&r, Err(e) if ended_as(e, reason)),
            "INV-store-time violated: refresh at {t:?} gave {r:?}"
        );
        let m = s.mint_ticket(token, &ctx).await;
        assert!(matches!(&m, Err(e) if ended_as(e, reason)), "{m:?}");
        let u = s.update_data(id, before.data_version, b"x").await;
        assert!(matches!(&u, Err(e) if ended_as(e, reason)), "{u:?}");
        let a = s.acquire_slot(id, None).await;
        assert!(matches!(&a, Err(e) if ended_as(e, reason)), "{a:?}");
        assert_eq!(
            s.trusted_by_id().revoke(id).await.unwrap(),
            RevokeOutcome::AlreadyRevoked { reason }
        );
        assert_eq!(
            stored(s.store(), id).await.as_ref(),
            Some(&before),
            "nothing is ever written over a tombstone"
        );
    }
}

// ---------------------------------------------------------------------------------------------
// A store that holds one compare-and-swap between the caller's load and its write
// ---------------------------------------------------------------------------------------------

/// The gate a [`Paused`] store holds an armed compare-and-swap at.
#[derive(Default)]
struct Gate {
    armed: AtomicBool,
    reached: Notify,
    release: Notify,
}

/// What one compare-and-swap attempted and what the store answered.
#[derive(Clone, Debug, PartialEq, Eq)]
struct CasCall {
    expected: u64,
    tombstone: bool,
    result: &'static str,
}

fn kind(r: &Result<(), StoreError>) -> &'static str {
    match r {
        Ok(()) => "ok",
        Err(StoreError::NotFound) => "NotFound",
        Err(StoreError::Conflict) => "Conflict",
        Err(StoreError::InvalidWrite(_)) => "InvalidWrite",
        Err(_) => "other",
    }
}

/// Forwards to a `MemoryStore`; once [`arm`](Paused::arm)ed, the next compare-and-swap stops
/// before it reaches the store until the test releases it (the request is "in flight": it has
/// loaded and decided, its write has not landed). Logs every compare-and-swap.
#[derive(Clone)]
struct Paused {
    inner: MemoryStore,
    gate: Arc<Gate>,
    log: Arc<Mutex<Vec<CasCall>>>,
}

impl Paused {
    fn new(inner: MemoryStore) -> Self {
        Paused {
            inner,
            gate: Arc::default(),
            log: Arc::default(),
        }
    }

    fn arm(&self) {
        self.gate.armed.store(true, Ordering::SeqCst);
    }

    /// Resolves once the armed compare-and-swap is held.
    async fn reached(&self) {
        self.gate.reached.notified().await;
    }

    fn release(&self) {
        self.gate.release.notify_one();
    }

    /// The request that should have been held finished instead (it wrote nothing): disarm and
    /// let the other side go on, so a broken rule fails an assertion instead of hanging.
    fn finished(&self) {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
        }
    }

    fn cas_log(&self) -> Vec<CasCall> {
        self.log.lock().unwrap().clone()
    }
}

#[async_trait]
impl Store for Paused {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner.set_clock_offset(offset_ms)
    }
    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        self.inner.load_session(id).await
    }
    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.inner.insert_session(record, limits, now).await
    }
    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if self.gate.armed.swap(false, Ordering::SeqCst) {
            self.gate.reached.notify_one();
            self.gate.release.notified().await;
        }
        let r = self
            .inner
            .compare_and_swap(new, expected_version, now)
            .await;
        self.log.lock().unwrap().push(CasCall {
            expected: expected_version,
            tombstone: new.is_tombstone(),
            result: kind(&r),
        });
        r
    }
    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.inner.revoke_subject(subject, now).await
    }
    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.inner.revoke_resource(resource, now).await
    }
    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.inner.list_subject(subject).await
    }
    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.inner.put_ticket(ticket).await
    }
    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.inner.take_ticket(id, verifier, now).await
    }
    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.inner.acquire_slot(slot, caps, now).await
    }
    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.inner.heartbeat_slot(id, expires_at, now).await
    }
    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.inner.release_slot(id).await
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
        self.inner.reap(now, limit).await
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.raw_dump().await
    }
    async fn key_deadlines(
        &self,
    ) -> Result<Option<Vec<leasehold::store::KeyDeadline>>, StoreError> {
        self.inner.key_deadlines().await
    }
}

// ---------------------------------------------------------------------------------------------
// One clock, one in-flight request: a touch decided at E−1 ms lands after an ending at E+1 ms
// ---------------------------------------------------------------------------------------------

/// What request B does at E+1 ms while request A's touch (decided at E−1 ms) is held before its
/// compare-and-swap.
#[derive(Clone, Copy, Debug)]
enum Second {
    Revoke,
    RevokeSubject,
    RevokeResource,
    Validate,
}

/// Issue 8, "one clock, one in-flight request": A loads at E−1 ms (idle deadline E) and
/// decides a touch; before its compare-and-swap lands, B acts at E+1 ms on the same clock.
/// Checks what each was told, that A's write was refused, and that the session never
/// validates again.
async fn in_flight_touch_then(second: Second) {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = Paused::new(MemoryStore::new());
    let s = driver(store.clone(), &policy, &clock, 1);
    let t0 = clock.now();
    let opts = CreateOptions {
        resource: Some(resource("box-1")),
        ..CreateOptions::default()
    };
    let (id, token) = create_with(&s, "alice", opts).await;
    let deadline = t0.saturating_add(IDLE);
    assert_eq!(stored(&store, &id).await.unwrap().expires_at, deadline);

    clock.set(deadline.saturating_sub(MS));
    store.arm();
    let ctx = Context::none();
    let a = async {
        let r = s.validate(&token, &ctx).await;
        store.finished();
        r
    };
    let b = async {
        store.reached().await; // A has loaded at E−1 ms and decided its touch
        clock.set(deadline.saturating_add(MS));
        let out = match second {
            Second::Revoke => format!("{:?}", s.trusted_by_id().revoke(&id).await),
            Second::RevokeSubject => format!("{:?}", s.revoke_subject(&subject("alice")).await),
            Second::RevokeResource => {
                format!("{:?}", s.revoke_resource(&resource("box-1")).await)
            }
            Second::Validate => format!("{:?}", validate(&s, &token).await.map(|_| ())),
        };
        store.release();
        out
    };
    let (a, b) = tokio::join!(a, b);

    // What B was told, and what A was told once its write failed and it re-decided.
    let reason = match second {
        Second::Revoke => {
            assert_eq!(b, "Ok(Revoked)");
            RevokeReason::Revoked
        }
        // The session was past its deadline at B's time, so it counts 0 live: but its
        // tombstone is written all the same.
        Second::RevokeSubject => {
            assert_eq!(b, "Ok(0)");
            RevokeReason::Subject
        }
        Second::RevokeResource => {
            assert_eq!(b, "Ok(0)");
            RevokeReason::Resource
        }
        Second::Validate => {
            assert_eq!(b, "Err(Expired)");
            RevokeReason::Expired
        }
    };
    assert!(
        matches!(&a, Err(e) if ended_as(e, reason)),
        "A's touch must not commit after B's ending ({second:?}); A got {a:?}"
    );
    let touches: Vec<CasCall> = store
        .cas_log()
        .into_iter()
        .filter(|c| !c.tombstone)
        .collect();
    assert_eq!(
        touches,
        vec![CasCall {
            expected: 0,
            tombstone: false,
            result: "NotFound"
        }],
        "exactly one touch was attempted (A's, held in flight) and the store refused it"
    );
    let rec = stored(&store, &id).await.unwrap();
    assert_eq!(rec.expires_at, deadline, "the deadline never moved");
    assert_eq!(rec.version, 1, "one write: the tombstone");
    never_valid_again(
        &s,
        &clock,
        &id,
        &token,
        reason,
        &[
            deadline.saturating_add(MS),
            deadline.saturating_sub(MS), // the clock set back: still ended
            t0.saturating_add(mins(1)),
            deadline.saturating_add(mins(29)),
        ],
    )
    .await;
}

#[tokio::test]
async fn in_flight_touch_loses_to_revoke_at_the_deadline() {
    // Was: revoke → Ok(false), A's touch committed, the session validated for 30 more minutes.
    in_flight_touch_then(Second::Revoke).await;
}

#[tokio::test]
async fn in_flight_touch_loses_to_revoke_subject_at_the_deadline() {
    // Was: revoke_subject → Ok(0) with no tombstone, and A's touch revived the session.
    in_flight_touch_then(Second::RevokeSubject).await;
}

#[tokio::test]
async fn in_flight_touch_loses_to_revoke_resource_at_the_deadline() {
    in_flight_touch_then(Second::RevokeResource).await;
}

#[tokio::test]
async fn in_flight_touch_loses_to_a_read_told_expired_at_the_deadline() {
    // B was told Expired: that ending was written before B heard it, so A's touch fails.
    in_flight_touch_then(Second::Validate).await;
}

#[tokio::test]
async fn an_expiry_write_that_loses_to_a_touch_that_landed_first_is_re_decided() {
    // The other order: B (clock at E+1 ms) loads the untouched record and decides its Expired
    // tombstone; before that lands, A (clock at E−1 ms) touches. B's write fails on the
    // version, B re-decides on the touched record: it was never expired, B is granted.
    let policy = no_renewal();
    let store = Paused::new(MemoryStore::new());
    let clock_a = ManualClock::default();
    let t0 = clock_a.now();
    let clock_b = ManualClock::new(t0);
    let a = driver(store.clone(), &policy, &clock_a, 1);
    let b = driver(store.clone(), &policy, &clock_b, 2);
    let (id, token) = create(&a, "alice").await;
    let deadline = t0.saturating_add(IDLE);
    clock_a.set(deadline.saturating_sub(MS));
    clock_b.set(deadline.saturating_add(MS));
    store.arm();
    let ctx = Context::none();
    let vb = async {
        let r = b.validate(&token, &ctx).await;
        store.finished();
        r
    };
    let va = async {
        store.reached().await; // B's tombstone write is held
        let r = a.validate(&token, &Context::none()).await;
        store.release();
        r
    };
    let (vb, va) = tokio::join!(vb, va);
    let va = va.unwrap();
    assert_eq!(
        va.session.expires_at,
        deadline.saturating_sub(MS).saturating_add(IDLE)
    );
    let vb = vb.expect("B re-decides on the touched record: never expired");
    assert_eq!(vb.session.expires_at, va.session.expires_at);
    assert_eq!(
        store.cas_log(),
        vec![
            CasCall {
                expected: 0,
                tombstone: false,
                result: "ok"
            },
            CasCall {
                expected: 0,
                tombstone: true,
                result: "Conflict"
            },
        ]
    );
    let rec = stored(&store, &id).await.unwrap();
    assert_eq!((rec.version, reason_of(&rec)), (1, None));
}

// ---------------------------------------------------------------------------------------------
// A clock stepped forward, then back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn revoke_under_a_clock_stepped_forward_survives_the_step_back() {
    // Was: revoke → Ok(false), no tombstone; after the correction the session validated.
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let t0 = clock.now();
    let (id, token) = create(&s, "alice").await;
    clock.advance(mins(45)); // an NTP correction steps the clock past the idle deadline
    assert_eq!(
        s.trusted_by_id().revoke(&id).await.unwrap(),
        RevokeOutcome::Revoked
    );
    let rec = stored(&store, &id).await.unwrap();
    assert_eq!(reason_of(&rec), Some(RevokeReason::Revoked));
    assert_eq!(rec.version, 1);
    assert_eq!(rec.expires_at, t0.saturating_add(IDLE), "same deadline");
    // The clock is corrected: the logout holds at every setting.
    never_valid_again(
        &s,
        &clock,
        &id,
        &token,
        RevokeReason::Revoked,
        &[t0.saturating_add(mins(1)), t0, t0.saturating_add(mins(45))],
    )
    .await;
}

#[tokio::test]
async fn group_revokes_under_a_clock_stepped_forward_survive_the_step_back() {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let t0 = clock.now();
    let (a, ta) = create(&s, "alice").await;
    let opts = CreateOptions {
        resource: Some(resource("box-2")),
        ..CreateOptions::default()
    };
    let (b, tb) = create_with(&s, "bob", opts).await;
    let (c, tc) = create(&s, "carol").await;
    clock.advance(mins(45));
    // Counted: none live at the stepped clock; tombstoned: both.
    assert_eq!(s.revoke_subject(&subject("alice")).await.unwrap(), 0);
    assert_eq!(s.revoke_resource(&resource("box-2")).await.unwrap(), 0);
    clock.set(t0.saturating_add(mins(2)));
    let back = [t0.saturating_add(mins(2))];
    never_valid_again(&s, &clock, &a, &ta, RevokeReason::Subject, &back).await;
    never_valid_again(&s, &clock, &b, &tb, RevokeReason::Resource, &back).await;
    // A session no one touched while the clock was ahead recovers.
    validate(&s, &tc).await.unwrap();
    assert_eq!(reason_of(&stored(&store, &c).await.unwrap()), None);
}

#[tokio::test]
async fn an_expiry_seen_under_a_clock_stepped_forward_stays_seen() {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let t0 = clock.now();
    let (id, token) = create(&s, "alice").await;
    clock.advance(mins(45));
    assert_err!(validate(&s, &token).await, Error::Expired);
    // Fail closed: once told Expired, the corrected clock does not bring it back.
    never_valid_again(
        &s,
        &clock,
        &id,
        &token,
        RevokeReason::Expired,
        &[t0.saturating_add(mins(1))],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// Two drivers, 5 minutes apart, over one store without a clock
// ---------------------------------------------------------------------------------------------

struct Skewed {
    store: MemoryStore,
    slow_clock: ManualClock,
    fast_clock: ManualClock,
    slow: Sessions<MemoryStore>,
    fast: Sessions<MemoryStore>,
    t0: Timestamp,
}

impl Skewed {
    /// The fast driver's clock runs `skew` ahead of the slow one's.
    fn new(policy: Policy, skew: Duration) -> Self {
        let store = MemoryStore::new();
        let slow_clock = ManualClock::default();
        let t0 = slow_clock.now();
        let fast_clock = ManualClock::new(t0.saturating_add(skew));
        Skewed {
            slow: driver(store.clone(), &policy, &slow_clock, 1),
            fast: driver(store.clone(), &policy, &fast_clock, 2),
            store,
            slow_clock,
            fast_clock,
            t0,
        }
    }

    fn advance(&self, d: Duration) {
        self.slow_clock.advance(d);
        self.fast_clock.advance(d);
    }

    /// The subject's sessions live by the slow clock, as the store holds them.
    async fn live_at_slow_clock(&self, who: &str) -> usize {
        let now = self.slow_clock.now();
        self.store
            .list_subject(&subject(who))
            .await
            .unwrap()
            .iter()
            .filter(|r| r.is_live(now))
            .count()
    }
}

#[tokio::test]
async fn what_the_fast_driver_saw_expire_stays_expired_for_the_slow_one() {
    // Was: the slow driver touched it back to life.
    let w = Skewed::new(no_renewal(), mins(5));
    let (id, token) = create(&w.slow, "alice").await;
    w.advance(mins(26)); // slow: 4 min left by its clock; fast: 1 min past the deadline
    assert_err!(validate(&w.fast, &token).await, Error::Expired);
    never_valid_again(
        &w.slow,
        &w.slow_clock,
        &id,
        &token,
        RevokeReason::Expired,
        &[w.t0.saturating_add(mins(26)), w.t0.saturating_add(mins(29))],
    )
    .await;
    assert!(w.slow.list(&subject("alice")).await.unwrap().is_empty());
}

#[tokio::test]
async fn what_the_fast_driver_revoked_stays_revoked_for_the_slow_one() {
    let w = Skewed::new(no_renewal(), mins(5));
    let (a, ta) = create(&w.slow, "alice").await;
    let (b, tb) = create(&w.slow, "bob").await;
    w.advance(mins(26));
    // Past the deadline by the fast clock, live by the slow one: revoked either way.
    assert_eq!(
        w.fast.trusted_by_id().revoke(&a).await.unwrap(),
        RevokeOutcome::Revoked
    );
    assert_eq!(w.fast.revoke_subject(&subject("bob")).await.unwrap(), 0);
    let at = [w.slow_clock.now()];
    never_valid_again(&w.slow, &w.slow_clock, &a, &ta, RevokeReason::Revoked, &at).await;
    never_valid_again(&w.slow, &w.slow_clock, &b, &tb, RevokeReason::Subject, &at).await;
}

async fn subject_cap_of_one_across_skew(on_full: CapPolicy) {
    let policy = Policy::builder()
        .renewal_interval(None)
        .subject_cap(Some(SubjectCap { max: 1, on_full }))
        .build()
        .unwrap();
    let w = Skewed::new(policy, mins(5));
    let (s1, t1) = create(&w.slow, "alice").await;
    w.advance(mins(27)); // S1: 3 min left by the slow clock, 2 min past by the fast clock
    assert_eq!(w.live_at_slow_clock("alice").await, 1);
    // The fast driver's create counts S1 as ended, so it writes S1's ending in the same step.
    let (_, t2) = create(&w.fast, "alice").await;
    let rec = stored(&w.store, &s1).await.unwrap();
    assert_eq!(reason_of(&rec), Some(RevokeReason::Expired), "{rec:?}");
    assert_eq!(
        w.live_at_slow_clock("alice").await,
        1,
        "INV-caps: a cap of 1 never ends with 2 live, by any clock"
    );
    assert_err!(validate(&w.slow, &t1).await, Error::Expired);
    validate(&w.slow, &t2).await.unwrap();
    assert_eq!(w.live_at_slow_clock("alice").await, 1);
    assert_eq!(w.slow.list(&subject("alice")).await.unwrap().len(), 1);
    // And the slow driver, which still counts S2 as live, is held to the cap.
    match on_full {
        CapPolicy::Reject => assert_err!(
            w.slow
                .create(&subject("alice"), CreateOptions::default())
                .await,
            Error::LimitReached { .. }
        ),
        CapPolicy::EvictOldest => {
            create(&w.slow, "alice").await;
            assert_err!(
                validate(&w.slow, &t2).await,
                Error::Revoked {
                    reason: RevokeReason::Evicted
                }
            );
        }
    }
    assert_eq!(w.live_at_slow_clock("alice").await, 1);
}

#[tokio::test]
async fn subject_cap_of_one_never_ends_with_two_live_across_skew_reject() {
    subject_cap_of_one_across_skew(CapPolicy::Reject).await;
}

#[tokio::test]
async fn subject_cap_of_one_never_ends_with_two_live_across_skew_evict_oldest() {
    subject_cap_of_one_across_skew(CapPolicy::EvictOldest).await;
}

// ---------------------------------------------------------------------------------------------
// A store with a clock of its own: windows and caps run on it
// ---------------------------------------------------------------------------------------------

/// A store with a server clock, an accurate caller and a caller lagging by `lag`.
struct Server {
    server_clock: ManualClock,
    store: MemoryStore,
    accurate_clock: ManualClock,
    lagging_clock: ManualClock,
    accurate: Sessions<MemoryStore>,
    lagging: Sessions<MemoryStore>,
    t0: Timestamp,
}

impl Server {
    fn new(policy: Policy, lag: Duration) -> Self {
        let server_clock = ManualClock::default();
        let t0 = server_clock.now();
        let store = MemoryStore::with_server_clock(server_clock.clone());
        let accurate_clock = ManualClock::new(t0);
        let lagging_clock = ManualClock::new(t0.saturating_sub(lag));
        Server {
            accurate: driver(store.clone(), &policy, &accurate_clock, 1),
            lagging: driver(store.clone(), &policy, &lagging_clock, 2),
            server_clock,
            store,
            accurate_clock,
            lagging_clock,
            t0,
        }
    }

    fn advance(&self, d: Duration) {
        self.server_clock.advance(d);
        self.accurate_clock.advance(d);
        self.lagging_clock.advance(d);
    }

    /// Server time now.
    fn now(&self) -> Timestamp {
        self.server_clock.now()
    }
}

#[tokio::test]
async fn a_store_with_a_clock_declares_it_and_returns_its_time_from_load() {
    let w = Server::new(no_renewal(), mins(5));
    assert!(w.store.capabilities().server_clock);
    assert!(!MemoryStore::new().capabilities().server_clock);
    assert!(!MemoryStore::new().set_clock_offset(1000));
    let (id, _) = create(&w.lagging, "alice").await;
    let loaded = w.store.load_session(&id).await.unwrap();
    assert_eq!(loaded.store_time, Some(w.t0));
    assert!(w.store.set_clock_offset(-60_000));
    assert_eq!(
        w.store.load_session(&id).await.unwrap().store_time,
        Some(w.t0.saturating_sub(mins(1)))
    );
    assert_eq!(
        MemoryStore::new().load_session(&id).await.unwrap(),
        Loaded::new(None)
    );
}

#[tokio::test]
async fn a_lagging_caller_cannot_stretch_the_grace_window() {
    // Was: a predecessor answered 5 min after the grace window closed.
    let w = Server::new(no_renewal(), mins(5));
    let (_, t0) = create(&w.accurate, "alice").await;
    w.advance(mins(1));
    let rotated = w.now();
    let t1 = refreshed(&w.accurate, &t0).await;
    // The successor is presented: only the grace window keeps the predecessor now.
    validate(&w.accurate, &t1).await.unwrap();
    w.advance(secs(30) - MS);
    let v = validate(&w.lagging, &t0).await.unwrap();
    assert_eq!(
        v.renewed.map(|t| t.expose_secret().to_owned()),
        Some(t1.clone()),
        "inside the grace window by the store's clock: answered with the successor"
    );
    w.advance(MS);
    assert_eq!(w.now(), rotated.saturating_add(secs(30)));
    assert!(
        w.lagging_clock.now() < rotated,
        "by its own clock the lagging caller is before the rotation"
    );
    assert_err!(validate(&w.lagging, &t0).await, Error::ReuseDetected);
    assert_err!(
        validate(&w.accurate, &t1).await,
        Error::Revoked {
            reason: RevokeReason::ReuseDetected
        }
    );
}

#[tokio::test]
async fn a_lagging_caller_cannot_stretch_the_orphan_window() {
    let w = Server::new(no_renewal(), mins(4));
    let (id, t0) = create(&w.accurate, "alice").await;
    w.advance(mins(1));
    let rotated = w.now();
    let t1 = refreshed(&w.accurate, &t0).await;
    // The successor is never presented (its reply was lost): the orphan window keeps t0.
    w.advance(mins(5) - MS);
    let sink = CollectingSink::default();
    let lagging =
        driver(w.store.clone(), &no_renewal(), &w.lagging_clock, 3).with_events(sink.clone());
    let v = validate(&lagging, &t0).await.unwrap();
    assert_eq!(v.renewed.map(|t| t.expose_secret().to_owned()), Some(t1));
    assert!(
        sink.events()
            .contains(&Event::SuccessorReissued { id, orphan: true })
    );
    w.advance(MS);
    assert_eq!(w.now(), rotated.saturating_add(mins(5)));
    assert_err!(validate(&lagging, &t0).await, Error::ReuseDetected);
}

#[tokio::test]
async fn a_lagging_caller_cannot_stretch_the_ticket_ttl() {
    // Was: a 30 s ticket redeemed 4 min after minting.
    let w = Server::new(Policy::default(), mins(4));
    let (_, t) = create(&w.accurate, "alice").await;
    let kept = w.accurate.mint_ticket(&t, &Context::none()).await.unwrap();
    let late = w.accurate.mint_ticket(&t, &Context::none()).await.unwrap();
    assert_eq!(kept.expires_at, w.t0.saturating_add(secs(30)));
    // Minted by the lagging caller: the TTL starts at the store's time, not the caller's.
    let by_lagging = w.lagging.mint_ticket(&t, &Context::none()).await.unwrap();
    assert_eq!(by_lagging.expires_at, w.t0.saturating_add(secs(30)));
    w.advance(secs(30) - MS);
    w.lagging
        .redeem_ticket(kept.ticket.expose_secret())
        .await
        .unwrap();
    w.advance(mins(4) - secs(30) + MS);
    assert_eq!(
        w.lagging_clock.now(),
        w.t0,
        "by its clock, the minting instant"
    );
    assert_err!(
        w.lagging.redeem_ticket(late.ticket.expose_secret()).await,
        Error::Expired
    );
    assert_err!(
        w.lagging
            .redeem_ticket(by_lagging.ticket.expose_secret())
            .await,
        Error::Expired
    );
}

#[tokio::test]
async fn a_lagging_caller_cannot_stretch_the_rate_window() {
    let policy = Policy::builder()
        .creation_rate(Some(Rate {
            max: 1,
            window: secs(60),
        }))
        .build()
        .unwrap();
    let w = Server::new(policy, mins(4));
    // The lagging caller's creation is logged at the store's time...
    create(&w.lagging, "alice").await;
    w.advance(secs(30));
    // ...so an accurate caller 30 s later is still inside the window (was: allowed, the
    // window having "ended" 3 min before by the lagging clock).
    assert_err!(
        w.accurate.create(&subject("alice"), CreateOptions::default()).await,
        Error::RateLimited { retry_after } if retry_after == secs(30)
    );
    assert_err!(
        w.lagging.create(&subject("alice"), CreateOptions::default()).await,
        Error::RateLimited { retry_after } if retry_after == secs(30)
    );
    w.advance(secs(30));
    create(&w.lagging, "alice").await;
}

#[tokio::test]
async fn caps_count_at_the_store_clock_for_a_lagging_caller() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .subject_cap(Some(SubjectCap {
            max: 1,
            on_full: CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let w = Server::new(policy, mins(5));
    let (s1, t1) = create(&w.accurate, "alice").await;
    w.advance(IDLE + mins(1)); // S1: ended by the store's clock, 4 min left by the lagging one
    let (_, t2) = create(&w.lagging, "alice").await;
    assert_eq!(
        reason_of(&stored(&w.store, &s1).await.unwrap()),
        Some(RevokeReason::Expired)
    );
    assert_err!(validate(&w.lagging, &t1).await, Error::Expired);
    validate(&w.lagging, &t2).await.unwrap();
    let now = w.lagging_clock.now();
    let live = w
        .store
        .list_subject(&subject("alice"))
        .await
        .unwrap()
        .iter()
        .filter(|r| r.is_live(now))
        .count();
    assert_eq!(live, 1, "INV-caps at the lagging caller's clock");
}

#[tokio::test]
async fn a_store_ahead_refuses_every_write_the_caller_clock_would_allow() {
    let policy = no_renewal();
    let w = Server::new(policy.clone(), Duration::ZERO);
    let s = &w.accurate;
    let (id, token) = create(s, "alice").await;
    let minted = s.mint_ticket(&token, &Context::none()).await.unwrap();
    let lease = s.acquire_slot(&id, None).await.unwrap();
    let ticket = TicketRecord {
        id: TicketId::from_bytes([9; 18]),
        session: id,
        verifier: Verifier([9; 32]),
        created_at: w.t0,
        expires_at: w.t0.saturating_add(secs(30)),
    };
    w.store.put_ticket(&ticket).await.unwrap();
    w.advance(secs(10)); // by the caller: everything live, no touch due
    let caller_now = w.accurate_clock.now();
    assert!(w.store.set_clock_offset(31 * 60_000)); // the store is 31 min ahead
    let rec = stored(&w.store, &id).await.unwrap();
    assert!(rec.is_live(caller_now));

    // Compare-and-swap of a touch the caller's clock allows: NotFound (expired by the store).
    let mut touched = rec.clone();
    decide::read::touch(&mut touched, caller_now, &policy);
    touched.version += 1;
    assert!(matches!(
        w.store
            .compare_and_swap(&touched, rec.version, caller_now)
            .await,
        Err(StoreError::NotFound)
    ));
    // take_ticket: Expired (and consumed).
    assert_eq!(
        w.store
            .take_ticket(&ticket.id, &ticket.verifier, caller_now)
            .await
            .unwrap(),
        TakeOutcome::Expired
    );
    assert_err!(
        s.redeem_ticket(minted.ticket.expose_secret()).await,
        Error::Expired
    );
    // acquire_slot / heartbeat: the session (and slot) are over by the store's clock.
    let slot = SlotRecord {
        id: SlotId::from_bytes([8; 18]),
        session: id,
        resource: None,
        acquired_at: caller_now,
        expires_at: caller_now.saturating_add(secs(60)),
    };
    assert_eq!(
        w.store
            .acquire_slot(&slot, &SlotCaps::default(), caller_now)
            .await
            .unwrap(),
        SlotOutcome::SessionNotLive
    );
    assert_err!(s.heartbeat_slot(&lease.id).await, Error::SlotLost);
    assert_eq!(
        stored(&w.store, &id).await.unwrap(),
        rec,
        "nothing written yet"
    );
    // validate: decided at the store time returned by load — Expired, though no write was due
    // by the caller's clock — and that ending is written down.
    let loaded = w.store.load_session(&id).await.unwrap();
    assert_eq!(loaded.store_time, Some(caller_now.saturating_add(mins(31))));
    assert_err!(validate(s, &token).await, Error::Expired);
    assert_eq!(
        reason_of(&stored(&w.store, &id).await.unwrap()),
        Some(RevokeReason::Expired)
    );
    // The store's clock corrected: still ended.
    assert!(w.store.set_clock_offset(0));
    never_valid_again(
        s,
        &w.accurate_clock,
        &id,
        &token,
        RevokeReason::Expired,
        &[caller_now],
    )
    .await;
}

#[tokio::test]
async fn acquire_slot_through_the_driver_on_a_store_ahead_answers_expired() {
    let w = Server::new(no_renewal(), Duration::ZERO);
    let (id, token) = create(&w.accurate, "alice").await;
    assert!(w.store.set_clock_offset(31 * 60_000));
    assert_err!(w.accurate.acquire_slot(&id, None).await, Error::Expired);
    assert_eq!(
        reason_of(&stored(&w.store, &id).await.unwrap()),
        Some(RevokeReason::Expired),
        "the ending was written before the caller was told"
    );
    assert!(w.store.set_clock_offset(0));
    assert_err!(validate(&w.accurate, &token).await, Error::Expired);
}

#[tokio::test]
async fn a_store_behind_does_not_stretch_what_the_caller_clock_ended() {
    let policy = no_renewal();
    let w = Server::new(policy.clone(), Duration::ZERO);
    let s = &w.accurate;
    let (id, token) = create(s, "alice").await;
    let minted = s.mint_ticket(&token, &Context::none()).await.unwrap();
    assert!(w.store.set_clock_offset(-10 * 60_000)); // the store 10 min behind
    w.advance(IDLE + mins(1)); // ended by the caller's clock; 9 min left by the store's
    let caller_now = w.accurate_clock.now();
    let rec = stored(&w.store, &id).await.unwrap();
    let mut touched = rec.clone();
    decide::read::touch(&mut touched, caller_now, &policy);
    touched.version += 1;
    assert!(matches!(
        w.store
            .compare_and_swap(&touched, rec.version, caller_now)
            .await,
        Err(StoreError::NotFound)
    ));
    let slot = SlotRecord {
        id: SlotId::from_bytes([8; 18]),
        session: id,
        resource: None,
        acquired_at: caller_now,
        expires_at: caller_now.saturating_add(secs(60)),
    };
    assert_eq!(
        w.store
            .acquire_slot(&slot, &SlotCaps::default(), caller_now)
            .await
            .unwrap(),
        SlotOutcome::SessionNotLive
    );
    assert_err!(
        s.redeem_ticket(minted.ticket.expose_secret()).await,
        Error::Expired
    );
    assert_err!(validate(s, &token).await, Error::Expired);
    never_valid_again(
        s,
        &w.accurate_clock,
        &id,
        &token,
        RevokeReason::Expired,
        &[caller_now],
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// A clock glitch: years ahead for a minute, then back
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_clock_glitch_ends_what_it_touched_and_nothing_else() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .slot_ttl(mins(5))
        .build()
        .unwrap();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let t0 = clock.now();
    let (a, ta) = create(&s, "alice").await;
    let (b, tb) = create(&s, "bob").await;
    let (c, tc) = create(&s, "carol").await;
    let lease = s.acquire_slot(&c, None).await.unwrap();
    clock.advance(mins(1));

    // The glitch: five years ahead for a minute.
    let years = Duration::from_secs(5 * 365 * 24 * 3600);
    clock.set(t0.saturating_add(years));
    assert_err!(validate(&s, &ta).await, Error::Expired); // touched during it: ended
    assert_eq!(
        s.trusted_by_id().revoke(&b).await.unwrap(),
        RevokeOutcome::Revoked
    ); // a logout during it
    let (g, tg) = create(&s, "gina").await; // created during it, deadlines years ahead
    validate(&s, &tg).await.unwrap();
    clock.advance(mins(1));

    // Back: what the glitch touched stays ended (fail closed); the rest recovers.
    clock.set(t0.saturating_add(mins(2)));
    never_valid_again(&s, &clock, &a, &ta, RevokeReason::Expired, &[clock.now()]).await;
    never_valid_again(&s, &clock, &b, &tb, RevokeReason::Revoked, &[clock.now()]).await;
    // Written by the glitched clock: not kept valid until a deadline years away. Ended on the
    // first read (the record's last write lies beyond the policy's future tolerance).
    assert_err!(validate(&s, &tg).await, Error::Expired);
    never_valid_again(&s, &clock, &g, &tg, RevokeReason::Expired, &[clock.now()]).await;
    let v = validate(&s, &tc).await.unwrap();
    assert_eq!(
        v.session.expires_at,
        t0.saturating_add(mins(2)).saturating_add(IDLE)
    );
    s.heartbeat_slot(&lease.id).await.unwrap();
    // No store-wide sticky time: new sessions live their normal life at the corrected clock.
    let (d, td) = create(&s, "dave").await;
    validate(&s, &td).await.unwrap();
    assert_eq!(
        stored(&store, &d).await.unwrap().expires_at,
        t0.saturating_add(mins(2)).saturating_add(IDLE)
    );
    clock.advance(IDLE - MS);
    validate(&s, &tc).await.unwrap();
    validate(&s, &td).await.unwrap();
}

// ---------------------------------------------------------------------------------------------
// check_swap: the compare-and-swap rules every adapter calls
// ---------------------------------------------------------------------------------------------

fn record_at(t0: Timestamp) -> SessionRecord {
    let (rec, _) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions {
            resource: Some(resource("box-1")),
            ..CreateOptions::default()
        },
        t0,
        &Policy::default(),
        &SeededEntropy::new(3),
    )
    .unwrap();
    rec
}

fn next(r: &SessionRecord) -> SessionRecord {
    let mut n = r.clone();
    n.version += 1;
    n.data = vec![1];
    n
}

const T0: Timestamp = Timestamp::from_millis(1_767_225_600_000);

#[test]
fn check_swap_refuses_to_create() {
    let rec = record_at(T0);
    assert!(matches!(
        check_swap(None, &next(&rec), rec.version, T0),
        Err(StoreError::NotFound)
    ));
    assert!(matches!(
        check_swap(
            None,
            &rec.tombstone(T0, RevokeReason::Revoked),
            rec.version,
            T0
        ),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn check_swap_a_tombstone_is_final_even_with_the_right_version() {
    let rec = record_at(T0);
    let dead = rec.tombstone(T0, RevokeReason::Expired);
    for expected in [dead.version, dead.version + 1, rec.version] {
        let revived = SessionRecord {
            state: SessionState::Active,
            ..next(&dead)
        };
        for new in [revived, dead.tombstone(T0, RevokeReason::Revoked)] {
            assert!(
                matches!(
                    check_swap(Some(&dead), &new, expected, T0),
                    Err(StoreError::NotFound)
                ),
                "nothing is written over a tombstone (expected version {expected})"
            );
        }
    }
}

#[test]
fn check_swap_a_stale_version_conflicts() {
    let rec = next(&record_at(T0));
    for expected in [rec.version - 1, rec.version + 1] {
        assert!(matches!(
            check_swap(Some(&rec), &next(&rec), expected, T0),
            Err(StoreError::Conflict)
        ));
        assert!(matches!(
            check_swap(
                Some(&rec),
                &rec.tombstone(T0, RevokeReason::Revoked),
                expected,
                T0
            ),
            Err(StoreError::Conflict)
        ));
    }
    assert!(check_swap(Some(&rec), &next(&rec), rec.version, T0).is_ok());
}

#[test]
fn check_swap_an_expired_record_takes_only_its_tombstone() {
    let rec = record_at(T0);
    let due = rec.expires_at;
    // One ms before the deadline a touch is accepted; at it and after, only a tombstone.
    assert!(check_swap(Some(&rec), &next(&rec), rec.version, due.saturating_sub(MS)).is_ok());
    for at in [due, due.saturating_add(mins(600))] {
        assert!(matches!(
            check_swap(Some(&rec), &next(&rec), rec.version, at),
            Err(StoreError::NotFound)
        ));
        for reason in [
            RevokeReason::Expired,
            RevokeReason::Revoked,
            RevokeReason::Subject,
        ] {
            assert!(check_swap(Some(&rec), &rec.tombstone(at, reason), rec.version, at).is_ok());
        }
    }
    // Due on the earlier of the two deadlines: an idle deadline past the absolute one gives
    // nothing more.
    let mut bent = rec.clone();
    bent.expires_at = rec.absolute_deadline.saturating_add(mins(1));
    let at = rec.absolute_deadline;
    assert!(bent.is_due(at) && !bent.is_live(at));
    assert!(!bent.is_due(at.saturating_sub(MS)));
    assert!(matches!(
        check_swap(Some(&bent), &next(&bent), bent.version, at),
        Err(StoreError::NotFound)
    ));
}

#[test]
fn check_swap_refuses_an_identity_change() {
    let rec = record_at(T0);
    let other = SessionRecord {
        id: SessionId::from_bytes([1; 18]),
        ..record_at(T0)
    };
    let changes: Vec<(&str, SessionRecord)> = vec![
        (
            "id",
            SessionRecord {
                id: other.id,
                ..next(&rec)
            },
        ),
        (
            "subject",
            SessionRecord {
                subject: subject("mallory"),
                ..next(&rec)
            },
        ),
        (
            "resource",
            SessionRecord {
                resource: Some(resource("box-2")),
                ..next(&rec)
            },
        ),
        (
            "resource removed",
            SessionRecord {
                resource: None,
                ..next(&rec)
            },
        ),
        (
            "created_at",
            SessionRecord {
                created_at: rec.created_at.saturating_add(MS),
                ..next(&rec)
            },
        ),
        (
            "absolute_deadline",
            SessionRecord {
                absolute_deadline: rec.absolute_deadline.saturating_add(mins(1)),
                ..next(&rec)
            },
        ),
    ];
    for (what, new) in changes {
        assert!(
            matches!(
                check_swap(Some(&rec), &new, rec.version, T0),
                Err(StoreError::InvalidWrite(_))
            ),
            "a swap changing {what} must be refused"
        );
        // A tombstone may not change identity either.
        let t = SessionRecord {
            state: SessionState::Revoked {
                at: T0,
                reason: RevokeReason::Revoked,
            },
            ..new
        };
        assert!(
            matches!(
                check_swap(Some(&rec), &t, rec.version, T0),
                Err(StoreError::InvalidWrite(_))
            ),
            "a tombstone changing {what} must be refused"
        );
    }
}

#[test]
fn check_swap_refuses_a_version_that_does_not_increase() {
    let rec = next(&next(&record_at(T0)));
    for v in [rec.version, rec.version - 1, 0] {
        let new = SessionRecord {
            version: v,
            ..next(&rec)
        };
        assert!(
            matches!(
                check_swap(Some(&rec), &new, rec.version, T0),
                Err(StoreError::InvalidWrite(_))
            ),
            "version {v} over {}",
            rec.version
        );
    }
    assert!(check_swap(Some(&rec), &next(&rec), rec.version, T0).is_ok());
}

#[tokio::test]
async fn memory_store_refuses_an_identity_change_and_keeps_its_indexes() {
    let store = MemoryStore::new();
    let rec = record_at(T0);
    store
        .insert_session(&rec, &CreateLimits::default(), T0)
        .await
        .unwrap();
    let moved = SessionRecord {
        subject: subject("mallory"),
        resource: None,
        ..next(&rec)
    };
    assert!(matches!(
        store.compare_and_swap(&moved, rec.version, T0).await,
        Err(StoreError::InvalidWrite(_))
    ));
    let same = rec.clone();
    assert!(matches!(
        store.compare_and_swap(&same, rec.version, T0).await,
        Err(StoreError::InvalidWrite(_))
    ));
    assert_eq!(stored(&store, &rec.id).await, Some(rec.clone()));
    assert_eq!(
        store.list_subject(&subject("alice")).await.unwrap(),
        vec![rec.clone()]
    );
    assert!(
        store
            .list_subject(&subject("mallory"))
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        store.revoke_resource(&resource("box-1"), T0).await.unwrap(),
        1
    );
}

// ---------------------------------------------------------------------------------------------
// The sealed successor is dropped once no window can use it
// ---------------------------------------------------------------------------------------------

/// The seal key as the engine derives it (DESIGN §8, `crypto.rs`): an offline attacker with a
/// store dump and an old token can compute it.
/// The sealing key as `crypto.rs` documents it, rebuilt here from the token alone.
fn seal_key(generation: u64, predecessor: &[u8; 32]) -> [u8; 32] {
    Sha256::new()
        .chain_update(b"lhK2")
        .chain_update(generation.to_le_bytes())
        .chain_update(predecessor)
        .finalize()
        .into()
}

fn session_verifier(id: &SessionId, secret: &[u8; 32]) -> Verifier {
    Verifier(
        Sha256::new()
            .chain_update(b"lhS2")
            .chain_update(id.as_bytes())
            .chain_update(secret)
            .finalize()
            .into(),
    )
}

fn secret_of(token: &str) -> [u8; 32] {
    let b = URL_SAFE_NO_PAD.decode(common::secret_part(token)).unwrap();
    b.try_into().unwrap()
}

/// The attack: from a raw dump and an old (predecessor) token, recover the current token of
/// `id`. Tries the sealed successor of every decodable record, and — in case the format hides it
/// — every 32-byte window of every dumped value.
fn recover_current(dump: &[Vec<u8>], id: &SessionId, old_token: &str) -> Option<String> {
    let old = secret_of(old_token);
    let rec = dump
        .iter()
        .filter_map(|v| codec::decode_session(v).ok())
        .find(|r| r.id == *id)?;
    let generation = rec.credential.generation;
    let key = seal_key(generation, &old);
    let mut candidates: Vec<[u8; 32]> = rec
        .credential
        .previous
        .iter()
        .filter_map(|p| p.sealed_successor.map(|s| s.0))
        .collect();
    for v in dump {
        candidates.extend(v.windows(32).map(|w| <[u8; 32]>::try_from(w).unwrap()));
    }
    candidates.into_iter().find_map(|sealed| {
        let mut secret = [0u8; 32];
        for (o, (k, s)) in secret.iter_mut().zip(key.iter().zip(sealed.iter())) {
            *o = k ^ s;
        }
        (session_verifier(id, &secret) == rec.credential.current).then(|| {
            format!(
                "{}_{}_{}",
                Policy::default().token_prefix(),
                id,
                URL_SAFE_NO_PAD.encode(secret)
            )
        })
    })
}

fn sealed_of(r: &SessionRecord) -> Option<leasehold::crypto::Sealed> {
    r.credential
        .previous
        .as_ref()
        .and_then(|p: &Predecessor| p.sealed_successor)
}

#[tokio::test]
async fn the_sealed_successor_is_dropped_by_the_first_write_after_its_windows_close() {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let (id, t0) = create(&s, "alice").await;
    clock.advance(mins(1));
    let rotated = clock.now();
    let t1 = refreshed(&s, &t0).await;

    // While a window is open, the seal is kept — and it is exactly what makes a dump plus the
    // old token worth the current token (the attack below is real).
    let dump = store.raw_dump().await.unwrap().unwrap();
    assert_eq!(recover_current(&dump, &id, &t0), Some(t1.clone()));

    // A write inside the grace window (the successor's first presentation) keeps it.
    clock.advance(secs(10));
    validate(&s, &t1).await.unwrap();
    let rec = stored(&store, &id).await.unwrap();
    assert!(rec.credential.previous.as_ref().unwrap().successor_seen);
    assert!(sealed_of(&rec).is_some(), "grace still open: kept");

    // Grace closed (and no orphan window: the successor was seen). No write, no change...
    clock.set(rotated.saturating_add(secs(30)));
    validate(&s, &t1).await.unwrap();
    assert!(sealed_of(&stored(&store, &id).await.unwrap()).is_some());
    // ...until the next write (a touch): it drops the sealed successor.
    clock.set(rotated.saturating_add(secs(10) + secs(60)));
    validate(&s, &t1).await.unwrap();
    let rec = stored(&store, &id).await.unwrap();
    assert_eq!(rec.last_seen, clock.now(), "this was a touch");
    let p = rec.credential.previous.as_ref().unwrap();
    assert_eq!(p.sealed_successor, None);
    assert_eq!(
        p.verifier,
        session_verifier(&id, &secret_of(&t0)),
        "t0 is still known"
    );

    // A dump plus the old token no longer opens the current token: the sealed bytes are gone.
    let dump = store.raw_dump().await.unwrap().unwrap();
    assert_eq!(recover_current(&dump, &id, &t0), None);
    let sealed_then = dump
        .iter()
        .filter_map(|v| codec::decode_session(v).ok())
        .find(|r| r.id == id)
        .unwrap();
    assert_eq!(sealed_of(&sealed_then), None);

    // A caller whose clock lags to inside the grace window still gets reuse: the windows
    // closed by the clock of the write that dropped the seal.
    let lagging_clock = ManualClock::new(rotated.saturating_add(secs(5)));
    let lagging = driver(store.clone(), &policy, &lagging_clock, 2);
    assert_err!(validate(&lagging, &t0).await, Error::ReuseDetected);
    assert_err!(
        validate(&s, &t1).await,
        Error::Revoked {
            reason: RevokeReason::ReuseDetected
        }
    );
}

#[tokio::test]
async fn an_orphaned_successor_keeps_its_seal_until_the_orphan_window_closes() {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let (id, t0) = create(&s, "alice").await;
    let rotated = clock.now();
    let t1 = refreshed(&s, &t0).await;
    // The predecessor answered by the orphan rule, with a touch: the seal is still needed.
    clock.set(rotated.saturating_add(mins(2)));
    let v = validate(&s, &t0).await.unwrap();
    assert_eq!(v.renewed.unwrap().expose_secret(), t1);
    assert!(sealed_of(&stored(&store, &id).await.unwrap()).is_some());
    // Past the orphan window the next write (the successor, at last) drops it.
    clock.set(rotated.saturating_add(mins(5)));
    validate(&s, &t1).await.unwrap();
    assert_eq!(sealed_of(&stored(&store, &id).await.unwrap()), None);
    assert_err!(validate(&s, &t0).await, Error::ReuseDetected);
}

// ---------------------------------------------------------------------------------------------
// A record claiming more than its absolute bound
// ---------------------------------------------------------------------------------------------

#[tokio::test]
async fn a_read_refuses_a_record_whose_idle_deadline_is_past_its_absolute_deadline() {
    let policy = no_renewal();
    let clock = ManualClock::default();
    let store = MemoryStore::new();
    let s = driver(store.clone(), &policy, &clock, 1);
    let (mut rec, token) = decide::create::new_session(
        &subject("alice"),
        &CreateOptions::default(),
        clock.now(),
        &policy,
        &SeededEntropy::new(4),
    )
    .unwrap();
    rec.expires_at = rec.absolute_deadline.saturating_add(MS);
    // Straight into the store (no engine write could produce it).
    store
        .insert_session(&rec, &CreateLimits::default(), clock.now())
        .await
        .unwrap();
    let t = token.expose_secret();
    for at in [
        clock.now(),
        clock.now().saturating_add(mins(10)),
        rec.absolute_deadline,
    ] {
        clock.set(at);
        assert_err!(validate(&s, t).await, Error::CorruptRecord(_));
        assert_err!(
            s.refresh(t, &Context::none()).await,
            Error::CorruptRecord(_)
        );
        assert_err!(
            s.mint_ticket(t, &Context::none()).await,
            Error::CorruptRecord(_)
        );
        assert_eq!(
            stored(&store, &rec.id).await,
            Some(rec.clone()),
            "nothing written"
        );
    }
    // Everything else decides on the earlier deadline: nothing lives past the absolute bound.
    assert!(!rec.is_live(rec.absolute_deadline));
    assert_err!(s.acquire_slot(&rec.id, None).await, Error::Expired);
    assert_eq!(
        reason_of(&stored(&store, &rec.id).await.unwrap()),
        Some(RevokeReason::Expired)
    );
}
