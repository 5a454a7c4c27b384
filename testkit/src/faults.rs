//! `FaultyStore`: wraps any store and injects failures where a real network and server would.
//!
//! Faults model what can happen to one call:
//! - [`Fault::ErrorBefore`] / [`Fault::Timeout`]: the call never reached the store (nothing
//!   applied), and the caller gets an error;
//! - [`Fault::LostReply`] / [`Fault::TimeoutAfter`]: the call *was applied*, but the reply is
//!   lost (the caller gets an error and does not know the write happened);
//! - [`Fault::Corrupt`] (loads only): the stored bytes come back damaged.
//!
//! Faults are queued per operation ([`FaultyStore::inject_next`]), set for every call
//! ([`FaultyStore::inject_always`]) or drawn from a seed ([`FaultyStore::random`]), so a failing
//! run replays exactly.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use leasehold::codec;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{Resource, SessionId, SessionRecord, SlotId, Subject, TicketId, Timestamp};

/// A store operation, for targeting faults.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Op {
    /// `load_session`
    Load,
    /// `insert_session`
    Insert,
    /// `compare_and_swap`
    Cas,
    /// `revoke_subject`
    RevokeSubject,
    /// `revoke_resource`
    RevokeResource,
    /// `list_subject`
    List,
    /// `put_ticket`
    PutTicket,
    /// `take_ticket`
    TakeTicket,
    /// `acquire_slot`
    AcquireSlot,
    /// `heartbeat_slot`
    HeartbeatSlot,
    /// `release_slot`
    ReleaseSlot,
    /// `reap`
    Reap,
    /// `list_sessions`
    ListSessions,
    /// `count_live`
    CountLive,
    /// `check_limits`
    CheckLimits,
    /// `forget_creation`
    ForgetCreation,
}

impl Op {
    /// Every operation.
    pub const ALL: [Op; 16] = [
        Op::Load,
        Op::Insert,
        Op::Cas,
        Op::RevokeSubject,
        Op::RevokeResource,
        Op::List,
        Op::PutTicket,
        Op::TakeTicket,
        Op::AcquireSlot,
        Op::HeartbeatSlot,
        Op::ReleaseSlot,
        Op::Reap,
        Op::ListSessions,
        Op::CountLive,
        Op::CheckLimits,
        Op::ForgetCreation,
    ];
}

/// What goes wrong with one call.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The call fails before reaching the store: nothing is applied.
    ErrorBefore,
    /// The call times out before reaching the store: nothing is applied.
    Timeout,
    /// The call is applied, then its reply is lost (`StoreError::Unavailable`).
    LostReply,
    /// The call is applied, then times out (`StoreError::Timeout`).
    TimeoutAfter,
    /// A load returns damaged bytes (`StoreError::Corrupt`). Only meaningful for [`Op::Load`]; on
    /// other operations it acts as `ErrorBefore`.
    Corrupt,
}

impl Fault {
    /// Every fault.
    pub const ALL: [Fault; 5] = [
        Fault::ErrorBefore,
        Fault::Timeout,
        Fault::LostReply,
        Fault::TimeoutAfter,
        Fault::Corrupt,
    ];

    /// True if the wrapped call is applied before the error is returned.
    pub fn applies(self) -> bool {
        matches!(self, Fault::LostReply | Fault::TimeoutAfter)
    }
}

#[derive(Default)]
struct Plan {
    queued: HashMap<Op, VecDeque<Fault>>,
    always: HashMap<Op, Fault>,
    random: Option<(u64, u32)>,
    injected: Vec<(Op, Fault)>,
}

impl Plan {
    fn next(&mut self, op: Op) -> Option<Fault> {
        let fault = if let Some(f) = self.queued.get_mut(&op).and_then(VecDeque::pop_front) {
            Some(f)
        } else if let Some(f) = self.always.get(&op) {
            Some(*f)
        } else if let Some((state, per_mille)) = self.random.as_mut() {
            let roll = splitmix(state);
            if (roll % 1000) < u64::from(*per_mille) {
                let pick = (roll >> 32) as usize % Fault::ALL.len();
                Some(Fault::ALL[pick])
            } else {
                None
            }
        } else {
            None
        };
        if let Some(f) = fault {
            self.injected.push((op, f));
        }
        fault
    }
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// A store wrapper that injects faults. Clones share the plan and the inner store.
#[derive(Clone)]
pub struct FaultyStore<S> {
    inner: S,
    plan: Arc<Mutex<Plan>>,
}

impl<S> FaultyStore<S> {
    /// Wraps `inner`; no faults until told.
    pub fn new(inner: S) -> Self {
        FaultyStore {
            inner,
            plan: Arc::new(Mutex::new(Plan::default())),
        }
    }

