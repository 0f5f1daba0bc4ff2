//! The patching CPU as a step machine (DESIGN.md §2.6): a program of operations, one per step.
//! A `text_poke` becomes one or more store events (split by the fetch model's `stores`
//! parameter), each its own step; a sync broadcasts the IPI in one step and completes in a
//! later one, and is disabled in between until every vCPU has acknowledged.
//!
//! The operations are named for the kernel statements they mirror; protocol versions are
//! sequences of them (see [`crate::protocol`]), so a mutant is an edit of a sequence.

use cpu_model::StoreGranularity;

use crate::ipi::Ipi;
use crate::patching::PatchState;
use crate::protocol::loc::INT3;
use crate::text::TextMemory;

/// One patcher operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// `bp_patching.vec = tp` (the array of batch b becomes live and published).
    SetVec(usize),
    /// `bp_patching.nr_entries = nr_entries` of batch b.
    SetNr(usize),
    /// `smp_wmb()` — a no-op under the sequentially consistent data model, kept as a step so
    /// that reorderings around it are expressible.
    Wmb,
    /// `text_poke(addr, &int3, 1)`.
    PokeInt3 { batch: usize, entry: usize },
    /// `if (len > 1) { text_poke(addr + 1, text + 1, len - 1); do_sync++; }`.
    PokeTail { batch: usize, entry: usize },
    /// `if (text[0] != INT3) { text_poke(addr, text, 1); do_sync++; }`.
    PokeFirst { batch: usize, entry: usize },
    /// `text_poke(addr, text, len)` — the whole instruction at once (mutant `no-int3`).
    PokeWhole { batch: usize, entry: usize },
    /// `do_sync = 0`.
    ResetDoSync,
    /// `on_each_cpu(do_sync_core, NULL, 1)`.
    Sync,
    /// `if (do_sync) on_each_cpu(do_sync_core, NULL, 1)`.
    SyncIfDoSync,
    /// `bp_patching.vec = NULL`.
    ClearVec,
    /// `bp_patching.nr_entries = 0`.
    ClearNr,
    /// `text_poke_bp_batch()` returns: the array goes out of scope.
    EndBatch(usize),
}

impl Op {
    /// Short name for traces and reports.
    pub fn name(&self) -> &'static str {
        match self {
            Op::SetVec(_) => "set-vec",
            Op::SetNr(_) => "set-nr",
            Op::Wmb => "wmb",
            Op::PokeInt3 { .. } => "poke-int3",
            Op::PokeTail { .. } => "poke-tail",
            Op::PokeFirst { .. } => "poke-first",
            Op::PokeWhole { .. } => "poke-whole",
            Op::ResetDoSync => "reset-do-sync",
            Op::Sync => "sync",
            Op::SyncIfDoSync => "sync-if-do-sync",
            Op::ClearVec => "clear-vec",
            Op::ClearNr => "clear-nr",
            Op::EndBatch(_) => "end-batch",
        }
    }
}

/// What a patcher step did, for the machine's statistics and trace.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PatcherEffect {
    /// A state change or barrier.
    Other,
    /// One store event to the text (its epoch).
    Store(u32),
    /// An IPI broadcast.
    Broadcast,
    /// A sync completed (all acknowledged).
    SyncDone,
    /// A batch returned.
    BatchDone,
}

/// The patcher's program and position.
#[derive(Clone, Debug)]
pub struct Patcher {
    program: Vec<Op>,
    pc: usize,
    stores: std::collections::VecDeque<(u64, Vec<u8>)>,
    waiting: bool,
    do_sync: u32,
    granularity: StoreGranularity,
}

impl Patcher {
    /// A patcher that will run `program`, splitting pokes by `granularity`.
    pub fn new(program: Vec<Op>, granularity: StoreGranularity) -> Self {
        Self { program, pc: 0, stores: Default::default(), waiting: false, do_sync: 0, granularity }
    }

    /// True when every operation has completed.
    pub fn done(&self) -> bool {
        self.pc == self.program.len() && self.stores.is_empty() && !self.waiting
    }

