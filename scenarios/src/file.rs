//! Scenario files (TOML): everything `pokesim run` can express, plus an expected verdict and,
//! for corpus entries, a recorded decision list. Unknown fields are errors, and every error
//! names the file, the line and the field.
//!
//! ```toml
//! name = "b3-seed-kprobe"            # optional
//! description = "bug B3"             # optional
//! expect = "handler-fault"           # "pass" (default) or a violation kind
//! protocol = "seed"                  # default "seed"
//! cpus = 4                           # 1..=64, default 2
//! mutants = []                       # names from `pokesim list`
//! seed = 0                           # first seed
//! runs = 1                           # seeds seed..seed+runs
//! strategy = "random"                # random, pct (depth 3), pct:D, replay
//! steps = 1000000                    # tick budget
//! unsafe_multi_insn = false
//! program = ["begin-batch", "..."]   # optional custom patcher program (one batch)
//! decisions = [[3, 2], [2, 0]]       # optional: replay exactly these choices ([options, choice])
//! trace_hash = "3ab66d7520a36451"    # optional: the replay must produce exactly this trace
//!
//! [workload]
//! kind = "ftrace"                    # ftrace, static_call, jump_label, jcc, optprobe, batch, multi_insn
//! site = "aligned"                   # aligned, cross16, cross64, cross-page, or a line offset "0".."63"
//! rounds = 24
//! sites = 16                         # batch
//! order = "ascending"                # batch
//! tail = true                        # static_call
//! kprobe = false                     # a foreign kprobe on the loop head
//!
//! [fetch]
//! preset = "pessimistic"             # pessimistic, block16, line64, snapshot
//! unit = "byte"                      # overrides the preset's refresh unit
//! stores = "byte"                    # byte, aligned8, whole
//! monotone = true
//! staleness = 8                      # own steps; omit for unbounded
//!
//! [[kprobes]]                        # foreign INT3 owners at any instruction
//! addr = 0x400000
//! armed = true
//! ```

use std::fmt;
use std::ops::Range;
use std::path::Path;
use std::str::FromStr;

use cpu_model::{FetchModel, FetchUnit, Staleness, StoreGranularity};
use serde::Deserialize;
use sim_core::config::MAX_CPUS;
use sim_core::program::OpTemplate;
use sim_core::sched::Strategy;
use sim_core::{Decision, Kprobe, Mutant, Protocol, RunConfig, SimError, ViolationKind};
use toml::Spanned;

use crate::scenario::Scenario;
use crate::workload::{SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec};

/// A problem with a scenario file, located.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FileError {
    /// The file (or `<inline>`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field, when known.
    pub field: Option<String>,
    /// What is wrong.
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for FileError {}

/// What a scenario expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expectation {
    /// No violation on any of its seeds.
    Pass,
    /// A violation of this kind.
    Violation(ViolationKind),
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Pass => f.write_str("pass"),
            Expectation::Violation(k) => write!(f, "{k}"),
        }
    }
}

impl FromStr for Expectation {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "pass" {
            return Ok(Expectation::Pass);
        }
        s.parse::<ViolationKind>().map(Expectation::Violation).map_err(|e| format!("{e}, or pass"))
    }
}

