//! What an instruction is to the simulated CPUs, whoever fetches it (a vCPU, a local run, the
//! compiled kernel's CPU, the TSO step): the longest encoding the fetch window must hold (SDM
//! vol. 2A §2.3.11: 15 bytes), and the instructions pokesim refuses to run.

use iced_x86::Code;

/// The longest x86 instruction.
pub const MAX_INSN_LEN: usize = 15;

/// Instructions a guest may not run: they would stop the engine silently (hlt), act as no-ops
/// (syscall without a hook), need an IDT the model does not have (int n, into, int1), or are
/// defined to fault (ud0/1/2). IRET is refused because only the modelled handler returns from
/// a trap.
pub(crate) fn refused(code: Code) -> bool {
    matches!(
        code,
        Code::Hlt
            | Code::Syscall
            | Code::Sysenter
            | Code::Sysretd
            | Code::Sysretq
            | Code::Sysexitd
            | Code::Sysexitq
            | Code::Int_imm8
            | Code::Int1
            | Code::Into
            | Code::Ud0
            | Code::Ud0_r32_rm32
            | Code::Ud0_r64_rm64
            | Code::Ud1_r32_rm32
            | Code::Ud1_r64_rm64
            | Code::Ud2
            | Code::Iretw
            | Code::Iretd
            | Code::Iretq
    )
}
