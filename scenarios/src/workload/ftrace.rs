//! The `ftrace` workload: function-entry patching as `ftrace_modify_code()` does it through
//! `text_poke_bp()`. Every vCPU runs
//!
//! ```text
//! loop_head:  inc qword [rbx]          ; iterations
//!             call func
//!             jmp loop_head
//! func:       nop5                     ; the site: NOP5 <-> CALL tracer
//!             inc qword [rbx+8]        ; calls of func
//!             ret
//! tracer:     cmp qword [rsp], func+5  ; the return address must be site + 5
//!             je 1f
//!             inc qword [rbx+24]       ; bad return addresses
//!          1: inc qword [rbx+16]       ; calls of the tracer
//!             ret
//! ```
//!
//! with `rbx` pointing at its own counter block. The invariant, checked at every loop head:
//! the stack is balanced; `func` was called exactly once per iteration; the tracer was called
//! at most once per pass through the site (`0` for the old NOP, `1` for the new CALL — never
//! both, never twice) and always returned to site + 5.

use cpu_model::{Reg, Regs, SharedRegion};
use iced_x86::code_asm::{qword_ptr, rbx, rsp};
use sim_core::{GuestImage, Invariant, PokeRequest, SimError};

use super::asm::Text;
use super::{counters, layout, stack_top, WorkloadSpec, TEXT_BASE, TEXT_LEN};
use sim_core::protocol::loc::{CALL, NOP5};

/// Address of the tracer.
const TRACER: u64 = TEXT_BASE + 0x1800;

/// Builds the ftrace guest for `cpus` vCPUs.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let site = spec.site.address(5);
    let mut text = Text::new(TEXT_BASE, TEXT_LEN);
    let loop_head = TEXT_BASE;
    text.place(loop_head, |a| {
        let mut head = a.create_label();
        a.set_label(&mut head)?;
        a.inc(qword_ptr(rbx))?;
        a.call(site)?;
        a.jmp(head)
    })?;
    text.place(site, |a| {
        a.db(&NOP5)?;
        a.inc(qword_ptr(rbx + 8))?;
        a.ret()
    })?;
    text.place(TRACER, |a| {
        let mut ok = a.create_label();
        a.cmp(qword_ptr(rsp), (site + 5) as i32)?;
        a.je(ok)?;
        a.inc(qword_ptr(rbx + 24))?;
        a.set_label(&mut ok)?;
        a.inc(qword_ptr(rbx + 16))?;
        a.ret()
    })?;
    let rel = (TRACER as i64 - (site as i64 + 5)) as i32;
    let mut call = vec![CALL];
    call.extend(rel.to_le_bytes());
    let batches = (0..spec.rounds)
        .map(|r| {
            let new = if r % 2 == 0 { call.clone() } else { NOP5.to_vec() };
            vec![PokeRequest { addr: site, new, emulate: None }]
        })
        .collect();
    let cpu_regs = (0..cpus)
        .map(|i| {
            let mut regs = Regs { rip: loop_head, rflags: 0x202, ..Regs::default() };
            regs.set(Reg::Rbx, counters(i));
            regs.set(Reg::Rsp, stack_top(i));
            regs
        })
        .collect();
    Ok(GuestImage {
        name: "ftrace".into(),
        layout: layout(cpus),
        text: text.into_bytes(),
        cpu_regs,
        loop_head,
        batches,
        invariant: Box::new(FtraceInvariant { seen: vec![Counters::default(); cpus], site }),
    })
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Counters {
    iterations: u64,
    func: u64,
    tracer: u64,
    bad_returns: u64,
}

impl Counters {
    fn read(data: &SharedRegion, cpu: usize) -> Counters {
        let base = counters(cpu);
        let at = |off: u64| data.read_u64(base + off).expect("counter block is in the data region");
        Counters { iterations: at(0), func: at(8), tracer: at(16), bad_returns: at(24) }
    }
}

struct FtraceInvariant {
    seen: Vec<Counters>,
    site: u64,
}

impl Invariant for FtraceInvariant {
    fn at_loop_head(&mut self, cpu: usize, regs: &Regs, data: &SharedRegion) -> Result<(), String> {
        let now = Counters::read(data, cpu);
        let before = std::mem::replace(&mut self.seen[cpu], now);
        if regs.sp() != stack_top(cpu) {
            return Err(format!(
                "stack unbalanced at the loop head: rsp={:#x}, expected {:#x}",
                regs.sp(),
                stack_top(cpu)
            ));
        }
        if now.bad_returns != 0 {
            return Err(format!(
                "the tracer was called with a return address other than site+5 ({:#x})",
                self.site + 5
            ));
        }
        if now.func != now.iterations {
            return Err(format!("{} iterations but {} calls of the patched function", now.iterations, now.func));
        }
        let (passes, calls) = (now.func - before.func, now.tracer - before.tracer);
        if calls > passes {
            return Err(format!("{calls} tracer calls in {passes} passes through the site"));
        }
        Ok(())
    }
}
