//! A seeded, deterministic simulation: several clients on several *nodes* (each a
//! [`Sessions`] with its own clock, skewed from a shared virtual time, and now and then stepped
//! ahead and back) run random operations
//! over one store, through a fault-injecting wrapper; after every step the outcomes and the
//! stored records are checked against the reference [model](crate::model) and every named
//! invariant. A failure reports its seed; the same seed replays the same run exactly.
//!
//! ```
//! use leasehold::MemoryStore;
//! use leasehold_testkit::simulate::{SimConfig, simulate};
//!
//! let report = futures::executor::block_on(simulate(MemoryStore::new(), SimConfig::new(7)))
//!     .unwrap_or_else(|failure| panic!("{failure}"));
//! println!("{report}");
//! ```
//!
//! # What a step is
//!
//! Either a clock jump of the shared virtual time (small, around a policy duration, or past
//! everything), a clock *step* of one node (its clock jumps ahead by a policy duration or more —
//! an NTP correction, an operator's mistake — and the next step of that node puts it back), or
//! a *group* of one to `max_concurrency` client operations run concurrently.
//! Half of the multi-client groups are races: the same operation (refresh of one token,
//! redemption of one ticket, creation for one subject, update of one version…) from clients on
//! different nodes.
//!
//! # Latency and reordering
//!
//! Every store call passes a scheduling point; a group's operations advance one store call at a
//! time, in an order drawn from the seed (see `sched.rs`). So a client's load and its
//! compare-and-swap can be separated by other clients' writes — the interleavings that make
//! concurrency bugs — and the order is reproducible with any executor.
//!
//! # Faults
//!
//! Each store call fails with probability `fault_per_mille`/1000 with a fault drawn from the
//! seed: before it applies (an error or a timeout), after it applied (a lost reply, a timeout
//! after the write), or a corrupt load. An operation that met a fault must fail with a store
//! error (INV-fail-closed: never a valid session). Its effect is then unknown to the client:
//! the model accepts it, marks what it may have touched as unsure, and re-learns the truth from
//! a fault-free read of the store after the step.
//!
//! # What is checked after every step
//!
//! - each outcome against the model: exactly for one operation; for a concurrent group, some
//!   serial order of its operations must explain every outcome *and* the stored state
//!   (linearizability, ≤ 6 orders);
//! - every stored session against the model (and tickets and slots, when the store can dump);
//! - INV-store-time and INV-no-resurrection: once any client, on any node, was told a session
//!   expired or was revoked, no client on any node, whatever its clock says, is granted it
//!   again, and its record is a tombstone (or gone) from then on; a tombstone never changes;
//! - INV-absolute-bound, INV-single-successor (one token per session generation, across nodes
//!   and retries), INV-one-shot, INV-caps (the subject cap at every clock at once, after every
//!   step; all caps probed right after each insert or acquisition too) and INV-revoke-all
//!   (every member a tombstone, probed right after the revocation), INV-fail-closed,
//!   INV-hash-at-rest (every 10 steps and at the end), and at the end INV-bounded-storage
//!   (after reaping everything, nothing is left).
//!
//! Every outcome is judged at its own node's clock, as the stores simulated (with no clock of
//! their own) judge it; no check assumes the clocks agree. What the contract leaves to each
//! caller's clock on such a store stays per clock: the model's creation-rate verdict near a
//! window's edge, and the global and slot caps (checked at the inserting caller's clock).

mod sched;
mod store;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use leasehold::store::KeyHolds;
use leasehold::{
    Clock, ManualClock, Policy, SeededEntropy, SessionId, SessionRecord, Sessions, Store, Subject,
    Timestamp,
};

use crate::faults::{Fault, Op};
use crate::model::run_support::{EventLog, SUBJECTS, fill_evicted};
use crate::model::{
    Action, Checker, CtxPick, Denial, Knob, Model, ModelOp, ModelSettings, Observed, PolicyChoice,
    TicketPick, TokenPick, VersionPick, decode_dump, perform, resolve,
};
use sched::{Gate, Note, OpFuture, SplitMix, interleave};
use store::SimStore;

/// What to simulate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimConfig {
    /// Everything random derives from it.
    pub seed: u64,
    /// Clients (each bound to a node, round robin). At least 1.
    pub clients: usize,
    /// Nodes: `Sessions` instances with their own clocks. At least 1.
    pub nodes: usize,
    /// Steps to run.
    pub steps: usize,
    /// Per store call, the chance (in ‰) of an injected fault.
    pub fault_per_mille: u32,
    /// Largest clock offset of a node from the shared virtual time (node 0 has none).
    pub max_skew: Duration,
    /// Largest number of client operations run concurrently in one step. At least 1.
    pub max_concurrency: usize,
    /// The policy every node uses.
    pub policy: Policy,
    /// Keep every trace line in the report (otherwise only their digest).
    pub keep_trace: bool,
    /// Virtual time at the start; `None`: [`ManualClock::default`] (2026-01-01). Adapters
    /// that also consult a clock of their own (a database server's) should start at the real
    /// time, so the virtual clocks are never behind the store's.
    pub start: Option<Timestamp>,
}

