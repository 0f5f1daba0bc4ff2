//! The patcher on real CPUs: the plan's program for the workload's patching client — the very
//! operations the simulator's patcher steps through (`sim_core::program::Op`) — run by a host
//! thread against the text's writable alias. A poke is split into stores as the scenario's
//! store granularity says ([`crate::TextMapping::poke_as`]); `text_poke_sync()` is
//! [`crate::sync_core`].
//!
//! So far only programs that never write an INT3 run here: the SIGTRAP handler that would run
//! a version's handler logic is not built, so a program with `PokeInt3` (the kernel's
//! protocol) or a second patching client is refused with the reason. The descriptor operations
//! (`SetVec`, `SetNr`, refs, …) only feed that handler; with no INT3 in the text no handler
//! ever runs, so they change nothing here.

use std::sync::atomic::{AtomicBool, Ordering};

use sim_core::program::Op;
use sim_core::Plan;

use crate::{Refusal, TextMapping};

/// What the patcher did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PatchReport {
    /// Batches (patch rounds) completed.
    pub rounds: u64,
    /// Hardware stores to the text.
    pub stores: u64,
    /// `membarrier` SYNC_CORE calls.
    pub syncs: u64,
}

/// Refuses a plan the hardware patcher cannot run yet, naming why.
pub fn check(plan: &Plan) -> Result<(), Refusal> {
    if plan.programs.len() != 1 {
        return Err(Refusal::Program("more than one patching client (kprobes that arm themselves)".into()));
    }
    match plan.programs[0].iter().find(|op| needs_int3_handler(op)) {
        Some(op) => Err(Refusal::Program(format!(
            "`{}` writes an INT3, and the SIGTRAP handler that runs a version's handler logic is not built yet \
             (programs without INT3, such as the no-int3 mutant, run)",
            op.name()
        ))),
        None => Ok(()),
    }
}

fn needs_int3_handler(op: &Op) -> bool {
    matches!(op, Op::PokeInt3 { .. } | Op::PokeTail { .. } | Op::PokeFirst { .. } | Op::PokeFirstAlways { .. })
        || op.outside_int3_protocol()
}

/// Runs the workload's program once (every round), or until `stop`; the plan must have passed
/// [`check`].
pub fn run(plan: &Plan, text: &TextMapping, stop: &AtomicBool) -> Result<PatchReport, Refusal> {
    check(plan)?;
    let granularity = plan.config.fetch.stores;
    let mut report = PatchReport::default();
    let mut do_sync = false;
    for op in &plan.programs[0] {
        if stop.load(Ordering::Relaxed) {
            break;
        }
        match *op {
            Op::PokeWhole { batch, entry } => {
                let loc = &plan.arrays[batch].locs[entry];
                report.stores += text.poke_as(loc.addr, &loc.text, granularity) as u64;
                do_sync = true;
            }
            Op::ResetDoSync => do_sync = false,
            Op::Sync => sync(&mut report)?,
            Op::SyncIfDoSync if do_sync => sync(&mut report)?,
            Op::EndBatch(_) => report.rounds += 1,
            _ => {}
        }
    }
    Ok(report)
}

fn sync(report: &mut PatchReport) -> Result<(), Refusal> {
    crate::sync_core()?;
    report.syncs += 1;
    Ok(())
}
