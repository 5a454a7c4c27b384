//! Peer measurements for `leasehold bench` (feature `peers`): the same session operations
//! through other Rust session libraries, on the same servers, so the bench can print
//! leasehold ÷ peer per operation.
//!
//! The peers, and what each [`PeerOp`] calls:
//!
//! - tower-sessions 0.14 stores through `tower_sessions_core::SessionStore`:
//!   `tower-sessions-sqlx-store` (`PostgresStore`) and `tower-sessions-redis-store`
//!   (`RedisStore` on a fred `Pool`). Validate = `load`, Create = `create`, Touch = `save` of
//!   the loaded record with a later `expiry_date`, Revoke = `delete`.
//! - session-guard 0.3 through `Guard` on `PgStore` or `ValkeyStore`, `String` subjects.
//!   Validate = `Guard::authenticate` with a current, already used token and no write due
//!   (default configuration: no rotation for 10 minutes, `last_seen` written at most once a
//!   minute); Create = `Guard::login`; Touch = `Guard::authenticate` on a guard whose
//!   `last_seen_write_interval` is zero, so every call writes `last_seen_at` (the idle-timeout
//!   refresh; no token rotation); Revoke = `Guard::logout` with the session's token.
//!
//! Every run works in fresh PostgreSQL schemas or Redis keys and removes them afterwards,
//! also when the run fails. The tower-sessions Redis store has no key prefix (its keys are
//! bare session ids), so that run remembers every id it wrote and deletes exactly those; its
//! records also expire on their own within two hours.

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use session_guard::{ClientContext, Guard, GuardConfig, Outcome, PgStore, ValkeyStore};
use tower_sessions_core::SessionStore;
use tower_sessions_core::session::{Id, Record};
use tower_sessions_redis_store::RedisStore;
use tower_sessions_redis_store::fred::prelude::{
    ClientLike, Config as FredConfig, Pool as FredPool,
};
use tower_sessions_sqlx_store::PostgresStore as TowerPgStore;

/// The server a peer run uses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum PeerServer {
    /// A PostgreSQL URL, e.g. `postgres://postgres@127.0.0.1:5432/test`.
    Postgres(String),
    /// A standalone Redis (or Valkey) URL, e.g. `redis://127.0.0.1:6379`.
    Redis(String),
}

/// A measured operation (see the module documentation for what each peer calls).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(crate) enum PeerOp {
    /// Load an existing session by id or token.
    Validate,
    /// Store a new session.
    Create,
    /// Refresh an existing session's deadline.
    Touch,
    /// Delete a session.
    Revoke,
}

impl PeerOp {
    /// Every operation, in the order a run measures them.
    pub(crate) const ALL: [PeerOp; 4] = [
        PeerOp::Validate,
        PeerOp::Touch,
        PeerOp::Create,
        PeerOp::Revoke,
    ];

    /// Lowercase name for the printed table of the measurement test.
    #[cfg(test)]
    pub(crate) fn name(self) -> &'static str {
        match self {
            PeerOp::Validate => "validate",
            PeerOp::Create => "create",
            PeerOp::Touch => "touch",
            PeerOp::Revoke => "revoke",
        }
    }
}

/// One measurement: `ns_per_op` is the wall time of `ops` operations spread over
/// `concurrency` tasks, divided by `ops`.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct PeerSample {
    /// The peer, e.g. `"tower-sessions-sqlx-store"` or `"session-guard PgStore"`.
    pub(crate) peer: &'static str,
    /// What was measured.
    pub(crate) operation: PeerOp,
    /// Tasks sharing the store.
    pub(crate) concurrency: usize,
    /// Wall-clock nanoseconds per operation.
    pub(crate) ns_per_op: f64,
}

