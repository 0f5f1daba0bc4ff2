//! The groundwork of running the protocol on the host's CPUs, tested on this host: the probe,
//! code executed from the memfd's executable view after a poke through its writable alias and
//! `membarrier` SYNC_CORE — on the poking thread and on another one — a guest address that
//! is already taken refused rather than replaced, and a fault the harness cannot attribute to
//! guest code (here: inside a hook) reported with exit status 3 rather than a silent death,
//! and a compiled image mapped at its fixed addresses, called natively: a return, a fault and a
//! kernel service that gives up each come back to Rust as what they were.
//!
//! A host that cannot (not x86-64 Linux, one CPU, no SYNC_CORE) makes these tests print
//! `SKIPPED` with the reason — unless `POKESIM_REQUIRE_HW=1`, which makes it a failure.

#[path = "../../tests/support/skippable.rs"]
mod skippable;

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

mod common;

use common::host;
use hw::{Refusal, TextMapping};

/// `mov eax, imm32; ret`, padded with INT3 to a page.
fn returning(imm: u32) -> Vec<u8> {
    let mut page = vec![0xcc; 4096];
    page[0] = 0xb8;
    page[1..5].copy_from_slice(&imm.to_le_bytes());
    page[5] = 0xc3;
    page
}

/// The function at the start of the text.
fn function(text: &TextMapping) -> extern "C" fn() -> u32 {
    // SAFETY: the text starts with `mov eax, imm32; ret`, a complete function of the C ABI
    // (no arguments, result in eax, no stack use), executable for as long as `text` lives —
    // and every caller drops the function before the mapping.
    unsafe { std::mem::transmute::<*const (), extern "C" fn() -> u32>(text.base() as *const ()) }
}

fn the_probe_names_the_host() {
    let Some(h) = host() else { return };
    assert!(h.cpus.len() >= 2, "{h:?}");
    assert!(!h.cpu_model.is_empty() && !h.kernel.is_empty(), "{h:?}");
    eprintln!("host: {} CPUs, {}, kernel {}, hypervisor: {}", h.cpus.len(), h.cpu_model, h.kernel, h.hypervisor);
}

fn a_poke_through_the_alias_runs_after_sync_core() {
    if host().is_none() {
        return;
    }
    let text = TextMapping::new(0x10_0000_0000, &returning(41)).expect("maps");
    let f = function(&text);
    assert_eq!(f(), 41);
    text.poke(text.base() + 1, &[42]);
    assert_eq!(text.read(text.base() + 1), 42, "the executable view shows the store");
    hw::sync_core().expect("sync");
    assert_eq!(f(), 42);
}

fn another_thread_runs_the_new_bytes_once_the_sync_returned() {
    if host().is_none() {
        return;
    }
    let text = TextMapping::new(0x10_0010_0000, &returning(41)).expect("maps");
    let f = function(&text);
    let (started, synced) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let after = Arc::new(AtomicU32::new(0));
    let (r, s, a) = (Arc::clone(&started), Arc::clone(&synced), Arc::clone(&after));
    let runner = std::thread::spawn(move || {
        let mut seen = std::collections::BTreeSet::from([f()]);
        r.store(true, Ordering::Release);
        while !s.load(Ordering::Acquire) {
            seen.insert(f());
        }
        a.store(f(), Ordering::Release);
        seen
    });
    // Let the runner execute the old bytes for a while, then poke, sync and tell it.
    while !started.load(Ordering::Acquire) {
        std::hint::spin_loop();
    }
    for _ in 0..10_000 {
        std::hint::spin_loop();
    }
    text.poke(text.base() + 1, &[43]);
    hw::sync_core().expect("sync");
    synced.store(true, Ordering::Release);
    let seen = runner.join().expect("runner");
    assert_eq!(after.load(Ordering::Acquire), 43, "after text_poke_sync() the new bytes run");
    assert!(seen.iter().all(|v| [41, 43].contains(v)), "only whole images run: {seen:?}");
}

fn a_guest_address_already_mapped_is_refused_not_replaced() {
    if host().is_none() {
        return;
    }
    let first = TextMapping::new(0x10_0020_0000, &returning(7)).expect("maps");
    let second = TextMapping::new(0x10_0020_0000, &returning(8)).expect_err("the address is taken");
    assert!(matches!(second, Refusal::Mapping { addr: 0x10_0020_0000, .. }), "{second}");
    assert_eq!(function(&first)(), 7, "the first mapping is intact");
    let odd = TextMapping::new(0x10_0030_0000, &[0x90; 100]).expect_err("not whole pages");
    assert!(odd.to_string().contains("not whole pages"), "{odd}");
}

/// A session's hook that faults itself (a pokesim bug, or memory the guest corrupted).
struct FaultingHook;

impl hw::GuestHooks for FaultingHook {
    fn int3(&self, _: usize, _: &cpu_model::Regs) -> Option<cpu_model::Regs> {
        None
    }
    fn fault(&self, _: usize, _: libc::c_int, _: u64) {
        let bad = std::hint::black_box(8usize) as *const u64;
        // SAFETY: none — this read faults on purpose (nothing is mapped at address 8).
        let v = unsafe { bad.read_volatile() };
        std::hint::black_box(v);
    }
    fn step(&self, _: usize, _: &cpu_model::Regs) -> hw::Step {
        hw::Step::Stop
    }
}

