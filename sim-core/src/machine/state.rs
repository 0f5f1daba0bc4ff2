//! The machine's state as one value: what state-space search saves, restores and compares.
//!
//! A [`Snapshot`] holds everything that can influence the future of a run and nothing that
//! only describes its past: the text truth (as an epoch while one patching client stores: its
//! stores are the same on every path; as its store history when several do — the workload's
//! patcher and a kprobe that arms itself, two callers of one vector —, since the order of their
//! stores is a scheduling choice), every vCPU's registers, its view of the patched bytes and
//! its step count, the data region (stacks and counters), the handlers, the patching state, the
//! patcher's position, the IPIs, and the finite-guest counters. The run's record (trace, statistics,
//! tick) is not part of it. The fields that are plain values are listed once, in
//! `MachineState`: the machine holds one and a snapshot clones it; the vCPUs (saved through
//! their Unicorn contexts, `cpu_model::VcpuState`) and the data region (saved as its windows)
//! are saved their own way.
//!
//! Saving reads a vCPU from its engine only if an event touched it since the caller's
//! [`SaveCache`] last saw it (the machine counts touches; the cache, owned by the search,
//! remembers states and their versions).
//!
//! `Snapshot::canonical_hash` identifies states up to what cannot matter (with several
//! patching clients it includes what every epoch wrote, so two states with the same epochs but
//! another order of stores are never one): the views' raw epochs collapse to the effective
//! snapshot of each patched unit, the data region to each vCPU's counters and live stack
//! (`[rsp, top)`), the registers that hold a vCPU's own addresses to offsets from their initial
//! values — and, when the scenario treats every vCPU alike, the vCPUs' order (symmetry
//! reduction: the per-vCPU parts are sorted).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use cpu_model::{Epoch, Reg, Regs, Truth, VcpuState};

use super::Machine;
use crate::driver::{Activation, Client, Int3Handler, PatchingClient};
use crate::ipi::Ipi;
use crate::oracle::emulation::ARITH_FLAGS;
use crate::patching::PatchState;
use crate::program::Op;
use crate::text::Store;
use crate::SimError;

/// How much of each vCPU's stack a snapshot saves, below the stack's top: the workloads'
/// call depth needs a few dozen bytes; saving a state whose stack reaches deeper is an error.
pub(crate) const STACK_WINDOW: u64 = 1024;

/// How much of a compiled protocol's stacks (a patching client's, a vCPU's exception stack) a
/// snapshot saves, below the top.
const KERNEL_STACK_WINDOW: u64 = 4096;

/// The saved part of a compiled protocol's data: its `.data` and `.bss`, in whole 64-byte lines.
fn kernel_data_len(c: &crate::compiled::CMachine) -> u64 {
    (c.compiled.image.data.len() as u64).max(64).next_multiple_of(64)
}

/// Collects what a state is made of as bytes, hashed once at the end (xxh3's streaming
/// interface costs more per tiny write than the bytes themselves).
#[derive(Default)]
struct Bytes(Vec<u8>);

impl Hasher for Bytes {
    fn finish(&self) -> u64 {
        xxhash_rust::xxh3::xxh3_64(&self.0)
    }
    fn write(&mut self, bytes: &[u8]) {
        self.0.extend_from_slice(bytes);
    }
}

impl Bytes {
    fn digest128(&self) -> u128 {
        xxhash_rust::xxh3::xxh3_128(&self.0)
    }
}

