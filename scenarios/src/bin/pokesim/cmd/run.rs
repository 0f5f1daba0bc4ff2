//! `pokesim run` and `pokesim explore`: one scenario over a range of seeds — one campaign.
//! `run` runs the scenario's own seeds (`runs`, default 1); `explore` defaults to 1000 runs,
//! can stop after a wall time, shows progress, and runs one shard of a campaign split across
//! machines (writing its shard result for `pokesim merge`). A scenario file with recorded
//! decisions replays them instead.

use std::time::Duration;

use clap::Args;
use scenarios::artifact::{Artifact, Replayable};
use scenarios::campaign::{Campaign, CampaignResult, Shard};
use scenarios::file::{Expectation, ScenarioFile};
use scenarios::shard::ShardResult;
use serde::Serialize;
use sim_core::{Outcome, Stats, Verdict, Violation};

use super::{Saved, ScenarioReport};
use crate::args::{ArtifactOpts, JobsOpt, OutputOpts, ScenarioArgs};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// The longest `--time` (a year): a bound on the input, not a promise.
const MAX_TIME_S: f64 = 365.0 * 24.0 * 3600.0;

/// A positive, finite number of seconds of at most a year.
pub fn seconds(s: &str) -> Result<Duration, String> {
    match s.parse::<f64>() {
        Ok(t) if t > 0.0 && t <= MAX_TIME_S => Ok(Duration::from_secs_f64(t)),
        _ => Err(format!("'{s}' is not a number of seconds in (0, {MAX_TIME_S}]")),
    }
}

/// `pokesim run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    jobs: JobsOpt,
}

/// `pokesim explore`.
#[derive(Args)]
pub struct ExploreArgs {
    #[command(flatten)]
    scenario: ScenarioArgs,
    /// Stop starting runs after this many seconds (the run count then depends on the machine).
    #[arg(long, value_name = "SECONDS", value_parser = seconds, allow_negative_numbers = true)]
    time: Option<Duration>,
    /// Run only shard I of N of the campaign (seed indices congruent to I modulo N), and write
    /// its shard result into the artifact directory for `pokesim merge`.
    #[arg(long, value_name = "I/N", value_parser = |s: &str| s.parse::<Shard>())]
    shard: Option<Shard>,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    jobs: JobsOpt,
}

/// The JSON object of `run` and `explore`.
#[derive(Serialize)]
struct Report<'a> {
    command: &'static str,
    /// `null` when the campaign established nothing ([`no_verdict`]).
    verdict: Option<Verdict>,
    /// Why there is no verdict, if there is none.
    #[serde(skip_serializing_if = "Option::is_none")]
    no_verdict: Option<String>,
    expect: Expectation,
    expected: bool,
    runs: u64,
    exhausted: u64,
    shard: String,
    /// The seed of the run the violations, trace hash and stats are from.
    seed: Option<u64>,
    violations: &'a [Violation],
    trace_hash: Option<&'a str>,
    stats: Stats,
    /// The tick budget of the shown run.
    budget: Option<u64>,
    scenario: ScenarioReport,
    overrides: &'a [String],
    #[serde(flatten)]
    saved: Saved,
    #[serde(flatten)]
    shard_saved: ShardSaved,
    /// What `pokesim merge` merged.
    #[serde(skip_serializing_if = "Option::is_none")]
    merged: Option<&'a MergeReport>,
}

/// Where a report's result comes from: the whole campaign, one shard of it (whose result is
/// written next to the artifacts), or merged shard results.
pub struct Source<'a> {
    /// The shard the result covers (`0/1` for a whole campaign).
    pub shard: Shard,
    /// A shard's result, to write.
    pub shard_result: Option<&'a ShardResult>,
    /// What `pokesim merge` merged.
    pub merged: Option<&'a MergeReport>,
}

impl Source<'_> {
    /// A whole campaign.
    pub const ALL: Source<'static> = Source { shard: Shard::ALL, shard_result: None, merged: None };
}

