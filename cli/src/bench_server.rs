//! `leasehold bench --store postgres://… | redis://… | redis+cluster://…`: the server stores'
//! hot paths (issue 14), each beside the raw server operation it is built on, sent through
//! the same client library on the same pool or connection.
//!
//! Each size gets a store of its own (a fresh PostgreSQL schema, or a fresh Redis key prefix),
//! loaded by 32 concurrent inserts (PostgreSQL: bulk imports, the same rows) and removed at the
//! end (also after an error). Every round
//! measures, per size and at concurrency 1 and 32 (tokio tasks on one current-thread runtime
//! sharing the store; ns per op = wall time ÷ total ops), each row's leasehold operation and
//! right after it the raw one:
//!
//! | row | leasehold | raw (PostgreSQL) | raw (Redis) |
//! |---|---|---|---|
//! | validate, no touch | `validate` | `SELECT *` by primary key | `GET` of the session key |
//! | … vs the read with the clock (information) | the same | the same with `clock_ms(0)` | `GET` + `TIME`, one pipeline |
//! | validate, touch due | `validate` (writes the touch) | `UPDATE … WHERE id AND version`, asynchronous commit (a touch is a routine write) | `EVALSHA` compare-version-and-`SET` |
//! | refresh | `refresh` (a rotation) | the same `UPDATE` | the same script |
//! | create | `create` (no cap) | single-row `INSERT` | `SET … PXAT` |
//! | create, subject cap | `create` under a subject cap of 4 (a new subject each: counted, nothing evicted) | the same `INSERT` | the same `SET` |
//! | revoke by id | `trusted_by_id().revoke` | the same `UPDATE` | the same script |
//! | ticket mint+redeem | `mint_ticket` (validates, stores the ticket) then `redeem_ticket` | `INSERT` then `DELETE … RETURNING` of a 64-byte row | `SET … PXAT` then `GETDEL` |
//! | slot acquire+release | `acquire_slot` then `release_slot` | the same pair | the same pair |
//!
//! The raw compare-and-swap on PostgreSQL updates what a touch moves (`version`,
//! `last_seen_at`, `expires_at`) on session rows that no leasehold row uses. On Redis it runs
//! on copies of session records under keys of their own (`P:bench:{tag}:<id>`, the session's
//! hash slot), each holding a 20-digit version then the encoded record: the script `GET`s the
//! key, compares the version and `SET`s a same-sized value with `PXAT`.
//!
//! The engine's clock is a [`ManualClock`] starting an hour ahead of the system clock (these
//! stores judge at the later of the caller's clock and their own, so the manual clock must
//! lead), moved by [`ROUND_STEP`] before each touch-due measurement so that a touch is due.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use leasehold::store::WriteClass;
use leasehold::{
    CapPolicy, Clock, Context, CreateOptions, ManualClock, OsEntropy, SessionId, SessionRecord,
    Sessions, Store, Subject, SubjectCap, SystemClock, Timestamp, codec, decide,
};
use leasehold_postgres::PostgresStore;
use leasehold_redis::RedisStore;
use sqlx::PgPool;
use sqlx::postgres::PgRow;

use crate::bench::{
    BenchError, Benched, Measured, Progress, REAP_BATCH, ROUND_STEP, Row, Samples, Target, Unit,
    bench_policy, bench_policy_builder, fail, ns_per_op, ns_row, per_sec, reap_all, size_label,
    spread,
};
use crate::{DropSchema, ProgressMode, StoreSpec};

/// Rows measured at each concurrency (touch due, no touch, refresh, create, create with a
/// cap, revoke, ticket, slot).
const ROWS_PER_CONCURRENCY: usize = 8;

/// The subject cap of the capped create row.
const CREATE_CAP: u32 = 4;

/// The concurrencies every row is measured at.
const CONCURRENCY: [usize; 2] = [1, 32];

/// Concurrent inserts while loading.
const LOADERS: usize = 32;

/// Pool size of the PostgreSQL store (enough for [`CONCURRENCY`]'s 32 tasks).
const PG_CONNECTIONS: u32 = 32;

/// Bytes of every loaded session's subject.
const SUBJECT_LEN: usize = 64;

/// What to do when a server does not answer.
const START_HINT: &str = "is the server running? start the test servers with scripts/services.sh";

/// Runs the server rows of `leasehold bench` for `spec` (a `postgres://` or `redis://` store).
pub(crate) fn run(
    spec: &StoreSpec,
    sizes: Vec<usize>,
    rounds: usize,
    quick: bool,
    mode: ProgressMode,
) -> Result<Benched, BenchError> {
    // One client thread: every task, the connections' driver tasks and the I/O driver share
    // it, so a round trip never waits on a wake-up handed between worker threads. On a
    // multi-thread runtime a c=1 row measured either ~15 or ~100 µs per round trip on this
    // 2-core VM depending on whether a worker happened to be spinning, and the ratio of one
    // row swung from 0.09 to 1.96 between runs (docs/benchmarks.md, *Server stores*).
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(fail("cannot start the async runtime"))?;
    let reap = usize::from(matches!(spec, StoreSpec::Postgres(_)));
    let steps =
        sizes.len() + rounds * sizes.len() * (CONCURRENCY.len() * ROWS_PER_CONCURRENCY + reap);
    let progress = Progress::new(mode, steps as u64);
    let counts = Counts { quick, rounds };
    let rows = match spec {
        StoreSpec::Postgres(url) => {
            let mut guards = Vec::new();
            let r = rt.block_on(postgres(url, &sizes, counts, &progress, &mut guards));
            drop(rt); // the pools' connections close before the schemas are dropped
            drop(guards);
            r?
        }
        StoreSpec::Redis(url) => {
            let mut guards = Vec::new();
            let r = rt.block_on(redis(url, &sizes, counts, &progress, &mut guards));
            drop(rt);
            drop(guards);
            r?
        }
        _ => {
            return Err(BenchError(format!(
                "{} is not a server store",
                spec.label()
            )));
        }
    };
    progress.finish();
    Ok(Benched {
        store: spec.label(),
        sessions: sizes,
        rounds,
        grow: None,
        rows,
    })
}

/// How many operations each measurement makes.
#[derive(Clone, Copy, Debug)]
struct Counts {
    quick: bool,
    rounds: usize,
}

impl Counts {
    /// Operations per peer measurement (each peer, operation and concurrency).
    #[cfg(feature = "peers")]
    fn peer_ops(self) -> usize {
        if self.quick { 20 } else { 2_000 }
    }

    /// Sessions validated (then raw-read) per measurement at size `n`.
    fn reads(self, n: usize) -> usize {
        (n / 4).clamp(1, 1_000)
    }

    /// Refreshes, creates and revokes per measurement at size `n`: revokes take fresh
    /// sessions every measurement, so all of them fit in a quarter of the load.
    fn writes(self, n: usize) -> usize {
        let cap = if self.quick { 10 } else { 250 };
        (n / (4 * (CONCURRENCY.len() * self.rounds + 3))).clamp(1, cap)
    }
}

