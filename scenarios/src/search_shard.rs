//! Shards of a complete search (DESIGN.md §2.9, "Sharded search"): what one shard `i/n` of
//! `exhaust --shard` established, as a file, and the merge of all `n` of them into what one
//! machine's `exhaust` reports.
//!
//! Every shard runs the same levels from the initial state and searches from its own part of
//! the frontier ([`sim_core::search::Split`]); its file lists the canonical hash of every
//! state it stored. The merge refuses shards of different searches (scenario, options, `n`,
//! or where the levels parted), missing or duplicate shards, and a shard that stopped short
//! of its part (`--max-states`). It then reports the union of the states — exactly the
//! states one machine stores — and, if a shard found a violation, runs the breadth-first
//! search one machine runs for the shortest counterexample, so the violation, its path and
//! the counts reported with it are the single machine's too.

use std::collections::BTreeSet;
use std::path::Path;

use serde::{Deserialize, Serialize};
use sim_core::search::{Options, Parting, SearchResult, Split};
use sim_core::ViolationKind;

use crate::entry::ScenarioFile;
use crate::input::InputError;

/// The `kind` of a search shard file.
pub const KIND: &str = "pokesim-search-shard";
/// The search shard format this pokesim reads and writes. 2: `merge_local` includes the quiet
/// handler steps, so a format-1 shard searched another graph and is refused.
pub const FORMAT: u32 = 2;

/// The options of the search, as a shard records them (shards merge only under the same).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchOptions {
    /// Partial-order reduction: local guest steps and quiet handler steps merged.
    pub merge_local: bool,
    /// Symmetry reduction.
    pub symmetry: bool,
    /// Every violation kind.
    pub all_kinds: bool,
    /// The state limit.
    pub max_states: u64,
}

impl SearchOptions {
    /// What a search with `o` records.
    pub fn of(o: &Options) -> Self {
        Self { merge_local: o.merge_local, symmetry: o.symmetry, all_kinds: o.all_kinds, max_states: o.max_states }
    }

    /// The search options (one worker, no split).
    pub fn options(&self) -> Options {
        Options {
            merge_local: self.merge_local,
            symmetry: self.symmetry,
            all_kinds: self.all_kinds,
            max_states: self.max_states,
            ..Options::default()
        }
    }
}

/// What one shard of a complete search established (the file `exhaust --shard` writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SearchShard {
    /// Always [`KIND`].
    pub kind: String,
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The pokesim that ran it (shards merge only under the same pokesim).
    pub pokesim_version: String,
    /// The search's identity: a hash of `scenario` and `options`.
    pub search: String,
    /// The scenario as scenario-file TOML.
    pub scenario: String,
    /// The scenario fields the command-line flags overrode (for the report).
    pub overrides: Vec<String>,
    /// The search options.
    pub options: SearchOptions,
    /// This shard: `index` of `count`.
    pub index: u64,
    /// Number of shards.
    pub count: u64,
    /// Depth of the frontier where the shards parted.
    pub depth: u64,
    /// States of the levels, frontier included (every shard stores them).
    pub level_states: u64,
    /// States in the frontier.
    pub frontier: u64,
    /// The frontier's digest, 16 hex digits.
    pub digest: String,
    /// True if it searched its whole part (no state limit; without `all_kinds`, no violation).
    pub complete: bool,
    /// Every violation kind it found.
    pub kinds: Vec<ViolationKind>,
    /// Transitions it ran.
    pub transitions: u64,
    /// True if symmetry reduction applied.
    pub symmetric: bool,
    /// Its wall time in milliseconds (informative).
    pub elapsed_ms: u64,
    /// The canonical hash of every state it stored, ascending, 32 hex digits each.
    pub states: String,
}

/// The identity of a search: a hash of its scenario TOML and options, 16 hex digits.
fn search_hash(toml: &str, options: &SearchOptions) -> String {
    let text = format!("{toml}\n{options:?}");
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(text.as_bytes()))
}

