//! The session's second patching face: a protocol compiled from C (DESIGN.md §2.15) run
//! natively — the very linked image the simulator runs instruction by instruction on its
//! vCPUs, mapped at its own addresses ([`crate::kernel_map`]) and called on the host's CPUs
//! ([`crate::ccall`]). The patcher thread calls each of the plan's `CCall`s (`pokesim_patch()`
//! per batch, `pokesim_poke()`, `pokesim_sync()`) on the image's patcher stack; a guest's
//! `SIGTRAP` handler builds a kernel `struct pt_regs` from the signal context and calls the
//! file's `poke_int3_handler()` (or `smp_text_poke_int3_handler()`) on the signal stack. The
//! C's shared data is real memory both touch at once, as in the kernel: no session lock
//! orders them, only the C's own atomics and barriers.
//!
//! The kernel services the C calls are carried out here as the simulator's
//! `compiled::{client, service}` carry them out, on the hardware: `text_poke()` is the
//! session's store through the text's writable alias; `on_each_cpu(do_sync_core, NULL, 1)` is
//! the session's `text_poke_sync()` (membarrier SYNC_CORE, then the wait for the guests in
//! their INT3 handler); `sync_core()` a serialising `cpuid`; `mutex_lock/unlock(&text_mutex)`
//! and `lockdep_assert_held()` a flag (one patching client); `synchronize_rcu()` a wait for the
//! handlers in progress at the call; `smp_processor_id()`/`nr_cpu_ids` the vCPU (the patcher is
//! CPU `cpus` of `cpus + 1`); `insn_decode()` the simulator's decoder
//! (`sim_core::compiled::service::insn_info`); `BUG()`/`WARN()` a fault with the C line. What
//! cannot be carried out (another mutex, `on_each_cpu()` of another function or without
//! waiting) is refused, never ignored. A fault or `BUG()` in the C — or a call that makes no
//! progress for [`STUCK`] — ends the call ([`crate::ccall`]): in the patcher, the session, as
//! a patcher fault (or liveness) with the C line; in a handler, that activation, as a handler
//! fault, the vCPU restarted.

use std::cell::{Cell, RefCell};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use cpu_model::{Regs, StoreGranularity};
use sim_core::compiled::client::CCall;
use sim_core::compiled::pt_regs;
use sim_core::compiled::service::{bug_text, insn_info, is_sync_core_body, EINVAL};
use sim_core::compiled::Compiled;
use sim_core::kernel_image::Service;
use sim_core::{Plan, ViolationKind};

use super::{Counts, Session, Shared, Stop};
use crate::ccall::{self, Ended, Watch, ABORT};
use crate::guest::{signal_name, Guests};
use crate::kernel_map::KernelMapping;
use crate::Refusal;

/// A native call that makes no progress (no service call, no return) for this long is stuck:
/// the watchdog aborts it (liveness in the patcher; in a handler, a handler that never returns).
pub const STUCK: Duration = Duration::from_secs(10);
/// The watchdog's reasons ([`Watch::why`]).
const WHY_STUCK: u64 = 1;
const WHY_OUT_OF_TIME: u64 = 2;

/// The compiled protocol as the session runs it natively.
pub(super) struct Native {
    compiled: Arc<Compiled>,
    map: KernelMapping,
    calls: Vec<CCall>,
    /// The text after each batch, as the version's program leaves it (the images the dry run
    /// checked); the C must leave the same.
    images: Vec<Vec<u8>>,
    text_mutex: u64,
    /// `text_mutex` is held (by the one patching client).
    held: AtomicBool,
    granularity: StoreGranularity,
    /// Guest vCPUs: the patcher is CPU `cpus`, `nr_cpu_ids` is `cpus + 1`.
    cpus: usize,
    /// The patcher's calls (0) and each vCPU's handler calls (1 + vCPU).
    watches: Vec<Watch>,
}

/// Who makes a native call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Role {
    Patcher,
    Handler(usize),
}

