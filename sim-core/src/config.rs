//! The run parameters that are not part of the guest image: how many vCPUs, which protocol
//! and mutants, which fetch model, the step budget.

use cpu_model::FetchModel;

use crate::program::OpTemplate;
use crate::protocol::{Mutant, Protocol};
use crate::SimError;

/// The largest vCPU count a run accepts (one bit per vCPU in the IPI masks of real kernels
/// is not the limit here; this bounds memory and keeps runs meaningful).
pub const MAX_CPUS: usize = 64;

/// Parameters of one run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunConfig {
    /// Number of vCPUs running the guest (1..=64).
    pub cpus: usize,
    /// Protocol version of the patcher and handler.
    pub protocol: Protocol,
    /// Mutants applied to the protocol.
    pub mutants: Vec<Mutant>,
    /// Instruction-fetch model.
    pub fetch: FetchModel,
    /// Tick budget: a run whose patcher has not finished by then is a liveness violation.
    pub max_ticks: u64,
    /// Guest steps every vCPU runs after the patcher finished (the final-image check).
    pub drain_steps: u64,
    /// Keep every trace event in the outcome (for `pokesim trace`); the hash is always kept.
    pub keep_trace: bool,
    /// Allow replacing more than one instruction (bug B2), which the kernel refuses.
    pub unsafe_multi_insn: bool,
    /// A custom patcher program (one batch's operations), replacing the protocol's own; the
    /// protocol still chooses the handler and the `text_poke_loc_init` rules.
    pub program: Option<Vec<OpTemplate>>,
    /// Record a state hash after every tick (for `replay --check-determinism`).
    pub step_hashes: bool,
    /// Record a path-independent hash of the whole machine after every tick (exhaustive
    /// search counts distinct states with it; it reads every register, so it is slow).
    pub state_hashes: bool,
    /// Each vCPU stops after this many passes through its loop (it still takes IPIs). Finite
    /// guests make exhaustive search meaningful; `None` loops until the patcher is done.
    pub max_iterations: Option<u64>,
}

impl Default for RunConfig {
    fn default() -> Self {
        Self {
            cpus: 2,
            protocol: Protocol::Seed,
            mutants: Vec::new(),
            fetch: FetchModel::PESSIMISTIC,
            max_ticks: 1_000_000,
            drain_steps: 32,
            keep_trace: false,
            unsafe_multi_insn: false,
            program: None,
            step_hashes: false,
            state_hashes: false,
            max_iterations: None,
        }
    }
}

impl RunConfig {
    /// Rejects impossible parameters with a message naming the field.
    pub fn validate(&self) -> Result<(), SimError> {
        if self.cpus == 0 || self.cpus > MAX_CPUS {
            return Err(SimError::BadInput(format!("cpus: {} is out of range (1..={MAX_CPUS})", self.cpus)));
        }
        if self.max_iterations == Some(0) {
            return Err(SimError::BadInput("iterations: must be at least 1".into()));
        }
        if self.max_ticks == 0 {
            return Err(SimError::BadInput("steps: the tick budget must be at least 1".into()));
        }
        if let cpu_model::Staleness::Bounded(0) = self.fetch.staleness {
            return Err(SimError::BadInput("staleness: a bound must be at least 1 step".into()));
        }
        if let Some(p) = &self.program {
            crate::program::validate(p)?;
            if !self.mutants.is_empty() {
                return Err(SimError::BadInput("mutants: a custom program cannot also take mutants".into()));
            }
        }
        for m in &self.mutants {
            if !m.applies_to(self.protocol) {
                return Err(SimError::BadInput(format!(
                    "mutant '{}' does not apply to protocol '{}'",
                    m.name(),
                    self.protocol.name()
                )));
            }
        }
        Ok(())
    }
}
