//! Deliberately broken stores: [`MemoryStore`] with one planted contract violation each.
//!
//! They exist to prove that the suite catches real adapter bugs (the suite's own tests run it
//! against each one and assert which cases fail), and back the `leasehold check` command's
//! hidden `broken-memory:<bug>` scheme. Never use them for anything else.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{
    MemoryStore, Resource, SessionId, SessionRecord, SessionState, SlotId, Subject, TicketId,
    Timestamp,
};

/// The planted bug.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Bug {
    /// `take_ticket` returns the ticket but never deletes it (INV-one-shot).
    TicketNeverDeleted,
    /// `compare_and_swap` ignores the expected version (lost updates, stale writes).
    CasIgnoresVersion,
    /// `compare_and_swap` writes to records past their deadline (resurrection).
    CasIgnoresExpiry,
    /// `compare_and_swap` answers `Ok` without writing (acknowledged writes lost).
    CasDropsWrites,
    /// `load_session` returns tombstones as active sessions (resurrection).
    LoadResurrects,
    /// The subject cap is counted, then the insert happens in a second step (the classic
    /// count-then-insert race every peer has).
    CapCountThenInsert,
    /// `revoke_subject` skips sessions that carry a resource tag.
    RevokeSubjectSkipsTagged,
    /// `reap` removes records regardless of their deadline.
    ReapRemovesLive,
    /// `reap` ignores its batch limit.
    ReapIgnoresLimit,
    /// `raw_dump` returns nothing although the store declares `raw_dump`.
    EmptyDump,
}

impl Bug {
    /// Every planted bug.
    pub const ALL: [Bug; 10] = [
        Bug::TicketNeverDeleted,
        Bug::CasIgnoresVersion,
        Bug::CasIgnoresExpiry,
        Bug::CasDropsWrites,
        Bug::LoadResurrects,
        Bug::CapCountThenInsert,
        Bug::RevokeSubjectSkipsTagged,
        Bug::ReapRemovesLive,
        Bug::ReapIgnoresLimit,
        Bug::EmptyDump,
    ];

    /// A kebab-case name (used by `broken-memory:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Bug::TicketNeverDeleted => "ticket-never-deleted",
            Bug::CasIgnoresVersion => "cas-ignores-version",
            Bug::CasIgnoresExpiry => "cas-ignores-expiry",
            Bug::CasDropsWrites => "cas-drops-writes",
            Bug::LoadResurrects => "load-resurrects",
            Bug::CapCountThenInsert => "cap-count-then-insert",
            Bug::RevokeSubjectSkipsTagged => "revoke-subject-skips-tagged",
            Bug::ReapRemovesLive => "reap-removes-live",
            Bug::ReapIgnoresLimit => "reap-ignores-limit",
            Bug::EmptyDump => "empty-dump",
        }
    }

    /// The bug named `name` (see [`Bug::name`]).
    pub fn from_name(name: &str) -> Option<Bug> {
        Bug::ALL.into_iter().find(|b| b.name() == name)
    }
}

impl fmt::Display for Bug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A [`MemoryStore`] with one planted [`Bug`].
#[derive(Clone, Debug)]
pub struct BrokenStore {
    inner: MemoryStore,
    bug: Bug,
}

impl BrokenStore {
    /// An empty memory store with `bug`.
    pub fn new(bug: Bug) -> Self {
        BrokenStore {
            inner: MemoryStore::new(),
            bug,
        }
    }

    /// The planted bug.
    pub fn bug(&self) -> Bug {
        self.bug
    }
}

/// Far enough in the future that every record is past its deadline.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

#[async_trait]
impl Store for BrokenStore {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
    }

    async fn load_session(&self, id: &SessionId) -> Result<Option<SessionRecord>, StoreError> {
        let r = self.inner.load_session(id).await?;
        if self.bug == Bug::LoadResurrects {
            return Ok(r.map(|mut r| {
                r.state = SessionState::Active;
                r
            }));
        }
        Ok(r)
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        if self.bug == Bug::CapCountThenInsert
            && let Some(cap) = limits.subject_cap
        {
            let live = self
                .inner
                .list_subject(&record.subject)
                .await?
                .iter()
                .filter(|r| r.is_live(now))
                .count();
            if live >= cap.max as usize {
                return Ok(InsertOutcome::SubjectCapReached);
            }
            tokio::task::yield_now().await; // another request runs between count and insert
            let unchecked = CreateLimits {
                subject_cap: None,
                ..*limits
            };
            return self.inner.insert_session(record, &unchecked, now).await;
        }
        self.inner.insert_session(record, limits, now).await
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self.bug {
            Bug::CasIgnoresVersion => {
                let current = self
                    .inner
                    .load_session(&new.id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                self.inner.compare_and_swap(new, current.version, now).await
            }
            Bug::CasIgnoresExpiry => {
                self.inner
                    .compare_and_swap(new, expected_version, Timestamp::EPOCH)
                    .await
            }
            Bug::CasDropsWrites => {
                let current = self
                    .inner
                    .load_session(&new.id)
                    .await?
                    .ok_or(StoreError::NotFound)?;
                if current.version != expected_version {
                    return Err(StoreError::Conflict);
                }
                Ok(())
            }
            _ => {
                self.inner
                    .compare_and_swap(new, expected_version, now)
                    .await
            }
        }
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        if self.bug == Bug::RevokeSubjectSkipsTagged {
            let mut n = 0;
            for r in self.inner.list_subject(subject).await? {
                if r.resource.is_none() && r.is_live(now) {
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
            }
            return Ok(n);
        }
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
        let out = self.inner.take_ticket(id, verifier, now).await?;
        if self.bug == Bug::TicketNeverDeleted
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
        match self.bug {
            Bug::ReapRemovesLive => self.inner.reap(now.saturating_add(FAR), limit).await,
            Bug::ReapIgnoresLimit => self.inner.reap(now, usize::MAX).await,
            _ => self.inner.reap(now, limit).await,
        }
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        if self.bug == Bug::EmptyDump {
            return Ok(Some(Vec::new()));
        }
        self.inner.raw_dump().await
    }
}
