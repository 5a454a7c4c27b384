//! sqlx errors as [`StoreError`]s, and the bounded retry of failures that committed nothing.

use std::future::Future;
use std::sync::atomic::Ordering;

use leasehold::StoreError;

use crate::PostgresStore;

/// How often a statement that failed on a deadlock or a serialization failure is sent in all.
const ATTEMPTS: usize = 3;

/// The SQLSTATE of a server error, if `e` is one.
fn code(e: &sqlx::Error) -> Option<String> {
    match e {
        sqlx::Error::Database(db) => db.code().map(|c| c.into_owned()),
        _ => None,
    }
}

/// A failure where the server rolled the transaction back and nothing committed, so sending the
/// statement again is safe: `40001` serialization failure, `40P01` deadlock detected.
pub(crate) fn retryable(e: &sqlx::Error) -> bool {
    matches!(code(e).as_deref(), Some("40001" | "40P01"))
}

/// Maps a sqlx error onto the contract's meanings.
pub(crate) fn map(e: sqlx::Error) -> StoreError {
    match &e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            // unique_violation: an insert found the key taken.
            Some("23505") => StoreError::AlreadyExists,
            // check_violation: a record the schema's rules refuse (nothing written).
            Some("23514") => StoreError::InvalidWrite("the record violates a table constraint"),
            // lock_not_available (lock_timeout), query_canceled (statement_timeout): nothing
            // committed, but the call did not complete in time.
            Some("55P03" | "57014") => StoreError::Timeout,
            _ => StoreError::Unavailable(format!("postgres: {e}")),
        },
        sqlx::Error::PoolTimedOut => StoreError::Timeout,
        sqlx::Error::ColumnDecode { .. } | sqlx::Error::ColumnNotFound(_) => {
            StoreError::Corrupt(format!("postgres row: {e}"))
        }
        _ => StoreError::Unavailable(format!("postgres: {e}")),
    }
}

impl PostgresStore {
    /// Runs `attempt` (one statement, counted), again on a deadlock or serialization failure
    /// (counted; at most [`ATTEMPTS`] times in all), and maps the final error.
    pub(crate) async fn run<T, F, Fut>(&self, mut attempt: F) -> Result<T, StoreError>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, sqlx::Error>>,
    {
        let mut left = ATTEMPTS;
        loop {
            self.inner.statements.fetch_add(1, Ordering::Relaxed);
            match attempt().await {
                Ok(v) => return Ok(v),
                Err(e) if retryable(&e) && left > 1 => {
                    self.inner.retried.fetch_add(1, Ordering::Relaxed);
                    left -= 1;
                }
                Err(e) => return Err(map(e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pool_and_io_failures_keep_their_meaning() {
        assert_eq!(map(sqlx::Error::PoolTimedOut), StoreError::Timeout);
        assert!(matches!(
            map(sqlx::Error::PoolClosed),
            StoreError::Unavailable(_)
        ));
        let io = std::io::Error::new(std::io::ErrorKind::ConnectionReset, "reset");
        assert!(matches!(
            map(sqlx::Error::Io(io)),
            StoreError::Unavailable(_)
        ));
        assert!(!retryable(&sqlx::Error::PoolTimedOut));
    }
}
