//! Bounded exhaustive search (DESIGN.md §2.9): a stateless depth-first search over every
//! decision of a run — which event runs next *and* which store epoch a stale fetch shows —
//! re-executing the scenario from the start for each path, as loom and CHESS do.
//!
//! - **Bound.** Preemption bounding (CHESS, Musuvathi and Qadeer 2007) extended to the fetch
//!   model: the default is to keep running the actor that ran last (its pending IPI first);
//!   switching away from an actor that could continue is a *preemption* and costs one, while
//!   switching when it cannot (it waits for acknowledgements, or its guest has finished) is
//!   free, and so is a vCPU running instructions before taking its pending IPI (its own
//!   timing); a fetch's default is the newest epoch, and showing an older one costs one. One
//!   preemption or one stale fetch therefore costs exactly one. The
//!   search explores every path of cost at most `bound`. It is meant for finite guests
//!   (`max_iterations`): "no violation within bound" then means no run with at most `bound`
//!   preemptions plus stale choices — anywhere in the run — violates.
//! - **Reduction.** Sleep sets (Godefroid 1996) over an independence relation: a guest step
//!   that fetches no patched byte, does not trap and touches no patching state (it reads
//!   unpatched text and writes only its own registers, stack and counters) commutes with every
//!   event of another actor. After exploring event `a` at a node, `a` sleeps in the subtrees
//!   of its later siblings for as long as only events independent of it run, and the search
//!   does not branch to a sleeping event (that order was explored in the sibling's subtree).
//!   Runs still take their defaults, so the reduced search explores a subset of the unreduced
//!   one's runs; `tests/` checks that both reach the same verdicts on small scenarios.
//!
//! The driver ([`Dfs`]) keeps the decision stack between runs; each run's scheduler
//! ([`DfsScheduler`]) replays the forced prefix, then chooses defaults and records the
//! branching points.

use std::collections::BTreeMap;

use super::{actor, Probe, Scheduler};
use crate::config::{MAX_ACTORS, MAX_CPUS};
use crate::decision::{Decision, Decisions};
use crate::event::Event;

/// A scheduling node recorded by a run.
#[derive(Clone, Debug)]
pub struct SchedNode {
    /// The enabled events, canonical order.
    pub events: Vec<Event>,
    /// Locality of each enabled event.
    pub local: Vec<bool>,
    /// The sleep set at this node.
    pub sleep: Vec<Event>,
    /// The default choice here.
    pub default: u32,
    /// What each choice costs against the bound (0 or 1).
    pub cost: Vec<u8>,
}

fn independent(a: Event, a_local: bool, b: Event, b_local: bool) -> bool {
    actor(a, MAX_CPUS) != actor(b, MAX_CPUS) && (a_local || b_local)
}

/// The scheduler of one run of the search.
#[derive(Debug)]
pub struct DfsScheduler {
    reduce: bool,
    last: Option<usize>,
    sleep: Vec<(Event, bool)>,
    started: bool,
    /// Scheduling nodes by decision index.
    pub nodes: BTreeMap<usize, SchedNode>,
    /// True if the run was cut because every enabled event was asleep.
    pub pruned: bool,
    /// Events run per actor (vCPUs by index, then patching client k at `MAX_CPUS + k`).
    progress: Vec<u64>,
}

impl DfsScheduler {
    /// A scheduler for one run; `initial_sleep` is the sleep set where the forced prefix ends.
    pub fn new(reduce: bool, initial_sleep: Vec<(Event, bool)>) -> Self {
        Self {
            reduce,
            last: None,
            sleep: initial_sleep,
            started: false,
            nodes: BTreeMap::new(),
            pruned: false,
            progress: vec![0; MAX_ACTORS],
        }
    }
}

impl Scheduler for DfsScheduler {
    fn pick(&mut self, _tick: u64, enabled: &[Event], decisions: &mut Decisions) -> usize {
        decisions.decide(enabled.len(), 0)
    }

