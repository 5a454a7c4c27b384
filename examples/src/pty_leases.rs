//! Seed 000: a PTY session lease registry.
//!
//! The seed separates a stable, non-secret **session id** (safe in logs and URLs) from a
//! secret, 30 s, one-shot **attach token** that grants one WebSocket upgrade, and keeps a
//! server-side **lease** (id → expiry) that re-attach and keepalive extend and that tears the
//! PTY down when it lapses. At most 10 000 leases are kept (oldest dropped first), and the
//! lease TTL can be compressed through an environment variable for end-to-end tests.
//!
//! Mapping:
//! - lease = a leasehold session with no absolute lifetime and an idle timeout of the lease
//!   TTL (refresh moves `expires_at` to `now + TTL`, as the seed's `refreshLease`);
//! - session id = [`SessionId`] (non-secret); every by-id call goes through
//!   [`Sessions::trusted_by_id`]: the terminal agent authenticated the caller itself;
//! - attach token = a one-shot ticket ([`TrustedById::mint_ticket`](leasehold::TrustedById::mint_ticket),
//!   [`Sessions::redeem_ticket`]) with a 30 s `ticket_ttl`;
//! - `MAX_LEASES` = a global cap with [`CapPolicy::EvictOldest`].
//!
//! The session token a create returns is not used: the seed has no session bearer secret
//! (only the attach token), so it is dropped at once.

use std::time::Duration;

use leasehold::{
    CapPolicy, Clock, CreateOptions, Error, GlobalCap, Policy, PolicyError, ReapOutcome,
    RevokeOutcome, Scope, SessionId, Sessions, Store, Subject, TicketToken, Timestamp,
};

/// The seed's default lease TTL (30 minutes).
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(30 * 60);
/// The seed's bound on the number of leases.
pub const MAX_LEASES: u64 = 10_000;
/// Lifetime of an attach token.
pub const ATTACH_TOKEN_TTL: Duration = Duration::from_secs(30);
/// The environment variable that overrides the lease TTL (milliseconds).
pub const LEASE_TTL_ENV: &str = "GSTACK_PTY_LEASE_TTL_MS";
/// The token prefix (session kind) of PTY leases.
pub const KIND: &str = "pty";

/// Registry configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseConfig {
    /// How long a lease lives without a refresh.
    pub lease_ttl: Duration,
    /// Most leases kept; the oldest is dropped to make room.
    pub max_leases: u64,
}

impl Default for LeaseConfig {
    fn default() -> Self {
        LeaseConfig {
            lease_ttl: DEFAULT_LEASE_TTL,
            max_leases: MAX_LEASES,
        }
    }
}

impl LeaseConfig {
    /// The defaults, with the lease TTL taken from [`LEASE_TTL_ENV`] if it is set.
    pub fn from_env() -> Self {
        Self::from_env_value(std::env::var(LEASE_TTL_ENV).ok().as_deref())
    }

    /// The defaults, with the lease TTL taken from `value` (milliseconds) if it parses to a
    /// positive number (the seed's `parseInt(process.env.… || default)`).
    pub fn from_env_value(value: Option<&str>) -> Self {
        let lease_ttl = value
            .and_then(|v| v.trim().parse::<u64>().ok())
            .filter(|&ms| ms > 0)
            .map_or(DEFAULT_LEASE_TTL, Duration::from_millis);
        LeaseConfig {
            lease_ttl,
            ..LeaseConfig::default()
        }
    }

    /// The leasehold policy for this configuration. Note that no touch granularity is set:
    /// leasehold clamps it to a tenth of the idle timeout, so a 1 s lease refreshes exactly.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        Policy::builder()
            .no_absolute_lifetime()
            .idle_timeout(Some(self.lease_ttl))
            .renewal_interval(None)
            .ticket_ttl(ATTACH_TOKEN_TTL)
            .global_cap(Some(GlobalCap {
                max: self.max_leases,
                on_full: CapPolicy::EvictOldest,
            }))
            .token_prefix(KIND.into())
            .build()
    }
}

/// A lease as the seed surfaces it to the client: the non-secret id and its expiry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The non-secret session id (safe to log).
    pub session_id: SessionId,
    /// When the lease lapses unless refreshed.
    pub expires_at: Timestamp,
}

