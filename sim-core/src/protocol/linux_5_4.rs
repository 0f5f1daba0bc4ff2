//! linux-5.3/5.4 `text_poke_bp_batch()` (Daniel Bristot's batching, c0213b0ac03c), before the
//! seed (reference/kernel-protocol.md §1.0):
//!
//! ```text
//! bp_patching.vec = tp; bp_patching.nr_entries = nr_entries; smp_wmb();
//! for each entry: text_poke(addr, &int3, sizeof(int3));
//! on_each_cpu(do_sync_core, NULL, 1);
//! for each entry: if (len - 1 > 0) { text_poke(addr + 1, opcode + 1, len - 1); patched_all_but_first++; }
//! if (patched_all_but_first) on_each_cpu(do_sync_core, NULL, 1);
//! for each entry: text_poke(addr, opcode, sizeof(int3));
//! on_each_cpu(do_sync_core, NULL, 1);
//! bp_patching.vec = NULL; bp_patching.nr_entries = 0;
//! ```
//!
//! `poke_int3_handler()` finds the entry like the seed does and then only sets
//! `regs->ip = tp->detour` ([`super::HandlerKind::Detour`]): a plain jump, which cannot
//! perform a CALL's push (bug B1).

use super::int3_handler::{Emulates, Enter, HandlerRules, Lookup, NR_ENTRIES_CODE, POKE_INT3_HANDLER, PUT_DESC_CODE};
use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "linux-5.4" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version =
    Version::new("linux-5.4", HandlerKind::Detour, LocRules::Detour, Batching::CallerSorted, text_poke_bp_batch)
        .kprobes(Recovery::Retries, ArmSync::None)
        .names(Names::ON_EACH_CPU)
        .about(DESCRIPTION);

/// `poke_int3_handler()` before the seed ([`HandlerKind::Detour`]): `bp_patching.nr_entries`
/// first, no reference, the lookup in `bp_patching`, and a jump to the entry's detour.
pub(crate) const HANDLER: HandlerRules = HandlerRules {
    function: POKE_INT3_HANDLER,
    enter: Enter::NrEntries,
    lookup: Lookup::Published,
    emulates: Emulates::Detour,
    entry_code: NR_ENTRIES_CODE,
    emulate_code: "regs->ip = (unsigned long) tp->detour;",
    put_code: PUT_DESC_CODE,
};

const DESCRIPTION: &str = "v5.3/5.4 text_poke_bp_batch: three syncs, the handler sets regs->ip = detour \
         (cannot emulate a CALL: bug B1)";

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize, _cpus: usize) -> Vec<Op> {
    let mut ops = vec![Op::BeginBatch(batch)];
    ops.extend(int3_phases(mutants, batch, n, vec![Op::SetVec(batch), Op::SetNr(batch)], true));
    ops.extend([Op::ClearVec, Op::ClearNr, Op::EndBatch(batch)]);
    ops
}
