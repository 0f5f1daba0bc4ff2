//! The machine and its run loop (DESIGN.md §2.1–§2.7).
//!
//! At every tick the machine lists its enabled events in canonical order (see
//! [`crate::event`]), the scheduler picks one through the decision source, the event runs,
//! and the oracles judge it. The run ends at the first violation, when the tick budget is
//! spent, or when the patcher has finished and every vCPU has run its drain steps (during
//! which any old image of a site is a liveness violation: the final sync must have reached
//! everyone).

use std::collections::BTreeMap;
use std::rc::Rc;

use cpu_model::{ExecutedInsn, ReferenceExecutor, SharedRegion, StepOutcome, Truth, Vcpu};

use crate::config::RunConfig;
use crate::decision::Decisions;
use crate::event::Event;
use crate::handler::{Handler, HandlerCtx, HandlerStep};
use crate::ipi::Ipi;
use crate::oracle::torn::TornOracle;
use crate::oracle::{emulation, ByteEpoch, Violation, ViolationKind};
use crate::outcome::{Outcome, Stats, Verdict};
use crate::patcher::{Patcher, PatcherEffect};
use crate::patching::PatchState;
use crate::plan::Plan;
use crate::protocol::loc::INT3;
use crate::sched::{SchedView, Scheduler};
use crate::text::TextMemory;
use crate::trace::Trace;
use crate::workload::{GuestImage, Invariant};
use crate::SimError;

/// A machine ready to run one scenario.
pub struct Machine {
    config: RunConfig,
    vcpus: Vec<Vcpu>,
    handlers: Vec<Option<Handler>>,
    text: TextMemory,
    data: Rc<SharedRegion>,
    state: PatchState,
    patcher: Patcher,
    ipi: Ipi,
    torn: TornOracle,
    reference: ReferenceExecutor,
    invariant: Box<dyn Invariant>,
    loop_head: u64,
    owners: BTreeMap<u64, u64>,
    stats: Stats,
    trace: Trace,
    tick: u64,
    budget: u64,
    expected_ticks: u64,
    drain_until: Option<Vec<u64>>,
    enabled: Vec<Event>,
    violation: Option<Violation>,
    step_hashes: Vec<u64>,
    state_hashes: Vec<u64>,
    /// Events run per actor (vCPUs, then the patcher).
    progress: Vec<u64>,
    /// Loop-head arrivals per vCPU, and whether it has stopped (`max_iterations`).
    iterations: Vec<u64>,
    finished: Vec<bool>,
    /// Per enabled event: whether it is a local guest step (see `compute_locality`).
    local: Vec<bool>,
    pruned: bool,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("cpus", &self.vcpus.len()).field("tick", &self.tick).finish()
    }
}

impl Machine {
    /// Builds the machine of a validated plan: one vCPU per configured CPU, each with its own
    /// engine and view of the text.
    pub fn new(plan: Plan) -> Result<Self, SimError> {
        let budget = plan.budget();
        let expected_ticks = plan.expected_ticks();
        let Plan { config, image, owners, torn, arrays, program, plain } = plan;
        let layout = image.layout;
        let data = Rc::new(SharedRegion::new(layout.data_base, layout.data_len));
        let vcpus = image
            .cpu_regs
            .iter()
            .enumerate()
            .map(|(i, regs)| Vcpu::new(i, layout, &image.text, Rc::clone(&data), config.fetch, regs))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self {
            handlers: vec![None; config.cpus],
            text: TextMemory::new(&layout, image.text),
            state: PatchState::new(arrays, config.cpus),
            patcher: Patcher::new(program, plain, config.fetch.stores),
            ipi: Ipi::new(config.cpus),
            reference: ReferenceExecutor::new(layout)?,
            invariant: image.invariant,
            loop_head: image.loop_head,
            owners,
            stats: Stats::default(),
            trace: Trace::new(config.keep_trace),
            tick: 0,
            budget,
            expected_ticks,
            drain_until: None,
            enabled: Vec::with_capacity(2 * config.cpus + 1),
            violation: None,
            step_hashes: Vec::new(),
            state_hashes: Vec::new(),
            progress: vec![0; config.cpus + 1],
            iterations: vec![0; config.cpus],
            finished: vec![false; config.cpus],
            local: Vec::new(),
            pruned: false,
            config,
            vcpus,
            torn,
            data,
        })
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

