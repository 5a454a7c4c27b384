//! The shared conformance suite against `RedisStore` on a 3-node Redis Cluster the test starts
//! on free loopback ports (stopped when this test binary exits), plus a check that one case's
//! keys really span several slots on every node.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

leasehold_conformance::conformance_tests!(
    leasehold_conformance::fallible(|| support::suite_store(true, true)),
    capabilities = [
        native_expiry,
        raw_dump,
        multi_process,
        server_clock,
        sharded
    ],
);

/// Sessions of one resource under many subjects: their records live in many slots on all
/// three nodes (`redis-cli --cluster create` gives the nodes slots 0-5460, 5461-10922 and
/// 10923-16383), and revoke_resource (the cross-slot protocol) ends every one of them.
#[test]
fn a_resource_spans_slots_on_every_node_and_is_revoked_whole() {
    use leasehold::{Clock, ManualClock, Policy, Resource, Sessions, Subject, SystemClock};
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = support::cluster_url().unwrap();
        let (store, _cleanup) = support::open(&url).await.unwrap();
        let s = Sessions::new(store.clone(), Policy::default())
            .unwrap()
            .with_clock(ManualClock::new(SystemClock.now()));
        let res = Resource::new("sandbox-x").unwrap();
        let mut tokens = Vec::new();
        for i in 0..24 {
            let opts = leasehold::CreateOptions {
                resource: Some(res.clone()),
                ..Default::default()
            };
            let c = s
                .create(&Subject::new(format!("user-{i}")).unwrap(), opts)
                .await
                .unwrap();
            tokens.push(c.token);
        }
        let first = url
            .trim_start_matches("redis+cluster://")
            .split(',')
            .next()
            .unwrap();
        let port = first.rsplit(':').next().unwrap().to_string();
        let mut slots = std::collections::BTreeSet::new();
        let mut nodes = std::collections::BTreeSet::new();
        for k in store.all_keys().await.unwrap() {
            let k = String::from_utf8_lossy(&k).into_owned();
            if !k.contains(":s:{") {
                continue;
            }
            let o = std::process::Command::new(support::cli_bin())
                .args(["-p", &port, "cluster", "keyslot", &k])
                .output()
                .unwrap();
            let slot: u16 = String::from_utf8_lossy(&o.stdout).trim().parse().unwrap();
            slots.insert(slot);
            nodes.insert(match slot {
                0..=5460 => 0,
                5461..=10922 => 1,
                _ => 2,
            });
        }
        assert!(slots.len() >= 10, "records in only {} slots", slots.len());
        assert_eq!(nodes.len(), 3, "records on {} of 3 nodes", nodes.len());
        let n = leasehold::Store::revoke_resource(&store, &res, SystemClock.now())
            .await
            .unwrap();
        assert_eq!(n, 24);
        for t in &tokens {
            assert!(
                s.validate(t.expose_secret(), &Default::default())
                    .await
                    .is_err()
            );
        }
    });
}

/// `wait_replicas` on a Cluster: the `WAIT` reaches the primaries, so on this Cluster (no
/// replicas) a security write with `wait_replicas(1, …)` is not acknowledged (a typed error,
/// outcome unknown), while `wait_replicas(0, …)` acknowledges it.
#[test]
fn wait_replicas_is_enforced_on_a_cluster() {
    use leasehold::{Error, Policy, Sessions, StoreError, Subject};
    use leasehold_redis::{RedisConfig, RedisStore};
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let url = support::cluster_url().unwrap();
        let prefix = support::fresh_prefix();
        let _cleanup = support::Cleanup {
            url: url.clone(),
            prefix: prefix.clone(),
        };
        let open = |n| {
            RedisStore::open(
                RedisConfig::new(url.clone())
                    .prefix(prefix.clone())
                    .wait_replicas(n, Duration::from_millis(50)),
            )
        };
        let zero = Sessions::new(open(0).await.unwrap(), Policy::default()).unwrap();
        let one = Sessions::new(open(1).await.unwrap(), Policy::default()).unwrap();
        let made = zero
            .create(&Subject::new("w0").unwrap(), Default::default())
            .await
            .unwrap();
        let e = one
            .create(&Subject::new("w1").unwrap(), Default::default())
            .await
            .unwrap_err();
        match e {
            Error::StoreUnavailable(StoreError::Unavailable(m)) => {
                assert!(m.contains("WAIT: 0 of 1"), "{m}")
            }
            e => panic!("{e:?}"),
        }
        // A read is no security write: no WAIT.
        one.validate(made.token.expose_secret(), &Default::default())
            .await
            .unwrap();
        let e = one.logout(made.token.expose_secret()).await.unwrap_err();
        assert!(matches!(e, Error::StoreUnavailable(_)), "{e:?}");
    });
}

