//! Creating Unicorn engines the way reference/unicorn.md §1, §6 and DESIGN.md §3 require:
//! a 1 MiB translation buffer set right after `Unicorn::new` (the default reserves 1 GiB per
//! engine), the QEMU64 CPU model (no `rdrand`), and `rdtsc`/`rdtscp` hooked to a simulated
//! counter so that no host clock leaks into a run — and reusing them.
//!
//! Creating an engine costs about 0.3 ms (QEMU builds its TCG context and a 32,768-bucket
//! translation hash table, and maps its code buffer) and destroying one a TLB shootdown; a
//! campaign of short runs spent ~40% of its time there (`perf` on `pokesim check`). So a
//! [`PooledEngine`] goes back to a per-thread pool when its vCPU or scratch executor is done,
//! *as new*: every memory region unmapped, every translation dropped, and the CPU state
//! restored from the context saved when the engine was created. Taking an engine from the
//! pool is therefore indistinguishable from creating one — the corpus's recorded trace hashes,
//! made with fresh engines, replay bit for bit on reused ones.

use std::cell::{Cell, RefCell};
use std::ffi::c_void;

use unicorn_engine::unicorn_const::{uc_error, Arch, ControlType, HookType, Mode, X86CpuModel};
use unicorn_engine::{Context, RegisterX86, Unicorn, X86Insn};

use crate::error::UcContext;
use crate::CpuError;

/// Translation buffer size per engine (Unicorn raises anything smaller to 1 MiB).
const TCG_BUFFER_BYTES: u32 = 1 << 20;

/// A fresh x86-64 engine with the project's settings, and the counter its `rdtsc` returns.
pub(crate) fn new_engine(tsc: &Cell<u64>) -> Result<Unicorn<'static, ()>, CpuError> {
    let mut uc = Unicorn::new(Arch::X86, Mode::MODE_64).ctx("Unicorn::new")?;
    let ct = ControlType::TCG_BUFFER_SIZE | ControlType::IO_WRITE;
    // SAFETY: the handle is live (owned by `uc`); TCG_BUFFER_SIZE|IO_WRITE takes one uint32
    // argument, passed as such; it must come before the first mem_map (uc_open is lazy).
    let err = unsafe { unicorn_engine::uc_ctl(uc.get_handle(), ct, TCG_BUFFER_BYTES) };
    if err != uc_error::OK {
        return Err(CpuError::Unicorn { call: "uc_ctl(TCG_BUFFER_SIZE)", err });
    }
    uc.ctl_set_cpu_model(X86CpuModel::QEMU64 as i32).ctx("ctl_set_cpu_model")?;
    hook_tsc(&mut uc, tsc, X86Insn::RDTSC)?;
    hook_tsc(&mut uc, tsc, X86Insn::RDTSCP)?;
    Ok(uc)
}

/// The `UC_HOOK_INSN` callback for rdtsc/rdtscp: returns the simulated counter in EDX:EAX
/// and returns 1, which tells Unicorn to skip the real instruction.
extern "C" fn tsc_hook(uc: *mut unicorn_engine::uc_engine, user_data: *mut c_void) -> i32 {
    // SAFETY: `user_data` is the `&Cell<u64>` registered in `hook_tsc`, which the owning vCPU
    // keeps alive (boxed) for as long as the engine exists; access is single-threaded.
    let value = unsafe { (*(user_data as *const Cell<u64>)).get() };
    // SAFETY: `uc` is the live engine that is calling us; register ids are valid x86 ones.
    unsafe {
        unicorn_engine::uc_reg_write(uc, RegisterX86::RAX as i32, (&(value & 0xffff_ffff) as *const u64).cast());
        unicorn_engine::uc_reg_write(uc, RegisterX86::RDX as i32, (&(value >> 32) as *const u64).cast());
        unicorn_engine::uc_reg_write(uc, RegisterX86::RCX as i32, (&0u64 as *const u64).cast());
    }
    1
}