/// Measures every peer on `server`: preloads `sessions` sessions (64-byte subjects), then for
/// each operation and each `c` in `concurrency` runs `ops` operations over `c` tokio tasks
/// sharing the store. Creates run before revokes, and the revokes delete the sessions the
/// creates made, so the store never holds fewer than `sessions` sessions.
///
/// PostgreSQL peers get a pool of 32 connections without a test before acquire (like
/// `leasehold_postgres::recommended_pool_options`), each in a fresh schema dropped at the end.
/// Redis peers use their own connection type (a fred pool of 6 clients for
/// tower-sessions, as in its documentation; a `ConnectionManager` for session-guard).
///
/// # Errors
///
/// One line: an unreachable server, a failed operation, or an operation that did not do what
/// it should (a valid session not found, a revoke that found nothing).
pub(crate) async fn measure_peers(
    server: PeerServer,
    sessions: usize,
    concurrency: &[usize],
    ops: usize,
) -> Result<Vec<PeerSample>, String> {
    if sessions == 0 || ops == 0 || concurrency.is_empty() || concurrency.contains(&0) {
        return Err("peer bench: sessions, ops and every concurrency must be at least 1".into());
    }
    let plan = Plan {
        sessions,
        concurrency: concurrency.to_vec(),
        ops,
    };
    let tag = run_tag();
    let mut samples = Vec::new();
    match server {
        PeerServer::Postgres(url) => {
            samples.extend(tower_postgres(&url, &format!("{tag}_tower"), &plan).await?);
            samples.extend(guard_postgres(&url, &format!("{tag}_guard"), &plan).await?);
        }
        PeerServer::Redis(url) => {
            samples.extend(tower_redis(&url, &plan).await?);
            samples.extend(guard_redis(&url, &format!("{tag}:"), &plan).await?);
        }
    }
    Ok(samples)
}

/// The sizes of one run.
struct Plan {
    sessions: usize,
    concurrency: Vec<usize>,
    ops: usize,
}

impl Plan {
    /// Sessions created (and later revoked) over all concurrency levels.
    fn created(&self) -> usize {
        self.ops * self.concurrency.len()
    }
}

/// Tasks used to preload sessions.
const PRELOAD_TASKS: usize = 32;

/// A name unique to this run: `lh_peers_<pid>_<unix ns>`, a valid SQL identifier and key
/// prefix (no glob characters).
fn run_tag() -> String {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or_default();
    format!("lh_peers_{}_{nanos}", std::process::id())
}

/// The 64-byte subject of session `i`.
fn subject(i: usize) -> String {
    format!("subject-{i:056}")
}

/// Runs `ops` calls of `op(0..ops)` over `tasks` tokio tasks sharing `op` and returns the wall
/// time per call in ns: the same runner as leasehold's rows (`bench_server::timed`, each task
/// a contiguous share of the indices), so both sides of a ratio are measured alike.
async fn run_ops<F, Fut>(tasks: usize, ops: usize, op: F) -> Result<f64, String>
where
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = Result<(), String>> + Send + 'static,
{
    let (took, _) = crate::bench_server::timed((0..ops).collect(), tasks, move |i| {
        let call = op(i);
        async move { call.await.map_err(crate::bench::BenchError) }
    })
    .await
    .map_err(|e| e.0)?;
    Ok(crate::bench::ns_per_op(ops, took))
}

/// Slots filled once each by concurrent tasks.
fn slots<T>(n: usize) -> Vec<OnceLock<T>> {
    (0..n).map(|_| OnceLock::new()).collect()
}

/// The value in slot `i`, or an error naming what is missing.
fn slot<'a, T>(slots: &'a [OnceLock<T>], i: usize, what: &str) -> Result<&'a T, String> {
    slots
        .get(i)
        .and_then(OnceLock::get)
        .ok_or_else(|| format!("peer bench: no {what} in slot {i}"))
}

// ---------------------------------------------------------------------------------------------
// tower-sessions

/// What a tower-sessions run shares between tasks.
struct TowerRun {
    store: Arc<dyn SessionStore>,
    /// The preloaded records, as stored.
    records: Vec<OnceLock<Record>>,
    /// Ids of the sessions the creates made, per level: `level * ops + i`.
    created: Vec<OnceLock<Id>>,
}

