//! The dry run: the program under test, checked before it is raced (issue 21, "the user's bug
//! blamed on the kernel").
//!
//! The guest runs alone on the simulator's own vCPU model ([`Vcpu`], the same pooled engines
//! the machine steps) with no patching at all: over the initial text (every site's old
//! instruction), with every request of the first patch batch written (every site's new
//! instruction), and — since a race shows any mix of patched and unpatched sites — with each
//! site flipped alone, as far as [`FLIP_BUDGET`] allows. A program that faults, leaves its
//! code (INT3 padding, the out-of-line area, the data region, unmapped memory), stores into
//! the text, executes an INT3, breaks the workload invariant (an unbalanced stack) at its loop
//! head, does not come back to its loop head, or never executes a site is broken without any
//! race: a run would report it as a kernel violation. Its failure names the image, the vCPU,
//! the address, the decoded instruction and the site.
//!
//! vCPUs differ only in their counter block and stack: the whole images run on the first and
//! the last vCPU (every other vCPU's accesses lie between theirs), the flipped ones on the
//! first.
//!
//! Bounds: each run completes [`PASSES`] full passes of the loop (arrivals at the loop head
//! after the start): the first reaches every site a pass reaches, the others show that the
//! loop repeats from the state it left (counters grown, stack balanced). A pass that executes
//! each instruction of the code at most [`RUNS_PER_BYTE`] times takes at most that many steps
//! per byte of code (an instruction is at least one byte), so a run gets
//! `PASSES × (RUNS_PER_BYTE × code bytes + 64)` steps; a loop that needs more (an inner loop
//! counting far, a spin) is refused as not returning.

use std::fmt;

use cpu_model::{Chooser, Epoch, Fault, FetchModel, SharedRegion, StepOutcome, Truth, Vcpu};
use sim_core::trace::disassemble;
use sim_core::{GuestImage, PatchAction, SimError, Subject};
use unicorn_engine::unicorn_const::uc_error;

/// Full passes of the loop each vCPU must complete in each image.
pub const PASSES: u64 = 3;
/// How often a pass may execute each byte's worth of code.
pub const RUNS_PER_BYTE: u64 = 4;
/// Steps every pass is allowed besides its code-size share (a loop of a few instructions).
const MIN_PASS_STEPS: u64 = 64;
/// What the flipped images may cost together, in squared bytes of code: each image is a fresh
/// engine whose code is translated anew, and the engine translates a block from every
/// instruction it starts at, so straight-line code costs its length squared (about 55 ms for
/// 1,000² bytes²·images on this machine). The budget keeps the flips near 60 ms: every site
/// of a program of 50 sites in 100 bytes of code, 8 sites in 250 bytes, none past 724 bytes.
pub const FLIP_BUDGET: u64 = 1 << 20;

/// Which text the dry run executes: the sites' old or new instructions, everywhere or with
/// one site the other way (a race shows any mix: a vCPU may fetch one site before and
/// another after it was patched).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteImage {
    /// The initial text: every site's old instruction.
    Old,
    /// Every request of the first batch written: every site's new instruction.
    New,
    /// Every site's old instruction but this one's new one.
    OldBut(usize),
    /// Every site's new instruction but this one's old one.
    NewBut(usize),
}

impl SiteImage {
    /// The images for `sites` sites in `code_bytes` bytes of code, in the order they run:
    /// both whole images, then each site flipped alone (with more than one site), for as many
    /// sites as [`FLIP_BUDGET`] allows.
    pub fn all(sites: usize, code_bytes: u64) -> Vec<SiteImage> {
        let affordable = (FLIP_BUDGET / (2 * code_bytes.max(1).pow(2))) as usize;
        let flips = if sites > 1 { sites.min(affordable) } else { 0 };
        let mut all = vec![SiteImage::Old, SiteImage::New];
        all.extend((0..flips).map(SiteImage::OldBut));
        all.extend((0..flips).map(SiteImage::NewBut));
        all
    }

