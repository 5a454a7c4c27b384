//! The bodies of the cargo-fuzz targets in `fuzz/`, as plain functions.
//!
//! Each fuzz target is a one-liner calling one of these, so the main workspace replays the
//! committed corpora and regressions as ordinary tests (`testkit/tests/fuzz_corpus.rs`) on
//! stable, without libFuzzer. Every function takes raw bytes (structured targets decode them
//! with [`arbitrary`] or the model's byte decoder) and **panics** on a broken property: a
//! panic is what the fuzzer reports as a crash.
//!
//! | target | what it feeds | properties checked |
//! | --- | --- | --- |
//! | [`token_parse`] | untrusted token bytes → `leasehold::token::parse` | never panics; accepts exactly what an independent reference parser accepts; an accepted token re-formats to the same bytes; `Debug` is redacted |
//! | [`record_decode`] | stored bytes → `decode_session` / `decode_ticket` / `decode_slot` | never panics; decode → encode is byte-identical (canonical) and decode → encode → decode is stable; a decoded record is coherent |
//! | [`policy_build`] | [`PolicyKnobs`] → `Policy::builder()…build()` | never panics; `Ok` exactly when an independent reading of the documented rules says so; an `Ok` policy validates and works (create, validate, ticket, slot, expiry) |
//! | [`ops_vs_model`] | operation sequences, clock jumps and injected store faults → `Sessions` over `FaultyStore<MemoryStore>` | after every step: the reference model's prediction, every stored record, and every invariant (no resurrection, one-shot, single successor, caps, absolute bound, fail-closed, hash at rest, revoke-all, bounded storage) |

use std::collections::{BTreeMap, VecDeque};
use std::fmt;
use std::time::Duration;

use arbitrary::{Arbitrary, Unstructured};
use futures::executor::block_on;
use leasehold::codec::{self, CodecError};
use leasehold::record::{SlotRecord, TicketRecord};
use leasehold::token::{self, MAX_PREFIX_LEN, SECRET_TEXT_LEN};
use leasehold::{
    CapPolicy, Clock, Context, CreateOptions, Error, ID_TEXT_LEN, ManualClock, MemoryStore, Policy,
    PolicyError, Rate, RevokeReason, SeededEntropy, SessionId, SessionRecord, SessionState,
    Sessions, Store, Subject, SubjectCap, TicketId, Timestamp,
};

use crate::faults::{Fault, FaultyStore, Op};
use crate::model::run_support::{EventLog, fill_evicted};
use crate::model::{
    Action, ByteSource, Checker, Model, ModelOp, ModelSettings, Observed, PolicyChoice, Violation,
    check_sequence, decode_dump, decode_ops, decode_ops_v3, jump_duration, perform, resolve,
};

/// The fuzz targets, by name (the directory names under `fuzz/corpus/` and `fuzz/regressions/`).
pub const TARGETS: [&str; 4] = [
    "token_parse",
    "record_decode",
    "policy_build",
    "ops_vs_model",
];

/// Runs the target `name` on `data` (panics on a broken property). `false` for an unknown name.
pub fn run_target(name: &str, data: &[u8]) -> bool {
    match name {
        "token_parse" => token_parse(data),
        "record_decode" => record_decode(data),
        "policy_build" => policy_build(data),
        "ops_vs_model" => ops_vs_model(data),
        _ => return false,
    }
    true
}

// =============================================================================================
// token_parse
// =============================================================================================

/// Prefixes every input is parsed with: the default session and ticket prefixes, and the
/// shortest and longest a policy allows.
pub const TOKEN_PREFIXES: [&str; 4] = ["lh1", "lht1", "a", "0123456789abcdef"];

const B64URL: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

fn b64_value(c: u8) -> Option<u8> {
    B64URL.iter().position(|&a| a == c).map(|p| p as u8)
}

/// Unpadded base64url of `bytes` (reference implementation, independent of the engine's).
pub fn b64url_encode(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            chunk.get(1).copied().unwrap_or(0),
            chunk.get(2).copied().unwrap_or(0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        let chars = chunk.len() + 1;
        for i in 0..chars {
            let v = (n >> (18 - 6 * i)) & 63;
            out.push(char::from(B64URL[v as usize]));
        }
    }
    out
}

/// The reference reading of a split token: `<prefix>_<36 lowercase hex>_<43 base64url>` where
/// the secret is the canonical encoding of exactly 32 bytes. Returns (selector bytes, secret).
pub fn reference_parse(input: &[u8], prefix: &str) -> Option<([u8; 18], [u8; 32])> {
    let head = prefix.len() + 1;
    if input.len() != head + ID_TEXT_LEN + 1 + SECRET_TEXT_LEN {
        return None;
    }
    if !input.starts_with(prefix.as_bytes()) || input[prefix.len()] != b'_' {
        return None;
    }
    let selector = &input[head..head + ID_TEXT_LEN];
    if input[head + ID_TEXT_LEN] != b'_' {
        return None;
    }
    let secret = &input[head + ID_TEXT_LEN + 1..];
    let hex = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut id = [0u8; 18];
    for (i, pair) in selector.chunks(2).enumerate() {
        id[i] = (hex(pair[0])? << 4) | hex(pair[1])?;
    }
    // 43 characters carry 258 bits: 256 of secret and 2 that must be zero (canonical form).
    let mut bits: Vec<bool> = Vec::with_capacity(258);
    for &c in secret {
        let v = b64_value(c)?;
        for k in (0..6).rev() {
            bits.push((v >> k) & 1 == 1);
        }
    }
    if bits[256..].iter().any(|&b| b) {
        return None;
    }
    let mut raw = [0u8; 32];
    for (i, byte) in raw.iter_mut().enumerate() {
        for k in 0..8 {
            *byte = (*byte << 1) | u8::from(bits[i * 8 + k]);
        }
    }
    Some((id, raw))
}

/// The prefix an input claims (its text before the first `_`), if a policy could use it.
fn claimed_prefix(data: &[u8]) -> Option<&str> {
    let end = data.iter().position(|&b| b == b'_')?;
    let p = std::str::from_utf8(&data[..end]).ok()?;
    let ok = !p.is_empty()
        && p.len() <= MAX_PREFIX_LEN
        && p.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    ok.then_some(p)
}

