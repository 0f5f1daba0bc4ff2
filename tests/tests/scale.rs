//! Scale: the largest machine pokesim accepts — 256 vCPUs — runs the 6.16 batch protocol to
//! a pass within the default tick budget, and one vCPU more is refused with the limit named.

use scenarios::workload::{WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::config::MAX_CPUS;
use sim_core::sched::Strategy;
use sim_core::{Protocol, RunConfig, Verdict};

fn batch(cpus: usize) -> Scenario {
    Scenario {
        workload: WorkloadSpec { rounds: 1, ..WorkloadSpec::new(WorkloadKind::Batch) },
        config: RunConfig { cpus, protocol: Protocol::Linux616, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 0,
        kprobes: Vec::new(),
        custom: None,
    }
}

#[test]
fn a_256_vcpu_batch_on_linux_6_16_passes_within_the_default_budget() {
    assert_eq!(MAX_CPUS, 256);
    let s = batch(256);
    let o = s.run_unrecorded().expect("runs");
    assert_eq!(o.verdict, Verdict::Pass, "{:?}", o.violations);
    // Every vCPU took part: the sync IPIs reached all of them, and they ran guest steps.
    assert_eq!(o.stats.patch_rounds, 1);
    assert!(o.stats.ipis >= 3 * 256, "ipis={}", o.stats.ipis);
    assert!(o.stats.guest_steps >= 256 * 32, "guest_steps={}", o.stats.guest_steps);
    assert!(o.stats.ticks < o.budget, "ticks={} budget={}", o.stats.ticks, o.budget);
}

#[test]
fn one_vcpu_more_than_the_limit_is_refused() {
    let e = batch(MAX_CPUS + 1).plan().expect_err("too many vCPUs");
    assert!(e.to_string().contains("1..=256"), "{e}");
}
