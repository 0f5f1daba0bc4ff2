//! One test per entry of the shipped regression corpus, generated at run time (a
//! `libtest-mimic` harness), so that `cargo test -- ENTRY --exact` or `cargo nextest run -E
//! 'test(=ENTRY)'` runs just that entry. Each test is the entry's row of `pokesim corpus`: a
//! recorded decision list replays with its trace hash reproduced bit for bit, a seed-only
//! entry runs its seeds, and the verdict must be the entry's `expect`.
//!
//! Two more tests check the corpus as a whole (the historic bugs are in it) and the harness
//! itself: run with one entry's name, this binary runs exactly that entry.

use libtest_mimic::{Arguments, Failed, Trial};
use scenarios::corpus::{self, EntrySource, EntryStatus};

fn main() {
    let args = Arguments::from_args();
    let entries = corpus::builtin();
    let mut trials: Vec<Trial> = entries.iter().cloned().map(entry_trial).collect();
    let names: Vec<String> = entries.iter().map(|e| e.stem.clone()).collect();
    trials.push(Trial::test("harness::corpus_has_the_historic_bugs", move || has_the_historic_bugs(&names)));
    trials.push(Trial::test("harness::one_name_runs_exactly_that_entry", one_name_runs_exactly_that_entry));
    libtest_mimic::run(&args, trials).exit();
}

fn entry_trial(src: EntrySource) -> Trial {
    Trial::test(src.stem.clone(), move || {
        let row = corpus::run_entry(&src).map_err(|e| Failed::from(format!("{}: {e}", src.file)))?;
        if row.status == EntryStatus::Ok {
            return Ok(());
        }
        Err(format!(
            "{}: {:?}: expected {}, got {}{}",
            src.file,
            row.status,
            row.expect,
            row.got,
            row.detail.map_or(String::new(), |d| format!(" ({d})"))
        )
        .into())
    })
}

fn has_the_historic_bugs(names: &[String]) -> Result<(), Failed> {
    if names.len() < 80 {
        return Err(format!("the corpus has {} entries", names.len()).into());
    }
    let wanted = [
        "bug-b1",
        "bug-b2",
        "bug-b3",
        "bug-b5",
        "bug-try-get-desc",
        "mutant-no-sync-after-int3",
        "pass-linux-6.16-jcc",
    ];
    match wanted.iter().find(|p| !names.iter().any(|n| n.starts_with(*p))) {
        Some(p) => Err(format!("no {p} entry").into()),
        None => Ok(()),
    }
}

/// Runs this very binary as `cargo test -- NAME [--exact]` runs it, and reads which tests ran.
fn ran(args: &[&str]) -> Result<Vec<String>, Failed> {
    let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
    let out = std::process::Command::new(exe)
        .args(args)
        .args(["--test-threads", "1", "--color", "never"])
        .output()
        .map_err(|e| format!("running the harness: {e}"))?;
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        return Err(format!("the harness with {args:?} failed:\n{stdout}").into());
    }
    Ok(stdout
        .lines()
        .filter_map(|l| l.strip_prefix("test "))
        .filter_map(|l| l.strip_suffix(" ... ok"))
        .map(str::to_string)
        .collect())
}

fn one_name_runs_exactly_that_entry() -> Result<(), Failed> {
    let one = "bug-b1-linux-5.4-static-call";
    let got = ran(&[one])?;
    if got != [one] {
        return Err(format!("`-- {one}` ran {got:?}").into());
    }
    // A name that is also the prefix of another entry's: `--exact` picks the one.
    let prefix = "mutant-no-sync-after-first-linux-5.4";
    let loose = ran(&[prefix])?;
    let exact = ran(&[prefix, "--exact"])?;
    if loose.len() < 2 || exact != [prefix] {
        return Err(format!("`-- {prefix}` ran {loose:?}; with --exact {exact:?}").into());
    }
    Ok(())
}
