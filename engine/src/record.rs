//! What a store persists. Plain data: the engine decides every change, stores only keep it.
//!
//! Fields a store must touch *without* the engine (group revocation, eviction, native expiry,
//! reaping) are top-level — `state`, `version`, `expires_at`, `subject`, `resource`,
//! `created_at` — so an adapter can keep them as columns or hash fields next to the encoded
//! blob. The helpers here ([`SessionRecord::is_live`], [`SessionRecord::tombstone`]) are the only
//! "logic" a store needs, so no adapter re-implements policy.

use crate::crypto::{BindingHash, Sealed, Verifier};
use crate::ids::{Kind, Resource, SessionId, SlotId, Subject, TicketId};
use crate::time::Timestamp;

/// How long a tombstone is kept at most after its revocation, before the reaper may remove
/// it (sooner if the record's own deadline comes first). It only has to outlive retries of
/// writes decided before the revocation (a compare-and-swap can never recreate a removed
/// record, only a replayed insert could); a week is far past any retry.
pub const TOMBSTONE_RETENTION: std::time::Duration = std::time::Duration::from_secs(7 * 24 * 3600);

/// Why a session was revoked (recorded on its tombstone, reported in errors and events).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum RevokeReason {
    /// Revoked by id (logout, "sign out that device").
    Revoked,
    /// All sessions of its subject were revoked.
    Subject,
    /// All sessions on its resource were revoked.
    Resource,
    /// A rotated-out token was presented: the session is presumed stolen.
    ReuseDetected,
    /// Evicted as the subject's oldest session to make room under the cap.
    Evicted,
    /// Found past its deadline: the first caller that observed the ending wrote it down, so no
    /// write decided earlier (a slower request, a lagging clock) can move the deadline again.
    Expired,
}

impl RevokeReason {
    /// Stable one-byte code used by encodings.
    pub fn code(self) -> u8 {
        match self {
            RevokeReason::Revoked => 1,
            RevokeReason::Subject => 2,
            RevokeReason::Resource => 3,
            RevokeReason::ReuseDetected => 4,
            RevokeReason::Evicted => 5,
            RevokeReason::Expired => 6,
        }
    }

    /// Inverse of [`code`](Self::code).
    pub fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => RevokeReason::Revoked,
            2 => RevokeReason::Subject,
            3 => RevokeReason::Resource,
            4 => RevokeReason::ReuseDetected,
            5 => RevokeReason::Evicted,
            6 => RevokeReason::Expired,
            _ => return None,
        })
    }
}

/// Lifecycle state. Expiry is not a state: it is `now ≥ expires_at`, decided at each read.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SessionState {
    /// Usable until `expires_at`.
    Active,
    /// A tombstone: kept until `expires_at` so no stale write can recreate it, then reaped.
    Revoked {
        /// When it was revoked.
        at: Timestamp,
        /// Why.
        reason: RevokeReason,
    },
}

/// The predecessor of the current secret, kept for idempotent rotation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Predecessor {
    /// Verifier of the predecessor secret.
    pub verifier: Verifier,
    /// The current secret, sealed under a key derived from the predecessor secret. Dropped
    /// (`None`) by the first write after the grace and orphan windows have closed: from then on
    /// nothing may unseal it, so a store dump plus an old token cannot open the current one.
    pub sealed_successor: Option<Sealed>,
    /// Whether the current secret has been presented since the rotation; until it has, the
    /// predecessor stays accepted for the orphan window (the rotation's reply may be lost).
    pub successor_seen: bool,
}

/// The session's credential chain.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credential {
    /// Rotations so far (0 for a new session).
    pub generation: u64,
    /// Verifier of the current secret.
    pub current: Verifier,
    /// When the current secret was issued.
    pub rotated_at: Timestamp,
    /// The immediate predecessor, if the session was ever rotated.
    pub previous: Option<Predecessor>,
    /// Older verifiers, newest last, bounded by `reuse_history`: presenting one is reuse.
    pub retired: Vec<Verifier>,
    /// The current access token, if the policy issues them: a short-lived multi-use credential
    /// derived from the current secret, replaced by every rotation, ended with the session.
    pub access: Option<AccessGrant>,
}

