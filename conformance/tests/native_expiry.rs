//! The suite under `native_expiry`: the reference native-expiry store passes every case it can
//! and skips exactly the exact-count reap cases (with the reason); the `native_expiry_*` cases
//! catch a store that serves or writes an expired record, counts a reap it did not do, or keeps
//! a key without a TTL or past its record's deadline.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use async_trait::async_trait;
use leasehold::crypto::Verifier;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::{
    CreateLimits, HeartbeatOutcome, InsertOutcome, KeyDeadline, KeyHolds, Loaded, ReapOutcome,
    SlotCaps, SlotOutcome, StoreError, TakeOutcome,
};
use leasehold::{
    Capabilities, MemoryStore, Resource, SessionId, SessionRecord, SlotId, Store, Subject,
    SystemClock, TicketId, Timestamp,
};
use leasehold_conformance::broken::{Broken, Flaw};
use leasehold_conformance::{
    Capability, Outcome, Report, Requirement, StoreFactory, cases, run_all,
};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn native() -> MemoryStore {
    MemoryStore::with_native_expiry(SystemClock)
}

fn run<F: StoreFactory>(factory: &F, filter: &str) -> Report {
    rt().block_on(run_all(factory, filter))
}

fn failing(report: &Report) -> Vec<(&'static str, String)> {
    report
        .cases
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(m) => Some((c.name, m.clone())),
            _ => None,
        })
        .collect()
}

const SERVES: &str = "bounded_storage::native_expiry_never_serves_expired";
const TTLS: &str = "bounded_storage::native_expiry_every_key_has_a_ttl";

#[test]
fn the_reference_native_store_passes_and_skips_only_the_reaper_cases() {
    let report = run(&|| async { native() }, "");
    assert!(report.ok(), "{:#?}", failing(&report));
    let caps = native().capabilities();
    for (case, r) in cases().iter().zip(&report.cases) {
        let applies = case.requires.is_none_or(|req| req.met_by(caps));
        match &r.outcome {
            Outcome::Passed => assert!(applies, "{} passed but should be skipped", case.name),
            Outcome::Skipped(why) => {
                assert!(!applies, "{} skipped: {why}", case.name);
                assert_eq!(case.requires, Some(Requirement::REAPER), "{}", case.name);
                assert!(
                    why.starts_with("requires reaper: the store declares native_expiry"),
                    "{why}"
                );
            }
            Outcome::Failed(m) => panic!("{}: {m}", case.name),
        }
    }
    let reaper: Vec<_> = cases()
        .iter()
        .filter(|c| c.requires == Some(Requirement::REAPER))
        .map(|c| c.name)
        .collect();
    for name in [
        "bounded_storage::reap_removes_expired",
        "bounded_storage::reap_never_removes_live",
        "bounded_storage::reap_batch_limit",
        "bounded_storage::reap_limit_ignores_live_volume",
        "bounded_storage::reap_tickets_and_slots",
        "bounded_storage::reap_tombstones_after_deadline",
        "no_resurrection::tombstone_outlives_early_reap",
        "no_resurrection::reap_vs_refresh_at_deadline",
    ] {
        assert!(reaper.contains(&name), "{name} is not gated on reaper");
    }
    assert_eq!(report.skipped(), reaper.len());
    for name in [SERVES, TTLS] {
        let r = report.cases.iter().find(|c| c.name == name).unwrap();
        assert_eq!(r.outcome, Outcome::Passed, "{name}");
    }
}

#[test]
fn requirements_name_themselves_and_gate_both_ways() {
    let none = Capabilities::NONE;
    let native = Capabilities::NONE.with_native_expiry(true);
    assert!(Requirement::REAPER.met_by(none));
    assert!(!Requirement::REAPER.met_by(native));
    assert_eq!(Requirement::REAPER.name(), "reaper");
    let has = Requirement::Has(Capability::NativeExpiry);
    assert!(!has.met_by(none) && has.met_by(native));
    assert_eq!(has.skip_reason(), "requires native_expiry");
    assert_eq!(has.to_string(), "native_expiry");
    // On a store without native expiry the reaper cases run and the native ones are skipped.
    let report = run(&|| async { MemoryStore::new() }, "bounded_storage");
    for r in &report.cases {
        let want_skip = r.name.contains("native_expiry");
        assert_eq!(
            matches!(r.outcome, Outcome::Skipped(_)),
            want_skip,
            "{} {:?}",
            r.name,
            r.outcome
        );
    }
    assert!(report.ok());
}

