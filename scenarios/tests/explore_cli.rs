//! `pokesim explore`, `exhaust` and `mutants` through the binary.

use std::path::PathBuf;

use assert_cmd::Command;
use serde_json::Value;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

fn file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("explore-cli");
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn json(args: &[&str], path: &PathBuf) -> (i32, Value) {
    let out = pokesim().args(args).arg(path).arg("--json").arg("--no-artifact").output().unwrap();
    let v = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    (out.status.code().unwrap(), v)
}

const TAIL: &str = "protocol = \"linux-5.5\"\ncpus = 4\nmutants = [\"no-sync-after-tail\"]\n[workload]\nkind = \"ftrace\"\nrounds = 2\n";

#[test]
fn explore_prints_the_same_result_whatever_the_number_of_jobs() {
    let p = file("tail.toml", TAIL);
    let (c1, one) = json(&["explore", "--runs", "64", "--jobs", "1"], &p);
    let (c2, two) = json(&["explore", "--runs", "64", "--jobs", "2"], &p);
    assert_eq!((c1, c2), (1, 1));
    assert_eq!(one, two);
    assert_eq!(one["verdict"], "violation");
    let (_, pct) = json(&["explore", "--strategy", "pct", "--depth", "2", "--runs", "64"], &p);
    assert_eq!(pct["scenario"]["strategy"], "pct:2");
    let (code, shard) = json(&["explore", "--runs", "16", "--shard", "1/4"], &p);
    assert_eq!(shard["shard"], "1/4");
    assert_eq!(shard["runs"], 4, "--runs counts the whole campaign: shard 1/4 of 16 runs 4");
    if code == 1 {
        assert_eq!(shard["seed"].as_u64().unwrap() % 4, 1, "a shard only runs its own seeds");
    }
}

#[test]
fn exhaust_reports_executions_and_states() {
    let p = file("small.toml", "protocol = \"linux-5.5\"\ncpus = 2\n[workload]\nkind = \"ftrace\"\nrounds = 1\n");
    let (code, r) = json(&["exhaust", "--bound", "0"], &p);
    assert_eq!(code, 0);
    assert_eq!(r["verdict"], "no violation within bound");
    assert!(r["executions"].as_u64().unwrap() >= 1 && r["states"].as_u64().unwrap() > 10, "{r}");
    let m = file(
        "no-int3.toml",
        "protocol = \"linux-5.5\"\ncpus = 2\nmutants = [\"no-int3\"]\n[workload]\nkind = \"ftrace\"\nrounds = 1\n",
    );
    let (code, r) = json(&["exhaust", "--bound", "1"], &m);
    assert_eq!(code, 1);
    assert_eq!(r["violation"]["kind"], "torn-fetch");
}

#[test]
fn the_mutant_matrix_is_json_and_shows_which_syncs_each_preset_needs() {
    let out = pokesim()
        .args([
            "mutants",
            "--workload",
            "ftrace",
            "--version",
            "seed",
            "--preset",
            "pessimistic",
            "--preset",
            "snapshot",
        ])
        .args(["--runs", "6", "--json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    let cells: Vec<Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let cell = |m: &str, p: &str| {
        cells.iter().find(|c| c["mutant"] == m && c["preset"] == p).unwrap_or_else(|| panic!("{m} {p}"))
    };
    for key in ["caught", "kind", "strategy", "random_runs", "pct_runs", "shrunk_decisions", "millis"] {
        assert!(cell("no-int3", "pessimistic").get(key).is_some(), "{key}");
    }
    assert_eq!(cell("no-sync-after-int3", "pessimistic")["caught"], true);
    assert_eq!(cell("no-sync-after-int3", "snapshot")["caught"], false);
    assert_eq!(cell("no-sync-after-first", "snapshot")["caught"], true);
    assert!(cell("no-int3", "pessimistic")["shrunk_decisions"].as_u64().unwrap() < 200);
    assert!(cells.iter().filter(|c| c["benign"] == true).all(|c| c["caught"] != true));
    // A mutant that cannot act is n/a (caught null, with the reason), never a survivor.
    assert!(cell("no-rmb", "pessimistic")["caught"].is_null());
    assert!(cell("no-rmb", "pessimistic")["not_applicable"].as_str().unwrap().contains("smp_rmb()"));
}

#[test]
fn exploration_bad_input_exits_2() {
    let p = file("t.toml", TAIL);
    for (args, want) in [
        (&["explore", "--shard", "3/3"][..], "needs 0 <= I < N"),
        (&["explore", "--strategy", "dfs"][..], "unknown strategy 'dfs'"),
        (&["explore", "--runs", "0"][..], "--runs: 0 is out of range"),
        (&["explore", "--strategy", "pct", "--depth", "0"][..], "invalid value '0' for '--depth <D>'"),
        (&["exhaust", "--iterations", "0"][..], "invalid value '0' for '--iterations"),
    ] {
        let out = pokesim().args(args).arg(&p).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {err}");
        assert!(err.contains(want), "{args:?}: {err}");
    }
    let out = pokesim().args(["mutants", "--version", "linux-1.0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let out = pokesim().args(["mutants", "--workload", "kpatch"]).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown workload 'kpatch'"));
}
