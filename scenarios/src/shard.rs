//! Shard results and their merge (DESIGN.md §2.9): what one shard `i/n` of a campaign
//! established, as a file, and the union of all `n` of them — exactly the result one machine
//! would have produced for the whole campaign.
//!
//! A shard's batch of [`BATCH`] of its own indices spans whole global blocks of [`BATCH`]
//! indices, so a shard that stopped after the batch holding its smallest violation `v` has
//! run all its indices of every block up to `v`'s. The single-machine campaign with smallest
//! violation `m` runs exactly the indices below `min(runs, BATCH * (m / BATCH + 1))` (without
//! a violation: below `runs`), so its totals are the sums, over the blocks below that end, of
//! every shard's [`BlockSums`]. The merge refuses shards of different campaigns, missing or
//! duplicate shards, and shards that did not run every index the merged result needs (a
//! `--time` limit): it never claims a verdict it did not establish. The violating run is run
//! again from its seed, with its decisions kept, and must reproduce the shard's trace hash.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use sim_core::{SimError, Violation};
use thiserror::Error;

use crate::artifact::Artifact;
use crate::campaign::{BlockSums, Campaign, CampaignResult, Found, Shard, BATCH};
use crate::entry::ScenarioFile;
use crate::input::{read_input, InputError, MAX_SHARD_BYTES};

/// The `kind` of a shard result file (what tells it from a failure artifact).
pub const KIND: &str = "pokesim-shard-result";
/// The shard result format this pokesim reads and writes. 2: a scenario's C protocol runs
/// under x86-TSO unless it says otherwise (format 1 meant SC), so format-1 shards are refused
/// rather than merged under another memory model.
pub const FORMAT: u32 = 2;

/// The violating run a shard found: enough to find it again and check it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FoundRun {
    /// Its seed index in the campaign.
    pub index: u64,
    /// Its seed.
    pub seed: u64,
    /// Its violations (their kinds among them).
    pub violations: Vec<Violation>,
    /// Its trace hash.
    pub trace_hash: String,
}

/// What one shard of a campaign established (the file `explore --shard` writes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShardResult {
    /// Always [`KIND`].
    pub kind: String,
    /// Format version ([`FORMAT`]).
    pub format: u32,
    /// The pokesim that ran it (shards merge only under the same pokesim).
    pub pokesim_version: String,
    /// The campaign's identity: a hash of `scenario`.
    pub campaign: String,
    /// The campaign as scenario-file TOML (name, expectation, scenario, first seed, runs).
    pub scenario: String,
    /// The scenario fields the command-line flags overrode (for the report).
    pub overrides: Vec<String>,
    /// The first seed of the campaign.
    pub seed: u64,
    /// The seed indices of the whole campaign.
    pub runs: u64,
    /// This shard.
    pub shard: Shard,
    /// How many of its own indices it ran (always the first ones).
    pub runs_done: u64,
    /// True if it ran all of them (false: a violation or `--time` stopped it).
    pub complete: bool,
    /// Its wall time in milliseconds (informative).
    pub elapsed_ms: u64,
    /// Sums of its runs per global block, by ascending block.
    pub blocks: Vec<BlockSums>,
    /// Its violating run of the smallest index, if any.
    pub found: Option<FoundRun>,
}

/// The identity of a campaign: a hash of its scenario-file TOML, 16 hex digits.
pub(crate) fn campaign_hash(toml: &str) -> String {
    format!("{:016x}", xxhash_rust::xxh3::xxh3_64(toml.as_bytes()))
}

impl ShardResult {
    /// The result of shard `shard` of the campaign `file` (with the flags' `overrides`).
    pub fn new(file: &ScenarioFile, overrides: &[String], shard: Shard, r: &CampaignResult) -> Self {
        let toml = ScenarioFile { decisions: None, trace_hash: None, ..file.clone() }.to_toml();
        let found = r.found.as_ref().map(|f| FoundRun {
            index: f.index,
            seed: f.scenario.seed,
            violations: f.outcome.violations.clone(),
            trace_hash: f.outcome.trace_hash.clone(),
        });
        ShardResult {
            kind: KIND.to_string(),
            format: FORMAT,
            pokesim_version: env!("CARGO_PKG_VERSION").to_string(),
            campaign: campaign_hash(&toml),
            scenario: toml,
            overrides: overrides.to_vec(),
            seed: file.scenario.seed,
            runs: file.runs,
            shard,
            runs_done: r.runs,
            complete: r.complete,
            elapsed_ms: r.elapsed.as_millis().try_into().unwrap_or(u64::MAX),
            blocks: r.blocks.values().copied().collect(),
            found,
        }
    }

