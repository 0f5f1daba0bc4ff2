//! `pokesim exhaust --shard I/N`: one shard of a complete search, whose result file `pokesim
//! merge` joins with the others into what `exhaust` reports on one machine
//! ([`scenarios::search_shard`], DESIGN.md §2.9 "Sharded search").
//!
//! A shard that finds a violation reports it, with its (not proven shortest) counterexample
//! and artifact, and exits as `exhaust` would; one that finds none says that its part holds
//! none — the search's verdict is the merge's.

use std::time::Instant;

use scenarios::campaign::Shard;
use scenarios::entry::ScenarioFile;
use scenarios::search_shard::{merge as merge_shards, MergedSearch, SearchShard, SearchShardFile};
use scenarios::Scenario;
use serde::Serialize;
use sim_core::search::{Options, Split};

use super::{complete_findings, conclude, options, ExhaustArgs, Shown};
use crate::args::{ArtifactOpts, OutputOpts};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// What a shard reports in `--json` when it found no violation.
#[derive(Serialize)]
struct ShardReport<'a> {
    command: &'static str,
    mode: &'static str,
    shard: String,
    search: &'a str,
    states: u64,
    transitions: u64,
    depth: u64,
    level_states: u64,
    frontier: u64,
    complete: bool,
    seconds: f64,
    shard_result: String,
}

/// Runs shard `shard` of the complete search of `s` and writes its result.
pub(super) fn shard(
    a: &ExhaustArgs,
    file: &ScenarioFile,
    overrides: &[String],
    s: Scenario,
    shard: Shard,
) -> Result<Status, Failure> {
    if a.artifacts.no_artifact {
        return Err(Failure::Bad(
            "--no-artifact: a search shard's result file is what `pokesim merge` needs; it must be written".into(),
        ));
    }
    let split = Split { index: shard.index, count: shard.count };
    // The shortest counterexample is the merge's: it runs the breadth-first search once.
    let opts = Options { split: Some(split), shortest: false, ..options(a) };
    let progress = Progress::new("exhaust", 0, "states", a.output.quiet || a.output.json);
    let start = Instant::now();
    let r = scenarios::exhaust::complete(&s, opts, &|n| progress.set(n));
    progress.finish();
    let r = r?;
    let elapsed_ms = start.elapsed().as_millis().try_into().unwrap_or(u64::MAX);
    let searched = ScenarioFile { scenario: s, decisions: None, trace_hash: None, ..file.clone() };
    let result = SearchShard::new(&searched, overrides, &opts, &r.search, elapsed_ms);
    let path = a.artifacts.artifact_dir.join(result.file_name());
    scenarios::output::ensure_dir(&a.artifacts.artifact_dir).and_then(|()| result.save(&path)).map_err(|e| {
        Failure::Bad(format!(
            "--artifact-dir {}: could not write the search shard {}: {e}; this shard's states are lost to `pokesim merge`",
            a.artifacts.artifact_dir.display(),
            path.display()
        ))
    })?;
    let seconds = start.elapsed().as_secs_f64();
    let states = (result.states.len() / 32) as u64;
    if !a.output.json {
        print_shard(&result, shard, states, seconds, &path, &a.artifacts.artifact_dir)?;
    }
    if r.search.found.is_some() {
        return conclude(&Shown::of(a), file, overrides, &complete_findings(r));
    }
    if a.output.json {
        out::json(&ShardReport {
            command: "exhaust",
            mode: "shard",
            shard: shard.to_string(),
            search: &result.search,
            states,
            transitions: result.transitions,
            depth: result.depth,
            level_states: result.level_states,
            frontier: result.frontier,
            complete: result.complete,
            seconds,
            shard_result: path.display().to_string(),
        })?;
    } else if result.complete {
        out::line("verdict    no violation in this shard's part; the search's verdict is the merge of every shard")?;
    } else {
        out::line("verdict    incomplete: limit reached in this shard's part (the merge refuses it)")?;
    }
    Ok(if result.complete { Status::Expected } else { Status::BudgetExhausted })
}

/// What a shard stored, where its levels parted, where its result went.
fn print_shard(
    result: &SearchShard,
    shard: Shard,
    states: u64,
    seconds: f64,
    path: &std::path::Path,
    dir: &std::path::Path,
) -> Result<(), Failure> {
    out::line(format!(
        "shard      {shard} of search {}: {states} states stored, {} transitions in {seconds:.1}s",
        result.search, result.transitions
    ))?;
    out::line(format!(
        "levels     {} states to depth {}, frontier {} (this shard searches from frontier states {}, {}+{}, ...)",
        result.level_states, result.depth, result.frontier, shard.index, shard.index, shard.count
    ))?;
    out::line(format!("result     {}", path.display()))?;
    out::line(format!("merge      pokesim merge {}/search-shard-*-{}.json", dir.display(), result.search))
}

/// `pokesim merge` of search shards: the report `exhaust` prints on one machine.
pub fn merge(
    shards: &[SearchShardFile],
    others: &[String],
    artifacts: &ArtifactOpts,
    output: OutputOpts,
) -> Result<Status, Failure> {
    let m: MergedSearch = merge_shards(shards).map_err(|e| Failure::Bad(e.to_string()))?;
    let progress = Progress::new("merge", 0, "states", output.quiet || output.json);
    let r = scenarios::exhaust::complete_merged(&m, &|n| progress.set(n));
    progress.finish();
    let f = complete_findings(r?);
    if !output.json {
        out::line(format!("merged     {} search shards of search {}", m.files.len(), m.search))?;
        for file in &m.files {
            out::line(format!("shard      {file}"))?;
        }
        out::line(format!(
            "stored     {} states by the shards together for {} distinct ({:.2}x); time and transitions below are the shards' added up",
            m.stored,
            m.states,
            m.stored as f64 / m.states.max(1) as f64
        ))?;
        for file in others {
            out::line(format!("input      {file}: a failure artifact, not a search shard (a shard's own violation)"))?;
        }
    }
    let how =
        Shown { bound: None, reduction: m.options.merge_local, all_kinds: m.options.all_kinds, artifacts, output };
    conclude(&how, &m.scenario, &m.overrides, &f)
}
