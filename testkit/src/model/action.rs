//! Concrete actions, what the system answered, and running an action against a driver.

use std::fmt;
use std::time::Duration;

use leasehold::store::{ReapOutcome, Scope};
use leasehold::{
    Context, CreateOptions, Error, Limit, Resource, RevokeOutcome, RevokeReason, Session,
    SessionId, Sessions, SlotId, Store, Subject, TicketId, Timestamp,
};

/// What the test knows about a presented session token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    /// A token text the system issued (the model looks it up).
    Issued,
    /// Well-formed, carrying this session's id, with a secret the system never issued.
    Forged(SessionId),
    /// Well-formed, with an id no session has.
    UnknownId,
    /// Not a well-formed token: refused before any store call.
    Malformed,
}

/// A session token as a client presents it.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenInput {
    /// The text sent.
    pub text: String,
    /// What it is.
    pub kind: TokenKind,
}

/// What the test knows about a presented ticket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TicketKind {
    /// A ticket text the system minted.
    Issued,
    /// Well-formed with a minted ticket's id, but a wrong secret.
    Forged,
    /// Well-formed, with an id no ticket has.
    UnknownId,
    /// Not a well-formed ticket.
    Malformed,
}

/// What the test knows about a presented access token.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AccessKind {
    /// An access token text the system issued (the model looks it up: a rotation may have
    /// replaced it since).
    Issued,
    /// Well-formed, carrying this session's id, with a secret the system never issued.
    Forged(SessionId),
    /// Well-formed, with an id no session has.
    UnknownId,
    /// Not a well-formed access token (a session token presented as one is malformed too).
    Malformed,
}

/// An access token as a client presents it.
#[derive(Clone, PartialEq, Eq)]
pub struct AccessInput {
    /// The text sent.
    pub text: String,
    /// What it is.
    pub kind: AccessKind,
}

/// A ticket as a client presents it.
#[derive(Clone, PartialEq, Eq)]
pub struct TicketInput {
    /// The text sent.
    pub text: String,
    /// What it is.
    pub kind: TicketKind,
}

/// Shows the prefix, selector and the last four characters only: enough to tell tokens apart
/// in a failure report without printing whole secrets.
fn short(text: &str) -> String {
    let n = text.chars().count();
    if n <= 12 {
        return format!("{text:?}");
    }
    let head: String = text.chars().take(n.saturating_sub(43).min(48)).collect();
    let tail: String = text.chars().skip(n - 4).collect();
    format!("\"{head}…{tail}\"")
}

impl fmt::Debug for TokenInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self.kind, short(&self.text))
    }
}

impl fmt::Debug for AccessInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self.kind, short(&self.text))
    }
}

impl fmt::Debug for TicketInput {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}({})", self.kind, short(&self.text))
    }
}

