//! The case table and the runner: capability gating, panic catching, timing, reports.

use std::fmt;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::panic::AssertUnwindSafe;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::FutureExt;
use futures::future::BoxFuture;
use leasehold::{Capabilities, Store};

use crate::env::{CaseResult, DynStore, Env};
use crate::factory::StoreFactory;

/// The security invariant (DESIGN §4) a case checks, or the plain store contract (§5).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[non_exhaustive]
pub enum Invariant {
    /// INV-no-resurrection: nothing expired or revoked ever validates again.
    NoResurrection,
    /// INV-absolute-bound: nothing moves a session past `created_at + absolute lifetime`.
    AbsoluteBound,
    /// INV-hash-at-rest: the store never holds a raw secret.
    HashAtRest,
    /// INV-one-shot: a ticket is redeemed at most once.
    OneShot,
    /// INV-single-successor: a rotation has exactly one successor.
    SingleSuccessor,
    /// INV-caps: session and slot caps hold under any concurrency.
    Caps,
    /// INV-revoke-all: group revocation reaches every session created before it.
    RevokeAll,
    /// INV-fail-closed: store failures never yield a valid session.
    FailClosed,
    /// INV-bounded-storage: everything expired or revoked is reclaimed, nothing live is.
    BoundedStorage,
    /// INV-store-time: once any caller has been told `Expired` or `Revoked`, no operation by
    /// any caller, at any clock setting, makes the session valid again; where the store has a
    /// clock, windows and caps run on it.
    StoreTime,
    /// INV-authority: only a holder of one of a session's secrets, its owner as the
    /// application names it, or trusted server code acting by id acts on a session; a session
    /// is judged only under its own kind's policy; an application's check refuses before
    /// anything is written.
    Authority,
    /// The store contract of DESIGN §5 (insert-if-absent, CAS, listing, reap limits…).
    Contract,
}

impl Invariant {
    /// Every invariant, in report order.
    pub const ALL: [Invariant; 12] = [
        Invariant::NoResurrection,
        Invariant::AbsoluteBound,
        Invariant::HashAtRest,
        Invariant::OneShot,
        Invariant::SingleSuccessor,
        Invariant::Caps,
        Invariant::RevokeAll,
        Invariant::FailClosed,
        Invariant::BoundedStorage,
        Invariant::StoreTime,
        Invariant::Authority,
        Invariant::Contract,
    ];

    /// The name used in DESIGN.md and reports: `INV-no-resurrection`, …, `contract`.
    pub fn name(self) -> &'static str {
        match self {
            Invariant::NoResurrection => "INV-no-resurrection",
            Invariant::AbsoluteBound => "INV-absolute-bound",
            Invariant::HashAtRest => "INV-hash-at-rest",
            Invariant::OneShot => "INV-one-shot",
            Invariant::SingleSuccessor => "INV-single-successor",
            Invariant::Caps => "INV-caps",
            Invariant::RevokeAll => "INV-revoke-all",
            Invariant::FailClosed => "INV-fail-closed",
            Invariant::BoundedStorage => "INV-bounded-storage",
            Invariant::StoreTime => "INV-store-time",
            Invariant::Authority => "INV-authority",
            Invariant::Contract => "contract",
        }
    }
}

impl fmt::Display for Invariant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// An optional store capability a case may require (see [`leasehold::Capabilities`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Capability {
    /// [`Capabilities::native_expiry`].
    NativeExpiry,
    /// [`Capabilities::raw_dump`].
    RawDump,
    /// [`Capabilities::multi_process`].
    MultiProcess,
    /// [`Capabilities::server_clock`]: the store has a clock of its own, which the cases
    /// move through [`Store::set_clock_offset`](leasehold::Store::set_clock_offset).
    ServerClock,
    /// [`Capabilities::sharded`]: keys spread over shards; group operations across shards
    /// follow the multi-step protocols of `docs/writing-an-adapter.md`.
    Sharded,
    /// [`Capabilities::no_global_index`]: no index of every session; a global cap is refused
    /// (the cases that use one check the refusal instead) and `Scope::All` is walked.
    NoGlobalIndex,
}

impl Capability {
    /// Every capability.
    pub const ALL: [Capability; 6] = [
        Capability::NativeExpiry,
        Capability::RawDump,
        Capability::MultiProcess,
        Capability::ServerClock,
        Capability::Sharded,
        Capability::NoGlobalIndex,
    ];

    /// The name used in the macro's `capabilities = [...]` list and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Capability::NativeExpiry => "native_expiry",
            Capability::RawDump => "raw_dump",
            Capability::MultiProcess => "multi_process",
            Capability::ServerClock => "server_clock",
            Capability::Sharded => "sharded",
            Capability::NoGlobalIndex => "no_global_index",
        }
    }

    /// Whether `caps` declares this capability.
    pub fn declared_by(self, caps: Capabilities) -> bool {
        match self {
            Capability::NativeExpiry => caps.native_expiry,
            Capability::RawDump => caps.raw_dump,
            Capability::MultiProcess => caps.multi_process,
            Capability::ServerClock => caps.server_clock,
            Capability::Sharded => caps.sharded,
            Capability::NoGlobalIndex => caps.no_global_index,
        }
    }

    /// The names of every capability `caps` declares, in [`Capability::ALL`] order.
    pub fn names_declared_by(caps: Capabilities) -> Vec<&'static str> {
        Capability::ALL
            .into_iter()
            .filter(|c| c.declared_by(caps))
            .map(Capability::name)
            .collect()
    }
}

