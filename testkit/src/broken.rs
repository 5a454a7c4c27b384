//! Deliberately broken stores: any [`Store`] with one planted contract violation, the way real
//! adapters get it wrong.
//!
//! They exist to prove that the checks catch real adapter bugs: the conformance suite's own
//! tests, the model-based tests, the fuzz-corpus runner and the simulation each run against
//! them and assert the flaw is found; `leasehold check --store broken-memory:<flaw>` (hidden)
//! uses them over [`MemoryStore`](leasehold::MemoryStore). Never use them for anything else.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertOutcome, Loaded, ReapOutcome, SlotCaps,
    SlotOutcome, Store, StoreError, TakeOutcome,
};
use leasehold::{
    Resource, RevokeReason, SessionId, SessionRecord, SessionState, SlotId, Subject, TicketId,
    Timestamp,
};

/// The clause of the store contract a [`Broken`] store breaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum Flaw {
    /// `take_ticket` hands the ticket out but never deletes it (INV-one-shot).
    TicketNeverDeleted,
    /// `compare_and_swap` ignores the expected version: lost updates, stale writes, a second
    /// successor (INV-single-successor).
    CasIgnoresVersion,
    /// `compare_and_swap` writes to records past their deadline (resurrection).
    CasIgnoresExpiry,
    /// `compare_and_swap` answers `Ok` without writing (acknowledged writes lost).
    CasDropsWrites,
    /// `load_session` returns tombstones as active sessions (resurrection).
    LoadResurrects,
    /// The subject cap is counted, then the insert happens in a second step (the classic
    /// count-then-insert race every peer has: only concurrency shows it).
    CapCountThenInsert,
    /// `insert_session` ignores the subject cap (INV-caps, even without concurrency).
    CapIgnored,
    /// `revoke_subject` skips sessions that carry a resource tag (INV-revoke-all).
    RevokeSubjectSkipsTagged,
    /// `reap` removes records regardless of their deadline.
    ReapRemovesLive,
    /// `reap` ignores its batch limit.
    ReapIgnoresLimit,
    /// `raw_dump` returns nothing although the store declares `raw_dump`.
    EmptyDump,
    /// The clock rule before INV-store-time: an ending is written down only while the record
    /// is live by the writer's clock. A tombstone over a record already past its deadline at
    /// the caller's `now` is acknowledged but not written (so `revoke` and the first read that
    /// sees an expiry leave it active), `revoke_subject` / `revoke_resource` skip such records,
    /// and every swap is judged at the writer's clock alone — so a caller whose clock lags
    /// touches back to life what another was told had ended.
    OldClockRule,
}

impl Flaw {
    /// Every flaw.
    pub const ALL: [Flaw; 12] = [
        Flaw::TicketNeverDeleted,
        Flaw::CasIgnoresVersion,
        Flaw::CasIgnoresExpiry,
        Flaw::CasDropsWrites,
        Flaw::LoadResurrects,
        Flaw::CapCountThenInsert,
        Flaw::CapIgnored,
        Flaw::RevokeSubjectSkipsTagged,
        Flaw::ReapRemovesLive,
        Flaw::ReapIgnoresLimit,
        Flaw::EmptyDump,
        Flaw::OldClockRule,
    ];

    /// A kebab-case name (used by `broken-memory:<name>`).
    pub fn name(self) -> &'static str {
        match self {
            Flaw::TicketNeverDeleted => "ticket-never-deleted",
            Flaw::CasIgnoresVersion => "cas-ignores-version",
            Flaw::CasIgnoresExpiry => "cas-ignores-expiry",
            Flaw::CasDropsWrites => "cas-drops-writes",
            Flaw::LoadResurrects => "load-resurrects",
            Flaw::CapCountThenInsert => "cap-count-then-insert",
            Flaw::CapIgnored => "cap-ignored",
            Flaw::RevokeSubjectSkipsTagged => "revoke-subject-skips-tagged",
            Flaw::ReapRemovesLive => "reap-removes-live",
            Flaw::ReapIgnoresLimit => "reap-ignores-limit",
            Flaw::EmptyDump => "empty-dump",
            Flaw::OldClockRule => "old-clock-rule",
        }
    }

    /// The flaw named `name` (see [`Flaw::name`]).
    pub fn from_name(name: &str) -> Option<Flaw> {
        Flaw::ALL.into_iter().find(|f| f.name() == name)
    }
}

