//! Scheduling strategies (DESIGN.md §2.9), one per module behind the [`Scheduler`] trait.
//!
//! A strategy sees the enabled events in canonical order and returns the index of the one to
//! run. It draws every random choice from the run's [`Decisions`], so the recorded decision
//! list — not the strategy — is what replays a run.

pub mod exhaustive;
pub mod pct;
pub mod random;

use std::fmt;
use std::str::FromStr;

use crate::decision::Decisions;
use crate::event::Event;

pub use random::RandomScheduler;

/// What a scheduler may ask the machine besides the enabled events.
pub trait Probe {
    /// True if `event` is a local guest step: it commutes with every event of every other
    /// actor (see `Machine::local_step`).
    fn is_local(&self, event: Event) -> bool;

    /// True if complete search runs `event` in the same transition as the step before it of
    /// the same vCPU — a local guest step or a quiet handler step (see `Machine::merges`) —
    /// so it never stores a state where such a step is enabled.
    fn merges(&self, event: Event) -> bool;

    /// Guest instructions vCPU `cpu` has executed so far (a local run executes many in one
    /// tick, DESIGN.md §2.5b).
    fn guest_steps(&self, cpu: usize) -> u64;
}

/// Picks the next event.
pub trait Scheduler {
    /// Index into `enabled` (never empty) of the event to run at `tick`.
    fn pick(&mut self, tick: u64, enabled: &[Event], decisions: &mut Decisions) -> usize;

    /// Like [`Scheduler::pick`], with the machine to ask; `None` cuts the run short (its
    /// remaining states are reached another way). The default ignores the machine.
    fn pick_with(
        &mut self,
        tick: u64,
        enabled: &[Event],
        probe: &dyn Probe,
        decisions: &mut Decisions,
    ) -> Option<usize> {
        let _ = probe;
        Some(self.pick(tick, enabled, decisions))
    }
}

/// The actor an event belongs to: vCPU index, `cpus + k` for patching client `k`, or
/// `cpus + MAX_CLIENTS + c` for the store buffer of CPU `c` (its drains: an actor of its own).
pub fn actor(event: Event, cpus: usize) -> usize {
    match event {
        Event::Patcher(k) | Event::PatcherInterrupt(k) => cpus + k,
        Event::Drain(c) => cpus + crate::config::MAX_CLIENTS + c,
        other => other.cpu().unwrap_or(cpus),
    }
}

/// The per-run strategies by name (exhaustive search drives many runs; see [`exhaustive`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Uniform over enabled events.
    Random,
    /// Probabilistic concurrency testing with bug depth `d`.
    Pct {
        /// Bug depth: `d - 1` priority change points.
        depth: u32,
    },
    /// Follow a recorded decision list (uniform where it runs out).
    Replay,
}

impl Strategy {
    /// The strategies a campaign can use (PCT at depth 3).
    pub const ALL: [Strategy; 3] = [Strategy::Random, Strategy::Pct { depth: 3 }, Strategy::Replay];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
            Strategy::Pct { .. } => "pct",
            Strategy::Replay => "replay",
        }
    }

    /// A fresh scheduler of this strategy for a run from `seed`, expected to take about
    /// `expected_ticks` ticks (PCT spreads its change points over that length).
    pub fn scheduler_for(self, seed: u64, expected_ticks: u64) -> Box<dyn Scheduler> {
        match self {
            Strategy::Random | Strategy::Replay => Box::new(RandomScheduler),
            Strategy::Pct { depth } => Box::new(pct::PctScheduler::new(seed, depth, expected_ticks)),
        }
    }

    /// A fresh scheduler with the default length estimate.
    pub fn scheduler(self) -> Box<dyn Scheduler> {
        self.scheduler_for(0, pct::DEFAULT_EXPECTED_TICKS)
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Strategy::Pct { depth } => write!(f, "pct:{depth}"),
            other => f.pad(other.name()),
        }
    }
}

impl FromStr for Strategy {
    type Err = String;
    /// `random`, `replay`, `pct` (depth 3) or `pct:D`.
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "random" => Ok(Strategy::Random),
            "replay" => Ok(Strategy::Replay),
            "pct" => Ok(Strategy::Pct { depth: 3 }),
            _ => match s.strip_prefix("pct:").map(str::parse::<u32>) {
                Some(Ok(d)) if (1..=64).contains(&d) => Ok(Strategy::Pct { depth: d }),
                _ => Err(format!("unknown strategy '{s}' (valid: random, pct, pct:D with D in 1..=64, replay)")),
            },
        }
    }
}
