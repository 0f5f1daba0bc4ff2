//! The toolchain of DESIGN.md §2.15: clang 14 compiles a protocol file and the runtime as
//! freestanding x86-64 objects (the flags of the C ABI, fixed by the lead), and GNU ld links
//! them with a generated linker script that places every kernel service on its slot of the
//! service page and the sections in pokesim's kernel code and data regions
//! ([`sim_core::kernel_image`]).

use crate::elf::{Elf, ElfError, SHN_UNDEF, STB_LOCAL};
use crate::BuildError;
use sim_core::kernel_image::{Service, KCODE_BASE, KCODE_MAX, KDATA_BASE, KDATA_MAX};
use std::path::Path;
use std::process::{Command, Output};
use std::sync::OnceLock;

/// clang's code-generation flags (the C ABI's, in its order); `-I include`, each `-D` and the
/// file names follow.
pub const CFLAGS: &[&str] = &[
    "-c",
    "--target=x86_64-unknown-none",
    "-ffreestanding",
    "-fno-builtin",
    "-fno-pic",
    "-mcmodel=small",
    "-mno-red-zone",
    "-mgeneral-regs-only",
    "-fno-stack-protector",
    "-fcf-protection=none",
    "-fno-asynchronous-unwind-tables",
    "-O2",
    "-g",
    "-std=gnu11",
];

/// GNU ld's flags (before `-T script -o out objects...`): a static image of our own sections
/// only; no build-id note, no warning about the RWX segments a bare image does not have anyway.
pub const LDFLAGS: &[&str] = &["-static", "-nostdlib", "--build-id=none", "-z", "noexecstack"];

/// The linker script's memory region holding `.text` and `.rodata`.
const CODE_REGION: &str = "pokesim_kcode";
/// The linker script's memory region holding `.data` and `.bss`.
const DATA_REGION: &str = "pokesim_kdata";

/// The first of `candidates` whose `--version` runs, else the last (whose failure then says
/// what is missing); `$<env>` overrides.
fn pick(env: &str, candidates: &[&str]) -> String {
    if let Some(c) = std::env::var_os(env).filter(|c| !c.is_empty()) {
        return c.to_string_lossy().into_owned();
    }
    let runs = |c: &&&str| Command::new(c).arg("--version").output().is_ok_and(|o| o.status.success());
    candidates.iter().find(runs).or(candidates.last()).map_or_else(String::new, |c| c.to_string())
}

/// The clang binary: `$POKESIM_CLANG`, else `clang-14` if it runs, else `clang`.
pub fn clang() -> &'static str {
    static CLANG: OnceLock<String> = OnceLock::new();
    CLANG.get_or_init(|| pick("POKESIM_CLANG", &["clang-14", "clang"]))
}

/// GNU ld: `$POKESIM_LD`, else `ld.bfd` if it runs (`ld` may be another linker), else `ld`.
pub fn ld() -> &'static str {
    static LD: OnceLock<String> = OnceLock::new();
    LD.get_or_init(|| pick("POKESIM_LD", &["ld.bfd", "ld"]))
}

/// The first line of `program --version`, or a `Tool` error saying the tool is missing.
fn version_of(tool: &'static str, program: &str) -> Result<String, String> {
    match Command::new(program).arg("--version").output() {
        Ok(o) if o.status.success() => Ok(String::from_utf8_lossy(&o.stdout).into_owned()),
        Ok(o) => Err(format!("`{program} --version` failed: {}", String::from_utf8_lossy(&o.stderr).trim())),
        Err(e) => Err(format!(
            "cannot run `{program}` ({e}); {tool} is needed: install clang 14 and binutils (the README's set-up line)"
        )),
    }
}

