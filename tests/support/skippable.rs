//! A test harness for tests that need something the machine may not have (real CPUs that
//! `pokesim hw` can use, a browser): where the precondition fails, every test of the file is
//! reported by the runner as **ignored** — never as `ok` — with the reason printed once on
//! stderr, outside any captured output. Setting the requirement's environment variable (for
//! example `POKESIM_REQUIRE_HW=1`, which CI sets) turns a missing precondition into a failure.
//!
//! Included by each such test file (`harness = false` in its crate's Cargo.toml) with
//! `#[path = ".../tests/support/skippable.rs"] mod skippable;`, and used as
//! `skippable::main(requirement, &[("name", test_fn), ...])`, or `skippable::run(requirement,
//! always, needing)` for a file where only some tests need the requirement.

#![allow(dead_code)] // each test file uses part of it

use libtest_mimic::{Arguments, Trial};

/// What the tests of a file need, and how to tell whether this machine has it.
pub struct Requirement {
    /// What is needed, for messages ("real CPUs for pokesim hw").
    pub what: &'static str,
    /// The environment variable that makes its absence a failure (`POKESIM_REQUIRE_HW`).
    pub require_var: &'static str,
    /// `Err(reason)` if this machine cannot run the tests.
    pub probe: fn() -> Result<(), String>,
}

/// Runs `tests` as this binary's test suite; all ignored, with the reason, if `req` is not
/// met (a failure instead when `req.require_var` is set).
pub fn main(req: Requirement, tests: &[(&'static str, fn())]) {
    run(req, &[], tests);
}

/// Runs `always` and `needing` as this binary's test suite; `needing` ignored, with the reason,
/// if `req` is not met (a failure instead when `req.require_var` is set).
pub fn run(req: Requirement, always: &[(&'static str, fn())], needing: &[(&'static str, fn())]) {
    let args = Arguments::from_args();
    // Listing tests (`--list`) must not probe: nextest lists every binary first.
    let missing = if args.list { None } else { (req.probe)().err() };
    let forced = std::env::var_os(req.require_var).is_some();
    if let Some(reason) = &missing {
        if forced {
            eprintln!("error: {} is set but this machine lacks {}: {reason}", req.require_var, req.what);
            std::process::exit(101);
        }
        eprintln!("SKIPPED (reported as ignored): not here: {}: {reason}", req.what);
    }
    // Each test runs on a thread of its own, as libtest runs it: a test that pins its thread to
    // a CPU or changes its FS/GS base (the hw campaigns do) must not leave that to the next test
    // on a reused worker thread.
    let trials = always
        .iter()
        .map(|&t| trial(t))
        .chain(needing.iter().map(|&t| trial(t).with_ignored_flag(missing.is_some())))
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// A test on a thread of its own, as libtest runs it: a test that pins its thread to a CPU or
/// changes its FS/GS base (the hw campaigns do) must not leave that to the next test on a
/// reused worker thread.
fn trial((name, f): (&'static str, fn())) -> Trial {
    Trial::test(name, move || {
        std::thread::Builder::new()
            .name(name.to_string())
            .spawn(f)
            .map_err(|e| format!("could not start the test's thread: {e}"))?
            .join()
            .map_err(|_| "the test panicked (its message is above)".into())
    })
}

/// The full suite as a requirement: the heavy matrices (the mutant matrix, complete search over
/// the reductions and the SPIN rows, every workload of every version) run only with
/// `POKESIM_FULL=1`, which CI sets (issue 26: a `cargo test --workspace` a contributor runs
/// often); without it they are reported as ignored, never as passed.
pub fn full_suite() -> Requirement {
    Requirement {
        what: "the full suite (POKESIM_FULL=1, which CI sets)",
        require_var: "POKESIM_FULL",
        probe: || match std::env::var_os("POKESIM_FULL") {
            Some(_) => Ok(()),
            None => Err("a heavy matrix; set POKESIM_FULL=1 to run it".into()),
        },
    }
}

/// A headless browser (for the HTML report's tests) as a requirement.
pub fn browser() -> Requirement {
    Requirement {
        what: "a browser (apt-get install chromium, or set POKESIM_CHROMIUM)",
        require_var: "POKESIM_REQUIRE_BROWSER",
        probe: || chromium().map(|_| ()).ok_or_else(|| "no chromium or chromium-browser on PATH".to_string()),
    }
}

/// Chromium, if installed: `POKESIM_CHROMIUM`, else `chromium` or `chromium-browser` on PATH.
pub fn chromium() -> Option<std::path::PathBuf> {
    if let Some(p) = std::env::var_os("POKESIM_CHROMIUM") {
        return Some(p.into());
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path).flat_map(|d| ["chromium", "chromium-browser"].map(|n| d.join(n))).find(|p| p.is_file())
}

/// `pokesim hw`'s host probe as a requirement.
pub fn real_cpus() -> Requirement {
    Requirement {
        what: "real CPUs pokesim hw can use",
        require_var: "POKESIM_REQUIRE_HW",
        probe: || hw::probe().map(|_| ()).map_err(|r| r.to_string()),
    }
}