/// Names schemas and prefixes: `leasehold_bench_<pid>_<n>`.
static NEXT: AtomicU64 = AtomicU64::new(0);

fn unique(sep: char) -> String {
    format!(
        "leasehold{sep}bench{sep}{}{sep}{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// A Redis key prefix as long as the default `leasehold` (9 bytes: key names are part of the
/// memory per session), unique to this process and fixture: `lhb` and 6 hex digits.
fn redis_prefix() -> String {
    let n = u64::from(std::process::id()) << 8 | NEXT.fetch_add(1, Ordering::Relaxed);
    format!("lhb{:06x}", n & 0xff_ffff)
}

async fn postgres(
    url: &str,
    sizes: &[usize],
    counts: Counts,
    progress: &Progress,
    guards: &mut Vec<DropSchema>,
) -> Result<Vec<Row>, BenchError> {
    let shown = StoreSpec::Postgres(url.to_owned()).label();
    let mut fixtures = Vec::new();
    for &n in sizes {
        let schema = unique('_');
        let options = leasehold_postgres::recommended_connect_options(url)
            .map_err(fail(&format!("bad PostgreSQL URL {shown}")))?;
        let pool = leasehold_postgres::recommended_pool_options()
            .max_connections(PG_CONNECTIONS)
            .connect_with(options)
            .await
            .map_err(|e| {
                BenchError(format!(
                    "cannot connect to PostgreSQL at {shown}: {e} ({START_HINT})"
                ))
            })?;
        guards.push(DropSchema {
            url: url.to_owned(),
            schema: schema.clone(),
        });
        let store = PostgresStore::open(pool.clone(), &schema)
            .await
            .map_err(fail("cannot open the PostgreSQL store"))?;
        let loader = Loader::Import(store.clone());
        let raw = Raw::Postgres(Arc::new(PgRaw::new(pool, &schema)));
        let f = Fixture::load(store, loader, raw, "postgres", n, counts, progress).await?;
        fixtures.push(f);
    }
    measure(&mut fixtures, url, counts, progress).await
}

async fn redis(
    url: &str,
    sizes: &[usize],
    counts: Counts,
    progress: &Progress,
    guards: &mut Vec<crate::redis_store::Cleanup>,
) -> Result<Vec<Row>, BenchError> {
    let mut fixtures = Vec::new();
    for &n in sizes {
        let prefix = redis_prefix();
        guards.push(crate::redis_store::Cleanup {
            url: url.to_owned(),
            prefix: prefix.clone(),
        });
        let config = crate::redis_store::config(url).map_err(BenchError)?;
        let store = RedisStore::open(config.prefix(prefix))
            .await
            .map_err(|e| BenchError(format!("cannot use Redis: {e} ({START_HINT})")))?;
        let kind = if store.is_cluster() {
            "redis cluster"
        } else {
            "redis"
        };
        let raw = Raw::Redis(Arc::new(RedisRaw::new(store.clone())));
        let f = Fixture::load(store, Loader::Each, raw, kind, n, counts, progress).await?;
        fixtures.push(f);
    }
    measure(&mut fixtures, url, counts, progress).await
}

/// For two or more sizes: each read and touch row's ratio to its raw operation at the largest
/// size ÷ the same ratio at the smallest (target ≥ 0.95: leasehold adds nothing that grows
/// with the live count that the raw operation does not).
fn scale_rows(rows: &[Row], kind: &str, sizes: &[usize]) -> Vec<Row> {
    let (Some(&small), Some(&large)) = (sizes.iter().min(), sizes.iter().max()) else {
        return Vec::new();
    };
    if small == large {
        return Vec::new();
    }
    let (sl, ll) = (size_label(small), size_label(large));
    let mut out = Vec::new();
    for what in ["validate, no touch", "validate, touch due", "refresh"] {
        for c in CONCURRENCY {
            let at = |label: &str| {
                let name = format!("{kind} {what}, {label}, c={c}");
                rows.iter().find(|r| r.name == name)
            };
            let (Some(large), Some(small)) = (at(&ll), at(&sl)) else {
                continue;
            };
            let row = Row::new(
                format!("{kind} {what}, c={c}: ratio @ {ll} ÷ @ {sl}"),
                "",
                Unit::Ratio,
                Target::RatioAtLeast(0.95),
            );
            out.extend(row.ratio_of(large, small));
        }
    }
    out
}

/// Every round: every fixture, every concurrency, every row, then (with the `peers` feature,
/// on a standalone server) the peers at every size; after the rounds, the scale rows.
async fn measure<S: Store + Clone + 'static>(
    fixtures: &mut [Fixture<S>],
    url: &str,
    counts: Counts,
    progress: &Progress,
) -> Result<Vec<Row>, BenchError> {
    let Some(kind) = fixtures.first().map(|f| f.kind) else {
        return Ok(Vec::new());
    };
    // The peers run on standalone servers only (tower-sessions' Redis store has no Cluster
    // mode), so a Cluster run compares with the raw operations alone.
    #[cfg(feature = "peers")]
    let peers = match kind {
        "postgres" => Some(crate::bench_peers::PeerServer::Postgres(url.to_owned())),
        "redis" => Some(crate::bench_peers::PeerServer::Redis(
            crate::redis_store::options(url).map_err(BenchError)?.0,
        )),
        _ => None,
    };
    #[cfg(not(feature = "peers"))]
    let _ = url;
    let mut samples = Samples::default();
    for f in fixtures.iter() {
        for (row, sample) in f.footprint_rows() {
            samples.add(row, sample);
        }
    }
    for round in 1..=counts.rounds {
        for f in fixtures.iter_mut() {
            for (slot, &c) in CONCURRENCY.iter().enumerate() {
                samples.record(progress, round, f.touch_due(c).await?);
                let (no_touch, (row, sample)) = f.no_touch(c).await?;
                samples.record(progress, round, no_touch);
                samples.add(row, sample);
                samples.record(progress, round, f.refresh(slot, c).await?);
                samples.record(progress, round, f.create(c, false).await?);
                samples.record(progress, round, f.create(c, true).await?);
                samples.record(progress, round, f.revoke(c).await?);
                samples.record(progress, round, f.ticket(c).await?);
                samples.record(progress, round, f.slot(c).await?);
            }
            if let Some(m) = f.reap().await? {
                samples.record(progress, round, m);
            }
        }
        // Each round's peers beside the same round's leasehold rows: a peer row's ratio is
        // the median over rounds of (peer ÷ leasehold), both measured minutes apart at most.
        #[cfg(feature = "peers")]
        if let Some(server) = &peers {
            for f in fixtures.iter() {
                let ops = counts.peer_ops();
                let rows = crate::bench_peers::peer_rows(
                    server,
                    kind,
                    f.n,
                    &CONCURRENCY,
                    ops,
                    |name| samples.latest(name),
                    progress,
                )
                .await?;
                for (row, sample) in rows {
                    samples.add(row, sample);
                }
            }
        }
    }
    let mut rows = samples.finish();
    let sizes: Vec<usize> = fixtures.iter().map(|f| f.n).collect();
    rows.extend(scale_rows(&rows, kind, &sizes));
    Ok(rows)
}

/// Runs `f` over `items` in `conc` tokio tasks (contiguous shares, in order), and returns
/// the wall time from the first spawn to the last completion, with the results in order.
pub(crate) async fn timed<T, R, F, Fut>(
    items: Vec<T>,
    conc: usize,
    f: F,
) -> Result<(Duration, Vec<R>), BenchError>
where
    T: Send + 'static,
    R: Send + 'static,
    F: Fn(T) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<R, BenchError>> + Send + 'static,
{
    let f = Arc::new(f);
    let n = items.len();
    let conc = conc.clamp(1, n.max(1));
    let per = n.div_ceil(conc);
    let mut it = items.into_iter();
    let chunks: Vec<Vec<T>> = (0..conc).map(|_| it.by_ref().take(per).collect()).collect();
    let start = Instant::now();
    let handles: Vec<_> = chunks
        .into_iter()
        .map(|chunk| {
            let f = Arc::clone(&f);
            tokio::spawn(async move {
                let mut out = Vec::with_capacity(chunk.len());
                for t in chunk {
                    out.push(f(t).await?);
                }
                Ok::<_, BenchError>(out)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.extend(h.await.map_err(fail("a bench task failed"))??);
    }
    Ok((start.elapsed(), out))
}

/// A subject of exactly [`SUBJECT_LEN`] bytes: `{what}-{i}` padded with zeros.
fn subject(what: &str, i: usize) -> Result<Subject, BenchError> {
    let head = format!("{what}-");
    let width = SUBJECT_LEN.saturating_sub(head.len());
    Subject::new(format!("{head}{i:0>width$}")).map_err(fail("subject"))
}

/// A loaded session: id, current token, stored version.
#[derive(Clone)]
struct Loaded {
    id: SessionId,
    token: String,
    version: u64,
    record: Arc<SessionRecord>,
}

/// How a fixture's untimed sessions go into its store.
#[derive(Clone)]
enum Loader {
    /// One [`Store::insert_session`] each, [`LOADERS`] at a time.
    Each,
    /// [`PostgresStore::import_sessions`], [`IMPORT_BATCH`] records a call, [`IMPORTERS`] calls
    /// at a time: the same rows, about 1 500 inserts/s one by one against tens of thousands.
    Import(PostgresStore),
}

/// Records per import call while loading.
const IMPORT_BATCH: usize = 5_000;

/// Import calls at once while loading (their subjects never overlap).
const IMPORTERS: usize = 4;

/// Inserts `n` new sessions at `now` (4 per subject `{what}-…`, 64 bytes), as `loader` says,
/// with no caps. `lifetime`: their absolute lifetime (default: the policy's).
async fn insert_many<S: Store + 'static>(
    sessions: &Arc<Sessions<S>>,
    loader: &Loader,
    what: &'static str,
    n: usize,
    now: Timestamp,
    lifetime: Option<Duration>,
) -> Result<Vec<Loaded>, BenchError> {
    let opts = CreateOptions {
        absolute_lifetime: lifetime,
        ..CreateOptions::default()
    };
    let policy = sessions.policy();
    let all = (0..n)
        .map(|i| {
            let (record, token) =
                decide::create::new_session(&subject(what, i / 4)?, &opts, now, policy, &OsEntropy)
                    .map_err(fail("new session"))?;
            Ok(Loaded {
                id: record.id,
                token: token.expose_secret().to_owned(),
                version: record.version,
                record: Arc::new(record),
            })
        })
        .collect::<Result<Vec<_>, BenchError>>()?;
    match loader {
        Loader::Each => {
            let s = Arc::clone(sessions);
            let (_, inserted) = timed(all, LOADERS, move |l| {
                let s = Arc::clone(&s);
                async move {
                    let limits = decide::create::limits(s.policy());
                    match s.store().insert_session(&l.record, &limits, now).await {
                        Ok(leasehold::store::InsertOutcome::Inserted { .. }) => Ok(l),
                        Ok(other) => Err(BenchError(format!("insert refused: {other:?}"))),
                        Err(e) => Err(fail("insert")(e)),
                    }
                }
            })
            .await?;
            Ok(inserted)
        }
        Loader::Import(store) => {
            let batches: Vec<Vec<SessionRecord>> = all
                .chunks(IMPORT_BATCH)
                .map(|c| c.iter().map(|l| (*l.record).clone()).collect())
                .collect();
            let store = store.clone();
            let (_, counts) = timed(batches, IMPORTERS, move |batch| {
                let store = store.clone();
                async move { store.import_sessions(&batch).await.map_err(fail("import")) }
            })
            .await?;
            let imported: u64 = counts.iter().sum();
            if imported != n as u64 {
                return Err(BenchError(format!("imported {imported} sessions of {n}")));
            }
            Ok(all)
        }
    }
}

/// A server store of `n` sessions and its raw twin.
struct Fixture<S: Store> {
    kind: &'static str,
    n: usize,
    sessions: Arc<Sessions<S>>,
    /// How the untimed inserts go in.
    loader: Loader,
    /// The same store under a subject cap of [`CREATE_CAP`] (`EvictOldest`).
    capped: Arc<Sessions<S>>,
    clock: ManualClock,
    raw: Raw,
    /// Validated every measurement (touch due, then not).
    reads: Vec<Loaded>,
    /// Raw compare-and-swap targets, with their current versions.
    cas: Vec<Loaded>,
    /// Refreshed, one cohort per concurrency (tokens replaced by each refresh).
    refresh: Vec<Vec<Loaded>>,
    /// Revoked, `writes` a measurement.
    revoke: Vec<Loaded>,
    writes: usize,
    created: usize,
    /// Raw ticket/slot rows written and taken so far (names their ids).
    taken: usize,
    /// Bytes per session right after the load (before any raw record was written).
    /// Bytes per session after the load; and without the global index (Redis).
    footprint: (f64, Option<f64>),
    /// Reap measurements so far (names their cohorts' subjects).
    reaps: usize,
}

impl<S: Store + Clone + 'static> Fixture<S> {
    async fn load(
        store: S,
        loader: Loader,
        raw: Raw,
        kind: &'static str,
        n: usize,
        counts: Counts,
        progress: &Progress,
    ) -> Result<Self, BenchError> {
        let ahead = SystemClock.now().as_millis().saturating_add(3_600_000);
        let clock = ManualClock::new(Timestamp::from_millis(ahead));
        let capped_policy = bench_policy_builder()
            .subject_cap(Some(SubjectCap {
                max: CREATE_CAP,
                on_full: CapPolicy::EvictOldest,
            }))
            .build()
            .map_err(fail("capped bench policy"))?;
        let capped = Arc::new(
            Sessions::new(store.clone(), capped_policy)
                .map_err(fail("driver"))?
                .with_clock(clock.clone()),
        );
        let sessions = Arc::new(
            Sessions::new(store, bench_policy()?)
                .map_err(fail("driver"))?
                .with_clock(clock.clone()),
        );

        progress.note(&format!("loading {n} sessions into {kind}"));
        let start = Instant::now();
        let now = sessions.now();
        let all = insert_many(&sessions, &loader, "user", n, now, None).await?;
        let secs = start.elapsed().as_secs_f64();
        let (bytes, index) = raw.footprint().await?;
        let footprint = (bytes / n as f64, index.map(|g| (bytes - g) / n as f64));
        let (reads, writes) = (counts.reads(n), counts.writes(n));
        let reads = spread(&all, reads);
        let read_ids: std::collections::HashSet<SessionId> = reads.iter().map(|l| l.id).collect();
        let mut rest = all.into_iter().filter(|l| !read_ids.contains(&l.id));
        let cas: Vec<Loaded> = rest.by_ref().take(reads.len()).collect();
        let refresh: Vec<Vec<Loaded>> = CONCURRENCY
            .iter()
            .map(|_| rest.by_ref().take(writes).collect())
            .collect();
        let revoke: Vec<Loaded> = rest
            .take(writes * CONCURRENCY.len() * counts.rounds)
            .collect();
        raw.seed(&cas).await?;
        let how = match loader {
            Loader::Each => format!("{LOADERS} concurrent inserts"),
            Loader::Import(_) => format!("imports of {IMPORT_BATCH}, {IMPORTERS} at a time"),
        };
        progress.step(&format!(
            "loaded {n} sessions into {kind} in {secs:.1} s ({:.0}/s, {how})",
            n as f64 / secs.max(1e-9)
        ));
        let mut f = Fixture {
            kind,
            n,
            sessions,
            loader,
            capped,
            clock,
            raw,
            reads,
            cas,
            refresh,
            revoke,
            writes,
            created: 0,
            taken: 0,
            footprint,
            reaps: 0,
        };
        // Untimed: loads the raw script (on every Cluster node) and opens the connections.
        f.raw_cas(f.cas.len(), LOADERS, WriteClass::Security)
            .await?;
        Ok(f)
    }

    /// `postgres validate, no touch, 10k, c=32`.
    fn named(&self, what: &str, c: usize) -> String {
        format!("{} {what}, {}, c={c}", self.kind, size_label(self.n))
    }

    /// Bytes per session after the load: PostgreSQL, `pg_total_relation_size` of the schema's
    /// tables (indexes and TOAST included); Redis, the sum of `MEMORY USAGE` of the prefix's
    /// keys (records and indexes), then the same without the global index (the keys a store
    /// with `RedisConfig::global_index(false)` writes: all but that one). 64-byte subjects, 4
    /// sessions each, under a prefix as long as the default (key names count).
    fn footprint_rows(&self) -> Vec<Measured> {
        let (what, target) = match self.raw {
            Raw::Postgres(_) => ("disk per session", Target::None),
            Raw::Redis(_) => ("memory per session", Target::AtMost(400.0)),
        };
        let row = |what: &str| {
            Row::new(
                format!("{} {what}, {}", self.kind, size_label(self.n)),
                "",
                Unit::BytesPerSession,
                target,
            )
        };
        let mut rows = vec![(row(what), (self.footprint.0, None))];
        if let Some(unindexed) = self.footprint.1 {
            rows.push((row(&format!("{what}, no global index")), (unindexed, None)));
        }
        rows
    }

    /// PostgreSQL only: reap of `n / 10` (at most 100 000: 100 k among 1 M) expired sessions
    /// among the `n`, [`REAP_BATCH`] a call, in rows/s (target: 40000/s) ÷ a raw `DELETE … WHERE id = ANY`
    /// of as many expired rows, as many a statement. Both cohorts are inserted untimed just
    /// before, and expire when the clock moves 2 s.
    async fn reap(&mut self) -> Result<Option<Measured>, BenchError> {
        let Raw::Postgres(pg) = self.raw.clone() else {
            return Ok(None);
        };
        let expired = (self.n / 10).clamp(1, 100_000);
        let row = Row::new(
            format!(
                "{} reap, {} expired among {}, c=1",
                self.kind,
                size_label(expired),
                size_label(self.n)
            ),
            "DELETE id = ANY",
            Unit::RowsPerSec,
            Target::AtLeast(40_000.0),
        );
        self.reaps += 1;
        let (what_lh, what_raw) = match self.reaps % 4 {
            0 => ("reap-a", "reap-b"),
            1 => ("reap-c", "reap-d"),
            2 => ("reap-e", "reap-f"),
            _ => ("reap-g", "reap-h"),
        };
        let second = Some(Duration::from_secs(1));
        let now = self.sessions.now();
        insert_many(&self.sessions, &self.loader, what_lh, expired, now, second).await?;
        self.clock.advance(Duration::from_secs(2));
        let lh = reap_all(&self.sessions, expired).await?;
        let now = self.sessions.now();
        let loader = &self.loader;
        let cohort = insert_many(&self.sessions, loader, what_raw, expired, now, second).await?;
        self.clock.advance(Duration::from_secs(2));
        let start = Instant::now();
        let mut deleted = 0;
        for chunk in cohort.chunks(REAP_BATCH) {
            deleted += pg.delete(chunk).await?;
        }
        let raw = per_sec(cohort.len(), start.elapsed());
        if deleted != cohort.len() as u64 {
            return Err(BenchError(format!(
                "raw DELETE removed {deleted} rows of {}",
                cohort.len()
            )));
        }
        Ok(Some((row, (lh, Some(raw)))))
    }

    /// `count` raw compare-and-swaps of the CAS cohort at concurrency `c`, committed as a
    /// write of `class` commits: ns per op.
    async fn raw_cas(
        &mut self,
        count: usize,
        c: usize,
        class: WriteClass,
    ) -> Result<f64, BenchError> {
        let count = count.min(self.cas.len());
        let batch: Vec<Loaded> = self.cas[..count].to_vec();
        let now = self.sessions.now();
        let raw = self.raw.clone();
        let (took, done) = timed(batch, c, move |l| {
            let raw = raw.clone();
            async move {
                raw.cas(&l, now, class).await?;
                Ok(Loaded {
                    version: l.version + 1,
                    ..l
                })
            }
        })
        .await?;
        self.cas.splice(..count, done);
        Ok(ns_per_op(count, took))
    }

    /// Validate with a touch due (the clock just moved past the touch granularity) ÷ one raw
    /// compare-and-swap.
    async fn touch_due(&mut self, c: usize) -> Result<Measured, BenchError> {
        let touch = WriteClass::Routine;
        let row = ns_row(
            self.named("validate, touch due", c),
            self.raw.cas_op(touch),
            0.9,
        );
        self.clock.advance(ROUND_STEP);
        let s = Arc::clone(&self.sessions);
        let (took, _) = timed(self.reads.clone(), c, move |l| {
            let s = Arc::clone(&s);
            async move {
                s.validate(&l.token, &Context::none())
                    .await
                    .map_err(fail("validate (touch due)"))?;
                Ok(())
            }
        })
        .await?;
        let lh = ns_per_op(self.reads.len(), took);
        self.check_touched().await?;
        let raw = self.raw_cas(self.reads.len(), c, touch).await?;
        Ok((row, (lh, Some(raw))))
    }

    /// The first validated session was touched at the current time (else the row measured
    /// something else).
    async fn check_touched(&self) -> Result<(), BenchError> {
        let Some(l) = self.reads.first() else {
            return Ok(());
        };
        let loaded = self
            .sessions
            .store()
            .load_session(&l.id)
            .await
            .map_err(fail("load"))?;
        match loaded.record {
            Some(r) if r.last_seen == self.sessions.now() => Ok(()),
            _ => Err(BenchError(
                "a validate with a touch due did not write the touch".into(),
            )),
        }
    }

    /// Validate with no touch due (the same sessions, just touched) ÷ a raw read of the
    /// session's record; and, for information, ÷ the raw read with the store's clock in the
    /// same round trip, which every validate must send: the store keeps time. The second
    /// ratio is leasehold's own share.
    async fn no_touch(&mut self, c: usize) -> Result<(Measured, Measured), BenchError> {
        let row = ns_row(
            self.named("validate, no touch", c),
            self.raw.read_op(),
            0.95,
        );
        // Untimed, a raw read of every session first: the touch row just wrote them, and on
        // PostgreSQL the first read after an update costs more (it prunes the row versions the
        // update left), a cost that would otherwise fall on whichever side reads first.
        self.raw_reads(c, false).await?;
        let s = Arc::clone(&self.sessions);
        let (took, _) = timed(self.reads.clone(), c, move |l| {
            let s = Arc::clone(&s);
            async move {
                s.validate(&l.token, &Context::none())
                    .await
                    .map_err(fail("validate (no touch due)"))?;
                Ok(())
            }
        })
        .await?;
        let lh = ns_per_op(self.reads.len(), took);
        let plain = (row, (lh, Some(self.raw_reads(c, false).await?)));
        let op = self.raw.read_clocked_op();
        let name = format!("{} vs {op}", self.named("validate, no touch", c));
        let clocked = Row::new(name, op, Unit::Ns, Target::None);
        Ok((plain, (clocked, (lh, Some(self.raw_reads(c, true).await?)))))
    }

    /// Ns per raw read of every validated session, at concurrency `c`; `clocked`: with the
    /// store's clock in the same round trip.
    async fn raw_reads(&self, c: usize, clocked: bool) -> Result<f64, BenchError> {
        let raw = self.raw.clone();
        let (took, _) = timed(self.reads.clone(), c, move |l| {
            let raw = raw.clone();
            async move {
                if clocked {
                    raw.read_clocked(&l.id).await
                } else {
                    raw.read(&l.id).await
                }
            }
        })
        .await?;
        Ok(ns_per_op(self.reads.len(), took))
    }

    /// Refresh (a rotation) of the concurrency's own cohort ÷ one raw compare-and-swap.
    async fn refresh(&mut self, slot: usize, c: usize) -> Result<Measured, BenchError> {
        let row = ns_row(
            self.named("refresh", c),
            self.raw.cas_op(WriteClass::Security),
            0.9,
        );
        let cohort = self.refresh.get(slot).cloned().unwrap_or_default();
        let count = cohort.len();
        let s = Arc::clone(&self.sessions);
        let (took, done) = timed(cohort, c, move |l| {
            let s = Arc::clone(&s);
            async move {
                let r = s
                    .refresh(&l.token, &Context::none())
                    .await
                    .map_err(fail("refresh"))?;
                Ok(Loaded {
                    token: r.token.expose_secret().to_owned(),
                    ..l
                })
            }
        })
        .await?;
        if let Some(v) = self.refresh.get_mut(slot) {
            *v = done;
        }
        let lh = ns_per_op(count, took);
        let raw = self.raw_cas(count, c, WriteClass::Security).await?;
        Ok((row, (lh, Some(raw))))
    }

    /// Create (a new 64-byte subject each) ÷ a raw insert of a new record; `capped`: under
    /// a subject cap of [`CREATE_CAP`] (the cap is counted in the insert's atomic step).
    async fn create(&mut self, c: usize, capped: bool) -> Result<Measured, BenchError> {
        let (what, driver) = if capped {
            ("create, subject cap", &self.capped)
        } else {
            ("create", &self.sessions)
        };
        let row = Row::new(
            self.named(what, c),
            self.raw.insert_op(),
            Unit::Ns,
            Target::None,
        );
        let first = self.created;
        self.created += self.writes;
        let s = Arc::clone(driver);
        let (took, _) = timed((first..self.created).collect(), c, move |i| {
            let s = Arc::clone(&s);
            async move {
                s.create(&subject("create", i)?, CreateOptions::default())
                    .await
                    .map_err(fail("create"))?;
                Ok(())
            }
        })
        .await?;
        let lh = ns_per_op(self.writes, took);
        let now = self.sessions.now();
        let policy = self.sessions.policy().clone();
        let records = (first..self.created)
            .map(|i| {
                decide::create::new_session(
                    &subject("raw", i)?,
                    &CreateOptions::default(),
                    now,
                    &policy,
                    &OsEntropy,
                )
                .map(|(r, _)| r)
                .map_err(fail("new session"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let raw = self.raw.clone();
        let (took, _) = timed(records, c, move |r| {
            let raw = raw.clone();
            async move { raw.insert(&r).await }
        })
        .await?;
        Ok((row, (lh, Some(ns_per_op(self.writes, took)))))
    }

    /// Revoke by id of fresh sessions ÷ one raw compare-and-swap.
    async fn revoke(&mut self, c: usize) -> Result<Measured, BenchError> {
        let row = Row::new(
            self.named("revoke by id", c),
            self.raw.cas_op(WriteClass::Security),
            Unit::Ns,
            Target::None,
        );
        let take = self.writes.min(self.revoke.len());
        let batch: Vec<Loaded> = self.revoke.drain(..take).collect();
        if batch.is_empty() {
            return Err(BenchError("no sessions left to revoke".into()));
        }
        let s = Arc::clone(&self.sessions);
        let (took, _) = timed(batch, c, move |l| {
            let s = Arc::clone(&s);
            async move {
                s.trusted_by_id()
                    .revoke(&l.id)
                    .await
                    .map_err(fail("revoke by id"))?;
                Ok(())
            }
        })
        .await?;
        let lh = ns_per_op(take, took);
        let raw = self.raw_cas(take, c, WriteClass::Security).await?;
        Ok((row, (lh, Some(raw))))
    }

    /// Ticket mint (a validate, nothing due, then the ticket stored) and redeem (taken once,
    /// its session read) of the read cohort ÷ a raw write then take of a row as large.
    async fn ticket(&mut self, c: usize) -> Result<Measured, BenchError> {
        self.pair("ticket mint+redeem", c, |s, l| async move {
            let t = s
                .mint_ticket(&l.token, &Context::none())
                .await
                .map_err(fail("mint ticket"))?;
            s.redeem_ticket(t.ticket.expose_secret())
                .await
                .map_err(fail("redeem ticket"))?;
            Ok(())
        })
        .await
    }

    /// Slot acquire then release on sessions of the read cohort ÷ a raw write then take.
    async fn slot(&mut self, c: usize) -> Result<Measured, BenchError> {
        self.pair("slot acquire+release", c, |s, l| async move {
            let lease = s
                .acquire_slot(&l.id, None)
                .await
                .map_err(fail("acquire slot"))?;
            if s.release_slot(&lease.id)
                .await
                .map_err(fail("release slot"))?
            {
                Ok(())
            } else {
                Err(BenchError("a slot just acquired was not released".into()))
            }
        })
        .await
    }

    /// `op` (a write and its undoing) on `writes` sessions of the read cohort ÷ as many raw
    /// write-then-take pairs.
    async fn pair<F, Fut>(&mut self, what: &str, c: usize, op: F) -> Result<Measured, BenchError>
    where
        F: Fn(Arc<Sessions<S>>, Loaded) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), BenchError>> + Send + 'static,
    {
        let row = Row::new(
            self.named(what, c),
            self.raw.put_take_op(),
            Unit::Ns,
            Target::None,
        );
        let batch: Vec<Loaded> = self.reads.iter().take(self.writes).cloned().collect();
        let count = batch.len();
        let s = Arc::clone(&self.sessions);
        let (took, _) = timed(batch, c, move |l| op(Arc::clone(&s), l)).await?;
        let lh = ns_per_op(count, took);
        Ok((row, (lh, Some(self.raw_put_take(count, c).await?))))
    }

    /// `count` raw write-then-take pairs of new 64-byte rows at concurrency `c`: ns per pair.
    async fn raw_put_take(&mut self, count: usize, c: usize) -> Result<f64, BenchError> {
        let first = self.taken;
        self.taken += count;
        let raw = self.raw.clone();
        let ids: Vec<usize> = (first..self.taken).collect();
        let (took, _) = timed(ids, c, move |i| {
            let raw = raw.clone();
            async move { raw.put_take(i).await }
        })
        .await?;
        Ok(ns_per_op(count, took))
    }
}

/// The raw operations, on the store's own pool or connection.
#[derive(Clone)]
enum Raw {
    Postgres(Arc<PgRaw>),
    Redis(Arc<RedisRaw>),
}

impl Raw {
    fn read_op(&self) -> &'static str {
        match self {
            Raw::Postgres(_) => "SELECT by id",
            Raw::Redis(_) => "GET",
        }
    }

    fn cas_op(&self, class: WriteClass) -> &'static str {
        match (self, class) {
            (Raw::Postgres(_), WriteClass::Security) => "UPDATE id+version",
            (Raw::Postgres(_), WriteClass::Routine) => "UPDATE, async commit",
            (Raw::Redis(_), _) => "EVALSHA CAS",
        }
    }

    fn insert_op(&self) -> &'static str {
        match self {
            Raw::Postgres(_) => "INSERT",
            Raw::Redis(_) => "SET PXAT",
        }
    }

    fn put_take_op(&self) -> &'static str {
        match self {
            Raw::Postgres(_) => "INSERT+DELETE",
            Raw::Redis(_) => "SET+GETDEL",
        }
    }

    /// Writes a new 64-byte row (`i` names it) and takes it back in a second call.
    async fn put_take(&self, i: usize) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.put_take(i).await,
            Raw::Redis(r) => r.put_take(i).await,
        }
    }

    /// Prepares the compare-and-swap targets (Redis: their raw copies).
    async fn seed(&self, cas: &[Loaded]) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.prepare().await,
            Raw::Redis(r) => {
                let r = Arc::clone(r);
                timed(cas.to_vec(), LOADERS, move |l| {
                    let r = Arc::clone(&r);
                    async move { r.seed(&l).await }
                })
                .await
                .map(|_| ())
            }
        }
    }

    /// Bytes the store holds (PostgreSQL: its tables; Redis: its keys).
    /// Bytes of the whole store, and of its global index where it has one to drop (Redis).
    async fn footprint(&self) -> Result<(f64, Option<f64>), BenchError> {
        match self {
            Raw::Postgres(p) => Ok((p.footprint().await?, None)),
            Raw::Redis(r) => r.footprint().await.map(|(t, g)| (t, Some(g))),
        }
    }

    async fn read(&self, id: &SessionId) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.read(id).await,
            Raw::Redis(r) => r.read(id).await,
        }
    }

    /// The raw read with the store's clock in the same round trip, as the adapter's load
    /// sends them (on a Cluster the client routes the pipeline by its key, so `TIME` runs on
    /// the key's node there too).
    fn read_clocked_op(&self) -> &'static str {
        match self {
            Raw::Postgres(_) => "SELECT by id + clock",
            Raw::Redis(_) => "GET+TIME",
        }
    }

    async fn read_clocked(&self, id: &SessionId) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.read_clocked(id).await,
            Raw::Redis(r) => r.read_clocked(id).await,
        }
    }

    /// Compare-and-swaps `l` from `l.version` to `l.version + 1`, committed as a write of
    /// `class` commits (PostgreSQL: a routine write does not wait for its WAL flush, as the
    /// adapter's touch; Redis commits both alike).
    async fn cas(&self, l: &Loaded, now: Timestamp, class: WriteClass) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.cas(l, now, class).await,
            Raw::Redis(r) => r.cas(l).await,
        }
    }

    async fn insert(&self, r: &SessionRecord) -> Result<(), BenchError> {
        match self {
            Raw::Postgres(p) => p.insert(r).await,
            Raw::Redis(x) => x.insert(r).await,
        }
    }
}