    fn with_plan<T>(&self, f: impl FnOnce(&mut Plan) -> T) -> T {
        let mut guard = match self.plan.lock() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        f(&mut guard)
    }

    /// The next call of `op` gets `fault` (faults queue up in order).
    pub fn inject_next(&self, op: Op, fault: Fault) {
        self.with_plan(|p| p.queued.entry(op).or_default().push_back(fault));
    }

    /// Every call of `op` gets `fault` until [`clear`](Self::clear).
    pub fn inject_always(&self, op: Op, fault: Fault) {
        self.with_plan(|p| {
            p.always.insert(op, fault);
        });
    }

    /// Each call of any operation fails with probability `per_mille`/1000, with a fault drawn
    /// from `seed`: the same seed and call sequence give the same faults.
    pub fn random(&self, seed: u64, per_mille: u32) {
        self.with_plan(|p| p.random = Some((seed, per_mille.min(1000))));
    }

    /// Removes every planned fault.
    pub fn clear(&self) {
        self.with_plan(|p| {
            p.queued.clear();
            p.always.clear();
            p.random = None;
        });
    }

    /// Every fault injected so far, in order.
    pub fn injected(&self) -> Vec<(Op, Fault)> {
        self.with_plan(|p| p.injected.clone())
    }

    /// The wrapped store (no faults).
    pub fn inner(&self) -> &S {
        &self.inner
    }

