//! The one path from input to scenario. A [`ScenarioSpec`] is a scenario as the user wrote
//! it — every field optional, typed, and tagged with where it came from (a line of a file, a
//! command-line flag) — and [`ScenarioSpec::build`] is the one place that validates it into a
//! [`ScenarioFile`]: the scenario file loader, the command line (flags alone, or flags over a
//! file), and the library all go through it, so the same input is accepted or refused the
//! same way everywhere, and every refusal names the line or the flag at fault.

use cpu_model::{FetchModel, FetchUnit, MemoryModel, Staleness, StoreGranularity};
use sim_core::program::Step;
use sim_core::sched::Strategy;
use sim_core::{Decision, KernelConfig, Kprobe, Mutant, Plan, Protocol, Recorded, RunConfig, SimError, Subject};

use crate::catalogue::Variant;
use crate::entry::{Expectation, ScenarioFile};
use crate::input::{InputError, Origin};
use crate::scenario::Scenario;
use crate::workload::custom::{CodeBlock, CustomGuest, UserSite};
use crate::workload::{ForeignKprobe, SiteOrder, SitePlacement, WorkloadKind, WorkloadSpec};
use std::sync::Arc;

/// The most runs (seeds) one scenario asks for.
pub const MAX_RUNS: u64 = 1_000_000_000_000;
/// The most finite-guest iterations a scenario asks for.
pub(crate) const MAX_ITERATIONS: u64 = 1_000_000_000;

/// A value and where it came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Given<T> {
    /// The value.
    pub value: T,
    /// Its origin.
    pub origin: Origin,
}

impl<T> Given<T> {
    /// `value` from `origin`.
    pub fn new(value: T, origin: Origin) -> Self {
        Self { value, origin }
    }
}

type Opt<T> = Option<Given<T>>;

/// The `[workload]` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct WorkloadFields {
    /// The workload, or a named variant of it (`ftrace+kprobe`).
    pub kind: Opt<Variant>,
    /// Placement of the (first) site.
    pub site: Opt<SitePlacement>,
    /// Patch rounds.
    pub rounds: Opt<i64>,
    /// `batch`: number of sites.
    pub sites: Opt<i64>,
    /// `batch`: queueing order.
    pub order: Opt<SiteOrder>,
    /// `static_call`: patch the trampoline too.
    pub tail: Opt<bool>,
    /// A foreign kprobe on the loop head (or ftrace's entry).
    pub kprobe: Opt<ForeignKprobe>,
}

/// The `[fetch]` fields.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct FetchFields {
    /// A preset the other fields refine.
    pub preset: Opt<FetchModel>,
    /// Refresh unit.
    pub unit: Opt<FetchUnit>,
    /// Store granularity.
    pub stores: Opt<StoreGranularity>,
    /// Monotone views.
    pub monotone: Opt<bool>,
    /// Bounded staleness.
    pub staleness: Opt<i64>,
    /// How the patching CPU's own text stores reach its own fetches.
    pub own_stores: Opt<sim_core::interrupt::OwnStores>,
}

/// The `[interrupts]` fields (DESIGN.md §2.17).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InterruptFields {
    /// Where the section is, if given (then `budget` is required).
    pub section: Option<Origin>,
    /// Which CPUs take interrupts.
    pub cpus: Opt<sim_core::interrupt::IrqTargets>,
    /// Deliveries per run.
    pub budget: Opt<i64>,
    /// The handler.
    pub handler: Opt<sim_core::interrupt::IrqHandler>,
}

/// The most interrupt deliveries one run may take.
pub const MAX_IRQ_BUDGET: i64 = 64;

/// The `[kernel]` fields: `CONFIG_*` options by name, each with its origin.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct KernelFields {
    /// `(option, value)`, in the order given.
    pub options: Vec<Given<(String, bool)>>,
}

/// The `[memory]` fields: the memory model of the compiled protocol's kernel data
/// (DESIGN.md §2.16).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MemoryFields {
    /// `sc` or `tso` (`sc` if not given).
    pub model: Opt<MemoryModel>,
}

