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

/// Rotates `record` in place (it was presented with its current secret `current`) at `now`:
/// a fresh successor becomes current, the old current becomes the predecessor with the
/// successor sealed under it, and the old predecessor joins the retired verifiers (the oldest
/// beyond `reuse_history` are forgotten). Returns the successor token. The caller bumps the
/// version. On error (no entropy) the record is unchanged.
pub fn rotate(
    record: &mut SessionRecord,
    current: &Secret,
    now: Timestamp,
    policy: &Policy,
    entropy: &dyn Entropy,
) -> Result<SessionToken, EntropyError> {
    let successor = Secret::generate(entropy)?;
    let id = record.id;
    let absolute_deadline = record.absolute_deadline;
    let c = &mut record.credential;
    let generation = c.generation.wrapping_add(1);
    if let Some(p) = c.previous.take() {
        // Room first, then the push: a list already at its bound never grows its buffer.
        let excess = (c.retired.len() + 1).saturating_sub(policy.reuse_history);
        c.retired.drain(..excess.min(c.retired.len()));
        if c.retired.len() < policy.reuse_history {
            c.retired.push(p.verifier);
        }
    } else {
        let excess = c.retired.len().saturating_sub(policy.reuse_history);
        c.retired.drain(..excess);
    }
    c.previous = Some(Predecessor {
        verifier: c.current,
        sealed_successor: Some(seal(generation, current, &successor)),
        successor_seen: false,
    });
    c.current = Verifier::derive(SecretKind::Session, id.as_bytes(), &successor);
    c.generation = generation;
    c.rotated_at = now;
    c.access =
        crate::decide::access::grant(&id, generation, &successor, now, absolute_deadline, policy);
    Ok(SessionToken::new(&policy.token_prefix, id, &successor))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decide::CreateOptions;
    use crate::decide::create::new_session;
    use crate::entropy::SeededEntropy;
    use crate::ids::Subject;
    use crate::token::parse;

    #[test]
    fn rotation_retires_the_predecessor_and_keeps_the_newest_reuse_history() {
        let at = Timestamp::from_millis;
        for history in [0, 1, 2, 8] {
            let policy = Policy::builder().reuse_history(history).build().unwrap();
            let e = SeededEntropy::new(5);
            let subject = Subject::new("alice").unwrap();
            let (mut rec, token) =
                new_session(&subject, &CreateOptions::default(), at(0), &policy, &e).unwrap();
            let mut secret = parse(token.expose_secret().as_bytes(), "lh1")
                .unwrap()
                .secret;
            // Every current verifier, oldest first.
            let mut chain = vec![rec.credential.current];
            for round in 1..=12u64 {
                let cap = rec.credential.retired.capacity();
                let full = rec.credential.retired.len() == history;
                let next = rotate(&mut rec, &secret, at(round), &policy, &e).unwrap();
                let next = parse(next.expose_secret().as_bytes(), "lh1")
                    .unwrap()
                    .secret;
                let c = &rec.credential;
                chain.push(c.current);
                assert_eq!((c.generation, c.rotated_at), (round, at(round)));
                assert!(c.current.ct_eq(&Verifier::derive(
                    SecretKind::Session,
                    rec.id.as_bytes(),
                    &next
                )));
                let n = chain.len();
                let p = c.previous.as_ref().unwrap();
                assert_eq!(p.verifier, chain[n - 2]);
                assert!(!p.successor_seen);
                let sealed = p.sealed_successor.as_ref().unwrap();
                assert_eq!(unseal(round, &secret, sealed).expose(), next.expose());
                let older = &chain[..n - 2];
                assert_eq!(c.retired, older[older.len().saturating_sub(history)..]);
                if full {
                    assert_eq!(c.retired.capacity(), cap, "a full list does not grow");
                }
                secret = next;
            }
        }
    }
}
