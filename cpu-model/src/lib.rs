//! # cpu-model — one pokesim vCPU
//!
//! A vCPU is one Unicorn x86-64 engine that executes real machine code one instruction at a
//! time (`emu_start(rip, 0, 0, 1)`, reference/unicorn.md §1) from a *private* copy of the text
//! page(s): its instruction view. What that view shows is decided by the fetch model of
//! DESIGN.md §2.4 (reference/x86-cmc.md §5): for every refresh unit the vCPU sees the text
//! truth as of some store epoch between its last serialization and now, and every such choice
//! is drawn from the caller's [`Chooser`], so a run stays a pure function of its decisions.
//!
//! The crate knows nothing about schedulers, protocols or scenarios. It offers:
//! - [`Vcpu`]: stepping, trap delivery (INT3 → [`StepOutcome::Int3`], anything else a
//!   [`Fault`]), serialization, register file ([`Regs`], a `pt_regs` look-alike);
//! - [`View`] and [`FetchModel`]: the per-vCPU instruction view and its parameters;
//! - [`SharedRegion`]: the data pages (stacks, counters) every engine maps;
//! - [`ReferenceExecutor`]: a scratch engine that runs one instruction from a given register
//!   state, the independent reference of the emulation oracle;
//! - [`TsoMemory`] and [`TsoCpu`]: x86-TSO data memory (per-CPU FIFO store buffers, drains as
//!   events of their own) and a CPU running fixed code against it ([`tso`], issue 25).

pub mod baseline;
mod engine;
mod error;
mod fetch;
mod insn;
pub mod kernel;
mod layout;
pub mod local;
mod memory;
mod reference;
mod regs;
pub mod testing;
pub mod tso;
mod tso_cpu;
mod vcpu;
mod view;

pub use error::CpuError;
pub use fetch::{FetchModel, FetchUnit, Staleness, StoreGranularity};
pub use insn::MAX_INSN_LEN;
pub use kernel::{Accesses, KernelCpu, KernelData, KernelFault, KernelMemory, KernelStep, MemAccess};
pub use layout::{Layout, PAGE_SIZE};
pub use memory::SharedRegion;
pub use reference::{ReferenceExecutor, ReferenceResult};
pub use regs::{Flag, Reg, Regs};
pub use tso::{BufferedStore, MemoryModel, TsoError, TsoMemory, TsoState};
pub use tso_cpu::{ordering, Ordering, TsoCpu, TsoStep};
pub use vcpu::{ExecutedInsn, Fault, LocalRun, StepOutcome, Vcpu, VcpuState};
pub use view::{Chooser, Epoch, Truth, View, ViewState};