impl SimConfig {
    /// The defaults for `seed`: 4 clients on 2 nodes, 300 steps, 5 % faults per store call,
    /// up to 250 ms of clock skew, groups of up to 3 concurrent operations, and
    /// [`PolicyChoice::Simulation`] (short durations, caps and a creation rate on).
    pub fn new(seed: u64) -> Self {
        SimConfig {
            seed,
            clients: 4,
            nodes: 2,
            steps: 300,
            fault_per_mille: 50,
            max_skew: Duration::from_millis(250),
            max_concurrency: 3,
            policy: PolicyChoice::Simulation.policy(),
            keep_trace: false,
            start: None,
        }
    }

    /// Sets the number of steps.
    pub fn steps(mut self, steps: usize) -> Self {
        self.steps = steps;
        self
    }

    /// Sets the number of clients.
    pub fn clients(mut self, clients: usize) -> Self {
        self.clients = clients;
        self
    }

    /// Sets the number of nodes.
    pub fn nodes(mut self, nodes: usize) -> Self {
        self.nodes = nodes;
        self
    }

    /// Sets the fault rate per store call, in ‰.
    pub fn fault_per_mille(mut self, per_mille: u32) -> Self {
        self.fault_per_mille = per_mille.min(1000);
        self
    }

    /// Sets the largest clock skew.
    pub fn max_skew(mut self, skew: Duration) -> Self {
        self.max_skew = skew;
        self
    }

    /// Sets the largest concurrent group.
    pub fn max_concurrency(mut self, n: usize) -> Self {
        self.max_concurrency = n;
        self
    }

    /// Sets the policy.
    pub fn policy(mut self, policy: Policy) -> Self {
        self.policy = policy;
        self
    }

    /// Keeps every trace line in the report.
    pub fn keep_trace(mut self, keep: bool) -> Self {
        self.keep_trace = keep;
        self
    }

    /// Sets the virtual time at the start.
    pub fn start(mut self, start: Timestamp) -> Self {
        self.start = Some(start);
        self
    }
}

impl fmt::Display for SimConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "seed {}, {} steps, {} clients on {} nodes, faults {}‰, skew ≤ {} ms, groups ≤ {}",
            self.seed,
            self.steps,
            self.clients,
            self.nodes,
            self.fault_per_mille,
            self.max_skew.as_millis(),
            self.max_concurrency
        )
    }
}

/// What a finished simulation did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SimReport {
    /// The seed.
    pub seed: u64,
    /// Steps run.
    pub steps: usize,
    /// Client operations run.
    pub operations: u64,
    /// Operations that succeeded.
    pub granted: u64,
    /// Operations refused by design (expired, revoked, capped, …).
    pub denied: u64,
    /// Operations that failed with a store error (all of them met an injected fault).
    pub store_failures: u64,
    /// Faults injected into store calls.
    pub faults_injected: u64,
    /// Steps that ran two or more operations concurrently.
    pub concurrent_groups: u64,
    /// Clock jumps (of every node together).
    pub clock_jumps: u64,
    /// Clock steps of one node, ahead (each is put back by a later step).
    pub clock_steps: u64,
    /// Sessions created (acknowledged).
    pub sessions_created: u64,
    /// New tokens issued by refresh or renewal.
    pub rotations: u64,
    /// Predecessors answered with the existing successor.
    pub successors_reissued: u64,
    /// Reuse detections.
    pub reuse_detected: u64,
    /// Tickets redeemed.
    pub tickets_redeemed: u64,
    /// Records removed by reaping.
    pub reaped: u64,
    /// Rounds of invariant checks over the stored state.
    pub audits: u64,
    /// Outcomes the model could not predict because they depended on the unknown effect of a
    /// faulted call in the same step (their invariants were still checked).
    pub unchecked: u64,
    /// A digest of the whole trace: equal digests mean identical runs.
    pub trace_digest: u64,
    /// Every trace line, if the config asked to keep them.
    pub trace: Vec<String>,
}

impl fmt::Display for SimReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation seed {}: {} steps, {} operations ({} concurrent groups, {} clock jumps, \
             {} clock steps)",
            self.seed,
            self.steps,
            self.operations,
            self.concurrent_groups,
            self.clock_jumps,
            self.clock_steps
        )?;
        writeln!(
            f,
            "  outcomes: {} granted, {} denied, {} store failures ({} faults injected)",
            self.granted, self.denied, self.store_failures, self.faults_injected
        )?;
        writeln!(
            f,
            "  sessions created {}, rotations {}, successors reissued {}, reuse detected {}, \
             tickets redeemed {}, records reaped {}",
            self.sessions_created,
            self.rotations,
            self.successors_reissued,
            self.reuse_detected,
            self.tickets_redeemed,
            self.reaped
        )?;
        write!(
            f,
            "  {} audits passed, {} outcomes not predictable after a fault; trace digest {:016x}",
            self.audits, self.unchecked, self.trace_digest
        )
    }
}