/// Expiry for records written now: two hours ahead, so stray Redis keys lapse on their own.
fn tower_expiry(extra_secs: usize) -> time::OffsetDateTime {
    let extra = i64::try_from(extra_secs).unwrap_or(i64::MAX / 2);
    time::OffsetDateTime::now_utc()
        + time::Duration::hours(2)
        + time::Duration::seconds(extra % 3600)
}

/// A new record for subject `i`.
fn tower_record(i: usize) -> Record {
    let mut data = std::collections::HashMap::new();
    data.insert("subject".to_owned(), serde_json::Value::String(subject(i)));
    Record {
        id: Id::default(),
        data,
        expiry_date: tower_expiry(0),
    }
}

/// Preloads and measures a tower-sessions store. The run's ids stay in `run` for cleanup even
/// when this fails.
async fn tower_measure(
    peer: &'static str,
    run: &Arc<TowerRun>,
    plan: &Plan,
) -> Result<Vec<PeerSample>, String> {
    let fail = move |what: &'static str| {
        move |e: tower_sessions_core::session_store::Error| format!("{peer} {what}: {e}")
    };
    let r = Arc::clone(run);
    run_ops(PRELOAD_TASKS, plan.sessions, move |i| {
        let r = Arc::clone(&r);
        async move {
            let mut record = tower_record(i);
            r.store
                .create(&mut record)
                .await
                .map_err(fail("preload create"))?;
            let _ = r.records[i].set(record);
            Ok(())
        }
    })
    .await?;

    let n = plan.sessions;
    let mut samples = Vec::new();
    for op in PeerOp::ALL {
        for (level, &c) in plan.concurrency.iter().enumerate() {
            let r = Arc::clone(run);
            let base = level * plan.ops;
            let ns = match op {
                PeerOp::Validate => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let id = slot(&r.records, i % n, "preloaded record")?.id;
                            match r.store.load(&id).await.map_err(fail("load"))? {
                                Some(_) => Ok(()),
                                None => {
                                    Err(format!("{peer} load: preloaded session {id} not found"))
                                }
                            }
                        }
                    })
                    .await?
                }
                PeerOp::Touch => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let mut record = slot(&r.records, i % n, "preloaded record")?.clone();
                            record.expiry_date = tower_expiry(base + i + 1);
                            r.store.save(&record).await.map_err(fail("save"))
                        }
                    })
                    .await?
                }
                PeerOp::Create => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let mut record = tower_record(n + base + i);
                            r.store.create(&mut record).await.map_err(fail("create"))?;
                            let _ = r.created[base + i].set(record.id);
                            Ok(())
                        }
                    })
                    .await?
                }
                PeerOp::Revoke => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let id = *slot(&r.created, base + i, "created session")?;
                            r.store.delete(&id).await.map_err(fail("delete"))
                        }
                    })
                    .await?
                }
            };
            samples.push(PeerSample {
                peer,
                operation: op,
                concurrency: c,
                ns_per_op: ns,
            });
        }
    }
    Ok(samples)
}

/// A sqlx 0.8 pool like leasehold's recommended one, with 32 connections.
async fn sqlx08_pool(url: &str) -> Result<sqlx::PgPool, String> {
    sqlx::postgres::PgPoolOptions::new()
        .max_connections(32)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect(url)
        .await
        .map_err(|e| format!("peer bench: cannot connect to PostgreSQL: {e}"))
}

