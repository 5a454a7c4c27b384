//! What a case runs in: a fresh store, a manual clock and seeded entropy, plus small helpers.

use std::fmt;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use leasehold::store::{Store, StoreError};
use leasehold::{
    Capabilities, Clock, ManualClock, Policy, Resource, SeededEntropy, Sessions, Subject,
    SystemClock, Timestamp,
};
use leasehold_testkit::faults::Op;
use leasehold_testkit::hooked::{Hooked, Hooks};
use tokio::sync::{Barrier, oneshot};
use tokio::task::JoinHandle;

/// How far ahead of the wall clock a case's clock starts.
pub const CLOCK_LEAD: Duration = Duration::from_secs(3600);

/// A type-erased store, as cases see it.
pub type DynStore = Arc<dyn Store>;

/// Why a case failed: a one-line (or few-line) human-readable message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CaseError(pub String);

impl fmt::Display for CaseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<leasehold::Error> for CaseError {
    fn from(e: leasehold::Error) -> Self {
        CaseError(format!("unexpected engine error: {e} ({e:?})"))
    }
}

impl From<StoreError> for CaseError {
    fn from(e: StoreError) -> Self {
        CaseError(format!("unexpected store error: {e} ({e:?})"))
    }
}

impl From<leasehold::InputError> for CaseError {
    fn from(e: leasehold::InputError) -> Self {
        CaseError(format!("invalid test input: {e}"))
    }
}

impl From<leasehold::PolicyError> for CaseError {
    fn from(e: leasehold::PolicyError) -> Self {
        CaseError(format!("invalid test policy: {e:?}"))
    }
}

/// The result of one case body.
pub type CaseResult = Result<(), CaseError>;

/// Fails the case with a formatted message unless `cond` holds.
macro_rules! ensure {
    ($cond:expr, $($msg:tt)+) => {
        if !$cond {
            return Err($crate::env::CaseError(format!($($msg)+)));
        }
    };
}

/// Fails the case with a formatted message.
macro_rules! fail {
    ($($msg:tt)+) => {
        return Err($crate::env::CaseError(format!($($msg)+)))
    };
}

pub(crate) use {ensure, fail};

/// Everything one case runs against: a fresh store from the factory, a manual clock (cases
/// never sleep: they move this clock) and seeded entropy (so a failing case replays).
pub struct Env {
    store: DynStore,
    clock: ManualClock,
    entropy: SeededEntropy,
}

impl Env {
    /// An environment over `store`; `seed` drives every id and secret the case generates.
    ///
    /// Every call to the store yields to the scheduler before and after it (see
    /// [`Interleaving`]), so racing tasks interleave between the driver's load and its
    /// compare-and-swap even on an in-process store whose calls never wait.
    ///
    /// The clock starts one hour ahead of the wall clock (and never before
    /// [`ManualClock::default`]): a store that also applies a clock of its own (the later of
    /// the two, DESIGN §8: a server's `now()`, Redis `PEXPIREAT`) then never sees a record as
    /// expired before the case's clock does. Cases only use times relative to this start.
    pub fn new(store: DynStore, seed: u64) -> Self {
        let start = ManualClock::default()
            .now()
            .max(SystemClock.now().saturating_add(CLOCK_LEAD));
        Env {
            store: Arc::new(Hooked::new(store, YieldAround)),
            clock: ManualClock::new(start),
            entropy: SeededEntropy::new(seed),
        }
    }

    /// The store under test.
    pub fn store(&self) -> &DynStore {
        &self.store
    }

    /// What the store under test declares.
    pub fn capabilities(&self) -> Capabilities {
        self.store.capabilities()
    }

    /// The case's clock (shared with every `Sessions` built by this environment).
    pub fn clock(&self) -> &ManualClock {
        &self.clock
    }

    /// The current time on the case's clock.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Moves the case's clock forward.
    pub fn advance(&self, d: Duration) {
        self.clock.advance(d);
    }

    /// Sets the case's clock.
    pub fn set_time(&self, t: Timestamp) {
        self.clock.set(t);
    }

