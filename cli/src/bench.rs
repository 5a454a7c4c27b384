//! `leasehold bench`: the hot paths of issue 11, each measured beside the raw store operation
//! it is built on, in the same process and run.
//!
//! ```text
//! leasehold bench --store memory:                                  # engine + MemoryStore rows
//! leasehold bench --store sled:/var/tmp/x --sessions 10000,1000000  # engine + sled rows
//! leasehold bench --store sled:/var/tmp/x --format json --rounds 9
//! leasehold bench --store postgres://postgres@127.0.0.1:5432/test  # server rows (bench_server)
//! leasehold bench --store redis+cluster://127.0.0.1:17001
//! ```
//!
//! Every round measures every row's leasehold operation and then its raw operation, back to
//! back; the table shows medians over the rounds (the ratio column is the median of the
//! per-round ratios). A ratio is "raw time ÷ leasehold time" (for reaping: leasehold rows/s ÷
//! raw rows/s), so 1.0 means "as fast as the store itself" and higher is better. Targets are
//! those of issue 11; a FAIL is a finding, not an error: the exit code is 0 whenever the
//! measurement ran, 1 if a store operation failed, 2 for bad arguments.

use std::collections::HashMap;
use std::fmt;
use std::hint::black_box;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use clap::Args;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leasehold::decide::read::{ReadMode, read};
use leasehold::{
    Context, CreateOptions, ManualClock, MemoryStore, OsEntropy, Policy, SessionId, SessionRecord,
    Sessions, Store, Subject, Timestamp, codec, decide, token,
};
use leasehold_sled::SledStore;
use serde::Serialize;

use crate::{ConfigError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Format, ProgressMode, StoreSpec};

/// Options of `leasehold bench`.
#[derive(Debug, Args)]
pub struct BenchArgs {
    /// The store to measure: `memory:` (engine and MemoryStore rows), `sled:PATH` (engine and
    /// sled rows; each size gets a fresh database in a temp dir under PATH, removed at the end),
    /// or `postgres://…`, `redis://…`, `redis+cluster://…` (server rows at concurrency 1 and 32;
    /// each size gets a fresh schema or key prefix, removed at the end).
    #[arg(long, value_name = "URL")]
    pub store: String,
    /// Live session counts to measure at, comma-separated (e.g. `10000,1000000`). With two or
    /// more, the validate rows also compare the largest size's ratio with the smallest's.
    #[arg(long, value_delimiter = ',', default_value = "10000")]
    pub sessions: Vec<usize>,
    /// Interleaved rounds (medians are taken over them).
    #[arg(long, default_value_t = 5)]
    pub rounds: usize,
    /// MemoryStore only: grow a store to this many sessions and report the longest single
    /// `create` (issue 11 asks for 5000000).
    #[arg(long, default_value_t = 1_000_000)]
    pub grow: usize,
    /// Tiny sizes and one round: checks that every row runs, measures nothing useful.
    #[arg(long)]
    pub quick: bool,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Also draw the rows that have a ratio as an SVG bar chart into FILE (bars against the raw
    /// operation at 1.0, ticks at the targets).
    #[arg(long, value_name = "FILE")]
    pub plot: Option<std::path::PathBuf>,
}

/// A failure while measuring (a store error, a decision that did not do what the row
/// measures): one line saying what failed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BenchError(pub String);

impl fmt::Display for BenchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for BenchError {}

/// `map_err` helper: "what failed: why".
pub(crate) fn fail<E: fmt::Display>(what: &str) -> impl FnOnce(E) -> BenchError + '_ {
    move |e| BenchError(format!("{what}: {e}"))
}

/// One round's measurement of a row: the leasehold value and, if the row has one, the raw
/// operation's.
pub(crate) type Sample = (f64, Option<f64>);

/// A row (its name, raw operation, unit and target) with one round's sample.
pub(crate) type Measured = (Row, Sample);

/// A row in nanoseconds per operation, its ratio judged against `at_least`.
pub(crate) fn ns_row(name: String, raw_op: &'static str, at_least: f64) -> Row {
    Row::new(name, raw_op, Unit::Ns, Target::RatioAtLeast(at_least))
}

/// What a row's numbers are.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Unit {
    /// Nanoseconds per operation (lower is better).
    Ns,
    /// Rows removed per second (higher is better).
    RowsPerSec,
    /// The longest single call, in nanoseconds.
    MaxNs,
    /// A ratio of two ratios (no absolute numbers).
    Ratio,
    /// Bytes per session (lower is better).
    BytesPerSession,
}

/// A row's target, from issue 11.
#[derive(Clone, Copy, Debug, PartialEq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Target {
    /// The leasehold value must be at most this many nanoseconds.
    AtMostNs(f64),
    /// The ratio must be at least this.
    RatioAtLeast(f64),
    /// The leasehold value must be at least this, in the row's unit (e.g. rows/s).
    AtLeast(f64),
    /// The leasehold value must be at most this, in the row's unit (e.g. bytes per session).
    AtMost(f64),
    /// No target: reported for information.
    None,
}

/// One row of the result.
#[derive(Clone, Debug, Serialize)]
pub struct Row {
    /// What was measured.
    pub name: String,
    /// The raw operation it is compared with (empty for engine rows).
    pub raw_op: &'static str,
    /// The unit of `leasehold` and `raw`.
    pub unit: Unit,
    /// Median leasehold value.
    pub leasehold: Option<f64>,
    /// Median raw value.
    pub raw: Option<f64>,
    /// Median of the per-round ratios (raw time ÷ leasehold time; rows/s ÷ raw rows/s).
    pub ratio: Option<f64>,
    /// The lowest per-round ratio: with `ratio_max`, how far one round's ratio strayed from
    /// the median (a ratio of ratios: the lowest its rounds allow).
    pub ratio_min: Option<f64>,
    /// The highest per-round ratio.
    pub ratio_max: Option<f64>,
    /// The target.
    pub target: Target,
    /// `PASS`, `FAIL` or `info` (no target).
    pub result: &'static str,
}

