//! The renderings of a run (issue 10): every event exactly once in every format; Perfetto
//! JSON with the trace-event fields and counts that match the run's statistics; byte-identical
//! files from two processes; the SVG well-formed XML; the README's picture current; the mutants page embedding each caught
//! cell's report. (The HTML report in a real browser is `browser.rs`.)

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use common::{out, pokesim, tempdir};
use scenarios::artifact::Replayable;
use scenarios::catalogue;
use scenarios::matrix::{self, CellOptions, Coords, Counterexample};
use scenarios::render::{self, label, timeline::Layout, Run};
use serde_json::Value;
use sim_core::program::OpPhase;
use sim_core::protocol::kernel;
use sim_core::trace::TraceKind;
use sim_core::{KernelConfig, Mutant, Outcome, Protocol, ViolationKind};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A 4-vCPU torn fetch: `examples/race.toml` explored, its artifact (made once per process).
fn race_artifact() -> &'static Path {
    static ARTIFACT: OnceLock<PathBuf> = OnceLock::new();
    ARTIFACT.get_or_init(|| {
        let dir = tempdir("render-race");
        let (code, stdout, stderr) = out(pokesim()
            .args(["explore", "--quiet", "--artifact-dir"])
            .arg(&dir)
            .arg(repo().join("examples/race.toml")));
        assert_eq!(code, 0, "{stdout}{stderr}");
        let files: Vec<PathBuf> = std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().path()).collect();
        assert_eq!(files.len(), 1, "{files:?}");
        files[0].clone()
    })
}

/// The recordings the tests render: the seed's B3 race (a foreign kprobe, a handler fault),
/// the 4-vCPU jump_label race (IPIs to every vCPU, a torn fetch), and 6.16's per-CPU refs.
fn recordings() -> Vec<PathBuf> {
    vec![
        common::corpus_dir().join("bug-b3-seed-kprobe.toml"),
        race_artifact().to_path_buf(),
        common::corpus_dir().join("mutant-skip-refs-wait-linux-6.16.toml"),
    ]
}

/// The recording replayed with its trace kept.
fn replayed(path: &Path) -> (Run, Outcome) {
    let r = Replayable::load(path).unwrap();
    let o = r.reproduce(sim_core::Observe::TRACE).unwrap();
    assert!(o.violation().is_some(), "{} replays to its violation", path.display());
    (Run::new(&r.scenario, &o).unwrap(), o)
}

/// `(tick, track, what)` of every event, in order: what each format must show once.
fn expected(run: &Run) -> Vec<(u64, u64, String)> {
    let track = |cpu: Option<usize>| cpu.map_or(run.cpus as u64, |c| c as u64);
    run.events.iter().map(|e| (e.tick, track(e.cpu), label(e))).collect()
}

fn perfetto(run: &Run) -> Vec<Value> {
    let doc: Value = serde_json::from_str(&render::perfetto::render(run)).expect("Perfetto output is JSON");
    doc["traceEvents"].as_array().expect("traceEvents").clone()
}

