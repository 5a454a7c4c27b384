//! Real concurrency on `MemoryStore`: many tasks (tokio multi-thread) or OS threads released
//! together by a barrier, then the named invariant checked on what they observed. Each test
//! prints its counts (run with `--nocapture` to see them).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::sync::Arc;

use common::*;
use leasehold::{
    CapPolicy, CollectingSink, Context, CreateOptions, Error, Event, Limit, ManualClock,
    MemoryStore, Policy, RevokeReason, SeededEntropy, SessionState, Sessions, Store, SubjectCap,
};

const N: usize = 64;

/// Sessions over the reference store, wrapped to count calls and to yield to the executor
/// after each one (so racing operations interleave between load and compare-and-swap).
type S = Arc<Sessions<Counting>>;

fn setup(policy: Policy, seed: u64) -> (S, ManualClock, CollectingSink) {
    let clock = ManualClock::default();
    let sink = CollectingSink::default();
    let s = Sessions::new(Counting::yielding(MemoryStore::new()), policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(seed))
        .with_events(sink.clone());
    (Arc::new(s), clock, sink)
}

fn no_renewal() -> Policy {
    Policy::builder().renewal_interval(None).build().unwrap()
}

/// Runs `n` tasks on the multi-thread runtime, all released together, and collects results.
async fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(tokio::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            let fut = f(i);
            tokio::spawn(async move {
                b.wait().await;
                fut.await
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await.unwrap());
    }
    out
}

