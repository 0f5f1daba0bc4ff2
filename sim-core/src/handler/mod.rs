//! The INT3 handler as micro-steps (DESIGN.md §2.5): `poke_int3_handler()` /
//! `smp_text_poke_int3_handler()` of `arch/x86/kernel/alternative.c`, then `do_int3()`'s
//! `kprobe_int3_handler()`. Each step is one shared-memory access or one action of the kernel
//! code, so the patcher can interleave between any two of them. The version's rules
//! ([`crate::protocol::HandlerRules`], in its module) decide the first steps (how the handler
//! finds the patching state and whether it takes a reference), where the lookup reads and what
//! it emulates; [`Handler::step`] dispatches on the step and runs them (`lookup`: entry to
//! put, `emulation`: the `switch (tp->opcode)`, `kprobe`: `kprobe_int3_handler()`):
//!
//! ```text
//! Entry      5.4/seed/5.5: smp_rmb(); if (!bp_patching.nr_entries) return 0;
//!            5.6:          smp_rmb(); desc = READ_ONCE(bp_desc); if (!desc) return 0;
//!            6.0:          smp_rmb(); if (!arch_atomic_inc_not_zero(&bp_desc.refs)) return 0;
//!            6.16:         smp_rmb(); if (!raw_atomic_inc_not_zero(this_cpu refs)) return 0;
//! IncRef     5.6:          if (!atomic_inc_not_zero(&desc->refs)) return 0;
//! ip = regs->ip - INT3_INSN_SIZE;
//! BranchNr   if (unlikely(nr_entries > 1)) {
//! BsearchArgs    tp = bsearch(ip, vec, nr_entries, sizeof(*tp), patch_cmp);
//! Probe*         if (!tp) goto out_put;
//!            } else {
//! LoadVec        tp = vec;
//! Compare        if (text_poke_addr(tp) != ip) goto out_put;
//!            }
//! Emulate    ip += tp->len; switch (tp->opcode) { INT3: goto out_put; RET; CALL; JMP32/JMP8; Jcc; default: BUG(); }
//!            (5.4: regs->ip = tp->detour)
//! Put        out_put: put_desc(desc) / raw_atomic_dec(this_cpu refs)   (5.6, 6.16)
//! Iret       return 1 → IRET (serializing)
//! ```
//!
//! A handler that returns 0 hands the trap on, as `do_int3()` does (`arch/x86/kernel/traps.c`).
//! With `CONFIG_KPROBES` ([`crate::kconfig`]) it calls `kprobe_int3_handler()`
//! (`arch/x86/kernel/kprobes/core.c`), two more micro-steps:
//!
//! ```text
//! KprobeGet      p = get_kprobe(addr);  if (p) { ... setup_singlestep(p, regs, kcb, 0); return 1; }
//! Owner              (the probed instruction runs out of line: regs->ip = its copy; a CALL,
//!                     JMP or Jcc is emulated: kprobe_emulate_call/_jmp/_jcc from 6.0, a
//!                     single-step fixed up by resume_execution() before — the same effect)
//! KprobeVanished } else if (*addr != INT3_INSN_OPCODE) {    (up to 6.0; gone in 6.3)
//!                    /* The breakpoint instruction was removed right after we hit it. */
//!                    regs->ip = (unsigned long)addr; return 1;      → IRET, retry
//!                }  return 0;
//! ```
//!
//! `*addr` is a data load: it reads the text as the patcher last wrote it, not the vCPU's
//! instruction view. A trap nobody claims goes on to `notify_die(DIE_INT3)`, which nothing
//! modelled claims, and `die("int3")`: the unclaimed-INT3 oracle ([`HandlerStep::Declined`]).

mod emulation;
mod kprobe;
mod lookup;

use cpu_model::{Regs, SharedRegion};

use crate::emulate::{Emulation, INT3_INSN_SIZE};
use crate::footprint::{Footprint, Shared};
use crate::oracle::ViolationKind;
use crate::patching::{AccessFault, PatchState, VecRef};
use crate::protocol::loc::{LocRules, INT3};
use crate::protocol::{Enter, HandlerKind, HandlerRules, Lookup, Mutant};
use crate::text::TextMemory;

