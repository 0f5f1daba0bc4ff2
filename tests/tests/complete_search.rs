//! Complete state-space search (issue 9): the reductions are sound — on small scenarios the
//! search with every reduction reaches the same verdict and the same set of canonical states
//! (modulo symmetry, and skipping the states where a vCPU sits before a local step or a quiet
//! handler step, which the reduced search never stores) as a plain search with none of them
//! (or, where that is millions of states, as one with local-step merging alone) — and its
//! verdicts agree with the independent SPIN model (`bench/spin/`) on every 2-CPU row of its main
//! table, violation kinds included.

#[path = "../support/skippable.rs"]
mod skippable;

use std::collections::BTreeSet;

use rayon::prelude::*;
use scenarios::catalogue::scenario;
use scenarios::workload::{ForeignKprobe, WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::search::{search, Options, SearchResult};
use sim_core::{KernelConfig, Machine, Mutant, Protocol, ViolationKind};

/// ftrace, one site, `rounds` rounds, `cpus` vCPUs; `iterations` passes per vCPU (`None`:
/// loop forever), a foreign kprobe on the loop head if asked.
fn small(
    protocol: Protocol,
    mutant: Option<Mutant>,
    cpus: usize,
    kprobe: bool,
    preset: &str,
    rounds: u32,
    iterations: Option<u64>,
) -> Scenario {
    let kprobe = if kprobe { ForeignKprobe::Armed } else { ForeignKprobe::None };
    let spec = WorkloadSpec { rounds, kprobe, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let mut s = scenario(protocol, &mutant.into_iter().collect::<Vec<_>>(), spec, preset, 0);
    s.config.cpus = cpus;
    s.config.max_iterations = iterations;
    s.config.reset_counters = true;
    s
}

fn explore(s: &Scenario, opts: Options, global: bool) -> SearchResult {
    let mut machine =
        Machine::new(s.plan().expect("a valid scenario"), sim_core::Observe::NOTHING).expect("the machine builds");
    search(&mut machine, opts, global, &|_| {}).expect("the search runs")
}

const PLAIN: Options = Options {
    merge_local: false,
    symmetry: false,
    max_states: 50_000_000,
    shortest: false,
    all_kinds: true,
    workers: 1,
    split: None,
};
const MERGE_ONLY: Options = Options { merge_local: true, ..PLAIN };
const REDUCED: Options = Options { symmetry: true, ..MERGE_ONLY };

/// Each case compares the search with every reduction to a search with fewer: to the plain
/// search wherever that stays small, and for three vCPUs with a foreign kprobe (7.4 million
/// plain states, two minutes of CI) to merging alone (local and quiet handler steps, without
/// symmetry), which the other cases check against the plain search — so symmetry is still
/// checked on three vCPUs with a kprobe. The
/// states compared are those where no step waits that the reduced search runs with the step
/// before it (a local guest step or a quiet handler step, `Probe::merges`): the versions'
/// handlers differ in what they read and which reference counts they take (5.6's descriptor,
/// 6.0's static count, 6.16's per-CPU counts), so each has a case.
fn every_reduction_keeps_the_verdicts_and_the_states_of_a_plain_search() {
    use Protocol::{Linux55, Linux56, Linux60, Linux616};
    let cases: Vec<(Protocol, usize, bool, Option<Mutant>, Options)> = vec![
        (Linux55, 2, false, None, PLAIN),
        (Linux55, 2, true, None, PLAIN),
        (Linux55, 3, false, None, PLAIN),
        (Linux55, 3, true, None, MERGE_ONLY),
        (Linux55, 2, false, Some(Mutant::NoSyncAfterInt3), PLAIN),
        (Linux55, 2, true, Some(Mutant::NoSyncAfterFirst), PLAIN),
        (Linux56, 2, true, None, PLAIN),
        (Linux60, 2, true, None, PLAIN),
        (Linux60, 2, true, Some(Mutant::SkipRefsWait), PLAIN),
        (Linux616, 2, true, None, PLAIN),
    ];
    let results: Vec<String> = cases
        .par_iter()
        .map(|&(protocol, cpus, kprobe, mutant, base)| {
            let s = small(protocol, mutant, cpus, kprobe, "pessimistic", 1, Some(1));
            let plain = explore(&s, base, true);
            let reduced = explore(&s, REDUCED, true);
            let against = if base.merge_local { "merging alone" } else { "the plain search" };
            let what = format!("{protocol}, {cpus} vCPUs, kprobe {kprobe}, {mutant:?}, against {against}");
            assert!(plain.complete && reduced.complete, "{what}: incomplete");
            assert_eq!(plain.kinds, reduced.kinds, "{what}: the reductions changed the verdict");
            assert_eq!(plain.global_states, reduced.global_states, "{what}: the reductions changed the states");
            assert!(reduced.states < plain.states, "{what}: nothing was reduced");
            // Searching for every kind, a transition merges local steps only (a quiet handler
            // step that violates must leave a state to expand fully); where nothing violates,
            // the search that stops at the first violation merges quiet handler steps too.
            let merged = plain.kinds.is_empty().then(|| explore(&s, Options { all_kinds: false, ..REDUCED }, true));
            if let Some(merged) = &merged {
                assert!(merged.complete && merged.kinds.is_empty(), "{what}: merging quiet steps found a violation");
                assert_eq!(plain.global_states, merged.global_states, "{what}: merging quiet steps changed the states");
            }
            let merged = merged.map_or(String::new(), |m| format!(", {} merging quiet steps", m.states));
            format!("{what}: {} -> {} states{merged}", plain.states, reduced.states)
        })
        .collect();
    eprintln!("{}", results.join("\n"));
}

/// The main table of the SPIN anchor (`bench/spin/table.md`), 2-CPU rows: protocol (the
/// model's `base` is linux-5.5, `SEED_CLEAR` the seed), mutant, fetch preset, foreign INT3,
/// and every violation kind reachable.
///
/// The model's main table has no `kprobe_int3_handler()` fallback for a vanished INT3. Without
/// the foreign kprobe that is a kernel with `CONFIG_KPROBES=n`, which pokesim checks as such;
/// with it, a kernel whose kprobes do not recover a vanished INT3, which no 5.5 kernel is —
/// pokesim checks those rows with `CONFIG_KPROBES=y`, and where the fallback changes the
/// answer (`NO_SYNC3`, foreign on) the expected answer is the model's `KPROBE_RECOVER` row.
type SpinRow = (Protocol, Option<Mutant>, &'static str, bool, &'static [ViolationKind]);

fn spin_rows() -> Vec<SpinRow> {
    use ViolationKind::*;
    let mut rows = Vec::new();
    for preset in ["pessimistic", "snapshot"] {
        let byte = preset == "pessimistic";
        for foreign in [false, true] {
            let (none, torn): (&[ViolationKind], &[ViolationKind]) = (&[], &[TornFetch]);
            rows.push((Protocol::Linux55, None, preset, foreign, none));
            rows.push((
                Protocol::Linux55,
                Some(Mutant::NoSyncAfterInt3),
                preset,
                foreign,
                if byte { torn } else { none },
            ));
            rows.push((
                Protocol::Linux55,
                Some(Mutant::NoSyncAfterTail),
                preset,
                foreign,
                if byte { torn } else { none },
            ));
            let stale: &[ViolationKind] = if foreign { none } else { &[UnclaimedInt3] };
            rows.push((Protocol::Linux55, Some(Mutant::NoSyncAfterFirst), preset, foreign, stale));
            rows.push((Protocol::Linux55, Some(Mutant::NoInt3), preset, foreign, torn));
            // pokesim's seed frees the batch's array when text_poke_bp() returns, as the SPIN
            // model's DESC_LIFETIME extra does: its SEED_CLEAR+DESC_LIFETIME rows find both
            // `handler_fault` (NULL vec, B3) and `desc_uaf` — handler-fault and use-after-free.
            let seed: &[ViolationKind] = if foreign { &[HandlerFault, UseAfterFree] } else { none };
            rows.push((Protocol::Seed, None, preset, foreign, seed));
        }
    }
    rows
}

fn the_spin_anchor_agrees_on_every_two_cpu_row_of_its_main_table() {
    let rows = spin_rows();
    assert_eq!(rows.len(), 24);
    let disagreements: Vec<String> = rows
        .par_iter()
        .filter_map(|&(protocol, mutant, preset, foreign, kinds)| {
            // One site, 2 rounds, CPUs that loop forever: the model's configuration.
            let mut s = small(protocol, mutant, 2, foreign, preset, 2, None);
            s.config.kernel = KernelConfig { kprobes: foreign };
            disagreement(&s, kinds, &format!("{protocol} {mutant:?} {preset} foreign={foreign}"))
        })
        .collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

/// How the complete search of `s` disagrees with the SPIN model's kinds `want`, if it does.
fn disagreement(s: &Scenario, want: &[ViolationKind], what: &str) -> Option<String> {
    let r = explore(s, Options { all_kinds: true, ..Options::default() }, false);
    let want: BTreeSet<ViolationKind> = want.iter().copied().collect();
    (!r.complete || r.kinds != want)
        .then(|| format!("{what}: SPIN {want:?}, pokesim {:?} (complete {})", r.kinds, r.complete))
}

/// The model's `KPROBE_RECOVER` extras (`bench/spin/table.md`): with `kprobe_int3_handler()`'s
/// vanished-INT3 recovery, linux-5.5 without the sync after the first byte has no violation —
/// byte and snapshot fetch, 2 and 3 vCPUs, foreign kprobe on and off — where the same kernel
/// without kprobes dies on a stale INT3.
fn without_the_sync_after_the_first_byte_only_a_kernel_without_kprobes_dies() {
    let mut rows = Vec::new();
    for cpus in [2, 3] {
        for preset in ["pessimistic", "snapshot"] {
            for foreign in [false, true] {
                for mutant in [None, Some(Mutant::NoSyncAfterFirst)] {
                    rows.push((cpus, preset, foreign, mutant, KernelConfig { kprobes: true }, None));
                }
            }
            let stale = Some(ViolationKind::UnclaimedInt3);
            rows.push((cpus, preset, false, Some(Mutant::NoSyncAfterFirst), KernelConfig { kprobes: false }, stale));
        }
    }
    let disagreements: Vec<String> = rows
        .par_iter()
        .filter_map(|&(cpus, preset, foreign, mutant, kernel, want)| {
            let mut s = small(Protocol::Linux55, mutant, cpus, foreign, preset, 2, None);
            s.config.kernel = kernel;
            let want: Vec<ViolationKind> = want.into_iter().collect();
            disagreement(&s, &want, &format!("{cpus} vCPUs {preset} foreign={foreign} {mutant:?} {kernel}"))
        })
        .collect();
    assert!(disagreements.is_empty(), "{}", disagreements.join("\n"));
}

fn a_violation_comes_with_a_shortest_counterexample_that_replays() {
    let s = small(Protocol::Linux55, Some(Mutant::NoSyncAfterInt3), 2, false, "pessimistic", 2, None);
    let r = scenarios::exhaust::complete(&s, Options::default(), &|_| {}).expect("the search runs");
    let c = r.search.found.as_ref().expect("no-sync-after-int3 tears a fetch");
    assert!(c.shortest, "the breadth-first search confirms the length");
    let o = r.violation.as_ref().expect("the counterexample replays as an ordinary run");
    assert_eq!(o.violation().map(|v| v.kind), Some(ViolationKind::TornFetch));
    // The torn fetch of the SPIN model's shortest trail: the old first byte with a new tail.
    let v = o.violation().unwrap();
    assert_eq!(v.bytes[0].epoch, 0, "byte 0 is from before the INT3 store: {v}");
    assert!(v.bytes[1..].iter().any(|b| b.epoch > 0), "a tail byte is new: {v}");
}

fn main() {
    skippable::run(
        skippable::full_suite(),
        &[(
            "a_violation_comes_with_a_shortest_counterexample_that_replays",
            a_violation_comes_with_a_shortest_counterexample_that_replays,
        )],
        &[
            (
                "every_reduction_keeps_the_verdicts_and_the_states_of_a_plain_search",
                every_reduction_keeps_the_verdicts_and_the_states_of_a_plain_search,
            ),
            (
                "the_spin_anchor_agrees_on_every_two_cpu_row_of_its_main_table",
                the_spin_anchor_agrees_on_every_two_cpu_row_of_its_main_table,
            ),
            (
                "without_the_sync_after_the_first_byte_only_a_kernel_without_kprobes_dies",
                without_the_sync_after_the_first_byte_only_a_kernel_without_kprobes_dies,
            ),
        ],
    );
}
