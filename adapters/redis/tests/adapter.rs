//! Redis-specific checks on the standalone server: races across separate connections (one
//! store, and so one connection, per racer), one round trip per validate, nothing secret at
//! rest, and configuration refusals.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::sync::Arc;

use leasehold::{
    CapPolicy, Clock, ManualClock, Policy, Resource, Sessions, Store, Subject, SubjectCap,
    SystemClock,
};
use leasehold_redis::{RedisConfig, RedisStore};
use tokio::sync::Barrier;

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .unwrap()
}

/// `n` stores on one prefix, each with its own connection, as separate processes would have.
async fn racers(n: usize) -> (Vec<RedisStore>, support::Cleanup) {
    let (first, cleanup) = support::open(&support::url()).await.unwrap();
    let mut v = vec![first.clone()];
    for _ in 1..n {
        v.push(
            RedisStore::open(RedisConfig::new(support::url()).prefix(first.prefix()))
                .await
                .unwrap(),
        );
    }
    (v, cleanup)
}

/// Replaces the bytes under an existing key by hand, keeping its TTL (`SET … XX KEEPTTL`), on a
/// connection of its own: what the store's checks must survive.
async fn overwrite(key: &str, bytes: &[u8]) {
    let client = redis::Client::open(support::url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let ok: String = redis::cmd("SET")
        .arg(key)
        .arg(bytes)
        .arg("XX")
        .arg("KEEPTTL")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert_eq!(ok, "OK", "{key} was not there to overwrite");
}

fn sessions(store: RedisStore, policy: Policy, clock: &ManualClock) -> Sessions<RedisStore> {
    Sessions::new(store, policy)
        .unwrap()
        .with_clock(clock.clone())
}

#[test]
fn sixty_four_creators_under_a_cap_of_five_get_five() {
    rt().block_on(async {
        let (stores, _c) = racers(64).await;
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::builder()
            .subject_cap(Some(SubjectCap {
                max: 5,
                on_full: CapPolicy::Reject,
            }))
            .build()
            .unwrap();
        let barrier = Arc::new(Barrier::new(64));
        let alice = Subject::new("alice").unwrap();
        let mut tasks = Vec::new();
        for st in stores.iter().cloned() {
            let (s, b, a) = (
                sessions(st, policy.clone(), &clock),
                barrier.clone(),
                alice.clone(),
            );
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                s.create(&a, Default::default()).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 5);
        let live = stores[0]
            .count_live(&leasehold::Scope::Subject(alice), clock.now())
            .await
            .unwrap();
        assert_eq!(live, 5);
    });
}

#[test]
fn sixty_four_refreshers_get_one_successor_and_sixty_four_redeemers_one_ticket() {
    rt().block_on(async {
        let (stores, _c) = racers(64).await;
        let clock = ManualClock::new(SystemClock.now());
        let s0 = sessions(stores[0].clone(), Policy::default(), &clock);
        let made = s0
            .create(&Subject::new("bob").unwrap(), Default::default())
            .await
            .unwrap();
        let token = made.token.expose_secret().to_string();
        let barrier = Arc::new(Barrier::new(64));
        let mut tasks = Vec::new();
        for st in stores.iter().cloned() {
            let (s, b, t) = (
                sessions(st, Policy::default(), &clock),
                barrier.clone(),
                token.clone(),
            );
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                s.refresh(&t, &Default::default())
                    .await
                    .map(|r| r.token.expose_secret().to_string())
            }));
        }
        let mut successors = std::collections::BTreeSet::new();
        for t in tasks {
            successors.insert(t.await.unwrap().unwrap());
        }
        assert_eq!(
            successors.len(),
            1,
            "refresh storm minted several successors"
        );

        let current = successors.into_iter().next().unwrap();
        let ticket = s0
            .mint_ticket(&current, &Default::default())
            .await
            .unwrap()
            .ticket
            .expose_secret()
            .to_string();
        let barrier = Arc::new(Barrier::new(64));
        let mut tasks = Vec::new();
        for st in stores.iter().cloned() {
            let (s, b, t) = (
                sessions(st, Policy::default(), &clock),
                barrier.clone(),
                ticket.clone(),
            );
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                s.redeem_ticket(&t).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 1);
    });
}

