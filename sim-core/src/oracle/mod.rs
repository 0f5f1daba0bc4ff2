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

use std::borrow::Cow;
use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::program::Op;
use crate::round::Round;

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
    /// Where the patcher stood at that moment; JSON writes it as its sentence, under the
    /// name `phase` that artifacts have always used.
    #[serde(rename = "phase")]
    pub moment: PatcherMoment,
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
        write!(f, " phase={}: {}", self.moment, self.message)
    }
}

/// Where the patcher stood when a violation was found: the client that leads (the one holding
/// `text_mutex`, else the first one not done), the workload's patch round and the operation
/// that client is at. Reports, JSON and artifacts write it as a sentence ([`fmt::Display`]:
/// `round 1/2 poke-int3`, `patcher1: drain after round 8/8 sync (waiting for acks)`,
/// `drain after round 1/1, patching done`) and read it back from that sentence.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PatcherMoment {
    /// A client is at an operation.
    At {
        /// The client (0: the workload's).
        client: usize,
        /// The workload's round in progress, or the drain.
        round: Round,
        /// The rounds of the workload's script.
        rounds: u64,
        /// The operation, unnumbered (`Op::unnumbered`): the sentence names it only.
        op: Op,
        /// What it waits for, as the patcher's `waiting()` words it.
        waiting: Option<Cow<'static, str>>,
    },
    /// A client compiled from C is in its code: the function and source line (or the kernel
    /// service it is in), and what it waits for.
    InC {
        /// The client (0: the workload's).
        client: usize,
        /// The workload's round in progress, or the drain.
        round: Round,
        /// The rounds of the workload's script.
        rounds: u64,
        /// `function() file:line`, or `service()`.
        location: String,
    },
    /// The leading client has issued its last operation and is not yet done.
    Between,
    /// Every client has finished its program.
    Done {
        /// The workload's round (the drain, once every round has returned).
        round: Round,
        /// The rounds of the workload's script.
        rounds: u64,
    },
}

/// The words of [`PatcherMoment::Between`].
const BETWEEN: &str = "between operations";
/// What comes before the location of [`PatcherMoment::InC`].
const IN_C: &str = "in ";
/// What follows the round of [`PatcherMoment::Done`].
const DONE: &str = ", patching done";

impl fmt::Display for PatcherMoment {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PatcherMoment::At { client, round, rounds, op, waiting } => {
                if *client > 0 {
                    write!(f, "patcher{client}: ")?;
                }
                write!(f, "{} {}", round.of_total(*rounds), op.name())?;
                match waiting {
                    Some(w) => write!(f, " ({w})"),
                    None => Ok(()),
                }
            }
            PatcherMoment::InC { client, round, rounds, location } => {
                if *client > 0 {
                    write!(f, "patcher{client}: ")?;
                }
                write!(f, "{} {IN_C}{location}", round.of_total(*rounds))
            }
            PatcherMoment::Between => f.write_str(BETWEEN),
            PatcherMoment::Done { round, rounds } => write!(f, "{}{DONE}", round.of_total(*rounds)),
        }
    }
}

impl std::str::FromStr for PatcherMoment {
    type Err = String;

    /// Reads the sentence [`fmt::Display`] writes, exactly.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || format!("'{text}' is not a patcher position as pokesim writes it");
        if text == BETWEEN {
            return Ok(PatcherMoment::Between);
        }
        let (client, rest) = match text.strip_prefix("patcher") {
            Some(rest) => {
                let (k, rest) = rest.split_once(": ").ok_or_else(bad)?;
                let client: usize = k.parse().map_err(|_| bad())?;
                (client > 0 && client.to_string() == k).then_some((client, rest)).ok_or_else(bad)?
            }
            None => (0, text),
        };
        let (round, rounds, rest) = Round::strip_of_total(rest).ok_or_else(bad)?;
        if client == 0 && rest == DONE {
            return Ok(PatcherMoment::Done { round, rounds });
        }
        let rest = rest.strip_prefix(' ').ok_or_else(bad)?;
        if let Some(location) = rest.strip_prefix(IN_C) {
            return Ok(PatcherMoment::InC { client, round, rounds, location: location.to_string() });
        }
        let (name, waiting) = match rest.split_once(' ') {
            Some((name, w)) => {
                let w = w.strip_prefix('(').and_then(|w| w.strip_suffix(')')).ok_or_else(bad)?;
                (name, Some(Cow::Owned(w.to_string())))
            }
            None => (rest, None),
        };
        let op = Op::from_name(name).ok_or_else(bad)?;
        Ok(PatcherMoment::At { client, round, rounds, op, waiting })
    }
}

/// JSON: the sentence.
impl Serialize for PatcherMoment {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for PatcherMoment {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every form the simulator writes reads back as itself, and nothing else reads.
    #[test]
    fn a_patcher_moment_reads_back_from_its_sentence() {
        for text in [
            "round 1/1 poke-int3",
            "round 5/6 sync-if-do-sync (waiting for acks)",
            "patcher1: drain after round 8/8 sync",
            "patcher2: round 3/24 unlock-text-mutex",
            "drain after round 6/6 sync (waiting for acks)",
            "drain (the script has no rounds) text-poke (waiting for an RCU grace period)",
            "drain after round 1/1, patching done",
            "between operations",
        ] {
            let moment: PatcherMoment = text.parse().unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(moment.to_string(), text);
        }
        for bad in [
            "poke-tail",
            "round 1/1",
            "round 1/1 poke-everything",
            "patcher0: round 1/1 sync",
            "patcher1: drain after round 1/1, patching done",
            "round 1/1 sync waiting",
        ] {
            assert!(bad.parse::<PatcherMoment>().is_err(), "{bad}");
        }
    }
}