/// A simulation found a divergence from the model or a broken invariant.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SimFailure {
    /// The seed that replays it.
    pub seed: u64,
    /// The step (1-based; `steps + 1` for the final drain) at which it was found.
    pub step: usize,
    /// The rule broken: an invariant name (`INV-…`) or `model divergence`.
    pub rule: String,
    /// What exactly.
    pub description: String,
    /// The last steps of the trace, oldest first.
    pub recent: Vec<String>,
    /// The configuration, as text.
    pub config: String,
}

impl fmt::Display for SimFailure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "simulation failed at step {} (seed {}): {}",
            self.step, self.seed, self.rule
        )?;
        for line in self.description.lines() {
            writeln!(f, "  {line}")?;
        }
        if !self.recent.is_empty() {
            writeln!(f, "last steps:")?;
            for r in &self.recent {
                writeln!(f, "  {r}")?;
            }
        }
        write!(
            f,
            "replay with seed {} ({}): the same seed and configuration replay this run exactly",
            self.seed, self.config
        )
    }
}

impl std::error::Error for SimFailure {}

struct Node<S: Store + Clone> {
    sessions: Sessions<SimStore<S>>,
    clock: ManualClock,
    skew_ms: i64,
    /// How far the clock is stepped ahead right now (0: not stepped).
    step_ms: i64,
    events: EventLog,
}

/// One client operation of a step.
struct Planned {
    client: usize,
    node: usize,
    now: Timestamp,
    action: Action,
}

struct Sim<S: Store + Clone> {
    cfg: SimConfig,
    rng: SplitMix,
    store: S,
    gate: Arc<Gate>,
    per_mille: Arc<AtomicU32>,
    nodes: Vec<Node<S>>,
    t: Timestamp,
    model: Model,
    checker: Checker,
    subjects: Vec<Subject>,
    report: SimReport,
    recent: VecDeque<String>,
    step: usize,
    /// Whether the store's raw dump holds its records in the codec's encoding (so tickets and
    /// slots can be read from it): decided at the first audit that finds a session. The
    /// contract asks only for every stored byte (a SQL store dumps its rows as text).
    dump_holds_records: Option<bool>,
}

const RECENT: usize = 16;

fn fnv(digest: &mut u64, line: &str) {
    for b in line.as_bytes().iter().chain(b"\n") {
        *digest ^= u64::from(*b);
        *digest = digest.wrapping_mul(0x0000_0100_0000_01B3);
    }
}

fn with_skew(t: Timestamp, skew_ms: i64) -> Timestamp {
    let d = Duration::from_millis(skew_ms.unsigned_abs());
    if skew_ms >= 0 {
        t.saturating_add(d)
    } else {
        t.saturating_sub(d)
    }
}

/// Every order of `0..n` (n ≤ 4), in a fixed order.
fn permutations(n: usize) -> Vec<Vec<usize>> {
    if n <= 1 {
        return vec![(0..n).collect()];
    }
    let mut out = Vec::new();
    for p in permutations(n - 1) {
        for i in 0..=p.len() {
            let mut q = p.clone();
            q.insert(i, n - 1);
            out.push(q);
        }
    }
    out
}

fn token_pick(r: &mut SplitMix) -> TokenPick {
    let n = r.below(3) as u8;
    match r.below(20) {
        0..=10 => TokenPick::Latest(n),
        11..=15 => TokenPick::Previous(n),
        16 => TokenPick::Older {
            session: n,
            back: r.below(3) as u8,
        },
        17 => TokenPick::Forged(n),
        18 => TokenPick::UnknownId(r.below(256) as u8),
        _ => TokenPick::Garbled {
            session: n,
            how: r.below(256) as u8,
        },
    }
}

fn ctx_pick(r: &mut SplitMix) -> CtxPick {
    match r.below(10) {
        0..=7 => CtxPick::Own,
        8 => CtxPick::Missing,
        _ => CtxPick::Other,
    }
}

