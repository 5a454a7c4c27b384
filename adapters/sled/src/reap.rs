//! Reaping: removing what is due through the expiry index, quarantining what does not decode.

use leasehold::record::RevokeReason;
use leasehold::store::ReapOutcome;
use leasehold::{Reaped, SessionRecord, SessionState, StoreError, Timestamp};

use crate::SledStore;
use crate::error::sled_err;
use crate::keys::{self, Due};
use crate::tx::{self, Read, Tx, TxResult, Written};

impl SledStore {
    /// [`leasehold::Store::reap`]: one transaction per pass of up to `limit` due entries, each
    /// record re-read in it and removed only if due at `now` (a touch that moved it later wins).
    pub(crate) fn reap_due(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
        let mut total = ReapOutcome::default();
        let mut left = limit;
        // Every pass takes its entries out of the expiry index (removed, quarantined, or moved
        // to the record's own deadline), so passes make progress even when they remove no
        // record (a pass of creation logs only) and the loop ends when nothing due is left.
        while left > 0 {
            let (entries, truncated) = self.due_entries(now, left)?;
            if entries.is_empty() {
                break;
            }
            let pass = self.write_once(|tx| {
                let mut out = ReapOutcome::default();
                let mut wrote = false;
                for key in &entries {
                    if !tx.has_due(key)? {
                        continue; // moved or removed since the scan
                    }
                    wrote = true;
                    let Ok((at, due)) = keys::decode_expiry_key(key) else {
                        // An undecodable index entry: set it aside, never stall on it.
                        tx.quarantine(tx::EXPIRY, key, &[])?;
                        tx.drop_due(key)?;
                        out.quarantined += 1;
                        continue;
                    };
                    let is_due = |t: Timestamp| t == at && t <= now;
                    match &due {
                        Due::Session(id) => {
                            match tx.read_or_quarantine(tx::SESSIONS, id.as_bytes(), key, |v| {
                                tx::decode_session_at(id, v)
                            })? {
                                // Also through an entry filed before a single-key swap
                                // moved the deadline later: the record is due all the same.
                                Read::Found(r) if r.expires_at <= now => {
                                    if r.expires_at != at {
                                        tx.drop_due(key)?;
                                    }
                                    tx.remove_session(&r)?;
                                    out.sessions += 1;
                                    out.ended.push(reaped(&r));
                                }
                                Read::Found(r) => repair(tx, key, Some(r.expires_at), &due)?,
                                Read::Missing => repair(tx, key, None, &due)?,
                                Read::Quarantined => out.quarantined += 1,
                            }
                        }
                        Due::Ticket(id) => {
                            match tx.read_or_quarantine(tx::TICKETS, id.as_bytes(), key, |v| {
                                tx::decode_ticket_at(id, v)
                            })? {
                                Read::Found(t) if is_due(t.expires_at) => {
                                    tx.remove_ticket(&t)?;
                                    out.tickets += 1;
                                }
                                Read::Found(t) => repair(tx, key, Some(t.expires_at), &due)?,
                                Read::Missing => repair(tx, key, None, &due)?,
                                Read::Quarantined => out.quarantined += 1,
                            }
                        }
                        Due::Slot(id) => {
                            match tx.read_or_quarantine(tx::SLOTS, id.as_bytes(), key, |v| {
                                tx::decode_slot_at(id, v)
                            })? {
                                Read::Found(s) if is_due(s.expires_at) => {
                                    tx.remove_slot(&s)?;
                                    out.slots += 1;
                                }
                                Read::Found(s) => repair(tx, key, Some(s.expires_at), &due)?,
                                Read::Missing => repair(tx, key, None, &due)?,
                                Read::Quarantined => out.quarantined += 1,
                            }
                        }
                        Due::Rate(subject) => match tx.read_or_quarantine(
                            tx::RATES,
                            subject.as_str().as_bytes(),
                            key,
                            keys::decode_rate,
                        )? {
                            Read::Found(log) if is_due(log.due) => {
                                tx.remove_rate_log(subject)?;
                                tx.drop_due(key)?;
                            }
                            Read::Found(log) => repair(tx, key, Some(log.due), &due)?,
                            Read::Missing => repair(tx, key, None, &due)?,
                            Read::Quarantined => out.quarantined += 1,
                        },
                    }
                }
                let written = if wrote {
                    Written::Routine
                } else {
                    Written::Nothing
                };
                Ok((out, written))
            })?;
            let removed = pass.total() + pass.quarantined;
            total.sessions += pass.sessions;
            total.tickets += pass.tickets;
            total.slots += pass.slots;
            total.quarantined += pass.quarantined;
            total.ended.extend(pass.ended);
            left = left.saturating_sub(usize::try_from(removed).unwrap_or(usize::MAX));
            if !truncated {
                break;
            }
        }
        Ok(total)
    }

    /// Collects up to `limit` due record entries (and up to `limit` due creation-log entries).
    fn due_entries(
        &self,
        now: Timestamp,
        limit: usize,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let expiry = self.trees.get(tx::EXPIRY);
        let iter = match keys::expiry_upper_bound(now) {
            Some(upper) => expiry.range(..upper),
            None => expiry.iter(),
        };
        let (mut records, mut logs) = (0usize, 0usize);
        let mut out = Vec::new();
        for kv in iter {
            let (k, _) = kv.map_err(sled_err)?;
            // An undecodable key counts as a record: the reap pass quarantines it.
            match keys::decode_expiry_key(&k).map(|(_, due)| due) {
                Ok(Due::Rate(_)) => logs += 1,
                _ => records += 1,
            }
            out.push(k.to_vec());
            if records >= limit || logs >= limit {
                return Ok((out, true));
            }
        }
        Ok((out, false))
    }
}

/// What the application learns about a removed session: how it ended (its tombstone's reason,
/// or `Expired` for a record that lapsed without one).
fn reaped(r: &SessionRecord) -> Reaped {
    Reaped {
        id: r.id,
        subject: r.subject.clone(),
        resource: r.resource.clone(),
        reason: Some(match r.state {
            SessionState::Revoked { reason, .. } => reason,
            SessionState::Active => RevokeReason::Expired,
        }),
    }
}

/// An expiry entry that does not match its record (it cannot happen through this adapter; a
/// database edited by hand might): drop the entry, and re-create the record's own entry so it
/// is still reaped when due. Never removes a record.
fn repair(tx: &Tx<'_>, key: &[u8], record_due: Option<Timestamp>, due: &Due) -> TxResult<()> {
    tx.drop_due(key)?;
    if let Some(at) = record_due {
        tx.ensure_due(at, due)?;
    }
    Ok(())
}
