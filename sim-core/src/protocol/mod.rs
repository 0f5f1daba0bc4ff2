//! The protocol catalogue (DESIGN.md §2.6, reference/kernel-protocol.md §1–§3). Each kernel
//! version is one module that owns everything it is — its [`Version`] (`VERSION`: name and
//! description, INT3 handler ([`HandlerKind`]), `text_poke_loc_init` rules ([`LocRules`]), how
//! its callers batch, how its kprobes behave, the kernel functions its traces name) — its INT3
//! handler's rules (`HANDLER`: [`HandlerRules`], which [`crate::handler`] runs) and its patcher
//! program, a sequence of [`Op`]s per batch.
//! [`Protocol`] names a version and reads everything from its `VERSION`; a [`Mutant`] is a named
//! edit of a program, the handler, `register_kprobe()` or batching.
//!
//! | version | module | kernel functions |
//! |---|---|---|
//! | `linux-5.4` | [`linux_5_4`] | `text_poke_bp_batch()` with a detour, `poke_int3_handler()` jumping to it |
//! | `seed` | [`seed`] | the seed patch: emulating `poke_int3_handler()`, conditional last sync |
//! | `linux-5.5` | [`linux_5_5`] | the seed + "Sync bp_patching update for avoiding NULL pointer exception" |
//! | `linux-5.6` | [`linux_5_6`] | `bp_desc` with `try_get_desc()`/`put_desc()` and the refs wait |
//! | `linux-6.0` | [`linux_6_0`] | the static `bp_desc` of efd608fa7403 (the `try_get_desc()` race fixed) |
//! | `linux-6.16` | [`linux_6_16`] | `smp_text_poke_batch_add()`/`_finish()`, per-CPU refs, RET and Jcc |

pub mod change;
pub mod int3_handler;
pub mod kernel;
pub mod linux_5_4;
pub mod linux_5_5;
pub mod linux_5_6;
pub mod linux_6_0;
pub mod linux_6_16;
pub mod loc;
pub mod mutant;
pub mod seed;

use crate::error::Subject;
use crate::program::{template_of, Op, Step};
use crate::SimError;

pub use int3_handler::{Emulates, Enter, HandlerKind, HandlerPc, HandlerRules, Lookup};
pub use loc::{text_poke_loc_init, LocRules, TextPokeLoc};
pub use mutant::{EditFacts, Edits, HandlerEdit, Mutant, MutantInfo, SplitCheck, Versions};

/// A protocol version.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Protocol {
    /// Before the seed: the handler jumps to a detour address.
    Linux54,
    /// The seed patch ("x86/alternatives: Teach text_poke_bp() to emulate instructions").
    Seed,
    /// The seed plus the B3 fix: `nr_entries = 0; text_poke_sync(); vec = NULL`.
    Linux55,
    /// Reference-counted descriptor on the patcher's stack (1f676247f36a).
    Linux56,
    /// The descriptor made a static global (efd608fa7403).
    Linux60,
    /// The 2025 `smp_text_poke_*` rewrite with per-CPU refs, RET and Jcc emulation.
    Linux616,
}

impl Protocol {
    /// Every version, oldest first.
    pub const ALL: [Protocol; 6] = [
        Protocol::Linux54,
        Protocol::Seed,
        Protocol::Linux55,
        Protocol::Linux56,
        Protocol::Linux60,
        Protocol::Linux616,
    ];

