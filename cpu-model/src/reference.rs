//! The scratch reference executor of the emulation oracle (DESIGN.md §2.7, oracle 3).
//!
//! The INT3 handler *emulates* an instruction with its own arithmetic
//! (`int3_emulate_call`, `int3_emulate_jmp`, …). The oracle does not trust that arithmetic: it
//! executes the real instruction bytes at the real address from the same pre-trap register
//! state on a separate Unicorn engine, and compares the register and stack effect.
//!
//! One scratch engine is kept per distinct `(address, instruction bytes)`, so repeated checks
//! of the same site never retranslate (a retranslation costs ~7 µs, reference/unicorn.md §2).
//! The map is a `BTreeMap`: lookups only, but nothing here may ever depend on hash order.

use std::collections::BTreeMap;

use unicorn_engine::unicorn_const::{uc_error, Prot};

use crate::engine::PooledEngine;
use crate::error::UcContext;
use crate::{CpuError, Layout, Reg, Regs};

/// What executing one instruction did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReferenceResult {
    /// Register file after the instruction.
    pub regs: Regs,
    /// If the stack pointer went down, the qword now at the new top of stack.
    pub pushed: Option<u64>,
}

/// A scratch engine (pooled: it goes back to the pool with the executor).
struct Scratch {
    engine: PooledEngine,
}

/// Executes single instructions on scratch engines laid out like the guest.
pub struct ReferenceExecutor {
    layout: Layout,
    engines: BTreeMap<(u64, Vec<u8>), Scratch>,
}

impl std::fmt::Debug for ReferenceExecutor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReferenceExecutor").field("engines", &self.engines.len()).finish()
    }
}

impl ReferenceExecutor {
    /// An executor for guests with this layout.
    pub fn new(layout: Layout) -> Result<Self, CpuError> {
        layout.validate()?;
        Ok(Self { layout, engines: BTreeMap::new() })
    }

    fn scratch(&mut self, addr: u64, bytes: &[u8]) -> Result<&mut Scratch, CpuError> {
        let key = (addr, bytes.to_vec());
        if !self.engines.contains_key(&key) {
            let mut engine = PooledEngine::take()?;
            let uc = engine.uc();
            let l = self.layout;
            uc.mem_map(l.text_base, l.text_len, Prot::ALL).ctx("mem_map(text)")?;
            uc.mem_map(l.data_base, l.data_len, Prot::READ | Prot::WRITE).ctx("mem_map(data)")?;
            // Everything but the instruction is INT3, so running past it is visible.
            uc.mem_write(l.text_base, &vec![0xcc; l.text_len as usize]).ctx("mem_write(text)")?;
            uc.mem_write(addr, bytes).ctx("mem_write(insn)")?;
            self.engines.insert(key.clone(), Scratch { engine });
        }
        Ok(self.engines.get_mut(&key).expect("inserted above"))
    }

    /// Executes the instruction `bytes` at `addr` from `regs` (whose `rip` is ignored), with
    /// `stack_top` as the qword at `[rsp]` (what a RET would pop).
    pub fn execute(
        &mut self,
        addr: u64,
        bytes: &[u8],
        regs: &Regs,
        stack_top: u64,
    ) -> Result<ReferenceResult, CpuError> {
        if !self.layout.in_text(addr) || !self.layout.in_text(addr + bytes.len() as u64 - 1) {
            return Err(CpuError::Layout(format!("reference instruction at {addr:#x} is outside the text")));
        }
        let layout = self.layout;
        let scratch = self.scratch(addr, bytes)?;
        let uc = scratch.engine.uc();
        let mut start = *regs;
        start.rip = addr;
        start.write_to(uc)?;
        let sp = regs.sp();
        if layout.in_data(sp, 8) {
            uc.mem_write(sp, &stack_top.to_le_bytes()).ctx("mem_write(stack)")?;
        }
        match uc.emu_start(addr, 0, 0, 1) {
            // A branch to an address outside the text completes (RIP = target) and then fails
            // to fetch the next block (reference/unicorn.md §2): the instruction did run.
            Ok(()) | Err(uc_error::FETCH_UNMAPPED) => {}
            Err(err) => return Err(CpuError::Unicorn { call: "reference emu_start", err }),
        }
        let after = Regs::read_from(uc)?;
        let new_sp = after.get(Reg::Rsp);
        let pushed = if new_sp < sp && layout.in_data(new_sp, 8) {
            let mut b = [0u8; 8];
            uc.mem_read(new_sp, &mut b).ctx("mem_read(stack)")?;
            Some(u64::from_le_bytes(b))
        } else {
            None
        };
        Ok(ReferenceResult { regs: after, pushed })
    }
}
