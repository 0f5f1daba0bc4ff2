//! `text_poke_loc_init()` and its successors: decode the instruction the handler will
//! emulate, check it, and reduce it to `{opcode, disp}`. Each generation checks differently
//! ([`LocRules`]); what the kernel would `BUG()` on is bad input here, with a message that
//! names the site, the bytes and the version.
//!
//! - linux-5.4 `text_poke_bp()`: no decoding at all; `len > POKE_MAX_OPCODE_SIZE` is refused;
//!   the handler jumps to a detour address.
//! - The seed (v5.5/5.6): `BUG_ON(len != insn.length)`; CALL, JMP32, JMP8, INT3; anything
//!   else must be the canonical NOP2/NOP5 (emulated as JMP +0).
//! - linux-6.16 `__smp_text_poke_batch_add()`: also RET (c43a43e439e0), RET/JMP padded with
//!   INT3 up to `len` (26c44b776dba), and Jcc — Jcc.d32 is mapped onto opcode `0x70 | cc`
//!   with `len = 6` (ac0ee0a9560c).

use iced_x86::{Decoder, DecoderOptions, Instruction};

use crate::error::Subject;
use crate::SimError;

/// `INT3_INSN_OPCODE`.
pub const INT3: u8 = 0xcc;
/// `CALL_INSN_OPCODE`.
pub const CALL: u8 = 0xe8;
/// `JMP32_INSN_OPCODE`.
pub const JMP32: u8 = 0xe9;
/// `JMP8_INSN_OPCODE`.
pub const JMP8: u8 = 0xeb;
/// `RET_INSN_OPCODE`.
pub const RET: u8 = 0xc3;
/// `ideal_nops[2]` / `x86_nops[2]` on x86-64 (`xchg %ax,%ax`).
pub const NOP2: [u8; 2] = [0x66, 0x90];
/// `ideal_nops[NOP_ATOMIC5]` / `x86_nops[5]` on x86-64 (`nopl 0x0(%rax,%rax,1)`).
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `POKE_MAX_OPCODE_SIZE`.
pub(crate) const POKE_MAX_OPCODE_SIZE: usize = 5;

/// Which generation's checks apply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LocRules {
    /// linux-5.4: any bytes up to 5, a detour address.
    Detour,
    /// The seed and linux-5.5/5.6.
    Seed,
    /// linux-6.0: also RET, and RET/JMP padded with INT3.
    RetPadding,
    /// linux-6.16: RET, padding, Jcc.
    Modern,
}

/// `struct text_poke_loc` / `struct smp_text_poke_loc`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPokeLoc {
    /// Address of the patched instruction.
    pub addr: u64,
    /// Bytes replaced (`len`; 6 for Jcc.d32).
    pub len: usize,
    /// Relative displacement of the emulated branch (`rel32` / `disp`).
    pub disp: i32,
    /// Opcode the handler switches on (a NOP becomes JMP8/JMP32 with disp 0; Jcc.d32 becomes
    /// `0x70 | cc`).
    pub opcode: u8,
    /// The new bytes, all `len` of them. (For `len == 6` the kernel keeps only the last five
    /// in `text[]` and writes `0x0f` as the first byte: the bytes written are the same.)
    pub text: Vec<u8>,
    /// The emulated instruction bytes (equal to `text` unless an `emulate` was given).
    pub emulate: Vec<u8>,
    /// linux-5.4's `detour`: where the handler sends a trapping CPU.
    pub detour: u64,
}

impl TextPokeLoc {
    /// The first byte the patcher writes in its third step (`0x0f` for Jcc.d32).
    pub(crate) fn first_byte(&self) -> u8 {
        self.text[0]
    }
}

fn bug(rules: LocRules, addr: u64, what: String) -> SimError {
    let who = match rules {
        LocRules::Detour => "text_poke_bp",
        LocRules::Seed | LocRules::RetPadding => "text_poke_loc_init",
        LocRules::Modern => "__smp_text_poke_batch_add",
    };
    SimError::invalid(Subject::Workload, format!("{who} at {addr:#x}: {what} (the kernel would BUG())"))
}

/// Skips legacy and REX prefixes: the kernel's `insn.opcode.bytes[0]`.
fn opcode_byte(bytes: &[u8]) -> (u8, Option<u8>) {
    let i = bytes
        .iter()
        .position(|b| {
            !matches!(b, 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0x40..=0x4f)
        })
        .unwrap_or(0);
    (bytes.get(i).copied().unwrap_or(0), bytes.get(i + 1).copied())
}

