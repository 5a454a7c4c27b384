//! The `leasehold` command. Its main job, `leasehold check`, runs the conformance suite
//! ([`leasehold_conformance`]) against a store and prints a table (or JSON for CI):
//!
//! ```text
//! leasehold check                          # the embedded default: sled in a temp dir
//! leasehold check --store memory:          # the in-memory reference store
//! leasehold check --store sled:/var/tmp/x  # sled databases in that directory
//! leasehold check --filter one_shot        # cases whose name or invariant contains the text
//! leasehold check --format json            # for CI
//! ```
//!
//! Exit code: 0 when no case failed (skips allowed), 1 when one did, 2 for usage or
//! configuration errors (unknown scheme, unreachable store, a filter matching nothing).
//!
//! `leasehold bench --store memory: | sled:PATH | postgres://… | redis://… | redis+cluster://…`
//! measures the hot paths beside the raw store operations they are built on ([`mod@bench`];
//! `docs/benchmarks.md`).

use std::fmt;
use std::io::{IsTerminal, Write};
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use leasehold::{MemoryStore, Store};
use leasehold_conformance::{
    Capability, CaseReport, Guarded, Outcome, Report, StoreFactory, fallible, run_selected, select,
};
use leasehold_postgres::PostgresStore;
use leasehold_sled::SledStore;
use leasehold_testkit::broken::{Broken, Flaw};
use serde::Serialize;

/// Exit code: every selected case passed or was skipped.
pub const EXIT_OK: u8 = 0;
/// Exit code: at least one case failed.
pub const EXIT_FAILED: u8 = 1;
/// Exit code: bad usage or configuration (nothing was checked).
pub const EXIT_USAGE: u8 = 2;

/// The `leasehold` command line.
#[derive(Debug, Parser)]
#[command(name = "leasehold", version, about = "Session engine tools", long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// A subcommand.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the conformance suite against a store: every security invariant, case by case.
    Check(CheckArgs),
    /// Measure the hot paths (validate, refresh, revoke, reap, create) as ratios to the raw
    /// store operations they are built on, in the same process and run.
    Bench(bench::BenchArgs),
}

/// Options of `leasehold check`.
#[derive(Debug, Args)]
pub struct CheckArgs {
    /// The store to check: `memory:`, `sled:PATH`, `postgres://…`, `redis://…` or
    /// `redis+cluster://…` (on Redis, `?global_index=false` runs the stores without their
    /// global index). Default: sled in a fresh temp dir per case.
    #[arg(long, value_name = "URL")]
    pub store: Option<String>,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Table)]
    pub format: Format,
    /// Run only the cases whose name or invariant contains this text (e.g. `one_shot`,
    /// `INV-caps`, `race`).
    #[arg(long, value_name = "TEXT", conflicts_with = "simulate")]
    pub filter: Option<String>,
    /// Instead of the cases, run the seeded simulation: clients on several nodes, with skewed
    /// and now and then stepped clocks, doing random operations over the store with injected
    /// faults, checked against the reference model after every step. A failure prints the
    /// seed that replays it.
    #[arg(long)]
    pub simulate: bool,
    /// With `--simulate`: the first seed.
    #[arg(long, default_value_t = 1, requires = "simulate")]
    pub seed: u64,
    /// With `--simulate`: how many consecutive seeds to run.
    #[arg(long, default_value_t = 1, requires = "simulate")]
    pub seeds: u64,
    /// With `--simulate`: steps per seed.
    #[arg(long, default_value_t = 300, requires = "simulate")]
    pub steps: usize,
}

/// Output format of `leasehold check`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// A table (case, invariant, result, time), failures and a summary line.
    Table,
    /// One JSON document (for CI).
    Json,
}

