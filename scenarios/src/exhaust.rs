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
use sim_core::{Decisions, Machine, Observe, Outcome, Recorded, SimError, Verdict};

use crate::scenario::Scenario;

/// Drain steps per vCPU in exhaustive runs.
pub(crate) const DRAIN_STEPS: u64 = 12;

/// What a bounded exhaustive search found.
#[derive(Clone, Debug)]
pub struct ExhaustResult {
    /// Runs executed.
    pub executions: u64,
    /// Runs cut by the reduction.
    pub pruned: u64,
    /// Runs cut by their tick budget (`ticks`) before they ended: each leaves the decisions
    /// past its cut unexplored, so a search with any is not complete.
    pub exhausted: u64,
    /// Distinct machine states visited (path-independent hashes).
    pub states: usize,
    /// The first violating run, if any.
    pub violation: Option<Outcome>,
    /// The scenario the search ran (the input with the shortened drain): the one a violation's
    /// artifact must record.
    pub scenario: Scenario,
    /// True if the bounded tree was explored completely (not stopped by `max_executions`,
    /// no run cut by its tick budget).
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
    let observe = Observe { state_hashes: true, ..Observe::NOTHING };
    let mut dfs = Dfs::default();
    let mut states = HashSet::new();
    let mut next = Some(Dfs::first());
    let (mut exhausted, mut violation, mut limited) = (0, None, false);
    while let Some(run) = next.take() {
        if dfs.executions >= max_executions {
            limited = true;
            break;
        }
        let mut sched = DfsScheduler::new(reduce, run.sleep);
        let o = searched.run_custom(&mut sched, Decisions::guided(run.prefix), observe)?;
        progress(dfs.executions + 1);
        states.extend(o.state_hashes.iter().copied());
        exhausted += (o.verdict == Verdict::BudgetExhausted) as u64;
        if o.violation().is_some() {
            dfs.executions += 1;
            violation = Some(o);
            break;
        }
        next = dfs.next(&o.decisions, &sched, bound);
    }
    Ok(ExhaustResult {
        executions: dfs.executions,
        pruned: dfs.pruned,
        exhausted,
        states: states.len(),
        complete: !limited && violation.is_none() && exhausted == 0,
        violation,
        scenario: searched,
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
    /// The scenario the counterexample replays under: the input, with a drain and a tick
    /// budget long enough for the counterexample.
    pub scenario: Scenario,
    /// The input's tick budget (`ticks`), if it was too short for the counterexample and
    /// [`CompleteResult::scenario`] carries a longer one: `(given, needed)`. The search itself
    /// has no tick budget.
    pub raised_budget: Option<(u64, u64)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// Searches every reachable state of `scenario` ([`sim_core::search`]): vCPUs loop forever
/// (or stop after `iterations`, if the scenario has them), and the answer is either complete
/// or a shortest counterexample, replayed as an ordinary run.
pub fn complete(scenario: &Scenario, opts: Options, progress: &dyn Fn(u64)) -> Result<CompleteResult, SimError> {
    let start = Instant::now();
    let searched = searched(scenario);
    let make = || Machine::new(searched.plan()?, Observe::NOTHING);
    let search = sim_core::search::search_parallel(&make, opts, false, progress)?;
    replayed(scenario, search, start)
}

/// The scenario a complete search runs: counters reset at every loop head.
fn searched(scenario: &Scenario) -> Scenario {
    let mut searched = scenario.clone();
    searched.config.reset_counters = true;
    searched
}

/// The result of the merged shards of a split search ([`crate::search_shard`]): the union of
/// their states and, if a shard found a violation, the breadth-first search one machine runs
/// for its shortest counterexample — so the result is the one [`complete`] gives on one
/// machine (states, verdict, counterexample; transitions are the shards' sum unless a
/// violation's breadth-first search counts them, and the time is the shards' added up).
pub fn complete_merged(
    m: &crate::search_shard::MergedSearch,
    progress: &dyn Fn(u64),
) -> Result<CompleteResult, SimError> {
    let start = Instant::now();
    let scenario = &m.scenario.scenario;
    let mut search = SearchResult {
        states: m.states,
        transitions: m.transitions,
        complete: m.complete,
        kinds: m.kinds.clone(),
        symmetric: m.symmetric,
        ..SearchResult::default()
    };
    if !m.kinds.is_empty() {
        let mut machine = Machine::new(searched(scenario).plan()?, Observe::NOTHING)?;
        let bfs = sim_core::search::shortest(&mut machine, m.options, progress)?;
        let Some(found) = bfs.found else {
            return Err(SimError::Internal("a shard found a violation the breadth-first search does not reach".into()));
        };
        search.kinds.insert(found.violation.kind);
        if !m.options.all_kinds {
            (search.states, search.transitions, search.complete) = (bfs.states, bfs.transitions, false);
        }
        search.found = Some(found);
    }
    let mut r = replayed(scenario, search, start)?;
    r.elapsed += m.elapsed;
    Ok(r)
}

/// A search's result with its counterexample (if any) replayed as an ordinary run.
fn replayed(scenario: &Scenario, search: SearchResult, start: Instant) -> Result<CompleteResult, SimError> {
    let mut replayed = scenario.clone();
    let mut raised_budget = None;
    let violation = match &search.found {
        None => None,
        Some(c) => {
            // The ordinary run must not end (drained, or out of ticks) before the
            // counterexample does.
            let needed = c.violation.tick + 1;
            replayed.config.drain_steps = needed.clamp(replayed.config.drain_steps, MAX_DRAIN);
            let budget = replayed.plan()?.budget();
            if budget < needed {
                raised_budget = Some((budget, needed));
                replayed.config.max_ticks = Some(needed);
            }
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
    Ok(CompleteResult { search, violation, scenario: replayed, raised_budget, elapsed: start.elapsed() })
}
