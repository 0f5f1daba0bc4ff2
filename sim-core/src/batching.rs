//! How a version's callers split one batch of patch requests into the arrays its patcher
//! handles (reference/kernel-protocol.md): callers of `text_poke_bp_batch()` sort their vector
//! (jump_label sorts its entries) and flush at `TP_VEC_MAX`; 6.16's `smp_text_poke_batch_add()`
//! flushes when the vector is full or an address arrives out of order. The plan builds its
//! arrays with it, and the applicability of the two batch-split mutants asks it again.

use crate::error::Subject;
use crate::patching::TEXT_POKE_ARRAY_MAX;
use crate::protocol::{Mutant, Protocol};
use crate::workload::PokeRequest;
use crate::SimError;

/// Splits one batch of requests into the arrays the version's patcher handles, in order:
/// callers of `text_poke_bp_batch()` sort their vector (jump_label sorts its entries) and
/// flush at `TP_VEC_MAX`; `smp_text_poke_batch_add()` flushes when the vector is full or an
/// address arrives out of order.
/// The mutants `batch-no-full-check` and `batch-no-order-check` drop one of
/// `smp_text_poke_batch_add()`'s two checks.
pub(crate) fn split_batch(
    protocol: Protocol,
    mutants: &[Mutant],
    reqs: &[PokeRequest],
) -> Result<Vec<Vec<PokeRequest>>, SimError> {
    if reqs.is_empty() {
        return Err(SimError::invalid(Subject::Workload, "a batch must have at least one site"));
    }
    let mut groups: Vec<Vec<PokeRequest>> = Vec::new();
    if protocol.batch_add() {
        // if (nr_entries == TEXT_POKE_ARRAY_MAX || !text_poke_addr_ordered(addr)) finish();
        let full =
            |g: &Vec<PokeRequest>| !mutants.contains(&Mutant::BatchNoFullCheck) && g.len() == TEXT_POKE_ARRAY_MAX;
        let unordered = |g: &Vec<PokeRequest>, r: &PokeRequest| {
            !mutants.contains(&Mutant::BatchNoOrderCheck) && g.last().is_some_and(|l| l.addr > r.addr)
        };
        for r in reqs {
            match groups.last_mut() {
                Some(g) if !full(g) && !unordered(g, r) => g.push(r.clone()),
                _ => groups.push(vec![r.clone()]),
            }
        }
    } else {
        let mut sorted = reqs.to_vec();
        sorted.sort_by_key(|r| r.addr);
        groups = sorted.chunks(TEXT_POKE_ARRAY_MAX).map(|c| c.to_vec()).collect();
    }
    for g in &groups {
        if let Some(w) = g.windows(2).find(|w| w[0].addr == w[1].addr) {
            return Err(SimError::invalid(
                Subject::Workload,
                format!("site {:#x} appears twice in one batch", w[0].addr),
            ));
        }
    }
    Ok(groups)
}
