//! Opening a store: the schema name, the embedded migrations, the statements, pool settings.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64};
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, Row, Transaction};

use crate::row::COLUMNS;
use crate::{Inner, PostgresStore};

/// The migrations, in order: (version, description, SQL with the `"leasehold"` placeholder).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "contract v3 schema",
        include_str!("../sql/0001_schema.sql"),
    ),
    (
        2,
        "contract v3 functions",
        include_str!("../sql/0002_functions.sql"),
    ),
    (
        3,
        "names of up to 1024 bytes",
        include_str!("../sql/0003_name_lengths.sql"),
    ),
    (
        4,
        "an inlinable server clock",
        include_str!("../sql/0004_inline_clock.sql"),
    ),
    (
        5,
        "routine touches commit without waiting for the WAL flush",
        include_str!("../sql/0005_routine_touch.sql"),
    ),
    (
        6,
        "no SQL function planned on every call",
        include_str!("../sql/0006_cached_plans.sql"),
    ),
];

/// The newest migration.
pub(crate) const LATEST: i32 = 6;

/// The schema placeholder in the migration files (double quotes included).
const PLACEHOLDER: &str = "\"leasehold\"";

/// Why a store could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The schema name is not 1 to 63 characters of `[a-z0-9_]` starting with a letter or `_`.
    #[error(
        "invalid schema name {0:?}: use 1 to 63 characters of [a-z0-9_], starting with a letter or _"
    )]
    InvalidSchemaName(String),
    /// The server could not be reached, or refused the connection.
    #[error("cannot connect to PostgreSQL: {0}")]
    Connect(#[source] sqlx::Error),
    /// A migration failed (nothing of it was applied).
    #[error("migration failed: {0}")]
    Migrate(#[source] sqlx::Error),
    /// The schema was migrated by a newer build than this one.
    #[error(
        "schema {schema:?} is at version {found}, newer than this build's {known}: upgrade leasehold-postgres"
    )]
    NewerSchema {
        /// The schema.
        schema: String,
        /// Its newest applied migration.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },
}

/// Checks a schema name: 1 to 63 bytes of `[a-z0-9_]`, not starting with a digit. Anything
/// else is refused rather than quoted, so the name can never break out of the migration SQL
/// (the function bodies are dollar-quoted) or fold differently than the user wrote it.
pub(crate) fn check_schema_name(name: &str) -> Result<(), OpenError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !name.as_bytes()[0].is_ascii_digit();
    if ok {
        Ok(())
    } else {
        Err(OpenError::InvalidSchemaName(name.to_owned()))
    }
}

