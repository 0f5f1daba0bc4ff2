//! One driver for the actors of a tick (DESIGN.md §2.6, "How to add a second implementation"):
//! what a patching client's step and an INT3 handler's micro-step do to the shared kernel
//! state, written once for the simulator ([`crate::machine`]) and for the hardware run (crate
//! `hw`).
//!
//! The actors sit behind two traits: [`PatchingClient`] — a caller of `text_poke_bp_batch()` /
//! `smp_text_poke_batch_finish()` (arch/x86/kernel/alternative.c), or of a kprobe's
//! `arm_kprobe()`/`disarm_kprobe()` — and [`Int3Handler`] — one activation of `do_int3()`'s
//! chain (`poke_int3_handler()` / `smp_text_poke_int3_handler()`, then
//! `kprobe_int3_handler()`). The Rust step machines ([`Patcher`], [`Handler`]) implement them.
//! The machine and `hw` hold the actors as [`Client`] and [`Activation`]: one enum of
//! implementations each, a row per implementation (`each_client!`/`each_activation!`
//! delegate every trait method to the row's type). Enums, not `Box<dyn …>`: state-space search
//! clones and hashes the actors on its hot path, and the traits require `Clone` and a
//! `hash_state` for it.
//!
//! The driver says what happened — a [`PatcherEffect`] or an [`Applied`] — and each caller
//! turns that into its own record: the simulator into trace records and oracle calls, `hw` into
//! tallies.

use std::hash::Hasher;

use cpu_model::{KernelCpu, KernelMemory, Regs, SharedRegion};

use crate::compiled::activation::CHandler;
use crate::compiled::client::{CCall, CClient};
use crate::config::RunConfig;
use crate::emulate::Emulation;
use crate::footprint::Footprint;
use crate::handler::{Handler, HandlerCtx, HandlerPc, HandlerStep};
use crate::ipi::Ipi;
use crate::oracle::{handler_fault, ViolationKind};
use crate::patcher::{Patcher, PatcherEffect};
use crate::patching::PatchState;
use crate::plan::Plan;
use crate::program::Op;
use crate::protocol::Mutant;
use crate::text::TextMemory;

/// The kernel state the actors share: the patching state (`bp_desc`, the vectors, the
/// reference counts, `text_mutex`, the kprobes), the text as the patcher last wrote it, the
/// sync IPI, and the data region (the guests' stacks).
pub struct Kernel<'a> {
    /// The patching state.
    pub state: &'a mut PatchState,
    /// The text as the patcher last wrote it.
    pub text: &'a mut TextMemory,
    /// The sync IPI (`text_poke_sync()`'s `on_each_cpu()`).
    pub ipi: &'a mut Ipi,
    /// The data region (the stack an emulated CALL pushes to).
    pub data: &'a SharedRegion,
    /// The CPUs and memory of a protocol compiled from C (`None` for the Rust model).
    pub c: Option<CKernel<'a>>,
    /// The bytes a store can ever write, `(address, length)`.
    pub sites: &'a [(u64, u64)],
}

/// What a patching client compiled from C runs on: one [`KernelCpu`] per client, and the
/// kernel memory they share with the vCPUs.
pub struct CKernel<'a> {
    /// Client `k`'s CPU is `cpus[k]`.
    pub cpus: &'a mut [KernelCpu],
    /// The kernel code and data.
    pub mem: &'a KernelMemory,
}

