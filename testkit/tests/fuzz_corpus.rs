#![allow(clippy::unwrap_used, clippy::expect_used)]
//! Replays the committed fuzz corpora and regressions as ordinary tests (stable, no libFuzzer):
//! every file of `fuzz/corpus/<target>/` and `fuzz/regressions/<target>/` is fed to the same
//! function the fuzz target calls (`leasehold_testkit::fuzzing`). A corpus directory that is
//! missing or empty fails the test, so the corpora cannot silently disappear.
//!
//! `LEASEHOLD_WRITE_SEEDS=1 cargo test -p leasehold-testkit --test fuzz_corpus write_seed_corpora
//! -- --ignored` (re)writes the seed files (`seed-*`) from `fuzzing::seed_corpus`.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use leasehold_testkit::fuzzing::{self, TARGETS};

fn fuzz_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz")
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.is_file())
                .filter(|p| {
                    !p.file_name()
                        .and_then(|n| n.to_str())
                        .is_some_and(|n| n.starts_with('.') || n == "README.md")
                })
                .collect()
        })
        .unwrap_or_default();
    v.sort();
    v
}

/// Feeds every file of `dir` to `target`; returns how many ran and the failures.
fn replay(target: &str, dir: &Path) -> (usize, Vec<String>) {
    let mut failures = Vec::new();
    let inputs = files(dir);
    for path in &inputs {
        let data = std::fs::read(path).unwrap();
        let outcome = catch_unwind(AssertUnwindSafe(|| fuzzing::run_target(target, &data)));
        match outcome {
            Ok(true) => {}
            Ok(false) => failures.push(format!("unknown target {target}")),
            Err(panic) => {
                let msg = panic
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
                    .unwrap_or_default();
                failures.push(format!("{}: {msg}", path.display()));
            }
        }
    }
    (inputs.len(), failures)
}

fn replay_target(target: &str) {
    let corpus = fuzz_dir().join("corpus").join(target);
    assert!(
        corpus.is_dir(),
        "corpus directory {} is missing",
        corpus.display()
    );
    let (n, mut failures) = replay(target, &corpus);
    assert!(n > 0, "corpus directory {} is empty", corpus.display());
    let regressions = fuzz_dir().join("regressions").join(target);
    let (r, more) = replay(target, &regressions);
    failures.extend(more);
    eprintln!("{target}: replayed {n} corpus and {r} regression inputs");
    assert!(
        failures.is_empty(),
        "{} of {} inputs of {target} failed:\n{}",
        failures.len(),
        n + r,
        failures.join("\n")
    );
}

#[test]
fn token_parse_corpus() {
    replay_target("token_parse");
}

#[test]
fn record_decode_corpus() {
    replay_target("record_decode");
}

#[test]
fn policy_build_corpus() {
    replay_target("policy_build");
}

#[test]
fn ops_vs_model_corpus() {
    replay_target("ops_vs_model");
}

#[test]
fn every_target_has_a_dictionary_and_a_corpus_test() {
    for target in TARGETS {
        let dict = fuzz_dir().join("dicts").join(format!("{target}.dict"));
        assert!(dict.is_file(), "{} is missing", dict.display());
        let bin = fuzz_dir().join("fuzz_targets").join(format!("{target}.rs"));
        assert!(bin.is_file(), "{} is missing", bin.display());
    }
}