    /// True if site `i` shows its new instruction.
    fn new_at(self, i: usize) -> bool {
        match self {
            SiteImage::Old => false,
            SiteImage::New => true,
            SiteImage::OldBut(k) => i == k,
            SiteImage::NewBut(k) => i != k,
        }
    }
}

impl fmt::Display for SiteImage {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SiteImage::Old => f.write_str("every site's old instruction"),
            SiteImage::New => f.write_str("every site's new instruction"),
            SiteImage::OldBut(k) => write!(f, "every site's old instruction but site {k}'s new one"),
            SiteImage::NewBut(k) => write!(f, "every site's new instruction but site {k}'s old one"),
        }
    }
}

/// What is wrong with the program.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Problem {
    /// The step faulted (invalid or refused instruction, exception, unmapped access).
    Fault(Fault),
    /// A store into the (read-only) text: self-modifying code.
    StoreIntoText,
    /// Execution went to `to`, outside the workload's code.
    Left {
        /// Where execution went.
        to: u64,
        /// What is there (INT3 padding, the data region, ...).
        region: &'static str,
    },
    /// An INT3 of the program itself: no patching owns it, the kernel would `die("int3")`.
    Int3,
    /// The workload invariant failed at the loop head.
    Invariant(String),
    /// No return to the loop head within the step bound.
    Spins(u64),
    /// A site executed with neither image.
    Unreached,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Problem::Fault(Fault::Engine(uc_error::READ_UNMAPPED | uc_error::READ_PROT)) => {
                f.write_str("reads memory outside its data (unmapped or protected)")
            }
            Problem::Fault(Fault::Engine(uc_error::WRITE_UNMAPPED)) => f.write_str("writes unmapped memory"),
            Problem::Fault(fault) => write!(f, "faults ({fault})"),
            Problem::StoreIntoText => f.write_str("stores into the text (self-modifying code)"),
            Problem::Left { to, region } => write!(f, "goes to {to:#x}, {region}, outside the workload's code"),
            Problem::Int3 => f.write_str("executes an INT3 no patching owns (the kernel would die(\"int3\"))"),
            Problem::Invariant(msg) => write!(f, "breaks the workload invariant at its loop head: {msg}"),
            Problem::Spins(steps) => {
                write!(f, "does not complete {PASSES} passes of its loop within {steps} steps")
            }
            Problem::Unreached => f.write_str("is never executed, with the old or the new instructions"),
        }
    }
}

/// A failed dry run: what, where, with which image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Failure {
    /// What went wrong.
    pub problem: Problem,
    /// The image that ran (`None`: judged over both, a site never reached).
    pub image: Option<SiteImage>,
    /// The vCPU that ran it.
    pub cpu: usize,
    /// The instruction's address (the site's, for an unreached site).
    pub addr: u64,
    /// The instruction, decoded.
    pub insn: String,
    /// The site the instruction is in, else the last site the vCPU executed (index in the
    /// first batch, file order for `custom`).
    pub site: Option<usize>,
    /// True if the instruction is the site's own.
    pub in_site: bool,
}

impl Failure {
    /// What the refusal is about: the site, or `fallback` when no site is involved.
    pub(crate) fn subject(&self, fallback: Subject) -> Subject {
        self.site.map_or(fallback, Subject::Site)
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Some(image) = self.image else {
            let site = self.site.map_or(String::new(), |i| format!("site {i} "));
            return write!(
                f,
                "{site}at {:#x} (`{}`) {}: patching it establishes nothing",
                self.addr, self.insn, self.problem
            );
        };
        write!(
            f,
            "the program is broken without any patching: with {}, vCPU {} at {:#x} (`{}`",
            image, self.cpu, self.addr, self.insn
        )?;
        match (self.site, self.in_site) {
            (Some(i), true) => write!(f, ", site {i}")?,
            (Some(i), false) => write!(f, ", after site {i}")?,
            (None, _) => {}
        }
        write!(f, ") {} — a race would blame the kernel for it", self.problem)
    }
}

