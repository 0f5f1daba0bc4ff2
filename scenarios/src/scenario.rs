//! A scenario: everything one run needs — workload and parameters, the run configuration
//! (vCPUs, protocol, mutants, fetch model, budget), the strategy and the seed — and the
//! function that runs it.

use sim_core::sched::Strategy;
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

    /// Runs the scenario with `decisions` (seeded or recorded).
    pub fn run_with(&self, decisions: Decisions) -> Result<Outcome, SimError> {
        self.config.validate()?;
        let mut image = self.workload.build(self.config.cpus)?;
        image.kprobes.extend(self.kprobes.iter().copied());
        let mut scheduler = self.strategy.scheduler();
        sim_core::run(&self.config, image, scheduler.as_mut(), decisions)
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
