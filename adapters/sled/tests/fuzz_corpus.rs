//! Replays the committed `sled_values` fuzz corpus (and any regressions) through the same entry
//! point the fuzz target calls, so stable `cargo test` checks every input found so far.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;

fn replay(dir: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        leasehold_sled::fuzzing::decode_stored(&std::fs::read(&path).unwrap());
        n += 1;
    }
    n
}

#[test]
fn sled_values_corpus_replays_clean() {
    let fuzz = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz");
    let corpus = fuzz.join("corpus/sled_values");
    let n = replay(&corpus);
    assert!(n >= 10, "corpus {} has only {n} inputs", corpus.display());
    let regressions = fuzz.join("regressions/sled_values");
    if regressions.is_dir() {
        replay(&regressions);
    }
}
