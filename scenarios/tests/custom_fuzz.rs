//! A custom-code fuzzer (issue 21): a few hundred generated `custom` programs per run — random
//! mixes of the instruction forms `asm_text` supports, in the generated loop or in a code
//! block of their own, with labels, calls, jumps, bad bytes, and sites whose new instruction
//! is sometimes the old one — each run briefly on the correct protocols. Property: a program
//! is refused as bad input naming a field, or it runs and no violation is reported (on a
//! correct protocol, an accepted program's violation could only be the program's own bug,
//! which the dry run exists to refuse), and never an internal error. `cargo fuzz run
//! custom_code` runs the same generator for longer.

use std::collections::BTreeMap;

use scenarios::file::ScenarioFile;
use scenarios::workload::asm_text::assemble;
use sim_core::{Protocol, SimError, Verdict};

/// Programs per `cargo test` run (`CUSTOM_FUZZ_PROGRAMS=N` runs `N`).
const PROGRAMS: u64 = 300;
/// The correct protocols each accepted program runs on.
const PROTOCOLS: [Protocol; 3] = [Protocol::Linux55, Protocol::Linux60, Protocol::Linux616];

/// splitmix64: a seeded generator, so that a failure names the program that shows it.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'a>(&mut self, from: &[&'a str]) -> &'a str {
        from[self.below(from.len())]
    }

    fn percent(&mut self, p: u64) -> bool {
        self.next() % 100 < p
    }
}

/// Instructions that are fine anywhere.
const PLAIN: &[&str] = &[
    "nop1",
    "nop2",
    "nop3",
    "nop5",
    "nop6",
    "nop8",
    "pause",
    "inc qword [rbx+8]",
    "dec qword [rbx+16]",
    "add qword [rbx+24], 3",
    "sub qword [rbx+32], 100000",
];
/// The NOPs every version's `text_poke_loc_init()` takes at a site.
const SITE_NOPS: &[&str] = &["nop2", "nop5"];
/// The program's own bugs.
const BAD: &[&str] = &[
    "db 17",
    "db 0f 0b",
    "int3",
    "ret",
    "jmp 0x600000",
    "jmp 0x500000",
    "jmp 0x401f80",
    "inc qword [rbx-0x200000]",
    "inc qword [rax]",
];
/// Branches of the generated loop.
const LOOP_BRANCHES: &[&str] =
    &["call callee", "jmp next", "jmp short next", "jne next", "je short next", "jmp loop_head", "jmp short loop_head"];

/// The scenario around the program: 1..=3 vCPUs, 1..=3 rounds.
fn header(rng: &mut Rng) -> String {
    let (cpus, rounds) = (1 + rng.below(3), 1 + rng.below(3));
    format!(
        "name = \"fuzz\"\nprotocol = \"linux-6.16\"\ncpus = {cpus}\n[workload]\nkind = \"custom\"\nrounds = {rounds}\n"
    )
}

/// An instruction: mostly plain (at a site: a NOP the protocol can patch) or `branches`,
/// sometimes a bug.
fn insn<'a>(rng: &mut Rng, branches: &[&'a str], site: bool) -> &'a str {
    match rng.below(20) {
        0 => rng.pick(BAD),
        1..=8 if !branches.is_empty() => rng.pick(branches),
        _ if site => rng.pick(SITE_NOPS),
        _ => rng.pick(PLAIN),
    }
}

/// The length of `text` assembled (every label the generator uses resolves, in reach).
fn length(text: &str) -> Option<usize> {
    let names = ["next", "callee", "loop_head", "l1", "l2", "l3", "l4", "l5", "l6", "l7", "l8", "f0", "f1", "f2"];
    let known: BTreeMap<String, u64> = names.iter().map(|n| (n.to_string(), 0x40_0000)).collect();
    assemble(text, 0x40_0000, &known).ok().map(|a| a.bytes.len())
}

