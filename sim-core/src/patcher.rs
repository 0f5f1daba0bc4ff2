//! The patching CPU as a step machine (DESIGN.md §2.6): a program of operations, one per step.
//! A `text_poke` becomes one or more store events (split by the fetch model's `stores`
//! parameter), each its own step; a sync broadcasts the IPI in one step and completes in a
//! later one, disabled in between until every vCPU has acknowledged; a reference-count wait
//! is disabled until the count drains.
//!
//! The operations are named for the kernel statements they mirror; each protocol version is a
//! sequence of them (see [`crate::protocol`]), so a mutant is an edit of a sequence.
//!
//! A run has one patcher per patching client: the workload's (ftrace, static_call, ...) and
//! one per kprobe that arms and disarms itself. They share the patching state and the text
//! and are serialised by `text_mutex` ([`Op::LockTextMutex`]); which one takes it next is a
//! scheduling decision like any other.

use std::collections::VecDeque;

use cpu_model::StoreGranularity;

use crate::footprint::Footprint;
use crate::ipi::Ipi;
use crate::patching::{PatchState, TEXT_POKE_ARRAY_MAX};
use crate::program::Op;
use crate::protocol::loc::INT3;
use crate::text::TextMemory;

/// What a patcher step did, for the machine's statistics and trace.
#[derive(Clone, Debug, PartialEq, Eq)]
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
    /// The operation wrote memory it does not own (the explanation).
    Fault(std::borrow::Cow<'static, str>),
    /// A patching client compiled from C asked for something pokesim does not model (an
    /// `on_each_cpu()` of another function, a mutex other than `text_mutex`): bad input, never
    /// a verdict — the run stops with an error naming the call and its line.
    Refused(String),
}

/// What the patcher is blocked on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum Wait {
    Acks,
    DescRefs(usize),
    CpuRefs(usize),
    GlobalRefs,
    Rcu,
}

/// The patcher's program and position.
#[derive(Clone, Debug)]
pub struct Patcher {
    client: usize,
    program: std::rc::Rc<[Op]>,
    /// Per position `pc`, the [`Op::EndBatch`]s in `program[..pc]` (constant: what
    /// [`Patcher::batches_done`] reads in O(1), not by scanning the program every round).
    ends: std::rc::Rc<[u32]>,
    plain: std::rc::Rc<[(u64, Vec<u8>)]>,
    pc: usize,
    stores: VecDeque<(u64, Vec<u8>)>,
    waiting: Option<Wait>,
    do_sync: u32,
    granularity: StoreGranularity,
    /// While `synchronize_rcu()` waits: the readers `(cpu, serial)` it waits for.
    rcu_wait: Vec<(usize, u64)>,
}

impl Patcher {
    /// Patching client `client`'s patcher that will run `program` (plain pokes indexed into
    /// `plain`), splitting pokes by `granularity`.
    pub fn new(client: usize, program: Vec<Op>, plain: Vec<(u64, Vec<u8>)>, granularity: StoreGranularity) -> Self {
        let ends = std::iter::once(0)
            .chain(program.iter().scan(0u32, |n, op| {
                *n += matches!(op, Op::EndBatch(_)) as u32;
                Some(*n)
            }))
            .collect();
        Self {
            client,
            ends,
            program: program.into(),
            plain: plain.into(),
            pc: 0,
            stores: VecDeque::new(),
            waiting: None,
            do_sync: 0,
            granularity,
            rcu_wait: Vec::new(),
        }
    }

    /// The patching client this patcher is (0: the workload's).
    pub fn client(&self) -> usize {
        self.client
    }

    /// True when every operation has completed.
    pub fn done(&self) -> bool {
        self.pc == self.program.len() && self.stores.is_empty() && self.waiting.is_none()
    }

