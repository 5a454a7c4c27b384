//! loom: every interleaving of 2–3 racing operations over the driver and `MemoryStore`.
//!
//! Each model builds its whole world (`MemoryStore`, `ManualClock`, `SeededEntropy`) inside
//! `loom::model`, so the store's `Mutex` and the clock's `AtomicU64` (taken from the engine's
//! `sync` shim) are loom's model-checked types. Threads are loom threads driving the async
//! driver with `loom::future::block_on` (every store call completes without suspending).
//! Results are joined and checked on the model's main thread; a violation panics with the name
//! of the invariant it breaks.
//!
//! Run (see `scripts/loom.sh`):
//!
//! ```text
//! RUSTFLAGS="--cfg leasehold_loom" CARGO_TARGET_DIR=target/loom \
//!     cargo test -p leasehold --release --test loom
//! RUSTFLAGS="--cfg leasehold_loom --cfg leasehold_planted_bug" CARGO_TARGET_DIR=target/loom-planted \
//!     cargo test -p leasehold --release --test loom
//! ```
//!
//! Under `--cfg leasehold_planted_bug`, `MemoryStore` carries check-then-act twins of its atomic
//! steps (compare-and-swap, ticket take, capped insert, slot acquire release the lock between
//! the check and the write), the engine carries the rule before INV-store-time (`revoke`, a
//! group revoke and a read skip a session past its deadline without writing its ending), and
//! every model here is compiled as a `planted_twin::…` test that must panic with its
//! invariant's name: that run passes only if loom finds every planted bug.
//!
//! INV-store-time with one clock: a validate that read the clock *before* the deadline may land
//! its touch *after* another caller, reading the clock past the deadline, revoked the session
//! or was told it expired. The touch must fail: the ending was written down (a tombstone, over
//! an expired record too) before that caller returned. The twins of these models compile the
//! old rule (a revoke or a read that finds the session past its deadline writes nothing) and
//! must be caught.

#![cfg(leasehold_loom)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use leasehold::{
    CapPolicy, Clock, Context, CreateOptions, Error, Limit, ManualClock, MemoryStore, Policy,
    RevokeOutcome, SeededEntropy, SessionId, Sessions, Store, Subject, SubjectCap, Timestamp,
};
use loom::future::block_on;
use loom::thread;

const START: Timestamp = Timestamp::from_millis(1_000_000);

/// Everything shared by the racing threads: the store, the clock and the entropy source.
/// Clones share state, so each thread builds its own `Sessions` over the same world.
#[derive(Clone)]
struct World {
    store: MemoryStore,
    clock: ManualClock,
    entropy: SeededEntropy,
    policy: Policy,
}

impl World {
    fn new(policy: Policy) -> Self {
        World {
            store: MemoryStore::new(),
            clock: ManualClock::new(START),
            entropy: SeededEntropy::new(7),
            policy,
        }
    }

    fn sessions(&self) -> Sessions<MemoryStore> {
        Sessions::new(self.store.clone(), self.policy.clone())
            .unwrap()
            .with_clock(self.clock.clone())
            .with_entropy(self.entropy.clone())
    }

    /// Validates `token` now; `Ok(())` or the error's debug form.
    fn validates(&self, token: &str) -> Result<(), String> {
        block_on(self.sessions().validate(token, &Context::none()))
            .map(|_| ())
            .map_err(|e| format!("{e:?}"))
    }

    fn live_of(&self, subject: &Subject) -> usize {
        block_on(self.sessions().list(subject)).unwrap().len()
    }
}

fn alice() -> Subject {
    Subject::new("alice").unwrap()
}

/// Creates a session for alice and returns its id and token text.
fn create(w: &World) -> (SessionId, String) {
    let c = block_on(w.sessions().create(&alice(), CreateOptions::default())).unwrap();
    (c.session.id, c.token.expose_secret().to_owned())
}

