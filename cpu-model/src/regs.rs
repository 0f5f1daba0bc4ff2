//! The register file of a trapped vCPU, shaped like the kernel's `struct pt_regs` as far as
//! the INT3 handler's emulation needs it (`int3_emulate_*` in arch/x86/include/asm/text-patching.h
//! touch `ip`, `sp`, `flags` and the stack).

use unicorn_engine::{RegisterX86, Unicorn};

use crate::error::UcContext;
use crate::CpuError;

/// General-purpose registers in encoding order (rax = 0 … r15 = 15).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[repr(u8)]
#[allow(missing_docs)]
pub enum Reg {
    Rax,
    Rcx,
    Rdx,
    Rbx,
    Rsp,
    Rbp,
    Rsi,
    Rdi,
    R8,
    R9,
    R10,
    R11,
    R12,
    R13,
    R14,
    R15,
}

impl Reg {
    /// All sixteen, in encoding order.
    pub const ALL: [Reg; 16] = [
        Reg::Rax,
        Reg::Rcx,
        Reg::Rdx,
        Reg::Rbx,
        Reg::Rsp,
        Reg::Rbp,
        Reg::Rsi,
        Reg::Rdi,
        Reg::R8,
        Reg::R9,
        Reg::R10,
        Reg::R11,
        Reg::R12,
        Reg::R13,
        Reg::R14,
        Reg::R15,
    ];

    fn unicorn(self) -> RegisterX86 {
        use RegisterX86 as U;
        match self {
            Reg::Rax => U::RAX,
            Reg::Rcx => U::RCX,
            Reg::Rdx => U::RDX,
            Reg::Rbx => U::RBX,
            Reg::Rsp => U::RSP,
            Reg::Rbp => U::RBP,
            Reg::Rsi => U::RSI,
            Reg::Rdi => U::RDI,
            Reg::R8 => U::R8,
            Reg::R9 => U::R9,
            Reg::R10 => U::R10,
            Reg::R11 => U::R11,
            Reg::R12 => U::R12,
            Reg::R13 => U::R13,
            Reg::R14 => U::R14,
            Reg::R15 => U::R15,
        }
    }
}

/// Arithmetic flags tested by `int3_emulate_jcc` (bit positions in RFLAGS).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[allow(missing_docs)]
pub enum Flag {
    Cf = 0,
    Pf = 2,
    Zf = 6,
    Sf = 7,
    Of = 11,
}

/// Saved guest state at a trap: 16 GPRs, RIP and RFLAGS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Regs {
    /// General-purpose registers, indexed by [`Reg`].
    pub gpr: [u64; 16],
    /// Instruction pointer. At an INT3 trap this is the INT3 address + 1, as on hardware.
    pub rip: u64,
    /// RFLAGS.
    pub rflags: u64,
}

impl Regs {
    /// Reads one GPR.
    pub fn get(&self, r: Reg) -> u64 {
        self.gpr[r as usize]
    }

    /// Writes one GPR.
    pub fn set(&mut self, r: Reg, v: u64) {
        self.gpr[r as usize] = v;
    }

    /// Stack pointer.
    pub fn sp(&self) -> u64 {
        self.get(Reg::Rsp)
    }

    /// Tests one flag.
    pub fn flag(&self, f: Flag) -> bool {
        self.rflags & (1 << f as u32) != 0
    }

    /// Reads the whole register file from an engine.
    pub(crate) fn read_from<D>(uc: &Unicorn<'_, D>) -> Result<Self, CpuError> {
        let mut regs = Regs::default();
        for r in Reg::ALL {
            regs.gpr[r as usize] = uc.reg_read(r.unicorn()).ctx("reg_read")?;
        }
        regs.rip = uc.reg_read(RegisterX86::RIP).ctx("reg_read")?;
        regs.rflags = uc.reg_read(RegisterX86::EFLAGS).ctx("reg_read")?;
        Ok(regs)
    }

    /// Writes the whole register file into an engine.
    pub(crate) fn write_to<D>(&self, uc: &mut Unicorn<'_, D>) -> Result<(), CpuError> {
        for r in Reg::ALL {
            uc.reg_write(r.unicorn(), self.gpr[r as usize]).ctx("reg_write")?;
        }
        uc.reg_write(RegisterX86::EFLAGS, self.rflags).ctx("reg_write")?;
        uc.reg_write(RegisterX86::RIP, self.rip).ctx("reg_write")?;
        Ok(())
    }
}