    /// True if the next step can run: not done, and not blocked on acknowledgements, on a
    /// reference count or on `text_mutex` held by another client.
    pub fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        let blocked = match self.waiting {
            None => {
                self.stores.is_empty()
                    && self.program.get(self.pc) == Some(&Op::LockTextMutex)
                    && state.text_mutex.is_some()
            }
            Some(Wait::Acks) => ipi.outstanding() > 0,
            Some(Wait::DescRefs(b)) => state.arrays[b].refs != 0,
            Some(Wait::CpuRefs(c)) => state.percpu_refs[c] != 0,
            Some(Wait::GlobalRefs) => state.global_refs != 0,
            Some(Wait::Rcu) => self.rcu_wait.iter().any(|&(cpu, serial)| state.rcu_readers[cpu] == serial),
        };
        !self.done() && !blocked
    }

    /// What it may read and write of the shared memory before vCPU `cpu` next acknowledges a
    /// sync IPI ([`crate::footprint`]): the operation in progress and those after it, up to
    /// and including the first sync, which waits for `cpu` — nothing if it waits for `cpu`
    /// now. `do_sync` is followed as the operations change it, so a `SyncIfDoSync` that will
    /// sync ends the look-ahead as a `Sync` does (one that will not is passed over). A vCPU
    /// inside its INT3 handler acknowledges only after its IRET: until then, this patcher
    /// touches nothing outside this footprint.
    pub(crate) fn upcoming(&self, state: &PatchState, ipi: &Ipi, cpu: usize) -> Footprint {
        if self.done() {
            return Footprint::NONE;
        }
        let (mut footprint, mut pc, mut do_sync) = (Footprint::NONE, self.pc, self.do_sync);
        if !self.at_op_start() {
            // Issued already: its stores go on, or it waits.
            if self.waiting == Some(Wait::Acks) && ipi.pending(cpu) {
                return Footprint::NONE;
            }
            footprint = self.program[pc].footprint();
            pc += 1;
        }
        for &op in &self.program[pc..] {
            footprint = footprint.and(op.footprint());
            match op {
                Op::Sync => break,
                Op::SyncIfDoSync if do_sync > 0 => break,
                Op::ResetDoSync => do_sync = 0,
                _ => do_sync += u32::from(syncs_later(op, state)),
            }
        }
        footprint
    }

    /// The batches its program has returned from: the [`Op::EndBatch`]s behind its position
    /// (part of the state a search restores, unlike the run's statistics).
    pub(crate) fn batches_done(&self) -> u64 {
        let n = u64::from(self.ends[self.pc]);
        debug_assert_eq!(n, self.program[..self.pc].iter().filter(|op| matches!(op, Op::EndBatch(_))).count() as u64);
        n
    }

    /// Feeds the patcher's position into `h` (its program never changes during a run).
    pub(crate) fn hash_state(&self, h: &mut impl std::hash::Hasher) {
        use std::hash::Hash;
        (self.pc, &self.stores, self.waiting, self.do_sync).hash(h);
        if !self.rcu_wait.is_empty() {
            self.rcu_wait.hash(h);
        }
    }

    /// True while the patcher waits for a reference count to drain.
    pub(crate) fn waiting_for_refs(&self) -> bool {
        matches!(self.waiting, Some(Wait::DescRefs(_) | Wait::CpuRefs(_) | Wait::GlobalRefs))
    }

    /// A description of what the patcher waits for, if anything.
    pub fn waiting(&self) -> Option<&'static str> {
        match self.waiting? {
            Wait::Acks => Some("waiting for acks"),
            Wait::DescRefs(_) => Some("waiting for desc.refs to drain"),
            Wait::CpuRefs(_) => Some("waiting for text_poke_array_refs to drain"),
            Wait::GlobalRefs => Some("waiting for bp_desc.refs to drain"),
            Wait::Rcu => Some("waiting for an RCU grace period"),
        }
    }

    /// True if the next step issues the current operation (no store of it pending, no wait).
    pub(crate) fn at_op_start(&self) -> bool {
        self.stores.is_empty() && self.waiting.is_none()
    }

    /// The operation in progress (or next), for reports.
    pub fn current(&self) -> Option<&Op> {
        self.program.get(self.pc)
    }

    /// The whole program.
    pub fn program(&self) -> &[Op] {
        &self.program
    }

    fn queue(&mut self, addr: u64, bytes: &[u8]) {
        for (a, l) in self.granularity.split(addr, bytes.len() as u64) {
            let off = (a - addr) as usize;
            self.stores.push_back((a, bytes[off..off + l as usize].to_vec()));
        }
    }

    /// Runs one step. Must only be called when [`Patcher::enabled`]: the next store of the
    /// operation in progress, the end of a wait, or the next operation issued (with its first
    /// store, if it stores).
    pub fn step(&mut self, state: &mut PatchState, text: &mut TextMemory, ipi: &mut Ipi) -> PatcherEffect {
        debug_assert!(self.enabled(ipi, state));
        if let Some(effect) = self.resume(text) {
            return effect;
        }
        let op = self.program[self.pc];
        let issued = match op {
            op if op.outside_int3_protocol() => self.client_op(op, state, text),
            Op::Sync | Op::SyncIfDoSync | Op::DecGlobalRefs { .. } | Op::PutDesc { .. } | Op::DecRefs { .. } => {
                self.sync_or_wait(op, state, ipi)
            }
            _ => self.batch_op(op, state),
        };
        match issued {
            Issued::Hold(effect) => effect,
            Issued::Next(effect) => self.first_store(text, effect),
        }
    }

    /// The next store of the operation in progress, or the end of the wait it began.
    fn resume(&mut self, text: &mut TextMemory) -> Option<PatcherEffect> {
        if let Some((addr, bytes)) = self.stores.pop_front() {
            let epoch = text.store(addr, &bytes);
            if self.stores.is_empty() {
                self.pc += 1;
            }
            return Some(PatcherEffect::Store(epoch));
        }
        let wait = self.waiting.take()?;
        self.rcu_wait.clear();
        self.pc += 1;
        Some(if wait == Wait::Acks { PatcherEffect::SyncDone } else { PatcherEffect::Other })
    }

    /// After issuing: a poke's first store runs in the same step; the operation is done when
    /// its last store is.
    fn first_store(&mut self, text: &mut TextMemory, mut effect: PatcherEffect) -> PatcherEffect {
        if let Some((addr, bytes)) = self.stores.pop_front() {
            let epoch = text.store(addr, &bytes);
            if !self.stores.is_empty() {
                return PatcherEffect::Store(epoch);
            }
            effect = PatcherEffect::Store(epoch);
        }
        self.pc += 1;
        effect
    }

    /// The INT3 protocol's own operations (`text_poke_bp_batch()`, `smp_text_poke_batch_*()`).
    fn batch_op(&mut self, op: Op, state: &mut PatchState) -> Issued {
        match op {
            Op::BeginBatch(b) => {
                state.arrays[b].live = true;
                state.arrays[b].refs = 1;
            }
            Op::SetVec(b) => state.vec = Some(b),
            Op::SetNr(b) => state.nr_entries = state.arrays[b].locs.len(),
            Op::PublishDesc(b) => state.desc = Some(b),
            Op::AddEntry { batch, entry } => return add_entry(state, batch, entry),
            Op::SetRefs(cpu) => state.percpu_refs[cpu] = 1,
            Op::SetGlobalRefs => state.global_refs = 1,
            Op::ResetDoSync => self.do_sync = 0,
            Op::PokeInt3 { batch, entry } => {
                let addr = state.arrays[batch].locs[entry].addr;
                self.queue(addr, &[INT3]);
            }
            Op::PokeTail { batch, entry } if syncs_later(op, state) => {
                let loc = &state.arrays[batch].locs[entry];
                let (addr, tail) = (loc.addr + 1, loc.text[1..].to_vec());
                self.queue(addr, &tail);
                self.do_sync += 1;
            }
            Op::PokeFirst { batch, entry } | Op::PokeFirstAlways { batch, entry } if syncs_later(op, state) => {
                let loc = &state.arrays[batch].locs[entry];
                let (addr, first) = (loc.addr, loc.first_byte());
                self.queue(addr, &[first]);
                self.do_sync += 1;
            }
            Op::PokeWhole { batch, entry } => {
                let loc = &state.arrays[batch].locs[entry];
                let (addr, bytes) = (loc.addr, loc.text.clone());
                self.queue(addr, &bytes);
            }
            Op::ClearVec => state.vec = None,
            Op::ClearNr => state.nr_entries = 0,
            Op::ClearDesc => state.desc = None,
            Op::EndBatch(b) => {
                state.arrays[b].live = false;
                return Issued::Next(PatcherEffect::BatchDone);
            }
            _ => {}
        }
        Issued::Next(PatcherEffect::Other)
    }

    /// A sync (broadcast, then wait for the acknowledgements) or a reference drop that may
    /// wait for the count to drain.
    fn sync_or_wait(&mut self, op: Op, state: &mut PatchState, ipi: &mut Ipi) -> Issued {
        let wait = match op {
            Op::Sync | Op::SyncIfDoSync if op == Op::Sync || self.do_sync > 0 => {
                ipi.broadcast();
                self.waiting = Some(Wait::Acks);
                return Issued::Hold(PatcherEffect::Broadcast);
            }
            Op::DecGlobalRefs { wait } => {
                PatchState::put_ref(&mut state.global_refs, &mut state.below_zero);
                (wait && state.global_refs != 0).then_some(Wait::GlobalRefs)
            }
            Op::PutDesc { batch, wait } => {
                PatchState::put_ref(&mut state.arrays[batch].refs, &mut state.below_zero);
                (wait && state.arrays[batch].refs != 0).then_some(Wait::DescRefs(batch))
            }
            Op::DecRefs { cpu, wait } => {
                PatchState::put_ref(&mut state.percpu_refs[cpu], &mut state.below_zero);
                (wait && state.percpu_refs[cpu] != 0).then_some(Wait::CpuRefs(cpu))
            }
            _ => None,
        };
        match wait {
            Some(w) => {
                self.waiting = Some(w);
                Issued::Hold(PatcherEffect::Other)
            }
            None => Issued::Next(PatcherEffect::Other),
        }
    }

    /// The operations of other patching clients: plain `text_poke()`, `text_mutex`, a kprobe's
    /// life and `synchronize_rcu()`.
    fn client_op(&mut self, op: Op, state: &mut PatchState, text: &TextMemory) -> Issued {
        match op {
            Op::PokePlain(i) => {
                let (addr, bytes) = self.plain[i].clone();
                self.queue(addr, &bytes);
            }
            Op::LockTextMutex => state.text_mutex = Some(self.client),
            Op::UnlockTextMutex => {
                debug_assert_eq!(state.text_mutex, Some(self.client), "unlock by the holder");
                state.text_mutex = None;
            }
            Op::RegisterKprobe(k) => {
                let kp = &mut state.kprobes[k];
                kp.insn = current_instruction(text, kp.addr).into();
                kp.registered = true;
            }
            Op::ArmKprobe(k) => {
                state.kprobes[k].armed = true;
                self.queue(state.kprobes[k].addr, &[INT3]);
            }
            Op::DisarmKprobe(k) => {
                state.kprobes[k].armed = false;
                let (addr, opcode) = (state.kprobes[k].addr, state.kprobes[k].insn[0]);
                self.queue(addr, &[opcode]);
            }
            Op::UnregisterKprobe(k) => state.kprobes[k].registered = false,
            Op::SynchronizeRcu => {
                self.rcu_wait =
                    state.rcu_readers.iter().enumerate().filter(|(_, &s)| s != 0).map(|(c, &s)| (c, s)).collect();
                if !self.rcu_wait.is_empty() {
                    self.waiting = Some(Wait::Rcu);
                    return Issued::Hold(PatcherEffect::Other);
                }
            }
            _ => {}
        }
        Issued::Next(PatcherEffect::Other)
    }
}

