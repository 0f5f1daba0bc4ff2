//! `text_poke_bp_batch()` of the seed patch (reference/kernel-protocol.md §1.1; the patch is
//! `shared/seed/text_poke_bp-emulate-v3-1-6.txt`):
//!
//! ```text
//! bp_patching.vec = tp; bp_patching.nr_entries = nr_entries; smp_wmb();
//! for each entry: text_poke(addr, INT3, 1);
//! on_each_cpu(do_sync_core, NULL, 1);
//! for (do_sync = 0, ...) if (len > 1) { text_poke(addr+1, text+1, len-1); do_sync++; }
//! if (do_sync) on_each_cpu(do_sync_core, NULL, 1);                // "very likely not necessary"
//! for (do_sync = 0, ...) { if (text[0] == INT3) continue; text_poke(addr, text, 1); do_sync++; }
//! if (do_sync) on_each_cpu(do_sync_core, NULL, 1);                // conditional since the seed
//! bp_patching.vec = NULL; bp_patching.nr_entries = 0;             // no sync: bug B3
//! ```
//!
//! The handler is `poke_int3_handler()` ([`crate::handler`], [`super::HandlerKind::Emulate`]).

use super::int3_handler::{
    Emulates, Enter, HandlerRules, Lookup, NR_ENTRIES_CODE, POKE_INT3_HANDLER, PUT_DESC_CODE, SWITCH_CODE,
};
use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "seed" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version =
    Version::new("seed", HandlerKind::Emulate, LocRules::Seed, Batching::CallerSorted, text_poke_bp_batch)
        .kprobes(Recovery::Retries, ArmSync::None)
        .names(Names::ON_EACH_CPU)
        .about(DESCRIPTION);

/// The seed's emulating `poke_int3_handler()` ([`HandlerKind::Emulate`], also linux-5.5's):
/// `bp_patching.nr_entries` first, no reference, the lookup in `bp_patching`, and
/// `switch (tp->opcode)` over INT3, CALL, JMP32 and JMP8 (NOPs became JMPs with disp 0).
pub(crate) const HANDLER: HandlerRules = HandlerRules {
    function: POKE_INT3_HANDLER,
    enter: Enter::NrEntries,
    lookup: Lookup::Published,
    emulates: Emulates::Opcodes { ret: false, jcc: false },
    entry_code: NR_ENTRIES_CODE,
    emulate_code: SWITCH_CODE,
    put_code: PUT_DESC_CODE,
};

const DESCRIPTION: &str = "the seed patch (v3 1/6, 2019): poke_int3_handler emulates CALL/JMP32/JMP8/NOP2/NOP5, \
         last sync conditional on do_sync, vec cleared before nr_entries without a sync (bug B3)";

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize, _cpus: usize) -> Vec<Op> {
    let mut ops = vec![Op::BeginBatch(batch)];
    ops.extend(int3_phases(mutants, batch, n, vec![Op::SetVec(batch), Op::SetNr(batch)], false));
    ops.extend([Op::ClearVec, Op::ClearNr, Op::EndBatch(batch)]);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_vector_is_cleared_before_nr_entries_without_a_sync() {
        let ops = text_poke_bp_batch(&[], 3, 1, 1);
        let vec = ops.iter().position(|o| *o == Op::ClearVec).unwrap();
        assert_eq!(ops[vec + 1], Op::ClearNr, "the seed clears vec, then nr_entries (bug B3)");
        assert_eq!(ops.last(), Some(&Op::EndBatch(3)));
        let no_int3 = text_poke_bp_batch(&[Mutant::NoInt3], 0, 2, 1);
        assert!(!no_int3.iter().any(|o| matches!(o, Op::PokeInt3 { .. })));
    }
}
