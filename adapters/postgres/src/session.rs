//! One session: load, insert (with its limits), compare-and-swap.

use std::time::Duration;

use leasehold::store::{CreateLimits, InsertCheck, InsertOutcome, Loaded, check_insert};
use leasehold::{CapPolicy, SessionId, SessionRecord, StoreError, Timestamp};
use sqlx::Row;
use sqlx::postgres::{PgArguments, PgRow};
use sqlx::query::Query;

use crate::PostgresStore;
use crate::row::{Columns, id_bytes, sat};

type Q<'q> = Query<'q, sqlx::Postgres, PgArguments>;

/// Something a value can be bound to: a statement's next parameter, or the next column of a
/// multi-row `VALUES` list (the bulk import).
pub(crate) trait Bind<'q>: Sized {
    fn put<T>(self, v: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>;
}

impl<'q> Bind<'q> for Q<'q> {
    fn put<T>(self, v: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        self.bind(v)
    }
}

impl<'q> Bind<'q> for &mut sqlx::query_builder::Separated<'_, 'q, sqlx::Postgres, &'static str> {
    fn put<T>(self, v: T) -> Self
    where
        T: 'q + sqlx::Encode<'q, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
    {
        self.push_bind(v)
    }
}

/// Binds a session row, in the functions' parameter order (= `INSERT_COLUMNS`).
pub(crate) fn bind_columns<'q, B: Bind<'q>>(q: B, c: &'q Columns) -> B {
    q.put(&c.id)
        .put(&c.subject)
        .put(&c.resource)
        .put(&c.kind)
        .put(c.state)
        .put(c.reason)
        .put(c.revoked_at)
        .put(c.version)
        .put(c.created_at)
        .put(c.last_seen_at)
        .put(c.absolute_deadline)
        .put(c.expires_at)
        .put(c.generation)
        .put(&c.verifier)
        .put(c.rotated_at)
        .put(&c.prev_verifier)
        .put(&c.prev_sealed)
        .put(c.prev_successor_seen)
        .put(&c.retired)
        .put(&c.access_verifier)
        .put(c.access_expires_at)
        .put(&c.binding)
        .put(&c.context_summary)
        .put(&c.data)
        .put(c.data_version)
}

/// Binds a row of NULLs but for the subject: what `check_limits` passes (nothing is inserted).
fn bind_subject_only<'q>(q: Q<'q>, subject: &'q str) -> Q<'q> {
    q.bind(None::<Vec<u8>>)
        .bind(subject)
        .bind(None::<String>)
        .bind(None::<String>)
        .bind(None::<i16>)
        .bind(None::<i16>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>)
        .bind(None::<i64>) // generation
        .bind(None::<Vec<u8>>)
        .bind(None::<i64>)
        .bind(None::<Vec<u8>>)
        .bind(None::<Vec<u8>>)
        .bind(None::<bool>)
        .bind(None::<Vec<Vec<u8>>>)
        .bind(None::<Vec<u8>>)
        .bind(None::<i64>)
        .bind(None::<Vec<u8>>)
        .bind(None::<String>)
        .bind(None::<Vec<u8>>)
        .bind(None::<i64>)
}

fn evicts(p: CapPolicy) -> bool {
    p == CapPolicy::EvictOldest
}

/// Reads `insert_session`'s result row.
fn insert_outcome(row: &PgRow) -> Result<InsertOutcome, StoreError> {
    let bad = |e: sqlx::Error| StoreError::Unavailable(format!("postgres insert_session: {e}"));
    let outcome: String = row.try_get(0).map_err(bad)?;
    Ok(match outcome.as_str() {
        "INSERTED" => {
            let ids: Option<Vec<Vec<u8>>> = row.try_get(2).map_err(bad)?;
            let evicted = ids
                .unwrap_or_default()
                .iter()
                .map(|b| id_bytes(b, "evicted id").map(SessionId::from_bytes))
                .collect::<Result<_, _>>()?;
            InsertOutcome::Inserted { evicted }
        }
        "ALREADY_EXISTS" => return Err(StoreError::AlreadyExists),
        "RATE_LIMITED" => {
            let ms: Option<i64> = row.try_get(1).map_err(bad)?;
            InsertOutcome::RateLimited {
                retry_after: Duration::from_millis(
                    ms.and_then(|m| u64::try_from(m).ok()).unwrap_or(0),
                ),
            }
        }
        "SUBJECT_CAP" => InsertOutcome::SubjectCapReached,
        "GLOBAL_CAP" => InsertOutcome::GlobalCapReached,
        other => {
            return Err(StoreError::Unavailable(format!(
                "postgres insert_session: unexpected outcome {other:?}"
            )));
        }
    })
}

