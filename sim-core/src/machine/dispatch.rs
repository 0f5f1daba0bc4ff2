//! Stages 3–5 of a tick: run the picked event ([`Machine::dispatch`]), ask the oracles about
//! what it did ([`Machine::judge`]), and carry out what follows ([`Machine::apply`]) — each
//! recorded in the trace and the statistics as it happens. What an actor's step does to the
//! kernel state — a step of `text_poke_bp_batch()`'s caller, a micro-step of `do_int3()`'s
//! handler chain, its IRET (`rcu_read_unlock()`) — is [`crate::driver`]'s, shared with `hw`;
//! this module records it and asks the oracles.

use cpu_model::{ExecutedInsn, Regs, StepOutcome, Truth};

use super::Machine;
use crate::compiled::activation::CCtx;
use crate::decision::Decisions;
use crate::driver::{self, Activation, Applied, CKernel, Client, Int3Handler, Kernel, PatchingClient};
use crate::emulate::Emulation;
use crate::event::Event;
use crate::handler::HandlerStep;
use crate::kernel_image::Service;
use crate::oracle::{breakpoint, emulation, guest_fault, invariant, liveness, unclaimed, ViolationKind};
use crate::patcher::PatcherEffect;
use crate::program::Op;
use crate::protocol::kernel;
use crate::protocol::loc::INT3;
use crate::trace::{disassemble, TraceKind};
use crate::SimError;

/// What one event did.
#[derive(Debug)]
pub(crate) enum Effect {
    /// The vCPU's invariant failed at its loop head (no instruction ran).
    Invariant {
        /// The vCPU.
        cpu: usize,
        /// Its registers.
        regs: Regs,
        /// The invariant's explanation.
        message: String,
    },
    /// The vCPU finished its last iteration (a finite guest) and takes no more steps.
    Finished,
    /// The vCPU executed one guest instruction.
    Stepped {
        /// The vCPU.
        cpu: usize,
        /// The instruction as fetched.
        insn: ExecutedInsn,
        /// What the step did.
        outcome: StepOutcome,
    },
    /// One micro-step of a vCPU's INT3 handler.
    Handler {
        /// The vCPU.
        cpu: usize,
        /// The trapping INT3's address.
        ip: u64,
        /// What the micro-step did.
        step: HandlerStep,
    },
    /// A patcher's operation lost an armed kprobe's INT3, or a disarm restored a byte that no
    /// longer belongs in front of the instruction's other bytes.
    Breakpoint {
        /// The patching client whose operation it was.
        client: usize,
        /// The kprobe's address.
        addr: u64,
        /// The breakpoint oracle's explanation.
        message: String,
    },
    /// A patcher's operation wrote memory it does not own.
    PatcherFault {
        /// The patching client whose operation it was.
        client: usize,
        /// What it wrote.
        message: std::borrow::Cow<'static, str>,
    },
    /// An IPI was delivered (`sync_core()` and acknowledge), or the patcher ran an operation.
    Other,
}

impl Machine {
    /// Stage 3: runs `event`.
    pub(super) fn dispatch(&mut self, event: Event, decisions: &mut Decisions) -> Result<Effect, SimError> {
        match event {
            Event::GuestStep(i) => self.guest_step(i, event, decisions),
            Event::HandlerStep(i) => Ok(self.handler_step(i, event)),
            Event::IpiDeliver(i) => {
                self.vcpus[i].serialize(&self.text)?;
                self.state.ipi.acknowledge(i);
                self.stats.ipis += 1;
                let rip = self.vcpus[i].rip();
                self.trace.record(
                    self.tick,
                    event,
                    TraceKind::Ipi,
                    "ipi sync_core",
                    Some(rip),
                    &[],
                    &[],
                    self.current_op(),
                );
                let sync = self.state.ipi.generation();
                self.trace.annotate(|e| {
                    e.sync = Some(sync);
                    e.kernel =
                        Some("do_sync_core(): sync_core(); /* the IPI of on_each_cpu(), then acknowledge */".into());
                });
                // The interrupt's delivery is serialising: the vCPU's store buffer drains.
                self.drain_store_buffer(i);
                Ok(Effect::Other)
            }
            Event::Patcher(k) if self.state.irq.client_in.get(k).copied().unwrap_or(false) => {
                self.client_irq_step(k, event, decisions)?;
                Ok(Effect::Other)
            }
            Event::Patcher(k) => self.patcher_step(k, event),
            Event::Interrupt(i) => {
                self.deliver_irq(i, event)?;
                Ok(Effect::Other)
            }
            Event::PatcherInterrupt(k) => {
                self.deliver_client_irq(k, event)?;
                Ok(Effect::Other)
            }
            Event::Drain(c) => Ok(self.drain_step(c, event)),
        }
    }

