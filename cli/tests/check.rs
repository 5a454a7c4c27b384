//! `leasehold check`, end to end: the real binary, its output and its exit code.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use assert_cmd::Command;
use predicates::prelude::*;

/// How many cases a store declaring `caps` skips: those whose requirement it does not meet (a
/// capability it lacks, or — for the exact-count reap cases — `native_expiry`).
fn skips(caps: leasehold::Capabilities) -> usize {
    leasehold_conformance::cases()
        .iter()
        .filter(|c| c.requires.is_some_and(|r| !r.met_by(caps)))
        .count()
}

/// How many cases `memory:` skips (it declares only `raw_dump`: no native expiry, no clock
/// of its own).
fn memory_skips() -> usize {
    skips(leasehold::Capabilities::NONE.with_raw_dump(true))
}

fn leasehold() -> Command {
    Command::cargo_bin("leasehold").unwrap()
}

fn summary_line(stdout: &str) -> &str {
    stdout.lines().last().unwrap_or_default()
}

fn counts(summary: &str) -> (usize, usize, usize) {
    let words: Vec<&str> = summary.split_whitespace().collect();
    assert_eq!(words.len(), 6, "summary line: {summary:?}");
    assert_eq!(
        (words[1], words[3], words[5]),
        ("passed,", "failed,", "skipped"),
        "summary line: {summary:?}"
    );
    (
        words[0].parse().unwrap(),
        words[2].parse().unwrap(),
        words[4].parse().unwrap(),
    )
}

#[test]
fn memory_store_passes_with_a_table_and_a_summary() {
    let out = leasehold()
        .args(["check", "--store", "memory:"])
        .assert()
        .success()
        .code(0)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with("store: memory: (capabilities: raw_dump)"),
        "{stdout}"
    );
    let header = stdout.lines().find(|l| l.starts_with("CASE")).unwrap();
    for col in ["CASE", "INVARIANT", "RESULT", "TIME"] {
        assert!(header.contains(col), "{header}");
    }
    let row = stdout
        .lines()
        .find(|l| l.starts_with("no_resurrection::revoke_then_validate "))
        .unwrap();
    assert!(row.contains("INV-no-resurrection") && row.contains("passed") && row.ends_with("ms"));
    let skipped = stdout
        .lines()
        .find(|l| l.starts_with("bounded_storage::native_expiry_never_serves_expired "))
        .unwrap();
    assert!(skipped.contains("skipped"), "{skipped}");
    let (passed, failed, skipped) = counts(summary_line(&stdout));
    assert_eq!((failed, skipped), (0, memory_skips()));
    assert!(passed >= 40, "only {passed} cases passed");
    assert_eq!(passed + skipped, leasehold_conformance::cases().len());
}

#[test]
fn a_native_expiry_store_skips_the_exact_reap_counts_with_the_reason() {
    let caps = leasehold::Capabilities::NONE
        .with_native_expiry(true)
        .with_raw_dump(true)
        .with_server_clock(true);
    let out = leasehold()
        .args(["check", "--store", "memory+native-expiry:"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(
            "store: memory+native-expiry: (capabilities: native_expiry, raw_dump, server_clock)"
        ),
        "{stdout}"
    );
    for (case, result) in [
        ("bounded_storage::reap_batch_limit ", "skipped"),
        ("no_resurrection::tombstone_outlives_early_reap ", "skipped"),
        (
            "bounded_storage::native_expiry_never_serves_expired ",
            "passed",
        ),
        (
            "bounded_storage::native_expiry_every_key_has_a_ttl ",
            "passed",
        ),
        ("store_time::store_ahead_of_caller_decides ", "passed"),
    ] {
        let row = stdout.lines().find(|l| l.starts_with(case)).unwrap();
        assert!(row.contains(result), "{row}");
    }
    let reasons: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("skipped ("))
        .skip(1)
        .take_while(|l| !l.is_empty())
        .collect();
    assert_eq!(reasons.len(), skips(caps), "{stdout}");
    for line in &reasons {
        assert!(
            line.contains(": requires reaper: the store declares native_expiry"),
            "{line}"
        );
    }
    let (passed, failed, skipped) = counts(summary_line(&stdout));
    assert_eq!((failed, skipped), (0, skips(caps)));
    assert!(skipped >= 8, "{skipped}");
    assert_eq!(passed + skipped, leasehold_conformance::cases().len());

    let out = leasehold()
        .args([
            "check",
            "--store",
            "memory+native-expiry:",
            "--filter",
            "reap_batch_limit",
            "--format",
            "json",
        ])
        .assert()
        .success()
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let case = &doc["cases"][0];
    assert_eq!(case["result"], "skipped");
    assert!(
        case["message"]
            .as_str()
            .unwrap()
            .starts_with("requires reaper: the store declares native_expiry"),
        "{case}"
    );
    leasehold()
        .args(["check", "--simulate", "--store", "memory+native-expiry:"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "--simulate is not available for memory+native-expiry:",
        ));
}

