//! The abstract operation language: what proptest generates, what a fuzzer's bytes decode to,
//! and what the simulation's clients pick. Indices count back from the most recent item the
//! model knows, so every sequence is valid and shrinks well.

use std::time::Duration;

use leasehold::{
    CapPolicy, Policy, PolicyBuilder, Rate, Resource, SessionId, SlotId, Subject, SubjectCap,
    TicketId, Timestamp,
};

use leasehold::store::Scope;

use super::action::{
    AccessInput, AccessKind, Action, TicketInput, TicketKind, TokenInput, TokenKind,
};
use super::state::{MSession, Model};

/// The policies model-based runs use: short durations (so sequences of a few dozen steps reach
/// every deadline) and caps on, in a few combinations.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum PolicyChoice {
    /// Subject cap 2 (reject), creation rate 3 per 10 s, slot caps 2 per session / 3 per
    /// resource, reuse detection on (history 2).
    CapReject,
    /// Subject cap 2 (evict oldest), global cap 3, 1 slot per session, reuse detection on;
    /// access tokens for 30 s (longer than the idle timeout: only the absolute deadline bounds
    /// them).
    CapEvict,
    /// Reuse detection off, no idle timeout, no renewal, touch on every read, no grace or
    /// orphan window, binding not enforced, no caps.
    Lenient,
    /// Idle 10 s, touch 3 s, renewal 4 s, grace = orphan = 2 s, history 1, creation rate 2 per
    /// 5 s, subject cap 3 (evict), 1 slot per resource, global cap 8; access tokens for 3 s
    /// (shorter than the renewal interval: they expire before a rotation replaces them).
    Strict,
    /// The simulation's default: subject cap 3 (evict), creation rate 4 per 10 s, slot caps
    /// 2 per session / 3 per resource.
    Simulation,
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn base() -> PolicyBuilder {
    Policy::builder()
        .absolute_lifetime(secs(60))
        .idle_timeout(Some(secs(20)))
        .touch_granularity(secs(2))
        .renewal_interval(Some(secs(8)))
        .grace_window(secs(1))
        .orphan_window(secs(4))
        .reuse_detection(true)
        .reuse_history(2)
        .ticket_ttl(secs(3))
        .slot_ttl(secs(5))
        .max_data_len(32)
}

impl PolicyChoice {
    /// Every choice.
    pub const ALL: [PolicyChoice; 5] = [
        PolicyChoice::CapReject,
        PolicyChoice::CapEvict,
        PolicyChoice::Lenient,
        PolicyChoice::Strict,
        PolicyChoice::Simulation,
    ];

    /// A choice from a byte (for fuzz targets).
    pub fn from_byte(b: u8) -> PolicyChoice {
        PolicyChoice::ALL[b as usize % PolicyChoice::ALL.len()]
    }

    /// The builder of this choice (not yet validated).
    pub fn builder(self) -> PolicyBuilder {
        match self {
            PolicyChoice::CapReject => base()
                .subject_cap(Some(SubjectCap {
                    max: 2,
                    on_full: CapPolicy::Reject,
                }))
                .creation_rate(Some(Rate {
                    max: 3,
                    window: secs(10),
                }))
                .max_slots_per_session(Some(2))
                .max_slots_per_resource(Some(3)),
            PolicyChoice::CapEvict => base()
                .subject_cap(Some(SubjectCap {
                    max: 2,
                    on_full: CapPolicy::EvictOldest,
                }))
                .global_cap(Some(leasehold::GlobalCap {
                    max: 3,
                    on_full: CapPolicy::Reject,
                }))
                .max_slots_per_session(Some(1))
                .access_ttl(Some(secs(30))),
            PolicyChoice::Lenient => base()
                .absolute_lifetime(secs(30))
                .reuse_detection(false)
                .reuse_history(0)
                .idle_timeout(None)
                .renewal_interval(None)
                .touch_granularity(Duration::ZERO)
                .grace_window(Duration::ZERO)
                .orphan_window(Duration::ZERO)
                .enforce_binding(false),
            PolicyChoice::Strict => base()
                .idle_timeout(Some(secs(10)))
                .touch_granularity(secs(3))
                .renewal_interval(Some(secs(4)))
                .grace_window(secs(2))
                .orphan_window(secs(2))
                .reuse_history(1)
                .creation_rate(Some(Rate {
                    max: 2,
                    window: secs(5),
                }))
                .subject_cap(Some(SubjectCap {
                    max: 3,
                    on_full: CapPolicy::EvictOldest,
                }))
                .max_slots_per_resource(Some(1))
                .global_cap(Some(leasehold::GlobalCap {
                    max: 8,
                    on_full: CapPolicy::Reject,
                }))
                .access_ttl(Some(secs(3))),
            PolicyChoice::Simulation => base()
                .subject_cap(Some(SubjectCap {
                    max: 3,
                    on_full: CapPolicy::EvictOldest,
                }))
                .creation_rate(Some(Rate {
                    max: 4,
                    window: secs(10),
                }))
                .max_slots_per_session(Some(2))
                .max_slots_per_resource(Some(3)),
        }
    }

