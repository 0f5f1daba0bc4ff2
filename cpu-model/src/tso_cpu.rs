//! A CPU running fixed (never patched) code against an x86-TSO data memory ([`crate::tso`]):
//! which instructions drain the store buffer, and one Unicorn engine per CPU whose data pages
//! are its own copy (memory + its buffered stores) with a `UC_HOOK_MEM_WRITE` hook that
//! reports each store to the [`TsoMemory`].
//!
//! What drains (Intel SDM vol. 3A §9.2.2 — §8.2.2 in older editions — "Reads or writes cannot
//! be reordered with I/O instructions, locked instructions, or serializing instructions";
//! "Reads cannot pass earlier LFENCE and MFENCE instructions"; §9.2.3.9 "Loads and Stores Are
//! Not Reordered with Locked Instructions"; §9.1.2.1: XCHG with memory is locked without a
//! LOCK prefix; §9.3 lists the serialising instructions; x86-TSO (Sewell et al., CACM 2010)
//! §3: MFENCE flushes the buffer, a LOCK'd instruction runs with an empty buffer and its
//! writes reach memory before it ends): see [`Ordering`].
//!
//! A step: decode at RIP (iced-x86), drain the whole buffer first if the instruction is a
//! fence, locked or serialising, run it with `emu_start(rip, 0, 0, 1)` (it reads its copy:
//! forwarding), then hand every store the hook saw to the memory — buffered, or straight to
//! memory for a locked instruction. An exception or interrupt raised by the step drains the
//! buffer too (its delivery is serialising). The compiled C protocol's kernel data uses the same
//! rules ([`crate::kernel`], DESIGN.md §2.16); the guests' data does not (yet).

use std::cell::{Cell, RefCell};
use std::fmt;
use std::rc::Rc;

use iced_x86::{Code, Decoder, DecoderOptions, Instruction, Mnemonic, OpKind};
use unicorn_engine::unicorn_const::{HookType, Prot};
use unicorn_engine::{RegisterX86, UcHookId};

use crate::engine::PooledEngine;
use crate::error::UcContext;
use crate::insn::MAX_INSN_LEN;
use crate::memory::PageBuf;
use crate::tso::TsoMemory;
use crate::vcpu::Fault;
use crate::{CpuError, Regs, PAGE_SIZE};

/// How an instruction is ordered against the CPU's store buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Ordering {
    /// Loads may pass its buffered stores; its own stores are buffered. (LFENCE and SFENCE
    /// are plain: they order nothing a FIFO store buffer reorders.)
    Plain,
    /// MFENCE: the buffer drains before it.
    Fence,
    /// A locked read-modify-write (LOCK prefix, or XCHG with a memory operand): the buffer
    /// drains, then it executes atomically against memory.
    Locked,
    /// A serialising instruction (CPUID, IRET, SERIALIZE, WRMSR, MOV to CR, ...): the buffer
    /// drains before it.
    Serialising,
}

impl Ordering {
    /// True if the buffer drains before the instruction.
    pub fn drains(self) -> bool {
        self != Ordering::Plain
    }
}

/// How `insn` is ordered ([`Ordering`]).
pub fn ordering(insn: &Instruction) -> Ordering {
    let memory_operand = (0..insn.op_count()).any(|i| insn.op_kind(i) == OpKind::Memory);
    if insn.has_lock_prefix() || (insn.mnemonic() == Mnemonic::Xchg && memory_operand) {
        return Ordering::Locked;
    }
    match insn.mnemonic() {
        Mnemonic::Mfence => Ordering::Fence,
        Mnemonic::Cpuid
        | Mnemonic::Iret
        | Mnemonic::Iretd
        | Mnemonic::Iretq
        | Mnemonic::Serialize
        | Mnemonic::Rsm
        | Mnemonic::Wrmsr
        | Mnemonic::Invd
        | Mnemonic::Wbinvd
        | Mnemonic::Invlpg
        | Mnemonic::Invept
        | Mnemonic::Invvpid
        | Mnemonic::Lgdt
        | Mnemonic::Lidt
        | Mnemonic::Lldt
        | Mnemonic::Ltr => Ordering::Serialising,
        Mnemonic::Mov if (0..insn.op_count()).any(|i| is_control_or_debug(insn, i)) => Ordering::Serialising,
        _ => Ordering::Plain,
    }
}

fn is_control_or_debug(insn: &Instruction, op: u32) -> bool {
    insn.op_kind(op) == OpKind::Register && (insn.op_register(op).is_cr() || insn.op_register(op).is_dr())
}

/// What one step did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsoStep {
    /// The instruction (`Code::INVALID` if none decoded).
    pub code: Code,
    /// How it was ordered.
    pub ordering: Ordering,
    /// Stores drained from the buffer before it (or after its exception).
    pub drained: usize,
    /// Stores it made.
    pub stores: usize,
    /// Set if it did not complete normally.
    pub fault: Option<Fault>,
}

