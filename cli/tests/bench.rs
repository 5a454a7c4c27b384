//! `leasehold bench`, end to end on tiny sizes (`--quick`): every row is there, the JSON
//! parses, bad arguments exit 2. Never asserts a timing.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;

fn leasehold() -> Command {
    Command::cargo_bin("leasehold").unwrap()
}

fn stdout_of(args: &[&str]) -> String {
    let out = leasehold().args(args).assert().code(0).get_output().clone();
    String::from_utf8(out.stdout).unwrap()
}

const ENGINE_ROWS: [&str; 2] = ["engine validate decision", "rotation decision (OsEntropy)"];

#[test]
fn memory_quick_table_has_every_row() {
    let table = stdout_of(&["bench", "--store", "memory:", "--quick"]);
    let header = table.lines().find(|l| l.starts_with("ROW")).unwrap();
    for col in ["LEASEHOLD", "RAW", "RATIO", "SPREAD", "TARGET", "RESULT"] {
        assert!(header.contains(col), "{header}");
    }
    for row in ENGINE_ROWS.iter().chain(&[
        "memory validate, no touch due @ 200",
        "memory longest create, growing to 2k",
    ]) {
        let line = table.lines().find(|l| l.starts_with(row));
        let line = line.unwrap_or_else(|| panic!("no row {row:?} in\n{table}"));
        assert!(
            line.ends_with("PASS") || line.ends_with("FAIL") || line.ends_with("info"),
            "{line}"
        );
    }
    assert!(table.lines().last().unwrap().contains("PASS"), "{table}");
}