impl Row {
    pub(crate) fn new(name: String, raw_op: &'static str, unit: Unit, target: Target) -> Self {
        Row {
            name,
            raw_op,
            unit,
            leasehold: None,
            raw: None,
            ratio: None,
            ratio_min: None,
            ratio_max: None,
            target,
            result: "info",
        }
    }

    /// Fills in medians and the verdict from per-round samples `(leasehold, raw)`.
    pub(crate) fn with_samples(mut self, samples: &[Sample]) -> Self {
        self.leasehold = median(samples.iter().map(|s| s.0));
        self.raw = median(samples.iter().filter_map(|s| s.1));
        let ratios: Vec<f64> = samples
            .iter()
            .filter_map(|&(lh, raw)| {
                let raw = raw?;
                Some(match self.unit {
                    Unit::RowsPerSec => lh / raw,
                    _ => raw / lh,
                })
            })
            .filter(|r| r.is_finite())
            .collect();
        // A longest call is judged on its own, without a ratio.
        if self.unit != Unit::MaxNs {
            self.ratio = median(ratios.iter().copied());
            self.ratio_min = ratios.iter().copied().reduce(f64::min);
            self.ratio_max = ratios.iter().copied().reduce(f64::max);
        }
        self.judge()
    }

    /// A scale row: `large`'s ratio ÷ `small`'s (medians), spread from the lowest `large`
    /// over the highest `small` to the highest over the lowest. `None` if either has no ratio.
    pub(crate) fn ratio_of(mut self, large: &Row, small: &Row) -> Option<Self> {
        self.ratio = Some(large.ratio? / small.ratio?);
        self.ratio_min = Some(large.ratio_min? / small.ratio_max?);
        self.ratio_max = Some(large.ratio_max? / small.ratio_min?);
        Some(self.judge())
    }

    pub(crate) fn judge(mut self) -> Self {
        self.result = match (self.target, self.leasehold, self.ratio) {
            (Target::AtMostNs(t) | Target::AtMost(t), Some(v), _) => pass(v <= t),
            (Target::AtLeast(t), Some(v), _) => pass(v >= t),
            (Target::RatioAtLeast(t), _, Some(r)) => pass(r >= t),
            _ => "info",
        };
        self
    }
}

fn pass(ok: bool) -> &'static str {
    if ok { "PASS" } else { "FAIL" }
}

fn median(values: impl Iterator<Item = f64>) -> Option<f64> {
    let mut v: Vec<f64> = values.filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let mid = v.len() / 2;
    Some(if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2.0
    })
}

/// Nanoseconds per operation of `n` operations that took `elapsed`.
pub(crate) fn ns_per_op(n: usize, elapsed: Duration) -> f64 {
    elapsed.as_nanos() as f64 / n.max(1) as f64
}

/// Operations per second of `n` operations that took `elapsed`.
pub(crate) fn per_sec(n: usize, elapsed: Duration) -> f64 {
    n as f64 / elapsed.as_secs_f64().max(1e-9)
}

/// Reaps [`REAP_BATCH`] at a time until nothing is left, checks that exactly `expired`
/// sessions went, and returns the rate in rows/s.
pub(crate) async fn reap_all<S: Store>(
    sessions: &Sessions<S>,
    expired: usize,
) -> Result<f64, BenchError> {
    let start = Instant::now();
    let mut reaped = 0;
    loop {
        let out = sessions.reap(REAP_BATCH).await.map_err(fail("reap"))?;
        if out.sessions == 0 {
            break;
        }
        reaped += out.sessions as usize;
    }
    let rate = per_sec(reaped, start.elapsed());
    if reaped != expired {
        return Err(BenchError(format!(
            "reap removed {reaped} sessions, {expired} were expired"
        )));
    }
    Ok(rate)
}

/// `10k`, `1M`, `250`.
pub(crate) fn size_label(n: usize) -> String {
    if n >= 1_000_000 && n % 1_000_000 == 0 {
        format!("{}M", n / 1_000_000)
    } else if n >= 1_000 && n % 1_000 == 0 {
        format!("{}k", n / 1_000)
    } else {
        n.to_string()
    }
}

/// The sizes and counts a run uses.
#[derive(Clone, Debug)]
pub(crate) struct Plan {
    pub(crate) sizes: Vec<usize>,
    pub(crate) rounds: usize,
    grow: usize,
    /// Decisions per engine measurement.
    engine_ops: usize,
}

impl Plan {
    fn from_args(args: &BenchArgs) -> Result<Self, ConfigError> {
        if args.quick {
            return Ok(Plan {
                sizes: vec![200],
                rounds: 1,
                grow: 2_000,
                engine_ops: 1_000,
            });
        }
        let mut sizes = args.sessions.clone();
        sizes.sort_unstable();
        sizes.dedup();
        if sizes.is_empty() || sizes[0] < 100 {
            return Err(ConfigError(
                "--sessions needs sizes of at least 100, e.g. --sessions 10000,1000000".into(),
            ));
        }
        if !(1..=100).contains(&args.rounds) {
            return Err(ConfigError("--rounds must be between 1 and 100".into()));
        }
        if args.grow < 1_000 {
            return Err(ConfigError("--grow must be at least 1000".into()));
        }
        Ok(Plan {
            sizes,
            rounds: args.rounds,
            grow: args.grow,
            engine_ops: 20_000,
        })
    }

    /// Sessions read per validate measurement at size `n`.
    fn reads(&self, n: usize) -> usize {
        (n / 2).min(2_000)
    }

    /// Flushed writes (refreshes, revokes) per measurement at size `n`.
    fn writes(&self, n: usize) -> usize {
        (n / (4 * (self.rounds + 1))).clamp(1, 200)
    }
}

/// The policy of every bench driver: the defaults, with no automatic renewal (a validate
/// must not rotate) and a long idle timeout (each round moves the clock past the touch
/// granularity; the sessions must outlive every round).
pub(crate) fn bench_policy() -> Result<Policy, BenchError> {
    bench_policy_builder().build().map_err(fail("bench policy"))
}

/// [`bench_policy`], to add to.
pub(crate) fn bench_policy_builder() -> leasehold::PolicyBuilder {
    Policy::builder()
        .renewal_interval(None)
        .idle_timeout(Some(Duration::from_secs(24 * 3600)))
        .absolute_lifetime(Duration::from_secs(7 * 24 * 3600))
}

