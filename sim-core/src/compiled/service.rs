//! The kernel services a compiled protocol calls ([`Service`]): what runs when a CPU's RIP
//! enters a slot of the service page. The ones here are the same on every CPU and finish at
//! once — `smp_processor_id()`, `nr_cpu_ids`, the instruction decoder behind `insn_decode()`
//! (arch/x86/lib/insn.c; here iced-x86), `BUG()`/`WARN()`, the return to the caller. The ones
//! that act on the shared kernel state or wait (`text_poke()`, `on_each_cpu()`,
//! `mutex_lock()`, `synchronize_rcu()`) are the patching client's ([`super::client`]).
//!
//! The byte-level parts — what `pokesim_insn_decode()` fills in ([`insn_info`]), whether
//! `on_each_cpu()`'s function is a `sync_core()` body ([`is_sync_core_body`]) and the text of
//! a `BUG()`/`WARN()` ([`bug_text`]) — are public: the hardware run (crate `hw`), which runs
//! the same file natively, calls them on the host's memory, so both faces of a service share
//! one implementation.

use cpu_model::{KernelMemory, Reg, Regs, MAX_INSN_LEN};
use iced_x86::{Decoder, DecoderOptions, OpKind};

use crate::kernel_image::Service;

/// The System V arguments of a call: rdi, rsi, rdx.
pub(crate) fn args(regs: &Regs) -> [u64; 3] {
    [regs.get(Reg::Rdi), regs.get(Reg::Rsi), regs.get(Reg::Rdx)]
}

/// Returns from a service to CPU `cpu`'s caller with `value` in rax (pops the return address
/// the `call` pushed, as that CPU reads it). `Err` if the stack cannot be read.
pub(crate) fn ret(regs: &mut Regs, mem: &KernelMemory, cpu: usize, value: u64) -> Result<(), String> {
    let sp = regs.sp();
    let to = mem.read_u64_as(cpu, sp).ok_or_else(|| format!("return address at {sp:#x} outside the kernel stacks"))?;
    regs.set(Reg::Rsp, sp + 8);
    regs.set(Reg::Rax, value);
    regs.rip = to;
    Ok(())
}

/// What a service common to every CPU did.
pub(crate) enum Common {
    /// It returned (registers updated): the CPU goes on in the same step.
    Returned,
    /// `BUG()` or `WARN()`, or a service this CPU may not call: the explanation.
    Fault(String),
    /// Not a common service: the caller carries it out.
    Other,
}

/// Carries out `service` if it is common to every CPU; `cpu` is the caller's
/// `smp_processor_id()`, `nr_cpu_ids` the number of CPUs.
pub(crate) fn common(service: Service, regs: &mut Regs, mem: &KernelMemory, cpu: usize, nr_cpu_ids: usize) -> Common {
    let [a0, a1, a2] = args(regs);
    let value = match service {
        Service::SmpProcessorId => cpu as u64,
        Service::NrCpuIds => nr_cpu_ids as u64,
        Service::InsnDecode => insn_decode(mem, cpu, a0, a1),
        // On a patching CPU there is nothing to serialise: it never fetches the patched text.
        Service::SyncCore => 0,
        Service::Bug => return Common::Fault(report(mem, cpu, "BUG()", [a0, a1, a2])),
        Service::Warn => return Common::Fault(report(mem, cpu, "WARN()", [a0, a1, a2])),
        _ => return Common::Other,
    };
    match ret(regs, mem, cpu, value) {
        Ok(()) => Common::Returned,
        Err(e) => Common::Fault(e),
    }
}

/// `BUG() at file:line: cond`, the strings as CPU `cpu` reads them.
pub(crate) fn report(mem: &KernelMemory, cpu: usize, what: &str, [file, line, cond]: [u64; 3]) -> String {
    bug_text(what, mem.read_str_as(cpu, file), line, mem.read_str_as(cpu, cond))
}

/// The text of `BUG()`/`WARN()` (`what`) called with `file`, `line` and `cond` (the strings
/// as read from the caller's memory, `None` where they could not be): `BUG() at file:line:
/// cond`.
pub fn bug_text(what: &str, file: Option<String>, line: u64, cond: Option<String>) -> String {
    let file = file.unwrap_or_else(|| "?".into());
    let cond = cond.filter(|c| !c.is_empty()).map(|c| format!(": {c}")).unwrap_or_default();
    format!("{what} at {file}:{}{cond}", line as i32)
}

/// `-EINVAL` as `pokesim_insn_decode()` returns it (in rax).
pub const EINVAL: u64 = (-22i64) as u64;

/// `struct pokesim_insn_info` (c/include/pokesim.h): length, opcode bytes, the first
/// immediate (a branch's displacement), sign-extended. Returns 0, or -EINVAL (as a u64) if the
/// bytes at `kaddr` do not decode or `out` is not writable.
/// The read and the write are CPU `cpu`'s (the write a plain store: buffered under TSO).
fn insn_decode(mem: &KernelMemory, cpu: usize, kaddr: u64, out: u64) -> u64 {
    let mut bytes = [0u8; MAX_INSN_LEN];
    let n = (1..=MAX_INSN_LEN).rev().find(|&n| mem.read_as(cpu, kaddr, &mut bytes[..n]).is_some()).unwrap_or(0);
    let (info, valid) = insn_info(&bytes[..n], kaddr);
    match mem.write_as(cpu, out, &info, false) {
        Some(()) if valid => 0,
        _ => EINVAL,
    }
}

