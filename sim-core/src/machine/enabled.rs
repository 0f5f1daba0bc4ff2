//! The enabled set of a tick's stage 1 (DESIGN.md §2.2), kept up to date incrementally.
//!
//! The canonical order is: each vCPU's handler step or guest step (by vCPU), then the IPI
//! deliveries (by vCPU), then the patching clients that can move. A tick changes at most one
//! vCPU's entries — the vCPU it stepped — unless a patching client moved (an IPI broadcast
//! makes every vCPU's delivery pending) or the machine was restored; so instead of listing
//! every vCPU on every tick (which made a 256-vCPU tick cost 3× a 4-vCPU one), only the
//! stepped vCPU's two entries are found (binary search) and replaced. The patching clients
//! are listed afresh every tick (there are at most [`crate::config::MAX_CLIENTS`]). In debug
//! builds every refresh is checked against the list built from scratch.

use crate::driver::{Activation, Client, PatchingClient};
use crate::event::Event;
use crate::ipi::Ipi;
use crate::patching::PatchState;

/// What changed since the last refresh.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
enum Stale {
    /// Nothing: the vCPU part is current.
    Clean,
    /// Only this vCPU's entries.
    Cpu(usize),
    /// Anything: rebuild the vCPU part.
    #[default]
    All,
}

/// The vCPU state the enabled set is computed from.
pub(crate) struct CpuStates<'a> {
    /// Each vCPU's running handler, if any.
    pub handlers: &'a [Option<Activation>],
    /// Each vCPU that has stopped (a finite guest).
    pub finished: &'a [bool],
    /// Pending IPIs.
    pub ipi: &'a Ipi,
    /// With `[interrupts]`: each vCPU's `RFLAGS.IF` (an IPI waits while it is clear).
    pub irq_if: Option<&'a [bool]>,
}

impl CpuStates<'_> {
    /// vCPU `i`'s step event, if it has one.
    fn step(&self, i: usize) -> Option<Event> {
        if self.handlers[i].is_some() {
            Some(Event::HandlerStep(i))
        } else if !self.finished[i] {
            Some(Event::GuestStep(i))
        } else {
            None
        }
    }

    /// vCPU `i`'s IPI delivery, if enabled (at an instruction boundary, never in the handler).
    fn delivery(&self, i: usize) -> Option<Event> {
        let masked = self.irq_if.is_some_and(|f| !f[i]);
        (self.ipi.pending(i) && self.handlers[i].is_none() && !masked).then_some(Event::IpiDeliver(i))
    }

    /// The vCPU part of the enabled set, built from scratch.
    fn all(&self, out: &mut Vec<Event>) {
        out.clear();
        out.extend((0..self.handlers.len()).filter_map(|i| self.step(i)));
        out.extend((0..self.handlers.len()).filter_map(|i| self.delivery(i)));
    }
}

/// The enabled events, in canonical order. (`Default` is an empty set that allocates nothing,
/// for taking the set out of the machine while the scheduler looks at both.)
#[derive(Default)]
pub(crate) struct EnabledSet {
    /// The vCPU part (`..cpu_part`), then the patching clients.
    events: Vec<Event>,
    cpu_part: usize,
    stale: Stale,
}

impl EnabledSet {
    /// An empty set that rebuilds everything at its first refresh.
    pub fn new(cpus: usize) -> Self {
        EnabledSet { events: Vec::with_capacity(2 * cpus + 4), cpu_part: 0, stale: Stale::All }
    }

    /// The events, in canonical order (as of the last refresh).
    pub fn events(&self) -> &[Event] {
        &self.events
    }

    /// Notes that `event` ran: its vCPU's entries may have changed (a patching client's move
    /// may have changed every vCPU's).
    pub fn ran(&mut self, event: Event) {
        self.stale = match (self.stale, event.cpu()) {
            (Stale::Clean, Some(i)) => Stale::Cpu(i),
            (Stale::Cpu(j), Some(i)) if i == j => Stale::Cpu(i),
            _ => Stale::All,
        };
    }

    /// Notes that anything may have changed (a restored state).
    pub fn invalidate(&mut self) {
        self.stale = Stale::All;
    }

    /// Brings the set up to date with `cpus` and the patching clients.
    /// `client_in[k]`: patching client k's CPU is in an interrupt handler (its next step is the
    /// handler's, whatever the client waits for).
    pub fn refresh(&mut self, cpus: &CpuStates<'_>, patchers: &[Client], state: &PatchState, client_in: &[bool]) {
        self.events.truncate(self.cpu_part);
        match std::mem::replace(&mut self.stale, Stale::Clean) {
            Stale::Clean => {}
            Stale::Cpu(i) => self.update(cpus, i),
            Stale::All => cpus.all(&mut self.events),
        }
        self.cpu_part = self.events.len();
        debug_assert!(
            {
                let mut fresh = Vec::new();
                cpus.all(&mut fresh);
                fresh == self.events
            },
            "the incrementally kept enabled set differs from the one built from scratch"
        );
        for (k, p) in patchers.iter().enumerate() {
            if client_in.get(k).copied().unwrap_or(false) || p.enabled(cpus.ipi, state) {
                self.events.push(Event::Patcher(k));
            }
        }
    }

    /// Appends events listed afresh at every refresh, after the patchers: the interrupt
    /// deliveries, then the store-buffer drains.
    pub fn extend_tail(&mut self, events: impl IntoIterator<Item = Event>) {
        self.events.extend(events);
    }

    /// Replaces vCPU `i`'s step and delivery entries in the (sorted) vCPU part.
    fn update(&mut self, cpus: &CpuStates<'_>, i: usize) {
        let deliveries = self.events.partition_point(|e| !matches!(e, Event::IpiDeliver(_)));
        set_entry(&mut self.events, 0, deliveries, i, cpus.step(i));
        let deliveries = self.events.partition_point(|e| !matches!(e, Event::IpiDeliver(_)));
        let end = self.events.len();
        set_entry(&mut self.events, deliveries, end, i, cpus.delivery(i));
    }
}

/// In `events[from..to]` (sorted by vCPU, at most one entry each), makes vCPU `i`'s entry
/// `want`: replaced, inserted or removed.
fn set_entry(events: &mut Vec<Event>, from: usize, to: usize, i: usize, want: Option<Event>) {
    let at = from + events[from..to].partition_point(|e| e.cpu().is_some_and(|c| c < i));
    let present = at < to && events[at].cpu() == Some(i);
    match (present, want) {
        (true, Some(e)) => events[at] = e,
        (true, None) => {
            events.remove(at);
        }
        (false, Some(e)) => events.insert(at, e),
        (false, None) => {}
    }
}
