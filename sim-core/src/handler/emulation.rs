//! The handler's emulation step: `switch (tp->opcode)` of `poke_int3_handler()` /
//! `smp_text_poke_int3_handler()` (`arch/x86/kernel/alternative.c`) over the `int3_emulate_*`
//! helpers ([`crate::emulate`]), or 5.4's `regs->ip = tp->detour` — as the version's
//! [`Emulates`] says — and the handler mutants that edit it (`detour-handler`, `emulate-old`,
//! `jcc-no-invert`).

use super::{fault, oops, Handler, HandlerCtx, HandlerPc, HandlerStep};
use crate::emulate::{int3_emulate_call, int3_emulate_jcc, int3_emulate_jmp, int3_emulate_ret, Emulation};
use crate::protocol::loc::{text_poke_loc_init, CALL, INT3, JMP32, JMP8, RET};
use crate::protocol::{Emulates, Mutant, TextPokeLoc};

/// What the `switch` does with an entry: emulate it (`Some`), not consume it (`None`: `goto
/// out_put` with `return 0`), or oops (`Err`).
type Switch<T = Emulation> = Result<Option<T>, String>;

impl Handler {
    /// [`HandlerPc::Emulate`]: reads the entry found and emulates it (or detours).
    pub(super) fn emulate(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let (loc, (array, entry)) = match ctx.state.entry(self.vec, self.entry) {
            Ok((loc, at)) => (loc.clone(), at),
            Err(e) => return fault("emulate", e),
        };
        let loc = if ctx.mutants.contains(&Mutant::EmulateOld) {
            match self.old_loc(ctx, &loc, array, entry) {
                Ok(Some(old)) => old,
                Ok(None) => return self.decline(ctx),
                Err(message) => return oops(message),
            }
        } else {
            loc
        };
        let emulation = match self.switch(ctx, &loc) {
            Ok(Some(emulation)) => emulation,
            Ok(None) => return self.decline(ctx),
            Err(message) => return oops(message),
        };
        self.pc = if self.held.counted() { HandlerPc::Put } else { HandlerPc::Iret };
        HandlerStep::Emulated { array, entry, emulation }
    }

    /// `emulate-old`: the entry as `text_poke_loc_init()` makes it from the old bytes; `None`
    /// where they are an INT3 (not consumed).
    fn old_loc(&self, ctx: &HandlerCtx<'_>, loc: &TextPokeLoc, array: usize, entry: usize) -> Switch<TextPokeLoc> {
        let old = ctx.state.arrays[array].old[entry].clone();
        if old.first() == Some(&INT3) {
            return Ok(None);
        }
        text_poke_loc_init(ctx.rules, loc.addr, &old, None, None)
            .map(Some)
            .map_err(|e| format!("INT3 handler (emulate-old): {e}"))
    }

    /// The emulation of `loc` as the version's [`Emulates`] (and the handler mutants) have it.
    fn switch(&self, ctx: &HandlerCtx<'_>, loc: &TextPokeLoc) -> Switch {
        let has = |m: Mutant| ctx.mutants.contains(&m);
        let next = self.ip().wrapping_add(loc.len as u64);
        let target = next.wrapping_add(loc.disp as i64 as u64);
        let (ret, jcc) = match ctx.kind.rules().emulates {
            // regs->ip = (unsigned long) tp->detour;
            Emulates::Detour => return Ok(Some(int3_emulate_jmp(&self.regs, loc.detour))),
            _ if has(Mutant::DetourHandler) => return Ok(Some(int3_emulate_jmp(&self.regs, next))),
            Emulates::Opcodes { ret, jcc } => (ret, jcc),
        };
        let emulation = match loc.opcode {
            // Someone poked an explicit INT3; they'll want to handle it: do not consume.
            INT3 => return Ok(None),
            RET if ret => int3_emulate_ret(&self.regs, ctx.data).map_err(|msg| format!("INT3 handler: {msg}"))?,
            CALL => int3_emulate_call(&self.regs, target),
            JMP32 | JMP8 => int3_emulate_jmp(&self.regs, target),
            cc @ 0x70..=0x7f if jcc => {
                let cc = if has(Mutant::JccNoInvert) { (cc & 0xf) & !1 } else { cc & 0xf };
                int3_emulate_jcc(&self.regs, cc, next, loc.disp as i64)
            }
            other => return Err(format!("INT3 handler: BUG(): opcode {other:#04x}")),
        };
        Ok(Some(emulation))
    }
}
