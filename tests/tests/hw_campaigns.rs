//! Short hardware campaigns of the kernel's protocols.

mod hw_common;

use hw_common::host;
use scenarios::workload::{SitePlacement, WorkloadSpec};
use sim_core::{Mutant, Protocol};

static FIXED_ADDRESSES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn campaign(protocol: Protocol, mutants: &[Mutant], rounds: u64) -> Option<hw::HwReport> {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let host = host()?;
    let mut s = hw_common::ftrace(1);
    s.workload = WorkloadSpec { site: SitePlacement::CROSS16, ..s.workload };
    s.config.protocol = protocol;
    s.config.mutants = mutants.to_vec();
    s.config.fetch.stores = cpu_model::StoreGranularity::Byte;
    let plan = s.plan().expect("plan");
    let limits = hw::Limits { rounds, ..hw::Limits::default() };
    Some(hw::campaign::run(plan, &host, &limits).expect("runs"))
}

#[test]
fn linux_6_16_shows_no_violation() {
    let Some(r) = campaign(Protocol::Linux616, &[], 20_000) else { return };
    eprintln!("{r:#?}");
    assert_eq!(r.total_violations(), 0);
}

#[test]
fn no_int3_tears() {
    let Some(r) = campaign(Protocol::Linux616, &[Mutant::NoInt3], 20_000) else { return };
    eprintln!(
        "{:?} {:?} {:?}",
        r.violations,
        r.events.first(),
        (r.rounds, r.syncs, r.stores, r.traps, r.checks, r.elapsed)
    );
}