    /// True if the next step can run: not done, and not waiting for acknowledgements.
    pub fn enabled(&self, ipi: &Ipi) -> bool {
        let blocked = self.waiting && ipi.outstanding() > 0;
        !self.done() && !blocked
    }

    /// True while a sync waits for acknowledgements.
    pub fn waiting(&self) -> bool {
        self.waiting
    }

    /// The operation in progress (or next), for reports.
    pub fn current(&self) -> Option<&Op> {
        self.program.get(self.pc)
    }

    fn queue(&mut self, addr: u64, bytes: &[u8]) {
        for (a, l) in self.granularity.split(addr, bytes.len() as u64) {
            let off = (a - addr) as usize;
            self.stores.push_back((a, bytes[off..off + l as usize].to_vec()));
        }
    }

    fn capture_old(state: &mut PatchState, text: &TextMemory, batch: usize, entry: usize) {
        let loc = &state.arrays[batch].locs[entry];
        let old = text.read(loc.addr, loc.len).to_vec();
        state.arrays[batch].old[entry] = old;
    }

    /// Runs one step. Must only be called when [`Patcher::enabled`].
    pub fn step(&mut self, state: &mut PatchState, text: &mut TextMemory, ipi: &mut Ipi) -> PatcherEffect {
        debug_assert!(self.enabled(ipi));
        if let Some((addr, bytes)) = self.stores.pop_front() {
            let epoch = text.store(addr, &bytes);
            if self.stores.is_empty() {
                self.pc += 1;
            }
            return PatcherEffect::Store(epoch);
        }
        if self.waiting {
            assert_eq!(ipi.outstanding(), 0, "a sync completes only when every CPU acknowledged");
            self.waiting = false;
            self.pc += 1;
            return PatcherEffect::SyncDone;
        }
        let op = self.program[self.pc];
        let mut effect = PatcherEffect::Other;
        let mut advance = true;
        match op {
            Op::SetVec(b) => {
                state.arrays[b].live = true;
                state.vec = Some(b);
            }
            Op::SetNr(b) => state.nr_entries = state.arrays[b].locs.len(),
            Op::Wmb => {}
            Op::ResetDoSync => self.do_sync = 0,
            Op::PokeInt3 { batch, entry } => {
                Self::capture_old(state, text, batch, entry);
                let addr = state.arrays[batch].locs[entry].addr;
                self.queue(addr, &[INT3]);
            }
            Op::PokeTail { batch, entry } => {
                let loc = &state.arrays[batch].locs[entry];
                if loc.len > 1 {
                    let (addr, tail) = (loc.addr + 1, loc.text[1..].to_vec());
                    self.queue(addr, &tail);
                    self.do_sync += 1;
                }
            }
            Op::PokeFirst { batch, entry } => {
                let loc = &state.arrays[batch].locs[entry];
                if loc.text[0] != INT3 {
                    let (addr, first) = (loc.addr, loc.text[0]);
                    self.queue(addr, &[first]);
                    self.do_sync += 1;
                }
            }
            Op::PokeWhole { batch, entry } => {
                Self::capture_old(state, text, batch, entry);
                let loc = &state.arrays[batch].locs[entry];
                let (addr, bytes) = (loc.addr, loc.text.clone());
                self.queue(addr, &bytes);
            }
            Op::Sync => {
                ipi.broadcast();
                self.waiting = true;
                advance = false;
                effect = PatcherEffect::Broadcast;
            }
            Op::SyncIfDoSync => {
                if self.do_sync > 0 {
                    ipi.broadcast();
                    self.waiting = true;
                    advance = false;
                    effect = PatcherEffect::Broadcast;
                }
            }
            Op::ClearVec => state.vec = None,
            Op::ClearNr => state.nr_entries = 0,
            Op::EndBatch(b) => {
                state.arrays[b].live = false;
                effect = PatcherEffect::BatchDone;
            }
        }
        // A poke's first store runs in the same step that issues it.
        if let Some((addr, bytes)) = self.stores.pop_front() {
            let epoch = text.store(addr, &bytes);
            if !self.stores.is_empty() {
                return PatcherEffect::Store(epoch);
            }
            effect = PatcherEffect::Store(epoch);
        }
        if advance {
            self.pc += 1;
        }
        effect
    }
}