pub use crate::protocol::HandlerPc;
pub(crate) use kprobe::kprobe_emulates;

/// The result of one handler step.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HandlerStep {
    /// More steps follow.
    Continue,
    /// The entry `(array, index)` was emulated; the machine checks it against the reference
    /// executor and applies it.
    Emulated {
        /// The patch array of the entry.
        array: usize,
        /// The entry within it.
        entry: usize,
        /// What the handler did to the registers and stack.
        emulation: Emulation,
    },
    /// Every handler `do_int3()` asks declined the trap: it would `die("int3")`.
    Declined,
    /// `kprobe_int3_handler()` found the INT3's kprobe: more steps follow.
    KprobeHit,
    /// Kprobe `kprobe`'s probed CALL, JMP or Jcc was emulated; the machine checks it against
    /// the reference executor and applies it.
    KprobeEmulated {
        /// The kprobe (index into the patching state's kprobes).
        kprobe: usize,
        /// What the handler did to the registers and stack.
        emulation: Emulation,
    },
    /// IRET with these registers.
    Iret(Regs),
    /// A handler compiled from C returned 1 for the INT3 at `site`: its effect on the
    /// `pt_regs` frame (and the qword it pushed), which the machine checks against the
    /// reference executor before the IRET resumes the vCPU with it.
    Claimed {
        /// The trapping INT3's address.
        site: u64,
        /// The frame's registers at the return, and the push.
        emulation: Emulation,
    },
    /// The handler faulted (an oops): NULL or freed data, a read past the vector, or `BUG()`.
    /// `kind` is [`ViolationKind::UseAfterFree`] when it read memory of a batch that had
    /// already returned, [`ViolationKind::HandlerFault`] otherwise.
    Fault {
        /// Which violation the oops is.
        kind: ViolationKind,
        /// What the handler did.
        message: String,
    },
}

/// What a handler step may touch.
pub struct HandlerCtx<'a> {
    /// Which version's handler.
    pub kind: HandlerKind,
    /// The version's `text_poke_loc_init` rules (for `emulate-old`).
    pub rules: LocRules,
    /// Mutants of the run (only handler edits matter here).
    pub mutants: &'a [Mutant],
    /// The patching state.
    pub state: &'a mut PatchState,
    /// The data region (the stack a RET pops from).
    pub data: &'a SharedRegion,
    /// `CONFIG_KPROBES`: `do_int3()` asks `kprobe_int3_handler()`, which looks the address up
    /// in the patching state's registered kprobes.
    pub kprobes: bool,
    /// The text as the patcher last wrote it (what `*addr` loads).
    pub text: &'a TextMemory,
    /// The version's `kprobe_int3_handler()` backs up over a vanished INT3
    /// (`crate::Protocol::kprobe_recovers_vanished_int3`).
    pub recovers_vanished_int3: bool,
    /// With [`Mutant::InstrumentedHandler`]: the patched text the handler's first step calls
    /// into and the byte this vCPU's instruction view shows there.
    pub instrumented: Option<(u64, u8)>,
    /// A handler compiled from C runs on the trapping vCPU: the vCPU, the file and its memory
    /// (`None` for the Rust model, which reads [`HandlerCtx::state`] instead).
    pub c: Option<crate::compiled::activation::CCtx<'a>>,
}

/// What the activation read at entry and the reference it holds: the one place that knows
/// which count [`HandlerPc::Put`] (or [`Handler::abandon`]) drops.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Held {
    /// No reference, no descriptor read.
    Nothing,
    /// 5.6: `READ_ONCE(bp_desc)` returned descriptor `.0`; its reference is not held (not yet,
    /// not got, or already put).
    Read(usize),
    /// 5.6: a reference on descriptor `.0` (`try_get_desc()`).
    Desc(usize),
    /// 6.16: a reference on this CPU's `text_poke_array_refs`.
    PerCpu,
    /// 6.0: a reference on the static `bp_desc.refs`.
    Global,
}