    /// `shard-I-of-N-<campaign>.json`.
    pub fn file_name(&self) -> String {
        format!("shard-{}-of-{}-{}.json", self.shard.index, self.shard.count, self.campaign)
    }

    /// Writes it as one line of JSON, atomically.
    pub fn save(&self, path: &Path) -> std::io::Result<()> {
        let mut json = serde_json::to_string(self).map_err(std::io::Error::other)?;
        json.push('\n');
        crate::output::write_atomic(path, json.as_bytes())
    }

    /// Parses and checks a shard result; `file` names it in errors.
    pub fn parse(file: &str, text: &str) -> Result<ShardFile, InputError> {
        let value: serde_json::Value = serde_json::from_str(text)
            .map_err(|e| located(file, None, format!("corrupt or truncated shard result: {e}")))?;
        parse_value(file, value)
    }
}

/// A problem with `field` of the shard result `file`.
fn located(file: &str, field: Option<&str>, message: String) -> InputError {
    InputError::in_json(file, field, message)
}

fn parse_value(file: &str, value: serde_json::Value) -> Result<ShardFile, InputError> {
    if value.get("kind").and_then(|k| k.as_str()) != Some(KIND) {
        return Err(located(file, Some("kind"), format!("not \"{KIND}\": not a pokesim shard result")));
    }
    match value.get("format").and_then(|f| f.as_u64()) {
        Some(f) if f == FORMAT as u64 => {}
        f => {
            let msg = format!("{f:?} is not a supported shard result format (this pokesim reads {FORMAT})");
            return Err(located(file, Some("format"), msg));
        }
    }
    let r: ShardResult =
        serde_json::from_value(value).map_err(|e| located(file, None, format!("corrupt shard result: {e}")))?;
    InputError::unless_same_pokesim(file, &r.pokesim_version)?;
    let scenario = ScenarioFile::parse(&format!("{file} (scenario)"), &r.scenario, "shard")?;
    check(&r, &scenario).map_err(|(field, msg)| located(file, Some(field), msg))?;
    Ok(ShardFile { file: file.to_string(), result: r, scenario })
}

/// The consistency of a parsed shard result: `(field, what is wrong)`.
fn check(r: &ShardResult, scenario: &ScenarioFile) -> Result<(), (&'static str, String)> {
    let fail = |field, msg: String| Err((field, msg));
    if !r.shard.is_valid() {
        return fail("shard", format!("index {} is not below count {}", r.shard.index, r.shard.count));
    }
    if r.campaign != campaign_hash(&r.scenario) {
        return fail(
            "campaign",
            format!("{} is not the hash of `scenario` ({})", r.campaign, campaign_hash(&r.scenario)),
        );
    }
    if (scenario.scenario.seed, scenario.runs) != (r.seed, r.runs) || scenario.decisions.is_some() {
        return fail("scenario", format!("is not the campaign of seed {} and {} runs", r.seed, r.runs));
    }
    let own = r.shard.share(r.runs);
    if r.runs_done > own || r.complete != (r.runs_done == own && r.found.is_none()) {
        return fail("runs_done", format!("{} of the shard's {own} indices contradicts `complete`", r.runs_done));
    }
    check_blocks(r)?;
    let Some(f) = &r.found else { return Ok(()) };
    if f.index >= r.runs || f.index % r.shard.count != r.shard.index || f.index / BATCH > last_block(r) {
        return fail("found.index", format!("{} is not an index this shard ran", f.index));
    }
    if f.seed != r.seed.wrapping_add(f.index) {
        return fail("found.seed", format!("{} is not the seed of index {}", f.seed, f.index));
    }
    if f.violations.is_empty() {
        return fail("found.violations", "empty: a found run has a violation".into());
    }
    Ok(())
}

