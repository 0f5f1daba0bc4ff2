//! Parameters of the instruction-fetch model (DESIGN.md §2.4, reference/x86-cmc.md §5.2).
//!
//! The architecture promises nothing about how an instruction fetch on one CPU interleaves
//! with another CPU's stores to the same bytes, except that a serializing instruction on the
//! fetching CPU, executed after the stores are globally visible, makes it see them (SDM Vol. 3A
//! §8.1.3). The model therefore lets each *refresh unit* of a vCPU's view lag behind the truth
//! by any number of store events until that vCPU serializes; the parameters below bound how.

use std::fmt;
use std::str::FromStr;

/// The granularity at which a view catches up with the truth.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum FetchUnit {
    /// Every byte independently (the pessimistic reading of the SDM's silence).
    Byte,
    /// Naturally aligned 16-byte fetch blocks.
    Block16,
    /// Naturally aligned 64-byte cache lines.
    Line64,
    /// The whole text: every fetch sees one consistent point of the store order.
    Snapshot,
}

impl FetchUnit {
    /// All values, in the order the command line lists them.
    pub const ALL: [FetchUnit; 4] = [FetchUnit::Byte, FetchUnit::Block16, FetchUnit::Line64, FetchUnit::Snapshot];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            FetchUnit::Byte => "byte",
            FetchUnit::Block16 => "block16",
            FetchUnit::Line64 => "line64",
            FetchUnit::Snapshot => "snapshot",
        }
    }

    /// Unit size in bytes, or `None` for [`FetchUnit::Snapshot`] (the whole text).
    pub fn size(self) -> Option<u64> {
        match self {
            FetchUnit::Byte => Some(1),
            FetchUnit::Block16 => Some(16),
            FetchUnit::Line64 => Some(64),
            FetchUnit::Snapshot => None,
        }
    }
}

/// How the patcher's `text_poke(addr, bytes)` is split into store events (x86-cmc.md §5.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreGranularity {
    /// One store per byte, in ascending address order (`rep movsb` promises no more).
    Byte,
    /// Naturally aligned chunks of at most 8 bytes that never cross a 64-byte line.
    Aligned8,
    /// One store for the whole range.
    Whole,
}

impl StoreGranularity {
    /// All values, in the order the command line lists them.
    pub const ALL: [StoreGranularity; 3] =
        [StoreGranularity::Byte, StoreGranularity::Aligned8, StoreGranularity::Whole];

    /// The name used on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            StoreGranularity::Byte => "byte",
            StoreGranularity::Aligned8 => "aligned8",
            StoreGranularity::Whole => "whole",
        }
    }

    /// Splits `[addr, addr+len)` into `(addr, len)` store events.
    pub fn split(self, addr: u64, len: u64) -> Vec<(u64, u64)> {
        match self {
            StoreGranularity::Byte => (0..len).map(|i| (addr + i, 1)).collect(),
            StoreGranularity::Whole => vec![(addr, len)],
            StoreGranularity::Aligned8 => {
                let mut out = Vec::new();
                let (mut at, end) = (addr, addr + len);
                while at < end {
                    // The largest naturally aligned power-of-two chunk that starts at `at`
                    // and fits; a naturally aligned chunk of <= 8 bytes never crosses a line.
                    let mut size = 8u64;
                    while size > 1 && (at % size != 0 || at + size > end) {
                        size /= 2;
                    }
                    out.push((at, size));
                    at += size;
                }
                out
            }
        }
    }
}

/// How long a unit may stay stale.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Staleness {
    /// Until the vCPU serializes (the default: nothing architectural bounds it).
    Unbounded,
    /// A unit must show every store that is at least this many own guest steps old.
    Bounded(u32),
}

/// All parameters of the fetch model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct FetchModel {
    /// Refresh unit.
    pub fetch: FetchUnit,
    /// How pokes split into store events.
    pub stores: StoreGranularity,
    /// A unit never goes back to an older snapshot.
    pub monotone: bool,
    /// Staleness bound.
    pub staleness: Staleness,
}

