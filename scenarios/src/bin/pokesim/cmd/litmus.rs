//! `pokesim litmus FILE.litmus`: an x86 litmus test in herdtools7's format, run by complete
//! search under x86-TSO or SC ([`scenarios::litmus`]), reported as herd7 reports it.

use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use cpu_model::MemoryModel;
use scenarios::litmus::{parse, report, run};

use crate::out::{self, Failure, Status};

/// `pokesim litmus`.
#[derive(Args)]
pub struct LitmusArgs {
    /// The litmus test (herdtools7's X86 format, e.g. catalogue/x86/tests/SB.litmus).
    #[arg(value_name = "FILE.litmus")]
    file: PathBuf,
    /// The memory model of data accesses: `tso` (x86-TSO) or `sc` (sequential consistency).
    #[arg(long, default_value = "tso", value_parser = parse_model)]
    model: MemoryModel,
    /// Stop after this many distinct states: the search is then incomplete (exit 4, no verdict).
    #[arg(long, default_value_t = 2_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    max_states: u64,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

fn parse_model(s: &str) -> Result<MemoryModel, String> {
    s.parse()
}

/// `pokesim litmus`.
pub fn litmus(a: &LitmusArgs) -> Result<Status, Failure> {
    let name = a.file.display();
    let text = std::fs::read_to_string(&a.file).map_err(|e| Failure::Bad(format!("{name}: {e}")))?;
    let test = parse::parse(&text).map_err(|e| Failure::Bad(format!("{name}:{}: {}", e.line, e.msg)))?;
    let opts = run::Options { model: a.model, max_states: a.max_states };
    let started = Instant::now();
    let outcome = run::run(&test, &opts).map_err(|e| match e {
        run::RunError::Cpu(e) => Failure::Internal(format!("{name}: {e}")),
        e => Failure::Bad(format!("{name}:{}", e.to_string().trim_start_matches("line "))),
    })?;
    let seconds = started.elapsed().as_secs_f64();
    if a.json {
        out::json(&report::JsonReport::of(&test, a.model, &outcome))?;
    } else {
        out::raw(&report::text(&test, a.model, &outcome))?;
        out::line(format!("Time {} {seconds:.2}", test.name))?;
    }
    Ok(if outcome.complete { Status::Expected } else { Status::BudgetExhausted })
}
