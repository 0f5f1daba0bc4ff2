//! The SVG timeline: a lane for the patcher and one per vCPU, simulated time (ticks) from left
//! to right; the patcher's phases as bands across all lanes; every event a mark in its actor's
//! lane (guest steps, site fetches, traps, handler steps, IPI deliveries, stores, broadcasts);
//! each INT3 handler run as a bar under its lane; each IPI as a line from the broadcast to the
//! delivery; the violation outlined and labelled.
//!
//! The drawing has two groups: `#plot` (shapes, which the HTML report scales horizontally to
//! zoom) and `#labels` (text, which it moves but never stretches; each label's tick position is
//! its `data-x`). A static picture ([`Detail::Inline`]) gives every mark its details as `data-*`
//! attributes and a `<title>` (a plain SVG viewer's tooltip); the HTML report
//! ([`Detail::Index`]) gives each mark only `data-i`, the index of its event in the report's
//! event table, which keeps a long run's file small.

use std::fmt::Write;

use sim_core::program::OpPhase;
use sim_core::trace::{TraceEvent, TraceKind};

use super::{bytes_with_epochs, escape, handler_spans, label, phases, Gap, Run};
use sim_core::protocol::change::Change;

/// Left margin (lane names).
pub const LEFT: f64 = 96.0;
const TOP: f64 = 70.0;
const LANE: f64 = 40.0;
const GAP: f64 = 8.0;
const RIGHT: f64 = 24.0;
/// The narrowest static picture (its legend wraps to fit).
const MIN_WIDTH: f64 = 640.0;
/// The height of a legend row.
const LEGEND_ROW: f64 = 16.0;
/// A conservative advance width of one character at the 11-pixel font (DejaVu Sans Mono's is
/// 0.602 em, 6.62 px): what label widths are measured with.
const CHAR: f64 = 6.8;
/// The same at the title's 13-pixel font (7.83 px).
const TITLE_CHAR: f64 = 8.0;
/// The colour of the mark of an operation a mutant removed (unique in the picture).
pub const REMOVED_COLOR: &str = "#ff00ff";

/// How much each mark carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Detail {
    /// `data-*` attributes and a `<title>`: a picture that explains itself.
    Inline,
    /// `data-i` only: the HTML report looks the event up.
    Index,
}

/// How to draw the timeline.
#[derive(Clone, Copy, Debug)]
pub struct Layout {
    /// The ticks to draw (inclusive).
    pub window: (u64, u64),
    /// Pixels per tick.
    pub px: f64,
    /// What each mark carries.
    pub detail: Detail,
}

impl Layout {
    /// A static picture of `window` (or the whole run) about 1200 pixels wide.
    pub fn fit(run: &Run, window: Option<(u64, u64)>) -> Self {
        let (lo, hi) = window.unwrap_or((0, run.last_tick()));
        // Never past the run (or the picture's axis would count up to the window's end).
        let hi = hi.min(run.last_tick().max(lo));
        let span = hi.saturating_sub(lo).saturating_add(1);
        Layout { window: (lo, hi), px: (1200.0 / span as f64).clamp(1.0, 24.0), detail: Detail::Inline }
    }

    /// The whole run squeezed into 1200 pixels (the HTML report zooms in).
    pub fn whole(run: &Run) -> Self {
        let hi = run.last_tick();
        Layout { window: (0, hi), px: 1200.0 / hi.saturating_add(1) as f64, detail: Detail::Index }
    }
}

/// The colour of a phase band.
pub fn phase_color(phase: OpPhase) -> &'static str {
    match phase {
        OpPhase::Publish => "#9e9e9e",
        OpPhase::WriteInt3 => "#e53935",
        OpPhase::WriteTails => "#fb8c00",
        OpPhase::WriteFirstBytes => "#8e24aa",
        OpPhase::WriteWhole => "#6d4c41",
        OpPhase::Sync => "#43a047",
        OpPhase::Teardown | OpPhase::Other => "#1e88e5",
    }
}

/// The phases the HTML report's legend shows a swatch for, in its order.
pub const LEGEND_PHASES: [OpPhase; 6] = [
    OpPhase::Publish,
    OpPhase::WriteInt3,
    OpPhase::WriteTails,
    OpPhase::WriteFirstBytes,
    OpPhase::Sync,
    OpPhase::Teardown,
];

