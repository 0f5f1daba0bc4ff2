//! The regression corpus through the `pokesim` program (each entry's own test is in
//! `corpus_entries.rs`): every recorded decision list replayed in a separate process
//! reproducing its trace hash bit for bit, and an entry whose decisions no longer fit reported
//! as stale.

use std::path::PathBuf;

use rayon::prelude::*;

use assert_cmd::Command;
use scenarios::corpus;
use scenarios::file::ScenarioFile;

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
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

/// `pokesim program` prints each version's program (mutants applied) as a template; run as a
/// custom `program`, it is the same run: on every corpus scenario whose mutants edit the
/// program (not the handler), the same trace hash as the built-in version.
#[test]
fn every_version_spelled_out_as_a_program_runs_the_same_trace() {
    let entries = corpus::builtin();
    let checked: Vec<String> = entries
        .par_iter()
        .filter_map(|e| {
            let text = e.text.as_ref().expect("a corpus entry reads");
            let f = ScenarioFile::parse(&e.file, text, &e.stem).expect("a corpus entry loads");
            let s = &f.scenario;
            let template = s.config.protocol.program_template(&s.config.mutants).ok()?;
            let mut spelled = s.clone();
            spelled.config.program = Some(template);
            spelled.config.mutants = Vec::new();
            let (a, b) = match &f.decisions {
                Some(d) => (s.replay(d.clone()).unwrap(), spelled.replay(d.clone()).unwrap()),
                None => (s.run().unwrap(), spelled.run().unwrap()),
            };
            assert_eq!(a.trace_hash, b.trace_hash, "{}: the spelled-out program runs another trace", f.name);
            assert_eq!(a.verdict, b.verdict, "{}", f.name);
            Some(f.name)
        })
        .collect();
    assert!(checked.len() >= 70, "only {} entries spelled out: {checked:?}", checked.len());
}
