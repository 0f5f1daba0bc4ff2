//! A hardware session: a scenario's INT3 protocol on the host's real CPUs
//! (docs/reference/hardware.md §11). Its guests are the workload's machine code on pinned host
//! threads. Its patching client and INT3 handler have two faces, one session around both:
//!
//! - **the model** (a Rust protocol version): the patching clients are `sim_core::Patcher` —
//!   the very step machines the simulator runs, each operation named for the kernel statement
//!   of `text_poke_bp_batch()` / `smp_text_poke_batch_finish()` it mirrors — stepped by a host
//!   thread, and the INT3 handler is `sim_core::Handler` — the version's `poke_int3_handler()`
//!   / `smp_text_poke_int3_handler()` and `kprobe_int3_handler()` — run from the guests'
//!   `SIGTRAP` handler against the signal context, as `do_int3()` runs it against `pt_regs`.
//!   Both are driven through `sim_core::driver`, the simulator's own rules for what a patcher
//!   step and a handler micro-step do (`driver::Client`, `driver::Activation`);
//! - **the C** (a protocol compiled from C, DESIGN.md §2.15): the linked image runs natively,
//!   its patcher calls on a host thread and its handler from the guests' `SIGTRAP` handler on
//!   a real `struct pt_regs`, its kernel services carried out on the hardware (`native`).
//!
//! This module turns what either did into stores on the hardware and tallies: the round loop,
//! the stores, the sync broadcast, the events and the report are the same for both.
//!
//! The data model is the simulator's (DESIGN.md §2.3): the patching state, the text as the
//! patcher wrote it and the workload's invariant live behind one lock, and each patcher step
//! and each handler micro-step takes it (the C's own data is real shared memory, ordered only
//! by its atomics, as in the kernel). The hardware decides only what the simulator's fetch
//! model stands for: what a CPU fetches from code another CPU is rewriting.
//!
//! Each effect is carried out on the hardware: a store → the same bytes through the text's
//! writable alias, one store of their width; a sync broadcast (`text_poke_sync()`) →
//! `membarrier` SYNC_CORE, then a wait until every guest that was inside its INT3 handler has
//! left it (the kernel's IPI waits for a handler running with interrupts off), then every vCPU
//! acknowledges.
//!
//! What the hardware shows, per oracle that can be observed there: a guest fault (`SIGILL`,
//! `SIGSEGV`, `SIGBUS`, a trap nobody expects — what a torn instruction raises), an INT3 the
//! handlers decline (unclaimed), a handler fault (a freed or NULL descriptor, a read past the
//! vector, `BUG()`), and the workload's invariant, checked at the loop head of a guest stopped
//! there by single-stepping ([`crate::guest::Guests::checkpoint`]). Each is recorded with its
//! round, the patcher's operation and the bytes, and the vCPU restarts with its counters reset;
//! the session goes on. A session is not a deterministic run: the hardware interleaves.

mod native;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use cpu_model::{Regs, SharedRegion, StoreGranularity};
use sim_core::driver::{self, Activation, Applied, Client, Int3Handler, Kernel, PatchingClient};
use sim_core::ipi::Ipi;
use sim_core::oracle::unclaimed;
use sim_core::patcher::{Patcher, PatcherEffect};
use sim_core::patching::{KprobeState, PatchState, PokeArray};
use sim_core::text::TextMemory;
use sim_core::{Invariant, Plan, Round, RunConfig, ViolationKind};

use crate::guest::{signal_name, GuestHooks, GuestReport, Guests, Step};
use crate::{DataMapping, Host, Refusal, TextMapping};

/// Events kept in a report with their details (every one is counted).
pub const MAX_EVENTS: usize = 32;
/// Polls of a wait (for a reference count to drain, a handler to finish) before the session
/// calls it stuck: a bound on work, so that a protocol that never finishes is reported, not
/// waited for.
const MAX_POLLS: u64 = 1 << 26;
/// A native call of compiled C that makes no progress this long (no kernel service called, no
/// return) is stuck: a watchdog aborts it (liveness).
pub const NATIVE_STUCK: Duration = native::STUCK;

