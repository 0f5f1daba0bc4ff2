//! Where every input comes from and how a problem with it is reported: [`InputError`] names
//! the file and, where there is one, the line and the field — or the command-line flag — so
//! that the user can find what to fix. Files are read only when they are regular files and
//! only up to a size cap, so that a FIFO, a device or a huge file is refused instead of
//! blocking or exhausting memory.

use std::fmt;
use std::io::Read;
use std::path::Path;

/// The largest scenario file or corpus entry pokesim reads.
pub const MAX_SCENARIO_BYTES: u64 = 16 << 20;
/// The largest failure artifact pokesim reads (a long run's decision list is big): room for
/// the most decisions an artifact holds (`artifact::MAX_DECISIONS`, 2²³) at their longest
/// (`[4294967295,4294967295],`, 24 bytes: 192 MiB) and a scenario of
/// [`MAX_SCENARIO_BYTES`] escaped in JSON, and no more, so that what a file can make pokesim
/// hold in memory stays proportional to a sane artifact.
pub const MAX_ARTIFACT_BYTES: u64 = 256 << 20;
/// The largest shard result (or artifact among the inputs of `pokesim merge`) pokesim reads.
pub(crate) const MAX_SHARD_BYTES: u64 = 512 << 20;

/// Where a value of a scenario came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// A line of the scenario file.
    Line(usize),
    /// A command-line flag.
    Flag(&'static str),
    /// Nobody gave it: the default.
    Default,
}

/// A problem with an input, located.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InputError {
    /// The file (or `command line`).
    pub file: String,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// The field (`cpus`, `workload.rounds`, `kprobes[1]`), when known.
    pub field: Option<String>,
    /// The command-line flag that set the value, when it came from one.
    pub flag: Option<&'static str>,
    /// What is wrong.
    pub message: String,
}

impl InputError {
    /// An error about a whole file (cannot be read, is not a regular file, ...).
    pub fn file(file: impl Into<String>, message: impl Into<String>) -> Self {
        Self { file: file.into(), line: None, field: None, flag: None, message: message.into() }
    }

    /// An error about `field` of `file`, located by where the value came from.
    pub fn at(file: &str, origin: &Origin, field: impl Into<String>, message: impl Into<String>) -> Self {
        let (line, flag) = match origin {
            Origin::Line(l) => (Some(*l), None),
            Origin::Flag(f) => (None, Some(*f)),
            Origin::Default => (None, None),
        };
        Self { file: file.into(), line, field: Some(field.into()), flag, message: message.into() }
    }

    /// An error about `field` (if known) of a JSON file pokesim wrote (a shard result, of a
    /// campaign or of a search), which has no lines to point at.
    pub(crate) fn in_json(file: &str, field: Option<&str>, message: String) -> Self {
        Self { field: field.map(str::to_string), ..Self::file(file, message) }
    }

    /// Shards (of a campaign or of a search) merge only under the pokesim that ran them:
    /// an error naming `pokesim_version` unless `written_by` is this pokesim's version.
    pub(crate) fn unless_same_pokesim(file: &str, written_by: &str) -> Result<(), Self> {
        let ours = env!("CARGO_PKG_VERSION");
        if written_by == ours {
            return Ok(());
        }
        let msg =
            format!("written by pokesim {written_by}; shards merge only under the pokesim that ran them ({ours})");
        Err(Self::in_json(file, Some("pokesim_version"), msg))
    }
}

impl fmt::Display for InputError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(flag) = self.flag {
            return write!(f, "{flag}: {}", self.message);
        }
        write!(f, "{}", self.file)?;
        if let Some(l) = self.line {
            write!(f, ":{l}")?;
        }
        if let Some(field) = &self.field {
            write!(f, ": field `{field}`")?;
        }
        write!(f, ": {}", self.message)
    }
}

impl std::error::Error for InputError {}

/// Opens a regular file of at most `cap` bytes (a reader must still stop at `cap`: the file
/// may grow).
pub(crate) fn open_input(path: &Path, cap: u64) -> Result<std::fs::File, InputError> {
    let name = path.display().to_string();
    let meta = std::fs::metadata(path).map_err(|e| InputError::file(&name, e.to_string()))?;
    if !meta.is_file() {
        let what = if meta.is_dir() { "a directory" } else { "not a regular file (a FIFO, socket or device)" };
        return Err(InputError::file(&name, format!("is {what}; pokesim reads regular files only")));
    }
    if meta.len() > cap {
        return Err(InputError::file(&name, format!("is {} bytes, more than the {cap} pokesim reads", meta.len())));
    }
    std::fs::File::open(path).map_err(|e| InputError::file(&name, e.to_string()))
}

/// Reads a regular file of at most `cap` bytes as UTF-8.
pub(crate) fn read_input(path: &Path, cap: u64) -> Result<String, InputError> {
    let name = path.display().to_string();
    let file = open_input(path, cap)?;
    let len = file.metadata().map_or(0, |m| m.len());
    let mut bytes = Vec::with_capacity(len.min(cap) as usize);
    file.take(cap + 1).read_to_end(&mut bytes).map_err(|e| InputError::file(&name, e.to_string()))?;
    if bytes.len() as u64 > cap {
        return Err(InputError::file(&name, format!("grew past the {cap} bytes pokesim reads")));
    }
    String::from_utf8(bytes).map_err(|e| InputError::file(&name, format!("is not UTF-8 text: {e}")))
}
