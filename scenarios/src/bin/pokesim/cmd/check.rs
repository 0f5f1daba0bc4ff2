//! `pokesim check` (the built-in scenarios) and `pokesim mutants` (the sync-necessity
//! matrix): many campaigns, run in parallel, each row printed as soon as it and the rows
//! before it are done — so a piped or interrupted run keeps every finished row.

use std::ops::ControlFlow;
use std::path::PathBuf;
use std::time::Instant;

use clap::Args;
use cpu_model::FetchModel;
use scenarios::catalogue::Variant;
use scenarios::check::{self, BuiltIn, CheckRow};
use scenarios::matrix::{self, Cell, CellOptions, Filter};
use scenarios::workload::WorkloadSpec;
use serde::Serialize;
use sim_core::{KernelConfig, Protocol, SimError, Subject, Verdict};

use super::Saved;
use crate::args::{ArtifactOpts, JobsOpt, OutputOpts};
use crate::out::{self, Failure, Status};
use crate::progress::Progress;

/// `pokesim check`.
#[derive(Args)]
pub struct CheckArgs {
    /// Seeds per built-in scenario.
    #[arg(long, default_value_t = check::DEFAULT_RUNS, value_parser = clap::value_parser!(u64).range(1..=10_000_000))]
    runs: u64,
    /// Patch rounds per run.
    #[arg(long, default_value_t = check::DEFAULT_ROUNDS, value_parser = clap::value_parser!(u32).range(1..=100_000))]
    rounds: u32,
    #[command(flatten)]
    artifacts: ArtifactOpts,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    jobs: JobsOpt,
}

/// `pokesim mutants`.
#[derive(Args)]
pub struct MutantsArgs {
    /// Only this workload variant (ftrace, ftrace+kprobe, static_call, ...; `pokesim list`).
    #[arg(long, value_parser = |s: &str| scenarios::catalogue::variant(s), value_name = "W")]
    workload: Option<Variant>,
    /// Only this protocol version.
    #[arg(long, alias = "version", value_parser = |s: &str| s.parse::<Protocol>(), value_name = "P")]
    protocol: Option<Protocol>,
    /// Only this fetch preset (repeatable) [default: all four].
    #[arg(long = "preset", value_name = "P", value_parser = |s: &str| FetchModel::preset(s).map(|_| s.to_string()).ok_or_else(|| format!("unknown preset '{s}' (valid: {})", FetchModel::PRESETS.join(", "))))]
    presets: Vec<String>,
    /// Only this kernel configuration (repeatable), e.g. CONFIG_KPROBES=n [default: each
    /// configuration pokesim models: CONFIG_KPROBES=y, then =n].
    #[arg(long = "kernel", value_parser = |s: &str| s.parse::<KernelConfig>(), value_name = "CONFIG_X=y|n")]
    kernels: Vec<KernelConfig>,
    /// Seeds per strategy per cell.
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u64).range(1..=1_000_000))]
    runs: u64,
    /// Also write the matrix as one self-contained HTML page, with the report of every
    /// caught cell's shrunk counterexample embedded.
    #[arg(long, value_name = "FILE")]
    html: Option<PathBuf>,
    /// Run each version's built-in C file (its mutants as switches) instead of the Rust model;
    /// cells the C file cannot run (no switch, kprobes that cycle) are n/a with the reason.
    #[arg(long)]
    protocol_c: bool,
    #[command(flatten)]
    output: OutputOpts,
    #[command(flatten)]
    jobs: JobsOpt,
}

#[derive(Serialize)]
struct CheckLine<'a> {
    command: &'static str,
    #[serde(flatten)]
    row: &'a CheckRow,
    #[serde(flatten)]
    saved: Saved,
}

#[derive(Serialize)]
struct Summary {
    command: &'static str,
    rows: usize,
    as_expected: usize,
    unexpected: usize,
    exhausted: usize,
}

