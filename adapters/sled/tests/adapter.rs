//! The sled adapter through `Sessions<SledStore>` and through the `Store` trait directly:
//! compare-and-swap, caps under real threads, one-shot tickets, group revocation, reaping,
//! corrupt bytes, persistence and the process lock.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashSet;
use std::sync::Arc;

use common::{block_on, race, reopen, secs, sessions, store, subject};
use leasehold::store::{CreateLimits, InsertOutcome, StoreError};
use leasehold::{
    CapPolicy, Clock, Context, CreateOptions, Error, Limit, ManualClock, Policy, Rate, Resource,
    RevokeReason, SeededEntropy, SessionState, Sessions, Store, SubjectCap,
};
use leasehold_sled::{Durability, OpenError, SledStore, trees};

fn opts() -> CreateOptions {
    CreateOptions::default()
}

fn on(resource: &str) -> CreateOptions {
    CreateOptions {
        resource: Some(Resource::new(resource).unwrap()),
        ..CreateOptions::default()
    }
}

fn capped(max: u32, on_full: CapPolicy) -> Policy {
    Policy::builder()
        .subject_cap(Some(SubjectCap { max, on_full }))
        .build()
        .unwrap()
}

// ---- compare-and-swap -------------------------------------------------------------------

#[tokio::test]
async fn cas_on_a_stale_version_is_a_conflict() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let store = s.store();
    let rec = store
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    let mut next = rec.clone();
    next.version += 1;
    next.data = b"first".to_vec();
    store
        .compare_and_swap(&next, rec.version, clock.now())
        .await
        .unwrap();
    let mut again = rec.clone();
    again.version += 1;
    again.data = b"second".to_vec();
    let err = store
        .compare_and_swap(&again, rec.version, clock.now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::Conflict), "{err:?}");
    let stored = store.load_session(&rec.id).await.unwrap().record.unwrap();
    assert_eq!(stored.data, b"first");
}

#[tokio::test]
async fn cas_on_a_missing_or_expired_record_is_not_found() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let store = s.store();
    let rec = store
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();

    let mut ghost = rec.clone();
    ghost.id = leasehold::SessionId::from_bytes([9; 18]);
    let err = store
        .compare_and_swap(&ghost, 0, clock.now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");

    clock.set(rec.expires_at);
    let mut next = rec.clone();
    next.version += 1;
    next.expires_at = rec.absolute_deadline;
    let err = store
        .compare_and_swap(&next, rec.version, clock.now())
        .await
        .unwrap_err();
    assert!(matches!(err, StoreError::NotFound), "{err:?}");
    // Nothing revived it.
    let stored = store.load_session(&rec.id).await.unwrap().record.unwrap();
    assert_eq!(stored, rec);
}

// ---- caps under 64 real threads ---------------------------------------------------------

#[test]
fn subject_cap_reject_under_64_threads_admits_exactly_max() {
    let (s, _clock, _dir) = sessions(capped(5, CapPolicy::Reject));
    let alice = subject("alice");
    let results = race(64, {
        let s = Arc::clone(&s);
        let alice = alice.clone();
        move |_| {
            let s = Arc::clone(&s);
            let alice = alice.clone();
            async move { s.create(&alice, opts()).await }
        }
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let rejected = results
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::LimitReached {
                    limit: Limit::SubjectSessions
                })
            )
        })
        .count();
    assert_eq!((ok, rejected), (5, 59), "{results:?}");
    let live = block_on(s.list(&alice)).unwrap();
    assert_eq!(live.len(), 5);
}

