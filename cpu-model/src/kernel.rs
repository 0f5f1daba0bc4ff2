//! Kernel code on a vCPU (DESIGN.md §2.15, issue 24): a protocol compiled from C — the
//! patching client's `text_poke_bp_batch()` and the INT3 handler's `poke_int3_handler()` — runs
//! as real x86-64 instructions, one `emu_start(rip, 0, 0, 1)` at a time, from a code region
//! every engine maps read + execute (never patched, so it has no instruction view: it is
//! fetched as it is), with its data in a region every engine maps read + write: the part every
//! CPU can address is a [`TsoMemory`] (DESIGN.md §2.16) — under SC one host buffer every engine
//! maps, under x86-TSO each CPU's engine maps its own copy (memory overlaid with its buffered
//! stores) — and the vCPUs' exception stacks are one [`SharedRegion`] after it. Before a fence,
//! locked or serialising instruction ([`crate::tso_cpu::ordering`], Intel SDM vol. 3A §9.2.2)
//! the CPU's store buffer drains; after each instruction its stores go to the memory model.
//!
//! A memory hook over the watched part of the data region records each access an instruction
//! makes (address, size, direction, the value stored), so that the simulator can end a step
//! at the first access another CPU could observe; an access to unmapped memory is recorded
//! with its address (a NULL `bp_desc`, a freed vector). The kernel code runs on two kinds of
//! CPU: a guest [`crate::Vcpu`] inside its INT3 handler ([`crate::Vcpu::step_kernel`]), and a
//! [`KernelCpu`] of its own for each patching client.

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use iced_x86::{Code, Decoder, DecoderOptions};
use unicorn_engine::unicorn_const::{uc_error, HookType, MemType, Prot};
use unicorn_engine::{RegisterX86, UcHookId, Unicorn};

use crate::engine::PooledEngine;
use crate::error::UcContext;
use crate::insn::MAX_INSN_LEN;
use crate::memory::PageBuf;
use crate::tso::{BufferedStore, MemoryModel, TsoError, TsoMemory};
use crate::tso_cpu::{ordering, Ordering};
use crate::vcpu::ExecutedInsn;
use crate::{CpuError, Regs, SharedRegion, PAGE_SIZE};

/// Where a compiled protocol's data lies: `[base, base + shared)` is the memory every CPU can
/// address (the file's data, the call arguments, the patching clients' stacks), an x86-TSO
/// [`TsoMemory`] with one copy per CPU; `[base + shared, base + shared + private)` holds each
/// vCPU's own exception stack, which no other CPU addresses (one host buffer, no store buffer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KernelData {
    /// Guest address of the first byte.
    pub base: u64,
    /// Bytes of the shared part (whole pages).
    pub shared: u64,
    /// Bytes of the private part after it (whole pages).
    pub private: u64,
    /// The memory model of the shared part.
    pub model: MemoryModel,
    /// CPUs: `nr_cpu_ids` (vCPU *i* is CPU *i*, patching client *k* is CPU `vcpus + k`).
    pub cpus: usize,
}

/// The kernel's code and data, shared by every engine that maps them.
#[derive(Debug)]
pub struct KernelMemory {
    code_base: u64,
    code: PageBuf,
    /// The shared data, per CPU a copy (memory + its buffered stores).
    data: RefCell<TsoMemory>,
    /// The exception stacks.
    private: SharedRegion,
    /// The guest text as memory holds it (what a data load of the text reads on the patching
    /// CPUs, which have no instruction view), at its base address.
    text: (u64, PageBuf),
    /// The text epoch the mirror holds (the text at an epoch is always the same).
    text_epoch: Cell<u32>,
}

impl KernelMemory {
    /// `code` at `code_base` (read + execute; padded to whole pages), zeroed `data`, and a
    /// mirror of the guest `text` at `text_base` ([`KernelMemory::sync_text`]).
    pub fn new(code_base: u64, code: &[u8], data: KernelData, text_base: u64, text: &[u8]) -> Self {
        let len = (code.len() as u64).max(1).next_multiple_of(PAGE_SIZE);
        let buf = PageBuf::new(len as usize);
        buf.write(0, code);
        let mirror = PageBuf::new((text.len() as u64).max(1).next_multiple_of(PAGE_SIZE) as usize);
        mirror.write(0, text);
        let shared = TsoMemory::new(data.model, data.base, data.shared, data.cpus.max(1));
        let private = SharedRegion::new(data.base + data.shared, data.private);
        Self {
            code_base,
            code: buf,
            data: RefCell::new(shared),
            private,
            text: (text_base, mirror),
            text_epoch: Cell::new(0),
        }
    }

