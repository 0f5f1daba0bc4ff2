//! A scenario: everything one run needs — workload and parameters, the run configuration
//! (vCPUs, protocol, mutants, fetch model, budget), the strategy, the seed and the kprobes the
//! scenario registers — and the functions that check and run it.
//!
//! A scenario is a pure description: the same scenario with the same decisions is the same
//! run, in any process, whichever command runs it. In particular the PCT scheduler's horizon
//! (the run length it spreads its change points over) is derived from the scenario's plan, not
//! measured, so `run --strategy pct --seed S` repeats what `explore` found at seed S.

use sim_core::sched::{Scheduler, Strategy};
use sim_core::{Decisions, Kprobe, Machine, Observe, Outcome, Plan, Recorded, RunConfig, SimError};

use crate::workload::custom::CustomGuest;
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
    /// The scenario's own sites and code (workload `custom`).
    pub custom: Option<std::sync::Arc<CustomGuest>>,
}

impl Scenario {
    /// Checks everything about the scenario that can be checked without running it — the
    /// configuration, the workload, what the protocol can patch, the kprobes against the
    /// decoded text — and returns the run's plan, which [`Scenario::run_plan`] runs (a plan
    /// runs once: it holds the workload's invariant). Every invalid-input error names its
    /// [`sim_core::Subject`].
    pub fn plan(&self) -> Result<Plan, SimError> {
        self.config.validate()?;
        let image = self.workload.build_with(self.custom.as_deref(), self.config.cpus)?;
        Plan::new(&self.config, image, &self.kprobes)
    }

    /// Runs the scenario from its seed, keeping the decisions (to write an artifact).
    pub fn run(&self) -> Result<Outcome, SimError> {
        self.run_with(Decisions::seeded(self.seed))
    }

    /// Runs the scenario from its seed without keeping its decisions: memory does not grow
    /// with the run's length. [`Scenario::run`] repeats it with the decisions kept.
    pub fn run_unrecorded(&self) -> Result<Outcome, SimError> {
        self.run_with(Decisions::seeded(self.seed).keeping(false))
    }

    /// Replays a recorded decision list strictly: it must fit the run exactly.
    pub fn replay(&self, recorded: Recorded) -> Result<Outcome, SimError> {
        self.run_with(Decisions::replay(recorded))
    }

    /// [`Scenario::replay`], recording what `observe` asks for (the trace, per-tick hashes).
    pub fn replay_observed(&self, recorded: Recorded, observe: Observe) -> Result<Outcome, SimError> {
        self.run_plan(self.plan()?, Decisions::replay(recorded), observe)
    }

    /// Runs the scenario with `decisions` (seeded or recorded) under its own strategy.
    pub(crate) fn run_with(&self, decisions: Decisions) -> Result<Outcome, SimError> {
        self.run_plan(self.plan()?, decisions, Observe::NOTHING)
    }

    /// Runs `plan` (this scenario's, from [`Scenario::plan`]) with `decisions` under the
    /// scenario's strategy, recording what `observe` asks for.
    pub fn run_plan(&self, plan: Plan, decisions: Decisions, observe: Observe) -> Result<Outcome, SimError> {
        let machine = Machine::new(plan, observe)?;
        let mut scheduler = self.strategy.scheduler_for(self.seed, machine.expected_ticks());
        machine.run(scheduler.as_mut(), decisions)
    }

    /// Runs the scenario with a given scheduler and decision source (exhaustive search drives
    /// its own scheduler), recording what `observe` asks for.
    pub(crate) fn run_custom(
        &self,
        scheduler: &mut dyn Scheduler,
        decisions: Decisions,
        observe: Observe,
    ) -> Result<Outcome, SimError> {
        Machine::new(self.plan()?, observe)?.run(scheduler, decisions)
    }

    /// The scenario's name in every output (text, JSON, artifacts, tables, the library's
    /// messages): the workload variant, the protocol, a custom program, the mutants, each
    /// kprobe the scenario registers (`+kprobe@0x400010`, `+kprobe@0x400010x3` for one that
    /// arms and disarms itself 3 times) and the kernel configuration when it is not the
    /// default (`[CONFIG_KPROBES=n]`) — so two scenarios that can behave differently never
    /// print the same name. The fetch model, vCPUs, placement and seed follow it in reports.
    pub fn label(&self) -> String {
        let mut s = format!("{}/{}", self.workload.variant_name(), self.config.protocol);
        if let Some(c) = &self.config.compiled {
            // The protocol as C: the built-in file (`.c`), or the user's file by name.
            match c.builtin {
                true => s.push_str(".c"),
                false => s.push_str(&format!("+c:{}", c.image.source.rsplit('/').next().unwrap_or(&c.image.source))),
            }
        }
        if self.config.program.is_some() {
            s.push_str("+custom-program");
        }
        for m in &self.config.mutants {
            s.push('+');
            s.push_str(m.name());
        }
        for k in &self.kprobes {
            s.push_str(&format!("+kprobe@{:#x}", k.addr));
            if k.cycles > 0 {
                s.push_str(&format!("x{}", k.cycles));
            } else if !k.armed {
                s.push_str("-unarmed");
            }
        }
        if self.config.kernel != sim_core::KernelConfig::DEFCONFIG {
            s.push_str(&format!("[{}]", self.config.kernel));
        }
        if let Some(i) = &self.config.interrupts {
            // `+irq:<cpus>x<budget>` (and the handler when it is not the default).
            s.push_str(&format!("+irq:{}x{}", i.targets, i.budget));
            if i.handler != sim_core::interrupt::IrqHandler::CallSite {
                s.push_str(&format!(":{}", i.handler));
            }
        }
        if self.config.own_stores != sim_core::interrupt::OwnStores::default() {
            s.push_str(&format!("+own-stores={}", self.config.own_stores));
        }
        if self.config.memory != self.config.default_memory() {
            // Only when not the default (tso for a C protocol, sc for a Rust model).
            s.push_str(&format!("[memory={}]", self.config.memory));
        }
        s
    }

    /// [`Scenario::label`] as a file-name part: every character but ASCII letters, digits,
    /// `.`, `_` and `=` becomes `-`.
    pub fn file_label(&self) -> String {
        let label: String = self
            .label()
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '=') { c } else { '-' })
            .collect();
        label.trim_end_matches('-').to_string()
    }
}
