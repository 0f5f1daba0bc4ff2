//! The workload's own machine code running natively: the ftrace guest of the simulator (same
//! plan, same text, same initial registers) on pinned host threads, each loop reaching its
//! loop head thousands of times without a single fault, and every thread taken back out; a
//! guest whose loop head is an invalid instruction caught as `SIGILL` at that address, over and
//! over, each time restarted; a `syscall` there trapped instead of run; and the guest contained
//! in the process it runs in: a store to `fs:[0]` (the host thread's TLS block, with the host's
//! FS base) faults instead of landing, and a `wrfsbase` does not take the next signal handler's
//! thread-local storage with it. Skips (printing
//! `SKIPPED`) where the host cannot, unless `POKESIM_REQUIRE_HW=1`. The tests map the guest at
//! its fixed addresses, so they take turns.

#[path = "../support/skippable.rs"]
mod skippable;

mod hw_common;

use cpu_model::{Reg, Regs};
use hw::{DataMapping, GuestReport, TextMapping};
use hw_common::{host, spin_until};

static FIXED_ADDRESSES: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn the_ftrace_guest_loops_natively_without_a_fault() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let Some(host) = host() else { return };
    let plan = hw_common::ftrace(2).plan().expect("plan");
    let l = plan.image.layout;
    let text = TextMapping::new(l.text_base, &plan.image.text).expect("text");
    let data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let counters: Vec<u64> = plan.image.cpu_data.iter().map(|d| d.counters.0).collect();
    let text_range = (l.text_base, l.text_base + l.text_len);
    let (looped, reports) = hw::run_guests(&plan.image.cpu_regs, text_range, &host.cpus, || {
        spin_until(|| counters.iter().all(|&c| data.read_u64(c) >= 10_000))
    });
    let loops: Vec<u64> = counters.iter().map(|&c| data.read_u64(c)).collect();
    assert!(looped, "the guests never reached 10,000 iterations: {loops:?}");
    for (i, r) in reports.iter().enumerate() {
        assert_eq!(r.faults, 0, "vCPU {i}: {r:?}");
    }
    assert!(loops.iter().all(|&n| n >= 10_000), "{loops:?}");
    drop(text);
}

/// Runs vCPU 0 of the ftrace guest with `insn` at its loop head and registers `regs` until it
/// has faulted 100 times; returns its report.
fn faulting_at_loop_head(insn: &[u8], regs: impl FnOnce(&mut Regs)) -> Option<(GuestReport, u64)> {
    let host = host()?;
    let plan = hw_common::ftrace(1).plan().expect("plan");
    let l = plan.image.layout;
    let mut image = plan.image.text.clone();
    let head = (plan.image.loop_head - l.text_base) as usize;
    image[head..head + insn.len()].copy_from_slice(insn);
    let text = TextMapping::new(l.text_base, &image).expect("text");
    let _data = DataMapping::new(l.data_base, l.data_len as usize).expect("data");
    let mut start = plan.image.cpu_regs[0];
    regs(&mut start);
    let before = hw::guest::faults_so_far();
    let (faulted, reports) = hw::run_guests(&[start], (l.text_base, l.text_base + l.text_len), &host.cpus, || {
        spin_until(|| hw::guest::faults_so_far() >= before + 100)
    });
    assert!(faulted, "no fault was ever taken: {reports:?}");
    drop(text);
    Some((reports[0], plan.image.loop_head))
}

fn an_invalid_instruction_in_the_guest_is_caught_and_the_vcpu_restarted() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let Some((r, head)) = faulting_at_loop_head(&[0x0f, 0x0b], |_| {}) else { return }; // ud2
    assert!(r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault, Some((libc::SIGILL, head)), "{r:?}");
}

/// Torn bytes can decode as `syscall`: from the guest text it traps (`SIGSYS`, counted like any
/// fault) instead of running — here it would have been `exit(0)`, ending the guest thread.
fn a_system_call_from_the_guest_text_traps_instead_of_running() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let exit = |r: &mut Regs| {
        r.set(Reg::Rax, libc::SYS_exit as u64);
        r.set(Reg::Rdi, 0);
    };
    let Some((r, _)) = faulting_at_loop_head(&[0x0f, 0x05], exit) else { return }; // syscall
    assert!(r.ran && r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault.map(|f| f.0), Some(libc::SIGSYS), "{r:?}");
}

thread_local! {
    static MARK: std::cell::Cell<u64> = const { std::cell::Cell::new(0x5eed) };
}

/// `mov qword fs:[0], rax; ud2`: with the host's FS base this would overwrite the thread
/// control block's self-pointer (what every thread-local access of the host starts from); the
/// guest runs with FS base 0, so it is a fault at the store, like any stray access.
fn a_store_to_fs_0_faults_in_the_guest_instead_of_corrupting_the_host() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let store = [0x64, 0x48, 0x89, 0x04, 0x25, 0, 0, 0, 0, 0x0f, 0x0b];
    let Some((r, head)) = faulting_at_loop_head(&store, |r| r.set(Reg::Rax, 0x10)) else { return };
    assert!(r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault, Some((libc::SIGSEGV, head)), "the store faulted: {r:?}");
    MARK.set(MARK.get() + 1);
    assert_eq!(MARK.get(), 0x5eee, "this thread's TLS is intact");
}

/// `wrfsbase rax; ud2`: the guest moves its own FS base, and the `SIGILL` handler that follows
/// still finds its thread-local state (every handler loads the host's bases first) — before,
/// the handler's first thread-local access faulted and the process died without a report.
fn wrfsbase_in_the_guest_does_not_take_the_signal_handlers_with_it() {
    let _turn = FIXED_ADDRESSES.lock().unwrap_or_else(|e| e.into_inner());
    let write = [0xf3, 0x48, 0x0f, 0xae, 0xd0, 0x0f, 0x0b];
    let Some((r, head)) = faulting_at_loop_head(&write, |r| r.set(Reg::Rax, 0xdead_0000)) else { return };
    // SAFETY: getauxval has no preconditions.
    let fsgsbase = unsafe { libc::getauxval(libc::AT_HWCAP2) } & 2 != 0;
    let at = if fsgsbase { head + 5 } else { head }; // without FSGSBASE the wrfsbase is the #UD
    assert!(r.faults >= 100, "{r:?}");
    assert_eq!(r.first_fault, Some((libc::SIGILL, at)), "{r:?}");
    MARK.set(MARK.get() + 1);
    assert_eq!(MARK.get(), 0x5eee, "this thread's TLS is intact");
}

fn main() {
    skippable::main(
        skippable::real_cpus(),
        &[
            ("the_ftrace_guest_loops_natively_without_a_fault", the_ftrace_guest_loops_natively_without_a_fault),
            (
                "an_invalid_instruction_in_the_guest_is_caught_and_the_vcpu_restarted",
                an_invalid_instruction_in_the_guest_is_caught_and_the_vcpu_restarted,
            ),
            (
                "a_system_call_from_the_guest_text_traps_instead_of_running",
                a_system_call_from_the_guest_text_traps_instead_of_running,
            ),
            (
                "a_store_to_fs_0_faults_in_the_guest_instead_of_corrupting_the_host",
                a_store_to_fs_0_faults_in_the_guest_instead_of_corrupting_the_host,
            ),
            (
                "wrfsbase_in_the_guest_does_not_take_the_signal_handlers_with_it",
                wrfsbase_in_the_guest_does_not_take_the_signal_handlers_with_it,
            ),
        ],
    );
}