fn check_token(data: &[u8], prefix: &str) {
    let expected_len = prefix.len() + 1 + ID_TEXT_LEN + 1 + SECRET_TEXT_LEN;
    let got = token::parse(data, prefix);
    let want = reference_parse(data, prefix);
    match (&got, &want) {
        (Ok(p), Some((id, secret))) => {
            assert_eq!(
                p.id_bytes(),
                id,
                "parse and the reference disagree on the selector"
            );
            let reformatted = format!(
                "{prefix}_{}_{}",
                SessionId::from_bytes(*p.id_bytes()),
                b64url_encode(secret)
            );
            assert_eq!(
                reformatted.as_bytes(),
                data,
                "an accepted token does not re-format to the same bytes"
            );
            assert_eq!(
                format!("{p:?}"),
                "Presented(<redacted>)",
                "Debug of a parsed token must be redacted"
            );
            let selector = &reformatted[prefix.len() + 1..prefix.len() + 1 + ID_TEXT_LEN];
            assert_eq!(
                SessionId::parse(selector).map(|i| *i.as_bytes()),
                Some(*id),
                "SessionId::parse disagrees with the token parser"
            );
            assert_eq!(
                TicketId::parse(selector).map(|i| *i.as_bytes()),
                Some(*id),
                "TicketId::parse disagrees with the token parser"
            );
        }
        (Err(e), None) => {
            let _ = e.to_string();
            if data.is_empty() {
                assert_eq!(*e, token::TokenError::Empty, "empty input");
            } else if data.len() > expected_len {
                assert_eq!(*e, token::TokenError::TooLong, "over-long input");
            }
        }
        (Ok(_), None) => panic!(
            "token::parse accepted {:?} (prefix {prefix:?}), which the reference rejects",
            String::from_utf8_lossy(data)
        ),
        (Err(e), Some(_)) => panic!(
            "token::parse rejected the well-formed {:?} (prefix {prefix:?}) with {e:?}",
            String::from_utf8_lossy(data)
        ),
    }
}

/// Fuzz target `token_parse`: untrusted bytes as a session/ticket token under several prefixes
/// (the fixed ones and the one the input claims). Never panics; agrees with
/// [`reference_parse`]; accepted tokens round-trip.
pub fn token_parse(data: &[u8]) {
    for prefix in TOKEN_PREFIXES {
        check_token(data, prefix);
    }
    if let Some(p) = claimed_prefix(data) {
        check_token(data, p);
    }
}

// =============================================================================================
// record_decode
// =============================================================================================

const KINDS: [u8; 3] = [b'S', b'T', b'L'];

fn check_session_bytes(data: &[u8]) {
    let Ok(r) = codec::decode_session(data) else {
        return;
    };
    let enc = codec::encode_session(&r);
    match codec::decode_session(&enc) {
        Ok(again) => assert_eq!(again, r, "decode → encode → decode changed a session"),
        Err(e) => panic!("a decoded session does not decode after re-encoding: {e:?}"),
    }
    // Canonical in the current format; an older format re-encodes into the current one.
    if data.first() == Some(&codec::FORMAT_VERSION) {
        assert_eq!(enc, data, "session encoding is not canonical");
    }
    assert!(
        r.expires_at <= r.absolute_deadline && r.created_at <= r.absolute_deadline,
        "a decoded session has impossible deadlines"
    );
    assert!(r.subject.as_str().len() <= leasehold::MAX_NAME_LEN);
    // The helpers a store uses on a decoded record must be total.
    let _ = r.is_live(r.expires_at);
    let t = r.tombstone(r.expires_at, RevokeReason::Evicted);
    assert!(!t.is_live(Timestamp::EPOCH), "a tombstone is live");
    match codec::decode_session(&codec::encode_session(&t)) {
        Ok(back) => assert_eq!(back, t, "a tombstone does not round-trip"),
        Err(e) => panic!("a tombstone of a decoded session does not decode: {e:?}"),
    }
    let _ = leasehold::Session::from(&r);
    let _ = format!("{r:?}");
    if let SessionState::Revoked { reason, .. } = r.state {
        assert_eq!(RevokeReason::from_code(reason.code()), Some(reason));
    }
}

fn check_ticket_bytes(data: &[u8]) {
    let Ok(t) = codec::decode_ticket(data) else {
        return;
    };
    let enc = codec::encode_ticket(&t);
    let again: Result<TicketRecord, CodecError> = codec::decode_ticket(&enc);
    assert_eq!(
        again.as_ref(),
        Ok(&t),
        "decode → encode → decode changed a ticket"
    );
    // Canonical in the current format; an older format re-encodes into the current one.
    if data.first() == Some(&codec::FORMAT_VERSION) {
        assert_eq!(enc, data, "ticket encoding is not canonical");
    }
}

fn check_slot_bytes(data: &[u8]) {
    let Ok(s) = codec::decode_slot(data) else {
        return;
    };
    let enc = codec::encode_slot(&s);
    let again: Result<SlotRecord, CodecError> = codec::decode_slot(&enc);
    assert_eq!(
        again.as_ref(),
        Ok(&s),
        "decode → encode → decode changed a slot"
    );
    // Canonical in the current format; an older format re-encodes into the current one.
    if data.first() == Some(&codec::FORMAT_VERSION) {
        assert_eq!(enc, data, "slot encoding is not canonical");
    }
    let _ = s.is_live(s.expires_at);
}

/// Fuzz target `record_decode`: bytes as a stored session, ticket and slot record (as given,
/// and behind each valid version+kind header, so the fuzzer spends its time past the header).
/// This is the encoding the sled adapter stores too.
pub fn record_decode(data: &[u8]) {
    check_session_bytes(data);
    check_ticket_bytes(data);
    check_slot_bytes(data);
    for (kind, check) in KINDS.into_iter().zip([
        check_session_bytes as fn(&[u8]),
        check_ticket_bytes,
        check_slot_bytes,
    ]) {
        let mut framed = Vec::with_capacity(data.len() + 2);
        framed.push(codec::FORMAT_VERSION);
        framed.push(kind);
        framed.extend_from_slice(data);
        check(&framed);
    }
}

// =============================================================================================
// policy_build
// =============================================================================================

/// A duration knob value, shaped so that a fuzzer reaches the interesting ranges (zero,
/// sub-millisecond, seconds to centuries, and the 100-year limit) quickly.
#[derive(Arbitrary, Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dur {
    /// Zero.
    Zero,
    /// Nanoseconds (below a millisecond unless large).
    Nanos(u32),
    /// Milliseconds.
    Millis(u16),
    /// Seconds.
    Secs(u16),
    /// Hours.
    Hours(u32),
    /// The documented 100-year maximum, plus or minus a few milliseconds.
    NearMax(i8),
    /// Anything.
    Raw(Duration),
}

