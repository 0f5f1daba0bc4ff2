//! The sync-necessity matrix (`pokesim mutants`): every mutant × version it applies to ×
//! workload variant that version passes × kernel configuration × fetch preset — caught or not, by which strategy,
//! after how many runs and how much time, and how small its counterexample shrinks. Read down
//! a preset's column to see which protocol steps that hardware assumption makes unnecessary.
//! A cell whose mutant cannot act on its scenario (`kprobe-disarm-no-sync` where no kprobe
//! cycles, `batch-no-full-check` on a small batch, ...) is `n/a`, never run and never counted
//! as survived: a surviving mutant means the step it edits was not needed.

use std::sync::Arc;
use std::time::Instant;

use cpu_model::FetchModel;
use serde::Serialize;
use sim_core::compiled::Compiled;
use sim_core::sched::Strategy;
use sim_core::{KernelConfig, Mutant, Protocol, Recorded, SimError, ViolationKind};

use crate::campaign::{Campaign, Found, Shard};
use crate::catalogue::{self, known_bug, supported, variants, Variant};
use crate::scenario::Scenario;

/// One cell.
#[derive(Clone, Debug, Serialize)]
pub struct Cell {
    /// Mutant.
    pub mutant: String,
    /// Whether the mutant is argued benign.
    pub benign: bool,
    /// Protocol version.
    pub protocol: String,
    /// Workload variant.
    pub workload: String,
    /// Kernel configuration (`CONFIG_KPROBES=y`).
    pub kernel: String,
    /// Fetch preset.
    pub preset: String,
    /// Caught? `None` when the mutant cannot act on this cell's scenario (`n/a`): such a cell
    /// is never run, and says nothing about the step the mutant edits.
    pub caught: Option<bool>,
    /// Why the mutant cannot act on this cell's scenario (the cell is `n/a`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub not_applicable: Option<String>,
    /// Violation kind of the first counterexample.
    pub kind: Option<ViolationKind>,
    /// The strategy that needed fewer runs (`random` on a tie).
    pub strategy: Option<String>,
    /// Runs random needed (None: not within the budget).
    pub random_runs: Option<u64>,
    /// Runs PCT needed.
    pub pct_runs: Option<u64>,
    /// Decisions of the shrunk counterexample.
    pub shrunk_decisions: Option<usize>,
    /// Wall time of the cell, milliseconds.
    pub millis: u64,
    /// The counterexample (shrunk when the cell was shrunk), for reports
    /// ([`crate::render::matrix`]); not part of the JSON line.
    #[serde(skip)]
    pub counterexample: Option<Counterexample>,
}

impl Cell {
    /// Whether the cell ran and caught the mutant.
    pub fn is_caught(&self) -> bool {
        self.caught == Some(true)
    }

    /// Whether the mutant can act on the cell's scenario (else the cell is `n/a`).
    pub fn applies(&self) -> bool {
        self.caught.is_some()
    }
}

/// A caught cell's failing run: a scenario and the decisions that replay it strictly.
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// The scenario.
    pub scenario: Scenario,
    /// Its decisions.
    pub decisions: Recorded,
}

/// Which cells to compute.
#[derive(Clone, Debug, Default)]
pub struct Filter {
    /// Only this workload variant (by name, e.g. `ftrace` or `ftrace+kprobe`).
    pub workload: Option<String>,
    /// Only this version.
    pub protocol: Option<Protocol>,
    /// Only these presets (default: all four).
    pub presets: Vec<String>,
    /// Only these kernel configurations (default: all).
    pub kernels: Vec<KernelConfig>,
}

/// One cell's coordinates.
#[derive(Clone, Debug)]
pub struct Coords {
    /// The mutant.
    pub mutant: Mutant,
    /// The version.
    pub protocol: Protocol,
    /// The workload variant.
    pub variant: Variant,
    /// The kernel configuration.
    pub kernel: KernelConfig,
    /// The fetch preset.
    pub preset: String,
}

/// The cells selected by `filter`, grouped by mutant and kernel configuration.
pub fn cells(filter: &Filter) -> Vec<Coords> {
    let presets: Vec<String> = if filter.presets.is_empty() {
        FetchModel::PRESETS.iter().map(|p| p.to_string()).collect()
    } else {
        filter.presets.clone()
    };
    let kernels = if filter.kernels.is_empty() { KernelConfig::ALL.to_vec() } else { filter.kernels.clone() };
    let mut out = Vec::new();
    for p in Protocol::ALL.into_iter().filter(|p| filter.protocol.is_none_or(|f| f == *p)) {
        for v in variants() {
            if filter.workload.as_ref().is_some_and(|w| w != v.name) {
                continue;
            }
            if supported(p, v.spec).is_err() || known_bug(p, &v).is_some() {
                continue;
            }
            for &kernel in &kernels {
                // A workload with its own kprobe needs CONFIG_KPROBES.
                if !kernel.kprobes && (v.spec.kprobe.any() || v.spec.kind == crate::workload::WorkloadKind::Optprobe) {
                    continue;
                }
                for m in Mutant::ALL.into_iter().filter(|m| m.applies_to(p)) {
                    for preset in &presets {
                        out.push(Coords { mutant: m, protocol: p, variant: v, kernel, preset: preset.clone() });
                    }
                }
            }
        }
    }
    // One mutant's cells together, one kernel configuration after the other (a table row per
    // mutant and configuration can be printed as soon as its cells are done); the sort is
    // stable, so versions and workloads keep their order.
    out.sort_by_key(|c| (c.mutant, std::cmp::Reverse(c.kernel)));
    out
}