#[test]
fn sixty_four_slot_acquirers_on_one_resource_across_slots_get_exactly_the_cap() {
    rt().block_on(async {
        let (stores, _c) = racers(64).await;
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::builder()
            .max_slots_per_resource(Some(3))
            .build()
            .unwrap();
        let s0 = sessions(stores[0].clone(), policy.clone(), &clock);
        let res = Resource::new("terminal-1").unwrap();
        // 8 sessions of 8 subjects: 8 different shard tags (slots on a Cluster).
        let mut ids = Vec::new();
        for i in 0..8 {
            let opts = leasehold::CreateOptions {
                resource: Some(res.clone()),
                ..Default::default()
            };
            let c = s0
                .create(&Subject::new(format!("u{i}")).unwrap(), opts)
                .await
                .unwrap();
            ids.push(c.session.id);
        }
        let tags: std::collections::BTreeSet<_> = ids.iter().map(|i| i.shard_tag()).collect();
        assert!(tags.len() >= 6);
        let barrier = Arc::new(Barrier::new(64));
        let mut tasks = Vec::new();
        for (i, st) in stores.iter().cloned().enumerate() {
            let (s, b, id, r) = (
                sessions(st, policy.clone(), &clock),
                barrier.clone(),
                ids[i % 8],
                res.clone(),
            );
            tasks.push(tokio::spawn(async move {
                b.wait().await;
                s.acquire_slot(&id, Some(&r)).await.is_ok()
            }));
        }
        let mut ok = 0;
        for t in tasks {
            ok += usize::from(t.await.unwrap());
        }
        assert_eq!(ok, 3);
    });
}

#[test]
fn validate_is_one_round_trip() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let s = sessions(store.clone(), Policy::default(), &clock);
        let made = s
            .create(&Subject::new("carol").unwrap(), Default::default())
            .await
            .unwrap();
        let t = made.token.expose_secret().to_string();
        s.validate(&t, &Default::default()).await.unwrap(); // scripts loaded
        let before = store.round_trips();
        s.validate(&t, &Default::default()).await.unwrap();
        assert_eq!(store.round_trips() - before, 1);
    });
}

/// On a single server a create is one script (the global step and the resource registration
/// included), under a subject cap and a global cap too; the registration is the one
/// `revoke_resource` walks.
#[test]
fn create_is_one_round_trip_on_a_single_server() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::builder()
            .subject_cap(Some(SubjectCap {
                max: 2,
                on_full: CapPolicy::EvictOldest,
            }))
            .global_cap(Some(leasehold::GlobalCap {
                max: 100,
                on_full: CapPolicy::Reject,
            }))
            .inexact_global_cap_ok(true)
            .build()
            .unwrap();
        let s = sessions(store.clone(), policy, &clock);
        let dave = Subject::new("dave").unwrap();
        s.create(&dave, Default::default()).await.unwrap(); // scripts loaded
        for _ in 0..3 {
            let before = store.round_trips();
            s.create(&dave, Default::default()).await.unwrap();
            assert_eq!(store.round_trips() - before, 1);
        }
        assert_eq!(s.count(&leasehold::Scope::All).await.unwrap(), 2);
        let tagged = leasehold::CreateOptions {
            resource: Some(Resource::new("printer").unwrap()),
            ..Default::default()
        };
        let before = store.round_trips();
        let erin = s
            .create(&Subject::new("erin").unwrap(), tagged)
            .await
            .unwrap();
        assert_eq!(store.round_trips() - before, 1);
        let printer = Resource::new("printer").unwrap();
        assert_eq!(s.revoke_resource(&printer).await.unwrap(), 1);
        assert!(
            s.validate(erin.token.expose_secret(), &Default::default())
                .await
                .is_err()
        );
    });
}