/// A parsed `--store` value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreSpec {
    /// The in-memory reference store.
    Memory,
    /// The in-memory store whose "server" expires keys itself on the system clock, as Redis
    /// does (`memory+native-expiry:`, hidden): the reference report of a `native_expiry`
    /// store, exact-count reap cases skipped.
    MemoryNativeExpiry,
    /// sled, one database per case in a temp dir under this directory (`None`: the system
    /// temp dir).
    Sled(Option<PathBuf>),
    /// Test-only: the memory store with a planted flaw (`broken-memory:<flaw>`, hidden).
    Broken(Flaw),
    /// PostgreSQL at this URL: one fresh schema per case, dropped after it.
    Postgres(String),
    /// Redis (`redis://…`) or a Redis Cluster (`redis+cluster://host:port,…`): one fresh key
    /// prefix per case, its keys deleted afterwards. `?global_index=false` opens the stores
    /// without the global index (`RedisConfig::global_index`).
    Redis(String),
}

impl StoreSpec {
    /// How reports name the store.
    pub fn label(&self) -> String {
        match self {
            StoreSpec::Memory => "memory:".to_owned(),
            StoreSpec::MemoryNativeExpiry => "memory+native-expiry:".to_owned(),
            StoreSpec::Sled(None) => "sled (temp dir)".to_owned(),
            StoreSpec::Sled(Some(p)) => format!("sled:{}", p.display()),
            StoreSpec::Broken(flaw) => format!("broken-memory:{flaw}"),
            StoreSpec::Postgres(url) => redact(url),
            StoreSpec::Redis(url) => crate::redis_store::label(url),
        }
    }
}

/// A usage or configuration error: one line saying what to change.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError(pub String);

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConfigError {}

const SCHEMES: &str = "memory:, sled:PATH, postgres://…, redis://…, redis+cluster://…";

/// Parses a `--store` URL.
pub fn parse_store(url: &str) -> Result<StoreSpec, ConfigError> {
    let err = |m: String| Err(ConfigError(m));
    let Some((scheme, rest)) = url.split_once(':') else {
        return err(format!(
            "`{url}` is not a store URL; expected one of {SCHEMES}"
        ));
    };
    match scheme {
        "memory" => {
            if rest.is_empty() || rest == "//" {
                Ok(StoreSpec::Memory)
            } else {
                err(format!("`memory:` takes no path (got `{url}`)"))
            }
        }
        "memory+native-expiry" => {
            if rest.is_empty() || rest == "//" {
                Ok(StoreSpec::MemoryNativeExpiry)
            } else {
                err(format!(
                    "`memory+native-expiry:` takes no path (got `{url}`)"
                ))
            }
        }
        "sled" => {
            let path = rest.strip_prefix("//").unwrap_or(rest);
            if path.is_empty() {
                err(
                    "`sled:` needs a directory, e.g. --store sled:/var/tmp/leasehold-check \
                     (or omit --store for a temp dir)"
                        .to_owned(),
                )
            } else {
                Ok(StoreSpec::Sled(Some(PathBuf::from(path))))
            }
        }
        "postgres" | "postgresql" => {
            if rest.strip_prefix("//").is_none_or(str::is_empty) {
                err(format!(
                    "`{url}` names no server; e.g. --store postgres://postgres@127.0.0.1:5432/test"
                ))
            } else {
                Ok(StoreSpec::Postgres(url.to_owned()))
            }
        }
        "redis" | "rediss" | "redis+cluster" | "rediss+cluster" => {
            crate::redis_store::options(url).map_err(ConfigError)?;
            Ok(StoreSpec::Redis(url.to_owned()))
        }
        "broken-memory" => {
            let name = if rest.is_empty() {
                Flaw::TicketNeverDeleted.name()
            } else {
                rest
            };
            match Flaw::from_name(name) {
                Some(flaw) => Ok(StoreSpec::Broken(flaw)),
                None => err(format!(
                    "unknown planted bug `{name}`; one of: {}",
                    Flaw::ALL.map(Flaw::name).join(", ")
                )),
            }
        }
        other => err(format!(
            "unknown store scheme `{other}:` in `{url}`; expected one of {SCHEMES}"
        )),
    }
}