    /// `Sessions` over the store under test with `policy`, this clock and this entropy.
    pub fn sessions(&self, policy: Policy) -> Result<Arc<Sessions<DynStore>>, CaseError> {
        self.sessions_over(self.store.clone(), policy)
    }

    /// `Sessions` over another store (e.g. a fault-injecting wrapper of the store under test),
    /// with this clock and this entropy.
    pub fn sessions_over<S: Store>(
        &self,
        store: S,
        policy: Policy,
    ) -> Result<Arc<Sessions<S>>, CaseError> {
        Ok(Arc::new(
            Sessions::new(store, policy)?
                .with_clock(self.clock.clone())
                .with_entropy(self.entropy.clone()),
        ))
    }

    /// The case's entropy (clones share its state, so ids never repeat within a case).
    pub fn entropy(&self) -> &SeededEntropy {
        &self.entropy
    }

    /// `Sessions` over the store under test with a clock of its own: another process whose
    /// clock is skewed or stepped against the case's (it shares this entropy, so ids never
    /// collide). Move `clock` (a clone shares its time) to move that caller's time.
    pub fn sessions_at(
        &self,
        policy: Policy,
        clock: ManualClock,
    ) -> Result<Arc<Sessions<DynStore>>, CaseError> {
        self.sessions_over_at(self.store.clone(), policy, clock)
    }

    /// As [`Env::sessions_at`], over another store (e.g. one from [`Env::cas_hook`]).
    pub fn sessions_over_at<S: Store>(
        &self,
        store: S,
        policy: Policy,
        clock: ManualClock,
    ) -> Result<Arc<Sessions<S>>, CaseError> {
        Ok(Arc::new(
            Sessions::new(store, policy)?
                .with_clock(clock)
                .with_entropy(self.entropy.clone()),
        ))
    }

    /// The store under test behind a hook between a caller's load and its compare-and-swap:
    /// [`CasHook::arm`] parks the next swap made through the returned store until the case
    /// releases it, so a case can land another caller's write (a revoke, an observed expiry)
    /// exactly in that gap — the race a real request loses only rarely.
    pub fn cas_hook(&self) -> (DynStore, CasHook) {
        let hook = CasHook::default();
        let store: DynStore = Arc::new(Hooked::new(self.store.clone(), hook.clone()));
        (store, hook)
    }

    /// For stores with a clock of their own (`server_clock`): sets that clock so it reads `t`
    /// now, through [`Store::set_clock_offset`] (an offset from the wall clock, which the case
    /// clock leads by about [`CLOCK_LEAD`]). The store's clock keeps running with the wall
    /// clock afterwards, so it never reads earlier than `t`. `false` if the store has no clock.
    pub fn set_store_time(&self, t: Timestamp) -> bool {
        let offset = i128::from(t.as_millis()) - i128::from(SystemClock.now().as_millis());
        let offset = i64::try_from(offset).unwrap_or(if offset < 0 { i64::MIN } else { i64::MAX });
        self.store.set_clock_offset(offset)
    }
}

/// The case side of [`Env::cas_hook`]: arms a park of the next compare-and-swap.
#[derive(Clone, Default)]
pub struct CasHook {
    armed: Arc<std::sync::Mutex<Option<Armed>>>,
}

struct Armed {
    reached: oneshot::Sender<()>,
    release: oneshot::Receiver<()>,
}

impl CasHook {
    /// Parks the next compare-and-swap made through the hooked store (only that one: the
    /// caller's retries go through). The caller has loaded and decided by then; its write has
    /// not reached the store.
    pub fn arm(&self) -> Parked {
        let (reached_tx, reached_rx) = oneshot::channel();
        let (release_tx, release_rx) = oneshot::channel();
        *self.slot() = Some(Armed {
            reached: reached_tx,
            release: release_rx,
        });
        Parked {
            reached: Some(reached_rx),
            release: Some(release_tx),
        }
    }

    fn take(&self) -> Option<Armed> {
        self.slot().take()
    }