/// The 100-year maximum documented on every duration knob.
pub const DOC_MAX_DURATION: Duration = Duration::from_secs(100 * 365 * 24 * 3600);

impl Dur {
    /// The duration.
    pub fn get(self) -> Duration {
        match self {
            Dur::Zero => Duration::ZERO,
            Dur::Nanos(n) => Duration::from_nanos(u64::from(n)),
            Dur::Millis(m) => Duration::from_millis(u64::from(m)),
            Dur::Secs(s) => Duration::from_secs(u64::from(s)),
            Dur::Hours(h) => Duration::from_secs(u64::from(h) * 3600),
            Dur::NearMax(d) => {
                let delta = Duration::from_millis(u64::from(d.unsigned_abs()));
                if d < 0 {
                    DOC_MAX_DURATION.saturating_sub(delta)
                } else {
                    DOC_MAX_DURATION.saturating_add(delta)
                }
            }
            Dur::Raw(d) => d,
        }
    }
}

/// A token prefix knob value.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub enum PrefixKnob {
    /// One of a few plausible prefixes (valid and invalid).
    Named(u8),
    /// Anything.
    Raw(String),
}

const NAMED_PREFIXES: [&str; 8] = [
    "lh1",
    "lht1",
    "a",
    "0123456789abcdef",
    "0123456789abcdefg",
    "",
    "LH1",
    "lh_1",
];

impl PrefixKnob {
    /// The prefix text.
    pub fn get(&self) -> String {
        match self {
            PrefixKnob::Named(i) => NAMED_PREFIXES[*i as usize % NAMED_PREFIXES.len()].to_owned(),
            PrefixKnob::Raw(s) => s.clone(),
        }
    }
}

/// Values for every `PolicyBuilder` setter; `None` leaves the default.
#[derive(Arbitrary, Clone, Debug, PartialEq, Eq)]
pub struct PolicyKnobs {
    /// `absolute_lifetime`.
    pub absolute_lifetime: Option<Dur>,
    /// `idle_timeout` (`Some(None)` disables it).
    pub idle_timeout: Option<Option<Dur>>,
    /// `touch_granularity`.
    pub touch_granularity: Option<Dur>,
    /// `renewal_interval` (`Some(None)` disables it).
    pub renewal_interval: Option<Option<Dur>>,
    /// `grace_window`.
    pub grace_window: Option<Dur>,
    /// `orphan_window`.
    pub orphan_window: Option<Dur>,
    /// `reuse_detection`.
    pub reuse_detection: Option<bool>,
    /// `reuse_history`.
    pub reuse_history: Option<u8>,
    /// `ticket_ttl`.
    pub ticket_ttl: Option<Dur>,
    /// `subject_cap`: (max, evict oldest?).
    pub subject_cap: Option<Option<(u32, bool)>>,
    /// `creation_rate`: (max, window).
    pub creation_rate: Option<Option<(u32, Dur)>>,
    /// `global_cap`.
    pub global_cap: Option<Option<u64>>,
    /// `slot_ttl`.
    pub slot_ttl: Option<Dur>,
    /// `max_slots_per_session`.
    pub max_slots_per_session: Option<Option<u32>>,
    /// `max_slots_per_resource`.
    pub max_slots_per_resource: Option<Option<u32>>,
    /// `enforce_binding`.
    pub enforce_binding: Option<bool>,
    /// `max_data_len` (in bytes; large values probe the 1 MiB limit).
    pub max_data_len: Option<u32>,
    /// `token_prefix`.
    pub token_prefix: Option<PrefixKnob>,
    /// `ticket_prefix`.
    pub ticket_prefix: Option<PrefixKnob>,
    /// `max_cas_retries`.
    pub max_cas_retries: Option<u32>,
    /// Wall-clock start of the functional check, in milliseconds (reduced to ≈ 1000 years).
    pub start_ms: u64,
}

/// The knob values as the policy will hold them (defaults where unset).
struct Resolved {
    absolute: Duration,
    idle: Option<Duration>,
    touch: Duration,
    renewal: Option<Duration>,
    grace: Duration,
    orphan: Duration,
    reuse_detection: bool,
    reuse_history: usize,
    ticket_ttl: Duration,
    subject_cap: Option<SubjectCap>,
    rate: Option<Rate>,
    global_cap: Option<u64>,
    slot_ttl: Duration,
    slots_session: Option<u32>,
    slots_resource: Option<u32>,
    enforce_binding: bool,
    max_data_len: usize,
    token_prefix: String,
    ticket_prefix: String,
    /// No knob sets it (the input format predates it): the documented default, which the
    /// other two prefixes must still differ from.
    access_prefix: String,
    cas: u32,
}

impl PolicyKnobs {
    fn resolve(&self) -> Resolved {
        let d = Policy::default();
        Resolved {
            absolute: self
                .absolute_lifetime
                .map_or(d.absolute_lifetime(), Dur::get),
            idle: self
                .idle_timeout
                .map_or(d.idle_timeout(), |o| o.map(Dur::get)),
            touch: self
                .touch_granularity
                .map_or(d.touch_granularity(), Dur::get),
            renewal: self
                .renewal_interval
                .map_or(d.renewal_interval(), |o| o.map(Dur::get)),
            grace: self.grace_window.map_or(d.grace_window(), Dur::get),
            orphan: self.orphan_window.map_or(d.orphan_window(), Dur::get),
            reuse_detection: self.reuse_detection.unwrap_or(d.reuse_detection()),
            reuse_history: self.reuse_history.map_or(d.reuse_history(), usize::from),
            ticket_ttl: self.ticket_ttl.map_or(d.ticket_ttl(), Dur::get),
            subject_cap: self.subject_cap.map_or(d.subject_cap(), |o| {
                o.map(|(max, evict)| SubjectCap {
                    max,
                    on_full: if evict {
                        CapPolicy::EvictOldest
                    } else {
                        CapPolicy::Reject
                    },
                })
            }),
            rate: self.creation_rate.map_or(d.creation_rate(), |o| {
                o.map(|(max, w)| Rate {
                    max,
                    window: w.get(),
                })
            }),
            global_cap: self.global_cap.unwrap_or(d.global_cap().map(|c| c.max)),
            slot_ttl: self.slot_ttl.map_or(d.slot_ttl(), Dur::get),
            slots_session: self
                .max_slots_per_session
                .unwrap_or(d.max_slots_per_session()),
            slots_resource: self
                .max_slots_per_resource
                .unwrap_or(d.max_slots_per_resource()),
            enforce_binding: self.enforce_binding.unwrap_or(d.enforce_binding()),
            max_data_len: self.max_data_len.map_or(d.max_data_len(), |n| n as usize),
            token_prefix: self
                .token_prefix
                .as_ref()
                .map_or(d.token_prefix(), PrefixKnob::get),
            ticket_prefix: self
                .ticket_prefix
                .as_ref()
                .map_or(d.ticket_prefix(), PrefixKnob::get),
            access_prefix: d.access_prefix(),
            cas: self.max_cas_retries.unwrap_or(d.max_cas_retries()),
        }
    }

