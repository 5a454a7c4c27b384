//! Key layouts and the small index values this adapter invents.
//!
//! Records (sessions, tickets, slots) are stored with [`leasehold::codec`]. Everything else —
//! index keys, group heads, the creation log, counters — is laid out here. Every value carries
//! a leading format byte, and every decoder treats its input as untrusted: wrong lengths,
//! unknown format bytes and impossible values are [`StoreError::Corrupt`], never a panic.

use leasehold::store::StoreError;
use leasehold::{ID_TEXT_LEN, SessionId, SlotId, Subject, TicketId, Timestamp};

/// Bytes of a session, ticket or slot id.
pub(crate) const ID_LEN: usize = ID_TEXT_LEN / 2;

/// Format byte leading every value this module encodes.
const VALUE_FORMAT: u8 = 1;

/// Separates a group name from a member id in index keys. Subjects and resources cannot contain
/// control characters, so the first `0x00` in an index key always ends the name.
const SEP: u8 = 0;

/// Largest creation log accepted when decoding (a log never holds more than the rate's `max`).
const MAX_RATE_LOG: usize = 1 << 20;

fn corrupt(what: &str) -> StoreError {
    StoreError::Corrupt(format!("sled adapter: {what}"))
}

/// A kind of entry in the expiry index. The byte values order entries due at the same
/// millisecond the way the reference store does (sessions, tickets, slots, creation logs).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Due {
    /// A session record (live, expired or tombstone).
    Session(SessionId),
    /// A ticket.
    Ticket(TicketId),
    /// A slot.
    Slot(SlotId),
    /// A subject's creation log (bookkeeping for the rate limit, not a record).
    Rate(Subject),
}

const DUE_SESSION: u8 = 1;
const DUE_TICKET: u8 = 2;
const DUE_SLOT: u8 = 3;
const DUE_RATE: u8 = 4;

/// Expiry index key: `deadline (u64 big-endian) ‖ kind byte ‖ id`, so keys sort by deadline and
/// a range scan from the start visits exactly what is due.
pub(crate) fn expiry_key(at: Timestamp, due: &Due) -> Vec<u8> {
    let mut k = Vec::with_capacity(8 + 1 + ID_LEN);
    k.extend_from_slice(&at.as_millis().to_be_bytes());
    match due {
        Due::Session(id) => {
            k.push(DUE_SESSION);
            k.extend_from_slice(id.as_bytes());
        }
        Due::Ticket(id) => {
            k.push(DUE_TICKET);
            k.extend_from_slice(id.as_bytes());
        }
        Due::Slot(id) => {
            k.push(DUE_SLOT);
            k.extend_from_slice(id.as_bytes());
        }
        Due::Rate(subject) => {
            k.push(DUE_RATE);
            k.extend_from_slice(subject.as_str().as_bytes());
        }
    }
    k
}

/// The exclusive upper bound of expiry keys due at or before `now`; `None` means "everything".
pub(crate) fn expiry_upper_bound(now: Timestamp) -> Option<[u8; 8]> {
    now.as_millis()
        .checked_add(1)
        .map(|next| next.to_be_bytes())
}

fn id_bytes(b: &[u8], what: &str) -> Result<[u8; ID_LEN], StoreError> {
    <[u8; ID_LEN]>::try_from(b).map_err(|_| corrupt(what))
}

/// Decodes an expiry index key.
pub(crate) fn decode_expiry_key(k: &[u8]) -> Result<(Timestamp, Due), StoreError> {
    if k.len() < 9 {
        return Err(corrupt("expiry key too short"));
    }
    let (at, rest) = k.split_at(8);
    let at = Timestamp::from_millis(u64::from_be_bytes(array8(at)?));
    let (kind, id) = rest.split_at(1);
    let due = match kind[0] {
        DUE_SESSION => Due::Session(SessionId::from_bytes(id_bytes(id, "expiry key id")?)),
        DUE_TICKET => Due::Ticket(TicketId::from_bytes(id_bytes(id, "expiry key id")?)),
        DUE_SLOT => Due::Slot(SlotId::from_bytes(id_bytes(id, "expiry key id")?)),
        DUE_RATE => {
            let s = std::str::from_utf8(id).map_err(|_| corrupt("expiry key subject"))?;
            Due::Rate(Subject::new(s).map_err(|_| corrupt("expiry key subject"))?)
        }
        _ => return Err(corrupt("unknown expiry key kind")),
    };
    Ok((at, due))
}

