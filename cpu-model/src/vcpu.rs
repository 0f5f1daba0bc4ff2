//! One vCPU: a Unicorn engine stepping real x86-64 code from its private view
//! (DESIGN.md §2.5, reference/unicorn.md §1–§4).
//!
//! A step fetches (the view catches up unit by unit as far as the instruction needs, asking the
//! chooser where more than one epoch is possible), invalidates exactly the translated blocks
//! whose bytes changed on this engine, decodes the instruction with iced-x86 (so the oracles
//! know precisely which bytes and epochs ran), and executes it with `emu_start(rip, 0, 0, 1)`.
//! The engine is only ever run in count mode — count=1, or a local run's limit + 1
//! ([`crate::local`]) — since mixing in count=0 flushes every TB (§1).
//!
//! Outcomes: a normal step; an INT3 trap (Unicorn's interrupt hook with intno 3 and
//! RIP = INT3 address + 1, exactly the `regs->ip` the kernel's handler sees); a serializing
//! CPUID; or a [`Fault`] — any other interrupt, an invalid or unsupported instruction, or an
//! unmapped access — which the machine reports as a guest fault.

use std::cell::Cell;
use std::fmt;
use std::rc::Rc;

use iced_x86::{Code, Decoder, DecoderOptions};
use unicorn_engine::unicorn_const::{uc_error, Prot};
use unicorn_engine::{RegisterX86, UcHookId};

use crate::engine::PooledEngine;
use crate::error::UcContext;
use crate::insn::{refused, MAX_INSN_LEN};
use crate::kernel::{KernelMapping, KernelMemory, KernelStep};
use crate::local::LocalCtl;
use crate::view::{Chooser, Epoch, Truth, View};
use crate::{CpuError, FetchModel, Layout, Regs, SharedRegion};

/// The instruction a step fetched: its address, bytes, and the store epoch each byte came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ExecutedInsn {
    /// Address of the first byte.
    pub addr: u64,
    /// Decoded length, or 0 if the bytes do not decode to a valid instruction (then `bytes`
    /// holds the whole fetch window).
    pub len: u8,
    /// Number of valid entries in `bytes`/`epochs`.
    pub window: u8,
    /// The fetched bytes.
    pub bytes: [u8; MAX_INSN_LEN],
    /// For each byte, the epoch of the store it came from (0 = initial image).
    pub epochs: [Epoch; MAX_INSN_LEN],
    /// iced-x86's instruction code.
    pub code: Code,
}

impl ExecutedInsn {
    /// The bytes of the instruction (or of the whole window when it did not decode).
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.shown_len()]
    }

    /// The epochs of [`ExecutedInsn::bytes`].
    pub fn epochs(&self) -> &[Epoch] {
        &self.epochs[..self.shown_len()]
    }

    fn shown_len(&self) -> usize {
        if self.len == 0 {
            self.window as usize
        } else {
            self.len as usize
        }
    }

    /// True if the bytes decoded to a valid instruction.
    pub fn is_valid(&self) -> bool {
        self.len != 0
    }
}

/// A guest fault: the step did not complete as a normal instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Fault {
    /// The fetched bytes do not decode (#UD).
    InvalidOpcode,
    /// A valid instruction the model refuses to run (hlt, syscall, int n, ud2, iret, …).
    Unsupported(Code),
    /// An exception or software interrupt other than INT3 (vector number).
    Interrupt(u32),
    /// Unicorn stopped with an error (unmapped or protected fetch/read/write, …).
    Engine(uc_error),
    /// RIP left the text region.
    OutsideText(u64),
}

impl fmt::Display for Fault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Fault::InvalidOpcode => f.write_str("invalid opcode"),
            Fault::Unsupported(code) => write!(f, "unsupported instruction {code:?}"),
            Fault::Interrupt(n) => write!(f, "interrupt vector {n}"),
            Fault::Engine(e) => write!(f, "engine error {e:?}"),
            Fault::OutsideText(rip) => write!(f, "RIP {rip:#x} outside the text"),
        }
    }
}

/// What one guest step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StepOutcome {
    /// A normal instruction.
    Normal,
    /// INT3 trapped; `regs` is the saved register file with `rip` = INT3 address + 1.
    Int3(Regs),
    /// A serializing instruction (CPUID) ran; the view is exact now.
    Serialized,
    /// The step faulted.
    Fault(Fault),
}

