//! Campaigns (DESIGN.md §2.9): many runs of one scenario, in parallel across cores, and the
//! bounded exhaustive search.
//!
//! A campaign runs the seeds of its shard in fixed-size batches; each batch runs in parallel
//! (every worker builds its own engines: Unicorn is not `Send`), and the campaign stops after
//! the first batch that contains a violation, reporting the violation of the *smallest* seed.
//! The result therefore depends only on the scenario, the strategy, the seeds and the batch
//! size — never on the number of workers. A shard `i/n` runs the seeds congruent to `i`
//! modulo `n`, so `n` machines (a CI matrix, Kubernetes indexed jobs, a Slurm array) split a
//! campaign without overlap, and their union is the whole.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use rayon::prelude::*;
use sim_core::sched::exhaustive::{Dfs, DfsScheduler};
use sim_core::sched::Strategy;
use sim_core::{Decisions, Outcome, SimError};

use crate::scenario::Scenario;

/// Seeds per batch (fixed, so results do not depend on the number of workers).
pub const BATCH: u64 = 16;

/// A shard of the seed space: seeds `s` with `s % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Shard {
    /// This shard (0-based).
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

impl std::str::FromStr for Shard {
    type Err = String;
    /// `I/N` with `I < N`.
    fn from_str(s: &str) -> Result<Self, String> {
        let (i, n) = s.split_once('/').ok_or_else(|| format!("shard: '{s}' is not I/N"))?;
        let (index, count) = (
            i.parse::<u64>().map_err(|e| format!("shard: {e}"))?,
            n.parse::<u64>().map_err(|e| format!("shard: {e}"))?,
        );
        if count == 0 || index >= count {
            return Err(format!("shard: '{s}' needs 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl Shard {
    /// The whole seed space.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// The `k`-th seed of this shard.
    pub fn seed(self, first: u64, k: u64) -> u64 {
        first + k * self.count + self.index
    }
}

/// A campaign's budget.
#[derive(Clone, Copy, Debug)]
pub enum Budget {
    /// At most this many runs (deterministic).
    Runs(u64),
    /// Until this much wall time has passed (the number of runs then depends on the machine).
    Time(Duration),
}

/// What a campaign found.
#[derive(Clone, Debug)]
pub struct CampaignResult {
    /// Runs done.
    pub runs: u64,
    /// The violating run with the smallest seed, if any.
    pub found: Option<(Scenario, Outcome)>,
    /// Wall time.
    pub elapsed: Duration,
}

/// The run length PCT spreads its change points over: one plain random run of the scenario.
pub fn expected_ticks(base: &Scenario) -> u64 {
    let mut probe = base.clone();
    probe.strategy = Strategy::Random;
    probe.run().map(|o| o.stats.ticks).unwrap_or(sim_core::sched::pct::DEFAULT_EXPECTED_TICKS).max(100)
}

fn run_seed(base: &Scenario, strategy: Strategy, seed: u64, k: u64) -> Result<(Scenario, Outcome), SimError> {
    let mut s = base.clone();
    s.strategy = strategy;
    s.seed = seed;
    let mut sched = strategy.scheduler_for(seed, k);
    let o = s.run_custom(sched.as_mut(), Decisions::seeded(seed), &s.config)?;
    Ok((s, o))
}

/// Runs a campaign. `progress` is called after each batch with the runs done.
pub fn campaign(
    base: &Scenario,
    strategy: Strategy,
    budget: Budget,
    shard: Shard,
    mut progress: impl FnMut(u64),
) -> Result<CampaignResult, SimError> {
    let start = Instant::now();
    let k = expected_ticks(base);
    let mut runs = 0u64;
    loop {
        let take = match budget {
            Budget::Runs(n) if runs >= n => break,
            Budget::Runs(n) => BATCH.min(n - runs),
            Budget::Time(t) if start.elapsed() >= t => break,
            Budget::Time(_) => BATCH,
        };
        let batch: Vec<u64> = (runs..runs + take).map(|i| shard.seed(base.seed, i)).collect();
        let results = batch.par_iter().map(|&seed| run_seed(base, strategy, seed, k)).collect::<Result<Vec<_>, _>>()?;
        runs += take;
        progress(runs);
        if let Some(hit) = results.into_iter().find(|(_, o)| o.violation().is_some()) {
            return Ok(CampaignResult { runs, found: Some(hit), elapsed: start.elapsed() });
        }
    }
    Ok(CampaignResult { runs, found: None, elapsed: start.elapsed() })
}

/// Runs the campaign seed by seed (no batching) and returns the index of the first violating
/// run — the "runs to find" of a strategy.
pub fn runs_to_find(base: &Scenario, strategy: Strategy, max_runs: u64) -> Result<Option<u64>, SimError> {
    let k = expected_ticks(base);
    for i in 0..max_runs {
        let (_, o) = run_seed(base, strategy, base.seed + i, k)?;
        if o.violation().is_some() {
            return Ok(Some(i + 1));
        }
    }
    Ok(None)
}

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
    /// True if the bounded tree was explored completely (not stopped by `max_executions`).
    pub complete: bool,
    /// Wall time.
    pub elapsed: Duration,
}

/// Explores every decision sequence of `scenario` that deviates from the default schedule in
/// at most `bound` decisions.
pub fn exhaust(
    scenario: &Scenario,
    bound: usize,
    reduce: bool,
    max_executions: u64,
) -> Result<ExhaustResult, SimError> {
    let start = Instant::now();
    let mut config = scenario.config.clone();
    config.state_hashes = true;
    // After the patcher finishes, a few steps per vCPU show whether an old image survives;
    // longer drains only multiply identical tails.
    config.drain_steps = config.drain_steps.min(DRAIN_STEPS);
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
                complete: false,
                elapsed: start.elapsed(),
            });
        }
        let mut sched = DfsScheduler::new(reduce, run.sleep);
        let o = scenario.run_custom(&mut sched, Decisions::guided(run.prefix), &config)?;
        states.extend(o.state_hashes.iter().copied());
        if o.violation().is_some() {
            dfs.executions += 1;
            return Ok(ExhaustResult {
                executions: dfs.executions,
                pruned: dfs.pruned,
                states: states.len(),
                violation: Some(o),
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
        complete: true,
        elapsed: start.elapsed(),
    })
}