/// The machine's state apart from its vCPUs' engines and its data region (which are saved
/// their own way: a vCPU through its Unicorn context, the data region as its windows): the
/// one list of the state's fields. The machine holds one, a [`Snapshot`] clones it, and
/// canonical hashing reads it — a new field is added here and nowhere else.
#[derive(Debug)]
pub(crate) struct MachineState {
    /// Per vCPU, its INT3 handler while it runs one.
    pub(crate) handlers: Vec<Option<Activation>>,
    /// The patching state shared by the patchers and the handlers.
    pub(crate) patching: PatchState,
    /// One patcher per patching client ([`crate::event::Event::Patcher`]); the workload's is
    /// first.
    pub(crate) patchers: Vec<Client>,
    /// The IPIs in flight.
    pub(crate) ipi: Ipi,
    /// Loop-head arrivals per vCPU.
    pub(crate) iterations: Vec<u64>,
    /// Per vCPU, whether it has stopped (`max_iterations`).
    pub(crate) finished: Vec<bool>,
    /// The interrupts: deliveries left, each CPU's IF and whether it is in a handler (empty
    /// without `[interrupts]`).
    pub(crate) irq: crate::interrupt::IrqState,
}

/// Restoring a state copies it into the machine's own, reusing its buffers: `clone_from`
/// goes field by field (the derived one allocates everything anew), and the search restores a
/// state for every transition.
impl Clone for MachineState {
    fn clone(&self) -> Self {
        let Self { handlers, patching, patchers, ipi, iterations, finished, irq } = self;
        Self {
            handlers: handlers.clone(),
            patching: patching.clone(),
            patchers: patchers.clone(),
            ipi: ipi.clone(),
            iterations: iterations.clone(),
            finished: finished.clone(),
            irq: irq.clone(),
        }
    }

    fn clone_from(&mut self, source: &Self) {
        let Self { handlers, patching, patchers, ipi, iterations, finished, irq } = self;
        handlers.clone_from(&source.handlers);
        patching.clone_from(&source.patching);
        patchers.clone_from(&source.patchers);
        ipi.clone_from(&source.ipi);
        iterations.clone_from(&source.iterations);
        finished.clone_from(&source.finished);
        irq.clone_from(&source.irq);
    }
}

/// A saved machine state.
#[derive(Clone, Debug)]
pub struct Snapshot {
    epoch: Epoch,
    tick: u64,
    /// Each vCPU's state and its version (equal versions are equal states), shared with the
    /// snapshots and the [`SaveCache`] that hold the same version (a clone copies no state).
    vcpus: Vec<(u64, Arc<VcpuState>)>,
    /// The bytes of the data windows ([`Machine::data_windows`]), one after another (a
    /// compiled protocol's kernel data as memory holds it, without buffered stores).
    data: Vec<u8>,
    /// Under x86-TSO, every CPU's store buffer of the kernel data (empty under SC).
    buffers: Vec<Vec<cpu_model::BufferedStore>>,
    state: MachineState,
    /// With interrupts on the patching CPU: each client's interrupt CPU.
    irq_cpus: Vec<VcpuState>,
    /// With more than one patching client, the text's store history (the order of the
    /// clients' stores differs from path to path, so the epoch alone does not name it).
    stores: Option<Vec<Store>>,
}

/// What saving and hashing states remembers between calls, owned by whoever saves them
/// (state-space search, or a run that records state hashes): per vCPU, its state as last
/// saved or restored with that state's version, while no event has touched the vCPU since —
/// so a search restores and reads only the vCPUs that changed — and a scratch buffer for
/// canonical hashing. One cache serves one machine.
#[derive(Debug, Default)]
pub struct SaveCache {
    /// Per vCPU: the machine's touch count of it when it was known, its version, its state.
    known: Vec<Option<(u64, u64, Arc<VcpuState>)>>,
    versions: u64,
    scratch: Vec<u8>,
}

impl SaveCache {
    /// The state of vCPU `i` if it is known and untouched since (`touches`: the machine's
    /// count for it).
    fn get(&self, i: usize, touches: u64) -> Option<&(u64, u64, Arc<VcpuState>)> {
        self.known.get(i)?.as_ref().filter(|k| k.0 == touches)
    }

    fn set(&mut self, i: usize, known: (u64, u64, Arc<VcpuState>)) {
        if self.known.len() <= i {
            self.known.resize(i + 1, None);
        }
        self.known[i] = Some(known);
    }
}