    /// The policy of this choice. Every choice is valid (a unit test builds them all); if one
    /// ever were not, the defaults are returned rather than panicking in library code.
    pub fn policy(self) -> Policy {
        self.builder().build().unwrap_or_default()
    }
}

/// Which token a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenPick {
    /// The newest known token of the n-th most recent session.
    Latest(u8),
    /// The token before it (the predecessor, if that is the current one).
    Previous(u8),
    /// An older one: `2 + back` generations before the newest known.
    Older {
        /// Session (n-th most recent).
        session: u8,
        /// How much further back.
        back: u8,
    },
    /// The session's id with a secret never issued.
    Forged(u8),
    /// A well-formed token with an unknown id.
    UnknownId(u8),
    /// A malformed variant of a token (seven ways).
    Garbled {
        /// Session (n-th most recent).
        session: u8,
        /// Which damage.
        how: u8,
    },
}

/// The request context a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CtxPick {
    /// The binding the session was created with.
    Own,
    /// No binding.
    Missing,
    /// Another binding.
    Other,
}

/// Which access token a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessPick {
    /// The newest known access token of the n-th most recent session that has one.
    Latest(u8),
    /// The one before it (replaced by a rotation, if the newest is current).
    Replaced(u8),
    /// The session's id with a secret never issued.
    Forged(u8),
    /// A well-formed access token with an unknown id.
    UnknownId(u8),
    /// A malformed access token (a damaged one, or a session token presented as one).
    Garbled {
        /// Session (n-th most recent).
        session: u8,
        /// Which damage.
        how: u8,
    },
}

/// What a count covers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScopePick {
    /// Every session.
    All,
    /// One subject's.
    Subject(u8),
    /// One resource's.
    Resource(u8),
}

/// Which ticket a client presents.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketPick {
    /// The n-th most recent minted ticket (redeemed or not).
    Issued(u8),
    /// Its id with a wrong secret.
    Forged(u8),
    /// A malformed ticket.
    Garbled(u8),
    /// A well-formed ticket with an unknown id.
    Unknown(u8),
}

/// The data version an update expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VersionPick {
    /// The current one.
    Current,
    /// An older one.
    Stale,
    /// One not reached yet.
    Ahead,
}

/// A policy duration, for clock jumps.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Knob {
    /// Touch granularity.
    Touch,
    /// Grace window.
    Grace,
    /// Orphan window.
    Orphan,
    /// Renewal interval.
    Renewal,
    /// Idle timeout.
    Idle,
    /// Absolute lifetime.
    Absolute,
    /// Ticket TTL.
    TicketTtl,
    /// Slot TTL.
    SlotTtl,
    /// Creation-rate window.
    RateWindow,
    /// Access token TTL (not in [`Knob::ALL`], which committed fuzz inputs index).
    AccessTtl,
}

impl Knob {
    /// Every knob.
    pub const ALL: [Knob; 9] = [
        Knob::Touch,
        Knob::Grace,
        Knob::Orphan,
        Knob::Renewal,
        Knob::Idle,
        Knob::Absolute,
        Knob::TicketTtl,
        Knob::SlotTtl,
        Knob::RateWindow,
    ];

    /// Every knob, access TTL included (the v3 decoding and the proptest generator).
    pub const WITH_ACCESS: [Knob; 10] = [
        Knob::Touch,
        Knob::Grace,
        Knob::Orphan,
        Knob::Renewal,
        Knob::Idle,
        Knob::Absolute,
        Knob::TicketTtl,
        Knob::SlotTtl,
        Knob::RateWindow,
        Knob::AccessTtl,
    ];
}

/// A deadline of a particular record, for clock jumps that land right around it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Anchor {
    /// `last_seen + touch granularity` of a session.
    TouchDue,
    /// `rotated_at + grace window`.
    GraceEnd,
    /// `rotated_at + orphan window`.
    OrphanEnd,
    /// `rotated_at + renewal interval`.
    RenewalDue,
    /// `expires_at` of a session.
    Expiry,
    /// `absolute_deadline` of a session.
    AbsoluteDeadline,
    /// `expires_at` of a ticket.
    TicketExpiry,
    /// `expires_at` of a slot.
    SlotExpiry,
    /// The current access token's deadline of a session (not in [`Anchor::ALL`], which
    /// committed fuzz inputs index).
    AccessExpiry,
}

impl Anchor {
    /// Every anchor.
    pub const ALL: [Anchor; 8] = [
        Anchor::TouchDue,
        Anchor::GraceEnd,
        Anchor::OrphanEnd,
        Anchor::RenewalDue,
        Anchor::Expiry,
        Anchor::AbsoluteDeadline,
        Anchor::TicketExpiry,
        Anchor::SlotExpiry,
    ];

    /// Every anchor, the access token's deadline included.
    pub const WITH_ACCESS: [Anchor; 9] = [
        Anchor::TouchDue,
        Anchor::GraceEnd,
        Anchor::OrphanEnd,
        Anchor::RenewalDue,
        Anchor::Expiry,
        Anchor::AbsoluteDeadline,
        Anchor::TicketExpiry,
        Anchor::SlotExpiry,
        Anchor::AccessExpiry,
    ];
}