/// `clang --version` and `ld --version` (part of the content hash), or a `Tool` error.
pub fn tool_versions() -> Result<String, BuildError> {
    static VERSIONS: OnceLock<Result<String, BuildError>> = OnceLock::new();
    let v = VERSIONS.get_or_init(|| {
        let clang = version_of("clang", clang()).map_err(|message| BuildError::Tool { tool: "clang", message })?;
        let ld = version_of("ld", ld()).map_err(|message| BuildError::Tool { tool: "ld", message })?;
        Ok(format!("{clang}\n{ld}"))
    });
    v.clone()
}

fn run(tool: &'static str, program: &str, cmd: &mut Command) -> Result<Output, BuildError> {
    cmd.output().map_err(|e| BuildError::Tool {
        tool,
        message: format!("cannot run `{program}` ({e}); install clang 14 and binutils (see the README's set-up line)"),
    })
}

/// Compiles `source` into `object` with the ABI's flags, `-I include` and `-D` each define.
pub fn compile(source: &Path, include: &Path, defines: &[String], object: &Path) -> Result<(), BuildError> {
    let mut cmd = Command::new(clang());
    cmd.args(CFLAGS).arg("-I").arg(include);
    for d in defines {
        cmd.arg(format!("-D{d}"));
    }
    cmd.arg(source).arg("-o").arg(object);
    let out = run("clang", clang(), &mut cmd)?;
    if out.status.success() {
        return Ok(());
    }
    let messages = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code().is_none() {
        return Err(BuildError::Tool {
            tool: "clang",
            message: format!("clang was killed ({}): {messages}", out.status),
        });
    }
    Err(BuildError::Compile { source: source.display().to_string(), messages })
}

/// The linker script: every service symbol at its slot, `.text*`/`.rodata*` in the kernel code
/// region, `.data*`/`.bss*`/`COMMON` in the kernel data region, notes and unwind tables dropped.
pub fn linker_script() -> String {
    let mut s = String::from("/* Generated by pokesim's c-protocol crate: the fixed guest address map. */\n");
    s.push_str("/* Kernel services: pokesim runs a CPU whose RIP enters a slot. */\n");
    for svc in Service::ALL {
        s.push_str(&format!("{} = {:#x};\n", svc.symbol(), svc.addr()));
    }
    s.push_str(&format!(
        "MEMORY\n{{\n  {CODE_REGION} (rx) : ORIGIN = {KCODE_BASE:#x}, LENGTH = {KCODE_MAX:#x}\n  \
         {DATA_REGION} (rw) : ORIGIN = {KDATA_BASE:#x}, LENGTH = {KDATA_MAX:#x}\n}}\n"
    ));
    s.push_str(
        "SECTIONS\n{\n  \
         .text : { *(.text .text.*) } > pokesim_kcode\n  \
         .rodata : { *(.rodata .rodata.*) } > pokesim_kcode\n  \
         .data : { *(.data .data.*) } > pokesim_kdata\n  \
         .bss : { *(.bss .bss.*) *(COMMON) } > pokesim_kdata\n  \
         /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame) *(.eh_frame_hdr) }\n}\n",
    );
    s
}

/// Links `objects` with `script` into `output`: undefined symbols and overflowing regions become
/// their own errors, anything else ld says a `Link` error with its messages.
pub fn link(script: &Path, objects: &[&Path], output: &Path) -> Result<(), BuildError> {
    let mut cmd = Command::new(ld());
    cmd.args(LDFLAGS).arg("-T").arg(script).arg("-o").arg(output).args(objects);
    let out = run("ld", ld(), &mut cmd)?;
    if out.status.success() {
        return Ok(());
    }
    let messages = String::from_utf8_lossy(&out.stderr).into_owned();
    if out.status.code().is_none() {
        return Err(BuildError::Tool { tool: "ld", message: format!("ld was killed ({}): {messages}", out.status) });
    }
    if let Some(e) = region_overflow(&messages) {
        return Err(e);
    }
    let undefined = undefined_symbols(&messages);
    if undefined.is_empty() {
        return Err(BuildError::Link { messages });
    }
    let mut text = String::new();
    for name in &undefined {
        text.push_str(&format!(
            "undefined symbol `{name}`: neither the file nor the runtime defines it, and pokesim.h does not \
             provide it (it is no kernel service pokesim implements)\n"
        ));
    }
    text.push_str("ld said:\n");
    text.push_str(&messages);
    Err(BuildError::Link { messages: text })
}

