//! Errors of a run that are not verdicts: invalid input (the scenario asks for something the
//! kernel would refuse with `BUG()`, or that the simulator cannot build), a recorded decision
//! list that no longer fits, or a failure of the CPU model itself.
//!
//! Invalid input always names its [`Subject`] — the part of the scenario that is wrong — so
//! that the layer that read the scenario (a file, command-line flags) can point at the line
//! or the flag it came from.

use std::fmt;

use thiserror::Error;

/// The part of a scenario an invalid-input error is about. The scenario loaders map each
/// subject to the file field or the command-line flag that set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Subject {
    /// The vCPU count.
    Cpus,
    /// The protocol version.
    Protocol,
    /// The mutants.
    Mutants,
    /// A custom patcher program.
    Program,
    /// The tick budget.
    Ticks,
    /// The finite-guest iteration limit.
    Iterations,
    /// The drain steps after the patcher finished.
    Drain,
    /// The fetch model.
    Fetch,
    /// The workload (its kind, sites, placement or options) — or its combination with the
    /// protocol, which cannot patch it.
    Workload,
    /// The workload's patch rounds.
    Rounds,
    /// The workload's number of sites.
    Sites,
    /// Where the workload's site sits.
    Placement,
    /// The unsafe multi-instruction override.
    UnsafeMultiInsn,
    /// The `i`-th kprobe the scenario registers (0-based, in file order; a workload's own
    /// loop-head kprobe comes after them).
    Kprobe(usize),
    /// A recorded decision list.
    Decisions,
    /// The kernel configuration (`[kernel]`).
    Kernel,
    /// The `i`-th site the scenario declares (`[[sites]]`, 0-based).
    Site(usize),
    /// The scenario's own code block (`[code]`).
    Code,
    /// `[protocol] source`: the C file of a compiled protocol.
    ProtocolSource,
    /// `[interrupts]`.
    Interrupts,
    /// `[memory] model`: the memory model of the compiled protocol's kernel data.
    Memory,
}

impl Subject {
    /// The scenario-file key of the subject (`kprobes` for a kprobe).
    pub fn key(self) -> &'static str {
        match self {
            Subject::Cpus => "cpus",
            Subject::Protocol => "protocol",
            Subject::Mutants => "mutants",
            Subject::Program => "program",
            Subject::Ticks => "ticks",
            Subject::Iterations => "iterations",
            Subject::Drain => "drain",
            Subject::Fetch => "fetch",
            Subject::Workload => "workload",
            Subject::Rounds => "workload.rounds",
            Subject::Sites => "workload.sites",
            Subject::Placement => "workload.site",
            Subject::UnsafeMultiInsn => "unsafe_multi_insn",
            Subject::Kprobe(_) => "kprobes",
            Subject::Decisions => "decisions",
            Subject::Kernel => "kernel",
            Subject::Site(_) => "sites",
            Subject::Code => "code",
            Subject::ProtocolSource => "protocol.source",
            Subject::Interrupts => "interrupts",
            Subject::Memory => "memory.model",
        }
    }
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Kprobe(i) => write!(f, "kprobes[{i}]"),
            Subject::Site(i) => write!(f, "sites[{i}]"),
            other => f.write_str(other.key()),
        }
    }
}

/// Why a run could not be carried out.
#[derive(Debug, Error)]
pub enum SimError {
    /// The scenario is invalid: what is wrong, and which part of the scenario it concerns.
    #[error("{subject}: {message}")]
    Invalid {
        /// The part of the scenario at fault.
        subject: Subject,
        /// What is wrong with it.
        message: String,
    },
    /// A recorded decision list does not fit this run (the simulator or scenario changed).
    #[error("stale decision list: {0}")]
    StaleDecisions(String),
    /// The CPU model failed (a simulator bug, not a guest fault).
    #[error(transparent)]
    Cpu(#[from] cpu_model::CpuError),
    /// The simulator contradicted itself (a run that did not repeat bit for bit): a bug.
    #[error("internal: {0}")]
    Internal(String),
}

impl SimError {
    /// Invalid input about `subject`.
    pub fn invalid(subject: Subject, message: impl Into<String>) -> Self {
        SimError::Invalid { subject, message: message.into() }
    }
}
