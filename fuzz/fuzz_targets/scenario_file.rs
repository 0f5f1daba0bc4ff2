//! The scenario-file parser and validator on arbitrary input: it must return a scenario or a
//! located error, never panic, abort or hang. `cargo fuzz run scenario_file` (nightly).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        if let Err(e) = scenarios::file::ScenarioFile::parse("fuzz.toml", text, "fuzz") {
            assert!(e.to_string().starts_with("fuzz.toml"), "an error names its file: {e}");
        }
    }
});
