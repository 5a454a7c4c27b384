//! Split tokens: `<prefix>_<selector>_<secret>`.
//!
//! The selector is the (non-secret) id, 36 lowercase hex digits; the secret is 32 bytes in
//! unpadded base64url (43 characters). Parsing works on bytes, checks the exact length first and
//! never allocates or panics, so a malformed header is refused before any store call.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use zeroize::Zeroizing;

use crate::crypto::{SECRET_BYTES, Secret};
use crate::ids::{ID_BYTES, ID_TEXT_LEN, SessionId, TicketId, parse_hex_id};

/// Length of the base64url text of a secret.
pub const SECRET_TEXT_LEN: usize = 43;
/// Longest accepted token prefix.
pub const MAX_PREFIX_LEN: usize = 16;

/// Why a presented token was refused before any store call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Nothing was presented.
    #[error("empty token")]
    Empty,
    /// Longer than any token this policy issues.
    #[error("token too long")]
    TooLong,
    /// Shorter than any token this policy issues.
    #[error("token truncated")]
    Truncated,
    /// Not valid UTF-8.
    #[error("token is not UTF-8")]
    NotUtf8,
    /// Does not start with this policy's prefix and `_`.
    #[error("wrong token prefix")]
    WrongPrefix,
    /// The separator between selector and secret is missing.
    #[error("token is malformed")]
    Malformed,
    /// The selector is not 36 lowercase hex digits.
    #[error("token selector is not a valid id")]
    BadSelector,
    /// The secret is not canonical base64url of 32 bytes.
    #[error("token secret is not valid base64url")]
    BadSecret,
}

/// A token parsed from untrusted input: the selector and the secret (still unverified).
/// `Debug` is redacted.
pub struct Presented {
    pub(crate) id: [u8; ID_BYTES],
    pub(crate) secret: Secret,
}

impl Presented {
    /// The selector (the id's raw bytes).
    pub fn id_bytes(&self) -> &[u8; ID_BYTES] {
        &self.id
    }
}

impl fmt::Debug for Presented {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Presented(<redacted>)")
    }
}

/// Parses untrusted `input` as `<prefix>_<36 hex>_<43 base64url>`; never panics.
pub fn parse(input: &[u8], prefix: &str) -> Result<Presented, TokenError> {
    let expected = prefix.len() + 1 + ID_TEXT_LEN + 1 + SECRET_TEXT_LEN;
    if input.is_empty() {
        return Err(TokenError::Empty);
    }
    if input.len() > expected {
        return Err(TokenError::TooLong);
    }
    let text = std::str::from_utf8(input).map_err(|_| TokenError::NotUtf8)?;
    let rest = text
        .strip_prefix(prefix)
        .and_then(|r| r.strip_prefix('_'))
        .ok_or(TokenError::WrongPrefix)?;
    if input.len() < expected {
        return Err(TokenError::Truncated);
    }
    // Split on bytes: a multi-byte character may straddle any boundary of untrusted input.
    let (selector, secret) = rest
        .as_bytes()
        .split_at_checked(ID_TEXT_LEN)
        .ok_or(TokenError::Truncated)?;
    let secret = secret.strip_prefix(b"_").ok_or(TokenError::Malformed)?;
    let id = parse_hex_id(selector).ok_or(TokenError::BadSelector)?;
    let mut buf = Zeroizing::new([0u8; SECRET_BYTES + 3]);
    let n = URL_SAFE_NO_PAD
        .decode_slice(secret, &mut buf[..])
        .map_err(|_| TokenError::BadSecret)?;
    if n != SECRET_BYTES {
        return Err(TokenError::BadSecret);
    }
    let mut raw = [0u8; SECRET_BYTES];
    raw.copy_from_slice(&buf[..SECRET_BYTES]);
    Ok(Presented {
        id,
        secret: Secret::from_bytes(raw),
    })
}

