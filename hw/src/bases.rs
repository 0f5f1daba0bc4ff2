//! The FS and GS base registers of guest threads — the containment of guest code that runs
//! inside this process. The host keeps its thread-local storage at FS (glibc's thread control
//! block, Rust's `thread_local!`): a guest that wrote `fs:[0]` with the host's FS base would
//! corrupt it, and one that ran `wrfsbase` would make the next signal handler fault on its
//! first thread-local access, killing the process with no report. So the guest never runs with
//! the host's bases: it enters (and restarts) with FS and GS base 0, where an `fs:`/`gs:`
//! access is an access near address 0 — a fault of the guest, counted like any other — and
//! every signal handler, first thing, saves the guest's bases and loads the host's before any
//! thread-local access, putting the guest's back when it returns to guest code.
//!
//! A handler finds its thread's slot without thread-local storage: the kernel records the
//! thread's alternate signal stack in the signal context (`uc_stack`), and each guest thread
//! registers its own. With `FSGSBASE` (Linux ≥ 5.9 on a CPU that has it) the bases are read
//! and written by instruction; otherwise by `arch_prctl` (and the guest cannot change them).

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};

/// Guest threads that can hold a slot at once.
const SLOTS: usize = sim_core::config::MAX_CPUS;
/// `HWCAP2_FSGSBASE` in `AT_HWCAP2`: user mode may run `rdfsbase`/`wrfsbase`.
const HWCAP2_FSGSBASE: u64 = 1 << 1;
/// `arch_prctl` codes (`asm/prctl.h`).
const ARCH_SET_GS: u64 = 0x1001;
const ARCH_SET_FS: u64 = 0x1002;
const ARCH_GET_FS: u64 = 0x1003;
const ARCH_GET_GS: u64 = 0x1004;

/// One guest thread's bases.
struct Slot {
    /// Its alternate signal stack (0: the slot is free).
    alt: AtomicUsize,
    host_fs: AtomicU64,
    host_gs: AtomicU64,
    guest_fs: AtomicU64,
    guest_gs: AtomicU64,
    /// The guest's bases are in the registers (the thread runs guest code, or a handler has
    /// not switched yet).
    guest_loaded: AtomicBool,
}

static TABLE: [Slot; SLOTS] = [const {
    Slot {
        alt: AtomicUsize::new(0),
        host_fs: AtomicU64::new(0),
        host_gs: AtomicU64::new(0),
        guest_fs: AtomicU64::new(0),
        guest_gs: AtomicU64::new(0),
        guest_loaded: AtomicBool::new(false),
    }
}; SLOTS];
/// True if the CPU and kernel let user mode read and write the bases by instruction.
static FSGSBASE: AtomicBool = AtomicBool::new(false);

/// Reads the host's capability once (before any guest runs).
pub(crate) fn init() {
    // SAFETY: getauxval reads the process's auxiliary vector; it has no preconditions.
    let caps = unsafe { libc::getauxval(libc::AT_HWCAP2) } as u64;
    FSGSBASE.store(caps & HWCAP2_FSGSBASE != 0, Ordering::Release);
}

/// A guest thread's slot, freed when dropped.
pub(crate) struct Registration(usize);

/// Registers the calling thread, whose alternate signal stack starts at `alt`, with its
/// current (host) bases. `None` if every slot is taken.
pub(crate) fn register(alt: usize) -> Option<Registration> {
    let i = TABLE.iter().position(|s| s.alt.compare_exchange(0, alt, Ordering::AcqRel, Ordering::Acquire).is_ok())?;
    let s = &TABLE[i];
    // SAFETY: reading this thread's own bases (a syscall that touches no memory of ours).
    let (fs, gs) = unsafe { (get(ARCH_GET_FS), get(ARCH_GET_GS)) };
    s.host_fs.store(fs, Ordering::Release);
    s.host_gs.store(gs, Ordering::Release);
    s.guest_loaded.store(false, Ordering::Release);
    Some(Registration(i))
}

impl Drop for Registration {
    fn drop(&mut self) {
        TABLE[self.0].alt.store(0, Ordering::Release);
    }
}

