//! `early`: boot-time alternatives patching by `text_poke_early()` (arch/x86/kernel/alternative.c),
//! the scenario of "x86/alternatives: Sync core before enabling interrupts" (3ea1704a9296,
//! Dec 2023). The patching CPU writes a site with a plain `memcpy()` through the text's own
//! address — no INT3, no IPI: no other CPU runs that code — and syncs its own core; the only
//! CPU that runs the site is the patching CPU itself, from its interrupt handler
//! (`[interrupts] cpus = "patcher"`). The vCPUs loop on code no store touches:
//!
//! ```text
//! loop_head:  inc qword [rbx]          ; [0] iterations
//!             jmp loop_head
//! func:       nop5                     ; the site: NOP5 -> CALL tracer, then back, each round
//!             inc qword [rbx+8]        ; [1] calls of func (the interrupt handler's)
//!             ret
//! tracer:     inc qword [rbx+16]       ; [2] calls of the tracer
//!             ret
//! ```
//!
//! The interrupt handler (`inc qword [rbx]; call func; iretq`) runs on the patching CPU with a
//! counter block and a stack of its own (the page after the vCPUs'). A fetch of the site that
//! mixes bytes of two images is a torn fetch; which images it may see depends on where the
//! version puts `sync_core()` relative to `local_irq_restore()`, and on `own_stores`.

use iced_x86::code_asm::{qword_ptr, rbx};
use sim_core::protocol::loc::{CALL, NOP5};
use sim_core::workload::CpuData;
use sim_core::{GuestImage, PatchAction, SimError};

use super::{Guest, WorkloadKind, WorkloadSpec, TEXT_BASE, TEXT_LEN};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "boot-time text_poke_early() of a NOP5 <-> CALL site that only the patching \
     CPU runs, from its interrupt handler (C protocols only; with [interrupts] cpus = \"patcher\")";

/// Builds the early guest for `cpus` vCPUs (and the patching CPU's interrupt context).
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let site = spec.site.address(5);
    let tracer = TEXT_BASE + 0x1800;
    // One more counter block and stack page than vCPUs: the patching CPU's interrupt context.
    let mut g = Guest::new(cpus + 1, TEXT_LEN, 4);
    g.loop_head(TEXT_BASE)?;
    g.text.place(site, |a| {
        a.db(&NOP5)?;
        a.inc(qword_ptr(rbx + 8))?;
        a.ret()
    })?;
    g.text.place(tracer, |a| {
        a.inc(qword_ptr(rbx + 16))?;
        a.ret()
    })?;
    let rel = (tracer as i64 - (site as i64 + 5)) as i32;
    let call = [&[CALL][..], &rel.to_le_bytes()].concat();
    let actions = (0..spec.rounds)
        .map(|r| PatchAction::Early { addr: site, bytes: if r % 2 == 0 { call.clone() } else { NOP5.to_vec() } })
        .collect();
    let invariant = g.invariant(cpus, 4, |_, _| Ok(()));
    let (counters, stack_top) = (g.counters(cpus), g.stack_top(cpus));
    let ctx = CpuData { counters: (counters, 64), stack_top, stack_floor: stack_top + 64 - cpu_model::PAGE_SIZE };
    let mut regs = cpu_model::Regs { rip: 0, rflags: 0x202, ..Default::default() };
    regs.set(cpu_model::Reg::Rbx, counters);
    regs.set(cpu_model::Reg::Rsp, stack_top);
    let mut image = g.image(WorkloadKind::Early, cpus, actions, Vec::new(), invariant);
    image.irq_call = Some(site);
    image.irq_cpu = Some((regs, ctx));
    Ok(image)
}
