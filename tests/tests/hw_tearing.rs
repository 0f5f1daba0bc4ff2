//! The no-int3 mutant on real CPUs: the ftrace site — crossing a 16-byte block — rewritten in
//! place with byte stores between a 5-byte NOP and a CALL, no INT3, one `membarrier`
//! SYNC_CORE per round, while a guest thread runs through it on another CPU (the patcher
//! pinned to the first CPU, the guest to the second). Torn instructions show as faults in the
//! guest: a CALL whose displacement is half old, half new jumps outside the text (`SIGSEGV`).
//! Measured here (2-vCPU Xeon VM): 32 faults in 20,000 rounds, 2,559 in 100,000. The test runs
//! batches of 20,000 rounds until one tears (at most 25 batches).

use std::sync::atomic::AtomicBool;

mod hw_common;

use hw_common::{host, spin_until};
use hw::{DataMapping, TextMapping};
use scenarios::workload::{SitePlacement, WorkloadSpec};
use scenarios::Scenario;
use sim_core::Mutant;

fn no_int3(rounds: u32) -> Scenario {
    let mut s = hw_common::ftrace(1);
    s.workload = WorkloadSpec { rounds, site: SitePlacement::CROSS16, ..s.workload };
    s.config.mutants = vec![Mutant::NoInt3];
    s
}

#[test]
fn no_int3_with_byte_stores_across_a_16_byte_block_tears_on_real_cpus() {
    let Some(host) = host() else { return };
    let plan = no_int3(20_000).plan().expect("plan");
    hw::patcher::check(&plan).expect("a program without INT3 runs");
    let l = plan.image.layout;
    let text = TextMapping::new(l.text_base, &plan.image.text).expect("text");
    let data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let (stop, counter) = (AtomicBool::new(false), plan.image.cpu_data[0].counters.0);
    let ((reports, batches), guests) =
        hw::run_guests(&plan.image.cpu_regs, (l.text_base, l.text_base + l.text_len), &host.cpus[1..], || {
            hw::guest::pin(host.cpus[0]);
            spin_until(|| data.read_u64(counter) >= 1000);
            let before = hw::guest::faults_so_far();
            let mut reports = Vec::new();
            for batch in 1..=25 {
                reports.push(hw::patcher::run(&plan, &text, &stop).expect("patcher"));
                if hw::guest::faults_so_far() > before {
                    return (reports, batch);
                }
            }
            (reports, 25)
        });
    let g = guests[0];
    eprintln!("{batches} batches of 20,000 rounds: {reports:?}; guest: {g:?}, {} loops", data.read_u64(counter));
    assert!(reports.iter().all(|r| r.rounds == 20_000 && r.syncs == 20_000 && r.stores == 100_000), "{reports:?}");
    assert!(g.ran && data.read_u64(counter) >= 1000, "the guest ran: {g:?}");
    assert!(g.faults > 0, "no torn instruction in {} rounds of byte stores without INT3: {g:?}", 20_000 * batches);
    let (signal, at) = g.first_fault.expect("a first fault");
    assert!([libc::SIGSEGV, libc::SIGILL, libc::SIGBUS, libc::SIGTRAP, libc::SIGSYS].contains(&signal), "{g:?}");
    eprintln!("first torn instruction: signal {signal} at {at:#x}");
}
