//! The scenario-file parser and the artifact loader on arbitrary input (the stable twin of the
//! `cargo fuzz` targets in `fuzz/`): whatever the bytes, the result is a scenario or an error
//! that names the file — never a panic. Random bytes mostly stop at the TOML or JSON syntax, so
//! most cases are valid inputs with a few bytes edited, which reach the validation behind it.
//! `PROPTEST_CASES` sets the number of cases.

use proptest::prelude::*;
use scenarios::artifact::Artifact;
use scenarios::file::ScenarioFile;

const SCENARIO: &str = include_str!("../../examples/race.toml");
const KPROBE: &str = include_str!("../../examples/kprobe.toml");
const PROGRAM: &str = include_str!("../../examples/custom-program.toml");
const ENTRY: &str = include_str!("../../scenarios/corpus/mutant-no-sync-after-int3-linux-5.5.toml");

/// `text` with `edits` applied: each replaces the byte at a position (modulo the length) with
/// another, deletes it, or inserts one — enough to break a value, a key or the syntax.
fn edited(text: &str, edits: &[(usize, u8, u8)]) -> String {
    let mut bytes = text.as_bytes().to_vec();
    for &(at, op, b) in edits {
        if bytes.is_empty() {
            break;
        }
        let i = at % bytes.len();
        match op % 3 {
            0 => bytes[i] = b,
            1 => {
                bytes.remove(i);
            }
            _ => bytes.insert(i, b),
        }
    }
    String::from_utf8_lossy(&bytes).into_owned()
}

fn scenario_text() -> impl Strategy<Value = String> {
    let base = prop::sample::select(vec![SCENARIO, KPROBE, PROGRAM, ENTRY]);
    let edits = prop::collection::vec(
        (any::<usize>(), any::<u8>(), prop::sample::select(b"0123456789-=\"[]{}.,# \nax".to_vec())),
        1..6,
    );
    prop_oneof![
        1 => ".*",
        4 => (base, edits).prop_map(|(t, e)| edited(t, &e)),
    ]
}

fn check_scenario(text: &str) {
    if let Err(e) = ScenarioFile::parse("prop.toml", text, "prop") {
        assert!(e.to_string().starts_with("prop.toml"), "the error names the file: {e}");
    }
}

/// A valid artifact, made once from a corpus entry's recorded failure.
fn artifact_json() -> String {
    let entry = ScenarioFile::parse("entry.toml", ENTRY, "entry").expect("the corpus entry loads");
    let o = entry.scenario.replay(entry.decisions.clone().expect("recorded")).expect("replays");
    let a = Artifact::new("entry", &entry.scenario, &o).expect("a violating run has an artifact");
    serde_json::to_string(&a).expect("serializes")
}

proptest! {
    #[test]
    fn the_scenario_parser_returns_a_scenario_or_a_located_error(text in scenario_text()) {
        check_scenario(&text);
    }

    #[test]
    fn the_artifact_loader_returns_an_artifact_or_a_located_error(
        edits in prop::collection::vec((any::<usize>(), any::<u8>(), any::<u8>()), 0..6),
        noise in ".*",
    ) {
        for text in [edited(&artifact_json(), &edits), noise] {
            match Artifact::parse("prop.json", &text) {
                Ok(a) => {
                    if let Err(e) = ScenarioFile::parse("prop.json (scenario)", &a.scenario, "artifact") {
                        assert!(e.to_string().starts_with("prop.json (scenario)"), "{e}");
                    }
                }
                Err(e) => assert!(e.to_string().starts_with("prop.json"), "the error names the file: {e}"),
            }
        }
    }
}