impl Held {
    /// The descriptor read at entry (5.6), if any.
    fn desc(self) -> Option<usize> {
        match self {
            Held::Read(id) | Held::Desc(id) => Some(id),
            Held::Nothing | Held::PerCpu | Held::Global => None,
        }
    }

    /// Whether a reference is held.
    fn counted(self) -> bool {
        matches!(self, Held::Desc(_) | Held::PerCpu | Held::Global)
    }

    /// The count the held reference is on, as the put decrements it: `Err` if the descriptor
    /// is gone (`put_desc()` on a returned batch's stack).
    fn count(self, state: &mut PatchState, cpu: usize) -> Result<Option<&mut i32>, AccessFault> {
        Ok(match self {
            Held::Desc(id) => {
                state.desc_array(id)?;
                Some(&mut state.arrays[id].refs)
            }
            Held::PerCpu => Some(&mut state.percpu_refs[cpu]),
            Held::Global => Some(&mut state.global_refs),
            Held::Nothing | Held::Read(_) => None,
        })
    }

    /// What remains once the reference is put.
    fn put(self) -> Held {
        match self.desc() {
            Some(id) => Held::Read(id),
            None => Held::Nothing,
        }
    }
}

/// One vCPU's activation of the handler.
#[derive(Clone, Debug)]
pub struct Handler {
    /// The saved register file (`struct pt_regs`); `rip` = INT3 address + 1 at entry.
    pub regs: Regs,
    /// The qword at `[rsp]` when the trap was taken (for the reference executor).
    pub stack_top: u64,
    cpu: usize,
    pc: HandlerPc,
    /// What entry read and the reference held.
    held: Held,
    /// The patching handler returned 0 and goes through `out_put` first.
    declined: bool,
    /// The vector the lookup reads (`tp`'s array).
    vec: Option<VecRef>,
    /// bsearch's `base` and `num`.
    base: usize,
    num: usize,
    /// The index in `vec` of the entry the lookup found.
    entry: usize,
    /// The kprobe (index into the patching state's kprobes) `get_kprobe()` found.
    kprobe: Option<usize>,
}

fn fault(what: &str, e: AccessFault) -> HandlerStep {
    HandlerStep::Fault { kind: e.kind(), message: format!("INT3 handler: {what}: {e}") }
}

/// An oops that is no access to freed memory: a NULL, a read past the vector, `BUG()`.
fn oops(message: String) -> HandlerStep {
    HandlerStep::Fault { kind: ViolationKind::HandlerFault, message }
}

impl Handler {
    /// Entry on vCPU `cpu` with the trapped register file.
    pub fn new(cpu: usize, regs: Regs, stack_top: u64) -> Self {
        Self {
            regs,
            stack_top,
            cpu,
            pc: HandlerPc::Entry,
            held: Held::Nothing,
            declined: false,
            vec: None,
            base: 0,
            num: 0,
            entry: 0,
            kprobe: None,
        }
    }

    /// The rest of `do_int3()`'s chain after a patching handler of another implementation
    /// (compiled from C) returned 0: `kprobe_int3_handler()`, then `notify_die()` — the
    /// configured kernel's own code, which the file does not replace.
    pub fn after_patching_handler(cpu: usize, regs: Regs, stack_top: u64) -> Self {
        Self { pc: HandlerPc::KprobeGet, ..Self::new(cpu, regs, stack_top) }
    }

    /// Feeds everything the handler's future depends on into `h` — all but the vCPU index
    /// (state-space search compares handlers across vCPUs) — with its saved registers as
    /// `rel` presents them. The fields go in as one `found` index (the kprobe once
    /// `get_kprobe()` found one, the vector entry before: nothing after uses the entry), the
    /// descriptor read and whether a reference is held, the encoding search results were
    /// recorded with.
    pub(crate) fn hash_state(&self, h: &mut impl std::hash::Hasher, rel: impl Fn(&Regs) -> Regs) {
        use std::hash::Hash;
        rel(&self.regs).hash(h);
        (self.stack_top, self.pc, self.vec, self.held.desc(), self.held.counted(), self.declined).hash(h);
        (self.base, self.num, self.kprobe.unwrap_or(self.entry)).hash(h);
    }

