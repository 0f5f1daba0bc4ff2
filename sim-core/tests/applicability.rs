//! The applicability table on a hand-built guest (no workload crate): each kind of edit
//! ([`sim_core::protocol::Edits`]) acts on a plan exactly when the scenario has what it edits,
//! and [`Plan::new`] refuses it otherwise, naming the mutant.

use cpu_model::{Layout, Reg, Regs, SharedRegion, PAGE_SIZE};
use sim_core::workload::CpuData;
use sim_core::{
    GuestImage, Invariant, Kprobe, Mutant, PatchAction, Plan, PokeRequest, Protocol, RunConfig, SimError, Subject,
};

const TEXT: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;
const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];

struct Nothing;
impl Invariant for Nothing {
    fn at_loop_head(&mut self, _: usize, _: &Regs, _: &SharedRegion) -> Result<(), String> {
        Ok(())
    }

    fn reset(&mut self, _: usize, _: &SharedRegion) {}
}

/// `a: nop5; b: nop5; jmp a`; each action one batch of `(site index, new bytes)` in the order given.
fn image(batches: &[&[(u64, [u8; 5])]]) -> GuestImage {
    let cpus = 2;
    let mut text = vec![0xcc; PAGE_SIZE as usize];
    text[..12].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00, 0x0f, 0x1f, 0x44, 0x00, 0x00, 0xeb, 0xf4]);
    let cpu_regs = (0..cpus)
        .map(|i| {
            let mut r = Regs { rip: TEXT, rflags: 0x202, ..Regs::default() };
            r.set(Reg::Rsp, DATA + (i + 2) * PAGE_SIZE - 64);
            r
        })
        .collect();
    let actions = batches
        .iter()
        .map(|b| PatchAction::Batch(b.iter().map(|&(i, new)| PokeRequest::new(TEXT + 5 * i, new.to_vec())).collect()))
        .collect();
    GuestImage {
        name: "tiny".into(),
        site_owner: sim_core::SiteOwner::Alternatives,
        layout: Layout { text_base: TEXT, text_len: PAGE_SIZE, data_base: DATA, data_len: (cpus + 1) * PAGE_SIZE },
        code: vec![(TEXT, 12)],
        text,
        cpu_regs,
        loop_head: TEXT,
        actions,
        callers: Vec::new(),
        irq_call: None,
        irq_cpu: None,
        kprobes: Vec::new(),
        ool_area: (TEXT + 0xf00, 0x100),
        invariant: Box::new(Nothing),
        cpu_data: (0..cpus)
            .map(|i| CpuData {
                counters: (DATA, 0),
                stack_top: DATA + (i + 2) * PAGE_SIZE - 64,
                stack_floor: DATA + (i + 1) * PAGE_SIZE,
            })
            .collect(),
    }
}

const JMP0: [u8; 5] = [0xe9, 0, 0, 0, 0];
const CALL0: [u8; 5] = [0xe8, 0, 0, 0, 0];

/// NOP5 -> JMP +0 -> NOP5 at site 0: only NOPs (a JMP +0 is one).
fn nops() -> GuestImage {
    image(&[&[(0, JMP0)], &[(0, NOP5)]])
}

/// `Err(reason)` if `Plan::new` refuses `mutants` as unable to act, `Ok` if it builds.
fn plan(protocol: Protocol, mutants: &[Mutant], image: GuestImage, kprobes: &[Kprobe]) -> Result<(), String> {
    let config = RunConfig { protocol, mutants: mutants.to_vec(), ..RunConfig::default() };
    match Plan::new(&config, image, kprobes) {
        Ok(_) => Ok(()),
        Err(SimError::Invalid { subject: Subject::Mutants, message }) => Err(message),
        Err(e) => panic!("{protocol} {mutants:?}: not a mutant refusal: {e}"),
    }
}

fn refused(protocol: Protocol, m: Mutant, image: GuestImage, kprobes: &[Kprobe], why: &str) {
    let e = plan(protocol, &[m], image, kprobes).expect_err(&format!("{m} acts"));
    assert!(e.contains(m.name()) && e.contains(why), "{m}: {e}");
}

#[test]
fn program_edits_act_where_the_program_changes() {
    for m in [Mutant::NoSyncAfterInt3, Mutant::NoInt3, Mutant::NoWmb, Mutant::TailBeforeInt3] {
        plan(Protocol::Linux616, &[m], nops(), &[]).unwrap();
    }
    let e = plan(Protocol::Linux55, &[Mutant::NoInt3, Mutant::NoSyncAfterTail], nops(), &[]).unwrap_err();
    assert!(e.contains("no-sync-after-tail") && e.contains("together with no-int3"), "{e}");
    refused(Protocol::Linux616, Mutant::NoInt3, image(&[]), &[], "queues no text_poke_bp() batch");
}

#[test]
fn handler_edits_act_where_the_handler_emulates_what_they_change() {
    refused(Protocol::Linux616, Mutant::DetourHandler, nops(), &[], "is a NOP");
    plan(Protocol::Linux616, &[Mutant::DetourHandler], image(&[&[(0, CALL0)], &[(0, NOP5)]]), &[]).unwrap();
    refused(Protocol::Linux616, Mutant::JccNoInvert, nops(), &[], "emulates no Jcc");
    refused(Protocol::Linux616, Mutant::NoRmb, nops(), &[], "no scenario makes it act");
    refused(Protocol::Linux616, Mutant::InstrumentedHandler, image(&[]), &[], "writes no patching INT3");
    refused(Protocol::Linux616, Mutant::EmulateOld, image(&[&[(0, NOP5)]]), &[], "the bytes it already holds");
    for m in [Mutant::EmulateOld, Mutant::InstrumentedHandler] {
        plan(Protocol::Linux616, &[m], nops(), &[]).unwrap();
    }
    let e = plan(Protocol::Linux616, &[Mutant::NoInt3, Mutant::EmulateOld], nops(), &[]).unwrap_err();
    assert!(e.contains("emulate-old") && e.contains("writes no patching INT3"), "{e}");
}

#[test]
fn kprobe_and_batch_edits_act_where_there_is_a_kprobe_or_batch_they_change() {
    refused(Protocol::Linux616, Mutant::KprobeDisarmNoSync, nops(), &[], "arms and disarms itself");
    let client = Kprobe { addr: TEXT + 10, armed: true, cycles: 2 };
    plan(Protocol::Linux616, &[Mutant::KprobeDisarmNoSync], nops(), &[client]).unwrap();
    refused(Protocol::Linux616, Mutant::NoTextReserved, nops(), &[Kprobe::armed(TEXT + 10)], "no kprobe sits");
    plan(Protocol::Linux616, &[Mutant::NoTextReserved], nops(), &[Kprobe::armed(TEXT)]).unwrap();
    refused(Protocol::Linux616, Mutant::BatchNoOrderCheck, image(&[&[(0, JMP0), (1, JMP0)]]), &[], "ascending");
    plan(Protocol::Linux616, &[Mutant::BatchNoOrderCheck], image(&[&[(1, JMP0), (0, JMP0)]]), &[]).unwrap();
    refused(Protocol::Linux616, Mutant::BatchNoFullCheck, image(&[&[(1, JMP0), (0, JMP0)]]), &[], "256 entries");
}
