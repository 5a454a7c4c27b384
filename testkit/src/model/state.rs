//! The model's state and the rules, written from DESIGN.md §3–§8 and the documented engine
//! choices (policy.rs, read.rs, rotation.rs doc comments) — never from `leasehold::decide`.
//!
//! Every rule below is stated the way the brief states it:
//! - a session is *live* at `now` when it is active and `now < expires_at`;
//! - `expires_at = min(last touch + idle timeout, created_at + absolute lifetime)`;
//! - validate writes the touch only when it moved forward, by at least the touch granularity;
//! - the generations of a session's token form a chain: the current one, its immediate
//!   predecessor, and up to `reuse_history` older ones that are still *recognised* (presenting
//!   one is reuse); anything older is simply unknown;
//! - the predecessor is answered with the *same* successor while the grace window is open, or
//!   while the successor was never presented and the orphan window is open; otherwise reuse;
//! - a context binding gates grants only: reuse is detected whatever binding comes with it;
//! - a slot counts against a cap while it is unexpired and its session is live.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use leasehold::record::{SessionRecord, SessionState, SlotRecord, TicketRecord};
use leasehold::store::ReapOutcome;
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{
    CapPolicy, Limit, Policy, Rate, Resource, RevokeReason, Session, SessionId, SlotId, Subject,
    SubjectCap, TicketId, Timestamp,
};

use super::action::{Action, Denial, Observed, TicketKind, TokenInput, TokenKind};
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

/// A session's lifecycle state (expiry is not a state: it is `now ≥ expires_at`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MState {
    /// Usable until `expires_at`.
    Active,
    /// A tombstone.
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
}