#[test]
fn subject_cap_evict_oldest_under_64_threads_keeps_exactly_max_live() {
    let (s, _clock, _dir) = sessions(capped(5, CapPolicy::EvictOldest));
    let alice = subject("alice");
    let results = race(64, {
        let s = Arc::clone(&s);
        let alice = alice.clone();
        move |_| {
            let s = Arc::clone(&s);
            let alice = alice.clone();
            async move { s.create(&alice, opts()).await }
        }
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let created: Vec<_> = results.into_iter().map(Result::unwrap).collect();
    let live = block_on(s.list(&alice)).unwrap();
    assert_eq!(live.len(), 5);
    let live_ids: HashSet<_> = live.iter().map(|x| x.id).collect();
    let records = block_on(s.store().list_subject(&alice)).unwrap();
    assert_eq!(records.len(), 64);
    let mut evicted = 0;
    for c in &created {
        let v = block_on(s.validate(c.token.expose_secret(), &Context::none()));
        if live_ids.contains(&c.session.id) {
            assert!(v.is_ok(), "{v:?}");
        } else {
            evicted += 1;
            assert!(
                matches!(
                    v,
                    Err(Error::Revoked {
                        reason: RevokeReason::Evicted
                    })
                ),
                "{v:?}"
            );
        }
    }
    assert_eq!(evicted, 59);
}

#[test]
fn slot_caps_under_64_threads_admit_exactly_max() {
    let policy = Policy::builder()
        .max_slots_per_session(Some(3))
        .max_slots_per_resource(Some(4))
        .build()
        .unwrap();
    let (s, _clock, _dir) = sessions(policy);
    let a = block_on(s.create(&subject("alice"), opts())).unwrap();
    let b = block_on(s.create(&subject("bob"), opts())).unwrap();
    let term = Resource::new("terminal-1").unwrap();
    let results = race(64, {
        let s = Arc::clone(&s);
        let (a, b) = (a.session.id, b.session.id);
        let term = term.clone();
        move |i| {
            let s = Arc::clone(&s);
            let term = term.clone();
            async move {
                let session = if i % 2 == 0 { a } else { b };
                s.acquire_slot(&session, Some(&term)).await
            }
        }
    });
    let ok = results.iter().filter(|r| r.is_ok()).count();
    // 3 per session would allow 6; the resource allows 4.
    assert_eq!(ok, 4, "{results:?}");
    for r in &results {
        if let Err(e) = r {
            assert!(
                matches!(
                    e,
                    Error::LimitReached {
                        limit: Limit::SessionSlots | Limit::ResourceSlots
                    }
                ),
                "{e:?}"
            );
        }
    }
    // Per session: at most 3 each.
    let per_session = race(64, {
        let s = Arc::clone(&s);
        let a = a.session.id;
        move |_| {
            let s = Arc::clone(&s);
            async move { s.acquire_slot(&a, None).await }
        }
    });
    let held_by_a = results
        .iter()
        .enumerate()
        .filter(|(i, r)| i % 2 == 0 && r.is_ok())
        .count();
    let ok = per_session.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok + held_by_a, 3);
}

// ---- tickets ------------------------------------------------------------------------------

#[test]
fn sixty_four_threads_racing_one_ticket_take_it_once() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let c = block_on(s.create(&subject("alice"), opts())).unwrap();
    let t = block_on(s.mint_ticket(c.token.expose_secret(), &Context::none())).unwrap();
    let text = t.ticket.expose_secret().to_owned();
    let results = race(64, {
        let s = Arc::clone(&s);
        move |_| {
            let s = Arc::clone(&s);
            let text = text.clone();
            async move { s.redeem_ticket(&text).await }
        }
    });
    let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
    assert_eq!(ok.len(), 1, "{results:?}");
    assert_eq!(ok[0].id, c.session.id);
    assert!(
        results
            .iter()
            .filter(|r| r.is_err())
            .all(|r| matches!(r, Err(Error::NotAuthenticated)))
    );
}

#[tokio::test]
async fn an_expired_ticket_is_refused_and_removed() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let t = s
        .mint_ticket(c.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    clock.advance(secs(31));
    let r = s.redeem_ticket(t.ticket.expose_secret()).await;
    assert!(matches!(r, Err(Error::Expired)), "{r:?}");
    let r = s.redeem_ticket(t.ticket.expose_secret()).await;
    assert!(matches!(r, Err(Error::NotAuthenticated)), "{r:?}");
}

// ---- group revocation ---------------------------------------------------------------------

#[tokio::test]
async fn revoke_subject_and_resource_revoke_every_live_session_of_the_group() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let (alice, bob) = (subject("alice"), subject("bob"));
    let a1 = s.create(&alice, opts()).await.unwrap();
    let a2 = s.create(&alice, on("sandbox-1")).await.unwrap();
    let b1 = s.create(&bob, on("sandbox-1")).await.unwrap();
    let b2 = s.create(&bob, on("sandbox-2")).await.unwrap();
    let b3 = s.create(&bob, opts()).await.unwrap();

    assert_eq!(s.revoke_subject(&alice).await.unwrap(), 2);
    assert_eq!(s.revoke_subject(&alice).await.unwrap(), 0, "idempotent");
    for c in [&a1, &a2] {
        let v = s.validate(c.token.expose_secret(), &Context::none()).await;
        assert!(
            matches!(
                v,
                Err(Error::Revoked {
                    reason: RevokeReason::Subject
                })
            ),
            "{v:?}"
        );
    }
    // sandbox-1 still has b1 live (a2 is already revoked and not counted).
    assert_eq!(
        s.revoke_resource(&Resource::new("sandbox-1").unwrap())
            .await
            .unwrap(),
        1
    );
    let v = s.validate(b1.token.expose_secret(), &Context::none()).await;
    assert!(
        matches!(
            v,
            Err(Error::Revoked {
                reason: RevokeReason::Resource
            })
        ),
        "{v:?}"
    );
    for c in [&b2, &b3] {
        s.validate(c.token.expose_secret(), &Context::none())
            .await
            .unwrap();
    }
    // A session created after the revocation is unaffected.
    let a3 = s.create(&alice, opts()).await.unwrap();
    s.validate(a3.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(s.list(&alice).await.unwrap().len(), 1);
    assert_eq!(s.store().list_subject(&alice).await.unwrap().len(), 3);
}

