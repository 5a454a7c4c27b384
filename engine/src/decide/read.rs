//! Validate and refresh: the hot path. One load, and a write only when something is due.
//!
//! Order of checks, each a denial without a write unless stated:
//! 1. no record, a session of another kind (a prefix swapped on a token), or a secret that is
//!    none of the chain's → `NotAuthenticated` (a non-secret id alone learns nothing, and
//!    cannot revoke anything);
//! 2. a tombstone → `Revoked` (or `Expired` for an ending observed on expiry);
//! 3. past its deadline → `Expired`, *after* writing its tombstone (see [`ending`]); likewise a
//!    record last written more than `future_tolerance` ahead of `now` (a clock glitch wrote it);
//! 4. by which secret was presented: current → grant (with touch / renewal / rotation writes as
//!    due), predecessor → rotation rules, retired → reuse (writes a tombstone). A binding
//!    mismatch refuses a grant (`BindingMismatch`) but never hides reuse: a rotated-out secret
//!    presented from another device still revokes the session.

use crate::crypto::{BindingHash, SecretKind, Verifier};
use crate::decide::create::expiry;
use crate::decide::rotation::{self, PredecessorVerdict, Presented};
use crate::decide::{Context, Decision, Grant, bump, ending};
use crate::entropy::Entropy;
use crate::error::Error;
use crate::event::Event;
use crate::policy::Policy;
use crate::record::{RevokeReason, SessionRecord};
use crate::time::Timestamp;
use crate::token::Presented as PresentedToken;

/// Validate (renew only when the renewal interval is due) or refresh (rotate now).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReadMode {
    /// Validate: touch and renew lazily.
    Validate,
    /// Refresh: rotate the secret now (idempotent within the grace window).
    Refresh,
}