/// The inputs of `pokesim merge`, as its report shows them.
#[derive(Serialize)]
pub struct MergeReport {
    /// The campaign's hash.
    pub campaign: String,
    /// The shard result files, by shard.
    pub shards: Vec<String>,
    /// The failure artifacts among the inputs, and what they are.
    pub artifacts: Vec<ArtifactNote>,
}

/// A failure artifact given to `merge`.
#[derive(Serialize)]
pub struct ArtifactNote {
    /// Its file.
    pub file: String,
    /// What it is, against the merged result.
    pub note: String,
}

impl MergeReport {
    fn print(&self) -> Result<(), Failure> {
        out::line(format!("merged     {} shard results of campaign {}", self.shards.len(), self.campaign))?;
        for f in &self.shards {
            out::line(format!("shard      {f}"))?;
        }
        for a in &self.artifacts {
            out::line(format!("input      {}: {}", a.file, a.note))?;
        }
        Ok(())
    }
}

/// What became of a shard result file.
#[derive(Default, Serialize)]
struct ShardSaved {
    /// Where it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_result: Option<String>,
    /// Why it could not be written.
    #[serde(skip_serializing_if = "Option::is_none")]
    shard_result_error: Option<String>,
}

impl ShardSaved {
    /// Writes `r` under the artifact directory, unless told not to. A failure is reported
    /// with the rest of the report, and then ends the command ([`ShardSaved::lost`]).
    fn write(opts: &ArtifactOpts, r: Option<&ShardResult>) -> Self {
        let (false, Some(r)) = (opts.no_artifact, r) else { return Self::default() };
        let path = opts.artifact_dir.join(r.file_name());
        match scenarios::output::ensure_dir(&opts.artifact_dir).and_then(|()| r.save(&path)) {
            Ok(()) => ShardSaved { shard_result: Some(path.display().to_string()), shard_result_error: None },
            Err(e) => {
                let msg = format!("could not write the shard result {}: {e}", path.display());
                ShardSaved { shard_result: None, shard_result_error: Some(msg) }
            }
        }
    }

    /// A shard result that could not be written: the shard's work is lost to `pokesim merge`,
    /// so the command fails (exit 2, naming `--artifact-dir`) whatever the shard found.
    fn lost(&self, opts: &ArtifactOpts) -> Result<(), Failure> {
        match &self.shard_result_error {
            None => Ok(()),
            Some(e) => Err(Failure::Bad(format!(
                "--artifact-dir {}: {e}; this shard's runs are lost to `pokesim merge` (run it again with a writable directory)",
                opts.artifact_dir.display()
            ))),
        }
    }

    fn print(&self, opts: &ArtifactOpts) -> Result<(), Failure> {
        if let Some(p) = &self.shard_result {
            out::line(format!("shard      result {p}"))?;
            out::line(format!("merge      pokesim merge {}/*.json", opts.artifact_dir.display()))?;
        }
        if let Some(e) = &self.shard_result_error {
            out::line(format!("shard      result not written: {e}"))?;
        }
        Ok(())
    }
}

/// `pokesim run`.
pub fn run(a: &RunArgs) -> Result<Status, Failure> {
    a.jobs.apply()?;
    let (file, overrides, _) = a.scenario.scenario()?;
    if file.decisions.is_some() {
        return replay_file(&file, &a.scenario, &a.artifacts, a.output);
    }
    let progress = Progress::new("run", file.runs, "runs", a.output.quiet || a.output.json);
    let c = Campaign { scenario_at: &Campaign::seeds(&file.scenario), runs: file.runs, shard: Shard::ALL, time: None };
    let result = c.run(&|n| progress.set(n))?;
    progress.finish();
    report("run", &file, &overrides, &result, &Source::ALL, &a.artifacts, a.output)
}