/// Why a kernel service gave up the call.
enum Bail {
    /// A violation of the C's (`BUG()`, `WARN()`, a service misused): patcher or handler fault.
    Violation(ViolationKind, String),
    /// What pokesim does not carry out: the run is refused (exit 2).
    Refused(String),
    /// The session's own wait ended it (liveness, the time budget, the host).
    Stop(Stop),
}

/// What a service the C calls sees: the session, the file, who called, and where to leave
/// the reason it gives up.
struct Caller<'s> {
    session: &'s Session<'s>,
    native: &'s Native,
    role: Role,
    /// The entry point called.
    entry: u64,
    counts: Cell<Counts>,
    bail: RefCell<Option<Bail>>,
}

thread_local! {
    /// The [`Caller`] of the native call in progress on this thread (null: none).
    static CALLER: Cell<*const ()> = const { Cell::new(std::ptr::null()) };
}

impl Native {
    /// Maps `plan`'s compiled protocol (`compiled`, with the plan's calls and argument bytes)
    /// for `images`, the texts its script passes through ([`super::script_images`]).
    pub(super) fn new(compiled: &Arc<Compiled>, plan: &Plan, images: Vec<Vec<u8>>) -> Result<Self, Refusal> {
        let refuse = |why: &str| Refusal::Program(format!("{}: {why}", compiled.file()));
        let (mut clients, args) = plan.c_calls.clone().ok_or_else(|| refuse("the plan has no calls of the file"))?;
        if clients.len() != 1 {
            // One patcher thread: a further caller (shared_vector's) would need one of its own.
            return Err(refuse(&format!(
                "workload {} has {} patching callers; the hardware run has one patcher thread (run it in the \
                 simulator: pokesim run)",
                plan.image.name,
                clients.len()
            )));
        }
        let calls = clients.remove(0);
        let text_mutex = compiled.image.symbol("text_mutex").ok_or_else(|| refuse("`text_mutex` is not defined"))?;
        let map = KernelMapping::new(&compiled.image, &args, &services())?;
        let cpus = plan.config.cpus;
        Ok(Native {
            compiled: Arc::clone(compiled),
            map,
            calls,
            images,
            text_mutex,
            held: AtomicBool::new(false),
            granularity: plan.config.fetch.stores,
            cpus,
            watches: (0..=cpus).map(|_| Watch::default()).collect(),
        })
    }

    /// `function() file:line` of the C at `addr`.
    fn locate(&self, addr: u64) -> String {
        self.compiled.locate(addr)
    }

    fn watch(&self, role: Role) -> &Watch {
        match role {
            Role::Patcher => &self.watches[0],
            Role::Handler(cpu) => &self.watches[1 + cpu],
        }
    }
}

