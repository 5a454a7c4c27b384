//! The store methods added with the seed systems, on real sled in temp dirs: listing in pages,
//! live counts, limit checks without writes, giving back a creation, the evicting global cap in
//! creation order, what a reap reports, tombstone retention, long names, and the upgrade of a
//! layout-1 database. Time is a `ManualClock`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeSet;
use std::sync::Arc;

use common::{race, reopen, secs, sessions, subject};
use leasehold::store::{CreateLimits, InsertOutcome};
use leasehold::{
    CapPolicy, Clock, CreateOptions, GlobalCap, MAX_NAME_LEN, MAX_PAGE, ManualClock, Page, Policy,
    Rate, Reaped, Resource, RevokeReason, Scope, SeededEntropy, SessionId, SessionRecord,
    SessionState, Sessions, ShardTag, Store, Subject, SubjectCap, TOMBSTONE_RETENTION, Timestamp,
};
use leasehold_sled::{SledStore, trees};

fn on(resource: &str) -> CreateOptions {
    CreateOptions {
        resource: Some(Resource::new(resource).unwrap()),
        ..CreateOptions::default()
    }
}

fn global(max: u64, on_full: CapPolicy) -> Option<GlobalCap> {
    Some(GlobalCap { max, on_full })
}

/// Every id of `scope`, walking pages of `limit`; checks each page is ascending and within it.
async fn walk(store: &SledStore, scope: &Scope, limit: usize) -> Vec<SessionId> {
    let mut out: Vec<SessionId> = Vec::new();
    let mut after = None;
    loop {
        let Page { records, next } = store
            .list_sessions(scope, after.as_ref(), limit)
            .await
            .unwrap();
        assert!(records.len() <= limit.min(MAX_PAGE));
        for r in &records {
            if let Some(last) = out.last() {
                assert!(r.id > *last, "ascending, each once");
            }
            out.push(r.id);
        }
        match next {
            Some(n) => {
                assert_eq!(Some(n), records.last().map(|r| r.id), "next is the last id");
                after = Some(n);
            }
            None => return out,
        }
    }
}

/// A record of `subject` with chosen random bytes (after the shard tag) and creation time.
fn record_like(
    template: &SessionRecord,
    subject: &Subject,
    fill: u8,
    at: Timestamp,
) -> SessionRecord {
    let mut b = [fill; 18];
    b[..2].copy_from_slice(&ShardTag::of(subject).0.to_be_bytes());
    SessionRecord {
        id: SessionId::from_bytes(b),
        subject: subject.clone(),
        created_at: at,
        last_seen: at,
        ..template.clone()
    }
}

async fn template(s: &Sessions<SledStore>) -> SessionRecord {
    let c = s
        .create(&subject("template"), CreateOptions::default())
        .await
        .unwrap();
    s.store()
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .map(|r| *r)
        .unwrap()
}

fn is_evicted(r: &SessionRecord) -> bool {
    matches!(
        r.state,
        SessionState::Revoked {
            reason: RevokeReason::Evicted,
            ..
        }
    )
}

// ---- list_sessions ----------------------------------------------------------------------

#[tokio::test]
async fn paging_with_a_small_page_returns_every_record_exactly_once() {
    let (s, clock, _dir) = sessions(Policy::default());
    let mut all = BTreeSet::new();
    let mut by_subject = vec![BTreeSet::new(); 3];
    let mut by_resource = vec![BTreeSet::new(); 2];
    for i in 0..23 {
        let c = s
            .create(&subject(&format!("u{}", i % 3)), on(&format!("r{}", i % 2)))
            .await
            .unwrap();
        all.insert(c.session.id);
        by_subject[i % 3].insert(c.session.id);
        by_resource[i % 2].insert(c.session.id);
        clock.advance(secs(1));
    }
    // Tombstones and expired records are listed too, until reaped.
    s.revoke_subject(&subject("u1")).await.unwrap();
    let store = s.store();
    for limit in [1, 4, 7, 1000, usize::MAX] {
        let got = walk(store, &Scope::All, limit).await;
        // The template-free store holds exactly what was created.
        assert_eq!(
            got.iter().copied().collect::<BTreeSet<_>>(),
            all,
            "limit {limit}"
        );
        assert_eq!(got.len(), all.len());
        for (i, want) in by_subject.iter().enumerate() {
            let got = walk(store, &Scope::Subject(subject(&format!("u{i}"))), limit).await;
            assert_eq!(got.len(), want.len());
            assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), *want);
        }
        for (i, want) in by_resource.iter().enumerate() {
            let scope = Scope::Resource(Resource::new(format!("r{i}")).unwrap());
            let got = walk(store, &scope, limit).await;
            assert_eq!(got.len(), want.len());
            assert_eq!(got.into_iter().collect::<BTreeSet<_>>(), *want);
        }
    }
    // A scope with nothing in it, and a cursor past everything.
    let empty = store
        .list_sessions(&Scope::Subject(subject("nobody")), None, 10)
        .await
        .unwrap();
    assert_eq!(empty, Page::default());
    let last = *all.iter().next_back().unwrap();
    let past = store
        .list_sessions(&Scope::All, Some(&last), 10)
        .await
        .unwrap();
    assert_eq!(past, Page::default());
    // A full last page whose end is the end of the scope may announce more; the next is empty.
    let exact = store.list_sessions(&Scope::All, None, 23).await.unwrap();
    assert_eq!(exact.records.len(), 23);
    assert_eq!(exact.next, None, "nothing follows the 23rd record");
}

