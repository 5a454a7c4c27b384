#![no_main]
//! Operation sequences, clock jumps and injected store faults → `Sessions` over
//! `FaultyStore<MemoryStore>` vs the reference model, every invariant checked after every step.
//!
//! The body is `leasehold_testkit::fuzzing::ops_vs_model`, which the main workspace also runs over the
//! committed corpus (`testkit/tests/fuzz_corpus.rs`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| leasehold_testkit::fuzzing::ops_vs_model(data));
