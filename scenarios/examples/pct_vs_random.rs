//! PCT against random: for each mutant the kernel calls necessary, on the first version ×
//! workload where the matrix catches it, the number of runs each strategy needs to find it,
//! over 20 independent campaigns; prints the medians.
//!
//! ```sh
//! cargo run --release -p scenarios --example pct_vs_random
//! ```

use rayon::prelude::*;
use scenarios::campaign::first_violation;
use scenarios::catalogue::{known_bug, scenario, supported, variants};
use scenarios::Scenario;
use sim_core::sched::Strategy;
use sim_core::{Mutant, Protocol};

const CAMPAIGNS: u64 = 20;
const MAX_RUNS: u64 = 400;

fn median(mut v: Vec<u64>) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn main() {
    let extra: Vec<(Mutant, Protocol, &str)> = vec![(Mutant::NoSyncAfterTail, Protocol::Linux55, "batch")];
    let mut cases: Vec<(Mutant, Protocol, &str)> = Vec::new();
    for m in Mutant::ALL.into_iter().filter(|m| !m.benign()) {
        let found = Protocol::ALL.into_iter().filter(|p| m.applies_to(*p)).find_map(|p| {
            variants()
                .into_iter()
                .filter(|v| supported(p, v.spec).is_ok() && known_bug(p, v).is_none())
                .find(|v| {
                    (0..30).any(|k| {
                        scenario(p, &[m], v.spec, "pessimistic", k).run().is_ok_and(|o| o.violation().is_some())
                    })
                })
                .map(|v| (m, p, v.name))
        });
        cases.extend(found);
    }
    cases.extend(extra);
    println!("{:<26} {:<11} {:<20} {:>14} {:>14}", "mutant", "version", "workload", "random median", "pct median");
    for (m, p, w) in cases {
        let v = variants().into_iter().find(|v| v.name == w).expect("variant");
        let per = |strategy: Strategy| -> Vec<u64> {
            (0..CAMPAIGNS)
                .into_par_iter()
                .map(|c| {
                    let mut s = scenario(p, &[m], v.spec, "pessimistic", 0);
                    s.config.cpus = 4;
                    // One patch round per run: each run gets one chance, so strategies differ.
                    s.workload.rounds = 1;
                    s.seed = c * 100_003;
                    let found = first_violation(&Scenario { strategy, ..s }, MAX_RUNS).expect("runs");
                    found.map_or(MAX_RUNS + 1, |f| f.index + 1)
                })
                .collect()
        };
        let (r, q) = (median(per(Strategy::Random)), median(per(Strategy::Pct { depth: 3 })));
        let show = |x: u64| if x > MAX_RUNS { format!(">{MAX_RUNS}") } else { x.to_string() };
        println!("{:<26} {:<11} {:<20} {:>14} {:>14}", m.name(), p.name(), w, show(r), show(q));
    }
}
