//! Outputs that never damage the host, bounded inputs and clean terminals (issue 21): each
//! test runs the binary the way the report did and shows the damage is gone — an
//! output path that is a FIFO, a symbolic link, a directory, `-` or in a missing directory;
//! `corpus --add` over an existing entry; an `--around` at the end of u64; control
//! characters from a file; an oversized decision list.

mod common;

use std::os::unix::fs::FileTypeExt;
use std::path::{Path, PathBuf};

use common::*;

/// A recorded corpus entry that `trace`, `shrink` and `corpus --add` accept.
fn recorded() -> PathBuf {
    corpus_dir().join("bug-b3-seed-kprobe.toml")
}

fn mkfifo(path: &Path) {
    let ok = std::process::Command::new("mkfifo").arg(path).status().expect("mkfifo runs").success();
    assert!(ok, "mkfifo {}", path.display());
}

#[test]
fn output_targets_that_are_not_regular_files_are_refused_and_left_alone() {
    let dir = tempdir("trust-output-targets");
    let fifo = dir.join("fifo");
    mkfifo(&fifo);
    let victim = write(&dir, "victim.txt", "precious\n");
    let link = dir.join("link.html");
    std::os::unix::fs::symlink(&victim, &link).unwrap();
    let sub = dir.join("subdir");
    std::fs::create_dir(&sub).unwrap();
    for (target, what) in [(&fifo, "a FIFO"), (&link, "a symbolic link"), (&sub, "a directory")] {
        let (code, _, stderr) =
            out(pokesim().arg("trace").arg(recorded()).args(["--format", "html", "-o"]).arg(target));
        assert_eq!(code, 2, "{}: {stderr}", target.display());
        assert!(stderr.contains(what) && stderr.contains("-o"), "{}: {stderr}", target.display());
    }
    assert!(std::fs::symlink_metadata(&fifo).unwrap().file_type().is_fifo(), "the FIFO is still a FIFO");
    assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is still a link");
    assert_eq!(std::fs::read_to_string(&victim).unwrap(), "precious\n", "the link's target is untouched");
    assert!(sub.is_dir() && std::fs::read_dir(&sub).unwrap().next().is_none(), "the directory is untouched");
    // shrink -o (after printing its result) and mutants --html (before any work) refuse them too.
    let (code, _, stderr) = out(pokesim().arg("shrink").arg(recorded()).args(["--max-runs", "20", "-o"]).arg(&fifo));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a FIFO"), "{stderr}");
    let (code, _, stderr) = out(pokesim().args(["mutants", "--runs", "1", "--html"]).arg(&link));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("a symbolic link"), "{stderr}");
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(left.len(), 4, "no temporary file is left behind: {left:?}");
}

#[test]
fn dash_is_stdout_and_missing_directories_are_not_created() {
    let dir = tempdir("trust-output-dash");
    let (code, stdout, stderr) =
        out(pokesim().current_dir(&dir).arg("trace").arg(recorded()).args(["--format", "svg", "-o", "-"]));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.starts_with("<svg") && stdout.trim_end().ends_with("</svg>"), "{stdout}");
    let (code, stdout, stderr) =
        out(pokesim().current_dir(&dir).arg("shrink").arg(recorded()).args(["--max-runs", "20", "-o", "-"]));
    assert_eq!(code, 0, "{stderr}");
    let artifact = json(&stdout);
    assert_eq!(artifact["format"], 3, "the shrunk artifact alone, as JSON: {stdout}");
    assert!(!dir.join("-").exists(), "no file named '-'");
    let (code, _, stderr) = out(pokesim().args(["mutants", "--runs", "1", "--html", "-"]));
    assert_eq!(code, 2, "stdout carries the matrix: {stderr}");

    let missing = dir.join("no/such/dir/race.svg");
    let (code, _, stderr) = out(pokesim().arg("trace").arg(recorded()).args(["--format", "svg", "-o"]).arg(&missing));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("does not exist") && stderr.contains("no/such/dir"), "{stderr}");
    let arts = dir.join("no/such/artifacts");
    let (code, _, stderr) = out(pokesim().args(["run", "--no-artifact"]).arg(write(&dir, "f.toml", FAILING)));
    assert_eq!(code, 0, "{stderr}");
    let (code, stdout, stderr) =
        out(pokesim().arg("run").arg(dir.join("f.toml")).arg("--artifact-dir").arg(&arts).arg("--json"));
    assert_eq!(code, 0, "the verdict stands: {stderr}");
    let error = json(&stdout)["artifact_error"].as_str().unwrap_or_default().to_string();
    assert!(error.contains("no/such") && error.contains("does not exist"), "{stdout}");
    assert!(!dir.join("no").exists(), "no directory was created");
    // The artifact directory itself (its parent existing) is pokesim's to create.
    let (code, stdout, stderr) =
        out(pokesim().arg("run").arg(dir.join("f.toml")).arg("--artifact-dir").arg(dir.join("arts")));
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("artifact") && std::fs::read_dir(dir.join("arts")).unwrap().count() == 1, "{stdout}");
}