/// A saved vCPU ([`Vcpu::save`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VcpuState {
    /// The register file.
    pub regs: Regs,
    /// The view's saved units.
    pub view: crate::view::ViewState,
    /// Guest steps executed.
    pub steps: u64,
}

/// One emulated CPU.
pub struct Vcpu {
    // Field order is drop order: the engine (unmapped as it goes back to the pool) must go
    // before the buffers it maps.
    engine: PooledEngine,
    /// The trap hook this vCPU added (removed in `drop`, before the engine is pooled).
    intr_hook: UcHookId,
    view: View,
    data: Rc<SharedRegion>,
    trap: Rc<Cell<Option<u32>>>,
    layout: Layout,
    id: usize,
    rip: u64,
    steps: u64,
    invalidations: u64,
    changed: Vec<(u64, u64)>,
    /// Recent decodes, direct-mapped by address, each valid at the view generation it was
    /// made at ([`DecodeCache`]).
    decoded: DecodeCache,
    /// The kernel code and data of a protocol compiled from C, once mapped
    /// ([`Vcpu::map_kernel`]).
    kernel: Option<KernelMapping>,
    /// With local runs enabled ([`Vcpu::enable_local_runs`]): their hook's state and id.
    local: Option<(Rc<LocalCtl>, UcHookId)>,
}

/// What a local run did ([`Vcpu::run_local`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LocalRun {
    /// Where it started.
    pub start: u64,
    /// Guest instructions it executed (each one guest step, as if stepped one at a time).
    pub steps: u64,
    /// If its last instruction faulted: that instruction and the fault (it is among `steps`).
    pub fault: Option<(ExecutedInsn, StepOutcome)>,
}

/// Slots of the decode cache (a guest loop is a few dozen instructions).
const DECODE_SLOTS: usize = 64;

/// Decodes of the view, by address: a step at an address decoded at the current view
/// generation reuses the decode (bytes, epochs, length, code) instead of copying the window,
/// running the decoder and looking up every byte's epoch again. A pure cache: a hit returns
/// exactly what decoding would.
struct DecodeCache {
    slots: Vec<Option<(u64, ExecutedInsn)>>,
}

impl DecodeCache {
    fn new() -> Self {
        DecodeCache { slots: vec![None; DECODE_SLOTS] }
    }

    fn slot(rip: u64) -> usize {
        ((rip ^ (rip >> 6)) as usize) % DECODE_SLOTS
    }

    fn get(&self, rip: u64, generation: u64) -> Option<&ExecutedInsn> {
        match &self.slots[Self::slot(rip)] {
            Some((g, insn)) if *g == generation && insn.addr == rip => Some(insn),
            _ => None,
        }
    }

    fn put(&mut self, generation: u64, insn: &ExecutedInsn) {
        self.slots[Self::slot(insn.addr)] = Some((generation, *insn));
    }
}

impl Drop for Vcpu {
    /// Removes this vCPU's trap hook so that its engine goes back to the pool as new (or, if
    /// that fails, is destroyed instead).
    fn drop(&mut self) {
        let kernel = self.kernel.as_ref().is_none_or(|k| k.unhook(self.engine.uc()));
        let local = self.local.take().is_none_or(|(_, hook)| self.engine.uc().remove_hook(hook).is_ok());
        if !kernel || !local || self.engine.uc().remove_hook(self.intr_hook).is_err() {
            self.engine.spoil();
        }
    }
}

impl fmt::Debug for Vcpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Vcpu").field("id", &self.id).field("rip", &self.rip).field("steps", &self.steps).finish()
    }
}

