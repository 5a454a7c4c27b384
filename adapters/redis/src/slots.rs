//! Slots: acquire (per-resource reservation in the resource's slot, then the session step),
//! heartbeat (reservation first, then the slot), release (slot first, then reservation).

use leasehold::codec;
use leasehold::record::SlotRecord;
use leasehold::store::{HeartbeatOutcome, SlotCaps, SlotOutcome, judged_at};
use leasehold::{Resource, SessionId, SlotId, StoreError, Timestamp};

use crate::{RedisStore, array, bytes, ms, status};

pub(crate) fn reservation(slot: &SlotId, session: &SessionId) -> Vec<u8> {
    let mut m = slot.as_bytes().to_vec();
    m.extend_from_slice(session.as_bytes());
    m
}

/// A parsed reservation member (`None`: not a reservation).
type Reservation = Option<(SlotId, SessionId)>;

/// A reservation member: exactly a slot id ‖ session id; anything else is `None`.
pub(crate) fn parse_reservation(m: &[u8]) -> Reservation {
    let (a, b) = m.split_first_chunk::<18>()?;
    let b = <[u8; 18]>::try_from(b).ok()?;
    Some((SlotId::from_bytes(*a), SessionId::from_bytes(b)))
}

impl RedisStore {
    /// One `index_reserve` on a resource's slot reservations.
    async fn reserve_slot(
        &self,
        resource: &Resource,
        member: &[u8],
        ttl: u64,
        cap: u32,
        now: Timestamp,
        mode: &str,
    ) -> Result<Result<(), Vec<Vec<u8>>>, StoreError> {
        let k = self.inner.keys.resource_slots(resource);
        let mut inv = self.inner.scripts.index_reserve.key(&k);
        inv.arg(member)
            .arg(format!("ttl:{ttl}"))
            .arg(cap)
            .arg(ms(now))
            .arg(self.offset())
            .arg("members")
            .arg(mode);
        let a = array(self.run(&inv).await?, "index_reserve")?;
        if status(&a, "index_reserve")? == "FULL" {
            return Ok(Err(a[1..]
                .iter()
                .filter_map(|v| bytes(v).map(<[u8]>::to_vec))
                .collect()));
        }
        Ok(Ok(()))
    }

    async fn unreserve_slot(
        &self,
        resource: &Resource,
        members: &[Vec<u8>],
    ) -> Result<(), StoreError> {
        let k = self.inner.keys.resource_slots(resource);
        for chunk in members.chunks(1000) {
            let mut inv = self.inner.scripts.index_remove.key(&k);
            for m in chunk {
                inv.arg(m.as_slice());
            }
            self.run::<i64>(&inv).await?;
        }
        Ok(())
    }

    /// The reservations (slot id ‖ session id) whose session is not live (final: prunable),
    /// and whether any holder's slot is not written yet (an acquisition in flight).
    ///
    /// Each member is parsed in place: one that is not exactly a slot id ‖ session id (36
    /// bytes) names no slot and can never be released by anyone, so it is returned as prunable
    /// (an index entry pointing at nothing is repaired, never trusted), and the members around
    /// it keep their own meaning.
    async fn classify_holders(
        &self,
        holders: &[Vec<u8>],
        now: Timestamp,
    ) -> Result<(Vec<Vec<u8>>, bool), StoreError> {
        let parsed: Vec<(&Vec<u8>, Reservation)> =
            holders.iter().map(|m| (m, parse_reservation(m))).collect();
        let ids: Vec<SessionId> = parsed.iter().filter_map(|(_, p)| p.map(|p| p.1)).collect();
        let (t, live) = self.fetch(&ids).await?;
        let at = judged_at(now, t);
        let alive: std::collections::HashSet<SessionId> = live
            .iter()
            .filter(|r| r.is_live(at))
            .map(|r| r.id)
            .collect();
        let mut dead = Vec::new();
        let mut in_flight = false;
        for (m, p) in parsed {
            match p {
                Some((slot, session)) if alive.contains(&session) => {
                    let k = self.inner.keys.slot(&slot);
                    let n: i64 = self.cmd(redis::cmd("EXISTS").arg(&k)).await?;
                    in_flight |= n == 0;
                }
                _ => dead.push(m.clone()),
            }
        }
        Ok((dead, in_flight))
    }

