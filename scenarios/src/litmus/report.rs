//! A litmus search's result as herd7 reports it (its `Test`, `States`, `Ok`/`No`,
//! `Witnesses`, `Condition` and `Observation` lines, herdtools7 `herd/` logs), followed by
//! pokesim's own line, and as a JSON document.
//!
//! One difference: herd7's `Positive`/`Negative` and the `Observation` numbers count
//! candidate executions; pokesim's count distinct final states (it has no executions, it has
//! the set of reachable final states). Whether each is zero — hence `Ok`/`No`, `Sometimes`/
//! `Always`/`Never` and the verdict — means the same.

use serde::Serialize;

use super::run::Outcome;
use super::{LitmusTest, Quantifier};
use cpu_model::MemoryModel;

/// herd7's observation: how many final states satisfy the proposition.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Observation {
    /// Some do, some do not.
    Sometimes,
    /// All do.
    Always,
    /// None does.
    Never,
}

/// The verdict herd7's `kinds` records: is the outcome the condition describes possible?
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Kind {
    /// The outcome is reachable (observation Sometimes, or Always under `exists`/`~exists`).
    Allow,
    /// It is not (observation Never).
    Forbid,
    /// Every final state has it (observation Always under `forall`).
    Require,
}

impl Kind {
    /// As in herd7's kinds files.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Allow => "Allow",
            Kind::Forbid => "Forbid",
            Kind::Require => "Require",
        }
    }
}

/// A complete search's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct Verdict {
    /// Final states satisfying the proposition.
    pub positive: usize,
    /// Final states not satisfying it.
    pub negative: usize,
    /// The observation.
    pub observation: Observation,
    /// True if the condition (with its quantifier) holds.
    pub validated: bool,
    /// The kind.
    pub kind: Kind,
}

impl Verdict {
    /// The verdict of `out` (which must be complete) on `test`.
    pub fn of(test: &LitmusTest, out: &Outcome) -> Verdict {
        let prop = &test.condition.prop;
        let positive = out
            .finals
            .iter()
            .filter(|vals| prop.eval(&|t| out.observed.iter().position(|o| o == t).map_or(0, |i| vals[i])))
            .count();
        let negative = out.finals.len() - positive;
        let observation = match (positive, negative) {
            (0, _) => Observation::Never,
            (_, 0) => Observation::Always,
            _ => Observation::Sometimes,
        };
        let q = test.condition.quantifier;
        let validated = match q {
            Quantifier::Exists => positive > 0,
            Quantifier::NotExists => positive == 0,
            Quantifier::Forall => negative == 0,
        };
        let kind = match (observation, q) {
            (Observation::Never, _) => Kind::Forbid,
            (Observation::Always, Quantifier::Forall) => Kind::Require,
            _ => Kind::Allow,
        };
        Verdict { positive, negative, observation, validated, kind }
    }
}

fn state_line(out: &Outcome, vals: &[u32]) -> String {
    let mut s = String::new();
    for (t, v) in out.observed.iter().zip(vals) {
        s.push_str(&format!("{t}={}; ", *v as i32));
    }
    s.trim_end().to_string()
}

/// The herd7-style text report, and pokesim's closing line.
pub fn text(test: &LitmusTest, model: MemoryModel, out: &Outcome) -> String {
    let mut s = String::new();
    let header = match test.condition.quantifier {
        Quantifier::Exists => "Allowed",
        Quantifier::NotExists => "Forbidden",
        Quantifier::Forall => "Required",
    };
    s.push_str(&format!("Test {} {header}\n", test.name));
    let search = format!("{} states, {} transitions", out.states, out.transitions);
    if !out.complete {
        s.push_str(&format!(
            "Search incomplete under {model}: stopped at the state limit after {search}; no verdict (raise --max-states)\n"
        ));
        return s;
    }
    s.push_str(&format!("States {}\n", out.finals.len()));
    for vals in &out.finals {
        s.push_str(&state_line(out, vals));
        s.push('\n');
    }
    let v = Verdict::of(test, out);
    s.push_str(if v.validated { "Ok\n" } else { "No\n" });
    s.push_str(&format!("Witnesses\nPositive: {} Negative: {}\n", v.positive, v.negative));
    s.push_str(&format!("Condition {}\n", test.condition));
    s.push_str(&format!("Observation {} {:?} {} {}\n", test.name, v.observation, v.positive, v.negative));
    let validated = if v.validated { "validated" } else { "not validated" };
    s.push_str(&format!(
        "Condition {} is {validated}: {} under {} (complete search: {search})\n",
        test.condition,
        v.kind.name(),
        model_name(model)
    ));
    s
}

fn model_name(model: MemoryModel) -> &'static str {
    match model {
        MemoryModel::Tso => "x86-TSO",
        MemoryModel::Sc => "SC",
    }
}

/// The JSON report.
#[derive(Serialize)]
pub struct JsonReport {
    /// The JSON format version.
    pub format: u32,
    /// The test's name.
    pub test: String,
    /// `tso` or `sc`.
    pub model: String,
    /// True if the search was complete (otherwise there is no verdict).
    pub complete: bool,
    /// Distinct states visited.
    pub search_states: u64,
    /// Transitions explored.
    pub transitions: u64,
    /// The observed registers and locations.
    pub observed: Vec<String>,
    /// Every reachable final state, values in the order of `observed`.
    pub states: Vec<Vec<i32>>,
    /// The condition.
    pub condition: String,
    /// The verdict (absent if the search was incomplete).
    pub verdict: Option<Verdict>,
}

impl JsonReport {
    /// The report of `out`.
    pub fn of(test: &LitmusTest, model: MemoryModel, out: &Outcome) -> Self {
        JsonReport {
            format: 1,
            test: test.name.clone(),
            model: model.to_string(),
            complete: out.complete,
            search_states: out.states,
            transitions: out.transitions,
            observed: out.observed.iter().map(|t| t.to_string()).collect(),
            states: out.finals.iter().map(|v| v.iter().map(|x| *x as i32).collect()).collect(),
            condition: test.condition.to_string(),
            verdict: out.complete.then(|| Verdict::of(test, out)),
        }
    }
}
