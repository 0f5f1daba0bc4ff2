//! The INT3 handler as micro-steps (DESIGN.md §2.5): `poke_int3_handler()` /
//! `smp_text_poke_int3_handler()` of `arch/x86/kernel/alternative.c`, then `do_int3()`'s
//! `kprobe_int3_handler()`. Each step is one shared-memory access or one action of the kernel
//! code, so the patcher can interleave between any two of them. The version's rules
//! ([`crate::protocol::HandlerRules`], in its module) decide the first steps (how the handler
//! finds the patching state and whether it takes a reference), where the lookup reads and what
//! it emulates; [`Handler::step`] dispatches on the step and runs them (`lookup`: entry to
//! put, `emulation`: the `switch (tp->opcode)`, `kprobe`: `kprobe_int3_handler()`):
//!
//! ```text
//! Entry      5.4/seed/5.5: smp_rmb(); if (!bp_patching.nr_entries) return 0;
//!            5.6:          smp_rmb(); desc = READ_ONCE(bp_desc); if (!desc) return 0;
//!            6.0:          smp_rmb(); if (!arch_atomic_inc_not_zero(&bp_desc.refs)) return 0;
//!            6.16:         smp_rmb(); if (!raw_atomic_inc_not_zero(this_cpu refs)) return 0;
//! IncRef     5.6:          if (!atomic_inc_not_zero(&desc->refs)) return 0;
//! ip = regs->ip - INT3_INSN_SIZE;
//! BranchNr   if (unlikely(nr_entries > 1)) {
//! BsearchArgs    tp = bsearch(ip, vec, nr_entries, sizeof(*tp), patch_cmp);
//! Probe*         if (!tp) goto out_put;
//!            } else {
//! LoadVec        tp = vec;
//! Compare        if (text_poke_addr(tp) != ip) goto out_put;
//!            }
//! Emulate    ip += tp->len; switch (tp->opcode) { INT3: goto out_put; RET; CALL; JMP32/JMP8; Jcc; default: BUG(); }
//!            (5.4: regs->ip = tp->detour)
//! Put        out_put: put_desc(desc) / raw_atomic_dec(this_cpu refs)   (5.6, 6.16)
//! Iret       return 1 → IRET (serializing)
//! ```
//!
//! A handler that returns 0 hands the trap on, as `do_int3()` does (`arch/x86/kernel/traps.c`).
//! With `CONFIG_KPROBES` ([`crate::kconfig`]) it calls `kprobe_int3_handler()`
//! (`arch/x86/kernel/kprobes/core.c`), two more micro-steps:
//!
//! ```text
//! KprobeGet      p = get_kprobe(addr);  if (p) { ... setup_singlestep(p, regs, kcb, 0); return 1; }
//! Owner              (the probed instruction runs out of line: regs->ip = its copy; a CALL,
//!                     JMP or Jcc is emulated: kprobe_emulate_call/_jmp/_jcc from 6.0, a
//!                     single-step fixed up by resume_execution() before — the same effect)
//! KprobeVanished } else if (*addr != INT3_INSN_OPCODE) {    (up to 6.0; gone in 6.3)
//!                    /* The breakpoint instruction was removed right after we hit it. */
//!                    regs->ip = (unsigned long)addr; return 1;      → IRET, retry
//!                }  return 0;
//! ```
//!
//! `*addr` is a data load: it reads the text as the patcher last wrote it, not the vCPU's
//! instruction view. A trap nobody claims goes on to `notify_die(DIE_INT3)`, which nothing
//! modelled claims, and `die("int3")`: the unclaimed-INT3 oracle ([`HandlerStep::Declined`]).

mod emulation;
mod kprobe;
mod lookup;

use cpu_model::{Regs, SharedRegion};

use crate::emulate::{Emulation, INT3_INSN_SIZE};
use crate::oracle::ViolationKind;
use crate::patching::{AccessFault, PatchState, VecRef};
use crate::protocol::loc::{LocRules, INT3};
use crate::protocol::{HandlerKind, Mutant};
use crate::text::TextMemory;

pub use crate::protocol::HandlerPc;
pub use kprobe::{kprobe_emulate, kprobe_emulates};

/// The result of one handler step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerStep {
    /// More steps follow.
    Continue,
    /// The entry `(array, index)` was emulated; the machine checks it against the reference
    /// executor and applies it.
    Emulated {
        /// The patch array of the entry.
        array: usize,
        /// The entry within it.
        entry: usize,
        /// What the handler did to the registers and stack.
        emulation: Emulation,
    },
    /// Every handler `do_int3()` asks declined the trap: it would `die("int3")`.
    Declined,
    /// `kprobe_int3_handler()` found the INT3's kprobe: more steps follow.
    KprobeHit,
    /// Kprobe `kprobe`'s probed CALL, JMP or Jcc was emulated; the machine checks it against
    /// the reference executor and applies it.
    KprobeEmulated {
        /// The kprobe (index into the patching state's kprobes).
        kprobe: usize,
        /// What the handler did to the registers and stack.
        emulation: Emulation,
    },
    /// IRET with these registers.
    Iret(Regs),
    /// The handler faulted (an oops): NULL or freed data, a read past the vector, or `BUG()`.
    /// `kind` is [`ViolationKind::UseAfterFree`] when it read memory of a batch that had
    /// already returned, [`ViolationKind::HandlerFault`] otherwise.
    Fault {
        /// Which violation the oops is.
        kind: ViolationKind,
        /// What the handler did.
        message: String,
    },
}

