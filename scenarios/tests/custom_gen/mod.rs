//! The custom-program generator and property shared by `custom_fuzz.rs` (`cargo test`) and the
//! cargo-fuzz target `fuzz/fuzz_targets/custom_code.rs`: random mixes of the instruction forms
//! `asm_text` supports — in the generated loop or a code block of their own, with labels,
//! calls, jumps, bad bytes, and sites whose new instruction is sometimes the old one.

#![allow(dead_code)]

use std::collections::BTreeMap;

use scenarios::file::ScenarioFile;
use scenarios::workload::asm_text::assemble;
use sim_core::{Protocol, SimError, Verdict};

/// The correct protocols each accepted program runs on.
pub const PROTOCOLS: [Protocol; 3] = [Protocol::Linux55, Protocol::Linux60, Protocol::Linux616];

/// splitmix64, seeded (so that a failure names the program that shows it) and optionally fed
/// bytes (so that a coverage-guided fuzzer steers the choices).
pub struct Rng<'a> {
    state: u64,
    bytes: &'a [u8],
}

impl<'a> Rng<'a> {
    /// The generator of program `k`.
    pub fn seeded(k: u64) -> Self {
        Self { state: 0x5eed_c0de ^ k.wrapping_mul(0x2545_f491_4f6c_dd1d), bytes: &[] }
    }

    /// A generator whose choices start from `bytes`, one byte each.
    pub fn fed(bytes: &'a [u8]) -> Self {
        Self { state: 0x5eed_c0de ^ bytes.len() as u64, bytes }
    }

    fn next(&mut self) -> u64 {
        if let Some((&b, rest)) = self.bytes.split_first() {
            self.bytes = rest;
            self.state ^= b as u64;
        }
        self.state = self.state.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    fn pick<'s>(&mut self, from: &[&'s str]) -> &'s str {
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
fn header(rng: &mut Rng<'_>) -> String {
    let (cpus, rounds) = (1 + rng.below(3), 1 + rng.below(3));
    format!(
        "name = \"fuzz\"\nprotocol = \"linux-6.16\"\ncpus = {cpus}\n[workload]\nkind = \"custom\"\nrounds = {rounds}\n"
    )
}

/// An instruction: mostly plain (at a site: a NOP the protocol can patch) or `branches`,
/// sometimes a bug.
fn insn<'a>(rng: &mut Rng<'_>, branches: &[&'a str], site: bool) -> &'a str {
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
fn new_for<'a>(rng: &mut Rng<'_>, old: &'a str, branches: &[&'a str]) -> &'a str {
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
fn generated_loop(rng: &mut Rng<'_>) -> String {
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
fn own_code(rng: &mut Rng<'_>) -> String {
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

/// A program: the generated loop or a code block of its own.
pub fn program(rng: &mut Rng<'_>) -> String {
    if rng.percent(50) {
        generated_loop(rng)
    } else {
        own_code(rng)
    }
}

/// What the programs came to.
#[derive(Debug, Default)]
pub struct Counts {
    /// generated.
    pub generated: u64,
    /// refused.
    pub refused: u64,
    /// refused by protocol.
    pub refused_by_protocol: u64,
    /// runs.
    pub runs: u64,
    /// passes.
    pub passes: u64,
    /// budget.
    pub budget: u64,
}

/// The property on program `k`: refused as bad input naming a field, or run on every correct
/// protocol (or refused by it) without a violation and without an error of pokesim's own.
pub fn check(k: u64, src: &str, c: &mut Counts) {
    c.generated += 1;
    let f = match ScenarioFile::parse("fuzz.toml", src, "fuzz") {
        Ok(f) => f,
        Err(e) => {
            assert!(e.field.is_some(), "program {k}: a refusal names a field: {e}\n{src}");
            c.refused += 1;
            return;
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
