//! A litmus thread's instructions as x86-64 machine code (iced-x86's encoder): 32-bit
//! operations on 32-bit registers and on locations at fixed absolute addresses, as herd7's
//! `X86` tests mean them (herdtools7 `lib/X86Base.ml`: 32-bit registers and values).

use iced_x86::{Code, Encoder, Instruction, MemoryOperand};

use super::{Insn, Op, Operand};

/// Where each location lives: location `i` (in the test's order) is at `base + i * SLOT`.
#[derive(Clone, Debug)]
pub struct DataLayout {
    /// The first location's address.
    pub base: u64,
    /// The location names, in address order.
    pub names: Vec<String>,
}

/// Bytes between two locations (a cache line: nothing shares one).
pub const SLOT: u64 = 64;

impl DataLayout {
    /// The address of location `name`.
    pub fn addr(&self, name: &str) -> u64 {
        let i = self.names.iter().position(|n| n == name).expect("every location is laid out");
        self.base + i as u64 * SLOT
    }

    /// Bytes the locations span.
    pub fn len(&self) -> u64 {
        self.names.len().max(1) as u64 * SLOT
    }

    /// True if there are no locations.
    pub fn is_empty(&self) -> bool {
        self.names.is_empty()
    }
}

/// Why an instruction did not assemble.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: `{text}` does not assemble: {msg}")]
pub struct AsmError {
    /// Its line.
    pub line: usize,
    /// The instruction as written.
    pub text: String,
    /// iced-x86's reason.
    pub msg: String,
}

/// The machine code of `insns` at `rip`, and each instruction's address.
pub fn assemble(insns: &[Insn], rip: u64, data: &DataLayout) -> Result<(Vec<u8>, Vec<u64>), AsmError> {
    let mut enc = Encoder::new(64);
    let mut at = rip;
    let mut addrs = Vec::with_capacity(insns.len());
    for insn in insns {
        let fail = |msg: String| AsmError { line: insn.line, text: insn.text.clone(), msg };
        let mut i = instruction(insn, data).map_err(|e| fail(e.to_string()))?;
        i.set_has_lock_prefix(insn.lock);
        addrs.push(at);
        at += enc.encode(&i, at).map_err(|e| fail(e.to_string()))? as u64;
    }
    Ok((enc.take_buffer(), addrs))
}

/// The iced-x86 instruction for `insn` (operand shapes were checked by the parser).
fn instruction(insn: &Insn, data: &DataLayout) -> Result<Instruction, iced_x86::IcedError> {
    use Operand::{Imm, Mem, Reg};
    let mem = |name: &str| MemoryOperand::with_displ(data.addr(name), 4);
    let imm = |v: i64| v as i32;
    let alu = |r_rm, rm_r, rm_imm| -> Result<Instruction, iced_x86::IcedError> {
        match &insn.operands[..] {
            [Reg(d), Reg(s)] => Instruction::with2(r_rm, *d, *s),
            [Reg(d), Mem(s)] => Instruction::with2(r_rm, *d, mem(s)),
            [Reg(d), Imm(v)] => Instruction::with2(rm_imm, *d, imm(*v)),
            [Mem(d), Reg(s)] => Instruction::with2(rm_r, mem(d), *s),
            [Mem(d), Imm(v)] => Instruction::with2(rm_imm, mem(d), imm(*v)),
            _ => unreachable!("operands checked by the parser"),
        }
    };
    let one = |code| match &insn.operands[..] {
        [Reg(r)] => Instruction::with1(code, *r),
        [Mem(m)] => Instruction::with1(code, mem(m)),
        _ => unreachable!("operands checked by the parser"),
    };
    match insn.op {
        Op::Mov => match &insn.operands[..] {
            [Reg(d), Imm(v)] => Instruction::with2(Code::Mov_r32_imm32, *d, imm(*v)),
            _ => alu(Code::Mov_r32_rm32, Code::Mov_rm32_r32, Code::Mov_rm32_imm32),
        },
        Op::Add => alu(Code::Add_r32_rm32, Code::Add_rm32_r32, Code::Add_rm32_imm32),
        Op::Or => alu(Code::Or_r32_rm32, Code::Or_rm32_r32, Code::Or_rm32_imm32),
        Op::Xor => alu(Code::Xor_r32_rm32, Code::Xor_rm32_r32, Code::Xor_rm32_imm32),
        Op::Cmp => alu(Code::Cmp_r32_rm32, Code::Cmp_rm32_r32, Code::Cmp_rm32_imm32),
        Op::Inc => one(Code::Inc_rm32),
        Op::Dec => one(Code::Dec_rm32),
        Op::Xchg => match &insn.operands[..] {
            [Reg(a), Reg(b)] => Instruction::with2(Code::Xchg_rm32_r32, *a, *b),
            [Mem(m), Reg(r)] | [Reg(r), Mem(m)] => Instruction::with2(Code::Xchg_rm32_r32, mem(m), *r),
            _ => unreachable!("operands checked by the parser"),
        },
        Op::Cmpxchg => match &insn.operands[..] {
            [Reg(d), Reg(s)] => Instruction::with2(Code::Cmpxchg_rm32_r32, *d, *s),
            [Mem(d), Reg(s)] => Instruction::with2(Code::Cmpxchg_rm32_r32, mem(d), *s),
            _ => unreachable!("operands checked by the parser"),
        },
        Op::Mfence => Ok(Instruction::with(Code::Mfence)),
        Op::Lfence => Ok(Instruction::with(Code::Lfence)),
        Op::Sfence => Ok(Instruction::with(Code::Sfence)),
    }
}