    /// The patcher's phase, for reports: round and operation.
    fn phase(&self) -> String {
        let total = self.state.arrays.len();
        match self.patcher.current() {
            _ if self.patcher.done() => format!("done ({total} rounds)"),
            Some(op) => {
                let wait = self.patcher.waiting().map_or(String::new(), |w| format!(" ({w})"));
                format!("round {}/{total} {}{wait}", self.stats.patch_rounds + 1, op.name())
            }
            None => "between operations".into(),
        }
    }

    /// A digest of the machine after a tick: every event so far (the trace hash), where each
    /// vCPU is, the text epoch and the patcher's position (for `--check-determinism`).
    fn state_hash(&self) -> u64 {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        h.update(&self.trace.digest().to_le_bytes());
        for v in &self.vcpus {
            h.update(&v.rip().to_le_bytes());
        }
        h.update(&self.text.now().to_le_bytes());
        h.update(self.op_name().as_bytes());
        h.digest()
    }

    /// Marks each enabled guest step that is *local*: its next instruction lies outside every
    /// patched site and is not an INT3, so it fetches no patched byte, takes no decision, does
    /// not trap, and touches only its own registers, stack and counters. Such a step commutes
    /// with every event of another actor (the reduction of exhaustive search).
    fn compute_locality(&mut self) {
        self.local.clear();
        for &e in &self.enabled {
            let local = match e {
                Event::GuestStep(i) => {
                    let v = &self.vcpus[i];
                    let rip = v.rip();
                    let view = v.view();
                    let inside = |a: u64| a >= view.base() && a < view.base() + view.len();
                    inside(rip)
                        && (rip..rip + cpu_model::MAX_INSN_LEN as u64).all(|a| !inside(a) || !self.torn.in_site(a))
                        && view.shown(rip).0 != INT3
                        && !self.owners.contains_key(&rip)
                }
                _ => false,
            };
            self.local.push(local);
        }
    }

    /// A hash of the machine state that does not depend on how it was reached: every vCPU's
    /// registers, mode and view, the text, the patching state, the patcher's position, pending
    /// IPIs and the data pages (exhaustive search counts distinct states with it).
    fn structural_hash(&self) -> Result<u64, SimError> {
        let mut h = xxhash_rust::xxh3::Xxh3::new();
        for (i, v) in self.vcpus.iter().enumerate() {
            let regs = v.regs()?;
            for g in regs.gpr {
                h.update(&g.to_le_bytes());
            }
            h.update(&regs.rip.to_le_bytes());
            h.update(&(regs.rflags & emulation::ARITH_FLAGS).to_le_bytes());
            // A view differs from the truth only at patched bytes.
            for (addr, len) in self.torn.site_ranges() {
                for a in addr..addr + len as u64 {
                    h.update(&[v.view().shown(a).0]);
                }
            }
            match &self.handlers[i] {
                Some(hd) => h.update(format!("{:?}{:?}", hd.pc(), hd.regs).as_bytes()),
                None => h.update(b"-"),
            }
            h.update(&[self.ipi.pending(i) as u8]);
        }
        h.update(&self.text.now().to_le_bytes());
        h.update(format!("{:?}", self.patcher.current()).as_bytes());
        h.update(self.patcher.waiting().unwrap_or("").as_bytes());
        let st = &self.state;
        h.update(
            format!("{:?}{}{:?}{:?}{}", st.vec, st.nr_entries, st.desc, st.percpu_refs, st.global_refs).as_bytes(),
        );
        for a in &st.arrays {
            h.update(&[a.live as u8]);
            h.update(&a.refs.to_le_bytes());
        }
        let mut data = vec![0u8; self.data.len() as usize];
        self.data.read(self.data.base(), &mut data);
        h.update(&data);
        Ok(h.digest())
    }

