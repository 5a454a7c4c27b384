//! The untrusted-input entry point of the `postgres_row` fuzz target: the row ↔ record mapping.
//!
//! A row read from the server is untrusted (a hand edit, a bad restore, another writer): mapping
//! it must give a typed `Corrupt` error or a record — never panic — and the mapping must be
//! exact both ways, so nothing a row says is lost or invented on the way.

use leasehold::codec;

use crate::row::Columns;

/// A cursor handing out fuzz bytes as column values (zeroes once the input is used up).
struct Bytes<'a>(&'a [u8]);

impl Bytes<'_> {
    fn u8(&mut self) -> u8 {
        match self.0.split_first() {
            Some((&b, rest)) => {
                self.0 = rest;
                b
            }
            None => 0,
        }
    }
    fn take(&mut self, n: usize) -> Vec<u8> {
        let n = n.min(self.0.len());
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        head.to_vec()
    }
    fn flag(&mut self) -> bool {
        self.u8() & 1 == 1
    }
    fn i64(&mut self) -> i64 {
        let mut b = [0u8; 8];
        for x in &mut b {
            *x = self.u8();
        }
        i64::from_le_bytes(b)
    }
    /// Small, non-negative, or anything (one in four): times and counters.
    fn int(&mut self) -> i64 {
        match self.u8() % 4 {
            0 => self.i64(),
            _ => i64::from(self.u8()) * 1000 + i64::from(self.u8()),
        }
    }
    /// Mostly 32 bytes (what the columns hold), sometimes another length.
    fn bytes32(&mut self) -> Vec<u8> {
        let n = if self.u8() % 8 == 0 {
            usize::from(self.u8() % 40)
        } else {
            32
        };
        self.take(n)
    }
    fn text(&mut self) -> String {
        let n = usize::from(self.u8() % 24);
        String::from_utf8_lossy(&self.take(n)).into_owned()
    }
    fn opt<T>(&mut self, f: impl FnOnce(&mut Self) -> T) -> Option<T> {
        if self.flag() { Some(f(self)) } else { None }
    }
}

/// Columns built from fuzz bytes, field by field.
fn columns(b: &mut Bytes<'_>) -> Columns {
    let id_len = if b.u8() % 16 == 0 {
        usize::from(b.u8() % 24)
    } else {
        18
    };
    Columns {
        id: b.take(id_len),
        subject: b.text(),
        resource: b.opt(Bytes::text),
        kind: b.text(),
        state: i16::from(b.u8() % 3),
        reason: b.opt(|b| i16::from(b.u8() % 8)),
        revoked_at: b.opt(Bytes::int),
        version: b.int(),
        created_at: b.int(),
        last_seen_at: b.int(),
        absolute_deadline: b.int(),
        expires_at: b.int(),
        generation: b.int(),
        verifier: b.bytes32(),
        rotated_at: b.int(),
        prev_verifier: b.opt(Bytes::bytes32),
        prev_sealed: b.opt(Bytes::bytes32),
        prev_successor_seen: b.opt(Bytes::flag),
        retired: (0..b.u8() % 12).map(|_| b.bytes32()).collect(),
        access_verifier: b.opt(Bytes::bytes32),
        access_expires_at: b.opt(Bytes::int),
        binding: b.opt(Bytes::bytes32),
        context_summary: b.opt(Bytes::text),
        data: {
            let n = usize::from(b.u8());
            b.take(n)
        },
        data_version: b.int(),
    }
}

/// The fuzz body. First byte even: the rest is a record in the engine's encoding; if it
/// decodes, its row must map back to exactly that record. First byte odd: the rest builds a row
/// field by field. Either way a row that maps to a record must be exactly that record's row
/// (the mapping is a bijection on valid rows), and one that does not is `Corrupt`. Returns
/// whether the row mapped to a record (so a corpus replay can tell it is not vacuous).
#[doc(hidden)]
pub fn row_round_trip(data: &[u8]) -> bool {
    let Some((&mode, rest)) = data.split_first() else {
        return false;
    };
    let row = if mode % 2 == 0 {
        let Ok(record) = codec::decode_session(rest) else {
            return false;
        };
        let Ok(row) = Columns::of(&record) else {
            return false; // a field beyond i64: refused as a write, never stored
        };
        match row.clone().into_record() {
            Ok(back) => assert_eq!(back, record, "a record's row maps to another record"),
            Err(e) => panic!("a record the codec accepts is refused as a row: {e}"),
        }
        row
    } else {
        columns(&mut Bytes(rest))
    };
    match row.clone().into_record() {
        Ok(record) => {
            let Ok(again) = Columns::of(&record) else {
                panic!("a record mapped from a row does not fit the columns");
            };
            assert_eq!(again, row, "a row maps to a record whose row differs");
            true
        }
        Err(leasehold::StoreError::Corrupt(_)) => false,
        Err(other) => panic!("a bad row must be Corrupt, got {other:?}"),
    }
}
