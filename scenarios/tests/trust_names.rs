//! Issue 21, "Output that does not say what ran": every output names the full scenario —
//! workload variant, kprobe placement, kernel configuration — refusals name the kernel check
//! as the version has it, and a use after free is its own violation kind.

mod common;

use common::{json, out, pokesim};
use scenarios::catalogue::{self, variants};
use scenarios::Scenario;
use sim_core::{Kprobe, Protocol, ViolationKind};

fn run_json(args: &[&str]) -> serde_json::Value {
    let (code, stdout, stderr) = out(pokesim().args(["run", "--json", "--no-artifact", "--rounds", "2"]).args(args));
    assert!(code == 0 || code == 1, "{code}: {stderr}");
    json(&stdout)
}

#[test]
fn a_variant_is_named_as_a_variant_in_text_and_json() {
    let j = run_json(&["--workload", "ftrace+kprobe", "--protocol", "linux-6.0"]);
    assert_eq!(j["scenario"]["workload"], "ftrace+kprobe", "{j}");
    assert_eq!(j["scenario"]["label"], "ftrace+kprobe/linux-6.0", "{j}");
    let (_, text, _) =
        out(pokesim().args(["run", "--workload", "ftrace+kprobe", "--protocol", "linux-6.0", "--rounds", "2"]));
    assert!(text.starts_with("scenario   ftrace+kprobe/linux-6.0 "), "{text}");
}

#[test]
fn kprobe_placement_and_a_non_default_kernel_are_in_the_name() {
    let j = run_json(&["--workload", "jcc", "--protocol", "linux-6.16", "--kprobe-at", "0x400000"]);
    assert_eq!(j["scenario"]["label"], "jcc/linux-6.16+kprobe@0x400000", "{j}");
    assert_eq!(j["scenario"]["kprobes"][0]["addr"], "0x400000", "{j}");
    let j = run_json(&["--protocol", "linux-5.5", "--kernel", "CONFIG_KPROBES=n"]);
    assert_eq!(j["scenario"]["label"], "ftrace/linux-5.5[CONFIG_KPROBES=n]", "{j}");
}

#[test]
fn every_catalogue_variant_is_named_by_its_spec() {
    for v in variants() {
        assert_eq!(v.spec.variant_name(), v.name, "the variant's name and its spec's name differ");
        assert_eq!(catalogue::variant(&v.spec.variant_name()).unwrap().spec, v.spec, "{}", v.name);
    }
}

#[test]
fn two_scenarios_that_differ_in_a_kprobe_have_different_labels() {
    let plain = catalogue::scenario(Protocol::Linux60, &[], variants()[0].spec, "pessimistic", 0);
    let probed = Scenario { kprobes: vec![Kprobe::armed(0x400000)], ..plain.clone() };
    let cycling = Scenario { kprobes: vec![Kprobe { cycles: 3, ..Kprobe::armed(0x400000) }], ..plain.clone() };
    let labels = [plain.label(), probed.label(), cycling.label()];
    assert_eq!(labels, ["ftrace/linux-6.0", "ftrace/linux-6.0+kprobe@0x400000", "ftrace/linux-6.0+kprobe@0x400000x3"]);
    assert!(
        probed.file_label().chars().all(|c| c.is_ascii_alphanumeric() || "._=-".contains(c)),
        "{}",
        probed.file_label()
    );
}

#[test]
fn refusals_name_the_check_that_version_has() {
    let refuse = |args: &[&str]| {
        let (code, _, stderr) = out(pokesim().args(["run", "--no-artifact"]).args(args));
        assert_eq!(code, 2, "{stderr}");
        stderr
    };
    // Static calls (and static_call_text_reserved()) arrived in v5.10.
    let old = refuse(&["--workload", "static_call", "--protocol", "linux-5.4", "--kprobe-at", "0x400800"]);
    assert!(old.contains("linux-5.4 has no static calls") && old.contains("v5.10"), "{old}");
    assert!(!old.contains("register_kprobe()'s static_call_text_reserved()"), "{old}");
    let new = refuse(&["--workload", "static_call", "--protocol", "linux-6.0", "--kprobe-at", "0x400800"]);
    assert!(new.contains("register_kprobe()'s static_call_text_reserved() refuses"), "{new}");
    // ftrace does not refuse a kprobe at a site's start: it makes it ftrace-based.
    let ftrace = refuse(&["--workload", "ftrace", "--protocol", "linux-6.0", "--kprobe-at", "0x400800"]);
    assert!(
        ftrace.contains("ftrace-based kprobe (KPROBE_FLAG_FTRACE)") && !ftrace.contains("refuses a kprobe"),
        "{ftrace}"
    );
}

#[test]
fn the_5_6_try_get_desc_race_is_a_use_after_free_not_a_null() {
    let (code, stdout, stderr) = out(pokesim()
        .args(["replay", "--json"])
        .arg(common::corpus_dir().join("bug-try-get-desc-linux-5.6-kprobe.toml")));
    assert_eq!(code, 0, "{stderr}");
    let j = json(&stdout);
    assert_eq!(j["violations"][0]["kind"], ViolationKind::UseAfterFree.name(), "{j}");
    // B3 reads a NULL vector: still a handler fault.
    let (_, stdout, _) =
        out(pokesim().args(["replay", "--json"]).arg(common::corpus_dir().join("bug-b3-seed-kprobe.toml")));
    assert_eq!(json(&stdout)["violations"][0]["kind"], "handler-fault", "{stdout}");
}

#[test]
fn complete_search_tells_whether_a_null_and_a_use_after_free_are_both_reachable() {
    // The seed's teardown (B3): a handler that loaded nr_entries reads a NULL vec, and one that
    // loaded vec reads the returned batch's array — two kinds, as the SPIN model tells them.
    let (code, stdout, stderr) = out(pokesim().args([
        "exhaust",
        "--workload",
        "ftrace+kprobe",
        "--protocol",
        "seed",
        "--cpus",
        "2",
        "--rounds",
        "1",
        "--all-kinds",
        "--no-artifact",
        "--expect",
        "handler-fault|use-after-free",
    ]));
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(stdout.contains("kinds      handler-fault, use-after-free"), "{stdout}");
}
