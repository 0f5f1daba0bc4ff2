//! Scenario files (TOML): everything `pokesim run` can express, plus an expected verdict and,
//! for corpus entries, a recorded decision list. Unknown fields are errors, and every error
//! names the file, the line and the field. A file is read into a [`ScenarioSpec`] (each value
//! tagged with its line) and validated by [`ScenarioSpec::build`], the one validation every
//! input goes through.
//!
//! ```toml
//! name = "b3-seed-kprobe"            # optional
//! description = "bug B3"             # optional
//! expect = "handler-fault"           # "pass" (default) or a violation kind
//! protocol = "seed"                  # default "seed"
//! cpus = 4                           # 1..=256, default 2
//! mutants = []                       # names from `pokesim list`
//! seed = 0                           # first seed
//! runs = 1                           # seeds seed..seed+runs
//! strategy = "random"                # random, pct (depth 3), pct:D, replay
//! ticks = 1000000                    # tick budget (default: grows with the scenario; `steps` is its old name)
//! iterations = 1                     # optional: each vCPU stops after this many loop passes
//! drain = 32                         # guest steps per vCPU after the patcher finished
//! unsafe_multi_insn = false
//! stepping = "batched"               # optional: a guest step's local steps in one emu_start (§2.5b)
//! program = ["begin-batch", "..."]   # optional custom patcher program (one batch)
//! decisions = [[3, 2], [2, 1]]       # optional: replay exactly these choices ([options, choice])
//! zeros_after = 40                   # then option 0 at each of the next 40 choices, and stop
//! trace_hash = "3ab66d7520a36451"    # optional: the replay must produce exactly this trace
//!
//! [workload]
//! kind = "ftrace"                    # a workload or a variant (`pokesim list`): ftrace, ftrace+kprobe, ...
//! site = "aligned"                   # aligned, cross16, cross64, cross-page, or a line offset "0".."63"
//! rounds = 24
//! sites = 16                         # batch
//! order = "ascending"                # batch
//! tail = true                        # static_call
//! kprobe = false                     # a foreign kprobe on the loop head: false, true (armed
//!                                    # all run), "cycling" (arms/disarms itself every round,
//!                                    # racing the patcher), "entry" (cycling, on ftrace's site)
//!
//! [fetch]
//! preset = "pessimistic"             # pessimistic, block16, line64, snapshot
//! unit = "byte"                      # overrides the preset's refresh unit
//! stores = "byte"                    # byte, aligned8, whole
//! monotone = true
//! staleness = 8                      # own steps; omit for unbounded
//! own_stores = "serialize"           # the patching CPU's own text stores reach its fetches at its
//!                                    # next serialisation (default) or at once ("jump"); needs
//!                                    # [interrupts] on the patching CPU
//!
//! [kernel]                           # the kernel configuration (default: x86_64_defconfig)
//! CONFIG_KPROBES = true              # do_int3() asks kprobe_int3_handler() after the patching handler
//!
//! [memory]                           # the compiled protocol's kernel data (DESIGN.md §2.16)
//! model = "tso"                      # tso (default for a C protocol) or sc; Rust models: sc only
//!
//! [interrupts]                       # an interrupt source (DESIGN.md §2.17); absent: none
//! cpus = "vcpus"                     # vcpus (default), patcher (the patching CPU), all
//! budget = 2                         # deliveries per run: required, 1..=64
//! handler = "call-site"              # call-site (default: calls a function through a patched site), empty
//!
//! [[kprobes]]                        # foreign INT3 owners at any instruction
//! addr = 0x400000
//! armed = true                       # armed for the whole run
//! cycles = 3                         # or: register, arm, disarm, unregister itself 3 times
//! ```

use std::fmt;
use std::ops::Range;
use std::path::Path;

use cpu_model::{FetchModel, FetchUnit, Staleness, StoreGranularity};
use serde::Deserialize;
use sim_core::program::Step;
use sim_core::sched::Strategy;
use sim_core::{Kprobe, Mutant, Plan, Protocol};
use toml::Spanned;

