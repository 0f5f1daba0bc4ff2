//! Shards that add up: a campaign run as N shards and merged (`scenarios::shard::merge`) is,
//! field by field, the campaign run on one machine — for a campaign whose first violation
//! lies past the first batch, and for passing campaigns with and without exhausted runs —
//! and the merge refuses what it cannot establish.

use std::time::Duration;

use scenarios::campaign::{Campaign, CampaignResult, Shard};
use scenarios::file::ScenarioFile;
use scenarios::shard::{merge, MergeError, ShardFile, ShardResult};

/// First violation at seed index 44: past the first two batches of 16.
const LATE: &str = "protocol = \"linux-5.5\"\ncpus = 2\nmutants = [\"no-sync-after-tail\"]\nruns = 100\n\
                    [workload]\nkind = \"ftrace\"\nrounds = 2\n";
/// 40 passing runs.
const PASS: &str = "protocol = \"linux-5.5\"\ncpus = 2\nruns = 40\n[workload]\nkind = \"ftrace\"\nrounds = 2\n";
/// 40 runs, 9 of which spend their tick budget.
const EXHAUSTS: &str =
    "protocol = \"linux-5.5\"\ncpus = 2\nruns = 40\nsteps = 300\n[workload]\nkind = \"ftrace\"\nrounds = 2\n";

fn scenario(toml: &str) -> ScenarioFile {
    ScenarioFile::parse("test.toml", toml, "test").expect("a valid scenario")
}

fn run(file: &ScenarioFile, shard: Shard, time: Option<Duration>) -> CampaignResult {
    let at = Campaign::seeds(&file.scenario);
    Campaign { scenario_at: &at, runs: file.runs, shard, time }.run(&|_| {}).expect("the campaign runs")
}

/// Shard `i/n` through its file: written as JSON and read back.
fn shard_file(file: &ScenarioFile, shard: Shard, time: Option<Duration>) -> ShardFile {
    let r = ShardResult::new(file, &["--cpus (the file had 4)".into()], shard, &run(file, shard, time));
    let name = r.file_name();
    let json = serde_json::to_string(&r).expect("serialises");
    let back = ShardResult::parse(&name, &json).expect("reads back");
    assert_eq!(back.result, r);
    back
}

fn shards(file: &ScenarioFile, n: u64) -> Vec<ShardFile> {
    (0..n).map(|index| shard_file(file, Shard { index, count: n }, None)).collect()
}

/// Every field a report, an artifact or an exit status reads, and the block sums.
fn assert_same(one: &CampaignResult, merged: &CampaignResult, what: &str) {
    assert_eq!(merged.runs, one.runs, "{what}: runs");
    assert_eq!(merged.totals, one.totals, "{what}: totals");
    assert_eq!(merged.exhausted, one.exhausted, "{what}: exhausted");
    assert_eq!(merged.first_exhausted, one.first_exhausted, "{what}: first_exhausted");
    assert_eq!(merged.complete, one.complete, "{what}: complete");
    assert_eq!(merged.verdict(), one.verdict(), "{what}: verdict");
    assert_eq!(merged.blocks, one.blocks, "{what}: blocks");
    let last = |r: &CampaignResult| r.last.as_ref().map(|(k, o)| (*k, o.clone()));
    assert_eq!(last(merged), last(one), "{what}: last run");
    match (&one.found, &merged.found) {
        (None, None) => {}
        (Some(a), Some(b)) => {
            assert_eq!(b.index, a.index, "{what}: found index");
            assert_eq!(b.scenario, a.scenario, "{what}: found scenario (seed {})", a.scenario.seed);
            assert_eq!(b.outcome.violations, a.outcome.violations, "{what}: violations");
            assert_eq!(b.outcome.trace_hash, a.outcome.trace_hash, "{what}: trace hash");
            assert_eq!(b.outcome.stats, a.outcome.stats, "{what}: the found run's stats");
            assert_eq!(b.outcome.decisions, a.outcome.decisions, "{what}: the found run's decisions");
        }
        (a, b) => panic!("{what}: found {:?} on one machine, {:?} merged", a.is_some(), b.is_some()),
    }
}

fn merges_to_one_machine(toml: &str) -> CampaignResult {
    let file = scenario(toml);
    let one = run(&file, Shard::ALL, None);
    for n in [1, 2, 3, 4] {
        let m = merge(&shards(&file, n)).unwrap_or_else(|e| panic!("{n} shards: {e}"));
        assert_same(&one, &m.result, &format!("{n} shards"));
        assert_eq!(m.scenario, file);
        assert_eq!(m.overrides, ["--cpus (the file had 4)"]);
        assert_eq!(m.files.len() as u64, n);
    }
    one
}

#[test]
fn a_late_violation_merges_to_the_single_machine_result() {
    let one = merges_to_one_machine(LATE);
    let found = one.found.as_ref().expect("a violation");
    assert!(found.index >= 17, "the first violation must lie past the first batch: {}", found.index);
    assert!(one.runs < 100 && !one.complete);
}

