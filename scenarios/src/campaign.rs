//! The one campaign primitive (DESIGN.md §2.9): run the scenarios of a seed range until the
//! first violation or the budget, in parallel across cores. `run`, `explore`, `check`,
//! `corpus`, `mutants`, the corpus generator and the tests all go through [`Campaign::run`],
//! so the same scenario, strategy and seed give the same run whichever command runs it.
//!
//! A campaign runs the seed indices of its shard in fixed batches of [`BATCH`] and stops after
//! the first batch that contains a violation, reporting the violation of the *smallest* index.
//! The result therefore depends only on the scenarios and the indices — never on the number of
//! workers. The workers do not wait for each other at every batch: they run a window of
//! batches, each taking the next index as soon as it is free (every worker builds its own
//! engines: Unicorn is not `Send`), and a violation cuts the window at the end of its batch
//! (`Campaign::run_window`); what ran past the cut is dropped. Runs keep no decision log (memory does not grow with a
//! run's length); the violating run is repeated with its decisions kept, and must reproduce
//! bit for bit.
//!
//! A shard `i/n` of a campaign of `runs` seeds runs the indices `k < runs` with
//! `k % n == i`: `runs` is the size of the whole campaign, so `n` machines (a CI matrix,
//! Kubernetes indexed jobs, a Slurm array) split it without overlap, and their union is what
//! one machine would have run. Because a shard's batch of 16 of its own indices spans whole
//! 16-index blocks of the campaign, a campaign also keeps its sums per global block
//! ([`BlockSums`]): [`crate::shard`] merges shards from them into the single-machine result.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::{Deserialize, Serialize};
use sim_core::{Outcome, SimError, Stats, Verdict};

use crate::scenario::Scenario;

/// Seed indices per batch (fixed, so results do not depend on the number of workers).
pub const BATCH: u64 = 16;

/// Own indices a shard hands to its workers at once (`Campaign::run_window`): workers take
/// the next run as soon as they finish one, and wait for each other only between windows.
const WINDOW: u64 = 8 * BATCH;

/// A shard of the seed indices: `k` with `k % count == index`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
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
        let (i, n) = s.split_once('/').ok_or_else(|| format!("'{s}' is not I/N"))?;
        let (index, count) = (
            i.trim().parse::<u64>().map_err(|e| format!("'{s}': {e}"))?,
            n.trim().parse::<u64>().map_err(|e| format!("'{s}': {e}"))?,
        );
        if count == 0 || index >= count {
            return Err(format!("'{s}' needs 0 <= I < N"));
        }
        Ok(Shard { index, count })
    }
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index, self.count)
    }
}

impl Shard {
    /// The whole seed range.
    pub const ALL: Shard = Shard { index: 0, count: 1 };

    /// How many of the first `runs` indices belong to this shard.
    pub fn share(self, runs: u64) -> u64 {
        runs.saturating_sub(self.index).div_ceil(self.count)
    }

    /// How many of the indices `from..to` belong to this shard.
    pub(crate) fn share_between(self, from: u64, to: u64) -> u64 {
        self.share(to) - self.share(from.min(to))
    }

    /// A valid shard: `index < count`.
    pub(crate) fn is_valid(self) -> bool {
        self.index < self.count
    }
}

/// What the runs of one global block of [`BATCH`] seed indices (`block * BATCH ..`) that a
/// campaign ran added up to: a shard runs only its own indices of a block, so a block's sums
/// over a whole campaign are the sums of its shards' sums.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockSums {
    /// The block: seed indices `block * BATCH .. (block + 1) * BATCH`.
    pub block: u64,
    /// Runs of the block done.
    pub ran: u64,
    /// Their counters, summed.
    pub stats: Stats,
    /// How many of them spent their tick budget.
    pub exhausted: u64,
    /// The smallest index of those.
    pub first_exhausted: Option<u64>,
}

impl BlockSums {
    /// Adds the run of seed index `k` (which must lie in this block).
    pub(crate) fn add_run(&mut self, k: u64, o: &Outcome) {
        self.ran += 1;
        self.stats.add(&o.stats);
        if o.verdict == Verdict::BudgetExhausted {
            self.exhausted += 1;
            self.first_exhausted = Some(self.first_exhausted.map_or(k, |f| f.min(k)));
        }
    }