/// `pokesim explore`.
pub fn explore(a: &ExploreArgs) -> Result<Status, Failure> {
    a.jobs.apply()?;
    let (mut file, overrides, runs_given) = a.scenario.scenario()?;
    if file.decisions.is_some() {
        return Err(Failure::Bad(format!("{}: replays recorded decisions; use `pokesim replay`", file.name)));
    }
    let dir = &a.artifacts.artifact_dir;
    if a.shard.is_some() && !a.artifacts.no_artifact && dir.exists() && !dir.is_dir() {
        // Refused before the work: the shard result could not be written after it.
        return Err(Failure::Bad(format!(
            "--artifact-dir {}: not a directory, so the shard result could not be written",
            dir.display()
        )));
    }
    let time = a.time;
    if !runs_given {
        file.runs = if time.is_some() { scenarios::spec::MAX_RUNS } else { 1000 };
    }
    let shard = a.shard.unwrap_or(Shard::ALL);
    let total = if time.is_some() && !runs_given { 0 } else { shard.share(file.runs) };
    let progress = Progress::new("explore", total, "runs", a.output.quiet || a.output.json);
    let c = Campaign { scenario_at: &Campaign::seeds(&file.scenario), runs: file.runs, shard, time };
    let result = c.run(&|n| progress.set(n))?;
    progress.finish();
    let shard_result = a.shard.map(|s| ShardResult::new(&file, &overrides, s, &result));
    let source = Source { shard, shard_result: shard_result.as_ref(), merged: None };
    report("explore", &file, &overrides, &result, &source, &a.artifacts, a.output)
}

/// The outcome a report shows: the violating run, or the only run, or none (a campaign of
/// many passing runs shows its totals).
fn shown<'a>(file: &ScenarioFile, r: &'a CampaignResult) -> (Option<u64>, Option<&'a Outcome>) {
    match (&r.found, &r.last) {
        (Some(f), _) => (Some(f.scenario.seed), Some(&f.outcome)),
        (None, Some((k, o))) if file.runs == 1 => (Some(file.scenario.seed.wrapping_add(*k)), Some(o)),
        _ => (None, None),
    }
}

/// Prints the report of a campaign (text or JSON) and writes its artifact and, for a shard,
/// its shard result.
pub fn report(
    command: &'static str,
    file: &ScenarioFile,
    overrides: &[String],
    r: &CampaignResult,
    source: &Source,
    artifacts: &ArtifactOpts,
    output: OutputOpts,
) -> Result<Status, Failure> {
    let shard = source.shard;
    let (seed, outcome) = shown(file, r);
    let kind = r.found.as_ref().and_then(|f| f.outcome.violation()).map(|v| v.kind);
    let none = no_verdict(r, shard, file.runs);
    let expected = none.is_none() && file.expect.met_by(kind) && r.verdict() != Verdict::BudgetExhausted;
    let status = match none {
        Some(_) => Status::BudgetExhausted,
        None => status(expected, r.verdict()),
    };
    if !output.json {
        text(file, overrides, r, shard, outcome, seed, none.as_deref())?;
        let met = match (&none, expected) {
            (Some(_), _) => "not established",
            (None, true) => "met",
            (None, false) => "NOT met",
        };
        out::line(format!("expected   {} ({met})", file.expect))?;
    }
    let saved = save(file, r, artifacts);
    let shard_saved = ShardSaved::write(artifacts, source.shard_result);
    let lost = shard_saved.lost(artifacts);
    if output.json {
        out::json(&Report {
            command,
            verdict: none.is_none().then(|| r.verdict()),
            no_verdict: none,
            expect: file.expect,
            expected,
            runs: r.runs,
            exhausted: r.exhausted,
            shard: shard.to_string(),
            seed,
            violations: outcome.map_or(&[], |o| &o.violations),
            trace_hash: outcome.map(|o| o.trace_hash.as_str()),
            stats: outcome.map_or(r.totals, |o| o.stats),
            budget: outcome.map(|o| o.budget),
            scenario: ScenarioReport::of(&file.scenario),
            overrides,
            saved,
            shard_saved,
            merged: source.merged,
        })?;
    } else {
        saved.print()?;
        shard_saved.print(artifacts)?;
        if let Some(m) = source.merged {
            m.print()?;
        }
    }
    lost?;
    Ok(status)
}

