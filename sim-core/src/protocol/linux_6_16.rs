//! linux-6.16: Ingo Molnar's 2025 `smp_text_poke_*` rewrite with Eric Dumazet's per-CPU
//! reference counts (reference/kernel-protocol.md §1.3):
//!
//! ```text
//! smp_text_poke_batch_add(addr, opcode, len, emulate):
//!         if (nr_entries == TEXT_POKE_ARRAY_MAX || !text_poke_addr_ordered(addr))
//!                 smp_text_poke_batch_finish();
//!         __smp_text_poke_batch_add(...);            // vec[nr_entries++] = ...
//!
//! smp_text_poke_batch_finish():
//!         if (!nr_entries) return;
//!         for_each_possible_cpu(i) atomic_set_release(per_cpu_ptr(&text_poke_array_refs, i), 1);
//!         smp_wmb();
//!         for each: old = *addr; text_poke(addr, &int3, 1);
//!         smp_text_poke_sync_each_cpu();
//!         for each with len > 1: text_poke(addr + 1, new + 1, len - 1); do_sync++;   // len 6: 0x0f ‖ text
//!         if (do_sync) smp_text_poke_sync_each_cpu();
//!         for each: byte = len == 6 ? 0x0f : text[0]; if (byte == INT3) continue; text_poke(addr, &byte, 1); do_sync++;
//!         if (do_sync) smp_text_poke_sync_each_cpu();
//!         for_each_possible_cpu(i) if (!atomic_dec_and_test(refs)) atomic_cond_read_acquire(refs, !VAL);
//!         nr_entries = 0;
//! ```
//!
//! The vector is static: entries of an earlier batch stay readable. The flush-on-full and
//! flush-on-out-of-order splitting of `smp_text_poke_batch_add()` happens when the machine
//! builds its batches; each resulting finish is one batch here.
//!
//! Handler ([`super::HandlerKind::PerCpuRefs`]): `smp_rmb()`;
//! `raw_atomic_inc_not_zero(this_cpu_ptr(&text_poke_array_refs))` or return 0; bsearch (or the
//! single-entry compare); `ip += tpl->len`; INT3 → not consumed, RET → `int3_emulate_ret`,
//! CALL → `int3_emulate_call`, JMP32/JMP8 → `int3_emulate_jmp`, `0x70..0x7f` →
//! `int3_emulate_jcc`; put (`smp_mb__before_atomic(); raw_atomic_dec`).

use super::int3_handler::{Emulates, Enter, HandlerRules, Lookup, SWITCH_CODE};
use super::{int3_phases, ArmSync, Batching, HandlerKind, LocRules, Mutant, Names, Recovery, Version};
use crate::program::Op;

/// Everything "linux-6.16" is, for [`super::Protocol::version`].
pub(crate) const VERSION: Version =
    Version::new("linux-6.16", HandlerKind::PerCpuRefs, LocRules::Modern, Batching::BatchAdd, smp_text_poke_batch)
        .kprobes(Recovery::Dies, ArmSync::TextPokeSync)
        .names(Names::SMP_TEXT_POKE)
        .about(DESCRIPTION)
        .with_static_calls();

/// `smp_text_poke_int3_handler()` ([`HandlerKind::PerCpuRefs`]): this CPU's
/// `text_poke_array_refs`, the lookup in the static `text_poke_array`, the `switch` with RET and
/// Jcc, `raw_atomic_dec()`.
pub(crate) const HANDLER: HandlerRules = HandlerRules {
    function: "smp_text_poke_int3_handler()",
    enter: Enter::PerCpuRefs,
    lookup: Lookup::StaticArray,
    emulates: Emulates::Opcodes { ret: true, jcc: true },
    entry_code: "smp_rmb(); if (!raw_atomic_inc_not_zero(this_cpu_ptr(&text_poke_array_refs))) return 0;",
    emulate_code: SWITCH_CODE,
    put_code: "out_put: raw_atomic_dec(this_cpu_ptr(&text_poke_array_refs));",
};

const DESCRIPTION: &str = "smp_text_poke_batch_add/_finish: per-CPU refs set before the first INT3, sorted vector \
         of at most 256 entries (flushed when full or out of order), bsearch, RET and Jcc \
         emulation, Jcc.d32 as 6 bytes, RET/JMP padded with INT3";

/// `smp_text_poke_batch_add()` of the `n` entries of group `batch`, then
/// `smp_text_poke_batch_finish()`.
pub(crate) fn smp_text_poke_batch(mutants: &[Mutant], batch: usize, n: usize, cpus: usize) -> Vec<Op> {
    let wait = !mutants.contains(&Mutant::SkipRefsWait);
    let mut ops: Vec<Op> = (0..n).map(|entry| Op::AddEntry { batch, entry }).collect();
    ops.extend(int3_phases(mutants, batch, n, (0..cpus).map(Op::SetRefs).collect(), false));
    ops.extend((0..cpus).map(|cpu| Op::DecRefs { cpu, wait }));
    ops.extend([Op::ClearNr, Op::EndBatch(batch)]);
    ops
}
