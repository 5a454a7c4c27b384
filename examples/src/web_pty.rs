//! Seed 001: a web PTY session manager.
//!
//! The seed caps live sessions globally and per user, limits new sessions per user per rolling
//! hour (answering with a `Retry-After` in whole seconds, rounded up), peeks at those limits
//! before spawning a PTY, records a creation only once the PTY spawned, keeps a session alive
//! for a grace period after its WebSocket closes so a reconnect can resume it, and gives an
//! admin dashboard a list of every session, a per-user list and a destroy-by-id.
//!
//! Mapping:
//! - caps = `global_cap` / `subject_cap` with [`CapPolicy::Reject`]; hourly limit =
//!   `creation_rate` with a one-hour window ([`Error::retry_after_secs`] for `Retry-After`);
//! - peek = [`Sessions::check_create`]; "record only successful spawns" = create, spawn, and
//!   on a failed spawn [`give_back`](leasehold::TrustedById::give_back);
//! - grace after disconnect = the idle timeout: while a WebSocket is attached the server calls
//!   [`keepalive`](WebPty::keepalive) (on each ping / input); once it closes, the session
//!   lapses after the grace period unless [`resume`](WebPty::resume)d;
//! - the user is authenticated by the server (`AuthUser`), so resume and destroy are by id
//!   ([`Sessions::trusted_by_id`]), with resume checking the owner;
//! - teardown of lapsed sessions = [`Sessions::reap`] and its `ended` list.

use std::time::Duration;

use leasehold::{
    CapPolicy, Clock, CreateOptions, Error, GlobalCap, Policy, PolicyError, Rate, Reaped,
    RevokeOutcome, Scope, Session, SessionId, SessionToken, Sessions, Store, Subject, SubjectCap,
    Timestamp,
};

/// The token prefix (session kind) of web PTY sessions.
pub const KIND: &str = "webpty";
/// Rolling window of the creation rate.
pub const RATE_WINDOW: Duration = Duration::from_secs(3600);

/// Manager configuration (the seed's constructor arguments).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct WebPtyConfig {
    /// Most live sessions on this server.
    pub max_sessions: u64,
    /// Most live sessions per user (the seed defaults it to `max_sessions`).
    pub max_sessions_per_user: Option<u32>,
    /// New sessions per user per rolling hour (seed default 100).
    pub max_sessions_per_hour: u32,
    /// How long a session survives with no WebSocket attached.
    pub grace_period: Duration,
}

impl Default for WebPtyConfig {
    fn default() -> Self {
        WebPtyConfig {
            max_sessions: 10,
            max_sessions_per_user: None,
            max_sessions_per_hour: 100,
            grace_period: Duration::from_secs(5 * 60),
        }
    }
}

impl WebPtyConfig {
    /// The leasehold policy for this configuration.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let per_user = self
            .max_sessions_per_user
            .unwrap_or(u32::try_from(self.max_sessions).unwrap_or(u32::MAX));
        Policy::builder()
            .no_absolute_lifetime()
            .idle_timeout(Some(self.grace_period))
            .renewal_interval(None)
            .global_cap(Some(GlobalCap {
                max: self.max_sessions,
                on_full: CapPolicy::Reject,
            }))
            .subject_cap(Some(SubjectCap {
                max: per_user,
                on_full: CapPolicy::Reject,
            }))
            .creation_rate(Some(Rate {
                max: self.max_sessions_per_hour,
                window: RATE_WINDOW,
            }))
            .token_prefix(KIND.into())
            .build()
    }
}

/// Why [`WebPty::create`] did not produce a session.
#[derive(Debug)]
pub enum CreateError<E> {
    /// A cap or the hourly rate refused it (close the WebSocket with 1013; for
    /// [`Error::RateLimited`], [`Error::retry_after_secs`] is the `Retry-After`).
    Refused(Error),
    /// The PTY failed to spawn; the creation was given back (not counted).
    Spawn(E),
}

/// A spawned session.
#[derive(Debug)]
pub struct Spawned<P> {
    /// The session (its id is what the admin dashboard shows).
    pub session: Session,
    /// Its session token, for a client that authenticates by token rather than by user.
    pub token: SessionToken,
    /// The spawned PTY.
    pub pty: P,
}

/// A row of the admin dashboard.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AdminRow {
    /// Session id.
    pub id: SessionId,
    /// Owner.
    pub user_id: String,
    /// Creation time.
    pub created_at: Timestamp,
}

/// The web PTY session manager.
pub struct WebPty<S> {
    sessions: Sessions<S>,
}

impl<S: Store> WebPty<S> {
    /// A manager over `store`.
    pub fn new(store: S, config: WebPtyConfig) -> Result<Self, PolicyError> {
        Ok(WebPty {
            sessions: Sessions::new(store, config.policy()?)?,
        })
    }