/// What a clean dry run measured.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DryRun {
    /// Guest steps over every image and vCPU that ran.
    pub steps: u64,
}

/// The text as it is, never stored to: every byte is from epoch 0.
struct Fixed<'a> {
    base: u64,
    text: &'a [u8],
}

impl Truth for Fixed<'_> {
    fn now(&self) -> Epoch {
        0
    }

    fn store_range(&self, _: Epoch) -> (u64, u64) {
        (self.base, 0)
    }

    fn byte_at(&self, addr: u64, _: Epoch) -> (u8, Epoch) {
        (self.text[(addr - self.base) as usize], 0)
    }
}

/// No store, so never a choice to make.
struct First;

impl Chooser for First {
    fn choose(&mut self, _: usize) -> usize {
        0
    }
}

/// The sites: the first batch's requests, `(address, new bytes)`.
fn sites(image: &GuestImage) -> Vec<(u64, Vec<u8>)> {
    let first = image.actions.iter().find_map(|a| match a {
        PatchAction::Batch(reqs) => Some(reqs),
        _ => None,
    });
    first.map_or(Vec::new(), |reqs| reqs.iter().map(|r| (r.addr, r.new.clone())).collect())
}

/// Runs the program of `image` with the old, the new and the flipped images of its sites (see
/// the module documentation). `Ok(Err(failure))` is the program's fault (bad input);
/// `Err` is the simulator's or the environment's (an engine that cannot be created).
pub fn dry_run(image: &mut GuestImage) -> Result<Result<DryRun, Failure>, SimError> {
    let sites = sites(image);
    let code_bytes: u64 = image.code.iter().map(|&(_, l)| l).sum();
    let limit = PASSES * (RUNS_PER_BYTE * code_bytes + MIN_PASS_STEPS);
    let mut reached = vec![false; sites.len()];
    let mut steps = 0;
    for which in SiteImage::all(sites.len(), code_bytes) {
        let mut text = image.text.clone();
        for (_, (addr, new)) in sites.iter().enumerate().filter(|&(i, _)| which.new_at(i)) {
            // A request outside the text is the plan's to refuse (with its reason).
            let off = addr.wrapping_sub(image.layout.text_base) as usize;
            if let Some(bytes) = off.checked_add(new.len()).and_then(|end| text.get_mut(off..end)) {
                bytes.copy_from_slice(new);
            }
        }
        let mut run = Run { image, text: &text, sites: &sites, reached: &mut reached, which, limit };
        match run.all_cpus()? {
            Ok(n) => steps += n,
            Err(failure) => return Ok(Err(failure)),
        }
    }
    if let Some(i) = reached.iter().position(|&r| !r) {
        let (addr, _) = sites[i];
        let off = (addr - image.layout.text_base) as usize;
        let insn = disassemble(addr, &image.text[off..(off + 15).min(image.text.len())]);
        let failure =
            Failure { problem: Problem::Unreached, image: None, cpu: 0, addr, insn, site: Some(i), in_site: true };
        return Ok(Err(failure));
    }
    Ok(Ok(DryRun { steps }))
}

/// One image's dry run.
struct Run<'a> {
    image: &'a mut GuestImage,
    text: &'a [u8],
    sites: &'a [(u64, Vec<u8>)],
    reached: &'a mut [bool],
    which: SiteImage,
    limit: u64,
}

