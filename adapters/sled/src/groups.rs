//! Groups of sessions (a subject's, a resource's, the whole store's): revocation,
//! listing, counting, and the caps and evictions of a create.

use std::sync::atomic::Ordering;

use leasehold::record::RevokeReason;
use leasehold::store::{CreateLimits, InsertCheck, InsertOutcome, check_insert};
use leasehold::{
    CapPolicy, MAX_PAGE, Page, Resource, Scope, SessionId, SessionRecord, StoreError, Subject,
    Timestamp,
};

use crate::SledStore;
use crate::error::sled_err;
use crate::keys::{self, Due, GroupKind, ID_LEN};
use crate::tx::{self, Fail, Snapshot, Written, fail};

/// Creation-order entries an evicting global cap walks first; each request for more doubles it.
const ORDER_WALK: usize = 16;

/// The start of the creation-order index as walked outside a transaction.
struct OrderWalk {
    /// `meta/order_head` read before the walk.
    stamp: u64,
    /// The sessions of the walked entries, oldest first.
    ids: Vec<SessionId>,
    /// Whether the walk reached the end of the index.
    complete: bool,
}

impl SledStore {
    pub(crate) fn revoke_subject_now(
        &self,
        subject: &Subject,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_group(
            GroupKind::Subject,
            subject.as_str().as_bytes(),
            RevokeReason::Subject,
            |r| r.subject == *subject,
            now,
        )
    }

    pub(crate) fn revoke_resource_now(
        &self,
        resource: &Resource,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        self.revoke_group(
            GroupKind::Resource,
            resource.as_str().as_bytes(),
            RevokeReason::Resource,
            |r| r.resource.as_ref() == Some(resource),
            now,
        )
    }

    pub(crate) fn list_subject_records(
        &self,
        subject: &Subject,
    ) -> Result<Vec<SessionRecord>, StoreError> {
        // A read-only transaction over the members the scan found: every session that existed
        // when the call began (no stamp check, so concurrent creations cannot starve it).
        self.optimistic(|_| {
            let snap = self.snapshot(GroupKind::Subject, subject.as_str().as_bytes())?;
            self.transact(|tx| {
                let mut out = Vec::with_capacity(snap.members.len());
                for m in &snap.members {
                    if let Some(r) = tx.session(&SessionId::from_bytes(*m))?
                        && r.subject == *subject
                    {
                        out.push(r);
                    }
                }
                Ok((out, Written::Nothing))
            })
        })
    }

    /// Ascending id order: a range scan of `sessions` for [`Scope::All`], of the group's
    /// index for a subject or resource, so the cost follows the page. Undecodable records are
    /// skipped rather than failing the listing (see `page`). `next` is set as soon as one more
    /// entry follows the page (it may turn out to be skipped: the next page is then empty); a
    /// `limit` of 0 is served as 1, as the contract says.
    pub(crate) fn list_page(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let n = limit.clamp(1, MAX_PAGE);
        match scope {
            Scope::All => {
                let sessions = self.trees.get(tx::SESSIONS);
                let iter = match after {
                    Some(a) => sessions
                        .range::<&[u8], _>((Bound::Excluded(&a.as_bytes()[..]), Bound::Unbounded)),
                    None => sessions.iter(),
                };
                // A key that is not an id is never a session: skipped like undecodable bytes.
                let entries = iter.filter_map(|kv| match kv {
                    Err(e) => Some(Err(sled_err(e))),
                    Ok((k, v)) => <[u8; ID_LEN]>::try_from(&k[..])
                        .ok()
                        .map(|id| Ok((SessionId::from_bytes(id), Some(v)))),
                });
                self.page(entries, n, after, |_| true)
            }
            Scope::Subject(subject) => self.group_page(
                GroupKind::Subject,
                subject.as_str().as_bytes(),
                after,
                n,
                |r| r.subject == *subject,
            ),
            Scope::Resource(resource) => self.group_page(
                GroupKind::Resource,
                resource.as_str().as_bytes(),
                after,
                n,
                |r| r.resource.as_ref() == Some(resource),
            ),
        }
    }

