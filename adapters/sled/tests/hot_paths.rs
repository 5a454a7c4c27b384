//! The hot paths' shortcuts: swaps written as one single-key compare-and-swap (their expiry
//! entry left where it was, re-filed by the reaper) and reaping many records in one call.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;

use common::{race, secs, sessions, subject};
use leasehold::store::StoreError;
use leasehold::{
    Clock, CreateOptions, Policy, Resource, RevokeReason, Scope, SessionId, SessionRecord, Store,
    Timestamp,
};
use leasehold_sled::{SledStore, trees};

const IDLE: u64 = 30 * 60;

/// The deadlines of the expiry entries of session `id`, in order.
fn entries(store: &SledStore, id: &SessionId) -> Vec<u64> {
    let expiry = store.db().open_tree(trees::EXPIRY).unwrap();
    expiry
        .iter()
        .map(|kv| kv.unwrap().0)
        .filter(|k| k.ends_with(id.as_bytes()))
        .map(|k| u64::from_be_bytes(k[..8].try_into().unwrap()))
        .collect()
}

async fn record(store: &SledStore, id: &SessionId) -> Option<SessionRecord> {
    store.load_session(id).await.unwrap().record.map(|r| *r)
}

/// `r` touched at `now`: `last_seen` and `expires_at` moved, nothing else.
fn touched(r: &SessionRecord, now: Timestamp, expires_at: Timestamp) -> SessionRecord {
    SessionRecord {
        version: r.version + 1,
        last_seen: now,
        expires_at,
        ..r.clone()
    }
}

#[tokio::test]
async fn a_touch_is_single_key_and_reaped_at_its_new_deadline_once_re_filed() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let store = s.store();
    let id = c.session.id;
    let r = record(store, &id).await.unwrap();
    let first = r.expires_at;
    assert_eq!(entries(store, &id), vec![first.as_millis()]);

    clock.advance(secs(20 * 60));
    let later = clock.now().saturating_add(secs(IDLE));
    store
        .compare_and_swap(&touched(&r, clock.now(), later), r.version, clock.now())
        .await
        .unwrap();
    // Single-key: the entry stays at the old deadline.
    assert_eq!(entries(store, &id), vec![first.as_millis()]);

    // Past the old deadline: the reaper re-files the entry and keeps the record.
    clock.set(first.saturating_add(secs(60)));
    let out = store.reap(clock.now(), 100).await.unwrap();
    assert_eq!(out.sessions, 0);
    assert_eq!(entries(store, &id), vec![later.as_millis()]);
    assert!(record(store, &id).await.unwrap().is_live(clock.now()));
    assert_eq!(store.count_live(&Scope::All, clock.now()).await.unwrap(), 1);

    // At the new deadline it is reaped, with everything pointing at it.
    clock.set(later);
    let out = store.reap(clock.now(), 100).await.unwrap();
    assert_eq!(out.sessions, 1);
    assert!(record(store, &id).await.is_none());
    assert_only_meta_left(store);
}

#[tokio::test]
async fn a_record_due_behind_a_stale_entry_is_reaped_in_one_call() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let store = s.store();
    let r = record(store, &c.session.id).await.unwrap();
    clock.advance(secs(10 * 60));
    let later = clock.now().saturating_add(secs(IDLE));
    store
        .compare_and_swap(&touched(&r, clock.now(), later), r.version, clock.now())
        .await
        .unwrap();
    // Never reaped in between: the only entry is the stale one, long due.
    clock.set(later.saturating_add(secs(1)));
    assert_eq!(store.count_live(&Scope::All, clock.now()).await.unwrap(), 0);
    let out = store.reap(clock.now(), 100).await.unwrap();
    assert_eq!(out.sessions, 1);
    assert_eq!(out.ended[0].id, c.session.id);
    assert_only_meta_left(store);
}

#[tokio::test]
async fn a_deadline_moved_earlier_is_filed_at_once_and_counted_once() {
    let (s, clock, _dir) = sessions(Policy::default());
    let t0 = clock.now();
    let a = s
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    clock.advance(secs(10 * 60));
    let b = s
        .create(&subject("bob"), CreateOptions::default())
        .await
        .unwrap();
    let store = s.store();
    let id = a.session.id;
    let r = record(store, &id).await.unwrap();
    // A touch (single-key, the entry stays at t0 + 30 min) ...
    let t = touched(&r, clock.now(), clock.now().saturating_add(secs(IDLE)));
    store
        .compare_and_swap(&t, r.version, clock.now())
        .await
        .unwrap();
    // ... then a swap that moves the deadline earlier: transactional, filed where it is due.
    let earlier = t0.saturating_add(secs(35 * 60));
    let e = touched(&t, clock.now(), earlier);
    store
        .compare_and_swap(&e, t.version, clock.now())
        .await
        .unwrap();
    assert_eq!(
        entries(store, &id),
        vec![
            t0.saturating_add(secs(IDLE)).as_millis(),
            earlier.as_millis()
        ]
    );
    // Due through both entries, still counted once: bob is the one live session.
    clock.set(earlier.saturating_add(secs(60)));
    assert_eq!(store.count_live(&Scope::All, clock.now()).await.unwrap(), 1);
    let out = store.reap(clock.now(), 100).await.unwrap();
    assert_eq!(out.sessions, 1);
    assert!(record(store, &id).await.is_none());
    assert!(entries(store, &id).is_empty());
    assert!(
        record(store, &b.session.id)
            .await
            .unwrap()
            .is_live(clock.now())
    );
}

