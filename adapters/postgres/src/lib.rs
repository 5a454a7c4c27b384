//! # leasehold-postgres
//!
//! A [`leasehold::Store`] on PostgreSQL (12 or later; tested on 15): every store method is
//! **one statement, one round trip, one transaction** — a call of a PL/pgSQL function that
//! takes its locks, reads the server's clock after them, checks, and writes.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leasehold::{Policy, Sessions};
//! use leasehold_postgres::PostgresStore;
//!
//! // Your own pool (see `recommended_pool_options` for the settings that matter) …
//! let pool = leasehold_postgres::recommended_pool_options()
//!     .connect_with(leasehold_postgres::recommended_connect_options("postgres://app@db/app")?)
//!     .await?;
//! // … and a schema of its own; the migrations run once, safely from many processes at once.
//! let store = PostgresStore::open(pool, "leasehold").await?;
//! let reaper = leasehold_postgres::spawn_reaper(store.clone(), std::time::Duration::from_secs(30), 1000);
//! let sessions = Sessions::new(store, Policy::default())?;
//! # let _ = sessions; reaper.stop().await;
//! # Ok(()) }
//! ```
//!
//! ## What it keeps, and how
//!
//! - **Tables** in a schema of their own (the name is configurable; every statement is
//!   schema-qualified, nothing sets `search_path` on your pool): `sessions`, `tickets`,
//!   `slots`, the rate log `creations`, the lock rows `subjects`, `resources`, `store_lock`,
//!   and `schema_migrations`. See `sql/0001_schema.sql` and `docs/adapters/postgres.md`.
//! - **Sessions** have one typed column per field of the record (id, subject, resource, kind,
//!   state, reason, revoked_at, version, times, the verifiers, the sealed successor, the
//!   retired verifiers, the access grant, the binding hash, the summary, the data and its
//!   version), with `CHECK` constraints mirroring the record's rules (`expires_at` never passes
//!   `absolute_deadline`). A row maps to a record only if the engine's own codec would accept
//!   that record (it must survive an encode and decode unchanged) and it is stored under its
//!   own id; anything else is [`StoreError::Corrupt`](leasehold::StoreError). Tickets and slots
//!   are typed columns too.
//! - **Time** is the server's `clock_timestamp()` read after every lock a function takes; each
//!   conditional write is judged at the later of it and the caller's clock, and
//!   [`load_session`](leasehold::Store::load_session) returns it in the same round trip
//!   (capability `server_clock`).
//! - **Caps** lock a per-subject (per-resource, store-wide) row, exclusively, then count in a
//!   later statement (a single statement would count on a snapshot taken before its lock).
//!   Locks are taken in one global order, so evictions and group revocations cannot deadlock.
//!
//! ## Errors
//!
//! A unique violation is [`AlreadyExists`](leasehold::StoreError::AlreadyExists); a deadlock or
//! a serialization failure (nothing committed) is retried twice, then `Unavailable`; a lock
//! timeout, a statement timeout or a pool that had no free connection in time is `Timeout`;
//! a lost connection or any other server error is `Unavailable`. Those last two mean the outcome
//! is unknown, as the store contract says.

mod error;
#[doc(hidden)]
pub mod fuzzing;
mod groups;
mod import;
mod open;
mod reap;
mod row;
mod session;
mod slots;
mod store;
mod tickets;

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

pub use open::{OpenError, recommended_connect_options, recommended_pool_options};
pub use reap::{ReaperHandle, spawn_reaper};

/// The version of the newest migration this build runs (`schema_migrations.version`).
pub const SCHEMA_VERSION: i32 = open::LATEST;

/// A leasehold store in one schema of a PostgreSQL database. Cheap to clone (clones share the
/// pool).
#[derive(Clone)]
pub struct PostgresStore {
    inner: Arc<Inner>,
}

struct Inner {
    pool: sqlx::PgPool,
    schema: String,
    sql: open::Statements,
    /// Test hook: added to the server's clock ([`leasehold::Store::set_clock_offset`]).
    offset_ms: AtomicI64,
    /// Statements sent (each one round trip), for tests and metrics.
    statements: AtomicU64,
    /// Statements sent again after a deadlock or a serialization failure.
    retried: AtomicU64,
}

impl std::fmt::Debug for PostgresStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresStore")
            .field("schema", &self.inner.schema)
            .finish_non_exhaustive()
    }
}

impl PostgresStore {
    /// The pool the store sends its statements on.
    pub fn pool(&self) -> &sqlx::PgPool {
        &self.inner.pool
    }

    /// The schema the store keeps its tables in.
    pub fn schema(&self) -> &str {
        &self.inner.schema
    }

    /// How many statements this store (and its clones) has sent since it was opened: each is
    /// one round trip to the server (a retried deadlock counts twice). For tests and metrics.
    pub fn statements_sent(&self) -> u64 {
        self.inner.statements.load(Ordering::Relaxed)
    }

    /// How many statements were sent again because the server reported a deadlock or a
    /// serialization failure (nothing had committed). The lock order makes deadlocks between
    /// the store's own calls impossible, so this stays 0 unless something else holds locks on
    /// the schema's rows. For tests and metrics.
    pub fn statements_retried(&self) -> u64 {
        self.inner.retried.load(Ordering::Relaxed)
    }

    fn offset(&self) -> i64 {
        self.inner.offset_ms.load(Ordering::Relaxed)
    }
}
