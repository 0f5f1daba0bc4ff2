//! The run parameters that are not part of the guest image: how many vCPUs, which protocol
//! and mutants, which fetch model, the step budget — what to simulate; and apart from them
//! what a run records ([`Observe`]).

use cpu_model::FetchModel;

use crate::error::Subject;
use crate::kconfig::KernelConfig;
use crate::program::Step;
use crate::protocol::{Mutant, Protocol};
use crate::SimError;

/// The largest vCPU count a run accepts. Each vCPU is a Unicorn engine (about 1 MiB resident
/// with its 1 MiB translation buffer); past 64 engines their state no longer stays in the
/// caches and a single step costs more with every engine added — in `pokesim bench` raw
/// Unicorn round-robin over 256 engines costs ~3.4× per step what it costs over 4, pokesim
/// ~2.6× — so at 1024 vCPUs a step would cost an order of magnitude more and a run's default
/// budget (which grows with vCPUs) would take minutes. 256 covers the machines of the kernel
/// reports we reproduce at a cost that stays practical; pokesim's own per-tick work does not
/// grow with vCPUs (the enabled set and the drain are kept incrementally).
pub const MAX_CPUS: usize = 256;
/// Most patching clients of one run: the workload's patcher and the kprobes that arm and
/// disarm themselves.
pub(crate) const MAX_CLIENTS: usize = 8;

/// The most scheduling actors ([`crate::sched::actor`]): the vCPUs, the patching clients, and
/// the store buffer of each of their CPUs.
pub(crate) const MAX_ACTORS: usize = 2 * (MAX_CPUS + MAX_CLIENTS);

/// The largest tick budget a run accepts (a budget is a bound on work, not on memory: a run
/// keeps no per-tick state unless it records its decisions or its trace).
pub const MAX_TICKS: u64 = 100_000_000_000;

/// The most drain steps per vCPU a run accepts.
pub const MAX_DRAIN: u64 = 100_000_000;

/// What a run records beyond its verdict, statistics and trace hash (which every run keeps):
/// chosen by the caller (`pokesim trace`, `replay --check-determinism`, exhaustive search),
/// never part of the scenario — the same scenario observed differently is the same run, with
/// the same trace hash.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Observe {
    /// Keep every trace event in the outcome (for `pokesim trace`).
    pub trace: bool,
    /// Record a state hash after every tick (for `replay --check-determinism`).
    pub step_hashes: bool,
    /// Record a path-independent hash of the whole machine after every tick (exhaustive
    /// search counts distinct states with it; it reads every register, so it is slow).
    pub state_hashes: bool,
}

impl Observe {
    /// Records nothing beyond what every run keeps.
    pub const NOTHING: Observe = Observe { trace: false, step_hashes: false, state_hashes: false };
    /// Keeps the trace events.
    pub const TRACE: Observe = Observe { trace: true, ..Observe::NOTHING };
}

/// Parameters of one run: what to simulate (what to record is [`Observe`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Number of vCPUs running the guest (1..=[`MAX_CPUS`]).
    pub cpus: usize,
    /// Protocol version of the patcher and handler.
    pub protocol: Protocol,
    /// The kernel configuration (`CONFIG_KPROBES`, ...).
    pub kernel: KernelConfig,
    /// Mutants applied to the protocol.
    pub mutants: Vec<Mutant>,
    /// Instruction-fetch model.
    pub fetch: FetchModel,
    /// Tick budget: a run whose patcher has not finished by then ends with the verdict
    /// [`crate::Verdict::BudgetExhausted`] — not a violation. `None`: a budget that grows with
    /// the scenario ([`crate::Plan::budget`]).
    pub max_ticks: Option<u64>,
    /// Guest steps every vCPU runs after the patcher finished (the final-image check).
    pub drain_steps: u64,
    /// Allow replacing more than one instruction (bug B2), which the kernel refuses.
    pub unsafe_multi_insn: bool,
    /// A custom patcher program (one batch's operations), replacing the protocol's own; the
    /// protocol still chooses the handler and the `text_poke_loc_init` rules.
    pub program: Option<Vec<Step>>,
    /// Each vCPU stops after this many passes through its loop (it still takes IPIs). Finite
    /// guests make exhaustive search meaningful; `None` loops until the patcher is done.
    pub max_iterations: Option<u64>,
    /// Start each vCPU's workload counters over at every loop head, after the invariant
    /// accepted them (state-space search: a guest that loops forever then has finitely many
    /// states). The guest never reads its counters, so no step changes.
    pub reset_counters: bool,
    /// A protocol compiled from C (`[protocol] source`): the patching client and the INT3
    /// handler run the file's code instead of the Rust model of [`RunConfig::protocol`]
    /// (which still names the version: its batching and its kprobe rules).
    pub compiled: Option<std::sync::Arc<crate::compiled::Compiled>>,
    /// `[interrupts]`: an interrupt source ([`crate::interrupt`]); `None` = no interrupts.
    pub interrupts: Option<crate::interrupt::Interrupts>,
    /// How a patching CPU's own text stores reach its own fetches (`[fetch] own_stores`).
    pub own_stores: crate::interrupt::OwnStores,
    /// The memory model of a compiled protocol's kernel data (DESIGN.md §2.16): `Sc` (every
    /// store visible at once, the default) or `Tso` (per-CPU store buffers drained by
    /// [`crate::event::Event::Drain`] events). The Rust models have no data memory: `Tso` needs
    /// [`RunConfig::compiled`].
    pub memory: cpu_model::MemoryModel,
    /// How a picked guest step runs: alone ([`Stepping::Single`], the default and the meaning
    /// of every recording made before local runs existed), or followed by the vCPU's local
    /// steps in one `emu_start` ([`Stepping::Batched`], DESIGN.md §2.5b).
    pub stepping: Stepping,
}