    /// [`Scope::All`]: the active counter less the active sessions already due (found through
    /// the expiry index), in one transaction: cost in proportion to what the reaper has yet to
    /// remove. A subject or resource: its open members' records (see `count_group`).
    pub(crate) fn count(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
        match scope {
            Scope::All => self.optimistic(|_| {
                let due = self.due_sessions(now)?;
                self.transact(|tx| {
                    let mut live = tx.active_count()?;
                    for id in &due {
                        if let Some(r) = tx.session_lenient(id)?
                            && !r.is_tombstone()
                            && r.is_due(now)
                        {
                            live = live.saturating_sub(1);
                        }
                    }
                    Ok((live, Written::Nothing))
                })
            }),
            Scope::Subject(subject) => self.count_group(
                GroupKind::Subject,
                subject.as_str().as_bytes(),
                |r| r.subject == *subject,
                now,
            ),
            Scope::Resource(resource) => self.count_group(
                GroupKind::Resource,
                resource.as_str().as_bytes(),
                |r| r.resource.as_ref() == Some(resource),
                now,
            ),
        }
    }

    /// The very decision `insert_session` makes (the same code), without writing anything:
    /// not even the `Expired` tombstones an insert writes for what it counted as lapsed.
    pub(crate) fn limits_check(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.create_step(subject, limits, now, None)
    }

    /// Creation logs name each entry's session (format 2), so exactly that entry goes. A
    /// routine write: losing it in a crash only counts one creation too many until it leaves
    /// the window.
    pub(crate) fn forget(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
        self.write_once(|tx| {
            let removed = tx.forget_creation(subject, id)?;
            let written = if removed {
                Written::Routine
            } else {
                Written::Nothing
            };
            Ok((removed, written))
        })
    }

    pub(crate) fn index_tree(&self, kind: GroupKind) -> &sled::Tree {
        self.trees.get(match kind {
            GroupKind::Subject => tx::BY_SUBJECT,
            GroupKind::Resource => tx::BY_RESOURCE,
            GroupKind::SessionSlots => tx::SLOTS_BY_SESSION,
            GroupKind::ResourceSlots => tx::SLOTS_BY_RESOURCE,
        })
    }

    /// The head stamp of a group, then its members (in that order: see [`Tx::check`]).
    pub(crate) fn snapshot(&self, kind: GroupKind, name: &[u8]) -> Result<Snapshot, StoreError> {
        let stamp = match self
            .trees
            .get(tx::GROUPS)
            .get(keys::group_key(kind, name))
            .map_err(sled_err)?
        {
            None => None,
            Some(v) => Some(keys::decode_head(&v)?.stamp),
        };
        let prefix = keys::member_prefix(name);
        let (mut members, mut open) = (Vec::new(), Vec::new());
        for kv in self.index_tree(kind).scan_prefix(&prefix) {
            let (k, v) = kv.map_err(sled_err)?;
            let m = tx::member_of(&k, prefix.len())?;
            if &v[..] != keys::ENDED {
                open.push(m);
            }
            members.push(m);
        }
        Ok(Snapshot {
            kind,
            name: name.to_vec(),
            stamp,
            members,
            open,
        })
    }

    /// Ids of sessions whose expiry entry is due at or before `now`.
    fn due_sessions(&self, now: Timestamp) -> Result<Vec<SessionId>, StoreError> {
        let expiry = self.trees.get(tx::EXPIRY);
        let iter = match keys::expiry_upper_bound(now) {
            Some(upper) => expiry.range(..upper),
            None => expiry.iter(),
        };
        let mut ids = Vec::new();
        for kv in iter {
            let (k, _) = kv.map_err(sled_err)?;
            if let (_, Due::Session(id)) = keys::decode_expiry_key(&k)? {
                ids.push(id);
            }
        }
        // A record may have more than one entry (one filed before a single-key swap moved its
        // deadline later, one after a transaction moved it again): count each record once.
        ids.sort_unstable();
        ids.dedup();
        Ok(ids)
    }

    fn active_counter(&self) -> Result<u64, StoreError> {
        match self
            .trees
            .get(tx::META)
            .get(tx::META_LIVE)
            .map_err(sled_err)?
        {
            None => Ok(0),
            Some(v) => keys::decode_counter(&v),
        }
    }