/// The CSS class of an event's mark (the legend's names).
pub fn mark_class(run: &Run, e: &TraceEvent) -> &'static str {
    match e.kind {
        TraceKind::Step if run.touches_site(e) => "site-fetch",
        TraceKind::Step | TraceKind::Finished => "step",
        TraceKind::Trap => "trap",
        TraceKind::Fault => "fault",
        TraceKind::Handler => "handler",
        // An interrupt's entry and IRET are marked as IPIs are (asynchronous events); the
        // timeline has no legend entry of their own yet.
        TraceKind::Ipi | TraceKind::IrqEnter | TraceKind::Iret => "ipi",
        TraceKind::Store => "store",
        TraceKind::Broadcast => "broadcast",
        TraceKind::SyncDone => "sync-done",
        TraceKind::Patcher => "patcher",
        TraceKind::Drain => "drain",
    }
}

/// The legend: `(class, what it marks)`.
pub const LEGEND: [(&str, &str); 10] = [
    ("step", "guest step"),
    ("site-fetch", "guest step fetching a patched site"),
    ("trap", "INT3 trap"),
    ("handler", "INT3 handler micro-step"),
    ("ipi", "IPI delivered: sync_core() + ack"),
    ("fault", "guest fault"),
    ("store", "text store"),
    ("broadcast", "IPI broadcast"),
    ("sync-done", "sync complete"),
    ("patcher", "other patcher operation"),
];

struct Canvas<'a> {
    run: &'a Run,
    layout: Layout,
}

impl Canvas<'_> {
    fn lo(&self) -> u64 {
        self.layout.window.0
    }

    fn hi(&self) -> u64 {
        self.layout.window.1
    }

    fn x(&self, tick: u64) -> f64 {
        LEFT + (tick.saturating_sub(self.lo())) as f64 * self.layout.px
    }

    /// The lane of an actor: the patcher first, then the vCPUs.
    fn lane_y(&self, cpu: Option<usize>) -> f64 {
        TOP + cpu.map_or(0.0, |c| (c + 1) as f64) * (LANE + GAP)
    }

    /// The plot's right edge.
    fn plot_end(&self) -> f64 {
        self.x(self.hi().saturating_add(1))
    }

    /// Room right of the plot for the violation's label, room for the title and every
    /// label of a removed operation, and in a static picture for the legend.
    fn width(&self) -> f64 {
        let label = self.run.violation.as_ref().map_or(0.0, |v| text_width(&violation_label(v)) + 12.0);
        let least = if self.layout.detail == Detail::Inline { MIN_WIDTH } else { 0.0 };
        let title = 8.0 + TITLE_CHAR * self.run.title.chars().count() as f64 + 8.0;
        let removed =
            self.gaps().into_iter().map(|g| self.gap_x(&g) + 4.0 + text_width(&gap_label(self.run, &g)) + 8.0);
        let bands = band_labels(self).into_iter().map(|(x, _, text)| x + text_width(&text) + 4.0);
        removed.chain(bands).fold((self.plot_end() + RIGHT.max(label)).max(least).max(title), f64::max)
    }

    /// The run's gaps inside the window.
    fn gaps(&self) -> Vec<Gap> {
        self.run.gaps().into_iter().filter(|g| self.shown(g.tick)).collect()
    }

    /// Where a gap is drawn: the left edge of its tick.
    fn gap_x(&self, g: &Gap) -> f64 {
        self.x(g.tick)
    }

    /// The baseline of the tick axis, under the last lane.
    fn axis_y(&self) -> f64 {
        self.lane_y(Some(self.run.cpus.saturating_sub(1))) + LANE + 16.0
    }

    fn height(&self) -> f64 {
        let legend = match self.layout.detail {
            Detail::Inline => {
                let rows = legend_layout(self.width()).last().map_or(0, |l| l.3 + 1);
                6.0 + LEGEND_ROW * (rows + self.change_rows().len()) as f64
            }
            Detail::Index => 0.0,
        };
        self.axis_y() + 12.0 + legend
    }

    /// The legend's lines for the mutants' changes, wrapped to the picture's width: `(change,
    /// marked, line)`; the first line of a change carries its swatch (the struck-out step's if
    /// the timeline marks the change).
    fn change_rows(&self) -> Vec<(usize, bool, String)> {
        let room = ((self.width() - 8.0 - 16.0 - 8.0) / CHAR).max(20.0) as usize;
        let mut out = Vec::new();
        for (i, (line, marked)) in self.run.change_lines().iter().enumerate() {
            out.extend(wrap(line, room).into_iter().map(|l| (i, *marked, l)));
        }
        out
    }

    fn shown(&self, tick: u64) -> bool {
        tick >= self.lo() && tick <= self.hi()
    }

    /// True if `[start, stop)` overlaps the window.
    fn overlaps(&self, start: u64, stop: u64) -> bool {
        stop > self.lo() && start <= self.hi()
    }
}