/// A parsed scenario file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioFile {
    /// Name (defaults to the file stem).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Expected result.
    pub expect: Expectation,
    /// The scenario (its seed is the first seed).
    pub scenario: Scenario,
    /// Seeds to run (`seed..seed+runs`).
    pub runs: u64,
    /// A recorded decision list to replay instead of the seed.
    pub decisions: Option<Vec<Decision>>,
    /// The trace hash the replay must reproduce, bit for bit.
    pub trace_hash: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<String>,
    description: Option<String>,
    expect: Option<Spanned<String>>,
    protocol: Option<Spanned<String>>,
    cpus: Option<Spanned<i64>>,
    #[serde(default)]
    mutants: Vec<Spanned<String>>,
    seed: Option<Spanned<i64>>,
    runs: Option<Spanned<i64>>,
    strategy: Option<Spanned<String>>,
    steps: Option<Spanned<i64>>,
    #[serde(default)]
    unsafe_multi_insn: bool,
    program: Option<Vec<Spanned<String>>>,
    decisions: Option<Spanned<Vec<(i64, i64)>>>,
    trace_hash: Option<Spanned<String>>,
    workload: Spanned<RawWorkload>,
    #[serde(default)]
    fetch: RawFetch,
    #[serde(default)]
    kprobes: Vec<Spanned<RawKprobe>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    kind: Spanned<String>,
    site: Option<Spanned<String>>,
    rounds: Option<Spanned<i64>>,
    sites: Option<Spanned<i64>>,
    order: Option<Spanned<String>>,
    tail: Option<bool>,
    kprobe: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    preset: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    stores: Option<Spanned<String>>,
    monotone: Option<bool>,
    staleness: Option<Spanned<i64>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKprobe {
    addr: i64,
    #[serde(default = "yes")]
    armed: bool,
}

fn yes() -> bool {
    true
}

struct Locator<'a> {
    file: &'a str,
    src: &'a str,
}

impl Locator<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.src[..span.start.min(self.src.len())].matches('\n').count() + 1
    }

    fn err(&self, span: Option<Range<usize>>, field: &str, message: impl Into<String>) -> FileError {
        FileError {
            file: self.file.to_string(),
            line: span.map(|s| self.line(s)),
            field: Some(field.to_string()),
            message: message.into(),
        }
    }

    /// Parses a spanned string with `FromStr`, locating the error.
    fn parse<T, E: fmt::Display>(
        &self,
        v: &Spanned<String>,
        field: &str,
        f: impl Fn(&str) -> Result<T, E>,
    ) -> Result<T, FileError> {
        f(v.get_ref()).map_err(|e| self.err(Some(v.span()), field, e.to_string()))
    }

    fn range(&self, v: &Spanned<i64>, field: &str, lo: i64, hi: i64) -> Result<i64, FileError> {
        let x = *v.get_ref();
        if x < lo || x > hi {
            return Err(self.err(Some(v.span()), field, format!("{x} is out of range ({lo}..={hi})")));
        }
        Ok(x)
    }
}

fn sim(e: SimError) -> String {
    e.to_string()
}

impl ScenarioFile {
    /// Reads and parses a scenario file.
    pub fn load(path: &Path) -> Result<Self, FileError> {
        let file = path.display().to_string();
        let src = std::fs::read_to_string(path).map_err(|e| FileError {
            file: file.clone(),
            line: None,
            field: None,
            message: e.to_string(),
        })?;
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        Self::parse(&file, &src, &stem)
    }

