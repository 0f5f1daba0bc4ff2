//! `pokesim corpus`: run the regression corpus — the one shipped inside pokesim, or a
//! directory — streaming one row per entry as it finishes (a broken entry is a row, not the
//! end of the run); or add an artifact to a corpus directory.

use std::ops::ControlFlow;
use std::path::PathBuf;

use clap::Args;
use scenarios::artifact::Replayable;
use scenarios::corpus::{self, EntryResult, EntrySource, EntryStatus};
use scenarios::file::{Expectation, ScenarioFile};
use scenarios::output::{self, Mode};
use serde::Serialize;

use super::Saved;
use crate::args::{ArtifactOpts, JobsOpt, OutputOpts};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// `pokesim corpus`.
#[derive(Args)]
pub struct CorpusArgs {
    /// The corpus directory [default: the corpus shipped inside pokesim].
    dir: Option<PathBuf>,
    /// Add this artifact (or recorded entry) to the corpus directory instead of running it:
    /// written atomically as NAME.toml; the directory is created if missing (not its parents).
    #[arg(long, value_name = "ARTIFACT", requires = "dir")]
    add: Option<PathBuf>,
    /// Name of the added entry [default: the artifact's file stem].
    #[arg(long, requires = "add")]
    name: Option<String>,
    /// With --add: replace an existing entry of that name (without it, one is refused).
    #[arg(long, requires = "add")]
    force: bool,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    jobs: JobsOpt,
}

#[derive(Serialize)]
struct Row<'a> {
    #[serde(flatten)]
    entry: &'a EntryResult,
    #[serde(flatten)]
    saved: Saved,
}

#[derive(Serialize)]
struct Summary {
    command: &'static str,
    entries: usize,
    ok: usize,
    not_ok: usize,
}

/// `pokesim corpus`.
pub fn corpus(a: &CorpusArgs) -> Result<Status, Failure> {
    a.jobs.apply()?;
    if let Some(artifact) = &a.add {
        return add(a, artifact);
    }
    let sources: Vec<EntrySource> = match &a.dir {
        Some(dir) => corpus::entries(dir)?,
        None => corpus::builtin(),
    };
    if !a.output.json {
        out::line(format!(
            "{:<44} {:<20} {:<20} {:<8} {:>5} {:>7}  result",
            "entry", "expected", "got", "mode", "runs", "time"
        ))?;
    }
    let progress = Progress::new("corpus", sources.len() as u64, "entries", a.output.quiet || a.output.json);
    let (mut status, mut failure, mut counts) = (Status::Expected, None, (0usize, 0usize));
    scenarios::stream::in_order(
        sources.len(),
        |i| corpus::run_entry(&sources[i]),
        |i, result| {
            progress.set(i as u64 + 1);
            let printed = result.map_err(Failure::from).and_then(|r| print_row(a, &r).map(|()| r));
            match printed {
                Ok(r) => {
                    let ok = r.status == EntryStatus::Ok;
                    counts = (counts.0 + ok as usize, counts.1 + !ok as usize);
                    status = status.worst(row_status(r.status));
                    ControlFlow::Continue(())
                }
                Err(f) => {
                    failure = Some(f);
                    ControlFlow::Break(())
                }
            }
        },
    );
    progress.finish();
    if let Some(f) = failure {
        return Err(f);
    }
    let summary = Summary { command: "corpus", entries: sources.len(), ok: counts.0, not_ok: counts.1 };
    if a.output.json {
        out::json(&summary)?;
    } else {
        out::line(format!("\n{} entries, {} ok, {} not ok", summary.entries, summary.ok, summary.not_ok))?;
    }
    Ok(status)
}

fn row_status(s: EntryStatus) -> Status {
    match s {
        EntryStatus::Ok => Status::Expected,
        EntryStatus::BudgetExhausted => Status::BudgetExhausted,
        EntryStatus::Unexpected | EntryStatus::Stale | EntryStatus::Invalid => Status::Unexpected,
    }
}

fn print_row(a: &CorpusArgs, r: &EntryResult) -> Result<(), Failure> {
    let name = format!("corpus-{}.json", r.name);
    let saved = Saved::write(&a.artifacts, r.artifact.as_ref(), &name);
    if a.output.json {
        return out::json(&Row { entry: r, saved });
    }
    let status = match r.status {
        EntryStatus::Ok => "ok".to_string(),
        EntryStatus::Unexpected => format!("UNEXPECTED ({})", r.detail.as_deref().unwrap_or("")),
        EntryStatus::Stale => format!("STALE ({})", r.detail.as_deref().unwrap_or("")),
        EntryStatus::Invalid => format!("INVALID ({})", r.detail.as_deref().unwrap_or("")),
        EntryStatus::BudgetExhausted => format!("BUDGET EXHAUSTED ({})", r.detail.as_deref().unwrap_or("")),
    };
    let mode = if r.replayed { "replay" } else { "seeds" };
    out::line(format!(
        "{:<44} {:<20} {:<20} {:<8} {:>5} {:>6.2}s  {status}",
        r.name,
        r.expect,
        r.got,
        mode,
        r.runs,
        r.millis as f64 / 1000.0
    ))
}

/// `pokesim corpus DIR --add ARTIFACT`: the artifact's scenario with its recorded decisions
/// and trace hash, as a corpus entry; only a recording that reproduces is added. The entry
/// is written atomically (never a partial file), and an existing one is replaced only with
/// `--force`.
fn add(a: &CorpusArgs, artifact: &std::path::Path) -> Result<Status, Failure> {
    let dir = a.dir.clone().unwrap_or_default();
    output::check_dir(&dir).map_err(|e| Failure::Bad(format!("{}: {e}", dir.display())))?;
    let r = Replayable::load(artifact)?;
    let o = r.reproduce(sim_core::Observe::NOTHING)?;
    let name = match &a.name {
        Some(n) => n.clone(),
        None => artifact.file_stem().map_or("entry".into(), |s| s.to_string_lossy().to_string()),
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_' || c == '.') {
        return Err(Failure::Bad(format!("--name: '{name}' must be letters, digits, '-', '_' or '.'")));
    }
    let file = ScenarioFile {
        name: name.clone(),
        description: None,
        expect: o.violation().map_or(Expectation::Pass, |v| Expectation::violation(v.kind)),
        scenario: r.scenario.clone(),
        runs: 1,
        decisions: Some(r.decisions.clone()),
        trace_hash: Some(o.trace_hash.clone()),
    };
    let out_path = dir.join(format!("{name}.toml"));
    let mode = if a.force { Mode::Replace } else { Mode::CreateNew };
    output::ensure_dir(&dir).and_then(|()| output::write_file(&out_path, file.to_toml().as_bytes(), mode)).map_err(
        |e| match e.kind() {
            std::io::ErrorKind::AlreadyExists => {
                Failure::Bad(format!("{}: the entry exists; --force replaces it", out_path.display()))
            }
            _ => Failure::Bad(format!("{}: cannot write: {e}", out_path.display())),
        },
    )?;
    out::line(format!("added {} (expect {}, {} decisions)", out_path.display(), file.expect, r.decisions.len()))?;
    Ok(Status::Expected)
}