/// The server's `clock_ms` as a time (a clock before 1970 reads as the epoch).
fn server_time(ms: i64) -> Timestamp {
    Timestamp::from_millis(u64::try_from(ms).unwrap_or(0))
}

impl PostgresStore {
    /// The server's clock (`clock_ms`, with the test offset), for [`Store::store_clock`].
    ///
    /// [`Store::store_clock`]: leasehold::Store::store_clock
    pub(crate) async fn clock(&self) -> Result<Timestamp, StoreError> {
        let sql = &self.inner.sql.clock;
        let offset = self.offset();
        let t: i64 = self
            .run(|| sqlx::query_scalar(sql).bind(offset).fetch_one(self.pool()))
            .await?;
        Ok(server_time(t))
    }

    pub(crate) async fn load(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        let sql = &self.inner.sql.load;
        let offset = self.offset();
        // No row, no clock: nothing is decided on the time of a session that is not there
        // (a `LEFT JOIN` that kept the clock for an absent id cost the server 2.5 µs per load).
        let Some(row) = self
            .run(|| {
                sqlx::query(sql)
                    .bind(offset)
                    .bind(id.as_bytes().as_slice())
                    .fetch_optional(self.pool())
            })
            .await?
        else {
            return Ok(Loaded::new(None));
        };
        let t: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::Unavailable(format!("postgres clock: {e}")))?;
        let record = Box::new(Columns::read(&row, 1)?.into_record()?);
        Ok(Loaded::new(Some(record)).at_store_time(server_time(t)))
    }

    /// `insert_session` (with `record`) or `check_limits` (without): the same function, so the
    /// advice and the decision are the same code.
    pub(crate) async fn admit(
        &self,
        record: Option<&Columns>,
        subject: &str,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        let sql = &self.inner.sql.insert;
        let offset = self.offset();
        let cap = limits.subject_cap;
        let rate = limits.creation_rate;
        let global = limits.global_cap;
        let row = self
            .run(|| {
                let q = sqlx::query(sql);
                let q = match record {
                    Some(c) => bind_columns(q, c),
                    None => bind_subject_only(q, subject),
                };
                q.bind(cap.map(|c| i32::try_from(c.max).unwrap_or(i32::MAX)))
                    .bind(cap.map(|c| evicts(c.on_full)))
                    .bind(rate.map(|r| i32::try_from(r.max).unwrap_or(i32::MAX)))
                    .bind(
                        rate.map(|r| sat(u64::try_from(r.window.as_millis()).unwrap_or(u64::MAX))),
                    )
                    .bind(global.map(|g| sat(g.max)))
                    .bind(global.map(|g| evicts(g.on_full)))
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .bind(record.is_some())
                    .fetch_one(self.pool())
            })
            .await?;
        insert_outcome(&row)
    }

    pub(crate) async fn insert(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        // The shard-tag rule needs no stored state; the replay and clash rules run in SQL,
        // under the subject's lock (the stored bytes compared with these).
        if check_insert(None, record)? != InsertCheck::Fresh {
            return Err(StoreError::InvalidWrite("unexpected insert check"));
        }
        let columns = Columns::of(record)?;
        self.admit(Some(&columns), &columns.subject, limits, now)
            .await
    }

    pub(crate) async fn cas(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let columns = Columns::of(new)?;
        // A version beyond the column's range is never stored: saturated, it conflicts.
        let expected = sat(expected_version);
        let sql = &self.inner.sql.cas;
        let offset = self.offset();
        let row = self
            .run(|| {
                bind_columns(sqlx::query(sql), &columns)
                    .bind(expected)
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .fetch_one(self.pool())
            })
            .await?;
        let outcome: String = row
            .try_get(0)
            .map_err(|e| StoreError::Unavailable(format!("postgres compare_and_swap: {e}")))?;
        match outcome.as_str() {
            "OK" => Ok(()),
            "NOT_FOUND" => Err(StoreError::NotFound),
            "CONFLICT" => Err(StoreError::Conflict),
            "INVALID_IDENTITY" => Err(StoreError::InvalidWrite("a swap may not change identity")),
            "INVALID_VERSION" => Err(StoreError::InvalidWrite("a swap must increase the version")),
            "INVALID_DEADLINE" => Err(StoreError::InvalidWrite(
                "expires_at may not pass absolute_deadline",
            )),
            other => Err(StoreError::Unavailable(format!(
                "postgres compare_and_swap: unexpected outcome {other:?}"
            ))),
        }
    }
}
