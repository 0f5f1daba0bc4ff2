//! `struct pt_regs` (arch/x86/include/asm/ptrace.h, x86-64) of an INT3 trap, as the kernel's
//! entry code builds it for `do_int3()`: one layout for the simulator's handler frame
//! ([`super::activation`]) and the hardware run's (`hw`, built from a signal context).

use cpu_model::{Reg, Regs};

/// The general registers in frame order (qwords 0..15); `orig_ax` follows `di`.
const GENERAL: [Reg; 15] = [
    Reg::R15,
    Reg::R14,
    Reg::R13,
    Reg::R12,
    Reg::Rbp,
    Reg::Rbx,
    Reg::R11,
    Reg::R10,
    Reg::R9,
    Reg::R8,
    Reg::Rax,
    Reg::Rcx,
    Reg::Rdx,
    Reg::Rsi,
    Reg::Rdi,
];
/// Qword indices of `orig_ax`, `ip`, `cs`, `flags`, `sp`, `ss`.
const ORIG_AX: usize = 15;
const IP: usize = 16;
const CS: usize = 17;
const FLAGS: usize = 18;
const SP: usize = 19;
const SS: usize = 20;
/// `sizeof(struct pt_regs)` in qwords.
pub const QWORDS: usize = 21;
/// `sizeof(struct pt_regs)`.
pub const SIZE: u64 = 8 * QWORDS as u64;
/// `__KERNEL_CS`, `__KERNEL_DS`: the trap came from kernel mode (`user_mode(regs)` is false).
const KERNEL_CS: u64 = 0x10;
const KERNEL_DS: u64 = 0x18;

/// The frame of a trap with registers `trapped`: `ip` is the INT3's address + 1 (as
/// `trapped.rip` already is), `orig_ax` -1, `sp` the interrupted stack (an emulated CALL
/// pushes there).
pub fn frame(trapped: &Regs) -> [u64; QWORDS] {
    let mut f = [0u64; QWORDS];
    for (i, reg) in GENERAL.iter().enumerate() {
        f[i] = trapped.get(*reg);
    }
    f[ORIG_AX] = u64::MAX;
    f[IP] = trapped.rip;
    f[CS] = KERNEL_CS;
    f[FLAGS] = trapped.rflags;
    f[SP] = trapped.sp();
    f[SS] = KERNEL_DS;
    f
}

/// The registers an IRET from `frame` resumes with: `trapped` with the frame's general
/// registers, `ip`, `flags` and `sp`.
pub fn resumed(frame: &[u64; QWORDS], trapped: &Regs) -> Regs {
    let mut out = *trapped;
    for (i, reg) in GENERAL.iter().enumerate() {
        out.set(*reg, frame[i]);
    }
    out.rip = frame[IP];
    out.rflags = frame[FLAGS];
    out.set(Reg::Rsp, frame[SP]);
    out
}
