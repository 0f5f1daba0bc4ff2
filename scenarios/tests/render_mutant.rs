//! The pictures of a mutant's failure show what the mutant changed (issue 22): the SVG, the
//! HTML report and the text trace of a `no-sync-after-tail` failure mark the removed
//! `text_poke_sync()` in the patcher's lane where the unmutated program runs it, and name it
//! in the legend; a handler mutant's legend names the edited handler step; the labels of a
//! short run fit its canvas. The report in headless Chromium shows the struck-out sync — in the
//! DOM and in the screenshot's pixels; where no browser is installed that one test is reported
//! as ignored (`POKESIM_REQUIRE_BROWSER=1` makes that a failure), as in `browser.rs`.

mod common;
#[path = "../../tests/support/skippable.rs"]
mod skippable;

use std::path::Path;

use common::{headless, tempdir};
use scenarios::artifact::Replayable;
use scenarios::render::{self, timeline::Layout, Run};

/// The corpus entry whose failure the tests draw: no-sync-after-tail on linux-5.5, a torn
/// fetch at tick 25 after the last tail store (tick 21) and `do_sync = 0` (tick 22).
const NO_SYNC_AFTER_TAIL: &str = "mutant-no-sync-after-tail-linux-5.5.toml";
/// A short run (8 events): the title is longer than the plot.
const SHORT: &str = "mutant-no-int3-linux-5.6.toml";