    /// Makes the text mirror hold `text`, the truth at `epoch` (unless it already does),
    /// copying only `ranges` `(address, length)`: the bytes a store can ever write.
    pub fn sync_text(&self, epoch: u32, text: &[u8], ranges: &[(u64, u64)]) {
        if self.text_epoch.get() == epoch {
            return;
        }
        let base = self.text.0;
        for &(addr, len) in ranges {
            let off = (addr - base) as usize;
            self.text.1.write(off, &text[off..off + len as usize]);
        }
        self.text_epoch.set(epoch);
    }

    /// Forgets which epoch the text mirror holds, so the next [`KernelMemory::sync_text`]
    /// copies the text again (state-space search restoring a state whose store history differs
    /// from the mirror's, when more than one patching client stores: an epoch no longer names
    /// one text).
    pub fn forget_text(&self) {
        self.text_epoch.set(u32::MAX);
    }

    /// The memory model of the shared data.
    pub fn model(&self) -> MemoryModel {
        self.data.borrow().model()
    }

    /// The shared data (memory, buffers, copies).
    pub fn tso(&self) -> std::cell::Ref<'_, TsoMemory> {
        self.data.borrow()
    }

    /// The shared data, mutably (drains, restores).
    pub fn tso_mut(&self) -> std::cell::RefMut<'_, TsoMemory> {
        self.data.borrow_mut()
    }

    /// True if `addr` is in the shared data.
    fn is_shared(&self, addr: u64) -> bool {
        let d = self.data.borrow();
        addr >= d.base() && addr < d.base() + d.len()
    }

    /// Sets initial data contents (before any store): memory and every copy, or the
    /// exception stacks; `None` if outside the data.
    pub fn init(&self, addr: u64, bytes: &[u8]) -> Option<()> {
        match self.is_shared(addr) {
            true => self.data.borrow_mut().init(addr, bytes).ok(),
            false => self.private.write(addr, bytes),
        }
    }

    /// What a load by CPU `cpu` reads at `addr`: code, its view of the shared data (its own
    /// buffered stores, else memory), or the exception stacks; `None` if outside all.
    pub fn read_as(&self, cpu: usize, addr: u64, out: &mut [u8]) -> Option<()> {
        if self.read_code(addr, out).is_some() {
            return Some(());
        }
        match self.is_shared(addr) {
            true => self.data.borrow().read_as(cpu, addr, out).ok(),
            false => self.private.read(addr, out),
        }
    }

    /// The little-endian u64 a load by `cpu` reads at `addr` ([`KernelMemory::read_as`]).
    pub fn read_u64_as(&self, cpu: usize, addr: u64) -> Option<u64> {
        let mut b = [0u8; 8];
        self.read_as(cpu, addr, &mut b).map(|()| u64::from_le_bytes(b))
    }

    /// A store by CPU `cpu` made by a service pokesim carries out for it: into the shared
    /// data's store buffer (straight to memory with `private`: its own unpublished stack), or
    /// into the exception stacks; `None` if outside the data (or a store the saved windows
    /// do not hold).
    pub fn write_as(&self, cpu: usize, addr: u64, bytes: &[u8], private: bool) -> Option<()> {
        match self.is_shared(addr) {
            true => self.data.borrow_mut().write_as(cpu, addr, bytes, private).ok(),
            false => self.private.write(addr, bytes),
        }
    }

    /// What memory holds at `addr` (no CPU's buffered stores): the shared data's memory or
    /// the exception stacks; `None` if outside both. What a saved state holds.
    pub fn read_memory(&self, addr: u64, out: &mut [u8]) -> Option<()> {
        match self.is_shared(addr) {
            true => self.data.borrow().read_memory(addr, out).ok(),
            false => self.private.read(addr, out),
        }
    }

    /// Writes memory (and every CPU's copy) at `addr`, where no store is buffered: a
    /// restored window.
    pub fn write_memory(&self, addr: u64, bytes: &[u8]) -> Option<()> {
        match self.is_shared(addr) {
            true => self.data.borrow_mut().write_memory(addr, bytes).ok(),
            false => self.private.write(addr, bytes),
        }
    }

    /// Drains CPU `cpu`'s whole store buffer, oldest first (a serialising event: a locked
    /// instruction, a fence, an exception or interrupt delivery, IRET); returns the stores.
    pub fn drain_all(&self, cpu: usize) -> Vec<BufferedStore> {
        let mut d = self.data.borrow_mut();
        std::iter::from_fn(|| d.drain_oldest(cpu)).collect()
    }

    /// The drain event: CPU `cpu`'s oldest buffered store reaches memory.
    pub fn drain_oldest(&self, cpu: usize) -> Option<BufferedStore> {
        self.data.borrow_mut().drain_oldest(cpu)
    }

    /// Number of stores CPU `cpu` has buffered.
    pub fn buffered(&self, cpu: usize) -> usize {
        self.data.borrow().buffered(cpu)
    }

    /// Copies code bytes from `addr`; `None` if outside the code region.
    pub fn read_code(&self, addr: u64, out: &mut [u8]) -> Option<()> {
        let off = addr.checked_sub(self.code_base)?;
        (off + out.len() as u64 <= self.code.len() as u64).then(|| self.code.read(off as usize, out))
    }

    /// The NUL-terminated string a load by `cpu` reads at `addr` (at most 256 bytes), lossily
    /// decoded.
    pub fn read_str_as(&self, cpu: usize, addr: u64) -> Option<String> {
        let mut s = Vec::new();
        for a in addr..addr + 256 {
            let mut b = [0u8];
            self.read_as(cpu, a, &mut b)?;
            if b[0] == 0 {
                return Some(String::from_utf8_lossy(&s).into_owned());
            }
            s.push(b[0]);
        }
        Some(String::from_utf8_lossy(&s).into_owned())
    }

    fn code_range(&self) -> (u64, u64) {
        (self.code_base, self.code_base + self.code.len() as u64)
    }
}

