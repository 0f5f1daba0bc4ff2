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

/// The shrinker's state: the best (smallest failing) scenario and list so far, and the test
/// runs spent.
struct Shrinker<'a> {
    best: Scenario,
    list: Vec<Decision>,
    kind: ViolationKind,
    budget: Budget,
    tried: std::cell::Cell<u64>,
    progress: &'a dyn Fn(u64),
}

impl Shrinker<'_> {
    /// The leniently replayed outcome of `list` on `s`, if it violates with the same kind.
    fn reproduces(&self, s: &Scenario, list: &[Decision]) -> Option<Outcome> {
        self.tried.set(self.tried.get() + 1);
        (self.progress)(self.tried.get());
        let o = s.run_with(Decisions::replay_lenient(list.to_vec())).ok()?;
        (o.violation()?.kind == self.kind).then_some(o)
    }

    /// Delta debugging over the list of the best scenario.
    fn ddmin(&mut self, list: Vec<Decision>) {
        let mut budget = self.budget;
        let best = self.best.clone();
        self.list = ddmin(list, &mut budget, |l| self.reproduces(&best, l).map(|o| trim(o.decisions)));
        self.budget = budget;
    }

    /// Fewer vCPUs: with another count every scheduling index means something else, so the
    /// list does not carry over; look for a failure of the same kind among the seeds of the
    /// smaller scenario instead, smallest count first, and shrink that one.
    fn fewer_cpus(&mut self) {
        for cpus in 1..self.best.config.cpus {
            for seed in 0..SEEDS_PER_CPU_COUNT {
                if self.budget.runs == 0 {
                    return;
                }
                self.budget.runs -= 1;
                self.tried.set(self.tried.get() + 1);
                let s = Scenario {
                    seed,
                    config: sim_core::RunConfig { cpus, ..self.best.config.clone() },
                    ..self.best.clone()
                };
                let Ok(o) = s.run() else { continue };
                if o.violation().map(|v| v.kind) == Some(self.kind) {
                    self.best = s;
                    self.best.config.max_ticks = candidate_ticks(&o, self.kind).or(self.best.config.max_ticks);
                    self.ddmin(trim(o.decisions));
                    return;
                }
            }
        }
    }

    /// Fewer rounds: halve while it still fails, then step down.
    fn fewer_rounds(&mut self) {
        for halve in [true, false] {
            while self.best.workload.rounds > 1 && self.budget.runs > 0 {
                let mut s = self.best.clone();
                let r = s.workload.rounds;
                s.workload.rounds = if halve { (r / 2).max(1) } else { r - 1 };
                self.budget.runs -= 1;
                match self.reproduces(&s, &self.list) {
                    Some(o) => {
                        self.best = s;
                        self.list = trim(o.decisions);
                    }
                    None => break,
                }
            }
        }
    }
}

/// The tick budget of the candidates derived from the failing run `o`: a candidate that has not
/// failed by twice its length never will in a useful way (an exhausted list answers 0, which
/// can starve the patcher until the tick budget). A liveness failure may need the whole budget,
/// so it keeps it (`None`).
fn candidate_ticks(o: &Outcome, kind: ViolationKind) -> Option<u64> {
    (kind != ViolationKind::Liveness).then(|| o.budget.min((o.stats.ticks * 2).max(2_000)))
}

/// Shrinks `decisions` (a failing list for `scenario`, violation `kind`) within `max_runs`
/// test runs, calling `progress(tried)` after each. Returns the smaller scenario and its strict
/// decision list; `Err` (invalid decisions) if the list does not reproduce a `kind` violation
/// to begin with.
pub fn shrink(
    scenario: &Scenario,
    decisions: Vec<Decision>,
    kind: ViolationKind,
    max_runs: u64,
    progress: &dyn Fn(u64),
) -> Result<Shrunk, SimError> {
    let before = (decisions.len(), scenario.config.cpus, scenario.workload.rounds);
    let mut sh = Shrinker {
        best: scenario.clone(),
        list: Vec::new(),
        kind,
        budget: Budget { runs: max_runs },
        tried: std::cell::Cell::new(0),
        progress,
    };
    let Some(original) = sh.reproduces(scenario, &decisions) else {
        let msg = format!("do not reproduce a {kind} violation");
        return Err(SimError::invalid(sim_core::Subject::Decisions, msg));
    };
    if let Some(ticks) = candidate_ticks(&original, kind) {
        sh.best.config.max_ticks = Some(ticks);
    }
    sh.list = trim(original.decisions);
    sh.fewer_cpus();
    sh.fewer_rounds();
    let list = std::mem::take(&mut sh.list);
    sh.ddmin(list);
    // Normalise: the strict list this scenario consumes, with the original budget; it must
    // replay exactly (a lenient run that reproduced always yields such a list).
    let mut best = sh.best.clone();
    best.config.max_ticks = scenario.config.max_ticks;
    let Some(lenient) = sh.reproduces(&best, &sh.list) else {
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
        runs: sh.tried.get(),
    };
    Ok(Shrunk { scenario: best, decisions: recorded, outcome, report })
}