/// The kernel services `object` (a relocatable object file) defines as global symbols itself:
/// the linker script's definition would silently win over such a definition.
pub fn defined_services(object: &[u8]) -> Result<Vec<&'static str>, ElfError> {
    let elf = Elf::parse(object)?;
    let defined =
        |name: &str| elf.symbols.iter().any(|s| s.name == name && s.shndx != SHN_UNDEF && s.bind != STB_LOCAL);
    Ok(Service::ALL.iter().map(|s| s.symbol()).filter(|n| defined(n)).collect())
}

/// A `Link` error if any of `objects` (path, name as given) defines a kernel service.
pub fn check_services(objects: &[(&Path, &str)]) -> Result<(), BuildError> {
    let mut messages = String::new();
    for (path, name) in objects {
        let bytes = std::fs::read(path)
            .map_err(|e| BuildError::Io { path: path.display().to_string(), message: e.to_string() })?;
        let found = defined_services(&bytes)
            .map_err(|e| BuildError::Tool { tool: "clang", message: format!("{}: {e}", path.display()) })?;
        for svc in found {
            messages.push_str(&format!(
                "{name} defines `{svc}`, a kernel service pokesim implements (pokesim.h declares it): remove \
                 the definition\n"
            ));
        }
    }
    if messages.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Link { messages })
    }
}

/// The names of ld's "undefined reference to `name'" messages, first-seen order, no repeats.
pub fn undefined_symbols(messages: &str) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for line in messages.lines() {
        let Some((_, rest)) = line.split_once("undefined reference to `") else { continue };
        let name = rest.split('\'').next().unwrap_or(rest).to_string();
        if !names.contains(&name) {
            names.push(name);
        }
    }
    names
}

/// ld's "region `R' overflowed by N bytes" as a `TooLarge` error.
fn region_overflow(messages: &str) -> Option<BuildError> {
    for line in messages.lines() {
        let Some((_, rest)) = line.split_once("region `") else { continue };
        let Some((region, rest)) = rest.split_once('\'') else { continue };
        let Some(n) = rest.trim().strip_prefix("overflowed by ").and_then(|r| r.split(' ').next()) else { continue };
        let Ok(by) = n.parse::<u64>() else { continue };
        let (what, max) = match region {
            CODE_REGION => ("code (.text + .rodata)", KCODE_MAX),
            DATA_REGION => ("data (.data + .bss)", KDATA_MAX),
            _ => continue,
        };
        return Some(BuildError::TooLarge { what, size: max.saturating_add(by), max });
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn undefined_references_are_named_once_each() {
        let m = "ld: a.o: in function `foo':\na.c:8: undefined reference to `bar'\n\
                 a.c:9: undefined reference to `bar'\na.c:9: undefined reference to `baz'\n";
        assert_eq!(undefined_symbols(m), ["bar", "baz"]);
    }

    #[test]
    fn region_overflow_is_too_large() {
        let m = "ld: x.elf section `.bss' will not fit in region `pokesim_kdata'\n\
                 ld: region `pokesim_kdata' overflowed by 16 bytes\n";
        let e = region_overflow(m);
        assert!(matches!(e, Some(BuildError::TooLarge { size, max: KDATA_MAX, .. }) if size == KDATA_MAX + 16));
    }

    #[test]
    fn the_script_places_every_service() {
        let s = linker_script();
        assert!(s.contains("text_poke = 0x8000000;"));
        for svc in Service::ALL {
            assert!(s.contains(&format!("{} = {:#x};", svc.symbol(), svc.addr())));
        }
    }
}