    /// The drain event: CPU `c`'s oldest buffered kernel-data store reaches memory.
    fn drain_step(&mut self, c: usize, event: Event) -> Effect {
        let Some(store) = self.c.as_ref().and_then(|m| m.mem.drain_oldest(c)) else { return Effect::Other };
        let op = self.current_op();
        self.trace.record(self.tick, event, TraceKind::Drain, "drain", Some(store.addr), &[], &[], op);
        if self.trace.keeps() {
            let text = format!("{} {}", self.cpu_name(c), self.describe_store(&store));
            self.trace.annotate(|e| e.kernel = Some(text));
        }
        Effect::Other
    }

    /// How many kernel-data stores CPU `cpu` has ever buffered and drained (trace only).
    fn buffer_counts(&self, cpu: usize) -> (u64, u64) {
        match &self.c {
            Some(c) if c.mem.model() == cpu_model::MemoryModel::Tso => c.mem.tso().counts(cpu),
            _ => (0, 0),
        }
    }

    /// Adds to the last trace record what CPU `cpu`'s step did to its store buffer since
    /// `before` ([`Machine::buffer_counts`]): the stores it buffered, and how many drained.
    fn note_buffer(&mut self, cpu: usize, before: (u64, u64)) {
        let after = self.buffer_counts(cpu);
        let (new, drained) = ((after.0 - before.0) as usize, after.1 - before.1);
        if new == 0 && drained == 0 {
            return;
        }
        let Some(c) = &self.c else { return };
        let tso = c.mem.tso();
        let stores: Vec<_> = tso.buffer(cpu).skip(tso.buffered(cpu).saturating_sub(new)).copied().collect();
        drop(tso);
        let mut parts = Vec::new();
        if drained > 0 {
            parts.push(format!("drained {drained}"));
        }
        for s in &stores {
            parts.push(format!("buffered {}", self.describe_store(s).replacen(" = ", " <- ", 1)));
        }
        let text = format!("{} {}", self.cpu_name(cpu), parts.join(", "));
        self.trace.annotate(|e| {
            let before = e.kernel.take().map(|k| format!("{k}; ")).unwrap_or_default();
            e.kernel = Some(format!("{before}{text}"));
        });
    }

    /// `cpu3 (patcher0)`: a CPU by its `smp_processor_id()`, with the patching client it runs.
    pub(super) fn cpu_name(&self, c: usize) -> String {
        match c.checked_sub(self.vcpus.len()) {
            Some(k) => format!("cpu{c} (patcher{k})"),
            None => format!("cpu{c}"),
        }
    }