/// What canonical hashing needs to know about the machine: where each vCPU's own data is,
/// how its view is saved, and whether vCPUs may be permuted.
#[derive(Clone, Debug)]
pub(crate) struct Canon {
    /// Per vCPU: initial `rbx` and `rsp` (offsets are taken from them), counter block, stack top.
    cpus: Vec<CpuCanon>,
    /// The data windows a snapshot saves, `(address, length)`.
    windows: Vec<(u64, u64)>,
    site_units: usize,
    monotone: bool,
    finite: bool,
    /// True if the vCPUs are interchangeable: the same code, and no per-CPU state in the
    /// patcher's program or the handler (6.16's per-CPU references break it).
    pub symmetric: bool,
    /// With a protocol compiled from C: its data `(address, length)`.
    kernel_data: Option<(u64, u64)>,
    /// The compiled protocol's kernel data is x86-TSO: the store buffers are state.
    tso: bool,
}

#[derive(Clone, Copy, Debug)]
struct CpuCanon {
    rbx: u64,
    rsp: u64,
    counters: (u64, u64),
    stack_top: u64,
}

impl Snapshot {
    /// The text epoch of this state.
    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    /// A hash of the state up to what cannot influence the future (see the module note);
    /// with `canon.symmetric`, also up to the order of the vCPUs. 128 bits: for 10⁹ states
    /// the chance of any collision is below 10⁻²⁰.
    pub(crate) fn canonical_hash(&self, canon: &Canon) -> u128 {
        let parts = Parts {
            epoch: self.epoch,
            vcpus: self.vcpus.iter().map(|(_, v)| &**v).collect(),
            state: &self.state,
            data: Data::Saved(&self.data),
            irq_cpus: self.irq_cpus.iter().collect(),
            buffers: Buffers::Saved(&self.buffers),
            stores: self.stores.as_deref(),
        };
        parts.canonical_hash(canon, &mut Vec::new())
    }
}

/// Where the data windows' bytes are: in a snapshot, or in the live data regions (the
/// guest's, and a compiled protocol's kernel data).
enum Data<'a> {
    Saved(&'a [u8]),
    Live(&'a cpu_model::SharedRegion, Option<&'a cpu_model::KernelMemory>),
}

/// Where the kernel data's store buffers are: in a snapshot, or in the live memory.
enum Buffers<'a> {
    Saved(&'a [Vec<cpu_model::BufferedStore>]),
    Live(Option<&'a cpu_model::KernelMemory>),
}

/// Reads memory at `addr` (no buffered store): a compiled protocol's kernel data if it holds
/// `addr`, else the guest's data.
fn read_region(addr: u64, data: &cpu_model::SharedRegion, kernel: Option<&cpu_model::KernelMemory>, out: &mut [u8]) {
    if kernel.and_then(|k| k.read_memory(addr, out)).is_none() {
        let _ = data.read(addr, out);
    }
}

/// The parts of a state canonical hashing reads, borrowed from a snapshot or a live machine.
struct Parts<'a> {
    epoch: Epoch,
    vcpus: Vec<&'a VcpuState>,
    state: &'a MachineState,
    data: Data<'a>,
    irq_cpus: Vec<&'a VcpuState>,
    buffers: Buffers<'a>,
    /// With more than one patching client, the text's store history.
    stores: Option<&'a [Store]>,
}