/// A sled store in a fresh temp dir (under `base`, or the system temp dir), removed when the
/// store is dropped.
pub fn fresh_sled(
    base: Option<&std::path::Path>,
) -> Result<Guarded<SledStore, tempfile::TempDir>, String> {
    let builder = || {
        let mut b = tempfile::Builder::new();
        b.prefix("leasehold-check-");
        b
    };
    let dir = match base {
        None => builder().tempdir(),
        Some(base) => {
            std::fs::create_dir_all(base)
                .map_err(|e| format!("cannot create directory {}: {e}", base.display()))?;
            builder().tempdir_in(base)
        }
    }
    .map_err(|e| format!("cannot create a temp dir: {e}"))?;
    let store = SledStore::open(dir.path()).map_err(|e| {
        format!(
            "cannot open a sled database in {}: {e}",
            dir.path().display()
        )
    })?;
    Ok(Guarded::new(store, dir))
}

/// A URL as reports show it: any password replaced by `***`.
fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_owned();
    };
    let (authority, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    match authority.rsplit_once('@') {
        Some((userinfo, host)) => match userinfo.split_once(':') {
            Some((user, _password)) => format!("{scheme}://{user}:***@{host}{path}"),
            None => url.to_owned(),
        },
        None => url.to_owned(),
    }
}

/// Schema names of `leasehold check` runs: `leasehold_check_<pid>_<n>`.
static NEXT_SCHEMA: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

/// A PostgreSQL store on `url` in a fresh schema of its own, dropped when the store is.
pub async fn fresh_postgres(url: &str) -> Result<Guarded<PostgresStore, DropSchema>, String> {
    let schema = format!(
        "leasehold_check_{}_{}",
        std::process::id(),
        NEXT_SCHEMA.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    );
    let options =
        leasehold_postgres::recommended_connect_options(url).map_err(|e| e.to_string())?;
    let pool = leasehold_postgres::recommended_pool_options()
        .max_connections(8)
        .connect_with(options)
        .await
        .map_err(|e| format!("cannot connect to PostgreSQL at {}: {e}", redact(url)))?;
    let store = PostgresStore::open(pool, &schema)
        .await
        .map_err(|e| e.to_string())?;
    Ok(Guarded::new(
        store,
        DropSchema {
            url: url.to_owned(),
            schema,
        },
    ))
}

/// Drops a `leasehold check` schema when dropped, on a thread of its own with its own
/// connection (it may run inside or outside the runtime the store used).
pub struct DropSchema {
    url: String,
    schema: String,
}

impl Drop for DropSchema {
    fn drop(&mut self) {
        let (url, schema) = (self.url.clone(), self.schema.clone());
        let done = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async {
                let pool = leasehold_postgres::recommended_pool_options()
                    .max_connections(1)
                    .connect(&url)
                    .await;
                if let Ok(pool) = pool {
                    let _ = PostgresStore::drop_schema(&pool, &schema).await;
                    pool.close().await;
                }
            });
        });
        let _ = done.join();
    }
}

/// How progress is shown while cases run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProgressMode {
    /// An indicatif bar on stderr (stderr is a terminal).
    Bar,
    /// One plain line per case on stderr.
    Lines,
    /// Nothing.
    Quiet,
}

impl ProgressMode {
    /// A bar when stderr is a terminal, plain lines otherwise.
    pub fn detect() -> Self {
        if std::io::stderr().is_terminal() {
            ProgressMode::Bar
        } else {
            ProgressMode::Lines
        }
    }
}

/// The result of `leasehold check`: what was checked and how it went.
#[derive(Debug)]
pub struct Checked {
    /// The store, as reports name it.
    pub store: String,
    /// What it declares.
    pub capabilities: Vec<&'static str>,
    /// The report.
    pub report: Report,
}

