//! The view of every tree inside one sled transaction, and the record/index maintenance done
//! there. Nothing here scans: sled transactions cannot. Group membership needed inside a
//! transaction is read from a [`Snapshot`] taken just before it and validated by the group's
//! head stamp (see the crate documentation, "How caps stay atomic").

use std::time::Duration;

use leasehold::codec;
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::store::StoreError;
use leasehold::{SessionId, SessionRecord, SessionState, SlotId, Subject, TicketId, Timestamp};
use sled::IVec;
use sled::transaction::{
    ConflictableTransactionError, ConflictableTransactionResult, TransactionalTree,
};

use sled::transaction::{TransactionError, Transactional};

use crate::SledStore;
use crate::error::sled_err;
use crate::keys::{
    self, Creation, Due, GroupKind, Head, ID_LEN, Order, RateLog, decode_counter, decode_head,
    decode_order, decode_rate, encode_counter, encode_head, encode_order, encode_rate, expiry_key,
    group_key, member_key, order_key,
};
use crate::open::Durability;

/// Why a transaction closure gave up.
#[derive(Debug)]
pub(crate) enum Fail {
    /// A typed store error: returned to the caller, nothing written.
    Store(StoreError),
    /// A group changed between its snapshot and the transaction: take a new snapshot, retry.
    Stale,
    /// The global cap is reached by the counter: retry with the due-session candidates (and,
    /// for an evicting global cap, more of the oldest sessions; each request asks for more).
    NeedCandidates,
}

pub(crate) type TxResult<T> = ConflictableTransactionResult<T, Fail>;

pub(crate) fn fail<T>(e: StoreError) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(Fail::Store(e)))
}

fn abort<T>(f: Fail) -> TxResult<T> {
    Err(ConflictableTransactionError::Abort(f))
}

/// Lifts a decoding error into the transaction's error type.
fn lift<T>(r: Result<T, StoreError>) -> TxResult<T> {
    r.map_err(|e| ConflictableTransactionError::Abort(Fail::Store(e)))
}

fn codec_err(what: &str, e: codec::CodecError) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

/// Decodes a session read under `id`: undecodable bytes, or a record of another id, are
/// `Corrupt`.
pub(crate) fn decode_session_at(id: &SessionId, v: &[u8]) -> Result<SessionRecord, StoreError> {
    codec::decode_session(v)
        .map_err(|e| codec_err("session", e))
        .and_then(|r| leasehold::store::check_loaded(id, &r).map(|()| r))
}

/// Decodes a ticket read under `id`.
pub(crate) fn decode_ticket_at(id: &TicketId, v: &[u8]) -> Result<TicketRecord, StoreError> {
    let t = codec::decode_ticket(v).map_err(|e| codec_err("ticket", e))?;
    if t.id == *id {
        Ok(t)
    } else {
        Err(StoreError::Corrupt("ticket stored under another id".into()))
    }
}

/// Decodes a slot read under `id`.
pub(crate) fn decode_slot_at(id: &SlotId, v: &[u8]) -> Result<SlotRecord, StoreError> {
    let s = codec::decode_slot(v).map_err(|e| codec_err("slot", e))?;
    if s.id == *id {
        Ok(s)
    } else {
        Err(StoreError::Corrupt("slot stored under another id".into()))
    }
}

/// What the reaper found under a due entry.
pub(crate) enum Read<T> {
    /// Nothing stored.
    Missing,
    /// A valid record.
    Found(T),
    /// Bytes that did not decode: moved to the quarantine tree.
    Quarantined,
}

/// What a write needs from the durability policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Written {
    /// Nothing was written.
    Nothing,
    /// A write whose loss is harmless (a touch, a slot lease, a reap).
    Routine,
    /// A write that must survive a crash once acknowledged (revocation, rotation, insert,
    /// ticket put/take, any other change to a session's content).
    Security,
}

/// Members of a group read outside the transaction, with the head stamp they were read under.
#[derive(Debug, Clone)]
pub(crate) struct Snapshot {
    pub kind: GroupKind,
    pub name: Vec<u8>,
    pub stamp: Option<u64>,
    pub members: Vec<[u8; ID_LEN]>,
    /// The members whose index entry is not marked [`keys::ENDED`].
    pub open: Vec<[u8; ID_LEN]>,
}

