//! The protocol catalogue (DESIGN.md §2.6, reference/kernel-protocol.md §1–§3). Each kernel
//! version is one module that owns everything it is — its [`Version`] (`VERSION`: name and
//! description, INT3 handler ([`HandlerKind`], whose micro-steps are [`crate::handler`]'s),
//! `text_poke_loc_init` rules ([`LocRules`]), how its callers batch, how its kprobes behave, the
//! kernel functions its traces name) and its patcher program, a sequence of [`Op`]s per batch.
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

pub mod kernel;
pub mod linux_5_4;
pub mod linux_5_5;
pub mod linux_5_6;
pub mod linux_6_0;
pub mod linux_6_16;
pub mod loc;
pub mod seed;

use crate::error::Subject;
use crate::program::{template_of, Op, Step};
use crate::SimError;

pub use loc::{text_poke_loc_init, LocRules, TextPokeLoc};

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

/// How a version's INT3 handler finds its entry and what it does with it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerKind {
    /// `bp_patching { vec, nr_entries }`, then `regs->ip = tp->detour` (5.4).
    Detour,
    /// `bp_patching { vec, nr_entries }`, then emulate (seed, 5.5).
    Emulate,
    /// `try_get_desc(&bp_desc)`, emulate, `put_desc()` (5.6).
    Desc,
    /// `try_get_desc()` on the static `bp_desc.refs`, emulate incl. RET, put (6.0).
    GlobalRefs,
    /// `try_get_text_poke_array()` on this CPU's refs, emulate incl. RET/Jcc, put (6.16).
    PerCpuRefs,
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
            let others: Vec<Mutant> = mutants.iter().copied().filter(|o| o != m).collect();
            if matches!(m, Mutant::NoTextReserved | Mutant::KprobeDisarmNoSync) {
                return bad(m, "edits register_kprobe()/arch_disarm_kprobe(), not the text_poke_bp() program");
            }
            if matches!(m, Mutant::BatchNoFullCheck | Mutant::BatchNoOrderCheck) {
                return bad(m, "edits how smp_text_poke_batch_add() splits batches, not a batch's program");
            }
            if self.batch_program(mutants, 0, 1, 1) == self.batch_program(&others, 0, 1, 1) {
                return bad(
                    m,
                    "edits the INT3 handler, not the patcher program; a custom program keeps the version's handler",
                );
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
    pub fn kprobe_recovers_vanished_int3(self) -> bool {
        self.version().recovery == Recovery::Retries
    }

    /// Whether `arch_arm_kprobe()` and `arch_disarm_kprobe()` follow their `text_poke()` with
    /// `text_poke_sync()`: from 5c02ece81848d ("x86/kprobes: Fix ordering while
    /// text-patching", v5.6) on; linux-5.4, the seed and linux-5.5 do not.
    pub fn kprobe_arm_syncs(self) -> bool {
        self.version().arm_sync == ArmSync::TextPokeSync
    }

    /// The program of a kprobe that is its own patching client (`kernel/kprobes.c`), `cycles`
    /// times: `register_kprobe()` — `prepare_kprobe()` (the instruction copied) under
    /// `text_mutex` and `hlist_add_head_rcu()`, then `arm_kprobe()` under `text_mutex` — and `unregister_kprobe()` — `disarm_kprobe()` under `text_mutex`, then
    /// `hlist_del_rcu()` and `synchronize_rcu()`; arming and disarming are
    /// `arch_arm_kprobe()`/`arch_disarm_kprobe()`.
    pub fn kprobe_program(self, mutants: &[Mutant], kprobe: usize, cycles: u32) -> Vec<Op> {
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
    pub fn loc_rules(self) -> LocRules {
        self.version().loc_rules
    }

    /// True if batches go through `smp_text_poke_batch_add()`, which flushes on a full or
    /// out-of-order vector, rather than a caller-sorted array.
    pub fn batch_add(self) -> bool {
        self.version().batching == Batching::BatchAdd
    }

    /// The patcher program for one batch: array id `batch`, `n` entries, `cpus` vCPUs.
    pub fn batch_program(self, mutants: &[Mutant], batch: usize, n: usize, cpus: usize) -> Vec<Op> {
        (self.version().program)(mutants, batch, n, cpus)
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
    pub const ON_EACH_CPU: Names = Names {
        batch_function: "text_poke_bp_batch()",
        sync_code: "on_each_cpu(do_sync_core, NULL, 1);",
        trap_entry: "do_int3()",
        handler_function: "poke_int3_handler()",
    };
    /// 5.5 and 5.6: `text_poke_sync()`.
    pub const TEXT_POKE_SYNC: Names = Names { sync_code: "text_poke_sync();", ..Names::ON_EACH_CPU };
    /// 6.0: the `exc_int3()` entry.
    pub const EXC_INT3: Names = Names { trap_entry: "exc_int3() -> do_int3()", ..Names::TEXT_POKE_SYNC };
    /// 6.16: the `smp_text_poke_*` names.
    pub const SMP_TEXT_POKE: Names = Names {
        batch_function: "smp_text_poke_batch_finish()",
        sync_code: "smp_text_poke_sync_each_cpu();",
        trap_entry: "exc_int3() -> do_int3()",
        handler_function: "smp_text_poke_int3_handler()",
    };
}

/// The operations of one batch: mutants, array id, entries, vCPUs.
pub type BatchProgram = fn(&[Mutant], usize, usize, usize) -> Vec<Op>;

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

/// A named edit of a protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Mutant {
    /// Drop the sync after writing the INT3s.
    NoSyncAfterInt3,
    /// Drop the sync after writing the tails.
    NoSyncAfterTail,
    /// Drop the sync after writing the first bytes.
    NoSyncAfterFirst,
    /// Write each new instruction directly, without the INT3 step.
    NoInt3,
    /// Write the tails before the INT3s.
    TailBeforeInt3,
    /// Publish the patching state (vec/nr, desc, per-CPU refs) after writing the INT3s.
    PublishAfterInt3,
    /// The handler jumps past the instruction instead of emulating it.
    DetourHandler,
    /// 5.5: clear `vec` before `nr_entries` (the sync stays between them).
    ClearVecBeforeNr,
    /// 5.5: drop the sync between `nr_entries = 0` and `vec = NULL` (undo the B3 fix).
    NoSyncBeforeVecClear,
    /// 5.6/6.16: do not wait for the handlers' references to drain.
    SkipRefsWait,
    /// The handler emulates the old instruction instead of the new one.
    EmulateOld,
    /// Drop the patcher's `smp_wmb()` after publishing.
    NoWmb,
    /// Drop the handler's `smp_rmb()`.
    NoRmb,
    /// 6.16: `int3_emulate_jcc` ignores the inversion bit of the condition code.
    JccNoInvert,
    /// B6: the handler's first step calls into patchable text (an instrumented atomic, an
    /// out-of-line `bsearch()`).
    InstrumentedHandler,
    /// `register_kprobe()` without the reserved-text checks (`check_ftrace_location()`,
    /// `jump_label_text_reserved()`, `static_call_text_reserved()`,
    /// `alternatives_text_reserved()`): a kprobe may sit on a site another patcher owns.
    NoTextReserved,
    /// `arch_disarm_kprobe()` without its `text_poke_sync()` (5c02ece81848d undone), on the
    /// versions that have it (5.6 on).
    KprobeDisarmNoSync,
    /// 6.16: `smp_text_poke_batch_add()` without `nr_entries == TEXT_POKE_ARRAY_MAX` → flush.
    BatchNoFullCheck,
    /// 6.16: `smp_text_poke_batch_add()` without `!text_poke_addr_ordered(addr)` → flush.
    BatchNoOrderCheck,
}

impl Mutant {
    /// Every mutant.
    pub const ALL: [Mutant; 19] = [
        Mutant::NoSyncAfterInt3,
        Mutant::NoSyncAfterTail,
        Mutant::NoSyncAfterFirst,
        Mutant::NoInt3,
        Mutant::TailBeforeInt3,
        Mutant::PublishAfterInt3,
        Mutant::DetourHandler,
        Mutant::ClearVecBeforeNr,
        Mutant::NoSyncBeforeVecClear,
        Mutant::SkipRefsWait,
        Mutant::EmulateOld,
        Mutant::NoWmb,
        Mutant::NoRmb,
        Mutant::JccNoInvert,
        Mutant::InstrumentedHandler,
        Mutant::NoTextReserved,
        Mutant::KprobeDisarmNoSync,
        Mutant::BatchNoFullCheck,
        Mutant::BatchNoOrderCheck,
    ];

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            Mutant::NoSyncAfterInt3 => "no-sync-after-int3",
            Mutant::NoSyncAfterTail => "no-sync-after-tail",
            Mutant::NoSyncAfterFirst => "no-sync-after-first",
            Mutant::NoInt3 => "no-int3",
            Mutant::TailBeforeInt3 => "tail-before-int3",
            Mutant::PublishAfterInt3 => "publish-after-int3",
            Mutant::DetourHandler => "detour-handler",
            Mutant::ClearVecBeforeNr => "clear-vec-before-nr",
            Mutant::NoSyncBeforeVecClear => "no-sync-before-vec-clear",
            Mutant::SkipRefsWait => "skip-refs-wait",
            Mutant::EmulateOld => "emulate-old",
            Mutant::NoWmb => "no-wmb",
            Mutant::NoRmb => "no-rmb",
            Mutant::JccNoInvert => "jcc-no-invert",
            Mutant::InstrumentedHandler => "instrumented-handler",
            Mutant::NoTextReserved => "no-text-reserved",
            Mutant::KprobeDisarmNoSync => "kprobe-disarm-no-sync",
            Mutant::BatchNoFullCheck => "batch-no-full-check",
            Mutant::BatchNoOrderCheck => "batch-no-order-check",
        }
    }

    /// One-line description of the edit and of what defends the original.
    pub fn description(self) -> &'static str {
        match self {
            Mutant::NoSyncAfterInt3 => {
                "drop the sync after the INT3 writes: a CPU may still fetch the old first byte together \
                 with a new tail"
            }
            Mutant::NoSyncAfterTail => {
                "drop the sync after the tail writes (\"According to Intel, this core syncing is very \
                 likely not necessary\"): a CPU may fetch the new first byte with an old tail"
            }
            Mutant::NoSyncAfterFirst => {
                "drop the sync after the first-byte writes: a CPU may still fetch the INT3 after the \
                 patching state is torn down (a stale INT3)"
            }
            Mutant::NoInt3 => {
                "write the new instruction with text_poke alone, no INT3 step (what text_poke_bp exists \
                 to avoid): a CPU may fetch a half-written instruction"
            }
            Mutant::TailBeforeInt3 => {
                "write the tails before the INT3s: a CPU that has not seen the INT3 runs the old first \
                 byte with the new tail"
            }
            Mutant::PublishAfterInt3 => {
                "publish vec/nr_entries (bp_desc, per-CPU refs) after writing the INT3s, against the \
                 \"nr_entries != 0 / WMB / write INT3\" ordering comment: a trap finds nothing"
            }
            Mutant::DetourHandler => {
                "the handler sets regs->ip past the instruction instead of emulating it (bug B1: a CALL's \
                 push is lost)"
            }
            Mutant::ClearVecBeforeNr => {
                "clear bp_patching.vec before nr_entries: a handler that saw nr_entries != 0 reads \
                 a NULL vector (bug B3's order)"
            }
            Mutant::NoSyncBeforeVecClear => {
                "drop text_poke_sync() between nr_entries = 0 and vec = NULL (285a54efe386 undone): a \
                 handler in flight reads a NULL vector"
            }
            Mutant::SkipRefsWait => {
                "return without atomic_cond_read_acquire(refs, !VAL): a handler in flight keeps using \
                 the patch data after the patcher moved on"
            }
            Mutant::EmulateOld => {
                "the handler emulates the old instruction instead of the new: BENIGN — the trapping CPU \
                 behaves as if it executed just before the patch, a legal linearization"
            }
            Mutant::NoWmb => {
                "drop smp_wmb() after publishing: BENIGN on x86 — stores are not reordered with older \
                 stores (x86-TSO), smp_wmb() is only a compiler barrier there, and the model's data \
                 memory is sequentially consistent"
            }
            Mutant::NoRmb => {
                "drop the handler's smp_rmb(): BENIGN on x86 — loads are not reordered with older loads \
                 (x86-TSO), and the model's data memory is sequentially consistent"
            }
            Mutant::JccNoInvert => {
                "int3_emulate_jcc ignores cc & 1 (jne emulated as je): the emulation oracle must see it"
            }
            Mutant::InstrumentedHandler => {
                "the handler's first step calls instrumented or traceable code that is itself patched \
                 (B6: \"x86/int3: Avoid atomic instrumentation\", \"Inline bsearch()\" — \"lest we \
                 inadvertently hit yet another INT3\"): a nested INT3 inside the INT3 handler"
            }
            Mutant::NoTextReserved => {
                "register_kprobe() without check_ftrace_location() and the *_text_reserved() checks: a \
                 kprobe's INT3 lands on a site another patcher owns, whose text_poke_bp() overwrites it \
                 (a lost breakpoint) or whose new bytes the disarm corrupts"
            }
            Mutant::KprobeDisarmNoSync => {
                "arch_disarm_kprobe() without text_poke_sync() (5c02ece81848d undone): a CPU still \
                 fetches the INT3 after unregister_kprobe() removed the kprobe; up to 6.0 \
                 kprobe_int3_handler() retries the vanished INT3, from 6.3 (8e791f7eba4c) it dies"
            }
            Mutant::BatchNoFullCheck => {
                "smp_text_poke_batch_add() without the vector-full flush: the 257th entry is written to \
                 text_poke_array.vec[256], past the vector, where nr_entries lives (caught with 257 or more \
                 sites in one batch: `--workload batch --sites 257`)"
            }
            Mutant::BatchNoOrderCheck => {
                "smp_text_poke_batch_add() without the text_poke_addr_ordered() flush: an out-of-order \
                 vector, whose bsearch() in the INT3 handler misses entries — their traps are unclaimed"
            }
        }
    }

    /// Why this mutant is expected to go uncaught, if it is.
    pub fn benign(self) -> bool {
        matches!(self, Mutant::EmulateOld | Mutant::NoWmb | Mutant::NoRmb)
    }

    /// Whether this edit exists on `protocol`.
    pub fn applies_to(self, protocol: Protocol) -> bool {
        use Protocol::*;
        match self {
            Mutant::DetourHandler | Mutant::EmulateOld => protocol != Linux54,
            Mutant::ClearVecBeforeNr | Mutant::NoSyncBeforeVecClear => protocol == Linux55,
            Mutant::SkipRefsWait => matches!(protocol, Linux56 | Linux60 | Linux616),
            Mutant::JccNoInvert => protocol == Linux616,
            Mutant::KprobeDisarmNoSync => protocol.kprobe_arm_syncs(),
            Mutant::BatchNoFullCheck | Mutant::BatchNoOrderCheck => protocol.batch_add(),
            _ => true,
        }
    }
}

crate::named_set!(Mutant, "mutant");

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
