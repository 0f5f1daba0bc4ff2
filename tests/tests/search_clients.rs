//! Complete search with more than one patching client (issue 26): the workload's patcher and a
//! kprobe that arms and disarms itself (`--kprobe cycling`), or two callers of linux-6.16's
//! vector (`shared_vector`, compiled C). Their stores interleave, so the text's store history
//! is part of every state, and who takes `text_mutex` first is a scheduling choice the search
//! branches on. The search finds `kprobe-disarm-no-sync` (B5 brought back) on 6.0 and 6.16 with
//! a counterexample that replays, proves the fixed versions at 2 vCPUs, and every state a
//! sampled run visits is among its states.

#[path = "../support/skippable.rs"]
mod skippable;

use std::time::Instant;

use scenarios::catalogue::scenario;
use scenarios::exhaust::{complete, CompleteResult};
use scenarios::workload::{ForeignKprobe, WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::event::Event;
use sim_core::sched::{Probe, Scheduler};
use sim_core::search::{search, Options};
use sim_core::{Decisions, Machine, Mutant, Observe, Protocol, ViolationKind};

/// ftrace with the cycling kprobe: `rounds` rounds (as many arm/disarm cycles), `cpus` vCPUs
/// looping forever.
fn cycling(protocol: Protocol, mutants: &[Mutant], cpus: usize, rounds: u32) -> Scenario {
    let spec = WorkloadSpec { rounds, kprobe: ForeignKprobe::Cycling, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let mut s = scenario(protocol, mutants, spec, "pessimistic", 0);
    s.config.cpus = cpus;
    s
}

/// The complete search of `s`, timed and reported on stderr.
fn searched(s: &Scenario, what: &str) -> CompleteResult {
    let start = Instant::now();
    let r = complete(s, Options::default(), &|_| {}).unwrap_or_else(|e| panic!("{what}: {e}"));
    eprintln!(
        "{what}: {} states, {} transitions, {:.1} s, complete {}, found {:?}",
        r.search.states,
        r.search.transitions,
        start.elapsed().as_secs_f64(),
        r.search.complete,
        r.search.found.as_ref().map(|c| c.violation.kind)
    );
    r
}

fn kprobe_disarm_no_sync_is_found_on_6_0_and_6_16() {
    for (protocol, rounds) in [(Protocol::Linux616, 1), (Protocol::Linux60, 2)] {
        let s = cycling(protocol, &[Mutant::KprobeDisarmNoSync], 2, rounds);
        let r = searched(&s, &format!("{protocol} kprobe-disarm-no-sync, {rounds} rounds"));
        let c = r.search.found.as_ref().unwrap_or_else(|| panic!("{protocol}: kprobe-disarm-no-sync not found"));
        assert_eq!(c.violation.kind, ViolationKind::UnclaimedInt3, "{protocol}: {}", c.violation);
        let o = r.violation.as_ref().expect("the counterexample replays as an ordinary run");
        assert_eq!(o.violation().map(|v| v.kind), Some(ViolationKind::UnclaimedInt3), "{protocol}");
    }
}

/// The fixed versions with the cycling kprobe complete with no violation (linux-5.6, between
/// them, has its own use after free on ftrace). One round each: linux-6.0, 7 s.
fn linux_6_0_with_a_cycling_kprobe_completes_with_no_violation() {
    fixed(Protocol::Linux60, 1);
}

/// linux-6.16, one round (1.4 million states, 27 s), and linux-6.0 with two rounds — the
/// kprobe comes back, what B5 needs where `kprobe_int3_handler()` retries a vanished INT3
/// (4.8 million states, 2–3 minutes).
fn the_fixed_versions_complete_with_no_violation() {
    fixed(Protocol::Linux616, 1);
    fixed(Protocol::Linux60, 2);
}

fn fixed(protocol: Protocol, rounds: u32) {
    let r = searched(&cycling(protocol, &[], 2, rounds), &format!("{protocol} fixed, {rounds} rounds"));
    assert!(r.search.complete && r.search.found.is_none(), "{protocol}: {:?}", r.search.found);
}

/// Two callers of linux-6.16's vector, compiled C (`shared_vector`, one round each): the June
/// 2025 regression (`single-unchecked-add`) is found and replays, the kernel's code completes.
fn two_callers_of_the_6_16_vector_are_searched_completely() {
    let r = searched(&shared_vector(Some("single-unchecked-add")), "shared_vector single-unchecked-add");
    let c = r.search.found.as_ref().expect("single-unchecked-add is found");
    assert_eq!(c.violation.kind, ViolationKind::UnclaimedInt3, "{}", c.violation);
    assert_eq!(r.violation.as_ref().and_then(|o| o.violation()).map(|v| v.kind), Some(ViolationKind::UnclaimedInt3));
}

/// The kernel's code with two callers of the 6.16 vector: complete, no violation (12 s).
fn two_callers_of_the_6_16_vector_complete_with_no_violation() {
    let r = searched(&shared_vector(None), "shared_vector linux-6.16");
    assert!(r.search.complete && r.search.found.is_none(), "{:?}", r.search.found);
}

/// `shared_vector` on linux-6.16 compiled from C, one round, 2 vCPUs, with `mutant`.
fn shared_vector(mutant: Option<&str>) -> Scenario {
    let mutants = mutant.map(|m| format!("mutants = [\"{m}\"]\n")).unwrap_or_default();
    let src = format!(
        "protocol = {{ version = \"linux-6.16\", c = true }}\ncpus = 2\n{mutants}[workload]\nkind = \"shared_vector\"\nrounds = 1\n"
    );
    scenarios::file::ScenarioFile::parse("two.toml", &src, "two").unwrap_or_else(|e| panic!("{e}")).scenario
}

/// A uniform random scheduler that notes, before each pick, whether the state is *global*: no
/// enabled event is one complete search runs with the step before it (a local guest step or a
/// quiet handler step: `Probe::merges`; the states it stores, `SearchResult::global_states`).
struct Noting {
    global: Vec<bool>,
}

impl Scheduler for Noting {
    fn pick(&mut self, _: u64, enabled: &[Event], decisions: &mut Decisions) -> usize {
        decisions.choose(enabled.len())
    }

    fn pick_with(&mut self, _: u64, enabled: &[Event], probe: &dyn Probe, d: &mut Decisions) -> Option<usize> {
        self.global.push(!enabled.iter().any(|&e| probe.merges(e)));
        Some(d.choose(enabled.len()))
    }
}

/// Soundness with two clients: every global state a sampled run passes through (the workload's
/// ftrace patcher and the cycling kprobe, linux-6.0, whose disarm syncs) is one complete search
/// stored — so saving and restoring the store history loses no state — and the runs take
/// `text_mutex` in both orders.
fn every_sampled_state_with_two_clients_is_a_searched_state() {
    let mut s = cycling(Protocol::Linux60, &[], 2, 1);
    s.config.max_iterations = Some(2);
    sampled_states_are_searched(s, "cycling kprobe", 200);
}

/// The same with two callers of the 6.16 vector compiled from C (its text mirror, which the
/// patching CPUs' loads read, is restored with the store history).
fn every_sampled_state_with_two_c_callers_is_a_searched_state() {
    let mut s = shared_vector(None);
    s.config.max_iterations = Some(1);
    sampled_states_are_searched(s, "shared_vector", 60);
}

/// Searches `s` completely (counters reset at the loop head), then samples `seeds` random runs
/// and checks that each global state they pass through was stored, and that both clients took
/// `text_mutex` first in some run.
fn sampled_states_are_searched(mut s: Scenario, what: &str, seeds: u64) {
    s.config.reset_counters = true;
    let start = Instant::now();
    let mut machine = Machine::new(s.plan().unwrap(), Observe::NOTHING).unwrap();
    let r = search(&mut machine, Options::default(), true, &|_| {}).unwrap();
    let global: std::collections::HashSet<u64> = r.global_states.unwrap().iter().map(|&h| h as u64).collect();
    let secs = start.elapsed().as_secs_f64();
    eprintln!("{what}: {} states, {} transitions, {} global, {secs:.1} s", r.states, r.transitions, global.len());
    assert!(r.complete && r.found.is_none(), "{what}: {:?}", r.found);
    let (mut checked, mut firsts) = (0, std::collections::BTreeSet::new());
    for seed in 0..seeds {
        let observe = Observe { state_hashes: true, trace: true, ..Observe::NOTHING };
        let mut sched = Noting { global: Vec::new() };
        let o = Machine::new(s.plan().unwrap(), observe).unwrap().run(&mut sched, Decisions::seeded(seed)).unwrap();
        // The pick of tick t + 1 saw the state after tick t.
        for (t, &h) in o.state_hashes.iter().enumerate() {
            if sched.global.get(t + 1) == Some(&true) {
                assert!(global.contains(&h), "{what} seed {seed}: the global state after tick {t} was never searched");
                checked += 1;
            }
        }
        let locks = |e: &&sim_core::trace::TraceEvent| ["lock-text-mutex", "mutex_lock"].contains(&e.event.as_str());
        let first = o.trace.iter().filter(|e| e.cpu.is_none()).find(locks);
        firsts.extend(first.map(|e| e.actor.clone()));
    }
    eprintln!("{what}: {checked} sampled global states, all searched; first to take text_mutex: {firsts:?}");
    assert!(checked > 500, "{what}: {checked}");
    assert_eq!(firsts.len(), 2, "{what}: both clients take text_mutex first in some run: {firsts:?}");
}

fn main() {
    skippable::run(
        skippable::full_suite(),
        &[
            ("kprobe_disarm_no_sync_is_found_on_6_0_and_6_16", kprobe_disarm_no_sync_is_found_on_6_0_and_6_16),
            (
                "linux_6_0_with_a_cycling_kprobe_completes_with_no_violation",
                linux_6_0_with_a_cycling_kprobe_completes_with_no_violation,
            ),
            (
                "two_callers_of_the_6_16_vector_are_searched_completely",
                two_callers_of_the_6_16_vector_are_searched_completely,
            ),
            (
                "every_sampled_state_with_two_clients_is_a_searched_state",
                every_sampled_state_with_two_clients_is_a_searched_state,
            ),
            (
                "every_sampled_state_with_two_c_callers_is_a_searched_state",
                every_sampled_state_with_two_c_callers_is_a_searched_state,
            ),
        ],
        &[
            ("the_fixed_versions_complete_with_no_violation", the_fixed_versions_complete_with_no_violation),
            (
                "two_callers_of_the_6_16_vector_complete_with_no_violation",
                two_callers_of_the_6_16_vector_complete_with_no_violation,
            ),
        ],
    );
}
