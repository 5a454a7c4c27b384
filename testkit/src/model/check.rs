//! The named invariants (DESIGN §4), checked from observations and stored records alone —
//! independently of the model's predictions, so a bug in the model cannot hide a breach.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD, STANDARD_NO_PAD, URL_SAFE, URL_SAFE_NO_PAD};
use leasehold::codec;
use leasehold::record::{SessionRecord, SlotRecord, TicketRecord};
use leasehold::token::SECRET_TEXT_LEN;
use leasehold::{Policy, Resource, RevokeOutcome, Session, SessionId, SlotId, Subject, Timestamp};

use super::action::{AccessKind, Action, Denial, Observed, TokenKind};

/// A broken invariant or a divergence from the model, with where it happened.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// Step number (1-based) at which it was found.
    pub step: usize,
    /// The rule: an invariant name (`INV-…`) or `model divergence`.
    pub rule: String,
    /// What exactly.
    pub detail: String,
    /// The last few steps, oldest first.
    pub recent: Vec<String>,
}

impl Violation {
    /// A violation of `rule` (step and history are filled in by the runner).
    pub fn new(rule: impl Into<String>, detail: impl Into<String>) -> Self {
        Violation {
            step: 0,
            rule: rule.into(),
            detail: detail.into(),
            recent: Vec::new(),
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{} at step {}:", self.rule, self.step)?;
        for line in self.detail.lines() {
            writeln!(f, "  {line}")?;
        }
        if !self.recent.is_empty() {
            writeln!(f, "recent steps:")?;
            for r in &self.recent {
                writeln!(f, "  {r}")?;
            }
        }
        Ok(())
    }
}

impl std::error::Error for Violation {}

/// Splits a raw dump into the session, ticket and slot records it holds (values that decode
/// as none of them — keys, index entries — are skipped), each sorted by id so nothing
/// downstream depends on the store's iteration order.
pub fn decode_dump(dump: &[Vec<u8>]) -> (Vec<SessionRecord>, Vec<TicketRecord>, Vec<SlotRecord>) {
    let (mut s, mut t, mut l) = (Vec::new(), Vec::new(), Vec::new());
    for v in dump {
        if let Ok(r) = codec::decode_session(v) {
            s.push(r);
        } else if let Ok(r) = codec::decode_ticket(v) {
            t.push(r);
        } else if let Ok(r) = codec::decode_slot(v) {
            l.push(r);
        }
    }
    s.sort_by_key(|r: &SessionRecord| r.id);
    t.sort_by_key(|r: &TicketRecord| r.id);
    l.sort_by_key(|r: &SlotRecord| r.id);
    (s, t, l)
}

/// Every encoding of every issued secret, indexed for a fast scan of raw dumps.
#[derive(Clone, Debug)]
struct Needles {
    /// One bit per possible first two bytes of a needle.
    first_two: Vec<u64>,
    by_prefix: BTreeMap<[u8; 8], Vec<usize>>,
    list: Vec<(Vec<u8>, String)>,
    seen: BTreeSet<String>,
}

impl Default for Needles {
    fn default() -> Self {
        Needles {
            first_two: vec![0; 1024],
            by_prefix: BTreeMap::new(),
            list: Vec::new(),
            seen: BTreeSet::new(),
        }
    }
}

fn hex(bytes: &[u8], upper: bool) -> Vec<u8> {
    let digits: &[u8; 16] = if upper {
        b"0123456789ABCDEF"
    } else {
        b"0123456789abcdef"
    };
    bytes
        .iter()
        .flat_map(|b| [digits[(b >> 4) as usize], digits[(b & 15) as usize]])
        .collect()
}

impl Needles {
    /// Adds the secret part of `token_text` (raw bytes, hex, base64 and base64url forms).
    fn add(&mut self, token_text: &str, label: &str) {
        if token_text.len() < SECRET_TEXT_LEN {
            return;
        }
        let secret = &token_text[token_text.len() - SECRET_TEXT_LEN..];
        if !self.seen.insert(secret.to_owned()) {
            return;
        }
        let mut forms = vec![secret.as_bytes().to_vec()];
        if let Ok(raw) = URL_SAFE_NO_PAD.decode(secret) {
            forms.push(hex(&raw, false));
            forms.push(hex(&raw, true));
            forms.push(STANDARD.encode(&raw).into_bytes());
            forms.push(STANDARD_NO_PAD.encode(&raw).into_bytes());
            forms.push(URL_SAFE.encode(&raw).into_bytes());
            forms.push(raw);
        }
        for form in forms {
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&form[..8]);
            let two = usize::from(u16::from_le_bytes([form[0], form[1]]));
            self.first_two[two / 64] |= 1 << (two % 64);
            self.by_prefix
                .entry(prefix)
                .or_default()
                .push(self.list.len());
            self.list.push((form, label.to_owned()));
        }
    }

