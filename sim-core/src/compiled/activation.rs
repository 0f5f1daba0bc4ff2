//! One `do_int3()` activation of a handler compiled from C, on the trapping vCPU itself
//! (arch/x86/kernel/traps.c `do_int3()` → `poke_int3_handler(regs)` /
//! `smp_text_poke_int3_handler(regs)`): entry pushes a real `struct pt_regs` frame on the
//! vCPU's exception stack and calls the file's handler with it; each step runs instructions
//! until the first shared access (the file's data, a patcher's stack); a return of 1 resumes
//! the vCPU at `regs->ip` with the frame's registers (IRET, serialising), judged by the
//! emulation oracle like the Rust handler's emulation; 0 declines (`die("int3")`). A load or a
//! store below a patching client's stack pointer — its returned frame, 5.6's `desc` after
//! `text_poke_bp_batch()` returned — is a use after free.

use std::hash::{Hash, Hasher};

use cpu_model::{Accesses, KernelFault, KernelMemory, KernelStep, MemoryModel, Reg, Regs, SharedRegion, Vcpu};

use super::pt_regs;
use super::service::{self, Common};
use super::{exception_stack, in_file_data, Compiled, PRIVATE_RUN_MAX, RETURN_ADDR};
use crate::emulate::Emulation;
use crate::handler::{Handler, HandlerCtx, HandlerStep};
use crate::kernel_image::{Service, KEXC_BASE, KSTACK_BASE, KSTACK_SIZE};
use crate::oracle::ViolationKind;

/// What the compiled handler needs beyond the model's context: the vCPU it runs on, the file,
/// its memory, and where each patching client's stack is live.
pub struct CCtx<'a> {
    /// The trapping vCPU.
    pub vcpu: &'a mut Vcpu,
    /// The file.
    pub compiled: &'a Compiled,
    /// The kernel memory.
    pub mem: &'a KernelMemory,
    /// Each patching client's stack pointer (its stack below it is dead).
    pub patcher_sp: &'a [u64],
    /// `nr_cpu_ids`.
    pub nr_cpu_ids: usize,
}

/// One activation of the compiled handler.
#[derive(Clone, Debug)]
pub struct CHandler {
    cpu: usize,
    trapped: Regs,
    stack_top: u64,
    entered: bool,
    /// Where the vCPU's RIP was after the last step (for traces).
    at: u64,
    /// Once the file's handler returned 0 with `CONFIG_KPROBES`: the rest of the configured
    /// kernel's chain (`kprobe_int3_handler()`, then `notify_die()`), the built-in code.
    chain: Option<Box<Handler>>,
}

impl CHandler {
    /// Entry on vCPU `cpu` with the trapped register file and the qword at `[rsp]`.
    pub fn new(cpu: usize, trapped: Regs, stack_top: u64) -> Self {
        Self { cpu, trapped, stack_top, entered: false, at: 0, chain: None }
    }

    /// The trapping INT3's address.
    pub fn ip(&self) -> u64 {
        self.trapped.rip - 1
    }

    /// The trapped registers and the qword at `[rsp]`.
    pub fn trapped(&self) -> (Regs, u64) {
        (self.trapped, self.stack_top)
    }

    /// The kernel code address of its next instruction (0 before entry).
    pub fn at(&self) -> u64 {
        self.at
    }

    /// Feeds everything its future depends on but the vCPU index into `h` (the registers
    /// are the vCPU's, which a search saves with it).
    pub fn hash_state<H: Hasher>(&self, h: &mut H, rel: impl Fn(&Regs) -> Regs) {
        (rel(&self.trapped), self.stack_top, self.entered).hash(h);
        if let Some(chain) = &self.chain {
            chain.hash_state(h, rel);
        }
    }

    /// The built-in rest of the chain, once the file's handler declined.
    pub fn chain(&self) -> Option<&Handler> {
        self.chain.as_deref()
    }

    /// The built-in rest of the chain, mutably.
    pub fn chain_mut(&mut self) -> Option<&mut Handler> {
        self.chain.as_deref_mut()
    }

    /// Runs one step: of the file's handler, or of the built-in chain after it declined.
    pub fn step(&mut self, ctx: &mut HandlerCtx<'_>) -> HandlerStep {
        if let Some(chain) = &mut self.chain {
            return chain.step(ctx);
        }
        let (data, kprobes) = (ctx.data, ctx.kprobes);
        let c = ctx.c.as_mut().expect("a compiled handler steps on its vCPU");
        match self.run(c, data) {
            Ok(HandlerStep::Declined) if kprobes => {
                let chain = Handler::after_patching_handler(self.cpu, self.trapped, self.stack_top);
                self.chain = Some(Box::new(chain));
                HandlerStep::Continue
            }
            Ok(step) => step,
            Err(e) => HandlerStep::Fault { kind: ViolationKind::HandlerFault, message: e },
        }
    }

