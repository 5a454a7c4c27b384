//! # leasehold-sled
//!
//! An embedded [sled](https://docs.rs/sled/0.34.7) store for [`leasehold`] sessions: one
//! process, no server. [`SledStore`] implements [`leasehold::Store`] and behaves like the
//! reference [`leasehold::MemoryStore`], with durability on disk.
//!
//! ```no_run
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! use leasehold::{CreateOptions, Policy, Sessions, Subject};
//! use leasehold_sled::SledStore;
//!
//! let store = SledStore::open("/var/lib/myapp/sessions")?;
//! let sessions = Sessions::new(store, Policy::default())?;
//! let created = sessions.create(&Subject::new("alice")?, CreateOptions::default()).await?;
//! # let _ = created; Ok(()) }
//! ```
//!
//! ## Layout
//!
//! Trees (all named `leasehold.*`, see [`trees`]):
//!
//! | tree | key | value |
//! |---|---|---|
//! | `sessions` | session id | `codec::encode_session` |
//! | `by_subject` | subject ‖ `0x00` ‖ session id | empty |
//! | `by_resource` | resource ‖ `0x00` ‖ session id | empty |
//! | `expiry` | deadline (u64 BE ms) ‖ kind ‖ id | empty |
//! | `tickets` | ticket id | `codec::encode_ticket` |
//! | `slots` | slot id | `codec::encode_slot` |
//! | `slots_by_session` | session id ‖ `0x00` ‖ slot id | empty |
//! | `slots_by_resource` | resource ‖ `0x00` ‖ slot id | empty |
//! | `groups` | kind ‖ subject / resource / session id | head: stamp, member count |
//! | `rates` | subject | creation log (due, creation times and session ids) |
//! | `meta` | `format`, `seq`, `live`, `order_head` | format marker, sequence, active counter, creation-order stamp |
//! | `created` | created_at (u64 BE ms) ‖ sequence (u64 BE) ‖ session id | empty |
//! | `created_by_id` | session id | its `created` position: created_at, sequence |
//!
//! Subjects and resources cannot contain control characters, so `0x00` ends a name and a
//! prefix scan over `name ‖ 0x00` lists exactly one group. Reaping walks `expiry` from its start
//! and stops at the first entry due after `now`: its cost is proportional to what it removes.
//!
//! ## How caps stay atomic
//!
//! Every multi-record operation is **one** sled transaction over all the trees. A
//! compare-and-swap that changes no index (the session stays `Active`, its deadline does not
//! move earlier: a touch, a rotation) is one single-key compare-and-swap of the stored bytes
//! instead, its expiry entry left at or before the new deadline for the reaper to re-file (see
//! `swap_single_key`). sled
//! transactions are serializable but cannot scan, and a cap needs a group's members (a subject's
//! sessions, a session's slots). So the operation first takes a *snapshot* outside the
//! transaction — the group head's stamp, then a prefix scan of its index — and the transaction
//! re-reads the head: if the stamp changed, a member joined in between, and the operation
//! retries with a fresh snapshot. A member only ever joins inside a transaction that gives the
//! head a new stamp from a store-wide sequence (so a head deleted and recreated never repeats
//! one), hence an unchanged stamp proves the scan saw every current member. The transaction then
//! reads each member's *record* and decides on what it reads, so liveness, versions and states
//! are exactly those at commit. Two creators racing for a subject's last place therefore cannot
//! both pass: the second one's transaction sees the first one's stamp and retries.
//!
//! Writes are O(1) per membership change (an index key and a 17-byte head), whatever the size
//! of the group, unlike a value listing every member id.
//!
//! ## Creation order
//!
//! "Oldest" means creation order: by `created_at`, then by the order the store inserted the
//! sessions, never by the random id. `created` lists every session in state `Active` not yet
//! reaped (the very set `meta/live` counts) under `created_at ‖ sequence`, the sequence drawn
//! from `meta/seq` inside the inserting transaction (so it follows commit order);
//! `created_by_id` finds a session's entry from its id. A session leaves both when it becomes a
//! tombstone or is reaped, so a walk from the start of `created` meets live sessions and the
//! expired ones the reaper has yet to remove, never tombstones. A subject cap that evicts sorts
//! the subject's live sessions by the same key.
//!
//! ## Global cap
//!
//! `meta/live` counts sessions in state `Active` that are not yet reaped — live *and* expired.
//! An insert under a global cap accepts at once while that counter is below the cap. When it is
//! not, the insert scans the expiry index for sessions due at or before `now` (cost ∝ what the
//! reaper has yet to remove), and the transaction subtracts those it reads as active and
//! expired: the cap is then enforced on the exact live count, as the reference store does. (It
//! writes no tombstones for them: a store-wide count must not let one caller whose clock
//! glitched ahead end every session.) The live sessions an evicting subject cap is about to end
//! count as gone.
//!
//! A global cap with `on_full: EvictOldest` evicts the store's oldest live sessions instead of
//! refusing: the insert walks the start of `created` outside the transaction, after reading the
//! index's stamp (`meta/order_head`, the sequence of its newest entry); the transaction checks
//! the stamp (unchanged: no entry joined, so the walk saw every entry before its last one),
//! reads the walked sessions' records in order and evicts the first live ones. A walk too short
//! asks for a longer one (doubling). Such inserts take one store-wide lock, so they wait for
//! each other instead of invalidating each other's walks.
//!
//! ## Time
//!
//! sled has no clock of its own: it judges at the caller's `now`. Endings are final whatever
//! the clock: compare-and-swap applies [`leasehold::store::check_swap`] (a tombstone may be
//! written over an expired record; nothing replaces a tombstone), group revocations tombstone
//! every member that is not one yet, expired or not, and a capped insert tombstones the expired
//! members it counted. These tombstones are security writes (flushed under both durability
//! modes), even when the insert itself is refused.
//!
//! ## Upgrading from layout 1
//!
//! Layout 1 (`leasehold-sled/1`) had no creation-order index and creation logs without session
//! ids. Opening such a database indexes its active sessions (in `created_at`, then id order:
//! their insertion order was never recorded), then marks it layout 2 — builds reading layout 1
//! only then refuse it, as they would not keep the index. Logs of format 1 are still read (their
//! entries count, but cannot be given back by `forget_creation`) and are rewritten in format 2
//! by the next creation.
//!
//! ## Durability
//!
//! See [`Durability`]. Flushes are synchronous (`Db::flush`): sled 0.34's `flush_async` can
//! hang when several are awaited at once (sled issue #1241).
//!
//! ## Blocking
//!
//! sled is a blocking library: every method runs on the calling thread (reads in microseconds,
//! flushed writes in the time of an `fsync`).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use leasehold::codec;
use leasehold::crypto::Verifier;
use leasehold::record::{RevokeReason, SlotRecord, TicketRecord};
use leasehold::store::{
    Capabilities, CreateLimits, HeartbeatOutcome, InsertCheck, InsertOutcome, Loaded, ReapOutcome,
    SlotCaps, SlotOutcome, TakeOutcome, WriteClass, check_insert, check_loaded, check_swap,
};
use leasehold::{
    CapPolicy, MAX_PAGE, Page, Reaped, Resource, Scope, SessionId, SessionRecord, SessionState,
    SlotId, Store, StoreError, Subject, TicketId, Timestamp,
};
use sled::transaction::{TransactionError, Transactional, TransactionalTree};

