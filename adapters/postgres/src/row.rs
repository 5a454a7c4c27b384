//! Row ↔ record mapping: a session's typed columns, from the record on every write, and back —
//! checked as the engine's codec checks bytes — on every read.

use leasehold::codec;
use leasehold::crypto::{BindingHash, Sealed, Verifier};
use leasehold::record::{Credential, Predecessor};
use leasehold::store::check_loaded;
use leasehold::{
    AccessGrant, Kind, Resource, RevokeReason, SessionId, SessionRecord, SessionState, StoreError,
    Subject, Timestamp,
};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// Bytes of a session, ticket or slot id.
pub(crate) const ID_BYTES: usize = 18;

/// A u64 (times in ms, versions) as a `bigint`; a record field beyond it is refused as a write
/// (never happens with real clocks: `MAX_DURATION` keeps deadlines near 2^42 ms).
pub(crate) fn int(v: u64, what: &'static str) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::InvalidWrite(what))
}

/// A caller's clock or a duration in ms as a `bigint`, saturating (judging at i64::MAX ms is
/// judging at "everything is due", as the u64 would).
pub(crate) fn sat(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

/// A `bigint` ms read from the store as a time; negative is corrupt.
pub(crate) fn time(v: i64, what: &str) -> Result<Timestamp, StoreError> {
    u64::try_from(v)
        .map(Timestamp::from_millis)
        .map_err(|_| StoreError::Corrupt(format!("negative {what}")))
}

/// An 18-byte id read from the store.
pub(crate) fn id_bytes(v: &[u8], what: &str) -> Result<[u8; ID_BYTES], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not {} bytes", v.len())))
}

/// A 32-byte value (a verifier, a sealed secret, a binding hash) read from the store.
fn bytes32(v: &[u8], what: &str) -> Result<[u8; 32], StoreError> {
    v.try_into()
        .map_err(|_| StoreError::Corrupt(format!("{what} is not 32 bytes")))
}

/// The columns of a session row, in the order of [`crate::open::SESSION_COLUMNS`] and of the
/// functions' parameters: one per field of the record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Columns {
    pub(crate) id: Vec<u8>,
    pub(crate) subject: String,
    pub(crate) resource: Option<String>,
    pub(crate) kind: String,
    pub(crate) state: i16,
    pub(crate) reason: Option<i16>,
    pub(crate) revoked_at: Option<i64>,
    pub(crate) version: i64,
    pub(crate) created_at: i64,
    pub(crate) last_seen_at: i64,
    pub(crate) absolute_deadline: i64,
    pub(crate) expires_at: i64,
    pub(crate) generation: i64,
    pub(crate) verifier: Vec<u8>,
    pub(crate) rotated_at: i64,
    pub(crate) prev_verifier: Option<Vec<u8>>,
    pub(crate) prev_sealed: Option<Vec<u8>>,
    pub(crate) prev_successor_seen: Option<bool>,
    pub(crate) retired: Vec<Vec<u8>>,
    pub(crate) access_verifier: Option<Vec<u8>>,
    pub(crate) access_expires_at: Option<i64>,
    pub(crate) binding: Option<Vec<u8>>,
    pub(crate) context_summary: Option<String>,
    pub(crate) data: Vec<u8>,
    pub(crate) data_version: i64,
}

/// How many columns [`Columns`] spans.
pub(crate) const COLUMNS: usize = 25;

impl Columns {
    /// The row a record is stored as. A field beyond a column's range is an `InvalidWrite`.
    pub(crate) fn of(r: &SessionRecord) -> Result<Columns, StoreError> {
        let (state, reason, revoked_at) = match r.state {
            SessionState::Active => (0, None, None),
            SessionState::Revoked { at, reason } => (
                1,
                Some(i16::from(reason.code())),
                Some(int(at.as_millis(), "revoked_at beyond i64 ms")?),
            ),
        };
        let c = &r.credential;
        Ok(Columns {
            id: r.id.as_bytes().to_vec(),
            subject: r.subject.as_str().to_owned(),
            resource: r.resource.as_ref().map(|x| x.as_str().to_owned()),
            kind: r.kind.as_str().to_owned(),
            state,
            reason,
            revoked_at,
            version: int(r.version, "version beyond i64")?,
            created_at: int(r.created_at.as_millis(), "created_at beyond i64 ms")?,
            last_seen_at: int(r.last_seen.as_millis(), "last_seen beyond i64 ms")?,
            absolute_deadline: int(
                r.absolute_deadline.as_millis(),
                "absolute_deadline beyond i64 ms",
            )?,
            expires_at: int(r.expires_at.as_millis(), "expires_at beyond i64 ms")?,
            generation: int(c.generation, "generation beyond i64")?,
            verifier: c.current.0.to_vec(),
            rotated_at: int(c.rotated_at.as_millis(), "rotated_at beyond i64 ms")?,
            prev_verifier: c.previous.as_ref().map(|p| p.verifier.0.to_vec()),
            prev_sealed: c
                .previous
                .as_ref()
                .and_then(|p| p.sealed_successor.map(|s| s.0.to_vec())),
            prev_successor_seen: c.previous.as_ref().map(|p| p.successor_seen),
            retired: c.retired.iter().map(|v| v.0.to_vec()).collect(),
            access_verifier: c.access.as_ref().map(|a| a.verifier.0.to_vec()),
            access_expires_at: c
                .access
                .as_ref()
                .map(|a| int(a.expires_at.as_millis(), "access expires_at beyond i64 ms"))
                .transpose()?,
            binding: r.binding.map(|b| b.0.to_vec()),
            context_summary: r.context_summary.clone(),
            data: r.data.clone(),
            data_version: int(r.data_version, "data_version beyond i64")?,
        })
    }

