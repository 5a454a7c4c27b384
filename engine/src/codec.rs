//! The binary record encoding: a leading format version and kind, then fixed-order fields.
//!
//! Decoding treats its input as untrusted: every length is checked against what remains and
//! against a hard limit, unknown versions and kinds are refused (never guessed), trailing bytes
//! are an error, and nothing panics.
//!
//! # Format 3 (written by this build): a fixed-offset session header
//!
//! A session starts with the fields a store must read or write *without* this codec (a Lua
//! script, a SQL function), at fixed offsets, little-endian ([`layout`]):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version (3; 2 has the same header) |
//! | 1 | 1 | kind (`S`) |
//! | 2 | 1 | state: 0 active, 1 tombstone |
//! | 3 | 1 | revoke reason code (0 when active) |
//! | 4 | 8 | revoked_at, ms (0 when active) |
//! | 12 | 8 | version |
//! | 20 | 8 | expires_at, ms |
//! | 28 | 8 | absolute_deadline, ms — *identity starts here* |
//! | 36 | 8 | created_at, ms |
//! | 44 | 18 | id |
//! | 62 | 4 + n | subject (u32 length, bytes) |
//! | … | 1 (+ 4 + n) | resource (flag, length, bytes) |
//! | … | 4 + n | kind (u32 length, bytes; format 3 only) — *identity ends here* |
//!
//! then `last_seen`, the credential, binding, summary, data, data version and (format 3) the
//! access grant. So a store can tombstone a record in place (write bytes 2..28: state, reason,
//! revoked_at, version + 1, and `expires_at` lowered to at most `revoked_at` +
//! [`TOMBSTONE_RETENTION`](crate::record::TOMBSTONE_RETENTION)) and check that a
//! compare-and-swap keeps the identity by comparing one byte range ([`identity_range`]).
//! Format 1 and 2 records still decode (kind [`Kind::legacy`], no access grant).

use crate::crypto::{BindingHash, Sealed, Verifier};
use crate::ids::{ID_BYTES, Kind, MAX_NAME_LEN, Resource, SessionId, SlotId, Subject, TicketId};
use crate::policy::{MAX_DATA_LEN, MAX_REUSE_HISTORY};
use crate::record::{
    AccessGrant, Credential, Predecessor, RevokeReason, SessionRecord, SessionState, SlotRecord,
    TicketRecord,
};
use crate::time::Timestamp;
use crate::token::MAX_PREFIX_LEN;

/// The format version written by this build. Decoders also read formats 1 and 2 (their
/// records get [`Kind::legacy`] and no access token); they refuse any other.
pub const FORMAT_VERSION: u8 = 3;

/// Fixed offsets of the format-2 session header (see the module docs).
pub mod layout {
    /// Format version byte.
    pub const FORMAT: usize = 0;
    /// Kind byte (`S`).
    pub const KIND: usize = 1;
    /// State byte: 0 active, 1 tombstone.
    pub const STATE: usize = 2;
    /// Revoke reason code (0 when active).
    pub const REASON: usize = 3;
    /// `revoked_at`, u64 LE ms.
    pub const REVOKED_AT: usize = 4;
    /// `version`, u64 LE.
    pub const VERSION: usize = 12;
    /// `expires_at`, u64 LE ms.
    pub const EXPIRES_AT: usize = 20;
    /// `absolute_deadline`, u64 LE ms: the first identity byte.
    pub const ABSOLUTE_DEADLINE: usize = 28;
    /// `created_at`, u64 LE ms.
    pub const CREATED_AT: usize = 36;
    /// The session id (18 bytes).
    pub const ID: usize = 44;
    /// The subject's u32 LE length, then its bytes.
    pub const SUBJECT: usize = 62;
}
const KIND_SESSION: u8 = b'S';
const KIND_TICKET: u8 = b'T';
const KIND_SLOT: u8 = b'L';
/// Longest context summary a record may carry, in bytes.
pub const MAX_SUMMARY_LEN: usize = 256;

/// Stored bytes that cannot be a record: the store is corrupt or from another version.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CodecError {
    /// Input ended inside a field.
    #[error("record truncated")]
    Truncated,
    /// The leading format version is not one this build reads.
    #[error("unknown record format version {0}")]
    UnknownVersion(u8),
    /// The bytes encode another kind of record.
    #[error("wrong record kind")]
    WrongKind,
    /// A field holds an impossible value.
    #[error("invalid record field: {0}")]
    Invalid(&'static str),
    /// Bytes remain after the last field.
    #[error("trailing bytes after record")]
    TrailingBytes,
}

