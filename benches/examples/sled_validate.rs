//! A sled validate with no touch due, in a loop, for a profiler:
//! `perf record -g target/release/examples/sled_validate 200000`.
#![allow(missing_docs, clippy::unwrap_used, clippy::expect_used)]

use leasehold::Context;
use leasehold_benches::{populate, sessions};

fn main() {
    let n: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200_000);
    let dir = tempfile::tempdir().unwrap();
    let store = leasehold_sled::SledStore::open(dir.path().join("db")).unwrap();
    let rt = tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap();
    let (s, _clock) = sessions(store).unwrap();
    let tokens = rt.block_on(populate(&s, 1_000)).unwrap();
    let ok = rt.block_on(async {
        let mut ok = 0usize;
        for i in 0..n {
            ok += usize::from(
                s.validate(&tokens[i % tokens.len()], &Context::none())
                    .await
                    .is_ok(),
            );
        }
        ok
    });
    println!("{ok}/{n} validated");
}
