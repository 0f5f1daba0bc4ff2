//! What a workload hands the machine (DESIGN.md §2.8): the guest image — text, layout,
//! initial registers per vCPU, the loop head where the invariant is checked — the patch
//! actions the patcher carries out, the kprobes it registers, and the workload's own
//! invariant. Workloads themselves (machine code assembled with iced-x86) live in the
//! `scenarios` crate.

use crate::protocol::Protocol;
use cpu_model::{Layout, Regs, SharedRegion};

/// One `text_poke_bp(addr, opcode, len, emulate)` request (or `smp_text_poke_batch_add`).
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct PokeRequest {
    /// Address of the instruction to replace.
    pub addr: u64,
    /// The new instruction bytes (`opcode`, `len` = their length).
    pub new: Vec<u8>,
    /// The instruction the handler emulates, when it differs from `new`
    /// (`arch_unoptimize_kprobe`); `None` = emulate `new`.
    pub emulate: Option<Vec<u8>>,
    /// linux-5.4's detour (where its handler sends a trapping CPU); `None` = `addr + len`.
    pub detour: Option<u64>,
}

impl PokeRequest {
    /// A request with no explicit `emulate` or detour.
    pub fn new(addr: u64, new: Vec<u8>) -> Self {
        Self { addr, new, emulate: None, detour: None }
    }
}

/// One step of a workload's patching script.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum PatchAction {
    /// A batch through the INT3 protocol (`text_poke_bp_batch` / `smp_text_poke_batch_*`).
    Batch(Vec<PokeRequest>),
    /// A plain `text_poke(addr, bytes)` (kprobe arm/disarm).
    Poke {
        /// First byte written.
        addr: u64,
        /// Bytes written.
        bytes: Vec<u8>,
    },
    /// `text_poke_sync()` on its own.
    Sync,
    /// One site queued in a `text_mutex` section of its own, to be patched by a later
    /// [`PatchAction::Apply`] with whatever else the version's vector then holds: jump_label's
    /// `arch_jump_label_transform_queue()` → `text_poke_queue()` (5.5–6.0) /
    /// `smp_text_poke_batch_add()` (6.16). Between the two, `text_mutex` is free: another
    /// caller may use the vector (the June 2025 report, docs/reference/kprobes.md §9).
    Queue(PokeRequest),
    /// `arch_jump_label_transform_apply()`: `text_poke_finish()` /
    /// `smp_text_poke_batch_finish()` of the vector, under `text_mutex`.
    Apply,
    /// `text_poke_early(addr, bytes)`: boot-time patching (`apply_alternatives()`) of a site
    /// no other CPU runs, by a `memcpy()` through the text's own address and a `sync_core()`
    /// (C protocols only: `pokesim_early()`).
    Early {
        /// First byte written.
        addr: u64,
        /// Bytes written.
        bytes: Vec<u8>,
    },
    /// One site patched at once by a caller that does not batch (`arch_jump_label_transform()`,
    /// `arch_static_call_transform()`, the kprobe optimizer): `text_poke_bp()` /
    /// `smp_text_poke_single()`, under `text_mutex`.
    Single(PokeRequest),
}

impl PatchAction {
    /// The sites it writes through the INT3 protocol.
    pub fn requests(&self) -> &[PokeRequest] {
        match self {
            PatchAction::Batch(reqs) => reqs,
            PatchAction::Queue(r) | PatchAction::Single(r) => std::slice::from_ref(r),
            PatchAction::Poke { .. } | PatchAction::Sync | PatchAction::Apply | PatchAction::Early { .. } => &[],
        }
    }

    /// True if what it patches depends on what other callers left in the version's vector
    /// at run time ([`PatchAction::Queue`], [`PatchAction::Apply`], [`PatchAction::Single`]).
    pub fn shares_vector(&self) -> bool {
        matches!(self, PatchAction::Queue(_) | PatchAction::Apply | PatchAction::Single(_))
    }
}