/// A concrete operation on the driver.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// `create`.
    Create {
        /// Owner.
        subject: Subject,
        /// Resource tag.
        resource: Option<Resource>,
        /// Context binding.
        binding: Option<String>,
        /// Application data.
        data: Vec<u8>,
    },
    /// `validate`.
    Validate {
        /// Presented token.
        token: TokenInput,
        /// Request binding.
        binding: Option<String>,
    },
    /// `refresh`.
    Refresh {
        /// Presented token.
        token: TokenInput,
        /// Request binding.
        binding: Option<String>,
    },
    /// `revoke` by id.
    Revoke {
        /// Session id.
        id: SessionId,
    },
    /// `revoke_subject`.
    RevokeSubject {
        /// Subject.
        subject: Subject,
    },
    /// `revoke_resource`.
    RevokeResource {
        /// Resource.
        resource: Resource,
    },
    /// `list`.
    List {
        /// Subject.
        subject: Subject,
    },
    /// `update_data`.
    UpdateData {
        /// Session id.
        id: SessionId,
        /// Expected data version.
        expected: u64,
        /// New data.
        data: Vec<u8>,
    },
    /// `mint_ticket`.
    MintTicket {
        /// Presented token.
        token: TokenInput,
        /// Request binding.
        binding: Option<String>,
    },
    /// `redeem_ticket`.
    RedeemTicket {
        /// Presented ticket.
        ticket: TicketInput,
    },
    /// `acquire_slot`.
    AcquireSlot {
        /// Session id.
        session: SessionId,
        /// Resource the slot counts against.
        resource: Option<Resource>,
    },
    /// `heartbeat_slot`.
    HeartbeatSlot {
        /// Slot id.
        slot: SlotId,
    },
    /// `release_slot`.
    ReleaseSlot {
        /// Slot id.
        slot: SlotId,
    },
    /// `reap`.
    Reap {
        /// Batch limit.
        limit: usize,
    },
    /// `logout` by token.
    Logout {
        /// Presented token.
        token: TokenInput,
    },
    /// `revoke_owned`: revoke `id` for the owner `subject`.
    RevokeOwned {
        /// The owner the application authenticated.
        subject: Subject,
        /// Session id.
        id: SessionId,
    },
    /// `validate_as`: a validate whose pre-grant check expects `subject`.
    ValidateAs {
        /// Presented token.
        token: TokenInput,
        /// Request binding.
        binding: Option<String>,
        /// The subject the caller expects.
        subject: Subject,
    },
    /// `validate_access`.
    ValidateAccess {
        /// Presented access token.
        access: AccessInput,
    },
    /// `trusted_by_id().get`.
    GetById {
        /// Session id.
        id: SessionId,
    },
    /// `trusted_by_id().keepalive`.
    KeepaliveById {
        /// Session id.
        id: SessionId,
    },
    /// `trusted_by_id().mint_ticket`.
    MintTicketById {
        /// Session id.
        id: SessionId,
    },
    /// `trusted_by_id().give_back`.
    GiveBack {
        /// Session id.
        id: SessionId,
    },
    /// `check_create`.
    CheckCreate {
        /// Subject.
        subject: Subject,
    },
    /// `count`, then the whole `list_page` listing of the same scope, two per page: the count,
    /// the cursor walk and the live sessions must all agree with the model.
    Count {
        /// What to count and list.
        scope: Scope,
    },
}

impl Action {
    /// Short name of the operation.
    pub fn name(&self) -> &'static str {
        match self {
            Action::Create { .. } => "create",
            Action::Validate { .. } => "validate",
            Action::Refresh { .. } => "refresh",
            Action::Revoke { .. } => "revoke",
            Action::RevokeSubject { .. } => "revoke_subject",
            Action::RevokeResource { .. } => "revoke_resource",
            Action::List { .. } => "list",
            Action::UpdateData { .. } => "update_data",
            Action::MintTicket { .. } => "mint_ticket",
            Action::RedeemTicket { .. } => "redeem_ticket",
            Action::AcquireSlot { .. } => "acquire_slot",
            Action::HeartbeatSlot { .. } => "heartbeat_slot",
            Action::ReleaseSlot { .. } => "release_slot",
            Action::Reap { .. } => "reap",
            Action::Logout { .. } => "logout",
            Action::RevokeOwned { .. } => "revoke_owned",
            Action::ValidateAs { .. } => "validate_as",
            Action::ValidateAccess { .. } => "validate_access",
            Action::GetById { .. } => "get_by_id",
            Action::KeepaliveById { .. } => "keepalive_by_id",
            Action::MintTicketById { .. } => "mint_ticket_by_id",
            Action::GiveBack { .. } => "give_back",
            Action::CheckCreate { .. } => "check_create",
            Action::Count { scope } => match scope {
                Scope::All => "count_all",
                Scope::Subject(_) => "count_subject",
                Scope::Resource(_) => "count_resource",
            },
        }
    }
}