/// The new instruction of a site whose old one is `old`: often the same, sometimes a bug,
/// else one of the same length.
fn new_for<'a>(rng: &mut Rng, old: &'a str, branches: &[&'a str]) -> &'a str {
    if rng.percent(25) {
        return old;
    }
    if rng.percent(10) {
        return rng.pick(BAD);
    }
    let len = length(old);
    let same: Vec<&str> = SITE_NOPS.iter().chain(branches).copied().filter(|c| length(c) == len).collect();
    if same.is_empty() {
        old
    } else {
        rng.pick(&same)
    }
}

/// The generated loop with 1..=6 sites.
fn generated_loop(rng: &mut Rng) -> String {
    let mut s = header(rng);
    for _ in 0..1 + rng.below(6) {
        let old = insn(rng, LOOP_BRANCHES, true);
        let new = new_for(rng, old, LOOP_BRANCHES);
        s.push_str(&format!("[[sites]]\nold = \"{old}\"\nnew = \"{new}\"\n"));
    }
    s
}

/// A code block of its own: loop-body lines `l0`… with forward branches, calls of functions
/// after the loop (which return, or sometimes do not), and 1..=3 sites on its lines.
fn own_code(rng: &mut Rng) -> String {
    let lines = 2 + rng.below(7);
    let funcs = rng.below(3);
    let mut body = vec!["top: inc qword [rbx]".to_string()];
    let mut sites: Vec<String> = Vec::new();
    for i in 0..lines {
        let mut branches: Vec<String> = (i + 1..=lines).map(|l| format!("jmp l{l}")).collect();
        branches.extend((i + 1..=lines).map(|l| format!("jne short l{l}")));
        branches.extend((0..funcs).map(|f| format!("call f{f}")));
        let branch_refs: Vec<&str> = branches.iter().map(String::as_str).collect();
        let is_site = sites.len() < 3 && rng.percent(40);
        let line = insn(rng, &branch_refs, is_site);
        let site = if is_site {
            sites.push(new_for(rng, line, &branch_refs).to_string());
            format!("s{}: ", sites.len() - 1)
        } else {
            String::new()
        };
        body.push(format!("l{i}: {site}{line}"));
    }
    body.push(format!("l{lines}: jmp top"));
    for f in 0..funcs {
        body.push(format!("f{f}: inc qword [rbx+40]"));
        body.push(if rng.percent(85) { "ret".into() } else { rng.pick(&["jmp top", "nop1"]).into() });
    }
    if sites.is_empty() {
        body.insert(1, "s0: nop5".into());
        sites.push("nop5".into());
    }
    let mut s = header(rng);
    s.push_str(&format!("[code]\nentry = \"top\"\nasm = \"\"\"\n{}\n\"\"\"\n", body.join("\n")));
    for (i, new) in sites.iter().enumerate() {
        s.push_str(&format!("[[sites]]\nat = \"s{i}\"\nnew = \"{new}\"\n"));
    }
    s
}

/// Generates program `k` of the run.
pub fn program(k: u64) -> String {
    let mut rng = Rng(0x5eed_c0de ^ k.wrapping_mul(0x2545_f491_4f6c_dd1d));
    if rng.percent(50) {
        generated_loop(&mut rng)
    } else {
        own_code(&mut rng)
    }
}

#[derive(Debug, Default)]
struct Counts {
    generated: u64,
    refused: u64,
    refused_by_protocol: u64,
    runs: u64,
    passes: u64,
    budget: u64,
}

#[test]
fn custom_programs_are_refused_or_run_clean_on_correct_protocols() {
    let mut c = Counts::default();
    let programs = std::env::var("CUSTOM_FUZZ_PROGRAMS").ok().and_then(|n| n.parse().ok()).unwrap_or(PROGRAMS);
    for k in 0..programs {
        let src = program(k);
        c.generated += 1;
        let f = match ScenarioFile::parse("fuzz.toml", &src, "fuzz") {
            Ok(f) => f,
            Err(e) => {
                assert!(e.field.is_some(), "program {k}: a refusal names a field: {e}\n{src}");
                c.refused += 1;
                continue;
            }
        };
        for protocol in PROTOCOLS {
            let mut s = f.scenario.clone();
            s.config.protocol = protocol;
            s.seed = k;
            match s.run() {
                Err(SimError::Invalid { .. }) => c.refused_by_protocol += 1,
                Err(e) => panic!("program {k} on {protocol}: not bad input, an error of pokesim: {e}\n{src}"),
                Ok(o) => {
                    c.runs += 1;
                    match o.verdict {
                        Verdict::Pass => c.passes += 1,
                        Verdict::BudgetExhausted => c.budget += 1,
                        Verdict::Violation => {
                            panic!("program {k} on {protocol}: {:?}\n{src}", o.violation())
                        }
                    }
                }
            }
        }
    }
    eprintln!("custom fuzz: {c:?}");
    assert!(c.refused > programs / 10 && c.runs > programs / 3, "the generator exercises both sides: {c:?}");
}
