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

/// A recorded decision list as artifacts and corpus entries store it: the decisions up to the
/// last nonzero choice, then how many more choices the run made, all of them option 0. A
/// strict replay consumes exactly `prefix.len() + zeros_after` decisions.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct Recorded {
    /// The decisions up to (and including) the last nonzero choice.
    pub prefix: Vec<Decision>,
    /// The choices after the prefix, all option 0.
    pub zeros_after: u64,
}

impl Recorded {
    /// The recording of a complete decision log.
    pub fn from_log(mut log: Vec<Decision>) -> Self {
        let mut zeros_after = 0;
        while log.last().is_some_and(|d| d.choice == 0) {
            log.pop();
            zeros_after += 1;
        }
        Self { prefix: log, zeros_after }
    }

    /// Every decision of the run.
    pub fn len(&self) -> u64 {
        self.prefix.len() as u64 + self.zeros_after
    }

    /// True if the run made no decision.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

enum Source {
    Seeded(Box<ChaCha8Rng>),
    /// A recorded list: strict (every choice must offer as many options as when recorded, and
    /// the run must consume exactly the recording) or lenient (the shrinker's edited lists:
    /// counts are taken modulo, and a list that runs out answers 0).
    Recorded {
        list: Vec<Decision>,
        next: usize,
        zeros_left: u64,
        total: u64,
        strict: bool,
    },
    /// Exhaustive search: a forced prefix, then every choice takes its default — the
    /// strategy's preference for scheduling, the newest epoch for a fetch.
    Guided {
        prefix: Vec<u32>,
        next: usize,
    },
    /// State-space search: a forced prefix, then option 0; every choice made is kept in
    /// `taken` (apart from the log), so the search can step to the next sibling.
    Enumerate {
        prefix: Vec<u32>,
        next: usize,
        taken: Vec<Decision>,
    },
}

/// Answers and records choices.
pub struct Decisions {
    source: Source,
    log: Vec<Decision>,
    /// Whether choices are kept in the log (a run that does not keep them uses memory
    /// independent of its length; a seeded run can be repeated with them kept).
    keep: bool,
    /// Choices made (kept or not).
    made: u64,
    /// First replay mismatch, reported by [`Decisions::check`].
    stale: Option<String>,
}

impl std::fmt::Debug for Decisions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decisions").field("made", &self.made).finish()
    }
}

impl Decisions {
    fn new(source: Source) -> Self {
        Self { source, log: Vec::new(), keep: true, made: 0, stale: None }
    }