/// Runs `$body` with `$factory` bound to a [`StoreFactory`] for `$spec` (one arm per kind of
/// store, so `check` and `--simulate` share the dispatch).
macro_rules! with_factory {
    ($spec:expr, $factory:ident => $body:expr) => {
        match $spec {
            StoreSpec::Memory => {
                let $factory = &|| async { MemoryStore::new() };
                $body
            }
            StoreSpec::MemoryNativeExpiry => {
                let $factory =
                    &|| async { MemoryStore::with_native_expiry(leasehold::SystemClock) };
                $body
            }
            StoreSpec::Broken(flaw) => {
                let flaw = *flaw;
                let $factory = &move || async move { Broken::new(MemoryStore::new(), flaw) };
                $body
            }
            StoreSpec::Sled(base) => {
                let base = base.clone();
                let $factory = &fallible(move || std::future::ready(fresh_sled(base.as_deref())));
                $body
            }
            StoreSpec::Postgres(url) => {
                let url = url.clone();
                let $factory = &fallible(move || {
                    let url = url.clone();
                    async move { fresh_postgres(&url).await }
                });
                $body
            }
            StoreSpec::Redis(url) => {
                let url = url.clone();
                let $factory = &fallible(move || $crate::redis_store::fresh(url.clone()));
                $body
            }
        }
    };
}

pub mod bench;
#[cfg(feature = "peers")]
mod bench_peers;
mod bench_plot;
mod bench_server;
mod redis_store;
mod simulate;
pub use simulate::{SimOutcome, simulate};

/// The store `--store` names, or the default (sled in a temp dir).
pub fn store_spec(args: &CheckArgs) -> Result<StoreSpec, ConfigError> {
    match &args.store {
        Some(url) => parse_store(url),
        None => Ok(StoreSpec::Sled(None)),
    }
}

/// A multi-threaded runtime for the cases' racing tasks.
pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, ConfigError> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(4)
        .enable_all()
        .build()
        .map_err(|e| ConfigError(format!("cannot start the async runtime: {e}")))
}

/// Runs `leasehold check` (without printing the result): parses the store, probes it once,
/// runs the selected cases. Configuration problems are a [`ConfigError`].
pub fn check(args: &CheckArgs, progress: ProgressMode) -> Result<Checked, ConfigError> {
    let spec = store_spec(args)?;
    let filter = args.filter.clone().unwrap_or_default();
    let cases = select(&filter);
    if cases.is_empty() {
        return Err(ConfigError(format!(
            "no case matches --filter `{filter}` (it matches case names like \
             `no_resurrection::revoke_then_validate` and invariants like `INV-one-shot`)"
        )));
    }
    let label = spec.label();
    runtime()?.block_on(async {
        with_factory!(&spec, factory => run(&label, factory, &cases, progress).await)
    })
}

async fn run<F: StoreFactory>(
    label: &str,
    factory: &F,
    cases: &[&'static leasehold_conformance::Case],
    mode: ProgressMode,
) -> Result<Checked, ConfigError> {
    // Probe once so an unusable store is one clear error, not a column of failures.
    let probe = factory
        .make()
        .await
        .map_err(|e| ConfigError(format!("cannot use store {label}: {e}")))?;
    let capabilities = Capability::names_declared_by(probe.capabilities());
    drop(probe);

    let bar = match mode {
        ProgressMode::Bar => {
            let bar = ProgressBar::with_draw_target(
                Some(cases.len() as u64),
                ProgressDrawTarget::stderr(),
            );
            if let Ok(style) =
                ProgressStyle::with_template("{bar:30} {pos}/{len} {elapsed} {wide_msg}")
            {
                bar.set_style(style);
            }
            Some(bar)
        }
        _ => None,
    };
    let total = cases.len();
    let mut done = 0usize;
    // Cases catch their own panics; keep the default hook from printing over the progress.
    let hook = std::panic::take_hook();
    std::panic::set_hook(Box::new(|_| {}));
    let report = run_selected(factory, cases, |r: &CaseReport| {
        done += 1;
        match (&bar, mode) {
            (Some(bar), _) => {
                bar.set_message(r.name);
                bar.inc(1);
            }
            (None, ProgressMode::Lines) => {
                eprintln!(
                    "[{done:>3}/{total}] {:<7} {} ({})",
                    r.outcome.label(),
                    r.name,
                    fmt_duration(r.duration)
                );
            }
            _ => {}
        }
    })
    .await;
    std::panic::set_hook(hook);
    if let Some(bar) = bar {
        bar.finish_and_clear();
    }
    Ok(Checked {
        store: label.to_owned(),
        capabilities,
        report,
    })
}

/// `0.42 ms`, `12.3 ms`, `1.20 s`.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 10.0 {
        format!("{ms:.2} ms")
    } else if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", ms / 1000.0)
    }
}

