//! The store each simulated node talks to: a scheduling point before every call, seeded fault
//! injection (through [`FaultyStore`]), and invariant probes right after the calls that must
//! establish one (caps after an insert or a slot acquisition, revoke-all after a group
//! revocation) — taken on the fault-free store, before any other call can interleave.

use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{Resource, SessionId, SessionRecord, SlotId, Subject, TicketId, Timestamp};

use super::sched::{Gate, Note, SplitMix};
use crate::faults::{Fault, FaultyStore, Op};
use crate::model::{Checker, decode_dump};

/// One node's view of the shared store.
#[derive(Clone)]
pub(crate) struct SimStore<S> {
    faulty: FaultyStore<S>,
    inner: S,
    gate: Arc<Gate>,
    rng: Arc<Mutex<SplitMix>>,
    per_mille: Arc<AtomicU32>,
    subjects: Arc<Vec<Subject>>,
    checker: Arc<Checker>,
}

impl<S: Store + Clone> SimStore<S> {
    pub(crate) fn new(
        inner: S,
        gate: Arc<Gate>,
        rng: SplitMix,
        per_mille: Arc<AtomicU32>,
        subjects: Arc<Vec<Subject>>,
        checker: Arc<Checker>,
    ) -> Self {
        SimStore {
            faulty: FaultyStore::new(inner.clone()),
            inner,
            gate,
            rng: Arc::new(Mutex::new(rng)),
            per_mille,
            subjects,
            checker,
        }
    }

    /// A scheduling point, then perhaps a fault for the coming call of `op`.
    async fn enter(&self, op: Op) -> Option<Fault> {
        self.gate.pause().await;
        let per_mille = self.per_mille.load(Ordering::SeqCst);
        if per_mille == 0 {
            return None;
        }
        let fault = {
            let mut rng = match self.rng.lock() {
                Ok(g) => g,
                Err(p) => p.into_inner(),
            };
            if rng.chance(per_mille) {
                Some(Fault::ALL[rng.below(Fault::ALL.len() as u64) as usize])
            } else {
                None
            }
        };
        if let Some(f) = fault {
            self.faulty.inject_next(op, f);
            self.gate.note(Note::Fault {
                op: self.gate.current(),
                call: op,
                fault: f,
            });
        }
        fault
    }

    fn breach(&self, rule: &'static str, detail: String) {
        self.gate.note(Note::Breach {
            op: self.gate.current(),
            rule,
            detail,
        });
    }

    async fn all_records(&self) -> Result<Vec<SessionRecord>, StoreError> {
        let mut all = Vec::new();
        for s in self.subjects.iter() {
            all.extend(self.inner.list_subject(s).await?);
        }
        all.sort_by_key(|r| r.id);
        Ok(all)
    }

    /// INV-caps right after an insert that inserted: the store counted, evicted and inserted
    /// in one atomic step, so the caps hold (the subject cap at every clock, the global cap at
    /// the inserting caller's).
    async fn probe_session_caps(&self, record: &SessionRecord, now: Timestamp) {
        match self.inner.load_session(&record.id).await.map(|l| l.record) {
            Ok(Some(_)) => {}
            Ok(None) => return,
            Err(e) => return self.breach("store error", format!("probe load: {e}")),
        }
        match self.all_records().await {
            Ok(all) => {
                if let Err(v) = self.checker.session_caps(&all, Some(now)) {
                    self.breach("INV-caps", format!("right after an insert: {}", v.detail));
                }
            }
            Err(e) => self.breach("store error", format!("probe list_subject: {e}")),
        }
    }

