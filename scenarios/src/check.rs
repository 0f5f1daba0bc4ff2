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
//! Each row is one campaign ([`crate::campaign`]); rows run in parallel and every row's result
//! depends only on its seeds, so the table is the same for any number of jobs.

use serde::Serialize;
use sim_core::{KernelConfig, Mutant, Protocol, SimError, Verdict, ViolationKind};

use crate::artifact::Artifact;
use crate::campaign::{Campaign, Shard};
use crate::catalogue;
use crate::entry::{Expectation, KindSet};
use crate::scenario::Scenario;
use crate::workload::{WorkloadKind, WorkloadSpec};

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
    /// The kernel configuration.
    pub kernel: KernelConfig,
    /// Run with the unsafe multi-instruction override.
    pub unsafe_multi_insn: bool,
    /// Expected result.
    pub expect: Expectation,
    /// Why this expectation (the historic bug or hardware assumption), if not a plain pass.
    pub why: Option<&'static str>,
}

impl BuiltIn {
    /// The scenario name shown in the table.
    pub fn name(&self) -> String {
        let m = self.mutant.map_or(String::new(), |m| format!("+{m}"));
        let k = if self.kernel == KernelConfig::DEFCONFIG { String::new() } else { format!("[{}]", self.kernel) };
        format!("{}/{}{m}{k}@{}", self.variant, self.protocol, self.preset)
    }

    /// The seeds this row runs when the table runs `runs`: a `batch` run patches all its sites
    /// (16 by default) every round, so a third of the seeds still gives a batch row more INT3
    /// traps than any single-site row (about 14,000 against 2,000–10,000 at the defaults).
    pub fn runs(&self, runs: u64) -> u64 {
        match self.spec.kind {
            WorkloadKind::Batch => runs.div_ceil(3),
            _ => runs,
        }
    }

    /// The scenario run for seed index `k`: vCPUs cycle 2, 4, 8; placements cycle too.
    pub fn scenario(&self, k: u64) -> Scenario {
        let mut s =
            catalogue::scenario(self.protocol, &self.mutant.into_iter().collect::<Vec<_>>(), self.spec, self.preset, k);
        s.config.unsafe_multi_insn = self.unsafe_multi_insn;
        s.config.kernel = self.kernel;
        s
    }
}

fn ftrace_row(
    mutant: Option<Mutant>,
    preset: &'static str,
    kernel: KernelConfig,
    expect: Expectation,
    why: Option<&'static str>,
) -> BuiltIn {
    BuiltIn {
        variant: "ftrace",
        spec: WorkloadSpec::new(WorkloadKind::Ftrace),
        protocol: Protocol::Seed,
        mutant,
        preset,
        kernel,
        unsafe_multi_insn: false,
        expect,
        why,
    }
}

