//! Batched stepping (DESIGN.md §2.5b) against single stepping on the whole corpus: every
//! interleaving a single-stepped run takes is one a batched run takes too, with the same
//! verdict. For each entry (its recorded decisions, else its first seed), the single-stepped
//! run is recorded as its sequence of events; a batched run then follows that sequence —
//! skipping the guest steps its local runs already executed, which commute with everything
//! between them — and answers every fetch choice from the single run's own list, strictly
//! (same number of options, same order, all consumed). It must reach the same violation
//! (kind, vCPU, address, message), or pass where the single run passed.

use sim_core::event::Event;
use sim_core::sched::{Probe, Scheduler};
use sim_core::{Decision, Decisions, Machine, Observe, Outcome, Recorded, Stepping};

use scenarios::corpus;
use scenarios::file::ScenarioFile;
use scenarios::scenario::Scenario;

/// Records the events a scheduler picks (with the vCPU's guest steps before each) and which
/// of the run's decisions were scheduling picks (the rest are fetch choices).
struct Tap {
    inner: Box<dyn Scheduler>,
    seq: Vec<(Event, u64)>,
    picks: Vec<u64>,
}

impl Scheduler for Tap {
    fn pick(&mut self, _: u64, _: &[Event], _: &mut Decisions) -> usize {
        unreachable!("the machine calls pick_with")
    }

    fn pick_with(&mut self, tick: u64, enabled: &[Event], probe: &dyn Probe, d: &mut Decisions) -> Option<usize> {
        let before = d.made();
        let p = self.inner.pick_with(tick, enabled, probe, d)?;
        self.picks.extend(before..d.made());
        let steps = match enabled[p] {
            Event::GuestStep(i) => probe.guest_steps(i),
            _ => 0,
        };
        self.seq.push((enabled[p], steps));
        Some(p)
    }
}

/// Follows a recorded event sequence, skipping guest steps a local run already executed.
struct Follow {
    seq: Vec<(Event, u64)>,
    pos: usize,
}

impl Scheduler for Follow {
    fn pick(&mut self, _: u64, _: &[Event], _: &mut Decisions) -> usize {
        unreachable!("the machine calls pick_with")
    }

    fn pick_with(&mut self, _: u64, enabled: &[Event], probe: &dyn Probe, _: &mut Decisions) -> Option<usize> {
        while let Some(&(Event::GuestStep(i), before)) = self.seq.get(self.pos) {
            if probe.guest_steps(i) <= before {
                break;
            }
            self.pos += 1;
        }
        let (event, _) = *self.seq.get(self.pos)?;
        self.pos += 1;
        let p = enabled.iter().position(|&e| e == event);
        Some(p.unwrap_or_else(|| panic!("{event} is not enabled in the batched run ({enabled:?})")))
    }
}

fn single(s: &Scenario, decisions: Decisions) -> (Outcome, Tap) {
    let machine = Machine::new(s.plan().unwrap(), Observe::NOTHING).unwrap();
    let inner = s.strategy.scheduler_for(s.seed, machine.expected_ticks());
    let mut tap = Tap { inner, seq: Vec::new(), picks: Vec::new() };
    let outcome = machine.run(&mut tap, decisions).unwrap();
    (outcome, tap)
}

fn batched(s: &Scenario, tap: Tap, fetch: Vec<Decision>, strict: bool) -> Outcome {
    let mut b = s.clone();
    b.config.stepping = Stepping::Batched;
    let machine = Machine::new(b.plan().unwrap(), Observe::NOTHING).unwrap();
    let decisions =
        if strict { Decisions::replay(Recorded::from_log(fetch)) } else { Decisions::replay_lenient(fetch) };
    let mut follow = Follow { seq: tap.seq, pos: 0 };
    machine.run(&mut follow, decisions).unwrap()
}

/// One entry: returns true if its single run found a violation.
fn compare(f: &ScenarioFile) -> bool {
    let s = &f.scenario;
    let decisions = match &f.decisions {
        Some(d) => Decisions::replay(d.clone()),
        None => Decisions::seeded(s.seed),
    };
    let (one, tap) = single(s, decisions);
    let fetch: Vec<Decision> = one
        .decisions
        .iter()
        .enumerate()
        .filter(|(k, _)| tap.picks.binary_search(&(*k as u64)).is_err())
        .map(|(_, d)| *d)
        .collect();
    let found = one.violation().is_some();
    // A passing single run drains for its last few steps; the batched run (whose local runs
    // go further at once) may drain first, leaving fetch choices unused.
    let many = batched(s, tap, fetch, found);
    assert_eq!(one.verdict, many.verdict, "{}", f.name);
    if let (Some(a), Some(b)) = (one.violation(), many.violation()) {
        assert_eq!((a.kind, a.cpu, a.rip, &a.message), (b.kind, b.cpu, b.rip, &b.message), "{}", f.name);
    }
    assert!(many.stats.ticks <= one.stats.ticks, "{}: batching never adds ticks", f.name);
    found
}

