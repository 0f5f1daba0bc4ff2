//! A protocol compiled from C, run on the vCPUs (DESIGN.md §2.15, issue 24): the second
//! implementation of the patching client and of the INT3 handler, beside the Rust step
//! machines of [`crate::patcher`] and [`crate::handler`].
//!
//! - [`Compiled`]: a linked [`KernelImage`] and its entry points (`pokesim_patch()`,
//!   `pokesim_poke()`, `pokesim_sync()`, and `poke_int3_handler()` or
//!   `smp_text_poke_int3_handler()`), checked once;
//! - [`client::CClient`]: a patching client whose CPU runs the file's caller of
//!   `text_poke_bp_batch()` (or `smp_text_poke_batch_finish()`) instruction by instruction;
//! - [`activation::CHandler`]: a `do_int3()` activation that runs the file's handler on the
//!   trapping vCPU itself, on a real `struct pt_regs` frame;
//! - [`service`]: the kernel services the file calls (`text_poke()`, `on_each_cpu()`,
//!   `mutex_lock()`, ...), carried out by pokesim when a CPU enters their slot on the service
//!   page.
//!
//! A step of compiled code runs instructions until (and including) the first one that makes an
//! access another CPU can observe — the file's data, an escaped patcher stack frame — or until
//! a service call: instructions in between touch only the CPU's own registers and stack, which
//! no other actor can see, so they are not scheduling points (the data races of the protocol
//! are still every interleaving of its shared accesses). Under x86-TSO (`--memory tso`,
//! DESIGN.md §2.16) a plain store to shared memory does not end the step — it only joins the
//! CPU's store buffer, and its drain is an event of its own ([`crate::event::Event::Drain`]) —
//! while a shared load, a locked access or a drain does.

pub mod activation;
pub mod client;
pub mod pt_regs;
pub mod service;

use std::sync::Arc;

use crate::error::Subject;
use crate::kernel_image::{KernelImage, LineRow, KARGS_BASE, KDATA_BASE, KEXC_BASE, KSTACK_BASE, KSTACK_SIZE};
use crate::SimError;

/// Where the file's functions return to: a slot at the end of the service page that no
/// function occupies. A CPU whose RIP reaches it has returned from the entry point pokesim
/// called.
pub const RETURN_ADDR: u64 = crate::kernel_image::SERVICE_BASE + 0xff0;

/// The most instructions one step of compiled code runs without a shared access (a private
/// loop still ends its step here, so an endless one spends the tick budget, never hangs).
pub const PRIVATE_RUN_MAX: usize = 4096;

/// The file's entry points.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Entries {
    /// `void pokesim_patch(const struct pokesim_poke *, unsigned int)`.
    pub patch: u64,
    /// `void pokesim_poke(unsigned long, const unsigned char *, unsigned int)`, if defined.
    pub poke: Option<u64>,
    /// `void pokesim_sync(void)`, if defined.
    pub sync: Option<u64>,
    /// `void pokesim_batch_add(const struct pokesim_poke *)`: queue one site under a
    /// `text_mutex` section of its own, if defined.
    pub batch_add: Option<u64>,
    /// `void pokesim_batch_finish(void)`: patch what is queued, under `text_mutex`, if defined.
    pub batch_finish: Option<u64>,
    /// `void pokesim_single(const struct pokesim_poke *)`: patch one site at once, under
    /// `text_mutex`, if defined.
    pub single: Option<u64>,
    /// `void pokesim_early(unsigned long, const unsigned char *, unsigned int)`:
    /// `text_poke_early()` of one site, if defined.
    pub early: Option<u64>,
    /// The INT3 handler and its name.
    pub handler: (u64, &'static str),
}

/// A protocol compiled from C: its image and its entry points.
pub struct Compiled {
    /// The linked image.
    pub image: KernelImage,
    /// Its entry points.
    pub entries: Entries,
    /// The built-in C file of the run's version (else a file of the user's, `image.source`).
    pub builtin: bool,
}

impl std::fmt::Debug for Compiled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Compiled").field("source", &self.image.source).field("hash", &self.image.hash).finish()
    }
}

impl PartialEq for Compiled {
    fn eq(&self, other: &Self) -> bool {
        self.image.hash == other.image.hash
    }
}

impl Eq for Compiled {}

/// The handler entry points pokesim looks for, in order.
const HANDLERS: [&str; 2] = ["poke_int3_handler", "smp_text_poke_int3_handler"];

impl Compiled {
    /// The file as messages name it: a built-in file by its name (`linux-5.5.c`), a user's by
    /// the path given.
    pub fn file(&self) -> &str {
        let source = &self.image.source;
        match self.builtin {
            true => source.rsplit('/').next().unwrap_or(source),
            false => source,
        }
    }

