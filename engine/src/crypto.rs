//! Secrets, verifiers and sealing. Everything the store sees is derived here, never raw.
//!
//! Every derivation is SHA-256 over a distinct domain label, the id the secret belongs to and
//! the secret, so a verifier of one session proves nothing about another, and the sealing key
//! (derived from the predecessor secret) is unrelated to the predecessor's verifier.

use std::fmt;

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use zeroize::{Zeroize, ZeroizeOnDrop};

use crate::entropy::{Entropy, EntropyError};
use crate::ids::ID_BYTES;

/// Bytes of a secret: 256 bits from the OS RNG.
pub const SECRET_BYTES: usize = 32;

/// A raw secret. Zeroed on drop; `Debug` is redacted; no `Display`.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct Secret([u8; SECRET_BYTES]);

impl Secret {
    /// A fresh secret.
    pub fn generate(entropy: &dyn Entropy) -> Result<Self, EntropyError> {
        let mut b = [0u8; SECRET_BYTES];
        entropy.fill(&mut b)?;
        Ok(Secret(b))
    }

    pub(crate) fn from_bytes(b: [u8; SECRET_BYTES]) -> Self {
        Secret(b)
    }

    pub(crate) fn expose(&self) -> &[u8; SECRET_BYTES] {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// SHA-256 of `label ‖ public ‖ secret`, in one compression: every verifier and key derivation
/// is at most 55 bytes (one padded block), so the block is laid out at fixed offsets and
/// compressed once, without the incremental hasher's buffering. Equal to `Sha256::digest` of
/// the concatenation (tested). The secret's bytes are erased from the block afterwards (the rest
/// of it is public).
#[inline]
fn sha256_one_block<const P: usize>(
    label: &[u8; 4],
    public: &[u8; P],
    secret: &[u8; SECRET_BYTES],
) -> [u8; 32] {
    /// FIPS 180-4 initial hash value H(0).
    const IV: [u32; 8] = [
        0x6a09_e667,
        0xbb67_ae85,
        0x3c6e_f372,
        0xa54f_f53a,
        0x510e_527f,
        0x9b05_688c,
        0x1f83_d9ab,
        0x5be0_cd19,
    ];
    const { assert!(4 + P + SECRET_BYTES <= 55, "more than one SHA-256 block") };
    let len = 4 + P + SECRET_BYTES;
    // Built in the type the compression takes: no second copy of the secret on the stack.
    let mut block =
        sha2::digest::generic_array::GenericArray::<u8, sha2::digest::consts::U64>::default();
    block[..4].copy_from_slice(label);
    block[4..4 + P].copy_from_slice(public);
    block[4 + P..len].copy_from_slice(secret);
    block[len] = 0x80;
    block[56..].copy_from_slice(&((len as u64) * 8).to_be_bytes());
    let mut state = IV;
    sha2::compress256(&mut state, std::slice::from_ref(&block));
    block[4 + P..len].zeroize();
    let mut out = [0u8; 32];
    for (o, w) in out.chunks_exact_mut(4).zip(state) {
        o.copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Constant-time equality of two 32-byte values: the differences of all four words are OR-ed
/// together with no branch, and only that one word goes through `subtle`'s comparison (a
/// byte-wise `subtle` comparison costs as much as the hash on the validate path).
fn ct_eq_32(a: &[u8; 32], b: &[u8; 32]) -> bool {
    let mut diff = 0u64;
    for (x, y) in a.chunks_exact(8).zip(b.chunks_exact(8)) {
        let (mut wx, mut wy) = ([0u8; 8], [0u8; 8]);
        wx.copy_from_slice(x);
        wy.copy_from_slice(y);
        diff |= u64::from_ne_bytes(wx) ^ u64::from_ne_bytes(wy);
    }
    diff.ct_eq(&0).into()
}

/// What a verifier proves possession of: session, ticket and access secrets never verify as
/// each other.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SecretKind {
    Session,
    Ticket,
    Access,
}

/// The stored form of a secret: a domain-separated SHA-256. Compared in constant time.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Verifier(pub [u8; 32]);

impl Verifier {
    pub(crate) fn derive(kind: SecretKind, id: &[u8; ID_BYTES], secret: &Secret) -> Self {
        // A 4-byte label keeps label ‖ id ‖ secret (54 bytes) within one SHA-256 block: every
        // validate hashes once. Distinct labels of one length keep the kinds apart.
        let label: &[u8; 4] = match kind {
            SecretKind::Session => b"lhS2",
            SecretKind::Ticket => b"lhT2",
            SecretKind::Access => b"lhA2",
        };
        Verifier(sha256_one_block(label, id, secret.expose()))
    }

    /// Constant-time equality: timing reveals nothing about how much of a guess matched.
    pub fn ct_eq(&self, other: &Verifier) -> bool {
        ct_eq_32(&self.0, &other.0)
    }
}

impl fmt::Debug for Verifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Verifier(..)")
    }
}

/// A successor secret sealed under a key derived from its predecessor secret.
///
/// Whoever presents the predecessor inside the grace window gets the *same* successor back
/// (idempotent rotation). The key is used once (it is bound to the session id and the
/// successor's generation), so a one-time pad is sound; integrity comes from checking the
/// unsealed secret against the current verifier.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Sealed(pub [u8; SECRET_BYTES]);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Sealed(..)")
    }
}

