//! Generated `custom` programs, their choices steered by the fuzzer's bytes (the generator and
//! property of `scenarios/tests/custom_fuzz.rs`): each is refused as bad input naming a field,
//! or runs on linux-5.5, linux-6.0 and linux-6.16 without a violation — the program's own bugs
//! are the dry run's to refuse — and never with an error of pokesim's own.
//! `cargo fuzz run custom_code` (nightly).

#![no_main]

use libfuzzer_sys::fuzz_target;

#[path = "../../scenarios/tests/custom_gen/mod.rs"]
mod custom_gen;

fuzz_target!(|data: &[u8]| {
    let src = custom_gen::program(&mut custom_gen::Rng::fed(data));
    custom_gen::check(0, &src, &mut custom_gen::Counts::default());
});
