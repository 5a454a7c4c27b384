//! Running operation sequences against the driver and the model in lockstep.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::executor::block_on;
use leasehold::{
    Clock, Event, EventSink, ManualClock, MemoryStore, Policy, SeededEntropy, SessionId, Sessions,
    Store, Timestamp,
};

use super::action::{Action, Observed, fill_evicted, perform};
use super::check::{Checker, Violation, decode_dump};
use super::ops::{ModelOp, PolicyChoice, jump_duration, resolve};
use super::state::{Model, ModelSettings};

/// An event sink whose events can be drained (cheap to clone: clones share the log).
#[derive(Clone, Default)]
pub(crate) struct EventLog {
    events: Arc<Mutex<Vec<Event>>>,
}

impl EventLog {
    /// Removes and returns everything emitted so far.
    pub(crate) fn take(&self) -> Vec<Event> {
        match self.events.lock() {
            Ok(mut e) => std::mem::take(&mut *e),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        }
    }
}

impl EventSink for EventLog {
    fn emit(&self, event: &Event) {
        if let Ok(mut e) = self.events.lock() {
            e.push(event.clone());
        }
    }
}

/// How many recent steps a violation report shows.
const RECENT: usize = 12;

/// `Sessions` over a store, a manual clock and seeded entropy, with the reference model and
/// the invariant checker run in lockstep: after every step, the outcome, every stored record
/// (via `raw_dump` when the store has it, else a load of every known session) and every
/// invariant are checked.
pub struct Harness<S: Store = MemoryStore> {
    sessions: Sessions<S>,
    clock: ManualClock,
    events: EventLog,
    model: Model,
    checker: Checker,
    policy: Policy,
    steps: usize,
    recent: VecDeque<String>,
    coverage: BTreeMap<String, u64>,
}

impl Harness<MemoryStore> {
    /// A harness over a fresh `MemoryStore` with the policy `choice`.
    pub fn new(choice: PolicyChoice) -> Self {
        Harness::with_store(MemoryStore::new(), choice.policy(), 0x5eed)
    }
}

