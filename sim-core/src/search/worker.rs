//! One worker of a complete search (DESIGN.md §2.9): a depth-first search on a machine of its
//! own, over the states the shared visited table has not seen, taking work from the pool and
//! giving some away when another worker is idle ([`super::shared`]).
//!
//! A transition restores the machine to the stored state it leaves from, unless the machine
//! is still in that state (the first transition out of a state just stored), and runs one
//! event with the choices the odometer ([`super::next_sibling`]) selects.

use super::shared::{Edge, LevelState, Shared, Widen, Work};
use super::{next_sibling, Counterexample, Options};
use crate::decision::Decisions;
use crate::event::Event;
use crate::machine::state::{Canon, SaveCache, Snapshot};
use crate::machine::Machine;
use crate::oracle::Violation;
use crate::SimError;

/// One stored state on the depth-first stack and where its exploration stands.
struct Frame {
    snap: Snapshot,
    /// Identifies the state among this worker's frames (the machine may still hold it).
    serial: u64,
    events: Vec<Event>,
    next_event: usize,
    /// The choice prefix of the next transition of the current event (`None`: all done).
    prefix: Option<Vec<u32>>,
    /// The transition that reached this state (`None` for the state the work starts at).
    edge: Option<Edge>,
    /// Whether to explore the rest of the enabled events once its own are done.
    widen: Widen,
}

/// What one transition did.
pub(super) struct Step {
    pub(super) sibling: Option<Vec<u32>>,
    pub(super) edge: Edge,
    /// `None`: the transition (or the state it reached) violated.
    pub(super) events: Option<Vec<Event>>,
}

/// A machine searching, and what it remembers between transitions.
pub(super) struct Worker<'a> {
    pub(super) machine: &'a mut Machine,
    /// What saving and hashing the machine's states remembers between calls.
    pub(super) cache: SaveCache,
    pub(super) canon: Canon,
    /// Canonical hashing with symmetry as far as the scenario allows (for global states).
    sym_canon: Canon,
    opts: Options,
    shared: &'a Shared,
    /// The machine's initial state (donated work starts from it).
    root: Snapshot,
    /// Transitions run (not counting replayed paths).
    pub(super) transitions: u64,
    /// Called with the number of states stored, now and then (the first worker only).
    progress: Option<&'a dyn Fn(u64)>,
    reported: u64,
    /// The serial of the frame whose state the machine holds, if it holds one.
    at: Option<u64>,
    serials: u64,
    /// Stored states left to this worker by the breadth-first levels ([`super::split`]),
    /// searched in the frontier's order (the first is where a depth-first search from the
    /// initial state would go first) before any work from the pool, and given away from the
    /// back.
    pub(super) local: std::collections::VecDeque<LevelState>,
}

impl<'a> Worker<'a> {
    pub(super) fn new(
        machine: &'a mut Machine,
        opts: Options,
        shared: &'a Shared,
        progress: Option<&'a dyn Fn(u64)>,
    ) -> Result<Self, SimError> {
        let sym_canon = machine.canon();
        let mut canon = sym_canon.clone();
        canon.symmetric &= opts.symmetry;
        let mut cache = SaveCache::default();
        let root = machine.save(&mut cache)?;
        Ok(Self {
            machine,
            cache,
            canon,
            sym_canon,
            opts,
            shared,
            root,
            transitions: 0,
            progress,
            reported: 0,
            at: None,
            serials: 0,
            local: std::collections::VecDeque::new(),
        })
    }

    /// Reports `states` to the progress callback, if this worker has one, every 4096 states.
    pub(super) fn report(&mut self, states: u64) {
        if let Some(progress) = self.progress.filter(|_| states.abs_diff(self.reported) >= 4096) {
            self.reported = states;
            progress(states);
        }
    }

    /// True if the search goes on past violations.
    pub(super) fn all_kinds(&self) -> bool {
        self.opts.all_kinds
    }

