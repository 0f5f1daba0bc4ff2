//! Guest workloads (DESIGN.md §2.8), one module each, mirroring the kernel's users of the
//! INT3 protocol. Each builds a [`GuestImage`]: text assembled with iced-x86 at its final
//! addresses (canonical NOPs written as exact bytes), a counter block and a stack per vCPU in
//! the shared data region, the patching script, and an invariant over the guest's counters.
//!
//! Every workload's loop starts with `inc qword [rbx]` at [`TEXT_BASE`] (the iteration
//! count, `rbx` = the vCPU's counter block); a foreign kprobe, when asked for, is registered
//! on that instruction — outside every patched site, so its traps reach the patching handler
//! first and are handed on, exactly as in the kernel — armed for the whole run, or arming and
//! disarming itself as a patching client of its own ([`ForeignKprobe`]).

mod asm;
pub mod asm_text;
pub mod batch;
pub mod custom;
pub mod dry_run;
pub mod early;
pub mod ftrace;
pub mod jcc;
pub mod jump_label;
pub mod multi_insn;
pub mod optprobe;
pub mod shared_vector;
pub mod static_call;

use std::fmt;
use std::str::FromStr;

use cpu_model::{Layout, Reg, Regs, SharedRegion, PAGE_SIZE};
use sim_core::workload::CpuData;
use sim_core::{GuestImage, Invariant, Kprobe, PatchAction, SimError, SiteOwner, Subject};

pub(crate) use asm::Text;

/// Where the text starts in every workload.
pub const TEXT_BASE: u64 = 0x0040_0000;
/// Default text size: two pages, so a site can cross a page boundary.
pub const TEXT_LEN: u64 = 2 * PAGE_SIZE;
/// Where the data region starts.
pub const DATA_BASE: u64 = 0x0060_0000;
/// Size of the out-of-line area for kprobe copies, at the end of the text.
pub(crate) const OOL_LEN: u64 = 0x100;

/// The workloads.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum WorkloadKind {
    /// Function-entry NOP5 ⇄ `CALL tracer`.
    Ftrace,
    /// `CALL f1` ⇄ `CALL f2`; trampoline `JMP f3` ⇄ `RET`.
    StaticCall,
    /// NOP2 ⇄ JMP8 and NOP5 ⇄ JMP32.
    JumpLabel,
    /// A conditional tail call through Jcc.d32 retargeted.
    Jcc,
    /// A kprobe INT3 optimized into a JMP32 to a detour and back.
    Optprobe,
    /// Many sites in one batch.
    Batch,
    /// Two callers of one text_poke vector (C protocols only).
    SharedVector,
    /// Five one-byte NOPs replaced as one (refused unless overridden).
    MultiInsn,
    /// The scenario's own sites and code (`[[sites]]`, `[code]`).
    Custom,
    /// Boot-time `text_poke_early()` of a site only the patching CPU runs (C protocols only).
    Early,
}

impl WorkloadKind {
    /// Every workload.
    pub const ALL: [WorkloadKind; 10] = [
        WorkloadKind::Ftrace,
        WorkloadKind::StaticCall,
        WorkloadKind::JumpLabel,
        WorkloadKind::Jcc,
        WorkloadKind::Optprobe,
        WorkloadKind::Batch,
        WorkloadKind::SharedVector,
        WorkloadKind::MultiInsn,
        WorkloadKind::Custom,
        WorkloadKind::Early,
    ];