    /// The builder with every set knob applied.
    pub fn builder(&self) -> leasehold::PolicyBuilder {
        let mut b = Policy::builder();
        if let Some(v) = self.absolute_lifetime {
            b = b.absolute_lifetime(v.get());
        }
        if let Some(v) = self.idle_timeout {
            b = b.idle_timeout(v.map(Dur::get));
        }
        if let Some(v) = self.touch_granularity {
            b = b.touch_granularity(v.get());
        }
        if let Some(v) = self.renewal_interval {
            b = b.renewal_interval(v.map(Dur::get));
        }
        if let Some(v) = self.grace_window {
            b = b.grace_window(v.get());
        }
        if let Some(v) = self.orphan_window {
            b = b.orphan_window(v.get());
        }
        if let Some(v) = self.reuse_detection {
            b = b.reuse_detection(v);
        }
        if let Some(v) = self.reuse_history {
            b = b.reuse_history(usize::from(v));
        }
        if let Some(v) = self.ticket_ttl {
            b = b.ticket_ttl(v.get());
        }
        let r = self.resolve();
        if self.subject_cap.is_some() {
            b = b.subject_cap(r.subject_cap);
        }
        if self.creation_rate.is_some() {
            b = b.creation_rate(r.rate);
        }
        if let Some(v) = self.global_cap {
            b = b.global_cap(v.map(|max| leasehold::GlobalCap {
                max,
                on_full: leasehold::CapPolicy::Reject,
            }));
        }
        if let Some(v) = self.slot_ttl {
            b = b.slot_ttl(v.get());
        }
        if let Some(v) = self.max_slots_per_session {
            b = b.max_slots_per_session(v);
        }
        if let Some(v) = self.max_slots_per_resource {
            b = b.max_slots_per_resource(v);
        }
        if let Some(v) = self.enforce_binding {
            b = b.enforce_binding(v);
        }
        if let Some(v) = self.max_data_len {
            b = b.max_data_len(v as usize);
        }
        if let Some(v) = &self.token_prefix {
            b = b.token_prefix(v.get());
        }
        if let Some(v) = &self.ticket_prefix {
            b = b.ticket_prefix(v.get());
        }
        if let Some(v) = self.max_cas_retries {
            b = b.max_cas_retries(v);
        }
        b
    }
}

/// The documented rules (the `PolicyBuilder` setter docs and `PolicyError`), read independently
/// of `Policy::validate`: `Ok` when every rule holds, else the list of rules broken.
fn documented_rules(r: &Resolved) -> Result<(), Vec<&'static str>> {
    let mut broken = Vec::new();
    let durations = [
        Some(r.absolute),
        Some(r.touch),
        Some(r.grace),
        Some(r.orphan),
        Some(r.ticket_ttl),
        Some(r.slot_ttl),
        r.idle,
        r.renewal,
        r.rate.map(|x| x.window),
    ];
    if durations.iter().flatten().any(|d| *d > DOC_MAX_DURATION) {
        broken.push("duration over 100 years");
    }
    let positive = [
        Some(r.absolute),
        r.idle,
        r.renewal,
        Some(r.ticket_ttl),
        Some(r.slot_ttl),
        r.rate.map(|x| x.window),
    ];
    if positive.iter().flatten().any(|d| d.as_millis() == 0) {
        broken.push("duration below 1 ms");
    }
    if r.grace >= r.absolute {
        broken.push("grace ≥ absolute");
    }
    if r.orphan < r.grace {
        broken.push("orphan < grace");
    }
    if r.reuse_history > 64 {
        broken.push("reuse history > 64");
    }
    if r.max_data_len > 1 << 20 {
        broken.push("data limit > 1 MiB");
    }
    if r.subject_cap.is_some_and(|c| c.max == 0)
        || r.rate.is_some_and(|x| x.max == 0)
        || r.global_cap == Some(0)
        || r.slots_session == Some(0)
        || r.slots_resource == Some(0)
        || r.cas == 0
    {
        broken.push("zero cap");
    }
    let prefix_ok = |p: &str| {
        !p.is_empty()
            && p.len() <= 16
            && p.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
    };
    if !prefix_ok(&r.token_prefix) || !prefix_ok(&r.ticket_prefix) {
        broken.push("invalid prefix");
    }
    // Session, ticket and access prefixes: all three distinct.
    if r.token_prefix == r.ticket_prefix
        || r.token_prefix == r.access_prefix
        || r.ticket_prefix == r.access_prefix
    {
        broken.push("same prefixes");
    }
    if broken.is_empty() {
        Ok(())
    } else {
        Err(broken)
    }
}

/// Whether `e` names one of the `broken` rules.
fn error_matches(e: &PolicyError, broken: &[&str], r: &Resolved) -> bool {
    let has = |rule: &str| broken.contains(&rule);
    match e {
        PolicyError::TooLong(_) => has("duration over 100 years"),
        PolicyError::Zero(_) => has("duration below 1 ms"),
        PolicyError::GraceNotBelowAbsolute => has("grace ≥ absolute"),
        PolicyError::OrphanBelowGrace => has("orphan < grace"),
        PolicyError::ReuseHistoryTooLarge => has("reuse history > 64"),
        PolicyError::DataLimitTooLarge => has("data limit > 1 MiB"),
        PolicyError::ZeroCap => has("zero cap"),
        PolicyError::InvalidPrefix(p) => {
            has("invalid prefix") && (p == &r.token_prefix || p == &r.ticket_prefix)
        }
        PolicyError::SamePrefixes => has("same prefixes"),
        _ => false,
    }
}