/// A scenario as given, field by field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScenarioSpec {
    /// Name.
    pub name: Opt<String>,
    /// Free text.
    pub description: Opt<String>,
    /// Expected result.
    pub expect: Opt<Expectation>,
    /// Protocol version.
    pub protocol: Opt<Protocol>,
    /// The protocol as C: a file, or the version's built-in file ([`crate::csource`]).
    pub source: Opt<crate::csource::ProtocolSource>,
    /// The content hash the C build must have (recorded in artifacts).
    pub source_hash: Opt<String>,
    /// vCPUs.
    pub cpus: Opt<i64>,
    /// Mutants, each with its own origin.
    pub mutants: Vec<Given<Mutant>>,
    /// Where the mutant list was given (the list may be empty).
    pub mutants_origin: Option<Origin>,
    /// First seed.
    pub seed: Opt<i64>,
    /// Seeds to run.
    pub runs: Opt<i64>,
    /// Strategy.
    pub strategy: Opt<Strategy>,
    /// Tick budget.
    pub ticks: Opt<i64>,
    /// Finite-guest iterations per vCPU.
    pub iterations: Opt<i64>,
    /// Drain steps per vCPU after the patcher finished.
    pub drain: Opt<i64>,
    /// The unsafe multi-instruction override.
    pub unsafe_multi_insn: Opt<bool>,
    /// How a picked guest step runs: alone, or with the local steps after it (DESIGN.md §2.5b).
    pub stepping: Opt<sim_core::Stepping>,
    /// A custom patcher program.
    pub program: Opt<Vec<Step>>,
    /// A recorded decision list, `[options, choice]`.
    pub decisions: Opt<Vec<(i64, i64)>>,
    /// Zero choices after the recorded list.
    pub zeros_after: Opt<i64>,
    /// The trace hash a recorded replay must reproduce.
    pub trace_hash: Opt<String>,
    /// `[workload]`.
    pub workload: WorkloadFields,
    /// `[fetch]`.
    pub fetch: FetchFields,
    /// `[kernel]`.
    pub kernel: KernelFields,
    /// `[memory]`.
    pub memory: MemoryFields,
    /// `[interrupts]`.
    pub interrupts: InterruptFields,
    /// `[[kprobes]]`, each with its origin.
    pub kprobes: Vec<Given<Kprobe>>,
    /// `[[sites]]` (workload `custom`), each with its origin.
    pub sites: Vec<Given<UserSite>>,
    /// `[code]` (workload `custom`).
    pub code: Opt<CodeBlock>,
}

/// Reports an error about a field: where it came from (or where the file is) and what.
struct Locate<'a> {
    file: &'a str,
}

impl Locate<'_> {
    fn err<T>(&self, given: &Opt<T>, field: &str, message: impl Into<String>) -> InputError {
        let origin = given.as_ref().map_or(Origin::Default, |g| g.origin.clone());
        InputError::at(self.file, &origin, field, message)
    }

    /// Refuses a workload option given for a workload that does not have it.
    fn only_for<T>(
        &self,
        given: &Opt<T>,
        field: &str,
        kind: WorkloadKind,
        wants: WorkloadKind,
    ) -> Result<(), InputError> {
        if given.is_some() && kind != wants {
            return Err(self.err(given, field, format!("only the {wants} workload has it; {kind} would ignore it")));
        }
        Ok(())
    }

    fn range(&self, given: &Opt<i64>, field: &str, lo: i64, hi: i64, default: i64) -> Result<i64, InputError> {
        let Some(g) = given else { return Ok(default) };
        if g.value < lo || g.value > hi {
            return Err(self.err(given, field, format!("{} is out of range ({lo}..={hi})", g.value)));
        }
        Ok(g.value)
    }
}

fn val<T: Clone>(g: &Opt<T>) -> Option<T> {
    g.as_ref().map(|g| g.value.clone())
}