/// `TYPE` and `PEXPIRETIME` of `key` on a connection of its own.
async fn key_facts(key: &str) -> (String, i64) {
    let client = redis::Client::open(support::url()).unwrap();
    let mut c = client.get_multiplexed_async_connection().await.unwrap();
    let ty: String = redis::cmd("TYPE")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    let t: i64 = redis::cmd("PEXPIRETIME")
        .arg(key)
        .query_async(&mut c)
        .await
        .unwrap();
    (ty, t)
}

#[test]
fn without_the_global_index_a_create_writes_no_index_entry_and_a_global_cap_is_refused() {
    rt().block_on(async {
        let (store, _c) = support::open_with(&support::url(), |c| c.global_index(false))
            .await
            .unwrap();
        assert!(store.capabilities().no_global_index);
        let clock = ManualClock::new(SystemClock.now());
        let s = sessions(store.clone(), Policy::default(), &clock);
        let tagged = leasehold::CreateOptions {
            resource: Some(Resource::new("printer").unwrap()),
            ..Default::default()
        };
        let mut deadline = 0;
        for who in ["ann", "bob", "cid"] {
            let c = s
                .create(&Subject::new(who).unwrap(), tagged.clone())
                .await
                .unwrap();
            deadline = deadline.max(c.session.absolute_deadline.as_millis());
            // Still one round trip: the marker is kept by the insert script itself.
            let before = store.round_trips();
            s.create(&Subject::new(who).unwrap(), Default::default())
                .await
                .unwrap();
            assert_eq!(store.round_trips() - before, 1);
        }
        let prefix = store.prefix().to_owned();
        assert_eq!(key_facts(&format!("{prefix}:g:{{global}}")).await.0, "none");
        // The marker lives exactly as long as the latest unindexed session may.
        let (ty, until) = key_facts(&format!("{prefix}:g:{{global}}:unindexed")).await;
        assert_eq!((ty.as_str(), until), ("string", deadline as i64));
        // Scope::All is walked: 6 live; the resource index is kept as before.
        assert_eq!(s.count(&leasehold::Scope::All).await.unwrap(), 6);
        let printer = Resource::new("printer").unwrap();
        assert_eq!(s.revoke_resource(&printer).await.unwrap(), 3);
        assert_eq!(s.count(&leasehold::Scope::All).await.unwrap(), 3);
        // A global cap: refused by the engine, and by the store for a direct caller.
        let capped = support::global_capped(100);
        assert!(matches!(
            Sessions::new(store.clone(), capped.clone()),
            Err(leasehold::PolicyError::NotGuaranteed { .. })
        ));
        let limits = leasehold::decide::create::limits(&capped);
        let (record, _) = leasehold::decide::create::new_session(
            &Subject::new("dan").unwrap(),
            &Default::default(),
            clock.now(),
            &capped,
            &leasehold::OsEntropy,
        )
        .unwrap();
        assert!(matches!(
            store.insert_session(&record, &limits, clock.now()).await,
            Err(leasehold::StoreError::InvalidWrite(_))
        ));
        assert!(matches!(
            store
                .check_limits(&record.subject, &limits, clock.now())
                .await,
            Err(leasehold::StoreError::InvalidWrite(_))
        ));
    });
}