/// A valid policy must be usable: a first session can be created, validated, ticketed and
/// given a slot, and it expires at its deadline, never past its absolute bound.
fn exercise(policy: &Policy, start_ms: u64) {
    let start = Timestamp::from_millis(start_ms % (1000 * 365 * 24 * 3600 * 1000));
    let clock = ManualClock::new(start);
    let sessions = Sessions::new(MemoryStore::new(), policy.clone())
        .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"))
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(start_ms));
    let who = match Subject::new("fuzz") {
        Ok(s) => s,
        Err(e) => panic!("subject: {e}"),
    };
    block_on(async {
        let created = match sessions.create(&who, CreateOptions::default()).await {
            Ok(c) => c,
            Err(e) => panic!("a valid policy refused the first create: {e:?} ({policy:?})"),
        };
        let text = created.token.expose_secret().to_owned();
        assert!(
            text.starts_with(&format!("{}_", policy.token_prefix())),
            "token without the policy's prefix"
        );
        let s = &created.session;
        assert!(s.expires_at > start, "a new session is born expired: {s:?}");
        assert!(
            s.expires_at <= s.absolute_deadline
                && s.absolute_deadline == start.saturating_add(policy.absolute_lifetime()),
            "INV-absolute-bound: {s:?}"
        );
        if let Err(e) = sessions.validate(&text, &Context::none()).await {
            panic!("a new session does not validate: {e:?} ({policy:?})");
        }
        match sessions.mint_ticket(&text, &Context::none()).await {
            Ok(t) => {
                let ticket = t.ticket.expose_secret().to_owned();
                assert!(ticket.starts_with(&format!("{}_", policy.ticket_prefix())));
                if let Err(e) = sessions.redeem_ticket(&ticket).await {
                    panic!("a fresh ticket does not redeem: {e:?} ({policy:?})");
                }
                assert!(
                    sessions.redeem_ticket(&ticket).await.is_err(),
                    "INV-one-shot: a ticket redeemed twice"
                );
                assert!(
                    sessions.validate(&ticket, &Context::none()).await.is_err(),
                    "a ticket validates as a session token"
                );
            }
            Err(e) => panic!("a new session cannot mint a ticket: {e:?} ({policy:?})"),
        }
        if let Err(e) = sessions.acquire_slot(&s.id, None).await {
            panic!("a new session cannot take a first slot: {e:?} ({policy:?})");
        }
        // Jump to the session's current deadline: it must be refused there.
        let current = match sessions.list(&who).await {
            Ok(l) => l,
            Err(e) => panic!("list: {e:?}"),
        };
        let Some(latest) = current.iter().find(|x| x.id == s.id) else {
            panic!("the new session is not listed ({policy:?})");
        };
        assert!(latest.expires_at <= latest.absolute_deadline);
        clock.set(latest.expires_at);
        match sessions.validate(&text, &Context::none()).await {
            Err(Error::Expired) => {}
            other => panic!(
                "INV-no-resurrection: at its deadline a session answered {other:?} ({policy:?})"
            ),
        }
    });
}

/// Fuzz target `policy_build`: arbitrary knob values ([`PolicyKnobs`] decoded from `data`) →
/// `Policy::builder()…build()`. Never panics; it is `Ok` exactly when the documented rules all
/// hold, an error names a rule that is broken, and an `Ok` policy validates and works.
pub fn policy_build(data: &[u8]) {
    let Ok(knobs) = PolicyKnobs::arbitrary_take_rest(Unstructured::new(data)) else {
        return;
    };
    check_policy(&knobs);
}

/// The body of [`policy_build`] for decoded knobs.
pub fn check_policy(knobs: &PolicyKnobs) {
    let resolved = knobs.resolve();
    let rules = documented_rules(&resolved);
    let built = knobs.builder().build();
    assert_eq!(
        knobs.builder().build(),
        built,
        "building the same knobs twice differs"
    );
    match (&built, &rules) {
        (Ok(p), Ok(())) => {
            if let Err(e) = p.validate() {
                panic!("a built policy does not validate: {e:?}");
            }
            let r = &resolved;
            assert_eq!(p.absolute_lifetime(), r.absolute);
            assert_eq!(p.idle_timeout(), r.idle);
            assert_eq!(p.touch_granularity(), r.touch);
            assert_eq!(p.renewal_interval(), r.renewal);
            assert_eq!(p.grace_window(), r.grace);
            assert_eq!(p.orphan_window(), r.orphan);
            assert_eq!(p.reuse_detection(), r.reuse_detection);
            assert_eq!(p.reuse_history(), r.reuse_history);
            assert_eq!(p.ticket_ttl(), r.ticket_ttl);
            assert_eq!(p.subject_cap(), r.subject_cap);
            assert_eq!(p.creation_rate(), r.rate);
            assert_eq!(p.global_cap().map(|c| c.max), r.global_cap);
            assert_eq!(p.slot_ttl(), r.slot_ttl);
            assert_eq!(p.max_slots_per_session(), r.slots_session);
            assert_eq!(p.max_slots_per_resource(), r.slots_resource);
            assert_eq!(p.enforce_binding(), r.enforce_binding);
            assert_eq!(p.max_data_len(), r.max_data_len);
            assert_eq!(p.token_prefix(), r.token_prefix);
            assert_eq!(p.ticket_prefix(), r.ticket_prefix);
            assert_eq!(p.max_cas_retries(), r.cas);
            exercise(p, knobs.start_ms);
        }
        (Err(e), Err(broken)) => {
            let _ = e.to_string();
            assert!(
                error_matches(e, broken, &resolved),
                "build() answered {e:?}, but the rules broken are {broken:?}"
            );
        }
        (Ok(p), Err(broken)) => {
            panic!("build() accepted a policy that breaks {broken:?}: {p:?}")
        }
        (Err(e), Ok(())) => {
            panic!(
                "build() refused with {e:?} a policy that keeps every documented rule: {knobs:?}"
            )
        }
    }
}

// =============================================================================================
// ops_vs_model
// =============================================================================================

/// One step of an [`ops_vs_model`] run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultedOp {
    /// A fault queued for the operation's next call of this store method, if any.
    pub fault: Option<(Op, Fault)>,
    /// The operation (or clock jump).
    pub op: ModelOp,
}

/// An [`ops_vs_model`] input, decoded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpsInput {
    /// The policy the run uses.
    pub policy: PolicyChoice,
    /// `true`: no faults; the run is `model::check_sequence` itself.
    pub fault_free: bool,
    /// The steps (at most 256).
    pub steps: Vec<FaultedOp>,
}

/// The marker that starts an [`ops_vs_model`] input of the v3 operation set
/// ([`ByteSource::v3`]). No committed corpus input starts with it (none starts with `v`), so
/// every one of them keeps its meaning.
pub const OPS_V3_MARKER: &[u8] = b"v3";