/// Tree positions in the transaction slice (see `Trees::all`).
pub(crate) const SESSIONS: usize = 0;
pub(crate) const BY_SUBJECT: usize = 1;
pub(crate) const BY_RESOURCE: usize = 2;
pub(crate) const GROUPS: usize = 3;
pub(crate) const EXPIRY: usize = 4;
pub(crate) const TICKETS: usize = 5;
pub(crate) const SLOTS: usize = 6;
pub(crate) const SLOTS_BY_SESSION: usize = 7;
pub(crate) const SLOTS_BY_RESOURCE: usize = 8;
pub(crate) const RATES: usize = 9;
pub(crate) const META: usize = 10;
pub(crate) const QUARANTINE: usize = 11;
pub(crate) const CREATED: usize = 12;
pub(crate) const CREATED_BY_ID: usize = 13;
pub(crate) const TREE_COUNT: usize = 14;

/// Meta keys.
pub(crate) const META_FORMAT: &[u8] = b"format";
pub(crate) const META_SEQ: &[u8] = b"seq";
pub(crate) const META_LIVE: &[u8] = b"live";
/// The sequence number of the newest entry added to the creation-order index: the stamp an
/// evicting global cap validates its walk of that index with (as group heads do for groups).
pub(crate) const META_ORDER_HEAD: &[u8] = b"order_head";

/// Every tree, inside one transaction.
pub(crate) struct Tx<'a> {
    t: &'a [TransactionalTree],
}

impl<'a> Tx<'a> {
    /// The view over the transaction's trees, in `Trees::all` order.
    pub(crate) fn new(t: &'a [TransactionalTree]) -> TxResult<Self> {
        if t.len() != TREE_COUNT {
            return fail(StoreError::Unavailable(
                "sled adapter: wrong number of trees in a transaction".into(),
            ));
        }
        Ok(Tx { t })
    }

    fn tree(&self, i: usize) -> &TransactionalTree {
        &self.t[i]
    }

    fn index_tree(&self, kind: GroupKind) -> &TransactionalTree {
        match kind {
            GroupKind::Subject => self.tree(BY_SUBJECT),
            GroupKind::Resource => self.tree(BY_RESOURCE),
            GroupKind::SessionSlots => self.tree(SLOTS_BY_SESSION),
            GroupKind::ResourceSlots => self.tree(SLOTS_BY_RESOURCE),
        }
    }

    // ---- counters ------------------------------------------------------------------------

    fn counter(&self, key: &[u8]) -> TxResult<u64> {
        match self.tree(META).get(key)? {
            None => Ok(0),
            Some(v) => lift(decode_counter(&v)),
        }
    }

    fn next_seq(&self) -> TxResult<u64> {
        let n = self.counter(META_SEQ)?.wrapping_add(1);
        self.tree(META).insert(META_SEQ, encode_counter(n))?;
        Ok(n)
    }

    /// Sessions in state `Active` not yet reaped (live or expired): the global-cap counter.
    pub(crate) fn active_count(&self) -> TxResult<u64> {
        self.counter(META_LIVE)
    }

    /// Keeps the active counter and the creation-order index in step with a session going
    /// from `before` to `after` (whether it is [`active`]): both hold exactly the sessions in
    /// state `Active` not yet reaped.
    fn adjust_active(&self, r: &SessionRecord, before: bool, after: bool) -> TxResult<()> {
        if before == after {
            return Ok(());
        }
        if after {
            self.order_add(r)?;
        } else {
            self.order_remove(&r.id)?;
        }
        let n = self.active_count()?;
        let n = if after {
            n.saturating_add(1)
        } else {
            n.saturating_sub(1)
        };
        self.tree(META).insert(META_LIVE, encode_counter(n))?;
        Ok(())
    }

    // ---- groups --------------------------------------------------------------------------

