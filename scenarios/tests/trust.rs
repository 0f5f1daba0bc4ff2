//! Answers a user can trust (issue 8): every way the first generation gave a wrong answer,
//! lost a result, crashed, hung or could not be installed, tried the way a user would — each
//! test reproduces one of them through the binary and shows it is gone.

mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::*;
use serde_json::Value;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

// --- Install ------------------------------------------------------------------------------

#[test]
fn the_readme_install_line_has_every_build_dependency_and_ci_runs_it_verbatim() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let ci = std::fs::read_to_string(repo().join(".ci/run")).unwrap();
    let installs: Vec<&str> = readme.lines().filter(|l| l.contains("apt-get install")).collect();
    assert!(installs.len() >= 2, "the README gives two set-up commands");
    for line in &installs {
        for pkg in ["pkg-config", "cmake", "clang", "libclang-dev"] {
            assert!(line.split_whitespace().any(|w| w == pkg), "{pkg} missing from: {line}");
        }
    }
    let test_cmd = installs.iter().find(|l| l.ends_with("cargo test --workspace")).expect("the README's test command");
    assert!(ci.lines().any(|l| l.trim() == test_cmd.trim()), ".ci/run must run the README's test command verbatim");
}

#[test]
fn the_readme_links_only_files_in_the_repository() {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    assert!(!readme.contains("../shared"), "a user who clones the repository has no ../shared");
    let mut checked = 0;
    for piece in readme.split("](").skip(1) {
        let target = piece.split(')').next().unwrap_or("");
        if target.starts_with("http") || target.starts_with('#') {
            continue;
        }
        let path = target.split('#').next().unwrap_or("");
        assert!(repo().join(path).exists(), "the README links {target}, which is not in the repository");
        checked += 1;
    }
    assert!(checked >= 3, "the README links the design document and the references");
    for doc in ["docs/DESIGN.md", "docs/reference/x86-cmc.md", "docs/programs.md"] {
        assert!(repo().join(doc).exists(), "{doc} is part of the repository");
    }
}

// --- False pass -----------------------------------------------------------------------------

#[test]
fn flags_before_a_scenario_file_override_it_and_say_so() {
    let file = corpus_dir().join("pass-linux-5.5-ftrace.toml");
    let (code, stdout, stderr) =
        out(pokesim().args(["run", "--mutant", "no-int3"]).arg(&file).args(["--json", "--no-artifact"]));
    assert_eq!(code, 1, "a mutant over a passing file must not pass silently: {stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!(j["verdict"], "violation");
    assert_eq!(j["scenario"]["mutants"][0], "no-int3");
    assert!(j["overrides"][0].as_str().unwrap().starts_with("--mutant"), "{j}");
    for (flag, value, field) in [("--cpus", "8", "cpus"), ("--seed", "5", "seed"), ("--rounds", "3", "rounds")] {
        let (code, stdout, _) = out(pokesim().args(["run", flag, value]).arg(&file).args(["--json", "--no-artifact"]));
        assert_eq!(code, 0);
        assert_eq!(json(&stdout)["scenario"][field].to_string(), value, "{flag} before the file");
    }
    let (_, stdout, _) =
        out(pokesim().args(["run", "--protocol", "linux-6.16", "--workload", "jcc"]).arg(&file).arg("--json"));
    let j = json(&stdout);
    assert_eq!(
        (j["scenario"]["protocol"].as_str(), j["scenario"]["workload"].as_str()),
        (Some("linux-6.16"), Some("jcc"))
    );
    let dir = tempdir("trust-artifact-dir-equals");
    let arg = format!("--artifact-dir={}", dir.display());
    let (code, stdout, stderr) = out(pokesim().args(["run", "--mutant", "no-int3", &arg]).arg(&file));
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert!(std::fs::read_dir(&dir).unwrap().count() == 1, "the --artifact-dir=DIR form is honoured");
}

// --- False kernel bug -------------------------------------------------------------------------

fn refused(dir: &Path, name: &str, text: &str, wants: &[&str]) {
    let file = write(dir, name, text);
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(&file).arg("--no-artifact"));
    assert_eq!(code, 2, "{name} must be refused: {stdout}{stderr}");
    for w in wants {
        assert!(stderr.contains(w), "{name}: expected '{w}' in: {stderr}");
    }
}

