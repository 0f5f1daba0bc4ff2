//! `pokesim`: the command line (DESIGN.md §2.11). Exit status 0 = no violation (or, for
//! `check`, every built-in scenario as expected), 1 = violation (or an unexpected result),
//! 2 = bad input or usage, 3 = internal simulator failure.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use cpu_model::{FetchModel, FetchUnit, Staleness, StoreGranularity};
use scenarios::artifact::Artifact;
use scenarios::check;
use scenarios::corpus::{self, EntryStatus};
use scenarios::file::{Expectation, FileError, ScenarioFile};
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
    /// Run one scenario: from a scenario file, or from flags and a seed.
    Run(Box<RunArgs>),
    /// Replay a failure artifact from its decision list.
    Replay(ReplayArgs),
    /// Shrink a failure artifact to the smallest failing run.
    Shrink(ShrinkArgs),
    /// Print the fixed-column trace of a failure artifact.
    Trace(TraceArgs),
    /// Run the regression corpus (or add an artifact to it).
    Corpus(CorpusArgs),
    /// Run many seeds of a scenario in parallel (random or PCT), sharded if asked.
    Explore(ExploreArgs),
    /// Explore every interleaving and stale view of a small scenario within a bound.
    Exhaust(ExhaustArgs),
    /// The sync-necessity matrix: every mutant x version x workload x fetch preset.
    Mutants(MutantsArgs),
    /// Run the built-in scenarios and print a verdict table (the main job).
    Check(CheckArgs),
    /// Measure throughput: raw Unicorn vs pokesim, quiet and while patching.
    Bench(BenchArgs),
    /// List workloads, protocols, mutants, fetch presets and violation kinds.
    List,
}

#[derive(Args)]
struct ArtifactOpts {
    /// Do not write a failure artifact.
    #[arg(long)]
    no_artifact: bool,
    /// Where failure artifacts go.
    #[arg(long, value_name = "DIR", default_value = "pokesim-artifacts")]
    artifact_dir: PathBuf,
}

