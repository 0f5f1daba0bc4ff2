//! The mutant matrix under the pessimistic preset on the default kernel (`CONFIG_KPROBES=y`, which
//! the foreign-INT3 workloads need): every mutant × every version it applies to × every workload
//! variant that version passes unmutated; and the four INT3-protocol steps on ftrace without
//! kprobes, where a stale INT3 is fatal on every version (`complete_search.rs` checks where
//! kprobes recover it). A mutant whose original the kernel
//! comments defend (a sync, the INT3 step, an ordering, the refs wait, the B3 fix, CALL and Jcc
//! emulation) must be caught somewhere; a mutant argued benign in its description
//! (`emulate-old`, `no-wmb`) must be caught nowhere; a cell whose mutant cannot act is `n/a`
//! and counts for neither (`no-rmb` acts nowhere: the model has no `smp_rmb()` step). Run with `--nocapture` to see
//! the matrix.

#[path = "../support/skippable.rs"]
mod skippable;

use std::collections::BTreeMap;

use rayon::prelude::*;
use scenarios::matrix::{cell, cells, Cell, CellOptions, Coords, Filter};
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use sim_core::protocol::{Edits, HandlerEdit};
use sim_core::{KernelConfig, Mutant, Protocol, ViolationKind};

const SEEDS: u64 = 30;

/// Seeds per strategy per cell: `POKESIM_RUNS`, else [`SEEDS`].
fn seeds() -> u64 {
    tests::runs(SEEDS)
}

fn every_necessary_mutant_is_caught_and_every_benign_one_is_not() {
    let filter =
        Filter { presets: vec!["pessimistic".into()], kernels: vec![KernelConfig::DEFCONFIG], ..Filter::default() };
    let cells: Vec<Cell> = cells(&filter)
        .par_iter()
        .map(|c| cell(c, seeds(), CellOptions::CAUGHT).expect("matrix cells are runnable"))
        .collect();
    let mut by_mutant: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in &cells {
        let caught = c.kind.map_or("-".to_string(), |k| k.to_string());
        let runs = c.random_runs.map_or("-".to_string(), |r| r.to_string());
        eprintln!("{:<26} {:<11} {:<20} {:<17} {:<20} {:>3}", c.mutant, c.protocol, c.workload, c.kernel, caught, runs);
        let e = by_mutant.entry(c.mutant.as_str()).or_default();
        if c.applies() {
            e.0 += 1;
            e.1 += c.is_caught() as usize;
        }
    }
    // The vector-full check only matters with more than TEXT_POKE_ARRAY_MAX sites in one batch,
    // which no catalogue variant has (a 257-site batch is slow to run in every cell): there its
    // cells are n/a.
    let big = Coords {
        mutant: Mutant::BatchNoFullCheck,
        protocol: Protocol::Linux616,
        variant: scenarios::catalogue::Variant {
            name: "batch-257",
            spec: WorkloadSpec { sites: 257, rounds: 2, ..WorkloadSpec::new(WorkloadKind::Batch) },
        },
        kernel: KernelConfig::DEFCONFIG,
        preset: "pessimistic".into(),
    };
    let big = cell(&big, 3, CellOptions::CAUGHT).expect("runnable");
    assert_eq!(big.kind, Some(ViolationKind::PatcherFault), "batch-no-full-check on 257 sites");
    let e = by_mutant.entry(Mutant::BatchNoFullCheck.name()).or_default();
    (e.0, e.1) = (e.0 + 1, e.1 + 1);
    for m in Mutant::ALL {
        let (cells, caught) = by_mutant.get(m.name()).copied().unwrap_or_default();
        if m.edits() == Edits::Handler(HandlerEdit::Rmb) {
            // The model has no smp_rmb() step: no scenario lets no-rmb act, every cell is n/a.
            assert_eq!(cells, 0, "{m} acted somewhere");
            continue;
        }
        if m.edits().c_only() {
            // It edits code only the C files have (scenarios/tests/c_protocol.rs catches it).
            assert_eq!(cells, 0, "{m} acted on a Rust model");
            continue;
        }
        assert!(cells > 0, "{m} has no cell it can act on");
        if m.benign() {
            assert_eq!(caught, 0, "{m} is argued benign but was caught");
        } else {
            assert!(caught > 0, "{m} is necessary per the kernel but was never caught in {cells} cells");
        }
    }
    // The four steps of the INT3 protocol are necessary on every version, on plain ftrace, on a
    // kernel without kprobes (with them, 5.5 survives a stale INT3: complete_search.rs).
    let four: Vec<Coords> =
        [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3]
            .into_iter()
            .flat_map(|mutant| {
                Protocol::ALL.into_iter().map(move |protocol| Coords {
                    mutant,
                    protocol,
                    variant: scenarios::catalogue::variant("ftrace").unwrap(),
                    kernel: KernelConfig { kprobes: false },
                    preset: "pessimistic".into(),
                })
            })
            .collect();
    four.par_iter().for_each(|c| {
        let cell = cell(c, seeds(), CellOptions::CAUGHT).expect("matrix cells are runnable");
        assert!(
            cell.is_caught(),
            "{} on {} ftrace ({}) not caught in {} seeds",
            cell.mutant,
            cell.protocol,
            cell.kernel,
            seeds()
        );
    });
    // The emulation oracle catches an emulation bug the workload alone might miss.
    let jcc = cells.iter().find(|c| c.mutant == "jcc-no-invert" && c.workload == "jcc").expect("jcc cell");
    assert_eq!(jcc.kind, Some(ViolationKind::EmulationMismatch));
}

fn main() {
    skippable::run(
        skippable::full_suite(),
        &[],
        &[(
            "every_necessary_mutant_is_caught_and_every_benign_one_is_not",
            every_necessary_mutant_is_caught_and_every_benign_one_is_not,
        )],
    );
}
