//! What the workers of one complete search share (DESIGN.md §2.9, "Parallel search"): the
//! visited table, the pool of donated work, and the verdict so far.
//!
//! - **Visited table.** The set of canonical state hashes, split into [`SHARDS`] independently
//!   locked parts by the hash's low bits, so two workers rarely wait for each other. A state
//!   is stored by exactly one worker: the one whose insert succeeds.
//! - **Work pool.** Work is a path from the initial state (the edges that reach a stored
//!   state), never a machine state: a [`crate::machine::Machine`] and its snapshots stay on the
//!   thread that made them (Unicorn engines are per thread), and a worker reaches donated work
//!   by replaying the path from its own initial state. A worker donates when another one is
//!   idle and the pool cannot feed it; the search ends when every worker is idle and the pool
//!   is empty, or when one of them stops it (a violation, the state limit, an error).

use std::collections::{BTreeSet, HashSet};
use std::hash::BuildHasherDefault;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};

use super::{Counterexample, PassThrough};
use crate::decision::Decision;
use crate::event::Event;
use crate::oracle::ViolationKind;

/// Independently locked parts of the visited table.
const SHARDS: usize = 256;

type HashSet128 = HashSet<u128, BuildHasherDefault<PassThrough>>;

/// One part of the visited table, alone in its cache lines: two workers locking neighbouring
/// parts do not write to the same line.
#[repr(align(128))]
#[derive(Default)]
struct Part(Mutex<HashSet128>);

/// One transition of a path: the event, the choices that select the transition among the
/// event's (enumerated), and the decisions it logged (scheduling picks and choices, for a
/// counterexample).
#[derive(Clone, Debug)]
pub(super) struct Edge {
    pub(super) event: Event,
    pub(super) choices: Vec<u32>,
    pub(super) log: Vec<Decision>,
}

/// A stored state of the breadth-first levels: the path that reached it, its snapshot (which
/// stays on the thread that saved it), its events.
pub(super) type LevelState = (Vec<Edge>, crate::machine::state::Snapshot, Vec<Event>);

/// Whether a stored state explores, once its events are done, the rest of the enabled ones
/// ([`super::worker::Worker::widen`]): a state where a quiet handler step waits explores that
/// step alone, and when it violates while the search goes on for every kind, the other actors'
/// events there are explored too (the state after the step, where they would have been, is
/// never reached). A state widens at most once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Widen {
    /// Nothing out of it violated (yet).
    Not,
    /// A transition out of it violated, searching for every kind: widen when its events are done.
    Due,
    /// Widened already.
    Done,
}

impl Widen {
    /// A transition out of the state violated: widen if the search goes on for every kind.
    pub(super) fn violated(&mut self, all_kinds: bool) {
        if *self == Widen::Not && all_kinds {
            *self = Widen::Due;
        }
    }
}

/// A stored state whose exploration another worker gave away: the path that reaches it.
#[derive(Debug)]
pub(super) struct Work {
    pub(super) path: Vec<Edge>,
}

#[derive(Default)]
struct Pool {
    items: Vec<Work>,
    idle: usize,
    done: bool,
}

/// Locks `m`; a worker that panicked while holding it has already failed the search.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The state every worker of one search shares.
pub(super) struct Shared {
    workers: usize,
    visited: Vec<Part>,
    states: AtomicU64,
    max_states: u64,
    pool: Mutex<Pool>,
    wake: Condvar,
    idle_hint: AtomicUsize,
    pooled_hint: AtomicUsize,
    stop: AtomicBool,
    kinds: Mutex<BTreeSet<ViolationKind>>,
    found: Mutex<Option<Counterexample>>,
    global_states: Option<Mutex<HashSet<u128>>>,
}

impl Shared {
    pub(super) fn new(workers: usize, max_states: u64, global_states: bool) -> Self {
        Self {
            workers,
            visited: (0..SHARDS).map(|_| Part::default()).collect(),
            states: AtomicU64::new(0),
            max_states,
            pool: Mutex::new(Pool::default()),
            wake: Condvar::new(),
            idle_hint: AtomicUsize::new(0),
            pooled_hint: AtomicUsize::new(0),
            stop: AtomicBool::new(false),
            kinds: Mutex::new(BTreeSet::new()),
            found: Mutex::new(None),
            global_states: global_states.then(|| Mutex::new(HashSet::new())),
        }
    }