/// Runs `n` OS threads, all released together by a barrier, each driving `f` to completion.
fn race_threads<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut,
    Fut: std::future::Future<Output = T> + Send + 'static,
{
    let barrier = Arc::new(std::sync::Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let b = barrier.clone();
            let fut = f(i);
            std::thread::spawn(move || {
                b.wait();
                futures::executor::block_on(fut)
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

fn count(events: &[Event], f: impl Fn(&Event) -> bool) -> usize {
    events.iter().filter(|e| f(e)).count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_refreshes_of_one_token_all_receive_the_same_successor() {
    // INV-single-successor.
    const ROUNDS: usize = 10;
    let (s, _clock, sink) = setup(no_renewal(), 1);
    let mut reissued_total = 0;
    let mut lost_cas = Vec::new();
    for round in 0..ROUNDS {
        let from = sink.events().len();
        let c = s
            .create(&subject(&format!("user-{round}")), CreateOptions::default())
            .await
            .unwrap();
        let token = c.token.expose_secret().to_owned();
        s.store().reset();
        let results = race(N, |_| {
            let (s, token) = (s.clone(), token.clone());
            async move {
                s.refresh(&token, &Context::none())
                    .await
                    .map(|r| (r.token.expose_secret().to_owned(), r.session.generation))
            }
        })
        .await;
        let texts: Vec<String> = results
            .into_iter()
            .map(|r| {
                let (t, generation) = r.unwrap();
                assert_eq!(generation, 1);
                t
            })
            .collect();
        assert_eq!(texts.len(), N);
        assert!(
            texts.iter().all(|t| t == &texts[0]),
            "round {round}: refreshes received different successors"
        );
        assert_ne!(texts[0], token);
        let events = sink.events().split_off(from);
        let rotated = count(&events, |e| matches!(e, Event::Rotated { .. }));
        let reissued = count(&events, |e| matches!(e, Event::SuccessorReissued { .. }));
        assert_eq!(rotated, 1, "round {round}: exactly one rotation");
        assert_eq!(reissued, N - 1);
        reissued_total += reissued;
        // Every CAS but the winning one was a refresh that lost the race and re-decided.
        lost_cas.push(s.store().calls().cas - 1);
        // The common successor is the session's current token.
        let v = s.validate(&texts[0], &Context::none()).await.unwrap();
        assert!(v.renewed.is_none());
        let rec = s
            .store()
            .load_session(&c.session.id)
            .await
            .unwrap()
            .record
            .unwrap();
        assert_eq!(rec.credential.generation, 1);
    }
    println!(
        "[concurrency] refresh x{N}, {ROUNDS} rounds: 1 distinct successor per round ({N}/{N} \
         identical texts), Rotated=1 per round, SuccessorReissued={reissued_total} total; \
         refreshes that lost a CAS race and re-decided, per round: {lost_cas:?}"
    );
}

#[test]
fn racing_redemptions_of_one_ticket_succeed_exactly_once() {
    // INV-one-shot, with OS threads.
    const ROUNDS: usize = 5;
    let (s, _clock, sink) = setup(Policy::default(), 2);
    let mut summary = Vec::new();
    for round in 0..ROUNDS {
        let (ticket, id) = futures::executor::block_on(async {
            let c = s
                .create(&subject("alice"), CreateOptions::default())
                .await
                .unwrap();
            let tk = s
                .mint_ticket(c.token.expose_secret(), &Context::none())
                .await
                .unwrap();
            (tk.ticket.expose_secret().to_owned(), c.session.id)
        });
        let results = race_threads(N, |_| {
            let (s, ticket) = (s.clone(), ticket.clone());
            async move { s.redeem_ticket(&ticket).await }
        });
        let ok: Vec<_> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        let not_auth = results
            .iter()
            .filter(|r| matches!(r, Err(Error::NotAuthenticated)))
            .count();
        assert_eq!(ok.len(), 1, "round {round}: exactly one redemption");
        assert_eq!(ok[0].id, id);
        assert_eq!(not_auth, N - 1, "round {round}: {results:?}");
        summary.push((ok.len(), not_auth));
    }
    let redeemed = count(&sink.events(), |e| {
        matches!(e, Event::TicketRedeemed { .. })
    });
    assert_eq!(redeemed, ROUNDS);
    println!(
        "[concurrency] ticket redeem x{N} threads, {ROUNDS} rounds: (ok, NotAuthenticated) per \
         round = {summary:?}; TicketRedeemed events = {redeemed}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_under_a_reject_cap_admit_exactly_the_cap() {
    // INV-caps with Reject.
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 5,
            on_full: CapPolicy::Reject,
        }))
        .build()
        .unwrap();
    let (s, _clock, sink) = setup(policy, 3);
    let results = race(N, |_| {
        let s = s.clone();
        async move { s.create(&subject("alice"), CreateOptions::default()).await }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    let limited = results
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
    let live = s.list(&subject("alice")).await.unwrap();
    assert_eq!(ok, 5);
    assert_eq!(limited, N - 5);
    assert_eq!(live.len(), 5);
    let mut created: Vec<_> = results
        .iter()
        .filter_map(|r| r.as_ref().ok().map(|c| c.session.id))
        .collect();
    let mut listed: Vec<_> = live.iter().map(|s| s.id).collect();
    created.sort();
    listed.sort();
    assert_eq!(created, listed);
    let rejected_events = count(&sink.events(), |e| matches!(e, Event::CapRejected { .. }));
    assert_eq!(rejected_events, N - 5);
    println!(
        "[concurrency] create x{N}, cap 5 Reject: {ok} created, {limited} LimitReached, {} live \
         in list, CapRejected events = {rejected_events}",
        live.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_creates_under_an_evicting_cap_leave_exactly_the_cap_live() {
    // INV-caps with EvictOldest.
    let policy = Policy::builder()
        .subject_cap(Some(SubjectCap {
            max: 5,
            on_full: CapPolicy::EvictOldest,
        }))
        .build()
        .unwrap();
    let (s, _clock, sink) = setup(policy, 4);
    let results = race(N, |_| {
        let s = s.clone();
        async move { s.create(&subject("alice"), CreateOptions::default()).await }
    })
    .await;
    let tokens: Vec<String> = results
        .into_iter()
        .map(|r| r.unwrap().token.expose_secret().to_owned())
        .collect();
    assert_eq!(tokens.len(), N);
    let live = s.list(&subject("alice")).await.unwrap();
    assert_eq!(live.len(), 5);
    let (mut valid, mut evicted) = (0, 0);
    for t in &tokens {
        match s.validate(t, &Context::none()).await {
            Ok(_) => valid += 1,
            Err(Error::Revoked {
                reason: RevokeReason::Evicted,
            }) => evicted += 1,
            Err(e) => panic!("unexpected {e:?}"),
        }
    }
    assert_eq!((valid, evicted), (5, N - 5));
    let evicted_events = count(&sink.events(), |e| matches!(e, Event::Evicted { .. }));
    assert_eq!(evicted_events, N - 5);
    println!(
        "[concurrency] create x{N}, cap 5 EvictOldest: {N} created, {} live in list, {valid} \
         validate, {evicted} Revoked(Evicted), Evicted events = {evicted_events}",
        live.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn refresh_racing_revoke_never_resurrects_the_session() {
    // INV-no-resurrection (and INV-revoke-all for the subject variant): after the revoke
    // returned, no token either side of the race validates or refreshes.
    const ITERATIONS: usize = 200;
    let (s, _clock, _sink) = setup(no_renewal(), 5);
    let (mut refresh_won, mut refresh_lost) = (0, 0);
    let (mut by_id, mut by_subject, mut with_predecessor) = (0, 0, 0);
    let mut cas_conflicts = 0;
    for i in 0..ITERATIONS {
        let who = subject(&format!("user-{i}"));
        let c = s.create(&who, CreateOptions::default()).await.unwrap();
        let id = c.session.id;
        let mut tokens = vec![c.token.expose_secret().to_owned()];
        if i % 3 == 0 {
            // Start from a rotated session, so a predecessor inside grace is also in play.
            let r = s.refresh(&tokens[0], &Context::none()).await.unwrap();
            tokens.push(r.token.expose_secret().to_owned());
            with_predecessor += 1;
        }
        let presented = tokens.last().unwrap().clone();
        s.store().reset();
        let barrier = Arc::new(tokio::sync::Barrier::new(2));
        let refresher = {
            let (s, b, t) = (s.clone(), barrier.clone(), presented.clone());
            tokio::spawn(async move {
                b.wait().await;
                s.refresh(&t, &Context::none())
                    .await
                    .map(|r| r.token.expose_secret().to_owned())
            })
        };
        let revoker = {
            let (s, b, who, all) = (s.clone(), barrier.clone(), who.clone(), tokens.clone());
            let by_subject = i % 2 == 1;
            // Stagger the revoke by 0-3 scheduler turns so every interleaving shows up:
            // before the refresh's load, between its load and its CAS, and after its CAS.
            let stagger = (i / 2) % 4;
            tokio::spawn(async move {
                b.wait().await;
                for _ in 0..stagger {
                    tokio::task::yield_now().await;
                }
                if by_subject {
                    assert_eq!(s.revoke_subject(&who).await.unwrap(), 1);
                } else {
                    assert_eq!(
                        s.trusted_by_id().revoke(&id).await.unwrap(),
                        leasehold::RevokeOutcome::Revoked
                    );
                }
                // Immediately after the revoke returned, possibly while the refresh runs.
                for t in &all {
                    assert!(s.validate(t, &Context::none()).await.is_err());
                }
                by_subject
            })
        };
        let refreshed = refresher.await.unwrap();
        let was_by_subject = revoker.await.unwrap();
        if was_by_subject {
            by_subject += 1;
        } else {
            by_id += 1;
        }
        // CAS attempts beyond the committed writes lost a race and were re-decided.
        let committed = u64::from(refreshed.is_ok()) + u64::from(!was_by_subject);
        cas_conflicts += s.store().calls().cas - committed;
        match refreshed {
            Ok(t) => {
                refresh_won += 1;
                tokens.push(t);
            }
            Err(Error::Revoked { .. }) => refresh_lost += 1,
            Err(e) => panic!("iteration {i}: unexpected refresh error {e:?}"),
        }
        for t in &tokens {
            let v = s.validate(t, &Context::none()).await;
            assert!(
                matches!(v, Err(Error::Revoked { .. })),
                "iteration {i}: a token validated after revoke: {v:?}"
            );
            assert!(s.refresh(t, &Context::none()).await.is_err());
        }
        let rec = s.store().load_session(&id).await.unwrap().record.unwrap();
        assert!(matches!(rec.state, SessionState::Revoked { .. }));
    }
    assert_eq!(refresh_won + refresh_lost, ITERATIONS);
    println!(
        "[concurrency] refresh vs revoke x{ITERATIONS}: refresh committed first {refresh_won}, \
         refresh refused (Revoked) {refresh_lost}; revoke by id {by_id}, by subject \
         {by_subject}; {with_predecessor} started from a rotated session; {cas_conflicts} CAS \
         conflicts re-decided; 0 resurrections"
    );
}

#[test]
fn concurrent_slot_acquires_at_a_cap_admit_exactly_the_cap() {
    // INV-caps for slots, per session and per resource, with OS threads.
    let policy = Policy::builder()
        .max_slots_per_session(Some(3))
        .max_slots_per_resource(Some(4))
        .build()
        .unwrap();
    let (s, _clock, _sink) = setup(policy, 6);
    let (one, many) = futures::executor::block_on(async {
        let one = s
            .create(&subject("alice"), CreateOptions::default())
            .await
            .unwrap()
            .session
            .id;
        let mut many = Vec::new();
        for i in 0..N {
            let c = s
                .create(&subject(&format!("u{i}")), CreateOptions::default())
                .await
                .unwrap();
            many.push(c.session.id);
        }
        (one, many)
    });

    let per_session = race_threads(N, |_| {
        let s = s.clone();
        async move { s.acquire_slot(&one, None).await }
    });
    let ok = per_session.iter().filter(|r| r.is_ok()).count();
    let capped = per_session
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::LimitReached {
                    limit: Limit::SessionSlots
                })
            )
        })
        .count();
    assert_eq!((ok, capped), (3, N - 3));

    let r = resource("terminal");
    let per_resource = race_threads(N, |i| {
        let (s, r, id) = (s.clone(), r.clone(), many[i]);
        async move { s.acquire_slot(&id, Some(&r)).await }
    });
    let rok = per_resource.iter().filter(|r| r.is_ok()).count();
    let rcapped = per_resource
        .iter()
        .filter(|r| {
            matches!(
                r,
                Err(Error::LimitReached {
                    limit: Limit::ResourceSlots
                })
            )
        })
        .count();
    assert_eq!((rok, rcapped), (4, N - 4));
    // Every lease that was granted can be heartbeated: they are all real.
    futures::executor::block_on(async {
        for l in per_session.iter().chain(per_resource.iter()).flatten() {
            s.heartbeat_slot(&l.id).await.unwrap();
        }
    });
    println!(
        "[concurrency] slot acquire x{N} threads: one session cap 3 -> {ok} acquired, {capped} \
         LimitReached(SessionSlots); one resource cap 4 -> {rok} acquired, {rcapped} \
         LimitReached(ResourceSlots)"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_validates_with_a_touch_due_all_succeed_and_touch_once() {
    // Lazy touch under contention: one writer wins, the others re-decide with no write due.
    let (s, clock, _sink) = setup(no_renewal(), 7);
    let c = s
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let token = c.token.expose_secret().to_owned();
    clock.advance(secs(60));
    let results = race(N, |_| {
        let (s, t) = (s.clone(), token.clone());
        async move { s.validate(&t, &Context::none()).await }
    })
    .await;
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert_eq!(ok, N, "{:?}", results.iter().find(|r| r.is_err()));
    let rec = s
        .store()
        .load_session(&c.session.id)
        .await
        .unwrap()
        .record
        .unwrap();
    assert_eq!(rec.version, 1, "exactly one touch was written");
    assert_eq!(rec.last_seen, s.now());
    let cas = s.store().calls().cas;
    println!(
        "[concurrency] validate x{N} with touch due: {ok} ok, stored version {}, {cas} CAS \
         attempts (1 committed, {} lost and re-decided with no write)",
        rec.version,
        cas - 1
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_data_updates_from_one_version_commit_exactly_once() {
    // update_data is compare-and-swap on the data version: no lost update under contention.
    let (s, _clock, _sink) = setup(no_renewal(), 8);
    let c = s
        .create(&subject("alice"), CreateOptions::default())
        .await
        .unwrap();
    let id = c.session.id;
    let results = race(N, |i| {
        let s = s.clone();
        async move {
            s.update_data(&id, 0, format!("writer-{i}").as_bytes())
                .await
        }
    })
    .await;
    let winners: Vec<usize> = results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| r.is_ok().then_some(i))
        .collect();
    let conflicts = results
        .iter()
        .filter(|r| matches!(r, Err(Error::VersionConflict)))
        .count();
    assert_eq!(winners.len(), 1, "{results:?}");
    assert_eq!(conflicts, N - 1);
    let v = s
        .validate(c.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    assert_eq!(v.session.data_version, 1);
    assert_eq!(
        v.session.data,
        format!("writer-{}", winners[0]).into_bytes()
    );
    println!(
        "[concurrency] update_data x{N} from version 0: 1 committed (writer-{}), {conflicts} \
         VersionConflict, final data_version {}",
        winners[0], v.session.data_version
    );
}
