//! `shared_vector`: two callers of one text_poke vector — the June 2025 report
//! (docs/reference/kprobes.md §9). jump_label's batching path queues a site with
//! `arch_jump_label_transform_queue()` (`text_poke_queue()` / `smp_text_poke_batch_add()`, in
//! a `text_mutex` section of its own) and later applies it with
//! `arch_jump_label_transform_apply()` (`text_poke_finish()` / `smp_text_poke_batch_finish()`);
//! in between `text_mutex` is free, and a caller that patches one site at once
//! (`arch_jump_label_transform()`, `arch_static_call_transform()`, the kprobe optimizer:
//! `text_poke_bp()` / `smp_text_poke_single()`) patches a site *below* the queued one. Where the
//! single caller appends to the vector without `smp_text_poke_batch_add()`'s order check
//! (mutant `single-unchecked-add`), the vector is unsorted and the handler's `bsearch()` misses
//! the queued site: its INT3 is unclaimed.
//!
//! The text is [`super::batch`]'s with two sites: site 0 (the single caller's) and site 1 (the
//! queued one), 16 bytes above it; each pass takes one side of each. Each caller is a patching
//! client of its own, so this workload needs a protocol compiled from C (the Rust models fix
//! each batch's vector when the run is planned and refuse it).

use sim_core::{GuestImage, PatchAction, SimError};

use super::batch::Sites;
use super::{WorkloadKind, WorkloadSpec};

/// One-line description.
pub(crate) const DESCRIPTION: &str = "two callers of one text_poke vector (C protocols only): jump_label queues a \
     NOP5 <-> JMP32 site in a text_mutex section of its own, then applies it; meanwhile a single-site caller \
     (text_poke_bp()/smp_text_poke_single()) patches a site below it";

/// The single caller's site and the queued one.
const SINGLE: u64 = 0;
const QUEUED: u64 = 1;

/// Builds the two-caller guest: the workload's script queues and applies site 1 each round,
/// the further caller's patches site 0.
pub fn build(spec: &WorkloadSpec, cpus: usize) -> Result<GuestImage, SimError> {
    let (g, sites) = Sites::build(spec, cpus, 2)?;
    let mut batching = Vec::with_capacity(2 * spec.rounds as usize);
    for r in 0..spec.rounds {
        batching.push(PatchAction::Queue(sites.request(QUEUED, r)));
        batching.push(PatchAction::Apply);
    }
    let single = (0..spec.rounds).map(|r| PatchAction::Single(sites.request(SINGLE, r))).collect();
    let invariant = sites.invariant(&g, cpus);
    let mut image = g.image(WorkloadKind::SharedVector, cpus, batching, Vec::new(), invariant);
    image.callers.push(single);
    Ok(image)
}
