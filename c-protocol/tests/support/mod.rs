//! Shared by the c-protocol tests: the test C files and a private cache directory per test.

#![allow(dead_code)]

use c_protocol::Build;
use std::path::{Path, PathBuf};

/// `tests/c/<name>`.
pub fn c_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/c").join(name)
}

/// A fresh, empty cache directory for one test (removed when dropped).
pub struct TempDir(
    /// The directory.
    pub PathBuf,
);

impl TempDir {
    /// `c-protocol-test-<tag>-<pid>` in the temporary directory, emptied.
    pub fn new(tag: &str) -> TempDir {
        let p = std::env::temp_dir().join(format!("c-protocol-test-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).expect("create a temporary directory");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The paths a build of `tests/c/<source>` uses.
pub struct Paths {
    /// The C file.
    pub source: PathBuf,
    /// The test header's directory.
    pub include: PathBuf,
    /// The test runtime.
    pub runtime: PathBuf,
}

impl Paths {
    /// `tests/c/<source>` with the test header and runtime.
    pub fn of(source: &str) -> Paths {
        Paths { source: c_file(source), include: c_file("include"), runtime: c_file("rt.c") }
    }
    /// The build of these paths with `defines`.
    pub fn build<'a>(&'a self, defines: &'a [String]) -> Build<'a> {
        Build { source: &self.source, defines, include: &self.include, runtime: &self.runtime }
    }
}
