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
//! - that every mutant can act on the scenario ([`crate::applicability`]);
//! - how long a run should take ([`Plan::expected_ticks`]) and the default tick budget.

use iced_x86::{Decoder, DecoderOptions, FlowControl, Formatter, Instruction, IntelFormatter};

use crate::applicability::Facts;
use crate::batching::split_batch;
use crate::compiled::client::Calls;
use crate::config::{RunConfig, MAX_CLIENTS, MAX_TICKS};
use crate::error::Subject;
use crate::oracle::torn::TornOracle;
use crate::patching::{KprobeState, PokeArray, TEXT_POKE_ARRAY_MAX};
use crate::program::Op;
use crate::protocol::loc::{INT3, JMP32};
use crate::protocol::{text_poke_loc_init, Mutant, Protocol};
use crate::workload::{GuestImage, Kprobe, PatchAction, PokeRequest, SiteOwner};
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
    /// Every kprobe of the run in its initial state, by index (the scenario's first).
    pub kprobes: Vec<KprobeState>,
    /// The legitimate images of every site.
    pub torn: TornOracle,
    /// One patch array per batch the patcher runs (the workload's first, then the further
    /// callers' of [`GuestImage::callers`]).
    pub arrays: Vec<PokeArray>,
    /// How many of `arrays` are the workload's: its patch rounds.
    pub workload_arrays: usize,
    /// One program per patching client: the workload's patcher first, then one per kprobe
    /// that arms and disarms itself.
    pub programs: Vec<Vec<Op>>,
    /// Plain `text_poke()`s outside the INT3 protocol, indexed by [`Op::PokePlain`].
    pub plain: Vec<(u64, Vec<u8>)>,
    /// With a protocol compiled from C: each caller's calls of the file's entry points (the
    /// workload's first, then [`GuestImage::callers`]'), and their arguments' bytes.
    pub c_calls: Option<Calls>,
    /// With `[interrupts]`: where the handler's code is ([`crate::interrupt`]).
    pub irq_code: Option<crate::interrupt::IrqCode>,
}