impl fmt::Display for Capability {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// What a case needs of the store: a capability it declares, or one it must *not* declare
/// (some cases check what only a store without it promises, such as exact reap counts).
/// Where the requirement is not met the case is reported as skipped, with
/// [`Requirement::skip_reason`], never as passed.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Requirement {
    /// The store declares this capability.
    Has(Capability),
    /// The store does not declare this capability.
    Lacks(Capability),
}

impl Requirement {
    /// `reaper`: the store's own [`reap`](leasehold::Store::reap) removes expired records
    /// (and counts exactly what it removed). A store with `native_expiry` lacks it: its server
    /// reclaims records on store time and its `reap` cleans index entries only.
    pub const REAPER: Requirement = Requirement::Lacks(Capability::NativeExpiry);

    /// Every requirement the case list may name, besides `none`.
    pub const ALL: [Requirement; 6] = [
        Requirement::Has(Capability::NativeExpiry),
        Requirement::Has(Capability::RawDump),
        Requirement::Has(Capability::MultiProcess),
        Requirement::Has(Capability::ServerClock),
        Requirement::Has(Capability::Sharded),
        Requirement::REAPER,
    ];

    /// The name used in the case list: a capability's name, or `reaper`.
    pub fn name(self) -> &'static str {
        match self {
            Requirement::Has(c) => c.name(),
            Requirement::Lacks(Capability::NativeExpiry) => "reaper",
            Requirement::Lacks(Capability::RawDump) => "no_raw_dump",
            Requirement::Lacks(Capability::MultiProcess) => "no_multi_process",
            Requirement::Lacks(Capability::ServerClock) => "no_server_clock",
            Requirement::Lacks(Capability::Sharded) => "no_sharded",
            Requirement::Lacks(Capability::NoGlobalIndex) => "global_index",
        }
    }

    /// Whether a store declaring `caps` meets it.
    pub fn met_by(self, caps: Capabilities) -> bool {
        match self {
            Requirement::Has(c) => c.declared_by(caps),
            Requirement::Lacks(c) => !c.declared_by(caps),
        }
    }

    /// Why a case with this requirement is skipped on a store that does not meet it (the
    /// message of [`Outcome::Skipped`]): `requires native_expiry`, or for an absent capability
    /// what the case needs and which declared capability rules it out.
    pub fn skip_reason(self) -> String {
        match self {
            Requirement::Has(c) => format!("requires {c}"),
            Requirement::Lacks(Capability::NativeExpiry) => "requires reaper: the store declares \
                native_expiry (its server reclaims expired records, its reap cleans index \
                entries only), so exact reap counts do not apply"
                .to_owned(),
            Requirement::Lacks(c) => format!("requires {}: the store declares {c}", self.name()),
        }
    }
}

impl fmt::Display for Requirement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A case body: takes its environment, returns pass or a failure message.
pub type CaseFn = fn(Env) -> BoxFuture<'static, CaseResult>;

/// One named conformance case.
#[derive(Clone, Copy)]
pub struct Case {
    /// `group::name`, e.g. `no_resurrection::revoke_then_validate`.
    pub name: &'static str,
    /// What it checks.
    pub invariant: Invariant,
    /// What it needs of the store (a capability, or the absence of one); where that is not
    /// met the case is reported as skipped, never as passed.
    pub requires: Option<Requirement>,
    /// The body.
    pub run: CaseFn,
}

impl fmt::Debug for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Case")
            .field("name", &self.name)
            .field("invariant", &self.invariant)
            .field("requires", &self.requires)
            .finish()
    }
}

impl Case {
    /// Whether `filter` (a substring) matches the case name or its invariant's name. An empty
    /// filter matches everything.
    pub fn matches(&self, filter: &str) -> bool {
        filter.is_empty() || self.name.contains(filter) || self.invariant.name().contains(filter)
    }

    /// A seed derived from the name, so every case draws different ids and secrets (stores
    /// whose isolation is a key prefix never see the same id twice).
    fn seed(&self) -> u64 {
        let mut h = DefaultHasher::new();
        self.name.hash(&mut h);
        h.finish()
    }
}

/// Every case of the suite, grouped by invariant.
pub fn cases() -> &'static [Case] {
    crate::cases::CASES
}

/// The case named `name`, if any.
pub fn case(name: &str) -> Option<&'static Case> {
    cases().iter().find(|c| c.name == name)
}