#[test]
fn memory_quick_json_parses() {
    let json = stdout_of(&["bench", "--store", "memory:", "--quick", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["store"], "memory:");
    let rows = doc["rows"].as_array().unwrap();
    assert_eq!(rows.len(), 4, "{json}");
    for row in rows {
        assert!(row["name"].is_string(), "{row}");
        assert!(row["leasehold"].is_number(), "{row}");
        let result = row["result"].as_str().unwrap();
        assert!(["PASS", "FAIL", "info"].contains(&result), "{row}");
    }
}

#[test]
fn plot_draws_a_bar_per_ratio_row() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("bench.svg");
    let plot_arg = plot.to_str().unwrap();
    let json = stdout_of(&[
        "bench", "--store", "memory:", "--quick", "--format", "json", "--plot", plot_arg,
    ]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    let with_ratio: Vec<&str> = doc["rows"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["ratio"].is_number())
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert!(!with_ratio.is_empty(), "{json}");
    let svg = std::fs::read_to_string(&plot).unwrap();
    assert!(svg.starts_with("<svg "), "{svg}");
    assert_eq!(
        svg.matches(r#"class="bar""#).count(),
        with_ratio.len(),
        "{svg}"
    );
    for name in with_ratio {
        assert!(svg.contains(name), "no {name:?} in\n{svg}");
    }
}

#[test]
fn plot_into_a_missing_directory_fails_with_a_message() {
    let dir = tempfile::tempdir().unwrap();
    let plot = dir.path().join("no/such/dir/bench.svg");
    leasehold()
        .args(["bench", "--store", "memory:", "--quick", "--plot"])
        .arg(&plot)
        .assert()
        .code(1)
        .stderr(predicate::str::contains("cannot write the plot"));
}

#[test]
fn sled_quick_table_has_every_row() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sled:{}", dir.path().display());
    let table = stdout_of(&["bench", "--store", &url, "--quick"]);
    for row in ENGINE_ROWS.iter().chain(&[
        "sled validate, touch due @ 200",
        "sled validate, no touch due @ 200",
        "sled refresh @ 200",
        "sled revoke (logout) @ 200",
        "sled reap, 20 expired among 200",
    ]) {
        assert!(
            table.lines().any(|l| l.starts_with(row)),
            "no row {row:?} in\n{table}"
        );
    }
    // The per-size databases are temp dirs, removed at the end.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn bad_arguments_exit_2() {
    for args in [
        &["bench", "--store", "mysql://x"][..],
        &["bench", "--store", "memory:", "--sessions", "10"],
        &["bench", "--store", "memory:", "--sessions", "ten"],
        &["bench", "--store", "memory:", "--rounds", "0"],
        &["bench"],
    ] {
        leasehold()
            .args(args)
            .assert()
            .code(2)
            .stderr(predicate::str::is_empty().not());
    }
}

/// The local PostgreSQL (`scripts/services.sh`; `LEASEHOLD_POSTGRES_URL` to use another).
fn postgres_url() -> String {
    std::env::var("LEASEHOLD_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// The local Redis (`scripts/services.sh`; `LEASEHOLD_REDIS_URL` to use another).
fn redis_url() -> String {
    std::env::var("LEASEHOLD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

/// The server rows of a `--quick` run (size 200) with a raw operation, for the store named
/// `kind` in row names (PostgreSQL adds a reap row).
fn server_rows(kind: &str) -> Vec<String> {
    let mut rows = Vec::new();
    if kind == "postgres" {
        rows.push("postgres reap, 20 expired among 200, c=1".to_owned());
    }
    for c in [1, 32] {
        for what in [
            "validate, touch due",
            "validate, no touch",
            "refresh",
            "create",
            "create, subject cap",
            "revoke by id",
            "ticket mint+redeem",
            "slot acquire+release",
        ] {
            rows.push(format!("{kind} {what}, 200, c={c}"));
        }
    }
    rows
}

/// One round (`--quick`): the rounds' lowest and highest ratio are the ratio itself.
fn one_round_spread(row: &serde_json::Value) {
    assert_eq!(row["ratio_min"], row["ratio"], "{row}");
    assert_eq!(row["ratio_max"], row["ratio"], "{row}");
}

/// A `--quick --format json` run on `url`: the JSON parses, every expected row is there once
/// with a leasehold value, a raw value and a ratio (numbers; never their size), plus the
/// bytes-per-session rows `footprints`, each smaller than the one before, plus at each
/// concurrency the validate compared with `clocked` (the raw read with the store's clock, for
/// information), and nothing else.
fn server_quick_json(url: &str, kind: &str, footprints: &[&str], clocked: &str) {
    let json = stdout_of(&["bench", "--store", url, "--quick", "--format", "json"]);
    let doc: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(doc["sessions"], serde_json::json!([200]), "{json}");
    let all = doc["rows"].as_array().unwrap();
    let clocked_names: Vec<String> = [1, 32]
        .iter()
        .map(|c| format!("{kind} validate, no touch, 200, c={c} vs {clocked}"))
        .collect();
    let (clocked_rows, all): (Vec<_>, Vec<_>) = all
        .iter()
        .partition(|r| clocked_names.iter().any(|n| r["name"] == n.as_str()));
    assert_eq!(clocked_rows.len(), 2, "{json}");
    for row in &clocked_rows {
        for field in ["leasehold", "raw", "ratio"] {
            assert!(row[field].is_number(), "{field} of {row}");
        }
        assert_eq!(row["raw_op"], clocked, "{row}");
        assert_eq!(row["result"], "info", "{row}");
    }
    // With the `peers` feature every run also has `… vs <peer>` rows: 2 peers × 4 operations
    // × 2 concurrencies, each with numbers on both sides.
    let (peers, rows): (Vec<_>, Vec<_>) = all
        .into_iter()
        .partition(|r| r["name"].as_str().is_some_and(|n| n.contains(" vs ")));
    let expected_peers = if cfg!(feature = "peers") { 16 } else { 0 };
    assert_eq!(peers.len(), expected_peers, "{json}");
    for row in &peers {
        for field in ["leasehold", "raw", "ratio"] {
            assert!(row[field].is_number(), "{field} of {row}");
        }
        one_round_spread(row);
    }
    let expected = server_rows(kind);
    assert_eq!(rows.len(), expected.len() + footprints.len(), "{json}");
    let mut last = f64::INFINITY;
    for footprint in footprints {
        let bytes = rows
            .iter()
            .find(|r| r["name"] == *footprint)
            .unwrap_or_else(|| panic!("no row {footprint:?} in\n{json}"));
        assert_eq!(bytes["unit"], "bytes_per_session", "{bytes}");
        let b = bytes["leasehold"].as_f64().unwrap_or(f64::NAN);
        assert!(b > 0.0 && b < last, "{bytes} after {last} B");
        last = b;
    }
    for name in &expected {
        let row = rows
            .iter()
            .find(|r| r["name"] == name.as_str())
            .unwrap_or_else(|| panic!("no row {name:?} in\n{json}"));
        for field in ["leasehold", "raw", "ratio"] {
            assert!(row[field].is_number(), "{field} of {row}");
        }
        one_round_spread(row);
        assert!(
            row["raw_op"].as_str().is_some_and(|s| !s.is_empty()),
            "{row}"
        );
        let result = row["result"].as_str().unwrap();
        assert!(["PASS", "FAIL", "info"].contains(&result), "{row}");
    }
}

#[test]
fn postgres_quick_json_has_every_row() {
    server_quick_json(
        &postgres_url(),
        "postgres",
        &["postgres disk per session, 200"],
        "SELECT by id + clock",
    );
}

#[test]
fn redis_quick_json_has_every_row() {
    // Without the global index: the same keys but the index, so less.
    server_quick_json(
        &redis_url(),
        "redis",
        &[
            "redis memory per session, 200",
            "redis memory per session, no global index, 200",
        ],
        "GET+TIME",
    );
}

#[test]
fn redis_quick_table_has_every_row() {
    let table = stdout_of(&["bench", "--store", &redis_url(), "--quick"]);
    for row in server_rows("redis") {
        let line = table.lines().find(|l| l.starts_with(&row));
        let line = line.unwrap_or_else(|| panic!("no row {row:?} in\n{table}"));
        assert!(
            line.ends_with("PASS") || line.ends_with("FAIL") || line.ends_with("info"),
            "{line}"
        );
    }
}

#[test]
fn unreachable_server_says_how_to_start_it() {
    leasehold()
        .args(["bench", "--store", "redis://127.0.0.1:1", "--quick"])
        .assert()
        .code(1)
        .stderr(predicate::str::contains("scripts/services.sh"));
}
