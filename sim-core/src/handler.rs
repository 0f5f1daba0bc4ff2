//! The INT3 handler as micro-steps (DESIGN.md §2.5). Each step is one shared-memory access or
//! one action of the kernel code, so the patcher can interleave between any two of them. The
//! version decides the first steps (how the handler finds the patching state and whether it
//! takes a reference) and the emulation; the lookup is common to all:
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

use cpu_model::{Regs, SharedRegion};

use crate::emulate::{
    int3_emulate_call, int3_emulate_jcc, int3_emulate_jmp, int3_emulate_ret, Emulation, INT3_INSN_SIZE,
};
use crate::oracle::ViolationKind;
use crate::patching::{AccessFault, PatchState, VecRef};
use crate::protocol::loc::{text_poke_loc_init, LocRules, CALL, INT3, JMP32, JMP8, RET};
use crate::protocol::{HandlerKind, Mutant, TextPokeLoc};
use crate::text::TextMemory;

/// Where the handler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandlerPc {
    /// The version's first load (or reference).
    Entry,
    /// `atomic_inc_not_zero(&desc->refs)` (5.6).
    IncRef,
    /// `if (nr_entries > 1)`.
    BranchNr,
    /// Loads the vector and count as bsearch's arguments.
    BsearchArgs,
    /// One `patch_cmp` probe of the binary search.
    Probe,
    /// `tp = vec`.
    LoadVec,
    /// `if (text_poke_addr(tp) != ip)`.
    CompareSingle,
    /// Reads the entry and emulates (or detours).
    Emulate,
    /// Drops the reference taken at entry.
    Put,
    /// `kprobe_int3_handler()`: `p = get_kprobe(addr)`.
    KprobeGet,
    /// The INT3's owner (a kprobe handler) handles the trap.
    Owner,
    /// `kprobe_int3_handler()`: `*addr != INT3_INSN_OPCODE` — a vanished breakpoint.
    KprobeVanished,
    /// Return from the exception: IRET, which serializes.
    Iret,
}

impl HandlerPc {
    /// Short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            HandlerPc::Entry => "entry",
            HandlerPc::IncRef => "inc-ref",
            HandlerPc::BranchNr => "branch-nr",
            HandlerPc::BsearchArgs => "bsearch-args",
            HandlerPc::Probe => "probe",
            HandlerPc::LoadVec => "load-vec",
            HandlerPc::CompareSingle => "compare",
            HandlerPc::Emulate => "emulate",
            HandlerPc::Put => "put",
            HandlerPc::KprobeGet => "get-kprobe",
            HandlerPc::Owner => "kprobe-handler",
            HandlerPc::KprobeVanished => "vanished-int3",
            HandlerPc::Iret => "iret",
        }
    }
}

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