/// A patching client: one CPU running the patching code, one operation (or one store of it)
/// per step. The simulator schedules its steps with the guests'; `hw` runs them on a host
/// thread.
pub trait PatchingClient: Clone + std::fmt::Debug {
    /// The patching client it is (0: the workload's).
    fn client(&self) -> usize;
    /// True when every operation has completed.
    fn done(&self) -> bool;
    /// True if its next step can run (not done, not blocked on a wait or on `text_mutex`).
    fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool;
    /// The operation in progress (for the trace and the phase), `None` once done.
    fn current(&self) -> Option<&Op>;
    /// True if the next step issues the current operation (nothing of it pending).
    fn at_op_start(&self) -> bool;
    /// What it waits for, if it waits.
    fn waiting(&self) -> Option<&'static str>;
    /// True while it waits for a reference count to drain.
    fn waiting_for_refs(&self) -> bool;
    /// The batches it has returned from (part of the state a search restores).
    fn batches_done(&self) -> u64;
    /// Its whole program, as the kernel statements it runs.
    fn program(&self) -> &[Op];
    /// Runs one step against the shared kernel state.
    fn step(&mut self, kernel: &mut Kernel<'_>) -> PatcherEffect;
    /// Feeds everything its future depends on into `h`.
    fn hash_state<H: Hasher>(&self, h: &mut H);
    /// What it may read and write of the shared memory before vCPU `cpu` next acknowledges a
    /// sync IPI ([`crate::footprint`]; partial-order reduction).
    fn upcoming(&self, state: &PatchState, ipi: &Ipi, cpu: usize) -> Footprint;
}

/// One activation of the INT3 handler chain on one vCPU, one micro-step at a time.
pub trait Int3Handler: Clone + std::fmt::Debug {
    /// The trapping INT3's address.
    fn ip(&self) -> u64;
    /// The next micro-step (named in the trace); `None` for compiled code (whose steps are
    /// source lines).
    fn pc(&self) -> Option<HandlerPc>;
    /// The trapped register file and the qword at `[rsp]` at entry (the emulation oracle's
    /// starting state).
    fn trapped(&self) -> (Regs, u64);
    /// Runs one micro-step.
    fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep;
    /// Records that an emulation was applied.
    fn emulated(&mut self, emulation: &Emulation);
    /// Drops the reference the activation holds, ending it early (a fault or a decline).
    fn abandon(&mut self, state: &mut PatchState);
    /// Feeds everything its future depends on but the vCPU index into `h`, its saved
    /// registers as `rel` presents them.
    fn hash_state<H: Hasher>(&self, h: &mut H, rel: impl Fn(&Regs) -> Regs);
}

impl PatchingClient for Patcher {
    fn client(&self) -> usize {
        Patcher::client(self)
    }
    fn done(&self) -> bool {
        Patcher::done(self)
    }
    fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        Patcher::enabled(self, ipi, state)
    }
    fn current(&self) -> Option<&Op> {
        Patcher::current(self)
    }
    fn at_op_start(&self) -> bool {
        Patcher::at_op_start(self)
    }
    fn waiting(&self) -> Option<&'static str> {
        Patcher::waiting(self)
    }
    fn waiting_for_refs(&self) -> bool {
        Patcher::waiting_for_refs(self)
    }
    fn upcoming(&self, state: &PatchState, ipi: &Ipi, cpu: usize) -> Footprint {
        Patcher::upcoming(self, state, ipi, cpu)
    }
    fn batches_done(&self) -> u64 {
        Patcher::batches_done(self)
    }
    fn program(&self) -> &[Op] {
        Patcher::program(self)
    }
    fn step(&mut self, kernel: &mut Kernel<'_>) -> PatcherEffect {
        Patcher::step(self, kernel.state, kernel.text, kernel.ipi)
    }
    fn hash_state<H: Hasher>(&self, h: &mut H) {
        Patcher::hash_state(self, h)
    }
}

impl Int3Handler for Handler {
    fn ip(&self) -> u64 {
        Handler::ip(self)
    }
    fn pc(&self) -> Option<HandlerPc> {
        Some(Handler::pc(self))
    }
    fn trapped(&self) -> (Regs, u64) {
        (self.regs, self.stack_top)
    }
    fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        Handler::step(self, ctx)
    }
    fn emulated(&mut self, emulation: &Emulation) {
        Handler::emulated(self, emulation)
    }
    fn abandon(&mut self, state: &mut PatchState) {
        Handler::abandon(self, state)
    }
    fn hash_state<H: Hasher>(&self, h: &mut H, rel: impl Fn(&Regs) -> Regs) {
        Handler::hash_state(self, h, rel)
    }
}

impl PatchingClient for CClient {
    fn client(&self) -> usize {
        CClient::client(self)
    }
    fn done(&self) -> bool {
        CClient::done(self)
    }
    fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        CClient::enabled(self, ipi, state)
    }
    /// Compiled code has no model operations: [`Op::Compiled`] until it is done (its position
    /// is a source line, [`CClient::location`]).
    fn current(&self) -> Option<&Op> {
        (!self.done()).then_some(&Op::Compiled)
    }
    fn at_op_start(&self) -> bool {
        false
    }
    fn waiting(&self) -> Option<&'static str> {
        CClient::waiting(self)
    }
    /// A compiled client waits for reference counts by spinning on them: every load is a step.
    fn waiting_for_refs(&self) -> bool {
        false
    }
    /// Compiled code's accesses are not modelled: it may touch anything.
    fn upcoming(&self, _: &PatchState, _: &Ipi, _: usize) -> Footprint {
        Footprint::ALL
    }
    fn batches_done(&self) -> u64 {
        CClient::batches_done(self)
    }
    fn program(&self) -> &[Op] {
        crate::compiled::client::NO_PROGRAM
    }
    fn step(&mut self, kernel: &mut Kernel<'_>) -> PatcherEffect {
        let c = kernel.c.take().expect("a compiled client steps with its CPU");
        let effect = CClient::step(self, kernel, &mut c.cpus[self.client()], c.mem);
        kernel.c = Some(c);
        effect
    }
    fn hash_state<H: Hasher>(&self, h: &mut H) {
        CClient::hash_state(self, h)
    }
}