    /// The label of the first needle found in `hay`.
    fn find(&self, hay: &[u8]) -> Option<&str> {
        if hay.len() < 8 {
            return None;
        }
        for i in 0..=hay.len() - 8 {
            let two = usize::from(u16::from_le_bytes([hay[i], hay[i + 1]]));
            if self.first_two[two / 64] & (1 << (two % 64)) == 0 {
                continue;
            }
            let mut prefix = [0u8; 8];
            prefix.copy_from_slice(&hay[i..i + 8]);
            if let Some(ix) = self.by_prefix.get(&prefix) {
                for &n in ix {
                    let (needle, label) = &self.list[n];
                    if hay[i..].starts_with(needle) {
                        return Some(label);
                    }
                }
            }
        }
        None
    }
}

/// Tracks what was observed and checks the invariants. Deterministic (ordered maps only).
#[derive(Clone, Debug)]
pub struct Checker {
    absolute: Duration,
    subject_max: Option<u32>,
    global_max: Option<u64>,
    slots_per_session: Option<u32>,
    slots_per_resource: Option<u32>,
    /// The token text handed out for each (session, generation).
    successors: BTreeMap<(SessionId, u64), String>,
    /// Successful redemptions per ticket text.
    redeemed: BTreeMap<String, u32>,
    /// The session of each slot seen handed out.
    slots: BTreeMap<SlotId, SessionId>,
    /// Sessions that ended for good (a caller was told so, or the store holds its tombstone),
    /// with their tombstone once seen: a tombstone is final (only the reaper removes it).
    dead: BTreeMap<SessionId, Option<SessionRecord>>,
    /// The (session, generation) each access token text was handed out with.
    access: BTreeMap<String, (SessionId, u64)>,
    /// Every stored session record as of the last [`records`](Checker::records) audit: what
    /// the next operation started from.
    before: BTreeMap<SessionId, SessionRecord>,
    needles: Needles,
}

/// The session id a `<prefix>_<id>_<secret>` text selects. Split from the left: a prefix is
/// `[a-z0-9]` and an id hex, but a base64url secret may itself contain `_`.
fn id_of_token(text: &str) -> Option<SessionId> {
    text.split('_').nth(1).and_then(SessionId::parse)
}

/// The session an action names, when a denial of it can only be about that session's ending
/// (a redemption's `Expired` may be the ticket's own).
fn session_of(action: &Action) -> Option<SessionId> {
    match action {
        Action::Validate { token, .. }
        | Action::Refresh { token, .. }
        | Action::MintTicket { token, .. } => match token.kind {
            TokenKind::Issued => id_of_token(&token.text),
            _ => None,
        },
        Action::Logout { token } | Action::ValidateAs { token, .. } => match token.kind {
            TokenKind::Issued => id_of_token(&token.text),
            _ => None,
        },
        Action::ValidateAccess { access } => match access.kind {
            AccessKind::Issued => id_of_token(&access.text),
            _ => None,
        },
        Action::Revoke { id }
        | Action::UpdateData { id, .. }
        | Action::RevokeOwned { id, .. }
        | Action::GetById { id }
        | Action::KeepaliveById { id }
        | Action::MintTicketById { id }
        | Action::GiveBack { id } => Some(*id),
        Action::AcquireSlot { session, .. } => Some(*session),
        _ => None,
    }
}

