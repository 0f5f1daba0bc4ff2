//! What a scenario input becomes once validated: a [`ScenarioFile`] — the scenario, how many
//! seeds it runs or which recorded decisions it replays, and its [`Expectation`] (pass, or a
//! [`KindSet`] of violation kinds). `spec.rs` builds it; `file.rs` reads and writes it as TOML
//! (and re-exports these types under `file::`, where users have always found them).

use std::fmt;
use std::str::FromStr;

use sim_core::{Recorded, ViolationKind};

use crate::scenario::Scenario;

/// A set of violation kinds (what an expectation accepts).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct KindSet(u16);

impl KindSet {
    /// The set of `kinds`.
    pub const fn of(kinds: &[ViolationKind]) -> Self {
        let mut bits = 0u16;
        let mut i = 0;
        while i < kinds.len() {
            bits |= 1 << kinds[i] as u16;
            i += 1;
        }
        KindSet(bits)
    }

    /// True if `kind` is in the set.
    pub fn contains(self, kind: ViolationKind) -> bool {
        self.0 & (1 << kind as u16) != 0
    }

    /// The kinds, in [`ViolationKind::ALL`] order.
    pub fn kinds(self) -> impl Iterator<Item = ViolationKind> {
        ViolationKind::ALL.into_iter().filter(move |k| self.contains(*k))
    }
}

/// What a scenario expects.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Expectation {
    /// No violation on any of its seeds.
    Pass,
    /// A violation of one of these kinds (the first listed is the primary failure, the others
    /// consequences the scenario can also reach).
    Violation(KindSet),
}

impl Expectation {
    /// A violation of exactly `kind`.
    pub fn violation(kind: ViolationKind) -> Self {
        Expectation::Violation(KindSet::of(&[kind]))
    }

    /// True if a campaign that ended in `kind` (or in a pass, `None`) meets the expectation.
    pub fn met_by(self, kind: Option<ViolationKind>) -> bool {
        match (self, kind) {
            (Expectation::Pass, None) => true,
            (Expectation::Violation(set), Some(k)) => set.contains(k),
            _ => false,
        }
    }
}

impl fmt::Display for Expectation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Expectation::Pass => f.pad("pass"),
            Expectation::Violation(set) => {
                let names: Vec<&str> = set.kinds().map(ViolationKind::name).collect();
                f.pad(&names.join("|"))
            }
        }
    }
}

impl FromStr for Expectation {
    type Err = String;
    /// `pass`, a violation kind, or several joined by `|`.
    fn from_str(s: &str) -> Result<Self, String> {
        if s == "pass" {
            return Ok(Expectation::Pass);
        }
        let mut bits = 0u16;
        for part in s.split('|') {
            let k = part.trim().parse::<ViolationKind>().map_err(|e| format!("{e}, or pass"))?;
            bits |= 1 << k as u16;
        }
        Ok(Expectation::Violation(KindSet(bits)))
    }
}

impl serde::Serialize for Expectation {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// A validated scenario file (or the scenario the command-line flags describe).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ScenarioFile {
    /// Name (defaults to the file stem).
    pub name: String,
    /// Free text.
    pub description: Option<String>,
    /// Expected result.
    pub expect: Expectation,
    /// The scenario (its seed is the first seed).
    pub scenario: Scenario,
    /// Seeds to run (`seed..seed+runs`).
    pub runs: u64,
    /// A recorded decision list to replay instead of the seed.
    pub decisions: Option<Recorded>,
    /// The trace hash the replay must reproduce, bit for bit.
    pub trace_hash: Option<String>,
}