/// Where a bench driver's clock starts.
const T0: Timestamp = Timestamp::from_millis(1_700_000_000_000);

/// The touch granularity of [`bench_policy`], plus a second: each round moves the clock this
/// far so that every session is due a touch again.
pub(crate) const ROUND_STEP: Duration = Duration::from_secs(61);

/// Threads inserting into sled at once while loading: every insert is a flushed transaction,
/// and concurrent flushes share their `fsync`s (16 loaded twice as fast as 2 here; 64 no
/// faster than 16).
const SLED_LOADERS: usize = 16;

/// How many sessions a reap call or a raw batch removes.
pub(crate) const REAP_BATCH: usize = 1_000;

/// Runs one blocking future on a fresh single-threaded runtime.
fn block_on<F: Future>(f: F) -> Result<F::Output, BenchError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail("cannot start the async runtime"))?;
    Ok(rt.block_on(f))
}

/// Inserts `n` new sessions into `store` at `now` (4 per subject named `{prefix}-{i / 4}`),
/// `threads` inserting at a time, straight through [`Store::insert_session`] (no caps, so no
/// eviction). Each thread hands its records to `raw` in batches of 1000, so a raw store can
/// hold the same records. Returns every session's id and token.
fn load<S: Store>(
    store: &S,
    n: usize,
    threads: usize,
    prefix: &str,
    opts: &CreateOptions,
    now: Timestamp,
    raw: &(dyn Fn(&[SessionRecord]) -> Result<(), BenchError> + Sync),
) -> Result<Vec<(SessionId, String)>, BenchError> {
    let policy = bench_policy()?;
    let limits = decide::create::limits(&policy);
    let threads = threads.clamp(1, n.max(1));
    let load_range = |from: usize, to: usize| -> Result<Vec<(SessionId, String)>, BenchError> {
        block_on(async {
            let mut out = Vec::with_capacity(to - from);
            let mut batch = Vec::with_capacity(1_000);
            for i in from..to {
                let subject =
                    Subject::new(format!("{prefix}-{}", i / 4)).map_err(fail("subject"))?;
                let (record, token) =
                    decide::create::new_session(&subject, opts, now, &policy, &OsEntropy)
                        .map_err(fail("new session"))?;
                match store.insert_session(&record, &limits, now).await {
                    Ok(leasehold::store::InsertOutcome::Inserted { .. }) => {}
                    Ok(other) => return Err(BenchError(format!("insert refused: {other:?}"))),
                    Err(e) => return Err(fail("insert")(e)),
                }
                out.push((record.id, token.expose_secret().to_owned()));
                batch.push(record);
                if batch.len() == 1_000 {
                    raw(&batch)?;
                    batch.clear();
                }
            }
            raw(&batch)?;
            Ok(out)
        })?
    };
    // Contiguous ranges: a subject's sessions are inserted by one thread.
    let bound = |t: usize| {
        if t == threads {
            n
        } else {
            (n * t / threads) & !3
        }
    };
    let bounds: Vec<usize> = (0..=threads).map(bound).collect();
    let parts = std::thread::scope(|scope| {
        let handles: Vec<_> = bounds
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0], w[1]);
                scope.spawn(move || load_range(from, to))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(BenchError("a loader thread panicked".into())))
            })
            .collect::<Vec<_>>()
    });
    let mut all = Vec::with_capacity(n);
    for part in parts {
        all.extend(part?);
    }
    Ok(all)
}

/// A driver over `store` on a manual clock at [`T0`], with the OS entropy.
fn driver<S: Store>(store: S) -> Result<(Sessions<S>, ManualClock), BenchError> {
    let clock = ManualClock::new(T0);
    let s = Sessions::new(store, bench_policy()?)
        .map_err(fail("driver"))?
        .with_clock(clock.clone());
    Ok((s, clock))
}

/// The engine alone: one loaded record, no store.
struct Engine {
    record: SessionRecord,
    presented: token::Presented,
    policy: Policy,
    ops: usize,
}

impl Engine {
    fn new(ops: usize) -> Result<Self, BenchError> {
        let policy = Policy::default();
        let subject = Subject::new("bench").map_err(fail("subject"))?;
        let (record, tok) = decide::create::new_session(
            &subject,
            &CreateOptions::default(),
            T0,
            &policy,
            &OsEntropy,
        )
        .map_err(fail("new session"))?;
        let presented = token::parse(tok.expose_secret().as_bytes(), "lh1")
            .map_err(fail("token of a new session"))?;
        Ok(Engine {
            record,
            presented,
            policy,
            ops,
        })
    }

    /// The validate decision, no touch due: ns per decision.
    fn validate(&self) -> Result<Measured, BenchError> {
        let row = Row::new(
            "engine validate decision".into(),
            "",
            Unit::Ns,
            Target::AtMostNs(150.0),
        );
        Ok((row, (self.decide(ReadMode::Validate)?, None)))
    }

    /// The rotation decision (a refresh, with the OS entropy): ns per decision.
    fn rotation(&self) -> Result<Measured, BenchError> {
        let row = Row::new(
            "rotation decision (OsEntropy)".into(),
            "",
            Unit::Ns,
            Target::AtMostNs(500.0),
        );
        Ok((row, (self.decide(ReadMode::Refresh)?, None)))
    }

    /// ns per decision of `mode` at the record's creation time (no touch due).
    fn decide(&self, mode: ReadMode) -> Result<f64, BenchError> {
        let decide = || {
            read(
                Some(black_box(&self.record)),
                &self.presented,
                &Context::none(),
                mode,
                T0,
                &self.policy,
                &OsEntropy,
            )
        };
        let d = decide();
        match (&d.outcome, &d.write, mode) {
            (Ok(_), None, ReadMode::Validate) | (Ok(_), Some(_), ReadMode::Refresh) => {}
            _ => {
                return Err(BenchError(format!(
                    "engine {mode:?} decided {:?}",
                    d.outcome
                )));
            }
        }
        // Warm up first (caches, branch predictors, the CPU's clock): the rows run first.
        for _ in 0..self.ops {
            black_box(decide());
        }
        let start = Instant::now();
        for _ in 0..self.ops {
            black_box(decide());
        }
        Ok(ns_per_op(self.ops, start.elapsed()))
    }
}

