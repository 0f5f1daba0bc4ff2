//! Regenerates the regression corpus in `scenarios/corpus/`:
//!
//! ```sh
//! cargo run --release -p scenarios --example gen_corpus
//! ```
//!
//! - `pass-<version>-<workload>.toml`: every version × workload variant it supports and passes,
//!   4 vCPUs, 3 seeds;
//! - `bug-*.toml`: the historic bugs on their buggy versions, shrunk;
//! - `mutant-<mutant>-<version>.toml`: each mutant on the first workload that catches it on
//!   each version, shrunk (the decision list replays in milliseconds), on the default kernel
//!   configuration (x86_64_defconfig: `CONFIG_KPROBES=y`); `no-sync-after-first`, whose
//!   consequence goes through `do_int3()`'s fallback to `kprobe_int3_handler()`, also on
//!   `CONFIG_KPROBES=n` (`-nokprobes`).
//!
//! Entries that are shrunk record the original decision count in their description.

use std::path::Path;

use scenarios::campaign::{Campaign, Shard};
use scenarios::catalogue::{self, known_bug, supported, variants, Variant};
use scenarios::file::{Expectation, ScenarioFile};
use scenarios::workload::{WorkloadKind, WorkloadSpec};
use scenarios::Scenario;
use sim_core::{KernelConfig, Mutant, Protocol};

fn write(dir: &Path, f: &ScenarioFile) {
    std::fs::write(dir.join(format!("{}.toml", f.name)), f.to_toml()).expect("write corpus entry");
    println!("{}", f.name);
}

/// What one shrunk entry is.
struct Entry<'a> {
    name: &'a str,
    what: &'a str,
    mutant: Option<Mutant>,
    protocol: Protocol,
    spec: WorkloadSpec,
    multi: bool,
    kernel: KernelConfig,
}

/// Finds a violating seed (cycling vCPUs and placements), shrinks it, and writes the entry.
fn shrunk_entry(dir: &Path, e: &Entry<'_>) -> bool {
    let at = |k| {
        let mutants: Vec<Mutant> = e.mutant.into_iter().collect();
        let mut s: Scenario = catalogue::scenario(e.protocol, &mutants, e.spec, "pessimistic", k);
        s.config.unsafe_multi_insn = e.multi;
        s.config.kernel = e.kernel;
        s
    };
    let campaign = Campaign { scenario_at: &at, runs: 60, shard: Shard::ALL, time: None };
    let Ok(result) = campaign.run(&|_| {}) else { return false };
    let Some(found) = result.found else { return false };
    let Some(kind) = found.outcome.violation().map(|v| v.kind) else { return false };
    let (s, o) = (&found.scenario, &found.outcome);
    let before = o.decisions.len();
    let shrunk = scenarios::shrink::shrink(s, o.decisions.clone(), kind, 20_000, &|_| {}).expect("shrinks");
    write(
        dir,
        &ScenarioFile {
            name: e.name.to_string(),
            description: Some(format!(
                "{}; shrunk from {before} decisions (seed {}, {} vCPUs)",
                e.what, s.seed, s.config.cpus
            )),
            expect: Expectation::violation(kind),
            scenario: shrunk.scenario,
            runs: 1,
            decisions: Some(shrunk.decisions),
            trace_hash: Some(shrunk.outcome.trace_hash),
        },
    );
    true
}

