//! Files pokesim writes (artifacts, shard results, traces, reports, corpus entries), and the
//! rules that keep a write from damaging anything else on the host:
//!
//! - a target is written only if it does not exist or is a regular file that is not
//!   read-only. What it is is read with `symlink_metadata`, never following a link, so a
//!   device, FIFO, socket, symbolic link or directory is refused (the user named something
//!   pokesim must not replace);
//! - no directory is created implicitly: a missing parent is refused, naming it. The one
//!   exception is a directory that is pokesim's own output location — the artifact
//!   directory, a corpus directory given to `--add` — which [`ensure_dir`] creates, but only
//!   that last component, never its parents;
//! - a regular file is replaced atomically: the contents go to a fresh temporary file in the
//!   same directory (created exclusively, so two writers never share one, and removed on
//!   any failure), are flushed to disk, and the temporary file is renamed over the target
//!   after the target has been checked again, so a failed or interrupted write never leaves
//!   a truncated file where a reader expects a whole one;
//! - [`Mode::CreateNew`] refuses a target that already exists (a corpus entry without
//!   `--force`), atomically too: the finished temporary file is hard-linked to the target,
//!   which fails if the target appeared in the meantime.
//!
//! `-` (stdout) is the command line's business (`pokesim trace -o -`), see [`is_stdout`].

use std::fs::{File, OpenOptions};
use std::io::{Error, ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// What a write may do to an existing target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Replace a regular file (or create the target).
    Replace,
    /// Create the target; an existing one is refused.
    CreateNew,
}

/// True for the path `-`, which a command that writes one document takes as stdout.
pub fn is_stdout(path: &Path) -> bool {
    path.as_os_str() == "-"
}

/// Writes `contents` to `path` atomically, replacing only a regular file (see the module
/// documentation); its directory must exist.
pub fn write_atomic(path: &Path, contents: &[u8]) -> std::io::Result<()> {
    write_file(path, contents, Mode::Replace)
}

/// Writes `contents` to `path` atomically under `mode`; its directory must exist.
pub fn write_file(path: &Path, contents: &[u8], mode: Mode) -> std::io::Result<()> {
    check_target(path, mode)?;
    let dir = parent_of(path);
    check_parent(&dir)?;
    let (tmp, mut file) = temp_file(&dir, path)?;
    let place = |()| match mode {
        Mode::Replace => std::fs::rename(&tmp, path),
        Mode::CreateNew => link_new(&tmp, path),
    };
    let written = file.write_all(contents).and_then(|()| file.sync_all()).and_then(|()| check_target(path, mode));
    let written = written.and_then(place);
    drop(file);
    if written.is_err() || (mode == Mode::CreateNew && tmp.exists()) {
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Refuses, before any work, a target [`write_atomic`] would refuse: one that exists and is
/// not a regular file, or whose directory does not exist.
pub fn check_writable(path: &Path) -> std::io::Result<()> {
    check_target(path, Mode::Replace)?;
    check_parent(&parent_of(path))
}

/// Gives the finished `tmp` the name `path`, which must not exist: a hard link, which the
/// kernel refuses if `path` appeared meanwhile; on a file system without hard links, a rename
/// right after checking again.
fn link_new(tmp: &Path, path: &Path) -> std::io::Result<()> {
    match std::fs::hard_link(tmp, path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == ErrorKind::AlreadyExists => Err(refused_existing(path, e)),
        Err(_) => check_target(path, Mode::CreateNew).and_then(|()| std::fs::rename(tmp, path)),
    }
}

/// Makes sure `dir` is a directory pokesim can write into: an existing directory (a link to
/// one is fine: the user named it), or a missing one whose parent exists, which is created
/// (that component only).
pub fn ensure_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(ErrorKind::InvalidInput, format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => {
            check_parent(&parent_of(dir))?;
            match std::fs::create_dir(dir) {
                Err(e) if e.kind() != ErrorKind::AlreadyExists => Err(e),
                _ => ensure_existing_dir(dir),
            }
        }
        Err(e) => Err(e),
    }
}

/// Refuses `dir` unless it could be made a directory by [`ensure_dir`], without creating
/// anything: it is a directory, or it is missing and its parent is one.
pub fn check_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(ErrorKind::InvalidInput, format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => check_parent(&parent_of(dir)),
        Err(e) => Err(e),
    }
}

fn ensure_existing_dir(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        _ => Err(Error::new(ErrorKind::InvalidInput, format!("{} is not a directory", dir.display()))),
    }
}

/// The directory `path` is in (`.` for a bare file name).
fn parent_of(path: &Path) -> PathBuf {
    match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => PathBuf::from("."),
    }
}

