//! The historic bugs of reference/kernel-protocol.md §3, each failing on the buggy version and
//! passing on the fixed one — plus the `try_get_desc()` race that pokesim found in the
//! linux-5.6 model and that the kernel fixed in 2022 (efd608fa7403).

use scenarios::catalogue::scenario;
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use sim_core::{Outcome, Protocol, Verdict, Violation, ViolationKind};

const SEEDS: u64 = 100;

fn run(protocol: Protocol, spec: WorkloadSpec, k: u64, multi: bool) -> Outcome {
    let mut s = scenario(protocol, &[], spec, "pessimistic", k);
    s.config.unsafe_multi_insn = multi;
    s.run().unwrap_or_else(|e| panic!("{protocol} {spec:?}: {e}"))
}

/// The first violation over seeds 0..100 (vCPUs and placements cycle).
fn first_violation(protocol: Protocol, spec: WorkloadSpec, multi: bool) -> Option<(u64, Violation)> {
    (0..SEEDS).find_map(|k| run(protocol, spec, k, multi).violations.into_iter().next().map(|v| (k, v)))
}

fn passes(protocol: Protocol, spec: WorkloadSpec) {
    for k in 0..SEEDS {
        let o = run(protocol, spec, k, false);
        assert_eq!(o.verdict, Verdict::Pass, "{protocol} seed {k}: {:?}", o.violation());
    }
}

#[test]
fn b1_the_detour_handler_loses_the_call() {
    // static_call CALL f1 -> CALL f2 (no RET trampoline: 5.4 has no static_call RET either).
    let spec = WorkloadSpec { tail: false, ..WorkloadSpec::new(WorkloadKind::StaticCall) };
    let (_, v) = first_violation(Protocol::Linux54, spec, false).expect("B1 must be reported on linux-5.4");
    assert_eq!(v.kind, ViolationKind::EmulationMismatch, "{v}");
    // The detour is a plain jump: no return address is pushed, so neither f1 nor f2 runs.
    assert!(v.message.contains("pushed=None"), "{v}");
    passes(Protocol::Seed, spec);
}

#[test]
fn b2_replacing_several_instructions_tears_a_preempted_cpu() {
    let spec = WorkloadSpec::new(WorkloadKind::MultiInsn);
    for protocol in [Protocol::Seed, Protocol::Linux616] {
        let (k, v) = first_violation(protocol, spec, true).expect("B2 must be reported");
        assert_eq!(v.kind, ViolationKind::TornFetch, "{protocol} seed {k}: {v}");
        // The torn fetch starts *inside* the patched range: a vCPU was preempted on one of the
        // later NOPs and resumed into the new displacement bytes.
        let site = scenario(protocol, &[], spec, "pessimistic", k).workload.site.address(5);
        let rip = v.rip.expect("a torn fetch has a RIP");
        assert!(rip > site && rip < site + 5, "{protocol}: torn at {rip:#x}, site {site:#x}");
    }
    // Without the override the request is refused, as the kernel refuses it.
    assert!(scenario(Protocol::Linux616, &[], spec, "pessimistic", 0).run().is_err());
}

#[test]
fn b3_the_seed_handler_reads_a_cleared_vector() {
    let spec =
        WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Armed, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let (_, v) = first_violation(Protocol::Seed, spec, false).expect("B3 must be reported on the seed");
    assert_eq!(v.kind, ViolationKind::HandlerFault, "{v}");
    assert!(v.message.contains("NULL pointer dereference of bp_patching.vec"), "{v}");
    passes(Protocol::Linux55, spec);
}

#[test]
fn try_get_desc_race_of_linux_5_6_is_fixed_in_6_0() {
    let spec =
        WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Armed, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let (_, v) = first_violation(Protocol::Linux56, spec, false).expect("the 5.6 race must be reported");
    // A read of freed memory is its own kind, told apart from B3's NULL (issue 21).
    assert_eq!(v.kind, ViolationKind::UseAfterFree, "{v}");
    assert!(v.message.contains("try_get_desc") && v.message.contains("use after free"), "{v}");
    passes(Protocol::Linux60, spec);
    passes(Protocol::Linux60, WorkloadSpec::new(WorkloadKind::Optprobe));
}

#[test]
fn foreign_int3s_are_handed_to_their_kprobe() {
    // On a fixed version the kprobe at the loop head is hit on every pass and never lost.
    let spec =
        WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Armed, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let o = run(Protocol::Linux616, spec, 0, false);
    assert_eq!(o.verdict, Verdict::Pass);
    assert!(o.stats.kprobe_hits > 10, "{:?}", o.stats);
}

/// B6 ("x86/int3: Avoid atomic instrumentation", "Inline bsearch()"): a handler that calls into
/// patchable text hits the INT3 it is handling — on every version, as a nested INT3 inside the
/// handler (a handler fault). The unmutated handlers never call out (the pass tests above).
#[test]
fn b6_a_handler_that_calls_patchable_text_hits_a_nested_int3() {
    let spec = WorkloadSpec::new(WorkloadKind::Ftrace);
    for p in Protocol::ALL {
        let found = (0..SEEDS).find_map(|k| {
            let s = scenario(p, &[sim_core::Mutant::InstrumentedHandler], spec, "pessimistic", k);
            s.run().unwrap().violations.into_iter().next()
        });
        let v = found.unwrap_or_else(|| panic!("{p}: the instrumented handler is never caught"));
        assert_eq!(v.kind, ViolationKind::HandlerFault, "{p}: {v}");
        assert!(v.message.contains("nested INT3"), "{p}: {v}");
    }
}