fn main() {
    let dir = catalogue_dir();
    for old in std::fs::read_dir(&dir).expect("corpus dir").flatten() {
        if old.path().extension().is_some_and(|x| x == "toml") {
            std::fs::remove_file(old.path()).expect("remove old entry");
        }
    }
    for p in Protocol::ALL {
        for v in variants() {
            if supported(p, v.spec).is_err() || known_bug(p, &v).is_some() {
                continue;
            }
            let mut s = catalogue::scenario(p, &[], v.spec, "pessimistic", 0);
            s.config.cpus = 4;
            // A batch round patches all 16 sites: 8 rounds are 128 site patches per seed, and
            // keep `pokesim corpus` under two seconds.
            if v.spec.kind == WorkloadKind::Batch {
                s.workload.rounds = 8;
            }
            write(
                &dir,
                &ScenarioFile {
                    name: format!("pass-{}-{}", p, v.name),
                    description: Some(format!("{} passes {}", p, v.name)),
                    expect: Expectation::Pass,
                    scenario: s,
                    runs: 3,
                    decisions: None,
                    trace_hash: None,
                },
            );
        }
    }
    let no_tail = WorkloadSpec { tail: false, ..WorkloadSpec::new(WorkloadKind::StaticCall) };
    let kprobe =
        WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Armed, ..WorkloadSpec::new(WorkloadKind::Ftrace) };
    let bugs = [
        (
            "bug-b1-linux-5.4-static-call",
            "B1: the 5.4 detour handler loses a CALL's push",
            Protocol::Linux54,
            no_tail,
            false,
        ),
        (
            "bug-b2-multi-insn-linux-6.16",
            "B2: a vCPU preempted inside a multi-instruction range",
            Protocol::Linux616,
            WorkloadSpec::new(WorkloadKind::MultiInsn),
            true,
        ),
        ("bug-b3-seed-kprobe", "B3: the seed's handler reads a cleared vector", Protocol::Seed, kprobe, false),
        (
            "bug-b5-linux-5.5-kprobe-cycling",
            "B5: a kprobe disarmed without text_poke_sync() traps after unregister and is re-armed (fixed by 5c02ece81848d)",
            Protocol::Linux55,
            WorkloadSpec { kprobe: scenarios::workload::ForeignKprobe::Cycling, ..WorkloadSpec::new(WorkloadKind::Ftrace) },
            false,
        ),
        (
            "bug-try-get-desc-linux-5.6-kprobe",
            "the 5.6 try_get_desc() use after free (fixed by efd608fa7403)",
            Protocol::Linux56,
            kprobe,
            false,
        ),
    ];
    for (name, what, p, spec, multi) in bugs {
        let entry = Entry { name, what, mutant: None, protocol: p, spec, multi, kernel: KernelConfig::DEFCONFIG };
        assert!(shrunk_entry(&dir, &entry), "{name} not reproduced");
    }
    for m in Mutant::ALL.into_iter().filter(|m| !m.benign()) {
        for p in Protocol::ALL.into_iter().filter(|p| m.applies_to(*p)) {
            let candidates: Vec<Variant> =
                variants().into_iter().filter(|v| supported(p, v.spec).is_ok() && known_bug(p, v).is_none()).collect();
            let kernels: &[KernelConfig] =
                if m == Mutant::NoSyncAfterFirst { &KernelConfig::ALL } else { &[KernelConfig::DEFCONFIG] };
            for &kernel in kernels {
                let what = format!("{m} on {p} ({kernel})");
                let suffix =
                    if kernel == KernelConfig::DEFCONFIG { String::new() } else { format!("-{}", kernel.tag()) };
                let name = format!("mutant-{m}-{p}{suffix}");
                // A mutant that cannot act on a variant is refused there; its run would be the
                // unmutated one.
                let acts = |v: &Variant| {
                    let mut s = catalogue::scenario(p, &[m], v.spec, "pessimistic", 0);
                    s.config.kernel = kernel;
                    catalogue::vacuous(&s).is_ok_and(|why| why.is_none())
                };
                if !candidates.iter().filter(|v| acts(v)).any(|v| {
                    let what = format!("{what}, {}", v.name);
                    let entry = Entry {
                        name: &name,
                        what: &what,
                        mutant: Some(m),
                        protocol: p,
                        spec: v.spec,
                        multi: false,
                        kernel,
                    };
                    shrunk_entry(&dir, &entry)
                }) {
                    println!("# {what}: not caught on any workload (see the mutant matrix)");
                }
            }
        }
    }
}

fn catalogue_dir() -> std::path::PathBuf {
    std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus")
}
