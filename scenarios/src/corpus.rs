//! The regression corpus (DESIGN.md §2.10–2.11): a directory of scenario files, each with its
//! expected verdict — or the corpus shipped inside pokesim ([`builtin`]). An entry with a
//! recorded decision list replays it exactly (a shrunk race replays in milliseconds); one
//! without runs its seeds as a campaign. An entry whose decisions no longer fit the simulator
//! is reported stale, and a file that does not load is reported invalid — each as its own row:
//! one broken entry never stops the rest, and nothing is ever passed silently.

use std::path::Path;
use std::time::Instant;

use serde::Serialize;
use sim_core::{SimError, Verdict};

use crate::artifact::{Artifact, ReplayError, Replayable};
use crate::campaign::{Campaign, Shard};
use crate::entry::ScenarioFile;
use crate::input::{read_input, InputError, MAX_SCENARIO_BYTES};

mod embedded {
    include!(concat!(env!("OUT_DIR"), "/builtin_corpus.rs"));
}

/// How one entry fared.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum EntryStatus {
    /// As expected.
    Ok,
    /// Ran, but not as expected.
    Unexpected,
    /// Its recorded decisions no longer fit the simulator.
    Stale,
    /// The file does not load (its row names the file, line and field).
    Invalid,
    /// A run spent its tick budget: no verdict.
    BudgetExhausted,
}

/// One corpus row.
#[derive(Clone, Debug, Serialize)]
pub struct EntryResult {
    /// Entry name.
    pub name: String,
    /// File.
    pub file: String,
    /// Expected.
    pub expect: String,
    /// What happened: `pass`, the violation kind, `budget-exhausted`, `stale` or `invalid`.
    pub got: String,
    /// Replayed decisions (true) or ran seeds (false).
    pub replayed: bool,
    /// Runs done.
    pub runs: u64,
    /// Status.
    pub status: EntryStatus,
    /// Detail for entries that are not ok.
    pub detail: Option<String>,
    /// Wall time in milliseconds.
    pub millis: u64,
    /// The failure artifact of the violation, if any.
    #[serde(skip)]
    pub artifact: Option<Artifact>,
}

/// One entry's source: its file name (for messages) and its text, or why it cannot be read.
#[derive(Clone, Debug)]
pub struct EntrySource {
    /// The file, as messages name it.
    pub file: String,
    /// The entry's default name (the file stem).
    pub stem: String,
    /// The text.
    pub text: Result<String, InputError>,
}

/// The corpus shipped with pokesim, embedded in the binary.
pub fn builtin() -> Vec<EntrySource> {
    embedded::BUILTIN
        .iter()
        .map(|(name, text)| EntrySource {
            file: format!("<built-in corpus>/{name}"),
            stem: name.trim_end_matches(".toml").to_string(),
            text: Ok(text.to_string()),
        })
        .collect()
}

/// The `*.toml` files of `dir`, sorted by name (a file that cannot be read is still an entry:
/// it becomes an invalid row).
pub fn entries(dir: &Path) -> Result<Vec<EntrySource>, InputError> {
    let read = std::fs::read_dir(dir)
        .map_err(|e| InputError::file(dir.display().to_string(), format!("cannot read corpus directory: {e}")))?;
    let mut files: Vec<_> =
        read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    Ok(files
        .iter()
        .map(|p| EntrySource {
            file: p.display().to_string(),
            stem: p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default(),
            text: read_input(p, MAX_SCENARIO_BYTES),
        })
        .collect())
}

fn row(src: &EntrySource, name: &str, expect: String, replayed: bool) -> EntryResult {
    EntryResult {
        name: name.to_string(),
        file: src.file.clone(),
        expect,
        got: String::new(),
        replayed,
        runs: 0,
        status: EntryStatus::Ok,
        detail: None,
        millis: 0,
        artifact: None,
    }
}

/// Runs one entry. `Err` only for a simulator failure; every problem with the entry itself is
/// a row.
pub fn run_entry(src: &EntrySource) -> Result<EntryResult, SimError> {
    let start = Instant::now();
    let loaded = src.text.clone().and_then(|t| ScenarioFile::parse(&src.file, &t, &src.stem));
    let entry = match loaded {
        Ok(e) => e,
        Err(e) => {
            let mut r = row(src, &src.stem, "-".into(), false);
            (r.status, r.got, r.detail) = (EntryStatus::Invalid, "invalid".into(), Some(e.to_string()));
            return Ok(r);
        }
    };
    let mut r = row(src, &entry.name, entry.expect.to_string(), entry.decisions.is_some());
    let kind = match &entry.decisions {
        Some(_) => replay_entry(src, &entry, &mut r)?,
        None => seeds_entry(&entry, &mut r)?,
    };
    if r.status == EntryStatus::Ok {
        r.got = kind.map_or("pass".into(), |k| k.to_string());
        if !entry.expect.met_by(kind) {
            r.status = EntryStatus::Unexpected;
            r.detail = Some(format!("expected {}, got {}", entry.expect, r.got));
        }
    }
    r.millis = start.elapsed().as_millis() as u64;
    Ok(r)
}

fn replay_entry(
    src: &EntrySource,
    entry: &ScenarioFile,
    r: &mut EntryResult,
) -> Result<Option<sim_core::ViolationKind>, SimError> {
    let replayable = Replayable {
        file: src.file.clone(),
        name: entry.name.clone(),
        scenario: entry.scenario.clone(),
        decisions: entry.decisions.clone().unwrap_or_default(),
        expect: entry.expect,
        violation: None,
        trace_hash: entry.trace_hash.clone(),
    };
    r.runs = 1;
    match replayable.reproduce(sim_core::Observe::NOTHING) {
        Ok(o) => {
            r.artifact = Artifact::new(&entry.name, &entry.scenario, &o);
            Ok(o.violation().map(|v| v.kind))
        }
        Err(ReplayError::Stale(e)) => {
            (r.status, r.got, r.detail) = (EntryStatus::Stale, "stale".into(), Some(e.message));
            Ok(None)
        }
        Err(ReplayError::Sim(e)) => Err(e),
    }
}

fn seeds_entry(entry: &ScenarioFile, r: &mut EntryResult) -> Result<Option<sim_core::ViolationKind>, SimError> {
    let at = Campaign::seeds(&entry.scenario);
    let c = Campaign { scenario_at: &at, runs: entry.runs, shard: Shard::ALL, time: None }.run(&|_| {})?;
    r.runs = c.runs;
    if c.verdict() == Verdict::BudgetExhausted {
        (r.status, r.got) = (EntryStatus::BudgetExhausted, "budget-exhausted".into());
        r.detail = Some(format!("{} of {} runs spent their tick budget", c.exhausted, c.runs));
    }
    let Some(found) = c.found else { return Ok(None) };
    r.artifact = Artifact::new(&entry.name, &found.scenario, &found.outcome);
    Ok(found.outcome.violation().map(|v| v.kind))
}
