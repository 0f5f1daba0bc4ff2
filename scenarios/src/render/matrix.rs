//! The sync-necessity matrix as a page (`pokesim mutants --html FILE`): a row per mutant, a
//! column per fetch preset, each cell's version × workload combinations as chips — red where
//! the mutant was caught, grey where it was not, `n/a` where it cannot act — and, for every
//! caught combination, the [`html`] report of its (shrunk) counterexample embedded in the same
//! file.
//!
//! The reports are replayed from each cell's [`Counterexample`] with the trace kept, so the
//! page shows what the run established: a replay that no longer ends in the cell's violation
//! kind is an internal error, never a picture. Each report is stored as the text of a hidden
//! `<textarea>` (RCDATA: only `&` and `<` need escaping, and the browser gives back the exact
//! file) and loaded into an `<iframe srcdoc>` when its `<details>` is opened, so a page with
//! hundreds of reports opens as fast as one.
//!
//! Hooks for tests and scripts: one `<details class="report" id="cN">` per caught cell,
//! `<body data-ready="1">` once the script has run.

use std::fmt::Write;

use crate::matrix::{Cell, Counterexample};
use sim_core::SimError;

use super::{escape, html, Run};

/// The report of one counterexample: its run replayed strictly with the trace kept.
pub fn report(cx: &Counterexample, expect: sim_core::ViolationKind) -> Result<String, SimError> {
    let scenario = &cx.scenario;
    let plan = scenario.plan()?;
    let facts = super::PlanFacts::of(&plan);
    let decisions = sim_core::Decisions::replay(cx.decisions.clone());
    let outcome = scenario.run_plan(plan, decisions, sim_core::Observe::TRACE)?;
    let kind = outcome.violation().map(|v| v.kind);
    if kind != Some(expect) {
        return Err(SimError::Internal(format!(
            "{}: the counterexample replayed to {} instead of {expect}",
            scenario.label(),
            kind.map_or("no violation".to_string(), |k| k.to_string())
        )));
    }
    Ok(html::render(&Run::planned(scenario, &facts, &outcome)))
}

/// The page for `cells` (in the order `matrix::cells` gives them) over `presets`, made with
/// `runs` seeds per strategy per cell.
pub fn render(cells: &[Cell], presets: &[String], runs: u64) -> Result<String, SimError> {
    let mut s = String::with_capacity(64 * 1024);
    let _ = writeln!(
        s,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<title>pokesim: sync-necessity matrix</title>\n<style>{CSS}</style>\n</head>\n<body>"
    );
    let caught = cells.iter().filter(|c| c.is_caught()).count();
    let na = cells.iter().filter(|c| !c.applies()).count();
    let _ = writeln!(
        s,
        "<header><h1>pokesim: sync-necessity matrix</h1>\n<p>{} cells, {caught} caught, {na} n/a · {runs} seeds per strategy (random, PCT depth 3) per cell · \
         a red chip is a caught version × workload; click it for the report of its shrunk counterexample; \
         an n/a chip is one the mutant cannot act on (never run, not a survivor).</p></header>",
        cells.len()
    );
    table(cells, presets, &mut s);
    s.push_str("<section id=\"reports\"><h2>Counterexamples</h2>\n");
    for (i, c) in cells.iter().enumerate() {
        let (Some(cx), Some(kind)) = (&c.counterexample, c.kind) else { continue };
        let report = report(cx, kind)?;
        let _ = writeln!(
            s,
            "<details class=\"report\" id=\"c{i}\"><summary>{}</summary>\n<textarea hidden>{}</textarea></details>",
            escape(&summary(c)),
            report.replace('&', "&amp;").replace('<', "&lt;")
        );
    }
    let _ = writeln!(s, "</section>\n<script>{SCRIPT}</script>\n</body>\n</html>");
    Ok(s)
}

/// `no-sync-after-int3 · linux-5.5 · ftrace · pessimistic — torn-fetch, 12 decisions, random after 3 runs`.
fn summary(c: &Cell) -> String {
    let mut s = format!("{} · {} · {} · {} · {}", c.mutant, c.protocol, c.workload, c.kernel, c.preset);
    if let Some(k) = c.kind {
        let _ = write!(s, " — {k}");
    }
    if let Some(d) = c.shrunk_decisions {
        let _ = write!(s, ", shrunk to {d} decisions");
    }
    let runs = match c.strategy.as_deref() {
        Some("pct") => c.pct_runs,
        _ => c.random_runs,
    };
    if let (Some(strategy), Some(runs)) = (&c.strategy, runs) {
        let _ = write!(s, ", found by {strategy} after {runs} runs");
    }
    s
}

