//! A patching client compiled from C: a CPU of its own ([`KernelCpu`]) that calls the file's
//! entry points — `pokesim_patch()` for each batch of the workload's script (the caller of
//! `text_poke_bp_batch()` / `text_poke_queue()` + `text_poke_finish()` /
//! `smp_text_poke_batch_add()` + `smp_text_poke_batch_finish()`), `pokesim_poke()` for a plain
//! `text_poke()`, `pokesim_sync()` for a `text_poke_sync()` — and runs them instruction by
//! instruction. The services that touch the shared kernel state are carried out here:
//! `text_poke()` becomes store events of the text's store log (split by the fetch model's store
//! granularity, one per step, as the Rust patcher's pokes), `on_each_cpu(do_sync_core, …, 1)`
//! broadcasts the IPI and disables the client until every vCPU acknowledged, `mutex_lock
//! (&text_mutex)` waits (who takes it next is a scheduling decision), `synchronize_rcu()`
//! waits for the handlers in progress.

use std::collections::VecDeque;
use std::hash::{Hash, Hasher};
use std::rc::Rc;

use cpu_model::{KernelCpu, KernelFault, KernelMemory, KernelStep, MemoryModel, Reg, Regs, StoreGranularity};

use super::service::{self, Common};
use super::{client_stack, in_file_data, Compiled, PRIVATE_RUN_MAX, RETURN_ADDR};
use crate::driver::Kernel;
use crate::ipi::Ipi;
use crate::kernel_image::{Service, KEXC_BASE, KSTACK_BASE};
use crate::patcher::PatcherEffect;
use crate::patching::PatchState;
use crate::program::Op;

/// One call of an entry point: the address, its arguments, and the patch arrays of the plan it
/// covers (a batch's, as the version splits it; 0 for a plain poke or a sync).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CCall {
    /// The entry point.
    pub entry: u64,
    /// rdi, rsi, rdx.
    pub args: [u64; 3],
    /// Patch arrays it completes.
    pub arrays: u64,
}

/// What the client waits for inside a service.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Pending {
    /// Nothing: the next step runs instructions.
    Run,
    /// `text_poke_early()`'s `memcpy()` to the text ([`Service::TextMemcpy`]): stores still to
    /// issue. Unlike `text_poke()`'s, its end does not serialise.
    EarlyStores(VecDeque<(u64, Vec<u8>)>),
    /// `text_poke()`: stores still to issue; then it returns `addr`.
    Stores(VecDeque<(u64, Vec<u8>)>, u64),
    /// `on_each_cpu()`: every vCPU's acknowledgement.
    Acks,
    /// `mutex_lock(&text_mutex)`: the mutex.
    Mutex,
    /// `synchronize_rcu()`: the handlers `(cpu, serial)` in progress at the call.
    Rcu(Vec<(usize, u64)>),
}

/// A patching client running compiled code.
#[derive(Clone, Debug)]
pub struct CClient {
    client: usize,
    compiled: std::sync::Arc<Compiled>,
    calls: Rc<[CCall]>,
    /// The call in progress (`calls.len()` once done), and whether it was entered.
    call: usize,
    entered: bool,
    batches_done: u64,
    regs: Regs,
    pending: Pending,
    granularity: StoreGranularity,
    /// `smp_processor_id()` of this client's CPU, and `nr_cpu_ids`.
    cpu: usize,
    nr_cpu_ids: usize,
    /// The return address of the service it is in (for traces and reports).
    from: u64,
    /// The last instruction it executed (for traces).
    last: Option<cpu_model::ExecutedInsn>,
    /// The lowest address of its stack another CPU may see (a frame whose address it stored
    /// in shared memory: 5.6's `bp_desc = &desc`); accesses above it are shared.
    escaped: u64,
    /// Its last step serialised its CPU ([`CClient::take_serialized`]); read and cleared after
    /// every step, so never part of the state.
    serialized: bool,
    /// Its last store was `text_poke_early()`'s `memcpy()` (for traces only).
    early_store: bool,
    /// Interrupts can be delivered to its CPU: an instruction that sets IF ends a step.
    irq: bool,
    /// `own_stores = "jump"`: its own stores to the text reach its own fetches at once.
    own_jump: bool,
    /// Stores its CPU's buffer drained in the last step (for traces only).
    drained: usize,
}

/// What one run of instructions ended with.
enum Ran {
    Effect(PatcherEffect),
    Returned,
}

