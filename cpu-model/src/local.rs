//! Local runs: many guest instructions in one `emu_start` (DESIGN.md §2.5b, issue 26).
//!
//! A *local* instruction reads no patchable byte, is no kprobe's address, is not the loop
//! head, is not INT3, CPUID, RDTSC/RDTSCP, an instruction that changes `RFLAGS.IF` nor one the
//! model refuses ([`crate::Vcpu::step`]): running it touches only its own vCPU's registers and
//! private data and no view unit, so it commutes with every other actor's events — the same
//! notion as state-space search's local steps (`sim_core::Machine::local_step`). A local run
//! executes such instructions with `emu_start(rip, 0, 0, limit + 1)` — the count mode every
//! single step already uses, so no translated block is flushed (reference/unicorn.md §1) — and
//! a `UC_HOOK_CODE` over every address that stops the engine *before* the first instruction
//! that is not local (Unicorn runs a code hook before its instruction; `emu_stop()` from it
//! keeps that instruction from running, reference/unicorn.md §1 "add_code_hook ... emu_stop"),
//! or before instruction `limit + 1`. The hook also notes the address of the last instruction
//! it let run, so a fault names the instruction that faulted, exactly as a single step would.
//!
//! The hook is installed only on vCPUs of runs that batch ([`crate::Vcpu::enable_local_runs`]);
//! while no local run is in progress it returns at once.

use std::cell::{Cell, RefCell};

use iced_x86::{Code, Decoder, DecoderOptions};

use crate::insn::{refused, MAX_INSN_LEN};

/// An address's class, cached per text byte: not yet decoded, local, or a stop.
const UNKNOWN: u8 = 0;
const LOCAL: u8 = 1;
const STOP: u8 = 2;

/// What a local run's code hook reads and writes (shared between the vCPU and its hook).
pub(crate) struct LocalCtl {
    /// The text region: `[base, base + class.len())`.
    base: u64,
    /// True while a local run is in progress.
    pub(crate) active: Cell<bool>,
    /// Instructions let run so far in this local run.
    pub(crate) ran: Cell<u64>,
    /// The most this local run may execute.
    pub(crate) limit: Cell<u64>,
    /// The address of the last instruction let run.
    pub(crate) last: Cell<u64>,
    /// Per text byte: the class of an instruction starting there.
    class: RefCell<Vec<u8>>,
    /// Per text byte: a byte stores may write, or an address a run must stop at.
    stop_byte: Vec<bool>,
    /// Per text byte: an address a run must stop at even when the instruction there is local.
    stop_at: Vec<bool>,
    /// An address a run stops at unless it starts there (the loop head, whose invariant the
    /// caller checks between two runs).
    pause: u64,
}

impl LocalCtl {
    /// The hook's state for a text of `len` bytes at `base`: runs stop at every byte of
    /// `patchable` (address, length) ranges and at the addresses `stops`, and pause at `pause`.
    pub(crate) fn new(base: u64, len: u64, patchable: &[(u64, u64)], stops: &[u64], pause: u64) -> Self {
        let mut stop_byte = vec![false; len as usize];
        let mut stop_at = vec![false; len as usize];
        for &(a, l) in patchable {
            for addr in a..a + l {
                if let Some(b) = addr.checked_sub(base).and_then(|o| stop_byte.get_mut(o as usize)) {
                    *b = true;
                }
            }
        }
        for &addr in stops {
            if let Some(b) = addr.checked_sub(base).and_then(|o| stop_at.get_mut(o as usize)) {
                *b = true;
            }
        }
        LocalCtl {
            base,
            active: Cell::new(false),
            ran: Cell::new(0),
            limit: Cell::new(0),
            last: Cell::new(0),
            class: RefCell::new(vec![UNKNOWN; len as usize]),
            stop_byte,
            stop_at,
            pause,
        }
    }

    /// The code hook: called before the instruction at `addr` runs. Returns true if the run
    /// must stop before it.
    pub(crate) fn before(&self, addr: u64, read: impl FnOnce(u64, &mut [u8]) -> bool) -> bool {
        if !self.active.get() {
            return false;
        }
        let ran = self.ran.get();
        if ran >= self.limit.get() || (addr == self.pause && ran > 0) || !self.is_local(addr, read) {
            return true;
        }
        self.ran.set(ran + 1);
        self.last.set(addr);
        false
    }

    /// True if the instruction at `addr` is local (decoded once: bytes outside the patchable
    /// ranges never change).
    fn is_local(&self, addr: u64, read: impl FnOnce(u64, &mut [u8]) -> bool) -> bool {
        let Some(off) = addr.checked_sub(self.base).map(|o| o as usize).filter(|&o| o < self.stop_at.len()) else {
            return false;
        };
        let cached = self.class.borrow()[off];
        if cached != UNKNOWN {
            return cached == LOCAL;
        }
        let class = if self.classify(addr, off, read) { LOCAL } else { STOP };
        self.class.borrow_mut()[off] = class;
        class == LOCAL
    }

    fn classify(&self, addr: u64, off: usize, read: impl FnOnce(u64, &mut [u8]) -> bool) -> bool {
        if self.stop_at[off] || self.stop_byte[off] {
            return false;
        }
        let n = MAX_INSN_LEN.min(self.stop_at.len() - off);
        let mut bytes = [0u8; MAX_INSN_LEN];
        if !read(addr, &mut bytes[..n]) {
            return false;
        }
        let insn = Decoder::with_ip(64, &bytes[..n], addr, DecoderOptions::NONE).decode();
        if insn.is_invalid() || !local_code(insn.code()) {
            return false;
        }
        let span = off..off + insn.len();
        !self.stop_byte[span.clone()].contains(&true) && !self.stop_at[span].contains(&true)
    }
}

/// False for the instructions a local run never executes: a trap, serialisation, the time
/// stamp counter (its value is the step count, set per single step), anything that changes
/// `RFLAGS.IF`, and what the model refuses.
fn local_code(code: Code) -> bool {
    !refused(code)
        && !matches!(
            code,
            Code::Int3
                | Code::Cpuid
                | Code::Rdtsc
                | Code::Rdtscp
                | Code::Cli
                | Code::Sti
                | Code::Popfw
                | Code::Popfd
                | Code::Popfq
        )
}