    fn head(&self, key: &[u8]) -> TxResult<Option<Head>> {
        match self.tree(GROUPS).get(key)? {
            None => Ok(None),
            Some(v) => lift(decode_head(&v)).map(Some),
        }
    }

    /// Fails with [`Fail::Stale`] unless no member joined the group since `snap` was taken.
    ///
    /// Members only join under a fresh stamp (drawn from a store-wide sequence), so an unchanged
    /// stamp means every member present now was present during the snapshot's scan; members
    /// that left since are seen as missing records when read here.
    pub(crate) fn check(&self, snap: &Snapshot) -> TxResult<()> {
        let now = self
            .head(&group_key(snap.kind, &snap.name))?
            .map(|h| h.stamp);
        if now == snap.stamp {
            Ok(())
        } else {
            abort(Fail::Stale)
        }
    }

    fn member_add(&self, kind: GroupKind, name: &[u8], member: &[u8; ID_LEN]) -> TxResult<()> {
        let prior = self
            .index_tree(kind)
            .insert(member_key(name, member), IVec::default())?;
        if prior.is_some() {
            return Ok(());
        }
        let key = group_key(kind, name);
        let members = self.head(&key)?.map_or(0, |h| h.members);
        let head = Head {
            stamp: self.next_seq()?,
            members: members.saturating_add(1),
        };
        self.tree(GROUPS).insert(key, encode_head(head))?;
        Ok(())
    }

    fn member_remove(&self, kind: GroupKind, name: &[u8], member: &[u8; ID_LEN]) -> TxResult<()> {
        let prior = self.index_tree(kind).remove(member_key(name, member))?;
        if prior.is_none() {
            return Ok(());
        }
        let key = group_key(kind, name);
        if let Some(h) = self.head(&key)? {
            let members = h.members.saturating_sub(1);
            if members == 0 {
                self.tree(GROUPS).remove(key)?;
            } else {
                self.tree(GROUPS)
                    .insert(key, encode_head(Head { members, ..h }))?;
            }
        }
        Ok(())
    }

    /// Moves `member` from group `old` to group `new` (either may be absent).
    fn regroup(
        &self,
        kind: GroupKind,
        old: Option<&[u8]>,
        new: Option<&[u8]>,
        member: &[u8; ID_LEN],
    ) -> TxResult<()> {
        if old == new {
            return Ok(());
        }
        if let Some(o) = old {
            self.member_remove(kind, o, member)?;
        }
        if let Some(n) = new {
            self.member_add(kind, n, member)?;
        }
        Ok(())
    }

    fn move_due(&self, old: Option<Timestamp>, new: Option<Timestamp>, due: &Due) -> TxResult<()> {
        if old == new {
            return Ok(());
        }
        if let Some(o) = old {
            self.tree(EXPIRY).remove(expiry_key(o, due))?;
        }
        if let Some(n) = new {
            self.tree(EXPIRY)
                .insert(expiry_key(n, due), IVec::default())?;
        }
        Ok(())
    }

    /// Whether the expiry index holds this exact entry.
    pub(crate) fn has_due(&self, key: &[u8]) -> TxResult<bool> {
        Ok(self.tree(EXPIRY).get(key)?.is_some())
    }

    /// Removes an expiry entry that points at nothing (or at a record due elsewhere).
    pub(crate) fn drop_due(&self, key: &[u8]) -> TxResult<()> {
        self.tree(EXPIRY).remove(key)?;
        Ok(())
    }

    /// Makes sure the expiry entry of a record due at `at` exists.
    pub(crate) fn ensure_due(&self, at: Timestamp, due: &Due) -> TxResult<()> {
        self.tree(EXPIRY)
            .insert(expiry_key(at, due), IVec::default())?;
        Ok(())
    }

    /// Whether a record key is present, without decoding it (an insert's `AlreadyExists` must
    /// not depend on the stored bytes being valid).
    pub(crate) fn record_exists(&self, tree: usize, id: &[u8; ID_LEN]) -> TxResult<bool> {
        Ok(self.tree(tree).get(&id[..])?.is_some())
    }

    // ---- creation order ------------------------------------------------------------------

