//! The untrusted-bytes entry point of the `sled_values` fuzz target.
//!
//! Records are stored in the engine's codec (fuzzed by `record_decode`); this covers every key
//! and value format the adapter invents on top: expiry-index keys, index member keys, group
//! heads, counters and creation logs. Each must decode to a typed error or to a value that
//! re-encodes to exactly the same bytes (the formats are canonical) — never panic.

use crate::keys;

/// Decodes `data` as one stored format chosen by its first byte; panics only if a decoded
/// value does not re-encode to the input (the fuzz oracle).
#[doc(hidden)]
pub fn decode_stored(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    match which % 5 {
        0 => {
            if let Ok((at, due)) = keys::decode_expiry_key(rest) {
                assert_eq!(
                    keys::expiry_key(at, &due),
                    rest,
                    "expiry key is not canonical"
                );
            }
        }
        1 => {
            let Some((&prefix_len, key)) = rest.split_first() else {
                return;
            };
            if let Ok(id) = keys::member_of(key, usize::from(prefix_len)) {
                assert_eq!(&key[usize::from(prefix_len)..], &id[..]);
            }
        }
        2 => {
            if let Ok(h) = keys::decode_head(rest) {
                assert_eq!(keys::encode_head(h), rest, "group head is not canonical");
            }
        }
        3 => {
            if let Ok(n) = keys::decode_counter(rest) {
                assert_eq!(keys::encode_counter(n), rest, "counter is not canonical");
            }
        }
        _ => {
            if let Ok(r) = keys::decode_rate(rest) {
                assert_eq!(keys::encode_rate(&r), rest, "creation log is not canonical");
            }
        }
    }
}
