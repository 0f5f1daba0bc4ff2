//! Oracle 7, liveness (DESIGN.md §2.7): the patcher can always make progress, and after the
//! final sync no vCPU executes an old image of a site.
//!
//! A deadlock is a state from which no event can ever run: nothing is enabled, or the patcher
//! waits for a reference count to drain (`atomic_cond_read_acquire(refs, !VAL)` in
//! `text_poke_bp_batch()` / `smp_text_poke_batch_finish()`) while no INT3 handler holds a
//! reference — only handlers drop references, so the count can never reach zero. Running out
//! of the tick budget is *not* a liveness violation: it establishes nothing (the run's verdict
//! is budget-exhausted).

use cpu_model::ExecutedInsn;

use super::torn::TornOracle;

/// Why no event can ever run again, if so.
pub(crate) fn deadlock(
    nothing_enabled: bool,
    waiting_for_refs: Option<&str>,
    handlers_running: bool,
) -> Option<String> {
    if nothing_enabled {
        return Some("deadlock: no event is enabled".into());
    }
    match waiting_for_refs {
        Some(what) if !handlers_running => {
            Some(format!("deadlock: the patcher is {what}, but no INT3 handler holds a reference"))
        }
        _ => None,
    }
}

/// `Err(explanation)` if, after the patcher finished (its last sync included), `insn`
/// executes anything but the final image of a site. The machine does not ask about a fetch
/// that traps on an INT3: the trap path judges it (`kprobe_int3_handler()` may recover a
/// vanished INT3; otherwise it is unclaimed, oracle 2).
pub(crate) fn final_image(torn: &TornOracle, insn: &ExecutedInsn) -> Result<(), String> {
    torn.check_final(insn)
}
