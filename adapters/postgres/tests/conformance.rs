//! The shared conformance suite (`leasehold-conformance`) against `PostgresStore` on a real
//! server (`LEASEHOLD_POSTGRES_URL`, default the local one `scripts/services.sh` starts): every
//! case gets a schema of its own, dropped when its store goes. An unreachable server fails
//! every case with a message saying how to start one.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use async_trait::async_trait;
use leasehold_conformance::{Guarded, StoreFactory};
use leasehold_postgres::PostgresStore;

struct FreshSchema;

#[async_trait]
impl StoreFactory for FreshSchema {
    type Store = Guarded<PostgresStore, common::DropSchema>;

    async fn make(&self) -> Result<Self::Store, String> {
        // A modest pool: the race cases still interleave across 8 connections.
        let (store, guard) = common::fresh_store("conf", 8).await?;
        Ok(Guarded::new(store, guard))
    }
}

leasehold_conformance::conformance_tests!(
    FreshSchema,
    capabilities = [raw_dump, multi_process, server_clock],
);
