//! `pokesim exhaust`: exhaustive search of a small scenario ([`scenarios::exhaust`]) —
//! complete (every reachable state, vCPUs looping forever) by default, or bounded
//! (`--bound N`). The artifact of a violation records the scenario as searched — its
//! iteration limit, drain and tick budget included — so that `replay`, `trace` and `shrink`
//! accept it.
//!
//! Every flag acts in the mode it is given in, or is refused there ([`FLAGS`]): a search's
//! budget is honoured or refused, never ignored. A search that was cut — by its limit, or
//! (bounded) by executions that spent their tick budget — establishes no verdict (exit 4).

use clap::Args;
use scenarios::artifact::Artifact;
use scenarios::input::Origin;
use scenarios::Scenario;
use serde::Serialize;
use sim_core::search::Options;
use sim_core::{Outcome, Verdict, Violation, ViolationKind};

use scenarios::entry::ScenarioFile;

use super::{Saved, ScenarioReport};

mod shard;

use crate::args::{ArtifactOpts, OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;
pub use shard::merge as merge_search;

/// `pokesim exhaust`.
#[derive(Args)]
pub struct ExhaustArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Bounded mode: explore runs with at most this many preemptions plus stale-fetch choices
    /// [default: none — a complete search of every reachable state].
    #[arg(long, value_parser = clap::value_parser!(u64).range(0..=64))]
    bound: Option<u64>,
    /// Loop iterations per vCPU: a finite guest [default: the file's `iterations`; else the
    /// complete search lets vCPUs loop forever, and the bounded one stops them after 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    iterations: Option<u64>,
    /// Disable every reduction (local-step and quiet-handler-step merging and symmetry; sleep sets when bounded).
    #[arg(long)]
    no_reduction: bool,
    /// Disable symmetry reduction only.
    #[arg(long)]
    no_symmetry: bool,
    /// Complete mode: go on past violations and report every violation kind reachable.
    #[arg(long)]
    all_kinds: bool,
    /// Complete mode: give up after this many distinct states (the result says incomplete)
    /// [default: 50000000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_states: Option<u64>,
    /// Complete mode: search on this many threads at once; the result is the same for any
    /// number [default: the cores this process may use].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=sim_core::search::MAX_WORKERS as u64))]
    workers: Option<u64>,
    /// Complete mode: search only shard I of N (machines 0..N-1 together cover every state)
    /// and write its result next to the artifacts, for `pokesim merge` (docs/search.md).
    #[arg(long, value_name = "I/N")]
    shard: Option<scenarios::campaign::Shard>,
    /// Bounded mode: give up after this many executions (the result says incomplete)
    /// [default: 5000000].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    max_executions: Option<u64>,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
}

/// `--max-states` when not given.
const DEFAULT_MAX_STATES: u64 = 50_000_000;
/// `--max-executions` when not given.
const DEFAULT_MAX_EXECUTIONS: u64 = 5_000_000;

/// The search modes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    /// Every reachable state (no `--bound`).
    Complete,
    /// Every run within `--bound` deviations.
    Bounded,
}

impl Mode {
    /// The most patch rounds the mode can search, and why (measured on this project's 2-core
    /// machine, ftrace on 2 vCPUs).
    fn round_limit(self) -> (u32, &'static str) {
        match self {
            // The depth-first stack holds a saved machine state per transition of the path,
            // which grows with the rounds: 175 MB at 64 rounds, 1.4 GB at 256.
            Mode::Complete => (
                256,
                "a complete search keeps a saved machine state for every transition of its current path, \
                 and its memory grows faster than the rounds (ftrace on 2 vCPUs: 175 MB at 64 rounds, \
                 1.4 GB at 256); sample longer runs with explore",
            ),
            // Executions multiply with every round and are explored from the last round
            // backwards: past a few rounds the search only ever varies the last ones.
            Mode::Bounded => (
                100,
                "a bounded search re-executes the whole run for every decision sequence, the sequences \
                 multiply with every round (ftrace on 2 vCPUs at --bound 0: 72 executions for 1 round, \
                 36,864 for 4) and are explored from the last round backwards, so more rounds only \
                 lengthen each execution; search a few rounds, or sample longer runs with explore",
            ),
        }
    }
}

