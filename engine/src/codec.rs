//! The binary record encoding: a leading format version and kind, then fixed-order fields.
//!
//! Decoding treats its input as untrusted: every length is checked against what remains and
//! against a hard limit, unknown versions and kinds are refused (never guessed), trailing bytes
//! are an error, and nothing panics.

use crate::crypto::{BindingHash, Sealed, Verifier};
use crate::ids::{ID_BYTES, MAX_NAME_LEN, Resource, SessionId, SlotId, Subject, TicketId};
use crate::policy::{MAX_DATA_LEN, MAX_REUSE_HISTORY};
use crate::record::{
    Credential, Predecessor, RevokeReason, SessionRecord, SessionState, SlotRecord, TicketRecord,
};
use crate::time::Timestamp;

/// The format version written by this build. Decoders refuse any other.
pub const FORMAT_VERSION: u8 = 1;
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
    fn open(input: &'a [u8], kind: u8) -> Result<Self, CodecError> {
        let mut r = Reader(input);
        let version = r.u8()?;
        if version != FORMAT_VERSION {
            return Err(CodecError::UnknownVersion(version));
        }
        if r.u8()? != kind {
            return Err(CodecError::WrongKind);
        }
        Ok(r)
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
    fn string(&mut self, max: usize, what: &'static str) -> Result<String, CodecError> {
        let b = self.bytes(max, what)?;
        String::from_utf8(b.to_vec()).map_err(|_| CodecError::Invalid(what))
    }
    fn opt_string(&mut self, max: usize, what: &'static str) -> Result<Option<String>, CodecError> {
        if self.flag(what)? {
            Ok(Some(self.string(max, what)?))
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

fn subject(s: String) -> Result<Subject, CodecError> {
    Subject::new(s).map_err(|_| CodecError::Invalid("subject"))
}

fn resource(s: Option<String>) -> Result<Option<Resource>, CodecError> {
    s.map(|s| Resource::new(s).map_err(|_| CodecError::Invalid("resource")))
        .transpose()
}

/// Encodes a session record.
pub fn encode_session(r: &SessionRecord) -> Vec<u8> {
    let mut w = Writer::new(KIND_SESSION);
    w.raw(r.id.as_bytes());
    w.bytes(r.subject.as_str().as_bytes());
    w.opt_str(r.resource.as_ref().map(Resource::as_str));
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
    let c = &r.credential;
    w.u64(c.generation);
    w.raw(&c.current.0);
    w.ts(c.rotated_at);
    match &c.previous {
        None => w.u8(0),
        Some(p) => {
            w.u8(1);
            w.raw(&p.verifier.0);
            w.raw(&p.sealed_successor.0);
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
    w.0
}

/// Decodes a session record; never panics.
pub fn decode_session(input: &[u8]) -> Result<SessionRecord, CodecError> {
    let mut r = Reader::open(input, KIND_SESSION)?;
    let id = SessionId::from_bytes(r.array::<ID_BYTES>()?);
    let subject = subject(r.string(MAX_NAME_LEN, "subject")?)?;
    let resource = resource(r.opt_string(MAX_NAME_LEN, "resource")?)?;
    let version = r.u64()?;
    let created_at = r.ts()?;
    let last_seen = r.ts()?;
    let absolute_deadline = r.ts()?;
    let expires_at = r.ts()?;
    let state = if r.flag("state")? {
        let at = r.ts()?;
        let reason = RevokeReason::from_code(r.u8()?).ok_or(CodecError::Invalid("reason"))?;
        SessionState::Revoked { at, reason }
    } else {
        SessionState::Active
    };
    let generation = r.u64()?;
    let current = Verifier(r.array()?);
    let rotated_at = r.ts()?;
    let previous = if r.flag("previous")? {
        Some(Predecessor {
            verifier: Verifier(r.array()?),
            sealed_successor: Sealed(r.array()?),
            successor_seen: r.flag("successor_seen")?,
        })
    } else {
        None
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
    let context_summary = r.opt_string(MAX_SUMMARY_LEN, "context_summary")?;
    let data = r.bytes(MAX_DATA_LEN, "data")?.to_vec();
    let data_version = r.u64()?;
    r.finish()?;
    if expires_at > absolute_deadline || created_at > absolute_deadline {
        return Err(CodecError::Invalid("deadlines"));
    }
    Ok(SessionRecord {
        id,
        subject,
        resource,
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
        },
        binding,
        context_summary,
        data,
        data_version,
    })
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
    let mut r = Reader::open(input, KIND_TICKET)?;
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
    let mut r = Reader::open(input, KIND_SLOT)?;
    let s = SlotRecord {
        id: SlotId::from_bytes(r.array()?),
        session: SessionId::from_bytes(r.array()?),
        resource: resource(r.opt_string(MAX_NAME_LEN, "resource")?)?,
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
                    sealed_successor: Sealed([4; 32]),
                    successor_seen: true,
                }),
                retired: vec![Verifier([5; 32]), Verifier([6; 32])],
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
                ..r.credential.clone()
            },
            ..r
        };
        assert_eq!(decode_session(&encode_session(&plain)).unwrap(), plain);
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
        bytes[0] = 2;
        assert_eq!(decode_session(&bytes), Err(CodecError::UnknownVersion(2)));
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
        // The byte after id (18) + subject (4 + 5) + resource flag.
        let resource_flag = 2 + ID_BYTES + 4 + 5;
        bytes[resource_flag] = 7;
        assert_eq!(decode_session(&bytes), Err(CodecError::Invalid("resource")));
    }
}