#[doc(hidden)]
pub mod fuzzing;
mod keys;
mod locks;
mod tx;

use keys::{Due, GroupKind, ID_LEN};
use locks::GroupLocks;
use tx::{Fail, Read, Snapshot, Tx, TxResult, Written, fail};

/// Names of the trees this adapter uses (for tests and tools that inspect a database).
pub mod trees {
    /// Session records by id.
    pub const SESSIONS: &str = "leasehold.sessions";
    /// Subject index: `subject ‖ 0x00 ‖ session id`.
    pub const BY_SUBJECT: &str = "leasehold.by_subject";
    /// Resource index: `resource ‖ 0x00 ‖ session id`.
    pub const BY_RESOURCE: &str = "leasehold.by_resource";
    /// Group heads (stamp and member count of every subject, resource and slot group).
    pub const GROUPS: &str = "leasehold.groups";
    /// Expiry index: `deadline (u64 big-endian ms) ‖ kind ‖ id`.
    pub const EXPIRY: &str = "leasehold.expiry";
    /// Ticket records by id.
    pub const TICKETS: &str = "leasehold.tickets";
    /// Slot records by id.
    pub const SLOTS: &str = "leasehold.slots";
    /// Slot index by session: `session id ‖ 0x00 ‖ slot id`.
    pub const SLOTS_BY_SESSION: &str = "leasehold.slots_by_session";
    /// Slot index by resource: `resource ‖ 0x00 ‖ slot id`.
    pub const SLOTS_BY_RESOURCE: &str = "leasehold.slots_by_resource";
    /// Per-subject creation logs for the creation rate.
    pub const RATES: &str = "leasehold.rates";
    /// Format marker, sequence and counters.
    pub const META: &str = "leasehold.meta";
    /// Bytes the reaper found undecodable, moved aside for inspection: `tree number ‖ key`.
    pub const QUARANTINE: &str = "leasehold.quarantine";
    /// Creation order of the active sessions: `created_at ‖ sequence ‖ session id`.
    pub const CREATED: &str = "leasehold.created";
    /// A session's position in [`CREATED`], by session id.
    pub const CREATED_BY_ID: &str = "leasehold.created_by_id";

