//! Opening a database: configuration and durability, the layout marker and upgrades.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use leasehold::{SessionId, SessionState, StoreError};

use crate::error::{OpenError, is_lock_error, sled_err};
use crate::keys::ID_LEN;
use crate::locks::GroupLocks;
use crate::tx::{self};
use crate::{SledStore, Trees, trees};

/// The on-disk layout written by this build (in `meta/format`). A database of layout 1 is
/// upgraded in place when opened (see the crate docs); any other marker is refused.
pub const FORMAT: &[u8] = b"leasehold-sled/2";

/// The layout before the creation-order index and session ids in creation logs.
pub(crate) const FORMAT_1: &[u8] = b"leasehold-sled/1";

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

    pub(crate) fn dump(&self) -> Result<Option<Vec<Vec<u8>>>, StoreError> {
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
