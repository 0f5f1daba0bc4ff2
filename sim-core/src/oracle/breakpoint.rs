//! Oracle 8, lost or corrupted breakpoint: a kprobe's INT3 must stay in the text from
//! `arch_arm_kprobe()` until `arch_disarm_kprobe()`, and the disarm must put back the byte that
//! belongs in front of the probed instruction's other bytes. `register_kprobe()`'s
//! reserved-text checks (`check_kprobe_address_safe()`, `kernel/kprobes.c`) exist so that no
//! other patcher writes where a kprobe sits; without them (mutant `no-text-reserved`) a
//! `text_poke_bp()` on the same address writes its new first byte over the armed INT3 (the
//! probe is silently lost), and a later disarm writes the old `p->opcode` in front of the new
//! instruction's tail (a torn instruction the kernel itself made).

use crate::patching::{KprobeState, PatchState};
use crate::protocol::loc::INT3;
use crate::text::TextMemory;

/// After a store: an armed kprobe whose INT3 is no longer in the text, as `(address, why)`.
pub fn lost(state: &PatchState, text: &TextMemory) -> Option<(u64, String)> {
    let kp = state.kprobes.iter().find(|k| k.armed && text.read(k.addr, 1)[0] != INT3)?;
    let now = text.read(kp.addr, 1)[0];
    Some((
        kp.addr,
        format!(
            "the kprobe at {:#x} is armed, but a store wrote {now:#04x} over its INT3: the breakpoint is lost \
             (another patcher owns that byte; register_kprobe()'s reserved-text checks keep kprobes off it)",
            kp.addr
        ),
    ))
}

/// Before `arch_disarm_kprobe()` writes `p->opcode` back: the bytes after it must still be the
/// probed instruction's, or the restored instruction is neither the old nor anyone's new one.
pub(crate) fn corrupted_disarm(kp: &KprobeState, text: &TextMemory) -> Option<(u64, String)> {
    let tail = text.read(kp.addr + 1, kp.insn.len() - 1);
    (*tail != kp.insn[1..]).then(|| {
        (
            kp.addr,
            format!(
                "disarming the kprobe at {:#x} writes back p->opcode {:#04x}, but the bytes after it changed since \
                 register_kprobe() copied {:02x?} (now {:02x?}): the restored instruction is torn",
                kp.addr, kp.insn[0], kp.insn, tail
            ),
        )
    })
}