    /// Every tree, in transaction order.
    pub const ALL: [&str; 14] = [
        SESSIONS,
        BY_SUBJECT,
        BY_RESOURCE,
        GROUPS,
        EXPIRY,
        TICKETS,
        SLOTS,
        SLOTS_BY_SESSION,
        SLOTS_BY_RESOURCE,
        RATES,
        META,
        QUARANTINE,
        CREATED,
        CREATED_BY_ID,
    ];
}

/// The on-disk layout written by this build (in `meta/format`). A database of layout 1 is
/// upgraded in place when opened (see the crate docs); any other marker is refused.
pub const FORMAT: &[u8] = b"leasehold-sled/2";

/// The layout before the creation-order index and session ids in creation logs.
const FORMAT_1: &[u8] = b"leasehold-sled/1";

/// Creation-order entries an evicting global cap walks first; each request for more doubles it.
const ORDER_WALK: usize = 16;

/// Single-key compare-and-swap attempts before a swap falls back to the transaction.
const SINGLE_KEY_ATTEMPTS: usize = 8;

/// Optimistic retries before a group operation gives up (each retry means another writer
/// changed the group; someone always makes progress, so this bound is only a safety net).
const MAX_ATTEMPTS: usize = 10_000;

/// When writes reach the disk before a method returns.
///
/// sled keeps writes in memory buffers and writes them out in its log order; a flush makes
/// every write before it durable. So a crash loses, at most, a *suffix* of unflushed writes,
/// never a flushed write and never something older than a flushed write.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub enum Durability {
    /// Flush before returning from every method that wrote anything (touches, slot leases and
    /// reaps included). Slowest; a crash loses nothing acknowledged.
    FlushOnEveryWrite,
    /// Flush before returning from every *security* write: inserts (with their evictions),
    /// revocations (by id, subject, resource, eviction, reuse), rotations and any other change
    /// to a session other than a touch, ticket put and take. Touches (a compare-and-swap that
    /// only moves `last_seen`/`expires_at`), slot acquire/heartbeat/release and reaps are left
    /// to sled's background flush (every 500 ms by default): a crash may lose them, which is
    /// harmless (a session expires a little early, a slot must be re-acquired, a reap re-run).
    #[default]
    FlushOnSecurityWrites,
}

