//! One session: load, insert (with the cross-slot registration steps), compare-and-swap.

use leasehold::codec;
use leasehold::store::{CreateLimits, InsertOutcome, Loaded, check_insert, check_loaded};
use leasehold::{CapPolicy, SessionId, SessionRecord, StoreError, Timestamp};

use redis::Value;

use crate::{RedisStore, array, bytes, int, ms, status, ts};

/// Decodes stored session bytes read under `id`'s key: a typed error, never a panic.
pub(crate) fn decode(id: Option<&SessionId>, b: &[u8]) -> Result<SessionRecord, StoreError> {
    let r = codec::decode_session(b).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    if let Some(id) = id {
        check_loaded(id, &r)?;
    }
    Ok(r)
}

/// The server time in ms from a `TIME` reply (`[seconds, microseconds]`).
fn server_ms(t: Value) -> Result<i64, StoreError> {
    let a = array(t, "TIME")?;
    let (Some(s), Some(us)) = (a.first(), a.get(1)) else {
        return Err(crate::error::bad_reply("TIME"));
    };
    let (s, us) = (int(s, "TIME")?, int(us, "TIME")?);
    s.checked_mul(1000)
        .and_then(|ms| ms.checked_add(us / 1000))
        .ok_or_else(|| crate::error::bad_reply("TIME"))
}

impl RedisStore {
    /// The server's clock (`TIME`, plus the test offset), for [`Store::store_clock`]. On a
    /// Cluster, the clock of the node the client sends a keyless command to.
    ///
    /// [`Store::store_clock`]: leasehold::Store::store_clock
    pub(crate) async fn clock(&self) -> Result<Timestamp, StoreError> {
        let t: Value = self.cmd(&redis::cmd("TIME")).await?;
        Ok(ts(server_ms(t)?.saturating_add(self.offset())))
    }

    /// One round trip: `GET` and `TIME` in one pipeline, two native commands, sent to the node
    /// that holds the key (on a Cluster, its slot's primary: the clock is the key's own
    /// node's). A script would make them one atomic step, but Redis spends about 8 µs running
    /// even this small one against 1 µs for a `GET` (`INFO commandstats`), and atomicity buys
    /// nothing here: `TIME` runs after the `GET`, so the record is judged at a time no earlier
    /// than it was read (expiry can only come sooner), and a revocation is in the record's
    /// bytes, never in the clock. While a resharding moves the key's slot, the Cluster client
    /// follows the former node's `MOVED` or `ASK` with the whole pipeline, so both commands
    /// still run on the node that holds the key (`tests/cluster_load.rs`).
    pub(crate) async fn load(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        let k = self.inner.keys.session(id);
        let mut p = redis::pipe();
        p.cmd("GET").arg(&k).cmd("TIME");
        let mut a = self.pipe_at_key(&p, &k).await?.into_iter();
        let (Some(v), Some(t)) = (a.next(), a.next()) else {
            return Err(crate::error::bad_reply("load"));
        };
        let t = server_ms(t)?.saturating_add(self.offset());
        let record = match v {
            Value::Nil => None,
            Value::BulkString(b) => Some(Box::new(decode(Some(id), &b)?)),
            _ => return Err(crate::error::bad_reply("load")),
        };
        Ok(Loaded::new(record).at_store_time(ts(t)))
    }

    /// The global step (and the resource registration) of an insert: reserve before the
    /// record exists. `Some(outcome)` if the global cap refuses.
    async fn reserve(
        &self,
        id: &SessionId,
        deadline: Timestamp,
        resource: Option<&leasehold::Resource>,
        limits: &CreateLimits,
        now: Timestamp,
        dry: bool,
    ) -> Result<Option<InsertOutcome>, StoreError> {
        if self.inner.global_index {
            let cap = limits.global_cap.map_or(0, |c| c.max);
            let g = self.inner.keys.global();
            let mut inv = self.inner.scripts.index_reserve.key(&g);
            inv.arg(id.as_bytes().as_slice())
                .arg(ms(deadline).to_string())
                .arg(cap)
                .arg(ms(now))
                .arg(self.offset())
                .arg("")
                .arg(if dry { "dry" } else { "" });
            let a = array(self.run(&inv).await?, "index_reserve")?;
            if status(&a, "index_reserve")? == "FULL" {
                return Ok(Some(InsertOutcome::GlobalCapReached));
            }
        }
        if dry {
            return Ok(None);
        }
        if let Some(r) = resource {
            let k = self.inner.keys.resource_members(r);
            let mut inv = self.inner.scripts.index_reserve.key(&k);
            inv.arg(id.as_bytes().as_slice())
                .arg(ms(deadline).to_string())
                .arg(0)
                .arg(ms(now))
                .arg(self.offset())
                .arg("")
                .arg("");
            self.run::<redis::Value>(&inv).await?;
        }
        Ok(None)
    }

