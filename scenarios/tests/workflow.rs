//! The user's workflow through the `pokesim` binary: a scenario file → a failure artifact →
//! replay in another process → shrink → trace → add to a corpus; and every bad input exits 2
//! with a message naming the file, line and field.

use std::path::{Path, PathBuf};

use assert_cmd::Command;
use serde_json::Value;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const MUTANT: &str = r#"
name = "tail-without-sync"
expect = "torn-fetch"
protocol = "linux-5.5"
cpus = 4
mutants = ["no-sync-after-tail"]
seed = 0
runs = 20

[workload]
kind = "jump_label"
site = "cross16"

[fetch]
preset = "pessimistic"
"#;

fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

fn out(cmd: &mut Command) -> (i32, String, String) {
    let o = cmd.output().unwrap();
    (o.status.code().unwrap(), String::from_utf8_lossy(&o.stdout).into(), String::from_utf8_lossy(&o.stderr).into())
}

/// Runs the file; returns the artifact it wrote.
fn artifact_of(dir: &Path, file: &Path) -> PathBuf {
    let arts = dir.join("artifacts");
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(file).arg("--artifact-dir").arg(&arts));
    assert_eq!(code, 0, "the expected violation is a success: {stdout}{stderr}");
    assert!(stdout.contains("expected   torn-fetch (met)"), "{stdout}");
    let line = stdout.lines().find(|l| l.starts_with("artifact")).expect("the artifact path is printed");
    let path = PathBuf::from(line.trim_start_matches("artifact").trim());
    assert!(path.exists(), "{}", path.display());
    assert!(stdout.contains(&format!("pokesim replay {}", path.display())), "{stdout}");
    path
}

#[test]
fn file_artifact_replay_shrink_trace_corpus() {
    let dir = tempdir("workflow");
    let file = write(&dir, "mutant.toml", MUTANT);
    let artifact = artifact_of(&dir, &file);
    let recorded: Value = serde_json::from_str(&std::fs::read_to_string(&artifact).unwrap()).unwrap();
    assert_eq!(recorded["format"], 3);
    assert_eq!(recorded["violation"]["kind"], "torn-fetch");
    assert!(recorded["scenario"].as_str().unwrap().contains("no-sync-after-tail"));

    // Replay in a separate process: the same violation, tick and trace hash.
    let (code, stdout, _) = out(pokesim().arg("replay").arg(&artifact).arg("--json"));
    assert_eq!(code, 0, "reproducing the recorded violation is a success");
    let j: Value = serde_json::from_str(&stdout).unwrap();
    assert_eq!(j["reproduced"], true);
    assert_eq!(j["violations"][0], recorded["violation"]);
    assert_eq!(j["trace_hash"], recorded["trace_hash"]);

    let (code, stdout, _) = out(pokesim().arg("replay").arg(&artifact).arg("--check-determinism"));
    assert_eq!(code, 0);
    assert!(stdout.contains("deterministic: two replays agree on all"), "{stdout}");

    // Shrink: at most a tenth of the decisions, or fewer than 200, still the same violation.
    let shrunk = dir.join("shrunk.json");
    let (code, stdout, stderr) = out(pokesim().arg("shrink").arg(&artifact).arg("-o").arg(&shrunk));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let sizes = stdout.lines().find(|l| l.starts_with("decisions")).unwrap();
    let nums: Vec<usize> = sizes.split_whitespace().filter_map(|w| w.parse().ok()).collect();
    assert!(nums[1] * 10 <= nums[0] || nums[1] < 200, "{sizes}");
    let small: Value = serde_json::from_str(&std::fs::read_to_string(&shrunk).unwrap()).unwrap();
    assert_eq!(small["violation"]["kind"], "torn-fetch");
    assert_eq!(small["decisions"].as_array().unwrap().len(), nums[1]);
    let (code, stdout, _) = out(pokesim().arg("replay").arg(&shrunk));
    assert_eq!(code, 0);
    assert!(stdout.contains("reproduced torn-fetch"), "{stdout}");

    // Trace: fixed columns, the violation marked, --around limits the window.
    let tick = small["violation"]["tick"].as_u64().unwrap();
    let (code, stdout, _) = out(pokesim().arg("trace").arg(&shrunk).arg("--all"));
    assert_eq!(code, 0);
    let header = stdout.lines().find(|l| !l.starts_with('#')).unwrap();
    assert!(header.contains("tick") && header.contains("bytes@epoch") && header.contains("round/phase"), "{header}");
    assert!(stdout.contains("legend:"), "{stdout}");
    assert!(stdout.contains(&format!(">>{tick:>5} ")), "{stdout}");
    let (_, around, _) =
        out(pokesim().arg("trace").arg(&shrunk).args(["--around", &tick.to_string(), "--window", "2"]));
    assert!(around.lines().count() < stdout.lines().count());
    // Event rows: a mark (`>>` or two spaces), then the tick.
    let rows = around.lines().filter(|l| l.get(2..7).is_some_and(|t| t.trim().parse::<u64>().is_ok())).count();
    assert!((1..=5).contains(&rows), "{around}");

    // Add it to a corpus, and the corpus runs it as expected.
    let corpus = dir.join("corpus");
    let (code, stdout, _) =
        out(pokesim().arg("corpus").arg(&corpus).arg("--add").arg(&shrunk).args(["--name", "tail"]));
    assert_eq!(code, 0, "{stdout}");
    let arts = dir.join("corpus-artifacts");
    let (code, stdout, _) = out(pokesim().arg("corpus").arg(&corpus).arg("--artifact-dir").arg(&arts));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("tail") && stdout.contains("replay") && stdout.contains("1 ok"), "{stdout}");
    assert!(arts.join("corpus-tail.json").exists(), "the corpus run writes the artifact of its violation");
    let (code, stdout, _) = out(pokesim().arg("replay").arg(corpus.join("tail.toml")));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("reproduced torn-fetch"), "{stdout}");
}

