//! `text_poke_bp_batch()` of the seed patch (reference/kernel-protocol.md §1.1; the patch is
//! `shared/seed/text_poke_bp-emulate-v3-1-6.txt`), as a program of operations:
//!
//! ```text
//! bp_patching.vec = tp; bp_patching.nr_entries = nr_entries; smp_wmb();
//! for each entry: text_poke(addr, INT3, 1);                       // first step
//! on_each_cpu(do_sync_core, NULL, 1);
//! for (do_sync = 0, ...) if (len > 1) { text_poke(addr+1, text+1, len-1); do_sync++; }
//! if (do_sync) on_each_cpu(do_sync_core, NULL, 1);                // "very likely not necessary"
//! for (do_sync = 0, ...) { if (text[0] == INT3) continue; text_poke(addr, text, 1); do_sync++; }
//! if (do_sync) on_each_cpu(do_sync_core, NULL, 1);                // conditional since the seed
//! bp_patching.vec = NULL; bp_patching.nr_entries = 0;             // no sync: bug B3
//! ```
//!
//! The handler is `poke_int3_handler()`, in [`crate::handler`].

use super::Mutant;
use crate::patcher::Op;

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`, with `mutants`
/// applied.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize) -> Vec<Op> {
    let has = |m: Mutant| mutants.contains(&m);
    let mut ops = vec![Op::SetVec(batch), Op::SetNr(batch), Op::Wmb];
    if has(Mutant::NoInt3) {
        // The hazard text_poke_bp exists to avoid: plain text_poke of the whole instruction.
        ops.extend((0..n).map(|entry| Op::PokeWhole { batch, entry }));
        ops.push(Op::Sync);
    } else {
        ops.extend((0..n).map(|entry| Op::PokeInt3 { batch, entry }));
        if !has(Mutant::NoSyncAfterInt3) {
            ops.push(Op::Sync);
        }
        ops.push(Op::ResetDoSync);
        ops.extend((0..n).map(|entry| Op::PokeTail { batch, entry }));
        if !has(Mutant::NoSyncAfterTail) {
            ops.push(Op::SyncIfDoSync);
        }
        ops.push(Op::ResetDoSync);
        ops.extend((0..n).map(|entry| Op::PokeFirst { batch, entry }));
        if !has(Mutant::NoSyncAfterFirst) {
            ops.push(Op::SyncIfDoSync);
        }
    }
    ops.extend([Op::ClearVec, Op::ClearNr, Op::EndBatch(batch)]);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syncs(ops: &[Op]) -> usize {
        ops.iter().filter(|o| matches!(o, Op::Sync | Op::SyncIfDoSync)).count()
    }

    #[test]
    fn the_seed_has_three_syncs_and_each_sync_mutant_drops_one() {
        assert_eq!(syncs(&text_poke_bp_batch(&[], 0, 2)), 3);
        for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst] {
            assert_eq!(syncs(&text_poke_bp_batch(&[m], 0, 2)), 2, "{m}");
        }
        let no_int3 = text_poke_bp_batch(&[Mutant::NoInt3], 0, 2);
        assert!(!no_int3.iter().any(|o| matches!(o, Op::PokeInt3 { .. })));
    }

    #[test]
    fn the_vector_is_cleared_before_nr_entries() {
        let ops = text_poke_bp_batch(&[], 3, 1);
        let vec = ops.iter().position(|o| *o == Op::ClearVec).unwrap();
        let nr = ops.iter().position(|o| *o == Op::ClearNr).unwrap();
        assert!(vec < nr, "the seed clears vec first (bug B3)");
        assert_eq!(ops.last(), Some(&Op::EndBatch(3)));
    }
}