#[tokio::test]
async fn a_page_skips_an_undecodable_record_instead_of_failing() {
    let (s, _clock, _dir) = sessions(Policy::default());
    let alice = subject("alice");
    let mut ids = Vec::new();
    for _ in 0..3 {
        ids.push(
            s.create(&alice, CreateOptions::default())
                .await
                .unwrap()
                .session
                .id,
        );
    }
    ids.sort();
    let db = s.store().db();
    db.open_tree(trees::SESSIONS)
        .unwrap()
        .insert(ids[1].as_bytes(), &b"garbage"[..])
        .unwrap();
    for scope in [Scope::All, Scope::Subject(alice.clone())] {
        let got = walk(s.store(), &scope, 1).await;
        assert_eq!(got, vec![ids[0], ids[2]]);
    }
}

// ---- count_live -------------------------------------------------------------------------

#[tokio::test]
async fn count_live_counts_only_the_live_sessions_of_the_scope() {
    let policy = Policy::builder()
        .idle_timeout(Some(secs(600)))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let (alice, bob) = (subject("alice"), subject("bob"));
    let old = s.create(&alice, on("t1")).await.unwrap();
    clock.advance(secs(300));
    let a2 = s.create(&alice, on("t1")).await.unwrap();
    s.create(&alice, on("t2")).await.unwrap();
    s.create(&bob, on("t1")).await.unwrap();
    s.trusted_by_id().revoke(&a2.session.id).await.unwrap();
    let store = s.store();
    let t1 = Scope::Resource(Resource::new("t1").unwrap());
    let count =
        |scope: Scope, at: Timestamp| async move { store.count_live(&scope, at).await.unwrap() };
    assert_eq!(count(Scope::All, clock.now()).await, 3);
    assert_eq!(count(Scope::Subject(alice.clone()), clock.now()).await, 2);
    assert_eq!(count(t1.clone(), clock.now()).await, 2);
    // The first session lapses (idle), unreaped: no longer live.
    clock.advance(secs(301));
    assert!(
        !store
            .load_session(&old.session.id)
            .await
            .unwrap()
            .record
            .unwrap()
            .is_live(clock.now())
    );
    assert_eq!(count(Scope::All, clock.now()).await, 2);
    assert_eq!(count(Scope::Subject(alice), clock.now()).await, 1);
    assert_eq!(count(t1, clock.now()).await, 1);
    assert_eq!(
        count(Scope::Subject(subject("nobody")), clock.now()).await,
        0
    );
}

// ---- check_limits -----------------------------------------------------------------------

