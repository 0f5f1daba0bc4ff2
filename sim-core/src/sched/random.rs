//! The uniform random scheduler: every enabled event is equally likely at every tick.
//! It finds shallow races quickly and is the baseline the other strategies are measured
//! against.

use super::Scheduler;
use crate::decision::Decisions;
use crate::event::Event;

/// Uniform choice over the enabled events.
#[derive(Clone, Copy, Debug, Default)]
pub struct RandomScheduler;

impl Scheduler for RandomScheduler {
    fn pick(&mut self, _tick: u64, enabled: &[Event], decisions: &mut Decisions) -> usize {
        decisions.choose(enabled.len())
    }
}