#[test]
fn every_event_appears_exactly_once_in_every_format() {
    for path in recordings() {
        let (run, _) = replayed(&path);
        let want = expected(&run);
        let n = want.len();
        assert!(n > 10, "{}: {n} events", path.display());

        // Text (--all): one line per event, `>>` or two spaces, the tick, the actor, the event.
        let text = render::text::render(&run, None);
        let rows: Vec<(u64, u64, String)> = text
            .lines()
            .filter(|l| l.len() > 8 && (l.starts_with("  ") || l.starts_with(">>")))
            .filter_map(|l| {
                let tick = l.get(2..7)?.trim().parse::<u64>().ok()?;
                let mut cols = l[8..].split_whitespace();
                let actor = cols.next()?;
                let track = actor.strip_prefix("cpu").map_or(run.cpus as u64, |c| c.parse().unwrap());
                let event = l[8..].trim_start()[actor.len()..].trim_start();
                Some((tick, track, event.to_string()))
            })
            .collect();
        assert_eq!(rows.len(), n, "{}: text rows", path.display());
        for (row, w) in rows.iter().zip(&want) {
            assert_eq!((row.0, row.1), (w.0, w.1), "{}", path.display());
            assert!(row.2.starts_with(&w.2), "{}: `{}` does not start with `{}`", path.display(), row.2, w.2);
        }

        // Perfetto: one `X` slice per event (the enclosing handler-run and phase slices aside).
        let slices: Vec<(u64, u64, String)> = perfetto(&run)
            .iter()
            .filter(|e| e["ph"] == "X" && e["cat"] != "handler-run" && e["cat"] != "phase")
            .map(|e| {
                (e["ts"].as_u64().unwrap(), e["tid"].as_u64().unwrap(), e["args"]["event"].as_str().unwrap().into())
            })
            .collect();
        assert_eq!(slices, want, "{}: Perfetto slices", path.display());

        // SVG, static and as the report lays it out: one mark per event, indexed in order.
        for layout in [Layout::fit(&run, None), Layout::whole(&run)] {
            let svg = render::timeline::render(&run, layout);
            let doc = roxmltree::Document::parse(&svg).expect("the SVG is XML");
            let marks: Vec<usize> = doc
                .descendants()
                .filter(|d| d.attribute("class").is_some_and(|c| c.starts_with("ev ")))
                .filter(|d| !d.ancestors().any(|a| a.attribute("id") == Some("legend")))
                .map(|d| d.attribute("data-i").expect("every mark has data-i").parse().unwrap())
                .collect();
            assert_eq!(marks, (0..n).collect::<Vec<_>>(), "{}: SVG marks", path.display());
        }

        // HTML: one JSON row per event, and each row's mark once in the timeline.
        let html = render::html::render(&run);
        let json = html.split("<script type=\"application/json\" id=\"events\">").nth(1).unwrap();
        let json = json.split("</script>").next().unwrap();
        let data: Value = serde_json::from_str(json).unwrap();
        let rows = data["rows"].as_array().unwrap();
        assert_eq!(rows.len(), n, "{}: HTML rows", path.display());
        for (i, (row, w)) in rows.iter().zip(&want).enumerate() {
            assert_eq!((row[0].as_u64().unwrap(), row[3].as_str().unwrap()), (w.0, w.2.as_str()));
            assert_eq!(html.matches(&format!(" data-i=\"{i}\"")).count(), 1, "{}: mark {i}", path.display());
        }
    }
}

#[test]
fn the_perfetto_file_has_the_trace_event_fields_and_the_runs_counts() {
    for path in recordings() {
        let (run, outcome) = replayed(&path);
        let events = perfetto(&run);
        for e in &events {
            for field in ["ph", "ts", "pid", "tid", "name"] {
                assert!(!e[field].is_null(), "{}: `{field}` missing in {e}", path.display());
            }
            if e["ph"] == "X" {
                assert!(e["dur"].as_u64().is_some_and(|d| d >= 1), "{e}");
            }
        }
        // Flows: every id starts once (`s`) and finishes once (`f`), not earlier.
        let mut flows: BTreeMap<u64, (Vec<u64>, Vec<u64>)> = BTreeMap::new();
        for e in events.iter().filter(|e| e["ph"] == "s" || e["ph"] == "f") {
            let id = e["id"].as_u64().expect("a flow event has an id");
            let ends = flows.entry(id).or_default();
            let ts = e["ts"].as_u64().unwrap();
            if e["ph"] == "s" {
                ends.0.push(ts)
            } else {
                ends.1.push(ts)
            }
        }
        for (id, (s, f)) in &flows {
            assert_eq!(s.len(), 1, "{}: flow {id} starts {s:?}", path.display());
            assert!(f.len() <= 1, "{}: flow {id} finishes {f:?}", path.display());
            assert!(f.iter().all(|t| *t >= s[0]), "{}: flow {id}", path.display());
        }
        let delivered = run.events.iter().filter(|e| e.kind == TraceKind::Ipi).count();
        let finished = flows.values().filter(|(_, f)| !f.is_empty()).count();
        assert!(finished >= delivered, "{}: each delivery ends a flow", path.display());

        // Counts against the run's statistics.
        let count = |ph: &str, cat: &str| events.iter().filter(|e| e["ph"] == ph && e["cat"] == cat).count() as u64;
        let st = &outcome.stats;
        let p = path.display();
        let steps = count("X", "step") + count("X", "site-fetch") + count("X", "trap") + count("X", "fault");
        assert_eq!(steps, st.guest_steps, "{p}: guest steps (those that trapped or faulted too)");
        assert_eq!(count("X", "trap"), st.int3_traps, "{p}: INT3 trap slices");
        assert_eq!(count("X", "handler"), st.handler_steps, "{p}: handler micro-steps");
        assert_eq!(count("X", "ipi"), st.ipis, "{p}: IPIs");
        assert_eq!(count("X", "store"), st.stores, "{p}: stores");
        assert_eq!(count("X", "sync-done"), st.syncs, "{p}: syncs");
        assert_eq!(count("i", "trap"), st.int3_traps, "{p}: INT3 traps");
        assert_eq!(count("i", "violation"), 1, "{p}: the violation");
        let cpus = run.cpus as u64;
        let tracks: Vec<u64> =
            events.iter().filter(|e| e["name"] == "thread_name").map(|e| e["tid"].as_u64().unwrap()).collect();
        assert_eq!(tracks, (0..=cpus).collect::<Vec<_>>(), "{p}: a track per vCPU and the patcher");
    }
}

