//! The machine and its run loop (DESIGN.md §2.1–§2.7).
//!
//! A tick is five named stages: `Machine::collect_enabled` lists the enabled events in
//! canonical order ([`crate::event`]); the scheduler picks one through the decision source;
//! `Machine::dispatch` runs it and says what happened (an `Effect`); `Machine::judge`
//! asks the oracles ([`crate::oracle`]) about it; `Machine::apply` carries out what follows
//! (a trap enters the handler, an emulation is applied, an IRET resumes the guest); and the
//! tick is recorded. The run ends at the first violation, when the tick budget is spent
//! (budget exhausted: no verdict), or when the patcher has finished and every vCPU has run its
//! drain steps (during which any old image of a site is a liveness violation).
//!
//! The machine's state is one value that can be saved, restored and hashed ([`state`]), so
//! that state-space search ([`crate::search`]) pays one event per transition instead of a
//! replay from the start.

mod dispatch;
mod enabled;
mod irq;
mod merge;
pub mod state;

use std::rc::Rc;

use cpu_model::{ExecutedInsn, ReferenceExecutor, SharedRegion, Vcpu};

use crate::compiled::CMachine;
use crate::config::{Observe, RunConfig};
use crate::decision::Decisions;
use crate::driver::{Client, PatchingClient};
use crate::event::Event;
use crate::ipi::Ipi;
use crate::oracle::torn::TornOracle;
use crate::oracle::{liveness, ByteEpoch, Violation, ViolationKind};
use crate::outcome::{Outcome, Stats, Verdict};
use crate::patching::PatchState;
use crate::plan::Plan;
use crate::program::Op;
use crate::round::Round;
use crate::sched::{Probe, Scheduler};
use crate::text::TextMemory;
use crate::trace::Trace;
use crate::workload::{CpuData, GuestImage, Invariant};
use crate::SimError;
use enabled::{CpuStates, EnabledSet};

pub use merge::Merge;
pub(crate) use state::MachineState;
pub use state::{SaveCache, Snapshot};

/// A machine ready to run one scenario. Its fields are in three groups: what a run never
/// changes, the state (`MachineState`, the vCPUs, the data region and the text — what a
/// [`Snapshot`] saves), and the run's record.
pub struct Machine {
    // What a run never changes.
    config: RunConfig,
    /// What the run records beyond its verdict and trace hash.
    observe: Observe,
    /// Reference counts are asserted non-negative ([`Machine::check_tick`]): the kernel's own
    /// protocol runs, unmutated.
    refs_checked: bool,
    torn: TornOracle,
    /// Every kprobe's address (the INT3 owners a local step must not run into).
    owners: Vec<u64>,
    loop_head: u64,
    budget: u64,
    expected_ticks: u64,
    cpu_data: Vec<CpuData>,
    /// The data region's parts a snapshot saves ([`Machine::data_windows`]).
    windows: Vec<(u64, u64)>,
    initial_regs: Vec<cpu_model::Regs>,
    /// The bytes stores can ever write, and the view units that hold them.
    sites: Vec<(u64, u64)>,
    site_units: Vec<usize>,
    reference: ReferenceExecutor,
    invariant: Box<dyn Invariant + Send>,
    /// With a protocol compiled from C: its memory and the patching clients' CPUs.
    c: Option<CMachine>,
    /// With a protocol compiled from C, per patched site: every instruction a claiming
    /// handler may emulate there — each batch's old, new and explicit `emulate` bytes.
    claimable: std::collections::BTreeMap<u64, Rc<[Vec<u8>]>>,
    /// The workload's patch rounds (its patch arrays; further callers' come after them).
    rounds: u64,
    /// With `[interrupts]`: the handler's code.
    irq_code: Option<crate::interrupt::IrqCode>,
    /// With interrupts on the patching CPU: its registers on entering a handler, and its data.
    irq_ctx: Option<(cpu_model::Regs, CpuData)>,
    /// With interrupts on the patching CPU: per patching client, the CPU its handler runs on
    /// (`smp_processor_id()` = vCPUs + k), with an instruction view of its own.
    irq_cpus: Vec<Vcpu>,
    // The state: what `Snapshot` saves and restores.
    vcpus: Vec<Vcpu>,
    data: Rc<SharedRegion>,
    text: TextMemory,
    state: MachineState,
    /// Per vCPU, how many events have touched it (never restored: a [`SaveCache`] trusts
    /// what it knows of a vCPU while this count stays the same).
    touches: Vec<u64>,
    // The run's record.
    stats: Stats,
    trace: Trace,
    tick: u64,
    drain: Option<Drain>,
    enabled: EnabledSet,
    violation: Option<Violation>,
    step_hashes: Vec<u64>,
    state_hashes: Vec<u64>,
    /// What [`Observe::state_hashes`] reads the state through.
    state_hash_cache: SaveCache,
    /// Whether the loop head's instruction is a local step (its bytes never change: asked once
    /// per run, not at every pass of a local run; DESIGN.md §2.5b).
    loop_head_local: Option<bool>,
}

