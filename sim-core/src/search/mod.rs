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
//! - **Quiet handler steps** (partial-order reduction). An INT3-handler step whose footprint
//!   meets nothing another actor can write before the vCPU leaves its handler
//!   (`Machine::quiet_handler_step`) runs in the transition before it too, and a state where
//!   one is enabled explores that step alone — an ample set of one, with no cycle proviso
//!   needed since a handler ends at its IRET. Local guest steps, which can loop forever, are
//!   never explored alone: every other state explores every enabled event.
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

use crate::decision::Decision;
use crate::machine::state::Snapshot;
use crate::machine::{Machine, Merge};
use crate::oracle::Violation;
use crate::SimError;

mod shared;
mod split;
mod worker;

pub use split::{Parting, Split, FRONTIER_PER_SHARD};

use shared::Shared;
use worker::Worker;

/// What the search may use.
#[derive(Clone, Copy, Debug)]
pub struct Options {
    /// Partial-order reduction: merge local guest steps and quiet handler steps into the
    /// transition before them, and explore a quiet handler step alone where one is enabled.
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
    /// Workers searching at once, each on a thread and a machine of its own
    /// ([`search_parallel`]; [`search`] runs one).
    pub workers: usize,
    /// Search only this shard of the state space ([`Split`]; the result lists the hashes of
    /// the states it stored, for the merge).
    pub split: Option<Split>,
}

