//! A generated bad-input suite: malformed scenario files, artifacts and flag combinations,
//! produced by code from valid inputs (one mutation each). For every case the binary must exit
//! with status 2 and a message naming the file — and, where there is one, the line and the
//! field (or the flag) — with no panic, no signal and no hang. And every mutant on every
//! workload and version, and every scenario flag on `run`, `explore` and `exhaust`, either
//! changes the run or is refused.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use serde_json::Value;

/// One bad input: the command, an input file to write first, and what stderr must name.
struct Case {
    name: String,
    args: Vec<String>,
    file: Option<(String, String)>,
    wants: Vec<String>,
}

const VALID: &str = "name = \"valid\"\nexpect = \"pass\"\nprotocol = \"linux-5.5\"\ncpus = 2\nmutants = []\nseed = 0\n\
runs = 1\nstrategy = \"random\"\nticks = 100000\nunsafe_multi_insn = false\n\n[workload]\nkind = \"ftrace\"\n\
site = \"aligned\"\nrounds = 2\nkprobe = false\n\n[fetch]\npreset = \"pessimistic\"\nmonotone = true\n\n\
[kernel]\nCONFIG_KPROBES = true\n\n[memory]\nmodel = \"sc\"\n\n[[kprobes]]\naddr = 0x400000\narmed = true\n";

/// `VALID` with `key`'s line replaced by `key = value` (or the line added to `table`).
fn with(key: &str, value: &str) -> String {
    let (table, leaf) = match key.split_once('.') {
        Some((t, l)) => (Some(t), l),
        None => (None, key),
    };
    let mut out = Vec::new();
    let mut current: Option<&str> = None;
    let mut placed = false;
    for line in VALID.lines() {
        let t = line.trim();
        if t.starts_with('[') {
            if !placed && current == table && table.is_some() {
                out.push(format!("{leaf} = {value}"));
                placed = true;
            }
            current = Some(t.trim_matches(|c| c == '[' || c == ']'));
        }
        if current == table.or(None) && t.split_once('=').is_some_and(|(k, _)| k.trim() == leaf) && !placed {
            out.push(format!("{leaf} = {value}"));
            placed = true;
            continue;
        }
        out.push(line.to_string());
    }
    if !placed {
        match table {
            None => out.insert(0, format!("{leaf} = {value}")),
            Some(_) => out.push(format!("{leaf} = {value}")),
        }
    }
    out.join("\n") + "\n"
}

/// The 1-based line of the first line starting with `leaf =` after `[table]` (or at top level).
fn line_of(text: &str, key: &str) -> usize {
    let (table, leaf) = match key.split_once('.') {
        Some((t, l)) => (Some(t), l),
        None => (None, key),
    };
    let mut current: Option<&str> = None;
    for (i, line) in text.lines().enumerate() {
        let t = line.trim();
        if t.starts_with('[') {
            current = Some(t.trim_matches(|c| c == '[' || c == ']'));
        } else if current == table && t.split_once('=').is_some_and(|(k, _)| k.trim() == leaf) {
            return i + 1;
        }
    }
    panic!("{key} not in {text}")
}

fn file_case(name: &str, text: String, wants: &[String]) -> Case {
    let file = format!("{name}.toml");
    let mut w = vec![file.clone()];
    w.extend(wants.iter().cloned());
    Case { name: name.into(), args: vec!["run".into(), file.clone()], file: Some((file, text)), wants: w }
}