/// The drain after the patching clients finished: the step count each vCPU must reach, and
/// how many have not (kept for the vCPU each tick stepped, not by scanning every vCPU).
struct Drain {
    until: Vec<u64>,
    pending: Vec<bool>,
    left: usize,
}

impl Drain {
    fn new(vcpus: &[Vcpu], finished: &[bool], steps: u64) -> Self {
        let until: Vec<u64> = vcpus.iter().map(|v| v.steps() + steps).collect();
        let pending: Vec<bool> =
            vcpus.iter().zip(&until).zip(finished).map(|((v, &t), &f)| v.steps() < t && !f).collect();
        let left = pending.iter().filter(|&&p| p).count();
        Drain { until, pending, left }
    }

    /// vCPU `i` now has run `steps` steps (and may have finished).
    fn note(&mut self, i: usize, steps: u64, finished: bool) {
        if self.pending[i] && (steps >= self.until[i] || finished) {
            self.pending[i] = false;
            self.left -= 1;
        }
    }
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("cpus", &self.vcpus.len()).field("tick", &self.tick).finish()
    }
}

impl Machine {
    /// Builds the machine of a validated plan: one vCPU per configured CPU, each with its own
    /// engine and view of the text; the run records what `observe` asks for.
    pub fn new(plan: Plan, observe: Observe) -> Result<Self, SimError> {
        let budget = plan.budget();
        let expected_ticks = plan.expected_ticks();
        let sites = written_bytes(&plan);
        let mut patchers = plan.clients();
        let rounds = plan.workload_arrays as u64;
        let Plan { config, image, kprobes, torn, arrays, c_calls, irq_code, .. } = plan;
        let GuestImage { layout, text, cpu_regs, loop_head, invariant, cpu_data, irq_cpu, .. } = image;
        let truth = TextMemory::new(&layout, text.clone());
        let c = compiled_machine(&config, c_calls, patchers.len(), &truth)?;
        let data = Rc::new(SharedRegion::new(layout.data_base, layout.data_len));
        let owners: Vec<u64> = kprobes.iter().map(|k| k.addr).collect();
        let vcpus = new_vcpus(&config, (layout, &text, &data), &cpu_regs, &sites, c.as_ref())?;
        let site_units = vcpus.first().map(|v| v.view().units_of(&sites)).unwrap_or_default();
        let (irq_ctx, irq_cpus, irq) =
            irq::setup(&config, layout, &text, &data, &sites, &mut patchers, &cpu_regs, irq_cpu)?;
        let claimable = if c.is_some() { claimable(&arrays) } else { Default::default() };
        let state = MachineState {
            handlers: vec![None; config.cpus],
            patching: PatchState::new(arrays, config.cpus, kprobes),
            patchers,
            ipi: Ipi::new(config.cpus),
            iterations: vec![0; config.cpus],
            finished: vec![false; config.cpus],
            irq,
        };
        let mut machine = Self {
            windows: Vec::new(),
            text: truth,
            state,
            reference: ReferenceExecutor::new(layout)?,
            invariant,
            c,
            claimable,
            rounds,
            irq_code,
            irq_ctx,
            irq_cpus,
            loop_head,
            owners,
            cpu_data,
            initial_regs: cpu_regs,
            sites,
            site_units,
            stats: Stats::default(),
            trace: Trace::new(observe.trace),
            tick: 0,
            budget,
            expected_ticks,
            drain: None,
            enabled: EnabledSet::new(config.cpus),
            violation: None,
            step_hashes: Vec::new(),
            state_hashes: Vec::new(),
            state_hash_cache: SaveCache::default(),
            loop_head_local: None,
            touches: vec![0; config.cpus],
            observe,
            refs_checked: config.mutants.is_empty() && config.program.is_none(),
            config,
            vcpus,
            torn,
            data,
        };
        machine.enable_local_runs()?;
        machine.windows = machine.data_windows();
        machine.trace.set_round(machine.round());
        Ok(machine)
    }

