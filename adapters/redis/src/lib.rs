//! # leasehold-redis
//!
//! A [`Store`](leasehold::Store) on Redis (standalone or Cluster, one key layout for both):
//! every atomic step is one Lua script (`EVALSHA`, reloaded after `NOSCRIPT`), every key is
//! prefixed and hash-tagged so that everything one script touches for a subject shares a slot,
//! records are STRINGs in the engine's codec with `PXAT` at their deadline (native expiry),
//! and indexes are sorted sets with TTLs, kept consistent by the same scripts.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leasehold_redis::{RedisConfig, RedisStore};
//! let store = RedisStore::open(RedisConfig::new("redis://127.0.0.1:6379").prefix("myapp")).await?;
//! # let _ = store; Ok(()) }
//! ```
//!
//! ## Guarantees
//!
//! - Per session and per subject (load, insert with rate and subject cap, compare-and-swap,
//!   `revoke_subject`, tickets, the per-session slot cap): one script in one slot, atomic and
//!   linearizable on standalone and Cluster alike.
//! - Across slots (a resource's sessions and slots, the global index): the multi-step
//!   protocols of `docs/writing-an-adapter.md` §8, with their linearization points; see
//!   `docs/adapters/redis.md`. The store declares `sharded` on standalone too: the layout and
//!   the protocols are the same, so an application sees the same semantics on both, and moving
//!   from one server to a Cluster changes nothing. (One shortcut on a single server: a create
//!   takes the global step and the resource registration inside its one script — the same
//!   checks in the same order, one round trip instead of two or three.)
//! - Time: every conditional write is judged at `max(caller now, server TIME)`; `load_session`
//!   returns the server time read in the same round trip (a `GET` + `TIME` pipeline sent to
//!   the node that holds the key).
//! - `native_expiry`: records vanish at their deadline; `reap` only cleans index entries.
//! - Revocations run as `#!lua flags=allow-oom` scripts, so they work on a full server
//!   (`maxmemory-policy noeviction` is required: see the docs).

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod keys;
mod open;
mod reap;
mod scripts;
mod session;
mod slots;
mod store;
mod tickets;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;

use leasehold::{SessionId, StoreError};
use redis::{FromRedisValue, ScriptInvocation, Value};

pub use error::OpenError;
pub use open::RedisConfig;

use keys::Keys;
use open::Conn;
use scripts::Scripts;

/// A leasehold store on Redis. Cheap to clone (one shared multiplexed connection).
#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    conn: Conn,
    nodes: Vec<String>,
    keys: Keys,
    scripts: Scripts,
    offset: AtomicI64,
    timeout: Duration,
    wait: Option<(u32, Duration)>,
    calls: AtomicU64,
    /// `RedisConfig::global_index`.
    global_index: bool,
    /// Without the global index: the time (ms) until which the `unindexed` marker is known to
    /// live (see `RedisStore::mark_unindexed`).
    unindexed_until: AtomicI64,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RedisStore")
            .field("prefix", &self.inner.keys.prefix())
            .field("cluster", &self.is_cluster())
            .finish()
    }
}

impl RedisStore {
    /// Whether this store talks to a Redis Cluster.
    pub fn is_cluster(&self) -> bool {
        matches!(self.inner.conn, Conn::Cluster(_))
    }

    /// The key prefix.
    pub fn prefix(&self) -> &str {
        self.inner.keys.prefix()
    }

    /// Requests sent to Redis so far by this store (a script call, a command or a pipeline
    /// counts one; a `NOSCRIPT` reload is not counted). A test hook for round-trip budgets.
    pub fn round_trips(&self) -> u64 {
        self.inner.calls.load(Ordering::Relaxed)
    }

    fn offset(&self) -> i64 {
        self.inner.offset.load(Ordering::Relaxed)
    }

    /// The key a session's record is stored under (`P:s:{tag}:<id hex>`; see the key layout
    /// in the crate docs). For benchmarks and diagnostics that read the record directly.
    pub fn session_key(&self, id: &SessionId) -> String {
        self.inner.keys.session(id)
    }

    /// The key of the global index (`P:g:{global}`, absent without it). For benchmarks and
    /// diagnostics that measure it.
    pub fn global_index_key(&self) -> String {
        self.inner.keys.global()
    }

