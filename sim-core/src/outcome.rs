//! The result of a run: verdict, violations, statistics, trace hash, and the decisions that
//! reproduce it. Nothing here depends on the host clock, so two runs of the same scenario
//! with the same decisions produce equal outcomes in any process.

use serde::{Deserialize, Serialize};

use crate::decision::Decision;
use crate::oracle::Violation;
use crate::trace::TraceEvent;

/// Pass or violation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verdict {
    /// No oracle fired.
    Pass,
    /// At least one oracle fired.
    Violation,
    /// The tick budget ran out before the run reached its end: nothing was established (not
    /// a pass, not a violation). A bigger budget (`ticks`) may decide it.
    BudgetExhausted,
}

impl Verdict {
    /// The name used in reports and JSON.
    pub fn name(self) -> &'static str {
        match self {
            Verdict::Pass => "pass",
            Verdict::Violation => "violation",
            Verdict::BudgetExhausted => "budget-exhausted",
        }
    }
}

impl std::fmt::Display for Verdict {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// Counters of a run.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Stats {
    /// Ticks (scheduled events).
    pub ticks: u64,
    /// Guest instructions executed (INT3 traps included).
    pub guest_steps: u64,
    /// INT3 traps taken.
    pub int3_traps: u64,
    /// Batches the patcher completed.
    pub patch_rounds: u64,
    /// Syncs (`on_each_cpu(do_sync_core)`) completed.
    pub syncs: u64,
    /// IPIs delivered.
    pub ipis: u64,
    /// Handler micro-steps.
    pub handler_steps: u64,
    /// Traps handed to a kprobe after the patching handler declined them.
    pub kprobe_hits: u64,
    /// Text store events.
    pub stores: u64,
    /// Handler emulations checked against the reference executor.
    pub emulation_checks: u64,
    /// Decisions drawn (scheduling and fetch).
    pub decisions: u64,
    /// Translation-block invalidations over all engines.
    pub invalidations: u64,
}

impl Stats {
    /// Adds another run's counters to these.
    pub fn add(&mut self, o: &Stats) {
        self.ticks += o.ticks;
        self.guest_steps += o.guest_steps;
        self.int3_traps += o.int3_traps;
        self.patch_rounds += o.patch_rounds;
        self.syncs += o.syncs;
        self.ipis += o.ipis;
        self.handler_steps += o.handler_steps;
        self.kprobe_hits += o.kprobe_hits;
        self.stores += o.stores;
        self.emulation_checks += o.emulation_checks;
        self.decisions += o.decisions;
        self.invalidations += o.invalidations;
    }
}

/// Everything a run produced.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Outcome {
    /// The verdict.
    pub verdict: Verdict,
    /// The violations (a run stops at the first).
    pub violations: Vec<Violation>,
    /// The tick budget the run had.
    pub budget: u64,
    /// Counters.
    pub stats: Stats,
    /// Hash over every event of the run (xxh3-64, hex).
    pub trace_hash: String,
    /// The decisions drawn, if the run kept them; replaying them reproduces the run.
    #[serde(skip)]
    pub decisions: Vec<Decision>,
    /// The trace events, if the run kept them ([`crate::Observe::trace`]).
    #[serde(skip)]
    pub trace: Vec<TraceEvent>,
    /// A state hash after every tick, if the run recorded them ([`crate::Observe::step_hashes`]).
    #[serde(skip)]
    pub step_hashes: Vec<u64>,
    /// A path-independent machine hash after every tick, if the run recorded them
    /// ([`crate::Observe::state_hashes`]).
    #[serde(skip)]
    pub state_hashes: Vec<u64>,
}

impl Outcome {
    /// The first violation, if any.
    pub fn violation(&self) -> Option<&Violation> {
        self.violations.first()
    }
}