/// One CPU: an engine running code from its own code page(s) against CPU `id`'s copy of a
/// [`TsoMemory`].
pub struct TsoCpu {
    // Field order is drop order: the engine (unmapped as it goes back to the pool) goes before
    // the buffers it maps.
    engine: PooledEngine,
    hooks: [UcHookId; 2],
    code: PageBuf,
    code_base: u64,
    mem: Rc<RefCell<TsoMemory>>,
    writes: Rc<RefCell<Vec<(u64, usize)>>>,
    trap: Rc<Cell<Option<u32>>>,
    id: usize,
    rip: u64,
}

impl fmt::Debug for TsoCpu {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TsoCpu").field("id", &self.id).field("rip", &self.rip).finish()
    }
}

impl Drop for TsoCpu {
    fn drop(&mut self) {
        let hooks = self.hooks;
        if hooks.iter().any(|&h| self.engine.uc().remove_hook(h).is_err()) {
            self.engine.spoil();
        }
    }
}

impl TsoCpu {
    /// CPU `id` of `mem`, running `code` mapped read + execute at `code_base` (page aligned,
    /// disjoint from the data), with register file `regs`.
    pub fn new(
        id: usize,
        code_base: u64,
        code: &[u8],
        mem: &Rc<RefCell<TsoMemory>>,
        regs: &Regs,
    ) -> Result<Self, CpuError> {
        let (data_base, data_len, copy) = {
            let m = mem.borrow();
            if id >= m.cpus() {
                return Err(CpuError::Layout(format!("cpu{id} of a {}-CPU memory", m.cpus())));
            }
            (m.base(), m.len(), m.copy_ptr(id))
        };
        let code_len = (code.len() as u64).max(1).next_multiple_of(PAGE_SIZE);
        let buf = PageBuf::new(code_len as usize);
        buf.write(0, code);
        let mut engine = PooledEngine::take()?;
        let uc = engine.uc();
        // SAFETY: both buffers are page aligned and exactly the mapped size. The code buffer
        // is a field declared after `engine`, and the copy lives in the `TsoMemory` this
        // struct holds an `Rc` to (declared after `engine` too), whose copies are never
        // reallocated: the engine, dropped first, unmaps both before they are freed.
        unsafe {
            uc.mem_map_ptr(code_base, code_len, Prot::READ | Prot::EXEC, buf.as_ptr().cast())
                .ctx("mem_map_ptr(code)")?;
            uc.mem_map_ptr(data_base, data_len, Prot::READ | Prot::WRITE, copy.cast()).ctx("mem_map_ptr(tso copy)")?;
        }
        let writes = Rc::new(RefCell::new(Vec::new()));
        let w = Rc::clone(&writes);
        let write_hook = uc
            .add_mem_hook(HookType::MEM_WRITE, data_base, data_base + data_len - 1, move |_, _, addr, size, _| {
                w.borrow_mut().push((addr, size));
                true
            })
            .ctx("add_mem_hook(tso write)")?;
        let trap = Rc::new(Cell::new(None));
        let t = Rc::clone(&trap);
        let intr_hook = uc
            .add_intr_hook(move |uc, intno| {
                t.set(Some(intno));
                let _ = uc.emu_stop();
            })
            .ctx("add_intr_hook")?;
        regs.write_to(uc)?;
        let mem = Rc::clone(mem);
        Ok(Self { engine, hooks: [write_hook, intr_hook], code: buf, code_base, mem, writes, trap, id, rip: regs.rip })
    }

    /// This CPU's index in the memory.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Current instruction pointer.
    pub fn rip(&self) -> u64 {
        self.rip
    }

    /// The register file.
    pub fn regs(&self) -> Result<Regs, CpuError> {
        Regs::read_from(self.engine.uc_ref())
    }

    /// Replaces the register file.
    pub fn set_regs(&mut self, regs: &Regs) -> Result<(), CpuError> {
        regs.write_to(self.engine.uc())?;
        self.rip = regs.rip;
        Ok(())
    }

    /// Decodes the instruction at RIP; `None` outside the code or if it does not decode.
    pub fn decode(&self) -> Option<Instruction> {
        let off = self.rip.checked_sub(self.code_base)? as usize;
        let len = self.code.len().checked_sub(off)?.min(MAX_INSN_LEN);
        if len == 0 {
            return None;
        }
        let mut bytes = [0u8; MAX_INSN_LEN];
        self.code.read(off, &mut bytes[..len]);
        let insn = Decoder::with_ip(64, &bytes[..len], self.rip, DecoderOptions::NONE).decode();
        (!insn.is_invalid()).then_some(insn)
    }

