//! The binary record encoding: a leading format version and kind, then fixed-order fields.
//!
//! Decoding treats its input as untrusted: every length is checked against what remains and
//! against a hard limit, unknown versions and kinds are refused (never guessed), trailing bytes
//! are an error, and nothing panics.
//!
//! # Format 4 (written by this build): a fixed-offset session header, a compact tail
//!
//! A session starts with the fields a store must read or write *without* this codec (a Lua
//! script, a SQL function), at fixed offsets, little-endian ([`layout`]):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 1 | format version (4; 2 and 3 have the same header) |
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
//! | … | 4 + n | kind (u32 length, bytes; format 3 on) — *identity ends here* |
//!
//! then `last_seen`, the credential, binding, summary, data, data version and (format 3 on) the
//! access grant. So a store can tombstone a record in place (write bytes 2..28: state, reason,
//! revoked_at, version + 1, and `expires_at` lowered to at most `revoked_at` +
//! [`TOMBSTONE_RETENTION`](crate::record::TOMBSTONE_RETENTION)) and check that a
//! compare-and-swap keeps the identity by comparing one byte range ([`identity_range`]).
//!
//! Format 4 writes the fields after the identity compactly, since every byte of a record is
//! paid per session in a store that keeps them in memory (Redis): the generation, the data
//! version and the summary's and data's lengths as LEB128 varints (canonical: the shortest
//! encoding only), and `last_seen` and `rotated_at` as their signed distance in ms from
//! `created_at` (zigzag, then a varint). A fresh session is 31 bytes shorter than in format 3.
//! `last_seen` is then no longer 8 bytes wide: a store that compares what follows it (the
//! Redis `cas` script, to tell a touch) finds its end by the varint's last byte (< 128).
//! Formats 1 to 3 still decode (1 and 2 with kind [`Kind::legacy`] and no access grant), and
//! every write re-encodes a record in format 4.

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
pub const FORMAT_VERSION: u8 = 4;