fn array8(b: &[u8]) -> Result<[u8; 8], StoreError> {
    <[u8; 8]>::try_from(b).map_err(|_| corrupt("expected 8 bytes"))
}

/// A group whose members are listed by an index: a subject's or a resource's sessions, a
/// session's or a resource's slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum GroupKind {
    /// Sessions of a subject (`by_subject`).
    Subject,
    /// Sessions tagged with a resource (`by_resource`).
    Resource,
    /// Slots held by a session (`slots_by_session`).
    SessionSlots,
    /// Slots counted against a resource (`slots_by_resource`).
    ResourceSlots,
}

impl GroupKind {
    fn byte(self) -> u8 {
        match self {
            GroupKind::Subject => b's',
            GroupKind::Resource => b'r',
            GroupKind::SessionSlots => b'l',
            GroupKind::ResourceSlots => b'm',
        }
    }
}

/// Key of a group's head in the `groups` tree: `kind byte ‖ name`.
pub(crate) fn group_key(kind: GroupKind, name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(kind.byte());
    k.extend_from_slice(name);
    k
}

/// Index key: `name ‖ 0x00 ‖ member id`. A prefix scan over [`member_prefix`] lists a group.
pub(crate) fn member_key(name: &[u8], member: &[u8; ID_LEN]) -> Vec<u8> {
    let mut k = member_prefix(name);
    k.extend_from_slice(member);
    k
}

/// The value of a session-group index entry whose session has ended (a tombstone). Entries
/// of live (or not yet ended) sessions have an empty value. Counting a cap then reads the
/// records of open members only: its cost follows the subject's live sessions, not its
/// tombstones (which stay indexed until reaped, so listings still find them).
pub(crate) const ENDED: &[u8] = &[1];

/// `name ‖ 0x00`: every member key of the group starts with it.
pub(crate) fn member_prefix(name: &[u8]) -> Vec<u8> {
    let mut k = Vec::with_capacity(name.len() + 1 + ID_LEN);
    k.extend_from_slice(name);
    k.push(SEP);
    k
}

/// The member id at the end of an index key found under `prefix`.
pub(crate) fn member_of(key: &[u8], prefix_len: usize) -> Result<[u8; ID_LEN], StoreError> {
    key.get(prefix_len..)
        .ok_or_else(|| corrupt("index key shorter than its prefix"))
        .and_then(|b| id_bytes(b, "index key member id"))
}

/// A group head: a stamp that changes whenever a member is *added* (drawn from a store-wide
/// sequence, so a deleted and recreated head never repeats an old stamp) and the member count
/// (the head is deleted when it reaches zero, so heads are reclaimed with their groups).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Head {
    pub stamp: u64,
    pub members: u64,
}

pub(crate) fn encode_head(h: Head) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(VALUE_FORMAT);
    v.extend_from_slice(&h.stamp.to_be_bytes());
    v.extend_from_slice(&h.members.to_be_bytes());
    v
}

pub(crate) fn decode_head(v: &[u8]) -> Result<Head, StoreError> {
    match v {
        [VALUE_FORMAT, rest @ ..] if rest.len() == 16 => {
            let (s, m) = rest.split_at(8);
            Ok(Head {
                stamp: u64::from_be_bytes(array8(s)?),
                members: u64::from_be_bytes(array8(m)?),
            })
        }
        [VALUE_FORMAT, ..] => Err(corrupt("group head has the wrong length")),
        [f, ..] => Err(corrupt(&format!("group head has unknown format {f}"))),
        [] => Err(corrupt("empty group head")),
    }
}

/// A counter value (`live`, `seq`): format byte ‖ u64 big-endian.
pub(crate) fn encode_counter(n: u64) -> Vec<u8> {
    let mut v = Vec::with_capacity(9);
    v.push(VALUE_FORMAT);
    v.extend_from_slice(&n.to_be_bytes());
    v
}

pub(crate) fn decode_counter(v: &[u8]) -> Result<u64, StoreError> {
    match v {
        [VALUE_FORMAT, rest @ ..] => Ok(u64::from_be_bytes(
            <[u8; 8]>::try_from(rest).map_err(|_| corrupt("counter has the wrong length"))?,
        )),
        [f, ..] => Err(corrupt(&format!("counter has unknown format {f}"))),
        [] => Err(corrupt("empty counter")),
    }
}