impl Session<'_> {
    /// Calls `entry(args)` natively as `role`, on the stack `stack_top` (0: this one); the
    /// patcher's counts grow by what its services did.
    fn native_call(
        &self,
        n: &Native,
        role: Role,
        entry: u64,
        args: [u64; 3],
        stack_top: u64,
        counts: &mut Counts,
    ) -> (Ended, Option<Bail>) {
        let caller =
            Caller { session: self, native: n, role, entry, counts: Cell::new(*counts), bail: RefCell::new(None) };
        let previous = CALLER.replace((&raw const caller).cast());
        // SAFETY: `entry` is an entry point of the image `n.map` maps (System V ABI); the
        // pointer arguments are the plan's (into the mapped arguments) or the caller's
        // `pt_regs`; the stack is the mapped patcher stack or this thread's; and nothing
        // between this frame and the C needs dropping (`ccall::call`'s contract).
        let ended = unsafe { ccall::call(entry, args, stack_top, n.watch(role)) };
        CALLER.set(previous);
        *counts = caller.counts.get();
        (ended, caller.bail.into_inner())
    }

    /// One pass of the script natively: every call of the workload's client, each batch's
    /// rounds counted as it returns.
    pub(super) fn native_pass(&self, n: &Native, guests: &Guests<'_>, counts: &mut Counts) -> Result<(), Stop> {
        let _alt = AltStack::new();
        let mut batch = 0;
        for call in &n.calls {
            self.go_on()?;
            let e = &n.compiled.entries;
            self.lock().op = match call.entry {
                x if x == e.patch => "pokesim_patch()",
                x if Some(x) == e.poke => "pokesim_poke()",
                _ => "pokesim_sync()",
            };
            let (ended, bail) = self.native_call(n, Role::Patcher, call.entry, call.args, n.map.stack_top(), counts);
            self.patcher_ended(n, ended, bail)?;
            if call.arrays == 0 {
                continue;
            }
            batch += call.arrays as usize;
            self.check_image(n, batch)?;
            for _ in 0..call.arrays {
                self.batch_done(self.lock(), guests, counts)?;
            }
        }
        Ok(())
    }

    /// The text after batch `batch` must be the image the version's program leaves (the one
    /// the dry run checked); the C's own is refused.
    fn check_image(&self, n: &Native, batch: usize) -> Result<(), Stop> {
        let g = self.lock();
        let want = n.images.get(batch).map(Vec::as_slice).unwrap_or_default();
        let have = g.text.read(self.text.base(), g.text.initial().len());
        let Some(at) = have.iter().zip(want).position(|(a, b)| a != b) else { return Ok(()) };
        Err(Stop::Host(Refusal::Program(format!(
            "{}: after batch {batch} the text at {:#x} holds {:02x} where the version's program leaves {:02x}: the \
             dry run checked only the program's images, so the C file's are not run on real CPUs",
            n.compiled.image.source,
            self.text.base() + at as u64,
            have[at],
            want[at]
        ))))
    }

    /// What a patcher call's end means for the session: nothing if it returned, else the
    /// violation, refusal or stop that ends it.
    fn patcher_ended(&self, n: &Native, ended: Ended, bail: Option<Bail>) -> Result<(), Stop> {
        let site = self.site;
        let (kind, message) = match (ended, bail) {
            (Ended::Returned(_), _) => return Ok(()),
            (Ended::Bailed, Some(Bail::Stop(stop))) => return Err(stop),
            (Ended::Bailed, Some(Bail::Refused(why))) => return Err(Stop::Host(Refusal::Program(why))),
            (Ended::Bailed, Some(Bail::Violation(kind, message))) => (kind, message),
            (Ended::Bailed, None) => (ViolationKind::PatcherFault, "the call was abandoned".to_string()),
            (Ended::Faulted { signo: ABORT, rip, .. }, _) => return Err(self.aborted(n, rip)),
            (Ended::Faulted { signo, rip, addr }, _) => {
                (ViolationKind::PatcherFault, format!("{} [patching client 0]", fault_text(n, signo, rip, addr)))
            }
        };
        self.record(&mut self.lock(), kind, 0, site, None, message.clone());
        Err(Stop::Violation(format!("the patcher faulted: {message}")))
    }

    /// The watchdog stopped the patcher's C at `rip`: out of time, or stuck.
    fn aborted(&self, n: &Native, rip: u64) -> Stop {
        let at = n.locate(rip);
        if n.watches[0].why.load(Ordering::Acquire) == WHY_OUT_OF_TIME {
            if let Err(stop) = self.in_time(|| format!("the C at {at}")) {
                return stop;
            }
        }
        self.stuck(format!(
            "the patcher's C made no progress for {} s (no service call, no return) at {at}",
            STUCK.as_secs()
        ))
    }

    /// A guest's INT3, handled by the file's handler natively: the registers to resume with,
    /// or `None` (a violation, recorded; the vCPU restarts).
    pub(super) fn native_int3(&self, n: &Native, cpu: usize, regs: &Regs) -> Option<Regs> {
        self.lock().tally.traps += 1;
        if self.halted.get().is_some() {
            return None; // the session is ending: the C is not run again
        }
        let mut frame = pt_regs::frame(regs);
        let entry = n.compiled.entries.handler.0;
        let (ended, bail) = self.native_call(
            n,
            Role::Handler(cpu),
            entry,
            [frame.as_mut_ptr() as u64, 0, 0],
            0,
            &mut Counts::default(),
        );
        let (kind, message) = match (ended, bail) {
            (Ended::Returned(claimed), _) if claimed as u32 != 0 => {
                self.lock().tally.emulated += 1;
                return Some(resumed(&frame, regs));
            }
            (Ended::Returned(_), _) => return self.declined(cpu, regs),
            (Ended::Bailed, Some(Bail::Violation(kind, message))) => (kind, message),
            (Ended::Bailed, Some(Bail::Refused(m))) => (ViolationKind::HandlerFault, m),
            (Ended::Bailed, Some(Bail::Stop(_)) | None) => {
                (ViolationKind::HandlerFault, "the handler's call was abandoned".to_string())
            }
            (Ended::Faulted { signo: ABORT, rip, .. }, _) => {
                let why = format!("the INT3 handler ran {} s without returning, at {}", STUCK.as_secs(), n.locate(rip));
                let _ = self.halted.set(why.clone());
                (ViolationKind::Liveness, why)
            }
            (Ended::Faulted { signo, rip, addr }, _) => (ViolationKind::HandlerFault, fault_text(n, signo, rip, addr)),
        };
        let mut g = self.lock();
        self.record(&mut g, kind, cpu, regs.rip - 1, None, message);
        let Shared { invariant, data, .. } = &mut *g;
        invariant.reset(cpu, data);
        None
    }

    /// The file's handler returned 0: the rest of the kernel's chain (`kprobe_int3_handler()`
    /// with `CONFIG_KPROBES`, the simulator's own), else `die()`: unclaimed.
    fn declined(&self, cpu: usize, regs: &Regs) -> Option<Regs> {
        if !self.config.kernel.kprobes {
            let mut g = self.lock();
            self.unclaimed(&mut g, cpu, regs.rip - 1);
            return None;
        }
        let mut handler = {
            let mut g = self.lock();
            let Shared { state, data, .. } = &mut *g;
            sim_core::driver::enter_chain(cpu, *regs, state, data)
        };
        loop {
            let mut g = self.lock();
            if let Some(done) = self.handler_step(cpu, &mut handler, &mut g) {
                return done;
            }
        }
    }

    /// The watchdog of a native session: aborts a call that made no progress for [`STUCK`],
    /// and the patcher's once the time budget is spent; until `done` (every guest has left).
    pub(super) fn watchdog(&self, n: &Native, done: &AtomicBool) {
        while !done.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(2));
            for (i, w) in n.watches.iter().enumerate() {
                let Some((stalled, serial)) = w.stalled() else { continue };
                if i == 0 && self.out_of_time() {
                    w.abort(serial, WHY_OUT_OF_TIME);
                } else if stalled >= STUCK.as_nanos() as u64 {
                    w.abort(serial, WHY_STUCK);
                }
            }
        }
    }
}

