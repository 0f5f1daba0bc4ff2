//! Kprobes as patching clients (issue 11): a kprobe that registers, arms, disarms and
//! unregisters itself races the workload's patcher under `text_mutex`; `register_kprobe()`'s
//! reserved-text checks keep it off other patchers' sites; the lost-breakpoint oracle catches a
//! `text_poke_bp()` over an armed kprobe once a mutant drops them; a kprobe on a CALL is
//! emulated; B5 (arm/disarm without `text_poke_sync()`, fixed by 5c02ece81848d) is reproduced.

use scenarios::catalogue::scenario;
use scenarios::scenario::Scenario;
use scenarios::workload::{ForeignKprobe, WorkloadKind, WorkloadSpec};
use sim_core::{Kprobe, Mutant, Outcome, Protocol, SimError, Verdict, Violation, ViolationKind};

const SEEDS: u64 = 60;

fn ftrace(kprobe: ForeignKprobe) -> WorkloadSpec {
    WorkloadSpec { kprobe, rounds: 8, ..WorkloadSpec::new(WorkloadKind::Ftrace) }
}

fn at(protocol: Protocol, mutants: &[Mutant], spec: WorkloadSpec, k: u64) -> Scenario {
    scenario(protocol, mutants, spec, "pessimistic", k)
}

fn first_violation(runs: impl Fn(u64) -> Outcome) -> Option<(u64, Violation)> {
    (0..SEEDS).find_map(|k| runs(k).violations.into_iter().next().map(|v| (k, v)))
}

fn run(s: Scenario) -> Outcome {
    s.run().unwrap_or_else(|e| panic!("{e}"))
}

/// The order of a run's patching operations, as `(actor, operation)`.
fn patcher_ops(s: Scenario) -> Vec<(String, String)> {
    let decisions = sim_core::Decisions::seeded(s.seed);
    let o = s.run_plan(s.plan().unwrap(), decisions, sim_core::Observe::TRACE).unwrap_or_else(|e| panic!("{e}"));
    o.trace.into_iter().filter(|e| e.cpu.is_none()).map(|e| (e.actor, e.event)).collect()
}

#[test]
fn a_kprobe_arming_itself_while_ftrace_patches_passes_on_the_fixed_versions() {
    let spec = ftrace(ForeignKprobe::Cycling);
    for protocol in [Protocol::Linux60, Protocol::Linux616] {
        let mut hits = 0;
        for k in 0..SEEDS {
            let o = run(at(protocol, &[], spec, k));
            assert_eq!(o.verdict, Verdict::Pass, "{protocol} seed {k}: {:?}", o.violation());
            hits += o.stats.kprobe_hits;
        }
        assert!(hits > 0, "{protocol}: the cycling kprobe was never hit");
    }
    // The two clients really race: which one takes text_mutex first is a scheduling decision,
    // and never do their critical sections overlap.
    let mut first_takers = std::collections::BTreeSet::new();
    for k in 0..SEEDS {
        let ops = patcher_ops(at(Protocol::Linux616, &[], spec, k));
        let first = ops.iter().find(|(_, op)| op == "lock-text-mutex").expect("someone locks");
        first_takers.insert(first.0.clone());
        let mut holder: Option<&str> = None;
        for (actor, op) in &ops {
            match op.as_str() {
                "lock-text-mutex" => assert_eq!(holder.replace(actor), None, "seed {k}: text_mutex taken twice"),
                "unlock-text-mutex" => assert_eq!(holder.take(), Some(actor.as_str()), "seed {k}"),
                "arm-kprobe" | "disarm-kprobe" | "begin-batch" | "poke-int3" => {
                    assert_eq!(holder, Some(actor.as_str()), "seed {k}: {op} outside text_mutex")
                }
                _ => {}
            }
        }
    }
    assert_eq!(first_takers.len(), 2, "both clients take text_mutex first in some run: {first_takers:?}");
}