impl SearchShard {
    /// The file of shard `split` of the search of `file`'s scenario with `opts`.
    pub fn new(file: &ScenarioFile, overrides: &[String], opts: &Options, r: &SearchResult, elapsed_ms: u64) -> Self {
        let toml = ScenarioFile { decisions: None, trace_hash: None, ..file.clone() }.to_toml();
        let options = SearchOptions::of(opts);
        let split = opts.split.unwrap_or(Split { index: 0, count: 1 });
        let (parting, hashes) =
            r.shard.clone().unwrap_or((Parting { depth: 0, level_states: 0, frontier: 0, digest: 0 }, Vec::new()));
        SearchShard {
            kind: KIND.to_string(),
            format: FORMAT,
            pokesim_version: env!("CARGO_PKG_VERSION").to_string(),
            search: search_hash(&toml, &options),
            scenario: toml,
            overrides: overrides.to_vec(),
            options,
            index: split.index,
            count: split.count,
            depth: parting.depth as u64,
            level_states: parting.level_states,
            frontier: parting.frontier,
            digest: format!("{:016x}", parting.digest),
            complete: r.complete,
            kinds: r.kinds.iter().copied().collect(),
            transitions: r.transitions,
            symmetric: r.symmetric,
            elapsed_ms,
            states: hashes.iter().map(|h| format!("{h:032x}")).collect(),
        }
    }

    /// `search-shard-I-of-N-<search>.json`.
    pub fn file_name(&self) -> String {
        format!("search-shard-{}-of-{}-{}.json", self.index, self.count, self.search)
    }

    /// Writes it as one line of JSON, atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_string(self).map_err(std::io::Error::other)?;
        json.push('\n');
        crate::output::write_atomic(path, json.as_bytes())
    }

    /// The states it stored.
    pub fn hashes(&self) -> impl Iterator<Item = u128> + '_ {
        (0..self.states.len() / 32).map(|i| u128::from_str_radix(&self.states[32 * i..32 * i + 32], 16).unwrap_or(0))
    }
}

/// A search shard read from a file, with its scenario.
#[derive(Clone, Debug)]
pub struct SearchShardFile {
    /// The file, for messages.
    pub file: String,
    /// What it holds.
    pub shard: SearchShard,
    /// The scenario it searched.
    pub scenario: ScenarioFile,
}

/// A problem with `field` of the search shard `file`.
fn located(file: &str, field: &str, message: String) -> InputError {
    InputError::in_json(file, Some(field), message)
}

/// Parses and checks a search shard; `file` names it in errors.
pub fn parse_value(file: &str, value: serde_json::Value) -> Result<SearchShardFile, InputError> {
    match value.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == FORMAT as u64 => {}
        f => {
            let msg = format!("{f:?} is not a supported search shard format (this pokesim reads {FORMAT})");
            return Err(located(file, "format", msg));
        }
    }
    let shard: SearchShard =
        serde_json::from_value(value).map_err(|e| InputError::file(file, format!("corrupt search shard: {e}")))?;
    InputError::unless_same_pokesim(file, &shard.pokesim_version)?;
    let scenario = ScenarioFile::parse(&format!("{file} (scenario)"), &shard.scenario, "shard")?;
    check(&shard).map_err(|(field, msg)| located(file, field, msg))?;
    Ok(SearchShardFile { file: file.to_string(), shard, scenario })
}

/// The consistency of a parsed search shard: `(field, what is wrong)`.
fn check(s: &SearchShard) -> Result<(), (&'static str, String)> {
    if s.count == 0 || s.index >= s.count {
        return Err(("index", format!("{} is not below count {}", s.index, s.count)));
    }
    if s.search != search_hash(&s.scenario, &s.options) {
        return Err(("search", format!("{} is not the hash of `scenario` and `options`", s.search)));
    }
    let well_formed = s.states.len().is_multiple_of(32) && s.states.bytes().all(|b| b.is_ascii_hexdigit());
    if !well_formed {
        return Err(("states", "is not a list of 32-digit hexadecimal hashes".into()));
    }
    let n = (s.states.len() / 32) as u64;
    if n < s.level_states || s.frontier > s.level_states {
        return Err(("states", format!("{n} states, fewer than the {} of the levels", s.level_states)));
    }
    Ok(())
}

