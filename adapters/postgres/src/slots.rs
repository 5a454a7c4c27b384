//! Slot leases: capped acquisition, heartbeat and release, each one statement.

use leasehold::record::SlotRecord;
use leasehold::store::{HeartbeatOutcome, SlotCaps, SlotOutcome};
use leasehold::{SlotId, StoreError, Timestamp};

use crate::PostgresStore;
use crate::row::sat;

/// A caller-computed deadline as a TTL from the caller's `now` (rebased in SQL onto the judged
/// time).
fn ttl_ms(deadline: Timestamp, now: Timestamp) -> i64 {
    sat(u64::try_from(deadline.since(now).as_millis()).unwrap_or(u64::MAX))
}

impl PostgresStore {
    pub(crate) async fn acquire_slot_(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        let sql = &self.inner.sql.acquire_slot;
        let offset = self.offset();
        let ttl = ttl_ms(slot.expires_at, now);
        let cap = |c: Option<u32>| c.map(|n| i32::try_from(n).unwrap_or(i32::MAX));
        let outcome: String = self
            .run(|| {
                sqlx::query_scalar(sql)
                    .bind(slot.id.as_bytes().as_slice())
                    .bind(slot.session.as_bytes().as_slice())
                    .bind(slot.resource.as_ref().map(|r| r.as_str()))
                    .bind(ttl)
                    .bind(cap(caps.per_session))
                    .bind(cap(caps.per_resource))
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .fetch_one(self.pool())
            })
            .await?;
        match outcome.as_str() {
            "ACQUIRED" => Ok(SlotOutcome::Acquired),
            "SESSION_NOT_LIVE" => Ok(SlotOutcome::SessionNotLive),
            "SESSION_CAP" => Ok(SlotOutcome::SessionCapReached),
            "RESOURCE_CAP" => Ok(SlotOutcome::ResourceCapReached),
            other => Err(StoreError::Unavailable(format!(
                "postgres acquire_slot: unexpected outcome {other:?}"
            ))),
        }
    }

    pub(crate) async fn heartbeat_slot_(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let sql = &self.inner.sql.heartbeat_slot;
        let offset = self.offset();
        let ttl = ttl_ms(expires_at, now);
        let outcome: String = self
            .run(|| {
                sqlx::query_scalar(sql)
                    .bind(id.as_bytes().as_slice())
                    .bind(ttl)
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .fetch_one(self.pool())
            })
            .await?;
        match outcome.as_str() {
            "EXTENDED" => Ok(HeartbeatOutcome::Extended),
            "MISSING" => Ok(HeartbeatOutcome::Missing),
            "SESSION_NOT_LIVE" => Ok(HeartbeatOutcome::SessionNotLive),
            other => Err(StoreError::Unavailable(format!(
                "postgres heartbeat_slot: unexpected outcome {other:?}"
            ))),
        }
    }

    pub(crate) async fn release_slot_(&self, id: &SlotId) -> Result<bool, StoreError> {
        let sql = &self.inner.sql.release_slot;
        let done = self
            .run(|| {
                sqlx::query(sql)
                    .bind(id.as_bytes().as_slice())
                    .execute(self.pool())
            })
            .await?;
        Ok(done.rows_affected() > 0)
    }
}
