//! Calling a compiled protocol's C natively, with a way back: a call of a file's entry point
//! (`pokesim_patch()`, `poke_int3_handler()`, ...) on the host's CPU, through a small
//! trampoline that saves the callee-saved registers and the stack pointer first, so that code
//! which never returns — a `BUG()` (noreturn), a fault, a call the session abandons — is left
//! the way `longjmp()` leaves a function: the trampoline returns to its Rust caller as if the C
//! had returned, and says why it did not.
//!
//! Three ways out besides the return: a kernel service that gives up ([`bail`], e.g. `BUG()`),
//! a fault in the C (`SIGSEGV`, `SIGBUS`, `SIGILL`, `SIGFPE`, `SIGTRAP` — the signal handler
//! calls [`escape_from_signal`], which points the interrupted context at the trampoline's exit
//! so that `sigreturn` lands there), and [`ABORT`], the signal a watchdog sends a call that has
//! made no progress for too long ([`Watch`]). The C runs on the stack given (the patcher's
//! stack of the image's map) or on the current one (the INT3 handler runs on the guest
//! thread's signal stack); it needs no thread-local storage.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// The signal a watchdog sends to a thread whose native call made no progress for too long
/// (honoured only by the call it was meant for: [`Watch`]).
pub const ABORT: libc::c_int = libc::SIGVTALRM;

/// What the trampoline saves: the stack pointer after its pushes (0 when no call can be
/// escaped), whether the call was escaped, and the fault that escaped it.
#[repr(C)]
struct Frame {
    sp: u64,
    escaped: u64,
    /// Signal, instruction address, fault address.
    fault: [u64; 3],
    /// The call's serial, and the watch whose abort request it honours.
    serial: u64,
    watch: *const Watch,
}

// pokesim_hw_ccall(frame: *mut Frame, entry: u64, args: *const [u64; 3], stack_top: u64) -> u64
// pokesim_hw_escape(frame: *mut Frame) -> ! (returns from pokesim_hw_ccall, escaped = 1)
std::arch::global_asm!(
    ".text",
    ".p2align 4",
    ".globl pokesim_hw_ccall",
    ".type pokesim_hw_ccall,@function",
    "pokesim_hw_ccall:",
    "    push rbp",
    "    push rbx",
    "    push r12",
    "    push r13",
    "    push r14",
    "    push r15",
    "    mov r12, rdi",
    "    mov rax, rsi",
    "    mov r8, rdx",
    "    mov qword ptr [r12 + 8], 0",
    "    mov [r12], rsp",
    "    test rcx, rcx",
    "    jz 2f",
    "    mov rsp, rcx",
    "2:",
    "    and rsp, -16",
    "    mov rdi, [r8]",
    "    mov rsi, [r8 + 8]",
    "    mov rdx, [r8 + 16]",
    "    cld",
    "    call rax",
    "    mov rsp, [r12]",
    "    mov qword ptr [r12], 0",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    ".size pokesim_hw_ccall, . - pokesim_hw_ccall",
    ".p2align 4",
    ".globl pokesim_hw_escape",
    ".type pokesim_hw_escape,@function",
    "pokesim_hw_escape:",
    "    mov rsp, [rdi]",
    "    mov qword ptr [rdi], 0",
    "    mov qword ptr [rdi + 8], 1",
    "    xor eax, eax",
    "    cld",
    "    pop r15",
    "    pop r14",
    "    pop r13",
    "    pop r12",
    "    pop rbx",
    "    pop rbp",
    "    ret",
    ".size pokesim_hw_escape, . - pokesim_hw_escape",
);

extern "C" {
    fn pokesim_hw_ccall(frame: *mut Frame, entry: u64, args: *const [u64; 3], stack_top: u64) -> u64;
    fn pokesim_hw_escape(frame: *mut Frame) -> !;
}

thread_local! {
    /// The call in progress on this thread (null: none). Const-initialised, no `Drop`: read
    /// from signal handlers (after the host's FS base is back, `crate::bases`).
    static CURRENT: Cell<*mut Frame> = const { Cell::new(std::ptr::null_mut()) };
}

