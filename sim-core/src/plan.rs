//! The plan of a run: everything the machine derives from a guest image and a run
//! configuration before any vCPU exists, and every check the kernel (or the simulator) makes
//! on it. A scenario that passes [`Plan::new`] builds and runs; one that does not is invalid
//! input, and the error names the part of the scenario at fault ([`Subject`]).
//!
//! - the patcher's program: each batch split the way the version's callers split it
//!   (`text_poke_bp_batch()` callers sort and flush at `TP_VEC_MAX`;
//!   `smp_text_poke_batch_add()` flushes when full or out of order), each entry checked by
//!   `text_poke_loc_init()` and by B2's single-instruction rule, and the batch's operations
//!   from the version (or the scenario's custom program);
//! - the kprobes: each user kprobe must start an instruction of the workload's code, lie
//!   outside every patched site (the kernel's `*_text_reserved()` checks) and be an
//!   instruction the out-of-line single-step can run; each gets its out-of-line copy;
//! - the legitimate images of every site (the torn-fetch oracle);
//! - how long a run should take ([`Plan::expected_ticks`]) and the default tick budget.

use std::collections::BTreeMap;

use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter};

use crate::config::{RunConfig, MAX_TICKS};
use crate::error::Subject;
use crate::oracle::torn::TornOracle;
use crate::patching::{PokeArray, TEXT_POKE_ARRAY_MAX};
use crate::program::Op;
use crate::protocol::loc::{INT3, JMP32};
use crate::protocol::{text_poke_loc_init, Protocol};
use crate::workload::{GuestImage, Kprobe, PatchAction, PokeRequest};
use crate::SimError;

/// The smallest default tick budget.
pub const MIN_DEFAULT_BUDGET: u64 = 1_000_000;
/// The default budget is this many times the expected run length.
pub const BUDGET_FACTOR: u64 = 16;

/// A validated run, ready to be built.
pub struct Plan {
    /// The configuration.
    pub config: RunConfig,
    /// The guest, with the kprobes' INT3s and out-of-line copies written into its text.
    pub image: GuestImage,
    /// Kprobe address → where its out-of-line copy starts.
    pub owners: BTreeMap<u64, u64>,
    /// The legitimate images of every site.
    pub torn: TornOracle,
    /// One patch array per batch the patcher runs.
    pub arrays: Vec<PokeArray>,
    /// The patcher's whole program.
    pub program: Vec<Op>,
    /// Plain `text_poke()`s outside the INT3 protocol, indexed by [`Op::PokePlain`].
    pub plain: Vec<(u64, Vec<u8>)>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("image", &self.image).field("ops", &self.program.len()).finish()
    }
}

impl Plan {
    /// Checks and prepares `image` under `config`, with the scenario's own `kprobes`
    /// (validated against the decoded text; the workload's own kprobes are trusted).
    pub fn new(config: &RunConfig, mut image: GuestImage, kprobes: &[Kprobe]) -> Result<Self, SimError> {
        config.validate()?;
        if image.cpu_regs.len() != config.cpus {
            return Err(SimError::invalid(
                Subject::Cpus,
                format!(
                    "workload {} was built for {} vCPUs, the run asks for {}",
                    image.name,
                    image.cpu_regs.len(),
                    config.cpus
                ),
            ));
        }
        let layout = image.layout;
        layout.validate().map_err(|e| SimError::invalid(Subject::Workload, e.to_string()))?;
        if image.text.len() as u64 != layout.text_len {
            return Err(SimError::invalid(Subject::Workload, "the text does not fill its text region"));
        }
        let torn = TornOracle::new(&layout, &image.text, &image.actions)?;
        for (i, kp) in kprobes.iter().enumerate() {
            check_user_kprobe(&image, &torn, kp).map_err(|m| SimError::invalid(Subject::Kprobe(i), m))?;
        }
        let mut all = kprobes.to_vec();
        all.extend(image.kprobes.iter().copied());
        if !all.is_empty() && !config.kernel.kprobes {
            // register_kprobe() does not exist without CONFIG_KPROBES.
            let who = if kprobes.is_empty() { "the workload's kprobe" } else { "a [[kprobes]] entry" };
            return Err(SimError::invalid(Subject::Kernel, format!("{who} needs CONFIG_KPROBES=y")));
        }
        let owners = install_kprobes(&mut image, &all, kprobes.len())?;
        let (arrays, program, plain) = patcher_program(config, &image)?;
        check_vector_bound(&arrays, &program)?;
        Ok(Self { config: config.clone(), image, owners, torn, arrays, program, plain })
    }

