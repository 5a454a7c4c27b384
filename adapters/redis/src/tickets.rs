//! Tickets: put (rebased onto the judged time) and take-once, each one script in the ticket's
//! slot (a ticket id carries its session's shard tag).

use leasehold::codec;
use leasehold::crypto::Verifier;
use leasehold::record::TicketRecord;
use leasehold::store::TakeOutcome;
use leasehold::{StoreError, TicketId, Timestamp};

use crate::{RedisStore, array, bytes, ms, status};

impl RedisStore {
    pub(crate) async fn put(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        let k = self.inner.keys.ticket(&ticket.id);
        let ttl = ticket.expires_at.since(ticket.created_at).as_millis() as u64;
        let mut inv = self.inner.scripts.put_ticket.key(&k);
        inv.arg(codec::encode_ticket(ticket))
            .arg(ttl)
            .arg(ms(ticket.created_at))
            .arg(self.offset());
        let a = array(self.run(&inv).await?, "put_ticket")?;
        match status(&a, "put_ticket")?.as_str() {
            "OK" => self.durable().await,
            "ALREADY_EXISTS" => Err(StoreError::AlreadyExists),
            "INVALID_WRITE" => Err(StoreError::InvalidWrite(
                "not a ticket in the expected format",
            )),
            _ => Err(crate::error::bad_reply("put_ticket")),
        }
    }

    pub(crate) async fn take(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        let k = self.inner.keys.ticket(id);
        let mut inv = self.inner.scripts.take_ticket.key(&k);
        inv.arg(verifier.0.as_slice())
            .arg(ms(now))
            .arg(self.offset());
        let a = array(self.run(&inv).await?, "take_ticket")?;
        let out = match status(&a, "take_ticket")?.as_str() {
            "TAKEN" => {
                let b = a
                    .get(1)
                    .and_then(bytes)
                    .ok_or_else(|| crate::error::bad_reply("take_ticket"))?;
                let t = codec::decode_ticket(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if t.id != *id {
                    return Err(StoreError::Corrupt("ticket stored under another id".into()));
                }
                TakeOutcome::Taken(t)
            }
            "EXPIRED" => TakeOutcome::Expired,
            "MISSING" => TakeOutcome::Missing,
            "CORRUPT" => {
                return Err(StoreError::Corrupt(
                    "stored ticket bytes do not decode".into(),
                ));
            }
            _ => return Err(crate::error::bad_reply("take_ticket")),
        };
        self.durable().await?;
        Ok(out)
    }
}