/// Where an exhaust flag acts: a flag given in a mode it does not act in is refused, with why.
struct FlagMode {
    flag: &'static str,
    /// Whether the command line gives it.
    given: fn(&ExhaustArgs) -> bool,
    /// The only mode it acts in.
    acts_in: Mode,
    /// Why it cannot act in the other.
    why: &'static str,
}

/// Every exhaust flag that acts in one mode only. The others — `--iterations`,
/// `--no-reduction`, the scenario flags other than `--runs`, `--seed`, `--strategy` and
/// `--depth` (refused in both), the artifact and output flags — act in both.
const FLAGS: [FlagMode; 7] = [
    FlagMode {
        flag: "--shard",
        given: |a| a.shard.is_some(),
        acts_in: Mode::Complete,
        why: "a bounded search's shards are not implemented: shard a complete search, or sample with explore --shard",
    },
    FlagMode {
        flag: "--workers",
        given: |a| a.workers.is_some(),
        acts_in: Mode::Complete,
        why: "a bounded search re-executes runs one after another on one thread",
    },
    FlagMode {
        flag: "--max-states",
        given: |a| a.max_states.is_some(),
        acts_in: Mode::Complete,
        why: "a bounded search counts executions, not stored states (use --max-executions)",
    },
    FlagMode {
        flag: "--all-kinds",
        given: |a| a.all_kinds,
        acts_in: Mode::Complete,
        why: "a bounded search stops at its first violation",
    },
    FlagMode {
        flag: "--no-symmetry",
        given: |a| a.no_symmetry,
        acts_in: Mode::Complete,
        why: "a bounded search applies no symmetry reduction (--no-reduction turns off its sleep sets)",
    },
    FlagMode {
        flag: "--max-executions",
        given: |a| a.max_executions.is_some(),
        acts_in: Mode::Bounded,
        why: "a complete search explores states, not executions (use --max-states)",
    },
    FlagMode {
        flag: "--ticks",
        given: |a| a.scenario.ticks.is_some(),
        acts_in: Mode::Bounded,
        why: "a complete search has no tick budget: it visits every reachable state however long the path \
              (its counterexample gets the budget it needs; bound the work with --max-states)",
    },
];

/// What either mode established, as the report shows it.
pub(super) struct Findings {
    mode: &'static str,
    complete: bool,
    states: u64,
    transitions: Option<u64>,
    executions: Option<u64>,
    /// Bounded: executions cut by their tick budget.
    exhausted: Option<u64>,
    /// Complete: the input's tick budget and the longer one its counterexample needs.
    raised_budget: Option<(u64, u64)>,
    shortest: Option<bool>,
    symmetric: bool,
    kinds: Vec<ViolationKind>,
    violation: Option<Outcome>,
    scenario: Scenario,
    seconds: f64,
}

#[derive(Serialize)]
struct Report<'a> {
    command: &'static str,
    mode: &'static str,
    verdict: &'a str,
    complete: bool,
    bound: Option<u64>,
    iterations: Option<u64>,
    reduction: bool,
    symmetry: bool,
    states: u64,
    transitions: Option<u64>,
    executions: Option<u64>,
    /// Bounded: executions cut by their tick budget (each leaves its tail unexplored).
    #[serde(skip_serializing_if = "Option::is_none")]
    exhausted: Option<u64>,
    /// Complete: the tick budget the counterexample's artifact records, when the scenario's
    /// own was too short for it.
    #[serde(skip_serializing_if = "Option::is_none")]
    budget: Option<u64>,
    seconds: f64,
    shortest: Option<bool>,
    /// Every violation kind found (with `--all-kinds`: every kind reachable).
    kinds: &'a [ViolationKind],
    violation: Option<&'a Violation>,
    scenario: ScenarioReport,
    overrides: &'a [String],
    #[serde(flatten)]
    saved: Saved,
}