/// A fault in the C, in words: `SIGSEGV at 0x… (address 0x…): NULL pointer dereference in
/// fn() file.c:12`.
fn fault_text(n: &Native, signo: i32, rip: u64, addr: u64) -> String {
    let null =
        if matches!(signo, libc::SIGSEGV | libc::SIGBUS) && addr < 0x1000 { ": NULL pointer dereference" } else { "" };
    format!("{} at {rip:#x} (address {addr:#x}){null} in {}", signal_name(signo), n.locate(rip))
}

/// The registers an IRET from `frame` resumes the guest with; the trap flag stays the
/// guest's (the session's single-stepping owns it).
fn resumed(frame: &[u64; pt_regs::QWORDS], trapped: &Regs) -> Regs {
    let mut out = pt_regs::resumed(frame, trapped);
    out.rflags = (out.rflags & !TF) | (trapped.rflags & TF);
    out
}

const TF: u64 = 1 << 8;

/// An alternate signal stack for the patcher thread while it runs C, so that a fault on an
/// overflowed patcher stack is still delivered (and escapes); the old one back when dropped.
struct AltStack {
    _mem: Vec<u8>,
    old: libc::stack_t,
}

impl AltStack {
    fn new() -> Self {
        let mut mem = vec![0u8; 64 * 1024];
        let new = libc::stack_t { ss_sp: mem.as_mut_ptr().cast(), ss_flags: 0, ss_size: mem.len() };
        // SAFETY: a zeroed stack_t is valid plain data for the old setting.
        let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
        // SAFETY: valid stack_t pointers; the new stack is ours and outlives its use (the old
        // one is put back before it is freed).
        unsafe { libc::sigaltstack(&new, &mut old) };
        AltStack { _mem: mem, old }
    }
}

