//! Shared helpers: every test body is an `async fn name<S: Store>(store: S)`, and
//! [`on_both_stores!`] runs each on a fresh `MemoryStore` (`memory::name`) and on a fresh
//! `SledStore` in a temp dir (`sled::name`). Time is a `ManualClock`; nothing sleeps.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use leasehold::{ManualClock, Resource, Subject};

/// Generates `mod memory { #[tokio::test] fn name() }` and `mod sled { … }` for each body.
/// Multi-threaded runtime, so the tests that spawn tasks really race.
macro_rules! on_both_stores {
    ($($name:ident),* $(,)?) => {
        mod memory {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(::leasehold::MemoryStore::new()).await;
                }
            )*
        }
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let dir = ::tempfile::tempdir().unwrap();
                    let store = ::leasehold_sled::SledStore::open(dir.path()).unwrap();
                    super::$name(store).await;
                    drop(dir);
                }
            )*
        }
    };
}
pub(crate) use on_both_stores;

pub const MS: Duration = Duration::from_millis(1);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

pub fn mins(n: u64) -> Duration {
    Duration::from_secs(n * 60)
}

pub fn hours(n: u64) -> Duration {
    Duration::from_secs(n * 3600)
}

pub fn days(n: u64) -> Duration {
    Duration::from_secs(n * 24 * 3600)
}

pub fn clock() -> ManualClock {
    ManualClock::default()
}

pub fn subject(s: &str) -> Subject {
    Subject::new(s).unwrap()
}

pub fn resource(s: &str) -> Resource {
    Resource::new(s).unwrap()
}
