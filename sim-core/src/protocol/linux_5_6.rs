//! linux-5.6: "x86/alternatives: Use a descriptor with a reference count" — Peter Zijlstra,
//! 1f676247f36a (reference/kernel-protocol.md §1.2, B4):
//!
//! ```text
//! struct bp_patching_desc desc = { .vec = tp, .nr_entries = nr_entries, .refs = ATOMIC_INIT(1) };
//! smp_store_release(&bp_desc, &desc);      /* rcu_assign_pointer */
//! ...                                      // INT3s, sync, tails, sync if any, firsts, sync if any
//! WRITE_ONCE(bp_desc, NULL);
//! if (!atomic_dec_and_test(&desc.refs))
//!         atomic_cond_read_acquire(&desc.refs, !VAL);
//! ```
//!
//! Handler ([`super::HandlerKind::Desc`]): `desc = try_get_desc(&bp_desc)` — `READ_ONCE`, then
//! `atomic_inc_not_zero(&desc->refs)` — look up, emulate, `put_desc(desc)`
//! (`smp_mb__before_atomic(); atomic_dec(&desc->refs)`). The descriptor lives on the patcher's
//! stack: once the batch returns, touching it is a use after free.

use super::int3_handler::{Emulates, Enter, HandlerRules, Lookup, POKE_INT3_HANDLER, PUT_DESC_CODE, SWITCH_CODE};
use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "linux-5.6" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version =
    Version::new("linux-5.6", HandlerKind::Desc, LocRules::Seed, Batching::CallerSorted, text_poke_bp_batch)
        .kprobes(Recovery::Retries, ArmSync::TextPokeSync)
        .names(Names::TEXT_POKE_SYNC)
        .about(DESCRIPTION);

/// `poke_int3_handler()` with `try_get_desc()` ([`HandlerKind::Desc`]): `READ_ONCE(bp_desc)`,
/// then `atomic_inc_not_zero(&desc->refs)` as a step of its own; the lookup in `desc`; the
/// seed's `switch`; `put_desc()`.
pub(crate) const HANDLER: HandlerRules = HandlerRules {
    function: POKE_INT3_HANDLER,
    enter: Enter::Desc,
    lookup: Lookup::Desc,
    emulates: Emulates::Opcodes { ret: false, jcc: false },
    entry_code: "smp_rmb(); desc = READ_ONCE(bp_desc); if (!desc) return 0; /* try_get_desc() */",
    emulate_code: SWITCH_CODE,
    put_code: PUT_DESC_CODE,
};

const DESCRIPTION: &str = "1f676247f36a: on-stack bp_desc with refs; try_get_desc/put_desc in the handler, \
         the patcher waits for refs to drain";

/// The operations of one `text_poke_bp_batch(tp, n)` call on array `batch`.
pub fn text_poke_bp_batch(mutants: &[Mutant], batch: usize, n: usize, _cpus: usize) -> Vec<Op> {
    let wait = !mutants.contains(&Mutant::SkipRefsWait);
    let mut ops = vec![Op::BeginBatch(batch)];
    ops.extend(int3_phases(mutants, batch, n, vec![Op::PublishDesc(batch)], false));
    ops.extend([Op::ClearDesc, Op::PutDesc { batch, wait }, Op::EndBatch(batch)]);
    ops
}