#[test]
fn without_a_terminal_progress_is_plain_lines_on_stderr() {
    let out = leasehold()
        .args(["check", "--store", "memory:", "--filter", "one_shot"])
        .assert()
        .success()
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 7, "{stderr}");
    assert!(
        lines[0].starts_with("[  1/7] passed  one_shot::"),
        "{stderr}"
    );
    assert!(!stderr.contains('\r'), "no bar redraws when not a terminal");
}

#[test]
fn json_format_parses_and_counts() {
    let out = leasehold()
        .args(["check", "--store", "memory:", "--format", "json"])
        .assert()
        .success()
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let cases = doc["cases"].as_array().unwrap();
    assert_eq!(cases.len(), leasehold_conformance::cases().len());
    assert_eq!(doc["failed"], 0);
    assert_eq!(doc["skipped"].as_u64().unwrap() as usize, memory_skips());
    assert_eq!(
        doc["passed"].as_u64().unwrap() as usize,
        cases.len() - memory_skips()
    );
    assert_eq!(doc["store"], "memory:");
    let first = &cases[0];
    assert_eq!(first["name"], "no_resurrection::revoke_then_validate");
    assert_eq!(first["invariant"], "INV-no-resurrection");
    assert_eq!(first["result"], "passed");
    assert!(first["message"].is_null());
    assert!(first["duration_ms"].as_f64().unwrap() >= 0.0);
    let skipped = cases
        .iter()
        .find(|c| c["name"] == "bounded_storage::native_expiry_never_serves_expired")
        .unwrap();
    assert_eq!(skipped["result"], "skipped");
    assert_eq!(skipped["message"], "requires native_expiry");
}