impl fmt::Display for Flaw {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A store wrapper with one planted [`Flaw`]. Cheap to clone if `S` is (clones share data when
/// `S`'s clones do).
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

    /// The planted flaw.
    pub fn flaw(&self) -> Flaw {
        self.flaw
    }
}

/// Far enough in the future that every record is past its deadline.
const FAR: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

/// Gives other tasks a turn, on any executor: pending once, waking itself at once.
struct YieldNow(bool);

impl Future for YieldNow {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if self.0 {
            return Poll::Ready(());
        }
        self.0 = true;
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl<S: Store> Broken<S> {
    /// The old group revocation: only the members live at the caller's `now` get a tombstone.
    async fn revoke_live(
        &self,
        members: Vec<SessionRecord>,
        now: Timestamp,
        reason: RevokeReason,
    ) -> Result<u64, StoreError> {
        let mut n = 0;
        for r in members.into_iter().filter(|r| r.is_live(now)) {
            let t = r.tombstone(now, reason);
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
}

#[async_trait]
impl<S: Store> Store for Broken<S> {
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
        let mut loaded = self.inner.load_session(id).await?;
        if self.flaw == Flaw::LoadResurrects
            && let Some(r) = loaded.record.as_mut()
        {
            r.state = SessionState::Active;
        }
        Ok(loaded)
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let Some(cap) = limits.subject_cap else {
            return self.inner.insert_session(record, limits, now).await;
        };
        let unchecked = CreateLimits {
            subject_cap: None,
            ..*limits
        };
        match self.flaw {
            Flaw::CapIgnored => self.inner.insert_session(record, &unchecked, now).await,
            Flaw::CapCountThenInsert => {
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
                YieldNow(false).await; // another request runs between count and insert
                self.inner.insert_session(record, &unchecked, now).await
            }
            _ => self.inner.insert_session(record, limits, now).await,
        }
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        match self.flaw {
            Flaw::CasIgnoresVersion => {
                // Last write wins: swap over whatever is stored, past its version.
                let Some(current) = self.inner.load_session(&new.id).await?.record else {
                    return Err(StoreError::NotFound);
                };
                let mut new = new.clone();
                new.version = new.version.max(current.version.wrapping_add(1));
                self.inner
                    .compare_and_swap(&new, current.version, now)
                    .await
            }
            Flaw::CasIgnoresExpiry => {
                self.inner
                    .compare_and_swap(new, expected_version, Timestamp::EPOCH)
                    .await
            }
            Flaw::CasDropsWrites => match self.inner.load_session(&new.id).await?.record {
                Some(c) if c.version == expected_version => Ok(()),
                Some(_) => Err(StoreError::Conflict),
                None => Err(StoreError::NotFound),
            },
            Flaw::OldClockRule if new.is_tombstone() => {
                match self.inner.load_session(&new.id).await?.record {
                    // "An expired session needs no tombstone": acknowledged, not written.
                    Some(c)
                        if c.version == expected_version && !c.is_tombstone() && c.is_due(now) =>
                    {
                        Ok(())
                    }
                    _ => {
                        self.inner
                            .compare_and_swap(new, expected_version, now)
                            .await
                    }
                }
            }
            _ => {
                self.inner
                    .compare_and_swap(new, expected_version, now)
                    .await
            }
        }
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        let members = match self.flaw {
            Flaw::RevokeSubjectSkipsTagged => self
                .inner
                .list_subject(subject)
                .await?
                .into_iter()
                .filter(|r| r.resource.is_none())
                .collect(),
            Flaw::OldClockRule => self.inner.list_subject(subject).await?,
            _ => return self.inner.revoke_subject(subject, now).await,
        };
        self.revoke_live(members, now, RevokeReason::Subject).await
    }

    async fn revoke_resource(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        if self.flaw != Flaw::OldClockRule {
            return self.inner.revoke_resource(resource, now).await;
        }
        // The contract offers no listing by resource: find the members in a dump.
        let Some(dump) = self.inner.raw_dump().await? else {
            return self.inner.revoke_resource(resource, now).await;
        };
        let members = crate::model::decode_dump(&dump)
            .0
            .into_iter()
            .filter(|r| r.resource.as_ref() == Some(resource))
            .collect();
        self.revoke_live(members, now, RevokeReason::Resource).await
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
        if self.flaw == Flaw::TicketNeverDeleted
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
        match self.flaw {
            Flaw::ReapRemovesLive => self.inner.reap(now.saturating_add(FAR), limit).await,
            Flaw::ReapIgnoresLimit => self.inner.reap(now, usize::MAX).await,
            _ => self.inner.reap(now, limit).await,
        }
    }

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        if self.flaw == Flaw::EmptyDump {
            return Ok(Some(Vec::new()));
        }
        self.inner.raw_dump().await
    }
    async fn key_deadlines(
        &self,
    ) -> Result<Option<Vec<leasehold::store::KeyDeadline>>, StoreError> {
        self.inner.key_deadlines().await
    }
}