#[test]
fn revoke_subject_racing_creators_leaves_nothing_created_before_it_live() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let alice = subject("alice");
    let before: Vec<_> = (0..20)
        .map(|_| block_on(s.create(&alice, opts())).unwrap())
        .collect();
    let results = race(33, {
        let s = Arc::clone(&s);
        let alice = alice.clone();
        move |i| {
            let s = Arc::clone(&s);
            let alice = alice.clone();
            async move {
                if i == 0 {
                    s.revoke_subject(&alice).await.map(|n| n as usize)
                } else {
                    s.create(&alice, opts()).await.map(|_| 0)
                }
            }
        }
    });
    assert!(results.iter().all(Result::is_ok));
    assert!(results[0].as_ref().unwrap() >= &20);
    for c in &before {
        let v = block_on(s.validate(c.token.expose_secret(), &Context::none()));
        assert!(matches!(v, Err(Error::Revoked { .. })), "{v:?}");
    }
}

// ---- reaping ------------------------------------------------------------------------------

#[tokio::test]
async fn reap_respects_its_limit_and_never_removes_a_live_record() {
    let policy = Policy::builder()
        .idle_timeout(Some(secs(600)))
        .touch_granularity(secs(1))
        .renewal_interval(None)
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let alice = subject("alice");
    let mut short = Vec::new();
    for _ in 0..7 {
        short.push(s.create(&alice, opts()).await.unwrap());
    }
    let keeper = s.create(&alice, opts()).await.unwrap();
    let revoked = s.create(&alice, opts()).await.unwrap();
    s.trusted_by_id().revoke(&revoked.session.id).await.unwrap();
    let slot = s.acquire_slot(&keeper.session.id, None).await.unwrap();
    let ticket = s
        .mint_ticket(keeper.token.expose_secret(), &Context::none())
        .await
        .unwrap();

    assert_eq!(s.reap(100).await.unwrap().total(), 0, "nothing is due");

    clock.advance(secs(300));
    s.validate(keeper.token.expose_secret(), &Context::none())
        .await
        .unwrap(); // touch: keeper now expires 600 s from here
    s.heartbeat_slot(&slot.id).await.unwrap_err(); // the slot expired at +60 s
    clock.advance(secs(301)); // short ones and the tombstone are past their deadline

    let first = s.reap(3).await.unwrap();
    assert_eq!(first.total(), 3);
    let mut total = first.total();
    loop {
        let r = s.reap(3).await.unwrap();
        assert!(r.total() <= 3);
        if r.total() == 0 {
            break;
        }
        total += r.total();
    }
    // 7 expired + 1 tombstone + 1 ticket (the slot was already removed by its heartbeat).
    assert_eq!(total, 9);
    for c in &short {
        assert!(
            s.store()
                .load_session(&c.session.id)
                .await
                .unwrap()
                .record
                .is_none()
        );
    }
    assert!(
        s.store()
            .load_session(&revoked.session.id)
            .await
            .unwrap()
            .record
            .is_none()
    );
    let _ = ticket;
    s.validate(keeper.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(s.list(&alice).await.unwrap().len(), 1);
}

/// After everything expires and is reaped, every tree but `meta` is empty: indexes, group heads,
/// creation logs and expiry entries are all reclaimed (INV-bounded-storage).
#[tokio::test]
async fn reaping_everything_leaves_no_index_behind() {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 3,
            on_full: CapPolicy::EvictOldest,
        }))
        .creation_rate(Some(Rate {
            max: 100,
            window: secs(60),
        }))
        .max_slots_per_session(Some(2))
        .max_slots_per_resource(Some(5))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    for i in 0..20 {
        let who = subject(&format!("user-{}", i % 4));
        let c = s.create(&who, on(&format!("r{}", i % 3))).await.unwrap();
        let _ = s
            .acquire_slot(&c.session.id, Some(&Resource::new("term").unwrap()))
            .await;
        if i % 5 == 0 {
            s.mint_ticket(c.token.expose_secret(), &Context::none())
                .await
                .unwrap();
        }
        if i % 7 == 0 {
            s.refresh(c.token.expose_secret(), &Context::none())
                .await
                .unwrap();
        }
    }
    s.revoke_subject(&subject("user-1")).await.unwrap();
    s.revoke_resource(&Resource::new("r2").unwrap())
        .await
        .unwrap();
    clock.advance(secs(48 * 3600));
    let out = s.reap(usize::MAX).await.unwrap();
    assert_eq!(out.sessions, 20);
    let db = s.store().db();
    for name in trees::ALL {
        let t = db.open_tree(name).unwrap();
        if name == trees::META {
            continue;
        }
        assert!(t.is_empty(), "{name} still holds {} keys", t.len());
    }
    let dump = s.store().raw_dump().await.unwrap().unwrap();
    // format, seq, live and order_head: keys and values.
    assert!(dump.len() <= 8, "only meta remains: {} items", dump.len());
    // The global-cap counter of active sessions is back to zero.
    let live = db
        .open_tree(trees::META)
        .unwrap()
        .get("live")
        .unwrap()
        .unwrap();
    assert_eq!(&live[..], &[1, 0, 0, 0, 0, 0, 0, 0, 0]);
}

// ---- limits ---------------------------------------------------------------------------

