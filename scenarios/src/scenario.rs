//! A scenario: everything one run needs — workload and parameters, the run configuration
//! (vCPUs, protocol, mutants, fetch model, budget), the strategy and the seed — and the
//! function that runs it.

use sim_core::sched::{Scheduler, Strategy};
use sim_core::{Decision, Decisions, Kprobe, Outcome, RunConfig, SimError};

use crate::workload::WorkloadSpec;

/// One run, fully described.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Scenario {
    /// Workload and its parameters.
    pub workload: WorkloadSpec,
    /// Run configuration.
    pub config: RunConfig,
    /// Scheduling strategy.
    pub strategy: Strategy,
    /// Seed of the decision stream.
    pub seed: u64,
    /// Foreign INT3 owners (kprobes) registered at these instructions.
    pub kprobes: Vec<Kprobe>,
}

impl Scenario {
    /// Runs the scenario from its seed.
    pub fn run(&self) -> Result<Outcome, SimError> {
        self.run_with(Decisions::seeded(self.seed))
    }

    /// Runs the scenario answering choices from a recorded list.
    pub fn replay(&self, decisions: Vec<Decision>) -> Result<Outcome, SimError> {
        self.run_with(Decisions::replay(decisions))
    }

    /// Runs the scenario with `decisions` (seeded or recorded) under its own strategy.
    pub fn run_with(&self, decisions: Decisions) -> Result<Outcome, SimError> {
        let mut scheduler = self.strategy.scheduler_for(self.seed, sim_core::sched::pct::DEFAULT_EXPECTED_TICKS);
        self.run_custom(scheduler.as_mut(), decisions, &self.config)
    }

    /// Runs the scenario under `config` (this scenario's, possibly adjusted) with a given
    /// scheduler and decision source.
    pub fn run_custom(
        &self,
        scheduler: &mut dyn Scheduler,
        decisions: Decisions,
        config: &RunConfig,
    ) -> Result<Outcome, SimError> {
        config.validate()?;
        let mut image = self.workload.build(config.cpus)?;
        image.kprobes.extend(self.kprobes.iter().copied());
        sim_core::run(config, image, scheduler, decisions)
    }

    /// A short label: workload, protocol, mutants, fetch model, vCPUs.
    pub fn label(&self) -> String {
        let mut s = format!("{}/{}", self.workload.kind, self.config.protocol);
        for m in &self.config.mutants {
            s.push('+');
            s.push_str(m.name());
        }
        s
    }
}
