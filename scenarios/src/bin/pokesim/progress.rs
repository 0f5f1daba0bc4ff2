//! Progress of long commands on stderr: a bar when stderr is a terminal, otherwise a one-line
//! status every [`PERIOD`] — printed by a ticker thread, so a line appears every period even
//! while one unit of work (a run, a row, an execution) takes longer than that — and nothing
//! with `--quiet`. Wall time is read here for display only; it never enters a run.
//!
//! The hidden environment variable [`PERIOD_VAR`] sets the period in milliseconds; `0` prints
//! a status line at every update instead (what the tests use to see that a command reports
//! progress without waiting for the clock).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressStyle};

/// How often a non-terminal status line is printed.
pub const PERIOD: Duration = Duration::from_secs(10);

/// The environment variable that overrides [`PERIOD`] (milliseconds; `0`: every update).
pub const PERIOD_VAR: &str = "POKESIM_PROGRESS_PERIOD_MS";

/// The period in force: [`PERIOD_VAR`] if it is a number of milliseconds, else [`PERIOD`].
fn period() -> Duration {
    std::env::var(PERIOD_VAR).ok().and_then(|v| v.trim().parse().ok()).map_or(PERIOD, Duration::from_millis)
}

/// What the status line shows: how much of how much work, since when.
struct Counter {
    label: String,
    unit: &'static str,
    /// The real amount of work, if known (never a cap: a cap is not the expected work).
    total: Option<u64>,
    done: AtomicU64,
    start: Instant,
}

impl Counter {
    fn line(&self) -> String {
        let done = self.done.load(Ordering::Relaxed);
        let of = self.total.map_or(String::new(), |t| format!("/{t}"));
        let secs = self.start.elapsed().as_secs_f64();
        format!("{}: {done}{of} {} done, {secs:.0}s", self.label, self.unit)
    }
}

/// The non-terminal status line: printed at every update (period 0) or by a ticker thread.
struct Status {
    counter: Arc<Counter>,
    every_update: bool,
    ticker: Mutex<Option<(Sender<()>, JoinHandle<()>)>>,
}

impl Status {
    fn new(counter: Counter, period: Duration) -> Self {
        let counter = Arc::new(counter);
        let every_update = period.is_zero();
        let ticker = (!every_update).then(|| {
            let (stop, stopped) = mpsc::channel::<()>();
            let c = Arc::clone(&counter);
            let handle = std::thread::spawn(move || {
                while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(period) {
                    crate::out::warn(&c.line());
                }
            });
            (stop, handle)
        });
        Self { counter, every_update, ticker: Mutex::new(ticker) }
    }

    fn set(&self, done: u64) {
        self.counter.done.store(done, Ordering::Relaxed);
        if self.every_update {
            crate::out::warn(&self.counter.line());
        }
    }

    /// Stops the ticker (idempotent).
    fn stop(&self) {
        let ticker = self.ticker.lock().ok().and_then(|mut t| t.take());
        if let Some((stop, handle)) = ticker {
            drop(stop);
            let _ = handle.join();
        }
    }
}

/// A progress display for `total` units of work named `unit`.
pub struct Progress {
    bar: Option<ProgressBar>,
    status: Option<Status>,
}

impl Progress {
    /// A display for `label`; `quiet` shows nothing. `total` is the real amount of work, 0 if
    /// it is not known in advance (never a cap: the display then counts without a denominator).
    pub fn new(label: &str, total: u64, unit: &'static str, quiet: bool) -> Self {
        let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
        let total = (total > 0).then_some(total);
        let bar = (terminal && !quiet).then(|| bar(total, unit));
        let counter = Counter { label: label.to_string(), unit, total, done: AtomicU64::new(0), start: Instant::now() };
        Self { bar, status: (!terminal && !quiet).then(|| Status::new(counter, period())) }
    }

    /// `done` units are finished.
    pub fn set(&self, done: u64) {
        if let Some(b) = &self.bar {
            b.set_position(done);
        }
        if let Some(s) = &self.status {
            s.set(done);
        }
    }

    /// Removes the bar and stops the status line.
    pub fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
        if let Some(s) = &self.status {
            s.stop();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.finish();
    }
}

/// A terminal bar: `pos/len` when the amount of work is known, a count otherwise; it ticks
/// on its own, so the elapsed time moves while a long unit of work runs.
fn bar(total: Option<u64>, unit: &str) -> ProgressBar {
    let (b, template) = match total {
        Some(t) => {
            (ProgressBar::new(t), format!("{{elapsed_precise}} [{{bar:40}}] {{pos}}/{{len}} {unit} {{per_sec}}"))
        }
        None => (ProgressBar::no_length(), format!("{{elapsed_precise}} {{spinner}} {{pos}} {unit} {{per_sec}}")),
    };
    if let Ok(style) = ProgressStyle::with_template(&template) {
        b.set_style(style);
    }
    b.enable_steady_tick(Duration::from_secs(1));
    b
}
