//! Failure artifacts (DESIGN.md §2.10): a versioned JSON file holding everything needed to
//! reproduce a violation — the pokesim version, the scenario inline (as scenario-file TOML),
//! seed and strategy, the complete decision list, the violation and the trace hash. Replay
//! follows the decisions, not the seed, so an artifact keeps reproducing after the RNG or a
//! strategy changes; if the simulator itself changed under it, replay says it is stale.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sim_core::{Decision, Outcome, Violation};

use crate::file::{Expectation, FileError, ScenarioFile};
use crate::scenario::Scenario;

/// The artifact format this pokesim reads and writes.
pub const FORMAT: u32 = 1;

/// A failure artifact.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Artifact {
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The pokesim that wrote it.
    pub pokesim_version: String,
    /// The scenario, as scenario-file TOML (its `expect` is the violation kind).
    pub scenario: String,
    /// The seed the decisions were drawn from (informative; replay uses the decisions).
    pub seed: u64,
    /// The strategy that drew them.
    pub strategy: String,
    /// Every decision of the run, `[options, choice]`.
    pub decisions: Vec<(u32, u32)>,
    /// The violation.
    pub violation: Violation,
    /// Trace hash of the run.
    pub trace_hash: String,
    /// Ticks the run took.
    pub ticks: u64,
}

impl Artifact {
    /// The artifact of a violating run of `scenario` named `name`.
    pub fn new(name: &str, scenario: &Scenario, outcome: &Outcome) -> Option<Self> {
        let violation = outcome.violation()?.clone();
        let file = ScenarioFile {
            name: name.to_string(),
            description: None,
            expect: Expectation::Violation(violation.kind),
            scenario: scenario.clone(),
            runs: 1,
            decisions: None,
            trace_hash: None,
        };
        Some(Artifact {
            format: FORMAT,
            pokesim_version: env!("CARGO_PKG_VERSION").to_string(),
            scenario: file.to_toml(),
            seed: scenario.seed,
            strategy: scenario.strategy.to_string(),
            decisions: outcome.decisions.iter().map(|d| (d.of, d.choice)).collect(),
            violation,
            trace_hash: outcome.trace_hash.clone(),
            ticks: outcome.stats.ticks,
        })
    }

    /// Reads an artifact, refusing corrupt, truncated or incompatible files.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let file = path.display().to_string();
        let err = |line: Option<usize>, field: Option<&str>, message: String| FileError {
            file: file.clone(),
            line,
            field: field.map(str::to_string),
            message,
        };
        let text = std::fs::read_to_string(path).map_err(|e| err(None, None, e.to_string()))?;
        // Look at the format first, so that a future format is reported as such rather than as
        // a field mismatch.
        let value: serde_json::Value = serde_json::from_str(&text)
            .map_err(|e| err(Some(e.line()), None, format!("corrupt or truncated artifact: {e}")))?;
        match value.get("format").and_then(|f| f.as_u64()) {
            Some(f) if f == FORMAT as u64 => {}
            Some(f) => {
                return Err(err(
                    None,
                    Some("format"),
                    format!("artifact format {f} is not supported (this pokesim reads format {FORMAT})"),
                ))
            }
            None => return Err(err(None, Some("format"), "missing: not a pokesim artifact".into())),
        }
        let a: Artifact =
            serde_json::from_value(value).map_err(|e| err(None, None, format!("corrupt artifact: {e}")))?;
        if let Some((i, (of, choice))) = a.decisions.iter().enumerate().find(|(_, (of, c))| *of < 2 || c >= of) {
            return Err(err(
                None,
                Some("decisions"),
                format!("entry {i} [{of}, {choice}] is not [options >= 2, choice < options]"),
            ));
        }
        Ok(a)
    }

    /// The scenario file inside.
    pub fn scenario_file(&self, path: &Path) -> Result<ScenarioFile, FileError> {
        ScenarioFile::parse(&format!("{} (scenario)", path.display()), &self.scenario, "artifact")
    }

    /// The decision list.
    pub fn decision_list(&self) -> Vec<Decision> {
        self.decisions.iter().map(|&(of, choice)| Decision { of, choice }).collect()
    }

    /// Writes the artifact as pretty JSON.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        if let Some(dir) = path.parent() {
            if !dir.as_os_str().is_empty() {
                std::fs::create_dir_all(dir)?;
            }
        }
        let mut json = serde_json::to_string(self).expect("artifacts serialize");
        json.push('\n');
        std::fs::write(path, json)
    }

    /// A file name that says what failed: workload, protocol, mutants, vCPUs, seed, kind.
    pub fn default_path(dir: &Path, scenario: &Scenario, violation: &Violation) -> PathBuf {
        let mut name = format!("{}-{}", scenario.workload.kind, scenario.config.protocol);
        for m in &scenario.config.mutants {
            name.push('-');
            name.push_str(m.name());
        }
        name.push_str(&format!("-cpus{}-seed{}-{}.json", scenario.config.cpus, scenario.seed, violation.kind));
        dir.join(name)
    }
}