impl Int3Handler for CHandler {
    fn ip(&self) -> u64 {
        CHandler::ip(self)
    }
    /// The built-in chain's micro-step once the file's handler declined; `None` in the file.
    fn pc(&self) -> Option<HandlerPc> {
        self.chain().map(Handler::pc)
    }
    fn trapped(&self) -> (Regs, u64) {
        CHandler::trapped(self)
    }
    fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        CHandler::step(self, ctx)
    }
    /// The compiled handler writes its emulation itself; the built-in chain after it is told.
    fn emulated(&mut self, emulation: &Emulation) {
        if let Some(chain) = self.chain_mut() {
            chain.emulated(emulation);
        }
    }
    /// The compiled handler's references live in its own data (a fault ends the run); the
    /// built-in chain after it drops its own.
    fn abandon(&mut self, state: &mut PatchState) {
        if let Some(chain) = self.chain_mut() {
            chain.abandon(state);
        }
    }
    fn hash_state<H: Hasher>(&self, h: &mut H, rel: impl Fn(&Regs) -> Regs) {
        CHandler::hash_state(self, h, rel)
    }
}

/// A boxed client is the client (a large row is boxed in [`Client`]).
impl<T: PatchingClient> PatchingClient for Box<T> {
    fn client(&self) -> usize {
        (**self).client()
    }
    fn done(&self) -> bool {
        (**self).done()
    }
    fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        (**self).enabled(ipi, state)
    }
    fn current(&self) -> Option<&Op> {
        (**self).current()
    }
    fn at_op_start(&self) -> bool {
        (**self).at_op_start()
    }
    fn waiting(&self) -> Option<&'static str> {
        (**self).waiting()
    }
    fn waiting_for_refs(&self) -> bool {
        (**self).waiting_for_refs()
    }
    fn upcoming(&self, state: &PatchState, ipi: &Ipi, cpu: usize) -> Footprint {
        (**self).upcoming(state, ipi, cpu)
    }
    fn batches_done(&self) -> u64 {
        (**self).batches_done()
    }
    fn program(&self) -> &[Op] {
        (**self).program()
    }
    fn step(&mut self, kernel: &mut Kernel<'_>) -> PatcherEffect {
        (**self).step(kernel)
    }
    fn hash_state<H: Hasher>(&self, h: &mut H) {
        (**self).hash_state(h)
    }
}

/// The implementations of a patching client: one row each.
#[derive(Clone, Debug)]
pub enum Client {
    /// The Rust step machine of the version's program ([`crate::patcher`]).
    Model(Patcher),
    /// The file's caller, compiled from C, on a CPU of its own ([`crate::compiled::client`]);
    /// boxed: it is larger than the model's row, which the search clones far more often.
    C(Box<CClient>),
}

/// The implementations of an INT3 handler activation: one row each.
#[derive(Clone, Debug)]
pub enum Activation {
    /// The Rust step machine of the version's handler ([`crate::handler`]).
    Model(Handler),
    /// The file's handler, compiled from C, on the trapping vCPU ([`crate::compiled::activation`]).
    C(CHandler),
}

/// `each_client!(client, c => expr)`: `expr` with `c` bound to the implementation inside
/// `client` (a [`Client`]) — the one place that lists them.
macro_rules! each_client {
    ($client:expr, $c:ident => $e:expr) => {
        match $client {
            Client::Model($c) => $e,
            Client::C($c) => $e,
        }
    };
}

/// `each_activation!(activation, h => expr)`: as `each_client!` for an [`Activation`].
macro_rules! each_activation {
    ($activation:expr, $h:ident => $e:expr) => {
        match $activation {
            Activation::Model($h) => $e,
            Activation::C($h) => $e,
        }
    };
}