    /// Reads the columns from `row`, starting at column `at`. Every statement selects existing
    /// rows, so a row without an id there is `Corrupt`.
    pub(crate) fn read(row: &PgRow, at: usize) -> Result<Columns, StoreError> {
        let get = |e: sqlx::Error| StoreError::Corrupt(format!("session row: {e}"));
        let Some(id) = row.try_get::<Option<Vec<u8>>, _>(at).map_err(get)? else {
            return Err(StoreError::Corrupt("session row without an id".into()));
        };
        Ok(Columns {
            id,
            subject: row.try_get(at + 1).map_err(get)?,
            resource: row.try_get(at + 2).map_err(get)?,
            kind: row.try_get(at + 3).map_err(get)?,
            state: row.try_get(at + 4).map_err(get)?,
            reason: row.try_get(at + 5).map_err(get)?,
            revoked_at: row.try_get(at + 6).map_err(get)?,
            version: row.try_get(at + 7).map_err(get)?,
            created_at: row.try_get(at + 8).map_err(get)?,
            last_seen_at: row.try_get(at + 9).map_err(get)?,
            absolute_deadline: row.try_get(at + 10).map_err(get)?,
            expires_at: row.try_get(at + 11).map_err(get)?,
            generation: row.try_get(at + 12).map_err(get)?,
            verifier: row.try_get(at + 13).map_err(get)?,
            rotated_at: row.try_get(at + 14).map_err(get)?,
            prev_verifier: row.try_get(at + 15).map_err(get)?,
            prev_sealed: row.try_get(at + 16).map_err(get)?,
            prev_successor_seen: row.try_get(at + 17).map_err(get)?,
            retired: row.try_get(at + 18).map_err(get)?,
            access_verifier: row.try_get(at + 19).map_err(get)?,
            access_expires_at: row.try_get(at + 20).map_err(get)?,
            binding: row.try_get(at + 21).map_err(get)?,
            context_summary: row.try_get(at + 22).map_err(get)?,
            data: row.try_get(at + 23).map_err(get)?,
            data_version: row.try_get(at + 24).map_err(get)?,
        })
    }

    /// The record these columns hold. Every value is checked as the engine's codec checks its
    /// own bytes — the record must survive an encode and decode unchanged — and the record must
    /// be stored under its own id: anything else is `Corrupt` (fail closed), never a session.
    pub(crate) fn into_record(self) -> Result<SessionRecord, StoreError> {
        let key = SessionId::from_bytes(id_bytes(&self.id, "session id")?);
        let bad = |what: &str| StoreError::Corrupt(format!("session {key}: invalid {what}"));
        let time = |v: i64, what: &str| {
            u64::try_from(v)
                .map(Timestamp::from_millis)
                .map_err(|_| bad(what))
        };
        let count = |v: i64, what: &str| u64::try_from(v).map_err(|_| bad(what));
        let state = match (self.state, self.reason, self.revoked_at) {
            (0, None, None) => SessionState::Active,
            (1, Some(reason), Some(at)) => SessionState::Revoked {
                at: time(at, "revoked_at")?,
                reason: u8::try_from(reason)
                    .ok()
                    .and_then(RevokeReason::from_code)
                    .ok_or_else(|| bad("reason"))?,
            },
            _ => return Err(bad("state")),
        };
        let previous = match (
            self.prev_verifier,
            self.prev_sealed,
            self.prev_successor_seen,
        ) {
            (None, None, None) => None,
            (Some(v), sealed, Some(seen)) => Some(Predecessor {
                verifier: Verifier(bytes32(&v, "previous verifier")?),
                sealed_successor: sealed
                    .map(|s| bytes32(&s, "sealed successor").map(Sealed))
                    .transpose()?,
                successor_seen: seen,
            }),
            _ => return Err(bad("predecessor")),
        };
        let access = match (self.access_verifier, self.access_expires_at) {
            (None, None) => None,
            (Some(v), Some(t)) => Some(AccessGrant {
                verifier: Verifier(bytes32(&v, "access verifier")?),
                expires_at: time(t, "access expires_at")?,
            }),
            _ => return Err(bad("access grant")),
        };
        let record = SessionRecord {
            id: key,
            subject: Subject::new(self.subject).map_err(|_| bad("subject"))?,
            resource: self
                .resource
                .map(Resource::new)
                .transpose()
                .map_err(|_| bad("resource"))?,
            kind: Kind::new(self.kind).map_err(|_| bad("kind"))?,
            version: count(self.version, "version")?,
            created_at: time(self.created_at, "created_at")?,
            last_seen: time(self.last_seen_at, "last_seen_at")?,
            absolute_deadline: time(self.absolute_deadline, "absolute_deadline")?,
            expires_at: time(self.expires_at, "expires_at")?,
            state,
            credential: Credential {
                generation: count(self.generation, "generation")?,
                current: Verifier(bytes32(&self.verifier, "verifier")?),
                rotated_at: time(self.rotated_at, "rotated_at")?,
                previous,
                retired: self
                    .retired
                    .iter()
                    .map(|v| bytes32(v, "retired verifier").map(Verifier))
                    .collect::<Result<_, _>>()?,
                access,
            },
            binding: self
                .binding
                .map(|b| bytes32(&b, "binding").map(BindingHash))
                .transpose()?,
            context_summary: self.context_summary,
            data: self.data,
            data_version: count(self.data_version, "data_version")?,
        };
        // The codec's own rules (deadlines, lengths, history bound…): a record the engine
        // would refuse as bytes is refused as a row too.
        match codec::decode_session(&codec::encode_session(&record)) {
            Ok(same) if same == record => {}
            _ => return Err(bad("record (the codec refuses it)")),
        }
        check_loaded(&key, &record)?;
        Ok(record)
    }
}
