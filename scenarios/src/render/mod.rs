//! What a failing (or passing) run looks like to a reader (DESIGN.md §2.12): the model every
//! rendering shares — the run's events, its sites, the stores that built each site's history,
//! the violation — and one module per format:
//! - [`text`]: the fixed-column trace, readable by someone who knows
//!   `arch/x86/kernel/alternative.c` (decoded instructions, site names, the kernel statement of
//!   every patcher operation and handler step, a legend);
//! - [`perfetto`]: Chrome trace-event JSON that ui.perfetto.dev and chrome://tracing open;
//! - [`timeline`]: an SVG timeline (a lane per vCPU and one for the patcher, the patcher's
//!   phases as bands across all lanes), static or inside the HTML report;
//! - [`html`]: one self-contained HTML file with the interactive timeline and the store
//!   history of every patched byte;
//! - [`matrix`]: the sync-necessity matrix as a page, with the report of every caught cell's
//!   counterexample embedded.
//!
//! Every format is a pure function of the run: the same artifact gives byte-identical files.

pub mod html;
pub mod matrix;
pub mod perfetto;
pub mod text;
pub mod timeline;

use sim_core::program::{Op, OpPhase};
use sim_core::protocol::change::{self, Change, OpEdit};
use sim_core::trace::{TraceEvent, TraceKind};
use sim_core::{Outcome, Plan, Round, SimError, Violation};

use crate::scenario::Scenario;

/// A patched site.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Site {
    /// Its name in traces: `site0`, `site1`, ... in address order.
    pub name: String,
    /// First byte.
    pub addr: u64,
    /// Length.
    pub len: u64,
}

/// One store to the text.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Store {
    /// Its epoch (the `n`-th store of the run; epoch 0 is the initial text).
    pub epoch: u32,
    /// First byte written.
    pub addr: u64,
    /// The bytes.
    pub bytes: Vec<u8>,
    /// The tick it happened at.
    pub tick: u64,
    /// The patch round, or the drain after the last.
    pub round: Round,
    /// The patcher operation that made it.
    pub op: String,
}

/// A run as the renderings see it.
#[derive(Clone, Debug)]
pub struct Run {
    /// A one-line description of the scenario.
    pub title: String,
    /// Number of vCPUs.
    pub cpus: usize,
    /// Every event.
    pub events: Vec<TraceEvent>,
    /// The patched sites, in address order.
    pub sites: Vec<Site>,
    /// Every store, in epoch order.
    pub stores: Vec<Store>,
    /// The initial text of the sites' bytes: `(address, value)`.
    pub initial: Vec<(u64, u8)>,
    /// The violation, if the run ended in one.
    pub violation: Option<Violation>,
    /// What the scenario's mutants changed (empty without mutants): each operation of the
    /// unmutated program removed, moved or replaced, and each edit outside the program.
    pub changes: Vec<Change>,
}

/// Where a changed operation would have run in this run: the point between the patcher's
/// operation before it and the one after it (as the unmutated program orders them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Gap {
    /// The change (an index into [`Run::changes`]).
    pub change: usize,
    /// The patch round.
    pub round: Round,
    /// The tick after the last event of the operation before it.
    pub tick: u64,
}

/// What rendering needs of a run's plan — its sites, their initial bytes, the workload's
/// kprobes — taken from the plan before the run consumes it, so that one plan serves the run
/// and its picture.
#[derive(Clone, Debug)]
pub struct PlanFacts {
    sites: Vec<Site>,
    initial: Vec<(u64, u8)>,
    kprobes: Vec<u64>,
}

impl PlanFacts {
    /// The facts of `plan`.
    pub fn of(plan: &Plan) -> Self {
        let mut ranges: Vec<(u64, usize)> = plan.torn.site_ranges().collect();
        ranges.sort_unstable();
        let sites: Vec<Site> = ranges
            .iter()
            .enumerate()
            .map(|(i, &(addr, len))| Site { name: format!("site{i}"), addr, len: len as u64 })
            .collect();
        let base = plan.image.layout.text_base;
        let initial = sites
            .iter()
            .flat_map(|s| (s.addr..s.addr + s.len).map(|a| (a, plan.image.text[(a - base) as usize])))
            .collect();
        let kprobes = plan.image.kprobes.iter().map(|k| k.addr).collect();
        PlanFacts { sites, initial, kprobes }
    }
}

