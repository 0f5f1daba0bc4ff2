//! The compile cache (issue 24: "a campaign compiles once"): the content hash of everything an
//! image is built from, the cache directory, and one file per image in a small binary format
//! of our own, written atomically (temp file in the same directory, then `rename`) and never
//! through a symlink.

use crate::toolchain::{linker_script, CFLAGS, LDFLAGS};
use crate::{Build, BuildError};
use sim_core::kernel_image::{KernelImage, LineRow};
use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use xxhash_rust::xxh3::{xxh3_128, xxh3_64, Xxh3};

/// First bytes of a cache entry; the digit is the format's version.
const MAGIC: &[u8; 16] = b"POKESIM-C-IMG-01";

fn io_error(path: &Path, e: impl std::fmt::Display) -> BuildError {
    BuildError::Io { path: path.display().to_string(), message: e.to_string() }
}

/// Reads `path`, or an `Io` error naming it.
pub fn read(path: &Path) -> Result<Vec<u8>, BuildError> {
    fs::read(path).map_err(|e| io_error(path, e))
}

/// A length-framed hasher: `field(tag, bytes)` can never run into the next field.
struct Hasher(Xxh3);

impl Hasher {
    fn field(&mut self, tag: &str, bytes: &[u8]) {
        for part in [tag.as_bytes(), bytes] {
            self.0.update(&(part.len() as u64).to_le_bytes());
            self.0.update(part);
        }
    }
}

/// Every regular file under `dir`, as (path relative to `dir`, bytes), sorted by path.
fn headers(dir: &Path) -> Result<Vec<(String, Vec<u8>)>, BuildError> {
    let mut out = Vec::new();
    let mut todo = vec![PathBuf::new()];
    while let Some(rel) = todo.pop() {
        let abs = dir.join(&rel);
        for entry in fs::read_dir(&abs).map_err(|e| io_error(&abs, e))? {
            let entry = entry.map_err(|e| io_error(&abs, e))?;
            let path = entry.path();
            let meta = fs::metadata(&path).map_err(|e| io_error(&path, e))?;
            if meta.is_dir() {
                todo.push(rel.join(entry.file_name()));
            } else if meta.is_file() {
                out.push((rel.join(entry.file_name()).display().to_string(), read(&path)?));
            }
        }
    }
    out.sort();
    Ok(out)
}

/// The content hash, hex: xxh3-128 over the source, the runtime, every file of the include
/// directory, the defines, clang's and ld's flags, the linker script (the address map) and
/// `clang --version` and `ld --version`. Paths are not in it: moving a file keeps its hash.
pub fn content_hash(b: &Build<'_>, tool_versions: &str) -> Result<String, BuildError> {
    let mut h = Hasher(Xxh3::new());
    h.field("format", MAGIC);
    h.field("source", &read(b.source)?);
    h.field("runtime", &read(b.runtime)?);
    for (name, bytes) in headers(b.include)? {
        h.field("header", name.as_bytes());
        h.field("header-bytes", &bytes);
    }
    for d in b.defines {
        h.field("define", d.as_bytes());
    }
    h.field("cflags", CFLAGS.join(" ").as_bytes());
    h.field("ldflags", LDFLAGS.join(" ").as_bytes());
    h.field("script", linker_script().as_bytes());
    h.field("tools", tool_versions.as_bytes());
    Ok(format!("{:032x}", h.0.digest128()))
}

/// The cache entry's name: the content hash and the paths as given (they reach the image
/// through `__FILE__` and the line table's file names, so an entry is only reused for them).
pub fn entry_name(b: &Build<'_>, hash: &str) -> String {
    let mut h = Hasher(Xxh3::new());
    h.field("hash", hash.as_bytes());
    for p in [b.source, b.include, b.runtime] {
        h.field("path", p.as_os_str().as_encoded_bytes());
    }
    format!("{:032x}.img", h.0.digest128())
}

/// The cache directory: `$POKESIM_CACHE_DIR`, else `$XDG_CACHE_HOME/pokesim/c`, else
/// `$HOME/.cache/pokesim/c`, else `pokesim-c` in the system's temporary directory — the first
/// that exists or can be created.
pub fn default_dir() -> PathBuf {
    let var = |name: &str| std::env::var_os(name).filter(|v| !v.is_empty()).map(PathBuf::from);
    let candidates = [
        var("POKESIM_CACHE_DIR"),
        var("XDG_CACHE_HOME").filter(|p| p.is_absolute()).map(|p| p.join("pokesim/c")),
        var("HOME").map(|p| p.join(".cache/pokesim/c")),
    ];
    for dir in candidates.into_iter().flatten() {
        if fs::create_dir_all(&dir).is_ok() {
            return dir;
        }
    }
    std::env::temp_dir().join("pokesim-c")
}