struct Writer(Vec<u8>);

impl Writer {
    fn new(kind: u8) -> Self {
        Writer(vec![FORMAT_VERSION, kind])
    }
    /// Room for `capacity` bytes up front: a session grew its buffer four times while being
    /// encoded (a realloc and copy each), a cost every touch and rotation paid.
    fn with_capacity(kind: u8, capacity: usize) -> Self {
        let mut v = Vec::with_capacity(capacity);
        v.extend_from_slice(&[FORMAT_VERSION, kind]);
        Writer(v)
    }
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn ts(&mut self, t: Timestamp) {
        self.u64(t.as_millis());
    }
    fn raw(&mut self, b: &[u8]) {
        self.0.extend_from_slice(b);
    }
    /// Length-prefixed bytes (u32 length; callers keep lengths far below).
    fn bytes(&mut self, b: &[u8]) {
        self.0.extend_from_slice(&(b.len() as u32).to_le_bytes());
        self.0.extend_from_slice(b);
    }
    fn opt_str(&mut self, s: Option<&str>) {
        match s {
            None => self.u8(0),
            Some(s) => {
                self.u8(1);
                self.bytes(s.as_bytes());
            }
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    /// Reads the format version and kind; returns the reader and the format version.
    fn open(input: &'a [u8], kind: u8) -> Result<(Self, u8), CodecError> {
        let mut r = Reader(input);
        let version = r.u8()?;
        if !(1..=FORMAT_VERSION).contains(&version) {
            return Err(CodecError::UnknownVersion(version));
        }
        if r.u8()? != kind {
            return Err(CodecError::WrongKind);
        }
        Ok((r, version))
    }
    fn take(&mut self, n: usize) -> Result<&'a [u8], CodecError> {
        if self.0.len() < n {
            return Err(CodecError::Truncated);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn array<const N: usize>(&mut self) -> Result<[u8; N], CodecError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.take(N)?);
        Ok(a)
    }
    fn u8(&mut self) -> Result<u8, CodecError> {
        Ok(self.array::<1>()?[0])
    }
    fn u64(&mut self) -> Result<u64, CodecError> {
        Ok(u64::from_le_bytes(self.array()?))
    }
    fn ts(&mut self) -> Result<Timestamp, CodecError> {
        Ok(Timestamp::from_millis(self.u64()?))
    }
    fn flag(&mut self, what: &'static str) -> Result<bool, CodecError> {
        match self.u8()? {
            0 => Ok(false),
            1 => Ok(true),
            _ => Err(CodecError::Invalid(what)),
        }
    }
    fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], CodecError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        if len > max {
            return Err(CodecError::Invalid(what));
        }
        self.take(len)
    }
    /// Text borrowed from the input (a name is copied once, into its own `Arc<str>`).
    fn str(&mut self, max: usize, what: &'static str) -> Result<&'a str, CodecError> {
        let b = self.bytes(max, what)?;
        std::str::from_utf8(b).map_err(|_| CodecError::Invalid(what))
    }
    fn opt_str(&mut self, max: usize, what: &'static str) -> Result<Option<&'a str>, CodecError> {
        if self.flag(what)? {
            Ok(Some(self.str(max, what)?))
        } else {
            Ok(None)
        }
    }
    fn finish(self) -> Result<(), CodecError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(CodecError::TrailingBytes)
        }
    }
}

fn subject(s: &str) -> Result<Subject, CodecError> {
    Subject::from_text(s).map_err(|_| CodecError::Invalid("subject"))
}

fn resource(s: Option<&str>) -> Result<Option<Resource>, CodecError> {
    s.map(|s| Resource::from_text(s).map_err(|_| CodecError::Invalid("resource")))
        .transpose()
}

