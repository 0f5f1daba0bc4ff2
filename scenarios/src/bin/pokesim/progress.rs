//! Progress of long commands on stderr: a bar when stderr is a terminal, otherwise a one-line
//! status every [`PERIOD`] (so CI logs and batch jobs see that work goes on), nothing with
//! `--quiet`. Wall time is read here for display only; it never enters a run.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a non-terminal status line is printed.
pub const PERIOD: Duration = Duration::from_secs(10);

/// A progress display for `total` units of work named `unit`.
pub struct Progress {
    bar: Option<ProgressBar>,
    status: Option<Mutex<Instant>>,
    start: Instant,
    label: String,
    unit: &'static str,
    total: u64,
}

impl Progress {
    /// A display for `label`; `quiet` shows nothing. `total` 0 means unknown.
    pub fn new(label: &str, total: u64, unit: &'static str, quiet: bool) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let bar = (terminal && !quiet).then(|| {
            let b = ProgressBar::new(total);
            let template = format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}}");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                b.set_style(style);
            }
            b
        });
        let now = Instant::now();
        Self {
            bar,
            status: (!terminal && !quiet).then(|| Mutex::new(now)),
            start: now,
            label: label.to_string(),
            unit,
            total,
        }
    }

    /// `done` units are finished.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
        let Some(last) = &self.status else { return };
        let Ok(mut last) = last.lock() else { return };
        if last.elapsed() >= PERIOD {
            *last = Instant::now();
            let of = if self.total > 0 { format!("/{}", self.total) } else { String::new() };
            let secs = self.start.elapsed().as_secs_f64();
            crate::out::warn(&format!("{}: {done}{of} {} done, {secs:.0}s", self.label, self.unit));
        }
    }

    /// Removes the bar.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}