impl Checker {
    /// A checker for runs with `policy`.
    pub fn new(policy: &Policy) -> Self {
        Checker {
            absolute: policy.absolute_lifetime(),
            subject_max: policy.subject_cap().map(|c| c.max),
            global_max: policy.global_cap().map(|c| c.max),
            slots_per_session: policy.max_slots_per_session(),
            slots_per_resource: policy.max_slots_per_resource(),
            successors: BTreeMap::new(),
            redeemed: BTreeMap::new(),
            slots: BTreeMap::new(),
            dead: BTreeMap::new(),
            access: BTreeMap::new(),
            before: BTreeMap::new(),
            needles: Needles::default(),
        }
    }

    /// Number of secrets the hash-at-rest audit looks for.
    pub fn secrets(&self) -> usize {
        self.needles.seen.len()
    }

    fn alive(&self, now: Timestamp, id: &SessionId, what: &str) -> Result<(), Violation> {
        match self.dead.get(id) {
            Some(_) => Err(Violation::new(
                "INV-store-time",
                format!("session {id} ended for good, and {what} at {now}"),
            )),
            None => Ok(()),
        }
    }

    fn granted(&self, now: Timestamp, s: &Session) -> Result<(), Violation> {
        self.alive(now, &s.id, "is valid again")?;
        if s.absolute_deadline != s.created_at.saturating_add(self.absolute)
            || s.expires_at > s.absolute_deadline
            || now >= s.absolute_deadline
        {
            return Err(Violation::new(
                "INV-absolute-bound",
                format!(
                    "session {} valid at {now}: created {}, expires {}, absolute deadline {}",
                    s.id, s.created_at, s.expires_at, s.absolute_deadline
                ),
            ));
        }
        if now >= s.expires_at {
            return Err(Violation::new(
                "INV-no-resurrection",
                format!(
                    "session {} granted at {now}, past its deadline {}",
                    s.id, s.expires_at
                ),
            ));
        }
        Ok(())
    }

    fn successor(&mut self, id: SessionId, generation: u64, text: &str) -> Result<(), Violation> {
        self.needles
            .add(text, &format!("token of {id} generation {generation}"));
        match self.successors.get(&(id, generation)) {
            Some(known) if known != text => Err(Violation::new(
                "INV-single-successor",
                format!("two different tokens were handed out for {id} generation {generation}"),
            )),
            Some(_) => Ok(()),
            None => {
                self.successors.insert((id, generation), text.to_owned());
                Ok(())
            }
        }
    }

    /// Checks one operation's outcome at its caller's clock `now`, before the model sees it.
    pub fn outcome(
        &mut self,
        now: Timestamp,
        action: &Action,
        obs: &Observed,
    ) -> Result<(), Violation> {
        self.outcomes(&[(now, action, obs)])
    }

    /// Checks the outcomes of operations that ran concurrently (each at its caller's clock):
    /// grants are checked against what was known dead *before* any of them, then the endings
    /// they were told of are recorded. INV-store-time: once any caller was told a session
    /// expired or was revoked, nothing grants it again — on any node, at any clock.
    pub fn outcomes(&mut self, ops: &[(Timestamp, &Action, &Observed)]) -> Result<(), Violation> {
        // Against the generations handed out before any of them (concurrent ones may come
        // later in a serial order).
        for (_, action, obs) in ops {
            self.access_current(action, obs)?;
        }
        for (now, action, obs) in ops {
            self.check_one(*now, action, obs)?;
        }
        for (_, action, obs) in ops {
            let told = matches!(
                obs,
                Observed::Denied(Denial::Expired | Denial::Revoked(_) | Denial::ReuseDetected)
                    | Observed::Revoked(
                        RevokeOutcome::Revoked | RevokeOutcome::AlreadyRevoked { .. }
                    )
            );
            if let (true, Some(id)) = (told, session_of(action)) {
                self.dead.entry(id).or_insert(None);
            }
        }
        Ok(())
    }

