//! Guest workloads (DESIGN.md §2.8). Each builds a [`GuestImage`]: text assembled with
//! iced-x86 at its final addresses, one stack and one counter block per vCPU in the shared
//! data region, the patch rounds, and the workload's invariant.

mod asm;
pub mod ftrace;

use std::fmt;
use std::str::FromStr;

use cpu_model::{Layout, PAGE_SIZE};
use sim_core::{GuestImage, SimError};

/// Where the text starts in every workload.
pub const TEXT_BASE: u64 = 0x0040_0000;
/// Text size: two pages, so a site can cross a page boundary.
pub const TEXT_LEN: u64 = 2 * PAGE_SIZE;
/// Where the data region starts.
pub const DATA_BASE: u64 = 0x0060_0000;

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum WorkloadKind {
    /// ftrace: a function entry NOP5 toggled to `CALL tracer` and back.
    Ftrace,
}

impl WorkloadKind {
    /// Every workload.
    pub const ALL: [WorkloadKind; 1] = [WorkloadKind::Ftrace];

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Ftrace => "ftrace",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            WorkloadKind::Ftrace => {
                "every vCPU loops calling a function whose entry is a 5-byte NOP; the patcher turns it \
                 into CALL tracer and back; guest counters check each pass calls the tracer at most once \
                 and returns to site+5"
            }
        }
    }
}

impl fmt::Display for WorkloadKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for WorkloadKind {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        WorkloadKind::ALL.into_iter().find(|w| w.name() == s).ok_or_else(|| {
            let names: Vec<_> = WorkloadKind::ALL.iter().map(|w| w.name()).collect();
            SimError::BadInput(format!("unknown workload '{s}' (valid: {})", names.join(", ")))
        })
    }
}

/// Where the patched site sits relative to fetch blocks, cache lines and pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SitePlacement {
    /// At this byte offset within a 64-byte line (0..=63).
    LineOffset(u8),
    /// Across the boundary between the two text pages.
    CrossPage,
}

impl SitePlacement {
    /// Naturally aligned (offset 0 in its line).
    pub const ALIGNED: SitePlacement = SitePlacement::LineOffset(0);
    /// A 5-byte site crossing a 16-byte fetch block boundary (offset 14).
    pub const CROSS16: SitePlacement = SitePlacement::LineOffset(14);
    /// A 5-byte site crossing a 64-byte line boundary (offset 62).
    pub const CROSS64: SitePlacement = SitePlacement::LineOffset(62);

    /// The named placements, in the order proptest and `check` cycle through them.
    pub const NAMED: [SitePlacement; 4] =
        [SitePlacement::ALIGNED, SitePlacement::CROSS16, SitePlacement::CROSS64, SitePlacement::CrossPage];

    /// The site address for a site of `len` bytes: in the first text page's second half,
    /// or straddling the page boundary.
    pub fn address(self, len: u64) -> u64 {
        match self {
            SitePlacement::LineOffset(off) => TEXT_BASE + 0x800 + off as u64,
            SitePlacement::CrossPage => TEXT_BASE + PAGE_SIZE - len / 2,
        }
    }
}

impl fmt::Display for SitePlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SitePlacement::ALIGNED => f.write_str("aligned"),
            SitePlacement::CROSS16 => f.write_str("cross16"),
            SitePlacement::CROSS64 => f.write_str("cross64"),
            SitePlacement::CrossPage => f.write_str("cross-page"),
            SitePlacement::LineOffset(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for SitePlacement {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        match s {
            "aligned" => Ok(SitePlacement::ALIGNED),
            "cross16" => Ok(SitePlacement::CROSS16),
            "cross64" => Ok(SitePlacement::CROSS64),
            "cross-page" => Ok(SitePlacement::CrossPage),
            _ => match s.parse::<u8>() {
                Ok(n) if n < 64 => Ok(SitePlacement::LineOffset(n)),
                _ => Err(SimError::BadInput(format!(
                    "site: '{s}' is not a placement (valid: aligned, cross16, cross64, cross-page, or a line offset 0..=63)"
                ))),
            },
        }
    }
}

/// A workload and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadSpec {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Site placement.
    pub site: SitePlacement,
    /// Patch rounds (batches) the patcher applies.
    pub rounds: u32,
}

impl WorkloadSpec {
    /// The default parameters of `kind`.
    pub fn new(kind: WorkloadKind) -> Self {
        Self { kind, site: SitePlacement::ALIGNED, rounds: 24 }
    }

    /// Builds the guest for `cpus` vCPUs.
    pub fn build(&self, cpus: usize) -> Result<GuestImage, SimError> {
        match self.kind {
            WorkloadKind::Ftrace => ftrace::build(self, cpus),
        }
    }
}

/// The data layout every workload uses: page 0 holds a 64-byte counter block per vCPU, page
/// i+1 is vCPU i's stack.
pub fn layout(cpus: usize) -> Layout {
    Layout { text_base: TEXT_BASE, text_len: TEXT_LEN, data_base: DATA_BASE, data_len: (cpus as u64 + 1) * PAGE_SIZE }
}

/// Guest address of vCPU `cpu`'s counter block.
pub fn counters(cpu: usize) -> u64 {
    DATA_BASE + cpu as u64 * 64
}

/// Initial stack pointer of vCPU `cpu` (below the top of its page, 16-byte aligned).
pub fn stack_top(cpu: usize) -> u64 {
    DATA_BASE + (cpu as u64 + 2) * PAGE_SIZE - 64
}