#[tokio::test]
async fn creation_rate_refuses_with_retry_after_then_recovers() {
    let policy = Policy::builder()
        .creation_rate(Some(Rate {
            max: 2,
            window: secs(60),
        }))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let alice = subject("alice");
    s.create(&alice, opts()).await.unwrap();
    clock.advance(secs(10));
    s.create(&alice, opts()).await.unwrap();
    let e = s.create(&alice, opts()).await.unwrap_err();
    assert!(
        matches!(e, Error::RateLimited { retry_after } if retry_after == secs(50)),
        "{e:?}"
    );
    s.create(&subject("bob"), opts()).await.unwrap();
    clock.advance(secs(50));
    s.create(&alice, opts()).await.unwrap();
    let e = s.create(&alice, opts()).await.unwrap_err();
    assert!(
        matches!(e, Error::RateLimited { retry_after } if retry_after == secs(10)),
        "{e:?}"
    );
}

#[tokio::test]
async fn global_cap_counts_exactly_the_live_sessions() {
    let policy = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 3,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .idle_timeout(Some(secs(600)))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let a = s.create(&subject("a"), opts()).await.unwrap();
    s.create(&subject("b"), opts()).await.unwrap();
    clock.advance(secs(300));
    let c = s.create(&subject("c"), opts()).await.unwrap();
    let e = s.create(&subject("d"), opts()).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::LimitReached {
                limit: Limit::GlobalSessions
            }
        ),
        "{e:?}"
    );
    // Revoking frees a place.
    s.trusted_by_id().revoke(&c.session.id).await.unwrap();
    let d = s.create(&subject("d"), opts()).await.unwrap();
    s.create(&subject("e"), opts()).await.unwrap_err();
    // Expiry frees places without any reap: a and b expire at +600 s.
    clock.advance(secs(301));
    s.create(&subject("e"), opts()).await.unwrap();
    s.create(&subject("f"), opts()).await.unwrap();
    s.create(&subject("g"), opts()).await.unwrap_err();
    let _ = (a, d);
}

#[test]
fn global_cap_under_64_threads_admits_exactly_max() {
    let policy = Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max: 10,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let (s, _clock, _dir) = sessions(policy);
    let results = race(64, {
        let s = Arc::clone(&s);
        move |i| {
            let s = Arc::clone(&s);
            async move { s.create(&subject(&format!("user-{i}")), opts()).await }
        }
    });
    assert_eq!(results.iter().filter(|r| r.is_ok()).count(), 10);
}

#[tokio::test]
async fn insert_of_an_existing_id_is_already_exists_and_writes_nothing() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let rec = s
        .store()
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    let mut other = rec.clone();
    other.data = b"another record under the same id".to_vec();
    let r = s
        .store()
        .insert_session(&other, &CreateLimits::default(), clock.now())
        .await;
    assert!(matches!(r, Err(StoreError::AlreadyExists)), "{r:?}");
    assert_eq!(
        s.store()
            .load_session(&rec.id)
            .await
            .unwrap()
            .record
            .unwrap(),
        rec
    );
}

#[tokio::test]
async fn evicted_ids_are_returned_oldest_first() {
    let (s, clock, _dir) = sessions(capped(2, CapPolicy::EvictOldest));
    let alice = subject("alice");
    let a = s.create(&alice, opts()).await.unwrap();
    clock.advance(secs(1));
    let b = s.create(&alice, opts()).await.unwrap();
    clock.advance(secs(1));
    let c = s.create(&alice, opts()).await.unwrap();
    let rec = s
        .store()
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    let mut d = rec.clone();
    d.id =
        leasehold::SessionId::generate(leasehold::ShardTag::of(&alice), &SeededEntropy::new(0xdd))
            .unwrap();
    let limits = CreateLimits {
        subject_cap: Some(SubjectCap {
            max: 1,
            on_full: CapPolicy::EvictOldest,
        }),
        ..CreateLimits::default()
    };
    let out = s
        .store()
        .insert_session(&d, &limits, clock.now())
        .await
        .unwrap();
    assert_eq!(
        out,
        InsertOutcome::Inserted {
            evicted: vec![b.session.id, c.session.id]
        }
    );
    let a_rec = s
        .store()
        .load_session(&a.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert!(matches!(
        a_rec.state,
        SessionState::Revoked {
            reason: RevokeReason::Evicted,
            ..
        }
    ));
}

// ---- corrupt bytes, persistence, lock ------------------------------------------------------

#[tokio::test]
async fn corrupt_bytes_in_the_sessions_tree_fail_closed() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let tree = s.store().db().open_tree(trees::SESSIONS).unwrap();
    let key = c.session.id.as_bytes().to_vec();
    let good = tree.get(&key).unwrap().unwrap().to_vec();

    let mut unknown_version = good.clone();
    unknown_version[0] = 99;
    let cases: Vec<Vec<u8>> = vec![
        b"garbage".to_vec(),
        Vec::new(),
        good[..good.len() / 2].to_vec(),
        unknown_version,
        [good.as_slice(), &[0]].concat(),
    ];
    for bytes in cases {
        tree.insert(&key, bytes.clone()).unwrap();
        let v = s.validate(c.token.expose_secret(), &Context::none()).await;
        assert!(
            matches!(v, Err(Error::CorruptRecord(_))),
            "{bytes:?}: {v:?}"
        );
        let r = s.trusted_by_id().revoke(&c.session.id).await;
        assert!(matches!(r, Err(Error::CorruptRecord(_))), "{r:?}");
        let l = s.store().list_subject(&subject("alice")).await;
        assert!(matches!(l, Err(StoreError::Corrupt(_))), "{l:?}");
    }
    // A valid record of another session stored under this key is refused too.
    let other = s.create(&subject("bob"), opts()).await.unwrap();
    let other_bytes = tree.get(other.session.id.as_bytes()).unwrap().unwrap();
    tree.insert(&key, other_bytes).unwrap();
    let v = s.validate(c.token.expose_secret(), &Context::none()).await;
    assert!(matches!(v, Err(Error::CorruptRecord(_))), "{v:?}");
}