/// `u64` → `bigint`.
fn big(v: u64, what: &str) -> Result<i64, BenchError> {
    i64::try_from(v).map_err(|_| BenchError(format!("{what} {v} does not fit a bigint")))
}

/// Raw statements on the store's pool and tables.
struct PgRaw {
    pool: PgPool,
    schema: String,
    delete: String,
    select: String,
    /// `select` with the store's clock (`clock_ms`) as the adapter's load reads it.
    select_clocked: String,
    update: String,
    /// `update`, committed without waiting for its WAL flush (`synchronous_commit` off for
    /// its transaction).
    update_routine: String,
    insert: String,
    /// The raw ticket/slot pair's table, and its two statements.
    taken: String,
    put: String,
    take: String,
}

/// The payload of a raw ticket or slot row: about what a ticket record holds.
const TAKEN_BYTES: [u8; 64] = [7; 64];

impl PgRaw {
    fn new(pool: PgPool, schema: &str) -> Self {
        let q = format!("\"{}\"", schema.replace('"', "\"\""));
        let t = format!("{q}.sessions");
        PgRaw {
            taken: format!("{q}.bench_taken"),
            put: format!("INSERT INTO {q}.bench_taken (id, v, expires_at) VALUES ($1, $2, $3)"),
            take: format!("DELETE FROM {q}.bench_taken WHERE id = $1 RETURNING v"),
            pool,
            schema: schema.to_owned(),
            delete: format!("DELETE FROM {t} WHERE id = ANY($1)"),
            select: format!("SELECT * FROM {t} WHERE id = $1"),
            select_clocked: format!("SELECT {q}.clock_ms(0), * FROM {t} WHERE id = $1"),
            update: format!(
                "UPDATE {t} SET version = $3, last_seen_at = $4, \
                 expires_at = LEAST(absolute_deadline, $5) WHERE id = $1 AND version = $2"
            ),
            update_routine: format!(
                "WITH r AS (SELECT set_config('synchronous_commit', 'off', true)) \
                 UPDATE {t} SET version = $3, last_seen_at = $4, \
                 expires_at = LEAST(absolute_deadline, $5) FROM r WHERE id = $1 AND version = $2"
            ),
            insert: format!(
                "INSERT INTO {t} (id, subject, kind, state, version, created_at, last_seen_at, \
                 absolute_deadline, expires_at, generation, verifier, rotated_at, retired, data, \
                 data_version) VALUES ($1, $2, $3, 0, $4, $5, $5, $6, $7, 0, $8, $5, '{{}}', \
                 ''::bytea, 0)"
            ),
        }
    }

