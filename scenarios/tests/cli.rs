//! The `pokesim` binary: exit statuses, JSON shape, determinism across processes, and clear
//! errors with status 2 for bad input.
//!
//! These tests live in the `scenarios` package, not in `tests/`, because Cargo exposes a
//! package's binaries (`CARGO_BIN_EXE_pokesim`) only to that package's own integration tests.

use assert_cmd::Command;
use serde_json::Value;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

fn run_json(args: &[&str]) -> (i32, Value) {
    let dir = std::path::PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("cli-artifacts");
    let out =
        pokesim().arg("run").args(args).arg("--json").arg("--artifact-dir").arg(&dir).output().expect("pokesim runs");
    let json: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().expect("exit code"), json)
}

#[test]
fn a_passing_run_exits_0_with_the_documented_json() {
    let (code, j) = run_json(&["--workload", "ftrace", "--protocol", "seed", "--cpus", "4", "--seed", "7"]);
    assert_eq!(code, 0);
    assert_eq!(j["verdict"], "pass");
    assert_eq!(j["violations"].as_array().map(Vec::len), Some(0));
    for field in ["ticks", "guest_steps", "int3_traps", "patch_rounds", "syncs"] {
        assert!(j["stats"][field].as_u64().is_some(), "stats.{field} missing: {j}");
    }
    assert!(j["stats"]["patch_rounds"].as_u64().unwrap() >= 20);
    assert_eq!(j["trace_hash"].as_str().map(str::len), Some(16));
}

#[test]
fn a_violation_exits_1_and_reports_kind_cpu_tick_rip_bytes_and_epochs() {
    let (code, j) = run_json(&["--mutant", "no-sync-after-int3", "--cpus", "2", "--seed", "0"]);
    assert_eq!(code, 1);
    assert_eq!(j["verdict"], "violation");
    let v = &j["violations"][0];
    assert_eq!(v["kind"], "torn-fetch");
    assert!(v["cpu"].as_u64().is_some() && v["tick"].as_u64().is_some());
    assert!(v["rip"].as_str().is_some_and(|r| r.starts_with("0x")), "rip is hex, as in messages: {v}");
    assert_eq!(j["format"], 1, "every JSON output carries its format version");
    let bytes = v["bytes"].as_array().expect("bytes");
    assert!(!bytes.is_empty());
    assert!(bytes.iter().all(|b| b["byte"].is_u64() && b["epoch"].is_u64()));
}

#[test]
fn the_same_command_in_two_processes_prints_the_same_run() {
    for args in [
        &["--cpus", "8", "--seed", "123", "--site", "cross64"][..],
        &["--cpus", "4", "--seed", "5", "--mutant", "no-sync-after-tail", "--preset", "line64", "--site", "cross-page"]
            [..],
        &["--cpus", "3", "--seed", "9", "--fetch", "block16", "--stores", "aligned8", "--non-monotone"][..],
    ] {
        let (c1, a) = run_json(args);
        let (c2, b) = run_json(args);
        assert_eq!(c1, c2, "{args:?}");
        for field in ["verdict", "violations", "stats", "trace_hash"] {
            assert_eq!(a[field], b[field], "{field} differs for {args:?}");
        }
    }
}

#[test]
fn different_seeds_give_different_runs() {
    let (_, a) = run_json(&["--cpus", "4", "--seed", "1"]);
    let (_, b) = run_json(&["--cpus", "4", "--seed", "2"]);
    assert_ne!(a["trace_hash"], b["trace_hash"]);
}

