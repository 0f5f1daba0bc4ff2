//! Which steps state-space search runs at once, and which events it explores from a state
//! (DESIGN.md §2.9): partial-order reduction in two forms, both over steps of one vCPU that
//! commute with every other actor's events and stay so until that vCPU moves.
//!
//! - A *local* guest step ([`Machine::local_step`]) touches only the vCPU's own registers,
//!   stack and counters.
//! - A *quiet* handler step ([`Machine::quiet_handler_step`]) touches shared memory, but
//!   nothing another actor can write before the vCPU moves again: the patching clients' look
//!   ahead ([`crate::driver::PatchingClient::upcoming`]) ends at their next sync, which waits
//!   for this vCPU — and it acknowledges only after its handler's IRET —, and the other
//!   vCPUs write only the reference counts their handlers take ([`crate::footprint`]).
//!
//! Such a step is run in the same transition as the step before it of the same vCPU
//! ([`Machine::transition`]), and a state where a quiet handler step is enabled explores it
//! alone ([`Machine::search_events`]): every other event stays enabled after it and does the
//! same thing, so a state where no such step waits is reached either way (Lipton's
//! reduction, *Reduction: a method of proving properties of parallel programs*, CACM 1975;
//! persistent sets, Godefroid 1996 §4 — a handler's steps end at its IRET, so no cycle
//! defers the others).
//! A step can still violate: the transition ends there, and the violation is the one it
//! would have been. The other actors' events of the state it would have reached are then not
//! explored, so a search for every violation kind merges local steps only ([`Merge::Local`])
//! and expands a state whose explored transition violated with every enabled event.

use super::state::{Canon, SaveCache};
use super::Machine;
use crate::driver::{Activation, PatchingClient};
use crate::event::Event;
use crate::footprint::{Footprint, Shared};
use crate::protocol::loc::INT3;
use crate::SimError;

/// Which steps [`Machine::transition`] runs with the step before them of the same vCPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Merge {
    /// None: every step is a transition (the plain search).
    Nothing,
    /// Local guest steps only. A search for every violation kind uses this: a quiet handler
    /// step that violates must be a transition of its own, from a stored state that the search
    /// can then expand fully (the other actors' events there may lead to other kinds).
    Local,
    /// Local guest steps and quiet handler steps.
    LocalAndQuiet,
}

impl Merge {
    /// True if `event`, the next step of the vCPU that just moved, runs in the same transition.
    pub(super) fn takes(self, machine: &Machine, event: Event) -> bool {
        match self {
            Merge::Nothing => false,
            Merge::Local => machine.local_step(event),
            Merge::LocalAndQuiet => machine.merges(event),
        }
    }
}

/// What the other vCPUs may write at any time, whatever they run: the reference counts every
/// handler takes (5.6's `desc->refs`, 6.0's `bp_desc.refs`). The rest of what they write is
/// their own (registers, stack, view, 6.16's per-CPU count, RCU read-side section).
const OTHER_VCPUS: Footprint = Footprint::writing(Shared::REFS);

impl Machine {
    /// True if `event` is a step state-space search runs right after the step before it of
    /// the same vCPU: a local guest step or a quiet handler step.
    pub(crate) fn merges(&self, event: Event) -> bool {
        self.local_step(event) || self.quiet_handler_step(event)
    }