/// Decodes an [`ops_vs_model`] input: byte 0 picks the policy; byte 1 the mode (below 64: no
/// faults, the rest is `model::decode_ops`; otherwise each step is a control byte — a multiple
/// of 4 queues a fault drawn from the next byte — then an operation as `decode_ops` reads it).
/// An input that starts with [`OPS_V3_MARKER`] is read the same way after the marker, with
/// the v3 operation set (`model::decode_ops_v3`: logout, owned revoke, checked validation,
/// access tokens, by-id operations, `check_create`, `count`).
pub fn decode_ops_input(data: &[u8]) -> OpsInput {
    let (v3, data) = match data.strip_prefix(OPS_V3_MARKER) {
        Some(rest) => (true, rest),
        None => (false, data),
    };
    let policy = PolicyChoice::from_byte(data.first().copied().unwrap_or(0));
    let mode = data.get(1).copied().unwrap_or(0);
    let rest = data.get(2..).unwrap_or(&[]);
    if mode < 64 {
        let ops = if v3 {
            decode_ops_v3(rest)
        } else {
            decode_ops(rest)
        };
        return OpsInput {
            policy,
            fault_free: true,
            steps: ops
                .into_iter()
                .map(|op| FaultedOp { fault: None, op })
                .collect(),
        };
    }
    let mut src = if v3 {
        ByteSource::v3(rest)
    } else {
        ByteSource::new(rest)
    };
    let mut steps = Vec::new();
    while !src.is_empty() && steps.len() < 256 {
        let control = src.byte();
        let fault = (control % 4 == 0).then(|| {
            let b = src.byte() as usize;
            (
                Op::ALL[b % Op::ALL.len()],
                Fault::ALL[(b / Op::ALL.len()) % Fault::ALL.len()],
            )
        });
        steps.push(FaultedOp {
            fault,
            op: src.op(),
        });
    }
    OpsInput {
        policy,
        fault_free: false,
        steps,
    }
}

/// `Sessions` over `FaultyStore<MemoryStore>` with a manual clock, run in lockstep with the
/// reference model and the invariant checker, one operation at a time, faults included.
struct FaultRun<S: Store> {
    store: FaultyStore<S>,
    sessions: Sessions<FaultyStore<S>>,
    clock: ManualClock,
    events: EventLog,
    model: Model,
    checker: Checker,
    policy: Policy,
    steps: usize,
    recent: VecDeque<String>,
}

impl<S: Store + Clone> FaultRun<S> {
    fn new(choice: PolicyChoice, inner: S) -> Self {
        let policy = choice.policy();
        let store = FaultyStore::new(inner);
        let clock = ManualClock::default();
        let events = EventLog::default();
        let sessions = Sessions::new(store.clone(), policy.clone())
            .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"))
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(0xf022))
            .with_events(events.clone());
        let settings = ModelSettings {
            native_expiry: store.capabilities().native_expiry,
        };
        FaultRun {
            store,
            sessions,
            clock,
            events,
            model: Model::new(&policy, settings),
            checker: Checker::new(&policy),
            policy,
            steps: 0,
            recent: VecDeque::new(),
        }
    }

    fn note(&mut self, line: String) {
        if self.recent.len() == 12 {
            self.recent.pop_front();
        }
        self.recent.push_back(format!("#{} {line}", self.steps));
    }

    fn fail(&self, mut v: Violation) -> Violation {
        v.step = self.steps;
        v.recent = self.recent.iter().cloned().collect();
        v
    }

    fn step(&mut self, step: &FaultedOp) -> Result<(), Violation> {
        self.steps += 1;
        let now = self.clock.now();
        let Some(action) = resolve(&step.op, &self.model) else {
            if let ModelOp::Advance(j) = &step.op {
                let d = jump_duration(j, &self.model, now);
                self.clock.advance(d);
                self.note(format!("advance {j:?} = {d:?} → {}", self.clock.now()));
            }
            return self.audit(None);
        };
        let before = self.store.injected().len();
        if let Some((op, fault)) = step.fault {
            self.store.inject_next(op, fault);
        }
        let mut obs = block_on(perform(&self.sessions, &action));
        self.store.clear();
        fill_evicted(&mut obs, &self.events.take());
        let faults: Vec<(Op, Fault)> = self.store.injected().get(before..).unwrap_or(&[]).to_vec();
        let tag = if faults.is_empty() {
            String::new()
        } else {
            format!(" faults {faults:?}")
        };
        self.note(format!("{action:?} @{now} → {}{tag}", obs.summary()));
        let failed = matches!(&obs, Observed::Denied(d) if d.is_store_failure());
        if !faults.is_empty() && !failed {
            return Err(self.fail(Violation::new(
                "INV-fail-closed",
                format!(
                    "a call met faults {faults:?} and answered {}",
                    obs.summary()
                ),
            )));
        }
        self.checker
            .outcome(now, &action, &obs)
            .map_err(|v| self.fail(v))?;
        if failed {
            let f = (!faults.is_empty()).then_some(faults.as_slice());
            self.model.step_faulted(now, &action, f);
        } else if self.model.depends_on_unsure(&action) {
            self.model.step_unchecked(now, &action, &obs);
        } else if let Err(d) = self.model.step(now, &action, &obs) {
            return Err(self.fail(Violation::new("model divergence", d.to_string())));
        }
        self.audit(Some((&action, &obs)))
    }

    /// Reads the store without faults and checks it against the model and every invariant.
    fn audit(&mut self, last: Option<(&Action, &Observed)>) -> Result<(), Violation> {
        let now = self.clock.now();
        let dump = match block_on(self.store.inner().raw_dump()) {
            Ok(Some(d)) => d,
            Ok(None) => Vec::new(),
            Err(e) => return Err(self.fail(Violation::new("store error", e.to_string()))),
        };
        let (records, tickets, slots) = decode_dump(&dump);
        let truth: BTreeMap<SessionId, SessionRecord> =
            records.iter().map(|r| (r.id, r.clone())).collect();
        if let Err(e) = self
            .model
            .reconcile(&truth, now)
            .and_then(|()| self.model.reconcile_dump(&tickets, &slots, now))
        {
            return Err(self.fail(Violation::new("model divergence (stored state)", e)));
        }
        let checks = self
            .checker
            .transition(last, &records)
            .and_then(|()| self.checker.records(&records))
            .and_then(|()| self.checker.caps(&records, Some(&slots), now))
            .and_then(|()| match last {
                Some((Action::RevokeSubject { subject }, Observed::Count(_))) => {
                    self.checker.revoked_all(&records, Some(subject), None)
                }
                Some((Action::RevokeResource { resource }, Observed::Count(_))) => {
                    self.checker.revoked_all(&records, None, Some(resource))
                }
                _ => Ok(()),
            })
            .and_then(|()| match last {
                Some((Action::Reap { limit }, Observed::Reaped(out)))
                    if (out.total() as u128) < (*limit as u128) =>
                {
                    self.checker.bounded(&records, &tickets, &slots, now)
                }
                _ => Ok(()),
            })
            .and_then(|()| self.checker.hash_at_rest(&dump));
        checks.map_err(|v| self.fail(v))
    }

    /// Stops faults, moves past every deadline, reaps everything: nothing may be left.
    fn finish(&mut self) -> Result<(), Violation> {
        self.store.clear();
        let far = self.policy.absolute_lifetime() * 2 + Duration::from_secs(3600);
        self.clock.advance(far);
        self.note(format!("advance {far:?} (finish)"));
        self.step(&FaultedOp {
            fault: None,
            op: ModelOp::Reap { limit: u8::MAX },
        })?;
        let (certain, maybe) = self.model.stored_counts();
        let left = match block_on(self.store.inner().raw_dump()) {
            Ok(Some(d)) => d.len(),
            _ => 0,
        };
        if certain + maybe != 0 || left != 0 {
            return Err(self.fail(Violation::new(
                "INV-bounded-storage",
                format!(
                    "after reaping everything the model expects {certain} (+{maybe} maybe) \
                     records and the store holds {left} keys and values"
                ),
            )));
        }
        Ok(())
    }
}