/// The unpadded base64url alphabet, in one cache line: which character a secret's bits pick is
/// not told by which line the lookup touched.
#[repr(align(64))]
struct Alphabet([u8; 64]);
static BASE64URL: Alphabet =
    Alphabet(*b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_");

/// Appends the unpadded base64url of a secret (43 characters), the same text as
/// `URL_SAFE_NO_PAD` (tested), written straight into the token's buffer: no intermediate buffer
/// holding the secret's text.
fn push_base64url(out: &mut Vec<u8>, secret: &[u8; SECRET_BYTES]) {
    let char_of = |sextet: u32| BASE64URL.0[(sextet & 63) as usize];
    // 32 bytes: ten groups of three (four characters each), then two bytes (three characters).
    for group in secret[..30].chunks_exact(3) {
        let n = u32::from(group[0]) << 16 | u32::from(group[1]) << 8 | u32::from(group[2]);
        out.extend_from_slice(&[
            char_of(n >> 18),
            char_of(n >> 12),
            char_of(n >> 6),
            char_of(n),
        ]);
    }
    let n = u32::from(secret[30]) << 16 | u32::from(secret[31]) << 8;
    out.extend_from_slice(&[char_of(n >> 18), char_of(n >> 12), char_of(n >> 6)]);
}

/// `<prefix>_<hex id>_<base64url secret>`, in one allocation of the exact length (so no
/// reallocation leaves a copy of the secret behind), erased when dropped.
fn format_token(prefix: &str, id: &[u8; ID_BYTES], secret: &Secret) -> Zeroizing<String> {
    let mut text = Vec::with_capacity(prefix.len() + 2 + ID_TEXT_LEN + SECRET_TEXT_LEN);
    text.extend_from_slice(prefix.as_bytes());
    text.push(b'_');
    text.extend_from_slice(&crate::ids::hex_id(id));
    text.push(b'_');
    push_base64url(&mut text, secret.expose());
    match String::from_utf8(text) {
        Ok(text) => Zeroizing::new(text),
        // Not reached: a `str` followed by ASCII is UTF-8. Were it ever not, each byte becomes
        // the character of that code point rather than a panic, and the bytes are erased.
        Err(e) => {
            let bytes = Zeroizing::new(e.into_bytes());
            let mut text = Zeroizing::new(String::with_capacity(2 * bytes.len()));
            text.extend(bytes.iter().map(|&b| char::from(b)));
            text
        }
    }
}

macro_rules! token_type {
    ($(#[$doc:meta])* $name:ident, $id:ty) => {
        $(#[$doc])*
        ///
        /// `Debug` and `Display` show the prefix and id only; the secret is redacted. Call
        /// [`expose_secret`](Self::expose_secret) to get the string to hand to the client.
        #[derive(Clone, PartialEq, Eq)]
        pub struct $name {
            id: $id,
            text: Zeroizing<String>,
        }

        impl $name {
            pub(crate) fn new(prefix: &str, id: $id, secret: &Secret) -> Self {
                $name { id, text: format_token(prefix, id.as_bytes(), secret) }
            }

            /// The non-secret id this token selects.
            pub fn id(&self) -> &$id {
                &self.id
            }

            /// The full token text, secret included: send it to the client, nowhere else.
            pub fn expose_secret(&self) -> &str {
                &self.text
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                let prefix_len = self.text.len() - ID_TEXT_LEN - SECRET_TEXT_LEN - 2;
                write!(f, "{}_{}_<redacted>", &self.text[..prefix_len], self.id)
            }
        }
    };
}

token_type!(
    /// A session token: what the client holds (selector + secret).
    SessionToken,
    SessionId
);
token_type!(
    /// A one-shot ticket token.
    TicketToken,
    TicketId
);
token_type!(
    /// An access token: a short-lived, multi-use credential of a session (policy `access_ttl`),
    /// replaced by every rotation and ended with its session.
    AccessToken,
    SessionId
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;
    use crate::ids::ShardTag;

    fn token() -> SessionToken {
        let e = SeededEntropy::new(9);
        let id = SessionId::generate(ShardTag(0xabcd), &e).unwrap();
        SessionToken::new("lh1", id, &Secret::generate(&e).unwrap())
    }

    #[test]
    fn round_trip() {
        let t = token();
        let p = parse(t.expose_secret().as_bytes(), "lh1").unwrap();
        assert_eq!(&p.id, t.id().as_bytes());
        assert_eq!(
            SessionToken::new("lh1", *t.id(), &p.secret).expose_secret(),
            t.expose_secret()
        );
    }

    #[test]
    fn token_text_is_prefix_hex_id_and_base64url_secret() {
        let e = SeededEntropy::new(4);
        for _ in 0..64 {
            let id = SessionId::generate(ShardTag(0x0102), &e).unwrap();
            let secret = Secret::generate(&e).unwrap();
            let t = SessionToken::new("lh1", id, &secret);
            let want = format!("lh1_{id}_{}", URL_SAFE_NO_PAD.encode(secret.expose()));
            assert_eq!(t.expose_secret(), want);
            assert_eq!(t.text.capacity(), t.text.len(), "one allocation, exact");
        }
    }

    #[test]
    fn presented_exposes_its_selector_and_hides_its_secret() {
        let t = token();
        let p = parse(t.expose_secret().as_bytes(), "lh1").unwrap();
        assert_eq!(p.id_bytes(), t.id().as_bytes());
        assert_eq!(format!("{p:?}"), "Presented(<redacted>)");
    }

    #[test]
    fn display_and_debug_are_redacted() {
        let t = token();
        let secret_part = &t.expose_secret()[t.expose_secret().len() - SECRET_TEXT_LEN..];
        for shown in [format!("{t}"), format!("{t:?}")] {
            assert!(!shown.contains(secret_part), "{shown}");
            assert!(shown.contains(&t.id().to_string()));
            assert!(shown.contains("<redacted>"));
        }
    }

    #[test]
    fn malformed_inputs_are_typed_errors() {
        let t = token();
        let good = t.expose_secret().as_bytes().to_vec();
        let cases: Vec<(Vec<u8>, TokenError)> = vec![
            (vec![], TokenError::Empty),
            ([good.clone(), b"x".to_vec()].concat(), TokenError::TooLong),
            (vec![b'a'; 10_000], TokenError::TooLong),
            (good[..good.len() - 1].to_vec(), TokenError::Truncated),
            (
                [b"xx1".to_vec(), good[3..].to_vec()].concat(),
                TokenError::WrongPrefix,
            ),
            (
                {
                    let mut g = good.clone();
                    g[5] = 0xff;
                    g
                },
                TokenError::NotUtf8,
            ),
            (
                {
                    let mut g = good.clone();
                    g[5] = b'Z';
                    g
                },
                TokenError::BadSelector,
            ),
            (
                {
                    let mut g = good.clone();
                    g[40] = b'.';
                    g
                },
                TokenError::Malformed,
            ),
            (
                {
                    let mut g = good.clone();
                    g[50] = b'+';
                    g
                },
                TokenError::BadSecret,
            ),
            (
                {
                    let mut g = good.clone();
                    let n = g.len();
                    g[n - 1] = b'B';
                    g
                },
                TokenError::BadSecret,
            ),
            // A multi-byte character straddling the selector/secret boundary.
            (
                [b"lh1_".as_slice(), &[b'a'; 35], "é".as_bytes(), &[b'A'; 43]].concat(),
                TokenError::Malformed,
            ),
            (
                [
                    b"lh1_".as_slice(),
                    &[b'a'; 36],
                    b"_",
                    "é".as_bytes(),
                    &[b'A'; 41],
                ]
                .concat(),
                TokenError::BadSecret,
            ),
        ];
        for (input, want) in cases {
            assert_eq!(
                parse(&input, "lh1").err(),
                Some(want),
                "{:?}",
                String::from_utf8_lossy(&input)
            );
        }
    }
}
