//! `pokesim list` (the catalogue: workloads and their variants, protocols, mutants, fetch
//! presets, kernel options, program operations, violation kinds) and `pokesim bench` (throughput).

use clap::Args;
use cpu_model::FetchModel;
use scenarios::catalogue;
use scenarios::workload::WorkloadKind;
use serde::Serialize;
use sim_core::program::Step;
use sim_core::{Mutant, Protocol, ViolationKind};

use crate::args::OutputOpts;
use crate::out::{self, Failure, Status};

/// `pokesim list`.
#[derive(Args)]
pub struct ListArgs {
    #[command(flatten)]
    output: OutputOpts,
}

/// `pokesim bench`.
#[derive(Args)]
pub struct BenchArgs {
    /// Guest steps per measurement.
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1000..=1_000_000_000))]
    steps: u64,
    /// Internal: print the resident memory per vCPU of one run with N vCPUs, measured in this
    /// fresh process (the benchmark runs itself with it for each row).
    #[arg(long, value_name = "N", hide = true, value_parser = clap::value_parser!(u64).range(1..=256))]
    memory_of: Option<u64>,
    #[command(flatten)]
    output: OutputOpts,
}

/// Runs `pokesim bench --memory-of CPUS` in a new process and reads its figure.
fn memory_in_child(cpus: usize) -> Result<f64, sim_core::SimError> {
    let fail = |m: String| sim_core::SimError::Internal(format!("measuring memory with {cpus} vCPUs: {m}"));
    let exe = std::env::current_exe().map_err(|e| fail(e.to_string()))?;
    let out = std::process::Command::new(exe)
        .args(["bench", "--memory-of", &cpus.to_string()])
        .output()
        .map_err(|e| fail(e.to_string()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    match (out.status.success(), text.trim().parse::<f64>()) {
        (true, Ok(kib)) => Ok(kib),
        _ => Err(fail(format!("{}: {text}{}", out.status, String::from_utf8_lossy(&out.stderr)))),
    }
}

#[derive(Serialize)]
struct Named {
    name: String,
    description: String,
}

#[derive(Serialize)]
struct Catalogue {
    command: &'static str,
    workloads: Vec<Named>,
    variants: Vec<String>,
    protocols: Vec<Named>,
    mutants: Vec<Named>,
    presets: Vec<Named>,
    kernel_options: Vec<Named>,
    program_operations: Vec<String>,
    violation_kinds: Vec<String>,
}

fn catalogue() -> Catalogue {
    let named = |name: &str, description: String| Named { name: name.to_string(), description };
    Catalogue {
        command: "list",
        workloads: WorkloadKind::ALL.iter().map(|w| named(w.name(), w.description().to_string())).collect(),
        variants: catalogue::variants().iter().map(|v| v.name.to_string()).collect(),
        protocols: Protocol::ALL.iter().map(|p| named(p.name(), p.description().to_string())).collect(),
        mutants: Mutant::ALL
            .iter()
            .map(|m| {
                let on: Vec<_> = Protocol::ALL.iter().filter(|p| m.applies_to(**p)).map(|p| p.name()).collect();
                named(m.name(), format!("[{}] {} ({})", on.join(" "), m.description(), m.edits().acts_where()))
            })
            .collect(),
        presets: FetchModel::PRESETS
            .iter()
            .filter_map(|p| FetchModel::preset(p).map(|m| (p, m)))
            .map(|(p, m)| named(p, format!("fetch={} stores={} monotone unbounded", m.fetch, m.stores)))
            .collect(),
        kernel_options: sim_core::kconfig::OPTIONS
            .iter()
            .zip(sim_core::kconfig::DESCRIPTIONS)
            .map(|(o, d)| named(o, d.to_string()))
            .collect(),
        program_operations: Step::ALL.iter().map(|o| o.name().to_string()).collect(),
        violation_kinds: ViolationKind::ALL.iter().map(|k| k.name().to_string()).collect(),
    }
}

/// `pokesim list`.
pub fn list(a: &ListArgs) -> Result<Status, Failure> {
    let c = catalogue();
    if a.output.json {
        out::json(&c)?;
        return Ok(Status::Expected);
    }
    let section = |title: &str, items: &[Named]| -> Result<(), Failure> {
        out::line(format!("{title}:"))?;
        items.iter().try_for_each(|n| out::line(format!("  {:<26} {}", n.name, n.description)))
    };
    section("workloads", &c.workloads)?;
    out::line(format!("workload variants (--workload): {}", c.variants.join(", ")))?;
    section("protocols", &c.protocols)?;
    section("mutants (applies to; description)", &c.mutants)?;
    section("fetch presets", &c.presets)?;
    section("kernel options (--kernel NAME=y|n, [kernel] NAME = true|false)", &c.kernel_options)?;
    out::line(format!("program operations (docs/programs.md): {}", c.program_operations.join(", ")))?;
    out::line(format!("violation kinds: {}", c.violation_kinds.join(", ")))?;
    Ok(Status::Expected)
}

/// `pokesim bench`.
pub fn bench(a: &BenchArgs) -> Result<Status, Failure> {
    if let Some(cpus) = a.memory_of {
        out::line(format!("{:.1}", scenarios::bench::memory_per_vcpu_kib(cpus as usize)?))?;
        return Ok(Status::Expected);
    }
    let r = scenarios::bench::run(a.steps, &memory_in_child)?;
    if a.output.json {
        out::json(&r)?;
        return Ok(Status::Expected);
    }
    out::line(format!("raw unicorn, 4 engines round-robin, count=1   {:>12.0} steps/s", r.raw_unicorn_steps_per_s))?;
    out::line(format!(
        "pokesim ftrace 4 vCPUs, quiet                 {:>12.0} steps/s  ({:.2} of raw)",
        r.quiet_steps_per_s, r.quiet_ratio
    ))?;
    out::line(format!(
        "pokesim ftrace 4 vCPUs, patching              {:>12.0} steps/s  ({:.2} of raw; {:.0} traps/s, {:.0} rounds/s)",
        r.patching_steps_per_s, r.patching_ratio, r.patching_traps_per_s, r.patching_rounds_per_s
    ))?;
    out::line(format!(
        "pokesim ftrace 4 vCPUs, quiet, batched        {:>12.0} steps/s  ({:.2} of raw)",
        r.batched_quiet_steps_per_s, r.batched_quiet_ratio
    ))?;
    out::line(format!(
        "pokesim ftrace 4 vCPUs, patching, batched     {:>12.0} steps/s  ({:.2} of raw; {:.0} traps/s)",
        r.batched_patching_steps_per_s, r.batched_patching_ratio, r.batched_patching_traps_per_s
    ))?;
    out::line(format!("resident memory per vCPU                      {:>12.0} KiB", r.rss_per_vcpu_kib))?;
    out::line("")?;
    out::line("scaling (ftrace, quiet)  vCPUs    steps/s  steps/s/vCPU  KiB/vCPU  step cost vs 4  raw unicorn vs 4")?;
    for row in &r.scaling {
        out::line(format!(
            "                         {:>5} {:>10.0} {:>13.0} {:>9.0} {:>15.2} {:>17.2}",
            row.cpus,
            row.steps_per_s,
            row.steps_per_s_per_vcpu,
            row.rss_per_vcpu_kib,
            row.step_cost_vs_4,
            row.raw_step_cost_vs_4
        ))?;
    }
    out::line("")?;
    out::line("C vs model (ftrace, 4 vCPUs)  model rounds/s  C rounds/s  C cost  ticks/round model  C")?;
    for row in &r.c_protocols {
        out::line(format!(
            "  {:<27} {:>14.0} {:>11.0} {:>6.2}x {:>17.0} {:>3.0}",
            row.protocol,
            row.model_rounds_per_s,
            row.c_rounds_per_s,
            row.c_cost,
            row.model_ticks_per_round,
            row.c_ticks_per_round
        ))?;
    }
    Ok(Status::Expected)
}