/// What a handler step may touch.
pub struct HandlerCtx<'a> {
    /// Which version's handler.
    pub kind: HandlerKind,
    /// The version's `text_poke_loc_init` rules (for `emulate-old`).
    pub rules: LocRules,
    /// Mutants of the run (only handler edits matter here).
    pub mutants: &'a [Mutant],
    /// The patching state.
    pub state: &'a mut PatchState,
    /// The data region (the stack a RET pops from).
    pub data: &'a SharedRegion,
    /// `CONFIG_KPROBES`: `do_int3()` asks `kprobe_int3_handler()`, which looks the address up
    /// in the patching state's registered kprobes.
    pub kprobes: bool,
    /// The text as the patcher last wrote it (what `*addr` loads).
    pub text: &'a TextMemory,
    /// The version's `kprobe_int3_handler()` backs up over a vanished INT3
    /// ([`crate::Protocol::kprobe_recovers_vanished_int3`]).
    pub recovers_vanished_int3: bool,
    /// With [`Mutant::InstrumentedHandler`]: the patched text the handler's first step calls
    /// into and the byte this vCPU's instruction view shows there.
    pub instrumented: Option<(u64, u8)>,
}

/// What the activation read at entry and the reference it holds: the one place that knows
/// which count [`HandlerPc::Put`] (or [`Handler::abandon`]) drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Held {
    /// No reference, no descriptor read.
    Nothing,
    /// 5.6: `READ_ONCE(bp_desc)` returned descriptor `.0`; its reference is not held (not yet,
    /// not got, or already put).
    Read(usize),
    /// 5.6: a reference on descriptor `.0` (`try_get_desc()`).
    Desc(usize),
    /// 6.16: a reference on this CPU's `text_poke_array_refs`.
    PerCpu,
    /// 6.0: a reference on the static `bp_desc.refs`.
    Global,
}

impl Held {
    /// The descriptor read at entry (5.6), if any.
    fn desc(self) -> Option<usize> {
        match self {
            Held::Read(id) | Held::Desc(id) => Some(id),
            Held::Nothing | Held::PerCpu | Held::Global => None,
        }
    }

    /// Whether a reference is held.
    fn counted(self) -> bool {
        matches!(self, Held::Desc(_) | Held::PerCpu | Held::Global)
    }

    /// The count the held reference is on, as the put decrements it: `Err` if the descriptor
    /// is gone (`put_desc()` on a returned batch's stack).
    fn count(self, state: &mut PatchState, cpu: usize) -> Result<Option<&mut i32>, AccessFault> {
        Ok(match self {
            Held::Desc(id) => {
                state.desc_array(id)?;
                Some(&mut state.arrays[id].refs)
            }
            Held::PerCpu => Some(&mut state.percpu_refs[cpu]),
            Held::Global => Some(&mut state.global_refs),
            Held::Nothing | Held::Read(_) => None,
        })
    }

    /// What remains once the reference is put.
    fn put(self) -> Held {
        match self.desc() {
            Some(id) => Held::Read(id),
            None => Held::Nothing,
        }
    }
}

/// One vCPU's activation of the handler.
#[derive(Clone, Debug)]
pub struct Handler {
    /// The saved register file (`struct pt_regs`); `rip` = INT3 address + 1 at entry.
    pub regs: Regs,
    /// The qword at `[rsp]` when the trap was taken (for the reference executor).
    pub stack_top: u64,
    cpu: usize,
    pc: HandlerPc,
    /// What entry read and the reference held.
    held: Held,
    /// The patching handler returned 0 and goes through `out_put` first.
    declined: bool,
    /// The vector the lookup reads (`tp`'s array).
    vec: Option<VecRef>,
    /// bsearch's `base` and `num`.
    base: usize,
    num: usize,
    /// The index in `vec` of the entry the lookup found.
    entry: usize,
    /// The kprobe (index into the patching state's kprobes) `get_kprobe()` found.
    kprobe: Option<usize>,
}

fn fault(what: &str, e: AccessFault) -> HandlerStep {
    HandlerStep::Fault { kind: e.kind(), message: format!("INT3 handler: {what}: {e}") }
}