/// The kind of a refusal or failure: what the model predicts and compares.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Denial {
    /// `Error::Malformed`.
    Malformed,
    /// `Error::NotAuthenticated`.
    NotAuthenticated,
    /// `Error::Expired`.
    Expired,
    /// `Error::Revoked`.
    Revoked(RevokeReason),
    /// `Error::ReuseDetected`.
    ReuseDetected,
    /// `Error::BindingMismatch`.
    BindingMismatch,
    /// `Error::LimitReached`.
    LimitReached(Limit),
    /// `Error::RateLimited`.
    RateLimited(Duration),
    /// `Error::SlotLost`.
    SlotLost,
    /// `Error::AccessTokenExpired`.
    AccessTokenExpired,
    /// `Error::Refused` (an application check refused the session).
    Refused,
    /// `Error::InvalidInput`.
    InvalidInput,
    /// `Error::VersionConflict`.
    VersionConflict,
    /// `Error::CorruptRecord`.
    Corrupt,
    /// `Error::StoreUnavailable`.
    StoreUnavailable,
    /// `Error::Entropy`.
    Entropy,
    /// A variant this kit does not know.
    Other(String),
}

impl Denial {
    /// The kind of `e`.
    pub fn of(e: &Error) -> Denial {
        match e {
            Error::Malformed(_) => Denial::Malformed,
            Error::NotAuthenticated => Denial::NotAuthenticated,
            Error::Expired => Denial::Expired,
            Error::Revoked { reason } => Denial::Revoked(*reason),
            Error::ReuseDetected => Denial::ReuseDetected,
            Error::BindingMismatch => Denial::BindingMismatch,
            Error::LimitReached { limit } => Denial::LimitReached(*limit),
            Error::RateLimited { retry_after } => Denial::RateLimited(*retry_after),
            Error::SlotLost => Denial::SlotLost,
            Error::AccessTokenExpired => Denial::AccessTokenExpired,
            Error::Refused => Denial::Refused,
            Error::InvalidInput(_) => Denial::InvalidInput,
            Error::VersionConflict => Denial::VersionConflict,
            Error::CorruptRecord(_) => Denial::Corrupt,
            Error::StoreUnavailable(_) => Denial::StoreUnavailable,
            Error::Entropy(_) => Denial::Entropy,
            other => Denial::Other(other.to_string()),
        }
    }

    /// True for a store failure whose outcome is unknown (a fault, a timeout, corrupt bytes).
    pub fn is_store_failure(&self) -> bool {
        matches!(self, Denial::StoreUnavailable | Denial::Corrupt)
    }
}

/// What the system answered.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Observed {
    /// `create` succeeded.
    Created {
        /// The session.
        session: Session,
        /// Its token text.
        token: String,
        /// Sessions evicted to make room, if the caller could see them (from events).
        evicted: Option<Vec<SessionId>>,
        /// Its first access token text, if the policy issues them.
        access: Option<String>,
    },
    /// `validate`, `validate_as` or `refresh` succeeded.
    Read {
        /// The session.
        session: Session,
        /// The token handed back (always for refresh; after renewal or a predecessor for
        /// validate).
        token: Option<String>,
        /// The access token handed back with `token`, if the policy issues them.
        access: Option<String>,
    },
    /// `revoke` (by id, owned, logout, give back) answered.
    Revoked(RevokeOutcome),
    /// `revoke_subject` / `revoke_resource` / `count` answered.
    Count(u64),
    /// `list` answered.
    Listed(Vec<Session>),
    /// `count` answered, and the paged listing of the same scope, in the order the pages came.
    Enumerated {
        /// What `count` answered.
        count: u64,
        /// Every session of every page.
        listed: Vec<Session>,
    },
    /// `update_data` succeeded.
    Updated(Session),
    /// `mint_ticket` (or the by-id `mint_ticket`: no renewal) succeeded.
    Minted {
        /// The ticket text.
        ticket: String,
        /// Its id.
        ticket_id: TicketId,
        /// Its expiry.
        expires_at: Timestamp,
        /// The validated session.
        session: Session,
        /// The renewed session token, if the validation renewed it.
        renewed: Option<String>,
        /// The access token handed back with `renewed`, if the policy issues them.
        access: Option<String>,
    },
    /// `validate_access`, or a by-id `get` / `keepalive`, succeeded.
    Session(Session),
    /// `check_create` answered that a create would pass.
    Admitted,
    /// `redeem_ticket` succeeded.
    Redeemed(Session),
    /// `acquire_slot` / `heartbeat_slot` succeeded.
    Slot {
        /// Slot id.
        id: SlotId,
        /// New expiry.
        expires_at: Timestamp,
    },
    /// `release_slot` answered.
    Released(bool),
    /// `reap` answered.
    Reaped(ReapOutcome),
    /// Refused or failed.
    Denied(Denial),
}

