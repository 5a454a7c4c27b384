//! Group operations: revoke by subject (one script) and by resource (the cross-slot protocol:
//! snapshot, then one script per slot), listing, counting, and the creation log.

use leasehold::store::judged_at;
use leasehold::{Page, Resource, Scope, SessionId, SessionRecord, StoreError, Subject, Timestamp};

use crate::session::decode;
use crate::{RedisStore, array, bytes, int, ms, ts};

impl RedisStore {
    pub(crate) async fn revoke_subject_now(
        &self,
        subject: &Subject,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let k = self.inner.keys.subject_index(subject);
        let mut inv = self.inner.scripts.revoke_subject.key(&k);
        inv.arg(self.inner.keys.prefix())
            .arg(ms(now))
            .arg(self.offset());
        let a = array(self.run(&inv).await?, "revoke_subject")?;
        let n = a.first().map(|v| int(v, "revoke_subject")).transpose()?;
        self.durable().await?;
        Ok(n.map_or(0, |n| u64::try_from(n).unwrap_or(0)))
    }

    /// The members of a deadline-scored index whose deadline has not passed, and the store
    /// time: for a resource, the linearization point of `revoke_resource`.
    async fn snapshot(&self, index: &str) -> Result<(Timestamp, Vec<SessionId>), StoreError> {
        let mut inv = self.inner.scripts.index_snapshot.key(index);
        inv.arg(self.offset());
        let a = array(self.run(&inv).await?, "index_snapshot")?;
        let t = ts(int(
            a.first()
                .ok_or_else(|| crate::error::bad_reply("index_snapshot"))?,
            "index_snapshot",
        )?);
        let mut ids = Vec::with_capacity(a.len().saturating_sub(1));
        for v in &a[1..] {
            if let Some(arr) = bytes(v).and_then(|b| <[u8; 18]>::try_from(b).ok()) {
                ids.push(SessionId::from_bytes(arr));
            }
        }
        ids.sort_unstable();
        ids.dedup();
        Ok((t, ids))
    }

    pub(crate) async fn revoke_resource_now(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let (_, ids) = self
            .snapshot(&self.inner.keys.resource_members(resource))
            .await?;
        let mut n = 0u64;
        for group in self.groups(&ids) {
            let keys: Vec<String> = group.iter().map(|id| self.inner.keys.session(id)).collect();
            let mut inv = self.inner.scripts.revoke_members.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(self.inner.keys.prefix())
                .arg(ms(now))
                .arg(self.offset())
                .arg(leasehold::RevokeReason::Resource.code());
            for id in &group {
                inv.arg(id.as_bytes().as_slice());
            }
            let live: i64 = self.run(&inv).await?;
            n += u64::try_from(live).unwrap_or(0);
        }
        self.durable().await?;
        Ok(n)
    }

    /// Every record of the subject, with the store time.
    async fn subject_records(
        &self,
        subject: &Subject,
    ) -> Result<(Timestamp, Vec<SessionRecord>), StoreError> {
        let k = self.inner.keys.subject_index(subject);
        let mut inv = self.inner.scripts.list_subject.key(&k);
        inv.arg(self.inner.keys.prefix()).arg(self.offset());
        let a = array(self.run(&inv).await?, "list_subject")?;
        let t = ts(int(
            a.first()
                .ok_or_else(|| crate::error::bad_reply("list_subject"))?,
            "list_subject",
        )?);
        let mut out = Vec::with_capacity(a.len().saturating_sub(1));
        for v in &a[1..] {
            let b = bytes(v).ok_or_else(|| crate::error::bad_reply("list_subject"))?;
            out.push(decode(None, b)?);
        }
        Ok((t, out))
    }

    pub(crate) async fn list_subject_records(
        &self,
        subject: &Subject,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        Ok(self.subject_records(subject).await?.1)
    }

