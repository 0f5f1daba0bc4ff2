//! Interrupt delivery and IRET on the machine's CPUs ([`crate::interrupt`]; SDM Vol. 3A §6.12
//! "Exception and Interrupt Handling", §6.14.2 "64-Bit Mode Stack Frame", §9.3 "Serializing
//! Instructions").
//!
//! A guest vCPU takes an interrupt by pushing a 64-bit frame (RIP, CS, RFLAGS, RSP, SS, on a
//! stack aligned down to 16 bytes) on its own stack, clearing IF and jumping to the handler; the
//! handler's `iretq` is carried out here (the engine refuses IRET): RIP, RFLAGS and RSP come back
//! from the frame and the CPU serialises (its view becomes exact). Delivery does not serialise
//! instruction fetch (the SDM lists IRET among the serialising instructions, not interrupt
//! delivery) but drains the store buffer (SDM §11.10):
//! [`Machine::drain_store_buffer`].
//!
//! A patching client's CPU takes one on an interrupt CPU of its own (`irq_cpus[k]`, a `Vcpu` with
//! an instruction view): the client's registers stay in the client, which is not enabled until the
//! handler's IRET.

use cpu_model::{ExecutedInsn, Reg, StepOutcome};

use super::Machine;
use crate::decision::Decisions;
use crate::event::Event;
use crate::interrupt::{IrqState, IF};
use crate::oracle::{guest_fault, ViolationKind};
use crate::trace::{disassemble, TraceKind};
use crate::SimError;

/// The patching CPU's registers on entering a handler, and the data it may write.
pub(super) type IrqContext = (cpu_model::Regs, crate::workload::CpuData);

/// The interrupt parts of a new machine: the patching CPU's interrupt context and one interrupt
/// CPU per patching client (with interrupts on the patching CPU and a workload that gives it a
/// context), each compiled client told whether a `sti`/`popf` ends its step and whether its own
/// stores are visible at once, and the initial [`IrqState`].
#[allow(clippy::too_many_arguments)]
pub(super) fn setup(
    config: &crate::config::RunConfig,
    layout: cpu_model::Layout,
    text: &[u8],
    data: &std::rc::Rc<cpu_model::SharedRegion>,
    sites: &[(u64, u64)],
    patchers: &mut [crate::driver::Client],
    cpu_regs: &[cpu_model::Regs],
    irq_cpu: Option<IrqContext>,
) -> Result<(Option<IrqContext>, Vec<cpu_model::Vcpu>, IrqState), SimError> {
    let Some(irq) = config.interrupts else { return Ok((None, Vec::new(), IrqState::default())) };
    let ctx = irq_cpu.filter(|_| irq.patcher());
    let mut cpus = Vec::new();
    if let Some((regs, _)) = &ctx {
        for k in 0..patchers.len() {
            let d = std::rc::Rc::clone(data);
            let mut v = cpu_model::Vcpu::new(config.cpus + k, layout, text, d, config.fetch, regs)?;
            v.set_patchable(sites);
            cpus.push(v);
        }
    }
    let jump = config.own_stores == crate::interrupt::OwnStores::Jump;
    for p in patchers.iter_mut() {
        if let crate::driver::Client::C(c) = p {
            c.set_interrupts(irq.patcher(), jump);
        }
    }
    Ok((ctx, cpus, IrqState::new(irq.budget, cpu_regs, patchers.len())))
}

/// The selectors written into a frame (not restored by this IRET: the CPU stays in its mode).
const KERNEL_CS: u64 = 0x10;
const KERNEL_SS: u64 = 0x18;