/// What `pokesim_insn_decode()` writes to its `struct pokesim_insn_info` for the instruction
/// at the start of `bytes` (read at `kaddr`, as many as were readable, up to 15): length,
/// opcode bytes, the first immediate (a branch's displacement), sign-extended — all zero if
/// the bytes are no (complete) instruction — and whether they were one. The one decoder of
/// both the simulator's service and the hardware run's.
pub fn insn_info(bytes: &[u8], kaddr: u64) -> ([u8; 16], bool) {
    let insn = Decoder::with_ip(64, bytes, kaddr, DecoderOptions::NONE).decode();
    let mut info = [0u8; 16];
    if insn.is_invalid() {
        return (info, false);
    }
    let prefixes = prefix_len(&bytes[..insn.len()]);
    let (opcode, nbytes) = opcode_bytes(&bytes[prefixes..insn.len()]);
    let (imm, imm_bytes) = immediate(&insn, insn.len());
    info[0] = insn.len() as u8;
    info[1] = nbytes;
    info[2..2 + nbytes as usize].copy_from_slice(&opcode[..nbytes as usize]);
    info[5] = imm_bytes;
    info[8..16].copy_from_slice(&imm.to_le_bytes());
    (info, true)
}

/// Legacy and REX prefixes in front of the opcode.
fn prefix_len(bytes: &[u8]) -> usize {
    let legacy = [0x66, 0x67, 0xf0, 0xf2, 0xf3, 0x2e, 0x36, 0x3e, 0x26, 0x64, 0x65];
    let n = bytes.iter().take_while(|b| legacy.contains(b)).count();
    n + usize::from(bytes.get(n).is_some_and(|b| b & 0xf0 == 0x40))
}

/// The opcode bytes (1–3) as the kernel's decoder counts them.
fn opcode_bytes(b: &[u8]) -> ([u8; 3], u8) {
    let mut op = [0u8; 3];
    let n = match b {
        [0x0f, 0x38 | 0x3a, ..] => 3,
        [0x0f, ..] => 2,
        _ => 1,
    }
    .min(b.len());
    op[..n].copy_from_slice(&b[..n]);
    (op, n as u8)
}

/// The first immediate: a branch's displacement relative to the next instruction (as the
/// kernel's `insn.immediate.value`), or an immediate operand; its size in bytes.
fn immediate(insn: &iced_x86::Instruction, len: usize) -> (i64, u8) {
    for i in 0..insn.op_count() {
        let (v, n) = match insn.op_kind(i) {
            OpKind::NearBranch64 => {
                let rel = insn.near_branch64().wrapping_sub(insn.ip().wrapping_add(len as u64)) as i64;
                (rel, if insn.len() >= 5 { 4 } else { 1 })
            }
            OpKind::Immediate8 => (insn.immediate8() as i8 as i64, 1),
            OpKind::Immediate16 => (insn.immediate16() as i16 as i64, 2),
            OpKind::Immediate32 => (insn.immediate32() as i32 as i64, 4),
            OpKind::Immediate8to64 | OpKind::Immediate32to64 => (insn.immediate(i) as i64, 4),
            OpKind::Immediate64 => (insn.immediate64() as i64, 8),
            _ => continue,
        };
        return (v, n);
    }
    (0, 0)
}

/// True if `func` is a function whose whole body is `sync_core()` (the kernel's
/// `do_sync_core()`: a tail call, or a call and a return) or empty — what `on_each_cpu()`
/// may run here: the IPI's delivery is the `sync_core()` of every CPU. A frame-pointer
/// prologue and epilogue (`push rbp; mov rbp, rsp` ... `pop rbp`) and NOPs are allowed around.
pub(crate) fn is_do_sync_core(mem: &KernelMemory, func: u64) -> bool {
    let mut bytes = [0u8; 32];
    mem.read_code(func, &mut bytes).is_some() && is_sync_core_body(&bytes, func)
}

/// True if the code bytes at `func` (the first 32 of them, or as many as the code has) are a
/// function whose whole body is `sync_core()` (a tail call, or a call and a return) or empty —
/// what `on_each_cpu()` may run: the one check of both the simulator's `on_each_cpu()` and the
/// hardware run's. A frame-pointer prologue and epilogue and NOPs are allowed around.
pub fn is_sync_core_body(bytes: &[u8], func: u64) -> bool {
    use iced_x86::{Code, Mnemonic};
    let bytes = &bytes[..bytes.len().min(32)];
    let registers = |i: &iced_x86::Instruction| (0..i.op_count()).all(|k| i.op_kind(k) == OpKind::Register);
    let frame = |i: &iced_x86::Instruction| {
        matches!(i.code(), Code::Push_r64 | Code::Pop_r64 | Code::Mov_r64_rm64 | Code::Mov_rm64_r64) && registers(i)
    };
    let body = Decoder::with_ip(64, bytes, func, DecoderOptions::NONE)
        .into_iter()
        .take(8)
        .filter(|i| !frame(i) && i.mnemonic() != Mnemonic::Nop);
    let to_sync = |i: &iced_x86::Instruction| i.near_branch_target() == Service::SyncCore.addr();
    let mut called = false;
    for i in body {
        match i.mnemonic() {
            Mnemonic::Ret => return true,
            Mnemonic::Jmp => return to_sync(&i) && !called,
            Mnemonic::Call if to_sync(&i) && !called => called = true,
            _ => return false,
        }
    }
    false
}
