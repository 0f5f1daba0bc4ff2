//! No verdict without evidence (issue 21): a campaign that ran nothing, a search cut by its
//! tick budget or its limit, a counterexample that must replay, a shard whose result was lost;
//! every exhaust flag acts in its mode or is refused; bounds are checked before the work; and
//! every long command reports progress on stderr (tested through the hidden
//! `POKESIM_PROGRESS_PERIOD_MS=0`, which prints a status line at every update — no clock).

mod common;

use std::path::Path;

use common::*;

/// A small scenario: one ftrace site, one round, 2 vCPUs (bounded search finishes at once).
const SMALL: &str = "protocol = \"linux-5.5\"\ncpus = 2\n[workload]\nkind = \"ftrace\"\nrounds = 1\n";

/// `pokesim ARGS` run in `dir`: exit code, stdout, stderr.
fn run_in(dir: &Path, args: &[&str]) -> (i32, String, String) {
    out(pokesim().current_dir(dir).args(args))
}

// --- No verdict from runs that established nothing ------------------------------------------

#[test]
fn explore_whose_time_ran_out_before_any_run_has_no_verdict() {
    let dir = tempdir("evidence-explore-time");
    let args = ["explore", "--mutant", "no-int3", "--time", "1e-9", "--no-artifact"];
    let (code, stdout, stderr) = run_in(&dir, &args);
    assert_eq!(code, 4, "0 runs establish nothing: {stdout}{stderr}");
    assert!(stdout.contains("runs       0 "), "{stdout}");
    assert!(!stdout.contains("verdict    pass"), "{stdout}");
    assert!(stdout.contains("verdict    none: no run finished") && stdout.contains("--time"), "{stdout}");
    assert!(stdout.contains("(not established)"), "{stdout}");
    let (code, stdout, _) = run_in(&dir, &[&args[..], &["--json"]].concat());
    assert_eq!(code, 4);
    let j = json(&stdout);
    assert!(j["verdict"].is_null() && j["expected"] == false, "{j}");
    assert!(j["no_verdict"].as_str().is_some_and(|s| s.contains("--time")), "{j}");
}

#[test]
fn a_shard_that_holds_no_seed_has_no_verdict_but_writes_its_result() {
    let dir = tempdir("evidence-empty-shard");
    let (code, stdout, stderr) = run_in(&dir, &["explore", "--runs", "1", "--shard", "1/2", "--artifact-dir", "out"]);
    assert_eq!(code, 4, "{stdout}{stderr}");
    assert!(stdout.contains("verdict    none: no run: shard 1/2 holds none"), "{stdout}");
    let written = std::fs::read_dir(dir.join("out")).expect("the shard result's directory").count();
    assert_eq!(written, 1, "merge still needs the empty shard's result");
}

#[test]
fn bounded_exhaust_whose_executions_spent_their_budget_has_no_verdict() {
    let dir = tempdir("evidence-bounded-steps");
    let args = ["exhaust", "--bound", "1", "--ticks", "5", "--mutant", "no-sync-after-int3", "--no-artifact"];
    let (code, stdout, stderr) = run_in(&dir, &args);
    assert_eq!(code, 4, "executions cut by the tick budget establish nothing: {stdout}{stderr}");
    assert!(!stdout.contains("no violation"), "{stdout}");
    assert!(stdout.contains("spent their tick budget") && stdout.contains("--ticks"), "{stdout}");
    let (code, stdout, _) = run_in(&dir, &[&args[..], &["--json"]].concat());
    assert_eq!(code, 4);
    let j = json(&stdout);
    assert_eq!(j["complete"], false, "{j}");
    assert!(j["exhausted"].as_u64().is_some_and(|n| n > 0 && Some(n) <= j["executions"].as_u64()), "{j}");
    // A violation found within the budget stands (exit 1), cut executions or not.
    let (code, stdout, _) =
        run_in(&dir, &["exhaust", "--bound", "1", "--rounds", "1", "--mutant", "no-sync-after-int3", "--no-artifact"]);
    assert_eq!(code, 1, "{stdout}");
}

