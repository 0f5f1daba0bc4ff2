//! `pokesim bench`: throughput in one process on one machine, so the numbers compare —
//! raw Unicorn round-robin single-stepping over 4 engines (the ceiling), and pokesim's guest
//! steps per second on the ftrace workload with 4 vCPUs, quiet and while patching — plus
//! resident memory per vCPU, and a scaling table over 1, 4, 16, 64 and 256 vCPUs (steps per
//! second, per vCPU, resident memory per vCPU, and the cost of a step relative to 4 vCPUs,
//! next to raw Unicorn's own over as many engines). Wall time is measured here and only here;
//! it never enters a run.

use std::time::Instant;

use serde::Serialize;
use sim_core::sched::Strategy;
use sim_core::{RunConfig, SimError};

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
    /// The quiet campaign with local runs batched ([`sim_core::Stepping::Batched`]): guest
    /// steps (instructions) per second.
    pub batched_quiet_steps_per_s: f64,
    /// The patching campaign with local runs batched, guest steps per second.
    pub batched_patching_steps_per_s: f64,
    /// batched quiet / raw.
    pub batched_quiet_ratio: f64,
    /// batched patching / raw.
    pub batched_patching_ratio: f64,
    /// INT3 traps per second while patching, local runs batched.
    pub batched_patching_traps_per_s: f64,
    /// Patch rounds per second while patching.
    pub patching_rounds_per_s: f64,
    /// Peak resident memory per vCPU during a 32-vCPU patching run, KiB (engine, translation
    /// buffer, view, handler and oracle state).
    pub rss_per_vcpu_kib: f64,
    /// The scaling table, one row per vCPU count.
    pub scaling: Vec<ScaleRow>,
    /// Each built-in C version next to its Rust model on the same scenario (issue 24).
    pub c_protocols: Vec<CRow>,
}

/// A protocol compiled from C next to its Rust model: patch rounds per second of the same
/// ftrace scenario (4 vCPUs, same seed), and the C file's cost as a ratio.
#[derive(Clone, Debug, Serialize)]
pub struct CRow {
    /// The version.
    pub protocol: String,
    /// Rounds per second, the Rust model.
    pub model_rounds_per_s: f64,
    /// Rounds per second, the built-in C file.
    pub c_rounds_per_s: f64,
    /// model / C: how many times slower the C file is.
    pub c_cost: f64,
    /// Scheduling points of the C run per round (its patcher's and its handlers' steps).
    pub c_ticks_per_round: f64,
    /// The same for the model.
    pub model_ticks_per_round: f64,
}

/// One row of the scaling table: a quiet ftrace run with `cpus` vCPUs.
#[derive(Clone, Debug, Serialize)]
pub struct ScaleRow {
    /// vCPUs.
    pub cpus: usize,
    /// Guest steps per second, all vCPUs together.
    pub steps_per_s: f64,
    /// The same, per vCPU.
    pub steps_per_s_per_vcpu: f64,
    /// Peak resident memory added by the run, per vCPU, KiB.
    pub rss_per_vcpu_kib: f64,
    /// Time per guest step relative to the 4-vCPU row.
    pub step_cost_vs_4: f64,
    /// Raw Unicorn's time per step over as many engines, relative to 4 engines (how much of
    /// the growth is the engines' own: caches no longer hold every engine's state).
    pub raw_step_cost_vs_4: f64,
}

/// The vCPU counts of the scaling table.
pub(crate) const SCALE_CPUS: [usize; 5] = [1, 4, 16, 64, 256];

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Peak resident memory added per vCPU by a complete run with `cpus` vCPUs: the peak counter
/// is reset first (`/proc/self/clear_refs`), so the figure covers engines, views, translation
/// buffers in use, handler state and the oracles' scratch engines while the run executes.
fn rss_per_vcpu_kib(cpus: usize, scenario: &Scenario) -> Result<f64, SimError> {
    let before = status_kib("VmRSS:");
    let reset = std::fs::write("/proc/self/clear_refs", "5").is_ok();
    scenario.run()?;
    let peak = status_kib("VmHWM:");
    Ok(match (before, peak, reset) {
        (Some(b), Some(p), true) => p.saturating_sub(b) as f64 / cpus as f64,
        _ => f64::NAN,
    })
}