#[test]
fn filter_selects_by_name_or_invariant() {
    // The CLI must run exactly the cases the suite's selector picks (and all of them pass).
    for (filter, n) in [
        ("one_shot", leasehold_conformance::select("one_shot").len()),
        ("INV-caps", leasehold_conformance::select("INV-caps").len()),
        ("race", 0),
    ] {
        assert!(
            filter == "race" || n >= 7,
            "--filter {filter} selects only {n}"
        );
        let out = leasehold()
            .args(["check", "--store", "memory:", "--filter", filter])
            .assert()
            .success()
            .get_output()
            .clone();
        let stdout = String::from_utf8(out.stdout).unwrap();
        let (passed, failed, skipped) = counts(summary_line(&stdout));
        if n > 0 {
            assert_eq!((passed, failed, skipped), (n, 0, 0), "--filter {filter}");
        } else {
            assert!(passed >= 10, "--filter race ran {passed} cases");
            assert!(
                stdout
                    .lines()
                    .filter(|l| l.contains("::"))
                    .all(|l| l.contains("race")),
                "{stdout}"
            );
        }
    }
    leasehold()
        .args(["check", "--store", "memory:", "--filter", "no-such-case"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains(
            "no case matches --filter `no-such-case`",
        ));
}

#[test]
fn a_broken_store_fails_naming_the_case() {
    let out = leasehold()
        .args(["check", "--store", "broken-memory:ticket-never-deleted"])
        .assert()
        .failure()
        .code(1)
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    let row = stdout
        .lines()
        .find(|l| l.starts_with("one_shot::ticket_redeems_once "))
        .unwrap();
    assert!(row.contains("FAILED"), "{row}");
    assert!(
        stdout.contains("failures:\n")
            && stdout.contains(
                "  one_shot::ticket_redeems_once: second redemption at once: expected \
                 NotAuthenticated"
            ),
        "{stdout}"
    );
    let (_, failed, _) = counts(summary_line(&stdout));
    assert!(failed >= 4, "{failed} failed");

    let out = leasehold()
        .args([
            "check",
            "--store",
            "broken-memory:reap-ignores-limit",
            "--format",
            "json",
        ])
        .assert()
        .code(1)
        .get_output()
        .clone();
    let doc: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let failed: Vec<&str> = doc["cases"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|c| c["result"] == "failed")
        .map(|c| c["name"].as_str().unwrap())
        .collect();
    assert!(
        failed.contains(&"bounded_storage::reap_batch_limit"),
        "{failed:?}"
    );
}

#[test]
fn bad_store_urls_are_one_line_errors_with_exit_code_2() {
    for (url, says) in [
        ("mysql://localhost/x", "unknown store scheme `mysql:`"),
        ("postgres://", "names no server"),
        // Nothing listens on port 1: a one-line error, not a run of failed cases.
        ("redis://127.0.0.1:1", "cannot connect to Redis"),
        ("redis+cluster://127.0.0.1:1", "cannot connect to Redis"),
        (
            "postgres://postgres@127.0.0.1:1/test",
            "cannot connect to PostgreSQL",
        ),
        ("sled:", "`sled:` needs a directory"),
        (
            "redis://127.0.0.1:6379?global_index=no",
            "use global_index=true or",
        ),
    ] {
        let out = leasehold()
            .args(["check", "--store", url])
            .assert()
            .code(2)
            .stdout("")
            .get_output()
            .clone();
        let stderr = String::from_utf8(out.stderr).unwrap();
        assert_eq!(stderr.lines().count(), 1, "{url}: {stderr}");
        assert!(
            stderr.starts_with("error: ") && stderr.contains(says),
            "{url}: {stderr}"
        );
    }
    let out = leasehold()
        .args(["check", "--store", "mysql://x"])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    for scheme in [
        "memory:",
        "sled:PATH",
        "postgres://",
        "redis://",
        "redis+cluster://",
    ] {
        assert!(
            stderr.contains(scheme),
            "the error names the valid schemes: {stderr}"
        );
    }
}

/// The local PostgreSQL (`scripts/services.sh`; `LEASEHOLD_POSTGRES_URL` to use another).
fn postgres_url() -> String {
    std::env::var("LEASEHOLD_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".to_owned())
}

/// `leasehold check --store url --format json` plus `args` on a server (`what`, named in the
/// message if it is down): exit 0, and the parsed report.
fn check_json_on_a_server(url: &str, what: &str, args: &[&str]) -> serde_json::Value {
    let out = leasehold()
        .args(["check", "--store", url, "--format", "json"])
        .args(args)
        .assert()
        .get_output()
        .clone();
    let stderr = String::from_utf8_lossy(&out.stderr);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "leasehold check --store {url} (is {what} up? scripts/services.sh starts it): \
         {stderr}\n{stdout}"
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn check_runs_the_suite_on_postgres() {
    let v = check_json_on_a_server(&postgres_url(), "PostgreSQL", &["--filter", "one_shot"]);
    let cases = v["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 7);
    assert!(cases.iter().all(|c| c["result"] == "passed"), "{v}");
}

/// The local Redis (`scripts/services.sh`; `LEASEHOLD_REDIS_URL` to use another).
fn redis_url() -> String {
    std::env::var("LEASEHOLD_REDIS_URL").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

#[test]
fn check_runs_the_suite_on_redis_without_the_global_index() {
    // `&` if `LEASEHOLD_REDIS_URL` already has a query (the CLI takes its own option out).
    let base = redis_url();
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}global_index=false");
    let v = check_json_on_a_server(&url, "Redis", &[]);
    let caps: Vec<&str> = v["capabilities"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(caps.contains(&"no_global_index"), "{caps:?}");
    let declared = leasehold::Capabilities::NONE
        .with_native_expiry(true)
        .with_raw_dump(true)
        .with_multi_process(true)
        .with_server_clock(true)
        .with_sharded(true)
        .with_no_global_index(true);
    assert_eq!(v["failed"], 0, "{v}");
    assert_eq!(v["skipped"], skips(declared), "{v}");
    let cases = v["cases"].as_array().unwrap();
    let global = cases
        .iter()
        .find(|c| c["name"] == "caps::global_cap")
        .unwrap_or_else(|| panic!("no caps::global_cap in {v}"));
    assert_eq!(
        global["result"], "passed",
        "the refusal is checked: {global}"
    );
}

#[test]
fn an_unreachable_postgres_is_a_one_line_error() {
    let out = leasehold()
        .args([
            "check",
            "--store",
            "postgres://postgres:hunter2@127.0.0.1:1/test",
            "--filter",
            "one_shot",
        ])
        .assert()
        .code(2)
        .get_output()
        .clone();
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(stderr.contains("cannot connect to PostgreSQL"), "{stderr}");
    assert!(
        !stderr.contains("hunter2"),
        "the password is not shown: {stderr}"
    );
}

#[test]
fn an_unusable_sled_directory_is_a_clear_error() {
    let file = tempfile::NamedTempFile::new().unwrap();
    let url = format!("sled:{}/sub", file.path().display());
    leasehold()
        .args(["check", "--store", &url, "--filter", "one_shot"])
        .assert()
        .code(2)
        .stdout("")
        .stderr(predicate::str::starts_with("error: cannot use store sled:"));
}

#[test]
fn usage_errors_exit_2_and_help_exits_0() {
    leasehold().assert().code(2);
    leasehold()
        .args(["check", "--format", "xml"])
        .assert()
        .code(2);
    leasehold()
        .args(["check", "--help"])
        .assert()
        .success()
        .stdout(predicate::str::contains("--store <URL>"));
}

#[test]
fn default_store_is_sled_in_a_temp_dir_and_passes() {
    let out = leasehold()
        .arg("check")
        .assert()
        .success()
        .get_output()
        .clone();
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(stdout.starts_with("store: sled (temp dir)"), "{stdout}");
    let (passed, failed, _) = counts(summary_line(&stdout));
    assert_eq!(failed, 0);
    assert!(passed >= 40);
}

#[test]
fn simulate_passes_on_memory_and_sled_with_a_summary() {
    for store in [&["--store", "memory:"][..], &[][..]] {
        let out = leasehold()
            .args([
                "check",
                "--simulate",
                "--seed",
                "7",
                "--seeds",
                "2",
                "--steps",
                "120",
            ])
            .args(store)
            .assert()
            .success()
            .get_output()
            .clone();
        let stdout = String::from_utf8(out.stdout).unwrap();
        assert!(stdout.contains("simulation seed 7: 120 steps"), "{stdout}");
        assert!(stdout.contains("simulation seed 8: 120 steps"), "{stdout}");
        assert_eq!(summary_line(&stdout), "2 passed, 0 failed", "{stdout}");
    }
}

#[test]
fn simulate_catches_a_broken_store_and_names_the_seed_that_replays_it() {
    let run = || {
        let out = leasehold()
            .args(["check", "--simulate", "--seeds", "20"])
            .args(["--store", "broken-memory:ticket-never-deleted"])
            .assert()
            .code(1)
            .get_output()
            .clone();
        String::from_utf8(out.stdout).unwrap()
    };
    let first = run();
    assert!(first.contains("replay with seed"), "{first}");
    assert!(
        summary_line(&first).ends_with(" passed, 1 failed"),
        "{first}"
    );
    // Deterministic: the same seeds fail at the same step with the same words.
    assert_eq!(first, run());
}

#[test]
fn simulate_options_require_simulate() {
    leasehold()
        .args(["check", "--seed", "3"])
        .assert()
        .code(2)
        .stderr(predicate::str::contains("--simulate"));
}
