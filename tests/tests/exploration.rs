//! Exploration (DESIGN.md §2.9): each strategy, the bounded exhaustive search and its
//! reduction, and sharding.

use scenarios::campaign::{first_violation, Campaign, Shard};
use scenarios::catalogue::scenario;
use scenarios::exhaust::{exhaust, ExhaustResult};
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::sched::Strategy;
use sim_core::{KernelConfig, Mutant, Protocol, ViolationKind};

/// The exhaustive search's scenario: 2 vCPUs, one ftrace site, one patch round, one loop
/// iteration per vCPU, linux-5.5, pessimistic.
fn small(mutant: Option<Mutant>) -> Scenario {
    let spec = WorkloadSpec { rounds: 1, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let mut s = scenario(Protocol::Linux55, &mutant.into_iter().collect::<Vec<_>>(), spec, "pessimistic", 0);
    s.config.cpus = 2;
    s.config.max_iterations = Some(1);
    s.config.max_ticks = Some(5_000);
    s
}

#[test]
fn exhaustive_search_proves_the_bound_and_finds_the_mutants() {
    let clean = exhaust(&small(None), 1, true, 1_000_000, &|_| {}).unwrap();
    assert!(clean.complete && clean.violation.is_none(), "{clean:?}");
    assert!(
        clean.executions > 1_000 && clean.states > 1_000,
        "{} executions, {} states",
        clean.executions,
        clean.states
    );
    for (m, bound, kind) in [
        (Mutant::NoInt3, 1, ViolationKind::TornFetch),
        // One stale fetch costs exactly one: the first byte shown from before the INT3 store.
        (Mutant::NoSyncAfterInt3, 1, ViolationKind::TornFetch),
        // A stale INT3 is fatal without kprobes (with them, 5.5 backs up over it and retries).
        (Mutant::NoSyncAfterFirst, 2, ViolationKind::UnclaimedInt3),
        (Mutant::NoSyncAfterTail, 2, ViolationKind::TornFetch),
    ] {
        let mut s = small(Some(m));
        s.config.kernel = KernelConfig { kprobes: false };
        let r = exhaust(&s, bound, true, 1_000_000, &|_| {}).unwrap();
        let found = r.violation.as_ref().and_then(|o| o.violation()).map(|v| v.kind);
        assert_eq!(found, Some(kind), "{m} within bound {bound}: {} executions", r.executions);
    }
}

#[test]
fn the_reduction_agrees_with_the_full_search_and_saves_executions() {
    let mut saved = 0;
    for m in [
        None,
        Some(Mutant::NoSyncAfterInt3),
        Some(Mutant::NoSyncAfterTail),
        Some(Mutant::NoSyncAfterFirst),
        Some(Mutant::NoInt3),
    ] {
        let reduced = exhaust(&small(m), 1, true, 1_000_000, &|_| {}).unwrap();
        let full = exhaust(&small(m), 1, false, 1_000_000, &|_| {}).unwrap();
        let kind = |r: &ExhaustResult| r.violation.as_ref().and_then(|o| o.violation()).map(|v| v.kind);
        assert_eq!(kind(&reduced), kind(&full), "{m:?}: verdicts differ");
        assert!(reduced.executions <= full.executions, "{m:?}: the reduction explored more");
        saved += full.executions - reduced.executions;
    }
    assert!(saved > 0, "the reduction never saved an execution");
}

#[test]
fn pct_finds_what_random_misses_on_a_batch() {
    // 16 INT3s in flight make a uniformly scheduled vCPU trap (and serialize) so often that a
    // stale tail almost never survives; PCT's long bursts let one survive.
    let spec = WorkloadSpec::new(WorkloadKind::Batch);
    let mut s = scenario(Protocol::Linux55, &[Mutant::NoSyncAfterTail], spec, "pessimistic", 0);
    s.config.cpus = 4;
    let runs_to_find =
        |strategy| first_violation(&Scenario { strategy, ..s.clone() }, 40).unwrap().map(|f| f.index + 1);
    let pct = runs_to_find(Strategy::Pct { depth: 3 });
    assert!(pct.is_some(), "PCT did not find the stale tail in 40 runs");
    let random = runs_to_find(Strategy::Random);
    assert!(random.is_none_or(|r| r > pct.unwrap()), "random {random:?} vs pct {pct:?}");
}

#[test]
fn a_pct_counterexample_replays_under_the_replay_strategy() {
    let spec = WorkloadSpec::new(WorkloadKind::Batch);
    let mut s = scenario(Protocol::Linux55, &[Mutant::NoSyncAfterTail], spec, "pessimistic", 0);
    s.config.cpus = 4;
    s.strategy = Strategy::Pct { depth: 3 };
    let found = first_violation(&s, 64).unwrap().expect("PCT finds it");
    let o = &found.outcome;
    let mut replayer = found.scenario.clone();
    replayer.strategy = "replay".parse().unwrap();
    let again = replayer.replay(sim_core::Recorded::from_log(o.decisions.clone())).unwrap();
    assert_eq!(again.violation(), o.violation());
    assert_eq!(again.trace_hash, o.trace_hash);
}

#[test]
fn shards_partition_the_seed_space_and_find_the_same_first_violation() {
    // A campaign over the whole finds the smallest violating seed; so does the shard holding
    // it, and the shards of a campaign of `runs` seeds run exactly those seeds between them.
    let spec = WorkloadSpec { rounds: 2, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let s = scenario(Protocol::Linux55, &[Mutant::NoSyncAfterTail], spec, "pessimistic", 0);
    let at = Campaign::seeds(&s);
    let run = |runs, shard| Campaign { scenario_at: &at, runs, shard, time: None }.run(&|_| {}).unwrap();
    let whole = run(48, Shard::ALL);
    let first = whole.found.as_ref().expect("found in 48 runs").scenario.seed;
    let shards: Vec<Shard> = (0..3).map(|i| Shard { index: i, count: 3 }).collect();
    assert_eq!(shards.iter().map(|sh| sh.share(48)).sum::<u64>(), 48);
    let per_shard: Vec<Option<u64>> = shards.iter().map(|sh| run(48, *sh).found.map(|f| f.scenario.seed)).collect();
    assert_eq!(per_shard.iter().flatten().min(), Some(&first), "{per_shard:?} vs {first}");
    assert_eq!(per_shard[(first % 3) as usize], Some(first));
}

/// A stale INT3 fetched after the patcher finished is judged by the trap path — recovered by
/// `kprobe_int3_handler()` or unclaimed — never reported as a liveness violation (the run that
/// once did: linux-6.0 without the last sync, a foreign kprobe, snapshot fetch, seed 2).
#[test]
fn a_stale_int3_after_the_last_round_is_judged_by_the_trap_path() {
    let spec =
        WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Armed, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    for k in 0..20 {
        let mut s = scenario(Protocol::Linux60, &[Mutant::NoSyncAfterFirst], spec, "snapshot", k);
        s.config.cpus = 2;
        s.seed = k;
        let o = s.run().unwrap();
        for v in &o.violations {
            assert_ne!(v.kind, ViolationKind::Liveness, "seed {k}: {v}");
        }
    }
}
