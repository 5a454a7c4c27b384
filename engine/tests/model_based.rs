#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Model-based property test: random sequences of every operation and clock jumps against
//! `Sessions<MemoryStore>` (manual clock, seeded entropy), checked against the reference model
//! (`leasehold_testkit::model`) and every named invariant after every step.
//!
//! Tokens are random, so the model learns them from the system as it goes: the
//! `ReferenceStateMachine` below generates *abstract* operations (indices counted back from the
//! most recent session / ticket / slot, clock jumps relative to policy durations and to record
//! deadlines), and the model proper runs in lockstep inside the system under test
//! ([`Harness`]), where it predicts each outcome, compares, and learns the fresh ids and
//! tokens. The same harness backs `check_sequence`, which the fuzz target `ops_vs_model`
//! calls.

use leasehold_testkit::model::{
    AccessPick, Anchor, CtxPick, Harness, Jump, Knob, ModelOp, PolicyChoice, ScopePick, TicketPick,
    TokenPick, VersionPick, check_sequence,
};
use proptest::prelude::*;
use proptest::test_runner::{Config, FileFailurePersistence};
use proptest_state_machine::{ReferenceStateMachine, StateMachineTest, prop_state_machine};

/// What the generator tracks to bias its choices (the model proper lives in the harness).
#[derive(Clone, Debug)]
struct Gen {
    policy: PolicyChoice,
    creates: u32,
    mints: u32,
    slots: u32,
}

fn token() -> impl Strategy<Value = TokenPick> {
    prop_oneof![
        6 => (0u8..4).prop_map(TokenPick::Latest),
        4 => (0u8..4).prop_map(TokenPick::Previous),
        2 => ((0u8..4), (0u8..3)).prop_map(|(session, back)| TokenPick::Older { session, back }),
        1 => (0u8..4).prop_map(TokenPick::Forged),
        1 => any::<u8>().prop_map(TokenPick::UnknownId),
        1 => ((0u8..4), any::<u8>()).prop_map(|(session, how)| TokenPick::Garbled { session, how }),
    ]
}

fn ctx() -> impl Strategy<Value = CtxPick> {
    prop_oneof![6 => Just(CtxPick::Own), 1 => Just(CtxPick::Missing), 1 => Just(CtxPick::Other)]
}

fn ticket() -> impl Strategy<Value = TicketPick> {
    prop_oneof![
        6 => (0u8..3).prop_map(TicketPick::Issued),
        1 => (0u8..3).prop_map(TicketPick::Forged),
        1 => any::<u8>().prop_map(TicketPick::Garbled),
        1 => any::<u8>().prop_map(TicketPick::Unknown),
    ]
}

fn access() -> impl Strategy<Value = AccessPick> {
    prop_oneof![
        6 => (0u8..3).prop_map(AccessPick::Latest),
        3 => (0u8..3).prop_map(AccessPick::Replaced),
        1 => (0u8..3).prop_map(AccessPick::Forged),
        1 => any::<u8>().prop_map(AccessPick::UnknownId),
        1 => ((0u8..3), any::<u8>()).prop_map(|(session, how)| AccessPick::Garbled { session, how }),
    ]
}

fn scope() -> impl Strategy<Value = ScopePick> {
    prop_oneof![
        1 => Just(ScopePick::All),
        2 => subject().prop_map(ScopePick::Subject),
        1 => (0u8..2).prop_map(ScopePick::Resource),
    ]
}

/// The claimed owner or expected subject: mostly the session's own, sometimes another.
fn claimed() -> impl Strategy<Value = Option<u8>> {
    prop_oneof![3 => Just(None), 1 => (0u8..3).prop_map(Some)]
}

fn jump() -> impl Strategy<Value = Jump> {
    let knob = prop::sample::select(Knob::WITH_ACCESS.to_vec());
    let anchor = prop::sample::select(Anchor::WITH_ACCESS.to_vec());
    prop_oneof![
        4 => (0u16..50).prop_map(Jump::Millis),
        3 => (0u16..3000).prop_map(Jump::Millis),
        3 => (knob, -2i8..=2).prop_map(|(knob, delta_ms)| Jump::Knob { knob, delta_ms }),
        6 => (anchor, 0u8..3, -2i8..=2)
            .prop_map(|(target, index, delta_ms)| Jump::Anchor { target, index, delta_ms }),
        1 => Just(Jump::PastEverything),
    ]
}

/// Subjects, skewed towards the first so caps and rates are reached.
fn subject() -> impl Strategy<Value = u8> {
    prop_oneof![4 => Just(0u8), 1 => Just(1u8), 1 => Just(2u8)]
}

