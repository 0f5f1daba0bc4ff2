//! The mutants: named edits of a protocol, each described once by its [`MutantInfo`] — its
//! name, what it does and what defends the original, what it edits ([`Edits`]: an operation of
//! the patcher's program, a step of the INT3 handler, a kprobe client's program,
//! `register_kprobe()`'s checks or `smp_text_poke_batch_add()`'s split), which versions have
//! that code ([`Versions`]) and whether it is argued benign. Whether a mutant can act on a
//! given scenario is decided from this table over the scenario's plan
//! ([`crate::applicability`]).

use super::{Emulates, Protocol};

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
    /// 6.16: `smp_text_poke_single()` appends with `__smp_text_poke_batch_add()`, without the
    /// full and order checks (8976ade0c1b, linux-next June 2025; docs/reference/kprobes.md §9).
    SingleUncheckedAdd,
    /// `text_poke_early()` with `sync_core()` and `local_irq_restore()` in the other order than
    /// the version has them (3ea1704a9296, Dec 2023): the fix on 5.4–6.0 and the seed, the
    /// pre-fix order on 6.16.
    TextPokeEarlySwap,
    /// 5.6/6.0/6.16: the reference-count operations (`atomic_inc_not_zero()` in the handler's
    /// `try_get_desc()`, `atomic_dec()` in `put_desc()`, the patcher's
    /// `atomic_dec_and_test()`) without the LOCK prefix, as a UP kernel compiles them.
    UnlockedRefs,
}

/// What a mutant edits: the one place of the model its edit lives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Edits {
    /// An operation of the patcher's `text_poke_bp()` program (a sync, a write, a barrier,
    /// the publication, the refs wait).
    Program,
    /// A step of the INT3 handler.
    Handler(HandlerEdit),
    /// A kprobe client's program: `arch_disarm_kprobe()`'s `text_poke_sync()`.
    KprobeDisarm,
    /// `register_kprobe()`'s reserved-text checks.
    RegisterKprobe,
    /// How `smp_text_poke_batch_add()` splits a batch.
    BatchSplit(SplitCheck),
    /// How `smp_text_poke_single()` adds its site to a vector another caller may have filled.
    SingleAdd,
    /// The order of `sync_core()` and `local_irq_restore()` in `text_poke_early()`.
    EarlyOrder,
    /// The LOCK prefix of the reference-count operations (a protocol compiled from C).
    UnlockedRefs,
}

/// What the model says about one kind of edit, in one place: where it acts, the step it edits
/// as a change legend names it, and why `pokesim program` cannot spell it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct EditFacts {
    /// Where it acts, in a few words (`pokesim list`).
    pub acts_where: &'static str,
    /// The step it edits, as traces name it (`emulate`, `arch_disarm_kprobe()`, ...).
    pub step: &'static str,
    /// The edit in words.
    pub what: &'static str,
    /// Why a patcher program cannot spell it (`None`: it edits the program).
    pub not_in_program: Option<&'static str>,
}

/// The refusal of every handler edit by `pokesim program`.
const HANDLER_NOT_IN_PROGRAM: Option<&str> =
    Some("edits the INT3 handler, not the patcher program; a custom program keeps the version's handler");
/// The refusal of the kprobe edits by `pokesim program`.
const KPROBE_NOT_IN_PROGRAM: Option<&str> =
    Some("edits register_kprobe()/arch_disarm_kprobe(), not the text_poke_bp() program");
/// The refusal of the batch edits by `pokesim program`.
const BATCH_NOT_IN_PROGRAM: Option<&str> =
    Some("edits how smp_text_poke_batch_add() splits batches, not a batch's program");