#[test]
fn reopening_a_prefix_with_the_global_index_indexes_the_sessions_created_without_it() {
    rt().block_on(async {
        let (off, _c) = support::open_with(&support::url(), |c| c.global_index(false))
            .await
            .unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let s = sessions(off.clone(), Policy::default(), &clock);
        let mut made = Vec::new();
        for i in 0..5 {
            made.push(
                s.create(
                    &Subject::new(format!("user-{i}")).unwrap(),
                    Default::default(),
                )
                .await
                .unwrap(),
            );
        }
        s.logout(made[0].token.expose_secret()).await.unwrap();
        let on = RedisStore::open(RedisConfig::new(support::url()).prefix(off.prefix()))
            .await
            .unwrap();
        let prefix = on.prefix().to_owned();
        assert_eq!(
            key_facts(&format!("{prefix}:g:{{global}}:unindexed"))
                .await
                .0,
            "none",
            "the marker outlived the rebuild"
        );
        // A global cap of 4 counts the 4 live sessions created without the index: full.
        let s = sessions(on.clone(), support::global_capped(4), &clock);
        let r = s
            .create(&Subject::new("late").unwrap(), Default::default())
            .await;
        assert!(support::global_cap_full(&r), "{r:?}");
        assert_eq!(s.count(&leasehold::Scope::All).await.unwrap(), 4);
        let page = on
            .list_sessions(&leasehold::Scope::All, None, 10)
            .await
            .unwrap();
        assert_eq!(
            page.records.len(),
            5,
            "every record, the logged-out one too"
        );
    });
}

#[test]
fn nothing_secret_is_stored() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let s = sessions(store.clone(), Policy::default(), &clock);
        let made = s
            .create(&Subject::new("dave").unwrap(), Default::default())
            .await
            .unwrap();
        let t = made.token.expose_secret().to_string();
        let r = s.refresh(&t, &Default::default()).await.unwrap();
        let ticket = s
            .mint_ticket(r.token.expose_secret(), &Default::default())
            .await
            .unwrap();
        let secrets = [
            t.clone(),
            r.token.expose_secret().to_string(),
            ticket.ticket.expose_secret().to_string(),
        ];
        let dump = store.raw_dump().await.unwrap().unwrap();
        assert!(dump.len() > 3);
        for secret in &secrets {
            // the secret part: the last 43 characters (base64url may itself contain '_')
            let tail = &secret.as_bytes()[secret.len() - 43..];
            for v in &dump {
                assert!(
                    !v.windows(tail.len()).any(|w| w == tail),
                    "a secret is stored in Redis"
                );
            }
        }
    });
}

#[test]
fn a_prefix_with_a_hash_tag_is_refused_and_an_unreachable_server_says_how_to_start_one() {
    rt().block_on(async {
        let e = RedisStore::open(RedisConfig::new(support::url()).prefix("a{b}"))
            .await
            .unwrap_err();
        assert!(e.to_string().contains('{'), "{e}");
        let Err(e) = support::open("redis://127.0.0.1:1").await else {
            panic!("connected to port 1")
        };
        assert!(e.contains("scripts/services.sh"), "{e}");
    });
}