/// A clock jump (time only moves forward).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Jump {
    /// This many milliseconds.
    Millis(u16),
    /// A policy duration plus `delta_ms` (may be negative).
    Knob {
        /// Which duration.
        knob: Knob,
        /// Offset in milliseconds.
        delta_ms: i8,
    },
    /// To a record's deadline plus `delta_ms` (if that is still ahead; else `|delta_ms|`).
    Anchor {
        /// Which deadline.
        target: Anchor,
        /// Which record (n-th most recent).
        index: u8,
        /// Offset in milliseconds.
        delta_ms: i8,
    },
    /// Past every deadline of everything that exists now.
    PastEverything,
}

/// An abstract operation.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelOp {
    /// Create a session.
    Create {
        /// Subject (one of three).
        subject: u8,
        /// Resource tag (one of two), if any.
        resource: Option<u8>,
        /// Binding (one of two), if any.
        binding: Option<u8>,
        /// Data length (may exceed the policy's limit).
        data_len: u8,
    },
    /// Validate.
    Validate {
        /// Token.
        token: TokenPick,
        /// Context.
        ctx: CtxPick,
    },
    /// Refresh.
    Refresh {
        /// Token.
        token: TokenPick,
        /// Context.
        ctx: CtxPick,
    },
    /// Revoke by id.
    Revoke {
        /// Session (n-th most recent).
        session: u8,
    },
    /// Revoke a subject.
    RevokeSubject {
        /// Subject.
        subject: u8,
    },
    /// Revoke a resource.
    RevokeResource {
        /// Resource.
        resource: u8,
    },
    /// List a subject's sessions.
    List {
        /// Subject.
        subject: u8,
    },
    /// Update data.
    UpdateData {
        /// Session (n-th most recent).
        session: u8,
        /// Expected version.
        version: VersionPick,
        /// Data length.
        data_len: u8,
    },
    /// Mint a ticket.
    MintTicket {
        /// Token.
        token: TokenPick,
        /// Context.
        ctx: CtxPick,
    },
    /// Redeem a ticket.
    RedeemTicket {
        /// Ticket.
        ticket: TicketPick,
    },
    /// Acquire a slot.
    AcquireSlot {
        /// Session (n-th most recent).
        session: u8,
        /// Resource (one of two), if any.
        resource: Option<u8>,
    },
    /// Heartbeat a slot.
    HeartbeatSlot {
        /// Slot (n-th most recent).
        slot: u8,
    },
    /// Release a slot.
    ReleaseSlot {
        /// Slot (n-th most recent).
        slot: u8,
    },
    /// Reap with a batch limit.
    Reap {
        /// Limit (255 means unbounded).
        limit: u8,
    },
    /// Move the clock.
    Advance(Jump),
    /// Log out by token.
    Logout {
        /// Token.
        token: TokenPick,
    },
    /// Revoke a session for an owner.
    RevokeOwned {
        /// Session (n-th most recent).
        session: u8,
        /// The owner claimed: `None` its own, else one of the subjects.
        owner: Option<u8>,
    },
    /// Validate, expecting a subject (a pre-grant check).
    ValidateAs {
        /// Token.
        token: TokenPick,
        /// Context.
        ctx: CtxPick,
        /// The subject expected: `None` the session's own, else one of the subjects.
        subject: Option<u8>,
    },
    /// Validate an access token.
    ValidateAccess {
        /// Access token.
        access: AccessPick,
    },
    /// Trusted `get` by id.
    GetById {
        /// Session (n-th most recent).
        session: u8,
    },
    /// Trusted `keepalive` by id.
    KeepaliveById {
        /// Session (n-th most recent).
        session: u8,
    },
    /// Trusted `mint_ticket` by id.
    MintTicketById {
        /// Session (n-th most recent).
        session: u8,
    },
    /// Trusted `give_back` by id.
    GiveBack {
        /// Session (n-th most recent).
        session: u8,
    },
    /// Would a create of this subject pass?
    CheckCreate {
        /// Subject.
        subject: u8,
    },
    /// Count live sessions.
    Count {
        /// Scope.
        scope: ScopePick,
    },
}

/// Subjects used by model-based runs.
pub(crate) const SUBJECTS: [&str; 3] = ["alice", "bob", "carol"];

fn subject(i: u8) -> Option<Subject> {
    Subject::new(SUBJECTS[i as usize % SUBJECTS.len()]).ok()
}

fn resource(i: u8) -> Option<Resource> {
    Resource::new(format!("res-{}", i % 2)).ok()
}

fn binding(i: u8) -> String {
    format!("device-{}", i % 2)
}

fn data(len: u8, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| i.wrapping_mul(31).wrapping_add(salt))
        .collect()
}

/// Reads bytes for [`decode_ops`]; yields zeros once exhausted.
#[derive(Clone, Debug)]
pub struct ByteSource<'a> {
    data: &'a [u8],
    pos: usize,
    v3: bool,
}

impl<'a> ByteSource<'a> {
    /// Reads `data` from the start, decoding the original operation set (every committed fuzz
    /// input keeps its meaning).
    pub fn new(data: &'a [u8]) -> Self {
        ByteSource {
            data,
            pos: 0,
            v3: false,
        }
    }

