#![allow(clippy::unwrap_used, clippy::expect_used)]
//! The seeded simulation over `MemoryStore`: many seeds pass, a seed replays exactly, and a
//! deliberately broken store is caught (with the seed that replays it) — the old clock rule
//! among them, by INV-store-time.

use std::time::Duration;

use futures::executor::block_on;
use leasehold::MemoryStore;
use leasehold_testkit::broken::{Broken, Flaw};
use leasehold_testkit::model::PolicyChoice;
use leasehold_testkit::simulate::{SimConfig, simulate};

const SEEDS: u64 = 50;
const STEPS: usize = 300;

#[test]
fn many_seeds_pass_over_the_memory_store() {
    let mut totals = (0u64, 0u64, 0u64, 0u64, 0u64, 0u64);
    let (mut unchecked, mut steps) = (0, 0);
    for seed in 0..SEEDS {
        let report = block_on(simulate(
            MemoryStore::new(),
            SimConfig::new(seed).steps(STEPS),
        ))
        .unwrap_or_else(|f| panic!("{f}"));
        assert_eq!(report.steps, STEPS);
        totals.0 += report.operations;
        totals.1 += report.faults_injected;
        totals.2 += report.concurrent_groups;
        totals.3 += report.successors_reissued;
        totals.4 += report.tickets_redeemed;
        totals.5 += report.reuse_detected;
        unchecked += report.unchecked;
        steps += report.clock_steps;
        if seed == 0 {
            eprintln!("{report}");
        }
    }
    eprintln!(
        "totals (ops, faults, groups, reissued, redeemed, reuse): {totals:?}, unchecked \
         {unchecked}, clock steps {steps}"
    );
    // The runs must reach what they claim to test.
    let (ops, faults, groups, reissued, redeemed, reuse) = totals;
    assert!(ops > SEEDS * STEPS as u64, "{ops} operations");
    assert!(faults > 100, "{faults} faults");
    assert!(groups > 1000, "{groups} concurrent groups");
    assert!(reissued > 20, "{reissued} successors reissued");
    assert!(redeemed > 20, "{redeemed} tickets redeemed");
    assert!(reuse > 5, "{reuse} reuse detections");
    assert!(steps > SEEDS * 3, "{steps} clock steps");
    // Nearly every outcome is predicted exactly.
    assert!(
        unchecked * 50 < ops,
        "{unchecked} of {ops} outcomes unchecked"
    );
}

#[test]
fn every_policy_choice_passes_without_skew_and_with_heavy_faults() {
    for (i, choice) in PolicyChoice::ALL.into_iter().enumerate() {
        for (skew, faults) in [(0, 0), (0, 200), (400, 100)] {
            let cfg = SimConfig::new(1000 + i as u64)
                .steps(200)
                .policy(choice.policy())
                .max_skew(Duration::from_millis(skew))
                .fault_per_mille(faults)
                .clients(5)
                .nodes(3);
            block_on(simulate(MemoryStore::new(), cfg))
                .unwrap_or_else(|f| panic!("{choice:?} skew {skew} faults {faults}: {f}"));
        }
    }
}

#[test]
fn the_same_seed_replays_the_same_trace() {
    let run = |seed| {
        block_on(simulate(
            MemoryStore::new(),
            SimConfig::new(seed).steps(200).keep_trace(true),
        ))
        .unwrap()
    };
    let (a, b) = (run(42), run(42));
    assert_eq!(a.trace, b.trace);
    assert_eq!(a, b);
    assert!(!a.trace.is_empty());
    let c = run(43);
    assert_ne!(a.trace_digest, c.trace_digest);
    // The report says what happened.
    let shown = a.to_string();
    assert!(shown.contains("seed 42"), "{shown}");
}

#[test]
fn a_broken_store_is_caught_and_the_seed_replays_it() {
    // A driver decides and writes at one clock, so over a store without a clock of its own a
    // swap's expiry check is unreachable through it: the conformance suite, calling the store
    // directly, catches `CasIgnoresExpiry`.
    for flaw in Flaw::ALL
        .into_iter()
        .filter(|f| *f != Flaw::CasIgnoresExpiry)
    {
        let failure = (0..40)
            .find_map(|seed| {
                block_on(simulate(
                    Broken::new(MemoryStore::new(), flaw),
                    SimConfig::new(seed).steps(STEPS),
                ))
                .err()
            })
            .unwrap_or_else(|| panic!("{flaw:?} was never caught"));
        let shown = failure.to_string();
        assert!(
            shown.contains(&format!("replay with seed {}", failure.seed)),
            "{shown}"
        );
        // Replaying the seed fails the same way, at the same step.
        let again = block_on(simulate(
            Broken::new(MemoryStore::new(), flaw),
            SimConfig::new(failure.seed).steps(STEPS),
        ))
        .unwrap_err();
        assert_eq!(again, failure);
        eprintln!(
            "{flaw:?}: caught at step {} of seed {}: {}",
            failure.step, failure.seed, failure.rule
        );
    }
}

/// The rule before INV-store-time — no tombstone over a record already past its deadline by
/// the writer's clock — is caught by the invariant itself (not only as a model divergence):
/// one node is told a session ended, and then another node, or the store, says otherwise.
#[test]
fn the_old_clock_rule_breaks_inv_store_time() {
    let caught: Vec<_> = (0..10)
        .filter_map(|seed| {
            block_on(simulate(
                Broken::new(MemoryStore::new(), Flaw::OldClockRule),
                SimConfig::new(seed).steps(STEPS),
            ))
            .err()
        })
        .collect();
    for f in &caught {
        eprintln!("seed {} step {}: {}", f.seed, f.step, f.rule);
    }
    assert_eq!(caught.len(), 10, "the old clock rule passed a seed");
    // When two nodes are told different endings in one concurrent group, only the model can
    // tell that no order explains it; otherwise the invariant catches it first.
    assert!(
        caught
            .iter()
            .all(|f| f.rule == "INV-store-time" || f.rule == "model divergence")
    );
    let by_invariant = caught.iter().filter(|f| f.rule == "INV-store-time").count();
    assert!(by_invariant >= 5, "{by_invariant} of 10 by INV-store-time");
}