/// Every field of a scenario with values it must refuse, located at its own line and field.
fn field_cases() -> Vec<Case> {
    let bad: &[(&str, &[&str])] = &[
        ("cpus", &["0", "257", "-1", "\"two\"", "1.5", "true", "9223372036854775807"]),
        ("seed", &["-1", "\"x\"", "1.0"]),
        ("runs", &["0", "-5", "10000000000000", "\"all\""]),
        ("ticks", &["0", "-1", "1000000000000", "\"x\""]),
        ("iterations", &["0", "-1", "2000000000", "[1]"]),
        ("drain", &["-1", "1000000000", "\"x\""]),
        ("protocol", &["\"linux-9\"", "5", "\"\"", "[\"seed\"]"]),
        ("mutants", &["[\"nope\"]", "\"no-int3\"", "[1]", "[\"no-int3\", \"no-int3\"]", "[\"jcc-no-invert\"]"]),
        ("expect", &["\"crash\"", "1", "\"torn-fetch|nope\"", "\"\""]),
        ("strategy", &["\"dfs\"", "\"pct:0\"", "\"pct:99\"", "\"replay\"", "3"]),
        (
            "program",
            &[
                "[\"sync\"]",
                "[\"nope\", \"end-batch\"]",
                "[]",
                "[\"end-batch\", \"end-batch\"]",
                "[\"dec-refs\", \"poke-first\", \"end-batch\"]",
                "[\"end-batch\"]",
                "\"sync\"",
            ],
        ),
        ("decisions", &["[[1, 0]]", "[[2, 2]]", "[[2, -1]]", "\"x\"", "[[2]]", "[[4294967296, 0]]"]),
        ("zeros_after", &["5", "-1"]),
        ("trace_hash", &["\"xyz\"", "\"0123456789abcdeg\"", "\"00112233445566ff\""]),
        ("unsafe_multi_insn", &["\"yes\"", "1"]),
        ("name", &["5", "[\"a\"]"]),
        ("colour", &["\"red\""]),
        ("workload.kind", &["\"nope\"", "5", "\"ftrace+nothing\""]),
        ("workload.site", &["\"64\"", "\"center\"", "-1"]),
        ("workload.rounds", &["0", "-1", "100001", "\"x\"", "1.5"]),
        ("workload.sites", &["4", "0"]),
        ("workload.order", &["\"descending\"", "\"random\""]),
        ("workload.tail", &["false", "\"no\""]),
        ("workload.kprobe", &["\"x\"", "2"]),
        ("workload.extra", &["1"]),
        ("fetch.preset", &["\"optimistic\"", "1"]),
        ("fetch.unit", &["\"word\""]),
        ("fetch.stores", &["\"dword\""]),
        ("fetch.monotone", &["\"x\""]),
        ("fetch.staleness", &["0", "-1", "4294967296"]),
        ("fetch.speed", &["1"]),
        ("kprobes.addr", &["0x400001", "0x400800", "0x900000", "-1", "\"x\"", "0x400809"]),
        ("kprobes.cycles", &["0", "-1", "100001", "\"x\""]),
        ("kprobes.armed", &["\"x\""]),
        ("kprobes.when", &["1"]),
        // `false` too: the file registers a kprobe, which needs CONFIG_KPROBES.
        ("kernel.CONFIG_KPROBES", &["\"y\"", "1", "false"]),
        ("kernel.CONFIG_FOO", &["true"]),
        // tso: refused on the Rust model (a compiled protocol runs it: c_protocol.rs).
        ("memory.model", &["\"tso\"", "\"pso\"", "1"]),
        ("memory.order", &["\"x\""]),
    ];
    let mut out = Vec::new();
    for (key, values) in bad {
        for (i, v) in values.iter().enumerate() {
            let text = with(key, v);
            let line = line_of(&text, key);
            let field_name = match *key {
                k if k.starts_with("kprobes.") => "kprobes".to_string(),
                k => k.to_string(),
            };
            let wants = vec![format!(":{line}"), format!("field `{field_name}")];
            out.push(file_case(&format!("field-{}-{i}", key.replace('.', "-")), text, &wants));
        }
    }
    out
}