/// How long a session runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// Patch rounds (batches of the workload's patching client) to run; the script repeats
    /// from its initial image until there are this many.
    pub rounds: u64,
    /// Stop after this long even if fewer rounds ran.
    pub time: Option<Duration>,
    /// Ask every guest to check the workload invariant at its loop head every this many rounds.
    pub check_every: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Self { rounds: 10_000, time: None, check_every: 16 }
    }
}

/// One violation seen on the hardware.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HwEvent {
    /// The oracle's kind.
    pub kind: ViolationKind,
    /// The vCPU (guest thread).
    pub cpu: usize,
    /// The session's patch round in progress (1-based), or the drain once its last round
    /// returned and the guests run on until they are stopped.
    pub round: Round,
    /// The workload's patcher operation in progress (`poke-int3`, `sync`, …).
    pub phase: &'static str,
    /// The instruction address it concerns.
    pub addr: u64,
    /// The signal, for a guest fault.
    pub signal: Option<i32>,
    /// The text as the patcher last wrote it, from `addr` (up to 8 bytes; empty outside it).
    pub written: Vec<u8>,
    /// What the executable view holds there when the event was recorded.
    pub fetched: Vec<u8>,
    /// The oracle's explanation.
    pub message: String,
}

/// What a session did and saw.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HwReport {
    /// Patch rounds completed.
    pub rounds: u64,
    /// Times the script ran from its initial image.
    pub passes: u64,
    /// Stores to the text.
    pub stores: u64,
    /// `text_poke_sync()`s (membarrier SYNC_CORE).
    pub syncs: u64,
    /// INT3 traps taken by guests.
    pub traps: u64,
    /// Traps the handler emulated.
    pub emulated: u64,
    /// Traps a kprobe took.
    pub kprobe_hits: u64,
    /// Invariant checks at a loop head.
    pub checks: u64,
    /// Violations by kind, in [`ViolationKind::ALL`] order, zero counts left out.
    pub violations: Vec<(ViolationKind, u64)>,
    /// The first [`MAX_EVENTS`] violations, and after them the first of each kind not among
    /// them (so a rarer kind — the `BUG()` that ended the session — is never lost behind a
    /// flood of another).
    pub events: Vec<HwEvent>,
    /// Each guest thread's own account.
    pub guests: Vec<GuestReport>,
    /// Why the session stopped before its limits, if it did.
    pub stopped: Option<String>,
    /// Why the session, having seen no violation, established nothing: no round completed, a
    /// round did not finish within the whole time budget, or the guests never met an INT3
    /// the script wrote (the window the protocol guards was never exercised). `None` when it
    /// saw a violation.
    pub no_verdict: Option<String>,
    /// Wall time.
    pub elapsed: Duration,
}

impl HwReport {
    /// All violations.
    pub fn total_violations(&self) -> u64 {
        self.violations.iter().map(|(_, n)| n).sum()
    }
}

/// What the lock guards: the simulator's shared data.
struct Shared {
    state: PatchState,
    text: TextMemory,
    ipi: Ipi,
    invariant: Box<dyn Invariant + Send>,
    data: SharedRegion,
    /// The session's round in progress (1-based).
    round: u64,
    /// Set once the session's last round has returned.
    drained: bool,
    /// The workload's patching client's operation in progress ([`HwEvent::phase`]).
    op: &'static str,
    tally: Tally,
}

// SAFETY: the `Rc`s inside the patching state were allocated for it alone (`own_state`), and
// every access to it — the patcher's steps, the handlers' micro-steps — holds the session's
// lock and keeps no `Rc` handle beyond the step; the rest is owned data (the data region by its
// own `Send`).
unsafe impl Send for Shared {}

#[derive(Default)]
struct Tally {
    traps: u64,
    emulated: u64,
    kprobe_hits: u64,
    checks: u64,
    violations: [u64; ViolationKind::ALL.len()],
    events: Vec<HwEvent>,
}

/// How the session patches and handles INT3s.
enum Face {
    /// `sim_core::Patcher` and `sim_core::Handler` through the driver.
    Model,
    /// The compiled protocol's own code, natively.
    Native(native::Native),
}