/// `wait_replicas(1, …)` on a Cluster whose three primaries have one replica each: every
/// security write is acknowledged (the smallest count over the primaries is 1), and each
/// record it wrote is on a replica by then.
#[test]
fn wait_replicas_acknowledges_on_a_cluster_with_replicas() {
    use leasehold::{Error, Policy, Sessions, Subject};
    use leasehold_redis::{RedisConfig, RedisStore};
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (url, replicas) = support::cluster_with_replicas().unwrap();
        let prefix = support::fresh_prefix();
        let _cleanup = support::Cleanup {
            url: url.clone(),
            prefix: prefix.clone(),
        };
        // Generous: a replica fresh from a diskless sync first acknowledges up to 1 s later.
        let store = RedisStore::open(
            RedisConfig::new(url.clone())
                .prefix(prefix.clone())
                .timeout(Duration::from_secs(5))
                .wait_replicas(1, Duration::from_secs(3)),
        )
        .await
        .unwrap();
        let s = Sessions::new(store, Policy::default()).unwrap();
        let mut tokens = Vec::new();
        for i in 0..12 {
            let made = s
                .create(&Subject::new(format!("r{i}")).unwrap(), Default::default())
                .await
                .unwrap();
            tokens.push(made.token.expose_secret().to_string());
        }
        for t in &tokens[..6] {
            s.logout(t).await.unwrap();
        }
        let ticket = s
            .mint_ticket(&tokens[6], &Default::default())
            .await
            .unwrap();
        s.redeem_ticket(ticket.ticket.expose_secret())
            .await
            .unwrap();
        for t in &tokens[..6] {
            let e = s.validate(t, &Default::default()).await.unwrap_err();
            assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
        }
        // Every session record is on a replica (12 subjects: spread over the shards).
        let mut on_replicas = 0;
        for p in &replicas {
            let keys = support::cli(*p, &["keys", &format!("{prefix}:s:*")]);
            on_replicas += keys.lines().filter(|l| !l.is_empty()).count();
        }
        assert_eq!(on_replicas, 12);
    });
}

/// The failover of one shard: with `wait_replicas(1, …)`, a logout, a rotation and a ticket
/// redemption of sessions in that shard are acknowledged; its primary is shut down and its
/// replica takes over (`CLUSTER FAILOVER TAKEOVER`); a new store on the Cluster finds them all.
#[test]
fn acknowledged_security_writes_survive_the_failover_of_their_shard() {
    use leasehold::{Error, Policy, Sessions, Subject};
    use leasehold_redis::{RedisConfig, RedisStore};
    use std::time::Duration;
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (url, replicas) = support::new_cluster_with_replicas().unwrap();
        let prefix = support::fresh_prefix();
        let open = |wait| {
            let mut c = RedisConfig::new(url.clone())
                .prefix(prefix.clone())
                .timeout(Duration::from_secs(5));
            if wait {
                c = c.wait_replicas(1, Duration::from_secs(3));
            }
            RedisStore::open(c)
        };
        // No grace window: a rotated-out token is reuse at once.
        let policy = Policy::builder()
            .grace_window(Duration::ZERO)
            .orphan_window(Duration::ZERO)
            .build()
            .unwrap();
        let s = Sessions::new(open(true).await.unwrap(), policy.clone()).unwrap();
        // One subject: its sessions (and their tickets) share one slot, so one shard.
        let alice = Subject::new("alice").unwrap();
        let mut made = Vec::new();
        for _ in 0..3 {
            made.push(s.create(&alice, Default::default()).await.unwrap());
        }
        let tok = |i: usize| made[i].token.expose_secret().to_string();
        s.logout(&tok(0)).await.unwrap();
        let rotated = s
            .refresh(&tok(1), &Default::default())
            .await
            .unwrap()
            .token
            .expose_secret()
            .to_string();
        let ticket = s.mint_ticket(&tok(2), &Default::default()).await.unwrap();
        let ticket = ticket.ticket.expose_secret().to_string();
        s.redeem_ticket(&ticket).await.unwrap();
        drop(s);

        // The shard of alice's slot: its primary and that primary's replica.
        let hex: String = made[0]
            .session
            .id
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        let key = format!("{prefix}:s:{{{}}}:{hex}", &hex[..4]);
        let any = replicas[0];
        let slot: u16 = support::cli(any, &["cluster", "keyslot", &key])
            .trim()
            .parse()
            .unwrap();
        let nodes = support::cli(any, &["cluster", "nodes"]);
        let owns = |f: &[&str]| {
            f[8..].iter().any(|r| {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                matches!((a.parse::<u16>(), b.parse::<u16>()), (Ok(a), Ok(b)) if a <= slot && slot <= b)
            })
        };
        let lines: Vec<Vec<&str>> = nodes.lines().map(|l| l.split(' ').collect()).collect();
        let primary = lines
            .iter()
            .find(|f| f.len() > 8 && f[2].contains("master") && owns(f))
            .unwrap();
        let port = |f: &[&str]| -> u16 {
            f[1].split('@').next().unwrap().rsplit(':').next().unwrap().parse().unwrap()
        };
        let pport = port(primary);
        // Its replica, as the primary itself reports it (gossip may lag behind).
        let info = support::cli(pport, &["info", "replication"]);
        let rport: u16 = info
            .lines()
            .find_map(|l| l.strip_prefix("slave0:"))
            .and_then(|v| v.split(',').find_map(|kv| kv.strip_prefix("port=")))
            .unwrap_or_else(|| panic!("{info}"))
            .parse()
            .unwrap();

        support::cli(pport, &["shutdown", "nosave"]);
        assert!(support::cli(rport, &["cluster", "failover", "takeover"]).contains("OK"));
        // Wait for the Cluster to agree (bounded): the replica is a primary and the state is ok.
        for _ in 0..200 {
            let info = support::cli(rport, &["cluster", "info"]);
            let role = support::cli(rport, &["role"]);
            if info.contains("cluster_state:ok") && role.starts_with("master") {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        assert!(support::cli(rport, &["role"]).starts_with("master"));
        assert!(support::cli(rport, &["cluster", "info"]).contains("cluster_state:ok"));
        assert_eq!(support::cli(pport, &["ping"]), "", "the old primary still answers");
        let url2 = format!("redis+cluster://127.0.0.1:{rport}");
        let s2 = Sessions::new(
            RedisStore::open(
                RedisConfig::new(url2.clone())
                    .prefix(prefix.clone())
                    .timeout(Duration::from_secs(5)),
            )
            .await
            .unwrap(),
            policy,
        )
        .unwrap();
        let _cleanup = support::Cleanup {
            url: url2,
            prefix: prefix.clone(),
        };
        let e = s2.validate(&tok(0), &Default::default()).await.unwrap_err();
        assert!(matches!(e, Error::Revoked { .. }), "{e:?}");
        assert!(s2.redeem_ticket(&ticket).await.is_err(), "ticket redeemed twice");
        s2.validate(&tok(2), &Default::default()).await.unwrap();
        s2.validate(&rotated, &Default::default()).await.unwrap();
        let e = s2.validate(&tok(1), &Default::default()).await.unwrap_err();
        assert!(matches!(e, Error::ReuseDetected), "{e:?}");
    });
}