/// How a scheduled guest step runs (DESIGN.md §2.5b). The choice changes what a decision
/// list means, so a recording says which it was made with.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Stepping {
    /// One guest instruction per scheduling decision.
    #[default]
    Single,
    /// A picked guest step is followed, in the same tick, by every local step of its vCPU that
    /// comes next (`Machine::local_step`: they commute with every other actor's events), run
    /// as one `emu_start` that stops before the first visible instruction.
    Batched,
}

impl Stepping {
    /// The name in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Stepping::Single => "single",
            Stepping::Batched => "batched",
        }
    }
}

impl std::fmt::Display for Stepping {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

impl std::str::FromStr for Stepping {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "single" => Ok(Stepping::Single),
            "batched" => Ok(Stepping::Batched),
            _ => Err(format!("unknown stepping '{s}' (valid: single, batched)")),
        }
    }
}

/// Drain steps per vCPU by default.
pub const DEFAULT_DRAIN: u64 = 32;

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            cpus: 2,
            protocol: Protocol::Seed,
            kernel: KernelConfig::DEFCONFIG,
            mutants: Vec::new(),
            fetch: FetchModel::PESSIMISTIC,
            max_ticks: None,
            drain_steps: DEFAULT_DRAIN,
            unsafe_multi_insn: false,
            program: None,
            max_iterations: None,
            reset_counters: false,
            compiled: None,
            interrupts: None,
            own_stores: crate::interrupt::OwnStores::Serialize,
            memory: cpu_model::MemoryModel::Sc,
            stepping: Stepping::Single,
        }
    }
}

impl RunConfig {
    /// The memory model a run has when its scenario names none: x86-TSO where compiled code
    /// runs (a protocol from C: its kernel data is memory the CPUs load and store), SC for a
    /// Rust model (which has no data memory to buffer). Labels and scenario files name the
    /// model only when it is not this default (DESIGN.md §2.16).
    pub fn default_memory(&self) -> cpu_model::MemoryModel {
        if self.compiled.is_some() {
            cpu_model::MemoryModel::Tso
        } else {
            cpu_model::MemoryModel::Sc
        }
    }

    /// Rejects impossible parameters, naming the part of the scenario at fault.
    pub fn validate(&self) -> Result<(), SimError> {
        let bad = |subject, msg: String| Err(SimError::invalid(subject, msg));
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return bad(Subject::Cpus, format!("{} is out of range (1..={MAX_CPUS})", self.cpus));
        }
        if let Some(k) = self.max_iterations.filter(|&k| k == 0) {
            return bad(Subject::Iterations, format!("{k} is out of range (at least 1)"));
        }
        if let Some(t) = self.max_ticks.filter(|&t| t == 0 || t > MAX_TICKS) {
            return bad(Subject::Ticks, format!("{t} is out of range (1..={MAX_TICKS})"));
        }
        if self.drain_steps > MAX_DRAIN {
            return bad(Subject::Drain, format!("{} is out of range (0..={MAX_DRAIN})", self.drain_steps));
        }
        if let cpu_model::Staleness::Bounded(0) = self.fetch.staleness {
            return bad(Subject::Fetch, "staleness: a bound must be at least 1 step".into());
        }
        if self.stepping == Stepping::Batched && self.interrupts.is_some() {
            return bad(
                Subject::Interrupts,
                "stepping = batched is not built with interrupts: that every state an interrupt taken \
                 inside a local run reaches is still reached is not tested (DESIGN.md §2.5b); use single"
                    .into(),
            );
        }
        if self.memory == cpu_model::MemoryModel::Tso && self.compiled.is_none() {
            return bad(
                Subject::Memory,
                "tso applies to a protocol compiled from C: the Rust model's shared state is Rust-side, not data \
                 memory, and its barriers are explicit steps"
                    .into(),
            );
        }
        if let Some(p) = &self.program {
            crate::program::validate(p)?;
            if !self.mutants.is_empty() {
                return bad(Subject::Mutants, "a custom program cannot also take mutants".into());
            }
        }
        for (i, m) in self.mutants.iter().enumerate() {
            if self.mutants[..i].contains(m) {
                return bad(Subject::Mutants, format!("'{m}' is listed twice"));
            }
            if !m.applies_to(self.protocol) {
                return bad(Subject::Mutants, format!("'{m}' does not apply to protocol '{}'", self.protocol));
            }
        }
        Ok(())
    }
}
