//! The untrusted-bytes entry point of the `redis_values` fuzz target: every value this adapter
//! reads back from Redis goes through one of these decoders (a session record under its key, a
//! ticket, a slot, a key name). Each must give a typed error or a value — never panic.

use leasehold::SessionId;

use crate::keys::Keys;

/// Decodes `data` as one stored format chosen by its first byte.
#[doc(hidden)]
pub fn decode_stored(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = crate::session::decode(Some(&SessionId::from_bytes([0; 18])), rest);
            let _ = crate::session::decode(None, rest);
        }
        1 => {
            let _ = leasehold::codec::decode_ticket(rest);
        }
        2 => {
            let _ = leasehold::codec::decode_slot(rest);
        }
        _ => {
            let _ = Keys::new("lh".into()).classify(rest);
        }
    }
}