    /// Where session `id` sits in the creation-order index, if it has an entry.
    pub(crate) fn order_of(&self, id: &SessionId) -> TxResult<Option<Order>> {
        match self.tree(CREATED_BY_ID).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => lift(decode_order(&v)).map(Some),
        }
    }

    /// The stamp of the creation-order index: the sequence of its newest entry.
    pub(crate) fn order_head(&self) -> TxResult<u64> {
        self.counter(META_ORDER_HEAD)
    }

    /// Gives `r` an entry in the creation-order index (once), after every entry so far.
    pub(crate) fn order_add(&self, r: &SessionRecord) -> TxResult<()> {
        if self.order_of(&r.id)?.is_some() {
            return Ok(());
        }
        let seq = self.next_seq()?;
        let order = Order {
            created_at: r.created_at,
            seq,
        };
        self.tree(CREATED)
            .insert(order_key(r.created_at, seq, &r.id), IVec::default())?;
        self.tree(CREATED_BY_ID)
            .insert(&r.id.as_bytes()[..], encode_order(order))?;
        self.tree(META)
            .insert(META_ORDER_HEAD, encode_counter(seq))?;
        Ok(())
    }

    /// Drops the creation-order entry of `id`, if any. A stored position that does not decode
    /// is dropped too (its forward entry cannot be found; a walk skips it as a missing record).
    fn order_remove(&self, id: &SessionId) -> TxResult<()> {
        let Some(v) = self.tree(CREATED_BY_ID).remove(&id.as_bytes()[..])? else {
            return Ok(());
        };
        if let Ok(o) = decode_order(&v) {
            self.tree(CREATED)
                .remove(order_key(o.created_at, o.seq, id))?;
        }
        Ok(())
    }

    /// Fails with [`Fail::Stale`] unless no entry joined the creation-order index since a walk
    /// read `stamp`: entries only join with a fresh sequence number, so an unchanged stamp means
    /// the walk saw every entry that sorts before its last one.
    pub(crate) fn check_order(&self, stamp: u64) -> TxResult<()> {
        if self.order_head()? == stamp {
            Ok(())
        } else {
            abort(Fail::Stale)
        }
    }

    // ---- sessions ------------------------------------------------------------------------

    pub(crate) fn session(&self, id: &SessionId) -> TxResult<Option<SessionRecord>> {
        match self.tree(SESSIONS).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => lift(decode_session_at(id, &v)).map(Some),
        }
    }

    /// For the reaper: reads the record under `key` in `tree`. Bytes that do not decode are
    /// moved, untouched, to the quarantine tree (key: tree number ‖ record key) with their
    /// expiry entry dropped, so one corrupt record never stalls reaping; they stay there for
    /// inspection.
    pub(crate) fn read_or_quarantine<T>(
        &self,
        tree: usize,
        key: &[u8],
        due_key: &[u8],
        decode: impl FnOnce(&[u8]) -> Result<T, StoreError>,
    ) -> TxResult<Read<T>> {
        let Some(v) = self.tree(tree).get(key)? else {
            return Ok(Read::Missing);
        };
        match decode(&v) {
            Ok(t) => Ok(Read::Found(t)),
            Err(_) => {
                self.quarantine(tree, key, &v)?;
                self.tree(tree).remove(key)?;
                self.drop_due(due_key)?;
                Ok(Read::Quarantined)
            }
        }
    }

    /// For group operations: the session `id`, with bytes that do not decode moved to the
    /// quarantine tree (and read as absent) instead of failing the whole operation, so one
    /// corrupt member never blocks "log out everywhere" or a capped create. Its expiry entry is
    /// left for the reaper, which drops an entry whose record is gone.
    pub(crate) fn session_or_quarantine(&self, id: &SessionId) -> TxResult<Option<SessionRecord>> {
        match self.tree(SESSIONS).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => match decode_session_at(id, &v) {
                Ok(r) => Ok(Some(r)),
                Err(_) => {
                    self.quarantine(SESSIONS, id.as_bytes(), &v)?;
                    self.tree(SESSIONS).remove(id.as_bytes())?;
                    Ok(None)
                }
            },
        }
    }

    /// For read-only steps (counts, limit checks): the session `id`, with bytes that do not
    /// decode read as absent. Nothing is written: the reaper (or the next writing step)
    /// quarantines them.
    pub(crate) fn session_lenient(&self, id: &SessionId) -> TxResult<Option<SessionRecord>> {
        match self.tree(SESSIONS).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => Ok(decode_session_at(id, &v).ok()),
        }
    }

    /// Keeps `bytes`, found under `key` in `tree`, in the quarantine tree.
    pub(crate) fn quarantine(&self, tree: usize, key: &[u8], bytes: &[u8]) -> TxResult<()> {
        let mut qkey = Vec::with_capacity(key.len() + 1);
        qkey.push(u8::try_from(tree).unwrap_or(u8::MAX));
        qkey.extend_from_slice(key);
        self.tree(QUARANTINE).insert(qkey, bytes)?;
        Ok(())
    }

    /// Writes `new` over `old` (the record currently stored under `new.id`, if any), keeping
    /// the subject, resource and expiry indexes, the group heads and the active counter in step.
    pub(crate) fn write_session(
        &self,
        old: Option<&SessionRecord>,
        new: &SessionRecord,
    ) -> TxResult<()> {
        let id = new.id.as_bytes();
        self.tree(SESSIONS)
            .insert(&id[..], codec::encode_session(new))?;
        self.move_due(
            old.map(|o| o.expires_at),
            Some(new.expires_at),
            &Due::Session(new.id),
        )?;
        self.regroup(
            GroupKind::Subject,
            old.map(|o| o.subject.as_str().as_bytes()),
            Some(new.subject.as_str().as_bytes()),
            id,
        )?;
        self.regroup(
            GroupKind::Resource,
            old.and_then(|o| o.resource.as_ref())
                .map(|r| r.as_str().as_bytes()),
            new.resource.as_ref().map(|r| r.as_str().as_bytes()),
            id,
        )?;
        // Mark the session's group entries once it ends, so counts skip it without reading it.
        if new.is_tombstone() && !old.is_some_and(SessionRecord::is_tombstone) {
            self.tree(BY_SUBJECT)
                .insert(member_key(new.subject.as_str().as_bytes(), id), keys::ENDED)?;
            if let Some(r) = &new.resource {
                self.tree(BY_RESOURCE)
                    .insert(member_key(r.as_str().as_bytes(), id), keys::ENDED)?;
            }
        }
        self.adjust_active(new, old.is_some_and(active), active(new))
    }

    /// Deletes a session record and everything pointing at it.
    pub(crate) fn remove_session(&self, r: &SessionRecord) -> TxResult<()> {
        let id = r.id.as_bytes();
        self.tree(SESSIONS).remove(&id[..])?;
        self.move_due(Some(r.expires_at), None, &Due::Session(r.id))?;
        self.regroup(
            GroupKind::Subject,
            Some(r.subject.as_str().as_bytes()),
            None,
            id,
        )?;
        self.regroup(
            GroupKind::Resource,
            r.resource.as_ref().map(|x| x.as_str().as_bytes()),
            None,
            id,
        )?;
        self.adjust_active(r, active(r), false)?;
        // Whatever the state, no order entry may outlive its record.
        self.order_remove(&r.id)
    }

    // ---- tickets -------------------------------------------------------------------------

    pub(crate) fn ticket(&self, id: &TicketId) -> TxResult<Option<TicketRecord>> {
        match self.tree(TICKETS).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => lift(decode_ticket_at(id, &v)).map(Some),
        }
    }

    pub(crate) fn put_ticket(&self, t: &TicketRecord) -> TxResult<()> {
        self.tree(TICKETS)
            .insert(&t.id.as_bytes()[..], codec::encode_ticket(t))?;
        self.move_due(None, Some(t.expires_at), &Due::Ticket(t.id))
    }

    pub(crate) fn remove_ticket(&self, t: &TicketRecord) -> TxResult<()> {
        self.tree(TICKETS).remove(&t.id.as_bytes()[..])?;
        self.move_due(Some(t.expires_at), None, &Due::Ticket(t.id))
    }

    // ---- slots ---------------------------------------------------------------------------

    pub(crate) fn slot(&self, id: &SlotId) -> TxResult<Option<SlotRecord>> {
        match self.tree(SLOTS).get(id.as_bytes())? {
            None => Ok(None),
            Some(v) => lift(decode_slot_at(id, &v)).map(Some),
        }
    }

    pub(crate) fn write_slot(&self, old: Option<&SlotRecord>, new: &SlotRecord) -> TxResult<()> {
        let id = new.id.as_bytes();
        self.tree(SLOTS).insert(&id[..], codec::encode_slot(new))?;
        self.move_due(
            old.map(|o| o.expires_at),
            Some(new.expires_at),
            &Due::Slot(new.id),
        )?;
        self.regroup(
            GroupKind::SessionSlots,
            old.map(|o| &o.session.as_bytes()[..]),
            Some(&new.session.as_bytes()[..]),
            id,
        )?;
        self.regroup(
            GroupKind::ResourceSlots,
            old.and_then(|o| o.resource.as_ref())
                .map(|r| r.as_str().as_bytes()),
            new.resource.as_ref().map(|r| r.as_str().as_bytes()),
            id,
        )
    }

    pub(crate) fn remove_slot(&self, s: &SlotRecord) -> TxResult<()> {
        let id = s.id.as_bytes();
        self.tree(SLOTS).remove(&id[..])?;
        self.move_due(Some(s.expires_at), None, &Due::Slot(s.id))?;
        self.regroup(
            GroupKind::SessionSlots,
            Some(&s.session.as_bytes()[..]),
            None,
            id,
        )?;
        self.regroup(
            GroupKind::ResourceSlots,
            s.resource.as_ref().map(|r| r.as_str().as_bytes()),
            None,
            id,
        )
    }

    // ---- creation log (rate limit) -------------------------------------------------------

    pub(crate) fn rate_log(&self, subject: &Subject) -> TxResult<Option<RateLog>> {
        match self.tree(RATES).get(subject.as_str().as_bytes())? {
            None => Ok(None),
            Some(v) => lift(decode_rate(&v)).map(Some),
        }
    }

    /// The reference store's rate check: drop creations that left the window (oldest first),
    /// then refuse with a retry-after if `max` remain.
    pub(crate) fn rate_check(
        &self,
        subject: &Subject,
        max: u32,
        window: Duration,
        now: Timestamp,
    ) -> TxResult<(Option<RateLog>, Option<Duration>)> {
        let Some(mut log) = self.rate_log(subject)? else {
            return Ok((None, None));
        };
        let expired = log
            .creations
            .iter()
            .take_while(|c| c.at.saturating_add(window) <= now)
            .count();
        log.creations.drain(..expired);
        if log.creations.len() < max as usize {
            return Ok((Some(log), None));
        }
        // The (len - max + 1)-th oldest decides (see the reference store).
        let retry = log
            .creations
            .get(log.creations.len() - max as usize)
            .map(|decisive| decisive.at.saturating_add(window).since(now));
        Ok((Some(log), retry))
    }

    /// Appends the creation of session `id` at `now` to `log` (as trimmed by
    /// [`rate_check`](Self::rate_check)) and moves the log's expiry entry to `now + window`.
    pub(crate) fn record_creation(
        &self,
        subject: &Subject,
        id: &SessionId,
        log: Option<RateLog>,
        window: Duration,
        now: Timestamp,
    ) -> TxResult<()> {
        let due = now.saturating_add(window);
        let old_due = log.as_ref().map(|l| l.due);
        let mut log = log.unwrap_or(RateLog {
            due,
            creations: Vec::new(),
        });
        log.due = due;
        log.creations.push(Creation {
            at: now,
            id: Some(*id),
        });
        self.tree(RATES)
            .insert(subject.as_str().as_bytes(), encode_rate(&log))?;
        self.move_due(old_due, Some(due), &Due::Rate(subject.clone()))
    }

    /// Removes the creation of session `id` from `subject`'s log; whether there was one. A log
    /// left empty is removed with its expiry entry. A shorter log keeps its due time: it is
    /// only when the reaper drops the log, and by then every entry in it has left the window.
    pub(crate) fn forget_creation(&self, subject: &Subject, id: &SessionId) -> TxResult<bool> {
        let Some(mut log) = self.rate_log(subject)? else {
            return Ok(false);
        };
        let Some(i) = log.creations.iter().position(|c| c.id == Some(*id)) else {
            return Ok(false);
        };
        log.creations.remove(i);
        if log.creations.is_empty() {
            self.remove_rate_log(subject)?;
            self.move_due(Some(log.due), None, &Due::Rate(subject.clone()))?;
        } else {
            self.tree(RATES)
                .insert(subject.as_str().as_bytes(), encode_rate(&log))?;
        }
        Ok(true)
    }

    pub(crate) fn remove_rate_log(&self, subject: &Subject) -> TxResult<()> {
        self.tree(RATES).remove(subject.as_str().as_bytes())?;
        Ok(())
    }
}

