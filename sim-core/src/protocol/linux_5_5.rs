//! linux-5.5: the seed plus "x86/alternatives: Sync bp_patching update for avoiding NULL
//! pointer exception" (Masami Hiramatsu, 285a54efe386; bug B3, reference/kernel-protocol.md §3):
//!
//! ```text
//! ...                              // as the seed, up to the conditional last sync
//! bp_patching.nr_entries = 0;
//! /*
//!  * This sync_core () call ensures that all INT3 handlers in progress
//!  * have finished. This allows poke_int3_handler() after this to
//!  * avoid touching bp_paching.vec by checking nr_entries == 0.
//!  */
//! text_poke_sync();
//! bp_patching.vec = NULL;
//! ```
//!
//! The IPI cannot complete on a CPU that is inside its handler (handlers run with interrupts
//! off), which is what makes the extra sync a barrier against handlers.

use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "linux-5.5" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version =
    Version::new("linux-5.5", HandlerKind::Emulate, LocRules::Seed, Batching::CallerSorted, text_poke_bp_batch)
        .kprobes(Recovery::Retries, ArmSync::None)
        .names(Names::TEXT_POKE_SYNC)
        .about(DESCRIPTION);

const DESCRIPTION: &str = "the seed + 285a54efe386: nr_entries = 0; text_poke_sync(); vec = NULL";

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize, _cpus: usize) -> Vec<Op> {
    let has = |m: Mutant| mutants.contains(&m);
    let mut ops = vec![Op::BeginBatch(batch)];
    ops.extend(int3_phases(mutants, batch, n, vec![Op::SetVec(batch), Op::SetNr(batch)], false));
    let sync: &[Op] = if has(Mutant::NoSyncBeforeVecClear) { &[] } else { &[Op::Sync] };
    if has(Mutant::ClearVecBeforeNr) {
        ops.push(Op::ClearVec);
        ops.extend_from_slice(sync);
        ops.push(Op::ClearNr);
    } else {
        ops.push(Op::ClearNr);
        ops.extend_from_slice(sync);
        ops.push(Op::ClearVec);
    }
    ops.push(Op::EndBatch(batch));
    ops
}
