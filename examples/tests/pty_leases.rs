//! Seed 000 (PTY lease registry): what its code and comments promise, on memory and sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{MS, clock, mins, ms, on_both_stores, secs};
use leasehold::{Error, RevokeOutcome, RevokeReason, SessionId, Store};
use leasehold_examples::pty_leases::{
    ATTACH_TOKEN_TTL, DEFAULT_LEASE_TTL, LeaseConfig, MAX_LEASES, PtyLeases,
};

fn registry<S: Store>(store: S, config: LeaseConfig) -> (PtyLeases<S>, leasehold::ManualClock) {
    let c = clock();
    (
        PtyLeases::new(store, config).unwrap().with_clock(c.clone()),
        c,
    )
}

/// "sessionId — stable, non-secret … attachToken — secret … for ONE attach attempt": the id is
/// not a credential, and the attach token opens the session exactly once.
async fn mint_gives_a_non_secret_id_and_a_one_shot_attach_token<S: Store>(store: S) {
    let (r, _c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    let id_text = a.lease.session_id.to_string();
    // The id is no bearer credential: presented as an attach token it opens nothing.
    assert!(matches!(
        r.consume_attach_token(&id_text).await,
        Err(Error::Malformed(_))
    ));
    // The attach token's Display (what a log would print) never shows its secret.
    let secret = a.attach_token.expose_secret();
    assert!(
        !a.attach_token
            .to_string()
            .contains(&secret[secret.len() - 43..])
    );

    let lease = r.consume_attach_token(secret).await.unwrap();
    assert_eq!(lease.session_id, a.lease.session_id);
    assert_eq!(
        r.consume_attach_token(secret).await.unwrap_err(),
        Error::NotAuthenticated,
        "an attach token is consumed by the first upgrade"
    );
    // The lease itself is untouched by the consumption.
    r.validate_lease(&a.lease.session_id).await.unwrap();
}

/// "secret, short-lived (30 s) bearer credential".
async fn attach_token_lapses_after_30_seconds<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    assert_eq!(ATTACH_TOKEN_TTL, secs(30));
    let early = r.mint_lease().await.unwrap();
    let late = r.mint_lease().await.unwrap();
    assert_eq!(
        late.attach_expires_at,
        late.lease
            .expires_at
            .saturating_sub(DEFAULT_LEASE_TTL)
            .saturating_add(ATTACH_TOKEN_TTL)
    );
    c.advance(secs(30) - MS);
    r.consume_attach_token(early.attach_token.expose_secret())
        .await
        .unwrap();
    c.advance(MS);
    assert_eq!(
        r.consume_attach_token(late.attach_token.expose_secret())
            .await
            .unwrap_err(),
        Error::Expired
    );
}

/// "/pty-session/reattach: validate sessionId/lease, mint fresh attachToken".
async fn reattach_mints_a_fresh_attach_token_for_a_live_lease_only<S: Store>(store: S) {
    let (r, _c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    r.consume_attach_token(a.attach_token.expose_secret())
        .await
        .unwrap();
    let again = r.reattach(&a.lease.session_id).await.unwrap();
    assert_ne!(
        again.attach_token.expose_secret(),
        a.attach_token.expose_secret()
    );
    assert_eq!(
        r.consume_attach_token(again.attach_token.expose_secret())
            .await
            .unwrap()
            .session_id,
        a.lease.session_id
    );
    r.revoke_lease(&a.lease.session_id).await.unwrap();
    assert!(r.reattach(&a.lease.session_id).await.is_err());
    let unknown = SessionId::parse(&"0".repeat(leasehold::ID_TEXT_LEN)).unwrap();
    assert_eq!(
        r.reattach(&unknown).await.unwrap_err(),
        Error::NotAuthenticated
    );
}

/// `validateLease`: "exists AND not expired"; an expired lease stays invalid.
async fn validate_lease_is_ok_until_the_ttl_then_never_again<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    let id = a.lease.session_id;
    c.advance(DEFAULT_LEASE_TTL - MS);
    assert_eq!(
        r.validate_lease(&id).await.unwrap().expires_at,
        a.lease.expires_at
    );
    c.advance(MS);
    assert_eq!(r.validate_lease(&id).await.unwrap_err(), Error::Expired);
    assert!(r.validate_lease(&id).await.is_err());
    // Validation is not a refresh: it never moved the expiry.
    assert!(r.refresh_lease(&id).await.is_err());
}

