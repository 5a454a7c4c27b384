//! # leasehold-conformance
//!
//! The conformance suite for [`leasehold`] stores: named async cases, grouped by the security
//! invariant they check (DESIGN §4: `no_resurrection::*`, `absolute_bound::*`,
//! `hash_at_rest::*`, `one_shot::*`, `single_successor::*`, `caps::*`, `revoke_all::*`,
//! `fail_closed::*`, `bounded_storage::*`, `store_time::*`) plus the plain store contract
//! (`contract::*`, and `enumeration::*`: listing, live counts, limit advice, giving back a
//! creation, and the create order under both caps).
//!
//! An adapter author adds this crate as a dev-dependency and one line to a test file:
//!
//! ```ignore
//! leasehold_conformance::conformance_tests!(|| async { MyStore::new() }, capabilities = [raw_dump]);
//! ```
//!
//! which expands to one `#[test]` per case (named like the case, e.g.
//! `no_resurrection::revoke_then_validate`). Tools (the `leasehold check` command) call
//! [`run_all`] instead and get a [`Report`].
//!
//! Every case gets a fresh store from the factory, its own [`ManualClock`](leasehold::ManualClock)
//! (no case sleeps: time is moved by hand) and its own seeded entropy. Concurrency cases start
//! many Tokio tasks together behind a barrier and assert exact outcome counts.
//!
//! See `docs/writing-an-adapter.md` for a complete walk-through.

/// Planted-bug stores for the suite's own tests (one module, shared with the simulation).
pub use leasehold_testkit::broken;
mod cases;
mod env;
mod factory;
mod runner;

pub use env::{
    CLOCK_LEAD, CasHook, CaseError, CaseResult, DynStore, Env, Interleaving, Parked, YieldAround,
};
pub use factory::{Fallible, Guarded, StoreFactory, fallible};
pub use runner::{
    CASE_TIMEOUT, Capability, Case, CaseFn, CaseReport, Invariant, Outcome, Report, Requirement,
    case, cases, run_all, run_case, run_selected, select,
};

/// Expands to one test per conformance case, for an adapter's own test suite.
///
/// ```ignore
/// // tests/conformance.rs of an adapter crate:
/// leasehold_conformance::conformance_tests!(
///     || async { my_adapter::MyStore::new() },
///     capabilities = [raw_dump, native_expiry],
/// );
/// ```
///
/// - The first argument is a [`StoreFactory`]: any `Fn() -> impl Future<Output = S>` closure
///   (non-capturing), a [`fallible`] closure, or a value of a type implementing the trait.
///   It is called once per case and must return a fresh, isolated, empty store.
/// - `capabilities = [...]` (optional; default none) lists what the store declares in
///   [`Store::capabilities`](leasehold::Store::capabilities): any of `native_expiry`,
///   `raw_dump`, `multi_process`, `server_clock`, `sharded`, `no_global_index`.
///
/// It generates:
/// - one `#[test]` per case, in modules named after the groups, so the test names are the case
///   names (`cargo test no_resurrection::` runs one group). Each test runs its case on a fresh
///   multi-thread Tokio runtime and panics with the case's message if it fails;
/// - cases needing a capability that is not declared are generated with
///   `#[ignore = "requires <capability>"]`, so `cargo test` reports them as *ignored*, never
///   as passed (and running them anyway with `--ignored` fails them); likewise the cases that
///   need the store's own reaper (exact reap counts) are ignored when `native_expiry` is
///   declared (`#[ignore = "requires reaper …"]`);
/// - a test `conformance_capabilities_declared` that fails unless the declared list equals
///   what the store's `capabilities()` returns, so the declaration cannot lie in either
///   direction.
///
/// The adapter needs no Tokio dependency of its own for this: each test builds its runtime.
#[macro_export]
macro_rules! conformance_tests {
    ($factory:expr $(,)?) => {
        $crate::conformance_tests!($factory, capabilities = []);
    };
    ($factory:expr, capabilities = [$($cap:ident),* $(,)?] $(,)?) => {
        fn __leasehold_conformance_factory() -> impl $crate::StoreFactory {
            $factory
        }

        #[test]
        fn conformance_capabilities_declared() {
            $crate::__private::check_declared(
                &__leasehold_conformance_factory(),
                &[$(stringify!($cap)),*],
            );
        }

        $crate::__for_each_case! {
            [$crate::__conformance_emit] { [$($cap)*] }
        }
    };
}