    /// Parses scenario TOML; `file` names it in errors, `default_name` is used without `name`.
    pub fn parse(file: &str, src: &str, default_name: &str) -> Result<Self, FileError> {
        let loc = Locator { file, src };
        let raw: Raw = toml::from_str(src).map_err(|e| {
            let line = e.span().map(|s| loc.line(s));
            FileError { file: file.into(), line, field: None, message: e.message().trim().to_string() }
        })?;
        let w = raw.workload.get_ref();
        let kind = loc.parse(&w.kind, "workload.kind", |s| s.parse::<WorkloadKind>().map_err(sim))?;
        let mut workload = WorkloadSpec::new(kind);
        if let Some(s) = &w.site {
            workload.site = loc.parse(s, "workload.site", |s| s.parse::<SitePlacement>().map_err(sim))?;
        }
        if let Some(r) = &w.rounds {
            workload.rounds = loc.range(r, "workload.rounds", 0, 100_000)? as u32;
        }
        if let Some(n) = &w.sites {
            workload.sites = loc.range(n, "workload.sites", 1, crate::workload::MAX_BATCH_SITES as i64)? as u32;
        }
        if let Some(o) = &w.order {
            workload.order = loc.parse(o, "workload.order", |s| s.parse::<SiteOrder>().map_err(sim))?;
        }
        workload.tail = w.tail.unwrap_or(workload.tail);
        workload.kprobe = w.kprobe.unwrap_or(false);

        let mut config = RunConfig::default();
        if let Some(p) = &raw.protocol {
            config.protocol = loc.parse(p, "protocol", |s| s.parse::<Protocol>().map_err(sim))?;
        }
        if let Some(c) = &raw.cpus {
            config.cpus = loc.range(c, "cpus", 1, MAX_CPUS as i64)? as usize;
        }
        for m in &raw.mutants {
            let mutant = loc.parse(m, "mutants", |s| s.parse::<Mutant>().map_err(sim))?;
            if !mutant.applies_to(config.protocol) {
                return Err(loc.err(
                    Some(m.span()),
                    "mutants",
                    format!("'{mutant}' does not apply to {}", config.protocol),
                ));
            }
            config.mutants.push(mutant);
        }
        if let Some(s) = &raw.steps {
            config.max_ticks = loc.range(s, "steps", 1, i64::MAX)? as u64;
        }
        config.unsafe_multi_insn = raw.unsafe_multi_insn;
        if let Some(ops) = &raw.program {
            let t = ops
                .iter()
                .map(|o| loc.parse(o, "program", |s| s.parse::<OpTemplate>().map_err(sim)))
                .collect::<Result<Vec<_>, _>>()?;
            sim_core::program::validate(&t).map_err(|e| loc.err(ops.first().map(|o| o.span()), "program", sim(e)))?;
            if !config.mutants.is_empty() {
                return Err(loc.err(None, "program", "a custom program cannot also take mutants"));
            }
            config.program = Some(t);
        }
        config.fetch = fetch(&loc, &raw.fetch)?;
        let strategy = match &raw.strategy {
            Some(s) => loc.parse(s, "strategy", |s| s.parse::<Strategy>())?,
            None => Strategy::Random,
        };
        let seed = match &raw.seed {
            Some(s) => loc.range(s, "seed", 0, i64::MAX)? as u64,
            None => 0,
        };
        let runs = match &raw.runs {
            Some(r) => loc.range(r, "runs", 1, 1_000_000)? as u64,
            None => 1,
        };
        let expect = match &raw.expect {
            Some(e) => loc.parse(e, "expect", |s| s.parse::<Expectation>())?,
            None => Expectation::Pass,
        };
        let decisions = match &raw.decisions {
            None => None,
            Some(d) => {
                let mut list = Vec::with_capacity(d.get_ref().len());
                for &(of, choice) in d.get_ref() {
                    if of < 2 || of > u32::MAX as i64 || choice < 0 || choice >= of {
                        return Err(loc.err(
                            Some(d.span()),
                            "decisions",
                            format!("[{of}, {choice}] is not [options >= 2, choice < options]"),
                        ));
                    }
                    list.push(Decision { of: of as u32, choice: choice as u32 });
                }
                Some(list)
            }
        };
        if let Some(h) = &raw.trace_hash {
            let ok = h.get_ref().len() == 16 && h.get_ref().chars().all(|c| c.is_ascii_hexdigit());
            if !ok {
                return Err(loc.err(Some(h.span()), "trace_hash", "must be 16 hex digits"));
            }
            if decisions.is_none() {
                return Err(loc.err(Some(h.span()), "trace_hash", "needs `decisions` (a seed run has no fixed trace)"));
            }
        }
        let mut kprobes = Vec::new();
        for k in &raw.kprobes {
            let r = k.get_ref();
            if r.addr < 0 {
                return Err(loc.err(Some(k.span()), "kprobes.addr", "must be a guest address"));
            }
            kprobes.push(Kprobe { addr: r.addr as u64, armed: r.armed });
        }
        let scenario = Scenario { workload, config, strategy, seed, kprobes };
        Ok(ScenarioFile {
            name: raw.name.unwrap_or_else(|| default_name.to_string()),
            description: raw.description,
            expect,
            scenario,
            runs,
            decisions,
            trace_hash: raw.trace_hash.map(|h| h.into_inner()),
        })
    }