impl CClient {
    /// Patching client `client` (with `smp_processor_id()` `cpu` of `nr_cpu_ids`) that makes
    /// `calls` of `compiled`.
    pub fn new(
        client: usize,
        compiled: std::sync::Arc<Compiled>,
        calls: Vec<CCall>,
        granularity: StoreGranularity,
        cpu: usize,
        nr_cpu_ids: usize,
    ) -> Self {
        let (_, top) = client_stack(client);
        Self {
            client,
            compiled,
            calls: calls.into(),
            call: 0,
            entered: false,
            batches_done: 0,
            regs: Regs::default(),
            pending: Pending::Run,
            granularity,
            cpu,
            nr_cpu_ids,
            escaped: top,
            drained: 0,
            from: 0,
            last: None,
            serialized: false,
            early_store: false,
            irq: false,
            own_jump: false,
        }
    }

    /// With interrupts on its CPU (`irq`): a `sti` or `popf` that sets IF ends its step, so that
    /// an interrupt can arrive right after it; `own_jump`: `own_stores = "jump"`.
    pub fn set_interrupts(&mut self, irq: bool, own_jump: bool) {
        self.irq = irq;
        self.own_jump = own_jump;
    }

    /// The patching client it is.
    pub fn client(&self) -> usize {
        self.client
    }

    /// True once every call has returned.
    pub fn done(&self) -> bool {
        self.call == self.calls.len()
    }