/// A member of a resource's slot reservations that is not `slot id ‖ session id` (planted by
/// hand, ordered before the real ones) is pruned when the cap is full, and the members after it
/// keep their own sessions: a live holder is never pruned in its place.
#[test]
fn a_malformed_slot_reservation_is_pruned_without_shifting_the_others() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::builder()
            .max_slots_per_resource(Some(2))
            .build()
            .unwrap();
        let s = sessions(store.clone(), policy, &clock);
        let res = Resource::new("printer").unwrap();
        let mut ids = Vec::new();
        for name in ["a", "b", "c", "d"] {
            let made = s
                .create(&Subject::new(name).unwrap(), Default::default())
                .await
                .unwrap();
            ids.push(made.session.id);
        }
        let [a, b, c, d] = ids[..] else {
            unreachable!()
        };
        s.acquire_slot(&a, Some(&res)).await.unwrap();
        s.acquire_slot(&b, Some(&res)).await.unwrap();
        s.trusted_by_id().revoke(&b).await.unwrap();

        let client = redis::Client::open(support::url()).unwrap();
        let mut conn = client.get_multiplexed_async_connection().await.unwrap();
        let keys: Vec<String> = redis::cmd("KEYS")
            .arg(format!("{}:lr:*", store.prefix()))
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(keys.len(), 1, "{keys:?}");
        let lr = &keys[0];
        // Order the members: planted, a's, b's (by score), so that a mis-pairing of parsed
        // holders with raw members would take a's reservation for b's.
        let all: Vec<(Vec<u8>, f64)> = redis::cmd("ZRANGE")
            .arg(lr)
            .arg(0)
            .arg(-1)
            .arg("WITHSCORES")
            .query_async(&mut conn)
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        let lo = all.iter().map(|m| m.1).fold(f64::INFINITY, f64::min);
        let hi = all.iter().map(|m| m.1).fold(0.0, f64::max);
        let planted: &[u8] = b"\xffnot a reservation";
        for (member, score) in [
            (planted.to_vec(), lo - 1.0),
            (
                all.iter()
                    .find(|m| m.0.ends_with(a.as_bytes()))
                    .unwrap()
                    .0
                    .clone(),
                hi,
            ),
            (
                all.iter()
                    .find(|m| m.0.ends_with(b.as_bytes()))
                    .unwrap()
                    .0
                    .clone(),
                hi + 1.0,
            ),
        ] {
            let _: i64 = redis::cmd("ZADD")
                .arg(lr)
                .arg(score)
                .arg(member)
                .query_async(&mut conn)
                .await
                .unwrap();
        }

        // Full (the planted member, a's, revoked b's): both non-holders are pruned, a stays.
        s.acquire_slot(&c, Some(&res)).await.unwrap();
        let e = s.acquire_slot(&d, Some(&res)).await.unwrap_err();
        assert!(
            matches!(
                e,
                leasehold::Error::LimitReached {
                    limit: leasehold::Limit::ResourceSlots
                }
            ),
            "{e:?}"
        );
        let members: Vec<Vec<u8>> = redis::cmd("ZRANGE")
            .arg(lr)
            .arg(0)
            .arg(-1)
            .query_async(&mut conn)
            .await
            .unwrap();
        let holders: std::collections::BTreeSet<_> =
            members.iter().map(|m| m[18..].to_vec()).collect();
        let want: std::collections::BTreeSet<_> =
            [a, c].iter().map(|i| i.as_bytes().to_vec()).collect();
        assert_eq!(members.len(), 2);
        assert_eq!(holders, want);
    });
}

/// A session record that no longer decodes (planted garbage under its key) is skipped by
/// listing and counting and its slot reservation is pruned when the resource cap is full,
/// while a load of it by id is still `Corrupt` (fail closed).
#[test]
fn a_corrupt_record_is_skipped_by_listing_counting_and_slot_pruning() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::builder()
            .max_slots_per_resource(Some(1))
            .build()
            .unwrap();
        let s = sessions(store.clone(), policy, &clock);
        let res = Resource::new("scanner").unwrap();
        let a = s
            .create(&Subject::new("a").unwrap(), Default::default())
            .await
            .unwrap();
        let b = s
            .create(&Subject::new("b").unwrap(), Default::default())
            .await
            .unwrap();
        s.acquire_slot(&a.session.id, Some(&res)).await.unwrap();

        let hex: String = a
            .session
            .id
            .as_bytes()
            .iter()
            .map(|x| format!("{x:02x}"))
            .collect();
        let key = format!("{}:s:{{{}}}:{hex}", store.prefix(), &hex[..4]);
        overwrite(&key, b"\x03garbage").await;

        let e = store.load_session(&a.session.id).await.unwrap_err();
        assert!(matches!(e, leasehold::StoreError::Corrupt(_)), "{e:?}");
        assert_eq!(s.count(&leasehold::Scope::All).await.unwrap(), 1);
        let page = s.list_page(&leasehold::Scope::All, None, 10).await.unwrap();
        let ids: Vec<_> = page.sessions.iter().map(|x| x.id).collect();
        assert_eq!(ids, vec![b.session.id]);
        // The cap of 1 is held by a's reservation; a can never validate again: pruned.
        s.acquire_slot(&b.session.id, Some(&res)).await.unwrap();
    });
}