impl Parts<'_> {
    /// Appends the data bytes `[addr, addr + len)` (inside one data window) to `out`.
    fn data_into(&self, canon: &Canon, addr: u64, len: u64, out: &mut Vec<u8>) {
        match &self.data {
            Data::Live(data, kernel) => {
                let at = out.len();
                out.resize(at + len as usize, 0);
                read_region(addr, data, *kernel, &mut out[at..]);
            }
            Data::Saved(bytes) => {
                let mut at = 0usize;
                for &(w, wl) in &canon.windows {
                    if addr >= w && addr + len <= w + wl {
                        let off = at + (addr - w) as usize;
                        out.extend_from_slice(&bytes[off..off + len as usize]);
                        return;
                    }
                    at += wl as usize;
                }
            }
        }
    }

    /// vCPU `i`'s part of the state, with its own addresses as offsets.
    fn cpu_hash(&self, canon: &Canon, i: usize, scratch: &mut Vec<u8>) -> u128 {
        let c = canon.cpus[i];
        let rel = |r: &Regs| {
            let mut r = *r;
            r.set(Reg::Rbx, r.get(Reg::Rbx).wrapping_sub(c.rbx));
            r.set(Reg::Rsp, r.get(Reg::Rsp).wrapping_sub(c.rsp));
            r.rflags &= ARITH_FLAGS;
            r
        };
        let v = self.vcpus[i];
        scratch.clear();
        let mut h = Bytes(std::mem::take(scratch));
        rel(&v.regs).hash(&mut h);
        let snap = &v.view.snap[..canon.site_units.min(v.view.snap.len())];
        snap.iter().map(|&e| e.max(v.view.last_sync)).for_each(|e| e.hash(&mut h));
        if !canon.monotone {
            v.view.last_sync.hash(&mut h);
        }
        v.view.recent.hash(&mut h);
        match &self.state.handlers[i] {
            Some(hd) => {
                1u8.hash(&mut h);
                hd.hash_state(&mut h, rel);
            }
            None => 0u8.hash(&mut h),
        }
        (self.state.ipi.pending(i), self.state.patching.percpu_refs.get(i)).hash(&mut h);
        if let (Some(f), Some(inside)) = (self.state.irq.vcpu_if.get(i), self.state.irq.vcpu_in.get(i)) {
            // With interrupts: IF (masked out of the flags above) and whether it is in a handler.
            (f, inside).hash(&mut h);
        }
        if canon.finite {
            (self.state.iterations[i], self.state.finished[i]).hash(&mut h);
        }
        if let (Some(Activation::C(_)), Some(_)) = (&self.state.handlers[i], canon.kernel_data) {
            // The compiled handler's live frames: from its stack pointer to its stack's top.
            let ((low, top), sp) = (crate::compiled::exception_stack(i), v.regs.get(Reg::Rsp));
            if (low..top).contains(&sp) {
                self.data_into(canon, sp, top - sp, &mut h.0);
            }
        }
        self.data_into(canon, c.counters.0, c.counters.1, &mut h.0);
        let sp = v.regs.get(Reg::Rsp);
        self.data_into(canon, sp, c.stack_top.saturating_sub(sp), &mut h.0);
        let digest = h.digest128();
        *scratch = h.0;
        digest
    }

    fn canonical_hash(&self, canon: &Canon, scratch: &mut Vec<u8>) -> u128 {
        let mut cpus: Vec<u128> = (0..self.vcpus.len()).map(|i| self.cpu_hash(canon, i, scratch)).collect();
        if canon.symmetric {
            cpus.sort_unstable();
        }
        scratch.clear();
        let mut h = Bytes(std::mem::take(scratch));
        self.epoch.hash(&mut h);
        if let Some(stores) = self.stores {
            // Two clients interleave their stores: what each epoch wrote is part of the state.
            stores.hash(&mut h);
        }
        for p in &self.state.patchers {
            p.hash_state(&mut h);
        }
        self.state.patching.hash_shared(&mut h);
        self.state.ipi.counts().0.hash(&mut h);
        cpus.hash(&mut h);
        if !self.state.irq.vcpu_in.is_empty() {
            // With interrupts: deliveries left, the clients in a handler, and each interrupt
            // CPU's view (and registers while it runs a handler).
            (self.state.irq.left, &self.state.irq.client_in).hash(&mut h);
            for (k, v) in self.irq_cpus.iter().enumerate() {
                let snap = &v.view.snap[..canon.site_units.min(v.view.snap.len())];
                snap.iter().map(|&e| e.max(v.view.last_sync)).for_each(|e| e.hash(&mut h));
                (v.view.last_sync, &v.view.recent).hash(&mut h);
                if self.state.irq.client_in[k] {
                    v.regs.hash(&mut h);
                }
            }
        }
        if let Some((addr, len)) = canon.kernel_data {
            // A compiled protocol's data, and each compiled client's live frames.
            self.data_into(canon, addr, len, &mut h.0);
            for (k, p) in self.state.patchers.iter().enumerate() {
                if let Client::C(c) = p {
                    let (sp, top) = (c.sp(), crate::compiled::client_stack(k).1);
                    self.data_into(canon, sp, top - sp, &mut h.0);
                }
            }
            if canon.tso {
                // Every store buffer, in order (under SC they are always empty).
                match self.buffers {
                    Buffers::Saved(b) => b.hash(&mut h),
                    Buffers::Live(Some(m)) => m.tso().buffers().hash(&mut h),
                    Buffers::Live(None) => {}
                }
            }
        }
        let digest = h.digest128();
        *scratch = h.0;
        digest
    }
}

