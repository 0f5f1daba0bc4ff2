//! `pokesim exhaust`: exhaustive search of a small scenario ([`scenarios::exhaust`]) —
//! complete (every reachable state, vCPUs looping forever) by default, or bounded
//! (`--bound N`). The artifact of a violation records the scenario as searched — its
//! iteration limit and drain included — so that `replay`, `trace` and `shrink` accept it.

use clap::Args;
use scenarios::artifact::Artifact;
use scenarios::Scenario;
use serde::Serialize;
use sim_core::search::Options;
use sim_core::{Outcome, Verdict, Violation, ViolationKind};

use super::{Saved, ScenarioReport};
use crate::args::{ArtifactOpts, OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

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
    /// Disable every reduction (local-step merging and symmetry; sleep sets when bounded).
    #[arg(long)]
    no_reduction: bool,
    /// Disable symmetry reduction only.
    #[arg(long)]
    no_symmetry: bool,
    /// Complete mode: go on past violations and report every violation kind reachable.
    #[arg(long)]
    all_kinds: bool,
    /// Complete mode: give up after this many distinct states (the result says incomplete).
    #[arg(long, default_value_t = 50_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_states: u64,
    /// Bounded mode: give up after this many executions (the result says incomplete).
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_executions: u64,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
}

/// What either mode established, as the report shows it.
struct Findings {
    mode: &'static str,
    complete: bool,
    states: u64,
    transitions: Option<u64>,
    executions: Option<u64>,
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
    verdict: &'static str,
    complete: bool,
    bound: Option<u64>,
    iterations: Option<u64>,
    reduction: bool,
    symmetry: bool,
    states: u64,
    transitions: Option<u64>,
    executions: Option<u64>,
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
    let (file, overrides, _) = a.scenario.scenario()?;
    let mut s = file.scenario.clone();
    s.config.max_iterations = a.iterations.or(s.config.max_iterations);
    let f = match a.bound {
        Some(bound) => bounded(a, s, bound)?,
        None => complete(a, s)?,
    };
    let violation = f.violation.as_ref().and_then(|o| o.violation());
    let verdict = match (violation, f.complete) {
        (Some(_), _) => "violation",
        (None, true) if f.mode == "complete" => "no violation: every reachable state visited",
        (None, true) => "no violation within bound",
        (None, false) => "incomplete: limit reached",
    };
    let status = match (violation.map(|v| v.kind), f.complete) {
        (kind @ Some(_), _) => super::run::status(file.expect.met_by(kind), Verdict::Violation),
        (None, true) => super::run::status(file.expect.met_by(None), Verdict::Pass),
        (None, false) => Status::BudgetExhausted,
    };
    if !a.output.json {
        print_findings(a, &f, violation, verdict)?;
    }
    let saved = match (&f.violation, violation) {
        (Some(o), Some(v)) => {
            let artifact = Artifact::new(&file.name, &f.scenario, o);
            Saved::write(&a.artifacts, artifact.as_ref(), &Artifact::file_name(&f.scenario, v))
        }
        _ => Saved::default(),
    };
    if a.output.json {
        out::json(&Report {
            command: "exhaust",
            mode: f.mode,
            verdict,
            complete: f.complete,
            bound: a.bound,
            iterations: f.scenario.config.max_iterations,
            reduction: !a.no_reduction,
            symmetry: f.symmetric,
            states: f.states,
            transitions: f.transitions,
            executions: f.executions,
            seconds: f.seconds,
            shortest: f.shortest,
            kinds: &f.kinds,
            violation,
            scenario: ScenarioReport::of(&f.scenario),
            overrides: &overrides,
            saved,
        })?;
    } else {
        saved.print()?;
    }
    Ok(status)
}

fn bounded(a: &ExhaustArgs, mut s: Scenario, bound: u64) -> Result<Findings, Failure> {
    s.config.max_iterations = s.config.max_iterations.or(Some(1));
    let progress = Progress::new("exhaust", a.max_executions, "executions", a.output.quiet || a.output.json);
    let r = scenarios::exhaust::exhaust(&s, bound as usize, !a.no_reduction, a.max_executions, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    Ok(Findings {
        mode: "bounded",
        complete: r.complete,
        states: r.states as u64,
        transitions: None,
        executions: Some(r.executions),
        shortest: None,
        symmetric: false,
        kinds: r.violation.iter().filter_map(|o| o.violation()).map(|v| v.kind).collect(),
        violation: r.violation,
        scenario: r.scenario,
        seconds: r.elapsed.as_secs_f64(),
    })
}

fn complete(a: &ExhaustArgs, s: Scenario) -> Result<Findings, Failure> {
    let reduce = !a.no_reduction;
    let opts = Options {
        merge_local: reduce,
        symmetry: reduce && !a.no_symmetry,
        max_states: a.max_states,
        shortest: true,
        all_kinds: a.all_kinds,
    };
    let progress = Progress::new("exhaust", 0, "states", a.output.quiet || a.output.json);
    let r = scenarios::exhaust::complete(&s, opts, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    Ok(Findings {
        mode: "complete",
        complete: r.search.complete,
        states: r.search.states,
        transitions: Some(r.search.transitions),
        executions: None,
        shortest: r.search.found.as_ref().map(|c| c.shortest),
        symmetric: r.search.symmetric,
        kinds: r.search.kinds.iter().copied().collect(),
        violation: r.violation,
        scenario: r.scenario,
        seconds: r.elapsed.as_secs_f64(),
    })
}

fn print_findings(a: &ExhaustArgs, f: &Findings, violation: Option<&Violation>, verdict: &str) -> Result<(), Failure> {
    let secs = f.seconds.max(1e-9);
    out::line(format!("scenario   {}", ScenarioReport::line(&f.scenario)))?;
    let bound = a.bound.map_or("none (complete)".to_string(), |b| b.to_string());
    let iterations = f.scenario.config.max_iterations.map_or("unbounded".to_string(), |k| k.to_string());
    out::line(format!(
        "search     bound={bound} iterations={iterations} reduction={} symmetry={}",
        !a.no_reduction, f.symmetric
    ))?;
    let work = match (f.transitions, f.executions) {
        (Some(t), _) => format!("{t} transitions"),
        (_, Some(e)) => format!("{e} executions"),
        _ => String::new(),
    };
    out::line(format!(
        "explored   {} distinct states, {work} in {secs:.1}s ({:.0} states/s)",
        f.states,
        f.states as f64 / secs
    ))?;
    if a.all_kinds {
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
    Ok(())
}
