//! `pokesim check`, the main job: the built-in scenarios with their expected verdicts.
//!
//! Each built-in scenario is a protocol (with or without one mutant) on a workload under a
//! fetch preset, run over a range of seeds that also cycles the vCPU count (2, 4, 8) and the
//! site placement (aligned, crossing 16, crossing 64, crossing a page). A scenario expected to
//! pass must pass every seed; one expected to fail must fail with the expected violation kind
//! within its seeds (it stops at the first violation). The expectations for the snapshot
//! preset follow reference/x86-cmc.md §5.4: with one consistent snapshot per fetch, the syncs
//! after the INT3 and after the tail are unnecessary, the last one is not.
//!
//! Scenarios run in parallel (rayon); every run builds its own engines on its own thread, and
//! each scenario's result depends only on its seeds, so the table is the same for any number
//! of jobs.

use std::time::{Duration, Instant};

use cpu_model::FetchModel;
use rayon::prelude::*;
use serde::Serialize;
use sim_core::sched::Strategy;
use sim_core::{Mutant, Protocol, RunConfig, SimError, Verdict, ViolationKind};

use crate::scenario::Scenario;
use crate::workload::{SitePlacement, WorkloadKind, WorkloadSpec};

/// What a built-in scenario must produce.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case", tag = "verdict", content = "kinds")]
pub enum Expect {
    /// No violation on any seed.
    Pass,
    /// A violation on some seed; the first violation found must be one of these kinds (the
    /// first listed is the primary failure, the others are consequences the mutant can also
    /// reach).
    Violation(&'static [ViolationKind]),
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Pass => f.write_str("pass"),
            Expect::Violation(kinds) => {
                let names: Vec<_> = kinds.iter().map(|k| k.name()).collect();
                f.write_str(&names.join("|"))
            }
        }
    }
}

/// A built-in scenario family.
#[derive(Clone, Debug)]
pub struct BuiltIn {
    /// Workload.
    pub workload: WorkloadKind,
    /// Protocol.
    pub protocol: Protocol,
    /// Mutant, if any.
    pub mutant: Option<Mutant>,
    /// Fetch preset name.
    pub preset: &'static str,
    /// Expected result.
    pub expect: Expect,
}

impl BuiltIn {
    /// The scenario name shown in the table.
    pub fn name(&self) -> String {
        let m = self.mutant.map_or(String::new(), |m| format!("+{m}"));
        format!("{}/{}{m}@{}", self.workload, self.protocol, self.preset)
    }

    /// The scenario run for seed index `k`: vCPUs cycle 2, 4, 8; placements cycle too.
    pub fn scenario(&self, k: u64) -> Scenario {
        let cpus = [2, 4, 8][(k % 3) as usize];
        let site = SitePlacement::NAMED[((k / 3) % 4) as usize];
        Scenario {
            workload: WorkloadSpec { site, ..WorkloadSpec::new(self.workload) },
            config: RunConfig {
                cpus,
                protocol: self.protocol,
                mutants: self.mutant.into_iter().collect(),
                fetch: FetchModel::preset(self.preset).expect("built-in presets exist"),
                ..RunConfig::default()
            },
            strategy: Strategy::Random,
            seed: k,
        }
    }
}

/// The built-in scenarios: `seed` and each of its mutants on ftrace, under `pessimistic` and
/// `snapshot`.
pub fn builtins() -> Vec<BuiltIn> {
    use ViolationKind::*;
    let mut out = Vec::new();
    for preset in ["pessimistic", "snapshot"] {
        let snapshot = preset == "snapshot";
        out.push(BuiltIn {
            workload: WorkloadKind::Ftrace,
            protocol: Protocol::Seed,
            mutant: None,
            preset,
            expect: Expect::Pass,
        });
        for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3] {
            let expect = match m {
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail if snapshot => Expect::Pass,
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail | Mutant::NoInt3 => Expect::Violation(&[TornFetch]),
                // A stale INT3 after bp_patching is cleared is unclaimed; one that traps between
                // `vec = NULL` and `nr_entries = 0` makes the handler dereference NULL — bug B3,
                // which the dropped sync had been hiding for the patching INT3 itself.
                _ => Expect::Violation(&[UnclaimedInt3, HandlerFault]),
            };
            out.push(BuiltIn {
                workload: WorkloadKind::Ftrace,
                protocol: Protocol::Seed,
                mutant: Some(m),
                preset,
                expect,
            });
        }
    }
    out
}

/// The result of one built-in scenario.
#[derive(Clone, Debug, Serialize)]
pub struct CheckRow {
    /// Scenario name.
    pub scenario: String,
    /// Expected result.
    pub expect: Expect,
    /// What happened.
    pub verdict: Verdict,
    /// Violation kind, if any.
    pub kind: Option<ViolationKind>,
    /// Seed of the first violation, if any.
    pub seed: Option<u64>,
    /// Runs done.
    pub runs: u64,
    /// INT3 traps over all runs (shows the protocol was exercised).
    pub int3_traps: u64,
    /// Patch rounds over all runs.
    pub patch_rounds: u64,
    /// True if the result matches the expectation.
    pub ok: bool,
    /// Wall time (not part of any run's outcome).
    #[serde(skip)]
    pub time: Duration,
}

/// Runs one built-in scenario over seeds `0..runs`.
pub fn check_one(b: &BuiltIn, runs: u64) -> Result<CheckRow, SimError> {
    let start = Instant::now();
    let mut row = CheckRow {
        scenario: b.name(),
        expect: b.expect,
        verdict: Verdict::Pass,
        kind: None,
        seed: None,
        runs: 0,
        int3_traps: 0,
        patch_rounds: 0,
        ok: false,
        time: Duration::ZERO,
    };
    for k in 0..runs {
        let outcome = b.scenario(k).run()?;
        row.runs += 1;
        row.int3_traps += outcome.stats.int3_traps;
        row.patch_rounds += outcome.stats.patch_rounds;
        if let Some(v) = outcome.violation() {
            row.verdict = Verdict::Violation;
            row.kind = Some(v.kind);
            row.seed = Some(k);
            break;
        }
    }
    row.ok = match b.expect {
        Expect::Pass => row.verdict == Verdict::Pass,
        Expect::Violation(kinds) => row.kind.is_some_and(|k| kinds.contains(&k)),
    };
    row.time = start.elapsed();
    Ok(row)
}

/// Runs every built-in scenario, in parallel, over `runs` seeds each.
pub fn check_all(runs: u64) -> Result<Vec<CheckRow>, SimError> {
    builtins().par_iter().map(|b| check_one(b, runs)).collect()
}
