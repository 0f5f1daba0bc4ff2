use scenarios::catalogue;
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use sim_core::{Mutant, Protocol};
fn main() {
    let bound: usize = std::env::args().nth(1).unwrap().parse().unwrap();
    let iters: u64 = std::env::args().nth(2).unwrap().parse().unwrap();
    let reduce = std::env::args().nth(3).as_deref() != Some("noreduce");
    let spec = WorkloadSpec { rounds: 1, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    for m in [
        None,
        Some(Mutant::NoSyncAfterInt3),
        Some(Mutant::NoSyncAfterTail),
        Some(Mutant::NoSyncAfterFirst),
        Some(Mutant::NoInt3),
    ] {
        let mut s = catalogue::scenario(Protocol::Linux55, &m.into_iter().collect::<Vec<_>>(), spec, "pessimistic", 0);
        s.config.cpus = 2;
        s.config.max_ticks = 5000;
        s.config.max_iterations = Some(iters);
        let r = scenarios::explore::exhaust(&s, bound, reduce, 2_000_000).unwrap();
        println!(
            "{:?}: execs={} pruned={} states={} complete={} viol={:?} {:.1}s ({:.0} exec/s, {:.0} states/s)",
            m,
            r.executions,
            r.pruned,
            r.states,
            r.complete,
            r.violation.as_ref().map(|o| o.violation().unwrap().kind),
            r.elapsed.as_secs_f64(),
            r.executions as f64 / r.elapsed.as_secs_f64(),
            r.states as f64 / r.elapsed.as_secs_f64()
        );
    }
}
