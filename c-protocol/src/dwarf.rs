//! A reader for the DWARF line table (`.debug_line`, versions 2 to 5, as clang 14 writes it):
//! the line-number program of DWARF 5 §6.2 run as its state machine, giving one row per
//! address the compiler recorded with its file and line.
//!
//! Only what a linked, relocated executable needs: no split DWARF, no string-offset forms, no
//! VLIW `op_index`. A malformed table is a [`DwarfError`], never a panic.

use crate::elf::{cstr, slice};
use std::fmt;

/// The line table is malformed or uses a form this reader does not know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DwarfError(pub String);

impl fmt::Display for DwarfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl From<crate::elf::ElfError> for DwarfError {
    fn from(e: crate::elf::ElfError) -> Self {
        DwarfError(e.0)
    }
}

/// One row of the decoded line table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    /// The row's address.
    pub addr: u64,
    /// The source file: joined with its directory and, for DWARF 5, with the compilation
    /// directory, so absolute when clang recorded one (not normalised: `..` may remain).
    pub file: String,
    /// The line (0: code no source line is attributed to).
    pub line: u32,
    /// The first address past a sequence (`DW_LNE_end_sequence`): no code of its own.
    pub end_sequence: bool,
}

/// A cursor over a byte slice.
struct Cursor<'a> {
    b: &'a [u8],
    pos: u64,
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: u64) -> Result<&'a [u8], DwarfError> {
        let s = slice(self.b, self.pos, n, "a .debug_line field")?;
        self.pos += n;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DwarfError> {
        Ok(self.take(1)?[0])
    }
    fn uint(&mut self, n: u64) -> Result<u64, DwarfError> {
        Ok(self.take(n)?.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b)))
    }
    fn uleb(&mut self) -> Result<u64, DwarfError> {
        let (mut v, mut shift) = (0u64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= u64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                return Ok(v);
            }
        }
    }
    fn sleb(&mut self) -> Result<i64, DwarfError> {
        let (mut v, mut shift) = (0i64, 0u32);
        loop {
            let b = self.u8()?;
            if shift < 64 {
                v |= i64::from(b & 0x7f) << shift;
            }
            shift += 7;
            if b & 0x80 == 0 {
                if shift < 64 && b & 0x40 != 0 {
                    v |= -1i64 << shift;
                }
                return Ok(v);
            }
        }
    }
    fn cstr(&mut self) -> Result<String, DwarfError> {
        let s = cstr(self.b, self.pos)?;
        self.pos += s.len() as u64 + 1;
        Ok(s)
    }
}

/// The string sections a DWARF 5 header's `DW_FORM_line_strp`/`DW_FORM_strp` point into.
#[derive(Clone, Copy)]
pub struct StrSections<'a> {
    /// `.debug_line_str`.
    pub line_str: &'a [u8],
    /// `.debug_str`.
    pub str: &'a [u8],
}

/// One unit's header: what the program needs to run.
struct Header {
    addr_size: u8,
    min_inst: u8,
    line_base: i8,
    line_range: u8,
    opcode_base: u8,
    std_lengths: Vec<u8>,
    /// Resolved file names, indexed as the program's `file` register (DWARF 5: from 0; before:
    /// from 1, so entry 0 is a placeholder).
    files: Vec<String>,
}

/// Decodes every unit of `.debug_line` into rows, in table order.
pub fn decode_lines(debug_line: &[u8], strs: StrSections<'_>) -> Result<Vec<Row>, DwarfError> {
    let mut rows = Vec::new();
    let mut c = Cursor { b: debug_line, pos: 0 };
    while c.pos < debug_line.len() as u64 {
        let mut len = c.uint(4)?;
        let mut offset_size = 4;
        if len == 0xffff_ffff {
            len = c.uint(8)?;
            offset_size = 8;
        }
        let unit_start = c.pos;
        let unit_end = unit_start.checked_add(len).filter(|&e| e <= debug_line.len() as u64);
        let Some(unit_end) = unit_end else {
            return Err(DwarfError(format!("line unit at {unit_start:#x} runs past the section")));
        };
        let unit = &debug_line[..unit_end as usize];
        let mut u = Cursor { b: unit, pos: unit_start };
        let (header, program_start) = read_header(&mut u, offset_size, strs)?;
        u.pos = program_start;
        run_program(&mut u, &header, &mut rows)?;
        c.pos = unit_end;
    }
    Ok(rows)
}