/// Encodes a session record (format 2: fixed-offset header, then the variable fields).
pub fn encode_session(r: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::with_capacity(KIND_SESSION, session_capacity(r));
    match r.state {
        SessionState::Active => {
            w.u8(0);
            w.u8(0);
            w.u64(0);
        }
        SessionState::Revoked { at, reason } => {
            w.u8(1);
            w.u8(reason.code());
            w.ts(at);
        }
    }
    w.u64(r.version);
    w.ts(r.expires_at);
    w.ts(r.absolute_deadline);
    w.ts(r.created_at);
    w.raw(r.id.as_bytes());
    w.bytes(r.subject.as_str().as_bytes());
    w.opt_str(r.resource.as_ref().map(Resource::as_str));
    w.bytes(r.kind.as_str().as_bytes());
    w.ts(r.last_seen);
    let c = &r.credential;
    w.u64(c.generation);
    w.raw(&c.current.0);
    w.ts(c.rotated_at);
    // 0: no predecessor; 1: predecessor with its sealed successor; 2: predecessor whose
    // sealed successor was dropped (its windows closed).
    match &c.previous {
        None => w.u8(0),
        Some(p) => {
            w.u8(if p.sealed_successor.is_some() { 1 } else { 2 });
            w.raw(&p.verifier.0);
            if let Some(sealed) = &p.sealed_successor {
                w.raw(&sealed.0);
            }
            w.u8(u8::from(p.successor_seen));
        }
    }
    w.u8(c.retired.len().min(MAX_REUSE_HISTORY) as u8);
    for v in c.retired.iter().take(MAX_REUSE_HISTORY) {
        w.raw(&v.0);
    }
    match &r.binding {
        None => w.u8(0),
        Some(b) => {
            w.u8(1);
            w.raw(&b.0);
        }
    }
    w.opt_str(r.context_summary.as_deref());
    w.bytes(&r.data);
    w.u64(r.data_version);
    match &c.access {
        None => w.u8(0),
        Some(a) => {
            w.u8(1);
            w.raw(&a.verifier.0);
            w.ts(a.expires_at);
        }
    }
    w.0
}

/// An upper bound of `encode_session(r).len()`: every fixed-size field (header, timestamps,
/// id, verifiers, markers, length prefixes) fits in the constant, the rest is the
/// variable-length fields.
fn session_capacity(r: &SessionRecord) -> usize {
    384 + r.subject.as_str().len()
        + r.resource.as_ref().map_or(0, |x| x.as_str().len())
        + r.kind.as_str().len()
        + r.context_summary.as_ref().map_or(0, String::len)
        + r.data.len()
        + 32 * r.credential.retired.len().min(MAX_REUSE_HISTORY)
}

/// The byte range of a format-2 or -3 session encoding that holds its identity (absolute
/// deadline, creation time, id, subject, resource and — format 3 — kind): a compare-and-swap
/// must leave it byte-for-byte unchanged. `None` if `bytes` is not a well-formed format-2/3
/// session header.
pub fn identity_range(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let format = *bytes.get(layout::FORMAT)?;
    if !(2..=3).contains(&format) || bytes.get(layout::KIND) != Some(&KIND_SESSION) {
        return None;
    }
    let mut r = Reader(bytes.get(layout::SUBJECT..)?);
    r.bytes(MAX_NAME_LEN, "subject").ok()?;
    r.opt_str(MAX_NAME_LEN, "resource").ok()?;
    if format == 3 {
        r.bytes(MAX_PREFIX_LEN, "kind").ok()?;
    }
    Some(layout::ABSOLUTE_DEADLINE..bytes.len() - r.0.len())
}

/// Decodes a session record (format 2, or format 1 as written by earlier builds); never
/// panics.
pub fn decode_session(input: &[u8]) -> Result<SessionRecord, CodecError> {
    let (mut r, format) = Reader::open(input, KIND_SESSION)?;
    let head = if format == 1 {
        Head::v1(&mut r)?
    } else {
        Head::v2(&mut r, format)?
    };
    let generation = r.u64()?;
    let current = Verifier(r.array()?);
    let rotated_at = r.ts()?;
    let previous = match r.u8()? {
        0 => None,
        tag @ (1 | 2) => Some(Predecessor {
            verifier: Verifier(r.array()?),
            sealed_successor: if tag == 1 {
                Some(Sealed(r.array()?))
            } else {
                None
            },
            successor_seen: r.flag("successor_seen")?,
        }),
        _ => return Err(CodecError::Invalid("previous")),
    };
    let n = r.u8()? as usize;
    if n > MAX_REUSE_HISTORY {
        return Err(CodecError::Invalid("retired"));
    }
    let retired = (0..n)
        .map(|_| r.array().map(Verifier))
        .collect::<Result<Vec<_>, _>>()?;
    let binding = if r.flag("binding")? {
        Some(BindingHash(r.array()?))
    } else {
        None
    };
    let context_summary = r
        .opt_str(MAX_SUMMARY_LEN, "context_summary")?
        .map(str::to_owned);
    let data = r.bytes(MAX_DATA_LEN, "data")?.to_vec();
    let data_version = r.u64()?;
    let access = if format >= 3 && r.flag("access")? {
        Some(AccessGrant {
            verifier: Verifier(r.array()?),
            expires_at: r.ts()?,
        })
    } else {
        None
    };
    r.finish()?;
    let Head {
        id,
        subject,
        resource,
        kind,
        version,
        created_at,
        last_seen,
        absolute_deadline,
        expires_at,
        state,
    } = head;
    if expires_at > absolute_deadline || created_at > absolute_deadline {
        return Err(CodecError::Invalid("deadlines"));
    }
    Ok(SessionRecord {
        id,
        subject,
        resource,
        kind,
        version,
        created_at,
        last_seen,
        absolute_deadline,
        expires_at,
        state,
        credential: Credential {
            generation,
            current,
            rotated_at,
            previous,
            retired,
            access,
        },
        binding,
        context_summary,
        data,
        data_version,
    })
}

