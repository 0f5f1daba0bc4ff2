//! `pokesim hw`: a scenario's protocol on this machine's real CPUs (`scenarios::hardware`,
//! the `hw` crate), or with `--matrix` the ftrace and static_call mutants at three site
//! placements next to what each fetch preset predicts. The host is probed first: a host that
//! cannot (not x86-64 Linux, fewer than 2 CPUs, no membarrier SYNC_CORE, no seccomp) is refused
//! with the reason (exit 2); so is a scenario whose code misbehaves when run alone
//! (`hw::dryrun`), and every flag that would not act. An hw run that established nothing is
//! no verdict (exit 4). A hardware run is not deterministic: the CPUs interleave. A protocol
//! compiled from C (`--protocol-c`, `--protocol-source FILE.c`) runs its own linked image
//! natively; the reports name the file and its build hash (`c_file`, `c_build`).
//!
//! For scripts, every report (text and JSON, each `--matrix` row, and the summary object that
//! ends `--matrix --json`) says what it was held to (`expect`), whether it met it
//! (`expected`), the reason for the exit status in one sentence (`reason`) and the scenario
//! file's fields that did not apply (`not_applied`). Rates are violations per 10⁵ rounds, the
//! README's unit; a vCPU is one guest thread, and `vcpus_asked` says how many the scenario
//! asked for when fewer ran.

use std::time::Duration;

use clap::Args;
use hw::{Host, HwReport, Limits};
use scenarios::entry::Expectation;
use scenarios::hardware::{self, Prediction};
use scenarios::Scenario;
use serde::Serialize;
use sim_core::{Round, ViolationKind};

use super::ScenarioReport;
use crate::args::{OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// Rounds when `--rounds` is not given.
const DEFAULT_ROUNDS: u64 = 100_000;
/// Rounds per `--matrix` row when `--rounds` is not given.
const DEFAULT_MATRIX_ROUNDS: u64 = 20_000;
/// Events the text report shows (the JSON report has every one the hw run kept).
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
    mut_arg("ticks", |a| a.hide(true))
)]
pub struct HwArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Stop after this many seconds (per row with --matrix) even if fewer rounds ran, inside a
    /// round too; an hw run that completed no round has no verdict (exit 4).
    #[arg(long, value_name = "SECONDS", value_parser = super::run::seconds, allow_negative_numbers = true)]
    time: Option<Duration>,
    /// Guest threads, one per vCPU, at most the CPUs this process may use [default: the
    /// scenario's vCPUs, up to one per CPU beside the patcher's; with --matrix, one per CPU
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

