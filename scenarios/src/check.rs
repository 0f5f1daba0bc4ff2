//! `pokesim check`, the main job: the built-in scenarios with their expected verdicts.
//!
//! Each built-in scenario is a protocol version (with or without one mutant) on a workload
//! under a fetch preset, run over a range of seeds that also cycles the vCPU count (2, 4, 8)
//! and the site placement (aligned, crossing 16, crossing 64, crossing a page). A scenario expected to
//! pass must pass every seed; one expected to fail must fail with the expected violation kind
//! within its seeds (it stops at the first violation). The expectations for the snapshot
//! preset follow reference/x86-cmc.md §5.4: with one consistent snapshot per fetch, the syncs
//! after the INT3 and after the tail are unnecessary, the last one is not.
//!
//! Scenarios run in parallel (rayon); every run builds its own engines on its own thread, and
//! each scenario's result depends only on its seeds, so the table is the same for any number
//! of jobs.

use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use sim_core::{Mutant, Protocol, SimError, Verdict, ViolationKind};

use std::path::PathBuf;

use crate::artifact::Artifact;
use crate::catalogue;
use crate::scenario::Scenario;
use crate::workload::{WorkloadKind, WorkloadSpec};

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
    /// Workload variant name.
    pub variant: &'static str,
    /// Workload.
    pub spec: WorkloadSpec,
    /// Protocol.
    pub protocol: Protocol,
    /// Mutant, if any.
    pub mutant: Option<Mutant>,
    /// Fetch preset name.
    pub preset: &'static str,
    /// Run with the unsafe multi-instruction override.
    pub unsafe_multi_insn: bool,
    /// Expected result.
    pub expect: Expect,
    /// Why this expectation (the historic bug or hardware assumption), if not a plain pass.
    pub why: Option<&'static str>,
}

impl BuiltIn {
    /// The scenario name shown in the table.
    pub fn name(&self) -> String {
        let m = self.mutant.map_or(String::new(), |m| format!("+{m}"));
        format!("{}/{}{m}@{}", self.variant, self.protocol, self.preset)
    }

    /// The scenario run for seed index `k`: vCPUs cycle 2, 4, 8; placements cycle too.
    pub fn scenario(&self, k: u64) -> Scenario {
        let mut s =
            catalogue::scenario(self.protocol, &self.mutant.into_iter().collect::<Vec<_>>(), self.spec, self.preset, k);
        s.config.unsafe_multi_insn = self.unsafe_multi_insn;
        s
    }
}

fn ftrace_row(mutant: Option<Mutant>, preset: &'static str, expect: Expect, why: Option<&'static str>) -> BuiltIn {
    BuiltIn {
        variant: "ftrace",
        spec: WorkloadSpec::new(WorkloadKind::Ftrace),
        protocol: Protocol::Seed,
        mutant,
        preset,
        unsafe_multi_insn: false,
        expect,
        why,
    }
}

/// The built-in scenarios:
/// - `seed` and its four INT3-protocol mutants on ftrace, under `pessimistic` and `snapshot`
///   (which syncs each hardware assumption makes unnecessary);
/// - every protocol version × every workload variant it supports, expected to pass unless the
///   version has a historic bug there (B1, B3, the 5.6 `try_get_desc()` race);
/// - `multi_insn` with the unsafe override on every version (B2).
pub fn builtins() -> Vec<BuiltIn> {
    use ViolationKind::*;
    let mut out = Vec::new();
    for preset in ["pessimistic", "snapshot"] {
        let snapshot = preset == "snapshot";
        out.push(ftrace_row(None, preset, Expect::Pass, None));
        for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3] {
            let (expect, why) = match m {
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail if snapshot => {
                    (Expect::Pass, Some("one consistent snapshot per fetch never mixes store epochs (x86-cmc §5.4)"))
                }
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail | Mutant::NoInt3 => {
                    (Expect::Violation(&[TornFetch]), None)
                }
                // A stale INT3 after bp_patching is cleared is unclaimed; one that traps between
                // `vec = NULL` and `nr_entries = 0` makes the handler dereference NULL — bug B3,
                // which the dropped sync had been hiding for the patching INT3 itself.
                _ => (Expect::Violation(&[UnclaimedInt3, HandlerFault]), Some("stale INT3; or B3 exposed")),
            };
            out.push(ftrace_row(Some(m), preset, expect, why));
        }
    }
    for protocol in Protocol::ALL {
        for v in catalogue::variants() {
            // Unsupported pairs are refused as bad input; seed/ftrace is already a row above.
            if catalogue::supported(protocol, v.spec).is_err() || (protocol == Protocol::Seed && v.name == "ftrace") {
                continue;
            }
            let why = catalogue::known_bug(protocol, &v);
            let expect = match why {
                None => Expect::Pass,
                Some(b) if b.starts_with("B1") => Expect::Violation(&[EmulationMismatch, WorkloadInvariant]),
                Some(_) => Expect::Violation(&[HandlerFault]),
            };
            out.push(BuiltIn {
                variant: v.name,
                spec: v.spec,
                protocol,
                mutant: None,
                preset: "pessimistic",
                unsafe_multi_insn: false,
                expect,
                why,
            });
        }
        out.push(BuiltIn {
            variant: "multi_insn",
            spec: WorkloadSpec::new(WorkloadKind::MultiInsn),
            protocol,
            mutant: None,
            preset: "pessimistic",
            unsafe_multi_insn: true,
            expect: Expect::Violation(&[TornFetch]),
            why: Some("B2: a CPU preempted inside the replaced range resumes into new bytes"),
        });
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
    /// The failure artifact of the first violation, if any.
    #[serde(skip)]
    pub artifact: Option<(Artifact, PathBuf)>,
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
        artifact: None,
    };
    for k in 0..runs {
        let scenario = b.scenario(k);
        let outcome = scenario.run()?;
        row.runs += 1;
        row.int3_traps += outcome.stats.int3_traps;
        row.patch_rounds += outcome.stats.patch_rounds;
        if let Some(v) = outcome.violation() {
            row.verdict = Verdict::Violation;
            row.kind = Some(v.kind);
            row.seed = Some(k);
            let name = b.name().replace(['/', '@', '+'], "-");
            row.artifact =
                Artifact::new(&name, &scenario, &outcome).map(|a| (a, PathBuf::from(format!("{name}.json"))));
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

/// The seeds of one campaign: pass rows run them all, violation rows stop at the first.
pub const DEFAULT_RUNS: u64 = 150;