impl Drop for AltStack {
    fn drop(&mut self) {
        // SAFETY: putting back the alternate stack this thread had.
        unsafe { libc::sigaltstack(&self.old, std::ptr::null_mut()) };
    }
}

// ------------------------------------------------------------------ the services, natively

/// A service's host function: its C arguments and the C's return address (the stub's `rcx`).
type ServiceFn = extern "C" fn(u64, u64, u64, u64) -> u64;

/// The host functions the service page's slots jump to, in [`Service::ALL`] order.
fn services() -> [usize; 13] {
    let table: [ServiceFn; 13] = [
        text_poke,
        on_each_cpu,
        sync_core,
        mutex_lock,
        mutex_unlock,
        lockdep_assert_held,
        synchronize_rcu,
        smp_processor_id,
        nr_cpu_ids,
        insn_decode,
        bug,
        warn,
        text_memcpy,
    ];
    table.map(|f| f as usize)
}

/// Carries out service `s` for the native call in progress on this thread: `f`'s value
/// returns to the C; its `Bail` ends the call ([`ccall::bail`]).
fn serve(s: Service, f: impl FnOnce(&Caller<'_>) -> Result<u64, Bail>) -> u64 {
    let p = CALLER.get();
    if p.is_null() {
        // Only the image's C calls the services, and only inside a native call.
        eprintln!("pokesim hw: kernel service {}() called outside a native call: a pokesim bug", s.symbol());
        std::process::abort();
    }
    // SAFETY: a non-null pointer is the `Caller` of `native_call` on this thread, alive until
    // that call returns — after this service (the C called it).
    let c = unsafe { &*p.cast::<Caller<'_>>() };
    let r = ccall::service(c.native.watch(c.role), || {
        let patcher = c.role == Role::Patcher;
        if patcher {
            c.session.lock().op = phase(s, true);
        }
        let r = f(c);
        if patcher {
            c.session.lock().op = phase(s, false);
        }
        r
    });
    match r {
        Ok(v) => v,
        Err(b) => {
            *c.bail.borrow_mut() = Some(b);
            ccall::bail()
        }
    }
}

/// The patcher's phase ([`crate::HwEvent::phase`]) in service `s` (`in`) or after it, in
/// the C that goes on until its next service.
fn phase(s: Service, inside: bool) -> &'static str {
    match (s, inside) {
        (Service::TextPoke, true) => "text_poke()",
        (Service::TextPoke, false) => "after text_poke()",
        (Service::OnEachCpu, true) => "on_each_cpu(do_sync_core)",
        (Service::OnEachCpu, false) => "after on_each_cpu(do_sync_core)",
        (Service::SyncCore, _) => "after sync_core()",
        (Service::MutexLock, _) => "after mutex_lock(&text_mutex)",
        (Service::MutexUnlock, _) => "after mutex_unlock(&text_mutex)",
        (Service::LockdepAssertHeld, _) => "after lockdep_assert_held()",
        (Service::SynchronizeRcu, true) => "synchronize_rcu()",
        (Service::SynchronizeRcu, false) => "after synchronize_rcu()",
        (Service::SmpProcessorId, _) => "after smp_processor_id()",
        (Service::NrCpuIds, _) => "after nr_cpu_ids",
        (Service::InsnDecode, _) => "after insn_decode()",
        (Service::Bug, _) => "BUG()",
        (Service::Warn, _) => "WARN()",
        (Service::TextMemcpy, _) => "text_poke_early()'s memcpy",
    }
}

impl Caller<'_> {
    /// Where the C called from: its return address's line, or the entry point it was called
    /// in when that returns to the trampoline (a tail call ends the entry point).
    fn at(&self, ret: u64) -> String {
        match self.native.map.code(ret.saturating_sub(1), 1) {
            [] => format!("{} (its tail call)", self.native.locate(self.entry)),
            _ => self.native.locate(ret.saturating_sub(1)),
        }
    }

    /// A service only the patcher may call, called from a handler: a handler fault.
    fn patcher_only(&self, s: Service, ret: u64) -> Result<(), Bail> {
        match self.role {
            Role::Patcher => Ok(()),
            Role::Handler(_) => Err(Bail::Violation(
                ViolationKind::HandlerFault,
                format!("{}() called from the INT3 handler in {}", s.symbol(), self.at(ret)),
            )),
        }
    }

    /// A violation of the caller's: a patcher fault or a handler fault.
    fn fault(&self, message: String) -> Bail {
        match self.role {
            Role::Patcher => Bail::Violation(ViolationKind::PatcherFault, format!("{message} [patching client 0]")),
            Role::Handler(_) => Bail::Violation(ViolationKind::HandlerFault, message),
        }
    }

    /// `mutex_lock()` and friends take only `&text_mutex`.
    fn text_mutex(&self, s: Service, m: u64, ret: u64) -> Result<(), Bail> {
        self.patcher_only(s, ret)?;
        if m == self.native.text_mutex {
            return Ok(());
        }
        Err(Bail::Refused(format!("{}({m:#x}) in {}: pokesim models only &text_mutex", s.symbol(), self.at(ret))))
    }

    fn text_poke(&self, addr: u64, opcode: u64, len: u64, ret: u64) -> Result<u64, Bail> {
        self.patcher_only(Service::TextPoke, ret)?;
        let mut bytes = [0u8; 16];
        let bad = |what: &str| {
            Err(self.fault(format!("text_poke({addr:#x}, {opcode:#x}, {len}) in {}: {what}", self.at(ret))))
        };
        if len == 0 || len > 16 || peek(opcode, &mut bytes[..len as usize]) != len as usize {
            return bad("bad opcode buffer or length");
        }
        let s = self.session;
        let mut counts = self.counts.get();
        let mut g = s.lock();
        if !g.text.contains(addr, len) {
            drop(g);
            return bad("outside the text");
        }
        for (a, l) in self.native.granularity.split(addr, len) {
            let part = &bytes[(a - addr) as usize..(a - addr + l) as usize];
            g.text.store(a, part);
            s.stored(&mut counts, a, part);
        }
        self.counts.set(counts);
        Ok(addr)
    }

    fn on_each_cpu(&self, func: u64, wait: u64, ret: u64) -> Result<u64, Bail> {
        self.patcher_only(Service::OnEachCpu, ret)?;
        if !is_sync_core_body(self.native.map.code(func, 32), func) {
            return Err(Bail::Refused(format!(
                "on_each_cpu({func:#x}) in {}: pokesim runs only do_sync_core() (a function whose body is \
                 sync_core()) on the other CPUs",
                self.at(ret)
            )));
        }
        if wait == 0 {
            return Err(Bail::Refused(format!(
                "on_each_cpu(.., wait = 0) in {}: pokesim models only the waiting broadcast of text_poke_sync() \
                 (wait = 1)",
                self.at(ret)
            )));
        }
        self.session.text_poke_sync().map_err(Bail::Stop)?;
        let mut counts = self.counts.get();
        counts.syncs += 1;
        self.counts.set(counts);
        Ok(0)
    }

    fn mutex(&self, s: Service, m: u64, ret: u64) -> Result<u64, Bail> {
        self.text_mutex(s, m, ret)?;
        let held = &self.native.held;
        match (s, held.load(Ordering::Acquire)) {
            (Service::MutexLock, true) => Err(Bail::Stop(self.session.stuck(format!(
                "mutex_lock(&text_mutex) in {} while this client holds it: it would wait forever",
                self.at(ret)
            )))),
            (Service::MutexUnlock, false) => {
                Err(self.fault(format!("mutex_unlock(&text_mutex) in {}: not held by this client", self.at(ret))))
            }
            (_, now) => {
                held.store(!now, Ordering::Release);
                Ok(0)
            }
        }
    }

    fn lockdep_assert_held(&self, lock: u64, file: u64, line: u64, ret: u64) -> Result<u64, Bail> {
        self.text_mutex(Service::LockdepAssertHeld, lock, ret)?;
        if self.native.held.load(Ordering::Acquire) {
            return Ok(0);
        }
        Err(self.fault(bug_text("lockdep_assert_held(&text_mutex) failed", peek_str(file), line, None)))
    }

    /// `synchronize_rcu()`: waits until every INT3 handler in progress at the call has ended.
    fn synchronize_rcu(&self, ret: u64) -> Result<u64, Bail> {
        self.patcher_only(Service::SynchronizeRcu, ret)?;
        let s = self.session;
        let started: Vec<u64> = s.entries.iter().map(|e| e.load(Ordering::Acquire)).collect();
        for (c, &e) in started.iter().enumerate() {
            let mut polls = 0u64;
            while s.exits[c].load(Ordering::Acquire) < e {
                polls += 1;
                if polls > super::MAX_POLLS {
                    let why = format!(
                        "vCPU {c}'s INT3 handler did not end in {} polls of synchronize_rcu()",
                        super::MAX_POLLS
                    );
                    return Err(Bail::Stop(s.stuck(why)));
                }
                if polls.is_multiple_of(64) {
                    s.go_on().map_err(Bail::Stop)?;
                    s.in_time(|| format!("vCPU {c}'s INT3 handler to end (synchronize_rcu())")).map_err(Bail::Stop)?;
                    std::thread::yield_now();
                }
                std::hint::spin_loop();
            }
        }
        Ok(0)
    }

    fn smp_processor_id(&self) -> u64 {
        match self.role {
            Role::Patcher => self.native.cpus as u64,
            Role::Handler(cpu) => cpu as u64,
        }
    }

    /// `pokesim_insn_decode(kaddr, out)`: the simulator's decoder on the bytes at `kaddr`.
    fn insn_decode(&self, kaddr: u64, out: u64) -> u64 {
        let mut bytes = [0u8; cpu_model::MAX_INSN_LEN];
        let n = peek(kaddr, &mut bytes);
        let (info, valid) = insn_info(&bytes[..n], kaddr);
        if poke(out, &info) && valid {
            0
        } else {
            EINVAL
        }
    }

    fn bug(&self, what: &str, file: u64, line: u64, cond: u64, ret: u64) -> Bail {
        self.fault(format!("{} in {}", bug_text(what, peek_str(file), line, peek_str(cond)), self.at(ret)))
    }
}

