//! Loads on a Cluster: the store's time is the clock of the node that holds the record, never
//! another node's (`docs/adapters/redis.md`, *Atomicity*), and a load follows its key while a
//! resharding moves the key's slot. Runs on a 3-node Cluster of this binary's own, one test at
//! a time (the first counts each node's `GET` and `TIME` calls with `INFO commandstats`; the
//! second moves a slot).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::collections::BTreeMap;
use std::sync::Mutex;

use leasehold::{
    Clock, Context, ManualClock, Policy, SessionId, Sessions, Store, Subject, SystemClock,
};
use leasehold_redis::RedisStore;

/// The tests share one Cluster and count its commands: one at a time.
static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());

/// The Cluster's node ports, from its URL.
fn ports(url: &str) -> Vec<u16> {
    url.trim_start_matches("redis+cluster://")
        .split(',')
        .map(|n| n.rsplit(':').next().unwrap().parse().unwrap())
        .collect()
}

/// Calls of `command` on the node at `port` since its last `CONFIG RESETSTAT`.
fn calls(port: u16, command: &str) -> u64 {
    let info = support::cli(port, &["info", "commandstats"]);
    let prefix = format!("cmdstat_{command}:calls=");
    info.lines()
        .find_map(|l| l.trim().strip_prefix(&prefix))
        .map_or(0, |rest| rest.split(',').next().unwrap().parse().unwrap())
}

fn reset_stats(ports: &[u16]) {
    for p in ports {
        assert_eq!(support::cli(*p, &["config", "resetstat"]).trim(), "OK");
    }
}

/// The slot of the record of `id`, and the port of the node that holds keys in it.
fn slot_and_node(store: &RedisStore, ports: &[u16], id: &SessionId) -> (String, u16) {
    let key = store.session_key(id);
    let slot = support::cli(ports[0], &["cluster", "keyslot", &key])
        .trim()
        .to_owned();
    let owners: Vec<u16> = ports
        .iter()
        .copied()
        .filter(|p| {
            let n = support::cli(*p, &["cluster", "countkeysinslot", &slot]);
            n.trim().parse::<u64>().unwrap_or(0) > 0
        })
        .collect();
    assert_eq!(owners.len(), 1, "slot {slot} held by {owners:?}");
    (slot, owners[0])
}

/// A store on this binary's Cluster (its keys deleted when the cleanup drops), a driver on it,
/// and the Cluster's node ports.
async fn setup() -> (RedisStore, support::Cleanup, Sessions<RedisStore>, Vec<u16>) {
    let url = support::cluster_url().unwrap();
    let (store, cleanup) = support::open(&url).await.unwrap();
    let s = Sessions::new(store.clone(), Policy::default())
        .unwrap()
        .with_clock(ManualClock::new(SystemClock.now()));
    let ports = ports(&url);
    assert_eq!(ports.len(), 3, "{url}");
    (store, cleanup, s, ports)
}

#[test]
fn a_load_reads_the_clock_of_the_node_that_holds_the_record() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    support::rt().block_on(async {
        let (store, _cleanup, s, ports) = setup().await;
        // Sessions until every node holds some.
        let mut held: BTreeMap<u16, Vec<SessionId>> = BTreeMap::new();
        for i in 0..60 {
            let c = s
                .create(
                    &Subject::new(format!("user-{i}")).unwrap(),
                    Default::default(),
                )
                .await
                .unwrap();
            let (_, node) = slot_and_node(&store, &ports, &c.session.id);
            held.entry(node).or_default().push(c.session.id);
        }
        assert_eq!(held.len(), 3, "records on {} of 3 nodes", held.len());

        reset_stats(&ports);
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

/// A slot moved by hand as `redis-cli --cluster reshard` moves it: the target imports, the
/// source migrates, the keys go over (`MIGRATE`), then every node learns the new owner. While
/// the keys are over but the slot is not, the former node answers `ASK`; after, `MOVED`. In
/// both the load's `GET` and `TIME` end up on the new node and a validate works, and once the
/// client has followed the `MOVED`, loads go to the new node directly.
#[test]
fn a_load_follows_its_key_across_a_resharding() {
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    support::rt().block_on(async {
        let (store, _cleanup, s, ports) = setup().await;
        let c = s
            .create(&Subject::new("moving").unwrap(), Default::default())
            .await
            .unwrap();
        let token = c.token.expose_secret().to_owned();
        let (slot, from) = slot_and_node(&store, &ports, &c.session.id);
        let to = *ports.iter().find(|p| **p != from).unwrap();
        let id_of = |p: u16| support::cli(p, &["cluster", "myid"]).trim().to_owned();
        let (from_id, to_id) = (id_of(from), id_of(to));
        s.validate(&token, &Context::none()).await.unwrap();

        let ok = |out: String| assert_eq!(out.trim(), "OK", "{out}");
        ok(support::cli(
            to,
            &["cluster", "setslot", &slot, "importing", &from_id],
        ));
        ok(support::cli(
            from,
            &["cluster", "setslot", &slot, "migrating", &to_id],
        ));
        let keys = support::cli(from, &["cluster", "getkeysinslot", &slot, "1000"]);
        let keys: Vec<&str> = keys.lines().filter(|k| !k.is_empty()).collect();
        assert!(
            keys.contains(&store.session_key(&c.session.id).as_str()),
            "{keys:?}"
        );
        let to_port = to.to_string();
        let mut migrate = vec!["migrate", "127.0.0.1", &to_port, "", "0", "5000", "KEYS"];
        migrate.extend(&keys);
        ok(support::cli(from, &migrate));

        // The slot is still the former node's, the key is not: it answers ASK, and the whole
        // pipeline runs again on the new node (the former one's `TIME` reply is dropped).
        reset_stats(&ports);
        let loaded = store.load_session(&c.session.id).await.unwrap();
        assert!(loaded.record.is_some() && loaded.store_time.is_some());
        assert_eq!((calls(to, "get"), calls(to, "time")), (1, 1), "after ASK");
        s.validate(&token, &Context::none()).await.unwrap();

        for p in &ports {
            ok(support::cli(
                *p,
                &["cluster", "setslot", &slot, "node", &to_id],
            ));
        }
        // The client still sends the slot to the former node: it answers MOVED, and the whole
        // pipeline runs again on the new node.
        reset_stats(&ports);
        let loaded = store.load_session(&c.session.id).await.unwrap();
        assert!(loaded.record.is_some() && loaded.store_time.is_some());
        assert_eq!((calls(to, "get"), calls(to, "time")), (1, 1), "after MOVED");
        s.validate(&token, &Context::none()).await.unwrap();

        // Followed: the next load is one round trip to the new node.
        reset_stats(&ports);
        let before = store.round_trips();
        store.load_session(&c.session.id).await.unwrap();
        assert_eq!(store.round_trips() - before, 1);
        assert_eq!((calls(to, "get"), calls(to, "time")), (1, 1));
        assert_eq!((calls(from, "get"), calls(from, "time")), (0, 0));
    });
}