    /// An access token validates only as its session's current one: the session it names, at
    /// the generation it was handed out with, and no later generation handed out since (a
    /// rotation replaces it).
    fn access_current(&self, action: &Action, obs: &Observed) -> Result<(), Violation> {
        let (Action::ValidateAccess { access }, Observed::Session(s)) = (action, obs) else {
            return Ok(());
        };
        let Some(&(id, g)) = self.access.get(&access.text) else {
            return Ok(());
        };
        let newest = self
            .successors
            .range((id, 0)..=(id, u64::MAX))
            .next_back()
            .map_or(0, |((_, n), _)| *n);
        if s.id != id || s.generation != g || newest > g {
            return Err(Violation::new(
                "INV-authority",
                format!(
                    "the access token of {id} generation {g} validated as {} generation {} \
                     (generation {newest} handed out since)",
                    s.id, s.generation
                ),
            ));
        }
        Ok(())
    }

    fn access_issued(&mut self, id: SessionId, generation: u64, text: &str) {
        self.needles.add(
            text,
            &format!("access token of {id} generation {generation}"),
        );
        self.access.insert(text.to_owned(), (id, generation));
    }

    fn check_one(
        &mut self,
        now: Timestamp,
        action: &Action,
        obs: &Observed,
    ) -> Result<(), Violation> {
        match obs {
            Observed::Created {
                session,
                token,
                access,
                ..
            } => {
                self.granted(now, session)?;
                if session.generation != 0 {
                    return Err(Violation::new(
                        "model divergence",
                        "a new session starts at generation 0",
                    ));
                }
                self.successor(session.id, 0, token)?;
                if let Some(a) = access {
                    self.access_issued(session.id, 0, a);
                }
            }
            Observed::Read {
                session,
                token,
                access,
            } => {
                self.granted(now, session)?;
                if let Some(t) = token {
                    self.successor(session.id, session.generation, t)?;
                }
                if let Some(a) = access {
                    self.access_issued(session.id, session.generation, a);
                }
            }
            Observed::Updated(s) | Observed::Redeemed(s) | Observed::Session(s) => {
                self.granted(now, s)?;
            }
            Observed::Listed(v) => {
                for s in v {
                    self.granted(now, s)?;
                }
            }
            Observed::Minted {
                ticket,
                session,
                renewed,
                ticket_id,
                access,
                ..
            } => {
                self.granted(now, session)?;
                if let Some(t) = renewed {
                    self.successor(session.id, session.generation, t)?;
                }
                if let Some(a) = access {
                    self.access_issued(session.id, session.generation, a);
                }
                self.needles.add(ticket, &format!("ticket {ticket_id}"));
            }
            Observed::Slot { id, .. } => {
                if let Action::AcquireSlot { session, .. } = action {
                    self.slots.insert(*id, *session);
                }
                if let Some(session) = self.slots.get(id) {
                    self.alive(now, session, &format!("slot {id} was granted on it"))?;
                }
            }
            _ => {}
        }
        if let (Action::RedeemTicket { ticket }, Observed::Redeemed(_)) = (action, obs) {
            let n = self.redeemed.entry(ticket.text.clone()).or_insert(0);
            *n += 1;
            if *n > 1 {
                return Err(Violation::new(
                    "INV-one-shot",
                    format!("a ticket was redeemed {n} times"),
                ));
            }
        }
        Ok(())
    }