/// True if `op` stores and counts in `do_sync` (so a later `SyncIfDoSync` syncs):
/// `if (len > 1)` for the tail, `if (text[0] != INT3)` for the first byte (always, in 5.4).
fn syncs_later(op: Op, state: &PatchState) -> bool {
    match op {
        Op::PokeTail { batch, entry } => state.arrays[batch].locs[entry].len > 1,
        Op::PokeFirst { batch, entry } => state.arrays[batch].locs[entry].first_byte() != INT3,
        Op::PokeFirstAlways { .. } => true,
        _ => false,
    }
}

/// What issuing an operation did: go on (to its first store, then the next operation), or
/// hold here (a wait began, a sync broadcast, a fault).
enum Issued {
    Next(PatcherEffect),
    Hold(PatcherEffect),
}

/// `__smp_text_poke_batch_add()`: `tpl = &text_poke_array.vec[text_poke_array.nr_entries++]`.
/// In `struct { struct smp_text_poke_loc vec[TEXT_POKE_ARRAY_MAX]; int nr_entries; }`,
/// `vec[256]` is `nr_entries` itself: without the vector-full check (a mutant) the patcher
/// writes memory it does not own.
fn add_entry(state: &mut PatchState, batch: usize, entry: usize) -> Issued {
    if state.nr_entries >= TEXT_POKE_ARRAY_MAX {
        return Issued::Hold(PatcherEffect::Fault(
            "__smp_text_poke_batch_add(): tpl = &text_poke_array.vec[text_poke_array.nr_entries++] with \
             nr_entries == TEXT_POKE_ARRAY_MAX writes vec[256], past the vector: its rel_addr overwrites \
             text_poke_array.nr_entries and the rest of the entry the memory after it"
                .into(),
        ));
    }
    if state.static_vec.len() <= state.nr_entries {
        state.static_vec.resize(state.nr_entries + 1, None);
    }
    state.static_vec[state.nr_entries] = Some((batch, entry));
    state.nr_entries += 1;
    Issued::Next(PatcherEffect::Other)
}

