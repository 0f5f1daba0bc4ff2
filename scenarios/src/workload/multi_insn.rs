//! `multi_insn`: replacing more than one instruction — five one-byte NOPs turned into a JMP32
//! to a detour and back, as an optprobe over `nop x5` would (bug B2, reference/kernel-protocol.md
//! §3). The INT3 lands only on the first NOP; a vCPU preempted on a later one resumes into
//! the new displacement bytes. The kernel refuses such requests, so this workload runs only
//! with the unsafe multi-instruction override, and must then be reported.
//!
//! ```text
//! loop_head: inc qword [rbx]          ; [0] iterations
//!            jmp P
//! P:         nop; nop; nop; nop; nop  ; 90 x5 <-> JMP32 detour (back: emulate = JMP32 +0)
//!            inc qword [rbx+8]        ; [1] passes through P
//!            jmp loop_head
//! detour:    inc qword [rbx+16]       ; [2]
//!            jmp P+5
//! ```

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::JMP32;
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "five one-byte NOPs <-> JMP32 to a detour (bug B2); refused unless the unsafe \
     multi-instruction override is set, and then reported";

/// Builds the multi_insn guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let p = spec.site.address(5);
    let detour = TEXT_BASE + 0x1800;
    let nops = vec![0x90; 5];
    let mut g = Guest::new(cpus, TEXT_LEN, 3);
    g.loop_head(p)?;
    g.text.place(p, |a| {
        a.db(&nops)?;
        a.inc(qword_ptr(rbx + 8))?;
        a.jmp(TEXT_BASE)
    })?;
    g.text.place(detour, |a| {
        a.inc(qword_ptr(rbx + 16))?;
        a.jmp(p + 5)
    })?;
    let rel = (detour as i64 - (p as i64 + 5)) as i32;
    let jmp = [&[JMP32][..], &rel.to_le_bytes()].concat();
    let actions = (0..spec.rounds)
        .map(|r| {
            let req = if r % 2 == 0 {
                PokeRequest { addr: p, new: jmp.clone(), emulate: None, detour: Some(detour) }
            } else {
                // Back to the NOPs: emulate as JMP32 +0, which is what running them amounts to.
                PokeRequest { addr: p, new: nops.clone(), emulate: Some(vec![JMP32, 0, 0, 0, 0]), detour: None }
            };
            PatchAction::Batch(vec![req])
        })
        .collect();
    // [0] iterations, [1] passes through P, [2] detour passes.
    let invariant = g.invariant(cpus, 3, |c, _| {
        if c[1] != c[0] {
            return Err(format!("{} iterations but {} passes through the patched range", c[0], c[1]));
        }
        Ok(())
    });
    Ok(g.image(WorkloadKind::MultiInsn, cpus, actions, Vec::new(), invariant))
}