fn hook_tsc(uc: &mut Unicorn<'static, ()>, tsc: &Cell<u64>, insn: X86Insn) -> Result<(), CpuError> {
    let mut handle: unicorn_engine::uc_hook = 0;
    // SAFETY: the crate's `add_insn_sys_hook` proxy returns void where the C side reads an int
    // (reference/unicorn.md §6), so the hook is registered raw. The callback has the
    // `uc_cb_insn_cpuid_t` signature; `tsc` outlives the engine (see `tsc_hook`); begin=1 >
    // end=0 means "all addresses"; the variadic argument is the instruction id.
    let err = unsafe {
        unicorn_engine::uc_hook_add(
            uc.get_handle(),
            &mut handle,
            HookType::INSN.0 as i32,
            tsc_hook as *mut c_void,
            tsc as *const Cell<u64> as *mut c_void,
            1,
            0,
            insn as i32,
        )
    };
    if err != uc_error::OK {
        return Err(CpuError::Unicorn { call: "uc_hook_add(INSN)", err });
    }
    Ok(())
}

/// Engines each thread keeps for reuse (beyond that, released engines are destroyed).
const POOLED_PER_THREAD: usize = 32;

/// An engine with its `rdtsc` counter (the hooks point at it, so they travel together) and
/// the CPU state it had when new.
pub(crate) struct Engine {
    pub(crate) uc: Unicorn<'static, ()>,
    pub(crate) tsc: Box<Cell<u64>>,
    fresh: Context,
}

thread_local! {
    static POOL: RefCell<Vec<Engine>> = const { RefCell::new(Vec::new()) };
}

impl Engine {
    fn create() -> Result<Engine, CpuError> {
        let tsc = Box::new(Cell::new(0));
        let uc = new_engine(&tsc)?;
        let fresh = uc.context_init().ctx("context_init")?;
        Ok(Engine { uc, tsc, fresh })
    }

    /// Puts the engine back as new: no memory mapped, no translation, the saved CPU state, the
    /// counter at zero.
    fn reset(&mut self) -> Result<(), uc_error> {
        for r in self.uc.mem_regions()? {
            self.uc.mem_unmap(r.begin, r.end - r.begin + 1)?;
        }
        self.uc.ctl_flush_tb()?;
        self.uc.context_restore(&self.fresh)?;
        self.tsc.set(0);
        Ok(())
    }
}

/// An engine from this thread's pool (or a new one), returned to the pool when dropped. The
/// owner must remove any hook it added (see [`PooledEngine::spoil`] if it cannot).
pub(crate) struct PooledEngine {
    engine: Option<Engine>,
    reusable: bool,
}

impl PooledEngine {
    /// An engine as new.
    pub(crate) fn take() -> Result<PooledEngine, CpuError> {
        let engine = match POOL.with(|p| p.borrow_mut().pop()) {
            Some(e) => e,
            None => Engine::create()?,
        };
        Ok(PooledEngine { engine: Some(engine), reusable: true })
    }

    /// Destroys the engine when dropped instead of pooling it (its state is not known).
    pub(crate) fn spoil(&mut self) {
        self.reusable = false;
    }

    fn engine(&self) -> &Engine {
        self.engine.as_ref().expect("present until dropped")
    }

    /// The engine.
    pub(crate) fn uc(&mut self) -> &mut Unicorn<'static, ()> {
        &mut self.engine.as_mut().expect("present until dropped").uc
    }

    /// The engine, read-only.
    pub(crate) fn uc_ref(&self) -> &Unicorn<'static, ()> {
        &self.engine().uc
    }

    /// The counter its `rdtsc` returns.
    pub(crate) fn tsc(&self) -> &Cell<u64> {
        &self.engine().tsc
    }
}

impl Drop for PooledEngine {
    fn drop(&mut self) {
        let Some(mut engine) = self.engine.take() else { return };
        if self.reusable && engine.reset().is_ok() {
            POOL.with(|p| {
                let mut pool = p.borrow_mut();
                if pool.len() < POOLED_PER_THREAD {
                    pool.push(engine);
                }
            });
        }
    }
}