impl std::fmt::Debug for Plan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plan").field("image", &self.image).field("ops", &self.ops().count()).finish()
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
        refuse_shared_vector_in_models(config, &image)?;
        let irq_code = install_irq(config, &mut image)?;
        refuse_early(config, &image)?;
        let every_action: Vec<PatchAction> = image.scripts().flatten().cloned().collect();
        let torn = TornOracle::new(&layout, &image.text, &every_action)?;
        let all = registered_kprobes(config, &image, &torn, kprobes)?;
        let reserved_refuses = reserved_refuses(&image, &torn, kprobes, config.protocol);
        let kprobe_states = install_kprobes(&mut image, &all, kprobes.len())?;
        // With other clients, each action of the workload's script runs under text_mutex, as
        // the kernel's callers hold it around text_poke_bp() and text_poke().
        let shared = all.iter().any(|k| k.cycles > 0);
        let ((arrays, program, plain), workload_arrays) = patcher_program(config, &image, shared)?;
        if config.program.is_some() {
            check_vector_bound(&arrays, &program)?;
        }
        let mut programs = vec![program];
        for (k, kp) in all.iter().enumerate().filter(|(_, kp)| kp.cycles > 0) {
            programs.push(config.protocol.kprobe_program(&config.mutants, k, kp.cycles));
        }
        crate::applicability::check(&Facts {
            config,
            image: &image,
            arrays: &arrays,
            programs: &programs,
            reserved_refuses,
        })?;
        let c_calls = compiled_calls(config, &image, programs.len())?;
        Ok(Self {
            config: config.clone(),
            image,
            kprobes: kprobe_states,
            torn,
            arrays,
            workload_arrays,
            programs,
            plain,
            c_calls,
            irq_code,
        })
    }

    /// Every operation of every client, in client order.
    pub fn ops(&self) -> impl Iterator<Item = &Op> {
        self.programs.iter().flatten()
    }

    /// About how many ticks a uniformly scheduled run takes: the patcher runs about one tick
    /// in `cpus + 1`; each sync waits for one IPI delivery per vCPU; then the drain.
    pub fn expected_ticks(&self) -> u64 {
        let cpus = self.config.cpus as u64;
        let stores: u64 = self.ops().map(|op| self.store_bytes(op)).sum();
        let syncs = self.ops().filter(|op| matches!(op, Op::Sync | Op::SyncIfDoSync)).count() as u64;
        let patcher_steps = self.ops().count() as u64 + stores + syncs;
        (patcher_steps * (cpus + 1) + syncs * cpus + self.config.drain_steps * cpus).max(100)
    }

    /// Bytes an operation may store (an upper bound on its store events).
    fn store_bytes(&self, op: &Op) -> u64 {
        let loc = |b: usize, e: usize| self.arrays[b].locs[e].len as u64;
        match *op {
            Op::PokeInt3 { .. }
            | Op::PokeFirst { .. }
            | Op::PokeFirstAlways { .. }
            | Op::ArmKprobe(_)
            | Op::DisarmKprobe(_) => 1,
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

/// How `register_kprobe()` treats a kprobe on a site another patcher owns.
fn reserved_site(torn: &TornOracle, kp: &Kprobe, len: u64) -> Option<(u64, u64)> {
    let a = (kp.addr..kp.addr + len).find(|&a| torn.in_site(a))?;
    let site = torn.site_ranges().map(|(s, l)| (s, l as u64)).find(|&(s, l)| a >= s && a < s + l);
    Some(site.unwrap_or((a, 1)))
}

/// What `register_kprobe()` checks about an address (`check_kprobe_address_safe()`,
/// `can_probe()`, `arch_prepare_kprobe()`): it must start an instruction of the workload's
/// code; a site another patcher owns is refused by that owner's reserved-text check (unless
/// [`Mutant::NoTextReserved`] drops them); the instruction must be one pokesim can run for the
/// probe (a plain instruction out of line, or a relative CALL/JMP/Jcc, emulated).
fn check_kprobe(
    image: &GuestImage,
    torn: &TornOracle,
    kp: &Kprobe,
    reserved: bool,
    protocol: Protocol,
) -> Result<(), String> {
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
    if let Some((site, len)) = reserved.then(|| reserved_site(torn, kp, insn.len() as u64)).flatten() {
        return Err(format!(
            "{:#x} is inside the patched site {site:#x}+{len}: {} (the no-text-reserved mutant drops the check)",
            kp.addr,
            image.site_owner.refusal(protocol, kp.addr == site)
        ));
    }
    let off = (kp.addr - layout.text_base) as usize;
    let branch = crate::handler::kprobe_emulates(&image.text[off..off + insn.len()]);
    if !branch && (insn.is_ip_rel_memory_operand() || insn.flow_control() != FlowControl::Next) {
        return Err(format!(
            "{} cannot be probed here: pokesim runs a probed instruction out of line when it is plain, \
             and emulates a relative CALL, JMP or Jcc; RET, indirect branches and RIP-relative operands \
             (which need __copy_instruction()'s displacement fixup) are not modelled",
            describe(image, &insn)
        ));
    }
    Ok(())
}

/// A kprobe that registers itself during the run copies the instruction the text holds then.
/// pokesim runs a plain probed instruction from an out-of-line copy made before the run, so on
/// a site another patcher rewrites (only without the reserved-text checks) every instruction the
/// site can hold must start at the kprobe and be either that same instruction or a relative
/// branch (emulated, no copy needed).
fn check_client_on_site(image: &GuestImage, kp: &Kprobe) -> Result<(), String> {
    let off = (kp.addr - image.layout.text_base) as usize;
    let window = &image.text[off..(off + 15).min(image.text.len())];
    let initial = Decoder::with_ip(64, window, kp.addr, DecoderOptions::NONE).decode();
    let initial = &window[..initial.len()];
    for action in image.scripts().flatten() {
        for r in action.requests().iter().filter(|r| kp.addr >= r.addr && kp.addr < r.addr + r.new.len() as u64) {
            let same = r.new.starts_with(initial);
            if r.addr != kp.addr || !(same || crate::handler::kprobe_emulates(&r.new)) {
                return Err(format!(
                    "{:#x}: a kprobe that registers itself during the run on a site rewritten to {:02x?} is not \
                     modelled (pokesim's out-of-line copy is made before the run; only the same instruction or a \
                     relative branch, which is emulated, can be probed there)",
                    kp.addr, r.new
                ));
            }
        }
    }
    Ok(())
}

/// Whether `register_kprobe()`'s reserved-text checks refuse some kprobe of the scenario (one
/// of `user` on a patched site) or make one ftrace-based (a workload's kprobe at the start of an
/// ftrace site): what [`Mutant::NoTextReserved`] needs to act.
fn reserved_refuses(image: &GuestImage, torn: &TornOracle, user: &[Kprobe], protocol: Protocol) -> bool {
    let refused = |kp: &Kprobe| {
        check_kprobe(image, torn, kp, true, protocol).is_err() && check_kprobe(image, torn, kp, false, protocol).is_ok()
    };
    let on_ftrace =
        |kp: &Kprobe| image.site_owner == SiteOwner::Ftrace && torn.site_ranges().any(|(s, _)| s == kp.addr);
    user.iter().any(refused) || image.kprobes.iter().any(on_ftrace)
}

/// Registers kprobes: an out-of-line copy of each probed instruction followed by
/// `jmp addr+len` in the OOL area (`arch_prepare_kprobe()`), the INT3 of each one armed for the
/// whole run, and each kprobe's initial state. The first `user` kprobes are the scenario's
/// (errors name them), the rest the workload's.
fn install_kprobes(image: &mut GuestImage, kprobes: &[Kprobe], user: usize) -> Result<Vec<KprobeState>, SimError> {
    let base = image.layout.text_base;
    let (mut slot, end) = (image.ool_area.0, image.ool_area.0 + image.ool_area.1);
    let mut states: Vec<KprobeState> = Vec::new();
    for (i, kp) in kprobes.iter().enumerate() {
        let subject = if i < user { Subject::Kprobe(i) } else { Subject::Workload };
        let off = kp.addr.checked_sub(base).map(|o| o as usize).filter(|&o| o < image.text.len());
        let off = off.ok_or_else(|| SimError::invalid(subject, format!("{:#x} is outside the text", kp.addr)))?;
        let window = &image.text[off..(off + 15).min(image.text.len())];
        let insn = Decoder::with_ip(64, window, kp.addr, DecoderOptions::NONE).decode();
        let len = insn.len();
        let twice = states.iter().any(|k| k.addr == kp.addr);
        if insn.is_invalid() || twice || slot + len as u64 + 5 > end {
            let why = if twice { "is probed twice" } else { "has no room for its OOL copy" };
            return Err(SimError::invalid(subject, format!("{:#x} {why}", kp.addr)));
        }
        let s = (slot - base) as usize;
        let copy = image.text[off..off + len].to_vec();
        image.text[s..s + len].copy_from_slice(&copy);
        let back = (kp.addr + len as u64).wrapping_sub(slot + len as u64 + 5) as i32;
        image.text[s + len] = JMP32;
        image.text[s + len + 1..s + len + 5].copy_from_slice(&back.to_le_bytes());
        let whole_run = kp.cycles == 0;
        if whole_run && kp.armed {
            image.text[off] = INT3;
        }
        states.push(KprobeState {
            addr: kp.addr,
            ool: slot,
            insn: copy.into(),
            registered: whole_run,
            armed: whole_run && kp.armed,
        });
        slot += (len as u64 + 5).next_multiple_of(16);
    }
    Ok(states)
}

/// The kprobes of a run after `register_kprobe()`'s checks: the scenario's (each checked;
/// refused with the reason) and the workload's (a workload's kprobe at the start of an ftrace
/// site becomes an ftrace-based kprobe, `KPROBE_FLAG_FTRACE`, which writes no INT3 — unless
/// [`Mutant::NoTextReserved`] drops `check_ftrace_location()`).
fn registered_kprobes(
    config: &RunConfig,
    image: &GuestImage,
    torn: &TornOracle,
    user: &[Kprobe],
) -> Result<Vec<Kprobe>, SimError> {
    let reserved = !config.mutants.contains(&Mutant::NoTextReserved);
    for (i, kp) in user.iter().enumerate() {
        check_kprobe(image, torn, kp, reserved, config.protocol)
            .map_err(|m| SimError::invalid(Subject::Kprobe(i), m))?;
    }
    let mut all = user.to_vec();
    for kp in &image.kprobes {
        let on_ftrace = image.site_owner == SiteOwner::Ftrace && torn.site_ranges().any(|(s, _)| s == kp.addr);
        if !(reserved && on_ftrace) {
            all.push(*kp);
        }
    }
    for (i, kp) in all.iter().enumerate().filter(|(_, k)| k.cycles > 0) {
        let subject = if i < user.len() { Subject::Kprobe(i) } else { Subject::Workload };
        check_client_on_site(image, kp).map_err(|m| SimError::invalid(subject, m))?;
    }
    if !all.is_empty() && !config.kernel.kprobes {
        // register_kprobe() does not exist without CONFIG_KPROBES.
        let who = if user.is_empty() { "the workload's kprobe" } else { "a [[kprobes]] entry" };
        return Err(SimError::invalid(Subject::Kernel, format!("{who} needs CONFIG_KPROBES=y")));
    }
    let clients = all.iter().filter(|k| k.cycles > 0).count();
    if clients + 1 > MAX_CLIENTS {
        return Err(SimError::invalid(
            Subject::Kprobe(user.len().min(clients)),
            format!(
                "{clients} kprobes arm and disarm themselves; at most {} patching clients besides the workload's",
                MAX_CLIENTS - 1
            ),
        ));
    }
    Ok(all)
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

/// With a protocol compiled from C ([`RunConfig::compiled`]), the calls of the workload's
/// client: one per action of the script, each batch with the number of patch arrays the
/// version splits it into (its rounds). Refuses what the compiled path does not run yet.
fn compiled_calls(config: &RunConfig, image: &GuestImage, clients: usize) -> Result<Option<Calls>, SimError> {
    let Some(compiled) = &config.compiled else { return Ok(None) };
    let refuse = |what: &str| Err(SimError::invalid(Subject::ProtocolSource, format!("{}: {what}", compiled.file())));
    if clients > 1 {
        return refuse("kprobes that arm and disarm themselves do not run with a protocol compiled from C yet");
    }
    if config.program.is_some() {
        return refuse("a custom program edits the Rust model's patcher; edit the C file instead");
    }
    let mut scripts = Vec::new();
    for script in image.scripts() {
        let mut actions = Vec::with_capacity(script.len());
        for action in script {
            let arrays = match action {
                PatchAction::Batch(reqs) => split_batch(config.protocol, &config.mutants, reqs)?.len() as u64,
                // One batch, however the vector is shared and flushed at run time.
                PatchAction::Apply | PatchAction::Single(_) => 1,
                _ => 0,
            };
            actions.push((action.clone(), arrays));
        }
        scripts.push(actions);
    }
    let calls = crate::compiled::client::calls(compiled, &scripts);
    calls.map(Some).map_err(|m| SimError::invalid(Subject::ProtocolSource, format!("{}: {m}", compiled.file())))
}

/// The Rust models fix each batch's vector when the plan is built: callers that share the
/// version's vector at run time need a protocol compiled from C.
fn refuse_shared_vector_in_models(config: &RunConfig, image: &GuestImage) -> Result<(), SimError> {
    let shares = !image.callers.is_empty() || image.scripts().flatten().any(PatchAction::shares_vector);
    if shares && config.compiled.is_none() {
        return Err(SimError::invalid(
            Subject::Workload,
            format!(
                "workload {}'s callers share {}'s text_poke vector at run time (one queues sites in text_mutex \
                 sections of their own, another patches meanwhile), which the Rust models do not model (they \
                 fix each batch's vector when the run is planned): run it with the protocol compiled from C \
                 (--protocol-c, or --protocol-source FILE.c)",
                image.name, config.protocol
            ),
        ));
    }
    Ok(())
}

type Program = (Vec<PokeArray>, Vec<Op>, Vec<(u64, Vec<u8>)>);

/// The patch arrays, the patcher's program and its plain pokes for the image's scripts (the
/// workload's, then each further caller's: their arrays follow the workload's, their
/// operations are appended to its program, which only the Rust models run); with `locked`,
/// each action between `text_mutex` lock and unlock. Also returns how many arrays are the
/// workload's.
fn patcher_program(config: &RunConfig, image: &GuestImage, locked: bool) -> Result<(Program, usize), SimError> {
    let mut b = ProgramBuilder {
        config,
        base: image.layout.text_base,
        locked,
        copy: image.text.clone(),
        overridden: false,
        program: (Vec::new(), Vec::new(), Vec::new()),
    };
    let mut workload_arrays = None;
    for script in image.scripts() {
        let mut queued: Vec<PokeRequest> = Vec::new();
        for action in script {
            match action {
                PatchAction::Batch(reqs) => b.batch(reqs)?,
                PatchAction::Queue(r) => queued.push(r.clone()),
                PatchAction::Apply => b.batch(&std::mem::take(&mut queued))?,
                PatchAction::Single(r) => b.batch(std::slice::from_ref(r))?,
                // text_poke_early() runs only compiled from C (refused for the models above).
                PatchAction::Poke { addr, bytes } | PatchAction::Early { addr, bytes } => b.poke(*addr, bytes),
                PatchAction::Sync => b.program.1.push(Op::Sync),
            }
        }
        workload_arrays.get_or_insert(b.program.0.len());
    }
    if config.unsafe_multi_insn && !b.overridden {
        return Err(SimError::invalid(
            Subject::UnsafeMultiInsn,
            format!(
                "no site of workload {} replaces more than one instruction, so the override would change \
                 nothing (it lets a site such as multi_insn's replace several: bug B2)",
                image.name
            ),
        ));
    }
    Ok((b.program, workload_arrays.unwrap_or(0)))
}

/// What [`patcher_program`] has built so far, and the text as the script leaves it.
struct ProgramBuilder<'a> {
    config: &'a RunConfig,
    base: u64,
    locked: bool,
    copy: Vec<u8>,
    overridden: bool,
    program: Program,
}

impl ProgramBuilder<'_> {
    /// A batch through the INT3 protocol: one array (and batch program) per group the version
    /// splits it into; nothing for an empty one.
    fn batch(&mut self, reqs: &[PokeRequest]) -> Result<(), SimError> {
        let (config, base) = (self.config, self.base);
        let (protocol, rules) = (config.protocol, config.protocol.loc_rules());
        if reqs.is_empty() {
            return Ok(());
        }
        for group in split_batch(protocol, &config.mutants, reqs)? {
            let mut locs = Vec::with_capacity(group.len());
            for r in &group {
                match check_single_instruction(&self.copy, base, r) {
                    Err(_) if config.unsafe_multi_insn => self.overridden = true,
                    other => other?,
                }
                let loc =
                    text_poke_loc_init(rules, r.addr, &r.new, r.emulate.as_deref(), r.detour).map_err(|e| match e {
                        SimError::Invalid { subject, message } => {
                            SimError::invalid(subject, format!("{protocol} cannot patch this workload: {message}"))
                        }
                        other => other,
                    })?;
                locs.push(loc);
            }
            let at = |r: &PokeRequest| (r.addr - base) as usize..(r.addr - base) as usize + r.new.len();
            let old: Vec<Vec<u8>> = group.iter().map(|r| self.copy[at(r)].to_vec()).collect();
            for r in &group {
                self.copy[at(r)].copy_from_slice(&r.new);
            }
            let (arrays, program, _) = &mut self.program;
            let id = arrays.len();
            program.extend(self.locked.then_some(Op::LockTextMutex));
            match &config.program {
                Some(t) => program.extend(crate::program::expand(t, id, locs.len(), config.cpus)),
                None => program.extend(protocol.batch_program(&config.mutants, id, locs.len(), config.cpus)),
            }
            program.extend(self.locked.then_some(Op::UnlockTextMutex));
            arrays.push(PokeArray::new(locs, old));
        }
        Ok(())
    }

    /// A plain `text_poke()` outside the INT3 protocol.
    fn poke(&mut self, addr: u64, bytes: &[u8]) {
        let off = (addr - self.base) as usize;
        self.copy[off..off + bytes.len()].copy_from_slice(bytes);
        let (_, program, plain) = &mut self.program;
        program.extend(self.locked.then_some(Op::LockTextMutex));
        program.extend([Op::PokePlain(plain.len())]);
        program.extend(self.locked.then_some(Op::UnlockTextMutex));
        plain.push((addr, bytes.to_vec()));
    }
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

/// With `[interrupts]`: checks that the workload and protocol can take them, and writes the
/// handler's code ([`crate::interrupt::handler_code`]) at the end of the out-of-line area (which
/// shrinks by 16 bytes). Refuses what cannot act: a `call-site` handler on a workload with no
/// function to call, interrupts on the patching CPU of a Rust-model protocol (its patcher has no
/// CPU) or of a workload that gives that CPU no interrupt context, and `own_stores` without
/// interrupts on the patching CPU (no CPU fetches code it wrote itself otherwise).
fn install_irq(config: &RunConfig, image: &mut GuestImage) -> Result<Option<crate::interrupt::IrqCode>, SimError> {
    use crate::interrupt::{handler_code, IrqHandler, OwnStores};
    let refuse = |m: String| Err(SimError::invalid(Subject::Interrupts, m));
    let Some(irq) = config.interrupts else {
        if config.own_stores != OwnStores::Serialize {
            return Err(SimError::invalid(
                Subject::Fetch,
                "own_stores acts only where a patching CPU fetches code: with [interrupts] cpus = \"patcher\" or \"all\"",
            ));
        }
        return Ok(None);
    };
    if irq.budget == 0 {
        return refuse("budget must be at least 1".into());
    }
    if !irq.patcher() && config.own_stores != OwnStores::Serialize {
        return Err(SimError::invalid(
            Subject::Fetch,
            "own_stores acts only where a patching CPU fetches code: with [interrupts] cpus = \"patcher\" or \"all\"",
        ));
    }
    let func = image.irq_call.unwrap_or(0);
    if irq.handler == IrqHandler::CallSite && image.irq_call.is_none() {
        return refuse(format!(
            "workload {} has no function for the call-site handler to call (ftrace and early have one); \
             handler = \"empty\" works with every workload",
            image.name
        ));
    }
    if irq.patcher() && (config.compiled.is_none() || image.irq_cpu.is_none()) {
        return refuse(format!(
            "interrupts on the patching CPU need a protocol compiled from C (its patcher runs on a CPU) and a \
             workload that gives that CPU an interrupt context (early); {} with {} has not both",
            image.name,
            if config.compiled.is_some() { "a C protocol" } else { "the Rust model" }
        ));
    }
    let (start, len) = image.ool_area;
    if len < 32 {
        return refuse("no room for the handler's code in the out-of-line area".into());
    }
    let at = start + len - 16;
    let (code, irq_code) = handler_code(irq.handler, at, func);
    let off = (at - image.layout.text_base) as usize;
    image.text[off..off + code.len()].copy_from_slice(&code);
    image.ool_area.1 -= 16;
    image.code.push(irq_code.range);
    Ok(Some(irq_code))
}

/// `text_poke_early()` (workload `early`): only with interrupts on the patching CPU alone (it is
/// for code no other CPU runs, and only that CPU's interrupt handler runs the site), and only
/// compiled from C (the Rust models have no patching CPU that fetches code).
fn refuse_early(config: &RunConfig, image: &GuestImage) -> Result<(), SimError> {
    let early = image.scripts().flatten().any(|a| matches!(a, PatchAction::Early { .. }));
    let call_site = |i: &crate::interrupt::Interrupts| i.handler == crate::interrupt::IrqHandler::CallSite;
    if early && !config.interrupts.is_some_and(|i| i.patcher() && !i.vcpus() && call_site(&i)) {
        return Err(SimError::invalid(
            Subject::Interrupts,
            format!(
                "workload {} patches with text_poke_early(), which is only for code no other CPU runs, and checks \
                 it through the patching CPU's own interrupt handler: it needs [interrupts] cpus = \"patcher\" \
                 (not the vCPUs, which must not run its site) and handler = \"call-site\" (the empty one runs no \
                 site)",
                image.name
            ),
        ));
    }
    if config.compiled.is_none() && early {
        return Err(SimError::invalid(
            Subject::Workload,
            format!(
                "workload {} patches with text_poke_early(), which only the protocols compiled from C have \
                 (--protocol-c): the Rust models have no patching CPU that fetches code",
                image.name
            ),
        ));
    }
    Ok(())
}