    pub(crate) async fn acquire(
        &self,
        slot: &SlotRecord,
        caps: &SlotCaps,
        now: Timestamp,
    ) -> Result<SlotOutcome, StoreError> {
        if slot.id.shard_tag() != slot.session.shard_tag() {
            return Err(StoreError::InvalidWrite(
                "a slot id must carry its session's shard tag",
            ));
        }
        let ttl = slot.expires_at.since(now).as_millis() as u64;
        let member = reservation(&slot.id, &slot.session);
        let reserved = match (&slot.resource, caps.per_resource) {
            (Some(r), Some(cap)) => {
                let mut tries = 0;
                while let Err(holders) = self.reserve_slot(r, &member, ttl, cap, now, "").await? {
                    // Full: prune reservations whose session is no longer live (final). A
                    // reservation whose slot is not written yet belongs to an acquisition in
                    // flight (or one that crashed: it lapses with its score): wait for it a
                    // little, as its refusal would free the place.
                    let (dead, in_flight) = self.classify_holders(&holders, now).await?;
                    if !dead.is_empty() {
                        self.unreserve_slot(r, &dead).await?;
                    } else if in_flight && tries < 50 {
                        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
                    } else {
                        return Ok(SlotOutcome::ResourceCapReached);
                    }
                    tries += 1;
                    if tries > 60 {
                        return Ok(SlotOutcome::ResourceCapReached);
                    }
                }
                Some(r)
            }
            _ => None,
        };
        let keys = &self.inner.keys;
        let (k1, k2, k3) = (
            keys.session(&slot.session),
            keys.slot(&slot.id),
            keys.session_slots(&slot.session),
        );
        let mut inv = self.inner.scripts.acquire_slot.key(&k1);
        inv.key(&k2)
            .key(&k3)
            .arg(codec::encode_slot(slot))
            .arg(ttl)
            .arg(caps.per_session.unwrap_or(0))
            .arg(ms(now))
            .arg(self.offset());
        let a = array(self.run(&inv).await?, "acquire_slot")?;
        let out = match status(&a, "acquire_slot")?.as_str() {
            "ACQUIRED" => return Ok(SlotOutcome::Acquired),
            "ALREADY_EXISTS" => return Err(StoreError::AlreadyExists),
            "SESSION_NOT_LIVE" => SlotOutcome::SessionNotLive,
            "SESSION_CAP" => SlotOutcome::SessionCapReached,
            "INVALID_WRITE" => {
                if let Some(r) = reserved {
                    self.unreserve_slot(r, &[member]).await?;
                }
                return Err(StoreError::InvalidWrite(
                    "not a slot in the expected format",
                ));
            }
            _ => return Err(crate::error::bad_reply("acquire_slot")),
        };
        if let Some(r) = reserved {
            self.unreserve_slot(r, &[member]).await?;
        }
        Ok(out)
    }

    pub(crate) async fn heartbeat(
        &self,
        id: &SlotId,
        expires_at: Timestamp,
        now: Timestamp,
    ) -> Result<HeartbeatOutcome, StoreError> {
        let k = self.inner.keys.slot(id);
        let ttl = expires_at.since(now).as_millis() as u64;
        // The reservation first (a crash between the two over-counts, never under-counts).
        let stored: Option<Vec<u8>> = self.cmd(redis::cmd("GET").arg(&k)).await?;
        let Some(stored) = stored else {
            return Ok(HeartbeatOutcome::Missing);
        };
        let slot = codec::decode_slot(&stored).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if let Some(r) = &slot.resource {
            // A little slack: the slot's own expiry is computed a moment later.
            let _extended = self
                .reserve_slot(
                    r,
                    &reservation(&slot.id, &slot.session),
                    ttl + 1000,
                    0,
                    now,
                    "extend",
                )
                .await?;
        }
        let mut inv = self.inner.scripts.heartbeat_slot.key(&k);
        inv.arg(ttl)
            .arg(ms(now))
            .arg(self.offset())
            .arg(self.inner.keys.prefix());
        let a = array(self.run(&inv).await?, "heartbeat_slot")?;
        match status(&a, "heartbeat_slot")?.as_str() {
            "EXTENDED" => Ok(HeartbeatOutcome::Extended),
            "MISSING" => Ok(HeartbeatOutcome::Missing),
            "SESSION_NOT_LIVE" => {
                if let Some(r) = &slot.resource {
                    self.unreserve_slot(r, &[reservation(&slot.id, &slot.session)])
                        .await?;
                }
                Ok(HeartbeatOutcome::SessionNotLive)
            }
            "CORRUPT" => Err(StoreError::Corrupt(
                "stored slot bytes do not decode".into(),
            )),
            _ => Err(crate::error::bad_reply("heartbeat_slot")),
        }
    }

    pub(crate) async fn release(&self, id: &SlotId) -> Result<bool, StoreError> {
        let k = self.inner.keys.slot(id);
        let mut inv = self.inner.scripts.release_slot.key(&k);
        inv.arg(self.inner.keys.prefix());
        let a = array(self.run(&inv).await?, "release_slot")?;
        let existed = a
            .first()
            .map(|v| crate::int(v, "release_slot"))
            .transpose()?
            == Some(1);
        if let Some(b) = a.get(1).and_then(bytes)
            && let Ok(slot) = codec::decode_slot(b)
            && let Some(r) = &slot.resource
        {
            self.unreserve_slot(r, &[reservation(&slot.id, &slot.session)])
                .await?;
        }
        Ok(existed)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn a_reservation_is_exactly_a_slot_id_and_a_session_id() {
        let (slot, session) = (SlotId::from_bytes([1; 18]), SessionId::from_bytes([2; 18]));
        let m = reservation(&slot, &session);
        assert_eq!(parse_reservation(&m), Some((slot, session)));
        for bad in [&m[..35], &[m.as_slice(), b"x"].concat()[..], b"", b"junk"] {
            assert_eq!(parse_reservation(bad), None, "{bad:?}");
        }
    }
}