    /// The initial state.
    pub(super) fn root(&self) -> &Snapshot {
        &self.root
    }

    /// Explores the states left to it, then work from the pool, until the search is over;
    /// stops the search on an error.
    pub(super) fn run(&mut self) -> Result<(), SimError> {
        while !self.shared.stopped() {
            let explored = match self.local.pop_front() {
                Some((path, snap, events)) => {
                    let frame = self.frame(snap, events, None);
                    self.dfs(path, frame)
                }
                None => match self.shared.take() {
                    Some(work) => self.explore(work),
                    None => return Ok(()),
                },
            };
            if let Err(e) = explored {
                self.shared.halt();
                return Err(e);
            }
        }
        Ok(())
    }

    /// A new frame for a stored state (not the machine's current one).
    fn frame(&mut self, snap: Snapshot, events: Vec<Event>, edge: Option<Edge>) -> Frame {
        let serial = self.serial();
        Frame { snap, serial, events, next_event: 0, prefix: Some(Vec::new()), edge, widen: Widen::Not }
    }

    /// Reaches the work's state by replaying its path from the initial state (it is stored
    /// already), then searches depth-first from it.
    fn explore(&mut self, work: Work) -> Result<(), SimError> {
        self.machine.restore(&self.root, &mut self.cache)?;
        for e in &work.path {
            let mut d = Decisions::enumerate(e.choices.clone());
            self.machine.transition(e.event, &mut d, self.opts.merging())?;
        }
        let snap = self.machine.save(&mut self.cache)?;
        let events = self.events()?;
        let frame = self.frame(snap, events, None);
        self.at = Some(frame.serial);
        self.dfs(work.path, frame)
    }

    /// The events to explore from the machine's current state ([`Machine::search_events`]).
    pub(super) fn events(&mut self) -> Result<Vec<Event>, SimError> {
        self.machine.search_events(self.opts.merge_local, &self.canon, &mut self.cache)
    }

    /// The events enabled in the stored state `snap` (frame `serial`, 0 for none) beyond
    /// `explored`, the first time its exploration is due to widen ([`Widen`]); `None` if it is
    /// not, or there are none.
    pub(super) fn widen(
        &mut self,
        widen: &mut Widen,
        snap: &Snapshot,
        serial: u64,
        explored: &[Event],
    ) -> Result<Option<Vec<Event>>, SimError> {
        if *widen != Widen::Due {
            return Ok(None);
        }
        *widen = Widen::Done;
        self.reach(snap, serial)?;
        self.at = (serial != 0).then_some(serial);
        let all = self.machine.search_events(false, &self.canon, &mut self.cache)?;
        let rest: Vec<Event> = all.into_iter().filter(|e| !explored.contains(e)).collect();
        Ok((!rest.is_empty()).then_some(rest))
    }

    /// Brings the machine to the stored state `snap` (frame `serial`, 0 for none), unless it
    /// holds it already.
    fn reach(&mut self, snap: &Snapshot, serial: u64) -> Result<(), SimError> {
        if serial == 0 || self.at != Some(serial) {
            self.machine.restore(snap, &mut self.cache)?;
        }
        Ok(())
    }

    fn serial(&mut self) -> u64 {
        self.serials += 1;
        self.serials
    }

    /// Stores the machine's current state if new: its canonical hash, and (for soundness
    /// tests) whether it is a global state. Returns its snapshot if it was not seen before.
    pub(super) fn store(&mut self, events: &[Event]) -> Result<Option<Snapshot>, SimError> {
        let h = self.machine.canonical_hash(&self.canon, &mut self.cache)?;
        let Some(n) = self.shared.insert(h) else { return Ok(None) };
        self.report(n);
        if self.shared.wants_global_states() && !events.iter().any(|&e| self.machine.merges(e)) {
            self.shared.note_global(self.machine.canonical_hash(&self.sym_canon, &mut self.cache)?);
        }
        Ok(Some(self.machine.save(&mut self.cache)?))
    }

