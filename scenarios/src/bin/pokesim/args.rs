//! The command-line options every command shares, parsed into the library's own types
//! (clap value parsers over their `FromStr`), and the scenario flags laid over a scenario
//! file: a flag given with a file overrides that field wherever it appears on the command
//! line, and the output says which fields were overridden.

use std::path::PathBuf;

use clap::Args;
use cpu_model::{FetchModel, FetchUnit, MemoryModel, StoreGranularity};
use scenarios::catalogue::Variant;
use scenarios::file::{read_spec, Expectation, ScenarioFile};
use scenarios::input::{InputError, Origin};
use scenarios::spec::{Given, ScenarioSpec};
use scenarios::workload::{ForeignKprobe, SiteOrder, SitePlacement};
use sim_core::sched::Strategy;
use sim_core::{Kprobe, Mutant, Protocol};

use crate::out::Failure;

/// The most worker threads a command starts.
pub const MAX_JOBS: usize = 256;

fn parse<T: std::str::FromStr<Err = String>>(s: &str) -> Result<T, String> {
    s.parse()
}

fn preset(s: &str) -> Result<FetchModel, String> {
    FetchModel::preset(s).ok_or_else(|| format!("unknown preset '{s}' (valid: {})", FetchModel::PRESETS.join(", ")))
}

fn variant(s: &str) -> Result<Variant, String> {
    scenarios::catalogue::variant(s)
}

/// `CONFIG_KPROBES=n`: a known kernel option and its value.
fn kernel_option(s: &str) -> Result<(String, bool), String> {
    let mut c = sim_core::KernelConfig::DEFCONFIG;
    c.assign(s)?;
    let name = s.split_once('=').map(|(n, _)| n.to_string()).unwrap_or_default();
    let value = c.get(&name).unwrap_or(true);
    Ok((name, value))
}

/// `--strategy` as given: the strategy, and whether it spelled out a PCT depth (`pct:D`), which
/// `--depth` may then not restate.
#[derive(Clone, Copy, Debug)]
pub struct StrategyArg {
    /// The strategy.
    pub strategy: Strategy,
    /// Whether the value named a depth (`pct:D`).
    pub depth_given: bool,
}

fn strategy(s: &str) -> Result<StrategyArg, String> {
    Ok(StrategyArg { strategy: s.parse()?, depth_given: s.contains(':') })
}

fn address(s: &str) -> Result<u64, String> {
    let parsed = match s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")) {
        Some(hex) => u64::from_str_radix(hex, 16),
        None => s.parse(),
    };
    parsed.map_err(|e| format!("'{s}' is not an address: {e}"))
}

/// `--json` and `--quiet`.
#[derive(Args, Clone, Copy, Debug)]
pub struct OutputOpts {
    /// Print JSON (one object per line, each with a "format" version) instead of text.
    #[arg(long)]
    pub json: bool,
    /// No progress bar or periodic status line on stderr.
    #[arg(long, short)]
    pub quiet: bool,
}

/// `--jobs`.
#[derive(Args, Clone, Copy, Debug)]
pub struct JobsOpt {
    /// Worker threads [default: all cores; at most 256]. Results do not depend on it.
    #[arg(long, value_name = "J", value_parser = clap::value_parser!(u64).range(1..=MAX_JOBS as u64))]
    pub jobs: Option<u64>,
}

impl JobsOpt {
    /// Sizes the worker pool.
    pub fn apply(self) -> Result<(), Failure> {
        if let Some(j) = self.jobs {
            rayon::ThreadPoolBuilder::new()
                .num_threads(j as usize)
                .build_global()
                .map_err(|e| Failure::Internal(format!("--jobs: {e}")))?;
        }
        Ok(())
    }
}

/// Where failure artifacts go.
#[derive(Args, Clone, Debug)]
pub struct ArtifactOpts {
    /// Do not write failure artifacts (nor, with `explore --shard`, the shard result).
    #[arg(long)]
    pub no_artifact: bool,
    /// Where failure artifacts (and `explore --shard`'s shard results) go.
    #[arg(long, value_name = "DIR", default_value = "pokesim-artifacts")]
    pub artifact_dir: PathBuf,
}