    /// Which kernel subsystem owns this workload's sites (which of `register_kprobe()`'s
    /// checks keeps a kprobe off them).
    pub(crate) fn site_owner(self) -> SiteOwner {
        match self {
            WorkloadKind::Ftrace => SiteOwner::Ftrace,
            WorkloadKind::StaticCall => SiteOwner::StaticCall,
            WorkloadKind::JumpLabel | WorkloadKind::Jcc | WorkloadKind::Batch | WorkloadKind::SharedVector => {
                SiteOwner::JumpLabel
            }
            WorkloadKind::Optprobe => SiteOwner::Kprobe,
            WorkloadKind::MultiInsn | WorkloadKind::Custom | WorkloadKind::Early => SiteOwner::Alternatives,
        }
    }

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            WorkloadKind::Ftrace => "ftrace",
            WorkloadKind::StaticCall => "static_call",
            WorkloadKind::JumpLabel => "jump_label",
            WorkloadKind::Jcc => "jcc",
            WorkloadKind::Optprobe => "optprobe",
            WorkloadKind::Batch => "batch",
            WorkloadKind::SharedVector => "shared_vector",
            WorkloadKind::MultiInsn => "multi_insn",
            WorkloadKind::Custom => "custom",
            WorkloadKind::Early => "early",
        }
    }

    /// One-line description.
    pub fn description(self) -> &'static str {
        match self {
            WorkloadKind::Ftrace => ftrace::DESCRIPTION,
            WorkloadKind::StaticCall => static_call::DESCRIPTION,
            WorkloadKind::JumpLabel => jump_label::DESCRIPTION,
            WorkloadKind::Jcc => jcc::DESCRIPTION,
            WorkloadKind::Optprobe => optprobe::DESCRIPTION,
            WorkloadKind::Batch => batch::DESCRIPTION,
            WorkloadKind::SharedVector => shared_vector::DESCRIPTION,
            WorkloadKind::MultiInsn => multi_insn::DESCRIPTION,
            WorkloadKind::Custom => custom::DESCRIPTION,
            WorkloadKind::Early => early::DESCRIPTION,
        }
    }
}

sim_core::named_set!(WorkloadKind, "workload");

/// Where the (first) patched site sits relative to fetch blocks, cache lines and pages.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SitePlacement {
    /// At this byte offset within a 64-byte line (0..=63).
    LineOffset(u8),
    /// Across the boundary between the first two text pages.
    CrossPage,
}

impl SitePlacement {
    /// Naturally aligned (offset 0 in its line).
    pub const ALIGNED: SitePlacement = SitePlacement::LineOffset(0);
    /// A 5-byte site crossing a 16-byte fetch block boundary (offset 14).
    pub const CROSS16: SitePlacement = SitePlacement::LineOffset(14);
    /// A 5-byte site crossing a 64-byte line boundary (offset 62).
    pub(crate) const CROSS64: SitePlacement = SitePlacement::LineOffset(62);

    /// The named placements, in the order proptest and `check` cycle through them.
    pub const NAMED: [SitePlacement; 4] =
        [SitePlacement::ALIGNED, SitePlacement::CROSS16, SitePlacement::CROSS64, SitePlacement::CrossPage];

    /// The site address for a site of `len` bytes: in the first text page's second half,
    /// or straddling the page boundary.
    pub fn address(self, len: u64) -> u64 {
        match self {
            SitePlacement::LineOffset(off) => TEXT_BASE + 0x800 + off as u64,
            SitePlacement::CrossPage => TEXT_BASE + PAGE_SIZE - len / 2,
        }
    }
}

impl fmt::Display for SitePlacement {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match *self {
            SitePlacement::ALIGNED => f.write_str("aligned"),
            SitePlacement::CROSS16 => f.write_str("cross16"),
            SitePlacement::CROSS64 => f.write_str("cross64"),
            SitePlacement::CrossPage => f.write_str("cross-page"),
            SitePlacement::LineOffset(n) => write!(f, "{n}"),
        }
    }
}

impl FromStr for SitePlacement {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "aligned" => Ok(SitePlacement::ALIGNED),
            "cross16" => Ok(SitePlacement::CROSS16),
            "cross64" => Ok(SitePlacement::CROSS64),
            "cross-page" => Ok(SitePlacement::CrossPage),
            _ => match s.parse::<u8>() {
                Ok(n) if n < 64 => Ok(SitePlacement::LineOffset(n)),
                _ => Err(format!(
                    "'{s}' is not a placement (valid: aligned, cross16, cross64, cross-page, or a line offset 0..=63)"
                )),
            },
        }
    }
}

/// The order in which the `batch` workload queues its sites.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum SiteOrder {
    /// By address (what jump_label's sorted entries give).
    Ascending,
    /// Highest address first: every add is out of order for `smp_text_poke_batch_add()`.
    Descending,
    /// Even-numbered sites, then odd-numbered ones: one out-of-order add halfway.
    Interleaved,
}

