//! The kernel's instruction emulation helpers, `int3_emulate_*` of
//! arch/x86/include/asm/text-patching.h (reference/kernel-protocol.md §2), on a saved register
//! file. At handler entry `regs.rip` is the INT3 address + 1.
//!
//! Memory effects are returned, not applied, so that the emulation oracle can compare them
//! with the reference executor before they reach the guest.

use cpu_model::{Reg, Regs};

/// `INT3_INSN_SIZE`.
pub const INT3_INSN_SIZE: u64 = 1;
/// `CALL_INSN_SIZE`: `int3_emulate_call` pushes `ip - INT3_INSN_SIZE + CALL_INSN_SIZE`,
/// hard-coded, whatever the patched length.
pub const CALL_INSN_SIZE: u64 = 5;

/// The effect of an emulation: the new register file and at most one stack store.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Emulation {
    /// Registers after the emulated instruction.
    pub regs: Regs,
    /// `(address, value)` of a pushed qword.
    pub push: Option<(u64, u64)>,
}

/// `int3_emulate_jmp(regs, ip)`: `regs->ip = ip`.
pub fn int3_emulate_jmp(regs: &Regs, ip: u64) -> Emulation {
    let mut r = *regs;
    r.rip = ip;
    Emulation { regs: r, push: None }
}

/// `int3_emulate_push(regs, val)`: `regs->sp -= sizeof(unsigned long); *(unsigned long *)regs->sp = val`.
fn int3_emulate_push(regs: &mut Regs, val: u64) -> (u64, u64) {
    let sp = regs.sp().wrapping_sub(8);
    regs.set(Reg::Rsp, sp);
    (sp, val)
}

/// `int3_emulate_call(regs, func)`: push `regs->ip - INT3_INSN_SIZE + CALL_INSN_SIZE`
/// (the site + 5), then jump to `func`.
pub fn int3_emulate_call(regs: &Regs, func: u64) -> Emulation {
    let mut r = *regs;
    let push = int3_emulate_push(&mut r, regs.rip - INT3_INSN_SIZE + CALL_INSN_SIZE);
    r.rip = func;
    Emulation { regs: r, push: Some(push) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_pushes_site_plus_five() {
        let mut regs = Regs { rip: 0x1001, ..Regs::default() };
        regs.set(Reg::Rsp, 0x8000);
        let e = int3_emulate_call(&regs, 0x2000);
        assert_eq!(e.regs.rip, 0x2000);
        assert_eq!(e.regs.sp(), 0x7ff8);
        assert_eq!(e.push, Some((0x7ff8, 0x1005)));
        let j = int3_emulate_jmp(&regs, 0x1005);
        assert_eq!((j.regs.rip, j.regs.sp(), j.push), (0x1005, 0x8000, None));
    }
}