#[test]
fn seeds_pass_their_targets() {
    for target in TARGETS {
        let seeds = fuzzing::seed_corpus(target);
        assert!(!seeds.is_empty(), "no seeds for {target}");
        for (name, data) in seeds {
            let ok = catch_unwind(AssertUnwindSafe(|| fuzzing::run_target(target, &data)));
            assert!(
                matches!(ok, Ok(true)),
                "seed {name} of {target} fails its target"
            );
            // The valid seeds really are valid: they reach the deep paths.
            if target == "token_parse" && name.starts_with("valid-") {
                assert!(
                    ["lh1", "lht1"]
                        .iter()
                        .any(|p| fuzzing::reference_parse(&data, p).is_some()),
                    "seed {name} is not a well-formed token"
                );
            }
            if target == "record_decode"
                && let Some((kind, n)) = name.split_once('-')
                && n.parse::<u32>().is_ok()
            {
                let decodes = match kind {
                    "session" => leasehold::codec::decode_session(&data).is_ok(),
                    "ticket" => leasehold::codec::decode_ticket(&data).is_ok(),
                    "slot" => leasehold::codec::decode_slot(&data).is_ok(),
                    _ => false,
                };
                assert!(decodes, "seed {name} is not a valid {kind} record");
            }
            if target == "ops_vs_model" {
                let input = fuzzing::decode_ops_input(&data);
                assert!(input.steps.len() >= 5, "seed {name} decodes to few steps");
            }
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus/*/seed-*; run with LEASEHOLD_WRITE_SEEDS=1 and --ignored"]
fn write_seed_corpora() {
    if std::env::var_os("LEASEHOLD_WRITE_SEEDS").is_none() {
        eprintln!("set LEASEHOLD_WRITE_SEEDS=1 to write the seed corpora");
        return;
    }
    for target in TARGETS {
        let dir = fuzz_dir().join("corpus").join(target);
        std::fs::create_dir_all(&dir).unwrap();
        for (name, data) in fuzzing::seed_corpus(target) {
            std::fs::write(dir.join(format!("seed-{name}")), data).unwrap();
        }
    }
}

/// The `ops_vs_model` checks are not vacuous: over a store with a planted flaw, the runner the
/// fuzz target uses finds a violation within a few random inputs. (`CasIgnoresVersion` only
/// shows under concurrency, which a sequential run never has: loom and the simulation cover
/// it. `CasIgnoresExpiry` cannot show through a driver over a store without a clock: it
/// decides and writes at one clock; the conformance suite calls the store directly.)
#[test]
fn ops_vs_model_catches_broken_stores() {
    use leasehold::MemoryStore;
    use leasehold_testkit::broken::{Broken, Flaw};
    for flaw in Flaw::ALL {
        if matches!(flaw, Flaw::CasIgnoresVersion | Flaw::CasIgnoresExpiry) {
            continue;
        }
        let mut state = 7u64;
        let mut found = None;
        for i in 0..200u32 {
            let mut data = vec![(i % 5) as u8, 200];
            for _ in 0..200 {
                state = state
                    .wrapping_mul(6_364_136_223_846_793_005)
                    .wrapping_add(1_442_695_040_888_963_407);
                data.push((state >> 33) as u8);
            }
            let input = fuzzing::decode_ops_input(&data);
            if let Err(v) = fuzzing::run_ops_on(&input, Broken::new(MemoryStore::new(), flaw)) {
                found = Some(v);
                break;
            }
        }
        assert!(
            found.is_some(),
            "no violation found over a store with {flaw:?}"
        );
    }
}

/// The v3 marker selects the v3 operation set; without it every input decodes exactly as it
/// always did (no committed input starts with the marker), and the hand-written v3 seed
/// reaches every new operation.
#[test]
fn v3_inputs_reach_the_new_operations_and_old_inputs_keep_their_meaning() {
    use leasehold_testkit::model::{ModelOp, decode_ops};
    let corpus = fuzz_dir().join("corpus").join("ops_vs_model");
    for path in files(&corpus) {
        let data = std::fs::read(&path).unwrap();
        let input = fuzzing::decode_ops_input(&data);
        if data.starts_with(fuzzing::OPS_V3_MARKER) {
            continue;
        }
        if data.get(1).copied().unwrap_or(0) < 64 {
            let legacy = decode_ops(data.get(2..).unwrap_or(&[]));
            let ops: Vec<ModelOp> = input.steps.iter().map(|s| s.op.clone()).collect();
            assert_eq!(ops, legacy, "{}", path.display());
        }
    }
    let seed = std::fs::read(corpus.join("seed-v3-authority")).unwrap();
    let input = fuzzing::decode_ops_input(&seed);
    let names: Vec<String> = input
        .steps
        .iter()
        .map(|s| {
            format!("{:?}", s.op)
                .split([' ', '('])
                .next()
                .unwrap()
                .to_owned()
        })
        .collect();
    for want in [
        "Logout",
        "RevokeOwned",
        "ValidateAs",
        "ValidateAccess",
        "GetById",
        "KeepaliveById",
        "MintTicketById",
        "GiveBack",
        "CheckCreate",
        "Count",
    ] {
        assert!(
            names.iter().any(|n| n == want),
            "{want} missing from {names:?}"
        );
    }
}