    /// About how many ticks a uniformly scheduled run takes: the patcher runs about one tick
    /// in `cpus + 1`; each sync waits for one IPI delivery per vCPU; then the drain.
    pub fn expected_ticks(&self) -> u64 {
        let cpus = self.config.cpus as u64;
        let stores: u64 = self.program.iter().map(|op| self.store_bytes(op)).sum();
        let syncs = self.program.iter().filter(|op| matches!(op, Op::Sync | Op::SyncIfDoSync)).count() as u64;
        let patcher_steps = self.program.len() as u64 + stores + syncs;
        (patcher_steps * (cpus + 1) + syncs * cpus + self.config.drain_steps * cpus).max(100)
    }

    /// Bytes an operation may store (an upper bound on its store events).
    fn store_bytes(&self, op: &Op) -> u64 {
        let loc = |b: usize, e: usize| self.arrays[b].locs[e].len as u64;
        match *op {
            Op::PokeInt3 { .. } | Op::PokeFirst { .. } | Op::PokeFirstAlways { .. } => 1,
            Op::PokeTail { batch, entry } => loc(batch, entry).saturating_sub(1),
            Op::PokeWhole { batch, entry } => loc(batch, entry),
            Op::PokePlain(i) => self.plain[i].1.len() as u64,
            _ => 0,
        }
    }

    /// The tick budget of the run: the configured one, or [`BUDGET_FACTOR`] times the
    /// expected length (at least [`MIN_DEFAULT_BUDGET`]), so that a correct protocol passes
    /// by default however many vCPUs, sites and rounds the scenario has.
    pub fn budget(&self) -> u64 {
        self.config
            .max_ticks
            .unwrap_or_else(|| self.expected_ticks().saturating_mul(BUDGET_FACTOR).clamp(MIN_DEFAULT_BUDGET, MAX_TICKS))
    }
}

/// The instruction of the workload's code that covers `addr`, as `(start, instruction)`.
fn instruction_at(image: &GuestImage, addr: u64) -> Option<(u64, Instruction)> {
    let base = image.layout.text_base;
    let &(start, len) = image.code.iter().find(|&&(s, l)| addr >= s && addr < s + l)?;
    let off = (start - base) as usize;
    let bytes = image.text.get(off..off + len as usize)?;
    let mut decoder = Decoder::with_ip(64, bytes, start, DecoderOptions::NONE);
    let mut insn = Instruction::default();
    while decoder.can_decode() {
        decoder.decode_out(&mut insn);
        if addr < insn.next_ip() {
            return Some((insn.ip(), insn));
        }
    }
    None
}

fn describe(image: &GuestImage, insn: &Instruction) -> String {
    let mut text = String::new();
    IntelFormatter::new().format(insn, &mut text);
    let off = (insn.ip() - image.layout.text_base) as usize;
    let bytes = &image.text[off..off + insn.len()];
    let hex: Vec<String> = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("`{text}` ({}) at {:#x}", hex.join(" "), insn.ip())
}

/// A user kprobe must start an instruction of the workload's code, outside every patched
/// site, that the out-of-line single-step can run.
fn check_user_kprobe(image: &GuestImage, torn: &TornOracle, kp: &Kprobe) -> Result<(), String> {
    let layout = image.layout;
    if !layout.in_text(kp.addr) {
        return Err(format!(
            "{:#x} is outside the text ({:#x}..{:#x})",
            kp.addr,
            layout.text_base,
            layout.text_base + layout.text_len
        ));
    }
    let Some((start, insn)) = instruction_at(image, kp.addr) else {
        return Err(format!("{:#x} is not in the workload's code (it lies in INT3 padding)", kp.addr));
    };
    if start != kp.addr {
        return Err(format!("{:#x} splits the instruction {}", kp.addr, describe(image, &insn)));
    }
    if let Some(a) = (start..insn.next_ip()).find(|&a| torn.in_site(a)) {
        let (site, len) = torn.site_ranges().find(|&(s, l)| a >= s && a < s + l as u64).unwrap_or((a, 1));
        return Err(format!(
            "{:#x} is inside the patched site {site:#x}+{len}: that code belongs to the patcher (the kernel's \
             *_text_reserved() checks refuse a kprobe there)",
            kp.addr
        ));
    }
    if insn.is_ip_rel_memory_operand() || insn.flow_control() != FlowControl::Next {
        return Err(format!(
            "{} cannot be single-stepped out of line (a branch or RIP-relative instruction; pokesim's kprobes \
             run plain instructions only)",
            describe(image, &insn)
        ));
    }
    Ok(())
}

