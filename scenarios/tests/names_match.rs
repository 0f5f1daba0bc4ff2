//! Issue 22, "Names that do not match" and "`hw` for scripts": rounds are counted 1..=R and
//! what happens after the last one is the drain — in a violation's phase, in trace text and in
//! the pictures' data — never round R+1 of R; `pokesim hw` counts rates per 10⁵ rounds (as the
//! README's tables do) and names vCPUs and guest threads one way; and its JSON carries the
//! scenario's expectation, whether it was met, the reason for the exit status and what did not
//! apply. The `hw` tests are reported ignored where this machine cannot run `pokesim hw`
//! (`tests/support/skippable.rs`, `POKESIM_REQUIRE_HW=1` makes that a failure); the others
//! always run.

#[path = "../../tests/support/skippable.rs"]
mod skippable;

mod common;

use std::path::PathBuf;

use common::{json, out, pokesim, tempdir};
use libtest_mimic::{Arguments, Trial};
use serde_json::Value;

/// A failing run whose violation comes after its only round: linux-6.16 without the sync
/// after the first bytes leaves a vCPU fetching the INT3 once the batch has returned.
const DRAIN_FAILURE: [&str; 8] =
    ["--protocol", "linux-6.16", "--mutant", "no-sync-after-first", "--rounds", "1", "--runs", "300"];

/// Runs [`DRAIN_FAILURE`]: its JSON and the artifact it wrote.
fn drain_failure(dir: &str) -> (Value, PathBuf) {
    let dir = tempdir(dir);
    let (code, stdout, stderr) =
        out(pokesim().args(["run", "--json", "-q", "--artifact-dir"]).arg(&dir).args(DRAIN_FAILURE));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let j = json(&stdout);
    let artifact = PathBuf::from(j["artifact"].as_str().expect("an artifact"));
    (j, artifact)
}

fn a_violation_after_the_last_round_says_drain_not_round_r_plus_1() {
    let (j, _) = drain_failure("names-drain-phase");
    let phase = j["violations"][0]["phase"].as_str().expect("a phase");
    assert!(phase.starts_with("drain after round 1/1"), "{j}");
    assert!(!phase.contains("round 2"), "{j}");
}

fn trace_rows_after_the_last_round_are_the_drain_in_text_and_pictures() {
    let (_, artifact) = drain_failure("names-drain-trace");
    let (code, text, err) = out(pokesim().arg("trace").arg(&artifact).arg("--all"));
    assert_eq!(code, 0, "{err}");
    let rows: Vec<&str> = text.lines().filter(|l| l.starts_with("  ") || l.starts_with(">>")).collect();
    assert!(rows.iter().any(|l| l.contains(" r1 ")), "{text}");
    assert!(rows.iter().any(|l| l.contains(" drain ")), "{text}");
    assert!(!rows.iter().any(|l| l.contains(" r2 ")), "{text}");
    let (code, perfetto, err) = out(pokesim().arg("trace").arg(&artifact).args(["--format", "perfetto"]));
    assert_eq!(code, 0, "{err}");
    let doc: Value = serde_json::from_str(&perfetto).expect("JSON");
    let events = doc.as_array().or(doc["traceEvents"].as_array()).expect("trace events");
    let rounds: Vec<&Value> = events.iter().filter_map(|e| e["args"].get("round")).collect();
    assert!(rounds.iter().any(|r| **r == 1) && rounds.iter().any(|r| *r == "drain"), "{rounds:?}");
    assert!(rounds.iter().all(|r| **r == 1 || *r == "drain"), "{rounds:?}");
    let (code, svg, err) = out(pokesim().arg("trace").arg(&artifact).args(["--format", "svg", "--all"]));
    assert_eq!(code, 0, "{err}");
    assert!(svg.contains(r#"data-round="drain""#) && !svg.contains(r#"data-round="2""#), "the SVG's rounds");
}

/// The simulator's tests, always run.
const TESTS: &[(&str, fn())] = &[
    (
        "a_violation_after_the_last_round_says_drain_not_round_r_plus_1",
        a_violation_after_the_last_round_says_drain_not_round_r_plus_1,
    ),
    (
        "trace_rows_after_the_last_round_are_the_drain_in_text_and_pictures",
        trace_rows_after_the_last_round_are_the_drain_in_text_and_pictures,
    ),
];

/// `pokesim hw`'s tests: ignored where this machine cannot run it.
const HW_TESTS: &[(&str, fn())] = &[];

fn main() {
    let args = Arguments::from_args();
    let req = skippable::real_cpus();
    let missing = if args.list || HW_TESTS.is_empty() { None } else { (req.probe)().err() };
    if let Some(reason) = &missing {
        if std::env::var_os(req.require_var).is_some() {
            eprintln!("error: {} is set but this machine lacks {}: {reason}", req.require_var, req.what);
            std::process::exit(101);
        }
        eprintln!("SKIPPED (reported as ignored): this machine lacks {}: {reason}", req.what);
    }
    let trial = |&(name, f): &(&'static str, fn())| {
        Trial::test(name, move || {
            f();
            Ok(())
        })
    };
    let trials =
        TESTS.iter().map(trial).chain(HW_TESTS.iter().map(|t| trial(t).with_ignored_flag(missing.is_some()))).collect();
    libtest_mimic::run(&args, trials).exit();
}