/// The session as the guests' hooks and the patcher thread see it.
struct Session<'a> {
    shared: Mutex<Shared>,
    /// The run's configuration (the handler's version, mutants and `CONFIG_KPROBES`).
    config: RunConfig,
    text: &'a TextMapping,
    loop_head: u64,
    /// The first patched site (where an invariant violation's bytes are shown).
    site: u64,
    /// The guests' data, read for their iteration counters.
    data: &'a DataMapping,
    /// Each vCPU's iteration counter (the first of its counter block, which the standard loop
    /// head increments).
    iterations: Vec<u64>,
    /// Per vCPU, INT3 handler activations started and finished (one is in progress while they
    /// differ).
    entries: Vec<AtomicU64>,
    exits: Vec<AtomicU64>,
    /// The patching face: the model's step machines, or the compiled file natively.
    face: Face,
    /// A violation off the patcher thread that leaves nothing to go on with (an INT3 handler
    /// of compiled C that never returned): the patcher's waits end the session with it.
    halted: std::sync::OnceLock<String>,
    /// The patched sites and kprobes: where a store of an INT3 opens the protocol's window.
    int3_sites: Vec<u64>,
    limits: Limits,
    started: Instant,
    /// When the round in progress started, in nanoseconds after `started`.
    round_started: AtomicU64,
    /// Told the rounds completed so far (at every round's end).
    progress: &'a (dyn Fn(u64) + Sync),
}

/// Runs `plan`'s protocol on `host`'s CPUs within `limits`: the patcher on the first CPU, one
/// guest thread per vCPU on the others. Refuses (with the reason) a host that cannot, a script
/// that cannot repeat, and a guest that misbehaves by itself ([`crate::dryrun`]).
pub fn run(plan: Plan, host: &Host, limits: &Limits) -> Result<HwReport, Refusal> {
    run_with_progress(plan, host, limits, &|_| {})
}

/// [`run`], telling `progress` the rounds completed at the end of every round.
pub fn run_with_progress(
    mut plan: Plan,
    host: &Host,
    limits: &Limits,
    progress: &(dyn Fn(u64) + Sync),
) -> Result<HwReport, Refusal> {
    let images = script_images(&plan)?;
    crate::dryrun::check(&plan, &images, guest_cpus(host))?;
    let face = match &plan.config.compiled {
        Some(c) => Face::Native(native::Native::new(c, &plan, images)?),
        None => Face::Model,
    };
    let l = plan.image.layout;
    let text_map = TextMapping::new(l.text_base, &plan.image.text)?;
    let data_map = DataMapping::new(l.data_base, l.data_len as usize)?;
    let invariant = std::mem::replace(&mut plan.image.invariant, Box::new(Unchecked));
    let config = &plan.config;
    let shared = Shared {
        state: own_state(&plan),
        text: TextMemory::new(&l, plan.image.text.clone()),
        ipi: Ipi::new(config.cpus),
        invariant,
        // SAFETY: the region is dropped with the session, before `data_map` (declared
        // earlier, dropped later); only the lock holder and guest code touch the memory.
        data: unsafe { data_map.shared_region() },
        round: 1,
        drained: false,
        op: "start",
        tally: Tally::default(),
    };
    let session = Session {
        shared: Mutex::new(shared),
        config: config.clone(),
        text: &text_map,
        loop_head: plan.image.loop_head,
        site: first_site(&plan).unwrap_or(plan.image.loop_head),
        data: &data_map,
        iterations: plan.image.cpu_data.iter().map(|d| d.counters.0).collect(),
        entries: (0..config.cpus).map(|_| AtomicU64::new(0)).collect(),
        halted: std::sync::OnceLock::new(),
        exits: (0..config.cpus).map(|_| AtomicU64::new(0)).collect(),
        face,
        int3_sites: plan
            .arrays
            .iter()
            .flat_map(|a| a.locs.iter().map(|l| l.addr))
            .chain(plan.kprobes.iter().map(|k| k.addr))
            .collect(),
        limits: *limits,
        started: Instant::now(),
        round_started: AtomicU64::new(0),
        progress,
    };
    let (patched, guests) = session.run(&plan, host);
    let outcome = patched?;
    if let Some(g) = guests.iter().find(|g| !g.ran) {
        return Err(Refusal::Guard(format!("a guest thread could not install its seccomp guard or FS/GS slot: {g:?}")));
    }
    let elapsed = session.started.elapsed();
    let shared = session.shared.into_inner().unwrap_or_else(|e| e.into_inner());
    Ok(report(shared.tally, outcome, guests, elapsed))
}

