//! The conformance suite against a `MemoryStore` with a clock of its own (the system clock, as
//! a database server has): every case, including the server-clock ones that move the store's
//! clock through `Store::set_clock_offset`, as a Postgres or Redis adapter will run it.

#![allow(clippy::unwrap_used, clippy::expect_used)]

leasehold_conformance::conformance_tests!(
    || async { leasehold::MemoryStore::with_server_clock(leasehold::SystemClock) },
    capabilities = [raw_dump, server_clock],
);