fn result_label(o: &Outcome) -> &'static str {
    match o {
        Outcome::Passed => "passed",
        Outcome::Failed(_) => "FAILED",
        Outcome::Skipped(_) => "skipped",
    }
}

/// Writes the table: a header line naming the store, one row per case (case, invariant,
/// result, time), the failure and skip reasons, then the summary line
/// `N passed, N failed, N skipped`.
pub fn write_table(out: &mut dyn Write, checked: &Checked) -> std::io::Result<()> {
    let caps = if checked.capabilities.is_empty() {
        "none".to_owned()
    } else {
        checked.capabilities.join(", ")
    };
    writeln!(out, "store: {} (capabilities: {caps})", checked.store)?;
    writeln!(out)?;
    let cases = &checked.report.cases;
    let w_case = cases.iter().map(|c| c.name.len()).max().unwrap_or(0).max(4);
    let w_inv = cases
        .iter()
        .map(|c| c.invariant.name().len())
        .max()
        .unwrap_or(0)
        .max(9);
    writeln!(
        out,
        "{:<w_case$}  {:<w_inv$}  {:<7}  {:>9}",
        "CASE", "INVARIANT", "RESULT", "TIME"
    )?;
    for c in cases {
        writeln!(
            out,
            "{:<w_case$}  {:<w_inv$}  {:<7}  {:>9}",
            c.name,
            c.invariant.name(),
            result_label(&c.outcome),
            fmt_duration(c.duration)
        )?;
    }
    let failures: Vec<_> = cases
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Failed(m) => Some((c.name, m)),
            _ => None,
        })
        .collect();
    if !failures.is_empty() {
        writeln!(out)?;
        writeln!(out, "failures:")?;
        for (name, msg) in failures {
            writeln!(out, "  {name}: {}", msg.replace('\n', "\n    "))?;
        }
    }
    let skips: Vec<_> = cases
        .iter()
        .filter_map(|c| match &c.outcome {
            Outcome::Skipped(m) => Some((c.name, m)),
            _ => None,
        })
        .collect();
    if !skips.is_empty() {
        writeln!(out)?;
        writeln!(
            out,
            "skipped (not applicable to the store's capabilities; not counted as passed):"
        )?;
        for (name, why) in skips {
            writeln!(out, "  {name}: {why}")?;
        }
    }
    writeln!(out)?;
    writeln!(out, "{}", checked.report.summary())
}

#[derive(Serialize)]
struct JsonReport<'a> {
    store: &'a str,
    capabilities: &'a [&'static str],
    passed: usize,
    failed: usize,
    skipped: usize,
    cases: Vec<JsonCase<'a>>,
}

#[derive(Serialize)]
struct JsonCase<'a> {
    name: &'a str,
    invariant: &'a str,
    result: &'a str,
    message: Option<&'a str>,
    duration_ms: f64,
}

/// Writes the report as one JSON document:
/// `{"store", "capabilities", "passed", "failed", "skipped", "cases": [{"name", "invariant",
/// "result" ("passed" | "failed" | "skipped"), "message", "duration_ms"}]}`.
pub fn write_json(out: &mut dyn Write, checked: &Checked) -> std::io::Result<()> {
    let r = &checked.report;
    let doc = JsonReport {
        store: &checked.store,
        capabilities: &checked.capabilities,
        passed: r.passed(),
        failed: r.failed(),
        skipped: r.skipped(),
        cases: r
            .cases
            .iter()
            .map(|c| JsonCase {
                name: c.name,
                invariant: c.invariant.name(),
                result: c.outcome.label(),
                message: match &c.outcome {
                    Outcome::Passed => None,
                    Outcome::Failed(m) | Outcome::Skipped(m) => Some(m),
                },
                duration_ms: c.duration.as_secs_f64() * 1000.0,
            })
            .collect(),
    };
    serde_json::to_writer_pretty(&mut *out, &doc).map_err(std::io::Error::other)?;
    writeln!(out)
}

