//! Issue 21, "every mutant and every flag either acts or is refused": a mutant that cannot act
//! on the scenario is refused with the reason (exit 2 on the command line, an error from the
//! library), the mutant matrix shows such a cell as `n/a`, never as survived; contradictory
//! scenario flags are refused.

mod common;

use common::*;
use scenarios::catalogue::{self, Variant};
use scenarios::matrix::{self, CellOptions, Coords};
use sim_core::{KernelConfig, Mutant, Protocol, SimError, Subject};

const OPTPROBE: [&str; 6] = ["run", "--workload", "optprobe", "--protocol", "linux-6.16", "--seed"];

/// `pokesim run --workload optprobe --protocol linux-6.16 --seed 1 --mutant M --json`.
fn optprobe(mutant: Option<&str>) -> (i32, String, String) {
    let mut c = pokesim();
    c.args(OPTPROBE).args(["1", "--json", "--no-artifact"]);
    if let Some(m) = mutant {
        c.args(["--mutant", m]);
    }
    out(&mut c)
}

#[test]
fn a_mutant_that_cannot_act_on_the_workload_is_refused_naming_it_and_what_would_make_it_act() {
    let (code, stdout, stderr) = optprobe(None);
    assert_eq!(code, 0, "{stdout}{stderr}");
    for (m, fact, remedy) in [
        ("kprobe-disarm-no-sync", "arms and disarms itself", "ftrace+kprobe-cycling"),
        ("no-text-reserved", "no kprobe sits on a patched site", "ftrace+kprobe-entry"),
        ("batch-no-order-check", "ascending order", "batch-interleaved"),
        ("batch-no-full-check", "more than 256 entries", "--sites 257"),
        ("no-rmb", "no step for", "no scenario makes it act"),
        ("jcc-no-invert", "emulates no Jcc", "--workload jcc"),
    ] {
        let (code, stdout, stderr) = optprobe(Some(m));
        assert_eq!(code, 2, "{m}: {stdout}{stderr}");
        for want in ["--mutant", m, fact, remedy] {
            assert!(stderr.contains(want), "{m}: '{want}' not in {stderr}");
        }
        assert!(m == "no-rmb" || stderr.contains("workload optprobe"), "{m}: the workload is not named: {stderr}");
    }
}

#[test]
fn a_mutant_that_acts_still_runs_and_changes_the_run() {
    let hash = |args: &[&str]| {
        let (code, stdout, stderr) = out(pokesim().args(args).args(["--json", "--no-artifact", "--rounds", "4"]));
        assert!(code == 0 || code == 1, "{args:?}: {stdout}{stderr}");
        json(&stdout)["trace_hash"].as_str().expect("a trace hash").to_string()
    };
    for (workload, protocol, m) in [
        ("ftrace+kprobe-cycling", "linux-6.16", "kprobe-disarm-no-sync"),
        ("ftrace+kprobe-entry", "linux-6.16", "no-text-reserved"),
        ("batch-interleaved", "linux-6.16", "batch-no-order-check"),
        ("optprobe", "linux-6.16", "detour-handler"),
    ] {
        let base = ["run", "--workload", workload, "--protocol", protocol, "--seed", "1"];
        let mutated: Vec<&str> = base.iter().copied().chain(["--mutant", m]).collect();
        assert_ne!(hash(&base), hash(&mutated), "{m} on {workload}");
    }
}

#[test]
fn the_library_refuses_a_vacuous_mutant_with_the_mutants_subject() {
    let optprobe = catalogue::variant("optprobe").unwrap();
    for m in [Mutant::KprobeDisarmNoSync, Mutant::NoTextReserved, Mutant::BatchNoOrderCheck, Mutant::BatchNoFullCheck] {
        let s = catalogue::scenario(Protocol::Linux616, &[m], optprobe.spec, "pessimistic", 1);
        match s.run() {
            Err(SimError::Invalid { subject: Subject::Mutants, message }) => {
                assert!(message.contains(m.name()), "{message}")
            }
            other => panic!("{m}: {other:?}"),
        }
        assert!(catalogue::vacuous(&s).unwrap().is_some(), "{m}");
    }
    // Combined: no-sync-after-tail cannot act where no-int3 writes no tail.
    let ftrace = catalogue::variant("ftrace").unwrap();
    let s = catalogue::scenario(
        Protocol::Linux55,
        &[Mutant::NoInt3, Mutant::NoSyncAfterTail],
        ftrace.spec,
        "pessimistic",
        0,
    );
    let why = catalogue::vacuous(&s).unwrap().expect("refused");
    assert!(why.contains("no-sync-after-tail") && why.contains("together with no-int3"), "{why}");
}