/// `refreshLease`: "Extend the lease's expiresAt to now + LEASE_TTL_MS".
async fn refresh_extends_the_lease_to_now_plus_ttl<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    let id = a.lease.session_id;
    c.advance(mins(20));
    let refreshed = r.refresh_lease(&id).await.unwrap();
    assert_eq!(
        refreshed.expires_at,
        c_now(&c).saturating_add(DEFAULT_LEASE_TTL)
    );
    c.advance(mins(20)); // 40 min after minting: alive only thanks to the refresh
    r.validate_lease(&id).await.unwrap();
    c.advance(mins(10));
    assert_eq!(r.validate_lease(&id).await.unwrap_err(), Error::Expired);
}

fn c_now(c: &leasehold::ManualClock) -> leasehold::Timestamp {
    leasehold::Clock::now(c)
}

/// "Critical security invariant: never resurrect an expired lease".
async fn refresh_never_resurrects_an_expired_lease<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    let id = a.lease.session_id;
    c.advance(DEFAULT_LEASE_TTL + MS);
    assert_eq!(r.refresh_lease(&id).await.unwrap_err(), Error::Expired);
    assert!(r.refresh_lease(&id).await.is_err());
    assert!(r.validate_lease(&id).await.is_err());
    assert!(r.reattach(&id).await.is_err());
}

/// `/pty-dispose`: "revoke lease"; an attach token minted before cannot attach afterwards.
async fn dispose_revokes_the_lease_and_its_pending_attach_token<S: Store>(store: S) {
    let (r, _c) = registry(store, LeaseConfig::default());
    let a = r.mint_lease().await.unwrap();
    let id = a.lease.session_id;
    assert_eq!(r.revoke_lease(&id).await.unwrap(), RevokeOutcome::Revoked);
    assert_eq!(
        r.validate_lease(&id).await.unwrap_err(),
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    assert!(
        r.consume_attach_token(a.attach_token.expose_secret())
            .await
            .is_err()
    );
    // Revoking again (a WS close after a dispose) is harmless.
    assert!(matches!(
        r.revoke_lease(&id).await.unwrap(),
        RevokeOutcome::AlreadyRevoked { .. }
    ));
}

/// `/pty-restart`: "revoke old lease, mint fresh sessionId + lease + attachToken".
async fn restart_replaces_the_lease<S: Store>(store: S) {
    let (r, _c) = registry(store, LeaseConfig::default());
    let old = r.mint_lease().await.unwrap();
    let new = r.restart(&old.lease.session_id).await.unwrap();
    assert_ne!(new.lease.session_id, old.lease.session_id);
    assert!(r.validate_lease(&old.lease.session_id).await.is_err());
    assert!(
        r.consume_attach_token(old.attach_token.expose_secret())
            .await
            .is_err()
    );
    r.consume_attach_token(new.attach_token.expose_secret())
        .await
        .unwrap();
    r.validate_lease(&new.lease.session_id).await.unwrap();
}

/// `MAX_LEASES` / `pruneExpired`: "while (leases.size > MAX_LEASES) delete the first" — the
/// registry stays bounded by dropping the oldest lease (a small cap stands in for 10 000).
async fn registry_is_bounded_by_dropping_the_oldest_lease<S: Store>(store: S) {
    assert_eq!(MAX_LEASES, 10_000);
    assert_eq!(LeaseConfig::default().max_leases, MAX_LEASES);
    let (r, c) = registry(
        store,
        LeaseConfig {
            max_leases: 3,
            ..LeaseConfig::default()
        },
    );
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(r.mint_lease().await.unwrap().lease.session_id);
        c.advance(ms(10));
    }
    let fourth = r.mint_lease().await.unwrap();
    assert_eq!(
        r.validate_lease(&ids[0]).await.unwrap_err(),
        Error::Revoked {
            reason: RevokeReason::Evicted
        }
    );
    for id in &ids[1..] {
        r.validate_lease(id).await.unwrap();
    }
    r.validate_lease(&fourth.lease.session_id).await.unwrap();
    assert_eq!(r.lease_count().await.unwrap(), 3);
}