    /// Runs one transition from `snap` (whose frame serial is `serial`, 0 for none); returns
    /// its decisions and, if none of the oracles objected, the enabled events of the state it
    /// reached.
    pub(super) fn step(
        &mut self,
        snap: &Snapshot,
        serial: u64,
        event: Event,
        prefix: Vec<u32>,
    ) -> Result<Step, SimError> {
        self.reach(snap, serial)?;
        self.at = None;
        let mut d = Decisions::enumerate(prefix);
        self.machine.transition(event, &mut d, self.opts.merging())?;
        self.transitions += 1;
        let sibling = next_sibling(d.enumerated());
        let choices = d.enumerated().iter().map(|x| x.choice).collect();
        let edge = Edge { event, choices, log: d.into_log() };
        if self.machine.violation().is_some() {
            return Ok(Step { sibling, edge, events: None });
        }
        let events = self.events()?;
        if self.machine.check_deadlock() {
            return Ok(Step { sibling, edge, events: None });
        }
        Ok(Step { sibling, edge, events: Some(events) })
    }

    pub(super) fn violation(&self) -> Violation {
        self.machine.violation().cloned().expect("a violation was reported")
    }

    /// Depth-first search from `root`, reached by `base`.
    fn dfs(&mut self, base: Vec<Edge>, root: Frame) -> Result<(), SimError> {
        let mut stack = vec![root];
        while let Some(top) = stack.last_mut() {
            if self.shared.stopped() {
                return Ok(());
            }
            let Some(&event) = top.events.get(top.next_event) else {
                if let Some(rest) = self.widen(&mut top.widen, &top.snap, top.serial, &top.events)? {
                    (top.events, top.next_event, top.prefix) = (rest, 0, Some(Vec::new()));
                } else {
                    stack.pop();
                }
                continue;
            };
            let Some(prefix) = top.prefix.take() else {
                top.next_event += 1;
                top.prefix = Some(Vec::new());
                continue;
            };
            let (snap, serial) = (&top.snap, top.serial);
            let step = self.step(snap, serial, event, prefix)?;
            if let Some(top) = stack.last_mut() {
                top.prefix = step.sibling;
            }
            let Some(events) = step.events else {
                self.violated(&base, &stack, step.edge);
                if let Some(top) = stack.last_mut() {
                    top.widen.violated(self.opts.all_kinds);
                }
                continue;
            };
            let Some(snap) = self.store(&events)? else { continue };
            let frame = self.frame(snap, events, Some(step.edge));
            self.at = Some(frame.serial);
            if self.shared.starving() {
                // Another worker waits: give it a state of the levels, else this one.
                if let Some((path, _, _)) = self.local.pop_back() {
                    self.shared.donate(Work { path });
                } else if stack.len() >= 2 {
                    self.shared.donate(Work { path: path(&base, &stack, frame.edge.clone()) });
                    continue;
                }
            }
            stack.push(frame);
        }
        Ok(())
    }

    /// Reports the violation the transition `edge` out of the stack's top reached.
    fn violated(&self, base: &[Edge], stack: &[Frame], edge: Edge) {
        let violation = self.violation();
        let edges = path(base, stack, Some(edge));
        let decisions = edges.iter().flat_map(|e| e.log.iter().copied()).collect();
        let c = Counterexample { decisions, violation, transitions: edges.len(), shortest: false };
        self.shared.violated(c);
        if !self.opts.all_kinds {
            self.shared.halt();
        }
    }
}

/// The edges from the initial state through `base` and the stack to the end of `last`.
fn path(base: &[Edge], stack: &[Frame], last: Option<Edge>) -> Vec<Edge> {
    let mut edges = base.to_vec();
    edges.extend(stack.iter().filter_map(|f| f.edge.clone()));
    edges.extend(last);
    edges
}