/// The interrupt flags: the `[interrupts]` section and `[fetch] own_stores` (DESIGN.md §2.17).
#[derive(Args, Clone, Copy, Debug)]
pub struct IrqArgs {
    /// How the patching CPU's own text stores reach its own fetches: serialize (at its next
    /// serialising instruction, the default) or jump (at once); needs interrupts on the
    /// patching CPU (docs/reference/x86-cmc.md §7).
    #[arg(long, value_parser = parse::<sim_core::interrupt::OwnStores>, value_name = "R")]
    pub own_stores: Option<sim_core::interrupt::OwnStores>,
    /// Interrupts: deliveries per run, 1..=64 (the `[interrupts]` section; DESIGN.md §2.17).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub irq_budget: Option<i64>,
    /// Interrupts: which CPUs take them: vcpus (default), patcher, all (needs --irq-budget).
    #[arg(long, value_parser = parse::<sim_core::interrupt::IrqTargets>, value_name = "CPUS")]
    pub irq_cpus: Option<sim_core::interrupt::IrqTargets>,
    /// Interrupts: the handler: call-site (default: calls through a patched site), empty.
    #[arg(long, value_parser = parse::<sim_core::interrupt::IrqHandler>, value_name = "H")]
    pub irq_handler: Option<sim_core::interrupt::IrqHandler>,
}

impl IrqArgs {
    /// The flags given, by name.
    pub fn given(&self) -> Vec<&'static str> {
        let flags = [
            ("--own-stores", self.own_stores.is_some()),
            ("--irq-budget", self.irq_budget.is_some()),
            ("--irq-cpus", self.irq_cpus.is_some()),
            ("--irq-handler", self.irq_handler.is_some()),
        ];
        flags.into_iter().filter(|f| f.1).map(|f| f.0).collect()
    }

    /// Lays the flags over `spec`: an `--irq-*` flag opens the `[interrupts]` section if the
    /// file has none.
    fn lay(&self, spec: &mut ScenarioSpec, l: &mut Layer) {
        l.set(&mut spec.fetch.own_stores, self.own_stores, "--own-stores");
        l.set(&mut spec.interrupts.budget, self.irq_budget, "--irq-budget");
        l.set(&mut spec.interrupts.cpus, self.irq_cpus, "--irq-cpus");
        l.set(&mut spec.interrupts.handler, self.irq_handler, "--irq-handler");
        if spec.interrupts.section.is_none() {
            let first = self.given().into_iter().find(|f| f.starts_with("--irq"));
            spec.interrupts.section = first.map(Origin::Flag);
        }
    }
}