/// tower-sessions-sqlx-store's `PostgresStore` in schema `schema`, dropped afterwards.
async fn tower_postgres(url: &str, schema: &str, plan: &Plan) -> Result<Vec<PeerSample>, String> {
    const PEER: &str = "tower-sessions-sqlx-store";
    let pool = sqlx08_pool(url).await?;
    let measured = async {
        let store = TowerPgStore::new(pool.clone())
            .with_schema_name(schema)
            .map_err(|e| format!("{PEER}: {e}"))?;
        store
            .migrate()
            .await
            .map_err(|e| format!("{PEER} migrate: {e}"))?;
        let run = Arc::new(TowerRun {
            store: Arc::new(store),
            records: slots(plan.sessions),
            created: slots(plan.created()),
        });
        tower_measure(PEER, &run, plan).await
    }
    .await;
    let dropped = sqlx::query(&format!(r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#))
        .execute(&pool)
        .await
        .map_err(|e| format!("{PEER}: cannot drop schema {schema}: {e}"));
    pool.close().await;
    let samples = measured?;
    dropped?;
    Ok(samples)
}

/// tower-sessions-redis-store's `RedisStore` on a fred pool; deletes every key it wrote.
async fn tower_redis(url: &str, plan: &Plan) -> Result<Vec<PeerSample>, String> {
    const PEER: &str = "tower-sessions-redis-store";
    let config = FredConfig::from_url(url).map_err(|e| format!("{PEER}: bad URL: {e}"))?;
    let pool = FredPool::new(config, None, None, None, 6).map_err(|e| format!("{PEER}: {e}"))?;
    let _connection = pool
        .init()
        .await
        .map_err(|e| format!("{PEER}: cannot connect: {e}"))?;
    let run = Arc::new(TowerRun {
        store: Arc::new(RedisStore::new(pool.clone())),
        records: slots(plan.sessions),
        created: slots(plan.created()),
    });
    let measured = tower_measure(PEER, &run, plan).await;
    let keys: Vec<String> = run
        .records
        .iter()
        .filter_map(|r| r.get().map(|r| r.id.to_string()))
        .chain(
            run.created
                .iter()
                .filter_map(|id| id.get().map(Id::to_string)),
        )
        .collect();
    let deleted = redis_delete(url, keys)
        .await
        .map_err(|e| format!("{PEER} cleanup: {e}"));
    let _ = pool.quit().await;
    let samples = measured?;
    deleted?;
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// session-guard

/// What a session-guard run shares between tasks.
struct GuardRun<St> {
    /// Default configuration: validates write nothing.
    guard: Guard<St, String>,
    /// Same store, `last_seen` written on every authenticate.
    toucher: Guard<St, String>,
    ctx: ClientContext,
    /// Tokens of the preloaded sessions.
    tokens: Vec<OnceLock<String>>,
    /// Tokens of the sessions the creates made, per level: `level * ops + i`.
    created: Vec<OnceLock<String>>,
}

/// The client every session-guard request comes from: one IP and User-Agent throughout, so
/// the risk checks always allow.
fn guard_ctx() -> ClientContext {
    ClientContext::new(IpAddr::V4(Ipv4Addr::new(203, 0, 113, 7)))
        .with_user_agent("Mozilla/5.0 (X11; Linux x86_64; rv:135.0) Gecko/20100101 Firefox/135.0")
}

/// The two guards of a run on `store`.
fn guard_run<St: session_guard::SessionStore + Clone>(
    store: St,
    plan: &Plan,
) -> Result<GuardRun<St>, String> {
    let touch_config = GuardConfig::builder()
        .last_seen_write_interval(Duration::ZERO)
        .build()
        .map_err(|e| format!("session-guard config: {e}"))?;
    Ok(GuardRun {
        guard: Guard::builder(store.clone(), GuardConfig::default())
            .subject::<String>()
            .build(),
        toucher: Guard::builder(store, touch_config)
            .subject::<String>()
            .build(),
        ctx: guard_ctx(),
        tokens: slots(plan.sessions),
        created: slots(plan.created()),
    })
}

/// `authenticate` must let the token through.
fn authenticated(peer: &str, outcome: Outcome<String>) -> Result<(), String> {
    match outcome {
        Outcome::Authenticated(_) => Ok(()),
        Outcome::Rejected(rejection) => Err(format!(
            "{peer} authenticate: rejected ({})",
            rejection.as_str()
        )),
    }
}

/// Preloads (login, then one authenticate per session so its token counts as used and later
/// validates write nothing) and measures session-guard on `run`.
async fn guard_measure<St: session_guard::SessionStore>(
    peer: &'static str,
    run: &Arc<GuardRun<St>>,
    plan: &Plan,
) -> Result<Vec<PeerSample>, String> {
    let fail =
        move |what: &'static str| move |e: session_guard::GuardError| format!("{peer} {what}: {e}");
    let r = Arc::clone(run);
    run_ops(PRELOAD_TASKS, plan.sessions, move |i| {
        let r = Arc::clone(&r);
        async move {
            let new = r
                .guard
                .login(&subject(i), &r.ctx, None)
                .await
                .map_err(fail("preload login"))?;
            let token = new.token.expose().to_owned();
            let outcome = r
                .guard
                .authenticate(&token, &r.ctx)
                .await
                .map_err(fail("preload authenticate"))?;
            authenticated(peer, outcome)?;
            let _ = r.tokens[i].set(token);
            Ok(())
        }
    })
    .await?;

    let n = plan.sessions;
    let mut samples = Vec::new();
    for op in PeerOp::ALL {
        for (level, &c) in plan.concurrency.iter().enumerate() {
            let r = Arc::clone(run);
            let base = level * plan.ops;
            let ns = match op {
                // The same authenticate: `toucher` writes `last_seen_at` on every call.
                PeerOp::Validate | PeerOp::Touch => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let token = slot(&r.tokens, i % n, "preloaded token")?;
                            let guard = if op == PeerOp::Touch {
                                &r.toucher
                            } else {
                                &r.guard
                            };
                            let outcome = guard
                                .authenticate(token, &r.ctx)
                                .await
                                .map_err(fail("authenticate"))?;
                            authenticated(peer, outcome)
                        }
                    })
                    .await?
                }
                PeerOp::Create => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let new = r
                                .guard
                                .login(&subject(n + base + i), &r.ctx, None)
                                .await
                                .map_err(fail("login"))?;
                            let _ = r.created[base + i].set(new.token.expose().to_owned());
                            Ok(())
                        }
                    })
                    .await?
                }
                PeerOp::Revoke => {
                    run_ops(c, plan.ops, move |i| {
                        let r = Arc::clone(&r);
                        async move {
                            let token = slot(&r.created, base + i, "created token")?;
                            if r.guard
                                .logout(token, &r.ctx)
                                .await
                                .map_err(fail("logout"))?
                            {
                                Ok(())
                            } else {
                                Err(format!("{peer} logout: the session was not there"))
                            }
                        }
                    })
                    .await?
                }
            };
            samples.push(PeerSample {
                peer,
                operation: op,
                concurrency: c,
                ns_per_op: ns,
            });
        }
    }
    Ok(samples)
}