    /// With [`crate::Stepping::Batched`]: lets every vCPU run its local steps in one
    /// `emu_start`, stopping before the patchable bytes and every kprobe's address, and
    /// pausing at the loop head for its invariant ([`Machine::local_run`]).
    fn enable_local_runs(&mut self) -> Result<(), SimError> {
        if self.config.stepping != crate::Stepping::Batched {
            return Ok(());
        }
        for v in &mut self.vcpus {
            v.enable_local_runs(&self.sites, &self.owners, self.loop_head)?;
        }
        Ok(())
    }

    /// About how many ticks a uniformly scheduled run of this machine takes
    /// ([`Plan::expected_ticks`]); PCT spreads its change points over it.
    pub fn expected_ticks(&self) -> u64 {
        self.expected_ticks
    }

    /// The tick budget of this run ([`Plan::budget`]).
    pub fn budget(&self) -> u64 {
        self.budget
    }

    /// The violation found so far, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// The patcher a report's position describes: the client holding `text_mutex`, else the first one
    /// not done (the workload's, while it runs).
    fn lead(&self) -> &Client {
        let held = self.state.patching.text_mutex.map(|k| &self.state.patchers[k]);
        held.or_else(|| self.state.patchers.iter().find(|p| !p.done())).unwrap_or(&self.state.patchers[0])
    }

    /// True once every patching client has finished its program.
    fn patchers_done(&self) -> bool {
        self.state.patchers.iter().all(Client::done)
    }

    /// Where the patcher stands, for reports: round and operation (and which client, when
    /// several patch).
    fn moment(&self) -> crate::oracle::PatcherMoment {
        use crate::oracle::PatcherMoment;
        let rounds = self.rounds;
        let round = self.round();
        let lead = self.lead();
        match lead.current() {
            _ if self.patchers_done() => PatcherMoment::Done { round, rounds },
            Some(Op::Compiled) if matches!(lead, Client::C(_)) => {
                let Client::C(c) = lead else { unreachable!("matched above") };
                let waiting = c.waiting().map(|w| format!(" ({w})")).unwrap_or_default();
                PatcherMoment::InC { client: c.client(), round, rounds, location: format!("{}{waiting}", c.location()) }
            }
            Some(op) => PatcherMoment::At {
                client: lead.client(),
                round,
                rounds,
                op: op.unnumbered(),
                waiting: lead.waiting().map(std::borrow::Cow::Borrowed),
            },
            None => PatcherMoment::Between,
        }
    }

    /// The workload's patch round in progress, or the drain after the last ([`Round`]).
    fn round(&self) -> Round {
        Round::of(self.state.patchers[0].batches_done(), self.rounds)
    }

    /// The operation the leading client is at, `None` once it is done ([`TraceEvent::op`]).
    ///
    /// [`TraceEvent::op`]: crate::trace::TraceEvent::op
    fn current_op(&self) -> Option<Op> {
        self.lead().current().copied()
    }