/// A scenario: a file, flags, or flags over a file.
#[derive(Args, Clone, Debug)]
pub struct ScenarioArgs {
    /// A scenario file (TOML). Flags given with it override its fields.
    pub file: Option<PathBuf>,
    /// Workload, or a variant such as ftrace+kprobe (`pokesim list`) [default: ftrace].
    #[arg(long, value_parser = variant, value_name = "W")]
    pub workload: Option<Variant>,
    /// Protocol version [default: seed].
    #[arg(long, value_parser = parse::<Protocol>, value_name = "P")]
    pub protocol: Option<Protocol>,
    /// The protocol as C: a file of yours (its version's batching and kprobe rules come from
    /// --protocol); it replaces the Rust model of the patcher and the INT3 handler.
    #[arg(long, value_name = "FILE.c", conflicts_with = "protocol_c")]
    pub protocol_source: Option<PathBuf>,
    /// The protocol as C: the built-in C file of --protocol (`pokesim program --protocol P --c`).
    #[arg(long)]
    pub protocol_c: bool,
    /// Mutant to apply (repeatable; replaces the file's list).
    #[arg(long = "mutant", value_parser = parse::<Mutant>, value_name = "M")]
    pub mutants: Vec<Mutant>,
    /// Number of vCPUs, 1..=256 [default: 2].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub cpus: Option<i64>,
    /// First seed [default: 0].
    #[arg(long, value_name = "S", allow_negative_numbers = true)]
    pub seed: Option<i64>,
    /// Seeds in the campaign: seed, seed+1, ... (with --shard: of the whole campaign).
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub runs: Option<i64>,
    /// Strategy: random, pct (depth 3) or pct:D [default: random].
    #[arg(long, value_parser = strategy, value_name = "S")]
    pub strategy: Option<StrategyArg>,
    /// PCT bug depth (1..=64; the same as --strategy pct:D).
    #[arg(long, value_name = "D", value_parser = clap::value_parser!(u32).range(1..=64))]
    pub depth: Option<u32>,
    /// Fetch preset: pessimistic, block16, line64, snapshot [default: pessimistic].
    #[arg(long, value_parser = preset, value_name = "P")]
    pub preset: Option<FetchModel>,
    /// Fetch refresh unit: byte, block16, line64, snapshot (refines the preset).
    #[arg(long, value_parser = parse::<FetchUnit>, value_name = "U")]
    pub fetch: Option<FetchUnit>,
    /// Store granularity of text_poke: byte, aligned8, whole (refines the preset).
    #[arg(long, value_parser = parse::<StoreGranularity>, value_name = "G")]
    pub stores: Option<StoreGranularity>,
    /// Let a unit go back to an older snapshot (not before the last serialization).
    #[arg(long)]
    pub non_monotone: bool,
    /// Bound staleness to K own guest steps.
    #[arg(long, value_name = "K", allow_negative_numbers = true)]
    pub staleness: Option<i64>,
    /// Site placement: aligned, cross16, cross64, cross-page, or a line offset 0..=63.
    #[arg(long, value_parser = parse::<SitePlacement>, value_name = "PLACE")]
    pub site: Option<SitePlacement>,
    /// Patch rounds, 1..=100000 [default: 24].
    #[arg(long, value_name = "R", allow_negative_numbers = true)]
    pub rounds: Option<i64>,
    /// batch: number of sites, 1..=300 [default: 16].
    #[arg(long, value_name = "N", allow_negative_numbers = true)]
    pub sites: Option<i64>,
    /// batch: queueing order: ascending, descending, interleaved.
    #[arg(long, value_parser = parse::<SiteOrder>, value_name = "O")]
    pub order: Option<SiteOrder>,
    /// static_call: patch only the call site, not the tail-call trampoline.
    #[arg(long)]
    pub no_tail: bool,
    /// Register a foreign kprobe on the loop head (outside the patched sites): armed for the
    /// whole run (`--kprobe`, `--kprobe=armed`), arming and disarming itself every round
    /// (`--kprobe=cycling`), or doing so at ftrace's entry site (`--kprobe=entry`).
    #[arg(long, num_args = 0..=1, require_equals = true, default_missing_value = "armed", value_name = "MODE")]
    pub kprobe: Option<ForeignKprobe>,
    /// Register a kprobe at this instruction address (repeatable; replaces the file's).
    #[arg(long = "kprobe-at", value_parser = address, value_name = "ADDR")]
    pub kprobe_at: Vec<u64>,
    /// A kernel option, NAME=y or NAME=n (repeatable): CONFIG_KPROBES [default: as
    /// x86_64_defconfig, CONFIG_KPROBES=y].
    #[arg(long = "kernel", value_parser = kernel_option, value_name = "CONFIG_X=y|n")]
    pub kernel: Vec<(String, bool)>,
    /// Memory model of a C protocol's kernel data: tso (x86-TSO store buffers, the default
    /// with --protocol-c / --protocol-source) or sc; a Rust model is sc and refuses tso
    /// (DESIGN.md §2.16).
    #[arg(long, value_parser = parse::<MemoryModel>, value_name = "M")]
    pub memory: Option<MemoryModel>,
    /// Interrupts and the patching CPU's own stores.
    #[command(flatten)]
    pub irq: IrqArgs,
    /// Allow replacing more than one instruction (bug B2), which the kernel refuses.
    #[arg(long)]
    pub unsafe_multi_insn: bool,
    /// How a picked guest step runs: single (one instruction per scheduling decision, the
    /// default) or batched (followed by its vCPU's local steps in one emu_start; DESIGN.md §2.5b)
    #[arg(long, value_name = "S")]
    pub stepping: Option<sim_core::Stepping>,
    /// Tick budget [default: grows with vCPUs, sites and rounds].
    // `--steps` is its old name, still accepted (hidden) and meaning the same.
    #[arg(long, alias = "steps", value_name = "MAX", allow_negative_numbers = true)]
    pub ticks: Option<i64>,
    /// Expected result: pass, or violation kinds joined by | [default: pass].
    #[arg(long, value_parser = parse::<Expectation>, value_name = "E")]
    pub expect: Option<Expectation>,
}

