//! `pokesim exhaust`: bounded exhaustive search of a small scenario ([`scenarios::exhaust`]).
//! The artifact of a violation records the scenario as searched — its iteration limit and
//! drain included — so that `replay`, `trace` and `shrink` accept it.

use clap::Args;
use scenarios::artifact::Artifact;
use serde::Serialize;
use sim_core::{Verdict, Violation};

use super::{Saved, ScenarioReport};
use crate::args::{ArtifactOpts, OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// `pokesim exhaust`.
#[derive(Args)]
pub struct ExhaustArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Preemptions plus stale-fetch choices allowed per run.
    #[arg(long, default_value_t = 2, value_parser = clap::value_parser!(u64).range(0..=64))]
    bound: u64,
    /// Loop iterations per vCPU: a finite guest [default: the file's `iterations`, else 1].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    iterations: Option<u64>,
    /// Disable the sleep-set reduction.
    #[arg(long)]
    no_reduction: bool,
    /// Give up after this many executions (the result then says it is incomplete).
    #[arg(long, default_value_t = 5_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_executions: u64,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
}

#[derive(Serialize)]
struct Report<'a> {
    command: &'static str,
    verdict: &'static str,
    complete: bool,
    bound: u64,
    iterations: Option<u64>,
    reduction: bool,
    executions: u64,
    states: usize,
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
        (a.scenario.strategy.is_some() || a.scenario.depth.is_some(), "--strategy"),
    ] {
        if given {
            return Err(Failure::Bad(format!(
                "{flag}: exhaust explores every schedule; it takes no seeds or strategy"
            )));
        }
    }
    let (file, overrides, _) = a.scenario.scenario()?;
    let mut s = file.scenario.clone();
    s.config.max_iterations = a.iterations.or(s.config.max_iterations).or(Some(1));
    let progress = Progress::new("exhaust", a.max_executions, "executions", a.output.quiet || a.output.json);
    let r = scenarios::exhaust::exhaust(&s, a.bound as usize, !a.no_reduction, a.max_executions, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    let violation = r.violation.as_ref().and_then(|o| o.violation());
    let verdict = match (violation, r.complete) {
        (Some(_), _) => "violation",
        (None, true) => "no violation within bound",
        (None, false) => "incomplete: execution limit reached",
    };
    let status = match (violation.map(|v| v.kind), r.complete) {
        (kind @ Some(_), _) => super::run::status(file.expect.met_by(kind), Verdict::Violation),
        (None, true) => super::run::status(file.expect.met_by(None), Verdict::Pass),
        (None, false) => Status::BudgetExhausted,
    };
    if !a.output.json {
        let secs = r.elapsed.as_secs_f64().max(1e-9);
        out::line(format!("scenario   {}", ScenarioReport::line(&r.scenario)))?;
        out::line(format!(
            "search     bound={} iterations={} reduction={}",
            a.bound,
            r.scenario.config.max_iterations.unwrap_or(0),
            !a.no_reduction
        ))?;
        out::line(format!(
            "explored   {} executions, {} distinct states in {secs:.1}s ({:.0} executions/s)",
            r.executions,
            r.states,
            r.executions as f64 / secs
        ))?;
        match violation {
            Some(v) => out::line(format!("violation  {v}"))?,
            None => out::line(format!("verdict    {verdict}"))?,
        }
    }
    let saved = match (&r.violation, violation) {
        (Some(o), Some(v)) => {
            let artifact = Artifact::new(&file.name, &r.scenario, o);
            Saved::write(&a.artifacts, artifact.as_ref(), &Artifact::file_name(&r.scenario, v))
        }
        _ => Saved::default(),
    };
    if a.output.json {
        out::json(&Report {
            command: "exhaust",
            verdict,
            complete: r.complete,
            bound: a.bound,
            iterations: r.scenario.config.max_iterations,
            reduction: !a.no_reduction,
            executions: r.executions,
            states: r.states,
            violation,
            scenario: ScenarioReport::of(&r.scenario),
            overrides: &overrides,
            saved,
        })?;
    } else {
        saved.print()?;
    }
    Ok(status)
}