/// What `/pty-session`, `/pty-session/reattach` and `/pty-restart` hand the client.
#[derive(Debug)]
pub struct Attach {
    /// The lease.
    pub lease: Lease,
    /// The secret one-shot attach token (keep it out of logs).
    pub attach_token: TicketToken,
    /// When the attach token expires.
    pub attach_expires_at: Timestamp,
}

/// The PTY lease registry.
pub struct PtyLeases<S> {
    sessions: Sessions<S>,
    owner: Subject,
}

impl<S: Store> PtyLeases<S> {
    /// A registry over `store`.
    #[allow(clippy::expect_used)] // a constant, valid subject name
    pub fn new(store: S, config: LeaseConfig) -> Result<Self, PolicyError> {
        // The seed has no users: every lease belongs to the registry itself.
        let owner = Subject::new("terminal-agent").expect("valid subject");
        Ok(PtyLeases {
            sessions: Sessions::new(store, config.policy()?)?,
            owner,
        })
    }

    /// Uses `clock` for time (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.sessions = self.sessions.with_clock(clock);
        self
    }

    /// `/pty-session`: mint a session id + lease + attach token (`create` then a by-id
    /// `mint_ticket`). The seed's lazy prune and `MAX_LEASES` bound are the global cap's
    /// eviction of the oldest lease, in the create's atomic step.
    pub async fn mint_lease(&self) -> Result<Attach, Error> {
        let created = self
            .sessions
            .create(&self.owner, CreateOptions::default())
            .await?;
        // The seed has no session bearer secret: the token is dropped (zeroized) here.
        drop(created.token);
        self.reattach(&created.session.id).await
    }

    /// `/pty-session/reattach`: validate the lease and mint a fresh attach token (by-id
    /// `mint_ticket`, which refuses an ended lease).
    pub async fn reattach(&self, session_id: &SessionId) -> Result<Attach, Error> {
        let m = self
            .sessions
            .trusted_by_id()
            .mint_ticket(session_id)
            .await?;
        Ok(Attach {
            lease: Lease {
                session_id: m.session.id,
                expires_at: m.session.expires_at,
            },
            attach_token: m.ticket,
            attach_expires_at: m.expires_at,
        })
    }

    /// The WS upgrade consumes the attach token: `redeem_ticket` succeeds at most once, within
    /// 30 s, and only while the lease is live.
    pub async fn consume_attach_token(&self, attach_token: &str) -> Result<Lease, Error> {
        let s = self.sessions.redeem_ticket(attach_token).await?;
        Ok(Lease {
            session_id: s.id,
            expires_at: s.expires_at,
        })
    }

    /// `validateLease`: exists and not expired (by-id `get`, which writes down an expiry it
    /// observes, as the seed deletes the stale entry).
    pub async fn validate_lease(&self, session_id: &SessionId) -> Result<Lease, Error> {
        let s = self.sessions.trusted_by_id().get(session_id).await?;
        Ok(Lease {
            session_id: s.id,
            expires_at: s.expires_at,
        })
    }

    /// `refreshLease`: extend to `now + TTL` (by-id `keepalive`); never resurrects an expired
    /// lease.
    pub async fn refresh_lease(&self, session_id: &SessionId) -> Result<Lease, Error> {
        let s = self.sessions.trusted_by_id().keepalive(session_id).await?;
        Ok(Lease {
            session_id: s.id,
            expires_at: s.expires_at,
        })
    }

    /// `revokeLease` (`/pty-dispose`, WS close 4001, agent timeout): by-id `revoke`.
    pub async fn revoke_lease(&self, session_id: &SessionId) -> Result<RevokeOutcome, Error> {
        self.sessions.trusted_by_id().revoke(session_id).await
    }

    /// `/pty-restart`: revoke the old lease, mint a fresh id + lease + attach token.
    pub async fn restart(&self, old: &SessionId) -> Result<Attach, Error> {
        self.revoke_lease(old).await?;
        self.mint_lease().await
    }

    /// `leaseCount`: live leases (`count(Scope::All)`).
    pub async fn lease_count(&self) -> Result<u64, Error> {
        self.sessions.count(&Scope::All).await
    }

    /// Removes lapsed leases and says which ended (the terminal agent disposes their PTYs).
    pub async fn prune_expired(&self, limit: usize) -> Result<ReapOutcome, Error> {
        self.sessions.reap(limit).await
    }
}