    /// After the load: fresh planner statistics for the schema's tables (a bulk import leaves
    /// none until autovacuum comes by; a store in service has them), and the raw ticket/slot
    /// table.
    async fn prepare(&self) -> Result<(), BenchError> {
        let schema = self.schema.replace('"', "\"\"");
        let sql = format!(
            "ANALYZE \"{schema}\".sessions, \"{schema}\".subjects; \
             CREATE TABLE {} (id bigint PRIMARY KEY, v bytea NOT NULL, expires_at bigint NOT NULL)",
            self.taken
        );
        sqlx::raw_sql(&sql)
            .execute(&self.pool)
            .await
            .map_err(fail("raw CREATE TABLE"))?;
        Ok(())
    }

    /// `INSERT` then `DELETE … RETURNING` of row `i`.
    async fn put_take(&self, i: usize) -> Result<(), BenchError> {
        let id = big(i as u64, "row id")?;
        sqlx::query(&self.put)
            .bind(id)
            .bind(&TAKEN_BYTES[..])
            .bind(big(SystemClock.now().as_millis(), "time")?)
            .execute(&self.pool)
            .await
            .map_err(fail("raw INSERT"))?;
        let row = sqlx::query(&self.take)
            .bind(id)
            .fetch_optional(&self.pool)
            .await
            .map_err(fail("raw DELETE RETURNING"))?;
        match row {
            Some(_) => Ok(()),
            None => Err(BenchError(
                "raw DELETE found no row it had just written".into(),
            )),
        }
    }