/// Registers kprobes: an out-of-line copy of each probed instruction followed by
/// `jmp addr+len` in the OOL area, and the INT3 of each armed one. Returns owner → resume.
/// The first `user` kprobes are the scenario's (errors name them), the rest the workload's.
fn install_kprobes(image: &mut GuestImage, kprobes: &[Kprobe], user: usize) -> Result<BTreeMap<u64, u64>, SimError> {
    let base = image.layout.text_base;
    let (mut slot, end) = (image.ool_area.0, image.ool_area.0 + image.ool_area.1);
    let mut owners = BTreeMap::new();
    for (i, kp) in kprobes.iter().enumerate() {
        let subject = if i < user { Subject::Kprobe(i) } else { Subject::Workload };
        let off = kp.addr.checked_sub(base).map(|o| o as usize).filter(|&o| o < image.text.len());
        let off = off.ok_or_else(|| SimError::invalid(subject, format!("{:#x} is outside the text", kp.addr)))?;
        let window = &image.text[off..(off + 15).min(image.text.len())];
        let insn = Decoder::with_ip(64, window, kp.addr, DecoderOptions::NONE).decode();
        let len = insn.len();
        if insn.is_invalid() || owners.contains_key(&kp.addr) || slot + len as u64 + 5 > end {
            let why = if owners.contains_key(&kp.addr) { "is probed twice" } else { "has no room for its OOL copy" };
            return Err(SimError::invalid(subject, format!("{:#x} {why}", kp.addr)));
        }
        let s = (slot - base) as usize;
        let copy = image.text[off..off + len].to_vec();
        image.text[s..s + len].copy_from_slice(&copy);
        let back = (kp.addr + len as u64).wrapping_sub(slot + len as u64 + 5) as i32;
        image.text[s + len] = JMP32;
        image.text[s + len + 1..s + len + 5].copy_from_slice(&back.to_le_bytes());
        owners.insert(kp.addr, slot);
        if kp.armed {
            image.text[off] = INT3;
        }
        slot += (len as u64 + 5).next_multiple_of(16);
    }
    Ok(owners)
}

/// Splits one batch of requests into the arrays the version's patcher handles, in order:
/// callers of `text_poke_bp_batch()` sort their vector (jump_label sorts its entries) and
/// flush at `TP_VEC_MAX`; `smp_text_poke_batch_add()` flushes when the vector is full or an
/// address arrives out of order.
fn split_batch(protocol: Protocol, reqs: &[PokeRequest]) -> Result<Vec<Vec<PokeRequest>>, SimError> {
    if reqs.is_empty() {
        return Err(SimError::invalid(Subject::Workload, "a batch must have at least one site"));
    }
    let mut groups: Vec<Vec<PokeRequest>> = Vec::new();
    if protocol.batch_add() {
        for r in reqs {
            match groups.last_mut() {
                Some(g) if g.len() < TEXT_POKE_ARRAY_MAX && g.last().is_some_and(|l| l.addr <= r.addr) => {
                    g.push(r.clone())
                }
                _ => groups.push(vec![r.clone()]),
            }
        }
    } else {
        let mut sorted = reqs.to_vec();
        sorted.sort_by_key(|r| r.addr);
        groups = sorted.chunks(TEXT_POKE_ARRAY_MAX).map(|c| c.to_vec()).collect();
    }
    for g in &groups {
        if let Some(w) = g.windows(2).find(|w| w[0].addr == w[1].addr) {
            return Err(SimError::invalid(
                Subject::Workload,
                format!("site {:#x} appears twice in one batch", w[0].addr),
            ));
        }
    }
    Ok(groups)
}