use crate::catalogue;
pub use crate::entry::{Expectation, KindSet, ScenarioFile};
use crate::input::{read_input, InputError, Origin, MAX_SCENARIO_BYTES};
use crate::spec::{Given, ScenarioSpec};
use crate::workload::asm_text::parse_hex;
use crate::workload::custom::{CodeBlock, InsnText, SiteAt, UserSite};
use crate::workload::{ForeignKprobe, SiteOrder, SitePlacement, WorkloadKind, MAX_ROUNDS};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Raw {
    name: Option<Spanned<String>>,
    description: Option<Spanned<String>>,
    expect: Option<Spanned<String>>,
    /// A version name, or a table `{ version, source, c, hash }` (the protocol as C).
    protocol: Option<Spanned<toml::Value>>,
    cpus: Option<Spanned<i64>>,
    mutants: Option<Spanned<Vec<Spanned<String>>>>,
    seed: Option<Spanned<i64>>,
    runs: Option<Spanned<i64>>,
    strategy: Option<Spanned<String>>,
    /// The tick budget; `steps` is its old spelling, still read.
    #[serde(alias = "steps")]
    ticks: Option<Spanned<i64>>,
    iterations: Option<Spanned<i64>>,
    drain: Option<Spanned<i64>>,
    unsafe_multi_insn: Option<Spanned<bool>>,
    /// `single` (the default) or `batched` (DESIGN.md §2.5b).
    stepping: Option<Spanned<String>>,
    program: Option<Spanned<Vec<Spanned<String>>>>,
    decisions: Option<Spanned<Vec<(i64, i64)>>>,
    zeros_after: Option<Spanned<i64>>,
    trace_hash: Option<Spanned<String>>,
    workload: Option<Spanned<RawWorkload>>,
    fetch: Option<RawFetch>,
    kernel: Option<RawKernel>,
    memory: Option<RawMemory>,
    interrupts: Option<Spanned<RawInterrupts>>,
    #[serde(default)]
    kprobes: Vec<Spanned<RawKprobe>>,
    #[serde(default)]
    sites: Vec<Spanned<RawSite>>,
    code: Option<Spanned<RawCode>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSite {
    at: Option<Spanned<RawAt>>,
    old: Option<Spanned<String>>,
    old_hex: Option<Spanned<String>>,
    new: Option<Spanned<String>>,
    new_hex: Option<Spanned<String>>,
}

/// `at = "label"` or `at = 0x400100`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawAt {
    Addr(i64),
    Label(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCode {
    asm: String,
    entry: String,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawKernel {
    #[serde(rename = "CONFIG_KPROBES")]
    kprobes: Option<Spanned<bool>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMemory {
    model: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInterrupts {
    cpus: Option<Spanned<String>>,
    budget: Option<Spanned<i64>>,
    handler: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawWorkload {
    kind: Option<Spanned<String>>,
    site: Option<Spanned<String>>,
    rounds: Option<Spanned<i64>>,
    sites: Option<Spanned<i64>>,
    order: Option<Spanned<String>>,
    tail: Option<Spanned<bool>>,
    kprobe: Option<Spanned<RawChoice>>,
}

/// `kprobe = false | true | "armed" | "cycling" | "entry"`.
#[derive(Deserialize, Clone)]
#[serde(untagged)]
enum RawChoice {
    Flag(bool),
    Name(String),
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawFetch {
    preset: Option<Spanned<String>>,
    unit: Option<Spanned<String>>,
    stores: Option<Spanned<String>>,
    monotone: Option<Spanned<bool>>,
    staleness: Option<Spanned<i64>>,
    own_stores: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKprobe {
    addr: Spanned<i64>,
    #[serde(default = "yes")]
    armed: bool,
    cycles: Option<Spanned<i64>>,
}

fn yes() -> bool {
    true
}

/// Turns spans into lines and parse failures into located errors.
struct Lines<'a> {
    file: &'a str,
    src: &'a str,
}

impl Lines<'_> {
    fn line(&self, span: Range<usize>) -> usize {
        self.src[..span.start.min(self.src.len())].matches('\n').count() + 1
    }

    /// The dotted key whose value covers `span` (`workload.rounds`), read from the source:
    /// the key on the span's line, under the last `[table]` header before it.
    fn key_at(&self, span: Range<usize>) -> Option<String> {
        let start = span.start.min(self.src.len());
        let line_start = self.src[..start].rfind('\n').map_or(0, |i| i + 1);
        let line = self.src[line_start..].lines().next()?;
        let key = line.split_once('=')?.0.trim();
        if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
            return None;
        }
        let table = self.src[..line_start].lines().rev().find_map(|l| {
            let t = l.trim();
            t.starts_with('[').then(|| t.trim_matches(|c| c == '[' || c == ']').trim().to_string())
        });
        Some(match table {
            Some(t) if !t.is_empty() => format!("{t}.{key}"),
            _ => key.to_string(),
        })
    }

    fn origin<T>(&self, v: &Spanned<T>) -> Origin {
        Origin::Line(self.line(v.span()))
    }

    /// A spanned value as given.
    fn given<T: Clone>(&self, v: &Option<Spanned<T>>) -> Option<Given<T>> {
        v.as_ref().map(|v| Given::new(v.get_ref().clone(), self.origin(v)))
    }

    /// A spanned string parsed with `FromStr`, the error located at its line.
    fn parse<T, E: fmt::Display>(
        &self,
        v: &Option<Spanned<String>>,
        field: &str,
        f: impl Fn(&str) -> Result<T, E>,
    ) -> Result<Option<Given<T>>, InputError> {
        let Some(v) = v else { return Ok(None) };
        let origin = self.origin(v);
        match f(v.get_ref()) {
            Ok(x) => Ok(Some(Given::new(x, origin))),
            Err(e) => Err(InputError::at(self.file, &origin, field, e.to_string())),
        }
    }
}

/// `protocol = "linux-5.5"`, or the protocol as C: `[protocol] version = "linux-5.5"` with
/// `source = "file.c"` (relative to the scenario file) or `c = true` (the built-in file), and
/// the `hash` an artifact recorded.
fn protocol(l: &Lines<'_>, raw: &Raw, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    use crate::csource::ProtocolSource;
    let Some(v) = &raw.protocol else { return Ok(()) };
    let origin = l.origin(v);
    let bad = |field: &str, m: String| InputError::at(l.file, &origin, field, m);
    let version = |s: &str| s.parse::<Protocol>().map(|p| Some(Given::new(p, origin.clone())));
    let table = match v.get_ref() {
        toml::Value::String(name) => {
            spec.protocol = version(name).map_err(|e| bad("protocol", e))?;
            return Ok(());
        }
        toml::Value::Table(t) => t,
        _ => return Err(bad("protocol", "a version name or a table { version, source, c, hash }".into())),
    };
    let string = |key: &str| match table.get(key) {
        None => Ok(None),
        Some(toml::Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(bad(&format!("protocol.{key}"), "must be a string".into())),
    };
    if let Some(key) = table.keys().find(|k| !["version", "source", "c", "hash"].contains(&k.as_str())) {
        return Err(bad(&format!("protocol.{key}"), "unknown field (valid: version, source, c, hash)".into()));
    }
    if let Some(name) = string("version")? {
        spec.protocol = version(&name).map_err(|e| bad("protocol.version", e))?;
    }
    let c = match table.get("c") {
        None => false,
        Some(toml::Value::Boolean(b)) => *b,
        Some(_) => return Err(bad("protocol.c", "must be true or false".into())),
    };
    let source = match (string("source")?, c) {
        (Some(_), true) => {
            return Err(bad("protocol.c", "give `source` (a file) or `c = true` (the built-in file), not both".into()))
        }
        (Some(path), false) => {
            let dir = Path::new(l.file).parent().unwrap_or(Path::new(""));
            let path = dir.join(path);
            let abs =
                std::fs::canonicalize(&path).map_err(|e| bad("protocol.source", format!("{}: {e}", path.display())))?;
            Some(ProtocolSource::File(abs))
        }
        (None, true) => Some(ProtocolSource::Builtin),
        (None, false) => None,
    };
    spec.source = source.map(|s| Given::new(s, origin.clone()));
    spec.source_hash = string("hash")?.map(|h| Given::new(h, origin.clone()));
    if spec.source_hash.is_some() && spec.source.is_none() {
        return Err(bad("protocol.hash", "a hash without a `source` or `c = true` has nothing to check".into()));
    }
    Ok(())
}

/// Reads a scenario file into a spec (not yet validated): the command line lays its flags
/// over it before [`ScenarioSpec::build`].
pub fn read_spec(path: &Path) -> Result<ScenarioSpec, InputError> {
    let src = read_input(path, MAX_SCENARIO_BYTES)?;
    parse_spec(&path.display().to_string(), &src)
}

/// Parses scenario TOML into a spec; `file` names it in errors.
pub(crate) fn parse_spec(file: &str, src: &str) -> Result<ScenarioSpec, InputError> {
    let l = Lines { file, src };
    let raw: Raw = toml::from_str(src).map_err(|e| InputError {
        file: file.into(),
        line: e.span().map(|s| l.line(s.clone())),
        field: e.span().and_then(|s| l.key_at(s)),
        flag: None,
        message: e.message().trim().to_string(),
    })?;
    let mut spec = ScenarioSpec {
        name: l.given(&raw.name),
        description: l.given(&raw.description),
        expect: l.parse(&raw.expect, "expect", str::parse::<Expectation>)?,
        cpus: l.given(&raw.cpus),
        seed: l.given(&raw.seed),
        runs: l.given(&raw.runs),
        strategy: l.parse(&raw.strategy, "strategy", str::parse::<Strategy>)?,
        ticks: l.given(&raw.ticks),
        iterations: l.given(&raw.iterations),
        drain: l.given(&raw.drain),
        unsafe_multi_insn: l.given(&raw.unsafe_multi_insn),
        stepping: l.parse(&raw.stepping, "stepping", str::parse::<sim_core::Stepping>)?,
        decisions: l.given(&raw.decisions),
        zeros_after: l.given(&raw.zeros_after),
        trace_hash: l.given(&raw.trace_hash),
        ..ScenarioSpec::default()
    };
    if let Some(list) = &raw.mutants {
        spec.mutants_origin = Some(l.origin(list));
        for m in list.get_ref() {
            spec.mutants.extend(l.parse(&Some(m.clone()), "mutants", str::parse::<Mutant>)?);
        }
    }
    if let Some(ops) = &raw.program {
        let mut program = Vec::new();
        for o in ops.get_ref() {
            program.extend(l.parse(&Some(o.clone()), "program", str::parse::<Step>)?.map(|g| g.value));
        }
        spec.program = Some(Given::new(program, l.origin(ops)));
    }
    protocol(&l, &raw, &mut spec)?;
    workload(&l, &raw, &mut spec)?;
    sites(&l, &raw, &mut spec)?;
    kprobes(&l, &raw, &mut spec)?;
    fetch(&l, raw.fetch.unwrap_or_default(), &mut spec)?;
    let kernel = raw.kernel.unwrap_or_default();
    if let Some(g) = l.given(&kernel.kprobes) {
        spec.kernel.options.push(Given::new(("CONFIG_KPROBES".to_string(), g.value), g.origin));
    }
    let memory = raw.memory.unwrap_or_default();
    spec.memory.model = l.parse(&memory.model, "memory.model", str::parse::<cpu_model::MemoryModel>)?;
    interrupts(&l, raw.interrupts.as_ref(), &mut spec)?;
    if let Some(c) = &raw.code {
        let code = CodeBlock { asm: c.get_ref().asm.clone(), entry: c.get_ref().entry.clone() };
        spec.code = Some(Given::new(code, l.origin(c)));
    }
    Ok(spec)
}

/// `[[kprobes]]`: each one's address and, for one that arms and disarms itself, its cycles.
fn kprobes(l: &Lines<'_>, raw: &Raw, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    let file = l.file;
    for (i, k) in raw.kprobes.iter().enumerate() {
        let at = l.origin(&k.get_ref().addr);
        let addr = u64::try_from(*k.get_ref().addr.get_ref()).map_err(|_| {
            InputError::at(file, &at, format!("kprobes[{i}]"), "must be a guest address (not negative)")
        })?;
        let cycles = match &k.get_ref().cycles {
            None => 0,
            Some(c) => u32::try_from(*c.get_ref()).ok().filter(|n| (1..=MAX_ROUNDS).contains(n)).ok_or_else(|| {
                InputError::at(
                    file,
                    &l.origin(c),
                    format!("kprobes[{i}].cycles"),
                    format!("{} is out of range (1..={MAX_ROUNDS})", c.get_ref()),
                )
            })?,
        };
        spec.kprobes.push(Given::new(Kprobe { addr, armed: k.get_ref().armed, cycles }, at));
    }
    Ok(())
}

/// `[[sites]]`: where (own code only), and the old and new instruction, each as assembly
/// (`old`, `new`) or hex (`old_hex`, `new_hex`).
fn sites(l: &Lines<'_>, raw: &Raw, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    for (i, s) in raw.sites.iter().enumerate() {
        let origin = l.origin(s);
        let field = |f: &str| format!("sites[{i}].{f}");
        let r = s.get_ref();
        let text = |asm: &Option<Spanned<String>>, hex: &Option<Spanned<String>>, name: &str| match (asm, hex) {
            (Some(a), None) => Ok(Some(InsnText::Asm(a.get_ref().trim().to_string()))),
            (None, Some(h)) => parse_hex(h.get_ref())
                .map(|b| Some(InsnText::Hex(b)))
                .map_err(|e| InputError::at(l.file, &l.origin(h), field(&format!("{name}_hex")), e)),
            (None, None) => Ok(None),
            (Some(a), Some(_)) => Err(InputError::at(
                l.file,
                &l.origin(a),
                field(name),
                format!("give `{name}` or `{name}_hex`, not both"),
            )),
        };
        let old = text(&r.old, &r.old_hex, "old")?;
        let new = text(&r.new, &r.new_hex, "new")?.ok_or_else(|| {
            InputError::at(l.file, &origin, field("new"), "missing: the instruction the rounds write")
        })?;
        let at = match &r.at {
            None => None,
            Some(a) => Some(match a.get_ref() {
                RawAt::Label(name) => SiteAt::Label(name.clone()),
                RawAt::Addr(v) => SiteAt::Addr(u64::try_from(*v).map_err(|_| {
                    InputError::at(l.file, &l.origin(a), field("at"), "must be a guest address (not negative)")
                })?),
            }),
        };
        spec.sites.push(Given::new(UserSite { at, old, new }, origin));
    }
    Ok(())
}

fn workload(l: &Lines<'_>, raw: &Raw, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    let Some(w) = &raw.workload else {
        let msg = "missing: a scenario needs a [workload] table with a `kind`";
        return Err(InputError::at(l.file, &Origin::Default, "workload", msg));
    };
    let (origin, w) = (l.origin(w), w.get_ref());
    let Some(kind) = &w.kind else {
        return Err(InputError::at(l.file, &origin, "workload.kind", "missing: name a workload (see `pokesim list`)"));
    };
    let f = &mut spec.workload;
    f.kind = l.parse(&Some(kind.clone()), "workload.kind", catalogue::variant)?;
    f.site = l.parse(&w.site, "workload.site", str::parse::<SitePlacement>)?;
    f.rounds = l.given(&w.rounds);
    f.sites = l.given(&w.sites);
    f.order = l.parse(&w.order, "workload.order", str::parse::<SiteOrder>)?;
    f.tail = l.given(&w.tail);
    f.kprobe = match &w.kprobe {
        None => None,
        Some(v) => {
            let origin = l.origin(v);
            let choice = match v.get_ref() {
                RawChoice::Flag(false) => ForeignKprobe::None,
                RawChoice::Flag(true) => ForeignKprobe::Armed,
                RawChoice::Name(n) => n.parse().map_err(|e: String| {
                    InputError::at(l.file, &origin, "workload.kprobe", format!("{e} (or true, false)"))
                })?,
            };
            Some(Given::new(choice, origin))
        }
    };
    Ok(())
}

/// `[interrupts]` (DESIGN.md §2.17): where the section is, and its fields.
fn interrupts(l: &Lines<'_>, irq: Option<&Spanned<RawInterrupts>>, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    use sim_core::interrupt::{IrqHandler, IrqTargets};
    let Some(irq) = irq else { return Ok(()) };
    let i = irq.get_ref();
    spec.interrupts.section = Some(l.origin(irq));
    spec.interrupts.cpus = l.parse(&i.cpus, "interrupts.cpus", str::parse::<IrqTargets>)?;
    spec.interrupts.budget = l.given(&i.budget);
    spec.interrupts.handler = l.parse(&i.handler, "interrupts.handler", str::parse::<IrqHandler>)?;
    Ok(())
}

fn fetch(l: &Lines<'_>, f: RawFetch, spec: &mut ScenarioSpec) -> Result<(), InputError> {
    let preset = |s: &str| {
        FetchModel::preset(s).ok_or_else(|| format!("unknown preset '{s}' (valid: {})", FetchModel::PRESETS.join(", ")))
    };
    let out = &mut spec.fetch;
    out.preset = l.parse(&f.preset, "fetch.preset", preset)?;
    out.unit = l.parse(&f.unit, "fetch.unit", str::parse::<FetchUnit>)?;
    out.stores = l.parse(&f.stores, "fetch.stores", str::parse::<StoreGranularity>)?;
    out.monotone = l.given(&f.monotone);
    out.staleness = l.given(&f.staleness);
    out.own_stores = l.parse(&f.own_stores, "fetch.own_stores", str::parse::<sim_core::interrupt::OwnStores>)?;
    Ok(())
}

impl ScenarioFile {
    /// Reads, parses and validates a scenario file.
    pub fn load(path: &Path) -> Result<Self, InputError> {
        Self::load_planned(path).map(|(f, _)| f)
    }

    /// [`ScenarioFile::load`], also returning the plan that validated the scenario.
    pub fn load_planned(path: &Path) -> Result<(Self, Plan), InputError> {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        read_spec(path)?.build_planned(&path.display().to_string(), &stem)
    }

    /// Parses and validates scenario TOML; `file` names it in errors, `default_name` is used
    /// without `name`.
    pub fn parse(file: &str, src: &str, default_name: &str) -> Result<Self, InputError> {
        Self::parse_planned(file, src, default_name).map(|(f, _)| f)
    }

    /// [`ScenarioFile::parse`], also returning the plan that validated the scenario.
    pub fn parse_planned(file: &str, src: &str, default_name: &str) -> Result<(Self, Plan), InputError> {
        parse_spec(file, src)?.build_planned(file, default_name)
    }

    /// `protocol = ...`: the version's name, or with a protocol compiled from C the inline
    /// table naming the file (absolute) or the built-in one, and the build's hash.
    fn protocol_toml(&self) -> String {
        let c = &self.scenario.config;
        let q = |v: &str| toml::Value::String(v.to_string()).to_string();
        let Some(compiled) = &c.compiled else { return q(c.protocol.name()) };
        let from = match compiled.builtin {
            false => format!("source = {}", q(&compiled.image.source)),
            true => "c = true".to_string(),
        };
        format!("{{ version = {}, {from}, hash = {} }}", q(c.protocol.name()), q(&compiled.image.hash))
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
        out.push_str(&format!("protocol = {}\n", self.protocol_toml()));
        out.push_str(&format!("cpus = {}\n", c.cpus));
        let mutants: Vec<String> = c.mutants.iter().map(|m| q(m.name())).collect();
        out.push_str(&format!("mutants = [{}]\n", mutants.join(", ")));
        out.push_str(&format!("seed = {}\nruns = {}\n", s.seed, self.runs));
        out.push_str(&format!("strategy = {}\n", q(&s.strategy.to_string())));
        if let Some(t) = c.max_ticks {
            out.push_str(&format!("ticks = {t}\n"));
        }
        if let Some(k) = c.max_iterations {
            out.push_str(&format!("iterations = {k}\n"));
        }
        if c.drain_steps != sim_core::config::DEFAULT_DRAIN {
            out.push_str(&format!("drain = {}\n", c.drain_steps));
        }
        out.push_str(&format!("unsafe_multi_insn = {}\n", c.unsafe_multi_insn));
        if c.stepping != sim_core::Stepping::default() {
            // Only when not the default: a single-stepped recording reads as it always did.
            out.push_str(&format!("stepping = {}\n", q(c.stepping.name())));
        }
        if let Some(p) = &c.program {
            let ops: Vec<String> = p.iter().map(|o| q(o.name())).collect();
            out.push_str(&format!("program = [{}]\n", ops.join(", ")));
        }
        if let Some(d) = &self.decisions {
            let items: Vec<String> = d.prefix.iter().map(|d| format!("[{}, {}]", d.of, d.choice)).collect();
            out.push_str("decisions = [");
            for (i, chunk) in items.chunks(16).enumerate() {
                out.push_str(if i == 0 { "\n    " } else { ",\n    " });
                out.push_str(&chunk.join(", "));
            }
            out.push_str("\n]\n");
            out.push_str(&format!("zeros_after = {}\n", d.zeros_after));
        }
        if let Some(h) = &self.trace_hash {
            out.push_str(&format!("trace_hash = {}\n", q(h)));
        }
        tables_toml(s, &mut out);
        if let Some(custom) = &s.custom {
            custom_toml(custom, &mut out);
        }
        out
    }
}

/// `[workload]`, `[fetch]`, `[kernel]` and `[[kprobes]]` of a scenario, as `load` reads them back.
fn tables_toml(s: &crate::scenario::Scenario, out: &mut String) {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let c = &s.config;
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
    match w.kprobe {
        ForeignKprobe::None => out.push_str("kprobe = false\n"),
        ForeignKprobe::Armed => out.push_str("kprobe = true\n"),
        other => out.push_str(&format!("kprobe = {}\n", q(other.name()))),
    }
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
    if c.own_stores != sim_core::interrupt::OwnStores::default() {
        out.push_str(&format!("own_stores = {}\n", q(c.own_stores.name())));
    }
    out.push_str(&format!("\n[kernel]\nCONFIG_KPROBES = {}\n", c.kernel.kprobes));
    if let Some(i) = &c.interrupts {
        out.push_str(&format!(
            "\n[interrupts]\ncpus = {}\nbudget = {}\nhandler = {}\n",
            q(i.targets.name()),
            i.budget,
            q(i.handler.name())
        ));
    }
    if c.compiled.is_some() || c.memory != c.default_memory() {
        // Always for a C protocol (artifact format 3: its default changed from sc to tso), so
        // that a file read back is the same run whatever the default.
        out.push_str(&format!("\n[memory]\nmodel = {}\n", q(c.memory.name())));
    }
    for k in &s.kprobes {
        out.push_str(&format!("\n[[kprobes]]\naddr = {:#x}\narmed = {}\n", k.addr, k.armed));
        if k.cycles > 0 {
            out.push_str(&format!("cycles = {}\n", k.cycles));
        }
    }
}

/// `[[sites]]` and `[code]` of a custom workload, as `load` reads them back.
fn custom_toml(custom: &crate::workload::custom::CustomGuest, out: &mut String) {
    let q = |v: &str| toml::Value::String(v.to_string()).to_string();
    let text = |name: &str, t: &InsnText| match t {
        InsnText::Asm(a) => format!("{name} = {}\n", q(a)),
        InsnText::Hex(b) => {
            let hex: Vec<String> = b.iter().map(|x| format!("{x:02x}")).collect();
            format!("{name}_hex = {}\n", q(&hex.join(" ")))
        }
    };
    for s in &custom.sites {
        out.push_str("\n[[sites]]\n");
        match &s.at {
            Some(SiteAt::Label(l)) => out.push_str(&format!("at = {}\n", q(l))),
            Some(SiteAt::Addr(a)) => out.push_str(&format!("at = {a:#x}\n")),
            None => {}
        }
        if let Some(old) = &s.old {
            out.push_str(&text("old", old));
        }
        out.push_str(&text("new", &s.new));
    }
    if let Some(c) = &custom.code {
        out.push_str(&format!("\n[code]\nentry = {}\nasm = {}\n", q(&c.entry), q(&c.asm)));
    }
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
                   seed = 9\nruns = 1\nstrategy = \"pct:5\"\ndecisions = [[2, 1], [3, 0]]\nzeros_after = 12\n\
                   trace_hash = \"00112233445566ff\"\niterations = 3\ndrain = 7\n[workload]\nkind = \"batch\"\nsite = \"cross64\"\n\
                   sites = 20\norder = \"interleaved\"\n[fetch]\npreset = \"line64\"\nstaleness = 7\n[[kprobes]]\naddr = 0x400000\n";
        let f = ScenarioFile::parse("x.toml", src, "x").unwrap();
        let again = ScenarioFile::parse("y.toml", &f.to_toml(), "y").unwrap();
        assert_eq!(f, again);
    }

    #[test]
    fn the_tick_budget_keeps_its_old_name_steps() {
        let new = ScenarioFile::parse("n.toml", &format!("ticks = 5000\n{MINIMAL}"), "x").unwrap();
        let old = ScenarioFile::parse("o.toml", &format!("steps = 5000\n{MINIMAL}"), "x").unwrap();
        assert_eq!(new, old);
        assert_eq!(new.scenario.config.max_ticks, Some(5000));
        assert!(new.to_toml().contains("\nticks = 5000\n"), "{}", new.to_toml());
        let e = ScenarioFile::parse("o.toml", &format!("steps = 0\n{MINIMAL}"), "x").unwrap_err();
        assert_eq!((e.line, e.field.as_deref()), (Some(1), Some("ticks")), "{e}");
        assert!(ScenarioFile::parse("b.toml", &format!("ticks = 1\nsteps = 1\n{MINIMAL}"), "x").is_err());
    }

    #[test]
    fn errors_name_the_file_line_and_field() {
        let cases = [
            ("[workload]\nkind = \"ftrace\"\nbogus = 1\n", 3, Some("workload.bogus"), "unknown field `bogus`"),
            ("cpus = 0\n[workload]\nkind = \"ftrace\"\n", 1, Some("cpus"), "0 is out of range (1..=256)"),
            ("cpus = 257\n[workload]\nkind = \"ftrace\"\n", 1, Some("cpus"), "257 is out of range"),
            ("mutants = [\"nope\"]\n[workload]\nkind = \"ftrace\"\n", 1, Some("mutants"), "valid: no-sync-after-int3"),
            ("protocol = \"linux-9\"\n[workload]\nkind = \"ftrace\"\n", 1, Some("protocol"), "valid: linux-5.4"),
            ("[workload]\nkind = \"nope\"\n", 2, Some("workload.kind"), "unknown workload 'nope'"),
            ("[workload]\nkind = \"ftrace\"\nsite = \"99\"\n", 3, Some("workload.site"), "not a placement"),
            ("expect = \"crash\"\n[workload]\nkind = \"ftrace\"\n", 1, Some("expect"), "or pass"),
            ("[workload]\nkind = \"ftrace\"\n[fetch]\nunit = \"word\"\n", 4, Some("fetch.unit"), "unknown fetch unit"),
            ("decisions = [[1, 0]]\n[workload]\nkind = \"ftrace\"\n", 1, Some("decisions"), "not [options >= 2"),
            ("program = [\"sync\"]\n[workload]\nkind = \"ftrace\"\n", 1, Some("program"), "end with 'end-batch'"),
            ("cpus = \n", 1, Some("cpus"), ""),
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
