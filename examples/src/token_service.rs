//! Seed 002: a Valkey session service with access tokens (an AT Protocol app's login).
//!
//! The seed issues, after an OAuth callback, a session id used as a 7-day **refresh token**
//! (an HTTP-only cookie) and a 15-minute **access token**; it persists only the SHA-256 of the
//! access token, validates an access token by hash lookup, refreshes by issuing a new access
//! token (the old lookup is deleted; the session TTL slides), deletes a session on logout, and
//! deletes every session of a DID on account deletion.
//!
//! Mapping:
//! - refresh token = the leasehold session token, idle timeout 7 days (the seed's sliding
//!   `EX sessionTtl`, reset on every refresh), no absolute lifetime (the seed has none);
//! - access token = `access_ttl` 15 min, checked by [`Sessions::validate_access`] (one store
//!   read, no write);
//! - refresh = [`Sessions::refresh`]: a new access token *and* a rotated refresh token (the
//!   seed keeps the same sid; here the old refresh token is answered with the same successor
//!   within the grace window, and presenting it later is a theft signal);
//! - only hashes are stored: leasehold stores verifiers of every secret, never a secret;
//! - logout = [`Sessions::logout`] (by the refresh token); delete all for a DID =
//!   [`Sessions::revoke_subject`]. The DID is the subject (up to 1 KiB: `did:web` DIDs are
//!   long); the handle is the session's data.

use std::time::Duration;

use leasehold::{
    AccessToken, Clock, Context, CreateOptions, Error, Policy, PolicyError, RevokeOutcome, Session,
    SessionToken, Sessions, Store, Subject, Timestamp,
};

/// The seed's default session TTL (7 days).
pub const SESSION_TTL: Duration = Duration::from_secs(7 * 24 * 3600);
/// The seed's default access token TTL (15 minutes).
pub const ACCESS_TOKEN_TTL: Duration = Duration::from_secs(15 * 60);

/// Service configuration (the seed's `SessionConfig`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SessionConfig {
    /// Session (refresh token) lifetime since its last refresh.
    pub session_ttl: Duration,
    /// Access token lifetime.
    pub access_token_ttl: Duration,
}

impl Default for SessionConfig {
    fn default() -> Self {
        SessionConfig {
            session_ttl: SESSION_TTL,
            access_token_ttl: ACCESS_TOKEN_TTL,
        }
    }
}

impl SessionConfig {
    /// The leasehold policy for this configuration.
    pub fn policy(&self) -> Result<Policy, PolicyError> {
        Policy::builder()
            .no_absolute_lifetime()
            .idle_timeout(Some(self.session_ttl))
            .renewal_interval(None)
            .access_ttl(Some(self.access_token_ttl))
            .token_prefix("brzsess".into())
            .access_prefix("brzacc".into())
            .ticket_prefix("brztkt".into())
            .build()
    }
}

/// The seed's `SessionWithToken`: the session and the raw tokens for the HTTP response (the
/// only place they exist outside the client).
#[derive(Debug)]
pub struct SessionWithTokens {
    /// The session (`subject` is the DID, `data` the handle).
    pub session: Session,
    /// The refresh token (HTTP-only cookie).
    pub refresh_token: SessionToken,
    /// The access token.
    pub access_token: AccessToken,
    /// When the access token expires.
    pub access_token_expires_at: Timestamp,
}

/// The session service.
pub struct TokenService<S> {
    sessions: Sessions<S>,
}

impl<S: Store> TokenService<S> {
    /// A service over `store`.
    pub fn new(store: S, config: SessionConfig) -> Result<Self, PolicyError> {
        Ok(TokenService {
            sessions: Sessions::new(store, config.policy()?)?,
        })
    }

    /// Uses `clock` for time (tests: a `ManualClock`).
    pub fn with_clock(mut self, clock: impl Clock) -> Self {
        self.sessions = self.sessions.with_clock(clock);
        self
    }

    fn with_tokens(
        &self,
        session: Session,
        refresh_token: SessionToken,
        access: Option<AccessToken>,
    ) -> Result<SessionWithTokens, Error> {
        let access_token = access.ok_or_else(|| {
            Error::CorruptRecord("the policy issues access tokens, none was returned".into())
        })?;
        let access_token_expires_at = session
            .access_expires_at
            .ok_or_else(|| Error::CorruptRecord("the session holds no access grant".into()))?;
        Ok(SessionWithTokens {
            session,
            refresh_token,
            access_token,
            access_token_expires_at,
        })
    }

    /// `createSession(did, handle)`: `create` with the DID as subject and the handle as data.
    pub async fn create_session(
        &self,
        did: &Subject,
        handle: &str,
    ) -> Result<SessionWithTokens, Error> {
        let c = self
            .sessions
            .create(
                did,
                CreateOptions {
                    data: handle.as_bytes().to_vec(),
                    ..CreateOptions::default()
                },
            )
            .await?;
        self.with_tokens(c.session, c.token, c.access)
    }

    /// `validateAccessToken`: `validate_access` (one store read).
    pub async fn validate_access_token(&self, access_token: &str) -> Result<Session, Error> {
        self.sessions.validate_access(access_token).await
    }

    /// `refreshSession(refresh token)`: `refresh` — a new access token (the previous one stops
    /// validating) and a rotated refresh token; the session's 7-day window restarts.
    pub async fn refresh_session(&self, refresh_token: &str) -> Result<SessionWithTokens, Error> {
        let r = self
            .sessions
            .refresh(refresh_token, &Context::none())
            .await?;
        self.with_tokens(r.session, r.token, r.access)
    }

    /// `deleteSession` (logout, by the refresh token from the cookie): `logout`.
    pub async fn delete_session(&self, refresh_token: &str) -> Result<RevokeOutcome, Error> {
        self.sessions.logout(refresh_token).await
    }

    /// `deleteAllSessionsForDid` (account deletion): `revoke_subject`; returns how many were
    /// live.
    pub async fn delete_all_sessions_for_did(&self, did: &Subject) -> Result<u64, Error> {
        self.sessions.revoke_subject(did).await
    }

    /// The live sessions of a DID (the seed's DID index).
    pub async fn sessions_for_did(&self, did: &Subject) -> Result<Vec<Session>, Error> {
        self.sessions.list(did).await
    }
}