    /// The next micro-step.
    pub fn pc(&self) -> HandlerPc {
        self.pc
    }

    /// What the next micro-step reads and writes of the shared memory
    /// ([`crate::footprint`]): the version's first load and reference, the lookup's
    /// `nr_entries`, vector and entries, the put's count, the kprobe table, the text `*addr`
    /// loads, and at the IRET the text the view serialises to and the RCU read-side section it
    /// leaves.
    pub(crate) fn next_footprint(&self, rules: &HandlerRules) -> Footprint {
        use Shared as S;
        let (r, rw) = (Footprint::reading, |s: Shared| Footprint::new(s, s));
        // Where `patch_vec()` finds `nr_entries` and the vector.
        let lookup = match rules.lookup {
            Lookup::Published => S::NR_ENTRIES.or(S::VEC),
            Lookup::StaticArray => S::NR_ENTRIES,
            Lookup::Desc => S::ARRAYS,
        };
        match self.pc {
            HandlerPc::Entry => match rules.enter {
                Enter::NrEntries => r(S::NR_ENTRIES),
                Enter::Desc => r(S::VEC),
                Enter::GlobalRefs => rw(S::REFS),
                Enter::PerCpuRefs => rw(S::PERCPU_REFS),
            },
            HandlerPc::IncRef => Footprint::new(S::ARRAYS.or(S::REFS), S::REFS),
            HandlerPc::BranchNr | HandlerPc::BsearchArgs | HandlerPc::LoadVec => r(lookup),
            HandlerPc::Probe | HandlerPc::CompareSingle | HandlerPc::Emulate => r(S::ARRAYS),
            HandlerPc::Put => match self.held {
                Held::Desc(_) => Footprint::new(S::ARRAYS.or(S::REFS), S::REFS),
                Held::Global => rw(S::REFS),
                Held::PerCpu => rw(S::PERCPU_REFS),
                Held::Nothing | Held::Read(_) => Footprint::NONE,
            },
            HandlerPc::KprobeGet | HandlerPc::Owner => r(S::KPROBES),
            HandlerPc::KprobeVanished => r(S::TEXT),
            HandlerPc::Iret => Footprint::new(S::TEXT, S::RCU),
        }
    }

    /// `regs->ip - INT3_INSN_SIZE`: the trapping INT3's address.
    pub fn ip(&self) -> u64 {
        self.regs.rip - INT3_INSN_SIZE
    }

    /// Drops the reference this activation holds, if any, without running the rest of the
    /// handler: the hardware run repairs a vCPU whose handler faulted (the kernel would have
    /// oopsed with the reference held) so that the patcher's wait for the count to drain ends.
    /// What is held says which count.
    pub(crate) fn abandon(&mut self, state: &mut PatchState) {
        let held = self.held;
        self.held = held.put();
        let count = match held {
            // A freed descriptor's count is dropped all the same: the repair only unblocks.
            Held::Desc(id) => state.arrays.get_mut(id).map(|a| &mut a.refs),
            other => other.count(state, self.cpu).ok().flatten(),
        };
        if let Some(count) = count {
            *count -= 1;
            let negative = *count < 0;
            state.below_zero |= negative;
        }
    }

    /// Records that the machine applied an emulation.
    pub fn emulated(&mut self, emulation: &Emulation) {
        self.regs = emulation.regs;
    }