/// A session's current access token, as stored: its verifier and when it stops being
/// accepted. Its secret is derived from the session secret it was issued with, so an
/// idempotent re-issue of a rotation re-derives the very same access token.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AccessGrant {
    /// Verifier of the access secret.
    pub verifier: Verifier,
    /// Accepted strictly before this (never past the session's own deadline).
    pub expires_at: Timestamp,
}

/// A stored session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionRecord {
    /// Non-secret id (the token selector).
    pub id: SessionId,
    /// Owner.
    pub subject: Subject,
    /// Optional resource tag.
    pub resource: Option<Resource>,
    /// The kind (token prefix) it was issued under: only a driver of that kind accepts it.
    pub kind: Kind,
    /// Incremented by every write; compare-and-swap compares it.
    pub version: u64,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last *written* touch.
    pub last_seen: Timestamp,
    /// `created_at + absolute_lifetime`: nothing moves a session past it.
    pub absolute_deadline: Timestamp,
    /// `min(last_seen + idle_timeout, absolute_deadline)`: the session (or its tombstone)
    /// expires here. Stores use it for native expiry and reaping.
    pub expires_at: Timestamp,
    /// Active or revoked.
    pub state: SessionState,
    /// Secrets, as verifiers.
    pub credential: Credential,
    /// Hash of the context binding given at creation.
    pub binding: Option<BindingHash>,
    /// A short, non-secret description for "your devices" lists (e.g. "Firefox on Linux").
    pub context_summary: Option<String>,
    /// Small opaque application data.
    pub data: Vec<u8>,
    /// Incremented by every `update_data`; the caller's expected version is checked against it.
    pub data_version: u64,
}

impl SessionRecord {
    /// Active and not yet expired at `now`: what caps count and what may be written to.
    pub fn is_live(&self, now: Timestamp) -> bool {
        self.state == SessionState::Active && !self.is_due(now)
    }

    /// Whether the session has reached its deadline at `now`: the earlier of `expires_at` and
    /// `absolute_deadline` (a record claiming more than its absolute bound gets no more).
    pub fn is_due(&self, now: Timestamp) -> bool {
        now >= self.expires_at.min(self.absolute_deadline)
    }

    /// Whether this record is a tombstone (revoked, evicted, or ended on expiry).
    pub fn is_tombstone(&self) -> bool {
        matches!(self.state, SessionState::Revoked { .. })
    }

    /// The tombstone written by every revocation (by id, group, eviction, reuse, observed
    /// expiry): next version (so in-flight compare-and-swaps fail), and kept until the record's
    /// deadline or [`TOMBSTONE_RETENTION`] after the revocation, whichever is earlier — long
    /// past any retried write, and reclaimed even for a session with no absolute lifetime.
    /// A tombstone may be written over an expired record; nothing but the reaper ever replaces
    /// a tombstone.
    pub fn tombstone(&self, at: Timestamp, reason: RevokeReason) -> SessionRecord {
        SessionRecord {
            state: SessionState::Revoked { at, reason },
            version: self.version.wrapping_add(1),
            expires_at: self.expires_at.min(at.saturating_add(TOMBSTONE_RETENTION)),
            ..self.clone()
        }
    }
}

/// A stored one-shot ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TicketRecord {
    /// Ticket id (selector).
    pub id: TicketId,
    /// The session it was minted for.
    pub session: SessionId,
    /// Verifier of the ticket secret.
    pub verifier: Verifier,
    /// Mint time.
    pub created_at: Timestamp,
    /// Redeemable strictly before this.
    pub expires_at: Timestamp,
}

/// A stored slot lease.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SlotRecord {
    /// Slot id.
    pub id: SlotId,
    /// The session holding it.
    pub session: SessionId,
    /// The resource it counts against, if any.
    pub resource: Option<Resource>,
    /// When it was acquired.
    pub acquired_at: Timestamp,
    /// It self-expires here unless heartbeated.
    pub expires_at: Timestamp,
}

impl SlotRecord {
    /// Not yet expired at `now`.
    pub fn is_live(&self, now: Timestamp) -> bool {
        now < self.expires_at
    }
}
