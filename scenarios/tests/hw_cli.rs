//! `pokesim hw` from the command line: a kernel protocol on this machine's CPUs reported with
//! the host, its counts and a verdict (JSON and text), a mutant that tears exiting 1 against a
//! `pass` expectation (and meeting a `torn-fetch` one with the guest faults a torn fetch shows
//! as), a file's simulation-only fields named as not applying, a recorded file and
//! simulation-only flags refused with status 2 rather than ignored. The
//! campaigns skip (printing `SKIPPED`) where the host cannot, unless `POKESIM_REQUIRE_HW=1`.

use assert_cmd::Command;
use serde_json::Value;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

/// True if this host can run hardware campaigns (else the test prints why and skips).
fn hardware() -> bool {
    match hw::probe() {
        Ok(_) => true,
        Err(r) if std::env::var_os("POKESIM_REQUIRE_HW").is_some() => panic!("POKESIM_REQUIRE_HW is set: {r}"),
        Err(r) => {
            eprintln!("SKIPPED: {r}");
            false
        }
    }
}

#[test]
fn a_kernel_protocol_on_real_cpus_reports_its_host_counts_and_verdict() {
    if !hardware() {
        return;
    }
    let out = pokesim()
        .args(["hw", "--protocol", "linux-6.16", "--site", "cross16", "--stores", "byte", "--rounds", "2000", "--json"])
        .output()
        .expect("runs");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(j["command"], "hw");
    assert_eq!(j["rounds"], 2000);
    assert_eq!(j["syncs"], 6000, "three text_poke_sync() per round: {j}");
    assert!(j["traps"].as_u64().unwrap() > 0 && j["traps"] == j["emulated"], "{j}");
    assert!(j["invariant_checks"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["violations"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(!j["host"]["cpu"].as_str().unwrap().is_empty() && j["host"]["cpus"].as_u64().unwrap() >= 2, "{j}");
    assert_eq!(j["scenario"]["protocol"], "linux-6.16");
}

#[test]
fn a_tearing_mutant_exits_1_against_a_pass_expectation_with_its_events() {
    if !hardware() {
        return;
    }
    let out = pokesim()
        .args(["hw", "--mutant", "no-int3", "--protocol", "linux-6.16", "--site", "cross16", "--rounds", "5000"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("VIOLATIONS guest-fault"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("event      round ")), "{text}");
    assert!(text.contains("NOT as expected (expect pass)"), "{text}");
}

#[test]
fn simulation_flags_are_refused_on_hardware() {
    for flags in [&["--seed", "3"][..], &["--strategy", "pct"], &["--preset", "line64"], &["--runs", "5"]] {
        let out = pokesim().arg("hw").args(flags).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(flags[0]) && err.contains("does not apply to `pokesim hw`"), "{err}");
    }
    let out = pokesim().args(["hw", "--rounds", "0"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = pokesim().args(["hw", "--matrix", "--mutant", "no-int3"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

#[test]
fn a_torn_fetch_expectation_is_met_by_what_a_torn_fetch_shows_on_hardware() {
    if !hardware() {
        return;
    }
    let args = ["hw", "--mutant", "no-int3", "--protocol", "linux-6.16", "--site", "cross16", "--stores", "byte"];
    let out = pokesim().args(args).args(["--rounds", "5000", "--expect", "torn-fetch"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("VIOLATIONS guest-fault") && text.contains("as expected (expect torn-fetch)"), "{text}");
}

#[test]
fn a_scenario_file_says_what_does_not_apply_and_a_recorded_one_is_refused() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain.toml");
    std::fs::write(&plain, "protocol = \"linux-6.16\"\nseed = 4\n[workload]\nkind = \"ftrace\"\n").unwrap();
    let out = pokesim().arg("hw").arg(&plain).args(["--rounds", "500"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("the file's seed, runs, strategy, fetch model and tick budget"), "{text}");
    let recorded = dir.join("recorded.toml");
    std::fs::write(&recorded, "decisions = [[2, 1], [3, 0]]\n[workload]\nkind = \"ftrace\"\n").unwrap();
    let out = pokesim().arg("hw").arg(&recorded).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("recorded.toml") && err.contains("decision list"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}
