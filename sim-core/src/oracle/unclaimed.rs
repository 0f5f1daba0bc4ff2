//! Oracle 2, unclaimed INT3 (DESIGN.md §2.7): a trap that `poke_int3_handler()` declines and
//! no kprobe owns is what `do_int3()` would die on (`die("int3", …)`, an oops). A stale INT3
//! after the patching state is torn down is the classic cause (the sync after the first byte
//! exists to prevent it).

use cpu_model::{ExecutedInsn, MAX_INSN_LEN};

/// The violation of an INT3 at `ip` claimed by nobody: the executed byte (with the store epoch
/// the vCPU's view showed it from) and the message.
pub fn report(ip: u64, byte: u8, epoch: u32) -> (ExecutedInsn, String) {
    let mut bytes = [0; MAX_INSN_LEN];
    let mut epochs = [0; MAX_INSN_LEN];
    bytes[0] = byte;
    epochs[0] = epoch;
    let insn = ExecutedInsn { addr: ip, len: 1, window: 1, bytes, epochs, code: iced_x86::Code::Int3 };
    (insn, format!("INT3 at {ip:#x} claimed by no handler and no kprobe (the kernel would oops)"))
}
