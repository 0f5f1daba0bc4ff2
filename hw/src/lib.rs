//! # hw — the protocol on the host's real CPUs
//!
//! The simulator's verdicts rest on a fetch model chosen by the user; this crate runs the same
//! guest code and protocol on real x86-64 CPUs, the way litmus7's `-variant self` runs
//! self-modifying tests on AArch64 hardware (docs/reference/hardware.md is the design
//! research). Its pieces, each tested on the host:
//!
//! - [`host`]: what the host can do — x86-64 Linux, how many CPUs this process may use,
//!   `membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED_SYNC_CORE)` (Linux ≥ 4.16), the CPU model and
//!   whether it is a virtual machine — or a [`Refusal`] that says why not;
//! - [`text`]: the guest text as two views of one `memfd` — executable at the guest's own base
//!   address, writable elsewhere — so no page is ever writable and executable, and a poke is a
//!   store through the writable alias (what `text_poke()` does through its temporary mm);
//! - [`host::sync_core`]: `text_poke_sync()`, the IPI + serialization of every thread of the
//!   process (membarrier SYNC_CORE; docs/reference/hardware.md §1);
//! - [`data`]: the guest's data region (stacks, counters) at its own address;
//! - [`guest`]: guest threads — the workload's loop running natively on pinned host threads,
//!   entered and left by signals (the handler swaps the signal context's register file), every
//!   fault in the guest counted and the vCPU restarted;
//! - `bases` (private): the FS and GS bases — the guest never runs with the host's, and every
//!   signal handler puts the host's back before it touches thread-local storage;
//! - [`dryrun`]: the guest alone — each image of the script run natively, single-stepped,
//!   without any patching; a guest that faults, leaves its text or stack, uses FS/GS or spins
//!   is refused before any session;
//! - [`kernel_map`]: a protocol compiled from C — the linked image the simulator runs —
//!   mapped at its own fixed addresses, its service page's slots jumping to host functions;
//! - [`ccall`]: calling that C natively through a trampoline that a `BUG()`, a fault or a
//!   watchdog's abort escapes, longjmp-style, back to Rust;
//! - [`session`]: the kernel's protocols — `sim_core::Patcher` stepped on a host thread and
//!   `sim_core::Handler` run from the guests' `SIGTRAP` handler under one lock (the
//!   simulator's data model), or a compiled file's own patcher and handler run natively with
//!   its kernel services carried out on the hardware; the workload invariant checked at the
//!   loop head, every violation recorded with its round, phase and bytes ([`HwReport`]).
//!
//! The command line is `pokesim hw` (crate `scenarios`, module `hardware`).

#![deny(missing_docs)]

mod bases;
pub mod ccall;
pub mod data;
pub mod dryrun;
pub mod guest;
pub mod host;
pub mod kernel_map;
pub mod session;
pub mod text;

pub use data::DataMapping;
pub use guest::{run_guests, run_guests_traced, run_guests_with, GuestHooks, GuestReport, Guests, Step};
pub use host::{probe, sync_core, Host, Refusal};
pub use session::{HwEvent, HwReport, Limits};
pub use text::TextMapping;