/// One vCPU's activation of the handler.
#[derive(Clone, Debug)]
pub struct Handler {
    /// The saved register file (`struct pt_regs`); `rip` = INT3 address + 1 at entry.
    pub regs: Regs,
    /// The qword at `[rsp]` when the trap was taken (for the reference executor).
    pub stack_top: u64,
    cpu: usize,
    pc: HandlerPc,
    vec: Option<VecRef>,
    desc: Option<usize>,
    got_ref: bool,
    declined: bool,
    base: usize,
    num: usize,
    found: usize,
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
            vec: None,
            desc: None,
            got_ref: false,
            declined: false,
            base: 0,
            num: 0,
            found: 0,
        }
    }

    /// Feeds everything the handler's future depends on into `h` — all but the vCPU index
    /// (state-space search compares handlers across vCPUs) — with its saved registers as
    /// `rel` presents them.
    pub fn hash_state(&self, h: &mut impl std::hash::Hasher, rel: impl Fn(&Regs) -> Regs) {
        use std::hash::Hash;
        rel(&self.regs).hash(h);
        (self.stack_top, self.pc, self.vec, self.desc, self.got_ref, self.declined).hash(h);
        (self.base, self.num, self.found).hash(h);
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
    pub fn abandon(&mut self, kind: HandlerKind, state: &mut PatchState) {
        if !std::mem::take(&mut self.got_ref) {
            return;
        }
        match kind {
            HandlerKind::Desc => {
                if let Some(a) = self.desc.and_then(|id| state.arrays.get_mut(id)) {
                    a.refs -= 1;
                }
            }
            HandlerKind::PerCpuRefs => state.percpu_refs[self.cpu] -= 1,
            HandlerKind::GlobalRefs => state.global_refs -= 1,
            HandlerKind::Detour | HandlerKind::Emulate => {}
        }
    }

    /// Records that the machine applied an emulation.
    pub fn emulated(&mut self, emulation: &Emulation) {
        self.regs = emulation.regs;
    }

    /// `return 0`, through `out_put` if a reference is held.
    fn decline(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if self.got_ref {
            self.declined = true;
            self.pc = HandlerPc::Put;
            HandlerStep::Continue
        } else {
            self.next_handler(ctx)
        }
    }

    /// The patching handler returned 0: `do_int3()` asks `kprobe_int3_handler()` next (with
    /// `CONFIG_KPROBES`), else `notify_die()`, which nothing claims.
    fn next_handler(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if ctx.kprobes {
            self.pc = HandlerPc::KprobeGet;
            HandlerStep::Continue
        } else {
            HandlerStep::Declined
        }
    }

    /// `kprobe_int3_handler()`, the lookup: a registered kprobe takes the trap.
    fn get_kprobe(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        match ctx.state.kprobes.iter().position(|k| k.registered && k.addr == ip) {
            Some(k) => {
                let kp = &ctx.state.kprobes[k];
                if !kprobe_emulates(&kp.insn) {
                    // setup_singlestep(): the probed instruction runs from its copy.
                    self.regs.rip = kp.ool;
                }
                self.found = k;
                self.pc = HandlerPc::Owner;
                HandlerStep::KprobeHit
            }
            None if ctx.recovers_vanished_int3 => {
                self.pc = HandlerPc::KprobeVanished;
                HandlerStep::Continue
            }
            // 6.3+: `return 0;` — notify_die(), then die("int3").
            None => HandlerStep::Declined,
        }
    }

    /// The kprobe's own handling: a CALL, JMP or Jcc is emulated (anything else already
    /// resumes at its out-of-line copy, which jumps back after the probed instruction).
    fn kprobe_owner(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        let kp = &ctx.state.kprobes[self.found];
        self.pc = HandlerPc::Iret;
        match kprobe_emulate(&self.regs, &kp.insn) {
            Some(emulation) if self.regs.rip != kp.ool => HandlerStep::KprobeEmulated { kprobe: self.found, emulation },
            _ => HandlerStep::Continue,
        }
    }

    /// `kprobe_int3_handler()`, no kprobe: if the INT3 is gone from memory, back up over it
    /// and return 1 (IRET, which serializes; the CPU fetches the instruction again).
    fn vanished(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        if ctx.text.read(ip, 1)[0] == INT3 {
            return HandlerStep::Declined;
        }
        self.regs.rip = ip;
        self.pc = HandlerPc::Iret;
        HandlerStep::Continue
    }

    fn desc_nr(&self, state: &PatchState) -> Result<usize, AccessFault> {
        let id = self.desc.expect("5.6 handler holds a desc");
        state.desc_array(id).map(|a| a.locs.len())
    }

    /// Runs one micro-step.
    pub fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        if let (HandlerPc::Entry, Some((addr, INT3))) = (self.pc, ctx.instrumented) {
            // B6: the call lands on an INT3 while this CPU is inside the INT3 handler. The
            // kernel would take the nested #BP on the same exception stack (or recurse into
            // poke_int3_handler()); "lest we inadvertently hit yet another INT3".
            return oops(format!(
                "INT3 handler: its instrumented first step called patchable text at {addr:#x}, which holds an INT3: a nested INT3 inside the INT3 handler (B6)"
            ));
        }
        let state = &mut *ctx.state;
        match self.pc {
            HandlerPc::Entry => match ctx.kind {
                HandlerKind::Detour | HandlerKind::Emulate => {
                    if state.nr_entries == 0 {
                        return self.next_handler(ctx);
                    }
                    self.pc = HandlerPc::BranchNr;
                }
                HandlerKind::Desc => match state.desc {
                    None => return self.next_handler(ctx),
                    Some(id) => {
                        self.desc = Some(id);
                        self.pc = HandlerPc::IncRef;
                    }
                },
                HandlerKind::PerCpuRefs => {
                    if state.percpu_refs[self.cpu] == 0 {
                        return self.next_handler(ctx);
                    }
                    state.percpu_refs[self.cpu] += 1;
                    self.got_ref = true;
                    self.pc = HandlerPc::BranchNr;
                }
                HandlerKind::GlobalRefs => {
                    if state.global_refs == 0 {
                        return self.next_handler(ctx);
                    }
                    state.global_refs += 1;
                    self.got_ref = true;
                    self.pc = HandlerPc::BranchNr;
                }
            },
            HandlerPc::IncRef => {
                let id = self.desc.expect("5.6 handler holds a desc");
                if let Err(e) = state.desc_array(id) {
                    return fault("try_get_desc", e);
                }
                if state.arrays[id].refs == 0 {
                    return self.next_handler(ctx);
                }
                state.arrays[id].refs += 1;
                self.got_ref = true;
                self.pc = HandlerPc::BranchNr;
            }
            HandlerPc::BranchNr => {
                let nr = match ctx.kind {
                    HandlerKind::Desc => match self.desc_nr(state) {
                        Ok(n) => n,
                        Err(e) => return fault("desc->nr_entries", e),
                    },
                    _ => state.nr_entries,
                };
                self.pc = if nr > 1 { HandlerPc::BsearchArgs } else { HandlerPc::LoadVec };
            }
            HandlerPc::BsearchArgs => {
                let (vec, num) = match ctx.kind {
                    HandlerKind::Detour | HandlerKind::Emulate | HandlerKind::GlobalRefs => {
                        (state.vec.map(VecRef::Array), state.nr_entries)
                    }
                    HandlerKind::Desc => match self.desc_nr(state) {
                        Ok(n) => (self.desc.map(VecRef::Array), n),
                        Err(e) => return fault("desc->vec", e),
                    },
                    HandlerKind::PerCpuRefs => (Some(VecRef::Static), state.nr_entries),
                };
                (self.vec, self.base, self.num) = (vec, 0, num);
                self.pc = HandlerPc::Probe;
            }
            HandlerPc::Probe => {
                // lib/bsearch.c: pivot = base + (num >> 1); cmp; narrow.
                if self.num == 0 {
                    return self.decline(ctx);
                }
                let pivot = self.base + (self.num >> 1);
                let addr = match state.entry(self.vec, pivot) {
                    Ok((loc, _)) => loc.addr,
                    Err(e) => return fault("bsearch", e),
                };
                if ip == addr {
                    self.found = pivot;
                    self.pc = HandlerPc::Emulate;
                } else {
                    if ip > addr {
                        self.base = pivot + 1;
                        self.num -= 1;
                    }
                    self.num >>= 1;
                }
            }
            HandlerPc::LoadVec => {
                self.vec = match ctx.kind {
                    HandlerKind::Detour | HandlerKind::Emulate | HandlerKind::GlobalRefs => {
                        state.vec.map(VecRef::Array)
                    }
                    HandlerKind::Desc => match self.desc_nr(state) {
                        Ok(_) => self.desc.map(VecRef::Array),
                        Err(e) => return fault("desc->vec", e),
                    },
                    HandlerKind::PerCpuRefs => Some(VecRef::Static),
                };
                self.pc = HandlerPc::CompareSingle;
            }
            HandlerPc::CompareSingle => match state.entry(self.vec, 0) {
                Ok((loc, _)) if loc.addr == ip => {
                    self.found = 0;
                    self.pc = HandlerPc::Emulate;
                }
                Ok(_) => return self.decline(ctx),
                Err(e) => return fault("text_poke_addr(tp)", e),
            },
            HandlerPc::Emulate => return self.emulate(ctx),
            HandlerPc::Put => {
                match ctx.kind {
                    HandlerKind::Desc => {
                        let id = self.desc.expect("5.6 handler holds a desc");
                        if let Err(e) = ctx.state.desc_array(id) {
                            return fault("put_desc", e);
                        }
                        ctx.state.arrays[id].refs -= 1;
                    }
                    HandlerKind::PerCpuRefs => ctx.state.percpu_refs[self.cpu] -= 1,
                    HandlerKind::GlobalRefs => ctx.state.global_refs -= 1,
                    HandlerKind::Detour | HandlerKind::Emulate => unreachable!("no reference to put"),
                }
                self.got_ref = false;
                if self.declined {
                    return self.next_handler(ctx);
                }
                self.pc = HandlerPc::Iret;
            }
            HandlerPc::KprobeGet => return self.get_kprobe(ctx),
            HandlerPc::Owner => return self.kprobe_owner(ctx),
            HandlerPc::KprobeVanished => return self.vanished(ctx),
            HandlerPc::Iret => return HandlerStep::Iret(self.regs),
        }
        HandlerStep::Continue
    }

    fn emulate(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        let has = |m: Mutant| ctx.mutants.contains(&m);
        let (loc, (array, entry)) = match ctx.state.entry(self.vec, self.found) {
            Ok((loc, at)) => (loc.clone(), at),
            Err(e) => return fault("emulate", e),
        };
        let loc: TextPokeLoc = if has(Mutant::EmulateOld) {
            let old = ctx.state.arrays[array].old[entry].clone();
            if old.first() == Some(&INT3) {
                return self.decline(ctx);
            }
            match text_poke_loc_init(ctx.rules, loc.addr, &old, None, None) {
                Ok(l) => l,
                Err(e) => return oops(format!("INT3 handler (emulate-old): {e}")),
            }
        } else {
            loc
        };
        let next = ip.wrapping_add(loc.len as u64);
        let target = next.wrapping_add(loc.disp as i64 as u64);
        let emulation = if ctx.kind == HandlerKind::Detour {
            // regs->ip = (unsigned long) tp->detour;
            int3_emulate_jmp(&self.regs, loc.detour)
        } else if has(Mutant::DetourHandler) {
            int3_emulate_jmp(&self.regs, next)
        } else {
            let modern = ctx.kind == HandlerKind::PerCpuRefs;
            let ret_ok = modern || ctx.kind == HandlerKind::GlobalRefs;
            match loc.opcode {
                // Someone poked an explicit INT3; they'll want to handle it: do not consume.
                INT3 => return self.decline(ctx),
                RET if ret_ok => match int3_emulate_ret(&self.regs, ctx.data) {
                    Ok(e) => e,
                    Err(msg) => return oops(format!("INT3 handler: {msg}")),
                },
                CALL => int3_emulate_call(&self.regs, target),
                JMP32 | JMP8 => int3_emulate_jmp(&self.regs, target),
                cc @ 0x70..=0x7f if modern => {
                    let cc = if has(Mutant::JccNoInvert) { (cc & 0xf) & !1 } else { cc & 0xf };
                    int3_emulate_jcc(&self.regs, cc, next, loc.disp as i64)
                }
                other => return oops(format!("INT3 handler: BUG(): opcode {other:#04x}")),
            }
        };
        self.pc = if self.got_ref { HandlerPc::Put } else { HandlerPc::Iret };
        HandlerStep::Emulated { array, entry, emulation }
    }
}

