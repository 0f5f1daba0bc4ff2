//! What a user's own tests look like: a property over generated scenarios, and the
//! `check`-style helpers on a scenario built in code.

use pokesim::proptest::prelude::*;
use pokesim::{arbitrary, Expectation, Mutant, Protocol, ViolationKind};

proptest! {
    // PROPTEST_CASES overrides the count, as proptest reads it.
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    /// The kernel's protocols since 6.0 never let a vCPU execute a torn instruction, whatever
    /// the workload, placement, fetch model or schedule.
    #[test]
    fn recent_kernels_patch_safely(s in arbitrary::scenarios()
        .protocols([Protocol::Linux60, Protocol::Linux616])
        .workloads(["ftrace", "static_call", "jump_label", "ftrace+kprobe"])
        .cpus(2..=4)
        .rounds(1..=3))
    {
        arbitrary::no_violation(&s)?;
    }
}

fn no_int3(protocol: Protocol) -> pokesim::Scenario {
    pokesim::scenario("ftrace").protocol(protocol).mutant(Mutant::NoInt3).rounds(4).build().expect("a valid scenario")
}

/// `check` fails the test on a mutant, naming the artifact and the replay command.
#[test]
#[should_panic(expected = "reproduce: pokesim replay")]
fn check_catches_the_no_int3_mutant() {
    pokesim::check(&no_int3(Protocol::Linux616));
}

/// `try_check` gives the evidence instead of panicking: the violating seed, the artifact on
/// disk, and the same seed `pokesim explore` reports.
#[test]
fn try_check_returns_the_evidence() {
    let s = no_int3(Protocol::Linux55);
    let failure = pokesim::try_check(&s, 32, Expectation::Pass).expect_err("no-int3 tears");
    let result = failure.result.as_ref().expect("the campaign ran");
    let found = result.found.as_ref().expect("a violating run");
    assert_eq!(found.outcome.violation().map(|v| v.kind), Some(ViolationKind::TornFetch));
    let artifact = failure.artifact.as_ref().expect("artifact written");
    assert!(artifact.is_file(), "{}", artifact.display());
    assert!(failure.message.contains(&format!("seed {}", found.scenario.seed)), "{}", failure.message);
    // The same campaign through `explore` finds the same seed.
    let explored = pokesim::explore(&s, 32).expect("runs");
    assert_eq!(explored.found.map(|f| f.scenario.seed), Some(found.scenario.seed));
    // And the expectation form passes.
    pokesim::check_expect(&s, Expectation::violation(ViolationKind::TornFetch));
}

/// Invalid input is an error naming the builder method, never a run.
#[test]
fn a_bad_value_names_the_method() {
    let e = pokesim::scenario("ftrace").cpus(1000).build().expect_err("too many vCPUs");
    assert!(e.to_string().contains(".cpus()"), "{e}");
    let e = pokesim::scenario("no-such-workload").build().expect_err("unknown workload");
    assert!(e.to_string().contains("no-such-workload"), "{e}");
}