fn coords(mutant: Mutant, protocol: Protocol, variant: Variant) -> Coords {
    Coords { mutant, protocol, variant, kernel: KernelConfig::DEFCONFIG, preset: "pessimistic".into() }
}

#[test]
fn a_matrix_cell_that_cannot_apply_is_na_never_survived() {
    let optprobe = catalogue::variant("optprobe").unwrap();
    let c =
        matrix::cell(&coords(Mutant::KprobeDisarmNoSync, Protocol::Linux616, optprobe), 2, CellOptions::FULL).unwrap();
    assert_eq!(c.caught, None);
    assert!(!c.applies() && !c.is_caught());
    assert!(c.not_applicable.as_deref().unwrap().contains("arms and disarms itself"));
    assert_eq!(c.random_runs, None);
    let line = serde_json::to_value(&c).unwrap();
    assert!(line["caught"].is_null(), "{line}");
    let page = scenarios::render::matrix::render(&[c], &["pessimistic".into()], 2).unwrap();
    assert!(page.contains("<b>n/a</b>") && page.contains("chip na"), "the page shows the cell as n/a");
    assert!(!page.contains("<b>0/1</b>"));
}

#[test]
fn pokesim_mutants_prints_na_for_cells_that_cannot_apply() {
    let args = ["mutants", "--workload", "optprobe", "--protocol", "linux-6.16", "--preset", "pessimistic"];
    let args: Vec<&str> = args.into_iter().chain(["--kernel", "CONFIG_KPROBES=y", "--runs", "1"]).collect();
    let (code, stdout, stderr) = out(pokesim().args(&args).arg("--json"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let cells = json_lines(&stdout);
    for m in ["kprobe-disarm-no-sync", "no-text-reserved", "batch-no-order-check", "batch-no-full-check", "no-rmb"] {
        let c = cells.iter().find(|c| c["mutant"] == m).unwrap_or_else(|| panic!("{m}"));
        assert!(c["caught"].is_null() && c["not_applicable"].is_string(), "{c}");
    }
    let (code, stdout, stderr) = out(pokesim().args(&args));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let row = stdout.lines().find(|l| l.starts_with("kprobe-disarm-no-sync")).expect("its row");
    assert!(row.contains("n/a") && !row.contains("0/1"), "{row}");
}

#[test]
fn contradictory_or_irrelevant_scenario_flags_are_refused() {
    for (args, flag) in [
        (&["--workload", "batch-interleaved", "--order", "ascending"][..], "--order"),
        (&["--strategy", "pct:3", "--depth", "5"], "--depth"),
        (&["--kernel", "CONFIG_KPROBES=y", "--kernel", "CONFIG_KPROBES=n"], "--kernel"),
        (&["--kernel", "CONFIG_KPROBES=n", "--kernel", "CONFIG_KPROBES=n"], "--kernel"),
        (&["--workload", "ftrace+kprobe", "--kprobe=cycling"], "--kprobe"),
        // Irrelevant: ftrace's site is one instruction, the override would change nothing.
        (&["--unsafe-multi-insn"], "--unsafe-multi-insn"),
    ] {
        for cmd in ["run", "explore"] {
            let (code, stdout, stderr) = out(pokesim().arg(cmd).args(args).args(["--rounds", "1", "--no-artifact"]));
            assert_eq!(code, 2, "{cmd} {args:?}: {stdout}{stderr}");
            assert!(stderr.contains(flag), "{cmd} {args:?}: {stderr}");
        }
    }
    // What agrees stays accepted.
    for (args, strategy) in [
        (&["--strategy", "pct", "--depth", "5"][..], "pct:5"),
        (&["--workload", "batch-interleaved", "--order", "interleaved"], "random"),
    ] {
        let (code, stdout, stderr) = out(pokesim().arg("run").args(args).args(["--rounds", "1", "--json"]));
        assert_eq!(code, 0, "{args:?}: {stdout}{stderr}");
        assert_eq!(json(&stdout)["scenario"]["strategy"], strategy, "{args:?}");
    }
}