    /// `pg_total_relation_size` of the schema's tables, summed.
    async fn footprint(&self) -> Result<f64, BenchError> {
        let bytes: i64 = sqlx::query_scalar(
            "SELECT COALESCE(SUM(pg_total_relation_size(c.oid)), 0)::bigint FROM pg_class c \
             JOIN pg_namespace n ON n.oid = c.relnamespace \
             WHERE n.nspname = $1 AND c.relkind = 'r'",
        )
        .bind(&self.schema)
        .fetch_one(&self.pool)
        .await
        .map_err(fail("table sizes"))?;
        Ok(bytes as f64)
    }

    /// Deletes `rows` in one statement; how many went.
    async fn delete(&self, rows: &[Loaded]) -> Result<u64, BenchError> {
        let ids: Vec<Vec<u8>> = rows.iter().map(|l| l.id.as_bytes().to_vec()).collect();
        let done = sqlx::query(&self.delete)
            .bind(ids)
            .execute(&self.pool)
            .await
            .map_err(fail("raw DELETE"))?;
        Ok(done.rows_affected())
    }

    async fn read(&self, id: &SessionId) -> Result<(), BenchError> {
        self.read_row(&self.select, id).await.map(|_| ())
    }

    /// `SELECT` with the clock: the clock column read as the adapter reads it.
    async fn read_clocked(&self, id: &SessionId) -> Result<(), BenchError> {
        let row = self.read_row(&self.select_clocked, id).await?;
        let _: i64 = sqlx::Row::try_get(&row, 0).map_err(fail("raw SELECT clock"))?;
        Ok(())
    }

