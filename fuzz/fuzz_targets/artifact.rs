//! The artifact loader on arbitrary input: an artifact and its inner scenario, or a located
//! error — never a panic, abort or hang. `cargo fuzz run artifact` (nightly).

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        match scenarios::artifact::Artifact::parse("fuzz.json", text) {
            Ok(a) => {
                let _ = scenarios::file::ScenarioFile::parse("fuzz.json (scenario)", &a.scenario, "artifact");
            }
            Err(e) => assert!(e.to_string().starts_with("fuzz.json"), "an error names its file: {e}"),
        }
    }
});
