//! Seed 003 (SSH session-token PR): what its description and tests promise, on memory and sled.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{MS, clock, days, hours, on_both_stores, resource, secs, subject};
use leasehold::{Error, Limit, ManualClock, RevokeReason, Store, TOMBSTONE_RETENTION};
use leasehold_examples::ssh_tokens::{
    DEFAULT_TTL_SECS, MAX_CONNECTIONS_PER_SANDBOX, MAX_CONNECTIONS_PER_TOKEN, SshConfig, SshTokens,
};

fn gateway<S: Store>(store: S, config: SshConfig) -> (SshTokens<S>, ManualClock) {
    let c = clock();
    (
        SshTokens::new(store, config).unwrap().with_clock(c.clone()),
        c,
    )
}

fn ttl(secs: u64) -> SshConfig {
    SshConfig {
        ssh_session_ttl_secs: secs,
        ..SshConfig::default()
    }
}

/// "Token TTL 24 hours": `expired_session_is_detected`, `future_session_is_not_expired`, and
/// `expires_at_ms` in the response.
async fn tokens_expire_after_the_ttl<S: Store>(store: S) {
    assert_eq!(DEFAULT_TTL_SECS, 86_400);
    let (g, c) = gateway(store, SshConfig::default());
    let sb = resource("sandbox-1");
    let s = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    assert_eq!(
        s.expires_at_ms,
        leasehold::Clock::now(&c).as_millis() + 86_400_000
    );
    c.advance(hours(24) - MS);
    let conn = g.open_tunnel(s.token.expose_secret(), &sb).await.unwrap();
    g.close_tunnel(&conn.slot.id).await.unwrap();
    c.advance(MS);
    assert_eq!(
        g.open_tunnel(s.token.expose_secret(), &sb)
            .await
            .unwrap_err(),
        Error::Expired
    );
}

/// "Set to 0 to disable expiry" (`zero_expiry_is_not_expired`): `expires_at_ms = 0`, valid
/// years later; a short TTL is accepted too.
async fn ttl_zero_means_no_expiry<S: Store>(store: S) {
    let (g, c) = gateway(store, ttl(0));
    let sb = resource("sandbox-1");
    let s = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    assert_eq!(s.expires_at_ms, 0);
    c.advance(days(5 * 365));
    g.open_tunnel(s.token.expose_secret(), &sb).await.unwrap();
    // Any TTL is a valid configuration, down to one second.
    SshTokens::new(leasehold::MemoryStore::new(), ttl(1)).unwrap();
}

/// "Per-token concurrent connections 3" (`per_token_connection_limit_enforced`); a closed
/// tunnel frees its place (`decrement_reduces_count`).
async fn at_most_three_connections_per_token<S: Store>(store: S) {
    assert_eq!(MAX_CONNECTIONS_PER_TOKEN, 3);
    let (g, _c) = gateway(store, SshConfig::default());
    let sb = resource("sandbox-1");
    let s = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    let t = s.token.expose_secret();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(g.open_tunnel(t, &sb).await.unwrap());
    }
    assert_eq!(
        g.open_tunnel(t, &sb).await.unwrap_err(),
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    );
    // A second token on the same sandbox is not affected.
    let other = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    g.open_tunnel(other.token.expose_secret(), &sb)
        .await
        .unwrap();
    assert!(g.close_tunnel(&open[0].slot.id).await.unwrap());
    assert!(!g.close_tunnel(&open[0].slot.id).await.unwrap());
    g.open_tunnel(t, &sb).await.unwrap();
}

/// "Per-sandbox concurrent connections 20 … Even if an attacker mints many tokens, total
/// connections to a single sandbox are capped" (`per_sandbox_connection_limit_enforced`).
async fn at_most_twenty_connections_per_sandbox<S: Store>(store: S) {
    assert_eq!(MAX_CONNECTIONS_PER_SANDBOX, 20);
    let (g, _c) = gateway(store, SshConfig::default());
    let sb = resource("sandbox-1");
    let mut opened = 0;
    let mut refused = None;
    'mint: for _ in 0..7 {
        let s = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
        for _ in 0..3 {
            match g.open_tunnel(s.token.expose_secret(), &sb).await {
                Ok(_) => opened += 1,
                Err(e) => {
                    refused = Some(e);
                    break 'mint;
                }
            }
        }
    }
    assert_eq!(opened, 20);
    assert_eq!(
        refused,
        Some(Error::LimitReached {
            limit: Limit::ResourceSlots
        })
    );
    // Another sandbox has its own 20.
    let sb2 = resource("sandbox-2");
    let s = g.create_ssh_session(&subject("cli"), &sb2).await.unwrap();
    g.open_tunnel(s.token.expose_secret(), &sb2).await.unwrap();
}

