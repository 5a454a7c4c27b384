//! Reaping: batched deletes walking the expiry indexes (`ORDER BY expires_at LIMIT n FOR UPDATE
//! SKIP LOCKED`), and a Tokio task that reaps on an interval until stopped.

use std::time::Duration;

use leasehold::store::{ReapOutcome, Reaped};
use leasehold::{
    Clock, Resource, RevokeReason, SessionId, Store, StoreError, Subject, SystemClock, Timestamp,
};
use sqlx::Row;
use sqlx::postgres::PgRow;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::PostgresStore;
use crate::row::{ID_BYTES, sat};

/// A removed session as the application hears of it; `None` for a row whose columns do not map
/// (it is removed and counted all the same: a bad row never stalls the reaper).
fn ended(row: &PgRow) -> Option<Reaped> {
    let id: Vec<u8> = row.try_get(1).ok()?;
    let id: [u8; ID_BYTES] = id.as_slice().try_into().ok()?;
    let subject: String = row.try_get(2).ok()?;
    let resource: Option<String> = row.try_get(3).ok()?;
    let state: i16 = row.try_get(4).ok()?;
    let reason: Option<i16> = row.try_get(5).ok()?;
    let reason = if state == 0 {
        RevokeReason::Expired
    } else {
        RevokeReason::from_code(u8::try_from(reason?).ok()?)?
    };
    Some(Reaped {
        id: SessionId::from_bytes(id),
        subject: Subject::new(subject).ok()?,
        resource: match resource {
            Some(r) => Some(Resource::new(r).ok()?),
            None => None,
        },
        reason: Some(reason),
    })
}

impl PostgresStore {
    pub(crate) async fn reap_(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<ReapOutcome, StoreError> {
        let sql = &self.inner.sql.reap;
        let offset = self.offset();
        let limit = i32::try_from(limit).unwrap_or(i32::MAX);
        let rows = self
            .run(|| {
                sqlx::query(sql)
                    .bind(sat(now.as_millis()))
                    .bind(limit)
                    .bind(offset)
                    .fetch_all(self.pool())
            })
            .await?;
        let mut out = ReapOutcome::default();
        for row in &rows {
            let what: String = row
                .try_get(0)
                .map_err(|e| StoreError::Unavailable(format!("postgres reap: {e}")))?;
            match what.as_str() {
                "s" => {
                    out.sessions += 1;
                    out.ended.extend(ended(row));
                }
                "t" => out.tickets += 1,
                "l" => out.slots += 1,
                other => {
                    return Err(StoreError::Unavailable(format!(
                        "postgres reap: unexpected row kind {other:?}"
                    )));
                }
            }
        }
        Ok(out)
    }
}

/// A running reaper task ([`spawn_reaper`]). Dropping the handle stops the task too (after the
/// batch in flight, if any).
#[derive(Debug)]
pub struct ReaperHandle {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl ReaperHandle {
    /// Stops the task and waits for it: a batch in flight finishes (it is one statement, one
    /// transaction), none starts after.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

/// Spawns a Tokio task that reaps `store` every `every`: batches of at most `batch` records,
/// repeated at once while a batch came back full, then a pause. A failed batch (server down) is
/// retried at the next tick. Several processes may each run one: batches skip the rows another
/// reaper holds (`SKIP LOCKED`) and never wait.
pub fn spawn_reaper(store: PostgresStore, every: Duration, batch: usize) -> ReaperHandle {
    let (stop, mut stopped) = watch::channel(false);
    let batch = batch.max(1);
    let task = tokio::spawn(async move {
        loop {
            loop {
                if *stopped.borrow() {
                    return;
                }
                match store.reap(SystemClock.now(), batch).await {
                    Ok(out) if out.total() as usize >= batch => continue,
                    _ => break,
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                r = stopped.changed() => {
                    if r.is_err() || *stopped.borrow() {
                        return;
                    }
                }
            }
        }
    });
    ReaperHandle { stop, task }
}