/// A random client operation (never a clock jump: those are steps of their own).
fn random_op(r: &mut SplitMix) -> ModelOp {
    let small = |r: &mut SplitMix| r.below(3) as u8;
    let opt2 = |r: &mut SplitMix| match r.below(3) {
        0 => None,
        n => Some(n as u8 - 1),
    };
    match r.below(100) {
        0..=13 => ModelOp::Create {
            subject: r.below(3) as u8,
            resource: opt2(r),
            binding: opt2(r),
            data_len: if r.chance(30) { 40 } else { r.below(8) as u8 },
        },
        14..=31 => ModelOp::Validate {
            token: token_pick(r),
            ctx: ctx_pick(r),
        },
        32..=44 => ModelOp::Refresh {
            token: token_pick(r),
            ctx: ctx_pick(r),
        },
        45..=47 => ModelOp::Revoke { session: small(r) },
        48 => ModelOp::RevokeSubject {
            subject: r.below(3) as u8,
        },
        49 => ModelOp::RevokeResource {
            resource: r.below(2) as u8,
        },
        50..=52 => ModelOp::List {
            subject: r.below(3) as u8,
        },
        53..=58 => ModelOp::UpdateData {
            session: small(r),
            version: match r.below(4) {
                0 => VersionPick::Stale,
                1 => VersionPick::Ahead,
                _ => VersionPick::Current,
            },
            data_len: r.below(8) as u8,
        },
        59..=66 => ModelOp::MintTicket {
            token: token_pick(r),
            ctx: ctx_pick(r),
        },
        67..=76 => ModelOp::RedeemTicket {
            ticket: match r.below(10) {
                0 => TicketPick::Forged(small(r)),
                1 => TicketPick::Garbled(r.below(256) as u8),
                2 => TicketPick::Unknown(r.below(256) as u8),
                _ => TicketPick::Issued(small(r)),
            },
        },
        77..=83 => ModelOp::AcquireSlot {
            session: small(r),
            resource: opt2(r),
        },
        84..=88 => ModelOp::HeartbeatSlot { slot: small(r) },
        89..=92 => ModelOp::ReleaseSlot { slot: small(r) },
        _ => ModelOp::Reap {
            limit: if r.chance(300) { u8::MAX } else { small(r) },
        },
    }
}

fn short_id(id: &impl fmt::Display) -> String {
    id.to_string().chars().take(8).collect()
}

/// A short, secret-free description of an action for the trace.
fn describe(a: &Action) -> String {
    let tok = |t: &crate::model::TokenInput| {
        let id = t.text.split('_').nth(1).unwrap_or("?");
        format!("{:?}:{}", t.kind, id.chars().take(8).collect::<String>())
    };
    match a {
        Action::Create {
            subject,
            resource,
            binding,
            data,
        } => format!(
            "create({subject}, {:?}, bound={}, {}B)",
            resource.as_ref().map(|r| r.as_str()),
            binding.is_some(),
            data.len()
        ),
        Action::Validate { token, binding } => {
            format!("validate({}, bound={})", tok(token), binding.is_some())
        }
        Action::Refresh { token, binding } => {
            format!("refresh({}, bound={})", tok(token), binding.is_some())
        }
        Action::MintTicket { token, .. } => format!("mint_ticket({})", tok(token)),
        Action::RedeemTicket { ticket } => {
            let id = ticket.text.split('_').nth(1).unwrap_or("?");
            format!(
                "redeem({:?}:{})",
                ticket.kind,
                id.chars().take(8).collect::<String>()
            )
        }
        Action::Revoke { id } => format!("revoke({})", short_id(id)),
        Action::UpdateData { id, expected, data } => format!(
            "update_data({}, v{expected}, {}B)",
            short_id(id),
            data.len()
        ),
        Action::AcquireSlot { session, resource } => format!(
            "acquire_slot({}, {:?})",
            short_id(session),
            resource.as_ref().map(|r| r.as_str())
        ),
        Action::HeartbeatSlot { slot } => format!("heartbeat({})", short_id(slot)),
        Action::ReleaseSlot { slot } => format!("release({})", short_id(slot)),
        other => format!("{other:?}"),
    }
}

impl<S: Store + Clone> Sim<S> {
    fn new(store: S, mut cfg: SimConfig) -> Self {
        cfg.clients = cfg.clients.max(1);
        cfg.nodes = cfg.nodes.max(1);
        cfg.max_concurrency = cfg.max_concurrency.max(1);
        let mut rng = SplitMix::new(cfg.seed);
        let gate = Arc::new(Gate::default());
        let per_mille = Arc::new(AtomicU32::new(cfg.fault_per_mille.min(1000)));
        let subjects: Vec<Subject> = SUBJECTS
            .iter()
            .filter_map(|s| Subject::new(*s).ok())
            .collect();
        let shared_subjects = Arc::new(subjects.clone());
        let probe_checker = Arc::new(Checker::new(&cfg.policy));
        let t = cfg.start.unwrap_or_else(|| ManualClock::default().now());
        let max_skew = i64::try_from(cfg.max_skew.as_millis()).unwrap_or(i64::MAX);
        let nodes = (0..cfg.nodes)
            .map(|i| {
                let skew_ms = if i == 0 || max_skew == 0 {
                    0
                } else {
                    let span = u64::try_from(max_skew).unwrap_or(0) * 2 + 1;
                    rng.below(span) as i64 - max_skew
                };
                let clock = ManualClock::new(with_skew(t, skew_ms));
                let events = EventLog::default();
                let sim_store = SimStore::new(
                    store.clone(),
                    gate.clone(),
                    rng.fork(),
                    per_mille.clone(),
                    shared_subjects.clone(),
                    probe_checker.clone(),
                );
                let sessions = Sessions::new(sim_store, cfg.policy.clone())
                    .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"))
                    .with_clock(clock.clone())
                    .with_entropy(SeededEntropy::new(rng.next()))
                    .with_events(events.clone());
                Node {
                    sessions,
                    clock,
                    skew_ms,
                    step_ms: 0,
                    events,
                }
            })
            .collect();
        let settings = ModelSettings {
            native_expiry: store.capabilities().native_expiry,
        };
        let report = SimReport {
            seed: cfg.seed,
            trace_digest: 0xcbf2_9ce4_8422_2325,
            ..SimReport::default()
        };
        Sim {
            model: Model::new(&cfg.policy, settings),
            checker: Checker::new(&cfg.policy),
            cfg,
            rng,
            store,
            gate,
            per_mille,
            nodes,
            t,
            subjects,
            report,
            recent: VecDeque::new(),
            step: 0,
            dump_holds_records: None,
        }
    }

