//! A scenario's protocol as C (issue 24, DESIGN.md §2.15): `protocol = { version = "linux-5.5",
//! source = "my-alternative.c" }` (or `--protocol-source FILE`) names a file of the user's;
//! `protocol = { version = "linux-5.5", c = true }` (or `--protocol-c`) the built-in C file of
//! that version (`c/protocols/`, embedded in the binary, as `pokesim program --c` prints it).
//!
//! The file is built by crate `c-protocol` against pokesim's header and runtime, which are
//! embedded too (so an installed binary needs no checkout), with the run's mutants as
//! `-DPOKESIM_MUTANT_<NAME>` switches and `-DCONFIG_KPROBES` when the kernel configuration has
//! kprobes. A mutant whose switch the file does not mention is refused, never ignored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use sim_core::compiled::Compiled;
use sim_core::{Mutant, Protocol, RunConfig};

/// `c/include/pokesim.h`: the kernel names protocol files are written against.
pub const HEADER: &str = include_str!("../../c/include/pokesim.h");
/// `c/runtime/pokesim-rt.c`: `memcpy`, `bsearch`, `text_mutex`, ... linked with every file.
pub const RUNTIME: &str = include_str!("../../c/runtime/pokesim-rt.c");

/// Where a run's protocol comes from when it is C.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ProtocolSource {
    /// A file of the user's (an absolute path).
    File(PathBuf),
    /// The built-in C file of the scenario's protocol version.
    Builtin,
}

/// The built-in C file of `protocol`, if it has one.
pub fn builtin(protocol: Protocol) -> Option<&'static str> {
    BUILTIN.iter().find(|(p, _)| *p == protocol).map(|&(_, text)| text)
}

/// Every version written as C, one row each.
const BUILTIN: &[(Protocol, &str)] = &[
    (Protocol::Linux54, include_str!("../../c/protocols/linux-5.4.c")),
    (Protocol::Seed, include_str!("../../c/protocols/seed.c")),
    (Protocol::Linux55, include_str!("../../c/protocols/linux-5.5.c")),
    (Protocol::Linux56, include_str!("../../c/protocols/linux-5.6.c")),
    (Protocol::Linux60, include_str!("../../c/protocols/linux-6.0.c")),
    (Protocol::Linux616, include_str!("../../c/protocols/linux-6.16.c")),
];

/// The `-D` switch of mutant `m`: `POKESIM_MUTANT_` and its name upper-snaked.
pub fn mutant_switch(m: Mutant) -> String {
    format!("POKESIM_MUTANT_{}", m.name().to_ascii_uppercase().replace('-', "_"))
}

/// Builds `source` for `config` (its protocol version, mutants and kernel configuration).
/// `Err` is the message (clang's diagnostics, the missing entry point, ...).
pub fn load(source: &ProtocolSource, config: &RunConfig) -> Result<Arc<Compiled>, String> {
    let support = support_dir()?;
    let (path, text) = match source {
        ProtocolSource::File(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("{}: {e}", p.display()))?;
            (p.clone(), text)
        }
        ProtocolSource::Builtin => {
            let text = builtin(config.protocol)
                .ok_or_else(|| format!("{} has no built-in C file yet (built in: {})", config.protocol, names()))?;
            let path = support.join("protocols").join(format!("{}.c", config.protocol.name()));
            write_if_changed(&path, text)?;
            (path, text.to_string())
        }
    };
    let mut defines = Vec::new();
    for &m in &config.mutants {
        let switch = mutant_switch(m);
        if !text.contains(&switch) {
            return Err(format!(
                "{}: mutant {m} has no switch in this file (`#ifdef {switch}` at the place it edits); it would change nothing",
                path.display()
            ));
        }
        defines.push(switch);
    }
    if config.kernel.kprobes {
        defines.push("CONFIG_KPROBES".into());
    }
    let build = c_protocol::Build {
        source: &path,
        defines: &defines,
        include: &support.join("include"),
        runtime: &support.join("runtime/pokesim-rt.c"),
    };
    let image = c_protocol::build(&build).map_err(|e| e.to_string())?;
    Compiled::new(image, *source == ProtocolSource::Builtin).map_err(|e| e.to_string())
}

/// What `mutants` changed in a compiled protocol: each one's switch and the lines of the file
/// that name it (the built-in file of `protocol`, or the user's file as it is now — a replay
/// has checked its hash).
pub fn switches(
    compiled: &Compiled,
    protocol: Protocol,
    mutants: &[Mutant],
) -> Vec<sim_core::protocol::change::Change> {
    let text = match compiled.builtin {
        true => builtin(protocol).map(str::to_string),
        false => std::fs::read_to_string(&compiled.image.source).ok(),
    }
    .unwrap_or_default();
    let file = match compiled.builtin {
        true => format!("{}.c", protocol.name()),
        false => compiled.image.source.rsplit('/').next().unwrap_or(&compiled.image.source).to_string(),
    };
    mutants
        .iter()
        .map(|&mutant| {
            let switch = mutant_switch(mutant);
            let lines = text.lines().enumerate().filter(|(_, l)| l.contains(&switch)).map(|(i, _)| i + 1).collect();
            sim_core::protocol::change::Change::Switch { mutant, file: file.clone(), switch, lines }
        })
        .collect()
}

/// The versions with a built-in C file.
pub fn names() -> String {
    BUILTIN.iter().map(|(p, _)| p.name()).collect::<Vec<_>>().join(", ")
}

/// The header and runtime written out for clang, in a directory named by their content (so
/// two binaries with different headers never share one).
fn support_dir() -> Result<PathBuf, String> {
    let hash = xxhash_rust::xxh3::xxh3_64(format!("{HEADER}\0{RUNTIME}").as_bytes());
    let dir = c_protocol::cache::default_dir().join(format!("support-{hash:016x}"));
    write_if_changed(&dir.join("include/pokesim.h"), HEADER)?;
    write_if_changed(&dir.join("runtime/pokesim-rt.c"), RUNTIME)?;
    Ok(dir)
}

/// Writes `text` to `path` unless it already holds exactly that: through a temporary file in
/// the same directory and a rename, never through a link or onto a special file.
fn write_if_changed(path: &Path, text: &str) -> Result<(), String> {
    let err = |e: std::io::Error| format!("{}: {e}", path.display());
    match std::fs::symlink_metadata(path) {
        Ok(m) if !m.file_type().is_file() => {
            return Err(format!("{}: exists and is not a regular file; refusing to replace it", path.display()))
        }
        Ok(_) if std::fs::read_to_string(path).is_ok_and(|t| t == text) => return Ok(()),
        _ => {}
    }
    let dir = path.parent().expect("a file in a directory");
    std::fs::create_dir_all(dir).map_err(err)?;
    let tmp = dir.join(format!(".{}", c_protocol::cache::unique("w")));
    std::fs::write(&tmp, text).map_err(err)?;
    std::fs::rename(&tmp, path).map_err(err)
}

impl std::fmt::Display for ProtocolSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProtocolSource::File(p) => write!(f, "{}", p.display()),
            ProtocolSource::Builtin => f.write_str("the built-in C file"),
        }
    }
}