/// Why a campaign established nothing, if it did not: no run finished — a `--time` limit that
/// ran out before the first, or a shard that holds none of the campaign's seed indices.
fn no_verdict(r: &CampaignResult, shard: Shard, runs: u64) -> Option<String> {
    if r.runs > 0 || r.found.is_some() {
        return None;
    }
    Some(match r.complete {
        true => format!("no run: shard {shard} holds none of the campaign's {runs} seed indices"),
        false => "no run finished: the --time limit ran out before the first (raise --time)".into(),
    })
}

/// The exit status of an outcome given whether it met the expectation.
pub fn status(expected: bool, verdict: Verdict) -> Status {
    match (expected, verdict) {
        (true, _) => Status::Expected,
        (false, Verdict::BudgetExhausted) => Status::BudgetExhausted,
        (false, _) => Status::Unexpected,
    }
}

fn text(
    file: &ScenarioFile,
    overrides: &[String],
    r: &CampaignResult,
    shard: Shard,
    outcome: Option<&Outcome>,
    seed: Option<u64>,
    none: Option<&str>,
) -> Result<(), Failure> {
    out::line(format!("scenario   {}", ScenarioReport::line(&file.scenario)))?;
    if !overrides.is_empty() {
        out::line(format!("overrides  {}", overrides.join(", ")))?;
    }
    let secs = r.elapsed.as_secs_f64().max(1e-9);
    out::line(format!("runs       {} (shard {shard}) in {secs:.1}s ({:.0} runs/s)", r.runs, r.runs as f64 / secs))?;
    let mut verdict = none.map_or_else(|| r.verdict().to_string(), |why| format!("none: {why}"));
    if r.exhausted > 0 {
        verdict.push_str(&format!(
            " ({} runs spent their tick budget, the first at seed {}; raise --ticks)",
            r.exhausted,
            file.scenario.seed.wrapping_add(r.first_exhausted.unwrap_or(0))
        ));
    }
    out::line(format!("verdict    {verdict}"))?;
    if let (Some(o), Some(seed)) = (outcome, seed) {
        for v in &o.violations {
            out::line(format!("violation  seed {seed}: {v}"))?;
        }
    }
    let st = outcome.map_or(r.totals, |o| o.stats);
    let of = if outcome.is_some() { "" } else { " (all runs)" };
    out::line(format!(
        "stats      ticks={} guest_steps={} int3_traps={} patch_rounds={} syncs={} ipis={} stores={} decisions={}{of}",
        st.ticks, st.guest_steps, st.int3_traps, st.patch_rounds, st.syncs, st.ipis, st.stores, st.decisions
    ))?;
    if let Some(o) = outcome {
        out::line(format!("trace_hash {}", o.trace_hash))?;
    }
    Ok(())
}

fn save(file: &ScenarioFile, r: &CampaignResult, artifacts: &ArtifactOpts) -> Saved {
    let Some(f) = &r.found else { return Saved::default() };
    let Some(v) = f.outcome.violation() else { return Saved::default() };
    let artifact = Artifact::new(&file.name, &f.scenario, &f.outcome);
    Saved::write(artifacts, artifact.as_ref(), &Artifact::file_name(&f.scenario, v))
}

/// `run FILE` where the file records decisions: replay them strictly.
fn replay_file(
    file: &ScenarioFile,
    args: &ScenarioArgs,
    artifacts: &ArtifactOpts,
    output: OutputOpts,
) -> Result<Status, Failure> {
    let path = args.file.as_ref().map_or(String::new(), |p| p.display().to_string());
    let r = Replayable {
        file: path,
        name: file.name.clone(),
        scenario: file.scenario.clone(),
        decisions: file.decisions.clone().unwrap_or_default(),
        expect: file.expect,
        violation: None,
        trace_hash: file.trace_hash.clone(),
    };
    let o = r.reproduce(sim_core::Observe::NOTHING)?;
    let result = CampaignResult::single(o, &file.scenario);
    report("run", file, &[], &result, &Source::ALL, artifacts, output)
}