#[test]
fn corpus_add_refuses_to_overwrite_an_entry_without_force() {
    let dir = tempdir("trust-output-corpus-add");
    let corpus = dir.join("my-corpus");
    let add = |force: bool| {
        let mut c = pokesim();
        c.arg("corpus").arg(&corpus).arg("--add").arg(recorded()).args(["--name", "mine"]);
        if force {
            c.arg("--force");
        }
        out(&mut c)
    };
    let (code, stdout, stderr) = add(false);
    assert_eq!(code, 0, "{stderr}");
    assert!(stdout.contains("added"), "{stdout}");
    let entry = corpus.join("mine.toml");
    let first = std::fs::read_to_string(&entry).unwrap();
    std::fs::write(&entry, format!("{first}# edited by hand\n")).unwrap();
    let (code, _, stderr) = add(false);
    assert_eq!(code, 2, "an existing entry is not overwritten silently: {stderr}");
    assert!(stderr.contains("mine.toml") && stderr.contains("--force"), "{stderr}");
    assert!(std::fs::read_to_string(&entry).unwrap().ends_with("# edited by hand\n"), "the entry is untouched");
    let (code, _, stderr) = add(true);
    assert_eq!(code, 0, "{stderr}");
    assert_eq!(std::fs::read_to_string(&entry).unwrap(), first, "--force replaces it, whole");
    let files: Vec<_> = std::fs::read_dir(&corpus).unwrap().map(|e| e.unwrap().file_name()).collect();
    assert_eq!(files.len(), 1, "no temporary file left: {files:?}");
    let (code, _, stderr) = out(pokesim().arg("corpus").arg(dir.join("a/b")).arg("--add").arg(recorded()));
    assert_eq!(code, 2, "{stderr}");
    assert!(!dir.join("a").exists(), "no parent directory created");
}

#[test]
fn extreme_windows_saturate_in_every_format() {
    let max = u64::MAX.to_string();
    for format in ["text", "svg"] {
        let (code, _, stderr) =
            out(pokesim().arg("trace").arg(recorded()).args(["--format", format, "--around", &max]));
        assert_eq!(code, 2, "{format}: {stderr}");
        assert!(stderr.contains("--around") && stderr.contains("past the run's last tick"), "{format}: {stderr}");
        for args in [["--window", &max, "--around", "0"], ["--window", &max, "--around", "1"]] {
            let (code, stdout, stderr) =
                out(pokesim().arg("trace").arg(recorded()).args(["--format", format]).args(args));
            assert_eq!(code, 0, "{format} {args:?}: {stderr}");
            assert!(stdout.len() < 4 << 20, "{format} {args:?}: {} bytes", stdout.len());
        }
        let (code, _, stderr) =
            out(pokesim().arg("trace").arg(recorded()).args(["--format", format, "--window", &max]));
        assert_eq!(code, 0, "{format}: {stderr}");
    }
    for format in ["perfetto", "html"] {
        let (code, _, stderr) =
            out(pokesim().arg("trace").arg(recorded()).args(["--format", format, "--around", &max]));
        assert_eq!(code, 2, "{format}: {stderr}");
    }
}

#[test]
fn control_characters_from_files_are_escaped() {
    let dir = tempdir("trust-output-controls");
    let hostile = "x\\u001b]2;PWNED\\u0007\\u009b2J";
    let file = write(&dir, "evil.toml", &format!("protocol = \"seed\"\n[workload]\nkind = \"{hostile}\"\n"));
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(&file));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("x\\x1b]2;PWNED\\x07\\u{9b}2J"), "escaped, still readable: {stderr}");
    for text in [&stdout, &stderr] {
        assert!(!text.chars().any(|c| c.is_control() && c != '\n'), "a raw control character: {text:?}");
    }
    // A corpus row quotes the file too (on stdout), text and JSON.
    let corpus = dir.join("corpus");
    std::fs::create_dir(&corpus).unwrap();
    std::fs::copy(&file, corpus.join("evil.toml")).unwrap();
    for json in [false, true] {
        let mut c = pokesim();
        c.arg("corpus").arg(&corpus).arg("--no-artifact");
        if json {
            c.arg("--json");
        }
        let (code, stdout, stderr) = out(&mut c);
        assert_eq!(code, 1, "{stdout}{stderr}");
        assert!(stdout.contains("PWNED"), "the row names the problem: {stdout}");
        assert!(!stdout.chars().any(|c| c.is_control() && c != '\n'), "a raw control character: {stdout:?}");
        if json {
            json_lines(&stdout);
        }
    }
}

#[test]
fn an_oversized_decision_list_is_refused_while_it_is_read() {
    let dir = tempdir("trust-output-big-artifact");
    let entries = scenarios::artifact::MAX_DECISIONS + 1;
    let mut text = format!(
        "{{\"format\":2,\"pokesim_version\":\"{}\",\"scenario\":\"x\",\"seed\":0,\"strategy\":\"random\",\"decisions\":[",
        env!("CARGO_PKG_VERSION")
    );
    text.reserve(entries * 6 + 256);
    for i in 0..entries {
        text.push_str(if i == 0 { "[2,0]" } else { ",[2,0]" });
    }
    text.push_str("],\"zeros_after\":0,\"violation\":{},\"trace_hash\":\"0\",\"ticks\":0}\n");
    assert!(text.len() > 48 << 20 && (text.len() as u64) < scenarios::input::MAX_ARTIFACT_BYTES);
    let big = dir.join("big.json");
    std::fs::write(&big, text).unwrap();
    for cmd in ["replay", "trace"] {
        let (code, _, stderr) = out(pokesim().arg(cmd).arg(&big));
        assert_eq!(code, 2, "{cmd}: {stderr}");
        let want = format!("field `decisions`: more than {} decisions", scenarios::artifact::MAX_DECISIONS);
        assert!(stderr.contains("big.json:1:") && stderr.contains(&want), "{cmd}: {stderr}");
    }
}
