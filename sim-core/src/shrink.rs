//! Shrinking a failing decision list (DESIGN.md §2.10): delta debugging (Zeller's ddmin) over
//! the list, keeping the violation kind. A candidate list is replayed leniently — removed
//! decisions shift the rest, and a list that runs out answers 0 from then on — and kept if it
//! still ends in a violation of the same kind. The caller supplies the test; this module owns
//! only the search, so the same search also serves scenario-level shrinking (fewer vCPUs,
//! fewer rounds) in the `scenarios` crate.

use crate::decision::Decision;

/// Drops trailing zero choices: a replayed list that runs out answers 0, so they are implied.
pub fn trim(mut list: Vec<Decision>) -> Vec<Decision> {
    while list.last().is_some_and(|d| d.choice == 0) {
        list.pop();
    }
    list
}

/// A budget of test runs.
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    /// Runs left.
    pub runs: u64,
}

/// ddmin: returns a list no longer than `list` for which `interesting` holds. `interesting`
/// returns the (trimmed) list the run actually consumed when the candidate reproduces the
/// failure, `None` otherwise; runs stop when the budget is spent.
pub fn ddmin(
    list: Vec<Decision>,
    budget: &mut Budget,
    mut interesting: impl FnMut(&[Decision]) -> Option<Vec<Decision>>,
) -> Vec<Decision> {
    let mut cur = list;
    let mut n = 2usize;
    while cur.len() >= 2 && budget.runs > 0 {
        let chunk = cur.len().div_ceil(n);
        let mut reduced = false;
        let parts = n;
        for i in 0..parts {
            let (lo, hi) = (i * chunk, ((i + 1) * chunk).min(cur.len()));
            if lo >= hi || budget.runs == 0 {
                continue;
            }
            let candidate: Vec<Decision> = cur[..lo].iter().chain(&cur[hi..]).copied().collect();
            budget.runs -= 1;
            if let Some(consumed) = interesting(&candidate) {
                cur = if consumed.len() < candidate.len() { consumed } else { candidate };
                n = (n - 1).max(2);
                reduced = true;
                break;
            }
        }
        if !reduced {
            if n >= cur.len() {
                break;
            }
            n = (n * 2).min(cur.len());
        }
    }
    cur
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(choice: u32) -> Decision {
        Decision { of: 10, choice }
    }

    #[test]
    fn ddmin_finds_the_two_decisions_that_matter() {
        // "Fails" iff the list contains a 7 somewhere before a 3.
        let list: Vec<Decision> = [1, 2, 7, 4, 5, 6, 3, 8, 9, 1, 1, 1].iter().map(|&c| d(c)).collect();
        let mut budget = Budget { runs: 1000 };
        let out = ddmin(list, &mut budget, |l| {
            let seven = l.iter().position(|x| x.choice == 7)?;
            l[seven..].iter().any(|x| x.choice == 3).then(|| l.to_vec())
        });
        assert_eq!(out, vec![d(7), d(3)]);
        assert!(budget.runs < 1000);
    }

    #[test]
    fn trim_drops_implied_zeros() {
        assert_eq!(trim(vec![d(1), d(0), d(2), d(0), d(0)]), vec![d(1), d(0), d(2)]);
    }
}