#[test]
fn a_complete_search_counterexample_replays_whatever_the_files_tick_budget() {
    let dir = tempdir("evidence-complete-steps");
    write(&dir, "s.toml", "mutants = [\"no-sync-after-int3\"]\nticks = 5\n[workload]\nkind = \"ftrace\"\n");
    let (code, stdout, stderr) = run_in(&dir, &["exhaust", "s.toml", "--artifact-dir", "arts", "--json"]);
    assert_eq!(code, 1, "the violation is found and kept: {stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!(j["violation"]["kind"], "torn-fetch", "{j}");
    assert!(j["budget"].as_u64().is_some_and(|b| b > 5), "the artifact records the budget it needs: {j}");
    let artifact = j["artifact"].as_str().expect("an artifact").to_string();
    let (code, stdout, stderr) = run_in(&dir, &["replay", &artifact]);
    assert_eq!(code, 0, "the counterexample replays: {stdout}{stderr}");
    // The flag cannot act in a complete search: refused, named.
    let (code, _, stderr) = run_in(&dir, &["exhaust", "--ticks", "5", "--mutant", "no-sync-after-int3"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--ticks") && stderr.contains("complete"), "{stderr}");
}

#[test]
fn a_shard_whose_result_cannot_be_written_fails() {
    let dir = tempdir("evidence-shard-lost");
    let shard = ["explore", "--runs", "16", "--shard", "0/2", "--artifact-dir"];
    // An artifact directory that is not one: refused before the work.
    write(&dir, "not-a-dir", "");
    let (code, stdout, stderr) = run_in(&dir, &[&shard[..], &["not-a-dir"]].concat());
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty() && stderr.contains("--artifact-dir not-a-dir"), "{stdout}{stderr}");
    // A write that fails after the work (a directory where the result goes): exit 2, with
    // the report of what ran.
    let (code, stdout, _) = run_in(&dir, &[&shard[..], &["first", "--json", "-q"]].concat());
    assert_eq!(code, 0, "{stdout}");
    let name = Path::new(json(&stdout)["shard_result"].as_str().expect("written")).file_name().unwrap().to_owned();
    std::fs::create_dir_all(dir.join("second").join(&name).join("x")).expect("a directory in its place");
    let (code, stdout, stderr) = run_in(&dir, &[&shard[..], &["second"]].concat());
    assert_eq!(code, 2, "the shard's work is lost to merge: {stdout}{stderr}");
    assert!(stderr.contains("--artifact-dir second") && stderr.contains("merge"), "{stderr}");
    assert!(stdout.contains("shard      result not written"), "the report still says what ran: {stdout}");
}

// --- A search's budget is honoured or refused in each mode ----------------------------------

#[test]
fn every_exhaust_flag_acts_in_its_mode_or_is_refused() {
    let dir = tempdir("evidence-exhaust-flags");
    write(&dir, "small.toml", SMALL);
    for (args, flag) in [
        (&["--bound", "0", "--max-states", "1"][..], "--max-states"),
        (&["--bound", "0", "--all-kinds"], "--all-kinds"),
        (&["--bound", "0", "--no-symmetry"], "--no-symmetry"),
        (&["--max-executions", "1"], "--max-executions"),
        (&["--ticks", "100000"], "--ticks"),
    ] {
        let (code, stdout, stderr) = run_in(&dir, &[&["exhaust", "small.toml"][..], args].concat());
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(flag) && stderr.contains("does not act"), "{args:?}: {stderr}");
    }
    // A flag that another already made moot changes nothing: refused too.
    let (code, _, stderr) = run_in(&dir, &["exhaust", "small.toml", "--no-reduction", "--no-symmetry"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--no-symmetry: --no-reduction already"), "{stderr}");
    // Each limit acts in its own mode: the search stops there, incomplete (exit 4).
    for (args, count, limit) in
        [(&["--bound", "1", "--max-executions", "1"][..], "executions", 1), (&["--max-states", "2"], "states", 2)]
    {
        let (code, stdout, _) = run_in(&dir, &[&["exhaust", "small.toml", "--json"][..], args].concat());
        assert_eq!(code, 4, "{args:?}: {stdout}");
        let j = json(&stdout);
        assert_eq!(j["complete"], false, "{args:?}: {j}");
        assert!(j[count].as_u64().is_some_and(|n| n <= limit), "{args:?}: {j}");
    }
    // --ticks acts in a bounded search: a generous budget changes nothing, a tiny one cuts.
    let bounded = |ticks: &str| {
        let (code, stdout, _) = run_in(&dir, &["exhaust", "small.toml", "--bound", "0", "--ticks", ticks, "--json"]);
        (code, json(&stdout))
    };
    let ((big, jb), (tiny, jt)) = (bounded("1000000"), bounded("3"));
    assert_eq!((big, jb["exhausted"].as_u64()), (0, Some(0)), "{jb}");
    assert_eq!(tiny, 4, "{jt}");
}

// --- Bounds before work ---------------------------------------------------------------------

#[test]
fn check_refuses_rounds_no_row_accepts_before_the_first_row() {
    let dir = tempdir("evidence-check-rounds");
    let (code, stdout, stderr) = run_in(&dir, &["check", "--rounds", "12501", "--no-artifact"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stdout.is_empty(), "no row runs (not even the header prints): {stdout}");
    assert!(stderr.contains("--rounds 12501") && stderr.contains("at most 12500 rounds"), "{stderr}");
    assert!(!stderr.contains("workload.rounds"), "the flag, not a file field: {stderr}");
}

#[test]
fn exhaust_refuses_rounds_its_mode_cannot_search() {
    let dir = tempdir("evidence-exhaust-rounds");
    let (code, stdout, stderr) = run_in(&dir, &["exhaust", "--bound", "0", "--rounds", "65536"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--rounds 65536") && stderr.contains("at most 100 rounds"), "{stderr}");
    // A complete search: its memory grows faster than the rounds.
    let (code, stdout, stderr) = run_in(&dir, &["exhaust", "--rounds", "65536"]);
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("--rounds 65536") && stderr.contains("at most 256 rounds"), "{stderr}");
    write(&dir, "long.toml", &SMALL.replace("rounds = 1", "rounds = 5000"));
    let (code, _, stderr) = run_in(&dir, &["exhaust", "long.toml", "--bound", "0"]);
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("long.toml") && stderr.contains("workload.rounds"), "the file's field: {stderr}");
}

// --- Progress on stderr ---------------------------------------------------------------------

/// `pokesim ARGS` in `dir` with a status line at every progress update: exit code, stderr.
fn with_progress(dir: &Path, args: &[&str]) -> (i32, String) {
    let (code, stdout, stderr) = out(pokesim().current_dir(dir).env("POKESIM_PROGRESS_PERIOD_MS", "0").args(args));
    assert!(!stdout.contains("pokesim: "), "progress goes to stderr, not stdout: {stdout}");
    (code, stderr)
}

#[test]
fn every_long_command_reports_progress_and_quiet_silences_it() {
    let dir = tempdir("evidence-progress");
    write(&dir, "small.toml", SMALL);
    write(&dir, "failing.toml", FAILING);
    for i in 0..2 {
        let shard = format!("{i}/2");
        let (code, _, stderr) = run_in(
            &dir,
            &["explore", "small.toml", "--runs", "8", "--shard", &shard, "--artifact-dir", "shards", "-q"],
        );
        assert_eq!(code, 0, "{stderr}");
    }
    let shards: Vec<String> = std::fs::read_dir(dir.join("shards"))
        .expect("the shard results")
        .map(|e| e.expect("an entry").path().display().to_string())
        .collect();
    let (code, _, stderr) = run_in(&dir, &["run", "failing.toml", "--artifact-dir", "arts", "-q"]);
    assert_eq!(code, 0, "{stderr}");
    let artifact = std::fs::read_dir(dir.join("arts")).expect("an artifact").next().expect("one").expect("ok").path();
    let artifact = artifact.display().to_string();
    let mut merge = vec!["merge", "--no-artifact"];
    merge.extend(shards.iter().map(String::as_str));
    let cases: Vec<(Vec<&str>, &str)> = vec![
        (vec!["run", "small.toml", "--runs", "3", "--no-artifact"], "run: 3/3 runs done"),
        (vec!["explore", "small.toml", "--runs", "3", "--no-artifact"], "explore: 3/3 runs done"),
        (vec!["exhaust", "small.toml", "--bound", "0", "--no-artifact"], "exhaust: 1 executions done"),
        (vec!["exhaust", "small.toml", "--no-artifact"], " states done"),
        (vec!["check", "--runs", "1", "--rounds", "1", "--no-artifact"], "check: 1/"),
        (
            vec!["mutants", "--workload", "ftrace", "--protocol", "linux-6.16", "--preset", "snapshot"]
                .into_iter()
                .chain(["--kernel", "CONFIG_KPROBES=y", "--runs", "1"])
                .collect(),
            "mutants: 1/",
        ),
        (merge, "merge: 1 repeated runs done"),
        (vec!["shrink", &artifact, "-o", "shrunk.json"], "shrink: 1 test runs done"),
    ];
    for (args, line) in cases {
        let (code, stderr) = with_progress(&dir, &args);
        assert!(code != 2 && code != 3, "{args:?}: {stderr}");
        assert!(stderr.contains(line), "{args:?}: no progress line {line:?} on stderr: {stderr}");
        let (_, quiet) = with_progress(&dir, &[&args[..], &["--quiet"]].concat());
        assert!(!quiet.contains(" done, "), "{args:?} --quiet: {quiet}");
    }
}

#[test]
fn progress_denominators_are_real_work_never_a_cap() {
    let dir = tempdir("evidence-progress-denominators");
    write(&dir, "small.toml", SMALL);
    let (_, stderr) = with_progress(&dir, &["exhaust", "small.toml", "--bound", "1", "--no-artifact"]);
    assert!(stderr.contains("exhaust: 2 executions done"), "{stderr}");
    assert!(!stderr.contains("/5000000"), "--max-executions is a cap, not the expected work: {stderr}");
    write(&dir, "failing.toml", FAILING);
    let (_, _, _) = run_in(&dir, &["run", "failing.toml", "--artifact-dir", "arts", "-q"]);
    let artifact = std::fs::read_dir(dir.join("arts")).expect("an artifact").next().expect("one").expect("ok").path();
    let (code, stderr) = with_progress(&dir, &["shrink", &artifact.display().to_string(), "-o", "s.json"]);
    assert_eq!(code, 0, "{stderr}");
    assert!(stderr.contains("shrink: 1 test runs done") && !stderr.contains("/20000"), "{stderr}");
}
