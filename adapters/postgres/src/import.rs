//! Bulk import: many session records in one transaction, written as `insert_session` writes an
//! uncapped record (the subject's and resource's lock rows, then the session row), thousands of
//! rows a statement instead of one function call each. For moving sessions in from another
//! store, and for loading a benchmark's million sessions in a minute instead of ten.

use std::sync::atomic::Ordering;

use leasehold::store::{InsertCheck, check_insert};
use leasehold::{SessionRecord, StoreError};
use sqlx::QueryBuilder;
use sqlx::postgres::Postgres;

use crate::PostgresStore;
use crate::error::map;
use crate::open::{INSERT_COLUMNS, quoted};
use crate::row::Columns;
use crate::session::bind_columns;

/// Rows per `INSERT` (25 parameters each; PostgreSQL takes at most 65 535 per statement).
const ROWS_PER_STATEMENT: usize = 2_000;

/// How long a subject's or resource's lock row outlives the latest absolute deadline of its
/// sessions: `c_slack` of `insert_session` in `sql/0002_functions.sql` (the import test
/// compares the rows both write).
const LOCK_ROW_SLACK_MS: i64 = 86_400_000;

impl PostgresStore {
    /// Inserts `records` as they are, in one transaction: no cap, creation rate or global cap
    /// is consulted and nothing is evicted, exactly as [`insert_session`] with no limits (the
    /// same lock rows, the same session rows). Each record must carry its subject's shard tag
    /// (`InvalidWrite`); an id already stored, or twice in `records`, is `AlreadyExists`. On
    /// any error nothing is written. Returns how many records went in.
    ///
    /// Locks the subjects' then the resources' lock rows in name order, as `insert_session`
    /// does, so it may run beside live traffic; a long import holds those rows until it
    /// commits.
    ///
    /// [`insert_session`]: leasehold::Store::insert_session
    pub async fn import_sessions(&self, records: &[SessionRecord]) -> Result<u64, StoreError> {
        let mut rows = Vec::with_capacity(records.len());
        for r in records {
            if check_insert(None, r)? != InsertCheck::Fresh {
                return Err(StoreError::InvalidWrite("unexpected insert check"));
            }
            rows.push(Columns::of(r)?);
        }
        if rows.is_empty() {
            return Ok(0);
        }
        let q = quoted(self.schema());
        let mut tx = self.pool().begin().await.map_err(map)?;
        let subjects = rows
            .iter()
            .map(|c| (c.subject.as_str(), c.absolute_deadline));
        self.lock_rows(&mut tx, &q, ("subjects", "subject"), subjects)
            .await?;
        let resources = rows
            .iter()
            .filter_map(|c| Some((c.resource.as_deref()?, c.absolute_deadline)));
        self.lock_rows(&mut tx, &q, ("resources", "resource"), resources)
            .await?;
        let mut inserted = 0;
        for chunk in rows.chunks(ROWS_PER_STATEMENT) {
            self.inner.statements.fetch_add(1, Ordering::Relaxed);
            let mut b: QueryBuilder<'_, Postgres> =
                QueryBuilder::new(format!("INSERT INTO {q}.sessions ({INSERT_COLUMNS}) "));
            b.push_values(chunk, |mut v, c| {
                bind_columns(&mut v, c);
            });
            inserted += b
                .build()
                .execute(&mut *tx)
                .await
                .map_err(map)?
                .rows_affected();
        }
        tx.commit().await.map_err(map)?;
        Ok(inserted)
    }
}

impl PostgresStore {
    /// The lock-row upsert of `insert_session` for many `(name, absolute deadline)` pairs at
    /// once, in `table`'s `column`: each name's row expires a day after its latest absolute
    /// deadline, only ever raised, locked in name order. Nothing is sent for no pairs.
    async fn lock_rows<'a>(
        &self,
        tx: &mut sqlx::Transaction<'_, Postgres>,
        q: &str,
        (table, column): (&str, &str),
        pairs: impl Iterator<Item = (&'a str, i64)>,
    ) -> Result<(), StoreError> {
        let (names, deadlines): (Vec<&str>, Vec<i64>) = pairs.unzip();
        if names.is_empty() {
            return Ok(());
        }
        self.inner.statements.fetch_add(1, Ordering::Relaxed);
        let sql = format!(
            "INSERT INTO {q}.{table} AS t ({column}, expires_at) \
             SELECT u.n, max(u.d) + $3 FROM unnest($1::text[], $2::bigint[]) AS u(n, d) \
             GROUP BY u.n ORDER BY u.n \
             ON CONFLICT ({column}) DO UPDATE SET expires_at = EXCLUDED.expires_at \
             WHERE t.expires_at < EXCLUDED.expires_at - $3"
        );
        sqlx::query(&sql)
            .bind(&names)
            .bind(&deadlines)
            .bind(LOCK_ROW_SLACK_MS)
            .execute(&mut **tx)
            .await
            .map_err(map)?;
        Ok(())
    }
}
