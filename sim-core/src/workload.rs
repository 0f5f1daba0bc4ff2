//! What a workload hands the machine (DESIGN.md §2.8): the guest image — text, layout,
//! initial registers per vCPU, the loop head where the invariant is checked — the patch
//! rounds the patcher applies, and the workload's own invariant. Workloads themselves
//! (machine code assembled with iced-x86) live in the `scenarios` crate.

use cpu_model::{Layout, Regs, SharedRegion};

/// One `text_poke_bp(addr, opcode, len, emulate)` request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PokeRequest {
    /// Address of the instruction to replace.
    pub addr: u64,
    /// The new instruction bytes (`opcode`, `len` = its length).
    pub new: Vec<u8>,
    /// The instruction the handler emulates, when it differs from `new`
    /// (`arch_unoptimize_kprobe`); `None` = emulate `new`.
    pub emulate: Option<Vec<u8>>,
}

/// The guest-side check of a workload, run whenever a vCPU is about to execute its loop head.
pub trait Invariant {
    /// `Err(message)` if what the guest observed is impossible under a correct protocol.
    fn at_loop_head(&mut self, cpu: usize, regs: &Regs, data: &SharedRegion) -> Result<(), String>;
}

/// A guest ready to run.
pub struct GuestImage {
    /// Workload name, for reports.
    pub name: String,
    /// Address-space layout.
    pub layout: Layout,
    /// Initial text (exactly `layout.text_len` bytes).
    pub text: Vec<u8>,
    /// Initial register file of each vCPU (its length is the vCPU count).
    pub cpu_regs: Vec<Regs>,
    /// Where each vCPU's loop starts; the invariant runs there.
    pub loop_head: u64,
    /// Patch rounds, in order; each is one batch (`text_poke_bp_batch`).
    pub batches: Vec<Vec<PokeRequest>>,
    /// The workload invariant.
    pub invariant: Box<dyn Invariant>,
}

impl std::fmt::Debug for GuestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestImage")
            .field("name", &self.name)
            .field("cpus", &self.cpu_regs.len())
            .field("batches", &self.batches.len())
            .finish()
    }
}
