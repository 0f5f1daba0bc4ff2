//! Bounded exhaustive search (DESIGN.md §2.9): every decision sequence of a small scenario
//! that deviates from the default schedule in at most `bound` decisions, explored depth-first
//! by re-executing the scenario ([`sim_core::sched::exhaustive`]).
//!
//! The scenario an exhaustive search runs is the scenario it reports: the drain it shortens
//! and the finite-guest iteration limit are part of the scenario's configuration, so the
//! artifact of a violation replays under `pokesim replay`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sim_core::sched::exhaustive::{Dfs, DfsScheduler};
use sim_core::{Decisions, Outcome, SimError};

use crate::scenario::Scenario;

/// Drain steps per vCPU in exhaustive runs.
pub const DRAIN_STEPS: u64 = 12;

/// What a bounded exhaustive search found.
#[derive(Clone, Debug)]
pub struct ExhaustResult {
    /// Runs executed.
    pub executions: u64,
    /// Runs cut by the reduction.
    pub pruned: u64,
    /// Distinct machine states visited (path-independent hashes).
    pub states: usize,
    /// The first violating run, if any.
    pub violation: Option<Outcome>,
    /// The scenario the search ran (the input with the shortened drain): the one a violation's
    /// artifact must record.
    pub scenario: Scenario,
    /// True if the bounded tree was explored completely (not stopped by `max_executions`).
    pub complete: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Explores every decision sequence of `scenario` that deviates from the default schedule in
/// at most `bound` decisions, calling `progress(executions)` after each execution.
pub fn exhaust(
    scenario: &Scenario,
    bound: usize,
    reduce: bool,
    max_executions: u64,
    progress: &dyn Fn(u64),
) -> Result<ExhaustResult, SimError> {
    let start = Instant::now();
    let mut searched = scenario.clone();
    // After the patcher finishes, a few steps per vCPU show whether an old image survives;
    // longer drains only multiply identical tails.
    searched.config.drain_steps = searched.config.drain_steps.min(DRAIN_STEPS);
    let mut config = searched.config.clone();
    config.state_hashes = true;
    let mut dfs = Dfs::default();
    let mut states = HashSet::new();
    let mut next = Some(Dfs::first());
    while let Some(run) = next {
        if dfs.executions >= max_executions {
            return Ok(ExhaustResult {
                executions: dfs.executions,
                pruned: dfs.pruned,
                states: states.len(),
                violation: None,
                scenario: searched,
                complete: false,
                elapsed: start.elapsed(),
            });
        }
        let mut sched = DfsScheduler::new(reduce, run.sleep);
        let o = searched.run_custom(&mut sched, Decisions::guided(run.prefix), &config)?;
        progress(dfs.executions + 1);
        states.extend(o.state_hashes.iter().copied());
        if o.violation().is_some() {
            dfs.executions += 1;
            return Ok(ExhaustResult {
                executions: dfs.executions,
                pruned: dfs.pruned,
                states: states.len(),
                violation: Some(o),
                scenario: searched,
                complete: false,
                elapsed: start.elapsed(),
            });
        }
        next = dfs.next(&o.decisions, &sched, bound);
    }
    Ok(ExhaustResult {
        executions: dfs.executions,
        pruned: dfs.pruned,
        states: states.len(),
        violation: None,
        scenario: searched,
        complete: true,
        elapsed: start.elapsed(),
    })
}