    fn slot(&self) -> std::sync::MutexGuard<'_, Option<Armed>> {
        // The guarded value is a plain Option: a panic elsewhere cannot leave it half-written.
        self.armed.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A compare-and-swap parked by [`CasHook::arm`]. Dropping it releases the swap.
pub struct Parked {
    reached: Option<oneshot::Receiver<()>>,
    release: Option<oneshot::Sender<()>>,
}

impl Parked {
    /// Waits until a swap is parked. Fails if `task` (the caller expected to make it) finishes
    /// first: it made no write, so the case would test nothing.
    pub async fn reached<T>(&mut self, task: &mut JoinHandle<T>) -> Result<(), CaseError> {
        let Some(reached) = self.reached.take() else {
            return Ok(());
        };
        tokio::select! {
            r = reached => r.map_err(|_| CaseError("the hook was dropped before a swap parked".into())),
            _ = task => Err(CaseError(
                "the hooked caller finished without a compare-and-swap: it decided no write".into(),
            )),
        }
    }

    /// Lets the parked swap go on to the store.
    pub fn release(mut self) {
        if let Some(tx) = self.release.take() {
            let _ = tx.send(());
        }
    }
}

/// A subject from a test name.
pub(crate) fn subject(name: &str) -> Result<Subject, CaseError> {
    Ok(Subject::new(name)?)
}

/// A resource from a test name.
pub(crate) fn resource(name: &str) -> Result<Resource, CaseError> {
    Ok(Resource::new(name)?)
}

/// Seconds.
pub(crate) const fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

/// Minutes.
pub(crate) const fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

/// Milliseconds.
pub(crate) const fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Runs `n` tasks on the runtime, released together by a barrier so they really race, and
/// returns their results in task order. A panicking task fails the case.
pub(crate) async fn race<T, F, Fut>(n: usize, make: F) -> Result<Vec<T>, CaseError>
where
    F: Fn(usize) -> Fut,
    Fut: Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let barrier = Arc::new(Barrier::new(n));
    let mut handles = Vec::with_capacity(n);
    for i in 0..n {
        let fut = make(i);
        let b = barrier.clone();
        handles.push(tokio::spawn(async move {
            b.wait().await;
            fut.await
        }));
    }
    let mut out = Vec::with_capacity(n);
    for (i, h) in handles.into_iter().enumerate() {
        match h.await {
            Ok(v) => out.push(v),
            Err(e) => return Err(CaseError(format!("racing task {i} failed: {e}"))),
        }
    }
    Ok(out)
}

/// Counts the items of `items` matching `pred`.
pub(crate) fn count<T>(items: &[T], pred: impl Fn(&T) -> bool) -> usize {
    items.iter().filter(|x| pred(x)).count()
}

/// A short description of results that did not match, for failure messages.
pub(crate) fn describe<T: fmt::Debug>(items: &[T]) -> String {
    let mut s = String::new();
    for (i, x) in items.iter().enumerate().take(8) {
        if i > 0 {
            s.push_str("; ");
        }
        s.push_str(&format!("{x:?}"));
    }
    if items.len() > 8 {
        s.push_str(&format!("; … ({} in all)", items.len()));
    }
    s
}

/// Hooks that yield to the Tokio scheduler before and after every call, so that concurrent
/// tasks really interleave between a load and the compare-and-swap that follows it, even when
/// the wrapped store (memory, an embedded database) never waits. Each wrapped call stays
/// exactly as atomic as the store makes it.
#[derive(Clone, Copy, Debug, Default)]
pub struct YieldAround;

#[async_trait]
impl Hooks for YieldAround {
    async fn before(&self, _: Op) {
        tokio::task::yield_now().await;
    }
    async fn after(&self, _: Op) {
        tokio::task::yield_now().await;
    }
}

/// The store under test as every case sees it: each call yields before and after.
pub type Interleaving<S> = Hooked<S, YieldAround>;

/// The hook of [`Env::cas_hook`]: parks the next compare-and-swap once armed.
#[async_trait]
impl Hooks for CasHook {
    async fn before(&self, op: Op) {
        if op != Op::Cas {
            return;
        }
        if let Some(armed) = self.take() {
            let _ = armed.reached.send(());
            // Released, or the case dropped its handle: go on either way.
            let _ = armed.release.await;
        }
    }
}
