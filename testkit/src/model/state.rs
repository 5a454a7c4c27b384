//! The model's state and the rules, written from DESIGN.md §3–§8 and the documented engine
//! choices (policy.rs, read.rs, rotation.rs doc comments) — never from `leasehold::decide`.
//!
//! Every rule below is stated the way the brief states it:
//! - a session is *live* at `now` when it is active and `now < expires_at`;
//! - endings are final: a session ends by a tombstone (revoked, evicted, reuse, or an expiry
//!   someone observed — a caller is told `Expired` only once its tombstone is written), and
//!   every revocation writes one over any record that is not one yet, whatever the clock;
//! - each operation is judged at its caller's clock (the stores modelled have none of their
//!   own), and nothing else about time is assumed: callers' clocks may disagree or step back;
//! - `expires_at = min(last touch + idle timeout, created_at + absolute lifetime)`;
//! - validate writes the touch only when it moved forward, by at least the touch granularity;
//! - the generations of a session's token form a chain: the current one, its immediate
//!   predecessor, and up to `reuse_history` older ones that are still *recognised* (presenting
//!   one is reuse); anything older is simply unknown;
//! - the predecessor is answered with the *same* successor while the grace window is open, or
//!   while the successor was never presented and the orphan window is open; otherwise reuse;
//! - a context binding gates grants only: reuse is detected whatever binding comes with it;
//! - the sealed successor is kept only while a predecessor window can use it: the first write
//!   after both windows closed drops it, and then the predecessor is a reuse;
//! - a slot counts against a cap while it is unexpired and its session is live;
//! - an access token (policy `access_ttl`) is issued with the session and with every rotation
//!   (deadline: the issuing time plus the TTL, never past the absolute deadline); a rotation
//!   replaces it, an ending ends it, and validating it writes nothing but an observed ending;
//! - logout by token accepts any secret the session still recognises (current, predecessor,
//!   remembered retired ones) and then revokes as a revoke by id: never a rotation or a touch;
//! - a pre-grant check (`validate_as`) that refuses writes nothing at all;
//! - by id: `get` and `keepalive` never revive an ended session (they write down an observed
//!   expiry first); `keepalive` touches as a validate would; `give_back` revokes and removes the
//!   session's creation from its subject's rate log; `check_create` answers as a create would
//!   and writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use leasehold::record::{SessionRecord, SessionState, SlotRecord, TicketRecord};
use leasehold::store::{ReapOutcome, Scope};
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{
    CapPolicy, Limit, Policy, Rate, Resource, RevokeOutcome, RevokeReason, Session, SessionId,
    SlotId, Subject, TicketId, Timestamp,
};

use super::action::{
    AccessInput, AccessKind, Action, Denial, Observed, TicketKind, TokenInput, TokenKind,
};
use super::ops::Knob;
use crate::faults::{Fault, Op};

/// Whether a record is (still) in the store, as far as the model knows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub enum Presence {
    /// Stored.
    Present,
    /// Due, and a bounded reap (or native expiry, or a failed call) may or may not have removed
    /// it. Every outcome either way is accepted; the next observation that tells decides.
    Maybe,
    /// Removed (reaped, taken, released).
    Gone,
}

/// A session's lifecycle state (an expiry nobody observed yet is not a state: it is
/// `now ≥ expires_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MState {
    /// Usable until `expires_at`.
    Active,
    /// A tombstone (reason `Expired` for an observed expiry).
    Revoked {
        /// When.
        at: Timestamp,
        /// Why.
        reason: RevokeReason,
    },
}

/// The model of one session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MSession {
    /// Its id (learned from the system at creation).
    pub id: SessionId,
    /// Owner.
    pub subject: Subject,
    /// Resource tag.
    pub resource: Option<Resource>,
    /// Whether it was created with a context binding.
    pub bound: bool,
    /// The binding given at creation, if known.
    pub binding: Option<String>,
    /// Creation time.
    pub created_at: Timestamp,
    /// Last written touch.
    pub last_seen: Timestamp,
    /// Idle-or-absolute deadline.
    pub expires_at: Timestamp,
    /// `created_at + absolute_lifetime`.
    pub absolute_deadline: Timestamp,
    /// Active or revoked.
    pub state: MState,
    /// Current token generation (rotations so far).
    pub generation: u64,
    /// When the current generation was issued.
    pub rotated_at: Timestamp,
    /// Whether the current generation was presented since its rotation.
    pub successor_seen: bool,
    /// Whether the record still keeps the successor sealed for its predecessor.
    pub sealed: bool,
    /// Application data.
    pub data: Vec<u8>,
    /// Data version.
    pub data_version: u64,
    /// Number of writes so far (the record version).
    pub version: u64,
    /// Stored or not.
    pub presence: Presence,
    /// Token text of each generation the model has seen.
    pub tokens: BTreeMap<u64, String>,
    /// The deadline of the current access token, if the policy issues them (the stored grant's).
    pub access_expires_at: Option<Timestamp>,
    /// Access token text of each generation the model has seen.
    pub access_tokens: BTreeMap<u64, String>,
}

impl MSession {
    /// What a stored record says (tokens, binding text and presence are the model's own).
    fn of_record(rec: &SessionRecord) -> MSession {
        let previous = rec.credential.previous.as_ref();
        MSession {
            id: rec.id,
            subject: rec.subject.clone(),
            resource: rec.resource.clone(),
            bound: rec.binding.is_some(),
            binding: None,
            created_at: rec.created_at,
            last_seen: rec.last_seen,
            expires_at: rec.expires_at,
            absolute_deadline: rec.absolute_deadline,
            state: match rec.state {
                SessionState::Active => MState::Active,
                SessionState::Revoked { at, reason } => MState::Revoked { at, reason },
            },
            generation: rec.credential.generation,
            rotated_at: rec.credential.rotated_at,
            successor_seen: previous.is_none_or(|p| p.successor_seen),
            sealed: previous.is_some_and(|p| p.sealed_successor.is_some()),
            data: rec.data.clone(),
            data_version: rec.data_version,
            version: rec.version,
            presence: Presence::Present,
            tokens: BTreeMap::new(),
            access_expires_at: rec.credential.access.as_ref().map(|a| a.expires_at),
            access_tokens: BTreeMap::new(),
        }
    }

    /// Writes the ending down: its tombstone, at `now`, kept until its deadline or
    /// `TOMBSTONE_RETENTION` after `now`, whichever is earlier.
    fn end(&mut self, now: Timestamp, reason: RevokeReason) {
        self.state = MState::Revoked { at: now, reason };
        self.version += 1;
        self.expires_at = self
            .expires_at
            .min(now.saturating_add(leasehold::record::TOMBSTONE_RETENTION));
    }

    /// Moves the idle deadline for a write at `now`.
    fn touch(&mut self, now: Timestamp, p: &Policy) {
        self.last_seen = now;
        self.expires_at = expiry(p, now, self.absolute_deadline);
        self.version += 1;
    }

    /// Any write drops the sealed successor once no predecessor window can use it.
    fn drop_sealed_if_closed(&mut self, now: Timestamp, p: &Policy) {
        let age = now.since(self.rotated_at);
        self.sealed &= age < p.grace_window() || (!self.successor_seen && age < p.orphan_window());
    }

    /// The newest generation whose text is known, with its text.
    pub fn latest_token(&self) -> Option<(u64, &str)> {
        self.tokens
            .iter()
            .next_back()
            .map(|(g, t)| (*g, t.as_str()))
    }

    /// Whether a token of generation `g` is still one of this session's secrets: the current
    /// one, its predecessor, or one of the `history` retired ones remembered before it.
    fn recognises(&self, g: u64, history: usize) -> bool {
        g == self.generation
            || g + 1 == self.generation
            || (g + 2 <= self.generation && g + 1 + history as u64 >= self.generation)
    }
}

/// The model of one ticket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MTicket {
    /// Its text, if a client received it.
    pub text: Option<String>,
    /// Its id, if known.
    pub id: Option<TicketId>,
    /// Its session.
    pub session: SessionId,
    /// Redeemable strictly before this.
    pub expires_at: Timestamp,
    /// Stored or not.
    pub presence: Presence,
}

/// The model of one slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MSlot {
    /// Its id, if known.
    pub id: Option<SlotId>,
    /// Its session.
    pub session: SessionId,
    /// Resource it counts against.
    pub resource: Option<Resource>,
    /// Self-expiry.
    pub expires_at: Timestamp,
    /// Stored or not.
    pub presence: Presence,
}

/// What a particular store may legitimately vary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelSettings {
    /// The store deletes expired records by itself: a due record may be absent at any time.
    pub native_expiry: bool,
}

/// One creation in a subject's rate log.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Creation {
    /// When, by its creator's clock.
    at: Timestamp,
    /// The latest clock that checked or reaped the log since: a store without a clock prunes
    /// by each caller's clock, so past `seen` it may already be gone.
    seen: Timestamp,
    /// Creations of one batch (between two reconciliations: concurrent ones) were logged in
    /// an unknown order.
    batch: u64,
    /// The session it created, if known (a give back removes its entry).
    id: Option<SessionId>,
    /// A give back whose outcome is unknown may have removed it: possibly, not certainly,
    /// counted.
    maybe_gone: bool,
}

/// A ticket's or slot's session, resource and expiry: what the store must hold for it.
type LeaseKey = (SessionId, Option<Resource>, Timestamp);

/// Reconciles the model's tickets or slots — `(id if known, key, presence)` each — with the
/// stored `(id, key)`s: every known one is as the model says, every one whose reply was lost is
/// found by its key, nothing else is stored. Returns each one's id and presence.
fn reconcile_leases<K: Copy + Ord + fmt::Display>(
    kind: &str,
    model: Vec<(Option<K>, LeaseKey, Presence)>,
    stored: Vec<(K, LeaseKey)>,
    expired: impl Fn(Timestamp) -> bool,
) -> Result<Vec<(Option<K>, Presence)>, String> {
    let mut stored: BTreeMap<K, LeaseKey> = stored.into_iter().collect();
    let mut out: Vec<(Option<K>, Presence)> = model.iter().map(|(id, _, p)| (*id, *p)).collect();
    for ((id, key, _), (_, p)) in model.iter().zip(&mut out) {
        let Some(id) = id else { continue };
        match (stored.remove(id), *p) {
            (Some(_), Presence::Gone) => {
                return Err(format!("{kind} {id} is back after it was removed"));
            }
            (Some(r), _) if r != *key => {
                return Err(format!("stored {kind} {id} is {r:?}, the model's {key:?}"));
            }
            (Some(_), _) => *p = Presence::Present,
            (None, Presence::Present) if !expired(key.2) => {
                return Err(format!("{kind} {id} vanished from the store"));
            }
            (None, _) => *p = Presence::Gone,
        }
    }
    for ((id, key, _), found) in model.iter().zip(&mut out) {
        if id.is_some() || found.1 == Presence::Gone {
            continue;
        }
        match stored.iter().find(|(_, r)| *r == key).map(|(k, _)| *k) {
            Some(k) => {
                stored.remove(&k);
                *found = (Some(k), Presence::Present);
            }
            None if found.1 == Presence::Present && !expired(key.2) => {
                return Err(format!(
                    "a {kind} of {} whose reply was lost is not stored",
                    key.0
                ));
            }
            None => found.1 = Presence::Gone,
        }
    }
    match stored.keys().next() {
        Some(k) => Err(format!("store holds {kind} {k} the model never saw made")),
        None => Ok(out),
    }
}