#[test]
fn a_scenario_file_can_spell_out_its_own_patcher_program() {
    let dir = tempdir("program");
    // The seed's program without its first sync: caught as the no-sync-after-int3 mutant is.
    let text = r#"
expect = "torn-fetch"
protocol = "seed"
cpus = 2
runs = 30
program = ["begin-batch", "set-vec", "set-nr", "wmb", "poke-int3", "reset-do-sync", "poke-tail",
           "sync-if-do-sync", "reset-do-sync", "poke-first", "sync-if-do-sync", "clear-vec", "clear-nr", "end-batch"]
[workload]
kind = "ftrace"
"#;
    let file = write(&dir, "custom.toml", text);
    let (code, stdout, _) = out(pokesim().arg("run").arg(&file).arg("--no-artifact"));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("torn-fetch") && stdout.contains("(met)"), "{stdout}");
    // The same program with the sync back passes.
    let fixed = write(
        &dir,
        "fixed.toml",
        &text.replace("\"poke-int3\", ", "\"poke-int3\", \"sync\", ").replace("torn-fetch", "pass"),
    );
    let (code, stdout, _) = out(pokesim().arg("run").arg(&fixed));
    assert_eq!(code, 0, "{stdout}");
}

#[test]
fn a_foreign_kprobe_can_be_registered_by_address() {
    let dir = tempdir("kprobe");
    let text =
        "protocol = \"seed\"\ncpus = 4\nruns = 20\nexpect = \"handler-fault\"\n[workload]\nkind = \"jump_label\"\n\
                [[kprobes]]\naddr = 0x400000\n";
    let file = write(&dir, "kp.toml", text);
    let (code, stdout, _) = out(pokesim().arg("run").arg(&file).arg("--no-artifact"));
    assert_eq!(code, 0, "{stdout}");
    assert!(stdout.contains("NULL pointer dereference"), "{stdout}");
}