#[tokio::test]
async fn check_limits_answers_what_insert_would_and_writes_nothing() {
    let policy = Policy::builder()
        .idle_timeout(Some(secs(600)))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let store = s.store();
    let alice = subject("alice");
    let tpl = template(&s).await;
    let a = s.create(&alice, CreateOptions::default()).await.unwrap();
    clock.advance(secs(1));
    let b = s.create(&alice, CreateOptions::default()).await.unwrap();
    // One of alice's sessions lapsed: an insert would tombstone it; a check writes nothing.
    clock.advance(secs(2));
    let lapsed = s.create(&alice, CreateOptions::default()).await.unwrap();
    let mut rec = store
        .load_session(&lapsed.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    let mut short = rec.clone();
    short.version += 1;
    short.expires_at = clock.now().saturating_add(secs(1));
    store
        .compare_and_swap(&short, rec.version, clock.now())
        .await
        .unwrap();
    clock.advance(secs(5));
    rec = short;
    assert!(!rec.is_live(clock.now()));

    let cases = [
        CreateLimits {
            subject_cap: Some(SubjectCap {
                max: 2,
                on_full: CapPolicy::EvictOldest,
            }),
            ..CreateLimits::default()
        },
        CreateLimits {
            subject_cap: Some(SubjectCap {
                max: 2,
                on_full: CapPolicy::Reject,
            }),
            ..CreateLimits::default()
        },
        CreateLimits {
            global_cap: global(3, CapPolicy::Reject),
            ..CreateLimits::default()
        },
        CreateLimits {
            global_cap: global(3, CapPolicy::EvictOldest),
            ..CreateLimits::default()
        },
        CreateLimits {
            subject_cap: Some(SubjectCap {
                max: 1,
                on_full: CapPolicy::EvictOldest,
            }),
            global_cap: global(2, CapPolicy::EvictOldest),
            ..CreateLimits::default()
        },
        CreateLimits {
            creation_rate: Some(Rate {
                max: 1,
                window: secs(3600),
            }),
            ..CreateLimits::default()
        },
    ];
    let expected = [
        InsertOutcome::Inserted {
            evicted: vec![a.session.id],
        },
        InsertOutcome::SubjectCapReached,
        InsertOutcome::GlobalCapReached,
        InsertOutcome::Inserted {
            evicted: vec![tpl.id],
        },
        // A subject cap of 1 evicts both a and b; counting them as gone, the store holds the
        // template and the new session: the global cap of 2 evicts nobody.
        InsertOutcome::Inserted {
            evicted: vec![a.session.id, b.session.id],
        },
        InsertOutcome::Inserted { evicted: vec![] },
    ];
    for (i, (limits, want)) in cases.iter().zip(&expected).enumerate() {
        let before = store.raw_dump().await.unwrap().unwrap();
        let checked = store
            .check_limits(&alice, limits, clock.now())
            .await
            .unwrap();
        assert_eq!(&checked, want, "case {i}");
        assert_eq!(
            store.raw_dump().await.unwrap().unwrap(),
            before,
            "case {i}: a check writes nothing"
        );
    }
    // The same decision as the insert itself: take the first case for real.
    let new = record_like(&tpl, &alice, 0x42, clock.now());
    let inserted = store
        .insert_session(&new, &cases[0], clock.now())
        .await
        .unwrap();
    assert_eq!(inserted, expected[0]);
    // The insert wrote the lapsed member's tombstone, which the check did not.
    let lapsed_now = store.load_session(&rec.id).await.unwrap().record.unwrap();
    assert!(matches!(
        lapsed_now.state,
        SessionState::Revoked {
            reason: RevokeReason::Expired,
            ..
        }
    ));
}

// ---- forget_creation --------------------------------------------------------------------

#[tokio::test]
async fn forget_creation_gives_back_exactly_that_entry_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let policy = || {
        Policy::builder()
            .creation_rate(Some(Rate {
                max: 2,
                window: secs(60),
            }))
            .build()
            .unwrap()
    };
    let open = |seed| {
        Sessions::new(reopen(dir.path()), policy())
            .unwrap()
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(seed))
    };
    let alice = subject("alice");
    let limits = CreateLimits {
        creation_rate: policy().creation_rate(),
        ..CreateLimits::default()
    };
    let (first, second) = {
        let s = open(1);
        let a = s.create(&alice, CreateOptions::default()).await.unwrap();
        clock.advance(secs(1));
        let b = s.create(&alice, CreateOptions::default()).await.unwrap();
        assert!(s.create(&alice, CreateOptions::default()).await.is_err());
        let store = s.store();
        assert!(store.forget_creation(&alice, &a.session.id).await.unwrap());
        assert!(
            !store.forget_creation(&alice, &a.session.id).await.unwrap(),
            "idempotent"
        );
        let stranger = SessionId::from_bytes([3; 18]);
        assert!(!store.forget_creation(&alice, &stranger).await.unwrap());
        assert!(
            !store
                .forget_creation(&subject("bob"), &b.session.id)
                .await
                .unwrap()
        );
        (a.session.id, b.session.id)
    };
    let s = open(2);
    let store = s.store();
    assert_eq!(
        store
            .check_limits(&alice, &limits, clock.now())
            .await
            .unwrap(),
        InsertOutcome::Inserted { evicted: vec![] },
        "the given-back place stays free after a reopen"
    );
    assert!(!store.forget_creation(&alice, &first).await.unwrap());
    s.create(&alice, CreateOptions::default()).await.unwrap();
    assert!(matches!(
        store
            .check_limits(&alice, &limits, clock.now())
            .await
            .unwrap(),
        InsertOutcome::RateLimited { .. }
    ));
    // Giving back the last entries empties the log, which leaves no index behind.
    assert!(store.forget_creation(&alice, &second).await.unwrap());
    let third = walk(store, &Scope::Subject(alice.clone()), 10).await;
    for id in third {
        store.forget_creation(&alice, &id).await.unwrap();
    }
    assert!(store.db().open_tree(trees::RATES).unwrap().is_empty());
    assert!(
        store
            .db()
            .open_tree(trees::EXPIRY)
            .unwrap()
            .iter()
            .all(|kv| {
                let (k, _) = kv.unwrap();
                k[8] != 4 // no creation-log entry left
            })
    );
}