fn main() {
    let always: [(&'static str, fn()); 4] = [
        ("the_svg_of_a_no_sync_after_tail_failure_marks_the_removed_sync", the_svg_marks_the_removed_sync),
        ("the_text_trace_and_perfetto_mark_the_removed_sync", the_text_trace_and_perfetto_mark_the_removed_sync),
        ("a_handler_mutants_legend_names_the_edited_step", a_handler_mutants_legend_names_the_edited_step),
        ("a_short_runs_labels_fit_the_canvas", a_short_runs_labels_fit_the_canvas),
    ];
    let needing: [(&'static str, fn()); 1] = [(
        "the_report_shows_the_removed_sync_in_the_patchers_lane",
        the_report_shows_the_removed_sync_in_the_patchers_lane,
    )];
    skippable::run(skippable::browser(), &always, &needing);
}

/// A corpus entry replayed with its trace kept.
fn replayed(entry: &str) -> Run {
    let r = Replayable::load(&common::corpus_dir().join(entry)).unwrap();
    let o = r.reproduce(sim_core::Observe::TRACE).unwrap();
    assert!(o.violation().is_some(), "{entry} replays to its violation");
    Run::new(&r.scenario, &o).unwrap()
}

/// The tick after the last `poke-tail` of the run: where the unmutated program syncs.
fn after_the_tails(run: &Run) -> u64 {
    run.events.iter().filter(|e| e.cpu.is_none() && e.event == "poke-tail").map(|e| e.tick).max().unwrap() + 1
}

/// The `y` range of the lane `name` in a parsed timeline.
fn lane(doc: &roxmltree::Document<'_>, name: &str) -> (f64, f64) {
    let g = doc.descendants().find(|d| d.attribute("data-lane") == Some(name)).expect("the lane");
    let bg = g.children().find(|d| d.attribute("class") == Some("lane-bg")).expect("its background");
    let (y, h): (f64, f64) =
        (bg.attribute("y").unwrap().parse().unwrap(), bg.attribute("height").unwrap().parse().unwrap());
    (y, y + h)
}

/// Asserts the timeline `svg` draws the removed sync at `tick` inside the patcher's lane.
fn assert_marks_the_removed_sync(svg: &str, tick: u64) {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is XML");
    let marks: Vec<_> = doc.descendants().filter(|d| d.attribute("class") == Some("removed-step")).collect();
    assert_eq!(marks.len(), 1, "one removed step in a one-round failure: {svg}");
    let g = marks[0];
    assert_eq!(g.attribute("data-mutant"), Some("no-sync-after-tail"));
    assert_eq!(g.attribute("data-tick"), Some(tick.to_string().as_str()));
    assert!(g.ancestors().any(|a| a.attribute("id") == Some("plot")), "the mark is in the plot");
    let rect = g.children().find(|d| d.attribute("class") == Some("removed")).expect("its rect");
    let y: f64 = rect.attribute("y").unwrap().parse().unwrap();
    let h: f64 = rect.attribute("height").unwrap().parse().unwrap();
    let (top, bottom) = lane(&doc, "patcher");
    assert!(y >= top && y + h <= bottom, "the mark {y}..{} is inside the patcher's lane {top}..{bottom}", y + h);
    let title = rect.children().find(|d| d.has_tag_name("title")).and_then(|t| t.text()).unwrap_or("");
    assert!(title.contains("removed by no-sync-after-tail") && title.contains("text_poke_sync()"), "{title}");
}

fn the_svg_marks_the_removed_sync() {
    let run = replayed(NO_SYNC_AFTER_TAIL);
    let tick = after_the_tails(&run);
    assert_eq!(tick, 22, "the recording as the test describes it");
    let svg = render::timeline::render(&run, Layout::fit(&run, run.window(None, 40)));
    assert_marks_the_removed_sync(&svg, tick);
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let legend = doc.descendants().find(|d| d.attribute("id") == Some("changes")).expect("the changes legend");
    let text: Vec<&str> = legend.descendants().filter_map(|d| d.text()).collect();
    let text = text.join(" ");
    assert!(text.starts_with("removed by no-sync-after-tail: if (do_sync) text_poke_sync();"), "{text}");
    assert!(text.contains("between poke-tail and reset-do-sync"), "{text}");
    assert!(text.contains("would have run at tick 22"), "{text}");
    // The report's timeline (the whole run) draws it too.
    assert_marks_the_removed_sync(&render::timeline::render(&run, Layout::whole(&run)), tick);
}

fn the_text_trace_and_perfetto_mark_the_removed_sync() {
    let run = replayed(NO_SYNC_AFTER_TAIL);
    let text = render::text::render(&run, None);
    let lines: Vec<&str> = text.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("-- tick 22 (round 1) patcher: sync-if-do-sync removed by no-sync-after-tail — "));
    let at = at.unwrap_or_else(|| panic!("no line for the removed sync:\n{text}"));
    assert!(lines[at].contains("text_poke_sync();"), "{}", lines[at]);
    assert!(lines[at - 1].contains(" poke-tail "), "after the last tail: {}", lines[at - 1]);
    assert!(lines[at + 1].contains(" reset-do-sync "), "before do_sync = 0: {}", lines[at + 1]);
    assert!(text.contains("\n-- removed by no-sync-after-tail: if (do_sync) text_poke_sync();"), "{text}");

    // Perfetto: an instant event on the patcher's track (the last tid) at that tick.
    let doc: serde_json::Value = serde_json::from_str(&render::perfetto::render(&run)).unwrap();
    let removed: Vec<_> = doc["traceEvents"].as_array().unwrap().iter().filter(|e| e["cat"] == "removed").collect();
    assert_eq!(removed.len(), 1, "{removed:?}");
    assert_eq!((removed[0]["ts"].as_u64(), removed[0]["tid"].as_u64()), (Some(22), Some(run.cpus as u64)));
    assert_eq!(removed[0]["name"], "sync-if-do-sync removed by no-sync-after-tail");
}

fn a_handler_mutants_legend_names_the_edited_step() {
    let run = replayed("mutant-detour-handler-seed.toml");
    let want = "edited by detour-handler: emulate — the INT3 handler sets regs->ip past the instruction";
    let svg = render::timeline::render(&run, Layout::fit(&run, run.window(None, 40)));
    let doc = roxmltree::Document::parse(&svg).unwrap();
    let legend = doc.descendants().find(|d| d.attribute("id") == Some("changes")).expect("the changes legend");
    let text: Vec<&str> = legend.descendants().filter_map(|d| d.text()).collect();
    assert!(text.join(" ").starts_with(want), "{text:?}");
    assert!(!svg.contains("removed-step"), "a handler edit is not a step of the patcher's program");
    assert!(render::html::render(&run).contains(&render::escape(want)), "the report's legend");
    assert!(render::text::render(&run, None).contains(&format!("-- {want}")), "the text trace");
}

