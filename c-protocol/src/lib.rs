//! # c-protocol — a protocol written in C, built into a [`KernelImage`] (issue 24, DESIGN §2.15)
//!
//! A scenario's `[protocol] source = "file.c"` is compiled here the way the C ABI fixes it:
//! clang 14 turns the file and pokesim's runtime (`memcpy`, `bsearch`, `text_mutex`, ...) into
//! freestanding x86-64 objects ([`toolchain::CFLAGS`]); GNU ld links them with a generated
//! script at the fixed guest addresses of [`sim_core::kernel_image`] (every kernel service on
//! its slot of the service page); and the linked executable is read back — code, data, symbols,
//! DWARF line table — into the [`KernelImage`] the machine maps and traces cite.
//!
//! Builds are cached by content hash ([`cache`]): a campaign compiles once, and a second
//! [`build`] with the same inputs reads the cached image without running clang.
//!
//! Modules: [`toolchain`] (clang, ld, the linker script), [`elf`] and [`dwarf`] (readers for
//! the linked file), [`image`] (the file into a `KernelImage`), [`cache`].

pub mod cache;
pub mod dwarf;
pub mod elf;
pub mod image;
pub mod toolchain;

use sim_core::kernel_image::KernelImage;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// What to build: a protocol file, its `-D` defines, and where the header and runtime are.
#[derive(Clone, Copy, Debug)]
pub struct Build<'a> {
    /// The protocol's C file, as the scenario names it.
    pub source: &'a Path,
    /// Macros, each passed as `-D<define>` (`POKESIM_MUTANT_NO_SYNC_AFTER_INT3`, `CONFIG_KPROBES`, `N=2`).
    pub defines: &'a [String],
    /// The directory of `pokesim.h` (`-I`).
    pub include: &'a Path,
    /// pokesim's runtime, `pokesim-rt.c`, linked with every protocol.
    pub runtime: &'a Path,
}

/// Why a protocol did not build. `Display` is the message a user sees.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BuildError {
    /// clang rejected a file; `messages` are its diagnostics verbatim (`file:line:col: error: ...`).
    Compile {
        /// The file clang compiled, as given.
        source: String,
        /// clang's diagnostics.
        messages: String,
    },
    /// ld could not link the objects (an undefined symbol is named, with ld's own messages).
    Link {
        /// What went wrong.
        messages: String,
    },
    /// The code or the data does not fit its region of the guest address map.
    TooLarge {
        /// Which region: code (`.text` + `.rodata`) or data (`.data` + `.bss`).
        what: &'static str,
        /// Bytes needed.
        size: u64,
        /// Bytes the region has.
        max: u64,
    },
    /// A tool is missing or failed in a way that is not the file's fault: an environment error.
    Tool {
        /// clang or ld.
        tool: &'static str,
        /// What happened.
        message: String,
    },
    /// A file could not be read or written.
    Io {
        /// The file.
        path: String,
        /// What happened.
        message: String,
    },
}

// Display by hand, not `thiserror`: its derive takes a field called `source` for the error's
// cause, and `Compile { source }` (the file's name) is the API.
impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Compile { source, messages } => write!(f, "cannot compile {source}:\n{messages}"),
            BuildError::Link { messages } => write!(f, "cannot link the protocol:\n{messages}"),
            BuildError::TooLarge { what, size, max } => {
                write!(f, "the protocol's {what} is too large: {size} bytes, at most {max} fit")
            }
            BuildError::Tool { tool, message } => write!(f, "{tool}: {message}"),
            BuildError::Io { path, message } => write!(f, "{path}: {message}"),
        }
    }
}

impl std::error::Error for BuildError {}

static BUILDS_RUN: AtomicU64 = AtomicU64::new(0);

/// How many times this process ran the compiler for a [`build`] (cache misses).
pub fn builds_run() -> u64 {
    BUILDS_RUN.load(Ordering::Relaxed)
}

/// Builds `b` into a [`KernelImage`], from the cache in [`cache::default_dir`] if an entry for
/// the same inputs is there.
pub fn build(b: &Build<'_>) -> Result<KernelImage, BuildError> {
    build_in(b, &cache::default_dir())
}

/// [`build`] with the cache in `cache_dir` (created if missing).
pub fn build_in(b: &Build<'_>, cache_dir: &Path) -> Result<KernelImage, BuildError> {
    let version = toolchain::tool_versions()?;
    let hash = cache::content_hash(b, &version)?;
    std::fs::create_dir_all(cache_dir)
        .map_err(|e| BuildError::Io { path: cache_dir.display().to_string(), message: e.to_string() })?;
    let entry = cache_dir.join(cache::entry_name(b, &hash));
    let source = b.source.display().to_string();
    if let Some(img) = cache::load(&entry, &source)? {
        return Ok(img);
    }
    let work = cache_dir.join(cache::unique("build"));
    std::fs::create_dir(&work)
        .map_err(|e| BuildError::Io { path: work.display().to_string(), message: e.to_string() })?;
    let img = compile_and_link(b, &work, &source, &hash);
    let _ = std::fs::remove_dir_all(&work);
    let img = img?;
    cache::store(&entry, &img)?;
    Ok(img)
}

/// The uncached build, in the private directory `work`.
fn compile_and_link(b: &Build<'_>, work: &Path, source: &str, hash: &str) -> Result<KernelImage, BuildError> {
    BUILDS_RUN.fetch_add(1, Ordering::Relaxed);
    let (obj, rt_obj) = (work.join("protocol.o"), work.join("runtime.o"));
    toolchain::compile(b.source, b.include, b.defines, &obj)?;
    toolchain::compile(b.runtime, b.include, b.defines, &rt_obj)?;
    let runtime = b.runtime.display().to_string();
    toolchain::check_services(&[(&obj, source), (&rt_obj, &runtime)])?;
    let script = work.join("pokesim.ld");
    std::fs::write(&script, toolchain::linker_script())
        .map_err(|e| BuildError::Io { path: script.display().to_string(), message: e.to_string() })?;
    let elf = work.join("protocol.elf");
    toolchain::link(&script, &[&obj, &rt_obj], &elf)?;
    let given = image::GivenPaths::default().file(b.source).file(b.runtime).dir(b.include);
    image::load(&cache::read(&elf)?, source, hash, &given)
}