fn read_header(c: &mut Cursor<'_>, offset_size: u64, strs: StrSections<'_>) -> Result<(Header, u64), DwarfError> {
    let version = c.uint(2)? as u16;
    if !(2..=5).contains(&version) {
        return Err(DwarfError(format!("line table version {version} (expected 2 to 5)")));
    }
    let mut addr_size = 8;
    if version >= 5 {
        addr_size = c.u8()?;
        c.u8()?; // segment_selector_size
    }
    let header_length = c.uint(offset_size)?;
    let program_start = c.pos + header_length;
    let min_inst = c.u8()?;
    if version >= 4 {
        c.u8()?; // maximum_operations_per_instruction (1 on x86)
    }
    c.u8()?; // default_is_stmt
    let line_base = c.u8()? as i8;
    let line_range = c.u8()?;
    let opcode_base = c.u8()?;
    if line_range == 0 || opcode_base == 0 {
        return Err(DwarfError("line table header with line_range or opcode_base 0".into()));
    }
    let std_lengths = c.take(u64::from(opcode_base) - 1)?.to_vec();
    let files = if version >= 5 { read_v5_files(c, offset_size, strs)? } else { read_v4_files(c)? };
    let h = Header { addr_size, min_inst, line_base, line_range, opcode_base, std_lengths, files };
    Ok((h, program_start))
}

/// `dir/name`, or `name` alone when it is absolute or lies in the compilation directory.
fn join(dir: Option<&str>, name: String) -> String {
    match dir {
        Some(d) if !d.is_empty() && !name.starts_with('/') => format!("{}/{name}", d.trim_end_matches('/')),
        _ => name,
    }
}

fn read_v4_files(c: &mut Cursor<'_>) -> Result<Vec<String>, DwarfError> {
    let mut dirs = Vec::new();
    loop {
        let d = c.cstr()?;
        if d.is_empty() {
            break;
        }
        dirs.push(d);
    }
    let mut files = vec![String::new()];
    loop {
        let name = c.cstr()?;
        if name.is_empty() {
            return Ok(files);
        }
        let dir = c.uleb()?;
        c.uleb()?; // mtime
        c.uleb()?; // length
        let d = (dir as usize).checked_sub(1).and_then(|i| dirs.get(i)).map(String::as_str);
        files.push(join(d, name));
    }
}

/// One attribute of a DWARF 5 directory or file entry.
enum Value {
    Str(String),
    Num(u64),
    Skip,
}

fn read_form(c: &mut Cursor<'_>, form: u64, offset_size: u64, strs: StrSections<'_>) -> Result<Value, DwarfError> {
    Ok(match form {
        0x08 => Value::Str(c.cstr()?),                                  // DW_FORM_string
        0x1f => Value::Str(cstr(strs.line_str, c.uint(offset_size)?)?), // DW_FORM_line_strp
        0x0e => Value::Str(cstr(strs.str, c.uint(offset_size)?)?),      // DW_FORM_strp
        0x0f => Value::Num(c.uleb()?),                                  // DW_FORM_udata
        0x0b => Value::Num(c.uint(1)?),                                 // DW_FORM_data1
        0x05 => Value::Num(c.uint(2)?),                                 // DW_FORM_data2
        0x06 => Value::Num(c.uint(4)?),                                 // DW_FORM_data4
        0x07 => Value::Num(c.uint(8)?),                                 // DW_FORM_data8
        0x1e => c.take(16).map(|_| Value::Skip)?,                       // DW_FORM_data16 (MD5)
        0x09 => {
            let n = c.uleb()?; // DW_FORM_block
            c.take(n).map(|_| Value::Skip)?
        }
        _ => return Err(DwarfError(format!("line table entry form {form:#x} is not supported"))),
    })
}

