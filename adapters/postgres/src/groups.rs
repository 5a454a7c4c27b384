//! Groups of sessions: revocations, listings, counts, limit advice, the creation log.

use leasehold::store::{CreateLimits, InsertOutcome, MAX_PAGE, Page, Scope};
use leasehold::{Resource, SessionId, SessionRecord, StoreError, Subject, Timestamp};
use sqlx::Row;

use crate::PostgresStore;
use crate::row::{Columns, sat};

impl PostgresStore {
    async fn revoke_group(&self, sql: &str, key: &str, now: Timestamp) -> Result<u64, StoreError> {
        let offset = self.offset();
        let live: i64 = self
            .run(|| {
                sqlx::query_scalar(sql)
                    .bind(key)
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .fetch_one(self.pool())
            })
            .await?;
        Ok(u64::try_from(live).unwrap_or(0))
    }

    pub(crate) async fn revoke_subject_(
        &self,
        subject: &Subject,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_group(&self.inner.sql.revoke_subject, subject.as_str(), now)
            .await
    }

    pub(crate) async fn revoke_resource_(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_group(&self.inner.sql.revoke_resource, resource.as_str(), now)
            .await
    }

    pub(crate) async fn list_subject_(
        &self,
        subject: &Subject,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        let sql = &self.inner.sql.list_subject;
        let rows = self
            .run(|| {
                sqlx::query(sql)
                    .bind(subject.as_str())
                    .fetch_all(self.pool())
            })
            .await?;
        rows.iter()
            .map(|row| Columns::read(row, 0)?.into_record())
            .collect()
    }

    pub(crate) async fn list_sessions_(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let sql = &self.inner.sql;
        let (sql, key) = match scope {
            Scope::All => (&sql.list_all, None),
            Scope::Subject(s) => (&sql.list_by_subject, Some(s.as_str())),
            Scope::Resource(r) => (&sql.list_by_resource, Some(r.as_str())),
        };
        // Every id is 18 bytes, so the empty bytea sorts before all of them.
        let after: &[u8] = after.map_or(&[], |id| id.as_bytes().as_slice());
        let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
        let rows = self
            .run(|| {
                let q = sqlx::query(sql).bind(after).bind(fetch);
                match key {
                    Some(k) => q.bind(k),
                    None => q,
                }
                .fetch_all(self.pool())
            })
            .await?;
        let mut records = rows
            .iter()
            .map(|row| Columns::read(row, 0)?.into_record())
            .collect::<Result<Vec<_>, _>>()?;
        let next = if records.len() > limit {
            records.truncate(limit);
            records.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    pub(crate) async fn count_live_(
        &self,
        scope: &Scope,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let sql = &self.inner.sql;
        let (sql, key) = match scope {
            Scope::All => (&sql.count_all, None),
            Scope::Subject(s) => (&sql.count_subject, Some(s.as_str())),
            Scope::Resource(r) => (&sql.count_resource, Some(r.as_str())),
        };
        let offset = self.offset();
        let row = self
            .run(|| {
                let q = sqlx::query(sql).bind(offset).bind(sat(now.as_millis()));
                match key {
                    Some(k) => q.bind(k),
                    None => q,
                }
                .fetch_one(self.pool())
            })
            .await?;
        let n: i64 = row
            .try_get(0)
            .map_err(|e| StoreError::Unavailable(format!("postgres count: {e}")))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }

    pub(crate) async fn check_limits_(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.admit(None, subject.as_str(), limits, now).await
    }

    pub(crate) async fn forget_creation_(
        &self,
        subject: &Subject,
        id: &SessionId,
    ) -> Result<bool, StoreError> {
        let sql = &self.inner.sql.forget_creation;
        let done = self
            .run(|| {
                sqlx::query(sql)
                    .bind(subject.as_str())
                    .bind(id.as_bytes().as_slice())
                    .execute(self.pool())
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
