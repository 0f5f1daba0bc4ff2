//! Guest threads: the workload's loop running natively on a host thread, entered and left by
//! signals, its faults caught and counted (docs/reference/hardware.md §3, §5).
//!
//! A thread enters the guest by sending itself [`ENTER`]: the handler saves the interrupted
//! host register file from the signal context and replaces it with the vCPU's initial one, so
//! `sigreturn` (an IRET-like full restore) resumes in the guest loop, on the guest's own stack
//! in the data region. The controller stops it with [`LEAVE`], whose handler puts the saved
//! host registers back: the thread continues right after its own `pthread_kill`. A fault in
//! the guest — `SIGILL`, `SIGSEGV`, `SIGBUS`, `SIGFPE`, or a `SIGTRAP` no handler claims, what
//! a torn instruction raises — is counted with its signal and address, and the vCPU restarts
//! at its initial register file. Handlers run on a per-thread alternate stack (the guest's is
//! a few bytes) and touch only this thread's state. The guest runs with FS and GS base 0, and
//! every handler loads the host's bases before it touches thread-local state (`crate::bases`).
//! A fault outside the guest is reported on stderr, handed to the handler that was installed
//! before (Rust's stack-overflow report), and ends the process with status 3 — except a fault
//! in compiled C called natively on the thread (`crate::ccall`: the INT3 handler's C inside
//! the `SIGTRAP` handler, the patcher's C on the patcher thread), which ends that call and is
//! reported by its caller; `SIGTRAP` is not deferred while its own handler runs, so a trap in
//! that C is delivered too. [`crate::ccall::ABORT`], a watchdog's, is handled the same way.
//!
//! A session that runs the INT3 protocol passes [`GuestHooks`]: an INT3 trap (`SIGTRAP`,
//! `si_code == SI_KERNEL`) goes to its INT3 handler, which resumes the guest with the registers
//! it computed; a fault goes to it before the restart; and a checkpoint ([`Guests::checkpoint`],
//! signal [`CHECK`]) makes the guest single-step (`EFLAGS.TF`) to its loop head, where the
//! hooks check the workload's invariant with the guest stopped there. A traced run
//! ([`run_guests_traced`], the dry run's) single-steps every guest from its first instruction.

use std::cell::UnsafeCell;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::OnceLock;

use cpu_model::{Reg, Regs};

/// The signal a thread sends itself to enter the guest.
pub const ENTER: libc::c_int = libc::SIGUSR1;
/// The signal that takes a thread out of the guest.
pub const LEAVE: libc::c_int = libc::SIGUSR2;
/// The signal that asks a guest thread to stop at its loop head for a check ([`GuestHooks::step`]).
pub const CHECK: libc::c_int = libc::SIGURG;
/// `EFLAGS.TF`: a debug trap after every instruction.
const TF: u64 = 1 << 8;
/// `si_code` of a `SIGTRAP` from `int3` (`do_int3_user()` → `do_trap()`).
const SI_KERNEL: libc::c_int = 0x80;
/// `si_code` of a `SIGTRAP` from a single step.
const TRAP_TRACE: libc::c_int = 2;

/// What a session does with a guest thread's traps; called from that thread's signal
/// handlers, with the guest stopped. The guest is vCPU `cpu` (its index in the register files
/// given to [`run_guests_with`]).
pub trait GuestHooks: Sync {
    /// The guest executed an INT3: `regs.rip` is its address + 1, as the kernel's `pt_regs`
    /// shows it. The registers to resume with (the handler's IRET), or `None` to restart the
    /// vCPU (the kernel would have died: counted as a fault).
    fn int3(&self, cpu: usize, regs: &Regs) -> Option<Regs>;
    /// The guest faulted with `signo` at `rip`; it restarts at its initial registers next.
    fn fault(&self, cpu: usize, signo: libc::c_int, rip: u64);
    /// The guest single-steps (after a checkpoint request, or all along in a traced run); it is
    /// about to run the instruction at `regs.rip`. What to do next.
    fn step(&self, cpu: usize, regs: &Regs) -> Step;
}

/// What a single-stepped guest does next ([`GuestHooks::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// Run the instruction, and trap after it.
    Continue,
    /// Run on without single-stepping (a traced run steps on regardless).
    Stop,
    /// Do not run it: restart the vCPU at its initial registers (counted as a fault).
    Restart,
}