/// The schema name as a quoted identifier.
pub(crate) fn quoted(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Connection settings the store relies on, over `url`: a 5 s `lock_timeout` (a lock wait
/// past it is `Timeout`, nothing committed) and a 30 s `statement_timeout`, sent as startup
/// options (no extra round trip, kept by every connection of the pool).
pub fn recommended_connect_options(url: &str) -> Result<PgConnectOptions, sqlx::Error> {
    Ok(PgConnectOptions::from_str(url)?
        .options([("lock_timeout", "5s"), ("statement_timeout", "30s")]))
}

/// Pool settings for a store: `test_before_acquire` off (it would cost a round trip per call;
/// a dead connection surfaces as `Unavailable` and the pool replaces it), a 5 s acquire
/// timeout (`Timeout`), at most 10 connections, idle ones closed after 10 minutes.
pub fn recommended_pool_options() -> PgPoolOptions {
    PgPoolOptions::new()
        .max_connections(10)
        .test_before_acquire(false)
        .acquire_timeout(Duration::from_secs(5))
        .idle_timeout(Some(Duration::from_secs(600)))
}

impl PostgresStore {
    /// Opens the store in `schema` on your pool, creating or migrating the schema first (in one
    /// transaction under an advisory lock on the schema name, so many processes may start at
    /// once). Nothing is set on the pool's connections; every statement is schema-qualified.
    pub async fn open(pool: PgPool, schema: &str) -> Result<Self, OpenError> {
        check_schema_name(schema)?;
        migrate(&pool, schema).await?;
        Ok(PostgresStore {
            inner: Arc::new(Inner {
                sql: Statements::new(&quoted(schema)),
                pool,
                schema: schema.to_owned(),
                offset_ms: AtomicI64::new(0),
                statements: AtomicU64::new(0),
                retried: AtomicU64::new(0),
            }),
        })
    }

    /// Connects to `url` with [`recommended_pool_options`] and [`recommended_connect_options`],
    /// then [`open`](Self::open)s the store in `schema`.
    pub async fn connect(url: &str, schema: &str) -> Result<Self, OpenError> {
        check_schema_name(schema)?;
        let options = recommended_connect_options(url).map_err(OpenError::Connect)?;
        let pool = recommended_pool_options()
            .connect_with(options)
            .await
            .map_err(OpenError::Connect)?;
        Self::open(pool, schema).await
    }

    /// Drops `schema` and everything in it (`DROP SCHEMA … CASCADE`): every session, ticket
    /// and slot stored there. For tests and tear-down; never on a live store.
    pub async fn drop_schema(pool: &PgPool, schema: &str) -> Result<(), OpenError> {
        check_schema_name(schema)?;
        sqlx::raw_sql(&format!("DROP SCHEMA IF EXISTS {} CASCADE", quoted(schema)))
            .execute(pool)
            .await
            .map_err(OpenError::Migrate)?;
        Ok(())
    }
}

/// Creates or migrates the schema, in one transaction under an advisory lock on its name.
///
/// (Raw SQL goes through `Executor::execute` with the connection first: `RawSql::execute`
/// trips rustc's higher-ranked `Send` check in callers that need a `Send` future.)
async fn migrate(pool: &PgPool, schema: &str) -> Result<(), OpenError> {
    let mut tx: Transaction<'_, Postgres> = pool.begin().await.map_err(OpenError::Connect)?;
    match migrate_in(&mut tx, schema).await {
        Ok(()) => tx.commit().await.map_err(OpenError::Migrate),
        Err(e) => {
            // Roll back now: a dropped transaction only queues its rollback, and until the
            // connection is used again it would hold the migration lock.
            let _ = tx.rollback().await;
            Err(e)
        }
    }
}

async fn migrate_in(tx: &mut Transaction<'_, Postgres>, schema: &str) -> Result<(), OpenError> {
    let q = quoted(schema);
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("leasehold store migration {schema}"))
        .execute(&mut **tx)
        .await
        .map_err(OpenError::Migrate)?;
    let create = format!(
        "CREATE SCHEMA IF NOT EXISTS {q};
         CREATE TABLE IF NOT EXISTS {q}.schema_migrations (
             version     integer     PRIMARY KEY,
             description text        NOT NULL,
             applied_at  timestamptz NOT NULL DEFAULT now())"
    );
    sqlx::Executor::execute(&mut **tx, sqlx::raw_sql(&create))
        .await
        .map_err(OpenError::Migrate)?;
    let versions = format!("SELECT version FROM {q}.schema_migrations");
    let applied = sqlx::query(&versions)
        .fetch_all(&mut **tx)
        .await
        .map_err(OpenError::Migrate)?
        .iter()
        .map(|r| r.try_get::<i32, _>(0))
        .collect::<Result<Vec<i32>, _>>()
        .map_err(OpenError::Migrate)?;
    if let Some(&found) = applied.iter().max()
        && found > LATEST
    {
        return Err(OpenError::NewerSchema {
            schema: schema.to_owned(),
            found,
            known: LATEST,
        });
    }
    let record =
        format!("INSERT INTO {q}.schema_migrations (version, description) VALUES ($1, $2)");
    for &(version, description, sql) in MIGRATIONS {
        if applied.contains(&version) {
            continue;
        }
        let sql: String = sql.replace(PLACEHOLDER, &q);
        sqlx::Executor::execute(&mut **tx, sqlx::raw_sql(&sql))
            .await
            .map_err(OpenError::Migrate)?;
        sqlx::query(&record)
            .bind(version)
            .bind(description.to_owned())
            .execute(&mut **tx)
            .await
            .map_err(OpenError::Migrate)?;
    }
    Ok(())
}

/// The statement texts, with the schema substituted once at open (so each is prepared once per
/// connection and then reused).
pub(crate) struct Statements {
    pub(crate) load: String,
    pub(crate) clock: String,
    pub(crate) insert: String,
    pub(crate) cas: String,
    pub(crate) revoke_subject: String,
    pub(crate) revoke_resource: String,
    pub(crate) list_subject: String,
    pub(crate) list_all: String,
    pub(crate) list_by_subject: String,
    pub(crate) list_by_resource: String,
    pub(crate) count_all: String,
    pub(crate) count_subject: String,
    pub(crate) count_resource: String,
    pub(crate) forget_creation: String,
    pub(crate) put_ticket: String,
    pub(crate) take_ticket: String,
    pub(crate) acquire_slot: String,
    pub(crate) heartbeat_slot: String,
    pub(crate) release_slot: String,
    pub(crate) reap: String,
    pub(crate) raw_dump: String,
}

/// The session columns, in the order [`crate::row::Columns`] reads them.
pub(crate) const SESSION_COLUMNS: &str = "s.id, s.subject, s.resource, s.kind, s.state, s.reason, \
     s.revoked_at, s.version, s.created_at, s.last_seen_at, s.absolute_deadline, s.expires_at, \
     s.generation, s.verifier, s.rotated_at, s.prev_verifier, s.prev_sealed, \
     s.prev_successor_seen, s.retired, s.access_verifier, s.access_expires_at, s.binding, \
     s.context_summary, s.data, s.data_version";

/// The session columns in the order of [`SESSION_COLUMNS`], unqualified (an `INSERT` list).
pub(crate) const INSERT_COLUMNS: &str = "id, subject, resource, kind, state, reason, revoked_at, \
     version, created_at, last_seen_at, absolute_deadline, expires_at, generation, verifier, \
     rotated_at, prev_verifier, prev_sealed, prev_successor_seen, retired, access_verifier, \
     access_expires_at, binding, context_summary, data, data_version";

impl Statements {
    fn new(q: &str) -> Self {
        let cols = SESSION_COLUMNS;
        let clock = format!("{q}.clock_ms($1)");
        let list = |filter: &str| {
            format!(
                "SELECT {cols} FROM {q}.sessions AS s WHERE {filter} s.id > $1 \
                 ORDER BY s.id LIMIT $2"
            )
        };
        let count = |filter: &str| {
            format!(
                "WITH a AS MATERIALIZED (SELECT greatest($2, {clock}) AS at) \
                 SELECT count(*) FROM {q}.sessions AS s, a \
                 WHERE {filter} s.state = 0 AND s.expires_at > a.at"
            )
        };
        let args = |n: usize| {
            (1..=n)
                .map(|i| format!("${i}"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        Statements {
            load: format!(
                "SELECT {clock} AS store_time, {cols} FROM {q}.sessions AS s WHERE s.id = $2"
            ),
            clock: format!("SELECT {clock}"),
            insert: format!("SELECT * FROM {q}.insert_session({})", args(COLUMNS + 9)),
            cas: format!("SELECT {q}.compare_and_swap({})", args(COLUMNS + 3)),
            revoke_subject: format!("SELECT {q}.revoke_subject($1, $2, $3)"),
            revoke_resource: format!("SELECT {q}.revoke_resource($1, $2, $3)"),
            list_subject: format!(
                "SELECT {cols} FROM {q}.sessions AS s WHERE s.subject = $1 ORDER BY s.id"
            ),
            list_all: list(""),
            list_by_subject: list("s.subject = $3 AND"),
            list_by_resource: list("s.resource = $3 AND"),
            count_all: count(""),
            count_subject: count("s.subject = $3 AND"),
            count_resource: count("s.resource = $3 AND"),
            forget_creation: format!(
                "DELETE FROM {q}.creations AS c WHERE c.subject = $1 AND c.session_id = $2"
            ),
            put_ticket: format!(
                "INSERT INTO {q}.tickets (id, session_id, verifier, created_at, expires_at) \
                 SELECT $2, $3, $4, a.at, a.at + $6 \
                 FROM (SELECT greatest($5, {clock}) AS at) AS a"
            ),
            take_ticket: format!("SELECT * FROM {q}.take_ticket($1, $2, $3, $4)"),
            acquire_slot: format!("SELECT {q}.acquire_slot({})", args(8)),
            heartbeat_slot: format!("SELECT {q}.heartbeat_slot($1, $2, $3, $4)"),
            release_slot: format!("DELETE FROM {q}.slots AS sl WHERE sl.id = $1"),
            reap: format!("SELECT * FROM {q}.reap($1, $2, $3)"),
            raw_dump: format!(
                "SELECT convert_to(t::text, 'UTF8') FROM {q}.sessions AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.tickets AS t \
                 UNION ALL SELECT t.verifier FROM {q}.tickets AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.slots AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.creations AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.subjects AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.resources AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.store_lock AS t \
                 UNION ALL SELECT convert_to(t::text, 'UTF8') FROM {q}.schema_migrations AS t"
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schema_names_are_checked_not_quoted() {
        for ok in ["leasehold", "_x", "a1_b", &"a".repeat(63)] {
            assert!(check_schema_name(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "1a",
            "Lease",
            "a-b",
            "a\"b",
            "a$fn$b",
            "a b",
            &"a".repeat(64),
        ] {
            assert!(check_schema_name(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_placeholder_is_in_every_migration_and_latest_is_the_last() {
        for (_, _, sql) in MIGRATIONS {
            assert!(sql.contains(PLACEHOLDER));
        }
        assert_eq!(MIGRATIONS.last().map(|m| m.0), Some(LATEST));
    }
}
