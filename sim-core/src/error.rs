//! Errors of a run that are not verdicts: bad input (the scenario asks for something the
//! kernel would refuse with `BUG()`, or that the simulator cannot build), a recorded decision
//! list that no longer fits, or a failure of the CPU model itself.

use thiserror::Error;

/// Why a run could not be carried out.
#[derive(Debug, Error)]
pub enum SimError {
    /// The scenario is invalid; the message names the offending parameter.
    #[error("{0}")]
    BadInput(String),
    /// A recorded decision list does not fit this run (the simulator or scenario changed).
    #[error("stale decision list: {0}")]
    StaleDecisions(String),
    /// The CPU model failed (a simulator bug, not a guest fault).
    #[error(transparent)]
    Cpu(#[from] cpu_model::CpuError),
}
