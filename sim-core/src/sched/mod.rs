//! Scheduling strategies (DESIGN.md §2.9), one per module behind the [`Scheduler`] trait.
//!
//! A strategy sees the enabled events in canonical order and returns the index of the one to
//! run. It draws every random choice from the run's [`Decisions`], so the recorded decision
//! list — not the strategy — is what replays a run.

pub mod random;

use std::fmt;
use std::str::FromStr;

use crate::decision::Decisions;
use crate::event::Event;

pub use random::RandomScheduler;

/// Picks the next event.
pub trait Scheduler {
    /// Index into `enabled` (never empty) of the event to run at `tick`.
    fn pick(&mut self, tick: u64, enabled: &[Event], decisions: &mut Decisions) -> usize;
}

/// The strategies by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Strategy {
    /// Uniform over enabled events.
    Random,
}

impl Strategy {
    /// All strategies.
    pub const ALL: [Strategy; 1] = [Strategy::Random];

    /// Command-line name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Random => "random",
        }
    }

    /// A fresh scheduler of this strategy.
    pub fn scheduler(self) -> Box<dyn Scheduler> {
        match self {
            Strategy::Random => Box::new(RandomScheduler),
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl FromStr for Strategy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Strategy::ALL
            .into_iter()
            .find(|v| v.name() == s)
            .ok_or_else(|| format!("unknown strategy '{s}' (valid: random)"))
    }
}