/// A kprobe: an INT3 owner. Its handler (`kprobe_int3_handler`, reached only after the
/// patching handler declined) resumes the trapping CPU at the out-of-line copy of the probed
/// instruction, which jumps back after it — or, for a CALL, JMP or Jcc, emulates it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Kprobe {
    /// The probed instruction.
    pub addr: u64,
    /// Armed (INT3 written) from the start; otherwise the script arms it. Ignored with
    /// `cycles > 0`.
    pub armed: bool,
    /// `0`: registered for the whole run. Otherwise a patching client of its own, racing the
    /// workload's patcher under `text_mutex`: `cycles` times `register_kprobe()` (add to
    /// `kprobe_table`, then `arch_arm_kprobe()`) and `unregister_kprobe()`
    /// (`arch_disarm_kprobe()`, then remove), each text change a `text_poke()` followed, from
    /// linux-5.6 on, by `text_poke_sync()`.
    pub cycles: u32,
}

impl Kprobe {
    /// A kprobe registered and armed for the whole run.
    pub fn armed(addr: u64) -> Self {
        Self { addr, armed: true, cycles: 0 }
    }

    /// A kprobe that registers, arms, disarms and unregisters itself `cycles` times.
    pub fn client(addr: u64, cycles: u32) -> Self {
        Self { addr, armed: false, cycles }
    }
}

/// Which kernel subsystem owns a workload's patched sites, and so which check of
/// `register_kprobe()` keeps a kprobe off them (`check_kprobe_address_safe()` in
/// `kernel/kprobes.c`, `arch_prepare_kprobe()` in `arch/x86/kernel/kprobes/core.c`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteOwner {
    /// ftrace's `call __fentry__` sites: `check_ftrace_location()` turns a kprobe on one into
    /// an ftrace-based kprobe (`KPROBE_FLAG_FTRACE`, with `CONFIG_KPROBES_ON_FTRACE`), which
    /// writes no INT3.
    Ftrace,
    /// `static_call_text_reserved()` (since static calls exist, 5.10).
    StaticCall,
    /// `jump_label_text_reserved()`.
    JumpLabel,
    /// `alternatives_text_reserved()` (`arch_prepare_kprobe()`).
    Alternatives,
    /// Another kprobe's (an optprobe's) instruction: `register_aggr_kprobe()` would share it.
    Kprobe,
}

impl SiteOwner {
    /// The kernel check that refuses (or converts) a kprobe on such a site.
    pub fn check(self) -> &'static str {
        match self {
            SiteOwner::Ftrace => "check_ftrace_location()",
            SiteOwner::StaticCall => "static_call_text_reserved()",
            SiteOwner::JumpLabel => "jump_label_text_reserved()",
            SiteOwner::Alternatives => "alternatives_text_reserved()",
            SiteOwner::Kprobe => "register_aggr_kprobe()",
        }
    }

    /// Why `register_kprobe()` on `protocol` does not give a kprobe of its own at an address
    /// inside such a site (`at_start`: at the site's first byte), naming the check as that
    /// version has it.
    pub fn refusal(self, protocol: Protocol, at_start: bool) -> String {
        match self {
            SiteOwner::Ftrace if at_start => "check_ftrace_location() makes a kprobe at an ftrace site's first byte \
                an ftrace-based kprobe (KPROBE_FLAG_FTRACE), which writes no INT3 and so races nothing here; \
                `kprobe = \"entry\"` (`--kprobe=entry`) races that kprobe's own arming with ftrace's patcher"
                .to_string(),
            SiteOwner::Ftrace => "check_ftrace_location() refuses a kprobe inside an ftrace site (-EILSEQ)".to_string(),
            SiteOwner::StaticCall if !protocol.version().static_calls => format!(
                "{protocol} has no static calls and no static_call_text_reserved() (both arrived in v5.10); \
                 pokesim refuses a kprobe there as the check that came with them would, since the text belongs \
                 to the static_call patcher"
            ),
            SiteOwner::Kprobe => "that instruction belongs to an optimized kprobe; register_kprobe() would share \
                it through register_aggr_kprobe() instead of writing an INT3 of its own"
                .to_string(),
            owner => format!(
                "that code belongs to the patcher, and register_kprobe()'s {} refuses a kprobe there",
                owner.check()
            ),
        }
    }
}