/// A MemoryStore of `n` sessions beside a `Mutex<HashMap>` of the same records.
struct Memory {
    n: usize,
    sessions: Sessions<MemoryStore>,
    raw: Mutex<HashMap<SessionId, SessionRecord>>,
    sample: Vec<(SessionId, String)>,
}

impl Memory {
    fn new(n: usize, reads: usize) -> Result<Self, BenchError> {
        let (sessions, _clock) = driver(MemoryStore::new())?;
        let raw = Mutex::new(HashMap::with_capacity(n));
        let fill = |recs: &[SessionRecord]| {
            let mut map = raw
                .lock()
                .map_err(|_| BenchError("raw map poisoned".into()))?;
            map.extend(recs.iter().map(|r| (r.id, r.clone())));
            Ok(())
        };
        let all = load(
            sessions.store(),
            n,
            1,
            "user",
            &CreateOptions::default(),
            T0,
            &fill,
        )?;
        let sample = spread(&all, reads);
        Ok(Memory {
            n,
            sessions,
            raw,
            sample,
        })
    }

    /// Validate (no touch due) ÷ lock + `HashMap::get` + clone of the same records.
    async fn validate(&self) -> Result<Measured, BenchError> {
        let row = Row::new(
            format!("memory validate, no touch due @ {}", size_label(self.n)),
            "Mutex<HashMap> get+clone",
            Unit::Ns,
            Target::None,
        );
        let start = Instant::now();
        for (_, t) in &self.sample {
            black_box(
                self.sessions
                    .validate(t, &Context::none())
                    .await
                    .map_err(fail("memory validate"))?,
            );
        }
        let lh = ns_per_op(self.sample.len(), start.elapsed());
        let start = Instant::now();
        for (id, _) in &self.sample {
            let map = self
                .raw
                .lock()
                .map_err(|_| BenchError("raw map poisoned".into()))?;
            black_box(map.get(id).cloned());
        }
        Ok((
            row,
            (lh, Some(ns_per_op(self.sample.len(), start.elapsed()))),
        ))
    }
}

/// Every `len / k`-th element: a sample spread over the whole load.
pub(crate) fn spread<T: Clone>(all: &[T], k: usize) -> Vec<T> {
    let step = (all.len() / k.max(1)).max(1);
    all.iter().step_by(step).take(k).cloned().collect()
}

/// The longest single call while growing to `n`: `Sessions::create` on a MemoryStore, and
/// `insert` into a `Mutex<HashMap>` of records.
async fn grow(n: usize, progress: &Progress) -> Result<Sample, BenchError> {
    let (sessions, _clock) = driver(MemoryStore::new())?;
    let mut longest = Duration::ZERO;
    for i in 0..n {
        if i % 100_000 == 0 {
            progress.note(&format!("grow: {i}/{n} sessions"));
        }
        let subject = Subject::new(format!("grow-{}", i / 4)).map_err(fail("subject"))?;
        let start = Instant::now();
        let created = sessions.create(&subject, CreateOptions::default()).await;
        longest = longest.max(start.elapsed());
        created.map_err(fail("memory create"))?;
    }
    drop(sessions);
    let subject = Subject::new("grow").map_err(fail("subject"))?;
    let policy = Policy::default();
    let (template, _) =
        decide::create::new_session(&subject, &CreateOptions::default(), T0, &policy, &OsEntropy)
            .map_err(fail("new session"))?;
    let raw: Mutex<HashMap<SessionId, SessionRecord>> = Mutex::new(HashMap::new());
    let mut raw_longest = Duration::ZERO;
    for i in 0..n {
        let mut id = [0u8; leasehold::ID_TEXT_LEN / 2];
        id[..8].copy_from_slice(&(i as u64).to_be_bytes());
        let mut record = template.clone();
        record.id = SessionId::from_bytes(id);
        let start = Instant::now();
        raw.lock()
            .map_err(|_| BenchError("raw map poisoned".into()))?
            .insert(record.id, record);
        raw_longest = raw_longest.max(start.elapsed());
    }
    Ok((
        longest.as_nanos() as f64,
        Some(raw_longest.as_nanos() as f64),
    ))
}

/// A sled database of `n` sessions, with a raw tree (`bench.raw`, same `Db`) holding the same
/// records under the same ids.
struct Sled {
    n: usize,
    sessions: Sessions<SledStore>,
    clock: ManualClock,
    raw: sled::Tree,
    /// Validated (touch due, then not), and their current raw values.
    reads: Vec<(SessionId, String)>,
    raw_values: Vec<sled::IVec>,
    /// Refreshed every round (tokens replaced by each refresh).
    refresh: Vec<(SessionId, String)>,
    /// Revoked, `writes` a round.
    revoke: Vec<(SessionId, String)>,
    writes: usize,
    round: usize,
    _dir: tempfile::TempDir,
}

impl Sled {
    fn new(base: &Path, n: usize, plan: &Plan) -> Result<Self, BenchError> {
        std::fs::create_dir_all(base)
            .map_err(fail(&format!("cannot create directory {}", base.display())))?;
        let dir = tempfile::Builder::new()
            .prefix("leasehold-bench-")
            .tempdir_in(base)
            .map_err(fail("cannot create a temp dir"))?;
        let store = SledStore::open(dir.path()).map_err(fail("cannot open sled"))?;
        let raw = store
            .db()
            .open_tree("bench.raw")
            .map_err(fail("cannot open the raw tree"))?;
        let (sessions, clock) = driver(store)?;
        let all = load(
            sessions.store(),
            n,
            SLED_LOADERS,
            "user",
            &CreateOptions::default(),
            T0,
            &|recs| raw_insert(&raw, recs),
        )?;
        sessions.store().flush().map_err(fail("sled flush"))?;
        let (reads, writes) = (plan.reads(n), plan.writes(n));
        let reads: Vec<_> = spread(&all, reads);
        let read_ids: std::collections::HashSet<SessionId> =
            reads.iter().map(|(id, _)| *id).collect();
        let rest: Vec<_> = all
            .iter()
            .filter(|(id, _)| !read_ids.contains(id))
            .take(writes * (plan.rounds + 1))
            .cloned()
            .collect();
        let (refresh, revoke) = rest.split_at(writes.min(rest.len()));
        let raw_values = reads
            .iter()
            .map(|(id, _)| match raw.get(id.as_bytes()) {
                Ok(Some(v)) => Ok(v),
                Ok(None) => Err(BenchError("raw tree lost a record".into())),
                Err(e) => Err(fail("raw get")(e)),
            })
            .collect::<Result<_, _>>()?;
        Ok(Sled {
            n,
            sessions,
            clock,
            raw,
            reads,
            raw_values,
            refresh: refresh.to_vec(),
            revoke: revoke.to_vec(),
            writes,
            round: 0,
            _dir: dir,
        })
    }