/// How a native call ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Ended {
    /// It returned this value (rax).
    Returned(u64),
    /// It faulted (or was aborted: signal [`ABORT`]) at `rip`; `addr` is the signal's
    /// fault address.
    Faulted {
        /// The signal.
        signo: i32,
        /// The instruction address.
        rip: u64,
        /// The faulting data address (`si_addr`).
        addr: u64,
    },
    /// A kernel service gave up on it ([`bail`]); the service recorded why.
    Bailed,
}

/// A native call's progress, as a watchdog on another thread sees it: which call is in
/// progress (its serial, 0 for none), when it last made progress, and which call the watchdog
/// asked to abort.
#[derive(Debug, Default)]
#[repr(C)]
pub struct Watch {
    /// The thread making the calls (`pthread_t`).
    pub tid: AtomicU64,
    /// The call in progress (0: none).
    pub serial: AtomicU64,
    /// Monotonic nanoseconds of its last progress.
    pub since: AtomicU64,
    /// The serial of the call the watchdog wants aborted.
    pub abort: AtomicU64,
    /// Why the watchdog aborted it (its own code).
    pub why: AtomicU64,
    /// True while the call is inside a kernel service's host code ([`service`]): not stalled,
    /// and neither a fault nor [`ABORT`] escapes from there.
    pub busy: std::sync::atomic::AtomicBool,
}

impl Watch {
    /// Notes progress of the call in progress (a service call, say).
    pub fn progress(&self) {
        self.since.store(now_ns(), Ordering::Release);
    }

    /// Nanoseconds the call in progress has gone without progress, and its serial (`None`
    /// when no call is in progress).
    pub fn stalled(&self) -> Option<(u64, u64)> {
        let serial = self.serial.load(Ordering::Acquire);
        (serial != 0 && !self.busy.load(Ordering::Acquire))
            .then(|| (now_ns().saturating_sub(self.since.load(Ordering::Acquire)), serial))
    }

    /// Asks the call `serial` to stop, for the reason `why`: it ends as [`Ended::Faulted`]
    /// with signal [`ABORT`] at the instruction it was running (a call that already ended, or
    /// one inside a service, ignores it).
    pub fn abort(&self, serial: u64, why: u64) {
        self.why.store(why, Ordering::Release);
        self.abort.store(serial, Ordering::Release);
        let tid = self.tid.load(Ordering::Acquire);
        if tid != 0 {
            // SAFETY: `tid` is the thread that registered with this watch and stays alive
            // while the session that owns the watch runs (its calls are made inside it).
            unsafe { libc::pthread_kill(tid as libc::pthread_t, ABORT) };
        }
    }
}

/// Monotonic nanoseconds (`clock_gettime`, async-signal-safe).
pub fn now_ns() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: writes one timespec to our local.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Calls `entry(args[0], args[1], args[2])` natively (System V ABI) on the stack whose top is
/// `stack_top` (0: the current stack), watched by `watch`.
///
/// # Safety
/// `entry` must be code that follows the System V ABI (the linked image's entry points are),
/// every pointer argument valid for what it does with it, and `stack_top` (if not 0) the top
/// of mapped writable memory large enough for the call. The caller must be ready for the call
/// to be cut short anywhere ([`Ended`]): no Rust frame is between it and the C but this one.
pub unsafe fn call(entry: u64, args: [u64; 3], stack_top: u64, watch: &Watch) -> Ended {
    static SERIAL: AtomicU64 = AtomicU64::new(1);
    let serial = SERIAL.fetch_add(1, Ordering::AcqRel);
    let mut frame = Frame { sp: 0, escaped: 0, fault: [0; 3], serial, watch };
    // SAFETY: pthread_self has no preconditions.
    watch.tid.store(unsafe { libc::pthread_self() } as u64, Ordering::Release);
    watch.busy.store(false, Ordering::Release);
    watch.progress();
    watch.serial.store(serial, Ordering::Release);
    let previous = CURRENT.replace(&raw mut frame);
    // SAFETY: per the caller's promise; the frame outlives the call (it is on this stack).
    let rax = unsafe { pokesim_hw_ccall(&raw mut frame, entry, &args, stack_top) };
    CURRENT.set(previous);
    watch.serial.store(0, Ordering::Release);
    // SAFETY: the trampoline and the escape wrote the frame through a pointer; read it back
    // as memory, not as values the compiler may have kept.
    let (escaped, fault) =
        unsafe { ((&raw const frame.escaped).read_volatile(), (&raw const frame.fault).read_volatile()) };
    match (escaped, fault) {
        (0, _) => Ended::Returned(rax),
        (_, [0, ..]) => Ended::Bailed,
        (_, [signo, rip, addr]) => Ended::Faulted { signo: signo as i32, rip, addr },
    }
}

