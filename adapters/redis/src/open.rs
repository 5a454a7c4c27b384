//! Connecting: URL, key prefix, timeouts, durability; standalone (`ConnectionManager`) or
//! Cluster (the async cluster client). Both reconnect by themselves after a server restart.

use std::sync::Arc;
use std::sync::atomic::AtomicI64;
use std::time::Duration;

use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig};
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{Route, SingleNodeRoutingInfo, SlotAddr};
use redis::{Cmd, Pipeline, RedisFuture, Value};

use crate::error::OpenError;
use crate::keys::{Keys, check_prefix};
use crate::scripts::Scripts;
use crate::{Inner, RedisStore};

/// How to reach the server and lay out the keys.
#[derive(Clone, Debug)]
pub struct RedisConfig {
    /// `redis://host:port[/db]` (standalone) or `redis+cluster://host:port[,host:port…]`
    /// (Cluster: any reachable nodes; the client discovers the rest).
    pub url: String,
    /// Prefix of every key (default `leasehold`); refused if it contains `{` or `}`.
    pub prefix: String,
    /// Bound on every call; past it the call fails with `StoreError::Timeout` (outcome
    /// unknown). Default 2 s.
    pub timeout: Duration,
    /// After every security write (`store::WriteClass::Security`), wait until this many
    /// replicas acknowledged it (`WAIT n timeout`); fewer is an error (unknown outcome).
    /// `None` (default): no `WAIT` (a failover may lose the last writes). On a Cluster the
    /// `WAIT` goes to every primary (smallest count wins): each needs `n` replicas.
    pub wait_replicas: Option<(u32, Duration)>,
    /// Keep the global index `P:g:{global}`, which every session joins (default `true`).
    /// It is what a global cap counts and what listing and counting `Scope::All` walk; it
    /// costs about 120 bytes of memory per session (a sorted-set member). `false` saves that:
    /// the store then declares `no_global_index`, so a policy with a global cap is refused
    /// when `Sessions` is built, and `Scope::All` is listed and counted by `SCAN`ning the
    /// record keys (every key of the database is visited: an administrative operation).
    /// Reopening a prefix with the index on after it ran without it rebuilds the index first
    /// (see [`RedisStore::open`]).
    pub global_index: bool,
}

impl RedisConfig {
    /// The defaults for `url`.
    pub fn new(url: impl Into<String>) -> Self {
        RedisConfig {
            url: url.into(),
            prefix: "leasehold".into(),
            timeout: Duration::from_secs(2),
            wait_replicas: None,
            global_index: true,
        }
    }

    /// Sets the key prefix.
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Sets the per-call timeout.
    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Keeps (`true`, the default) or drops the global index: see [`RedisConfig::global_index`].
    pub fn global_index(mut self, keep: bool) -> Self {
        self.global_index = keep;
        self
    }

    /// Waits for `replicas` acknowledgements (at most `timeout`) after security writes.
    pub fn wait_replicas(mut self, replicas: u32, timeout: Duration) -> Self {
        self.wait_replicas = Some((replicas, timeout));
        self
    }
}

/// A connection to a standalone server or a Cluster; cheap to clone (shared, multiplexed).
#[derive(Clone)]
pub(crate) enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }
    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(pipeline, offset, count),
        }
    }
    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Conn {
    /// Sends `pipeline` to the node that holds `key`: on a Cluster, the primary of the key's
    /// slot, and every command in it goes there, keyless ones (`TIME`) included; a `MOVED` or
    /// `ASK` in a reply sends the whole pipeline again where it points (the client does). A
    /// server error in any reply comes back as `Err`, as from [`Pipeline::query_async`].
    pub(crate) async fn pipe_at_key(
        &mut self,
        pipeline: &Pipeline,
        key: &[u8],
    ) -> redis::RedisResult<Vec<Value>> {
        match self {
            Conn::Single(c) => pipeline.query_async(c).await,
            Conn::Cluster(c) => {
                let route =
                    SingleNodeRoutingInfo::SpecificNode(Route::with_key(key, SlotAddr::Master));
                c.route_pipeline(pipeline.clone(), 0, pipeline.len(), route)
                    .await?
                    .into_iter()
                    .map(Value::extract_error)
                    .collect()
            }
        }
    }
}