/// The instruction the text holds at `addr` now (what `arch_copy_kprobe()` copies).
fn current_instruction(text: &TextMemory, addr: u64) -> Vec<u8> {
    let avail = (text.end() - addr).min(15) as usize;
    let bytes = text.read(addr, avail);
    let insn = iced_x86::Decoder::with_ip(64, bytes, addr, iced_x86::DecoderOptions::NONE).decode();
    bytes[..insn.len().max(1)].to_vec()
}

#[cfg(test)]
mod tests {
    use cpu_model::Layout;

    use super::*;
    use crate::footprint::Shared;
    use crate::patching::PokeArray;
    use crate::protocol::{text_poke_loc_init, Protocol};

    /// Runs linux-5.5's batch of one NOP5 -> CALL at 0x1000 for one vCPU that acknowledges every
    /// sync at once; before each step, what the look-ahead says the patcher may touch before
    /// the vCPU's next acknowledgement, and the operation it stands at.
    fn walk() -> Vec<(Option<Op>, Footprint)> {
        let loc =
            text_poke_loc_init(Protocol::Linux55.loc_rules(), 0x1000, &[0xe8, 0x10, 0, 0, 0], None, None).unwrap();
        let array = PokeArray::new(vec![loc], vec![vec![0x0f, 0x1f, 0x44, 0, 0]]);
        let mut state = PatchState::new(vec![array], 1, Vec::new());
        let layout = Layout { text_base: 0, text_len: 0x2000, data_base: 0x10000, data_len: 0x1000 };
        let mut text = TextMemory::new(&layout, vec![0x90; 0x2000]);
        let mut ipi = Ipi::new(1);
        let program = Protocol::Linux55.batch_program(&[], 0, 1, 1);
        let mut p = Patcher::new(0, program, Vec::new(), StoreGranularity::Byte);
        let mut seen = Vec::new();
        while !p.done() {
            if ipi.pending(0) {
                seen.push((p.current().copied(), p.upcoming(&state, &ipi, 0)));
                ipi.acknowledge(0);
            }
            seen.push((p.current().copied(), p.upcoming(&state, &ipi, 0)));
            p.step(&mut state, &mut text, &mut ipi);
        }
        seen
    }

