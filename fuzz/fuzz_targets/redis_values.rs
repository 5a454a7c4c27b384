//! The Redis adapter's stored values as it reads them back (session records under their key,
//! tickets, slots, key names, slot reservation members): decode untrusted bytes, never panic,
//! and a decoded value stands for exactly the input.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| leasehold_redis::fuzzing::decode_stored(data));