impl SiteOrder {
    /// Every order.
    pub const ALL: [SiteOrder; 3] = [SiteOrder::Ascending, SiteOrder::Descending, SiteOrder::Interleaved];

    /// Name on the command line and in files.
    pub fn name(self) -> &'static str {
        match self {
            SiteOrder::Ascending => "ascending",
            SiteOrder::Descending => "descending",
            SiteOrder::Interleaved => "interleaved",
        }
    }
}

sim_core::named_set!(SiteOrder, "order");

/// A foreign kprobe a workload registers besides its own patching (`kprobe` in files).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ForeignKprobe {
    /// None (`false`).
    None,
    /// On the loop head's counter increment, registered and armed for the whole run (`true`).
    Armed,
    /// On the loop head, a patching client of its own that registers, arms, disarms and
    /// unregisters itself once per patch round, racing the workload's patcher under
    /// `text_mutex`.
    Cycling,
    /// Like `cycling`, at the function's entry — the first site (ftrace only): the kernel's
    /// `check_ftrace_location()` makes it an ftrace-based kprobe that writes no INT3, unless
    /// the `no-text-reserved` mutant drops the check.
    Entry,
}

impl ForeignKprobe {
    /// Every choice.
    pub const ALL: [ForeignKprobe; 4] =
        [ForeignKprobe::None, ForeignKprobe::Armed, ForeignKprobe::Cycling, ForeignKprobe::Entry];

    /// Name in files (besides `false`/`true` for `none`/`armed`) and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            ForeignKprobe::None => "none",
            ForeignKprobe::Armed => "armed",
            ForeignKprobe::Cycling => "cycling",
            ForeignKprobe::Entry => "entry",
        }
    }

    /// True if there is one.
    pub fn any(self) -> bool {
        self != ForeignKprobe::None
    }
}

sim_core::named_set!(ForeignKprobe, "kprobe");

/// A workload and its parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkloadSpec {
    /// Which workload.
    pub kind: WorkloadKind,
    /// Placement of the (first) site.
    pub site: SitePlacement,
    /// Patch rounds.
    pub rounds: u32,
    /// `batch`: number of sites (1..=300).
    pub sites: u32,
    /// `batch`: the order sites are queued in.
    pub order: SiteOrder,
    /// `static_call`: also retarget the tail-call trampoline JMP ⇄ RET (needs RET emulation).
    pub tail: bool,
    /// A foreign kprobe the workload registers besides its own patching.
    pub kprobe: ForeignKprobe,
}

/// The largest `batch` workload.
pub(crate) const MAX_BATCH_SITES: u32 = 300;
/// The most patch rounds a workload runs.
pub(crate) const MAX_ROUNDS: u32 = 100_000;
/// The most patch requests (rounds × sites) a workload's script may hold: the script is built
/// in full before the run starts.
pub(crate) const MAX_REQUESTS: u64 = 200_000;

impl WorkloadSpec {
    /// The default parameters of `kind`.
    pub fn new(kind: WorkloadKind) -> Self {
        Self {
            kind,
            site: SitePlacement::ALIGNED,
            rounds: 24,
            sites: 16,
            order: SiteOrder::Ascending,
            tail: true,
            kprobe: ForeignKprobe::None,
        }
    }

    /// The workload's name with its variant options — `ftrace+kprobe-cycling`,
    /// `static_call-no-tail`, `batch-interleaved` — as the catalogue's variants are named
    /// (`pokesim list`): one name for the same workload in every output.
    pub fn variant_name(&self) -> String {
        let mut s = self.kind.name().to_string();
        if !self.tail {
            s.push_str("-no-tail");
        }
        if self.order != SiteOrder::Ascending {
            s.push('-');
            s.push_str(self.order.name());
        }
        if self.kprobe.any() {
            s.push_str("+kprobe");
            if self.kprobe != ForeignKprobe::Armed {
                s.push('-');
                s.push_str(self.kprobe.name());
            }
        }
        s
    }