/// Reads one DWARF 5 entry list (directories or files): `(path, directory index)` per entry.
fn read_v5_entries(
    c: &mut Cursor<'_>,
    offset_size: u64,
    strs: StrSections<'_>,
) -> Result<Vec<(String, u64)>, DwarfError> {
    let nformats = c.u8()?;
    let mut formats = Vec::new();
    for _ in 0..nformats {
        formats.push((c.uleb()?, c.uleb()?));
    }
    let count = c.uleb()?;
    let mut out = Vec::new();
    for _ in 0..count {
        let (mut path, mut dir) = (String::new(), 0);
        for &(content, form) in &formats {
            match (content, read_form(c, form, offset_size, strs)?) {
                (1, Value::Str(s)) => path = s, // DW_LNCT_path
                (2, Value::Num(n)) => dir = n,  // DW_LNCT_directory_index
                _ => {}
            }
        }
        out.push((path, dir));
    }
    Ok(out)
}

fn read_v5_files(c: &mut Cursor<'_>, offset_size: u64, strs: StrSections<'_>) -> Result<Vec<String>, DwarfError> {
    let dirs = read_v5_entries(c, offset_size, strs)?;
    let files = read_v5_entries(c, offset_size, strs)?;
    // Directory 0 is the compilation directory; the others and the names may be relative to
    // it (clang 14 writes them so even for files named by absolute paths): make them absolute.
    let comp_dir = dirs.first().map(|(d, _)| d.as_str());
    Ok(files
        .into_iter()
        .map(|(name, dir)| {
            let d = dirs.get(dir as usize).map(|(d, _)| join(comp_dir, d.clone()));
            join(d.as_deref(), name)
        })
        .collect())
}

/// The line-number state machine's registers (DWARF 5 §6.2.2).
struct State {
    addr: u64,
    file: u64,
    line: i64,
}

impl State {
    fn new() -> State {
        State { addr: 0, file: 1, line: 1 }
    }
    fn row(&self, h: &Header, end_sequence: bool) -> Result<Row, DwarfError> {
        let Some(file) = h.files.get(self.file as usize) else {
            return Err(DwarfError(format!("line table row names file {} of {}", self.file, h.files.len())));
        };
        let line = u32::try_from(self.line).unwrap_or(0);
        Ok(Row { addr: self.addr, file: file.clone(), line, end_sequence })
    }
}

fn run_program(c: &mut Cursor<'_>, h: &Header, rows: &mut Vec<Row>) -> Result<(), DwarfError> {
    let mut s = State::new();
    let min_inst = u64::from(h.min_inst);
    while c.pos < c.b.len() as u64 {
        let op = c.u8()?;
        if op >= h.opcode_base {
            let adj = op - h.opcode_base;
            s.addr = s.addr.wrapping_add(u64::from(adj / h.line_range) * min_inst);
            s.line += i64::from(h.line_base) + i64::from(adj % h.line_range);
            rows.push(s.row(h, false)?);
            continue;
        }
        match op {
            0 => {
                let len = c.uleb()?;
                let body = c.take(len)?;
                match body.first() {
                    Some(1) => {
                        rows.push(s.row(h, true)?);
                        s = State::new();
                    }
                    Some(2) => {
                        let a = &body[1..body.len().min(1 + usize::from(h.addr_size))];
                        s.addr = a.iter().rev().fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
                    }
                    _ => {} // define_file (v2-4), set_discriminator, vendor: nothing to track
                }
            }
            1 => rows.push(s.row(h, false)?),
            2 => s.addr = s.addr.wrapping_add(c.uleb()? * min_inst),
            3 => s.line += c.sleb()?,
            4 => s.file = c.uleb()?,
            8 => {
                let adj = 255 - h.opcode_base;
                s.addr = s.addr.wrapping_add(u64::from(adj / h.line_range) * min_inst);
            }
            9 => s.addr = s.addr.wrapping_add(c.uint(2)?),
            _ => {
                // Any other standard opcode (column, stmt, basic block, prologue, isa, or one a
                // later DWARF adds): skip the ULEB operands the header says it has.
                let n = h.std_lengths.get(usize::from(op) - 1).copied().unwrap_or(0);
                for _ in 0..n {
                    c.uleb()?;
                }
            }
        }
    }
    Ok(())
}