/// Records the flags laid over a file's fields.
struct Layer {
    from_file: bool,
    /// The file replays recorded decisions: no scenario flag may change it.
    recorded: bool,
    overrides: Vec<String>,
    refused: Option<&'static str>,
}

impl Layer {
    /// `flag` was given; `had` is the file's value it replaces, if the file had one.
    fn note(&mut self, flag: &'static str, had: Option<String>) {
        if self.recorded && self.refused.is_none() {
            self.refused = Some(flag);
        }
        if let (true, Some(had)) = (self.from_file, had) {
            self.overrides.push(format!("{flag} (the file had {had})"));
        }
    }

    fn set<T: std::fmt::Display>(&mut self, slot: &mut Option<Given<T>>, value: Option<T>, flag: &'static str) {
        let Some(value) = value else { return };
        let had = slot.as_ref().filter(|g| matches!(g.origin, Origin::Line(_))).map(|g| g.value.to_string());
        self.note(flag, had);
        *slot = Some(Given::new(value, Origin::Flag(flag)));
    }
}

impl ScenarioArgs {
    /// The scenario these arguments describe, which file fields the flags overrode, and
    /// whether the number of runs was given (by the file or a flag).
    pub fn scenario(&self) -> Result<(ScenarioFile, Vec<String>, bool), Failure> {
        let (mut spec, name, stem) = match &self.file {
            Some(p) => {
                let stem = p.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
                (read_spec(p)?, p.display().to_string(), stem)
            }
            None => (ScenarioSpec::default(), "command line".to_string(), String::new()),
        };
        let mut layer = Layer {
            from_file: self.file.is_some(),
            recorded: spec.decisions.is_some(),
            overrides: Vec::new(),
            refused: None,
        };
        self.lay(&mut spec, &mut layer)?;
        if let Some(flag) = layer.refused {
            return Err(Failure::Bad(format!(
                "{flag}: {name} replays recorded decisions; changing its scenario would make them meaningless"
            )));
        }
        if spec.workload.kind.is_none() && self.file.is_none() {
            let v = scenarios::catalogue::variant("ftrace").map_err(Failure::Bad)?;
            spec.workload.kind = Some(Given::new(v, Origin::Default));
        }
        let default_name = if stem.is_empty() { "command-line" } else { &stem };
        let runs_given = spec.runs.is_some();
        Ok((spec.build(&name, default_name).map_err(located)?, layer.overrides, runs_given))
    }

