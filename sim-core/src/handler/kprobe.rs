//! `do_int3()`'s second handler, `kprobe_int3_handler()` of `arch/x86/kernel/kprobes/core.c`:
//! `get_kprobe(addr)`, the kprobe's own handling (out of line, or `kprobe_emulate_call()`,
//! `_jmp()`, `_jcc()` from 6.0), and up to 6.2 the recovery of a vanished INT3.

use cpu_model::Regs;

use super::{Handler, HandlerCtx, HandlerPc, HandlerStep};
use crate::emulate::{int3_emulate_call, int3_emulate_jcc, int3_emulate_jmp, Emulation, INT3_INSN_SIZE};
use crate::protocol::loc::{CALL, INT3, JMP32, JMP8};

impl Handler {
    /// [`HandlerPc::KprobeGet`], `kprobe_int3_handler()`'s lookup: a registered kprobe takes
    /// the trap.
    pub(super) fn get_kprobe(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        match ctx.state.kprobes.iter().position(|k| k.registered && k.addr == ip) {
            Some(k) => {
                let kp = &ctx.state.kprobes[k];
                if !kprobe_emulates(&kp.insn) {
                    // setup_singlestep(): the probed instruction runs from its copy.
                    self.regs.rip = kp.ool;
                }
                self.kprobe = Some(k);
                self.pc = HandlerPc::Owner;
                HandlerStep::KprobeHit
            }
            None if ctx.recovers_vanished_int3 => self.goto(HandlerPc::KprobeVanished),
            // 6.3+: `return 0;` — notify_die(), then die("int3").
            None => HandlerStep::Declined,
        }
    }

    /// [`HandlerPc::Owner`], the kprobe's own handling: a CALL, JMP or Jcc is emulated
    /// (anything else already resumes at its out-of-line copy, which jumps back after the
    /// probed instruction).
    pub(super) fn kprobe_owner(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        self.pc = HandlerPc::Iret;
        let emulated = self.kprobe.and_then(|k| {
            let kp = &ctx.state.kprobes[k];
            let emulation = kprobe_emulate(&self.regs, &kp.insn).filter(|_| self.regs.rip != kp.ool)?;
            Some(HandlerStep::KprobeEmulated { kprobe: k, emulation })
        });
        emulated.unwrap_or(HandlerStep::Continue)
    }

    /// [`HandlerPc::KprobeVanished`], `kprobe_int3_handler()` with no kprobe: if the INT3 is
    /// gone from memory, back up over it and return 1 (IRET, which serializes; the CPU fetches
    /// the instruction again).
    pub(super) fn vanished(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let ip = self.ip();
        if ctx.text.read(ip, 1)[0] == INT3 {
            return HandlerStep::Declined;
        }
        self.regs.rip = ip;
        self.goto(HandlerPc::Iret)
    }
}

/// True if a kprobe on `insn` emulates it (a relative CALL, JMP or Jcc) rather than running
/// it from its out-of-line copy.
pub(crate) fn kprobe_emulates(insn: &[u8]) -> bool {
    kprobe_emulate(&Regs { rip: INT3_INSN_SIZE, ..Regs::default() }, insn).is_some()
}

/// The emulation of a probed relative CALL, JMP or Jcc (`kprobe_emulate_call()`,
/// `kprobe_emulate_jmp()`, `kprobe_emulate_jcc()` in `arch/x86/kernel/kprobes/core.c`, 6.0
/// on); `None` for an instruction that runs out of line. `regs.rip` is the INT3 address + 1.
pub(crate) fn kprobe_emulate(regs: &Regs, insn: &[u8]) -> Option<Emulation> {
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
