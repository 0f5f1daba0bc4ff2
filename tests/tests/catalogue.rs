//! The protocol catalogue (issue: "The protocol catalogue"): every version passes every
//! workload it supports under the pessimistic preset with 2, 4 and 8 vCPUs for 60 seeds each
//! (`POKESIM_RUNS` sets another number)
//! — except where the version has a known historic bug, which `historic_bugs.rs` reproduces —
//! and unsupported combinations are refused as bad input, as the kernel's `BUG()` would be.

#[path = "../support/skippable.rs"]
mod skippable;

use scenarios::catalogue::{known_bug, scenario, supported, variants, Variant};
use scenarios::workload::{ForeignKprobe, WorkloadKind, WorkloadSpec};
use sim_core::{Protocol, SimError, Verdict, ViolationKind};

/// Seeds per vCPU count by default.
const SEEDS: u64 = 60;

fn passes_everything_it_supports(protocol: Protocol) {
    let mut ran = Vec::new();
    for v in variants() {
        if supported(protocol, v.spec).is_err() || known_bug(protocol, &v).is_some() {
            continue;
        }
        let mut traps = 0;
        // A kprobe that patches too (a second client) is covered at length by
        // kprobe_clients.rs; here half the seeds keeps the suite's time in bounds.
        let all = tests::runs(SEEDS);
        let seeds =
            if matches!(v.spec.kprobe, ForeignKprobe::Cycling | ForeignKprobe::Entry) { all.div_ceil(2) } else { all };
        for cpus in [2usize, 4, 8] {
            for seed in 0..seeds {
                // Seeds cycle the site placement; the vCPU count is fixed per pass.
                let mut s = scenario(protocol, &[], v.spec, "pessimistic", seed * 3);
                s.config.cpus = cpus;
                s.seed = seed;
                let o = s.run().unwrap_or_else(|e| panic!("{protocol} {}: {e}", v.name));
                assert_eq!(
                    o.verdict,
                    Verdict::Pass,
                    "{protocol} {} cpus={cpus} seed={seed}: {:?}",
                    v.name,
                    o.violation()
                );
                traps += o.stats.int3_traps + o.stats.kprobe_hits;
            }
        }
        assert!(traps > 0, "{protocol} {}: no INT3 was ever hit", v.name);
        ran.push(v.name);
    }
    assert!(ran.len() >= 5, "{protocol} supports too few workloads: {ran:?}");
}

fn linux_5_5_passes_every_workload_it_supports() {
    passes_everything_it_supports(Protocol::Linux55);
}

fn linux_5_6_passes_every_workload_without_foreign_int3s() {
    passes_everything_it_supports(Protocol::Linux56);
}

fn linux_6_0_passes_every_workload_it_supports() {
    passes_everything_it_supports(Protocol::Linux60);
}

fn linux_6_16_passes_every_workload() {
    passes_everything_it_supports(Protocol::Linux616);
    for v in variants() {
        assert!(supported(Protocol::Linux616, v.spec).is_ok(), "6.16 should support {}", v.name);
    }
}

fn refusal(protocol: Protocol, spec: WorkloadSpec) -> String {
    match supported(protocol, spec) {
        Err(SimError::Invalid { message, .. }) => message,
        other => panic!("{protocol} should refuse {spec:?}, got {other:?}"),
    }
}

fn unsupported_combinations_are_refused_as_the_kernel_would_bug() {
    let jcc = WorkloadSpec::new(WorkloadKind::Jcc);
    for p in [Protocol::Linux54, Protocol::Seed, Protocol::Linux55, Protocol::Linux56, Protocol::Linux60] {
        let msg = refusal(p, jcc);
        assert!(msg.contains("Jcc") && msg.contains("BUG()"), "{p}: {msg}");
    }
    let tail = WorkloadSpec::new(WorkloadKind::StaticCall);
    for p in [Protocol::Seed, Protocol::Linux55, Protocol::Linux56] {
        let msg = refusal(p, tail);
        assert!(msg.contains("Ret") && msg.contains("c43a43e439e0"), "{p}: {msg}");
    }
    let multi = WorkloadSpec::new(WorkloadKind::MultiInsn);
    for p in Protocol::ALL {
        let msg = refusal(p, multi);
        assert!(msg.contains("not exactly one instruction") && msg.contains("override"), "{p}: {msg}");
    }
}

fn the_catalogue_lists_a_reason_for_every_known_failure() {
    let optprobe = Variant { name: "optprobe", spec: WorkloadSpec::new(WorkloadKind::Optprobe) };
    assert_eq!(known_bug(Protocol::Seed, &optprobe).unwrap().id, "B3");
    let uaf = known_bug(Protocol::Linux56, &optprobe).unwrap();
    assert!(uaf.why.contains("efd608fa7403"), "{uaf:?}");
    assert_eq!(uaf.kinds, [ViolationKind::UseAfterFree], "the 5.6 race reads freed memory: its own kind");
    assert!(known_bug(Protocol::Linux60, &optprobe).is_none());
    assert!(known_bug(Protocol::Linux616, &optprobe).is_none());
}

fn main() {
    skippable::run(
        skippable::full_suite(),
        &[
            (
                "unsupported_combinations_are_refused_as_the_kernel_would_bug",
                unsupported_combinations_are_refused_as_the_kernel_would_bug,
            ),
            (
                "the_catalogue_lists_a_reason_for_every_known_failure",
                the_catalogue_lists_a_reason_for_every_known_failure,
            ),
        ],
        &[
            ("linux_5_5_passes_every_workload_it_supports", linux_5_5_passes_every_workload_it_supports),
            (
                "linux_5_6_passes_every_workload_without_foreign_int3s",
                linux_5_6_passes_every_workload_without_foreign_int3s,
            ),
            ("linux_6_0_passes_every_workload_it_supports", linux_6_0_passes_every_workload_it_supports),
            ("linux_6_16_passes_every_workload", linux_6_16_passes_every_workload),
        ],
    );
}