/// One data access of a kernel instruction.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct MemAccess {
    /// First byte.
    pub addr: u64,
    /// Bytes accessed.
    pub size: u8,
    /// A store (else a load).
    pub write: bool,
    /// The value stored (0 for a load).
    pub value: u64,
}

/// Why a kernel instruction did not complete.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KernelFault {
    /// A load or store to unmapped memory, at `addr`.
    Unmapped {
        /// The address.
        addr: u64,
        /// A store (else a load or a fetch).
        write: bool,
    },
    /// RIP outside the kernel code.
    OutsideCode(u64),
    /// The bytes do not decode.
    InvalidOpcode,
    /// An instruction kernel code may not run here (hlt, iret, int n, ...).
    Unsupported(Code),
    /// An exception (vector number): #DE, #UD, a stray INT3, ...
    Interrupt(u32),
    /// Unicorn stopped with another error.
    Engine(uc_error),
    /// A store the x86-TSO data memory cannot take (outside the windows a state saves).
    Memory(TsoError),
}

impl fmt::Display for KernelFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            KernelFault::Unmapped { addr, write: true } => write!(f, "store to unmapped address {addr:#x}"),
            KernelFault::Unmapped { addr, write: false } => write!(f, "load from unmapped address {addr:#x}"),
            KernelFault::OutsideCode(rip) => write!(f, "RIP {rip:#x} outside the kernel code"),
            KernelFault::InvalidOpcode => f.write_str("invalid opcode"),
            KernelFault::Unsupported(code) => write!(f, "unsupported instruction {code:?}"),
            KernelFault::Interrupt(n) => write!(f, "exception vector {n}"),
            KernelFault::Engine(e) => write!(f, "engine error {e:?}"),
            KernelFault::Memory(e) => write!(f, "{e}"),
        }
    }
}

/// The most accesses to the watched range one instruction reports.
pub const MAX_ACCESSES: usize = 16;