impl Machine {
    /// What canonical hashing needs about this machine.
    pub(crate) fn canon(&self) -> Canon {
        let cpus = self
            .vcpus
            .iter()
            .zip(&self.cpu_data)
            .zip(&self.initial_regs)
            .map(|((_, d), r)| CpuCanon {
                rbx: r.get(Reg::Rbx),
                rsp: r.get(Reg::Rsp),
                counters: d.counters,
                stack_top: d.stack_top,
            })
            .collect();
        let per_cpu_ops = self
            .state
            .patchers
            .iter()
            .flat_map(|p| p.program())
            .any(|op| matches!(op, Op::SetRefs(_) | Op::DecRefs { .. }));
        let per_cpu_handler = self.config.protocol.handler() == crate::protocol::HandlerKind::PerCpuRefs;
        Canon {
            cpus,
            windows: self.windows.clone(),
            site_units: self.site_units.len(),
            monotone: self.config.fetch.monotone,
            finite: self.config.max_iterations.is_some(),
            symmetric: !per_cpu_ops && !per_cpu_handler && self.c.is_none(),
            kernel_data: self.c.as_ref().map(|c| (crate::kernel_image::KDATA_BASE, kernel_data_len(c))),
            tso: self.config.memory == cpu_model::MemoryModel::Tso,
        }
    }

    /// The parts of the data region a snapshot saves: each vCPU's counter block, and the
    /// bottom [`STACK_WINDOW`] bytes of its stack up to (and including the slack above) its
    /// top — everything a vCPU or its handler ever writes.
    pub(super) fn data_windows(&self) -> Vec<(u64, u64)> {
        let mut w = Vec::with_capacity(2 * self.cpu_data.len());
        for d in &self.cpu_data {
            w.push(d.counters);
            let lo = d.stack_top.saturating_sub(STACK_WINDOW).max(d.stack_floor);
            let hi = (d.stack_top + 64).min(self.data.base() + self.data.len());
            w.push((lo, hi.saturating_sub(lo)));
        }
        if let Some(c) = &self.c {
            w.push((crate::kernel_image::KDATA_BASE, kernel_data_len(c)));
            for k in 0..self.state.patchers.len() {
                let top = crate::compiled::client_stack(k).1;
                w.push((top - KERNEL_STACK_WINDOW, KERNEL_STACK_WINDOW));
            }
            for i in 0..self.vcpus.len() {
                let top = crate::compiled::exception_stack(i).1;
                w.push((top - KERNEL_STACK_WINDOW, KERNEL_STACK_WINDOW));
            }
        }
        if let (Some((_, d)), false) = (&self.irq_ctx, self.irq_cpus.is_empty()) {
            // The patching CPU's interrupt context: its counters and its stack.
            w.push(d.counters);
            w.push((d.stack_floor, d.stack_top + 64 - d.stack_floor));
        }
        w
    }

    /// Reads memory at `addr` (no buffered store): the kernel data of a compiled protocol,
    /// or the guest's.
    fn read_window(&self, addr: u64, out: &mut [u8]) {
        read_region(addr, &self.data, self.c.as_ref().map(|c| &*c.mem), out);
    }