#[test]
fn a_rotation_racing_revoke_subject_never_leaves_a_live_session() {
    for round in 0..40 {
        let (s, clock, _dir) = sessions(Policy::default());
        let who = subject(&format!("user-{round}"));
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let id = rt
            .block_on(s.create(&who, CreateOptions::default()))
            .unwrap()
            .session
            .id;
        let store = s.store().clone();
        let now = clock.now();
        let results = race(2, move |i| {
            let (store, who) = (store.clone(), who.clone());
            async move {
                if i == 0 {
                    let r = store.load_session(&id).await.unwrap().record.unwrap();
                    let mut n = touched(&r, now, now.saturating_add(secs(IDLE + 60)));
                    n.data = b"rotated".to_vec();
                    store.compare_and_swap(&n, r.version, now).await.err()
                } else {
                    store.revoke_subject(&who, now).await.unwrap();
                    None
                }
            }
        });
        if let Some(e) = &results[0] {
            assert!(
                matches!(e, StoreError::NotFound | StoreError::Conflict),
                "{e:?}"
            );
        }
        let r = rt.block_on(record(s.store(), &id)).unwrap();
        assert!(r.is_tombstone(), "round {round}: {r:?}");
        assert_eq!(
            rt.block_on(
                s.store()
                    .count_live(&Scope::Subject(subject(&format!("user-{round}"))), now)
            )
            .unwrap(),
            0
        );
    }
}

#[tokio::test]
async fn one_reap_removes_exactly_the_due_records_and_their_index_entries() {
    let (s, clock, _dir) = sessions(Policy::default());
    let store = s.store().clone();
    let opts = |i: usize| CreateOptions {
        resource: Some(Resource::new(format!("tenant-{}", i % 5)).unwrap()),
        ..CreateOptions::default()
    };
    let mut due = HashSet::new();
    // 300 that will be due: a third touched single-key (a stale entry), a third revoked.
    for i in 0..300 {
        let c = s
            .create(&subject(&format!("u{}", i % 40)), opts(i))
            .await
            .unwrap();
        due.insert(c.session.id);
    }
    clock.advance(secs(5 * 60));
    for (n, id) in due.iter().enumerate() {
        let r = record(&store, id).await.unwrap();
        let now = clock.now();
        match n % 3 {
            0 => {
                let t = touched(&r, now, now.saturating_add(secs(60)));
                store.compare_and_swap(&t, r.version, now).await.unwrap();
            }
            1 => {
                let t = r.tombstone(now, RevokeReason::Revoked);
                store.compare_and_swap(&t, r.version, now).await.unwrap();
            }
            _ => {}
        }
    }
    // 50 live ones, sharing subjects and resources with the due ones.
    clock.advance(secs(20 * 60));
    let mut live = HashSet::new();
    for i in 0..50 {
        let c = s
            .create(&subject(&format!("u{}", i % 40)), opts(i))
            .await
            .unwrap();
        live.insert(c.session.id);
    }
    clock.advance(secs(10 * 60));
    let now = clock.now();
    let out = store.reap(now, 10_000).await.unwrap();
    let ended: HashSet<SessionId> = out.ended.iter().map(|e| e.id).collect();
    assert_eq!(ended, due);
    assert_eq!(out.sessions, 300);
    assert_eq!(store.reap(now, 10_000).await.unwrap().total(), 0);
    // Creation logs name their sessions until they leave the rate window: not an index.
    for tree in trees::ALL.into_iter().filter(|t| *t != trees::RATES) {
        for kv in store.db().open_tree(tree).unwrap().iter() {
            let (k, v) = kv.unwrap();
            for id in &due {
                let needle = id.as_bytes();
                assert!(
                    !k.windows(needle.len()).any(|w| w == needle)
                        && !v.windows(needle.len()).any(|w| w == needle),
                    "{tree} still names a reaped session"
                );
            }
        }
    }
    for id in &live {
        assert!(record(&store, id).await.unwrap().is_live(now));
    }
    assert_eq!(store.count_live(&Scope::All, now).await.unwrap(), 50);
    let per_subject: u64 = {
        let mut n = 0;
        for i in 0..40 {
            n += store
                .count_live(&Scope::Subject(subject(&format!("u{i}"))), now)
                .await
                .unwrap();
        }
        n
    };
    assert_eq!(per_subject, 50);
    // Everything removed at the end: only meta left.
    clock.advance(secs(3600));
    store.reap(clock.now(), 10_000).await.unwrap();
    assert_only_meta_left(&store);
}

/// After everything is reaped only `meta` holds keys (group heads and creation logs included).
fn assert_only_meta_left(store: &SledStore) {
    for tree in trees::ALL {
        if tree == trees::META {
            continue;
        }
        let n = store.db().open_tree(tree).unwrap().len();
        assert_eq!(n, 0, "{tree} still holds {n} keys");
    }
}