/// One creation in a subject's log: when, and (from format 2 on) which session, so
/// [`forget_creation`](leasehold::Store::forget_creation) can give back exactly that entry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Creation {
    pub at: Timestamp,
    /// `None` for entries written by format 1 (they still count, but cannot be given back).
    pub id: Option<SessionId>,
}

/// A subject's creation log for the rate limit: when its expiry entry is due (the newest
/// creation plus the window) and the creations still inside the window, oldest first.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct RateLog {
    pub due: Timestamp,
    pub creations: Vec<Creation>,
}

/// Creation logs written before they named their sessions: `due ‖ n (u32) ‖ n × time`.
const RATE_FORMAT_TIMES: u8 = 1;
/// Creation logs naming their sessions: `due ‖ n (u32) ‖ n × (time ‖ has-id byte ‖ id)`, the
/// id all zeros when the byte is 0 (an entry carried over from a format-1 log). Fixed-size
/// entries keep the length check exact.
const RATE_FORMAT_IDS: u8 = 2;
const RATE_ENTRY_LEN: usize = 8 + 1 + ID_LEN;

pub(crate) fn encode_rate(r: &RateLog) -> Vec<u8> {
    let mut v = Vec::with_capacity(1 + 8 + 4 + RATE_ENTRY_LEN * r.creations.len());
    v.push(RATE_FORMAT_IDS);
    v.extend_from_slice(&r.due.as_millis().to_be_bytes());
    let n = u32::try_from(r.creations.len()).unwrap_or(u32::MAX);
    v.extend_from_slice(&n.to_be_bytes());
    for c in r.creations.iter().take(n as usize) {
        v.extend_from_slice(&c.at.as_millis().to_be_bytes());
        match c.id {
            Some(id) => {
                v.push(1);
                v.extend_from_slice(id.as_bytes());
            }
            None => {
                v.push(0);
                v.extend_from_slice(&[0; ID_LEN]);
            }
        }
    }
    v
}