/// First thing in a signal handler: if this is a guest thread whose guest bases are loaded,
/// saves them and loads the host's. Touches no thread-local storage. Returns the thread's slot
/// (`None` on a thread that is not a guest's).
///
/// # Safety
/// `ctx` must be the `ucontext_t` the kernel passed to an `SA_SIGINFO` handler.
pub(crate) unsafe fn enter(ctx: *mut libc::c_void) -> Option<usize> {
    // SAFETY: per the caller's promise `ctx` points to a live `ucontext_t`.
    let alt = unsafe { (*ctx.cast::<libc::ucontext_t>()).uc_stack.ss_sp } as usize;
    if alt == 0 {
        return None;
    }
    let i = TABLE.iter().position(|s| s.alt.load(Ordering::Acquire) == alt)?;
    let s = &TABLE[i];
    if s.guest_loaded.load(Ordering::Acquire) {
        // SAFETY: switching this thread's own bases; nothing between here and the handler's
        // return to guest code uses the guest's.
        unsafe {
            if FSGSBASE.load(Ordering::Acquire) {
                s.guest_fs.store(rd_fs(), Ordering::Release);
                s.guest_gs.store(rd_gs(), Ordering::Release);
            }
            set(ARCH_SET_FS, s.host_fs.load(Ordering::Acquire));
            set(ARCH_SET_GS, s.host_gs.load(Ordering::Acquire));
        }
        s.guest_loaded.store(false, Ordering::Release);
    }
    Some(i)
}

/// Last thing in a signal handler of guest thread `slot` that returns to guest code: loads the
/// guest's bases — zero if the guest (re)starts from its initial registers (`fresh`), else the
/// ones [`enter`] saved. No thread-local storage may be touched after this until the handler
/// returns.
pub(crate) fn leave_to_guest(slot: usize, fresh: bool) {
    let s = &TABLE[slot];
    if fresh {
        s.guest_fs.store(0, Ordering::Release);
        s.guest_gs.store(0, Ordering::Release);
    }
    s.guest_loaded.store(true, Ordering::Release);
    // SAFETY: switching this thread's own bases just before it returns to guest code, which
    // uses no thread-local storage of the host.
    unsafe {
        set(ARCH_SET_GS, s.guest_gs.load(Ordering::Acquire));
        set(ARCH_SET_FS, s.guest_fs.load(Ordering::Acquire));
    }
}

/// Writes a base: by instruction with `FSGSBASE`, else by `arch_prctl` (a raw system call:
/// the libc wrapper's `errno` is thread-local).
///
/// # Safety
/// The thread must touch no thread-local storage until FS holds the host's base again.
unsafe fn set(code: u64, value: u64) {
    if FSGSBASE.load(Ordering::Acquire) {
        // SAFETY: FSGSBASE is enabled for user mode (HWCAP2), so these do not fault; they only
        // change this thread's base.
        unsafe {
            if code == ARCH_SET_FS {
                std::arch::asm!("wrfsbase {}", in(reg) value, options(nostack, preserves_flags));
            } else {
                std::arch::asm!("wrgsbase {}", in(reg) value, options(nostack, preserves_flags));
            }
        }
    } else {
        // SAFETY: arch_prctl(ARCH_SET_FS/GS, addr) changes only this thread's base.
        unsafe { arch_prctl(code, value) };
    }
}

/// Reads a base by `arch_prctl` (outside signal handlers).
///
/// # Safety
/// `code` is `ARCH_GET_FS` or `ARCH_GET_GS`.
unsafe fn get(code: u64) -> u64 {
    let mut v = 0u64;
    // SAFETY: the kernel writes one u64 to the address given, which is `v`.
    unsafe { arch_prctl(code, &raw mut v as u64) };
    v
}

/// # Safety
/// FSGSBASE must be enabled.
unsafe fn rd_fs() -> u64 {
    let v: u64;
    // SAFETY: per the caller's promise the instruction is allowed in user mode.
    unsafe { std::arch::asm!("rdfsbase {}", out(reg) v, options(nostack, nomem, preserves_flags)) };
    v
}

/// # Safety
/// FSGSBASE must be enabled.
unsafe fn rd_gs() -> u64 {
    let v: u64;
    // SAFETY: per the caller's promise the instruction is allowed in user mode.
    unsafe { std::arch::asm!("rdgsbase {}", out(reg) v, options(nostack, nomem, preserves_flags)) };
    v
}

/// `arch_prctl(code, arg)` as a raw system call.
///
/// # Safety
/// As the system call's contract for `code`.
unsafe fn arch_prctl(code: u64, arg: u64) -> i64 {
    let rc: i64;
    // SAFETY: the `syscall` instruction with the kernel's x86-64 convention; it clobbers rcx
    // and r11 only.
    unsafe {
        std::arch::asm!(
            "syscall",
            inlateout("rax") libc::SYS_arch_prctl => rc,
            in("rdi") code,
            in("rsi") arg,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    rc
}