impl Edits {
    /// Everything the model says about this edit.
    pub fn facts(self) -> EditFacts {
        let f = |acts_where, step, what, not_in_program| EditFacts { acts_where, step, what, not_in_program };
        match self {
            Edits::Program => {
                f("acts where a site is patched with text_poke_bp()", "text_poke_bp()", "the patcher program", None)
            }
            Edits::Handler(edit) => edit.facts(),
            Edits::KprobeDisarm => f(
                "acts where a kprobe arms and disarms itself (ftrace+kprobe-cycling)",
                "arch_disarm_kprobe()",
                "text_poke_sync() after the disarming text_poke() is removed",
                KPROBE_NOT_IN_PROGRAM,
            ),
            Edits::RegisterKprobe => f(
                "acts where a kprobe sits on a patched site (ftrace+kprobe-entry)",
                "register_kprobe()",
                "check_ftrace_location() and the *_text_reserved() checks are removed",
                KPROBE_NOT_IN_PROGRAM,
            ),
            Edits::BatchSplit(SplitCheck::Full) => f(
                "acts where a batch has more than 256 entries (batch --sites 257)",
                "smp_text_poke_batch_add()",
                "the flush on a full vector (nr_entries == TEXT_POKE_ARRAY_MAX) is removed",
                BATCH_NOT_IN_PROGRAM,
            ),
            Edits::BatchSplit(SplitCheck::Order) => f(
                "acts where a batch is queued out of order (batch-interleaved)",
                "smp_text_poke_batch_add()",
                "the flush on an out-of-order address (text_poke_addr_ordered()) is removed",
                BATCH_NOT_IN_PROGRAM,
            ),
            Edits::SingleAdd => f(
                "acts where a single-site caller shares the vector with a queued batch (shared_vector, C only)",
                "smp_text_poke_single()",
                "smp_text_poke_single() appends with __smp_text_poke_batch_add(), without the flushes",
                Some("edits smp_text_poke_single() of a protocol compiled from C, not a batch's program"),
            ),
            Edits::EarlyOrder => f(
                "acts where a site is patched by text_poke_early() (early, C only)",
                "text_poke_early()",
                "text_poke_early() re-enables interrupts and syncs the core in the other order",
                Some("edits text_poke_early() of a protocol compiled from C, not a batch's program"),
            ),
            Edits::UnlockedRefs => f(
                "acts where a handler's reference races the patcher's under --memory tso (ftrace+kprobe, 2 rounds; \
                 C only)",
                "try_get_desc()/put_desc()",
                "the reference-count operations lose their LOCK prefix",
                Some("edits the instructions of a protocol compiled from C, not a batch's program"),
            ),
        }
    }

    /// True if only a protocol compiled from C has the code it edits (the Rust models refuse it
    /// everywhere).
    pub fn c_only(self) -> bool {
        matches!(self, Edits::SingleAdd | Edits::EarlyOrder | Edits::UnlockedRefs)
    }

    /// Where an edit of this kind acts, in a few words (`pokesim list`); the exact rule over a
    /// plan is [`crate::applicability::vacuous`].
    pub fn acts_where(self) -> &'static str {
        self.facts().acts_where
    }
}

impl HandlerEdit {
    /// Everything the model says about this handler edit.
    fn facts(self) -> EditFacts {
        let f = |acts_where, step, what| EditFacts { acts_where, step, what, not_in_program: HANDLER_NOT_IN_PROGRAM };
        match self {
            HandlerEdit::JumpPast => f(
                "acts where a patched instruction is not a NOP",
                "emulate",
                "the INT3 handler sets regs->ip past the instruction instead of emulating it",
            ),
            HandlerEdit::EmulateOld => f(
                "acts where a patched site changes",
                "emulate",
                "the INT3 handler emulates the old instruction instead of the new",
            ),
            HandlerEdit::JccInvert => f(
                "acts where a patched Jcc has the inversion bit (jcc)",
                "emulate",
                "int3_emulate_jcc() ignores the inversion bit (cc & 1)",
            ),
            HandlerEdit::FirstCall => f(
                "acts where a site is patched with an INT3",
                "entry",
                "the INT3 handler's first step calls into patched text (a nested INT3)",
            ),
            HandlerEdit::Rmb => f(
                "acts nowhere: the model has no smp_rmb() step",
                "entry",
                "the INT3 handler's smp_rmb() is dropped (no step of the model)",
            ),
        }
    }
}