/// The matrix: a row per mutant (in the cells' order), a column per preset.
fn table(cells: &[Cell], presets: &[String], s: &mut String) {
    s.push_str("<table id=\"matrix\"><tr><th>mutant</th><th>kernel</th>");
    for p in presets {
        let _ = write!(s, "<th>{}</th>", escape(p));
    }
    s.push_str("</tr>\n");
    let mut rows: Vec<(&str, &str)> = cells.iter().map(|c| (c.mutant.as_str(), c.kernel.as_str())).collect();
    rows.dedup();
    for (m, k) in rows {
        let mine: Vec<(usize, &Cell)> =
            cells.iter().enumerate().filter(|(_, c)| c.mutant == m && c.kernel == k).collect();
        let benign = mine.first().is_some_and(|(_, c)| c.benign);
        let _ = write!(
            s,
            "<tr><th>{}{}</th><td>{}</td>",
            escape(m),
            if benign { " <i>(benign)</i>" } else { "" },
            escape(k)
        );
        for p in presets {
            let col: Vec<&(usize, &Cell)> = mine.iter().filter(|(_, c)| &c.preset == p).collect();
            let n = col.iter().filter(|(_, c)| c.is_caught()).count();
            let applied = col.iter().filter(|(_, c)| c.applies()).count();
            if applied == 0 {
                s.push_str("<td><b>n/a</b> ");
            } else {
                let _ = write!(s, "<td><b>{n}/{applied}</b> ");
            }
            for (i, c) in col {
                let name = escape(&format!("{} {}", c.protocol, c.workload));
                if let Some(why) = &c.not_applicable {
                    let _ = write!(s, "<span class=\"chip na\" title=\"n/a: {}\">{name} n/a</span>", escape(why));
                    continue;
                }
                match c.kind {
                    Some(k) if c.is_caught() => {
                        let _ = write!(s, "<a class=\"chip caught\" href=\"#c{i}\" title=\"{k}\">{name}</a>");
                    }
                    _ => {
                        let _ = write!(s, "<span class=\"chip missed\" title=\"not caught\">{name}</span>");
                    }
                }
            }
            s.push_str("</td>");
        }
        s.push_str("</tr>\n");
    }
    s.push_str("</table>\n");
}

const CSS: &str = r#"
body { font-family: DejaVu Sans, Helvetica, Arial, sans-serif; margin: 16px; color: #212121; }
h1 { font-size: 18px; margin: 0 0 4px 0; } h2 { font-size: 15px; margin: 18px 0 6px 0; }
table { border-collapse: collapse; font-size: 12px; }
td, th { border: 1px solid #e0e0e0; padding: 3px 6px; text-align: left; vertical-align: top; }
.chip { display: inline-block; padding: 0 4px; margin: 1px; border-radius: 2px; font-size: 11px; text-decoration: none; }
.chip.caught { background: #ffcdd2; color: #b71c1c; } .chip.missed { background: #eceff1; color: #757575; }
.chip.na { background: #ffffff; color: #9e9e9e; border: 1px dashed #bdbdbd; }
details.report { margin: 4px 0; font-size: 13px; } details.report summary { cursor: pointer; }
details.report iframe { width: 100%; height: 900px; border: 1px solid #e0e0e0; }
"#;

const SCRIPT: &str = r#"
(function () {
  'use strict';
  function load(d) {
    if (d.querySelector('iframe')) return;
    var f = document.createElement('iframe');
    f.srcdoc = d.querySelector('textarea').value;
    d.appendChild(f);
  }
  document.querySelectorAll('details.report').forEach(function (d) {
    d.addEventListener('toggle', function () { if (d.open) load(d); });
  });
  function fromHash() {
    var d = location.hash && document.getElementById(location.hash.slice(1));
    if (d && d.tagName === 'DETAILS') { d.open = true; load(d); d.scrollIntoView(); }
  }
  window.addEventListener('hashchange', fromHash);
  fromHash();
  document.body.setAttribute('data-ready', '1');
})();
"#;