    /// Adds another part of the same block.
    pub fn add(&mut self, o: &BlockSums) {
        self.ran += o.ran;
        self.stats.add(&o.stats);
        self.exhausted += o.exhausted;
        self.first_exhausted = match (self.first_exhausted, o.first_exhausted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
}

/// A campaign: which scenario each seed index runs, how many indices, which shard of them,
/// and an optional wall-time limit (with one, the number of runs depends on the machine).
pub struct Campaign<'a> {
    /// The scenario of seed index `k` (for a plain campaign: the base scenario with seed
    /// `base.seed + k`; `check` also cycles vCPUs and site placements with `k`).
    pub scenario_at: &'a (dyn Fn(u64) -> Scenario + Sync),
    /// Seed indices of the whole campaign (all shards).
    pub runs: u64,
    /// The shard this process runs.
    pub shard: Shard,
    /// Stop starting batches after this much wall time.
    pub time: Option<Duration>,
}

/// The violating run a campaign found.
#[derive(Clone, Debug)]
pub struct Found {
    /// Its seed index.
    pub index: u64,
    /// Its scenario.
    pub scenario: Scenario,
    /// Its outcome, with the decisions kept.
    pub outcome: Outcome,
}

/// What a campaign established.
#[derive(Clone, Debug)]
pub struct CampaignResult {
    /// Runs done.
    pub runs: u64,
    /// The violating run with the smallest index, if any.
    pub found: Option<Found>,
    /// Runs that spent their tick budget before reaching their end (no verdict).
    pub exhausted: u64,
    /// The smallest index of such a run.
    pub first_exhausted: Option<u64>,
    /// True if every index of the shard ran (false: a violation or the time limit stopped it).
    pub complete: bool,
    /// The run of the largest index done, and that index (its outcome without decisions).
    pub last: Option<(u64, Outcome)>,
    /// Counters summed over every run.
    pub totals: Stats,
    /// The same sums per global block of [`BATCH`] indices, keyed by block (what shards
    /// merge from).
    pub blocks: BTreeMap<u64, BlockSums>,
    /// Wall time.
    pub elapsed: Duration,
}

impl CampaignResult {
    /// The result of one run of `scenario` (seed index 0): a campaign of one.
    pub fn single(outcome: Outcome, scenario: &Scenario) -> Self {
        let mut r = CampaignResult {
            runs: 1,
            found: None,
            exhausted: 0,
            first_exhausted: None,
            complete: true,
            last: None,
            totals: outcome.stats,
            blocks: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        r.blocks.entry(0).or_default().add_run(0, &outcome);
        if outcome.verdict == Verdict::BudgetExhausted {
            (r.exhausted, r.first_exhausted) = (1, Some(0));
        }
        if outcome.verdict == Verdict::Violation {
            r.found = Some(Found { index: 0, scenario: scenario.clone(), outcome: outcome.clone() });
        }
        r.last = Some((0, outcome));
        r
    }

    /// The campaign's verdict: a violation if one was found; otherwise budget-exhausted if
    /// any run ran out of ticks; otherwise a pass.
    pub fn verdict(&self) -> Verdict {
        match (&self.found, self.exhausted) {
            (Some(_), _) => Verdict::Violation,
            (None, 0) => Verdict::Pass,
            (None, _) => Verdict::BudgetExhausted,
        }
    }
}

/// The smallest-index violating run among seeds `base.seed .. base.seed + runs` (a campaign of
/// the whole range): its index + 1 is the number of runs a strategy needed to find it.
pub fn first_violation(base: &Scenario, runs: u64) -> Result<Option<Found>, SimError> {
    let at = Campaign::seeds(base);
    Ok(Campaign { scenario_at: &at, runs, shard: Shard::ALL, time: None }.run(&|_| {})?.found)
}

impl Campaign<'_> {
    /// A campaign over `runs` seeds of `base` (seed `base.seed + k` for index `k`).
    pub fn seeds(base: &Scenario) -> impl Fn(u64) -> Scenario + Sync + '_ {
        move |k| Scenario { seed: base.seed.wrapping_add(k), ..base.clone() }
    }