/// The JSON object of one hw run (or one `--matrix` row).
#[derive(Serialize)]
struct Report {
    command: &'static str,
    host: HostReport,
    scenario: ScenarioReport,
    /// The vCPUs the scenario asked for; `scenario.cpus` is how many ran, one guest thread each.
    vcpus_asked: usize,
    /// What the hw run was held to: the scenario's `expect`; `null` for a `--matrix` row of a
    /// harmful mutant, which is observed, not judged.
    expect: Option<Expectation>,
    /// Whether the hw run met `expect` (`null` with no expectation).
    expected: Option<bool>,
    /// The reason for the exit status (for a `--matrix` row: for its part in it), one sentence.
    reason: String,
    /// The scenario file's fields that did not apply on hardware.
    not_applied: Vec<&'static str>,
    /// With a protocol compiled from C, run natively: the file as labels name it
    /// (`linux-5.5.c`, or the user's file name) and its build hash.
    #[serde(skip_serializing_if = "Option::is_none")]
    c_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    c_build: Option<String>,
    rounds: u64,
    passes: u64,
    stores: u64,
    syncs: u64,
    traps: u64,
    emulated: u64,
    kprobe_hits: u64,
    invariant_checks: u64,
    violations: Vec<KindCount>,
    /// Violations per 10⁵ rounds (`hardware::RATE_ROUNDS`), the unit of the README's tables.
    violations_per_100k_rounds: f64,
    events: Vec<EventReport>,
    guest_cpus: Vec<Option<usize>>,
    stopped: Option<String>,
    no_verdict: Option<String>,
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
    /// The vCPU (its guest thread).
    cpu: usize,
    /// The hw run's round, or `"drain"` after its last.
    round: Round,
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

/// The C file a scenario's protocol was compiled from, as labels name it: `linux-5.5.c` for a
/// version's built-in file, else the user's file name.
fn c_file(s: &Scenario) -> Option<String> {
    let c = s.config.compiled.as_ref()?;
    Some(match c.builtin {
        true => format!("{}.c", s.config.protocol.name()),
        false => c.image.source.rsplit('/').next().unwrap_or(&c.image.source).to_string(),
    })
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

/// How an hw run was judged: its expectation (none for an observed `--matrix` row), whether
/// it met it, the reason, and the fields that did not apply.
struct Judged {
    vcpus_asked: usize,
    expect: Option<Expectation>,
    expected: Option<bool>,
    reason: String,
    not_applied: Vec<&'static str>,
}

impl Judged {
    /// A single hw run held to `expect`.
    fn single(vcpus_asked: usize, expect: Expectation, r: &HwReport, not_applied: Vec<&'static str>) -> Self {
        let expected = status(expect, r) == Status::Expected;
        Self {
            vcpus_asked,
            expect: Some(expect),
            expected: Some(expected),
            reason: hardware::reason(expect, r),
            not_applied,
        }
    }

    /// A `--matrix` row: a kernel protocol or benign mutant must pass; a harmful mutant is
    /// observed.
    fn row(s: &Scenario, r: &HwReport) -> Self {
        if must_pass(s) {
            return Self::single(s.config.cpus, Expectation::Pass, r, Vec::new());
        }
        let reason = match (&r.no_verdict, r.total_violations()) {
            (Some(why), 0) => format!("no verdict: {why}"),
            _ => format!(
                "no expectation (a mutant that may fail is observed); saw {} in {} rounds",
                hardware::seen(r),
                r.rounds
            ),
        };
        Self { vcpus_asked: s.config.cpus, expect: None, expected: None, reason, not_applied: Vec::new() }
    }
}

fn report(host: &Host, s: &Scenario, r: &HwReport, predictions: &[Prediction], judged: Judged) -> Report {
    Report {
        command: "hw",
        host: host_report(host),
        scenario: ScenarioReport::of(s),
        vcpus_asked: judged.vcpus_asked,
        expect: judged.expect,
        expected: judged.expected,
        reason: judged.reason,
        not_applied: judged.not_applied,
        c_file: c_file(s),
        c_build: s.config.compiled.as_ref().map(|c| c.image.hash.clone()),
        rounds: r.rounds,
        passes: r.passes,
        stores: r.stores,
        syncs: r.syncs,
        traps: r.traps,
        emulated: r.emulated,
        kprobe_hits: r.kprobe_hits,
        invariant_checks: r.checks,
        violations: r.violations.iter().map(|&(kind, count)| KindCount { kind, count }).collect(),
        violations_per_100k_rounds: hardware::rate(r),
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
        no_verdict: r.no_verdict.clone(),
        seconds: r.elapsed.as_secs_f64(),
        predictions: predictions
            .iter()
            .map(|p| PredictionReport { preset: p.preset, caught: p.caught, runs: p.runs })
            .collect(),
    }
}

/// What a scenario flag is to `pokesim hw`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Use {
    /// Describes the scenario a single hw run runs (`--matrix` runs its own rows).
    Scenario,
    /// The rounds: of the hw run, or of each `--matrix` row.
    Rounds,
    /// Describes a simulation: no scheduler, seed, fetch model, memory model or tick budget on hardware.
    Simulation,
}

/// Every scenario flag given, with what it is to `pokesim hw`. `ScenarioArgs` is destructured
/// whole, so a flag added to it does not compile until it is classified here.
fn given_flags(a: &ScenarioArgs) -> Vec<(&'static str, Use)> {
    let ScenarioArgs {
        file,
        workload,
        protocol,
        protocol_source,
        protocol_c,
        mutants,
        cpus,
        seed,
        runs,
        strategy,
        depth,
        preset,
        fetch,
        stores,
        non_monotone,
        staleness,
        site,
        rounds,
        sites,
        order,
        no_tail,
        kprobe,
        kprobe_at,
        kernel,
        memory,
        irq,
        unsafe_multi_insn,
        stepping,
        ticks,
        expect,
    } = a;
    use Use::{Rounds, Scenario, Simulation};
    let flags = [
        ("a scenario file", file.is_some(), Scenario),
        ("--workload", workload.is_some(), Scenario),
        ("--protocol", protocol.is_some(), Scenario),
        // A protocol compiled from C runs natively (its linked image).
        ("--protocol-source", protocol_source.is_some(), Scenario),
        ("--protocol-c", *protocol_c, Scenario),
        ("--mutant", !mutants.is_empty(), Scenario),
        ("--cpus", cpus.is_some(), Scenario),
        ("--seed", seed.is_some(), Simulation),
        ("--runs", runs.is_some(), Simulation),
        ("--strategy", strategy.is_some(), Simulation),
        ("--depth", depth.is_some(), Simulation),
        ("--preset", preset.is_some(), Simulation),
        ("--fetch", fetch.is_some(), Simulation),
        ("--stores", stores.is_some(), Scenario),
        ("--non-monotone", *non_monotone, Simulation),
        ("--staleness", staleness.is_some(), Simulation),
        ("--site", site.is_some(), Scenario),
        ("--rounds", rounds.is_some(), Rounds),
        ("--sites", sites.is_some(), Scenario),
        ("--order", order.is_some(), Scenario),
        ("--no-tail", *no_tail, Scenario),
        ("--kprobe", kprobe.is_some(), Scenario),
        ("--kprobe-at", !kprobe_at.is_empty(), Scenario),
        ("--kernel", !kernel.is_empty(), Scenario),
        // Real CPUs have the memory model they have (x86-TSO).
        ("--memory", memory.is_some(), Simulation),
        ("--unsafe-multi-insn", *unsafe_multi_insn, Scenario),
        ("--stepping", stepping.is_some(), Simulation),
        ("--ticks", ticks.is_some(), Simulation),
        ("--expect", expect.is_some(), Scenario),
    ];
    let given = flags.into_iter().filter(|(_, given, _)| *given).map(|(flag, _, u)| (flag, u));
    // Real CPUs take the interrupts they take; the fetch model is the CPU's own.
    given.chain(irq.given().into_iter().map(|f| (f, Simulation))).collect()
}

/// The flags that describe a simulation, not an hw run: refused rather than ignored.
fn refuse_simulation_flags(a: &ScenarioArgs) -> Result<(), Failure> {
    let sim: Vec<&str> = given_flags(a).into_iter().filter(|(_, u)| *u == Use::Simulation).map(|(f, _)| f).collect();
    if sim.is_empty() {
        return Ok(());
    }
    Err(Failure::Bad(format!(
        "{} {} not apply to `pokesim hw`: on hardware the CPUs interleave and fetch as they do \
         (no scheduler, seed, fetch model, memory model or tick budget: real CPUs are x86-TSO)",
        sim.join(", "),
        if sim.len() == 1 { "does" } else { "do" }
    )))
}

/// `--matrix` runs its own rows: every scenario flag but `--rounds` would not act on them.
fn refuse_matrix_flags(a: &ScenarioArgs) -> Result<(), Failure> {
    let unused: Vec<&str> = given_flags(a).into_iter().filter(|(_, u)| *u != Use::Rounds).map(|(f, _)| f).collect();
    if unused.is_empty() {
        return Ok(());
    }
    Err(Failure::Bad(format!(
        "--matrix runs its own rows (ftrace and static_call at aligned, cross16 and cross64 sites, linux-5.5, \
         linux-6.16 and its mutants, byte stores): {} would not act on them (with --matrix only --rounds, --time, \
         --threads, --predict-runs, --json and --quiet apply)",
        unused.join(", ")
    )))
}

/// Refuses more guest threads than can make progress: every guest spins, and each
/// `text_poke_sync()` waits for every one of them to run, so threads beyond the CPUs this
/// process may use only wait for each other's time slices (and 256 of them hang a round).
fn check_threads(threads: Option<u64>, host: &Host) -> Result<(), Failure> {
    match threads {
        Some(t) if t > host.cpus.len() as u64 => Err(Failure::Bad(format!(
            "--threads {t}: at most {n} guest threads can make progress here (this process may use {n} CPUs, \
             one of them the patcher's)",
            n = host.cpus.len()
        ))),
        _ => Ok(()),
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
    if a.matrix {
        refuse_matrix_flags(&a.scenario)?;
    }
    let host = hw::probe().map_err(|r| Failure::Bad(format!("pokesim hw: this host cannot: {r}")))?;
    check_threads(a.threads, &host)?;
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
    let shared = fewer_vcpus_note(s.config.cpus, asked, host.cpus.len() - 1);
    let not_applied = match &a.scenario.file {
        Some(f) => hardware::not_applied(&scenarios::file::read_spec(f).map_err(Failure::from)?),
        None => Vec::new(),
    };
    let limits = Limits { rounds: rounds.unwrap_or(DEFAULT_ROUNDS), time: a.time, ..Limits::default() };
    let progress = Progress::new("hw", limits.rounds, "rounds", a.output.quiet || a.output.json);
    let r = run_one(&s, &host, &limits, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    let status = status(file.expect, &r);
    let judged = Judged::single(asked, file.expect, &r, not_applied);
    if a.output.json {
        out::json(&report(&host, &s, &r, &[], judged))?;
    } else {
        let unused = not_applied_note(&judged.not_applied);
        let notes: Vec<String> =
            shared.into_iter().chain(unused).chain(overrides.iter().map(|o| format!("overrides  {o}"))).collect();
        print_one(&host, &s, &r, &notes, &judged, status)?;
    }
    Ok(status)
}

/// The text line for an hw run that runs fewer vCPUs than the scenario asks: `ran` of `asked`,
/// with `free` host CPUs beside the patcher's.
fn fewer_vcpus_note(ran: usize, asked: usize, free: usize) -> Option<String> {
    (ran != asked).then(|| {
        format!(
            "cpus       {ran} vCPU(s) of the {asked} asked, one guest thread each: {free} host CPU(s) free beside \
             the patcher's (--threads T to run more, sharing host CPUs)"
        )
    })
}

/// The text line naming the scenario file's fields that did not apply on hardware.
fn not_applied_note(fields: &[&str]) -> Option<String> {
    let (verb, they) = if fields.len() == 1 { ("does", "it describes") } else { ("do", "they describe") };
    (!fields.is_empty()).then(|| {
        format!(
            "n/a        the file's {} {verb} not apply: {they} simulator runs (on hardware the CPUs interleave \
             and fetch as they do)",
            fields.join(", ")
        )
    })
}

fn run_one(s: &Scenario, host: &Host, limits: &Limits, progress: &(dyn Fn(u64) + Sync)) -> Result<HwReport, Failure> {
    hardware::run_with_progress(s, host, limits, progress).map_err(|e| match e {
        hardware::HwError::Refused(r) => Failure::Bad(format!("pokesim hw: {r}")),
        hardware::HwError::Scenario(e) => e.into(),
    })
}

/// Exit 4 if the hw run saw no violation and established nothing ([`HwReport::no_verdict`]);
/// else 0 if the hardware agreed with the scenario's expectation ([`hardware::meets`]), 1
/// otherwise.
fn status(expect: Expectation, r: &HwReport) -> Status {
    if r.total_violations() == 0 && r.no_verdict.is_some() {
        Status::BudgetExhausted
    } else if hardware::meets(expect, r) {
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
    judged: &Judged,
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
    if let (Some(file), Some(c)) = (c_file(s), &s.config.compiled) {
        out::line(format!(
            "protocol   the C file {file} (build {}), its linked image run natively: its patcher on the patcher's \
             thread, {}() from the guests' SIGTRAP handler",
            c.image.hash, c.entries.handler.1
        ))?;
    }
    for n in notes {
        out::line(n)?;
    }
    let cpus: Vec<String> = r
        .guests
        .iter()
        .enumerate()
        .map(|(v, g)| format!("vCPU {v} on CPU {}", g.cpu.map_or("-".into(), |c| c.to_string())))
        .collect();
    out::line(format!("threads    the patcher on CPU {}; one guest thread per vCPU: {}", h.cpus[0], cpus.join(", ")))?;
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
            "event      {} {} vCPU {}: {} at {:#x}: written [{}] fetched [{}]: {}",
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
    let expect = judged.expect.unwrap_or(Expectation::Pass);
    out::line(format!("verdict    {}", verdict(r, expect, status)))?;
    let met = match (status, judged.expected) {
        (Status::BudgetExhausted, _) => "no verdict",
        (_, Some(true)) => "met",
        _ => "NOT met",
    };
    out::line(format!("expected   {expect} ({met})"))?;
    out::line(format!("reason     {} (exit {})", judged.reason, exit_code(status)))
}

/// The process exit status of `status`, as the reason line names it.
fn exit_code(status: Status) -> u8 {
    match status {
        Status::Expected => 0,
        Status::Unexpected => 1,
        Status::BudgetExhausted => 4,
    }
}

fn verdict(r: &HwReport, expect: Expectation, status: Status) -> String {
    if let (Some(why), true) = (&r.no_verdict, r.violations.is_empty()) {
        return format!("none: {why} (expect {expect}; exit 4)");
    }
    let seen = if r.violations.is_empty() {
        format!("no violation in {} rounds on this hardware", r.rounds)
    } else {
        let kinds: Vec<String> = r.violations.iter().map(|(k, n)| format!("{} {n}", k.name())).collect();
        format!("VIOLATIONS {} ({:.1} per 10⁵ rounds)", kinds.join(", "), hardware::rate(r))
    };
    let agrees = if status == Status::Expected { "as expected" } else { "NOT as expected" };
    format!("{seen}; {agrees} (expect {expect})")
}

/// `pokesim hw --matrix`.
fn matrix(a: &HwArgs, host: &Host, rounds: Option<u64>) -> Result<Status, Failure> {
    let threads = a.threads.map_or(host.cpus.len().saturating_sub(1).max(1), |t| t as usize);
    let limits = Limits { rounds: rounds.unwrap_or(DEFAULT_MATRIX_ROUNDS), time: a.time, ..Limits::default() };
    let runs = a.predict_runs.unwrap_or(DEFAULT_PREDICT_RUNS);
    let rows = hardware::matrix_scenarios(threads);
    if !a.output.json {
        out::line(format!("host       {}", host_line(host)))?;
        out::line(format!(
            "matrix     {} rows × {} rounds on hardware ({} vCPU(s), one guest thread each; byte stores); predictions: {runs} simulator runs per preset",
            rows.len(),
            limits.rounds,
            threads
        ))?;
        out::line(matrix_header())?;
    }
    let (mut reports, mut predictions) = (Vec::new(), Vec::new());
    let total = rows.len() as u64 * limits.rounds;
    let progress = Progress::new("hw --matrix", total, "rounds", a.output.quiet || a.output.json);
    for (i, s) in rows.iter().enumerate() {
        let before = i as u64 * limits.rounds;
        let r = run_one(s, host, &limits, &|n| progress.set(before + n));
        let r = r.inspect_err(|_| progress.finish())?;
        let p = hardware::predict(s, runs).inspect_err(|_| progress.finish())?;
        progress.set(before + limits.rounds);
        if a.output.json {
            out::json(&report(host, s, &r, &p, Judged::row(s, &r)))?;
        } else {
            out::line(matrix_row(s, &r, &p))?;
        }
        reports.push(r);
        predictions.push(p);
    }
    progress.finish();
    let status = matrix_status(&rows, &reports);
    let judged = summary(&rows, &reports, &predictions, limits.rounds);
    if a.output.json {
        out::json(&judged)?;
    } else {
        print_summary(&rows, &reports, &predictions)?;
        out::line(format!("reason     {} (exit {})", judged.reason, exit_code(status)))?;
    }
    Ok(status)
}

fn matrix_header() -> String {
    format!(
        "{:<12} {:<8} {:<10} {:<24} {:>9} {:>9} {:>8} {:>15}  {:<28}  {}",
        "workload",
        "site",
        "protocol",
        "mutant",
        "rounds",
        "traps",
        "seen",
        "per 10⁵ rounds",
        "kinds",
        "predicted by pessimistic block16 line64 snapshot"
    )
}

fn matrix_row(s: &Scenario, r: &HwReport, p: &[Prediction]) -> String {
    let mutant = s.config.mutants.first().map_or("-".to_string(), |m| m.name().to_string());
    let kinds: Vec<String> = r.violations.iter().map(|(k, n)| format!("{}:{n}", k.name())).collect();
    let predicted: Vec<&str> = p.iter().map(|p| if p.caught.is_some() { "caught" } else { "-" }).collect();
    let stopped = match (&r.no_verdict, &r.stopped) {
        (Some(why), _) => format!("  (no verdict: {why})"),
        (None, Some(w)) => format!("  (stopped: {w})"),
        (None, None) => String::new(),
    };
    format!(
        "{:<12} {:<8} {:<10} {:<24} {:>9} {:>9} {:>8} {:>15.1}  {:<28}  {}{stopped}",
        s.workload.kind.to_string(),
        s.workload.site.to_string(),
        s.config.protocol.name(),
        mutant,
        r.rounds,
        r.traps,
        r.total_violations(),
        hardware::rate(r),
        if kinds.is_empty() { "-".to_string() } else { kinds.join(" ") },
        predicted.join(" ")
    )
}

/// Unexpected if an unmutated protocol or a benign mutant showed a violation on hardware; else
/// no verdict (exit 4) if a row established nothing ([`HwReport::no_verdict`]).
fn matrix_status(rows: &[Scenario], reports: &[HwReport]) -> Status {
    let failed = rows.iter().zip(reports).any(|(s, r)| must_pass(s) && r.total_violations() > 0);
    if failed {
        Status::Unexpected
    } else if reports.iter().any(|r| r.no_verdict.is_some()) {
        Status::BudgetExhausted
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
    let compared = reports.iter().filter(|r| r.no_verdict.is_none()).count();
    if compared == 0 {
        out::line("preset     none compared: no row established anything on this hardware")?;
    }
    for c in hardware::consistency(reports, predictions).into_iter().filter(|_| compared > 0) {
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
    let blank = reports.iter().filter(|r| r.no_verdict.is_some()).count();
    out::line(format!(
        "verdict    {}",
        match status {
            Status::Expected => "the kernel protocols and the benign mutants showed no violation on this hardware".into(),
            Status::BudgetExhausted => format!(
                "none: {blank} row(s) established nothing (see their \"no verdict\"); exit 4 — give more --time or --rounds"
            ),
            Status::Unexpected => "A KERNEL PROTOCOL OR BENIGN MUTANT VIOLATED ON THIS HARDWARE".into(),
        }
    ))
}

/// True if a `--matrix` row must show no violation: a kernel protocol or a benign mutant.
fn must_pass(s: &Scenario) -> bool {
    s.config.mutants.iter().all(|m| m.benign())
}

/// What `--matrix` expects, in words.
const MATRIX_EXPECT: &str = "the kernel protocols and the benign mutants pass";

/// The last JSON object of `--matrix --json`: the whole matrix judged, with the same fields as
/// a single hw run's (`expect`, `expected`, `reason`, `not_applied`).
#[derive(Serialize)]
struct MatrixSummary {
    command: &'static str,
    summary: bool,
    rows: usize,
    rounds_per_row: u64,
    expect: &'static str,
    expected: bool,
    reason: String,
    not_applied: Vec<&'static str>,
    /// Rows that must pass and showed a violation.
    failed: Vec<String>,
    /// Rows that established nothing.
    no_verdict: Vec<String>,
    presets: Vec<PresetReport>,
}

#[derive(Serialize)]
struct PresetReport {
    preset: &'static str,
    /// Rows whose hardware violations the preset did not predict.
    contradicted_by: Vec<String>,
    /// How many rows it predicted a violation for that the hardware did not show.
    unseen: usize,
}

fn summary(rows: &[Scenario], reports: &[HwReport], predictions: &[Vec<Prediction>], rounds: u64) -> MatrixSummary {
    let names = |keep: &dyn Fn(&Scenario, &HwReport) -> bool| -> Vec<String> {
        rows.iter().zip(reports).filter(|(s, r)| keep(s, r)).map(|(s, _)| row_name(s)).collect()
    };
    let failed = names(&|s, r| must_pass(s) && r.total_violations() > 0);
    let blank = names(&|_, r| r.no_verdict.is_some());
    let status = matrix_status(rows, reports);
    let reason = match status {
        Status::Unexpected => format!("expected that {MATRIX_EXPECT}; saw violations in {}", failed.join("; ")),
        Status::BudgetExhausted => {
            format!("no verdict: {} row(s) established nothing: {}", blank.len(), blank.join("; "))
        }
        Status::Expected => format!("expected that {MATRIX_EXPECT}; they showed no violation in {rounds} rounds each"),
    };
    let compared = reports.iter().any(|r| r.no_verdict.is_none());
    let presets = hardware::consistency(reports, predictions)
        .into_iter()
        .filter(|_| compared)
        .map(|c| PresetReport {
            preset: c.preset,
            contradicted_by: c.contradicted_by.iter().map(|&i| row_name(&rows[i])).collect(),
            unseen: c.unseen.len(),
        })
        .collect();
    MatrixSummary {
        command: "hw",
        summary: true,
        rows: rows.len(),
        rounds_per_row: rounds,
        expect: MATRIX_EXPECT,
        expected: status == Status::Expected,
        reason,
        not_applied: Vec::new(),
        failed,
        no_verdict: blank,
        presets,
    }
}

fn row_name(s: &Scenario) -> String {
    let m = s.config.mutants.first().map_or("-".to_string(), |m| m.name().to_string());
    format!("{} {} {} {m}", s.workload.kind, s.workload.site, s.config.protocol.name())
}