    fn revoke_group(
        &self,
        kind: GroupKind,
        name: &[u8],
        reason: RevokeReason,
        belongs: impl Fn(&SessionRecord) -> bool,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        // No stamp check: the scan runs after the call began, so it lists every session created
        // before it — all the contract asks — and a flood of creations cannot starve it.
        self.optimistic(|_| {
            let snap = self.snapshot(kind, name)?;
            self.transact(|tx| {
                let mut n = 0u64;
                let mut wrote = false;
                // Every member not yet a tombstone, expired or not: a revocation never depends
                // on a clock. The count is of those live at `now`.
                for m in &snap.open {
                    if let Some(r) = tx.session_or_quarantine(&SessionId::from_bytes(*m))?
                        && !r.is_tombstone()
                        && belongs(&r)
                    {
                        n += u64::from(r.is_live(now));
                        tx.write_session(Some(&r), &r.tombstone(now, reason))?;
                        wrote = true;
                    }
                }
                let written = if wrote {
                    Written::Security
                } else {
                    Written::Nothing
                };
                Ok((n, written))
            })
        })
    }

    /// The one decision of a create, for [`insert_session`](leasehold::Store::insert_session) (`record`
    /// given: decide and write in one transaction) and [`check_limits`](leasehold::Store::check_limits)
    /// (`None`: decide only, write nothing), so the two cannot diverge.
    ///
    /// In order: the creation rate; the subject cap (counting the subject's open sessions,
    /// planning evictions of its oldest live ones); the global cap, counting the planned
    /// evictions as gone and, where it evicts, planning the store's oldest live sessions after
    /// them. A refusal writes nothing but the `Expired` tombstones of what the subject count saw
    /// lapse (an observed ending stays ended).
    pub(crate) fn create_step(
        &self,
        subject: &Subject,
        limits: &CreateLimits,
        now: Timestamp,
        record: Option<&SessionRecord>,
    ) -> Result<InsertOutcome, StoreError> {
        let name = subject.as_str().as_bytes();
        let apply = record.is_some();
        let evicting_global = limits
            .global_cap
            .is_some_and(|c| c.on_full == CapPolicy::EvictOldest);
        let subject_group = [(GroupKind::Subject, name)];
        let groups: &[(GroupKind, &[u8])] = if limits.subject_cap.is_some() {
            &subject_group
        } else {
            &[]
        };
        let _held = (!groups.is_empty() || evicting_global)
            .then(|| self.locks.lock(groups, evicting_global));
        let initially_full = limits
            .global_cap
            .map(|cap| self.active_counter().map(|n| n >= cap.max))
            .transpose()?
            .unwrap_or(false);
        self.optimistic(|asked| {
            let snap = match limits.subject_cap {
                Some(_) => Some(self.snapshot(GroupKind::Subject, name)?),
                None => None,
            };
            let full = initially_full || asked > 0;
            let due = if full && limits.global_cap.is_some() {
                Some(self.due_sessions(now)?)
            } else {
                None
            };
            let oldest = if full && evicting_global {
                Some(self.oldest(
                    ORDER_WALK.saturating_mul(1usize.checked_shl(asked).unwrap_or(usize::MAX)),
                )?)
            } else {
                None
            };
            self.transact(|tx| {
                if let Some(record) = record {
                    match check_insert(tx.session(&record.id)?.as_ref(), record) {
                        Ok(InsertCheck::Fresh) => {}
                        Ok(InsertCheck::Replay) => {
                            let replay = InsertOutcome::Inserted {
                                evicted: Vec::new(),
                            };
                            // The first attempt may have failed at its flush: acknowledge the
                            // replay only once the record is on disk.
                            return Ok((replay, Written::Security));
                        }
                        Err(e) => return fail(e),
                    }
                }
                // Read-only steps must not quarantine (a write): they read bad bytes as absent.
                let read = |id: &SessionId| {
                    if apply {
                        tx.session_or_quarantine(id)
                    } else {
                        tx.session_lenient(id)
                    }
                };
                let mut log = None;
                if let Some(rate) = limits.creation_rate {
                    let (trimmed, retry) = tx.rate_check(subject, rate.max, rate.window, now)?;
                    if let Some(retry_after) = retry {
                        return Ok((InsertOutcome::RateLimited { retry_after }, Written::Nothing));
                    }
                    log = trimmed;
                }
                // Expired tombstones written by the subject count: an observed ending must
                // survive a crash even when the insert itself is refused.
                let mut ended = Written::Nothing;
                let mut evicted: Vec<SessionRecord> = Vec::new();
                if let (Some(cap), Some(snap)) = (limits.subject_cap, &snap) {
                    tx.check(snap)?;
                    let mut live = Vec::new();
                    self.counted
                        .fetch_add(snap.open.len() as u64, Ordering::Relaxed);
                    for m in &snap.open {
                        let Some(r) = read(&SessionId::from_bytes(*m))? else {
                            continue;
                        };
                        if r.subject != *subject || r.is_tombstone() {
                            continue;
                        }
                        if r.is_live(now) {
                            // Creation order; an entry missing (a hand-edited database) sorts
                            // last among its millisecond.
                            let seq = tx.order_of(&r.id)?.map_or(u64::MAX, |o| o.seq);
                            live.push((r.created_at, seq, r));
                        } else if apply {
                            // Counted as ended: write it down, so a caller whose clock lags
                            // cannot see more than the cap live.
                            tx.write_session(Some(&r), &r.tombstone(now, RevokeReason::Expired))?;
                            ended = Written::Security;
                        }
                    }
                    let excess = (live.len() + 1).saturating_sub(cap.max as usize);
                    if excess > 0 {
                        if cap.on_full == CapPolicy::Reject {
                            return Ok((InsertOutcome::SubjectCapReached, ended));
                        }
                        live.sort_by_key(|a| (a.0, a.1, a.2.id));
                        evicted.extend(live.into_iter().take(excess).map(|(_, _, r)| r));
                    }
                }
                if let Some(cap) = limits.global_cap {
                    let active = tx.active_count()?;
                    let planned = evicted.len() as u64;
                    let mut live = active;
                    if active.saturating_sub(planned) >= cap.max {
                        let Some(due) = &due else {
                            return Err(sled::transaction::ConflictableTransactionError::Abort(
                                Fail::NeedCandidates,
                            ));
                        };
                        // Active sessions past their deadline do not count. No tombstones here:
                        // the count is store-wide, and one caller whose clock glitched ahead
                        // must not end every session in the store.
                        for id in due {
                            if let Some(r) = tx.session_lenient(id)?
                                && !r.is_tombstone()
                                && r.is_due(now)
                            {
                                live = live.saturating_sub(1);
                            }
                        }
                    }
                    let excess = live
                        .saturating_sub(planned)
                        .saturating_add(1)
                        .saturating_sub(cap.max);
                    if excess > 0 {
                        if cap.on_full == CapPolicy::Reject {
                            return Ok((InsertOutcome::GlobalCapReached, ended));
                        }
                        let Some(walk) = &oldest else {
                            return Err(sled::transaction::ConflictableTransactionError::Abort(
                                Fail::NeedCandidates,
                            ));
                        };
                        tx.check_order(walk.stamp)?;
                        let mut found = 0u64;
                        for id in &walk.ids {
                            if found == excess {
                                break;
                            }
                            if evicted.iter().any(|e| e.id == *id) {
                                continue;
                            }
                            if let Some(r) = read(id)?
                                && r.is_live(now)
                            {
                                evicted.push(r);
                                found += 1;
                            }
                        }
                        if found < excess {
                            if !walk.complete {
                                return Err(
                                    sled::transaction::ConflictableTransactionError::Abort(
                                        Fail::NeedCandidates,
                                    ),
                                );
                            }
                            // The counter says more are live than the index holds (only a
                            // hand-edited database): refuse rather than exceed the cap.
                            return Ok((InsertOutcome::GlobalCapReached, ended));
                        }
                    }
                }
                let ids = evicted.iter().map(|r| r.id).collect();
                let Some(record) = record else {
                    return Ok((InsertOutcome::Inserted { evicted: ids }, Written::Nothing));
                };
                for r in &evicted {
                    tx.write_session(Some(r), &r.tombstone(now, RevokeReason::Evicted))?;
                }
                if let Some(rate) = limits.creation_rate {
                    tx.record_creation(subject, &record.id, log.clone(), rate.window, now)?;
                }
                tx.write_session(None, record)?;
                Ok((InsertOutcome::Inserted { evicted: ids }, Written::Security))
            })
        })
    }