    async fn read_row(&self, sql: &str, id: &SessionId) -> Result<PgRow, BenchError> {
        sqlx::query(sql)
            .bind(&id.as_bytes()[..])
            .fetch_optional(&self.pool)
            .await
            .map_err(fail("raw SELECT"))?
            .ok_or_else(|| BenchError("raw SELECT found no session row".into()))
    }

    async fn cas(&self, l: &Loaded, now: Timestamp, class: WriteClass) -> Result<(), BenchError> {
        let idle = now.as_millis().saturating_add(24 * 3_600_000);
        let sql = match class {
            WriteClass::Security => &self.update,
            WriteClass::Routine => &self.update_routine,
        };
        let done = sqlx::query(sql)
            .bind(&l.id.as_bytes()[..])
            .bind(big(l.version, "version")?)
            .bind(big(l.version + 1, "version")?)
            .bind(big(now.as_millis(), "time")?)
            .bind(big(idle, "time")?)
            .execute(&self.pool)
            .await
            .map_err(fail("raw UPDATE"))?;
        if done.rows_affected() == 1 {
            Ok(())
        } else {
            Err(BenchError("raw UPDATE … AND version matched no row".into()))
        }
    }

    async fn insert(&self, r: &SessionRecord) -> Result<(), BenchError> {
        sqlx::query(&self.insert)
            .bind(&r.id.as_bytes()[..])
            .bind(r.subject.as_str())
            .bind(r.kind.as_str())
            .bind(big(r.version, "version")?)
            .bind(big(r.created_at.as_millis(), "time")?)
            .bind(big(r.absolute_deadline.as_millis(), "time")?)
            .bind(big(r.expires_at.as_millis(), "time")?)
            .bind(&[0u8; 32][..])
            .execute(&self.pool)
            .await
            .map_err(fail("raw INSERT"))?;
        Ok(())
    }
}

