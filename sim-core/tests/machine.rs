//! The machine on a hand-built guest (no workload crate): the IPI rule of
//! `on_each_cpu(do_sync_core, …, 1)` — a vCPU inside the INT3 handler cannot acknowledge — and
//! replay of a recorded decision list.

use cpu_model::{Layout, Reg, Regs, SharedRegion, PAGE_SIZE};
use sim_core::event::Event;
use sim_core::sched::{RandomScheduler, Scheduler};
use sim_core::workload::CpuData;
use sim_core::{Decisions, GuestImage, Invariant, PatchAction, PokeRequest, Recorded, RunConfig, Verdict};

const TEXT: u64 = 0x10_0000;
const DATA: u64 = 0x20_0000;

struct Nothing;
impl Invariant for Nothing {
    fn at_loop_head(&mut self, _: usize, _: &Regs, _: &SharedRegion) -> Result<(), String> {
        Ok(())
    }

    fn reset(&mut self, _: usize, _: &SharedRegion) {}
}

/// `site: nop5; jmp site`, patched NOP5 <-> JMP32 +0 for `rounds` rounds.
fn tiny(cpus: usize, rounds: usize) -> GuestImage {
    let mut text = vec![0xcc; PAGE_SIZE as usize];
    text[..7].copy_from_slice(&[0x0f, 0x1f, 0x44, 0x00, 0x00, 0xeb, 0xf9]);
    let cpu_regs = (0..cpus)
        .map(|i| {
            let mut r = Regs { rip: TEXT, rflags: 0x202, ..Regs::default() };
            r.set(Reg::Rsp, DATA + (i as u64 + 2) * PAGE_SIZE - 64);
            r
        })
        .collect();
    let actions = (0..rounds)
        .map(|r| {
            let new = if r % 2 == 0 { vec![0xe9, 0, 0, 0, 0] } else { vec![0x0f, 0x1f, 0x44, 0x00, 0x00] };
            PatchAction::Batch(vec![PokeRequest::new(TEXT, new)])
        })
        .collect();
    GuestImage {
        name: "tiny".into(),
        site_owner: sim_core::SiteOwner::Alternatives,
        layout: Layout {
            text_base: TEXT,
            text_len: PAGE_SIZE,
            data_base: DATA,
            data_len: (cpus as u64 + 1) * PAGE_SIZE,
        },
        code: vec![(TEXT, 16)],
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
        cpu_data: (0..cpus as u64)
            .map(|i| CpuData {
                counters: (DATA, 0),
                stack_top: DATA + (i + 2) * PAGE_SIZE - 64,
                stack_floor: DATA + (i + 1) * PAGE_SIZE,
            })
            .collect(),
    }
}

/// A random scheduler that checks the IPI rule on every enabled set it is offered.
struct Watch {
    inner: RandomScheduler,
    blocked_by_handler: u64,
}

impl Scheduler for Watch {
    fn pick(&mut self, tick: u64, enabled: &[Event], d: &mut Decisions) -> usize {
        for e in enabled {
            if let Event::HandlerStep(i) = e {
                assert!(
                    !enabled.contains(&Event::IpiDeliver(*i)),
                    "tick {tick}: cpu{i} may take an IPI inside the handler"
                );
                if !enabled.contains(&Event::Patcher(0)) && !enabled.iter().any(|e| matches!(e, Event::IpiDeliver(_))) {
                    // The patcher waits, and the only vCPU that owes an acknowledgement is in
                    // its handler: the sync is held up by the handler, as in the kernel.
                    self.blocked_by_handler += 1;
                }
            }
        }
        self.inner.pick(tick, enabled, d)
    }
}

#[test]
fn a_vcpu_in_the_int3_handler_cannot_acknowledge_the_sync() {
    let mut watch = Watch { inner: RandomScheduler, blocked_by_handler: 0 };
    for seed in 0..200 {
        let config = RunConfig { cpus: 2, ..RunConfig::default() };
        let o = sim_core::run(&config, tiny(2, 8), &mut watch, Decisions::seeded(seed)).unwrap();
        assert_eq!(o.verdict, Verdict::Pass, "seed {seed}: {:?}", o.violation());
    }
    assert!(watch.blocked_by_handler > 0, "no sync was ever held up by a handler: the rule went untested");
}

#[test]
fn a_recorded_decision_list_replays_the_same_run() {
    let config = RunConfig { cpus: 3, ..RunConfig::default() };
    let first = sim_core::run(&config, tiny(3, 6), &mut RandomScheduler, Decisions::seeded(11)).unwrap();
    let again = sim_core::run(
        &config,
        tiny(3, 6),
        &mut RandomScheduler,
        Decisions::replay(Recorded::from_log(first.decisions.clone())),
    )
    .unwrap();
    assert_eq!(first, again);
    assert!(!first.decisions.is_empty());
}

#[test]
fn a_list_recorded_under_another_scenario_is_stale() {
    let config = RunConfig { cpus: 3, ..RunConfig::default() };
    let first = sim_core::run(&config, tiny(3, 6), &mut RandomScheduler, Decisions::seeded(11)).unwrap();
    let fewer = RunConfig { cpus: 2, ..RunConfig::default() };
    let err =
        sim_core::run(&fewer, tiny(2, 6), &mut RandomScheduler, Decisions::replay(Recorded::from_log(first.decisions)))
            .unwrap_err();
    assert!(err.to_string().contains("stale decision list"), "{err}");
}
