//! Shared pieces of pokesim's integration tests: proptest strategies over scenarios and small
//! helpers to run them. The tests themselves are in `tests/`.

use std::path::Path;

use cpu_model::FetchModel;
use proptest::prelude::*;
use proptest::test_runner::TestCaseError;
use scenarios::workload::{SitePlacement, WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::sched::Strategy as SchedStrategy;
use sim_core::{Mutant, Outcome, Protocol, RunConfig};

/// The number of proptest cases: `PROPTEST_CASES` if set (as proptest's own default config
/// reads it), else `default`.
pub fn cases(default: u32) -> u32 {
    std::env::var("PROPTEST_CASES").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default)
}

/// Seeds per campaign in a test: `POKESIM_RUNS` if set (a nightly job raises it), else
/// `default`. A set value that is not a positive number panics: a typo must not silently
/// shorten a campaign.
pub fn runs(default: u64) -> u64 {
    match std::env::var("POKESIM_RUNS") {
        Err(std::env::VarError::NotPresent) => default,
        Ok(v) => match v.trim().parse::<u64>() {
            Ok(n) if n >= 1 => n,
            _ => panic!("POKESIM_RUNS='{v}' is not a positive number of runs"),
        },
        Err(e) => panic!("POKESIM_RUNS: {e}"),
    }
}

/// A scenario on `ftrace` with the given parameters.
pub fn ftrace(
    protocol: Protocol,
    mutants: &[Mutant],
    cpus: usize,
    seed: u64,
    site: SitePlacement,
    preset: &str,
) -> Scenario {
    Scenario {
        workload: WorkloadSpec { site, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
        config: RunConfig {
            cpus,
            protocol,
            mutants: mutants.to_vec(),
            fetch: FetchModel::preset(preset).expect("known preset"),
            ..RunConfig::default()
        },
        strategy: SchedStrategy::Random,
        seed,
        kprobes: Vec::new(),
        custom: None,
    }
}

/// The property every protocol must satisfy: a run finds no violation. On a violation the
/// failure message names the artifact written for this case (under `artifacts`) and the
/// command that replays it — for the case proptest finally reports, that is the shrunk one.
/// (The library's own property, [`pokesim::arbitrary::no_violation_in`].)
pub fn no_violation(s: &Scenario, artifacts: &Path) -> Result<(), TestCaseError> {
    pokesim::arbitrary::no_violation_in(s, artifacts)
}

/// Runs a scenario, panicking on simulator errors (not on violations).
pub fn run(s: &Scenario) -> Outcome {
    s.run().unwrap_or_else(|e| panic!("{}: {e}", s.label()))
}

/// Site placements: the named ones (aligned, crossing 16, crossing 64, crossing a page) and
/// any offset within a line.
pub fn placement() -> impl Strategy<Value = SitePlacement> {
    prop_oneof![
        3 => proptest::sample::select(SitePlacement::NAMED.to_vec()),
        1 => (0u8..64).prop_map(SitePlacement::LineOffset),
    ]
}

/// Fetch presets.
pub fn preset() -> impl Strategy<Value = &'static str> {
    proptest::sample::select(FetchModel::PRESETS.to_vec())
}

/// Generated ftrace scenarios for `protocol` + `mutants`: 2–8 vCPUs, any seed below 2^32,
/// any placement, any preset.
pub fn scenario(protocol: Protocol, mutants: Vec<Mutant>) -> impl Strategy<Value = Scenario> {
    (2usize..=8, 0u64..(1 << 32), placement(), preset())
        .prop_map(move |(cpus, seed, site, preset)| ftrace(protocol, &mutants, cpus, seed, site, preset))
}
