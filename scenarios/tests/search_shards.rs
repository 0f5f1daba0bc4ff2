//! Sharded complete search (issue 26): `exhaust --shard I/N` on N = 1, 2 and 4 machines and
//! `pokesim merge` report exactly what one machine's `exhaust` reports — the states, the
//! verdict, the violation with its shortest counterexample and the artifact — and the merge
//! refuses what it cannot establish (a missing, duplicate or foreign shard, or one cut short).

mod common;

use std::path::{Path, PathBuf};

use common::{json, out, pokesim, tempdir, write};

/// Three vCPUs and a foreign kprobe: 13,148 states, more than the breadth-first levels every
/// shard runs (4,096), so the shards search parts of their own.
const PASS: &str = "protocol = \"linux-5.5\"\ncpus = 3\n[workload]\nkind = \"ftrace\"\nrounds = 2\nkprobe = true\n";
const TORN: &str =
    "protocol = \"linux-5.5\"\ncpus = 2\nmutants = [\"no-sync-after-int3\"]\n[workload]\nkind = \"ftrace\"\nrounds = 2\n";

/// `exhaust` of `scenario` with `args`: exit status and JSON report.
fn exhaust(scenario: &Path, args: &[&str]) -> (i32, serde_json::Value) {
    let (code, stdout, stderr) = out(pokesim().arg("exhaust").arg(scenario).args(["--json", "--quiet"]).args(args));
    assert!(code != 2, "{stderr}");
    (code, json(&stdout))
}

/// The N shards of the search, each written into `dir`; their search shard files.
fn shards(scenario: &Path, n: u64, dir: &Path, extra: &[&str]) -> Vec<PathBuf> {
    (0..n)
        .map(|i| {
            let shard = format!("{i}/{n}");
            let args = [&["--shard", shard.as_str(), "--artifact-dir", dir.to_str().unwrap()][..], extra].concat();
            exhaust(scenario, &args);
            let prefix = format!("search-shard-{i}-of-{n}-");
            let entry = std::fs::read_dir(dir)
                .unwrap()
                .flatten()
                .find(|e| e.file_name().to_string_lossy().starts_with(&prefix));
            entry.expect("the shard wrote its result").path()
        })
        .collect()
}

fn merge(files: &[PathBuf], dir: &Path) -> (i32, String, String) {
    out(pokesim().arg("merge").args(files).args(["--json", "--quiet", "--artifact-dir", dir.to_str().unwrap()]))
}

/// What must match between one machine and the merge.
fn verdict(r: &serde_json::Value) -> String {
    format!(
        "{} complete={} states={} kinds={} violation={} shortest={}",
        r["verdict"], r["complete"], r["states"], r["kinds"], r["violation"], r["shortest"]
    )
}

#[test]
fn shards_merge_to_the_single_machine_result_without_a_violation() {
    let dir = tempdir("search-shards-pass");
    let scenario = write(&dir, "pass.toml", PASS);
    let (code, one) = exhaust(&scenario, &["--no-artifact"]);
    assert_eq!(code, 0);
    for n in [1, 2, 4] {
        let out_dir = dir.join(format!("n{n}"));
        let files = shards(&scenario, n, &out_dir, &[]);
        let (code, stdout, stderr) = merge(&files, &out_dir);
        assert_eq!(code, 0, "{n} shards: {stderr}");
        assert_eq!(verdict(&json(&stdout)), verdict(&one), "{n} shards");
    }
}

#[test]
fn shards_merge_to_the_single_machine_violation_and_artifact() {
    let dir = tempdir("search-shards-torn");
    let scenario = write(&dir, "torn.toml", TORN);
    let one_dir = dir.join("one");
    let (code, one) = exhaust(&scenario, &["--artifact-dir", one_dir.to_str().unwrap()]);
    assert_eq!(code, 1, "no-sync-after-int3 tears a fetch");
    assert_eq!(one["shortest"], true);
    for n in [1, 2, 4] {
        let out_dir = dir.join(format!("n{n}"));
        let search_files = shards(&scenario, n, &out_dir, &[]);
        let merged_dir = dir.join(format!("merged{n}"));
        let (code, stdout, stderr) = merge(&search_files, &merged_dir);
        assert_eq!(code, 1, "{n} shards: {stderr}");
        let merged = json(&stdout);
        assert_eq!(verdict(&merged), verdict(&one), "{n} shards");
        assert_eq!(
            (merged["states"].clone(), merged["transitions"].clone()),
            (one["states"].clone(), one["transitions"].clone())
        );
        let artifact =
            |r: &serde_json::Value| std::fs::read_to_string(r["artifact"].as_str().expect("an artifact")).unwrap();
        assert_eq!(artifact(&merged), artifact(&one), "{n} shards: the same artifact");
    }
}

#[test]
fn the_merge_refuses_a_missing_duplicate_foreign_or_cut_shard() {
    let dir = tempdir("search-shards-refused");
    let scenario = write(&dir, "pass.toml", PASS);
    let files = shards(&scenario, 2, &dir.join("two"), &[]);
    let refused = |files: &[PathBuf], what: &str| {
        let (code, _, stderr) = merge(files, &dir.join("m"));
        assert_eq!(code, 2, "{what}: {stderr}");
        stderr
    };
    assert!(refused(&files[..1], "missing").contains("is missing"));
    assert!(refused(&[files[0].clone(), files[0].clone()], "duplicate").contains("is also"));
    let other = write(&dir, "other.toml", &PASS.replace("cpus = 3", "cpus = 2"));
    let foreign = shards(&other, 2, &dir.join("other"), &[]);
    assert!(refused(&[files[0].clone(), foreign[1].clone()], "foreign").contains("not of"));
    let cut = shards(&scenario, 2, &dir.join("cut"), &["--max-states", "2000"]);
    assert!(refused(&cut, "cut").contains("stopped before searching its whole part"));
    let text = std::fs::read_to_string(&files[1]).unwrap().replacen("\"complete\":true", "\"complete\":false", 1);
    let edited = write(&dir, "edited.json", &text);
    assert!(refused(&[files[0].clone(), edited], "edited").contains("stopped before"));
}

#[test]
fn shards_are_refused_where_they_cannot_act() {
    let dir = tempdir("search-shards-flags");
    let scenario = write(&dir, "pass.toml", PASS);
    let refused = |args: &[&str]| {
        let (code, _, stderr) = out(pokesim().arg("exhaust").arg(&scenario).args(args));
        assert_eq!(code, 2, "{args:?}: {stderr}");
        stderr
    };
    assert!(refused(&["--shard", "0/2", "--bound", "1", "--iterations", "1"]).contains("--shard"));
    assert!(refused(&["--shard", "0/2", "--no-artifact"]).contains("--no-artifact"));
    assert!(refused(&["--shard", "2/2"]).contains("--shard"));
}
