//! Seed 003: SSH session tokens for sandboxes (a security-fix pull request).
//!
//! The PR gives SSH session tokens a configurable TTL (24 h default, `0` = no expiry), limits
//! concurrent tunnel connections to 3 per token and 20 per sandbox, deletes a sandbox's
//! sessions when the sandbox is deleted, and runs an hourly reaper that removes expired and
//! revoked sessions (but keeps sessions with no expiry).
//!
//! Mapping:
//! - token = a leasehold session of the client identity (subject), tagged with its sandbox
//!   (resource); TTL = `absolute_lifetime`, `0` = [`no_absolute_lifetime`](leasehold::PolicyBuilder::no_absolute_lifetime);
//!   no idle timeout, no renewal (every CLI command mints a fresh token);
//! - a tunnel connection = a slot ([`Sessions::acquire_slot`] on the session and the
//!   sandbox) under `max_slots_per_session` = 3 and `max_slots_per_resource` = 20, heartbeated
//!   while the tunnel lives and released when it closes (the seed's in-memory counters);
//! - the token is checked against the sandbox the CONNECT names with
//!   [`Sessions::validate_with`] (a token for another sandbox is `Refused`);
//! - sandbox deletion = [`Sessions::revoke_resource`]; reaper = [`Sessions::reap`].

use std::time::Duration;

use leasehold::{
    Clock, Context, CreateOptions, Error, Policy, PolicyError, ReapOutcome, Resource,
    RevokeOutcome, Session, SessionToken, Sessions, SlotId, SlotLease, Store, Subject,
};

/// Default token TTL (`ssh_session_ttl_secs`): 24 hours.
pub const DEFAULT_TTL_SECS: u64 = 24 * 3600;
/// Most concurrent connections per token (compile-time constant in the seed).
pub const MAX_CONNECTIONS_PER_TOKEN: u32 = 3;
/// Most concurrent connections per sandbox.
pub const MAX_CONNECTIONS_PER_SANDBOX: u32 = 20;
/// How often the reaper runs.
pub const REAPER_INTERVAL: Duration = Duration::from_secs(3600);
/// The token prefix (session kind) of SSH session tokens.
pub const KIND: &str = "sshs";

/// Configuration (the seed's `ssh_session_ttl_secs`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SshConfig {
    /// Token TTL in seconds; `0` disables expiry.
    pub ssh_session_ttl_secs: u64,
    /// A tunnel's slot lapses unless heartbeated within this.
    pub connection_heartbeat: Duration,
}

impl Default for SshConfig {
    fn default() -> Self {
        SshConfig {
            ssh_session_ttl_secs: DEFAULT_TTL_SECS,
            connection_heartbeat: Duration::from_secs(60),
        }
    }
}

impl SshConfig {
    /// The leasehold policy for this configuration.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        let b = Policy::builder()
            .idle_timeout(None)
            .renewal_interval(None)
            // No rotation, so no grace: otherwise a TTL under the 30 s default grace window
            // would be refused (`GraceNotBelowAbsolute`).
            .grace_window(Duration::ZERO)
            .orphan_window(Duration::ZERO)
            .max_slots_per_session(Some(MAX_CONNECTIONS_PER_TOKEN))
            .max_slots_per_resource(Some(MAX_CONNECTIONS_PER_SANDBOX))
            .slot_ttl(self.connection_heartbeat)
            .token_prefix(KIND.into());
        let b = match self.ssh_session_ttl_secs {
            0 => b.no_absolute_lifetime(),
            secs => b.absolute_lifetime(Duration::from_secs(secs)),
        };
        b.build()
    }
}

/// `CreateSshSessionResponse`.
#[derive(Debug)]
pub struct SshSession {
    /// The session.
    pub session: Session,
    /// The token the CLI presents in the CONNECT.
    pub token: SessionToken,
    /// Expiry in epoch milliseconds; `0` = never (the proto's `expires_at_ms`).
    pub expires_at_ms: u64,
}

/// An open tunnel connection (counted against both limits until closed or lapsed).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Connection {
    /// Its slot.
    pub slot: SlotLease,
}

/// The gateway's SSH session layer.
pub struct SshTokens<S> {
    sessions: Sessions<S>,
    no_expiry: bool,
}

impl<S: Store> SshTokens<S> {
    /// The layer over `store`.
    pub fn new(store: S, config: SshConfig) -> Result<Self, PolicyError> {
        Ok(SshTokens {
            sessions: Sessions::new(store, config.policy()?)?,
            no_expiry: config.ssh_session_ttl_secs == 0,
        })
    }

    /// Uses `clock` for time (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.sessions = self.sessions.with_clock(clock);
        self
    }

    /// `CreateSshSession`: a token for `client` on `sandbox`.
    pub async fn create_ssh_session(
        &self,
        client: &Subject,
        sandbox: &Resource,
    ) -> Result<SshSession, Error> {
        let c = self
            .sessions
            .create(
                client,
                CreateOptions {
                    resource: Some(sandbox.clone()),
                    ..CreateOptions::default()
                },
            )
            .await?;
        let expires_at_ms = if self.no_expiry {
            0
        } else {
            c.session.absolute_deadline.as_millis()
        };
        Ok(SshSession {
            session: c.session,
            token: c.token,
            expires_at_ms,
        })
    }

    /// Tunnel validation and connection accounting: the token must be live and for `sandbox`;
    /// then a slot is taken under the per-token and per-sandbox limits.
    pub async fn open_tunnel(&self, token: &str, sandbox: &Resource) -> Result<Connection, Error> {
        let v = self
            .sessions
            .validate_with(token, &Context::none(), |s| {
                s.resource.as_ref() == Some(sandbox)
            })
            .await?;
        let slot = self
            .sessions
            .acquire_slot(&v.session.id, Some(sandbox))
            .await?;
        Ok(Connection { slot })
    }

    /// Keeps a tunnel counted (call more often than the heartbeat TTL). `SlotLost` once the
    /// token was revoked or its sandbox deleted: close the tunnel.
    pub async fn heartbeat(&self, slot: &SlotId) -> Result<SlotLease, Error> {
        self.sessions.heartbeat_slot(slot).await
    }

    /// The tunnel closed: the counters go down.
    pub async fn close_tunnel(&self, slot: &SlotId) -> Result<bool, Error> {
        self.sessions.release_slot(slot).await
    }

    /// Revokes one token (by the token itself).
    pub async fn revoke(&self, token: &str) -> Result<RevokeOutcome, Error> {
        self.sessions.logout(token).await
    }

    /// `DeleteSandbox`: revoke every session on it; returns how many were live.
    pub async fn delete_sandbox(&self, sandbox: &Resource) -> Result<u64, Error> {
        self.sessions.revoke_resource(sandbox).await
    }

    /// One pass of the session reaper (`spawn_session_reaper` runs it every
    /// [`REAPER_INTERVAL`]): removes expired sessions, revoked ones once their tombstone is no
    /// longer needed, and lapsed tickets and slots; never a live session.
    pub async fn reap(&self, limit: usize) -> Result<ReapOutcome, Error> {
        self.sessions.reap(limit).await
    }
}
