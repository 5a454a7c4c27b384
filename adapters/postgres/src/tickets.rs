//! One-shot tickets: an insert rebased onto the server's clock, and a take-once `DELETE …
//! RETURNING`.

use leasehold::crypto::Verifier;
use leasehold::record::TicketRecord;
use leasehold::store::TakeOutcome;
use leasehold::{SessionId, StoreError, TicketId, Timestamp};
use sqlx::Row;

use crate::PostgresStore;
use crate::row::{id_bytes, sat, time};

impl PostgresStore {
    pub(crate) async fn put_ticket_(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let sql = &self.inner.sql.put_ticket;
        let offset = self.offset();
        // Stored rebased onto judged_at(created_at, server clock): the same TTL from there.
        let ttl = sat(
            u64::try_from(ticket.expires_at.since(ticket.created_at).as_millis())
                .unwrap_or(u64::MAX),
        );
        self.run(|| {
            sqlx::query(sql)
                .bind(offset)
                .bind(ticket.id.as_bytes().as_slice())
                .bind(ticket.session.as_bytes().as_slice())
                .bind(ticket.verifier.0.as_slice())
                .bind(sat(ticket.created_at.as_millis()))
                .bind(ttl)
                .execute(self.pool())
        })
        .await?;
        Ok(())
    }

    pub(crate) async fn take_ticket_(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let sql = &self.inner.sql.take_ticket;
        let offset = self.offset();
        let row = self
            .run(|| {
                sqlx::query(sql)
                    .bind(id.as_bytes().as_slice())
                    .bind(verifier.0.as_slice())
                    .bind(sat(now.as_millis()))
                    .bind(offset)
                    .fetch_one(self.pool())
            })
            .await?;
        let get = |e: sqlx::Error| StoreError::Corrupt(format!("ticket row: {e}"));
        let outcome: String = row.try_get(0).map_err(get)?;
        match outcome.as_str() {
            "MISSING" => Ok(TakeOutcome::Missing),
            "EXPIRED" => Ok(TakeOutcome::Expired),
            "TAKEN" => {
                let session: Vec<u8> = row.try_get(1).map_err(get)?;
                let created_at: i64 = row.try_get(2).map_err(get)?;
                let expires_at: i64 = row.try_get(3).map_err(get)?;
                Ok(TakeOutcome::Taken(TicketRecord {
                    id: *id,
                    session: SessionId::from_bytes(id_bytes(&session, "ticket's session id")?),
                    verifier: *verifier,
                    created_at: time(created_at, "ticket created_at")?,
                    expires_at: time(expires_at, "ticket expires_at")?,
                }))
            }
            other => Err(StoreError::Unavailable(format!(
                "postgres take_ticket: unexpected outcome {other:?}"
            ))),
        }
    }
}