#[test]
fn bad_files_and_artifacts_exit_2_naming_file_line_and_field() {
    let dir = tempdir("bad");
    let base = "[workload]\nkind = \"ftrace\"\n";
    let cases: Vec<(&str, String, &str)> = vec![
        ("malformed.toml", "cpus = = 3\n".into(), "malformed.toml:1"),
        (
            "unknown.toml",
            format!("{base}colour = \"red\"\n"),
            "unknown.toml:3: field `workload.colour`: unknown field `colour`",
        ),
        (
            "workload.toml",
            "[workload]\nkind = \"kpatch\"\n".into(),
            "workload.toml:2: field `workload.kind`: unknown workload 'kpatch' (valid: ftrace",
        ),
        (
            "version.toml",
            format!("protocol = \"linux-2.6\"\n{base}"),
            "version.toml:1: field `protocol`: unknown protocol 'linux-2.6' (valid:",
        ),
        (
            "mutant.toml",
            format!("mutants = [\"no-sync\"]\n{base}"),
            "mutant.toml:1: field `mutants`: unknown mutant 'no-sync' (valid:",
        ),
        ("zero.toml", format!("cpus = 0\n{base}"), "zero.toml:1: field `cpus`: 0 is out of range (1..=256)"),
        ("many.toml", format!("cpus = 257\n{base}"), "many.toml:1: field `cpus`: 257 is out of range (1..=256)"),
        (
            "site.toml",
            format!("{base}[[kprobes]]\naddr = 0x900000\n"),
            "site.toml:4: field `kprobes[0]`: 0x900000 is outside the text",
        ),
        ("multi.toml", "[workload]\nkind = \"multi_insn\"\n".into(), "not exactly one instruction"),
    ];
    for (name, text, want) in cases {
        let file = write(&dir, name, &text);
        let (code, stdout, stderr) = out(pokesim().arg("run").arg(&file));
        assert_eq!(code, 2, "{name}: {stdout}{stderr}");
        assert!(stderr.contains(want), "{name}: expected '{want}' in: {stderr}");
    }
    // Flags given with a file override its fields, and an override that breaks it names the flag.
    let file = write(&dir, "ok.toml", &format!("cpus = 2\n{base}"));
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(&file).args(["--cpus", "4"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("cpus=4") && stdout.contains("overrides  --cpus (the file had 2)"), "{stdout}");
    let (code, _, stderr) = out(pokesim().args(["run", "--cpus", "999"]).arg(&file));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--cpus: 999 is out of range (1..=256)"), "{stderr}");

    // Artifacts: truncated, corrupt, from a future format, not an artifact at all.
    let good = artifact_of(&dir, &write(&dir, "m.toml", MUTANT));
    let text = std::fs::read_to_string(&good).unwrap();
    let bad_artifacts = [
        ("truncated.json", text[..text.len() / 2].to_string(), "corrupt or truncated artifact"),
        ("future.json", text.replacen("\"format\":3", "\"format\":99", 1), "artifact format 99 is not supported"),
        ("garbage.json", "{\"hello\": 1}".to_string(), "field `format`: missing"),
        (
            "choices.json",
            text.replacen("\"decisions\":[[", "\"decisions\":[[1,5],[", 1),
            "field `decisions`: entry 0 [1, 5]",
        ),
    ];
    for (name, content, want) in bad_artifacts {
        let p = write(&dir, name, &content);
        for cmd in ["replay", "trace"] {
            let (code, _, stderr) = out(pokesim().arg(cmd).arg(&p));
            assert_eq!(code, 2, "{cmd} {name}: {stderr}");
            assert!(stderr.contains(name) && stderr.contains(want), "{cmd} {name}: expected '{want}' in: {stderr}");
        }
    }
    let (code, _, stderr) = out(pokesim().arg("shrink").arg(dir.join("truncated.json")).args(["-o", "x.json"]));
    assert_eq!(code, 2, "{stderr}");
    let (code, _, stderr) = out(pokesim().arg("corpus").arg(dir.join("nonexistent")));
    assert_eq!(code, 2, "{stderr}");
}