    fn op_name(&self) -> &'static str {
        self.current_op().map_or("done", |op| op.name())
    }

    fn report(
        &mut self,
        kind: ViolationKind,
        cpu: Option<usize>,
        rip: Option<u64>,
        insn: Option<&ExecutedInsn>,
        message: String,
    ) {
        if self.violation.is_some() {
            return;
        }
        let bytes = insn
            .map(|i| i.bytes().iter().zip(i.epochs()).map(|(&byte, &epoch)| ByteEpoch { byte, epoch }).collect())
            .unwrap_or_default();
        self.violation = Some(Violation { kind, cpu, tick: self.tick, rip, bytes, moment: self.moment(), message });
    }

    /// Stage 1: the enabled events, in canonical order — each vCPU's guest or handler step,
    /// then the IPI deliveries (at an instruction boundary, never inside the handler), then
    /// the patcher unless it waits.
    fn collect_enabled(&mut self) {
        let irq_if = self.config.interrupts.map(|_| &self.state.irq.vcpu_if[..]);
        let cpus =
            CpuStates { handlers: &self.state.handlers, finished: &self.state.finished, ipi: &self.state.ipi, irq_if };
        self.enabled.refresh(&cpus, &self.state.patchers, &self.state.patching, &self.state.irq.client_in);
        if self.config.interrupts.is_some() {
            let mut extra = Vec::new();
            self.irq_events(&mut extra);
            self.enabled.extend_tail(extra);
        }
        let tso = self.c.as_ref().filter(|c| c.mem.model() == cpu_model::MemoryModel::Tso);
        if let Some(c) = tso {
            let drains = (0..c.nr_cpu_ids).filter(|&cpu| c.mem.buffered(cpu) > 0).map(Event::Drain);
            self.enabled.extend_tail(drains);
        }
    }

    /// True if some CPU has kernel-data stores still buffered (never under SC).
    fn stores_buffered(&self) -> bool {
        self.c.as_ref().is_some_and(|c| (0..c.nr_cpu_ids).any(|cpu| c.mem.buffered(cpu) > 0))
    }

    /// A serialising event on CPU `cpu` (`smp_processor_id()` numbering: vCPU `i` is `i`,
    /// patching client `k` is `cpus + k`): its whole store buffer of the compiled protocol's
    /// kernel data drains, oldest first (an exception or interrupt delivery, IRET, the IPI of
    /// `on_each_cpu()`; DESIGN.md §2.16). Nothing under SC or without a compiled protocol.
    /// Returns how many stores drained (the trace of the event that caused it says so).
    pub(crate) fn drain_store_buffer(&mut self, cpu: usize) -> usize {
        let Some(c) = &self.c else { return 0 };
        let drained = c.mem.drain_all(cpu);
        if !drained.is_empty() && self.trace.keeps() {
            let text = drained.iter().map(|s| self.describe_store(s)).collect::<Vec<_>>().join(", ");
            self.trace.annotate(|e| {
                let before = e.kernel.take().map(|k| format!("{k}; ")).unwrap_or_default();
                e.kernel = Some(format!("{before}drained {text}"));
            });
        }
        drained.len()
    }

    /// `[symbol+off] = 0x…` (or the address) of a kernel-data store, for traces.
    fn describe_store(&self, s: &cpu_model::BufferedStore) -> String {
        let at = self.c.as_ref().filter(|_| crate::compiled::in_file_data(s.addr)).and_then(|c| {
            let syms = &c.compiled.image.symbols;
            let (name, &base) = syms
                .iter()
                .filter(|(_, &a)| a <= s.addr && crate::compiled::in_file_data(a))
                .max_by_key(|(_, &a)| a)?;
            let off = s.addr - base;
            Some(if off == 0 { name.clone() } else { format!("{name}+{off:#x}") })
        });
        let at = at.unwrap_or_else(|| format!("{:#x}", s.addr));
        format!("[{at}] = {:#x}", s.value())
    }

    /// The liveness oracle on the enabled events: reports a deadlock and returns true.
    fn judge_deadlock(&mut self) -> bool {
        let stuck_on_refs = self
            .state
            .patchers
            .iter()
            .find(|p| p.waiting_for_refs() && !p.enabled(&self.state.ipi, &self.state.patching));
        let waiting = stuck_on_refs.and_then(Client::waiting);
        // Nothing enabled after the patchers finished is the end of a finite guest, not a deadlock.
        let stuck = self.enabled.events().is_empty() && !self.patchers_done();
        // Only asked when it matters: scanning every vCPU on every tick is O(vCPUs).
        let running = (stuck || waiting.is_some()) && self.state.handlers.iter().any(Option::is_some);
        match liveness::deadlock(stuck, waiting, running) {
            Some(msg) => {
                self.report(ViolationKind::Liveness, None, None, None, msg);
                true
            }
            None => false,
        }
    }

    /// True once the patcher is done and every vCPU ran its drain steps outside a handler.
    fn drained(&mut self) -> bool {
        if !self.patchers_done() {
            return false;
        }
        let (vcpus, finished, steps) = (&self.vcpus, &self.state.finished, self.config.drain_steps);
        let drain = self.drain.get_or_insert_with(|| Drain::new(vcpus, finished, steps));
        drain.left == 0
            && self.state.handlers.iter().all(Option::is_none)
            && !self.state.irq.vcpu_in.contains(&true)
            && !self.state.irq.client_in.contains(&true)
            && !self.stores_buffered()
    }

    /// Runs to the end; `scheduler` picks events, `decisions` answers every choice. The run
    /// ends at the first violation, when every vCPU has drained after the patcher finished
    /// (a pass), when the tick budget is spent first (budget exhausted: no verdict), or when
    /// a strictly replayed decision list stops fitting (an error).
    pub fn run(mut self, scheduler: &mut dyn Scheduler, mut decisions: Decisions) -> Result<Outcome, SimError> {
        let mut exhausted = false;
        while self.violation.is_none() && !self.drained() && !decisions.is_stale() {
            if self.tick >= self.budget {
                exhausted = true;
                break;
            }
            self.collect_enabled();
            if self.judge_deadlock() {
                break;
            }
            let enabled = std::mem::take(&mut self.enabled);
            let pick = scheduler.pick_with(self.tick, enabled.events(), &self, &mut decisions);
            self.enabled = enabled;
            // No pick: the strategy cut this run (its remaining states are reached another way).
            let Some(pick) = pick else { break };
            let n = self.enabled.events().len();
            assert!(pick < n, "the scheduler picked event {pick} of {n} enabled ones");
            self.tick(self.enabled.events()[pick], &mut decisions)?;
        }
        decisions.check()?;
        Ok(self.finish(decisions, exhausted))
    }

    /// Stages 3–5 for one picked event: dispatch, judge, apply, record.
    fn tick(&mut self, event: Event, decisions: &mut Decisions) -> Result<(), SimError> {
        if let Some(cpu) = event.cpu() {
            self.touches[cpu] += 1;
        }
        let effect = self.dispatch(event, decisions)?;
        if !self.judge(&effect)? {
            self.apply(effect)?;
        }
        if let Event::GuestStep(i) = event {
            self.local_run(i)?;
        }
        // A guest step that neither trapped nor finished leaves its vCPU's entries as they
        // were (IPIs come only from patching clients); `refresh` checks this in debug builds.
        // With interrupts a guest step may change IF, and with it the vCPU's IPI delivery.
        let same = self.config.interrupts.is_none()
            && matches!(event, Event::GuestStep(i) if self.state.handlers[i].is_none() && !self.state.finished[i]);
        if !same {
            self.enabled.ran(event);
        }
        if let (Some(drain), Some(i)) = (self.drain.as_mut(), event.cpu()) {
            drain.note(i, self.vcpus[i].steps(), self.state.finished[i]);
        }
        self.check_tick(event);
        self.after_tick()
    }

    /// The invariants a tick keeps, asserted in every build (release too: `pokesim bench`
    /// measures their cost). A vCPU runs an INT3 handler exactly while it is inside the RCU
    /// read-side section `do_int3()` entered; and, for the kernel's own protocols (no mutant,
    /// no custom program — a mutated protocol may drive a count below zero, which is its bug,
    /// not pokesim's), no reference count went negative.
    fn check_tick(&self, event: Event) {
        if let Some(i) = event.cpu() {
            let (inside, reading) = (self.state.handlers[i].is_some(), self.state.patching.rcu_readers[i] != 0);
            assert_eq!(inside, reading, "cpu{i}: a handler activation outside its RCU read-side section");
        }
        if self.refs_checked {
            assert!(!self.state.patching.below_zero, "a reference count went negative at {event}");
        }
    }

    fn after_tick(&mut self) -> Result<(), SimError> {
        if self.observe.step_hashes {
            self.step_hashes.push(self.step_hash());
        }
        if self.observe.state_hashes {
            let canon = self.canon();
            let mut cache = std::mem::take(&mut self.state_hash_cache);
            let h = self.canonical_hash(&canon, &mut cache);
            self.state_hash_cache = cache;
            self.state_hashes.push(h? as u64);
        }
        self.tick += 1;
        Ok(())
    }

    /// A digest of the machine after a tick: every event so far (the trace hash), where each
    /// vCPU is, the text epoch and the patcher's position (for `--check-determinism`).
    fn step_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.trace.digest().to_le_bytes());
        for v in &self.vcpus {
            h.update(&v.rip().to_le_bytes());
        }
        h.update(&cpu_model::Truth::now(&self.text).to_le_bytes());
        h.update(self.op_name().as_bytes());
        h.digest()
    }

    fn finish(mut self, decisions: Decisions, exhausted: bool) -> Outcome {
        self.stats.ticks = self.tick;
        self.stats.decisions = decisions.made();
        self.stats.invalidations = self.vcpus.iter().map(|v| v.invalidations()).sum();
        let violations: Vec<Violation> = self.violation.into_iter().collect();
        let verdict = match (violations.is_empty(), exhausted) {
            (false, _) => Verdict::Violation,
            (true, true) => Verdict::BudgetExhausted,
            (true, false) => Verdict::Pass,
        };
        Outcome {
            verdict,
            violations,
            budget: self.budget,
            stats: self.stats,
            trace_hash: self.trace.hash(),
            decisions: decisions.into_log(),
            trace: self.trace.into_events(),
            step_hashes: self.step_hashes,
            state_hashes: self.state_hashes,
        }
    }
}