    /// Sends one raw command on the store's own connection, with its timeout (so it costs
    /// what the store's own commands cost). For benchmarks and diagnostics: writing to the
    /// store's keys this way bypasses every check of the store contract.
    pub async fn raw_command<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.cmd(cmd).await
    }

    /// Sends one raw pipeline (one round trip) on the store's own connection, with its
    /// timeout. For benchmarks and diagnostics, like [`raw_command`](Self::raw_command): the
    /// bench compares a validate with a `GET` + `TIME` pipeline sent this way.
    pub async fn raw_pipeline<T: FromRedisValue>(
        &self,
        p: &redis::Pipeline,
    ) -> Result<T, StoreError> {
        self.pipe(p).await
    }

    /// Runs one raw script invocation (`EVALSHA`, loading the script on `NOSCRIPT`) on the
    /// store's own connection, with its timeout. For benchmarks and diagnostics, like
    /// [`raw_command`](Self::raw_command).
    pub async fn raw_script<T: FromRedisValue>(
        &self,
        inv: &ScriptInvocation<'_>,
    ) -> Result<T, StoreError> {
        self.run(inv).await
    }

    /// Runs one request with the store's timeout.
    async fn req<T, F>(&self, f: impl FnOnce(Conn) -> F) -> Result<T, StoreError>
    where
        F: std::future::Future<Output = redis::RedisResult<T>>,
    {
        self.inner.calls.fetch_add(1, Ordering::Relaxed);
        let c = self.inner.conn.clone();
        match tokio::time::timeout(self.inner.timeout, f(c)).await {
            Ok(r) => r.map_err(error::store_error),
            Err(_) => Err(StoreError::Timeout),
        }
    }

    /// Runs a script invocation.
    async fn run<T: FromRedisValue>(&self, inv: &ScriptInvocation<'_>) -> Result<T, StoreError> {
        self.req(|mut c| async move { inv.invoke_async(&mut c).await })
            .await
    }

    /// Runs one command.
    async fn cmd<T: FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        self.req(|mut c| async move { cmd.query_async(&mut c).await })
            .await
    }

    /// Runs one pipeline (one round trip).
    async fn pipe<T: FromRedisValue>(&self, p: &redis::Pipeline) -> Result<T, StoreError> {
        self.req(|mut c| async move { p.query_async(&mut c).await })
            .await
    }

    /// Runs one pipeline (one round trip) on the node that holds `key` (see
    /// [`Conn::pipe_at_key`](open::Conn::pipe_at_key)).
    async fn pipe_at_key(&self, p: &redis::Pipeline, key: &str) -> Result<Vec<Value>, StoreError> {
        self.req(|mut c| async move { c.pipe_at_key(p, key.as_bytes()).await })
            .await
    }

    /// After a security write: `WAIT` for the configured replicas. `WAIT` covers every write
    /// sent earlier on the same connection. On a Cluster the client sends it on its connection
    /// to every primary and keeps the smallest count, so each primary (the one that took the
    /// write among them) must have `n` replicas that acknowledged everything this store sent it.
    async fn durable(&self) -> Result<(), StoreError> {
        let Some((n, t)) = self.inner.wait else {
            return Ok(());
        };
        let got: i64 = self
            .cmd(redis::cmd("WAIT").arg(n).arg(t.as_millis() as u64))
            .await?;
        if got < i64::from(n) {
            return Err(StoreError::Unavailable(format!(
                "WAIT: {got} of {n} replicas acknowledged the write"
            )));
        }
        Ok(())
    }

    /// Ids grouped so that each group lives in one slot (by shard tag on a Cluster; one group
    /// on a standalone server), in batches of at most 1000.
    fn groups(&self, ids: &[SessionId]) -> Vec<Vec<SessionId>> {
        let mut out: Vec<Vec<SessionId>> = Vec::new();
        if self.is_cluster() {
            let mut by: std::collections::BTreeMap<[u8; 2], Vec<SessionId>> = Default::default();
            for id in ids {
                by.entry(keys::group_of(id)).or_default().push(*id);
            }
            for v in by.into_values() {
                out.extend(v.chunks(1000).map(<[SessionId]>::to_vec));
            }
        } else {
            out.extend(ids.chunks(1000).map(<[SessionId]>::to_vec));
        }
        out
    }
}

/// A script reply as an array.
fn array(v: Value, what: &str) -> Result<Vec<Value>, StoreError> {
    match v {
        Value::Array(a) => Ok(a),
        _ => Err(error::bad_reply(what)),
    }
}

/// Bytes of a bulk or simple string; `None` for nil.
fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn int(v: &Value, what: &str) -> Result<i64, StoreError> {
    match v {
        Value::Int(i) => Ok(*i),
        Value::BulkString(b) => std::str::from_utf8(b)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| error::bad_reply(what)),
        _ => Err(error::bad_reply(what)),
    }
}

/// The status word of a `{'WORD', …}` reply.
fn status(a: &[Value], what: &str) -> Result<String, StoreError> {
    a.first()
        .and_then(bytes)
        .map(|b| String::from_utf8_lossy(b).into_owned())
        .ok_or_else(|| error::bad_reply(what))
}

fn ms(t: leasehold::Timestamp) -> u64 {
    t.as_millis()
}

fn ts(v: i64) -> leasehold::Timestamp {
    leasehold::Timestamp::from_millis(u64::try_from(v).unwrap_or(0))
}