    /// Checks what one operation (`last`, run alone since the previous
    /// [`records`](Self::records) audit) did to the record of the session it names, given the
    /// stored `records` now (call before `records`, which takes the new snapshot):
    /// - a check that refused (`validate_as` → `Refused`) wrote nothing;
    /// - a logout never rotates or touches: the credential and the last activity are as they
    ///   were (only the tombstone is written);
    /// - an access-token validation is a pure read: the record is as it was, or became the
    ///   `Expired` tombstone of an ending it observed;
    /// - a by-id keepalive never rotates (it may only drop a sealed successor whose windows
    ///   closed, as every write does), and never revives (with [`records`](Self::records): a
    ///   tombstone never changes).
    pub fn transition(
        &self,
        last: Option<(&Action, &Observed)>,
        records: &[SessionRecord],
    ) -> Result<(), Violation> {
        let Some((action, obs)) = last else {
            return Ok(());
        };
        let Some(id) = (match action {
            Action::ValidateAs { .. }
            | Action::Logout { .. }
            | Action::ValidateAccess { .. }
            | Action::KeepaliveById { .. } => session_of(action),
            _ => None,
        }) else {
            return Ok(());
        };
        let (Some(before), Some(after)) =
            (self.before.get(&id), records.iter().find(|r| r.id == id))
        else {
            return Ok(());
        };
        let kept = before.credential == after.credential && before.last_seen == after.last_seen;
        let broken = match action {
            Action::ValidateAs { .. } if *obs == Observed::Denied(Denial::Refused) => {
                (before != after).then_some("a refused check wrote to the session")
            }
            Action::Logout { .. } => (!kept).then_some("a logout rotated or touched the session"),
            Action::ValidateAccess { .. } => {
                let ended = matches!(
                    after.state,
                    leasehold::SessionState::Revoked {
                        reason: leasehold::RevokeReason::Expired,
                        ..
                    }
                ) && !before.is_tombstone();
                (before != after && !(kept && ended))
                    .then_some("an access-token validation wrote more than an observed ending")
            }
            Action::KeepaliveById { .. } => (!same_secrets(&before.credential, &after.credential))
                .then_some("a keepalive changed the session's credential"),
            _ => None,
        };
        match broken {
            Some(what) => Err(Violation::new(
                "INV-authority",
                format!(
                    "{what}: {} v{} ({:?}, generation {}, last seen {}) became v{} ({:?}, \
                     generation {}, last seen {})",
                    id,
                    before.version,
                    before.state,
                    before.credential.generation,
                    before.last_seen,
                    after.version,
                    after.state,
                    after.credential.generation,
                    after.last_seen
                ),
            )),
            None => Ok(()),
        }
    }

    /// Checks every stored session record (every clock at once: none is assumed). A session
    /// that ended for good is a tombstone or gone; a tombstone never changes. Keeps them as the
    /// snapshot the next [`transition`](Self::transition) starts from.
    pub fn records(&mut self, records: &[SessionRecord]) -> Result<(), Violation> {
        self.before = records.iter().map(|r| (r.id, r.clone())).collect();
        for r in records {
            if r.absolute_deadline != r.created_at.saturating_add(self.absolute)
                || r.expires_at > r.absolute_deadline
            {
                return Err(Violation::new(
                    "INV-absolute-bound",
                    format!(
                        "stored session {}: created {}, expires {}, absolute deadline {}",
                        r.id, r.created_at, r.expires_at, r.absolute_deadline
                    ),
                ));
            }
            match (self.dead.get(&r.id), r.is_tombstone()) {
                (None, false) => {}
                (Some(_), false) => {
                    return Err(Violation::new(
                        "INV-store-time",
                        format!(
                            "session {} ended for good and its record is active ({:?}, expires {})",
                            r.id, r.state, r.expires_at
                        ),
                    ));
                }
                (Some(Some(t)), true) if t != r => {
                    return Err(Violation::new(
                        "INV-no-resurrection",
                        format!(
                            "the tombstone of {} ({:?}, v{}) was replaced by {:?}, v{}",
                            r.id, t.state, t.version, r.state, r.version
                        ),
                    ));
                }
                (_, true) => {
                    self.dead.insert(r.id, Some(r.clone()));
                }
            }
        }
        Ok(())
    }