// ---- evicting global cap ----------------------------------------------------------------

#[tokio::test]
async fn global_cap_evict_oldest_evicts_in_creation_order_within_one_millisecond() {
    let (s, clock, _dir) = sessions(Policy::default());
    let store = s.store();
    let tpl = template(&s).await;
    clock.advance(secs(1));
    let at = clock.now();
    let limits = CreateLimits {
        global_cap: global(4, CapPolicy::EvictOldest),
        ..CreateLimits::default()
    };
    // Inserted in descending id order, all in one millisecond: creation order is insertion
    // order, the reverse of id order.
    let fills = [0xf0u8, 0xc0, 0x90, 0x60, 0x30, 0x10];
    let recs: Vec<_> = fills
        .iter()
        .map(|f| record_like(&tpl, &subject("many"), *f, at))
        .collect();
    let mut outcomes = Vec::new();
    for r in &recs {
        outcomes.push(store.insert_session(r, &limits, at).await.unwrap());
    }
    let none = InsertOutcome::Inserted { evicted: vec![] };
    assert_eq!(
        outcomes,
        vec![
            none.clone(),
            none.clone(),
            none,
            // The template (created a second earlier) goes first, then in insertion order.
            InsertOutcome::Inserted {
                evicted: vec![tpl.id]
            },
            InsertOutcome::Inserted {
                evicted: vec![recs[0].id]
            },
            InsertOutcome::Inserted {
                evicted: vec![recs[1].id]
            },
        ]
    );
    assert_eq!(store.count_live(&Scope::All, at).await.unwrap(), 4);
    let evicted = store
        .load_session(&recs[1].id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert!(is_evicted(&evicted));

    // A subject cap evicts in creation order too, never by id.
    let alice = subject("alice");
    let mine: Vec<_> = [0xee, 0x11, 0x77]
        .iter()
        .map(|f| record_like(&tpl, &alice, *f, at))
        .collect();
    let subject_cap = CreateLimits {
        subject_cap: Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }),
        ..CreateLimits::default()
    };
    store
        .insert_session(&mine[0], &subject_cap, at)
        .await
        .unwrap();
    store
        .insert_session(&mine[1], &subject_cap, at)
        .await
        .unwrap();
    assert_eq!(
        store
            .insert_session(&mine[2], &subject_cap, at)
            .await
            .unwrap(),
        InsertOutcome::Inserted {
            evicted: vec![mine[0].id]
        }
    );

    // Subject evictions count as gone for the global cap; the store's oldest follow them.
    let both = CreateLimits {
        subject_cap: Some(SubjectCap {
            max: 2,
            on_full: CapPolicy::EvictOldest,
        }),
        global_cap: global(5, CapPolicy::EvictOldest),
        ..CreateLimits::default()
    };
    // Live now: recs[2..6] (4) + mine[1], mine[2] = 6; the subject cap ends mine[1], which
    // leaves 5 + the new one: the global cap ends the store's oldest, recs[2].
    let next = record_like(&tpl, &alice, 0x55, at);
    assert_eq!(
        store.insert_session(&next, &both, at).await.unwrap(),
        InsertOutcome::Inserted {
            evicted: vec![mine[1].id, recs[2].id]
        }
    );
    assert_eq!(store.count_live(&Scope::All, at).await.unwrap(), 5);
}

