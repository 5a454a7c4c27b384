//! A server restart under the store: a throwaway PostgreSQL of its own (initdb'd by the test on
//! a free loopback port, stopped and removed at the end) is crashed (`pg_ctl stop -m immediate`:
//! no shutdown checkpoint, WAL recovery at the next start) in the middle of a run of logins and
//! logouts. While it is down every call is a typed outcome-unknown error and nothing is
//! granted; once it is back the same store (the same pool) works again by itself; every
//! acknowledged logout is still a logout and every acknowledged rotation still holds.
//!
//! The server binaries are found with `pg_config --bindir` (or `LEASEHOLD_PG_BINDIR`). Run as
//! root (as CI does), the server runs as the `postgres` user, which PostgreSQL requires.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

use leasehold::{
    Clock, Context, CreateOptions, Error, ManualClock, Policy, SeededEntropy, Sessions, StoreError,
    Subject, SystemClock,
};
use leasehold_postgres::PostgresStore;

/// The server's binaries.
fn bindir() -> PathBuf {
    if let Ok(dir) = std::env::var("LEASEHOLD_PG_BINDIR") {
        return PathBuf::from(dir);
    }
    let out = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .expect("pg_config (from the PostgreSQL packages) is needed to start a throwaway server");
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

fn is_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"))
}

/// Runs a server binary, as `postgres` when we are root.
fn run(bin: &Path, args: &[&str]) -> std::process::Output {
    let mut cmd = if is_root() {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--"]).arg(bin);
        c
    } else {
        Command::new(bin)
    };
    cmd.args(args).output().unwrap()
}

/// A throwaway server: its data directory and port; stopped and removed when dropped.
struct Server {
    bin: PathBuf,
    dir: tempfile::TempDir,
    port: u16,
}

impl Server {
    fn start_new() -> Server {
        let bin = bindir();
        let dir = tempfile::Builder::new()
            .prefix("leasehold-pg-restart-")
            .tempdir()
            .unwrap();
        if is_root() {
            let status = Command::new("chown")
                .args(["-R", "postgres:postgres"])
                .arg(dir.path())
                .status()
                .unwrap();
            assert!(status.success(), "chown of the data directory");
        }
        let data = dir.path().join("data");
        let out = run(
            &bin.join("initdb"),
            &[
                "-D",
                data.to_str().unwrap(),
                "-A",
                "trust",
                "-U",
                "postgres",
            ],
        );
        assert!(out.status.success(), "initdb: {out:?}");
        let port = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let server = Server { bin, dir, port };
        server.start();
        server
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn pg_ctl(&self, args: &[&str]) -> std::process::Output {
        let data = self.data();
        let mut all = vec!["-D", data.to_str().unwrap()];
        all.extend_from_slice(args);
        run(&self.bin.join("pg_ctl"), &all)
    }

    fn start(&self) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=on -c synchronous_commit=on",
            self.port,
            self.dir.path().display()
        );
        let log = self.dir.path().join("log");
        let out = self.pg_ctl(&["-w", "-l", log.to_str().unwrap(), "-o", &opts, "start"]);
        assert!(out.status.success(), "pg_ctl start: {out:?}");
    }

    /// Like a crash: no shutdown checkpoint; the next start replays the WAL.
    fn crash(&self) {
        let out = self.pg_ctl(&["-w", "-m", "immediate", "stop"]);
        assert!(out.status.success(), "pg_ctl stop: {out:?}");
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.pg_ctl(&["-m", "immediate", "stop"]);
    }
}