/// The first violation of `m` on `p` × `v` under `preset` with `strategy` within `runs` seed
/// indices (one campaign over the catalogue's cycling scenarios): how many runs it took. With
/// `compiled`, the protocol is that C build of the version instead of the Rust model.
fn first_violation(
    c: &Coords,
    strategy: Strategy,
    runs: u64,
    compiled: Option<&Arc<Compiled>>,
) -> Result<Option<(u64, Found)>, SimError> {
    let at = |k| {
        let mut s = catalogue::scenario(c.protocol, &[c.mutant], c.variant.spec, &c.preset, k);
        s.config.kernel = c.kernel;
        s.config.compiled = compiled.cloned();
        s.config.memory = s.config.default_memory();
        Scenario { strategy, ..s }
    };
    let c = Campaign { scenario_at: &at, runs, shard: Shard::ALL, time: None }.run(&|_| {})?;
    Ok(c.found.map(|f| (f.index + 1, f)))
}

/// Computes one cell with `runs` runs per strategy.
/// With `shrink`, the counterexample is shrunk and its size reported; `pct` adds a PCT
/// campaign next to the random one.
pub fn cell(c: &Coords, runs: u64, opts: CellOptions) -> Result<Cell, SimError> {
    let start = Instant::now();
    let mut cell = Cell {
        mutant: c.mutant.name().into(),
        benign: c.mutant.benign(),
        // The C build is named as labels name it: `linux-5.5.c`.
        protocol: if opts.c { format!("{}.c", c.protocol.name()) } else { c.protocol.name().into() },
        workload: c.variant.name.into(),
        kernel: c.kernel.to_string(),
        preset: c.preset.clone(),
        caught: None,
        not_applicable: None,
        kind: None,
        strategy: None,
        random_runs: None,
        pct_runs: None,
        shrunk_decisions: None,
        millis: 0,
        counterexample: None,
    };
    let mut at0 = catalogue::scenario(c.protocol, &[c.mutant], c.variant.spec, &c.preset, 0);
    at0.config.kernel = c.kernel;
    if let Some(why) = catalogue::vacuous(&at0)? {
        cell.not_applicable = Some(why);
        return Ok(cell);
    }
    let compiled = match opts.c {
        false => None,
        true => match compiled_cell(&mut at0) {
            Ok(compiled) => Some(compiled),
            Err(why) => {
                cell.not_applicable = Some(why);
                return Ok(cell);
            }
        },
    };
    let random = first_violation(c, Strategy::Random, runs, compiled.as_ref())?;
    let pct = if opts.pct { first_violation(c, Strategy::Pct { depth: 3 }, runs, compiled.as_ref())? } else { None };
    let (random_runs, pct_runs) = (random.as_ref().map(|r| r.0), pct.as_ref().map(|r| r.0));
    let best = match (&random, &pct) {
        (Some(r), Some(q)) if q.0 < r.0 => Some(("pct", q)),
        (Some(r), _) => Some(("random", r)),
        (None, Some(q)) => Some(("pct", q)),
        (None, None) => None,
    };
    cell.caught = Some(best.is_some());
    (cell.random_runs, cell.pct_runs) = (random_runs, pct_runs);
    if let Some((name, (_, found))) = best {
        let kind = found.outcome.violation().map(|v| v.kind);
        cell.kind = kind;
        cell.strategy = Some(name.into());
        let decisions = Recorded::from_log(found.outcome.decisions.clone());
        cell.counterexample = Some(Counterexample { scenario: found.scenario.clone(), decisions });
        if let (true, Some(kind)) = (opts.shrink, kind) {
            let shrunk = crate::shrink::shrink(&found.scenario, found.outcome.decisions.clone(), kind, 3_000, &|_| {})?;
            cell.shrunk_decisions = Some(shrunk.decisions.prefix.len());
            cell.counterexample = Some(Counterexample { scenario: shrunk.scenario, decisions: shrunk.decisions });
        }
    }
    cell.millis = start.elapsed().as_millis() as u64;
    Ok(cell)
}

/// The version's built-in C file with the cell's mutant, for `at0` (which takes it): `Err`
/// says why the cell does not apply to the C file (no switch for the mutant, a workload the
/// compiled path does not run yet).
fn compiled_cell(at0: &mut Scenario) -> Result<Arc<Compiled>, String> {
    let compiled = crate::csource::load(&crate::csource::ProtocolSource::Builtin, &at0.config)?;
    at0.config.compiled = Some(Arc::clone(&compiled));
    at0.config.memory = at0.config.default_memory();
    match at0.plan() {
        Ok(_) => Ok(compiled),
        Err(SimError::Invalid { subject: sim_core::Subject::ProtocolSource, message }) => Err(message),
        Err(e) => Err(e.to_string()),
    }
}

/// What a cell computes besides the random campaign.
#[derive(Clone, Copy, Debug)]
pub struct CellOptions {
    /// Also run a PCT (depth 3) campaign.
    pub pct: bool,
    /// Shrink the counterexample and report its size.
    pub shrink: bool,
    /// Run the version's built-in C file instead of the Rust model.
    pub c: bool,
}

impl CellOptions {
    /// What `pokesim mutants` computes: random and PCT, shrunk.
    pub const FULL: CellOptions = CellOptions { pct: true, shrink: true, c: false };
    /// Random only, not shrunk: whether the mutant is caught at all.
    pub const CAUGHT: CellOptions = CellOptions { pct: false, shrink: false, c: false };
}
