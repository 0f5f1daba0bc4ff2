//! The README as a manual (issue 22): its flag lists say what `--help` says (bounds and
//! defaults), it starts with set-up and a command a newcomer can adapt, it states the Rust
//! version `Cargo.toml` requires, and `.ci/run` cites only sections it has. Each check reads
//! the files and, for `--help`, runs the binary: cheap, no scenario is run here.

use std::collections::BTreeMap;
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// What the README says of one flag: its bounds `(low, high)` and its default, as written.
#[derive(Debug, Default, PartialEq)]
struct FlagDoc {
    range: Option<(String, String)>,
    default: Option<String>,
}

/// The flags of the paragraph after each `<!-- flags: CMD -->` marker, by subcommand: every
/// `` `--flag ARG` (…) `` whose parenthesis gives a range `A–B` or a `default X`.
fn readme_flag_lists(readme: &str) -> BTreeMap<String, BTreeMap<String, FlagDoc>> {
    let mut lists = BTreeMap::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        let Some(cmd) = line.trim().strip_prefix("<!-- flags: ").and_then(|r| r.strip_suffix(" -->")) else {
            continue;
        };
        let paragraph: Vec<&str> = lines.by_ref().take_while(|l| !l.trim().is_empty()).collect();
        lists.insert(cmd.to_string(), flag_docs(&paragraph.join(" ")));
    }
    lists
}

fn flag_docs(text: &str) -> BTreeMap<String, FlagDoc> {
    let mut docs = BTreeMap::new();
    for piece in text.split("`--").skip(1) {
        let Some((spec, rest)) = piece.split_once('`') else { continue };
        let name = format!("--{}", spec.split_whitespace().next().unwrap_or(""));
        let Some(paren) = rest.strip_prefix(" (").and_then(|r| r.split(')').next()) else { continue };
        let mut doc = FlagDoc::default();
        for part in paren.split(", ") {
            let part = part.trim();
            if let Some(d) = part.strip_prefix("default ") {
                doc.default = Some(d.to_string());
            } else if let Some((lo, hi)) = part.rsplit(' ').next().and_then(|w| w.split_once('–')) {
                doc.range = Some((lo.to_string(), hi.to_string()));
            }
        }
        if doc != FlagDoc::default() {
            docs.insert(name, doc);
        }
    }
    docs
}

/// `pokesim CMD --help`, as a map from each long flag to its description (one or more lines).
fn help_flags(cmd: &str) -> BTreeMap<String, String> {
    let o = std::process::Command::new(assert_cmd::cargo::cargo_bin("pokesim")).args([cmd, "--help"]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "pokesim {cmd} --help");
    let text = String::from_utf8(o.stdout).unwrap();
    let mut flags = BTreeMap::new();
    let mut current: Option<String> = None;
    for line in text.lines().skip_while(|l| !l.starts_with("Options:")).skip(1) {
        let t = line.trim();
        if t.is_empty() || !line.starts_with(' ') {
            break;
        }
        let long = t.split_whitespace().find(|w| w.starts_with("--")).filter(|_| t.starts_with('-'));
        if let Some(long) = long {
            let name = long.split(['[', '=']).next().unwrap().to_string();
            let desc = t.split_once("  ").map(|(_, d)| d.trim().to_string()).unwrap_or_default();
            flags.insert(name.clone(), desc);
            current = Some(name);
        } else if let Some(name) = &current {
            let d = flags.get_mut(name).unwrap();
            d.push(' ');
            d.push_str(t);
        }
    }
    flags
}

#[test]
fn the_readme_flag_bounds_and_defaults_are_what_help_says() {
    let lists = readme_flag_lists(&read("README.md"));
    assert!(lists.contains_key("run") && lists.contains_key("check"), "the README marks its flag lists: {lists:?}");
    for (cmd, docs) in &lists {
        let help = help_flags(cmd);
        assert!(docs.len() >= 2, "{cmd}: the README's list gives bounds or defaults: {docs:?}");
        for (flag, doc) in docs {
            let desc = help.get(flag).unwrap_or_else(|| panic!("README: `pokesim {cmd}` has no {flag}"));
            if let Some((lo, hi)) = &doc.range {
                let want = format!("{lo}..={hi}");
                assert!(desc.contains(&want), "README says {flag} ({lo}–{hi}); `pokesim {cmd} --help` says: {desc}");
            }
            if let Some(d) = &doc.default {
                let want = format!("[default: {d}]");
                assert!(desc.contains(&want), "README says {flag} default {d}; `pokesim {cmd} --help` says: {desc}");
            }
        }
        for (flag, desc) in &help {
            if desc.contains("..=") {
                assert!(
                    docs.get(flag).is_some_and(|d| d.range.is_some()),
                    "`pokesim {cmd} --help` bounds {flag} ({desc}); the README's list does not say so"
                );
            }
        }
    }
}

#[test]
fn the_readme_starts_as_a_manual() {
    let readme = read("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    assert!(lines.len() < 600, "the README has {} lines; reference material belongs in docs/", lines.len());
    let setup = lines.iter().position(|l| l.starts_with("## Set up")).expect("a set-up section");
    let first_run = lines
        .iter()
        .position(|l| l.starts_with("pokesim run --workload"))
        .expect("a `pokesim run --workload …` command to adapt");
    assert!(first_run < 80, "the first command to adapt is at line {}", first_run + 1);
    let path_note = lines.iter().position(|l| l.contains("`pokesim` is not on your `PATH`")).expect("the PATH note");
    let first_runnable = lines.iter().position(|l| l.trim() == "<!-- runnable -->").unwrap();
    assert!(setup < path_note && path_note < first_runnable, "set-up, then the PATH note, then the examples");
    assert!(readme.contains("cargo install --path scenarios") && readme.contains("target/release"));
    assert!(readme.contains("](docs/images/b3-seed-kprobe.svg)"), "the picture is in the README");
}

#[test]
fn the_readme_states_the_rust_version_cargo_requires() {
    let manifest = read("Cargo.toml");
    let version = manifest
        .lines()
        .find_map(|l| l.strip_prefix("rust-version = \""))
        .and_then(|r| r.strip_suffix('"'))
        .expect("Cargo.toml's rust-version");
    let readme = read("README.md").split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(readme.contains(&format!("Rust {version} or newer")), "the README must say Rust {version} or newer");
    assert!(readme.contains(&format!("requires rustc {version} or newer")), "and what an older cargo prints");
}

#[test]
fn ci_cites_only_readme_sections_that_exist() {
    let readme = read("README.md");
    let headings: Vec<&str> = readme.lines().filter_map(|l| l.strip_prefix("## ")).collect();
    let ci = read(".ci/run");
    let comments: String = ci.lines().filter_map(|l| l.trim().strip_prefix('#')).collect::<Vec<_>>().join(" ");
    let mut cited = 0;
    for (i, piece) in comments.split('"').enumerate() {
        if i % 2 == 1 {
            assert!(headings.contains(&piece), ".ci/run cites README section \"{piece}\", which it does not have");
            cited += 1;
        }
    }
    assert!(cited >= 1, ".ci/run names the README section it follows");
}