    /// `what @ 10k`.
    fn named(&self, what: &str) -> String {
        format!("{what} @ {}", size_label(self.n))
    }

    fn flush(&self) -> Result<(), BenchError> {
        self.sessions.store().flush().map_err(fail("sled flush"))
    }

    /// Validate with a touch due (the clock just moved past the touch granularity) ÷ a raw
    /// single-key compare-and-swap of the same keys, unflushed (then both are flushed,
    /// untimed, so the next rows do not pay for these writes).
    ///
    /// Fair to both sides in two ways. (1) They are interleaved one operation at a time, and
    /// which goes first alternates: unflushed writes leave sled work to do, and a side run as
    /// a block right after the previous rows paid for all of it — measured as blocks, the ratio
    /// was 0.4 with leasehold first and 0.9 with the raw side first. (2) Each side's value is
    /// its **median** operation: a few operations a round (about 1 %) stall for 0.03–0.9 ms
    /// while sled writes out a full log buffer, on whichever side happens to be running, and
    /// a mean follows those few (one round's leasehold mean was 4× its median).
    async fn touch_due(&mut self) -> Result<Measured, BenchError> {
        let row = ns_row(self.named("sled validate, touch due"), "CAS, no flush", 0.8);
        self.clock.advance(ROUND_STEP);
        self.round += 1;
        let n = self.reads.len();
        let (mut lh, mut raw) = (Vec::with_capacity(n), Vec::with_capacity(n));
        for (i, ((id, t), old)) in self
            .reads
            .iter()
            .zip(self.raw_values.iter_mut())
            .enumerate()
        {
            let mut new = old.to_vec();
            flip(&mut new);
            for side in [i % 2, 1 - i % 2] {
                let start = Instant::now();
                if side == 0 {
                    black_box(
                        self.sessions
                            .validate(t, &Context::none())
                            .await
                            .map_err(fail("sled validate (touch due)"))?,
                    );
                    lh.push(start.elapsed());
                } else {
                    self.raw
                        .compare_and_swap(id.as_bytes(), Some(&*old), Some(&new[..]))
                        .map_err(fail("raw compare_and_swap"))?
                        .map_err(|_| BenchError("raw compare_and_swap lost".into()))?;
                    raw.push(start.elapsed());
                }
            }
            *old = new.into();
        }
        self.check_touched().await?;
        self.flush()?;
        let ns = |v: Vec<Duration>| median(v.iter().map(|d| d.as_nanos() as f64)).unwrap_or(0.0);
        Ok((row, (ns(lh), Some(ns(raw)))))
    }

    /// The first sampled session was touched at the current time (else the row measured
    /// something else).
    async fn check_touched(&self) -> Result<(), BenchError> {
        let Some((id, _)) = self.reads.first() else {
            return Ok(());
        };
        let loaded = self
            .sessions
            .store()
            .load_session(id)
            .await
            .map_err(fail("sled load"))?;
        match loaded.record {
            Some(r) if r.last_seen == self.clock_now() => Ok(()),
            _ => Err(BenchError(
                "a validate with a touch due did not write the touch".into(),
            )),
        }
    }

    fn clock_now(&self) -> Timestamp {
        self.sessions.now()
    }

    /// Validate with no touch due (the same sessions, just touched) ÷ raw `Tree::get`.
    async fn no_touch(&self) -> Result<Measured, BenchError> {
        let row = ns_row(self.named("sled validate, no touch due"), "Tree::get", 0.8);
        // Both sides read warm pages: otherwise the side timed second reads what the first
        // one just brought into sled's cache.
        for (id, _) in &self.reads {
            black_box(self.raw.get(id.as_bytes()).map_err(fail("raw get"))?);
            black_box(
                self.sessions
                    .store()
                    .load_session(id)
                    .await
                    .map_err(fail("load"))?,
            );
        }
        let start = Instant::now();
        for (_, t) in &self.reads {
            black_box(
                self.sessions
                    .validate(t, &Context::none())
                    .await
                    .map_err(fail("sled validate (no touch due)"))?,
            );
        }
        let lh = ns_per_op(self.reads.len(), start.elapsed());
        let start = Instant::now();
        for (id, _) in &self.reads {
            black_box(self.raw.get(id.as_bytes()).map_err(fail("raw get"))?);
        }
        Ok((
            row,
            (lh, Some(ns_per_op(self.reads.len(), start.elapsed()))),
        ))
    }

    /// Raw get + compare-and-swap + flush of each of `ids`; ns per op.
    fn raw_get_cas_flush(&self, ids: &[(SessionId, String)]) -> Result<f64, BenchError> {
        let start = Instant::now();
        for (id, _) in ids {
            let key = id.as_bytes();
            let Some(old) = self.raw.get(key).map_err(fail("raw get"))? else {
                return Err(BenchError("raw tree lost a record".into()));
            };
            let mut new = old.to_vec();
            flip(&mut new);
            self.raw
                .compare_and_swap(key, Some(old), Some(new))
                .map_err(fail("raw compare_and_swap"))?
                .map_err(|_| BenchError("raw compare_and_swap lost".into()))?;
            self.raw.flush().map_err(fail("raw flush"))?;
        }
        Ok(ns_per_op(ids.len(), start.elapsed()))
    }