/// Decodes a creation log of either format (format-1 entries come back with no id).
pub(crate) fn decode_rate(v: &[u8]) -> Result<RateLog, StoreError> {
    let (format, rest) = match v {
        [f @ (RATE_FORMAT_TIMES | RATE_FORMAT_IDS), rest @ ..] => (*f, rest),
        [f, ..] => return Err(corrupt(&format!("creation log has unknown format {f}"))),
        [] => return Err(corrupt("empty creation log")),
    };
    if rest.len() < 12 {
        return Err(corrupt("creation log truncated"));
    }
    let (due, rest) = rest.split_at(8);
    let (n, rest) = rest.split_at(4);
    let n = u32::from_be_bytes(<[u8; 4]>::try_from(n).map_err(|_| corrupt("creation log"))?);
    let n = n as usize;
    let entry = if format == RATE_FORMAT_TIMES {
        8
    } else {
        RATE_ENTRY_LEN
    };
    if n > MAX_RATE_LOG || Some(rest.len()) != n.checked_mul(entry) {
        return Err(corrupt("creation log has the wrong length"));
    }
    let creations = rest
        .chunks_exact(entry)
        .map(|c| {
            let (at, tail) = c.split_at(8);
            let at = Timestamp::from_millis(u64::from_be_bytes(array8(at)?));
            let id = match tail {
                [] => None,
                [0, id @ ..] if id.iter().all(|b| *b == 0) => None,
                [1, id @ ..] => Some(SessionId::from_bytes(id_bytes(id, "creation log id")?)),
                _ => return Err(corrupt("creation log entry has a bad id marker")),
            };
            Ok(Creation { at, id })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(RateLog {
        due: Timestamp::from_millis(u64::from_be_bytes(array8(due)?)),
        creations,
    })
}

/// Key of the creation-order index (`created` tree): `created_at (u64 BE ms) ‖ sequence
/// (u64 BE) ‖ session id`. Keys sort in creation order: by creation time, then by the order the
/// store inserted the sessions (the sequence is drawn inside the inserting transaction, so it
/// follows commit order), never by the random id. The id is only there to name the session.
pub(crate) fn order_key(at: Timestamp, seq: u64, id: &SessionId) -> Vec<u8> {
    let mut k = Vec::with_capacity(16 + ID_LEN);
    k.extend_from_slice(&at.as_millis().to_be_bytes());
    k.extend_from_slice(&seq.to_be_bytes());
    k.extend_from_slice(id.as_bytes());
    k
}

/// The session named by a creation-order key.
pub(crate) fn decode_order_key(k: &[u8]) -> Result<SessionId, StoreError> {
    if k.len() != 16 + ID_LEN {
        return Err(corrupt("creation-order key has the wrong length"));
    }
    id_bytes(&k[16..], "creation-order key id").map(SessionId::from_bytes)
}

/// Where a session sits in the creation-order index (the `created_by_id` value), so its entry
/// can be found from its id and so a subject's members sort in the same order.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Order {
    pub created_at: Timestamp,
    pub seq: u64,
}

pub(crate) fn encode_order(o: Order) -> Vec<u8> {
    let mut v = Vec::with_capacity(17);
    v.push(VALUE_FORMAT);
    v.extend_from_slice(&o.created_at.as_millis().to_be_bytes());
    v.extend_from_slice(&o.seq.to_be_bytes());
    v
}

pub(crate) fn decode_order(v: &[u8]) -> Result<Order, StoreError> {
    match v {
        [VALUE_FORMAT, rest @ ..] if rest.len() == 16 => {
            let (a, s) = rest.split_at(8);
            Ok(Order {
                created_at: Timestamp::from_millis(u64::from_be_bytes(array8(a)?)),
                seq: u64::from_be_bytes(array8(s)?),
            })
        }
        [VALUE_FORMAT, ..] => Err(corrupt("creation order has the wrong length")),
        [f, ..] => Err(corrupt(&format!("creation order has unknown format {f}"))),
        [] => Err(corrupt("empty creation order")),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn expiry_keys_round_trip_and_sort_by_deadline() {
        let id = SessionId::from_bytes([7; ID_LEN]);
        let subject = Subject::new("alice").unwrap();
        for due in [
            Due::Session(id),
            Due::Ticket(TicketId::from_bytes([1; ID_LEN])),
            Due::Slot(SlotId::from_bytes([2; ID_LEN])),
            Due::Rate(subject),
        ] {
            let k = expiry_key(Timestamp::from_millis(42), &due);
            assert_eq!(
                decode_expiry_key(&k).unwrap(),
                (Timestamp::from_millis(42), due)
            );
        }
        let early = expiry_key(Timestamp::from_millis(255), &Due::Session(id));
        let late = expiry_key(Timestamp::from_millis(256), &Due::Session(id));
        assert!(early < late);
        let ticket = expiry_key(
            Timestamp::from_millis(255),
            &Due::Ticket(TicketId::from_bytes([0; ID_LEN])),
        );
        assert!(early < ticket, "sessions first at equal deadlines");
    }

    #[test]
    fn bad_expiry_keys_are_corrupt() {
        let good = expiry_key(
            Timestamp::from_millis(1),
            &Due::Session(SessionId::from_bytes([1; ID_LEN])),
        );
        for n in 0..good.len() {
            assert!(decode_expiry_key(&good[..n]).is_err());
        }
        let mut long = good.clone();
        long.push(0);
        assert!(decode_expiry_key(&long).is_err());
        let mut kind = good;
        kind[8] = 9;
        assert!(decode_expiry_key(&kind).is_err());
        let mut rate = expiry_key(
            Timestamp::from_millis(1),
            &Due::Rate(Subject::new("a").unwrap()),
        );
        rate.push(0x07); // a control character cannot be in a subject
        assert!(decode_expiry_key(&rate).is_err());
    }

    #[test]
    fn values_round_trip_and_truncations_are_corrupt() {
        let h = Head {
            stamp: 9,
            members: 3,
        };
        let b = encode_head(h);
        assert_eq!(decode_head(&b).unwrap(), h);
        for n in 0..b.len() {
            assert!(decode_head(&b[..n]).is_err());
        }
        let mut other = b.clone();
        other[0] = 2;
        assert!(decode_head(&other).is_err());

        let c = encode_counter(77);
        assert_eq!(decode_counter(&c).unwrap(), 77);
        for n in 0..c.len() {
            assert!(decode_counter(&c[..n]).is_err());
        }

        let r = RateLog {
            due: Timestamp::from_millis(5),
            creations: vec![
                Creation {
                    at: Timestamp::from_millis(1),
                    id: None,
                },
                Creation {
                    at: Timestamp::from_millis(2),
                    id: Some(SessionId::from_bytes([4; ID_LEN])),
                },
            ],
        };
        let b = encode_rate(&r);
        assert_eq!(decode_rate(&b).unwrap(), r);
        for n in 0..b.len() {
            assert!(decode_rate(&b[..n]).is_err());
        }
        let mut long = b;
        long.push(0);
        assert!(decode_rate(&long).is_err());
        // A huge count must not allocate or panic.
        let mut huge = vec![RATE_FORMAT_IDS];
        huge.extend_from_slice(&0u64.to_be_bytes());
        huge.extend_from_slice(&u32::MAX.to_be_bytes());
        assert!(decode_rate(&huge).is_err());
    }

    #[test]
    fn format_1_creation_logs_still_decode() {
        let mut v = vec![RATE_FORMAT_TIMES];
        v.extend_from_slice(&9u64.to_be_bytes());
        v.extend_from_slice(&2u32.to_be_bytes());
        v.extend_from_slice(&3u64.to_be_bytes());
        v.extend_from_slice(&4u64.to_be_bytes());
        let log = decode_rate(&v).unwrap();
        assert_eq!(log.due, Timestamp::from_millis(9));
        let times: Vec<_> = log
            .creations
            .iter()
            .map(|c| (c.at.as_millis(), c.id))
            .collect();
        assert_eq!(times, vec![(3, None), (4, None)]);
        // Re-encoded as format 2, the entries keep their (absent) ids.
        assert_eq!(decode_rate(&encode_rate(&log)).unwrap(), log);
        v.push(0);
        assert!(decode_rate(&v).is_err());
    }

    #[test]
    fn a_bad_id_marker_in_a_creation_log_is_corrupt() {
        let r = RateLog {
            due: Timestamp::from_millis(5),
            creations: vec![Creation {
                at: Timestamp::from_millis(1),
                id: None,
            }],
        };
        let mut b = encode_rate(&r);
        let marker = 1 + 8 + 4 + 8;
        b[marker] = 2;
        assert!(decode_rate(&b).is_err());
        b[marker] = 0;
        b[marker + 1] = 1; // "no id" with id bytes
        assert!(decode_rate(&b).is_err());
    }

    #[test]
    fn order_keys_sort_by_time_then_sequence_and_round_trip() {
        let hi = SessionId::from_bytes([0xff; ID_LEN]);
        let lo = SessionId::from_bytes([0; ID_LEN]);
        let a = order_key(Timestamp::from_millis(7), 1, &hi);
        let b = order_key(Timestamp::from_millis(7), 2, &lo);
        let c = order_key(Timestamp::from_millis(8), 0, &lo);
        assert!(a < b && b < c, "creation time, then sequence, never the id");
        assert_eq!(decode_order_key(&a).unwrap(), hi);
        assert!(decode_order_key(&a[..a.len() - 1]).is_err());
        let o = Order {
            created_at: Timestamp::from_millis(7),
            seq: 3,
        };
        let v = encode_order(o);
        assert_eq!(decode_order(&v).unwrap(), o);
        for n in 0..v.len() {
            assert!(decode_order(&v[..n]).is_err());
        }
    }

    #[test]
    fn long_names_make_valid_keys() {
        let long = "x".repeat(leasehold::MAX_NAME_LEN);
        let subject = Subject::new(long.clone()).unwrap();
        let k = expiry_key(Timestamp::from_millis(1), &Due::Rate(subject.clone()));
        assert_eq!(
            decode_expiry_key(&k).unwrap(),
            (Timestamp::from_millis(1), Due::Rate(subject))
        );
        let m = [5u8; ID_LEN];
        let k = member_key(long.as_bytes(), &m);
        let p = member_prefix(long.as_bytes());
        assert_eq!(member_of(&k, p.len()).unwrap(), m);
    }

    #[test]
    fn member_keys() {
        let m = [3u8; ID_LEN];
        let k = member_key(b"alice", &m);
        let p = member_prefix(b"alice");
        assert!(k.starts_with(&p));
        assert_eq!(member_of(&k, p.len()).unwrap(), m);
        assert!(member_of(&k[..k.len() - 1], p.len()).is_err());
        assert!(member_of(&p, p.len() + 1).is_err());
    }
}