/// No INT3 handler: an INT3 in the guest is a fault like any other, and checkpoints stop at
/// once.
pub struct NoHandler;

impl GuestHooks for NoHandler {
    fn int3(&self, _: usize, _: &Regs) -> Option<Regs> {
        None
    }
    fn fault(&self, _: usize, _: libc::c_int, _: u64) {}
    fn step(&self, _: usize, _: &Regs) -> Step {
        Step::Stop
    }
}

/// The hooks of the session in progress: a pointer to a `&dyn GuestHooks` on
/// [`run_guests_with`]'s stack, set before its threads start and cleared after they ended.
static HOOKS: std::sync::atomic::AtomicPtr<&'static dyn GuestHooks> =
    std::sync::atomic::AtomicPtr::new(std::ptr::null_mut());

/// True while a traced run ([`run_guests_traced`]) is in progress: every guest single-steps
/// from its first instruction to the end.
static TRACED: AtomicBool = AtomicBool::new(false);

/// The signals a torn instruction can raise (`SIGSYS`: a system call from guest code, which
/// the thread's seccomp filter turns into a trap instead of running it).
const FAULTS: [libc::c_int; 6] = [libc::SIGILL, libc::SIGSEGV, libc::SIGBUS, libc::SIGFPE, libc::SIGTRAP, libc::SIGSYS];
/// The alternate signal stack of a guest thread.
const ALT_STACK: usize = 64 * 1024;

type Gregs = [libc::greg_t; 23];

/// Faults taken in guests since the process started, all threads together (an atomic add is
/// async-signal-safe); a controller watches it while the guests run.
static FAULTS_SO_FAR: AtomicU64 = AtomicU64::new(0);

/// Faults taken in guests so far in this process (every thread, every session).
pub fn faults_so_far() -> u64 {
    FAULTS_SO_FAR.load(Ordering::Acquire)
}

/// One guest thread's state, read and written by its own signal handlers only.
#[derive(Clone, Copy)]
struct ThreadState {
    in_guest: bool,
    /// Single-stepping to the loop head after a checkpoint request.
    stepping: bool,
    /// The vCPU this thread runs.
    cpu: usize,
    guest: Gregs,
    host: Gregs,
    faults: u64,
    first_fault: Option<(libc::c_int, u64)>,
}

impl ThreadState {
    /// Puts the vCPU's initial register file into a signal context (keeping the host's
    /// segment selectors): the thread resumes at the start of the guest loop — single-stepping
    /// from there in a traced run.
    fn load_guest(&mut self, g: &mut Gregs) {
        *g = self.guest;
        g[libc::REG_CSGSFS as usize] = self.host[libc::REG_CSGSFS as usize];
        self.stepping = TRACED.load(Ordering::Acquire);
        if self.stepping {
            g[libc::REG_EFL as usize] |= TF as libc::greg_t;
        }
    }
}

thread_local! {
    // Const-initialised and without `Drop`: reading it from a signal handler allocates nothing.
    static STATE: UnsafeCell<ThreadState> = const {
        UnsafeCell::new(ThreadState {
            in_guest: false,
            stepping: false,
            cpu: 0,
            guest: [0; 23],
            host: [0; 23],
            faults: 0,
            first_fault: None,
        })
    };
}

/// What one guest thread saw.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct GuestReport {
    /// The host CPU it was pinned to, if pinning succeeded.
    pub cpu: Option<usize>,
    /// Faults taken in the guest (each restarted the vCPU).
    pub faults: u64,
    /// The first fault: signal number and instruction address.
    pub first_fault: Option<(i32, u64)>,
    /// False if the thread never entered the guest (its seccomp guard could not be installed).
    pub ran: bool,
}

/// The guest register file of `regs` in signal-context order, keeping the host's segment
/// selectors (`REG_CSGSFS`).
fn gregs_of(regs: &Regs, host: &Gregs) -> Gregs {
    let mut g = *host;
    for (at, reg) in GREGS {
        g[at as usize] = regs.get(reg) as libc::greg_t;
    }
    g[libc::REG_RIP as usize] = regs.rip as libc::greg_t;
    g[libc::REG_EFL as usize] = regs.rflags as libc::greg_t;
    g
}