    /// Everything this version is: one place per version, its own module's `VERSION`.
    pub fn version(self) -> &'static Version {
        match self {
            Protocol::Linux54 => &linux_5_4::VERSION,
            Protocol::Seed => &seed::VERSION,
            Protocol::Linux55 => &linux_5_5::VERSION,
            Protocol::Linux56 => &linux_5_6::VERSION,
            Protocol::Linux60 => &linux_6_0::VERSION,
            Protocol::Linux616 => &linux_6_16::VERSION,
        }
    }

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        self.version().name
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        self.version().description
    }

    /// The INT3 handler this version runs.
    pub fn handler(self) -> HandlerKind {
        self.version().handler
    }

    /// This version's program with `mutants` applied, as a template a scenario's `program`
    /// can spell out (`pokesim program`). Refused if a mutant does not apply to the version or
    /// edits the handler rather than the program (a custom program keeps the version's handler).
    pub fn program_template(self, mutants: &[Mutant]) -> Result<Vec<Step>, SimError> {
        let bad = |m: &Mutant, why: &str| Err(SimError::invalid(Subject::Mutants, format!("'{m}' {why}")));
        for (i, m) in mutants.iter().enumerate() {
            if !m.applies_to(self) {
                return bad(m, &format!("does not apply to protocol '{self}'"));
            }
            if mutants[..i].contains(m) {
                return bad(m, "is listed twice");
            }
            if let Some(why) = m.edits().facts().not_in_program {
                return bad(m, why);
            }
            let others: Vec<Mutant> = mutants.iter().copied().filter(|o| o != m).collect();
            if self.batch_program(mutants, 0, 1, 1) == self.batch_program(&others, 0, 1, 1) {
                return bad(m, "leaves the program unchanged together with the other mutants listed");
            }
        }
        template_of(&self.batch_program(mutants, 0, 1, 1))
            .ok_or_else(|| SimError::Internal(format!("{self}: its program has a plain text_poke() step")))
    }

    /// Whether this version's `kprobe_int3_handler()` (with `CONFIG_KPROBES`) claims a trap at
    /// an address that has no kprobe and no longer holds an INT3 — "The breakpoint instruction
    /// was removed right after we hit it": `regs->ip = (unsigned long)addr; return 1;`. In every
    /// version up to 6.0 (`arch/x86/kernel/kprobes/core.c`); 8e791f7eba4c ("x86/kprobes: Drop
    /// removed INT3 handling code", v6.3) removed it, so on 6.16 such a trap goes on to
    /// `notify_die()` and `die("int3")`.
    pub(crate) fn kprobe_recovers_vanished_int3(self) -> bool {
        self.version().recovery == Recovery::Retries
    }

    /// Whether `arch_arm_kprobe()` and `arch_disarm_kprobe()` follow their `text_poke()` with
    /// `text_poke_sync()`: from 5c02ece81848d ("x86/kprobes: Fix ordering while
    /// text-patching", v5.6) on; linux-5.4, the seed and linux-5.5 do not.
    pub(crate) fn kprobe_arm_syncs(self) -> bool {
        self.version().arm_sync == ArmSync::TextPokeSync
    }

    /// The program of a kprobe that is its own patching client (`kernel/kprobes.c`), `cycles`
    /// times: `register_kprobe()` — `prepare_kprobe()` (the instruction copied) under
    /// `text_mutex` and `hlist_add_head_rcu()`, then `arm_kprobe()` under `text_mutex` — and `unregister_kprobe()` — `disarm_kprobe()` under `text_mutex`, then
    /// `hlist_del_rcu()` and `synchronize_rcu()`; arming and disarming are
    /// `arch_arm_kprobe()`/`arch_disarm_kprobe()`.
    pub(crate) fn kprobe_program(self, mutants: &[Mutant], kprobe: usize, cycles: u32) -> Vec<Op> {
        let sync = self.kprobe_arm_syncs();
        let disarm_sync = sync && !mutants.contains(&Mutant::KprobeDisarmNoSync);
        let mut ops = Vec::new();
        for _ in 0..cycles {
            ops.extend([Op::LockTextMutex, Op::RegisterKprobe(kprobe), Op::UnlockTextMutex]);
            ops.extend([Op::LockTextMutex, Op::ArmKprobe(kprobe)]);
            ops.extend(sync.then_some(Op::Sync));
            ops.extend([Op::UnlockTextMutex, Op::LockTextMutex, Op::DisarmKprobe(kprobe)]);
            ops.extend(disarm_sync.then_some(Op::Sync));
            ops.extend([Op::UnlockTextMutex, Op::UnregisterKprobe(kprobe), Op::SynchronizeRcu]);
        }
        ops
    }

    /// Which `text_poke_loc_init` checks apply.
    pub(crate) fn loc_rules(self) -> LocRules {
        self.version().loc_rules
    }

    /// True if batches go through `smp_text_poke_batch_add()`, which flushes on a full or
    /// out-of-order vector, rather than a caller-sorted array.
    pub(crate) fn batch_add(self) -> bool {
        self.version().batching == Batching::BatchAdd
    }

    /// The patcher program for one batch: array id `batch`, `n` entries, `cpus` vCPUs.
    pub fn batch_program(self, mutants: &[Mutant], batch: usize, n: usize, cpus: usize) -> Vec<Op> {
        (self.version().program)(mutants, batch, n, cpus)
    }
}

impl HandlerKind {
    /// This handler's rules, as the version module that introduced it states them.
    pub fn rules(self) -> &'static HandlerRules {
        match self {
            HandlerKind::Detour => &linux_5_4::HANDLER,
            HandlerKind::Emulate => &seed::HANDLER,
            HandlerKind::Desc => &linux_5_6::HANDLER,
            HandlerKind::GlobalRefs => &linux_6_0::HANDLER,
            HandlerKind::PerCpuRefs => &linux_6_16::HANDLER,
        }
    }
}

