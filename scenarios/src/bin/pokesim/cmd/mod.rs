//! The commands, one module per family, and what they share: how a scenario is described in
//! reports and how a failure artifact is written (after the verdict, atomically, a failure
//! to write being a warning that never changes the verdict's exit status; the artifact
//! directory is created at the first write, that component only, never its parents).

pub mod check;
pub mod corpus;
pub mod exhaust;
pub mod hw;
pub mod list;
pub mod litmus;
pub mod merge;
pub mod replay;
pub mod run;
pub mod trace;
pub mod version;

use std::path::PathBuf;

use scenarios::artifact::Artifact;
use scenarios::Scenario;
use serde::Serialize;

use crate::args::ArtifactOpts;
use crate::out::{self, Failure};

/// A protocol compiled from C, as reports show it.
#[derive(Serialize)]
struct CSourceReport {
    file: String,
    hash: String,
}

/// A scenario as reports show it.
#[derive(Serialize)]
pub struct ScenarioReport {
    label: String,
    workload: String,
    site: String,
    rounds: u32,
    protocol: String,
    kernel: String,
    mutants: Vec<String>,
    custom_program: bool,
    /// The protocol as C: the file (or "built-in") and its build hash; absent for the model.
    #[serde(skip_serializing_if = "Option::is_none")]
    c_source: Option<CSourceReport>,
    kprobes: Vec<KprobeReport>,
    cpus: usize,
    fetch: String,
    strategy: String,
    seed: u64,
    /// `batched` when local runs are batched (DESIGN.md §2.5b); absent for single stepping.
    #[serde(skip_serializing_if = "Option::is_none")]
    stepping: Option<String>,
}

impl ScenarioReport {
    /// The report of `s`.
    pub fn of(s: &Scenario) -> Self {
        ScenarioReport {
            label: s.label(),
            workload: s.workload.variant_name(),
            site: s.workload.site.to_string(),
            rounds: s.workload.rounds,
            protocol: s.config.protocol.to_string(),
            kernel: s.config.kernel.to_string(),
            mutants: s.config.mutants.iter().map(|m| m.to_string()).collect(),
            custom_program: s.config.program.is_some(),
            c_source: s.config.compiled.as_ref().map(|c| CSourceReport {
                file: if c.builtin { "built-in".into() } else { c.image.source.clone() },
                hash: c.image.hash.clone(),
            }),
            kprobes: s.kprobes.iter().map(KprobeReport::of).collect(),
            cpus: s.config.cpus,
            fetch: s.config.fetch.to_string(),
            strategy: s.strategy.to_string(),
            seed: s.seed,
            stepping: (s.config.stepping != sim_core::Stepping::Single).then(|| s.config.stepping.to_string()),
        }
    }

    /// One line of text.
    pub fn line(s: &Scenario) -> String {
        format!(
            "{} kernel={} cpus={} fetch={} site={} strategy={} seed={}",
            s.label(),
            s.config.kernel,
            s.config.cpus,
            s.config.fetch,
            s.workload.site,
            s.strategy,
            s.seed
        ) + if s.config.stepping == sim_core::Stepping::Single { "" } else { " stepping=batched" }
    }
}

/// A kprobe the scenario registers, as reports show it.
#[derive(Serialize)]
struct KprobeReport {
    /// The probed instruction, as a hex string.
    addr: String,
    /// Armed from the start (for one registered for the whole run).
    armed: bool,
    /// How many times it arms and disarms itself (0: registered for the whole run).
    cycles: u32,
}

impl KprobeReport {
    fn of(k: &sim_core::Kprobe) -> Self {
        KprobeReport { addr: format!("{:#x}", k.addr), armed: k.armed, cycles: k.cycles }
    }
}

/// What became of an artifact.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Saved {
    /// Where it was written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact: Option<String>,
    /// Why it could not be written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub artifact_error: Option<String>,
}

impl Saved {
    /// Writes `artifact` as `name` under the artifact directory, unless told not to. A failure
    /// is reported on stderr and in the result; it never changes the verdict.
    pub fn write(opts: &ArtifactOpts, artifact: Option<&Artifact>, name: &str) -> Saved {
        let (false, Some(artifact)) = (opts.no_artifact, artifact) else { return Saved::default() };
        let path: PathBuf = opts.artifact_dir.join(name);
        match scenarios::output::ensure_dir(&opts.artifact_dir).and_then(|()| artifact.save(&path)) {
            Ok(()) => Saved { artifact: Some(path.display().to_string()), artifact_error: None },
            Err(e) => {
                let msg = format!("could not write the artifact {}: {e}", path.display());
                out::warn(&format!("warning: {msg}"));
                Saved { artifact: None, artifact_error: Some(msg) }
            }
        }
    }

    /// The text lines for it.
    pub fn print(&self) -> Result<(), Failure> {
        if let Some(p) = &self.artifact {
            out::line(format!("artifact   {p}"))?;
            out::line(format!("replay     pokesim replay {p}"))?;
        }
        if let Some(e) = &self.artifact_error {
            out::line(format!("artifact   not written: {e}"))?;
        }
        Ok(())
    }
}
