//! Identifiers: non-secret, safe to log, put in URLs and show in admin lists.
//!
//! Every id is `shard tag (2 bytes) ‖ 128 random bits`, written as 36 lowercase hex digits.
//! The shard tag is derived from the subject, so a sharding store (Redis Cluster hash tags,
//! partitioned tables) can place a session, its tickets and its slots next to the subject's
//! index knowing only the id.

use std::fmt;

use sha2::{Digest, Sha256};

use crate::entropy::{Entropy, EntropyError};
use crate::error::InputError;

/// Length in bytes of an id: a 2-byte shard tag and 16 random bytes.
pub const ID_BYTES: usize = 18;
/// Length of an id's text form (lowercase hex).
pub const ID_TEXT_LEN: usize = ID_BYTES * 2;
/// Maximum length in bytes of a [`Subject`] or a [`Resource`] (long enough for a `did:web`
/// subject or a URL-shaped resource).
pub const MAX_NAME_LEN: usize = 1024;

/// A 16-bit tag derived from a subject; ids of that subject's sessions start with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ShardTag(pub u16);

impl ShardTag {
    /// The tag of `subject`: the first two bytes of a domain-separated SHA-256.
    pub fn of(subject: &Subject) -> Self {
        let h = Sha256::new()
            .chain_update(b"leasehold/v1/shard\0")
            .chain_update(subject.as_str().as_bytes())
            .finalize();
        ShardTag(u16::from_be_bytes([h[0], h[1]]))
    }

    /// Four lowercase hex digits, e.g. for a Redis `{hash tag}`.
    pub fn to_hex(self) -> String {
        format!("{:04x}", self.0)
    }
}

