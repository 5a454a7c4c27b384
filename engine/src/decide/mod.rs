//! The pure engine: every decision is a function of (stored record or none, presented
//! credential, request context, `now`, policy), returning the write to attempt and the outcome.
//!
//! No I/O, no clock, no ambient randomness: fresh secrets come from the injected
//! [`Entropy`](crate::Entropy). The [driver](crate::Sessions) applies the write with
//! compare-and-swap and re-decides on conflict.
//!
//! Where is X decided?
//! - issuing a session: [`create`]
//! - validate / refresh, expiry, binding, touch: [`read`]
//! - rotation, grace window, orphan recovery, reuse: [`rotation`]
//! - revoke and data updates: [`mutate`]
//! - tickets: [`ticket`]; slots: [`slot`]; access tokens: [`access`]
//! - trusted by-id reads and keepalive: [`by_id`]; logout by token: [`mutate::logout`]

pub mod access;
pub mod by_id;
pub mod create;
pub mod mutate;
pub mod read;
pub mod rotation;
pub mod slot;
pub mod ticket;

use std::fmt;

use crate::error::Error;
use crate::event::Event;
use crate::ids::{Resource, SessionId, Subject};
use crate::record::{RevokeReason, SessionRecord, SessionState};
use crate::time::Timestamp;
use crate::token::SessionToken;

/// Longest context binding accepted, in bytes (it is hashed; the limit bounds work).
pub const MAX_BINDING_LEN: usize = 1024;

/// What a request says about where it comes from.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Context {
    /// A value the session is bound to (device id, user-agent hash, mTLS key id). A session
    /// created with a binding validates only with the same binding (policy `enforce_binding`).
    /// Stored only as a hash.
    pub binding: Option<String>,
}

impl Context {
    /// A context with no binding.
    pub fn none() -> Self {
        Context::default()
    }

    /// A context bound to `binding`.
    pub fn bound(binding: impl Into<String>) -> Self {
        Context {
            binding: Some(binding.into()),
        }
    }
}

impl fmt::Debug for Context {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Context")
            .field("binding", &self.binding.as_ref().map(|_| "<redacted>"))
            .finish()
    }
}

/// Options for a new session.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CreateOptions {
    /// Resource tag: `revoke_resource` revokes every session on it.
    pub resource: Option<Resource>,
    /// Context to bind the session to.
    pub context: Context,
    /// Short non-secret description for "your devices" lists (≤ 256 bytes).
    pub summary: Option<String>,
    /// Opaque application data (≤ policy `max_data_len`).
    pub data: Vec<u8>,
    /// A shorter absolute lifetime for this session than the policy's (a "remember me for an
    /// hour" login); `None` takes the policy's. Longer than the policy's is refused.
    pub absolute_lifetime: Option<std::time::Duration>,
}

/// A session as the application sees it: everything but secrets.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    /// Non-secret id: safe to log and show.
    pub id: SessionId,
    /// Owner.
    pub subject: Subject,
    /// Resource tag.
    pub resource: Option<Resource>,
    /// The kind (token prefix) it was issued under.
    pub kind: crate::ids::Kind,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last recorded activity (updated at touch granularity).
    pub last_seen: Timestamp,
    /// When it expires unless used again.
    pub expires_at: Timestamp,
    /// When it expires whatever happens.
    pub absolute_deadline: Timestamp,
    /// Number of rotations so far.
    pub generation: u64,
    /// When its current access token stops being accepted (policy `access_ttl`), if it has one.
    pub access_expires_at: Option<Timestamp>,
    /// Context summary given at creation.
    pub summary: Option<String>,
    /// Opaque application data.
    pub data: Vec<u8>,
    /// Version of `data`, for [`update_data`](crate::Sessions::update_data).
    pub data_version: u64,
}

