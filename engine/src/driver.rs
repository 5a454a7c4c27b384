//! The driver: feeds engine decisions from a [`Store`] and writes back what they decide.
//!
//! Thin by design: read the clock once, load, decide, compare-and-swap; on a lost race, reload
//! and decide again (bounded). Any store error fails closed: it is returned, never a session.

use std::sync::Arc;

use crate::decide::mutate::RevokeOutcome;
use crate::decide::read::ReadMode;
use crate::decide::{self, Context, CreateOptions, Decision, Session};
use crate::entropy::{Entropy, OsEntropy};
use crate::error::{Error, Limit};
use crate::event::{Event, EventSink, TracingSink};
use crate::ids::{Kind, Resource, SessionId, SlotId, Subject};
use crate::policy::{Policy, PolicyError};
use crate::record::SessionRecord;
use crate::store::{
    HeartbeatOutcome, InsertOutcome, ReapOutcome, Scope, SlotOutcome, Store, StoreError,
    TakeOutcome,
};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{self, AccessToken, SessionToken, TicketToken};

/// A newly created session and the token to hand to the client.
#[derive(Debug)]
pub struct Created {
    /// The session.
    pub session: Session,
    /// Its token (the only time the secret exists outside the client).
    pub token: SessionToken,
    /// Its first access token, if the policy issues them (`access_ttl`).
    pub access: Option<AccessToken>,
}

/// A valid session. If `renewed` is set, the client must switch to that token.
#[derive(Debug)]
pub struct Validated {
    /// The session.
    pub session: Session,
    /// The token to hand back (after automatic renewal, or when a predecessor was presented).
    pub renewed: Option<SessionToken>,
    /// With `renewed`, its access token (if the policy issues them): the old one is replaced.
    pub access: Option<AccessToken>,
}

/// A refreshed session and its (new, or idempotently re-issued) token.
#[derive(Debug)]
pub struct Refreshed {
    /// The session.
    pub session: Session,
    /// The token the client must use from now on.
    pub token: SessionToken,
    /// Its access token, if the policy issues them (the previous one no longer validates).
    pub access: Option<AccessToken>,
}

/// A minted ticket, with the validation that authorised it.
#[derive(Debug)]
pub struct Ticketed {
    /// The one-shot ticket token.
    pub ticket: TicketToken,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The session validation (which may have renewed the session token).
    pub validated: Validated,
}

/// A held slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SlotLease {
    /// The slot id (heartbeat and release it with this).
    pub id: SlotId,
    /// It self-expires here unless heartbeated.
    pub expires_at: Timestamp,
}

/// One page of [`Sessions::list_page`]: the live sessions among one page of the store's
/// listing, and the cursor of the next page.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SessionPage {
    /// Live sessions, in ascending id order (a page may hold fewer than
    /// asked, even none, when the store's page held ended sessions: follow `next`).
    pub sessions: Vec<Session>,
    /// Pass it as `after` for the next page; `None` when the listing is complete.
    pub next: Option<SessionId>,
}

/// A ticket minted by id ([`TrustedById::mint_ticket`]).
#[derive(Debug)]
pub struct Minted {
    /// The one-shot ticket token.
    pub ticket: TicketToken,
    /// When it expires.
    pub expires_at: Timestamp,
    /// The session it was minted for.
    pub session: Session,
}

/// What [`Sessions::run_keeping`] hands back.
struct Ran<T> {
    outcome: T,
    /// The committed write, else the record decided on (boxed: see [`Loaded`](crate::store::Loaded)).
    record: Option<Box<SessionRecord>>,
    /// The time the decision was judged at.
    judged: Timestamp,
}

/// Sessions over a store: the API applications use.
///
/// Everything here is reached by a secret (a session, access or ticket token) or names a
/// whole group the application has authorised (a subject, a resource, a scope). Operations
/// on a session named only by its public id are on [`trusted_by_id`](Self::trusted_by_id).
///
/// A driver issues and accepts sessions of one kind (its policy's token prefix): every
/// operation on one session refuses another kind's, so one kind's policy is never applied to
/// another's session. Group operations (`revoke_subject`, `revoke_resource`, `list`,
/// `list_page`, `count`) span every kind in the store: an account deletion ends them all.
pub struct Sessions<S> {
    store: S,
    policy: Policy,
    kind: Kind,
    clock: Arc<dyn Clock>,
    entropy: Arc<dyn Entropy>,
    events: Option<Arc<dyn EventSink>>,
}

