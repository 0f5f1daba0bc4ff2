//! `pokesim bench`: throughput in one process on one machine, so the numbers compare —
//! raw Unicorn round-robin single-stepping over 4 engines (the ceiling), and pokesim's guest
//! steps per second on the ftrace workload with 4 vCPUs, quiet and while patching — plus
//! resident memory per vCPU. Wall time is measured here and only here; it never enters a run.

use std::time::Instant;

use serde::Serialize;
use sim_core::sched::Strategy;
use sim_core::{Machine, RunConfig, SimError};

use crate::scenario::Scenario;
use crate::workload::{WorkloadKind, WorkloadSpec};

/// Benchmark results.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    /// Raw Unicorn steps per second, 4 engines round-robin, count=1.
    pub raw_unicorn_steps_per_s: f64,
    /// pokesim guest steps per second, ftrace, 4 vCPUs, no patching.
    pub quiet_steps_per_s: f64,
    /// pokesim guest steps per second, ftrace, 4 vCPUs, patching continuously.
    pub patching_steps_per_s: f64,
    /// quiet / raw.
    pub quiet_ratio: f64,
    /// patching / raw.
    pub patching_ratio: f64,
    /// INT3 traps per second while patching.
    pub patching_traps_per_s: f64,
    /// Patch rounds per second while patching.
    pub patching_rounds_per_s: f64,
    /// Resident memory per vCPU, KiB (engine, view, translation buffer).
    pub rss_per_vcpu_kib: f64,
}

fn rss_kib() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn steps_per_s(scenario: &Scenario) -> Result<(f64, f64, f64), SimError> {
    let start = Instant::now();
    let outcome = scenario.run()?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(v) = outcome.violation() {
        return Err(SimError::BadInput(format!("benchmark run found a violation: {v}")));
    }
    let s = outcome.stats;
    Ok((s.guest_steps as f64 / secs, s.int3_traps as f64 / secs, s.patch_rounds as f64 / secs))
}

/// Runs the benchmark with about `steps` guest steps per measurement.
pub fn run(steps: u64) -> Result<BenchReport, SimError> {
    let (elapsed, _) = cpu_model::baseline::raw_round_robin(4, steps)?;
    let raw = steps as f64 / elapsed.as_secs_f64();
    let base = |rounds: u32, drain: u64| Scenario {
        workload: WorkloadSpec { rounds, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
        config: RunConfig { cpus: 4, drain_steps: drain, max_ticks: u64::MAX, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 1,
    };
    // Quiet: no patch rounds; every vCPU runs steps/4 drain steps.
    let (quiet, _, _) = steps_per_s(&base(0, steps / 4))?;
    // Patching: enough rounds to keep the patcher busy for about `steps` guest steps
    // (a round takes ~70 guest steps with 4 vCPUs under the random scheduler).
    let rounds = (steps / 70).max(1) as u32;
    let (patching, traps, rounds_per_s) = steps_per_s(&base(rounds, 0))?;
    let cpus = 32;
    let before = rss_kib();
    let image = base(0, 0).workload.build(cpus)?;
    let machine = Machine::new(&RunConfig { cpus, ..RunConfig::default() }, image)?;
    let after = rss_kib();
    drop(machine);
    let rss_per_vcpu_kib = match (before, after) {
        (Some(b), Some(a)) => a.saturating_sub(b) as f64 / cpus as f64,
        _ => f64::NAN,
    };
    Ok(BenchReport {
        raw_unicorn_steps_per_s: raw,
        quiet_steps_per_s: quiet,
        patching_steps_per_s: patching,
        quiet_ratio: quiet / raw,
        patching_ratio: patching / raw,
        patching_traps_per_s: traps,
        patching_rounds_per_s: rounds_per_s,
        rss_per_vcpu_kib,
    })
}