    /// Uses `clock` for time (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.sessions = self.sessions.with_clock(clock);
        self
    }

    /// The seed's `isFull` / `isUserAtConcurrentLimit` / `isUserRateLimited`, as one peek:
    /// `Ok(())` if a create for `user` would pass now, else the error it would get. Creates
    /// nothing and records no attempt.
    pub async fn can_create(&self, user: &Subject) -> Result<(), Error> {
        self.sessions.check_create(user).await
    }

    /// `retryAfterSeconds`: whole seconds (rounded up) until `user` may create again; 0 if it
    /// may now or is refused for another reason.
    pub async fn retry_after_seconds(&self, user: &Subject) -> Result<u64, Error> {
        match self.sessions.check_create(user).await {
            Err(e @ Error::RateLimited { .. }) => Ok(e.retry_after_secs().unwrap_or(0)),
            Err(Error::LimitReached { .. }) | Ok(()) => Ok(0),
            Err(e) => Err(e),
        }
    }

    /// `create`: peek at the limits (nothing is written if they refuse), create the session
    /// (the caps and rate are enforced again, atomically), spawn the PTY, and give the creation
    /// back if the spawn fails, so only successful spawns count.
    pub async fn create<P, E>(
        &self,
        user: &Subject,
        spawn: impl FnOnce() -> Result<P, E>,
    ) -> Result<Spawned<P>, CreateError<E>> {
        self.sessions
            .check_create(user)
            .await
            .map_err(CreateError::Refused)?;
        let created = self
            .sessions
            .create(user, CreateOptions::default())
            .await
            .map_err(CreateError::Refused)?;
        match spawn() {
            Ok(pty) => Ok(Spawned {
                session: created.session,
                token: created.token,
                pty,
            }),
            Err(e) => {
                // Best effort: if the give-back fails the session still lapses after the
                // grace period, but its creation stays counted.
                let _ = self
                    .sessions
                    .trusted_by_id()
                    .give_back(&created.session.id)
                    .await;
                Err(CreateError::Spawn(e))
            }
        }
    }

    /// Keeps an attached session alive (call on each ping or input while its WebSocket is
    /// open): by-id `keepalive`.
    pub async fn keepalive(&self, id: &SessionId) -> Result<Session, Error> {
        self.sessions.trusted_by_id().keepalive(id).await
    }

    /// `resume`: reattach `user` to its session `id` after a disconnect, within the grace
    /// period, in one round trip (`keepalive_with`: the owner check runs before the touch is
    /// written). Another user's session is `Refused` and is left untouched.
    pub async fn resume(&self, user: &Subject, id: &SessionId) -> Result<Session, Error> {
        self.sessions
            .trusted_by_id()
            .keepalive_with(id, |s| s.subject == *user)
            .await
    }

    /// `activeCount`: live sessions on the server.
    pub async fn active_count(&self) -> Result<u64, Error> {
        self.sessions.count(&Scope::All).await
    }

    /// `getAllSessions` (admin dashboard): every live session, by pages of `page`.
    pub async fn all_sessions(&self, page: usize) -> Result<Vec<AdminRow>, Error> {
        let mut rows = Vec::new();
        let mut after: Option<SessionId> = None;
        loop {
            let p = self
                .sessions
                .list_page(&Scope::All, after.as_ref(), page)
                .await?;
            rows.extend(p.sessions.into_iter().map(|s| AdminRow {
                id: s.id,
                user_id: s.subject.as_str().to_owned(),
                created_at: s.created_at,
            }));
            match p.next {
                Some(next) => after = Some(next),
                None => return Ok(rows),
            }
        }
    }

    /// `getUserSessions` (per-user API): `list`.
    pub async fn user_sessions(&self, user: &Subject) -> Result<Vec<Session>, Error> {
        self.sessions.list(user).await
    }

    /// `destroySession` (REST API, PTY exit): by-id `revoke`.
    pub async fn destroy_session(&self, id: &SessionId) -> Result<RevokeOutcome, Error> {
        self.sessions.trusted_by_id().revoke(id).await
    }

    /// `destroyAll`: revoke every live session (listed by pages, then revoked one by one);
    /// returns how many were revoked.
    pub async fn destroy_all(&self) -> Result<u64, Error> {
        let rows = self.all_sessions(leasehold::MAX_PAGE).await?;
        let mut n = 0;
        for row in rows {
            if self.destroy_session(&row.id).await? == RevokeOutcome::Revoked {
                n += 1;
            }
        }
        Ok(n)
    }

    /// The grace timer: remove lapsed sessions and say which ended, so their PTYs are killed.
    pub async fn reap_expired(&self, limit: usize) -> Result<Vec<Reaped>, Error> {
        Ok(self.sessions.reap(limit).await?.ended)
    }
}
