//! A small Intel-syntax assembler for the user's own code (issue 11: "old and new instruction
//! given as assembly text"): one instruction per line, labels as `name:`, encoded with
//! iced-x86's encoder where an operand needs it. The forms are the ones live patching is
//! about, plus what a loop needs to count and call:
//!
//! | form | bytes |
//! |---|---|
//! | `nop`, `nop1` … `nop8` | the kernel's canonical NOPs (`x86_nops`, `arch/x86/kernel/alternative.c`) |
//! | `int3`, `ret`, `pause` | `cc`, `c3`, `f3 90` |
//! | `call T`, `jmp T`, `jCC T` | rel32 (`e8`, `e9`, `0f 8x`) |
//! | `jmp short T`, `jCC short T` | rel8 (`eb`, `7x`) |
//! | `inc`/`dec qword [R±disp]` | `inc qword ptr [rbx+8]` … |
//! | `add`/`sub qword [R±disp], imm` | imm8 or imm32, as the value needs |
//! | `db XX XX …` | the bytes as written (hex) |
//!
//! `T` is a label or an address (`0x400800`). Every instruction's length follows from its
//! text alone, so one pass finds the labels and a second encodes.

use std::collections::BTreeMap;

use iced_x86::{Code, Encoder, Instruction, MemoryOperand, Register};

/// The canonical NOPs by length (`x86_nops[len]`, P6 form).
pub(crate) const NOPS: [&[u8]; 9] = [
    &[],
    &[0x90],
    &[0x66, 0x90],
    &[0x0f, 0x1f, 0x00],
    &[0x0f, 0x1f, 0x40, 0x00],
    &[0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x66, 0x0f, 0x1f, 0x44, 0x00, 0x00],
    &[0x0f, 0x1f, 0x80, 0x00, 0x00, 0x00, 0x00],
    &[0x0f, 0x1f, 0x84, 0x00, 0x00, 0x00, 0x00, 0x00],
];

const CONDITIONS: [&[&str]; 16] = [
    &["o"],
    &["no"],
    &["b", "c", "nae"],
    &["ae", "nb", "nc"],
    &["e", "z"],
    &["ne", "nz"],
    &["be", "na"],
    &["a", "nbe"],
    &["s"],
    &["ns"],
    &["p", "pe"],
    &["np", "po"],
    &["l", "nge"],
    &["ge", "nl"],
    &["le", "ng"],
    &["g", "nle"],
];

/// One parsed line: its length is known before labels are.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Form {
    Bytes(Vec<u8>),
    Branch { opcode: Vec<u8>, rel8: bool, target: String },
    Mem { code: Code, base: Register, disp: i64, imm: Option<i32> },
}

fn register(name: &str) -> Option<Register> {
    use Register::*;
    let all = [
        ("rax", RAX),
        ("rbx", RBX),
        ("rcx", RCX),
        ("rdx", RDX),
        ("rsi", RSI),
        ("rdi", RDI),
        ("rbp", RBP),
        ("rsp", RSP),
        ("r8", R8),
        ("r9", R9),
        ("r10", R10),
        ("r11", R11),
        ("r12", R12),
        ("r13", R13),
        ("r14", R14),
        ("r15", R15),
    ];
    all.iter().find(|(n, _)| *n == name).map(|&(_, r)| r)
}

fn number(text: &str) -> Option<i64> {
    let (neg, t) = text.strip_prefix('-').map_or((false, text), |t| (true, t));
    let v = match t.strip_prefix("0x") {
        Some(h) => i64::from_str_radix(h, 16).ok()?,
        None => t.parse().ok()?,
    };
    Some(if neg { -v } else { v })
}

/// `qword [rbx+8]` → base and displacement.
fn memory(text: &str) -> Result<(Register, i64), String> {
    let inner = text
        .trim()
        .strip_prefix("qword")
        .map(str::trim)
        .map(|t| t.strip_prefix("ptr").map_or(t, str::trim))
        .and_then(|t| t.strip_prefix('['))
        .and_then(|t| t.strip_suffix(']'))
        .ok_or_else(|| format!("'{text}' is not a memory operand like `qword [rbx+8]`"))?;
    let compact: String = inner.chars().filter(|c| !c.is_whitespace()).collect();
    let split = compact.find(['+', '-']).unwrap_or(compact.len());
    let base =
        register(&compact[..split]).ok_or_else(|| format!("'{}' is not a 64-bit register", &compact[..split]))?;
    let disp = match &compact[split..] {
        "" => 0,
        d => number(d.strip_prefix('+').unwrap_or(d)).ok_or_else(|| format!("'{d}' is not a displacement"))?,
    };
    Ok((base, disp))
}