/// `leaseCount`: the live leases.
async fn lease_count_counts_live_leases<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    assert_eq!(r.lease_count().await.unwrap(), 0);
    let a = r.mint_lease().await.unwrap();
    let b = r.mint_lease().await.unwrap();
    c.advance(mins(20));
    let fresh = r.mint_lease().await.unwrap();
    assert_eq!(r.lease_count().await.unwrap(), 3);
    r.revoke_lease(&a.lease.session_id).await.unwrap();
    assert_eq!(r.lease_count().await.unwrap(), 2);
    c.advance(mins(15)); // b lapsed (35 min), fresh did not (15 min)
    assert_eq!(r.lease_count().await.unwrap(), 1);
    r.validate_lease(&fresh.lease.session_id).await.unwrap();
    assert!(r.validate_lease(&b.lease.session_id).await.is_err());
}

/// "Lease TTL is env-overridable so e2e tests can compress detach windows to 1 s": a 1 s lease
/// works with no other tuning (each refresh really moves the expiry), and the variable parses
/// as the seed's `parseInt`.
async fn one_second_lease_needs_no_tuning<S: Store>(store: S) {
    let config = LeaseConfig::from_env_value(Some("1000"));
    assert_eq!(config.lease_ttl, secs(1));
    assert_eq!(
        LeaseConfig::from_env_value(None).lease_ttl,
        DEFAULT_LEASE_TTL
    );
    assert_eq!(
        LeaseConfig::from_env_value(Some("soon")).lease_ttl,
        DEFAULT_LEASE_TTL
    );
    let (r, c) = registry(store, config);
    let a = r.mint_lease().await.unwrap();
    let id = a.lease.session_id;
    for _ in 0..5 {
        c.advance(ms(600));
        let l = r.refresh_lease(&id).await.unwrap();
        assert_eq!(
            l.expires_at,
            c_now(&c).saturating_add(secs(1)),
            "the refresh moved the expiry"
        );
    }
    // 3 s after minting, alive only through the refreshes; then a 1 s detach ends it.
    c.advance(secs(1));
    assert_eq!(r.validate_lease(&id).await.unwrap_err(), Error::Expired);
}

/// Lease expiry "tears down the session": pruning says which leases ended.
async fn pruning_names_the_lapsed_leases<S: Store>(store: S) {
    let (r, c) = registry(store, LeaseConfig::default());
    let gone = r.mint_lease().await.unwrap().lease.session_id;
    c.advance(mins(20));
    let kept = r.mint_lease().await.unwrap().lease.session_id;
    c.advance(mins(11));
    let out = r.prune_expired(100).await.unwrap();
    let ended: Vec<_> = out.ended.iter().map(|e| e.id).collect();
    assert_eq!(ended, vec![gone]);
    assert_eq!(out.ended[0].reason, Some(RevokeReason::Expired));
    r.validate_lease(&kept).await.unwrap();
}

on_both_stores!(
    mint_gives_a_non_secret_id_and_a_one_shot_attach_token,
    attach_token_lapses_after_30_seconds,
    reattach_mints_a_fresh_attach_token_for_a_live_lease_only,
    validate_lease_is_ok_until_the_ttl_then_never_again,
    refresh_extends_the_lease_to_now_plus_ttl,
    refresh_never_resurrects_an_expired_lease,
    dispose_revokes_the_lease_and_its_pending_attach_token,
    restart_replaces_the_lease,
    registry_is_bounded_by_dropping_the_oldest_lease,
    lease_count_counts_live_leases,
    one_second_lease_needs_no_tuning,
    pruning_names_the_lapsed_leases,
);