extern "C" fn text_poke(addr: u64, opcode: u64, len: u64, ret: u64) -> u64 {
    serve(Service::TextPoke, |c| c.text_poke(addr, opcode, len, ret))
}

extern "C" fn on_each_cpu(func: u64, _info: u64, wait: u64, ret: u64) -> u64 {
    serve(Service::OnEachCpu, |c| c.on_each_cpu(func, wait as u32 as u64, ret))
}

extern "C" fn sync_core(_: u64, _: u64, _: u64, _ret: u64) -> u64 {
    serve(Service::SyncCore, |_| {
        // CPUID serialises the instruction stream of this CPU (SDM Vol. 3A §9.3), what
        // sync_core() does (IRET-to-self or SERIALIZE in the kernel).
        // SAFETY: CPUID exists on every x86-64 CPU. (Safe from Rust 1.89.)
        #[allow(unused_unsafe)]
        let _ = unsafe { std::arch::x86_64::__cpuid(0) };
        Ok(0)
    })
}

extern "C" fn text_memcpy(addr: u64, _: u64, len: u64, _ret: u64) -> u64 {
    serve(Service::TextMemcpy, |_| {
        Err(Bail::Refused(format!(
            "pokesim_text_memcpy({addr:#x}, .., {len}): the hardware run does not write the text through its own \
             address (text_poke_early() runs in the simulator only)"
        )))
    })
}