/// The most local steps state-space search runs as one transition (a guard against a guest
/// that loops without ever reaching a patched byte; the transition then simply ends there).
pub(crate) const MAX_LOCAL_RUN: usize = 100_000;

impl Machine {
    /// Reports a deadlock if no event can ever run again in the current state (after
    /// [`Machine::search_events`]); true if it did.
    pub(crate) fn check_deadlock(&mut self) -> bool {
        self.judge_deadlock()
    }

    /// One transition of state-space search: runs `event` (which must be enabled), answering
    /// its choices from `decisions`, and every step of the same vCPU that follows it and that
    /// `merge` takes (a local guest step, a quiet handler step: they commute with everything
    /// else, so running them at once loses no behaviour and stores no state in between). Each
    /// tick's scheduling pick is noted in `decisions`, so its log replays the transition.
    pub fn transition(&mut self, event: Event, decisions: &mut Decisions, merge: Merge) -> Result<(), SimError> {
        let mut event = event;
        for _ in 0..MAX_LOCAL_RUN {
            self.collect_enabled();
            let Some(index) = self.enabled.events().iter().position(|&e| e == event) else {
                return Err(SimError::Internal(format!("transition: {event} is not enabled")));
            };
            decisions.note(self.enabled.events().len(), index);
            self.tick(event, decisions)?;
            let Some(cpu) = event.cpu() else { break };
            let next = if self.state.handlers[cpu].is_some() { Event::HandlerStep(cpu) } else { Event::GuestStep(cpu) };
            if self.violation.is_some() || !merge.takes(self, next) {
                break;
            }
            event = next;
        }
        Ok(())
    }
}