    fn guest_step(&mut self, i: usize, event: Event, decisions: &mut Decisions) -> Result<Effect, SimError> {
        if self.config.interrupts.is_some() && self.at_iret(i) {
            self.iret(i, event)?;
            return Ok(Effect::Other);
        }
        if self.vcpus[i].rip() == self.loop_head {
            if let Some(effect) = self.at_loop_head(i, event)? {
                return Ok(effect);
            }
        }
        let (insn, outcome) = self.vcpus[i].step(&self.text, decisions)?;
        self.note_if(i, &insn)?;
        self.stats.guest_steps += 1;
        let (kind, what) = match outcome {
            StepOutcome::Normal => (TraceKind::Step, "step"),
            StepOutcome::Int3(_) => (TraceKind::Trap, "int3 trap"),
            StepOutcome::Serialized => (TraceKind::Step, "step (serializing)"),
            StepOutcome::Fault(_) => (TraceKind::Fault, "fault"),
        };
        let op = self.current_op();
        self.trace.record(self.tick, event, kind, what, Some(insn.addr), insn.bytes(), insn.epochs(), op);
        if self.trace.keeps() {
            let text = disassemble(insn.addr, insn.bytes());
            let trap = matches!(outcome, StepOutcome::Int3(_)).then(|| self.kernel_trap());
            self.trace.annotate(|e| {
                e.insn = Some(text);
                e.kernel = trap;
            });
        }
        Ok(Effect::Stepped { cpu: i, insn, outcome })
    }

    /// vCPU `i` is at the loop head: the invariant oracle on its registers and counters, and
    /// one more iteration (a finite guest's last one finishes it). `None`: it goes on.
    fn at_loop_head(&mut self, i: usize, event: Event) -> Result<Option<Effect>, SimError> {
        let regs = self.vcpus[i].regs()?;
        let reset = self.config.reset_counters;
        if let Err(message) = invariant::at_loop_head(self.invariant.as_mut(), i, &regs, &self.data, reset) {
            return Ok(Some(Effect::Invariant { cpu: i, regs, message }));
        }
        self.state.iterations[i] += 1;
        if self.config.max_iterations.is_some_and(|k| self.state.iterations[i] > k) {
            // Done: this vCPU takes no more steps (a finite guest), but still takes IPIs.
            self.state.finished[i] = true;
            let (head, op) = (self.loop_head, self.current_op());
            self.trace.record(self.tick, event, TraceKind::Finished, "finished", Some(head), &[], &[], op);
            return Ok(Some(Effect::Finished));
        }
        Ok(None)
    }

    /// With [`crate::Stepping::Batched`], after vCPU `i`'s picked guest step: the local steps
    /// that follow it ([`Machine::local_step`]), in one `emu_start` that stops before the
    /// first visible instruction (a patchable byte, a kprobe, the loop head, anything that
    /// traps, serialises or reads the time stamp counter; [`cpu_model::Vcpu::run_local`]).
    /// They touch nothing another actor reads or writes, so running them in the same tick as
    /// the step before them loses no interleaving (DESIGN.md §2.5b). The trace records the run
    /// as one event; a fault ends it and is judged as the faulting step's would be.
    pub(super) fn local_run(&mut self, i: usize) -> Result<(), SimError> {
        let event = Event::GuestStep(i);
        if self.config.stepping != crate::Stepping::Batched || self.violation.is_some() || !self.local_step(event) {
            return Ok(());
        }
        if self.vcpus[i].rip() == self.loop_head && !self.through_loop_head(i)? {
            return Ok(());
        }
        let mut left = super::MAX_LOCAL_RUN as u64;
        while left > 0 {
            let run = self.vcpus[i].run_local(left, &self.text)?;
            left = left.saturating_sub(run.steps);
            self.stats.guest_steps += run.steps;
            let op = self.current_op();
            self.trace.record(self.tick, event, TraceKind::Step, "local run", Some(run.start), &[], &[], op);
            if self.trace.keeps() {
                let text = format!("{} local steps in one emu_start", run.steps);
                self.trace.annotate(|e| e.kernel = Some(text));
            }
            if let Some((insn, outcome)) = run.fault {
                let effect = Effect::Stepped { cpu: i, insn, outcome };
                if !self.judge(&effect)? {
                    self.apply(effect)?;
                }
                return Ok(());
            }
            // A run that could not start (an instruction only a single step runs) is over.
            if run.steps == 0 || !self.through_loop_head(i)? {
                return Ok(());
            }
        }
        Ok(())
    }

