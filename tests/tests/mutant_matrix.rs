//! The mutant matrix under the pessimistic preset: every mutant × every version it applies to ×
//! every workload variant that version passes unmutated. A mutant whose original the kernel
//! comments defend (a sync, the INT3 step, an ordering, the refs wait, the B3 fix, CALL and Jcc
//! emulation) must be caught somewhere; a mutant argued benign in its description
//! (`emulate-old`, `no-wmb`, `no-rmb`) must be caught nowhere. Run with `--nocapture` to see
//! the matrix.

use std::collections::BTreeMap;

use rayon::prelude::*;
use scenarios::matrix::{cell, cells, Cell, CellOptions, Filter};
use sim_core::{Mutant, Protocol, ViolationKind};

const SEEDS: u64 = 30;

#[test]
fn every_necessary_mutant_is_caught_and_every_benign_one_is_not() {
    let filter = Filter { presets: vec!["pessimistic".into()], ..Filter::default() };
    let cells: Vec<Cell> = cells(&filter)
        .par_iter()
        .map(|(m, p, v, preset)| {
            cell(*m, *p, v, preset, SEEDS, CellOptions::CAUGHT).expect("matrix cells are runnable")
        })
        .collect();
    let mut by_mutant: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    for c in &cells {
        let caught = c.kind.map_or("-".to_string(), |k| k.to_string());
        let runs = c.random_runs.map_or("-".to_string(), |r| r.to_string());
        eprintln!("{:<26} {:<11} {:<20} {:<20} {:>3}", c.mutant, c.protocol, c.workload, caught, runs);
        let e = by_mutant.entry(c.mutant.as_str()).or_default();
        e.0 += 1;
        e.1 += c.caught as usize;
    }
    for m in Mutant::ALL {
        let (cells, caught) = by_mutant.get(m.name()).copied().unwrap_or_default();
        assert!(cells > 0, "{m} has no cell");
        if m.benign() {
            assert_eq!(caught, 0, "{m} is argued benign but was caught");
        } else {
            assert!(caught > 0, "{m} is necessary per the kernel but was never caught in {cells} cells");
        }
    }
    // The four steps of the INT3 protocol are necessary on every version, on plain ftrace.
    for m in [Mutant::NoSyncAfterInt3, Mutant::NoSyncAfterTail, Mutant::NoSyncAfterFirst, Mutant::NoInt3] {
        for p in Protocol::ALL {
            let c = cells.iter().find(|c| c.mutant == m.name() && c.protocol == p.name() && c.workload == "ftrace");
            let c = c.unwrap_or_else(|| panic!("no ftrace cell for {m} on {p}"));
            assert!(c.caught, "{m} on {p} ftrace not caught in {SEEDS} seeds");
        }
    }
    // The emulation oracle catches an emulation bug the workload alone might miss.
    let jcc = cells.iter().find(|c| c.mutant == "jcc-no-invert" && c.workload == "jcc").expect("jcc cell");
    assert_eq!(jcc.kind, Some(ViolationKind::EmulationMismatch));
}