/// Decides a validate or refresh of `token` against `record` at `now`.
pub fn read(
    record: Option<&SessionRecord>,
    token: &PresentedToken,
    ctx: &Context,
    mode: ReadMode,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Decision<Grant> {
    let Some(rec) = record else {
        return Decision::deny(Error::NotAuthenticated);
    };
    if rec.id.as_bytes() != &token.id {
        return Decision::deny(Error::CorruptRecord(
            "record stored under another id".into(),
        ));
    }
    // Another kind's session (a prefix swapped on a token): not this driver's to judge.
    if rec.kind.as_str() != policy.token_prefix {
        return Decision::deny(Error::NotAuthenticated);
    }
    let v = Verifier::derive(SecretKind::Session, &token.id, &token.secret);
    let presented = rotation::classify(&rec.credential, &v);
    if presented == Presented::Unknown {
        return Decision::deny(Error::NotAuthenticated);
    }
    if rec.expires_at > rec.absolute_deadline {
        return Decision::deny(Error::CorruptRecord(
            "idle deadline past the absolute deadline".into(),
        ));
    }
    if let Some(d) = ending(Some(rec), now) {
        return d;
    }
    // Last written by a clock far ahead of this one (a glitch): fail closed, for good.
    if rec.last_seen > now.saturating_add(policy.future_tolerance) {
        return Decision {
            write: Some(rec.tombstone(now, RevokeReason::Expired)),
            outcome: Err(Error::Expired),
            events: vec![Event::ExpiredOnRead { id: rec.id }],
        };
    }
    // Binding gates grants only: a rotated-out secret is a theft signal from any device.
    let bound = !policy.enforce_binding || binding_matches(rec, ctx);
    match presented {
        Presented::Current if !bound => Decision::deny(Error::BindingMismatch),
        Presented::Current => current(rec, token, mode, now, policy, entropy),
        Presented::Predecessor => match rotation::predecessor(rec, &token.secret, now, policy) {
            Ok(PredecessorVerdict::Reissue { .. }) if !bound => {
                Decision::deny(Error::BindingMismatch)
            }
            Ok(PredecessorVerdict::Reissue { token, orphan }) => Decision {
                write: touched(rec, now, policy),
                outcome: Ok(Grant { token: Some(token) }),
                events: vec![Event::SuccessorReissued { id: rec.id, orphan }],
            },
            Ok(PredecessorVerdict::Reuse) => reuse(rec, now, policy),
            Err(e) => Decision::deny(e),
        },
        Presented::Retired | Presented::Unknown => reuse(rec, now, policy),
    }
}

fn binding_matches(rec: &SessionRecord, ctx: &Context) -> bool {
    match (&rec.binding, &ctx.binding) {
        (None, _) => true,
        (Some(_), None) => false,
        (Some(stored), Some(given)) => stored.ct_eq(&BindingHash::derive(rec.id.as_bytes(), given)),
    }
}

/// Whether the idle deadline is due to be written at `now`: it moved by at least the touch
/// granularity (and at all: rewriting the same instant only adds contention).
pub fn touch_due(rec: &SessionRecord, now: Timestamp, policy: &Policy) -> bool {
    now > rec.last_seen && now.since(rec.last_seen) >= policy.effective_touch_granularity()
}

/// Whether automatic renewal is due at `now`.
pub fn renewal_due(rec: &SessionRecord, now: Timestamp, policy: &Policy) -> bool {
    policy
        .renewal_interval
        .is_some_and(|r| now.since(rec.credential.rotated_at) >= r)
}

/// Moves `last_seen` to `now` and recomputes the expiry (never past the absolute deadline).
pub fn touch(rec: &mut SessionRecord, now: Timestamp, policy: &Policy) {
    rec.last_seen = now;
    rec.expires_at = expiry(now, rec.absolute_deadline, policy);
}

/// The write of a lazy touch, if one is due.
fn touched(rec: &SessionRecord, now: Timestamp, policy: &Policy) -> Option<SessionRecord> {
    touch_due(rec, now, policy).then(|| {
        let mut next = rec.clone();
        touch(&mut next, now, policy);
        bump(next)
    })
}

fn current(
    rec: &SessionRecord,
    token: &PresentedToken,
    mode: ReadMode,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Decision<Grant> {
    // The successor has now been presented: close the orphan window.
    let close_orphan = rec
        .credential
        .previous
        .as_ref()
        .is_some_and(|p| !p.successor_seen);
    let rotate = mode == ReadMode::Refresh || renewal_due(rec, now, policy);
    // Nothing due: the hot path grants the record as it is, without copying it.
    if !close_orphan && !rotate && !touch_due(rec, now, policy) {
        return Decision {
            write: None,
            outcome: Ok(Grant { token: None }),
            events: Vec::new(),
        };
    }
    let mut next = rec.clone();
    if let Some(p) = next.credential.previous.as_mut() {
        p.successor_seen = true;
    }
    let (new_token, events) = if rotate {
        match rotation::rotate(&mut next, &token.secret, now, policy, entropy) {
            Ok(t) => (
                Some(t),
                vec![Event::Rotated {
                    id: rec.id,
                    generation: next.credential.generation,
                }],
            ),
            Err(e) => return Decision::deny(e.into()),
        }
    } else {
        (None, Vec::new())
    };
    // Any write also records the touch.
    touch(&mut next, now, policy);
    rotation::drop_sealed_if_closed(&mut next.credential, now, policy);
    Decision {
        write: Some(bump(next)),
        outcome: Ok(Grant { token: new_token }),
        events,
    }
}

fn reuse(rec: &SessionRecord, now: Timestamp, policy: &Policy) -> Decision<Grant> {
    if !policy.reuse_detection {
        return Decision::deny(Error::NotAuthenticated);
    }
    Decision {
        write: Some(rec.tombstone(now, RevokeReason::ReuseDetected)),
        outcome: Err(Error::ReuseDetected),
        events: vec![
            Event::ReuseDetected { id: rec.id },
            Event::Revoked {
                id: rec.id,
                reason: RevokeReason::ReuseDetected,
            },
        ],
    }
}
