//! Oracle 2, unclaimed INT3 (DESIGN.md §2.7): a trap that every handler `do_int3()` asks
//! declines — `poke_int3_handler()`, then (with `CONFIG_KPROBES`) `kprobe_int3_handler()`,
//! then `notify_die(DIE_INT3)` — is what it dies on (`die("int3", …)`, an oops). A stale INT3
//! after the patching state is torn down is the classic cause on a kernel without kprobes (the
//! sync after the first byte exists to prevent it); with kprobes, only an INT3 still in memory
//! that no kprobe owns is unclaimed.

use cpu_model::{ExecutedInsn, MAX_INSN_LEN};

use crate::protocol::Version;

/// The violation of an INT3 at `ip` claimed by nobody on `version`: the executed byte (with the
/// store epoch the vCPU's view showed it from) and the message.
pub fn report(ip: u64, byte: u8, epoch: u32, kprobes: bool, version: &Version) -> (ExecutedInsn, String) {
    let mut bytes = [0; MAX_INSN_LEN];
    let mut epochs = [0; MAX_INSN_LEN];
    bytes[0] = byte;
    epochs[0] = epoch;
    let insn = ExecutedInsn { addr: ip, len: 1, window: 1, bytes, epochs, code: iced_x86::Code::Int3 };
    let handler = version.names.handler_function;
    let who = match (kprobes, version.recovery == crate::protocol::Recovery::Retries) {
        (true, true) => format!("{handler}, kprobe_int3_handler() (no kprobe there, and the INT3 is still in memory)"),
        (true, false) => format!(
            "{handler}, kprobe_int3_handler() (no kprobe there; since v6.3 it no longer retries a vanished INT3)"
        ),
        (false, _) => format!("{handler} (CONFIG_KPROBES=n)"),
    };
    (
        insn,
        format!(
            "INT3 at {ip:#x} claimed by no handler: {who} and notify_die() declined; do_int3() would die(\"int3\")"
        ),
    )
}
