//! On a Cluster, a load reads the clock of the node that holds the record: the store's time is
//! that node's, never another node's (`docs/adapters/redis.md`, *Atomicity*). Runs on a 3-node
//! Cluster of this binary's own (nothing else sends commands to it while it counts), and counts
//! each node's `GET` and `TIME` calls with `INFO commandstats`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;

use leasehold::{Clock, ManualClock, Policy, Sessions, Store, Subject, SystemClock};

/// Calls of `command` on the node at `port` since its last `CONFIG RESETSTAT`.
fn calls(port: u16, command: &str) -> u64 {
    let info = support::cli(port, &["info", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

#[test]
fn a_load_reads_the_clock_of_the_node_that_holds_the_record() {
    support::rt().block_on(async {
        let url = support::cluster_url().unwrap();
        let (store, _cleanup) = support::open(&url).await.unwrap();
        let ports: Vec<u16> = url
            .trim_start_matches("redis+cluster://")
            .split(',')
            .map(|n| n.rsplit(':').next().unwrap().parse().unwrap())
            .collect();
        assert_eq!(ports.len(), 3, "{url}");
        let s = Sessions::new(store.clone(), Policy::default())
            .unwrap()
            .with_clock(ManualClock::new(SystemClock.now()));
        // Sessions until every node holds some: each record's node is the one that counts
        // keys in its slot.
        let mut held: BTreeMap<u16, Vec<leasehold::SessionId>> = BTreeMap::new();
        for i in 0..60 {
            let c = s
                .create(
                    &Subject::new(format!("user-{i}")).unwrap(),
                    Default::default(),
                )
                .await
                .unwrap();
            let key = store.session_key(&c.session.id);
            let slot = support::cli(ports[0], &["cluster", "keyslot", &key]);
            let owners: Vec<u16> = ports
                .iter()
                .copied()
                .filter(|p| {
                    let n = support::cli(*p, &["cluster", "countkeysinslot", slot.trim()]);
                    n.trim().parse::<u64>().unwrap_or(0) > 0
                })
                .collect();
            assert_eq!(owners.len(), 1, "slot {slot} held by {owners:?}");
            held.entry(owners[0]).or_default().push(c.session.id);
        }
        assert_eq!(held.len(), 3, "records on {} of 3 nodes", held.len());

        for p in &ports {
            assert_eq!(support::cli(*p, &["config", "resetstat"]).trim(), "OK");
        }
        let before = store.round_trips();
        let mut loads = 0;
        for ids in held.values() {
            for id in ids {
                let loaded = store.load_session(id).await.unwrap();
                assert!(loaded.record.is_some() && loaded.store_time.is_some());
                loads += 1;
            }
        }
        assert_eq!(store.round_trips() - before, loads, "one round trip a load");
        for (port, ids) in &held {
            let n = ids.len() as u64;
            assert_eq!(calls(*port, "get"), n, "GETs on node {port}");
            assert_eq!(calls(*port, "time"), n, "TIMEs on node {port}");
        }
    });
}