fn typed(e: &Error) -> bool {
    matches!(
        e,
        Error::StoreUnavailable(StoreError::Unavailable(_) | StoreError::Timeout)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_server_crash_and_restart_loses_no_acknowledged_logout_and_resurrects_nothing() {
    let server = Server::start_new();
    let options = leasehold_postgres::recommended_connect_options(&server.url()).unwrap();
    let pool = leasehold_postgres::recommended_pool_options()
        .max_connections(4)
        .acquire_timeout(std::time::Duration::from_secs(2))
        .connect_with(options)
        .await
        .unwrap();
    let store = PostgresStore::open(pool, "leasehold").await.unwrap();
    let clock = ManualClock::new(SystemClock.now());
    let s = Sessions::new(store.clone(), Policy::default())
        .unwrap()
        .with_clock(clock.clone())
        .with_entropy(SeededEntropy::new(11));

    // Before the crash: sessions logged out (acknowledged), and rotated (acknowledged).
    let mut logged_out = Vec::new();
    let mut rotated = Vec::new();
    for i in 0..20 {
        let who = Subject::new(format!("user-{i}")).unwrap();
        let c = s.create(&who, CreateOptions::default()).await.unwrap();
        if i % 2 == 0 {
            s.logout(c.token.expose_secret()).await.unwrap();
            logged_out.push(c.token);
        } else {
            let r = s
                .refresh(c.token.expose_secret(), &Context::none())
                .await
                .unwrap();
            rotated.push((c.token, r.token));
        }
    }
    let live = s
        .create(&Subject::new("survivor").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    // The last acknowledged writes before the crash are a logout and a rotation: a synchronous
    // commit flushes every earlier one with it, so only a last write shows one that did not
    // wait for its own flush.
    let last = s
        .create(&Subject::new("last").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    let rotated_last = s
        .create(&Subject::new("last").unwrap(), CreateOptions::default())
        .await
        .unwrap();
    s.logout(last.token.expose_secret()).await.unwrap();
    let r = s
        .refresh(rotated_last.token.expose_secret(), &Context::none())
        .await
        .unwrap();
    logged_out.push(last.token);
    rotated.push((rotated_last.token, r.token));

    server.crash();
    // While it is down: typed errors, nothing granted, for every kind of call.
    let down = [
        s.validate(live.token.expose_secret(), &Context::none())
            .await
            .err(),
        s.validate(logged_out[0].expose_secret(), &Context::none())
            .await
            .err(),
        s.create(&Subject::new("late").unwrap(), CreateOptions::default())
            .await
            .err(),
        s.logout(live.token.expose_secret()).await.err(),
    ];
    for e in &down {
        let e = e
            .as_ref()
            .expect("a call succeeded while the server was down");
        assert!(typed(e), "an untyped failure while down: {e:?}");
    }

    server.start();
    // The same store recovers by itself (the pool replaces its dead connections; the first
    // call on each may still meet one).
    let mut recovered = None;
    for _ in 0..20 {
        match s
            .validate(live.token.expose_secret(), &Context::none())
            .await
        {
            Ok(v) => {
                recovered = Some(v);
                break;
            }
            // Anything but outcome-unknown is a loss: `NotAuthenticated` here means the
            // survivor's acknowledged create did not survive the crash.
            Err(e) => assert!(
                typed(&e),
                "after the restart the survivor (created and acknowledged before the crash) \
                 failed with {e:?}: lost, or an untyped failure"
            ),
        }
    }
    assert!(
        recovered.is_some(),
        "the store did not recover after the restart"
    );

    clock.advance(std::time::Duration::from_secs(1));
    for token in &logged_out {
        let r = s.validate(token.expose_secret(), &Context::none()).await;
        assert!(
            matches!(r, Err(Error::Revoked { .. })),
            "an acknowledged logout came back after the crash: {r:?}"
        );
    }
    for (old, new) in &rotated {
        let v = s
            .validate(new.expose_secret(), &Context::none())
            .await
            .unwrap();
        assert_eq!(v.session.generation, 1, "the acknowledged rotation holds");
        // Within the grace window the predecessor still opens the session, at the successor's
        // generation (never the rotated-out one).
        if let Ok(v) = s.validate(old.expose_secret(), &Context::none()).await {
            assert_eq!(v.session.generation, 1, "the rotation was undone");
        }
    }
}
