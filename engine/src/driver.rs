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
use crate::ids::{Resource, SessionId, SlotId, Subject};
use crate::policy::{Policy, PolicyError};
use crate::record::SessionRecord;
use crate::store::{
    HeartbeatOutcome, InsertOutcome, ReapOutcome, SlotOutcome, Store, StoreError, TakeOutcome,
};
use crate::time::{Clock, SystemClock, Timestamp};
use crate::token::{self, SessionToken, TicketToken};

/// A newly created session and the token to hand to the client.
#[derive(Debug)]
pub struct Created {
    /// The session.
    pub session: Session,
    /// Its token (the only time the secret exists outside the client).
    pub token: SessionToken,
}

/// A valid session. If `renewed` is set, the client must switch to that token.
#[derive(Debug)]
pub struct Validated {
    /// The session.
    pub session: Session,
    /// The token to hand back (after automatic renewal, or when a predecessor was presented).
    pub renewed: Option<SessionToken>,
}

/// A refreshed session and its (new, or idempotently re-issued) token.
#[derive(Debug)]
pub struct Refreshed {
    /// The session.
    pub session: Session,
    /// The token the client must use from now on.
    pub token: SessionToken,
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

/// Sessions over a store: the API applications use.
pub struct Sessions<S> {
    store: S,
    policy: Policy,
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
        Ok(Sessions {
            store,
            policy,
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

    /// The driver's current time.
    pub fn now(&self) -> Timestamp {
        self.clock.now()
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
        mut decide: impl FnMut(Option<&SessionRecord>, Timestamp) -> Decision<T>,
    ) -> Result<T, Error> {
        for _ in 0..=self.policy.max_cas_retries {
            let loaded = self.store.load_session(id).await?;
            let at = loaded.judged_at(now);
            let d = decide(loaded.record.as_ref(), at);
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
            return d.outcome;
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

    /// A validate or refresh; also returns the time it was judged at.
    async fn read(
        &self,
        token: &[u8],
        ctx: &Context,
        mode: ReadMode,
    ) -> Result<(decide::Grant, Timestamp), Error> {
        let presented = token::parse(token, &self.policy.token_prefix)?;
        decide::create::check_context(ctx)?;
        let id = SessionId::from_bytes(presented.id);
        let now = self.now();
        let mut judged = now;
        let grant = self
            .run(&id, now, |rec, at| {
                judged = at;
                decide::read::read(rec, &presented, ctx, mode, at, &self.policy, &*self.entropy)
            })
            .await?;
        Ok((grant, judged))
    }

    /// Validates a presented token: one store round trip unless a touch, renewal or orphan
    /// closure is due. Malformed tokens are refused before any store call.
    pub async fn validate(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Validated, Error> {
        let (g, _) = self.read(token.as_ref(), ctx, ReadMode::Validate).await?;
        Ok(Validated {
            session: Session::from(&g.record),
            renewed: g.token,
        })
    }

    /// Rotates the secret now. Idempotent: concurrent or retried refreshes of one token within
    /// the grace window all receive the same successor.
    pub async fn refresh(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Refreshed, Error> {
        let (g, _) = self.read(token.as_ref(), ctx, ReadMode::Refresh).await?;
        let token = g
            .token
            .ok_or_else(|| Error::CorruptRecord("refresh produced no token".into()))?;
        Ok(Refreshed {
            session: Session::from(&g.record),
            token,
        })
    }

    /// Revokes a session by id: writes its tombstone whether it is live or already past its
    /// deadline (a revocation never depends on a clock), and says what happened.
    pub async fn revoke(&self, id: &SessionId) -> Result<RevokeOutcome, Error> {
        let now = self.now();
        self.run(id, now, decide::mutate::revoke).await
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
        Ok(Session::from(&rec))
    }

    /// Validates `token` and mints a one-shot ticket for its session.
    pub async fn mint_ticket(
        &self,
        token: impl AsRef<[u8]>,
        ctx: &Context,
    ) -> Result<Ticketed, Error> {
        let (g, at) = self.read(token.as_ref(), ctx, ReadMode::Validate).await?;
        let (ticket, ticket_token) =
            decide::ticket::mint(&g.record, at, &self.policy, &*self.entropy)?;
        self.store.put_ticket(&ticket).await?;
        self.emit(&[Event::TicketMinted {
            ticket: ticket.id,
            session: ticket.session,
        }]);
        Ok(Ticketed {
            ticket: ticket_token,
            expires_at: ticket.expires_at,
            validated: Validated {
                session: Session::from(&g.record),
                renewed: g.token,
            },
        })
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
        let rec = self.run(&t.session, now, decide::ticket::redeem).await?;
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