/// session-guard's `PgStore` on a sqlx 0.9 pool whose connections use `schema` as their
/// search path (the store's tables are unqualified); the schema is dropped afterwards.
async fn guard_postgres(url: &str, schema: &str, plan: &Plan) -> Result<Vec<PeerSample>, String> {
    const PEER: &str = "session-guard PgStore";
    let options = sqlx09::postgres::PgConnectOptions::from_str(url)
        .map_err(|e| format!("{PEER}: bad URL: {e}"))?
        .options([("search_path", schema)]);
    let pool = sqlx09::postgres::PgPoolOptions::new()
        .max_connections(32)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .connect_with(options)
        .await
        .map_err(|e| format!("{PEER}: cannot connect to PostgreSQL: {e}"))?;
    let measured = async {
        sqlx09::query(sqlx09::AssertSqlSafe(format!(
            r#"CREATE SCHEMA "{schema}""#
        )))
        .execute(&pool)
        .await
        .map_err(|e| format!("{PEER}: cannot create schema {schema}: {e}"))?;
        let store = PgStore::migrated(pool.clone())
            .await
            .map_err(|e| format!("{PEER} migrate: {e}"))?;
        let run = Arc::new(guard_run(store, plan)?);
        guard_measure(PEER, &run, plan).await
    }
    .await;
    let dropped = sqlx09::query(sqlx09::AssertSqlSafe(format!(
        r#"DROP SCHEMA IF EXISTS "{schema}" CASCADE"#
    )))
    .execute(&pool)
    .await
    .map_err(|e| format!("{PEER}: cannot drop schema {schema}: {e}"));
    pool.close().await;
    let samples = measured?;
    dropped?;
    Ok(samples)
}

