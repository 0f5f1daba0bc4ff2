//! `pokesim shrink`: the smallest failing run for an artifact (DESIGN.md §2.10): fewer vCPUs
//! (a failing seed of the smaller machine), fewer patch rounds, then delta debugging over the
//! decision list — keeping the violation kind throughout. The cheap structural reductions come
//! first because they shorten the list that ddmin then has to work through. The result is a strict,
//! trimmed decision list that replays exactly.

use sim_core::shrink::{ddmin, trim, Budget};
use sim_core::{Decision, Decisions, Outcome, Recorded, SimError, ViolationKind};

use crate::scenario::Scenario;

/// The result of shrinking: the smaller scenario, its strict decision list, and the sizes.
#[derive(Clone, Debug)]
pub struct Shrunk {
    /// The smaller scenario.
    pub scenario: Scenario,
    /// Its decision list, which replays strictly.
    pub decisions: Recorded,
    /// Its outcome (decisions kept).
    pub outcome: Outcome,
    /// Sizes before and after.
    pub report: ShrinkReport,
}

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
/// test runs. Returns the smaller scenario and its strict decision list; `Err` (invalid
/// decisions) if the list does not reproduce a `kind` violation to begin with.
pub fn shrink(
    scenario: &Scenario,
    decisions: Vec<Decision>,
    kind: ViolationKind,
    max_runs: u64,
) -> Result<Shrunk, SimError> {
    let mut budget = Budget { runs: max_runs };
    let before = (decisions.len(), scenario.config.cpus, scenario.workload.rounds);
    let mut best = scenario.clone();
    let Some(original) = reproduces(&best, &decisions, kind) else {
        let msg = format!("do not reproduce a {kind} violation");
        return Err(SimError::invalid(sim_core::Subject::Decisions, msg));
    };
    // A candidate that has not failed by twice the original length never will in a useful way
    // (an exhausted list answers 0, which can starve the patcher until the tick budget). A
    // liveness failure *is* the budget running out, so it keeps its budget.
    if kind != ViolationKind::Liveness {
        best.config.max_ticks = Some(original.budget.min((original.stats.ticks * 2).max(2_000)));
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
    // Normalise: the strict list this scenario consumes, with the original budget; it must
    // replay exactly (a lenient run that reproduced always yields such a list).
    best.config.max_ticks = scenario.config.max_ticks;
    let Some(lenient) = reproduces(&best, &list, kind) else {
        return Err(SimError::Internal(format!("the shrunk {kind} run no longer reproduces")));
    };
    let recorded = Recorded::from_log(lenient.decisions);
    let outcome = best.replay(recorded.clone())?;
    if outcome.violation().map(|v| v.kind) != Some(kind) {
        return Err(SimError::Internal(format!("the shrunk {kind} list does not replay strictly")));
    }
    let report = ShrinkReport {
        decisions_before: before.0,
        decisions_after: recorded.prefix.len(),
        cpus: (before.1, best.config.cpus),
        rounds: (before.2, best.workload.rounds),
        runs: max_runs - budget.runs,
    };
    Ok(Shrunk { scenario: best, decisions: recorded, outcome, report })
}