impl Observed {
    /// True unless the operation was refused or failed.
    pub fn is_ok(&self) -> bool {
        !matches!(self, Observed::Denied(_))
    }

    /// The outcome's kind, for coverage counts: `ok`, `ok+token`, `evicting`, `true`/`false`,
    /// `partial`/`drained`, or the denial.
    pub fn kind(&self) -> String {
        match self {
            Observed::Created { evicted, .. } => match evicted {
                Some(e) if !e.is_empty() => "ok (evicting)".into(),
                _ => "ok".into(),
            },
            Observed::Read { token: Some(_), .. }
            | Observed::Minted {
                renewed: Some(_), ..
            } => "ok+token".into(),
            Observed::Revoked(o) => revoke_kind(o),
            Observed::Released(b) => b.to_string(),
            Observed::Count(n) | Observed::Enumerated { count: n, .. } => {
                format!("count {}", (*n).min(3))
            }
            Observed::Listed(v) => format!("{} listed", v.len().min(3)),
            Observed::Reaped(o) => format!("{} reaped", o.total().min(3)),
            Observed::Denied(Denial::RateLimited(_)) => "RateLimited".into(),
            Observed::Denied(d) => format!("{d:?}"),
            _ => "ok".into(),
        }
    }

    /// A one-line description without token secrets.
    pub fn summary(&self) -> String {
        let s = |x: &Session| format!("{}#g{}", x.id, x.generation);
        match self {
            Observed::Created { session, .. } => format!("created {}", s(session)),
            Observed::Read { session, token, .. } => format!(
                "ok {} {}",
                s(session),
                if token.is_some() { "+token" } else { "" }
            ),
            Observed::Revoked(o) => format!("revoke: {}", revoke_kind(o)),
            Observed::Count(n) => format!("count={n}"),
            Observed::Enumerated { count, listed } => {
                format!("count={count}, {} listed", listed.len())
            }
            Observed::Listed(v) => format!("listed {}", v.len()),
            Observed::Updated(x) => format!("updated {} dv{}", s(x), x.data_version),
            Observed::Minted { ticket_id, .. } => format!("minted {ticket_id}"),
            Observed::Redeemed(x) => format!("redeemed for {}", s(x)),
            Observed::Session(x) => format!("session {}", s(x)),
            Observed::Admitted => "admitted".into(),
            Observed::Slot { id, expires_at } => format!("slot {id} until {expires_at}"),
            Observed::Released(b) => format!("released={b}"),
            Observed::Reaped(o) => format!("reaped s{} t{} l{}", o.sessions, o.tickets, o.slots),
            Observed::Denied(d) => format!("denied {d:?}"),
        }
    }
}

fn revoke_kind(o: &RevokeOutcome) -> String {
    match o {
        RevokeOutcome::Revoked => "revoked".into(),
        RevokeOutcome::AlreadyRevoked { reason } => format!("already {reason:?}"),
        RevokeOutcome::Unknown => "unknown".into(),
    }
}