impl Vcpu {
    /// A vCPU whose view starts as `text` (the truth at epoch 0), sharing `data`, with the
    /// initial register file `regs`.
    pub fn new(
        id: usize,
        layout: Layout,
        text: &[u8],
        data: Rc<SharedRegion>,
        model: FetchModel,
        regs: &Regs,
    ) -> Result<Self, CpuError> {
        layout.validate()?;
        if text.len() as u64 != layout.text_len || data.len() != layout.data_len || data.base() != layout.data_base {
            return Err(CpuError::Layout("text or data buffer does not match the layout".into()));
        }
        let mut engine = PooledEngine::take()?;
        let uc = engine.uc();
        let view = View::new(layout.text_base, text, model);
        // SAFETY: the view buffer and the data region are page aligned, exactly the mapped
        // size, and outlive the mapping: `engine` is the first field, so it is dropped (and
        // its regions unmapped) first, and the data region is held by this struct's `Rc`.
        // Should this function fail after mapping, `engine` is dropped (unmapped) before
        // `view` too, being declared earlier.
        unsafe {
            uc.mem_map_ptr(layout.text_base, layout.text_len, Prot::READ | Prot::EXEC, view.host_ptr().cast())
                .ctx("mem_map_ptr(text)")?;
            uc.mem_map_ptr(layout.data_base, layout.data_len, Prot::READ | Prot::WRITE, data.host_ptr().cast())
                .ctx("mem_map_ptr(data)")?;
        }
        let trap = Rc::new(Cell::new(None));
        let hook_trap = Rc::clone(&trap);
        let intr_hook = uc
            .add_intr_hook(move |uc, intno| {
                hook_trap.set(Some(intno));
                // count=1 already stops after this instruction; stopping explicitly also covers
                // faults that would otherwise re-execute (e.g. #DE leaves RIP on the instruction).
                let _ = uc.emu_stop();
            })
            .ctx("add_intr_hook")?;
        regs.write_to(uc)?;
        Ok(Self {
            engine,
            intr_hook,
            view,
            data,
            trap,
            layout,
            id,
            rip: regs.rip,
            steps: 0,
            invalidations: 0,
            changed: Vec::new(),
            decoded: DecodeCache::new(),
            kernel: None,
            local: None,
        })
    }

    /// Maps the kernel code and data of a protocol compiled from C into this vCPU's engine,
    /// watching `watch` of the data ([`crate::kernel`]): its INT3 handler runs there.
    pub fn map_kernel(&mut self, mem: &Rc<KernelMemory>, watch: (u64, u64)) -> Result<(), CpuError> {
        self.kernel = Some(KernelMapping::map(self.engine.uc(), mem, watch, false, self.id)?);
        Ok(())
    }

    /// Executes one instruction of the mapped kernel code at RIP (the INT3 handler compiled
    /// from C): no instruction view, no fetch model — kernel code is never patched.
    pub fn step_kernel(&mut self) -> Result<KernelStep, CpuError> {
        let kernel = self.kernel.as_ref().ok_or(CpuError::Layout("no kernel code is mapped".into()))?;
        let (step, next) = kernel.step(self.engine.uc(), self.rip, &self.trap, (0, 0))?;
        self.rip = next;
        Ok(step)
    }

    /// This vCPU's index.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Current instruction pointer.
    pub fn rip(&self) -> u64 {
        self.rip
    }

    /// Guest steps executed.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    /// Translation-block invalidations done on this engine.
    pub fn invalidations(&self) -> u64 {
        self.invalidations
    }

    /// The private instruction view.
    pub fn view(&self) -> &View {
        &self.view
    }

    /// The shared data region.
    pub fn data(&self) -> &SharedRegion {
        &self.data
    }

    /// Reads the full register file.
    pub fn regs(&self) -> Result<Regs, CpuError> {
        Regs::read_from(self.engine.uc_ref())
    }

    /// Replaces the register file (the handler's IRET).
    pub fn set_regs(&mut self, regs: &Regs) -> Result<(), CpuError> {
        regs.write_to(self.engine.uc())?;
        self.rip = regs.rip;
        Ok(())
    }

    /// The state of this vCPU that state-space search saves: registers, the view's units that
    /// hold patched bytes, and the step count (which only feeds `rdtsc`).
    pub fn save(&self, units: &[usize]) -> Result<VcpuState, CpuError> {
        Ok(VcpuState { regs: self.regs()?, view: self.view.save(units), steps: self.steps })
    }

    /// Restores a saved state: registers, the view (the bytes of `ranges` rewritten where
    /// they differ, and exactly those translated blocks invalidated), the step count.
    pub fn restore(
        &mut self,
        state: &VcpuState,
        units: &[usize],
        ranges: &[(u64, u64)],
        truth: &dyn Truth,
    ) -> Result<(), CpuError> {
        self.set_regs(&state.regs)?;
        self.steps = state.steps;
        self.engine.tsc().set(self.steps * 16);
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        self.view.restore(&state.view, units, ranges, truth, &mut changed);
        let r = self.invalidate(&changed);
        self.changed = changed;
        r
    }

