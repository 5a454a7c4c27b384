#![no_main]
//! Untrusted token bytes → `leasehold::token::parse` (several prefixes): never panics, agrees
//! with a reference parser, accepted tokens round-trip.
//!
//! The body is `leasehold_testkit::fuzzing::token_parse`, which the main workspace also runs over the
//! committed corpus (`testkit/tests/fuzz_corpus.rs`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| leasehold_testkit::fuzzing::token_parse(data));