/// `pokesim exhaust`.
pub fn exhaust(a: &ExhaustArgs) -> Result<Status, Failure> {
    refuse_flags(a)?;
    let (file, overrides, _) = a.scenario.scenario()?;
    let mut s = file.scenario.clone();
    if s.config.stepping != sim_core::Stepping::Single {
        // Refused, not ignored: the search's transitions already run every local step with
        // the step before it (its own reduction), and record one decision per tick.
        let from = if a.scenario.stepping.is_some() { "--stepping" } else { "stepping (the scenario file)" };
        return Err(Failure::Bad(format!(
            "{from}: exhaust takes no stepping: its transitions already merge local steps (DESIGN.md §2.9)"
        )));
    }
    s.config.max_iterations = a.iterations.or(s.config.max_iterations);
    refuse_rounds(a, mode(a), s.workload.rounds)?;
    if let Some(shard) = a.shard {
        return shard::shard(a, &file, &overrides, s, shard);
    }
    let f = match a.bound {
        Some(bound) => bounded(a, s, bound)?,
        None => complete(a, s)?,
    };
    conclude(&Shown::of(a), &file, &overrides, &f)
}

/// How a search's report is shown: the options it names, and where its artifact goes.
pub(super) struct Shown<'a> {
    pub(super) bound: Option<u64>,
    pub(super) reduction: bool,
    pub(super) all_kinds: bool,
    pub(super) artifacts: &'a ArtifactOpts,
    pub(super) output: OutputOpts,
}

impl<'a> Shown<'a> {
    fn of(a: &'a ExhaustArgs) -> Self {
        Shown {
            bound: a.bound,
            reduction: !a.no_reduction,
            all_kinds: a.all_kinds,
            artifacts: &a.artifacts,
            output: a.output,
        }
    }
}

/// Reports what a search found — text or JSON, the artifact of its violation — and its exit
/// status.
pub(super) fn conclude(
    how: &Shown<'_>,
    file: &ScenarioFile,
    overrides: &[String],
    f: &Findings,
) -> Result<Status, Failure> {
    let violation = f.violation.as_ref().and_then(|o| o.violation());
    let verdict = verdict(f, violation);
    let status = match (violation.map(|v| v.kind), f.complete) {
        (kind @ Some(_), _) => super::run::status(file.expect.met_by(kind), Verdict::Violation),
        (None, true) => super::run::status(file.expect.met_by(None), Verdict::Pass),
        (None, false) => Status::BudgetExhausted,
    };
    if !how.output.json {
        print_findings(how, f, violation, &verdict)?;
    }
    let saved = match (&f.violation, violation) {
        (Some(o), Some(v)) => {
            let artifact = Artifact::new(&file.name, &f.scenario, o);
            Saved::write(how.artifacts, artifact.as_ref(), &Artifact::file_name(&f.scenario, v))
        }
        _ => Saved::default(),
    };
    if how.output.json {
        out::json(&Report {
            command: "exhaust",
            mode: f.mode,
            verdict: &verdict,
            complete: f.complete,
            bound: how.bound,
            iterations: f.scenario.config.max_iterations,
            reduction: how.reduction,
            symmetry: f.symmetric,
            states: f.states,
            transitions: f.transitions,
            executions: f.executions,
            exhausted: f.exhausted,
            budget: f.raised_budget.map(|(_, needed)| needed),
            seconds: f.seconds,
            shortest: f.shortest,
            kinds: &f.kinds,
            violation,
            scenario: ScenarioReport::of(&f.scenario),
            overrides,
            saved,
        })?;
    } else {
        saved.print()?;
    }
    Ok(status)
}

