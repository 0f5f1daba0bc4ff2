//! Complete state-space search (DESIGN.md §2.9): every reachable state of a scenario, with
//! guests that loop forever, or the first violation with a shortest counterexample.
//!
//! The mechanisms, and why each keeps the search complete:
//! - **Save and restore.** A transition costs one event: the search restores the machine to a
//!   saved state ([`Snapshot`]) and runs one event from it, instead of replaying a run from
//!   the start. Restoring rewrites only the view bytes that differ and invalidates exactly
//!   those translated blocks.
//! - **Visited states.** A state is recognised by a 128-bit canonical hash of everything that
//!   can influence the future (`Snapshot::canonical_hash`); the workload's counters are
//!   checked and reset at every loop head, so a guest that loops forever has finitely many
//!   states and the search terminates.
//! - **Local steps merged** (partial-order reduction). A local guest step — one that reads no
//!   patchable byte, does not trap and touches only its own vCPU's registers, stack and
//!   counters — commutes with every event of every other actor, and with its own vCPU's IPI.
//!   After any event of a vCPU, the vCPU's following local steps run in the same transition:
//!   every interleaving of them with other events reaches, by commuting, a state where they
//!   ran first, so exactly the states where some vCPU sits before a local step are skipped.
//!   Every event is still explored in every stored state (no ample sets, so no cycle
//!   proviso is needed alongside state caching).
//! - **Symmetry.** When the vCPUs are interchangeable (same code; no per-CPU state in the
//!   protocol), the canonical hash sorts the per-vCPU parts, so states that differ by a
//!   permutation of the vCPUs are one state.
//! - **More than one patching client** (a kprobe that arms and disarms itself, further callers
//!   of the vector). Which client takes `text_mutex` is an event order like any other, so both
//!   orders are explored; the order of their stores then differs from path to path, so a state
//!   holds the text's store history and its hash covers what each epoch wrote
//!   (`Machine::interleaved_stores`); restoring replaces the history after the prefix two
//!   states share. One client: the epoch alone, as before.
//! - **Shortest counterexample.** A violation found by the depth-first search is re-found by a
//!   breadth-first search over the same transitions, which yields one with the fewest
//!   transitions.

use std::collections::{HashSet, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::decision::{Decision, Decisions};
use crate::event::Event;
use crate::machine::state::{Canon, SaveCache, Snapshot};
use crate::machine::Machine;
use crate::oracle::Violation;
use crate::SimError;

/// What the search may use.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Merge local steps into the transition before them.
    pub merge_local: bool,
    /// Identify states up to a permutation of interchangeable vCPUs.
    pub symmetry: bool,
    /// Stop (incomplete) after this many distinct states.
    pub max_states: u64,
    /// After a violation, search breadth-first for a shortest counterexample (bounded by
    /// `max_states` too).
    pub shortest: bool,
    /// Do not stop at the first violation: go on past violating states (without expanding
    /// them) and report every violation kind reachable — the search is then complete even
    /// with violations (SPIN's masked reruns, in one search).
    pub all_kinds: bool,
}

impl Default for Options {
    fn default() -> Self {
        Self { merge_local: true, symmetry: true, max_states: 50_000_000, shortest: true, all_kinds: false }
    }
}

/// A violation and the decisions that reach it from the initial state (replayable by
/// [`Machine::run`] under any scheduler, as a recorded list).
#[derive(Clone, Debug)]
pub struct Counterexample {
    /// Every decision of the path: each tick's scheduling pick and fetch choices.
    pub decisions: Vec<Decision>,
    /// The violation at its end.
    pub violation: Violation,
    /// Transitions on the path.
    pub transitions: usize,
    /// True if it was found by the breadth-first search: no counterexample has fewer
    /// transitions.
    pub shortest: bool,
}

/// What a search established.
#[derive(Clone, Debug, Default)]
pub struct SearchResult {
    /// Distinct states stored.
    pub states: u64,
    /// Transitions executed.
    pub transitions: u64,
    /// True if every reachable state was visited (no state limit; without `all_kinds`, no
    /// violation either).
    pub complete: bool,
    /// Every violation kind found (with `all_kinds`: every kind reachable, if complete).
    pub kinds: std::collections::BTreeSet<crate::oracle::ViolationKind>,
    /// The first violation, with its path.
    pub found: Option<Counterexample>,
    /// The deepest path, in transitions.
    pub max_depth: usize,
    /// True if symmetry reduction was applied.
    pub symmetric: bool,
    /// Canonical hashes (with symmetry as far as the scenario allows, whatever the options) of
    /// every stored state where no vCPU sits before a local step — for soundness tests, if
    /// asked for.
    pub global_states: Option<HashSet<u128>>,
}