/// Files that are not scenarios at all, or are cut short in the middle of a token.
fn malformed_cases() -> Vec<Case> {
    let mut out = vec![
        file_case("empty", String::new(), &["field `workload`".into()]),
        file_case("no-kind", "[workload]\nsite = \"aligned\"\n".into(), &["field `workload.kind`".into()]),
        file_case("binary", "\u{0}\u{1}\u{2}garbage".into(), &[":1".into()]),
        file_case("json", "{\"workload\": {\"kind\": \"ftrace\"}}".into(), &[":1".into()]),
        file_case("dup-key", "cpus = 2\ncpus = 3\n[workload]\nkind = \"ftrace\"\n".into(), &[":2".into()]),
        file_case("dup-table", "[workload]\nkind = \"ftrace\"\n[workload]\nkind = \"jcc\"\n".into(), &[":3".into()]),
        file_case("workload-not-table", "workload = \"ftrace\"\n".into(), &[":1".into()]),
        file_case("kprobes-not-array", "[workload]\nkind = \"ftrace\"\n[kprobes]\naddr = 1\n".into(), &[":3".into()]),
    ];
    // Cut inside a quoted string: an unterminated string on that line.
    for (i, (n, line)) in VALID.lines().enumerate().filter(|(_, l)| l.contains("= \"")).enumerate() {
        let cut: usize = VALID.lines().take(n).map(|l| l.len() + 1).sum::<usize>() + line.find("= \"").unwrap() + 3;
        out.push(file_case(&format!("cut-string-{i}"), VALID[..cut].to_string(), &[format!(":{}", n + 1)]));
    }
    // Cut inside a table header.
    for (i, (n, line)) in VALID.lines().enumerate().filter(|(_, l)| l.starts_with('[')).enumerate() {
        let cut: usize = VALID.lines().take(n).map(|l| l.len() + 1).sum::<usize>() + line.len() - 1;
        out.push(file_case(&format!("cut-header-{i}"), VALID[..cut].to_string(), &[format!(":{}", n + 1)]));
    }
    out
}

/// A valid artifact, written once by a failing run.
fn valid_artifact() -> (PathBuf, Value) {
    let dir = tempdir("bad-input-source");
    let f = write(&dir, "failing.toml", FAILING);
    let (code, stdout, stderr) =
        out(pokesim().arg("run").arg(&f).arg("--artifact-dir").arg(dir.join("a")).arg("--json"));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let path = PathBuf::from(json(&stdout)["artifact"].as_str().unwrap());
    let value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    (path, value)
}

fn artifact_case(name: &str, text: String, wants: &[&str]) -> Vec<Case> {
    let file = format!("{name}.json");
    [&["replay"][..], &["trace"], &["shrink", "-o", "out.json"]]
        .iter()
        .map(|cmd| {
            let mut args: Vec<String> = cmd.iter().map(|s| s.to_string()).collect();
            args.insert(1, file.clone());
            let mut w = vec![file.clone()];
            w.extend(wants.iter().map(|s| s.to_string()));
            Case { name: format!("{name}-{}", cmd[0]), args, file: Some((file.clone(), text.clone())), wants: w }
        })
        .collect()
}

fn artifact_cases() -> Vec<Case> {
    let (path, valid) = valid_artifact();
    let text = std::fs::read_to_string(path).unwrap();
    let mut out = Vec::new();
    for tenth in 1..10 {
        let cut = text.len() * tenth / 10;
        out.extend(artifact_case(&format!("truncated-{tenth}"), text[..cut].to_string(), &["corrupt or truncated"]));
    }
    let fields = [
        "format",
        "pokesim_version",
        "scenario",
        "seed",
        "strategy",
        "decisions",
        "zeros_after",
        "violation",
        "trace_hash",
        "ticks",
    ];
    for f in fields {
        let mut v = valid.clone();
        v.as_object_mut().unwrap().remove(f);
        let want = if f == "format" { "field `format`" } else { f };
        out.extend(artifact_case(&format!("without-{f}"), v.to_string(), &[want]));
    }
    let edits: Vec<(&str, &str, Value, &str)> = vec![
        ("format-0", "format", Value::from(0), "field `format`"),
        ("format-4", "format", Value::from(4), "field `format`"),
        ("format-1", "format", Value::from(1), "field `format`"),
        ("format-string", "format", Value::from("2"), "field `format`"),
        ("version-future", "pokesim_version", Value::from("99.0.0"), "field `pokesim_version`"),
        ("version-garbage", "pokesim_version", Value::from("x"), "field `pokesim_version`"),
        ("decisions-bad", "decisions", serde_json::json!([[1, 0]]), "field `decisions`"),
        ("decisions-type", "decisions", Value::from("x"), "corrupt artifact"),
        ("seed-negative", "seed", Value::from(-1), "corrupt artifact"),
        ("extra-field", "colour", Value::from("red"), "unknown field"),
        ("kind-unknown", "violation", serde_json::json!({"kind": "crash"}), "corrupt artifact"),
        (
            "rip-decimal",
            "violation",
            {
                let mut v = valid["violation"].clone();
                v["rip"] = Value::from(4196352);
                v
            },
            "corrupt artifact",
        ),
    ];
    for (name, field, value, want) in edits {
        let mut v = valid.clone();
        v[field] = value;
        out.extend(artifact_case(name, v.to_string(), &[want]));
    }
    // The scenario inside, broken the ways a scenario file can be: located inside it.
    for (i, (key, value)) in
        [("cpus", "0"), ("protocol", "\"linux-9\""), ("workload.kind", "\"nope\""), ("kprobes.addr", "0x400001")]
            .iter()
            .enumerate()
    {
        let mut v = valid.clone();
        let inner = v["scenario"].as_str().unwrap().to_string();
        let broken = if key.starts_with("kprobes") {
            format!("{inner}\n[[kprobes]]\naddr = {value}\n")
        } else {
            let (t, leaf) = key.split_once('.').map_or((None, *key), |(t, l)| (Some(t), l));
            inner
                .lines()
                .scan(None::<String>, |table, l| {
                    if l.starts_with('[') {
                        *table = Some(l.trim_matches(|c| c == '[' || c == ']').to_string());
                    }
                    let hit = table.as_deref() == t && l.split_once('=').is_some_and(|(k, _)| k.trim() == leaf);
                    Some(if hit { format!("{leaf} = {value}") } else { l.to_string() })
                })
                .collect::<Vec<_>>()
                .join("\n")
        };
        v["scenario"] = Value::from(broken);
        out.extend(artifact_case(&format!("inner-{i}"), v.to_string(), &["(scenario)", "field `"]));
    }
    out
}