    /// Reads `data` from the start, decoding the v3 operation set: the original one plus
    /// logout, owned revoke, checked validation, access tokens, the trusted by-id operations,
    /// `check_create` and `count` (see [`op`](Self::op)), and jumps to the access TTL.
    pub fn v3(data: &'a [u8]) -> Self {
        ByteSource {
            data,
            pos: 0,
            v3: true,
        }
    }

    /// True once every byte was read.
    pub fn is_empty(&self) -> bool {
        self.pos >= self.data.len()
    }

    /// The next byte (0 once exhausted).
    pub fn byte(&mut self) -> u8 {
        let b = self.data.get(self.pos).copied().unwrap_or(0);
        self.pos += 1;
        b
    }

    fn opt(&mut self) -> Option<u8> {
        let b = self.byte();
        (b & 1 == 1).then_some(b >> 1)
    }

    fn token(&mut self) -> TokenPick {
        let (a, b) = (self.byte(), self.byte());
        match a % 12 {
            0..=5 => TokenPick::Latest(b),
            6 | 7 => TokenPick::Previous(b),
            8 => TokenPick::Older {
                session: b,
                back: a >> 4,
            },
            9 => TokenPick::Forged(b),
            10 => TokenPick::UnknownId(b),
            _ => TokenPick::Garbled {
                session: b,
                how: a >> 4,
            },
        }
    }

    fn ctx(&mut self) -> CtxPick {
        match self.byte() % 4 {
            0 | 1 => CtxPick::Own,
            2 => CtxPick::Missing,
            _ => CtxPick::Other,
        }
    }

    fn delta(&mut self) -> i8 {
        (self.byte() % 5) as i8 - 2
    }

    fn knob(&mut self) -> Knob {
        let b = self.byte() as usize;
        if self.v3 {
            Knob::WITH_ACCESS[b % Knob::WITH_ACCESS.len()]
        } else {
            Knob::ALL[b % Knob::ALL.len()]
        }
    }

    fn anchor(&mut self) -> Anchor {
        let b = self.byte() as usize;
        if self.v3 {
            Anchor::WITH_ACCESS[b % Anchor::WITH_ACCESS.len()]
        } else {
            Anchor::ALL[b % Anchor::ALL.len()]
        }
    }

    fn access(&mut self) -> AccessPick {
        let (a, b) = (self.byte(), self.byte());
        match a % 10 {
            0..=4 => AccessPick::Latest(b),
            5 | 6 => AccessPick::Replaced(b),
            7 => AccessPick::Forged(b),
            8 => AccessPick::UnknownId(b),
            _ => AccessPick::Garbled {
                session: b,
                how: a >> 4,
            },
        }
    }

    /// Decodes one operation. Weights: creates and reads are the most common, clock jumps a
    /// quarter of everything. The original set reads a tag byte modulo 40; the v3 set
    /// ([`ByteSource::v3`]) modulo 56, where 0–39 mean what they always meant and 40–55 are the
    /// new operations.
    pub fn op(&mut self) -> ModelOp {
        let b = self.byte();
        if self.v3 && b % 56 >= 40 {
            return self.op_v3(b % 56 - 40);
        }
        let tag = if self.v3 { b % 56 } else { b % 40 };
        match tag {
            0..=5 => ModelOp::Create {
                subject: self.byte(),
                resource: self.opt(),
                binding: self.opt(),
                data_len: self.byte() % 40,
            },
            6..=10 => ModelOp::Validate {
                token: self.token(),
                ctx: self.ctx(),
            },
            11..=13 => ModelOp::Refresh {
                token: self.token(),
                ctx: self.ctx(),
            },
            14 => ModelOp::Revoke {
                session: self.byte(),
            },
            15 => ModelOp::RevokeSubject {
                subject: self.byte(),
            },
            16 => ModelOp::RevokeResource {
                resource: self.byte(),
            },
            17 => ModelOp::List {
                subject: self.byte(),
            },
            18 | 19 => ModelOp::UpdateData {
                session: self.byte(),
                version: match self.byte() % 4 {
                    0 | 1 => VersionPick::Current,
                    2 => VersionPick::Stale,
                    _ => VersionPick::Ahead,
                },
                data_len: self.byte() % 40,
            },
            20 | 21 => ModelOp::MintTicket {
                token: self.token(),
                ctx: self.ctx(),
            },
            22 | 23 => {
                let (a, b) = (self.byte(), self.byte());
                ModelOp::RedeemTicket {
                    ticket: match a % 8 {
                        0..=4 => TicketPick::Issued(b),
                        5 => TicketPick::Forged(b),
                        6 => TicketPick::Garbled(b),
                        _ => TicketPick::Unknown(b),
                    },
                }
            }
            24 | 25 => ModelOp::AcquireSlot {
                session: self.byte(),
                resource: self.opt(),
            },
            26 => ModelOp::HeartbeatSlot { slot: self.byte() },
            27 => ModelOp::ReleaseSlot { slot: self.byte() },
            28 => ModelOp::Reap {
                limit: match self.byte() % 8 {
                    7 => u8::MAX,
                    n => n,
                },
            },
            _ => ModelOp::Advance(match self.byte() % 8 {
                0 | 1 => ModelOp::millis(self.byte(), self.byte()),
                2..=4 => Jump::Knob {
                    knob: self.knob(),
                    delta_ms: self.delta(),
                },
                5 | 6 => Jump::Anchor {
                    target: self.anchor(),
                    index: self.byte(),
                    delta_ms: self.delta(),
                },
                _ => Jump::PastEverything,
            }),
        }
    }

