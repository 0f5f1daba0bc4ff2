//! The patching handler from its entry to its put: `poke_int3_handler()` /
//! `smp_text_poke_int3_handler()` of `arch/x86/kernel/alternative.c` up to the emulation — the
//! version's first load and reference ([`Enter`]), `nr_entries` and the vector where the
//! version keeps them ([`Lookup`]), the inlined `bsearch()` of `lib/bsearch.c` or the
//! single-entry compare, and `out_put`.

use super::{fault, Handler, HandlerCtx, HandlerPc, HandlerStep, Held};
use crate::patching::{AccessFault, PatchState, VecRef};
use crate::protocol::{Enter, Lookup};

/// `atomic_inc_not_zero(count)`.
fn inc_not_zero(count: &mut i32) -> bool {
    if *count == 0 {
        return false;
    }
    *count += 1;
    true
}

impl Handler {
    /// [`HandlerPc::Entry`]: the version's first load, and its reference if it takes one at
    /// once; `return 0` when nothing is being patched.
    pub(super) fn enter(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let state = &mut *ctx.state;
        let entered = match ctx.kind.rules().enter {
            Enter::NrEntries => (state.nr_entries != 0).then_some((Held::Nothing, HandlerPc::BranchNr)),
            Enter::Desc => state.desc.map(|id| (Held::Read(id), HandlerPc::IncRef)),
            Enter::GlobalRefs => inc_not_zero(&mut state.global_refs).then_some((Held::Global, HandlerPc::BranchNr)),
            Enter::PerCpuRefs => {
                inc_not_zero(&mut state.percpu_refs[self.cpu]).then_some((Held::PerCpu, HandlerPc::BranchNr))
            }
        };
        match entered {
            Some((held, next)) => {
                self.held = held;
                self.goto(next)
            }
            None => self.next_handler(ctx),
        }
    }

    /// [`HandlerPc::IncRef`] (5.6): `atomic_inc_not_zero(&desc->refs)` on the descriptor read
    /// at entry, which the patcher may have returned since.
    pub(super) fn inc_ref(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let id = match self.read_desc(ctx.state) {
            Ok(id) => id,
            Err(e) => return fault("try_get_desc", e),
        };
        if !inc_not_zero(&mut ctx.state.arrays[id].refs) {
            return self.next_handler(ctx);
        }
        self.held = Held::Desc(id);
        self.goto(HandlerPc::BranchNr)
    }

    /// The live descriptor read at entry (`desc`, a NULL one if none was).
    fn read_desc(&self, state: &PatchState) -> Result<usize, AccessFault> {
        let id = self.held.desc().ok_or(AccessFault::Null("bp_desc"))?;
        state.desc_array(id).map(|_| id)
    }

    /// `nr_entries` and the vector, as the version's lookup reads them.
    fn patch_vec(&self, ctx: &HandlerCtx<'_>) -> Result<(usize, Option<VecRef>), AccessFault> {
        let state = &*ctx.state;
        Ok(match ctx.kind.rules().lookup {
            Lookup::Published => (state.nr_entries, state.vec.map(VecRef::Array)),
            Lookup::StaticArray => (state.nr_entries, Some(VecRef::Static)),
            Lookup::Desc => {
                let id = self.read_desc(state)?;
                (state.arrays[id].locs.len(), Some(VecRef::Array(id)))
            }
        })
    }

    /// [`HandlerPc::BranchNr`]: `if (unlikely(nr_entries > 1))`.
    pub(super) fn branch_nr(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        match self.patch_vec(ctx) {
            Ok((nr, _)) => self.goto(if nr > 1 { HandlerPc::BsearchArgs } else { HandlerPc::LoadVec }),
            Err(e) => fault("desc->nr_entries", e),
        }
    }

    /// [`HandlerPc::BsearchArgs`]: `bsearch(ip, vec, nr_entries, ...)`'s arguments.
    pub(super) fn bsearch_args(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        match self.patch_vec(ctx) {
            Ok((num, vec)) => {
                (self.vec, self.base, self.num) = (vec, 0, num);
                self.goto(HandlerPc::Probe)
            }
            Err(e) => fault("desc->vec", e),
        }
    }

    /// [`HandlerPc::Probe`], one probe of `lib/bsearch.c`: `pivot = base + (num >> 1)`,
    /// `patch_cmp()`, narrow; `num == 0` is a miss (`goto out_put`).
    pub(super) fn probe(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        if self.num == 0 {
            return self.decline(ctx);
        }
        let pivot = self.base + (self.num >> 1);
        let addr = match ctx.state.entry(self.vec, pivot) {
            Ok((loc, _)) => loc.addr,
            Err(e) => return fault("bsearch", e),
        };
        let ip = self.ip();
        if ip == addr {
            self.entry = pivot;
            return self.goto(HandlerPc::Emulate);
        }
        if ip > addr {
            self.base = pivot + 1;
            self.num -= 1;
        }
        self.num >>= 1;
        HandlerStep::Continue
    }

    /// [`HandlerPc::LoadVec`]: `tp = vec`.
    pub(super) fn load_vec(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        match self.patch_vec(ctx) {
            Ok((_, vec)) => {
                self.vec = vec;
                self.goto(HandlerPc::CompareSingle)
            }
            Err(e) => fault("desc->vec", e),
        }
    }

    /// [`HandlerPc::CompareSingle`]: `if (text_poke_addr(tp) != ip) goto out_put`.
    pub(super) fn compare_single(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        let hit = match ctx.state.entry(self.vec, 0) {
            Ok((loc, _)) => loc.addr == self.ip(),
            Err(e) => return fault("text_poke_addr(tp)", e),
        };
        if !hit {
            return self.decline(ctx);
        }
        self.entry = 0;
        self.goto(HandlerPc::Emulate)
    }

    /// [`HandlerPc::Put`], `out_put`: drops the reference held, then `return 1` (IRET) or, for a
    /// trap the handler declined, `return 0` to the next handler.
    pub(super) fn put(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        match self.held.count(ctx.state, self.cpu) {
            Ok(Some(count)) => {
                *count -= 1;
                ctx.state.below_zero |= *count < 0;
            }
            Ok(None) => {}
            Err(e) => return fault("put_desc", e),
        }
        self.held = self.held.put();
        if self.declined {
            return self.next_handler(ctx);
        }
        self.goto(HandlerPc::Iret)
    }
}
