//! `leasehold check --simulate`: the seeded fault/skew/clock-step simulation of
//! [`leasehold_testkit::simulate`] against any store the CLI can open, one fresh store per seed.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use leasehold::{MemoryStore, Store, Timestamp};
use leasehold_conformance::StoreFactory;
use leasehold_conformance::fallible;
use leasehold_testkit::broken::Broken;
use leasehold_testkit::simulate::{SimConfig, SimFailure, SimReport};

use crate::{CheckArgs, ConfigError, EXIT_FAILED, EXIT_OK, EXIT_USAGE, Format, StoreSpec};
use crate::{fresh_postgres, fresh_sled, runtime, store_spec};

/// What `--simulate` found: a report per passing seed, and the first failure if any.
#[derive(Debug)]
pub struct SimOutcome {
    /// The store, as reports name it.
    pub store: String,
    /// Reports of the seeds that passed, in order.
    pub passed: Vec<SimReport>,
    /// The first failing seed's failure (the run stops there).
    pub failure: Option<SimFailure>,
}

/// Runs seeds `args.seed ..= args.seed + args.seeds - 1` against fresh stores.
pub fn simulate(args: &CheckArgs) -> Result<SimOutcome, ConfigError> {
    if args.format == Format::Json {
        return Err(ConfigError(
            "--format json is not available with --simulate; the report is text".to_owned(),
        ));
    }
    if args.seeds == 0 || args.steps == 0 {
        return Err(ConfigError(
            "--seeds and --steps must be at least 1".to_owned(),
        ));
    }
    let spec = store_spec(args)?;
    if spec == StoreSpec::MemoryNativeExpiry {
        return Err(ConfigError(
            "--simulate is not available for memory+native-expiry:; the simulation runs its own \
             clocks, and this store expires keys on the system clock"
                .to_owned(),
        ));
    }
    let label = spec.label();
    runtime()?.block_on(async { with_factory!(&spec, factory => run(&label, factory, args).await) })
}

async fn run<F: StoreFactory>(
    label: &str,
    factory: &F,
    args: &CheckArgs,
) -> Result<SimOutcome, ConfigError> {
    let mut outcome = SimOutcome {
        store: label.to_owned(),
        passed: Vec::new(),
        failure: None,
    };
    for seed in args.seed..args.seed.saturating_add(args.seeds) {
        let store = factory
            .make()
            .await
            .map_err(|e| ConfigError(format!("cannot use store {label}: {e}")))?;
        let store: Arc<dyn Store> = Arc::new(store);
        let mut config = SimConfig::new(seed).steps(args.steps);
        if let Some(start) = start_after_store_clock(store.as_ref()).await? {
            config = config.start(start);
        }
        match leasehold_testkit::simulate::simulate(store, config).await {
            Ok(report) => {
                eprintln!("seed {seed}: passed");
                outcome.passed.push(report);
            }
            Err(failure) => {
                outcome.failure = Some(failure);
                break;
            }
        }
    }
    Ok(outcome)
}

/// How far ahead of a store's own clock the virtual clocks start: more than any run lasts in
/// real time, and more than any node's skew or clock step, so the store's clock never overtakes
/// a caller's during a run (the model judges at the callers' clocks; the store's clock rules
/// are the conformance suite's `store_time` cases).
const AHEAD_OF_STORE: std::time::Duration = std::time::Duration::from_secs(24 * 3600);

/// Where the virtual clocks start on a store with a clock of its own (a database server's):
/// [`AHEAD_OF_STORE`] past the store's time, so no caller is ever behind it (the store would
/// judge the run's sessions long expired). `None`: the default start.
async fn start_after_store_clock(store: &dyn Store) -> Result<Option<Timestamp>, ConfigError> {
    if !store.capabilities().server_clock {
        return Ok(None);
    }
    let clock = store
        .store_clock()
        .await
        .map_err(|e| ConfigError(format!("cannot read the store's clock: {e}")))?;
    Ok(clock.map(|t| t.saturating_add(AHEAD_OF_STORE)))
}

/// `leasehold check --simulate`: runs, prints each report (or the failure, with the seed that
/// replays it) and a summary line `N passed, N failed`.
pub(crate) fn main(args: &CheckArgs) -> ExitCode {
    let outcome = match simulate(args) {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let mut out = std::io::stdout().lock();
    let written = (|| {
        writeln!(out, "store: {}", outcome.store)?;
        for report in &outcome.passed {
            writeln!(out, "{report}")?;
        }
        if let Some(failure) = &outcome.failure {
            writeln!(out, "{failure}")?;
        }
        let failed = usize::from(outcome.failure.is_some());
        writeln!(out, "{} passed, {failed} failed", outcome.passed.len())?;
        out.flush()
    })();
    if let Err(e) = written {
        eprintln!("error: cannot write the report: {e}");
        return ExitCode::from(EXIT_USAGE);
    }
    ExitCode::from(if outcome.failure.is_none() {
        EXIT_OK
    } else {
        EXIT_FAILED
    })
}
