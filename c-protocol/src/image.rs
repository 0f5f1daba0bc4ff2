//! Loading a linked protocol executable into a [`KernelImage`]: the bytes of its sections in the
//! kernel code and data regions (`.bss` zero-filled), its symbol table, and its DWARF line table
//! with each row's enclosing function — what a loader such as the kernel's `load_elf_binary()`
//! maps, plus what a debugger's `addr2line` reads.

use crate::dwarf::{decode_lines, StrSections};
use crate::elf::{Elf, SHF_ALLOC, SHN_UNDEF, STB_LOCAL, STT_FUNC, STT_OBJECT};
use crate::BuildError;
use sim_core::kernel_image::{KernelImage, LineRow, Service, KCODE_BASE, KCODE_MAX, KDATA_BASE, KDATA_MAX};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The paths a build was given (the source, the runtime, the include directory), each with its
/// canonical form: the line table names these files as they were given, not by the absolute
/// paths clang recorded, so an image does not depend on the working directory.
#[derive(Default)]
pub struct GivenPaths {
    files: Vec<(PathBuf, String)>,
    dirs: Vec<(PathBuf, String)>,
}

impl GivenPaths {
    /// Records file `given` (if it exists).
    pub fn file(mut self, given: &Path) -> Self {
        if let Ok(c) = std::fs::canonicalize(given) {
            self.files.push((c, given.display().to_string()));
        }
        self
    }
    /// Records directory `given` (if it exists): files under it are named under `given`.
    pub fn dir(mut self, given: &Path) -> Self {
        if let Ok(c) = std::fs::canonicalize(given) {
            self.dirs.push((c, given.display().to_string()));
        }
        self
    }
    /// `name` as the build was given it, if it is one of its files or lies under its directories.
    fn rename(&self, name: &str) -> String {
        let Ok(c) = std::fs::canonicalize(name) else { return name.to_string() };
        if let Some((_, given)) = self.files.iter().find(|(f, _)| *f == c) {
            return given.clone();
        }
        for (d, given) in &self.dirs {
            if let Ok(rest) = c.strip_prefix(d) {
                return Path::new(given).join(rest).display().to_string();
            }
        }
        name.to_string()
    }
}

/// `SHN_ABS`: the section index of an absolute symbol (the services the script defines).
const SHN_ABS: u16 = 0xfff1;
/// `SHF_TLS`: thread-local storage.
const SHF_TLS: u64 = 0x400;

/// An error in the linked file itself: ld produced something pokesim cannot load.
fn bad_elf(message: impl std::fmt::Display) -> BuildError {
    BuildError::Tool { tool: "ld", message: format!("the linked image cannot be read: {message}") }
}

/// One of the two regions an image loads into.
struct Region {
    what: &'static str,
    base: u64,
    max: u64,
    bytes: Vec<u8>,
}

impl Region {
    fn contains(&self, addr: u64) -> bool {
        addr >= self.base && addr - self.base < self.max
    }
    /// Places `contents` (or `size` zero bytes for `.bss`) at `addr`.
    fn place(&mut self, addr: u64, size: u64, contents: &[u8]) -> Result<(), BuildError> {
        let start = addr - self.base;
        let end = start.saturating_add(size);
        if end > self.max {
            return Err(BuildError::TooLarge { what: self.what, size: end, max: self.max });
        }
        if self.bytes.len() < end as usize {
            self.bytes.resize(end as usize, 0);
        }
        let dst = &mut self.bytes[start as usize..end as usize];
        if contents.is_empty() {
            dst.fill(0);
        } else {
            dst.copy_from_slice(contents);
        }
        Ok(())
    }
}

/// Loads the linked executable `bytes`; `source` and `hash` are recorded as given.
pub fn load(bytes: &[u8], source: &str, hash: &str, given: &GivenPaths) -> Result<KernelImage, BuildError> {
    let elf = Elf::parse(bytes).map_err(bad_elf)?;
    let (code, data) = regions(&elf)?;
    let symbols = symbols(&elf);
    let lines = lines(&elf, given)?;
    Ok(KernelImage { source: source.to_string(), hash: hash.to_string(), code, data, symbols, lines })
}

