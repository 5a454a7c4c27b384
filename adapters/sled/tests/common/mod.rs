//! Helpers shared by the sled adapter's integration tests.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::future::Future;
use std::sync::{Arc, Barrier};
use std::time::Duration;

use leasehold::{ManualClock, Policy, SeededEntropy, Sessions, Subject};
use leasehold_sled::SledStore;
use tempfile::TempDir;

/// A store in a fresh temp dir (kept alive by the returned guard).
pub fn store() -> (SledStore, TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SledStore::open(dir.path()).unwrap();
    (store, dir)
}

/// `Sessions` over a fresh store, a manual clock and seeded entropy.
pub fn sessions(policy: Policy) -> (Arc<Sessions<SledStore>>, ManualClock, TempDir) {
    let (store, dir) = store();
    let clock = ManualClock::default();
    let s = Sessions::new(store, policy)
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(7));
    (Arc::new(s), clock, dir)
}

pub fn subject(s: &str) -> Subject {
    Subject::new(s).unwrap()
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// Runs a future to completion on a fresh current-thread runtime.
pub fn block_on<F: Future>(f: F) -> F::Output {
    tokio::runtime::Builder::new_current_thread()
        .build()
        .unwrap()
        .block_on(f)
}

/// Runs `n` OS threads that start `f(i)` at the same instant (a barrier), each on its own
/// runtime, and returns their results in thread order.
pub fn race<T, F, Fut>(n: usize, f: F) -> Vec<T>
where
    T: Send + 'static,
    F: Fn(usize) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = T>,
{
    let f = Arc::new(f);
    let barrier = Arc::new(Barrier::new(n));
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let f = Arc::clone(&f);
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .build()
                    .unwrap();
                barrier.wait();
                rt.block_on(f(i))
            })
        })
        .collect();
    handles.into_iter().map(|h| h.join().unwrap()).collect()
}

/// Opens `path` right after this process dropped its previous handle. sled releases its file
/// lock only when its last background I/O task lets go of the file, a moment after the drop
/// (under load, long enough to be seen): wait for that release, boundedly. A lock that is
/// never released still fails the test.
pub fn reopen(path: &std::path::Path) -> SledStore {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        match SledStore::open(path) {
            Ok(store) => return store,
            Err(leasehold_sled::OpenError::Locked { .. })
                if std::time::Instant::now() < deadline =>
            {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            Err(e) => panic!("reopen {}: {e}", path.display()),
        }
    }
}