/// The register file saved in a signal context.
fn regs_of(g: &Gregs) -> Regs {
    let mut regs =
        Regs { rip: g[libc::REG_RIP as usize] as u64, rflags: g[libc::REG_EFL as usize] as u64, ..Regs::default() };
    for (at, reg) in GREGS {
        regs.set(reg, g[at as usize] as u64);
    }
    regs
}

/// Where the signal context keeps each general-purpose register.
const GREGS: [(libc::c_int, Reg); 16] = {
    use libc::*;
    [
        (REG_RAX, Reg::Rax),
        (REG_RCX, Reg::Rcx),
        (REG_RDX, Reg::Rdx),
        (REG_RBX, Reg::Rbx),
        (REG_RSP, Reg::Rsp),
        (REG_RBP, Reg::Rbp),
        (REG_RSI, Reg::Rsi),
        (REG_RDI, Reg::Rdi),
        (REG_R8, Reg::R8),
        (REG_R9, Reg::R9),
        (REG_R10, Reg::R10),
        (REG_R11, Reg::R11),
        (REG_R12, Reg::R12),
        (REG_R13, Reg::R13),
        (REG_R14, Reg::R14),
        (REG_R15, Reg::R15),
    ]
};

/// The saved register file of a signal context.
///
/// # Safety
/// `ctx` must be the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
unsafe fn gregs(ctx: *mut libc::c_void) -> *mut Gregs {
    // SAFETY: per the caller's promise `ctx` points to a live `ucontext_t`.
    unsafe { &raw mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs }
}

/// Where a handled signal returns to.
enum Resume {
    /// Not the guest's: the handler installed before ours takes it.
    NotOurs,
    /// Host code of this thread.
    Host,
    /// Guest code: from its initial registers (`fresh`), or where it was.
    Guest {
        /// The vCPU (re)starts at its initial registers.
        fresh: bool,
    },
}

extern "C" fn on_signal(signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // Before any thread-local access: the host's FS and GS bases back (crate::bases).
    // SAFETY: `ctx` is the context the kernel passed to this SA_SIGINFO handler.
    let slot = unsafe { crate::bases::enter(ctx) };
    // SAFETY: the kernel's arguments for this signal; the host's FS base is back.
    if unsafe { native_call_signal(signo, info, ctx, slot) } {
        return;
    }
    // SAFETY: `info` is the siginfo the kernel passed to this SA_SIGINFO handler.
    let code = unsafe { (*info).si_code };
    // A fault inside a hook is not the guest's: it is reported (`forward`).
    let resume = if IN_HOOK.get() {
        Resume::NotOurs
    } else {
        STATE.with(|s| {
            // SAFETY: `ctx` is the context the kernel passed to this SA_SIGINFO handler.
            let g = unsafe { &mut *gregs(ctx) };
            // SAFETY: only this thread's handlers touch its state; ours mask each other (and a
            // handler nested by a fault inside a hook returns above), and no reference to the
            // state is held across a hook call.
            dispatch(signo, code, unsafe { &mut *s.get() }, g)
        })
    };
    match (resume, slot) {
        (Resume::NotOurs, _) => {
            // SAFETY: forwarding the kernel's own arguments.
            unsafe { forward(signo, info, ctx) }
        }
        (Resume::Guest { fresh }, Some(slot)) => crate::bases::leave_to_guest(slot, fresh),
        _ => {}
    }
}

/// A signal that concerns compiled C called natively on this thread (crate::ccall): a fault in
/// it, or the watchdog's abort, ends the call (its caller reports it); an abort meant for a call
/// that has ended is dropped (a guest interrupted in its own code gets its bases back). True
/// if the signal was that, and is handled.
///
/// # Safety
/// The arguments must be the kernel's, for a signal being handled now on this thread, with the
/// host's FS base loaded; `slot` is this thread's [`crate::bases`] slot.
unsafe fn native_call_signal(
    signo: libc::c_int,
    info: *mut libc::siginfo_t,
    ctx: *mut libc::c_void,
    slot: Option<usize>,
) -> bool {
    let abort = signo == crate::ccall::ABORT;
    // SAFETY: per the caller's promise.
    if (abort || FAULTS.contains(&signo)) && unsafe { crate::ccall::escape_from_signal(signo, info, ctx) } {
        return true;
    }
    if !abort {
        return false;
    }
    // SAFETY: a read of this thread's state, which only its own handlers change.
    let in_guest = STATE.with(|s| unsafe { (*s.get()).in_guest });
    if let (Some(slot), false, true) = (slot, IN_HOOK.get(), in_guest) {
        crate::bases::leave_to_guest(slot, false);
    }
    true
}