impl Options {
    /// What a transition runs with the step before it ([`Merge`]): nothing without
    /// `merge_local`; with `all_kinds` local guest steps only, so that a quiet handler step
    /// that violates ends a transition of its own and the state before it is expanded fully
    /// (`worker`); else local guest steps and quiet handler steps.
    pub(crate) fn merging(&self) -> Merge {
        match (self.merge_local, self.all_kinds) {
            (false, _) => Merge::Nothing,
            (true, true) => Merge::Local,
            (true, false) => Merge::LocalAndQuiet,
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Self {
            merge_local: true,
            symmetry: true,
            max_states: 50_000_000,
            shortest: true,
            all_kinds: false,
            workers: 1,
            split: None,
        }
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
    /// Distinct states stored (after a violation, with `shortest` and without `all_kinds`: by
    /// the breadth-first search that found the shortest counterexample).
    pub states: u64,
    /// Transitions executed (likewise).
    pub transitions: u64,
    /// True if every reachable state was visited (no state limit; without `all_kinds`, no
    /// violation either).
    pub complete: bool,
    /// Every violation kind found (with `all_kinds`: every kind reachable, if complete).
    pub kinds: std::collections::BTreeSet<crate::oracle::ViolationKind>,
    /// The first violation, with its path.
    pub found: Option<Counterexample>,
    /// True if symmetry reduction was applied.
    pub symmetric: bool,
    /// Canonical hashes (with symmetry as far as the scenario allows, whatever the options) of
    /// every stored state where no vCPU sits before a local step — for soundness tests, if
    /// asked for.
    pub global_states: Option<HashSet<u128>>,
    /// With [`Options::split`]: where the shards parted, and the canonical hash of every state
    /// this shard stored (ascending).
    pub shard: Option<(Parting, Vec<u128>)>,
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

/// The prefix of the next sibling transition after one that made `taken`: the last choice
/// that has an untried option, advanced.
fn next_sibling(taken: &[Decision]) -> Option<Vec<u32>> {
    let j = taken.iter().rposition(|d| d.choice + 1 < d.of)?;
    let mut prefix: Vec<u32> = taken[..j].iter().map(|d| d.choice).collect();
    prefix.push(taken[j].choice + 1);
    Some(prefix)
}

/// Builds one more machine of the scenario being searched (for a further worker, on the
/// worker's own thread).
pub type MakeMachine<'m> = &'m (dyn Fn() -> Result<Machine, SimError> + Sync);

/// Searches every state reachable from the machine's current state (normally its initial
/// state; the machine's configuration should reset counters, see
/// [`crate::RunConfig::reset_counters`]) with one worker. `progress(states)` is called now and
/// then.
pub fn search(
    machine: &mut Machine,
    opts: Options,
    global_states: bool,
    progress: &dyn Fn(u64),
) -> Result<SearchResult, SimError> {
    run(machine, None, Options { workers: 1, ..opts }, global_states, progress)
}

/// [`search`] with `opts.workers` workers, each on a thread and a machine of its own built by
/// `make` (the first on the calling thread). The result — verdict, states, transitions,
/// shortest counterexample — is the same for any number of workers.
pub fn search_parallel(
    make: MakeMachine<'_>,
    opts: Options,
    global_states: bool,
    progress: &dyn Fn(u64),
) -> Result<SearchResult, SimError> {
    let mut machine = make()?;
    run(&mut machine, Some(make), opts, global_states, progress)
}

/// The breadth-first search alone, from the machine's current state: a shortest
/// counterexample, with the states and transitions it took — what [`search`] reports after
/// a violation (without `all_kinds`). The merge of a split search runs it when a shard found
/// a violation.
pub fn shortest(machine: &mut Machine, opts: Options, progress: &dyn Fn(u64)) -> Result<SearchResult, SimError> {
    refuse_options(&opts)?;
    let shared = Shared::new(1, opts.max_states, false);
    let mut first = Worker::new(machine, Options { workers: 1, split: None, ..opts }, &shared, Some(progress))?;
    let root = first.root().clone();
    let (found, states, transitions) = bfs(&mut first, &root, opts.max_states)?;
    let kinds = found.iter().map(|c| c.violation.kind).collect();
    let complete = found.is_none() && states < opts.max_states;
    let symmetric = first.canon.symmetric;
    Ok(SearchResult { states, transitions, complete, kinds, found, symmetric, ..SearchResult::default() })
}

/// Refuses options a search cannot act on.
fn refuse_options(opts: &Options) -> Result<(), SimError> {
    if opts.workers == 0 || opts.workers > MAX_WORKERS {
        return Err(SimError::invalid(
            crate::error::Subject::Workload,
            format!("{} search workers: a search runs 1 to {MAX_WORKERS}", opts.workers),
        ));
    }
    Ok(())
}

/// The most workers one search runs.
pub const MAX_WORKERS: usize = 64;

fn run(
    machine: &mut Machine,
    make: Option<MakeMachine<'_>>,
    opts: Options,
    global_states: bool,
    progress: &dyn Fn(u64),
) -> Result<SearchResult, SimError> {
    refuse_options(&opts)?;
    let workers = if make.is_some() { opts.workers } else { 1 };
    let shared = Shared::new(workers, opts.max_states, global_states);
    let mut first = Worker::new(machine, opts, &shared, Some(progress))?;
    let symmetric = first.canon.symmetric;
    let events = first.events()?;
    if first.machine.check_deadlock() {
        let violation = first.violation();
        let c = Counterexample { decisions: Vec::new(), violation, transitions: 0, shortest: true };
        let kinds = [c.violation.kind].into();
        return Ok(SearchResult { symmetric, kinds, found: Some(c), ..SearchResult::default() });
    }
    first.store(&events)?;
    // Breadth-first levels first (a shallow violation is found at once), then depth-first
    // from the frontier; split, only from this shard's part of it.
    let parting = split::part(&mut first, &shared, opts.split.unwrap_or(Split { index: 0, count: 1 }))?;
    let parting = opts.split.map(|_| parting);
    let transitions = std::thread::scope(|scope| -> Result<u64, SimError> {
        let others: Vec<_> = (1..workers)
            .map(|_| {
                let (shared, make) = (&shared, make.expect("more than one worker has a maker"));
                scope.spawn(move || -> Result<u64, SimError> {
                    let mut m = make().inspect_err(|_| shared.halt())?;
                    let mut w = Worker::new(&mut m, opts, shared, None).inspect_err(|_| shared.halt())?;
                    w.run()?;
                    Ok(w.transitions)
                })
            })
            .collect();
        let mut total = first.run().map(|()| first.transitions);
        for h in others {
            let r = h.join().unwrap_or_else(|_| Err(SimError::Internal("a search worker panicked".into())));
            total = total.and_then(|t| r.map(|n| t + n));
        }
        total
    })?;
    let mut result = finish(first, &shared, transitions, opts, progress)?;
    result.shard = parting.map(|p| (p, shared.hashes()));
    Ok(result)
}

/// The result once every worker returned: the shortest counterexample if one is asked for.
fn finish(
    mut first: Worker<'_>,
    shared: &Shared,
    transitions: u64,
    opts: Options,
    progress: &dyn Fn(u64),
) -> Result<SearchResult, SimError> {
    let symmetric = first.canon.symmetric;
    let states = shared.states();
    let (kinds, found, global_states) = shared.take_verdict();
    let mut result =
        SearchResult { states, transitions, kinds, found, symmetric, global_states, complete: false, shard: None };
    if result.found.is_some() && opts.shortest {
        let root = first.root().clone();
        let (c, states, transitions) = bfs(&mut first, &root, opts.max_states)?;
        if let Some(c) = c {
            result.kinds.insert(c.violation.kind);
            result.found = Some(c);
        }
        if !opts.all_kinds {
            // The depth-first states depend on which worker got where first; the
            // breadth-first search's do not.
            (result.states, result.transitions) = (states, transitions);
        }
    }
    result.complete = (opts.all_kinds || result.found.is_none()) && result.states < opts.max_states;
    progress(result.states);
    Ok(result)
}

/// Breadth-first search from `root` for a counterexample with the fewest transitions; also
/// the states it stored and the transitions it ran. Reports its states as progress.
fn bfs(w: &mut Worker<'_>, root: &Snapshot, max_states: u64) -> Result<(Option<Counterexample>, u64, u64), SimError> {
    let mut seen = Visited::default();
    seen.insert(root.canonical_hash(&w.canon));
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
    let before = w.transitions;
    while let Some((id, snap)) = queue.pop_front() {
        w.machine.restore(&snap, &mut w.cache)?;
        for event in w.events()? {
            let mut prefix = Some(Vec::new());
            while let Some(p) = prefix.take() {
                let step = w.step(&snap, 0, event, p)?;
                prefix = step.sibling;
                if step.events.is_none() {
                    let (mut decisions, n) = path(&parents, id);
                    decisions.extend(step.edge.log);
                    let violation = w.violation();
                    let c = Counterexample { decisions, violation, transitions: n + 1, shortest: true };
                    return Ok((Some(c), parents.len() as u64, w.transitions - before));
                }
                if parents.len() as u64 >= max_states || !seen.insert(w.machine.canonical_hash(&w.canon, &mut w.cache)?)
                {
                    continue;
                }
                let next = w.machine.save(&mut w.cache)?;
                parents.push((id, step.edge.log));
                w.report(parents.len() as u64);
                queue.push_back((parents.len() - 1, next));
            }
        }
    }
    Ok((None, parents.len() as u64, w.transitions - before))
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