    /// Refresh (a rotation, flushed) ÷ raw get + CAS + flush.
    async fn refresh(&mut self) -> Result<Measured, BenchError> {
        let row = ns_row(self.named("sled refresh"), "get+CAS+flush", 0.9);
        let start = Instant::now();
        for (_, t) in self.refresh.iter_mut() {
            let r = self
                .sessions
                .refresh(&*t, &Context::none())
                .await
                .map_err(fail("sled refresh"))?;
            *t = r.token.expose_secret().to_owned();
        }
        let lh = ns_per_op(self.refresh.len(), start.elapsed());
        Ok((row, (lh, Some(self.raw_get_cas_flush(&self.refresh)?))))
    }

    /// Revoke by token (`logout`, flushed) of fresh sessions ÷ raw get + CAS + flush.
    async fn revoke(&mut self) -> Result<Measured, BenchError> {
        let row = ns_row(self.named("sled revoke (logout)"), "get+CAS+flush", 0.9);
        let take = self.writes.min(self.revoke.len());
        let batch: Vec<_> = self.revoke.drain(..take).collect();
        if batch.is_empty() {
            return Err(BenchError("no sessions left to revoke".into()));
        }
        let start = Instant::now();
        for (_, t) in &batch {
            self.sessions.logout(t).await.map_err(fail("sled logout"))?;
        }
        let lh = ns_per_op(batch.len(), start.elapsed());
        Ok((row, (lh, Some(self.raw_get_cas_flush(&batch)?))))
    }

    /// Reap of `n / 10` expired sessions among the `n` (inserted, untimed, just before) ÷ raw
    /// batched remove of as many keys from the raw tree; rows/s.
    async fn reap(&mut self) -> Result<Measured, BenchError> {
        let expired = (self.n / 10).max(1);
        let row = Row::new(
            format!(
                "sled reap, {} expired among {}",
                size_label(expired),
                size_label(self.n)
            ),
            "batched remove",
            Unit::RowsPerSec,
            Target::RatioAtLeast(0.8),
        );
        let opts = CreateOptions {
            absolute_lifetime: Some(Duration::from_secs(1)),
            ..CreateOptions::default()
        };
        let now = self.clock_now();
        let cohort = load(
            self.sessions.store(),
            expired,
            SLED_LOADERS,
            &format!("expired-{}", self.round),
            &opts,
            now,
            &|recs| raw_insert(&self.raw, recs),
        )?;
        self.flush()?;
        self.clock.advance(Duration::from_secs(2));
        let lh = reap_all(&self.sessions, expired).await?;
        let start = Instant::now();
        for chunk in cohort.chunks(REAP_BATCH) {
            let mut batch = sled::Batch::default();
            for (id, _) in chunk {
                batch.remove(&id.as_bytes()[..]);
            }
            self.raw
                .apply_batch(batch)
                .map_err(fail("raw apply_batch"))?;
        }
        let raw = per_sec(cohort.len(), start.elapsed());
        self.flush()?;
        Ok((row, (lh, Some(raw))))
    }
}

/// Inserts `recs` (encoded as the adapter stores them) into the raw tree, unflushed.
fn raw_insert(raw: &sled::Tree, recs: &[SessionRecord]) -> Result<(), BenchError> {
    let mut batch = sled::Batch::default();
    for r in recs {
        batch.insert(&r.id.as_bytes()[..], codec::encode_session(r));
    }
    raw.apply_batch(batch).map_err(fail("raw apply_batch"))
}

/// Changes the last byte: a same-sized new value.
fn flip(v: &mut [u8]) {
    if let Some(b) = v.last_mut() {
        *b ^= 1;
    }
}

/// Progress on stderr: a bar on a terminal, plain lines otherwise.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    lines: bool,
}

impl Progress {
    pub(crate) fn new(mode: ProgressMode, steps: u64) -> Self {
        let bar = (mode == ProgressMode::Bar).then(|| {
            let bar = ProgressBar::with_draw_target(Some(steps), ProgressDrawTarget::stderr());
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {wide_msg}")
            {
                bar.set_style(style);
            }
            bar
        });
        Progress {
            bar,
            lines: mode == ProgressMode::Lines,
        }
    }

    /// A finished step.
    pub(crate) fn step(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_owned());
            bar.inc(1);
        } else if self.lines {
            eprintln!("{msg}");
        }
    }

    /// A note within a long step.
    pub(crate) fn note(&self, msg: &str) {
        if let Some(bar) = &self.bar {
            bar.set_message(msg.to_owned());
        } else if self.lines {
            eprintln!("  {msg}");
        }
    }

    pub(crate) fn finish(self) {
        if let Some(bar) = self.bar {
            bar.finish_and_clear();
        }
    }
}

/// What `leasehold bench` measured.
#[derive(Debug, Serialize)]
pub struct Benched {
    /// The store, as `check` names it.
    pub store: String,
    /// Session counts measured at.
    pub sessions: Vec<usize>,
    /// Rounds.
    pub rounds: usize,
    /// MemoryStore growth target (`None` for sled).
    pub grow: Option<usize>,
    /// The rows, in table order.
    pub rows: Vec<Row>,
}

/// Per-round samples of each row, kept in first-measured order.
#[derive(Default)]
pub(crate) struct Samples {
    rows: Vec<(Row, Vec<Sample>)>,
}

impl Samples {
    /// Keeps one round's measurement and reports the step.
    pub(crate) fn record(&mut self, progress: &Progress, round: usize, (row, sample): Measured) {
        progress.step(&format!("round {round}: {}", row.name));
        self.add(row, sample);
    }

    pub(crate) fn add(&mut self, row: Row, sample: Sample) {
        match self.rows.iter_mut().find(|(r, _)| r.name == row.name) {
            Some((_, v)) => v.push(sample),
            None => self.rows.push((row, vec![sample])),
        }
    }

    /// The leasehold value of the row's latest sample (this round's, right after its record).
    #[cfg(feature = "peers")]
    pub(crate) fn latest(&self, name: &str) -> Option<f64> {
        self.rows
            .iter()
            .find(|(r, _)| r.name == name)
            .and_then(|(_, v)| v.last())
            .map(|s| s.0)
    }

    pub(crate) fn finish(self) -> Vec<Row> {
        self.rows
            .into_iter()
            .map(|(row, samples)| row.with_samples(&samples))
            .collect()
    }
}