    /// True if its next step can run.
    pub fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        !self.done()
            && match &self.pending {
                Pending::Run | Pending::Stores(..) | Pending::EarlyStores(_) => true,
                Pending::Acks => ipi.outstanding() == 0,
                Pending::Mutex => state.text_mutex.is_none(),
                Pending::Rcu(w) => !w.iter().any(|&(cpu, serial)| state.rcu_readers[cpu] == serial),
            }
    }

    /// What it waits for, if it waits.
    pub fn waiting(&self) -> Option<&'static str> {
        match self.pending {
            Pending::Acks => Some("waiting for acks"),
            Pending::Mutex => Some("waiting for text_mutex"),
            Pending::Rcu(_) => Some("waiting for an RCU grace period"),
            Pending::Run | Pending::Stores(..) | Pending::EarlyStores(_) => None,
        }
    }

    /// The batches its calls have completed.
    pub fn batches_done(&self) -> u64 {
        self.batches_done
    }

    /// Where its CPU is: the C function and line (or the service it is in).
    pub fn location(&self) -> String {
        match Service::at(self.regs.rip) {
            Some(s) => format!("{}() from {}", s.symbol(), self.compiled.locate(self.from.saturating_sub(1))),
            None if !self.entered => "between calls".into(),
            None => self.compiled.locate(self.regs.rip),
        }
    }

    /// The last instruction its CPU executed, if the last step ran one.
    pub fn last(&self) -> Option<&cpu_model::ExecutedInsn> {
        self.last.as_ref()
    }

    /// True if an interrupt can be delivered to its CPU now: inside a call, at an instruction
    /// boundary of its own code (not inside a service pokesim carries out, nor waiting in one)
    /// with `RFLAGS.IF = 1` ([`crate::interrupt`]).
    pub fn interruptible(&self) -> bool {
        self.entered
            && !self.done()
            && self.pending == Pending::Run
            && Service::at(self.regs.rip).is_none()
            && self.regs.rflags & crate::interrupt::IF != 0
    }

    /// Its CPU's instruction pointer.
    pub fn rip(&self) -> u64 {
        self.regs.rip
    }

    /// True once (and clears it) if its last step executed a serialising point of its CPU:
    /// `sync_core()`, `on_each_cpu(do_sync_core)` (which runs on the calling CPU too), the end
    /// of `text_poke()` (whose switch back from the `poking_mm` is a MOV to CR3); or, with
    /// `own_stores = "jump"`, a store of its own to the text through the same linear address.
    pub fn take_serialized(&mut self) -> bool {
        std::mem::take(&mut self.serialized)
    }

    /// True if its last text store was `text_poke_early()`'s `memcpy()` (not `text_poke()`).
    pub fn early_store(&self) -> bool {
        self.early_store
    }

    /// The kernel service it is in, if any.
    pub fn in_service(&self) -> Option<Service> {
        Service::at(self.regs.rip)
    }

    /// Its CPU's stack pointer (below it, its stack is dead).
    pub fn sp(&self) -> u64 {
        if self.entered {
            self.regs.sp()
        } else {
            client_stack(self.client).1
        }
    }

    /// Feeds everything its future depends on into `h`.
    pub fn hash_state<H: Hasher>(&self, h: &mut H) {
        // `from` and `last` only describe the past (for traces).
        (self.call, self.entered, self.batches_done, &self.regs, &self.pending, self.escaped).hash(h);
    }

    /// Runs one step on its CPU `cpu` against the shared kernel state.
    pub fn step(&mut self, kernel: &mut Kernel<'_>, cpu: &mut KernelCpu, mem: &KernelMemory) -> PatcherEffect {
        match self.resume(kernel, mem) {
            Some(effect) => effect,
            None => match self.run(kernel, cpu, mem) {
                Ok(Ran::Effect(e)) => e,
                Ok(Ran::Returned) => self.returned(),
                Err(message) => PatcherEffect::Fault(message.into()),
            },
        }
    }

    /// The next store of a `text_poke()`, or the end of a wait.
    fn resume(&mut self, kernel: &mut Kernel<'_>, mem: &KernelMemory) -> Option<PatcherEffect> {
        let effect = match &mut self.pending {
            Pending::Run => return None,
            Pending::Stores(stores, addr) => {
                self.early_store = false;
                let (a, bytes) = stores.pop_front().expect("a pending text_poke() has a store left");
                let epoch = kernel.text.store(a, &bytes);
                if !stores.is_empty() {
                    return Some(PatcherEffect::Store(epoch));
                }
                let addr = *addr;
                self.pending = Pending::Run;
                // The end of text_poke(): unuse_temporary_mm()'s switch back to the old mm is a
                // MOV to CR3, which serialises this CPU.
                self.serialized = true;
                return Some(self.service_return(mem, addr).map_or_else(fault, |()| PatcherEffect::Store(epoch)));
            }
            Pending::EarlyStores(stores) => {
                self.early_store = true;
                let (a, bytes) = stores.pop_front().expect("a pending memcpy() has a store left");
                let epoch = kernel.text.store(a, &bytes);
                self.serialized |= self.own_jump;
                if stores.is_empty() {
                    self.pending = Pending::Run;
                    return Some(self.service_return(mem, 0).map_or_else(fault, |()| PatcherEffect::Store(epoch)));
                }
                return Some(PatcherEffect::Store(epoch));
            }
            Pending::Acks => PatcherEffect::SyncDone,
            Pending::Mutex => {
                kernel.state.text_mutex = Some(self.client);
                PatcherEffect::Other
            }
            Pending::Rcu(_) => PatcherEffect::Other,
        };
        self.pending = Pending::Run;
        Some(self.service_return(mem, 0).map_or_else(fault, |()| effect))
    }

    fn service_return(&mut self, mem: &KernelMemory, value: u64) -> Result<(), String> {
        service::ret(&mut self.regs, mem, self.cpu, value)
    }

    /// Enters the next call: a fresh stack whose return address is [`RETURN_ADDR`].
    fn enter(&mut self, mem: &KernelMemory) {
        let c = self.calls[self.call];
        let sp = client_stack(self.client).1 - 16 - 8;
        // Its own stack, which no other CPU can address yet: straight to memory.
        mem.write_as(self.cpu, sp, &RETURN_ADDR.to_le_bytes(), true).expect("the client stack is mapped");
        let mut regs = Regs { rip: c.entry, rflags: 0x202, ..Regs::default() };
        regs.set(Reg::Rsp, sp);
        regs.set(Reg::Rdi, c.args[0]);
        regs.set(Reg::Rsi, c.args[1]);
        regs.set(Reg::Rdx, c.args[2]);
        self.regs = regs;
        self.entered = true;
        self.escaped = client_stack(self.client).1;
    }

    /// The call in progress returned.
    fn returned(&mut self) -> PatcherEffect {
        let arrays = self.calls[self.call].arrays;
        self.call += 1;
        self.entered = false;
        self.batches_done += arrays;
        if arrays > 0 {
            PatcherEffect::BatchDone
        } else {
            PatcherEffect::Other
        }
    }

    /// Runs instructions until a shared access, a service with an effect, or the return.
    fn run(&mut self, kernel: &mut Kernel<'_>, cpu: &mut KernelCpu, mem: &KernelMemory) -> Result<Ran, String> {
        if !self.entered {
            self.enter(mem);
        }
        mem.sync_text(cpu_model::Truth::now(&*kernel.text), kernel.text.current(), kernel.sites);
        self.last = None;
        cpu.set_regs(&self.regs).map_err(|e| e.to_string())?;
        let mut ran = Ok(Ran::Effect(PatcherEffect::Other));
        for _ in 0..PRIVATE_RUN_MAX {
            let rip = cpu.rip();
            if rip == RETURN_ADDR {
                ran = Ok(Ran::Returned);
                break;
            }
            if let Some(s) = Service::at(rip) {
                self.regs = cpu.regs().map_err(|e| e.to_string())?;
                self.from = mem.read_u64_as(self.cpu, self.regs.sp()).unwrap_or(0);
                if drains(s) && mem.buffered(self.cpu) > 0 {
                    // A draining service first empties the store buffer, a step of its own
                    // (other CPUs may act between the drain and the service's effect).
                    self.drained = mem.drain_all(self.cpu).len();
                    return Ok(Ran::Effect(PatcherEffect::Other));
                }
                match self.service(s, kernel, mem) {
                    Some(r) => return r.map(Ran::Effect),
                    None => {
                        cpu.set_regs(&self.regs).map_err(|e| e.to_string())?;
                        continue;
                    }
                }
            }
            let private = (client_stack(self.client).0, self.escaped);
            let step = cpu.step(private).map_err(|e| e.to_string())?;
            self.last = Some(step.insn);
            self.drained += step.drained;
            if let Some(f) = step.fault {
                self.regs = cpu.regs().map_err(|e| e.to_string())?;
                return Err(self.fault_message(rip, f));
            }
            if self.shared(&step, mem.model()) || self.enabled_interrupts(cpu, &step.insn)? {
                break;
            }
        }
        self.regs = cpu.regs().map_err(|e| e.to_string())?;
        if Service::at(self.regs.rip).is_some() {
            // The step ended on a call of a service: where it was called from.
            self.from = mem.read_u64_as(self.cpu, self.regs.sp()).unwrap_or(0);
        }
        ran
    }

    /// True if the step ends after `step`: one of its accesses can be observed by another
    /// CPU (the file's data, another client's stack, or the escaped part of its own) — under
    /// TSO only a load or a locked access (a plain store only joins the buffer, and its drain
    /// is an event of its own) — or it drained the store buffer. A stored pointer into its own
    /// stack escapes that frame (and the older ones above it).
    fn shared(&mut self, step: &KernelStep, model: MemoryModel) -> bool {
        let (low, top) = client_stack(self.client);
        let accesses = &step.accesses;
        let mut shared = accesses.overflow || step.drained > 0;
        let locked = step.ordering == cpu_model::Ordering::Locked;
        for a in accesses.iter() {
            if a.write && a.size == 8 && (low..top).contains(&a.value) {
                self.escaped = self.escaped.min(a.value);
            }
            let own = (low..top).contains(&a.addr);
            let stacks = (KSTACK_BASE..KEXC_BASE).contains(&a.addr);
            let observable = in_file_data(a.addr) || (stacks && !own) || (own && a.addr >= self.escaped);
            shared |= observable && (model == MemoryModel::Sc || !a.write || locked);
        }
        shared
    }

    /// With interrupts on its CPU: true if `insn` (just executed) was a `sti` or `popf` that left
    /// IF set — an interrupt may be delivered right after it ([`crate::interrupt`]).
    fn enabled_interrupts(&self, cpu: &KernelCpu, insn: &cpu_model::ExecutedInsn) -> Result<bool, String> {
        use iced_x86::Code;
        if !self.irq || !matches!(insn.code, Code::Sti | Code::Popfq | Code::Popfw) {
            return Ok(false);
        }
        Ok(cpu.regs().map_err(|e| e.to_string())?.rflags & crate::interrupt::IF != 0)
    }

    /// Stores its CPU's buffer drained during its last step (for traces); reset by the reader.
    pub fn take_drained(&mut self) -> usize {
        std::mem::take(&mut self.drained)
    }

    fn fault_message(&self, rip: u64, f: KernelFault) -> String {
        format!("{f} in {} [patching client {}]", self.compiled.locate(rip), self.client)
    }

    /// Carries out service `s` called at `self.regs`; `None` if it returned at once and the
    /// run goes on.
    fn service(
        &mut self,
        s: Service,
        kernel: &mut Kernel<'_>,
        mem: &KernelMemory,
    ) -> Option<Result<PatcherEffect, String>> {
        self.serialized |= s == Service::SyncCore;
        match service::common(s, &mut self.regs, mem, self.cpu, self.nr_cpu_ids) {
            Common::Returned => return None,
            Common::Fault(m) => return Some(Err(format!("{m} [patching client {}]", self.client))),
            Common::Other => {}
        }
        let [a0, a1, a2] = service::args(&self.regs);
        let caller = self.caller(mem);
        let effect = match s {
            Service::TextPoke | Service::TextMemcpy => return Some(self.text_store(s, kernel, mem, [a0, a1, a2])),
            Service::OnEachCpu => return Some(Ok(self.on_each_cpu(kernel, mem, (a0, a2), &caller))),
            Service::MutexLock | Service::MutexUnlock | Service::LockdepAssertHeld
                if Some(a0) != self.compiled.image.symbol("text_mutex") =>
            {
                let what = format!("{}({a0:#x}) in {caller}: pokesim models only &text_mutex", s.symbol());
                return Some(Ok(PatcherEffect::Refused(what)));
            }
            Service::MutexLock if kernel.state.text_mutex.is_some() => {
                self.pending = Pending::Mutex;
                return Some(Ok(PatcherEffect::Other));
            }
            Service::MutexLock => {
                kernel.state.text_mutex = Some(self.client);
                PatcherEffect::Other
            }
            Service::MutexUnlock if kernel.state.text_mutex != Some(self.client) => {
                return Some(Err(format!("mutex_unlock(&text_mutex) in {caller}: not held by this client")))
            }
            Service::MutexUnlock => {
                kernel.state.text_mutex = None;
                PatcherEffect::Other
            }
            Service::LockdepAssertHeld if kernel.state.text_mutex != Some(self.client) => {
                return Some(Err(service::report(
                    mem,
                    self.cpu,
                    "lockdep_assert_held(&text_mutex) failed",
                    [a1, a2, 0],
                )))
            }
            Service::LockdepAssertHeld => return self.service_return(mem, 0).err().map(Err),
            Service::SynchronizeRcu => {
                let readers = kernel.state.rcu_readers.iter().enumerate();
                let w: Vec<(usize, u64)> = readers.filter(|(_, &s)| s != 0).map(|(c, &s)| (c, s)).collect();
                if !w.is_empty() {
                    self.pending = Pending::Rcu(w);
                    return Some(Ok(PatcherEffect::Other));
                }
                PatcherEffect::Other
            }
            _ => unreachable!("common services are handled above"),
        };
        Some(self.service_return(mem, 0).map(|()| effect))
    }

    /// `on_each_cpu(func, info, wait)` with `(func, wait)`: the broadcast of `do_sync_core()`
    /// that waits for every CPU (`text_poke_sync()`), which also runs on the calling CPU;
    /// anything else is refused.
    fn on_each_cpu(
        &mut self,
        kernel: &mut Kernel<'_>,
        mem: &KernelMemory,
        (func, wait): (u64, u64),
        caller: &str,
    ) -> PatcherEffect {
        if !service::is_do_sync_core(mem, func) {
            return PatcherEffect::Refused(format!(
                "on_each_cpu({func:#x}) in {caller}: pokesim runs only do_sync_core() (a function whose body is \
                 sync_core()) on the other CPUs"
            ));
        }
        if wait == 0 {
            return PatcherEffect::Refused(format!(
                "on_each_cpu(.., wait = 0) in {caller}: pokesim models only the waiting broadcast of \
                 text_poke_sync() (wait = 1)"
            ));
        }
        self.serialized = true; // do_sync_core() runs on the calling CPU too
        kernel.ipi.broadcast();
        self.pending = Pending::Acks;
        PatcherEffect::Broadcast
    }

    /// `text_poke(addr, opcode, len)`: the bytes, split by the store granularity; the first
    /// store now, the others one per step.
    fn text_poke(
        &mut self,
        kernel: &mut Kernel<'_>,
        mem: &KernelMemory,
        addr: u64,
        opcode: u64,
        len: u64,
    ) -> Result<PatcherEffect, String> {
        let mut stores = self.text_stores(kernel, mem, "text_poke", [addr, opcode, len])?;
        let (a, first) = stores.pop_front().expect("at least one store");
        self.early_store = false;
        let epoch = kernel.text.store(a, &first);
        if stores.is_empty() {
            // The end of text_poke(): the MOV to CR3 back from the poking mm serialises.
            self.serialized = true;
            self.service_return(mem, addr)?;
        } else {
            self.pending = Pending::Stores(stores, addr);
        }
        Ok(PatcherEffect::Store(epoch))
    }

    /// `text_poke(addr, opcode, len)` or `text_poke_early()`'s `memcpy()` to the text.
    fn text_store(
        &mut self,
        s: Service,
        kernel: &mut Kernel<'_>,
        mem: &KernelMemory,
        a: [u64; 3],
    ) -> Result<PatcherEffect, String> {
        match s {
            Service::TextMemcpy => self.text_memcpy(kernel, mem, a[0], a[1], a[2]),
            _ => self.text_poke(kernel, mem, a[0], a[1], a[2]),
        }
    }

    /// `text_poke_early()`'s `memcpy(addr, opcode, len)` ([`Service::TextMemcpy`]): the bytes
    /// written through the text's own address, split by the store granularity, the first store
    /// now; not serialising (with `own_stores = "jump"` each store reaches this CPU's fetches
    /// at once).
    fn text_memcpy(
        &mut self,
        kernel: &mut Kernel<'_>,
        mem: &KernelMemory,
        addr: u64,
        opcode: u64,
        len: u64,
    ) -> Result<PatcherEffect, String> {
        let stores = self.text_stores(kernel, mem, "memcpy", [addr, opcode, len])?;
        self.pending = Pending::EarlyStores(stores);
        match self.resume(kernel, mem) {
            Some(effect) => Ok(effect),
            None => Err("memcpy() to the text issued no store".into()),
        }
    }

    /// The text stores of `what(addr, opcode, len)` (`text_poke` or `text_poke_early()`'s
    /// `memcpy`): the bytes at `opcode` as this CPU reads them, split by the store granularity;
    /// an error naming the caller if the buffer, the length or the range is bad.
    fn text_stores(
        &self,
        kernel: &Kernel<'_>,
        mem: &KernelMemory,
        what: &str,
        [addr, opcode, len]: [u64; 3],
    ) -> Result<VecDeque<(u64, Vec<u8>)>, String> {
        let caller = self.caller(mem);
        let mut bytes = vec![0u8; len as usize];
        if len == 0 || len > 16 || mem.read_as(self.cpu, opcode, &mut bytes).is_none() {
            return Err(format!("{what}({addr:#x}, {opcode:#x}, {len}) in {caller}: bad source buffer or length"));
        }
        if !kernel.text.contains(addr, len) {
            return Err(format!("{what}({addr:#x}, .., {len}) in {caller}: outside the text"));
        }
        let split = self.granularity.split(addr, len).into_iter();
        Ok(split.map(|(a, l)| (a, bytes[(a - addr) as usize..(a - addr + l) as usize].to_vec())).collect())
    }

    /// Where the service was called from (the return address's line).
    fn caller(&self, mem: &KernelMemory) -> String {
        let ret = mem.read_u64_as(self.cpu, self.regs.sp()).unwrap_or(0);
        self.compiled.locate(ret.saturating_sub(1))
    }
}