    fn run(&mut self, ctx: &mut CCtx<'_>, data: &SharedRegion) -> Result<HandlerStep, String> {
        if !self.entered {
            self.enter(ctx)?;
        }
        for _ in 0..PRIVATE_RUN_MAX {
            let rip = ctx.vcpu.rip();
            self.at = rip;
            if rip == RETURN_ADDR {
                return self.returned(ctx, data);
            }
            if let Some(s) = Service::at(rip) {
                self.service(s, ctx)?;
                continue;
            }
            let step = ctx.vcpu.step_kernel().map_err(|e| e.to_string())?;
            if let Some(f) = step.fault {
                return Ok(self.fault(ctx, rip, f));
            }
            if let Some(uaf) = use_after_free(&step.accesses, ctx.patcher_sp) {
                let message = format!("{uaf} in {}", ctx.compiled.locate(rip));
                return Ok(HandlerStep::Fault { kind: ViolationKind::UseAfterFree, message });
            }
            if ends_step(&step, ctx.mem.model()) {
                break;
            }
        }
        self.at = ctx.vcpu.rip();
        Ok(HandlerStep::Continue)
    }

    /// Pushes the `pt_regs` frame and calls the handler with it.
    fn enter(&mut self, ctx: &mut CCtx<'_>) -> Result<(), String> {
        let frame = exception_stack(self.cpu).1 - pt_regs::SIZE - 8;
        let (mem, cpu) = (ctx.mem, self.cpu);
        let t = &self.trapped;
        // Its own exception stack: no other CPU addresses it (no store buffer).
        for (i, v) in pt_regs::frame(t).into_iter().enumerate() {
            mem.write_as(cpu, frame + 8 * i as u64, &v.to_le_bytes(), true);
        }
        mem.write_as(cpu, frame - 8, &RETURN_ADDR.to_le_bytes(), true);
        let mut regs = *t;
        regs.set(Reg::Rsp, frame - 8);
        regs.set(Reg::Rdi, frame);
        regs.rip = ctx.compiled.entries.handler.0;
        ctx.vcpu.set_regs(&regs).map_err(|e| e.to_string())?;
        self.entered = true;
        Ok(())
    }

    /// The handler returned: 1 resumes with the frame (the emulation oracle judges it), 0
    /// declines.
    fn returned(&mut self, ctx: &mut CCtx<'_>, data: &SharedRegion) -> Result<HandlerStep, String> {
        let regs = ctx.vcpu.regs().map_err(|e| e.to_string())?;
        if regs.get(Reg::Rax) as u32 == 0 {
            return Ok(HandlerStep::Declined);
        }
        let frame = exception_stack(self.cpu).1 - pt_regs::SIZE - 8;
        let mut qwords = [0u64; pt_regs::QWORDS];
        for (i, q) in qwords.iter_mut().enumerate() {
            *q = ctx.mem.read_u64_as(self.cpu, frame + 8 * i as u64).unwrap_or(0);
        }
        let out = pt_regs::resumed(&qwords, &self.trapped);
        let push =
            (out.sp() == self.trapped.sp().wrapping_sub(8)).then(|| (out.sp(), data.read_u64(out.sp()).unwrap_or(0)));
        Ok(HandlerStep::Claimed { site: self.ip(), emulation: Emulation { regs: out, push } })
    }

    /// A service called from the handler: only the ones every CPU may call.
    fn service(&mut self, s: Service, ctx: &mut CCtx<'_>) -> Result<(), String> {
        let mut regs = ctx.vcpu.regs().map_err(|e| e.to_string())?;
        match service::common(s, &mut regs, ctx.mem, self.cpu, ctx.nr_cpu_ids) {
            Common::Returned => ctx.vcpu.set_regs(&regs).map_err(|e| e.to_string()),
            Common::Fault(m) => Err(m),
            Common::Other => Err(format!("{}() called from the INT3 handler", s.symbol())),
        }
    }

    fn fault(&self, ctx: &CCtx<'_>, rip: u64, f: KernelFault) -> HandlerStep {
        let what = match f {
            KernelFault::Unmapped { addr, .. } if addr < 0x1000 => format!("NULL pointer dereference ({f})"),
            f => f.to_string(),
        };
        HandlerStep::Fault {
            kind: ViolationKind::HandlerFault,
            message: format!("{what} in {}", ctx.compiled.locate(rip)),
        }
    }
}

/// True if another CPU can observe an access at `addr`: the file's data, a patcher's stack.
fn shared(addr: u64) -> bool {
    in_file_data(addr) || (KSTACK_BASE..KEXC_BASE).contains(&addr)
}

/// True if the handler's step ends after `step`: it made an access another CPU can observe
/// — under TSO a load or a locked access only (a plain store joins the store buffer; its
/// drain is an event of its own) — or it drained the store buffer (DESIGN.md §2.16).
fn ends_step(step: &KernelStep, model: MemoryModel) -> bool {
    let locked = step.ordering == cpu_model::Ordering::Locked;
    let observed = |a: &&cpu_model::MemAccess| model == MemoryModel::Sc || !a.write || locked;
    step.accesses.overflow || step.drained > 0 || step.accesses.iter().filter(observed).any(|a| shared(a.addr))
}

/// An access below a patching client's stack pointer: memory of a frame that returned.
fn use_after_free(accesses: &Accesses, patcher_sp: &[u64]) -> Option<String> {
    accesses.iter().find_map(|a| {
        let k = (a.addr.checked_sub(KSTACK_BASE)? / KSTACK_SIZE) as usize;
        let sp = *patcher_sp.get(k)?;
        (a.addr < sp).then(|| {
            let what = if a.write { "store to" } else { "load from" };
            format!(
                "use after free: {what} {:#x}, below patching client {k}'s stack pointer {sp:#x} (a returned frame)",
                a.addr
            )
        })
    })
}