/// The compare-version-and-`SET` script of the raw Redis compare-and-swap: the value starts
/// with a 20-digit version.
const CAS_LUA: &str = r"
local v = redis.call('GET', KEYS[1])
if not v or string.sub(v, 1, 20) ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2], 'PXAT', ARGV[3])
return 1
";

/// Raw commands on the store's own connection.
struct RedisRaw {
    store: RedisStore,
    cas: redis::Script,
}

impl RedisRaw {
    fn new(store: RedisStore) -> Self {
        RedisRaw {
            store,
            cas: redis::Script::new(CAS_LUA),
        }
    }

    /// `P:bench:{tag}:<id hex>`: beside the session's key, in its hash slot.
    fn raw_key(&self, id: &SessionId) -> Result<String, BenchError> {
        let key = self.store.session_key(id);
        let prefix = self.store.prefix();
        key.strip_prefix(prefix)
            .and_then(|k| k.strip_prefix(":s"))
            .map(|rest| format!("{prefix}:bench{rest}"))
            .ok_or_else(|| BenchError(format!("unexpected session key {key}")))
    }

    fn value(version: u64, record: &SessionRecord) -> Vec<u8> {
        let mut v = format!("{version:020}").into_bytes();
        v.extend(codec::encode_session(record));
        v
    }