/// For each creation of `log`, the newest creation logged before it or possibly so: a store
/// prunes its log oldest arrival first, so a creation stays while that one is in the window.
fn blockers(log: &[Creation]) -> Vec<Timestamp> {
    let mut out = Vec::with_capacity(log.len());
    let mut newest = Timestamp::EPOCH;
    for batch in log.chunk_by(|a, b| a.batch == b.batch) {
        newest = batch.iter().map(|c| c.at).fold(newest, Timestamp::max);
        out.extend(batch.iter().map(|_| newest));
    }
    out
}

/// The system did something the model says it must not.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Divergence {
    /// The action.
    pub action: String,
    /// What the system answered.
    pub observed: String,
    /// What the model expected (one line per possible world).
    pub expected: Vec<String>,
}

impl fmt::Display for Divergence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "action:   {}", self.action)?;
        writeln!(f, "observed: {}", self.observed)?;
        for e in &self.expected {
            writeln!(f, "expected: {e}")?;
        }
        Ok(())
    }
}

/// The deadline a touch at `from` sets: the idle timeout on, never past the absolute deadline.
fn expiry(p: &Policy, from: Timestamp, absolute: Timestamp) -> Timestamp {
    match p.idle_timeout() {
        Some(idle) => from.saturating_add(idle).min(absolute),
        None => absolute,
    }
}

/// Which entity a world fixes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ent {
    Session(SessionId),
    Ticket(usize),
    Slot(usize),
}

/// What a read (validate / refresh / the validation of a mint) grants.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TokenExp {
    /// No token handed back.
    None,
    /// A brand-new token for this generation.
    New(SessionId, u64),
    /// The already-issued token of this generation (the same successor).
    Same(SessionId, u64),
}

enum ReadPred {
    Denied(Denial),
    Granted(SessionId, TokenExp),
}

enum RateVerdict {
    Allowed,
    Limited(Option<Duration>),
    Ambiguous,
}

/// The reference model.
#[derive(Clone, Debug)]
pub struct Model {
    p: Policy,
    settings: ModelSettings,
    sessions: BTreeMap<SessionId, MSession>,
    order: Vec<SessionId>,
    texts: BTreeMap<String, (SessionId, u64)>,
    access_texts: BTreeMap<String, (SessionId, u64)>,
    tickets: Vec<MTicket>,
    ticket_texts: BTreeMap<String, usize>,
    ticket_ids: BTreeMap<TicketId, usize>,
    slots: Vec<MSlot>,
    slot_ids: BTreeMap<SlotId, usize>,
    rate_log: BTreeMap<Subject, Vec<Creation>>,
    unsure: BTreeSet<SessionId>,
    unsure_subjects: BTreeSet<Subject>,
    /// The latest clock any operation ran at, and whether one ran at an earlier clock after it
    /// (several clocks, or a clock stepped back): then a store's creation log may be out of
    /// time order.
    latest: Timestamp,
    clocks_disagree: bool,
    /// Reconciliations so far (see [`Creation::batch`]), and the latest clocks of this batch's
    /// rate checks (by subject) and reaps.
    batch: u64,
    batch_checks: BTreeMap<Subject, Timestamp>,
    batch_reaped: Option<Timestamp>,
}

/// Checks that `taken` are distinct members of `candidates` (`(created_at, insertion rank,
/// id)`, oldest first) and the oldest of them by creation time. Among sessions created in the
/// same millisecond the model may not know the store's insertion order (creates of one batch
/// ran concurrently), so a tie is accepted either way.
fn oldest_taken(
    taken: &[SessionId],
    candidates: &[(Timestamp, usize, SessionId)],
) -> Result<(), String> {
    let mut times = Vec::new();
    for id in taken {
        let Some((t, _, _)) = candidates.iter().find(|(_, _, c)| c == id) else {
            return Err(format!(
                "{id} evicted, which was no candidate (live, not evicted yet)"
            ));
        };
        if taken.iter().filter(|x| *x == id).count() > 1 {
            return Err(format!("{id} evicted twice"));
        }
        times.push(*t);
    }
    if let Some(newest) = times.iter().max()
        && candidates
            .iter()
            .any(|(t, _, c)| !taken.contains(c) && t < newest)
    {
        return Err("the oldest sessions evicted".into());
    }
    Ok(())
}

fn deny(obs: &Observed, want: Denial) -> Result<(), String> {
    match obs {
        Observed::Denied(got) if *got == want => Ok(()),
        _ => Err(format!("denied {want:?}")),
    }
}

fn check_view(s: &MSession, got: &Session) -> Result<(), String> {
    let mut bad = Vec::new();
    macro_rules! field {
        ($name:ident, $want:expr) => {
            if got.$name != $want {
                bad.push(format!(
                    concat!(stringify!($name), " {:?} (model {:?})"),
                    got.$name, $want
                ));
            }
        };
    }
    field!(id, s.id);
    field!(subject, s.subject);
    field!(resource, s.resource);
    field!(created_at, s.created_at);
    field!(last_seen, s.last_seen);
    field!(expires_at, s.expires_at);
    field!(absolute_deadline, s.absolute_deadline);
    field!(generation, s.generation);
    field!(data, s.data);
    field!(data_version, s.data_version);
    field!(summary, None::<String>);
    if bad.is_empty() {
        Ok(())
    } else {
        Err(format!("session {} with {}", s.id, bad.join(", ")))
    }
}

impl Model {
    /// An empty model of a store used with `policy`.
    pub fn new(policy: &Policy, settings: ModelSettings) -> Model {
        Model {
            p: policy.clone(),
            settings,
            sessions: BTreeMap::new(),
            order: Vec::new(),
            texts: BTreeMap::new(),
            access_texts: BTreeMap::new(),
            tickets: Vec::new(),
            ticket_texts: BTreeMap::new(),
            ticket_ids: BTreeMap::new(),
            slots: Vec::new(),
            slot_ids: BTreeMap::new(),
            rate_log: BTreeMap::new(),
            unsure: BTreeSet::new(),
            unsure_subjects: BTreeSet::new(),
            latest: Timestamp::EPOCH,
            clocks_disagree: false,
            batch: 0,
            batch_checks: BTreeMap::new(),
            batch_reaped: None,
        }
    }

    /// The policy it models.
    pub fn policy(&self) -> &Policy {
        &self.p
    }

    /// Every session the model knows, oldest first (including reaped ones).
    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = &MSession> {
        self.order.iter().filter_map(|id| self.sessions.get(id))
    }

    /// A policy duration (`None` when the policy disables it).
    pub fn knob(&self, knob: Knob) -> Option<Duration> {
        let p = &self.p;
        Some(match knob {
            Knob::Touch => p.touch_granularity(),
            Knob::Grace => p.grace_window(),
            Knob::Orphan => p.orphan_window(),
            Knob::Renewal => return p.renewal_interval(),
            Knob::Idle => return p.idle_timeout(),
            Knob::Absolute => p.absolute_lifetime(),
            Knob::TicketTtl => p.ticket_ttl(),
            Knob::SlotTtl => p.slot_ttl(),
            Knob::RateWindow => return p.creation_rate().map(|r| r.window),
            Knob::AccessTtl => return p.access_ttl(),
        })
    }

    /// The session with this id.
    pub fn session(&self, id: &SessionId) -> Option<&MSession> {
        self.sessions.get(id)
    }

    /// Every ticket the model knows, in minting order.
    pub fn tickets(&self) -> &[MTicket] {
        &self.tickets
    }

    /// Every slot the model knows, in acquisition order.
    pub fn slots(&self) -> &[MSlot] {
        &self.slots
    }

    /// The (session, generation) a token text was issued for.
    pub fn lookup_token(&self, text: &str) -> Option<(SessionId, u64)> {
        self.texts.get(text).copied()
    }

    /// The (session, generation) an access token text was issued for.
    pub fn lookup_access(&self, text: &str) -> Option<(SessionId, u64)> {
        self.access_texts.get(text).copied()
    }

    /// Live at `now`: stored, active and not past its deadline.
    pub fn is_live(&self, s: &MSession, now: Timestamp) -> bool {
        s.presence != Presence::Gone && s.state == MState::Active && now < s.expires_at
    }

    fn slot_live(sl: &MSlot, now: Timestamp) -> bool {
        sl.presence != Presence::Gone && now < sl.expires_at
    }

    /// Presence as seen at `now`: with native expiry, a due record may vanish at any time.
    fn effective(&self, p: Presence, expires_at: Timestamp, now: Timestamp) -> Presence {
        if self.settings.native_expiry && p == Presence::Present && now >= expires_at {
            Presence::Maybe
        } else {
            p
        }
    }

    // ----- uncertainty: worlds -----

    fn forks(&self, now: Timestamp, action: &Action) -> Vec<Ent> {
        let mut ents = Vec::new();
        let session = |id: &SessionId, ents: &mut Vec<Ent>| {
            if let Some(s) = self.sessions.get(id)
                && self.effective(s.presence, s.expires_at, now) == Presence::Maybe
                && !ents.contains(&Ent::Session(*id))
            {
                ents.push(Ent::Session(*id));
            }
        };
        match action {
            Action::Validate { token, .. }
            | Action::Refresh { token, .. }
            | Action::MintTicket { token, .. } => {
                if token.kind == TokenKind::Issued
                    && let Some((id, _)) = self.texts.get(&token.text)
                {
                    session(id, &mut ents);
                }
            }
            Action::Logout { token } | Action::ValidateAs { token, .. } => {
                if token.kind == TokenKind::Issued
                    && let Some((id, _)) = self.texts.get(&token.text)
                {
                    session(id, &mut ents);
                }
            }
            Action::ValidateAccess { access } => {
                if access.kind == AccessKind::Issued
                    && let Some((id, _)) = self.access_texts.get(&access.text)
                {
                    session(id, &mut ents);
                }
            }
            Action::Revoke { id }
            | Action::UpdateData { id, .. }
            | Action::RevokeOwned { id, .. }
            | Action::GetById { id }
            | Action::KeepaliveById { id }
            | Action::MintTicketById { id }
            | Action::GiveBack { id } => session(id, &mut ents),
            Action::AcquireSlot {
                session: id,
                resource,
            } => {
                session(id, &mut ents);
                // Slots a bounded reap may have removed decide the caps.
                for (i, sl) in self.slots.iter().enumerate() {
                    if (sl.session == *id || resource.is_some() && sl.resource == *resource)
                        && self.effective(sl.presence, sl.expires_at, now) == Presence::Maybe
                    {
                        ents.push(Ent::Slot(i));
                    }
                }
            }
            Action::RedeemTicket { ticket } => {
                if ticket.kind == TicketKind::Issued
                    && let Some(&i) = self.ticket_texts.get(&ticket.text)
                {
                    let t = &self.tickets[i];
                    if self.effective(t.presence, t.expires_at, now) == Presence::Maybe {
                        ents.push(Ent::Ticket(i));
                    }
                    session(&t.session, &mut ents);
                }
            }
            Action::HeartbeatSlot { slot } | Action::ReleaseSlot { slot } => {
                if let Some(&i) = self.slot_ids.get(slot) {
                    let sl = &self.slots[i];
                    if self.effective(sl.presence, sl.expires_at, now) == Presence::Maybe {
                        ents.push(Ent::Slot(i));
                    }
                    if matches!(action, Action::HeartbeatSlot { .. }) {
                        session(&sl.session, &mut ents);
                    }
                }
            }
            _ => {}
        }
        ents
    }

    fn presence(&mut self, e: Ent) -> Option<&mut Presence> {
        match e {
            Ent::Session(id) => self.sessions.get_mut(&id).map(|s| &mut s.presence),
            Ent::Ticket(i) => self.tickets.get_mut(i).map(|t| &mut t.presence),
            Ent::Slot(i) => self.slots.get_mut(i).map(|s| &mut s.presence),
        }
    }