    /// Runs the campaign; `progress(runs_done)` is called after every window of batches.
    pub fn run(&self, progress: &(dyn Fn(u64) + Sync)) -> Result<CampaignResult, SimError> {
        let start = Instant::now();
        let total = self.shard.share(self.runs);
        let mut r = CampaignResult {
            runs: 0,
            found: None,
            exhausted: 0,
            first_exhausted: None,
            complete: false,
            last: None,
            totals: Stats::default(),
            blocks: BTreeMap::new(),
            elapsed: Duration::ZERO,
        };
        while r.runs < total {
            if self.time.is_some_and(|t| start.elapsed() >= t) {
                break;
            }
            let window = (r.runs, total.min(r.runs + WINDOW));
            let (done, outcomes) = self.run_window(window)?;
            r.runs = done;
            progress(r.runs);
            if let Some(found) = self.account(&mut r, outcomes)? {
                r.found = Some(found);
                r.elapsed = start.elapsed();
                return Ok(r);
            }
        }
        r.complete = r.runs == total;
        r.elapsed = start.elapsed();
        Ok(r)
    }

    /// Runs the shard's own indices `j` in `[from, to)` (seed index `j * count + index`) in
    /// parallel, without waiting at every batch: a run that finds a violation at own index
    /// `v` stops the window at the end of `v`'s batch (`BATCH * (v / BATCH + 1)`) — no index
    /// at or past that point starts afterwards, and any that already ran is dropped. Every
    /// index below the stop has run (the stop only moves down), so the result is exactly the
    /// batch-by-batch campaign's. Returns the stop and the outcomes below it, in index order.
    fn run_window(&self, (from, to): (u64, u64)) -> Result<(u64, Vec<(u64, Outcome)>), SimError> {
        let stop = AtomicU64::new(to);
        let shard = self.shard;
        let outcomes = (from..to)
            .into_par_iter()
            .map(|j| {
                if j >= stop.load(Ordering::Relaxed) {
                    return Ok(None);
                }
                let k = j * shard.count + shard.index;
                let o = (self.scenario_at)(k).run_unrecorded()?;
                if o.verdict == Verdict::Violation {
                    stop.fetch_min((j / BATCH + 1) * BATCH, Ordering::Relaxed);
                }
                Ok(Some((j, k, o)))
            })
            .collect::<Result<Vec<_>, SimError>>()?;
        let stop = stop.into_inner();
        let kept = outcomes.into_iter().flatten().filter(|(j, _, _)| *j < stop).map(|(_, k, o)| (k, o)).collect();
        Ok((stop, kept))
    }

    /// Adds a window's runs to the totals; returns its smallest violating run, repeated with
    /// its decisions kept.
    fn account(&self, r: &mut CampaignResult, outcomes: Vec<(u64, Outcome)>) -> Result<Option<Found>, SimError> {
        if let Some((k, o)) = outcomes.last() {
            r.last = Some((*k, o.clone()));
        }
        for (k, o) in &outcomes {
            let block = r.blocks.entry(k / BATCH).or_insert(BlockSums { block: k / BATCH, ..BlockSums::default() });
            block.add_run(*k, o);
            r.totals.add(&o.stats);
            if o.verdict == Verdict::BudgetExhausted {
                r.exhausted += 1;
                r.first_exhausted = Some(r.first_exhausted.map_or(*k, |f| f.min(*k)));
            }
        }
        let Some((index, first)) = outcomes.into_iter().find(|(_, o)| o.verdict == Verdict::Violation) else {
            return Ok(None);
        };
        let scenario = (self.scenario_at)(index);
        let outcome = scenario.run()?;
        if outcome.trace_hash != first.trace_hash || outcome.violations != first.violations {
            return Err(SimError::Internal(format!(
                "nondeterminism: seed index {index} ran twice with different results"
            )));
        }
        Ok(Some(Found { index, scenario, outcome }))
    }
}
