//! Arbitrary scenarios: a proptest [`Strategy`] over scenarios, with a knob for each dimension — workloads,
//! protocol versions, mutants, vCPU counts, site placements, fetch models, kernel options,
//! scheduling strategies, seeds and rounds — and [`no_violation`], the property most tests
//! state. Generated scenarios are valid: a combination the protocol cannot run (a site it
//! cannot patch, a mutant that does not apply to it) is filtered out by the same validation
//! `pokesim run` applies, so a property never sees an input error.
//!
//! ```
//! use pokesim::proptest::prelude::*;
//! use pokesim::{arbitrary, Protocol, WorkloadKind};
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(4))]
//!     // #[test] in your tests; a doctest calls it by hand below
//!     fn linux_6_16_never_tears(s in arbitrary::scenarios()
//!         .protocols([Protocol::Linux616])
//!         .workloads(["ftrace", "static_call"])
//!         .cpus(2..=4)
//!         .rounds(1..=2))
//!     {
//!         arbitrary::no_violation(&s)?;
//!     }
//! }
//! # linux_6_16_never_tears();
//! ```

use std::ops::RangeInclusive;

use proptest::prelude::*;
use proptest::strategy::{BoxedStrategy, NewTree, ValueTree};
use proptest::test_runner::{TestCaseError, TestRunner};
use scenarios::catalogue::{self, Variant};
use scenarios::workload::SitePlacement;
use scenarios::Scenario;
use sim_core::sched::Strategy as Schedule;
use sim_core::{KernelConfig, Mutant, Protocol, RunConfig};

use crate::FetchModel;

/// The knobs of [`scenarios()`]; every dimension defaults to everything pokesim offers
/// (except mutants: none by default, so properties state the real protocols).
#[derive(Clone, Debug)]
pub struct ScenarioStrategy {
    variants: Vec<Variant>,
    protocols: Vec<Protocol>,
    mutant_sets: Vec<Vec<Mutant>>,
    cpus: RangeInclusive<usize>,
    placements: Vec<SitePlacement>,
    fetch: Vec<FetchModel>,
    kernels: Vec<KernelConfig>,
    schedules: Vec<Schedule>,
    seeds: RangeInclusive<u64>,
    rounds: RangeInclusive<u32>,
}

/// Scenarios over every workload variant, protocol version, 2–8 vCPUs, every named site
/// placement, every fetch preset, `CONFIG_KPROBES=y` and `=n`, random and PCT scheduling,
/// seeds below 2³², 1–8 rounds, and no mutant. Narrow it with the knobs.
pub fn scenarios() -> ScenarioStrategy {
    let both = |v: bool| {
        let mut k = KernelConfig::DEFCONFIG;
        k.kprobes = v;
        k
    };
    ScenarioStrategy {
        variants: catalogue::variants()
            .into_iter()
            .filter(|v| v.spec.kind != scenarios::WorkloadKind::Custom)
            .collect(),
        protocols: Protocol::ALL.to_vec(),
        mutant_sets: vec![Vec::new()],
        cpus: 2..=8,
        placements: SitePlacement::NAMED.to_vec(),
        fetch: FetchModel::PRESETS.iter().filter_map(|p| FetchModel::preset(p)).collect(),
        kernels: vec![both(true), both(false)],
        schedules: vec![Schedule::Random, Schedule::Pct { depth: 3 }],
        seeds: 0..=u64::from(u32::MAX),
        rounds: 1..=8,
    }
}