    /// The creation-rate verdict at `now`. A store without a clock prunes its log oldest
    /// arrival first, by each caller's clock, so with several clocks either verdict may be
    /// right near a window's edge; with one clock it is exact.
    fn rate_verdict(&self, subject: &Subject, now: Timestamp) -> RateVerdict {
        let Some(Rate { max, window: w }) = self.p.creation_rate() else {
            return RateVerdict::Allowed;
        };
        let log = self.rate_log.get(subject).map(Vec::as_slice).unwrap_or(&[]);
        // Certainly counted: inside the window, and no clock that could prune it came since.
        let certain = log
            .iter()
            .filter(|c| !c.maybe_gone && c.at.saturating_add(w) > now.max(c.seen));
        // Possibly counted: it, or a creation logged before it, is inside the window.
        let possible: Vec<Timestamp> = log
            .iter()
            .zip(blockers(log))
            .filter(|(_, b)| b.saturating_add(w) > now)
            .map(|(c, _)| c.at)
            .collect();
        let n = certain.count();
        if n >= max as usize {
            // The store answers from the first creation it holds: with one clock, the oldest.
            let exact = n == possible.len() && !self.clocks_disagree;
            let oldest = possible.iter().min().filter(|_| exact);
            RateVerdict::Limited(oldest.map(|t| t.saturating_add(w).since(now)))
        } else if possible.len() < max as usize {
            RateVerdict::Allowed
        } else {
            RateVerdict::Ambiguous
        }
    }

    fn saw(&mut self, now: Timestamp) {
        self.clocks_disagree |= now < self.latest;
        self.latest = self.latest.max(now);
    }

    /// A create (or a peek) of `subject` checked its rate log at `now`. A store may prune the
    /// creations that left the window at `now` (an in-process store drops them, oldest arrival
    /// first) or keep counting each one while it is in the window at the judged time of
    /// whoever asks (a server-side count): both honour the rate. So nothing leaves the model's
    /// log here; a creation only stops being *certainly* counted once a clock past its window
    /// has checked. With one clock the verdict stays exact: what a check could prune is out of
    /// every later window anyway.
    fn rate_checked(&mut self, subject: &Subject, now: Timestamp) {
        let checked = self.batch_checks.entry(subject.clone()).or_insert(now);
        *checked = now.max(*checked);
        if let Some(log) = self.rate_log.get_mut(subject) {
            for c in log.iter_mut() {
                c.seen = c.seen.max(now);
            }
        }
    }

    /// A reap at `now` ran (or may have): a log whose last creation (any of the last batch)
    /// left the window may be gone.
    fn rate_reaped(&mut self, now: Timestamp) {
        self.batch_reaped = self.batch_reaped.max(Some(now));
        let Some(rate) = self.p.creation_rate() else {
            return;
        };
        for log in self.rate_log.values_mut() {
            let last = log.last().map(|c| c.batch);
            let gone = log
                .iter()
                .any(|c| Some(c.batch) == last && c.at.saturating_add(rate.window) <= now);
            for c in log.iter_mut() {
                c.seen = if gone {
                    Timestamp::from_millis(u64::MAX)
                } else {
                    c.seen.max(now)
                };
            }
        }
    }

    /// Logs the creation of `id` (if known) at `at` for the rate.
    fn rate_logged(&mut self, subject: &Subject, at: Timestamp, id: Option<SessionId>) {
        let Some(rate) = self.p.creation_rate() else {
            return;
        };
        let log = self.rate_log.entry(subject.clone()).or_default();
        // A check of this batch may have come after it, and a reap that found the log due.
        let checked = self.batch_checks.get(subject).copied();
        log.push(Creation {
            at,
            seen: checked.map_or(at, |c| c.max(at)),
            batch: self.batch,
            id,
            maybe_gone: false,
        });
        if self
            .batch_reaped
            .is_some_and(|c| at.saturating_add(rate.window) <= c)
        {
            for c in log.iter_mut() {
                c.seen = Timestamp::from_millis(u64::MAX);
            }
        }
    }

    /// A give back removed (`certain`) or may have removed the creation of `id` from the rate
    /// log of `subject`. A store that already pruned it has nothing to remove either way.
    fn forget_creation(&mut self, subject: &Subject, id: &SessionId, certain: bool) {
        if let Some(log) = self.rate_log.get_mut(subject) {
            if certain {
                log.retain(|c| c.id != Some(*id));
            } else {
                for c in log.iter_mut().filter(|c| c.id == Some(*id)) {
                    c.maybe_gone = true;
                }
            }
        }
    }

    /// Predicts the outcome of `action` at `now`, checks it against `obs`, and learns what the
    /// system chose (new ids, tokens, which maybe-reaped records are really gone).
    ///
    /// On a divergence the model is left in an unspecified state: callers stop, or step a clone.
    pub fn step(
        &mut self,
        now: Timestamp,
        action: &Action,
        obs: &Observed,
    ) -> Result<(), Divergence> {
        self.saw(now);
        let forks = self.forks(now, action);
        let rates: Vec<Option<bool>> = match action {
            Action::Create { subject, .. } | Action::CheckCreate { subject }
                if matches!(self.rate_verdict(subject, now), RateVerdict::Ambiguous) =>
            {
                vec![Some(false), Some(true)]
            }
            _ => vec![None],
        };
        let divergence = |expected: Vec<String>| Divergence {
            action: format!("{action:?} at {now}"),
            observed: format!("{obs:?}"),
            expected,
        };
        if forks.is_empty() && rates.len() == 1 {
            return self
                .apply(now, action, obs, None)
                .map_err(|e| divergence(vec![e]));
        }
        let mut matched: Vec<Model> = Vec::new();
        let mut misses = Vec::new();
        for mask in 0..(1u32 << forks.len()) {
            for rate in &rates {
                let mut m = self.clone();
                for (i, e) in forks.iter().enumerate() {
                    if let Some(p) = m.presence(*e) {
                        *p = [Presence::Present, Presence::Gone][(mask >> i) as usize & 1];
                    }
                }
                match m.apply(now, action, obs, *rate) {
                    Ok(()) => matched.push(m),
                    Err(e) => misses.push(e),
                }
            }
        }
        let mut worlds = matched.into_iter();
        let Some(mut first) = worlds.next() else {
            return Err(divergence(misses));
        };
        let mut rest: Vec<Model> = worlds.collect();
        for e in &forks {
            let p = first.presence(*e).copied();
            if rest.iter_mut().any(|w| w.presence(*e).copied() != p)
                && let Some(p) = first.presence(*e)
            {
                *p = Presence::Maybe;
            }
        }
        *self = first;
        Ok(())
    }

    fn apply(
        &mut self,
        now: Timestamp,
        action: &Action,
        obs: &Observed,
        rate: Option<bool>,
    ) -> Result<(), String> {
        match action {
            Action::Create {
                subject,
                resource,
                binding,
                data,
            } => self.create(now, subject, resource, binding, data, obs, rate),
            Action::Validate { token, binding } | Action::Refresh { token, binding } => {
                let refresh = matches!(action, Action::Refresh { .. });
                let pred = self.decide_read(now, token, binding, refresh)?;
                self.read_outcome(action, pred, obs)
            }
            Action::ValidateAs {
                token,
                binding,
                subject,
            } => {
                // The check runs on the session a grant would give, before anything is written:
                // a refusal leaves every record exactly as it was (the read is decided on a copy).
                let mut m = self.clone();
                let pred = m.decide_read(now, token, binding, false)?;
                if let ReadPred::Granted(id, _) = pred
                    && m.sessions.get(&id).is_some_and(|s| &s.subject != subject)
                {
                    return deny(obs, Denial::Refused);
                }
                *self = m;
                self.read_outcome(action, pred, obs)
            }
            Action::ValidateAccess { access } => {
                let want = self.validate_access(now, access)?;
                match (want, obs) {
                    (Ok(id), Observed::Session(got)) => {
                        check_view(self.sessions.get(&id).ok_or("session vanished")?, got)
                    }
                    (Ok(id), _) => Err(format!("access to {id} granted")),
                    (Err(d), _) => deny(obs, d),
                }
            }
            Action::Logout { token } => {
                let want = match token.kind {
                    TokenKind::Malformed => Err(Denial::Malformed),
                    TokenKind::UnknownId | TokenKind::Forged(_) => Err(Denial::NotAuthenticated),
                    TokenKind::Issued => {
                        let (id, g) = self
                            .texts
                            .get(&token.text)
                            .copied()
                            .ok_or("(harness bug) a token the model never saw")?;
                        let history = self.p.reuse_history();
                        let known = self.sessions.get(&id).is_some_and(|s| {
                            s.presence != Presence::Gone && s.recognises(g, history)
                        });
                        // Never a rotation or a touch: only the revocation's tombstone.
                        if known {
                            Ok(self.revoke_id(now, &id))
                        } else {
                            Err(Denial::NotAuthenticated)
                        }
                    }
                };
                match (want, obs) {
                    (Ok(want), Observed::Revoked(got)) if *got == want => Ok(()),
                    (Ok(want), _) => Err(format!("{want:?}")),
                    (Err(d), _) => deny(obs, d),
                }
            }
            Action::RevokeOwned { subject, id } => {
                // Another owner's session answers as a missing one, and is left as it is.
                let owned = self
                    .sessions
                    .get(id)
                    .is_some_and(|s| s.presence != Presence::Gone && &s.subject == subject);
                let want = if owned {
                    self.revoke_id(now, id)
                } else {
                    RevokeOutcome::Unknown
                };
                match obs {
                    Observed::Revoked(got) if *got == want => Ok(()),
                    _ => Err(format!("{want:?}")),
                }
            }
            Action::GiveBack { id } => {
                let owner = self
                    .sessions
                    .get(id)
                    .filter(|s| s.presence != Presence::Gone)
                    .map(|s| s.subject.clone());
                let want = self.revoke_id(now, id);
                if let Some(subject) = owner {
                    self.forget_creation(&subject, id, true);
                }
                match obs {
                    Observed::Revoked(got) if *got == want => Ok(()),
                    _ => Err(format!("{want:?}")),
                }
            }
            Action::GetById { id } | Action::KeepaliveById { id } => {
                if let Some(d) = self.ended(id, now) {
                    return deny(obs, d);
                }
                let p = &self.p;
                let s = self.sessions.get_mut(id).ok_or("session vanished")?;
                // A keepalive touches as a validate would: only when the touch is due.
                if matches!(action, Action::KeepaliveById { .. })
                    && now > s.last_seen
                    && now.since(s.last_seen) >= p.effective_touch_granularity()
                {
                    s.touch(now, p);
                    s.drop_sealed_if_closed(now, p);
                }
                match obs {
                    Observed::Session(got) => check_view(s, got),
                    _ => Err(format!("session {id}")),
                }
            }
            Action::MintTicketById { id } => match self.ended(id, now) {
                Some(d) => deny(obs, d),
                None => self.minted(now, *id, TokenExp::None, obs),
            },
            Action::CheckCreate { subject } => self.check_create(now, subject, obs, rate),
            Action::Count { scope } => {
                let mut live: Vec<&MSession> = self
                    .sessions
                    .values()
                    .filter(|s| self.is_live(s, now))
                    .filter(|s| match scope {
                        Scope::All => true,
                        Scope::Subject(x) => &s.subject == x,
                        Scope::Resource(r) => s.resource.as_ref() == Some(r),
                    })
                    .collect();
                // Pages come in ascending id order, each live session exactly once.
                live.sort_by_key(|s| s.id);
                let n = live.len() as u64;
                let Observed::Enumerated { count, listed } = obs else {
                    return Err(format!("count={n}"));
                };
                if *count != n || listed.len() != live.len() {
                    return Err(format!(
                        "count={n} and {n} listed: {:?}",
                        live.iter().map(|s| s.id).collect::<Vec<_>>()
                    ));
                }
                for (want, got) in live.iter().zip(listed) {
                    check_view(want, got)?;
                }
                Ok(())
            }
            Action::MintTicket { token, binding } => {
                match self.decide_read(now, token, binding, false)? {
                    ReadPred::Denied(d) => deny(obs, d),
                    ReadPred::Granted(id, exp) => self.minted(now, id, exp, obs),
                }
            }
            Action::Revoke { id } => {
                let want = self.revoke_id(now, id);
                match obs {
                    Observed::Revoked(got) if *got == want => Ok(()),
                    _ => Err(format!("{want:?}")),
                }
            }
            Action::RevokeSubject { .. } | Action::RevokeResource { .. } => {
                let n = self.revoke_group(now, action);
                match obs {
                    Observed::Count(c) if *c == n => Ok(()),
                    _ => Err(format!("count={n}")),
                }
            }
            Action::List { subject } => {
                let mut live: Vec<&MSession> = self
                    .sessions
                    .values()
                    .filter(|s| &s.subject == subject && self.is_live(s, now))
                    .collect();
                live.sort_by_key(|s| (s.created_at, s.id));
                let Observed::Listed(got) = obs else {
                    return Err(format!("a list of {} sessions", live.len()));
                };
                if got.len() != live.len() {
                    return Err(format!(
                        "a list of {} sessions: {:?}",
                        live.len(),
                        live.iter().map(|s| s.id).collect::<Vec<_>>()
                    ));
                }
                for (want, got) in live.iter().zip(got) {
                    check_view(want, got)?;
                }
                Ok(())
            }
            Action::UpdateData { id, expected, data } => {
                let want = self.update_data(now, id, *expected, data);
                match (want, obs) {
                    (Ok(()), Observed::Updated(got)) => {
                        let s = self.sessions.get(id).ok_or("updated session vanished")?;
                        check_view(s, got)
                    }
                    (Ok(()), _) => Err(format!("data of {id} updated")),
                    (Err(d), _) => deny(obs, d),
                }
            }
            Action::RedeemTicket { ticket } => self.redeem(now, ticket.kind, &ticket.text, obs),
            Action::AcquireSlot { session, resource } => {
                // A store refuses a session that is not live; the driver then says why.
                let want = match self.ended(session, now) {
                    Some(d) => Err(d),
                    None => self.decide_acquire(now, session, resource.as_ref()),
                };
                match (want, obs) {
                    (Ok(exp), Observed::Slot { id, expires_at }) => {
                        if *expires_at != exp {
                            return Err(format!("slot until {exp}"));
                        }
                        if self.slot_ids.contains_key(id) {
                            return Err(format!("a fresh slot id, not {id} again"));
                        }
                        self.learn_slot(*id, *session, resource, exp);
                        Ok(())
                    }
                    (Ok(exp), _) => Err(format!("slot acquired until {exp}")),
                    (
                        Err(Denial::LimitReached(Limit::SessionSlots)),
                        Observed::Denied(Denial::LimitReached(Limit::ResourceSlots)),
                    ) if self.slot_caps_full(now, session, resource.as_ref()).1 => Ok(()),
                    (Err(d), _) => deny(obs, d),
                }
            }
            Action::HeartbeatSlot { slot } => match (self.decide_heartbeat(now, slot), obs) {
                (Ok(exp), Observed::Slot { id, expires_at })
                    if id == slot && *expires_at == exp =>
                {
                    Ok(())
                }
                (Ok(exp), _) => Err(format!("slot {slot} extended to {exp}")),
                (Err(d), _) => deny(obs, d),
            },
            Action::ReleaseSlot { slot } => {
                let held = match self.slot_ids.get(slot) {
                    Some(&i) if self.slots[i].presence != Presence::Gone => {
                        self.slots[i].presence = Presence::Gone;
                        true
                    }
                    _ => false,
                };
                match obs {
                    Observed::Released(b) if *b == held => Ok(()),
                    _ => Err(format!("released={held}")),
                }
            }
            Action::Reap { limit } => match obs {
                Observed::Reaped(out) => self.reap(now, *limit, out),
                _ => Err("a reap outcome".into()),
            },
        }
    }