#[test]
fn global_cap_evict_oldest_under_64_threads_keeps_exactly_max_live() {
    let policy = Policy::builder()
        .global_cap(global(10, CapPolicy::EvictOldest))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let results = race(64, {
        let s = Arc::clone(&s);
        move |i| {
            let s = Arc::clone(&s);
            async move {
                s.create(&subject(&format!("u{i}")), CreateOptions::default())
                    .await
            }
        }
    });
    assert!(results.iter().all(Result::is_ok), "{results:?}");
    let store = s.store();
    assert_eq!(
        common::block_on(store.count_live(&Scope::All, clock.now())).unwrap(),
        10
    );
    let all = common::block_on(walk(store, &Scope::All, 100));
    let evicted = all
        .iter()
        .filter(|id| {
            let r = common::block_on(store.load_session(id))
                .unwrap()
                .record
                .unwrap();
            is_evicted(&r)
        })
        .count();
    assert_eq!((all.len(), evicted), (64, 54));
    // The creation-order index holds the live sessions only.
    assert_eq!(store.db().open_tree(trees::CREATED).unwrap().len(), 10);
}

// ---- reap -------------------------------------------------------------------------------

#[tokio::test]
async fn a_tombstone_of_a_100_year_session_is_reaped_after_the_retention() {
    let policy = Policy::builder()
        .no_absolute_lifetime()
        .idle_timeout(None)
        .subject_cap(Some(SubjectCap {
            max: 1,
            on_full: CapPolicy::EvictOldest,
        }))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let store = s.store();
    let (alice, bob, carol) = (subject("alice"), subject("bob"), subject("carol"));
    let revoked = s.create(&alice, CreateOptions::default()).await.unwrap();
    let by_subject = s.create(&bob, CreateOptions::default()).await.unwrap();
    let evicted = s.create(&carol, CreateOptions::default()).await.unwrap();
    let kept = s.create(&carol, CreateOptions::default()).await.unwrap();
    s.trusted_by_id().revoke(&revoked.session.id).await.unwrap();
    s.revoke_subject(&bob).await.unwrap();
    let t0 = clock.now();
    for id in [
        revoked.session.id,
        by_subject.session.id,
        evicted.session.id,
    ] {
        let r = store.load_session(&id).await.unwrap().record.unwrap();
        assert!(r.is_tombstone());
        assert_eq!(r.expires_at, t0.saturating_add(TOMBSTONE_RETENTION));
    }
    clock.set(
        t0.saturating_add(TOMBSTONE_RETENTION)
            .saturating_sub(secs(1)),
    );
    assert_eq!(s.reap(usize::MAX).await.unwrap().sessions, 0);
    clock.set(t0.saturating_add(TOMBSTONE_RETENTION));
    let out = s.reap(usize::MAX).await.unwrap();
    assert_eq!(out.sessions, 3);
    let mut ended = out.ended.clone();
    ended.sort_by_key(|r| r.subject.as_str().to_owned());
    assert_eq!(
        ended,
        vec![
            Reaped {
                id: revoked.session.id,
                subject: alice,
                resource: None,
                reason: Some(RevokeReason::Revoked),
            },
            Reaped {
                id: by_subject.session.id,
                subject: bob,
                resource: None,
                reason: Some(RevokeReason::Subject),
            },
            Reaped {
                id: evicted.session.id,
                subject: carol,
                resource: None,
                reason: Some(RevokeReason::Evicted),
            },
        ]
    );
    assert!(
        store
            .load_session(&kept.session.id)
            .await
            .unwrap()
            .record
            .unwrap()
            .is_live(clock.now())
    );
}

#[tokio::test]
async fn reap_reports_a_lapsed_session_as_expired() {
    let policy = Policy::builder()
        .idle_timeout(Some(secs(60)))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let c = s.create(&subject("alice"), on("desk")).await.unwrap();
    clock.advance(secs(61));
    let out = s.reap(usize::MAX).await.unwrap();
    assert_eq!(
        out.ended,
        vec![Reaped {
            id: c.session.id,
            subject: subject("alice"),
            resource: Some(Resource::new("desk").unwrap()),
            reason: Some(RevokeReason::Expired),
        }]
    );
}

