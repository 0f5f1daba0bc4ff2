//! The workload's own machine code running natively: the ftrace guest of the simulator (same
//! plan, same text, same initial registers) on pinned host threads, each loop reaching its
//! loop head thousands of times without a single fault, and every thread taken back out; and a
//! guest whose loop head is an invalid instruction caught as `SIGILL` at that address, over and
//! over, each time restarted. Skips (printing `SKIPPED`) where the host cannot, unless
//! `POKESIM_REQUIRE_HW=1`. The tests map the guest at its fixed addresses, so they take turns.

use hw::{DataMapping, TextMapping};
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::sched::Strategy;
use sim_core::{Protocol, RunConfig};

static FIXED_ADDRESSES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn host() -> Option<hw::Host> {
    match hw::probe() {
        Ok(h) => Some(h),
        Err(r) if std::env::var_os("POKESIM_REQUIRE_HW").is_some() => panic!("POKESIM_REQUIRE_HW is set: {r}"),
        Err(r) => {
            eprintln!("SKIPPED: {r}");
            None
        }
    }
}

fn ftrace_plan() -> sim_core::Plan {
    let s = Scenario {
        workload: WorkloadSpec::new(WorkloadKind::Ftrace),
        config: RunConfig { cpus: 2, protocol: Protocol::Linux616, ..RunConfig::default() },
        strategy: Strategy::Random,
        seed: 0,
        kprobes: Vec::new(),
        custom: None,
    };
    s.plan().expect("plan")
}

#[test]
fn the_ftrace_guest_loops_natively_without_a_fault() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = host() else { return };
    let plan = ftrace_plan();
    let l = plan.image.layout;
    let text = TextMapping::new(l.text_base, &plan.image.text).expect("text");
    let data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let counters: Vec<u64> = plan.image.cpu_data.iter().map(|d| d.counters.0).collect();
    let (spins, reports) =
        hw::run_guests(&plan.image.cpu_regs, (l.text_base, l.text_base + l.text_len), &host.cpus, || {
            // Wait (bounded by a count of polls, not by time) until every loop went round often.
            let mut spins = 0u64;
            while counters.iter().any(|&c| data.read_u64(c) < 10_000) && spins < 1 << 32 {
                spins += 1;
                std::hint::spin_loop();
            }
            spins
        });
    assert!(
        spins < 1 << 32,
        "the guests never reached 10,000 iterations: {:?}",
        counters.iter().map(|&c| data.read_u64(c)).collect::<Vec<_>>()
    );
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.faults, 0, "vCPU {i}: {r:?}");
    }
    assert!(counters.iter().all(|&c| data.read_u64(c) >= 10_000));
    drop(text);
}

#[test]
fn an_invalid_instruction_in_the_guest_is_caught_and_the_vcpu_restarted() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = host() else { return };
    let plan = ftrace_plan();
    let l = plan.image.layout;
    let mut image = plan.image.text.clone();
    let head = (plan.image.loop_head - l.text_base) as usize;
    image[head..head + 2].copy_from_slice(&[0x0f, 0x0b]); // ud2
    let text = TextMapping::new(l.text_base, &image).expect("text");
    let _data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let before = hw::guest::faults_so_far();
    let (spins, reports) =
        hw::run_guests(&plan.image.cpu_regs[..1], (l.text_base, l.text_base + l.text_len), &host.cpus, || {
            let mut spins = 0u64;
            while hw::guest::faults_so_far() < before + 100 && spins < 1 << 32 {
                spins += 1;
                std::hint::spin_loop();
            }
            spins
        });
    assert!(spins < 1 << 32, "no fault was ever taken");
    let r = reports[0];
    assert!(r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault, Some((libc::SIGILL, plan.image.loop_head)), "{r:?}");
    drop(text);
}

/// Torn bytes can decode as `syscall`: from the guest text it traps (`SIGSYS`, counted like any
/// fault) instead of running — here it would have been `exit(0)`, ending the test process.
#[test]
fn a_system_call_from_the_guest_text_traps_instead_of_running() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = host() else { return };
    let plan = ftrace_plan();
    let l = plan.image.layout;
    let mut image = plan.image.text.clone();
    let head = (plan.image.loop_head - l.text_base) as usize;
    image[head..head + 2].copy_from_slice(&[0x0f, 0x05]); // syscall
    let text = TextMapping::new(l.text_base, &image).expect("text");
    let _data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let mut regs = plan.image.cpu_regs[0];
    regs.set(cpu_model::Reg::Rax, libc::SYS_exit as u64);
    regs.set(cpu_model::Reg::Rdi, 0);
    let before = hw::guest::faults_so_far();
    let (spins, reports) = hw::run_guests(&[regs], (l.text_base, l.text_base + l.text_len), &host.cpus, || {
        let mut spins = 0u64;
        while hw::guest::faults_so_far() < before + 100 && spins < 1 << 32 {
            spins += 1;
            std::hint::spin_loop();
        }
        spins
    });
    assert!(spins < 1 << 32, "no fault was ever taken");
    let r = reports[0];
    assert!(r.ran && r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault.map(|f| f.0), Some(libc::SIGSYS), "{r:?}");
    drop(text);
}