    fn lay(&self, spec: &mut ScenarioSpec, l: &mut Layer) -> Result<(), Failure> {
        l.set(&mut spec.workload.kind, self.workload, "--workload");
        l.set(&mut spec.protocol, self.protocol, "--protocol");
        if let Some(path) = &self.protocol_source {
            let abs = std::fs::canonicalize(path)
                .map_err(|e| Failure::Bad(format!("--protocol-source {}: {e}", path.display())))?;
            l.set(&mut spec.source, Some(scenarios::csource::ProtocolSource::File(abs)), "--protocol-source");
            spec.source_hash = None;
        }
        if self.protocol_c {
            l.set(&mut spec.source, Some(scenarios::csource::ProtocolSource::Builtin), "--protocol-c");
            spec.source_hash = None;
        }
        if !self.mutants.is_empty() {
            let had: Vec<String> = spec.mutants.iter().map(|m| m.value.to_string()).collect();
            l.note("--mutant", spec.mutants_origin.as_ref().map(|_| format!("{had:?}")));
            spec.mutants = self.mutants.iter().map(|m| Given::new(*m, Origin::Flag("--mutant"))).collect();
            spec.mutants_origin = Some(Origin::Flag("--mutant"));
        }
        l.set(&mut spec.cpus, self.cpus, "--cpus");
        l.set(&mut spec.seed, self.seed, "--seed");
        l.set(&mut spec.runs, self.runs, "--runs");
        l.set(&mut spec.strategy, self.strategy()?, "--strategy");
        l.set(&mut spec.fetch.preset, self.preset, "--preset");
        l.set(&mut spec.fetch.unit, self.fetch, "--fetch");
        l.set(&mut spec.fetch.stores, self.stores, "--stores");
        l.set(&mut spec.fetch.monotone, self.non_monotone.then_some(false), "--non-monotone");
        l.set(&mut spec.fetch.staleness, self.staleness, "--staleness");
        l.set(&mut spec.workload.site, self.site, "--site");
        l.set(&mut spec.workload.rounds, self.rounds, "--rounds");
        l.set(&mut spec.workload.sites, self.sites, "--sites");
        l.set(&mut spec.workload.order, self.order, "--order");
        l.set(&mut spec.workload.tail, self.no_tail.then_some(false), "--no-tail");
        l.set(&mut spec.workload.kprobe, self.kprobe, "--kprobe");
        if !self.kprobe_at.is_empty() {
            let had: Vec<String> = spec.kprobes.iter().map(|k| format!("{:#x}", k.value.addr)).collect();
            l.note("--kprobe-at", (!had.is_empty()).then(|| format!("{had:?}")));
            spec.kprobes = self
                .kprobe_at
                .iter()
                .map(|&addr| Given::new(Kprobe::armed(addr), Origin::Flag("--kprobe-at")))
                .collect();
        }
        for (i, (name, value)) in self.kernel.iter().enumerate() {
            if let Some((_, first)) = self.kernel[..i].iter().find(|(n, _)| n == name) {
                let yn = |v: bool| if v { "y" } else { "n" };
                return Err(Failure::Bad(format!(
                    "--kernel {name}={}: {name} is already given ({name}={}); give each option once",
                    yn(*value),
                    yn(*first)
                )));
            }
            let had = spec.kernel.options.iter().find(|g| &g.value.0 == name).map(|g| format!("{name}={}", g.value.1));
            l.note("--kernel", had);
            spec.kernel.options.retain(|g| &g.value.0 != name);
            spec.kernel.options.push(Given::new((name.clone(), *value), Origin::Flag("--kernel")));
        }
        l.set(&mut spec.memory.model, self.memory, "--memory");
        self.irq.lay(spec, l);
        l.set(&mut spec.unsafe_multi_insn, self.unsafe_multi_insn.then_some(true), "--unsafe-multi-insn");
        l.set(&mut spec.stepping, self.stepping, "--stepping");
        l.set(&mut spec.ticks, self.ticks, "--ticks");
        l.set(&mut spec.expect, self.expect, "--expect");
        Ok(())
    }

    /// `--strategy`, refined by `--depth`.
    fn strategy(&self) -> Result<Option<Strategy>, Failure> {
        match (self.strategy, self.depth) {
            (s, None) => Ok(s.map(|s| s.strategy)),
            (Some(StrategyArg { strategy: Strategy::Pct { depth: d }, depth_given: true }), Some(depth)) => {
                Err(Failure::Bad(format!(
                    "--depth {depth}: --strategy pct:{d} already sets the depth; give it once (--strategy pct --depth {depth} \
                     or --strategy pct:{depth})"
                )))
            }
            (Some(StrategyArg { strategy: Strategy::Pct { .. }, .. }), Some(depth)) => Ok(Some(Strategy::Pct { depth })),
            (_, Some(_)) => Err(Failure::Bad("--depth: applies to --strategy pct only".into())),
        }
    }
}

/// A build error, as the user sees it.
fn located(e: InputError) -> Failure {
    Failure::Bad(e.to_string())
}