    /// The events state-space search explores from the current state: the enabled ones, or —
    /// with `reduce` — one quiet handler step. (Not a local guest step: a vCPU's local
    /// steps can loop forever, and exploring them alone would then never let the others move —
    /// the "ignoring" that Godefroid's cycle proviso forbids; a handler's steps end at its
    /// IRET.) Of several quiet steps, the first in canonical order — or, when `canon` compares
    /// states up to a permutation of the vCPUs, that of the vCPU whose own part of the state
    /// hashes least, so that every permutation of a state explores the same vCPU's step and
    /// the states reached do not depend on which permutation the search met first.
    pub(crate) fn search_events(
        &mut self,
        reduce: bool,
        canon: &Canon,
        cache: &mut SaveCache,
    ) -> Result<Vec<Event>, SimError> {
        self.collect_enabled();
        let events = self.enabled.events();
        let quiet: Vec<Event> = events.iter().copied().filter(|&e| reduce && self.quiet_handler_step(e)).collect();
        let Some(&first) = quiet.first() else { return Ok(events.to_vec()) };
        if quiet.len() == 1 || !canon.symmetric {
            return Ok(vec![first]);
        }
        let mut least = (self.cpu_hash(canon, cache, first.cpu().expect("a vCPU's step"))?, first);
        for &e in &quiet[1..] {
            let h = self.cpu_hash(canon, cache, e.cpu().expect("a vCPU's step"))?;
            if h < least.0 {
                least = (h, e);
            }
        }
        Ok(vec![least.1])
    }

    /// True if `event` is a step of vCPU `i`'s INT3 handler (the Rust model; not with
    /// interrupts, whose handlers the footprints do not cover) whose footprint meets neither
    /// what every patching client may touch before `i` acknowledges its next sync IPI nor
    /// what the other vCPUs write.
    pub(crate) fn quiet_handler_step(&self, event: Event) -> bool {
        let Event::HandlerStep(i) = event else { return false };
        if self.c.is_some() || self.config.interrupts.is_some() {
            return false;
        }
        let Some(Activation::Model(h)) = &self.state.handlers[i] else { return false };
        let step = h.next_footprint(self.config.protocol.handler().rules());
        if step.conflicts(OTHER_VCPUS) {
            return false;
        }
        let (patching, ipi) = (&self.state.patching, &self.state.ipi);
        self.state.patchers.iter().all(|c| !step.conflicts(c.upcoming(patching, ipi, i)))
    }

    /// True if `event` is a *local* guest step: the vCPU's next instruction reads no byte a
    /// store can write, is not an INT3 or a kprobe's address, and does not serialize — so it
    /// takes no decision, does not trap, reads nothing another actor writes and writes only
    /// its own registers, stack and counters. Such a step commutes with every event of every
    /// other actor, and with its own vCPU's IPI delivery (which only rewrites patchable bytes
    /// of the view). State-space search runs local steps right after the step before them.
    pub(crate) fn local_step(&self, event: Event) -> bool {
        let Event::GuestStep(i) = event else { return false };
        if self.state.handlers[i].is_some() || self.state.finished[i] {
            return false;
        }
        if self.config.interrupts.is_some() && self.at_iret(i) {
            // IRET serialises: the view changes.
            return false;
        }
        let v = &self.vcpus[i];
        let (rip, view) = (v.rip(), v.view());
        if rip < view.base() || rip >= view.base() + view.len() || self.owners.contains(&rip) {
            return false;
        }
        let mut bytes = [0u8; cpu_model::MAX_INSN_LEN];
        let n = view.read(rip, &mut bytes);
        if bytes[0] == INT3 || view.is_patchable(rip) {
            return false;
        }
        let insn = iced_x86::Decoder::with_ip(64, &bytes[..n], rip, iced_x86::DecoderOptions::NONE).decode();
        !insn.is_invalid()
            && insn.code() != iced_x86::Code::Cpuid
            && !(self.config.interrupts.is_some() && changes_if(insn.code()))
            && (rip..rip + insn.len() as u64).all(|a| !view.is_patchable(a) && !self.owners.contains(&a))
    }
}

/// True for the instructions that can change `RFLAGS.IF` (with interrupts, not local steps: they
/// enable or disable a delivery).
fn changes_if(code: iced_x86::Code) -> bool {
    use iced_x86::Code;
    matches!(code, Code::Cli | Code::Sti | Code::Popfq | Code::Popfw | Code::Popfd)
}