    /// Executes one instruction under the memory's model ([`TsoCpu`] module note).
    pub fn step(&mut self) -> Result<TsoStep, CpuError> {
        let Some(insn) = self.decode() else {
            let fault = if self.rip < self.code_base || self.rip >= self.code_base + self.code.len() as u64 {
                Fault::OutsideText(self.rip)
            } else {
                Fault::InvalidOpcode
            };
            let drained = self.mem.borrow_mut().drain_all(self.id);
            let ordering = Ordering::Serialising;
            return Ok(TsoStep { code: Code::INVALID, ordering, drained, stores: 0, fault: Some(fault) });
        };
        let ordering = ordering(&insn);
        let mut step = TsoStep { code: insn.code(), ordering, drained: 0, stores: 0, fault: None };
        if crate::insn::refused(insn.code()) {
            step.fault = Some(Fault::Unsupported(insn.code()));
            return Ok(step);
        }
        if ordering.drains() {
            step.drained = self.mem.borrow_mut().drain_all(self.id);
        }
        self.writes.borrow_mut().clear();
        self.trap.set(None);
        let uc = self.engine.uc();
        let result = uc.emu_start(self.rip, 0, 0, 1);
        self.rip = uc.reg_read(RegisterX86::RIP).ctx("reg_read(RIP)")?;
        step.stores = self.report_stores(ordering)?;
        step.fault = match (result, self.trap.take()) {
            (Err(e), _) => Some(Fault::Engine(e)),
            (Ok(()), Some(n)) => Some(Fault::Interrupt(n)),
            (Ok(()), None) => None,
        };
        if step.fault.is_some() {
            step.drained += self.mem.borrow_mut().drain_all(self.id);
        }
        Ok(step)
    }

    /// Hands the stores the hook saw to the memory, in order.
    fn report_stores(&mut self, ordering: Ordering) -> Result<usize, CpuError> {
        let writes = std::mem::take(&mut *self.writes.borrow_mut());
        let mut mem = self.mem.borrow_mut();
        for &(addr, size) in &writes {
            let r = match ordering {
                Ordering::Locked => mem.store_locked(self.id, addr, size),
                _ => mem.store(self.id, addr, size),
            };
            r?;
        }
        let n = writes.len();
        *self.writes.borrow_mut() = writes;
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;

    use super::*;
    use crate::tso::MemoryModel;

    fn decoded(bytes: &[u8]) -> Instruction {
        Decoder::with_ip(64, bytes, 0, DecoderOptions::NONE).decode()
    }

    #[test]
    fn what_drains() {
        let cases: [(&[u8], Ordering); 9] = [
            (&[0x0f, 0xae, 0xf0], Ordering::Fence),                         // mfence
            (&[0x0f, 0xae, 0xe8], Ordering::Plain),                         // lfence
            (&[0x0f, 0xae, 0xf8], Ordering::Plain),                         // sfence
            (&[0xf0, 0xff, 0x00], Ordering::Locked),                        // lock inc dword [rax]
            (&[0x87, 0x18], Ordering::Locked),                              // xchg [rax], ebx
            (&[0x87, 0xd8], Ordering::Plain),                               // xchg eax, ebx
            (&[0x0f, 0xa2], Ordering::Serialising),                         // cpuid
            (&[0x48, 0xcf], Ordering::Serialising),                         // iretq
            (&[0x89, 0x04, 0x25, 0x00, 0x00, 0x80, 0x00], Ordering::Plain), // mov [0x800000], eax
        ];
        for (bytes, want) in cases {
            assert_eq!(ordering(&decoded(bytes)), want, "{bytes:02x?}");
        }
    }

    /// An engine's store is buffered (its own load forwards it, the other CPU's does not), and
    /// a locked instruction drains the buffer before it runs.
    #[test]
    fn engine_stores_are_buffered_and_a_locked_insn_drains() {
        const DATA: u64 = 0x80_0000;
        let code: &[u8] = &[
            0x89, 0x04, 0x25, 0x00, 0x00, 0x80, 0x00, // mov [0x800000], eax
            0x8b, 0x1c, 0x25, 0x00, 0x00, 0x80, 0x00, // mov ebx, [0x800000]
            0xf0, 0xff, 0x04, 0x25, 0x40, 0x00, 0x80, 0x00, // lock inc dword [0x800040]
        ];
        let mem = Rc::new(RefCell::new(TsoMemory::new(MemoryModel::Tso, DATA, PAGE_SIZE, 2)));
        let mut regs = Regs { rip: 0x10_0000, rflags: 2, ..Regs::default() };
        regs.gpr[0] = 7;
        let mut cpu = TsoCpu::new(0, 0x10_0000, code, &mem, &regs).unwrap();
        let read = |cpu: usize, addr: u64| {
            let mut b = [0u8; 4];
            mem.borrow().read_as(cpu, addr, &mut b).unwrap();
            u32::from_le_bytes(b)
        };
        assert_eq!(cpu.step().unwrap().stores, 1);
        assert_eq!((read(0, DATA), read(1, DATA), mem.borrow().buffered(0)), (7, 0, 1));
        cpu.step().unwrap();
        assert_eq!(cpu.regs().unwrap().gpr[3], 7, "forwarded from the buffer");
        let step = cpu.step().unwrap();
        assert_eq!((step.ordering, step.drained, step.fault), (Ordering::Locked, 1, None));
        assert_eq!((read(1, DATA), read(1, DATA + 0x40), mem.borrow().buffered(0)), (7, 1, 0));
    }
}
