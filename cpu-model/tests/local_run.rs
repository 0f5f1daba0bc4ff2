//! Local runs (`Vcpu::run_local`, DESIGN.md §2.5b) against single steps of the same code:
//! where they stop (a patchable byte, a kprobe's address, the pause address, an instruction only
//! a single step runs, the limit), what they count, and which instruction a fault names.

use std::rc::Rc;

use cpu_model::testing::{LogTruth, Pick};
use cpu_model::{Fault, FetchModel, Layout, Reg, Regs, SharedRegion, StepOutcome, Vcpu, PAGE_SIZE};

const TEXT: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

fn vcpu(code: &[u8]) -> (Vcpu, LogTruth) {
    let layout = Layout { text_base: TEXT, text_len: PAGE_SIZE, data_base: DATA, data_len: PAGE_SIZE };
    let mut text = vec![0xcc; PAGE_SIZE as usize];
    text[..code.len()].copy_from_slice(code);
    let data = Rc::new(SharedRegion::new(DATA, PAGE_SIZE));
    let mut regs = Regs { rip: TEXT, rflags: 0x202, ..Regs::default() };
    regs.set(Reg::Rsp, DATA + 0x800);
    let v = Vcpu::new(0, layout, &text, data, FetchModel::PESSIMISTIC, &regs).unwrap();
    (v, LogTruth { base: TEXT, init: text, stores: Vec::new() })
}

const NOP: u8 = 0x90;

#[test]
fn a_run_stops_before_a_patchable_byte_a_kprobe_and_the_pause() {
    let code = [NOP; 8];
    for (patchable, stops, pause, want) in [
        (vec![(TEXT + 5, 1)], vec![], 0, 5),
        (vec![], vec![TEXT + 3], 0, 3),
        (vec![], vec![], TEXT + 6, 6),
        (vec![], vec![], 0, 8), // then the INT3 after the code: only a single step runs it
    ] {
        let (mut v, t) = vcpu(&code);
        v.enable_local_runs(&patchable, &stops, pause).unwrap();
        let run = v.run_local(100, &t).unwrap();
        assert_eq!((run.steps, run.fault, v.rip(), v.steps()), (want, None, TEXT + want, want));
    }
}

#[test]
fn a_run_starting_at_the_pause_address_runs_it_once_and_stops_on_coming_back() {
    // top: nop; nop; jmp top
    let (mut v, t) = vcpu(&[NOP, NOP, 0xeb, 0xfc]);
    v.enable_local_runs(&[], &[], TEXT).unwrap();
    let run = v.run_local(100, &t).unwrap();
    assert_eq!((run.steps, v.rip()), (3, TEXT));
    assert_eq!(v.run_local(2, &t).unwrap().steps, 2, "the limit stops it too");
}

#[test]
fn instructions_only_a_single_step_runs_stop_a_run_before_them() {
    for code in [&[0x0f, 0xa2][..], &[0x0f, 0x31], &[0x9d], &[0xfa], &[0xf4], &[0xcc]] {
        let mut text = vec![NOP, NOP];
        text.extend_from_slice(code);
        let (mut v, t) = vcpu(&text);
        v.enable_local_runs(&[], &[], 0).unwrap();
        let run = v.run_local(100, &t).unwrap();
        assert_eq!((run.steps, v.rip()), (2, TEXT + 2), "{code:02x?}");
    }
}

#[test]
fn a_fault_names_the_faulting_instruction_as_a_single_step_would() {
    // nop; nop; mov rax, [0x50000000] (unmapped)
    let code = [NOP, NOP, 0x48, 0x8b, 0x04, 0x25, 0, 0, 0, 0x50];
    let (mut single, t) = vcpu(&code);
    single.step(&t, &mut Pick(0)).unwrap();
    single.step(&t, &mut Pick(0)).unwrap();
    let (insn, outcome) = single.step(&t, &mut Pick(0)).unwrap();
    let (mut batched, t) = vcpu(&code);
    batched.enable_local_runs(&[], &[], 0).unwrap();
    let run = batched.run_local(100, &t).unwrap();
    assert_eq!(run.fault, Some((insn, outcome)));
    assert!(matches!(outcome, StepOutcome::Fault(Fault::Engine(_))));
    assert_eq!((run.steps, batched.steps(), batched.rip()), (3, single.steps(), single.rip()));
    assert_eq!(batched.regs().unwrap(), single.regs().unwrap());
}

#[test]
fn a_run_is_refused_without_local_runs_enabled() {
    let (mut v, t) = vcpu(&[NOP]);
    assert!(v.run_local(1, &t).is_err());
}