/// A signal on a thread whose state is `s`, with the signal context's registers `g`.
fn dispatch(signo: libc::c_int, code: libc::c_int, s: &mut ThreadState, g: &mut Gregs) -> Resume {
    let to_guest = Resume::Guest { fresh: false };
    match signo {
        ENTER if !s.in_guest => {
            s.host = *g;
            s.load_guest(g);
            s.in_guest = true;
            Resume::Guest { fresh: true }
        }
        LEAVE if s.in_guest => {
            *g = s.host;
            s.in_guest = false;
            Resume::Host
        }
        ENTER | LEAVE | CHECK if !s.in_guest => Resume::Host,
        CHECK => {
            checkpoint(s, g);
            to_guest
        }
        _ if !s.in_guest => Resume::NotOurs,
        libc::SIGTRAP if code == SI_KERNEL => {
            let (cpu, regs) = (s.cpu, regs_of(g));
            match hook(|h| h.int3(cpu, &regs)) {
                Some(after) => {
                    *g = gregs_of(&after, g);
                    to_guest
                }
                None => s.restart(g, signo),
            }
        }
        libc::SIGTRAP if code == TRAP_TRACE && s.stepping => {
            let (cpu, regs) = (s.cpu, regs_of(g));
            match hook(|h| h.step(cpu, &regs)) {
                Step::Continue => to_guest,
                Step::Stop if TRACED.load(Ordering::Acquire) => to_guest,
                Step::Stop => {
                    g[libc::REG_EFL as usize] &= !(TF as libc::greg_t);
                    s.stepping = false;
                    to_guest
                }
                Step::Restart => s.restart(g, signo),
            }
        }
        _ => {
            let (cpu, rip) = (s.cpu, g[libc::REG_RIP as usize] as u64);
            hook(|h| h.fault(cpu, signo, rip));
            s.restart(g, signo)
        }
    }
}

thread_local! {
    /// True while this thread runs a hook (a plain flag: async-signal-safe to read).
    static IN_HOOK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Calls the session's hooks (or [`NoHandler`]'s) with [`IN_HOOK`] set.
fn hook<R>(f: impl FnOnce(&dyn GuestHooks) -> R) -> R {
    let p = HOOKS.load(Ordering::Acquire);
    IN_HOOK.set(true);
    // SAFETY: a non-null pointer points to the `&dyn GuestHooks` of the `run_guests_with` in
    // progress, which clears it before that reference's target goes away (after every guest
    // thread has left the guest for good).
    let r = if p.is_null() { f(&NoHandler) } else { f(unsafe { *p }) };
    IN_HOOK.set(false);
    r
}

/// A checkpoint request: stop at the loop head now, or single-step until there.
fn checkpoint(s: &mut ThreadState, g: &mut Gregs) {
    if s.stepping {
        return;
    }
    let (cpu, regs) = (s.cpu, regs_of(g));
    if hook(|h| h.step(cpu, &regs)) == Step::Continue {
        g[libc::REG_EFL as usize] |= TF as libc::greg_t;
        s.stepping = true;
    }
}

impl ThreadState {
    /// Counts a fault of the guest and restarts the vCPU at its initial registers.
    fn restart(&mut self, g: &mut Gregs, signo: libc::c_int) -> Resume {
        self.faults += 1;
        FAULTS_SO_FAR.fetch_add(1, Ordering::AcqRel);
        let rip = g[libc::REG_RIP as usize] as u64;
        self.first_fault.get_or_insert((signo, rip));
        self.load_guest(g);
        Resume::Guest { fresh: true }
    }
}

/// The actions installed before ours, by signal.
static PREVIOUS: OnceLock<Vec<(libc::c_int, libc::sigaction)>> = OnceLock::new();

