//! `--store redis://…` and `--store redis+cluster://…`: a fresh key prefix per case, its keys
//! deleted when the case's store is dropped.

use leasehold_conformance::Guarded;
use leasehold_redis::{RedisConfig, RedisStore};

/// How reports name a Redis store (the URL without a password).
pub(crate) fn label(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// Deletes the case's keys when dropped, from a thread of its own (the case's runtime may be
/// shutting down).
pub(crate) struct Cleanup {
    pub(crate) url: String,
    pub(crate) prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                // Without the index: opening never rebuilds it just to delete it.
                let config = RedisConfig::new(url).prefix(prefix).global_index(false);
                if let Ok(s) = RedisStore::open(config).await {
                    let _ = s.delete_all_keys().await;
                }
            });
        })
        .join();
    }
}

/// A store under a prefix no other case uses.
pub(crate) async fn fresh(url: String) -> Result<Guarded<RedisStore, Cleanup>, String> {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    let prefix = format!(
        "leasehold-check-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    );
    let store = RedisStore::open(RedisConfig::new(url.clone()).prefix(prefix.clone()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Guarded::new(store, Cleanup { url, prefix }))
}
