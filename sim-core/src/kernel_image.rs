//! A protocol compiled from C (DESIGN.md §2.15, issue 24): the linked image a scenario's
//! `[protocol] source = "file.c"` becomes — the kernel code the patching clients and the INT3
//! handler run on the vCPUs, its data (`bp_patching`, `bp_desc`, `text_poke_array`, per-CPU
//! refs, `text_mutex`), its symbols and its DWARF line table — at fixed guest addresses.
//!
//! The address map is fixed here, once, for the compiler (crate `c-protocol`, which writes it
//! into its linker script) and for the machine (which maps it into every engine):
//!
//! | region            | address           | what                                               |
//! |-------------------|-------------------|----------------------------------------------------|
//! | service page      | [`SERVICE_BASE`]  | one 16-byte slot per [`Service`]: kernel services pokesim runs |
//! | kernel code       | [`KCODE_BASE`]    | `.text`, `.rodata` (read + execute, never patched) |
//! | kernel data       | [`KDATA_BASE`]    | `.data`, `.bss` (shared by every CPU)               |
//! | call arguments    | [`KARGS_BASE`]    | the `struct pokesim_poke` arrays pokesim passes     |
//! | patcher stacks    | [`KSTACK_BASE`]   | one [`KSTACK_SIZE`] stack per patching client       |
//! | exception stacks  | [`KEXC_BASE`]     | one [`KSTACK_SIZE`] stack per guest vCPU (`pt_regs`) |
//!
//! Everything lies below 2 GiB (`-mcmodel=small`) and above the guest's text and data.

use std::collections::BTreeMap;

/// The service page: [`Service`] `s` is the 16-byte slot at `SERVICE_BASE + 16 * s as u64`.
pub const SERVICE_BASE: u64 = 0x0800_0000;
/// The kernel code region (`.text`, `.rodata`).
pub const KCODE_BASE: u64 = 0x0801_0000;
/// Largest kernel code region.
pub const KCODE_MAX: u64 = 0x000f_0000;
/// The kernel data region (`.data`, `.bss`).
pub const KDATA_BASE: u64 = 0x0810_0000;
/// Largest kernel data region.
pub const KDATA_MAX: u64 = 0x0010_0000;
/// The arguments pokesim passes to the file's entry points.
pub const KARGS_BASE: u64 = 0x0820_0000;
/// Size of the argument region.
pub const KARGS_SIZE: u64 = 0x0001_0000;
/// The patching clients' stacks: client `k`'s occupies `[KSTACK_BASE + k * KSTACK_SIZE, +KSTACK_SIZE)`.
pub const KSTACK_BASE: u64 = 0x0830_0000;
/// The guest vCPUs' exception stacks (where the INT3 handler's `pt_regs` frame goes).
pub const KEXC_BASE: u64 = 0x0840_0000;
/// One stack's size.
pub const KSTACK_SIZE: u64 = 0x4000;

// The regions are ordered, disjoint and below 2 GiB (checked when the crate compiles): 16
// patching clients' stacks, 64 vCPUs' exception stacks.
const _: () = {
    assert!(SERVICE_BASE + cpu_model::PAGE_SIZE <= KCODE_BASE);
    assert!(KCODE_BASE + KCODE_MAX <= KDATA_BASE);
    assert!(KDATA_BASE + KDATA_MAX <= KARGS_BASE);
    assert!(KARGS_BASE + KARGS_SIZE <= KSTACK_BASE);
    assert!(KSTACK_BASE + 16 * KSTACK_SIZE <= KEXC_BASE);
    assert!(KEXC_BASE + 64 * KSTACK_SIZE < 0x8000_0000);
};

/// The kernel services a protocol file calls: `extern` functions the linker places on the
/// service page, carried out by pokesim when a CPU's RIP enters their slot. One row each; the
/// order is the slot number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Service {
    /// `void *text_poke(void *addr, const void *opcode, size_t len)`.
    TextPoke,
    /// `void on_each_cpu(void (*func)(void *), void *info, int wait)` (only `do_sync_core`).
    OnEachCpu,
    /// `void sync_core(void)`.
    SyncCore,
    /// `void mutex_lock(struct mutex *)` (only `&text_mutex`).
    MutexLock,
    /// `void mutex_unlock(struct mutex *)`.
    MutexUnlock,
    /// `void pokesim_lockdep_assert_held(const void *lock, const char *file, int line)`.
    LockdepAssertHeld,
    /// `void synchronize_rcu(void)`.
    SynchronizeRcu,
    /// `int pokesim_smp_processor_id(void)`.
    SmpProcessorId,
    /// `unsigned int pokesim_nr_cpu_ids(void)`.
    NrCpuIds,
    /// `int pokesim_insn_decode(const void *kaddr, struct pokesim_insn_info *out)`.
    InsnDecode,
    /// `void pokesim_bug(const char *file, int line, const char *cond)` (noreturn).
    Bug,
    /// `void pokesim_warn(const char *file, int line, const char *cond)`.
    Warn,
    /// `void pokesim_text_memcpy(void *addr, const void *opcode, size_t len)`: the
    /// `memcpy(addr, opcode, len)` of `text_poke_early()` — a store to the text through its own
    /// linear address by the CPU that may execute it (the text is otherwise writable only
    /// through `text_poke()`). Not serialising.
    TextMemcpy,
}