    /// Rejects parameters out of range, before anything is allocated.
    pub fn validate(&self) -> Result<(), SimError> {
        if !(1..=MAX_ROUNDS).contains(&self.rounds) {
            return Err(SimError::invalid(
                Subject::Rounds,
                format!("{} is out of range (1..={MAX_ROUNDS})", self.rounds),
            ));
        }
        if self.kind == WorkloadKind::Batch {
            if !(1..=MAX_BATCH_SITES).contains(&self.sites) {
                let msg = format!("{} is out of range (1..={MAX_BATCH_SITES})", self.sites);
                return Err(SimError::invalid(Subject::Sites, msg));
            }
            let requests = self.rounds as u64 * self.sites as u64;
            if requests > MAX_REQUESTS {
                let msg = format!(
                    "{} rounds of {} sites are {requests} patch requests, more than {MAX_REQUESTS}",
                    self.rounds, self.sites
                );
                return Err(SimError::invalid(Subject::Rounds, msg));
            }
        }
        if self.kprobe == ForeignKprobe::Entry && self.kind != WorkloadKind::Ftrace {
            // Only ftrace's check converts a kprobe at its site; every other owner's refuses it.
            let msg = format!("kprobe = \"entry\" probes an ftrace site; {} has none", self.kind);
            return Err(SimError::invalid(Subject::Workload, msg));
        }
        Ok(())
    }

    /// Builds the guest for `cpus` vCPUs.
    pub fn build(&self, cpus: usize) -> Result<GuestImage, SimError> {
        self.build_with(None, cpus)
    }

    /// Builds the guest for `cpus` vCPUs, with the scenario's own sites and code for `custom`.
    pub(crate) fn build_with(&self, custom: Option<&custom::CustomGuest>, cpus: usize) -> Result<GuestImage, SimError> {
        self.validate()?;
        let mut image = match self.kind {
            WorkloadKind::Ftrace => ftrace::build(self, cpus),
            WorkloadKind::StaticCall => static_call::build(self, cpus),
            WorkloadKind::JumpLabel => jump_label::build(self, cpus),
            WorkloadKind::Jcc => jcc::build(self, cpus),
            WorkloadKind::Optprobe => optprobe::build(self, cpus),
            WorkloadKind::Batch => batch::build(self, cpus),
            WorkloadKind::SharedVector => shared_vector::build(self, cpus),
            WorkloadKind::MultiInsn => multi_insn::build(self, cpus),
            WorkloadKind::Custom => custom::build(self, custom, cpus),
            WorkloadKind::Early => early::build(self, cpus),
        }?;
        match self.kprobe {
            ForeignKprobe::None => {}
            ForeignKprobe::Armed => image.kprobes.push(Kprobe::armed(image.loop_head)),
            ForeignKprobe::Cycling => image.kprobes.push(Kprobe::client(image.loop_head, self.rounds)),
            ForeignKprobe::Entry => {
                let first = image.actions.iter().find_map(|a| match a {
                    PatchAction::Batch(reqs) => reqs.first().map(|r| r.addr),
                    _ => None,
                });
                let first = first.ok_or_else(|| SimError::invalid(Subject::Workload, "no site to probe"))?;
                image.kprobes.push(Kprobe::client(first, self.rounds));
            }
        }
        Ok(image)
    }
}

/// The pieces every workload shares: text, layout, per-vCPU counters and stacks.
pub(crate) struct Guest {
    pub text: Text,
    pub layout: Layout,
    /// Bytes of counters per vCPU (a multiple of 64).
    block: u64,
    /// Pages of counter blocks before the stacks.
    counter_pages: u64,
}

impl Guest {
    /// A guest with `text_len` bytes of text and `counters` 8-byte counters per vCPU.
    pub fn new(cpus: usize, text_len: u64, counters: u64) -> Self {
        let block = (counters * 8).next_multiple_of(64);
        let counter_pages = (cpus as u64 * block).div_ceil(PAGE_SIZE);
        let layout = Layout {
            text_base: TEXT_BASE,
            text_len,
            data_base: DATA_BASE,
            data_len: (counter_pages + cpus as u64) * PAGE_SIZE,
        };
        Self { text: Text::new(TEXT_BASE, text_len), layout, block, counter_pages }
    }

    /// Guest address of vCPU `cpu`'s counter block.
    pub fn counters(&self, cpu: usize) -> u64 {
        DATA_BASE + cpu as u64 * self.block
    }

