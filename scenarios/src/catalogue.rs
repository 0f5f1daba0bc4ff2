//! The catalogue as data: the workload variants every version is run against, which of them a
//! version supports, the historic bugs with their buggy and fixed versions, and the
//! mutant-detection matrix (each mutant × version × workload it applies to, under a fetch
//! preset: caught or not, by which violation, after how many runs).

use cpu_model::FetchModel;
use serde::Serialize;
use sim_core::sched::Strategy;
use sim_core::{Mutant, Protocol, RunConfig, SimError, ViolationKind};

use crate::scenario::Scenario;
use crate::workload::{SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec};

/// A named workload configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Name in tables: the workload name plus its options.
    pub name: &'static str,
    /// The workload.
    pub spec: WorkloadSpec,
}

fn spec(kind: WorkloadKind) -> WorkloadSpec {
    WorkloadSpec::new(kind)
}

/// The variants of the catalogue: every workload, plus the ones that matter for a version's
/// history (static_call without its RET trampoline, which pre-2020 handlers can emulate;
/// ftrace with a foreign kprobe; batch queued out of order).
pub fn variants() -> Vec<Variant> {
    vec![
        Variant { name: "ftrace", spec: spec(WorkloadKind::Ftrace) },
        Variant { name: "ftrace+kprobe", spec: WorkloadSpec { kprobe: true, ..spec(WorkloadKind::Ftrace) } },
        Variant { name: "static_call", spec: spec(WorkloadKind::StaticCall) },
        Variant { name: "static_call-no-tail", spec: WorkloadSpec { tail: false, ..spec(WorkloadKind::StaticCall) } },
        Variant { name: "jump_label", spec: spec(WorkloadKind::JumpLabel) },
        Variant { name: "jcc", spec: spec(WorkloadKind::Jcc) },
        Variant { name: "optprobe", spec: spec(WorkloadKind::Optprobe) },
        Variant { name: "batch", spec: spec(WorkloadKind::Batch) },
        Variant {
            name: "batch-interleaved",
            spec: WorkloadSpec { order: SiteOrder::Interleaved, ..spec(WorkloadKind::Batch) },
        },
    ]
}

/// The scenario for seed index `k` of a campaign: vCPUs cycle 2, 4, 8 and the site placement
/// cycles aligned, crossing 16, crossing 64, crossing a page.
pub fn scenario(protocol: Protocol, mutants: &[Mutant], spec: WorkloadSpec, preset: &str, k: u64) -> Scenario {
    Scenario {
        workload: WorkloadSpec { site: SitePlacement::NAMED[((k / 3) % 4) as usize], ..spec },
        config: RunConfig {
            cpus: [2, 4, 8][(k % 3) as usize],
            protocol,
            mutants: mutants.to_vec(),
            fetch: FetchModel::preset(preset).expect("known preset"),
            ..RunConfig::default()
        },
        strategy: Strategy::Random,
        seed: k,
        kprobes: Vec::new(),
    }
}

/// Whether `protocol` can run `spec` at all: `Err` with the kernel's reason if not.
pub fn supported(protocol: Protocol, spec: WorkloadSpec) -> Result<(), SimError> {
    let s = scenario(protocol, &[], WorkloadSpec { rounds: 2, ..spec }, "pessimistic", 0);
    s.run().map(|_| ())
}

/// Whether a version is known to fail a variant even unmutated, and why (its historic bug).
pub fn known_bug(protocol: Protocol, variant: &Variant) -> Option<&'static str> {
    let foreign_int3 = variant.spec.kprobe || variant.spec.kind == WorkloadKind::Optprobe;
    match protocol {
        Protocol::Linux54 if variant.spec.kind == WorkloadKind::StaticCall => {
            Some("B1: the detour handler cannot emulate a CALL")
        }
        Protocol::Linux54 | Protocol::Seed if foreign_int3 => {
            Some("B3: vec cleared before nr_entries without a sync; a foreign INT3's handler reads NULL")
        }
        Protocol::Linux56 if foreign_int3 => {
            Some("try_get_desc() race (fixed by efd608fa7403): a foreign INT3's handler increments freed stack memory")
        }
        _ => None,
    }
}

/// One cell of the mutant matrix.
#[derive(Clone, Debug, Serialize)]
pub struct MatrixCell {
    /// Mutant.
    pub mutant: String,
    /// Protocol version.
    pub protocol: String,
    /// Workload variant.
    pub workload: String,
    /// Fetch preset.
    pub preset: String,
    /// The first violation's kind, if caught.
    pub caught: Option<ViolationKind>,
    /// Runs done (up to and including the catching one).
    pub runs: u64,
}

/// Runs `mutant` on `protocol` × `variant` for up to `seeds` seeds, stopping at the first
/// violation.
pub fn mutant_cell(
    mutant: Mutant,
    protocol: Protocol,
    variant: &Variant,
    preset: &str,
    seeds: u64,
) -> Result<MatrixCell, SimError> {
    let mut cell = MatrixCell {
        mutant: mutant.name().into(),
        protocol: protocol.name().into(),
        workload: variant.name.into(),
        preset: preset.into(),
        caught: None,
        runs: 0,
    };
    for k in 0..seeds {
        let o = scenario(protocol, &[mutant], variant.spec, preset, k).run()?;
        cell.runs += 1;
        if let Some(v) = o.violation() {
            cell.caught = Some(v.kind);
            break;
        }
    }
    Ok(cell)
}

/// The cells of the matrix: every mutant × version it applies to × variant that version
/// supports and passes unmutated (a variant a version already fails says nothing about a
/// mutant).
pub fn matrix_cells() -> Vec<(Mutant, Protocol, Variant)> {
    let mut out = Vec::new();
    for p in Protocol::ALL {
        for v in variants() {
            if supported(p, v.spec).is_err() || known_bug(p, &v).is_some() {
                continue;
            }
            for m in Mutant::ALL {
                if m.applies_to(p) {
                    out.push((m, p, v));
                }
            }
        }
    }
    out
}
