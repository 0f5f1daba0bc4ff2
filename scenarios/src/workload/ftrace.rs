//! `ftrace`: function-entry patching as `ftrace_modify_code()` does it through
//! `text_poke_bp()`. Every vCPU runs
//!
//! ```text
//! loop_head:  inc qword [rbx]          ; [0] iterations
//!             jmp body
//! body:       call func
//!             jmp loop_head
//! func:       nop5                     ; the site: NOP5 <-> CALL tracer
//!             inc qword [rbx+8]        ; [1] calls of func
//!             ret
//! tracer:     cmp qword [rsp], func+5  ; the return address must be site + 5
//!             je 1f
//!             inc qword [rbx+24]       ; [3] bad return addresses
//!          1: inc qword [rbx+16]       ; [2] calls of the tracer
//!             ret
//! ```
//!
//! Invariant at every loop head: the stack is balanced; `func` ran once per iteration; the
//! tracer ran at most once per pass through the site (0 for the NOP, 1 for the CALL — never
//! twice), always returning to site + 5.

use iced_x86::code_asm::{qword_ptr, rbx, rsp};
use sim_core::protocol::loc::{CALL, NOP5};
use sim_core::{GuestImage, PatchAction, PokeRequest, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "function entry NOP5 <-> CALL tracer; each pass calls the tracer at most once \
     and returns to site+5";

/// Builds the ftrace guest for `cpus` vCPUs.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let site = spec.site.address(5);
    let tracer = TEXT_BASE + 0x1800;
    let body = TEXT_BASE + 0x40;
    let mut g = Guest::new(cpus, TEXT_LEN, 4);
    g.loop_head(body)?;
    g.text.place(body, |a| {
        a.call(site)?;
        a.jmp(TEXT_BASE)
    })?;
    g.text.place(site, |a| {
        a.db(&NOP5)?;
        a.inc(qword_ptr(rbx + 8))?;
        a.ret()
    })?;
    g.text.place(tracer, |a| {
        let mut ok = a.create_label();
        a.cmp(qword_ptr(rsp), (site + 5) as i32)?;
        a.je(ok)?;
        a.inc(qword_ptr(rbx + 24))?;
        a.set_label(&mut ok)?;
        a.inc(qword_ptr(rbx + 16))?;
        a.ret()
    })?;
    let rel = (tracer as i64 - (site as i64 + 5)) as i32;
    let call = [&[CALL][..], &rel.to_le_bytes()].concat();
    let actions = (0..spec.rounds)
        .map(|r| {
            let new = if r % 2 == 0 { call.clone() } else { NOP5.to_vec() };
            PatchAction::Batch(vec![PokeRequest::new(site, new)])
        })
        .collect();
    // [0] iterations, [1] calls of func, [2] tracer calls, [3] bad return addresses.
    let invariant = g.invariant(cpus, 4, move |c, before| {
        if c[3] != 0 {
            return Err(format!("the tracer was called with a return address other than site+5 ({:#x})", site + 5));
        }
        if c[1] != c[0] {
            return Err(format!("{} iterations but {} calls of the patched function", c[0], c[1]));
        }
        let (passes, calls) = (c[1] - before[1], c[2] - before[2]);
        if calls > passes {
            return Err(format!("{calls} tracer calls in {passes} passes through the site"));
        }
        Ok(())
    });
    let mut image = g.image(WorkloadKind::Ftrace, cpus, actions, Vec::new(), invariant);
    // An interrupt's call-site handler calls `func` (one more pass through the site, counted
    // as one more iteration: the handler increments [rbx] first).
    image.irq_call = Some(site);
    Ok(image)
}
