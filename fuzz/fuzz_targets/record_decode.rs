#![no_main]
//! Stored bytes → `leasehold::codec::decode_session/ticket/slot`: never panics, canonical,
//! decode → encode → decode is stable.
//!
//! The body is `leasehold_testkit::fuzzing::record_decode`, which the main workspace also runs over the
//! committed corpus (`testkit/tests/fuzz_corpus.rs`).

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| leasehold_testkit::fuzzing::record_decode(data));