    /// Without the global index nothing counts every session: a global cap is refused (the
    /// engine refuses such a policy first; this guards direct callers of the store).
    fn unindexed_check(&self, limits: &CreateLimits) -> Result<(), StoreError> {
        if limits.global_cap.is_some() && !self.inner.global_index {
            return Err(StoreError::InvalidWrite(
                "a global cap needs the global index: RedisConfig::global_index(true)",
            ));
        }
        Ok(())
    }

    /// Undoes the registrations of a refused insert.
    async fn unreserve(&self, record: &SessionRecord) -> Result<(), StoreError> {
        let id = record.id.as_bytes().as_slice();
        if self.inner.global_index {
            let g = self.inner.keys.global();
            let mut inv = self.inner.scripts.index_remove.key(&g);
            inv.arg(id);
            self.run::<i64>(&inv).await?;
        }
        if let Some(r) = &record.resource {
            let k = self.inner.keys.resource_members(r);
            let mut inv = self.inner.scripts.index_remove.key(&k);
            inv.arg(id);
            self.run::<i64>(&inv).await?;
        }
        Ok(())
    }

    /// The subject step (the insert script); `record` `None` is check_limits' dry run. With
    /// `global` (a single server only), the script also takes the global step and registers
    /// the session's resource: those indexes are more keys there, so one script does the
    /// whole insert.
    pub(crate) async fn subject_step(
        &self,
        subject: &leasehold::Subject,
        record: Option<&SessionRecord>,
        limits: &CreateLimits,
        now: Timestamp,
        global: bool,
    ) -> Result<Result<Vec<SessionId>, InsertOutcome>, StoreError> {
        let keys = &self.inner.keys;
        let (k1, bytes_) = match record {
            Some(r) => (keys.session(&r.id), codec::encode_session(r)),
            None => (keys.subject_index(subject), Vec::new()),
        };
        let (k2, k3) = (keys.subject_index(subject), keys.creation_log(subject));
        let (cap, evict) = match limits.subject_cap {
            Some(c) => (c.max, c.on_full == CapPolicy::EvictOldest),
            None => (0, false),
        };
        let (rate, window) = match limits.creation_rate {
            Some(r) => (r.max, r.window.as_millis() as u64),
            None => (0, 0),
        };
        let mut inv = self.inner.scripts.insert.key(&k1);
        inv.key(&k2)
            .key(&k3)
            .arg(keys.prefix())
            .arg(bytes_)
            .arg(ms(now))
            .arg(self.offset())
            .arg(cap)
            .arg(if evict { "evict" } else { "reject" })
            .arg(rate)
            .arg(window)
            .arg(if record.is_some() { "write" } else { "dry" });
        if global {
            // Without the index ('off'), KEYS[4] only names the marker: its key plus
            // ':unindexed', in its slot.
            inv.key(keys.global());
            if self.inner.global_index {
                inv.arg(limits.global_cap.map_or(0, |c| c.max));
            } else {
                inv.arg("off");
            }
            if let Some(r) = record.and_then(|r| r.resource.as_ref()) {
                inv.key(keys.resource_members(r));
            }
        }
        let a = array(self.run(&inv).await?, "insert")?;
        Ok(match status(&a, "insert")?.as_str() {
            "INSERTED" => {
                let mut ev = Vec::new();
                for v in &a[1..] {
                    let b = bytes(v).ok_or_else(|| crate::error::bad_reply("insert"))?;
                    let arr: [u8; 18] = b
                        .try_into()
                        .map_err(|_| crate::error::bad_reply("insert"))?;
                    ev.push(SessionId::from_bytes(arr));
                }
                Ok(ev)
            }
            "REPLAY" => Err(InsertOutcome::Inserted {
                evicted: Vec::new(),
            }),
            "ALREADY_EXISTS" => return Err(StoreError::AlreadyExists),
            "INVALID_WRITE" => {
                return Err(StoreError::InvalidWrite(
                    "the insert script refused the record",
                ));
            }
            "SUBJECT_CAP" => Err(InsertOutcome::SubjectCapReached),
            "GLOBAL_CAP" => Err(InsertOutcome::GlobalCapReached),
            "RATE_LIMITED" => {
                let retry = a.get(1).map(|v| int(v, "insert")).transpose()?.unwrap_or(0);
                Err(InsertOutcome::RateLimited {
                    retry_after: std::time::Duration::from_millis(
                        u64::try_from(retry).unwrap_or(0),
                    ),
                })
            }
            _ => return Err(crate::error::bad_reply("insert")),
        })
    }

