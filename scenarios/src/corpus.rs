//! The regression corpus (DESIGN.md §2.10–2.11): a directory of scenario files, each with its
//! expected verdict. An entry with a recorded decision list replays it exactly (a shrunk race
//! replays in milliseconds); one without runs its seeds. An entry whose decisions no longer
//! fit the simulator is reported as stale — never passed silently.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rayon::prelude::*;
use serde::Serialize;
use sim_core::{Decisions, SimError, Verdict, ViolationKind};

use crate::artifact::Artifact;
use crate::file::{Expectation, FileError, ScenarioFile};

/// The corpus shipped with pokesim.
pub fn default_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
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
    /// What happened: `pass` or the violation kind.
    pub got: String,
    /// Replayed decisions (true) or ran seeds (false).
    pub replayed: bool,
    /// Runs done.
    pub runs: u64,
    /// Status.
    pub status: EntryStatus,
    /// Detail for stale or unexpected entries.
    pub detail: Option<String>,
    /// Wall time.
    #[serde(skip)]
    pub time: Duration,
    /// The failure artifact of the violation, if any.
    #[serde(skip)]
    pub artifact: Option<Artifact>,
}

/// The `*.toml` files of `dir`, sorted by name.
pub fn entries(dir: &Path) -> Result<Vec<PathBuf>, FileError> {
    let read = std::fs::read_dir(dir).map_err(|e| FileError {
        file: dir.display().to_string(),
        line: None,
        field: None,
        message: format!("cannot read corpus directory: {e}"),
    })?;
    let mut files: Vec<PathBuf> =
        read.filter_map(|e| e.ok().map(|e| e.path())).filter(|p| p.extension().is_some_and(|x| x == "toml")).collect();
    files.sort();
    Ok(files)
}

/// Runs one entry.
pub fn run_entry(entry: &ScenarioFile, file: &Path) -> Result<EntryResult, SimError> {
    let start = Instant::now();
    let mut r = EntryResult {
        name: entry.name.clone(),
        file: file.display().to_string(),
        expect: entry.expect.to_string(),
        got: "pass".into(),
        replayed: entry.decisions.is_some(),
        runs: 0,
        status: EntryStatus::Ok,
        detail: None,
        time: Duration::ZERO,
        artifact: None,
    };
    let mut kind: Option<ViolationKind> = None;
    if let Some(list) = &entry.decisions {
        r.runs = 1;
        match entry.scenario.run_with(Decisions::replay(list.clone())) {
            Ok(o) => {
                kind = o.violation().map(|v| v.kind);
                r.artifact = Artifact::new(&entry.name, &entry.scenario, &o);
                if let Some(want) = entry.trace_hash.as_ref().filter(|h| **h != o.trace_hash) {
                    r.status = EntryStatus::Stale;
                    r.got = "stale".into();
                    r.detail = Some(format!("the replay's trace hash is {}, the entry recorded {want}", o.trace_hash));
                }
            }
            Err(SimError::StaleDecisions(msg)) => {
                r.status = EntryStatus::Stale;
                r.got = "stale".into();
                r.detail = Some(msg);
            }
            Err(e) => return Err(e),
        }
    } else {
        for k in 0..entry.runs {
            let mut s = entry.scenario.clone();
            s.seed = entry.scenario.seed + k;
            let o = s.run()?;
            r.runs += 1;
            if o.verdict == Verdict::Violation {
                kind = o.violation().map(|v| v.kind);
                r.artifact = Artifact::new(&entry.name, &s, &o);
                break;
            }
        }
    }
    if r.status != EntryStatus::Stale {
        r.got = kind.map_or("pass".into(), |k| k.to_string());
        let ok = match entry.expect {
            Expectation::Pass => kind.is_none(),
            Expectation::Violation(want) => kind == Some(want),
        };
        if !ok {
            r.status = EntryStatus::Unexpected;
            r.detail = Some(format!("expected {}, got {}", entry.expect, r.got));
        }
    }
    r.time = start.elapsed();
    Ok(r)
}

/// Loads every entry of `dir` (bad files are errors) and runs them in parallel.
pub fn run_dir(dir: &Path) -> Result<Vec<EntryResult>, String> {
    let files = entries(dir).map_err(|e| e.to_string())?;
    let loaded = files
        .iter()
        .map(|f| ScenarioFile::load(f).map(|e| (e, f.clone())))
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| e.to_string())?;
    loaded.par_iter().map(|(e, f)| run_entry(e, f).map_err(|err| format!("{}: {err}", f.display()))).collect()
}