impl ScenarioSpec {
    /// Validates the spec into a scenario file; `file` names the input in errors and
    /// `default_name` is the name used when none is given.
    pub fn build(&self, file: &str, default_name: &str) -> Result<ScenarioFile, InputError> {
        self.build_planned(file, default_name).map(|(f, _)| f)
    }

    /// [`ScenarioSpec::build`], also returning the plan that validated the scenario (a run of
    /// it can take that plan instead of planning again: [`crate::Scenario::run_plan`]).
    pub fn build_planned(&self, file: &str, default_name: &str) -> Result<(ScenarioFile, Plan), InputError> {
        let loc = Locate { file };
        let workload = self.workload_spec(&loc)?;
        let config = self.run_config(&loc)?;
        let (decisions, trace_hash) = self.recording(&loc)?;
        let seed = loc.range(&self.seed, "seed", 0, i64::MAX, 0)? as u64;
        let runs = loc.range(&self.runs, "runs", 1, MAX_RUNS as i64, 1)? as u64;
        if decisions.is_some() && runs != 1 {
            return Err(loc.err(&self.runs, "runs", "a recorded decision list replays exactly one run"));
        }
        let strategy = val(&self.strategy).unwrap_or(Strategy::Random);
        if strategy == Strategy::Replay && decisions.is_none() {
            return Err(loc.err(&self.strategy, "strategy", "'replay' needs a recorded `decisions` list"));
        }
        let kprobes = self.kprobes.iter().map(|k| k.value).collect();
        let custom = self.custom(&loc, workload.kind)?;
        let scenario = Scenario { workload, config, strategy, seed, kprobes, custom };
        let plan = scenario.plan().map_err(|e| self.locate(&loc, e))?;
        let file = ScenarioFile {
            name: val(&self.name).unwrap_or_else(|| default_name.to_string()),
            description: val(&self.description),
            expect: val(&self.expect).unwrap_or(Expectation::Pass),
            scenario,
            runs,
            decisions,
            trace_hash,
        };
        Ok((file, plan))
    }

    fn workload_spec(&self, loc: &Locate<'_>) -> Result<WorkloadSpec, InputError> {
        let w = &self.workload;
        let Some(kind) = &w.kind else {
            return Err(loc.err(&w.kind, "workload.kind", "missing: name a workload (see `pokesim list`)"));
        };
        let mut spec = kind.value.spec;
        loc.only_for(&w.sites, "workload.sites", spec.kind, WorkloadKind::Batch)?;
        loc.only_for(&w.order, "workload.order", spec.kind, WorkloadKind::Batch)?;
        loc.only_for(&w.tail, "workload.tail", spec.kind, WorkloadKind::StaticCall)?;
        // A variant such as `ftrace+kprobe` fixes an option; an explicit value must agree.
        let default = WorkloadSpec::new(spec.kind);
        let contradicts = |origin: &Origin, field: &str| {
            let msg = format!("contradicts the workload variant '{}'", kind.value.name);
            InputError::at(loc.file, origin, field, msg)
        };
        if let Some(g) = w.tail.as_ref().filter(|g| spec.tail != default.tail && g.value != spec.tail) {
            return Err(contradicts(&g.origin, "workload.tail"));
        }
        if let Some(g) = w.kprobe.as_ref().filter(|g| spec.kprobe != default.kprobe && g.value != spec.kprobe) {
            return Err(contradicts(&g.origin, "workload.kprobe"));
        }
        if let Some(g) = w.order.as_ref().filter(|g| spec.order != default.order && g.value != spec.order) {
            return Err(contradicts(&g.origin, "workload.order"));
        }
        if let Some(g) = &w.site {
            spec.site = g.value;
        }
        spec.rounds = loc.range(&w.rounds, "workload.rounds", 1, i64::from(u32::MAX), spec.rounds as i64)? as u32;
        spec.sites = loc.range(&w.sites, "workload.sites", 1, i64::from(u32::MAX), spec.sites as i64)? as u32;
        spec.order = val(&w.order).unwrap_or(spec.order);
        spec.tail = val(&w.tail).unwrap_or(spec.tail);
        spec.kprobe = val(&w.kprobe).unwrap_or(spec.kprobe);
        spec.validate().map_err(|e| self.locate(loc, e))?;
        Ok(spec)
    }