/// An instruction's accesses to the watched range, in order (no allocation per step).
#[derive(Clone, Copy, Debug)]
pub struct Accesses {
    items: [MemAccess; MAX_ACCESSES],
    len: usize,
    /// More than [`MAX_ACCESSES`] happened (a string instruction): the rest are not listed.
    pub overflow: bool,
}

impl Accesses {
    const NONE: Accesses = Accesses {
        items: [MemAccess { addr: 0, size: 0, write: false, value: 0 }; MAX_ACCESSES],
        len: 0,
        overflow: false,
    };

    /// The accesses listed.
    pub fn iter(&self) -> impl Iterator<Item = &MemAccess> {
        self.items[..self.len].iter()
    }

    fn push(&mut self, a: MemAccess) {
        match self.items.get_mut(self.len) {
            Some(slot) => {
                *slot = a;
                self.len += 1;
            }
            None => self.overflow = true,
        }
    }
}

/// What one kernel instruction did.
#[derive(Clone, Debug)]
pub struct KernelStep {
    /// The instruction (its epochs are all 0: kernel code is never patched).
    pub insn: ExecutedInsn,
    /// Its accesses to the watched range, in order.
    pub accesses: Accesses,
    /// Set if it did not complete.
    pub fault: Option<KernelFault>,
    /// How it is ordered against the CPU's store buffer ([`ordering`]).
    pub ordering: Ordering,
    /// Stores its CPU's buffer drained before it ran (a fence, locked or serialising one).
    pub drained: usize,
    /// Its stores to the shared data that joined the store buffer (0 under SC).
    pub buffered: usize,
}

/// What the hooks record while one instruction runs.
#[derive(Debug)]
struct Log {
    accesses: Accesses,
    unmapped: Option<(u64, bool)>,
    /// Every store to the shared data, `(address, size)` (not bounded like `accesses`: each
    /// must reach the TSO memory).
    writes: Vec<(u64, usize)>,
}

impl Log {
    fn clear(&mut self) {
        self.accesses = Accesses::NONE;
        self.unmapped = None;
        self.writes.clear();
    }
}

/// The kernel regions mapped into one engine, and the hooks that watch them.
#[derive(Debug)]
pub(crate) struct KernelMapping {
    mem: Rc<KernelMemory>,
    hooks: [UcHookId; 2],
    log: Rc<RefCell<Log>>,
    /// Decodes of the kernel code by address, `(length, code, ordering)` (the code never
    /// changes).
    decoded: RefCell<std::collections::HashMap<u64, (u8, Code, Ordering)>>,
    /// The CPU (`smp_processor_id()`) whose copy of the shared data this engine maps.
    cpu: usize,
}

impl KernelMapping {
    /// Maps `mem` into `uc` as CPU `cpu` sees it (its copy of the shared data; with the text
    /// mirror, read-only, if `text`) and watches `[watch.0, watch.1)` of its data.
    pub(crate) fn map(
        uc: &mut Unicorn<'static, ()>,
        mem: &Rc<KernelMemory>,
        watch: (u64, u64),
        text: bool,
        cpu: usize,
    ) -> Result<Self, CpuError> {
        let (code_base, code_end) = mem.code_range();
        // SAFETY: both buffers are page aligned, exactly the mapped size, and outlive the
        // mapping: the owner (Vcpu or KernelCpu) holds this struct's `Rc` and unmaps (returns
        // the engine to the pool, which unmaps everything) before dropping it.
        unsafe {
            uc.mem_map_ptr(code_base, code_end - code_base, Prot::READ | Prot::EXEC, mem.code.as_ptr().cast())
                .ctx("mem_map_ptr(kernel code)")?;
            let (base, len, copy) = {
                let d = mem.data.borrow();
                (d.base(), d.len(), d.copy_ptr(cpu))
            };
            uc.mem_map_ptr(base, len, Prot::READ | Prot::WRITE, copy.cast()).ctx("mem_map_ptr(kernel data)")?;
            let p = &mem.private;
            uc.mem_map_ptr(p.base(), p.len(), Prot::READ | Prot::WRITE, p.host_ptr().cast())
                .ctx("mem_map_ptr(exception stacks)")?;
            if text {
                let (base, buf) = &mem.text;
                uc.mem_map_ptr(*base, buf.len() as u64, Prot::READ, buf.as_ptr().cast())
                    .ctx("mem_map_ptr(text mirror)")?;
            }
        }
        let log = Rc::new(RefCell::new(Log { accesses: Accesses::NONE, unmapped: None, writes: Vec::new() }));
        let l = Rc::clone(&log);
        let watched = uc
            .add_mem_hook(
                HookType::MEM_READ | HookType::MEM_WRITE,
                watch.0,
                watch.1 - 1,
                move |_, ty, addr, size, value| {
                    let write = ty == MemType::WRITE;
                    let value = if write { value as u64 } else { 0 };
                    let mut l = l.borrow_mut();
                    l.accesses.push(MemAccess { addr, size: size as u8, write, value });
                    if write {
                        l.writes.push((addr, size));
                    }
                    true
                },
            )
            .ctx("add_mem_hook(kernel data)")?;
        let l = Rc::clone(&log);
        let unmapped = uc
            .add_mem_hook(HookType::MEM_UNMAPPED | HookType::MEM_PROT, 1, 0, move |_, ty, addr, _, _| {
                let write = matches!(ty, MemType::WRITE_UNMAPPED | MemType::WRITE_PROT);
                l.borrow_mut().unmapped.get_or_insert((addr, write));
                false
            })
            .ctx("add_mem_hook(unmapped)")?;
        Ok(Self { mem: Rc::clone(mem), hooks: [watched, unmapped], log, decoded: Default::default(), cpu })
    }