    /// A local run of vCPU `i` stopped: if at the loop head, whose step is local too (the
    /// invariant reads only the vCPU's own registers and counters), checks it there as a
    /// picked step would and returns true to go on. A finite guest's last pass, and a failed
    /// invariant (reported), end the run.
    fn through_loop_head(&mut self, i: usize) -> Result<bool, SimError> {
        let event = Event::GuestStep(i);
        let last = self.config.max_iterations.is_some_and(|k| self.state.iterations[i] >= k);
        if self.vcpus[i].rip() != self.loop_head || last {
            return Ok(false);
        }
        // Between two local runs the vCPU is in no handler and not finished, and the loop
        // head's bytes are not patchable if it is local at all: the answer never changes.
        let local = match self.loop_head_local {
            Some(local) => local,
            None => *self.loop_head_local.insert(self.local_step(event)),
        };
        if !local {
            return Ok(false);
        }
        match self.at_loop_head(i, event)? {
            None => Ok(true),
            Some(effect) => {
                self.judge(&effect)?;
                Ok(false)
            }
        }
    }

    fn handler_step(&mut self, i: usize, event: Event) -> Effect {
        let op = self.current_op();
        let before = self.buffer_counts(i);
        let Some(handler) = self.state.handlers[i].as_mut() else { return Effect::Other };
        let (pc, ip) = (handler.pc(), handler.ip());
        let view = self.vcpus[i].view();
        let mut ctx = driver::handler_ctx(&self.config, &mut self.state.patching, &self.data, &self.text, |site| {
            view.shown(site).0
        });
        let patcher_sp: Vec<u64> = self
            .state
            .patchers
            .iter()
            .map(|p| match p {
                Client::C(c) => c.sp(),
                Client::Model(_) => 0,
            })
            .collect();
        ctx.c = self.c.as_ref().map(|c| CCtx {
            vcpu: &mut self.vcpus[i],
            compiled: &c.compiled,
            mem: &c.mem,
            patcher_sp: &patcher_sp,
            nr_cpu_ids: c.nr_cpu_ids,
        });
        let step = handler.step(&mut ctx);
        self.stats.handler_steps += 1;
        let name = pc.map_or("handler", |pc| pc.name());
        self.trace.record(self.tick, event, TraceKind::Handler, name, Some(ip), &[], &[], op);
        if self.trace.keeps() {
            let statement = match (pc, &self.state.handlers[i], &self.c) {
                (Some(pc), _, _) => kernel::handler(self.config.protocol.handler(), pc).to_string(),
                (None, Some(Activation::C(h)), Some(c)) => c.compiled.locate(h.at()),
                (None, _, _) => String::new(),
            };
            self.trace.annotate(|e| {
                e.kernel = Some(statement);
            });
            self.note_buffer(i, before);
        }
        Effect::Handler { cpu: i, ip, step }
    }