    fn trace(&mut self, line: String) {
        let line = format!("#{} {line}", self.step);
        fnv(&mut self.report.trace_digest, &line);
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(line.clone());
        if self.cfg.keep_trace {
            self.report.trace.push(line);
        }
    }

    fn fail(&self, rule: impl Into<String>, description: impl Into<String>) -> SimFailure {
        SimFailure {
            seed: self.cfg.seed,
            step: self.step,
            rule: rule.into(),
            description: description.into(),
            recent: self.recent.iter().cloned().collect(),
            config: self.cfg.to_string(),
        }
    }

    fn set_clocks(&self) {
        for n in &self.nodes {
            n.clock
                .set(with_skew(self.t, n.skew_ms.saturating_add(n.step_ms)));
        }
    }

    /// The fastest node clock (a store with native expiry may have removed what it calls due).
    fn fastest(&self) -> Timestamp {
        self.nodes
            .iter()
            .map(|n| n.clock.now())
            .max()
            .unwrap_or(self.t)
    }

    /// Steps one node's clock ahead by a policy duration or more, or back if it is ahead.
    fn step_clock(&mut self) -> String {
        let i = self.rng.below(self.nodes.len() as u64) as usize;
        let k = Knob::ALL[self.rng.below(Knob::ALL.len() as u64) as usize];
        let d = self.model.knob(k).unwrap_or(Duration::from_secs(1))
            + Duration::from_millis(self.rng.below(1500));
        let node = &mut self.nodes[i];
        let line = if node.step_ms == 0 {
            node.step_ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
            self.report.clock_steps += 1;
            format!("n{i} clock stepped {} ms ahead", node.step_ms)
        } else {
            node.step_ms = 0;
            format!("n{i} clock stepped back")
        };
        self.set_clocks();
        line
    }

    fn jump(&mut self) -> Duration {
        let r = &mut self.rng;
        let knob = |m: &Model, k: Knob| m.knob(k).unwrap_or(Duration::from_secs(1));
        match r.below(100) {
            0..=39 => Duration::from_millis(r.below(50)),
            40..=69 => Duration::from_millis(r.below(3000)),
            70..=96 => {
                let k = Knob::ALL[r.below(Knob::ALL.len() as u64) as usize];
                let d = knob(&self.model, k);
                match r.below(3) {
                    0 => d.saturating_sub(Duration::from_millis(1)),
                    1 => d,
                    _ => d + Duration::from_millis(1),
                }
            }
            _ => knob(&self.model, Knob::Absolute) + knob(&self.model, Knob::RateWindow),
        }
    }

