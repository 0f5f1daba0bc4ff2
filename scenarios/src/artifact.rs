//! Failure artifacts (DESIGN.md §2.10) and everything that replays them.
//!
//! An artifact is a versioned JSON file holding everything needed to reproduce a violation —
//! the pokesim version, the scenario inline (as scenario-file TOML), seed and strategy, the
//! complete decision list, the violation and the trace hash. Replay follows the decisions,
//! not the seed, so an artifact keeps reproducing after the RNG or a strategy changes; if the
//! simulator itself changed under it, replay says it is stale.
//!
//! [`Replayable`] is the one loader and the one validity check behind `replay`, `shrink` and
//! `trace`: a failure artifact or a corpus entry with recorded decisions, replayed strictly
//! and compared with what it recorded. The same file is valid for all three or for none.
//!
//! Artifacts are written after the report is printed, to a temporary name and renamed, so a
//! full or read-only disk never loses a verdict and never leaves a truncated artifact; names
//! carry the scenario, strategy, seed, kind and a hash of the whole scenario, so two different
//! runs never share a name.

use std::io::Read;
use std::path::{Path, PathBuf};

use sim_core::{Decision, Observe, Outcome, Plan, Recorded, Violation};

pub use crate::artifact_format::{Artifact, FORMAT, MAX_DECISIONS};
use crate::entry::{Expectation, ScenarioFile};
use crate::input::{open_input, InputError, MAX_ARTIFACT_BYTES};
use crate::scenario::Scenario;

impl Artifact {
    /// The artifact of a violating run of `scenario` named `name`; `None` if the outcome has
    /// no violation or did not keep its decisions.
    pub fn new(name: &str, scenario: &Scenario, outcome: &Outcome) -> Option<Self> {
        let violation = outcome.violation()?.clone();
        if outcome.decisions.len() as u64 != outcome.stats.decisions {
            return None;
        }
        let file = ScenarioFile {
            name: name.to_string(),
            description: None,
            expect: Expectation::violation(violation.kind),
            scenario: scenario.clone(),
            runs: 1,
            decisions: None,
            trace_hash: None,
        };
        let recorded = Recorded::from_log(outcome.decisions.clone());
        Some(Artifact {
            format: FORMAT,
            pokesim_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: file.to_toml(),
            seed: scenario.seed,
            strategy: scenario.strategy.to_string(),
            decisions: recorded.prefix.iter().map(|d| (d.of, d.choice)).collect(),
            zeros_after: recorded.zeros_after,
            violation,
            trace_hash: outcome.trace_hash.clone(),
            ticks: outcome.stats.ticks,
        })
    }

    /// Parses an artifact, refusing corrupt, truncated, incompatible or future files; `file`
    /// names it in errors. Typed and streaming, with the decision list capped at
    /// [`MAX_DECISIONS`] ([`crate::artifact_format`]).
    pub fn parse(file: &str, text: &str) -> Result<Self, InputError> {
        crate::artifact_format::parse(file, text.as_bytes())
    }

    /// Reads and parses the artifact `path`, straight from the file: memory grows with its
    /// decision list (at most [`MAX_DECISIONS`]), not with its text.
    pub fn load(path: &Path) -> Result<Self, InputError> {
        let name = path.display().to_string();
        let file = open_input(path, MAX_ARTIFACT_BYTES)?;
        let reader = std::io::BufReader::new(file.take(MAX_ARTIFACT_BYTES + 1));
        let a = crate::artifact_format::parse(&name, reader)?;
        Ok(a)
    }

    /// The decision list.
    pub fn recorded(&self) -> Recorded {
        let prefix = self.decisions.iter().map(|&(of, choice)| Decision { of, choice }).collect();
        Recorded { prefix, zeros_after: self.zeros_after }
    }

    /// Writes the artifact as JSON, atomically: to a temporary name in the same directory,
    /// then renamed, so a failed write never leaves a truncated artifact.
    /// A run with more than [`MAX_DECISIONS`] decisions is refused: no pokesim could read it.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if self.decisions.len() > MAX_DECISIONS {
            let msg = format!(
                "the run recorded {} decisions, more than the {MAX_DECISIONS} an artifact holds",
                self.decisions.len()
            );
            return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, msg));
        }
        crate::output::write_atomic(path, self.to_json().as_bytes())
    }

    /// The artifact as one line of JSON, with its newline.
    pub fn to_json(&self) -> String {
        // Plain data (strings, numbers, lists): serializing it cannot fail.
        let mut json = serde_json::to_string(self).unwrap_or_default();
        json.push('\n');
        json
    }

    /// A file name that says what failed — workload, protocol, mutants (or a custom
    /// program), vCPUs, strategy, seed, kind — and ends in a hash of the whole scenario, so
    /// that two different runs never share a name.
    pub fn file_name(scenario: &Scenario, violation: &Violation) -> String {
        let toml = ScenarioFile {
            name: String::new(),
            description: None,
            expect: Expectation::violation(violation.kind),
            scenario: scenario.clone(),
            runs: 1,
            decisions: None,
            trace_hash: None,
        }
        .to_toml();
        let hash = xxhash_rust::xxh3::xxh3_64(toml.as_bytes()) as u32;
        let label = scenario.file_label();
        let strategy = scenario.strategy.to_string().replace(':', "");
        let (cpus, seed, kind) = (scenario.config.cpus, scenario.seed, violation.kind);
        let kernel = scenario.config.kernel.tag();
        format!("{label}-{kernel}-cpus{cpus}-{strategy}-seed{seed}-{kind}-{hash:08x}.json")
    }

    /// [`Artifact::file_name`] under `dir`.
    pub fn default_path(dir: &Path, scenario: &Scenario, violation: &Violation) -> PathBuf {
        dir.join(Self::file_name(scenario, violation))
    }
}