/// How a version's callers hand it a batch.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Batching {
    /// `text_poke_bp_batch()` on the caller's sorted vector, flushed at `TP_VEC_MAX`.
    CallerSorted,
    /// `smp_text_poke_batch_add()`, which flushes on a full or out-of-order vector.
    BatchAdd,
}

/// What `kprobe_int3_handler()` does with a trap whose INT3 is no longer in memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Recovery {
    /// Backs `regs->ip` up over it and returns 1 (up to 6.2).
    Retries,
    /// Returns 0: `notify_die()`, then `die("int3")` (8e791f7eba4c, v6.3).
    Dies,
}

/// Whether `arch_arm_kprobe()`/`arch_disarm_kprobe()` sync after their `text_poke()`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArmSync {
    /// No sync (before 5c02ece81848d).
    None,
    /// `text_poke_sync()` (5.6 on).
    TextPokeSync,
}

/// The kernel functions a version's traces name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Names {
    /// The function a batch's operations belong to.
    pub batch_function: &'static str,
    /// Its sync, as the C statement.
    pub sync_code: &'static str,
    /// The trap entry.
    pub trap_entry: &'static str,
    /// The patching INT3 handler.
    pub handler_function: &'static str,
}

impl Names {
    /// v5.3/5.4 and the seed: `on_each_cpu(do_sync_core, …)`.
    pub(crate) const ON_EACH_CPU: Names = Names {
        batch_function: "text_poke_bp_batch()",
        sync_code: "on_each_cpu(do_sync_core, NULL, 1);",
        trap_entry: "do_int3()",
        handler_function: "poke_int3_handler()",
    };
    /// 5.5 and 5.6: `text_poke_sync()`.
    pub(crate) const TEXT_POKE_SYNC: Names = Names { sync_code: "text_poke_sync();", ..Names::ON_EACH_CPU };
    /// 6.0: the `exc_int3()` entry.
    pub(crate) const EXC_INT3: Names = Names { trap_entry: "exc_int3() -> do_int3()", ..Names::TEXT_POKE_SYNC };
    /// 6.16: the `smp_text_poke_*` names.
    pub(crate) const SMP_TEXT_POKE: Names = Names {
        batch_function: "smp_text_poke_batch_finish()",
        sync_code: "smp_text_poke_sync_each_cpu();",
        trap_entry: "exc_int3() -> do_int3()",
        handler_function: "smp_text_poke_int3_handler()",
    };
}

/// The operations of one batch: mutants, array id, entries, vCPUs.
pub(crate) type BatchProgram = fn(&[Mutant], usize, usize, usize) -> Vec<Op>;

/// One kernel version, as its own module states it (`VERSION`): its name and what it is, its
/// INT3 handler and `text_poke_loc_init()` rules, how its callers batch, how its kprobes
/// behave, the kernel functions its traces name, and its patcher program.
#[derive(Clone, Copy, Debug)]
pub struct Version {
    /// Name on the command line and in files.
    pub name: &'static str,
    /// One-line description (the commits it is).
    pub description: &'static str,
    /// Its INT3 handler.
    pub handler: HandlerKind,
    /// Its `text_poke_loc_init()` checks.
    pub loc_rules: LocRules,
    /// How its callers batch.
    pub batching: Batching,
    /// `kprobe_int3_handler()` on a vanished INT3.
    pub recovery: Recovery,
    /// `arch_arm_kprobe()`/`arch_disarm_kprobe()`'s sync.
    pub arm_sync: ArmSync,
    /// The kernel functions its traces name.
    pub names: Names,
    /// Its patcher program for one batch.
    pub program: BatchProgram,
    /// Whether the kernel has static calls and `static_call_text_reserved()` (v5.10 on).
    pub static_calls: bool,
}

impl Version {
    /// A version with pre-5.6 kprobes and 5.4's names; the builders below set the rest.
    pub const fn new(
        name: &'static str,
        handler: HandlerKind,
        loc_rules: LocRules,
        batching: Batching,
        program: BatchProgram,
    ) -> Self {
        Self {
            name,
            description: "",
            handler,
            loc_rules,
            batching,
            recovery: Recovery::Retries,
            arm_sync: ArmSync::None,
            names: Names::ON_EACH_CPU,
            program,
            static_calls: false,
        }
    }

    /// A kernel with static calls (v5.10 on): `static_call_text_reserved()` exists.
    pub const fn with_static_calls(self) -> Self {
        Self { static_calls: true, ..self }
    }

    /// With its kprobes' behaviour.
    pub const fn kprobes(self, recovery: Recovery, arm_sync: ArmSync) -> Self {
        Self { recovery, arm_sync, ..self }
    }