/// A signal that is not the guest's — a fault in host code (a hook, or a thread that runs no
/// guest), perhaps because guest code running in this process corrupted host memory — is never
/// a verdict on the kernel: it is reported on stderr, the handler installed before ours (Rust's
/// stack-overflow report) sees it, and the process exits with status 3.
///
/// # Safety
/// The arguments must be the kernel's, for a signal being handled now.
unsafe fn forward(signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) {
    // SAFETY: `ctx` is the kernel's context for this signal.
    let rip = unsafe { (*gregs(ctx))[libc::REG_RIP as usize] } as u64;
    // SAFETY: `info` is the kernel's siginfo; `si_addr` is defined for the fault signals.
    let addr = unsafe { (*info).si_addr() } as u64;
    report_unattributed(signo, rip, addr);
    let prev = PREVIOUS.get().and_then(|p| p.iter().find(|(s, _)| *s == signo)).map(|(_, a)| *a);
    if let Some(a) = prev.filter(|a| a.sa_sigaction != libc::SIG_DFL && a.sa_sigaction != libc::SIG_IGN) {
        if a.sa_flags & libc::SA_SIGINFO != 0 {
            // SAFETY: with SA_SIGINFO the stored address is a three-argument handler.
            let f: extern "C" fn(libc::c_int, *mut libc::siginfo_t, *mut libc::c_void) =
                unsafe { std::mem::transmute(a.sa_sigaction) };
            f(signo, info, ctx);
        } else {
            // SAFETY: without SA_SIGINFO the stored address is a one-argument handler.
            let f: extern "C" fn(libc::c_int) = unsafe { std::mem::transmute(a.sa_sigaction) };
            f(signo);
        }
    }
    // SAFETY: _exit is async-signal-safe and ends the process.
    unsafe { libc::_exit(3) }
}

/// Writes the report of a signal the harness cannot attribute to stderr, without allocating.
fn report_unattributed(signo: libc::c_int, rip: u64, addr: u64) {
    let mut buf = [0u8; 400];
    let mut n = 0;
    let mut put = |bytes: &[u8]| {
        let k = bytes.len().min(buf.len() - n);
        buf[n..n + k].copy_from_slice(&bytes[..k]);
        n += k;
    };
    put(b"pokesim hw: ");
    put(signal_name(signo).as_bytes());
    put(b" at rip ");
    put(&hex(rip));
    put(b" (address ");
    put(&hex(addr));
    put(b") outside guest code: not a verdict on the kernel but a pokesim bug, or host memory \
          corrupted by the scenario's code, which runs natively inside this process; exiting with status 3\n");
    // SAFETY: writing our own buffer to fd 2 (async-signal-safe).
    unsafe { libc::write(2, buf.as_ptr().cast(), n) };
}

/// `0x` and 16 hex digits.
fn hex(v: u64) -> [u8; 18] {
    let mut out = *b"0x0000000000000000";
    for i in 0..16 {
        out[17 - i] = b"0123456789abcdef"[(v >> (4 * i)) as usize & 0xf];
    }
    out
}

/// Installs the handlers once per process, remembering the actions they replace.
fn install() {
    PREVIOUS.get_or_init(|| {
        crate::bases::init();
        let mut previous = Vec::new();
        for signo in [ENTER, LEAVE, CHECK, crate::ccall::ABORT].into_iter().chain(FAULTS) {
            // SAFETY: a zeroed sigaction is valid; we fill handler, flags and an empty mask,
            // and pass valid pointers for the new and the old action.
            unsafe {
                let mut act: libc::sigaction = std::mem::zeroed();
                act.sa_sigaction = on_signal as *const () as usize;
                act.sa_flags = libc::SA_SIGINFO | libc::SA_ONSTACK;
                // A trap inside compiled C run natively from the SIGTRAP handler (the INT3
                // handler's code) must be delivered, not blocked (a blocked synchronous trap
                // kills the process): it escapes that call (crate::ccall).
                if signo == libc::SIGTRAP {
                    act.sa_flags |= libc::SA_NODEFER;
                }
                // Our handlers never nest over each other on one thread (they share its state).
                libc::sigemptyset(&mut act.sa_mask);
                libc::sigaddset(&mut act.sa_mask, ENTER);
                libc::sigaddset(&mut act.sa_mask, LEAVE);
                libc::sigaddset(&mut act.sa_mask, CHECK);
                let mut old: libc::sigaction = std::mem::zeroed();
                libc::sigaction(signo, &act, &mut old);
                previous.push((signo, old));
            }
        }
        previous
    });
}

