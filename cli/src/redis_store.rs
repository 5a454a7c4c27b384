//! `--store redis://…` and `--store redis+cluster://…`: a fresh key prefix per case, its keys
//! deleted when the case's store is dropped. One option of leasehold's own rides on the URL,
//! `?global_index=false` (`RedisConfig::global_index`), and is taken out of the URL the client
//! sees.

use leasehold_conformance::Guarded;
use leasehold_redis::{RedisConfig, RedisStore};

/// How reports name a Redis store (the URL without a password).
pub(crate) fn label(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_owned(),
    }
}

/// The URL for the client, without leasehold's options, and `global_index` (default `true`).
pub(crate) fn options(url: &str) -> Result<(String, bool), String> {
    let Some((base, query)) = url.split_once('?') else {
        return Ok((url.to_owned(), true));
    };
    let mut keep = Vec::new();
    let mut index = true;
    for pair in query.split('&').filter(|p| !p.is_empty()) {
        match pair.split_once('=') {
            Some(("global_index", "true")) => index = true,
            Some(("global_index", "false")) => index = false,
            Some(("global_index", v)) => {
                return Err(format!(
                    "`global_index={v}` in the Redis URL: use global_index=true or global_index=false"
                ));
            }
            _ => keep.push(pair),
        }
    }
    let url = if keep.is_empty() {
        base.to_owned()
    } else {
        format!("{base}?{}", keep.join("&"))
    };
    Ok((url, index))
}

/// The store configuration a `--store` Redis URL asks for (validated by `parse_store`).
pub(crate) fn config(url: &str) -> Result<RedisConfig, String> {
    let (url, index) = options(url)?;
    Ok(RedisConfig::new(url).global_index(index))
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
                let Ok(config) = config(&url) else { return };
                let config = config.prefix(prefix).global_index(false);
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
    let store = RedisStore::open(config(&url)?.prefix(prefix.clone()))
        .await
        .map_err(|e| e.to_string())?;
    Ok(Guarded::new(store, Cleanup { url, prefix }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::options;

    #[test]
    fn global_index_is_taken_out_of_the_url_and_other_options_stay() {
        let u = "redis://127.0.0.1:6379";
        assert_eq!(options(u).unwrap(), (u.to_owned(), true));
        assert_eq!(
            options("redis://h:1/2?global_index=false").unwrap(),
            ("redis://h:1/2".to_owned(), false)
        );
        assert_eq!(
            options("redis+cluster://a:1,b:2?protocol=resp3&global_index=true").unwrap(),
            ("redis+cluster://a:1,b:2?protocol=resp3".to_owned(), true)
        );
        assert!(options("redis://h:1?global_index=no").is_err());
    }
}