/// The last block a shard ran (0 if none).
fn last_block(r: &ShardResult) -> u64 {
    r.blocks.last().map_or(0, |b| b.block)
}

/// Blocks ascend, lie in the campaign, hold no more runs than the shard's indices in them,
/// and add up to `runs_done`.
fn check_blocks(r: &ShardResult) -> Result<(), (&'static str, String)> {
    let mut prev = None;
    let mut total = 0u64;
    for b in &r.blocks {
        let (from, to) = (b.block.saturating_mul(BATCH), b.block.saturating_add(1).saturating_mul(BATCH).min(r.runs));
        let own = if from < r.runs { r.shard.share_between(from, to) } else { 0 };
        let exhausted_ok = b.exhausted <= b.ran && b.first_exhausted.is_some() == (b.exhausted > 0);
        let first_ok = b.first_exhausted.is_none_or(|k| (from..to).contains(&k));
        if prev.is_some_and(|p| p >= b.block) || b.ran == 0 || b.ran > own || !exhausted_ok || !first_ok {
            return Err(("blocks", format!("block {} is out of order or holds runs this shard cannot have", b.block)));
        }
        prev = Some(b.block);
        total += b.ran;
    }
    if total != r.runs_done {
        return Err(("blocks", format!("hold {total} runs, not the {} of `runs_done`", r.runs_done)));
    }
    Ok(())
}

/// A shard result read from a file, with its campaign's scenario.
#[derive(Clone, Debug)]
pub struct ShardFile {
    /// The file, for messages.
    pub file: String,
    /// What it holds.
    pub result: ShardResult,
    /// The campaign it is a shard of.
    pub scenario: ScenarioFile,
}

/// A JSON file given to `merge`: a shard result, or a failure artifact that sits with them.
#[derive(Clone, Debug)]
pub enum MergeInput {
    /// A shard result.
    Shard(Box<ShardFile>),
    /// A failure artifact (not a shard result): the file and the artifact.
    Artifact(String, Box<Artifact>),
    /// A shard of a complete search (`exhaust --shard`).
    SearchShard(Box<crate::search_shard::SearchShardFile>),
}

impl MergeInput {
    /// Reads `path`: a shard result (its `kind`), a failure artifact, or an error naming it.
    pub fn read(path: &Path) -> Result<Self, InputError> {
        let file = path.display().to_string();
        let text = read_input(path, MAX_SHARD_BYTES)?;
        let not_json = |e: serde_json::Error| {
            located(&file, None, format!("not JSON, so neither a shard result nor an artifact: {e}"))
        };
        // Which it is, without building the document (an artifact's decision list is big).
        match serde_json::from_str::<HasKind>(&text) {
            Ok(HasKind(true)) => {
                let value: serde_json::Value = serde_json::from_str(&text).map_err(not_json)?;
                if value.get("kind").and_then(|k| k.as_str()) == Some(crate::search_shard::KIND) {
                    return Ok(MergeInput::SearchShard(Box::new(crate::search_shard::parse_value(&file, value)?)));
                }
                return Ok(MergeInput::Shard(Box::new(parse_value(&file, value)?)));
            }
            Err(e) if e.classify() != serde_json::error::Category::Data => return Err(not_json(e)),
            _ => {}
        }
        match Artifact::parse(&file, &text) {
            Ok(a) => Ok(MergeInput::Artifact(file, Box::new(a))),
            Err(e) => Err(InputError {
                message: format!("neither a shard result (no `kind`) nor a failure artifact: {}", e.message),
                ..e
            }),
        }
    }
}

/// Whether a JSON document is an object with a `kind` field (a shard result), read without
/// keeping anything.
struct HasKind(bool);

impl<'de> Deserialize<'de> for HasKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        d.deserialize_map(HasKindVisitor)
    }
}

struct HasKindVisitor;

impl<'de> serde::de::Visitor<'de> for HasKindVisitor {
    type Value = HasKind;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<HasKind, A::Error> {
        let mut found = false;
        while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
            found |= key == "kind";
            map.next_value::<serde::de::IgnoredAny>()?;
        }
        Ok(HasKind(found))
    }
}