    /// Removes the hooks (before the engine goes back to the pool).
    pub(crate) fn unhook(&self, uc: &mut Unicorn<'static, ()>) -> bool {
        self.hooks.iter().all(|&h| uc.remove_hook(h).is_ok())
    }

    /// Executes the kernel instruction at `rip`; `trap` is the owner's interrupt cell. Before
    /// a fence, locked or serialising instruction the CPU's store buffer drains; after it,
    /// its stores to the shared data reach the [`TsoMemory`]: a locked instruction's straight
    /// to memory, a store inside `private` (`[low, high)`: the CPU's own stack below anything
    /// it published) straight to memory unless older ones to it wait, any other into the
    /// buffer (under SC, every store reaches memory at once).
    pub(crate) fn step(
        &self,
        uc: &mut Unicorn<'static, ()>,
        rip: u64,
        trap: &Cell<Option<u32>>,
        private: (u64, u64),
    ) -> Result<(KernelStep, u64), CpuError> {
        let mut bytes = [0u8; MAX_INSN_LEN];
        let (code_base, code_end) = self.mem.code_range();
        let window = (code_end.saturating_sub(rip) as usize).min(MAX_INSN_LEN);
        let mut insn = ExecutedInsn {
            addr: rip,
            len: 0,
            window: window as u8,
            bytes,
            epochs: [0; MAX_INSN_LEN],
            code: Code::INVALID,
        };
        let done = |insn, fault| {
            let step = KernelStep {
                insn,
                accesses: Accesses::NONE,
                fault: Some(fault),
                ordering: Ordering::Plain,
                drained: 0,
                buffered: 0,
            };
            Ok((step, rip))
        };
        if rip < code_base || window == 0 {
            return done(insn, KernelFault::OutsideCode(rip));
        }
        self.mem.read_code(rip, &mut bytes[..window]).expect("inside the code");
        insn.bytes = bytes;
        let (len, code, order) = *self.decoded.borrow_mut().entry(rip).or_insert_with(|| {
            let d = Decoder::with_ip(64, &bytes[..window], rip, DecoderOptions::NONE).decode();
            (if d.is_invalid() { 0 } else { d.len() as u8 }, d.code(), ordering(&d))
        });
        insn.code = code;
        if len == 0 {
            return done(insn, KernelFault::InvalidOpcode);
        }
        insn.len = len;
        if crate::insn::refused(insn.code) {
            return done(insn, KernelFault::Unsupported(insn.code));
        }
        let drained = if order.drains() { self.mem.drain_all(self.cpu).len() } else { 0 };
        self.log.borrow_mut().clear();
        trap.set(None);
        let result = uc.emu_start(rip, 0, 0, 1);
        let next = uc.reg_read(RegisterX86::RIP).ctx("reg_read(RIP)")?;
        let mut log = self.log.borrow_mut();
        let (buffered, stored) = self.commit(&log.writes, order == Ordering::Locked, private);
        let fault = match (result, log.unmapped, trap.take(), stored) {
            (_, Some((addr, write)), _, _) => Some(KernelFault::Unmapped { addr, write }),
            (Err(e), None, _, _) => Some(KernelFault::Engine(e)),
            (Ok(()), None, _, Err(e)) => Some(KernelFault::Memory(e)),
            (Ok(()), None, Some(n), Ok(())) => Some(KernelFault::Interrupt(n)),
            (Ok(()), None, None, Ok(())) => None,
        };
        let accesses = std::mem::replace(&mut log.accesses, Accesses::NONE);
        Ok((KernelStep { insn, accesses, fault, ordering: order, drained, buffered }, next))
    }

