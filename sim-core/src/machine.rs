//! The machine and its run loop (DESIGN.md §2.1–§2.7).
//!
//! At every tick the machine lists its enabled events in canonical order (see
//! [`crate::event`]), the scheduler picks one through the decision source, the event runs,
//! and the oracles judge it. The run ends at the first violation, when the tick budget is
//! spent, or when the patcher has finished and every vCPU has run its drain steps (during
//! which any old image of a site is a liveness violation: the final sync must have reached
//! everyone).

use std::rc::Rc;

use cpu_model::{ExecutedInsn, ReferenceExecutor, SharedRegion, StepOutcome, Truth, Vcpu};

use crate::config::RunConfig;
use crate::decision::Decisions;
use crate::event::Event;
use crate::handler::{Handler, HandlerStep};
use crate::ipi::Ipi;
use crate::oracle::torn::TornOracle;
use crate::oracle::{emulation, ByteEpoch, Violation, ViolationKind};
use crate::outcome::{Outcome, Stats, Verdict};
use crate::patcher::{Patcher, PatcherEffect};
use crate::patching::{PatchState, PokeArray};
use crate::protocol::loc::INT3;
use crate::protocol::text_poke_loc_init;
use crate::sched::Scheduler;
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
    stats: Stats,
    trace: Trace,
    tick: u64,
    drain_until: Option<Vec<u64>>,
    enabled: Vec<Event>,
    violation: Option<Violation>,
}

impl std::fmt::Debug for Machine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Machine").field("cpus", &self.vcpus.len()).field("tick", &self.tick).finish()
    }
}