#[test]
fn the_same_artifact_gives_byte_identical_files_in_two_processes() {
    let dir = tempdir("render-identical");
    for format in ["text", "perfetto", "html", "svg"] {
        let mut files = Vec::new();
        for k in 0..2 {
            let file = dir.join(format!("{format}-{k}"));
            let (code, stdout, stderr) =
                out(pokesim().args(["trace", "--format", format, "-o"]).arg(&file).arg(race_artifact()));
            assert_eq!(code, 0, "the artifact's violation, as it expects: {stdout}{stderr}");
            files.push(std::fs::read(&file).unwrap());
        }
        assert!(!files[0].is_empty());
        assert!(files[0] == files[1], "{format}: two processes wrote different files");
    }
}

#[test]
fn the_readme_picture_is_what_the_tool_draws_today() {
    let committed = repo().join("docs/images/b3-seed-kprobe.svg");
    let (code, fresh, stderr) =
        out(pokesim().args(["trace", "--format", "svg"]).arg(common::corpus_dir().join("bug-b3-seed-kprobe.toml")));
    assert_eq!(code, 0, "{stderr}");
    let old = std::fs::read_to_string(&committed).unwrap_or_default();
    assert!(
        old == fresh,
        "docs/images/b3-seed-kprobe.svg is stale; regenerate it with\n  \
         pokesim trace scenarios/corpus/bug-b3-seed-kprobe.toml --format svg -o docs/images/b3-seed-kprobe.svg"
    );
    roxmltree::Document::parse(&fresh).expect("the README's picture is XML");
}

#[test]
fn every_operation_of_every_program_has_a_phase_and_a_kernel_statement() {
    for p in Protocol::ALL {
        let mut sets: Vec<Vec<Mutant>> = vec![vec![]];
        sets.extend(Mutant::ALL.into_iter().filter(|m| m.applies_to(p)).map(|m| vec![m]));
        for mutants in sets {
            for n in 1..=3 {
                for op in p.batch_program(&mutants, 0, n, 2) {
                    let phase = op.phase();
                    assert_ne!(phase, Some(OpPhase::Other), "{p:?} {mutants:?}: `{}` has no phase", op.name());
                    let st = kernel::patcher(p, &op);
                    assert!(!st.code.is_empty() && !st.function.is_empty(), "{p:?}: `{}`", op.name());
                }
            }
        }
    }
}

// --- The mutants page ---------------------------------------------------------------------------

#[test]
fn the_mutants_page_embeds_the_report_of_every_caught_cell() {
    let at = |mutant| Coords {
        mutant,
        protocol: Protocol::Linux55,
        variant: catalogue::variant("ftrace").unwrap(),
        kernel: KernelConfig::DEFCONFIG,
        preset: "pessimistic".into(),
    };
    let caught = matrix::cell(&at(Mutant::NoInt3), 5, CellOptions::FULL).unwrap();
    let benign = matrix::cell(&at(Mutant::NoWmb), 2, CellOptions::FULL).unwrap();
    assert!(caught.is_caught() && benign.caught == Some(false));
    let presets = vec!["pessimistic".to_string()];
    let page = render::matrix::render(&[caught.clone(), benign], &presets, 5).unwrap();
    assert_eq!(page.matches("<details class=\"report\"").count(), 1);
    assert!(page.contains("href=\"#c0\""), "the caught chip links to its report");
    let embedded = page.split("<textarea hidden>").nth(1).unwrap().split("</textarea>").next().unwrap();
    let embedded = embedded.replace("&lt;", "<").replace("&amp;", "&");
    let cx = caught.counterexample.as_ref().unwrap();
    assert_eq!(
        embedded,
        render::matrix::report(cx, caught.kind.unwrap()).unwrap(),
        "the textarea gives back the report"
    );
    assert!(embedded.contains("class=\"violation\""));

    // A counterexample that no longer shows its kind is an error, never a picture.
    let wrong = Counterexample { scenario: cx.scenario.clone(), decisions: cx.decisions.clone() };
    let err = render::matrix::report(&wrong, ViolationKind::HandlerFault).unwrap_err();
    assert!(err.to_string().contains("instead of handler-fault"), "{err}");
}

#[test]
fn mutants_html_into_a_missing_directory_is_refused_before_the_run() {
    let (code, _, stderr) =
        out(pokesim().args(["mutants", "--workload", "ftrace", "--html", "/nonexistent-dir/matrix.html"]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("/nonexistent-dir"), "{stderr}");
}