/// Pins the calling thread to `cpu`; false if the kernel refused.
pub fn pin(cpu: usize) -> bool {
    // SAFETY: an all-zero `cpu_set_t` is the empty set; CPU_SET stays inside it for any index
    // below CPU_SETSIZE, which `cpu` (from sched_getaffinity) is.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Makes every system call whose instruction lies in `[start, end)` trap (`SIGSYS`) instead of
/// running, on this thread (docs/reference/hardware.md §5: torn bytes can decode as `syscall`,
/// which would run with the guest's registers). `seccomp_data` holds the instruction pointer
/// at offset 8 (low half) and 12 (high half).
fn forbid_syscalls_from(start: u64, end: u64) -> bool {
    let (hi, lo, end_lo) = ((start >> 32) as u32, start as u32, end as u32);
    if end >> 32 != start >> 32 {
        return false;
    }
    let stmt = |code: u32, k: u32| libc::sock_filter { code: code as u16, jt: 0, jf: 0, k };
    let jump = |code: u32, k: u32, jt: u8, jf: u8| libc::sock_filter { code: code as u16, jt, jf, k };
    let (ld, jeq, jge, ret) = (
        libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
        libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K,
        libc::BPF_JMP | libc::BPF_JGE | libc::BPF_K,
        libc::BPF_RET | libc::BPF_K,
    );
    let filter = [
        stmt(ld, 12),            // instruction pointer, high half
        jump(jeq, hi, 0, 4),     // other high half: allow
        stmt(ld, 8),             // low half
        jump(jge, lo, 0, 2),     // below the text: allow
        jump(jge, end_lo, 1, 0), // past the text: allow
        stmt(ret, libc::SECCOMP_RET_TRAP),
        stmt(ret, libc::SECCOMP_RET_ALLOW),
    ];
    let prog = libc::sock_fprog { len: filter.len() as u16, filter: filter.as_ptr().cast_mut() };
    // SAFETY: prctl with these options reads only `prog`, which points to a valid filter that
    // outlives the call (the kernel copies it); NO_NEW_PRIVS is required to install one.
    unsafe {
        libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0
            && libc::prctl(libc::PR_SET_SECCOMP, libc::SECCOMP_MODE_FILTER, &prog as *const libc::sock_fprog) == 0
    }
}

/// True if this host lets a thread install the seccomp guard guest threads need (tried on a
/// short-lived thread, whose filter ends with it).
pub fn guard_available() -> bool {
    std::thread::spawn(|| forbid_syscalls_from(0x1000, 0x2000)).join().unwrap_or(false)
}

/// Runs one guest thread: pinned to `cpu`, on an alternate signal stack, unable to make system
/// calls from the guest text `text`, in the guest from `regs` until [`LEAVE`] arrives. `me`
/// receives this thread's `pthread_t` before it enters.
fn guest_thread(
    vcpu: usize,
    regs: &Regs,
    text: (u64, u64),
    cpu: Option<usize>,
    me: &AtomicU64,
    entered: &AtomicBool,
) -> GuestReport {
    // SAFETY: pthread_self has no preconditions.
    let tid = unsafe { libc::pthread_self() };
    me.store(tid as u64, Ordering::Release);
    let pinned = cpu.filter(|&c| pin(c));
    if !forbid_syscalls_from(text.0, text.1) {
        // Not safe to run guest code that might decode as a system call: do not enter.
        entered.store(true, Ordering::Release);
        return GuestReport { cpu: pinned, faults: 0, first_fault: None, ran: false };
    }
    let mut alt = vec![0u8; ALT_STACK];
    // SAFETY: `alt` outlives the guest run (the old stack is put back before it is freed).
    let mut old: libc::stack_t = unsafe { std::mem::zeroed() };
    let new = libc::stack_t { ss_sp: alt.as_mut_ptr().cast(), ss_flags: 0, ss_size: ALT_STACK };
    // SAFETY: valid stack_t pointers; the new stack is ours and big enough for a signal frame.
    unsafe { libc::sigaltstack(&new, &mut old) };
    // The slot that lets every handler on this thread put the host's FS/GS bases back.
    let Some(bases) = crate::bases::register(alt.as_ptr() as usize) else {
        // SAFETY: putting back the alternate stack this thread had.
        unsafe { libc::sigaltstack(&old, std::ptr::null_mut()) };
        entered.store(true, Ordering::Release);
        return GuestReport { cpu: pinned, faults: 0, first_fault: None, ran: false };
    };
    STATE.with(|s| {
        // SAFETY: our handlers do not change this state while the thread is out of the guest
        // (ENTER and LEAVE are ignored then, and no fault is the guest's).
        let s = unsafe { &mut *s.get() };
        *s = ThreadState {
            in_guest: false,
            stepping: false,
            cpu: vcpu,
            guest: gregs_of(regs, &[0; 23]),
            host: [0; 23],
            faults: 0,
            first_fault: None,
        };
    });
    entered.store(true, Ordering::Release);
    // SAFETY: signalling this very thread; the handler switches to the guest and back.
    unsafe { libc::pthread_kill(tid, ENTER) };
    // Back from the guest (LEAVE restored the registers saved at entry, and the host's bases).
    drop(bases);
    // SAFETY: putting back the alternate stack this thread had.
    unsafe { libc::sigaltstack(&old, std::ptr::null_mut()) };
    drop(alt);
    STATE.with(|s| {
        // SAFETY: out of the guest; no further signal changes this state.
        let s = unsafe { &*s.get() };
        GuestReport { cpu: pinned, faults: s.faults, first_fault: s.first_fault, ran: true }
    })
}

/// The guest threads of a session in progress, as the controller sees them.
pub struct Guests<'a> {
    tids: &'a [AtomicU64],
    done: &'a [AtomicBool],
}