#[tokio::test]
async fn corrupt_index_values_fail_closed() {
    let policy = capped(3, CapPolicy::Reject);
    let (s, _clock, _dir) = sessions(policy);
    let alice = subject("alice");
    s.create(&alice, opts()).await.unwrap();
    let groups = s.store().db().open_tree(trees::GROUPS).unwrap();
    let (k, _) = groups.first().unwrap().unwrap();
    groups.insert(&k, &b"\x01short"[..]).unwrap();
    let e = s.create(&alice, opts()).await.unwrap_err();
    assert!(matches!(e, Error::CorruptRecord(_)), "{e:?}");
    groups.insert(&k, &[7u8; 17][..]).unwrap();
    let e = s.create(&alice, opts()).await.unwrap_err();
    assert!(matches!(e, Error::CorruptRecord(_)), "{e:?}");

    let expiry = s.store().db().open_tree(trees::EXPIRY).unwrap();
    // An undecodable expiry entry never stalls the reaper: it is set aside and counted.
    expiry.insert(&[0u8; 3][..], &[][..]).unwrap();
    let out = s.reap(10).await.unwrap();
    assert_eq!(out.quarantined, 1, "{out:?}");
    assert!(expiry.get([0u8; 3]).unwrap().is_none());
    let quarantine = s.store().db().open_tree(trees::QUARANTINE).unwrap();
    assert_eq!(quarantine.len(), 1);
}

/// A due record whose bytes do not decode is moved, untouched, to the quarantine tree (and
/// reported by an event); the reaper goes on and removes everything else that is due.
#[tokio::test]
async fn reap_quarantines_a_corrupt_record_and_goes_on() {
    let (store, _dir) = common::store();
    let clock = ManualClock::default();
    let events = leasehold::CollectingSink::default();
    let s = Sessions::new(store, Policy::default())
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(9))
        .with_events(events.clone());
    let mut made = Vec::new();
    for _ in 0..5 {
        made.push(s.create(&subject("alice"), opts()).await.unwrap());
    }
    let sessions_tree = s.store().db().open_tree(trees::SESSIONS).unwrap();
    let bad_key = made[2].session.id.as_bytes().to_vec();
    sessions_tree.insert(&bad_key, &b"torn page"[..]).unwrap();
    clock.advance(secs(48 * 3600));
    let out = s.reap(100).await.unwrap();
    assert_eq!((out.sessions, out.quarantined), (4, 1), "{out:?}");
    assert_eq!(sessions_tree.len(), 0);
    let quarantine = s.store().db().open_tree(trees::QUARANTINE).unwrap();
    let kept: Vec<_> = quarantine.iter().map(|kv| kv.unwrap()).collect();
    assert_eq!(kept.len(), 1);
    assert!(kept[0].0.ends_with(&bad_key));
    assert_eq!(&kept[0].1[..], b"torn page");
    assert!(
        events
            .events()
            .contains(&leasehold::Event::Quarantined { count: 1 })
    );
    // Nothing is left to stall a later pass.
    assert_eq!(s.reap(100).await.unwrap(), Default::default());
}

#[tokio::test]
async fn sessions_persist_across_close_and_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let open = |seed| {
        Sessions::new(reopen(dir.path()), Policy::default())
            .unwrap()
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(seed))
    };
    let s = open(1);
    let alice = subject("alice");
    let kept = s.create(&alice, on("r")).await.unwrap();
    let rotated = s.create(&alice, opts()).await.unwrap();
    let revoked = s.create(&alice, opts()).await.unwrap();
    let new = s
        .refresh(rotated.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    s.trusted_by_id().revoke(&revoked.session.id).await.unwrap();
    drop(s);

    let s = open(2);
    s.validate(kept.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    let v = s
        .validate(new.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(v.session.generation, 1);
    let v = s
        .validate(revoked.token.expose_secret(), &Context::none())
        .await;
    assert!(matches!(v, Err(Error::Revoked { .. })), "{v:?}");
    assert_eq!(s.list(&alice).await.unwrap().len(), 2);
    // Indexes survived too.
    assert_eq!(
        s.revoke_resource(&Resource::new("r").unwrap())
            .await
            .unwrap(),
        1
    );
}

#[test]
fn a_second_open_of_the_same_path_is_a_clear_lock_error() {
    let (store, dir) = store();
    let err = SledStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, OpenError::Locked { ref path } if path == dir.path()),
        "{err:?}"
    );
    let msg = err.to_string();
    assert!(msg.contains(&dir.path().display().to_string()), "{msg}");
    assert!(msg.contains("locked"), "{msg}");
    drop(store);
}

