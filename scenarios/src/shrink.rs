//! `pokesim shrink`: the smallest failing run for an artifact (DESIGN.md §2.10): fewer vCPUs
//! (a failing seed of the smaller machine), fewer patch rounds, then delta debugging over the
//! decision list — keeping the violation kind throughout. The cheap structural reductions come
//! first because they shorten the list that ddmin then has to work through. The result is a strict,
//! trimmed decision list that replays exactly.

use sim_core::shrink::{ddmin, trim, Budget};
use sim_core::{Decision, Decisions, Outcome, SimError, ViolationKind};

use crate::scenario::Scenario;

/// Sizes before and after.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ShrinkReport {
    /// Decisions before.
    pub decisions_before: usize,
    /// Decisions after.
    pub decisions_after: usize,
    /// vCPUs before and after.
    pub cpus: (usize, usize),
    /// Patch rounds before and after.
    pub rounds: (u32, u32),
    /// Test runs spent.
    pub runs: u64,
}

/// Seeds tried per smaller vCPU count.
const SEEDS_PER_CPU_COUNT: u64 = 100;

/// The leniently replayed outcome, if it violates with `kind`.
fn reproduces(s: &Scenario, list: &[Decision], kind: ViolationKind) -> Option<Outcome> {
    let o = s.run_with(Decisions::replay_lenient(list.to_vec())).ok()?;
    (o.violation()?.kind == kind).then_some(o)
}

/// Shrinks `decisions` (a failing list for `scenario`, violation `kind`) within `max_runs`
/// test runs. Returns the smaller scenario and its strict, trimmed decision list.
pub fn shrink(
    scenario: &Scenario,
    decisions: Vec<Decision>,
    kind: ViolationKind,
    max_runs: u64,
) -> Result<(Scenario, Vec<Decision>, ShrinkReport), SimError> {
    let mut budget = Budget { runs: max_runs };
    let before = (decisions.len(), scenario.config.cpus, scenario.workload.rounds);
    let mut best = scenario.clone();
    let Some(original) = reproduces(&best, &decisions, kind) else {
        return Err(SimError::BadInput(format!("the artifact's decisions do not reproduce a {kind} violation")));
    };
    // A candidate that has not failed by twice the original length never will in a useful way
    // (an exhausted list answers 0, which can starve the patcher until the tick budget). A
    // liveness failure *is* the budget running out, so it keeps its budget.
    if kind != ViolationKind::Liveness {
        best.config.max_ticks = best.config.max_ticks.min((original.stats.ticks * 2).max(2_000));
    }
    let mut list = trim(original.decisions);
    // Fewer vCPUs: with another count every scheduling index means something else, so the
    // list does not carry over; look for a failure of the same kind among the seeds of the
    // smaller scenario instead, smallest count first, and shrink that one.
    'cpus: for cpus in 1..best.config.cpus {
        for seed in 0..SEEDS_PER_CPU_COUNT {
            if budget.runs == 0 {
                break 'cpus;
            }
            budget.runs -= 1;
            let mut s = best.clone();
            s.config.cpus = cpus;
            s.seed = seed;
            let Ok(o) = s.run() else { continue };
            if o.violation().map(|v| v.kind) == Some(kind) {
                best = s;
                list = ddmin(trim(o.decisions), &mut budget, |l| reproduces(&best, l, kind).map(|o| trim(o.decisions)));
                break 'cpus;
            }
        }
    }
    // Fewer rounds: halve while it still fails, then step down.
    let mut rounds = best.workload.rounds;
    while rounds > 1 && budget.runs > 0 {
        let mut s = best.clone();
        s.workload.rounds = (rounds / 2).max(1);
        budget.runs -= 1;
        match reproduces(&s, &list, kind) {
            Some(o) => {
                rounds = s.workload.rounds;
                best = s;
                list = trim(o.decisions);
            }
            None => break,
        }
    }
    while rounds > 1 && budget.runs > 0 {
        let mut s = best.clone();
        s.workload.rounds = rounds - 1;
        budget.runs -= 1;
        match reproduces(&s, &list, kind) {
            Some(o) => {
                rounds -= 1;
                best = s;
                list = trim(o.decisions);
            }
            None => break,
        }
    }
    list = ddmin(list, &mut budget, |l| reproduces(&best, l, kind).map(|o| trim(o.decisions)));
    // Normalise: the strict list this scenario consumes, trimmed; it must replay exactly.
    let o = reproduces(&best, &list, kind).expect("the shrunk list reproduces");
    let list = trim(o.decisions);
    best.config.max_ticks = scenario.config.max_ticks;
    let check = best.replay(list.clone())?;
    assert_eq!(check.violation().map(|v| v.kind), Some(kind), "a normalised list replays strictly");
    let report = ShrinkReport {
        decisions_before: before.0,
        decisions_after: list.len(),
        cpus: (before.1, best.config.cpus),
        rounds: (before.2, best.workload.rounds),
        runs: max_runs - budget.runs,
    };
    Ok((best, list, report))
}
