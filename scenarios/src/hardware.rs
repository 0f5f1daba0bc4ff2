//! Ground truth (`pokesim hw`): a scenario's protocol on the host's real x86-64 CPUs — the
//! same plan (guest code, workload invariant, the version's program and handler logic, or the
//! protocol's C file, its very linked image run natively) the simulator runs, carried out by
//! the `hw` crate — and the matrix that puts what the hardware
//! showed next to what each fetch preset predicts, the way litmus7's `-variant self` tests
//! self-modifying code on AArch64 hardware (docs/reference/hardware.md).

use cpu_model::FetchModel;
use hw::{Host, HwReport, Limits, Refusal};
use sim_core::sched::Strategy;
use sim_core::{Mutant, Protocol, SimError, ViolationKind};

use crate::campaign::{Campaign, Shard};
use crate::entry::Expectation;
use crate::scenario::Scenario;
use crate::spec::ScenarioSpec;
use crate::workload::{SitePlacement, WorkloadKind, WorkloadSpec};

/// Why an hw run did not run.
#[derive(Debug, thiserror::Error)]
pub enum HwError {
    /// The host (or the guest's addresses) cannot.
    #[error("{0}")]
    Refused(#[from] Refusal),
    /// The scenario has no plan.
    #[error("{0}")]
    Scenario(#[from] SimError),
}

/// Whether an hw run met a scenario's expectation: no violation for `pass` (and a
/// hw run that established something: [`HwReport::no_verdict`]), a listed kind for a
/// violation. A torn fetch or an emulation mismatch has no byte-level view
/// on hardware: it shows as a guest fault or a broken workload invariant, so either meets an
/// expectation of those.
pub fn meets(expect: Expectation, r: &HwReport) -> bool {
    let shows = |want: ViolationKind, seen: ViolationKind| {
        want == seen
            || matches!(want, ViolationKind::TornFetch | ViolationKind::EmulationMismatch)
                && matches!(seen, ViolationKind::GuestFault | ViolationKind::WorkloadInvariant)
    };
    match expect {
        Expectation::Pass => r.total_violations() == 0 && r.no_verdict.is_none(),
        Expectation::Violation(set) => r.violations.iter().any(|(k, _)| set.kinds().any(|want| shows(want, *k))),
    }
}

/// Violation rates are counted per this many rounds, as the README's tables count them.
pub const RATE_ROUNDS: u64 = 100_000;

/// Violations per [`RATE_ROUNDS`] rounds (0 when no round ran).
pub fn rate(r: &HwReport) -> f64 {
    if r.rounds == 0 {
        0.0
    } else {
        r.total_violations() as f64 * RATE_ROUNDS as f64 / r.rounds as f64
    }
}

/// What an hw run's exit status rests on, in one sentence: `no verdict: <why>` when it saw
/// no violation and established nothing ([`HwReport::no_verdict`]), else `expected <expect>;
/// saw <what> in <N> rounds`.
pub fn reason(expect: Expectation, r: &HwReport) -> String {
    if let (Some(why), 0) = (&r.no_verdict, r.total_violations()) {
        return format!("no verdict: {why}");
    }
    format!("expected {expect}; saw {} in {} rounds", seen(r), r.rounds)
}

/// The violations an hw run saw, in words: `no violation`, `3 guest-fault violations`,
/// `2 guest-fault and 1 unclaimed-int3 violations`.
pub fn seen(r: &HwReport) -> String {
    let kinds: Vec<String> = r.violations.iter().map(|(k, n)| format!("{n} {}", k.name())).collect();
    match (kinds.len(), r.total_violations()) {
        (0, _) => "no violation".to_string(),
        (_, 1) => format!("{} violation", kinds[0]),
        (1, _) => format!("{} violations", kinds[0]),
        _ => format!("{} and {} violations", kinds[..kinds.len() - 1].join(", "), kinds[kinds.len() - 1]),
    }
}

/// The fields of a scenario file that describe simulator runs and so do not apply on
/// hardware, where the CPUs interleave and fetch as they do: those `spec` sets, by their name
/// in the file.
pub fn not_applied(spec: &ScenarioSpec) -> Vec<&'static str> {
    let f = &spec.fetch;
    [
        ("seed", spec.seed.is_some()),
        ("runs", spec.runs.is_some()),
        ("strategy", spec.strategy.is_some()),
        ("ticks", spec.ticks.is_some()),
        ("iterations", spec.iterations.is_some()),
        ("drain", spec.drain.is_some()),
        // A preset's store granularity applies (byte, aligned8, whole); its fetch model does not.
        ("fetch.preset", f.preset.is_some()),
        ("fetch.unit", f.unit.is_some()),
        ("fetch.monotone", f.monotone.is_some()),
        ("fetch.staleness", f.staleness.is_some()),
        ("fetch.own_stores", f.own_stores.is_some()),
        // Real CPUs take the interrupts they take.
        ("interrupts", spec.interrupts.section.is_some()),
        // Real CPUs have the memory model they have (x86-TSO), whatever the file says.
        ("memory.model", spec.memory.model.is_some()),
    ]
    .into_iter()
    .filter(|(_, given)| *given)
    .map(|(name, _)| name)
    .collect()
}

/// Runs `scenario` on `host`'s CPUs within `limits`. The workload's script (its `rounds`)
/// repeats from its initial image until `limits.rounds` rounds ran.
pub fn run(scenario: &Scenario, host: &Host, limits: &Limits) -> Result<HwReport, HwError> {
    run_with_progress(scenario, host, limits, &|_| {})
}

/// [`run`], telling `progress` the rounds completed at the end of every round.
pub fn run_with_progress(
    scenario: &Scenario,
    host: &Host,
    limits: &Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<HwReport, HwError> {
    // A protocol compiled from C runs natively, its own linked image (hw::session's C face);
    // the plan refuses what the compiled path does not run (kprobes that arm themselves).
    let plan = scenario.plan()?;
    if plan.image.scripts().flatten().any(|a| matches!(a, sim_core::PatchAction::Early { .. })) {
        // text_poke_early() runs cli/popf, which a host thread may not execute.
        return Err(HwError::Scenario(SimError::invalid(
            sim_core::Subject::Workload,
            "workload early (text_poke_early(), interrupts on the patching CPU) runs in the simulator only: its \
             local_irq_save() is a cli a host thread may not execute",
        )));
    }
    Ok(hw::session::run_with_progress(plan, host, limits, progress)?)
}

/// What the simulator predicts for a scenario under one fetch preset.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Prediction {
    /// The preset.
    pub preset: &'static str,
    /// The first violation's kind, if a run within the budget violated.
    pub caught: Option<ViolationKind>,
    /// Runs the simulator did (up to the first violation).
    pub runs: u64,
}

/// The simulator's prediction for `scenario` (its store granularity kept) under every fetch
/// preset: a random campaign of `runs` seeds each, stopping at the first violation.
pub fn predict(scenario: &Scenario, runs: u64) -> Result<Vec<Prediction>, SimError> {
    FetchModel::PRESETS
        .iter()
        .map(|&preset| {
            let mut base = scenario.clone();
            let stores = base.config.fetch.stores;
            base.config.fetch = FetchModel { stores, ..FetchModel::preset(preset).expect("a preset") };
            base.strategy = Strategy::Random;
            let at = |k: u64| Scenario { seed: k, ..base.clone() };
            let r = Campaign { scenario_at: &at, runs, shard: Shard::ALL, time: None }.run(&|_| {})?;
            let caught = r.found.as_ref().and_then(|f| f.outcome.violation().map(|v| v.kind));
            Ok(Prediction { preset, caught, runs: r.runs })
        })
        .collect()
}

/// The mutants `--matrix` runs on linux-6.16: every one a single-site ftrace or static_call
/// script can show (not the batch-, Jcc- and kprobe-only ones, nor the nested-INT3 one, which
/// the hardware handler cannot reproduce: it never calls patched text; nor `no-rmb`, which no
/// scenario lets act: the handler has no `smp_rmb()` step to drop).
pub const MATRIX_MUTANTS: [Mutant; 10] = [
    Mutant::NoSyncAfterInt3,
    Mutant::NoSyncAfterTail,
    Mutant::NoSyncAfterFirst,
    Mutant::NoInt3,
    Mutant::TailBeforeInt3,
    Mutant::PublishAfterInt3,
    Mutant::SkipRefsWait,
    Mutant::DetourHandler,
    Mutant::EmulateOld,
    Mutant::NoWmb,
];

/// The site placements that matter to instruction fetch.
pub(crate) const MATRIX_SITES: [SitePlacement; 3] =
    [SitePlacement::ALIGNED, SitePlacement::CROSS16, SitePlacement::CROSS64];

/// The rows of `--matrix`: ftrace and static_call × aligned, crossing a 16-byte block,
/// crossing a 64-byte line × linux-5.5 and linux-6.16 unmutated, then each of
/// [`MATRIX_MUTANTS`] on linux-6.16 — byte stores, `cpus` vCPUs (guest threads). A version
/// that cannot patch a workload at all (linux-5.5 cannot emulate static_call's RET) has no
/// row.
pub fn matrix_scenarios(cpus: usize) -> Vec<Scenario> {
    let mut out = Vec::new();
    for kind in [WorkloadKind::Ftrace, WorkloadKind::StaticCall] {
        for site in MATRIX_SITES {
            let rows = [(Protocol::Linux55, None), (Protocol::Linux616, None)]
                .into_iter()
                .chain(MATRIX_MUTANTS.into_iter().map(|m| (Protocol::Linux616, Some(m))));
            for (protocol, mutant) in rows {
                let spec = WorkloadSpec { site, ..WorkloadSpec::new(kind) };
                let mut s = crate::catalogue::scenario(protocol, &[], spec, "pessimistic", 0);
                s.workload.site = site;
                s.config.cpus = cpus;
                s.config.mutants = mutant.into_iter().collect();
                if crate::catalogue::supported(protocol, s.workload).is_ok() {
                    out.push(s);
                }
            }
        }
    }
    out
}

/// A preset against the hardware: the rows where the hardware showed a violation the preset
/// did not predict (which contradict it), and the rows where it predicted one the hardware
/// never showed (which do not: the hardware may not have hit the window in its rounds).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Consistency {
    /// The preset.
    pub preset: &'static str,
    /// Rows (indices) whose hardware violations the preset did not predict.
    pub contradicted_by: Vec<usize>,
    /// Rows the preset predicted a violation for that the hardware did not show.
    pub unseen: Vec<usize>,
}

/// Each preset against the rows' hardware reports and predictions (one per row, in order);
/// a row without a verdict ([`HwReport::no_verdict`]) counts neither way.
pub fn consistency(reports: &[HwReport], predictions: &[Vec<Prediction>]) -> Vec<Consistency> {
    FetchModel::PRESETS
        .iter()
        .enumerate()
        .map(|(i, &preset)| {
            let mut c = Consistency { preset, contradicted_by: Vec::new(), unseen: Vec::new() };
            for (row, (r, p)) in reports.iter().zip(predictions).enumerate() {
                if r.no_verdict.is_some() {
                    continue; // the hardware established nothing there: neither for nor against
                }
                let predicted = p.get(i).is_some_and(|p| p.caught.is_some());
                match (r.total_violations() > 0, predicted) {
                    (true, false) => c.contradicted_by.push(row),
                    (false, true) => c.unseen.push(row),
                    _ => {}
                }
            }
            c
        })
        .collect()
}
