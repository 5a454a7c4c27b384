//! Shared by the integration tests: the server's URL, a fresh schema per store, dropped when
//! the store goes.

#![allow(dead_code)]

use std::sync::atomic::{AtomicU64, Ordering};

use leasehold_postgres::PostgresStore;
use sqlx::postgres::PgPoolOptions;

/// The default when `LEASEHOLD_POSTGRES_URL` is not set: the local server `scripts/services.sh`
/// starts.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

pub fn url() -> String {
    std::env::var("LEASEHOLD_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.to_owned())
}

static NEXT: AtomicU64 = AtomicU64::new(0);

/// A schema name no other test (or test process) uses.
pub fn fresh_schema(tag: &str) -> String {
    format!(
        "lh_{tag}_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// What to say when the server cannot be reached: how to start one. The test fails with it
/// (never a silent skip).
pub fn unreachable(url: &str, e: impl std::fmt::Display) -> String {
    format!(
        "cannot open a leasehold store on PostgreSQL at {url}: {e}. Start the local server with \
         `scripts/services.sh` (or point LEASEHOLD_POSTGRES_URL at one)"
    )
}

/// A pool of `size` connections with the adapter's recommended settings.
pub async fn pool(url: &str, size: u32) -> Result<sqlx::PgPool, String> {
    let options =
        leasehold_postgres::recommended_connect_options(url).map_err(|e| unreachable(url, e))?;
    leasehold_postgres::recommended_pool_options()
        .max_connections(size)
        .connect_with(options)
        .await
        .map_err(|e| unreachable(url, e))
}

/// Opens a store in a fresh schema on a pool of `size` connections.
pub async fn fresh_store(tag: &str, size: u32) -> Result<(PostgresStore, DropSchema), String> {
    let url = url();
    let schema = fresh_schema(tag);
    let pool = pool(&url, size).await?;
    let store = PostgresStore::open(pool, &schema)
        .await
        .map_err(|e| unreachable(&url, e))?;
    Ok((store, DropSchema { url, schema }))
}

/// Drops its schema when dropped: on a thread of its own with its own connection, so it works
/// inside or outside a runtime, and after the store's runtime is gone.
pub struct DropSchema {
    pub url: String,
    pub schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let url = self.url.clone();
        let schema = self.schema.clone();
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                if let Ok(pool) = PgPoolOptions::new().max_connections(1).connect(&url).await {
                    let _ = PostgresStore::drop_schema(&pool, &schema).await;
                    pool.close().await;
                }
            });
        });
        let _ = done.join();
    }
}