/// The CPUs the guest threads run on: every one but the patcher's.
fn guest_cpus(host: &Host) -> &[usize] {
    if host.cpus.len() > 1 {
        &host.cpus[1..]
    } else {
        &host.cpus[..]
    }
}

/// The text images the script passes through, at the start and at the end of each of its
/// batches (the workload's patching client's), in order — the old and the new image of every
/// round, which [`crate::dryrun`] runs alone. Refuses a script that does not bring the text
/// back to its initial image: a session repeats it from there. Runs the patching clients to
/// their end on the simulator's text alone (every sync acknowledged at once, no handler in
/// flight).
pub fn script_images(plan: &Plan) -> Result<Vec<Vec<u8>>, Refusal> {
    let (mut state, mut ipi) = (own_state(plan), Ipi::new(plan.config.cpus));
    let l = plan.image.layout;
    let mut text = TextMemory::new(&l, plan.image.text.clone());
    let data = SharedRegion::new(l.data_base, l.data_len);
    let (base, len) = (l.text_base, plan.image.text.len());
    let mut images = vec![plan.image.text.clone()];
    for (k, mut p) in model_clients(plan).into_iter().enumerate() {
        while !p.done() {
            if !p.enabled(&ipi, &state) {
                return Err(Refusal::Program(format!(
                    "patching client {k} blocks with no guest running ({:?})",
                    p.waiting()
                )));
            }
            match p.step(&mut Kernel {
                state: &mut state,
                text: &mut text,
                ipi: &mut ipi,
                data: &data,
                c: None,
                sites: &[],
            }) {
                PatcherEffect::Fault(message) => {
                    return Err(Refusal::Program(format!("its patcher faults: {message}")))
                }
                PatcherEffect::BatchDone if k == 0 => images.push(text.read(base, len).to_vec()),
                _ => {}
            }
            for c in ipi.waiting_for() {
                ipi.acknowledge(c);
            }
        }
    }
    if text.read(plan.image.layout.text_base, text.initial().len()) != text.initial() {
        return Err(Refusal::Program(format!(
            "its script of {} rounds leaves the text changed, and a campaign repeats it from the initial image \
             (give an even number of rounds)",
            plan.image.batches()
        )));
    }
    Ok(images)
}

/// The plan's patching clients as the model's step machines (also for a protocol compiled
/// from C: the program of its version and mutants, which writes the same images).
fn model_clients(plan: &Plan) -> Vec<Client> {
    let granularity = plan.config.fetch.stores;
    let model = |(k, program): (usize, &Vec<sim_core::program::Op>)| {
        Client::Model(Patcher::new(k, program.clone(), plan.plain.clone(), granularity))
    };
    plan.programs.iter().enumerate().map(model).collect()
}

/// The plan's patching state in allocations of its own: no `Rc` in it is shared with anything
/// outside the lock ([`Shared`]'s `Send`).
fn own_state(plan: &Plan) -> PatchState {
    let arrays = plan.arrays.iter().map(|a| PokeArray::new(a.locs.to_vec(), a.old.to_vec())).collect();
    let kprobes = plan.kprobes.iter().map(|k| KprobeState { insn: k.insn.to_vec().into(), ..k.clone() }).collect();
    PatchState::new(arrays, plan.config.cpus, kprobes)
}

fn first_site(plan: &Plan) -> Option<u64> {
    plan.arrays.first().and_then(|a| a.locs.first()).map(|l| l.addr)
}