/// Leaves the native call in progress on this thread at once ([`Ended::Bailed`]). Called by a
/// kernel service the C called (whose reason it recorded first); the frames between here and
/// the trampoline — the service's and the C's — are abandoned, so the caller must hold nothing
/// that needs dropping.
///
/// # Panics
/// If no native call is in progress on this thread (a service called from elsewhere).
pub fn bail() -> ! {
    let frame = CURRENT.get();
    // SAFETY: a non-null frame is the one of the call in progress on this thread, whose
    // trampoline saved its stack pointer (non-zero) before calling the C that called us.
    unsafe {
        assert!(!frame.is_null() && (*frame).sp != 0, "a kernel service bailed outside a native call");
        pokesim_hw_escape(frame)
    }
}

/// From a signal handler on this thread: if `signo` interrupted a native call (a fault in the
/// C, or the [`ABORT`] meant for this call), records it and points the signal context `ctx`
/// at the trampoline's exit, so that the handler's return ends the call ([`Ended::Faulted`]).
/// False if no call was interrupted (the handler carries on as it would).
///
/// # Safety
/// `info` and `ctx` must be the kernel's, for a signal being handled now on this thread, and
/// the host's FS base loaded (thread-local storage is read).
pub unsafe fn escape_from_signal(signo: libc::c_int, info: *mut libc::siginfo_t, ctx: *mut libc::c_void) -> bool {
    let frame = CURRENT.get();
    // SAFETY: a non-null frame is the live frame of this thread's call in progress.
    let Some(f) = (unsafe { frame.as_mut() }) else { return false };
    if f.sp == 0 {
        return false; // between the call's entry and the trampoline's save, or after its exit
    }
    // SAFETY: the watch outlives the call (it is borrowed by `call` for its duration).
    let watch = unsafe { &*f.watch };
    if watch.busy.load(Ordering::Acquire) {
        return false; // in a service's host code: not the C's doing (a fault there is pokesim's)
    }
    if signo == ABORT && watch.abort.load(Ordering::Acquire) != f.serial {
        return false; // meant for an earlier call
    }
    // SAFETY: per the caller's promise `ctx` is a live `ucontext_t` and `info` the siginfo.
    unsafe {
        let g = &mut (*ctx.cast::<libc::ucontext_t>()).uc_mcontext.gregs;
        let addr = if signo == ABORT { 0 } else { (*info).si_addr() as u64 };
        f.fault = [signo as u64, g[libc::REG_RIP as usize] as u64, addr];
        g[libc::REG_RIP as usize] = pokesim_hw_escape as *const () as libc::greg_t;
        g[libc::REG_RDI as usize] = frame as libc::greg_t;
        // No trap flag, no direction flag: the exit returns to Rust code.
        g[libc::REG_EFL as usize] &= !((1 << 8) | (1 << 10));
    }
    true
}

/// Runs `f` — a kernel service's host code, called by the C of the native call in progress
/// on this thread, which `watch` watches — marked busy: the watchdog does not count it as
/// stalled, and a signal there does not escape the call (a fault in host code is pokesim's,
/// reported as such; an [`ABORT`] waits for the C).
pub fn service<R>(watch: &Watch, f: impl FnOnce() -> R) -> R {
    watch.busy.store(true, Ordering::Release);
    let r = f();
    watch.progress();
    watch.busy.store(false, Ordering::Release);
    r
}
