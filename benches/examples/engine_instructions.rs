//! Runs one engine decision `N` times, for instruction counts that do not depend on machine
//! load: `valgrind --tool=callgrind --callgrind-out-file=/dev/null target/release/examples/engine_instructions validate 10000`
//! (or `rotate`), then divide the total `Ir` by `N` (subtract a run with `N = 0` for setup).
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use leasehold::decide::read::{ReadMode, read};
use leasehold::{Clock, Context, MemoryStore, OsEntropy, Policy, SessionId, Store, token};
use leasehold_benches::{populate, sessions};

fn main() {
    let mut args = std::env::args().skip(1);
    let what = args.next().unwrap_or_else(|| "validate".into());
    let n: usize = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (s, clock) = sessions(MemoryStore::new()).unwrap();
    let tokens = rt.block_on(populate(&s, 1)).unwrap();
    let presented = token::parse(tokens[0].as_bytes(), "lh1").unwrap();
    let id = SessionId::from_bytes(*presented.id_bytes());
    let record = rt
        .block_on(s.store().load_session(&id))
        .unwrap()
        .record
        .unwrap();
    let policy = Policy::default();
    let now = clock.now();
    let mode = match what.as_str() {
        "rotate" => ReadMode::Refresh,
        _ => ReadMode::Validate,
    };
    let mut ok = 0usize;
    for _ in 0..n {
        let d = read(
            Some(black_box(&record)),
            &presented,
            &Context::none(),
            mode,
            now,
            &policy,
            &OsEntropy,
        );
        ok += usize::from(d.outcome.is_ok());
    }
    println!("{what}: {ok}/{n} granted");
}