/// The URL without a password, for messages.
pub(crate) fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(s), Some(at)) if at > s => format!("{}://…@{}", &url[..s], &url[at + 1..]),
        _ => url.to_string(),
    }
}

impl RedisStore {
    /// Connects to `url` (`redis://…` or `redis+cluster://…`) with the default configuration.
    pub async fn connect(url: &str) -> Result<Self, OpenError> {
        Self::open(RedisConfig::new(url)).await
    }

    /// Connects with `config`. Fails if the prefix is invalid or no server answers `PING`.
    ///
    /// With the global index on (the default), if sessions of this prefix were created without
    /// it and may still live (the `P:g:{global}:unindexed` marker lives until the latest of
    /// their absolute deadlines), the index is rebuilt first by walking the records (`SCAN`),
    /// so a global cap and `Scope::All` see them. Switch every process of a prefix together:
    /// one still running without the index creates sessions the others' global cap does not
    /// count.
    pub async fn open(config: RedisConfig) -> Result<Self, OpenError> {
        check_prefix(&config.prefix).map_err(|e| OpenError::Config(e.into()))?;
        let shown = redact(&config.url);
        let connect = |source| OpenError::Connect {
            url: shown.clone(),
            source,
        };
        let (conn, nodes) = if let Some(rest) = config.url.strip_prefix("redis+cluster://") {
            let nodes: Vec<String> = rest
                .split(',')
                .filter(|s| !s.is_empty())
                .map(|n| format!("redis://{n}"))
                .collect();
            if nodes.is_empty() {
                return Err(OpenError::Config(
                    "a redis+cluster:// URL names no node".into(),
                ));
            }
            let client = redis::cluster::ClusterClient::builder(nodes.clone())
                .connection_timeout(config.timeout)
                .response_timeout(config.timeout)
                .retries(2)
                .build()
                .map_err(connect)?;
            let c = client.get_async_connection().await.map_err(connect)?;
            (Conn::Cluster(c), nodes)
        } else if config.url.starts_with("redis://") || config.url.starts_with("rediss://") {
            let client = redis::Client::open(config.url.as_str()).map_err(connect)?;
            let cfg = ConnectionManagerConfig::new()
                .set_connection_timeout(Some(config.timeout))
                .set_response_timeout(Some(config.timeout))
                .set_number_of_retries(2);
            let c = ConnectionManager::new_with_config(client, cfg)
                .await
                .map_err(connect)?;
            (Conn::Single(c), vec![config.url.clone()])
        } else {
            return Err(OpenError::Config(format!(
                "unknown URL scheme in {shown}: use redis://host:port or redis+cluster://host:port"
            )));
        };
        let store = RedisStore {
            inner: Arc::new(Inner {
                conn,
                nodes,
                keys: Keys::new(config.prefix.clone()),
                scripts: Scripts::new(),
                offset: AtomicI64::new(0),
                timeout: config.timeout,
                wait: config.wait_replicas,
                calls: std::sync::atomic::AtomicU64::new(0),
                global_index: config.global_index,
                unindexed_until: AtomicI64::new(i64::MIN),
            }),
        };
        let mut c = store.inner.conn.clone();
        let pong: String = redis::cmd("PING")
            .query_async(&mut c)
            .await
            .map_err(connect)?;
        if pong != "PONG" {
            return Err(OpenError::Config(format!("{shown} did not answer PING")));
        }
        if config.global_index {
            // Sessions created without the index (RedisConfig::global_index(false)) may still
            // live: index them before anything counts the index.
            let marked: i64 = redis::cmd("EXISTS")
                .arg(store.inner.keys.unindexed())
                .query_async(&mut c)
                .await
                .map_err(connect)?;
            if marked == 1 {
                store
                    .rebuild_global_index()
                    .await
                    .map_err(|source| OpenError::Rebuild {
                        prefix: config.prefix.clone(),
                        source,
                    })?;
            }
        }
        Ok(store)
    }
}