/// The guest-side check of a workload, run whenever a vCPU is about to execute its loop head.
pub trait Invariant {
    /// `Err(message)` if what the guest observed is impossible under a correct protocol.
    fn at_loop_head(&mut self, cpu: usize, regs: &Regs, data: &SharedRegion) -> Result<(), String>;

    /// Starts vCPU `cpu`'s counters over (state-space search calls it after every successful
    /// check, so that a guest that loops forever has finitely many states). The guest never
    /// reads its counters, so resetting them changes no step of the run.
    fn reset(&mut self, cpu: usize, data: &SharedRegion);
}

/// One vCPU's private part of the data region.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CpuData {
    /// The counter block: address and length.
    pub counters: (u64, u64),
    /// The top of the vCPU's stack: its initial stack pointer; the live stack is `[rsp, top)`.
    pub stack_top: u64,
    /// The lowest address the stack may reach (the bottom of its page).
    pub stack_floor: u64,
}

/// A guest ready to run.
pub struct GuestImage {
    /// Workload name, for reports.
    pub name: String,
    /// Address-space layout.
    pub layout: Layout,
    /// Initial text (exactly `layout.text_len` bytes).
    pub text: Vec<u8>,
    /// Where the workload's code was assembled, as `(start, len)` ranges: decoding each range
    /// from its start gives every instruction boundary (the rest of the text is padding).
    pub code: Vec<(u64, u64)>,
    /// Initial register file of each vCPU (its length is the vCPU count).
    pub cpu_regs: Vec<Regs>,
    /// Where each vCPU's loop starts; the invariant runs there.
    pub loop_head: u64,
    /// The patching script, in order.
    pub actions: Vec<PatchAction>,
    /// The scripts of further callers of the INT3 protocol, each a patching client of its own
    /// that shares the version's vector with the first (`shared_vector`'s single-site caller;
    /// empty for every other workload). They write sites of their own.
    pub callers: Vec<Vec<PatchAction>>,
    /// The workload's own kprobes, registered for the whole run (a scenario's kprobes are
    /// added by [`crate::plan::Plan::new`], which checks them): each probed instruction is
    /// copied to an out-of-line slot in `ool_area` and, if armed, its INT3 written before the
    /// run starts.
    pub kprobes: Vec<Kprobe>,
    /// Free text `(start, len)` for out-of-line copies of probed instructions (and, with
    /// `[interrupts]`, the interrupt handler's code at its end: [`crate::interrupt`]).
    pub ool_area: (u64, u64),
    /// The function an interrupt's `call-site` handler calls: one that runs through a patched
    /// site and returns, keeping the invariant when counted as one loop iteration (the handler
    /// increments the iteration counter `[rbx]` first). `None`: the workload has none, and
    /// refuses that handler.
    pub irq_call: Option<u64>,
    /// With interrupts on a patching client's CPU: that CPU's registers when it enters a
    /// handler (`rbx` a counter block, `rsp` a stack of its own in the data region) and the
    /// data it may write. `None`: the workload refuses interrupts on the patching CPU.
    pub irq_cpu: Option<(Regs, CpuData)>,
    /// Who owns the patched sites (which reserved-text check guards them from kprobes).
    pub site_owner: SiteOwner,
    /// The workload invariant.
    pub invariant: Box<dyn Invariant + Send>,
    /// Each vCPU's own data: its counter block `(address, length)` and the top of its stack
    /// (the bytes below the initial stack pointer it may use). Everything a vCPU writes in the
    /// data region lies there; state-space search saves and compares exactly these bytes.
    pub cpu_data: Vec<CpuData>,
}

impl GuestImage {
    /// Number of INT3-protocol batches in the script.
    pub fn batches(&self) -> usize {
        self.actions.iter().filter(|a| matches!(a, PatchAction::Batch(_) | PatchAction::Apply)).count()
    }

    /// Every caller's script, the workload's first.
    pub fn scripts(&self) -> impl Iterator<Item = &[PatchAction]> {
        std::iter::once(&self.actions[..]).chain(self.callers.iter().map(|c| &c[..]))
    }
}

impl std::fmt::Debug for GuestImage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GuestImage")
            .field("name", &self.name)
            .field("cpus", &self.cpu_regs.len())
            .field("actions", &self.actions.len())
            .finish()
    }
}