    fn run_config(&self, loc: &Locate<'_>) -> Result<RunConfig, InputError> {
        let mut config = RunConfig::default();
        config.protocol = val(&self.protocol).unwrap_or(config.protocol);
        config.cpus = loc.range(&self.cpus, "cpus", 1, sim_core::config::MAX_CPUS as i64, config.cpus as i64)? as usize;
        config.mutants = self.mutants.iter().map(|m| m.value).collect();
        let max_ticks = sim_core::config::MAX_TICKS as i64;
        config.max_ticks = self
            .ticks
            .as_ref()
            .map(|_| loc.range(&self.ticks, "ticks", 1, max_ticks, 0))
            .transpose()?
            .map(|t| t as u64);
        config.max_iterations = self
            .iterations
            .as_ref()
            .map(|_| loc.range(&self.iterations, "iterations", 1, MAX_ITERATIONS as i64, 1))
            .transpose()?
            .map(|k| k as u64);
        let max_drain = sim_core::config::MAX_DRAIN as i64;
        config.drain_steps = loc.range(&self.drain, "drain", 0, max_drain, config.drain_steps as i64)? as u64;
        config.unsafe_multi_insn = val(&self.unsafe_multi_insn).unwrap_or(false);
        config.stepping = val(&self.stepping).unwrap_or_default();
        config.program = val(&self.program);
        config.fetch = self.fetch_model(loc)?;
        config.kernel = self.kernel_config(loc)?;
        config.interrupts = self.interrupts(loc)?;
        config.own_stores = val(&self.fetch.own_stores).unwrap_or_default();
        if self.fetch.own_stores.is_some() && !config.interrupts.is_some_and(|i| i.patcher()) {
            let msg =
                "acts only where a patching CPU fetches code it wrote: with [interrupts] cpus = \"patcher\" or \"all\"";
            return Err(loc.err(&self.fetch.own_stores, "fetch.own_stores", msg));
        }
        config.validate().map_err(|e| self.locate(loc, e))?;
        if let Some(source) = &self.source {
            let compiled = crate::csource::load(&source.value, &config)
                .map_err(|m| InputError::at(loc.file, &source.origin, "protocol.source", m))?;
            if let Some(h) = self.source_hash.as_ref().filter(|h| h.value != compiled.image.hash) {
                let msg = format!(
                    "the C protocol changed since this was recorded (build hash {} now, {} recorded: the file, pokesim.h, the runtime, the switches or the clang/ld versions differ): its decisions would replay a different program",
                    compiled.image.hash, h.value
                );
                return Err(InputError::at(loc.file, &h.origin, "protocol.hash", msg));
            }
            config.compiled = Some(compiled);
        }
        config.memory = self.memory_model(loc, &config)?;
        Ok(config)
    }

    /// `[memory] model`: given, or [`RunConfig::default_memory`] — x86-TSO for a protocol
    /// compiled from C (its kernel data is real memory: DESIGN.md §2.16), SC for a Rust model,
    /// which refuses `tso` (its shared state is Rust-side, not data memory, and its barriers
    /// are explicit steps).
    fn memory_model(&self, loc: &Locate<'_>, config: &RunConfig) -> Result<MemoryModel, InputError> {
        let Some(g) = self.memory.model.as_ref() else { return Ok(config.default_memory()) };
        if g.value == MemoryModel::Sc || config.compiled.is_some() {
            return Ok(g.value);
        }
        let msg = "tso applies to a protocol compiled from C (--protocol-c, --protocol-source): the Rust model's \
                   shared state is Rust-side, not data memory, and its barriers are explicit steps";
        Err(InputError::at(loc.file, &g.origin, "memory.model", msg))
    }

