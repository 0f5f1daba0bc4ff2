//! A complete search split into shards that run on separate machines (DESIGN.md §2.9,
//! "Sharded search"), with no communication between them.
//!
//! Every shard runs the same breadth-first search from the initial state, level by level,
//! until a level (the *frontier*, at depth `depth`) holds at least [`FRONTIER_PER_SHARD`]
//! states per shard — the same levels, states and order on every machine, since the search
//! is deterministic. Shard `i` of `n` then searches depth-first from the frontier states whose
//! position is `i` modulo `n`, with every state of the levels (the frontier included) already
//! in its visited table, and reports the canonical hashes of every state it stored.
//!
//! Why the union of the shards' states is exactly the reachable set: a reachable state is in
//! a level, or its shortest path from the initial state passes through one frontier state
//! and, after it, only states deeper than the frontier — never a state of a level; the shard
//! that owns that frontier state reaches it along that path (or along another path it took
//! first). Shards may store the same deeper state twice; the merge counts the union.

use super::shared::{LevelState, Shared, Widen};
use super::worker::Worker;
use super::Counterexample;
use crate::SimError;

/// Frontier states per shard the levels reach before the shards part.
pub const FRONTIER_PER_SHARD: usize = 16;

/// The levels also go on until they hold this many states (while the frontier stays below
/// [`MAX_FRONTIER`]): a violation this shallow is found breadth-first at once, instead of
/// wherever the depth-first order reaches it, and the workers start from many states.
pub const LEVEL_STATES: u64 = 4096;

/// The widest frontier [`LEVEL_STATES`] keeps (its snapshots are held until searched).
const MAX_FRONTIER: usize = 1024;

/// One shard of a split search: `index` of `count`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Split {
    /// This shard (0-based).
    pub index: u64,
    /// Number of shards.
    pub count: u64,
}

/// Where the shards parted, the same for every shard of one search.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Parting {
    /// The frontier's depth, in transitions.
    pub depth: usize,
    /// States in the levels, the frontier included.
    pub level_states: u64,
    /// States in the frontier.
    pub frontier: u64,
    /// A hash of every frontier state's path (shards of one search agree on it).
    pub digest: u64,
}

/// Runs the levels on the first worker and leaves the shard's frontier states (every one, for
/// a search that is not split) to it, to search depth-first or give away.
pub(super) fn part(w: &mut Worker<'_>, shared: &Shared, split: Split) -> Result<Parting, SimError> {
    let want = FRONTIER_PER_SHARD * split.count as usize;
    let events = w.events()?;
    let mut level: Vec<LevelState> = vec![(Vec::new(), w.root().clone(), events)];
    let mut depth = 0;
    let more =
        |level: &Vec<LevelState>| level.len() < want || (shared.states() < LEVEL_STATES && level.len() < MAX_FRONTIER);
    while !level.is_empty() && !shared.stopped() && more(&level) {
        level = next_level(w, shared, level)?;
        depth += 1;
    }
    let frontier = level.len() as u64;
    let mut digest = xxhash_rust::xxh3::Xxh3::new();
    for (position, state) in level.into_iter().enumerate() {
        for e in &state.0 {
            digest.update(&e.choices.iter().flat_map(|c| c.to_le_bytes()).collect::<Vec<u8>>());
            digest.update(format!("{:?};", e.event).as_bytes());
        }
        digest.update(b"|");
        if position as u64 % split.count == split.index {
            w.local.push_back(state);
        }
    }
    Ok(Parting { depth, level_states: shared.states(), frontier, digest: digest.digest() })
}

/// The states first stored by the transitions out of `level`, in order.
fn next_level(w: &mut Worker<'_>, shared: &Shared, level: Vec<LevelState>) -> Result<Vec<LevelState>, SimError> {
    let mut next = Vec::new();
    for (path, snap, mut events) in level {
        if shared.stopped() {
            break;
        }
        let (mut at, mut widen) = (0, Widen::Not);
        while let Some(&event) = events.get(at) {
            at += 1;
            let mut prefix = Some(Vec::new());
            while let Some(p) = prefix.take() {
                let step = w.step(&snap, 0, event, p)?;
                prefix = step.sibling;
                let mut reached = path.clone();
                reached.push(step.edge);
                let Some(events) = step.events else {
                    let decisions = reached.iter().flat_map(|e| e.log.iter().copied()).collect();
                    let transitions = reached.len();
                    let c = Counterexample { decisions, violation: w.violation(), transitions, shortest: false };
                    shared.violated(c);
                    if !w.all_kinds() {
                        shared.halt();
                        return Ok(next);
                    }
                    widen.violated(true);
                    continue;
                };
                if let Some(s) = w.store(&events)? {
                    next.push((reached, s, events));
                }
            }
            if at == events.len() {
                if let Some(rest) = w.widen(&mut widen, &snap, 0, &events)? {
                    events.extend(rest);
                }
            }
        }
    }
    Ok(next)
}
