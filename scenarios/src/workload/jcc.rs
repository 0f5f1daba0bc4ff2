//! `jcc`: a static_call *conditional* tail call — clang emits `jne __SCT__foo` (923510c88d2b) —
//! whose target is retargeted through the 6-byte Jcc.d32 layout (ac0ee0a9560c):
//!
//! ```text
//! loop_head: inc qword [rbx]        ; [0] iterations k
//!            jmp body
//! body:      test byte [rbx], 1     ; ZF = (k is even)
//!            call func
//!            jmp loop_head
//! func:      jne f1                 ; Jcc.d32: JNE f1 <-> JNE f2 (0f 85 rel32)
//!            inc qword [rbx+8]      ; [1] not taken (k even)
//!            ret
//! f1:        inc qword [rbx+16]; ret  ; [2]  tail-called: returns to body
//! f2:        inc qword [rbx+24]; ret  ; [3]
//! ```
//!
//! Invariant after n iterations: the branch was not taken n/2 times and taken (to f1 or f2)
//! ⌈n/2⌉ times — the condition must be evaluated exactly as the hardware does, which only
//! `int3_emulate_jcc` (6.16) can do while the site holds an INT3.

use iced_x86::code_asm::{byte_ptr, qword_ptr, rbx};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "conditional tail call JNE f1 <-> JNE f2 through the 6-byte Jcc.d32 layout; \
     taken exactly on odd iterations";

fn jne32(from: u64, to: u64) -> Vec<u8> {
    let rel = (to as i64 - (from as i64 + 6)) as i32;
    [&[0x0f, 0x85][..], &rel.to_le_bytes()].concat()
}

/// Builds the jcc guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let site = spec.site.address(6);
    let body = TEXT_BASE + 0x40;
    let (f1, f2) = (TEXT_BASE + 0x1800, TEXT_BASE + 0x1840);
    let mut g = Guest::new(cpus, TEXT_LEN, 4);
    g.loop_head(body)?;
    g.text.place(body, |a| {
        a.test(byte_ptr(rbx), 1)?;
        a.call(site)?;
        a.jmp(TEXT_BASE)
    })?;
    g.text.place(site, |a| {
        a.db(&jne32(site, f1))?;
        a.inc(qword_ptr(rbx + 8))?;
        a.ret()
    })?;
    for (f, counter) in [(f1, 16), (f2, 24)] {
        g.text.place(f, |a| {
            a.inc(qword_ptr(rbx + counter))?;
            a.ret()
        })?;
    }
    let actions = (0..spec.rounds)
        .map(|r| PatchAction::Batch(vec![PokeRequest::new(site, jne32(site, if r % 2 == 0 { f2 } else { f1 }))]))
        .collect();
    // [0] iterations, [1] not taken, [2] f1, [3] f2.
    let invariant = g.invariant(cpus, 4, |c, _| {
        let n = c[0];
        if c[1] != n / 2 || c[2] + c[3] != n.div_ceil(2) {
            return Err(format!(
                "after {n} iterations the branch was not taken {} times and taken {}+{} times (expected {} and {})",
                c[1],
                c[2],
                c[3],
                n / 2,
                n.div_ceil(2)
            ));
        }
        Ok(())
    });
    Ok(g.image(WorkloadKind::Jcc, cpus, actions, Vec::new(), invariant))
}
