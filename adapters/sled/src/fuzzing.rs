//! The untrusted-bytes entry point of the `sled_values` fuzz target.
//!
//! Records are stored in the engine's codec (fuzzed by `record_decode`); this covers every key
//! and value format the adapter invents on top: expiry-index keys, index member keys, group
//! heads, counters, creation logs and the creation-order index's keys and values. Each must
//! decode to a typed error or to a value that re-encodes to exactly the same bytes (the formats
//! are canonical) — never panic. The one exception is a creation log of format 1, which is
//! still read but re-encoded as format 2: it must survive that round trip unchanged.

use crate::keys;

/// Decodes `data` as one stored format chosen by its first byte; panics only if a decoded
/// value does not re-encode to the input (the fuzz oracle).
#[doc(hidden)]
pub fn decode_stored(data: &[u8]) {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    // First bytes 250..=255 pick the formats added later; below, `% 5` keeps the meaning of
    // every input already in the corpus.
    if which >= 250 {
        if which < 253 {
            if let Ok(id) = keys::decode_order_key(rest) {
                assert_eq!(
                    &rest[16..],
                    &id.as_bytes()[..],
                    "order key names another id"
                );
            }
        } else if let Ok(o) = keys::decode_order(rest) {
            assert_eq!(
                keys::encode_order(o),
                rest,
                "creation order is not canonical"
            );
        }
        return;
    }
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
                let again = keys::encode_rate(&r);
                if rest.first() == again.first() {
                    assert_eq!(again, rest, "creation log is not canonical");
                } else {
                    // A format-1 log, upgraded: same entries, none naming a session.
                    assert!(r.creations.iter().all(|c| c.id.is_none()));
                    assert_eq!(
                        keys::decode_rate(&again).ok(),
                        Some(r),
                        "log upgrade lost data"
                    );
                }
            }
        }
    }
}
