//! `pokesim trace`: a recording replayed and shown as text, Perfetto JSON, SVG or an HTML
//! report (`scenarios::render`).

use std::path::PathBuf;

use clap::{Args, ValueEnum};
use scenarios::artifact::Replayable;
use scenarios::render::{self, timeline::Layout, PlanFacts, Run};
use serde::Serialize;
use sim_core::Observe;

use crate::args::OutputOpts;
use crate::out::{self, Failure, Status};

/// What `pokesim trace` writes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Fixed columns with decoded instructions, kernel statements and a legend.
    Text,
    /// Chrome trace-event JSON for ui.perfetto.dev or chrome://tracing (the whole run).
    Perfetto,
    /// One self-contained HTML report with a zoomable timeline (the whole run).
    Html,
    /// A static SVG timeline (the window around the violation, or --all).
    Svg,
}

/// `pokesim trace`.
#[derive(Args)]
pub struct TraceArgs {
    /// The artifact (JSON), or a recorded corpus entry (TOML).
    artifact: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = Format::Text)]
    format: Format,
    /// Write to this file instead of stdout (`-`: stdout). An existing target must be a
    /// regular file, which is replaced atomically; its directory must exist.
    #[arg(short, long, value_name = "FILE")]
    output: Option<PathBuf>,
    /// Text and SVG: show the ticks around this one [default: the violation's tick].
    #[arg(long, value_name = "TICK")]
    around: Option<u64>,
    /// Text and SVG: ticks either side of --around [default: 40].
    #[arg(long, value_name = "TICKS")]
    window: Option<u64>,
    /// Text and SVG: show every tick of the run.
    #[arg(long, conflicts_with_all = ["around", "window"])]
    all: bool,
    #[command(flatten)]
    out: OutputOpts,
}

impl TraceArgs {
    /// Rejects combinations that would otherwise be ignored.
    fn check(&self) -> Result<(), Failure> {
        if let Some(path) = &self.output {
            out::check_output(path, "-o")?;
        }
        let windowed = self.around.is_some() || self.window.is_some() || self.all;
        if windowed && matches!(self.format, Format::Perfetto | Format::Html) {
            return Err(Failure::Bad(
                "--around, --window and --all apply to --format text and svg; perfetto and html always hold the whole run"
                    .into(),
            ));
        }
        if self.out.json && self.format != Format::Text {
            return Err(Failure::Bad("--json writes the events as JSON lines (the text format's data); it cannot be combined with --format perfetto, html or svg".into()));
        }
        Ok(())
    }
}

/// The events in `window` as JSON lines.
fn json_lines(run: &Run, window: Option<(u64, u64)>) -> Result<String, Failure> {
    let mut text = String::new();
    for e in run.events.iter().filter(|e| window.is_none_or(|(lo, hi)| e.tick >= lo && e.tick <= hi)) {
        text.push_str(&out::json_line(e)?);
        text.push('\n');
    }
    Ok(text)
}

#[derive(Serialize)]
struct Written {
    command: &'static str,
    format: String,
    file: String,
    bytes: usize,
    events: usize,
}

/// `pokesim trace`: the run's events around its violation (or `--around`, or `--all`), in
/// the chosen format.
pub fn trace(a: &TraceArgs) -> Result<Status, Failure> {
    a.check()?;
    let (r, plan) = Replayable::load_planned(&a.artifact)?;
    let facts = PlanFacts::of(&plan);
    let o = r.reproduce_plan(plan, Observe::TRACE)?;
    let status = super::run::status(r.expect.met_by(o.violation().map(|v| v.kind)), o.verdict);
    let run = Run::planned(&r.scenario, &facts, &o);
    if let Some(t) = a.around.filter(|&t| t > run.last_tick()) {
        return Err(Failure::Bad(format!("--around: tick {t} is past the run's last tick {}", run.last_tick())));
    }
    let window = if a.all { None } else { run.window(a.around, a.window.unwrap_or(40)) };
    let text = match a.format {
        Format::Text if a.out.json => json_lines(&run, window)?,
        Format::Text => render::text::render(&run, window),
        Format::Perfetto => render::perfetto::render(&run),
        Format::Html => render::html::render(&run),
        Format::Svg => render::timeline::render(&run, Layout::fit(&run, window)),
    };
    let json = a.out.json || a.format == Format::Perfetto;
    let Some(path) = a.output.as_ref().filter(|p| !scenarios::output::is_stdout(p)) else {
        out::text(&text, json)?;
        return Ok(status);
    };
    out::document(path, &text, json)?;
    let format = if a.out.json { "json".to_string() } else { format!("{:?}", a.format).to_lowercase() };
    let w = Written {
        command: "trace",
        format,
        file: path.display().to_string(),
        bytes: text.len(),
        events: run.events.len(),
    };
    if a.out.quiet {
        return Ok(status);
    }
    if a.out.json {
        out::json(&w)?;
    } else {
        out::line(format!("wrote {} ({}, {} bytes, {} events)", w.file, w.format, w.bytes, w.events))?;
    }
    Ok(status)
}