    /// Choices drawn from ChaCha8 seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Self::new(Source::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed))))
    }

    /// Choices replayed strictly from a recording: a choice offering another number of
    /// options than recorded, a run that needs more decisions than recorded, or one that
    /// ends before consuming them all makes the list stale ([`Decisions::check`]).
    pub fn replay(recorded: Recorded) -> Self {
        let total = recorded.len();
        Self::new(Source::Recorded {
            list: recorded.prefix,
            next: 0,
            zeros_left: recorded.zeros_after,
            total,
            strict: true,
        })
    }

    /// A lenient replay for the shrinker: a choice recorded with a different number of
    /// options is taken modulo the new count, and a list that runs out answers 0 — edited
    /// lists shift decisions around on purpose, and a shortened list is still a complete run.
    pub fn replay_lenient(list: Vec<Decision>) -> Self {
        let total = list.len() as u64;
        Self::new(Source::Recorded { list, next: 0, zeros_left: 0, total, strict: false })
    }

    /// Choices forced by `prefix`, then defaults (exhaustive search).
    pub fn guided(prefix: Vec<u32>) -> Self {
        Self::new(Source::Guided { prefix, next: 0 })
    }

    /// Choices forced by `prefix`, then option 0 (state-space search enumerates every
    /// sequence of choices of one transition; `Decisions::enumerated` lists those made).
    pub fn enumerate(prefix: Vec<u32>) -> Self {
        Self::new(Source::Enumerate { prefix, next: 0, taken: Vec::new() })
    }

    /// The choices an enumerating source made (empty for other sources).
    pub(crate) fn enumerated(&self) -> &[Decision] {
        match &self.source {
            Source::Enumerate { taken, .. } => taken,
            _ => &[],
        }
    }

    /// Records a choice made outside this source (a scheduling pick state-space search makes
    /// itself), so that the log replays the run.
    pub fn note(&mut self, of: usize, choice: usize) {
        if of > 1 {
            self.made += 1;
            if self.keep {
                self.log.push(Decision { of: of as u32, choice: choice as u32 });
            }
        }
    }

    /// Keeps (default) or forgets the choices made.
    pub fn keeping(mut self, keep: bool) -> Self {
        self.keep = keep;
        self
    }

    /// True while a recorded list or a forced prefix still dictates the choices.
    pub fn forced(&self) -> bool {
        match &self.source {
            Source::Seeded(_) => false,
            Source::Recorded { list, next, .. } => *next < list.len(),
            Source::Guided { prefix, next } | Source::Enumerate { prefix, next, .. } => *next < prefix.len(),
        }
    }

    /// A choice the strategy makes deterministically (`preferred`), recorded like any other,
    /// so that replaying the list reproduces it whatever strategy replays it. Under a recorded
    /// list or a forced prefix the recorded choice wins.
    pub(crate) fn decide(&mut self, n: usize, preferred: usize) -> usize {
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
        let index = self.made;
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
            Source::Enumerate { prefix, next, taken } => {
                let c = prefix.get(*next).map_or(0, |&c| (c as usize).min(n - 1));
                *next += 1;
                taken.push(Decision { of: n as u32, choice: c as u32 });
                c
            }
            Source::Recorded { list, next, zeros_left, strict, .. } => {
                let recorded = list.get(*next).copied();
                *next += recorded.is_some() as usize;
                match recorded {
                    Some(d) if !*strict => d.choice as usize % n,
                    Some(d) => {
                        if d.of as usize != n && self.stale.is_none() {
                            self.stale =
                                Some(format!("decision {index} offered {} options when recorded, {n} now", d.of));
                        }
                        (d.choice as usize).min(n - 1)
                    }
                    None if *strict && *zeros_left == 0 => {
                        if self.stale.is_none() {
                            self.stale = Some(format!("the run needs more than the {index} recorded decisions"));
                        }
                        0
                    }
                    None => {
                        *zeros_left = zeros_left.saturating_sub(1);
                        0
                    }
                }
            }
        };
        self.made += 1;
        if self.keep {
            self.log.push(Decision { of: n as u32, choice: choice as u32 });
        }
        choice
    }

    /// True once a strict replay has gone wrong (the run can stop: its result is void).
    pub(crate) fn is_stale(&self) -> bool {
        self.stale.is_some()
    }

    /// The choices made so far (empty unless kept).
    pub fn log(&self) -> &[Decision] {
        &self.log
    }

    /// How many choices were made (kept or not).
    pub fn made(&self) -> u64 {
        self.made
    }

    /// Consumes the source, returning the choices made (empty unless kept).
    pub(crate) fn into_log(self) -> Vec<Decision> {
        self.log
    }

    /// Errors if a strictly replayed list did not fit the run: a choice offered another number
    /// of options, the run needed more decisions, or it ended before consuming them all.
    pub fn check(&self) -> Result<(), SimError> {
        if let Some(msg) = &self.stale {
            return Err(SimError::StaleDecisions(msg.clone()));
        }
        if let Source::Recorded { list, next, zeros_left, total, strict: true } = &self.source {
            if *next < list.len() || *zeros_left > 0 {
                return Err(SimError::StaleDecisions(format!(
                    "the run ended after {} of the {total} recorded decisions",
                    self.made
                )));
            }
        }
        Ok(())
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
        let mut b = Decisions::replay(Recorded::from_log(a.into_log()));
        let again: Vec<usize> = (2..50).map(|n| b.choose(n)).collect();
        assert_eq!(picks, again);
        assert!(b.check().is_ok());
    }

    #[test]
    fn a_changed_option_count_is_reported_stale() {
        let mut b = Decisions::replay(Recorded { prefix: vec![Decision { of: 3, choice: 2 }], zeros_after: 0 });
        assert_eq!(b.choose(2), 1, "out-of-range choices are clamped");
        assert!(matches!(b.check(), Err(SimError::StaleDecisions(_))));
    }

    #[test]
    fn a_recording_is_consumed_exactly_zeros_included() {
        let log = vec![Decision { of: 3, choice: 2 }, Decision { of: 2, choice: 0 }, Decision { of: 4, choice: 0 }];
        let rec = Recorded::from_log(log);
        assert_eq!((rec.prefix.len(), rec.zeros_after, rec.len()), (1, 2, 3));
        let mut exact = Decisions::replay(rec.clone());
        assert_eq!([exact.choose(3), exact.choose(2), exact.choose(4)], [2, 0, 0]);
        assert!(exact.check().is_ok());
        // Running out is stale, not a silent 0.
        let mut long = Decisions::replay(rec.clone());
        assert_eq!([long.choose(3), long.choose(2), long.choose(4), long.choose(2)], [2, 0, 0, 0]);
        assert!(long.is_stale());
        let e = long.check().unwrap_err().to_string();
        assert!(e.contains("more than the 3 recorded"), "{e}");
        // Ending early is stale too: the recording had more decisions than the run made.
        let mut short = Decisions::replay(rec);
        short.choose(3);
        let e = short.check().unwrap_err().to_string();
        assert!(e.contains("ended after 1 of the 3 recorded decisions"), "{e}");
    }

    #[test]
    fn single_options_are_not_decisions() {
        let mut a = Decisions::seeded(1);
        assert_eq!(a.choose(1), 0);
        assert!(a.log().is_empty());
    }
}