impl Run {
    /// The run of `scenario` whose outcome `outcome` kept its trace (planning the scenario
    /// again for its sites: [`Run::planned`] takes them from the run's own plan).
    pub fn new(scenario: &Scenario, outcome: &Outcome) -> Result<Self, SimError> {
        Ok(Self::planned(scenario, &PlanFacts::of(&scenario.plan()?), outcome))
    }

    /// The run of `scenario` planned as `plan` whose outcome `outcome` kept its trace.
    pub fn planned(scenario: &Scenario, plan: &PlanFacts, outcome: &Outcome) -> Self {
        let (sites, initial) = (plan.sites.clone(), plan.initial.clone());
        let stores = outcome
            .trace
            .iter()
            .filter(|e| e.kind == TraceKind::Store)
            .map(|e| Store {
                epoch: e.epochs.first().copied().unwrap_or(0),
                addr: e.rip.unwrap_or(0),
                bytes: e.bytes.clone(),
                tick: e.tick,
                round: e.round,
                op: e.event.clone(),
            })
            .collect();
        let cpus = scenario.config.cpus;
        let mut title = format!("{} · {cpus} vCPU{}", scenario.label(), if cpus == 1 { "" } else { "s" });
        let mut kprobes: Vec<u64> =
            scenario.kprobes.iter().map(|k| k.addr).chain(plan.kprobes.iter().copied()).collect();
        kprobes.sort_unstable();
        kprobes.dedup();
        for k in kprobes {
            title.push_str(&format!(" · kprobe at {k:#x}"));
        }
        title.push_str(&format!(" · fetch {} · site {}", scenario.config.fetch, scenario.workload.site));
        if let Some(v) = outcome.violation() {
            title.push_str(&format!(" · {} at tick {}", v.kind, v.tick));
        }
        Self {
            title,
            cpus: scenario.config.cpus,
            events: outcome.trace.clone(),
            sites,
            stores,
            initial,
            violation: outcome.violation().cloned(),
            changes: changes(scenario),
        }
    }

    /// Each point of the run where an operation a mutant removed, moved or replaced would
    /// have run: where the patcher ran the operation before it and then, next in the same
    /// round, the operation after it. In tick order.
    pub fn gaps(&self) -> Vec<Gap> {
        let groups = patcher_ops(self);
        let mut out = Vec::new();
        for (i, c) in self.changes.iter().enumerate() {
            let Change::Op { after, before, edit, .. } = c else { continue };
            // A replacement runs between the two neighbours.
            let between = match edit {
                OpEdit::Replaced(by) => Some(by.name()),
                _ => None,
            };
            for (k, g) in groups.iter().enumerate() {
                let starts_round = k == 0 || groups[k - 1].1 != g.1;
                let mut next = k + 1;
                while groups.get(next).is_some_and(|n| Some(n.0) == between && n.1 == g.1) {
                    next += 1;
                }
                let tick = match after {
                    Some(a) if g.0 == a.name() && follows(groups.get(next), before, g.1) => Some(g.3 + 1),
                    None if starts_round && follows(Some(g), before, g.1) => Some(g.2),
                    _ => None,
                };
                out.extend(tick.map(|tick| Gap { change: i, round: g.1, tick }));
            }
        }
        out.sort_by_key(|g| (g.tick, g.change));
        out
    }

    /// The legend line of each change, with where this run shows it, and whether the timeline
    /// marks it (at one point at least).
    pub fn change_lines(&self) -> Vec<(String, bool)> {
        let gaps = self.gaps();
        self.changes
            .iter()
            .enumerate()
            .map(|(i, c)| {
                let ticks: Vec<String> = gaps.iter().filter(|g| g.change == i).map(|g| g.tick.to_string()).collect();
                let line = match (c, ticks.is_empty()) {
                    (Change::Elsewhere { .. } | Change::Switch { .. }, _) => c.describe(),
                    (Change::Op { after, before, .. }, true) => format!(
                        "{}; not marked: no round of this run ran {} then {}",
                        c.describe(),
                        after.map_or("the start", |o| o.name()),
                        before.map_or("the end", |o| o.name())
                    ),
                    (_, false) => format!("{}; would have run at tick {}", c.describe(), ticks.join(", ")),
                };
                (line, !ticks.is_empty())
            })
            .collect()
    }

