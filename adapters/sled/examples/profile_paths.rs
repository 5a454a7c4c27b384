//! One sled hot path in a loop, for a profiler: only the measured calls run inside
//! `measured`, so callgrind can collect that function alone.
//!
//! ```text
//! cargo build --release -p leasehold-sled --example profile_paths
//! valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*profile_paths*measured*' \
//!     target/release/examples/profile_paths reap 2000 /dev/shm
//! ```
//!
//! MODE is `reap` (SESSIONS due sessions, 4 per subject, reaped 1 000 a call), `revoke`
//! (logout of SESSIONS sessions), `validate` (no touch due) or `touch` (a touch due each time).
//! `validate` and `touch` go over every session `ROUNDS` times (environment; default 10): for
//! `perf`, a few hundred rounds and `perf record -D` past the inserts, e.g.
//! `ROUNDS=300 perf record -g -D 1500 target/release/examples/profile_paths validate 4000`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::time::{Duration, Instant};

use leasehold::{
    Context, CreateOptions, ManualClock, OsEntropy, Policy, Sessions, Store, Subject, Timestamp,
    decide,
};
use leasehold_sled::SledStore;

#[inline(never)]
fn measured<T>(f: impl FnOnce() -> T) -> T {
    f()
}

fn main() {
    let mut args = std::env::args().skip(1);
    let mode = args.next().unwrap_or_else(|| "reap".into());
    let n: usize = args.next().map_or(2_000, |a| a.parse().unwrap());
    let dir = match args.next() {
        Some(d) => tempfile::tempdir_in(d).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
    let store = SledStore::open(dir.path()).unwrap();
    let t0 = Timestamp::from_millis(1_000_000_000);
    let clock = ManualClock::new(t0);
    // No automatic renewal (as the bench): past the default 15 minutes a validate would
    // rotate the token, a security write, and the `touch` loop would profile rotations.
    let policy = Policy::builder().renewal_interval(None).build().unwrap();
    let sessions = Sessions::new(store.clone(), policy.clone())
        .unwrap()
        .with_clock(clock.clone());
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let limits = decide::create::limits(&policy);
    let opts = CreateOptions {
        absolute_lifetime: (mode == "reap").then_some(Duration::from_secs(1)),
        ..CreateOptions::default()
    };
    let mut tokens = Vec::with_capacity(n);
    rt.block_on(async {
        for i in 0..n {
            let subject = Subject::new(format!("user-{}", i / 4)).unwrap();
            let (record, token) =
                decide::create::new_session(&subject, &opts, t0, &policy, &OsEntropy).unwrap();
            store.insert_session(&record, &limits, t0).await.unwrap();
            tokens.push(token.expose_secret().to_owned());
        }
    });
    let started = Instant::now();
    let done = match mode.as_str() {
        "reap" => {
            clock.advance(Duration::from_secs(2));
            let now = sessions.now();
            measured(|| {
                let mut reaped = 0;
                loop {
                    let out = rt.block_on(store.reap(now, 1_000)).unwrap();
                    if out.sessions == 0 {
                        break reaped;
                    }
                    reaped += out.sessions;
                }
            })
        }
        "revoke" => measured(|| {
            rt.block_on(async {
                for t in &tokens {
                    sessions.logout(t).await.unwrap();
                }
            });
            n as u64
        }),
        "validate" | "touch" => {
            let touch = mode == "touch";
            let rounds: u32 = std::env::var("ROUNDS").map_or(10, |r| r.parse().unwrap());
            measured(|| {
                rt.block_on(async {
                    let mut ok = 0;
                    for round in 0..rounds {
                        if touch && round > 0 {
                            clock.advance(Duration::from_secs(120));
                        }
                        for t in &tokens {
                            ok += u64::from(sessions.validate(t, &Context::none()).await.is_ok());
                        }
                    }
                    ok
                })
            })
        }
        other => panic!("unknown mode {other}: reap, revoke, validate or touch"),
    };
    println!("{mode}: {done} in {:.1?}", started.elapsed());
}