/// The merge of every shard of one search, before its shortest counterexample is looked for.
#[derive(Clone, Debug)]
pub struct MergedSearch {
    /// The scenario searched.
    pub scenario: ScenarioFile,
    /// The flags' overrides the shards recorded.
    pub overrides: Vec<String>,
    /// The search options.
    pub options: Options,
    /// Distinct states in the union of the shards.
    pub states: u64,
    /// Transitions the shards ran, together.
    pub transitions: u64,
    /// Every violation kind some shard found.
    pub kinds: BTreeSet<ViolationKind>,
    /// True if every shard searched its whole part.
    pub complete: bool,
    /// True if symmetry reduction applied.
    pub symmetric: bool,
    /// The shard files, by shard.
    pub files: Vec<String>,
    /// States the shards stored together (shards of a strongly connected state graph store
    /// most states more than once: see DESIGN.md §2.9).
    pub stored: u64,
    /// The shards' wall times, added up.
    pub elapsed: std::time::Duration,
    /// The search's identity.
    pub search: String,
}

/// A merge error naming the file (and field) at fault.
fn refuse(f: &SearchShardFile, field: &str, message: String) -> InputError {
    located(&f.file, field, message)
}

/// Merges every shard of one search: refuses shards of different searches, missing or
/// duplicate shards, and a shard that stopped short of its part without a violation.
pub fn merge(shards: &[SearchShardFile]) -> Result<MergedSearch, InputError> {
    let first = shards.first().ok_or_else(|| InputError::file("merge", "no search shard given".to_string()))?;
    let s0 = &first.shard;
    let mut by_index: Vec<Option<&SearchShardFile>> = vec![None; s0.count as usize];
    for f in shards {
        let s = &f.shard;
        if s.search != s0.search || s.count != s0.count {
            let msg =
                format!("shard {}/{} of search {}, not of {} ({})", s.index, s.count, s.search, s0.search, first.file);
            return Err(refuse(f, "search", msg));
        }
        if (s.depth, s.level_states, s.frontier, &s.digest) != (s0.depth, s0.level_states, s0.frontier, &s0.digest) {
            return Err(refuse(f, "digest", format!("its levels parted elsewhere than {}'s", first.file)));
        }
        match &mut by_index[s.index as usize] {
            Some(other) => return Err(refuse(f, "index", format!("shard {} is also {}", s.index, other.file))),
            slot => *slot = Some(f),
        }
        let stopped_by_violation = !s.kinds.is_empty() && !s.options.all_kinds;
        if !s.complete && !stopped_by_violation {
            let msg = "the shard stopped before searching its whole part (--max-states): the merge cannot establish a verdict".into();
            return Err(refuse(f, "complete", msg));
        }
    }
    if let Some(missing) = by_index.iter().position(|f| f.is_none()) {
        return Err(InputError::file(
            &first.file,
            format!("shard {missing}/{} of search {} is missing", s0.count, s0.search),
        ));
    }
    let mut union: BTreeSet<u128> = BTreeSet::new();
    for f in shards {
        union.extend(f.shard.hashes());
    }
    Ok(MergedSearch {
        scenario: first.scenario.clone(),
        overrides: s0.overrides.clone(),
        options: s0.options.options(),
        states: union.len() as u64,
        transitions: shards.iter().map(|f| f.shard.transitions).sum(),
        kinds: shards.iter().flat_map(|f| f.shard.kinds.iter().copied()).collect(),
        complete: shards.iter().all(|f| f.shard.complete),
        symmetric: s0.symmetric,
        stored: shards.iter().map(|f| (f.shard.states.len() / 32) as u64).sum(),
        elapsed: std::time::Duration::from_millis(shards.iter().map(|f| f.shard.elapsed_ms).sum()),
        files: by_index.iter().flatten().map(|f| f.file.clone()).collect(),
        search: s0.search.clone(),
    })
}