/// The fields before the credential, read in either format's order.
struct Head {
    id: SessionId,
    subject: Subject,
    resource: Option<Resource>,
    kind: Kind,
    version: u64,
    created_at: Timestamp,
    last_seen: Timestamp,
    absolute_deadline: Timestamp,
    expires_at: Timestamp,
    state: SessionState,
}

impl Head {
    /// Format 1: id, subject, resource, version, created, last seen, deadlines, state.
    fn v1(r: &mut Reader<'_>) -> Result<Head, CodecError> {
        let id = SessionId::from_bytes(r.array::<ID_BYTES>()?);
        let subject = subject(r.str(MAX_NAME_LEN, "subject")?)?;
        let resource = resource(r.opt_str(MAX_NAME_LEN, "resource")?)?;
        let version = r.u64()?;
        let created_at = r.ts()?;
        let last_seen = r.ts()?;
        let absolute_deadline = r.ts()?;
        let expires_at = r.ts()?;
        let kind = Kind::legacy();
        let state = if r.flag("state")? {
            let at = r.ts()?;
            let reason = RevokeReason::from_code(r.u8()?).ok_or(CodecError::Invalid("reason"))?;
            SessionState::Revoked { at, reason }
        } else {
            SessionState::Active
        };
        Ok(Head {
            id,
            subject,
            resource,
            kind,
            version,
            created_at,
            last_seen,
            absolute_deadline,
            expires_at,
            state,
        })
    }

    /// Formats 2 and 3: the fixed-offset header (module docs), then the identity (format 3
    /// ends it with the kind), then last seen.
    fn v2(r: &mut Reader<'_>, format: u8) -> Result<Head, CodecError> {
        let tombstone = r.flag("state")?;
        let reason = r.u8()?;
        let revoked_at = r.ts()?;
        let state = if tombstone {
            let reason = RevokeReason::from_code(reason).ok_or(CodecError::Invalid("reason"))?;
            SessionState::Revoked {
                at: revoked_at,
                reason,
            }
        } else if reason != 0 || revoked_at != Timestamp::EPOCH {
            return Err(CodecError::Invalid("state"));
        } else {
            SessionState::Active
        };
        let version = r.u64()?;
        let expires_at = r.ts()?;
        let absolute_deadline = r.ts()?;
        let created_at = r.ts()?;
        let id = SessionId::from_bytes(r.array::<ID_BYTES>()?);
        let subject = subject(r.str(MAX_NAME_LEN, "subject")?)?;
        let resource = resource(r.opt_str(MAX_NAME_LEN, "resource")?)?;
        let kind = if format >= 3 {
            Kind::from_text(r.str(MAX_PREFIX_LEN, "kind")?)
                .map_err(|_| CodecError::Invalid("kind"))?
        } else {
            Kind::legacy()
        };
        let last_seen = r.ts()?;
        Ok(Head {
            id,
            subject,
            resource,
            kind,
            version,
            created_at,
            last_seen,
            absolute_deadline,
            expires_at,
            state,
        })
    }
}

/// Encodes a ticket record.
pub fn encode_ticket(t: &TicketRecord) -> Vec<u8> {
    let mut w = Writer::new(KIND_TICKET);
    w.raw(t.id.as_bytes());
    w.raw(t.session.as_bytes());
    w.raw(&t.verifier.0);
    w.ts(t.created_at);
    w.ts(t.expires_at);
    w.0
}