    /// The operations added in v3, by tag 0–15.
    fn op_v3(&mut self, tag: u8) -> ModelOp {
        match tag {
            0 | 1 => ModelOp::Logout {
                token: self.token(),
            },
            2 => ModelOp::RevokeOwned {
                session: self.byte(),
                owner: self.opt(),
            },
            3 | 4 => ModelOp::ValidateAs {
                token: self.token(),
                ctx: self.ctx(),
                subject: self.opt(),
            },
            5..=8 => ModelOp::ValidateAccess {
                access: self.access(),
            },
            9 => ModelOp::GetById {
                session: self.byte(),
            },
            10 => ModelOp::KeepaliveById {
                session: self.byte(),
            },
            11 => ModelOp::MintTicketById {
                session: self.byte(),
            },
            12 => ModelOp::GiveBack {
                session: self.byte(),
            },
            13 => ModelOp::CheckCreate {
                subject: self.byte(),
            },
            _ => ModelOp::Count {
                scope: {
                    let b = self.byte();
                    match b % 3 {
                        0 => ScopePick::All,
                        1 => ScopePick::Subject(b >> 2),
                        _ => ScopePick::Resource(b >> 2),
                    }
                },
            },
        }
    }
}

impl ModelOp {
    fn millis(hi: u8, lo: u8) -> Jump {
        Jump::Millis(u16::from_be_bytes([hi, lo]) % 3000)
    }
}

/// Decodes a whole byte string into operations (at most 256): the entry point for fuzz
/// targets. Every input decodes to some sequence; nothing panics.
pub fn decode_ops(data: &[u8]) -> Vec<ModelOp> {
    decode_with(ByteSource::new(data))
}

/// Decodes a whole byte string into operations of the v3 set ([`ByteSource::v3`]), at most 256.
pub fn decode_ops_v3(data: &[u8]) -> Vec<ModelOp> {
    decode_with(ByteSource::v3(data))
}

fn decode_with(mut src: ByteSource<'_>) -> Vec<ModelOp> {
    let mut ops = Vec::new();
    while !src.is_empty() && ops.len() < 256 {
        ops.push(src.op());
    }
    ops
}

/// The n-th most recent of `items`.
fn nth_recent<T>(items: &[T], n: u8) -> Option<&T> {
    let len = items.len();
    if len == 0 {
        return None;
    }
    items.get(len - 1 - (n as usize % len))
}

fn unknown_id_bytes(n: u8) -> [u8; 18] {
    let mut b = [0xEE; 18];
    b[17] = n;
    b
}

/// A base64url secret that decodes canonically (43 'A's are 32 zero bytes).
const FAKE_SECRET: &str = "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA";

/// Replaces one character of the secret part (not the last, which carries padding bits).
fn forge(text: &str) -> String {
    let mut b = text.as_bytes().to_vec();
    let i = b.len().saturating_sub(10);
    if let Some(c) = b.get_mut(i) {
        *c = if *c == b'A' { b'B' } else { b'A' };
    }
    String::from_utf8(b).unwrap_or_default()
}

/// A malformed variant of a well-formed `<prefix>_<36 hex>_<43>` text.
fn garble(text: &str, prefix_len: usize, how: u8) -> String {
    let mut b = text.as_bytes().to_vec();
    let set = |b: &mut Vec<u8>, i: usize, c: u8| {
        if let Some(x) = b.get_mut(i) {
            *x = c;
        }
    };
    match how % 7 {
        0 => return String::new(),
        1 => {
            b.pop();
        }
        2 => b.push(b'A'),
        3 => {
            let first = b.first().copied().unwrap_or(b'l');
            set(&mut b, 0, if first == b'x' { b'y' } else { b'x' });
        }
        4 => set(&mut b, prefix_len + 1, b'G'),
        5 => set(&mut b, prefix_len + 1 + leasehold::ID_TEXT_LEN, b'.'),
        _ => {
            let i = b.len().saturating_sub(5);
            set(&mut b, i, b'+');
        }
    }
    String::from_utf8(b).unwrap_or_default()
}

fn holders(model: &Model) -> Vec<&MSession> {
    model.sessions().filter(|s| !s.tokens.is_empty()).collect()
}