/// A quiet ftrace run: one patch round, then every vCPU runs its share of `steps` drain steps.
fn quiet(cpus: usize, steps: u64) -> Scenario {
    Scenario {
        workload: WorkloadSpec { rounds: 1, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
        config: RunConfig { cpus, drain_steps: steps / cpus as u64, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 1,
        kprobes: Vec::new(),
        custom: None,
    }
}

/// Peak resident memory per vCPU of a patching ftrace run with `cpus` vCPUs (2 rounds), KiB.
/// Measure it in a fresh process ([`run`] takes the measurement as a function for that):
/// in a process that already ran something, the allocator hands the run memory it kept.
pub fn memory_per_vcpu_kib(cpus: usize) -> Result<f64, SimError> {
    let mut s = quiet(cpus, cpus as u64);
    s.workload.rounds = 2;
    rss_per_vcpu_kib(cpus, &s)
}

/// The scaling table, `steps` guest steps per row.
fn scaling(steps: u64, memory: &dyn Fn(usize) -> Result<f64, SimError>) -> Result<Vec<ScaleRow>, SimError> {
    let mut rows = Vec::new();
    for cpus in SCALE_CPUS {
        let rss = memory(cpus)?;
        let (rate, _, _) = steps_per_s(&quiet(cpus, steps))?;
        let (raw, _) = cpu_model::baseline::raw_round_robin(cpus, steps)?;
        rows.push((cpus, rate, rss, raw.as_secs_f64() / steps as f64));
    }
    let at4 = rows.iter().find(|r| r.0 == 4).map_or((f64::NAN, f64::NAN), |r| (r.1, r.3));
    Ok(rows
        .into_iter()
        .map(|(cpus, rate, rss, raw)| ScaleRow {
            cpus,
            steps_per_s: rate,
            steps_per_s_per_vcpu: rate / cpus as f64,
            rss_per_vcpu_kib: rss,
            step_cost_vs_4: at4.0 / rate,
            raw_step_cost_vs_4: raw / at4.1,
        })
        .collect())
}

fn steps_per_s(scenario: &Scenario) -> Result<(f64, f64, f64), SimError> {
    let start = Instant::now();
    let outcome = scenario.run()?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(v) = outcome.violation() {
        return Err(SimError::Internal(format!("benchmark run found a violation: {v}")));
    }
    let s = outcome.stats;
    Ok((s.guest_steps as f64 / secs, s.int3_traps as f64 / secs, s.patch_rounds as f64 / secs))
}

/// Runs the benchmark with about `steps` guest steps per measurement; `memory(cpus)` measures
/// [`memory_per_vcpu_kib`] (in a fresh process, to be exact).
pub fn run(steps: u64, memory: &dyn Fn(usize) -> Result<f64, SimError>) -> Result<BenchReport, SimError> {
    let base = |rounds: u32, drain: u64| Scenario {
        workload: WorkloadSpec { rounds, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
        config: RunConfig { cpus: 4, drain_steps: drain, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 1,
        kprobes: Vec::new(),
        custom: None,
    };
    let rss_per_vcpu_kib = memory(32)?;
    let (elapsed, _) = cpu_model::baseline::raw_round_robin(4, steps)?;
    let raw = steps as f64 / elapsed.as_secs_f64();
    // Quiet: one patch round (a few dozen steps), then every vCPU runs steps/4 drain steps.
    let (quiet, _, _) = steps_per_s(&quiet(4, steps))?;
    // Patching: enough rounds to keep the patcher busy for about `steps` guest steps
    // (a round takes ~70 guest steps with 4 vCPUs under the random scheduler).
    let rounds = (steps / 70).max(1) as u32;
    let patching_run = base(rounds.min(crate::workload::MAX_ROUNDS), 1);
    let (patching, traps, rounds_per_s) = steps_per_s(&patching_run)?;
    let batched = |mut s: Scenario| {
        s.config.stepping = sim_core::Stepping::Batched;
        steps_per_s(&s)
    };
    let (batched_quiet, _, _) = batched(self::quiet(4, steps))?;
    let (batched_patching, batched_traps, _) = batched(patching_run)?;
    Ok(BenchReport {
        raw_unicorn_steps_per_s: raw,
        quiet_steps_per_s: quiet,
        patching_steps_per_s: patching,
        quiet_ratio: quiet / raw,
        patching_ratio: patching / raw,
        patching_traps_per_s: traps,
        batched_quiet_steps_per_s: batched_quiet,
        batched_patching_steps_per_s: batched_patching,
        batched_quiet_ratio: batched_quiet / raw,
        batched_patching_ratio: batched_patching / raw,
        batched_patching_traps_per_s: batched_traps,
        patching_rounds_per_s: rounds_per_s,
        rss_per_vcpu_kib,
        scaling: scaling(steps / 2, memory)?,
        c_protocols: c_protocols(steps)?,
    })
}

/// [`CRow`] for every version with a built-in C file: ftrace, 4 vCPUs, about `steps / 4`
/// guest steps each.
fn c_protocols(steps: u64) -> Result<Vec<CRow>, SimError> {
    let mut rows = Vec::new();
    for p in sim_core::Protocol::ALL.into_iter().filter(|&p| crate::csource::builtin(p).is_some()) {
        // At most C_ROUNDS: the C file's arguments (64 bytes a call) must fit its 64 KiB.
        let rounds = ((steps / 4) / 70).clamp(1, C_ROUNDS) as u32;
        let mut s = Scenario {
            workload: WorkloadSpec { rounds, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
            config: RunConfig { cpus: 4, drain_steps: 1, protocol: p, ..RunConfig::default() },
            strategy: Strategy::Random,
            seed: 1,
            kprobes: Vec::new(),
            custom: None,
        };
        let model = rounds_per_s(&s)?;
        s.config.compiled = Some(
            crate::csource::load(&crate::csource::ProtocolSource::Builtin, &s.config)
                .map_err(|m| SimError::Internal(format!("bench: building the C file of {p}: {m}")))?,
        );
        s.config.memory = s.config.default_memory();
        let c = rounds_per_s(&s)?;
        rows.push(CRow {
            protocol: p.name().into(),
            model_rounds_per_s: model.0,
            c_rounds_per_s: c.0,
            c_cost: model.0 / c.0,
            c_ticks_per_round: c.1,
            model_ticks_per_round: model.1,
        });
    }
    Ok(rows)
}

/// The most patch rounds a C row runs: every call's arguments take 64 bytes of the compiled
/// kernel's 64 KiB argument area (`sim_core::compiled::client::calls`).
const C_ROUNDS: u64 = 500;

/// Patch rounds per second of `s`, and ticks per round.
fn rounds_per_s(s: &Scenario) -> Result<(f64, f64), SimError> {
    let start = Instant::now();
    let outcome = s.run()?;
    let secs = start.elapsed().as_secs_f64();
    if let Some(v) = outcome.violation() {
        return Err(SimError::Internal(format!("benchmark run found a violation: {v}")));
    }
    let rounds = outcome.stats.patch_rounds.max(1) as f64;
    Ok((rounds / secs, outcome.stats.ticks as f64 / rounds))
}
