//! The host probe: whether this machine can run the protocol natively, and what it is.
//! Mirrors the refusals of docs/reference/hardware.md §9: not x86-64 Linux, fewer than two
//! CPUs available to the process, no `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE` (Linux ≥
//! 4.16, `include/uapi/linux/membarrier.h`; seccomp sandboxes such as gVisor refuse it), or no
//! seccomp filters for the guest threads' system-call guard.

/// `MEMBARRIER_CMD_QUERY`.
const CMD_QUERY: libc::c_int = 0;
/// `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`.
const CMD_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 1 << 5;
/// `MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE`.
const CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: libc::c_int = 1 << 6;

/// Why the host cannot run the protocol natively.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// Not x86-64 Linux.
    #[error("running on real CPUs needs x86-64 Linux; this is {0}")]
    Platform(String),
    /// Fewer than two CPUs to run a patcher beside a guest.
    #[error("running on real CPUs needs at least 2 CPUs; this process may use {0}")]
    Cpus(usize),
    /// `membarrier` cannot serialize the other CPUs.
    #[error("membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE) is not available: {0}")]
    SyncCore(String),
    /// A guest thread cannot be kept from making system calls (no seccomp filters).
    #[error("guest threads need a seccomp filter, which this host refuses: {0}")]
    Guard(String),
    /// The scenario's script cannot be repeated on real CPUs.
    #[error("this scenario cannot run on real CPUs: {0}")]
    Program(String),
    /// The scenario's own code misbehaves with no patching race ([`crate::dryrun`]): a fault,
    /// an INT3, leaving its text or stack, FS/GS use, or a spin — with the instruction and
    /// its address.
    #[error("the scenario's code is refused: {0}")]
    Guest(String),
    /// The guest's text or data cannot be mapped where its code expects it.
    #[error("mapping the guest at {addr:#x}: {reason}")]
    Mapping {
        /// The guest address.
        addr: u64,
        /// What the kernel said.
        reason: String,
    },
}

/// What the host is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Host {
    /// The CPUs this process may run on (`sched_getaffinity`), in order.
    pub cpus: Vec<usize>,
    /// The CPU model (`model name` of `/proc/cpuinfo`).
    pub cpu_model: String,
    /// True if the CPU reports running under a hypervisor (the `hypervisor` cpuinfo flag).
    pub hypervisor: bool,
    /// The kernel release (`uname -r`).
    pub kernel: String,
    /// The hypervisor's vendor signature (CPUID leaf `0x40000000`: `KVMKVMKVM`,
    /// `Microsoft Hv`, `VMwareVMware`, …), when there is a hypervisor.
    pub hypervisor_vendor: Option<String>,
}

/// Probes the host; registers this process for `MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE`
/// (idempotent; cheapest before other threads exist).
pub fn probe() -> Result<Host, Refusal> {
    if !cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        return Err(Refusal::Platform(format!("{} {}", std::env::consts::OS, std::env::consts::ARCH)));
    }
    let cpus = allowed_cpus();
    if cpus.len() < 2 {
        return Err(Refusal::Cpus(cpus.len()));
    }
    register_sync_core()?;
    if !crate::guest::guard_available() {
        let why = std::io::Error::last_os_error();
        return Err(Refusal::Guard(format!("prctl(PR_SET_SECCOMP) on a thread failed ({why})")));
    }
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let field = |name: &str| {
        cpuinfo
            .lines()
            .find_map(|l| l.split_once(':').filter(|(k, _)| k.trim() == name).map(|(_, v)| v.trim().to_string()))
    };
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default().trim().to_string();
    let hypervisor = field("flags").is_some_and(|f| f.split_whitespace().any(|x| x == "hypervisor"));
    Ok(Host {
        cpus,
        cpu_model: field("model name").unwrap_or_else(|| "unknown".into()),
        hypervisor,
        kernel,
        hypervisor_vendor: hypervisor.then(hypervisor_vendor).flatten(),
    })
}

/// CPUID leaf `0x40000000` (only meaningful when the `hypervisor` flag is set): the vendor
/// signature in EBX, ECX, EDX.
#[cfg(target_arch = "x86_64")]
fn hypervisor_vendor() -> Option<String> {
    // SAFETY: CPUID exists on every x86-64 CPU; a leaf the CPU does not define returns data,
    // never faults. (Safe to call from Rust 1.89; `unsafe` for the older toolchains we support.)
    #[allow(unused_unsafe)]
    let r = unsafe { std::arch::x86_64::__cpuid(0x4000_0000) };
    let bytes: Vec<u8> = [r.ebx, r.ecx, r.edx].iter().flat_map(|w| w.to_le_bytes()).collect();
    let name = String::from_utf8_lossy(&bytes).trim_matches(char::from(0)).trim().to_string();
    (!name.is_empty()).then_some(name)
}

#[cfg(not(target_arch = "x86_64"))]
fn hypervisor_vendor() -> Option<String> {
    None
}

/// The CPUs this process may run on.
fn allowed_cpus() -> Vec<usize> {
    // SAFETY: `cpu_set_t` is plain data for which all-zero is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is a valid, writable `cpu_set_t` of the size passed; pid 0 is this thread.
    let rc = unsafe { libc::sched_getaffinity(0, size_of::<libc::cpu_set_t>(), &mut set) };
    if rc != 0 {
        return Vec::new();
    }
    // SAFETY: `CPU_ISSET` reads the set within its fixed size for every index below it.
    (0..libc::CPU_SETSIZE as usize).filter(|&c| unsafe { libc::CPU_ISSET(c, &set) }).collect()
}

fn membarrier(cmd: libc::c_int) -> Result<libc::c_long, std::io::Error> {
    // SAFETY: membarrier takes (int cmd, unsigned int flags, int cpu_id) and touches no memory
    // of ours; flags 0 and cpu_id 0 are valid for every command used here.
    let rc = unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0 as libc::c_uint, 0 as libc::c_int) };
    if rc < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(rc)
}

fn register_sync_core() -> Result<(), Refusal> {
    let supported = membarrier(CMD_QUERY).map_err(|e| Refusal::SyncCore(format!("MEMBARRIER_CMD_QUERY: {e}")))?;
    let needed = libc::c_long::from(CMD_PRIVATE_EXPEDITED_SYNC_CORE | CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE);
    if supported & needed != needed {
        return Err(Refusal::SyncCore(format!(
            "the kernel offers commands {supported:#x}, without SYNC_CORE (Linux >= 4.16)"
        )));
    }
    membarrier(CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE)
        .map_err(|e| Refusal::SyncCore(format!("MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED_SYNC_CORE: {e}")))?;
    Ok(())
}

/// `text_poke_sync()` on real CPUs: every running thread of this process executes a core
/// serializing instruction before this returns, and every other one before it next runs user
/// code (membarrier SYNC_CORE; the caller must have passed [`probe`]).
pub fn sync_core() -> Result<(), Refusal> {
    membarrier(CMD_PRIVATE_EXPEDITED_SYNC_CORE)
        .map(|_| ())
        .map_err(|e| Refusal::SyncCore(format!("MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE: {e}")))
}