/// True if service `s` drains the caller's store buffer first (DESIGN.md §2.16): the kernel's
/// `mutex_lock()`/`mutex_unlock()` are locked cmpxchgs, `synchronize_rcu()` a full barrier,
/// `text_poke()` switches CR3 (serialising) before its text store, `text_poke_early()`'s
/// `memcpy()` stores the text in the same FIFO after the earlier data stores (x86 shows a CPU's
/// stores in order), `sync_core()` is serialising (IRET to self, or SERIALIZE), and
/// `on_each_cpu()` queues each target's `call_single_data` with `llist_add()` (a locked
/// cmpxchg) before the IPI.
fn drains(s: Service) -> bool {
    matches!(
        s,
        Service::TextPoke
            | Service::TextMemcpy
            | Service::SyncCore
            | Service::OnEachCpu
            | Service::MutexLock
            | Service::MutexUnlock
            | Service::SynchronizeRcu
    )
}

fn fault(message: String) -> PatcherEffect {
    PatcherEffect::Fault(message.into())
}

/// The compiled clients' calls (the workload's first) and their arguments' bytes ([`calls`]).
pub type Calls = (Vec<Vec<CCall>>, Vec<u8>);

/// The calls of each patching client for its script of a plan (each action with the patch
/// arrays it completes), with every argument laid out at [`crate::kernel_image::KARGS_BASE`]:
/// returns each client's calls and the argument bytes.
pub fn calls(compiled: &Compiled, scripts: &[Vec<(crate::PatchAction, u64)>]) -> Result<Calls, String> {
    let base = crate::kernel_image::KARGS_BASE;
    let mut args: Vec<u8> = Vec::new();
    let mut clients = Vec::with_capacity(scripts.len());
    for script in scripts {
        let mut calls = Vec::with_capacity(script.len());
        for (action, arrays) in script {
            let at = base + args.len() as u64;
            let (entry, rdi_rsi_rdx) = call_of(compiled, action, at, &mut args)?;
            args.resize(args.len().next_multiple_of(64), 0);
            calls.push(CCall { entry, args: rdi_rsi_rdx, arrays: *arrays });
        }
        clients.push(calls);
    }
    if args.len() as u64 > crate::kernel_image::KARGS_SIZE {
        return Err(format!(
            "the workload's batches need {} bytes of arguments (at most {})",
            args.len(),
            crate::kernel_image::KARGS_SIZE
        ));
    }
    Ok((clients, args))
}