    fn op_name(&self) -> &'static str {
        self.patcher.current().map_or("done", |op| op.name())
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
        self.violation = Some(Violation { kind, cpu, tick: self.tick, rip, bytes, phase: self.phase(), message });
    }

    fn collect_enabled(&mut self) {
        self.enabled.clear();
        for (i, h) in self.handlers.iter().enumerate() {
            if h.is_some() {
                self.enabled.push(Event::HandlerStep(i));
            } else if !self.finished[i] {
                self.enabled.push(Event::GuestStep(i));
            }
        }
        for (i, h) in self.handlers.iter().enumerate() {
            if self.ipi.pending(i) && h.is_none() {
                self.enabled.push(Event::IpiDeliver(i));
            }
        }
        if self.patcher.enabled(&self.ipi, &self.state) {
            self.enabled.push(Event::Patcher);
        }
    }

    /// True once the patcher is done and every vCPU ran its drain steps outside a handler.
    fn drained(&mut self) -> bool {
        if !self.patcher.done() {
            return false;
        }
        let drain = self.config.drain_steps;
        let targets = self.drain_until.get_or_insert_with(|| self.vcpus.iter().map(|v| v.steps() + drain).collect());
        let finished = &self.finished;
        self.vcpus
            .iter()
            .zip(targets.iter())
            .zip(&self.handlers)
            .enumerate()
            .all(|(i, ((v, &t), h))| (v.steps() >= t || finished[i]) && h.is_none())
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
            if let Some(msg) = self.deadlock() {
                self.report(ViolationKind::Liveness, None, None, None, msg);
                break;
            }
            if scheduler.wants_locality() {
                self.compute_locality();
            }
            let view = SchedView { progress: &self.progress, local: &self.local };
            let Some(pick) = scheduler.pick_with(self.tick, &self.enabled, &view, &mut decisions) else {
                // The strategy cut this run: its remaining states are reached another way.
                self.pruned = true;
                break;
            };
            self.run_event(self.enabled[pick], &mut decisions)?;
            self.after_tick()?;
        }
        decisions.check()?;
        Ok(self.finish(decisions, exhausted))
    }

    /// Why no event can ever run again, if so: nothing is enabled, or the patcher waits for a
    /// reference count to drain while no handler holds a reference (a leaked reference).
    fn deadlock(&self) -> Option<String> {
        if self.enabled.is_empty() {
            return Some("deadlock: no event is enabled".into());
        }
        let refs_wait = self.patcher.waiting_for_refs() && !self.patcher.enabled(&self.ipi, &self.state);
        if refs_wait && self.handlers.iter().all(Option::is_none) {
            let what = self.patcher.waiting().unwrap_or("waiting");
            return Some(format!("deadlock: the patcher is {what}, but no INT3 handler holds a reference"));
        }
        None
    }

    fn run_event(&mut self, event: Event, decisions: &mut Decisions) -> Result<(), SimError> {
        self.progress[crate::sched::actor(event, self.vcpus.len())] += 1;
        match event {
            Event::GuestStep(i) => self.guest_step(i, event, decisions)?,
            Event::HandlerStep(i) => self.handler_step(i, event)?,
            Event::IpiDeliver(i) => {
                self.vcpus[i].serialize(&self.text)?;
                self.ipi.acknowledge(i);
                self.stats.ipis += 1;
                let rip = self.vcpus[i].rip();
                self.trace.record(self.tick, event, "ipi sync_core", Some(rip), &[], &[], self.op_name());
            }
            Event::Patcher => self.patcher_step(event),
        }
        Ok(())
    }

    fn after_tick(&mut self) -> Result<(), SimError> {
        if self.config.step_hashes {
            self.step_hashes.push(self.state_hash());
        }
        if self.config.state_hashes {
            let h = self.structural_hash()?;
            self.state_hashes.push(h);
        }
        self.tick += 1;
        Ok(())
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
            pruned: self.pruned,
        }
    }

    fn guest_step(&mut self, i: usize, event: Event, decisions: &mut Decisions) -> Result<(), SimError> {
        if self.vcpus[i].rip() == self.loop_head {
            let regs = self.vcpus[i].regs()?;
            if let Err(msg) = self.invariant.at_loop_head(i, &regs, &self.data) {
                self.report(ViolationKind::WorkloadInvariant, Some(i), Some(regs.rip), None, msg);
                return Ok(());
            }
            self.iterations[i] += 1;
            if self.config.max_iterations.is_some_and(|k| self.iterations[i] > k) {
                // Done: this vCPU takes no more steps (a finite guest), but still takes IPIs.
                self.finished[i] = true;
                self.trace.record(self.tick, event, "finished", Some(self.loop_head), &[], &[], self.op_name());
                return Ok(());
            }
        }
        let (insn, outcome) = self.vcpus[i].step(&self.text, decisions)?;
        self.stats.guest_steps += 1;
        let what = match outcome {
            StepOutcome::Normal => "step",
            StepOutcome::Int3(_) => "int3 trap",
            StepOutcome::Serialized => "step (serializing)",
            StepOutcome::Fault(_) => "fault",
        };
        self.trace.record(self.tick, event, what, Some(insn.addr), insn.bytes(), insn.epochs(), self.op_name());
        if let Err(msg) = self.torn.check(&insn) {
            self.report(ViolationKind::TornFetch, Some(i), Some(insn.addr), Some(&insn), msg);
            return Ok(());
        }
        if self.patcher.done() {
            if let Err(msg) = self.torn.check_final(&insn) {
                self.report(ViolationKind::Liveness, Some(i), Some(insn.addr), Some(&insn), msg);
                return Ok(());
            }
        }
        match outcome {
            StepOutcome::Normal | StepOutcome::Serialized => {}
            StepOutcome::Int3(regs) => {
                self.stats.int3_traps += 1;
                let stack_top = self.data.read_u64(regs.sp()).unwrap_or(0);
                self.handlers[i] = Some(Handler::new(i, regs, stack_top));
            }
            StepOutcome::Fault(fault) => {
                let msg = format!("{fault} executing {:02x?}", insn.bytes());
                self.report(ViolationKind::GuestFault, Some(i), Some(insn.addr), Some(&insn), msg);
            }
        }
        Ok(())
    }

    fn handler_step(&mut self, i: usize, event: Event) -> Result<(), SimError> {
        let handler = self.handlers[i].as_mut().expect("handler step without a handler");
        let pc = handler.pc();
        let ip = handler.ip();
        let mut ctx = HandlerCtx {
            kind: self.config.protocol.handler(),
            rules: self.config.protocol.loc_rules(),
            mutants: &self.config.mutants,
            state: &mut self.state,
            data: &self.data,
        };
        let step = handler.step(&mut ctx);
        self.stats.handler_steps += 1;
        self.trace.record(self.tick, event, pc.name(), Some(ip), &[], &[], self.op_name());
        match step {
            HandlerStep::Continue => {}
            HandlerStep::Declined => match self.owners.get(&ip) {
                // do_int3(): the patching handler first, then kprobe_int3_handler().
                Some(&resume) => {
                    self.stats.kprobe_hits += 1;
                    self.handlers[i].as_mut().expect("handler present").hand_to_owner(resume);
                }
                None => {
                    let (byte, epoch) = self.vcpus[i].view().shown(ip);
                    let insn = single_byte(ip, byte, epoch);
                    let msg = format!("INT3 at {ip:#x} claimed by no handler and no kprobe (the kernel would oops)");
                    self.report(ViolationKind::UnclaimedInt3, Some(i), Some(ip), Some(&insn), msg);
                }
            },
            HandlerStep::Fault(msg) => self.report(ViolationKind::HandlerFault, Some(i), Some(ip), None, msg),
            HandlerStep::Emulated { array, entry, emulation } => {
                let handler = self.handlers[i].as_ref().expect("handler present");
                let (trapped, stack_top) = (handler.regs, handler.stack_top);
                let loc = &self.state.arrays[array].locs[entry];
                let old = &self.state.arrays[array].old[entry];
                let mut candidates: Vec<&[u8]> = Vec::with_capacity(3);
                for c in [old.as_slice(), loc.text.as_slice(), loc.emulate.as_slice()] {
                    // An INT3 is never a reference: it is not an instruction anyone emulates.
                    if !c.is_empty() && c[0] != INT3 && !candidates.contains(&c) {
                        candidates.push(c);
                    }
                }
                self.stats.emulation_checks += 1;
                let site = loc.addr;
                if let Err(msg) =
                    emulation::check(&mut self.reference, site, &candidates, &trapped, stack_top, &emulation)?
                {
                    self.report(ViolationKind::EmulationMismatch, Some(i), Some(site), None, msg);
                    return Ok(());
                }
                if let Some((addr, value)) = emulation.push {
                    if self.data.write_u64(addr, value).is_none() {
                        let msg = format!("int3_emulate_push to {addr:#x}, outside the stack");
                        self.report(ViolationKind::HandlerFault, Some(i), Some(site), None, msg);
                        return Ok(());
                    }
                }
                self.handlers[i].as_mut().expect("handler present").emulated(&emulation);
            }
            HandlerStep::Iret(regs) => {
                self.vcpus[i].set_regs(&regs)?;
                self.vcpus[i].serialize(&self.text)?;
                self.handlers[i] = None;
            }
        }
        Ok(())
    }

    fn patcher_step(&mut self, event: Event) {
        let name = self.op_name();
        let effect = self.patcher.step(&mut self.state, &mut self.text, &mut self.ipi);
        match effect {
            PatcherEffect::Store(epoch) => {
                self.stats.stores += 1;
                let (addr, len) = self.text.store_range(epoch);
                let bytes = self.text.log()[epoch as usize - 1].bytes.clone();
                let epochs = vec![epoch; len as usize];
                self.trace.record(self.tick, event, name, Some(addr), &bytes, &epochs, name);
                return;
            }
            PatcherEffect::SyncDone => self.stats.syncs += 1,
            PatcherEffect::BatchDone => self.stats.patch_rounds += 1,
            PatcherEffect::Broadcast | PatcherEffect::Other => {}
        }
        self.trace.record(self.tick, event, name, None, &[], &[], name);
    }
}

fn single_byte(addr: u64, byte: u8, epoch: u32) -> ExecutedInsn {
    let mut bytes = [0; cpu_model::MAX_INSN_LEN];
    let mut epochs = [0; cpu_model::MAX_INSN_LEN];
    bytes[0] = byte;
    epochs[0] = epoch;
    ExecutedInsn { addr, len: 1, window: 1, bytes, epochs, code: iced_x86::Code::Int3 }
}

/// Runs `image` under `config`, scheduling with `scheduler` and answering choices from
/// `decisions`: the pure function `run(scenario, decisions) -> outcome` of DESIGN.md §2.1.
pub fn run(
    config: &RunConfig,
    image: GuestImage,
    scheduler: &mut dyn Scheduler,
    decisions: Decisions,
) -> Result<Outcome, SimError> {
    Machine::new(Plan::new(config, image, &[])?)?.run(scheduler, decisions)
}