    /// With the kernel functions its traces name.
    pub const fn names(self, names: Names) -> Self {
        Self { names, ..self }
    }

    /// With its description.
    pub const fn about(self, description: &'static str) -> Self {
        Self { description, ..self }
    }
}

crate::named_set!(Protocol, "protocol");

/// The INT3 phases every version shares — INT3s, sync, tails, sync if any, first bytes, sync
/// if any — with the publication ops placed before the INT3s, and every phase-level mutant
/// applied. `legacy` selects 5.4's unconditional first-byte write and last sync.
pub(crate) fn int3_phases(mutants: &[Mutant], batch: usize, n: usize, publish: Vec<Op>, legacy: bool) -> Vec<Op> {
    let has = |m: Mutant| mutants.contains(&m);
    let wmb: Vec<Op> = if has(Mutant::NoWmb) { vec![] } else { vec![Op::Wmb] };
    let mut ops = Vec::new();
    let late_publish = has(Mutant::PublishAfterInt3);
    if !late_publish {
        ops.extend(publish.iter().copied());
        ops.extend(wmb.iter().copied());
    }
    if has(Mutant::NoInt3) {
        ops.extend((0..n).map(|entry| Op::PokeWhole { batch, entry }));
        if late_publish {
            ops.extend(publish);
        }
        ops.push(Op::Sync);
        return ops;
    }
    let int3s = (0..n).map(|entry| Op::PokeInt3 { batch, entry });
    let mut tails = vec![Op::ResetDoSync];
    tails.extend((0..n).map(|entry| Op::PokeTail { batch, entry }));
    if !has(Mutant::NoSyncAfterTail) {
        tails.push(Op::SyncIfDoSync);
    }
    let mut firsts = vec![Op::ResetDoSync];
    if legacy {
        firsts.extend((0..n).map(|entry| Op::PokeFirstAlways { batch, entry }));
    } else {
        firsts.extend((0..n).map(|entry| Op::PokeFirst { batch, entry }));
    }
    if !has(Mutant::NoSyncAfterFirst) {
        firsts.push(if legacy { Op::Sync } else { Op::SyncIfDoSync });
    }
    if has(Mutant::TailBeforeInt3) {
        ops.extend(tails.iter().copied());
    }
    ops.extend(int3s);
    if late_publish {
        ops.extend(publish);
        ops.extend(wmb);
    }
    if !has(Mutant::NoSyncAfterInt3) {
        ops.push(Op::Sync);
    }
    if !has(Mutant::TailBeforeInt3) {
        ops.extend(tails);
    }
    ops.extend(firsts);
    ops
}

#[cfg(test)]
mod tests {
    use super::*;

    fn syncs(ops: &[Op]) -> usize {
        ops.iter().filter(|o| matches!(o, Op::Sync | Op::SyncIfDoSync)).count()
    }

    #[test]
    fn every_version_syncs_three_times_around_the_int3s_and_each_sync_mutant_drops_one() {
        for p in Protocol::ALL {
            let base = syncs(&p.batch_program(&[], 0, 2, 2));
            let extra = if p == Protocol::Linux55 { 1 } else { 0 };
            assert_eq!(base, 3 + extra, "{p}");
            for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst] {
                assert_eq!(syncs(&p.batch_program(&[m], 0, 2, 2)), 2 + extra, "{p} {m}");
            }
        }
    }

    #[test]
    fn publication_precedes_the_first_int3_unless_mutated() {
        for p in Protocol::ALL {
            let is_publish =
                |o: &Op| matches!(o, Op::SetNr(_) | Op::PublishDesc(_) | Op::SetRefs(_) | Op::SetGlobalRefs);
            let first_int3 = |ops: &[Op]| ops.iter().position(|o| matches!(o, Op::PokeInt3 { .. })).unwrap();
            let ops = p.batch_program(&[], 0, 1, 2);
            assert!(ops.iter().rposition(is_publish).unwrap() < first_int3(&ops), "{p}");
            let ops = p.batch_program(&[Mutant::PublishAfterInt3], 0, 1, 2);
            assert!(ops.iter().position(is_publish).unwrap() > first_int3(&ops), "{p}");
        }
    }

    #[test]
    fn names_round_trip_and_unknown_names_list_the_valid_ones() {
        for m in Mutant::ALL {
            assert_eq!(m.name().parse::<Mutant>().unwrap(), m);
        }
        for p in Protocol::ALL {
            assert_eq!(p.name().parse::<Protocol>().unwrap(), p);
        }
        let e = "linux-4.0".parse::<Protocol>().unwrap_err().to_string();
        assert!(e.contains("linux-5.4, seed, linux-5.5, linux-5.6, linux-6.0, linux-6.16"), "{e}");
    }
}