    fn fault(&self, op: Op) -> Option<Fault> {
        self.with_plan(|p| p.next(op))
    }
}

fn error_of(f: Fault) -> StoreError {
    match f {
        Fault::Timeout | Fault::TimeoutAfter => StoreError::Timeout,
        Fault::ErrorBefore | Fault::Corrupt => StoreError::Unavailable("injected fault".into()),
        Fault::LostReply => StoreError::Unavailable("injected fault: reply lost".into()),
    }
}

/// Runs `call` under the fault planned for `op`.
macro_rules! faulty {
    ($self:ident, $op:expr, $call:expr) => {{
        match $self.fault($op) {
            None => $call.await,
            Some(f) if f.applies() => {
                let _applied = $call.await;
                Err(error_of(f))
            }
            Some(f) => Err(error_of(f)),
        }
    }};
}

#[async_trait]
impl<S: Store> Store for FaultyStore<S> {
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
        match self.fault(Op::Load) {
            None => self.inner.load_session(id).await,
            Some(Fault::Corrupt) => {
                // Damage real bytes and decode them, as a store reading a torn page would.
                let loaded = self.inner.load_session(id).await?;
                let mut bytes = loaded
                    .record
                    .as_deref()
                    .map(codec::encode_session)
                    .unwrap_or_default();
                let half = bytes.len() / 2;
                bytes.truncate(half);
                match codec::decode_session(&bytes) {
                    Ok(r) => Ok(Loaded {
                        record: Some(Box::new(r)),
                        ..loaded
                    }),
                    Err(e) => Err(StoreError::Corrupt(e.to_string())),
                }
            }
            Some(f) => Err(error_of(f)),
        }
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        faulty!(
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
        faulty!(
            self,
            Op::Cas,
            self.inner.compare_and_swap(new, expected_version, now)
        )
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        faulty!(
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
        faulty!(
            self,
            Op::RevokeResource,
            self.inner.revoke_resource(resource, now)
        )
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        faulty!(self, Op::List, self.inner.list_subject(subject))
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        faulty!(self, Op::PutTicket, self.inner.put_ticket(ticket))
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        faulty!(
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
        faulty!(
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
        faulty!(
            self,
            Op::HeartbeatSlot,
            self.inner.heartbeat_slot(id, expires_at, now)
        )
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        faulty!(self, Op::ReleaseSlot, self.inner.release_slot(id))
    }

    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        faulty!(
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
        faulty!(self, Op::CountLive, self.inner.count_live(scope, now))
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        faulty!(
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
        faulty!(
            self,
            Op::ForgetCreation,
            self.inner.forget_creation(subject, id)
        )
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        faulty!(self, Op::Reap, self.inner.reap(now, limit))
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use leasehold::{Context, CreateOptions, Error, MemoryStore, Policy, Sessions};

    use futures::executor::block_on;

    #[test]
    fn lost_reply_applies_the_write_and_errors() {
        block_on(async {
            let store = FaultyStore::new(MemoryStore::new());
            let s = Sessions::new(store.clone(), Policy::default())
                .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"));
            let alice = Subject::new("alice").unwrap();
            store.inject_next(Op::Insert, Fault::LostReply);
            let err = s
                .create(&alice, CreateOptions::default())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::StoreUnavailable(_)), "{err:?}");
            assert_eq!(store.inner().session_count(), 1, "the write was applied");
            store.inject_next(Op::Insert, Fault::ErrorBefore);
            assert!(s.create(&alice, CreateOptions::default()).await.is_err());
            assert_eq!(store.inner().session_count(), 1, "nothing applied");
            assert_eq!(
                store.injected(),
                vec![
                    (Op::Insert, Fault::LostReply),
                    (Op::Insert, Fault::ErrorBefore)
                ]
            );
        });
    }

    #[test]
    fn corrupt_load_fails_closed() {
        block_on(async {
            let store = FaultyStore::new(MemoryStore::new());
            let s = Sessions::new(store.clone(), Policy::default())
                .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"));
            let c = s
                .create(&Subject::new("a").unwrap(), CreateOptions::default())
                .await
                .unwrap();
            store.inject_always(Op::Load, Fault::Corrupt);
            let err = s
                .validate(c.token.expose_secret(), &Context::none())
                .await
                .unwrap_err();
            assert!(matches!(err, Error::CorruptRecord(_)), "{err:?}");
            store.clear();
            assert!(
                s.validate(c.token.expose_secret(), &Context::none())
                    .await
                    .is_ok()
            );
        });
    }

    #[test]
    fn enumeration_and_give_back_calls_take_faults_too() {
        use leasehold::Rate;
        use leasehold::Scope;
        use std::time::Duration;
        block_on(async {
            let store = FaultyStore::new(MemoryStore::new());
            let p = Policy::builder()
                .creation_rate(Some(Rate {
                    max: 1,
                    window: Duration::from_secs(600),
                }))
                .build()
                .unwrap();
            let s = Sessions::new(store.clone(), p).unwrap();
            let alice = Subject::new("alice").unwrap();
            store.inject_next(Op::CheckLimits, Fault::Timeout);
            assert_eq!(
                s.check_create(&alice).await,
                Err(Error::StoreUnavailable(StoreError::Timeout))
            );
            let c = s.create(&alice, CreateOptions::default()).await.unwrap();
            store.inject_next(Op::CountLive, Fault::ErrorBefore);
            assert!(s.count(&Scope::All).await.is_err());
            assert_eq!(s.count(&Scope::All).await, Ok(1));
            store.inject_next(Op::ListSessions, Fault::ErrorBefore);
            assert!(s.list_page(&Scope::All, None, 10).await.is_err());
            // The give back's revocation commits; its lost reply still gave the creation back.
            store.inject_next(Op::ForgetCreation, Fault::LostReply);
            assert!(s.trusted_by_id().give_back(&c.session.id).await.is_err());
            assert_eq!(s.check_create(&alice).await, Ok(()));
            assert_eq!(
                store
                    .injected()
                    .iter()
                    .map(|(op, _)| *op)
                    .collect::<Vec<_>>(),
                vec![
                    Op::CheckLimits,
                    Op::CountLive,
                    Op::ListSessions,
                    Op::ForgetCreation
                ]
            );
        });
    }

    #[test]
    fn random_faults_replay_from_the_seed() {
        let run = |seed| {
            let store = FaultyStore::new(MemoryStore::new());
            store.random(seed, 300);
            for _ in 0..200 {
                store.fault(Op::Load);
            }
            store.injected()
        };
        assert_eq!(run(5), run(5));
        assert_ne!(run(5), run(6));
        assert!(!run(5).is_empty());
    }
}