/// Each text of the SVG, measured at 0.602 em a character (DejaVu Sans Mono, the font the
/// pictures ask for), ends inside the canvas.
fn assert_text_fits(svg: &str, what: &str) {
    let doc = roxmltree::Document::parse(svg).expect("the SVG is XML");
    let root = doc.root_element();
    let width: f64 = root.attribute("width").unwrap().parse().unwrap();
    let size = |n: roxmltree::Node<'_, '_>| -> f64 {
        let class = n.attribute("class").unwrap_or("");
        match n.attribute("font-size") {
            Some(s) => s.parse().unwrap(),
            None if class == "band-label" || class == "removed-label" => 10.0,
            None => 11.0,
        }
    };
    let mut texts = 0;
    for t in doc.descendants().filter(|d| d.has_tag_name("text")) {
        let x: f64 = t.attribute("x").unwrap().parse().unwrap();
        let chars = t.text().unwrap_or("").chars().count() as f64;
        let end = x + 0.602 * size(t) * chars;
        assert!(end <= width, "{what}: `{}` ends at {end:.0} px, past the canvas ({width} px)", t.text().unwrap_or(""));
        texts += 1;
    }
    assert!(texts > 10, "{what}: {texts} texts");
}

fn a_short_runs_labels_fit_the_canvas() {
    for entry in [SHORT, NO_SYNC_AFTER_TAIL] {
        let run = replayed(entry);
        assert_text_fits(&render::timeline::render(&run, Layout::fit(&run, run.window(None, 40))), entry);
        assert_text_fits(&render::timeline::render(&run, Layout::whole(&run)), entry);
    }
    // The report scales its timeline to the page instead of scrolling labels out of view.
    let html = render::html::render(&replayed(SHORT));
    assert!(
        html.contains("#timeline { display: block; max-width: 100%; height: auto; }"),
        "the timeline fits the page"
    );
}

/// The longest vertical run of pure magenta (the removed step's colour) in the screenshot.
fn longest_magenta_column(shot: &Path) -> usize {
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    let (w, h, n) = (info.width as usize, info.height as usize, info.color_type.samples());
    let magenta = |x: usize, y: usize| {
        let p = &buf[(y * w + x) * n..];
        p[0] > 235 && p[1] < 30 && p[2] > 235
    };
    let mut best = 0;
    for x in 0..w {
        let mut run = 0;
        for y in 0..h {
            run = if magenta(x, y) { run + 1 } else { 0 };
            best = best.max(run);
        }
    }
    best
}

fn the_report_shows_the_removed_sync_in_the_patchers_lane() {
    let browser = skippable::chromium().expect("the harness checked for a browser");
    let dir = tempdir("render-mutant-browser");
    let run = replayed(NO_SYNC_AFTER_TAIL);
    let report = dir.join("report.html");
    std::fs::write(&report, render::html::render(&run)).unwrap();
    let url = format!("file://{}", report.display());

    let (dom, log) = headless(&browser, &["--dump-dom".into(), url.clone()]);
    let body = dom.split("<body").nth(1).and_then(|b| b.split('>').next()).expect("a body element");
    assert!(body.contains("data-ready=\"1\""), "the report's script did not finish: <body{body}> {log}");
    assert!(!body.contains("data-errors"), "script errors: <body{body}>");
    // The timeline as the browser holds it, after the script ran.
    let start = dom[..dom.find("id=\"timeline\"").expect("the timeline")].rfind("<svg").unwrap();
    let svg = &dom[start..start + dom[start..].find("</svg>").unwrap() + "</svg>".len()];
    assert_marks_the_removed_sync(svg, after_the_tails(&run));
    let legend = dom.split("<ul id=\"changes\">").nth(1).expect("the report's legend of changes");
    assert!(legend.contains("removed by no-sync-after-tail: if (do_sync) text_poke_sync();"), "{legend}");

    // The mark is 34 units tall; nothing else magenta is taller than the legend's 10-pixel swatch.
    let shot = dir.join("report.png");
    headless(&browser, &[format!("--screenshot={}", shot.display()), "--window-size=1600,900".into(), url]);
    let tall = longest_magenta_column(&shot);
    assert!(tall >= 25, "no struck-out step in the screenshot (tallest magenta column: {tall} px)");
}