/// The handler step a handler mutant edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HandlerEdit {
    /// The emulation becomes a jump past the instruction.
    JumpPast,
    /// The emulation uses the old instruction.
    EmulateOld,
    /// `int3_emulate_jcc()`'s inversion bit.
    JccInvert,
    /// The first step calls into patched text.
    FirstCall,
    /// The handler's `smp_rmb()`: the model has no such step (x86-TSO keeps loads in order
    /// and the model's data memory is sequentially consistent), so it never acts.
    Rmb,
}

/// The check of `smp_text_poke_batch_add()` a batch mutant drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SplitCheck {
    /// `nr_entries == TEXT_POKE_ARRAY_MAX`.
    Full,
    /// `!text_poke_addr_ordered(addr)`.
    Order,
}

/// Which versions have the code a mutant edits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Versions {
    /// Every version.
    All,
    /// Every version whose handler emulates (all but linux-5.4's detour, [`Emulates::Detour`]).
    Emulating,
    /// One version.
    Only(Protocol),
    /// The versions that wait for the handlers' references (5.6 on): those whose handler takes
    /// one (`super::Enter::takes_reference`).
    RefsWait,
    /// The versions whose `arch_disarm_kprobe()` syncs (5.6 on).
    KprobeArmSync,
    /// The versions that batch through `smp_text_poke_batch_add()`.
    BatchAdd,
}

impl Versions {
    /// Whether `protocol` has the code.
    pub fn contains(self, protocol: Protocol) -> bool {
        match self {
            Versions::All => true,
            Versions::Emulating => protocol.handler().rules().emulates != Emulates::Detour,
            Versions::Only(p) => protocol == p,
            Versions::RefsWait => protocol.handler().rules().enter.takes_reference(),
            Versions::KprobeArmSync => protocol.kprobe_arm_syncs(),
            Versions::BatchAdd => protocol.batch_add(),
        }
    }
}

/// Everything a mutant is, in one place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct MutantInfo {
    /// Name on the command line and in files.
    pub name: &'static str,
    /// One-line description of the edit and of what defends the original.
    pub description: &'static str,
    /// What it edits.
    pub edits: Edits,
    /// Which versions have that code.
    pub versions: Versions,
    /// Whether it is argued benign (expected to go uncaught).
    pub benign: bool,
}

impl Mutant {
    /// Every mutant, in the table's order.
    pub const ALL: [Mutant; ROWS.len()] = {
        let mut all = [Mutant::NoSyncAfterInt3; ROWS.len()];
        let mut i = 0;
        while i < all.len() {
            all[i] = ROWS[i].0;
            i += 1;
        }
        all
    };

    /// The mutant's table row.
    pub fn info(self) -> &'static MutantInfo {
        &ROWS[self as usize].1
    }

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        self.info().name
    }

    /// One-line description of the edit and of what defends the original.
    pub fn description(self) -> &'static str {
        self.info().description
    }

    /// Whether this mutant is argued benign: expected to go uncaught.
    pub fn benign(self) -> bool {
        self.info().benign
    }

    /// What it edits.
    pub fn edits(self) -> Edits {
        self.info().edits
    }

    /// Whether the code this edit changes exists on `protocol` (whether it acts on a given
    /// scenario is [`crate::applicability::vacuous`]).
    pub fn applies_to(self, protocol: Protocol) -> bool {
        self.info().versions.contains(protocol)
    }
}

