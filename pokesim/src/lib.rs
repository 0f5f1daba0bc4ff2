//! # pokesim — the library
//!
//! pokesim runs real x86-64 machine code on several emulated vCPUs while a patcher rewrites it
//! with the Linux kernel's INT3 protocol (`text_poke_bp()` and its successors), under a seeded
//! scheduler that decides every interleaving; oracles report any torn instruction, unclaimed
//! INT3, handler fault or broken workload invariant. This crate is the one documented entry
//! point for using it from Rust — from your own `cargo test`:
//!
//! - [`scenario`] builds a scenario in code (every workload and variant, protocol
//!   version, mutant, fetch model, kernel option, strategy, seed and budget); [`load`] reads a
//!   scenario file;
//! - [`run`] runs one seed, [`explore`] a campaign of seeds (the same campaign `pokesim
//!   explore` runs, with the same result);
//! - [`check`] and [`check_expect`] run a campaign and panic on an unexpected outcome with the
//!   artifact written and the command that replays it — the way shuttle's `check_random` and
//!   loom's `model` feel;
//! - [`arbitrary::scenarios`] is a proptest `Strategy` over scenarios with a knob for each
//!   dimension, and [`arbitrary::no_violation`] the property most tests state (the module is
//!   `arbitrary`, not `strategy`: a [`Strategy`] here is the scheduler's, random or PCT).
//!
//! Campaign sizes follow `POKESIM_RUNS` (see [`runs`]); proptest's case count follows
//! `PROPTEST_CASES`, as proptest itself reads it.
//!
//! ```
//! use pokesim::{Protocol, Verdict};
//!
//! let scenario = pokesim::scenario("ftrace").protocol(Protocol::Linux616).cpus(2).rounds(2).build()?;
//! let outcome = pokesim::run(&scenario)?;
//! assert_eq!(outcome.verdict, Verdict::Pass);
//! # Ok::<(), pokesim::Error>(())
//! ```

#![deny(missing_docs)]

pub mod arbitrary;
mod builder;
mod check;

pub use builder::ScenarioBuilder;
pub use check::{check, check_expect, runs, try_check, CheckFailure, DEFAULT_RUNS};

pub use cpu_model::{FetchModel, FetchUnit, StoreGranularity};
pub use proptest;
pub use scenarios::campaign::{CampaignResult, Found};
pub use scenarios::entry::{Expectation, ScenarioFile};
pub use scenarios::input::InputError;
pub use scenarios::workload::{ForeignKprobe, SiteOrder, SitePlacement, WorkloadKind};
pub use scenarios::Scenario;
pub use sim_core::sched::Strategy;
pub use sim_core::{KernelConfig, Mutant, Outcome, Protocol, SimError, Stats, Verdict, Violation, ViolationKind};

use scenarios::campaign::{Campaign, Shard};

/// What can go wrong before a verdict: a scenario that does not validate (named by the builder
/// method or the file, line and field that gave the bad value), or a simulator failure.
#[derive(Debug)]
pub enum Error {
    /// The scenario as given is invalid.
    Input(InputError),
    /// The simulator refused or failed (a scenario it cannot run, or a pokesim bug).
    Sim(SimError),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Error::Input(e) => e.fmt(f),
            Error::Sim(e) => e.fmt(f),
        }
    }
}

impl std::error::Error for Error {}

impl From<InputError> for Error {
    fn from(e: InputError) -> Self {
        Error::Input(e)
    }
}

impl From<SimError> for Error {
    fn from(e: SimError) -> Self {
        Error::Sim(e)
    }
}

/// Starts building a scenario of `workload` (a workload or a named variant such as
/// `ftrace+kprobe`); see [`ScenarioBuilder`].
pub fn scenario(workload: &str) -> ScenarioBuilder {
    ScenarioBuilder::new(workload)
}

/// Reads a scenario file (TOML, as `pokesim run FILE` reads it): the scenario, its `runs` and
/// its `expect`.
///
/// ```
/// let file = pokesim::load(concat!(env!("CARGO_MANIFEST_DIR"), "/../examples/small.toml"))?;
/// assert!(file.runs >= 1);
/// # Ok::<(), pokesim::Error>(())
/// ```
pub fn load(path: impl AsRef<std::path::Path>) -> Result<ScenarioFile, Error> {
    Ok(ScenarioFile::load(path.as_ref())?)
}

/// Runs one seed of `scenario` (its `seed`), keeping the decisions so that a violating
/// outcome can be written as an artifact and replayed.
///
/// ```
/// use pokesim::{Mutant, Protocol, ViolationKind};
///
/// // Linux 5.5's protocol without its INT3: the other vCPUs fetch a half-written instruction.
/// let s = pokesim::scenario("ftrace").protocol(Protocol::Linux55).mutant(Mutant::NoInt3).build()?;
/// let outcome = pokesim::run(&s)?;
/// assert_eq!(outcome.violation().map(|v| v.kind), Some(ViolationKind::TornFetch));
/// # Ok::<(), pokesim::Error>(())
/// ```
pub fn run(scenario: &Scenario) -> Result<Outcome, Error> {
    Ok(scenario.run()?)
}

/// Runs seeds `scenario.seed .. scenario.seed + runs` in parallel, stopping after the batch
/// that holds the first violation: the campaign `pokesim explore` runs, with the same result
/// for any number of worker threads. The violating run, if any, comes back with its decisions.
///
/// ```
/// use pokesim::{Protocol, Verdict};
///
/// let s = pokesim::scenario("static_call").protocol(Protocol::Linux60).rounds(2).build()?;
/// let result = pokesim::explore(&s, 8)?;
/// assert_eq!((result.verdict(), result.runs), (Verdict::Pass, 8));
/// # Ok::<(), pokesim::Error>(())
/// ```
pub fn explore(scenario: &Scenario, runs: u64) -> Result<CampaignResult, Error> {
    let at = Campaign::seeds(scenario);
    Ok(Campaign { scenario_at: &at, runs, shard: Shard::ALL, time: None }.run(&|_| {})?)
}