fn flag_case(name: &str, args: &[&str], want: &str) -> Case {
    Case {
        name: name.into(),
        args: args.iter().map(|s| s.to_string()).collect(),
        file: Some(("ok.toml".into(), VALID.into())),
        wants: vec![want.into()],
    }
}

fn flag_cases() -> Vec<Case> {
    let numeric: &[(&str, &[&str])] = &[
        ("--cpus", &["0", "257", "-1", "x", "99999999999999999999"]),
        ("--seed", &["-1", "x", "18446744073709551615"]),
        ("--runs", &["0", "-1", "x"]),
        ("--rounds", &["0", "100001", "4294967295", "x"]),
        ("--ticks", &["0", "-1", "x"]),
        ("--staleness", &["0", "-1", "x"]),
        ("--kprobe-at", &["0x400001", "0x900000", "zz", "-1"]),
    ];
    let mut out = Vec::new();
    for cmd in ["run", "explore"] {
        for (flag, values) in numeric {
            for v in *values {
                out.push(flag_case(&format!("{cmd}{flag}={v}"), &[cmd, &format!("{flag}={v}")], flag));
            }
        }
        for (flag, v) in [
            ("--workload", "nope"),
            ("--protocol", "linux-9"),
            ("--mutant", "nope"),
            ("--strategy", "dfs"),
            ("--preset", "fast"),
            ("--fetch", "word"),
            ("--stores", "dword"),
            ("--site", "64"),
            ("--order", "random"),
            ("--expect", "crash"),
            ("--depth", "0"),
            ("--jobs", "0"),
            ("--jobs", "100000"),
            ("--kernel", "CONFIG_KPROBES=maybe"),
            ("--kernel", "CONFIG_FOO=y"),
            ("--kernel", "KPROBES"),
            ("--memory", "pso"),
            ("--memory", "tso"),
        ] {
            out.push(flag_case(&format!("{cmd}{flag}={v}"), &[cmd, &format!("{flag}={v}")], flag));
        }
        out.push(flag_case(&format!("{cmd}-sites-on-ftrace"), &[cmd, "--sites", "4"], "--sites"));
        out.push(flag_case(
            &format!("{cmd}-order-on-jcc"),
            &[cmd, "--workload", "jcc", "--protocol", "linux-6.16", "--order", "descending"],
            "--order",
        ));
        out.push(flag_case(&format!("{cmd}-no-tail-on-ftrace"), &[cmd, "--no-tail"], "--no-tail"));
        out.push(flag_case(&format!("{cmd}-depth-without-pct"), &[cmd, "--depth", "2"], "--depth"));
        out.push(flag_case(&format!("{cmd}-mutant-other-version"), &[cmd, "--mutant", "jcc-no-invert"], "--mutant"));
        out.push(flag_case(&format!("{cmd}-twice"), &[cmd, "--mutant", "no-int3", "--mutant", "no-int3"], "--mutant"));
        out.push(flag_case(&format!("{cmd}-no-such-file"), &[cmd, "missing.toml"], "missing.toml"));
        out.push(flag_case(&format!("{cmd}-directory"), &[cmd, "."], "a directory"));
        out.push(flag_case(&format!("{cmd}-unknown-flag"), &[cmd, "--colour", "red"], "--colour"));
        out.push(flag_case(&format!("{cmd}-multi-insn"), &[cmd, "--workload", "multi_insn"], "--workload"));
        out.push(flag_case(
            &format!("{cmd}-kprobe-without-kprobes"),
            &[cmd, "--kprobe", "--kernel", "CONFIG_KPROBES=n"],
            "--kernel",
        ));
    }
    for (name, args, want) in [
        ("explore-shard-3/3", &["explore", "ok.toml", "--shard", "3/3"][..], "--shard"),
        ("explore-shard-1/0", &["explore", "ok.toml", "--shard", "1/0"], "--shard"),
        ("explore-shard-x", &["explore", "ok.toml", "--shard", "x"], "--shard"),
        ("explore-time-0", &["explore", "ok.toml", "--time", "0"], "--time"),
        ("explore-time-inf", &["explore", "ok.toml", "--time", "inf"], "--time"),
        ("explore-time-nan", &["explore", "ok.toml", "--time", "NaN"], "--time"),
        ("explore-time-big", &["explore", "ok.toml", "--time", "1e300"], "--time"),
        ("exhaust-runs", &["exhaust", "ok.toml", "--runs", "5"], "--runs"),
        ("exhaust-seed", &["exhaust", "ok.toml", "--seed", "5"], "--seed"),
        ("exhaust-strategy", &["exhaust", "ok.toml", "--strategy", "pct"], "--strategy"),
        ("exhaust-bound", &["exhaust", "ok.toml", "--bound", "65"], "--bound"),
        ("exhaust-iterations", &["exhaust", "ok.toml", "--iterations", "0"], "--iterations"),
        ("exhaust-max", &["exhaust", "ok.toml", "--max-executions", "0"], "--max-executions"),
        ("check-runs", &["check", "--runs", "0"], "--runs"),
        ("check-jobs", &["check", "--jobs", "0"], "--jobs"),
        ("mutants-protocol", &["mutants", "--protocol", "linux-1.0"], "--protocol"),
        ("mutants-workload", &["mutants", "--workload", "kpatch"], "--workload"),
        ("mutants-preset", &["mutants", "--preset", "fast"], "--preset"),
        ("mutants-runs", &["mutants", "--runs", "0"], "--runs"),
        ("mutants-kernel", &["mutants", "--kernel", "CONFIG_KPROBES=2"], "--kernel"),
        ("corpus-missing", &["corpus", "no-such-dir"], "no-such-dir"),
        ("corpus-add-name", &["corpus", ".", "--add", "ok.toml", "--name", "a b"], "ok.toml"),
        ("corpus-add-missing", &["corpus", ".", "--add", "missing.json"], "missing.json"),
        ("replay-missing", &["replay", "missing.json"], "missing.json"),
        ("replay-toml-seeds", &["replay", "ok.toml"], "field `decisions`"),
        ("trace-toml-seeds", &["trace", "ok.toml"], "field `decisions`"),
        ("shrink-toml-seeds", &["shrink", "ok.toml", "-o", "x.json"], "field `decisions`"),
        ("shrink-no-output", &["shrink", "ok.toml"], "--output"),
        ("bench-steps", &["bench", "--steps", "10"], "--steps"),
        ("no-command", &[], "Usage"),
        ("unknown-command", &["frobnicate"], "frobnicate"),
    ] {
        out.push(flag_case(name, args, want));
    }
    out
}

