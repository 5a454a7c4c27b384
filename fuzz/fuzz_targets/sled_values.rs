//! The sled adapter's own stored key and value formats (records use the engine codec, fuzzed by
//! `record_decode`): decode untrusted bytes, never panic, and re-encode canonically.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leasehold_sled::fuzzing::decode_stored(data));
