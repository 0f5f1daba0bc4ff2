//! Oracle 6, workload invariant (DESIGN.md §2.7): each workload states what its guest code must
//! observe at its loop head (a balanced stack; each pass through a site executes exactly one
//! of the old and new behaviours). The machine asks it every time a vCPU is about to execute
//! its loop head; in state-space search the workload's counters are then reset, so that a
//! guest that loops forever still has finitely many states.

use cpu_model::{Regs, SharedRegion};

use crate::workload::Invariant;

/// `Err(message)` if vCPU `cpu`, about to run its loop head with `regs`, observed something
/// impossible under a correct protocol; with `reset`, the per-iteration counters start over.
pub fn at_loop_head(
    invariant: &mut dyn Invariant,
    cpu: usize,
    regs: &Regs,
    data: &SharedRegion,
    reset: bool,
) -> Result<(), String> {
    invariant.at_loop_head(cpu, regs, data)?;
    if reset {
        invariant.reset(cpu, data);
    }
    Ok(())
}
