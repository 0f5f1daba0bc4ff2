//! The HTML report in a real browser (headless Chromium): it loads offline, its script
//! finishes without errors, it draws a lane per vCPU and the patcher, highlights the violation
//! once, and a screenshot is not blank. Where no browser is installed the test is reported as
//! ignored (`POKESIM_REQUIRE_BROWSER=1`, which `.ci/run` sets, makes that a failure).

mod common;
#[path = "../../tests/support/skippable.rs"]
mod skippable;

use std::path::PathBuf;

use common::{headless, out, pokesim, tempdir};
use scenarios::artifact::Replayable;
use scenarios::render::{self, Run};

fn main() {
    skippable::main(
        skippable::browser(),
        &[("the_html_report_works_offline_in_a_real_browser", the_html_report_works_offline_in_a_real_browser)],
    );
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A 4-vCPU torn fetch: `examples/race.toml` explored, its artifact, replayed with its trace.
fn race_run() -> Run {
    let dir = tempdir("browser-race");
    let (code, stdout, stderr) =
        out(pokesim().args(["explore", "--quiet", "--artifact-dir"]).arg(&dir).arg(repo().join("examples/race.toml")));
    assert_eq!(code, 0, "{stdout}{stderr}");
    let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let r = Replayable::load(&files[0]).unwrap();
    let o = r.reproduce(sim_core::Observe::TRACE).unwrap();
    Run::new(&r.scenario, &o).unwrap()
}

fn the_html_report_works_offline_in_a_real_browser() {
    let browser = skippable::chromium().expect("the harness checked for a browser");
    let dir = tempdir("render-browser");
    let run = race_run();
    let report = dir.join("report.html");
    std::fs::write(&report, render::html::render(&run)).unwrap();
    let html = std::fs::read_to_string(&report).unwrap();
    let outside: Vec<&str> = html
        .match_indices("http")
        .map(|(i, _)| &html[i..(i + 30).min(html.len())])
        .filter(|s| !s.starts_with("http://www.w3.org/2000/svg"))
        .collect();
    assert!(outside.is_empty(), "the report refers to the network: {outside:?}");
    let url = format!("file://{}", report.display());

    let (dom, log) = headless(&browser, &["--dump-dom".into(), url.clone()]);
    let body = dom.split("<body").nth(1).and_then(|b| b.split('>').next()).expect("a body element");
    assert!(body.contains("data-ready=\"1\""), "the report's script did not finish: <body{body}> {log}");
    assert!(!body.contains("data-errors"), "script errors: <body{body}>");
    assert!(!log.contains("Uncaught"), "console errors: {log}");
    assert_eq!(dom.matches("<g class=\"lane\"").count(), run.cpus + 1, "a lane per vCPU and the patcher");
    assert_eq!(dom.matches("class=\"violation\"").count(), 1, "the violation is highlighted once");
    assert!(dom.contains("id=\"history\""), "the store history is there");

    let shot = dir.join("report.png");
    headless(&browser, &[format!("--screenshot={}", shot.display()), "--window-size=1200,900".into(), url]);
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let px = info.color_type.samples();
    let pixels: Vec<&[u8]> = buf[..info.buffer_size()].chunks(px).collect();
    let ink = pixels.iter().filter(|p| p[..3].iter().any(|c| *c < 200)).count();
    let red = pixels.iter().filter(|p| p[0] > 180 && p[1] < 60 && p[2] < 60).count();
    assert!(ink * 50 > pixels.len(), "the screenshot is blank: {ink} of {} pixels inked", pixels.len());
    assert!(red > 20, "no red violation or verdict in the screenshot ({red} red pixels)");
}
