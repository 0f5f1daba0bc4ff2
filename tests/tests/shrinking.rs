//! Shrinking (DESIGN.md §2.10): for every mutant the kernel calls necessary, a failing run is
//! shrunk to at most a tenth of its decisions (or under 200 beyond the steps the violation
//! needs), and the shrunk list replays —
//! strictly, in the smaller scenario — to a violation of the same kind.

use rayon::prelude::*;
use scenarios::catalogue::{known_bug, scenario, supported, variants, Variant};
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use sim_core::{Mutant, Protocol};

/// The catalogue's variants, and the one batch-no-full-check needs: more sites in one batch
/// than the 6.16 vector holds.
fn candidates() -> Vec<Variant> {
    let big = WorkloadSpec { sites: 257, rounds: 2, ..WorkloadSpec::new(WorkloadKind::Batch) };
    let mut all = variants();
    all.push(Variant { name: "batch-257", spec: big });
    all
}

#[test]
fn every_caught_mutant_shrinks_to_a_small_replayable_run() {
    // A mutant of the C files only is shrunk in scenarios/tests/c_protocol.rs.
    let mutants: Vec<Mutant> = Mutant::ALL.into_iter().filter(|m| !m.benign() && !m.edits().c_only()).collect();
    mutants.par_iter().for_each(|&m| {
        // The first failing run over versions, workloads and seeds.
        let found = Protocol::ALL
            .into_iter()
            .filter(|p| m.applies_to(*p))
            .flat_map(|p| candidates().into_iter().map(move |v| (p, v)))
            .filter(|(p, v)| supported(*p, v.spec).is_ok() && known_bug(*p, v).is_none())
            .find_map(|(p, v)| {
                (0..30).find_map(|k| {
                    let s = scenario(p, &[m], v.spec, "pessimistic", k);
                    let o = s.run().ok()?;
                    o.violation().map(|viol| (s.clone(), o.decisions.clone(), viol.kind))
                })
            });
        let (s, decisions, kind) = found.unwrap_or_else(|| panic!("{m} is never caught"));
        let before = decisions.len();
        let shrunk = scenarios::shrink::shrink(&s, decisions, kind, 5_000, &|_| {}).expect("shrinks");
        let (small, list, report) = (&shrunk.scenario, &shrunk.decisions, &shrunk.report);
        let n = list.prefix.len();
        // The vector overrun needs 257 batch-add steps of the patcher before it can happen.
        let floor = if m == Mutant::BatchNoFullCheck { 257 } else { 0 };
        assert!(n * 10 <= before || n < 200 + floor, "{m}: {before} -> {n} decisions");
        assert_eq!(report.decisions_after, n);
        assert!(small.config.cpus <= s.config.cpus && small.workload.rounds <= s.workload.rounds);
        let replay = small.replay(list.clone()).expect("a shrunk list replays strictly");
        assert_eq!(replay.violation().map(|v| v.kind), Some(kind), "{m}");
        eprintln!(
            "{m:<26} {kind:<18} {before:>6} -> {:>4} decisions, {} -> {} vCPUs",
            report.decisions_after, s.config.cpus, small.config.cpus
        );
    });
}
