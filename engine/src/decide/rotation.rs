//! Rotation: replacing the secret, and what a rotated-out token is worth (DESIGN §8).
//!
//! - The current secret may be rotated: a fresh successor becomes current, the old current
//!   becomes the predecessor with the successor sealed under it, and the old predecessor joins
//!   the retired verifiers.
//! - The immediate predecessor is answered with the *same* successor while the grace window is
//!   open, or while the successor has never been presented (its reply was lost) within the
//!   orphan window. Otherwise it is reuse.
//! - Any older (retired) token is reuse. Reuse revokes the session (if detection is on).

use crate::crypto::{Secret, SecretKind, Verifier, seal, unseal};
use crate::entropy::Entropy;
use crate::entropy::EntropyError;
use crate::error::Error;
use crate::ids::SessionId;
use crate::policy::Policy;
use crate::record::{Credential, Predecessor, SessionRecord};
use crate::time::Timestamp;
use crate::token::SessionToken;

/// Which of a session's secrets a presented secret is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Presented {
    /// The current secret.
    Current,
    /// The immediate predecessor.
    Predecessor,
    /// An older, retired secret.
    Retired,
    /// None of them (a guess, or another session's secret).
    Unknown,
}

/// Classifies `v` against every verifier of the chain, in constant time per comparison and
/// without early exit, so timing does not reveal which one matched.
pub fn classify(c: &Credential, v: &Verifier) -> Presented {
    let current = c.current.ct_eq(v);
    let previous = c.previous.as_ref().is_some_and(|p| p.verifier.ct_eq(v));
    let retired = c.retired.iter().fold(false, |acc, r| r.ct_eq(v) | acc);
    match (current, previous, retired) {
        (true, _, _) => Presented::Current,
        (_, true, _) => Presented::Predecessor,
        (_, _, true) => Presented::Retired,
        _ => Presented::Unknown,
    }
}

/// Rotates `record` (already known to have been presented with `current`) at `now`.
/// Returns the new credential and the successor token. The caller bumps the version.
pub fn rotate(
    record: &SessionRecord,
    current: &Secret,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Result<(Credential, SessionToken), EntropyError> {
    let id = record.id;
    let successor = Secret::generate(entropy)?;
    let c = &record.credential;
    let generation = c.generation.wrapping_add(1);
    let mut retired = c.retired.clone();
    retired.extend(c.previous.as_ref().map(|p| p.verifier));
    let excess = retired.len().saturating_sub(policy.reuse_history);
    retired.drain(..excess);
    let credential = Credential {
        generation,
        current: Verifier::derive(SecretKind::Session, id.as_bytes(), &successor),
        rotated_at: now,
        previous: Some(Predecessor {
            verifier: c.current,
            sealed_successor: Some(seal(generation, current, &successor)),
            successor_seen: false,
        }),
        retired,
        access: crate::decide::access::grant(
            &id,
            generation,
            &successor,
            now,
            record.absolute_deadline,
            policy,
        ),
    };
    Ok((
        credential,
        SessionToken::new(&policy.token_prefix, id, &successor),
    ))
}

/// What presenting the immediate predecessor at `now` yields.
#[derive(Debug)]
pub enum PredecessorVerdict {
    /// Accepted: answer with the existing successor. `orphan` is true when only the orphan
    /// rule (successor never presented) accepted it.
    Reissue {
        /// The current token, unsealed from the predecessor.
        token: SessionToken,
        /// Accepted by the orphan rule rather than the grace window.
        orphan: bool,
    },
    /// Outside every window: reuse.
    Reuse,
}

/// Whether the grace window and the orphan window are open at `now`.
fn windows(c: &Credential, p: &Predecessor, now: Timestamp, policy: &Policy) -> (bool, bool) {
    let age = now.since(c.rotated_at);
    let in_grace = age < policy.grace_window;
    let orphan = !p.successor_seen && age < policy.orphan_window;
    (in_grace, orphan)
}

/// Drops the sealed successor once no predecessor window can use it any more (both closed at
/// `now`): a write that happens anyway (a touch, a renewal) then stops keeping the current
/// secret recoverable from an old token. Returns whether anything changed.
pub fn drop_sealed_if_closed(c: &mut Credential, now: Timestamp, policy: &Policy) -> bool {
    let Some(p) = c.previous.as_ref() else {
        return false;
    };
    let (in_grace, orphan) = windows(c, p, now, policy);
    match c.previous.as_mut() {
        Some(p) if !(in_grace || orphan) && p.sealed_successor.is_some() => {
            p.sealed_successor = None;
            true
        }
        _ => false,
    }
}

/// Applies the predecessor rules of DESIGN §8 (grace window, orphan window).
pub fn predecessor(
    record: &SessionRecord,
    presented: &Secret,
    now: Timestamp,
    policy: &Policy,
) -> Result<PredecessorVerdict, Error> {
    let c = &record.credential;
    let Some(p) = &c.previous else {
        return Ok(PredecessorVerdict::Reuse);
    };
    let (in_grace, orphan) = windows(c, p, now, policy);
    // A dropped sealed successor means the windows closed by the clock of an earlier write.
    let Some(sealed) = p.sealed_successor.as_ref().filter(|_| in_grace || orphan) else {
        return Ok(PredecessorVerdict::Reuse);
    };
    let id: SessionId = record.id;
    let successor = unseal(c.generation, presented, sealed);
    let check = Verifier::derive(SecretKind::Session, id.as_bytes(), &successor);
    if !check.ct_eq(&c.current) {
        // The sealed successor does not open to the current secret: the record is damaged.
        return Err(Error::CorruptRecord(
            "sealed successor does not match".into(),
        ));
    }
    Ok(PredecessorVerdict::Reissue {
        token: SessionToken::new(&policy.token_prefix, id, &successor),
        orphan: !in_grace,
    })
}