#[test]
fn bad_input_exits_2_with_a_message_naming_the_problem() {
    let cases: &[(&[&str], &str)] = &[
        (&["--mutant", "no-such-mutant"], "unknown mutant 'no-such-mutant' (valid: no-sync-after-int3"),
        (&["--protocol", "linux-9"], "unknown protocol 'linux-9'"),
        (&["--workload", "nope"], "unknown workload 'nope'"),
        (&["--cpus", "0"], "cpus: 0 is out of range"),
        (&["--cpus", "257"], "cpus: 257 is out of range"),
        (&["--fetch", "cacheline"], "'--fetch <U>': unknown fetch unit 'cacheline'"),
        (&["--stores", "dword"], "'--stores <G>': unknown store granularity 'dword'"),
        (&["--preset", "optimistic"], "'--preset <P>': unknown preset 'optimistic'"),
        (&["--site", "64"], "'--site <PLACE>': '64' is not a placement"),
        (&["--ticks", "0"], "--ticks: 0 is out of range"),
        // The old name of the tick budget still works, and errors give the new one.
        (&["--steps", "0"], "--ticks: 0 is out of range"),
        (&["--staleness", "0"], "--staleness: 0 is out of range"),
        (&["--cpus", "many"], "invalid value 'many'"),
        (&["--workload", "jcc", "--protocol", "linux-5.5"], "Jcc.d32, which this version cannot patch"),
        (&["--workload", "static_call", "--protocol", "seed"], "RET emulation arrived with c43a43e439e0"),
        (&["--workload", "multi_insn"], "not exactly one instruction"),
        (&["--workload", "batch", "--sites", "0"], "--sites: 0 is out of range"),
        (&["--workload", "batch", "--order", "random"], "unknown order 'random'"),
    ];
    for (args, message) in cases {
        let out = pokesim().arg("run").args(*args).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(stderr.contains(message), "{args:?}: expected '{message}' in: {stderr}");
    }
}

#[test]
fn a_budget_too_small_for_the_patcher_is_no_verdict_and_exits_4() {
    let (code, j) = run_json(&["--ticks", "50"]);
    assert_eq!(code, 4, "{j}");
    assert_eq!(j["verdict"], "budget-exhausted");
    assert_eq!(j["violations"].as_array().map(Vec::len), Some(0));
}

#[test]
fn check_runs_the_builtin_scenarios_and_all_are_as_expected() {
    // Few seeds, so the workloads' full 24 rounds (the table's default of 6 needs its 150 seeds).
    let out = pokesim().args(["check", "--runs", "6", "--rounds", "24", "--json", "--no-artifact"]).output().unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    let lines: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert!(lines.iter().all(|l| l["format"] == 1));
    let rows: Vec<&Value> = lines.iter().filter(|l| l["command"] == "check").collect();
    let summary = lines.last().unwrap();
    assert_eq!(summary["command"], "check-summary");
    assert_eq!(summary["rows"].as_u64(), Some(rows.len() as u64));
    assert!(rows.iter().all(|r| r["ok"] == true));
    let names: Vec<&str> = rows.iter().map(|r| r["scenario"].as_str().unwrap()).collect();
    for name in [
        "ftrace/seed+no-sync-after-first@pessimistic",
        "ftrace/seed+no-sync-after-tail@snapshot",
        "static_call/linux-5.4@pessimistic",
        "ftrace+kprobe/seed@pessimistic",
        "ftrace+kprobe/linux-5.6@pessimistic",
        "jcc/linux-6.16@pessimistic",
        "multi_insn/linux-6.16@pessimistic",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let unique: std::collections::BTreeSet<_> = names.iter().collect();
    assert_eq!(unique.len(), names.len(), "duplicate rows");
}

#[test]
fn the_catalogue_is_reachable_from_the_command_line() {
    let (code, j) = run_json(&[
        "--workload",
        "multi_insn",
        "--unsafe-multi-insn",
        "--protocol",
        "linux-6.16",
        "--cpus",
        "4",
        "--seed",
        "1",
    ]);
    assert_eq!((code, j["violations"][0]["kind"].as_str()), (1, Some("torn-fetch")));
    let (code, j) = run_json(&["--workload", "ftrace", "--kprobe", "--protocol", "linux-6.0", "--cpus", "4"]);
    assert_eq!(code, 0, "{j}");
    assert!(j["stats"]["kprobe_hits"].as_u64().unwrap() > 0);
    let (code, _) =
        run_json(&["--workload", "batch", "--sites", "40", "--order", "descending", "--protocol", "linux-6.16"]);
    assert_eq!(code, 0);
}

#[test]
fn list_names_every_mutant() {
    let out = pokesim().arg("list").output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for m in ["no-sync-after-int3", "no-sync-after-tail", "no-sync-after-first", "no-int3", "pessimistic", "torn-fetch"]
    {
        assert!(text.contains(m), "{m} missing from list");
    }
}