    /// The records of `ids` that exist (in `ids` order), and the latest store time read.
    ///
    /// Bytes that do not decode, or a record stored under another id, are skipped (treated as
    /// absent, like sled's listing): such a session can never validate again (a load of it by
    /// id is `Corrupt`), so listing, counting and the slot-cap pruning go on without it instead
    /// of failing on it (one corrupt record never stalls the store).
    pub(crate) async fn fetch(
        &self,
        ids: &[SessionId],
    ) -> Result<(Option<Timestamp>, Vec<SessionRecord>), StoreError> {
        let mut found = std::collections::HashMap::new();
        let mut t: Option<Timestamp> = None;
        for group in self.groups(ids) {
            let keys: Vec<String> = group.iter().map(|id| self.inner.keys.session(id)).collect();
            let mut inv = self.inner.scripts.get_many.prepare_invoke();
            for k in &keys {
                inv.key(k);
            }
            inv.arg(self.offset());
            let a = array(self.run(&inv).await?, "get_many")?;
            let st = ts(int(
                a.first()
                    .ok_or_else(|| crate::error::bad_reply("get_many"))?,
                "get_many",
            )?);
            t = Some(t.map_or(st, |x| x.max(st)));
            if a.len() != group.len() + 1 {
                return Err(crate::error::bad_reply("get_many"));
            }
            for (id, v) in group.iter().zip(a.iter().skip(1)) {
                if let Some(Ok(r)) = bytes(v).map(|b| decode(Some(id), b)) {
                    found.insert(*id, r);
                }
            }
        }
        Ok((t, ids.iter().filter_map(|id| found.remove(id)).collect()))
    }

    /// The sessions listed from a scope's index, sorted, and the store time if the index gave
    /// one: the global index without the index is every record key (`SCAN`).
    async fn scope_ids(
        &self,
        index: &str,
    ) -> Result<(Option<Timestamp>, Vec<SessionId>), StoreError> {
        if !self.inner.global_index && index == self.inner.keys.global() {
            return Ok((None, self.record_ids().await?));
        }
        let (t, ids) = self.snapshot(index).await?;
        Ok((Some(t), ids))
    }

    /// The index a scope's sessions are listed from.
    fn scope_index(&self, scope: &Scope) -> Option<String> {
        match scope {
            Scope::All => Some(self.inner.keys.global()),
            Scope::Resource(r) => Some(self.inner.keys.resource_members(r)),
            Scope::Subject(_) => None,
        }
    }

    pub(crate) async fn list(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        let limit = limit.clamp(1, leasehold::MAX_PAGE);
        let past = |id: &SessionId| after.is_none_or(|a| id > a);
        let mut records = Vec::new();
        let mut more = false;
        match (scope, self.scope_index(scope)) {
            (Scope::Subject(s), _) => {
                let (_, mut all) = self.subject_records(s).await?;
                all.retain(|r| past(&r.id));
                all.sort_unstable_by_key(|r| r.id);
                more = all.len() > limit;
                all.truncate(limit);
                records = all;
            }
            (_, Some(index)) => {
                let ids = self.scope_ids(&index).await?.1;
                let ids: Vec<SessionId> = ids.into_iter().filter(|i| past(i)).collect();
                let mut pos = 0;
                while pos < ids.len() && records.len() < limit {
                    let end = (pos + limit - records.len()).min(ids.len());
                    let (_, got) = self.fetch(&ids[pos..end]).await?;
                    records.extend(got);
                    pos = end;
                }
                more = pos < ids.len();
            }
            _ => {}
        }
        let next = if more && records.len() == limit {
            records.last().map(|r| r.id)
        } else {
            None
        };
        Ok(Page { records, next })
    }

    pub(crate) async fn count(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        let (t, records) = match (scope, self.scope_index(scope)) {
            (Scope::Subject(s), _) => {
                let (t, r) = self.subject_records(s).await?;
                (Some(t), r)
            }
            (_, Some(index)) => {
                let (t0, ids) = self.scope_ids(&index).await?;
                let (t, r) = self.fetch(&ids).await?;
                (t.max(t0), r)
            }
            _ => (None, Vec::new()),
        };
        let at = judged_at(now, t);
        Ok(records.iter().filter(|r| r.is_live(at)).count() as u64)
    }

    pub(crate) async fn forget(
        &self,
        subject: &Subject,
        id: &SessionId,
    ) -> Result<bool, StoreError> {
        let k = self.inner.keys.creation_log(subject);
        let n: i64 = self
            .cmd(redis::cmd("ZREM").arg(&k).arg(id.as_bytes().as_slice()))
            .await?;
        Ok(n > 0)
    }
}
