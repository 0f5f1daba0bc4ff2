//! x86-TSO data memory: per-CPU FIFO store buffers over one shared memory (issue 25).
//!
//! What it models: the abstract machine of Sewell, Sarkar, Owens, Zappa Nardelli and Myreen,
//! "x86-TSO: A Rigorous and Usable Programmer's Model for x86 Multiprocessors" (CACM 53(7),
//! 2010), which is the operational reading of the Intel SDM vol. 3A §9.2 "Memory Ordering"
//! (§8.2 in editions before 2023): §9.2.2's "write ordered with store-buffer forwarding" —
//! reads may be reordered with older writes to different locations (§9.2.3.4), a processor
//! reads its own buffered write first (intra-processor forwarding, §9.2.3.5), stores become
//! visible to all other processors at once and in one total order (§9.2.3.7), and locked
//! instructions, MFENCE and serialising instructions are not reordered with loads or stores
//! (§9.2.2, §9.2.3.8–9, §9.2.5, serialising instructions §9.3).
//!
//! The machine, as here:
//! - each CPU has a FIFO buffer of its stores; a store goes into its CPU's buffer
//!   ([`TsoMemory::store`]);
//! - a load reads, byte by byte, the newest buffered store of its own CPU to that byte, else
//!   memory. Forwarding is **byte-granular**: a 4-byte load that overlaps a buffered 1-byte
//!   store reads that byte from the buffer and the other three from memory (or from other,
//!   older buffered stores). The SDM guarantees forwarding only for the same location, and
//!   real cores may stall a partially overlapping load until the store drains — which reads
//!   the same bytes, so the byte-granular rule has exactly the values a stall would give;
//! - draining the oldest entry of CPU *i* into memory is an event of its own
//!   ([`TsoMemory::drain_oldest`]): whoever schedules the CPUs decides when it happens, so a
//!   search over schedules sees every moment a store can become visible;
//! - a locked instruction (LOCK prefix, XCHG with memory), MFENCE, a serialising instruction
//!   and the delivery of an exception or interrupt first drain the CPU's whole buffer
//!   ([`TsoMemory::drain_all`]); a locked read-modify-write then executes atomically against
//!   memory and its store goes straight to memory ([`TsoMemory::store_locked`]). The paper's
//!   machine blocks a fence until the buffer is empty instead; drain-all-then-execute reaches
//!   the same states, since every interleaving of the blocked fence with other CPUs' events is
//!   the one where the scheduler chose the same drains, one by one, before the fence;
//! - LFENCE and SFENCE order nothing a store buffer can reorder (the SDM: writes are not
//!   reordered with writes, reads not with reads) and are plain instructions here, as in
//!   x86-TSO and herd7's `x86tso.cat`.
//!
//! [`MemoryModel::Sc`] is the same machine where every store drains as it is made: the
//! buffers stay empty and every load reads memory — sequential consistency.
//!
//! Representation (the reason this is cheap with Unicorn): every CPU has its own copy of the
//! data pages, which its engine maps, holding *memory overlaid with its own buffered stores*.
//! A load therefore reads its copy with no hook at all, and forwarding costs nothing; the
//! engine writes a store into its copy itself, and the caller enqueues it from the copy. A
//! drain writes the entry into memory and into every other CPU's copy, except the bytes that
//! CPU still has buffered stores to (counted per byte), which it keeps showing. Invariant:
//! `copy[c][b] == newest buffered store of c to b` if `pending[c][b] > 0`, else `memory[b]`.
//! Under SC nothing is ever buffered, so every copy would always equal memory: there are no
//! copies, every CPU maps memory itself (one host buffer, as a shared region) and a store is
//! already in memory when it is reported.

use std::collections::VecDeque;
use std::fmt;
use std::str::FromStr;

use crate::memory::PageBuf;
use crate::PAGE_SIZE;

/// Which memory model data accesses follow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum MemoryModel {
    /// x86-TSO: stores wait in per-CPU FIFO buffers until a drain event.
    #[default]
    Tso,
    /// Sequential consistency: every store drains at once.
    Sc,
}

impl MemoryModel {
    /// The name used in scenario files and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            MemoryModel::Tso => "tso",
            MemoryModel::Sc => "sc",
        }
    }
}

