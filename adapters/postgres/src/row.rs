//! Row ↔ record mapping: a session's typed columns, derived from the record on every write and
//! checked against its encoded bytes on every read.

use leasehold::codec;
use leasehold::store::check_loaded;
use leasehold::{SessionId, SessionRecord, SessionState, StoreError, Timestamp};
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

/// The typed columns of a session row, in the order of [`crate::open::SESSION_COLUMNS`] and of
/// the functions' parameters.
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
    pub(crate) has_binding: bool,
    pub(crate) context_summary: Option<String>,
    pub(crate) data_bytes: i32,
    pub(crate) data_version: i64,
    pub(crate) record: Vec<u8>,
}

impl Columns {
    /// The row a record is stored as: its columns and its encoding.
    pub(crate) fn of(r: &SessionRecord) -> Result<Columns, StoreError> {
        let (state, reason, revoked_at) = match r.state {
            SessionState::Active => (0, None, None),
            SessionState::Revoked { at, reason } => (
                1,
                Some(i16::from(reason.code())),
                Some(int(at.as_millis(), "revoked_at beyond i64 ms")?),
            ),
        };
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
            generation: int(r.credential.generation, "generation beyond i64")?,
            has_binding: r.binding.is_some(),
            context_summary: r.context_summary.clone(),
            data_bytes: i32::try_from(r.data.len())
                .map_err(|_| StoreError::InvalidWrite("data too long"))?,
            data_version: int(r.data_version, "data_version beyond i64")?,
            record: codec::encode_session(r),
        })
    }

    /// Reads the columns from `row`, starting at column `at`. `None` if the row has no session
    /// there (a `LEFT JOIN` that found none).
    pub(crate) fn read(row: &PgRow, at: usize) -> Result<Option<Columns>, StoreError> {
        let get = |e: sqlx::Error| StoreError::Corrupt(format!("session row: {e}"));
        let Some(id) = row.try_get::<Option<Vec<u8>>, _>(at).map_err(get)? else {
            return Ok(None);
        };
        Ok(Some(Columns {
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
            has_binding: row.try_get(at + 13).map_err(get)?,
            context_summary: row.try_get(at + 14).map_err(get)?,
            data_bytes: row.try_get(at + 15).map_err(get)?,
            data_version: row.try_get(at + 16).map_err(get)?,
            record: row.try_get(at + 17).map_err(get)?,
        }))
    }

    /// The record these columns hold: its bytes decoded, stored under its own id, and agreeing
    /// with every column (a row edited by hand, or half of it restored, is `Corrupt`).
    pub(crate) fn into_record(mut self) -> Result<SessionRecord, StoreError> {
        let key = SessionId::from_bytes(id_bytes(&self.id, "session id")?);
        let bytes = std::mem::take(&mut self.record);
        let record = codec::decode_session(&bytes)
            .map_err(|e| StoreError::Corrupt(format!("session {key}: {e}")))?;
        check_loaded(&key, &record)?;
        let mut expected = Columns::of(&record).map_err(|_| {
            StoreError::Corrupt(format!(
                "session {key}: a field is beyond the columns' range"
            ))
        })?;
        // Compare the columns only (the bytes of an older format re-encode differently).
        expected.record = Vec::new();
        if self != expected {
            return Err(StoreError::Corrupt(format!(
                "session {key}: the columns disagree with the record"
            )));
        }
        Ok(record)
    }
}
