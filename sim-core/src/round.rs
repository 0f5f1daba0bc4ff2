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

/// The drain of a script with no rounds, as a patcher's position words it.
const DRAIN_OF_NONE: &str = "drain (the script has no rounds)";

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

    /// The form of a patcher's position (a violation's), with the script's `total` rounds:
    /// `round 3/24`, `drain after round 24/24`.
    pub(crate) fn of_total(self, total: u64) -> String {
        match self {
            Self::In(n) => format!("round {n}/{total}"),
            Self::Drain if total == 0 => DRAIN_OF_NONE.to_string(),
            Self::Drain => format!("{DRAIN} after round {total}/{total}"),
        }
    }

    /// Reads [`Round::of_total`]'s form at the start of `text`: the round, the script's total
    /// and the rest of the text; `None` unless `text` starts with exactly that form.
    pub(crate) fn strip_of_total(text: &str) -> Option<(Self, u64, &str)> {
        if let Some(rest) = text.strip_prefix(DRAIN_OF_NONE) {
            return Some((Self::Drain, 0, rest));
        }
        if let Some(rest) = text.strip_prefix(DRAIN).and_then(|r| r.strip_prefix(" after round ")) {
            let (n, total, rest) = fraction(rest)?;
            return (n == total && total > 0).then_some((Self::Drain, total, rest));
        }
        let (n, total, rest) = fraction(text.strip_prefix("round ")?)?;
        (n >= 1).then_some((Self::In(n), total, rest))
    }
}

/// `3/24…`: the two numbers (decimal, as `u64` writes them) and the rest.
fn fraction(text: &str) -> Option<(u64, u64, &str)> {
    fn number(t: &str) -> Option<(u64, &str)> {
        let end = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
        let n: u64 = t[..end].parse().ok()?;
        (n.to_string().len() == end).then_some((n, &t[end..]))
    }
    let (n, rest) = number(text)?;
    let (total, rest) = number(rest.strip_prefix('/')?)?;
    Some((n, total, rest))
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

    #[test]
    fn the_form_with_the_total_reads_back() {
        for (round, total) in [(Round::In(1), 1), (Round::In(3), 24), (Round::Drain, 24), (Round::Drain, 0)] {
            let text = format!("{} sync", round.of_total(total));
            assert_eq!(Round::strip_of_total(&text), Some((round, total, " sync")), "{text}");
        }
        for bad in ["round 0/1", "round 01/2", "drain after round 2/3", "round 1", "drain", "round /2"] {
            assert_eq!(Round::strip_of_total(bad), None, "{bad}");
        }
    }
}