/// The case list, in one place: feeds both the case table and [`conformance_tests!`].
///
/// Each group is `module Invariant { case requirement; … }`, where `requirement` is `none`, a
/// capability name, or `reaper` (the store must *not* declare `native_expiry`: its own reap
/// removes expired records, so exact reap counts apply).
#[doc(hidden)]
#[macro_export]
macro_rules! __for_each_case {
    ([$($callback:tt)*] $extra:tt) => {
        $($callback)*! { $extra
            no_resurrection NoResurrection {
                revoke_then_validate none;
                idle_expiry_is_final none;
                absolute_expiry_is_final none;
                stale_cas_after_revoke_conflicts none;
                cas_after_expiry_is_not_found none;
                cas_cannot_revive_tombstone none;
                insert_over_tombstone_refused none;
                tombstone_outlives_early_reap reaper;
                refresh_vs_revoke_race none;
                touch_vs_revoke_race none;
                reap_vs_refresh_at_deadline reaper;
                reap_vs_refresh_before_deadline none;
            }
            absolute_bound AbsoluteBound {
                touch_never_passes_absolute none;
                refresh_never_passes_absolute none;
                renewal_never_passes_absolute none;
                no_idle_timeout_ends_at_absolute none;
                update_data_never_passes_absolute none;
            }
            hash_at_rest HashAtRest {
                no_session_secret_in_dump raw_dump;
                no_rotated_secret_in_dump raw_dump;
                no_ticket_secret_in_dump raw_dump;
                no_raw_binding_in_dump raw_dump;
                tokens_redacted_in_debug_and_errors none;
            }
            one_shot OneShot {
                ticket_redeems_once none;
                ticket_redemption_race none;
                many_tickets_race_once_each none;
                expired_ticket_refused none;
                ticket_never_outlives_session none;
                ticket_of_revoked_session_refused none;
                wrong_ticket_secret_keeps_ticket none;
            }
            single_successor SingleSuccessor {
                refresh_storm_one_successor none;
                retry_in_grace_same_successor none;
                renewal_storm_one_successor none;
                predecessor_after_grace_is_reuse none;
                orphan_predecessor_recovers_then_expires none;
                grand_predecessor_is_reuse none;
                reuse_detection_off_only_denies none;
            }
            caps Caps {
                subject_cap_reject none;
                rate_retry_after_with_a_lowered_limit none;
                subject_cap_evict_oldest none;
                cap_race_reject none;
                cap_race_evict_oldest none;
                dead_sessions_do_not_count none;
                global_cap none;
                creation_rate_limit none;
                slot_cap_per_session_race none;
                slot_cap_per_resource_race none;
                slot_caps_both_race none;
                slot_release_and_expiry_free_capacity none;
                slot_heartbeat_extends_then_lapses none;
                slot_on_dead_session_refused none;
                revoked_session_frees_slot_capacity none;
            }
            revoke_all RevokeAll {
                revoke_subject_revokes_all none;
                revoke_resource_revokes_all none;
                revoke_subject_vs_refresh_race none;
                revoke_resource_vs_touch_race none;
                group_revoke_counts_only_live none;
                tickets_and_slots_die_with_subject none;
                group_ops_finish_under_a_flood none;
            }
            fail_closed FailClosed {
                load_errors_deny none;
                corrupt_load_denies none;
                failed_touch_denies none;
                lost_reply_refresh_converges none;
                lost_reply_refresh_retry_after_grace none;
                lost_reply_ticket_not_double_spent none;
                lost_reply_revoke_is_applied none;
                failed_create_grants_nothing none;
                lost_reply_slot_self_expires none;
                random_faults_keep_acknowledged_writes none;
            }
            bounded_storage BoundedStorage {
                reap_removes_expired reaper;
                reap_never_removes_live reaper;
                reap_batch_limit reaper;
                reap_limit_ignores_live_volume reaper;
                reap_tickets_and_slots reaper;
                reap_tombstones_after_deadline reaper;
                native_expiry_never_serves_expired native_expiry;
                native_expiry_every_key_has_a_ttl native_expiry;
            }
            authority Authority {
                kind_is_bound_to_the_record none;
                logout_checks_the_secret_and_is_idempotent none;
                revoke_owned_only_reaches_the_owner none;
                refused_check_writes_nothing none;
                access_token_lives_and_dies_with_its_session none;
                by_id_keepalive_never_revives none;
                per_session_lifetime_within_policy none;
            }
            store_time StoreTime {
                inflight_touch_after_revoke none;
                inflight_touch_after_revoke_subject none;
                inflight_touch_after_revoke_resource none;
                inflight_touch_after_observed_expiry none;
                revoke_expired_unreaped_then_late_touch none;
                stepped_clock_around_revoke none;
                clock_glitch_fails_closed_then_recovers none;
                skewed_drivers_share_endings none;
                skewed_drivers_subject_cap_holds none;
                inflight_keepalive_after_logout none;
                store_ahead_of_caller_decides server_clock;
                store_behind_caller_still_refuses server_clock;
                grace_window_on_store_clock server_clock;
                orphan_window_on_store_clock server_clock;
                ticket_ttl_on_store_clock server_clock;
                slot_ttl_on_store_clock server_clock;
                slot_cap_holds_for_lagging_caller server_clock;
                subject_cap_on_store_clock server_clock;
                global_cap_on_store_clock server_clock;
                rate_window_on_store_clock server_clock;
            }
            contract Contract {
                insert_if_absent none;
                insert_replay_is_idempotent none;
                insert_refuses_foreign_shard_tag none;
                cas_stale_version_conflicts none;
                cas_missing_record_not_found none;
                load_missing_is_none none;
                records_round_trip_exactly none;
                list_subject_returns_every_record none;
                ticket_put_and_take none;
                release_slot_once none;
                update_data_is_versioned none;
                concurrent_cas_one_winner none;
                concurrent_insert_one_winner none;
                longest_names_round_trip none;
            }
            enumeration Contract {
                list_all_pages_each_record_once none;
                list_by_subject_and_resource none;
                count_live_ignores_expired_and_tombstones none;
                reap_reports_ended_sessions reaper;
                check_limits_agrees_and_writes_nothing none;
                forget_creation_frees_a_rate_slot none;
                global_cap_evicts_the_stores_oldest no_sharded;
                subject_eviction_makes_room_under_global_cap no_sharded;
                long_session_tombstone_reaped_after_retention reaper;
            }
        }
    };
}