impl FetchModel {
    /// `fetch=byte, stores=byte, monotone, unbounded`: the default, because the
    /// architecture promises nothing finer (x86-cmc.md §5).
    pub const PESSIMISTIC: FetchModel = FetchModel {
        fetch: FetchUnit::Byte,
        stores: StoreGranularity::Byte,
        monotone: true,
        staleness: Staleness::Unbounded,
    };

    /// The named presets: `pessimistic`, `block16`, `line64`, `snapshot` (the pessimistic
    /// preset with a coarser refresh unit).
    pub fn preset(name: &str) -> Option<FetchModel> {
        let unit = match name {
            "pessimistic" => FetchUnit::Byte,
            "block16" => FetchUnit::Block16,
            "line64" => FetchUnit::Line64,
            "snapshot" => FetchUnit::Snapshot,
            _ => return None,
        };
        Some(FetchModel { fetch: unit, ..FetchModel::PESSIMISTIC })
    }

    /// The names [`FetchModel::preset`] accepts.
    pub const PRESETS: [&'static str; 4] = ["pessimistic", "block16", "line64", "snapshot"];

    /// The preset name this model equals, if any.
    pub(crate) fn preset_name(&self) -> Option<&'static str> {
        Self::PRESETS.into_iter().find(|n| Self::preset(n).as_ref() == Some(self))
    }
}

impl Default for FetchModel {
    fn default() -> Self {
        FetchModel::PESSIMISTIC
    }
}

impl fmt::Display for FetchUnit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for StoreGranularity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.name())
    }
}

impl fmt::Display for FetchModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(name) = self.preset_name() {
            return f.write_str(name);
        }
        write!(f, "fetch={},stores={}", self.fetch.name(), self.stores.name())?;
        if !self.monotone {
            f.write_str(",non-monotone")?;
        }
        if let Staleness::Bounded(k) = self.staleness {
            write!(f, ",staleness={k}")?;
        }
        Ok(())
    }
}

macro_rules! named_from_str {
    ($ty:ty, $what:literal) => {
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                <$ty>::ALL.into_iter().find(|v| v.name() == s).ok_or_else(|| {
                    let names: Vec<_> = <$ty>::ALL.iter().map(|v| v.name()).collect();
                    format!("unknown {} '{}' (valid: {})", $what, s, names.join(", "))
                })
            }
        }
    };
}
named_from_str!(FetchUnit, "fetch unit");
named_from_str!(StoreGranularity, "store granularity");

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned8_splits_into_natural_chunks() {
        // A 5-byte site at ...0x3e crosses a line: chunks must stay within one line.
        let chunks = StoreGranularity::Aligned8.split(0x103e, 5);
        assert_eq!(chunks, vec![(0x103e, 2), (0x1040, 2), (0x1042, 1)]);
        let chunks = StoreGranularity::Aligned8.split(0x1001, 4);
        assert_eq!(chunks, vec![(0x1001, 1), (0x1002, 2), (0x1004, 1)]);
        assert_eq!(StoreGranularity::Aligned8.split(0x1000, 8), vec![(0x1000, 8)]);
        for (a, l) in StoreGranularity::Aligned8.split(0x1039, 15) {
            assert_eq!(a / 64, (a + l - 1) / 64, "chunk crosses a line");
            assert_eq!(a % l, 0, "chunk not naturally aligned");
        }
    }

    #[test]
    fn presets_round_trip() {
        for name in FetchModel::PRESETS {
            let m = FetchModel::preset(name).unwrap();
            assert_eq!(m.preset_name(), Some(name));
            assert_eq!(m.to_string(), name);
        }
        assert!("cacheline".parse::<FetchUnit>().unwrap_err().contains("valid: byte, block16"));
    }
}