/// Runs `f` under loom for every interleaving (bounded to `preemption_bound` preemptions, unless
/// `LOOM_MAX_PREEMPTIONS` says otherwise) and reports how many were explored.
fn explore(preemption_bound: Option<usize>, f: impl Fn() + Sync + Send + 'static) {
    let mut b = loom::model::Builder::new();
    if b.preemption_bound.is_none() {
        b.preemption_bound = preemption_bound;
    }
    let runs = std::sync::Arc::new(AtomicUsize::new(0));
    let counter = runs.clone();
    b.check(move || {
        counter.fetch_add(1, Ordering::Relaxed);
        f();
    });
    let name = std::thread::current().name().unwrap_or("?").to_owned();
    eprintln!(
        "{name}: {} interleavings explored (preemption bound {:?})",
        runs.load(Ordering::Relaxed),
        b.preemption_bound
    );
}

// ---------------------------------------------------------------------------------------------
// The models. Each returns normally when the invariant holds in every interleaving.
// ---------------------------------------------------------------------------------------------

/// Concurrent refreshes of one token converge on a single successor.
fn refresh_vs_refresh(threads: usize, bound: Option<usize>) {
    explore(bound, move || {
        let w = World::new(Policy::default());
        let (_, t0) = create(&w);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = w.sessions();
                let t = t0.clone();
                thread::spawn(move || {
                    block_on(s.refresh(&t, &Context::none()))
                        .map(|r| r.token.expose_secret().to_owned())
                        .map_err(|e| format!("{e:?}"))
                })
            })
            .collect();
        let got: Vec<String> = handles
            .into_iter()
            .map(|h| match h.join().unwrap() {
                Ok(t) => t,
                Err(e) => panic!("INV-single-successor violated: a concurrent refresh failed: {e}"),
            })
            .collect();
        assert!(
            got.iter().all(|t| t == &got[0]),
            "INV-single-successor violated: concurrent refreshes got different successors"
        );
        assert_ne!(
            got[0], t0,
            "INV-single-successor violated: no rotation happened"
        );
        assert!(
            w.validates(&got[0]).is_ok(),
            "INV-single-successor violated: the successor does not validate"
        );
    });
}

/// A refresh racing a revoke never leaves anything valid afterwards.
fn refresh_vs_revoke() {
    explore(None, || {
        let w = World::new(Policy::default());
        let (id, t0) = create(&w);
        let s = w.sessions();
        let t = t0.clone();
        let refresher = thread::spawn(move || {
            block_on(s.refresh(&t, &Context::none())).map(|r| r.token.expose_secret().to_owned())
        });
        let s = w.sessions();
        let revoker = thread::spawn(move || block_on(s.trusted_by_id().revoke(&id)));
        let refreshed = refresher.join().unwrap();
        let revoked = revoker.join().unwrap();
        assert!(
            matches!(revoked, Ok(RevokeOutcome::Revoked)),
            "INV-no-resurrection violated: revoke of a live session returned {revoked:?}"
        );
        assert!(
            w.validates(&t0).is_err(),
            "INV-no-resurrection violated: the original token validates after revoke"
        );
        if let Ok(t1) = &refreshed {
            assert!(
                w.validates(t1).is_err(),
                "INV-no-resurrection violated: the refreshed token validates after revoke"
            );
        }
        assert_eq!(
            w.live_of(&alice()),
            0,
            "INV-no-resurrection violated: a live session remains after revoke"
        );
    });
}

/// Concurrent redemptions of one ticket: exactly one succeeds.
fn ticket_double_redemption(threads: usize, bound: Option<usize>) {
    explore(bound, move || {
        let w = World::new(Policy::default());
        let (_, t0) = create(&w);
        let ticket = block_on(w.sessions().mint_ticket(&t0, &Context::none())).unwrap();
        let text = ticket.ticket.expose_secret().to_owned();
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = w.sessions();
                let text = text.clone();
                thread::spawn(move || block_on(s.redeem_ticket(&text)))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok, 1,
            "INV-one-shot violated: {ok} of {threads} concurrent redemptions succeeded"
        );
        for r in &results {
            assert!(
                matches!(r, Ok(_) | Err(Error::NotAuthenticated)),
                "INV-one-shot violated: unexpected redemption outcome {r:?}"
            );
        }
        assert!(
            block_on(w.sessions().redeem_ticket(&text)).is_err(),
            "INV-one-shot violated: the ticket redeems again afterwards"
        );
    });
}

