//! External interrupts (issue 25, DESIGN.md §2.17): a device interrupt delivered to a CPU at an
//! instruction boundary where `RFLAGS.IF = 1`, as the SDM's Vol. 3A §6.8.1 ("Masking Maskable
//! Hardware Interrupts") and §6.12 ("Exception and Interrupt Handling") describe it: the CPU
//! pushes an interrupt frame (SS, RSP, RFLAGS, CS, RIP), clears IF (an interrupt gate), and runs
//! the handler, which returns with IRET. IRET is serialising (SDM §9.3 "Serializing
//! Instructions" — its view of the text becomes exact); the delivery itself is not, which is
//! what "x86/alternatives: Sync core before enabling interrupts" (Linux 3ea1704a9296, 2023) is
//! about: an interrupt taken between `local_irq_restore()` and `sync_core()` of
//! `text_poke_early()` runs code its CPU just wrote, unserialised.
//!
//! The handler is guest code in the text page ([`IrqCode`]): `call-site` does
//! `inc qword [rbx]; call <the workload's function through a patched site>; iretq`, `empty` is
//! `iretq` alone. It is fetched through the interrupted CPU's instruction view like any other
//! code, so it can see a stale or torn site, hit an INT3 and run the INT3 handler. A guest vCPU
//! runs it on its own stack (the frame is pushed there, and restored by IRET); a patching
//! client's CPU runs it on a CPU of its own ([`crate::machine`]'s interrupt CPUs: a `Vcpu`
//! that steps only while the client is interrupted, whose view the client's own serialising
//! points refresh).
//!
//! The number of deliveries per run is bounded by the scenario's budget: unbounded interrupts
//! would make every search infinite.

use std::fmt;
use std::str::FromStr;

use cpu_model::Regs;

/// `RFLAGS.IF`.
pub const IF: u64 = 1 << 9;

/// Which CPUs take interrupts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqTargets {
    /// The guest vCPUs.
    Vcpus,
    /// The patching clients' CPUs.
    Patcher,
    /// Both.
    All,
}

/// The handler an interrupt runs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IrqHandler {
    /// `inc qword [rbx]; call <site function>; iretq`: calls a function through a patched site.
    CallSite,
    /// `iretq` alone.
    Empty,
}

/// How a CPU's own stores to the text reach its own instruction fetches (the fetch-model
/// dimension of docs/reference/x86-cmc.md §7).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum OwnStores {
    /// Only at its next serialising instruction; until then its view lags like a remote CPU's
    /// (SDM Vol. 3A §11.6 for a write through another linear address; the cautious reading of
    /// §9.1.3's OPTION 2). The default: the architecture promises no more.
    #[default]
    Serialize,
    /// At once (§11.6's snoop of a write through the same linear address; §9.1.3 OPTION 1).
    Jump,
}

/// The `[interrupts]` section of a scenario.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Interrupts {
    /// Which CPUs take them.
    pub targets: IrqTargets,
    /// Deliveries per run (at least 1).
    pub budget: u32,
    /// The handler.
    pub handler: IrqHandler,
}

macro_rules! names {
    ($ty:ty, $what:literal, $($v:path => $n:literal),+) => {
        impl $ty {
            /// The name in files and on the command line.
            pub fn name(self) -> &'static str {
                match self { $($v => $n),+ }
            }
        }
        impl FromStr for $ty {
            type Err = String;
            fn from_str(s: &str) -> Result<Self, String> {
                match s {
                    $($n => Ok($v),)+
                    _ => Err(format!("unknown {} '{s}' (valid: {})", $what, [$($n),+].join(", "))),
                }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }
    };
}
names!(IrqTargets, "interrupt target", IrqTargets::Vcpus => "vcpus", IrqTargets::Patcher => "patcher", IrqTargets::All => "all");
names!(IrqHandler, "interrupt handler", IrqHandler::CallSite => "call-site", IrqHandler::Empty => "empty");
names!(OwnStores, "own-stores rule", OwnStores::Serialize => "serialize", OwnStores::Jump => "jump");

impl Interrupts {
    /// True if guest vCPUs take interrupts.
    pub fn vcpus(&self) -> bool {
        matches!(self.targets, IrqTargets::Vcpus | IrqTargets::All)
    }

    /// True if the patching clients' CPUs take interrupts.
    pub fn patcher(&self) -> bool {
        matches!(self.targets, IrqTargets::Patcher | IrqTargets::All)
    }
}

/// Where the handlers' code is in the text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct IrqCode {
    /// The first instruction of the handler the scenario chose.
    pub entry: u64,
    /// Its `iretq`.
    pub iret: u64,
    /// The code's range `(start, len)`.
    pub range: (u64, u64),
}

/// `inc qword [rbx]` (48 ff 03), `call rel32`, `iretq` (48 cf) at `at` for `call-site` (calling
/// `func`), or `iretq` alone for `empty`: the code and where its IRET is.
pub fn handler_code(handler: IrqHandler, at: u64, func: u64) -> (Vec<u8>, IrqCode) {
    let mut code = Vec::new();
    if handler == IrqHandler::CallSite {
        code.extend_from_slice(&[0x48, 0xff, 0x03, 0xe8]);
        let rel = (func as i64 - (at as i64 + 8)) as i32;
        code.extend_from_slice(&rel.to_le_bytes());
    }
    let iret = at + code.len() as u64;
    code.extend_from_slice(&[0x48, 0xcf]);
    let range = (at, code.len() as u64);
    (code, IrqCode { entry: at, iret, range })
}

/// The interrupt state of a run: what a snapshot saves and the canonical hash reads.
#[derive(Debug, PartialEq, Eq, Hash, Default)]
pub struct IrqState {
    /// Deliveries left.
    pub left: u32,
    /// Per guest vCPU: `RFLAGS.IF` (kept here so the enabled set never reads an engine).
    pub vcpu_if: Vec<bool>,
    /// Per guest vCPU: in an interrupt handler (its frame is on its stack).
    pub vcpu_in: Vec<bool>,
    /// Per patching client: its CPU is in an interrupt handler (its own registers wait in the
    /// client).
    pub client_in: Vec<bool>,
}

/// `clone_from` reuses the buffers (the search restores a state per transition).
impl Clone for IrqState {
    fn clone(&self) -> Self {
        let mut copy = Self::default();
        copy.clone_from(self);
        copy
    }

    fn clone_from(&mut self, source: &Self) {
        let Self { left, vcpu_if, vcpu_in, client_in } = self;
        *left = source.left;
        vcpu_if.clone_from(&source.vcpu_if);
        vcpu_in.clone_from(&source.vcpu_in);
        client_in.clone_from(&source.client_in);
    }
}

impl IrqState {
    /// The state at the start of a run of `cpus` vCPUs starting with `regs` and `clients`
    /// patching clients.
    pub fn new(budget: u32, regs: &[Regs], clients: usize) -> Self {
        Self {
            left: budget,
            vcpu_if: regs.iter().map(|r| r.rflags & IF != 0).collect(),
            vcpu_in: vec![false; regs.len()],
            client_in: vec![false; clients],
        }
    }
}