    fn pick_with(
        &mut self,
        _tick: u64,
        enabled: &[Event],
        probe: &dyn Probe,
        decisions: &mut Decisions,
    ) -> Option<usize> {
        let index = decisions.log().len();
        let cpus = MAX_CPUS;
        let local: Vec<bool> = enabled.iter().map(|&e| probe.is_local(e)).collect();
        let pick = self.choose(enabled, &local, index, cpus, decisions);
        if let Some(c) = pick {
            self.progress[actor(enabled[c], cpus)] += 1;
        }
        pick
    }
}

impl DfsScheduler {
    fn choose(
        &mut self,
        enabled: &[Event],
        local: &[bool],
        index: usize,
        cpus: usize,
        decisions: &mut Decisions,
    ) -> Option<usize> {
        if decisions.forced() {
            let c = decisions.decide(enabled.len(), 0);
            if !matches!(enabled[c], Event::IpiDeliver(_)) {
                self.last = Some(actor(enabled[c], cpus));
            }
            return Some(c);
        }
        // Sleeping events must still be enabled; an actor whose event changed is awake.
        let awake_sleep: Vec<(Event, bool)> = self.sleep.iter().copied().filter(|(e, _)| enabled.contains(e)).collect();
        // An IPI commutes with its vCPU's local steps, so delivering it before a local step
        // is the same as delivering it at the vCPU's next non-local step (or when it stops):
        // that choice is not offered.
        let guest_local = |a: usize| enabled.iter().zip(local).any(|(&e, &l)| e == Event::GuestStep(a) && l);
        let excluded: Vec<bool> =
            enabled.iter().map(|&e| matches!(e, Event::IpiDeliver(a) if guest_local(a))).collect();
        // Default: the least-progressed actor's event, a pending IPI before the vCPU's next
        // (non-local) instruction. The default never depends on the sleep set, so the reduced
        // search explores a subset of the runs of the unreduced one.
        let runs_on = self.last.filter(|&a| enabled.iter().any(|&e| actor(e, cpus) == a));
        let preferred = (0..enabled.len())
            .filter(|&i| !excluded[i])
            .min_by_key(|&i| {
                let guest = matches!(enabled[i], Event::GuestStep(_));
                let other = runs_on.is_some_and(|a| actor(enabled[i], cpus) != a);
                (other, self.progress[actor(enabled[i], cpus)], guest, i)
            })
            .expect("some event is offered");
        // Leaving an actor that could go on is a preemption and costs one; when the last actor
        // cannot go on, choosing whom to run next is free, and so is whether a vCPU takes its
        // pending IPI before or after its next instruction (the IPI is asynchronous). One
        // preemption, or one stale fetch, therefore costs exactly one.
        let cost: Vec<u8> = enabled
            .iter()
            .enumerate()
            .map(|(i, &e)| match excluded[i] {
                true => u8::MAX,
                false => (i != preferred && runs_on.is_some_and(|r| r != actor(e, cpus))) as u8,
            })
            .collect();
        self.started = true;
        let choice = decisions.decide(enabled.len(), preferred);
        if enabled.len() > 1 {
            self.nodes.insert(
                index,
                SchedNode {
                    events: enabled.to_vec(),
                    local: local.to_vec(),
                    sleep: awake_sleep.iter().map(|(e, _)| *e).collect(),
                    default: preferred as u32,
                    cost,
                },
            );
        }
        let (c, c_local) = (enabled[choice], local[choice]);
        // Taking an IPI interrupts a vCPU; it does not make it the running actor.
        if !matches!(c, Event::IpiDeliver(_)) {
            self.last = Some(actor(c, cpus));
        }
        self.sleep = awake_sleep.into_iter().filter(|&(e, l)| independent(e, l, c, c_local)).collect();
        Some(choice)
    }
}

