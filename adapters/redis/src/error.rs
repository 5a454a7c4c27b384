//! Errors: opening a store ([`OpenError`]) and Redis errors as [`StoreError`]s.

use leasehold::StoreError;

/// Opening a store failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpenError {
    /// The configuration is not usable (a prefix with a hash tag, an unknown URL scheme).
    #[error("invalid Redis store configuration: {0}")]
    Config(String),
    /// The server could not be reached or refused the connection.
    #[error("cannot connect to Redis at {url}: {source}")]
    Connect {
        /// The URL (without credentials).
        url: String,
        /// The client's error.
        #[source]
        source: redis::RedisError,
    },
    /// Opened with the global index on, the store found sessions created without it and
    /// could not index them (see [`RedisStore::open`](crate::RedisStore::open)).
    #[error("rebuilding the global index of prefix {prefix} failed: {source}")]
    Rebuild {
        /// The key prefix.
        prefix: String,
        /// The store error.
        #[source]
        source: StoreError,
    },
}

/// A Redis error as a store error: the outcome of the call is unknown.
pub(crate) fn store_error(e: redis::RedisError) -> StoreError {
    if e.is_timeout() {
        return StoreError::Timeout;
    }
    if e.code() == Some("OOM") {
        return StoreError::Unavailable(
            "Redis is out of memory (maxmemory reached; noeviction refuses writes)".into(),
        );
    }
    StoreError::Unavailable(format!("redis: {e}"))
}

/// A reply that does not have the shape the script promises (a bug or a foreign script).
pub(crate) fn bad_reply(what: &str) -> StoreError {
    StoreError::Unavailable(format!("unexpected reply from Redis to {what}"))
}