/// The child side of [`a_fault_the_harness_cannot_attribute_is_reported_with_status_3`]: a
/// guest at `ud2`, whose `SIGILL` calls the faulting hook.
fn fault_in_a_hook() {
    let Some(h) = host() else { return };
    let mut page = vec![0xcc; 4096];
    page[..2].copy_from_slice(&[0x0f, 0x0b]);
    let text = TextMapping::new(0x10_0040_0000, &page).expect("maps");
    let regs = cpu_model::Regs { rip: text.base(), rflags: 0x202, ..Default::default() };
    let range = (text.base(), text.base() + 4096);
    // The first SIGILL ends the process from inside the hook; the bound only keeps a broken
    // harness from spinning forever (the parent then sees exit 0 and fails).
    hw::run_guests_with(&[regs], range, &h.cpus, &FaultingHook, |_| {
        for _ in 0..1u64 << 32 {
            std::hint::spin_loop();
        }
    });
}

fn a_fault_the_harness_cannot_attribute_is_reported_with_status_3() {
    if std::env::var_os("POKESIM_HW_FAULT_CHILD").is_some() {
        fault_in_a_hook();
        return;
    }
    if host().is_none() {
        return;
    }
    let me = std::env::current_exe().expect("the test binary");
    let out = std::process::Command::new(me)
        .args(["--exact", "a_fault_the_harness_cannot_attribute_is_reported_with_status_3", "--nocapture"])
        .env("POKESIM_HW_FAULT_CHILD", "1")
        .output()
        .expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{err}");
    assert!(err.contains("pokesim hw: SIGSEGV at rip 0x") && err.contains("outside guest code"), "{err}");
}

/// A service for [`native_calls_return_fault_and_bail_back_to_rust`]: returns its first
/// argument + 1, or, given 0, gives the call up.
extern "C" fn plus_one_or_bail(a: u64, _: u64, _: u64, _ret: u64) -> u64 {
    if a == 0 {
        hw::ccall::bail();
    }
    a + 1
}

fn native_calls_return_fault_and_bail_back_to_rust() {
    use hw::ccall::{call, Ended, Watch};
    use sim_core::kernel_image::{KernelImage, Service, KCODE_BASE};
    if host().is_none() {
        return;
    }
    // Three functions: `lea rax, [rdi + rsi]; ret`; a load from address 0; a tail call of the
    // text_poke slot of the service page with its first argument.
    let mut code = vec![0x48, 0x8d, 0x04, 0x37, 0xc3];
    let (load, tail) = (KCODE_BASE + 16, KCODE_BASE + 32);
    code.resize(16, 0xcc);
    code.extend([0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0, 0xc3]);
    code.resize(32, 0xcc);
    code.push(0xe9);
    let rel = Service::TextPoke.addr().wrapping_sub(tail + 5) as u32;
    code.extend(rel.to_le_bytes());
    let image = KernelImage {
        source: "test.c".into(),
        hash: "0".into(),
        code,
        data: vec![0; 64],
        symbols: Default::default(),
        lines: Vec::new(),
    };
    let services = [plus_one_or_bail as *const () as usize; Service::ALL.len()];
    let map = hw::kernel_map::KernelMapping::new(&image, &[], &services).expect("maps the image");
    assert!(hw::kernel_map::KernelMapping::new(&image, &[], &services).is_err(), "an address already taken is refused");
    let watch = Watch::default();
    // The signal handlers that let a fault escape are installed for a run of guests (none here).
    let (ended, _) = hw::run_guests(&[], (0x1000, 0x2000), &[], || {
        // SAFETY: each entry is one of the functions above, of the System V ABI, on the image's
        // mapped patcher stack or this thread's; nothing between here and the C needs dropping.
        unsafe {
            [
                call(KCODE_BASE, [40, 2, 0], map.stack_top(), &watch),
                call(load, [0; 3], 0, &watch),
                call(tail, [6, 0, 0], map.stack_top(), &watch),
                call(tail, [0; 3], 0, &watch),
            ]
        }
    });
    assert_eq!(ended[0], Ended::Returned(42));
    assert_eq!(ended[1], Ended::Faulted { signo: libc::SIGSEGV, rip: load, addr: 0 });
    assert_eq!(ended[2], Ended::Returned(7), "the service page's stub reaches the host function");
    assert_eq!(ended[3], Ended::Bailed);
}

fn main() {
    skippable::main(
        skippable::real_cpus(),
        &[
            ("the_probe_names_the_host", the_probe_names_the_host),
            ("a_poke_through_the_alias_runs_after_sync_core", a_poke_through_the_alias_runs_after_sync_core),
            (
                "another_thread_runs_the_new_bytes_once_the_sync_returned",
                another_thread_runs_the_new_bytes_once_the_sync_returned,
            ),
            (
                "a_guest_address_already_mapped_is_refused_not_replaced",
                a_guest_address_already_mapped_is_refused_not_replaced,
            ),
            (
                "a_fault_the_harness_cannot_attribute_is_reported_with_status_3",
                a_fault_the_harness_cannot_attribute_is_reported_with_status_3,
            ),
            ("native_calls_return_fault_and_bail_back_to_rust", native_calls_return_fault_and_bail_back_to_rust),
        ],
    );
}