/// The cases matching `filter` (see [`Case::matches`]).
pub fn select(filter: &str) -> Vec<&'static Case> {
    cases().iter().filter(|c| c.matches(filter)).collect()
}

/// How one case ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every assertion held.
    Passed,
    /// An assertion failed, the case panicked or timed out, or the store could not be made.
    Failed(String),
    /// The case does not apply to the store: it lacks a capability the case needs, or
    /// declares one the case rules out. Never counted as passed.
    Skipped(String),
}

impl Outcome {
    /// `passed`, `failed` or `skipped`.
    pub fn label(&self) -> &'static str {
        match self {
            Outcome::Passed => "passed",
            Outcome::Failed(_) => "failed",
            Outcome::Skipped(_) => "skipped",
        }
    }
}

/// The result of one case.
#[derive(Clone, Debug)]
pub struct CaseReport {
    /// The case name.
    pub name: &'static str,
    /// Its invariant.
    pub invariant: Invariant,
    /// How it ended.
    pub outcome: Outcome,
    /// Wall time taken (making the store included).
    pub duration: Duration,
}

/// The result of a run.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One entry per case run, in suite order.
    pub cases: Vec<CaseReport>,
}

impl Report {
    /// Cases that passed.
    pub fn passed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Passed))
    }

    /// Cases that failed.
    pub fn failed(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Failed(_)))
    }

    /// Cases that were skipped.
    pub fn skipped(&self) -> usize {
        self.count(|o| matches!(o, Outcome::Skipped(_)))
    }

    /// True if no case failed (skips allowed).
    pub fn ok(&self) -> bool {
        self.failed() == 0
    }

    /// The summary line: `N passed, N failed, N skipped`.
    pub fn summary(&self) -> String {
        format!(
            "{} passed, {} failed, {} skipped",
            self.passed(),
            self.failed(),
            self.skipped()
        )
    }

    fn count(&self, f: impl Fn(&Outcome) -> bool) -> usize {
        self.cases.iter().filter(|c| f(&c.outcome)).count()
    }
}

/// How long one case may run before it is failed (a deadlocked store must not hang a run).
/// Cases never wait on real time; this is only a watchdog.
pub const CASE_TIMEOUT: Duration = Duration::from_secs(60);

fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_owned()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "a non-string panic payload".to_owned()
    }
}

/// Runs one case against a fresh store from `factory`: skips it (reported as skipped) if the
/// store lacks the capability it needs, catches panics, and fails it after [`CASE_TIMEOUT`].
///
/// Must run inside a Tokio runtime (concurrency cases spawn tasks; a multi-thread runtime makes
/// them race in parallel).
pub async fn run_case<F: StoreFactory + ?Sized>(factory: &F, case: &Case) -> CaseReport {
    let start = Instant::now();
    let outcome = run_case_inner(factory, case).await;
    CaseReport {
        name: case.name,
        invariant: case.invariant,
        outcome,
        duration: start.elapsed(),
    }
}

async fn run_case_inner<F: StoreFactory + ?Sized>(factory: &F, case: &Case) -> Outcome {
    let store = match AssertUnwindSafe(factory.make()).catch_unwind().await {
        Ok(Ok(s)) => s,
        Ok(Err(e)) => return Outcome::Failed(format!("the store factory failed: {e}")),
        Err(p) => {
            return Outcome::Failed(format!(
                "the store factory panicked: {}",
                panic_message(&*p)
            ));
        }
    };
    if let Some(req) = case.requires
        && !req.met_by(store.capabilities())
    {
        return Outcome::Skipped(req.skip_reason());
    }
    let store: DynStore = Arc::new(store);
    let env = Env::new(store, case.seed());
    let body = AssertUnwindSafe((case.run)(env)).catch_unwind();
    match tokio::time::timeout(CASE_TIMEOUT, body).await {
        Err(_) => Outcome::Failed(format!(
            "timed out after {} s (deadlock or lost wake-up in the store?)",
            CASE_TIMEOUT.as_secs()
        )),
        Ok(Err(p)) => Outcome::Failed(format!("panicked: {}", panic_message(&*p))),
        Ok(Ok(Err(e))) => Outcome::Failed(e.0),
        Ok(Ok(Ok(()))) => Outcome::Passed,
    }
}

/// Runs every case matching `filter` (empty: all), one after the other, each on a fresh store,
/// and returns the report. Must run inside a Tokio runtime (multi-thread for real races).
pub async fn run_all<F: StoreFactory + ?Sized>(factory: &F, filter: &str) -> Report {
    run_selected(factory, &select(filter), |_| {}).await
}

/// Runs `cases` in order, calling `progress` after each one (for progress bars).
pub async fn run_selected<F: StoreFactory + ?Sized>(
    factory: &F,
    cases: &[&Case],
    mut progress: impl FnMut(&CaseReport),
) -> Report {
    let mut report = Report::default();
    for case in cases {
        let r = run_case(factory, case).await;
        progress(&r);
        report.cases.push(r);
    }
    report
}