/// Decodes a ticket record; never panics.
pub fn decode_ticket(input: &[u8]) -> Result<TicketRecord, CodecError> {
    let (mut r, _) = Reader::open(input, KIND_TICKET)?;
    let t = TicketRecord {
        id: TicketId::from_bytes(r.array()?),
        session: SessionId::from_bytes(r.array()?),
        verifier: Verifier(r.array()?),
        created_at: r.ts()?,
        expires_at: r.ts()?,
    };
    r.finish()?;
    Ok(t)
}

/// Encodes a slot record.
pub fn encode_slot(s: &SlotRecord) -> Vec<u8> {
    let mut w = Writer::new(KIND_SLOT);
    w.raw(s.id.as_bytes());
    w.raw(s.session.as_bytes());
    w.opt_str(s.resource.as_ref().map(Resource::as_str));
    w.ts(s.acquired_at);
    w.ts(s.expires_at);
    w.0
}

/// Decodes a slot record; never panics.
pub fn decode_slot(input: &[u8]) -> Result<SlotRecord, CodecError> {
    let (mut r, _) = Reader::open(input, KIND_SLOT)?;
    let s = SlotRecord {
        id: SlotId::from_bytes(r.array()?),
        session: SessionId::from_bytes(r.array()?),
        resource: resource(r.opt_str(MAX_NAME_LEN, "resource")?)?,
        acquired_at: r.ts()?,
        expires_at: r.ts()?,
    };
    r.finish()?;
    Ok(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(crate) fn sample() -> SessionRecord {
        SessionRecord {
            id: SessionId::from_bytes([3; ID_BYTES]),
            subject: Subject::new("alice").unwrap(),
            resource: Some(Resource::new("sandbox-1").unwrap()),
            kind: Kind::new("refresh").unwrap(),
            version: 7,
            created_at: Timestamp::from_millis(1000),
            last_seen: Timestamp::from_millis(2000),
            absolute_deadline: Timestamp::from_millis(90_000),
            expires_at: Timestamp::from_millis(50_000),
            state: SessionState::Revoked {
                at: Timestamp::from_millis(3000),
                reason: RevokeReason::Evicted,
            },
            credential: Credential {
                generation: 2,
                current: Verifier([1; 32]),
                rotated_at: Timestamp::from_millis(1500),
                previous: Some(Predecessor {
                    verifier: Verifier([2; 32]),
                    sealed_successor: Some(Sealed([4; 32])),
                    successor_seen: true,
                }),
                retired: vec![Verifier([5; 32]), Verifier([6; 32])],
                access: Some(AccessGrant {
                    verifier: Verifier([9; 32]),
                    expires_at: Timestamp::from_millis(40_000),
                }),
            },
            binding: Some(BindingHash([8; 32])),
            context_summary: Some("Firefox on Linux".into()),
            data: vec![1, 2, 3],
            data_version: 4,
        }
    }

    #[test]
    fn session_round_trips() {
        let r = sample();
        assert_eq!(decode_session(&encode_session(&r)).unwrap(), r);
        let plain = SessionRecord {
            resource: None,
            state: SessionState::Active,
            binding: None,
            context_summary: None,
            credential: Credential {
                previous: None,
                retired: vec![],
                access: None,
                ..r.credential.clone()
            },
            ..r
        };
        assert_eq!(decode_session(&encode_session(&plain)).unwrap(), plain);
    }

    #[test]
    fn a_session_encodes_within_its_capacity_estimate() {
        // The largest record: every optional field present, the reuse history full.
        let mut r = sample();
        r.credential.retired = vec![Verifier([5; 32]); MAX_REUSE_HISTORY];
        let bytes = encode_session(&r);
        assert!(bytes.len() <= session_capacity(&r), "{} bytes", bytes.len());
        assert!(
            session_capacity(&r) - bytes.len() < 200,
            "the estimate stays close"
        );
    }

    #[test]
    fn a_dropped_sealed_successor_round_trips_as_tag_2() {
        let mut dropped = sample();
        if let Some(p) = dropped.credential.previous.as_mut() {
            p.sealed_successor = None;
        }
        let bytes = encode_session(&dropped);
        let decoded = decode_session(&bytes).unwrap();
        assert_eq!(decoded, dropped);
        let p = decoded.credential.previous.unwrap();
        assert_eq!(p.sealed_successor, None, "nothing to unseal comes back");
        assert_eq!(p.verifier, Verifier([2; 32]), "the predecessor is kept");
        // The encodings with and without the sealed successor first differ at the tag.
        let kept = encode_session(&sample());
        let at = kept.iter().zip(&bytes).position(|(a, b)| a != b).unwrap();
        assert_eq!((kept[at], bytes[at]), (1, 2), "found the previous tag");
        assert_eq!(kept.len(), bytes.len() + 32, "tag 2 stores no sealed bytes");
        for n in 0..bytes.len() {
            assert!(decode_session(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        // An observed expiry is a tombstone reason like any other.
        let mut expired = dropped;
        expired.state = SessionState::Revoked {
            at: Timestamp::from_millis(50_000),
            reason: RevokeReason::Expired,
        };
        assert_eq!(decode_session(&encode_session(&expired)).unwrap(), expired);
    }

    #[test]
    fn an_unknown_previous_tag_is_refused() {
        let mut dropped = sample();
        if let Some(p) = dropped.credential.previous.as_mut() {
            p.sealed_successor = None;
        }
        let kept = encode_session(&sample());
        let mut bytes = encode_session(&dropped);
        let at = kept.iter().zip(&bytes).position(|(a, b)| a != b).unwrap();
        for tag in [3u8, 4, 0x80, u8::MAX] {
            bytes[at] = tag;
            assert_eq!(
                decode_session(&bytes),
                Err(CodecError::Invalid("previous")),
                "tag {tag}"
            );
        }
        // Tag 1 over the bytes of a tag-2 record reads the successor flag and what follows as
        // sealed bytes; the record is then 32 bytes short and is refused.
        bytes[at] = 1;
        assert!(decode_session(&bytes).is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = encode_session(&sample());
        for n in 0..bytes.len() {
            assert!(decode_session(&bytes[..n]).is_err(), "prefix {n} decoded");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode_session(&long), Err(CodecError::TrailingBytes));
    }

    #[test]
    fn unknown_version_and_kind_are_refused() {
        let mut bytes = encode_session(&sample());
        for v in [0, 4, u8::MAX] {
            bytes[0] = v;
            assert_eq!(decode_session(&bytes), Err(CodecError::UnknownVersion(v)));
        }
        let ticket = encode_ticket(&TicketRecord {
            id: TicketId::from_bytes([1; ID_BYTES]),
            session: SessionId::from_bytes([2; ID_BYTES]),
            verifier: Verifier([3; 32]),
            created_at: Timestamp::from_millis(1),
            expires_at: Timestamp::from_millis(2),
        });
        assert_eq!(decode_session(&ticket), Err(CodecError::WrongKind));
        assert!(decode_ticket(&ticket).is_ok());
    }

    #[test]
    fn length_limits_are_inclusive() {
        let mut r = sample();
        r.data = vec![7; MAX_DATA_LEN];
        assert_eq!(
            decode_session(&encode_session(&r)).unwrap().data.len(),
            MAX_DATA_LEN
        );
        r.data.push(7);
        assert_eq!(
            decode_session(&encode_session(&r)),
            Err(CodecError::Invalid("data"))
        );
        let mut r = sample();
        r.credential.retired = vec![Verifier([9; 32]); MAX_REUSE_HISTORY];
        assert_eq!(decode_session(&encode_session(&r)).unwrap(), r);
    }

    #[test]
    fn an_over_long_retired_list_is_refused() {
        // The encoder caps the count, so forge it. The count byte is where encodings with no
        // and one retired verifier first differ.
        let mut r = sample();
        r.credential.retired = vec![];
        let mut bytes = encode_session(&r);
        r.credential.retired = vec![Verifier([9; 32])];
        let one = encode_session(&r);
        let at = bytes.iter().zip(&one).position(|(a, b)| a != b).unwrap();
        assert_eq!((bytes[at], one[at]), (0, 1), "found the retired count");
        bytes[at] = (MAX_REUSE_HISTORY + 1) as u8;
        bytes.splice(at + 1..at + 1, vec![9u8; 32 * (MAX_REUSE_HISTORY + 1)]);
        assert_eq!(decode_session(&bytes), Err(CodecError::Invalid("retired")));
        bytes[at] = MAX_REUSE_HISTORY as u8;
        bytes.drain(at + 1..at + 1 + 32);
        assert_eq!(
            decode_session(&bytes).unwrap().credential.retired.len(),
            MAX_REUSE_HISTORY
        );
    }

    #[test]
    fn deadlines_may_meet_but_not_cross() {
        let mut r = sample();
        r.expires_at = r.absolute_deadline;
        r.created_at = r.absolute_deadline;
        assert_eq!(decode_session(&encode_session(&r)).unwrap(), r);
        let mut late = r.clone();
        late.created_at = r
            .absolute_deadline
            .saturating_add(std::time::Duration::from_millis(1));
        assert_eq!(
            decode_session(&encode_session(&late)),
            Err(CodecError::Invalid("deadlines"))
        );
        let mut late = r;
        late.expires_at = late
            .absolute_deadline
            .saturating_add(std::time::Duration::from_millis(1));
        assert_eq!(
            decode_session(&encode_session(&late)),
            Err(CodecError::Invalid("deadlines"))
        );
    }

    #[test]
    fn ticket_and_slot_round_trip() {
        let s = SlotRecord {
            id: SlotId::from_bytes([1; ID_BYTES]),
            session: SessionId::from_bytes([2; ID_BYTES]),
            resource: Some(Resource::new("r").unwrap()),
            acquired_at: Timestamp::from_millis(5),
            expires_at: Timestamp::from_millis(6),
        };
        assert_eq!(decode_slot(&encode_slot(&s)).unwrap(), s);
        let bytes = encode_slot(&s);
        for n in 0..bytes.len() {
            assert!(decode_slot(&bytes[..n]).is_err());
        }
    }

    #[test]
    fn impossible_values_are_refused() {
        let mut r = sample();
        r.expires_at = Timestamp::from_millis(100_000);
        assert_eq!(
            decode_session(&encode_session(&r)),
            Err(CodecError::Invalid("deadlines"))
        );
        let mut bytes = encode_session(&sample());
        // The byte after the subject (4 + 5): the resource flag.
        let resource_flag = layout::SUBJECT + 4 + 5;
        bytes[resource_flag] = 7;
        assert_eq!(decode_session(&bytes), Err(CodecError::Invalid("resource")));
        // An active record carries no reason and no revocation time.
        let mut active = sample();
        active.state = SessionState::Active;
        let mut bytes = encode_session(&active);
        bytes[layout::REASON] = 1;
        assert_eq!(decode_session(&bytes), Err(CodecError::Invalid("state")));
        let mut bytes = encode_session(&active);
        bytes[layout::REVOKED_AT] = 1;
        assert_eq!(decode_session(&bytes), Err(CodecError::Invalid("state")));
    }

    /// Format 2, as written by earlier builds: format 3 without the kind and the access grant.
    fn encode_v2(r: &SessionRecord) -> Vec<u8> {
        let v3 = encode_session(r);
        let identity = identity_range(&v3).unwrap();
        let kind_len = 4 + r.kind.as_str().len();
        let access_len = if r.credential.access.is_some() { 41 } else { 1 };
        let mut out = v3[..identity.end - kind_len].to_vec();
        out.extend_from_slice(&v3[identity.end..v3.len() - access_len]);
        out[layout::FORMAT] = 2;
        out
    }

    /// What a format-1 or -2 record decodes to: the legacy kind, no access grant.
    fn legacy(r: &SessionRecord) -> SessionRecord {
        let mut r = r.clone();
        r.kind = Kind::legacy();
        r.credential.access = None;
        r
    }

    #[test]
    fn format_2_records_still_decode_with_the_legacy_kind() {
        let mut active = sample();
        active.state = SessionState::Active;
        for r in [sample(), active] {
            let v2 = encode_v2(&r);
            assert_eq!(decode_session(&v2).unwrap(), legacy(&r));
            // Re-encoded, it is format 3 and keeps what it decoded to.
            let again = encode_session(&legacy(&r));
            assert_eq!(again[layout::FORMAT], 3);
            assert_eq!(decode_session(&again).unwrap(), legacy(&r));
        }
    }

    /// Format 1, as written by earlier builds (the field order of `Head::v1`).
    fn encode_v1(r: &SessionRecord) -> Vec<u8> {
        let v2 = encode_v2(r);
        let identity = identity_range(&v2).unwrap();
        let mut w = Writer(vec![1, KIND_SESSION]);
        w.raw(&v2[layout::ID..identity.end]); // id, subject, resource
        w.u64(r.version);
        w.ts(r.created_at);
        w.ts(r.last_seen);
        w.ts(r.absolute_deadline);
        w.ts(r.expires_at);
        match r.state {
            SessionState::Active => w.u8(0),
            SessionState::Revoked { at, reason } => {
                w.u8(1);
                w.ts(at);
                w.u8(reason.code());
            }
        }
        w.raw(&v2[identity.end + 8..]); // everything after last_seen
        w.0
    }

    #[test]
    fn format_1_records_still_decode() {
        let mut active = sample();
        active.state = SessionState::Active;
        for r in [sample(), active] {
            assert_eq!(decode_session(&encode_v1(&r)).unwrap(), legacy(&r));
        }
        // A known format-1 record, byte for byte (as an earlier build stored it).
        let mut known = vec![1, b'S'];
        known.extend_from_slice(&[9; ID_BYTES]);
        known.extend_from_slice(&1u32.to_le_bytes());
        known.push(b'a');
        known.push(0); // no resource
        for v in [4u64, 10, 20, 90, 50] {
            known.extend_from_slice(&v.to_le_bytes()); // version, created, seen, deadlines
        }
        known.push(0); // active
        known.extend_from_slice(&0u64.to_le_bytes()); // generation
        known.extend_from_slice(&[5; 32]);
        known.extend_from_slice(&10u64.to_le_bytes()); // rotated_at
        known.extend_from_slice(&[0, 0, 0, 0]); // no predecessor, retired, binding, summary
        known.extend_from_slice(&0u32.to_le_bytes()); // no data
        known.extend_from_slice(&3u64.to_le_bytes()); // data_version
        let r = decode_session(&known).unwrap();
        assert_eq!(
            (r.version, r.created_at, r.expires_at, r.subject.as_str()),
            (
                4,
                Timestamp::from_millis(10),
                Timestamp::from_millis(50),
                "a"
            )
        );
        assert_eq!(r.absolute_deadline, Timestamp::from_millis(90));
    }

    #[test]
    fn the_header_sits_at_its_documented_offsets() {
        let r = sample();
        let b = encode_session(&r);
        let u64_at = |o: usize| u64::from_le_bytes(b[o..o + 8].try_into().unwrap());
        assert_eq!((b[layout::FORMAT], b[layout::KIND]), (FORMAT_VERSION, b'S'));
        assert_eq!(b[layout::STATE], 1);
        assert_eq!(b[layout::REASON], RevokeReason::Evicted.code());
        assert_eq!(u64_at(layout::REVOKED_AT), 3000);
        assert_eq!(u64_at(layout::VERSION), r.version);
        assert_eq!(u64_at(layout::EXPIRES_AT), r.expires_at.as_millis());
        assert_eq!(u64_at(layout::ABSOLUTE_DEADLINE), 90_000);
        assert_eq!(u64_at(layout::CREATED_AT), 1000);
        assert_eq!(&b[layout::ID..layout::ID + ID_BYTES], r.id.as_bytes());
        assert_eq!(&b[layout::SUBJECT + 4..layout::SUBJECT + 9], b"alice");
    }

    /// What a Lua script or SQL function does without this codec: tombstone in place by
    /// writing the header's mutable bytes, and check a swap kept the identity bytes.
    #[test]
    fn a_store_can_tombstone_in_place_and_compare_identity_bytes() {
        let mut live = sample();
        live.state = SessionState::Active;
        let mut bytes = encode_session(&live);
        bytes[layout::STATE] = 1;
        bytes[layout::REASON] = RevokeReason::Subject.code();
        bytes[layout::REVOKED_AT..layout::REVOKED_AT + 8].copy_from_slice(&4000u64.to_le_bytes());
        bytes[layout::VERSION..layout::VERSION + 8]
            .copy_from_slice(&(live.version + 1).to_le_bytes());
        let at = Timestamp::from_millis(4000);
        assert_eq!(
            decode_session(&bytes).unwrap(),
            live.tombstone(at, RevokeReason::Subject)
        );

        let range = identity_range(&bytes).unwrap();
        assert_eq!(range.start, layout::ABSOLUTE_DEADLINE);
        let mut touched = live.clone();
        touched.version += 1;
        touched.last_seen = Timestamp::from_millis(2500);
        touched.expires_at = Timestamp::from_millis(60_000);
        let t = encode_session(&touched);
        assert_eq!(t[identity_range(&t).unwrap()], bytes[range.clone()]);
        for change in [
            |r: &mut SessionRecord| r.subject = Subject::new("alicf").unwrap(),
            |r: &mut SessionRecord| r.resource = None,
            |r: &mut SessionRecord| r.created_at = Timestamp::from_millis(999),
            |r: &mut SessionRecord| r.absolute_deadline = Timestamp::from_millis(95_000),
        ] {
            let mut moved = live.clone();
            change(&mut moved);
            let m = encode_session(&moved);
            assert_ne!(m.get(identity_range(&m).unwrap()), bytes.get(range.clone()));
        }
        assert_eq!(identity_range(&encode_v1(&live)), None);
        assert_eq!(identity_range(b"\x02S"), None);
    }
}
