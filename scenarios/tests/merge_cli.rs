//! `pokesim explore --shard I/N` and `pokesim merge` through the binary: the shards of a
//! campaign, merged, print the report, write the artifact and exit with the status that
//! `explore` gives on one machine; a missing shard or a stray file is bad input (exit 2).

mod common;

use std::path::{Path, PathBuf};

use common::{json, out, pokesim, tempdir};
use serde_json::Value;

/// First violation at seed 44 (past the first two batches of 16).
const LATE: &[&str] =
    &["--mutant", "no-sync-after-tail", "--protocol", "linux-5.5", "--runs", "100", "--rounds", "2", "--cpus", "2"];
/// 40 runs, some of which spend their tick budget (exit 4).
const EXHAUSTS: &[&str] =
    &["--protocol", "linux-5.5", "--runs", "40", "--ticks", "300", "--rounds", "2", "--cpus", "2"];

/// `explore ARGS EXTRA --artifact-dir DIR -q`: exit code and stdout.
fn explore(args: &[&str], extra: &[&str], dir: &Path) -> (i32, String) {
    let (code, stdout, _) =
        out(pokesim().arg("explore").args(args).args(extra).arg("--artifact-dir").arg(dir).arg("-q"));
    (code, stdout)
}

/// What `DIR/*.json` expands to.
fn jsons(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .expect("the shard directory")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    v.sort();
    v
}

/// The report without the fields that say where it came from and where files went.
fn essence(mut v: Value) -> Value {
    let o = v.as_object_mut().expect("a JSON object");
    for key in ["shard", "artifact", "shard_result", "merged"] {
        o.remove(key);
    }
    v
}

/// The campaign on one machine and as `n` shards merged: the same report, status and artifact.
fn same_as_one_machine(name: &str, args: &[&str], n: u64) -> Value {
    let root = tempdir(&format!("merge-{name}-{n}"));
    let (one_dir, shard_dir, merged_dir) = (root.join("one"), root.join("out"), root.join("merged"));
    let (code, stdout) = explore(args, &["--json"], &one_dir);
    let one = json(&stdout);
    for i in 0..n {
        let (_, stdout) = explore(args, &["--json", "--shard", &format!("{i}/{n}")], &shard_dir);
        let shard = json(&stdout);
        let written = shard["shard_result"].as_str().expect("the shard result is named");
        assert!(Path::new(written).is_file(), "{written}");
        assert!(written.ends_with(".json") && written.contains(&format!("shard-{i}-of-{n}-")), "{written}");
    }
    let (mcode, stdout, stderr) =
        out(pokesim().arg("merge").args(jsons(&shard_dir)).arg("--json").arg("--artifact-dir").arg(&merged_dir));
    assert_eq!(mcode, code, "{n} shards: exit status; {stderr}");
    let merged = json(&stdout);
    assert_eq!(merged["shard"], "0/1");
    assert_eq!(merged["merged"]["shards"].as_array().map(Vec::len), Some(n as usize));
    assert_eq!(essence(merged.clone()), essence(one.clone()), "{n} shards merged vs one machine");
    match (one["artifact"].as_str(), merged["artifact"].as_str()) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(Path::new(a).file_name(), Path::new(b).file_name(), "the artifact's name");
            let read = |p| std::fs::read_to_string(p).expect("the artifact");
            assert_eq!(read(a), read(b), "the artifact's content");
        }
        (a, b) => panic!("artifact on one machine: {a:?}, merged: {b:?}"),
    }
    merged
}

#[test]
fn shards_of_a_late_violation_merge_to_the_single_machine_report() {
    for n in [1, 2, 4] {
        let merged = same_as_one_machine("late", LATE, n);
        assert_eq!(merged["verdict"], "violation");
        assert!(merged["seed"].as_u64().expect("a seed") >= 17, "{merged}");
        let notes = merged["merged"]["artifacts"].as_array().expect("the artifacts among the inputs");
        assert!(!notes.is_empty(), "the shards' own artifacts are recognised");
        assert!(notes.iter().all(|a| a["note"].as_str().is_some_and(|s| s.contains("artifact, not a shard result"))));
        assert_eq!(notes.iter().filter(|a| a["note"].as_str().is_some_and(|s| s.ends_with("identical"))).count(), 1);
    }
}

#[test]
fn shards_of_a_campaign_with_exhausted_runs_merge_to_the_single_machine_report() {
    for n in [1, 2, 4] {
        let merged = same_as_one_machine("exhausts", EXHAUSTS, n);
        assert_eq!(merged["verdict"], "budget-exhausted");
        assert!(merged["exhausted"].as_u64().is_some_and(|e| e > 0) && merged["runs"] == 40, "{merged}");
    }
}

#[test]
fn merge_text_shows_the_single_machine_verdict() {
    let root = tempdir("merge-text");
    let (code, one) = explore(LATE, &[], &root.join("one"));
    for i in 0..2 {
        explore(LATE, &["--shard", &format!("{i}/2")], &root.join("out"));
    }
    let (mcode, merged, _) =
        out(pokesim().arg("merge").args(jsons(&root.join("out"))).arg("--artifact-dir").arg(root.join("merged")));
    assert_eq!((code, mcode), (1, 1));
    let verdict = |text: &str| -> Vec<String> {
        let keep = ["scenario ", "verdict ", "violation ", "stats ", "trace_hash ", "expected "];
        text.lines().filter(|l| keep.iter().any(|k| l.starts_with(k))).map(str::to_string).collect()
    };
    assert_eq!(verdict(&merged), verdict(&one));
    assert!(merged.contains("merged     2 shard results of campaign"), "{merged}");
    assert!(merged.contains("artifact, not a shard result"), "{merged}");
}

#[test]
fn a_missing_shard_or_a_stray_file_is_bad_input() {
    let root = tempdir("merge-bad");
    let dir = root.join("out");
    for i in [0, 1, 3] {
        explore(EXHAUSTS, &["--shard", &format!("{i}/4")], &dir);
    }
    let (code, _, stderr) = out(pokesim().arg("merge").args(jsons(&dir)));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("missing shard") && stderr.contains("2/4"), "{stderr}");
    explore(EXHAUSTS, &["--shard", "2/4"], &dir);
    let stray = common::write(&dir, "notes.json", "{\"hello\": 1}\n");
    let (code, _, stderr) = out(pokesim().arg("merge").args(jsons(&dir)).arg("--artifact-dir").arg(root.join("m")));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains(&stray.display().to_string()), "{stderr}");
    std::fs::remove_file(&stray).expect("remove the stray file");
    let (code, _, stderr) = out(pokesim().arg("merge").args(jsons(&dir)).arg("--artifact-dir").arg(root.join("m")));
    assert_eq!(code, 4, "all four shards: budget exhausted, as on one machine; {stderr}");
}