fn regions(elf: &Elf<'_>) -> Result<(Vec<u8>, Vec<u8>), BuildError> {
    let mut code = Region { what: "code (.text + .rodata)", base: KCODE_BASE, max: KCODE_MAX, bytes: Vec::new() };
    let mut data = Region { what: "data (.data + .bss)", base: KDATA_BASE, max: KDATA_MAX, bytes: Vec::new() };
    for s in &elf.sections {
        if s.flags & SHF_ALLOC == 0 || s.size == 0 {
            continue;
        }
        if s.flags & SHF_TLS != 0 {
            return Err(BuildError::Link {
                messages: format!(
                    "section `{}` is thread-local storage (`__thread`), which a kernel protocol cannot use: \
                     use an array indexed by smp_processor_id() (per-CPU data)",
                    s.name
                ),
            });
        }
        let contents = elf.contents(s).map_err(bad_elf)?;
        let region = if code.contains(s.addr) {
            &mut code
        } else if data.contains(s.addr) {
            &mut data
        } else {
            return Err(BuildError::Link {
                messages: format!(
                    "section `{}` landed at {:#x}, outside the kernel code and data regions: the linker script \
                     places only .text*, .rodata*, .data*, .bss* and COMMON",
                    s.name, s.addr
                ),
            });
        };
        region.place(s.addr, s.size, contents)?;
    }
    Ok((code.bytes, data.bytes))
}

/// Every defined function and object, and the services: a global name wins over a local one of
/// the same name (two files' `static` helpers), then the first in table order.
fn symbols(elf: &Elf<'_>) -> BTreeMap<String, u64> {
    let mut out = BTreeMap::new();
    let wanted = |s: &&crate::elf::Symbol| {
        let defined = (s.shndx != SHN_UNDEF && (s.kind == STT_FUNC || s.kind == STT_OBJECT))
            || (s.shndx == SHN_ABS && Service::ALL.iter().any(|v| v.symbol() == s.name));
        defined && !s.name.is_empty() && !s.name.starts_with(".L")
    };
    for global in [true, false] {
        for s in elf.symbols.iter().filter(wanted).filter(|s| (s.bind != STB_LOCAL) == global) {
            out.entry(s.name.clone()).or_insert(s.value);
        }
    }
    out
}

/// The line table, sorted by address (stable: of rows at one address the last is the one
/// [`KernelImage::line`] finds), without end-of-sequence rows and line-0 rows, file names as
/// the build was given them.
fn lines(elf: &Elf<'_>, given: &GivenPaths) -> Result<Vec<LineRow>, BuildError> {
    let Some(debug_line) = elf.section(".debug_line") else { return Ok(Vec::new()) };
    let section = |name: &str| elf.section(name).map(|s| elf.contents(s)).transpose();
    let strs = StrSections {
        line_str: section(".debug_line_str").map_err(bad_elf)?.unwrap_or(&[]),
        str: section(".debug_str").map_err(bad_elf)?.unwrap_or(&[]),
    };
    let raw = decode_lines(elf.contents(debug_line).map_err(bad_elf)?, strs).map_err(bad_elf)?;
    let mut funcs: Vec<(u64, u64, &str)> = elf
        .symbols
        .iter()
        .filter(|s| s.kind == STT_FUNC && s.shndx != SHN_UNDEF && s.size > 0)
        .map(|s| (s.value, s.size, s.name.as_str()))
        .collect();
    funcs.sort();
    let enclosing = |addr: u64| {
        let i = funcs.partition_point(|f| f.0 <= addr);
        funcs[..i].iter().rev().find(|f| addr - f.0 < f.1).map_or("", |f| f.2)
    };
    let mut names: BTreeMap<String, String> = BTreeMap::new();
    let mut rows = Vec::new();
    for r in raw.into_iter().filter(|r| !r.end_sequence && r.line != 0) {
        let file = names.entry(r.file).or_insert_with_key(|f| given.rename(f)).clone();
        rows.push(LineRow { addr: r.addr, function: enclosing(r.addr).to_string(), file, line: r.line });
    }
    rows.sort_by_key(|r| r.addr);
    Ok(rows)
}