    #[test]
    fn the_look_ahead_ends_at_the_next_sync_and_is_empty_while_the_sync_waits_for_the_cpu() {
        let seen = walk();
        // While a sync waits for this vCPU, the patcher can do nothing before it acknowledges.
        assert!(seen.iter().any(|(op, f)| *op == Some(Op::Sync) && *f == Footprint::NONE));
        // Writing the tail: text stores up to the sync after them, which will sync (do_sync is
        // 1) — not the teardown's nr_entries = 0 behind it.
        let (_, tail) = seen.iter().find(|(op, _)| matches!(op, Some(Op::PokeTail { .. }))).unwrap();
        assert!(tail.writes.meets(Shared::TEXT) && !tail.writes.meets(Shared::NR_ENTRIES), "{tail:?}");
        // Before the first store: publishing, the INT3, up to the first sync.
        let (_, first) = &seen[0];
        assert!(first.writes.meets(Shared::VEC.or(Shared::NR_ENTRIES)) && first.writes.meets(Shared::TEXT));
        // At the teardown: nr_entries = 0, then the sync that waits; vec = NULL comes after it.
        let (_, clear) = seen.iter().find(|(op, _)| *op == Some(Op::ClearNr)).unwrap();
        assert!(clear.writes.meets(Shared::NR_ENTRIES) && !clear.writes.meets(Shared::VEC), "{clear:?}");
    }
}
