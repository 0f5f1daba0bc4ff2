//! Probabilistic concurrency testing (Burckhardt, Kothari, Musuvathi, Nagarakatte, ASPLOS
//! 2010), as in shuttle's `pct.rs`: every actor (vCPU or patcher) gets a random priority; the
//! highest-priority enabled actor runs; at `d - 1` change points, sampled uniformly over the
//! expected run length, the running actor drops below every initial priority. A bug of depth
//! `d` is then found with probability at least `1 / (n k^(d-1))` per run.
//!
//! One adaptation: guest vCPUs loop forever, so strict priorities would starve every actor
//! below the top one (PCT assumes threads that finish) — and a starved vCPU never takes the
//! sync IPI, which would look like a patcher deadlock. An actor therefore runs for a random
//! quantum of at most `QUANTUM` ticks and then yields, and a change point demotes the
//! running actor: both move it below every actor that has not yet yielded or been demoted
//! (the most recent lowest), so every actor eventually runs again, while the schedule keeps
//! PCT's "long bursts, few randomly placed preemptions" character.
//!
//! The priorities and change points come from a ChaCha stream of the run's seed, not from the
//! decision list; each pick is recorded with `Decisions::decide`, so a PCT run replays from
//! its list under any strategy.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::{actor, Probe, Scheduler};
use crate::config::{MAX_ACTORS, MAX_CPUS};
use crate::decision::Decisions;
use crate::event::Event;

/// Run length assumed when none was measured.
pub(crate) const DEFAULT_EXPECTED_TICKS: u64 = 5_000;
/// Longest burst an actor runs before yielding.
pub(crate) const QUANTUM: u64 = 24;

/// The PCT scheduler of one run.
#[derive(Debug)]
pub(crate) struct PctScheduler {
    rng: ChaCha8Rng,
    /// Priority per actor (vCPUs, then patching client k at index MAX_CPUS + k); 0 = not yet assigned.
    priority: Vec<u64>,
    /// Ticks at which the running actor is demoted, sorted; invariant: length is depth - 1.
    change_points: Vec<u64>,
    /// Next priority for a demoted or yielding actor: below every initial priority, and
    /// decreasing, so the most recently demoted actor is the lowest.
    next_low: u64,
    last: Option<usize>,
    burst: u64,
    quantum: u64,
}

impl PctScheduler {
    /// PCT with bug depth `depth` over about `expected_ticks` ticks, seeded by `seed`.
    pub fn new(seed: u64, depth: u32, expected_ticks: u64) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0x7063_745f_7363_6864);
        let k = expected_ticks.max(2);
        let mut change_points: Vec<u64> = (1..depth).map(|_| rng.random_range(1..k)).collect();
        change_points.sort_unstable();
        let quantum = rng.random_range(1..=QUANTUM);
        Self { rng, priority: vec![0; MAX_ACTORS], change_points, next_low: 1 << 40, last: None, burst: 0, quantum }
    }

    fn key(e: Event) -> usize {
        actor(e, MAX_CPUS)
    }

    fn prio(&mut self, key: usize) -> u64 {
        if self.priority[key] == 0 {
            self.priority[key] = self.rng.random_range((1u64 << 41)..(1u64 << 62));
        }
        self.priority[key]
    }
}

impl Scheduler for PctScheduler {
    fn pick(&mut self, tick: u64, enabled: &[Event], decisions: &mut Decisions) -> usize {
        // A change point demotes whoever is running below every other actor.
        while self.change_points.first().is_some_and(|&c| c <= tick) {
            self.change_points.remove(0);
            if let Some(last) = self.last {
                self.priority[last] = self.next_low;
                self.next_low -= 1;
                self.burst = 0;
            }
        }
        // A burst longer than the quantum yields.
        if let Some(last) = self.last {
            if self.burst >= self.quantum {
                self.priority[last] = self.next_low;
                self.next_low -= 1;
                self.burst = 0;
                self.quantum = self.rng.random_range(1..=QUANTUM);
            }
        }
        let mut best = 0;
        let mut best_prio = 0;
        for (i, &e) in enabled.iter().enumerate() {
            let p = self.prio(Self::key(e));
            // Between two events of one actor (a guest step and an IPI), pick at random.
            let tie = p == best_prio && self.rng.random_bool(0.5);
            if p > best_prio || tie {
                best = i;
                best_prio = p;
            }
        }
        let pick = decisions.decide(enabled.len(), best);
        let key = Self::key(enabled[pick]);
        if matches!(enabled[pick], Event::Drain(_)) {
            // A store reaching memory does not make its buffer the running actor: the burst
            // of the actor that runs goes on (else drains between its steps would reset the
            // burst, it would never yield, and a waiting patcher would starve).
        } else if self.last == Some(key) {
            self.burst += 1;
        } else {
            self.last = Some(key);
            self.burst = 1;
        }
        pick
    }

    fn pick_with(
        &mut self,
        tick: u64,
        enabled: &[Event],
        _probe: &dyn Probe,
        decisions: &mut Decisions,
    ) -> Option<usize> {
        Some(self.pick(tick, enabled, decisions))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_highest_priority_actor_runs_in_bursts_and_every_actor_gets_to_run() {
        let enabled = [Event::GuestStep(0), Event::GuestStep(1), Event::Patcher(0)];
        let mut s = PctScheduler::new(7, 3, 1000);
        let mut d = Decisions::seeded(0);
        let picks: Vec<usize> = (0..600).map(|t| s.pick(t, &enabled, &mut d)).collect();
        for i in 0..3 {
            assert!(picks.contains(&i), "actor {i} never ran");
        }
        // Bursts: far fewer switches than a uniform scheduler would make.
        let switches = picks.windows(2).filter(|w| w[0] != w[1]).count();
        assert!(switches < 200, "{switches} switches");
        // Every pick was recorded, so the list replays it under any strategy.
        let mut replay = Decisions::replay(crate::decision::Recorded::from_log(d.into_log()));
        let mut random = crate::sched::RandomScheduler;
        let again: Vec<usize> = (0..600).map(|t| random.pick(t, &enabled, &mut replay)).collect();
        assert_eq!(picks, again);
    }
}