fn token_input(model: &Model, pick: TokenPick) -> TokenInput {
    let prefix = model.policy().token_prefix();
    let unknown = |n: u8| TokenInput {
        text: format!(
            "{prefix}_{}_{FAKE_SECRET}",
            SessionId::from_bytes(unknown_id_bytes(n))
        ),
        kind: TokenKind::UnknownId,
    };
    let hs = holders(model);
    let issued = |s: &MSession, upto: Option<u64>| {
        // The newest known generation at or below `gen` (or the oldest known).
        let text = match upto {
            None => s.latest_token().map(|(_, t)| t.to_owned()),
            Some(g) => s
                .tokens
                .range(..=g)
                .next_back()
                .or_else(|| s.tokens.iter().next())
                .map(|(_, t)| t.clone()),
        };
        text.map(|text| TokenInput {
            text,
            kind: TokenKind::Issued,
        })
    };
    let out = match pick {
        TokenPick::Latest(n) => nth_recent(&hs, n).and_then(|s| issued(s, None)),
        TokenPick::Previous(n) => nth_recent(&hs, n).and_then(|s| {
            let latest = s.latest_token().map_or(0, |(g, _)| g);
            issued(s, Some(latest.saturating_sub(1)))
        }),
        TokenPick::Older { session, back } => nth_recent(&hs, session).and_then(|s| {
            let latest = s.latest_token().map_or(0, |(g, _)| g);
            issued(s, Some(latest.saturating_sub(2 + u64::from(back % 4))))
        }),
        TokenPick::Forged(n) => nth_recent(&hs, n).and_then(|s| {
            s.latest_token().map(|(_, t)| TokenInput {
                text: forge(t),
                kind: TokenKind::Forged(s.id),
            })
        }),
        TokenPick::UnknownId(n) => Some(unknown(n)),
        TokenPick::Garbled { session, how } => {
            let base = nth_recent(&hs, session)
                .and_then(|s| s.latest_token().map(|(_, t)| t.to_owned()))
                .unwrap_or_else(|| unknown(session).text);
            // A ticket presented as a session token is malformed too (wrong prefix).
            let text = match (
                how % 8,
                model.tickets().iter().rev().find_map(|t| t.text.clone()),
            ) {
                (7, Some(ticket)) => ticket,
                _ => garble(&base, prefix.len(), how),
            };
            Some(TokenInput {
                text,
                kind: TokenKind::Malformed,
            })
        }
    };
    out.unwrap_or_else(|| match pick {
        TokenPick::UnknownId(n) | TokenPick::Latest(n) | TokenPick::Previous(n) => unknown(n),
        _ => unknown(0),
    })
}

fn ctx_for(model: &Model, token: &TokenInput, pick: CtxPick) -> Option<String> {
    match pick {
        CtxPick::Missing => None,
        CtxPick::Other => Some("device-other".to_owned()),
        CtxPick::Own => {
            let id = match token.kind {
                TokenKind::Issued => model.lookup_token(&token.text).map(|(id, _)| id),
                TokenKind::Forged(id) => Some(id),
                _ => None,
            };
            id.and_then(|id| model.session(&id))
                .and_then(|s| s.binding.clone())
        }
    }
}

fn access_input(model: &Model, pick: AccessPick) -> AccessInput {
    let prefix = model.policy().access_prefix();
    let unknown = |n: u8| AccessInput {
        text: format!(
            "{prefix}_{}_{FAKE_SECRET}",
            SessionId::from_bytes(unknown_id_bytes(n))
        ),
        kind: AccessKind::UnknownId,
    };
    let hs: Vec<&MSession> = model
        .sessions()
        .filter(|s| !s.access_tokens.is_empty())
        .collect();
    let issued = |text: &String| AccessInput {
        text: text.clone(),
        kind: AccessKind::Issued,
    };
    let out = match pick {
        AccessPick::Latest(n) => nth_recent(&hs, n)
            .and_then(|s| s.access_tokens.values().next_back())
            .map(issued),
        AccessPick::Replaced(n) => nth_recent(&hs, n)
            .and_then(|s| {
                s.access_tokens
                    .values()
                    .rev()
                    .nth(1)
                    .or(s.access_tokens.values().next())
            })
            .map(issued),
        AccessPick::Forged(n) => nth_recent(&hs, n).and_then(|s| {
            s.access_tokens.values().next_back().map(|t| AccessInput {
                text: forge(t),
                kind: AccessKind::Forged(s.id),
            })
        }),
        AccessPick::UnknownId(n) => Some(unknown(n)),
        AccessPick::Garbled { session, how } => {
            let base = nth_recent(&hs, session)
                .and_then(|s| s.access_tokens.values().next_back().cloned())
                .unwrap_or_else(|| unknown(session).text);
            // A session token presented as an access token is malformed too (wrong prefix).
            let text = match (
                how % 8,
                model.sessions().rev().find_map(|s| s.latest_token()),
            ) {
                (7, Some((_, t))) => t.to_owned(),
                _ => garble(&base, prefix.len(), how),
            };
            Some(AccessInput {
                text,
                kind: AccessKind::Malformed,
            })
        }
    };
    out.unwrap_or_else(|| match pick {
        AccessPick::Latest(n) | AccessPick::Replaced(n) | AccessPick::Forged(n) => unknown(n),
        _ => unknown(0),
    })
}

