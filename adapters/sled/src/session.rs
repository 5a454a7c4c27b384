//! One session: load, insert (through the caps, see `groups`), compare-and-swap.

use leasehold::codec;
use leasehold::store::{CreateLimits, InsertOutcome, Loaded, WriteClass, check_loaded, check_swap};
use leasehold::{SessionId, SessionRecord, StoreError, Timestamp};

use crate::SledStore;
use crate::error::sled_err;
use crate::tx::{self, Written, fail};

/// Single-key compare-and-swap attempts before a swap falls back to the transaction.
const SINGLE_KEY_ATTEMPTS: usize = 8;

impl SledStore {
    pub(crate) fn load(&self, id: &SessionId) -> Result<Loaded, StoreError> {
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
        Ok(Loaded::new(Some(Box::new(r))))
    }

    pub(crate) fn insert(
        &self,
        record: &SessionRecord,
        limits: &CreateLimits,
        now: Timestamp,
    ) -> Result<InsertOutcome, StoreError> {
        self.create_step(&record.subject, limits, now, Some(record))
    }

    pub(crate) fn swap(
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
    /// [`reap`](leasehold::Store::reap)). A deadline moved earlier could leave the record's only entry
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
}