impl Machine {
    /// The interrupt deliveries enabled now, in canonical order (vCPUs, then patching clients).
    pub(super) fn irq_events(&self, out: &mut Vec<Event>) {
        let Some(irq) = self.config.interrupts else { return };
        let s = &self.state.irq;
        if s.left == 0 {
            return;
        }
        if irq.vcpus() {
            for i in 0..self.vcpus.len() {
                let idle = self.state.handlers[i].is_none() && !self.state.finished[i];
                if idle && s.vcpu_if[i] && !s.vcpu_in[i] {
                    out.push(Event::Interrupt(i));
                }
            }
        }
        if irq.patcher() && !self.irq_cpus.is_empty() {
            for (k, p) in self.state.patchers.iter().enumerate() {
                let ready = matches!(p, crate::driver::Client::C(c) if c.interruptible());
                if ready && !s.client_in[k] {
                    out.push(Event::PatcherInterrupt(k));
                }
            }
        }
    }

    /// Delivers an interrupt to vCPU `i`: pushes the frame, clears IF, enters the handler.
    pub(super) fn deliver_irq(&mut self, i: usize, event: Event) -> Result<(), SimError> {
        let code = self.irq_code.ok_or_else(|| SimError::Internal("an interrupt without handler code".into()))?;
        let mut regs = self.vcpus[i].regs()?;
        let (rip, rsp) = (regs.rip, regs.sp());
        let frame = (rsp & !0xf) - 40;
        for (n, v) in [rip, KERNEL_CS, regs.rflags, rsp, KERNEL_SS].into_iter().enumerate() {
            self.data
                .write_u64(frame + 8 * n as u64, v)
                .ok_or_else(|| SimError::Internal(format!("cpu{i}: interrupt frame at {frame:#x} outside the data")))?;
        }
        regs.set(Reg::Rsp, frame);
        regs.rflags &= !IF;
        regs.rip = code.entry;
        self.vcpus[i].set_regs(&regs)?;
        self.state.irq.left -= 1;
        self.state.irq.vcpu_in[i] = true;
        self.state.irq.vcpu_if[i] = false;
        let op = self.current_op();
        self.trace.record(self.tick, event, TraceKind::IrqEnter, "irq enter -> handler", Some(rip), &[], &[], op);
        // Delivery drains the store buffer (SDM §11.10), though it does not serialise fetch.
        self.drain_store_buffer(i);
        Ok(())
    }

    /// True if vCPU `i` is at its interrupt handler's `iretq`.
    pub(super) fn at_iret(&self, i: usize) -> bool {
        self.state.irq.vcpu_in[i] && self.irq_code.is_some_and(|c| c.iret == self.vcpus[i].rip())
    }

    /// vCPU `i`'s handler returns: RIP, RFLAGS and RSP from the frame; IRET serialises.
    pub(super) fn iret(&mut self, i: usize, event: Event) -> Result<(), SimError> {
        let mut regs = self.vcpus[i].regs()?;
        let (at, frame) = (regs.rip, regs.sp());
        let read = |n: u64| {
            self.data
                .read_u64(frame + 8 * n)
                .ok_or_else(|| SimError::Internal(format!("cpu{i}: interrupt frame at {frame:#x} outside the data")))
        };
        let (rip, rflags, rsp) = (read(0)?, read(2)?, read(3)?);
        regs.rip = rip;
        regs.rflags = rflags;
        regs.set(Reg::Rsp, rsp);
        self.vcpus[i].set_regs(&regs)?;
        self.vcpus[i].serialize(&self.text)?;
        self.state.irq.vcpu_in[i] = false;
        self.state.irq.vcpu_if[i] = rflags & IF != 0;
        let op = self.current_op();
        self.trace.record(self.tick, event, TraceKind::Iret, "iret", Some(at), &[0x48, 0xcf], &[], op);
        self.drain_store_buffer(i);
        Ok(())
    }

    /// After vCPU `i` executed `insn`: keeps its cached IF current (only the instructions that
    /// can change it are read back).
    pub(super) fn note_if(&mut self, i: usize, insn: &ExecutedInsn) -> Result<(), SimError> {
        use iced_x86::Code;
        if self.config.interrupts.is_some()
            && matches!(insn.code, Code::Cli | Code::Sti | Code::Popfq | Code::Popfw | Code::Popfd)
        {
            self.state.irq.vcpu_if[i] = self.vcpus[i].regs()?.rflags & IF != 0;
        }
        Ok(())
    }