extern "C" fn mutex_lock(m: u64, _: u64, _: u64, ret: u64) -> u64 {
    serve(Service::MutexLock, |c| c.mutex(Service::MutexLock, m, ret))
}

extern "C" fn mutex_unlock(m: u64, _: u64, _: u64, ret: u64) -> u64 {
    serve(Service::MutexUnlock, |c| c.mutex(Service::MutexUnlock, m, ret))
}

extern "C" fn lockdep_assert_held(lock: u64, file: u64, line: u64, ret: u64) -> u64 {
    serve(Service::LockdepAssertHeld, |c| c.lockdep_assert_held(lock, file, line, ret))
}

extern "C" fn synchronize_rcu(_: u64, _: u64, _: u64, ret: u64) -> u64 {
    serve(Service::SynchronizeRcu, |c| c.synchronize_rcu(ret))
}

extern "C" fn smp_processor_id(_: u64, _: u64, _: u64, _ret: u64) -> u64 {
    serve(Service::SmpProcessorId, |c| Ok(c.smp_processor_id()))
}

extern "C" fn nr_cpu_ids(_: u64, _: u64, _: u64, _ret: u64) -> u64 {
    serve(Service::NrCpuIds, |c| Ok(c.native.cpus as u64 + 1))
}

extern "C" fn insn_decode(kaddr: u64, out: u64, _: u64, _ret: u64) -> u64 {
    serve(Service::InsnDecode, |c| Ok(c.insn_decode(kaddr, out)))
}