    fn patcher_step(&mut self, k: usize, event: Event) -> Result<Effect, SimError> {
        let current = self.state.patchers[k].current().copied();
        let disarm = match current {
            Some(Op::DisarmKprobe(kp)) if self.state.patchers[k].at_op_start() => {
                breakpoint::corrupted_disarm(&self.state.patching.kprobes[kp], &self.text)
            }
            _ => None,
        };
        let cpu = self.vcpus.len() + k;
        let before = self.buffer_counts(cpu);
        let mut kernel = Kernel {
            state: &mut self.state.patching,
            text: &mut self.text,
            ipi: &mut self.state.ipi,
            data: &self.data,
            c: self.c.as_mut().map(|c| CKernel { cpus: &mut c.cpus, mem: &c.mem }),
            sites: &self.sites,
        };
        let effect = self.state.patchers[k].step(&mut kernel);
        if let Client::C(c) = &mut self.state.patchers[k] {
            if c.take_serialized() {
                if let Some(v) = self.irq_cpus.get_mut(k) {
                    v.serialize(&self.text)?;
                }
            }
        }
        if let PatcherEffect::Refused(message) = effect {
            return Err(SimError::invalid(crate::error::Subject::ProtocolSource, message));
        }
        self.record_patcher_step(k, event, current, &effect);
        if self.trace.keeps() {
            self.note_buffer(cpu, before);
        }
        let lost = matches!(effect, PatcherEffect::Store(_))
            .then(|| breakpoint::lost(&self.state.patching, &self.text))
            .flatten();
        if let PatcherEffect::Fault(message) = effect {
            return Ok(Effect::PatcherFault { client: k, message });
        }
        Ok(match disarm.or(lost) {
            Some((addr, message)) => Effect::Breakpoint { client: k, addr, message },
            None => Effect::Other,
        })
    }

    /// Records patcher `k`'s step, which was at `current` and did `effect`: the statistics, the
    /// trace record (a store's bytes; a compiled client's last instruction), the kernel
    /// statement (or source line) and the sync it belongs to.
    fn record_patcher_step(&mut self, k: usize, event: Event, current: Option<Op>, effect: &PatcherEffect) {
        let name = self.patcher_step_name(k, current, effect);
        // Only a kept trace shows the statement: formatting it on every step cost 2% of a run.
        let statement = match (&self.state.patchers[k], current) {
            _ if !self.trace.keeps() => None,
            (Client::C(client), _) => Some(client.location()),
            (_, Some(Op::Sync)) if k > 0 => Some(kernel::kprobe_sync(self.config.protocol).to_string()),
            (_, op) => op.map(|op| kernel::patcher(self.config.protocol, &op).to_string()),
        };
        let kind = match effect {
            &PatcherEffect::Store(epoch) => {
                self.stats.stores += 1;
                let (addr, len) = self.text.store_range(epoch);
                let bytes = self.text.log()[epoch as usize - 1].bytes.clone();
                let epochs = vec![epoch; len as usize];
                self.trace.record(self.tick, event, TraceKind::Store, name, Some(addr), &bytes, &epochs, current);
                None
            }
            PatcherEffect::SyncDone => {
                self.stats.syncs += 1;
                Some(TraceKind::SyncDone)
            }
            PatcherEffect::BatchDone => {
                self.stats.patch_rounds += 1;
                Some(TraceKind::Patcher)
            }
            PatcherEffect::Broadcast => Some(TraceKind::Broadcast),
            PatcherEffect::Other | PatcherEffect::Fault(_) | PatcherEffect::Refused(_) => Some(TraceKind::Patcher),
        };
        if let Some(kind) = kind {
            // A compiled client's step ends with the instruction that made its shared access.
            let last = match &self.state.patchers[k] {
                Client::C(c) => c.last().copied(),
                Client::Model(_) => None,
            };
            let bytes = last.as_ref().map_or(&[][..], |i| i.bytes());
            self.trace.record(self.tick, event, kind, name, last.map(|i| i.addr), bytes, &[], current);
            if let (Some(i), true) = (last, self.trace.keeps()) {
                let text = disassemble(i.addr, i.bytes());
                self.trace.annotate(|e| e.insn = Some(text));
            }
        }
        let sync =
            matches!(kind, Some(TraceKind::Broadcast | TraceKind::SyncDone)).then(|| self.state.ipi.generation());
        self.trace.annotate(|e| {
            e.kernel = statement;
            e.sync = sync;
        });
        if *effect == PatcherEffect::BatchDone {
            // The records from here on belong to the next round, or to the drain.
            self.trace.set_round(self.round());
        }
    }