#[test]
fn a_database_of_another_layout_is_refused() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    db.open_tree(trees::META)
        .unwrap()
        .insert("format", "leasehold-sled/999")
        .unwrap();
    let err = SledStore::from_db(db).unwrap_err();
    assert!(matches!(err, OpenError::Format { .. }), "{err:?}");
}

#[test]
fn from_db_and_durability_settings() {
    let db = sled::Config::new().temporary(true).open().unwrap();
    let s = SledStore::from_db(db).unwrap();
    assert_eq!(s.durability(), Durability::FlushOnSecurityWrites);
    let s = s.with_durability(Durability::FlushOnEveryWrite);
    assert_eq!(s.durability(), Durability::FlushOnEveryWrite);
    assert!(s.capabilities().raw_dump);
    assert!(!s.capabilities().multi_process);
    // Reopening a database written by this build is fine.
    let again = SledStore::from_db(s.db().clone()).unwrap();
    let _ = again;
}

#[tokio::test]
async fn every_write_mode_works_end_to_end() {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open_with(dir.path(), Durability::FlushOnEveryWrite).unwrap();
    let clock = ManualClock::default();
    let s = Sessions::new(store, Policy::default())
        .unwrap()
        .with_clock(clock.clone());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    clock.advance(secs(120));
    s.validate(c.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    let lease = s.acquire_slot(&c.session.id, None).await.unwrap();
    s.heartbeat_slot(&lease.id).await.unwrap();
    assert!(s.release_slot(&lease.id).await.unwrap());
    assert!(!s.release_slot(&lease.id).await.unwrap());
}

#[tokio::test]
async fn the_raw_dump_holds_no_secret() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let c = s
        .create(
            &subject("alice"),
            CreateOptions {
                context: Context::bound("device-42"),
                ..opts()
            },
        )
        .await
        .unwrap();
    let r = s
        .refresh(c.token.expose_secret(), &Context::bound("device-42"))
        .await
        .unwrap();
    let t = s
        .mint_ticket(r.token.expose_secret(), &Context::bound("device-42"))
        .await
        .unwrap();
    let dump = s.store().raw_dump().await.unwrap().unwrap();
    let blob: Vec<u8> = dump.concat();
    let secrets = [
        c.token.expose_secret(),
        r.token.expose_secret(),
        t.ticket.expose_secret(),
    ];
    for token in secrets {
        // The secret is the last SECRET_TEXT_LEN characters (base64url may itself contain '_').
        let secret = &token[token.len() - leasehold::token::SECRET_TEXT_LEN..];
        use base64::Engine as _;
        let raw = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(secret)
            .unwrap();
        assert_eq!(raw.len(), 32);
        for needle in [secret.as_bytes(), raw.as_slice(), &raw[..16], &raw[16..]] {
            assert!(
                !blob.windows(needle.len()).any(|w| w == needle),
                "secret bytes found in the dump"
            );
        }
    }
    assert!(!blob.windows(9).any(|w| w == b"device-42"));
    // The dump does contain the records (the audit sees everything).
    assert!(blob.windows(5).any(|w| w == b"alice"));
}

#[tokio::test]
async fn slots_follow_their_session() {
    let policy = Policy::builder()
        .max_slots_per_session(Some(1))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let lease = s.acquire_slot(&c.session.id, None).await.unwrap();
    let e = s.acquire_slot(&c.session.id, None).await.unwrap_err();
    assert!(matches!(
        e,
        Error::LimitReached {
            limit: Limit::SessionSlots
        }
    ));
    // An expired slot no longer counts.
    clock.advance(secs(61));
    let lease2 = s.acquire_slot(&c.session.id, None).await.unwrap();
    assert!(matches!(
        s.heartbeat_slot(&lease.id).await,
        Err(Error::SlotLost)
    ));
    s.trusted_by_id().revoke(&c.session.id).await.unwrap();
    assert!(matches!(
        s.heartbeat_slot(&lease2.id).await,
        Err(Error::SlotLost)
    ));
    assert!(
        !s.release_slot(&lease2.id).await.unwrap(),
        "deleted by the heartbeat"
    );
    // Refused, and the denial says why the session ended.
    let e = s.acquire_slot(&c.session.id, None).await.unwrap_err();
    assert!(
        matches!(
            e,
            Error::Revoked {
                reason: leasehold::RevokeReason::Revoked
            }
        ),
        "{e:?}"
    );
}

// ---- endings are final (store time) --------------------------------------------------------