fn op(state: &Gen) -> BoxedStrategy<ModelOp> {
    let create = (
        subject(),
        prop::option::of(0u8..2),
        prop::option::of(0u8..2),
        0u8..40,
    )
        .prop_map(|(subject, resource, binding, data_len)| ModelOp::Create {
            subject,
            resource,
            binding,
            data_len: if data_len > 36 {
                33 + data_len
            } else {
                data_len % 8
            },
        });
    if state.creates == 0 {
        return create.boxed();
    }
    let session = 0u8..4;
    let version = prop_oneof![
        3 => Just(VersionPick::Current),
        1 => Just(VersionPick::Stale),
        1 => Just(VersionPick::Ahead),
    ];
    // Operations on items that do not exist yet still resolve (to unknown ids), so they are
    // only made rarer, never impossible (proptest refuses zero weights).
    let slot_weight = if state.slots == 0 { 1 } else { 2 };
    let create_weight = if state.creates < 4 { 6 } else { 3 };
    prop_oneof![
        create_weight => create,
        6 => (token(), ctx()).prop_map(|(token, ctx)| ModelOp::Validate { token, ctx }),
        4 => (token(), ctx()).prop_map(|(token, ctx)| ModelOp::Refresh { token, ctx }),
        1 => session.clone().prop_map(|session| ModelOp::Revoke { session }),
        1 => subject().prop_map(|subject| ModelOp::RevokeSubject { subject }),
        1 => (0u8..2).prop_map(|resource| ModelOp::RevokeResource { resource }),
        1 => subject().prop_map(|subject| ModelOp::List { subject }),
        2 => (session.clone(), version, 0u8..40).prop_map(|(session, version, data_len)| {
            ModelOp::UpdateData { session, version, data_len }
        }),
        2 => (token(), ctx()).prop_map(|(token, ctx)| ModelOp::MintTicket { token, ctx }),
        if state.mints == 0 { 1 } else { 3 } => ticket()
            .prop_map(|ticket| ModelOp::RedeemTicket { ticket }),
        3 => (0u8..2, prop_oneof![3 => Just(Some(0u8)), 1 => Just(Some(1)), 1 => Just(None)])
            .prop_map(|(session, resource)| ModelOp::AcquireSlot { session, resource }),
        slot_weight => (0u8..3).prop_map(|slot| ModelOp::HeartbeatSlot { slot }),
        slot_weight => (0u8..3).prop_map(|slot| ModelOp::ReleaseSlot { slot }),
        2 => prop_oneof![0u8..4, Just(u8::MAX)].prop_map(|limit| ModelOp::Reap { limit }),
        9 => jump().prop_map(ModelOp::Advance),
        1 => token().prop_map(|token| ModelOp::Logout { token }),
        1 => (session.clone(), claimed())
            .prop_map(|(session, owner)| ModelOp::RevokeOwned { session, owner }),
        2 => (token(), ctx(), claimed())
            .prop_map(|(token, ctx, subject)| ModelOp::ValidateAs { token, ctx, subject }),
        4 => access().prop_map(|access| ModelOp::ValidateAccess { access }),
        1 => session.clone().prop_map(|session| ModelOp::GetById { session }),
        2 => session.clone().prop_map(|session| ModelOp::KeepaliveById { session }),
        1 => session.clone().prop_map(|session| ModelOp::MintTicketById { session }),
        1 => session.clone().prop_map(|session| ModelOp::GiveBack { session }),
        1 => subject().prop_map(|subject| ModelOp::CheckCreate { subject }),
        1 => scope().prop_map(|scope| ModelOp::Count { scope }),
    ]
    .boxed()
}

impl ReferenceStateMachine for Gen {
    type State = Gen;
    type Transition = ModelOp;

    fn init_state() -> BoxedStrategy<Gen> {
        prop::sample::select(PolicyChoice::ALL.to_vec())
            .prop_map(|policy| Gen {
                policy,
                creates: 0,
                mints: 0,
                slots: 0,
            })
            .boxed()
    }

    fn transitions(state: &Gen) -> BoxedStrategy<ModelOp> {
        op(state)
    }

    fn apply(mut state: Gen, t: &ModelOp) -> Gen {
        match t {
            ModelOp::Create { .. } => state.creates += 1,
            ModelOp::MintTicket { .. } => state.mints += 1,
            ModelOp::AcquireSlot { .. } => state.slots += 1,
            _ => {}
        }
        state
    }
}

struct ModelBased;

impl StateMachineTest for ModelBased {
    type SystemUnderTest = Harness;
    type Reference = Gen;

    fn init_test(r: &Gen) -> Harness {
        Harness::new(r.policy)
    }

    fn apply(mut h: Harness, _r: &Gen, t: ModelOp) -> Harness {
        if let Err(v) = h.step(&t) {
            panic!("{v}");
        }
        h
    }

    fn teardown(mut h: Harness, _r: Gen) {
        if let Err(v) = h.finish() {
            panic!("{v}");
        }
    }
}