impl Probe for Machine {
    fn is_local(&self, event: Event) -> bool {
        self.local_step(event)
    }

    fn merges(&self, event: Event) -> bool {
        Machine::merges(self, event)
    }

    fn guest_steps(&self, cpu: usize) -> u64 {
        self.vcpus[cpu].steps()
    }
}

/// Runs `image` under `config`, scheduling with `scheduler` and answering choices from
/// `decisions`: the pure function `run(scenario, decisions) -> outcome` of DESIGN.md §2.1
/// (recording nothing beyond what every run keeps, [`Observe::NOTHING`]).
pub fn run(
    config: &RunConfig,
    image: GuestImage,
    scheduler: &mut dyn Scheduler,
    decisions: Decisions,
) -> Result<Outcome, SimError> {
    Machine::new(Plan::new(config, image, &[])?, Observe::NOTHING)?.run(scheduler, decisions)
}

/// With a protocol compiled from C, its machine (code, kernel data for `cpus + clients` CPUs
/// under the configured memory model, the calls' arguments).
fn compiled_machine(
    config: &RunConfig,
    c_calls: Option<crate::compiled::client::Calls>,
    clients: usize,
    truth: &TextMemory,
) -> Result<Option<CMachine>, SimError> {
    let (Some(compiled), Some((_, args))) = (&config.compiled, c_calls) else { return Ok(None) };
    let counts = (config.cpus, clients);
    Ok(Some(CMachine::new(std::sync::Arc::clone(compiled), counts, &args, truth, config.memory)?))
}

