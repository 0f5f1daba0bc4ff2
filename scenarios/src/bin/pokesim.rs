//! `pokesim`: the command line (DESIGN.md §2.11). Exit status 0 = no violation (or, for
//! `check`, every built-in scenario as expected), 1 = violation (or an unexpected result),
//! 2 = bad input or usage, 3 = internal simulator failure.

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cpu_model::{FetchModel, FetchUnit, Staleness, StoreGranularity};
use scenarios::check;
use scenarios::workload::{SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use serde::Serialize;
use sim_core::sched::Strategy;
use sim_core::{Mutant, Outcome, Protocol, RunConfig, SimError, Stats, Verdict, Violation, ViolationKind};

#[derive(Parser)]
#[command(name = "pokesim", version, about = "Deterministic multi-CPU x86-64 simulator for live code patching")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run one scenario from a seed.
    Run(Box<RunArgs>),
    /// Run the built-in scenarios and print a verdict table (the main job).
    Check(CheckArgs),
    /// Measure throughput: raw Unicorn vs pokesim, quiet and while patching.
    Bench(BenchArgs),
    /// List workloads, protocols, mutants, fetch presets and violation kinds.
    List,
}

#[derive(Args)]
struct RunArgs {
    /// Workload.
    #[arg(long, default_value = "ftrace")]
    workload: String,
    /// Protocol version.
    #[arg(long, default_value = "seed")]
    protocol: String,
    /// Mutant to apply (repeatable).
    #[arg(long = "mutant", value_name = "NAME")]
    mutants: Vec<String>,
    /// Number of vCPUs (1..=64).
    #[arg(long, default_value_t = 2)]
    cpus: usize,
    /// Seed of the decision stream.
    #[arg(long, default_value_t = 0)]
    seed: u64,
    /// Fetch preset: pessimistic, block16, line64, snapshot.
    #[arg(long)]
    preset: Option<String>,
    /// Fetch refresh unit: byte, block16, line64, snapshot (overrides the preset's).
    #[arg(long)]
    fetch: Option<String>,
    /// Store granularity of text_poke: byte, aligned8, whole.
    #[arg(long)]
    stores: Option<String>,
    /// Let a unit go back to an older snapshot (not before the last serialization).
    #[arg(long)]
    non_monotone: bool,
    /// Bound staleness to K own guest steps.
    #[arg(long, value_name = "K")]
    staleness: Option<u32>,
    /// Site placement: aligned, cross16, cross64, cross-page, or a line offset 0..=63.
    #[arg(long, default_value = "aligned")]
    site: String,
    /// Patch rounds.
    #[arg(long)]
    rounds: Option<u32>,
    /// batch: number of sites (1..=300).
    #[arg(long)]
    sites: Option<u32>,
    /// batch: queueing order: ascending, descending, interleaved.
    #[arg(long)]
    order: Option<String>,
    /// static_call: patch only the call site, not the tail-call trampoline (no RET needed).
    #[arg(long)]
    no_tail: bool,
    /// Register a foreign kprobe (an INT3 owner) on the loop head, outside the patched sites.
    #[arg(long)]
    kprobe: bool,
    /// Allow replacing more than one instruction (bug B2), which the kernel refuses.
    #[arg(long)]
    unsafe_multi_insn: bool,
    /// Tick budget.
    #[arg(long, value_name = "MAX")]
    steps: Option<u64>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CheckArgs {
    /// Seeds per built-in scenario (the default takes about a minute on 2 cores).
    #[arg(long, default_value_t = check::DEFAULT_RUNS)]
    runs: u64,
    /// Worker threads (default: all cores).
    #[arg(long)]
    jobs: Option<usize>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct BenchArgs {
    /// Guest steps per measurement.
    #[arg(long, default_value_t = 2_000_000)]
    steps: u64,
    /// Print JSON.
    #[arg(long)]
    json: bool,
}

fn bad(msg: String) -> SimError {
    SimError::BadInput(msg)
}

fn fetch_model(a: &RunArgs) -> Result<FetchModel, SimError> {
    let mut m = match &a.preset {
        Some(p) => FetchModel::preset(p)
            .ok_or_else(|| bad(format!("preset: unknown preset '{p}' (valid: {})", FetchModel::PRESETS.join(", "))))?,
        None => FetchModel::PESSIMISTIC,
    };
    if let Some(f) = &a.fetch {
        m.fetch = f.parse::<FetchUnit>().map_err(|e| bad(format!("fetch: {e}")))?;
    }
    if let Some(s) = &a.stores {
        m.stores = s.parse::<StoreGranularity>().map_err(|e| bad(format!("stores: {e}")))?;
    }
    if a.non_monotone {
        m.monotone = false;
    }
    if let Some(k) = a.staleness {
        m.staleness = Staleness::Bounded(k);
    }
    Ok(m)
}

fn scenario(a: &RunArgs) -> Result<Scenario, SimError> {
    let kind: WorkloadKind = a.workload.parse()?;
    let mut workload = WorkloadSpec::new(kind);
    workload.site = a.site.parse::<SitePlacement>()?;
    if let Some(r) = a.rounds {
        workload.rounds = r;
    }
    if let Some(n) = a.sites {
        workload.sites = n;
    }
    if let Some(o) = &a.order {
        workload.order = o.parse::<SiteOrder>()?;
    }
    workload.tail = !a.no_tail;
    workload.kprobe = a.kprobe;
    let defaults = RunConfig::default();
    let config = RunConfig {
        cpus: a.cpus,
        protocol: a.protocol.parse::<Protocol>()?,
        mutants: a.mutants.iter().map(|m| m.parse::<Mutant>()).collect::<Result<_, _>>()?,
        fetch: fetch_model(a)?,
        max_ticks: a.steps.unwrap_or(defaults.max_ticks),
        unsafe_multi_insn: a.unsafe_multi_insn,
        ..defaults
    };
    config.validate()?;
    Ok(Scenario { workload, config, strategy: Strategy::Random, seed: a.seed })
}

/// The JSON object of `pokesim run --json`.
#[derive(Serialize)]
struct RunReport<'a> {
    verdict: Verdict,
    violations: &'a [Violation],
    stats: Stats,
    trace_hash: &'a str,
    scenario: ScenarioReport,
}

#[derive(Serialize)]
struct ScenarioReport {
    workload: String,
    site: String,
    rounds: u32,
    protocol: String,
    mutants: Vec<String>,
    cpus: usize,
    fetch: String,
    strategy: String,
    seed: u64,
}

fn scenario_report(s: &Scenario) -> ScenarioReport {
    ScenarioReport {
        workload: s.workload.kind.to_string(),
        site: s.workload.site.to_string(),
        rounds: s.workload.rounds,
        protocol: s.config.protocol.to_string(),
        mutants: s.config.mutants.iter().map(|m| m.to_string()).collect(),
        cpus: s.config.cpus,
        fetch: s.config.fetch.to_string(),
        strategy: s.strategy.to_string(),
        seed: s.seed,
    }
}

fn print_outcome(s: &Scenario, o: &Outcome) {
    println!(
        "scenario   {} cpus={} fetch={} site={} seed={}",
        s.label(),
        s.config.cpus,
        s.config.fetch,
        s.workload.site,
        s.seed
    );
    println!("verdict    {}", if o.verdict == Verdict::Pass { "pass" } else { "violation" });
    for v in &o.violations {
        println!("violation  {v}");
    }
    let st = &o.stats;
    println!(
        "stats      ticks={} guest_steps={} int3_traps={} patch_rounds={} syncs={} ipis={} stores={} decisions={}",
        st.ticks, st.guest_steps, st.int3_traps, st.patch_rounds, st.syncs, st.ipis, st.stores, st.decisions
    );
    println!("trace_hash {}", o.trace_hash);
}

fn cmd_run(a: &RunArgs) -> Result<ExitCode, SimError> {
    let s = scenario(a)?;
    let o = s.run()?;
    if a.json {
        let report = RunReport {
            verdict: o.verdict,
            violations: &o.violations,
            stats: o.stats,
            trace_hash: &o.trace_hash,
            scenario: scenario_report(&s),
        };
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print_outcome(&s, &o);
    }
    Ok(if o.verdict == Verdict::Pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_check(a: &CheckArgs) -> Result<ExitCode, SimError> {
    if a.runs == 0 {
        return Err(bad("runs: must be at least 1".into()));
    }
    if let Some(j) = a.jobs {
        if j == 0 {
            return Err(bad("jobs: must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new().num_threads(j).build_global().map_err(|e| bad(format!("jobs: {e}")))?;
    }
    let start = std::time::Instant::now();
    let rows = check::check_all(a.runs)?;
    let all_ok = rows.iter().all(|r| r.ok);
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize"));
    } else {
        println!(
            "{:<52} {:<36} {:<10} {:<18} {:>5} {:>5} {:>8} {:>7}  result",
            "scenario", "expected", "verdict", "kind", "runs", "seed", "traps", "time"
        );
        for r in &rows {
            println!(
                "{:<52} {:<36} {:<10} {:<18} {:>5} {:>5} {:>8} {:>6.1}s  {}",
                r.scenario,
                r.expect.to_string(),
                if r.verdict == Verdict::Pass { "pass" } else { "violation" },
                r.kind.map_or("-".to_string(), |k| k.to_string()),
                r.runs,
                r.seed.map_or("-".to_string(), |s| s.to_string()),
                r.int3_traps,
                r.time.as_secs_f64(),
                if r.ok { "ok" } else { "UNEXPECTED" }
            );
        }
        let bad_rows = rows.iter().filter(|r| !r.ok).count();
        println!(
            "\n{} scenarios, {} as expected, {} unexpected, {:.1}s",
            rows.len(),
            rows.len() - bad_rows,
            bad_rows,
            start.elapsed().as_secs_f64()
        );
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_bench(a: &BenchArgs) -> Result<ExitCode, SimError> {
    if a.steps < 1000 {
        return Err(bad("steps: must be at least 1000".into()));
    }
    let r = scenarios::bench::run(a.steps)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&r).expect("report serializes"));
    } else {
        println!("raw unicorn, 4 engines round-robin, count=1   {:>12.0} steps/s", r.raw_unicorn_steps_per_s);
        println!(
            "pokesim ftrace 4 vCPUs, quiet                 {:>12.0} steps/s  ({:.2} of raw)",
            r.quiet_steps_per_s, r.quiet_ratio
        );
        println!(
            "pokesim ftrace 4 vCPUs, patching              {:>12.0} steps/s  ({:.2} of raw; {:.0} traps/s, {:.0} rounds/s)",
            r.patching_steps_per_s, r.patching_ratio, r.patching_traps_per_s, r.patching_rounds_per_s
        );
        println!("resident memory per vCPU                      {:>12.0} KiB", r.rss_per_vcpu_kib);
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_list() -> ExitCode {
    println!("workloads:");
    for w in WorkloadKind::ALL {
        println!("  {:<26} {}", w.name(), w.description());
    }
    println!("protocols:");
    for p in Protocol::ALL {
        println!("  {:<26} {}", p.name(), p.description());
    }
    println!("mutants (applies to; description):");
    for m in Mutant::ALL {
        let on: Vec<_> = Protocol::ALL.iter().filter(|p| m.applies_to(**p)).map(|p| p.name()).collect();
        println!("  {:<26} [{}] {}", m.name(), on.join(" "), m.description());
    }
    println!("fetch presets:");
    for p in FetchModel::PRESETS {
        let m = FetchModel::preset(p).expect("preset exists");
        println!("  {:<26} fetch={} stores={} monotone unbounded", p, m.fetch.name(), m.stores.name());
    }
    println!("violation kinds:");
    for k in ViolationKind::ALL {
        println!("  {}", k.name());
    }
    ExitCode::SUCCESS
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => cmd_run(a),
        Command::Check(a) => cmd_check(a),
        Command::Bench(a) => cmd_bench(a),
        Command::List => Ok(cmd_list()),
    };
    match result {
        Ok(code) => code,
        Err(e @ (SimError::BadInput(_) | SimError::StaleDecisions(_))) => {
            eprintln!("pokesim: error: {e}");
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("pokesim: internal error: {e}");
            ExitCode::from(3)
        }
    }
}