/// `pokesim check`.
pub fn check(a: &CheckArgs) -> Result<Status, Failure> {
    a.jobs.apply()?;
    let start = Instant::now();
    let mut builtins = check::builtins();
    for b in &mut builtins {
        b.spec.rounds = a.rounds;
    }
    validate_rows(&builtins, a.rounds)?;
    if !a.output.json {
        out::line(format!(
            "{:<62} {:<36} {:<16} {:<18} {:>5} {:>5} {:>8} {:>7}  result",
            "scenario", "expected", "verdict", "kind", "runs", "seed", "traps", "time"
        ))?;
    }
    let progress = Progress::new("check", builtins.len() as u64, "scenarios", a.output.quiet || a.output.json);
    let mut sum = Summary { command: "check-summary", rows: 0, as_expected: 0, unexpected: 0, exhausted: 0 };
    let mut failure = None;
    scenarios::stream::in_order(
        builtins.len(),
        |i| check::check_one(&builtins[i], a.runs),
        |i, row| {
            progress.set(i as u64 + 1);
            match row.map_err(Failure::from).and_then(|r| print_check_row(a, &r).map(|()| r)) {
                Ok(r) => {
                    sum.rows += 1;
                    sum.as_expected += r.ok as usize;
                    sum.exhausted += (!r.ok && r.verdict == Verdict::BudgetExhausted) as usize;
                    sum.unexpected += (!r.ok && r.verdict != Verdict::BudgetExhausted) as usize;
                    ControlFlow::Continue(())
                }
                Err(f) => {
                    failure = Some(f);
                    ControlFlow::Break(())
                }
            }
        },
    );
    progress.finish();
    if let Some(f) = failure {
        return Err(f);
    }
    if a.output.json {
        out::json(&sum)?;
    } else {
        let secs = start.elapsed().as_secs_f64();
        out::line(format!(
            "\n{} scenarios, {} as expected, {} unexpected, {} out of budget, {secs:.1}s",
            sum.rows, sum.as_expected, sum.unexpected, sum.exhausted
        ))?;
    }
    Ok(match (sum.unexpected, sum.exhausted) {
        (0, 0) => Status::Expected,
        (0, _) => Status::BudgetExhausted,
        _ => Status::Unexpected,
    })
}

/// Checks every row's workload before the first row runs (the rows are built in; `--rounds`
/// is the user's part of them): a row that `--rounds` makes invalid is refused naming the flag
/// and the most rounds every row accepts; any other invalid row is a pokesim bug.
fn validate_rows(builtins: &[BuiltIn], rounds: u32) -> Result<(), Failure> {
    let invalid = |rounds: u32| {
        builtins.iter().find_map(|b| WorkloadSpec { rounds, ..b.spec }.validate().err().map(|e| (b.name(), e)))
    };
    let Some((row, e)) = invalid(rounds) else { return Ok(()) };
    match e {
        SimError::Invalid { subject: Subject::Rounds, message } => {
            // The largest number of rounds every row accepts (validity is monotone in rounds).
            let (mut lo, mut hi) = (0u32, rounds);
            while hi - lo > 1 {
                let mid = lo + (hi - lo) / 2;
                (lo, hi) = if invalid(mid).is_none() { (mid, hi) } else { (lo, mid) };
            }
            Err(Failure::Bad(format!(
                "--rounds {rounds}: row {row}: {message} (every row accepts at most {lo} rounds)"
            )))
        }
        e => Err(Failure::Internal(format!("built-in row {row} is invalid: {e}"))),
    }
}

fn print_check_row(a: &CheckArgs, r: &CheckRow) -> Result<(), Failure> {
    let saved = match &r.artifact {
        Some((artifact, name)) => Saved::write(&a.artifacts, Some(artifact), name),
        None => Saved::default(),
    };
    if a.output.json {
        return out::json(&CheckLine { command: "check", row: r, saved });
    }
    out::line(format!(
        "{:<62} {:<36} {:<16} {:<18} {:>5} {:>5} {:>8} {:>6.1}s  {}",
        r.scenario,
        r.expect.to_string(),
        r.verdict.to_string(),
        r.kind.map_or("-".to_string(), |k| k.to_string()),
        r.runs,
        r.seed.map_or("-".to_string(), |s| s.to_string()),
        r.int3_traps,
        r.millis as f64 / 1000.0,
        if r.ok { "ok" } else { "UNEXPECTED" }
    ))
}

#[derive(Serialize)]
struct CellLine<'a> {
    command: &'static str,
    #[serde(flatten)]
    cell: &'a Cell,
}