fn ticket_input(model: &Model, pick: TicketPick) -> TicketInput {
    let prefix = model.policy().ticket_prefix();
    let unknown = |n: u8| TicketInput {
        text: format!(
            "{prefix}_{}_{FAKE_SECRET}",
            TicketId::from_bytes(unknown_id_bytes(n))
        ),
        kind: TicketKind::UnknownId,
    };
    let known: Vec<&str> = model
        .tickets()
        .iter()
        .filter_map(|t| t.text.as_deref())
        .collect();
    match pick {
        TicketPick::Issued(n) => nth_recent(&known, n).map_or_else(
            || unknown(n),
            |t| TicketInput {
                text: (*t).to_owned(),
                kind: TicketKind::Issued,
            },
        ),
        TicketPick::Forged(n) => nth_recent(&known, n).map_or_else(
            || unknown(n),
            |t| TicketInput {
                text: forge(t),
                kind: TicketKind::Forged,
            },
        ),
        TicketPick::Garbled(n) => {
            let text = if n % 8 == 7
                && let Some((_, t)) = model.sessions().rev().find_map(|s| s.latest_token())
            {
                // A session token presented as a ticket: wrong prefix.
                t.to_owned()
            } else {
                let base =
                    nth_recent(&known, n).map_or_else(|| unknown(n).text, |t| (*t).to_owned());
                garble(&base, prefix.len(), n)
            };
            TicketInput {
                text,
                kind: TicketKind::Malformed,
            }
        }
        TicketPick::Unknown(n) => unknown(n),
    }
}

fn session_id(model: &Model, n: u8) -> SessionId {
    let all: Vec<&MSession> = model.sessions().collect();
    nth_recent(&all, n).map_or_else(|| SessionId::from_bytes(unknown_id_bytes(n)), |s| s.id)
}

fn slot_id(model: &Model, n: u8) -> SlotId {
    let ids: Vec<SlotId> = model.slots().iter().filter_map(|s| s.id).collect();
    nth_recent(&ids, n)
        .copied()
        .unwrap_or_else(|| SlotId::from_bytes(unknown_id_bytes(n)))
}

/// Resolves `op` against what `model` knows into a concrete action; `None` for a clock jump.
pub fn resolve(op: &ModelOp, model: &Model) -> Option<Action> {
    Some(match op {
        ModelOp::Create {
            subject: s,
            resource: r,
            binding: b,
            data_len,
        } => Action::Create {
            subject: subject(*s)?,
            resource: r.and_then(resource),
            binding: b.map(binding),
            data: data(*data_len, *s),
        },
        ModelOp::Validate { token, ctx } => {
            let token = token_input(model, *token);
            let binding = ctx_for(model, &token, *ctx);
            Action::Validate { token, binding }
        }
        ModelOp::Refresh { token, ctx } => {
            let token = token_input(model, *token);
            let binding = ctx_for(model, &token, *ctx);
            Action::Refresh { token, binding }
        }
        ModelOp::MintTicket { token, ctx } => {
            let token = token_input(model, *token);
            let binding = ctx_for(model, &token, *ctx);
            Action::MintTicket { token, binding }
        }
        ModelOp::Revoke { session } => Action::Revoke {
            id: session_id(model, *session),
        },
        ModelOp::RevokeSubject { subject: s } => Action::RevokeSubject {
            subject: subject(*s)?,
        },
        ModelOp::RevokeResource { resource: r } => Action::RevokeResource {
            resource: resource(*r)?,
        },
        ModelOp::List { subject: s } => Action::List {
            subject: subject(*s)?,
        },
        ModelOp::UpdateData {
            session,
            version,
            data_len,
        } => {
            let id = session_id(model, *session);
            let current = model.session(&id).map_or(0, |s| s.data_version);
            Action::UpdateData {
                id,
                expected: match version {
                    VersionPick::Current => current,
                    VersionPick::Stale => current.wrapping_sub(1),
                    VersionPick::Ahead => current + 1,
                },
                data: data(*data_len, *session ^ 0x55),
            }
        }
        ModelOp::RedeemTicket { ticket } => Action::RedeemTicket {
            ticket: ticket_input(model, *ticket),
        },
        ModelOp::AcquireSlot {
            session,
            resource: r,
        } => Action::AcquireSlot {
            session: session_id(model, *session),
            resource: r.and_then(resource),
        },
        ModelOp::HeartbeatSlot { slot } => Action::HeartbeatSlot {
            slot: slot_id(model, *slot),
        },
        ModelOp::ReleaseSlot { slot } => Action::ReleaseSlot {
            slot: slot_id(model, *slot),
        },
        ModelOp::Reap { limit } => Action::Reap {
            limit: if *limit == u8::MAX {
                usize::MAX
            } else {
                *limit as usize
            },
        },
        ModelOp::Advance(_) => return None,
        ModelOp::Logout { token } => Action::Logout {
            token: token_input(model, *token),
        },
        ModelOp::RevokeOwned { session, owner } => {
            let id = session_id(model, *session);
            let subject = match owner {
                Some(i) => subject(*i)?,
                None => own_subject(model, Some(id))?,
            };
            Action::RevokeOwned { subject, id }
        }
        ModelOp::ValidateAs {
            token,
            ctx,
            subject: s,
        } => {
            let token = token_input(model, *token);
            let binding = ctx_for(model, &token, *ctx);
            let subject = match s {
                Some(i) => subject(*i)?,
                None => own_subject(model, token_session(model, &token))?,
            };
            Action::ValidateAs {
                token,
                binding,
                subject,
            }
        }
        ModelOp::ValidateAccess { access } => Action::ValidateAccess {
            access: access_input(model, *access),
        },
        ModelOp::GetById { session } => Action::GetById {
            id: session_id(model, *session),
        },
        ModelOp::KeepaliveById { session } => Action::KeepaliveById {
            id: session_id(model, *session),
        },
        ModelOp::MintTicketById { session } => Action::MintTicketById {
            id: session_id(model, *session),
        },
        ModelOp::GiveBack { session } => Action::GiveBack {
            id: session_id(model, *session),
        },
        ModelOp::CheckCreate { subject: s } => Action::CheckCreate {
            subject: subject(*s)?,
        },
        ModelOp::Count { scope } => Action::Count {
            scope: match scope {
                ScopePick::All => Scope::All,
                ScopePick::Subject(s) => Scope::Subject(subject(*s)?),
                ScopePick::Resource(r) => Scope::Resource(resource(*r)?),
            },
        },
    })
}