    /// Checks that `image` (the version's built-in file with `builtin`) has the entry points
    /// pokesim calls.
    pub fn new(image: KernelImage, builtin: bool) -> Result<Arc<Self>, SimError> {
        let missing = |what: &str| {
            SimError::invalid(
                Subject::ProtocolSource,
                format!("{}: {what} is not defined (see `pokesim program --protocol linux-5.5 --c`)", image.source),
            )
        };
        let patch = image.symbol("pokesim_patch").ok_or_else(|| {
            missing("the entry point `void pokesim_patch(const struct pokesim_poke *, unsigned int)`")
        })?;
        let handler = HANDLERS.iter().find_map(|&name| image.symbol(name).map(|a| (a, name))).ok_or_else(|| {
            missing("the INT3 handler `int poke_int3_handler(struct pt_regs *)` (or smp_text_poke_int3_handler)")
        })?;
        let entries = Entries {
            patch,
            poke: image.symbol("pokesim_poke"),
            sync: image.symbol("pokesim_sync"),
            batch_add: image.symbol("pokesim_batch_add"),
            batch_finish: image.symbol("pokesim_batch_finish"),
            single: image.symbol("pokesim_single"),
            early: image.symbol("pokesim_early"),
            handler,
        };
        Ok(Arc::new(Self { image, entries, builtin }))
    }

    /// The source line of the code at `addr`.
    pub fn line(&self, addr: u64) -> Option<&LineRow> {
        self.image.line(addr)
    }

    /// `function() file:line` of the code at `addr`, for traces and reports.
    pub fn locate(&self, addr: u64) -> String {
        match self.line(addr) {
            Some(r) => format!("{}() {}:{}", r.function, short(&r.file), r.line),
            None => format!("{addr:#x}"),
        }
    }
}

/// The file name without its directories.
fn short(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// Patching client `k`'s stack: `[low, top)`.
pub fn client_stack(k: usize) -> (u64, u64) {
    let low = KSTACK_BASE + k as u64 * KSTACK_SIZE;
    (low, low + KSTACK_SIZE)
}

/// Guest vCPU `cpu`'s exception stack (where its handler's `pt_regs` frame goes): `[low, top)`.
pub fn exception_stack(cpu: usize) -> (u64, u64) {
    let low = KEXC_BASE + cpu as u64 * KSTACK_SIZE;
    (low, low + KSTACK_SIZE)
}

/// The data every engine maps: from the file's data to the last exception stack.
pub fn data_region(cpus: usize) -> (u64, u64) {
    (KDATA_BASE, exception_stack(cpus.max(1) - 1).1)
}

/// The part of it the memory hook watches: the file's data and the patcher stacks (the call
/// arguments are constant; the exception stacks are each CPU's own).
pub fn watched() -> (u64, u64) {
    (KDATA_BASE, KEXC_BASE)
}

/// True if `addr` lies in the file's own data (`.data`, `.bss`).
pub fn in_file_data(addr: u64) -> bool {
    (KDATA_BASE..KARGS_BASE).contains(&addr)
}

/// The memory and the patching CPUs of a run of a compiled protocol.
pub struct CMachine {
    /// The file.
    pub compiled: Arc<Compiled>,
    /// Its code (behind the service page) and data, the call arguments and the stacks.
    pub mem: std::rc::Rc<cpu_model::KernelMemory>,
    /// One CPU per patching client.
    pub cpus: Vec<cpu_model::KernelCpu>,
    /// `nr_cpu_ids`: the guest vCPUs and the patching clients.
    pub nr_cpu_ids: usize,
}

impl CMachine {
    /// Loads `compiled` for `cpus` guest vCPUs and `clients` patching clients, with the
    /// call arguments `args` at [`KARGS_BASE`], its shared data under `model`.
    pub fn new(
        compiled: Arc<Compiled>,
        (cpus, clients): (usize, usize),
        args: &[u8],
        text: &crate::text::TextMemory,
        model: cpu_model::MemoryModel,
    ) -> Result<Self, cpu_model::CpuError> {
        use crate::kernel_image::{KCODE_BASE, SERVICE_BASE};
        let image = &compiled.image;
        let mut code = vec![0xf4u8; (KCODE_BASE - SERVICE_BASE) as usize];
        code.extend_from_slice(&image.code);
        let (low, high) = data_region(cpus);
        let (text_base, text) = (text.end() - text.initial().len() as u64, text.initial());
        let data = cpu_model::KernelData {
            base: low,
            shared: KEXC_BASE - low,
            private: high - KEXC_BASE,
            model,
            cpus: cpus + clients,
        };
        let mem = std::rc::Rc::new(cpu_model::KernelMemory::new(SERVICE_BASE, &code, data, text_base, text));
        let fits = mem.init(KDATA_BASE, &image.data).and(mem.init(KARGS_BASE, args));
        fits.ok_or_else(|| cpu_model::CpuError::Layout("the compiled protocol's data does not fit".into()))?;
        let regs = cpu_model::Regs::default();
        let cpus_of = (0..clients).map(|k| cpu_model::KernelCpu::new(&mem, watched(), &regs, cpus + k));
        let kcpus = cpus_of.collect::<Result<Vec<_>, _>>()?;
        Ok(Self { compiled, mem, cpus: kcpus, nr_cpu_ids: cpus + clients })
    }
}
