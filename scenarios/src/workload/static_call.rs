//! `static_call`: `arch_static_call_transform()` retargeting an inline call site, and the
//! out-of-line trampoline `__SCT__*` switching between a tail call and `RET`:
//!
//! ```text
//! loop_head: inc qword [rbx]          ; [0] iterations
//!            jmp site
//! site:      call f1                  ; CALL f1 <-> CALL f2
//!            call tramp
//!            jmp loop_head
//! f1:        inc qword [rbx+8]; ret   ; [1]
//! f2:        inc qword [rbx+16]; ret  ; [2]
//! tramp:     jmp f3                   ; JMP32 f3 <-> RET; INT3 x4 (26c44b776dba padding)
//! f3:        inc qword [rbx+24]; ret  ; [3]
//! ```
//!
//! Both sites change in one batch, so the handler's bsearch runs. Invariant: every pass calls
//! exactly one of f1/f2 (`f1 + f2 == iterations`: the CPU that hits the INT3 must not call
//! neither — bug B1), and f3 at most once per pass. Without `tail` only the call site is
//! patched, which every version can emulate; the trampoline needs RET emulation (2020).

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::{CALL, INT3, JMP32, RET};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "CALL f1 <-> CALL f2 at a call site and a trampoline JMP f3 <-> RET (padded \
     with INT3), in one batch; each pass calls exactly one of f1/f2";

fn rel32(op: u8, from: u64, to: u64) -> Vec<u8> {
    let rel = (to as i64 - (from as i64 + 5)) as i32;
    [&[op][..], &rel.to_le_bytes()].concat()
}

/// Builds the static_call guest.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let site = spec.site.address(5);
    let (f1, f2, tramp, f3) = (TEXT_BASE + 0x1800, TEXT_BASE + 0x1840, TEXT_BASE + 0x1880, TEXT_BASE + 0x18c0);
    let mut g = Guest::new(cpus, TEXT_LEN, 4);
    g.loop_head(site)?;
    g.text.place(site, |a| {
        a.db(&rel32(CALL, site, f1))?;
        if spec.tail {
            a.call(tramp)?;
        }
        a.jmp(TEXT_BASE)
    })?;
    for (f, counter) in [(f1, 8), (f2, 16), (f3, 24)] {
        g.text.place(f, |a| {
            a.inc(qword_ptr(rbx + counter))?;
            a.ret()
        })?;
    }
    let tail_call = rel32(JMP32, tramp, f3);
    let ret = vec![RET, INT3, INT3, INT3, INT3];
    g.text.place(tramp, |a| a.db(&tail_call))?;
    let actions = (0..spec.rounds)
        .map(|r| {
            let target = if r % 2 == 0 { f2 } else { f1 };
            let mut batch = vec![PokeRequest::new(site, rel32(CALL, site, target))];
            if spec.tail {
                batch.push(PokeRequest::new(tramp, if r % 2 == 0 { ret.clone() } else { tail_call.clone() }));
            }
            PatchAction::Batch(batch)
        })
        .collect();
    // [0] iterations, [1] f1, [2] f2, [3] f3.
    let invariant = g.invariant(cpus, 4, |c, before| {
        if c[1] + c[2] != c[0] {
            return Err(format!(
                "{} passes through the call site but {} calls of f1 and {} of f2: a pass called neither or both",
                c[0], c[1], c[2]
            ));
        }
        let (passes, tail) = (c[0] - before[0], c[3] - before[3]);
        if tail > passes {
            return Err(format!("{tail} tail calls of f3 in {passes} passes through the trampoline"));
        }
        Ok(())
    });
    Ok(g.image(WorkloadKind::StaticCall, cpus, actions, Vec::new(), invariant))
}