#[test]
fn every_corpus_interleaving_is_reached_batched_with_the_same_verdict() {
    let mut compared = 0;
    let mut violations = 0;
    for e in corpus::builtin() {
        let text = e.text.as_ref().expect("a corpus entry reads");
        let f = ScenarioFile::parse(&e.file, text, &e.stem).expect("a corpus entry loads");
        if matches!(f.scenario.config.fetch.staleness, sim_core::Staleness::Bounded(_)) {
            // Bounded staleness counts own steps with the epoch each ran at: a local run notes
            // them at its start (a legal interleaving, but not this one's fetch options).
            continue;
        }
        violations += compare(&f) as usize;
        compared += 1;
    }
    eprintln!("{compared} entries compared, {violations} of them violations");
    assert!(compared >= 100 && violations >= 40, "{compared} entries compared, {violations} violations");
}

/// A batched run's artifact says so and replays bit for bit; a single-stepped scenario's file
/// text has no `stepping` at all (every recording made before reads as it did).
#[test]
fn a_batched_artifact_records_its_stepping_and_replays() {
    use scenarios::artifact::Artifact;
    let text = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("corpus/mutant-no-int3-linux-5.5.toml"),
    )
    .unwrap();
    let f = ScenarioFile::parse("no-int3.toml", &text, "no-int3").unwrap();
    assert!(!f.to_toml().contains("stepping"));
    let mut s = f.scenario.clone();
    s.config.stepping = Stepping::Batched;
    let (seed, outcome) = (0..64)
        .map(|k| {
            s.seed = k;
            (k, s.run().unwrap())
        })
        .find(|(_, o)| o.violation().is_some())
        .expect("no-int3 violates within 64 batched seeds");
    s.seed = seed;
    let artifact = Artifact::new("no-int3", &s, &outcome).unwrap();
    assert!(artifact.scenario.contains("stepping = \"batched\""), "{}", artifact.scenario);
    let back = ScenarioFile::parse("back.toml", &artifact.scenario, "back").unwrap();
    assert_eq!(back.scenario.config.stepping, Stepping::Batched);
    let again = back.scenario.replay(Recorded::from_log(outcome.decisions.clone())).unwrap();
    assert_eq!(again.trace_hash, outcome.trace_hash);
    // The same decisions single-stepped are another run: a replay that does not fit is stale.
    let mut single = back.scenario.clone();
    single.config.stepping = Stepping::Single;
    let other = single.replay(Recorded::from_log(outcome.decisions.clone()));
    assert!(other.map_or(true, |o| o.trace_hash != outcome.trace_hash));
}

#[test]
fn an_unknown_stepping_names_its_field() {
    let e = ScenarioFile::parse("s.toml", "stepping = \"fast\"\n", "s").unwrap_err();
    assert_eq!((e.field.as_deref(), e.line), (Some("stepping"), Some(1)), "{e:?}");
    assert!(e.message.contains("single, batched"), "{}", e.message);
}

#[test]
fn exhaust_refuses_stepping() {
    let out = assert_cmd::Command::cargo_bin("pokesim")
        .unwrap()
        .args(["exhaust", "--cpus", "2", "--rounds", "1", "--stepping", "batched"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--stepping"));
}

/// Beyond the corpus (which has no compiled protocol, PCT entry, coarse fetch preset or
/// cycling kprobe): the same comparison on such scenarios, several seeds each.
#[test]
fn other_scenario_kinds_are_reached_batched_with_the_same_verdict() {
    let variants = [
        "protocol = \"linux-6.0\"\ncpus = 3\nstrategy = \"pct\"\n[workload]\nkind = \"ftrace\"\nrounds = 4\n",
        "protocol = { version = \"linux-6.0\", c = true }\ncpus = 2\n[workload]\nkind = \"ftrace\"\nrounds = 2\n",
        "protocol = { version = \"linux-5.5\", c = true }\ncpus = 2\nmutants = [\"no-sync-after-tail\"]\n\
         [workload]\nkind = \"ftrace\"\nrounds = 3\n",
        "protocol = \"linux-5.5\"\ncpus = 3\n[workload]\nkind = \"ftrace\"\nrounds = 3\nkprobe = \"cycling\"\n",
        "protocol = \"seed\"\ncpus = 3\nmutants = [\"no-sync-after-first\"]\n[workload]\nkind = \"jump_label\"\n\
         rounds = 4\n[fetch]\npreset = \"line64\"\n",
        "protocol = \"linux-6.16\"\ncpus = 2\nstrategy = \"pct:2\"\n[workload]\nkind = \"static_call\"\nrounds = 3\n",
    ];
    let mut compared = 0;
    for (v, text) in variants.iter().enumerate() {
        let mut f = ScenarioFile::parse(&format!("variant{v}.toml"), text, "variant").unwrap();
        assert_eq!(f.scenario.config.compiled.is_some(), text.contains("c = true"), "{text}");
        let tso = f.scenario.config.memory == cpu_model::MemoryModel::Tso;
        assert_eq!(tso, text.contains("c = true"), "a compiled protocol runs under x86-TSO by default");
        for seed in 0..6 {
            f.scenario.seed = seed;
            compare(&f);
            compared += 1;
        }
    }
    assert_eq!(compared, 36);
}

#[test]
fn batched_stepping_with_interrupts_is_refused() {
    let text = "cpus = 2\nstepping = \"batched\"\n[workload]\nkind = \"ftrace\"\n[interrupts]\nbudget = 3\n";
    let e = ScenarioFile::parse("irq.toml", text, "irq").unwrap_err();
    assert_eq!(e.field.as_deref(), Some("interrupts"), "{e:?}");
    assert!(e.message.contains("batched"), "{}", e.message);
}