impl ScenarioStrategy {
    /// Only these workloads or variants (`"ftrace"`, `"ftrace+kprobe"`, …). Panics on an
    /// unknown name, naming the known ones (a test's typo must not narrow it to nothing).
    pub fn workloads<'a>(mut self, names: impl IntoIterator<Item = &'a str>) -> Self {
        self.variants = names
            .into_iter()
            .map(|n| catalogue::variant(n).unwrap_or_else(|e| panic!("pokesim strategy: {e}")))
            .collect();
        self
    }

    /// Only these protocol versions.
    pub fn protocols(mut self, protocols: impl IntoIterator<Item = Protocol>) -> Self {
        self.protocols = protocols.into_iter().collect();
        self
    }

    /// Each scenario applies one of these mutant sets (`[vec![]]` for the real protocol).
    pub fn mutant_sets(mut self, sets: impl IntoIterator<Item = Vec<Mutant>>) -> Self {
        self.mutant_sets = sets.into_iter().collect();
        self
    }

    /// Each scenario applies one of these mutants (alone).
    pub fn mutants(self, mutants: impl IntoIterator<Item = Mutant>) -> Self {
        self.mutant_sets(mutants.into_iter().map(|m| vec![m]))
    }

    /// vCPU counts.
    pub fn cpus(mut self, cpus: RangeInclusive<usize>) -> Self {
        self.cpus = cpus;
        self
    }

    /// Site placements.
    pub fn placements(mut self, placements: impl IntoIterator<Item = SitePlacement>) -> Self {
        self.placements = placements.into_iter().collect();
        self
    }

    /// Fetch models (`FetchModel::preset("block16")`, …).
    pub fn fetch(mut self, models: impl IntoIterator<Item = FetchModel>) -> Self {
        self.fetch = models.into_iter().collect();
        self
    }

    /// Kernel configurations.
    pub fn kernels(mut self, kernels: impl IntoIterator<Item = KernelConfig>) -> Self {
        self.kernels = kernels.into_iter().collect();
        self
    }

    /// Scheduling strategies.
    pub fn schedules(mut self, schedules: impl IntoIterator<Item = Schedule>) -> Self {
        self.schedules = schedules.into_iter().collect();
        self
    }

    /// Seeds.
    pub fn seeds(mut self, seeds: RangeInclusive<u64>) -> Self {
        self.seeds = seeds;
        self
    }

    /// Patch rounds.
    pub fn rounds(mut self, rounds: RangeInclusive<u32>) -> Self {
        self.rounds = rounds;
        self
    }

    fn boxed_inner(&self) -> BoxedStrategy<Scenario> {
        let layout = (pick(&self.variants, "workload"), self.rounds.clone(), pick(&self.placements, "placement"));
        let config = (
            pick(&self.protocols, "protocol"),
            pick(&self.mutant_sets, "mutant set"),
            self.cpus.clone(),
            pick(&self.fetch, "fetch model"),
            pick(&self.kernels, "kernel"),
        );
        let run = (pick(&self.schedules, "schedule"), self.seeds.clone());
        (layout, config, run)
            .prop_map(|((variant, rounds, site), (protocol, mutants, cpus, fetch, kernel), (strategy, seed))| {
                let mut workload = variant.spec;
                workload.rounds = rounds;
                workload.site = site;
                let config = RunConfig { cpus, protocol, mutants, fetch, kernel, ..RunConfig::default() };
                Scenario { workload, config, strategy, seed, kprobes: Vec::new(), custom: None }
            })
            .prop_filter("a combination the protocol cannot run", |s| s.plan().is_ok())
            .boxed()
    }
}

/// One of `values`; a knob set to nothing is a test's mistake, said so at once.
fn pick<T: Clone + std::fmt::Debug + 'static>(values: &[T], what: &str) -> proptest::sample::Select<T> {
    assert!(!values.is_empty(), "pokesim strategy: no {what} to choose from");
    proptest::sample::select(values.to_vec())
}

impl Strategy for ScenarioStrategy {
    type Tree = Box<dyn ValueTree<Value = Scenario>>;
    type Value = Scenario;

    fn new_tree(&self, runner: &mut TestRunner) -> NewTree<Self> {
        self.boxed_inner().new_tree(runner)
    }
}

/// The property every real protocol must satisfy: a run of `scenario` finds no violation. On
/// a violation it fails the case with the artifact written (under `POKESIM_ARTIFACTS`, else
/// `pokesim-artifacts`) and the command that replays it — for the case proptest finally
/// reports, that is the shrunk one. A simulator error fails the case too.
pub fn no_violation(scenario: &Scenario) -> Result<(), TestCaseError> {
    no_violation_in(scenario, &crate::check::artifact_dir())
}

/// [`no_violation`], writing the artifact under `dir`.
pub fn no_violation_in(scenario: &Scenario, dir: &std::path::Path) -> Result<(), TestCaseError> {
    let outcome = scenario.run().map_err(|e| TestCaseError::fail(format!("{}: {e}", scenario.label())))?;
    let Some(v) = outcome.violation() else { return Ok(()) };
    let (_, evidence) = crate::check::write_artifact(dir, scenario, &outcome, v);
    Err(TestCaseError::fail(format!(
        "{} cpus={} site={} fetch={} seed={}: {v}{evidence}",
        scenario.label(),
        scenario.config.cpus,
        scenario.workload.site,
        scenario.config.fetch,
        scenario.seed
    )))
}