prop_state_machine! {
    #![proptest_config(Config {
        cases: 1000,
        max_shrink_iters: 20_000,
        // Integration tests have no lib.rs next to them: persist failures explicitly, relative
        // to the package root (the test's working directory). Keep these files in git.
        failure_persistence: Some(Box::new(FileFailurePersistence::Direct(
            "proptest-regressions/model_based.txt",
        ))),
        ..Config::default()
    })]

    #[test]
    fn system_matches_model(sequential 1..40 => ModelBased);
}

// ----- hand-written sequences: the rules the random test must reach, pinned down -----

fn create(subject: u8) -> ModelOp {
    ModelOp::Create {
        subject,
        resource: Some(0),
        binding: Some(0),
        data_len: 4,
    }
}

fn refresh(token: TokenPick) -> ModelOp {
    ModelOp::Refresh {
        token,
        ctx: CtxPick::Own,
    }
}

fn at(target: Anchor, delta_ms: i8) -> ModelOp {
    ModelOp::Advance(Jump::Anchor {
        target,
        index: 0,
        delta_ms,
    })
}

#[test]
fn rotation_windows_at_their_edges() {
    for choice in PolicyChoice::ALL {
        for edge in [-1i8, 0, 1] {
            for target in [Anchor::GraceEnd, Anchor::OrphanEnd] {
                let ops = [
                    create(0),
                    refresh(TokenPick::Latest(0)),
                    at(target, edge),
                    refresh(TokenPick::Previous(0)),
                    refresh(TokenPick::Previous(0)),
                    ModelOp::Validate {
                        token: TokenPick::Latest(0),
                        ctx: CtxPick::Own,
                    },
                    refresh(TokenPick::Older {
                        session: 0,
                        back: 0,
                    }),
                ];
                check_sequence(&ops, choice).unwrap_or_else(|v| panic!("{choice:?}: {v}"));
            }
        }
    }
}

#[test]
fn deadlines_at_their_edges() {
    for choice in PolicyChoice::ALL {
        for target in [
            Anchor::TouchDue,
            Anchor::RenewalDue,
            Anchor::Expiry,
            Anchor::AbsoluteDeadline,
            Anchor::TicketExpiry,
            Anchor::SlotExpiry,
        ] {
            for edge in [-1i8, 0, 1] {
                let ops = [
                    create(1),
                    ModelOp::MintTicket {
                        token: TokenPick::Latest(0),
                        ctx: CtxPick::Own,
                    },
                    ModelOp::AcquireSlot {
                        session: 0,
                        resource: Some(1),
                    },
                    at(target, edge),
                    ModelOp::Validate {
                        token: TokenPick::Latest(0),
                        ctx: CtxPick::Own,
                    },
                    ModelOp::HeartbeatSlot { slot: 0 },
                    ModelOp::RedeemTicket {
                        ticket: TicketPick::Issued(0),
                    },
                    ModelOp::RedeemTicket {
                        ticket: TicketPick::Issued(0),
                    },
                    ModelOp::Reap { limit: 1 },
                    ModelOp::Reap { limit: 1 },
                ];
                check_sequence(&ops, choice).unwrap_or_else(|v| panic!("{choice:?}: {v}"));
            }
        }
    }
}

#[test]
fn caps_rates_and_group_revocation() {
    for choice in PolicyChoice::ALL {
        let mut ops = Vec::new();
        for i in 0..5 {
            ops.push(create(i % 2));
            ops.push(ModelOp::AcquireSlot {
                session: 0,
                resource: Some(0),
            });
            ops.push(ModelOp::AcquireSlot {
                session: 0,
                resource: Some(0),
            });
        }
        ops.push(ModelOp::List { subject: 0 });
        ops.push(ModelOp::RevokeResource { resource: 0 });
        ops.push(ModelOp::RevokeSubject { subject: 1 });
        ops.push(ModelOp::List { subject: 1 });
        ops.push(ModelOp::Advance(Jump::Knob {
            knob: Knob::RateWindow,
            delta_ms: 0,
        }));
        ops.push(create(0));
        check_sequence(&ops, choice).unwrap_or_else(|v| panic!("{choice:?}: {v}"));
    }
}

#[test]
fn decoded_byte_strings_run_clean() {
    // The fuzz target's path: arbitrary bytes → operations → check_sequence.
    let mut state = 0x1234_5678_9abc_def0u64;
    for case in 0..40 {
        let bytes: Vec<u8> = (0..200)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect();
        let ops = leasehold_testkit::model::decode_ops(&bytes);
        let choice = PolicyChoice::from_byte(case);
        check_sequence(&ops, choice).unwrap_or_else(|v| panic!("case {case} {choice:?}: {v}"));
    }
}