/// A capped insert that counts a member as expired writes that member's tombstone in the same
/// transaction — even when the insert itself is then refused — so a caller whose clock lags
/// cannot see the member live again and the cap holds on every clock.
#[tokio::test]
async fn a_refused_capped_insert_still_writes_the_tombstones_of_what_it_counted_as_expired() {
    let (s, clock, _dir) = sessions(capped(1, CapPolicy::Reject));
    let old = s.create(&subject("alice"), opts()).await.unwrap();
    // Past the old session's idle deadline: it no longer counts, the new one takes the place.
    clock.set(old.session.expires_at);
    let new = s.create(&subject("alice"), opts()).await.unwrap();
    let rec = s
        .store()
        .load_session(&old.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert!(
        matches!(
            rec.state,
            SessionState::Revoked {
                reason: RevokeReason::Expired,
                ..
            }
        ),
        "{:?}",
        rec.state
    );
    // A driver whose clock lags 5 minutes sees one live session, not two.
    let lagging = ManualClock::new(old.session.expires_at.saturating_sub(secs(300)));
    let slow = Sessions::new(s.store().clone(), capped(1, CapPolicy::Reject))
        .unwrap()
        .with_clock(lagging);
    let live = slow.list(&subject("alice")).await.unwrap();
    assert_eq!(
        live.iter().map(|x| x.id).collect::<Vec<_>>(),
        vec![new.session.id]
    );
    assert!(matches!(
        slow.validate(old.token.expose_secret(), &Context::none())
            .await,
        Err(Error::Expired)
    ));
}

/// Group revocation tombstones a member that is past its deadline but not yet reaped, so a
/// driver whose clock lags cannot use it afterwards (a logout never depends on a clock).
#[tokio::test]
async fn revoke_subject_tombstones_expired_unreaped_members() {
    let (s, clock, _dir) = sessions(Policy::default());
    let c = s.create(&subject("alice"), opts()).await.unwrap();
    let lagging = ManualClock::new(clock.now());
    clock.set(c.session.expires_at.saturating_add(secs(1)));
    assert_eq!(s.revoke_subject(&subject("alice")).await.unwrap(), 0);
    let slow = Sessions::new(s.store().clone(), Policy::default())
        .unwrap()
        .with_clock(lagging);
    assert!(matches!(
        slow.validate(c.token.expose_secret(), &Context::none())
            .await,
        Err(Error::Revoked {
            reason: RevokeReason::Subject
        })
    ));
}

// ---- group operations finish under a flood -------------------------------------------------

/// Sessions alice holds before the flood starts.
const PREFILL: usize = 300;

/// Runs `op` while `flooders` threads keep creating sessions for alice (on resource "r"), and
/// returns what `op` returned. The flood stops only once `op` has returned, so an `op` that
/// starves while its group keeps changing never returns: the watchdog then fails the test
/// (a bound on starvation, not a speed claim).
fn under_flood<T: Send + 'static>(
    policy: Policy,
    prefill: usize,
    flooders: usize,
    op: impl FnOnce(&Sessions<SledStore>) -> T + Send + 'static,
) -> T {
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (s, _clock, _dir) = sessions(policy);
    // A large group makes each scan slow, so an optimistic retry loop meets a changed group on
    // (almost) every attempt: the starvation the issue reproduced.
    block_on(async {
        for _ in 0..prefill {
            s.create(&subject("alice"), on("r")).await.unwrap();
        }
    });
    let stop = Arc::new(AtomicBool::new(false));
    let created = Arc::new(AtomicU64::new(0));
    let threads: Vec<_> = (0..flooders)
        .map(|_| {
            let (s, stop, created) = (Arc::clone(&s), Arc::clone(&stop), Arc::clone(&created));
            std::thread::spawn(move || {
                while !stop.load(Ordering::SeqCst) {
                    if block_on(s.create(&subject("alice"), on("r"))).is_ok() {
                        created.fetch_add(1, Ordering::SeqCst);
                    }
                }
            })
        })
        .collect();
    // Let the flood start before the operation under test.
    while created.load(Ordering::SeqCst) < 20 {
        std::thread::yield_now();
    }
    let (tx, rx) = std::sync::mpsc::channel();
    let s2 = Arc::clone(&s);
    std::thread::spawn(move || {
        let _ = tx.send(op(&s2));
    });
    let out = rx.recv_timeout(secs(60));
    stop.store(true, Ordering::SeqCst);
    for t in threads {
        t.join().unwrap();
    }
    out.expect("the group operation did not finish while its group kept changing")
}

#[test]
fn revoke_subject_finishes_under_a_flood_of_creations() {
    let n = under_flood(Policy::default(), PREFILL, 4, |s| {
        block_on(s.revoke_subject(&subject("alice")))
    });
    assert!(n.unwrap() >= PREFILL as u64);
}

#[test]
fn revoke_resource_finishes_under_a_flood_of_creations() {
    let n = under_flood(Policy::default(), PREFILL, 4, |s| {
        block_on(s.revoke_resource(&Resource::new("r").unwrap()))
    });
    assert!(n.unwrap() >= PREFILL as u64);
}

