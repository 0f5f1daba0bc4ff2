//! The kernel's instruction emulation helpers, `int3_emulate_*` of
//! arch/x86/include/asm/text-patching.h (reference/kernel-protocol.md §2), on a saved register
//! file. At handler entry `regs.rip` is the INT3 address + 1.
//!
//! Memory effects are returned, not applied, so that the emulation oracle can compare them
//! with the reference executor before they reach the guest.

use cpu_model::{Flag, Reg, Regs, SharedRegion};

/// `INT3_INSN_SIZE`.
pub(crate) const INT3_INSN_SIZE: u64 = 1;
/// `CALL_INSN_SIZE`: `int3_emulate_call` pushes `ip - INT3_INSN_SIZE + CALL_INSN_SIZE`,
/// hard-coded, whatever the patched length.
pub(crate) const CALL_INSN_SIZE: u64 = 5;

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

/// `int3_emulate_pop(regs)`: `val = *(unsigned long *)regs->sp; regs->sp += sizeof(unsigned long)`.
fn int3_emulate_pop(regs: &mut Regs, stack: &SharedRegion) -> Result<u64, String> {
    let sp = regs.sp();
    let val = stack.read_u64(sp).ok_or_else(|| format!("int3_emulate_pop from {sp:#x}, outside the stack"))?;
    regs.set(Reg::Rsp, sp.wrapping_add(8));
    Ok(val)
}

/// `int3_emulate_ret(regs)`: pop the return address and jump there.
pub(crate) fn int3_emulate_ret(regs: &Regs, stack: &SharedRegion) -> Result<Emulation, String> {
    let mut r = *regs;
    r.rip = int3_emulate_pop(&mut r, stack)?;
    Ok(Emulation { regs: r, push: None })
}

/// `__emulate_cc(flags, cc)`: whether condition code `cc` (0..=15) holds.
pub fn emulate_cc(regs: &Regs, cc: u8) -> bool {
    debug_assert!(cc < 16);
    let invert = cc & 1 != 0;
    let matched = if cc < 0xc {
        // jcc_mask[] = { OF, CF, ZF, CF|ZF, SF, PF }
        match cc >> 1 {
            0 => regs.flag(Flag::Of),
            1 => regs.flag(Flag::Cf),
            2 => regs.flag(Flag::Zf),
            3 => regs.flag(Flag::Cf) || regs.flag(Flag::Zf),
            4 => regs.flag(Flag::Sf),
            _ => regs.flag(Flag::Pf),
        }
    } else {
        let lt = regs.flag(Flag::Sf) ^ regs.flag(Flag::Of);
        if cc >= 0xe {
            lt || regs.flag(Flag::Zf)
        } else {
            lt
        }
    };
    matched != invert
}

/// `int3_emulate_jcc(regs, cc, ip, disp)`: `if (__emulate_cc(regs->flags, cc)) ip += disp;
/// int3_emulate_jmp(regs, ip)`. `ip` is already `site + len`.
pub fn int3_emulate_jcc(regs: &Regs, cc: u8, ip: u64, disp: i64) -> Emulation {
    let target = if emulate_cc(regs, cc) { ip.wrapping_add(disp as u64) } else { ip };
    int3_emulate_jmp(regs, target)
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

    #[test]
    fn condition_codes_follow_the_sdm_table() {
        let with =
            |flags: &[Flag]| Regs { rflags: flags.iter().fold(0x202, |f, b| f | 1 << *b as u32), ..Regs::default() };
        // jo/jno, jb/jae, je/jne, jbe/ja, js/jns, jp/jnp, jl/jge, jle/jg
        assert!(emulate_cc(&with(&[Flag::Of]), 0x0) && !emulate_cc(&with(&[Flag::Of]), 0x1));
        assert!(emulate_cc(&with(&[Flag::Cf]), 0x2) && emulate_cc(&with(&[]), 0x3));
        assert!(emulate_cc(&with(&[Flag::Zf]), 0x4) && emulate_cc(&with(&[]), 0x5));
        assert!(emulate_cc(&with(&[Flag::Zf]), 0x6) && emulate_cc(&with(&[]), 0x7));
        assert!(emulate_cc(&with(&[Flag::Sf]), 0x8) && emulate_cc(&with(&[Flag::Pf]), 0xa));
        assert!(emulate_cc(&with(&[Flag::Sf]), 0xc) && !emulate_cc(&with(&[Flag::Sf, Flag::Of]), 0xc));
        assert!(emulate_cc(&with(&[Flag::Zf]), 0xe) && emulate_cc(&with(&[]), 0xf));
    }
}