#[test]
fn a_cas_on_an_expired_record_is_caught() {
    let report = run(
        &|| async { Broken::new(native(), Flaw::CasIgnoresExpiry) },
        "native_expiry",
    );
    let failed = failing(&report);
    assert!(failed.iter().any(|(n, _)| *n == SERVES), "{failed:?}");
}

/// A planted flaw of a native-expiry store, in what it serves or in the TTLs it reports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flaw2 {
    /// `take_ticket` judges 10 s early (a script that ignores the caller's clock).
    TakeJudgedEarly,
    /// `heartbeat_slot` judges 10 s early.
    HeartbeatJudgedEarly,
    /// `reap` reports a session removed that it did not remove.
    ReapCountsIndexEntries,
    /// Index keys have no TTL.
    IndexWithoutTtl,
    /// Session keys expire 1 ms after their record's deadline.
    SessionOutlivesDeadline,
    /// Ticket keys expire 1 ms after the ticket.
    TicketOutlivesExpiry,
    /// Slot keys expire 1 ms after the slot.
    SlotOutlivesExpiry,
    /// A tombstone's key expires a minute before its record's deadline (revocation moved it).
    TombstoneTtlMoved,
    /// Session keys are not listed at all.
    SessionsUnlisted,
}

struct Flawed {
    inner: MemoryStore,
    flaw: Flaw2,
}

const EARLY: Duration = Duration::from_secs(10);

#[async_trait]
impl Store for Flawed {
    fn capabilities(&self) -> Capabilities {
        self.inner.capabilities()
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
        self.inner
            .compare_and_swap(new, expected_version, now)
            .await
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
        let now = match self.flaw {
            Flaw2::TakeJudgedEarly => now.saturating_sub(EARLY),
            _ => now,
        };
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
        let now = match self.flaw {
            Flaw2::HeartbeatJudgedEarly => now.saturating_sub(EARLY),
            _ => now,
        };
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
        let mut r = self.inner.reap(now, limit).await?;
        if self.flaw == Flaw2::ReapCountsIndexEntries {
            r.sessions += 1;
        }
        Ok(r)
    }
    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        self.inner.raw_dump().await
    }
    async fn key_deadlines(&self) -> Result<Option<Vec<KeyDeadline>>, StoreError> {
        let Some(keys) = self.inner.key_deadlines().await? else {
            return Ok(None);
        };
        let ms = Duration::from_millis(1);
        let mut out = Vec::new();
        for mut k in keys {
            let later = |d: Option<Timestamp>| d.map(|t| t.saturating_add(ms));
            match (self.flaw, &k.holds) {
                (Flaw2::IndexWithoutTtl, KeyHolds::Index) => k.deadline = None,
                (Flaw2::SessionOutlivesDeadline, KeyHolds::Session(_)) => {
                    k.deadline = later(k.deadline);
                }
                (Flaw2::TicketOutlivesExpiry, KeyHolds::Ticket(_)) => {
                    k.deadline = later(k.deadline);
                }
                (Flaw2::SlotOutlivesExpiry, KeyHolds::Slot(_)) => k.deadline = later(k.deadline),
                (Flaw2::TombstoneTtlMoved, KeyHolds::Session(id)) => {
                    let rec = self.inner.load_session(id).await?.record;
                    if rec.is_some_and(|r| r.is_tombstone()) {
                        k.deadline = k
                            .deadline
                            .map(|t| t.saturating_sub(Duration::from_secs(60)));
                    }
                }
                (Flaw2::SessionsUnlisted, KeyHolds::Session(_)) => continue,
                _ => {}
            }
            out.push(k);
        }
        Ok(Some(out))
    }
    fn set_clock_offset(&self, offset_ms: i64) -> bool {
        self.inner.set_clock_offset(offset_ms)
    }
}