impl fmt::Display for MemoryModel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for MemoryModel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "tso" => Ok(MemoryModel::Tso),
            "sc" => Ok(MemoryModel::Sc),
            _ => Err(format!("unknown memory model `{s}` (expected `tso` or `sc`)")),
        }
    }
}

/// The widest store one entry holds (an x86 store is at most 64 bytes wide, an AVX-512 one).
pub const MAX_STORE: usize = 64;

/// One buffered store: the bytes a single instruction wrote to one range.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BufferedStore {
    /// First byte's guest address.
    pub addr: u64,
    len: u8,
    bytes: [u8; MAX_STORE],
}

impl BufferedStore {
    /// A store of `bytes` (at most [`MAX_STORE`]) at `addr`.
    pub fn new(addr: u64, bytes: &[u8]) -> Self {
        assert!(!bytes.is_empty() && bytes.len() <= MAX_STORE, "a store is 1..=64 bytes");
        let mut b = [0u8; MAX_STORE];
        b[..bytes.len()].copy_from_slice(bytes);
        Self { addr, len: bytes.len() as u8, bytes: b }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..self.len as usize]
    }

    /// The value as a little-endian integer (the first 8 bytes).
    pub fn value(&self) -> u64 {
        let mut v = [0u8; 8];
        let n = self.bytes().len().min(8);
        v[..n].copy_from_slice(&self.bytes()[..n]);
        u64::from_le_bytes(v)
    }
}

impl fmt::Debug for BufferedStore {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "[{:#x}]<-{:#x}/{}", self.addr, self.value(), self.len)
    }
}

/// What a memory access outside the region, or a misuse, is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, thiserror::Error)]
pub enum TsoError {
    /// `(addr, len)` is not inside the region.
    #[error("data access [{0:#x}, +{1}) outside the TSO region")]
    Outside(u64, usize),
    /// `(addr, len)` is not inside the windows a state saves.
    #[error("store [{0:#x}, +{1}) outside the saved windows of the TSO region")]
    Unsaved(u64, usize),
    /// A locked store was made with stores still buffered (the caller must drain first).
    #[error("locked store on cpu{0} with its store buffer not empty")]
    NotDrained(usize),
}

/// One CPU's side: its copy (memory + its own buffered stores), its buffer, and per byte the
/// number of its buffered stores that cover it.
struct CpuSide {
    copy: Option<PageBuf>,
    buffer: VecDeque<BufferedStore>,
    pending: Vec<u16>,
    /// Stores ever buffered and drained (for traces: not state, never saved or restored).
    counts: (u64, u64),
}

/// What a search saves of a [`TsoMemory`]: memory in the saved windows and every buffer.
/// Two memories with equal states behave the same from then on.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TsoState {
    /// The bytes of memory in each saved window, in window order.
    pub memory: Vec<u8>,
    /// Each CPU's buffer, oldest first.
    pub buffers: Vec<Vec<BufferedStore>>,
}

/// The data memory of several CPUs under a [`MemoryModel`].
pub struct TsoMemory {
    model: MemoryModel,
    base: u64,
    memory: PageBuf,
    cpus: Vec<CpuSide>,
    /// `(addr, len)` ranges a [`TsoState`] saves; every store must fall inside one.
    windows: Vec<(u64, u64)>,
}

impl fmt::Debug for TsoMemory {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let buffers: Vec<_> = self.cpus.iter().map(|c| &c.buffer).collect();
        f.debug_struct("TsoMemory").field("model", &self.model).field("buffers", &buffers).finish()
    }
}

impl TsoMemory {
    /// A zeroed region of `len` bytes (whole pages) at `base` for `cpus` CPUs; a state saves
    /// the whole region until [`TsoMemory::set_windows`] says otherwise.
    pub fn new(model: MemoryModel, base: u64, len: u64, cpus: usize) -> Self {
        assert!(len > 0 && len.is_multiple_of(PAGE_SIZE), "a region is whole pages");
        let side = || CpuSide {
            copy: (model == MemoryModel::Tso).then(|| PageBuf::new(len as usize)),
            buffer: VecDeque::new(),
            pending: vec![0; len as usize],
            counts: (0, 0),
        };
        Self {
            model,
            base,
            memory: PageBuf::new(len as usize),
            cpus: (0..cpus).map(|_| side()).collect(),
            windows: vec![(base, len)],
        }
    }

