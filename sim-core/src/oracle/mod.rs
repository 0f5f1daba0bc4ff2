//! The oracles of DESIGN.md §2.7 and the violations they report.
//!
//! | kind | oracle |
//! |---|---|
//! | `torn-fetch` | [`torn`]: executed bytes are not an instruction of a legitimate image |
//! | `unclaimed-int3` | the handler and every owner declined a trap (a stale INT3) |
//! | `emulation-mismatch` | [`emulation`]: the handler's effect differs from executing the old or new instruction |
//! | `guest-fault` | a guest step faulted |
//! | `handler-fault` | the handler dereferenced a NULL vector, read past it, or hit `BUG()` |
//! | `use-after-free` | the handler read the patch data of a batch whose `text_poke_bp()` had returned |
//! | `workload-invariant` | the workload's guest-side check failed |
//! | `liveness` | the patcher did not finish within the budget, or a vCPU ran an old image after the final sync |
//! | `patcher-fault` | the patcher wrote memory it does not own (past `text_poke_array.vec`) |
//! | `lost-breakpoint` | [`breakpoint`]: an armed kprobe's INT3 was overwritten, or a disarm restored a torn instruction |

pub mod breakpoint;
pub mod emulation;
pub mod guest_fault;
pub mod handler_fault;
pub mod invariant;
pub mod liveness;
pub mod torn;
pub mod unclaimed;

use std::fmt;

use serde::{Deserialize, Serialize};

/// The closed set of violation kinds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ViolationKind {
    /// Executed bytes are no legitimate instruction.
    TornFetch,
    /// An INT3 nobody consumed.
    UnclaimedInt3,
    /// The handler's emulation differs from the real instruction.
    EmulationMismatch,
    /// Guest code faulted.
    GuestFault,
    /// The handler faulted.
    HandlerFault,
    /// The workload's invariant failed.
    WorkloadInvariant,
    /// No progress, or an old image after the final sync.
    Liveness,
    /// An armed kprobe's INT3 was overwritten, or its disarm restored a torn instruction.
    LostBreakpoint,
    /// The patcher wrote memory it does not own.
    PatcherFault,
    /// The handler read memory of a batch whose patcher had returned (freed stack or array).
    UseAfterFree,
}

impl ViolationKind {
    /// Every kind.
    pub const ALL: [ViolationKind; 10] = [
        ViolationKind::TornFetch,
        ViolationKind::UnclaimedInt3,
        ViolationKind::EmulationMismatch,
        ViolationKind::GuestFault,
        ViolationKind::HandlerFault,
        ViolationKind::WorkloadInvariant,
        ViolationKind::Liveness,
        ViolationKind::LostBreakpoint,
        ViolationKind::PatcherFault,
        ViolationKind::UseAfterFree,
    ];

    /// The kebab-case name used in reports and files.
    pub fn name(self) -> &'static str {
        match self {
            ViolationKind::TornFetch => "torn-fetch",
            ViolationKind::UnclaimedInt3 => "unclaimed-int3",
            ViolationKind::EmulationMismatch => "emulation-mismatch",
            ViolationKind::GuestFault => "guest-fault",
            ViolationKind::HandlerFault => "handler-fault",
            ViolationKind::WorkloadInvariant => "workload-invariant",
            ViolationKind::Liveness => "liveness",
            ViolationKind::LostBreakpoint => "lost-breakpoint",
            ViolationKind::PatcherFault => "patcher-fault",
            ViolationKind::UseAfterFree => "use-after-free",
        }
    }
}

crate::named_set!(ViolationKind, "violation kind");

/// One executed byte and the store epoch it came from (0 = the initial image).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct ByteEpoch {
    /// The byte.
    pub byte: u8,
    /// The epoch of the store that wrote it.
    pub epoch: u32,
}

/// A violation found by an oracle.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Violation {
    /// What went wrong.
    pub kind: ViolationKind,
    /// The vCPU involved, if any.
    pub cpu: Option<usize>,
    /// The tick at which it was detected.
    pub tick: u64,
    /// The guest instruction address involved (for a trap: the INT3 address); JSON writes it
    /// as a hex string (`"0x400800"`), as messages do.
    #[serde(with = "hex_addr")]
    pub rip: Option<u64>,
    /// The executed bytes, each with its store epoch.
    pub bytes: Vec<ByteEpoch>,
    /// The patcher's protocol phase at that moment.
    pub phase: String,
    /// A human-readable explanation.
    pub message: String,
}

/// `Option<u64>` addresses as `"0x…"` strings (or `null`) in JSON.
pub(crate) mod hex_addr {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<u64>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(a) => s.collect_str(&format_args!("{a:#x}")),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
        let Some(text) = Option::<String>::deserialize(d)? else { return Ok(None) };
        let digits = text.strip_prefix("0x").ok_or_else(|| serde::de::Error::custom("an address is \"0x…\""))?;
        u64::from_str_radix(digits, 16).map(Some).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} at tick {}", self.kind, self.tick)?;
        if let Some(cpu) = self.cpu {
            write!(f, " on cpu{cpu}")?;
        }
        if let Some(rip) = self.rip {
            write!(f, " rip={rip:#x}")?;
        }
        if !self.bytes.is_empty() {
            f.write_str(" bytes=[")?;
            for (i, b) in self.bytes.iter().enumerate() {
                let sep = if i == 0 { "" } else { " " };
                write!(f, "{sep}{:02x}@{}", b.byte, b.epoch)?;
            }
            f.write_str("]")?;
        }
        write!(f, " phase={}: {}", self.phase, self.message)
    }
}