/// The mode the command line asks for.
fn mode(a: &ExhaustArgs) -> Mode {
    if a.bound.is_some() {
        Mode::Bounded
    } else {
        Mode::Complete
    }
}

/// What the search established, in words: a violation, a complete search without one, or
/// no verdict (executions cut by their tick budget, or a limit reached).
fn verdict(f: &Findings, violation: Option<&Violation>) -> String {
    match (violation, f.complete, f.exhausted.filter(|&n| n > 0)) {
        (Some(_), _, _) => "violation".to_string(),
        (None, true, _) if f.mode == "complete" => "no violation: every reachable state visited".to_string(),
        (None, true, _) => "no violation within bound".to_string(),
        (None, false, Some(n)) => format!(
            "no verdict: {n} of {} executions spent their tick budget before their end (raise --ticks)",
            f.executions.unwrap_or(n)
        ),
        (None, false, None) => "incomplete: limit reached".to_string(),
    }
}

/// Refuses the flags exhaust takes in no mode (seeds and strategies), and every flag given in
/// a mode it does not act in ([`FLAGS`]).
fn refuse_flags(a: &ExhaustArgs) -> Result<(), Failure> {
    for (given, flag) in [
        (a.scenario.runs.is_some(), "--runs"),
        (a.scenario.seed.is_some(), "--seed"),
        (a.scenario.strategy.is_some(), "--strategy"),
        (a.scenario.depth.is_some(), "--depth"),
    ] {
        if given {
            return Err(Failure::Bad(format!(
                "{flag}: exhaust explores every schedule; it takes no seeds or strategy"
            )));
        }
    }
    if a.no_symmetry && a.no_reduction {
        return Err(Failure::Bad(
            "--no-symmetry: --no-reduction already disables every reduction, symmetry included".into(),
        ));
    }
    let mode = mode(a);
    for f in &FLAGS {
        if (f.given)(a) && f.acts_in != mode {
            let (flag, why) = (f.flag, f.why);
            let mode = if mode == Mode::Bounded { "bounded (--bound)" } else { "complete (no --bound)" };
            return Err(Failure::Bad(format!("{flag}: does not act in a {mode} search: {why}")));
        }
    }
    Ok(())
}

/// Refuses more rounds than the mode can search ([`Mode::round_limit`]), naming `--rounds` or
/// the scenario file's line and field.
fn refuse_rounds(a: &ExhaustArgs, mode: Mode, rounds: u32) -> Result<(), Failure> {
    let (limit, why) = mode.round_limit();
    if rounds <= limit {
        return Ok(());
    }
    let what = match (a.scenario.rounds, &a.scenario.file) {
        (None, Some(path)) => {
            // The file's own field: name its line.
            let spec = scenarios::file::read_spec(path)?;
            let line = match spec.workload.rounds.map(|g| g.origin) {
                Some(Origin::Line(n)) => format!(":{n}"),
                _ => String::new(),
            };
            format!("{}{line}: field `workload.rounds`: {rounds}", path.display())
        }
        _ => format!("--rounds {rounds}"),
    };
    Err(Failure::Bad(format!("{what}: this search takes at most {limit} rounds: {why}")))
}

fn bounded(a: &ExhaustArgs, mut s: Scenario, bound: u64) -> Result<Findings, Failure> {
    s.config.max_iterations = s.config.max_iterations.or(Some(1));
    let max = a.max_executions.unwrap_or(DEFAULT_MAX_EXECUTIONS);
    // The limit is a cap, not the expected work: the display counts without a denominator.
    let progress = Progress::new("exhaust", 0, "executions", a.output.quiet || a.output.json);
    let r = scenarios::exhaust::exhaust(&s, bound as usize, !a.no_reduction, max, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    Ok(Findings {
        mode: "bounded",
        complete: r.complete,
        states: r.states as u64,
        transitions: None,
        executions: Some(r.executions),
        exhausted: Some(r.exhausted),
        raised_budget: None,
        shortest: None,
        symmetric: false,
        kinds: r.violation.iter().filter_map(|o| o.violation()).map(|v| v.kind).collect(),
        violation: r.violation,
        scenario: r.scenario,
        seconds: r.elapsed.as_secs_f64(),
    })
}

/// `--workers` when not given: the cores this process may use.
fn default_workers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get()).min(sim_core::search::MAX_WORKERS)
}