    /// The model.
    pub fn model(&self) -> MemoryModel {
        self.model
    }

    /// Guest address of the first byte.
    pub fn base(&self) -> u64 {
        self.base
    }

    /// Size in bytes.
    pub fn len(&self) -> u64 {
        self.memory.len() as u64
    }

    /// Never true: a region has at least one page.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// Number of CPUs.
    pub fn cpus(&self) -> usize {
        self.cpus.len()
    }

    /// Restricts what a [`TsoState`] saves to `windows` (`(addr, len)`, inside the region):
    /// the caller promises that no store writes outside them ([`TsoError::Unsaved`]).
    pub fn set_windows(&mut self, windows: &[(u64, u64)]) -> Result<(), TsoError> {
        for &(a, l) in windows {
            self.offset(a, l as usize)?;
        }
        self.windows = windows.to_vec();
        Ok(())
    }

    /// The host buffer CPU `cpu`'s engine maps at [`TsoMemory::base`].
    pub(crate) fn copy_ptr(&self, cpu: usize) -> *mut u8 {
        self.copy(cpu).as_ptr()
    }

    fn offset(&self, addr: u64, len: usize) -> Result<usize, TsoError> {
        let off = addr.checked_sub(self.base).ok_or(TsoError::Outside(addr, len))?;
        if off + len as u64 > self.len() {
            return Err(TsoError::Outside(addr, len));
        }
        Ok(off as usize)
    }

    fn check_saved(&self, addr: u64, len: usize) -> Result<(), TsoError> {
        let inside = self.windows.iter().any(|&(a, l)| addr >= a && addr + len as u64 <= a + l);
        if inside {
            Ok(())
        } else {
            Err(TsoError::Unsaved(addr, len))
        }
    }

    /// Sets initial memory contents (every buffer must be empty): memory and every copy.
    pub fn init(&mut self, addr: u64, bytes: &[u8]) -> Result<(), TsoError> {
        let off = self.offset(addr, bytes.len())?;
        self.memory.write(off, bytes);
        for c in &self.cpus {
            debug_assert!(c.buffer.is_empty(), "init with buffered stores");
            if let Some(copy) = &c.copy {
                copy.write(off, bytes);
            }
        }
        Ok(())
    }

    /// Memory as every other CPU sees it (no buffered store).
    pub fn read_memory(&self, addr: u64, out: &mut [u8]) -> Result<(), TsoError> {
        let off = self.offset(addr, out.len())?;
        self.memory.read(off, out);
        Ok(())
    }

    /// What a load by `cpu` reads: its own newest buffered store per byte, else memory.
    pub fn read_as(&self, cpu: usize, addr: u64, out: &mut [u8]) -> Result<(), TsoError> {
        let off = self.offset(addr, out.len())?;
        self.copy(cpu).read(off, out);
        Ok(())
    }

    /// CPU `cpu`'s buffer, oldest first.
    pub fn buffer(&self, cpu: usize) -> impl ExactSizeIterator<Item = &BufferedStore> {
        self.cpus[cpu].buffer.iter()
    }

    /// How many stores CPU `cpu` has ever buffered and drained (for traces: the stores a
    /// step buffered are the last `after.0 - before.0` of its buffer; not part of the state).
    pub fn counts(&self, cpu: usize) -> (u64, u64) {
        self.cpus[cpu].counts
    }

    /// Number of stores CPU `cpu` has buffered.
    pub fn buffered(&self, cpu: usize) -> usize {
        self.cpus[cpu].buffer.len()
    }

    /// Records the store CPU `cpu`'s engine just wrote into its copy at `[addr, addr+len)`:
    /// under TSO it joins the buffer (the copy already shows it: forwarding), under SC it is
    /// drained at once.
    pub fn store(&mut self, cpu: usize, addr: u64, len: usize) -> Result<(), TsoError> {
        let off = self.offset(addr, len)?;
        if self.model == MemoryModel::Tso {
            // Under SC memory is the copies (nothing is buffered): a store outside the windows
            // is as unsaved as it always was; under TSO a restore could not rebuild it.
            self.check_saved(addr, len)?;
        }
        let mut bytes = [0u8; MAX_STORE];
        for (chunk, a) in (0..len).step_by(MAX_STORE).map(|s| (s, addr + s as u64)) {
            let n = (len - chunk).min(MAX_STORE);
            self.copy(cpu).read(off + chunk, &mut bytes[..n]);
            let store = BufferedStore::new(a, &bytes[..n]);
            match self.model {
                MemoryModel::Sc => self.publish(cpu, &store),
                MemoryModel::Tso => self.enqueue(cpu, store),
            }
        }
        Ok(())
    }