/// With `wait_replicas`, only security writes wait for replicas: on this server (no replicas)
/// `wait_replicas(1, …)` refuses a rotation (`WAIT: 0 of 1`, outcome unknown) but a validate
/// whose touch is due still succeeds and writes the touch (a routine write: no `WAIT`, no extra
/// round trip on the hot path).
#[test]
fn a_touch_sends_no_wait_a_rotation_does() {
    rt().block_on(async {
        let (plain, _c) = support::open(&support::url()).await.unwrap();
        let waiting = RedisStore::open(
            RedisConfig::new(support::url())
                .prefix(plain.prefix())
                .wait_replicas(1, std::time::Duration::from_millis(50)),
        )
        .await
        .unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let policy = Policy::default();
        let made = sessions(plain.clone(), policy.clone(), &clock)
            .create(&Subject::new("toucher").unwrap(), Default::default())
            .await
            .unwrap();
        let s = sessions(waiting, policy, &clock);
        let before = plain.load_session(&made.session.id).await.unwrap();
        let before = before.record.unwrap();
        clock.advance(std::time::Duration::from_secs(120)); // past the touch granularity
        s.validate(made.token.expose_secret(), &Default::default())
            .await
            .unwrap();
        let after = plain.load_session(&made.session.id).await.unwrap();
        let after = after.record.unwrap();
        assert!(
            after.version > before.version && after.last_seen > before.last_seen,
            "the validate wrote no touch"
        );
        match s
            .refresh(made.token.expose_secret(), &Default::default())
            .await
        {
            Err(leasehold::Error::StoreUnavailable(leasehold::StoreError::Unavailable(m))) => {
                assert!(m.contains("WAIT: 0 of 1"), "{m}")
            }
            other => panic!("a rotation was acknowledged without its replica: {other:?}"),
        }
    });
}

/// The scripts read a record's u64 fields as Lua numbers (doubles): one at or above 2^53 would
/// be rounded, so the record is refused as corrupt (fail closed), while one just below is
/// exact. Planted through raw bytes (the engine never writes such a version): a swap from
/// version 2^53 − 2 commits, one from 2^53 is `Corrupt`.
#[test]
fn the_scripts_refuse_u64_fields_at_2_pow_53_and_take_them_just_below() {
    rt().block_on(async {
        let (store, _c) = support::open(&support::url()).await.unwrap();
        let clock = ManualClock::new(SystemClock.now());
        let s = sessions(store.clone(), Policy::default(), &clock);
        const EXACT_LIMIT: u64 = 1 << 53;
        for (version, commits) in [(EXACT_LIMIT - 2, true), (EXACT_LIMIT, false)] {
            let made = s
                .create(&Subject::new("big").unwrap(), Default::default())
                .await
                .unwrap();
            let mut planted = *store
                .load_session(&made.session.id)
                .await
                .unwrap()
                .record
                .unwrap();
            planted.version = version;
            overwrite(
                &store.session_key(&planted.id),
                &leasehold::codec::encode_session(&planted),
            )
            .await;
            let mut touched = planted.clone();
            touched.version = version + 1;
            touched.last_seen = clock.now();
            let swapped = store.compare_and_swap(&touched, version, clock.now()).await;
            if commits {
                swapped.unwrap();
                let stored = store.load_session(&planted.id).await.unwrap().record;
                assert_eq!(stored.map(|r| r.version), Some(EXACT_LIMIT - 1));
            } else {
                let e = swapped.unwrap_err();
                assert!(matches!(e, leasehold::StoreError::Corrupt(_)), "{e:?}");
            }
        }
    });
}