impl PatchingClient for Client {
    fn client(&self) -> usize {
        each_client!(self, c => c.client())
    }
    fn done(&self) -> bool {
        each_client!(self, c => PatchingClient::done(c))
    }
    fn enabled(&self, ipi: &Ipi, state: &PatchState) -> bool {
        each_client!(self, c => PatchingClient::enabled(c, ipi, state))
    }
    fn current(&self) -> Option<&Op> {
        each_client!(self, c => PatchingClient::current(c))
    }
    fn at_op_start(&self) -> bool {
        each_client!(self, c => PatchingClient::at_op_start(c))
    }
    fn waiting(&self) -> Option<&'static str> {
        each_client!(self, c => PatchingClient::waiting(c))
    }
    fn waiting_for_refs(&self) -> bool {
        each_client!(self, c => PatchingClient::waiting_for_refs(c))
    }
    fn upcoming(&self, state: &PatchState, ipi: &Ipi, cpu: usize) -> Footprint {
        each_client!(self, c => PatchingClient::upcoming(c, state, ipi, cpu))
    }
    fn batches_done(&self) -> u64 {
        each_client!(self, c => PatchingClient::batches_done(c))
    }
    fn program(&self) -> &[Op] {
        each_client!(self, c => PatchingClient::program(c))
    }
    fn step(&mut self, kernel: &mut Kernel<'_>) -> PatcherEffect {
        each_client!(self, c => PatchingClient::step(c, kernel))
    }
    fn hash_state<H: Hasher>(&self, h: &mut H) {
        each_client!(self, c => PatchingClient::hash_state(c, h))
    }
}

impl Int3Handler for Activation {
    fn ip(&self) -> u64 {
        each_activation!(self, a => Int3Handler::ip(a))
    }
    fn pc(&self) -> Option<HandlerPc> {
        each_activation!(self, a => Int3Handler::pc(a))
    }
    fn trapped(&self) -> (Regs, u64) {
        each_activation!(self, a => Int3Handler::trapped(a))
    }
    fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        each_activation!(self, a => Int3Handler::step(a, ctx))
    }
    fn emulated(&mut self, emulation: &Emulation) {
        each_activation!(self, a => Int3Handler::emulated(a, emulation))
    }
    fn abandon(&mut self, state: &mut PatchState) {
        each_activation!(self, a => Int3Handler::abandon(a, state))
    }
    fn hash_state<H: Hasher>(&self, h: &mut H, rel: impl Fn(&Regs) -> Regs) {
        each_activation!(self, a => Int3Handler::hash_state(a, h, rel))
    }
}

impl Plan {
    /// The run's patching clients, in [`crate::event::Event::Patcher`] order: the workload's
    /// first, then one per kprobe that arms and disarms itself (or, compiled from C, one per
    /// further caller) — each at the start of its program, splitting pokes by the fetch
    /// model's store granularity. Compiled client `k` is CPU `cpus + k` of `nr_cpu_ids`
    /// = `cpus` + the number of clients.
    pub fn clients(&self) -> Vec<Client> {
        let granularity = self.config.fetch.stores;
        if let (Some(compiled), Some((calls, _))) = (&self.config.compiled, &self.c_calls) {
            let (cpus, nr_cpu_ids) = (self.config.cpus, self.config.cpus + calls.len());
            let client = |(k, calls): (usize, &Vec<CCall>)| {
                let compiled = std::sync::Arc::clone(compiled);
                Client::C(Box::new(CClient::new(k, compiled, calls.clone(), granularity, cpus + k, nr_cpu_ids)))
            };
            return calls.iter().enumerate().map(client).collect();
        }
        let programs = self.programs.iter().enumerate();
        let model = |(k, program): (usize, &Vec<Op>)| Patcher::new(k, program.clone(), self.plain.clone(), granularity);
        programs.map(model).map(Client::Model).collect()
    }
}

/// B6 ([`Mutant::InstrumentedHandler`]): the patched text the handler calls into — the first
/// site of the run — if the run has that mutant.
fn instrumented_site(config: &RunConfig, state: &PatchState) -> Option<u64> {
    if !config.mutants.contains(&Mutant::InstrumentedHandler) {
        return None;
    }
    Some(state.arrays.first()?.locs.first()?.addr)
}

/// What a handler micro-step may touch, from the run's configuration: the version's handler
/// and `text_poke_loc_init` rules, the run's mutants and `CONFIG_KPROBES`; `shown` says which
/// byte the vCPU's instruction view shows at an address (for B6's instrumented call).
pub fn handler_ctx<'a>(
    config: &'a RunConfig,
    state: &'a mut PatchState,
    data: &'a SharedRegion,
    text: &'a TextMemory,
    shown: impl FnOnce(u64) -> u8,
) -> HandlerCtx<'a> {
    let instrumented = instrumented_site(config, state).map(|site| (site, shown(site)));
    HandlerCtx {
        kind: config.protocol.handler(),
        rules: config.protocol.loc_rules(),
        mutants: &config.mutants,
        state,
        data,
        kprobes: config.kernel.kprobes,
        text,
        recovers_vanished_int3: config.protocol.kprobe_recovers_vanished_int3(),
        instrumented,
        c: None,
    }
}