/// The timeline of `run` as an SVG document.
pub fn render(run: &Run, layout: Layout) -> String {
    let c = Canvas { run, layout };
    let (w, h) = (c.width(), c.height());
    let mut s = String::new();
    let _ = writeln!(
        s,
        r#"<svg xmlns="http://www.w3.org/2000/svg" id="timeline" width="{w:.0}" height="{h:.0}" viewBox="0 0 {w:.0} {h:.0}" font-family="DejaVu Sans Mono, monospace" font-size="11" data-lo="{}" data-hi="{}" data-px="{}" data-left="{LEFT}" data-top="{TOP}" data-plot-width="{:.2}">"#,
        c.lo(),
        c.hi(),
        layout.px,
        c.plot_end() - LEFT
    );
    s.push_str(STYLE);
    let _ = writeln!(s, r##"<rect x="0" y="0" width="{w:.0}" height="{h:.0}" fill="#ffffff"/>"##);
    let _ = writeln!(
        s,
        r#"<clipPath id="plot-area"><rect x="{LEFT}" y="0" width="{:.0}" height="{h:.0}"/></clipPath>"#,
        w - LEFT
    );
    lanes(&c, &mut s);
    s.push_str(r#"<g clip-path="url(#plot-area)"><g id="plot">"#);
    s.push('\n');
    bands(&c, &mut s);
    handler_runs(&c, &mut s);
    ipi_lines(&c, &mut s);
    for (i, e) in run.events.iter().enumerate().filter(|(_, e)| c.shown(e.tick)) {
        mark(&c, i, e, &mut s);
    }
    removed(&c, &mut s);
    violation(&c, &mut s);
    s.push_str("</g>\n");
    labels(&c, &mut s);
    s.push_str("</g>\n");
    let _ = writeln!(s, r#"<text x="8" y="18" font-size="13" font-weight="bold">{}</text>"#, escape(&run.title));
    if layout.detail == Detail::Inline {
        legend(&c, &mut s);
        changes_legend(&c, &mut s);
    }
    s.push_str("</svg>\n");
    s
}

const STYLE: &str = r#"<style>
.ev { stroke-width: 0.5px; vector-effect: non-scaling-stroke; }
.step { fill: #b0bec5; stroke: #b0bec5; }
.site-fetch { fill: #1e88e5; stroke: #1e88e5; }
.trap { fill: #e53935; stroke: #e53935; }
.fault { fill: #000000; stroke: #000000; }
.handler { fill: #fb8c00; stroke: #fb8c00; }
.ipi { fill: #43a047; stroke: #43a047; }
.store { fill: #5d4037; stroke: #5d4037; }
.broadcast { fill: #2e7d32; stroke: #2e7d32; }
.sync-done { fill: #81c784; stroke: #81c784; }
.patcher { fill: #90a4ae; stroke: #90a4ae; }
.lane-bg { fill: #fafafa; stroke: #e0e0e0; }
.handler-run { fill: #ffb74d; }
.ipi-line { stroke: #43a047; stroke-width: 1px; stroke-dasharray: 3 2; fill: none; opacity: 0.7; vector-effect: non-scaling-stroke; }
.violation { fill: none; stroke: #d50000; stroke-width: 3px; vector-effect: non-scaling-stroke; }
.band-label { fill: #424242; font-size: 10px; }
.axis-label { fill: #616161; }
.violation-label { fill: #d50000; font-weight: bold; }
.removed { fill: #ff00ff; stroke: #ff00ff; stroke-width: 3px; vector-effect: non-scaling-stroke; }
.unmarked { fill: none; stroke: #9e9e9e; stroke-width: 1px; }
.removed-strike { stroke: #ffffff; stroke-width: 2px; vector-effect: non-scaling-stroke; }
.removed-label { fill: #c000c0; font-weight: bold; font-size: 10px; paint-order: stroke; stroke: #ffffff; stroke-width: 3px; }
</style>
"#;

fn lanes(c: &Canvas<'_>, s: &mut String) {
    let width = c.plot_end() - LEFT;
    for lane in 0..=c.run.cpus {
        let cpu = lane.checked_sub(1);
        let y = c.lane_y(cpu);
        let name = cpu.map_or("patcher".to_string(), |i| format!("cpu{i}"));
        let _ = writeln!(
            s,
            r#"<g class="lane" data-lane="{name}"><rect class="lane-bg" x="{LEFT}" y="{y:.1}" width="{width:.1}" height="{LANE}"/><text x="8" y="{:.1}" font-weight="bold">{name}</text></g>"#,
            y + LANE / 2.0 + 4.0
        );
    }
    let _ = writeln!(s, r#"<text class="axis-label" x="8" y="{:.1}">tick</text>"#, c.axis_y());
}

fn bands(c: &Canvas<'_>, s: &mut String) {
    let top = TOP - 26.0;
    let height = (c.run.cpus + 1) as f64 * (LANE + GAP) + 26.0;
    for (phase, round, lo, hi) in phases(c.run) {
        if !c.overlaps(lo, hi) {
            continue;
        }
        let (x0, x1) = (c.x(lo.max(c.lo())), c.x(hi.min(c.hi().saturating_add(1))));
        let _ = writeln!(
            s,
            r#"<rect class="band" data-phase="{}" data-round="{}" data-lo="{lo}" data-hi="{hi}" x="{x0:.2}" y="{top:.1}" width="{:.2}" height="{height:.1}" fill="{}" fill-opacity="0.12"/>"#,
            escape(phase.name()),
            round.value(),
            (x1 - x0).max(0.5),
            phase_color(phase)
        );
    }
}

fn handler_runs(c: &Canvas<'_>, s: &mut String) {
    for (i, start, stop) in handler_spans(c.run) {
        if !c.overlaps(start, stop) {
            continue;
        }
        let (x0, x1) = (c.x(start.max(c.lo())), c.x(stop.min(c.hi().saturating_add(1))));
        let y = c.lane_y(Some(i)) + LANE - 5.0;
        let _ = writeln!(
            s,
            r#"<rect class="handler-run" x="{x0:.2}" y="{y:.1}" width="{:.2}" height="4"><title>cpu{i}: INT3 handler, ticks {start}..{stop}</title></rect>"#,
            (x1 - x0).max(0.5)
        );
    }
}

fn ipi_lines(c: &Canvas<'_>, s: &mut String) {
    let broadcasts: Vec<(u64, u64)> = c
        .run
        .events
        .iter()
        .filter(|e| e.kind == TraceKind::Broadcast)
        .filter_map(|e| e.sync.map(|n| (n, e.tick)))
        .collect();
    for e in c.run.events.iter().filter(|e| e.kind == TraceKind::Ipi) {
        let Some(&(_, from)) = broadcasts.iter().find(|(n, _)| Some(*n) == e.sync) else { continue };
        if !c.overlaps(from, e.tick + 1) {
            continue;
        }
        let half = c.layout.px / 2.0;
        let (x0, y0) = (c.x(from.max(c.lo())) + half, c.lane_y(None) + LANE / 2.0);
        let (x1, y1) = (c.x(e.tick.min(c.hi())) + half, c.lane_y(e.cpu) + LANE / 2.0);
        let _ = writeln!(s, r#"<path class="ipi-line" d="M{x0:.2},{y0:.1} L{x1:.2},{y1:.1}"/>"#);
    }
}

fn mark(c: &Canvas<'_>, i: usize, e: &TraceEvent, s: &mut String) {
    let x = c.x(e.tick);
    let y = c.lane_y(e.cpu) + 6.0;
    let (w, h) = (c.layout.px * 0.8, LANE - 14.0);
    let class = mark_class(c.run, e);
    if c.layout.detail == Detail::Index {
        let _ = writeln!(
            s,
            r#"<rect class="ev {class}" x="{x:.2}" y="{y:.0}" width="{w:.2}" height="{h:.0}" data-i="{i}"/>"#
        );
        return;
    }
    let place = e.rip.map_or(String::new(), |r| c.run.place(r));
    let insn = e.insn.clone().unwrap_or_default();
    let bytes = bytes_with_epochs(e);
    let kernel = e.kernel.clone().unwrap_or_default();
    let title = format!(
        "tick {} {} {} {place} {insn} {bytes} | {} {} | {kernel}",
        e.tick,
        e.actor,
        label(e),
        e.round.short(),
        e.op_name()
    );
    let _ = writeln!(
        s,
        r#"<rect class="ev {class}" x="{x:.2}" y="{y:.0}" width="{w:.2}" height="{h:.0}" data-i="{i}" data-tick="{}" data-actor="{}" data-event="{}" data-where="{}" data-insn="{}" data-bytes="{}" data-round="{}" data-phase="{}" data-kernel="{}"><title>{}</title></rect>"#,
        e.tick,
        e.actor,
        escape(&label(e)),
        escape(&place),
        escape(&insn),
        escape(&bytes),
        e.round.value(),
        escape(e.op_name()),
        escape(&kernel),
        escape(&title)
    );
}

fn violation(c: &Canvas<'_>, s: &mut String) {
    let Some(v) = &c.run.violation else { return };
    if !c.shown(v.tick) {
        return;
    }
    let (x, y) = (c.x(v.tick), c.lane_y(v.cpu) + 1.0);
    let _ = writeln!(
        s,
        r#"<rect class="violation" data-tick="{}" x="{x:.2}" y="{y:.1}" width="{:.2}" height="{:.1}"><title>{}</title></rect>"#,
        v.tick,
        c.layout.px,
        LANE - 2.0,
        escape(&v.to_string())
    );
}

/// Each point where an operation a mutant removed, moved or replaced would have run: a
/// struck-out step in the patcher's lane (class `removed`, `data-change` its legend line).
fn removed(c: &Canvas<'_>, s: &mut String) {
    for g in c.gaps() {
        let Some(change) = c.run.changes.get(g.change) else { continue };
        // The report stretches the plot as it zooms: there the mark is half a tick wide, and
        // its stroke (which does not stretch) keeps it visible when a tick is narrow.
        let w = match c.layout.detail {
            Detail::Inline => (c.layout.px * 0.5).max(4.0),
            Detail::Index => c.layout.px * 0.5,
        };
        let (x, y, h) = (c.gap_x(&g) - w / 2.0, c.lane_y(None) + 3.0, LANE - 6.0);
        let _ = writeln!(
            s,
            r#"<g class="removed-step" data-change="{}" data-mutant="{}" data-tick="{}" data-round="{}"><rect class="removed" x="{x:.2}" y="{y:.1}" width="{w:.2}" height="{h:.1}"><title>{}</title></rect><path class="removed-strike" d="M{x:.2},{:.1} L{:.2},{y:.1}"/></g>"#,
            g.change,
            change.mutant(),
            g.tick,
            g.round.value(),
            escape(&change.describe()),
            y + h,
            x + w
        );
    }
}

/// The label of a gap: `✗ sync-if-do-sync` (what the unmutated program runs there).
fn gap_label(run: &Run, g: &Gap) -> String {
    match run.changes.get(g.change) {
        Some(Change::Op { op, edit, .. }) => format!("{} {}", edit.word(), op.name()),
        _ => String::new(),
    }
}

/// `text` at the 11-pixel font, measured conservatively.
fn text_width(text: &str) -> f64 {
    CHAR * text.chars().count() as f64
}

/// `text` in lines of at most `room` characters, broken at spaces (a longer word stands alone).
fn wrap(text: &str, room: usize) -> Vec<String> {
    let mut lines: Vec<String> = vec![String::new()];
    for word in text.split(' ') {
        let last = lines.last_mut().expect("one line at least");
        if last.is_empty() {
            last.push_str(word);
        } else if last.chars().count() + 1 + word.chars().count() <= room {
            last.push(' ');
            last.push_str(word);
        } else {
            lines.push(word.to_string());
        }
    }
    lines
}

/// What the mutants changed, under the legend: a swatch and the change's line, wrapped.
fn changes_legend(c: &Canvas<'_>, s: &mut String) {
    let rows = c.change_rows();
    if rows.is_empty() {
        return;
    }
    let first = legend_layout(c.width()).last().map_or(0, |l| l.3 + 1);
    s.push_str(r#"<g id="changes">"#);
    let mut last = None;
    for (k, (i, marked, line)) in rows.iter().enumerate() {
        let y = c.axis_y() + 18.0 + LEGEND_ROW * (first + k) as f64;
        if last != Some(*i) {
            let class = if *marked { "removed" } else { "unmarked" };
            let _ = write!(s, r#"<rect class="{class}" x="8" y="{:.0}" width="9" height="9"/>"#, y - 8.0);
        }
        last = Some(*i);
        let _ = write!(s, r#"<text class="change" data-change="{i}" x="24" y="{y:.0}">{}</text>"#, escape(line));
    }
    s.push_str("</g>\n");
}

fn violation_label(v: &sim_core::Violation) -> String {
    format!("{} at tick {}", v.kind, v.tick)
}

/// The static legend's entries, wrapped into rows that fit `width`: `(class, what, x, row)`.
fn legend_layout(width: f64) -> Vec<(&'static str, &'static str, f64, usize)> {
    let (mut x, mut row, mut out) = (8.0, 0, Vec::new());
    for (class, what) in LEGEND.iter().filter(|(class, _)| *class != "patcher") {
        let w = 12.0 + 6.6 * what.len() as f64 + 14.0;
        if x > 8.0 && x + w > width {
            (x, row) = (8.0, row + 1);
        }
        out.push((*class, *what, x, row));
        x += w;
    }
    out
}

/// The legend under the axis (static pictures; the HTML report has its own).
fn legend(c: &Canvas<'_>, s: &mut String) {
    s.push_str(r#"<g id="legend">"#);
    for (class, what, x, row) in legend_layout(c.width()) {
        let y = c.axis_y() + 18.0 + LEGEND_ROW * row as f64;
        let _ = write!(
            s,
            r#"<rect class="ev {class}" x="{x:.0}" y="{:.0}" width="9" height="9"/><text x="{:.0}" y="{y:.0}">{}</text>"#,
            y - 8.0,
            x + 12.0,
            escape(what)
        );
    }
    s.push_str("</g>\n");
}

/// The phase bands' labels: `(x, row, text)`. Two rows; a static label that fits in neither is
/// left out (the HTML report places them again as it zooms).
fn band_labels(c: &Canvas<'_>) -> Vec<(f64, usize, String)> {
    let mut rows = [f64::MIN; 2];
    let mut out = Vec::new();
    for (phase, round, lo, hi) in phases(c.run) {
        let x = c.x(lo.max(c.lo())) + 2.0;
        let text = format!("{} {phase}", round.short());
        let row = rows.iter().position(|&right| x >= right);
        if !c.overlaps(lo, hi) || (c.layout.detail == Detail::Inline && row.is_none()) {
            continue;
        }
        let row = row.unwrap_or(0);
        rows[row] = x + 6.6 * text.len() as f64 + 6.0;
        out.push((x, row, text));
    }
    out
}

/// Text that moves with the plot but is not stretched: band labels, the axis, the violation's
/// label. Each has `data-x`, its position at zoom 1.
fn labels(c: &Canvas<'_>, s: &mut String) {
    s.push_str(r#"<g id="labels">"#);
    s.push('\n');
    for (x, row, text) in band_labels(c) {
        let _ = writeln!(
            s,
            r#"<text class="band-label" x="{x:.2}" data-x="{x:.2}" y="{:.1}">{}</text>"#,
            TOP - 4.0 - 11.0 * row as f64,
            escape(&text)
        );
    }
    axis(c, s);
    for g in c.gaps() {
        let x = c.gap_x(&g) + 4.0;
        let _ = writeln!(
            s,
            r#"<text class="removed-label" x="{x:.2}" data-x="{x:.2}" y="{:.1}">{}</text>"#,
            c.lane_y(None) + LANE - 1.0,
            escape(&gap_label(c.run, &g))
        );
    }
    if let Some(v) = c.run.violation.as_ref().filter(|v| c.shown(v.tick)) {
        let x = c.x(v.tick) + c.layout.px + 6.0;
        let _ = writeln!(
            s,
            r#"<text class="violation-label" x="{x:.2}" data-x="{x:.2}" y="{:.1}">{}</text>"#,
            c.lane_y(v.cpu) + 14.0,
            violation_label(v)
        );
    }
    s.push_str("</g>\n");
}

fn axis(c: &Canvas<'_>, s: &mut String) {
    let y = c.axis_y();
    let span = c.hi().saturating_sub(c.lo()).saturating_add(1);
    let pixels = span as f64 * c.layout.px;
    let step = [1u64, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10_000, 20_000, 50_000]
        .into_iter()
        .find(|&st| span as f64 / st as f64 * 60.0 <= pixels)
        .unwrap_or(100_000);
    let mut next = c.lo().checked_next_multiple_of(step);
    s.push_str(r#"<g id="axis">"#);
    while let Some(t) = next.filter(|&t| t <= c.hi()) {
        let x = c.x(t);
        let _ = write!(s, r#"<text class="axis-label" x="{x:.2}" data-x="{x:.2}" y="{y:.1}">{t}</text>"#);
        next = t.checked_add(step);
    }
    s.push_str("</g>\n");
}
