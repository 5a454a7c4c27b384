//! Seed 002 (Valkey session service with access tokens): what its code and comments promise, on
//! memory and sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::{MS, clock, days, mins, on_both_stores, secs, subject};
use leasehold::{Error, ManualClock, RevokeOutcome, RevokeReason, Store, Subject};
use leasehold_examples::token_service::{
    ACCESS_TOKEN_TTL, SESSION_TTL, SessionConfig, TokenService,
};

fn service<S: Store>(store: S) -> (TokenService<S>, ManualClock) {
    let c = clock();
    (
        TokenService::new(store, SessionConfig::default())
            .unwrap()
            .with_clock(c.clone()),
        c,
    )
}

/// The last 43 characters of a token: its secret (base64url of 32 bytes).
fn secret_text(token: &str) -> &str {
    &token[token.len() - 43..]
}

/// Unpadded base64url decoding (for the raw secret bytes).
fn b64url(s: &str) -> Vec<u8> {
    let val = |c: u8| -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'-' => 62,
            b'_' => 63,
            _ => panic!("not base64url"),
        }
    };
    let mut out = Vec::new();
    let (mut acc, mut bits) = (0u32, 0u32);
    for c in s.bytes() {
        acc = (acc << 6) | val(c);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push(u8::try_from((acc >> bits) & 0xff).unwrap());
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// `createSession(did, handle)`: a session id used as refresh token and an access token, both
/// usable; the session carries the DID and the handle.
async fn create_issues_a_refresh_token_and_an_access_token<S: Store>(store: S) {
    let (svc, c) = service(store);
    let did = subject("did:plc:alice");
    let s = svc.create_session(&did, "alice.bsky.social").await.unwrap();
    assert_eq!(s.session.subject, did);
    assert_eq!(s.session.data, b"alice.bsky.social");
    assert_eq!(
        s.access_token_expires_at,
        leasehold::Clock::now(&c).saturating_add(ACCESS_TOKEN_TTL)
    );
    assert_ne!(
        secret_text(s.refresh_token.expose_secret()),
        secret_text(s.access_token.expose_secret())
    );
    let v = svc
        .validate_access_token(s.access_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(v.id, s.session.id);
    assert_eq!(v.data, b"alice.bsky.social");
    // The refresh token is not an access token, nor the other way round.
    assert!(
        svc.validate_access_token(s.refresh_token.expose_secret())
            .await
            .is_err()
    );
    assert!(
        svc.refresh_session(s.access_token.expose_secret())
            .await
            .is_err()
    );
}

/// "Contains only the access token HASH (never the raw token)": no byte the store holds
/// contains either secret, as text or as raw bytes — even after a refresh.
async fn tokens_are_stored_only_as_hashes<S: Store>(store: S) {
    let store = Arc::new(store);
    let (svc, c) = service(Arc::clone(&store));
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    c.advance(mins(1));
    let r = svc
        .refresh_session(s.refresh_token.expose_secret())
        .await
        .unwrap();
    let dump = store.raw_dump().await.unwrap().expect("raw dump supported");
    assert!(!dump.is_empty());
    for token in [
        s.refresh_token.expose_secret(),
        s.access_token.expose_secret(),
        r.refresh_token.expose_secret(),
        r.access_token.expose_secret(),
    ] {
        let text = secret_text(token);
        let raw = b64url(text);
        assert_eq!(raw.len(), 32);
        for entry in &dump {
            assert!(!contains(entry, text.as_bytes()), "secret text stored");
            assert!(!contains(entry, &raw), "raw secret stored");
        }
    }
}

/// `validateAccessToken` looks the session up and reads it: it never writes (the session's
/// activity is not moved by access-token use; only a refresh slides the window).
async fn access_token_validation_is_a_read_only_lookup<S: Store>(store: S) {
    let (svc, c) = service(store);
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    for _ in 0..3 {
        c.advance(mins(4));
        let v = svc
            .validate_access_token(s.access_token.expose_secret())
            .await
            .unwrap();
        assert_eq!(v.last_seen, s.session.last_seen);
        assert_eq!(v.expires_at, s.session.expires_at);
    }
}

/// `accessTokenTtl` (default 900 s): the access token lapses, the session does not; a refresh
/// gives a working one.
async fn access_token_lapses_after_15_minutes<S: Store>(store: S) {
    let (svc, c) = service(store);
    assert_eq!(ACCESS_TOKEN_TTL, mins(15));
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    c.advance(mins(15) - MS);
    svc.validate_access_token(s.access_token.expose_secret())
        .await
        .unwrap();
    c.advance(MS);
    assert_eq!(
        svc.validate_access_token(s.access_token.expose_secret())
            .await
            .unwrap_err(),
        Error::AccessTokenExpired
    );
    let r = svc
        .refresh_session(s.refresh_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        svc.validate_access_token(r.access_token.expose_secret())
            .await
            .unwrap()
            .id,
        s.session.id
    );
}

/// `refreshSession`: "Delete old access token lookup", "generate new access token, keep same
/// session": the old access token is refused at once, the new one works, the session is the
/// same; a retried refresh with the old refresh token (a lost response) gets the same tokens.
async fn refresh_replaces_the_access_token<S: Store>(store: S) {
    let (svc, c) = service(store);
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    c.advance(mins(5));
    let r = svc
        .refresh_session(s.refresh_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(r.session.id, s.session.id);
    assert_ne!(
        r.access_token.expose_secret(),
        s.access_token.expose_secret()
    );
    assert_eq!(
        svc.validate_access_token(s.access_token.expose_secret())
            .await
            .unwrap_err(),
        Error::NotAuthenticated,
        "the replaced access token is refused"
    );
    svc.validate_access_token(r.access_token.expose_secret())
        .await
        .unwrap();
    // The retried refresh inside the grace window: the same successor, not a third token.
    c.advance(secs(2));
    let retry = svc
        .refresh_session(s.refresh_token.expose_secret())
        .await
        .unwrap();
    assert_eq!(
        retry.refresh_token.expose_secret(),
        r.refresh_token.expose_secret()
    );
    assert_eq!(
        retry.access_token.expose_secret(),
        r.access_token.expose_secret()
    );
}

/// "Update session data (sliding window: resets TTL on refresh)": refreshed within 7 days the
/// session lives on; 7 days without a refresh end it.
async fn session_window_slides_on_refresh<S: Store>(store: S) {
    let (svc, c) = service(store);
    assert_eq!(SESSION_TTL, days(7));
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    let mut refresh = s.refresh_token;
    for _ in 0..3 {
        c.advance(days(6));
        refresh = svc
            .refresh_session(refresh.expose_secret())
            .await
            .unwrap()
            .refresh_token;
    }
    // 18 days after login, still alive; now 7 days of silence.
    c.advance(days(7));
    assert_eq!(
        svc.refresh_session(refresh.expose_secret())
            .await
            .unwrap_err(),
        Error::Expired
    );
}

/// `deleteSession` (logout, refresh token from the cookie): both tokens stop working.
async fn logout_ends_the_session_and_its_access_token<S: Store>(store: S) {
    let (svc, _c) = service(store);
    let s = svc
        .create_session(&subject("did:plc:alice"), "alice")
        .await
        .unwrap();
    assert_eq!(
        svc.delete_session(s.refresh_token.expose_secret())
            .await
            .unwrap(),
        RevokeOutcome::Revoked
    );
    let revoked = Error::Revoked {
        reason: RevokeReason::Revoked,
    };
    assert_eq!(
        svc.validate_access_token(s.access_token.expose_secret())
            .await
            .unwrap_err(),
        revoked
    );
    assert_eq!(
        svc.refresh_session(s.refresh_token.expose_secret())
            .await
            .unwrap_err(),
        revoked
    );
    // "Session not found for deletion" is not an error.
    assert!(matches!(
        svc.delete_session(s.refresh_token.expose_secret())
            .await
            .unwrap(),
        RevokeOutcome::AlreadyRevoked { .. }
    ));
}

/// `deleteAllSessionsForDid` (account deletion), with a long `did:web` DID: every session of
/// the DID ends (access tokens included), the count is returned, other DIDs are untouched.
async fn delete_all_for_a_long_did<S: Store>(store: S) {
    let (svc, _c) = service(store);
    let host = format!("{}.example.com", "a".repeat(40));
    let path = (0..11)
        .map(|i| format!("team{i:02}-{}", "x".repeat(40)))
        .collect::<Vec<_>>()
        .join(":");
    let did: Subject = subject(&format!("did:web:{host}:{path}"));
    assert!(did.as_str().len() > 550, "{}", did.as_str().len());
    let other = subject("did:plc:bob");
    let mut mine = Vec::new();
    for _ in 0..3 {
        mine.push(svc.create_session(&did, "long.example").await.unwrap());
    }
    let theirs = svc.create_session(&other, "bob").await.unwrap();
    assert_eq!(svc.sessions_for_did(&did).await.unwrap().len(), 3);
    assert_eq!(svc.delete_all_sessions_for_did(&did).await.unwrap(), 3);
    for s in &mine {
        assert_eq!(
            svc.validate_access_token(s.access_token.expose_secret())
                .await
                .unwrap_err(),
            Error::Revoked {
                reason: RevokeReason::Subject
            }
        );
        assert!(
            svc.refresh_session(s.refresh_token.expose_secret())
                .await
                .is_err()
        );
    }
    assert!(svc.sessions_for_did(&did).await.unwrap().is_empty());
    assert_eq!(svc.delete_all_sessions_for_did(&did).await.unwrap(), 0);
    svc.validate_access_token(theirs.access_token.expose_secret())
        .await
        .unwrap();
}

on_both_stores!(
    create_issues_a_refresh_token_and_an_access_token,
    tokens_are_stored_only_as_hashes,
    access_token_validation_is_a_read_only_lookup,
    access_token_lapses_after_15_minutes,
    refresh_replaces_the_access_token,
    session_window_slides_on_refresh,
    logout_ends_the_session_and_its_access_token,
    delete_all_for_a_long_did,
);