/// The random test must reach the interesting outcomes, not just pass: run the same
/// generator for 500 cases and check each key (operation → outcome) occurred.
#[test]
fn generator_reaches_every_interesting_outcome() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    use std::collections::BTreeMap;

    let mut runner = TestRunner::deterministic();
    let strategy = Gen::sequential_strategy(1..40);
    let mut total: BTreeMap<String, u64> = BTreeMap::new();
    for _ in 0..500 {
        let (init, transitions, _) = strategy.new_tree(&mut runner).unwrap().current();
        let mut h = Harness::new(init.policy);
        for t in &transitions {
            h.step(t).unwrap_or_else(|v| panic!("{v}"));
        }
        for (k, n) in h.coverage() {
            *total.entry(k.clone()).or_default() += n;
        }
    }
    if std::env::var_os("MODEL_COVERAGE").is_some() {
        for (k, n) in &total {
            eprintln!("{n:8}  {k}");
        }
    }
    let must = [
        "create → ok",
        "create → ok (evicting)",
        "create → LimitReached(SubjectSessions)",
        "create → LimitReached(GlobalSessions)",
        "create → RateLimited",
        "create → InvalidInput",
        "validate → ok",
        "validate → ok+new token",
        "validate → ok+same token",
        "validate → Expired",
        "validate → BindingMismatch",
        "validate → Malformed",
        "validate → NotAuthenticated",
        "refresh → ok+new token",
        "refresh → ok+same token",
        "refresh → ReuseDetected",
        "validate → ReuseDetected",
        "acquire_slot → LimitReached(ResourceSlots)",
        "redeem_ticket → Revoked(Subject)",
        "refresh → Revoked(ReuseDetected)",
        "revoke → revoked",
        "revoke → already Revoked",
        "revoke → already Expired",
        "revoke → unknown",
        "update_data → Expired",
        "acquire_slot → Expired",
        "acquire_slot → Revoked(Revoked)",
        "update_data → ok",
        "update_data → VersionConflict",
        "mint_ticket → ok",
        "redeem_ticket → ok",
        "redeem_ticket → NotAuthenticated",
        "redeem_ticket → Expired",
        "acquire_slot → ok",
        "acquire_slot → LimitReached(SessionSlots)",
        "heartbeat_slot → ok",
        "heartbeat_slot → SlotLost",
        "release_slot → true",
        "reap → 1 reaped",
        "logout → revoked",
        "logout → already Revoked",
        "logout → NotAuthenticated",
        "revoke_owned → revoked",
        "revoke_owned → unknown",
        "validate_as → ok",
        "validate_as → Refused",
        "validate_access → ok",
        "validate_access → AccessTokenExpired",
        "validate_access → NotAuthenticated",
        "validate_access → Expired",
        "validate_access → Revoked(Revoked)",
        "get_by_id → ok",
        "get_by_id → Expired",
        "keepalive_by_id → ok",
        "keepalive_by_id → Expired",
        "mint_ticket_by_id → ok",
        "give_back → revoked",
        "give_back → unknown",
        "check_create → ok",
        "check_create → LimitReached(SubjectSessions)",
        "check_create → RateLimited",
        "count_subject → count 1",
        "count_all → count 2",
    ];
    let missing: Vec<&str> = must
        .iter()
        .copied()
        .filter(|k| !total.contains_key(*k))
        .collect();
    assert!(
        missing.is_empty(),
        "never reached: {missing:?}\nreached: {total:#?}"
    );
}

/// The harness is only worth something if it fails on a broken store: each flaw below breaks
/// one clause of the store contract, and the same random generator must catch it.
#[test]
fn the_model_catches_broken_stores() {
    use leasehold::MemoryStore;
    use leasehold_testkit::broken::{Broken, Flaw};
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;

    // `CasIgnoresVersion` needs concurrency to show (the simulation covers it).
    for flaw in [
        Flaw::TicketNeverDeleted,
        Flaw::CapIgnored,
        Flaw::RevokeSubjectSkipsTagged,
        Flaw::ReapRemovesLive,
        Flaw::OldClockRule,
    ] {
        let mut runner = TestRunner::deterministic();
        let strategy = Gen::sequential_strategy(1..40);
        let caught = (0..500).find_map(|_| {
            let (init, transitions, _) = strategy.new_tree(&mut runner).unwrap().current();
            let store = Broken::new(MemoryStore::new(), flaw);
            let mut h = Harness::with_store(store, init.policy.policy(), 0x5eed);
            transitions
                .iter()
                .find_map(|t| h.step(t).err())
                .or_else(|| h.finish().err())
        });
        let v = caught.unwrap_or_else(|| panic!("{flaw:?} was never caught"));
        eprintln!("{flaw:?}: {} at step {}", v.rule, v.step);
        if flaw == Flaw::OldClockRule {
            // Told `Expired`, yet the record stays active: the invariant itself says so.
            assert_eq!(v.rule, "INV-store-time", "{v}");
        }
    }
}