#[test]
fn capped_inserts_finish_under_a_flood_of_capped_creations() {
    let policy = capped(3, CapPolicy::EvictOldest);
    let results = under_flood(policy, 0, 4, |s| {
        (0..50)
            .map(|_| block_on(s.create(&subject("alice"), on("r"))).map(|_| ()))
            .collect::<Vec<_>>()
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
}

#[test]
fn list_finishes_under_a_flood_of_creations() {
    let listed = under_flood(Policy::default(), PREFILL, 4, |s| {
        block_on(s.list(&subject("alice")))
    });
    assert!(listed.unwrap().len() >= PREFILL);
}

/// A capped create reads its subject's open sessions only: evicted and revoked sessions stay
/// indexed (until reaped) but are marked ended, so the cost follows the live count, not the
/// tombstones (at 10 k members that was 28 ms against 0.3 ms uncapped).
#[tokio::test]
async fn a_capped_create_reads_open_sessions_only_not_tombstones() {
    let (s, _clock, _dir) = sessions(capped(2, CapPolicy::EvictOldest));
    let alice = subject("alice");
    for _ in 0..200 {
        s.create(&alice, opts()).await.unwrap();
    }
    s.revoke_subject(&alice).await.unwrap();
    for _ in 0..2 {
        s.create(&alice, opts()).await.unwrap();
    }
    let before = s.store().records_counted_by_caps();
    s.create(&alice, opts()).await.unwrap();
    let read = s.store().records_counted_by_caps() - before;
    assert_eq!(
        read, 2,
        "read {read} records for a cap of 2 among 200 tombstones"
    );
    // The tombstones are still listed (they are reaped, not forgotten).
    assert_eq!(s.store().list_subject(&alice).await.unwrap().len(), 203);
}

/// Rate logs due before a session never hide it from a bounded reap: `reap(limit 1)` removes
/// the due session on the first call even when a due creation log sorts first.
#[tokio::test]
async fn a_due_rate_log_does_not_hide_a_due_session_from_a_bounded_reap() {
    let policy = Policy::builder()
        .creation_rate(Some(Rate {
            max: 10,
            window: secs(60),
        }))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    s.create(&subject("alice"), opts()).await.unwrap();
    clock.advance(secs(31 * 60));
    let out = s.reap(1).await.unwrap();
    assert_eq!(out.sessions, 1, "{out:?}");
}

/// Several due creation logs in front of a due session do not end a bounded reap early.
#[tokio::test]
async fn many_due_rate_logs_do_not_hide_a_due_session_from_a_bounded_reap() {
    let policy = Policy::builder()
        .creation_rate(Some(Rate {
            max: 10,
            window: secs(60),
        }))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    // Five subjects' creation logs fall due a minute after creation, long before the session.
    for i in 0..5 {
        let c = s
            .create(&subject(&format!("user-{i}")), opts())
            .await
            .unwrap();
        if i > 0 {
            s.trusted_by_id().revoke(&c.session.id).await.unwrap();
        }
    }
    clock.advance(secs(31 * 60));
    let mut reaped = 0;
    for _ in 0..5 {
        let out = s.reap(1).await.unwrap();
        assert!(out.sessions <= 1, "{out:?}");
        reaped += out.sessions;
        if reaped == 5 {
            break;
        }
    }
    let out = s.reap(1).await.unwrap();
    assert_eq!(
        reaped + out.sessions,
        5,
        "every due session is reaped, one per call"
    );
}

/// One undecodable member never blocks "log out everywhere": `revoke_subject` moves its bytes
/// to the quarantine tree (the session reads as absent: fail closed) and revokes the others;
/// a capped create of the subject goes on likewise.
#[tokio::test]
async fn a_corrupt_member_does_not_block_group_revocation_or_a_capped_create() {
    let (s, _clock, _dir) = sessions(capped(3, CapPolicy::Reject));
    let alice = subject("alice");
    let made: Vec<_> = [
        s.create(&alice, opts()).await.unwrap(),
        s.create(&alice, opts()).await.unwrap(),
        s.create(&alice, opts()).await.unwrap(),
    ]
    .into();
    let sessions_tree = s.store().db().open_tree(trees::SESSIONS).unwrap();
    sessions_tree
        .insert(made[1].session.id.as_bytes(), &b"torn page"[..])
        .unwrap();
    // The capped create counts 2 readable members and quarantines the third: it fits.
    s.create(&alice, opts()).await.unwrap();
    let quarantine = s.store().db().open_tree(trees::QUARANTINE).unwrap();
    assert_eq!(quarantine.len(), 1);
    assert_eq!(s.revoke_subject(&alice).await.unwrap(), 3);
    for c in [&made[0], &made[2]] {
        assert!(matches!(
            s.validate(c.token.expose_secret(), &Context::none()).await,
            Err(Error::Revoked {
                reason: RevokeReason::Subject
            })
        ));
    }
    assert!(matches!(
        s.validate(made[1].token.expose_secret(), &Context::none())
            .await,
        Err(Error::NotAuthenticated)
    ));
}