/// B2's precondition (text-patching.h: "no thread can be preempted in the instructions being
/// modified"): the bytes a request replaces must be exactly one instruction of its length, or
/// start with an INT3 that already stops every CPU there (an armed kprobe). Replacing more
/// than one instruction needs the explicit unsafe override.
fn check_single_instruction(copy: &[u8], base: u64, req: &PokeRequest) -> Result<(), SimError> {
    let off = (req.addr - base) as usize;
    let old = &copy[off..off + req.new.len()];
    if old[0] == INT3 {
        return Ok(());
    }
    let insn = Decoder::with_ip(64, old, req.addr, DecoderOptions::NONE).decode();
    // A RET/JMP padded with INT3 (26c44b776dba) is one instruction: the padding never runs.
    let padded = !insn.is_invalid()
        && matches!(insn.flow_control(), FlowControl::Return | FlowControl::UnconditionalBranch)
        && old[insn.len().min(old.len())..].iter().all(|&b| b == INT3);
    if insn.is_invalid() || (insn.len() != old.len() && !padded) {
        return Err(SimError::invalid(
            Subject::Workload,
            format!(
                "site {:#x}: the {} bytes replaced ({old:02x?}) are not exactly one instruction; a CPU preempted \
                 inside them resumes into the new bytes (bug B2). Set the unsafe multi-instruction override to \
                 simulate it anyway",
                req.addr,
                old.len()
            ),
        ));
    }
    Ok(())
}

type Program = (Vec<PokeArray>, Vec<Op>, Vec<(u64, Vec<u8>)>);

/// The patch arrays, the patcher's program and its plain pokes for the image's script.
fn patcher_program(config: &RunConfig, image: &GuestImage) -> Result<Program, SimError> {
    let (protocol, rules, base) = (config.protocol, config.protocol.loc_rules(), image.layout.text_base);
    let (mut arrays, mut program, mut plain) = (Vec::new(), Vec::new(), Vec::new());
    let mut copy = image.text.clone();
    for action in &image.actions {
        match action {
            PatchAction::Batch(reqs) => {
                for group in split_batch(protocol, reqs)? {
                    let mut locs = Vec::with_capacity(group.len());
                    for r in &group {
                        if !config.unsafe_multi_insn {
                            check_single_instruction(&copy, base, r)?;
                        }
                        let loc =
                            text_poke_loc_init(rules, r.addr, &r.new, r.emulate.as_deref(), r.detour).map_err(|e| {
                                match e {
                                    SimError::Invalid { subject, message } => SimError::invalid(
                                        subject,
                                        format!("{protocol} cannot patch this workload: {message}"),
                                    ),
                                    other => other,
                                }
                            })?;
                        locs.push(loc);
                    }
                    let old: Vec<Vec<u8>> = group
                        .iter()
                        .map(|r| copy[(r.addr - base) as usize..(r.addr - base) as usize + r.new.len()].to_vec())
                        .collect();
                    for r in &group {
                        let off = (r.addr - base) as usize;
                        copy[off..off + r.new.len()].copy_from_slice(&r.new);
                    }
                    let id = arrays.len();
                    match &config.program {
                        Some(t) => program.extend(crate::program::expand(t, id, locs.len(), config.cpus)),
                        None => program.extend(protocol.batch_program(&config.mutants, id, locs.len(), config.cpus)),
                    }
                    arrays.push(PokeArray::new(locs, old));
                }
            }
            PatchAction::Poke { addr, bytes } => {
                let off = (addr - base) as usize;
                copy[off..off + bytes.len()].copy_from_slice(bytes);
                program.push(Op::PokePlain(plain.len()));
                plain.push((*addr, bytes.clone()));
            }
            PatchAction::Sync => program.push(Op::Sync),
        }
    }
    Ok((arrays, program, plain))
}

/// `smp_text_poke_batch_add()` fills a static vector of [`TEXT_POKE_ARRAY_MAX`] entries that
/// `smp_text_poke_batch_finish()` empties; a custom program that adds entries without ever
/// resetting `nr_entries` would write past its end.
fn check_vector_bound(arrays: &[PokeArray], program: &[Op]) -> Result<(), SimError> {
    let mut nr = 0usize;
    for op in program {
        match *op {
            Op::SetNr(b) => nr = arrays[b].locs.len(),
            Op::ClearNr => nr = 0,
            Op::AddEntry { batch, .. } => {
                if nr == TEXT_POKE_ARRAY_MAX {
                    return Err(SimError::invalid(
                        Subject::Program,
                        format!(
                            "batch-add in batch {batch} would write past text_poke_array.vec \
                             ({TEXT_POKE_ARRAY_MAX} entries): the program never resets nr_entries (clear-nr) \
                             between batches"
                        ),
                    ));
                }
                nr += 1;
            }
            _ => {}
        }
    }
    Ok(())
}