impl MSession {
    /// The newest generation whose text is known, with its text.
    pub fn latest_token(&self) -> Option<(u64, &str)> {
        self.tokens
            .iter()
            .next_back()
            .map(|(g, t)| (*g, t.as_str()))
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

/// How strict the model is about things a particular store or clock setup may legitimately
/// vary.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ModelSettings {
    /// The store deletes expired records by itself: a due record may be absent at any time.
    pub native_expiry: bool,
    /// Callers' clocks may disagree by up to this much (simulation with clock skew). The store
    /// keeps a per-subject creation log pruned with its callers' clocks, so near the edge of the
    /// rolling window either rate decision is accepted. Zero in single-clock tests.
    pub clock_tolerance: Duration,
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

/// The policy knobs the rules use, read once through the public getters.
#[derive(Clone, Debug)]
struct Knobs {
    absolute: Duration,
    idle: Option<Duration>,
    touch: Duration,
    renewal: Option<Duration>,
    grace: Duration,
    orphan: Duration,
    reuse: bool,
    history: u64,
    ticket_ttl: Duration,
    slot_ttl: Duration,
    subject_cap: Option<SubjectCap>,
    rate: Option<Rate>,
    global_cap: Option<u64>,
    slots_per_session: Option<u32>,
    slots_per_resource: Option<u32>,
    binding: bool,
    max_data: usize,
    token_prefix: String,
    ticket_prefix: String,
}

impl Knobs {
    fn of(p: &Policy) -> Knobs {
        Knobs {
            absolute: p.absolute_lifetime(),
            idle: p.idle_timeout(),
            touch: p.touch_granularity(),
            renewal: p.renewal_interval(),
            grace: p.grace_window(),
            orphan: p.orphan_window(),
            reuse: p.reuse_detection(),
            history: p.reuse_history() as u64,
            ticket_ttl: p.ticket_ttl(),
            slot_ttl: p.slot_ttl(),
            subject_cap: p.subject_cap(),
            rate: p.creation_rate(),
            global_cap: p.global_cap(),
            slots_per_session: p.max_slots_per_session(),
            slots_per_resource: p.max_slots_per_resource(),
            binding: p.enforce_binding(),
            max_data: p.max_data_len(),
            token_prefix: p.token_prefix(),
            ticket_prefix: p.ticket_prefix(),
        }
    }

    /// The deadline a touch at `from` sets.
    fn expiry(&self, from: Timestamp, absolute: Timestamp) -> Timestamp {
        match self.idle {
            Some(idle) => from.saturating_add(idle).min(absolute),
            None => absolute,
        }
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
    k: Knobs,
    settings: ModelSettings,
    sessions: BTreeMap<SessionId, MSession>,
    order: Vec<SessionId>,
    texts: BTreeMap<String, (SessionId, u64)>,
    tickets: Vec<MTicket>,
    ticket_texts: BTreeMap<String, usize>,
    ticket_ids: BTreeMap<TicketId, usize>,
    slots: Vec<MSlot>,
    slot_ids: BTreeMap<SlotId, usize>,
    rate_log: BTreeMap<Subject, Vec<Timestamp>>,
    unsure: BTreeSet<SessionId>,
    unsure_subjects: BTreeSet<Subject>,
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
            k: Knobs::of(policy),
            settings,
            sessions: BTreeMap::new(),
            order: Vec::new(),
            texts: BTreeMap::new(),
            tickets: Vec::new(),
            ticket_texts: BTreeMap::new(),
            ticket_ids: BTreeMap::new(),
            slots: Vec::new(),
            slot_ids: BTreeMap::new(),
            rate_log: BTreeMap::new(),
            unsure: BTreeSet::new(),
            unsure_subjects: BTreeSet::new(),
        }
    }

    /// The settings.
    pub fn settings(&self) -> ModelSettings {
        self.settings
    }

    /// Session token prefix of the policy.
    pub fn token_prefix(&self) -> &str {
        &self.k.token_prefix
    }

    /// Ticket token prefix of the policy.
    pub fn ticket_prefix(&self) -> &str {
        &self.k.ticket_prefix
    }

    /// Every session the model knows, oldest first (including reaped ones).
    pub fn sessions(&self) -> impl DoubleEndedIterator<Item = &MSession> {
        self.order.iter().filter_map(|id| self.sessions.get(id))
    }

    /// A policy duration (`None` when the policy disables it).
    pub fn knob(&self, knob: Knob) -> Option<Duration> {
        let k = &self.k;
        Some(match knob {
            Knob::Touch => k.touch,
            Knob::Grace => k.grace,
            Knob::Orphan => k.orphan,
            Knob::Renewal => return k.renewal,
            Knob::Idle => return k.idle,
            Knob::Absolute => k.absolute,
            Knob::TicketTtl => k.ticket_ttl,
            Knob::SlotTtl => k.slot_ttl,
            Knob::RateWindow => return k.rate.map(|r| r.window),
        })
    }

    /// Number of sessions known.
    pub fn session_count(&self) -> usize {
        self.order.len()
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

    /// The index (in [`tickets`](Self::tickets)) of a ticket text.
    pub fn lookup_ticket(&self, text: &str) -> Option<usize> {
        self.ticket_texts.get(text).copied()
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
            Action::Revoke { id }
            | Action::UpdateData { id, .. }
            | Action::AcquireSlot { session: id, .. } => session(id, &mut ents),
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

    fn presence_of(&self, e: Ent) -> Presence {
        match e {
            Ent::Session(id) => self
                .sessions
                .get(&id)
                .map_or(Presence::Gone, |s| s.presence),
            Ent::Ticket(i) => self.tickets.get(i).map_or(Presence::Gone, |t| t.presence),
            Ent::Slot(i) => self.slots.get(i).map_or(Presence::Gone, |s| s.presence),
        }
    }

    fn set_presence(&mut self, e: Ent, p: Presence) {
        match e {
            Ent::Session(id) => {
                if let Some(s) = self.sessions.get_mut(&id) {
                    s.presence = p;
                }
            }
            Ent::Ticket(i) => {
                if let Some(t) = self.tickets.get_mut(i) {
                    t.presence = p;
                }
            }
            Ent::Slot(i) => {
                if let Some(s) = self.slots.get_mut(i) {
                    s.presence = p;
                }
            }
        }
    }

    fn rate_verdict(&self, subject: &Subject, now: Timestamp) -> RateVerdict {
        let Some(rate) = self.k.rate else {
            return RateVerdict::Allowed;
        };
        let tol = self.settings.clock_tolerance;
        let log = self.rate_log.get(subject).map(Vec::as_slice).unwrap_or(&[]);
        let w = rate.window;
        let max = rate.max as usize;
        let definitely: Vec<Timestamp> = log
            .iter()
            .copied()
            .filter(|t| t.saturating_add(w) > now.saturating_add(tol))
            .collect();
        let possibly = log
            .iter()
            .filter(|t| t.saturating_add(w) > now.saturating_sub(tol))
            .count();
        if definitely.len() >= max {
            let retry = if tol.is_zero() {
                definitely
                    .iter()
                    .min()
                    .map(|t| t.saturating_add(w).since(now))
            } else {
                None
            };
            RateVerdict::Limited(retry)
        } else if possibly < max {
            RateVerdict::Allowed
        } else {
            RateVerdict::Ambiguous
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
        let forks = self.forks(now, action);
        let rates: Vec<Option<bool>> = match action {
            Action::Create { subject, .. }
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
                    let p = if mask & (1 << i) == 0 {
                        Presence::Present
                    } else {
                        Presence::Gone
                    };
                    m.set_presence(*e, p);
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
        let rest: Vec<Model> = worlds.collect();
        for e in &forks {
            let p = first.presence_of(*e);
            if rest.iter().any(|w| w.presence_of(*e) != p) {
                first.set_presence(*e, Presence::Maybe);
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
            Action::Validate { token, binding } => {
                match self.decide_read(now, token, binding, false)? {
                    ReadPred::Denied(d) => deny(obs, d),
                    ReadPred::Granted(id, exp) => match obs {
                        Observed::Read { session, token } => {
                            self.check_granted(&id, session)?;
                            self.check_token(exp, token.as_deref())
                        }
                        _ => Err(format!("valid session {id} with token {exp:?}")),
                    },
                }
            }
            Action::Refresh { token, binding } => {
                match self.decide_read(now, token, binding, true)? {
                    ReadPred::Denied(d) => deny(obs, d),
                    ReadPred::Granted(id, exp) => match obs {
                        Observed::Read { session, token } => {
                            self.check_granted(&id, session)?;
                            self.check_token(exp, token.as_deref())
                        }
                        _ => Err(format!("refreshed session {id} with token {exp:?}")),
                    },
                }
            }
            Action::MintTicket { token, binding } => {
                match self.decide_read(now, token, binding, false)? {
                    ReadPred::Denied(d) => deny(obs, d),
                    ReadPred::Granted(id, exp) => self.minted(now, id, exp, obs),
                }
            }
            Action::Revoke { id } => {
                let revoked = match self.sessions.get_mut(id) {
                    Some(s)
                        if s.presence != Presence::Gone
                            && s.state == MState::Active
                            && now < s.expires_at =>
                    {
                        s.state = MState::Revoked {
                            at: now,
                            reason: RevokeReason::Revoked,
                        };
                        s.version += 1;
                        true
                    }
                    _ => false,
                };
                match obs {
                    Observed::Revoked(b) if *b == revoked => Ok(()),
                    _ => Err(format!("revoked={revoked}")),
                }
            }
            Action::RevokeSubject { subject } => {
                let n = self.revoke_where(now, RevokeReason::Subject, |s| &s.subject == subject);
                match obs {
                    Observed::Count(c) if *c == n => Ok(()),
                    _ => Err(format!("count={n}")),
                }
            }
            Action::RevokeResource { resource } => {
                let n = self.revoke_where(now, RevokeReason::Resource, |s| {
                    s.resource.as_ref() == Some(resource)
                });
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
                match (self.decide_acquire(now, session, resource.as_ref()), obs) {
                    (Ok(exp), Observed::Slot { id, expires_at }) => {
                        if *expires_at != exp {
                            return Err(format!("slot until {exp}"));
                        }
                        if self.slot_ids.contains_key(id) {
                            return Err(format!("a fresh slot id, not {id} again"));
                        }
                        self.slot_ids.insert(*id, self.slots.len());
                        self.slots.push(MSlot {
                            id: Some(*id),
                            session: *session,
                            resource: resource.clone(),
                            expires_at: exp,
                            presence: Presence::Present,
                        });
                        Ok(())
                    }
                    (Ok(exp), _) => Err(format!("slot acquired until {exp}")),
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

    fn revoke_where(
        &mut self,
        now: Timestamp,
        reason: RevokeReason,
        pick: impl Fn(&MSession) -> bool,
    ) -> u64 {
        let mut n = 0;
        for s in self.sessions.values_mut() {
            if pick(s)
                && s.presence != Presence::Gone
                && s.state == MState::Active
                && now < s.expires_at
            {
                s.state = MState::Revoked { at: now, reason };
                s.version += 1;
                n += 1;
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
        if data.len() > self.k.max_data {
            return deny(obs, Denial::InvalidInput);
        }
        if let Some(rate) = self.k.rate {
            let limited = match (rate_world, self.rate_verdict(subject, now)) {
                (Some(true), _) => Some(None),
                (Some(false), _) => None,
                (None, RateVerdict::Limited(retry)) => Some(retry),
                (None, _) => None,
            };
            if let Some(retry) = limited {
                return match (retry, obs) {
                    (Some(r), _) => deny(obs, Denial::RateLimited(r)),
                    (None, Observed::Denied(Denial::RateLimited(r)))
                        if !r.is_zero() && *r <= rate.window + self.settings.clock_tolerance =>
                    {
                        Ok(())
                    }
                    (None, _) => Err("rate limited".into()),
                };
            }
        }
        if let Some(cap) = self.k.global_cap {
            let live = self
                .sessions
                .values()
                .filter(|s| self.is_live(s, now))
                .count() as u64;
            if live >= cap {
                return deny(obs, Denial::LimitReached(Limit::GlobalSessions));
            }
        }
        let mut live: Vec<(Timestamp, SessionId)> = self
            .sessions
            .values()
            .filter(|s| &s.subject == subject && self.is_live(s, now))
            .map(|s| (s.created_at, s.id))
            .collect();
        live.sort();
        let mut excess = 0;
        if let Some(cap) = self.k.subject_cap {
            excess = (live.len() + 1).saturating_sub(cap.max as usize);
            if excess > 0 && cap.on_full == CapPolicy::Reject {
                return deny(obs, Denial::LimitReached(Limit::SubjectSessions));
            }
        }
        let Observed::Created {
            session,
            token,
            evicted,
        } = obs
        else {
            return Err(format!("created (evicting {excess})"));
        };
        let absolute = now.saturating_add(self.k.absolute);
        let id = session.id;
        if self.sessions.contains_key(&id) {
            return Err(format!("a fresh session id, not {id} again"));
        }
        let fresh = MSession {
            id,
            subject: subject.clone(),
            resource: resource.clone(),
            bound: binding.is_some(),
            binding: binding.clone(),
            created_at: now,
            last_seen: now,
            expires_at: self.k.expiry(now, absolute),
            absolute_deadline: absolute,
            state: MState::Active,
            generation: 0,
            rotated_at: now,
            successor_seen: true,
            data: data.to_vec(),
            data_version: 0,
            version: 0,
            presence: Presence::Present,
            tokens: BTreeMap::new(),
        };
        check_view(&fresh, session)?;
        self.check_token_text(token, &id)?;
        let chosen: Vec<SessionId> = match evicted {
            None => live.iter().take(excess).map(|(_, id)| *id).collect(),
            Some(list) => {
                if list.len() != excess {
                    return Err(format!("{excess} evicted, not {}", list.len()));
                }
                let newest_evicted = list
                    .iter()
                    .map(|id| live.iter().find(|(_, l)| l == id).map(|(t, _)| *t))
                    .collect::<Option<Vec<_>>>()
                    .ok_or("only live sessions of the subject evicted")?
                    .into_iter()
                    .max();
                if let Some(newest) = newest_evicted
                    && live.iter().any(|(t, l)| !list.contains(l) && *t < newest)
                {
                    return Err("the oldest sessions evicted".into());
                }
                list.clone()
            }
        };
        for e in &chosen {
            if let Some(s) = self.sessions.get_mut(e) {
                s.state = MState::Revoked {
                    at: now,
                    reason: RevokeReason::Evicted,
                };
                s.version += 1;
            }
        }
        if let Some(rate) = self.k.rate {
            let tol = self.settings.clock_tolerance;
            let log = self.rate_log.entry(subject.clone()).or_default();
            log.retain(|t| t.saturating_add(rate.window).saturating_add(tol * 2) > now);
            log.push(now);
        }
        let mut fresh = fresh;
        fresh.tokens.insert(0, token.clone());
        self.texts.insert(token.clone(), (id, 0));
        self.sessions.insert(id, fresh);
        self.order.push(id);
        Ok(())
    }

    /// A token text for session `id` must look like `<prefix>_<id>_<43 chars>` and be new.
    fn check_token_text(&self, text: &str, id: &SessionId) -> Result<(), String> {
        let head = format!("{}_{}_", self.k.token_prefix, id);
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
        let k = &self.k;
        let Some(s) = self.sessions.get_mut(&id) else {
            return Ok(ReadPred::Denied(Denial::NotAuthenticated));
        };
        if s.presence == Presence::Gone {
            return Ok(ReadPred::Denied(Denial::NotAuthenticated));
        }
        #[derive(PartialEq)]
        enum Class {
            Current,
            Predecessor,
            Remembered,
            Unknown,
        }
        let c = s.generation;
        let class = if g == c {
            Class::Current
        } else if g + 1 == c {
            Class::Predecessor
        } else if g + 2 <= c && g + 1 + k.history >= c {
            Class::Remembered
        } else {
            Class::Unknown
        };
        if class == Class::Unknown {
            return Ok(ReadPred::Denied(Denial::NotAuthenticated));
        }
        if let MState::Revoked { reason, .. } = s.state {
            return Ok(ReadPred::Denied(Denial::Revoked(reason)));
        }
        if now >= s.expires_at {
            return Ok(ReadPred::Denied(Denial::Expired));
        }
        // The binding gates grants only: a rotated-out token is a theft signal from any
        // device, so reuse is detected whatever binding comes with it.
        let bound = !k.binding || !s.bound || binding.as_ref() == s.binding.as_ref();
        // The touch is written when it moved by at least the granularity — and moved at all:
        // rewriting the same instant (or going backwards, on a lagging clock) is not a touch.
        let touch_due = now > s.last_seen && now.since(s.last_seen) >= k.touch;
        let reuse = |s: &mut MSession| {
            if k.reuse {
                s.state = MState::Revoked {
                    at: now,
                    reason: RevokeReason::ReuseDetected,
                };
                s.version += 1;
                ReadPred::Denied(Denial::ReuseDetected)
            } else {
                ReadPred::Denied(Denial::NotAuthenticated)
            }
        };
        Ok(match class {
            Class::Current if !bound => ReadPred::Denied(Denial::BindingMismatch),
            Class::Current => {
                let mut wrote = false;
                if c >= 1 && !s.successor_seen {
                    s.successor_seen = true;
                    wrote = true;
                }
                let rotate = refresh || k.renewal.is_some_and(|r| now.since(s.rotated_at) >= r);
                if rotate {
                    s.generation = c + 1;
                    s.rotated_at = now;
                    s.successor_seen = false;
                    wrote = true;
                }
                if wrote || touch_due {
                    s.last_seen = now;
                    s.expires_at = k.expiry(now, s.absolute_deadline);
                    s.version += 1;
                }
                let exp = if rotate {
                    TokenExp::New(id, c + 1)
                } else {
                    TokenExp::None
                };
                ReadPred::Granted(id, exp)
            }
            Class::Predecessor => {
                let age = now.since(s.rotated_at);
                if (age < k.grace || (!s.successor_seen && age < k.orphan)) && !bound {
                    ReadPred::Denied(Denial::BindingMismatch)
                } else if age < k.grace || (!s.successor_seen && age < k.orphan) {
                    if touch_due {
                        s.last_seen = now;
                        s.expires_at = k.expiry(now, s.absolute_deadline);
                        s.version += 1;
                    }
                    ReadPred::Granted(id, TokenExp::Same(id, c))
                } else {
                    reuse(s)
                }
            }
            Class::Remembered | Class::Unknown => reuse(s),
        })
    }

    fn check_granted(&self, id: &SessionId, got: &Session) -> Result<(), String> {
        let s = self.sessions.get(id).ok_or("granted session vanished")?;
        check_view(s, got)
    }

    fn check_token(&mut self, exp: TokenExp, got: Option<&str>) -> Result<(), String> {
        match (exp, got) {
            (TokenExp::None, None) => Ok(()),
            (TokenExp::New(id, g), Some(text)) => {
                self.check_token_text(text, &id)?;
                self.learn_token(id, g, text);
                Ok(())
            }
            (TokenExp::Same(id, g), Some(text)) => {
                let known = self.sessions.get(&id).and_then(|s| s.tokens.get(&g));
                match known {
                    Some(k) if k == text => Ok(()),
                    Some(_) => Err(format!(
                        "INV-single-successor: the same generation-{g} token as before"
                    )),
                    None => {
                        self.check_token_text(text, &id)?;
                        self.learn_token(id, g, text);
                        Ok(())
                    }
                }
            }
            (exp, _) => Err(format!("token {exp:?}")),
        }
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
        let want_exp = now.saturating_add(self.k.ticket_ttl).min(s.expires_at);
        let Observed::Minted {
            ticket,
            ticket_id,
            expires_at,
            session,
            renewed,
        } = obs
        else {
            return Err(format!("a ticket for {id} until {want_exp}"));
        };
        check_view(s, session)?;
        if *expires_at != want_exp {
            return Err(format!("a ticket until {want_exp}"));
        }
        let head = format!("{}_{}_", self.k.ticket_prefix, ticket_id);
        if !ticket.starts_with(&head) || ticket.len() != head.len() + SECRET_TEXT_LEN {
            return Err(format!("a ticket of the form {head}<secret>"));
        }
        if self.ticket_texts.contains_key(ticket) || self.ticket_ids.contains_key(ticket_id) {
            return Err("a fresh ticket".into());
        }
        self.check_token(exp, renewed.as_deref())?;
        let i = self.tickets.len();
        self.tickets.push(MTicket {
            text: Some(ticket.clone()),
            id: Some(*ticket_id),
            session: id,
            expires_at: want_exp,
            presence: Presence::Present,
        });
        self.ticket_texts.insert(ticket.clone(), i);
        self.ticket_ids.insert(*ticket_id, i);
        Ok(())
    }

    fn not_live(s: Option<&MSession>) -> Denial {
        match s {
            None => Denial::NotAuthenticated,
            Some(s) if s.presence == Presence::Gone => Denial::NotAuthenticated,
            Some(MSession {
                state: MState::Revoked { reason, .. },
                ..
            }) => Denial::Revoked(*reason),
            Some(_) => Denial::Expired,
        }
    }

    fn update_data(
        &mut self,
        now: Timestamp,
        id: &SessionId,
        expected: u64,
        data: &[u8],
    ) -> Result<(), Denial> {
        if data.len() > self.k.max_data {
            return Err(Denial::InvalidInput);
        }
        let live = self.sessions.get(id).is_some_and(|s| self.is_live(s, now));
        if !live {
            return Err(Model::not_live(self.sessions.get(id)));
        }
        let s = self.sessions.get_mut(id).ok_or(Denial::NotAuthenticated)?;
        if s.data_version != expected {
            return Err(Denial::VersionConflict);
        }
        s.data = data.to_vec();
        s.data_version += 1;
        s.version += 1;
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
        let s = self.sessions.get(&sid);
        match s {
            Some(s) if self.is_live(s, now) => match obs {
                Observed::Redeemed(got) => check_view(s, got),
                _ => Err(format!("redeemed for {sid}")),
            },
            other => deny(obs, Model::not_live(other)),
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
        // A slot counts against a cap while it is unexpired and its session is live (revoking
        // a session frees its slots' capacity at once).
        let counts = |sl: &MSlot| {
            Model::slot_live(sl, now)
                && self
                    .sessions
                    .get(&sl.session)
                    .is_some_and(|s| self.is_live(s, now))
        };
        if let Some(max) = self.k.slots_per_session {
            let n = self
                .slots
                .iter()
                .filter(|sl| &sl.session == session && counts(sl))
                .count();
            if n >= max as usize {
                return Err(Denial::LimitReached(Limit::SessionSlots));
            }
        }
        if let (Some(max), Some(res)) = (self.k.slots_per_resource, resource) {
            let n = self
                .slots
                .iter()
                .filter(|sl| sl.resource.as_ref() == Some(res) && counts(sl))
                .count();
            if n >= max as usize {
                return Err(Denial::LimitReached(Limit::ResourceSlots));
            }
        }
        Ok(now.saturating_add(self.k.slot_ttl))
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
        let sl = &mut self.slots[i];
        if now >= sl.expires_at || !session_live {
            sl.presence = Presence::Gone;
            return Err(Denial::SlotLost);
        }
        sl.expires_at = now.saturating_add(self.k.slot_ttl);
        Ok(sl.expires_at)
    }

    fn reap(&mut self, now: Timestamp, limit: usize, out: &ReapOutcome) -> Result<(), String> {
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
        let resolve = |p: &mut Presence, e: Timestamp, removed: u64, (c, m): (u64, u64)| {
            if !due(*p, e) {
                return;
            }
            if drained || removed == c + m {
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
        match action {
            Action::Create { subject, .. } => {
                self.unsure_subjects.insert(subject.clone());
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
                let put = match (read_reached_end(faults), applied(Op::PutTicket)) {
                    (Some(true), Some(true)) => Some(Presence::Present),
                    (Some(true), _) | (Some(false), _) => None,
                    (None, _) => Some(Presence::Maybe),
                };
                if let (Some(presence), Some(id)) = (put, granted)
                    && let Some(s) = m.sessions.get(&id)
                {
                    self.tickets.push(MTicket {
                        text: None,
                        id: None,
                        session: id,
                        expires_at: now.saturating_add(self.k.ticket_ttl).min(s.expires_at),
                        presence,
                    });
                }
            }
            Action::RedeemTicket { ticket } => {
                if ticket.kind == TicketKind::Issued
                    && let Some(&i) = self.ticket_texts.get(&ticket.text)
                {
                    let taken = match (applied(Op::TakeTicket), last) {
                        (_, Some((Op::Load, _))) => Some(true),
                        (Some(b), _) => Some(b),
                        (None, _) => None,
                    };
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
                let presence = match applied(Op::AcquireSlot) {
                    Some(true) => Some(Presence::Present),
                    Some(false) => None,
                    None => Some(Presence::Maybe),
                };
                if let (Some(presence), Ok(exp)) = (
                    presence,
                    self.decide_acquire(now, session, resource.as_ref()),
                ) {
                    self.slots.push(MSlot {
                        id: None,
                        session: *session,
                        resource: resource.clone(),
                        expires_at: exp,
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

    /// True if the outcome of `action` may depend on something an earlier operation of the
    /// same step left unsure (a faulted call whose effect is unknown until the next
    /// [`reconcile`](Self::reconcile)). Such an outcome cannot be predicted; use
    /// [`step_unchecked`](Self::step_unchecked) for it.
    pub fn depends_on_unsure(&self, action: &Action) -> bool {
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
                subject_unsure(subject) || self.k.global_cap.is_some()
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
            Action::Revoke { id } | Action::UpdateData { id, .. } => session_unsure(id),
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
                    subject, binding, ..
                },
                Observed::Created { session, token, .. },
            ) => {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    self.sessions.entry(session.id)
                {
                    slot.insert(MSession {
                        id: session.id,
                        subject: subject.clone(),
                        resource: session.resource.clone(),
                        bound: binding.is_some(),
                        binding: binding.clone(),
                        created_at: session.created_at,
                        last_seen: session.last_seen,
                        expires_at: session.expires_at,
                        absolute_deadline: session.absolute_deadline,
                        state: MState::Active,
                        generation: 0,
                        rotated_at: session.created_at,
                        successor_seen: true,
                        data: session.data.clone(),
                        data_version: session.data_version,
                        version: 0,
                        presence: Presence::Present,
                        tokens: BTreeMap::new(),
                    });
                    self.order.push(session.id);
                    if self.k.rate.is_some() {
                        self.rate_log
                            .entry(subject.clone())
                            .or_default()
                            .push(session.created_at);
                    }
                }
                self.unsure.insert(session.id);
                self.unsure_subjects.insert(subject.clone());
                if !self.texts.contains_key(token) {
                    self.learn_token(session.id, 0, token);
                }
            }
            (
                _,
                Observed::Read {
                    session,
                    token: Some(t),
                }
                | Observed::Minted {
                    session,
                    renewed: Some(t),
                    ..
                },
            ) => {
                if !self.texts.contains_key(t) {
                    self.learn_token(session.id, session.generation, t);
                }
                self.unsure.insert(session.id);
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
                let i = self.tickets.len();
                self.tickets.push(MTicket {
                    text: Some(ticket.clone()),
                    id: Some(*ticket_id),
                    session: session.id,
                    expires_at: *expires_at,
                    presence: Presence::Present,
                });
                self.ticket_texts.insert(ticket.clone(), i);
                self.ticket_ids.insert(*ticket_id, i);
            }
            (Action::RedeemTicket { ticket }, _) if ticket.kind == TicketKind::Issued => {
                if let Some(&i) = self.ticket_texts.get(&ticket.text) {
                    self.tickets[i].presence = Presence::Gone;
                }
            }
            (Action::AcquireSlot { session, resource }, Observed::Slot { id, expires_at })
                if !self.slot_ids.contains_key(id) =>
            {
                self.slot_ids.insert(*id, self.slots.len());
                self.slots.push(MSlot {
                    id: Some(*id),
                    session: *session,
                    resource: resource.clone(),
                    expires_at: *expires_at,
                    presence: Presence::Present,
                });
            }
            (Action::HeartbeatSlot { slot }, o) => {
                if let Some(&i) = self.slot_ids.get(slot) {
                    match o {
                        Observed::Slot { expires_at, .. } => {
                            self.slots[i].expires_at = *expires_at;
                            self.slots[i].presence = Presence::Present;
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
            (Action::Reap { .. }, _) => {
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
        let mut bad = Vec::new();
        let state = match rec.state {
            SessionState::Active => MState::Active,
            SessionState::Revoked { at, reason } => MState::Revoked { at, reason },
        };
        let retired_len = s.generation.saturating_sub(1).min(self.k.history);
        let c = &rec.credential;
        macro_rules! check {
            ($name:literal, $ok:expr, $fmt:literal $(, $arg:expr)*) => {
                if !$ok {
                    bad.push(format!(concat!($name, " ", $fmt) $(, $arg)*));
                }
            };
        }
        check!("subject", rec.subject == s.subject, "{:?}", rec.subject);
        check!("resource", rec.resource == s.resource, "{:?}", rec.resource);
        check!(
            "version",
            rec.version == s.version,
            "{} (model {})",
            rec.version,
            s.version
        );
        check!(
            "created_at",
            rec.created_at == s.created_at,
            "{:?}",
            rec.created_at
        );
        check!(
            "last_seen",
            rec.last_seen == s.last_seen,
            "{:?} (model {:?})",
            rec.last_seen,
            s.last_seen
        );
        check!(
            "absolute_deadline",
            rec.absolute_deadline == s.absolute_deadline,
            "{:?}",
            rec.absolute_deadline
        );
        check!(
            "expires_at",
            rec.expires_at == s.expires_at,
            "{:?} (model {:?})",
            rec.expires_at,
            s.expires_at
        );
        check!(
            "state",
            state == s.state,
            "{:?} (model {:?})",
            state,
            s.state
        );
        check!(
            "generation",
            c.generation == s.generation,
            "{} (model {})",
            c.generation,
            s.generation
        );
        check!(
            "rotated_at",
            c.rotated_at == s.rotated_at,
            "{:?} (model {:?})",
            c.rotated_at,
            s.rotated_at
        );
        check!(
            "previous",
            c.previous.is_some() == (s.generation >= 1),
            "{:?}",
            c.previous.is_some()
        );
        check!(
            "successor_seen",
            s.generation == 0
                || c.previous
                    .as_ref()
                    .is_some_and(|p| p.successor_seen == s.successor_seen),
            "(model {})",
            s.successor_seen
        );
        check!(
            "retired",
            c.retired.len() as u64 == retired_len,
            "{} verifiers (model {})",
            c.retired.len(),
            retired_len
        );
        check!(
            "binding",
            rec.binding.is_some() == s.bound,
            "{:?}",
            rec.binding.is_some()
        );
        check!(
            "data",
            rec.data == s.data && rec.data_version == s.data_version,
            "v{} (model v{})",
            rec.data_version,
            s.data_version
        );
        check!(
            "summary",
            rec.context_summary.is_none(),
            "{:?}",
            rec.context_summary
        );
        if bad.is_empty() {
            Ok(())
        } else {
            Err(format!("stored session {}: {}", rec.id, bad.join(", ")))
        }
    }

    fn adopt(&mut self, rec: &SessionRecord) {
        let (tokens, binding) = self
            .sessions
            .get(&rec.id)
            .map(|s| (s.tokens.clone(), s.binding.clone()))
            .unwrap_or_default();
        let state = match rec.state {
            SessionState::Active => MState::Active,
            SessionState::Revoked { at, reason } => MState::Revoked { at, reason },
        };
        let s = MSession {
            id: rec.id,
            subject: rec.subject.clone(),
            resource: rec.resource.clone(),
            bound: rec.binding.is_some(),
            binding,
            created_at: rec.created_at,
            last_seen: rec.last_seen,
            expires_at: rec.expires_at,
            absolute_deadline: rec.absolute_deadline,
            state,
            generation: rec.credential.generation,
            rotated_at: rec.credential.rotated_at,
            successor_seen: rec
                .credential
                .previous
                .as_ref()
                .is_none_or(|p| p.successor_seen),
            data: rec.data.clone(),
            data_version: rec.data_version,
            version: rec.version,
            presence: Presence::Present,
            tokens,
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
            if self.k.rate.is_some() {
                self.rate_log
                    .entry(rec.subject.clone())
                    .or_default()
                    .push(rec.created_at);
            }
        }
        self.unsure.clear();
        self.unsure_subjects.clear();
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
        let native = self.settings.native_expiry;
        // Tickets.
        let mut stored: BTreeMap<TicketId, &TicketRecord> =
            tickets.iter().map(|t| (t.id, t)).collect();
        for t in &mut self.tickets {
            let Some(id) = t.id else { continue };
            match (stored.remove(&id), t.presence) {
                (Some(_), Presence::Gone) => {
                    return Err(format!("ticket {id} is back after it was taken or reaped"));
                }
                (Some(r), _) => {
                    if r.expires_at != t.expires_at || r.session != t.session {
                        return Err(format!(
                            "stored ticket {id} (session {}, until {}) differs from the model \
                             (session {}, until {})",
                            r.session, r.expires_at, t.session, t.expires_at
                        ));
                    }
                    t.presence = Presence::Present;
                }
                (None, Presence::Present) if !(native && now >= t.expires_at) => {
                    return Err(format!("ticket {id} vanished from the store"));
                }
                (None, _) => t.presence = Presence::Gone,
            }
        }
        for (i, t) in self.tickets.iter_mut().enumerate() {
            if t.id.is_some() || t.presence == Presence::Gone {
                continue;
            }
            let found = stored
                .values()
                .find(|r| r.session == t.session && r.expires_at == t.expires_at)
                .map(|r| r.id);
            match found {
                Some(id) => {
                    stored.remove(&id);
                    t.id = Some(id);
                    t.presence = Presence::Present;
                    self.ticket_ids.insert(id, i);
                }
                None if t.presence == Presence::Present && !(native && now >= t.expires_at) => {
                    return Err(format!(
                        "a ticket for {} whose reply was lost is not in the store",
                        t.session
                    ));
                }
                None => t.presence = Presence::Gone,
            }
        }
        if let Some(id) = stored.keys().next() {
            return Err(format!("store holds ticket {id} no mint made"));
        }
        // Slots.
        let mut stored: BTreeMap<SlotId, &SlotRecord> = slots.iter().map(|s| (s.id, s)).collect();
        for sl in &mut self.slots {
            let Some(id) = sl.id else { continue };
            match (stored.remove(&id), sl.presence) {
                (Some(_), Presence::Gone) => {
                    return Err(format!("slot {id} is back after it was released or reaped"));
                }
                (Some(r), _) => {
                    if r.expires_at != sl.expires_at
                        || r.session != sl.session
                        || r.resource != sl.resource
                    {
                        return Err(format!(
                            "stored slot {id} (until {}) differs from the model (until {})",
                            r.expires_at, sl.expires_at
                        ));
                    }
                    sl.presence = Presence::Present;
                }
                (None, Presence::Present) if !(native && now >= sl.expires_at) => {
                    return Err(format!("slot {id} vanished from the store"));
                }
                (None, _) => sl.presence = Presence::Gone,
            }
        }
        for (i, sl) in self.slots.iter_mut().enumerate() {
            if sl.id.is_some() || sl.presence == Presence::Gone {
                continue;
            }
            let found = stored
                .values()
                .find(|r| {
                    r.session == sl.session
                        && r.expires_at == sl.expires_at
                        && r.resource == sl.resource
                })
                .map(|r| r.id);
            match found {
                Some(id) => {
                    stored.remove(&id);
                    sl.id = Some(id);
                    sl.presence = Presence::Present;
                    self.slot_ids.insert(id, i);
                }
                None if sl.presence == Presence::Present && !(native && now >= sl.expires_at) => {
                    return Err(format!(
                        "a slot of {} whose reply was lost is not in the store",
                        sl.session
                    ));
                }
                None => sl.presence = Presence::Gone,
            }
        }
        if let Some(id) = stored.keys().next() {
            return Err(format!("store holds slot {id} no acquisition made"));
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
