//! What a command prints and how it ends: the exit statuses, the failures that are not
//! verdicts, and stdout writing that survives a closed pipe (`pokesim run … | head`).

use std::io::Write;
use std::path::Path;
use std::process::ExitCode;

use scenarios::artifact::ReplayError;
use scenarios::input::InputError;
use scenarios::terminal::{printable, Escape};
use serde::Serialize;
use sim_core::SimError;

/// The version of every JSON document pokesim prints (its `format` field).
pub const JSON_FORMAT: u32 = 1;

/// How a command ends. Documented in `pokesim --help`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    /// 0: the outcome is what the scenario expects (`expect` met, replay reproduced, shrink
    /// succeeded, every row as expected).
    Expected,
    /// 1: an unexpected outcome (a violation where a pass was expected, or the reverse).
    Unexpected,
    /// 4: no verdict, and nothing was unexpected: a run spent its tick budget before reaching
    /// a verdict, a campaign finished no run, or a search was cut (its limit, or executions
    /// that spent their tick budget).
    BudgetExhausted,
}

impl Status {
    /// The process exit code.
    pub fn code(self) -> ExitCode {
        ExitCode::from(match self {
            Status::Expected => 0,
            Status::Unexpected => 1,
            Status::BudgetExhausted => 4,
        })
    }

    /// The worse of two statuses (unexpected beats exhausted beats expected).
    pub fn worst(self, other: Status) -> Status {
        use Status::*;
        match (self, other) {
            (Unexpected, _) | (_, Unexpected) => Unexpected,
            (BudgetExhausted, _) | (_, BudgetExhausted) => BudgetExhausted,
            _ => Expected,
        }
    }
}

/// Why a command failed without a verdict.
#[derive(Debug)]
pub enum Failure {
    /// Bad input: usage, a file, a stale artifact (exit 2).
    Bad(String),
    /// The simulator failed or contradicted itself (exit 3).
    Internal(String),
    /// stdout was closed (a pipe reader went away): stop quietly (exit 141, as SIGPIPE).
    BrokenPipe,
}

impl Failure {
    /// Prints the failure on stderr and returns the exit code.
    pub fn exit(self) -> ExitCode {
        match self {
            Failure::Bad(m) => {
                warn(&format!("error: {m}"));
                ExitCode::from(2)
            }
            Failure::Internal(m) => {
                warn(&format!("internal error (a pokesim bug; please report it): {m}"));
                ExitCode::from(3)
            }
            Failure::BrokenPipe => ExitCode::from(141),
        }
    }
}

impl From<SimError> for Failure {
    fn from(e: SimError) -> Self {
        match e {
            SimError::Invalid { .. } | SimError::StaleDecisions(_) => Failure::Bad(e.to_string()),
            SimError::Cpu(_) | SimError::Internal(_) => Failure::Internal(e.to_string()),
        }
    }
}

impl From<InputError> for Failure {
    fn from(e: InputError) -> Self {
        Failure::Bad(e.to_string())
    }
}

impl From<ReplayError> for Failure {
    fn from(e: ReplayError) -> Self {
        match e {
            ReplayError::Stale(e) => Failure::Bad(e.to_string()),
            ReplayError::Sim(e) => e.into(),
        }
    }
}

/// Writes a line to stdout, its control characters escaped ([`printable`]); a closed pipe
/// becomes [`Failure::BrokenPipe`].
pub fn line(text: impl std::fmt::Display) -> Result<(), Failure> {
    emit_line(&printable(&text.to_string(), Escape::Text))
}

/// Writes one of pokesim's own embedded files (a C source) to stdout as it is: tabs and all,
/// nothing escaped (it comes from the binary, not from input).
pub fn raw(text: &str) -> Result<(), Failure> {
    emit_line(text.strip_suffix('\n').unwrap_or(text))
}

fn emit_line(text: &str) -> Result<(), Failure> {
    let mut out = std::io::stdout().lock();
    match writeln!(out, "{text}").and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Internal(format!("writing to stdout: {e}"))),
    }
}

/// Prints `value` as one line of JSON with a `"format": JSON_FORMAT` field.
pub fn json(value: &impl Serialize) -> Result<(), Failure> {
    emit_line(&json_line(value)?)
}

/// `value` as one line of JSON (no newline) with a `"format": JSON_FORMAT` field.
pub fn json_line(value: &impl Serialize) -> Result<String, Failure> {
    let mut v = serde_json::to_value(value).map_err(|e| Failure::Internal(format!("JSON: {e}")))?;
    if let serde_json::Value::Object(map) = &mut v {
        map.insert("format".into(), JSON_FORMAT.into());
    }
    Ok(printable(&v.to_string(), Escape::Json).into_owned())
}

/// Prints `text` (a whole document) with its control characters escaped ([`printable`]: as
/// in JSON for a JSON document, which `json` says it is).
pub fn text(text: &str, json: bool) -> Result<(), Failure> {
    let text = printable(text, if json { Escape::Json } else { Escape::Text });
    let mut out = std::io::stdout().lock();
    match out.write_all(text.as_bytes()).and_then(|()| out.flush()) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Err(Failure::BrokenPipe),
        Err(e) => Err(Failure::Internal(format!("writing to stdout: {e}"))),
    }
}

/// Refuses, before any work, an output file `flag` names that could not be written (not a
/// regular file, or in a missing directory); `-` (stdout) is fine.
pub fn check_output(path: &Path, flag: &str) -> Result<(), Failure> {
    if scenarios::output::is_stdout(path) {
        return Ok(());
    }
    scenarios::output::check_writable(path).map_err(|e| Failure::Bad(format!("{flag} {}: {e}", path.display())))
}

/// Writes a whole document to `path` (`-`: stdout, as [`text`] prints it; `json` says
/// whether it is JSON), replacing only a regular file; a refused or failed write is bad
/// input naming the file.
pub fn document(path: &Path, contents: &str, json: bool) -> Result<(), Failure> {
    if scenarios::output::is_stdout(path) {
        return text(contents, json);
    }
    scenarios::output::write_atomic(path, contents.as_bytes())
        .map_err(|e| Failure::Bad(format!("{}: cannot write: {e}", path.display())))
}

/// Writes a line to stderr, its control characters escaped ([`printable`]), ignoring failure
/// (there is nowhere left to report it).
pub fn warn(text: &str) {
    let _ = writeln!(std::io::stderr().lock(), "pokesim: {}", printable(text, Escape::Text));
}
