//! The shared conformance suite against `RedisStore` on the standalone server
//! (`LEASEHOLD_REDIS_URL`, default `redis://127.0.0.1:6379`): every case gets its own key
//! prefix, deleted afterwards. An unreachable server fails every case with a message saying how
//! to start one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod support;

leasehold_conformance::conformance_tests!(
    leasehold_conformance::fallible(|| support::suite_store(false, true)),
    capabilities = [
        native_expiry,
        raw_dump,
        multi_process,
        server_clock,
        sharded
    ],
);

/// The same suite on stores without the global index (`RedisConfig::global_index(false)`):
/// `Scope::All` is listed and counted by walking the records, and the cases that use a global
/// cap check that the policy is refused instead.
mod unindexed {
    leasehold_conformance::conformance_tests!(
        leasehold_conformance::fallible(|| crate::support::suite_store(false, false)),
        capabilities = [
            native_expiry,
            raw_dump,
            multi_process,
            server_clock,
            sharded,
            no_global_index
        ],
    );
}