fn report(t: Tally, o: Outcome, guests: Vec<GuestReport>, elapsed: Duration) -> HwReport {
    let violations: Vec<(ViolationKind, u64)> =
        ViolationKind::ALL.iter().zip(t.violations).filter(|(_, n)| *n > 0).map(|(k, n)| (*k, n)).collect();
    let c = o.counts;
    let no_verdict = if !violations.is_empty() {
        None
    } else if let Some(why) = o.unfinished {
        Some(why)
    } else if c.rounds == 0 {
        Some("no patch round completed, so the hardware showed nothing about the protocol".to_string())
    } else if c.int3_stores > 0 && t.traps == 0 {
        Some(format!(
            "in {} round(s) no guest ever hit an INT3 the script wrote ({} written): the window the protocol \
             guards was never exercised",
            c.rounds, c.int3_stores
        ))
    } else {
        None
    };
    HwReport {
        rounds: c.rounds,
        passes: c.passes,
        stores: c.stores,
        syncs: c.syncs,
        traps: t.traps,
        emulated: t.emulated,
        kprobe_hits: t.kprobe_hits,
        checks: t.checks,
        violations,
        events: t.events,
        guests,
        stopped: o.stopped,
        no_verdict,
        elapsed,
    }
}

/// Stands in for the invariant moved out of the plan.
struct Unchecked;

impl Invariant for Unchecked {
    fn at_loop_head(&mut self, _: usize, _: &Regs, _: &SharedRegion) -> Result<(), String> {
        Ok(())
    }
    fn reset(&mut self, _: usize, _: &SharedRegion) {}
}

/// How the patcher thread ended.
struct Outcome {
    counts: Counts,
    /// Why it stopped before its limits.
    stopped: Option<String>,
    /// Set when a round was still unfinished after the whole time budget: no verdict.
    unfinished: Option<String>,
}

/// The patcher thread's own counts.
#[derive(Clone, Copy, Debug, Default)]
struct Counts {
    rounds: u64,
    passes: u64,
    stores: u64,
    syncs: u64,
    /// Stores of an INT3 at a site or kprobe.
    int3_stores: u64,
}

/// Why a pass ended early.
enum Stop {
    /// The limits were reached.
    Limit,
    /// A violation that leaves nothing to go on with (recorded as such): the patcher faulted,
    /// or a wait never ended.
    Violation(String),
    /// The host failed (membarrier): no verdict.
    Host(Refusal),
    /// The time budget ran out inside a round, during a wait: what it waited for, and whether
    /// the round had lasted the whole budget (then the session has no verdict: a wait that long
    /// may be the host's scheduling as well as the protocol).
    OutOfTime {
        /// What the patcher waited for.
        waiting: String,
        /// The round lasted the whole budget.
        stuck: bool,
    },
}