// ---- long names -------------------------------------------------------------------------

#[tokio::test]
async fn a_1_kib_subject_and_resource_work_end_to_end() {
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 3,
            on_full: CapPolicy::EvictOldest,
        }))
        .creation_rate(Some(Rate {
            max: 10,
            window: secs(60),
        }))
        .global_cap(global(100, CapPolicy::EvictOldest))
        .build()
        .unwrap();
    let (s, clock, _dir) = sessions(policy);
    let store = s.store();
    let long = subject(&"s".repeat(MAX_NAME_LEN));
    let long_res = Resource::new("r".repeat(MAX_NAME_LEN)).unwrap();
    let opts = || CreateOptions {
        resource: Some(long_res.clone()),
        ..CreateOptions::default()
    };
    let mut ids = BTreeSet::new();
    for _ in 0..4 {
        ids.insert(s.create(&long, opts()).await.unwrap().session.id);
    }
    let listed = walk(store, &Scope::Subject(long.clone()), 2).await;
    assert_eq!(listed.into_iter().collect::<BTreeSet<_>>(), ids);
    let by_res = walk(store, &Scope::Resource(long_res.clone()), 3).await;
    assert_eq!(by_res.len(), 4);
    assert_eq!(
        store
            .count_live(&Scope::Subject(long.clone()), clock.now())
            .await
            .unwrap(),
        3,
        "the cap of 3 evicted the first"
    );
    assert_eq!(s.revoke_subject(&long).await.unwrap(), 3);
    assert_eq!(
        store
            .count_live(&Scope::Resource(long_res), clock.now())
            .await
            .unwrap(),
        0
    );
    clock.advance(TOMBSTONE_RETENTION);
    let out = s.reap(usize::MAX).await.unwrap();
    assert_eq!(out.sessions, 4);
    assert!(out.ended.iter().all(|r| r.subject == long));
    for name in trees::ALL {
        if name != trees::META {
            let t = store.db().open_tree(name).unwrap();
            assert!(t.is_empty(), "{name} still holds {} keys", t.len());
        }
    }
}

// ---- layout upgrade ---------------------------------------------------------------------

#[tokio::test]
async fn a_layout_1_database_is_indexed_in_creation_order_when_opened() {
    let dir = tempfile::tempdir().unwrap();
    let clock = ManualClock::default();
    let mut ids = Vec::new();
    {
        let s = Sessions::new(SledStore::open(dir.path()).unwrap(), Policy::default())
            .unwrap()
            .with_clock(clock.clone())
            .with_entropy(SeededEntropy::new(5));
        for i in 0..3 {
            ids.push(
                s.create(&subject(&format!("u{i}")), CreateOptions::default())
                    .await
                    .unwrap()
                    .session
                    .id,
            );
            clock.advance(secs(1));
        }
        let revoked = s
            .create(&subject("gone"), CreateOptions::default())
            .await
            .unwrap();
        s.trusted_by_id().revoke(&revoked.session.id).await.unwrap();
        // Make it look like layout 1: no creation-order index, the old marker.
        let db = s.store().db();
        db.open_tree(trees::CREATED).unwrap().clear().unwrap();
        db.open_tree(trees::CREATED_BY_ID).unwrap().clear().unwrap();
        db.open_tree(trees::META)
            .unwrap()
            .insert("format", &b"leasehold-sled/1"[..])
            .unwrap();
        s.store().flush().unwrap();
    }
    let store = reopen(dir.path());
    let format = store
        .db()
        .open_tree(trees::META)
        .unwrap()
        .get("format")
        .unwrap();
    assert_eq!(format.as_deref(), Some(leasehold_sled::FORMAT));
    assert_eq!(store.db().open_tree(trees::CREATED).unwrap().len(), 3);
    // The oldest of them is the first a full evicting global cap ends.
    let tpl = store.load_session(&ids[0]).await.unwrap().record.unwrap();
    let next = record_like(&tpl, &subject("new"), 0x21, clock.now());
    let limits = CreateLimits {
        global_cap: global(3, CapPolicy::EvictOldest),
        ..CreateLimits::default()
    };
    assert_eq!(
        store
            .insert_session(&next, &limits, clock.now())
            .await
            .unwrap(),
        InsertOutcome::Inserted {
            evicted: vec![ids[0]]
        }
    );
}