    /// Delivers an interrupt to patching client `k`'s CPU: the client stops where it is and its
    /// interrupt CPU enters the handler with its own registers.
    pub(super) fn deliver_client_irq(&mut self, k: usize, event: Event) -> Result<(), SimError> {
        let (code, (mut regs, _)) = match (self.irq_code, self.irq_ctx) {
            (Some(c), Some(ctx)) => (c, ctx),
            _ => return Err(SimError::Internal("an interrupt on the patching CPU without a context".into())),
        };
        regs.rip = code.entry;
        regs.rflags &= !IF;
        self.irq_cpus[k].set_regs(&regs)?;
        self.state.irq.left -= 1;
        self.state.irq.client_in[k] = true;
        let (at, statement) = match &self.state.patchers[k] {
            crate::driver::Client::C(c) => (Some(c.rip()), c.location()),
            crate::driver::Client::Model(_) => (None, String::new()),
        };
        let op = self.current_op();
        self.trace.record(self.tick, event, TraceKind::IrqEnter, "irq enter -> handler", at, &[], &[], op);
        self.trace.annotate(|e| e.kernel = Some(statement));
        self.drain_store_buffer(self.config.cpus + k);
        Ok(())
    }

    /// One instruction of the handler on patching client `k`'s interrupt CPU (its IRET ends
    /// the interrupt and serialises that CPU's view).
    pub(super) fn client_irq_step(
        &mut self,
        k: usize,
        event: Event,
        decisions: &mut Decisions,
    ) -> Result<(), SimError> {
        let cpu = self.config.cpus + k;
        let code = self.irq_code.ok_or_else(|| SimError::Internal("an interrupt without handler code".into()))?;
        let op = self.current_op();
        if self.irq_cpus[k].rip() == code.iret {
            self.irq_cpus[k].serialize(&self.text)?;
            self.state.irq.client_in[k] = false;
            self.trace.record(self.tick, event, TraceKind::Iret, "iret", Some(code.iret), &[0x48, 0xcf], &[], op);
            self.drain_store_buffer(cpu);
            return Ok(());
        }
        let (insn, outcome) = self.irq_cpus[k].step(&self.text, decisions)?;
        let (kind, what) = match outcome {
            StepOutcome::Int3(_) => (TraceKind::Trap, "irq int3 trap"),
            StepOutcome::Fault(_) => (TraceKind::Fault, "irq fault"),
            _ => (TraceKind::Step, "irq step"),
        };
        self.trace.record(self.tick, event, kind, what, Some(insn.addr), insn.bytes(), insn.epochs(), op);
        if self.trace.keeps() {
            let text = disassemble(insn.addr, insn.bytes());
            self.trace.annotate(|e| e.insn = Some(text));
        }
        if let Err(msg) = self.torn.check(&insn) {
            let msg = format!("{msg} [on the patching CPU, cpu{cpu}, in its interrupt handler]");
            self.report(ViolationKind::TornFetch, None, Some(insn.addr), Some(&insn), msg);
        } else if let Some(msg) = guest_fault::check(&insn, &outcome) {
            let msg = format!("{msg} [on the patching CPU, cpu{cpu}, in its interrupt handler]");
            self.report(ViolationKind::GuestFault, None, Some(insn.addr), Some(&insn), msg);
        } else if let StepOutcome::Int3(_) = outcome {
            return Err(SimError::invalid(
                crate::error::Subject::Interrupts,
                format!(
                    "cpu{cpu} (the patching CPU) hit an INT3 at {:#x} in its interrupt handler: do_int3() on the \
                     patching CPU is not modelled",
                    insn.addr
                ),
            ));
        }
        Ok(())
    }
}
