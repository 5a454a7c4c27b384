//! The conformance suite against a `MemoryStore` whose "server" expires keys itself, as Redis
//! does (`native_expiry`, on the system clock, plus `server_clock`): every case passes or is
//! skipped with its reason (the exact-count reap cases need a store whose own reap removes
//! records). Then the native-expiry mode itself, on a manual server clock: records vanish at
//! their deadline, `reap` only tidies index entries and counts nothing, every key has a TTL.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::BTreeMap;
use std::time::Duration;

use leasehold::store::{KeyDeadline, KeyHolds};
use leasehold::{
    Capabilities, Clock, Context, CreateOptions, Error, ManualClock, MemoryStore, Policy, Resource,
    SeededEntropy, Sessions, Store, Subject, Timestamp,
};

leasehold_conformance::conformance_tests!(
    || async { leasehold::MemoryStore::with_native_expiry(leasehold::SystemClock) },
    capabilities = [native_expiry, raw_dump, server_clock],
);

const MIN: Duration = Duration::from_secs(60);

/// A native-expiry store on `server`, and `Sessions` over it on `caller` (two clocks, as a
/// client and a Redis server have).
fn setup(policy: Policy) -> (ManualClock, ManualClock, MemoryStore, Sessions<MemoryStore>) {
    let server = ManualClock::default();
    let caller = ManualClock::new(server.now());
    let store = MemoryStore::with_native_expiry(server.clone());
    let sessions = Sessions::new(store.clone(), policy)
        .unwrap()
        .with_clock(caller.clone())
        .with_entropy(SeededEntropy::new(7));
    (server, caller, store, sessions)
}

fn both(server: &ManualClock, caller: &ManualClock, t: Timestamp) {
    server.set(t);
    caller.set(t);
}

async fn keys(store: &MemoryStore) -> Vec<KeyDeadline> {
    store.key_deadlines().await.unwrap().unwrap()
}

#[test]
fn capabilities_and_the_audit_hook() {
    let caps = MemoryStore::with_native_expiry(ManualClock::default()).capabilities();
    assert_eq!(
        caps,
        Capabilities::NONE
            .with_native_expiry(true)
            .with_server_clock(true)
            .with_raw_dump(true)
    );
    let rt = tokio::runtime::Runtime::new().unwrap();
    for plain in [
        MemoryStore::new(),
        MemoryStore::with_server_clock(ManualClock::default()),
    ] {
        assert!(!plain.capabilities().native_expiry);
        assert_eq!(rt.block_on(plain.key_deadlines()).unwrap(), None);
    }
}

#[tokio::test]
async fn records_vanish_at_their_deadline_and_reap_counts_nothing() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .slot_ttl(Duration::from_secs(60))
        .ticket_ttl(Duration::from_secs(30))
        .build()
        .unwrap();
    let (server, caller, store, s) = setup(policy);
    let alice = Subject::new("alice").unwrap();
    let r = Resource::new("r").unwrap();
    let on_r = CreateOptions {
        resource: Some(r.clone()),
        ..CreateOptions::default()
    };
    let a = s.create(&alice, on_r.clone()).await.unwrap();
    let b = s.create(&alice, on_r.clone()).await.unwrap();
    s.trusted_by_id().revoke(&b.session.id).await.unwrap();
    let ticket = s
        .mint_ticket(a.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    let slot = s.acquire_slot(&a.session.id, Some(&r)).await.unwrap();
    let deadline = a.session.expires_at;
    assert!(store.stored_entries() > 0);

    // The caller's clock past the deadline, the server's not yet: nothing is gone, the engine
    // judges at the later clock, and reap removes nothing (the server has not expired it).
    caller.set(deadline);
    assert!(
        s.validate(a.token.expose_secret(), &Context::none())
            .await
            .is_err()
    );
    assert_eq!(s.reap(1000).await.unwrap().total(), 0);
    assert!(
        store
            .load_session(&b.session.id)
            .await
            .unwrap()
            .record
            .is_some()
    );

    // The ticket's and the slot's TTLs pass on the server: they are gone, their index entries
    // stay until reap.
    both(&server, &caller, slot.expires_at);
    // Present but expired, a take would answer Expired; gone, it is Missing.
    assert!(matches!(
        s.redeem_ticket(ticket.ticket.expose_secret()).await,
        Err(Error::NotAuthenticated)
    ));
    assert!(matches!(
        s.heartbeat_slot(&slot.id).await,
        Err(Error::SlotLost)
    ));
    assert!(
        !keys(&store)
            .await
            .iter()
            .any(|k| matches!(k.holds, KeyHolds::Ticket(_) | KeyHolds::Slot(_)))
    );
    let with_slot_entries = store.stored_entries();
    assert_eq!(
        s.reap(1000).await.unwrap().total(),
        0,
        "reap removed no record"
    );
    assert!(
        store.stored_entries() < with_slot_entries,
        "reap cleaned the index entries of the expired slot"
    );

    // A later session keeps alice's and r's index keys alive past the first two deadlines.
    both(&server, &caller, server.now().saturating_add(10 * MIN));
    let c = s.create(&alice, on_r).await.unwrap();

    // At the deadline on the server, both records (the Expired and the Revoked tombstone) are
    // gone; their index entries stay until reap cleans them, one per unit of the limit.
    both(&server, &caller, deadline);
    for id in [a.session.id, b.session.id] {
        assert_eq!(store.load_session(&id).await.unwrap().record, None);
    }
    let listed: Vec<_> = store
        .list_subject(&alice)
        .await
        .unwrap()
        .into_iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![c.session.id]);
    let before = store.stored_entries();
    let r1 = s.reap(1).await.unwrap();
    assert_eq!(
        r1.total(),
        0,
        "a native reap counts nothing: it removed no record"
    );
    assert!(
        store.stored_entries() < before,
        "one batch of index entries cleaned"
    );
    while store.stored_entries() > 0 {
        let n = store.stored_entries();
        assert_eq!(s.reap(1).await.unwrap().total(), 0);
        if store.stored_entries() == n {
            break;
        }
    }
    assert!(
        s.validate(c.token.expose_secret(), &Context::none())
            .await
            .is_ok()
    );
    let last = store
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    // Past the last deadline (c's, moved by that validate's touch) the index keys' own TTLs
    // remove what is left.
    both(&server, &caller, last.expires_at);
    assert_eq!(store.stored_entries(), 0);
    assert!(keys(&store).await.is_empty());
}

