//! # sim-core — the pokesim machine
//!
//! A run is a pure function `run(scenario, decisions) -> outcome` (DESIGN.md §2.1). This crate
//! holds everything between the vCPUs of `cpu-model` and the file formats and command line of
//! `scenarios`:
//! - [`text`]: the text truth and its store log (what the patcher wrote, when);
//! - [`decision`]: the decision source (ChaCha-seeded or a recorded list) — every choice of a
//!   run goes through it;
//! - [`sched`]: scheduling strategies over the enabled events, one per module;
//! - [`patcher`] and [`handler`]: the patching CPU and the INT3 handler as step machines, the
//!   kernel code of each protocol version spelled out as operations and micro-steps;
//! - [`protocol`]: the catalogue of protocol versions and mutants;
//! - [`ipi`]: IPI broadcast, delivery and acknowledgement (`on_each_cpu(do_sync_core, …, 1)`);
//! - [`oracle`]: the seven oracles of DESIGN.md §2.7 and the violations they report;
//! - [`machine`]: the run loop that ties them together; [`outcome`] and [`trace`]: its results.
//! - [`search`]: complete state-space search; [`footprint`]: what each step reads and writes of
//!   the shared memory, for its partial-order reduction.

pub mod applicability;
mod batching;
pub mod compiled;
pub mod config;
pub mod decision;
pub mod driver;
pub mod emulate;
pub mod error;
pub mod event;
pub mod footprint;
pub mod handler;
pub mod interrupt;
pub mod ipi;
pub mod kconfig;
pub mod kernel_image;
pub mod machine;
pub mod oracle;
pub mod outcome;
pub mod patcher;
pub mod patching;
pub mod plan;
pub mod program;
pub mod protocol;
pub mod round;
pub mod sched;
pub mod search;
pub mod shrink;
pub mod text;
pub mod trace;
pub mod workload;

pub use config::{Observe, RunConfig, Stepping};
pub use decision::{Decision, Decisions, Recorded};
pub use error::{SimError, Subject};
pub use kconfig::KernelConfig;
pub use machine::{run, Machine};
pub use oracle::{Violation, ViolationKind};
pub use outcome::{Outcome, Stats, Verdict};
pub use plan::Plan;
pub use protocol::{Mutant, Protocol};
pub use round::Round;
pub use workload::{GuestImage, Invariant, Kprobe, PatchAction, PokeRequest, SiteOwner};

pub use cpu_model::{FetchModel, FetchUnit, Staleness, StoreGranularity};

/// Gives a closed set with `ALL` and `name()` its `Display` (the name, padded) and its
/// `FromStr` (by name through [`parse_name`]; `what` names the set in the error).
#[macro_export]
macro_rules! named_set {
    ($t:ty, $what:expr) => {
        impl ::std::fmt::Display for $t {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.pad(self.name())
            }
        }

        impl ::std::str::FromStr for $t {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                $crate::parse_name($what, s, &<$t>::ALL, <$t>::name)
            }
        }
    };
}

/// Parses one of a closed set of names: `Err` says which `what` was unknown and lists the
/// valid names (every name-based `FromStr` of the catalogue goes through here).
pub fn parse_name<T: Copy>(what: &str, s: &str, all: &[T], name: impl Fn(T) -> &'static str) -> Result<T, String> {
    all.iter().copied().find(|&v| name(v) == s).ok_or_else(|| {
        let names: Vec<&str> = all.iter().map(|&v| name(v)).collect();
        format!("unknown {what} '{s}' (valid: {})", names.join(", "))
    })
}
