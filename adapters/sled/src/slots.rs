//! Slot leases: acquire under the per-session and per-resource caps, heartbeat, release.

use leasehold::record::SlotRecord;
use leasehold::store::{HeartbeatOutcome, SlotCaps, SlotOutcome};
use leasehold::{SlotId, StoreError, Timestamp};

use crate::SledStore;
use crate::keys::GroupKind;
use crate::tx::{self, Snapshot, Tx, TxResult, Written, fail};

impl SledStore {
    pub(crate) fn acquire(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        let by_resource = match (caps.per_resource, &slot.resource) {
            (Some(max), Some(res)) => Some((max, res)),
            _ => None,
        };
        let mut counted: Vec<(GroupKind, &[u8])> = Vec::new();
        if caps.per_session.is_some() {
            counted.push((GroupKind::SessionSlots, &slot.session.as_bytes()[..]));
        }
        if let Some((_, res)) = by_resource {
            counted.push((GroupKind::ResourceSlots, res.as_str().as_bytes()));
        }
        let _held = self.locks.lock(&counted, false);
        self.optimistic(|_| {
            let session_snap = match caps.per_session {
                Some(max) => Some((
                    max,
                    self.snapshot(GroupKind::SessionSlots, &slot.session.as_bytes()[..])?,
                )),
                None => None,
            };
            let resource_snap = match by_resource {
                Some((max, res)) => Some((
                    max,
                    res,
                    self.snapshot(GroupKind::ResourceSlots, res.as_str().as_bytes())?,
                )),
                None => None,
            };
            self.transact(|tx| {
                if !tx.session(&slot.session)?.is_some_and(|r| r.is_live(now)) {
                    return Ok((SlotOutcome::SessionNotLive, Written::Nothing));
                }
                if let Some((max, snap)) = &session_snap
                    && Self::live_slots(tx, snap, now, |s| s.session == slot.session)?
                        >= *max as usize
                {
                    return Ok((SlotOutcome::SessionCapReached, Written::Nothing));
                }
                if let Some((max, res, snap)) = &resource_snap
                    && Self::live_slots(tx, snap, now, |s| s.resource.as_ref() == Some(*res))?
                        >= *max as usize
                {
                    return Ok((SlotOutcome::ResourceCapReached, Written::Nothing));
                }
                if tx.record_exists(tx::SLOTS, slot.id.as_bytes())? {
                    return fail(StoreError::AlreadyExists);
                }
                tx.write_slot(None, slot)?;
                Ok((SlotOutcome::Acquired, Written::Routine))
            })
        })
    }

    pub(crate) fn heartbeat(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        self.write_once(|tx| {
            let Some(s) = tx.slot(id)? else {
                return Ok((HeartbeatOutcome::Missing, Written::Nothing));
            };
            if !s.is_live(now) {
                tx.remove_slot(&s)?;
                return Ok((HeartbeatOutcome::Missing, Written::Routine));
            }
            if !tx.session(&s.session)?.is_some_and(|r| r.is_live(now)) {
                tx.remove_slot(&s)?;
                return Ok((HeartbeatOutcome::SessionNotLive, Written::Routine));
            }
            let extended = SlotRecord {
                expires_at,
                ..s.clone()
            };
            tx.write_slot(Some(&s), &extended)?;
            Ok((HeartbeatOutcome::Extended, Written::Routine))
        })
    }

    pub(crate) fn release(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.write_once(|tx| match tx.slot(id)? {
            None => Ok((false, Written::Nothing)),
            Some(s) => {
                tx.remove_slot(&s)?;
                Ok((true, Written::Routine))
            }
        })
    }

    /// Live slots among `snap`'s members that satisfy `belongs`, read inside the transaction.
    fn live_slots(
        tx: &Tx<'_>,
        snap: &Snapshot,
        now: Timestamp,
        belongs: impl Fn(&SlotRecord) -> bool,
    ) -> TxResult<usize> {
        tx.check(snap)?;
        let mut n = 0;
        for m in &snap.members {
            // A slot counts while unexpired and held by a live session: revoking a session
            // frees its slots' capacity at once.
            if let Some(s) = tx.slot(&SlotId::from_bytes(*m))?
                && s.is_live(now)
                && belongs(&s)
                && tx.session(&s.session)?.is_some_and(|r| r.is_live(now))
            {
                n += 1;
            }
        }
        Ok(n)
    }
}
