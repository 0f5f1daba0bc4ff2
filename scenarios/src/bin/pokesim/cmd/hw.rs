//! `pokesim hw`: a scenario's protocol on this machine's real CPUs (`scenarios::hardware`,
//! the `hw` crate), or with `--matrix` the ftrace and static_call mutants at three site
//! placements next to what each fetch preset predicts. The host is probed first: a host that
//! cannot (not x86-64 Linux, fewer than 2 CPUs, no membarrier SYNC_CORE, no seccomp) is refused
//! with the reason (exit 2). A hardware campaign is not deterministic: the CPUs interleave.

use std::time::Duration;

use clap::Args;
use hw::{Host, HwReport, Limits};
use scenarios::entry::Expectation;
use scenarios::hardware::{self, Prediction};
use scenarios::Scenario;
use serde::Serialize;
use sim_core::ViolationKind;

use super::ScenarioReport;
use crate::args::{OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};

/// Rounds when `--rounds` is not given.
const DEFAULT_ROUNDS: u64 = 100_000;
/// Rounds per `--matrix` row when `--rounds` is not given.
const DEFAULT_MATRIX_ROUNDS: u64 = 20_000;
/// Events the text report shows (the JSON report has every one the campaign kept).
const TEXT_EVENTS: usize = 5;
/// Simulator runs per preset for a `--matrix` prediction when `--predict-runs` is not given.
const DEFAULT_PREDICT_RUNS: u64 = 200;

/// `pokesim hw`.
#[derive(Args)]
#[command(mut_arg("rounds", |a| a.help(
    "Patch rounds to run on the hardware in all (the scenario's script repeats from its initial image) \
     [default: 100000; with --matrix 20000 per row]"
)))]
// Simulation-only flags stay parseable (to be refused by name) but are not offered.
#[command(
    mut_arg("seed", |a| a.hide(true)),
    mut_arg("runs", |a| a.hide(true)),
    mut_arg("strategy", |a| a.hide(true)),
    mut_arg("depth", |a| a.hide(true)),
    mut_arg("preset", |a| a.hide(true)),
    mut_arg("fetch", |a| a.hide(true)),
    mut_arg("non_monotone", |a| a.hide(true)),
    mut_arg("staleness", |a| a.hide(true)),
    mut_arg("steps", |a| a.hide(true))
)]
pub struct HwArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Stop after this many seconds (per row with --matrix) even if fewer rounds ran.
    #[arg(long, value_name = "SECONDS", value_parser = super::run::seconds, allow_negative_numbers = true)]
    time: Option<Duration>,
    /// Guest threads, one per vCPU [default: the scenario's vCPUs; with --matrix, one per CPU
    /// beside the patcher's].
    #[arg(long, value_name = "T", value_parser = clap::value_parser!(u64).range(1..=sim_core::config::MAX_CPUS as u64))]
    threads: Option<u64>,
    /// Run the ftrace and static_call mutants (linux-6.16) and both kernel protocols
    /// (linux-5.5, linux-6.16) at aligned, cross16 and cross64 sites, next to what each fetch
    /// preset predicts.
    #[arg(long)]
    matrix: bool,
    /// Simulator runs per fetch preset for each --matrix prediction [default: 200].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    predict_runs: Option<u64>,
    #[command(flatten)]
    output: OutputOpts,
}

/// The JSON object of one hardware campaign.
#[derive(Serialize)]
struct Report {
    command: &'static str,
    host: HostReport,
    scenario: ScenarioReport,
    rounds: u64,
    passes: u64,
    stores: u64,
    syncs: u64,
    traps: u64,
    emulated: u64,
    kprobe_hits: u64,
    invariant_checks: u64,
    violations: Vec<KindCount>,
    per_million_rounds: f64,
    events: Vec<EventReport>,
    guest_cpus: Vec<Option<usize>>,
    stopped: Option<String>,
    seconds: f64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    predictions: Vec<PredictionReport>,
}

