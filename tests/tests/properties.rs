//! Property tests over generated scenarios (vCPU count 2–8, seed, site placement including
//! sites that cross a 16-byte block, a 64-byte line and a page, fetch preset): the seed
//! protocol never violates an oracle, and the same property run on a mutant is found false
//! and shrunk by proptest to a smaller failing scenario.

use proptest::test_runner::{Config, TestCaseError, TestError, TestRunner};
use std::cell::RefCell;

use scenarios::Scenario;
use sim_core::{Mutant, Protocol, Verdict};
use tests::{run, scenario};

/// The property: a run of the scenario finds no violation.
fn no_violation(s: &Scenario) -> Result<(), TestCaseError> {
    let o = run(s);
    match o.violation() {
        None => Ok(()),
        Some(v) => Err(TestCaseError::fail(format!(
            "{} cpus={} site={} fetch={} seed={}: {v}",
            s.label(),
            s.config.cpus,
            s.workload.site,
            s.config.fetch,
            s.seed
        ))),
    }
}

proptest::proptest! {
    #![proptest_config(Config { cases: 64, ..Config::default() })]

    #[test]
    fn the_seed_protocol_holds_on_generated_scenarios(s in scenario(Protocol::Seed, vec![])) {
        no_violation(&s)?;
    }
}

/// A size for comparing scenarios: fewer vCPUs, then smaller seeds, are simpler.
fn size(s: &Scenario) -> (usize, u64) {
    (s.config.cpus, s.seed)
}

#[test]
fn proptest_finds_and_shrinks_a_mutant_failure() {
    let mut runner = TestRunner::new(Config { cases: 64, failure_persistence: None, ..Config::default() });
    let failures: RefCell<Vec<Scenario>> = RefCell::new(Vec::new());
    let result = runner.run(&scenario(Protocol::Seed, vec![Mutant::NoSyncAfterInt3]), |s| {
        let r = no_violation(&s);
        if r.is_err() {
            failures.borrow_mut().push(s.clone());
        }
        r
    });
    let minimal = match result {
        Err(TestError::Fail(reason, minimal)) => {
            assert!(reason.message().contains("torn-fetch") || reason.message().contains("violation"), "{reason}");
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