/// Runs a decoded [`OpsInput`]; the first violation, if any.
pub fn run_ops(input: &OpsInput) -> Result<(), Violation> {
    if input.fault_free {
        let ops: Vec<ModelOp> = input.steps.iter().map(|s| s.op.clone()).collect();
        return check_sequence(&ops, input.policy);
    }
    run_ops_on(input, MemoryStore::new())
}

/// Runs `input` through the lockstep runner over `FaultyStore<inner>` (even when it is
/// fault-free), so a deliberately broken store can show that the checks are not vacuous.
/// `inner` must start empty and should support `raw_dump`.
pub fn run_ops_on<S: Store + Clone>(input: &OpsInput, inner: S) -> Result<(), Violation> {
    let mut run = FaultRun::new(input.policy, inner);
    for step in &input.steps {
        run.step(step)?;
    }
    run.finish()
}

/// Fuzz target `ops_vs_model`: a sequence of operations, clock jumps and injected store faults
/// (decoded by [`decode_ops_input`]) run against `Sessions` over `FaultyStore<MemoryStore>` and
/// the reference model in lockstep; panics with the first violation.
pub fn ops_vs_model(data: &[u8]) {
    let input = decode_ops_input(data);
    if let Err(v) = run_ops(&input) {
        panic!("{}", Report(&input, &v));
    }
}

struct Report<'a>(&'a OpsInput, &'a Violation);

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "ops_vs_model: policy {:?}, {} steps{}",
            self.0.policy,
            self.0.steps.len(),
            if self.0.fault_free {
                " (fault-free: model::check_sequence)"
            } else {
                " (with faults)"
            }
        )?;
        write!(f, "{}", self.1)
    }
}

// =============================================================================================
// Seed corpora
// =============================================================================================

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

fn random_bytes(state: &mut u64, len: usize) -> Vec<u8> {
    (0..len).map(|_| splitmix(state) as u8).collect()
}

/// Real tokens and records, made by a driver over a memory store: the valid seeds.
fn issued() -> (Vec<String>, Vec<Vec<u8>>) {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }))
        .max_slots_per_session(Some(2))
        .build()
        .unwrap_or_default();
    let clock = ManualClock::default();
    let s = Sessions::new(MemoryStore::new(), policy)
        .unwrap_or_else(|e| panic!("the store refuses the policy: {e}"))
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(42));
    let mut tokens = Vec::new();
    block_on(async {
        let (Ok(alice), Ok(res)) = (Subject::new("alice"), leasehold::Resource::new("sandbox-1"))
        else {
            return;
        };
        let opts = CreateOptions {
            resource: Some(res.clone()),
            context: Context::bound("device-1"),
            summary: Some("Firefox on Linux".into()),
            data: vec![1, 2, 3],
            absolute_lifetime: None,
        };
        let Ok(a) = s.create(&alice, opts).await else {
            return;
        };
        tokens.push(a.token.expose_secret().to_owned());
        let Ok(b) = s.create(&alice, CreateOptions::default()).await else {
            return;
        };
        tokens.push(b.token.expose_secret().to_owned());
        if let Ok(r) = s
            .refresh(a.token.expose_secret(), &Context::bound("device-1"))
            .await
        {
            tokens.push(r.token.expose_secret().to_owned());
            clock.advance(Duration::from_secs(1));
            if let Ok(r2) = s
                .refresh(r.token.expose_secret(), &Context::bound("device-1"))
                .await
            {
                tokens.push(r2.token.expose_secret().to_owned());
            }
        }
        if let Ok(t) = s
            .mint_ticket(b.token.expose_secret(), &Context::none())
            .await
        {
            tokens.push(t.ticket.expose_secret().to_owned());
        }
        let _ = s.acquire_slot(&b.session.id, Some(&res)).await;
        let _ = s.create(&alice, CreateOptions::default()).await; // evicts one
        let _ = s.trusted_by_id().revoke(&b.session.id).await;
    });
    let values = match block_on(s.store().raw_dump()) {
        Ok(Some(d)) => d
            .into_iter()
            .filter(|v| {
                codec::decode_session(v).is_ok()
                    || codec::decode_ticket(v).is_ok()
                    || codec::decode_slot(v).is_ok()
            })
            .collect(),
        _ => Vec::new(),
    };
    (tokens, values)
}