/// Emits the tests of [`conformance_tests!`]; `$caps` is the declared capability list.
#[doc(hidden)]
#[macro_export]
macro_rules! __conformance_emit {
    ({ $caps:tt } $($group:ident $inv:ident { $($case:ident $req:ident;)* })*) => {
        $(
            mod $group {
                $(
                    $crate::__gate! { $req $caps {
                        #[test]
                        fn $case() {
                            $crate::__private::run_test(
                                &super::__leasehold_conformance_factory(),
                                concat!(stringify!($group), "::", stringify!($case)),
                            );
                        }
                    } }
                )*
            }
        )*
    };
}

/// Emits `item` as is if the requirement is `none` or in the declared list (for `reaper`: if
/// `native_expiry` is *not* in it), else with `#[ignore = "requires …"]`.
#[doc(hidden)]
#[macro_export]
macro_rules! __gate {
    (none $caps:tt { $($item:tt)* }) => { $($item)* };
    (reaper [native_expiry $($rest:ident)*] { $($item:tt)* }) => {
        #[ignore = "requires reaper (native_expiry is declared: the server reclaims expired \
                    records and reap cleans index entries only, so exact reap counts do not \
                    apply)"]
        $($item)*
    };
    (reaper [] { $($item:tt)* }) => { $($item)* };
    (no_sharded [sharded $($rest:ident)*] { $($item:tt)* }) => {
        #[ignore = "requires an unsharded store (sharded is declared: its global cap is an upper \
                    bound and cannot evict the store's oldest, so the engine refuses these \
                    policies)"]
        $($item)*
    };
    (no_sharded [] { $($item:tt)* }) => { $($item)* };
    (native_expiry [native_expiry $($rest:ident)*] { $($item:tt)* }) => { $($item)* };
    (raw_dump [raw_dump $($rest:ident)*] { $($item:tt)* }) => { $($item)* };
    (multi_process [multi_process $($rest:ident)*] { $($item:tt)* }) => { $($item)* };
    (server_clock [server_clock $($rest:ident)*] { $($item:tt)* }) => { $($item)* };
    (sharded [sharded $($rest:ident)*] { $($item:tt)* }) => { $($item)* };
    ($req:ident [$first:ident $($rest:ident)*] { $($item:tt)* }) => {
        $crate::__gate! { $req [$($rest)*] { $($item)* } }
    };
    (native_expiry [] { $($item:tt)* }) => {
        #[ignore = "requires native_expiry (not in the declared capabilities)"]
        $($item)*
    };
    (raw_dump [] { $($item:tt)* }) => {
        #[ignore = "requires raw_dump (not in the declared capabilities)"]
        $($item)*
    };
    (multi_process [] { $($item:tt)* }) => {
        #[ignore = "requires multi_process (not in the declared capabilities)"]
        $($item)*
    };
    (server_clock [] { $($item:tt)* }) => {
        #[ignore = "requires server_clock (not in the declared capabilities)"]
        $($item)*
    };
    (sharded [] { $($item:tt)* }) => {
        #[ignore = "requires sharded (not in the declared capabilities)"]
        $($item)*
    };
}