/// Whether `bytes` begin with a Jcc.d32 (`0x0f 0x80..=0x8f`, after prefixes).
fn is_jcc32(bytes: &[u8]) -> bool {
    matches!(opcode_byte(bytes), (0x0f, Some(0x80..=0x8f)))
}

/// Initialises one entry. `detour` defaults to `addr + len` (the next instruction), which is
/// what the 5.4 users passed for NOP-like sites.
pub fn text_poke_loc_init(
    rules: LocRules,
    addr: u64,
    opcode: &[u8],
    emulate: Option<&[u8]>,
    detour: Option<u64>,
) -> Result<TextPokeLoc, SimError> {
    check_length(rules, addr, opcode)?;
    let len = opcode.len();
    let base = TextPokeLoc {
        addr,
        len,
        disp: 0,
        opcode: opcode[0],
        text: opcode.to_vec(),
        emulate: emulate.unwrap_or(opcode).to_vec(),
        detour: detour.unwrap_or(addr + len as u64),
    };
    if rules == LocRules::Detour {
        // 5.4: the bytes are copied, never decoded; the handler only knows the detour.
        return Ok(base);
    }
    let emulate = emulate.unwrap_or(opcode);
    let mut decoder = Decoder::with_ip(64, emulate, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    if insn.is_invalid() {
        return Err(bug(rules, addr, format!("{emulate:02x?} is not a complete instruction")));
    }
    let (opcode_kind, disp) = switch_case(rules, addr, emulate, len, &insn)?;
    check_extent(rules, addr, opcode, &insn, opcode_kind)?;
    if len == 6 && !is_jcc32(emulate) {
        return Err(bug(rules, addr, "only Jcc.d32 may be 6 bytes long".into()));
    }
    Ok(TextPokeLoc { opcode: opcode_kind, disp, ..base })
}

/// `len` in `1..=POKE_MAX_OPCODE_SIZE` (6 for 6.16's Jcc.d32).
fn check_length(rules: LocRules, addr: u64, opcode: &[u8]) -> Result<(), SimError> {
    let len = opcode.len();
    let max = if rules == LocRules::Modern { POKE_MAX_OPCODE_SIZE + 1 } else { POKE_MAX_OPCODE_SIZE };
    if len == 6 && opcode[0] == 0x0f && rules != LocRules::Modern {
        return Err(bug(
            rules,
            addr,
            format!("{opcode:02x?} is a 6-byte Jcc.d32, which this version cannot patch (ac0ee0a9560c, 2023)"),
        ));
    }
    if len == 0 || len > max {
        return Err(bug(rules, addr, format!("length {len} is not in 1..={max}")));
    }
    Ok(())
}

/// The `switch (insn.opcode.bytes[0])` of `text_poke_loc_init()`: the opcode the handler will
/// switch on and the displacement, or the `BUG()` of an instruction it cannot emulate.
fn switch_case(
    rules: LocRules,
    addr: u64,
    emulate: &[u8],
    len: usize,
    insn: &Instruction,
) -> Result<(u8, i32), SimError> {
    let (op, op2) = opcode_byte(emulate);
    let disp = (insn.near_branch64().wrapping_sub(addr + insn.len() as u64)) as i64 as i32;
    let is_jcc32 = is_jcc32(emulate);
    let modern = rules == LocRules::Modern;
    let ret_ok = matches!(rules, LocRules::RetPadding | LocRules::Modern);
    Ok(match (op, op2) {
        (INT3, _) => (INT3, 0),
        (RET, _) if ret_ok => (RET, 0),
        (CALL | JMP32 | JMP8, _) => (op, disp),
        (0x70..=0x7f, _) if modern => (op, disp),
        (0x0f, Some(cc)) if modern && is_jcc32 => (cc - 0x10, disp),
        // default: assume NOP
        _ => match len {
            2 if emulate == NOP2 => (JMP8, 0),
            5 if emulate == NOP5 => (JMP32, 0),
            2 | 5 if insn.mnemonic() == iced_x86::Mnemonic::Nop => {
                return Err(bug(rules, addr, format!("{emulate:02x?} is not the canonical NOP{len}")))
            }
            _ => {
                let hint = match op {
                    RET => " (RET emulation arrived with c43a43e439e0, 2020)",
                    0x70..=0x7f | 0x0f => " (Jcc emulation arrived with ac0ee0a9560c, 2023)",
                    _ => "",
                };
                return Err(bug(
                    rules,
                    addr,
                    format!("{emulate:02x?} ({:?}) cannot be emulated by this handler{hint}", insn.mnemonic()),
                ));
            }
        },
    })
}

/// The bytes are exactly the instruction — or, for control flow that does not fall through
/// (from 6.0), the instruction padded with INT3.
fn check_extent(rules: LocRules, addr: u64, opcode: &[u8], insn: &Instruction, kind: u8) -> Result<(), SimError> {
    let len = opcode.len();
    let ret_ok = matches!(rules, LocRules::RetPadding | LocRules::Modern);
    let padded = ret_ok && matches!(kind, RET | JMP32 | JMP8);
    if padded {
        // Control flow without implied execution of the next instruction may be padded with INT3.
        if insn.len() > len || opcode[insn.len().min(len)..].iter().any(|&b| b != INT3) {
            return Err(bug(rules, addr, format!("{opcode:02x?} is not one {:?} padded with INT3", insn.mnemonic())));
        }
    } else if insn.len() != len {
        return Err(bug(
            rules,
            addr,
            format!("{len} bytes are not exactly one instruction (the first is {} bytes long)", insn.len()),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(bytes: &[u8]) -> Result<TextPokeLoc, SimError> {
        text_poke_loc_init(LocRules::Seed, 0x1000, bytes, None, None)
    }

    fn modern(bytes: &[u8]) -> Result<TextPokeLoc, SimError> {
        text_poke_loc_init(LocRules::Modern, 0x1000, bytes, None, None)
    }

    #[test]
    fn call_and_jumps_reduce_to_opcode_and_disp() {
        let l = seed(&[0xe8, 0x10, 0, 0, 0]).unwrap();
        assert_eq!((l.opcode, l.disp, l.len), (CALL, 0x10, 5));
        let l = seed(&[0xeb, 0xfe]).unwrap();
        assert_eq!((l.opcode, l.disp), (JMP8, -2));
        let l = seed(&NOP5).unwrap();
        assert_eq!((l.opcode, l.disp), (JMP32, 0));
        let l = seed(&NOP2).unwrap();
        assert_eq!((l.opcode, l.disp), (JMP8, 0));
    }

    #[test]
    fn the_kernels_bug_cases_are_bad_input() {
        // Two instructions (nop; nop), a non-canonical NOP5, an unemulatable instruction.
        for bytes in [&[0x90, 0x90][..], &[0x0f, 0x1f, 0x40, 0x00, 0x90][..], &[0x48, 0x89, 0xc3][..]] {
            assert!(matches!(seed(bytes), Err(SimError::Invalid { subject: Subject::Workload, .. })), "{bytes:02x?}");
        }
        let e = seed(&[0x0f, 0x1f, 0x40, 0x00]).unwrap_err().to_string();
        assert!(e.contains("canonical") || e.contains("cannot be emulated"), "{e}");
    }

    #[test]
    fn ret_and_jcc_need_the_modern_handler() {
        assert!(seed(&[RET]).unwrap_err().to_string().contains("cannot be emulated"));
        assert!(seed(&[0x0f, 0x85, 1, 0, 0, 0]).is_err());
        let l = modern(&[RET, INT3, INT3, INT3, INT3]).unwrap();
        assert_eq!((l.opcode, l.len), (RET, 5));
        let l = modern(&[0x0f, 0x85, 0x10, 0, 0, 0]).unwrap();
        assert_eq!((l.opcode, l.disp, l.len, l.first_byte()), (0x75, 0x10, 6, 0x0f));
        let l = modern(&[0x74, 0xfe]).unwrap();
        assert_eq!((l.opcode, l.disp), (0x74, -2));
        // Padding must be INT3, and only after control flow that does not fall through.
        assert!(modern(&[RET, 0x90]).is_err());
        assert!(modern(&[0xe8, 0, 0, 0, 0, INT3]).is_err());
    }

    #[test]
    fn emulate_may_differ_from_the_new_bytes() {
        // arch_unoptimize_kprobe: new = INT3 + old tail, emulate = JMP32 to the trampoline.
        let l = text_poke_loc_init(LocRules::Seed, 0x1000, &[0xcc, 1, 2, 3, 4], Some(&[0xe9, 0x20, 0, 0, 0]), None)
            .unwrap();
        assert_eq!((l.opcode, l.disp), (JMP32, 0x20));
        assert_eq!(l.text[0], INT3);
    }

    #[test]
    fn the_detour_version_copies_bytes_unchecked() {
        let l = text_poke_loc_init(LocRules::Detour, 0x1000, &[0x90, 0x90], None, None).unwrap();
        assert_eq!(l.detour, 0x1002);
        assert!(text_poke_loc_init(LocRules::Detour, 0x1000, &[0x0f, 0x85, 0, 0, 0, 0], None, None).is_err());
    }
}