    /// A revocation by id: whatever the clock says (a revocation never depends on one), a
    /// session that is not a tombstone yet becomes one.
    fn revoke_id(&mut self, now: Timestamp, id: &SessionId) -> RevokeOutcome {
        match self.sessions.get_mut(id) {
            Some(s) if s.presence != Presence::Gone => match s.state {
                MState::Revoked { reason, .. } => RevokeOutcome::AlreadyRevoked { reason },
                MState::Active => {
                    s.end(now, RevokeReason::Revoked);
                    RevokeOutcome::Revoked
                }
            },
            _ => RevokeOutcome::Unknown,
        }
    }

    /// The answer to a validate or refresh (or a `validate_as` that passed its check).
    fn read_outcome(
        &mut self,
        action: &Action,
        pred: ReadPred,
        obs: &Observed,
    ) -> Result<(), String> {
        match pred {
            ReadPred::Denied(d) => deny(obs, d),
            ReadPred::Granted(id, exp) => match obs {
                Observed::Read {
                    session,
                    token,
                    access,
                } => {
                    check_view(
                        self.sessions.get(&id).ok_or("read session vanished")?,
                        session,
                    )?;
                    self.check_token(exp, token.as_deref())?;
                    self.check_access(exp, access.as_deref())
                }
                _ => Err(format!("{} of {id} granted, token {exp:?}", action.name())),
            },
        }
    }

    /// An access-token validation: the token must be its session's current one (a rotation
    /// replaced any older one), the session live (an unobserved expiry is written down first),
    /// and the token before its own deadline. Writes nothing else.
    fn validate_access(
        &mut self,
        now: Timestamp,
        access: &AccessInput,
    ) -> Result<Result<SessionId, Denial>, String> {
        let (id, g) = match access.kind {
            AccessKind::Malformed => return Ok(Err(Denial::Malformed)),
            AccessKind::UnknownId | AccessKind::Forged(_) => {
                return Ok(Err(Denial::NotAuthenticated));
            }
            AccessKind::Issued => self
                .access_texts
                .get(&access.text)
                .copied()
                .ok_or("(harness bug) an access token the model never saw")?,
        };
        let current = self
            .sessions
            .get(&id)
            .is_some_and(|s| s.presence != Presence::Gone && s.generation == g);
        if !current {
            return Ok(Err(Denial::NotAuthenticated));
        }
        if let Some(d) = self.ended(&id, now) {
            return Ok(Err(d));
        }
        let s = self.sessions.get(&id).ok_or("session vanished")?;
        Ok(match s.access_expires_at {
            Some(e) if now < e => Ok(id),
            _ => Err(Denial::AccessTokenExpired),
        })
    }

    /// What `check_create` answers: the create's admission (rate, subject cap, global cap in
    /// that order) without its effects — nothing evicted, no ending written, nothing logged.
    fn check_create(
        &mut self,
        now: Timestamp,
        subject: &Subject,
        obs: &Observed,
        rate_world: Option<bool>,
    ) -> Result<(), String> {
        // The store may prune its log by this clock (or not: a peek writes nothing else).
        self.rate_checked(subject, now);
        if let Some(r) = self.rate_refusal(subject, now, rate_world, obs) {
            return r;
        }
        let live_of = |s: &&MSession| self.is_live(s, now);
        let mut excess = 0u64;
        if let Some(cap) = self.p.subject_cap() {
            let n = self
                .sessions
                .values()
                .filter(live_of)
                .filter(|s| &s.subject == subject)
                .count() as u64;
            excess = (n + 1).saturating_sub(u64::from(cap.max));
            if excess > 0 && cap.on_full == CapPolicy::Reject {
                return deny(obs, Denial::LimitReached(Limit::SubjectSessions));
            }
        }
        if let Some(cap) = self.p.global_cap() {
            // The subject cap's evictions would make room first.
            let n = (self.sessions.values().filter(live_of).count() as u64).saturating_sub(excess);
            if n >= cap.max && cap.on_full == CapPolicy::Reject {
                return deny(obs, Denial::LimitReached(Limit::GlobalSessions));
            }
        }
        match obs {
            Observed::Admitted => Ok(()),
            _ => Err("admitted".into()),
        }
    }

    /// The creation-rate refusal of a create (or its peek) at `now`, if the rate refuses:
    /// `Some(Ok(()))` when `obs` is that refusal.
    fn rate_refusal(
        &self,
        subject: &Subject,
        now: Timestamp,
        rate_world: Option<bool>,
        obs: &Observed,
    ) -> Option<Result<(), String>> {
        let rate = self.p.creation_rate()?;
        let limited = match (rate_world, self.rate_verdict(subject, now)) {
            (Some(true), _) => Some(None),
            (Some(false), _) => None,
            (None, RateVerdict::Limited(retry)) => Some(retry),
            (None, _) => None,
        };
        let retry = limited?;
        let log = self.rate_log.get(subject).map(Vec::as_slice).unwrap_or(&[]);
        let newest = log.iter().map(|c| c.at).max().unwrap_or(now);
        Some(match (retry, obs) {
            (Some(r), _) => deny(obs, Denial::RateLimited(r)),
            (None, Observed::Denied(Denial::RateLimited(r)))
                if !r.is_zero() && *r <= newest.saturating_add(rate.window).since(now) =>
            {
                Ok(())
            }
            (None, _) => Err("rate limited".into()),
        })
    }

    /// A group revocation: every member that is not a tombstone yet gets one, whatever the
    /// clock; the count is of the live ones.
    fn revoke_group(&mut self, now: Timestamp, action: &Action) -> u64 {
        let mut n = 0;
        for s in self.sessions.values_mut() {
            let reason = match action {
                Action::RevokeSubject { subject } if &s.subject == subject => RevokeReason::Subject,
                Action::RevokeResource { resource } if s.resource.as_ref() == Some(resource) => {
                    RevokeReason::Resource
                }
                _ => continue,
            };
            if s.presence != Presence::Gone && s.state == MState::Active {
                n += u64::from(now < s.expires_at);
                s.end(now, reason);
            }
        }
        n
    }

