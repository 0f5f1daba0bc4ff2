//! Helpers the command-line tests share: the binary under a hang guard, scratch directories,
//! and running a command to its exit code, stdout and stderr.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// No command of these tests may take longer than this (a hang guard, not a speed test).
pub const HANG_GUARD: Duration = Duration::from_secs(300);

/// The `pokesim` binary, killed if it hangs.
pub fn pokesim() -> Command {
    let mut c = Command::cargo_bin("pokesim").expect("the pokesim binary is built");
    c.timeout(HANG_GUARD);
    c
}

/// A fresh scratch directory under the target directory.
pub fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// Writes `text` to `dir/name`.
pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).expect("write test file");
    p
}

/// Exit code, stdout, stderr. A process killed by a signal or the hang guard fails the test.
pub fn out(cmd: &mut Command) -> (i32, String, String) {
    let o = cmd.output().expect("pokesim runs");
    let (stdout, stderr) =
        (String::from_utf8_lossy(&o.stdout).to_string(), String::from_utf8_lossy(&o.stderr).to_string());
    let code = o.status.code().unwrap_or_else(|| panic!("killed by a signal or the hang guard: {stdout}{stderr}"));
    assert!(!stderr.contains("panicked"), "a panic: {stderr}");
    (code, stdout, stderr)
}

/// Every JSON line of stdout.
pub fn json_lines(stdout: &str) -> Vec<Value> {
    stdout.lines().map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}"))).collect()
}

/// The single JSON object of stdout.
pub fn json(stdout: &str) -> Value {
    let mut lines = json_lines(stdout);
    assert_eq!(lines.len(), 1, "one JSON object expected: {stdout}");
    lines.remove(0)
}

/// The shipped corpus directory.
pub fn corpus_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

/// A scenario that fails at once: linux-5.5 ftrace without the INT3 step.
pub const FAILING: &str = "protocol = \"linux-5.5\"\ncpus = 2\nmutants = [\"no-int3\"]\nexpect = \"torn-fetch\"\n\
                           [workload]\nkind = \"ftrace\"\nrounds = 2\n";

/// Runs headless Chromium `browser` with `args` (under the hang guard); its stdout and stderr.
pub fn headless(browser: &Path, args: &[String]) -> (String, String) {
    let o = Command::new(browser)
        .args(["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run", "--enable-logging=stderr", "--v=0"])
        .args(args)
        .timeout(HANG_GUARD)
        .output()
        .expect("chromium runs");
    assert!(o.status.success(), "chromium failed: {}", String::from_utf8_lossy(&o.stderr));
    (String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}
