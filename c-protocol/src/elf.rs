//! A small ELF64 little-endian reader: the section headers and the symbol table of the
//! executable GNU ld links (and of clang's relocatable objects) — just what loading a protocol
//! image needs, mirroring the layout of `<elf.h>`'s `Elf64_Ehdr`, `Elf64_Shdr` and `Elf64_Sym`.
//!
//! Every read is bounds-checked: a truncated or foreign file is an [`ElfError`], never a panic.

use std::fmt;

/// `SHT_NOBITS`: a section with no file contents (`.bss`).
pub const SHT_NOBITS: u32 = 8;
/// `SHT_SYMTAB`.
const SHT_SYMTAB: u32 = 2;
/// `SHF_ALLOC`: the section occupies memory at run time.
pub const SHF_ALLOC: u64 = 0x2;
/// `SHN_UNDEF`: an undefined symbol's section index.
pub const SHN_UNDEF: u16 = 0;
/// `STT_OBJECT`.
pub const STT_OBJECT: u8 = 1;
/// `STT_FUNC`.
pub const STT_FUNC: u8 = 2;
/// `STB_LOCAL`.
pub const STB_LOCAL: u8 = 0;

/// The file is not an ELF64 little-endian x86-64 file pokesim can read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElfError(pub String);

impl fmt::Display for ElfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One section header, with its name resolved.
#[derive(Debug, Clone)]
pub struct Section {
    /// Name from `.shstrtab`.
    pub name: String,
    /// `sh_type`.
    pub kind: u32,
    /// `sh_flags`.
    pub flags: u64,
    /// `sh_addr`.
    pub addr: u64,
    /// `sh_offset`.
    pub offset: u64,
    /// `sh_size`.
    pub size: u64,
    /// `sh_link`.
    link: u32,
}

/// One symbol-table entry, with its name resolved.
#[derive(Debug, Clone)]
pub struct Symbol {
    /// Name from the linked string table.
    pub name: String,
    /// `st_value`.
    pub value: u64,
    /// `st_size`.
    pub size: u64,
    /// `ELF64_ST_TYPE(st_info)`.
    pub kind: u8,
    /// `ELF64_ST_BIND(st_info)`.
    pub bind: u8,
    /// `st_shndx`.
    pub shndx: u16,
}

/// A parsed ELF64 file: its bytes, its sections and its symbols.
pub struct Elf<'a> {
    bytes: &'a [u8],
    /// Every section header, in index order.
    pub sections: Vec<Section>,
    /// Every symbol of `.symtab` (index 0, the null symbol, left out), in table order.
    pub symbols: Vec<Symbol>,
}

fn err<T>(what: impl Into<String>) -> Result<T, ElfError> {
    Err(ElfError(what.into()))
}

/// `bytes[off..off + len]`, or an error naming `what`.
pub fn slice<'b>(bytes: &'b [u8], off: u64, len: u64, what: &str) -> Result<&'b [u8], ElfError> {
    let end = off.checked_add(len).filter(|&e| e <= bytes.len() as u64);
    match end {
        Some(end) => Ok(&bytes[off as usize..end as usize]),
        None => err(format!("{what} lies outside the file (offset {off:#x}, size {len:#x})")),
    }
}

fn u16_at(b: &[u8], off: u64) -> Result<u16, ElfError> {
    let s = slice(b, off, 2, "a field")?;
    Ok(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: u64) -> Result<u32, ElfError> {
    let s = slice(b, off, 4, "a field")?;
    Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: u64) -> Result<u64, ElfError> {
    let s = slice(b, off, 8, "a field")?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Ok(u64::from_le_bytes(a))
}

/// The NUL-terminated string at `off` of string table `table`.
pub fn cstr(table: &[u8], off: u64) -> Result<String, ElfError> {
    let rest = slice(table, off, 0, "a string").map(|_| &table[off as usize..])?;
    match rest.iter().position(|&c| c == 0) {
        Some(n) => Ok(String::from_utf8_lossy(&rest[..n]).into_owned()),
        None => err(format!("unterminated string at offset {off:#x}")),
    }
}

impl<'a> Elf<'a> {
    /// Parses the header, the section headers and `.symtab` of `bytes`.
    pub fn parse(bytes: &'a [u8]) -> Result<Elf<'a>, ElfError> {
        let ident = slice(bytes, 0, 64, "the ELF header")?;
        if &ident[..4] != b"\x7fELF" || ident[4] != 2 || ident[5] != 1 {
            return err("not an ELF64 little-endian file");
        }
        if u16_at(bytes, 18)? != 62 {
            return err("not an x86-64 ELF file (e_machine is not EM_X86_64)");
        }
        let shoff = u64_at(bytes, 0x28)?;
        let shentsize = u64::from(u16_at(bytes, 0x3a)?);
        let shnum = u64::from(u16_at(bytes, 0x3c)?);
        let shstrndx = u64::from(u16_at(bytes, 0x3e)?);
        if shentsize != 64 {
            return err(format!("section header size {shentsize}, expected 64"));
        }
        let mut raw = Vec::new();
        for i in 0..shnum {
            let h = shoff + i * 64;
            raw.push((
                u32_at(bytes, h)?,
                Section {
                    name: String::new(),
                    kind: u32_at(bytes, h + 4)?,
                    flags: u64_at(bytes, h + 8)?,
                    addr: u64_at(bytes, h + 16)?,
                    offset: u64_at(bytes, h + 24)?,
                    size: u64_at(bytes, h + 32)?,
                    link: u32_at(bytes, h + 40)?,
                },
            ));
        }
        let Some((_, shstr)) = raw.get(shstrndx as usize) else {
            return err(format!("section name table index {shstrndx} out of range"));
        };
        let names = slice(bytes, shstr.offset, shstr.size, "the section name table")?;
        let mut sections = Vec::with_capacity(raw.len());
        for (name_off, mut s) in raw {
            s.name = cstr(names, u64::from(name_off))?;
            sections.push(s);
        }
        let mut elf = Elf { bytes, sections, symbols: Vec::new() };
        elf.symbols = elf.read_symbols()?;
        Ok(elf)
    }

    fn read_symbols(&self) -> Result<Vec<Symbol>, ElfError> {
        let Some(symtab) = self.sections.iter().find(|s| s.kind == SHT_SYMTAB) else {
            return Ok(Vec::new());
        };
        let Some(strtab) = self.sections.get(symtab.link as usize) else {
            return err("the symbol table's string table index is out of range");
        };
        let strings = self.contents(strtab)?;
        let table = self.contents(symtab)?;
        let mut out = Vec::new();
        for i in 1..(table.len() as u64 / 24) {
            let e = i * 24;
            let info = slice(table, e + 4, 1, "a symbol")?[0];
            out.push(Symbol {
                name: cstr(strings, u64::from(u32_at(table, e)?))?,
                kind: info & 0xf,
                bind: info >> 4,
                shndx: u16_at(table, e + 6)?,
                value: u64_at(table, e + 8)?,
                size: u64_at(table, e + 16)?,
            });
        }
        Ok(out)
    }

    /// The file bytes of `section` (empty for `SHT_NOBITS`).
    pub fn contents(&self, section: &Section) -> Result<&'a [u8], ElfError> {
        if section.kind == SHT_NOBITS {
            return Ok(&[]);
        }
        slice(self.bytes, section.offset, section.size, &format!("section {}", section.name))
    }

    /// The section called `name`, if any.
    pub fn section(&self, name: &str) -> Option<&Section> {
        self.sections.iter().find(|s| s.name == name)
    }
}
