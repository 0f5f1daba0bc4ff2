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

/// `pokesim hw` with `args`: exit code, stdout, stderr.
fn hw(args: &[&str]) -> (i32, String, String) {
    out(pokesim().arg("hw").args(args))
}

fn hw_json_carries_the_expectation_whether_it_was_met_and_why() {
    let tearing = ["--protocol", "linux-6.16", "--mutant", "no-int3", "--site", "cross16", "--rounds", "5000"];
    let (code, stdout, stderr) = hw(&[&tearing[..], &["--json"]].concat());
    assert_eq!(code, 1, "{stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!(j["expect"], "pass", "{j}");
    assert_eq!(j["expected"], false, "{j}");
    let reason = j["reason"].as_str().expect("a reason");
    assert!(reason.starts_with("expected pass; saw ") && reason.contains("guest-fault violation"), "{j}");
    let (seen, rounds) = (j["violations"][0]["count"].as_f64().unwrap(), j["rounds"].as_f64().unwrap());
    assert_eq!(j["violations_per_100k_rounds"].as_f64(), Some(seen * 1e5 / rounds), "{j}");
    assert!(j.get("per_million_rounds").is_none(), "one unit for rates: {j}");
    let (code, text, _) = hw(&tearing);
    assert_eq!(code, 1, "{text}");
    assert!(text.contains(" per 10⁵ rounds)") && !text.contains("million"), "{text}");
    assert!(text.contains("expected   pass (NOT met)") && text.contains("reason     expected pass; saw "), "{text}");
    let (code, stdout, stderr) = hw(&["--protocol", "linux-6.16", "--rounds", "500", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!((&j["expect"], &j["expected"]), (&"pass".into(), &true.into()), "{j}");
    assert_eq!(j["reason"], "expected pass; saw no violation in 500 rounds", "{j}");
    assert_eq!(j["not_applied"], serde_json::json!([]), "{j}");
}

fn hw_names_the_fields_that_did_not_apply() {
    let dir = tempdir("names-hw-not-applied");
    let file = dir.join("s.toml");
    std::fs::write(
        &file,
        "protocol = \"linux-6.16\"\nseed = 4\n[workload]\nkind = \"ftrace\"\n[fetch]\nunit = \"line64\"\n",
    )
    .unwrap();
    let (code, stdout, stderr) = out(pokesim().arg("hw").arg(&file).args(["--rounds", "300", "--json"]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert_eq!(json(&stdout)["not_applied"], serde_json::json!(["seed", "fetch.unit"]), "{stdout}");
    let (_, text, _) = out(pokesim().arg("hw").arg(&file).args(["--rounds", "300"]));
    assert!(
        text.contains("n/a        the file's seed, fetch.unit do not apply: they describe simulator runs"),
        "{text}"
    );
}

fn hw_no_verdict_gives_its_reason() {
    let (code, stdout, stderr) = hw(&["--protocol", "linux-6.16", "--time", "1e-9", "--json"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!(j["expected"], false, "{j}");
    assert!(j["reason"].as_str().is_some_and(|r| r.starts_with("no verdict: no patch round completed")), "{j}");
}

fn hw_says_vcpus_and_guest_threads_one_way() {
    let (code, stdout, stderr) = hw(&["--protocol", "linux-6.16", "--cpus", "64", "--rounds", "300", "--json"]);
    assert_eq!(code, 0, "{stdout}{stderr}");
    let j = json(&stdout);
    let free = j["host"]["cpus"].as_u64().unwrap() - 1;
    assert_eq!(j["vcpus_asked"], 64, "{j}");
    assert_eq!(j["scenario"]["cpus"], free.min(64), "{j}");
    assert_eq!(j["guest_cpus"].as_array().map(Vec::len), Some(free.min(64) as usize), "one guest thread per vCPU: {j}");
    let (_, text, _) = hw(&["--protocol", "linux-6.16", "--cpus", "64", "--rounds", "300"]);
    let header = format!("cpus={} ", free.min(64));
    assert!(text.contains(&header), "{text}");
    assert!(
        text.contains(&format!("cpus       {} vCPU(s) of the 64 asked, one guest thread each", free.min(64))),
        "{text}"
    );
    assert!(!text.contains("vCPUs asked"), "{text}");
}

fn hw_matrix_json_ends_with_a_summary_judged_like_a_campaign() {
    let (code, stdout, stderr) = hw(&["--matrix", "--rounds", "50", "--predict-runs", "1", "--json"]);
    assert!([0, 1, 4].contains(&code), "{stdout}{stderr}");
    let lines = common::json_lines(&stdout);
    let (summary, rows) = lines.split_last().expect("JSON lines");
    assert_eq!(summary["summary"], true, "{summary}");
    assert_eq!(summary["rows"].as_u64(), Some(rows.len() as u64), "{summary}");
    assert_eq!(summary["expected"], code == 0, "{summary}");
    let reason = summary["reason"].as_str().expect("a reason");
    assert_eq!(reason.starts_with("no verdict: "), code == 4, "{summary}");
    for key in ["expect", "not_applied"] {
        assert!(summary.get(key).is_some(), "{key}: {summary}");
    }
    for row in rows {
        assert!(row["reason"].is_string() && row.get("expect").is_some() && row.get("expected").is_some(), "{row}");
        assert!(row.get("violations_per_100k_rounds").is_some(), "{row}");
    }
    let kernel = rows.iter().find(|r| r["scenario"]["mutants"] == serde_json::json!([])).expect("a kernel row");
    assert_eq!(kernel["expect"], "pass", "{kernel}");
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
const HW_TESTS: &[(&str, fn())] = &[
    (
        "hw_json_carries_the_expectation_whether_it_was_met_and_why",
        hw_json_carries_the_expectation_whether_it_was_met_and_why,
    ),
    ("hw_names_the_fields_that_did_not_apply", hw_names_the_fields_that_did_not_apply),
    ("hw_no_verdict_gives_its_reason", hw_no_verdict_gives_its_reason),
    ("hw_says_vcpus_and_guest_threads_one_way", hw_says_vcpus_and_guest_threads_one_way),
    (
        "hw_matrix_json_ends_with_a_summary_judged_like_a_campaign",
        hw_matrix_json_ends_with_a_summary_judged_like_a_campaign,
    ),
];

fn main() {
    skippable::run(skippable::real_cpus(), TESTS, HW_TESTS);
}
