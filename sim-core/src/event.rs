//! The events a tick can run (DESIGN.md §2.2). At every tick the machine lists the enabled
//! events in this canonical order — guest steps, handler steps, IPI deliveries by vCPU index,
//! then the patching clients by index, then (with `[interrupts]`) the interrupt deliveries to
//! vCPUs and to patching clients' CPUs, by index, then (under x86-TSO, DESIGN.md §2.16) the
//! store-buffer drains by CPU — and the scheduler picks one.

use std::fmt;

/// One schedulable event.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Event {
    /// vCPU i fetches and executes one instruction.
    GuestStep(usize),
    /// vCPU i runs the next micro-step of the INT3 handler it is in.
    HandlerStep(usize),
    /// The pending sync IPI is delivered to vCPU i: `sync_core()` and acknowledge.
    IpiDeliver(usize),
    /// Patching client `k` runs its next operation: client 0 is the workload's patcher
    /// (ftrace, static_call, ...), the others kprobes that arm and disarm themselves
    /// ([`crate::workload::Kprobe::cycles`]), serialised with it by `text_mutex`.
    Patcher(usize),
    /// An external interrupt is delivered to vCPU i ([`crate::interrupt`]): it pushes an
    /// interrupt frame, clears IF and jumps to the handler. After [`Event::Patcher`] so that a
    /// run without interrupts lists its events exactly as before.
    Interrupt(usize),
    /// An external interrupt is delivered to patching client k's CPU (`smp_processor_id()` =
    /// vCPUs + k): the client stops and its CPU runs the handler, one [`Event::Patcher`] step
    /// per instruction, until the handler's IRET.
    PatcherInterrupt(usize),
    /// Under x86-TSO, the oldest store in CPU `c`'s buffer of the compiled protocol's kernel
    /// data reaches memory (`c` is `smp_processor_id()`: vCPU `i` is CPU `i`, patching client
    /// `k` is CPU `cpus + k`). Enabled while the buffer is not empty.
    Drain(usize),
}

impl Event {
    /// The vCPU the event belongs to, if any.
    pub fn cpu(self) -> Option<usize> {
        match self {
            Event::GuestStep(i) | Event::HandlerStep(i) | Event::IpiDeliver(i) | Event::Interrupt(i) => Some(i),
            Event::Patcher(_) | Event::PatcherInterrupt(_) | Event::Drain(_) => None,
        }
    }

    /// The patching client the event belongs to, if any.
    pub fn client(self) -> Option<usize> {
        match self {
            Event::Patcher(k) | Event::PatcherInterrupt(k) => Some(k),
            _ => None,
        }
    }
}

impl fmt::Display for Event {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Event::GuestStep(i) => write!(f, "cpu{i} step"),
            Event::HandlerStep(i) => write!(f, "cpu{i} handler"),
            Event::IpiDeliver(i) => write!(f, "cpu{i} ipi"),
            Event::Patcher(0) => f.write_str("patcher"),
            Event::Patcher(k) => write!(f, "patcher{k}"),
            Event::Interrupt(i) => write!(f, "cpu{i} irq"),
            Event::PatcherInterrupt(0) => f.write_str("patcher irq"),
            Event::PatcherInterrupt(k) => write!(f, "patcher{k} irq"),
            Event::Drain(c) => write!(f, "cpu{c} drain"),
        }
    }
}
