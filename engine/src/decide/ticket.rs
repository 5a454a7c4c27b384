//! One-shot tickets: minted for a valid session, redeemed at most once (the store's take-once
//! is the single point of truth), never outliving their session.

use crate::crypto::{Secret, SecretKind, Verifier};
use crate::decide::{Decision, ending};
use crate::entropy::Entropy;
use crate::entropy::EntropyError;
use crate::error::Error;
use crate::ids::TicketId;
use crate::policy::Policy;
use crate::record::{SessionRecord, TicketRecord};
use crate::time::Timestamp;
use crate::token::TicketToken;

/// A ticket for the (valid) session `rec`, expiring after the ticket TTL or with the session.
pub fn mint(
    rec: &SessionRecord,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Result<(TicketRecord, TicketToken), EntropyError> {
    let id = TicketId::generate(rec.id.shard_tag(), entropy)?;
    let secret = Secret::generate(entropy)?;
    let ticket = TicketRecord {
        id,
        session: rec.id,
        verifier: Verifier::derive(SecretKind::Ticket, id.as_bytes(), &secret),
        created_at: now,
        expires_at: now.saturating_add(policy.ticket_ttl).min(rec.expires_at),
    };
    Ok((ticket, TicketToken::new(&policy.ticket_prefix, id, &secret)))
}

/// The verifier a presented ticket secret must match.
pub fn verifier(id: &TicketId, secret: &Secret) -> Verifier {
    Verifier::derive(SecretKind::Ticket, id.as_bytes(), secret)
}

/// After a successful take: the ticket's session must still be live at `at` (and if it is past
/// its deadline, that ending is written down before the redeemer is told).
pub fn redeem(session: Option<&SessionRecord>, at: Timestamp) -> Decision<SessionRecord> {
    if let Some(d) = ending(session, at) {
        return d;
    }
    match session {
        Some(r) => Decision {
            write: None,
            outcome: Ok(r.clone()),
            events: Vec::new(),
        },
        None => Decision::deny(Error::NotAuthenticated),
    }
}