fn parse(line: &str) -> Result<Form, String> {
    let (mnemonic, rest) = line.split_once(char::is_whitespace).map_or((line, ""), |(m, r)| (m, r.trim()));
    let mnemonic = mnemonic.to_ascii_lowercase();
    let plain = |b: &[u8]| Ok(Form::Bytes(b.to_vec()));
    match (mnemonic.as_str(), rest) {
        ("nop", "") => plain(NOPS[1]),
        (n, "") if n.starts_with("nop") && n[3..].parse::<usize>().is_ok_and(|k| (1..=8).contains(&k)) => {
            plain(NOPS[n[3..].parse::<usize>().unwrap_or(1)])
        }
        ("int3", "") => plain(&[0xcc]),
        ("ret", "") => plain(&[0xc3]),
        ("pause", "") => plain(&[0xf3, 0x90]),
        ("db", bytes) => parse_hex(bytes).map(Form::Bytes),
        ("call", t) if !t.is_empty() => Ok(Form::Branch { opcode: vec![0xe8], rel8: false, target: t.into() }),
        ("jmp", t) if !t.is_empty() => Ok(match t.strip_prefix("short ") {
            Some(t) => Form::Branch { opcode: vec![0xeb], rel8: true, target: t.trim().into() },
            None => Form::Branch { opcode: vec![0xe9], rel8: false, target: t.into() },
        }),
        ("inc" | "dec", m) => {
            let (base, disp) = memory(m)?;
            let code = if mnemonic == "inc" { Code::Inc_rm64 } else { Code::Dec_rm64 };
            Ok(Form::Mem { code, base, disp, imm: None })
        }
        ("add" | "sub", ops) => {
            let (m, imm) = ops.rsplit_once(',').ok_or_else(|| format!("'{line}' needs `qword [R+d], imm`"))?;
            let (base, disp) = memory(m)?;
            let imm = number(imm.trim()).and_then(|v| i32::try_from(v).ok());
            let imm = imm.ok_or_else(|| format!("'{line}': the immediate must fit 32 bits"))?;
            let small = i8::try_from(imm).is_ok();
            let code = match (mnemonic == "add", small) {
                (true, true) => Code::Add_rm64_imm8,
                (true, false) => Code::Add_rm64_imm32,
                (false, true) => Code::Sub_rm64_imm8,
                (false, false) => Code::Sub_rm64_imm32,
            };
            Ok(Form::Mem { code, base, disp, imm: Some(imm) })
        }
        (j, t) if j.starts_with('j') && !t.is_empty() => {
            let cc = CONDITIONS.iter().position(|names| names.contains(&&j[1..]));
            let cc = cc.ok_or_else(|| format!("'{j}' is not a supported instruction"))? as u8;
            Ok(match t.strip_prefix("short ") {
                Some(t) => Form::Branch { opcode: vec![0x70 + cc], rel8: true, target: t.trim().into() },
                None => Form::Branch { opcode: vec![0x0f, 0x80 + cc], rel8: false, target: t.into() },
            })
        }
        _ => Err(format!(
            "'{line}' is not a supported instruction (nopN, int3, ret, pause, call/jmp/jCC [short] T, \
             inc/dec qword [R+d], add/sub qword [R+d], imm, db XX ...)"
        )),
    }
}

/// Hex bytes, separated by spaces or not (`"0f 1f 44 00 00"`, `"e800000000"`).
pub(crate) fn parse_hex(text: &str) -> Result<Vec<u8>, String> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) || !digits.chars().all(|c| c.is_ascii_hexdigit()) {
        return Err(format!("'{text}' is not hex bytes like \"0f 1f 44 00 00\""));
    }
    (0..digits.len()).step_by(2).map(|i| u8::from_str_radix(&digits[i..i + 2], 16).map_err(|e| e.to_string())).collect()
}

fn encode_mem(code: Code, base: Register, disp: i64, imm: Option<i32>, ip: u64) -> Result<Vec<u8>, String> {
    let mem = if disp == 0 { MemoryOperand::with_base(base) } else { MemoryOperand::with_base_displ(base, disp) };
    let insn = match imm {
        None => Instruction::with1(code, mem),
        Some(v) => Instruction::with2(code, mem, v),
    }
    .map_err(|e| e.to_string())?;
    let mut enc = Encoder::new(64);
    enc.encode(&insn, ip).map_err(|e| e.to_string())?;
    Ok(enc.take_buffer())
}