#[derive(Args)]
struct ReplayArgs {
    /// The artifact (JSON), or a corpus entry with recorded decisions (TOML).
    artifact: PathBuf,
    /// Replay twice and compare a state hash after every step.
    #[arg(long)]
    check_determinism: bool,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ShrinkArgs {
    /// The artifact (JSON).
    artifact: PathBuf,
    /// Where to write the shrunk artifact.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Test runs the shrinker may spend.
    #[arg(long, default_value_t = 20_000)]
    max_runs: u64,
}

#[derive(Args)]
struct TraceArgs {
    /// The artifact (JSON).
    artifact: PathBuf,
    /// Show only ticks around this one.
    #[arg(long, value_name = "TICK")]
    around: Option<u64>,
    /// Ticks either side of --around.
    #[arg(long, default_value_t = 40)]
    window: u64,
}

#[derive(Args)]
struct ExploreArgs {
    /// The scenario file (TOML).
    scenario: PathBuf,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    /// Strategy: random or pct.
    #[arg(long, default_value = "random")]
    strategy: String,
    /// PCT bug depth.
    #[arg(long, default_value_t = 3)]
    depth: u32,
    /// Stop after this many runs (deterministic).
    #[arg(long, conflicts_with = "time")]
    runs: Option<u64>,
    /// Stop after this many seconds (the run count then depends on the machine).
    #[arg(long)]
    time: Option<f64>,
    /// Worker threads (default: all cores); the result does not depend on it.
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard I of N of the seed space (seeds congruent to I modulo N).
    #[arg(long, value_name = "I/N")]
    shard: Option<String>,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct ExhaustArgs {
    /// The scenario file (TOML); keep it small: 2 vCPUs, one site, one round.
    scenario: PathBuf,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    /// Preemptions plus stale-fetch choices allowed per run.
    #[arg(long, default_value_t = 2)]
    bound: usize,
    /// Loop iterations per vCPU (a finite guest).
    #[arg(long, default_value_t = 1)]
    iterations: u64,
    /// Disable the sleep-set reduction.
    #[arg(long)]
    no_reduction: bool,
    /// Give up after this many executions.
    #[arg(long, default_value_t = 5_000_000)]
    max_executions: u64,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct MutantsArgs {
    /// Only this workload variant (ftrace, ftrace+kprobe, static_call, static_call-no-tail,
    /// jump_label, jcc, optprobe, batch, batch-interleaved).
    #[arg(long)]
    workload: Option<String>,
    /// Only this protocol version.
    #[arg(long)]
    version: Option<String>,
    /// Only this fetch preset (repeatable; default all four).
    #[arg(long = "preset")]
    presets: Vec<String>,
    /// Runs per strategy per cell.
    #[arg(long, default_value_t = 20)]
    runs: u64,
    /// Worker threads.
    #[arg(long)]
    jobs: Option<usize>,
    /// Print every cell as JSON.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct CorpusArgs {
    /// The corpus directory (default: the corpus shipped with pokesim).
    dir: Option<PathBuf>,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    /// Add this artifact to the corpus instead of running it.
    #[arg(long, value_name = "ARTIFACT")]
    add: Option<PathBuf>,
    /// Name of the added entry (default: the artifact's file stem).
    #[arg(long)]
    name: Option<String>,
    /// Print JSON instead of a table.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RunArgs {
    /// A scenario file (TOML); other scenario flags are then not allowed.
    file: Option<PathBuf>,
    #[command(flatten)]
    artifacts: ArtifactOpts,
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
    #[command(flatten)]
    artifacts: ArtifactOpts,
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
    Ok(Scenario { workload, config, strategy: Strategy::Random, seed: a.seed, kprobes: Vec::new() })
}

/// The JSON object of `pokesim run --json`.
#[derive(Serialize)]
struct RunReport<'a> {
    verdict: Verdict,
    violations: &'a [Violation],
    stats: Stats,
    trace_hash: &'a str,
    scenario: ScenarioReport,
    #[serde(skip_serializing_if = "Option::is_none")]
    artifact: Option<String>,
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

/// Writes artifacts under the artifact directory unless told not to; returns how many.
fn save_all<'a>(opts: &ArtifactOpts, arts: impl Iterator<Item = (&'a Artifact, PathBuf)>) -> Result<usize, Failure> {
    if opts.no_artifact {
        return Ok(0);
    }
    let mut n = 0;
    for (art, name) in arts {
        let path = opts.artifact_dir.join(name);
        art.save(&path).map_err(|e| Failure::Internal(format!("writing {}: {e}", path.display())))?;
        n += 1;
    }
    Ok(n)
}

/// Writes the artifact of a violating run unless told not to; returns its path.
fn write_artifact(opts: &ArtifactOpts, name: &str, s: &Scenario, o: &Outcome) -> Result<Option<PathBuf>, Failure> {
    let (false, Some(v)) = (opts.no_artifact, o.violation()) else { return Ok(None) };
    let artifact = Artifact::new(name, s, o).expect("a violating outcome has an artifact");
    let path = Artifact::default_path(&opts.artifact_dir, s, v);
    artifact.save(&path).map_err(|e| Failure::Internal(format!("writing {}: {e}", path.display())))?;
    Ok(Some(path))
}

fn report_run(json: bool, s: &Scenario, o: &Outcome, artifact: Option<&Path>) {
    if json {
        let report = RunReport {
            verdict: o.verdict,
            violations: &o.violations,
            stats: o.stats,
            trace_hash: &o.trace_hash,
            scenario: scenario_report(s),
            artifact: artifact.map(|p| p.display().to_string()),
        };
        println!("{}", serde_json::to_string_pretty(&report).expect("reports serialize"));
    } else {
        print_outcome(s, o);
        if let Some(p) = artifact {
            println!("artifact   {}", p.display());
            println!("replay     pokesim replay {}", p.display());
        }
    }
}

fn cmd_run(a: &RunArgs) -> Result<ExitCode, Failure> {
    let Some(path) = &a.file else {
        let s = scenario(a)?;
        let o = s.run()?;
        let artifact = write_artifact(&a.artifacts, &s.label().replace('/', "-"), &s, &o)?;
        report_run(a.json, &s, &o, artifact.as_deref());
        return Ok(if o.verdict == Verdict::Pass { ExitCode::SUCCESS } else { ExitCode::from(1) });
    };
    let file = ScenarioFile::load(path)?;
    let mut last = None;
    for k in 0..file.runs {
        let mut s = file.scenario.clone();
        s.seed += k;
        let o = match &file.decisions {
            Some(list) => s.replay(list.clone())?,
            None => s.run()?,
        };
        if let Some(want) = file.trace_hash.as_ref().filter(|h| **h != o.trace_hash) {
            return Err(Failure::Stale(format!(
                "{}: the replay's trace hash is {}, the file recorded {want}",
                path.display(),
                o.trace_hash
            )));
        }
        let violated = o.verdict == Verdict::Violation;
        last = Some((s, o));
        if violated || file.decisions.is_some() {
            break;
        }
    }
    let (s, o) = last.expect("a scenario file runs at least once");
    let artifact = write_artifact(&a.artifacts, &file.name, &s, &o)?;
    report_run(a.json, &s, &o, artifact.as_deref());
    if !a.json {
        let got = o.violation().map(|v| Expectation::Violation(v.kind)).unwrap_or(Expectation::Pass);
        let verdict = if got == file.expect { "as expected" } else { "UNEXPECTED" };
        println!("expected   {} ({verdict})", file.expect);
    }
    Ok(if o.verdict == Verdict::Pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn load_artifact(path: &Path) -> Result<(Artifact, ScenarioFile), Failure> {
    let a = Artifact::load(path)?;
    let file = a.scenario_file(path)?;
    Ok((a, file))
}

/// What a replay must reproduce: an artifact's violation and trace, or a corpus entry's
/// expected kind and recorded trace.
struct Replayable {
    scenario: Scenario,
    decisions: Vec<sim_core::Decision>,
    violation: Option<sim_core::Violation>,
    kind: Option<ViolationKind>,
    trace_hash: Option<String>,
}

fn load_replayable(path: &Path) -> Result<Replayable, Failure> {
    if path.extension().is_some_and(|x| x == "toml") {
        let f = ScenarioFile::load(path)?;
        let Some(decisions) = f.decisions else {
            return Err(Failure::Bad(format!(
                "{}: field `decisions`: missing; only recorded entries replay",
                path.display()
            )));
        };
        let kind = match f.expect {
            Expectation::Violation(k) => Some(k),
            Expectation::Pass => None,
        };
        return Ok(Replayable { scenario: f.scenario, decisions, violation: None, kind, trace_hash: f.trace_hash });
    }
    let (art, file) = load_artifact(path)?;
    Ok(Replayable {
        scenario: file.scenario,
        decisions: art.decision_list(),
        kind: Some(art.violation.kind),
        violation: Some(art.violation),
        trace_hash: Some(art.trace_hash),
    })
}

fn cmd_replay(a: &ReplayArgs) -> Result<ExitCode, Failure> {
    let r = load_replayable(&a.artifact)?;
    let mut s = r.scenario.clone();
    if a.check_determinism {
        s.config.step_hashes = true;
    }
    let o = s.replay(r.decisions.clone())?;
    let same_violation = match &r.violation {
        Some(v) => o.violation() == Some(v),
        None => o.violation().map(|v| v.kind) == r.kind,
    };
    let same = same_violation && r.trace_hash.as_ref().is_none_or(|h| *h == o.trace_hash);
    if a.check_determinism {
        let again = s.replay(r.decisions.clone())?;
        match o.step_hashes.iter().zip(&again.step_hashes).position(|(x, y)| x != y) {
            Some(tick) => {
                return Err(Failure::Internal(format!("nondeterminism: the two replays diverge at tick {tick}")));
            }
            None if o.step_hashes.len() != again.step_hashes.len() => {
                return Err(Failure::Internal("nondeterminism: the two replays have different lengths".into()));
            }
            None => println!("deterministic: two replays agree on all {} per-step state hashes", o.step_hashes.len()),
        }
    }
    if a.json {
        let j = serde_json::json!({
            "reproduced": same,
            "verdict": o.verdict,
            "violations": o.violations,
            "trace_hash": o.trace_hash,
            "stats": o.stats,
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
    } else {
        print_outcome(&s, &o);
    }
    if !same {
        let want =
            r.violation.as_ref().map_or(r.kind.map_or("a pass".to_string(), |k| k.to_string()), |v| v.to_string());
        let got = o.violation().map_or("no violation".to_string(), |v| v.to_string());
        return Err(Failure::Stale(format!(
            "{}: does not reproduce: recorded {want} (trace {}), got {got} (trace {})",
            a.artifact.display(),
            r.trace_hash.as_deref().unwrap_or("-"),
            o.trace_hash
        )));
    }
    match o.violation() {
        Some(v) => {
            if !a.json {
                println!("reproduced {} at tick {} (trace {})", v.kind, v.tick, o.trace_hash);
            }
            Ok(ExitCode::from(1))
        }
        None => {
            if !a.json {
                println!("reproduced a pass (trace {})", o.trace_hash);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn cmd_shrink(a: &ShrinkArgs) -> Result<ExitCode, Failure> {
    let (art, file) = load_artifact(&a.artifact)?;
    let kind = art.violation.kind;
    let (s, list, r) = scenarios::shrink::shrink(&file.scenario, art.decision_list(), kind, a.max_runs)?;
    let o = s.replay(list.clone())?;
    let mut shrunk = Artifact::new(&file.name, &s, &o).expect("the shrunk run violates");
    // Store the trimmed list: the zeros the run consumed after it are implied.
    shrunk.decisions = list.iter().map(|d| (d.of, d.choice)).collect();
    shrunk.save(&a.output).map_err(|e| Failure::Internal(format!("writing {}: {e}", a.output.display())))?;
    println!("decisions  {} -> {}", r.decisions_before, r.decisions_after);
    println!("cpus       {} -> {}", r.cpus.0, r.cpus.1);
    println!("rounds     {} -> {}", r.rounds.0, r.rounds.1);
    println!("ticks      {} -> {}", art.ticks, shrunk.ticks);
    println!("test runs  {}", r.runs);
    println!("violation  {}", shrunk.violation);
    println!("written    {}", a.output.display());
    Ok(ExitCode::from(1))
}

fn cmd_trace(a: &TraceArgs) -> Result<ExitCode, Failure> {
    let (art, file) = load_artifact(&a.artifact)?;
    let mut s = file.scenario.clone();
    s.config.keep_trace = true;
    let o = s.replay(art.decision_list())?;
    print!("{}", scenarios::report::trace_table(&o.trace, o.violation(), a.around.map(|t| (t, a.window))));
    Ok(if o.verdict == Verdict::Pass { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_corpus(a: &CorpusArgs) -> Result<ExitCode, Failure> {
    let dir = a.dir.clone().unwrap_or_else(corpus::default_dir);
    if let Some(path) = &a.add {
        let (art, mut file) = load_artifact(path)?;
        let name = a
            .name
            .clone()
            .unwrap_or_else(|| path.file_stem().map_or("entry".into(), |s| s.to_string_lossy().to_string()));
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
            return Err(Failure::Bad(format!("name: '{name}' must be letters, digits, '-', '_' or '.'")));
        }
        file.name = name.clone();
        file.decisions = Some(art.decision_list());
        file.trace_hash = Some(art.trace_hash.clone());
        let out = dir.join(format!("{name}.toml"));
        std::fs::create_dir_all(&dir).map_err(|e| Failure::Bad(format!("{}: {e}", dir.display())))?;
        std::fs::write(&out, file.to_toml()).map_err(|e| Failure::Bad(format!("{}: {e}", out.display())))?;
        println!("added {} (expect {}, {} decisions)", out.display(), file.expect, art.decisions.len());
        return Ok(ExitCode::SUCCESS);
    }
    let start = std::time::Instant::now();
    let rows = corpus::run_dir(&dir).map_err(Failure::Bad)?;
    let written = save_all(
        &a.artifacts,
        rows.iter()
            .filter_map(|r| r.artifact.as_ref().map(|art| (art, PathBuf::from(format!("corpus-{}.json", r.name))))),
    )?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&rows).expect("rows serialize"));
    } else {
        println!("{:<44} {:<20} {:<20} {:<8} {:>5} {:>7}  result", "entry", "expected", "got", "mode", "runs", "time");
        for r in &rows {
            let status = match r.status {
                EntryStatus::Ok => "ok".to_string(),
                EntryStatus::Unexpected => format!("UNEXPECTED ({})", r.detail.as_deref().unwrap_or("")),
                EntryStatus::Stale => format!("STALE ({})", r.detail.as_deref().unwrap_or("")),
            };
            let mode = if r.replayed { "replay" } else { "seeds" };
            println!(
                "{:<44} {:<20} {:<20} {:<8} {:>5} {:>6.2}s  {status}",
                r.name,
                r.expect,
                r.got,
                mode,
                r.runs,
                r.time.as_secs_f64()
            );
        }
        let bad = rows.iter().filter(|r| r.status != EntryStatus::Ok).count();
        println!(
            "
{} entries, {} ok, {} not ok, {:.1}s",
            rows.len(),
            rows.len() - bad,
            bad,
            start.elapsed().as_secs_f64()
        );
        if written > 0 {
            println!("{written} failure artifacts written to {}/", a.artifacts.artifact_dir.display());
        }
    }
    Ok(if rows.iter().all(|r| r.status == EntryStatus::Ok) { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_check(a: &CheckArgs) -> Result<ExitCode, Failure> {
    if a.runs == 0 {
        return Err(Failure::Bad("runs: must be at least 1".into()));
    }
    set_jobs(a.jobs)?;
    let start = std::time::Instant::now();
    let rows = check::check_all(a.runs)?;
    let all_ok = rows.iter().all(|r| r.ok);
    let written =
        save_all(&a.artifacts, rows.iter().filter_map(|r| r.artifact.as_ref()).map(|(art, name)| (art, name.clone())))?;
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
        if written > 0 {
            println!("{written} failure artifacts written to {}/", a.artifacts.artifact_dir.display());
        }
    }
    Ok(if all_ok { ExitCode::SUCCESS } else { ExitCode::from(1) })
}

fn cmd_bench(a: &BenchArgs) -> Result<ExitCode, Failure> {
    if a.steps < 1000 {
        return Err(Failure::Bad("steps: must be at least 1000".into()));
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

fn set_jobs(jobs: Option<usize>) -> Result<(), Failure> {
    if let Some(j) = jobs {
        if j == 0 {
            return Err(Failure::Bad("jobs: must be at least 1".into()));
        }
        rayon::ThreadPoolBuilder::new()
            .num_threads(j)
            .build_global()
            .map_err(|e| Failure::Bad(format!("jobs: {e}")))?;
    }
    Ok(())
}

fn cmd_explore(a: &ExploreArgs) -> Result<ExitCode, Failure> {
    use scenarios::explore::{campaign, Budget, Shard};
    let file = ScenarioFile::load(&a.scenario)?;
    let strategy = match a.strategy.as_str() {
        "random" => Strategy::Random,
        "pct" => {
            if a.depth == 0 || a.depth > 64 {
                return Err(Failure::Bad(format!("depth: {} is out of range (1..=64)", a.depth)));
            }
            Strategy::Pct { depth: a.depth }
        }
        other => return Err(Failure::Bad(format!("strategy: unknown strategy '{other}' (valid: random, pct)"))),
    };
    let budget = match (a.runs, a.time) {
        (Some(0), _) => return Err(Failure::Bad("runs: must be at least 1".into())),
        (Some(n), _) => Budget::Runs(n),
        (None, Some(t)) if t > 0.0 && t.is_finite() => Budget::Time(std::time::Duration::from_secs_f64(t)),
        (None, Some(t)) => return Err(Failure::Bad(format!("time: {t} is not a positive number of seconds"))),
        (None, None) => Budget::Runs(1000),
    };
    let shard = match &a.shard {
        Some(sh) => sh.parse::<Shard>().map_err(Failure::Bad)?,
        None => Shard::ALL,
    };
    set_jobs(a.jobs)?;
    let total = match budget {
        Budget::Runs(n) => n,
        Budget::Time(_) => 0,
    };
    let bar = if std::io::IsTerminal::is_terminal(&std::io::stderr()) && !a.json {
        let b = indicatif::ProgressBar::new(total);
        b.set_style(
            indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs {per_sec}")
                .expect("valid template"),
        );
        Some(b)
    } else {
        None
    };
    let r = campaign(&file.scenario, strategy, budget, shard, |n| {
        if let Some(b) = &bar {
            b.set_position(n);
        }
    })?;
    if let Some(b) = bar {
        b.finish_and_clear();
    }
    let artifact = match &r.found {
        Some((s, o)) => write_artifact(&a.artifacts, &file.name, s, o)?,
        None => None,
    };
    let (seed, violation) = match &r.found {
        Some((s, o)) => (Some(s.seed), o.violation().cloned()),
        None => (None, None),
    };
    if a.json {
        let j = serde_json::json!({
            "strategy": strategy.to_string(),
            "shard": format!("{}/{}", shard.index, shard.count),
            "runs": r.runs,
            "verdict": if violation.is_some() { "violation" } else { "pass" },
            "seed": seed,
            "violation": violation,
            "artifact": artifact.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
    } else {
        println!("strategy   {strategy} shard {}/{}", shard.index, shard.count);
        println!(
            "runs       {} in {:.1}s ({:.0} runs/s)",
            r.runs,
            r.elapsed.as_secs_f64(),
            r.runs as f64 / r.elapsed.as_secs_f64()
        );
        match (&violation, seed) {
            (Some(v), Some(sd)) => {
                println!("violation  seed {sd}: {v}");
                if let Some(p) = &artifact {
                    println!("artifact   {}\nreplay     pokesim replay {}", p.display(), p.display());
                }
            }
            _ => println!("verdict    no violation in {} runs", r.runs),
        }
    }
    Ok(if violation.is_some() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn cmd_exhaust(a: &ExhaustArgs) -> Result<ExitCode, Failure> {
    let file = ScenarioFile::load(&a.scenario)?;
    if a.iterations == 0 {
        return Err(Failure::Bad("iterations: must be at least 1".into()));
    }
    let mut s = file.scenario.clone();
    s.config.max_iterations = Some(a.iterations);
    let r = scenarios::explore::exhaust(&s, a.bound, !a.no_reduction, a.max_executions)?;
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    let artifact = match &r.violation {
        Some(o) => write_artifact(&a.artifacts, &file.name, &s, o)?,
        None => None,
    };
    let verdict = match (&r.violation, r.complete) {
        (Some(_), _) => "violation",
        (None, true) => "no violation within bound",
        (None, false) => "incomplete: execution limit reached",
    };
    if a.json {
        let j = serde_json::json!({
            "verdict": verdict,
            "bound": a.bound,
            "iterations": a.iterations,
            "reduction": !a.no_reduction,
            "executions": r.executions,
            "states": r.states,
            "complete": r.complete,
            "violation": r.violation.as_ref().and_then(|o| o.violation().cloned()),
            "artifact": artifact.as_ref().map(|p| p.display().to_string()),
        });
        println!("{}", serde_json::to_string_pretty(&j).expect("json"));
    } else {
        println!(
            "scenario   {} cpus={} bound={} iterations={} reduction={}",
            s.label(),
            s.config.cpus,
            a.bound,
            a.iterations,
            !a.no_reduction
        );
        println!(
            "explored   {} executions, {} distinct states in {:.1}s ({:.0} executions/s, {:.0} states/s)",
            r.executions,
            r.states,
            secs,
            r.executions as f64 / secs,
            r.states as f64 / secs
        );
        match &r.violation {
            Some(o) => {
                println!("violation  {}", o.violation().expect("violating"));
                if let Some(p) = &artifact {
                    println!("artifact   {}\nreplay     pokesim replay {}", p.display(), p.display());
                }
            }
            None => println!("verdict    {verdict}"),
        }
    }
    Ok(match (&r.violation, r.complete) {
        (Some(_), _) => ExitCode::from(1),
        (None, true) => ExitCode::SUCCESS,
        (None, false) => ExitCode::from(3),
    })
}

fn cmd_mutants(a: &MutantsArgs) -> Result<ExitCode, Failure> {
    use scenarios::matrix::{matrix, Filter};
    let protocol = a.version.as_deref().map(|v| v.parse::<Protocol>()).transpose()?;
    for p in &a.presets {
        if FetchModel::preset(p).is_none() {
            return Err(Failure::Bad(format!(
                "preset: unknown preset '{p}' (valid: {})",
                FetchModel::PRESETS.join(", ")
            )));
        }
    }
    let names: Vec<&str> = scenarios::catalogue::variants().iter().map(|v| v.name).collect();
    if let Some(w) = &a.workload {
        if !names.contains(&w.as_str()) {
            return Err(Failure::Bad(format!(
                "workload: unknown workload variant '{w}' (valid: {})",
                names.join(", ")
            )));
        }
    }
    if a.runs == 0 {
        return Err(Failure::Bad("runs: must be at least 1".into()));
    }
    set_jobs(a.jobs)?;
    let filter = Filter { workload: a.workload.clone(), protocol, presets: a.presets.clone() };
    let (cells, elapsed) = matrix(&filter, a.runs)?;
    if a.json {
        println!("{}", serde_json::to_string_pretty(&cells).expect("cells serialize"));
        return Ok(ExitCode::SUCCESS);
    }
    let presets: Vec<String> = if a.presets.is_empty() {
        FetchModel::PRESETS.iter().map(|p| p.to_string()).collect()
    } else {
        a.presets.clone()
    };
    print!("{:<26}", "mutant (caught/cells)");
    for p in &presets {
        print!(" {p:>14}");
    }
    println!("   kinds; median runs random/pct; median shrunk decisions");
    for m in Mutant::ALL {
        let mine: Vec<_> = cells.iter().filter(|c| c.mutant == m.name()).collect();
        if mine.is_empty() {
            continue;
        }
        print!("{:<26}", format!("{}{}", m.name(), if m.benign() { " (benign)" } else { "" }));
        for p in &presets {
            let col: Vec<_> = mine.iter().filter(|c| &c.preset == p).collect();
            print!(" {:>14}", format!("{}/{}", col.iter().filter(|c| c.caught).count(), col.len()));
        }
        let mut kinds: Vec<String> = mine.iter().filter_map(|c| c.kind.map(|k| k.to_string())).collect();
        kinds.sort();
        kinds.dedup();
        let med = |mut v: Vec<u64>| {
            if v.is_empty() {
                "-".to_string()
            } else {
                v.sort_unstable();
                v[v.len() / 2].to_string()
            }
        };
        let r = med(mine.iter().filter_map(|c| c.random_runs).collect());
        let q = med(mine.iter().filter_map(|c| c.pct_runs).collect());
        let sh = med(mine.iter().filter_map(|c| c.shrunk_decisions.map(|d| d as u64)).collect());
        println!("   {}; {r}/{q}; {sh}", if kinds.is_empty() { "-".to_string() } else { kinds.join(",") });
    }
    println!("\n{} cells, {} runs per strategy per cell, {:.1}s", cells.len(), a.runs, elapsed.as_secs_f64());
    Ok(ExitCode::SUCCESS)
}

/// Why a command failed: bad input (exit 2), an artifact that no longer fits (exit 2), or the
/// simulator itself (exit 3).
enum Failure {
    Bad(String),
    Stale(String),
    Internal(String),
}

impl From<SimError> for Failure {
    fn from(e: SimError) -> Self {
        match e {
            SimError::BadInput(m) => Failure::Bad(m),
            SimError::StaleDecisions(m) => Failure::Stale(format!("stale decision list: {m}")),
            SimError::Cpu(e) => Failure::Internal(e.to_string()),
        }
    }
}

impl From<FileError> for Failure {
    fn from(e: FileError) -> Self {
        Failure::Bad(e.to_string())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Command::Run(a) => {
            if a.file.is_some()
                && std::env::args().skip(3).any(|x| {
                    x.starts_with("--") && !matches!(x.as_str(), "--json" | "--no-artifact" | "--artifact-dir")
                })
            {
                Err(Failure::Bad("run: a scenario file cannot be combined with scenario flags".into()))
            } else {
                cmd_run(a)
            }
        }
        Command::Replay(a) => cmd_replay(a),
        Command::Shrink(a) => cmd_shrink(a),
        Command::Trace(a) => cmd_trace(a),
        Command::Corpus(a) => cmd_corpus(a),
        Command::Explore(a) => cmd_explore(a),
        Command::Exhaust(a) => cmd_exhaust(a),
        Command::Mutants(a) => cmd_mutants(a),
        Command::Check(a) => cmd_check(a),
        Command::Bench(a) => cmd_bench(a),
        Command::List => Ok(cmd_list()),
    };
    match result {
        Ok(code) => code,
        Err(Failure::Bad(m)) | Err(Failure::Stale(m)) => {
            eprintln!("pokesim: error: {m}");
            ExitCode::from(2)
        }
        Err(Failure::Internal(m)) => {
            eprintln!("pokesim: internal error: {m}");
            ExitCode::from(3)
        }
    }
}
