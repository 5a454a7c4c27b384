//! Seed 004: a user-session manager library (`@thermopylae/lib.user-session`).
//!
//! The library stores sessions server-side and gives the client only an id; it expires a
//! session after an idle timeout, renews it (a new id) some time after creation when it is
//! read, keeps the old one readable for a few seconds after a renewal so in-flight requests
//! complete, refuses a read from another device than the one the session was created on,
//! reads with the subject the caller expects, reads / deletes all sessions of a subject,
//! accepts a per-session TTL, and guards renewal against concurrent reads in one process
//! (`renewedSessions`) and across processes.
//!
//! Mapping:
//! - session id = the leasehold session token (the client's secret; the leasehold id is
//!   non-secret and safe to log, which replaces the seed's `hash(sessionId)` for logging);
//! - `sessionTtl` = `absolute_lifetime`; `timeouts.idle` = `idle_timeout`;
//!   `timeouts.renewal` = `renewal_interval`; `oldSessionAvailabilityAfterRenewal` =
//!   `grace_window` (and `orphan_window`: the old token is refused after it, whatever);
//!   renewal races = leasehold's idempotent rotation (every concurrent read of the renewed
//!   token gets the same successor, in any process sharing the store);
//! - the device = the context binding ([`Context::bound`]);
//! - `read(subject, …)` = [`Sessions::validate_as`]; `readAll` = [`Sessions::list`];
//!   `delete(subject, id)` = [`Sessions::revoke_owned`]; `deleteAll` =
//!   [`Sessions::revoke_subject`]; the per-session TTL = [`CreateOptions::absolute_lifetime`].
//!
//! Reuse detection is off: the seed simply deletes the old session after the window, so a late
//! request with the old id is unauthenticated, and the new session survives.

use std::time::Duration;

use leasehold::{
    Clock, Context, CreateOptions, Error, Policy, PolicyError, RevokeOutcome, Session, SessionId,
    SessionToken, Sessions, Store, Subject,
};

/// The seed's recommended `oldSessionAvailabilityAfterRenewal`.
pub const RECOMMENDED_OLD_SESSION_AVAILABILITY: Duration = Duration::from_secs(5);

/// The seed's `UserSessionTimeouts`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UserSessionTimeouts {
    /// Idle timeout; `None` disables.
    pub idle: Option<Duration>,
    /// Renewal after this long since the last renewal (creation); `None` disables.
    pub renewal: Option<Duration>,
    /// How long the old session stays readable after a renewal.
    pub old_session_availability_after_renewal: Duration,
}

/// The seed's `UserSessionManagerOptions` (the storage is the leasehold store).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct UserSessionManagerOptions {
    /// Session lifetime.
    pub session_ttl: Duration,
    /// Timeouts.
    pub timeouts: UserSessionTimeouts,
    /// The session kind (token prefix): a token of another kind is refused.
    pub kind: String,
}

impl Default for UserSessionManagerOptions {
    fn default() -> Self {
        UserSessionManagerOptions {
            session_ttl: Duration::from_secs(24 * 3600),
            timeouts: UserSessionTimeouts {
                idle: Some(Duration::from_secs(30 * 60)),
                renewal: Some(Duration::from_secs(15 * 60)),
                old_session_availability_after_renewal: RECOMMENDED_OLD_SESSION_AVAILABILITY,
            },
            kind: "usess".into(),
        }
    }
}

impl UserSessionManagerOptions {
    /// The leasehold policy for these options.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let window = self.timeouts.old_session_availability_after_renewal;
        Policy::builder()
            .absolute_lifetime(self.session_ttl)
            .idle_timeout(self.timeouts.idle)
            .renewal_interval(self.timeouts.renewal)
            .grace_window(window)
            .orphan_window(window)
            .reuse_detection(false)
            .enforce_binding(true)
            .token_prefix(self.kind.clone())
            .build()
    }
}

/// A device (the seed's `DeviceBase`: name and type must match on read).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Device {
    /// Device name.
    pub name: String,
    /// Device type.
    pub kind: String,
}

impl Device {
    /// A device.
    pub fn new(name: impl Into<String>, kind: impl Into<String>) -> Self {
        Device {
            name: name.into(),
            kind: kind.into(),
        }
    }

    fn context(device: Option<&Device>) -> Context {
        device.map_or_else(Context::none, |d| {
            Context::bound(format!("{}\u{1f}{}", d.kind, d.name))
        })
    }
}

/// The user-session manager.
pub struct UserSessionManager<S> {
    sessions: Sessions<S>,
}

impl<S: Store> UserSessionManager<S> {
    /// A manager over `store`.
    pub fn new(store: S, options: &UserSessionManagerOptions) -> Result<Self, PolicyError> {
        Ok(UserSessionManager {
            sessions: Sessions::new(store, options.policy()?)?,
        })
    }

    /// Uses `clock` for time (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.sessions = self.sessions.with_clock(clock);
        self
    }

    /// `create(subject, context, sessionTtl?)`: the session is bound to `device` (if any) and
    /// may get a shorter TTL than the default.
    pub async fn create(
        &self,
        subject: &Subject,
        device: Option<&Device>,
        session_ttl: Option<Duration>,
    ) -> Result<SessionToken, Error> {
        let c = self
            .sessions
            .create(
                subject,
                CreateOptions {
                    context: Device::context(device),
                    summary: device.map(|d| format!("{} ({})", d.name, d.kind)),
                    absolute_lifetime: session_ttl,
                    ..CreateOptions::default()
                },
            )
            .await?;
        Ok(c.token)
    }

    /// `read(subject, sessionId, context)`: the session and, if it was renewed, the token to
    /// send back in `Set-Cookie`. Refused (`Refused`) if the session is another subject's,
    /// before anything is written; `BindingMismatch` from another device; `Expired` after the
    /// idle timeout.
    pub async fn read(
        &self,
        subject: &Subject,
        token: &str,
        device: Option<&Device>,
    ) -> Result<(Session, Option<SessionToken>), Error> {
        let v = self
            .sessions
            .validate_as(token, &Device::context(device), subject)
            .await?;
        Ok((v.session, v.renewed))
    }

    /// `readAll(subject)`: the subject's live sessions, oldest first.
    pub async fn read_all(&self, subject: &Subject) -> Result<Vec<Session>, Error> {
        self.sessions.list(subject).await
    }

    /// `delete(subject, sessionId)`: only the subject's own session (another's is `Unknown`
    /// and untouched). Sessions are named by their non-secret id, as `readAll` lists them.
    pub async fn delete(&self, subject: &Subject, id: &SessionId) -> Result<RevokeOutcome, Error> {
        self.sessions.revoke_owned(subject, id).await
    }

    /// `deleteAll(subject)`: the number of sessions deleted.
    pub async fn delete_all(&self, subject: &Subject) -> Result<u64, Error> {
        self.sessions.revoke_subject(subject).await
    }
}