    async fn run_step(&mut self) -> Result<(), SimFailure> {
        self.step += 1;
        let roll = self.rng.below(100);
        if roll < 12 {
            let d = self.jump();
            self.t = self.t.saturating_add(d);
            self.set_clocks();
            self.report.clock_jumps += 1;
            self.trace(format!("advance {} ms → t={}", d.as_millis(), self.t));
            return self.audit(&[], &[], &[]).await;
        }
        if roll < 15 {
            let line = self.step_clock();
            self.trace(line);
            return self.audit(&[], &[], &[]).await;
        }
        // Who acts, and what.
        let k = if self.rng.below(100) < 60 {
            1
        } else {
            2 + self.rng.below(
                self.cfg
                    .max_concurrency
                    .min(self.cfg.clients)
                    .saturating_sub(1) as u64,
            ) as usize
        }
        .min(self.cfg.clients)
        .min(self.cfg.max_concurrency);
        let mut clients: Vec<usize> = (0..self.cfg.clients).collect();
        for i in (1..clients.len()).rev() {
            let j = self.rng.below(i as u64 + 1) as usize;
            clients.swap(i, j);
        }
        clients.truncate(k);
        let race = k > 1 && self.rng.chance(500);
        let first = random_op(&mut self.rng);
        let mut plan = Vec::new();
        for (n, &client) in clients.iter().enumerate() {
            let op = if n == 0 || race {
                first.clone()
            } else {
                random_op(&mut self.rng)
            };
            let node = client % self.nodes.len();
            let Some(action) = resolve(&op, &self.model) else {
                continue;
            };
            plan.push(Planned {
                client,
                node,
                now: self.nodes[node].clock.now(),
                action,
            });
        }
        if plan.len() > 1 {
            self.report.concurrent_groups += 1;
        }
        // Run them, one store call at a time in a seeded order.
        self.gate.take_notes();
        let mut sched = self.rng.fork();
        let futs: Vec<OpFuture<'_, Observed>> = plan
            .iter()
            .map(|p| Box::pin(perform(&self.nodes[p.node].sessions, &p.action)) as OpFuture<'_, _>)
            .collect();
        let mut observed = interleave(futs, &self.gate, &mut sched).await;
        let mut events: BTreeMap<usize, Vec<leasehold::Event>> = BTreeMap::new();
        for (i, n) in self.nodes.iter().enumerate() {
            events.insert(i, n.events.take());
        }
        for (p, obs) in plan.iter().zip(observed.iter_mut()) {
            if let Some(ev) = events.get(&p.node) {
                fill_evicted(obs, ev);
            }
        }
        let mut faults: Vec<Vec<(Op, Fault)>> = vec![Vec::new(); plan.len()];
        for note in self.gate.take_notes() {
            match note {
                Note::Fault { op, call, fault } => {
                    if let Some(f) = faults.get_mut(op) {
                        f.push((call, fault));
                    }
                    self.report.faults_injected += 1;
                }
                Note::Breach { op, rule, detail } => {
                    let who = plan
                        .get(op)
                        .map(|p| describe(&p.action))
                        .unwrap_or_default();
                    self.trace_group(&plan, &observed, &faults);
                    return Err(self.fail(rule, format!("during {who}: {detail}")));
                }
            }
        }
        self.trace_group(&plan, &observed, &faults);
        self.count(&observed);
        // INV-fail-closed: a call that met a fault fails with a store error.
        for (i, p) in plan.iter().enumerate() {
            let failed = matches!(&observed[i], Observed::Denied(d) if d.is_store_failure());
            if !faults[i].is_empty() && !failed {
                return Err(self.fail(
                    "INV-fail-closed",
                    format!(
                        "{} met fault(s) {:?} and answered {}",
                        describe(&p.action),
                        faults[i],
                        observed[i].summary()
                    ),
                ));
            }
        }
        // Invariants from the outcomes alone.
        let items: Vec<(Timestamp, &Action, &Observed)> = plan
            .iter()
            .zip(&observed)
            .map(|(p, o)| (p.now, &p.action, o))
            .collect();
        if let Err(v) = self.checker.outcomes(&items) {
            return Err(self.fail(v.rule, v.detail));
        }
        self.audit(&plan, &observed, &faults).await
    }

    fn trace_group(
        &mut self,
        plan: &[Planned],
        observed: &[Observed],
        faults: &[Vec<(Op, Fault)>],
    ) {
        let parts: Vec<String> = plan
            .iter()
            .zip(observed)
            .zip(faults)
            .map(|((p, o), f)| {
                let f = if f.is_empty() {
                    String::new()
                } else {
                    format!(" faults {f:?}")
                };
                format!(
                    "c{}@n{} {} → {}{f}",
                    p.client,
                    p.node,
                    describe(&p.action),
                    o.summary()
                )
            })
            .collect();
        self.trace(format!("t={} {}", self.t, parts.join(" ‖ ")));
    }

    fn count(&mut self, observed: &[Observed]) {
        for o in observed {
            let r = &mut self.report;
            r.operations += 1;
            match o {
                Observed::Denied(d) if d.is_store_failure() => r.store_failures += 1,
                Observed::Denied(Denial::ReuseDetected) => {
                    r.denied += 1;
                    r.reuse_detected += 1;
                }
                Observed::Denied(_) => r.denied += 1,
                _ => r.granted += 1,
            }
            match o {
                Observed::Created { .. } => r.sessions_created += 1,
                Observed::Read { token: Some(t), .. }
                | Observed::Minted {
                    renewed: Some(t), ..
                } => {
                    if self.model.lookup_token(t).is_some() {
                        r.successors_reissued += 1;
                    } else {
                        r.rotations += 1;
                    }
                }
                Observed::Redeemed(_) => r.tickets_redeemed += 1,
                Observed::Reaped(out) => r.reaped += out.total(),
                _ => {}
            }
        }
    }

    /// Reads the whole store without faults: sessions of every subject, and the raw dump.
    async fn truth(
        &self,
    ) -> Result<(BTreeMap<SessionId, SessionRecord>, Option<Vec<Vec<u8>>>), SimFailure> {
        let mut truth = BTreeMap::new();
        for s in &self.subjects {
            let recs =
                self.store.list_subject(s).await.map_err(|e| {
                    self.fail("store error", format!("fault-free list_subject: {e}"))
                })?;
            for r in recs {
                truth.insert(r.id, r);
            }
        }
        let dump = self
            .store
            .raw_dump()
            .await
            .map_err(|e| self.fail("store error", format!("fault-free raw_dump: {e}")))?;
        Ok((truth, dump))
    }

    /// Finds a serial order of the step's operations that explains every outcome and the
    /// stored state; adopts the model it leads to. Then checks the stored records.
    async fn audit(
        &mut self,
        plan: &[Planned],
        observed: &[Observed],
        faults: &[Vec<(Op, Fault)>],
    ) -> Result<(), SimFailure> {
        self.report.audits += 1;
        let (truth, dump) = self.truth().await?;
        let fastest = self.fastest();
        let decoded = dump.as_ref().map(|d| decode_dump(d));
        if self.dump_holds_records.is_none() && !truth.is_empty() {
            let holds = decoded
                .as_ref()
                .is_some_and(|(s, _, _)| s.iter().any(|r| truth.contains_key(&r.id)));
            self.dump_holds_records = Some(holds);
        }
        // Tickets and slots are compared only where the dump holds records.
        let leases = decoded
            .as_ref()
            .filter(|_| self.dump_holds_records != Some(false));
        // The named invariants first: a broken one says more than "the model disagrees".
        let records: Vec<SessionRecord> = truth.values().cloned().collect();
        if let Err(v) = self
            .checker
            .records(&records)
            .and_then(|()| self.checker.session_caps(&records, None))
        {
            return Err(self.fail(v.rule, v.detail));
        }
        let mut first_error: Option<String> = None;
        // Every serial order that explains the outcomes, with how many outcomes it could not
        // check (they depended on the unknown effect of a faulted call ordered before them).
        let mut candidates: Vec<(usize, Model)> = Vec::new();
        for order in permutations(plan.len()) {
            let mut m = self.model.clone();
            let mut unchecked = 0;
            let mut ok = true;
            for &i in &order {
                let p = &plan[i];
                let failed = matches!(&observed[i], Observed::Denied(d) if d.is_store_failure());
                if failed {
                    let f = if faults[i].is_empty() {
                        None
                    } else {
                        Some(faults[i].as_slice())
                    };
                    m.step_faulted(p.now, &p.action, f);
                } else if m.depends_on_unsure(&p.action) {
                    unchecked += 1;
                    m.step_unchecked(p.now, &p.action, &observed[i]);
                } else if let Err(d) = m.step(p.now, &p.action, &observed[i]) {
                    first_error.get_or_insert_with(|| d.to_string());
                    ok = false;
                    break;
                }
            }
            if ok {
                candidates.push((unchecked, m));
            }
        }
        candidates.sort_by_key(|(unchecked, _)| *unchecked);
        let mut adopted = false;
        for (unchecked, mut m) in candidates {
            let stored = m.reconcile(&truth, fastest).and_then(|()| match leases {
                Some((_, tickets, slots)) => m.reconcile_dump(tickets, slots, fastest),
                None => Ok(()),
            });
            match stored {
                Ok(()) => {
                    self.model = m;
                    self.report.unchecked += unchecked as u64;
                    adopted = true;
                    break;
                }
                Err(e) => {
                    first_error.get_or_insert_with(|| format!("stored state: {e}"));
                }
            }
        }
        if !adopted {
            let what = if plan.len() > 1 {
                "no serial order of the concurrent operations explains their outcomes and the \
                 stored state; first mismatch:\n"
            } else {
                ""
            };
            return Err(self.fail(
                "model divergence",
                format!("{what}{}", first_error.unwrap_or_default()),
            ));
        }
        if let Some(d) = &dump
            && (self.step % 10 == 0 || self.step >= self.cfg.steps)
            && let Err(v) = self.checker.hash_at_rest(d)
        {
            return Err(self.fail(v.rule, v.detail));
        }
        Ok(())
    }

    /// Stops faults, moves time past every deadline, reaps everything, and checks nothing is
    /// left (INV-bounded-storage).
    async fn finish(&mut self) -> Result<(), SimFailure> {
        self.step += 1;
        self.per_mille.store(0, Ordering::SeqCst);
        let far = self.cfg.policy.absolute_lifetime() * 2
            + self.model.knob(Knob::RateWindow).unwrap_or_default()
            + self.cfg.max_skew * 2
            + Duration::from_secs(3600);
        self.t = self.t.saturating_add(far);
        for n in &mut self.nodes {
            n.step_ms = 0;
        }
        self.set_clocks();
        let node = self
            .nodes
            .iter()
            .enumerate()
            .min_by_key(|(_, n)| n.clock.now())
            .map_or(0, |(i, _)| i);
        let plan = vec![Planned {
            client: 0,
            node,
            now: self.nodes[node].clock.now(),
            action: Action::Reap { limit: usize::MAX },
        }];
        let obs = perform(&self.nodes[node].sessions, &plan[0].action).await;
        self.gate.take_notes();
        let observed = vec![obs];
        self.trace_group(&plan, &observed, &[Vec::new()]);
        self.count(&observed);
        self.audit(&plan, &observed, &[Vec::new()]).await?;
        if self.store.capabilities().native_expiry {
            return self.finish_native().await;
        }
        let (truth, dump) = self.truth().await?;
        if !truth.is_empty() {
            return Err(self.fail(
                "INV-bounded-storage",
                format!("{} sessions left after reaping everything", truth.len()),
            ));
        }
        if let Some(d) = dump {
            let (s, t, l) = decode_dump(&d);
            if !(s.is_empty() && t.is_empty() && l.is_empty()) {
                return Err(self.fail(
                    "INV-bounded-storage",
                    format!(
                        "{} sessions, {} tickets, {} slots left after reaping everything",
                        s.len(),
                        t.len(),
                        l.len()
                    ),
                ));
            }
        }
        let (certain, maybe) = self.model.stored_counts();
        if certain + maybe != 0 {
            return Err(self.fail(
                "model divergence",
                format!("the model still expects {certain} (+{maybe} maybe) records"),
            ));
        }
        Ok(())
    }
}

impl<S: Store + Clone> Sim<S> {
    /// INV-bounded-storage on a store with native expiry: its reap only tidies indexes and
    /// its own clock (perhaps far behind the callers') reclaims the records. So what is left
    /// is bounded if every key carries a deadline, and every record's is no later than the
    /// time the run ended at (every record the run wrote was due by then).
    async fn finish_native(&mut self) -> Result<(), SimFailure> {
        let keys = match self.store.key_deadlines().await {
            Ok(Some(keys)) => keys,
            Ok(None) => {
                return Err(self.fail(
                    "INV-bounded-storage",
                    "a store with native expiry must list its keys' deadlines (key_deadlines)",
                ));
            }
            Err(e) => {
                return Err(self.fail("store error", format!("fault-free key_deadlines: {e}")));
            }
        };
        let end = self
            .nodes
            .iter()
            .map(|n| n.clock.now())
            .max()
            .unwrap_or(self.t);
        for k in keys {
            let record = !matches!(k.holds, KeyHolds::Index);
            let bad = match k.deadline {
                None => Some("no deadline".to_owned()),
                Some(d) if record && d > end => {
                    Some(format!("deadline {d}, after the run's end {end}"))
                }
                Some(_) => None,
            };
            if let Some(why) = bad {
                return Err(self.fail(
                    "INV-bounded-storage",
                    format!(
                        "key {} ({:?}) left with {why}",
                        String::from_utf8_lossy(&k.key),
                        k.holds
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// Runs the simulation described by `config` over `store` (which should start empty; clones
/// must share data, as every adapter's handles do). Deterministic: the same store kind, seed
/// and configuration give the same trace (compare [`SimReport::trace_digest`]).
///
/// The store is driven through `Sessions` on every node, always via a fault-injecting
/// wrapper; the checks read it directly (fault-free). Stores without `raw_dump` skip the
/// ticket/slot comparisons and the hash-at-rest audit; stores whose dump does not hold the
/// codec's records (a SQL store's rows as text) skip the ticket/slot comparisons.
pub async fn simulate<S: Store + Clone>(
    store: S,
    config: SimConfig,
) -> Result<SimReport, SimFailure> {
    let mut sim = Sim::new(store, config);
    for _ in 0..sim.cfg.steps {
        sim.run_step().await?;
    }
    sim.finish().await?;
    let mut report = sim.report;
    report.steps = sim.cfg.steps;
    Ok(report)
}

/// Runs `simulate` for each seed in `seeds` with `make_config(seed)` over `make_store()`;
/// returns every report, or the first failure.
pub async fn simulate_many<S: Store + Clone>(
    seeds: impl IntoIterator<Item = u64>,
    mut make_store: impl FnMut() -> S,
    mut make_config: impl FnMut(u64) -> SimConfig,
) -> Result<Vec<SimReport>, SimFailure> {
    let mut out = Vec::new();
    for seed in seeds {
        out.push(simulate(make_store(), make_config(seed)).await?);
    }
    Ok(out)
}

/// Distinct subjects a simulation uses (for adapters that need to pre-provision them).
pub fn subjects() -> BTreeSet<String> {
    SUBJECTS.iter().map(|s| (*s).to_owned()).collect()
}