/// What `replay`, `shrink` and `trace` load: a failure artifact (JSON) or a corpus entry with
/// recorded decisions (TOML), with what its replay must reproduce.
#[derive(Clone, Debug)]
pub struct Replayable {
    /// The file, for messages.
    pub file: String,
    /// Its name (the artifact's scenario name or the entry's name).
    pub name: String,
    /// The scenario.
    pub scenario: Scenario,
    /// The recorded decisions.
    pub decisions: Recorded,
    /// What the run must end in.
    pub expect: Expectation,
    /// The exact violation recorded (artifacts only).
    pub violation: Option<Violation>,
    /// The trace hash recorded, if any.
    pub trace_hash: Option<String>,
}

impl Replayable {
    /// Loads an artifact (`.json`) or a recorded corpus entry (`.toml`).
    pub fn load(path: &Path) -> Result<Self, InputError> {
        Self::load_planned(path).map(|(r, _)| r)
    }

    /// [`Replayable::load`], also returning the plan that validated its scenario, which
    /// [`Replayable::reproduce_plan`] runs.
    pub fn load_planned(path: &Path) -> Result<(Self, Plan), InputError> {
        let file = path.display().to_string();
        if path.extension().is_some_and(|x| x == "toml") {
            let (f, plan) = ScenarioFile::load_planned(path)?;
            let Some(decisions) = f.decisions else {
                let msg = "missing: only entries with recorded decisions replay (run the file with `pokesim run`)";
                return Err(InputError { field: Some("decisions".into()), ..InputError::file(&file, msg) });
            };
            let (name, expect, trace_hash) = (f.name, f.expect, f.trace_hash);
            let r = Self { file, name, scenario: f.scenario, decisions, expect, violation: None, trace_hash };
            return Ok((r, plan));
        }
        let art = Artifact::load(path)?;
        let (inner, plan) =
            ScenarioFile::parse_planned(&format!("{file} (scenario)"), &art.scenario_text(), "artifact")?;
        let r = Self {
            file,
            name: inner.name,
            scenario: inner.scenario,
            decisions: art.recorded(),
            expect: Expectation::violation(art.violation.kind),
            violation: Some(art.violation),
            trace_hash: Some(art.trace_hash),
        };
        Ok((r, plan))
    }

    /// Replays its scenario strictly, recording what `observe` asks for, and checks that the
    /// run is the recorded one: the decisions fit exactly, and the recorded violation
    /// (artifacts) and trace hash are the same. Anything else is a stale recording. Whether a
    /// corpus entry's run meets its `expect` is the caller's question.
    pub fn reproduce(&self, observe: Observe) -> Result<Outcome, ReplayError> {
        let plan = self.scenario.plan().map_err(ReplayError::Sim)?;
        self.reproduce_plan(plan, observe)
    }

    /// [`Replayable::reproduce`] with the scenario's plan already built (by
    /// [`Replayable::load_planned`]).
    pub fn reproduce_plan(&self, plan: Plan, observe: Observe) -> Result<Outcome, ReplayError> {
        let stale = |field: &str, message: String| {
            ReplayError::Stale(InputError { field: Some(field.into()), ..InputError::file(&self.file, message) })
        };
        let decisions = sim_core::Decisions::replay(self.decisions.clone());
        let o = match self.scenario.run_plan(plan, decisions, observe) {
            Ok(o) => o,
            Err(sim_core::SimError::StaleDecisions(m)) => {
                return Err(stale("decisions", format!("{m}: the recording no longer fits this pokesim")))
            }
            Err(e) => return Err(ReplayError::Sim(e)),
        };
        if let Some(want) = self.violation.as_ref().filter(|v| o.violation() != Some(*v)) {
            let got = o.violation().map_or_else(|| o.verdict.to_string(), |v| v.to_string());
            return Err(stale("violation", format!("does not reproduce: recorded {want}, got {got}")));
        }
        if let Some(want) = self.trace_hash.as_ref().filter(|h| **h != o.trace_hash) {
            let msg = format!("does not reproduce: the replay's trace hash is {}, recorded {want}", o.trace_hash);
            return Err(stale("trace_hash", msg));
        }
        Ok(o)
    }
}

/// Why a replay failed: the recording is stale (bad input, exit 2), or the simulator failed.
#[derive(Debug)]
pub enum ReplayError {
    /// The recording does not reproduce.
    Stale(InputError),
    /// A simulator error.
    Sim(sim_core::SimError),
}