/// The access secret of generation `generation` of a session whose secret is `session`: a
/// one-way function of it, so the holder of a session token can always re-derive its access
/// token (an idempotent re-issue answers the same one) while an access token reveals nothing
/// about the session secret.
pub(crate) fn access_secret(generation: u64, session: &Secret) -> Secret {
    // The session secret is unique to its session and generation: no id needed, and 44 bytes
    // are one block.
    Secret(sha256_one_block(
        b"lhX2",
        &generation.to_le_bytes(),
        session.expose(),
    ))
}

fn seal_key(generation: u64, predecessor: &Secret) -> [u8; SECRET_BYTES] {
    // The predecessor secret is unique to its session and generation: no id needed, and
    // 44 bytes are one block.
    sha256_one_block(b"lhK2", &generation.to_le_bytes(), predecessor.expose())
}

pub(crate) fn seal(generation: u64, predecessor: &Secret, successor: &Secret) -> Sealed {
    let mut key = seal_key(generation, predecessor);
    let mut out = [0u8; SECRET_BYTES];
    for (o, (k, s)) in out.iter_mut().zip(key.iter().zip(successor.expose())) {
        *o = k ^ s;
    }
    key.zeroize();
    Sealed(out)
}

pub(crate) fn unseal(generation: u64, predecessor: &Secret, sealed: &Sealed) -> Secret {
    let mut key = seal_key(generation, predecessor);
    let mut out = [0u8; SECRET_BYTES];
    for (o, (k, s)) in out.iter_mut().zip(key.iter().zip(sealed.0.iter())) {
        *o = k ^ s;
    }
    key.zeroize();
    Secret(out)
}

/// The stored form of a context binding (e.g. a device id): hashed, bound to the session.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct BindingHash(pub [u8; 32]);

impl BindingHash {
    pub(crate) fn derive(id: &[u8; ID_BYTES], binding: &str) -> Self {
        let h = Sha256::new()
            .chain_update(b"leasehold/v1/binding\0")
            .chain_update(id)
            .chain_update(binding.as_bytes())
            .finalize();
        BindingHash(h.into())
    }

    pub(crate) fn ct_eq(&self, other: &BindingHash) -> bool {
        ct_eq_32(&self.0, &other.0)
    }
}

impl fmt::Debug for BindingHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("BindingHash(..)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entropy::SeededEntropy;

    #[test]
    fn seal_round_trips_only_with_the_predecessor() {
        let e = SeededEntropy::new(3);
        let (pred, succ, other) = (
            Secret::generate(&e).unwrap(),
            Secret::generate(&e).unwrap(),
            Secret::generate(&e).unwrap(),
        );
        let sealed = seal(2, &pred, &succ);
        assert_ne!(
            &sealed.0,
            succ.expose(),
            "sealed form is not the raw secret"
        );
        assert_eq!(unseal(2, &pred, &sealed).expose(), succ.expose());
        assert_ne!(unseal(2, &other, &sealed).expose(), succ.expose());
        assert_ne!(unseal(3, &pred, &sealed).expose(), succ.expose());
    }

    #[test]
    fn one_block_sha256_equals_the_digest_at_every_length() {
        fn check<const P: usize>() {
            let bytes: Vec<u8> = (0..4 + P as u8 + 32).map(|b| b.wrapping_mul(37)).collect();
            let label: [u8; 4] = bytes[..4].try_into().unwrap();
            let public: [u8; P] = bytes[4..4 + P].try_into().unwrap();
            let secret: [u8; 32] = bytes[4 + P..].try_into().unwrap();
            let want: [u8; 32] = Sha256::digest(&bytes).into();
            assert_eq!(sha256_one_block(&label, &public, &secret), want, "P = {P}");
        }
        // Every length a block holds: 36 (no public part) to 55 bytes.
        check::<0>();
        check::<1>();
        check::<2>();
        check::<3>();
        check::<4>();
        check::<5>();
        check::<6>();
        check::<7>();
        check::<8>();
        check::<9>();
        check::<10>();
        check::<11>();
        check::<12>();
        check::<13>();
        check::<14>();
        check::<15>();
        check::<16>();
        check::<17>();
        check::<18>();
        check::<19>();
    }

    #[test]
    fn constant_time_equality_sees_every_byte() {
        let a = [0x5au8; 32];
        assert!(ct_eq_32(&a, &a));
        for i in 0..32 {
            for bit in 0..8 {
                let mut b = a;
                b[i] ^= 1 << bit;
                assert!(!ct_eq_32(&a, &b), "byte {i} bit {bit}");
            }
        }
    }

    #[test]
    fn verifiers_are_domain_separated() {
        let s = Secret::generate(&SeededEntropy::new(1)).unwrap();
        let id = [1u8; ID_BYTES];
        let a = Verifier::derive(SecretKind::Session, &id, &s);
        let b = Verifier::derive(SecretKind::Ticket, &id, &s);
        let c = Verifier::derive(SecretKind::Session, &[2u8; ID_BYTES], &s);
        assert!(a.ct_eq(&a));
        assert!(!a.ct_eq(&b));
        assert!(!a.ct_eq(&c));
        assert_ne!(&a.0, s.expose());
    }

    #[test]
    fn debug_is_redacted() {
        let s = Secret::generate(&SeededEntropy::new(1)).unwrap();
        assert_eq!(format!("{s:?}"), "Secret(<redacted>)");
        assert_eq!(format!("{:?}", Verifier([1; 32])), "Verifier(..)");
        assert_eq!(format!("{:?}", Sealed([1; 32])), "Sealed(..)");
        assert_eq!(format!("{:?}", BindingHash([1; 32])), "BindingHash(..)");
    }
}
