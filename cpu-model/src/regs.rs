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
    /// One `uc_reg_read_batch` call, not 18 `uc_reg_read`s: each call of the engine's API
    /// syncs its JIT state once (a tenth of a quiet batched run went to reading registers one
    /// by one at every loop head).
    pub(crate) fn read_from<D>(uc: &Unicorn<'_, D>) -> Result<Self, CpuError> {
        const N: usize = Reg::ALL.len() + 2;
        let mut ids = [0i32; N];
        for (id, r) in ids.iter_mut().zip(Reg::ALL) {
            *id = r.unicorn() as i32;
        }
        ids[N - 2] = RegisterX86::RIP as i32;
        ids[N - 1] = RegisterX86::EFLAGS as i32;
        let mut values = [0u64; N];
        let mut ptrs = [std::ptr::null_mut::<std::ffi::c_void>(); N];
        for (p, v) in ptrs.iter_mut().zip(values.iter_mut()) {
            *p = (v as *mut u64).cast();
        }
        // SAFETY: `uc` is a live engine; `ids` holds N valid x86 register ids, and each of the N
        // pointers in `ptrs` points at a distinct u64 of `values`, which outlives the call and
        // is large enough for every 64-bit register read (no register here is wider).
        let err =
            unsafe { unicorn_engine::uc_reg_read_batch(uc.get_handle(), ids.as_ptr(), ptrs.as_mut_ptr(), N as i32) };
        Result::<(), _>::from(err).ctx("uc_reg_read_batch")?;
        let mut regs = Regs::default();
        for (k, r) in Reg::ALL.into_iter().enumerate() {
            regs.gpr[r as usize] = values[k];
        }
        regs.rip = values[N - 2];
        regs.rflags = values[N - 1];
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