/// Valid and near-valid seed inputs for `target`, as (file name, bytes). Deterministic.
pub fn seed_corpus(target: &str) -> Vec<(String, Vec<u8>)> {
    let mut out: Vec<(String, Vec<u8>)> = Vec::new();
    let mut rng = 0x1ea5_e401_u64;
    match target {
        "token_parse" => {
            let (tokens, _) = issued();
            for (i, t) in tokens.iter().enumerate() {
                out.push((format!("valid-{i}"), t.clone().into_bytes()));
            }
            if let Some(t) = tokens.first() {
                let b = t.as_bytes();
                out.push(("truncated".into(), b[..b.len() - 1].to_vec()));
                out.push(("too-long".into(), [b, b"A"].concat()));
                out.push(("wrong-prefix".into(), [b"lh2", &b[3..]].concat()));
                let mut upper = b.to_vec();
                upper[5] = b'A';
                out.push(("upper-hex".into(), upper));
                let mut bits = b.to_vec();
                if let Some(last) = bits.last_mut() {
                    *last = b'B';
                }
                out.push(("trailing-bits".into(), bits));
                let mut sep = b.to_vec();
                sep[40] = b'.';
                out.push(("bad-separator".into(), sep));
                let mut utf = b.to_vec();
                utf[10] = 0xc3;
                out.push(("not-utf8".into(), utf));
            }
            out.push(("empty".into(), Vec::new()));
            out.push((
                "zero-secret".into(),
                format!("lh1_{}_{}", "0".repeat(36), "A".repeat(43)).into_bytes(),
            ));
            out.push((
                "max-prefix".into(),
                format!(
                    "0123456789abcdef_{}_{}",
                    "f".repeat(36),
                    "_".repeat(42) + "w"
                )
                .into_bytes(),
            ));
        }
        "record_decode" => {
            let (_, values) = issued();
            for (i, v) in values.iter().enumerate() {
                let kind = match v.get(1) {
                    Some(b'S') => "session",
                    Some(b'T') => "ticket",
                    Some(b'L') => "slot",
                    _ => "value",
                };
                out.push((format!("{kind}-{i}"), v.clone()));
            }
            if let Some(v) = values.iter().find(|v| v.get(1) == Some(&b'S')) {
                out.push(("session-truncated".into(), v[..v.len() - 1].to_vec()));
                let mut ver = v.clone();
                ver[0] = 2;
                out.push(("session-version-2".into(), ver));
                out.push(("session-trailing".into(), [v.as_slice(), &[0]].concat()));
                out.push(("session-unframed".into(), v[2..].to_vec()));
            }
            out.push(("empty".into(), Vec::new()));
        }
        "policy_build" => {
            // Random knob bytes, kept when they reach a new outcome (Ok, or a new error).
            let mut seen: BTreeMap<String, usize> = BTreeMap::new();
            for i in 0..4000 {
                let len = 8 + (splitmix(&mut rng) % 120) as usize;
                let bytes = if i == 0 {
                    vec![0; 64]
                } else {
                    random_bytes(&mut rng, len)
                };
                let Ok(k) = PolicyKnobs::arbitrary_take_rest(Unstructured::new(&bytes)) else {
                    continue;
                };
                let key = match k.builder().build() {
                    Ok(_) => "ok".to_owned(),
                    Err(e) => format!("{e:?}")
                        .split('(')
                        .next()
                        .unwrap_or_default()
                        .to_owned(),
                };
                let n = seen.entry(key.clone()).or_default();
                let keep = if key == "ok" { 6 } else { 1 };
                if *n < keep {
                    *n += 1;
                    out.push((format!("{}-{i}", key.to_lowercase()), bytes));
                }
            }
        }
        "ops_vs_model" => {
            for (n, choice) in PolicyChoice::ALL.iter().enumerate() {
                let c = n as u8;
                // A fault-free run (model::check_sequence) and a faulted one per policy.
                let mut clean = vec![c, 0];
                clean.extend(random_bytes(&mut rng, 96));
                out.push((format!("{choice:?}-clean").to_lowercase(), clean));
                let mut faulty = vec![c, 200];
                faulty.extend(random_bytes(&mut rng, 128));
                out.push((format!("{choice:?}-faults").to_lowercase(), faulty));
            }
            // Creates, then reads and refreshes, then a jump past everything.
            out.push((
                "create-read-refresh".into(),
                vec![
                    0, 0, // policy CapReject, fault-free
                    0, 0, 0, 0, 0, // create alice
                    0, 1, 1, 1, 5, // create bob, resource and binding
                    6, 0, 0, 0, // validate the latest token
                    11, 0, 0, 0, // refresh it
                    6, 6, 0, 0, // validate its predecessor
                    20, 0, 0, 0, // mint a ticket
                    22, 0, 0, // redeem it
                    24, 0, 0, // acquire a slot
                    29, 7, // jump past everything
                    28, 7, // reap all
                ],
            ));
            // The v3 operation set (after `OPS_V3_MARKER`), fault-free and faulted, on the
            // policies that issue access tokens and on one that does not.
            for choice in [
                PolicyChoice::Strict,
                PolicyChoice::CapEvict,
                PolicyChoice::CapReject,
            ] {
                let c = PolicyChoice::ALL
                    .iter()
                    .position(|p| *p == choice)
                    .unwrap_or(0) as u8;
                let mut clean = [OPS_V3_MARKER, &[c, 0]].concat();
                clean.extend(random_bytes(&mut rng, 128));
                out.push((format!("v3-{choice:?}-clean").to_lowercase(), clean));
                let mut faulty = [OPS_V3_MARKER, &[c, 200]].concat();
                faulty.extend(random_bytes(&mut rng, 160));
                out.push((format!("v3-{choice:?}-faults").to_lowercase(), faulty));
            }
            // Every v3 operation once or twice, on the Strict policy (access tokens for 3 s).
            out.push((
                "v3-authority".into(),
                [
                    OPS_V3_MARKER,
                    &[
                        3, 0, // policy Strict, fault-free
                        0, 0, 0, 0, 0, // create alice
                        45, 0, 0, // validate its access token
                        43, 0, 0, 0, 0, // validate_as alice
                        43, 0, 0, 0, 3, // validate_as bob: refused, nothing written
                        11, 0, 0, 0, // refresh
                        45, 5, 0, // the replaced access token
                        45, 0, 0, // the new one
                        50, 0, // keepalive by id
                        49, 0, // get by id
                        51, 0, // mint a ticket by id
                        22, 0, 0, // redeem it
                        53, 0, // check_create alice
                        54, 0, // count all
                        54, 1, // count alice's
                        29, 2, 9, 2, // jump the access TTL
                        45, 0, 0, // access token expired
                        40, 6, 0, // logout with the predecessor
                        40, 0, 0, // logout again: already revoked
                        45, 0, 0, // access token of an ended session
                        0, 1, 0, 0, 0, // create bob
                        52, 0, // give it back
                        42, 0, 1, // revoke_owned by alice: unknown
                        42, 0, 0, // revoke_owned by bob: already revoked
                        53, 1, // check_create bob
                        29, 7, // jump past everything
                        28, 7, // reap all
                    ],
                ]
                .concat(),
            ));
        }
        _ => {}
    }
    out
}