    /// Records the store of a locked instruction (the buffer is empty: the caller drained it
    /// before the instruction): it goes straight to memory, atomically with the instruction's
    /// load.
    pub fn store_locked(&mut self, cpu: usize, addr: u64, len: usize) -> Result<(), TsoError> {
        if !self.cpus[cpu].buffer.is_empty() {
            return Err(TsoError::NotDrained(cpu));
        }
        let model = self.model;
        self.model = MemoryModel::Sc;
        let r = self.store(cpu, addr, len);
        self.model = model;
        r
    }

    /// Records a store CPU `cpu`'s engine just wrote into its copy at memory no other CPU can
    /// address yet (its own stack below anything it published): it goes straight to memory
    /// unless the CPU still has older buffered stores to those bytes (then it is buffered
    /// behind them, FIFO). Nobody can read it before a later store publishes its address, and
    /// that store drains after it, so the states are those of buffering it.
    pub fn store_private(&mut self, cpu: usize, addr: u64, len: usize) -> Result<(), TsoError> {
        let off = self.offset(addr, len)?;
        if self.cpus[cpu].pending[off..off + len].iter().any(|&p| p > 0) {
            return self.store(cpu, addr, len);
        }
        let model = self.model;
        self.model = MemoryModel::Sc;
        let r = self.store(cpu, addr, len);
        self.model = model;
        r
    }

    /// A store by CPU `cpu` made from outside its engine (a kernel service pokesim carries
    /// out): written into its copy, then recorded as [`TsoMemory::store`] (or
    /// [`TsoMemory::store_private`] with `private`) does.
    pub fn write_as(&mut self, cpu: usize, addr: u64, bytes: &[u8], private: bool) -> Result<(), TsoError> {
        let off = self.offset(addr, bytes.len())?;
        self.copy(cpu).write(off, bytes);
        match private {
            true => self.store_private(cpu, addr, bytes.len()),
            false => self.store(cpu, addr, bytes.len()),
        }
    }

    /// Writes memory and every copy (a restored window); every buffer must be empty at those
    /// bytes (under SC they always are).
    pub fn write_memory(&mut self, addr: u64, bytes: &[u8]) -> Result<(), TsoError> {
        let off = self.offset(addr, bytes.len())?;
        self.memory.write(off, bytes);
        for c in &self.cpus {
            if let Some(copy) = &c.copy {
                copy.write(off, bytes);
            }
        }
        Ok(())
    }

    fn enqueue(&mut self, cpu: usize, store: BufferedStore) {
        let off = (store.addr - self.base) as usize;
        let side = &mut self.cpus[cpu];
        for p in &mut side.pending[off..off + store.bytes().len()] {
            *p = p.checked_add(1).expect("fewer than 65536 buffered stores per byte");
        }
        side.buffer.push_back(store);
        side.counts.0 += 1;
    }

    /// Writes `store` (by `cpu`) into memory and into every other CPU's copy where that CPU
    /// has no buffered store of its own.
    fn publish(&mut self, cpu: usize, store: &BufferedStore) {
        let off = (store.addr - self.base) as usize;
        self.memory.write(off, store.bytes());
        for (c, side) in self.cpus.iter().enumerate() {
            let Some(copy) = side.copy.as_ref().filter(|_| c != cpu) else { continue };
            let n = store.bytes().len();
            if side.pending[off..off + n].iter().all(|&p| p == 0) {
                // The common case: the whole store at once.
                copy.write(off, store.bytes());
                continue;
            }
            for (i, &b) in store.bytes().iter().enumerate() {
                if side.pending[off + i] == 0 {
                    copy.write(off + i, &[b]);
                }
            }
        }
    }

