//! The PostgreSQL adapter's row ↔ record mapping: a row built from untrusted bytes (or from a
//! decoded record) maps to a record or to `Corrupt`, never panics, and a row that maps is exactly
//! that record's row.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    leasehold_postgres::fuzzing::row_round_trip(data);
});
