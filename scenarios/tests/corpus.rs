//! The regression corpus under `cargo test`: every entry as expected, every recorded decision
//! list replayed in a separate `pokesim` process reproducing its trace hash bit for bit, and a
//! corpus entry whose decisions no longer fit reported as stale.

use std::path::PathBuf;

use rayon::prelude::*;

use assert_cmd::Command;
use scenarios::corpus::{self, EntryStatus};
use scenarios::file::ScenarioFile;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}

#[test]
fn every_corpus_entry_is_as_expected() {
    let entries = corpus::builtin();
    let rows: Vec<_> = entries.par_iter().map(|e| corpus::run_entry(e).expect("the entry runs")).collect();
    assert!(rows.len() >= 80, "the corpus has {} entries", rows.len());
    let bad: Vec<_> = rows.iter().filter(|r| r.status != EntryStatus::Ok).map(|r| (&r.name, &r.detail)).collect();
    assert!(bad.is_empty(), "{bad:?}");
    for prefix in ["bug-b1", "bug-b2", "bug-b3", "bug-try-get-desc", "mutant-no-sync-after-int3", "pass-linux-6.16-jcc"]
    {
        assert!(rows.iter().any(|r| r.name.starts_with(prefix)), "no {prefix} entry");
    }
}

#[test]
fn recorded_entries_replay_bit_for_bit_in_a_separate_process() {
    let mut replayed = 0;
    for path in corpus::entries(&shipped()).unwrap().into_iter().map(|e| PathBuf::from(e.file)) {
        let entry = ScenarioFile::load(&path).unwrap();
        let Some(want) = &entry.trace_hash else { continue };
        let out = pokesim().arg("run").arg(&path).args(["--json", "--no-artifact"]).output().unwrap();
        let j: serde_json::Value =
            serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(j["trace_hash"].as_str(), Some(want.as_str()), "{}", path.display());
        assert_eq!(out.status.code(), Some(0), "{}: a recorded failure replays as expected", path.display());
        assert_eq!(j["verdict"], "violation", "{}", path.display());
        replayed += 1;
    }
    assert!(replayed >= 40, "only {replayed} recorded entries");
}

#[test]
fn an_entry_whose_decisions_no_longer_fit_is_stale() {
    let src = shipped().join("bug-b3-seed-kprobe.toml");
    let text = std::fs::read_to_string(&src).unwrap();
    let dir = tempdir("stale");
    // Claim the first decision had 9 options: the simulator offers fewer now.
    let i = text.find("decisions = [\n    [").expect("recorded decisions") + "decisions = [\n    [".len();
    let comma = i + text[i..].find(',').unwrap();
    let edited = format!("{}9{}", &text[..i], &text[comma..]);
    std::fs::write(dir.join("stale.toml"), edited).unwrap();
    let out = pokesim().arg("corpus").arg(&dir).arg("--no-artifact").output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("STALE"), "{stdout}");
}

fn tempdir(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