/// Opening a database failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// Another process (or another open handle in this one) holds the database's file lock.
    /// sled allows one process per database.
    #[error(
        "the sled database at {path} is locked: another process (or another open handle) \
         is using it; a sled database serves one process at a time"
    )]
    Locked {
        /// The database directory.
        path: PathBuf,
    },
    /// The database was written by another layout version, or is not a leasehold database.
    #[error("the sled database holds layout {found:?}, this build reads {expected:?}")]
    Format {
        /// The marker found.
        found: String,
        /// The marker this build writes.
        expected: String,
    },
    /// Upgrading a layout-1 database failed (nothing is lost: the next open redoes it).
    #[error("could not upgrade the sled database to layout 2: {0}")]
    Upgrade(#[source] StoreError),
    /// sled failed to open the database or its trees.
    #[error("could not open the sled database{}: {source}", path.as_ref().map(|p| format!(" at {}", p.display())).unwrap_or_default())]
    Sled {
        /// The database directory, when known.
        path: Option<PathBuf>,
        /// sled's error.
        #[source]
        source: sled::Error,
    },
}

#[derive(Clone)]
struct Trees {
    all: Vec<sled::Tree>,
}

impl Trees {
    fn get(&self, i: usize) -> &sled::Tree {
        &self.all[i]
    }
}

/// The start of the creation-order index as walked outside a transaction.
struct OrderWalk {
    /// `meta/order_head` read before the walk.
    stamp: u64,
    /// The sessions of the walked entries, oldest first.
    ids: Vec<SessionId>,
    /// Whether the walk reached the end of the index.
    complete: bool,
}

/// The sled store. Cheap to clone: clones share the database.
#[derive(Clone)]
pub struct SledStore {
    db: sled::Db,
    trees: Trees,
    durability: Durability,
    locks: GroupLocks,
    /// Session records read by cap counts (a test hook: the cost must follow live members).
    counted: Arc<AtomicU64>,
}

impl std::fmt::Debug for SledStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SledStore")
            .field("durability", &self.durability)
            .finish_non_exhaustive()
    }
}

fn sled_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(format!("sled: {e}")),
        other => StoreError::Unavailable(format!("sled: {other}")),
    }
}

fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => io.to_string().contains("could not acquire lock"),
        _ => false,
    }
}

impl SledStore {
    /// Opens (creating if needed) the database in directory `path`, with
    /// [`Durability::FlushOnSecurityWrites`].
    ///
    /// Fails with [`OpenError::Locked`] if another process has it open.
    pub fn open(path: impl AsRef<Path>) -> Result<Self, OpenError> {
        SledStore::open_with(path, Durability::default())
    }

    /// Opens (creating if needed) the database in directory `path` with `durability`.
    pub fn open_with(path: impl AsRef<Path>, durability: Durability) -> Result<Self, OpenError> {
        let path = path.as_ref();
        let db = sled::Config::new().path(path).open().map_err(|e| {
            if is_lock_error(&e) {
                OpenError::Locked {
                    path: path.to_path_buf(),
                }
            } else {
                OpenError::Sled {
                    path: Some(path.to_path_buf()),
                    source: e,
                }
            }
        })?;
        Ok(SledStore::from_db(db)?.with_durability(durability))
    }