    /// Runs one micro-step.
    pub fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        if let (HandlerPc::Entry, Some((addr, INT3))) = (self.pc, ctx.instrumented) {
            // B6: the call lands on an INT3 while this CPU is inside the INT3 handler. The
            // kernel would take the nested #BP on the same exception stack (or recurse into
            // poke_int3_handler()); "lest we inadvertently hit yet another INT3".
            return oops(format!(
                "INT3 handler: its instrumented first step called patchable text at {addr:#x}, which holds an INT3: a nested INT3 inside the INT3 handler (B6)"
            ));
        }
        match self.pc {
            HandlerPc::Entry => self.enter(ctx),
            HandlerPc::IncRef => self.inc_ref(ctx),
            HandlerPc::BranchNr => self.branch_nr(ctx),
            HandlerPc::BsearchArgs => self.bsearch_args(ctx),
            HandlerPc::Probe => self.probe(ctx),
            HandlerPc::LoadVec => self.load_vec(ctx),
            HandlerPc::CompareSingle => self.compare_single(ctx),
            HandlerPc::Emulate => self.emulate(ctx),
            HandlerPc::Put => self.put(ctx),
            HandlerPc::KprobeGet => self.get_kprobe(ctx),
            HandlerPc::Owner => self.kprobe_owner(ctx),
            HandlerPc::KprobeVanished => self.vanished(ctx),
            HandlerPc::Iret => HandlerStep::Iret(self.regs),
        }
    }

    /// Moves on to `pc`.
    fn goto(&mut self, pc: HandlerPc) -> HandlerStep {
        self.pc = pc;
        HandlerStep::Continue
    }

    /// `return 0`, through `out_put` if a reference is held.
    fn decline(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if self.held.counted() {
            self.declined = true;
            self.goto(HandlerPc::Put)
        } else {
            self.next_handler(ctx)
        }
    }

    /// The patching handler returned 0: `do_int3()` asks `kprobe_int3_handler()` next (with
    /// `CONFIG_KPROBES`), else `notify_die()`, which nothing claims.
    fn next_handler(&mut self, ctx: &HandlerCtx<'_>) -> HandlerStep {
        if ctx.kprobes {
            self.goto(HandlerPc::KprobeGet)
        } else {
            HandlerStep::Declined
        }
    }
}

#[cfg(test)]
mod tests {
    use cpu_model::Layout;

    use super::*;
    use crate::patching::PokeArray;
    use crate::protocol::{text_poke_loc_init, Protocol};

    const SITE: u64 = 0x1000;

    /// One live batch of one CALL at [`SITE`], published as `p` publishes it.
    fn published(p: Protocol, cpus: usize) -> PatchState {
        let loc = text_poke_loc_init(p.loc_rules(), SITE, &[0xe8, 0x10, 0, 0, 0], None, None).unwrap();
        let mut array = PokeArray::new(vec![loc], vec![vec![0x0f, 0x1f, 0x44, 0, 0]]);
        array.live = true;
        array.refs = 1;
        let mut state = PatchState::new(vec![array], cpus, Vec::new());
        (state.vec, state.nr_entries, state.desc, state.global_refs) = (Some(0), 1, Some(0), 1);
        state.percpu_refs.iter_mut().for_each(|r| *r = 1);
        state.static_vec = vec![Some((0, 0))];
        state
    }

    /// Steps a trap at [`SITE`] on vCPU 0 until it leaves the patching handler; the steps seen.
    fn run(kind: HandlerKind, state: &mut PatchState) -> (Vec<HandlerPc>, HandlerStep, Handler) {
        let layout = Layout { text_base: 0, text_len: 0x2000, data_base: 0x10000, data_len: 0x1000 };
        let (data, text) = (SharedRegion::new(0x10000, 0x1000), TextMemory::new(&layout, vec![0x90; 0x2000]));
        let mut ctx = HandlerCtx {
            c: None,
            kind,
            rules: LocRules::Seed,
            mutants: &[],
            state,
            data: &data,
            kprobes: false,
            text: &text,
            recovers_vanished_int3: true,
            instrumented: None,
        };
        let mut h = Handler::new(0, Regs { rip: SITE + 1, ..Regs::default() }, 0);
        let mut pcs = Vec::new();
        loop {
            pcs.push(h.pc());
            match h.step(&mut ctx) {
                HandlerStep::Continue => {}
                HandlerStep::Emulated { emulation, .. } => h.emulated(&emulation),
                other => return (pcs, other, h),
            }
        }
    }