    /// INV-caps at the clock `now` (one caller's clock, right after its insert): the subject
    /// cap holds at every clock at once — a capped insert writes down the endings it counts,
    /// so at most the cap of a subject's sessions are not tombstones; the global cap and slot
    /// caps hold at `now` (a store may leave the endings its global count finds unwritten, and
    /// slot leases self-expire by each caller's clock on a store without one).
    pub fn caps(
        &self,
        records: &[SessionRecord],
        slots: Option<&[SlotRecord]>,
        now: Timestamp,
    ) -> Result<(), Violation> {
        self.session_caps(records, Some(now))?;
        match slots {
            Some(slots) => self.slot_caps(records, slots, None, now),
            None => Ok(()),
        }
    }

    /// INV-caps for sessions (see [`caps`](Self::caps)); the global cap only if `now` is given.
    pub fn session_caps(
        &self,
        records: &[SessionRecord],
        now: Option<Timestamp>,
    ) -> Result<(), Violation> {
        let mut per_subject: BTreeMap<&Subject, u32> = BTreeMap::new();
        for r in records.iter().filter(|r| !r.is_tombstone()) {
            *per_subject.entry(&r.subject).or_default() += 1;
        }
        if let Some(max) = self.subject_max
            && let Some((s, n)) = per_subject.iter().find(|(_, n)| **n > max)
        {
            return Err(Violation::new(
                "INV-caps",
                format!("{s} holds {n} sessions that are not tombstones, cap {max}"),
            ));
        }
        let total = now.map_or(0, |now| records.iter().filter(|r| r.is_live(now)).count());
        if let Some(max) = self.global_max
            && total as u64 > max
        {
            return Err(Violation::new(
                "INV-caps",
                format!("{total} live sessions, global cap {max}"),
            ));
        }
        Ok(())
    }

    /// INV-caps for slots at the clock `now`: live slots per session and per resource (a slot
    /// is live while unexpired and held by a live session); only of `only` (a session and a
    /// resource), if given. At one clock only: on a store without a clock a slot lease
    /// self-expires by each caller's clock, which the contract leaves to them.
    pub fn slot_caps(
        &self,
        records: &[SessionRecord],
        slots: &[SlotRecord],
        only: Option<(SessionId, Option<&Resource>)>,
        now: Timestamp,
    ) -> Result<(), Violation> {
        let mut per_session: BTreeMap<SessionId, u32> = BTreeMap::new();
        let mut per_resource: BTreeMap<&Resource, u32> = BTreeMap::new();
        let live_sessions: BTreeSet<SessionId> = records
            .iter()
            .filter(|r| r.is_live(now))
            .map(|r| r.id)
            .collect();
        for s in slots
            .iter()
            .filter(|s| s.is_live(now) && live_sessions.contains(&s.session))
        {
            if only.is_none_or(|(id, _)| id == s.session) {
                *per_session.entry(s.session).or_default() += 1;
            }
            if let Some(r) = &s.resource
                && only.is_none_or(|(_, res)| res == Some(r))
            {
                *per_resource.entry(r).or_default() += 1;
            }
        }
        if let Some(max) = self.slots_per_session
            && let Some((s, n)) = per_session.iter().find(|(_, n)| **n > max)
        {
            return Err(Violation::new(
                "INV-caps",
                format!("session {s} holds {n} live slots, cap {max}"),
            ));
        }
        if let Some(max) = self.slots_per_resource
            && let Some((r, n)) = per_resource.iter().find(|(_, n)| **n > max)
        {
            return Err(Violation::new(
                "INV-caps",
                format!("resource {r} holds {n} live slots, cap {max}"),
            ));
        }
        Ok(())
    }