    /// `MEMORY USAGE … SAMPLES 0` of every key of the prefix, summed; and of those, the
    /// global index's (`P:g:{global}`: what `RedisConfig::global_index(false)` does not keep).
    async fn footprint(&self) -> Result<(f64, f64), BenchError> {
        let keys = self.store.all_keys().await.map_err(fail("SCAN"))?;
        let global = self.store.global_index_key().into_bytes();
        let at = keys.iter().position(|k| *k == global);
        let store = self.store.clone();
        let (_, sizes) = timed(keys, LOADERS, move |k| {
            let store = store.clone();
            async move {
                let mut cmd = redis::cmd("MEMORY");
                cmd.arg("USAGE").arg(k).arg("SAMPLES").arg(0);
                let n: Option<u64> = store
                    .raw_command(&cmd)
                    .await
                    .map_err(fail("MEMORY USAGE"))?;
                Ok(n.unwrap_or(0))
            }
        })
        .await?;
        let index = at.and_then(|i| sizes.get(i)).copied().unwrap_or(0);
        Ok((sizes.iter().sum::<u64>() as f64, index as f64))
    }

    async fn seed(&self, l: &Loaded) -> Result<(), BenchError> {
        self.set(&self.raw_key(&l.id)?, &l.record, l.version).await
    }

    async fn set(&self, key: &str, r: &SessionRecord, version: u64) -> Result<(), BenchError> {
        let mut cmd = redis::cmd("SET");
        cmd.arg(key)
            .arg(Self::value(version, r))
            .arg("PXAT")
            .arg(r.expires_at.as_millis());
        self.store
            .raw_command::<()>(&cmd)
            .await
            .map_err(fail("raw SET"))
    }

    async fn read(&self, id: &SessionId) -> Result<(), BenchError> {
        let v: Option<Vec<u8>> = self
            .store
            .raw_command(redis::cmd("GET").arg(self.store.session_key(id)))
            .await
            .map_err(fail("raw GET"))?;
        match v {
            Some(_) => Ok(()),
            None => Err(BenchError("raw GET found no session key".into())),
        }
    }

    /// `GET` and `TIME` in one pipeline, the reply read into bytes and `(s, µs)`.
    async fn read_clocked(&self, id: &SessionId) -> Result<(), BenchError> {
        let mut p = redis::pipe();
        p.cmd("GET").arg(self.store.session_key(id)).cmd("TIME");
        let (v, _): (Option<Vec<u8>>, (u64, u64)) = self
            .store
            .raw_pipeline(&p)
            .await
            .map_err(fail("raw GET+TIME"))?;
        match v {
            Some(_) => Ok(()),
            None => Err(BenchError("raw GET found no session key".into())),
        }
    }

    async fn cas(&self, l: &Loaded) -> Result<(), BenchError> {
        let mut inv = self.cas.key(self.raw_key(&l.id)?);
        inv.arg(format!("{:020}", l.version))
            .arg(Self::value(l.version + 1, &l.record))
            .arg(l.record.expires_at.as_millis());
        let swapped: i64 = self
            .store
            .raw_script(&inv)
            .await
            .map_err(fail("raw EVALSHA"))?;
        if swapped == 1 {
            Ok(())
        } else {
            Err(BenchError("raw compare-and-swap lost".into()))
        }
    }

    async fn insert(&self, r: &SessionRecord) -> Result<(), BenchError> {
        self.set(&self.raw_key(&r.id)?, r, r.version).await
    }

    /// `SET … PXAT` then `GETDEL` of key `P:taken:<i>`.
    async fn put_take(&self, i: usize) -> Result<(), BenchError> {
        let key = format!("{}:taken:{i}", self.store.prefix());
        let mut set = redis::cmd("SET");
        set.arg(&key)
            .arg(&TAKEN_BYTES[..])
            .arg("PXAT")
            .arg(SystemClock.now().as_millis() + 30_000);
        self.store
            .raw_command::<()>(&set)
            .await
            .map_err(fail("raw SET"))?;
        let v: Option<Vec<u8>> = self
            .store
            .raw_command(redis::cmd("GETDEL").arg(&key))
            .await
            .map_err(fail("raw GETDEL"))?;
        match v {
            Some(_) => Ok(()),
            None => Err(BenchError("raw GETDEL found no key it had just set".into())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A row whose rounds gave ratios `ratio - 0.1`, `ratio` and `ratio + 0.1`.
    fn row(name: &str, ratio: f64) -> Row {
        let mut r = ns_row(name.to_owned(), "GET", 0.95);
        r.ratio = Some(ratio);
        r.ratio_min = Some(ratio - 0.1);
        r.ratio_max = Some(ratio + 0.1);
        r
    }

    /// The scale rows divide the largest size's ratio by the smallest's, per row and
    /// concurrency, and judge it against 0.95; one size gives none.
    #[test]
    fn scale_rows_compare_the_largest_size_with_the_smallest() {
        let rows = vec![
            row("redis validate, no touch, 10k, c=1", 0.8),
            row("redis validate, no touch, 1M, c=1", 0.6),
            row("redis validate, no touch, 10k, c=32", 0.5),
            row("redis validate, no touch, 1M, c=32", 0.5),
        ];
        let out = scale_rows(&rows, "redis", &[10_000, 1_000_000]);
        let find = |n: &str| out.iter().find(|r| r.name == n);
        let c1 = find("redis validate, no touch, c=1: ratio @ 1M ÷ @ 10k").unwrap();
        assert!((c1.ratio.unwrap() - 0.75).abs() < 1e-9);
        // The spread: the lowest 1M round over the highest 10k round, and the other way.
        assert!((c1.ratio_min.unwrap() - 0.5 / 0.9).abs() < 1e-9);
        assert!((c1.ratio_max.unwrap() - 0.7 / 0.7).abs() < 1e-9);
        assert_eq!(c1.result, "FAIL");
        let c32 = find("redis validate, no touch, c=32: ratio @ 1M ÷ @ 10k").unwrap();
        assert_eq!(c32.result, "PASS");
        assert_eq!(out.len(), 2, "rows without both sizes are left out");
        assert!(scale_rows(&rows, "redis", &[10_000]).is_empty());
    }
}