    /// Serializes the instruction stream (`sync_core()`, IRET, CPUID): the view becomes exact.
    pub fn serialize(&mut self, truth: &dyn Truth) -> Result<(), CpuError> {
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        self.view.serialize(truth, &mut changed);
        let r = self.invalidate(&changed);
        self.changed = changed;
        r
    }

    /// Drops the translated blocks overlapping each changed range, on this engine only
    /// (the rule of reference/unicorn.md §2), and nothing when nothing changed.
    fn invalidate(&mut self, changed: &[(u64, u64)]) -> Result<(), CpuError> {
        for &(s, e) in changed {
            self.engine.uc().ctl_remove_cache(s, e).ctx("ctl_remove_cache")?;
            self.invalidations += 1;
        }
        Ok(())
    }

    /// Decodes the instruction at `rip` from the view (from the cache when the view has not
    /// changed since the last decode there).
    fn decode(&mut self, rip: u64) -> ExecutedInsn {
        let generation = self.view.generation();
        if let Some(insn) = self.decoded.get(rip, generation) {
            debug_assert_eq!(*insn, self.decode_view(rip), "the decode cache is stale");
            return *insn;
        }
        let insn = self.decode_view(rip);
        self.decoded.put(generation, &insn);
        insn
    }

    /// Decodes the instruction at `rip` from the view's bytes.
    fn decode_view(&self, rip: u64) -> ExecutedInsn {
        let mut bytes = [0u8; MAX_INSN_LEN];
        let window = self.view.read(rip, &mut bytes);
        let mut decoder = Decoder::with_ip(64, &bytes[..window], rip, DecoderOptions::NONE);
        let insn = decoder.decode();
        let len = if insn.is_invalid() { 0 } else { insn.len() as u8 };
        let mut epochs = [0; MAX_INSN_LEN];
        for (i, e) in epochs.iter_mut().enumerate().take(window) {
            *e = self.view.shown(rip + i as u64).1;
        }
        ExecutedInsn { addr: rip, len, window: window as u8, bytes, epochs, code: insn.code() }
    }

    /// Lets the view catch up for a fetch at `rip`, unit by unit, only as far as the
    /// instruction's bytes reach, and only for units whose patchable bytes the instruction
    /// reads (units beyond it, or holding only bytes no store writes, keep their snapshot:
    /// staying is always allowed, and asking would only add decisions that change nothing).
    fn fetch(&mut self, rip: u64, truth: &dyn Truth, chooser: &mut dyn Chooser) -> Result<ExecutedInsn, CpuError> {
        let limit = (rip + MAX_INSN_LEN as u64).min(self.layout.text_base + self.layout.text_len);
        if self.view.is_exact(truth) {
            return Ok(self.decode(rip));
        }
        let mut changed = std::mem::take(&mut self.changed);
        changed.clear();
        let mut refreshed: [usize; MAX_INSN_LEN] = [usize::MAX; MAX_INSN_LEN];
        let mut n = 0;
        let (mut checked, mut need) = (rip, rip + 1);
        let insn = loop {
            for addr in checked..need {
                let unit = self.view.unit_index(addr);
                if self.view.is_patchable(addr) && !refreshed[..n].contains(&unit) {
                    self.view.refresh_unit(addr, truth, chooser, &mut changed);
                    refreshed[n] = unit;
                    n += 1;
                }
            }
            checked = need;
            let insn = self.decode(rip);
            need = if insn.is_valid() { rip + insn.len as u64 } else { limit };
            if need <= checked {
                break insn;
            }
        };
        let r = self.invalidate(&changed);
        self.changed = changed;
        r.map(|_| insn)
    }

    /// Declares the bytes stores can ever write ([`View::set_patchable`]).
    pub fn set_patchable(&mut self, ranges: &[(u64, u64)]) {
        self.view.set_patchable(ranges);
    }