    /// The file as TOML (what `load` reads back to an equal value).
    pub fn to_toml(&self) -> String {
        let s = &self.scenario;
        let c = &s.config;
        let mut out = String::new();
        let q = |v: &str| toml::Value::String(v.to_string()).to_string();
        out.push_str(&format!("name = {}\n", q(&self.name)));
        if let Some(d) = &self.description {
            out.push_str(&format!("description = {}\n", q(d)));
        }
        out.push_str(&format!("expect = {}\n", q(&self.expect.to_string())));
        out.push_str(&format!("protocol = {}\n", q(c.protocol.name())));
        out.push_str(&format!("cpus = {}\n", c.cpus));
        let mutants: Vec<String> = c.mutants.iter().map(|m| q(m.name())).collect();
        out.push_str(&format!("mutants = [{}]\n", mutants.join(", ")));
        out.push_str(&format!("seed = {}\nruns = {}\n", s.seed, self.runs));
        out.push_str(&format!("strategy = {}\nsteps = {}\n", q(&s.strategy.to_string()), c.max_ticks));
        out.push_str(&format!("unsafe_multi_insn = {}\n", c.unsafe_multi_insn));
        if let Some(p) = &c.program {
            let ops: Vec<String> = p.iter().map(|o| q(o.name())).collect();
            out.push_str(&format!("program = [{}]\n", ops.join(", ")));
        }
        if let Some(d) = &self.decisions {
            let items: Vec<String> = d.iter().map(|d| format!("[{}, {}]", d.of, d.choice)).collect();
            out.push_str("decisions = [");
            for (i, chunk) in items.chunks(16).enumerate() {
                out.push_str(if i == 0 { "\n    " } else { ",\n    " });
                out.push_str(&chunk.join(", "));
            }
            out.push_str("\n]\n");
        }
        if let Some(h) = &self.trace_hash {
            out.push_str(&format!("trace_hash = {}\n", q(h)));
        }
        let w = &s.workload;
        out.push_str(&format!(
            "\n[workload]\nkind = {}\nsite = {}\nrounds = {}\n",
            q(w.kind.name()),
            q(&w.site.to_string()),
            w.rounds
        ));
        if w.kind == WorkloadKind::Batch {
            out.push_str(&format!("sites = {}\norder = {}\n", w.sites, q(w.order.name())));
        }
        if w.kind == WorkloadKind::StaticCall {
            out.push_str(&format!("tail = {}\n", w.tail));
        }
        out.push_str(&format!("kprobe = {}\n", w.kprobe));
        let f = &c.fetch;
        out.push_str(&format!(
            "\n[fetch]\nunit = {}\nstores = {}\nmonotone = {}\n",
            q(f.fetch.name()),
            q(f.stores.name()),
            f.monotone
        ));
        if let Staleness::Bounded(k) = f.staleness {
            out.push_str(&format!("staleness = {k}\n"));
        }
        for k in &s.kprobes {
            out.push_str(&format!("\n[[kprobes]]\naddr = {:#x}\narmed = {}\n", k.addr, k.armed));
        }
        out
    }
}