/// session-guard's `ValkeyStore` under key prefix `prefix`; deletes every key under it
/// afterwards.
async fn guard_redis(url: &str, prefix: &str, plan: &Plan) -> Result<Vec<PeerSample>, String> {
    const PEER: &str = "session-guard ValkeyStore";
    let measured = async {
        let store = ValkeyStore::connect(url)
            .await
            .map_err(|e| format!("{PEER}: cannot connect: {e}"))?
            .key_prefix(prefix);
        let run = Arc::new(guard_run(store, plan)?);
        guard_measure(PEER, &run, plan).await
    }
    .await;
    let deleted = redis_delete_prefix(url, prefix)
        .await
        .map_err(|e| format!("{PEER} cleanup: {e}"));
    let samples = measured?;
    deleted?;
    Ok(samples)
}

// ---------------------------------------------------------------------------------------------
// Redis cleanup

/// A connection for cleanup.
async fn redis_connection(url: &str) -> Result<redis::aio::MultiplexedConnection, String> {
    redis::Client::open(url)
        .map_err(|e| format!("bad Redis URL: {e}"))?
        .get_multiplexed_async_connection()
        .await
        .map_err(|e| format!("cannot connect to Redis: {e}"))
}

/// Deletes exactly `keys`.
async fn redis_delete(url: &str, keys: Vec<String>) -> Result<(), String> {
    let mut conn = redis_connection(url).await?;
    for chunk in keys.chunks(1000) {
        redis::cmd("DEL")
            .arg(chunk)
            .query_async::<i64>(&mut conn)
            .await
            .map_err(|e| format!("DEL failed: {e}"))?;
    }
    Ok(())
}

/// Deletes every key starting with `prefix` (which holds no glob characters).
async fn redis_delete_prefix(url: &str, prefix: &str) -> Result<(), String> {
    if prefix.is_empty() || prefix.contains(['*', '?', '[', ']', '\\']) {
        return Err(format!("refusing to delete by prefix {prefix:?}"));
    }
    let mut conn = redis_connection(url).await?;
    let pattern = format!("{prefix}*");
    let mut keys = Vec::new();
    let mut cursor: u64 = 0;
    loop {
        let (next, batch): (u64, Vec<String>) = redis::cmd("SCAN")
            .arg(cursor)
            .arg("MATCH")
            .arg(&pattern)
            .arg("COUNT")
            .arg(1000)
            .query_async(&mut conn)
            .await
            .map_err(|e| format!("SCAN failed: {e}"))?;
        keys.extend(batch.into_iter().filter(|k| k.starts_with(prefix)));
        if next == 0 {
            break;
        }
        cursor = next;
    }
    keys.sort_unstable();
    keys.dedup();
    drop(conn);
    redis_delete(url, keys).await
}

/// The leasehold row each peer operation is compared with.
fn leasehold_row(op: PeerOp) -> &'static str {
    match op {
        PeerOp::Validate => "validate, no touch",
        PeerOp::Touch => "validate, touch due",
        PeerOp::Create => "create",
        PeerOp::Revoke => "revoke by id",
    }
}

