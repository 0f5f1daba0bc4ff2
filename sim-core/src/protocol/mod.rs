//! The protocol catalogue (DESIGN.md §2.6): each kernel version is a patcher program
//! (see [`crate::patcher`]) plus an INT3 handler (see [`crate::handler`]); a mutant is a named
//! edit of either. Programs are built per batch from the kernel function they mirror.

pub mod loc;
pub mod seed;

use std::fmt;
use std::str::FromStr;

use crate::patcher::Op;
use crate::SimError;

pub use loc::{text_poke_loc_init, TextPokeLoc};

/// A protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// The seed patch ("x86/alternatives: Teach text_poke_bp() to emulate instructions",
    /// v3 1/6, Peter Zijlstra, 2019): emulating handler, three syncs, the last conditional.
    Seed,
}

impl Protocol {
    /// Every version.
    pub const ALL: [Protocol; 1] = [Protocol::Seed];

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Protocol::Seed => "seed",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            Protocol::Seed => {
                "the seed patch (v3 1/6, 2019): text_poke_bp_batch with INT3/tail/first-byte syncs, \
                 the last conditional on do_sync; poke_int3_handler emulates CALL/JMP32/JMP8/NOP2/NOP5"
            }
        }
    }

    /// The patcher program for one batch of `n` entries (array id `batch`).
    pub fn batch_program(self, mutants: &[Mutant], batch: usize, n: usize) -> Vec<Op> {
        match self {
            Protocol::Seed => seed::text_poke_bp_batch(mutants, batch, n),
        }
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Protocol {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        Protocol::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| {
            let names: Vec<_> = Protocol::ALL.iter().map(|p| p.name()).collect();
            SimError::BadInput(format!("unknown protocol '{s}' (valid: {})", names.join(", ")))
        })
    }
}

/// A named edit of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// Drop the sync after writing the INT3s.
    NoSyncAfterInt3,
    /// Drop the (conditional) sync after writing the tails.
    NoSyncAfterTail,
    /// Drop the (conditional) sync after writing the first bytes.
    NoSyncAfterFirst,
    /// Write each new instruction directly, without the INT3 step.
    NoInt3,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 4] =
        [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3];

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::NoSyncAfterInt3 => "no-sync-after-int3",
            Mutant::NoSyncAfterTail => "no-sync-after-tail",
            Mutant::NoSyncAfterFirst => "no-sync-after-first",
            Mutant::NoInt3 => "no-int3",
        }
    }

    /// One-line description of the edit and what the kernel says about it.
    pub fn description(self) -> &'static str {
        match self {
            Mutant::NoSyncAfterInt3 => {
                "drop on_each_cpu(do_sync_core) after the INT3 writes: a CPU may still fetch the old \
                 first byte together with a new tail"
            }
            Mutant::NoSyncAfterTail => {
                "drop the sync after the tail writes (\"According to Intel, this core syncing is very \
                 likely not necessary\"): a CPU may fetch the new first byte with an old tail"
            }
            Mutant::NoSyncAfterFirst => {
                "drop the sync after the first-byte writes: a CPU may still fetch the INT3 after \
                 bp_patching is cleared (an unclaimed, stale INT3)"
            }
            Mutant::NoInt3 => {
                "write the new instruction with text_poke alone, no INT3 step (what text_poke_bp \
                 exists to avoid): a CPU may fetch a half-written instruction"
            }
        }
    }

    /// Whether this edit makes sense on `protocol`.
    pub fn applies_to(self, protocol: Protocol) -> bool {
        match protocol {
            Protocol::Seed => true,
        }
    }
}

impl fmt::Display for Mutant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Mutant {
    type Err = SimError;
    fn from_str(s: &str) -> Result<Self, SimError> {
        Mutant::ALL.into_iter().find(|m| m.name() == s).ok_or_else(|| {
            let names: Vec<_> = Mutant::ALL.iter().map(|m| m.name()).collect();
            SimError::BadInput(format!("unknown mutant '{s}' (valid: {})", names.join(", ")))
        })
    }
}
