//! Exhaustive search (DESIGN.md §2.9), in two modes:
//! - [`complete`]: every reachable state of the scenario, by state-space search with saved
//!   and restored machine states ([`sim_core::search`]); vCPUs may loop forever;
//! - [`exhaust`] (bounded): every decision sequence of a small scenario that deviates from the
//!   default schedule in at most `bound` decisions, explored depth-first by re-executing the
//!   scenario ([`sim_core::sched::exhaustive`]); needs a finite guest.
//!
//! The scenario an exhaustive search runs is the scenario it reports: the drain it shortens
//! and the finite-guest iteration limit are part of the scenario's configuration, so the
//! artifact of a violation replays under `pokesim replay`.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use sim_core::config::MAX_DRAIN;
use sim_core::sched::exhaustive::{Dfs, DfsScheduler};
use sim_core::search::{Options, SearchResult};
use sim_core::{Decisions, Machine, Outcome, Recorded, SimError};

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

/// What a complete search found ([`complete`]).
#[derive(Clone, Debug)]
pub struct CompleteResult {
    /// The search's counts and verdict.
    pub search: SearchResult,
    /// The violating run, replayed as an ordinary run from the counterexample's decisions
    /// (what its artifact records), if the search found one.
    pub violation: Option<Outcome>,
    /// The scenario the counterexample replays under: the input, with a drain long enough
    /// for the counterexample.
    pub scenario: Scenario,
    /// Wall time.
    pub elapsed: Duration,
}

/// Searches every reachable state of `scenario` ([`sim_core::search`]): vCPUs loop forever
/// (or stop after `iterations`, if the scenario has them), and the answer is either complete
/// or a shortest counterexample, replayed as an ordinary run.
pub fn complete(scenario: &Scenario, opts: Options, progress: &dyn Fn(u64)) -> Result<CompleteResult, SimError> {
    let start = Instant::now();
    let mut searched = scenario.clone();
    searched.config.reset_counters = true;
    let mut machine = Machine::new(searched.plan()?)?;
    let search = sim_core::search::search(&mut machine, opts, false, progress)?;
    let mut replayed = scenario.clone();
    let violation = match &search.found {
        None => None,
        Some(c) => {
            // The ordinary run must not end (drained) before the counterexample does.
            replayed.config.drain_steps = (c.violation.tick + 1).clamp(replayed.config.drain_steps, MAX_DRAIN);
            let o = replayed.replay(Recorded::from_log(c.decisions.clone()))?;
            if o.violation().map(|v| v.kind) != Some(c.violation.kind) {
                return Err(SimError::Internal(format!(
                    "the search's {} counterexample replays as {}",
                    c.violation.kind,
                    o.violation().map_or_else(|| o.verdict.to_string(), |v| v.to_string())
                )));
            }
            Some(o)
        }
    };
    Ok(CompleteResult { search, violation, scenario: replayed, elapsed: start.elapsed() })
}