extern "C" fn bug(file: u64, line: u64, cond: u64, ret: u64) -> u64 {
    serve(Service::Bug, |c| Err(c.bug("BUG()", file, line, cond, ret)))
}

extern "C" fn warn(file: u64, line: u64, cond: u64, ret: u64) -> u64 {
    serve(Service::Warn, |c| Err(c.bug("WARN()", file, line, cond, ret)))
}

// ------------------------------------------------- this process's memory, without faulting

/// Reads up to `buf.len()` (at most 256) bytes at `addr` of this process, up to the first one
/// that is not readable; how many it read. `process_vm_readv` on ourselves, one byte per
/// remote vector: a bad pointer of the C's is an error, never a fault in pokesim's code.
fn peek(addr: u64, buf: &mut [u8]) -> usize {
    let n = buf.len().min(256);
    let local = libc::iovec { iov_base: buf.as_mut_ptr().cast(), iov_len: n };
    let remote: [libc::iovec; 256] =
        std::array::from_fn(|i| libc::iovec { iov_base: addr.wrapping_add(i as u64) as *mut libc::c_void, iov_len: 1 });
    // SAFETY: the local vector covers `n` writable bytes of `buf`; the kernel checks the remote
    // ones (this process's memory) and stops at the first it cannot read.
    let got = unsafe { libc::process_vm_readv(libc::getpid(), &local, 1, remote.as_ptr(), n as libc::c_ulong, 0) };
    got.max(0) as usize
}

/// Writes `bytes` at `addr` of this process if every byte there is writable (as
/// `process_vm_writev` finds it); true if it did.
fn poke(addr: u64, bytes: &[u8]) -> bool {
    let local = libc::iovec { iov_base: bytes.as_ptr().cast_mut().cast(), iov_len: bytes.len() };
    let remote = libc::iovec { iov_base: addr as *mut libc::c_void, iov_len: bytes.len() };
    // SAFETY: the local vector covers `bytes`, only read; the kernel checks the remote range.
    let put = unsafe { libc::process_vm_writev(libc::getpid(), &local, 1, &remote, 1, 0) };
    put == bytes.len() as isize
}

/// The NUL-terminated string at `addr` (up to 256 bytes), if readable.
fn peek_str(addr: u64) -> Option<String> {
    let mut buf = [0u8; 256];
    let n = peek(addr, &mut buf);
    let end = buf[..n].iter().position(|&b| b == 0).unwrap_or(n);
    (n > 0).then(|| String::from_utf8_lossy(&buf[..end]).into_owned())
}
