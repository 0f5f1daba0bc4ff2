//! `text_poke_loc_init()` of the seed patch: decode the instruction to emulate, check it is
//! exactly one instruction of the given length, and reduce it to `{opcode, rel32}`. NOPs must
//! be the canonical ones and become `JMP +0`; anything else is the kernel's `BUG()`, which
//! here is bad input.

use iced_x86::{Decoder, DecoderOptions};

use crate::SimError;

/// `INT3_INSN_OPCODE`.
pub const INT3: u8 = 0xcc;
/// `CALL_INSN_OPCODE`.
pub const CALL: u8 = 0xe8;
/// `JMP32_INSN_OPCODE`.
pub const JMP32: u8 = 0xe9;
/// `JMP8_INSN_OPCODE`.
pub const JMP8: u8 = 0xeb;
/// `ideal_nops[2]` on x86-64 (`xchg %ax,%ax`).
pub const NOP2: [u8; 2] = [0x66, 0x90];
/// `ideal_nops[NOP_ATOMIC5]` on x86-64 (`nopl 0x0(%rax,%rax,1)`).
pub const NOP5: [u8; 5] = [0x0f, 0x1f, 0x44, 0x00, 0x00];
/// `POKE_MAX_OPCODE_SIZE`.
pub const POKE_MAX_OPCODE_SIZE: usize = 5;

/// `struct text_poke_loc` of the seed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TextPokeLoc {
    /// Address of the patched instruction.
    pub addr: u64,
    /// Its length.
    pub len: usize,
    /// Relative displacement of the emulated branch.
    pub rel32: i32,
    /// Opcode the handler switches on (a NOP becomes JMP8/JMP32 with rel32 = 0).
    pub opcode: u8,
    /// The new instruction bytes.
    pub text: Vec<u8>,
    /// The emulated instruction bytes (equal to `text` unless an `emulate` was given).
    pub emulate: Vec<u8>,
}

fn bug(addr: u64, what: String) -> SimError {
    SimError::BadInput(format!("text_poke_loc_init at {addr:#x}: {what} (the kernel would BUG())"))
}

/// Skips legacy and REX prefixes: the kernel's `insn.opcode.bytes[0]`.
fn opcode_byte(bytes: &[u8]) -> u8 {
    bytes
        .iter()
        .copied()
        .find(|b| {
            !matches!(b, 0x66 | 0x67 | 0xf0 | 0xf2 | 0xf3 | 0x2e | 0x36 | 0x3e | 0x26 | 0x64 | 0x65 | 0x40..=0x4f)
        })
        .unwrap_or(0)
}

/// `text_poke_loc_init(tp, addr, opcode, len, emulate)`.
pub fn text_poke_loc_init(addr: u64, opcode: &[u8], emulate: Option<&[u8]>) -> Result<TextPokeLoc, SimError> {
    let len = opcode.len();
    if len == 0 || len > POKE_MAX_OPCODE_SIZE {
        return Err(bug(addr, format!("length {len} is not in 1..={POKE_MAX_OPCODE_SIZE}")));
    }
    let emulate = emulate.unwrap_or(opcode);
    let mut decoder = Decoder::with_ip(64, emulate, addr, DecoderOptions::NONE);
    let insn = decoder.decode();
    // BUG_ON(!insn_complete(&insn)); BUG_ON(len != insn.length);
    if insn.is_invalid() {
        return Err(bug(addr, format!("{emulate:02x?} is not a complete instruction")));
    }
    if insn.len() != len {
        return Err(bug(
            addr,
            format!("{len} bytes are not exactly one instruction (the first is {} bytes long)", insn.len()),
        ));
    }
    let op = opcode_byte(emulate);
    let (opcode_kind, rel32) = match op {
        INT3 => (INT3, 0),
        CALL | JMP32 | JMP8 => {
            let rel = insn.near_branch64().wrapping_sub(addr + len as u64) as i64;
            (op, rel as i32)
        }
        // default: assume NOP
        _ => match len {
            2 if emulate == NOP2 => (JMP8, 0),
            5 if emulate == NOP5 => (JMP32, 0),
            2 | 5 => return Err(bug(addr, format!("{emulate:02x?} is not the canonical NOP{len}"))),
            _ => return Err(bug(addr, format!("{emulate:02x?} cannot be emulated"))),
        },
    };
    Ok(TextPokeLoc { addr, len, rel32, opcode: opcode_kind, text: opcode.to_vec(), emulate: emulate.to_vec() })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn call_and_jumps_reduce_to_opcode_and_rel32() {
        let l = text_poke_loc_init(0x1000, &[0xe8, 0x10, 0, 0, 0], None).unwrap();
        assert_eq!((l.opcode, l.rel32, l.len), (CALL, 0x10, 5));
        let l = text_poke_loc_init(0x1000, &[0xeb, 0xfe], None).unwrap();
        assert_eq!((l.opcode, l.rel32), (JMP8, -2));
        let l = text_poke_loc_init(0x1000, &NOP5, None).unwrap();
        assert_eq!((l.opcode, l.rel32), (JMP32, 0));
        let l = text_poke_loc_init(0x1000, &NOP2, None).unwrap();
        assert_eq!((l.opcode, l.rel32), (JMP8, 0));
    }

    #[test]
    fn the_kernels_bug_cases_are_bad_input() {
        // Two instructions (nop; nop), a non-canonical NOP5, an unemulatable instruction.
        for bytes in [&[0x90, 0x90][..], &[0x0f, 0x1f, 0x40, 0x00, 0x90][..], &[0x48, 0x89, 0xc3][..]] {
            assert!(matches!(text_poke_loc_init(0x1000, bytes, None), Err(SimError::BadInput(_))), "{bytes:02x?}");
        }
        let e = text_poke_loc_init(0x1000, &[0x0f, 0x1f, 0x40, 0x00], None).unwrap_err().to_string();
        assert!(e.contains("canonical") || e.contains("cannot be emulated"), "{e}");
    }

    #[test]
    fn emulate_may_differ_from_the_new_bytes() {
        // arch_unoptimize_kprobe: new = INT3 + old tail, emulate = JMP32 to the trampoline.
        let l = text_poke_loc_init(0x1000, &[0xcc, 1, 2, 3, 4], Some(&[0xe9, 0x20, 0, 0, 0])).unwrap();
        assert_eq!((l.opcode, l.rel32), (JMP32, 0x20));
        assert_eq!(l.text[0], INT3);
    }
}
