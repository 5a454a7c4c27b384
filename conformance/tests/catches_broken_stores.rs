//! The suite's own test: it stays green on the reference store, and catches every planted store
//! bug in the cases named after what the bug breaks.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use leasehold::MemoryStore;
use leasehold_conformance::broken::{BrokenStore, Bug};
use leasehold_conformance::{Outcome, Report, cases, run_all};

fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .unwrap()
}

fn run(bug: Bug, filter: &str) -> Report {
    let factory = move || async move { BrokenStore::new(bug) };
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
    // MemoryStore has no native expiry: the one case needing it is skipped, not passed.
    assert_eq!(report.skipped(), 1);
    let skipped = report
        .cases
        .iter()
        .find(|c| matches!(c.outcome, Outcome::Skipped(_)))
        .unwrap();
    assert_eq!(
        skipped.name,
        "bounded_storage::native_expiry_never_serves_expired"
    );
    assert_eq!(
        skipped.outcome,
        Outcome::Skipped("requires native_expiry".into())
    );
    assert_eq!(
        report.summary(),
        format!("{} passed, 0 failed, 1 skipped", cases().len() - 1)
    );
}

/// Bugs that break a case whatever the scheduling: these cases fail on every run.
#[test]
fn every_planted_bug_is_caught_by_the_cases_it_breaks() {
    let expected: &[(Bug, &[&str])] = &[
        (
            Bug::TicketNeverDeleted,
            &[
                "one_shot::ticket_redeems_once",
                "one_shot::ticket_redemption_race",
                "fail_closed::lost_reply_ticket_not_double_spent",
                "contract::ticket_put_and_take",
            ],
        ),
        (
            Bug::CasIgnoresVersion,
            &[
                "no_resurrection::stale_cas_after_revoke_conflicts",
                "contract::cas_stale_version_conflicts",
                "contract::concurrent_cas_one_winner",
            ],
        ),
        (
            Bug::CasIgnoresExpiry,
            &["no_resurrection::cas_after_expiry_is_not_found"],
        ),
        (
            Bug::CasDropsWrites,
            &[
                "no_resurrection::revoke_then_validate",
                "single_successor::refresh_storm_one_successor",
                "fail_closed::random_faults_keep_acknowledged_writes",
                "contract::records_round_trip_exactly",
            ],
        ),
        (
            Bug::LoadResurrects,
            &[
                "no_resurrection::revoke_then_validate",
                "single_successor::predecessor_after_grace_is_reuse",
                "revoke_all::revoke_subject_revokes_all",
            ],
        ),
        (
            Bug::CapCountThenInsert,
            &[
                "caps::subject_cap_evict_oldest",
                "caps::cap_race_evict_oldest",
            ],
        ),
        (
            Bug::RevokeSubjectSkipsTagged,
            &["revoke_all::revoke_subject_revokes_all"],
        ),
        (
            Bug::ReapRemovesLive,
            &[
                "no_resurrection::tombstone_outlives_early_reap",
                "bounded_storage::reap_never_removes_live",
            ],
        ),
        (
            Bug::ReapIgnoresLimit,
            &["bounded_storage::reap_batch_limit"],
        ),
        (
            Bug::EmptyDump,
            &[
                "hash_at_rest::no_session_secret_in_dump",
                "hash_at_rest::no_rotated_secret_in_dump",
                "hash_at_rest::no_ticket_secret_in_dump",
                "hash_at_rest::no_raw_binding_in_dump",
            ],
        ),
    ];
    assert_eq!(expected.len(), Bug::ALL.len(), "every bug has expectations");
    for (bug, must_fail) in expected {
        let report = run(*bug, "");
        let failed = failing(&report);
        for name in *must_fail {
            assert!(
                failed.contains(name),
                "{bug}: {name} passed; failing cases were {failed:?}"
            );
        }
    }
}

/// Races are probabilistic on an in-process store: a bug only a race exposes must be caught
/// within a few runs of the race case.
#[test]
fn race_only_bugs_are_caught_by_the_race_cases() {
    for (bug, case) in [
        (Bug::CapCountThenInsert, "caps::cap_race_reject"),
        (
            Bug::CasIgnoresVersion,
            "no_resurrection::refresh_vs_revoke_race",
        ),
    ] {
        let caught = (0..20).any(|_| !failing(&run(bug, case)).is_empty());
        assert!(caught, "{bug}: {case} passed 20 runs in a row");
    }
}

#[test]
fn bug_names_round_trip() {
    for bug in Bug::ALL {
        assert_eq!(Bug::from_name(bug.name()), Some(bug));
    }
    assert_eq!(Bug::from_name("nope"), None);
}