/// Counted by the global cap's counter: not revoked (expired or not) and not yet reaped.
fn active(r: &SessionRecord) -> bool {
    r.state == SessionState::Active
}

/// The id at the end of a group index key (re-exported for the snapshot scan).
pub(crate) use keys::member_of;

/// Optimistic retries before a group operation gives up (each retry means another writer
/// changed the group; someone always makes progress, so this bound is only a safety net).
const MAX_ATTEMPTS: usize = 10_000;

impl SledStore {
    pub(crate) fn settle(&self, written: Written) -> Result<(), StoreError> {
        let flush = match (written, self.durability) {
            (Written::Nothing, _) => false,
            (Written::Security, _) => true,
            (Written::Routine, Durability::FlushOnEveryWrite) => true,
            (Written::Routine, Durability::FlushOnSecurityWrites) => false,
        };
        if flush { self.flush() } else { Ok(()) }
    }

    /// Runs `f` as one transaction over every tree. `Ok(None)`: a snapshot went stale, retry.
    pub(crate) fn transact<T>(
        &self,
        f: impl Fn(&Tx<'_>) -> TxResult<T>,
    ) -> Result<Result<T, Fail>, StoreError> {
        let r = self
            .trees
            .all
            .as_slice()
            .transaction(|view: &Vec<TransactionalTree>| {
                let tx = Tx::new(view)?;
                f(&tx)
            });
        match r {
            Ok(t) => Ok(Ok(t)),
            Err(TransactionError::Abort(Fail::Store(e))) => Err(e),
            Err(TransactionError::Abort(other)) => Ok(Err(other)),
            Err(TransactionError::Storage(e)) => Err(sled_err(e)),
        }
    }

    /// A transaction with no snapshot to go stale; settles durability.
    pub(crate) fn write_once<T>(
        &self,
        f: impl Fn(&Tx<'_>) -> TxResult<(T, Written)>,
    ) -> Result<T, StoreError> {
        match self.transact(f)? {
            Ok((out, written)) => {
                self.settle(written)?;
                Ok(out)
            }
            Err(_) => Err(StoreError::Unavailable(
                "sled adapter: unexpected retry request".into(),
            )),
        }
    }

    /// Runs `attempt` until no snapshot it took went stale. `attempt` is told how many times
    /// a transaction asked for (more) candidates so far.
    pub(crate) fn optimistic<T>(
        &self,
        mut attempt: impl FnMut(u32) -> Result<Result<(T, Written), Fail>, StoreError>,
    ) -> Result<T, StoreError> {
        let mut asked = 0u32;
        for _ in 0..MAX_ATTEMPTS {
            match attempt(asked)? {
                Ok((out, written)) => {
                    self.settle(written)?;
                    return Ok(out);
                }
                Err(Fail::NeedCandidates) => asked = asked.saturating_add(1),
                Err(Fail::Stale) => {}
                Err(Fail::Store(e)) => return Err(e),
            }
        }
        Err(StoreError::Unavailable(format!(
            "sled adapter: a group changed under each of {MAX_ATTEMPTS} attempts; nothing written"
        )))
    }
}