impl<S: Store> Sessions<S> {
    /// Sessions over `store` with `policy`, the system clock, the OS RNG, and events to
    /// `tracing` only.
    ///
    /// Refuses a policy that asks for something this store cannot guarantee
    /// ([`Policy::check_against`]: e.g. an exact global cap on a sharded store), so a policy
    /// never silently means less than it says.
    pub fn new(store: S, policy: Policy) -> Result<Self, PolicyError> {
        policy.check_against(&store.capabilities())?;
        let kind = policy.kind()?;
        Ok(Sessions {
            store,
            policy,
            kind,
            clock: Arc::new(SystemClock),
            entropy: Arc::new(OsEntropy),
            events: None,
        })
    }

    /// Uses `clock` for `now` (tests: a [`ManualClock`](crate::ManualClock)).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.clock = Arc::new(clock);
        self
    }

    /// Uses `entropy` for ids and secrets (tests: a [`SeededEntropy`](crate::SeededEntropy)).
    pub fn with_entropy(mut self, entropy: impl Entropy) -> Self {
        self.entropy = Arc::new(entropy);
        self
    }

    /// Also sends every event to `sink` (they always go to `tracing`).
    pub fn with_events(mut self, sink: impl EventSink) -> Self {
        self.events = Some(Arc::new(sink));
        self
    }

    /// The store.
    pub fn store(&self) -> &S {
        &self.store
    }

    /// The policy.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The kind of the sessions this driver issues and accepts (its token prefix).
    pub fn kind(&self) -> &Kind {
        &self.kind
    }

    /// The driver's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
    }

    /// Operations on a session named by its public id, for **trusted server-side code only**:
    /// code that has authenticated the caller by its own means and decided that this caller
    /// may act on this session (a PTY lease registry, an admin console, a logout fan-out).
    /// Never pass an id a client supplied: ids are not secrets. Same events, clock and
    /// entropy as the rest of the driver.
    pub fn trusted_by_id(&self) -> TrustedById<'_, S> {
        TrustedById { sessions: self }
    }

    /// The access token for a session token this driver just answered.
    fn access_for(&self, record: &SessionRecord, token: &SessionToken) -> Option<AccessToken> {
        decide::access::token_for(record, token, &self.policy)
    }

    fn emit(&self, events: &[Event]) {
        for e in events {
            TracingSink.emit(e);
            if let Some(sink) = &self.events {
                sink.emit(e);
            }
        }
    }

    /// Load, decide, compare-and-swap; on a lost race reload and decide again.
    ///
    /// Each round decides at the judged time — the later of `now` and the store's clock from
    /// that load — and the store judges the write at the later of that and its clock again.
    async fn run<T>(
        &self,
        id: &SessionId,
        now: Timestamp,
        decide: impl FnMut(Option<&SessionRecord>, Timestamp) -> Decision<T>,
    ) -> Result<T, Error> {
        self.run_keeping(id, now, decide).await.map(|r| r.outcome)
    }

    /// [`run`](Self::run), also handing back the record the answer is about — the committed
    /// write, else the record the decision was made on — without copying it.
    async fn run_keeping<T>(
        &self,
        id: &SessionId,
        now: Timestamp,
        mut decide: impl FnMut(Option<&SessionRecord>, Timestamp) -> Decision<T>,
    ) -> Result<Ran<T>, Error> {
        for _ in 0..=self.policy.max_cas_retries {
            let loaded = self.store.load_session(id).await?;
            let at = loaded.judged_at(now);
            let d = decide(loaded.record.as_deref(), at);
            match (&d.write, &loaded.record) {
                (Some(write), Some(old)) => {
                    match self.store.compare_and_swap(write, old.version, at).await {
                        Ok(()) => {}
                        Err(StoreError::Conflict | StoreError::NotFound) => continue,
                        Err(e) => return Err(e.into()),
                    }
                }
                // An outcome is only given once its write committed: a write with nothing
                // loaded to swap against can never commit, so it is never answered (fail closed).
                (Some(_), None) => {
                    return Err(Error::CorruptRecord(
                        "a decision wrote to a record that was not loaded".into(),
                    ));
                }
                (None, _) => {}
            }
            self.emit(&d.events);
            return Ok(Ran {
                outcome: d.outcome?,
                record: d.write.map(Box::new).or(loaded.record),
                judged: at,
            });
        }
        Err(Error::VersionConflict)
    }

    /// Issues a session for `subject`, enforcing the per-subject cap, the creation rate and the
    /// global cap in the store's atomic insert.
    pub async fn create(&self, subject: &Subject, opts: CreateOptions) -> Result<Created, Error> {
        let now = self.now();
        let (record, token) =
            decide::create::new_session(subject, &opts, now, &self.policy, &*self.entropy)?;
        let limits = decide::create::limits(&self.policy);
        match self.store.insert_session(&record, &limits, now).await? {
            InsertOutcome::Inserted { evicted } => {
                let mut events: Vec<Event> = evicted
                    .into_iter()
                    .map(|id| Event::Evicted { id })
                    .collect();
                events.push(Event::Created {
                    id: record.id,
                    subject: subject.clone(),
                });
                self.emit(&events);
                Ok(Created {
                    session: Session::from(&record),
                    access: self.access_for(&record, &token),
                    token,
                })
            }
            InsertOutcome::SubjectCapReached => {
                self.emit(&[Event::CapRejected {
                    subject: subject.clone(),
                }]);
                Err(Error::LimitReached {
                    limit: Limit::SubjectSessions,
                })
            }
            InsertOutcome::GlobalCapReached => {
                self.emit(&[Event::CapRejected {
                    subject: subject.clone(),
                }]);
                Err(Error::LimitReached {
                    limit: Limit::GlobalSessions,
                })
            }
            InsertOutcome::RateLimited { retry_after } => {
                self.emit(&[Event::RateLimited {
                    subject: subject.clone(),
                    retry_after,
                }]);
                Err(Error::RateLimited { retry_after })
            }
        }
    }

    /// A validate or refresh: the grant, the granted record and the time it was judged at.
    /// `check` runs on the session a grant would give, before its write: a refusal writes
    /// nothing.
    async fn read(
        &self,
        token: &[u8],
        ctx: &Context,
        mode: ReadMode,
        check: Option<&(dyn Fn(&Session) -> bool + Sync)>,
    ) -> Result<Ran<decide::Grant>, Error> {
        let presented = token::parse(token, &self.policy.token_prefix)?;
        decide::create::check_context(ctx)?;
        let id = SessionId::from_bytes(presented.id);
        self.run_keeping(&id, self.now(), |rec, at| {
            let d =
                decide::read::read(rec, &presented, ctx, mode, at, &self.policy, &*self.entropy);
            let granted = d.write.as_ref().or(rec);
            match (&d.outcome, check, granted) {
                (Ok(_), Some(check), Some(r)) if !check(&Session::from(r)) => {
                    Decision::deny(Error::Refused)
                }
                _ => d,
            }
        })
        .await
    }

    /// The record a grant is about (always present for a grant: fail closed if not).
    fn granted(record: Option<Box<SessionRecord>>) -> Result<Box<SessionRecord>, Error> {
        record.ok_or_else(|| Error::CorruptRecord("a grant without a record".into()))
    }

    fn validated(&self, r: Ran<decide::Grant>) -> Result<Validated, Error> {
        let record = Self::granted(r.record)?;
        let g = r.outcome;
        Ok(Validated {
            access: g.token.as_ref().and_then(|t| self.access_for(&record, t)),
            session: Session::from(*record),
            renewed: g.token,
        })
    }

    fn refreshed(&self, r: Ran<decide::Grant>) -> Result<Refreshed, Error> {
        let record = Self::granted(r.record)?;
        let token = r
            .outcome
            .token
            .ok_or_else(|| Error::CorruptRecord("refresh produced no token".into()))?;
        Ok(Refreshed {
            access: self.access_for(&record, &token),
            session: Session::from(*record),
            token,
        })
    }

    /// Validates a presented token: one store round trip unless a touch, renewal or orphan
    /// closure is due. Malformed tokens are refused before any store call.
    pub async fn validate(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Validated, Error> {
        let r = self
            .read(token.as_ref(), ctx, ReadMode::Validate, None)
            .await?;
        self.validated(r)
    }

    /// Validates as [`validate`](Self::validate), but grants only if `check` accepts the
    /// session; `check` runs *before* any write (touch, renewal), so a refusal leaves the
    /// session exactly as it was and no rotated token is stranded. Refused:
    /// [`Error::Refused`].
    ///
    /// ```
    /// # futures::executor::block_on(async {
    /// use leasehold::{Context, CreateOptions, Error, MemoryStore, Policy, Sessions, Subject};
    /// let sessions = Sessions::new(MemoryStore::new(), Policy::default())?;
    /// let alice = Subject::new("alice")?;
    /// let c = sessions.create(&alice, CreateOptions::default()).await?;
    /// let t = c.token.expose_secret();
    /// let ctx = Context::none();
    /// let premium = sessions.validate_with(t, &ctx, |s| s.data == b"premium").await;
    /// assert!(matches!(premium, Err(Error::Refused)));
    /// assert!(sessions.validate_as(t, &ctx, &alice).await.is_ok());
    /// # Ok::<(), Box<dyn std::error::Error>>(()) }).unwrap();
    /// ```
    pub async fn validate_with(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
        check: impl Fn(&Session) -> bool + Sync,
    ) -> Result<Validated, Error> {
        let r = self
            .read(token.as_ref(), ctx, ReadMode::Validate, Some(&check))
            .await?;
        self.validated(r)
    }

    /// Validates, granting only a session of `subject` (the caller knows who it expects,
    /// e.g. from a signed cookie): [`validate_with`](Self::validate_with) with that check.
    pub async fn validate_as(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
        subject: &Subject,
    ) -> Result<Validated, Error> {
        self.validate_with(token, ctx, |s| s.subject == *subject)
            .await
    }

    /// Validates an access token (policy `access_ttl`): one store read, no write (unless the
    /// session is found past its deadline: that ending is written down first). Refused once
    /// its session ended (`Expired`/`Revoked`), after a rotation replaced it
    /// (`NotAuthenticated`), or past its own deadline ([`Error::AccessTokenExpired`]: refresh
    /// the session for a new one; [`Session::access_expires_at`] says when).
    pub async fn validate_access(&self, access: impl AsRef<[u8]>) -> Result<Session, Error> {
        let presented = token::parse(access.as_ref(), &self.policy.access_prefix)?;
        let id = SessionId::from_bytes(presented.id);
        let rec = self
            .run(&id, self.now(), |rec, at| {
                decide::access::validate(rec, &presented, &self.kind, at)
            })
            .await?;
        Ok(Session::from(rec))
    }

    /// Rotates the secret now. Idempotent: concurrent or retried refreshes of one token within
    /// the grace window all receive the same successor.
    pub async fn refresh(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Refreshed, Error> {
        let r = self
            .read(token.as_ref(), ctx, ReadMode::Refresh, None)
            .await?;
        self.refreshed(r)
    }

    /// Refreshes as [`refresh`](Self::refresh), but only if `check` accepts the session;
    /// `check` runs before the rotation is written, so a refusal strands no token.
    pub async fn refresh_with(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
        check: impl Fn(&Session) -> bool + Sync,
    ) -> Result<Refreshed, Error> {
        let r = self
            .read(token.as_ref(), ctx, ReadMode::Refresh, Some(&check))
            .await?;
        self.refreshed(r)
    }

    /// Logout by token: checks the secret (any secret the session ever had: each proves the
    /// holder had the session), never rotates or touches, and revokes. Idempotent: a repeated
    /// logout answers [`RevokeOutcome::AlreadyRevoked`]. A token that is not this session's
    /// is `NotAuthenticated` (nothing revoked).
    pub async fn logout(&self, token: impl AsRef<[u8]>) -> Result<RevokeOutcome, Error> {
        let presented = token::parse(token.as_ref(), &self.policy.token_prefix)?;
        let id = SessionId::from_bytes(presented.id);
        self.run(&id, self.now(), |rec, at| {
            decide::mutate::logout(rec, &presented, &self.kind, at)
        })
        .await
    }

    /// Revokes session `id` only if it belongs to `subject` ("sign out that device", with the
    /// subject the application authenticated): another owner's session answers
    /// [`RevokeOutcome::Unknown`], as a missing one, and is left untouched.
    pub async fn revoke_owned(
        &self,
        subject: &Subject,
        id: &SessionId,
    ) -> Result<RevokeOutcome, Error> {
        self.run(id, self.now(), |rec, at| {
            decide::mutate::revoke_owned(rec, subject, &self.kind, at)
        })
        .await
    }

    /// Revokes every session of `subject` (live, or past its deadline but not yet ended);
    /// returns how many were live.
    pub async fn revoke_subject(&self, subject: &Subject) -> Result<u64, Error> {
        let count = self.store.revoke_subject(subject, self.now()).await?;
        self.emit(&[Event::SubjectRevoked {
            subject: subject.clone(),
            count,
        }]);
        Ok(count)
    }

    /// Revokes every session tagged with `resource`; returns how many were live.
    pub async fn revoke_resource(&self, resource: &Resource) -> Result<u64, Error> {
        let count = self.store.revoke_resource(resource, self.now()).await?;
        self.emit(&[Event::ResourceRevoked {
            resource: resource.clone(),
            count,
        }]);
        Ok(count)
    }

    /// The live sessions of `subject`, oldest first ("your devices"). Never includes secrets.
    pub async fn list(&self, subject: &Subject) -> Result<Vec<Session>, Error> {
        let now = self.now();
        let mut live: Vec<Session> = self
            .store
            .list_subject(subject)
            .await?
            .iter()
            .filter(|r| r.is_live(now))
            .map(Session::from)
            .collect();
        live.sort_by_key(|s| (s.created_at, s.id));
        Ok(live)
    }

    /// One page of the live sessions in `scope` (of every kind, as the group operations: see
    /// [`Session::kind`]), in ascending id order,
    /// starting after `after` (`None`: the first page); at most `limit` (≤
    /// [`MAX_PAGE`](crate::MAX_PAGE)) store records are read per page. Follow
    /// [`SessionPage::next`] until it is `None`. Never includes secrets.
    pub async fn list_page(
        &self,
        scope: &Scope,
        after: Option<&SessionId>,
        limit: usize,
    ) -> Result<SessionPage, Error> {
        let now = self.now();
        let page = self.store.list_sessions(scope, after, limit).await?;
        Ok(SessionPage {
            sessions: page
                .records
                .iter()
                .filter(|r| r.is_live(now))
                .map(Session::from)
                .collect(),
            next: page.next,
        })
    }

    /// How many sessions of `scope` are live (of every kind: the store counts what its caps
    /// count).
    pub async fn count(&self, scope: &Scope) -> Result<u64, Error> {
        Ok(self.store.count_live(scope, self.now()).await?)
    }

    /// Whether a create for `subject` would pass the caps and the creation rate now, without
    /// creating anything (a peek before costly work): `Ok(())`, or the error
    /// [`create`](Self::create) would return. Only advice: a concurrent create may take the
    /// last place.
    pub async fn check_create(&self, subject: &Subject) -> Result<(), Error> {
        let limits = decide::create::limits(&self.policy);
        match self
            .store
            .check_limits(subject, &limits, self.now())
            .await?
        {
            InsertOutcome::Inserted { .. } => Ok(()),
            InsertOutcome::SubjectCapReached => Err(Error::LimitReached {
                limit: Limit::SubjectSessions,
            }),
            InsertOutcome::GlobalCapReached => Err(Error::LimitReached {
                limit: Limit::GlobalSessions,
            }),
            InsertOutcome::RateLimited { retry_after } => Err(Error::RateLimited { retry_after }),
        }
    }

    /// Replaces a session's data if its data version is still `expected_version`.
    pub async fn update_data(
        &self,
        id: &SessionId,
        expected_version: u64,
        data: &[u8],
    ) -> Result<Session, Error> {
        decide::mutate::check_data(data, &self.policy)?;
        let now = self.now();
        let rec = self
            .run(id, now, |rec, at| {
                decide::mutate::update_data(rec, expected_version, data, at, &self.policy)
            })
            .await?;
        Ok(Session::from(rec))
    }

    /// Validates `token` and mints a one-shot ticket for its session.
    pub async fn mint_ticket(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Ticketed, Error> {
        let r = self
            .read(token.as_ref(), ctx, ReadMode::Validate, None)
            .await?;
        let record = r
            .record
            .as_ref()
            .ok_or_else(|| Error::CorruptRecord("a grant without a record".into()))?;
        let (ticket, expires_at) = self.put_ticket(record, r.judged).await?;
        Ok(Ticketed {
            ticket,
            expires_at,
            validated: self.validated(r)?,
        })
    }

    /// Mints and stores a ticket for the live session `record`, judged at `at`.
    async fn put_ticket(
        &self,
        record: &SessionRecord,
        at: Timestamp,
    ) -> Result<(TicketToken, Timestamp), Error> {
        let (ticket, ticket_token) =
            decide::ticket::mint(record, at, &self.policy, &*self.entropy)?;
        self.store.put_ticket(&ticket).await?;
        self.emit(&[Event::TicketMinted {
            ticket: ticket.id,
            session: ticket.session,
        }]);
        Ok((ticket_token, ticket.expires_at))
    }

    /// Redeems a ticket: succeeds at most once per ticket, whatever the concurrency, and only
    /// while its session is live.
    pub async fn redeem_ticket(&self, ticket: impl AsRef<[u8]>) -> Result<Session, Error> {
        let presented = token::parse(ticket.as_ref(), &self.policy.ticket_prefix)?;
        let id = crate::ids::TicketId::from_bytes(presented.id);
        let verifier = decide::ticket::verifier(&id, &presented.secret);
        let now = self.now();
        let t = match self.store.take_ticket(&id, &verifier, now).await? {
            TakeOutcome::Taken(t) => t,
            TakeOutcome::Expired => return Err(Error::Expired),
            TakeOutcome::Missing => return Err(Error::NotAuthenticated),
        };
        let rec = self
            .run(&t.session, now, |rec, at| {
                decide::by_id::get(rec, &self.kind, at)
            })
            .await?;
        self.emit(&[Event::TicketRedeemed {
            ticket: t.id,
            session: t.session,
        }]);
        Ok(Session::from(&rec))
    }

    /// Acquires a slot on a live session (and on `resource`, if given) under the slot caps.
    pub async fn acquire_slot(
        &self,
        session: &SessionId,
        resource: Option<&Resource>,
    ) -> Result<SlotLease, Error> {
        let now = self.now();
        let slot = decide::slot::new_slot(session, resource, now, &self.policy, &*self.entropy)?;
        match self
            .store
            .acquire_slot(&slot, &decide::slot::caps(&self.policy), now)
            .await?
        {
            SlotOutcome::Acquired => {
                self.emit(&[Event::SlotAcquired {
                    slot: slot.id,
                    session: *session,
                }]);
                Ok(SlotLease {
                    id: slot.id,
                    expires_at: slot.expires_at,
                })
            }
            SlotOutcome::SessionNotLive => Err(self.settle_ending(session, now).await),
            SlotOutcome::SessionCapReached => Err(Error::LimitReached {
                limit: Limit::SessionSlots,
            }),
            SlotOutcome::ResourceCapReached => Err(Error::LimitReached {
                limit: Limit::ResourceSlots,
            }),
        }
    }

    /// The store found `id` not live: make that ending durable (a tombstone for a session past
    /// its deadline) before the caller is told, and say why it ended.
    async fn settle_ending(&self, id: &SessionId, now: Timestamp) -> Error {
        let settled = self
            .run(id, now, |rec, at| {
                decide::ending::<()>(rec, at).unwrap_or_else(|| Decision {
                    write: None,
                    // Live again by the time we looked (a lagging store clock): still refused.
                    outcome: Err(Error::NotAuthenticated),
                    events: Vec::new(),
                })
            })
            .await;
        match settled {
            Err(e) => e,
            Ok(()) => Error::NotAuthenticated,
        }
    }

    /// Extends a slot by the slot TTL. Fails with [`Error::SlotLost`] if the slot expired or
    /// was released, or its session is no longer live.
    pub async fn heartbeat_slot(&self, slot: &SlotId) -> Result<SlotLease, Error> {
        let now = self.now();
        let expires_at = decide::slot::heartbeat_expiry(now, &self.policy);
        match self.store.heartbeat_slot(slot, expires_at, now).await? {
            HeartbeatOutcome::Extended => Ok(SlotLease {
                id: *slot,
                expires_at,
            }),
            HeartbeatOutcome::Missing | HeartbeatOutcome::SessionNotLive => {
                self.emit(&[Event::SlotExpired { slot: *slot }]);
                Err(Error::SlotLost)
            }
        }
    }

    /// Releases a slot; `true` if it was held.
    pub async fn release_slot(&self, slot: &SlotId) -> Result<bool, Error> {
        let released = self.store.release_slot(slot).await?;
        if released {
            self.emit(&[Event::SlotReleased { slot: *slot }]);
        }
        Ok(released)
    }

    /// Removes up to `limit` expired records (sessions, tombstones past their deadline,
    /// tickets, slots). Never removes a live one.
    pub async fn reap(&self, limit: usize) -> Result<ReapOutcome, Error> {
        let out = self.store.reap(self.now(), limit).await?;
        if out.total() > 0 {
            self.emit(&[Event::Reaped { count: out.total() }]);
        }
        if out.quarantined > 0 {
            self.emit(&[Event::Quarantined {
                count: out.quarantined,
            }]);
        }
        Ok(out)
    }
}

/// Operations on a session named by its public id, for trusted server-side code only
/// ([`Sessions::trusted_by_id`]): the caller has authenticated whoever asks by its own means.
/// Each refuses a session of another kind, writes down an ending it observes, and emits the
/// driver's events.
pub struct TrustedById<'a, S> {
    sessions: &'a Sessions<S>,
}

impl<S: Store> TrustedById<'_, S> {
    /// The session, if live ("is this lease still valid?"). `NotAuthenticated` if absent or of
    /// another kind; `Expired` / `Revoked` if it ended.
    pub async fn get(&self, id: &SessionId) -> Result<Session, Error> {
        let s = self.sessions;
        let rec = s
            .run(id, s.now(), |rec, at| decide::by_id::get(rec, &s.kind, at))
            .await?;
        Ok(Session::from(rec))
    }

    /// Keeps a live session alive as a validate would (the idle deadline moves when the touch
    /// granularity is due; never past the absolute deadline), and returns it. Never revives an
    /// ended session.
    pub async fn keepalive(&self, id: &SessionId) -> Result<Session, Error> {
        let s = self.sessions;
        let rec = s
            .run(id, s.now(), |rec, at| {
                decide::by_id::keepalive(rec, &s.kind, at, &s.policy)
            })
            .await?;
        Ok(Session::from(rec))
    }

    /// Keeps a session alive as [`keepalive`](Self::keepalive), only if `check` accepts it
    /// (e.g. "it belongs to the user resuming it"); `check` runs before the touch is written,
    /// so a refusal ([`Error::Refused`]) writes nothing. One round trip with no touch due.
    pub async fn keepalive_with(
        &self,
        id: &SessionId,
        check: impl Fn(&Session) -> bool + Sync,
    ) -> Result<Session, Error> {
        let s = self.sessions;
        let rec = s
            .run(id, s.now(), |rec, at| {
                let d = decide::by_id::keepalive(rec, &s.kind, at, &s.policy);
                match &d.outcome {
                    Ok(r) if !check(&Session::from(r)) => Decision::deny(Error::Refused),
                    _ => d,
                }
            })
            .await?;
        Ok(Session::from(rec))
    }

    /// Mints a one-shot ticket for a live session (a PTY "attach" token): redeemed at most
    /// once, never outliving the session.
    pub async fn mint_ticket(&self, id: &SessionId) -> Result<Minted, Error> {
        let s = self.sessions;
        let now = s.now();
        let mut judged = now;
        let rec = s
            .run(id, now, |rec, at| {
                judged = at;
                decide::by_id::get(rec, &s.kind, at)
            })
            .await?;
        let (ticket, expires_at) = s.put_ticket(&rec, judged).await?;
        Ok(Minted {
            ticket,
            expires_at,
            session: Session::from(&rec),
        })
    }

    /// Revokes a session: writes its tombstone whether it is live or already past its
    /// deadline (a revocation never depends on a clock), and says what happened. A session of
    /// another kind answers `Unknown` and is left as it is.
    pub async fn revoke(&self, id: &SessionId) -> Result<RevokeOutcome, Error> {
        let s = self.sessions;
        s.run(id, s.now(), |rec, at| {
            decide::mutate::revoke_of_kind(rec, &s.kind, at)
        })
        .await
    }

    /// Gives a creation back: revokes the session (as [`revoke`](Self::revoke)) and removes
    /// its entry from its subject's creation-rate log, for an application that counts only
    /// creations whose follow-up succeeded (a PTY that failed to spawn). Idempotent.
    pub async fn give_back(&self, id: &SessionId) -> Result<RevokeOutcome, Error> {
        let s = self.sessions;
        let mut owner = None;
        let outcome = s
            .run(id, s.now(), |rec, at| {
                owner = rec.filter(|r| r.kind == s.kind).map(|r| r.subject.clone());
                decide::mutate::revoke_of_kind(rec, &s.kind, at)
            })
            .await?;
        if let Some(subject) = owner {
            s.store.forget_creation(&subject, id).await?;
        }
        Ok(outcome)
    }
}