impl Service {
    /// Every service, in slot order.
    pub const ALL: [Service; 13] = [
        Service::TextPoke,
        Service::OnEachCpu,
        Service::SyncCore,
        Service::MutexLock,
        Service::MutexUnlock,
        Service::LockdepAssertHeld,
        Service::SynchronizeRcu,
        Service::SmpProcessorId,
        Service::NrCpuIds,
        Service::InsnDecode,
        Service::Bug,
        Service::Warn,
        Service::TextMemcpy,
    ];

    /// The C symbol.
    pub fn symbol(self) -> &'static str {
        match self {
            Service::TextPoke => "text_poke",
            Service::OnEachCpu => "on_each_cpu",
            Service::SyncCore => "sync_core",
            Service::MutexLock => "mutex_lock",
            Service::MutexUnlock => "mutex_unlock",
            Service::LockdepAssertHeld => "pokesim_lockdep_assert_held",
            Service::SynchronizeRcu => "synchronize_rcu",
            Service::SmpProcessorId => "pokesim_smp_processor_id",
            Service::NrCpuIds => "pokesim_nr_cpu_ids",
            Service::InsnDecode => "pokesim_insn_decode",
            Service::Bug => "pokesim_bug",
            Service::Warn => "pokesim_warn",
            Service::TextMemcpy => "pokesim_text_memcpy",
        }
    }

    /// The slot's address.
    pub fn addr(self) -> u64 {
        SERVICE_BASE + 16 * self as u64
    }

    /// The service whose slot starts at `rip`, if any.
    pub fn at(rip: u64) -> Option<Service> {
        let off = rip.checked_sub(SERVICE_BASE)?;
        (off.is_multiple_of(16)).then(|| Service::ALL.get((off / 16) as usize).copied()).flatten()
    }
}

/// One row of the DWARF line table: the code at `addr` (up to the next row) came from `line`
/// of `file`, inside `function`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LineRow {
    /// First address of the row.
    pub addr: u64,
    /// Source file (as the compiler named it).
    pub file: String,
    /// 1-based line.
    pub line: u32,
    /// The enclosing function (from the symbol table).
    pub function: String,
}

/// A linked protocol: what the machine maps and what traces and reports cite.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KernelImage {
    /// The source file as the scenario named it (for messages).
    pub source: String,
    /// Content hash of everything the image was built from (source, runtime, header, flags,
    /// compiler version), hex; artifacts record it.
    pub hash: String,
    /// `.text` + `.rodata`, loaded at [`KCODE_BASE`].
    pub code: Vec<u8>,
    /// `.data` + `.bss` (zeroed), loaded at [`KDATA_BASE`].
    pub data: Vec<u8>,
    /// Every defined symbol's address (functions and objects).
    pub symbols: BTreeMap<String, u64>,
    /// The line table, sorted by address.
    pub lines: Vec<LineRow>,
}

impl KernelImage {
    /// The address of `symbol`, if the file defines it.
    pub fn symbol(&self, symbol: &str) -> Option<u64> {
        self.symbols.get(symbol).copied()
    }

    /// The source line of the code at `addr`.
    pub fn line(&self, addr: u64) -> Option<&LineRow> {
        let i = self.lines.partition_point(|r| r.addr <= addr);
        i.checked_sub(1).map(|i| &self.lines[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_have_distinct_slots_inside_one_page() {
        for (i, s) in Service::ALL.iter().enumerate() {
            assert_eq!(*s as usize, i);
            assert_eq!(Service::at(s.addr()), Some(*s));
            assert!(s.addr() + 16 <= SERVICE_BASE + cpu_model::PAGE_SIZE);
        }
        assert_eq!(Service::at(SERVICE_BASE + 1), None);
        assert_eq!(Service::at(SERVICE_BASE + 16 * Service::ALL.len() as u64), None);
    }
}