    /// `[interrupts]`: `None` without the section; with it, `budget` is required (unbounded
    /// interrupts would make every search infinite).
    fn interrupts(&self, loc: &Locate<'_>) -> Result<Option<sim_core::interrupt::Interrupts>, InputError> {
        use sim_core::interrupt::{Interrupts, IrqHandler, IrqTargets};
        let i = &self.interrupts;
        let Some(section) = &i.section else { return Ok(None) };
        if i.budget.is_none() {
            let msg = format!("missing: the deliveries per run (1..={MAX_IRQ_BUDGET}); unbounded interrupts would make every search infinite");
            return Err(InputError::at(loc.file, section, "interrupts.budget", msg));
        }
        let budget = loc.range(&i.budget, "interrupts.budget", 1, MAX_IRQ_BUDGET, 1)? as u32;
        let targets = val(&i.cpus).unwrap_or(IrqTargets::Vcpus);
        let handler = val(&i.handler).unwrap_or(IrqHandler::CallSite);
        Ok(Some(Interrupts { targets, budget, handler }))
    }

    fn kernel_config(&self, loc: &Locate<'_>) -> Result<KernelConfig, InputError> {
        let mut k = KernelConfig::DEFCONFIG;
        for g in &self.kernel.options {
            let (name, value) = &g.value;
            k.set(name, *value).map_err(|m| InputError::at(loc.file, &g.origin, format!("kernel.{name}"), m))?;
        }
        Ok(k)
    }

    fn fetch_model(&self, loc: &Locate<'_>) -> Result<FetchModel, InputError> {
        let f = &self.fetch;
        let mut m = val(&f.preset).unwrap_or(FetchModel::PESSIMISTIC);
        m.fetch = val(&f.unit).unwrap_or(m.fetch);
        m.stores = val(&f.stores).unwrap_or(m.stores);
        m.monotone = val(&f.monotone).unwrap_or(m.monotone);
        if f.staleness.is_some() {
            m.staleness =
                Staleness::Bounded(loc.range(&f.staleness, "fetch.staleness", 1, i64::from(u32::MAX), 1)? as u32);
        }
        Ok(m)
    }

    fn recording(&self, loc: &Locate<'_>) -> Result<(Option<Recorded>, Option<String>), InputError> {
        let decisions = match &self.decisions {
            None => None,
            Some(d) => {
                let mut prefix = Vec::with_capacity(d.value.len());
                for (i, &(of, choice)) in d.value.iter().enumerate() {
                    if of < 2 || of > u32::MAX as i64 || choice < 0 || choice >= of {
                        let msg = format!("entry {i} [{of}, {choice}] is not [options >= 2, choice < options]");
                        return Err(loc.err(&self.decisions, "decisions", msg));
                    }
                    prefix.push(Decision { of: of as u32, choice: choice as u32 });
                }
                let zeros_after = loc.range(&self.zeros_after, "zeros_after", 0, i64::MAX, 0)? as u64;
                Some(Recorded { prefix, zeros_after })
            }
        };
        if decisions.is_none() && self.zeros_after.is_some() {
            return Err(loc.err(&self.zeros_after, "zeros_after", "needs a recorded `decisions` list"));
        }
        let trace_hash = match &self.trace_hash {
            None => None,
            Some(h) => {
                if h.value.len() != 16 || !h.value.chars().all(|c| c.is_ascii_hexdigit()) {
                    return Err(loc.err(&self.trace_hash, "trace_hash", "must be 16 hex digits"));
                }
                if decisions.is_none() {
                    return Err(loc.err(
                        &self.trace_hash,
                        "trace_hash",
                        "needs `decisions` (a seed run has no fixed trace)",
                    ));
                }
                Some(h.value.to_ascii_lowercase())
            }
        };
        Ok((decisions, trace_hash))
    }