    /// The drain event: CPU `cpu`'s oldest buffered store becomes visible to all (none if the
    /// buffer is empty). Its own copy already shows it, or a newer store of its own.
    pub fn drain_oldest(&mut self, cpu: usize) -> Option<BufferedStore> {
        let store = self.cpus[cpu].buffer.pop_front()?;
        self.cpus[cpu].counts.1 += 1;
        let off = (store.addr - self.base) as usize;
        for p in &mut self.cpus[cpu].pending[off..off + store.bytes().len()] {
            *p -= 1;
        }
        self.publish(cpu, &store);
        Some(store)
    }

    /// Drains CPU `cpu`'s whole buffer, oldest first (a fence, a locked instruction, a
    /// serialising event); returns how many stores drained.
    pub fn drain_all(&mut self, cpu: usize) -> usize {
        let mut n = 0;
        while self.drain_oldest(cpu).is_some() {
            n += 1;
        }
        n
    }

    /// Every CPU's buffer, oldest first (what a saved state keeps beside memory).
    pub fn buffers(&self) -> Vec<Vec<BufferedStore>> {
        self.cpus.iter().map(|c| c.buffer.iter().copied().collect()).collect()
    }

    /// Empties every buffer without draining it: each copy shows memory again where it
    /// showed a buffered store (the first half of restoring a state whose memory the caller
    /// writes next, with [`TsoMemory::write_memory`], before [`TsoMemory::rebuffer`]).
    pub fn unbuffer(&mut self) {
        let memory = &self.memory;
        for side in &mut self.cpus {
            for s in side.buffer.drain(..) {
                let off = (s.addr - self.base) as usize;
                for i in off..off + s.bytes().len() {
                    side.pending[i] = 0;
                    if let Some(copy) = &side.copy {
                        copy.write(i, &[memory.byte(i)]);
                    }
                }
            }
        }
    }

    /// Puts `buffers` (one per CPU, oldest first) into the empty buffers: each copy shows
    /// them over memory (the second half of a restore).
    pub fn rebuffer(&mut self, buffers: &[Vec<BufferedStore>]) {
        assert_eq!(buffers.len(), self.cpus.len(), "buffers of another machine");
        for (side, buffer) in self.cpus.iter_mut().zip(buffers) {
            debug_assert!(side.buffer.is_empty(), "rebuffer over buffered stores");
            let Some(copy) = side.copy.as_ref() else {
                assert!(buffer.is_empty(), "only a TSO memory has buffers");
                continue;
            };
            for s in buffer {
                let off = (s.addr - self.base) as usize;
                copy.write(off, s.bytes());
                side.pending[off..off + s.bytes().len()].iter_mut().for_each(|p| *p += 1);
                side.buffer.push_back(*s);
            }
        }
    }

    /// The state: memory in the saved windows and every buffer.
    pub fn save(&self) -> TsoState {
        let mut memory = Vec::new();
        for &(a, l) in &self.windows {
            let off = (a - self.base) as usize;
            let start = memory.len();
            memory.resize(start + l as usize, 0);
            self.memory.read(off, &mut memory[start..]);
        }
        let buffers = self.cpus.iter().map(|c| c.buffer.iter().copied().collect()).collect();
        TsoState { memory, buffers }
    }

    /// Restores a saved state: memory in the windows, then each copy as memory overlaid with
    /// its CPU's buffer, oldest to newest.
    pub fn restore(&mut self, state: &TsoState) {
        assert_eq!(state.buffers.len(), self.cpus.len(), "a state of another machine");
        let mut at = 0;
        for &(a, l) in &self.windows {
            let off = (a - self.base) as usize;
            let bytes = &state.memory[at..at + l as usize];
            self.memory.write(off, bytes);
            for copy in self.cpus.iter().filter_map(|c| c.copy.as_ref()) {
                copy.write(off, bytes);
            }
            at += l as usize;
        }
        for (side, buffer) in self.cpus.iter_mut().zip(&state.buffers) {
            for s in side.buffer.drain(..) {
                let off = (s.addr - self.base) as usize;
                side.pending[off..off + s.bytes().len()].iter_mut().for_each(|p| *p = 0);
            }
            for s in buffer {
                let off = (s.addr - self.base) as usize;
                side.copy.as_ref().expect("only a TSO memory has buffers").write(off, s.bytes());
                side.pending[off..off + s.bytes().len()].iter_mut().for_each(|p| *p += 1);
                side.buffer.push_back(*s);
            }
        }
    }