    /// The name of patcher `k`'s step: the model's operation, or for a compiled client the
    /// kernel service it ran (`text_poke`, `on_each_cpu`, ...), else `c`.
    fn patcher_step_name(&self, k: usize, current: Option<Op>, effect: &PatcherEffect) -> &'static str {
        let name = current.map_or("done", |op| op.name());
        match (&self.state.patchers[k], effect) {
            (Client::C(c), PatcherEffect::Store(_)) if c.early_store() => "text_poke_early memcpy",
            (Client::C(_), PatcherEffect::Store(_)) => Service::TextPoke.symbol(),
            (Client::C(_), PatcherEffect::Broadcast | PatcherEffect::SyncDone) => Service::OnEachCpu.symbol(),
            (Client::C(c), _) => c.in_service().map_or(name, |s| s.symbol()),
            _ => name,
        }
    }

    /// What the kernel does on an INT3 trap, for the trace.
    fn kernel_trap(&self) -> String {
        let (entry, handler) =
            (self.config.protocol.version().names.trap_entry, self.config.protocol.version().names.handler_function);
        let then = if self.config.kernel.kprobes { "kprobe_int3_handler(), then " } else { "" };
        format!("{entry}: {handler} first, then {then}notify_die(DIE_INT3); unclaimed: die(\"int3\")")
    }

    /// Stage 4: asks the oracles about `effect`; true if one reported a violation.
    pub(super) fn judge(&mut self, effect: &Effect) -> Result<bool, SimError> {
        match effect {
            Effect::Invariant { cpu, regs, message } => {
                self.report(ViolationKind::WorkloadInvariant, Some(*cpu), Some(regs.rip), None, message.clone());
            }
            Effect::Stepped { cpu, insn, outcome } => self.judge_step(*cpu, insn, outcome),
            Effect::Handler { cpu, ip, step } => self.judge_handler(*cpu, *ip, step)?,
            Effect::PatcherFault { client, message } => {
                let message = format!("{message} [by {}]", Event::Patcher(*client));
                self.report(ViolationKind::PatcherFault, None, None, None, message);
            }
            Effect::Breakpoint { client, addr, message } => {
                let message = format!("{message} [by {}]", Event::Patcher(*client));
                self.report(ViolationKind::LostBreakpoint, None, Some(*addr), None, message);
            }
            Effect::Finished | Effect::Other => {}
        }
        Ok(self.violation.is_some())
    }

    fn judge_step(&mut self, i: usize, insn: &ExecutedInsn, outcome: &StepOutcome) {
        if let Err(msg) = self.torn.check(insn) {
            self.report(ViolationKind::TornFetch, Some(i), Some(insn.addr), Some(insn), msg);
        } else if let Some(Err(msg)) = (self.patchers_done() && !matches!(outcome, StepOutcome::Int3(_)))
            .then(|| liveness::final_image(&self.torn, insn))
        {
            // A stale INT3 is judged by the trap path: recovered (kprobes), or unclaimed.
            self.report(ViolationKind::Liveness, Some(i), Some(insn.addr), Some(insn), msg);
        } else if let Some(msg) = guest_fault::check(insn, outcome) {
            self.report(ViolationKind::GuestFault, Some(i), Some(insn.addr), Some(insn), msg);
        }
    }

    fn judge_handler(&mut self, i: usize, ip: u64, step: &HandlerStep) -> Result<(), SimError> {
        match step {
            HandlerStep::Declined => {
                let (byte, epoch) = self.vcpus[i].view().shown(ip);
                let (insn, msg) =
                    unclaimed::report(ip, byte, epoch, self.config.kernel.kprobes, self.config.protocol.version());
                self.report(ViolationKind::UnclaimedInt3, Some(i), Some(ip), Some(&insn), msg);
            }
            HandlerStep::Fault { kind, message } => self.report(*kind, Some(i), Some(ip), None, message.clone()),
            HandlerStep::Emulated { array, entry, emulation } => {
                let (loc, old) =
                    (&self.state.patching.arrays[*array].locs[*entry], &self.state.patching.arrays[*array].old[*entry]);
                let candidates = [old.clone(), loc.text.clone(), loc.emulate.clone()];
                self.judge_emulation(i, loc.addr, &candidates, emulation)?
            }
            HandlerStep::Claimed { site, emulation } => match self.claimable.get(site).cloned() {
                Some(candidates) => self.judge_emulation(i, *site, &candidates, emulation)?,
                None => {
                    let message = format!("the handler claimed the INT3 at {site:#x}, which no batch patches");
                    self.report(ViolationKind::EmulationMismatch, Some(i), Some(*site), None, message);
                }
            },
            HandlerStep::KprobeEmulated { kprobe, emulation } => {
                let kp = &self.state.patching.kprobes[*kprobe];
                self.judge_emulation(i, kp.addr, &[kp.insn.to_vec()], emulation)?
            }
            _ => {}
        }
        Ok(())
    }

    /// The emulation oracle: the handler's effect against really executing each candidate —
    /// the old, the new (or the explicitly emulated) instruction of a site, or a kprobe's
    /// probed instruction — from the trapped state.
    fn judge_emulation(&mut self, i: usize, site: u64, all: &[Vec<u8>], em: &Emulation) -> Result<(), SimError> {
        let Some(handler) = self.state.handlers[i].as_ref() else { return Ok(()) };
        let (trapped, stack_top) = handler.trapped();
        let mut candidates: Vec<&[u8]> = Vec::with_capacity(3);
        for c in all.iter().map(Vec::as_slice) {
            // An INT3 is never a reference: it is not an instruction anyone emulates.
            if !c.is_empty() && c[0] != INT3 && !candidates.contains(&c) {
                candidates.push(c);
            }
        }
        self.stats.emulation_checks += 1;
        if let Err(msg) = emulation::check(&mut self.reference, site, &candidates, &trapped, stack_top, em)? {
            self.report(ViolationKind::EmulationMismatch, Some(i), Some(site), None, msg);
        } else if let Some(msg) = driver::push_fault(&self.data, em) {
            self.report(ViolationKind::HandlerFault, Some(i), Some(site), None, msg);
        }
        Ok(())
    }

    /// Stage 5: what follows an event the oracles accepted.
    pub(super) fn apply(&mut self, effect: Effect) -> Result<(), SimError> {
        match effect {
            Effect::Stepped { cpu, outcome: StepOutcome::Int3(regs), .. } => {
                self.stats.int3_traps += 1;
                // The exception's delivery is serialising: the vCPU's store buffer drains.
                self.drain_store_buffer(cpu);
                self.state.handlers[cpu] =
                    Some(driver::enter(cpu, regs, &mut self.state.patching, &self.data, self.c.is_some()));
            }
            Effect::Handler { cpu, step, .. } => self.apply_handler(cpu, step)?,
            _ => {}
        }
        Ok(())
    }

    /// Carries out a handler step ([`driver::apply`]). A decline, a fault or an emulated push
    /// outside the stack ([`driver::push_fault`]) never gets here: the oracles reported it
    /// and the run ended.
    fn apply_handler(&mut self, i: usize, step: HandlerStep) -> Result<(), SimError> {
        let Some(handler) = self.state.handlers[i].as_mut() else { return Ok(()) };
        match driver::apply(i, handler, step, &mut self.state.patching, &self.data) {
            Applied::KprobeHit => self.stats.kprobe_hits += 1,
            Applied::Iret(regs) => {
                // IRET is serialising: the handler's buffered stores drain.
                self.drain_store_buffer(i);
                self.vcpus[i].set_regs(&regs)?;
                self.vcpus[i].serialize(&self.text)?;
                self.state.handlers[i] = None;
            }
            Applied::Declined | Applied::Fault { .. } => debug_assert!(self.violation.is_some()),
            Applied::Continue | Applied::Emulated => {}
        }
        Ok(())
    }
}
