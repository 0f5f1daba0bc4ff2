//! The decision source (DESIGN.md §2.1): every choice of a run — which enabled event runs next,
//! which store epoch a stale unit shows — is `choose(n)`, answered either by a ChaCha stream
//! expanded from a seed or by a recorded list. The answers are recorded either way, so any run
//! can be replayed from its list even after the RNG or strategy code changes.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};

use crate::SimError;

/// One answered choice: `choice` out of `of` options.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Decision {
    /// Number of options offered (at least 2: single options are not decisions).
    pub of: u32,
    /// The option taken, in `0..of`.
    pub choice: u32,
}

enum Source {
    Seeded(Box<ChaCha8Rng>),
    Recorded {
        list: Vec<Decision>,
        next: usize,
        strict: bool,
    },
    /// Exhaustive search: a forced prefix, then every choice takes its default — the
    /// strategy's preference for scheduling, the newest epoch for a fetch.
    Guided {
        prefix: Vec<u32>,
        next: usize,
    },
}

/// Answers and records choices.
pub struct Decisions {
    source: Source,
    log: Vec<Decision>,
    /// First replay mismatch, reported by [`Decisions::check`]; later choices fall back to 0.
    stale: Option<String>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions").field("recorded", &self.log.len()).finish()
    }
}

impl Decisions {
    /// Choices drawn from ChaCha8 seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self { source: Source::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed))), log: Vec::new(), stale: None }
    }

    /// Choices replayed from a recorded list. When the list runs out, remaining choices take
    /// option 0 (the shrinker relies on this: a shortened list is still a complete run).
    pub fn replay(list: Vec<Decision>) -> Self {
        Self { source: Source::Recorded { list, next: 0, strict: true }, log: Vec::new(), stale: None }
    }

    /// Like [`Decisions::replay`], but a choice recorded with a different number of options is
    /// taken modulo the new count instead of being reported stale: the shrinker's edited lists
    /// shift decisions around on purpose.
    pub fn replay_lenient(list: Vec<Decision>) -> Self {
        Self { source: Source::Recorded { list, next: 0, strict: false }, log: Vec::new(), stale: None }
    }

    /// Choices forced by `prefix`, then defaults (exhaustive search).
    pub fn guided(prefix: Vec<u32>) -> Self {
        Self { source: Source::Guided { prefix, next: 0 }, log: Vec::new(), stale: None }
    }

    /// True while a recorded list or a forced prefix still dictates the choices.
    pub fn forced(&self) -> bool {
        match &self.source {
            Source::Seeded(_) => false,
            Source::Recorded { list, next, .. } => *next < list.len(),
            Source::Guided { prefix, next } => *next < prefix.len(),
        }
    }

    /// A choice the strategy makes deterministically (`preferred`), recorded like any other,
    /// so that replaying the list reproduces it whatever strategy replays it. Under a recorded
    /// list or a forced prefix the recorded choice wins.
    pub fn decide(&mut self, n: usize, preferred: usize) -> usize {
        debug_assert!(preferred < n);
        self.pick(n, Some(preferred))
    }

    /// Picks one of `n` options (`n >= 1`; a single option is not recorded).
    pub fn choose(&mut self, n: usize) -> usize {
        self.pick(n, None)
    }

    fn pick(&mut self, n: usize, preferred: Option<usize>) -> usize {
        debug_assert!(n >= 1, "a choice needs at least one option");
        if n == 1 {
            return 0;
        }
        let choice = match &mut self.source {
            Source::Seeded(rng) => match preferred {
                Some(p) => p,
                None => rng.random_range(0..n),
            },
            Source::Guided { prefix, next } => {
                let c = match prefix.get(*next) {
                    Some(&c) => (c as usize).min(n - 1),
                    None => preferred.unwrap_or(n - 1),
                };
                *next += 1;
                c
            }
            Source::Recorded { list, next, strict } => match list.get(*next) {
                Some(d) if !*strict => {
                    *next += 1;
                    d.choice as usize % n
                }
                Some(d) => {
                    *next += 1;
                    if d.of as usize != n && self.stale.is_none() {
                        self.stale =
                            Some(format!("decision {} offered {} options when recorded, {} now", *next - 1, d.of, n));
                    }
                    (d.choice as usize).min(n - 1)
                }
                None => 0,
            },
        };
        self.log.push(Decision { of: n as u32, choice: choice as u32 });
        choice
    }

    /// The choices made so far.
    pub fn log(&self) -> &[Decision] {
        &self.log
    }

    /// Consumes the source, returning the choices made.
    pub fn into_log(self) -> Vec<Decision> {
        self.log
    }

    /// Errors if a replayed list did not fit the run.
    pub fn check(&self) -> Result<(), SimError> {
        match &self.stale {
            Some(msg) => Err(SimError::StaleDecisions(msg.clone())),
            None => Ok(()),
        }
    }
}

impl cpu_model::Chooser for Decisions {
    fn choose(&mut self, n: usize) -> usize {
        Decisions::choose(self, n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_choices_replay_exactly() {
        let mut a = Decisions::seeded(42);
        let picks: Vec<usize> = (2..50).map(|n| a.choose(n)).collect();
        let mut b = Decisions::replay(a.into_log());
        let again: Vec<usize> = (2..50).map(|n| b.choose(n)).collect();
        assert_eq!(picks, again);
        assert!(b.check().is_ok());
    }

    #[test]
    fn a_changed_option_count_is_reported_stale() {
        let mut b = Decisions::replay(vec![Decision { of: 3, choice: 2 }]);
        assert_eq!(b.choose(2), 1, "out-of-range choices are clamped");
        assert!(matches!(b.check(), Err(SimError::StaleDecisions(_))));
    }

    #[test]
    fn single_options_are_not_decisions() {
        let mut a = Decisions::seeded(1);
        assert_eq!(a.choose(1), 0);
        assert!(a.log().is_empty());
    }
}
