//! One-shot tickets: put, and take (redeem) at most once.

use leasehold::crypto::Verifier;
use leasehold::record::TicketRecord;
use leasehold::store::TakeOutcome;
use leasehold::{StoreError, TicketId, Timestamp};

use crate::SledStore;
use crate::tx::{self, Written, fail};

impl SledStore {
    pub(crate) fn put(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.write_once(|tx| {
            if tx.record_exists(tx::TICKETS, ticket.id.as_bytes())? {
                return fail(StoreError::AlreadyExists);
            }
            tx.put_ticket(ticket)?;
            Ok(((), Written::Security))
        })
    }

    pub(crate) fn take(
        &self,
        id: &TicketId,
        verifier: &Verifier,
        now: Timestamp,
    ) -> Result<TakeOutcome, StoreError> {
        self.write_once(|tx| {
            let Some(t) = tx.ticket(id)? else {
                return Ok((TakeOutcome::Missing, Written::Nothing));
            };
            if !t.verifier.ct_eq(verifier) {
                return Ok((TakeOutcome::Missing, Written::Nothing));
            }
            tx.remove_ticket(&t)?;
            let out = if now < t.expires_at {
                TakeOutcome::Taken(t)
            } else {
                TakeOutcome::Expired
            };
            Ok((out, Written::Security))
        })
    }
}
