//! What the hardware tests share: the host (or why the test cannot run here), the simulator's
//! ftrace scenario, and a bounded wait.

use scenarios::workload::{WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::sched::Strategy;
use sim_core::{Protocol, RunConfig};

/// The host, or `None` after printing `SKIPPED` with the reason — unless `POKESIM_REQUIRE_HW`
/// is set, which makes a host that cannot a failure.
pub fn host() -> Option<hw::Host> {
    match hw::probe() {
        Ok(h) => Some(h),
        Err(r) if std::env::var_os("POKESIM_REQUIRE_HW").is_some() => panic!("POKESIM_REQUIRE_HW is set: {r}"),
        Err(r) => {
            eprintln!("SKIPPED: {r}");
            None
        }
    }
}

/// The ftrace scenario on linux-6.16 with `cpus` vCPUs.
#[allow(dead_code)] // not every test file uses every helper
pub fn ftrace(cpus: usize) -> Scenario {
    Scenario {
        workload: WorkloadSpec::new(WorkloadKind::Ftrace),
        config: RunConfig { cpus, protocol: Protocol::Linux616, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 0,
        kprobes: Vec::new(),
        custom: None,
    }
}

/// Spins until `done()` or 2³² polls (a bound on work, not on time); true if `done()` held.
#[allow(dead_code)]
pub fn spin_until(mut done: impl FnMut() -> bool) -> bool {
    for _ in 0..1u64 << 32 {
        if done() {
            return true;
        }
        std::hint::spin_loop();
    }
    false
}