#[test]
fn b5_a_kprobe_disarmed_without_a_sync_dies_when_it_comes_back_and_5c02ece81848d_fixes_it() {
    let spec = ftrace(ForeignKprobe::Cycling);
    let (k, v) = first_violation(|k| run(at(Protocol::Linux55, &[], spec, k))).expect("B5 on linux-5.5");
    assert_eq!(v.kind, ViolationKind::UnclaimedInt3, "seed {k}: {v}");
    assert!(v.message.contains("INT3 is still in memory"), "{v}");
    // Dropping 5c02ece81848d's disarm sync from a fixed version brings it back; from 6.3 on
    // (8e791f7eba4c) kprobe_int3_handler() no longer even retries a vanished INT3.
    for protocol in [Protocol::Linux60, Protocol::Linux616] {
        let found = first_violation(|k| run(at(protocol, &[Mutant::KprobeDisarmNoSync], spec, k)));
        let (_, v) = found.unwrap_or_else(|| panic!("{protocol}: kprobe-disarm-no-sync not caught"));
        assert_eq!(v.kind, ViolationKind::UnclaimedInt3, "{protocol}: {v}");
    }
}

#[test]
fn a_text_poke_bp_over_an_armed_kprobe_is_a_lost_breakpoint_once_the_reserved_checks_are_gone() {
    // At ftrace's entry, check_ftrace_location() makes the kprobe ftrace-based: no INT3, no race.
    let spec = ftrace(ForeignKprobe::Entry);
    for protocol in Protocol::ALL {
        for k in 0..10 {
            let o = run(at(protocol, &[], spec, k));
            assert_eq!(o.verdict, Verdict::Pass, "{protocol} seed {k}: {:?}", o.violation());
            assert_eq!(o.stats.kprobe_hits, 0, "{protocol}: an ftrace-based kprobe writes no INT3");
        }
        let (k, v) = first_violation(|k| run(at(protocol, &[Mutant::NoTextReserved], spec, k)))
            .unwrap_or_else(|| panic!("{protocol}: no-text-reserved not caught"));
        assert_eq!(v.kind, ViolationKind::LostBreakpoint, "{protocol} seed {k}: {v}");
        assert_eq!(v.rip, Some(at(protocol, &[], spec, k).workload.site.address(5)), "{v}");
    }
    // A kprobe armed for the whole run on the site: ftrace's first-byte write overwrites it.
    let mut s = at(Protocol::Linux616, &[Mutant::NoTextReserved], ftrace(ForeignKprobe::None), 0);
    let site = s.workload.site.address(5);
    s.kprobes = vec![Kprobe::armed(site)];
    let v = run(s).violations.into_iter().next().expect("the lost INT3 is reported");
    assert_eq!(v.kind, ViolationKind::LostBreakpoint, "{v}");
    assert!(v.message.contains("over its INT3"), "{v}");
    // With the checks, register_kprobe() refuses the site, naming the check.
    let mut s = at(Protocol::Linux616, &[], ftrace(ForeignKprobe::None), 0);
    s.kprobes = vec![Kprobe::armed(site)];
    match s.run() {
        Err(SimError::Invalid { message, .. }) => assert!(message.contains("check_ftrace_location()"), "{message}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_kprobe_on_a_call_is_emulated_and_passes() {
    // ftrace's loop calls the traced function at 0x400040 (`call 0x400800`).
    let call = 0x40_0040;
    for protocol in [Protocol::Linux55, Protocol::Linux60, Protocol::Linux616] {
        for kprobe in [Kprobe::armed(call), Kprobe::client(call, 4)] {
            let mut emulated = 0;
            for k in 0..20 {
                let mut s = at(protocol, &[], ftrace(ForeignKprobe::None), k);
                s.kprobes = vec![kprobe];
                let o = run(s);
                assert_eq!(o.verdict, Verdict::Pass, "{protocol} {kprobe:?} seed {k}: {:?}", o.violation());
                emulated += o.stats.emulation_checks;
            }
            // Every hit of the kprobe is an emulated CALL the emulation oracle checked against
            // really executing `call 0x400800`.
            assert!(emulated > 0, "{protocol} {kprobe:?}: the CALL was never emulated");
        }
    }
}

#[test]
fn state_space_search_covers_a_second_patching_client() {
    // B5 on linux-5.5 under complete search: the kprobe's second cycle finds the INT3 its first
    // disarm left in a vCPU's view (tests/tests/search_clients.rs has the rest of issue 26's cases).
    let s = at(Protocol::Linux55, &[], WorkloadSpec { rounds: 2, ..ftrace(ForeignKprobe::Cycling) }, 0);
    let r = scenarios::exhaust::complete(&s, sim_core::search::Options::default(), &|_| {}).unwrap();
    let c = r.search.found.as_ref().expect("B5 is found");
    assert_eq!(c.violation.kind, ViolationKind::UnclaimedInt3, "{}", c.violation);
    assert!(c.shortest && r.violation.is_some(), "a shortest counterexample that replays");
}