    /// Hands the stores an instruction made to the shared data to the TSO memory; returns how
    /// many joined the buffer.
    fn commit(&self, writes: &[(u64, usize)], locked: bool, private: (u64, u64)) -> (usize, Result<(), TsoError>) {
        let mut d = self.mem.data.borrow_mut();
        let before = d.buffered(self.cpu);
        for &(addr, size) in writes {
            let r = if locked {
                d.store_locked(self.cpu, addr, size)
            } else if addr >= private.0 && addr + size as u64 <= private.1 {
                d.store_private(self.cpu, addr, size)
            } else {
                d.store(self.cpu, addr, size)
            };
            if let Err(e) = r {
                return (d.buffered(self.cpu) - before, Err(e));
            }
        }
        (d.buffered(self.cpu) - before, Ok(()))
    }
}

/// A CPU that runs only kernel code: a patching client's (it never fetches the patched text,
/// so it has no instruction view).
pub struct KernelCpu {
    // Field order is drop order: the engine goes back to the pool (unmapped) before the
    // buffers it maps.
    engine: PooledEngine,
    intr_hook: UcHookId,
    mapping: KernelMapping,
    trap: Rc<Cell<Option<u32>>>,
    rip: u64,
}

impl fmt::Debug for KernelCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KernelCpu").field("rip", &self.rip).finish()
    }
}

impl Drop for KernelCpu {
    fn drop(&mut self) {
        let hooks = self.mapping.unhook(self.engine.uc());
        if !hooks || self.engine.uc().remove_hook(self.intr_hook).is_err() {
            self.engine.spoil();
        }
    }
}

impl KernelCpu {
    /// CPU `cpu` (its `smp_processor_id()`: its copy of the shared data) mapping `mem`
    /// (watching `watch` of its data) with register file `regs`.
    pub fn new(mem: &Rc<KernelMemory>, watch: (u64, u64), regs: &Regs, cpu: usize) -> Result<Self, CpuError> {
        let mut engine = PooledEngine::take()?;
        let mapping = KernelMapping::map(engine.uc(), mem, watch, true, cpu)?;
        let trap = Rc::new(Cell::new(None));
        let t = Rc::clone(&trap);
        let intr_hook = engine
            .uc()
            .add_intr_hook(move |uc, intno| {
                t.set(Some(intno));
                let _ = uc.emu_stop();
            })
            .ctx("add_intr_hook")?;
        regs.write_to(engine.uc())?;
        Ok(Self { engine, intr_hook, mapping, trap, rip: regs.rip })
    }

    /// The register file.
    pub fn regs(&self) -> Result<Regs, CpuError> {
        Regs::read_from(self.engine.uc_ref())
    }

    /// Replaces the register file.
    pub fn set_regs(&mut self, regs: &Regs) -> Result<(), CpuError> {
        regs.write_to(self.engine.uc())?;
        self.rip = regs.rip;
        Ok(())
    }

    /// Current instruction pointer.
    pub fn rip(&self) -> u64 {
        self.rip
    }

    /// Executes one kernel instruction; its stores inside `private` (the CPU's own stack below
    /// anything it published) bypass the store buffer.
    pub fn step(&mut self, private: (u64, u64)) -> Result<KernelStep, CpuError> {
        let (step, next) = self.mapping.step(self.engine.uc(), self.rip, &self.trap, private)?;
        self.rip = next;
        Ok(step)
    }
}