/// A name no other thread or process of this machine uses at the same time.
pub fn unique(prefix: &str) -> String {
    static SEQ: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), SEQ.fetch_add(1, Ordering::Relaxed))
}

/// Refuses a destination that exists and is not a regular file (a symlink above all).
fn check_regular(path: &Path) -> Result<bool, BuildError> {
    match fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_file() => Ok(true),
        Ok(_) => Err(io_error(path, "exists and is not a regular file: refusing to use it as a cache entry")),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_error(path, e)),
    }
}

/// The image cached at `path`, with `source` as given; `None` when there is none or it is
/// unreadable as an entry (truncated, another format): then it is rebuilt and replaced.
pub fn load(path: &Path, source: &str) -> Result<Option<KernelImage>, BuildError> {
    if !check_regular(path)? {
        return Ok(None);
    }
    let bytes = read(path)?;
    Ok(decode(&bytes).map(|mut img| {
        img.source = source.to_string();
        img
    }))
}

/// Writes `img` to `path` atomically.
pub fn store(path: &Path, img: &KernelImage) -> Result<(), BuildError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(unique(".tmp-entry"));
    let result = (|| {
        let mut f = fs::OpenOptions::new().write(true).create_new(true).open(&tmp).map_err(|e| io_error(&tmp, e))?;
        f.write_all(&encode(img)).and_then(|()| f.sync_all()).map_err(|e| io_error(&tmp, e))?;
        check_regular(path)?;
        fs::rename(&tmp, path).map_err(|e| io_error(path, e))
    })();
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_le_bytes());
    out.extend_from_slice(bytes);
}

/// The entry's bytes: magic, fields (each length-prefixed), then xxh3-64 of all before.
pub fn encode(img: &KernelImage) -> Vec<u8> {
    let mut out = MAGIC.to_vec();
    put(&mut out, img.source.as_bytes());
    put(&mut out, img.hash.as_bytes());
    put(&mut out, &img.code);
    put(&mut out, &img.data);
    out.extend_from_slice(&(img.symbols.len() as u64).to_le_bytes());
    for (name, addr) in &img.symbols {
        put(&mut out, name.as_bytes());
        out.extend_from_slice(&addr.to_le_bytes());
    }
    out.extend_from_slice(&(img.lines.len() as u64).to_le_bytes());
    for r in &img.lines {
        out.extend_from_slice(&r.addr.to_le_bytes());
        put(&mut out, r.file.as_bytes());
        out.extend_from_slice(&u64::from(r.line).to_le_bytes());
        put(&mut out, r.function.as_bytes());
    }
    let sum = xxh3_64(&out);
    out.extend_from_slice(&sum.to_le_bytes());
    out
}

/// A reader over an entry's fields.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn bytes(&mut self, n: u64) -> Option<&'a [u8]> {
        let n = usize::try_from(n).ok().filter(|&n| n <= self.0.len())?;
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u64(&mut self) -> Option<u64> {
        self.bytes(8).map(|b| u64::from_le_bytes(b.try_into().unwrap_or([0; 8])))
    }
    fn vec(&mut self) -> Option<Vec<u8>> {
        let n = self.u64()?;
        self.bytes(n).map(<[u8]>::to_vec)
    }
    fn string(&mut self) -> Option<String> {
        String::from_utf8(self.vec()?).ok()
    }
}

/// The image of an entry's bytes, if they are one.
pub fn decode(bytes: &[u8]) -> Option<KernelImage> {
    let body = bytes.strip_prefix(MAGIC.as_slice()).filter(|b| b.len() >= 8)?;
    let (content, sum) = bytes.split_at(bytes.len() - 8);
    if xxh3_64(content).to_le_bytes() != sum {
        return None;
    }
    let mut f = Fields(&body[..body.len() - 8]);
    let (source, hash, code, data) = (f.string()?, f.string()?, f.vec()?, f.vec()?);
    let mut symbols = BTreeMap::new();
    for _ in 0..f.u64()? {
        let name = f.string()?;
        symbols.insert(name, f.u64()?);
    }
    let mut lines = Vec::new();
    for _ in 0..f.u64()? {
        let addr = f.u64()?;
        let file = f.string()?;
        let line = u32::try_from(f.u64()?).ok()?;
        lines.push(LineRow { addr, file, line, function: f.string()? });
    }
    f.0.is_empty().then_some(KernelImage { source, hash, code, data, symbols, lines })
}

/// xxh3-128 of `bytes`, hex (for tests comparing images).
pub fn digest(bytes: &[u8]) -> String {
    format!("{:032x}", xxh3_128(bytes))
}