/// Why shard results do not merge. Every case is bad input except a simulator failure.
#[derive(Debug, Error)]
pub enum MergeError {
    /// No shard result among the inputs.
    #[error("no shard results to merge (write them with `pokesim explore --shard I/N`)")]
    Empty,
    /// Two shards of different campaigns.
    #[error("{other}: not a shard of the same campaign as {first} (their {what} differ)")]
    DifferentCampaigns {
        /// The first shard's file.
        first: String,
        /// The other shard's file.
        other: String,
        /// What differs.
        what: &'static str,
    },
    /// A shard `I/N` without `I < N`.
    #[error("{file}: field `shard`: {shard} is not a shard (needs I < N)")]
    InvalidShard {
        /// The shard's file.
        file: String,
        /// The shard.
        shard: Shard,
    },
    /// The same shard twice.
    #[error("shard {shard} given twice: {first} and {second}")]
    Duplicate {
        /// The shard.
        shard: Shard,
        /// Its first file.
        first: String,
        /// Its second file.
        second: String,
    },
    /// Shards missing.
    #[error("missing shard results ({missing}): {list} of campaign {campaign} (every shard-I-of-{count}-{campaign}.json, I < {count}, is needed)")]
    Missing {
        /// How many are missing.
        missing: u64,
        /// The first few of them, `I/N, ...`.
        list: String,
        /// The number of shards.
        count: u64,
        /// The campaign's hash.
        campaign: String,
    },
    /// A shard did not run every index the merged result needs.
    #[error("{file}: shard {shard} ran {ran} of its {needed} seed indices below {end}, which the merged result needs (stopped by --time?); merging it would claim a verdict nobody established")]
    Short {
        /// The shard's file.
        file: String,
        /// The shard.
        shard: Shard,
        /// Its runs below `end`.
        ran: u64,
        /// Its indices below `end`.
        needed: u64,
        /// The end of the merged campaign.
        end: u64,
    },
    /// The violating run, run again, is not the one the shard recorded.
    #[error("{file}: field `found.{field}`: seed index {index} ran again gives {got}, the shard recorded {recorded} (a different pokesim, or an edited file)")]
    Irreproducible {
        /// The shard's file.
        file: String,
        /// The field that differs.
        field: &'static str,
        /// The seed index.
        index: u64,
        /// What the shard recorded.
        recorded: String,
        /// What the run gave.
        got: String,
    },
    /// Running the violating run failed.
    #[error(transparent)]
    Sim(#[from] SimError),
}

/// What merging shard results gives: the campaign and what one machine would have found.
#[derive(Clone, Debug)]
pub struct Merged {
    /// The campaign.
    pub scenario: ScenarioFile,
    /// The scenario fields the command-line flags overrode.
    pub overrides: Vec<String>,
    /// The campaign's hash.
    pub campaign: String,
    /// The shard files, by shard.
    pub files: Vec<String>,
    /// The single-machine result.
    pub result: CampaignResult,
}

/// Merges the shard results of one campaign into the result one machine would have produced.
pub fn merge(shards: &[ShardFile]) -> Result<Merged, MergeError> {
    merge_with_progress(shards, &|_| {})
}

/// [`merge`], calling `progress(n)` after each of the (at most two) runs it runs again: the
/// violating run and the last run of the merged campaign.
pub fn merge_with_progress(shards: &[ShardFile], progress: &dyn Fn(u64)) -> Result<Merged, MergeError> {
    let by_shard = arrange(shards)?;
    let first = by_shard[0];
    let runs = first.result.runs;
    let found = by_shard.iter().filter_map(|s| s.result.found.as_ref().map(|f| (*s, f))).min_by_key(|(_, f)| f.index);
    let end = found.map_or(runs, |(_, f)| runs.min((f.index / BATCH + 1).saturating_mul(BATCH)));
    let blocks = covered(&by_shard, end)?;
    let mut result = CampaignResult {
        runs: end,
        found: None,
        exhausted: 0,
        first_exhausted: None,
        complete: found.is_none(),
        last: None,
        totals: Default::default(),
        blocks,
        elapsed: Duration::from_millis(by_shard.iter().map(|s| s.result.elapsed_ms).fold(0, u64::saturating_add)),
    };
    for b in result.blocks.values() {
        result.totals.add(&b.stats);
        result.exhausted += b.exhausted;
        result.first_exhausted = match (result.first_exhausted, b.first_exhausted) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
    }
    let at = Campaign::seeds(&first.scenario.scenario);
    if let Some((s, f)) = found {
        result.found = Some(rerun(&s.file, f, &at)?);
        progress(1);
    }
    if end > 0 {
        result.last = Some((end - 1, at(end - 1).run_unrecorded()?));
        progress(found.is_some() as u64 + 1);
    }
    let files = by_shard.iter().map(|s| s.file.clone()).collect();
    let (scenario, overrides) = (first.scenario.clone(), first.result.overrides.clone());
    Ok(Merged { scenario, overrides, campaign: first.result.campaign.clone(), files, result })
}

/// The shards by index, all of one campaign, none twice, none missing.
fn arrange(shards: &[ShardFile]) -> Result<Vec<&ShardFile>, MergeError> {
    let first = shards.first().ok_or(MergeError::Empty)?;
    let mut by: BTreeMap<u64, &ShardFile> = BTreeMap::new();
    for s in shards {
        if !s.result.shard.is_valid() {
            return Err(MergeError::InvalidShard { file: s.file.clone(), shard: s.result.shard });
        }
        let differ = |what| MergeError::DifferentCampaigns { first: first.file.clone(), other: s.file.clone(), what };
        if s.result.campaign != first.result.campaign {
            return Err(differ("scenarios (campaign hashes)"));
        }
        if s.result.shard.count != first.result.shard.count {
            return Err(differ("numbers of shards"));
        }
        if let Some(prev) = by.insert(s.result.shard.index, s) {
            let (first, second) = (prev.file.clone(), s.file.clone());
            return Err(MergeError::Duplicate { shard: s.result.shard, first, second });
        }
    }
    let count = first.result.shard.count;
    let missing = count - by.len() as u64;
    if missing > 0 {
        let absent = (0..count).filter(|i| !by.contains_key(i)).take(8);
        let mut list: Vec<String> = absent.map(|i| Shard { index: i, count }.to_string()).collect();
        if missing > list.len() as u64 {
            list.push(format!("... ({missing} in all)"));
        }
        let campaign = first.result.campaign.clone();
        return Err(MergeError::Missing { missing, list: list.join(", "), count, campaign });
    }
    Ok(by.into_values().collect())
}

/// The blocks below `end`, summed over the shards; every shard must have run all its
/// indices below `end`.
fn covered(shards: &[&ShardFile], end: u64) -> Result<BTreeMap<u64, BlockSums>, MergeError> {
    let last = end.div_ceil(BATCH);
    let mut sums: BTreeMap<u64, BlockSums> = BTreeMap::new();
    for s in shards {
        let r = &s.result;
        let mut ran = 0;
        for b in r.blocks.iter().take_while(|b| b.block < last) {
            ran += b.ran;
            sums.entry(b.block).or_insert(BlockSums { block: b.block, ..BlockSums::default() }).add(b);
        }
        let needed = r.shard.share(end);
        if ran != needed {
            return Err(MergeError::Short { file: s.file.clone(), shard: r.shard, ran, needed, end });
        }
    }
    Ok(sums)
}

/// The violating run `f` of the shard file `file`, run again with its decisions kept; it
/// must be the run the shard recorded.
fn rerun(file: &str, f: &FoundRun, at: &impl Fn(u64) -> crate::scenario::Scenario) -> Result<Found, MergeError> {
    let scenario = at(f.index);
    let outcome = scenario.run()?;
    let differ = |field, recorded: String, got: String| MergeError::Irreproducible {
        file: file.to_string(),
        field,
        index: f.index,
        recorded,
        got,
    };
    if outcome.trace_hash != f.trace_hash {
        return Err(differ("trace_hash", f.trace_hash.clone(), outcome.trace_hash));
    }
    if outcome.violations != f.violations {
        let show = |v: &[Violation]| v.iter().map(|v| v.to_string()).collect::<Vec<_>>().join("; ");
        return Err(differ("violations", show(&f.violations), show(&outcome.violations)));
    }
    Ok(Found { index: f.index, scenario, outcome })
}
