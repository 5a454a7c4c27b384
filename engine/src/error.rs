//! Typed errors. Every denial says why, so callers can map it (401, 403, 429, 503) precisely.

use std::time::Duration;

use crate::codec::CodecError;
use crate::entropy::EntropyError;
use crate::record::RevokeReason;
use crate::store::StoreError;
use crate::token::TokenError;

/// Invalid caller input (not a token): refused before any store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum InputError {
    /// A required name is empty.
    #[error("{0} must not be empty")]
    Empty(&'static str),
    /// A value exceeds its length limit.
    #[error("{what} exceeds {max} bytes")]
    TooLong {
        /// Which value.
        what: &'static str,
        /// Its limit in bytes.
        max: usize,
    },
    /// A name contains a control character.
    #[error("{0} contains a control character")]
    ControlCharacter(&'static str),
    /// A value is outside what it may be (e.g. a kind that is not `[a-z0-9]`, a lifetime
    /// longer than the policy allows).
    #[error("invalid {0}")]
    Invalid(&'static str),
}

/// Which limit refused an operation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Limit {
    /// Live sessions per subject (cap policy `Reject`).
    SubjectSessions,
    /// Live sessions in the store.
    GlobalSessions,
    /// Live slots on one session.
    SessionSlots,
    /// Live slots on one resource.
    ResourceSlots,
}

/// Why an operation was refused or failed.
///
/// The authentication outcomes (`Malformed`, `NotAuthenticated`, `Expired`, `Revoked`,
/// `ReuseDetected`, `BindingMismatch`) all mean "no valid session"; the rest say what to fix or
/// retry. No variant ever carries a secret. Comparable, so a test (or a caller) can match a
/// whole error with `==`.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The token is not even well-formed; no store call was made.
    #[error("malformed token: {0}")]
    Malformed(#[from] TokenError),
    /// No session matches this token (unknown id, wrong secret, or reaped).
    #[error("not authenticated")]
    NotAuthenticated,
    /// The session (or ticket) reached its idle or absolute deadline.
    #[error("session expired")]
    Expired,
    /// The session was revoked.
    #[error("session revoked ({reason:?})")]
    Revoked {
        /// Why it was revoked.
        reason: RevokeReason,
    },
    /// A rotated-out token was presented; the session has now been revoked.
    #[error("token reuse detected; session revoked")]
    ReuseDetected,
    /// The access token is the session's current one but past its deadline; the session itself
    /// may be live: refresh it for a new access token. (An access token a rotation replaced is
    /// no longer the session's: `NotAuthenticated`.)
    #[error("access token expired")]
    AccessTokenExpired,
    /// A check the application asked for refused the session before anything was written
    /// (an expected subject, a pre-grant check, an owner check).
    #[error("refused by the application's check")]
    Refused,
    /// The request context does not match the session's binding.
    #[error("context binding mismatch")]
    BindingMismatch,
    /// A cap refused the operation.
    #[error("limit reached: {limit:?}")]
    LimitReached {
        /// Which cap.
        limit: Limit,
    },
    /// The subject created sessions too fast; retry after the given delay.
    #[error("rate limited; retry after {retry_after:?}")]
    RateLimited {
        /// How long until a creation would be accepted.
        retry_after: Duration,
    },
    /// The slot expired, was released, or its session is no longer live: acquire a new one.
    #[error("slot lost")]
    SlotLost,
    /// Invalid caller input.
    #[error("invalid input: {0}")]
    InvalidInput(#[from] InputError),
    /// The record changed since the caller read it (`update_data`), or contention outlasted the
    /// retry bound. Re-read and retry.
    #[error("version conflict")]
    VersionConflict,
    /// The store holds bytes that are not a valid record (or an unknown format version).
    #[error("corrupt record: {0}")]
    CorruptRecord(String),
    /// The store failed or timed out. The operation's outcome may be unknown; no session was
    /// granted.
    #[error("store unavailable: {0}")]
    StoreUnavailable(StoreError),
    /// The OS random number generator failed.
    #[error(transparent)]
    Entropy(#[from] EntropyError),
}

impl Error {
    /// For [`RateLimited`](Error::RateLimited): the delay in whole seconds, rounded *up*, for
    /// an HTTP `Retry-After` header (`Duration::as_secs` rounds down, and a client that waits
    /// that long is refused again). `None` for every other error.
    pub fn retry_after_secs(&self) -> Option<u64> {
        match self {
            Error::RateLimited { retry_after } => Some(
                retry_after
                    .as_secs()
                    .saturating_add(u64::from(retry_after.subsec_nanos() > 0)),
            ),
            _ => None,
        }
    }

    /// True for every outcome meaning "the presented credential does not give a session" (as
    /// opposed to a limit, bad input or an infrastructure failure).
    pub fn is_unauthenticated(&self) -> bool {
        matches!(
            self,
            Error::Malformed(_)
                | Error::NotAuthenticated
                | Error::Expired
                | Error::Revoked { .. }
                | Error::ReuseDetected
                | Error::BindingMismatch
                | Error::AccessTokenExpired
                | Error::Refused
        )
    }
}

impl From<StoreError> for Error {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Corrupt(msg) => Error::CorruptRecord(msg),
            StoreError::Conflict => Error::VersionConflict,
            other => Error::StoreUnavailable(other),
        }
    }
}

impl From<CodecError> for Error {
    fn from(e: CodecError) -> Self {
        Error::CorruptRecord(e.to_string())
    }
}
