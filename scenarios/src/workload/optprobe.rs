//! `optprobe`: the life of an optimized kprobe on a 5-byte instruction P
//! (arch/x86/kernel/kprobes/opt.c), each round:
//!
//! 1. arm: `text_poke(P, INT3, 1); text_poke_sync()` (`arch_arm_kprobe`, with B5's sync);
//! 2. optimize: `text_poke_bp(P, JMP32 trampoline, 5, NULL)` (`arch_optimize_kprobes`);
//! 3. unoptimize: `text_poke_bp(P, INT3 + copied tail, 5, emulate = JMP32 trampoline)`
//!    (`arch_unoptimize_kprobe`: new bytes and emulated bytes differ; the new first byte is an
//!    INT3, so the third step writes nothing and skips its sync);
//! 4. disarm: `text_poke(P, orig, 1); text_poke_sync()`.
//!
//! The kprobe is registered for the whole run: an INT3 at P that the patching handler
//! declines goes to `kprobe_int3_handler`, which runs the probed instruction out of line.
//!
//! ```text
//! loop_head:  inc qword [rbx]           ; [0] iterations
//!             jmp P
//! P:          add qword [rbx+8], 1      ; [1] the probed instruction (48 83 43 08 01)
//!             jmp loop_head
//! trampoline: inc qword [rbx+16]        ; [2] optprobe hits
//!             add qword [rbx+8], 1      ; the copied instruction
//!             jmp P+5
//! ```
//!
//! Invariant: the probed instruction ran exactly once per pass — in place, out of line, or in
//! the trampoline.

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::{INT3, JMP32};
use sim_core::{GuestImage, Kprobe, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "kprobe on a 5-byte instruction: arm (INT3), optimize (JMP32 to a trampoline), \
     unoptimize (INT3 + tail, emulate JMP32), disarm; the instruction runs once per pass";

/// The probed instruction: `add qword [rbx+8], 1`.
const PROBED: [u8; 5] = [0x48, 0x83, 0x43, 0x08, 0x01];

/// Builds the optprobe guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let p = spec.site.address(5);
    let trampoline = TEXT_BASE + 0x1800;
    let mut g = Guest::new(cpus, TEXT_LEN, 3);
    g.loop_head(p)?;
    g.text.place(p, |a| {
        a.db(&PROBED)?;
        a.jmp(TEXT_BASE)
    })?;
    g.text.place(trampoline, |a| {
        a.inc(qword_ptr(rbx + 16))?;
        a.db(&PROBED)?;
        a.jmp(p + 5)
    })?;
    let rel = (trampoline as i64 - (p as i64 + 5)) as i32;
    let jmp = [&[JMP32][..], &rel.to_le_bytes()].concat();
    let armed = [&[INT3][..], &PROBED[1..]].concat();
    let mut actions = Vec::new();
    for _ in 0..spec.rounds.div_ceil(2) {
        actions.push(PatchAction::Poke { addr: p, bytes: vec![INT3] });
        actions.push(PatchAction::Sync);
        actions.push(PatchAction::Batch(vec![PokeRequest {
            addr: p,
            new: jmp.clone(),
            emulate: None,
            detour: Some(trampoline),
        }]));
        actions.push(PatchAction::Batch(vec![PokeRequest {
            addr: p,
            new: armed.clone(),
            emulate: Some(jmp.clone()),
            detour: Some(trampoline),
        }]));
        actions.push(PatchAction::Poke { addr: p, bytes: vec![PROBED[0]] });
        actions.push(PatchAction::Sync);
    }
    // [0] iterations, [1] executions of the probed instruction, [2] optprobe hits.
    let invariant = g.invariant(cpus, 3, |c, _| {
        if c[1] != c[0] {
            return Err(format!("{} passes through the probe but the probed instruction ran {} times", c[0], c[1]));
        }
        if c[2] > c[0] {
            return Err(format!("{} trampoline entries in {} passes", c[2], c[0]));
        }
        Ok(())
    });
    Ok(g.image(WorkloadKind::Optprobe, cpus, actions, vec![Kprobe { addr: p, armed: false, cycles: 0 }], invariant))
}