/// `Err` describes how the case was not refused as it must be.
fn run_case(dir: &Path, case: &Case) -> Result<(), String> {
    if let Some((name, text)) = &case.file {
        write(dir, name, text);
    }
    let (code, stdout, stderr) = out(pokesim().args(&case.args).current_dir(dir));
    if code != 2 {
        return Err(format!("{}: {:?} exited {code}: {stdout}{stderr}", case.name, case.args));
    }
    match case.wants.iter().find(|w| !stderr.contains(w.as_str())) {
        Some(w) => Err(format!("{}: {:?}: expected '{w}' in: {stderr}", case.name, case.args)),
        None => Ok(()),
    }
}

#[test]
fn every_bad_input_exits_2_naming_the_file_line_and_field() {
    let mut cases = field_cases();
    cases.extend(malformed_cases());
    cases.extend(artifact_cases());
    cases.extend(flag_cases());
    assert!(cases.len() >= 200, "only {} generated cases", cases.len());
    eprintln!("{} bad inputs", cases.len());
    let failures: Vec<String> = cases
        .iter()
        .enumerate()
        .filter_map(|(i, case)| run_case(&tempdir(&format!("bad-input/{i}")), case).err())
        .collect();
    assert!(failures.is_empty(), "{} of {} cases:\n{}", failures.len(), cases.len(), failures.join("\n"));
}

