//! `pokesim replay` and `shrink`: what starts from a recording (with `trace`, in its own
//! module). All three load it with [`Replayable::load`] and accept it only if
//! [`Replayable::reproduce`] does, so a file is valid for all three or for none.

use std::path::PathBuf;

use clap::Args;
use scenarios::artifact::{Artifact, Replayable};
use serde::Serialize;
use sim_core::{Observe, Outcome, Stats, Verdict, Violation};

use super::ScenarioReport;
use crate::args::OutputOpts;
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// `pokesim replay`.
#[derive(Args)]
pub struct ReplayArgs {
    /// The artifact (JSON), or a corpus entry with recorded decisions (TOML).
    artifact: PathBuf,
    /// Replay twice and compare a state hash after every step.
    #[arg(long)]
    check_determinism: bool,
    #[command(flatten)]
    output: OutputOpts,
}

/// `pokesim shrink`.
#[derive(Args)]
pub struct ShrinkArgs {
    /// The artifact (JSON), or a recorded corpus entry (TOML) that ends in a violation.
    artifact: PathBuf,
    /// Where to write the shrunk artifact (`-`: stdout, the artifact alone, no report). An
    /// existing target must be a regular file, which is replaced atomically; its directory
    /// must exist.
    #[arg(short, long, value_name = "OUT")]
    output: PathBuf,
    /// Test runs the shrinker may spend.
    #[arg(long, default_value_t = 20_000, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    max_runs: u64,
    #[command(flatten)]
    out: OutputOpts,
}

#[derive(Serialize)]
struct ReplayReport<'a> {
    command: &'static str,
    reproduced: bool,
    verdict: Verdict,
    violations: &'a [Violation],
    trace_hash: &'a str,
    stats: Stats,
    deterministic_steps: Option<usize>,
    scenario: ScenarioReport,
}

/// `pokesim replay`: exit 0 when the recording reproduces exactly.
pub fn replay(a: &ReplayArgs) -> Result<Status, Failure> {
    let (r, plan) = Replayable::load_planned(&a.artifact)?;
    let s = &r.scenario;
    let observe = Observe { step_hashes: a.check_determinism, ..Observe::NOTHING };
    let o = r.reproduce_plan(plan, observe)?;
    let checked = if a.check_determinism { Some(same_steps(&r, &o, observe)?) } else { None };
    let kind = o.violation().map(|v| v.kind);
    if a.output.json {
        return out::json(&ReplayReport {
            command: "replay",
            reproduced: true,
            verdict: o.verdict,
            violations: &o.violations,
            trace_hash: &o.trace_hash,
            stats: o.stats,
            deterministic_steps: checked,
            scenario: ScenarioReport::of(s),
        })
        .map(|()| super::run::status(r.expect.met_by(kind), o.verdict));
    }
    out::line(format!("scenario   {}", ScenarioReport::line(s)))?;
    if let Some(n) = checked {
        out::line(format!("deterministic: two replays agree on all {n} per-step state hashes"))?;
    }
    match o.violation() {
        Some(v) => out::line(format!("reproduced {v}"))?,
        None => out::line(format!("reproduced {} (trace {})", o.verdict, o.trace_hash))?,
    }
    out::line(format!("trace_hash {}", o.trace_hash))?;
    Ok(super::run::status(r.expect.met_by(kind), o.verdict))
}

/// Replays again and compares the per-step state hashes; returns how many agreed.
fn same_steps(r: &Replayable, first: &Outcome, observe: Observe) -> Result<usize, Failure> {
    let again = r.scenario.replay_observed(r.decisions.clone(), observe)?;
    if let Some(tick) = first.step_hashes.iter().zip(&again.step_hashes).position(|(x, y)| x != y) {
        return Err(Failure::Internal(format!("nondeterminism: the two replays diverge at tick {tick}")));
    }
    if first.step_hashes.len() != again.step_hashes.len() {
        return Err(Failure::Internal("nondeterminism: the two replays have different lengths".into()));
    }
    Ok(first.step_hashes.len())
}

#[derive(Serialize)]
struct ShrinkReport<'a> {
    command: &'static str,
    decisions: (usize, usize),
    cpus: (usize, usize),
    rounds: (u32, u32),
    ticks: (u64, u64),
    test_runs: u64,
    violation: &'a Violation,
    written: Option<String>,
    write_error: Option<String>,
}

/// `pokesim shrink`: exit 0 when a shrunk artifact was written.
pub fn shrink(a: &ShrinkArgs) -> Result<Status, Failure> {
    let r = Replayable::load(&a.artifact)?;
    let original = r.reproduce(Observe::NOTHING)?;
    let Some(v) = original.violation() else {
        return Err(Failure::Bad(format!("{}: records a pass; there is no violation to shrink", r.file)));
    };
    // --max-runs is a cap, not the expected work: the display counts without a denominator.
    let progress = Progress::new("shrink", 0, "test runs", a.out.quiet || a.out.json);
    let shrunk =
        scenarios::shrink::shrink(&r.scenario, original.decisions.clone(), v.kind, a.max_runs, &|n| progress.set(n));
    progress.finish();
    let shrunk = shrunk?;
    let Some(artifact) = Artifact::new(&r.name, &shrunk.scenario, &shrunk.outcome) else {
        return Err(Failure::Internal("the shrunk run has no violation".into()));
    };
    if scenarios::output::is_stdout(&a.output) {
        return out::document(&a.output, &artifact.to_json(), true).map(|()| Status::Expected);
    }
    let written = artifact.save(&a.output);
    let rep = &shrunk.report;
    let report = ShrinkReport {
        command: "shrink",
        decisions: (rep.decisions_before, rep.decisions_after),
        cpus: rep.cpus,
        rounds: rep.rounds,
        ticks: (original.stats.ticks, shrunk.outcome.stats.ticks),
        test_runs: rep.runs,
        violation: &artifact.violation,
        written: written.is_ok().then(|| a.output.display().to_string()),
        write_error: written.as_ref().err().map(|e| format!("{}: {e}", a.output.display())),
    };
    print_shrink(&report, a.out.json)?;
    match written {
        Ok(()) => Ok(Status::Expected),
        Err(e) => Err(Failure::Bad(format!("{}: cannot write the shrunk artifact: {e}", a.output.display()))),
    }
}

fn print_shrink(r: &ShrinkReport<'_>, json: bool) -> Result<(), Failure> {
    if json {
        return out::json(r);
    }
    out::line(format!("decisions  {} -> {}", r.decisions.0, r.decisions.1))?;
    out::line(format!("cpus       {} -> {}", r.cpus.0, r.cpus.1))?;
    out::line(format!("rounds     {} -> {}", r.rounds.0, r.rounds.1))?;
    out::line(format!("ticks      {} -> {}", r.ticks.0, r.ticks.1))?;
    out::line(format!("test runs  {}", r.test_runs))?;
    out::line(format!("violation  {}", r.violation))?;
    if let Some(w) = &r.written {
        out::line(format!("written    {w}"))?;
    }
    Ok(())
}