    /// Writes memory (and every CPU's copy) at `addr`: the kernel data of a compiled
    /// protocol, or the guest's.
    fn write_window(&self, addr: u64, bytes: &[u8]) {
        if self.c.as_ref().and_then(|c| c.mem.write_memory(addr, bytes)).is_none() {
            let _ = self.data.write(addr, bytes);
        }
    }

    /// With a compiled protocol, an error if a stack reached below its saved window.
    fn check_kernel_stacks(&self) -> Result<(), SimError> {
        if self.c.is_none() {
            return Ok(());
        }
        for (k, p) in self.state.patchers.iter().enumerate() {
            let Client::C(c) = p else { continue };
            if c.sp() < crate::compiled::client_stack(k).1 - KERNEL_STACK_WINDOW + 64 {
                return Err(SimError::Internal(format!(
                    "patcher{k}: the stack reached {:#x}, below the saved window",
                    c.sp()
                )));
            }
        }
        Ok(())
    }

    /// Reads the state of every vCPU an event touched since `cache` last saw it.
    fn know_vcpus(&mut self, cache: &mut SaveCache) -> Result<(), SimError> {
        for i in 0..self.vcpus.len() {
            if cache.get(i, self.touches[i]).is_none() {
                cache.versions += 1;
                let state = self.vcpus[i].save(&self.site_units)?;
                cache.set(i, (self.touches[i], cache.versions, Arc::new(state)));
            }
        }
        Ok(())
    }

    /// The canonical hash of the current state ([`Snapshot::canonical_hash`] of what
    /// [`Machine::save`] would return), without building a snapshot.
    pub(crate) fn canonical_hash(&mut self, canon: &Canon, cache: &mut SaveCache) -> Result<u128, SimError> {
        self.hash_parts(cache, |parts, scratch| parts.canonical_hash(canon, scratch))
    }

    /// The hash of vCPU `i`'s own part of the current state, as [`Machine::canonical_hash`]
    /// sorts the parts under symmetry: vCPUs that a permutation of the state exchanges have
    /// equal parts.
    pub(crate) fn cpu_hash(&mut self, canon: &Canon, cache: &mut SaveCache, i: usize) -> Result<u128, SimError> {
        self.hash_parts(cache, |parts, scratch| parts.cpu_hash(canon, i, scratch))
    }