#[test]
fn passing_campaigns_merge_to_the_single_machine_result() {
    let one = merges_to_one_machine(PASS);
    assert!(one.complete && one.runs == 40 && one.exhausted == 0 && one.totals.ticks > 0);
    let one = merges_to_one_machine(EXHAUSTS);
    assert!(one.exhausted > 0 && one.first_exhausted.is_some() && one.totals.ticks > 0, "{one:?}");
}

#[test]
fn missing_duplicate_and_foreign_shards_are_refused() {
    let file = scenario(PASS);
    let mut four = shards(&file, 4);
    let third = four.remove(2);
    let e = merge(&four).expect_err("a shard is missing");
    assert!(matches!(e, MergeError::Missing { missing: 1, .. }), "{e}");
    assert!(e.to_string().contains("2/4"), "{e}");
    four.push(four[0].clone());
    let e = merge(&four).expect_err("a shard twice");
    assert!(matches!(e, MergeError::Duplicate { shard: Shard { index: 0, count: 4 }, .. }), "{e}");
    four.pop();
    four.push(third);
    assert!(merge(&four).is_ok());
    let other = scenario(&PASS.replace("runs = 40", "runs = 40\nseed = 1"));
    four[1] = shard_file(&other, Shard { index: 1, count: 4 }, None);
    let e = merge(&four).expect_err("another campaign");
    assert!(matches!(e, MergeError::DifferentCampaigns { .. }), "{e}");
    let two = shards(&file, 2);
    four[1] = two[1].clone();
    assert!(matches!(merge(&four), Err(MergeError::DifferentCampaigns { .. })));
    assert!(matches!(merge(&[]), Err(MergeError::Empty)));
}

#[test]
fn a_shard_stopped_by_time_gives_no_verdict() {
    let file = scenario(PASS);
    let mut two = shards(&file, 2);
    two[1] = shard_file(&file, Shard { index: 1, count: 2 }, Some(Duration::ZERO));
    assert!(!two[1].result.complete);
    let e = merge(&two).expect_err("shard 1 ran nothing");
    assert!(matches!(e, MergeError::Short { shard: Shard { index: 1, count: 2 }, ran: 0, needed: 20, .. }), "{e}");
    // A violation in an early block needs only the blocks up to it.
    let late = scenario(LATE);
    let mut two = shards(&late, 2);
    let found = two.iter().find_map(|s| s.result.found.clone()).expect("a violation");
    let other = 1 - found.index % 2;
    let s = &mut two[other as usize].result;
    let keep = (found.index / 16 + 1) as usize;
    assert!(s.blocks.len() > keep, "the other shard ran past the violation's block");
    s.blocks.truncate(keep - 1);
    let e = merge(&two).expect_err("the other shard stops short of the violation's block");
    assert!(matches!(e, MergeError::Short { .. }), "{e}");
}

#[test]
fn a_found_run_that_does_not_reproduce_is_an_error() {
    let late = scenario(LATE);
    let mut two = shards(&late, 2);
    let s = two.iter_mut().find(|s| s.result.found.is_some()).expect("a violation");
    if let Some(f) = s.result.found.as_mut() {
        f.trace_hash = "0123456789abcdef".into();
    }
    let e = merge(&two).expect_err("the trace hash differs");
    assert!(matches!(e, MergeError::Irreproducible { field: "trace_hash", .. }), "{e}");
}

#[test]
fn bad_shard_files_name_the_file_and_field() {
    let file = scenario(PASS);
    let r = &shard_file(&file, Shard { index: 0, count: 2 }, None).result;
    let json = serde_json::to_value(r).expect("serialises");
    let edit = |f: &dyn Fn(&mut serde_json::Value)| {
        let mut v = json.clone();
        f(&mut v);
        ShardResult::parse("s.json", &v.to_string()).expect_err("refused").to_string()
    };
    assert!(edit(&|v| v["kind"] = "artifact".into()).contains("s.json: field `kind`"));
    assert!(edit(&|v| v["format"] = 9.into()).contains("field `format`"));
    assert!(edit(&|v| v["campaign"] = "00".into()).contains("field `campaign`"));
    assert!(edit(&|v| v["runs"] = 41.into()).contains("field `scenario`"));
    assert!(edit(&|v| v["shard"]["index"] = 2.into()).contains("field `shard`"));
    assert!(edit(&|v| v["runs_done"] = 3.into()).contains("field `runs_done`"));
    assert!(edit(&|v| v["blocks"][0]["ran"] = 9.into()).contains("field `blocks`"));
    let no_runs = edit(&|v| {
        v.as_object_mut().map(|o| o.remove("runs"));
    });
    assert!(no_runs.contains("s.json") && no_runs.contains("runs"), "{no_runs}");
    assert!(ShardResult::parse("t.json", "{\"kind\":").expect_err("truncated").to_string().contains("t.json"));
}