/// A trap on vCPU `cpu`: `do_int3()` enters its RCU read-side section (`rcu_read_lock()`)
/// and the handler chain starts with the trapped registers.
/// The activation is the run's implementation: the compiled file's handler with `compiled`,
/// else the Rust model's.
pub fn enter(cpu: usize, regs: Regs, state: &mut PatchState, data: &SharedRegion, compiled: bool) -> Activation {
    let stack_top = data.read_u64(regs.sp()).unwrap_or(0);
    state.rcu_read_lock(cpu);
    match compiled {
        true => Activation::C(CHandler::new(cpu, regs, stack_top)),
        false => Activation::Model(Handler::new(cpu, regs, stack_top)),
    }
}

/// The rest of `do_int3()`'s chain on vCPU `cpu` after a handler that ran outside the driver
/// declined the trap: the hardware run calls a compiled file's handler natively, and on a 0
/// goes on here — `kprobe_int3_handler()` (with its vanished-INT3 retry up to 6.0), then
/// `die()` — as [`crate::compiled::activation::CHandler`] does in the simulator. Enters the
/// RCU read-side section as [`enter`] does (the activation's end leaves it, [`apply`]).
pub fn enter_chain(cpu: usize, regs: Regs, state: &mut PatchState, data: &SharedRegion) -> Activation {
    let stack_top = data.read_u64(regs.sp()).unwrap_or(0);
    state.rcu_read_lock(cpu);
    Activation::Model(Handler::after_patching_handler(cpu, regs, stack_top))
}

/// The push of an emulated CALL that would land outside the data region: the handler's
/// write to the interrupted stack faults. The simulator's emulation oracle reports it before
/// anything is applied; [`apply`] ends the activation with it.
pub(crate) fn push_fault(data: &SharedRegion, emulation: &Emulation) -> Option<String> {
    let (addr, _) = emulation.push.filter(|&(a, _)| data.read_u64(a).is_none())?;
    Some(handler_fault::push_outside_stack(addr))
}

/// What applying a handler micro-step did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Applied {
    /// The activation goes on.
    Continue,
    /// `kprobe_int3_handler()` found the INT3's kprobe; the activation goes on.
    KprobeHit,
    /// An emulation was applied (the push written, the registers taken); the activation
    /// goes on to its IRET.
    Emulated,
    /// IRET with these registers: the activation is over (`rcu_read_unlock()` done); the
    /// caller resumes the vCPU there (IRET serialises).
    Iret(Regs),
    /// Every handler declined the trap (`die("int3")`): the activation is over, abandoned.
    Declined,
    /// The handler faulted (or its emulated push did): the activation is over, abandoned.
    Fault {
        /// Which violation it is.
        kind: ViolationKind,
        /// What the handler did.
        message: String,
    },
}

impl Applied {
    /// True when the activation is over.
    pub fn ended(&self) -> bool {
        matches!(self, Applied::Iret(_) | Applied::Declined | Applied::Fault { .. })
    }
}

/// Carries out `step` of vCPU `cpu`'s `handler` on the shared state: an emulation is applied (its push written, or the activation ends with the push's fault), an
/// IRET leaves the RCU read-side section, and a decline or a fault abandons the activation
/// (its reference dropped) and leaves the section.
pub fn apply<H: Int3Handler>(
    cpu: usize,
    handler: &mut H,
    step: HandlerStep,
    state: &mut PatchState,
    data: &SharedRegion,
) -> Applied {
    let applied = match step {
        HandlerStep::Continue => return Applied::Continue,
        HandlerStep::KprobeHit => return Applied::KprobeHit,
        HandlerStep::Emulated { emulation, .. } | HandlerStep::KprobeEmulated { emulation, .. } => {
            match emulation.push.filter(|&(addr, value)| data.write_u64(addr, value).is_none()) {
                Some((addr, _)) => Applied::Fault {
                    kind: ViolationKind::HandlerFault,
                    message: handler_fault::push_outside_stack(addr),
                },
                None => {
                    handler.emulated(&emulation);
                    return Applied::Emulated;
                }
            }
        }
        HandlerStep::Iret(regs) | HandlerStep::Claimed { emulation: Emulation { regs, .. }, .. } => {
            state.rcu_read_unlock(cpu);
            return Applied::Iret(regs);
        }
        HandlerStep::Declined => Applied::Declined,
        HandlerStep::Fault { kind, message } => Applied::Fault { kind, message },
    };
    handler.abandon(state);
    state.rcu_read_unlock(cpu);
    applied
}