    /// Runs `hash` on the parts of the current state, with the cache's scratch buffer.
    fn hash_parts(
        &mut self,
        cache: &mut SaveCache,
        hash: impl FnOnce(&Parts<'_>, &mut Vec<u8>) -> u128,
    ) -> Result<u128, SimError> {
        self.know_vcpus(cache)?;
        let mut scratch = std::mem::take(&mut cache.scratch);
        let touches = &self.touches;
        let vcpus = (0..self.vcpus.len()).map(|i| &*cache.get(i, touches[i]).expect("known").2).collect();
        let kernel = self.c.as_ref().map(|c| &*c.mem);
        let irq_cpus = self.irq_cpus.iter().map(|v| v.save(&self.site_units)).collect::<Result<Vec<_>, _>>()?;
        let (data, buffers) = (Data::Live(&self.data, kernel), Buffers::Live(kernel));
        let irq_cpus = irq_cpus.iter().collect();
        let stores = self.interleaved_stores().then(|| self.text.log());
        let parts = Parts { epoch: self.text.now(), vcpus, state: &self.state, data, buffers, irq_cpus, stores };
        let h = hash(&parts, &mut scratch);
        cache.scratch = scratch;
        Ok(h)
    }

    /// Saves the current state. A vCPU no event touched since `cache` last saw it is not read
    /// again from its engine: its state and version are known.
    pub fn save(&mut self, cache: &mut SaveCache) -> Result<Snapshot, SimError> {
        let mut data = vec![0u8; self.windows.iter().map(|w| w.1 as usize).sum()];
        let mut at = 0;
        for &(addr, len) in &self.windows {
            self.read_window(addr, &mut data[at..at + len as usize]);
            at += len as usize;
        }
        let buffers = match &self.c {
            Some(c) if c.mem.model() == cpu_model::MemoryModel::Tso => c.mem.tso().buffers(),
            _ => Vec::new(),
        };
        self.check_kernel_stacks()?;
        self.know_vcpus(cache)?;
        let vcpus: Vec<(u64, Arc<VcpuState>)> = (0..self.vcpus.len())
            .map(|i| cache.get(i, self.touches[i]).map(|k| (k.1, Arc::clone(&k.2))).expect("known"))
            .collect();
        for (i, (_, v)) in vcpus.iter().enumerate() {
            let sp = self.state.handlers[i].as_ref().map_or(v.regs.sp(), |h| h.trapped().0.sp().min(v.regs.sp()));
            if sp < self.windows[2 * i + 1].0 + 64 {
                return Err(SimError::Internal(format!("cpu{i}: the stack reached {sp:#x}, below the saved window")));
            }
        }
        let irq_cpus = self.irq_cpus.iter().map(|v| v.save(&self.site_units)).collect::<Result<Vec<_>, _>>()?;
        let state = self.state.clone();
        let stores = self.interleaved_stores().then(|| self.text.log().to_vec());
        Ok(Snapshot { epoch: self.text.now(), tick: self.tick, vcpus, data, buffers, state, irq_cpus, stores })
    }

    /// Restores a saved state (of this machine): the truth moves to its epoch (or, with several
    /// patching clients, to its store history: `Machine::restore_text`), each vCPU gets
    /// its registers back and its view's patched bytes rewritten where they differ (with
    /// exactly those translated blocks invalidated), and the rest is copied back. The run's
    /// violation is cleared.
    pub fn restore(&mut self, s: &Snapshot, cache: &mut SaveCache) -> Result<(), SimError> {
        self.restore_text(s)?;
        for (i, (version, st)) in s.vcpus.iter().enumerate() {
            // A vCPU already in the saved state (same version, untouched since) stays as is.
            if cache.get(i, self.touches[i]).is_some_and(|k| k.1 == *version) {
                continue;
            }
            self.vcpus[i].restore(st, &self.site_units, &self.sites, &self.text)?;
            cache.set(i, (self.touches[i], *version, Arc::clone(st)));
        }
        for (v, st) in self.irq_cpus.iter_mut().zip(&s.irq_cpus) {
            v.restore(st, &self.site_units, &self.sites, &self.text)?;
        }
        let tso = self.c.as_ref().filter(|c| c.mem.model() == cpu_model::MemoryModel::Tso);
        if let Some(c) = tso {
            c.mem.tso_mut().unbuffer();
        }
        let mut at = 0;
        for &(addr, len) in &self.windows {
            self.write_window(addr, &s.data[at..at + len as usize]);
            at += len as usize;
        }
        if let Some(c) = tso {
            c.mem.tso_mut().rebuffer(&s.buffers);
        }
        self.state.clone_from(&s.state);
        self.tick = s.tick;
        self.violation = None;
        self.drain = None;
        self.trace.set_round(self.round());
        self.enabled.invalidate();
        Ok(())
    }

    /// True if more than one patching client stores to the text: the order of their stores is
    /// a scheduling choice, so a state holds its store history, not only its epoch.
    pub(crate) fn interleaved_stores(&self) -> bool {
        self.state.patchers.len() > 1
    }

    /// Moves the text truth to a saved state's: to its epoch (one client: the stores are the
    /// same sequence on every path), or to its store history (several clients: the stores after
    /// the prefix both histories share are replaced, and a compiled protocol's text mirror is
    /// copied again at its next read).
    fn restore_text(&mut self, s: &Snapshot) -> Result<(), SimError> {
        match &s.stores {
            Some(stores) => {
                self.text.set_log(stores);
                if let Some(c) = &self.c {
                    c.mem.forget_text();
                }
            }
            None if !self.text.set_epoch(s.epoch) => {
                return Err(SimError::Internal(format!("restore: text epoch {} was never reached", s.epoch)));
            }
            None => {}
        }
        Ok(())
    }
}