    /// Stores `hash` if it is new; returns the number of states stored so far if it was.
    /// Reaching the state limit stops the search.
    /// Never more than the limit: a state past it is not stored, and stops the search.
    pub(super) fn insert(&self, hash: u128) -> Option<u64> {
        // The high bits choose the part; the table inside hashes by the low ones.
        let mut part = lock(&self.visited[(hash >> 120) as usize % SHARDS].0);
        if part.contains(&hash) {
            return None;
        }
        let below = |n: u64| (n < self.max_states).then_some(n + 1);
        let Ok(before) = self.states.fetch_update(Ordering::Relaxed, Ordering::Relaxed, below) else {
            drop(part);
            self.halt();
            return None;
        };
        part.insert(hash);
        drop(part);
        if before + 1 >= self.max_states {
            self.halt();
        }
        Some(before + 1)
    }

    /// States stored.
    pub(super) fn states(&self) -> u64 {
        self.states.load(Ordering::Relaxed)
    }

    /// Records a global state's symmetric hash (soundness tests).
    pub(super) fn note_global(&self, hash: u128) {
        if let Some(set) = &self.global_states {
            lock(set).insert(hash);
        }
    }

    pub(super) fn wants_global_states(&self) -> bool {
        self.global_states.is_some()
    }

    /// True once the search must end early.
    pub(super) fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }

    /// Ends the search: every worker returns at its next check.
    pub(super) fn halt(&self) {
        self.stop.store(true, Ordering::Relaxed);
        lock(&self.pool).done = true;
        self.wake.notify_all();
    }

    /// True if some worker waits and the pool has nothing for it.
    pub(super) fn starving(&self) -> bool {
        self.idle_hint.load(Ordering::Relaxed) > 0 && self.pooled_hint.load(Ordering::Relaxed) == 0
    }

    /// Gives `work` to an idle worker.
    pub(super) fn donate(&self, work: Work) {
        let mut pool = lock(&self.pool);
        pool.items.push(work);
        self.pooled_hint.store(pool.items.len(), Ordering::Relaxed);
        drop(pool);
        self.wake.notify_one();
    }

    /// The next piece of work, waiting while other workers may still donate; `None` when the
    /// search is over.
    pub(super) fn take(&self) -> Option<Work> {
        let mut pool = lock(&self.pool);
        loop {
            if pool.done {
                return None;
            }
            if let Some(work) = pool.items.pop() {
                self.pooled_hint.store(pool.items.len(), Ordering::Relaxed);
                return Some(work);
            }
            pool.idle += 1;
            self.idle_hint.store(pool.idle, Ordering::Relaxed);
            if pool.idle == self.workers {
                pool.done = true;
                self.wake.notify_all();
                return None;
            }
            pool = self.wake.wait(pool).unwrap_or_else(|poisoned| poisoned.into_inner());
            pool.idle -= 1;
            self.idle_hint.store(pool.idle, Ordering::Relaxed);
        }
    }

    /// Records a violation kind and, if it is the first, its counterexample.
    pub(super) fn violated(&self, c: Counterexample) {
        lock(&self.kinds).insert(c.violation.kind);
        let mut found = lock(&self.found);
        if found.is_none() {
            *found = Some(c);
        }
    }

    /// Every state stored, by canonical hash, ascending.
    pub(super) fn hashes(&self) -> Vec<u128> {
        let mut all: Vec<u128> =
            self.visited.iter().flat_map(|part| lock(&part.0).iter().copied().collect::<Vec<_>>()).collect();
        all.sort_unstable();
        all
    }

    /// The verdict: every kind found, the first counterexample, the global states.
    pub(super) fn take_verdict(&self) -> (BTreeSet<ViolationKind>, Option<Counterexample>, Option<HashSet<u128>>) {
        let global = self.global_states.as_ref().map(|g| std::mem::take(&mut *lock(g)));
        (std::mem::take(&mut *lock(&self.kinds)), lock(&self.found).take(), global)
    }
}