    #[test]
    fn each_version_enters_looks_up_emulates_and_puts_what_it_took() {
        use HandlerPc::*;
        for p in Protocol::ALL {
            let kind = p.handler();
            let mut state = published(p, 1);
            let (pcs, last, _) = run(kind, &mut state);
            let mut want = vec![Entry];
            want.extend(kind.rules().has(IncRef).then_some(IncRef));
            want.extend([BranchNr, LoadVec, CompareSingle, Emulate]);
            want.extend(kind.rules().has(Put).then_some(Put));
            want.push(Iret);
            assert_eq!(pcs, want, "{p}");
            // The CALL's target; 5.4 jumps to the detour, the next instruction.
            let rip =
                if kind.rules().emulates == crate::protocol::Emulates::Detour { SITE + 5 } else { SITE + 5 + 0x10 };
            assert!(matches!(last, HandlerStep::Iret(r) if r.rip == rip), "{p}: {last:?}");
            // Every reference taken was put: the counts are as published.
            assert_eq!((state.arrays[0].refs, state.global_refs, state.percpu_refs[0]), (1, 1, 1), "{p}");
        }
    }

    #[test]
    fn a_handler_writes_only_reference_counts_and_its_rcu_section_and_reads_what_it_looks_up() {
        use crate::footprint::Shared as S;
        for p in Protocol::ALL {
            let rules = p.handler().rules();
            let mut state = published(p, 1);
            let (pcs, _, _) = run(p.handler(), &mut state);
            let mut h = Handler::new(0, Regs { rip: SITE + 1, ..Regs::default() }, 0);
            for pc in pcs {
                h.pc = pc;
                h.held = if pc == HandlerPc::Put { Held::Global } else { Held::Nothing };
                let fp = h.next_footprint(rules);
                let own = S::REFS.or(S::PERCPU_REFS).or(S::RCU);
                assert_eq!(fp.writes.or(own), own, "{p} {pc:?}: {fp:?}");
                assert!(pc == HandlerPc::Put || fp.reads != S::NONE, "{p} {pc:?} reads nothing");
            }
            let entry = Handler::new(0, Regs::default(), 0).next_footprint(rules);
            let takes_shared = matches!(rules.enter, Enter::GlobalRefs);
            assert_eq!(entry.writes.meets(S::REFS), takes_shared, "{p}: the entry's reference");
            h.pc = HandlerPc::Iret;
            assert!(h.next_footprint(rules).reads.meets(S::TEXT), "{p}: IRET serialises the view");
        }
    }

    #[test]
    fn a_freed_descriptor_is_a_use_after_free_and_abandon_drops_what_is_held() {
        let mut state = published(Protocol::Linux56, 1);
        state.arrays[0].live = false;
        let (_, last, _) = run(HandlerKind::Desc, &mut state);
        assert!(
            matches!(&last, HandlerStep::Fault { kind: ViolationKind::UseAfterFree, message } if message.contains("try_get_desc")),
            "{last:?}"
        );
        let mut state = published(Protocol::Linux616, 2);
        let mut h = Handler::new(0, Regs { rip: SITE + 1, ..Regs::default() }, 0);
        h.held = Held::PerCpu;
        state.percpu_refs[0] = 2;
        h.abandon(&mut state);
        h.abandon(&mut state);
        assert_eq!((state.percpu_refs[0], h.held), (1, Held::Nothing));
    }

    #[test]
    fn the_hash_keeps_the_encoding_of_one_found_index() {
        let hash = |h: &Handler| {
            let mut s = std::collections::hash_map::DefaultHasher::new();
            h.hash_state(&mut s, |r| *r);
            std::hash::Hasher::finish(&s)
        };
        let mut a = Handler::new(0, Regs::default(), 0);
        let mut b = a.clone();
        (a.entry, a.kprobe) = (3, Some(1));
        (b.entry, b.kprobe) = (0, Some(1));
        assert_eq!(hash(&a), hash(&b), "once a kprobe is found, the entry no longer matters");
        b.kprobe = None;
        assert_ne!(hash(&a), hash(&b));
        (b.entry, b.held, a.held) = (1, Held::Read(0), Held::Desc(0));
        assert_ne!(hash(&a), hash(&b), "holding the reference is part of the state");
    }

    #[test]
    fn a_desc_lookup_reads_the_descriptor_its_entry_read() {
        for p in Protocol::ALL {
            let rules = p.handler().rules();
            assert_eq!(rules.lookup == Lookup::Desc, rules.enter == Enter::Desc, "{p}");
        }
    }
}