    /// INV-revoke-all: right after revoking a subject or a resource, every session of it is a
    /// tombstone (a revocation never depends on a clock).
    pub fn revoked_all(
        &self,
        records: &[SessionRecord],
        subject: Option<&Subject>,
        resource: Option<&Resource>,
    ) -> Result<(), Violation> {
        let hit = records.iter().find(|r| {
            !r.is_tombstone()
                && (subject.is_some_and(|s| &r.subject == s)
                    || resource.is_some_and(|x| r.resource.as_ref() == Some(x)))
        });
        match hit {
            Some(r) => Err(Violation::new(
                "INV-revoke-all",
                format!(
                    "session {} is not a tombstone after its group was revoked",
                    r.id
                ),
            )),
            None => Ok(()),
        }
    }

    /// INV-bounded-storage: after a reap that removed everything due, nothing stored is due.
    pub fn bounded(
        &self,
        sessions: &[SessionRecord],
        tickets: &[TicketRecord],
        slots: &[SlotRecord],
        now: Timestamp,
    ) -> Result<(), Violation> {
        let due = sessions
            .iter()
            .map(|r| (r.expires_at, format!("session {}", r.id)))
            .chain(
                tickets
                    .iter()
                    .map(|t| (t.expires_at, format!("ticket {}", t.id))),
            )
            .chain(
                slots
                    .iter()
                    .map(|s| (s.expires_at, format!("slot {}", s.id))),
            )
            .find(|(e, _)| *e <= now);
        match due {
            Some((e, what)) => Err(Violation::new(
                "INV-bounded-storage",
                format!("{what} (due {e}) is still stored after reaping everything due at {now}"),
            )),
            None => Ok(()),
        }
    }

    /// INV-hash-at-rest: no issued secret (raw, hex, base64 or base64url) in a raw dump.
    pub fn hash_at_rest(&self, dump: &[Vec<u8>]) -> Result<(), Violation> {
        let mut sorted: Vec<&Vec<u8>> = dump.iter().collect();
        sorted.sort();
        for v in sorted {
            if let Some(label) = self.needles.find(v) {
                return Err(Violation::new(
                    "INV-hash-at-rest",
                    format!("the secret of {label} is stored in the clear"),
                ));
            }
        }
        Ok(())
    }
}

/// The same secrets: every verifier, the generation and the access grant — all of a credential
/// but the sealed successor, which any write drops once its windows have closed.
fn same_secrets(a: &leasehold::record::Credential, b: &leasehold::record::Credential) -> bool {
    let pred = |c: &leasehold::record::Credential| {
        c.previous.as_ref().map(|p| (p.verifier, p.successor_seen))
    };
    a.generation == b.generation
        && a.current == b.current
        && a.rotated_at == b.rotated_at
        && a.retired == b.retired
        && a.access == b.access
        && pred(a) == pred(b)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn needles_find_every_encoding() {
        let secret = "Zm9vYmFyYmF6cXV4MTIzNDU2Nzg5MDEyMzQ1Njc4OTA";
        let token = format!("lh1_{}_{secret}", "ab".repeat(18));
        let mut n = Needles::default();
        n.add(&token, "t");
        let raw = URL_SAFE_NO_PAD.decode(secret).unwrap();
        for form in [
            secret.as_bytes().to_vec(),
            raw.clone(),
            hex(&raw, false),
            STANDARD.encode(&raw).into_bytes(),
        ] {
            let mut hay = b"xxxxxxxxxxx".to_vec();
            hay.extend(&form);
            hay.extend(b"yyyy");
            assert_eq!(n.find(&hay), Some("t"));
        }
        assert_eq!(n.find(b"nothing to see here, really nothing at all"), None);
        assert_eq!(id_of_token(&token), SessionId::parse(&"ab".repeat(18)));
        // A secret with `_` in it (base64url) still names its session.
        let underscored = format!(
            "lh1_{}_Zm9v_mFyYmF6cXV4MTIzNDU2Nzg5MDEyMzQ1Njc4OT_",
            "cd".repeat(18)
        );
        assert_eq!(
            id_of_token(&underscored),
            SessionId::parse(&"cd".repeat(18))
        );
    }
}