impl From<SessionRecord> for Session {
    /// Moves the fields out: no copy of a record the caller no longer needs.
    fn from(r: SessionRecord) -> Self {
        Session {
            access_expires_at: r.credential.access.as_ref().map(|a| a.expires_at),
            generation: r.credential.generation,
            id: r.id,
            subject: r.subject,
            resource: r.resource,
            kind: r.kind,
            created_at: r.created_at,
            last_seen: r.last_seen,
            expires_at: r.expires_at,
            absolute_deadline: r.absolute_deadline,
            summary: r.context_summary,
            data: r.data,
            data_version: r.data_version,
        }
    }
}

impl From<&SessionRecord> for Session {
    fn from(r: &SessionRecord) -> Self {
        Session {
            id: r.id,
            subject: r.subject.clone(),
            resource: r.resource.clone(),
            kind: r.kind.clone(),
            created_at: r.created_at,
            last_seen: r.last_seen,
            expires_at: r.expires_at,
            absolute_deadline: r.absolute_deadline,
            generation: r.credential.generation,
            access_expires_at: r.credential.access.as_ref().map(|a| a.expires_at),
            summary: r.context_summary.clone(),
            data: r.data.clone(),
            data_version: r.data_version,
        }
    }
}

/// A granted read. The session granted is the decision's [`write`](Decision::write) when it
/// writes (once that commits), else the record it decided on, unchanged — so the hot path (a
/// validate with nothing due) copies no record. When the client must switch tokens (rotation,
/// or a predecessor answered with its successor), `token` is the one to hand back.
#[derive(Debug)]
pub struct Grant {
    /// The token the client must use from now on, if it changed.
    pub token: Option<SessionToken>,
}

/// One engine decision: an optional compare-and-swap write and the outcome if it commits.
#[derive(Debug)]
pub struct Decision<T> {
    /// Replace the loaded record with this one, expecting the loaded version. `None`: no write.
    pub write: Option<SessionRecord>,
    /// The answer to give once `write` (if any) has committed.
    pub outcome: Result<T, Error>,
    /// Events to emit once `write` (if any) has committed.
    pub events: Vec<Event>,
}

impl<T> Decision<T> {
    pub(crate) fn deny(error: Error) -> Self {
        Decision {
            write: None,
            outcome: Err(error),
            events: Vec::new(),
        }
    }
}

/// The denial for a session that has ended, by cause: an `Expired` tombstone is reported as
/// [`Error::Expired`], any other as [`Error::Revoked`].
pub fn ended_error(reason: RevokeReason) -> Error {
    match reason {
        RevokeReason::Expired => Error::Expired,
        reason => Error::Revoked { reason },
    }
}

/// If the session is not live at `at`, the decision that says so — and, for a session past its
/// deadline that is not a tombstone yet, the write that makes that ending durable *before*
/// anyone is told (INV-store-time): its tombstone with reason `Expired`. A write decided
/// earlier (a slower request, a lagging clock) then fails its compare-and-swap, and if this
/// write loses to a touch that landed first the driver re-decides: it was never expired.
/// `None` if the session is live.
pub fn ending<T>(record: Option<&SessionRecord>, at: Timestamp) -> Option<Decision<T>> {
    let Some(rec) = record else {
        return Some(Decision::deny(Error::NotAuthenticated));
    };
    match rec.state {
        SessionState::Revoked { reason, .. } => Some(Decision::deny(ended_error(reason))),
        // Planted bug for the loom twin tests (the rule before INV-store-time): tell the caller
        // `Expired` without writing the ending down.
        #[cfg(leasehold_planted_bug)]
        SessionState::Active if rec.is_due(at) => Some(Decision::deny(Error::Expired)),
        SessionState::Active if rec.is_due(at) => Some(Decision {
            write: Some(rec.tombstone(at, RevokeReason::Expired)),
            outcome: Err(Error::Expired),
            events: vec![Event::ExpiredOnRead { id: rec.id }],
        }),
        SessionState::Active => None,
    }
}

/// The write a record gets on any change: next version.
pub(crate) fn bump(mut r: SessionRecord) -> SessionRecord {
    r.version = r.version.wrapping_add(1);
    r
}