    /// The stamp of the creation-order index, then up to `want` of its first entries (in that
    /// order: see [`Tx::check_order`]).
    fn oldest(&self, want: usize) -> Result<OrderWalk, StoreError> {
        let stamp = match self
            .trees
            .get(tx::META)
            .get(tx::META_ORDER_HEAD)
            .map_err(sled_err)?
        {
            None => 0,
            Some(v) => keys::decode_counter(&v)?,
        };
        let mut ids = Vec::new();
        let mut complete = true;
        for kv in self.trees.get(tx::CREATED).iter() {
            if ids.len() >= want {
                complete = false;
                break;
            }
            let (k, _) = kv.map_err(sled_err)?;
            ids.push(keys::decode_order_key(&k)?);
        }
        Ok(OrderWalk {
            stamp,
            ids,
            complete,
        })
    }

    /// One page of records named by `keys` (ids in ascending order, with the record bytes
    /// when the scan already holds them), keeping those `belongs` accepts.
    ///
    /// Undecodable records are **skipped**, not an error: one corrupt record must not hide
    /// every other from an admin listing, and the reaper quarantines it at its deadline (a
    /// load of that id still answers `Corrupt`). Index entries whose record is gone (reaped
    /// between the scan and the read) are skipped too.
    fn page(
        &self,
        keys: impl Iterator<Item = Result<(SessionId, Option<sled::IVec>), StoreError>>,
        n: usize,
        after: Option<&SessionId>,
        belongs: impl Fn(&SessionRecord) -> bool,
    ) -> Result<Page, StoreError> {
        let sessions = self.trees.get(tx::SESSIONS);
        let mut records = Vec::new();
        for key in keys {
            let (id, bytes) = key?;
            if records.len() >= n {
                // Another entry follows: more may follow. Resume after what was returned.
                let next = records
                    .last()
                    .map(|r: &SessionRecord| r.id)
                    .or(after.copied());
                return Ok(Page { records, next });
            }
            let bytes = match bytes {
                Some(b) => Some(b),
                None => sessions.get(id.as_bytes()).map_err(sled_err)?,
            };
            if let Some(b) = bytes
                && let Ok(r) = tx::decode_session_at(&id, &b)
                && belongs(&r)
            {
                records.push(r);
            }
        }
        Ok(Page {
            records,
            next: None,
        })
    }