/// The session a presented token names, as far as the model knows.
fn token_session(model: &Model, token: &TokenInput) -> Option<SessionId> {
    match token.kind {
        TokenKind::Issued => model.lookup_token(&token.text).map(|(id, _)| id),
        TokenKind::Forged(id) => Some(id),
        _ => None,
    }
}

/// The owner of session `id` (the first subject when unknown).
fn own_subject(model: &Model, id: Option<SessionId>) -> Option<Subject> {
    match id.and_then(|id| model.session(&id)) {
        Some(s) => Some(s.subject.clone()),
        None => subject(0),
    }
}

fn offset(t: Timestamp, delta_ms: i8) -> Timestamp {
    let d = Duration::from_millis(u64::from(delta_ms.unsigned_abs()));
    if delta_ms >= 0 {
        t.saturating_add(d)
    } else {
        t.saturating_sub(d)
    }
}

/// How far `jump` moves a clock that reads `now`.
pub fn jump_duration(jump: &Jump, model: &Model, now: Timestamp) -> Duration {
    let knob = |k: Knob| model.knob(k).unwrap_or(Duration::from_secs(1));
    match *jump {
        Jump::Millis(ms) => Duration::from_millis(u64::from(ms)),
        Jump::Knob { knob: k, delta_ms } => {
            let d = knob(k);
            let delta = Duration::from_millis(u64::from(delta_ms.unsigned_abs()));
            if delta_ms >= 0 {
                d + delta
            } else {
                d.saturating_sub(delta)
            }
        }
        Jump::Anchor {
            target,
            index,
            delta_ms,
        } => {
            let all: Vec<&MSession> = model.sessions().collect();
            let s = nth_recent(&all, index);
            let at = match target {
                Anchor::TouchDue => s.map(|s| s.last_seen.saturating_add(knob(Knob::Touch))),
                Anchor::GraceEnd => s.map(|s| s.rotated_at.saturating_add(knob(Knob::Grace))),
                Anchor::OrphanEnd => s.map(|s| s.rotated_at.saturating_add(knob(Knob::Orphan))),
                Anchor::RenewalDue => s.map(|s| s.rotated_at.saturating_add(knob(Knob::Renewal))),
                Anchor::Expiry => s.map(|s| s.expires_at),
                Anchor::AbsoluteDeadline => s.map(|s| s.absolute_deadline),
                Anchor::TicketExpiry => nth_recent(model.tickets(), index).map(|t| t.expires_at),
                Anchor::SlotExpiry => nth_recent(model.slots(), index).map(|s| s.expires_at),
                Anchor::AccessExpiry => s.and_then(|s| s.access_expires_at),
            };
            let fallback = Duration::from_millis(u64::from(delta_ms.unsigned_abs()));
            match at.map(|t| offset(t, delta_ms)) {
                Some(t) if t > now => t.since(now),
                _ => fallback,
            }
        }
        Jump::PastEverything => {
            knob(Knob::Absolute) + knob(Knob::RateWindow) + Duration::from_secs(1)
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn every_policy_choice_builds() {
        for c in PolicyChoice::ALL {
            c.builder().build().unwrap_or_else(|e| panic!("{c:?}: {e}"));
        }
    }

    #[test]
    fn decoding_is_total_and_bounded() {
        assert!(decode_ops(&[]).is_empty());
        let bytes: Vec<u8> = (0..=255).cycle().take(5000).collect();
        let ops = decode_ops(&bytes);
        assert!(!ops.is_empty() && ops.len() <= 256);
    }

    #[test]
    fn garbled_tokens_are_malformed() {
        let model = Model::new(&PolicyChoice::CapReject.policy(), Default::default());
        let good = token_input(&model, TokenPick::UnknownId(3)).text;
        leasehold::token::parse(good.as_bytes(), "lh1").unwrap();
        for how in 0..7 {
            let bad = garble(&good, 3, how);
            assert!(
                leasehold::token::parse(bad.as_bytes(), "lh1").is_err(),
                "{how}: {bad}"
            );
        }
        let forged = forge(&good);
        assert_ne!(forged, good);
        leasehold::token::parse(forged.as_bytes(), "lh1").unwrap();
    }
}