macro_rules! id_type {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name([u8; ID_BYTES]);

        impl $name {
            /// A fresh id with `tag` and 128 random bits.
            pub fn generate(tag: ShardTag, entropy: &dyn Entropy) -> Result<Self, EntropyError> {
                let mut b = [0u8; ID_BYTES];
                b[..2].copy_from_slice(&tag.0.to_be_bytes());
                entropy.fill(&mut b[2..])?;
                Ok($name(b))
            }

            /// From raw bytes (as stored).
            pub const fn from_bytes(b: [u8; ID_BYTES]) -> Self {
                $name(b)
            }

            /// The raw bytes.
            pub const fn as_bytes(&self) -> &[u8; ID_BYTES] {
                &self.0
            }

            /// The shard tag this id carries.
            pub fn shard_tag(&self) -> ShardTag {
                ShardTag(u16::from_be_bytes([self.0[0], self.0[1]]))
            }

            /// Parses the 36-character lowercase hex form; anything else is `None`.
            pub fn parse(s: &str) -> Option<Self> {
                crate::ids::parse_hex_id(s.as_bytes()).map($name)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let text = crate::ids::hex_id(&self.0);
                f.write_str(std::str::from_utf8(&text).map_err(|_| fmt::Error)?)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

id_type!(
    /// The non-secret id of a session. It is also the token's selector: one key lookup finds
    /// the record.
    SessionId
);
id_type!(
    /// The id of a one-shot ticket (the selector of a ticket token).
    TicketId
);
id_type!(
    /// The id of a slot lease.
    SlotId
);

/// The 36 lowercase hex digits of an id, without a formatter per byte (ids are formatted into
/// every issued token).
pub(crate) fn hex_id(b: &[u8; ID_BYTES]) -> [u8; ID_TEXT_LEN] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = [0u8; ID_TEXT_LEN];
    for (pair, byte) in out.chunks_exact_mut(2).zip(b) {
        pair[0] = DIGITS[usize::from(byte >> 4)];
        pair[1] = DIGITS[usize::from(byte & 0x0f)];
    }
    out
}

/// Strict lowercase-hex decoding of an id (bytes, so non-UTF-8 input is handled too). Every
/// presented token's selector goes through it: one table lookup per digit, no branch per
/// character class.
pub(crate) fn parse_hex_id(s: &[u8]) -> Option<[u8; ID_BYTES]> {
    if s.len() != ID_TEXT_LEN {
        return None;
    }
    let mut out = [0u8; ID_BYTES];
    let mut bad = 0u8;
    for (o, pair) in out.iter_mut().zip(s.chunks_exact(2)) {
        let (hi, lo) = (HEX[usize::from(pair[0])], HEX[usize::from(pair[1])]);
        bad |= (hi | lo) & INVALID;
        *o = (hi << 4) | (lo & 0x0f);
    }
    (bad == 0).then_some(out)
}

/// Marks a byte that is not a lowercase hex digit in [`HEX`].
const INVALID: u8 = 0x80;

/// The value of each byte as a lowercase hex digit, or [`INVALID`].
const HEX: [u8; 256] = {
    let mut t = [INVALID; 256];
    let mut c = 0;
    while c < 10 {
        t[b'0' as usize + c] = c as u8;
        c += 1;
    }
    let mut c = 0;
    while c < 6 {
        t[b'a' as usize + c] = 10 + c as u8;
        c += 1;
    }
    t
};

/// The checks of [`Subject::new`] and [`Resource::new`].
fn check_name(s: &str, what: &'static str) -> Result<(), InputError> {
    if s.is_empty() {
        return Err(InputError::Empty(what));
    }
    if s.len() > MAX_NAME_LEN {
        return Err(InputError::TooLong {
            what,
            max: MAX_NAME_LEN,
        });
    }
    if has_control(s) {
        return Err(InputError::ControlCharacter(what));
    }
    Ok(())
}

/// `s.chars().any(char::is_control)` on bytes: the control characters (category Cc) are
/// U+0000–U+001F, U+007F and U+0080–U+009F, which UTF-8 writes as one byte below 0x20, 0x7F,
/// or 0xC2 followed by 0x80–0x9F (0xC2 is only ever a lead byte in valid UTF-8). Decoding
/// every char made this check a visible part of each record decode.
pub(crate) fn has_control(s: &str) -> bool {
    let b = s.as_bytes();
    b.iter().enumerate().any(|(i, &x)| {
        x < 0x20
            || x == 0x7f
            || (x == 0xc2 && b.get(i + 1).is_some_and(|n| (0x80..=0x9f).contains(n)))
    })
}

macro_rules! name_type {
    ($(#[$doc:meta])* $name:ident, $what:literal) => {
        $(#[$doc])*
        ///
        /// Shared, not copied: cloning one (every record and session carries it) is a
        /// reference-count increment.
        #[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(std::sync::Arc<str>);

        impl $name {
            /// Validates: non-empty, at most [`MAX_NAME_LEN`] bytes, no control characters.
            pub fn new(s: impl Into<String>) -> Result<Self, InputError> {
                let s = s.into();
                check_name(&s, $what)?;
                Ok($name(s.into()))
            }

            /// [`new`](Self::new) from borrowed text, in one allocation (the codec decodes
            /// a name on every load).
            pub(crate) fn from_text(s: &str) -> Result<Self, InputError> {
                check_name(s, $what)?;
                Ok($name(s.into()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({:?})"), self.0)
            }
        }

        impl TryFrom<&str> for $name {
            type Error = InputError;
            fn try_from(s: &str) -> Result<Self, InputError> {
                $name::new(s)
            }
        }
    };
}

name_type!(
    /// Who owns a session (user id, DID, account). Opaque to the engine.
    Subject,
    "subject"
);
name_type!(
    /// An optional tag on a session (a sandbox, a terminal, a tenant): revoking the resource
    /// revokes every session on it.
    Resource,
    "resource"
);

/// A session's kind: the token prefix of the [`Policy`](crate::Policy) it was issued under
/// (`lh1`, `refresh`, `pty`…), bound into its record. A token is refused by a driver of another
/// kind even over the same store, so a prefix swapped on a token can never move a session
/// under another kind's lifetimes. 1–16 characters of `[a-z0-9]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Kind(std::sync::Arc<str>);

impl Kind {
    /// Validates `[a-z0-9]{1,16}` (a token prefix).
    pub fn new(s: impl Into<String>) -> Result<Self, InputError> {
        let s = s.into();
        Kind::check(&s)?;
        Ok(Kind(s.into()))
    }

    /// [`new`](Self::new) from borrowed text, in one allocation.
    pub(crate) fn from_text(s: &str) -> Result<Self, InputError> {
        Kind::check(s)?;
        Ok(Kind(s.into()))
    }

    fn check(s: &str) -> Result<(), InputError> {
        if s.is_empty() {
            return Err(InputError::Empty("kind"));
        }
        if s.len() > crate::token::MAX_PREFIX_LEN {
            return Err(InputError::TooLong {
                what: "kind",
                max: crate::token::MAX_PREFIX_LEN,
            });
        }
        if !s
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        {
            return Err(InputError::Invalid("kind"));
        }
        Ok(())
    }

    /// The kind of records written before kinds were stored (format ≤ 2): the default token
    /// prefix, which is what nearly every such deployment used.
    pub fn legacy() -> Self {
        Kind("lh1".into())
    }

    /// The text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Kind({:?})", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use proptest::prelude::*;

    #[test]
    fn has_control_matches_char_is_control_on_every_char() {
        for c in (0..=0x10_ffff).filter_map(char::from_u32) {
            for s in [
                c.to_string(),
                format!("a{c}"),
                format!("{c}\u{80}"),
                format!("é{c}z"),
            ] {
                assert_eq!(
                    has_control(&s),
                    s.chars().any(char::is_control),
                    "{:?}",
                    s.escape_unicode().to_string()
                );
            }
        }
    }

    proptest! {
        #[test]
        fn has_control_matches_char_is_control(s in any::<String>()) {
            prop_assert_eq!(has_control(&s), s.chars().any(char::is_control));
        }
    }

    #[test]
    fn id_round_trips_through_text_and_keeps_its_tag() {
        let subject = Subject::new("alice").unwrap();
        let tag = ShardTag::of(&subject);
        let id = SessionId::generate(tag, &SeededEntropy::new(1)).unwrap();
        let text = id.to_string();
        assert_eq!(text.len(), ID_TEXT_LEN);
        assert!(text.starts_with(&tag.to_hex()));
        assert_eq!(SessionId::parse(&text), Some(id));
        assert_eq!(id.shard_tag(), tag);
    }

    #[test]
    fn id_parse_is_strict() {
        let good = "00".repeat(ID_BYTES);
        assert!(SessionId::parse(&good).is_some());
        assert!(SessionId::parse(&good.to_uppercase().replace('0', "A")).is_none());
        assert!(SessionId::parse(&good[1..]).is_none());
        assert!(SessionId::parse(&format!("{good}0")).is_none());
        assert!(SessionId::parse(&format!("g{}", &good[1..])).is_none());
    }

    #[test]
    fn every_byte_is_a_digit_exactly_when_it_is_lowercase_hex() {
        for b in 0..=255u8 {
            for at in [0, 17, ID_TEXT_LEN - 1] {
                let mut text = [b'0'; ID_TEXT_LEN];
                text[at] = b;
                let want = matches!(b, b'0'..=b'9' | b'a'..=b'f');
                assert_eq!(parse_hex_id(&text).is_some(), want, "byte {b:#04x} at {at}");
            }
        }
        let text = hex_id(&[0xa5; ID_BYTES]);
        assert_eq!(parse_hex_id(&text), Some([0xa5; ID_BYTES]));
    }

    #[test]
    fn names_are_validated() {
        assert_eq!(Subject::new(""), Err(InputError::Empty("subject")));
        assert!(matches!(
            Resource::new("x".repeat(MAX_NAME_LEN + 1)),
            Err(InputError::TooLong {
                what: "resource",
                ..
            })
        ));
        assert!(Subject::new("x".repeat(MAX_NAME_LEN)).is_ok());
        assert_eq!(
            Subject::new("a\nb"),
            Err(InputError::ControlCharacter("subject"))
        );
    }

    #[test]
    fn shard_tag_text_is_four_hex_digits() {
        assert_eq!(ShardTag(0x00ab).to_hex(), "00ab");
        assert_eq!(ShardTag(0xbeef).to_hex(), "beef");
    }

    #[test]
    fn tags_differ_between_subjects() {
        let a = ShardTag::of(&Subject::new("alice").unwrap());
        let b = ShardTag::of(&Subject::new("bob").unwrap());
        assert_ne!(a, b);
    }
}