/// Refuses a parent that is missing or not a directory, naming it.
fn check_parent(dir: &Path) -> std::io::Result<()> {
    match std::fs::metadata(dir) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(Error::new(ErrorKind::InvalidInput, format!("{} is not a directory", dir.display()))),
        Err(e) if e.kind() == ErrorKind::NotFound => Err(Error::new(
            ErrorKind::NotFound,
            format!("the directory {} does not exist (pokesim creates no parent directories)", dir.display()),
        )),
        Err(e) => Err(Error::new(e.kind(), format!("{}: {e}", dir.display()))),
    }
}

/// Refuses a target that exists and is not a regular file (never following a link), or that
/// exists at all under [`Mode::CreateNew`].
fn check_target(path: &Path, mode: Mode) -> std::io::Result<()> {
    let meta = match std::fs::symlink_metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    if let Some(what) = not_regular(&meta.file_type()) {
        let msg = format!("is {what}; pokesim replaces regular files only");
        return Err(Error::new(ErrorKind::InvalidInput, msg));
    }
    if meta.permissions().readonly() {
        return Err(Error::new(ErrorKind::PermissionDenied, "is read-only; pokesim does not replace it"));
    }
    match mode {
        Mode::Replace => Ok(()),
        Mode::CreateNew => Err(refused_existing(path, Error::from(ErrorKind::AlreadyExists))),
    }
}

/// What a file that is not a regular file is, for messages; `None` for a regular file.
fn not_regular(t: &std::fs::FileType) -> Option<&'static str> {
    use std::os::unix::fs::FileTypeExt;
    if t.is_file() {
        None
    } else if t.is_symlink() {
        Some("a symbolic link")
    } else if t.is_dir() {
        Some("a directory")
    } else if t.is_fifo() {
        Some("a FIFO")
    } else if t.is_socket() {
        Some("a socket")
    } else if t.is_block_device() || t.is_char_device() {
        Some("a device")
    } else {
        Some("not a regular file")
    }
}

fn refused_existing(path: &Path, e: Error) -> Error {
    if e.kind() == ErrorKind::AlreadyExists {
        Error::new(ErrorKind::AlreadyExists, format!("{} already exists", path.display()))
    } else {
        e
    }
}

/// A new temporary file next to `target`, created exclusively: its name carries the process
/// and a per-process counter, and `create_new` fails rather than open a file someone else
/// made, in which case the next name is tried.
fn temp_file(dir: &Path, target: &Path) -> std::io::Result<(PathBuf, File)> {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let stem = target.file_name().map_or_else(|| "out".into(), |n| n.to_string_lossy().into_owned());
    for _ in 0..64 {
        let n = NEXT.fetch_add(1, Ordering::Relaxed);
        let tmp = dir.join(format!(".{stem}.tmp{}-{n}", std::process::id()));
        match OpenOptions::new().write(true).create_new(true).open(&tmp) {
            Ok(f) => return Ok((tmp, f)),
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(Error::new(e.kind(), format!("{}: {e}", tmp.display()))),
        }
    }
    Err(Error::new(ErrorKind::AlreadyExists, format!("no free temporary name in {}", dir.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(name: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("pokesim-output-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&d);
        std::fs::create_dir_all(&d).unwrap();
        d
    }

    #[test]
    fn replaces_regular_files_and_refuses_the_rest() {
        let d = scratch("unit");
        let f = d.join("a.txt");
        write_atomic(&f, b"one").unwrap();
        write_atomic(&f, b"two").unwrap();
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        assert!(write_file(&f, b"three", Mode::CreateNew).unwrap_err().to_string().contains("already exists"));
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        std::os::unix::fs::symlink(&f, d.join("link")).unwrap();
        assert!(write_atomic(&d.join("link"), b"x").unwrap_err().to_string().contains("symbolic link"));
        assert!(write_atomic(&d, b"x").unwrap_err().to_string().contains("directory"));
        assert!(write_atomic(&d.join("no/such/x"), b"x").unwrap_err().to_string().contains("does not exist"));
        let mut ro = std::fs::metadata(&f).unwrap().permissions();
        ro.set_readonly(true);
        std::fs::set_permissions(&f, ro).unwrap();
        assert!(write_atomic(&f, b"x").unwrap_err().to_string().contains("read-only"));
        assert_eq!(std::fs::read(&f).unwrap(), b"two");
        let left: Vec<_> = std::fs::read_dir(&d).unwrap().map(|e| e.unwrap().file_name()).collect();
        assert_eq!(left.len(), 2, "no temporary file left behind: {left:?}");
        let _ = std::fs::remove_dir_all(&d);
    }
}