    /// The buffer CPU `cpu`'s loads read: its copy under TSO; memory itself under SC, where
    /// every CPU's copy would always equal memory (so SC keeps one buffer, as a shared region).
    fn copy(&self, cpu: usize) -> &PageBuf {
        self.cpus[cpu].copy.as_ref().unwrap_or(&self.memory)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: u64 = 0x10_0000;

    fn read(m: &TsoMemory, cpu: Option<usize>, addr: u64) -> u32 {
        let mut b = [0u8; 4];
        match cpu {
            Some(c) => m.read_as(c, addr, &mut b).unwrap(),
            None => m.read_memory(addr, &mut b).unwrap(),
        }
        u32::from_le_bytes(b)
    }

    /// What an engine does on a store: write its copy, then report it.
    fn engine_store(m: &mut TsoMemory, cpu: usize, addr: u64, bytes: &[u8]) {
        let off = (addr - BASE) as usize;
        m.copy(cpu).write(off, bytes);
        m.store(cpu, addr, bytes.len()).unwrap();
    }

    #[test]
    fn buffered_store_is_forwarded_and_hidden_until_drained() {
        let mut m = TsoMemory::new(MemoryModel::Tso, BASE, PAGE_SIZE, 2);
        engine_store(&mut m, 0, BASE, &1u32.to_le_bytes());
        assert_eq!((read(&m, Some(0), BASE), read(&m, Some(1), BASE), read(&m, None, BASE)), (1, 0, 0));
        assert_eq!(m.drain_oldest(0).map(|s| s.value()), Some(1));
        assert_eq!((read(&m, Some(1), BASE), read(&m, None, BASE)), (1, 1));
        assert_eq!(m.drain_oldest(0), None);
    }

    #[test]
    fn a_drain_does_not_overwrite_another_cpus_buffered_bytes() {
        let mut m = TsoMemory::new(MemoryModel::Tso, BASE, PAGE_SIZE, 2);
        engine_store(&mut m, 0, BASE, &[1, 1, 1, 1]);
        engine_store(&mut m, 1, BASE + 1, &[2]);
        m.drain_oldest(0);
        // cpu1 sees its own byte 1, memory's bytes elsewhere (byte-granular forwarding).
        assert_eq!(read(&m, Some(1), BASE), u32::from_le_bytes([1, 2, 1, 1]));
        m.drain_oldest(1);
        assert_eq!(read(&m, Some(0), BASE), u32::from_le_bytes([1, 2, 1, 1]));
        assert_eq!(read(&m, None, BASE), u32::from_le_bytes([1, 2, 1, 1]));
    }

    #[test]
    fn own_drain_keeps_showing_the_newer_store() {
        let mut m = TsoMemory::new(MemoryModel::Tso, BASE, PAGE_SIZE, 2);
        engine_store(&mut m, 0, BASE, &1u32.to_le_bytes());
        engine_store(&mut m, 0, BASE, &2u32.to_le_bytes());
        m.drain_oldest(0);
        assert_eq!((read(&m, Some(0), BASE), read(&m, Some(1), BASE)), (2, 1));
        assert_eq!(m.drain_all(0), 1);
        assert_eq!(read(&m, Some(1), BASE), 2);
    }

    #[test]
    fn sc_drains_every_store_at_once() {
        let mut m = TsoMemory::new(MemoryModel::Sc, BASE, PAGE_SIZE, 2);
        engine_store(&mut m, 0, BASE, &7u32.to_le_bytes());
        assert_eq!((m.buffered(0), read(&m, Some(1), BASE)), (0, 7));
    }

    #[test]
    fn save_and_restore_round_trip() {
        let mut m = TsoMemory::new(MemoryModel::Tso, BASE, PAGE_SIZE, 2);
        m.set_windows(&[(BASE, 16)]).unwrap();
        engine_store(&mut m, 0, BASE, &1u32.to_le_bytes());
        let s = m.save();
        m.drain_all(0);
        engine_store(&mut m, 1, BASE + 4, &3u32.to_le_bytes());
        m.restore(&s);
        assert_eq!(m.save(), s);
        assert_eq!((read(&m, Some(0), BASE), read(&m, Some(1), BASE), read(&m, Some(1), BASE + 4)), (1, 0, 0));
        assert_eq!(m.store(1, BASE + 64, 4), Err(TsoError::Unsaved(BASE + 64, 4)));
    }
}
