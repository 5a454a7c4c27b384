//! Errors: opening a database ([`OpenError`]) and sled's errors as [`StoreError`]s.

use std::path::PathBuf;

use leasehold::StoreError;

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

/// A sled error as the store contract's error: corruption is `Corrupt`, anything else
/// `Unavailable` (outcome unknown).
pub(crate) fn sled_err(e: sled::Error) -> StoreError {
    match e {
        sled::Error::Corruption { .. } => StoreError::Corrupt(format!("sled: {e}")),
        other => StoreError::Unavailable(format!("sled: {other}")),
    }
}

/// Whether opening failed on the database's file lock (another process holds it).
pub(crate) fn is_lock_error(e: &sled::Error) -> bool {
    match e {
        sled::Error::Io(io) => io.to_string().contains("could not acquire lock"),
        _ => false,
    }
}