impl Run<'_> {
    fn all_cpus(&mut self) -> Result<Result<u64, Failure>, SimError> {
        let layout = self.image.layout;
        let mut steps = 0;
        // vCPUs run the same code from the same registers but their counter block and stack
        // (`rbx`, `rsp`), which grow with the vCPU's number: an access `[R+d]` of any vCPU lies
        // between the first's and the last's, so those two show every fault of a whole image
        // (the flipped ones run on the first).
        let last = self.image.cpu_regs.len().saturating_sub(1);
        let cpus = match self.which {
            SiteImage::Old | SiteImage::New if last > 0 => vec![0, last],
            _ => vec![0],
        };
        for cpu in cpus {
            let data = std::rc::Rc::new(SharedRegion::new(layout.data_base, layout.data_len));
            let result = self.one_cpu(cpu, &data);
            // The invariant's memory of this vCPU starts over, as before the dry run.
            self.image.invariant.reset(cpu, &data);
            match result? {
                Ok(n) => steps += n,
                Err(failure) => return Ok(Err(failure)),
            }
        }
        Ok(Ok(steps))
    }

    fn one_cpu(&mut self, cpu: usize, data: &std::rc::Rc<SharedRegion>) -> Result<Result<u64, Failure>, SimError> {
        let layout = self.image.layout;
        let regs = self.image.cpu_regs[cpu];
        let mut vcpu = Vcpu::new(cpu, layout, self.text, std::rc::Rc::clone(data), FetchModel::PESSIMISTIC, &regs)?;
        let truth = Fixed { base: layout.text_base, text: self.text };
        let (mut arrivals, mut last_site) = (0, None);
        for step in 0..self.limit {
            let rip = vcpu.rip();
            if rip == self.image.loop_head {
                let regs = vcpu.regs()?;
                if let Err(msg) = self.image.invariant.at_loop_head(cpu, &regs, data) {
                    return Ok(Err(self.failure(Problem::Invariant(msg), cpu, rip, last_site)));
                }
                arrivals += 1;
                if arrivals > PASSES {
                    return Ok(Ok(step));
                }
            }
            if let Some(i) = self.sites.iter().position(|&(a, _)| a == rip) {
                self.reached[i] = true;
                last_site = Some(i);
            }
            let (_, outcome) = vcpu.step(&truth, &mut First)?;
            let problem = match outcome {
                StepOutcome::Normal | StepOutcome::Serialized => self.left(vcpu.rip()),
                StepOutcome::Int3(_) => Some(Problem::Int3),
                StepOutcome::Fault(Fault::Engine(uc_error::WRITE_PROT)) => Some(Problem::StoreIntoText),
                StepOutcome::Fault(Fault::OutsideText(to)) => self.left(to),
                // The engine fetches a branch target with the branch: where it went is RIP.
                StepOutcome::Fault(fault @ Fault::Engine(uc_error::FETCH_PROT | uc_error::FETCH_UNMAPPED)) => {
                    Some(self.left(vcpu.rip()).unwrap_or(Problem::Fault(fault)))
                }
                StepOutcome::Fault(fault) => Some(Problem::Fault(fault)),
            };
            if let Some(problem) = problem {
                return Ok(Err(self.failure(problem, cpu, rip, last_site)));
            }
        }
        Ok(Err(self.failure(Problem::Spins(self.limit), cpu, vcpu.rip(), last_site)))
    }

    /// `Some` if `to` is not in the workload's code: what is there instead.
    fn left(&self, to: u64) -> Option<Problem> {
        let image = &*self.image;
        if image.code.iter().any(|&(s, l)| to >= s && to < s + l) {
            return None;
        }
        let (ool, ool_len) = image.ool_area;
        let region = if to >= ool && to < ool + ool_len {
            "the kprobes' out-of-line area"
        } else if image.layout.in_text(to) {
            "INT3 padding"
        } else if image.layout.in_data(to, 1) {
            "the data region"
        } else {
            "unmapped memory"
        };
        Some(Problem::Left { to, region })
    }

    fn failure(&self, problem: Problem, cpu: usize, addr: u64, last_site: Option<usize>) -> Failure {
        let base = self.image.layout.text_base;
        let insn = match addr.checked_sub(base).map(|o| o as usize).filter(|&o| o < self.text.len()) {
            Some(off) => disassemble(addr, &self.text[off..(off + 15).min(self.text.len())]),
            None => "(outside the text)".into(),
        };
        let inside = self.sites.iter().position(|(a, new)| addr >= *a && addr < a + new.len() as u64);
        Failure {
            problem,
            image: Some(self.which),
            cpu,
            addr,
            insn,
            site: inside.or(last_site),
            in_site: inside.is_some(),
        }
    }
}
