//! The `check`-style helpers: run a campaign of seeds from a test and fail the test — with
//! the failure artifact written and the command that replays it — when the outcome is not
//! the expected one. The campaign is `pokesim explore`'s ([`crate::explore`]), so the seed a
//! test reports is the seed the command line finds.

use std::path::{Path, PathBuf};

use scenarios::artifact::Artifact;
use scenarios::campaign::CampaignResult;
use scenarios::entry::Expectation;
use scenarios::Scenario;
use sim_core::{Outcome, Verdict, Violation};

use crate::Error;

/// Seeds a check runs when `POKESIM_RUNS` is not set.
pub const DEFAULT_RUNS: u64 = 64;

/// The campaign size of a check: `POKESIM_RUNS` if set to a positive number, else `default`.
/// A set but unparsable `POKESIM_RUNS` is an error, not a silent default.
///
/// ```
/// assert!(pokesim::runs(64).unwrap() >= 1);
/// ```
pub fn runs(default: u64) -> Result<u64, Error> {
    match std::env::var("POKESIM_RUNS") {
        Err(std::env::VarError::NotPresent) => Ok(default),
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => Ok(n),
            _ => Err(bad_env("POKESIM_RUNS", &format!("'{v}' is not a positive number of runs"))),
        },
        Err(e) => Err(bad_env("POKESIM_RUNS", &e.to_string())),
    }
}

fn bad_env(name: &str, message: &str) -> Error {
    let origin = scenarios::input::Origin::Default;
    Error::Input(scenarios::input::InputError::at("environment", &origin, name, message))
}

/// Where check artifacts go: `POKESIM_ARTIFACTS` if set, else `pokesim-artifacts` under the
/// current directory (for `cargo test`, the crate's directory).
pub(crate) fn artifact_dir() -> PathBuf {
    std::env::var_os("POKESIM_ARTIFACTS").map_or_else(|| PathBuf::from("pokesim-artifacts"), PathBuf::from)
}

/// Writes the artifact of a violating run under `dir`; returns its path (if written) and the
/// lines a failure message adds: the artifact and the replay command, or why no artifact could
/// be written.
pub(crate) fn write_artifact(
    dir: &Path,
    scenario: &Scenario,
    outcome: &Outcome,
    v: &Violation,
) -> (Option<PathBuf>, String) {
    let path = Artifact::default_path(dir, scenario, v);
    let saved = Artifact::new(&scenario.file_label(), scenario, outcome)
        .ok_or_else(|| "the run kept no decisions".to_string())
        .and_then(|a| scenarios::output::ensure_dir(dir).and_then(|()| a.save(&path)).map_err(|e| e.to_string()));
    match saved {
        Ok(()) => {
            let lines = format!("\n  artifact:  {}\n  reproduce: pokesim replay {}", path.display(), path.display());
            (Some(path), lines)
        }
        Err(e) => (None, format!("\n  (artifact not written to {}: {e})", path.display())),
    }
}

/// Why a check failed: what the campaign established, and where the evidence is.
#[derive(Debug)]
pub struct CheckFailure {
    /// The campaign's result (its violating run, if one was found, with decisions); `None`
    /// when the simulator failed before a result.
    pub result: Option<CampaignResult>,
    /// The artifact written for the violating run.
    pub artifact: Option<PathBuf>,
    /// What the failure message says.
    pub message: String,
}

impl std::fmt::Display for CheckFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

/// Runs [`runs`]`(`[`DEFAULT_RUNS`]`)` seeds of `scenario` from its seed and panics unless
/// every run passes. On a violation the panic message names the seed, the violation, the
/// artifact written and the command that replays it.
///
/// ```should_panic
/// use pokesim::{Mutant, Protocol};
///
/// let s = pokesim::scenario("ftrace").protocol(Protocol::Linux616).mutant(Mutant::NoInt3).build().unwrap();
/// pokesim::check(&s); // panics: "... torn-fetch ... reproduce: pokesim replay ..."
/// ```
pub fn check(scenario: &Scenario) {
    check_expect(scenario, Expectation::Pass);
}

/// Like [`check`], but the campaign must show `expect`: a pass, or a violation of one of the
/// given kinds (then finding none fails the check).
///
/// ```
/// use pokesim::{Expectation, Mutant, Protocol, ViolationKind};
///
/// let s = pokesim::scenario("ftrace").protocol(Protocol::Linux616).mutant(Mutant::NoInt3).build().unwrap();
/// pokesim::check_expect(&s, Expectation::violation(ViolationKind::TornFetch));
/// ```
pub fn check_expect(scenario: &Scenario, expect: Expectation) {
    let runs = runs(DEFAULT_RUNS).unwrap_or_else(|e| panic!("pokesim check: {e}"));
    if let Err(f) = try_check(scenario, runs, expect) {
        panic!("{f}");
    }
}

/// The check without the panic: `Ok` with the campaign's result when it shows `expect`,
/// `Err` with the evidence otherwise. Simulator errors are failures too (never a pass).
///
/// ```
/// use pokesim::{Expectation, Mutant, Protocol};
///
/// let s = pokesim::scenario("ftrace").protocol(Protocol::Linux55).mutant(Mutant::NoInt3).build().unwrap();
/// let failure = pokesim::try_check(&s, 16, Expectation::Pass).unwrap_err();
/// assert!(failure.artifact.as_ref().is_some_and(|p| p.is_file()));
/// assert!(failure.message.contains("reproduce: pokesim replay"));
/// ```
pub fn try_check(scenario: &Scenario, runs: u64, expect: Expectation) -> Result<CampaignResult, Box<CheckFailure>> {
    let result = match crate::explore(scenario, runs) {
        Ok(r) => r,
        Err(e) => return Err(Box::new(failure_without_run(scenario, runs, &e))),
    };
    let kind = result.found.as_ref().and_then(|f| f.outcome.violation()).map(|v| v.kind);
    if expect.met_by(kind) && result.verdict() != Verdict::BudgetExhausted {
        return Ok(result);
    }
    Err(Box::new(explain(scenario, result, expect)))
}

fn failure_without_run(scenario: &Scenario, runs: u64, e: &Error) -> CheckFailure {
    CheckFailure {
        result: None,
        artifact: None,
        message: format!("pokesim check {} ({runs} runs): {e}", scenario.label()),
    }
}

fn explain(scenario: &Scenario, result: CampaignResult, expect: Expectation) -> CheckFailure {
    let head = format!(
        "pokesim check {} (cpus={}, seeds {}..{}, expected {expect})",
        scenario.label(),
        scenario.config.cpus,
        scenario.seed,
        scenario.seed.wrapping_add(result.runs)
    );
    let Some(found) = &result.found else {
        let what = match result.verdict() {
            Verdict::BudgetExhausted => {
                format!("{} runs spent their tick budget (no verdict); raise .ticks()", result.exhausted)
            }
            _ => format!("all {} runs passed", result.runs),
        };
        return CheckFailure { message: format!("{head}: {what}"), artifact: None, result: Some(result) };
    };
    let Some(v) = found.outcome.violation() else {
        return CheckFailure {
            message: format!("{head}: a violating run without a violation"),
            artifact: None,
            result: Some(result),
        };
    };
    let (artifact, evidence) = write_artifact(&artifact_dir(), &found.scenario, &found.outcome, v);
    let message = format!("{head}: seed {}: {v}{evidence}", found.scenario.seed);
    CheckFailure { result: Some(result), artifact, message }
}
