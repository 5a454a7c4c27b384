//! The conformance suite against the reference `MemoryStore`, wired exactly as an outside
//! adapter wires it: one dev-dependency and one macro invocation.

#![allow(clippy::unwrap_used, clippy::expect_used)]

leasehold_conformance::conformance_tests!(
    || async { leasehold::MemoryStore::new() },
    capabilities = [raw_dump],
);