fn context(binding: &Option<String>) -> Context {
    Context {
        binding: binding.clone(),
    }
}

fn denied(e: Error) -> Observed {
    Observed::Denied(Denial::of(&e))
}

/// Runs `action` against `sessions` and returns what it answered. `Created::evicted` is left
/// `None`: the caller fills it from the event sink if it has one.
pub async fn perform<S: Store>(sessions: &Sessions<S>, action: &Action) -> Observed {
    match action {
        Action::Create {
            subject,
            resource,
            binding,
            data,
        } => {
            let opts = CreateOptions {
                resource: resource.clone(),
                context: context(binding),
                summary: None,
                data: data.clone(),
                absolute_lifetime: None,
            };
            match sessions.create(subject, opts).await {
                Ok(c) => Observed::Created {
                    session: c.session,
                    token: c.token.expose_secret().to_owned(),
                    evicted: None,
                    access: c.access.map(|a| a.expose_secret().to_owned()),
                },
                Err(e) => denied(e),
            }
        }
        Action::Validate { token, binding } => {
            match sessions.validate(&token.text, &context(binding)).await {
                Ok(v) => validated(v),
                Err(e) => denied(e),
            }
        }
        Action::Refresh { token, binding } => {
            match sessions.refresh(&token.text, &context(binding)).await {
                Ok(r) => Observed::Read {
                    session: r.session,
                    token: Some(r.token.expose_secret().to_owned()),
                    access: r.access.map(|a| a.expose_secret().to_owned()),
                },
                Err(e) => denied(e),
            }
        }
        Action::Revoke { id } => match sessions.trusted_by_id().revoke(id).await {
            Ok(o) => Observed::Revoked(o),
            Err(e) => denied(e),
        },
        Action::RevokeSubject { subject } => match sessions.revoke_subject(subject).await {
            Ok(n) => Observed::Count(n),
            Err(e) => denied(e),
        },
        Action::RevokeResource { resource } => match sessions.revoke_resource(resource).await {
            Ok(n) => Observed::Count(n),
            Err(e) => denied(e),
        },
        Action::List { subject } => match sessions.list(subject).await {
            Ok(v) => Observed::Listed(v),
            Err(e) => denied(e),
        },
        Action::UpdateData { id, expected, data } => {
            match sessions.update_data(id, *expected, data).await {
                Ok(s) => Observed::Updated(s),
                Err(e) => denied(e),
            }
        }
        Action::MintTicket { token, binding } => {
            match sessions.mint_ticket(&token.text, &context(binding)).await {
                Ok(t) => Observed::Minted {
                    ticket: t.ticket.expose_secret().to_owned(),
                    ticket_id: *t.ticket.id(),
                    expires_at: t.expires_at,
                    session: t.validated.session,
                    renewed: t.validated.renewed.map(|r| r.expose_secret().to_owned()),
                    access: t.validated.access.map(|a| a.expose_secret().to_owned()),
                },
                Err(e) => denied(e),
            }
        }
        Action::RedeemTicket { ticket } => match sessions.redeem_ticket(&ticket.text).await {
            Ok(s) => Observed::Redeemed(s),
            Err(e) => denied(e),
        },
        Action::AcquireSlot { session, resource } => {
            match sessions.acquire_slot(session, resource.as_ref()).await {
                Ok(l) => Observed::Slot {
                    id: l.id,
                    expires_at: l.expires_at,
                },
                Err(e) => denied(e),
            }
        }
        Action::HeartbeatSlot { slot } => match sessions.heartbeat_slot(slot).await {
            Ok(l) => Observed::Slot {
                id: l.id,
                expires_at: l.expires_at,
            },
            Err(e) => denied(e),
        },
        Action::ReleaseSlot { slot } => match sessions.release_slot(slot).await {
            Ok(b) => Observed::Released(b),
            Err(e) => denied(e),
        },
        Action::Reap { limit } => match sessions.reap(*limit).await {
            Ok(o) => Observed::Reaped(o),
            Err(e) => denied(e),
        },
        Action::Logout { token } => match sessions.logout(&token.text).await {
            Ok(o) => Observed::Revoked(o),
            Err(e) => denied(e),
        },
        Action::RevokeOwned { subject, id } => match sessions.revoke_owned(subject, id).await {
            Ok(o) => Observed::Revoked(o),
            Err(e) => denied(e),
        },
        Action::ValidateAs {
            token,
            binding,
            subject,
        } => match sessions
            .validate_as(&token.text, &context(binding), subject)
            .await
        {
            Ok(v) => validated(v),
            Err(e) => denied(e),
        },
        Action::ValidateAccess { access } => match sessions.validate_access(&access.text).await {
            Ok(s) => Observed::Session(s),
            Err(e) => denied(e),
        },
        Action::GetById { id } => match sessions.trusted_by_id().get(id).await {
            Ok(s) => Observed::Session(s),
            Err(e) => denied(e),
        },
        Action::KeepaliveById { id } => match sessions.trusted_by_id().keepalive(id).await {
            Ok(s) => Observed::Session(s),
            Err(e) => denied(e),
        },
        Action::MintTicketById { id } => match sessions.trusted_by_id().mint_ticket(id).await {
            Ok(m) => Observed::Minted {
                ticket: m.ticket.expose_secret().to_owned(),
                ticket_id: *m.ticket.id(),
                expires_at: m.expires_at,
                session: m.session,
                renewed: None,
                access: None,
            },
            Err(e) => denied(e),
        },
        Action::GiveBack { id } => match sessions.trusted_by_id().give_back(id).await {
            Ok(o) => Observed::Revoked(o),
            Err(e) => denied(e),
        },
        Action::CheckCreate { subject } => match sessions.check_create(subject).await {
            Ok(()) => Observed::Admitted,
            Err(e) => denied(e),
        },
        Action::Count { scope } => match enumerate(sessions, scope).await {
            Ok((count, listed)) => Observed::Enumerated { count, listed },
            Err(e) => denied(e),
        },
    }
}