/// Support for the generated tests. Not a public API.
#[doc(hidden)]
pub mod __private {
    use crate::factory::StoreFactory;
    use crate::runner::{Capability, Outcome, case, run_case};

    fn runtime() -> tokio::runtime::Runtime {
        match tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
        {
            Ok(rt) => rt,
            Err(e) => panic!("cannot start a Tokio runtime: {e}"),
        }
    }

    /// Runs the case `name` against `factory`; panics unless it passed.
    pub fn run_test<F: StoreFactory>(factory: &F, name: &str) {
        let Some(case) = case(name) else {
            panic!("no conformance case named {name}");
        };
        let report = runtime().block_on(run_case(factory, case));
        match report.outcome {
            Outcome::Passed => {}
            Outcome::Failed(msg) => panic!("{name} failed: {msg}"),
            Outcome::Skipped(why) => panic!(
                "{name} could not run ({why}): it does not apply to the store's declared \
                 capabilities, so this test must stay ignored"
            ),
        }
    }

    /// Panics unless `declared` equals the capabilities of a store made by `factory`.
    pub fn check_declared<F: StoreFactory>(factory: &F, declared: &[&str]) {
        for d in declared {
            if !Capability::ALL.iter().any(|c| c.name() == *d) {
                let known: Vec<&str> = Capability::ALL.iter().map(|c| c.name()).collect();
                panic!(
                    "unknown capability `{d}` in `capabilities = [...]`; known: {}",
                    known.join(", ")
                );
            }
        }
        let store = match runtime().block_on(factory.make()) {
            Ok(s) => s,
            Err(e) => panic!("the store factory failed: {e}"),
        };
        let actual = Capability::names_declared_by(leasehold::Store::capabilities(&store));
        let mut declared: Vec<&str> = declared.to_vec();
        declared.sort_unstable();
        declared.dedup();
        let mut sorted_actual = actual.clone();
        sorted_actual.sort_unstable();
        assert_eq!(
            declared, sorted_actual,
            "`capabilities = [...]` must list exactly what the store's capabilities() declares \
             (it declares {actual:?})"
        );
    }
}