#[tokio::test]
async fn without_any_reap_everything_expires_by_its_own_ttl() {
    let policy = Policy::builder()
        .renewal_interval(None)
        .creation_rate(Some(leasehold::Rate {
            max: 10,
            window: 10 * MIN,
        }))
        .build()
        .unwrap();
    let (server, caller, store, s) = setup(policy);
    let mut latest = Timestamp::from_millis(0);
    for i in 0..20 {
        let who = Subject::new(format!("user-{}", i % 4)).unwrap();
        let c = s.create(&who, CreateOptions::default()).await.unwrap();
        latest = latest.max(c.session.expires_at);
        if i % 3 == 0 {
            s.trusted_by_id().revoke(&c.session.id).await.unwrap();
        }
        caller.advance(MIN);
        server.advance(MIN);
    }
    for k in keys(&store).await {
        assert!(k.deadline.is_some(), "{k:?} has no TTL");
    }
    both(&server, &caller, latest);
    assert_eq!(store.stored_entries(), 0);
}

#[tokio::test]
async fn ttls_follow_touches_and_tombstones_keep_theirs() {
    let policy = Policy::builder().renewal_interval(None).build().unwrap();
    let (server, caller, store, s) = setup(policy);
    let alice = Subject::new("alice").unwrap();
    let a = s.create(&alice, CreateOptions::default()).await.unwrap();
    let b = s.create(&alice, CreateOptions::default()).await.unwrap();
    let ttl_of = |ks: &[KeyDeadline]| -> BTreeMap<_, _> {
        ks.iter()
            .filter_map(|k| match k.holds {
                KeyHolds::Session(id) => Some((id, k.deadline.unwrap())),
                _ => None,
            })
            .collect()
    };
    let first = ttl_of(&keys(&store).await);
    assert_eq!(first[&a.session.id], a.session.expires_at);
    s.trusted_by_id().revoke(&b.session.id).await.unwrap();
    both(&server, &caller, server.now().saturating_add(2 * MIN));
    s.validate(a.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    let after = ttl_of(&keys(&store).await);
    let touched = store
        .load_session(&a.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert!(touched.expires_at > a.session.expires_at);
    assert_eq!(
        after[&a.session.id], touched.expires_at,
        "a touch moves the TTL"
    );
    assert_eq!(
        after[&b.session.id], first[&b.session.id],
        "a tombstone keeps its record's deadline"
    );
    // The old deadline passes: the touched session lives on, the tombstone is gone.
    both(&server, &caller, a.session.expires_at);
    assert!(
        s.validate(a.token.expose_secret(), &Context::none())
            .await
            .is_ok()
    );
    assert_eq!(
        store.load_session(&b.session.id).await.unwrap().record,
        None
    );
}

#[tokio::test]
async fn the_test_offset_moves_judging_not_expiry() {
    let policy = Policy::builder().renewal_interval(None).build().unwrap();
    let (_server, _caller, store, s) = setup(policy);
    let a = s
        .create(&Subject::new("alice").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    // The store judges two hours ahead, but its keys expire on its real clock: the record
    // stays (as a Redis key whose PEXPIREAT has not come), and is judged expired.
    assert!(store.set_clock_offset(2 * 60 * 60 * 1000));
    let loaded = store.load_session(&a.session.id).await.unwrap();
    assert!(loaded.record.is_some());
    assert!(
        s.validate(a.token.expose_secret(), &Context::none())
            .await
            .is_err()
    );
    assert_eq!(s.reap(100).await.unwrap().total(), 0);
    assert!(
        store
            .load_session(&a.session.id)
            .await
            .unwrap()
            .record
            .is_some(),
        "a native reap removes no record"
    );
}