/// A hasher for keys that are already uniformly random hashes.
#[derive(Default)]
struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes.iter().take(8) {
            self.0 = (self.0 << 8) | b as u64;
        }
    }
    fn write_u128(&mut self, v: u128) {
        self.0 = v as u64;
    }
}

type Visited = HashSet<u128, BuildHasherDefault<PassThrough>>;

/// One stored state on the depth-first stack and where its exploration stands.
struct Frame {
    snap: Snapshot,
    events: Vec<Event>,
    next_event: usize,
    /// The choice prefix of the next transition of the current event (`None`: all done).
    prefix: Option<Vec<u32>>,
    /// The decisions of the transition that reached this state.
    edge: Vec<Decision>,
}

/// The prefix of the next sibling transition after one that made `taken`: the last choice
/// that has an untried option, advanced.
fn next_sibling(taken: &[Decision]) -> Option<Vec<u32>> {
    let j = taken.iter().rposition(|d| d.choice + 1 < d.of)?;
    let mut prefix: Vec<u32> = taken[..j].iter().map(|d| d.choice).collect();
    prefix.push(taken[j].choice + 1);
    Some(prefix)
}

/// The search's shared machinery: the machine, how states are identified, what was seen.
struct Searcher<'a> {
    machine: &'a mut Machine,
    /// What saving and hashing the machine's states remembers between calls.
    cache: SaveCache,
    canon: Canon,
    /// Canonical hashing with symmetry as far as the scenario allows (for global states).
    sym_canon: Canon,
    opts: Options,
    visited: Visited,
    result: SearchResult,
    progress: &'a dyn Fn(u64),
}

impl Searcher<'_> {
    /// Stores the machine's current state if new: its canonical hash, and (for soundness
    /// tests) whether it is a global state. Returns its snapshot if it was not seen before.
    fn store(&mut self, events: &[Event]) -> Result<Option<Snapshot>, SimError> {
        let h = self.machine.canonical_hash(&self.canon, &mut self.cache)?;
        if !self.visited.insert(h) {
            return Ok(None);
        }
        self.result.states += 1;
        if self.result.states.is_multiple_of(4096) {
            (self.progress)(self.result.states);
        }
        if self.result.global_states.is_some() && !events.iter().any(|&e| self.machine.local_step(e)) {
            let g = self.machine.canonical_hash(&self.sym_canon, &mut self.cache)?;
            self.result.global_states.as_mut().map(|set| set.insert(g));
        }
        Ok(Some(self.machine.save(&mut self.cache)?))
    }

    /// Runs one transition from `snap`; returns its decisions and, if none of the oracles
    /// objected, the enabled events of the state it reached.
    fn step(&mut self, snap: &Snapshot, event: Event, prefix: Vec<u32>) -> Result<Step, SimError> {
        self.machine.restore(snap, &mut self.cache)?;
        let mut d = Decisions::enumerate(prefix);
        self.machine.transition(event, &mut d, self.opts.merge_local)?;
        self.result.transitions += 1;
        let sibling = next_sibling(d.enumerated());
        let edge = d.into_log();
        if self.machine.violation().is_some() {
            return Ok(Step { sibling, edge, events: None });
        }
        let events = self.machine.enabled_events();
        if self.machine.check_deadlock() {
            return Ok(Step { sibling, edge, events: None });
        }
        Ok(Step { sibling, edge, events: Some(events) })
    }

    fn violation(&self) -> Violation {
        self.machine.violation().cloned().expect("a violation was reported")
    }
}

/// What one transition did.
struct Step {
    sibling: Option<Vec<u32>>,
    edge: Vec<Decision>,
    /// `None`: the transition (or the state it reached) violated.
    events: Option<Vec<Event>>,
}

/// Searches every state reachable from the machine's current state (normally its initial
/// state; the machine's configuration should reset counters, see
/// [`crate::RunConfig::reset_counters`]). `progress(states)` is called now and then.
pub fn search(
    machine: &mut Machine,
    opts: Options,
    global_states: bool,
    progress: &dyn Fn(u64),
) -> Result<SearchResult, SimError> {
    let sym_canon = machine.canon();
    let mut canon = sym_canon.clone();
    canon.symmetric &= opts.symmetry;
    let symmetric = canon.symmetric;
    let mut cache = SaveCache::default();
    let root = machine.save(&mut cache)?;
    let events = machine.enabled_events();
    let mut s = Searcher {
        machine,
        cache,
        canon,
        sym_canon,
        opts,
        visited: Visited::default(),
        result: SearchResult { symmetric, global_states: global_states.then(HashSet::new), ..SearchResult::default() },
        progress,
    };
    if s.machine.check_deadlock() {
        let violation = s.violation();
        s.result.kinds.insert(violation.kind);
        s.result.found = Some(Counterexample { decisions: Vec::new(), violation, transitions: 0, shortest: true });
        return Ok(s.result);
    }
    s.store(&events)?;
    let found =
        dfs(&mut s, Frame { snap: root.clone(), events, next_event: 0, prefix: Some(Vec::new()), edge: Vec::new() })?;
    s.result.found = match found {
        Some(c) if opts.shortest => Some(bfs(&mut s, &root)?.unwrap_or(c)),
        other => other,
    };
    s.result.complete = (opts.all_kinds || s.result.found.is_none()) && s.result.states < opts.max_states;
    (s.progress)(s.result.states);
    Ok(s.result)
}