/// True if a kprobe on `insn` emulates it (a relative CALL, JMP or Jcc) rather than running
/// it from its out-of-line copy.
pub fn kprobe_emulates(insn: &[u8]) -> bool {
    kprobe_emulate(&Regs { rip: INT3_INSN_SIZE, ..Regs::default() }, insn).is_some()
}

/// The emulation of a probed relative CALL, JMP or Jcc (`kprobe_emulate_call()`,
/// `kprobe_emulate_jmp()`, `kprobe_emulate_jcc()` in `arch/x86/kernel/kprobes/core.c`, 6.0
/// on); `None` for an instruction that runs out of line. `regs.rip` is the INT3 address + 1.
pub fn kprobe_emulate(regs: &Regs, insn: &[u8]) -> Option<Emulation> {
    let ip = regs.rip - INT3_INSN_SIZE;
    let next = ip + insn.len() as u64;
    let rel = |bytes: &[u8]| -> i64 {
        match bytes.len() {
            1 => bytes[0] as i8 as i64,
            _ => i32::from_le_bytes(bytes[..4].try_into().unwrap_or_default()) as i64,
        }
    };
    let target = |disp: i64| next.wrapping_add(disp as u64);
    match insn {
        [CALL, d @ ..] if d.len() == 4 => Some(int3_emulate_call(regs, target(rel(d)))),
        [JMP32, d @ ..] if d.len() == 4 => Some(int3_emulate_jmp(regs, target(rel(d)))),
        [JMP8, d] => Some(int3_emulate_jmp(regs, target(rel(&[*d])))),
        [cc @ 0x70..=0x7f, d] => Some(int3_emulate_jcc(regs, cc & 0xf, next, rel(&[*d]))),
        [0x0f, cc @ 0x80..=0x8f, d @ ..] if d.len() == 4 => Some(int3_emulate_jcc(regs, cc & 0xf, next, rel(d))),
        _ => None,
    }
}