    /// Sessions of a subject or resource group, in id order, after `after`.
    fn group_page(
        &self,
        kind: GroupKind,
        name: &[u8],
        after: Option<&SessionId>,
        n: usize,
        belongs: impl Fn(&SessionRecord) -> bool,
    ) -> Result<Page, StoreError> {
        use std::ops::Bound;
        let prefix = keys::member_prefix(name);
        let start = match after {
            Some(a) => Bound::Excluded(keys::member_key(name, a.as_bytes())),
            None => Bound::Included(prefix.clone()),
        };
        // `name ‖ 0x01`: just past every key of the group (`0x00` ends the name).
        let mut end = name.to_vec();
        end.push(1);
        let entries = self
            .index_tree(kind)
            .range::<Vec<u8>, _>((start, Bound::Excluded(end)))
            .map(|kv| {
                let (k, _) = kv.map_err(sled_err)?;
                Ok((
                    SessionId::from_bytes(tx::member_of(&k, prefix.len())?),
                    None,
                ))
            });
        self.page(entries, n, after, belongs)
    }

    /// Live sessions of a group at `now`, exact: its open members are read in one transaction
    /// validated by the group's stamp (under the group's lock, so capped creates cannot starve
    /// it).
    fn count_group(
        &self,
        kind: GroupKind,
        name: &[u8],
        belongs: impl Fn(&SessionRecord) -> bool,
        now: Timestamp,
    ) -> Result<u64, StoreError> {
        let _held = self.locks.lock(&[(kind, name)], false);
        self.optimistic(|_| {
            let snap = self.snapshot(kind, name)?;
            self.transact(|tx| {
                tx.check(&snap)?;
                let mut n = 0u64;
                for m in &snap.open {
                    if let Some(r) = tx.session_lenient(&SessionId::from_bytes(*m))?
                        && belongs(&r)
                        && r.is_live(now)
                    {
                        n += 1;
                    }
                }
                Ok((n, Written::Nothing))
            })
        })
    }
}