    /// A store over an already opened database (any [`sled::Config`]: temporary, cache size,
    /// flush interval), with [`Durability::FlushOnSecurityWrites`]. The store's trees are named
    /// `leasehold.*` ([`trees`]), so the database may hold other trees too.
    pub fn from_db(db: sled::Db) -> Result<Self, OpenError> {
        let sled_error = |source| OpenError::Sled { path: None, source };
        let all = trees::ALL
            .iter()
            .map(|name| db.open_tree(name))
            .collect::<Result<Vec<_>, _>>()
            .map_err(sled_error)?;
        let trees = Trees { all };
        let meta = trees.get(tx::META);
        let mut upgrade = false;
        match meta
            .compare_and_swap(tx::META_FORMAT, None as Option<&[u8]>, Some(FORMAT))
            .map_err(sled_error)?
        {
            Ok(()) => {}
            Err(cas) => {
                let found = cas.current.unwrap_or_default();
                if found == FORMAT_1 {
                    upgrade = true;
                } else if found != FORMAT {
                    return Err(OpenError::Format {
                        found: String::from_utf8_lossy(&found).into_owned(),
                        expected: String::from_utf8_lossy(FORMAT).into_owned(),
                    });
                }
            }
        }
        let store = SledStore {
            db,
            trees,
            durability: Durability::default(),
            locks: GroupLocks::new(),
            counted: Arc::default(),
        };
        if upgrade {
            store.upgrade_from_1().map_err(OpenError::Upgrade)?;
        }
        Ok(store)
    }

    /// Layout 1 → 2: gives every active session its creation-order entry (idempotent, so a
    /// crash midway is finished by the next open), then rewrites the marker. Runs once, before
    /// the store is used (sled serves one process, and this one has not returned it yet).
    fn upgrade_from_1(&self) -> Result<(), StoreError> {
        for kv in self.trees.get(tx::SESSIONS).iter() {
            let (k, _) = kv.map_err(sled_err)?;
            // Keys that are not ids are left for the reaper's quarantine.
            let Ok(id) = <[u8; ID_LEN]>::try_from(&k[..]) else {
                continue;
            };
            let id = SessionId::from_bytes(id);
            let indexed = self.transact(|tx| {
                if let Some(r) = tx.session_lenient(&id)?
                    && r.state == SessionState::Active
                {
                    tx.order_add(&r)?;
                }
                Ok(())
            })?;
            if indexed.is_err() {
                return Err(StoreError::Unavailable(
                    "sled adapter: unexpected retry request".into(),
                ));
            }
        }
        self.flush()?;
        let meta = self.trees.get(tx::META);
        match meta
            .compare_and_swap(tx::META_FORMAT, Some(FORMAT_1), Some(FORMAT))
            .map_err(sled_err)?
        {
            Ok(()) => self.flush(),
            Err(_) => Err(StoreError::Unavailable(
                "sled adapter: the layout marker changed during the upgrade".into(),
            )),
        }
    }

    /// Sets the durability.
    pub fn with_durability(mut self, durability: Durability) -> Self {
        self.durability = durability;
        self
    }

    /// The durability in effect.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// Session records read so far by subject-cap counts: a capped create reads its subject's
    /// open (not ended) sessions only, never its tombstones. For tests of that cost.
    #[doc(hidden)]
    pub fn records_counted_by_caps(&self) -> u64 {
        self.counted.load(Ordering::Relaxed)
    }

    /// The underlying database (tools, tests, `size_on_disk`).
    pub fn db(&self) -> &sled::Db {
        &self.db
    }

    /// Writes every buffered write to disk and fsyncs.
    pub fn flush(&self) -> Result<(), StoreError> {
        self.db.flush().map(drop).map_err(sled_err)
    }

    /// Bytes used on disk by the database's files.
    pub fn size_on_disk(&self) -> Result<u64, StoreError> {
        self.db.size_on_disk().map_err(sled_err)
    }

    fn settle(&self, written: Written) -> Result<(), StoreError> {
        let flush = match (written, self.durability) {
            (Written::Nothing, _) => false,
            (Written::Security, _) => true,
            (Written::Routine, Durability::FlushOnEveryWrite) => true,
            (Written::Routine, Durability::FlushOnSecurityWrites) => false,
        };
        if flush { self.flush() } else { Ok(()) }
    }

