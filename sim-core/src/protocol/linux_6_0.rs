//! linux-6.0: "x86/alternative: Fix race in try_get_desc()" — Nadav Amit, efd608fa7403
//! (2022). 5.6's descriptor lived on the patcher's stack, and a handler entered through a
//! *foreign* INT3 (a kprobe, which no sync waits for) could read `bp_desc`, lose the CPU to the
//! patcher returning, and then `atomic_inc_not_zero()` freed stack memory. The fix drops the
//! indirection: one static descriptor.
//!
//! ```text
//! bp_desc.vec = tp; bp_desc.nr_entries = nr_entries;
//! atomic_set_release(&bp_desc.refs, 1);
//! smp_wmb();
//! ...                                     // INT3s, sync, tails, sync if any, firsts, sync if any
//! if (!atomic_dec_and_test(&bp_desc.refs))
//!         atomic_cond_read_acquire(&bp_desc.refs, !VAL);
//! ```
//!
//! Handler ([`super::HandlerKind::GlobalRefs`]): `try_get_desc()` =
//! `arch_atomic_inc_not_zero(&bp_desc.refs)` or return 0; lookup through `bp_desc.vec`;
//! INT3 → not consumed, RET → `int3_emulate_ret` (c43a43e439e0), CALL, JMP32/JMP8; RET/JMP
//! may be padded with INT3 (26c44b776dba); `put_desc()`. No Jcc yet (that came in 2023).
//!
//! pokesim reproduces the race this version fixed: `linux-5.6` with a foreign kprobe is
//! reported as a `use-after-free` (in `try_get_desc`), `linux-6.0` passes.

use super::int3_handler::{Emulates, Enter, HandlerRules, Lookup, POKE_INT3_HANDLER, PUT_DESC_CODE, SWITCH_CODE};
use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "linux-6.0" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version = Version::new(
    "linux-6.0",
    HandlerKind::GlobalRefs,
    LocRules::RetPadding,
    Batching::CallerSorted,
    text_poke_bp_batch,
)
.kprobes(Recovery::Retries, ArmSync::TextPokeSync)
.names(Names::EXC_INT3)
.about(DESCRIPTION)
.with_static_calls();

/// `poke_int3_handler()` on the static `bp_desc` ([`HandlerKind::GlobalRefs`]):
/// `arch_atomic_inc_not_zero(&bp_desc.refs)`, the lookup in `bp_desc`, the `switch` with RET,
/// `put_desc()`.
pub(crate) const HANDLER: HandlerRules = HandlerRules {
    function: POKE_INT3_HANDLER,
    enter: Enter::GlobalRefs,
    lookup: Lookup::Published,
    emulates: Emulates::Opcodes { ret: true, jcc: false },
    entry_code: "smp_rmb(); if (!arch_atomic_inc_not_zero(&bp_desc.refs)) return 0; /* try_get_desc() */",
    emulate_code: SWITCH_CODE,
    put_code: PUT_DESC_CODE,
};

const DESCRIPTION: &str = "efd608fa7403 (2022): bp_desc is a static global {vec, nr_entries, refs}, refs set with \
         release before the first INT3 and awaited at the end (fixes 5.6's try_get_desc() use \
         after free); RET emulation and INT3 padding";

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize, _cpus: usize) -> Vec<Op> {
    let wait = !mutants.contains(&Mutant::SkipRefsWait);
    let mut ops = vec![Op::BeginBatch(batch)];
    ops.extend(int3_phases(mutants, batch, n, vec![Op::SetVec(batch), Op::SetNr(batch), Op::SetGlobalRefs], false));
    ops.extend([Op::DecGlobalRefs { wait }, Op::EndBatch(batch)]);
    ops
}
