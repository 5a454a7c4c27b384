//! The seeded fault/skew simulation over Redis, standalone and on a throwaway 3-node Cluster,
//! with the virtual clocks a day ahead of the server's (as `leasehold check --simulate` starts
//! them). Redis has native expiry: its reap only tidies indexes, and records wait for their
//! `PXAT` on the server's clock, so the simulation's bounded-storage check at the end is that
//! every key left carries a deadline, no record's after the run's end.
//!
//! Seed 1 once failed on the model, not the store: a heartbeat on a lapsed slot answers
//! `SlotLost` and leaves the key to its TTL, which the model had taken as removed. Seed 10 once
//! failed when both slot caps were full and the store named the resource's (the contract does
//! not order the two checks; the model had insisted on the session's).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

use std::time::Duration;

use leasehold::Store;
use leasehold_redis::RedisStore;
use leasehold_testkit::simulate::{SimConfig, simulate};

async fn run_seeds(url: &str, seeds: &[u64]) {
    for &seed in seeds {
        let (store, _cleanup): (RedisStore, _) = support::open(url).await.unwrap_or_else(|e| {
            panic!("{e}");
        });
        let server = store
            .store_clock()
            .await
            .unwrap()
            .expect("Redis has a clock of its own");
        let start = server.saturating_add(Duration::from_secs(24 * 3600));
        let report = simulate(store, SimConfig::new(seed).steps(300).start(start))
            .await
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(report.steps, 300);
    }
}

#[test]
fn simulation_passes_on_standalone_redis() {
    support::rt().block_on(run_seeds(&support::url(), &[1, 2, 3, 10]));
}

#[test]
fn simulation_passes_on_a_redis_cluster() {
    let url = support::cluster_url().unwrap_or_else(|e| panic!("{e}"));
    support::rt().block_on(run_seeds(&url, &[1, 2, 3, 10]));
}
