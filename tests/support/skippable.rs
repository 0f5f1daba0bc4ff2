//! A test harness for tests that need something the machine may not have (real CPUs that
//! `pokesim hw` can use, a browser): where the precondition fails, every test of the file is
//! reported by the runner as **ignored** — never as `ok` — with the reason printed once on
//! stderr, outside any captured output. Setting the requirement's environment variable (for
//! example `POKESIM_REQUIRE_HW=1`, which CI sets) turns a missing precondition into a failure.
//!
//! Included by each such test file (`harness = false` in its crate's Cargo.toml) with
//! `#[path = ".../tests/support/skippable.rs"] mod skippable;`, and used as
//! `skippable::main(requirement, &[("name", test_fn), ...])`.

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
    let args = Arguments::from_args();
    // Listing tests (`--list`) must not probe: nextest lists every binary first.
    let missing = if args.list { None } else { (req.probe)().err() };
    let forced = std::env::var_os(req.require_var).is_some();
    if let Some(reason) = &missing {
        if forced {
            eprintln!("error: {} is set but this machine lacks {}: {reason}", req.require_var, req.what);
            std::process::exit(101);
        }
        eprintln!("SKIPPED (reported as ignored): this machine lacks {}: {reason}", req.what);
    }
    // Each test runs on a thread of its own, as libtest runs it: a test that pins its thread to
    // a CPU or changes its FS/GS base (the hw campaigns do) must not leave that to the next test
    // on a reused worker thread.
    let trials = tests
        .iter()
        .map(|&(name, f)| {
            Trial::test(name, move || {
                std::thread::Builder::new()
                    .name(name.to_string())
                    .spawn(f)
                    .map_err(|e| format!("could not start the test's thread: {e}"))?
                    .join()
                    .map_err(|_| "the test panicked (its message is above)".into())
            })
            .with_ignored_flag(missing.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// `pokesim hw`'s host probe as a requirement.
pub fn real_cpus() -> Requirement {
    Requirement {
        what: "real CPUs pokesim hw can use",
        require_var: "POKESIM_REQUIRE_HW",
        probe: || hw::probe().map(|_| ()).map_err(|r| r.to_string()),
    }
}
