//! The guest alone: before a session races a scenario's patching against its guests, every
//! text image its script passes through between batches — the initial (old) image and the
//! image after each batch (the new one) — runs natively with nothing patching, each vCPU on its
//! guest thread single-stepped from its first instruction until it has come back to its loop
//! head twice (one whole iteration). A guest that, by itself,
//!
//! - faults (any signal), or executes an INT3 (padding, or an INT3 in the image: nothing is
//!   in progress to claim it),
//! - leaves the text (jumps, calls or returns anywhere else — the instruction that did is
//!   named),
//! - moves its stack pointer out of its own stack (the instruction that did is named),
//! - uses the FS or GS segment (`fs:`/`gs:` operands, `rdfsbase`, `wrfsbase`, `rdgsbase`,
//!   `wrgsbase`, `swapgs`: the guest runs inside this process, whose FS base holds its
//!   thread-local storage), or
//! - does not come back to its loop head within [`MAX_STEPS`] instructions (it spins),
//!
//! is refused ([`Refusal::Guest`]) with the vCPU, the image, the instruction and its address:
//! whatever it does in a session is its own doing, never a verdict on the kernel. An armed
//! kprobe's INT3 is replaced by the probed instruction's first byte (the guest alone, without
//! any patching client). The instruction that is about to break a rule is not run: the vCPU
//! restarts instead.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use cpu_model::Regs;
use iced_x86::{Code, Decoder, DecoderOptions, Register};
use sim_core::Plan;

use crate::guest::{GuestHooks, Step};
use crate::{DataMapping, Refusal, TextMapping};

/// Instructions a vCPU may run before it has come back to its loop head twice.
pub const MAX_STEPS: u64 = 10_000;
/// Loop-head visits (seen by a step, so the entry does not count) that make an iteration.
const HEADS: u32 = 2;
/// Wall time one image may take: a guest that stops being single-stepped (it cleared
/// `EFLAGS.TF`) or is never scheduled is refused rather than waited for.
const MAX_TIME: Duration = Duration::from_secs(10);
/// The instructions that read or write a segment base.
const BASE_INSNS: [Code; 9] = [
    Code::Rdfsbase_r32,
    Code::Rdfsbase_r64,
    Code::Rdgsbase_r32,
    Code::Rdgsbase_r64,
    Code::Wrfsbase_r32,
    Code::Wrfsbase_r64,
    Code::Wrgsbase_r32,
    Code::Wrgsbase_r64,
    Code::Swapgs,
];

/// Runs every distinct image of `images` (the first is the initial one, then one after each
/// batch: [`crate::session::script_images`]) alone on guest threads on `cpus`; the first
/// misbehaviour found, as a refusal.
pub fn check(plan: &Plan, images: &[Vec<u8>], cpus: &[usize]) -> Result<(), Refusal> {
    for (i, image) in images.iter().enumerate() {
        if images[..i].contains(image) {
            continue;
        }
        let which = if i == 0 { "the initial (old) image".to_string() } else { format!("the image after batch {i}") };
        if let Some((cpu, problem)) = run_image(plan, &unprobed(plan, image), cpus)? {
            return Err(Refusal::Guest(format!(
                "vCPU {cpu} on {which}: {problem} — run alone on real CPUs with no patching race, so the fault \
                 is the scenario's code, not the kernel's"
            )));
        }
    }
    Ok(())
}

/// `image` with every kprobe's INT3 replaced by the first byte of the instruction it probes.
fn unprobed(plan: &Plan, image: &[u8]) -> Vec<u8> {
    let base = plan.image.layout.text_base;
    let mut out = image.to_vec();
    for k in &plan.kprobes {
        let at = k.addr.checked_sub(base).map(|a| a as usize).filter(|&a| a < out.len());
        if let (Some(at), Some(&first)) = (at, k.insn.first()) {
            if out[at] == 0xcc {
                out[at] = first;
            }
        }
    }
    out
}

/// One image alone: the first vCPU that misbehaved, and how.
fn run_image(plan: &Plan, image: &[u8], cpus: &[usize]) -> Result<Option<(usize, String)>, Refusal> {
    let l = plan.image.layout;
    let text = TextMapping::new(l.text_base, image)?;
    let _data = DataMapping::new(l.data_base, l.data_len as usize)?;
    let dry = Dry {
        text: &text,
        range: (l.text_base, l.text_base + image.len() as u64),
        loop_head: plan.image.loop_head,
        stacks: plan.image.cpu_data.iter().map(|d| (d.stack_floor, d.stack_top)).collect(),
        tracks: plan.image.cpu_regs.iter().map(|_| Mutex::new(Track::default())).collect(),
        finished: plan.image.cpu_regs.iter().map(|_| AtomicBool::new(false)).collect(),
    };
    for (cpu, regs) in plan.image.cpu_regs.iter().enumerate() {
        if let Some(problem) = dry.broken(cpu, regs, None) {
            return Ok(Some((cpu, problem)));
        }
    }
    let (_, reports) = crate::guest::run_guests_traced(&plan.image.cpu_regs, dry.range, cpus, &dry, |_| {
        let started = Instant::now();
        while !dry.finished.iter().all(|f| f.load(Ordering::Acquire)) && started.elapsed() < MAX_TIME {
            std::thread::yield_now();
        }
    });
    if let Some(g) = reports.iter().find(|g| !g.ran) {
        return Err(Refusal::Guard(format!("a guest thread could not install its seccomp guard or FS/GS slot: {g:?}")));
    }
    let problems = dry.tracks.iter().enumerate().map(|(cpu, t)| {
        let t = t.lock().unwrap_or_else(|e| e.into_inner());
        let late = (t.heads < HEADS).then(|| {
            let at = t.last.map_or("its entry".to_string(), |a| dry.insn(a));
            format!(
                "did not come back to its loop head twice within {} s (stopped being single-stepped at {at})",
                MAX_TIME.as_secs()
            )
        });
        t.problem.clone().or(late).map(|p| (cpu, p))
    });
    let first = problems.flatten().next();
    Ok(first)
}