impl Session<'_> {
    /// Runs the guests on their CPUs and the patcher on the first one until the limits; with
    /// compiled C, a watchdog beside them aborts a native call that makes no progress (where no
    /// wait of ours polls the time or the session's end) until every guest has left.
    fn run(&self, plan: &Plan, host: &Host) -> (Result<Outcome, Refusal>, Vec<GuestReport>) {
        let l = plan.image.layout;
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            if let Face::Native(n) = &self.face {
                scope.spawn(|| self.watchdog(n, &done));
            }
            let ran = crate::guest::run_guests_with(
                &plan.image.cpu_regs,
                (l.text_base, l.text_base + l.text_len),
                guest_cpus(host),
                self,
                |guests| {
                    crate::guest::pin(host.cpus[0]);
                    self.patch(plan, guests)
                },
            );
            done.store(true, Ordering::Release);
            ran
        })
    }

    fn lock(&self) -> MutexGuard<'_, Shared> {
        self.shared.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The patcher thread: passes of the script until the limits. Returns the counts, and why
    /// it stopped early (a violation with nothing to go on with, or the time budget spent
    /// inside a round); `Err` if the host failed.
    fn patch(&self, plan: &Plan, guests: &Guests<'_>) -> Result<Outcome, Refusal> {
        let mut counts = Counts::default();
        let limits = self.limits;
        let ended = |counts: Counts, stopped| Ok(Outcome { counts, stopped, unfinished: None });
        while counts.rounds < limits.rounds && !self.out_of_time() {
            let passed = match &self.face {
                Face::Model => self.pass(&mut plan.clients(), guests, &mut counts),
                Face::Native(n) => self.native_pass(n, guests, &mut counts),
            };
            match passed {
                Ok(()) => counts.passes += 1,
                Err(Stop::Limit) => break,
                Err(Stop::Violation(why)) => return ended(counts, Some(why)),
                Err(Stop::Host(r)) => return Err(r),
                Err(Stop::OutOfTime { waiting, stuck }) => {
                    let round = counts.rounds + 1;
                    let budget = limits.time.unwrap_or_default().as_secs_f64();
                    let stopped =
                        format!("the time budget ({budget} s) ran out inside round {round}, waiting for {waiting}");
                    let unfinished = stuck.then(|| {
                        format!(
                            "round {round} did not finish within the whole time budget ({budget} s; waiting for \
                             {waiting}): the host's scheduling may hold it up as well as the protocol"
                        )
                    });
                    return Ok(Outcome { counts, stopped: Some(stopped), unfinished });
                }
            }
            let mut g = self.lock();
            // `repeatable` checked this before the session.
            assert_eq!(g.text.read(plan.image.layout.text_base, g.text.initial().len()), g.text.initial());
            g.text.restart();
        }
        // The last round has returned (here or at its `BatchDone`): what the guests do from
        // now until they are stopped is the drain.
        self.lock().drained = true;
        ended(counts, None)
    }

    /// True once the time budget is spent.
    fn out_of_time(&self) -> bool {
        self.limits.time.is_some_and(|t| self.started.elapsed() >= t)
    }

    /// `Err` once the session is halted ([`Session::halted`]).
    fn go_on(&self) -> Result<(), Stop> {
        self.halted.get().map_or(Ok(()), |why| Err(Stop::Violation(why.clone())))
    }

    /// `Err` once the time budget is spent, while waiting for `waiting`.
    fn in_time(&self, waiting: impl FnOnce() -> String) -> Result<(), Stop> {
        let Some(t) = self.limits.time.filter(|_| self.out_of_time()) else { return Ok(()) };
        let round_started = Duration::from_nanos(self.round_started.load(Ordering::Acquire));
        let stuck = self.started.elapsed().saturating_sub(round_started) >= t;
        Err(Stop::OutOfTime { waiting: waiting(), stuck })
    }

    /// One pass of the script: every patching client to its end.
    fn pass(&self, patchers: &mut [Client], guests: &Guests<'_>, counts: &mut Counts) -> Result<(), Stop> {
        let (n, mut next, mut polls) = (patchers.len(), 0, 0u64);
        loop {
            let mut g = self.lock();
            if patchers.iter().all(Client::done) {
                return Ok(());
            }
            let Some(k) = (0..n).map(|j| (next + j) % n).find(|&k| patchers[k].enabled(&g.ipi, &g.state)) else {
                drop(g);
                polls += 1;
                let what = || patchers.iter().find_map(Client::waiting).unwrap_or("text_mutex");
                if polls > MAX_POLLS {
                    return Err(self.stuck(format!("the patcher made no progress in {MAX_POLLS} polls ({})", what())));
                }
                self.in_time(|| what().to_string())?;
                std::thread::yield_now();
                continue;
            };
            (next, polls) = (k + 1, 0);
            g.op = patchers[0].current().map_or("done", |op| op.name());
            let effect = {
                let Shared { state, text, ipi, data, .. } = &mut *g;
                patchers[k].step(&mut Kernel { state, text, ipi, data, c: None, sites: &[] })
            };
            match effect {
                PatcherEffect::Store(epoch) => {
                    let s = g.text.log()[epoch as usize - 1].clone();
                    self.stored(counts, s.addr, &s.bytes);
                }
                PatcherEffect::Broadcast => {
                    drop(g);
                    self.text_poke_sync()?;
                    counts.syncs += 1;
                }
                PatcherEffect::BatchDone if k == 0 => self.batch_done(g, guests, counts)?,
                PatcherEffect::Fault(message) => {
                    let site = self.site;
                    self.record(&mut g, ViolationKind::PatcherFault, 0, site, None, message.to_string());
                    return Err(Stop::Violation(format!("the patcher faulted: {message}")));
                }
                _ => {}
            }
        }
    }

    /// A store the patcher wrote to the text (`bytes` at `addr`, one part of a poke as the
    /// store granularity split it) carried out on the hardware: one store of its width through
    /// the writable alias.
    fn stored(&self, counts: &mut Counts, addr: u64, bytes: &[u8]) {
        counts.stores += self.text.poke_as(addr, bytes, StoreGranularity::Aligned8) as u64;
        if bytes.first() == Some(&0xcc) && self.int3_sites.contains(&addr) {
            counts.int3_stores += 1;
        }
    }

    /// The workload client's batch returned (`g` held): the round is counted, progress told,
    /// the guests asked for a checkpoint every `check_every` rounds; `Stop::Limit` after the
    /// last.
    fn batch_done(&self, mut g: MutexGuard<'_, Shared>, guests: &Guests<'_>, counts: &mut Counts) -> Result<(), Stop> {
        let limits = &self.limits;
        g.round += 1;
        counts.rounds += 1;
        let last = counts.rounds >= limits.rounds || self.out_of_time();
        g.drained = last;
        drop(g);
        (self.progress)(counts.rounds);
        self.round_started.store(self.started.elapsed().as_nanos() as u64, Ordering::Release);
        if counts.rounds.is_multiple_of(limits.check_every.max(1)) {
            guests.checkpoint();
        }
        if last {
            return Err(Stop::Limit);
        }
        Ok(())
    }

    /// `text_poke_sync()`: `on_each_cpu(do_sync_core, NULL, 1)`. membarrier SYNC_CORE
    /// serializes every guest's CPU; but a guest that trapped on an INT3 before it may not be
    /// inside its signal handler yet, and the kernel's IPI cannot be taken between the trap and
    /// the end of the INT3 handler (interrupts are off). So each vCPU acknowledges only once it
    /// has shown that it is past any trap taken before the sync: an INT3 handler activation
    /// ended, or its loop head ran again (its iteration counter changed).
    fn text_poke_sync(&self) -> Result<(), Stop> {
        crate::sync_core().map_err(Stop::Host)?;
        for c in 0..self.exits.len() {
            let seen = |c: usize| (self.exits[c].load(Ordering::Acquire), self.data.read_u64(self.iterations[c]));
            let before = seen(c);
            let mut polls = 0u64;
            while seen(c) == before {
                polls += 1;
                if polls > MAX_POLLS {
                    return Err(
                        self.stuck(format!("vCPU {c} made no progress for {MAX_POLLS} polls during text_poke_sync()"))
                    );
                }
                std::hint::spin_loop();
                if polls.is_multiple_of(64) {
                    self.go_on()?;
                    self.in_time(|| format!("vCPU {c} to acknowledge text_poke_sync()"))?;
                    std::thread::yield_now();
                }
            }
        }
        let mut g = self.lock();
        for c in g.ipi.waiting_for() {
            g.ipi.acknowledge(c);
        }
        Ok(())
    }

    /// A wait that never ended: a liveness violation, which ends the session.
    fn stuck(&self, why: String) -> Stop {
        let site = self.site;
        self.record(&mut self.lock(), ViolationKind::Liveness, 0, site, None, why.clone());
        Stop::Violation(why)
    }

    /// Counts a violation and keeps its details (the first [`MAX_EVENTS`], then the first of
    /// each kind not yet kept).
    fn record(&self, g: &mut Shared, kind: ViolationKind, cpu: usize, addr: u64, signal: Option<i32>, message: String) {
        let at = ViolationKind::ALL.iter().position(|&k| k == kind).unwrap_or(0);
        g.tally.violations[at] += 1;
        if g.tally.events.len() >= MAX_EVENTS && g.tally.events.iter().any(|e| e.kind == kind) {
            return;
        }
        let end = self.text.base() + g.text.initial().len() as u64;
        let n = if (self.text.base()..end).contains(&addr) { (end - addr).min(8) as usize } else { 0 };
        let written = if n > 0 { g.text.read(addr, n).to_vec() } else { Vec::new() };
        let fetched = (0..n as u64).map(|i| self.text.read(addr + i)).collect();
        let round = if g.drained { Round::Drain } else { Round::In(g.round) };
        let phase = if g.drained { "done" } else { g.op };
        g.tally.events.push(HwEvent { kind, cpu, round, phase, addr, signal, written, fetched, message });
    }
}