// --- Every mutant and every flag acts or is refused ---------------------------------------------

/// Seeds each mutated scenario is compared on.
const SEEDS: u64 = 6;

/// Every mutant × every workload variant × every protocol, in-process: either the scenario is
/// refused as it is built (a mutant that cannot act, naming it; or a workload the version
/// cannot patch at all, mutated or not), or its trace hash differs from the unmutated run's on
/// one of [`SEEDS`] seeds — a mutant that is accepted always changes what runs.
#[test]
fn every_mutant_on_every_workload_and_protocol_acts_or_is_refused() {
    use rayon::prelude::*;
    use scenarios::catalogue::{self, variants, Variant};
    use sim_core::{Mutant, Protocol, SimError, Subject};

    let mut all: Vec<Variant> = variants();
    for kind in scenarios::workload::WorkloadKind::ALL {
        if !all.iter().any(|v| v.name == kind.name()) {
            all.extend(catalogue::variant(kind.name()));
        }
    }
    let small = |p: Protocol, ms: &[Mutant], v: &Variant, k: u64| {
        let mut s = catalogue::scenario(p, ms, v.spec, "pessimistic", k);
        s.workload.rounds = 3;
        s.config.cpus = 2;
        // multi_insn exists to replace several instructions (B2).
        s.config.unsafe_multi_insn = v.spec.kind == scenarios::workload::WorkloadKind::MultiInsn;
        s
    };
    let combos: Vec<(Protocol, Variant, Mutant)> = Protocol::ALL
        .into_iter()
        .flat_map(|p| all.iter().flat_map(move |v| Mutant::ALL.into_iter().map(move |m| (p, *v, m))))
        .collect();
    // (applied, refused as unable to act, workload not patchable by the version, masked)
    let tally: Vec<[usize; 4]> = combos
        .par_iter()
        .map(|&(p, v, m)| {
            if small(p, &[], &v, 0).plan().is_err() {
                return [0, 0, 1, 0];
            }
            match small(p, &[m], &v, 0).plan() {
                Err(SimError::Invalid { subject: Subject::Mutants, message }) => {
                    assert!(message.contains(m.name()), "{m} on {p} {v}: {message}");
                    return [0, 1, 0, 0];
                }
                Err(e) => panic!("{m} on {p} {v}: refused for another reason: {e}"),
                Ok(_) => {}
            }
            let run = |ms: &[Mutant], k: u64| small(p, ms, &v, k).run_unrecorded().expect("an accepted scenario runs");
            // The unmutated run's own violation (a version's historic bug) may end every run
            // before the edited step: such a seed shows nothing either way.
            let (mut masked, mut differs) = (true, false);
            for k in 0..SEEDS {
                let base = run(&[], k);
                if run(&[m], k).trace_hash != base.trace_hash {
                    differs = true;
                    break;
                }
                masked &= base.violation().is_some();
            }
            assert!(differs || masked, "{m} on {p} {v} was accepted and changed no run in {SEEDS} seeds");
            [usize::from(differs), 0, 0, usize::from(!differs)]
        })
        .collect();
    let sum = tally.iter().fold([0; 4], |a, t| [a[0] + t[0], a[1] + t[1], a[2] + t[2], a[3] + t[3]]);
    eprintln!(
        "{} combinations: {} applied (the run changes), {} refused (cannot act), {} workload unsupported by the \
         version, {} masked by the version's own violation",
        combos.len(),
        sum[0],
        sum[1],
        sum[2],
        sum[3]
    );
    assert!(sum[0] > 0 && sum[1] > 0);
}

