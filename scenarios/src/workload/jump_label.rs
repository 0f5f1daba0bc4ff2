//! `jump_label`: `arch_jump_label_transform_queue()` / `_apply()` flipping static branches,
//! both sizes in one batch:
//!
//! ```text
//! loop_head: inc qword [rbx]            ; [0] iterations
//!            jmp a
//! a:         nop2                       ; NOP2 <-> JMP8 a_taken
//!            inc qword [rbx+8]          ; [1] A not taken
//!            jmp b
//! a_taken:   inc qword [rbx+16]         ; [2] A taken
//!            jmp b
//! b:         nop5                       ; NOP5 <-> JMP32 b_taken
//!            inc qword [rbx+24]         ; [3] B not taken
//!            jmp loop_head
//! b_taken:   inc qword [rbx+32]         ; [4] B taken
//!            jmp loop_head
//! ```
//!
//! Invariant: every pass takes exactly one side of each branch.

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::{JMP32, JMP8, NOP2, NOP5};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "NOP2 <-> JMP8 and NOP5 <-> JMP32 static branches flipped in one batch; each \
     pass takes exactly one side of each";

/// Builds the jump_label guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let a = spec.site.address(2);
    let (a_taken, b) = (a + 0x10, a + 0x20);
    let b_taken = TEXT_BASE + 0x1800;
    let mut g = Guest::new(cpus, TEXT_LEN, 5);
    g.loop_head(a)?;
    g.text.place(a, |asm| {
        asm.db(&NOP2)?;
        asm.inc(qword_ptr(rbx + 8))?;
        asm.jmp(b)
    })?;
    g.text.place(a_taken, |asm| {
        asm.inc(qword_ptr(rbx + 16))?;
        asm.jmp(b)
    })?;
    g.text.place(b, |asm| {
        asm.db(&NOP5)?;
        asm.inc(qword_ptr(rbx + 24))?;
        asm.jmp(TEXT_BASE)
    })?;
    g.text.place(b_taken, |asm| {
        asm.inc(qword_ptr(rbx + 32))?;
        asm.jmp(TEXT_BASE)
    })?;
    let jmp8 = vec![JMP8, (a_taken - (a + 2)) as u8];
    let rel = (b_taken as i64 - (b as i64 + 5)) as i32;
    let jmp32 = [&[JMP32][..], &rel.to_le_bytes()].concat();
    let actions = (0..spec.rounds)
        .map(|r| {
            let enable = r % 2 == 0;
            PatchAction::Batch(vec![
                PokeRequest::new(a, if enable { jmp8.clone() } else { NOP2.to_vec() }),
                PokeRequest::new(b, if enable { jmp32.clone() } else { NOP5.to_vec() }),
            ])
        })
        .collect();
    // [0] iterations, [1]/[2] A not taken/taken, [3]/[4] B not taken/taken.
    let invariant = g.invariant(cpus, 5, |c, _| {
        if c[1] + c[2] != c[0] || c[3] + c[4] != c[0] {
            return Err(format!(
                "{} passes but branch A went {}+{} ways and branch B {}+{}: some pass took both sides or neither",
                c[0], c[1], c[2], c[3], c[4]
            ));
        }
        Ok(())
    });
    Ok(g.image(WorkloadKind::JumpLabel, cpus, actions, Vec::new(), invariant))
}