    /// The site holding `addr`, if any.
    pub fn site_of(&self, addr: u64) -> Option<&Site> {
        self.sites.iter().find(|s| addr >= s.addr && addr < s.addr + s.len)
    }

    /// `site0+2` for an address inside a site, else the address in hex.
    pub fn place(&self, addr: u64) -> String {
        match self.site_of(addr) {
            Some(s) if addr == s.addr => s.name.clone(),
            Some(s) => format!("{}+{}", s.name, addr - s.addr),
            None => format!("{addr:#x}"),
        }
    }

    /// The store of epoch `epoch` (`None` for the initial text, epoch 0).
    pub fn store(&self, epoch: u32) -> Option<&Store> {
        self.stores.iter().find(|s| s.epoch == epoch)
    }

    /// Where a byte shown from `epoch` came from, in words.
    pub fn origin(&self, epoch: u32) -> String {
        match self.store(epoch) {
            None => "the initial text (epoch 0)".into(),
            Some(s) => format!("store {} (tick {}, {}, {})", s.epoch, s.tick, s.round, s.op),
        }
    }

    /// The violating fetch byte by byte: `(address, byte, epoch)`, and the instruction those
    /// bytes decode to (empty if the violation fetched nothing).
    pub fn torn(&self) -> (Vec<(u64, u8, u32)>, String) {
        let Some(v) = self.violation.as_ref().filter(|v| !v.bytes.is_empty()) else {
            return (Vec::new(), String::new());
        };
        let addr = v.rip.unwrap_or(0);
        let bytes: Vec<u8> = v.bytes.iter().map(|b| b.byte).collect();
        let each = v.bytes.iter().enumerate().map(|(i, b)| (addr + i as u64, b.byte, b.epoch)).collect();
        (each, sim_core::trace::disassemble(addr, &bytes))
    }

    /// True if the event's bytes touch a patched site.
    pub fn touches_site(&self, e: &TraceEvent) -> bool {
        e.rip.is_some_and(|r| (r..r + e.bytes.len().max(1) as u64).any(|a| self.site_of(a).is_some()))
    }

    /// The tick of the last event (0 for an empty run).
    pub fn last_tick(&self) -> u64 {
        self.events.last().map_or(0, |e| e.tick)
    }

    /// The ticks to show by default: around the violation (`window` either side), or all.
    pub fn window(&self, around: Option<u64>, window: u64) -> Option<(u64, u64)> {
        let t = around.or(self.violation.as_ref().map(|v| v.tick))?;
        Some((t.saturating_sub(window), t.saturating_add(window).min(self.last_tick()).max(t)))
    }
}

/// What the scenario's mutants change. A custom program is the user's own: only edits outside
/// it are described.
fn changes(scenario: &Scenario) -> Vec<Change> {
    if let Some(c) = &scenario.config.compiled {
        return crate::csource::switches(c, scenario.config.protocol, &scenario.config.mutants);
    }
    let all = change::changes(scenario.config.protocol, &scenario.config.mutants);
    all.into_iter().filter(|c| scenario.config.program.is_none() || matches!(c, Change::Elsewhere { .. })).collect()
}

/// Whether `group` is the operation `op` of round `round` (`None`: the round ended there).
fn follows(group: Option<&(&str, Round, u64, u64)>, op: &Option<Op>, round: Round) -> bool {
    match (group, op) {
        (Some(g), Some(op)) => g.0 == op.name() && g.1 == round,
        (None, None) => true,
        (Some(g), None) => g.1 != round,
        (None, Some(_)) => false,
    }
}

/// The patcher's operations in order, consecutive events of one operation name and round
/// merged: `(name, round, first tick, last tick)` (a kprobe client's operations are not the
/// patcher's program).
fn patcher_ops(run: &Run) -> Vec<(&str, Round, u64, u64)> {
    let mut out: Vec<(&str, Round, u64, u64)> = Vec::new();
    for e in run.events.iter().filter(|e| e.cpu.is_none() && e.actor == "patcher") {
        match out.last_mut() {
            Some(last) if last.0 == e.event && last.1 == e.round => last.3 = e.tick,
            _ => out.push((&e.event, e.round, e.tick, e.tick)),
        }
    }
    out
}

