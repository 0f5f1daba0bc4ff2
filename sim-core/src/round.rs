//! Patch rounds: where a run stands in its patching script, spelled one way in text, JSON,
//! traces and pictures. A round is one batch of the workload's patching client
//! (`text_poke_bp_batch()`, `smp_text_poke_batch_finish()`), numbered 1..=R while it is in
//! progress (operations before a batch, such as taking `text_mutex`, belong to it). Whatever
//! happens once the last round has returned — the script's trailing operations (releasing
//! `text_mutex`, optprobe's disarm), the kprobes' last cycles, the vCPUs running on — is the
//! drain, which says so rather than counting a round R+1 of R.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// The name JSON gives the drain (a round in progress is its number).
const DRAIN: &str = "drain";

/// A patch round in progress, or the drain after the last one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Round {
    /// Round `n` (1-based) is in progress or next.
    In(u64),
    /// Every round has returned.
    Drain,
}

impl Round {
    /// Where a script of `total` rounds stands once `completed` of them have returned.
    pub fn of(completed: u64, total: u64) -> Self {
        if completed < total {
            Self::In(completed + 1)
        } else {
            Self::Drain
        }
    }

    /// The short form of trace rows and picture bands: `r3`, `drain`.
    pub fn short(self) -> String {
        match self {
            Self::In(n) => format!("r{n}"),
            Self::Drain => DRAIN.to_string(),
        }
    }

    /// The JSON value as text, for attributes: `3`, `drain`.
    pub fn value(self) -> String {
        match self {
            Self::In(n) => n.to_string(),
            Self::Drain => DRAIN.to_string(),
        }
    }

    /// The form of a phase, with the script's `total` rounds: `round 3/24`,
    /// `drain after round 24/24`.
    pub fn of_total(self, total: u64) -> String {
        match self {
            Self::In(n) => format!("round {n}/{total}"),
            Self::Drain if total == 0 => "drain (the script has no rounds)".to_string(),
            Self::Drain => format!("{DRAIN} after round {total}/{total}"),
        }
    }
}

/// `round 3`, `drain`.
impl fmt::Display for Round {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::In(n) => write!(f, "round {n}"),
            Self::Drain => f.write_str(DRAIN),
        }
    }
}

/// JSON: the round's number, or `"drain"`.
impl Serialize for Round {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::In(n) => s.serialize_u64(*n),
            Self::Drain => s.serialize_str(DRAIN),
        }
    }
}

impl<'de> Deserialize<'de> for Round {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Form {
            Number(u64),
            Name(String),
        }
        match Form::deserialize(d)? {
            Form::Number(n) if n >= 1 => Ok(Self::In(n)),
            Form::Name(s) if s == DRAIN => Ok(Self::Drain),
            _ => Err(serde::de::Error::custom(format!("a round is a number from 1 or \"{DRAIN}\""))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_round_after_the_last_is_the_drain() {
        assert_eq!(Round::of(0, 24), Round::In(1));
        assert_eq!(Round::of(23, 24), Round::In(24));
        assert_eq!(Round::of(24, 24), Round::Drain);
        assert_eq!(Round::of(23, 24).of_total(24), "round 24/24");
        assert_eq!(Round::of(24, 24).of_total(24), "drain after round 24/24");
    }
}