/// Depth-first search from `root`; the first counterexample, if any.
fn dfs(s: &mut Searcher<'_>, root: Frame) -> Result<Option<Counterexample>, SimError> {
    let mut stack = vec![root];
    let mut first: Option<Counterexample> = None;
    while let Some(top) = stack.last_mut() {
        let Some(&event) = top.events.get(top.next_event) else {
            stack.pop();
            continue;
        };
        let Some(prefix) = top.prefix.take() else {
            top.next_event += 1;
            top.prefix = Some(Vec::new());
            continue;
        };
        let snap = top.snap.clone();
        let step = s.step(&snap, event, prefix)?;
        if let Some(top) = stack.last_mut() {
            top.prefix = step.sibling;
        }
        let Some(events) = step.events else {
            let violation = s.violation();
            s.result.kinds.insert(violation.kind);
            if s.opts.all_kinds && first.is_some() {
                continue;
            }
            let mut decisions: Vec<Decision> = stack.iter().flat_map(|f| f.edge.iter().copied()).collect();
            decisions.extend(step.edge);
            let c = Counterexample { decisions, violation, transitions: stack.len(), shortest: false };
            if !s.opts.all_kinds {
                return Ok(Some(c));
            }
            first = Some(c);
            continue;
        };
        let Some(next) = s.store(&events)? else { continue };
        s.result.max_depth = s.result.max_depth.max(stack.len());
        if s.result.states >= s.opts.max_states {
            return Ok(first);
        }
        stack.push(Frame { snap: next, events, next_event: 0, prefix: Some(Vec::new()), edge: step.edge });
    }
    Ok(first)
}

/// Breadth-first search from `root` for a counterexample with the fewest transitions.
fn bfs(s: &mut Searcher<'_>, root: &Snapshot) -> Result<Option<Counterexample>, SimError> {
    let mut seen = Visited::default();
    seen.insert(root.canonical_hash(&s.canon));
    // Every stored state: its parent and the decisions of the edge from it.
    let mut parents: Vec<(usize, Vec<Decision>)> = vec![(usize::MAX, Vec::new())];
    let mut queue: VecDeque<(usize, Snapshot)> = VecDeque::from([(0, root.clone())]);
    let path = |parents: &Vec<(usize, Vec<Decision>)>, mut at: usize| {
        let mut edges = Vec::new();
        while at != usize::MAX {
            edges.push(parents[at].1.clone());
            at = parents[at].0;
        }
        let n = edges.len() - 1;
        (edges.into_iter().rev().flatten().collect::<Vec<_>>(), n)
    };
    while let Some((id, snap)) = queue.pop_front() {
        s.machine.restore(&snap, &mut s.cache)?;
        for event in s.machine.enabled_events() {
            let mut prefix = Some(Vec::new());
            while let Some(p) = prefix.take() {
                let step = s.step(&snap, event, p)?;
                prefix = step.sibling;
                let Some(events) = step.events else {
                    let (mut decisions, n) = path(&parents, id);
                    decisions.extend(step.edge);
                    let violation = s.violation();
                    return Ok(Some(Counterexample { decisions, violation, transitions: n + 1, shortest: true }));
                };
                let _ = events;
                if parents.len() as u64 >= s.opts.max_states
                    || !seen.insert(s.machine.canonical_hash(&s.canon, &mut s.cache)?)
                {
                    continue;
                }
                let next = s.machine.save(&mut s.cache)?;
                parents.push((id, step.edge));
                queue.push_back((parents.len() - 1, next));
            }
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn siblings_count_like_an_odometer_from_the_last_choice() {
        let d = |of, choice| Decision { of, choice };
        assert_eq!(next_sibling(&[d(3, 0), d(2, 0)]), Some(vec![0, 1]));
        assert_eq!(next_sibling(&[d(3, 0), d(2, 1)]), Some(vec![1]));
        assert_eq!(next_sibling(&[d(3, 2), d(2, 1)]), None);
        assert_eq!(next_sibling(&[]), None);
    }
}