/// Tunnel validation checks the token belongs to the sandbox the CONNECT names.
async fn token_for_another_sandbox_is_refused<S: Store>(store: S) {
    let (g, _c) = gateway(store, SshConfig::default());
    let s = g
        .create_ssh_session(&subject("cli"), &resource("sandbox-1"))
        .await
        .unwrap();
    assert_eq!(
        g.open_tunnel(s.token.expose_secret(), &resource("sandbox-2"))
            .await
            .unwrap_err(),
        Error::Refused
    );
    g.open_tunnel(s.token.expose_secret(), &resource("sandbox-1"))
        .await
        .unwrap();
}

/// "Clean up all SSH sessions when a sandbox is deleted": its tokens stop working and its open
/// tunnels lose their place; other sandboxes are untouched.
async fn deleting_a_sandbox_revokes_its_tokens<S: Store>(store: S) {
    let (g, c) = gateway(store, SshConfig::default());
    let (sb1, sb2) = (resource("sandbox-1"), resource("sandbox-2"));
    let a = g.create_ssh_session(&subject("cli"), &sb1).await.unwrap();
    let b = g.create_ssh_session(&subject("ci"), &sb1).await.unwrap();
    let other = g.create_ssh_session(&subject("cli"), &sb2).await.unwrap();
    let tunnel = g.open_tunnel(a.token.expose_secret(), &sb1).await.unwrap();
    let other_tunnel = g
        .open_tunnel(other.token.expose_secret(), &sb2)
        .await
        .unwrap();
    assert_eq!(g.delete_sandbox(&sb1).await.unwrap(), 2);
    for s in [&a, &b] {
        assert_eq!(
            g.open_tunnel(s.token.expose_secret(), &sb1)
                .await
                .unwrap_err(),
            Error::Revoked {
                reason: RevokeReason::Resource
            }
        );
    }
    c.advance(secs(10));
    assert_eq!(
        g.heartbeat(&tunnel.slot.id).await.unwrap_err(),
        Error::SlotLost
    );
    g.heartbeat(&other_tunnel.slot.id).await.unwrap();
    g.open_tunnel(other.token.expose_secret(), &sb2)
        .await
        .unwrap();
}

/// `reaper_deletes_expired_sessions`: the reaper removes an expired session and says so; a
/// live one is kept.
async fn reaper_deletes_expired_sessions<S: Store>(store: S) {
    let (g, c) = gateway(store, ttl(3600));
    let sb = resource("sandbox-1");
    let old = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    c.advance(secs(1800));
    let young = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    c.advance(secs(1800));
    let out = g.reap(100).await.unwrap();
    assert_eq!(out.sessions, 1);
    assert_eq!(out.ended.len(), 1);
    assert_eq!(out.ended[0].id, old.session.id);
    assert_eq!(out.ended[0].resource, Some(sb.clone()));
    assert_eq!(out.ended[0].reason, Some(RevokeReason::Expired));
    // Gone from the store: no longer even "expired".
    assert_eq!(
        g.open_tunnel(old.token.expose_secret(), &sb)
            .await
            .unwrap_err(),
        Error::NotAuthenticated
    );
    g.open_tunnel(young.token.expose_secret(), &sb)
        .await
        .unwrap();
}

/// `reaper_deletes_revoked_sessions` and `reaper_preserves_zero_expiry_sessions`: with TTL 0
/// a revoked session is still reclaimed (its tombstone after `TOMBSTONE_RETENTION`), while a
/// live session with no expiry is never reaped.
async fn reaper_deletes_revoked_and_preserves_zero_expiry_sessions<S: Store>(store: S) {
    let (g, c) = gateway(store, ttl(0));
    let sb = resource("sandbox-1");
    let revoked = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    let kept = g.create_ssh_session(&subject("cli"), &sb).await.unwrap();
    g.revoke(revoked.token.expose_secret()).await.unwrap();
    // Right after the revocation the tombstone is kept (it refuses stale writes)…
    assert_eq!(g.reap(100).await.unwrap().sessions, 0);
    assert_eq!(
        g.open_tunnel(revoked.token.expose_secret(), &sb)
            .await
            .unwrap_err(),
        Error::Revoked {
            reason: RevokeReason::Revoked
        }
    );
    // …and reclaimed once its retention has passed, even though the session had no deadline.
    c.advance(TOMBSTONE_RETENTION + MS);
    let out = g.reap(100).await.unwrap();
    assert_eq!(out.sessions, 1);
    let ended: Vec<_> = out.ended.iter().map(|e| (e.id, e.reason)).collect();
    assert_eq!(
        ended,
        vec![(revoked.session.id, Some(RevokeReason::Revoked))]
    );
    assert_eq!(
        g.open_tunnel(revoked.token.expose_secret(), &sb)
            .await
            .unwrap_err(),
        Error::NotAuthenticated
    );
    g.open_tunnel(kept.token.expose_secret(), &sb)
        .await
        .unwrap();
}

on_both_stores!(
    tokens_expire_after_the_ttl,
    ttl_zero_means_no_expiry,
    at_most_three_connections_per_token,
    at_most_twenty_connections_per_sandbox,
    token_for_another_sandbox_is_refused,
    deleting_a_sandbox_revokes_its_tokens,
    reaper_deletes_expired_sessions,
    reaper_deletes_revoked_and_preserves_zero_expiry_sessions,
);