fn fetch(loc: &Locator<'_>, f: &RawFetch) -> Result<FetchModel, FileError> {
    let mut m = match &f.preset {
        Some(p) => loc.parse(p, "fetch.preset", |s| {
            FetchModel::preset(s)
                .ok_or_else(|| format!("unknown preset '{s}' (valid: {})", FetchModel::PRESETS.join(", ")))
        })?,
        None => FetchModel::PESSIMISTIC,
    };
    if let Some(u) = &f.unit {
        m.fetch = loc.parse(u, "fetch.unit", |s| s.parse::<FetchUnit>())?;
    }
    if let Some(s) = &f.stores {
        m.stores = loc.parse(s, "fetch.stores", |s| s.parse::<StoreGranularity>())?;
    }
    if let Some(mono) = f.monotone {
        m.monotone = mono;
    }
    if let Some(k) = &f.staleness {
        m.staleness = Staleness::Bounded(loc.range(k, "fetch.staleness", 1, u32::MAX as i64)? as u32);
    }
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "[workload]\nkind = \"ftrace\"\n";

    #[test]
    fn a_minimal_file_gets_the_defaults() {
        let f = ScenarioFile::parse("m.toml", MINIMAL, "m").unwrap();
        assert_eq!(f.name, "m");
        assert_eq!(f.expect, Expectation::Pass);
        assert_eq!(f.scenario.config.cpus, 2);
        assert_eq!(f.scenario.config.protocol, Protocol::Seed);
        assert_eq!(f.scenario.config.fetch, FetchModel::PESSIMISTIC);
    }

    #[test]
    fn to_toml_round_trips() {
        let src = "name = \"x\"\nexpect = \"torn-fetch\"\nprotocol = \"linux-6.16\"\ncpus = 3\nmutants = [\"no-sync-after-int3\"]\n\
                   seed = 9\nruns = 4\nstrategy = \"pct:5\"\ndecisions = [[2, 1], [3, 0]]\ntrace_hash = \"00112233445566ff\"\n[workload]\nkind = \"batch\"\nsite = \"cross64\"\nsites = 20\n\
                   order = \"interleaved\"\nkprobe = true\n[fetch]\npreset = \"line64\"\nstaleness = 7\n[[kprobes]]\naddr = 0x400040\n";
        let f = ScenarioFile::parse("x.toml", src, "x").unwrap();
        let again = ScenarioFile::parse("y.toml", &f.to_toml(), "y").unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let cases = [
            ("[workload]\nkind = \"ftrace\"\nbogus = 1\n", 3, None, "unknown field `bogus`"),
            ("cpus = 0\n[workload]\nkind = \"ftrace\"\n", 1, Some("cpus"), "0 is out of range (1..=64)"),
            ("cpus = 65\n[workload]\nkind = \"ftrace\"\n", 1, Some("cpus"), "65 is out of range"),
            ("mutants = [\"nope\"]\n[workload]\nkind = \"ftrace\"\n", 1, Some("mutants"), "valid: no-sync-after-int3"),
            ("protocol = \"linux-9\"\n[workload]\nkind = \"ftrace\"\n", 1, Some("protocol"), "valid: linux-5.4"),
            ("[workload]\nkind = \"nope\"\n", 2, Some("workload.kind"), "unknown workload 'nope'"),
            ("[workload]\nkind = \"ftrace\"\nsite = \"99\"\n", 3, Some("workload.site"), "not a placement"),
            ("expect = \"crash\"\n[workload]\nkind = \"ftrace\"\n", 1, Some("expect"), "or pass"),
            ("[workload]\nkind = \"ftrace\"\n[fetch]\nunit = \"word\"\n", 4, Some("fetch.unit"), "unknown fetch unit"),
            ("decisions = [[1, 0]]\n[workload]\nkind = \"ftrace\"\n", 1, Some("decisions"), "not [options >= 2"),
            ("program = [\"sync\"]\n[workload]\nkind = \"ftrace\"\n", 1, Some("program"), "end with 'end-batch'"),
            ("cpus = \n", 1, None, ""),
        ];
        for (src, line, field, msg) in cases {
            let e = ScenarioFile::parse("f.toml", src, "f").unwrap_err();
            assert_eq!(e.line, Some(line), "{src:?}: {e}");
            assert_eq!(e.field.as_deref(), field, "{src:?}: {e}");
            assert!(e.to_string().starts_with("f.toml:"), "{e}");
            assert!(e.message.contains(msg), "{src:?}: {e}");
        }
    }
}