    #[allow(clippy::too_many_arguments)]
    fn create(
        &mut self,
        now: Timestamp,
        subject: &Subject,
        resource: &Option<Resource>,
        binding: &Option<String>,
        data: &[u8],
        obs: &Observed,
        rate_world: Option<bool>,
    ) -> Result<(), String> {
        if data.len() > self.p.max_data_len() {
            return deny(obs, Denial::InvalidInput);
        }
        self.rate_checked(subject, now);
        if let Some(r) = self.rate_refusal(subject, now, rate_world, obs) {
            return r;
        }
        // The contract's order: the subject cap (planning its evictions), then the global cap
        // counting the live sessions the subject cap is about to evict as gone. If a limit
        // refuses, nothing is written; if both admit, the subject's count writes down the
        // endings it found (reason `Expired`). "Oldest" is creation order: by `created_at`,
        // then by the order the store inserted them (never by id).
        let rank: BTreeMap<SessionId, usize> = self
            .order
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
        let oldest_first = |ids: &mut Vec<(Timestamp, usize, SessionId)>| ids.sort();
        let mut live: Vec<(Timestamp, usize, SessionId)> = Vec::new();
        let mut lapsed: Vec<SessionId> = Vec::new();
        let mut excess = 0;
        if let Some(cap) = self.p.subject_cap() {
            for s in self.sessions.values() {
                if &s.subject != subject
                    || s.presence == Presence::Gone
                    || s.state != MState::Active
                {
                    continue;
                }
                if now >= s.expires_at {
                    lapsed.push(s.id);
                } else {
                    let r = rank.get(&s.id).copied().unwrap_or(usize::MAX);
                    live.push((s.created_at, r, s.id));
                }
            }
            oldest_first(&mut live);
            excess = (live.len() + 1).saturating_sub(cap.max as usize);
            if excess > 0 && cap.on_full == CapPolicy::Reject {
                return deny(obs, Denial::LimitReached(Limit::SubjectSessions));
            }
        }
        // The store's live sessions other than the subject's planned evictions, oldest first.
        let mut others: Vec<(Timestamp, usize, SessionId)> = Vec::new();
        let mut global_excess = 0;
        if let Some(cap) = self.p.global_cap() {
            // Which of the subject's sessions the cap takes may be known only from what the
            // store answers (a tie in creation time): those are not among the others either way.
            let planned: Vec<SessionId> = match obs {
                Observed::Created {
                    evicted: Some(list),
                    ..
                } => list.iter().take(excess).copied().collect(),
                _ => live.iter().take(excess).map(|(_, _, id)| *id).collect(),
            };
            for s in self.sessions.values() {
                if self.is_live(s, now) && !planned.contains(&s.id) {
                    let r = rank.get(&s.id).copied().unwrap_or(usize::MAX);
                    others.push((s.created_at, r, s.id));
                }
            }
            oldest_first(&mut others);
            let count = others.len() as u64;
            // A store may write down the endings its global count finds (sled does at the
            // cap) or leave them (memory does): those are re-learned from the store. (The
            // subject's are written down by its own count when the create is admitted.)
            let admitted = count < cap.max || cap.on_full == CapPolicy::EvictOldest;
            let ours = self.p.subject_cap().is_some() && admitted;
            for s in self.sessions.values() {
                if s.presence != Presence::Gone
                    && s.state == MState::Active
                    && now >= s.expires_at
                    && !(ours && &s.subject == subject)
                {
                    self.unsure.insert(s.id);
                }
            }
            global_excess = usize::try_from((count + 1).saturating_sub(cap.max)).unwrap_or(0);
            if global_excess > 0 && cap.on_full == CapPolicy::Reject {
                return deny(obs, Denial::LimitReached(Limit::GlobalSessions));
            }
        }
        let Observed::Created {
            session,
            token,
            evicted,
            access,
        } = obs
        else {
            return Err(format!(
                "created (evicting {excess} of the subject's, {global_excess} of the store's)"
            ));
        };
        for id in &lapsed {
            if let Some(s) = self.sessions.get_mut(id) {
                s.end(now, RevokeReason::Expired);
            }
        }
        let id = session.id;
        if self.sessions.contains_key(&id) {
            return Err(format!("a fresh session id, not {id} again"));
        }
        let fresh = self.fresh(id, subject, resource, binding, now, data);
        check_view(&fresh, session)?;
        self.check_token_text(token, &id)?;
        let chosen: Vec<SessionId> = match evicted {
            None => live
                .iter()
                .take(excess)
                .chain(others.iter().take(global_excess))
                .map(|(_, _, id)| *id)
                .collect(),
            Some(list) => {
                if list.len() != excess + global_excess {
                    return Err(format!(
                        "{excess} of the subject's and {global_excess} of the store's evicted, \
                         not {}",
                        list.len()
                    ));
                }
                let (ours, theirs) = list.split_at(excess);
                oldest_taken(ours, &live).map_err(|e| format!("{e} (subject cap)"))?;
                oldest_taken(theirs, &others).map_err(|e| format!("{e} (global cap)"))?;
                list.clone()
            }
        };
        for e in &chosen {
            if let Some(s) = self.sessions.get_mut(e) {
                s.end(now, RevokeReason::Evicted);
            }
        }
        self.rate_logged(subject, now, Some(id));
        self.learn_session(fresh, token);
        self.check_access(TokenExp::New(id, 0), access.as_deref())
    }

    /// A new session as the model expects it: created at `at` by the policy's rules.
    fn fresh(
        &self,
        id: SessionId,
        subject: &Subject,
        resource: &Option<Resource>,
        binding: &Option<String>,
        at: Timestamp,
        data: &[u8],
    ) -> MSession {
        let absolute = at.saturating_add(self.p.absolute_lifetime());
        MSession {
            id,
            subject: subject.clone(),
            resource: resource.clone(),
            bound: binding.is_some(),
            binding: binding.clone(),
            created_at: at,
            last_seen: at,
            expires_at: expiry(&self.p, at, absolute),
            absolute_deadline: absolute,
            state: MState::Active,
            generation: 0,
            rotated_at: at,
            successor_seen: true,
            sealed: false,
            data: data.to_vec(),
            data_version: 0,
            version: 0,
            presence: Presence::Present,
            tokens: BTreeMap::new(),
            access_expires_at: self
                .p
                .access_ttl()
                .map(|t| at.saturating_add(t).min(absolute)),
            access_tokens: BTreeMap::new(),
        }
    }

    fn learn_session(&mut self, s: MSession, token: &str) {
        let id = s.id;
        if !self.sessions.contains_key(&id) {
            self.order.push(id);
        }
        self.sessions.insert(id, s);
        if !self.texts.contains_key(token) {
            self.learn_token(id, 0, token);
        }
    }

    /// A token text for session `id` must look like `<prefix>_<id>_<43 chars>` and be new.
    fn check_token_text(&self, text: &str, id: &SessionId) -> Result<(), String> {
        let head = format!("{}_{}_", self.p.token_prefix(), id);
        if !text.starts_with(&head) || text.len() != head.len() + SECRET_TEXT_LEN {
            return Err(format!("a token of the form {head}<secret>"));
        }
        if self.texts.contains_key(text) {
            return Err("a token never issued before".into());
        }
        Ok(())
    }

    fn decide_read(
        &mut self,
        now: Timestamp,
        token: &TokenInput,
        binding: &Option<String>,
        refresh: bool,
    ) -> Result<ReadPred, String> {
        let (id, g) = match token.kind {
            TokenKind::Malformed => return Ok(ReadPred::Denied(Denial::Malformed)),
            TokenKind::UnknownId | TokenKind::Forged(_) => {
                return Ok(ReadPred::Denied(Denial::NotAuthenticated));
            }
            TokenKind::Issued => self
                .texts
                .get(&token.text)
                .copied()
                .ok_or("(harness bug) a token the model never saw")?,
        };
        #[derive(PartialEq)]
        enum Class {
            Current,
            Predecessor,
            Retired,
        }
        let p = &self.p;
        let class = match self.sessions.get(&id) {
            Some(s) if s.presence != Presence::Gone && g == s.generation => Class::Current,
            Some(s) if s.presence != Presence::Gone && g + 1 == s.generation => Class::Predecessor,
            // Older generations are recognised (presenting one is reuse) while remembered.
            Some(s)
                if s.presence != Presence::Gone
                    && g + 2 <= s.generation
                    && g + 1 + p.reuse_history() as u64 >= s.generation =>
            {
                Class::Retired
            }
            _ => return Ok(ReadPred::Denied(Denial::NotAuthenticated)),
        };
        if let Some(d) = self.ended(&id, now) {
            return Ok(ReadPred::Denied(d));
        }
        let p = &self.p;
        let s = self.sessions.get_mut(&id).ok_or("read session vanished")?;
        // Last written by a clock far ahead of this one (a glitch): it fails closed, for good.
        if s.last_seen > now.saturating_add(p.future_tolerance()) {
            s.end(now, RevokeReason::Expired);
            return Ok(ReadPred::Denied(Denial::Expired));
        }
        // The binding gates grants only: a rotated-out token is a theft signal from any
        // device, so reuse is detected whatever binding comes with it.
        let bound = !p.enforce_binding() || !s.bound || binding.as_ref() == s.binding.as_ref();
        // The touch is written when it moved by at least the granularity — and moved at all:
        // rewriting the same instant (or going backwards, on a lagging clock) is not a touch.
        let touch_due =
            now > s.last_seen && now.since(s.last_seen) >= p.effective_touch_granularity();
        let age = now.since(s.rotated_at);
        let windows_open = age < p.grace_window() || (!s.successor_seen && age < p.orphan_window());
        let c = s.generation;
        Ok(match class {
            Class::Current if !bound => ReadPred::Denied(Denial::BindingMismatch),
            Class::Current => {
                let mut wrote = c >= 1 && !s.successor_seen;
                s.successor_seen = true;
                let rotate = refresh || p.renewal_interval().is_some_and(|r| age >= r);
                if rotate {
                    s.generation = c + 1;
                    s.rotated_at = now;
                    s.successor_seen = false;
                    s.sealed = true;
                    // The new secret's access token replaces the old one.
                    s.access_expires_at = p
                        .access_ttl()
                        .map(|t| now.saturating_add(t).min(s.absolute_deadline));
                    wrote = true;
                }
                if wrote || touch_due {
                    s.touch(now, p);
                    s.drop_sealed_if_closed(now, p);
                }
                ReadPred::Granted(
                    id,
                    if rotate {
                        TokenExp::New(id, c + 1)
                    } else {
                        TokenExp::None
                    },
                )
            }
            Class::Predecessor if windows_open && s.sealed && !bound => {
                ReadPred::Denied(Denial::BindingMismatch)
            }
            Class::Predecessor if windows_open && s.sealed => {
                if touch_due {
                    s.touch(now, p);
                }
                ReadPred::Granted(id, TokenExp::Same(id, c))
            }
            Class::Predecessor | Class::Retired if p.reuse_detection() => {
                s.end(now, RevokeReason::ReuseDetected);
                ReadPred::Denied(Denial::ReuseDetected)
            }
            Class::Predecessor | Class::Retired => ReadPred::Denied(Denial::NotAuthenticated),
        })
    }

    fn check_token(&mut self, exp: TokenExp, got: Option<&str>) -> Result<(), String> {
        match (exp, got) {
            (TokenExp::None, None) => Ok(()),
            (TokenExp::New(id, g) | TokenExp::Same(id, g), Some(text)) => {
                let known = self.sessions.get(&id).and_then(|s| s.tokens.get(&g));
                match known {
                    Some(k) if matches!(exp, TokenExp::Same(..)) && k != text => Err(format!(
                        "INV-single-successor: the same generation-{g} token as before"
                    )),
                    Some(_) if matches!(exp, TokenExp::Same(..)) => Ok(()),
                    _ => {
                        self.check_token_text(text, &id)?;
                        self.learn_token(id, g, text);
                        Ok(())
                    }
                }
            }
            (exp, _) => Err(format!("token {exp:?}")),
        }
    }

    /// The access token handed back with a session token (`exp`): none without one or when
    /// the policy issues none; otherwise one of the form `<access prefix>_<id>_<secret>`, new
    /// for a new generation and the very same for a generation re-issued.
    fn check_access(&mut self, exp: TokenExp, got: Option<&str>) -> Result<(), String> {
        let (id, g) = match exp {
            TokenExp::New(id, g) | TokenExp::Same(id, g) if self.p.access_ttl().is_some() => {
                (id, g)
            }
            _ => {
                return match got {
                    None => Ok(()),
                    Some(_) => Err(format!("no access token with token {exp:?}")),
                };
            }
        };
        let Some(text) = got else {
            return Err(format!("an access token for {id} generation {g}"));
        };
        match self.sessions.get(&id).and_then(|s| s.access_tokens.get(&g)) {
            Some(known) if known == text => Ok(()),
            Some(_) => Err(format!(
                "the same generation-{g} access token as before (derived from the same secret)"
            )),
            None => {
                let head = format!("{}_{}_", self.p.access_prefix(), id);
                if !text.starts_with(&head) || text.len() != head.len() + SECRET_TEXT_LEN {
                    return Err(format!("an access token of the form {head}<secret>"));
                }
                if self.access_texts.contains_key(text) {
                    return Err("an access token never issued before".into());
                }
                self.learn_access(id, g, text);
                Ok(())
            }
        }
    }