#[test]
fn every_planted_native_flaw_is_caught() {
    for (flaw, case, says) in [
        (Flaw2::TakeJudgedEarly, SERVES, "take of a ticket"),
        (
            Flaw2::HeartbeatJudgedEarly,
            SERVES,
            "heartbeat of an unexpired slot",
        ),
        (
            Flaw2::ReapCountsIndexEntries,
            SERVES,
            "sessions removed, but only 0",
        ),
        (Flaw2::IndexWithoutTtl, TTLS, "has no TTL"),
        (
            Flaw2::SessionOutlivesDeadline,
            TTLS,
            "after its record's deadline",
        ),
        (
            Flaw2::TicketOutlivesExpiry,
            TTLS,
            "after the ticket's deadline",
        ),
        (Flaw2::SlotOutlivesExpiry, TTLS, "after the slot's deadline"),
        (
            Flaw2::TombstoneTtlMoved,
            TTLS,
            "a tombstone keeps its record's deadline",
        ),
        (Flaw2::SessionsUnlisted, TTLS, "but no key holds it"),
    ] {
        let factory = move || async move {
            Flawed {
                inner: native(),
                flaw,
            }
        };
        let report = run(&factory, case);
        let failed = failing(&report);
        assert!(
            failed.iter().any(|(n, m)| *n == case && m.contains(says)),
            "{flaw:?}: {case} did not fail saying {says:?}: {failed:?}"
        );
    }
}

#[test]
fn without_the_audit_hook_the_ttl_case_fails_with_the_reason() {
    /// A store declaring native expiry that does not implement `key_deadlines`.
    struct NoHook(MemoryStore);
    #[async_trait]
    impl Store for NoHook {
        fn capabilities(&self) -> Capabilities {
            self.0.capabilities()
        }
        async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
            self.0.load_session(id).await
        }
        async fn insert_session(
            &self,
            r: &SessionRecord,
            l: &CreateLimits,
            now: Timestamp,
        ) -> Result<InsertOutcome, StoreError> {
            self.0.insert_session(r, l, now).await
        }
        async fn compare_and_swap(
            &self,
            new: &SessionRecord,
            v: u64,
            now: Timestamp,
        ) -> Result<(), StoreError> {
            self.0.compare_and_swap(new, v, now).await
        }
        async fn revoke_subject(&self, s: &Subject, now: Timestamp) -> Result<u64, StoreError> {
            self.0.revoke_subject(s, now).await
        }
        async fn revoke_resource(&self, r: &Resource, now: Timestamp) -> Result<u64, StoreError> {
            self.0.revoke_resource(r, now).await
        }
        async fn list_subject(&self, s: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
            self.0.list_subject(s).await
        }
        async fn put_ticket(&self, t: &TicketRecord) -> Result<(), StoreError> {
            self.0.put_ticket(t).await
        }
        async fn take_ticket(
            &self,
            id: &TicketId,
            v: &Verifier,
            now: Timestamp,
        ) -> Result<TakeOutcome, StoreError> {
            self.0.take_ticket(id, v, now).await
        }
        async fn acquire_slot(
            &self,
            s: &SlotRecord,
            c: &SlotCaps,
            now: Timestamp,
        ) -> Result<SlotOutcome, StoreError> {
            self.0.acquire_slot(s, c, now).await
        }
        async fn heartbeat_slot(
            &self,
            id: &SlotId,
            e: Timestamp,
            now: Timestamp,
        ) -> Result<HeartbeatOutcome, StoreError> {
            self.0.heartbeat_slot(id, e, now).await
        }
        async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
            self.0.release_slot(id).await
        }
        async fn list_sessions(
            &self,
            scope: &leasehold::Scope,
            after: Option<&leasehold::SessionId>,
            limit: usize,
        ) -> Result<leasehold::Page, StoreError> {
            self.0.list_sessions(scope, after, limit).await
        }
        async fn count_live(
            &self,
            scope: &leasehold::Scope,
            now: Timestamp,
        ) -> Result<u64, StoreError> {
            self.0.count_live(scope, now).await
        }
        async fn check_limits(
            &self,
            subject: &leasehold::Subject,
            limits: &leasehold::store::CreateLimits,
            now: Timestamp,
        ) -> Result<leasehold::store::InsertOutcome, StoreError> {
            self.0.check_limits(subject, limits, now).await
        }
        async fn forget_creation(
            &self,
            subject: &leasehold::Subject,
            id: &leasehold::SessionId,
        ) -> Result<bool, StoreError> {
            self.0.forget_creation(subject, id).await
        }
        async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
            self.0.reap(now, limit).await
        }
    }
    let report = run(&|| async { NoHook(native()) }, TTLS);
    let failed = failing(&report);
    assert!(
        failed
            .iter()
            .any(|(n, m)| *n == TTLS && m.contains("key_deadlines returns None")),
        "{failed:?}"
    );
}