#[test]
fn a_kprobe_must_start_a_plain_instruction_outside_the_patched_sites() {
    let dir = tempdir("trust-kprobes");
    let head = "protocol = \"linux-5.5\"\n[workload]\nkind = \"ftrace\"\n";
    refused(
        &dir,
        "inside.toml",
        &format!("{head}[[kprobes]]\naddr = 0x400001\n"),
        &["inside.toml:5: field `kprobes[0]`", "splits the instruction `inc qword ptr [rbx]` (48 ff 03) at 0x400000"],
    );
    refused(
        &dir,
        "site.toml",
        &format!("{head}[[kprobes]]\naddr = 0x400800\n"),
        &["inside the patched site 0x400800+5", "check_ftrace_location()"],
    );
    refused(&dir, "call.toml", &format!("{head}[[kprobes]]\naddr = 0x400809\n"), &["`ret`", "cannot be probed here"]);
    refused(&dir, "pad.toml", &format!("{head}[[kprobes]]\naddr = 0x400f00\n"), &["INT3 padding"]);
    refused(
        &dir,
        "twice.toml",
        &format!("{head}[[kprobes]]\naddr = 0x400000\n[[kprobes]]\naddr = 0x400000\n"),
        &["kprobes[1]", "probed twice"],
    );
    let (code, _, stderr) = out(pokesim().args(["run", "--kprobe-at", "0x400001"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--kprobe-at: 0x400001 splits the instruction"), "{stderr}");
}

#[test]
fn options_and_values_that_would_be_ignored_are_refused() {
    let dir = tempdir("trust-ignored");
    let ftrace = "[workload]\nkind = \"ftrace\"\n";
    refused(
        &dir,
        "sites.toml",
        &format!("{ftrace}sites = 4\n"),
        &["sites.toml:3: field `workload.sites`", "only the batch"],
    );
    refused(&dir, "order.toml", &format!("{ftrace}order = \"descending\"\n"), &["field `workload.order`"]);
    refused(&dir, "tail.toml", &format!("{ftrace}tail = false\n"), &["field `workload.tail`", "only the static_call"]);
    refused(
        &dir,
        "dup.toml",
        &format!("mutants = [\"no-int3\", \"no-int3\"]\n{ftrace}"),
        &["field `mutants`", "listed twice"],
    );
    refused(&dir, "zero.toml", &format!("{ftrace}rounds = 0\n"), &["field `workload.rounds`", "0 is out of range"]);
    refused(
        &dir,
        "replay.toml",
        &format!("strategy = \"replay\"\n{ftrace}"),
        &["field `strategy`", "needs a recorded"],
    );
    refused(
        &dir,
        "nothing.toml",
        &format!("program = [\"end-batch\"]\n{ftrace}"),
        &["field `program`", "patches nothing"],
    );
    refused(
        &dir,
        "variant.toml",
        "[workload]\nkind = \"ftrace+kprobe\"\nkprobe = false\n",
        &["contradicts the workload variant"],
    );
    let (code, _, stderr) = out(pokesim().args(["run", "--workload", "ftrace", "--sites", "4"]));
    assert_eq!(code, 2);
    assert!(stderr.contains("--sites: only the batch workload has it"), "{stderr}");
}

#[test]
fn the_batch_workload_honours_its_site_placement() {
    let hash = |site: &str| {
        let args =
            ["run", "--workload", "batch", "--protocol", "linux-6.16", "--rounds", "2", "--site", site, "--json"];
        let (code, stdout, stderr) = out(pokesim().args(args));
        assert_eq!(code, 0, "{site}: {stdout}{stderr}");
        json(&stdout)["trace_hash"].as_str().unwrap().to_string()
    };
    let aligned = hash("aligned");
    for site in ["cross16", "cross64", "cross-page"] {
        assert_ne!(hash(site), aligned, "batch ran the same with site = {site}: the placement was ignored");
    }
}

// --- Crashes and unbounded work ---------------------------------------------------------------

#[test]
fn out_of_range_numbers_are_refused_before_any_work() {
    let dir = tempdir("trust-bounds");
    let f = write(&dir, "f.toml", FAILING);
    let cases: &[(&[&str], &str)] = &[
        (&["run", "--rounds", "4294967295"], "--rounds: 4294967295 is out of range"),
        (&["run", "--workload", "batch", "--sites", "300", "--rounds", "1000"], "300000 patch requests"),
        (&["run", "--cpus", "100000"], "--cpus: 100000 is out of range"),
        (&["run", "--ticks", "18446744073709551615"], "--ticks"),
        (&["run", "--seed", "18446744073709551615"], "--seed"),
        (&["run", "--cpus=-1"], "--cpus: -1 is out of range"),
        (&["explore", "--time", "1e300"], "'1e300' is not a number of seconds"),
        (&["explore", "--time", "NaN"], "--time"),
        (&["explore", "--time=-3"], "--time"),
        (&["explore", "--jobs", "100000"], "--jobs"),
        (&["check", "--jobs", "0"], "--jobs"),
        (&["bench", "--steps", "99999999999"], "--steps"),
        (&["shrink", "--max-runs", "0", "x.json", "-o", "y.json"], "--max-runs"),
    ];
    for (args, want) in cases {
        let (code, stdout, stderr) = out(pokesim().args(*args).current_dir(&dir));
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(want), "{args:?}: expected '{want}' in: {stderr}");
    }
    let (code, _, stderr) = out(pokesim().args(["explore", "--jobs", "100000"]).arg(&f));
    assert_eq!(code, 2, "{stderr}");
}

#[test]
fn only_regular_files_are_read() {
    let dir = tempdir("trust-files");
    let fifo = dir.join("fifo.toml");
    let made = std::process::Command::new("mkfifo").arg(&fifo).status().expect("mkfifo");
    assert!(made.success());
    let big = dir.join("big.toml");
    std::fs::write(&big, vec![b'#'; 17 << 20]).unwrap();
    for (path, want) in
        [(&fifo, "not a regular file"), (&PathBuf::from("/dev/zero"), "not a regular file"), (&big, "more than")]
    {
        for cmd in [&["run"][..], &["explore"], &["exhaust"], &["replay"], &["trace"], &["shrink", "-o", "x.json"]] {
            let (code, _, stderr) = out(pokesim().args(cmd).arg(path));
            assert_eq!(code, 2, "{cmd:?} {}: {stderr}", path.display());
            assert!(stderr.contains(want) && stderr.contains(&path.display().to_string()), "{cmd:?}: {stderr}");
        }
    }
}

#[test]
fn a_custom_program_that_overflows_the_6_16_vector_is_refused() {
    let dir = tempdir("trust-vector");
    let text =
        "protocol = \"linux-6.16\"\nprogram = [\"batch-add\", \"poke-int3\", \"sync\", \"poke-tail\", \"sync\", \
                \"poke-first\", \"sync\", \"end-batch\"]\n[workload]\nkind = \"batch\"\nsites = 300\nrounds = 1\n";
    refused(&dir, "overflow.toml", text, &["field `program`", "would write past text_poke_array.vec (256 entries)"]);
}

#[test]
fn shrink_refuses_a_recording_that_does_not_reproduce() {
    let dir = tempdir("trust-shrink");
    let artifact = failing_artifact(&dir);
    let text = std::fs::read_to_string(&artifact).unwrap();
    let j: Value = serde_json::from_str(&text).unwrap();
    let mut other = j.clone();
    other["violation"]["tick"] = Value::from(j["violation"]["tick"].as_u64().unwrap() + 1);
    let p = write(&dir, "moved.json", &other.to_string());
    let (code, _, stderr) = out(pokesim().arg("shrink").arg(&p).args(["-o", "x.json"]).current_dir(&dir));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("moved.json: field `violation`: does not reproduce"), "{stderr}");
}

#[test]
fn a_closed_stdout_ends_the_command_quietly() {
    for args in [&["run", "--cpus", "4"][..], &["list"], &["corpus"], &["check", "--runs", "1"]] {
        // A pipe whose reader is already gone: the first write fails, as under `| head`.
        let (reader, writer) = std::io::pipe().expect("pipe");
        drop(reader);
        let bin = assert_cmd::cargo::cargo_bin("pokesim");
        let mut child =
            std::process::Command::new(bin).args(args).stdout(writer).stderr(Stdio::piped()).spawn().expect("spawn");
        let status = child.wait().expect("wait");
        let mut stderr = String::new();
        child.stderr.take().unwrap().read_to_string(&mut stderr).unwrap();
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert_eq!(status.code(), Some(141), "{args:?}: {stderr}");
    }
}

// --- Lost results -----------------------------------------------------------------------------

fn failing_artifact(dir: &Path) -> PathBuf {
    let f = write(dir, "failing.toml", FAILING);
    let arts = dir.join("arts");
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(&f).arg("--artifact-dir").arg(&arts).arg("--json"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    PathBuf::from(json(&stdout)["artifact"].as_str().expect("an artifact path"))
}

#[test]
fn an_unwritable_artifact_directory_loses_no_verdict() {
    let dir = tempdir("trust-unwritable");
    let f = write(&dir, "failing.toml", FAILING);
    let blocker = write(&dir, "blocker", "a file, not a directory");
    let arts = blocker.join("arts");
    for cmd in ["run", "explore"] {
        let (code, stdout, stderr) = out(pokesim().arg(cmd).arg(&f).arg("--artifact-dir").arg(&arts).arg("--json"));
        assert_eq!(code, 0, "{cmd}: the expected violation stays a success: {stdout}{stderr}");
        let j = json(&stdout);
        assert_eq!(j["verdict"], "violation", "{cmd}");
        assert!(j["artifact_error"].as_str().is_some_and(|e| e.contains("could not write")), "{cmd}: {j}");
        assert!(stderr.contains("warning: could not write the artifact"), "{cmd}: {stderr}");
    }
    let artifact = failing_artifact(&dir);
    let (code, stdout, stderr) =
        out(pokesim().arg("shrink").arg(&artifact).arg("-o").arg(blocker.join("s.json")).arg("--json"));
    assert_eq!(code, 2, "{stderr}");
    let j = json(&stdout);
    assert!(
        j["write_error"].as_str().is_some() && j["violation"]["kind"] == "torn-fetch",
        "the result is printed: {j}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(artifact.parent().unwrap())
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_name().to_string_lossy().contains(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "no temporary artifact is left behind: {leftovers:?}");
}

#[test]
fn a_broken_corpus_entry_is_a_row_and_the_rest_run() {
    let dir = tempdir("trust-broken-corpus");
    std::fs::copy(corpus_dir().join("pass-linux-5.5-ftrace.toml"), dir.join("a-good.toml")).unwrap();
    write(&dir, "b-broken.toml", "cpus = = 2\n");
    std::fs::copy(corpus_dir().join("bug-b3-seed-kprobe.toml"), dir.join("c-good.toml")).unwrap();
    let (code, stdout, stderr) = out(pokesim().arg("corpus").arg(&dir).args(["--json", "--no-artifact"]));
    assert_eq!(code, 1, "{stdout}{stderr}");
    let rows = json_lines(&stdout);
    let status: Vec<&str> = rows.iter().filter_map(|r| r["status"].as_str()).collect();
    assert_eq!(status, ["ok", "invalid", "ok"], "{stdout}");
    assert!(rows[1]["detail"].as_str().unwrap().contains("b-broken.toml:1"), "{stdout}");
}

#[test]
fn random_and_pct_runs_never_share_an_artifact_name() {
    let dir = tempdir("trust-names");
    let f = write(&dir, "failing.toml", FAILING);
    let arts = dir.join("arts");
    for strategy in ["random", "pct", "pct:2"] {
        let args = ["run", "--runs", "50", "--strategy", strategy];
        let (code, _, stderr) = out(pokesim().args(args).arg(&f).arg("--artifact-dir").arg(&arts));
        assert_eq!(code, 0, "{stderr}");
    }
    let custom = FAILING.replace("mutants = [\"no-int3\"]\n", "program = [\"poke-whole\", \"sync\", \"end-batch\"]\n");
    let g = write(&dir, "custom.toml", &custom);
    let (code, _, stderr) = out(pokesim().arg("run").arg(&g).arg("--artifact-dir").arg(&arts));
    assert_eq!(code, 0, "{stderr}");
    let names: Vec<String> =
        std::fs::read_dir(&arts).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().to_string()).collect();
    assert_eq!(names.len(), 4, "one artifact per strategy and program: {names:?}");
    for part in ["-random-", "-pct3-", "-pct2-", "custom-program"] {
        assert!(names.iter().any(|n| n.contains(part)), "{part}: {names:?}");
    }
}

// --- Replay that does not replay ---------------------------------------------------------------

/// Replay, trace and shrink all accept `artifact` (exit 0).
fn replays(artifact: &Path, scratch: &Path) {
    for cmd in [&["replay"][..], &["trace"], &["shrink", "-o"]] {
        let mut c = pokesim();
        c.args(cmd);
        if cmd.len() == 2 {
            c.arg(scratch.join("shrunk.json"));
        }
        let (code, stdout, stderr) = out(c.arg(artifact));
        assert_eq!(code, 0, "{cmd:?} {}: {stdout}{stderr}", artifact.display());
    }
}

#[test]
fn every_command_that_writes_an_artifact_writes_one_that_replays() {
    let dir = tempdir("trust-every-artifact");
    let f = write(&dir, "failing.toml", FAILING);
    let small = write(&dir, "small.toml", &FAILING.replace("rounds = 2", "rounds = 1"));
    let arts = |name: &str| dir.join(name);
    let runs: Vec<(&str, Vec<String>)> = vec![
        ("run", vec!["run".into(), f.display().to_string()]),
        ("explore", vec!["explore".into(), f.display().to_string(), "--strategy".into(), "pct".into()]),
        ("exhaust", vec!["exhaust".into(), small.display().to_string(), "--bound".into(), "1".into()]),
        ("exhaust-complete", vec!["exhaust".into(), f.display().to_string()]),
        ("check", vec!["check".into(), "--runs".into(), "2".into()]),
        ("corpus", vec!["corpus".into()]),
    ];
    for (name, args) in runs {
        let (_, stdout, stderr) = out(pokesim().args(&args).arg("--artifact-dir").arg(arts(name)).arg("--quiet"));
        let written: Vec<PathBuf> = std::fs::read_dir(arts(name))
            .unwrap_or_else(|e| panic!("{name} wrote no artifact ({e}): {stdout}{stderr}"))
            .map(|e| e.unwrap().path())
            .collect();
        assert!(!written.is_empty(), "{name}");
        for a in written.iter().take(8) {
            replays(a, &dir);
        }
    }
    let artifact = failing_artifact(&dir);
    let (code, _, stderr) = out(pokesim().arg("shrink").arg(&artifact).arg("-o").arg(dir.join("s.json")));
    assert_eq!(code, 0, "{stderr}");
    replays(&dir.join("s.json"), &dir);
}

#[test]
fn altered_recordings_are_refused_by_replay_trace_and_shrink_alike() {
    let dir = tempdir("trust-altered");
    let artifact = failing_artifact(&dir);
    let j: Value = serde_json::from_str(&std::fs::read_to_string(&artifact).unwrap()).unwrap();
    let edit = |f: &dyn Fn(&mut Value)| {
        let mut v = j.clone();
        f(&mut v);
        v
    };
    let first = j["decisions"][0].clone();
    let cases: Vec<(&str, Value, &str)> = vec![
        (
            "flipped.json",
            edit(&|v| {
                v["decisions"][0] = Value::from(vec![
                    first[0].clone(),
                    Value::from((first[1].as_u64().unwrap() + 1) % first[0].as_u64().unwrap()),
                ])
            }),
            "field `",
        ),
        (
            "longer.json",
            edit(&|v| v["zeros_after"] = Value::from(j["zeros_after"].as_u64().unwrap() + 1000)),
            "ended after",
        ),
        (
            "extra.json",
            edit(&|v| {
                v["decisions"].as_array_mut().unwrap().extend(std::iter::repeat_n(Value::from(vec![2, 1]), 1000))
            }),
            "field `decisions`",
        ),
        ("future.json", edit(&|v| v["pokesim_version"] = Value::from("99.0.0")), "newer than this pokesim"),
    ];
    for (name, value, want) in cases {
        let p = write(&dir, name, &value.to_string());
        for cmd in [&["replay"][..], &["trace"], &["shrink", "-o", "x.json"]] {
            let (code, stdout, stderr) = out(pokesim().args(cmd).arg(&p).current_dir(&dir));
            assert_eq!(code, 2, "{cmd:?} {name}: {stdout}{stderr}");
            assert!(stderr.contains(name) && stderr.contains(want), "{cmd:?} {name}: expected '{want}' in {stderr}");
        }
    }
}

#[test]
fn trace_and_shrink_accept_recorded_corpus_entries_as_replay_does() {
    let dir = tempdir("trust-entries");
    replays(&corpus_dir().join("mutant-no-sync-after-int3-linux-5.5.toml"), &dir);
    let (code, _, stderr) = out(pokesim().arg("trace").arg(corpus_dir().join("pass-linux-5.5-ftrace.toml")));
    assert_eq!(code, 2);
    assert!(stderr.contains("field `decisions`: missing"), "{stderr}");
}

// --- A seed that does not reproduce -------------------------------------------------------------

#[test]
fn a_pct_seed_found_by_explore_reproduces_under_run() {
    let dir = tempdir("trust-pct-seed");
    let f = write(
        &dir,
        "int3.toml",
        "protocol = \"linux-5.5\"\ncpus = 4\nmutants = [\"no-sync-after-int3\"]\n[workload]\nkind = \"ftrace\"\n",
    );
    let (code, stdout, _) =
        out(pokesim().arg("explore").arg(&f).args(["--strategy", "pct", "--runs", "200", "--json", "--no-artifact"]));
    assert_eq!(code, 1, "{stdout}");
    let found = json(&stdout);
    let seed = found["seed"].as_u64().unwrap().to_string();
    let (code, stdout, _) =
        out(pokesim().arg("run").arg(&f).args(["--strategy", "pct", "--seed", &seed, "--json", "--no-artifact"]));
    assert_eq!(code, 1);
    let again = json(&stdout);
    assert_eq!(again["violations"], found["violations"]);
    assert_eq!(again["trace_hash"], found["trace_hash"]);
}

#[test]
fn corpus_without_a_directory_runs_the_corpus_inside_the_binary() {
    let dir = tempdir("trust-installed");
    let bin = dir.join("pokesim");
    std::fs::copy(assert_cmd::cargo::cargo_bin("pokesim"), &bin).unwrap();
    let o = std::process::Command::new(&bin)
        .args(["corpus", "--json", "--no-artifact"])
        .current_dir(&dir)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", String::from_utf8_lossy(&o.stderr));
    let rows = json_lines(&String::from_utf8_lossy(&o.stdout));
    let entries: Vec<&Value> = rows.iter().filter(|r| r.get("status").is_some()).collect();
    assert!(entries.len() >= 80);
    assert!(entries.iter().all(|r| r["file"].as_str().unwrap().starts_with("<built-in corpus>/")), "{:?}", entries[0]);
}

// --- A budget is not a bug -----------------------------------------------------------------------

#[test]
fn a_correct_protocol_at_64_vcpus_and_300_sites_passes_with_the_default_budget() {
    let args =
        ["run", "--workload", "batch", "--sites", "300", "--cpus", "64", "--protocol", "linux-6.16", "--rounds", "8"];
    let (code, stdout, stderr) = out(pokesim().args(args).arg("--json"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let j = json(&stdout);
    assert_eq!(j["verdict"], "pass");
    assert!(j["stats"]["ticks"].as_u64().unwrap() > 1_000_000, "the run is longer than the old fixed budget");
}

#[test]
fn campaigns_keep_no_decision_log_for_runs_that_pass() {
    use scenarios::catalogue::scenario;
    use scenarios::workload::{WorkloadKind, WorkloadSpec};
    let s = scenario(sim_core::Protocol::Linux55, &[], WorkloadSpec::new(WorkloadKind::Ftrace), "pessimistic", 0);
    let o = s.run_unrecorded().unwrap();
    assert!(o.decisions.is_empty() && o.stats.decisions > 1000, "memory must not grow with the run's length");
}

// --- Silence -------------------------------------------------------------------------------------

#[test]
fn check_streams_its_rows_as_they_finish() {
    let bin = assert_cmd::cargo::cargo_bin("pokesim");
    let mut child = std::process::Command::new(bin)
        .args(["check", "--no-artifact", "--quiet"])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    let mut byte = [0u8];
    while seen.iter().filter(|&&b| b == b'\n').count() < 2 && stdout.read(&mut byte).unwrap() == 1 {
        seen.push(byte[0]);
    }
    let still_running = child.try_wait().unwrap().is_none();
    let _ = child.kill();
    let _ = child.wait();
    let text = String::from_utf8_lossy(&seen);
    assert!(text.lines().nth(1).is_some_and(|l| l.contains("ftrace/seed@pessimistic")), "{text}");
    assert!(still_running, "the first row must be printed before the whole table is done");
}

// --- Inconsistent interface ----------------------------------------------------------------------

#[test]
fn the_same_names_mean_the_same_thing_on_every_command() {
    let (code, stdout, stderr) = out(pokesim()
        .args(["mutants", "--protocol", "seed", "--workload", "ftrace+kprobe", "--preset", "snapshot"])
        .args(["--runs", "2", "--json", "--quiet"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(json_lines(&stdout).iter().all(|c| c["protocol"] == "seed" && c["workload"] == "ftrace+kprobe"));
    let (code, stdout, _) =
        out(pokesim().args(["run", "--workload", "ftrace+kprobe", "--protocol", "linux-6.0", "--json"]));
    assert_eq!(code, 0);
    assert!(json(&stdout)["stats"]["kprobe_hits"].as_u64().unwrap() > 0);
    for cmd in ["run", "explore", "check", "corpus", "mutants"] {
        let (code, stdout, _) = out(pokesim().args([cmd, "--help"]));
        assert_eq!(code, 0);
        for flag in ["--jobs", "--json", "--quiet"] {
            assert!(stdout.contains(flag), "{cmd} has no {flag}");
        }
    }
}

#[test]
fn every_help_shows_the_exit_statuses_and_the_main_help_has_examples() {
    let (_, main, _) = out(pokesim().arg("--help"));
    assert!(main.contains("Examples:") && main.contains("pokesim check"), "{main}");
    for cmd in
        ["run", "explore", "exhaust", "replay", "shrink", "trace", "corpus", "mutants", "check", "bench", "merge"]
    {
        let (code, stdout, _) = out(pokesim().args([cmd, "--help"]));
        assert_eq!(code, 0);
        assert!(stdout.contains("Exit status:") && stdout.contains("4    a run spent its tick budget"), "{cmd}");
        assert!(cmd == "replay" || stdout.contains("[default: "), "{cmd} --help shows its defaults");
    }
}

#[test]
fn every_json_output_carries_its_format_and_addresses_are_hex() {
    let dir = tempdir("trust-json");
    let f = write(&dir, "failing.toml", FAILING);
    let artifact = failing_artifact(&dir);
    let (f, a, s) = (f.display().to_string(), artifact.display().to_string(), dir.join("s.json").display().to_string());
    let commands: Vec<Vec<&str>> = vec![
        vec!["run", &f, "--no-artifact"],
        vec!["explore", &f, "--runs", "16", "--no-artifact"],
        vec!["exhaust", &f, "--bound", "0", "--no-artifact"],
        vec!["replay", &a],
        vec!["trace", &a, "--window", "2"],
        vec!["shrink", &a, "-o", &s],
        vec!["list"],
    ];
    for args in commands {
        let (_, stdout, stderr) = out(pokesim().args(&args).arg("--json"));
        let lines = json_lines(&stdout);
        assert!(!lines.is_empty(), "{args:?}: {stderr}");
        assert!(lines.iter().all(|l| l["format"] == 1), "{args:?}: {stdout}");
        for l in &lines {
            for v in l["violations"].as_array().into_iter().flatten().chain(l.get("violation")) {
                assert!(v.is_null() || v["rip"].is_string(), "{args:?}: rip must be hex: {v}");
            }
        }
    }
}

// --- Documentation --------------------------------------------------------------------------------

/// The shell blocks of the README marked `<!-- runnable -->`, one command per line.
fn runnable_readme_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut out = Vec::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        if l.trim() != "<!-- runnable -->" {
            continue;
        }
        assert_eq!(lines.next().map(str::trim), Some("```sh"), "a runnable block is a ```sh block");
        for cmd in lines.by_ref().take_while(|l| l.trim() != "```") {
            let cmd = cmd.split(" #").next().unwrap_or("").trim();
            if !cmd.is_empty() {
                out.push(cmd.to_string());
            }
        }
    }
    out
}

#[test]
fn the_readme_examples_run_as_written() {
    let dir = tempdir("trust-readme");
    let examples = dir.join("examples");
    std::fs::create_dir_all(&examples).unwrap();
    for e in std::fs::read_dir(repo().join("examples")).unwrap() {
        let p = e.unwrap().path();
        std::fs::copy(&p, examples.join(p.file_name().unwrap())).unwrap();
    }
    let bin_dir = assert_cmd::cargo::cargo_bin("pokesim").parent().unwrap().to_path_buf();
    let path = format!("{}:{}", bin_dir.display(), std::env::var("PATH").unwrap_or_default());
    let commands = runnable_readme_commands();
    assert!(commands.len() >= 15, "{commands:?}");
    let mut samples = readme_output_samples();
    for cmd in commands {
        assert!(cmd.starts_with("pokesim "), "{cmd}");
        let o =
            std::process::Command::new("sh").arg("-c").arg(&cmd).env("PATH", &path).current_dir(&dir).output().unwrap();
        let (stdout, stderr) = (String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
        assert_eq!(o.status.code(), Some(0), "README command `{cmd}` failed: {stdout}{stderr}");
        if let Some(rows) = samples.remove(&cmd) {
            assert_sample_rows_printed(&cmd, &rows, &stdout);
        }
    }
    assert!(samples.is_empty(), "README output samples of commands it never runs: {:?}", samples.keys());
}

/// The README's samples of what a command prints: the block after `<!-- output of: CMD -->`,
/// by command.
fn readme_output_samples() -> std::collections::BTreeMap<String, Vec<String>> {
    let readme = std::fs::read_to_string(repo().join("README.md")).unwrap();
    let mut out = std::collections::BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(l) = lines.next() {
        let Some(cmd) = l.trim().strip_prefix("<!-- output of: ").and_then(|r| r.strip_suffix(" -->")) else {
            continue;
        };
        assert_eq!(lines.next().map(str::trim), Some("```"), "an output sample is a ``` block");
        let rows = lines.by_ref().take_while(|l| l.trim() != "```").map(str::to_string).collect();
        out.insert(cmd.to_string(), rows);
    }
    assert!(!out.is_empty(), "the README shows what `pokesim check` prints");
    out
}

/// Each sample row is a row the command printed, field for field, except its `time` column
/// (wall-clock, the one field that differs between runs).
fn assert_sample_rows_printed(cmd: &str, rows: &[String], stdout: &str) {
    let header: Vec<&str> = rows[0].split_whitespace().collect();
    let time = header.iter().position(|h| *h == "time");
    let fields = |l: &str| -> Vec<String> {
        l.split_whitespace().enumerate().filter(|(i, _)| Some(*i) != time).map(|(_, f)| f.to_string()).collect()
    };
    for row in rows {
        let want = fields(row);
        let got = stdout.lines().find(|l| l.split_whitespace().next() == Some(want[0].as_str()));
        let got = got.unwrap_or_else(|| panic!("README sample row of `{cmd}` not printed: {row}"));
        assert_eq!(fields(got), want, "README sample row of `{cmd}` differs from what it prints:\n{got}");
    }
}

#[test]
fn the_custom_program_example_is_linux_5_5_spelled_out() {
    use scenarios::file::ScenarioFile;
    let custom = ScenarioFile::load(&repo().join("examples/custom-program.toml")).unwrap();
    let mut builtin = custom.scenario.clone();
    builtin.config.program = None;
    assert_eq!(custom.scenario.plan().unwrap().programs, builtin.plan().unwrap().programs);
    let doc = std::fs::read_to_string(repo().join("docs/programs.md")).unwrap();
    for op in sim_core::program::Step::ALL {
        assert!(doc.contains(&format!("| `{}` |", op.name())), "docs/programs.md does not describe {}", op.name());
    }
}
