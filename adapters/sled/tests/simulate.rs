//! The seeded fault/skew simulation over sled, for seeds that once found a divergence here
//! (a bounded reap that stopped after passes of creation logs only). Each replays exactly.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use leasehold_testkit::simulate::{SimConfig, simulate};

#[test]
fn seeds_that_once_diverged_on_sled_pass() {
    for seed in [1, 7, 14] {
        let (store, _dir) = common::store();
        let report = common::block_on(simulate(store, SimConfig::new(seed).steps(300)))
            .unwrap_or_else(|failure| panic!("{failure}"));
        assert_eq!(report.steps, 300);
    }
}
