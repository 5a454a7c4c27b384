//! The untrusted-bytes entry point of the `redis_values` fuzz target: every value this adapter
//! reads back from Redis and decodes in Rust goes through one of these decoders (a session
//! record under its key or in a listing, a ticket, a slot, a key name from `SCAN`, a slot
//! reservation member). Each must give a typed error or a value — never panic — and a decoded
//! value must stand for exactly the input (the formats are canonical; an older record format
//! is rewritten once as the current one), or under a key, for that key's id.

use leasehold::SessionId;
use leasehold::codec;

use crate::keys::{Held, Keys};

/// Decodes `data` as one stored format chosen by its first byte (`% 5`); panics only if a
/// decoded value does not stand for the input (the fuzz oracle).
#[doc(hidden)]
pub fn decode_stored(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            let key = SessionId::from_bytes([0; 18]);
            if let Ok(r) = crate::session::decode(Some(&key), rest) {
                assert_eq!(r.id, key, "a record accepted under another id");
            }
            if let Ok(r) = crate::session::decode(None, rest) {
                let again = codec::encode_session(&r);
                canonical(
                    rest,
                    &again,
                    codec::decode_session(&again).map(|r| codec::encode_session(&r)),
                );
            }
        }
        1 => {
            if let Ok(t) = codec::decode_ticket(rest) {
                let again = codec::encode_ticket(&t);
                canonical(
                    rest,
                    &again,
                    codec::decode_ticket(&again).map(|t| codec::encode_ticket(&t)),
                );
            }
        }
        2 => {
            if let Ok(s) = codec::decode_slot(rest) {
                let again = codec::encode_slot(&s);
                canonical(
                    rest,
                    &again,
                    codec::decode_slot(&again).map(|s| codec::encode_slot(&s)),
                );
            }
        }
        3 => {
            let keys = Keys::new("lh".into());
            let hex = |id: &[u8]| id.iter().map(|b| format!("{b:02x}")).collect::<String>();
            let named = match keys.classify(rest) {
                Some(Held::Session(id)) => Some(hex(id.as_bytes())),
                Some(Held::Ticket(id)) => Some(hex(id.as_bytes())),
                Some(Held::Slot(id)) => Some(hex(id.as_bytes())),
                Some(Held::Other) | None => None,
            };
            if let Some(h) = named {
                assert!(rest.ends_with(h.as_bytes()), "key names another id");
            }
        }
        _ => {
            if let Some((slot, session)) = crate::slots::parse_reservation(rest) {
                assert_eq!(
                    crate::slots::reservation(&slot, &session),
                    rest,
                    "reservation not canonical"
                );
            }
        }
    }
}

/// A decoded value re-encodes to exactly its input when the input is in the current format;
/// an older format (still read, rewritten as the current one) re-encodes to bytes that decode
/// and re-encode to themselves.
fn canonical<E>(input: &[u8], encoded: &[u8], round_trip: Result<Vec<u8>, E>) {
    if input.first() == Some(&codec::FORMAT_VERSION) {
        assert_eq!(encoded, input, "not canonical");
    } else {
        assert_eq!(
            encoded.first(),
            Some(&codec::FORMAT_VERSION),
            "old format kept"
        );
        assert!(
            round_trip.is_ok_and(|b| b == encoded),
            "a rewritten old format does not round-trip"
        );
    }
}
