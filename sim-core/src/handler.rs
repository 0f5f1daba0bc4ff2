//! The INT3 handler as micro-steps (DESIGN.md §2.5). Each step is one shared-memory access or
//! one action of the kernel code, so the patcher can interleave between any two of them.
//!
//! `poke_int3_handler()` of the seed (reference/kernel-protocol.md §1.1):
//!
//! ```text
//! smp_rmb();
//! if (likely(!bp_patching.nr_entries)) return 0;          // CheckNr
//! if (user_mode(regs)) return 0;                           // (kernel text only here)
//! ip = (void *) regs->ip - INT3_INSN_SIZE;
//! if (unlikely(bp_patching.nr_entries > 1)) {              // BranchNr
//!         tp = bsearch(ip, bp_patching.vec, bp_patching.nr_entries, …);   // BsearchArgs, Probe*
//!         if (!tp) return 0;
//! } else {
//!         tp = bp_patching.vec;                            // LoadVec
//!         if (tp->addr != ip) return 0;                    // CompareSingle
//! }
//! ip += tp->len;                                           // Emulate
//! switch (tp->opcode) {
//! case INT3_INSN_OPCODE: return 0;                         // not consumed
//! case CALL_INSN_OPCODE: int3_emulate_call(regs, ip + tp->rel32); break;
//! case JMP32_INSN_OPCODE: case JMP8_INSN_OPCODE: int3_emulate_jmp(regs, ip + tp->rel32); break;
//! default: BUG();
//! }
//! return 1;                                                // then IRET (serializing)
//! ```

use cpu_model::Regs;

use crate::emulate::{int3_emulate_call, int3_emulate_jmp, Emulation, INT3_INSN_SIZE};
use crate::patching::PatchState;
use crate::protocol::loc::{CALL, INT3, JMP32, JMP8};

/// Where the handler is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandlerPc {
    /// `smp_rmb(); if (!bp_patching.nr_entries) return 0;`
    CheckNr,
    /// `if (bp_patching.nr_entries > 1)`
    BranchNr,
    /// Loads `bp_patching.vec` and `bp_patching.nr_entries` as bsearch's arguments.
    BsearchArgs,
    /// One `patch_cmp` probe of the binary search.
    Probe,
    /// `tp = bp_patching.vec`
    LoadVec,
    /// `if (tp->addr != ip) return 0;`
    CompareSingle,
    /// Reads `tp->len`, `tp->opcode`, `tp->rel32` and emulates.
    Emulate,
    /// Return from the exception: IRET, which serializes.
    Iret,
}

impl HandlerPc {
    /// Short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            HandlerPc::CheckNr => "check-nr",
            HandlerPc::BranchNr => "branch-nr",
            HandlerPc::BsearchArgs => "bsearch-args",
            HandlerPc::Probe => "probe",
            HandlerPc::LoadVec => "load-vec",
            HandlerPc::CompareSingle => "compare",
            HandlerPc::Emulate => "emulate",
            HandlerPc::Iret => "iret",
        }
    }
}

/// The result of one handler step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerStep {
    /// More steps follow.
    Continue,
    /// The instruction of `vec[entry]` of array `array` was emulated; the machine checks it
    /// against the reference and applies it.
    Emulated { array: usize, entry: usize, emulation: Emulation },
    /// `return 0`: the trap is not this handler's; it goes to the next owner.
    Declined,
    /// IRET with these registers.
    Iret(Regs),
    /// The handler faulted (an oops): NULL or freed vector, read past it, or `BUG()`.
    Fault(String),
}

/// One vCPU's activation of the handler.
#[derive(Clone, Debug)]
pub struct Handler {
    /// The saved register file (`struct pt_regs`); `rip` = INT3 address + 1 at entry.
    pub regs: Regs,
    /// The qword at `[rsp]` when the trap was taken (for the reference executor).
    pub stack_top: u64,
    pc: HandlerPc,
    vec: Option<usize>,
    base: usize,
    num: usize,
    found: usize,
}

impl Handler {
    /// Entry with the trapped register file.
    pub fn new(regs: Regs, stack_top: u64) -> Self {
        Self { regs, stack_top, pc: HandlerPc::CheckNr, vec: None, base: 0, num: 0, found: 0 }
    }

    /// The next micro-step.
    pub fn pc(&self) -> HandlerPc {
        self.pc
    }

    /// `regs->ip - INT3_INSN_SIZE`: the trapping INT3's address.
    pub fn ip(&self) -> u64 {
        self.regs.rip - INT3_INSN_SIZE
    }

    /// Records that the machine applied an emulation; the next step is IRET.
    pub fn emulated(&mut self, emulation: &Emulation) {
        debug_assert_eq!(self.pc, HandlerPc::Iret);
        self.regs = emulation.regs;
    }

    /// Runs one micro-step of `poke_int3_handler()` against the shared patching state.
    pub fn step(&mut self, state: &PatchState) -> HandlerStep {
        let ip = self.ip();
        match self.pc {
            HandlerPc::CheckNr => {
                if state.nr_entries == 0 {
                    return HandlerStep::Declined;
                }
                self.pc = HandlerPc::BranchNr;
            }
            HandlerPc::BranchNr => {
                self.pc = if state.nr_entries > 1 { HandlerPc::BsearchArgs } else { HandlerPc::LoadVec };
            }
            HandlerPc::BsearchArgs => {
                self.vec = state.vec;
                self.base = 0;
                self.num = state.nr_entries;
                self.pc = HandlerPc::Probe;
            }
            HandlerPc::Probe => {
                // lib/bsearch.c: pivot = base + (num >> 1); cmp; narrow.
                if self.num == 0 {
                    return HandlerStep::Declined;
                }
                let pivot = self.base + (self.num >> 1);
                let addr = match state.entry(self.vec, pivot) {
                    Ok(loc) => loc.addr,
                    Err(e) => return HandlerStep::Fault(format!("poke_int3_handler: bsearch: {e}")),
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
                self.vec = state.vec;
                self.pc = HandlerPc::CompareSingle;
            }
            HandlerPc::CompareSingle => match state.entry(self.vec, 0) {
                Ok(loc) if loc.addr == ip => {
                    self.found = 0;
                    self.pc = HandlerPc::Emulate;
                }
                Ok(_) => return HandlerStep::Declined,
                Err(e) => return HandlerStep::Fault(format!("poke_int3_handler: tp->addr: {e}")),
            },
            HandlerPc::Emulate => {
                let loc = match state.entry(self.vec, self.found) {
                    Ok(loc) => loc,
                    Err(e) => return HandlerStep::Fault(format!("poke_int3_handler: emulate: {e}")),
                };
                let next = ip.wrapping_add(loc.len as u64);
                let target = next.wrapping_add(loc.rel32 as i64 as u64);
                let emulation = match loc.opcode {
                    // Someone poked an explicit INT3; they'll want to handle it: do not consume.
                    INT3 => return HandlerStep::Declined,
                    CALL => int3_emulate_call(&self.regs, target),
                    JMP32 | JMP8 => int3_emulate_jmp(&self.regs, target),
                    other => return HandlerStep::Fault(format!("poke_int3_handler: BUG(): opcode {other:#04x}")),
                };
                self.pc = HandlerPc::Iret;
                return HandlerStep::Emulated {
                    array: self.vec.expect("entry() succeeded"),
                    entry: self.found,
                    emulation,
                };
            }
            HandlerPc::Iret => return HandlerStep::Iret(self.regs),
        }
        HandlerStep::Continue
    }
}