impl Guests<'_> {
    /// Asks every guest thread to stop at its loop head once for [`GuestHooks::step`]
    /// (single-stepping there; a thread already stepping goes on).
    pub fn checkpoint(&self) {
        for (t, d) in self.tids.iter().zip(self.done) {
            if !d.load(Ordering::Acquire) {
                // SAFETY: the thread is alive (it waits for the session's end after finishing).
                unsafe { libc::pthread_kill(t.load(Ordering::Acquire) as libc::pthread_t, CHECK) };
            }
        }
    }
}

/// [`run_guests_with`] without an INT3 handler ([`NoHandler`]): every trap and fault in a
/// guest is counted and restarts it.
pub fn run_guests<R>(
    regs: &[Regs],
    text: (u64, u64),
    cpus: &[usize],
    body: impl FnOnce() -> R,
) -> (R, Vec<GuestReport>) {
    run_guests_with(regs, text, cpus, &NoHandler, |_| body())
}

/// Runs one host thread per register file in the guest (thread `i`, vCPU `i`, pinned to
/// `cpus[i % n]` when there are CPUs), calls `body` while they run, then takes every thread
/// out of the guest and returns what each saw. `text` is the guest text's `(start, end)`: no
/// system call from there runs. `hooks` handles the guests' traps. The text and data the
/// guests use must stay mapped until this returns. One guest session per process at a time
/// (the handlers are process-wide).
pub fn run_guests_with<R>(
    regs: &[Regs],
    text: (u64, u64),
    cpus: &[usize],
    hooks: &dyn GuestHooks,
    body: impl FnOnce(&Guests<'_>) -> R,
) -> (R, Vec<GuestReport>) {
    run_mode(false, regs, text, cpus, hooks, body)
}

/// [`run_guests_with`], every guest single-stepped from its first instruction to the end:
/// `hooks.step` sees each instruction before it runs (its [`Step::Stop`] does not stop the
/// stepping). The first instruction of each vCPU runs before the first step.
pub fn run_guests_traced<R>(
    regs: &[Regs],
    text: (u64, u64),
    cpus: &[usize],
    hooks: &dyn GuestHooks,
    body: impl FnOnce(&Guests<'_>) -> R,
) -> (R, Vec<GuestReport>) {
    run_mode(true, regs, text, cpus, hooks, body)
}

fn run_mode<R>(
    traced: bool,
    regs: &[Regs],
    text: (u64, u64),
    cpus: &[usize],
    hooks: &dyn GuestHooks,
    body: impl FnOnce(&Guests<'_>) -> R,
) -> (R, Vec<GuestReport>) {
    static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _one = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    install();
    // SAFETY (of the lifetime extension): the pointer is cleared when `_installed` is dropped
    // (declared after `hooks`, dropped before it, also on a panic), after every thread that
    // could call the hooks has left the guest and been joined (`run_threads` returns or
    // unwinds only then).
    let mut hooks: &'static dyn GuestHooks =
        unsafe { std::mem::transmute::<&dyn GuestHooks, &'static dyn GuestHooks>(hooks) };
    let _installed = Installed::new(&raw mut hooks, traced);
    run_threads(regs, text, cpus, body)
}

/// The session's hooks installed in [`HOOKS`] (and whether it is traced) until dropped: a
/// panic or an early return never leaves them installed.
struct Installed;

impl Installed {
    fn new(hooks: *mut &'static dyn GuestHooks, traced: bool) -> Self {
        TRACED.store(traced, Ordering::Release);
        HOOKS.store(hooks, Ordering::Release);
        Installed
    }
}

impl Drop for Installed {
    fn drop(&mut self) {
        HOOKS.store(std::ptr::null_mut(), Ordering::Release);
        TRACED.store(false, Ordering::Release);
    }
}

/// The guest threads of a session, taken out of the guest and released when dropped — after
/// the controller's body returned, or while it unwinds — so that `std::thread::scope` can join
/// them.
struct Release<'a> {
    tids: &'a [AtomicU64],
    done: &'a [AtomicBool],
    release: &'a AtomicBool,
}

impl Drop for Release<'_> {
    fn drop(&mut self) {
        // A live guest thread always leaves at LEAVE (it cannot block signals: no system call
        // runs from the guest text). Bounded anyway, so that a thread that died is a failure,
        // not a hang.
        let mut tries = 0u64;
        while !self.done.iter().all(|d| d.load(Ordering::Acquire)) {
            tries += 1;
            if tries >= 100_000_000 {
                // It cannot be joined, and the session cannot end: a report, not a panic.
                eprintln!("pokesim hw: a guest thread did not leave the guest (a pokesim bug); exiting with status 3");
                std::process::exit(3);
            }
            for (t, d) in self.tids.iter().zip(self.done) {
                if !d.load(Ordering::Acquire) {
                    // SAFETY: the thread is alive (it waits for `release` after finishing).
                    unsafe { libc::pthread_kill(t.load(Ordering::Acquire) as libc::pthread_t, LEAVE) };
                }
            }
            std::thread::yield_now();
        }
        self.release.store(true, Ordering::Release);
    }
}

fn run_threads<R>(
    regs: &[Regs],
    text: (u64, u64),
    cpus: &[usize],
    body: impl FnOnce(&Guests<'_>) -> R,
) -> (R, Vec<GuestReport>) {
    let tids: Vec<AtomicU64> = regs.iter().map(|_| AtomicU64::new(0)).collect();
    let entered: Vec<AtomicBool> = regs.iter().map(|_| AtomicBool::new(false)).collect();
    let done: Vec<AtomicBool> = regs.iter().map(|_| AtomicBool::new(false)).collect();
    let release = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let handles: Vec<_> = regs
            .iter()
            .enumerate()
            .map(|(i, r)| {
                let (tid, ent, fin, rel) = (&tids[i], &entered[i], &done[i], &release);
                let cpu = (!cpus.is_empty()).then(|| cpus[i % cpus.len()]);
                scope.spawn(move || {
                    let report = guest_thread(i, r, text, cpu, tid, ent);
                    fin.store(true, Ordering::Release);
                    // Stay alive (a valid signal target) until the controller stops signalling.
                    while !rel.load(Ordering::Acquire) {
                        std::thread::yield_now();
                    }
                    report
                })
            })
            .collect();
        while !entered.iter().all(|e| e.load(Ordering::Acquire)) {
            std::thread::yield_now();
        }
        // Every thread has published its id: the guard may signal each.
        let guard = Release { tids: &tids, done: &done, release: &release };
        let result = body(&Guests { tids: &tids, done: &done });
        drop(guard);
        let reports = handles.into_iter().map(|h| h.join().expect("guest thread")).collect();
        (result, reports)
    })
}

/// The signal's name.
pub fn signal_name(signo: i32) -> &'static str {
    match signo {
        libc::SIGILL => "SIGILL",
        libc::SIGSEGV => "SIGSEGV",
        libc::SIGBUS => "SIGBUS",
        libc::SIGFPE => "SIGFPE",
        libc::SIGTRAP => "SIGTRAP",
        libc::SIGSYS => "SIGSYS (a system call from guest text)",
        _ => "a signal",
    }
}