/// `cmd` with `flags` over the default scenario (ftrace, 1 round): `Ok((exit, json))`, or
/// `Err((exit, stderr))` for a refusal or an internal error.
fn cheap(cmd: &str, flags: &[&str]) -> Result<(i32, Value), (i32, String)> {
    let dir = tempdir("flag-acts");
    let mut c = pokesim();
    c.current_dir(&dir).arg(cmd).args(["--rounds", "1", "--json", "--no-artifact"]).args(flags);
    match cmd {
        "exhaust" => c.args(["--bound", "0"]),
        _ => c.args(["--runs", "1"]),
    };
    let (code, stdout, stderr) = out(&mut c);
    if code == 2 || code == 3 {
        return Err((code, stderr));
    }
    let mut v = json_lines(&stdout).pop().unwrap_or_else(|| panic!("{cmd} {flags:?}: no JSON: {stderr}"));
    for volatile in ["millis", "seconds", "elapsed", "time", "secs", "runs_per_second", "artifact"] {
        if let Some(o) = v.as_object_mut() {
            o.remove(volatile);
        }
    }
    Ok((code, v))
}

/// Every scenario flag × `run`, `explore`, `exhaust`: the flag changes the run (its JSON —
/// trace hash, scenario echo, budget, expectation — differs from the default's) or is refused
/// (exit 2, naming it).
#[test]
fn every_scenario_flag_changes_the_run_or_is_refused() {
    let flags: &[&[&str]] = &[
        &["--workload", "static_call"],
        &["--protocol", "linux-6.16"],
        &["--mutant", "no-int3"],
        &["--cpus", "1"],
        &["--seed", "5"],
        &["--strategy", "pct"],
        &["--strategy", "pct", "--depth", "5"],
        &["--depth", "5"],
        &["--preset", "snapshot"],
        &["--fetch", "block16"],
        &["--stores", "whole"],
        &["--non-monotone"],
        &["--staleness", "3"],
        &["--site", "cross16"],
        &["--sites", "4"],
        &["--order", "descending"],
        &["--no-tail"],
        &["--kprobe"],
        &["--kprobe=cycling"],
        &["--kprobe-at", "0x400000"],
        &["--kernel", "CONFIG_KPROBES=n"],
        &["--unsafe-multi-insn"],
        &["--memory", "tso"],
        // A budget that binds (one that does not is honoured all the same, and shows nowhere).
        &["--ticks", "50"],
        &["--expect", "torn-fetch"],
    ];
    let mut failures = Vec::new();
    let mut counts = (0, 0);
    for cmd in ["run", "explore", "exhaust"] {
        let base = cheap(cmd, &[]).unwrap_or_else(|e| panic!("{cmd}: the default scenario is refused: {e:?}"));
        for f in flags {
            // A refusal names one of the flags given.
            let names = |stderr: &str| {
                f.iter().filter_map(|a| a.split('=').next()).any(|a| a.starts_with("--") && stderr.contains(a))
            };
            match cheap(cmd, f) {
                Err((2, stderr)) if names(&stderr) => counts.1 += 1,
                Err((code, stderr)) => failures.push(format!("{cmd} {f:?}: exit {code}: {stderr}")),
                Ok(v) if v == base => failures.push(format!("{cmd} {f:?}: accepted and changed nothing: {v:?}")),
                Ok(_) => counts.0 += 1,
            }
        }
    }
    eprintln!("{} flag cases changed the run, {} were refused", counts.0, counts.1);
    assert!(failures.is_empty(), "{} cases:\n{}", failures.len(), failures.join("\n"));
}