impl GuestHooks for Session<'_> {
    /// `do_int3()`: the handler of the session's face; the IRET's registers, or `None` after a
    /// violation (the vCPU restarts).
    fn int3(&self, cpu: usize, regs: &Regs) -> Option<Regs> {
        self.entries[cpu].fetch_add(1, Ordering::AcqRel);
        let resume = match &self.face {
            Face::Model => self.model_int3(cpu, regs),
            Face::Native(n) => self.native_int3(n, cpu, regs),
        };
        self.exits[cpu].fetch_add(1, Ordering::AcqRel);
        resume
    }

    fn fault(&self, cpu: usize, signo: libc::c_int, rip: u64) {
        let mut g = self.lock();
        let name = signal_name(signo);
        let message = format!("{name} at {rip:#x} in guest code: a torn or misplaced instruction");
        let addr = if rip == 0 { self.site } else { rip };
        self.record(&mut g, ViolationKind::GuestFault, cpu, addr, Some(signo), message);
        let Shared { invariant, data, .. } = &mut *g;
        invariant.reset(cpu, data);
    }

    fn step(&self, cpu: usize, regs: &Regs) -> Step {
        if regs.rip != self.loop_head {
            return Step::Continue;
        }
        let mut g = self.lock();
        g.tally.checks += 1;
        let Shared { invariant, data, .. } = &mut *g;
        if let Err(message) = invariant.at_loop_head(cpu, regs, data) {
            invariant.reset(cpu, data);
            let site = self.site;
            self.record(&mut g, ViolationKind::WorkloadInvariant, cpu, site, None, message);
        }
        Step::Stop
    }
}