/// The complete search's options from the command line.
fn options(a: &ExhaustArgs) -> Options {
    let reduce = !a.no_reduction;
    Options {
        merge_local: reduce,
        symmetry: reduce && !a.no_symmetry,
        max_states: a.max_states.unwrap_or(DEFAULT_MAX_STATES),
        shortest: true,
        all_kinds: a.all_kinds,
        workers: a.workers.map_or_else(default_workers, |w| w as usize),
        split: None,
    }
}

fn complete(a: &ExhaustArgs, s: Scenario) -> Result<Findings, Failure> {
    let progress = Progress::new("exhaust", 0, "states", a.output.quiet || a.output.json);
    let r = scenarios::exhaust::complete(&s, options(a), &|n| progress.set(n));
    progress.finish();
    Ok(complete_findings(r?))
}

/// What a complete search (on one machine, or merged from shards) established.
pub(super) fn complete_findings(r: scenarios::exhaust::CompleteResult) -> Findings {
    Findings {
        mode: "complete",
        complete: r.search.complete,
        states: r.search.states,
        transitions: Some(r.search.transitions),
        executions: None,
        exhausted: None,
        raised_budget: r.raised_budget,
        shortest: r.search.found.as_ref().map(|c| c.shortest),
        symmetric: r.search.symmetric,
        kinds: r.search.kinds.iter().copied().collect(),
        violation: r.violation,
        scenario: r.scenario,
        seconds: r.elapsed.as_secs_f64(),
    }
}

fn print_findings(how: &Shown<'_>, f: &Findings, violation: Option<&Violation>, verdict: &str) -> Result<(), Failure> {
    let secs = f.seconds.max(1e-9);
    out::line(format!("scenario   {}", ScenarioReport::line(&f.scenario)))?;
    let bound = how.bound.map_or("none (complete)".to_string(), |b| b.to_string());
    let iterations = f.scenario.config.max_iterations.map_or("unbounded".to_string(), |k| k.to_string());
    out::line(format!(
        "search     bound={bound} iterations={iterations} reduction={} symmetry={}",
        how.reduction, f.symmetric
    ))?;
    let work = match (f.transitions, f.executions) {
        (Some(t), _) => format!("{t} transitions"),
        (_, Some(e)) => format!("{e} executions"),
        _ => String::new(),
    };
    if f.shortest == Some(true) && !how.all_kinds {
        // The counts are the breadth-first search's, which found the counterexample.
        out::line(format!(
            "explored   {} distinct states, {work} breadth-first to the shortest counterexample; {secs:.1}s in all",
            f.states
        ))?;
    } else {
        out::line(format!(
            "explored   {} distinct states, {work} in {secs:.1}s ({:.0} states/s)",
            f.states,
            f.states as f64 / secs
        ))?;
    }
    if how.all_kinds {
        let kinds: Vec<&str> = f.kinds.iter().map(|k| k.name()).collect();
        out::line(format!("kinds      {}", if kinds.is_empty() { "none".to_string() } else { kinds.join(", ") }))?;
    }
    match violation {
        Some(v) => {
            out::line(format!("violation  {v}"))?;
            if let Some(shortest) = f.shortest {
                let how = if shortest { "a shortest counterexample" } else { "a counterexample (not proven shortest)" };
                out::line(format!("path       {how}"))?;
            }
        }
        None => out::line(format!("verdict    {verdict}"))?,
    }
    if let Some((given, needed)) = f.raised_budget {
        out::line(format!(
            "budget     the scenario's {given} ticks are too few for the counterexample: its artifact records {needed}"
        ))?;
    }
    Ok(())
}
