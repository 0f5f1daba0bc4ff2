//! Property tests over generated scenarios (vCPU count 2–8, seed, site placement including
//! sites that cross a 16-byte block, a 64-byte line and a page, fetch preset): the seed
//! protocol never violates an oracle, and the same property run on a mutant is found false
//! and shrunk by proptest to a smaller failing scenario, whose failure message names its
//! artifact and the `pokesim replay` command. `PROPTEST_CASES` sets the number of cases
//! (default 64).

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use proptest::test_runner::{Config, FileFailurePersistence, TestError, TestRunner};
use scenarios::artifact::Replayable;
use scenarios::Scenario;
use sim_core::{Mutant, Protocol, Verdict};
use tests::{no_violation, run, scenario};

fn artifacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("proptest-artifacts")
}

proptest::proptest! {
    #![proptest_config(Config { cases: tests::cases(64), ..Config::default() })]

    #[test]
    fn the_seed_protocol_holds_on_generated_scenarios(s in scenario(Protocol::Seed, vec![])) {
        no_violation(&s, &artifacts())?;
    }
}

/// A size for comparing scenarios: fewer vCPUs, then smaller seeds, are simpler.
fn size(s: &Scenario) -> (usize, u64) {
    (s.config.cpus, s.seed)
}

#[test]
fn proptest_finds_and_shrinks_a_mutant_failure() {
    // The failing seed is persisted (and committed), as proptest recommends: later runs try it
    // first, so this test keeps finding the failure at once.
    let persistence = FileFailurePersistence::Direct("proptest-regressions/mutant_shrink.txt");
    let mut runner = TestRunner::new(Config {
        cases: tests::cases(64),
        failure_persistence: Some(Box::new(persistence)),
        ..Config::default()
    });
    let failures: RefCell<Vec<Scenario>> = RefCell::new(Vec::new());
    let result = runner.run(&scenario(Protocol::Seed, vec![Mutant::NoSyncAfterInt3]), |s| {
        let r = no_violation(&s, &artifacts());
        if r.is_err() {
            failures.borrow_mut().push(s.clone());
        }
        r
    });
    let minimal = match result {
        Err(TestError::Fail(reason, minimal)) => {
            let msg = reason.message();
            assert!(msg.contains("torn-fetch"), "{reason}");
            // The message names the shrunk case's artifact and how to replay it.
            let path = msg.split("reproduce: pokesim replay ").nth(1).expect("replay command in the message").trim();
            let artifact = Replayable::load(Path::new(path)).expect("the named artifact exists");
            assert_eq!(artifact.scenario.config.cpus, minimal.config.cpus, "the artifact is the shrunk case's");
            let replay = artifact.reproduce(sim_core::Observe::NOTHING).expect("the artifact replays");
            assert_eq!(replay.violation(), artifact.violation.as_ref());
            minimal
        }
        other => panic!("the mutant's property should fail, got {other:?}"),
    };
    let failures = failures.into_inner();
    let original = failures.first().expect("a failing case was recorded").clone();
    assert_eq!(failures.last(), Some(&minimal), "the minimal case is the last failing case tried");
    // Shrinking never grows the case, and here it has room to work: it reaches 2 vCPUs.
    assert!(size(&minimal) <= size(&original), "minimal {:?} vs original {:?}", size(&minimal), size(&original));
    assert_eq!(minimal.config.cpus, 2, "shrinking should reach the smallest vCPU count");
    // The minimal scenario still fails when run on its own, in the same way.
    let o = run(&minimal);
    assert_eq!(o.verdict, Verdict::Violation);
}
