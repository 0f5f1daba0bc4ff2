//! `pokesim merge`: the shard results of a campaign run on many machines (`explore --shard`),
//! merged into the report, artifact and exit status `explore` would have given on one
//! machine. Failure artifacts that sit with the shard results are recognised, checked
//! against the merged result and listed; any other file is an error naming it.

use std::path::PathBuf;

use clap::Args;
use scenarios::artifact::Artifact;
use scenarios::campaign::Shard;
use scenarios::shard::{merge_with_progress as merge_shards, MergeError, MergeInput, Merged, ShardFile};

use super::run::{report, ArtifactNote, MergeReport, Source};
use crate::args::{ArtifactOpts, OutputOpts};
use crate::out::{Failure, Status};
use crate::progress::Progress;

/// `pokesim merge`.
#[derive(Args)]
pub struct MergeArgs {
    /// Shard results (`shard-I-of-N-HASH.json`, written by `explore --shard` into its
    /// artifact directory, or `search-shard-I-of-N-HASH.json`, by `exhaust --shard`), e.g.
    /// `out/*.json`; failure artifacts among them are checked and listed.
    #[arg(required = true, value_name = "FILES")]
    files: Vec<PathBuf>,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
}

/// `pokesim merge`.
pub fn merge(a: &MergeArgs) -> Result<Status, Failure> {
    let mut shards: Vec<ShardFile> = Vec::new();
    let mut others: Vec<(String, Artifact)> = Vec::new();
    let mut searches = Vec::new();
    for path in &a.files {
        match MergeInput::read(path)? {
            MergeInput::Shard(s) => shards.push(*s),
            MergeInput::Artifact(file, art) => others.push((file, *art)),
            MergeInput::SearchShard(s) => searches.push(*s),
        }
    }
    if !searches.is_empty() {
        if let Some(s) = shards.first() {
            return Err(Failure::Bad(format!(
                "{}: a campaign's shard result among search shards: merge one campaign's or one search's shards at a time",
                s.file
            )));
        }
        let artifacts: Vec<String> = others.into_iter().map(|(file, _)| file).collect();
        return super::exhaust::merge_search(&searches, &artifacts, &a.artifacts, a.output);
    }
    // The runs merge repeats: the violating run (if any) and the campaign's last run.
    let progress = Progress::new("merge", 0, "repeated runs", a.output.quiet || a.output.json);
    let m = merge_shards(&shards, &|n| progress.set(n)).map_err(failure);
    progress.finish();
    let m = m?;
    let artifacts = others.iter().map(|(file, art)| ArtifactNote { file: file.clone(), note: note(&m, art) }).collect();
    let inputs = MergeReport { campaign: m.campaign.clone(), shards: m.files.clone(), artifacts };
    let source = Source { shard: Shard::ALL, shard_result: None, merged: Some(&inputs) };
    report("explore", &m.scenario, &m.overrides, &m.result, &source, &a.artifacts, a.output)
}

/// A merge error as a failure: bad input (exit 2), or the simulator's own failure.
fn failure(e: MergeError) -> Failure {
    match e {
        MergeError::Sim(e) => e.into(),
        e => Failure::Bad(e.to_string()),
    }
}

/// What a failure artifact given to `merge` is, against the merged result.
fn note(m: &Merged, art: &Artifact) -> String {
    let what = format!("seed {} {}", art.seed, art.violation.kind);
    let merged = m.result.found.as_ref().and_then(|f| Artifact::new(&m.scenario.name, &f.scenario, &f.outcome));
    match merged {
        Some(mine) if mine == *art => {
            format!("artifact, not a shard result: the merged violation's ({what}), identical")
        }
        Some(mine) => format!(
            "artifact, not a shard result: {what}, not the merged violation (seed {} {})",
            mine.seed, mine.violation.kind
        ),
        None => format!("artifact, not a shard result: {what}, but the merged campaign found no violation"),
    }
}