    /// Executes one guest instruction.
    pub fn step(
        &mut self,
        truth: &dyn Truth,
        chooser: &mut dyn Chooser,
    ) -> Result<(ExecutedInsn, StepOutcome), CpuError> {
        let rip = self.rip;
        if !self.layout.in_text(rip) {
            let insn = ExecutedInsn {
                addr: rip,
                len: 0,
                window: 0,
                bytes: [0; MAX_INSN_LEN],
                epochs: [0; MAX_INSN_LEN],
                code: Code::INVALID,
            };
            return Ok((insn, StepOutcome::Fault(Fault::OutsideText(rip))));
        }
        self.view.note_step(truth.now());
        let insn = self.fetch(rip, truth, chooser)?;
        if !insn.is_valid() {
            return Ok((insn, StepOutcome::Fault(Fault::InvalidOpcode)));
        }
        if refused(insn.code) {
            return Ok((insn, StepOutcome::Fault(Fault::Unsupported(insn.code))));
        }
        self.steps += 1;
        self.engine.tsc().set(self.steps * 16);
        self.trap.set(None);
        let uc = self.engine.uc();
        let result = uc.emu_start(rip, 0, 0, 1);
        self.rip = uc.reg_read(RegisterX86::RIP).ctx("reg_read(RIP)")?;
        if let Err(e) = result {
            return Ok((insn, StepOutcome::Fault(Fault::Engine(e))));
        }
        let outcome = match self.trap.take() {
            Some(3) if insn.code == Code::Int3 => {
                debug_assert_eq!(self.rip, rip + 1, "INT3 trap must leave RIP after the INT3");
                StepOutcome::Int3(self.regs()?)
            }
            Some(n) => StepOutcome::Fault(Fault::Interrupt(n)),
            None if insn.code == Code::Cpuid => {
                self.serialize(truth)?;
                StepOutcome::Serialized
            }
            None => StepOutcome::Normal,
        };
        Ok((insn, outcome))
    }
}

impl Vcpu {
    /// Lets this vCPU run many local instructions in one `emu_start` ([`Vcpu::run_local`],
    /// [`crate::local`]): runs stop before any byte of `patchable` (address, length) ranges
    /// and at the addresses `stops` (every kprobe's address), and pause at `pause` (the loop
    /// head: the caller checks its invariant, then runs on from there). Call once, before the
    /// first step.
    pub fn enable_local_runs(&mut self, patchable: &[(u64, u64)], stops: &[u64], pause: u64) -> Result<(), CpuError> {
        if self.local.is_some() {
            return Err(CpuError::Layout("local runs are already enabled".into()));
        }
        let ctl = Rc::new(LocalCtl::new(self.layout.text_base, self.layout.text_len, patchable, stops, pause));
        let hook_ctl = Rc::clone(&ctl);
        // begin=1 > end=0: every address (an instruction outside the text stops the run, so
        // that the next single step reports it exactly as today).
        let hook = self
            .engine
            .uc()
            .add_code_hook(1, 0, move |uc, addr, _size| {
                if hook_ctl.before(addr, |a, buf| uc.mem_read(a, buf).is_ok()) {
                    let _ = uc.emu_stop();
                }
            })
            .ctx("add_code_hook(local runs)")?;
        self.local = Some((ctl, hook));
        Ok(())
    }

    /// Executes up to `limit` local instructions from RIP in one `emu_start`, stopping before
    /// the first one that is not local ([`crate::local`]) and before the pause address unless
    /// the run starts there; RIP must be at a local instruction.
    /// Each instruction counts as one guest step, and `truth`'s epoch (unchanged while the run
    /// goes on: nobody else acts) is noted for each as [`Vcpu::step`] would.
    pub fn run_local(&mut self, limit: u64, truth: &dyn Truth) -> Result<LocalRun, CpuError> {
        let Some((ctl, _)) = &self.local else {
            return Err(CpuError::Layout("local runs are not enabled on this vCPU".into()));
        };
        let ctl = Rc::clone(ctl);
        let start = self.rip;
        ctl.ran.set(0);
        ctl.limit.set(limit);
        ctl.last.set(start);
        ctl.active.set(true);
        self.trap.set(None);
        let uc = self.engine.uc();
        let result = uc.emu_start(start, 0, 0, limit.saturating_add(1) as usize);
        ctl.active.set(false);
        self.rip = uc.reg_read(RegisterX86::RIP).ctx("reg_read(RIP)")?;
        let steps = ctl.ran.get();
        self.steps += steps;
        self.engine.tsc().set(self.steps * 16);
        self.view.note_steps(truth.now(), steps);
        let fault = match (result, self.trap.take()) {
            (Err(e), _) => Some(Fault::Engine(e)),
            (Ok(()), Some(n)) => Some(Fault::Interrupt(n)),
            (Ok(()), None) => None,
        };
        let fault = fault.map(|f| (self.decode_view(ctl.last.get()), StepOutcome::Fault(f)));
        Ok(LocalRun { start, steps, fault })
    }
}
