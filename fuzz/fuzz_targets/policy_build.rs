#![no_main]
//! Arbitrary policy knobs → `Policy::builder()…build()`: Ok exactly under the documented rules,
//! a typed `PolicyError` otherwise, never a panic; an Ok policy works.
//!
//! The body is `leasehold_testkit::fuzzing::policy_build`, which the main workspace also runs over the
//! committed corpus (`testkit/tests/fuzz_corpus.rs`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| leasehold_testkit::fuzzing::policy_build(data));