/// `count(scope)`, then every page of `list_page(scope, …, 2)` following the cursor.
async fn enumerate<S: Store>(
    sessions: &Sessions<S>,
    scope: &Scope,
) -> Result<(u64, Vec<Session>), Error> {
    let count = sessions.count(scope).await?;
    let mut listed = Vec::new();
    let mut after = None;
    // Bounded: a cursor that never ends is a failure, not a hang.
    for _ in 0..100_000 {
        let page = sessions.list_page(scope, after.as_ref(), 2).await?;
        listed.extend(page.sessions);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok((count, listed)),
        }
    }
    Err(Error::CorruptRecord("a listing that never ended".into()))
}

fn validated(v: leasehold::Validated) -> Observed {
    Observed::Read {
        session: v.session,
        token: v.renewed.map(|t| t.expose_secret().to_owned()),
        access: v.access.map(|a| a.expose_secret().to_owned()),
    }
}

/// Fills `Created::evicted` from the events a create emitted: the `Evicted` events directly
/// before its `Created` event (the driver emits them together, in one call).
pub(crate) fn fill_evicted(obs: &mut Observed, events: &[leasehold::Event]) {
    use leasehold::Event;
    if let Observed::Created {
        session, evicted, ..
    } = obs
    {
        let Some(pos) = events
            .iter()
            .position(|e| matches!(e, Event::Created { id, .. } if *id == session.id))
        else {
            return;
        };
        let mut ids = Vec::new();
        for e in events[..pos].iter().rev() {
            match e {
                Event::Evicted { id } => ids.push(*id),
                _ => break,
            }
        }
        ids.reverse();
        *evicted = Some(ids);
    }
}