/// Every mutant's row, in the enum's order (checked when compiled).
const ROWS: [(Mutant, MutantInfo); 22] = [
    (
        Mutant::NoSyncAfterInt3,
        MutantInfo {
            name: "no-sync-after-int3",
            description: "drop the sync after the INT3 writes: a CPU may still fetch the old first byte together \
                 with a new tail",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::NoSyncAfterTail,
        MutantInfo {
            name: "no-sync-after-tail",
            description: "drop the sync after the tail writes (\"According to Intel, this core syncing is very \
                 likely not necessary\"): a CPU may fetch the new first byte with an old tail",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::NoSyncAfterFirst,
        MutantInfo {
            name: "no-sync-after-first",
            description: "drop the sync after the first-byte writes: a CPU may still fetch the INT3 after the \
                 patching state is torn down (a stale INT3)",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::NoInt3,
        MutantInfo {
            name: "no-int3",
            description: "write the new instruction with text_poke alone, no INT3 step (what text_poke_bp exists \
                 to avoid): a CPU may fetch a half-written instruction",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::TailBeforeInt3,
        MutantInfo {
            name: "tail-before-int3",
            description: "write the tails before the INT3s: a CPU that has not seen the INT3 runs the old first \
                 byte with the new tail",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::PublishAfterInt3,
        MutantInfo {
            name: "publish-after-int3",
            description: "publish vec/nr_entries (bp_desc, per-CPU refs) after writing the INT3s, against the \
                 \"nr_entries != 0 / WMB / write INT3\" ordering comment: a trap finds nothing",
            edits: Edits::Program,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::DetourHandler,
        MutantInfo {
            name: "detour-handler",
            description: "the handler sets regs->ip past the instruction instead of emulating it (bug B1: a CALL's \
                 push is lost)",
            edits: Edits::Handler(HandlerEdit::JumpPast),
            versions: Versions::Emulating,
            benign: false,
        },
    ),
    (
        Mutant::ClearVecBeforeNr,
        MutantInfo {
            name: "clear-vec-before-nr",
            description: "clear bp_patching.vec before nr_entries: a handler that saw nr_entries != 0 reads \
                 a NULL vector (bug B3's order)",
            edits: Edits::Program,
            versions: Versions::Only(Protocol::Linux55),
            benign: false,
        },
    ),
    (
        Mutant::NoSyncBeforeVecClear,
        MutantInfo {
            name: "no-sync-before-vec-clear",
            description: "drop text_poke_sync() between nr_entries = 0 and vec = NULL (285a54efe386 undone): a \
                 handler in flight reads a NULL vector",
            edits: Edits::Program,
            versions: Versions::Only(Protocol::Linux55),
            benign: false,
        },
    ),
    (
        Mutant::SkipRefsWait,
        MutantInfo {
            name: "skip-refs-wait",
            description: "return without atomic_cond_read_acquire(refs, !VAL): a handler in flight keeps using \
                 the patch data after the patcher moved on",
            edits: Edits::Program,
            versions: Versions::RefsWait,
            benign: false,
        },
    ),
    (
        Mutant::EmulateOld,
        MutantInfo {
            name: "emulate-old",
            description: "the handler emulates the old instruction instead of the new: BENIGN — the trapping CPU \
                 behaves as if it executed just before the patch, a legal linearization",
            edits: Edits::Handler(HandlerEdit::EmulateOld),
            versions: Versions::Emulating,
            benign: true,
        },
    ),
    (
        Mutant::NoWmb,
        MutantInfo {
            name: "no-wmb",
            description: "drop smp_wmb() after publishing: BENIGN on x86 — stores are not reordered with older \
                 stores (x86-TSO), smp_wmb() is only a compiler barrier there, and the model's data \
                 memory is sequentially consistent",
            edits: Edits::Program,
            versions: Versions::All,
            benign: true,
        },
    ),
    (
        Mutant::NoRmb,
        MutantInfo {
            name: "no-rmb",
            description: "drop the handler's smp_rmb(): BENIGN on x86 — loads are not reordered with older loads \
                 (x86-TSO), and the model's data memory is sequentially consistent",
            edits: Edits::Handler(HandlerEdit::Rmb),
            versions: Versions::All,
            benign: true,
        },
    ),
    (
        Mutant::JccNoInvert,
        MutantInfo {
            name: "jcc-no-invert",
            description: "int3_emulate_jcc ignores cc & 1 (jne emulated as je): the emulation oracle must see it",
            edits: Edits::Handler(HandlerEdit::JccInvert),
            versions: Versions::Only(Protocol::Linux616),
            benign: false,
        },
    ),
    (
        Mutant::InstrumentedHandler,
        MutantInfo {
            name: "instrumented-handler",
            description: "the handler's first step calls instrumented or traceable code that is itself patched \
                 (B6: \"x86/int3: Avoid atomic instrumentation\", \"Inline bsearch()\" — \"lest we \
                 inadvertently hit yet another INT3\"): a nested INT3 inside the INT3 handler",
            edits: Edits::Handler(HandlerEdit::FirstCall),
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::NoTextReserved,
        MutantInfo {
            name: "no-text-reserved",
            description: "register_kprobe() without check_ftrace_location() and the *_text_reserved() checks: a \
                 kprobe's INT3 lands on a site another patcher owns, whose text_poke_bp() overwrites it \
                 (a lost breakpoint) or whose new bytes the disarm corrupts",
            edits: Edits::RegisterKprobe,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::KprobeDisarmNoSync,
        MutantInfo {
            name: "kprobe-disarm-no-sync",
            description: "arch_disarm_kprobe() without text_poke_sync() (5c02ece81848d undone): a CPU still \
                 fetches the INT3 after unregister_kprobe() removed the kprobe; up to 6.0 \
                 kprobe_int3_handler() retries the vanished INT3, from 6.3 (8e791f7eba4c) it dies",
            edits: Edits::KprobeDisarm,
            versions: Versions::KprobeArmSync,
            benign: false,
        },
    ),
    (
        Mutant::BatchNoFullCheck,
        MutantInfo {
            name: "batch-no-full-check",
            description: "smp_text_poke_batch_add() without the vector-full flush: the 257th entry is written to \
                 text_poke_array.vec[256], past the vector, where nr_entries lives (caught with 257 or more \
                 sites in one batch: `--workload batch --sites 257`)",
            edits: Edits::BatchSplit(SplitCheck::Full),
            versions: Versions::BatchAdd,
            benign: false,
        },
    ),
    (
        Mutant::BatchNoOrderCheck,
        MutantInfo {
            name: "batch-no-order-check",
            description: "smp_text_poke_batch_add() without the text_poke_addr_ordered() flush: an out-of-order \
                 vector, whose bsearch() in the INT3 handler misses entries — their traps are unclaimed",
            edits: Edits::BatchSplit(SplitCheck::Order),
            versions: Versions::BatchAdd,
            benign: false,
        },
    ),
    (
        Mutant::SingleUncheckedAdd,
        MutantInfo {
            name: "single-unchecked-add",
            description: "smp_text_poke_single() appends its site with __smp_text_poke_batch_add(), without \
                 smp_text_poke_batch_add()'s flushes (8976ade0c1b, linux-next June 2025): a site below another \
                 caller's queued batch makes the vector unsorted and bsearch() misses entries — unclaimed INT3s \
                 (C protocols only: `--workload shared_vector --protocol-c`)",
            edits: Edits::SingleAdd,
            versions: Versions::BatchAdd,
            benign: false,
        },
    ),
    (
        Mutant::TextPokeEarlySwap,
        MutantInfo {
            name: "text-poke-early-swap",
            description: "text_poke_early() with sync_core() and local_irq_restore() in the other order than the \
                 version has them (3ea1704a9296, \"x86/alternatives: Sync core before enabling interrupts\", Dec \
                 2023): on 6.16 the pre-fix order, whose interrupt between the two runs unserialised code on the \
                 patching CPU (caught with interrupts on it and own_stores = \"serialize\"); on 5.4-6.0 and the seed \
                 the fix (C protocols only: `--workload early --protocol-c`)",
            edits: Edits::EarlyOrder,
            versions: Versions::All,
            benign: false,
        },
    ),
    (
        Mutant::UnlockedRefs,
        MutantInfo {
            name: "unlocked-refs",
            description: "the reference counts of try_get_desc()/put_desc() and the patcher's wait lose their \
                 LOCK prefix (a UP kernel's LOCK_PREFIX is empty; alternatives_smp_unlock() patches it out while \
                 one CPU is online): a single instruction is one atomic step under SC, so only x86-TSO shows it — \
                 the unlocked store waits in the store buffer while another CPU's read-modify-write reads the old \
                 count (C protocols only, `--memory tso`: `--workload ftrace+kprobe --rounds 2`)",
            edits: Edits::UnlockedRefs,
            versions: Versions::RefsWait,
            benign: false,
        },
    ),
];

const _: () = {
    let mut i = 0;
    while i < ROWS.len() {
        assert!(ROWS[i].0 as usize == i, "mutant::ROWS is in the order of Mutant");
        i += 1;
    }
};

crate::named_set!(Mutant, "mutant");