/// An oops that is no access to freed memory: a NULL, a read past the vector, `BUG()`.
fn oops(message: String) -> HandlerStep {
    HandlerStep::Fault { kind: ViolationKind::HandlerFault, message }
}

impl Handler {
    /// Entry on vCPU `cpu` with the trapped register file.
    pub fn new(cpu: usize, regs: Regs, stack_top: u64) -> Self {
        Self {
            regs,
            stack_top,
            cpu,
            pc: HandlerPc::Entry,
            held: Held::Nothing,
            declined: false,
            vec: None,
            base: 0,
            num: 0,
            entry: 0,
            kprobe: None,
        }
    }

    /// Feeds everything the handler's future depends on into `h` — all but the vCPU index
    /// (state-space search compares handlers across vCPUs) — with its saved registers as
    /// `rel` presents them. The fields go in as one `found` index (the kprobe once
    /// `get_kprobe()` found one, the vector entry before: nothing after uses the entry), the
    /// descriptor read and whether a reference is held, the encoding search results were
    /// recorded with.
    pub fn hash_state(&self, h: &mut impl std::hash::Hasher, rel: impl Fn(&Regs) -> Regs) {
        use std::hash::Hash;
        rel(&self.regs).hash(h);
        (self.stack_top, self.pc, self.vec, self.held.desc(), self.held.counted(), self.declined).hash(h);
        (self.base, self.num, self.kprobe.unwrap_or(self.entry)).hash(h);
    }

    /// The next micro-step.
    pub fn pc(&self) -> HandlerPc {
        self.pc
    }

    /// `regs->ip - INT3_INSN_SIZE`: the trapping INT3's address.
    pub fn ip(&self) -> u64 {
        self.regs.rip - INT3_INSN_SIZE
    }

    /// Drops the reference this activation holds, if any, without running the rest of the
    /// handler: the hardware run repairs a vCPU whose handler faulted (the kernel would have
    /// oopsed with the reference held) so that the patcher's wait for the count to drain ends.
    /// What is held says which count; `_kind` is the version's handler, kept for callers.
    pub fn abandon(&mut self, _kind: HandlerKind, state: &mut PatchState) {
        let held = self.held;
        self.held = held.put();
        let count = match held {
            // A freed descriptor's count is dropped all the same: the repair only unblocks.
            Held::Desc(id) => state.arrays.get_mut(id).map(|a| &mut a.refs),
            other => other.count(state, self.cpu).ok().flatten(),
        };
        if let Some(count) = count {
            *count -= 1;
        }
    }

    /// Records that the machine applied an emulation.
    pub fn emulated(&mut self, emulation: &Emulation) {
        self.regs = emulation.regs;
    }

    /// Runs one micro-step.
    pub fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        if let (HandlerPc::Entry, Some((addr, INT3))) = (self.pc, ctx.instrumented) {
            // B6: the call lands on an INT3 while this CPU is inside the INT3 handler. The
            // kernel would take the nested #BP on the same exception stack (or recurse into
            // poke_int3_handler()); "lest we inadvertently hit yet another INT3".
            return oops(format!(
                "INT3 handler: its instrumented first step called patchable text at {addr:#x}, which holds an INT3: a nested INT3 inside the INT3 handler (B6)"
            ));
        }
        match self.pc {
            HandlerPc::Entry => self.enter(ctx),
            HandlerPc::IncRef => self.inc_ref(ctx),
            HandlerPc::BranchNr => self.branch_nr(ctx),
            HandlerPc::BsearchArgs => self.bsearch_args(ctx),
            HandlerPc::Probe => self.probe(ctx),
            HandlerPc::LoadVec => self.load_vec(ctx),
            HandlerPc::CompareSingle => self.compare_single(ctx),
            HandlerPc::Emulate => self.emulate(ctx),
            HandlerPc::Put => self.put(ctx),
            HandlerPc::KprobeGet => self.get_kprobe(ctx),
            HandlerPc::Owner => self.kprobe_owner(ctx),
            HandlerPc::KprobeVanished => self.vanished(ctx),
            HandlerPc::Iret => HandlerStep::Iret(self.regs),
        }
    }

    /// Moves on to `pc`.
    fn goto(&mut self, pc: HandlerPc) -> HandlerStep {
        self.pc = pc;
        HandlerStep::Continue
    }

    /// `return 0`, through `out_put` if a reference is held.
    fn decline(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if self.held.counted() {
            self.declined = true;
            self.goto(HandlerPc::Put)
        } else {
            self.next_handler(ctx)
        }
    }

    /// The patching handler returned 0: `do_int3()` asks `kprobe_int3_handler()` next (with
    /// `CONFIG_KPROBES`), else `notify_die()`, which nothing claims.
    fn next_handler(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if ctx.kprobes {
            self.goto(HandlerPc::KprobeGet)
        } else {
            HandlerStep::Declined
        }
    }
}