/// `ratio at the largest size ÷ ratio at the smallest` for each named validate row.
fn scale_rows(rows: &[Row], plan: &Plan) -> Vec<Row> {
    let (Some(&small), Some(&large)) = (plan.sizes.first(), plan.sizes.last()) else {
        return Vec::new();
    };
    if small == large {
        return Vec::new();
    }
    let (sl, ll) = (size_label(small), size_label(large));
    ["sled validate, no touch due", "sled validate, touch due"]
        .iter()
        .filter_map(|what| {
            let at = |label: &str| rows.iter().find(|r| r.name == format!("{what} @ {label}"));
            Row::new(
                format!("{what}: ratio @ {ll} ÷ @ {sl}"),
                "",
                Unit::Ratio,
                Target::RatioAtLeast(0.95),
            )
            .ratio_of(at(&ll)?, at(&sl)?)
        })
        .collect()
}

/// Runs `leasehold bench` (without printing the result).
pub fn bench(args: &BenchArgs, mode: ProgressMode) -> Result<Benched, BenchFailure> {
    let spec = crate::parse_store(&args.store).map_err(BenchFailure::Usage)?;
    let plan = Plan::from_args(args).map_err(BenchFailure::Usage)?;
    let base: Option<PathBuf> = match &spec {
        StoreSpec::Memory => None,
        StoreSpec::Sled(Some(p)) => Some(p.clone()),
        StoreSpec::Postgres(_) | StoreSpec::Redis(_) => {
            return crate::bench_server::run(
                &spec,
                plan.sizes.clone(),
                plan.rounds,
                args.quick,
                mode,
            )
            .map_err(BenchFailure::Failed);
        }
        _ => {
            return Err(BenchFailure::Usage(ConfigError(format!(
                "leasehold bench measures memory:, sled:PATH, postgres://…, redis://… or \
                 redis+cluster://…, not {}",
                spec.label()
            ))));
        }
    };
    run(&spec.label(), base.as_deref(), &plan, mode).map_err(BenchFailure::Failed)
}

/// Why `leasehold bench` did not produce a table.
#[derive(Debug)]
pub enum BenchFailure {
    /// Bad arguments (exit code 2).
    Usage(ConfigError),
    /// A measurement failed (exit code 1).
    Failed(BenchError),
}

fn run(
    label: &str,
    sled_base: Option<&Path>,
    plan: &Plan,
    mode: ProgressMode,
) -> Result<Benched, BenchError> {
    let per_round = match sled_base {
        Some(_) => 2 + 5 * plan.sizes.len(),
        None => 2 + plan.sizes.len(),
    };
    let setup = plan.sizes.len() + usize::from(sled_base.is_none());
    let progress = Progress::new(mode, (setup + per_round * plan.rounds) as u64);
    let engine = Engine::new(plan.engine_ops)?;
    let mut samples = Samples::default();
    let mut grow_row = None;
    match sled_base {
        Some(base) => {
            let mut fixtures = Vec::new();
            for &n in &plan.sizes {
                let start = Instant::now();
                progress.note(&format!("loading {n} sessions into sled"));
                fixtures.push(Sled::new(base, n, plan)?);
                let secs = start.elapsed().as_secs_f64();
                progress.step(&format!("loaded {n} sessions into sled in {secs:.1} s"));
            }
            for round in 1..=plan.rounds {
                samples.record(&progress, round, engine.validate()?);
                samples.record(&progress, round, engine.rotation()?);
                for f in &mut fixtures {
                    samples.record(&progress, round, block_on(f.touch_due())??);
                    samples.record(&progress, round, block_on(f.no_touch())??);
                    samples.record(&progress, round, block_on(f.refresh())??);
                    samples.record(&progress, round, block_on(f.revoke())??);
                    samples.record(&progress, round, block_on(f.reap())??);
                }
            }
        }
        None => {
            let mut fixtures = Vec::new();
            for &n in &plan.sizes {
                progress.note(&format!("loading {n} sessions into memory"));
                fixtures.push(Memory::new(n, plan.reads(n))?);
                progress.step(&format!("loaded {n} sessions into memory"));
            }
            for round in 1..=plan.rounds {
                samples.record(&progress, round, engine.validate()?);
                samples.record(&progress, round, engine.rotation()?);
                for f in &fixtures {
                    samples.record(&progress, round, block_on(f.validate())??);
                }
            }
            drop(fixtures);
            let row = Row::new(
                format!(
                    "memory longest create, growing to {}",
                    size_label(plan.grow)
                ),
                "HashMap insert",
                Unit::MaxNs,
                Target::AtMostNs(10e6),
            );
            grow_row = Some(row.with_samples(&[block_on(grow(plan.grow, &progress))??]));
            progress.step("grow");
        }
    }
    progress.finish();
    let mut rows = samples.finish();
    rows.extend(scale_rows(&rows, plan));
    rows.extend(grow_row);
    Ok(Benched {
        store: label.to_owned(),
        sessions: plan.sizes.clone(),
        rounds: plan.rounds,
        grow: sled_base.is_none().then_some(plan.grow),
        rows,
    })
}

/// `206 ns`, `1.59 µs`, `4.90 ms`, `1.20 s`.
fn fmt_ns(ns: f64) -> String {
    if ns < 1e3 {
        format!("{ns:.0} ns")
    } else if ns < 1e6 {
        format!("{:.2} µs", ns / 1e3)
    } else if ns < 1e9 {
        format!("{:.2} ms", ns / 1e6)
    } else {
        format!("{:.2} s", ns / 1e9)
    }
}

fn fmt_value(unit: Unit, v: Option<f64>) -> String {
    match (unit, v) {
        (_, None) | (Unit::Ratio, _) => "—".to_owned(),
        (Unit::RowsPerSec, Some(v)) => format!("{:.1} k/s", v / 1e3),
        (Unit::Ns | Unit::MaxNs, Some(v)) => fmt_ns(v),
        (Unit::BytesPerSession, Some(v)) => format!("{v:.0} B"),
    }
}