/// Concurrent creates for one subject under a cap of 1: exactly one session is live.
fn create_vs_create(on_full: CapPolicy) {
    explore(None, move || {
        let policy = Policy::builder()
            .subject_cap(Some(SubjectCap { max: 1, on_full }))
            .build()
            .unwrap();
        let w = World::new(policy);
        let handles: Vec<_> = (0..2)
            .map(|_| {
                let s = w.sessions();
                thread::spawn(move || {
                    block_on(s.create(&alice(), CreateOptions::default()))
                        .map(|c| c.token.expose_secret().to_owned())
                })
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let created: Vec<&String> = results.iter().filter_map(|r| r.as_ref().ok()).collect();
        match on_full {
            CapPolicy::Reject => {
                assert_eq!(
                    created.len(),
                    1,
                    "INV-caps violated: {} creates passed a cap of 1 (Reject)",
                    created.len()
                );
                assert!(
                    results.iter().any(|r| matches!(
                        r,
                        Err(Error::LimitReached {
                            limit: Limit::SubjectSessions
                        })
                    )),
                    "INV-caps violated: the losing create was not refused by the cap: {results:?}"
                );
            }
            CapPolicy::EvictOldest => assert_eq!(
                created.len(),
                2,
                "INV-caps violated: EvictOldest refused a create: {results:?}"
            ),
        }
        let live = w.live_of(&alice());
        assert_eq!(
            live, 1,
            "INV-caps violated: {live} live sessions under a cap of 1"
        );
        let valid = created.iter().filter(|t| w.validates(t).is_ok()).count();
        assert_eq!(
            valid, 1,
            "INV-caps violated: {valid} tokens validate under a cap of 1"
        );
    });
}

/// A validate (whose touch is due) racing the clock's advance to the idle deadline and a reap
/// at it: a session is valid afterwards only if the validate touched it before the deadline,
/// and a reaped session never comes back.
fn touch_vs_expiry() {
    const IDLE: Duration = Duration::from_secs(600);
    explore(None, || {
        let policy = Policy::builder()
            .idle_timeout(Some(IDLE))
            .touch_granularity(Duration::from_secs(60))
            .renewal_interval(None)
            .build()
            .unwrap();
        let w = World::new(policy);
        let (id, t0) = create(&w);
        let deadline = START.saturating_add(IDLE);
        // 30 s before the idle deadline: a validate now is due to touch.
        w.clock
            .set(deadline.saturating_sub(Duration::from_secs(30)));
        let s = w.sessions();
        let t = t0.clone();
        let validator = thread::spawn(move || block_on(s.validate(&t, &Context::none())));
        let s = w.sessions();
        let clock = w.clock.clone();
        let reaper = thread::spawn(move || {
            clock.set(deadline);
            block_on(s.reap(100)).unwrap()
        });
        let validated = validator.join().unwrap();
        let reaped = reaper.join().unwrap();
        assert_eq!(w.clock.now(), deadline);
        let stored = block_on(w.store.load_session(&id)).unwrap().record;
        let valid_now = w.validates(&t0);
        match &validated {
            Ok(v) => {
                let s = &v.session;
                assert!(
                    s.last_seen < deadline,
                    "INV-no-resurrection violated: validate accepted at {:?}, at or past the deadline {deadline:?}",
                    s.last_seen
                );
                assert_eq!(
                    s.expires_at,
                    s.last_seen.saturating_add(IDLE),
                    "the touch must move the idle deadline to last_seen + idle"
                );
                assert!(
                    s.expires_at <= s.absolute_deadline,
                    "INV-absolute-bound violated"
                );
            }
            Err(e) => {
                assert!(
                    matches!(e, Error::Expired | Error::NotAuthenticated),
                    "unexpected validate outcome at the deadline: {e:?}"
                );
                assert!(
                    valid_now.is_err(),
                    "INV-no-resurrection violated: valid past its deadline though never touched in time"
                );
            }
        }
        if reaped.sessions > 0 {
            assert!(
                stored.is_none() && valid_now.is_err() && validated.is_err(),
                "INV-no-resurrection violated: a reaped session came back (validate: {validated:?})"
            );
        }
        if let Some(r) = &stored {
            assert!(
                r.expires_at <= r.absolute_deadline,
                "INV-absolute-bound violated"
            );
            assert!(
                r.expires_at <= deadline || validated.is_ok(),
                "INV-no-resurrection violated: the deadline moved without a successful touch"
            );
        }
    });
}

/// Who ends the session at E+1 ms while a touch decided at E−1 ms may be in flight.
#[derive(Clone, Copy, Debug)]
enum Ender {
    /// `revoke(id)`.
    Revoke,
    /// `revoke_subject`.
    RevokeSubject,
    /// A validate, told `Expired`.
    Validate,
}

/// INV-store-time, one clock: a validate whose touch is due and an ending race at the idle
/// deadline E. The ender moves the shared clock from E−1 ms to E+1 ms, then revokes (by id or
/// subject) or validates; the toucher reads the same clock — before or after the step, as the
/// schedule has it — so in some interleavings it loads and decides its touch at E−1 ms and
/// its compare-and-swap lands after the ender returned. Once the revoker returned (or the
/// validator was told `Expired`), the session must never validate again, at any clock setting.
fn touch_vs_end_at_deadline(ender: Ender) {
    const IDLE: Duration = Duration::from_secs(600);
    explore(None, move || {
        let policy = Policy::builder()
            .idle_timeout(Some(IDLE))
            .touch_granularity(Duration::from_secs(60))
            .renewal_interval(None)
            .build()
            .unwrap();
        let w = World::new(policy);
        let (id, t0) = create(&w);
        let deadline = START.saturating_add(IDLE);
        let before = deadline.saturating_sub(Duration::from_millis(1));
        let after = deadline.saturating_add(Duration::from_millis(1));
        w.clock.set(before);
        let s = w.sessions();
        let t = t0.clone();
        let toucher = thread::spawn(move || block_on(s.validate(&t, &Context::none())).is_ok());
        let s = w.sessions();
        let clock = w.clock.clone();
        let t = t0.clone();
        let ending = thread::spawn(move || {
            clock.set(after);
            match ender {
                Ender::Revoke => format!("{:?}", block_on(s.trusted_by_id().revoke(&id))),
                Ender::RevokeSubject => format!("{:?}", block_on(s.revoke_subject(&alice()))),
                Ender::Validate => format!(
                    "{:?}",
                    block_on(s.validate(&t, &Context::none())).map(|_| ())
                ),
            }
        });
        let touched = toucher.join().unwrap();
        let ended = ending.join().unwrap();
        // Was the caller told the session ended? A revoke always ends it; a validate only if
        // it was told Expired (it is granted if the touch landed before its load).
        let told_ended = match ender {
            Ender::Revoke | Ender::RevokeSubject => true,
            Ender::Validate => ended == "Err(Expired)",
        };
        if told_ended {
            for at in [after, before, START, deadline.saturating_add(IDLE)] {
                w.clock.set(at);
                let v = w.validates(&t0);
                assert!(
                    v.is_err(),
                    "INV-store-time violated: {ender:?} returned {ended} at E+1ms, yet the session \
                     validates at {at:?} (the touch decided at E-1ms succeeded: {touched})"
                );
            }
            let rec = block_on(w.store.load_session(&id)).unwrap().record.unwrap();
            assert!(
                rec.is_tombstone(),
                "INV-store-time violated: the ending was not written down: {rec:?}"
            );
        } else {
            assert!(
                touched && ended == "Ok(())",
                "INV-store-time violated: unexpected outcomes: touch {touched}, validate {ended}"
            );
            w.clock.set(after);
            assert!(
                w.validates(&t0).is_ok(),
                "INV-store-time violated: a validate was granted, then the session is gone"
            );
        }
        // Revocation never depends on a clock: past the deadline or not, revoke writes — unless
        // the toucher, reading the clock after the step, already wrote the expiry down.
        let ok = match ender {
            Ender::Revoke => {
                ended == "Ok(Revoked)"
                    || (!touched && ended == "Ok(AlreadyRevoked { reason: Expired })")
            }
            Ender::RevokeSubject => ended == "Ok(0)" || ended == "Ok(1)",
            Ender::Validate => ended == "Err(Expired)" || ended == "Ok(())",
        };
        assert!(
            ok,
            "INV-store-time violated: {ender:?} at E+1ms returned {ended}"
        );
    });
}

/// Concurrent slot acquisitions at the cap: exactly `cap` succeed.
fn slot_vs_slot(threads: usize, cap: u32, bound: Option<usize>) {
    explore(bound, move || {
        let policy = Policy::builder()
            .max_slots_per_session(Some(cap))
            .build()
            .unwrap();
        let w = World::new(policy);
        let (id, _) = create(&w);
        let handles: Vec<_> = (0..threads)
            .map(|_| {
                let s = w.sessions();
                thread::spawn(move || block_on(s.acquire_slot(&id, None)))
            })
            .collect();
        let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
        let ok = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(
            ok, cap as usize,
            "INV-caps violated: {ok} of {threads} concurrent slot acquisitions passed a cap of {cap}"
        );
        for r in &results {
            assert!(
                matches!(
                    r,
                    Ok(_)
                        | Err(Error::LimitReached {
                            limit: Limit::SessionSlots
                        })
                ),
                "INV-caps violated: unexpected acquisition outcome {r:?}"
            );
        }
    });
}

// ---------------------------------------------------------------------------------------------
// The tests: the real code must pass every model; under `--cfg leasehold_planted_bug` each model
// is a twin that must panic with its invariant's name (loom found the planted bug).
// ---------------------------------------------------------------------------------------------

macro_rules! loom_tests {
    ($($name:ident, $inv:literal => $body:expr;)*) => {
        #[cfg(not(leasehold_planted_bug))]
        mod real {
            use super::*;
            $(
                #[test]
                fn $name() {
                    $body
                }
            )*
        }

        #[cfg(leasehold_planted_bug)]
        mod planted_twin {
            use super::*;
            $(
                #[test]
                #[should_panic(expected = $inv)]
                fn $name() {
                    $body
                }
            )*
        }
    };
}

loom_tests! {
    refresh_vs_refresh_single_successor, "INV-single-successor" => refresh_vs_refresh(2, None);
    refresh_x3_single_successor, "INV-single-successor" => refresh_vs_refresh(3, Some(3));
    refresh_vs_revoke_no_resurrection, "INV-no-resurrection" => refresh_vs_revoke();
    ticket_double_redemption_one_shot, "INV-one-shot" => ticket_double_redemption(2, None);
    ticket_triple_redemption_one_shot, "INV-one-shot" => ticket_double_redemption(3, Some(3));
    create_vs_create_cap_reject, "INV-caps" => create_vs_create(CapPolicy::Reject);
    create_vs_create_cap_evict_oldest, "INV-caps" => create_vs_create(CapPolicy::EvictOldest);
    touch_vs_expiry_at_deadline, "INV-no-resurrection" => touch_vs_expiry();
    touch_vs_revoke_at_deadline_one_clock, "INV-store-time" => touch_vs_end_at_deadline(Ender::Revoke);
    touch_vs_revoke_subject_at_deadline_one_clock, "INV-store-time" => touch_vs_end_at_deadline(Ender::RevokeSubject);
    touch_vs_expired_read_at_deadline_one_clock, "INV-store-time" => touch_vs_end_at_deadline(Ender::Validate);
    slot_vs_slot_at_cap_1, "INV-caps" => slot_vs_slot(2, 1, None);
    slot_x3_at_cap_2, "INV-caps" => slot_vs_slot(3, 2, Some(3));
}
