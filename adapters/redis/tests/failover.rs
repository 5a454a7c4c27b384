//! Failover: a primary and a replica on throwaway loopback servers; the primary is killed, the
//! replica promoted (`REPLICAOF NO ONE`) and a new store pointed at it.
//!
//! - With `RedisConfig::wait_replicas(1, …)` every acknowledged revocation, rotation and ticket
//!   redemption survives.
//! - Without it, acknowledged security writes can be lost. The loss is made deterministic, not
//!   raced: the replica is paused (`SIGSTOP`) and its link cut on the primary
//!   (`CLIENT KILL TYPE replica`), so the writes that follow reach the primary only. A store
//!   without `WAIT` acknowledges them and the promoted replica has never seen them (a revoked
//!   session is valid again, a redeemed ticket redeems again, a rotated-out token works); a
//!   store with `WAIT` answers the same write with a typed error (outcome unknown: retry it
//!   against the new primary) instead of acknowledging it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use leasehold::{Error, Policy, Sessions, StoreError, Subject};
use leasehold_redis::{RedisConfig, RedisStore};
use support::{Server, rt};

/// A primary and a replica of it, in sync.
fn pair() -> (Server, Server) {
    // A disk-based full sync: the diskless one waits 5 s for more replicas, then streams
    // nothing until the replica's first ACK (up to 1 s later).
    let primary = Server::start(&["--repl-diskless-sync", "no"]).unwrap();
    let port = primary.port.to_string();
    let replica = Server::start(&["--replicaof", "127.0.0.1", &port]).unwrap();
    replica.wait_in_sync_with(&primary).unwrap();
    (primary, replica)
}

/// A driver on `url`; with `wait`, `WAIT 1 <wait>` after every security write.
async fn sessions(url: String, prefix: &str, wait: Option<Duration>) -> Sessions<RedisStore> {
    let mut config = RedisConfig::new(url)
        .prefix(prefix)
        .timeout(Duration::from_secs(5));
    if let Some(t) = wait {
        config = config.wait_replicas(1, t);
    }
    let policy = Policy::builder()
        .grace_window(Duration::ZERO)
        .orphan_window(Duration::ZERO)
        .build()
        .unwrap();
    Sessions::new(RedisStore::open(config).await.unwrap(), policy).unwrap()
}

/// Kills the primary, promotes the replica, and opens a store on it.
async fn fail_over(primary: &Server, replica: &Server, prefix: &str) -> Sessions<RedisStore> {
    primary.crash();
    assert!(replica.cli(&["replicaof", "no", "one"]).contains("OK"));
    sessions(replica.url(), prefix, None).await
}

fn token(c: &leasehold::Created) -> String {
    c.token.expose_secret().to_string()
}

#[test]
fn with_wait_every_acknowledged_security_write_survives_a_failover() {
    let (primary, replica) = pair();
    rt().block_on(async {
        let prefix = support::fresh_prefix();
        // Generous: with the replica connected, WAIT returns as soon as it acknowledges.
        let s = sessions(primary.url(), &prefix, Some(Duration::from_secs(3))).await;
        let new = |name: &str| Subject::new(name).unwrap();
        let revoked = token(&s.create(&new("x"), Default::default()).await.unwrap());
        let rotated_old = token(&s.create(&new("y"), Default::default()).await.unwrap());
        let keeper = token(&s.create(&new("z"), Default::default()).await.unwrap());
        let everywhere = token(&s.create(&new("w"), Default::default()).await.unwrap());

        s.logout(&revoked).await.unwrap();
        let rotated_new = s
            .refresh(&rotated_old, &Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        let minted = s.mint_ticket(&keeper, &Default::default()).await.unwrap();
        let ticket = minted.ticket.expose_secret().to_string();
        s.redeem_ticket(&ticket).await.unwrap();
        assert_eq!(s.revoke_subject(&new("w")).await.unwrap(), 1);

        let s2 = fail_over(&primary, &replica, &prefix).await;
        let e = s2
            .validate(&revoked, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
        let e = s2
            .validate(&everywhere, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
        assert!(
            s2.redeem_ticket(&ticket).await.is_err(),
            "ticket redeemed twice"
        );
        s2.validate(&keeper, &Default::default()).await.unwrap();
        s2.validate(&rotated_new, &Default::default())
            .await
            .unwrap();
        let e = s2
            .validate(&rotated_old, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::ReuseDetected), "{e:?}");
    });
}

#[test]
fn without_wait_a_failover_loses_acknowledged_writes_that_wait_refuses_to_acknowledge() {
    let (primary, replica) = pair();
    rt().block_on(async {
        let prefix = support::fresh_prefix();
        let plain = sessions(primary.url(), &prefix, None).await;
        // Short: the refusal below waits this long for a replica that cannot answer.
        let waiting = sessions(primary.url(), &prefix, Some(Duration::from_millis(300))).await;
        let new = |name: &str| Subject::new(name).unwrap();
        let revoked = token(&plain.create(&new("a"), Default::default()).await.unwrap());
        let rotated_old = token(&plain.create(&new("b"), Default::default()).await.unwrap());
        let keeper = token(&plain.create(&new("c"), Default::default()).await.unwrap());
        let minted = plain
            .mint_ticket(&keeper, &Default::default())
            .await
            .unwrap();
        let ticket = minted.ticket.expose_secret().to_string();
        let refused = token(&plain.create(&new("d"), Default::default()).await.unwrap());
        replica.wait_in_sync_with(&primary).unwrap();

        // Cut replication: nothing written from here on reaches the replica.
        replica.signal("STOP");
        assert_eq!(
            primary.cli(&["client", "kill", "type", "replica"]).trim(),
            "1"
        );

        // Without WAIT: acknowledged.
        plain.logout(&revoked).await.unwrap();
        let rotated_new = plain
            .refresh(&rotated_old, &Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        plain.redeem_ticket(&ticket).await.unwrap();
        // With WAIT: the same kind of write is not acknowledged.
        match waiting.logout(&refused).await {
            Err(Error::StoreUnavailable(StoreError::Unavailable(m))) => {
                assert!(m.contains("WAIT: 0 of 1"), "{m}")
            }
            other => panic!("a revocation no replica has was acknowledged: {other:?}"),
        }

        // The primary dies before the replica runs again (else it would resync).
        primary.crash();
        replica.signal("CONT");
        let s2 = fail_over(&primary, &replica, &prefix).await;
        // Lost: the revoked session is valid again, the ticket redeems a second time, the
        // rotated-out token works and its successor is unknown.
        s2.validate(&revoked, &Default::default()).await.unwrap();
        s2.redeem_ticket(&ticket).await.unwrap();
        s2.validate(&rotated_old, &Default::default())
            .await
            .unwrap();
        let e = s2
            .validate(&rotated_new, &Default::default())
            .await
            .unwrap_err();
        assert!(!matches!(e, Error::StoreUnavailable(_)), "{e:?}");
        eprintln!("the successor of the lost rotation, after the failover: {e:?}");
        // The unacknowledged revocation: unknown outcome, so the caller retries it on the new
        // primary, and then it holds.
        s2.validate(&refused, &Default::default()).await.unwrap();
        s2.logout(&refused).await.unwrap();
        let e = s2
            .validate(&refused, &Default::default())
            .await
            .unwrap_err();
        assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
    });
}