/// Each INT3 handler run: `(vCPU, first tick, end tick)`, from the trap to its IRET (or the end
/// of the run).
pub fn handler_spans(run: &Run) -> Vec<(usize, u64, u64)> {
    spans(run, |e| match (e.kind, e.cpu) {
        (TraceKind::Trap, Some(i)) => Some(Edge::Open(i, e.tick + 1)),
        (TraceKind::Handler, Some(i)) if e.event == "iret" => Some(Edge::Close(i)),
        _ => None,
    })
}

/// Each vCPU's interrupt handler runs: `(vCPU, first tick, end tick)`, from the delivery to its
/// IRET (or the end of the run). Empty for a run without `[interrupts]`.
pub fn irq_spans(run: &Run) -> Vec<(usize, u64, u64)> {
    spans(run, |e| match (e.kind, e.cpu) {
        (TraceKind::IrqEnter, Some(i)) if i < run.cpus => Some(Edge::Open(i, e.tick)),
        (TraceKind::Iret, Some(i)) if i < run.cpus => Some(Edge::Close(i)),
        _ => None,
    })
}

/// Where an event starts or ends a span of a vCPU.
enum Edge {
    /// vCPU `i`'s span starts at this tick.
    Open(usize, u64),
    /// vCPU `i`'s open span ends after this event.
    Close(usize),
}

/// The spans `(vCPU, first tick, end tick)` that `edge` marks, an open one lasting to the end
/// of the run.
fn spans(run: &Run, edge: impl Fn(&TraceEvent) -> Option<Edge>) -> Vec<(usize, u64, u64)> {
    let mut open: Vec<Option<u64>> = vec![None; run.cpus];
    let mut runs = Vec::new();
    for e in &run.events {
        match edge(e) {
            Some(Edge::Open(i, start)) => open[i] = Some(start),
            Some(Edge::Close(i)) => {
                if let Some(start) = open[i].take() {
                    runs.push((i, start, e.tick + 1));
                }
            }
            None => {}
        }
    }
    let end = run.last_tick() + 1;
    runs.extend(open.iter().enumerate().filter_map(|(i, o)| o.map(|start| (i, start, end))));
    runs
}

/// The patcher's phases: `(phase, round, first tick, end tick)`, consecutive operations of
/// one phase merged, bookkeeping (`do_sync = 0`, `smp_wmb()`) joined to the phase it prepares
/// ([`Op::phase`]; a patcher's event after its last operation counts as [`OpPhase::Other`]).
/// A phase lasts until the next one starts (a sync spans its wait for acknowledgements).
pub fn phases(run: &Run) -> Vec<(OpPhase, Round, u64, u64)> {
    let mut out: Vec<(OpPhase, Round, u64, u64)> = Vec::new();
    let mut prepared: Option<u64> = None;
    // A patcher's event is its own client's operation ([`TraceEvent::op`]).
    for e in run.events.iter().filter(|e| e.cpu.is_none()) {
        let Some(phase) = e.op.map_or(Some(OpPhase::Other), |op| op.phase()) else {
            prepared = prepared.or(Some(e.tick));
            continue;
        };
        let start = prepared.take().unwrap_or(e.tick);
        match out.last_mut() {
            Some(last) if last.0 == phase && last.1 == e.round => last.3 = e.tick + 1,
            _ => out.push((phase, e.round, start, e.tick + 1)),
        }
    }
    for i in 0..out.len().saturating_sub(1) {
        out[i].3 = out[i + 1].2;
    }
    // A sync still waiting for acknowledgements when the run ended lasts to the end.
    let last = run.events.iter().rev().find(|e| e.cpu.is_none());
    if let (Some(phase), Some(TraceKind::Broadcast)) = (out.last_mut(), last.map(|e| e.kind)) {
        phase.3 = phase.3.max(run.last_tick() + 1);
    }
    out
}

/// Escapes text for XML and HTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

/// What an event did, in words: its name, except for the two ends of a sync, which share
/// the operation's name.
pub fn label(e: &TraceEvent) -> String {
    match e.kind {
        TraceKind::Broadcast => format!("{}: send IPIs", e.event),
        TraceKind::SyncDone => format!("{}: all acked", e.event),
        _ => e.event.clone(),
    }
}

/// `0f@0 fb@2` — bytes with their epochs.
pub fn bytes_with_epochs(e: &TraceEvent) -> String {
    e.bytes.iter().zip(&e.epochs).map(|(b, ep)| format!("{b:02x}@{ep}")).collect::<Vec<_>>().join(" ")
}
