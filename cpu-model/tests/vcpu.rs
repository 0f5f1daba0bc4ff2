//! A vCPU on hand-written code: trap delivery, faults, serialization, the simulated TSC, and
//! the private view (a store to the truth is invisible until the view catches up).

use std::rc::Rc;

use cpu_model::testing::{LogTruth, Pick};
use cpu_model::{Fault, FetchModel, Layout, Reg, Regs, SharedRegion, StepOutcome, Vcpu, PAGE_SIZE};

const TEXT: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

fn layout() -> Layout {
    Layout { text_base: TEXT, text_len: PAGE_SIZE, data_base: DATA, data_len: PAGE_SIZE }
}

fn vcpu(code: &[u8]) -> (Vcpu, LogTruth) {
    let mut text = vec![0xcc; PAGE_SIZE as usize];
    text[..code.len()].copy_from_slice(code);
    let data = Rc::new(SharedRegion::new(DATA, PAGE_SIZE));
    let mut regs = Regs { rip: TEXT, rflags: 0x202, ..Regs::default() };
    regs.set(Reg::Rsp, DATA + 0x800);
    let v = Vcpu::new(0, layout(), &text, data, FetchModel::PESSIMISTIC, &regs).unwrap();
    (v, LogTruth { base: TEXT, init: text, stores: Vec::new() })
}

#[test]
fn int3_traps_with_rip_after_the_int3() {
    let (mut v, t) = vcpu(&[0x90, 0xcc]);
    assert_eq!(v.step(&t, &mut Pick(0)).unwrap().1, StepOutcome::Normal);
    let (insn, out) = v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(insn.bytes(), &[0xcc]);
    match out {
        StepOutcome::Int3(regs) => assert_eq!(regs.rip, TEXT + 2),
        other => panic!("expected an INT3 trap, got {other:?}"),
    }
}

#[test]
fn faults_are_reported_not_run() {
    for (code, want) in [
        (&[0xf4][..], "Unsupported"),                             // hlt
        (&[0x0f, 0x0b][..], "Unsupported"),                       // ud2
        (&[0x0f, 0x05][..], "Unsupported"),                       // syscall
        (&[0xcd, 0x80][..], "Unsupported"),                       // int 0x80
        (&[0x06][..], "InvalidOpcode"),                           // push es: invalid in 64-bit mode
        (&[0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0x50][..], "Engine"), // mov rax, [0x50000000]: unmapped
    ] {
        let (mut v, t) = vcpu(code);
        let (_, out) = v.step(&t, &mut Pick(0)).unwrap();
        let StepOutcome::Fault(f) = out else { panic!("{code:02x?}: expected a fault, got {out:?}") };
        assert!(format!("{f:?}").starts_with(want), "{code:02x?}: {f:?}");
    }
    // Divide by zero reaches the interrupt hook as vector 0.
    let (mut v, t) = vcpu(&[0x31, 0xc9, 0xf7, 0xf1]); // xor ecx, ecx; div ecx
    v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(v.step(&t, &mut Pick(0)).unwrap().1, StepOutcome::Fault(Fault::Interrupt(0)));
}

#[test]
fn rdtsc_returns_the_simulated_counter() {
    // nop; nop; rdtsc — the counter is 16 per own step, never the host clock.
    let (mut v, t) = vcpu(&[0x90, 0x90, 0x0f, 0x31]);
    for _ in 0..3 {
        v.step(&t, &mut Pick(0)).unwrap();
    }
    let regs = v.regs().unwrap();
    assert_eq!((regs.get(Reg::Rax), regs.get(Reg::Rdx)), (48, 0));
}

#[test]
fn the_view_stays_stale_until_it_catches_up_or_serializes() {
    // mov eax, 1; jmp back to it.
    let (mut v, mut t) = vcpu(&[0xb8, 1, 0, 0, 0, 0xeb, 0xf9]);
    v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(v.regs().unwrap().get(Reg::Rax), 1);
    v.step(&t, &mut Pick(0)).unwrap(); // jmp
                                       // The patcher stores imm = 2. Choice 0 keeps the unit at its old snapshot.
    t.stores.push((TEXT + 1, vec![2]));
    let (insn, _) = v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(insn.bytes(), &[0xb8, 1, 0, 0, 0]);
    assert_eq!(v.regs().unwrap().get(Reg::Rax), 1, "the stale view executed the old immediate");
    v.step(&t, &mut Pick(0)).unwrap(); // jmp
                                       // Choosing the newest epoch shows the store: the engine's cached block was invalidated.
    let (insn, _) = v.step(&t, &mut Pick(1)).unwrap();
    assert_eq!(insn.bytes(), &[0xb8, 2, 0, 0, 0]);
    assert_eq!(insn.epochs(), &[0, 1, 0, 0, 0]);
    assert_eq!(v.regs().unwrap().get(Reg::Rax), 2);
    // Another store, then serialization: the next fetch needs no decision and sees it.
    t.stores.push((TEXT + 1, vec![3]));
    v.serialize(&t).unwrap();
    v.step(&t, &mut Pick(0)).unwrap(); // jmp
    v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(v.regs().unwrap().get(Reg::Rax), 3);
}

#[test]
fn cpuid_serializes() {
    // cpuid; mov eax, 1 — the store to the immediate lands before cpuid completes.
    let (mut v, mut t) = vcpu(&[0x0f, 0xa2, 0xb8, 1, 0, 0, 0]);
    t.stores.push((TEXT + 3, vec![7]));
    let (_, out) = v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(out, StepOutcome::Serialized);
    assert!(v.view().is_exact(&t));
    v.step(&t, &mut Pick(0)).unwrap();
    assert_eq!(v.regs().unwrap().get(Reg::Rax), 7);
}

/// Engines are pooled per thread (`engine.rs`): an engine a vCPU used goes back as new. A
/// vCPU on a reused engine — after another pushed onto its x87 stack and took a divide fault —
/// steps exactly like one on a new engine (made on a new thread, whose pool is empty): same
/// outcomes, same registers after every step.
#[test]
fn a_reused_engine_runs_exactly_like_a_new_one() {
    // fnstsw ax (the x87 status word: its TOP field moves with fld1); pushfq; pop rbx; rdtsc; nop
    const PROBE: &[u8] = &[0xdf, 0xe0, 0x9c, 0x5b, 0x0f, 0x31, 0x90];
    fn probe() -> Vec<(StepOutcome, Regs)> {
        let (mut v, t) = vcpu(PROBE);
        (0..5).map(|_| (v.step(&t, &mut Pick(0)).unwrap().1, v.regs().unwrap())).collect()
    }
    let fresh = std::thread::spawn(probe).join().unwrap();
    assert!(fresh.iter().all(|(o, _)| *o == StepOutcome::Normal), "{fresh:?}");
    {
        // fld1; fld1; xor ecx, ecx; div ecx
        let dirty = [0xd9, 0xe8, 0xd9, 0xe8, 0x31, 0xc9, 0xf7, 0xf1];
        let (mut v, t) = vcpu(&dirty);
        for _ in 0..4 {
            v.step(&t, &mut Pick(0)).unwrap();
        }
        let (mut w, t) = vcpu(PROBE);
        assert_eq!(w.step(&t, &mut Pick(0)).unwrap().1, StepOutcome::Normal);
        // (`v` still holds its engine: this one is another, so the check below is the reuse.)
        assert_eq!(w.regs().unwrap().get(Reg::Rax), fresh[0].1.get(Reg::Rax));
        drop(w);
        drop(v);
    }
    let reused = probe();
    assert_eq!(reused, fresh);
}