/// `pokesim mutants`: the matrix, one JSON line per cell or one text row per mutant.
pub fn mutants(a: &MutantsArgs) -> Result<Status, Failure> {
    a.jobs.apply()?;
    if let Some(path) = &a.html {
        // Refused now rather than after the whole matrix has run.
        if scenarios::output::is_stdout(path) {
            return Err(Failure::Bad("--html -: stdout carries the matrix; give the page a file name".into()));
        }
        out::check_output(path, "--html")?;
    }
    let start = Instant::now();
    let filter = Filter {
        workload: a.workload.map(|v| v.name.to_string()),
        protocol: a.protocol,
        presets: a.presets.clone(),
        kernels: a.kernels.clone(),
    };
    let cells = matrix::cells(&filter);
    let presets: Vec<String> = if a.presets.is_empty() {
        FetchModel::PRESETS.iter().map(|p| p.to_string()).collect()
    } else {
        a.presets.clone()
    };
    if !a.output.json {
        if a.protocol_c {
            out::line("# each version's built-in C file (pokesim program --protocol P --c), its mutants as switches")?;
        }
        let cols: String = presets.iter().map(|p| format!(" {p:>14}")).collect();
        out::line(format!(
            "{:<26} {:<7}{cols}   kinds; median runs random/pct; median shrunk decisions",
            "mutant (caught/cells)", "KPROBES"
        ))?;
    }
    let progress = Progress::new("mutants", cells.len() as u64, "cells", a.output.quiet || a.output.json);
    let (mut done, mut failure, mut all, mut na) = (Vec::new(), None, Vec::new(), 0usize);
    scenarios::stream::in_order(
        cells.len(),
        |i| matrix::cell(&cells[i], a.runs, CellOptions { c: a.protocol_c, ..CellOptions::FULL }),
        |i, cell| {
            progress.set(i as u64 + 1);
            let step = cell.map_err(Failure::from).and_then(|c| {
                let next = cells.get(i + 1).map(|c| (c.mutant.name(), c.kernel.to_string()));
                na += usize::from(!c.applies());
                if a.html.is_some() {
                    all.push(c.clone());
                }
                emit_cell(a, &presets, &mut done, c, next)
            });
            match step {
                Ok(()) => ControlFlow::Continue(()),
                Err(f) => {
                    failure = Some(f);
                    ControlFlow::Break(())
                }
            }
        },
    );
    progress.finish();
    if let Some(f) = failure {
        return Err(f);
    }
    if !a.output.json {
        let secs = start.elapsed().as_secs_f64();
        out::line(format!(
            "\n{} cells ({na} n/a: the mutant cannot act there, not run), {} runs per strategy per cell, {secs:.1}s",
            cells.len(),
            a.runs
        ))?;
    }
    if let Some(path) = &a.html {
        write_page(a, path, &all, &presets)?;
    }
    Ok(Status::Expected)
}

#[derive(Serialize)]
struct Page {
    command: &'static str,
    file: String,
    bytes: usize,
    reports: usize,
}

/// `--html`: the matrix page, every caught cell's report replayed and embedded.
fn write_page(a: &MutantsArgs, path: &std::path::Path, cells: &[Cell], presets: &[String]) -> Result<(), Failure> {
    let page = scenarios::render::matrix::render(cells, presets, a.runs)?;
    out::document(path, &page, false)?;
    let p = Page {
        command: "mutants-html",
        file: path.display().to_string(),
        bytes: page.len(),
        reports: cells.iter().filter(|c| c.counterexample.is_some()).count(),
    };
    if a.output.json {
        out::json(&p)
    } else if a.output.quiet {
        Ok(())
    } else {
        out::line(format!("wrote {} (html, {} bytes, {} reports)", p.file, p.bytes, p.reports))
    }
}

/// Prints a cell (JSON) or, once a mutant's cells are all done, its row (text).
fn emit_cell(
    a: &MutantsArgs,
    presets: &[String],
    done: &mut Vec<Cell>,
    cell: Cell,
    next: Option<(&str, String)>,
) -> Result<(), Failure> {
    if a.output.json {
        return out::json(&CellLine { command: "mutants", cell: &cell });
    }
    let (mutant, kernel) = (cell.mutant.clone(), cell.kernel.clone());
    done.push(cell);
    if next.is_some_and(|(m, k)| m == mutant && k == kernel) {
        return Ok(());
    }
    let mine = std::mem::take(done);
    let benign = mine.first().is_some_and(|c| c.benign);
    let kprobes = match kernel.parse::<KernelConfig>() {
        Ok(k) if k.kprobes => "y",
        _ => "n",
    };
    let mut line = format!("{:<26} {kprobes:<7}", format!("{mutant}{}", if benign { " (benign)" } else { "" }));
    for p in presets {
        let col: Vec<_> = mine.iter().filter(|c| &c.preset == p).collect();
        let applied = col.iter().filter(|c| c.applies()).count();
        let caught = col.iter().filter(|c| c.is_caught()).count();
        let text = if applied == 0 { "n/a".to_string() } else { format!("{caught}/{applied}") };
        line.push_str(&format!(" {text:>14}"));
    }
    let mut kinds: Vec<String> = mine.iter().filter_map(|c| c.kind.map(|k| k.to_string())).collect();
    kinds.sort();
    kinds.dedup();
    let med = |mut v: Vec<u64>| {
        v.sort_unstable();
        v.get(v.len() / 2).map_or("-".to_string(), |x| x.to_string())
    };
    let r = med(mine.iter().filter_map(|c| c.random_runs).collect());
    let q = med(mine.iter().filter_map(|c| c.pct_runs).collect());
    let sh = med(mine.iter().filter_map(|c| c.shrunk_decisions.map(|d| d as u64)).collect());
    let kinds = if kinds.is_empty() { "-".to_string() } else { kinds.join(",") };
    out::line(format!("{line}   {kinds}; {r}/{q}; {sh}"))
}