    /// Initial stack pointer of vCPU `cpu`: 64 bytes below the top of its own page.
    pub fn stack_top(&self, cpu: usize) -> u64 {
        DATA_BASE + (self.counter_pages + cpu as u64 + 1) * PAGE_SIZE - 64
    }

    /// The standard loop head at [`TEXT_BASE`]: `inc qword [rbx]; jmp body`.
    pub fn loop_head(&mut self, body: u64) -> Result<u64, SimError> {
        use iced_x86::code_asm::{qword_ptr, rbx};
        self.text.place(TEXT_BASE, |a| {
            a.inc(qword_ptr(rbx))?;
            a.jmp(body)
        })?;
        Ok(TEXT_BASE)
    }

    /// Finishes the image.
    pub fn image(
        self,
        kind: WorkloadKind,
        cpus: usize,
        actions: Vec<PatchAction>,
        kprobes: Vec<Kprobe>,
        invariant: Box<dyn Invariant + Send>,
    ) -> GuestImage {
        let cpu_regs = (0..cpus)
            .map(|i| {
                let mut regs = Regs { rip: TEXT_BASE, rflags: 0x202, ..Regs::default() };
                regs.set(Reg::Rbx, self.counters(i));
                regs.set(Reg::Rsp, self.stack_top(i));
                regs
            })
            .collect();
        let layout = self.layout;
        let cpu_data = (0..cpus)
            .map(|i| CpuData {
                counters: (self.counters(i), self.block),
                stack_top: self.stack_top(i),
                stack_floor: DATA_BASE + (self.counter_pages + i as u64) * PAGE_SIZE,
            })
            .collect();
        let (text, code) = self.text.finish();
        GuestImage {
            name: kind.name().into(),
            site_owner: kind.site_owner(),
            ool_area: (layout.text_base + layout.text_len - OOL_LEN, OOL_LEN),
            layout,
            text,
            code,
            cpu_regs,
            loop_head: TEXT_BASE,
            actions,
            callers: Vec::new(),
            irq_call: None,
            irq_cpu: None,
            kprobes,
            invariant,
            cpu_data,
        }
    }
}

/// The invariant shape every workload shares: at each loop head the stack is balanced, and
/// a workload-specific check holds over the vCPU's counters now and at its previous loop head.
pub(crate) struct CounterInvariant<F> {
    n: usize,
    blocks: Vec<u64>,
    tops: Vec<u64>,
    seen: Vec<Vec<u64>>,
    check: F,
}

impl Guest {
    /// The invariant over `n` counters per vCPU; `check(now, before)` returns the violation.
    pub fn invariant<F>(&self, cpus: usize, n: usize, check: F) -> Box<dyn Invariant + Send>
    where
        F: FnMut(&[u64], &[u64]) -> Result<(), String> + Send + 'static,
    {
        Box::new(CounterInvariant {
            n,
            blocks: (0..cpus).map(|i| self.counters(i)).collect(),
            tops: (0..cpus).map(|i| self.stack_top(i)).collect(),
            seen: vec![vec![0; n]; cpus],
            check,
        })
    }
}

impl<F: FnMut(&[u64], &[u64]) -> Result<(), String>> Invariant for CounterInvariant<F> {
    fn at_loop_head(&mut self, cpu: usize, regs: &Regs, data: &SharedRegion) -> Result<(), String> {
        let top = self.tops[cpu];
        if regs.sp() != top {
            return Err(format!("stack unbalanced at the loop head: rsp={:#x}, expected {top:#x}", regs.sp()));
        }
        let base = self.blocks[cpu];
        let now: Vec<u64> = (0..self.n as u64)
            .map(|i| data.read_u64(base + 8 * i).expect("counter block is in the data region"))
            .collect();
        let before = std::mem::replace(&mut self.seen[cpu], now.clone());
        (self.check)(&now, &before)
    }

    fn reset(&mut self, cpu: usize, data: &SharedRegion) {
        let base = self.blocks[cpu];
        for i in 0..self.n as u64 {
            let _ = data.write_u64(base + 8 * i, 0);
        }
        self.seen[cpu].iter_mut().for_each(|c| *c = 0);
    }
}
