//! What each version's INT3 handler is, as data: its micro-steps ([`HandlerPc`], the steps of
//! `poke_int3_handler()` / `smp_text_poke_int3_handler()` in `arch/x86/kernel/alternative.c`
//! and of `kprobe_int3_handler()` in `arch/x86/kernel/kprobes/core.c`), which handler a version
//! runs ([`HandlerKind`]) and that handler's rules ([`HandlerRules`]): how it enters (the first
//! load, the reference taken), where it finds `nr_entries` and the vector, which opcodes it
//! emulates, and the C statements its traces show. Each version module states its handler's
//! rules next to its program (`HANDLER`); [`crate::handler`] runs them.

/// Where the handler is: one micro-step of the handler, named as traces name it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum HandlerPc {
    /// The version's first load (or reference).
    Entry,
    /// `atomic_inc_not_zero(&desc->refs)` (5.6).
    IncRef,
    /// `if (nr_entries > 1)`.
    BranchNr,
    /// Loads the vector and count as bsearch's arguments.
    BsearchArgs,
    /// One `patch_cmp` probe of the binary search.
    Probe,
    /// `tp = vec`.
    LoadVec,
    /// `if (text_poke_addr(tp) != ip)`.
    CompareSingle,
    /// Reads the entry and emulates (or detours).
    Emulate,
    /// Drops the reference taken at entry.
    Put,
    /// `kprobe_int3_handler()`: `p = get_kprobe(addr)`.
    KprobeGet,
    /// The INT3's owner (a kprobe handler) handles the trap.
    Owner,
    /// `kprobe_int3_handler()`: `*addr != INT3_INSN_OPCODE` — a vanished breakpoint.
    KprobeVanished,
    /// Return from the exception: IRET, which serializes.
    Iret,
}

impl HandlerPc {
    /// Every micro-step, in the order the kernel's code has them.
    pub const ALL: [HandlerPc; 13] = [
        HandlerPc::Entry,
        HandlerPc::IncRef,
        HandlerPc::BranchNr,
        HandlerPc::BsearchArgs,
        HandlerPc::Probe,
        HandlerPc::LoadVec,
        HandlerPc::CompareSingle,
        HandlerPc::Emulate,
        HandlerPc::Put,
        HandlerPc::KprobeGet,
        HandlerPc::Owner,
        HandlerPc::KprobeVanished,
        HandlerPc::Iret,
    ];

    /// Short name for traces.
    pub fn name(self) -> &'static str {
        match self {
            HandlerPc::Entry => "entry",
            HandlerPc::IncRef => "inc-ref",
            HandlerPc::BranchNr => "branch-nr",
            HandlerPc::BsearchArgs => "bsearch-args",
            HandlerPc::Probe => "probe",
            HandlerPc::LoadVec => "load-vec",
            HandlerPc::CompareSingle => "compare",
            HandlerPc::Emulate => "emulate",
            HandlerPc::Put => "put",
            HandlerPc::KprobeGet => "get-kprobe",
            HandlerPc::Owner => "kprobe-handler",
            HandlerPc::KprobeVanished => "vanished-int3",
            HandlerPc::Iret => "iret",
        }
    }
}

/// Which INT3 handler a version runs; its behaviour is [`HandlerKind::rules`] (in
/// [`super`], next to [`super::Protocol::version`]).
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

/// How the handler enters: its first load and the reference it takes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Enter {
    /// `if (!bp_patching.nr_entries) return 0;` — no reference (5.4, seed, 5.5).
    NrEntries,
    /// `desc = READ_ONCE(bp_desc); if (!desc) return 0;`, then the reference in a step of its
    /// own ([`HandlerPc::IncRef`]: `atomic_inc_not_zero(&desc->refs)`) (5.6).
    Desc,
    /// `arch_atomic_inc_not_zero(&bp_desc.refs)` on the static descriptor (6.0).
    GlobalRefs,
    /// `raw_atomic_inc_not_zero(this_cpu_ptr(&text_poke_array_refs))` (6.16).
    PerCpuRefs,
}

impl Enter {
    /// Whether the handler holds a reference once in, which its [`HandlerPc::Put`] drops.
    pub(crate) fn takes_reference(self) -> bool {
        self != Enter::NrEntries
    }
}

/// Where the handler reads `nr_entries` and the vector.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lookup {
    /// The global `bp_patching` (5.4, seed, 5.5) or static `bp_desc` (6.0): the array the
    /// patcher published.
    Published,
    /// `desc->nr_entries`, `desc->vec` of the descriptor read at entry (5.6).
    Desc,
    /// `text_poke_array.nr_entries` and its static vector (6.16).
    StaticArray,
}

/// What the handler does with the entry it found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Emulates {
    /// `regs->ip = (unsigned long) tp->detour;` whatever the instruction (5.4).
    Detour,
    /// `switch (tp->opcode)`: INT3 is not consumed; CALL, JMP32/JMP8 always; the rest
    /// `BUG()`s unless named here.
    Opcodes {
        /// `case RET_INSN_OPCODE: int3_emulate_ret(regs)` (c43a43e439e0, 6.0 on).
        ret: bool,
        /// `case 0x70 ... 0x7f: int3_emulate_jcc(...)` (ac0ee0a9560c, 2023).
        jcc: bool,
    },
}

/// One version's INT3 handler: its behaviour and the statements its steps mirror.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HandlerRules {
    /// The handler function traces name.
    pub function: &'static str,
    /// How it enters.
    pub enter: Enter,
    /// Where it finds `nr_entries` and the vector.
    pub lookup: Lookup,
    /// What it emulates.
    pub emulates: Emulates,
    /// The C statement of [`HandlerPc::Entry`].
    pub entry_code: &'static str,
    /// The C statement of [`HandlerPc::Emulate`].
    pub emulate_code: &'static str,
    /// The C statement of [`HandlerPc::Put`] (shown where `Enter::takes_reference`).
    pub put_code: &'static str,
}

impl HandlerRules {
    /// Whether micro-step `pc` can run in this handler at all (the kprobe steps aside, which
    /// the version's kprobes decide).
    pub fn has(&self, pc: HandlerPc) -> bool {
        match pc {
            HandlerPc::IncRef => self.enter == Enter::Desc,
            HandlerPc::Put => self.enter.takes_reference(),
            _ => true,
        }
    }
}

/// `poke_int3_handler()`, the handler's name up to 6.0.
pub(crate) const POKE_INT3_HANDLER: &str = "poke_int3_handler()";
/// The entry of the handlers that read `bp_patching.nr_entries` first.
pub(crate) const NR_ENTRIES_CODE: &str = "smp_rmb(); if (likely(!bp_patching.nr_entries)) return 0;";
/// The emulating handlers' `switch (tp->opcode)`.
pub(crate) const SWITCH_CODE: &str = "ip += tp->len; switch (tp->opcode) { case INT3: goto out_put; case RET: int3_emulate_ret(regs); case CALL: int3_emulate_call(regs, ip + tp->disp); case JMP32/JMP8: int3_emulate_jmp(regs, ip + tp->disp); ... }";
/// `put_desc()`, the put of 5.6 and 6.0 (and the text the versions without one would show).
pub(crate) const PUT_DESC_CODE: &str =
    "out_put: put_desc(desc); /* smp_mb__before_atomic(); atomic_dec(&desc->refs) */";
