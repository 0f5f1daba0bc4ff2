//! A custom-code fuzzer (issue 21): a few hundred generated `custom` programs per run
//! ([`custom_gen`]), each run briefly on the correct protocols. Property: a program is refused
//! as bad input naming a field, or it runs and no violation is reported (on a correct
//! protocol, an accepted program's violation could only be the program's own bug, which the
//! dry run exists to refuse), and never an internal error. `cargo fuzz run custom_code` runs
//! the same generator for longer.

mod custom_gen;

use custom_gen::{check, program, Counts, Rng};

/// Programs per `cargo test` run (`CUSTOM_FUZZ_PROGRAMS=N` runs `N`).
const PROGRAMS: u64 = 300;

#[test]
fn custom_programs_are_refused_or_run_clean_on_correct_protocols() {
    let mut c = Counts::default();
    let programs = std::env::var("CUSTOM_FUZZ_PROGRAMS").ok().and_then(|n| n.parse().ok()).unwrap_or(PROGRAMS);
    for k in 0..programs {
        check(k, &program(&mut Rng::seeded(k)), &mut c);
    }
    eprintln!("custom fuzz: {c:?}");
    assert!(c.refused > programs / 10 && c.runs > programs / 3, "the generator exercises both sides: {c:?}");
}