/// The guest vCPUs: one per initial register file, sharing the guest data, each patchable at
/// `sites`, with the compiled protocol's kernel mapped if there is one.
fn new_vcpus(
    config: &RunConfig,
    (layout, text, data): (cpu_model::Layout, &[u8], &Rc<SharedRegion>),
    cpu_regs: &[cpu_model::Regs],
    sites: &[(u64, u64)],
    c: Option<&CMachine>,
) -> Result<Vec<Vcpu>, SimError> {
    let mut vcpus = cpu_regs
        .iter()
        .enumerate()
        .map(|(i, regs)| Vcpu::new(i, layout, text, Rc::clone(data), config.fetch, regs))
        .collect::<Result<Vec<_>, _>>()?;
    for v in &mut vcpus {
        v.set_patchable(sites);
        if let Some(c) = c {
            v.map_kernel(&c.mem, crate::compiled::watched())?;
        }
    }
    Ok(vcpus)
}

/// Per site, the instructions a claiming handler may emulate there: every batch's old, new
/// and explicit `emulate` bytes, each once.
fn claimable(arrays: &[crate::patching::PokeArray]) -> std::collections::BTreeMap<u64, Rc<[Vec<u8>]>> {
    let mut by_site: std::collections::BTreeMap<u64, Vec<Vec<u8>>> = Default::default();
    for a in arrays {
        for (loc, old) in a.locs.iter().zip(a.old.iter()) {
            let c = by_site.entry(loc.addr).or_default();
            for bytes in [old, &loc.text, &loc.emulate] {
                if !c.contains(bytes) {
                    c.push(bytes.clone());
                }
            }
        }
    }
    by_site.into_iter().map(|(k, v)| (k, v.into())).collect()
}

/// The bytes stores can write in a run of `plan`: the sites, and the first byte of every
/// kprobe that arms and disarms itself.
fn written_bytes(plan: &Plan) -> Vec<(u64, u64)> {
    let mut sites: Vec<(u64, u64)> = plan.torn.site_ranges().map(|(a, l)| (a, l as u64)).collect();
    let armed_in_run = plan.ops().filter_map(|op| match op {
        Op::ArmKprobe(k) => Some(plan.kprobes[*k].addr),
        _ => None,
    });
    for addr in armed_in_run {
        if !sites.iter().any(|&(a, l)| addr >= a && addr < a + l) {
            sites.push((addr, 1));
        }
    }
    sites
}
