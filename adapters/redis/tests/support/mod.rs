//! Test support: the store factory (one prefix per case, keys deleted afterwards) and a
//! throwaway 3-node Redis Cluster on free loopback ports.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;
use std::process::Command;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use leasehold_redis::{RedisConfig, RedisStore};

/// The standalone server's URL (`LEASEHOLD_REDIS_URL`, default `redis://127.0.0.1:6379`).
pub fn url() -> String {
    std::env::var("LEASEHOLD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".into())
}

/// A policy with a rejecting global cap of `max`, accepted as the upper bound it is on this
/// sharded store.
pub fn global_capped(max: u64) -> leasehold::Policy {
    leasehold::Policy::builder()
        .global_cap(Some(leasehold::GlobalCap {
            max,
            on_full: leasehold::CapPolicy::Reject,
        }))
        .inexact_global_cap_ok(true)
        .build()
        .unwrap()
}

/// Whether `r` is a create refused by a full global cap.
pub fn global_cap_full<T>(r: &Result<T, leasehold::Error>) -> bool {
    matches!(
        r,
        Err(leasehold::Error::LimitReached {
            limit: leasehold::Limit::GlobalSessions
        })
    )
}

/// The server binary the throwaway servers run: `LEASEHOLD_REDIS_SERVER`, default
/// `redis-server` (e.g. a `valkey-server` to run the Cluster, fault, failover and memory tests
/// on Valkey).
pub fn server_bin() -> String {
    std::env::var("LEASEHOLD_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into())
}

/// The command-line client the tests drive servers with: `LEASEHOLD_REDIS_CLI`, default
/// `redis-cli` (`valkey-cli` takes the same arguments).
pub fn cli_bin() -> String {
    std::env::var("LEASEHOLD_REDIS_CLI").unwrap_or_else(|_| "redis-cli".into())
}

/// A prefix no other run or case uses.
pub fn fresh_prefix() -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "lhtest-{}-{}-{nanos:x}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// Deletes a store's keys when dropped (from a thread of its own: the case's runtime may be
/// shutting down).
pub struct Cleanup {
    pub url: String,
    pub prefix: String,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (url, prefix) = (self.url.clone(), self.prefix.clone());
        let _ = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
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

/// Opens a store on `url` under a fresh prefix; an unreachable server is an error saying how
/// to start one.
pub async fn open(url: &str) -> Result<(RedisStore, Cleanup), String> {
    open_with(url, |c| c).await
}

/// As [`open`], with the configuration changed by `f` (the prefix is set after it).
pub async fn open_with(
    url: &str,
    f: impl FnOnce(RedisConfig) -> RedisConfig,
) -> Result<(RedisStore, Cleanup), String> {
    let prefix = fresh_prefix();
    let store = RedisStore::open(f(RedisConfig::new(url)).prefix(prefix.clone()))
        .await
        .map_err(|e| {
            format!(
                "{e}\nThe Redis tests need a server: start one with `scripts/services.sh` \
                 (or set LEASEHOLD_REDIS_URL); they never skip silently."
            )
        })?;
    Ok((
        store,
        Cleanup {
            url: url.to_string(),
            prefix,
        },
    ))
}

/// The store a conformance case gets: a fresh prefix on the local server, or on this process's
/// throwaway Cluster (checked to be one) when `cluster`; with or without the global index.
pub async fn suite_store(
    cluster: bool,
    global_index: bool,
) -> Result<leasehold_conformance::Guarded<RedisStore, Cleanup>, String> {
    let url = if cluster { cluster_url()? } else { url() };
    let (store, cleanup) = open_with(&url, |c| c.global_index(global_index)).await?;
    if cluster && !store.is_cluster() {
        return Err("expected a Cluster connection".to_string());
    }
    Ok(leasehold_conformance::Guarded::new(store, cleanup))
}

/// A throwaway 3-node Cluster for this test process, started once on free loopback ports. Each
/// node is watched by a shell loop that stops it when this process exits, so several test
/// binaries may each run their own Cluster side by side, and none outlives its binary.
pub fn cluster_url() -> Result<String, String> {
    static URL: OnceLock<Result<String, String>> = OnceLock::new();
    URL.get_or_init(|| start_cluster(3, 0).map(|c| c.0)).clone()
}

/// A throwaway Cluster of 3 primaries with one replica each (started once per test process,
/// like [`cluster_url`]): its URL and the ports of its replicas, every one attached
/// (`master_link_status:up`).
pub fn cluster_with_replicas() -> Result<(String, Vec<u16>), String> {
    static C: OnceLock<Result<(String, Vec<u16>), String>> = OnceLock::new();
    C.get_or_init(new_cluster_with_replicas).clone()
}

/// Like [`cluster_with_replicas`], but a new Cluster for the caller alone (to break it).
pub fn new_cluster_with_replicas() -> Result<(String, Vec<u16>), String> {
    {
        let (url, ports) = start_cluster(6, 1)?;
        let mut replicas = Vec::new();
        for p in ports {
            for _ in 0..200 {
                let info = cli(p, &["info", "replication"]);
                if info.contains("role:master") && info.contains("connected_slaves:1") {
                    break;
                }
                if info.contains("role:slave") && info.contains("master_link_status:up") {
                    replicas.push(p);
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
        if replicas.len() != 3 {
            return Err(format!("{} of 3 replicas attached", replicas.len()));
        }
        Ok((url, replicas))
    }
}

/// `redis-cli -p <port> args…` output ("" if it could not run).
pub fn cli(port: u16, args: &[&str]) -> String {
    Command::new(cli_bin())
        .args(["-p", &port.to_string()])
        .args(args)
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
}

fn free_port() -> Option<u16> {
    // A port whose cluster-bus port (+10000) is free too.
    for _ in 0..50 {
        let l = std::net::TcpListener::bind("127.0.0.1:0").ok()?;
        let p = l.local_addr().ok()?.port();
        if p < 55000 && std::net::TcpListener::bind(("127.0.0.1", p + 10000)).is_ok() {
            return Some(p);
        }
    }
    None
}

/// Starts `nodes` Cluster nodes, `replicas` per primary; returns the URL and every port.
fn start_cluster(nodes: usize, replicas: usize) -> Result<(String, Vec<u16>), String> {
    let dir: PathBuf = std::env::temp_dir().join(format!(
        "leasehold-redis-cluster-{}-{nodes}",
        std::process::id()
    ));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let me = std::process::id();
    let mut ports = Vec::new();
    for _ in 0..nodes {
        let p = (0..20)
            .filter_map(|_| free_port())
            .find(|p| !ports.contains(p))
            .ok_or("no free port for a cluster node")?;
        ports.push(p);
        let d = dir.join(p.to_string());
        std::fs::create_dir_all(&d).map_err(|e| e.to_string())?;
        let script = format!(
            "'{bin}' --port {p} --bind 127.0.0.1 --cluster-enabled yes \
             --cluster-config-file nodes.conf --repl-diskless-sync no --dir '{d}' --save '' --appendonly no \
             --daemonize no --pidfile '{d}/redis.pid' --loglevel warning >/dev/null 2>&1 & \
             S=$!; while kill -0 {me} 2>/dev/null && kill -0 $S 2>/dev/null; do sleep 1; done; \
             kill $S 2>/dev/null; wait $S; rm -rf '{d}'; rmdir '{parent}' 2>/dev/null",
            d = d.display(),
            bin = server_bin(),
            parent = dir.display()
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
    }
    for p in &ports {
        let mut up = false;
        for _ in 0..100 {
            if let Ok(o) = Command::new(cli_bin())
                .args(["-p", &p.to_string(), "ping"])
                .output()
                && String::from_utf8_lossy(&o.stdout).contains("PONG")
            {
                up = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !up {
            return Err(format!("cluster node on port {p} did not start"));
        }
    }
    let nodes: Vec<String> = ports.iter().map(|p| format!("127.0.0.1:{p}")).collect();
    let o = Command::new(cli_bin())
        .arg("--cluster")
        .arg("create")
        .args(&nodes)
        .args(["--cluster-replicas", &replicas.to_string(), "--cluster-yes"])
        .output()
        .map_err(|e| format!("redis-cli --cluster create: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "redis-cli --cluster create failed: {}",
            String::from_utf8_lossy(&o.stdout)
        ));
    }
    // Wait until every node reports cluster_state:ok (startup, not test time).
    for p in &ports {
        let mut ok = false;
        for _ in 0..200 {
            if let Ok(o) = Command::new(cli_bin())
                .args(["-p", &p.to_string(), "cluster", "info"])
                .output()
                && String::from_utf8_lossy(&o.stdout).contains("cluster_state:ok")
            {
                ok = true;
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        if !ok {
            return Err(format!("cluster node {p} never reached cluster_state:ok"));
        }
    }
    Ok((format!("redis+cluster://{}", nodes.join(",")), ports))
}

/// A throwaway standalone `redis-server` on a free loopback port, with its own data directory
/// under the temp dir. A shell loop stops it if this test process exits without dropping it;
/// dropping it kills the server and removes the directory. It can be crashed (`SIGKILL`),
/// restarted on the same port and directory (its AOF, if enabled, is replayed), and paused.
pub struct Server {
    pub port: u16,
    dir: PathBuf,
    args: Vec<String>,
}

impl Server {
    /// Starts a server with extra `redis-server` arguments (e.g. `--appendonly yes`).
    pub fn start(args: &[&str]) -> Result<Server, String> {
        let port = free_port().ok_or("no free port")?;
        let dir = std::env::temp_dir().join(format!(
            "leasehold-redis-server-{}-{port}",
            std::process::id()
        ));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let s = Server {
            port,
            dir,
            args: args.iter().map(|a| format!("'{a}'")).collect(),
        };
        s.launch()?;
        Ok(s)
    }

    /// `redis://127.0.0.1:<port>`.
    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }

    fn launch(&self) -> Result<(), String> {
        let script = format!(
            "'{bin}' --port {p} --bind 127.0.0.1 --dir '{d}' --save '' --daemonize no \
             --pidfile '{d}/redis.pid' --loglevel warning {args} >>'{d}/log' 2>&1 & \
             S=$!; while kill -0 {me} 2>/dev/null && kill -0 $S 2>/dev/null; do sleep 1; done; \
             kill -CONT $S 2>/dev/null; kill -9 $S 2>/dev/null",
            p = self.port,
            bin = server_bin(),
            d = self.dir.display(),
            args = self.args.join(" "),
            me = std::process::id(),
        );
        Command::new("sh")
            .arg("-c")
            .arg(script)
            .stdin(std::process::Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot start redis-server: {e}"))?;
        // Wait for it to answer (startup, bounded).
        for _ in 0..200 {
            if self.cli(&["ping"]).contains("PONG") {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!(
            "redis-server on port {} did not start: {}",
            self.port,
            std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
        ))
    }

    /// Runs `redis-cli -p <port> args…` and returns its output ("" if it could not run).
    pub fn cli(&self, args: &[&str]) -> String {
        Command::new(cli_bin())
            .args(["-p", &self.port.to_string()])
            .args(args)
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    }

    /// A field of `INFO <section>` (`None` if absent).
    pub fn info(&self, section: &str, field: &str) -> Option<String> {
        self.cli(&["info", section]).lines().find_map(|l| {
            l.strip_prefix(&format!("{field}:"))
                .map(|v| v.trim().to_string())
        })
    }

    fn pid(&self) -> Option<String> {
        std::fs::read_to_string(self.dir.join("redis.pid"))
            .ok()
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
    }

    /// Sends a signal (`KILL`, `STOP`, `CONT`) to the server process.
    pub fn signal(&self, sig: &str) {
        if let Some(pid) = self.pid() {
            let _ = Command::new("kill")
                .arg(format!("-{sig}"))
                .arg(pid)
                .status();
        }
    }

    /// Kills the server with `SIGKILL` (a crash: no shutdown, no final save) and waits until
    /// its port stops answering.
    pub fn crash(&self) {
        self.signal("KILL");
        for _ in 0..200 {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_err() {
                let _ = std::fs::remove_file(self.dir.join("redis.pid"));
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("redis-server on port {} survived SIGKILL", self.port);
    }

    /// Starts the server again on the same port and directory.
    pub fn restart(&self) -> Result<(), String> {
        self.launch()
    }

    /// Waits until this server, a replica, has processed everything its primary has sent and
    /// the primary knows it (`master_link_status:up` here, `slave0:…state=online,offset=N`
    /// there, with N its own offset and ours; bounded). A probe write first: after a diskless
    /// full sync the primary streams nothing until the replica's first ACK (up to 1 s), and an
    /// offset of 0 on both sides would look in sync before that.
    pub fn wait_in_sync_with(&self, primary: &Server) -> Result<(), String> {
        primary.cli(&["incr", "leasehold-test:sync-probe"]);
        for _ in 0..400 {
            let up = self.info("replication", "master_link_status").as_deref() == Some("up");
            let mine = self.info("replication", "master_repl_offset");
            let theirs = primary.info("replication", "master_repl_offset");
            let acked = primary.info("replication", "slave0").is_some_and(|v| {
                v.contains("state=online")
                    && theirs
                        .as_ref()
                        .is_some_and(|o| v.contains(&format!("offset={o},")))
            });
            if up && acked && mine.is_some() && mine == theirs {
                return Ok(());
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        Err(format!("replica on port {} never caught up", self.port))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.signal("CONT");
        self.signal("KILL");
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A two-worker runtime for a test that drives the store from several tasks.
pub fn rt() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}