#[derive(Serialize)]
struct HostReport {
    cpu: String,
    cpus: usize,
    kernel: String,
    virtual_machine: bool,
    hypervisor: Option<String>,
}

#[derive(Serialize)]
struct KindCount {
    kind: ViolationKind,
    count: u64,
}

#[derive(Serialize)]
struct EventReport {
    kind: ViolationKind,
    cpu: usize,
    round: u64,
    phase: &'static str,
    addr: String,
    signal: Option<i32>,
    written: String,
    fetched: String,
    message: String,
}

#[derive(Serialize)]
struct PredictionReport {
    preset: &'static str,
    caught: Option<ViolationKind>,
    runs: u64,
}

fn host_report(h: &Host) -> HostReport {
    HostReport {
        cpu: h.cpu_model.clone(),
        cpus: h.cpus.len(),
        kernel: h.kernel.clone(),
        virtual_machine: h.hypervisor,
        hypervisor: h.hypervisor_vendor.clone(),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect::<Vec<_>>().join(" ")
}

fn report(host: &Host, s: &Scenario, r: &HwReport, predictions: &[Prediction]) -> Report {
    Report {
        command: "hw",
        host: host_report(host),
        scenario: ScenarioReport::of(s),
        rounds: r.rounds,
        passes: r.passes,
        stores: r.stores,
        syncs: r.syncs,
        traps: r.traps,
        emulated: r.emulated,
        kprobe_hits: r.kprobe_hits,
        invariant_checks: r.checks,
        violations: r.violations.iter().map(|&(kind, count)| KindCount { kind, count }).collect(),
        per_million_rounds: per_million(r),
        events: r
            .events
            .iter()
            .map(|e| EventReport {
                kind: e.kind,
                cpu: e.cpu,
                round: e.round,
                phase: e.phase,
                addr: format!("{:#x}", e.addr),
                signal: e.signal,
                written: hex(&e.written),
                fetched: hex(&e.fetched),
                message: e.message.clone(),
            })
            .collect(),
        guest_cpus: r.guests.iter().map(|g| g.cpu).collect(),
        stopped: r.stopped.clone(),
        seconds: r.elapsed.as_secs_f64(),
        predictions: predictions
            .iter()
            .map(|p| PredictionReport { preset: p.preset, caught: p.caught, runs: p.runs })
            .collect(),
    }
}

fn per_million(r: &HwReport) -> f64 {
    if r.rounds == 0 {
        0.0
    } else {
        r.total_violations() as f64 * 1e6 / r.rounds as f64
    }
}

/// The flags that describe a simulation, not a hardware campaign: refused rather than ignored.
fn refuse_simulation_flags(a: &ScenarioArgs) -> Result<(), Failure> {
    let given = [
        ("--seed", a.seed.is_some()),
        ("--runs", a.runs.is_some()),
        ("--strategy", a.strategy.is_some()),
        ("--depth", a.depth.is_some()),
        ("--preset", a.preset.is_some()),
        ("--fetch", a.fetch.is_some()),
        ("--non-monotone", a.non_monotone),
        ("--staleness", a.staleness.is_some()),
        ("--steps", a.steps.is_some()),
    ];
    match given.iter().find(|(_, g)| *g) {
        Some((flag, _)) => Err(Failure::Bad(format!(
            "{flag} does not apply to `pokesim hw`: on hardware the CPUs interleave and fetch as they do \
             (no scheduler, seed, fetch model or tick budget)"
        ))),
        None => Ok(()),
    }
}

/// Runs `pokesim hw`.
pub fn hw(a: &HwArgs) -> Result<Status, Failure> {
    refuse_simulation_flags(&a.scenario)?;
    let rounds = match a.scenario.rounds {
        Some(r) if r < 1 => return Err(Failure::Bad(format!("--rounds: {r} is not a positive number of rounds"))),
        Some(r) => Some(r as u64),
        None => None,
    };
    if !a.matrix && a.predict_runs.is_some() {
        return Err(Failure::Bad("--predict-runs applies only with --matrix".into()));
    }
    let host = hw::probe().map_err(|r| Failure::Bad(format!("pokesim hw: this host cannot: {r}")))?;
    if a.matrix {
        return matrix(a, &host, rounds);
    }
    let mut args = a.scenario.clone();
    args.rounds = None;
    let (file, overrides, _) = args.scenario()?;
    if file.decisions.is_some() {
        return Err(Failure::Bad(format!(
            "{}: the file records a decision list, which the hardware cannot follow (use `pokesim replay`)",
            a.scenario.file.as_deref().map_or("the scenario".into(), |f| f.display().to_string())
        )));
    }
    let mut s = file.scenario.clone();
    let asked = s.config.cpus;
    match a.threads {
        Some(t) if a.scenario.cpus.is_some_and(|c| c as u64 != t) => {
            return Err(Failure::Bad("--threads and --cpus disagree (on hardware they are the same)".into()));
        }
        Some(t) => s.config.cpus = t as usize,
        // One guest thread per CPU beside the patcher's: a guest that shares a CPU waits a
        // whole time slice for every text_poke_sync() to see it past its traps.
        None => s.config.cpus = asked.min(host.cpus.len() - 1),
    }
    let shared = (s.config.cpus != asked).then(|| {
        format!(
            "threads    {asked} vCPUs asked, {} CPU(s) free beside the patcher's: {} guest thread(s) (--threads T to share CPUs)",
            host.cpus.len() - 1,
            s.config.cpus
        )
    });
    let limits = Limits { rounds: rounds.unwrap_or(DEFAULT_ROUNDS), time: a.time, ..Limits::default() };
    let r = run_one(&s, &host, &limits)?;
    let status = status(file.expect, &r);
    if a.output.json {
        out::json(&report(&host, &s, &r, &[]))?;
    } else {
        let from_file = a.scenario.file.is_some().then(|| {
            "note       the file's seed, runs, strategy, fetch model and tick budget describe simulator runs: \
             on hardware they do not apply"
                .to_string()
        });
        let notes: Vec<String> =
            shared.into_iter().chain(from_file).chain(overrides.iter().map(|o| format!("overrides  {o}"))).collect();
        print_one(&host, &s, &r, &notes, file.expect, status)?;
    }
    Ok(status)
}

fn run_one(s: &Scenario, host: &Host, limits: &Limits) -> Result<HwReport, Failure> {
    hardware::run(s, host, limits).map_err(|e| match e {
        hardware::HwError::Refused(r) => Failure::Bad(format!("pokesim hw: {r}")),
        hardware::HwError::Scenario(e) => e.into(),
    })
}

/// Exit 0 if the hardware agreed with the scenario's expectation ([`hardware::meets`]), 1
/// otherwise.
fn status(expect: Expectation, r: &HwReport) -> Status {
    if hardware::meets(expect, r) {
        Status::Expected
    } else {
        Status::Unexpected
    }
}

fn host_line(h: &Host) -> String {
    let vm = match (&h.hypervisor_vendor, h.hypervisor) {
        (Some(v), _) => format!("virtual machine ({v})"),
        (None, true) => "virtual machine".into(),
        (None, false) => "bare metal (no hypervisor flag)".into(),
    };
    format!("{} · {} CPUs · Linux {} · {vm}", h.cpu_model, h.cpus.len(), h.kernel)
}

fn print_one(
    h: &Host,
    s: &Scenario,
    r: &HwReport,
    notes: &[String],
    expect: Expectation,
    status: Status,
) -> Result<(), Failure> {
    out::line(format!("host       {}", host_line(h)))?;
    out::line(format!(
        "scenario   {} kernel={} cpus={} site={} stores={} (the CPUs fetch and interleave as they do)",
        s.label(),
        s.config.kernel,
        s.config.cpus,
        s.workload.site,
        s.config.fetch.stores
    ))?;
    for n in notes {
        out::line(n)?;
    }
    let cpus: Vec<String> = r.guests.iter().map(|g| g.cpu.map_or("-".into(), |c| c.to_string())).collect();
    out::line(format!(
        "threads    patcher on CPU {}, {} guest thread(s) on CPU {}",
        h.cpus[0],
        r.guests.len(),
        cpus.join(", ")
    ))?;
    out::line(format!(
        "rounds     {} in {:.2} s ({:.0} rounds/s), {} passes of the {}-round script",
        r.rounds,
        r.elapsed.as_secs_f64(),
        r.rounds as f64 / r.elapsed.as_secs_f64().max(1e-9),
        r.passes,
        s.workload.rounds
    ))?;
    out::line(format!("patching   {} stores, {} text_poke_sync() (membarrier SYNC_CORE)", r.stores, r.syncs))?;
    out::line(format!(
        "traps      {} INT3 traps, {} emulated, {} kprobe hits; {} invariant checks at the loop head",
        r.traps, r.emulated, r.kprobe_hits, r.checks
    ))?;
    for e in r.events.iter().take(TEXT_EVENTS) {
        out::line(format!(
            "event      round {} {} cpu {}: {} at {:#x}: written [{}] fetched [{}]: {}",
            e.round,
            e.phase,
            e.cpu,
            e.kind.name(),
            e.addr,
            hex(&e.written),
            hex(&e.fetched),
            e.message
        ))?;
    }
    if r.events.len() > TEXT_EVENTS {
        out::line(format!("events     the first {TEXT_EVENTS} shown; --json gives the first {}", r.events.len()))?;
    }
    if let Some(why) = &r.stopped {
        out::line(format!("stopped    {why}"))?;
    }
    out::line(format!("verdict    {}", verdict(r, expect, status)))
}

fn verdict(r: &HwReport, expect: Expectation, status: Status) -> String {
    let seen = if r.violations.is_empty() {
        format!("no violation in {} rounds on this hardware", r.rounds)
    } else {
        let kinds: Vec<String> = r.violations.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
        format!("VIOLATIONS {} ({:.1} per million rounds)", kinds.join(", "), per_million(r))
    };
    let agrees = if status == Status::Expected { "as expected" } else { "NOT as expected" };
    format!("{seen}; {agrees} (expect {expect})")
}

/// `pokesim hw --matrix`.
fn matrix(a: &HwArgs, host: &Host, rounds: Option<u64>) -> Result<Status, Failure> {
    if a.scenario.file.is_some() || a.scenario.protocol.is_some() || !a.scenario.mutants.is_empty() {
        return Err(Failure::Bad(
            "--matrix runs its own rows (ftrace and static_call, linux-5.5, linux-6.16 and its mutants): \
             give no scenario file, --protocol or --mutant"
                .into(),
        ));
    }
    let threads = a.threads.map_or(host.cpus.len().saturating_sub(1).max(1), |t| t as usize);
    let limits = Limits { rounds: rounds.unwrap_or(DEFAULT_MATRIX_ROUNDS), time: a.time, ..Limits::default() };
    let runs = a.predict_runs.unwrap_or(DEFAULT_PREDICT_RUNS);
    let rows = hardware::matrix_scenarios(threads);
    if !a.output.json {
        out::line(format!("host       {}", host_line(host)))?;
        out::line(format!(
            "matrix     {} rows × {} rounds on hardware ({} guest thread(s), byte stores); predictions: {runs} simulator runs per preset",
            rows.len(),
            limits.rounds,
            threads
        ))?;
        out::line(matrix_header())?;
    }
    let (mut reports, mut predictions) = (Vec::new(), Vec::new());
    for s in &rows {
        let r = run_one(s, host, &limits)?;
        let p = hardware::predict(s, runs)?;
        if a.output.json {
            out::json(&report(host, s, &r, &p))?;
        } else {
            out::line(matrix_row(s, &r, &p))?;
        }
        reports.push(r);
        predictions.push(p);
    }
    let status = matrix_status(&rows, &reports);
    if !a.output.json {
        print_summary(&rows, &reports, &predictions)?;
    }
    Ok(status)
}

fn matrix_header() -> String {
    format!(
        "{:<12} {:<8} {:<10} {:<24} {:>9} {:>9} {:>8} {:>10}  {:<28}  {}",
        "workload",
        "site",
        "protocol",
        "mutant",
        "rounds",
        "traps",
        "seen",
        "per 10⁶",
        "kinds",
        "predicted by pessimistic block16 line64 snapshot"
    )
}

fn matrix_row(s: &Scenario, r: &HwReport, p: &[Prediction]) -> String {
    let mutant = s.config.mutants.first().map_or("-".to_string(), |m| m.name().to_string());
    let kinds: Vec<String> = r.violations.iter().map(|(k, n)| format!("{}:{n}", k.name())).collect();
    let predicted: Vec<&str> = p.iter().map(|p| if p.caught.is_some() { "caught" } else { "-" }).collect();
    let stopped = r.stopped.as_ref().map_or(String::new(), |w| format!("  (stopped: {w})"));
    format!(
        "{:<12} {:<8} {:<10} {:<24} {:>9} {:>9} {:>8} {:>10.1}  {:<28}  {}{stopped}",
        s.workload.kind.to_string(),
        s.workload.site.to_string(),
        s.config.protocol.name(),
        mutant,
        r.rounds,
        r.traps,
        r.total_violations(),
        per_million(r),
        if kinds.is_empty() { "-".to_string() } else { kinds.join(" ") },
        predicted.join(" ")
    )
}

/// Unexpected if an unmutated protocol or a benign mutant showed a violation on hardware.
fn matrix_status(rows: &[Scenario], reports: &[HwReport]) -> Status {
    let must_pass = |s: &Scenario| s.config.mutants.iter().all(|m| m.benign());
    let failed = rows.iter().zip(reports).any(|(s, r)| must_pass(s) && r.total_violations() > 0);
    if failed {
        Status::Unexpected
    } else {
        Status::Expected
    }
}

fn print_summary(rows: &[Scenario], reports: &[HwReport], predictions: &[Vec<Prediction>]) -> Result<(), Failure> {
    let mut failing: Vec<String> = rows
        .iter()
        .zip(reports)
        .filter(|(_, r)| r.total_violations() > 0)
        .map(|(s, _)| s.config.mutants.first().map_or(s.config.protocol.name().to_string(), |m| m.name().to_string()))
        .collect();
    failing.dedup();
    failing.sort();
    failing.dedup();
    out::line(format!(
        "seen       failing on this hardware: {}",
        if failing.is_empty() { "none".to_string() } else { failing.join(", ") }
    ))?;
    for c in hardware::consistency(reports, predictions) {
        let what = if c.contradicted_by.is_empty() {
            format!(
                "consistent: it predicted every violation the hardware showed ({} of its predictions not seen here)",
                c.unseen.len()
            )
        } else {
            let rows: Vec<String> = c.contradicted_by.iter().map(|&i| row_name(&rows[i])).collect();
            format!("CONTRADICTED: the hardware violated where it predicted none: {}", rows.join("; "))
        };
        out::line(format!("preset     {:<12} {what}", c.preset))?;
    }
    let status = matrix_status(rows, reports);
    out::line(format!(
        "verdict    {}",
        if status == Status::Expected {
            "the kernel protocols and the benign mutants showed no violation on this hardware"
        } else {
            "A KERNEL PROTOCOL OR BENIGN MUTANT VIOLATED ON THIS HARDWARE"
        }
    ))
}

fn row_name(s: &Scenario) -> String {
    let m = s.config.mutants.first().map_or("-".to_string(), |m| m.name().to_string());
    format!("{} {} {} {m}", s.workload.kind, s.workload.site, s.config.protocol.name())
}