/// One branching point of the search stack.
#[derive(Clone, Debug)]
struct Frame {
    of: u32,
    chosen: u32,
    /// Cost of each choice (scheduling: preemptions; fetch: all but the newest cost one).
    cost: Vec<u8>,
    tried: Vec<u32>,
    sched: Option<SchedNode>,
    /// For a fetch frame: the sleep set the run carried there (that of the next scheduling
    /// node; a fetch choice does not change which event ran).
    carry: Vec<(Event, bool)>,
}

/// The depth-first driver.
#[derive(Debug, Default)]
pub struct Dfs {
    frames: Vec<Frame>,
    /// Runs executed.
    pub executions: u64,
    /// Runs cut by the reduction.
    pub pruned: u64,
}

/// What the next run must follow.
#[derive(Clone, Debug)]
pub struct NextRun {
    /// Forced choices.
    pub prefix: Vec<u32>,
    /// Sleep set where the prefix ends.
    pub sleep: Vec<(Event, bool)>,
}

impl Dfs {
    /// The first run: no prefix.
    pub fn first() -> NextRun {
        NextRun { prefix: Vec::new(), sleep: Vec::new() }
    }

    /// Records a finished run (its decision log and the scheduler's nodes) and returns the
    /// next run to execute, or `None` when the bounded tree is exhausted.
    pub fn next(&mut self, log: &[Decision], sched: &DfsScheduler, bound: usize) -> Option<NextRun> {
        self.executions += 1;
        self.pruned += sched.pruned as u64;
        // Extend the stack with this run's branching points beyond the forced prefix.
        for (i, d) in log.iter().enumerate().skip(self.frames.len()) {
            let node = sched.nodes.get(&i).cloned();
            let cost = match &node {
                Some(n) => n.cost.clone(),
                None => (0..d.of).map(|c| (c != d.of - 1) as u8).collect(),
            };
            let carry = match &node {
                Some(_) => Vec::new(),
                None => sched
                    .nodes
                    .range(i + 1..)
                    .next()
                    .map(|(_, n)| {
                        n.sleep
                            .iter()
                            .map(|e| (*e, n.events.iter().position(|x| x == e).is_some_and(|j| n.local[j])))
                            .collect()
                    })
                    .unwrap_or_default(),
            };
            self.frames.push(Frame { of: d.of, chosen: d.choice, cost, tried: vec![d.choice], sched: node, carry });
        }
        // Backtrack to the deepest frame with an untried, awake alternative within the bound.
        let mut cost: usize = self.frames.iter().map(|f| f.cost[f.chosen as usize] as usize).sum();
        while let Some(f) = self.frames.last_mut() {
            cost -= f.cost[f.chosen as usize] as usize;
            let alternative = (0..f.of).find(|c| {
                cost + f.cost[*c as usize] as usize <= bound
                    && !f.tried.contains(c)
                    && f.sched.as_ref().is_none_or(|n| !(sched.reduce && n.sleep.contains(&n.events[*c as usize])))
            });
            let Some(c) = alternative else {
                self.frames.pop();
                continue;
            };
            f.tried.push(c);
            f.chosen = c;
            let sleep = match &f.sched {
                Some(n) if sched.reduce => {
                    // Siblings explored before `c`, and what already slept here, keep sleeping
                    // in `c`'s subtree while independent of it.
                    let (ce, cl) = (n.events[c as usize], n.local[c as usize]);
                    let mut s: Vec<(Event, bool)> = Vec::new();
                    for (i, e) in n.events.iter().enumerate() {
                        let earlier = f.tried[..f.tried.len() - 1].contains(&(i as u32));
                        if (earlier || n.sleep.contains(e)) && independent(*e, n.local[i], ce, cl) {
                            s.push((*e, n.local[i]));
                        }
                    }
                    s
                }
                Some(_) => Vec::new(),
                None => f.carry.clone(),
            };
            let prefix = self.frames.iter().map(|f| f.chosen).collect();
            return Some(NextRun { prefix, sleep });
        }
        None
    }
}