    fn learn_access(&mut self, id: SessionId, g: u64, text: &str) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.access_tokens.insert(g, text.to_owned());
        }
        self.access_texts.insert(text.to_owned(), (id, g));
    }

    fn learn_token(&mut self, id: SessionId, g: u64, text: &str) {
        if let Some(s) = self.sessions.get_mut(&id) {
            s.tokens.insert(g, text.to_owned());
        }
        self.texts.insert(text.to_owned(), (id, g));
    }

    fn minted(
        &mut self,
        now: Timestamp,
        id: SessionId,
        exp: TokenExp,
        obs: &Observed,
    ) -> Result<(), String> {
        let s = self.sessions.get(&id).ok_or("minting session vanished")?;
        let want_exp = now.saturating_add(self.p.ticket_ttl()).min(s.expires_at);
        let Observed::Minted {
            ticket,
            ticket_id,
            expires_at,
            session,
            renewed,
            access,
        } = obs
        else {
            return Err(format!("a ticket for {id} until {want_exp}"));
        };
        check_view(s, session)?;
        if *expires_at != want_exp {
            return Err(format!("a ticket until {want_exp}"));
        }
        let head = format!("{}_{}_", self.p.ticket_prefix(), ticket_id);
        if !ticket.starts_with(&head) || ticket.len() != head.len() + SECRET_TEXT_LEN {
            return Err(format!("a ticket of the form {head}<secret>"));
        }
        if self.ticket_texts.contains_key(ticket) || self.ticket_ids.contains_key(ticket_id) {
            return Err("a fresh ticket".into());
        }
        self.check_token(exp, renewed.as_deref())?;
        self.check_access(exp, access.as_deref())?;
        self.learn_ticket(ticket, *ticket_id, id, want_exp);
        Ok(())
    }

    fn learn_ticket(
        &mut self,
        text: &str,
        id: TicketId,
        session: SessionId,
        expires_at: Timestamp,
    ) {
        let i = self.tickets.len();
        self.tickets.push(MTicket {
            text: Some(text.to_owned()),
            id: Some(id),
            session,
            expires_at,
            presence: Presence::Present,
        });
        self.ticket_texts.insert(text.to_owned(), i);
        self.ticket_ids.insert(id, i);
    }

    fn learn_slot(
        &mut self,
        id: SlotId,
        session: SessionId,
        resource: &Option<Resource>,
        expires_at: Timestamp,
    ) {
        self.slot_ids.insert(id, self.slots.len());
        self.slots.push(MSlot {
            id: Some(id),
            session,
            resource: resource.clone(),
            expires_at,
            presence: Presence::Present,
        });
    }

    /// What a caller at `now` is told about session `id` if it is not live — having written
    /// down an expiry nobody had observed yet first (an observed ending is final). `None`: live.
    fn ended(&mut self, id: &SessionId, now: Timestamp) -> Option<Denial> {
        let Some(s) = self
            .sessions
            .get_mut(id)
            .filter(|s| s.presence != Presence::Gone)
        else {
            return Some(Denial::NotAuthenticated);
        };
        match s.state {
            MState::Revoked {
                reason: RevokeReason::Expired,
                ..
            } => Some(Denial::Expired),
            MState::Revoked { reason, .. } => Some(Denial::Revoked(reason)),
            MState::Active if now >= s.expires_at => {
                s.end(now, RevokeReason::Expired);
                Some(Denial::Expired)
            }
            MState::Active => None,
        }
    }

    fn update_data(
        &mut self,
        now: Timestamp,
        id: &SessionId,
        expected: u64,
        data: &[u8],
    ) -> Result<(), Denial> {
        if data.len() > self.p.max_data_len() {
            return Err(Denial::InvalidInput);
        }
        if let Some(d) = self.ended(id, now) {
            return Err(d);
        }
        let s = self.sessions.get_mut(id).ok_or(Denial::NotAuthenticated)?;
        if s.data_version != expected {
            return Err(Denial::VersionConflict);
        }
        s.data = data.to_vec();
        s.data_version += 1;
        s.version += 1;
        s.drop_sealed_if_closed(now, &self.p);
        Ok(())
    }

    fn redeem(
        &mut self,
        now: Timestamp,
        kind: TicketKind,
        text: &str,
        obs: &Observed,
    ) -> Result<(), String> {
        let i = match kind {
            TicketKind::Malformed => return deny(obs, Denial::Malformed),
            TicketKind::UnknownId | TicketKind::Forged => {
                return deny(obs, Denial::NotAuthenticated);
            }
            TicketKind::Issued => self
                .ticket_texts
                .get(text)
                .copied()
                .ok_or("(harness bug) a ticket the model never saw")?,
        };
        let t = &mut self.tickets[i];
        if t.presence == Presence::Gone {
            return deny(obs, Denial::NotAuthenticated);
        }
        t.presence = Presence::Gone;
        if now >= t.expires_at {
            return deny(obs, Denial::Expired);
        }
        let sid = t.session;
        if let Some(d) = self.ended(&sid, now) {
            return deny(obs, d);
        }
        match (self.sessions.get(&sid), obs) {
            (Some(s), Observed::Redeemed(got)) => check_view(s, got),
            _ => Err(format!("redeemed for {sid}")),
        }
    }

    fn decide_acquire(
        &self,
        now: Timestamp,
        session: &SessionId,
        resource: Option<&Resource>,
    ) -> Result<Timestamp, Denial> {
        let live = self
            .sessions
            .get(session)
            .is_some_and(|s| self.is_live(s, now));
        if !live {
            return Err(Denial::NotAuthenticated);
        }
        match self.slot_caps_full(now, session, resource) {
            (true, _) => Err(Denial::LimitReached(Limit::SessionSlots)),
            (_, true) => Err(Denial::LimitReached(Limit::ResourceSlots)),
            _ => Ok(now.saturating_add(self.p.slot_ttl())),
        }
    }

    /// Whether the session's and the resource's slot caps are full at `now`. When both are,
    /// either refusal is right: the contract does not order the two checks.
    fn slot_caps_full(
        &self,
        now: Timestamp,
        session: &SessionId,
        resource: Option<&Resource>,
    ) -> (bool, bool) {
        // A slot counts against a cap while it is unexpired and its session is live (revoking
        // a session frees its slots' capacity at once).
        let counts = |sl: &MSlot| {
            Model::slot_live(sl, now)
                && self
                    .sessions
                    .get(&sl.session)
                    .is_some_and(|s| self.is_live(s, now))
        };
        let full = |max: Option<u32>, of: &dyn Fn(&MSlot) -> bool| {
            max.is_some_and(|max| {
                self.slots.iter().filter(|sl| of(sl) && counts(sl)).count() >= max as usize
            })
        };
        let session_full = full(self.p.max_slots_per_session(), &|sl| &sl.session == session);
        let resource_full = resource.is_some_and(|res| {
            full(self.p.max_slots_per_resource(), &|sl| {
                sl.resource.as_ref() == Some(res)
            })
        });
        (session_full, resource_full)
    }

    fn decide_heartbeat(&mut self, now: Timestamp, slot: &SlotId) -> Result<Timestamp, Denial> {
        let Some(&i) = self.slot_ids.get(slot) else {
            return Err(Denial::SlotLost);
        };
        let sl = &self.slots[i];
        if sl.presence == Presence::Gone {
            return Err(Denial::SlotLost);
        }
        let session_live = self
            .sessions
            .get(&sl.session)
            .is_some_and(|s| self.is_live(s, now));
        let native = self.settings.native_expiry;
        let sl = &mut self.slots[i];
        if now >= sl.expires_at || !session_live {
            // A lapsed slot may be left to the store's own expiry.
            sl.presence = if native && now >= sl.expires_at {
                Presence::Maybe
            } else {
                Presence::Gone
            };
            return Err(Denial::SlotLost);
        }
        sl.expires_at = now.saturating_add(self.p.slot_ttl());
        Ok(sl.expires_at)
    }

    fn reap(&mut self, now: Timestamp, limit: usize, out: &ReapOutcome) -> Result<(), String> {
        self.rate_reaped(now);
        // What is due, by kind: (certainly present, maybe present).
        let due = |p: Presence, e: Timestamp| p != Presence::Gone && e <= now;
        let count = |it: &mut dyn Iterator<Item = (Presence, Timestamp)>| {
            let mut c = (0u64, 0u64);
            for (p, e) in it {
                if due(p, e) {
                    if p == Presence::Present && !self.settings.native_expiry {
                        c.0 += 1;
                    } else {
                        c.1 += 1;
                    }
                }
            }
            c
        };
        let s = count(&mut self.sessions.values().map(|s| (s.presence, s.expires_at)));
        let t = count(&mut self.tickets.iter().map(|t| (t.presence, t.expires_at)));
        let l = count(&mut self.slots.iter().map(|s| (s.presence, s.expires_at)));
        let limit64 = limit as u64;
        let certain = s.0 + t.0 + l.0;
        let possible = certain + s.1 + t.1 + l.1;
        let total = out.total();
        let want = format!(
            "a reap of {}..={} records (sessions ≤{}, tickets ≤{}, slots ≤{})",
            certain.min(limit64),
            possible.min(limit64),
            s.0 + s.1,
            t.0 + t.1,
            l.0 + l.1
        );
        if total > limit64
            || total < certain.min(limit64)
            || total > possible.min(limit64)
            || out.sessions > s.0 + s.1
            || out.tickets > t.0 + t.1
            || out.slots > l.0 + l.1
        {
            return Err(want);
        }
        let drained = total < limit64;
        if drained && (out.sessions < s.0 || out.tickets < t.0 || out.slots < l.0) {
            return Err(format!("{want}, every due record removed"));
        }
        // Which sessions ended, as the reap reports them: each one the model sees as due, once,
        // with its owner, resource and how it ended (a lapse with no tombstone is `Expired`).
        if !self.settings.native_expiry && out.ended.len() as u64 != out.sessions {
            return Err(format!(
                "{want}; `ended` names {} sessions, {} were removed",
                out.ended.len(),
                out.sessions
            ));
        }
        let mut named = std::collections::BTreeSet::new();
        for e in &out.ended {
            let Some(m) = self.sessions.get(&e.id) else {
                return Err(format!("reap reported an unknown session {}", e.id));
            };
            let reason = match m.state {
                MState::Active => RevokeReason::Expired,
                MState::Revoked { reason, .. } => reason,
            };
            let fits = named.insert(e.id)
                && due(m.presence, m.expires_at)
                && e.subject == m.subject
                && e.resource == m.resource
                && e.reason.is_none_or(|r| r == reason);
            if !fits {
                return Err(format!(
                    "reap reported {e:?}; the model has it {:?}, {:?}, due at {:?}",
                    m.presence, m.state, m.expires_at
                ));
            }
        }
        // Under native expiry the store may leave a due record to its own clock (its reap
        // only tidies indexes): each one is gone or about to be, never certainly either.
        let native = self.settings.native_expiry;
        let resolve = |p: &mut Presence, e: Timestamp, removed: u64, (c, m): (u64, u64)| {
            if !due(*p, e) {
                return;
            }
            if native {
                *p = Presence::Maybe;
            } else if drained || removed == c + m {
                *p = Presence::Gone;
            } else if removed > 0 {
                *p = Presence::Maybe;
            }
        };
        for x in self.sessions.values_mut() {
            resolve(&mut x.presence, x.expires_at, out.sessions, s);
        }
        for x in &mut self.tickets {
            resolve(&mut x.presence, x.expires_at, out.tickets, t);
        }
        for x in &mut self.slots {
            resolve(&mut x.presence, x.expires_at, out.slots, l);
        }
        Ok(())
    }

    // ----- outcomes unknown: injected faults -----

    /// Accounts for `action` at `now` having failed with a store error, so its reply (and
    /// perhaps its effect) is unknown. `faults` lists the faults injected into its store calls,
    /// in order, when known (`None`: an unexplained store error, anything may have applied).
    ///
    /// Sessions the action may have changed are marked unsure and re-learned from the store by
    /// the next [`reconcile`](Self::reconcile); tickets and slots it may have created or removed
    /// become [`Presence::Maybe`] (or certain, when the fault says whether the write applied).
    pub fn step_faulted(
        &mut self,
        now: Timestamp,
        action: &Action,
        faults: Option<&[(Op, Fault)]>,
    ) {
        // If what the call would have done depends on an unsure effect, whether it applied
        // says nothing certain: treat it as unknown.
        let faults = if self.depends_on_unsure(action) {
            None
        } else {
            faults
        };
        self.faulted(now, action, faults);
    }

    fn faulted(&mut self, now: Timestamp, action: &Action, faults: Option<&[(Op, Fault)]>) {
        self.saw(now);
        // The fault that ended the call, and whether its write was applied: `Some(true)` yes,
        // `Some(false)` no, `None` unknown.
        let last = faults.and_then(|f| f.last().copied());
        let applied = |op: Op| -> Option<bool> {
            match (faults, last) {
                (None, _) => None,
                (Some(_), Some((o, f))) if o == op => Some(f.applies()),
                (Some(_), _) => Some(false),
            }
        };
        let read_reached_end = |faults: Option<&[(Op, Fault)]>| {
            faults.map(|f| !f.iter().any(|(o, _)| matches!(o, Op::Load | Op::Cas)))
        };
        let token_session = |m: &Model, t: &TokenInput| match t.kind {
            TokenKind::Issued => m.texts.get(&t.text).map(|(id, _)| *id),
            _ => None,
        };
        // A mint whose read granted `granted` (its session, and that session's deadline after
        // the read): its ticket may have been stored.
        let mint = |m: &mut Model, granted: Option<(SessionId, Timestamp)>| {
            let put = match (read_reached_end(faults), applied(Op::PutTicket)) {
                (Some(true), Some(true)) => Some(Presence::Present),
                (Some(true), _) | (Some(false), _) => None,
                (None, _) => Some(Presence::Maybe),
            };
            if let (Some(presence), Some((id, session_expires))) = (put, granted) {
                let expires_at = now.saturating_add(m.p.ticket_ttl()).min(session_expires);
                m.tickets.push(MTicket {
                    text: None,
                    id: None,
                    session: id,
                    expires_at,
                    presence,
                });
            }
        };
        match action {
            Action::Create { subject, .. } => {
                self.unsure_subjects.insert(subject.clone());
                self.rate_checked(subject, now);
                if self.p.global_cap().is_some() {
                    // Its count may have written down any ending it counted.
                    let due = self
                        .sessions
                        .values()
                        .filter(|s| s.state == MState::Active && now >= s.expires_at);
                    self.unsure.extend(due.map(|s| s.id).collect::<Vec<_>>());
                }
            }
            Action::Validate { token, .. } | Action::Refresh { token, .. } => {
                if let Some(id) = token_session(self, token) {
                    self.unsure.insert(id);
                }
            }
            Action::MintTicket { token, binding } => {
                let mut m = self.clone();
                let granted = match m.decide_read(now, token, binding, false) {
                    Ok(ReadPred::Granted(id, _)) => Some(id),
                    _ => None,
                };
                if let Some(id) = token_session(self, token) {
                    self.unsure.insert(id);
                }
                let granted =
                    granted.and_then(|id| m.sessions.get(&id).map(|s| (id, s.expires_at)));
                mint(self, granted);
            }
            Action::MintTicketById { id } => {
                let granted = match self.clone().ended(id, now) {
                    None => self.sessions.get(id).map(|s| (*id, s.expires_at)),
                    Some(_) => None,
                };
                self.unsure.insert(*id);
                mint(self, granted);
            }
            Action::Logout { token } | Action::ValidateAs { token, .. } => {
                if let Some(id) = token_session(self, token) {
                    self.unsure.insert(id);
                }
            }
            Action::ValidateAccess { access } => {
                if let Some((id, _)) = self.access_texts.get(&access.text) {
                    self.unsure.insert(*id);
                }
            }
            Action::RevokeOwned { id, .. }
            | Action::GetById { id }
            | Action::KeepaliveById { id } => {
                self.unsure.insert(*id);
            }
            Action::GiveBack { id } => {
                self.unsure.insert(*id);
                // The give back comes after the revocation committed and was answered: a fault
                // on an earlier call never reached it, a fault on it applied it or not, and an
                // unexplained failure may have.
                let forgotten = applied(Op::ForgetCreation);
                if forgotten != Some(false)
                    && let Some(subject) = self.sessions.get(id).map(|s| s.subject.clone())
                {
                    self.forget_creation(&subject, id, forgotten == Some(true));
                }
            }
            Action::CheckCreate { subject } => self.rate_checked(subject, now),
            Action::Count { .. } => {}
            Action::RedeemTicket { ticket } => {
                if ticket.kind == TicketKind::Issued
                    && let Some(&i) = self.ticket_texts.get(&ticket.text)
                {
                    // A fault after the take (settling its session) means it was taken.
                    let taken = match (applied(Op::TakeTicket), last) {
                        (_, Some((Op::Load | Op::Cas, _))) => Some(true),
                        (Some(b), _) => Some(b),
                        (None, _) => None,
                    };
                    self.unsure.insert(self.tickets[i].session);
                    let t = &mut self.tickets[i];
                    match taken {
                        Some(true) => t.presence = Presence::Gone,
                        Some(false) => {}
                        None if t.presence == Presence::Present => t.presence = Presence::Maybe,
                        None => {}
                    }
                }
            }
            Action::AcquireSlot { session, resource } => {
                // Refused, the driver may have written down the session's ending.
                self.unsure.insert(*session);
                let presence = match applied(Op::AcquireSlot) {
                    Some(true) => Some(Presence::Present),
                    Some(false) => None,
                    None => Some(Presence::Maybe),
                };
                // Refused in this serial order, it may still be stored: the store may have run
                // it before a concurrent acquisition or ending that the model ordered first, and
                // a store whose slots cannot be read back never tells which.
                let decided = self.decide_acquire(now, session, resource.as_ref());
                let known = self.sessions.contains_key(session);
                if let Some(presence) = presence
                    && (decided.is_ok() || known)
                {
                    let (presence, expires_at) = match decided {
                        Ok(exp) => (presence, exp),
                        Err(_) => (Presence::Maybe, now.saturating_add(self.p.slot_ttl())),
                    };
                    self.slots.push(MSlot {
                        id: None,
                        session: *session,
                        resource: resource.clone(),
                        expires_at,
                        presence,
                    });
                }
            }
            Action::HeartbeatSlot { slot } => match applied(Op::HeartbeatSlot) {
                Some(true) => {
                    let _ = self.decide_heartbeat(now, slot);
                }
                Some(false) => {}
                None => {
                    if let Some(&i) = self.slot_ids.get(slot)
                        && self.slots[i].presence == Presence::Present
                    {
                        self.slots[i].presence = Presence::Maybe;
                    }
                }
            },
            Action::ReleaseSlot { slot } => {
                if let Some(&i) = self.slot_ids.get(slot) {
                    let sl = &mut self.slots[i];
                    match applied(Op::ReleaseSlot) {
                        Some(true) => sl.presence = Presence::Gone,
                        Some(false) => {}
                        None if sl.presence == Presence::Present => sl.presence = Presence::Maybe,
                        None => {}
                    }
                }
            }
            Action::Reap { .. } => {
                if applied(Op::Reap) != Some(false) {
                    self.maybe_reaped(now);
                }
            }
            Action::Revoke { id } | Action::UpdateData { id, .. } => {
                self.unsure.insert(*id);
            }
            Action::RevokeSubject { subject } => {
                self.unsure_subjects.insert(subject.clone());
            }
            Action::RevokeResource { resource } => {
                let ids: Vec<SessionId> = self
                    .sessions
                    .values()
                    .filter(|s| s.resource.as_ref() == Some(resource))
                    .map(|s| s.id)
                    .collect();
                self.unsure.extend(ids);
            }
            Action::List { .. } => {}
        }
    }

    /// A reap at `now` may have removed anything due.
    fn maybe_reaped(&mut self, now: Timestamp) {
        self.rate_reaped(now);
        let maybe = |p: &mut Presence, e: Timestamp| {
            if *p == Presence::Present && e <= now {
                *p = Presence::Maybe;
            }
        };
        for x in self.sessions.values_mut() {
            maybe(&mut x.presence, x.expires_at);
        }
        for x in &mut self.tickets {
            maybe(&mut x.presence, x.expires_at);
        }
        for x in &mut self.slots {
            maybe(&mut x.presence, x.expires_at);
        }
    }

    /// True if the outcome of `action` may depend on something an earlier operation of the
    /// same step left unsure (a faulted call whose effect is unknown until the next
    /// [`reconcile`](Self::reconcile)). Such an outcome cannot be predicted; use
    /// [`step_unchecked`](Self::step_unchecked) for it.
    pub fn depends_on_unsure(&self, action: &Action) -> bool {
        // A slot that may or may not be stored decides the caps of its session and resource,
        // and the answers about itself.
        let maybe_slot = |sl: &MSlot| sl.presence == Presence::Maybe;
        let slot_unsure = match action {
            Action::AcquireSlot { session, resource } => self.slots.iter().any(|sl| {
                maybe_slot(sl)
                    && (&sl.session == session
                        || (resource.is_some() && sl.resource.as_ref() == resource.as_ref()))
            }),
            Action::HeartbeatSlot { slot } | Action::ReleaseSlot { slot } => self
                .slot_ids
                .get(slot)
                .is_some_and(|&i| maybe_slot(&self.slots[i])),
            _ => false,
        };
        if slot_unsure {
            return true;
        }
        if self.unsure.is_empty() && self.unsure_subjects.is_empty() {
            return false;
        }
        let session_unsure = |id: &SessionId| {
            self.unsure.contains(id)
                || self
                    .sessions
                    .get(id)
                    .is_some_and(|s| self.unsure_subjects.contains(&s.subject))
        };
        let subject_unsure = |subject: &Subject| {
            self.unsure_subjects.contains(subject)
                || self
                    .unsure
                    .iter()
                    .any(|id| self.sessions.get(id).is_some_and(|s| &s.subject == subject))
        };
        match action {
            Action::Create { subject, .. } => {
                subject_unsure(subject) || self.p.global_cap().is_some()
            }
            Action::Validate { token, .. }
            | Action::Refresh { token, .. }
            | Action::MintTicket { token, .. } => match token.kind {
                TokenKind::Issued => self
                    .texts
                    .get(&token.text)
                    .is_some_and(|(id, _)| session_unsure(id)),
                _ => false,
            },
            Action::Logout { token } | Action::ValidateAs { token, .. } => match token.kind {
                TokenKind::Issued => self
                    .texts
                    .get(&token.text)
                    .is_some_and(|(id, _)| session_unsure(id)),
                _ => false,
            },
            Action::ValidateAccess { access } => match access.kind {
                AccessKind::Issued => self
                    .access_texts
                    .get(&access.text)
                    .is_some_and(|(id, _)| session_unsure(id)),
                _ => false,
            },
            Action::Revoke { id }
            | Action::UpdateData { id, .. }
            | Action::RevokeOwned { id, .. }
            | Action::GetById { id }
            | Action::KeepaliveById { id }
            | Action::MintTicketById { id }
            | Action::GiveBack { id } => session_unsure(id),
            Action::CheckCreate { subject } => {
                subject_unsure(subject) || self.p.global_cap().is_some()
            }
            Action::Count { scope } => match scope {
                Scope::Subject(subject) => subject_unsure(subject),
                Scope::All | Scope::Resource(_) => true,
            },
            Action::RevokeSubject { subject } | Action::List { subject } => subject_unsure(subject),
            Action::RedeemTicket { ticket } => self
                .ticket_texts
                .get(&ticket.text)
                .is_some_and(|&i| session_unsure(&self.tickets[i].session)),
            Action::HeartbeatSlot { slot } => self
                .slot_ids
                .get(slot)
                .is_some_and(|&i| session_unsure(&self.slots[i].session)),
            Action::ReleaseSlot { .. } => false,
            Action::RevokeResource { .. } | Action::AcquireSlot { .. } | Action::Reap { .. } => {
                true
            }
        }
    }

    /// Accounts for an operation whose outcome cannot be predicted (see
    /// [`depends_on_unsure`](Self::depends_on_unsure)): learns what its answer reveals (new
    /// sessions, tokens, tickets, slots) without checking it, and marks what it may have changed
    /// as unsure, to be re-learned by the next [`reconcile`](Self::reconcile).
    pub fn step_unchecked(&mut self, now: Timestamp, action: &Action, obs: &Observed) {
        // Sessions it touched become unsure; tickets and slots are learned from the answer.
        self.faulted(now, action, Some(&[]));
        match (action, obs) {
            (
                Action::Create {
                    subject,
                    resource,
                    binding,
                    data,
                },
                Observed::Created {
                    session,
                    token,
                    access,
                    ..
                },
            ) => {
                if !self.sessions.contains_key(&session.id) {
                    let fresh = self.fresh(
                        session.id,
                        subject,
                        resource,
                        binding,
                        session.created_at,
                        data,
                    );
                    self.rate_logged(subject, session.created_at, Some(session.id));
                    self.learn_session(fresh, token);
                }
                if let Some(a) = access
                    && !self.access_texts.contains_key(a)
                {
                    self.learn_access(session.id, 0, a);
                }
                self.unsure.insert(session.id);
                self.unsure_subjects.insert(subject.clone());
            }
            (
                _,
                Observed::Read {
                    session,
                    token: Some(t),
                    access,
                }
                | Observed::Minted {
                    session,
                    renewed: Some(t),
                    access,
                    ..
                },
            ) => {
                if !self.texts.contains_key(t) {
                    self.learn_token(session.id, session.generation, t);
                }
                if let Some(a) = access
                    && !self.access_texts.contains_key(a)
                {
                    self.learn_access(session.id, session.generation, a);
                }
                self.unsure.insert(session.id);
            }
            // A give back that found the session removed its creation from the rate log.
            (
                Action::GiveBack { id },
                Observed::Revoked(RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked { .. }),
            ) => {
                if let Some(subject) = self.sessions.get(id).map(|s| s.subject.clone()) {
                    self.forget_creation(&subject, id, true);
                }
            }
            _ => {}
        }
        match (action, obs) {
            (
                _,
                Observed::Minted {
                    ticket,
                    ticket_id,
                    expires_at,
                    session,
                    ..
                },
            ) if !self.ticket_texts.contains_key(ticket) => {
                self.learn_ticket(ticket, *ticket_id, session.id, *expires_at);
            }
            (Action::RedeemTicket { ticket }, _) if ticket.kind == TicketKind::Issued => {
                if let Some(&i) = self.ticket_texts.get(&ticket.text) {
                    self.tickets[i].presence = Presence::Gone;
                }
            }
            (Action::AcquireSlot { session, resource }, Observed::Slot { id, expires_at })
                if !self.slot_ids.contains_key(id) =>
            {
                self.learn_slot(*id, *session, resource, *expires_at);
            }
            (Action::HeartbeatSlot { slot }, o) => {
                if let Some(&i) = self.slot_ids.get(slot) {
                    match o {
                        Observed::Slot { expires_at, .. } => {
                            self.slots[i].expires_at = *expires_at;
                            self.slots[i].presence = Presence::Present;
                        }
                        // A lapsed slot may be left to the store's own expiry.
                        _ if self.settings.native_expiry && now >= self.slots[i].expires_at => {
                            self.slots[i].presence = Presence::Maybe;
                        }
                        _ => self.slots[i].presence = Presence::Gone,
                    }
                }
            }
            (Action::ReleaseSlot { slot }, _) => {
                if let Some(&i) = self.slot_ids.get(slot) {
                    self.slots[i].presence = Presence::Gone;
                }
            }
            (Action::Reap { .. }, _) => self.maybe_reaped(now),
            _ => {}
        }
    }

    // ----- the store's records -----

    /// Compares the model's view of a session with its stored record.
    pub fn compare_record(&self, rec: &SessionRecord) -> Result<(), String> {
        let Some(s) = self.sessions.get(&rec.id) else {
            return Err(format!(
                "store holds session {} the model never saw",
                rec.id
            ));
        };
        let got = MSession {
            binding: s.binding.clone(),
            tokens: s.tokens.clone(),
            access_tokens: s.access_tokens.clone(),
            presence: s.presence,
            ..MSession::of_record(rec)
        };
        let c = &rec.credential;
        let retired = s
            .generation
            .saturating_sub(1)
            .min(self.p.reuse_history() as u64);
        if got == *s
            && c.previous.is_some() == (c.generation >= 1)
            && c.retired.len() as u64 == retired
            && rec.context_summary.is_none()
        {
            return Ok(());
        }
        // Tokens are the model's own (and secret): leave them out of the report.
        let show = |m: &MSession| {
            format!(
                "{:?}",
                MSession {
                    tokens: BTreeMap::new(),
                    access_tokens: BTreeMap::new(),
                    ..m.clone()
                }
            )
        };
        Err(format!(
            "stored session {} ({} retired verifiers, previous {}, summary {}):\n  stored {}\n  model  {}",
            rec.id,
            c.retired.len(),
            c.previous.is_some(),
            rec.context_summary.is_some(),
            show(&got),
            show(s),
        ))
    }

    fn adopt(&mut self, rec: &SessionRecord) {
        let known = self.sessions.get(&rec.id);
        let s = MSession {
            tokens: known.map(|s| s.tokens.clone()).unwrap_or_default(),
            access_tokens: known.map(|s| s.access_tokens.clone()).unwrap_or_default(),
            binding: known.and_then(|s| s.binding.clone()),
            ..MSession::of_record(rec)
        };
        if !self.sessions.contains_key(&rec.id) {
            self.order.push(rec.id);
        }
        self.sessions.insert(rec.id, s);
    }

    /// Checks the model against every session record the store holds (`truth`: all of them,
    /// by id), resolves `Maybe` presences, and re-learns sessions an unsure (faulted) action
    /// touched — including sessions a create with a lost reply inserted. `now` is the latest
    /// clock any caller used (for native expiry).
    pub fn reconcile(
        &mut self,
        truth: &BTreeMap<SessionId, SessionRecord>,
        now: Timestamp,
    ) -> Result<(), String> {
        let ids: Vec<SessionId> = self.order.clone();
        for id in ids {
            let Some(s) = self.sessions.get(&id) else {
                continue;
            };
            let unsure = self.unsure.contains(&id) || self.unsure_subjects.contains(&s.subject);
            match (truth.get(&id), s.presence) {
                (Some(_), Presence::Gone) => {
                    return Err(format!(
                        "session {id} is back in the store after it was removed"
                    ));
                }
                (Some(rec), _) if unsure => self.adopt(rec),
                (Some(rec), _) => {
                    self.compare_record(rec)?;
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.presence = Presence::Present;
                    }
                }
                (None, Presence::Present)
                    if !(unsure || self.settings.native_expiry && now >= s.expires_at) =>
                {
                    return Err(format!("session {id} vanished from the store"));
                }
                (None, _) => {
                    if let Some(s) = self.sessions.get_mut(&id) {
                        s.presence = Presence::Gone;
                    }
                }
            }
        }
        for (id, rec) in truth {
            if self.sessions.contains_key(id) {
                continue;
            }
            if !self.unsure_subjects.contains(&rec.subject) {
                return Err(format!(
                    "store holds session {id} of {} that no acknowledged create made",
                    rec.subject
                ));
            }
            self.adopt(rec);
            self.rate_logged(&rec.subject, rec.created_at, Some(*id));
        }
        self.unsure.clear();
        self.unsure_subjects.clear();
        self.batch += 1;
        self.batch_checks.clear();
        self.batch_reaped = None;
        Ok(())
    }

    /// Checks the model's tickets and slots against every ticket and slot record the store
    /// holds, resolving `Maybe` presences and learning the ids of tickets and slots whose
    /// replies were lost. `now` as in [`reconcile`](Self::reconcile).
    pub fn reconcile_dump(
        &mut self,
        tickets: &[TicketRecord],
        slots: &[SlotRecord],
        now: Timestamp,
    ) -> Result<(), String> {
        let expired = |e: Timestamp| self.settings.native_expiry && now >= e;
        let model = self
            .tickets
            .iter()
            .map(|t| (t.id, (t.session, None, t.expires_at), t.presence));
        let store = tickets
            .iter()
            .map(|r| (r.id, (r.session, None, r.expires_at)));
        let got = reconcile_leases("ticket", model.collect(), store.collect(), expired)?;
        for (i, (t, (id, presence))) in self.tickets.iter_mut().zip(got).enumerate() {
            if let (None, Some(id)) = (t.id, id) {
                self.ticket_ids.insert(id, i);
            }
            (t.id, t.presence) = (id, presence);
        }
        let key = |s: &MSlot| (s.session, s.resource.clone(), s.expires_at);
        let model = self.slots.iter().map(|s| (s.id, key(s), s.presence));
        let store = slots
            .iter()
            .map(|r| (r.id, (r.session, r.resource.clone(), r.expires_at)));
        let got = reconcile_leases("slot", model.collect(), store.collect(), expired)?;
        for (i, (s, (id, presence))) in self.slots.iter_mut().zip(got).enumerate() {
            if let (None, Some(id)) = (s.id, id) {
                self.slot_ids.insert(id, i);
            }
            (s.id, s.presence) = (id, presence);
        }
        Ok(())
    }

    /// Number of records the model says are stored (sessions, tickets, slots), counting
    /// `Maybe` ones separately: `(certain, maybe)`.
    pub fn stored_counts(&self) -> (usize, usize) {
        let mut c = (0, 0);
        let presences = self
            .sessions
            .values()
            .map(|s| s.presence)
            .chain(self.tickets.iter().map(|t| t.presence))
            .chain(self.slots.iter().map(|s| s.presence));
        for p in presences {
            match p {
                Presence::Present => c.0 += 1,
                Presence::Maybe => c.1 += 1,
                Presence::Gone => {}
            }
        }
        c
    }
}
