//! The suite's own test: it stays green on the reference store, and catches every planted store
//! flaw (`leasehold_testkit::broken`, shared with the simulation) in the cases named after what
//! the flaw breaks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leasehold::MemoryStore;
use leasehold_conformance::broken::{Broken, Flaw};
use leasehold_conformance::{Outcome, Report, cases, run_all};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn run(flaw: Flaw, filter: &str) -> Report {
    let factory = move || async move { Broken::new(MemoryStore::new(), flaw) };
    rt().block_on(run_all(&factory, filter))
}

fn failing(report: &Report) -> Vec<&'static str> {
    report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Failed(_)))
        .map(|c| c.name)
        .collect()
}

#[test]
fn reference_store_passes_everything_it_can() {
    let report = rt().block_on(run_all(&|| async { MemoryStore::new() }, ""));
    assert!(report.ok(), "{:#?}", failing(&report));
    assert_eq!(report.cases.len(), cases().len());
    assert!(cases().len() >= 40);
    // MemoryStore::new() has neither native expiry nor a clock of its own: the cases needing
    // them are skipped, not passed; every other case passes.
    let skipped: Vec<_> = report
        .cases
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .collect();
    for c in &skipped {
        assert!(
            c.outcome == Outcome::Skipped("requires native_expiry".into())
                || c.outcome == Outcome::Skipped("requires server_clock".into()),
            "{} {:?}",
            c.name,
            c.outcome
        );
    }
    assert!(
        skipped
            .iter()
            .any(|c| c.name == "bounded_storage::native_expiry_never_serves_expired")
    );
    assert_eq!(
        report.summary(),
        format!(
            "{} passed, 0 failed, {} skipped",
            cases().len() - skipped.len(),
            skipped.len()
        )
    );
}

/// Flaws that break a case whatever the scheduling: these cases fail on every run.
#[test]
fn every_planted_flaw_is_caught_by_the_cases_it_breaks() {
    let expected: &[(Flaw, &[&str])] = &[
        (
            Flaw::TicketNeverDeleted,
            &[
                "one_shot::ticket_redeems_once",
                "one_shot::ticket_redemption_race",
                "fail_closed::lost_reply_ticket_not_double_spent",
                "contract::ticket_put_and_take",
            ],
        ),
        (
            Flaw::CasIgnoresVersion,
            &[
                "contract::cas_stale_version_conflicts",
                "contract::concurrent_cas_one_winner",
            ],
        ),
        (
            Flaw::CasIgnoresExpiry,
            &["no_resurrection::cas_after_expiry_is_not_found"],
        ),
        (
            Flaw::CasDropsWrites,
            &[
                "no_resurrection::revoke_then_validate",
                "single_successor::refresh_storm_one_successor",
                "fail_closed::random_faults_keep_acknowledged_writes",
                "contract::records_round_trip_exactly",
            ],
        ),
        (
            Flaw::LoadResurrects,
            &[
                "no_resurrection::revoke_then_validate",
                "single_successor::predecessor_after_grace_is_reuse",
                "revoke_all::revoke_subject_revokes_all",
            ],
        ),
        (
            Flaw::CapCountThenInsert,
            &[
                "caps::subject_cap_evict_oldest",
                "caps::cap_race_evict_oldest",
            ],
        ),
        (
            Flaw::CapIgnored,
            &["caps::subject_cap_reject", "caps::subject_cap_evict_oldest"],
        ),
        (
            Flaw::RevokeSubjectSkipsTagged,
            &["revoke_all::revoke_subject_revokes_all"],
        ),
        (
            Flaw::ReapRemovesLive,
            &[
                "no_resurrection::tombstone_outlives_early_reap",
                "bounded_storage::reap_never_removes_live",
            ],
        ),
        (
            Flaw::ReapIgnoresLimit,
            &["bounded_storage::reap_batch_limit"],
        ),
        (
            Flaw::EmptyDump,
            &[
                "hash_at_rest::no_session_secret_in_dump",
                "hash_at_rest::no_rotated_secret_in_dump",
                "hash_at_rest::no_ticket_secret_in_dump",
                "hash_at_rest::no_raw_binding_in_dump",
            ],
        ),
        (
            // The rule before INV-store-time: what the reproductions broke.
            Flaw::OldClockRule,
            &[
                "store_time::inflight_touch_after_observed_expiry",
                "store_time::revoke_expired_unreaped_then_late_touch",
                "store_time::stepped_clock_around_revoke",
                "store_time::skewed_drivers_share_endings",
            ],
        ),
    ];
    assert_eq!(
        expected.len(),
        Flaw::ALL.len(),
        "every flaw has expectations"
    );
    for (flaw, must_fail) in expected {
        let report = run(*flaw, "");
        let failed = failing(&report);
        for name in *must_fail {
            assert!(
                failed.contains(name),
                "{flaw}: {name} passed; failing cases were {failed:?}"
            );
        }
    }
}

/// Races are probabilistic on an in-process store: a flaw only a race exposes must be caught
/// within a few runs of the race case.
#[test]
fn race_only_flaws_are_caught_by_the_race_cases() {
    for (flaw, case) in [
        (Flaw::CapCountThenInsert, "caps::cap_race_reject"),
        (
            Flaw::CasIgnoresVersion,
            "no_resurrection::refresh_vs_revoke_race",
        ),
    ] {
        let caught = (0..20).any(|_| !failing(&run(flaw, case)).is_empty());
        assert!(caught, "{flaw}: {case} passed 20 runs in a row");
    }
}

#[test]
fn flaw_names_round_trip() {
    for flaw in Flaw::ALL {
        assert_eq!(Flaw::from_name(flaw.name()), Some(flaw));
    }
    assert_eq!(Flaw::from_name("nope"), None);
}