/// The same suite on a Cluster without the global index (`RedisConfig::global_index(false)`):
/// `Scope::All` walks the records of every node, and the marker of unindexed sessions lives in
/// the global index's slot, another slot than the sessions'. Plus the index rebuilt when the
/// prefix is reopened with it.
mod unindexed {
    leasehold_conformance::conformance_tests!(
        leasehold_conformance::fallible(|| crate::support::suite_store(true, false)),
        capabilities = [
            native_expiry,
            raw_dump,
            multi_process,
            server_clock,
            sharded,
            no_global_index
        ],
    );

    /// Sessions of 40 subjects (slots on every node) created without the index: listed and counted
    /// from every node, then indexed when the prefix is reopened with the index, so a global cap
    /// counts them.
    #[test]
    fn sessions_created_without_the_index_on_every_node_are_listed_then_indexed() {
        use leasehold::{Clock, ManualClock, Policy, Scope, Sessions, Store, Subject, SystemClock};
        use leasehold_redis::{RedisConfig, RedisStore};
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .unwrap();
        rt.block_on(async {
            let url = crate::support::cluster_url().unwrap();
            let (off, _cleanup) = crate::support::open_with(&url, |c| c.global_index(false))
                .await
                .unwrap();
            let clock = ManualClock::new(SystemClock.now());
            let s = Sessions::new(off.clone(), Policy::default())
                .unwrap()
                .with_clock(clock.clone());
            for i in 0..40 {
                s.create(
                    &Subject::new(format!("user-{i}")).unwrap(),
                    Default::default(),
                )
                .await
                .unwrap();
            }
            assert_eq!(s.count(&Scope::All).await.unwrap(), 40);
            let mut seen = Vec::new();
            let mut after = None;
            loop {
                let page = off
                    .list_sessions(&Scope::All, after.as_ref(), 7)
                    .await
                    .unwrap();
                seen.extend(page.records.iter().map(|r| r.id));
                match page.next {
                    Some(n) => after = Some(n),
                    None => break,
                }
            }
            let mut sorted = seen.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(
                (seen.len(), sorted.len()),
                (40, 40),
                "each record once, in id order"
            );
            assert_eq!(seen, sorted);

            let on = RedisStore::open(RedisConfig::new(&url).prefix(off.prefix()))
                .await
                .unwrap();
            let s = Sessions::new(on, crate::support::global_capped(40))
                .unwrap()
                .with_clock(clock);
            let r = s
                .create(&Subject::new("late").unwrap(), Default::default())
                .await;
            assert!(crate::support::global_cap_full(&r), "{r:?}");
        });
    }
}