    /// The scenario's own sites and code: only for (and required by) workload `custom`.
    fn custom(&self, loc: &Locate<'_>, kind: WorkloadKind) -> Result<Option<Arc<CustomGuest>>, InputError> {
        if kind != WorkloadKind::Custom {
            if let Some(s) = self.sites.first() {
                let msg = format!("only the custom workload has its own sites; {kind} would ignore them");
                return Err(InputError::at(loc.file, &s.origin, "sites[0]", msg));
            }
            loc.only_for(&self.code, "code", kind, WorkloadKind::Custom)?;
            return Ok(None);
        }
        let sites = self.sites.iter().map(|s| s.value.clone()).collect();
        Ok(Some(Arc::new(CustomGuest { sites, code: val(&self.code), checked: Default::default() })))
    }

    /// Locates a simulator refusal at the field (and line or flag) its subject came from.
    fn locate(&self, loc: &Locate<'_>, e: SimError) -> InputError {
        let SimError::Invalid { subject, message } = e else {
            return InputError::file(loc.file, e.to_string());
        };
        let w = &self.workload;
        let origin = |o: Option<Origin>| o.unwrap_or(Origin::Default);
        let of = |g: Option<&Origin>| origin(g.cloned());
        let (field, at) = match subject {
            Subject::Cpus => ("cpus".to_string(), of(self.cpus.as_ref().map(|g| &g.origin))),
            Subject::Protocol => ("protocol".into(), of(self.protocol.as_ref().map(|g| &g.origin))),
            Subject::Mutants => ("mutants".into(), self.mutants_origin.clone().unwrap_or(Origin::Default)),
            Subject::Program => ("program".into(), of(self.program.as_ref().map(|g| &g.origin))),
            Subject::Ticks => ("ticks".into(), of(self.ticks.as_ref().map(|g| &g.origin))),
            Subject::Iterations => ("iterations".into(), of(self.iterations.as_ref().map(|g| &g.origin))),
            Subject::Drain => ("drain".into(), of(self.drain.as_ref().map(|g| &g.origin))),
            Subject::Fetch if self.fetch.own_stores.is_some() && message.contains("own_stores") => {
                ("fetch.own_stores".into(), of(self.fetch.own_stores.as_ref().map(|g| &g.origin)))
            }
            Subject::Fetch => ("fetch".into(), of(self.fetch.staleness.as_ref().map(|g| &g.origin))),
            Subject::Interrupts => ("interrupts".into(), origin(self.interrupts.section.clone())),
            Subject::Rounds => ("workload.rounds".into(), of(w.rounds.as_ref().map(|g| &g.origin))),
            Subject::Sites => ("workload.sites".into(), of(w.sites.as_ref().map(|g| &g.origin))),
            Subject::Placement => ("workload.site".into(), of(w.site.as_ref().map(|g| &g.origin))),
            Subject::UnsafeMultiInsn => {
                ("unsafe_multi_insn".into(), of(self.unsafe_multi_insn.as_ref().map(|g| &g.origin)))
            }
            Subject::Kprobe(i) => (format!("kprobes[{i}]"), of(self.kprobes.get(i).map(|g| &g.origin))),
            Subject::Decisions => ("decisions".into(), of(self.decisions.as_ref().map(|g| &g.origin))),
            Subject::Kernel => {
                let first = self.kernel.options.first().map(|g| (format!("kernel.{}", g.value.0), g.origin.clone()));
                first.unwrap_or_else(|| ("kernel".into(), Origin::Default))
            }
            Subject::Workload => ("workload".into(), of(w.kind.as_ref().map(|g| &g.origin))),
            Subject::Site(i) => (format!("sites[{i}]"), of(self.sites.get(i).map(|g| &g.origin))),
            Subject::Code => ("code".into(), of(self.code.as_ref().map(|g| &g.origin))),
            Subject::ProtocolSource => ("protocol.source".into(), of(self.source.as_ref().map(|g| &g.origin))),
            Subject::Memory => ("memory.model".into(), of(self.memory.model.as_ref().map(|g| &g.origin))),
        };
        InputError::at(loc.file, &at, field, message)
    }
}