impl Session<'_> {
    /// `do_int3()` with the model: the version's handler, one micro-step per lock, then the
    /// next handler it asks.
    fn model_int3(&self, cpu: usize, regs: &Regs) -> Option<Regs> {
        let mut handler: Activation = {
            let mut g = self.lock();
            g.tally.traps += 1;
            let Shared { state, data, .. } = &mut *g;
            driver::enter(cpu, *regs, state, data, false)
        };
        loop {
            let mut g = self.lock();
            if let Some(done) = self.handler_step(cpu, &mut handler, &mut g) {
                return done;
            }
        }
    }

    /// An INT3 at `ip` on vCPU `cpu` that every handler declined (`die("int3")`): recorded as
    /// unclaimed, as the simulator's oracle words it.
    fn unclaimed(&self, g: &mut Shared, cpu: usize, ip: u64) {
        let (kprobes, version) = (self.config.kernel.kprobes, self.config.protocol.version());
        let message = unclaimed::report(ip, self.text.read(ip), 0, kprobes, version).1;
        self.record(g, ViolationKind::UnclaimedInt3, cpu, ip, None, message);
        let Shared { invariant, data, .. } = g;
        invariant.reset(cpu, data);
    }

    /// One handler micro-step under the lock, carried out ([`driver::apply`]) and tallied;
    /// `Some` when the activation is over: the IRET's registers, or `None` after a violation
    /// (recorded, and the vCPU's counters reset).
    fn handler_step(&self, cpu: usize, handler: &mut Activation, g: &mut Shared) -> Option<Option<Regs>> {
        let ip = handler.ip();
        let Shared { state, text, data, .. } = g;
        let step = handler.step(&mut driver::handler_ctx(&self.config, state, data, text, |a| self.text.read(a)));
        let (kind, message) = match driver::apply(cpu, handler, step, state, data) {
            Applied::Continue => return None,
            Applied::KprobeHit => {
                g.tally.kprobe_hits += 1;
                return None;
            }
            Applied::Emulated => {
                g.tally.emulated += 1;
                return None;
            }
            Applied::Iret(regs) => return Some(Some(regs)),
            Applied::Declined => {
                self.unclaimed(g, cpu, ip);
                return Some(None);
            }
            Applied::Fault { kind, message } => (kind, message),
        };
        self.record(g, kind, cpu, ip, None, message);
        let Shared { invariant, data, .. } = g;
        invariant.reset(cpu, data);
        Some(None)
    }
}