impl<S: Store> Harness<S> {
    /// A harness over `store` (which must start empty) with `policy`; ids and secrets come
    /// from `SeededEntropy::new(seed)`.
    pub fn with_store(store: S, policy: Policy, seed: u64) -> Self {
        let clock = ManualClock::default();
        let events = EventLog::default();
        let settings = ModelSettings {
            native_expiry: store.capabilities().native_expiry,
        };
        let sessions = Sessions::new(store, policy.clone())
            .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"))
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(seed))
            .with_events(events.clone());
        Harness {
            sessions,
            clock,
            events,
            model: Model::new(&policy, settings),
            checker: Checker::new(&policy),
            policy,
            steps: 0,
            recent: VecDeque::new(),
            coverage: BTreeMap::new(),
        }
    }

    /// The driver under test.
    pub fn sessions(&self) -> &Sessions<S> {
        &self.sessions
    }

    /// The model.
    pub fn model(&self) -> &Model {
        &self.model
    }

    /// The clock's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// How often each (operation, outcome kind) occurred: shows what a run reached.
    pub fn coverage(&self) -> &BTreeMap<String, u64> {
        &self.coverage
    }

    /// Steps run so far.
    pub fn steps(&self) -> usize {
        self.steps
    }

    fn note(&mut self, line: String) {
        if self.recent.len() == RECENT {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("#{} {line}", self.steps));
    }

    fn fail(&self, mut v: Violation) -> Violation {
        v.step = self.steps;
        v.recent = self.recent.iter().cloned().collect();
        v
    }

    /// Runs one operation (or clock jump) and checks everything.
    pub fn step(&mut self, op: &ModelOp) -> Result<(), Violation> {
        self.steps += 1;
        let now = self.clock.now();
        let Some(action) = resolve(op, &self.model) else {
            if let ModelOp::Advance(j) = op {
                let d = jump_duration(j, &self.model, now);
                self.clock.advance(d);
                self.note(format!("advance {j:?} = {d:?} → {}", self.clock.now()));
            }
            return self.audit(None, None);
        };
        let mut obs = block_on(perform(&self.sessions, &action));
        fill_evicted(&mut obs, &self.events.take());
        self.note(format!("{action:?} @{now} → {}", obs.summary()));
        let kind = match &obs {
            Observed::Read { token: Some(t), .. }
            | Observed::Minted {
                renewed: Some(t), ..
            } => match self.model.lookup_token(t) {
                Some(_) => "ok+same token".to_owned(),
                None => "ok+new token".to_owned(),
            },
            other => other.kind(),
        };
        *self
            .coverage
            .entry(format!("{} → {kind}", action.name()))
            .or_default() += 1;
        self.checker
            .outcome(now, &action, &obs)
            .map_err(|v| self.fail(v))?;
        // On a divergence, the stored state is still checked first: a broken named invariant
        // says more than "the model disagrees".
        let diverged = self.model.step(now, &action, &obs).err();
        self.audit(Some((&action, &obs)), diverged.map(|d| d.to_string()))
    }

    /// Checks every invariant on the stored records, then (unless the model already
    /// diverged on the outcome) the stored records against the model.
    fn audit(
        &mut self,
        last: Option<(&Action, &Observed)>,
        diverged: Option<String>,
    ) -> Result<(), Violation> {
        let now = self.clock.now();
        let store = self.sessions.store();
        let dump = block_on(store.raw_dump())
            .map_err(|e| self.fail(Violation::new("store error", format!("raw_dump: {e}"))))?;
        let (records, tickets, slots) = match &dump {
            Some(d) => {
                let (r, t, s) = decode_dump(d);
                (r, Some(t), Some(s))
            }
            None => {
                let ids: Vec<SessionId> = self.model.sessions().map(|s| s.id).collect();
                let mut r = Vec::new();
                for id in ids {
                    match block_on(store.load_session(&id)).map(|l| l.record) {
                        Ok(Some(rec)) => r.push(*rec),
                        Ok(None) => {}
                        Err(e) => {
                            return Err(
                                self.fail(Violation::new("store error", format!("load: {e}")))
                            );
                        }
                    }
                }
                (r, None, None)
            }
        };
        let checks = self
            .checker
            .transition(last, &records)
            .and_then(|()| self.checker.records(&records))
            .and_then(|()| self.checker.caps(&records, slots.as_deref(), now))
            .and_then(|()| match last {
                Some((Action::RevokeSubject { subject }, Observed::Count(_))) => {
                    self.checker.revoked_all(&records, Some(subject), None)
                }
                Some((Action::RevokeResource { resource }, Observed::Count(_))) => {
                    self.checker.revoked_all(&records, None, Some(resource))
                }
                _ => Ok(()),
            })
            .and_then(|()| match (last, &tickets, &slots) {
                (Some((Action::Reap { limit }, Observed::Reaped(out))), Some(t), Some(s))
                    if (out.total() as u128) < (*limit as u128) =>
                {
                    self.checker.bounded(&records, t, s, now)
                }
                _ => Ok(()),
            })
            .and_then(|()| match &dump {
                Some(d) => self.checker.hash_at_rest(d),
                None => Ok(()),
            });
        if let Err(mut v) = checks {
            if let Some(d) = &diverged {
                v.detail = format!(
                    "{}\n(the model also diverged on the outcome:\n{d})",
                    v.detail
                );
            }
            return Err(self.fail(v));
        }
        if let Some(d) = diverged {
            return Err(self.fail(Violation::new("model divergence", d)));
        }
        let truth: BTreeMap<SessionId, _> = records.iter().map(|r| (r.id, r.clone())).collect();
        if let Err(e) = self.model.reconcile(&truth, now) {
            return Err(self.fail(Violation::new("model divergence (stored state)", e)));
        }
        if let (Some(t), Some(s)) = (&tickets, &slots)
            && let Err(e) = self.model.reconcile_dump(t, s, now)
        {
            return Err(self.fail(Violation::new("model divergence (stored state)", e)));
        }
        Ok(())
    }

    /// Ends a run: moves the clock past every deadline, reaps everything, and checks that
    /// nothing is left (INV-bounded-storage) and that no secret was ever stored.
    pub fn finish(&mut self) -> Result<(), Violation> {
        let far = self.policy.absolute_lifetime() * 2 + Duration::from_secs(3600);
        self.clock.advance(far);
        self.note(format!("advance {far:?} (finish)"));
        self.step(&ModelOp::Reap { limit: u8::MAX })?;
        let (certain, maybe) = self.model.stored_counts();
        if certain + maybe != 0 {
            return Err(self.fail(Violation::new(
                "INV-bounded-storage",
                format!("{certain} records (and {maybe} maybe) left after reaping everything"),
            )));
        }
        if let Ok(Some(d)) = block_on(self.sessions.store().raw_dump()) {
            let (s, t, l) = decode_dump(&d);
            if !(s.is_empty() && t.is_empty() && l.is_empty()) {
                return Err(self.fail(Violation::new(
                    "INV-bounded-storage",
                    format!(
                        "{} sessions, {} tickets, {} slots left after reaping everything",
                        s.len(),
                        t.len(),
                        l.len()
                    ),
                )));
            }
        }
        Ok(())
    }
}

/// Runs `ops` against `Sessions<MemoryStore>` and the model with the policy `choice`, checking
/// after every step; then [`finish`](Harness::finish)es. Returns the first divergence or broken
/// invariant. Synchronous (the memory store never waits), so a fuzz target can call it.
pub fn check_sequence(ops: &[ModelOp], choice: PolicyChoice) -> Result<(), Violation> {
    let mut h = Harness::new(choice);
    for op in ops {
        h.step(op)?;
    }
    h.finish()
}
