//! Oracle 3, emulation (DESIGN.md §2.7): the register and stack effect of the handler's
//! emulation must equal executing the old or the new instruction (or the explicit `emulate`
//! instruction) from the same pre-trap state. The reference is a scratch Unicorn engine
//! ([`cpu_model::ReferenceExecutor`]), never the handler's own arithmetic.

use cpu_model::{ReferenceExecutor, Regs};

use crate::emulate::Emulation;
use crate::SimError;

/// RFLAGS bits an emulated control transfer must preserve: CF PF AF ZF SF DF OF.
pub const ARITH_FLAGS: u64 = 0x0ed5;

/// Compares `emulation` (the handler's effect, starting from `trapped`, whose `rip` is the
/// INT3 address + 1) with the real execution of each candidate instruction at `site`.
/// `Ok(Err(msg))` is a mismatch; `Err` is a failure of the reference engine itself.
pub fn check(
    reference: &mut ReferenceExecutor,
    site: u64,
    candidates: &[&[u8]],
    trapped: &Regs,
    stack_top: u64,
    emulation: &Emulation,
) -> Result<Result<(), String>, SimError> {
    let mut pre = *trapped;
    pre.rip = site;
    let mut seen = Vec::new();
    for bytes in candidates {
        let r = reference.execute(site, bytes, &pre, stack_top)?;
        let same = r.regs.gpr == emulation.regs.gpr
            && r.regs.rip == emulation.regs.rip
            && r.regs.rflags & ARITH_FLAGS == emulation.regs.rflags & ARITH_FLAGS
            && r.pushed == emulation.push.map(|(_, v)| v);
        if same {
            return Ok(Ok(()));
        }
        // Formatted only if no candidate matches (a matching one is the common case).
        seen.push((bytes, r.regs.rip, r.regs.sp(), r.pushed));
    }
    let seen: Vec<String> = seen
        .into_iter()
        .map(|(bytes, rip, sp, pushed)| format!("{bytes:02x?} gives rip={rip:#x} rsp={sp:#x} pushed={pushed:x?}"))
        .collect();
    Ok(Err(format!(
        "handler emulation gives rip={:#x} rsp={:#x} pushed={:x?}, but {}",
        emulation.regs.rip,
        emulation.regs.sp(),
        emulation.push.map(|(_, v)| v),
        seen.join("; ")
    )))
}