pub(crate) fn fmt_target(t: Target, unit: Unit) -> String {
    match t {
        Target::AtLeast(v) => format!("≥ {}", fmt_value(unit, Some(v))),
        Target::AtMost(v) => format!("≤ {}", fmt_value(unit, Some(v))),
        Target::AtMostNs(ns) => format!("≤ {}", fmt_ns(ns)),
        Target::RatioAtLeast(r) => format!("≥ {r}"),
        Target::None => "—".to_owned(),
    }
}

/// Writes the table: a header naming the store and sizes, then one row per measurement
/// (row, leasehold, raw operation and value, ratio, target, result).
pub fn write_table(out: &mut dyn Write, b: &Benched) -> std::io::Result<()> {
    writeln!(
        out,
        "store: {}  sessions: {}  rounds: {}{}",
        b.store,
        b.sessions
            .iter()
            .map(|&n| size_label(n))
            .collect::<Vec<_>>()
            .join(","),
        b.rounds,
        b.grow
            .map(|g| format!("  grow: {}", size_label(g)))
            .unwrap_or_default()
    )?;
    writeln!(out)?;
    let cells: Vec<[String; 7]> = b
        .rows
        .iter()
        .map(|r| {
            let raw = match r.raw {
                Some(_) => format!("{} {}", fmt_value(r.unit, r.raw), r.raw_op),
                None => "—".to_owned(),
            };
            [
                r.name.clone(),
                fmt_value(r.unit, r.leasehold),
                raw,
                r.ratio.map_or("—".to_owned(), |x| format!("{x:.2}")),
                match (r.ratio_min, r.ratio_max) {
                    (Some(lo), Some(hi)) => format!("{lo:.2}–{hi:.2}"),
                    _ => "—".to_owned(),
                },
                fmt_target(r.target, r.unit),
                r.result.to_owned(),
            ]
        })
        .collect();
    let header = [
        "ROW",
        "LEASEHOLD",
        "RAW",
        "RATIO",
        "SPREAD",
        "TARGET",
        "RESULT",
    ];
    let width = |i: usize| {
        cells
            .iter()
            .map(|c| c[i].chars().count())
            .chain([header[i].len()])
            .max()
            .unwrap_or(0)
    };
    let w: Vec<usize> = (0..7).map(width).collect();
    let line = |out: &mut dyn Write, c: [&str; 7]| {
        let pad =
            |s: &str, w: usize| format!("{s}{}", " ".repeat(w.saturating_sub(s.chars().count())));
        writeln!(
            out,
            "{}  {}  {}  {}  {}  {}  {}",
            pad(c[0], w[0]),
            pad(c[1], w[1]),
            pad(c[2], w[2]),
            pad(c[3], w[3]),
            pad(c[4], w[4]),
            pad(c[5], w[5]),
            c[6]
        )
    };
    line(out, header)?;
    for c in &cells {
        line(out, [&c[0], &c[1], &c[2], &c[3], &c[4], &c[5], &c[6]])?;
    }
    let fails = b.rows.iter().filter(|r| r.result == "FAIL").count();
    let passes = b.rows.iter().filter(|r| r.result == "PASS").count();
    writeln!(out)?;
    writeln!(
        out,
        "RATIO is the median of the per-round ratios; SPREAD, their lowest–highest."
    )?;
    writeln!(
        out,
        "{passes} PASS, {fails} FAIL (a measurement: the exit code is 0 either way)"
    )
}

/// Writes the result as one JSON document: `{"store", "sessions", "rounds", "grow", "rows":
/// [{"name", "raw_op", "unit", "leasehold", "raw", "ratio", "ratio_min", "ratio_max",
/// "target", "result"}]}`.
pub fn write_json(out: &mut dyn Write, b: &Benched) -> std::io::Result<()> {
    serde_json::to_writer_pretty(&mut *out, b).map_err(std::io::Error::other)?;
    writeln!(out)
}

/// `leasehold bench`: measures, prints, and returns the exit code.
pub fn main(args: &BenchArgs) -> ExitCode {
    let benched = match bench(args, ProgressMode::detect()) {
        Ok(b) => b,
        Err(BenchFailure::Usage(e)) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
        Err(BenchFailure::Failed(e)) => {
            eprintln!("error: the measurement failed: {e}");
            return ExitCode::from(EXIT_FAILED);
        }
    };
    let mut stdout = std::io::stdout().lock();
    let written = match args.format {
        Format::Table => write_table(&mut stdout, &benched),
        Format::Json => write_json(&mut stdout, &benched),
    };
    if let Err(e) = written.and_then(|()| stdout.flush()) {
        eprintln!("error: cannot write the report: {e}");
        return ExitCode::from(EXIT_FAILED);
    }
    if let Some(path) = &args.plot
        && let Err(e) = std::fs::write(path, crate::bench_plot::svg(&benched))
    {
        eprintln!("error: cannot write the plot {}: {e}", path.display());
        return ExitCode::from(EXIT_FAILED);
    }
    ExitCode::from(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn medians_and_labels() {
        assert_eq!(median([3.0, 1.0, 2.0].into_iter()), Some(2.0));
        assert_eq!(median([4.0, 1.0].into_iter()), Some(2.5));
        assert_eq!(median(std::iter::empty()), None);
        assert_eq!(size_label(10_000), "10k");
        assert_eq!(size_label(1_000_000), "1M");
        assert_eq!(size_label(250), "250");
    }

    #[test]
    fn ratios_are_raw_over_leasehold() {
        let row = Row::new("x".into(), "get", Unit::Ns, Target::RatioAtLeast(0.8)).with_samples(&[
            (200.0, Some(100.0)),
            (100.0, Some(90.0)),
            (400.0, Some(100.0)),
        ]);
        assert_eq!(row.ratio, Some(0.5));
        assert_eq!((row.ratio_min, row.ratio_max), (Some(0.25), Some(0.9)));
        assert_eq!(row.result, "FAIL");
        let reap = Row::new(
            "r".into(),
            "rm",
            Unit::RowsPerSec,
            Target::RatioAtLeast(0.8),
        )
        .with_samples(&[(90.0, Some(100.0))]);
        assert_eq!(reap.ratio, Some(0.9));
        assert_eq!(reap.result, "PASS");
    }
}