    /// Runs `f` as one transaction over every tree. `Ok(None)`: a snapshot went stale, retry.
    fn transact<T>(
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
    fn write_once<T>(
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
    fn optimistic<T>(
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

    /// A compare-and-swap that changes nothing but the record itself, written as one
    /// single-key compare-and-swap of the stored bytes (one log write, where a transaction costs
    /// two). `Ok(true)`: done and settled; `Ok(false)`: the swap needs the transaction (it
    /// changes what an index holds), nothing written.
    ///
    /// Single-key exactly when the new record keeps the state (`Active`: not a tombstone, so
    /// the ended marks, the active counter and the creation order stay as they are) and does
    /// not move `expires_at` earlier. Identity (subject, resource, `created_at`) never changes
    /// in a swap ([`check_swap`]), so the group indexes and heads stay exact. The record's
    /// expiry entry stays where it was, at or before the new deadline: every stored record
    /// keeps an entry at or before its `expires_at`, so the reaper and the due scans still
    /// find it no later than it is due, and the reaper re-files an entry found early (see
    /// [`reap`](Store::reap)). A deadline moved earlier could leave the record's only entry
    /// after it: that swap stays in the transaction.
    ///
    /// [`check_swap`] judges the exact bytes the compare-and-swap replaces: if they changed in
    /// between, the record is read and judged again (a version moved on is then a `Conflict`,
    /// a tombstone `NotFound`). sled runs single-key operations and transactions under one
    /// lock (transactions exclusive), so a transaction never sees a swap half done.
    fn swap_single_key(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<bool, StoreError> {
        let sessions = self.trees.get(tx::SESSIONS);
        let key = &new.id.as_bytes()[..];
        // Each failed compare-and-swap means another write landed; past this bound the
        // transaction decides (it cannot be raced).
        for _ in 0..SINGLE_KEY_ATTEMPTS {
            let Some(bytes) = sessions.get(key).map_err(sled_err)? else {
                return Err(StoreError::NotFound);
            };
            let current = tx::decode_session_at(&new.id, &bytes)?;
            check_swap(Some(&current), new, expected_version, now)?;
            if new.state != current.state || new.expires_at < current.expires_at {
                return Ok(false);
            }
            let swapped = sessions
                .compare_and_swap(key, Some(&bytes), Some(codec::encode_session(new)))
                .map_err(sled_err)?;
            if swapped.is_ok() {
                self.settle(match WriteClass::of_swap(&current, new) {
                    WriteClass::Routine => Written::Routine,
                    WriteClass::Security => Written::Security,
                })?;
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn index_tree(&self, kind: GroupKind) -> &sled::Tree {
        self.trees.get(match kind {
            GroupKind::Subject => tx::BY_SUBJECT,
            GroupKind::Resource => tx::BY_RESOURCE,
            GroupKind::SessionSlots => tx::SLOTS_BY_SESSION,
            GroupKind::ResourceSlots => tx::SLOTS_BY_RESOURCE,
        })
    }

    /// The head stamp of a group, then its members (in that order: see [`Tx::check`]).
    fn snapshot(&self, kind: GroupKind, name: &[u8]) -> Result<Snapshot, StoreError> {
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

    /// The one decision of a create, for [`insert_session`](Store::insert_session) (`record`
    /// given: decide and write in one transaction) and [`check_limits`](Store::check_limits)
    /// (`None`: decide only, write nothing), so the two cannot diverge.
    ///
    /// In order: the creation rate; the subject cap (counting the subject's open sessions,
    /// planning evictions of its oldest live ones); the global cap, counting the planned
    /// evictions as gone and, where it evicts, planning the store's oldest live sessions after
    /// them. A refusal writes nothing but the `Expired` tombstones of what the subject count saw
    /// lapse (an observed ending stays ended).
    fn create_step(
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

#[async_trait]
impl Store for SledStore {
    fn capabilities(&self) -> Capabilities {
        Capabilities::NONE.with_raw_dump(true)
    }

    async fn load_session(&self, id: &SessionId) -> Result<Loaded, StoreError> {
        let Some(v) = self
            .trees
            .get(tx::SESSIONS)
            .get(id.as_bytes())
            .map_err(sled_err)?
        else {
            return Ok(Loaded::new(None));
        };
        let r =
            codec::decode_session(&v).map_err(|e| StoreError::Corrupt(format!("session: {e}")))?;
        check_loaded(id, &r)?;
        Ok(Loaded::new(Some(r)))
    }

    async fn insert_session(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.create_step(&record.subject, limits, now, Some(record))
    }

    async fn compare_and_swap(
        &self,
        new: &SessionRecord,
        expected_version: u64,
        now: Timestamp,
    ) -> Result<(), StoreError> {
        if self.swap_single_key(new, expected_version, now)? {
            return Ok(());
        }
        self.write_once(|tx| {
            let current = tx.session(&new.id)?;
            if let Err(e) = check_swap(current.as_ref(), new, expected_version, now) {
                return fail(e);
            }
            let Some(current) = current else {
                return fail(StoreError::NotFound);
            };
            tx.write_session(Some(&current), new)?;
            let written = match WriteClass::of_swap(&current, new) {
                WriteClass::Routine => Written::Routine,
                WriteClass::Security => Written::Security,
            };
            Ok(((), written))
        })
    }

    async fn revoke_subject(&self, subject: &Subject, now: Timestamp) -> Result<u64, StoreError> {
        self.revoke_group(
            GroupKind::Subject,
            subject.as_str().as_bytes(),
            RevokeReason::Subject,
            |r| r.subject == *subject,
            now,
        )
    }

    async fn revoke_resource(
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

    async fn list_subject(&self, subject: &Subject) -> Result<Vec<SessionRecord>, StoreError> {
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

    async fn put_ticket(&self, ticket: &TicketRecord) -> Result<(), StoreError> {
        self.write_once(|tx| {
            if tx.record_exists(tx::TICKETS, ticket.id.as_bytes())? {
                return fail(StoreError::AlreadyExists);
            }
            tx.put_ticket(ticket)?;
            Ok(((), Written::Security))
        })
    }

    async fn take_ticket(
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

    async fn acquire_slot(
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

    async fn heartbeat_slot(
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

    async fn release_slot(&self, id: &SlotId) -> Result<bool, StoreError> {
        self.write_once(|tx| match tx.slot(id)? {
            None => Ok((false, Written::Nothing)),
            Some(s) => {
                tx.remove_slot(&s)?;
                Ok((true, Written::Routine))
            }
        })
    }

    /// Ascending id order: a range scan of `sessions` for [`Scope::All`], of the group's
    /// index for a subject or resource, so the cost follows the page. Undecodable records are
    /// skipped rather than failing the listing (see `page`). `next` is set as soon as one more
    /// entry follows the page (it may turn out to be skipped: the next page is then empty); a
    /// `limit` of 0 is served as 1, as the contract says.
    async fn list_sessions(
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
    async fn count_live(&self, scope: &Scope, now: Timestamp) -> Result<u64, StoreError> {
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
    async fn check_limits(
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
    async fn forget_creation(&self, subject: &Subject, id: &SessionId) -> Result<bool, StoreError> {
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

    async fn reap(&self, now: Timestamp, limit: usize) -> Result<ReapOutcome, StoreError> {
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

    async fn raw_dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
        let mut out = Vec::new();
        for name in self.db.tree_names() {
            let tree = self.db.open_tree(&name).map_err(sled_err)?;
            for kv in tree.iter() {
                let (k, v) = kv.map_err(sled_err)?;
                out.push(k.to_vec());
                out.push(v.to_vec());
            }
        }
        Ok(Some(out))
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

// Keep the id length in one place: ids are 18 bytes in every tree.
const _: () = assert!(ID_LEN == 18);