/// One round's rows `<leasehold row> vs <peer>` at size `n`: every peer measured on the same
/// server, right after the round's leasehold rows, each beside the leasehold row of the same
/// operation, size and concurrency (`leasehold(name)`: that row's value in this round). The
/// ratio is the peer's time ÷ leasehold's, so ≥ 1.0 means leasehold is at least as fast (the
/// issue's target for every operation).
pub(crate) async fn peer_rows(
    server: &PeerServer,
    kind: &str,
    n: usize,
    concurrency: &[usize],
    ops: usize,
    leasehold: impl Fn(&str) -> Option<f64>,
    progress: &crate::bench::Progress,
) -> Result<Vec<crate::bench::Measured>, crate::bench::BenchError> {
    use crate::bench::{BenchError, Row, Target, Unit, size_label};
    progress.note(&format!("measuring the peers at {}", size_label(n)));
    let samples = measure_peers(server.clone(), n, concurrency, ops)
        .await
        .map_err(|e| BenchError(format!("peer measurement: {e}")))?;
    let mut out = Vec::new();
    for s in samples {
        let name = format!(
            "{kind} {}, {}, c={}",
            leasehold_row(s.operation),
            size_label(n),
            s.concurrency
        );
        let Some(ours) = leasehold(&name) else {
            continue;
        };
        let row = Row::new(
            format!("{name} vs {}", s.peer),
            s.peer,
            Unit::Ns,
            Target::RatioAtLeast(1.0),
        );
        out.push((row, (ours, Some(s.ns_per_op))));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const POSTGRES_URL: &str = "postgres://postgres@127.0.0.1:5432/test";
    const REDIS_URL: &str = "redis://127.0.0.1:6379";

    const PEERS_POSTGRES: [&str; 2] = ["tower-sessions-sqlx-store", "session-guard PgStore"];
    const PEERS_REDIS: [&str; 2] = ["tower-sessions-redis-store", "session-guard ValkeyStore"];

    /// Every (peer, op, c) has exactly one finite, positive sample.
    fn check_complete(samples: &[PeerSample], peers: &[&str], concurrency: &[usize]) {
        assert_eq!(
            samples.len(),
            peers.len() * PeerOp::ALL.len() * concurrency.len()
        );
        for peer in peers {
            for op in PeerOp::ALL {
                for &c in concurrency {
                    let found: Vec<_> = samples
                        .iter()
                        .filter(|s| s.peer == *peer && s.operation == op && s.concurrency == c)
                        .collect();
                    assert_eq!(found.len(), 1, "{peer} {} c={c}: {found:?}", op.name());
                    let ns = found[0].ns_per_op;
                    assert!(
                        ns.is_finite() && ns > 0.0,
                        "{peer} {} c={c}: {ns}",
                        op.name()
                    );
                }
            }
        }
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn postgres_peers_measure_every_operation() {
        let concurrency = [1, 32];
        let samples = measure_peers(
            PeerServer::Postgres(POSTGRES_URL.into()),
            50,
            &concurrency,
            100,
        )
        .await
        .unwrap();
        check_complete(&samples, &PEERS_POSTGRES, &concurrency);
    }

    #[tokio::test(flavor = "multi_thread")]
    async fn redis_peers_measure_every_operation() {
        let concurrency = [1, 32];
        let samples = measure_peers(PeerServer::Redis(REDIS_URL.into()), 50, &concurrency, 100)
            .await
            .unwrap();
        check_complete(&samples, &PEERS_REDIS, &concurrency);
    }

    /// The real measurement: `cargo test -p leasehold-cli --features peers --release --lib
    /// bench_peers -- --ignored --nocapture`.
    #[test]
    #[ignore = "takes minutes; run by hand with --release"]
    fn measure_peers_table() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        let concurrency = [1, 32];
        let mut samples = Vec::new();
        for server in [
            PeerServer::Postgres(POSTGRES_URL.into()),
            PeerServer::Redis(REDIS_URL.into()),
        ] {
            samples.extend(
                runtime
                    .block_on(measure_peers(server, 10_000, &concurrency, 5_000))
                    .unwrap(),
            );
        }
        println!(
            "{:<28} {:<9} {:>3} {:>12} {:>10}",
            "peer", "op", "c", "ns/op", "ops/s"
        );
        for s in &samples {
            println!(
                "{:<28} {:<9} {:>3} {:>12.0} {:>10.0}",
                s.peer,
                s.operation.name(),
                s.concurrency,
                s.ns_per_op,
                1e9 / s.ns_per_op
            );
        }
    }
}
