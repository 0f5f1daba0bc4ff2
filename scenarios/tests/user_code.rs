//! The user's own code (issue 11): sites declared in a scenario file — old and new instruction
//! as assembly or hex — in a generated loop or the scenario's own code block, run under every
//! fetch preset, refused by `text_poke_loc_init()` with the kernel's reason, located errors, and
//! a file that round-trips.

use std::path::PathBuf;

use scenarios::file::ScenarioFile;
use sim_core::{Mutant, Protocol, Verdict, ViolationKind};

fn example(name: &str) -> ScenarioFile {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples").join(name);
    ScenarioFile::load(&path).unwrap_or_else(|e| panic!("{e}"))
}

fn runs(f: &ScenarioFile, seeds: u64) -> Vec<sim_core::Outcome> {
    (0..seeds)
        .map(|k| {
            let mut s = f.scenario.clone();
            s.seed = k;
            s.run().unwrap()
        })
        .collect()
}

#[test]
fn own_sites_run_under_every_fetch_preset() {
    for name in ["own-sites.toml", "own-code.toml"] {
        let f = example(name);
        for preset in cpu_model::FetchModel::PRESETS {
            let mut f = f.clone();
            f.scenario.config.fetch = cpu_model::FetchModel::preset(preset).unwrap();
            for o in runs(&f, 10) {
                assert_eq!(o.verdict, Verdict::Pass, "{name} {preset}: {:?}", o.violation());
                assert!(o.stats.int3_traps > 0 || o.stats.patch_rounds == 6, "{name}: the sites were patched");
            }
        }
    }
}

#[test]
fn own_sites_are_patched_by_the_real_protocol_and_its_mutants_are_caught() {
    let mut f = example("own-sites.toml");
    f.scenario.config.mutants = vec![Mutant::NoInt3];
    let v = runs(&f, 20).into_iter().find_map(|o| o.violations.into_iter().next()).expect("no-int3 tears");
    assert_eq!(v.kind, ViolationKind::TornFetch, "{v}");
    // The new bytes were assembled where they go: `call callee` from the first site.
    assert!(v.message.contains("e8, f8, 17, 00, 00"), "{v}");
}

#[test]
fn text_poke_loc_init_refuses_what_the_version_cannot_emulate() {
    let src = std::fs::read_to_string(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../examples/own-code.toml"))
        .unwrap()
        .replace("linux-6.16", "linux-6.0");
    let e = ScenarioFile::parse("own.toml", &src, "own").unwrap_err().to_string();
    assert!(e.contains("own.toml:") && e.contains("cannot be emulated by this handler") && e.contains("BUG()"), "{e}");
    assert_eq!(Protocol::Linux616.name(), "linux-6.16");
}

#[test]
fn mistakes_in_the_users_code_are_located() {
    let head = "[workload]\nkind = \"custom\"\n";
    let cases = [
        (format!("{head}[[sites]]\nold = \"nop5\"\nnew = \"mov rax, 1\"\n"), "sites[0]", "not a supported instruction"),
        (format!("{head}[[sites]]\nold = \"nop5\"\n"), "sites[0].new", "missing"),
        (format!("{head}[[sites]]\nold_hex = \"0f 1f 4\"\nnew = \"nop5\"\n"), "sites[0].old_hex", "not hex bytes"),
        (format!("{head}[[sites]]\nold = \"nop5\"\nnew = \"jmp nowhere\"\n"), "sites[0]", "neither a label"),
        (format!("{head}[code]\nentry = \"top\"\nasm = \"top: nop\\n bogus\"\n[[sites]]\nat = \"top\"\nnew = \"nop\"\n"), "code", "line 2"),
        (format!("{head}[code]\nentry = \"top\"\nasm = \"top: nop5\\njmp top\"\n[[sites]]\nat = \"nope\"\nnew = \"nop5\"\n"), "sites[0]", "not a label"),
        (format!("{head}[code]\nentry = \"top\"\nasm = \"top: nop5\\njmp top\"\n[[sites]]\nat = \"top\"\nold = \"nop2\"\nnew = \"nop5\"\n"), "sites[0]", "holds"),
        (head.to_string(), "workload", "needs at least one [[sites]]"),
        ("[workload]\nkind = \"ftrace\"\n[[sites]]\nnew = \"nop5\"\n".to_string(), "sites[0]", "only the custom workload"),
    ];
    for (src, field, what) in cases {
        let e = ScenarioFile::parse("bad.toml", &src, "bad").unwrap_err().to_string();
        assert!(e.contains(&format!("field `{field}`")) && e.contains(what), "{src}\n=> {e}");
    }
}

#[test]
fn a_custom_scenario_round_trips_through_its_file() {
    for name in ["own-sites.toml", "own-code.toml"] {
        let f = example(name);
        let back =
            ScenarioFile::parse("back.toml", &f.to_toml(), "x").unwrap_or_else(|e| panic!("{e}\n{}", f.to_toml()));
        assert_eq!(back.scenario, f.scenario, "{name}");
    }
}