    pub(crate) async fn insert(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        check_insert(None, record)?;
        if record.is_tombstone() {
            return Err(StoreError::InvalidWrite(
                "an insert must be an active record",
            ));
        }
        if limits
            .global_cap
            .is_some_and(|c| c.on_full == CapPolicy::EvictOldest)
        {
            return Err(StoreError::InvalidWrite(
                "a global cap that evicts needs one step over every shard: not on Redis",
            ));
        }
        self.unindexed_check(limits)?;
        if !self.inner.global_index && self.is_cluster() {
            self.mark_unindexed(record.absolute_deadline).await?;
        }
        // On a single server one script inserts, global step and resource registration
        // included (one round trip, nothing to undo). On a Cluster those indexes are other
        // slots: reserved first, undone on a refusal.
        let one_script = !self.is_cluster();
        if !one_script
            && let Some(refused) = self
                .reserve(
                    &record.id,
                    record.absolute_deadline,
                    record.resource.as_ref(),
                    limits,
                    now,
                    false,
                )
                .await?
        {
            return Ok(refused);
        }
        let r = match self
            .subject_step(&record.subject, Some(record), limits, now, one_script)
            .await
        {
            Ok(r) => r,
            Err(StoreError::InvalidWrite(w)) => {
                if !one_script {
                    self.unreserve(record).await?;
                }
                return Err(StoreError::InvalidWrite(w));
            }
            Err(e) => return Err(e),
        };
        match r {
            Ok(evicted) => {
                self.durable().await?;
                Ok(InsertOutcome::Inserted { evicted })
            }
            Err(replay @ InsertOutcome::Inserted { .. }) => Ok(replay),
            Err(refused) => {
                if !one_script {
                    self.unreserve(record).await?;
                }
                Ok(refused)
            }
        }
    }

    pub(crate) async fn check(
        &self,
        subject: &leasehold::Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.unindexed_check(limits)?;
        match self.subject_step(subject, None, limits, now, false).await? {
            Err(refused) => Ok(refused),
            Ok(evicted) => {
                if limits.global_cap.is_some() {
                    // A probe member no session has: counts what a new one would see.
                    let probe = SessionId::from_bytes([0; 18]);
                    if let Some(r) = self.reserve(&probe, now, None, limits, now, true).await? {
                        return Ok(r);
                    }
                }
                Ok(InsertOutcome::Inserted { evicted })
            }
        }
    }

    pub(crate) async fn swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        let k = self.inner.keys.session(&new.id);
        let script = if new.is_tombstone() {
            &self.inner.scripts.cas_tombstone
        } else {
            &self.inner.scripts.cas
        };
        let mut inv = script.key(&k);
        inv.arg(codec::encode_session(new))
            .arg(expected_version)
            .arg(ms(now))
            .arg(self.offset());
        let a = array(self.run(&inv).await?, "cas")?;
        match status(&a, "cas")?.as_str() {
            // A touch may be lost in a crash without harm: no WAIT (WriteClass::Routine).
            "OK" if a.get(1).and_then(bytes) == Some(b"ROUTINE".as_slice()) => Ok(()),
            "OK" => self.durable().await,
            "NOT_FOUND" => Err(StoreError::NotFound),
            "CONFLICT" => Err(StoreError::Conflict),
            "INVALID_WRITE" => Err(StoreError::InvalidWrite(
                "a swap may not change identity and must increase the version",
            )),
            "CORRUPT" => Err(StoreError::Corrupt(
                "stored session bytes do not decode".into(),
            )),
            _ => Err(crate::error::bad_reply("cas")),
        }
    }
}