/// Builds the `text_poke_loc` array of one batch, sorted by address as `bsearch` needs.
fn poke_array(batch: &[crate::PokeRequest]) -> Result<PokeArray, SimError> {
    let mut locs = batch
        .iter()
        .map(|r| text_poke_loc_init(r.addr, &r.new, r.emulate.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;
    locs.sort_by_key(|l| l.addr);
    if let Some(w) = locs.windows(2).find(|w| w[0].addr == w[1].addr) {
        return Err(SimError::BadInput(format!("site {:#x} appears twice in one batch", w[0].addr)));
    }
    let n = locs.len();
    Ok(PokeArray { locs, old: vec![Vec::new(); n], live: false })
}

impl Machine {
    /// Builds the machine for `image` under `config`.
    pub fn new(config: &RunConfig, image: GuestImage) -> Result<Self, SimError> {
        config.validate()?;
        if image.cpu_regs.len() != config.cpus {
            return Err(SimError::BadInput(format!(
                "workload {} was built for {} vCPUs, the run asks for {}",
                image.name,
                image.cpu_regs.len(),
                config.cpus
            )));
        }
        let layout = image.layout;
        layout.validate().map_err(|e| SimError::BadInput(e.to_string()))?;
        if image.text.len() as u64 != layout.text_len {
            return Err(SimError::BadInput("workload text does not fill its text region".into()));
        }
        let torn = TornOracle::new(&layout, &image.text, &image.batches)?;
        let arrays = image.batches.iter().map(|b| poke_array(b)).collect::<Result<Vec<_>, _>>()?;
        let program = arrays
            .iter()
            .enumerate()
            .flat_map(|(b, a)| config.protocol.batch_program(&config.mutants, b, a.locs.len()))
            .collect();
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
            state: PatchState { vec: None, nr_entries: 0, arrays },
            patcher: Patcher::new(program, config.fetch.stores),
            ipi: Ipi::new(config.cpus),
            reference: ReferenceExecutor::new(layout)?,
            invariant: image.invariant,
            loop_head: image.loop_head,
            stats: Stats::default(),
            trace: Trace::new(config.keep_trace),
            tick: 0,
            drain_until: None,
            enabled: Vec::with_capacity(2 * config.cpus + 1),
            violation: None,
            config: config.clone(),
            vcpus,
            torn,
            data,
        })
    }

    /// The patcher's phase, for reports: round and operation.
    fn phase(&self) -> String {
        let total = self.state.arrays.len();
        match self.patcher.current() {
            _ if self.patcher.done() => format!("done ({total} rounds)"),
            Some(op) => {
                let wait = if self.patcher.waiting() { " (waiting for acks)" } else { "" };
                format!("round {}/{total} {}{wait}", self.stats.patch_rounds + 1, op.name())
            }
            None => "between operations".into(),
        }
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
            self.enabled.push(if h.is_some() { Event::HandlerStep(i) } else { Event::GuestStep(i) });
        }
        for (i, h) in self.handlers.iter().enumerate() {
            if self.ipi.pending(i) && h.is_none() {
                self.enabled.push(Event::IpiDeliver(i));
            }
        }
        if self.patcher.enabled(&self.ipi) {
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
        self.vcpus.iter().zip(targets.iter()).zip(&self.handlers).all(|((v, &t), h)| v.steps() >= t && h.is_none())
    }

    /// Runs to the end; `scheduler` picks events, `decisions` answers every choice.
    pub fn run(mut self, scheduler: &mut dyn Scheduler, mut decisions: Decisions) -> Result<Outcome, SimError> {
        while self.violation.is_none() && !self.drained() {
            if self.tick >= self.config.max_ticks {
                if !self.patcher.done() {
                    let msg = format!(
                        "the patcher did not finish within {} ticks (waiting for cpus {:?})",
                        self.config.max_ticks,
                        self.ipi.waiting_for()
                    );
                    self.report(ViolationKind::Liveness, None, None, None, msg);
                }
                break;
            }
            self.collect_enabled();
            if self.enabled.is_empty() {
                self.report(ViolationKind::Liveness, None, None, None, "deadlock: no event is enabled".into());
                break;
            }
            let pick = scheduler.pick(self.tick, &self.enabled, &mut decisions);
            let event = self.enabled[pick];
            match event {
                Event::GuestStep(i) => self.guest_step(i, event, &mut decisions)?,
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
            self.tick += 1;
        }
        decisions.check()?;
        self.stats.ticks = self.tick;
        self.stats.decisions = decisions.log().len() as u64;
        self.stats.invalidations = self.vcpus.iter().map(|v| v.invalidations()).sum();
        let violations: Vec<Violation> = self.violation.into_iter().collect();
        Ok(Outcome {
            verdict: if violations.is_empty() { Verdict::Pass } else { Verdict::Violation },
            violations,
            stats: self.stats,
            trace_hash: self.trace.hash(),
            decisions: decisions.into_log(),
            trace: self.trace.into_events(),
        })
    }

    fn guest_step(&mut self, i: usize, event: Event, decisions: &mut Decisions) -> Result<(), SimError> {
        if self.vcpus[i].rip() == self.loop_head {
            let regs = self.vcpus[i].regs()?;
            if let Err(msg) = self.invariant.at_loop_head(i, &regs, &self.data) {
                self.report(ViolationKind::WorkloadInvariant, Some(i), Some(regs.rip), None, msg);
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
                self.handlers[i] = Some(Handler::new(regs, stack_top));
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
        let step = handler.step(&self.state);
        self.stats.handler_steps += 1;
        self.trace.record(self.tick, event, pc.name(), Some(ip), &[], &[], self.op_name());
        match step {
            HandlerStep::Continue => {}
            HandlerStep::Declined => {
                // No other INT3 owner is registered: the kernel would oops ("int3" die()).
                let (byte, epoch) = self.vcpus[i].view().shown(ip);
                let insn = single_byte(ip, byte, epoch);
                let msg = format!(
                    "INT3 at {ip:#x} not claimed by the patching handler (nr_entries={})",
                    self.state.nr_entries
                );
                self.report(ViolationKind::UnclaimedInt3, Some(i), Some(ip), Some(&insn), msg);
            }
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
    Machine::new(config, image)?.run(scheduler, decisions)
}