fn len(form: &Form) -> Result<usize, String> {
    Ok(match form {
        Form::Bytes(b) => b.len(),
        Form::Branch { opcode, rel8, .. } => opcode.len() + if *rel8 { 1 } else { 4 },
        Form::Mem { code, base, disp, imm } => encode_mem(*code, *base, *disp, *imm, 0)?.len(),
    })
}

/// Assembled code: its bytes and where each label is.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Assembled {
    /// The machine code.
    pub bytes: Vec<u8>,
    /// Label → address.
    pub labels: BTreeMap<String, u64>,
    /// Each instruction line's `(address, length)`.
    pub lines: Vec<(u64, usize)>,
}

/// Assembles `source` (lines, `;` comments, `name:` labels) at `base`; `known` labels (the
/// generated loop's `loop_head`, `callee`, …) resolve too. Errors name the line (1-based).
pub fn assemble(source: &str, base: u64, known: &BTreeMap<String, u64>) -> Result<Assembled, (usize, String)> {
    let mut parsed: Vec<(usize, Form)> = Vec::new();
    let mut labels: BTreeMap<String, u64> = BTreeMap::new();
    let mut at = base;
    for (i, raw) in source.lines().enumerate() {
        let mut line = raw.split(';').next().unwrap_or("").trim();
        while let Some((label, rest)) = line.split_once(':') {
            let label = label.trim();
            if label.is_empty() || !label.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '.') {
                return Err((i + 1, format!("'{label}' is not a label")));
            }
            if labels.insert(label.to_string(), at).is_some() || known.contains_key(label) {
                return Err((i + 1, format!("label '{label}' is defined twice")));
            }
            line = rest.trim();
        }
        if line.is_empty() {
            continue;
        }
        let form = parse(line).map_err(|e| (i + 1, e))?;
        at += len(&form).map_err(|e| (i + 1, e))? as u64;
        parsed.push((i + 1, form));
    }
    let mut out = Assembled { bytes: Vec::new(), labels, lines: Vec::new() };
    for (line, form) in parsed {
        let ip = base + out.bytes.len() as u64;
        let bytes = match form {
            Form::Bytes(b) => b,
            Form::Mem { code, base, disp, imm } => encode_mem(code, base, disp, imm, ip).map_err(|e| (line, e))?,
            Form::Branch { mut opcode, rel8, target } => {
                let to = out.labels.get(&target).or_else(|| known.get(&target)).copied();
                let to = to.or_else(|| number(&target).map(|v| v as u64));
                let to = to.ok_or_else(|| (line, format!("'{target}' is neither a label nor an address")))?;
                let next = ip + opcode.len() as u64 + if rel8 { 1 } else { 4 };
                let rel = to.wrapping_sub(next) as i64;
                if rel8 {
                    let r =
                        i8::try_from(rel).map_err(|_| (line, format!("'{target}' is out of reach of a short jump")))?;
                    opcode.push(r as u8);
                } else {
                    let r = i32::try_from(rel).map_err(|_| (line, format!("'{target}' is out of reach")))?;
                    opcode.extend(r.to_le_bytes());
                }
                opcode
            }
        };
        out.lines.push((ip, bytes.len()));
        out.bytes.extend(bytes);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_patching_forms_assemble_to_the_kernels_bytes() {
        let src = "top:\n  nop5\n  call f ; a comment\n  jmp short top\n  jne top\nf: inc qword [rbx+8]\n  add qword [rbx], 200\n  ret";
        let a = assemble(src, 0x1000, &BTreeMap::new()).unwrap();
        assert_eq!(&a.bytes[..5], NOPS[5]);
        assert_eq!(&a.bytes[5..10], &[0xe8, 0x08, 0, 0, 0]); // f = 0x1012, next = 0x100a
        assert_eq!(&a.bytes[10..12], &[0xeb, 0xf4]);
        assert_eq!(&a.bytes[12..18], &[0x0f, 0x85, 0xee, 0xff, 0xff, 0xff]);
        assert_eq!(&a.bytes[18..22], &[0x48, 0xff, 0x43, 0x08]);
        assert_eq!(&a.bytes[22..29], &[0x48, 0x81, 0x03, 200, 0, 0, 0]);
        assert_eq!(a.bytes[29], 0xc3);
        assert_eq!(a.labels["f"], 0x1012);
    }

    #[test]
    fn errors_name_the_line() {
        let e = assemble("nop\n  mov rax, 1\n", 0, &BTreeMap::new()).unwrap_err();
        assert_eq!(e.0, 2, "{e:?}");
        assert!(e.1.contains("not a supported instruction"), "{e:?}");
        let e = assemble("jmp nowhere", 0, &BTreeMap::new()).unwrap_err();
        assert!(e.1.contains("neither a label nor an address"), "{e:?}");
    }
}