/// The whole command: parses `args` (including the program name), runs, prints to
/// stdout/stderr, and returns the exit code.
pub fn main_with_args<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { EXIT_USAGE } else { EXIT_OK });
        }
    };
    match cli.command {
        Command::Bench(args) => bench::main(&args),
        Command::Check(args) if args.simulate => simulate::main(&args),
        Command::Check(args) => {
            let checked = match check(&args, ProgressMode::detect()) {
                Ok(c) => c,
                Err(e) => {
                    eprintln!("error: {e}");
                    return ExitCode::from(EXIT_USAGE);
                }
            };
            let mut stdout = std::io::stdout().lock();
            let written = match args.format {
                Format::Table => write_table(&mut stdout, &checked),
                Format::Json => write_json(&mut stdout, &checked),
            };
            if let Err(e) = written.and_then(|()| stdout.flush()) {
                eprintln!("error: cannot write the report: {e}");
                return ExitCode::from(EXIT_USAGE);
            }
            ExitCode::from(if checked.report.ok() {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn store_urls_parse() {
        assert_eq!(parse_store("memory:"), Ok(StoreSpec::Memory));
        assert_eq!(parse_store("memory://"), Ok(StoreSpec::Memory));
        assert_eq!(
            parse_store("sled:/tmp/x"),
            Ok(StoreSpec::Sled(Some("/tmp/x".into())))
        );
        assert_eq!(
            parse_store("sled:///tmp/x"),
            Ok(StoreSpec::Sled(Some("/tmp/x".into())))
        );
        assert_eq!(
            parse_store("broken-memory:"),
            Ok(StoreSpec::Broken(Flaw::TicketNeverDeleted))
        );
        assert_eq!(
            parse_store("broken-memory:reap-ignores-limit"),
            Ok(StoreSpec::Broken(Flaw::ReapIgnoresLimit))
        );
        assert_eq!(
            parse_store("broken-memory:old-clock-rule"),
            Ok(StoreSpec::Broken(Flaw::OldClockRule))
        );
        assert_eq!(
            parse_store("memory+native-expiry:"),
            Ok(StoreSpec::MemoryNativeExpiry)
        );
        assert_eq!(
            parse_store("postgres://u@localhost/db"),
            Ok(StoreSpec::Postgres("postgres://u@localhost/db".into()))
        );
        assert_eq!(
            parse_store("postgresql://u:secret@db:5433/x")
                .unwrap()
                .label(),
            "postgresql://u:***@db:5433/x"
        );
        assert_eq!(redact("postgres://u@h/db"), "postgres://u@h/db");
        for (bad, says) in [
            ("mysql://localhost", "unknown store scheme `mysql:`"),
            ("localhost", "is not a store URL"),
            ("sled:", "needs a directory"),
            ("memory:x", "takes no path"),
            ("postgres://", "names no server"),
            ("broken-memory:nope", "unknown planted bug"),
        ] {
            let e = parse_store(bad).unwrap_err().0;
            assert!(e.contains(says), "{bad}: {e}");
            assert!(!e.contains('\n'), "{bad}: not one line: {e}");
        }
    }

    #[test]
    fn durations_format() {
        assert_eq!(fmt_duration(Duration::from_micros(420)), "0.42 ms");
        assert_eq!(fmt_duration(Duration::from_micros(12_345)), "12.3 ms");
        assert_eq!(fmt_duration(Duration::from_millis(1_200)), "1.20 s");
    }
}