/// What one vCPU did.
#[derive(Default)]
struct Track {
    steps: u64,
    heads: u32,
    /// The instruction stepped last.
    last: Option<u64>,
    problem: Option<String>,
}

/// The dry run of one image, as the guests' hooks see it.
struct Dry<'a> {
    text: &'a TextMapping,
    range: (u64, u64),
    loop_head: u64,
    /// Per vCPU, its stack: the lowest address and the top.
    stacks: Vec<(u64, u64)>,
    tracks: Vec<Mutex<Track>>,
    /// Per vCPU: it came back to its loop head twice, or misbehaved.
    finished: Vec<AtomicBool>,
}

impl Dry<'_> {
    fn in_text(&self, addr: u64) -> bool {
        (self.range.0..self.range.1).contains(&addr)
    }

    /// The instruction at `addr`, decoded, or `None` outside the text.
    fn decode(&self, addr: u64) -> Option<(iced_x86::Instruction, Vec<u8>)> {
        if !self.in_text(addr) {
            return None;
        }
        let bytes: Vec<u8> = (addr..self.range.1.min(addr + 15)).map(|a| self.text.read(a)).collect();
        Some((Decoder::with_ip(64, &bytes, addr, DecoderOptions::NONE).decode(), bytes))
    }

    /// "`insn` at addr".
    fn insn(&self, addr: u64) -> String {
        match self.decode(addr) {
            Some((_, bytes)) => format!("`{}` at {addr:#x}", sim_core::trace::disassemble(addr, &bytes)),
            None => format!("{addr:#x} (outside the text)"),
        }
    }

    /// What is wrong with vCPU `cpu` about to run the instruction at `regs.rip`, after the one
    /// at `last`.
    fn broken(&self, cpu: usize, regs: &Regs, last: Option<u64>) -> Option<String> {
        let after = |what: &str| last.map_or(what.to_string(), |l| format!("{} {what}", self.insn(l)));
        if !self.in_text(regs.rip) {
            return Some(after(&format!("leaves the text (to {:#x})", regs.rip)));
        }
        let (floor, top) = self.stacks[cpu];
        if !(floor..=top).contains(&regs.sp()) {
            let moved = format!(
                "moves the stack pointer out of its stack (rsp = {:#x}, the stack is {floor:#x}..{top:#x})",
                regs.sp()
            );
            return Some(after(&moved));
        }
        let (insn, _) = self.decode(regs.rip)?;
        let segment = matches!(insn.segment_prefix(), Register::FS | Register::GS);
        if segment || BASE_INSNS.contains(&insn.code()) {
            return Some(format!(
                "{} uses the FS or GS segment, which pokesim hw cannot give the guest: it runs inside pokesim's \
                 process, whose FS base holds its thread-local storage",
                self.insn(regs.rip)
            ));
        }
        None
    }

    /// Records vCPU `cpu`'s first problem and marks it finished.
    fn refuse(&self, cpu: usize, t: &mut Track, problem: String) {
        if !self.finished[cpu].load(Ordering::Acquire) {
            t.problem.get_or_insert(problem);
            self.finished[cpu].store(true, Ordering::Release);
        }
    }
}

impl GuestHooks for Dry<'_> {
    fn int3(&self, cpu: usize, regs: &Regs) -> Option<Regs> {
        let at = regs.rip.wrapping_sub(1);
        let mut t = self.tracks[cpu].lock().unwrap_or_else(|e| e.into_inner());
        let problem = format!(
            "executes an INT3 at {at:#x} with no patch in progress (INT3 padding, or an INT3 in the image): \
             nothing would claim it"
        );
        self.refuse(cpu, &mut t, problem);
        None
    }

    fn fault(&self, cpu: usize, signo: libc::c_int, rip: u64) {
        let mut t = self.tracks[cpu].lock().unwrap_or_else(|e| e.into_inner());
        let problem = format!("faults ({}) at {}", crate::guest::signal_name(signo), self.insn(rip));
        self.refuse(cpu, &mut t, problem);
    }

    fn step(&self, cpu: usize, regs: &Regs) -> Step {
        let mut t = self.tracks[cpu].lock().unwrap_or_else(|e| e.into_inner());
        let last = t.last.replace(regs.rip);
        if let Some(problem) = self.broken(cpu, regs, last) {
            self.refuse(cpu, &mut t, problem);
            t.last = None;
            return Step::Restart;
        }
        t.steps += 1;
        if regs.rip == self.loop_head {
            t.heads += 1;
            if t.heads >= HEADS {
                self.finished[cpu].store(true, Ordering::Release);
            }
        }
        if t.steps > MAX_STEPS && t.heads < HEADS {
            let problem = format!(
                "does not come back to its loop head ({:#x}) within {MAX_STEPS} instructions (it spins: now at {})",
                self.loop_head,
                self.insn(regs.rip)
            );
            self.refuse(cpu, &mut t, problem);
        }
        Step::Continue
    }
}
