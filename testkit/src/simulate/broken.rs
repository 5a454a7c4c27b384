//! Deliberately broken stores: each breaks one clause of the store contract the way real
//! adapters get it wrong, so tests (and `leasehold check --simulate` self-tests) can show that
//! the simulation and the model catch it.

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{Resource, SessionId, SessionRecord, SlotId, Subject, TicketId, Timestamp};

/// Which clause of the contract a [`Broken`] store breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Flaw {
    /// `take_ticket` hands the ticket out but never deletes it (INV-one-shot).
    TicketsNeverTaken,
    /// `compare_and_swap` ignores the expected version: lost updates, a second successor
    /// (INV-single-successor).
    CasIgnoresVersion,
    /// `insert_session` ignores the subject cap (INV-caps).
    CapIgnored,
    /// `revoke_subject` leaves the subject's newest live session alone (INV-revoke-all).
    RevokeSubjectSkipsNewest,
    /// `reap` also removes live records.
    ReapRemovesLive,
}

impl Flaw {
    /// Every flaw.
    pub const ALL: [Flaw; 5] = [
        Flaw::TicketsNeverTaken,
        Flaw::CasIgnoresVersion,
        Flaw::CapIgnored,
        Flaw::RevokeSubjectSkipsNewest,
        Flaw::ReapRemovesLive,
    ];
}

/// A store wrapper with one [`Flaw`]. Cheap to clone if `S` is.
#[derive(Clone, Debug)]
pub struct Broken<S> {
    inner: S,
    flaw: Flaw,
}

impl<S> Broken<S> {
    /// Wraps `inner`, breaking `flaw`.
    pub fn new(inner: S, flaw: Flaw) -> Self {
        Broken { inner, flaw }
    }
}

#[async_trait]
impl<S: Store> Store for Broken<S> {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn load_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        self.inner.load_session(id).await
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let mut limits = *limits;
        if self.flaw == Flaw::CapIgnored {
            limits.subject_cap = None;
        }
        self.inner.insert_session(record, &limits, now).await
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let mut expected = expected_version;
        if self.flaw == Flaw::CasIgnoresVersion
            && let Some(current) = self.inner.load_session(&new.id).await?
        {
            expected = current.version;
        }
        self.inner.compare_and_swap(new, expected, now).await
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        if self.flaw != Flaw::RevokeSubjectSkipsNewest {
            return self.inner.revoke_subject(subject, now).await;
        }
        let mut live: Vec<SessionRecord> = self
            .inner
            .list_subject(subject)
            .await?
            .into_iter()
            .filter(|r| r.is_live(now))
            .collect();
        live.sort_by_key(|r| (r.created_at, r.id));
        live.pop();
        let mut n = 0;
        for r in live {
            let t = r.tombstone(now, leasehold::RevokeReason::Subject);
            if self
                .inner
                .compare_and_swap(&t, r.version, now)
                .await
                .is_ok()
            {
                n += 1;
            }
        }
        Ok(n)
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
        let out = self.inner.take_ticket(id, verifier, now).await?;
        if self.flaw == Flaw::TicketsNeverTaken
            && let TakeOutcome::Taken(t) = &out
        {
            self.inner.put_ticket(t).await?;
        }
        Ok(out)
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

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        let at = if self.flaw == Flaw::ReapRemovesLive {
            now.saturating_add(std::time::Duration::from_secs(3600))
        } else {
            now
        };
        self.inner.reap(at, limit).await
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.raw_dump().await
    }
}