    /// INV-caps right after a slot acquisition that acquired: at the acquiring caller's clock,
    /// the slot's session and resource are within their caps. (At that clock only: on a store
    /// without a clock, slot leases self-expire by each caller's clock.)
    async fn probe_slot_caps(&self, slot: &SlotRecord, now: Timestamp) {
        let Ok(Some(dump)) = self.inner.raw_dump().await else {
            return;
        };
        let (sessions, _, slots) = decode_dump(&dump);
        if !slots.iter().any(|s| s.id == slot.id) {
            return;
        }
        let only = (slot.session, slot.resource.as_ref());
        if let Err(v) = self.checker.slot_caps(&sessions, &slots, Some(only), now) {
            self.breach(
                "INV-caps",
                format!("right after a slot acquisition at {now}: {}", v.detail),
            );
        }
    }

    /// INV-revoke-all right after a group revocation that was applied.
    async fn probe_revoked(&self, subject: Option<&Subject>, resource: Option<&Resource>) {
        match self.all_records().await {
            Ok(all) => {
                if let Err(v) = self.checker.revoked_all(&all, subject, resource) {
                    self.breach("INV-revoke-all", v.detail);
                }
            }
            Err(e) => self.breach("store error", format!("probe list_subject: {e}")),
        }
    }
}

fn applied(fault: Option<Fault>) -> bool {
    fault.is_none_or(Fault::applies)
}

#[async_trait]
impl<S: Store + Clone> Store for SimStore<S> {
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
        self.enter(Op::Load).await;
        self.faulty.load_session(id).await
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.enter(Op::Insert).await;
        let r = self.faulty.insert_session(record, limits, now).await;
        self.probe_session_caps(record, now).await;
        r
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        self.enter(Op::Cas).await;
        self.faulty
            .compare_and_swap(new, expected_version, now)
            .await
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        let f = self.enter(Op::RevokeSubject).await;
        let r = self.faulty.revoke_subject(subject, now).await;
        if applied(f) {
            self.probe_revoked(Some(subject), None).await;
        }
        r
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let f = self.enter(Op::RevokeResource).await;
        let r = self.faulty.revoke_resource(resource, now).await;
        if applied(f) {
            self.probe_revoked(None, Some(resource)).await;
        }
        r
    }

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
        self.enter(Op::List).await;
        self.faulty.list_subject(subject).await
    }

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.enter(Op::PutTicket).await;
        self.faulty.put_ticket(ticket).await
    }

    async fn take_ticket(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.enter(Op::TakeTicket).await;
        self.faulty.take_ticket(id, verifier, now).await
    }

    async fn acquire_slot(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        self.enter(Op::AcquireSlot).await;
        let r = self.faulty.acquire_slot(slot, caps, now).await;
        self.probe_slot_caps(slot, now).await;
        r
    }

    async fn heartbeat_slot(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.enter(Op::HeartbeatSlot).await;
        self.faulty.heartbeat_slot(id, expires_at, now).await
    }

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.enter(Op::ReleaseSlot).await;
        self.faulty.release_slot(id).await
    }

    async fn list_sessions(
        &self,
        scope: &leasehold::Scope,
        after: Option<&leasehold::SessionId>,
        limit: usize,
    ) -> Result<leasehold::Page, StoreError> {
        self.enter(Op::ListSessions).await;
        self.faulty.list_sessions(scope, after, limit).await
    }
    async fn count_live(
        &self,
        scope: &leasehold::Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.enter(Op::CountLive).await;
        self.faulty.count_live(scope, now).await
    }
    async fn check_limits(
        &self,
        subject: &leasehold::Subject,
        limits: &leasehold::store::CreateLimits,
        now: Timestamp,
    ) -> Result<leasehold::store::InsertOutcome, StoreError> {
        self.enter(Op::CheckLimits).await;
        self.faulty.check_limits(subject, limits, now).await
    }
    async fn forget_creation(
        &self,
        subject: &leasehold::Subject,
        id: &leasehold::SessionId,
    ) -> Result<bool, StoreError> {
        self.enter(Op::ForgetCreation).await;
        self.faulty.forget_creation(subject, id).await
    }
    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        self.enter(Op::Reap).await;
        self.faulty.reap(now, limit).await
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