/// Fixed offsets of the session header, formats 2 to 4 (see the module docs).
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
    /// LEB128: 7 bits per byte, low first, the high bit set on every byte but the last.
    fn varint(&mut self, mut v: u128) {
        while v >= 0x80 {
            self.0.push((v as u8) | 0x80);
            v >>= 7;
        }
        self.0.push(v as u8);
    }
    /// A time as its signed distance in ms from `base` (zigzag, then [`varint`](Self::varint)):
    /// a session's times sit near its creation, so one to five bytes instead of eight.
    fn time_from(&mut self, base: Timestamp, t: Timestamp) {
        let d = i128::from(t.as_millis()) - i128::from(base.as_millis());
        self.varint(((d << 1) ^ (d >> 127)) as u128);
    }
    /// Length-prefixed bytes, the length as a varint.
    fn var_bytes(&mut self, b: &[u8]) {
        self.varint(b.len() as u128);
        self.0.extend_from_slice(b);
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
    /// A canonical varint of at most `max` (the shortest encoding only: the formats are
    /// canonical, so a decoded record re-encodes to its input).
    fn varint(&mut self, max: u128, what: &'static str) -> Result<u128, CodecError> {
        let mut v: u128 = 0;
        for i in 0..19 {
            let b = self.u8()?;
            v |= u128::from(b & 0x7f) << (7 * i);
            if b < 0x80 {
                // A last byte of 0 after others is an overlong encoding.
                if (i > 0 && b == 0) || v > max || (i == 18 && b > 3) {
                    return Err(CodecError::Invalid(what));
                }
                return Ok(v);
            }
        }
        Err(CodecError::Invalid(what))
    }
    /// A `u64`: a varint from format 4 on, eight bytes before.
    fn number(&mut self, format: u8, what: &'static str) -> Result<u64, CodecError> {
        if format >= 4 {
            Ok(self.varint(u128::from(u64::MAX), what)? as u64)
        } else {
            self.u64()
        }
    }
    /// A time: from format 4 on a signed distance from `base` ([`Writer::time_from`]), eight
    /// bytes before.
    fn time_from(
        &mut self,
        format: u8,
        base: Timestamp,
        what: &'static str,
    ) -> Result<Timestamp, CodecError> {
        if format < 4 {
            return self.ts();
        }
        let z = self.varint(u128::MAX, what)?;
        let d = ((z >> 1) as i128) ^ -((z & 1) as i128);
        i128::from(base.as_millis())
            .checked_add(d)
            .and_then(|t| u64::try_from(t).ok())
            .map(Timestamp::from_millis)
            .ok_or(CodecError::Invalid(what))
    }
    /// Length-prefixed bytes: the length a varint from format 4 on, a u32 before.
    fn bytes_in(
        &mut self,
        format: u8,
        max: usize,
        what: &'static str,
    ) -> Result<&'a [u8], CodecError> {
        if format < 4 {
            return self.bytes(max, what);
        }
        let len = self.varint(max as u128, what)? as usize;
        self.take(len)
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

/// Encodes a session record in format 4 (the module docs).
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
    w.time_from(r.created_at, r.last_seen);
    let c = &r.credential;
    w.varint(u128::from(c.generation));
    w.raw(&c.current.0);
    w.time_from(r.created_at, c.rotated_at);
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
    match r.context_summary.as_deref() {
        None => w.u8(0),
        Some(s) => {
            w.u8(1);
            w.var_bytes(s.as_bytes());
        }
    }
    w.var_bytes(&r.data);
    w.varint(u128::from(r.data_version));
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

/// The byte range of a format-2, -3 or -4 session encoding that holds its identity (absolute
/// deadline, creation time, id, subject, resource and — from format 3 on — kind): a
/// compare-and-swap must leave it byte-for-byte unchanged. `None` if `bytes` is not a
/// well-formed session header of one of those formats.
pub fn identity_range(bytes: &[u8]) -> Option<std::ops::Range<usize>> {
    let format = *bytes.get(layout::FORMAT)?;
    if !(2..=FORMAT_VERSION).contains(&format) || bytes.get(layout::KIND) != Some(&KIND_SESSION) {
        return None;
    }
    let mut r = Reader(bytes.get(layout::SUBJECT..)?);
    r.bytes(MAX_NAME_LEN, "subject").ok()?;
    r.opt_str(MAX_NAME_LEN, "resource").ok()?;
    if format >= 3 {
        r.bytes(MAX_PREFIX_LEN, "kind").ok()?;
    }
    Some(layout::ABSOLUTE_DEADLINE..bytes.len() - r.0.len())
}

/// Decodes a session record in format 4, or 1 to 3 as written by earlier builds; never
/// panics.
pub fn decode_session(input: &[u8]) -> Result<SessionRecord, CodecError> {
    let (mut r, format) = Reader::open(input, KIND_SESSION)?;
    let head = if format == 1 {
        Head::v1(&mut r)?
    } else {
        Head::v2(&mut r, format)?
    };
    let generation = r.number(format, "generation")?;
    let current = Verifier(r.array()?);
    let rotated_at = r.time_from(format, head.created_at, "rotated_at")?;
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
    let context_summary = if r.flag("context_summary")? {
        let b = r.bytes_in(format, MAX_SUMMARY_LEN, "context_summary")?;
        let s = std::str::from_utf8(b).map_err(|_| CodecError::Invalid("context_summary"))?;
        Some(s.to_owned())
    } else {
        None
    };
    let data = r.bytes_in(format, MAX_DATA_LEN, "data")?.to_vec();
    let data_version = r.number(format, "data_version")?;
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

    /// Formats 2 to 4: the fixed-offset header (module docs), then the identity (format 3 on
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
        let last_seen = r.time_from(format, created_at, "last_seen")?;
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

    /// [`sample`] as it is (a tombstone) and active: the two header shapes.
    fn sample_in_both_states() -> [SessionRecord; 2] {
        let mut active = sample();
        active.state = SessionState::Active;
        [sample(), active]
    }

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
        for v in [0, FORMAT_VERSION + 1, u8::MAX] {
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

    /// Format 3, as written by earlier builds: format 4's header and identity, then every
    /// number, time and length at a fixed width.
    fn encode_v3(r: &SessionRecord) -> Vec<u8> {
        let v4 = encode_session(r);
        let mut w = Writer(v4[..identity_range(&v4).unwrap().end].to_vec());
        w.0[layout::FORMAT] = 3;
        let c = &r.credential;
        w.ts(r.last_seen);
        w.u64(c.generation);
        w.raw(&c.current.0);
        w.ts(c.rotated_at);
        let p = c.previous.as_ref();
        w.u8(p.map_or(0, |p| if p.sealed_successor.is_some() { 1 } else { 2 }));
        if let Some(p) = p {
            w.raw(&p.verifier.0);
            w.raw(p.sealed_successor.as_ref().map_or(&[][..], |s| &s.0[..]));
            w.u8(u8::from(p.successor_seen));
        }
        w.u8(c.retired.len() as u8);
        c.retired.iter().for_each(|v| w.raw(&v.0));
        w.u8(u8::from(r.binding.is_some()));
        w.raw(r.binding.as_ref().map_or(&[][..], |b| &b.0[..]));
        w.opt_str(r.context_summary.as_deref());
        w.bytes(&r.data);
        w.u64(r.data_version);
        w.u8(u8::from(c.access.is_some()));
        if let Some(a) = &c.access {
            w.raw(&a.verifier.0);
            w.ts(a.expires_at);
        }
        w.0
    }

    #[test]
    fn format_3_records_still_decode_and_are_rewritten_as_format_4() {
        for r in sample_in_both_states() {
            let v3 = encode_v3(&r);
            assert_eq!(decode_session(&v3).unwrap(), r);
            assert_eq!(identity_range(&v3), identity_range(&encode_session(&r)));
            assert_eq!(
                encode_session(&decode_session(&v3).unwrap())[layout::FORMAT],
                4
            );
        }
    }

    /// What format 4 is for: a fresh session (times at its creation, generation 0, no data) is
    /// 31 bytes shorter — in Redis, a record value in a 192-byte allocation instead of 224.
    #[test]
    fn format_4_writes_small_numbers_and_near_times_in_few_bytes() {
        let mut r = sample();
        r.last_seen = r.created_at;
        r.credential.rotated_at = r.created_at;
        r.credential.generation = 0;
        r.data.clear();
        r.data_version = 0;
        r.context_summary = None;
        assert_eq!(encode_v3(&r).len() - encode_session(&r).len(), 31);
        // Times before the creation (a caller whose clock lags) and at the ends of the range.
        for (created, t) in [(1000, 0), (u64::MAX, 0), (0, u64::MAX), (5, 5)] {
            r.created_at = Timestamp::from_millis(created);
            r.absolute_deadline = Timestamp::from_millis(u64::MAX);
            r.expires_at = r.absolute_deadline;
            r.last_seen = Timestamp::from_millis(t);
            r.credential.rotated_at = Timestamp::from_millis(t);
            r.credential.generation = u64::MAX;
            r.data_version = u64::MAX;
            assert_eq!(decode_session(&encode_session(&r)).unwrap(), r);
        }
    }

    #[test]
    fn a_varint_has_one_encoding() {
        let number = |b: &[u8]| Reader(b).number(4, "n");
        assert_eq!(number(&[0x7f]), Ok(127));
        assert_eq!(number(&[0x80, 0x01]), Ok(128));
        // Overlong: the same values with a trailing zero group.
        assert_eq!(number(&[0xff, 0x00]), Err(CodecError::Invalid("n")));
        assert_eq!(number(&[0x80, 0x00]), Err(CodecError::Invalid("n")));
        let max = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01];
        assert_eq!(number(&max), Ok(u64::MAX));
        let over = [0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02];
        assert_eq!(number(&over), Err(CodecError::Invalid("n")));
        assert_eq!(number(&[0x80; 19]), Err(CodecError::Invalid("n")));
        assert_eq!(number(&[0x80, 0x80]), Err(CodecError::Truncated));
        // A time whose distance leaves the u64 range.
        let mut far = vec![0xfe; 18];
        far.push(0x03);
        let t = Reader(&far).time_from(4, Timestamp::from_millis(1), "t");
        assert_eq!(t, Err(CodecError::Invalid("t")));
        // A 19th byte with bits beyond the 128th: shifted out unseen, this would read as
        // distance 0 from 19 bytes, a second encoding of what one byte says.
        let mut wide = vec![0x80; 18];
        wide.push(0x04);
        let t = Reader(&wide).time_from(4, Timestamp::from_millis(1), "t");
        assert_eq!(t, Err(CodecError::Invalid("t")));
    }

    mod props {
        use super::*;
        use proptest::prelude::*;

        fn name() -> impl Strategy<Value = String> {
            // Printable text of 1 to 80 chars, some of them multi-byte.
            "[a-zA-Z0-9@._ é€-]{1,80}"
        }

        fn bytes32() -> impl Strategy<Value = [u8; 32]> {
            any::<[u8; 32]>()
        }

        prop_compose! {
            fn record()(
                id in any::<[u8; ID_BYTES]>(),
                subject in name(),
                resource in proptest::option::of(name()),
                kind in "[a-z0-9]{1,16}",
                version in any::<u64>(),
                times in any::<[u64; 6]>(),
                revoked in proptest::option::of((any::<u64>(), 1u8..=6)),
                generation in any::<u64>(),
                current in bytes32(),
                previous in proptest::option::of(
                    (bytes32(), proptest::option::of(bytes32()), any::<bool>())),
                retired in proptest::collection::vec(bytes32(), 0..=MAX_REUSE_HISTORY),
                binding in proptest::option::of(bytes32()),
                summary in proptest::option::of("[ -~é]{0,200}"),
                data in proptest::collection::vec(any::<u8>(), 0..300),
                data_version in any::<u64>(),
                access in proptest::option::of((bytes32(), any::<u64>())),
            ) -> SessionRecord {
                let t = |i: usize| Timestamp::from_millis(times[i]);
                // The decoder's one cross-field rule: neither expiry nor creation past the
                // absolute deadline.
                let absolute_deadline = t(0).max(t(1)).max(t(2));
                SessionRecord {
                    id: SessionId::from_bytes(id),
                    subject: Subject::new(&subject).unwrap(),
                    resource: resource.map(|r| Resource::new(&r).unwrap()),
                    kind: Kind::new(&kind).unwrap(),
                    version,
                    created_at: t(1),
                    last_seen: t(3),
                    absolute_deadline,
                    expires_at: t(2),
                    state: match revoked {
                        None => SessionState::Active,
                        Some((at, code)) => SessionState::Revoked {
                            at: Timestamp::from_millis(at),
                            reason: RevokeReason::from_code(code).unwrap(),
                        },
                    },
                    credential: Credential {
                        generation,
                        current: Verifier(current),
                        rotated_at: t(4),
                        previous: previous.map(|(v, sealed, seen)| Predecessor {
                            verifier: Verifier(v),
                            sealed_successor: sealed.map(Sealed),
                            successor_seen: seen,
                        }),
                        retired: retired.into_iter().map(Verifier).collect(),
                        access: access.map(|(v, at)| AccessGrant {
                            verifier: Verifier(v),
                            expires_at: Timestamp::from_millis(at),
                        }),
                    },
                    binding: binding.map(BindingHash),
                    context_summary: summary,
                    data,
                    data_version,
                }
            }
        }

        proptest! {
            /// Every record survives format 4 exactly, whatever its times (before or after
            /// its creation, at either end of the range) and numbers; its format-3 bytes (as
            /// earlier builds wrote them) decode to the same record, with the same identity
            /// bytes; and format 4 is at most 8 bytes longer (two 10-byte varints for numbers
            /// near 2^64, two 10-byte distances for times near the ends of the range).
            #[test]
            fn every_record_round_trips_in_format_4_and_reads_from_format_3(r in record()) {
                let v4 = encode_session(&r);
                prop_assert_eq!(v4[layout::FORMAT], 4);
                prop_assert_eq!(decode_session(&v4), Ok(r.clone()));
                let v3 = encode_v3(&r);
                prop_assert_eq!(decode_session(&v3), Ok(r.clone()));
                let (i3, i4) = (identity_range(&v3).unwrap(), identity_range(&v4).unwrap());
                prop_assert_eq!(&v3[i3], &v4[i4]);
                prop_assert!(v4.len() <= v3.len() + 8);
                prop_assert!(v4.len() <= session_capacity(&r));
            }
        }
    }

    /// Format 2, as written by earlier builds: format 3 without the kind and the access grant.
    fn encode_v2(r: &SessionRecord) -> Vec<u8> {
        let v3 = encode_v3(r);
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
        for r in sample_in_both_states() {
            let v2 = encode_v2(&r);
            assert_eq!(decode_session(&v2).unwrap(), legacy(&r));
            // Re-encoded, it is the current format and keeps what it decoded to.
            let again = encode_session(&legacy(&r));
            assert_eq!(again[layout::FORMAT], FORMAT_VERSION);
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
        for r in sample_in_both_states() {
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