/// The entry point that carries out `action` and its arguments, whose bytes go at `at`
/// (appended to `args`).
fn call_of(
    compiled: &Compiled,
    action: &crate::PatchAction,
    at: u64,
    args: &mut Vec<u8>,
) -> Result<(u64, [u64; 3]), String> {
    use crate::PatchAction;
    let e = &compiled.entries;
    let need = |entry: Option<u64>, what: &str, name: &str| {
        entry.ok_or_else(|| format!("the workload {what} but `{name}` is not defined"))
    };
    Ok(match action {
        PatchAction::Batch(reqs) => {
            reqs.iter().for_each(|r| args.extend(poke_record(r)));
            (e.patch, [at, reqs.len() as u64, 0])
        }
        PatchAction::Poke { addr, bytes } => {
            args.extend(bytes);
            (need(e.poke, "pokes plainly", "pokesim_poke")?, [*addr, at, bytes.len() as u64])
        }
        PatchAction::Sync => (need(e.sync, "syncs", "pokesim_sync")?, [0; 3]),
        PatchAction::Early { addr, bytes } => {
            args.extend(bytes);
            (need(e.early, "patches at boot (text_poke_early())", "pokesim_early")?, [*addr, at, bytes.len() as u64])
        }
        PatchAction::Queue(r) => {
            args.extend(poke_record(r));
            let what = "queues sites one text_mutex section at a time (text_poke_queue(), smp_text_poke_batch_add())";
            (need(e.batch_add, what, "pokesim_batch_add")?, [at, 0, 0])
        }
        PatchAction::Apply => {
            let what = "applies queued sites (text_poke_finish(), smp_text_poke_batch_finish())";
            (need(e.batch_finish, what, "pokesim_batch_finish")?, [0; 3])
        }
        PatchAction::Single(r) => {
            args.extend(poke_record(r));
            let what = "patches single sites (text_poke_bp(), smp_text_poke_single())";
            (need(e.single, what, "pokesim_single")?, [at, 0, 0])
        }
    })
}

/// `struct pokesim_poke` (c/include/pokesim.h) of one request.
fn poke_record(r: &crate::PokeRequest) -> [u8; 56] {
    let mut b = [0u8; 56];
    b[0..8].copy_from_slice(&r.addr.to_le_bytes());
    b[8..12].copy_from_slice(&(r.new.len() as u32).to_le_bytes());
    let emulate = r.emulate.as_deref().unwrap_or(&[]);
    b[12..16].copy_from_slice(&(emulate.len() as u32).to_le_bytes());
    let detour = r.detour.unwrap_or(r.addr + r.new.len() as u64);
    b[16..24].copy_from_slice(&detour.to_le_bytes());
    b[24..24 + r.new.len().min(16)].copy_from_slice(&r.new[..r.new.len().min(16)]);
    b[40..40 + emulate.len().min(16)].copy_from_slice(&emulate[..emulate.len().min(16)]);
    b
}

/// The operations a compiled client's trace names: none (its steps are C lines).
pub const NO_PROGRAM: &[Op] = &[];