/// The built-in scenarios:
/// - `seed` and its four INT3-protocol mutants on ftrace, under `pessimistic` and `snapshot`
///   (which syncs each hardware assumption makes unnecessary);
/// - every protocol version × every workload variant it supports, expected to pass unless the
///   version has a historic bug there (B1, B3, B5, the 5.6 `try_get_desc()` race);
/// - `multi_insn` with the unsafe override on every version (B2).
pub fn builtins() -> Vec<BuiltIn> {
    use ViolationKind::*;
    let mut out = Vec::new();
    let defconfig = KernelConfig::DEFCONFIG;
    for preset in ["pessimistic", "snapshot"] {
        let snapshot = preset == "snapshot";
        out.push(ftrace_row(None, preset, defconfig, Expectation::Pass, None));
        // With kprobes, kprobe_int3_handler() recovers a stale INT3 whose byte is gone from
        // memory (back up, IRET, retry); what stays is B3, the handler that loaded
        // nr_entries before the seed's teardown cleared vec without a sync.
        out.push(ftrace_row(
            Some(Mutant::NoSyncAfterFirst),
            preset,
            defconfig,
            Expectation::Violation(KindSet::of(&[HandlerFault, UseAfterFree])),
            Some(
                "stale INT3s recovered by kprobe_int3_handler(); B3 exposed (NULL vec, or the returned batch's array)",
            ),
        ));
        for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3] {
            // The stale-INT3 row describes a kernel without kprobes (the one above, with them).
            let kernel = if m == Mutant::NoSyncAfterFirst { KernelConfig { kprobes: false } } else { defconfig };
            let (expect, why) = match m {
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail if snapshot => (
                    Expectation::Pass,
                    Some("one consistent snapshot per fetch never mixes store epochs (x86-cmc §5.4)"),
                ),
                Mutant::NoSyncAfterInt3 | Mutant::NoSyncAfterTail | Mutant::NoInt3 => {
                    (Expectation::Violation(KindSet::of(&[TornFetch])), None)
                }
                // A stale INT3 after bp_patching is cleared is unclaimed; one that traps between
                // `vec = NULL` and `nr_entries = 0` makes the handler dereference NULL — bug B3,
                // which the dropped sync had been hiding for the patching INT3 itself.
                _ => (
                    Expectation::Violation(KindSet::of(&[UnclaimedInt3, HandlerFault, UseAfterFree])),
                    Some("stale INT3; or B3 exposed (NULL vec, or the returned batch's array)"),
                ),
            };
            out.push(ftrace_row(Some(m), preset, kernel, expect, why));
        }
    }
    for protocol in Protocol::ALL {
        for v in catalogue::variants() {
            // Unsupported pairs are refused as bad input; seed/ftrace is already a row above.
            if catalogue::supported(protocol, v.spec).is_err() || (protocol == Protocol::Seed && v.name == "ftrace") {
                continue;
            }
            let bug = catalogue::known_bug(protocol, &v);
            let expect = bug.map_or(Expectation::Pass, |b| Expectation::Violation(KindSet::of(b.kinds)));
            let why = bug.map(|b| b.why);
            out.push(BuiltIn {
                variant: v.name,
                spec: v.spec,
                protocol,
                mutant: None,
                preset: "pessimistic",
                kernel: defconfig,
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
            kernel: defconfig,
            unsafe_multi_insn: true,
            expect: Expectation::Violation(KindSet::of(&[TornFetch])),
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
    pub expect: Expectation,
    /// What happened.
    pub verdict: Verdict,
    /// Violation kind, if any.
    pub kind: Option<ViolationKind>,
    /// Seed of the first violation, if any.
    pub seed: Option<u64>,
    /// Runs done.
    pub runs: u64,
    /// Runs that spent their tick budget without a verdict.
    pub exhausted: u64,
    /// INT3 traps over all runs (shows the protocol was exercised).
    pub int3_traps: u64,
    /// Patch rounds over all runs.
    pub patch_rounds: u64,
    /// True if the result matches the expectation.
    pub ok: bool,
    /// Wall time in milliseconds (not part of any run's outcome).
    pub millis: u64,
    /// The failure artifact of the first violation, if any.
    #[serde(skip)]
    pub artifact: Option<(Artifact, String)>,
}

/// Runs one built-in scenario over seed indices `0..b.runs(runs)` (one campaign).
pub fn check_one(b: &BuiltIn, runs: u64) -> Result<CheckRow, SimError> {
    let at = |k| b.scenario(k);
    let c = Campaign { scenario_at: &at, runs: b.runs(runs), shard: Shard::ALL, time: None }.run(&|_| {})?;
    let violation = c.found.as_ref().and_then(|f| f.outcome.violation().map(|v| (f, v)));
    let kind = violation.map(|(_, v)| v.kind);
    let ok = b.expect.met_by(kind) && c.verdict() != Verdict::BudgetExhausted;
    let name = b.name().replace(['/', '@', '+'], "-");
    Ok(CheckRow {
        scenario: b.name(),
        expect: b.expect,
        verdict: c.verdict(),
        kind,
        seed: c.found.as_ref().map(|f| f.scenario.seed),
        runs: c.runs,
        exhausted: c.exhausted,
        int3_traps: c.totals.int3_traps,
        patch_rounds: c.totals.patch_rounds,
        ok,
        millis: c.elapsed.as_millis() as u64,
        artifact: violation.and_then(|(f, v)| {
            Artifact::new(&name, &f.scenario, &f.outcome).map(|a| (a, Artifact::file_name(&f.scenario, v)))
        }),
    })
}

/// The seeds of one campaign: pass rows run them all, violation rows stop at the first.
pub const DEFAULT_RUNS: u64 = 150;

/// Patch rounds per run of a built-in scenario (`pokesim check --rounds`). A round patches
/// every site through the whole protocol once; later rounds of a run start from wherever the
/// vCPUs are, so they are further samples of the same interleavings, not new code. 150 seeds
/// × 6 rounds (900 rounds per row, each row's vCPUs cycling 2/4/8 and its site through every
/// placement) keep every row's INT3 traps in the thousands and find every expected violation,
/// at a quarter of the 24 rounds a workload runs by default.
pub const DEFAULT_ROUNDS: u32 = 6;
