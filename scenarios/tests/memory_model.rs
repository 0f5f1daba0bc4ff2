//! The memory model of a compiled protocol's kernel data (DESIGN.md §2.16, issue 25): a user C
//! file with a Dekker handoff between the patcher and the INT3 handler — correct under
//! sequential consistency, broken under x86-TSO (each side's store can wait in its store
//! buffer while it reads the other's flag) — passes complete search under `sc`, its check
//! fires when the handoff is really broken, complete search under `--memory tso` finds the
//! `BUG_ON()` (both sides read the other's flag before either store drained), and with
//! `smp_mb()` after each store (a locked instruction: the buffer drains) it passes complete
//! search under `tso` too.

mod common;

use std::path::{Path, PathBuf};

use common::{out, pokesim, tempdir, write};

/// Replaces the one occurrence of `from` in `text` by `to`.
fn edit(text: &str, from: &str, to: &str) -> String {
    assert_eq!(text.matches(from).count(), 1, "the built-in file changed: {from:?}");
    text.replace(from, to)
}

/// The built-in linux-5.5 file with a Dekker handoff: the patcher (at the start of each batch)
/// and the handler (on every trap, a foreign kprobe's included) each set their flag, then go
/// in only if the other's is clear; after the batch's last sync (no handler is running) at
/// most one may have gone in. With `patcher_checks = false` the patcher goes in regardless: a
/// handoff broken under SC too, to show the check can fire.
fn dekker(dir: &Path, name: &str, patcher_checks: bool) -> PathBuf {
    dekker_with(dir, name, patcher_checks, "")
}

/// [`dekker`] with `fence` (`smp_mb();` or nothing) after each side's store of its flag.
fn dekker_with(dir: &Path, name: &str, patcher_checks: bool, fence: &str) -> PathBuf {
    let (code, text, stderr) = out(pokesim().args(["program", "--protocol", "linux-5.5", "--c"]));
    assert_eq!(code, 0, "{stderr}");
    let handler = "int notrace poke_int3_handler(struct pt_regs *regs)";
    let text = edit(
        &text,
        handler,
        &format!("static int dekker_patcher, dekker_handler, dekker_patcher_in, dekker_handler_in;\n\n{handler}"),
    );
    let nr = "\tif (likely(!bp_patching.nr_entries))\n\t\treturn 0;";
    let text = edit(
        &text,
        nr,
        &format!(
            "\tWRITE_ONCE(dekker_handler, 1);\n\t{fence}\n\tif (!READ_ONCE(dekker_patcher))\n\t\tWRITE_ONCE(dekker_handler_in, \
             1);\n{nr}"
        ),
    );
    let guard = if patcher_checks { "!READ_ONCE(dekker_handler)" } else { "1" };
    let held = "\tlockdep_assert_held(&text_mutex);\n\n#ifndef POKESIM_MUTANT_PUBLISH_AFTER_INT3";
    let text = edit(
        &text,
        held,
        &format!(
            "\tlockdep_assert_held(&text_mutex);\n\tWRITE_ONCE(dekker_patcher, 1);\n\t{fence}\n\tif ({guard})\n\t\t\
             WRITE_ONCE(dekker_patcher_in, 1);\n\n#ifndef POKESIM_MUTANT_PUBLISH_AFTER_INT3"
        ),
    );
    let end = "\tbp_patching.vec = NULL;\n#endif\n}\n";
    let text = edit(
        &text,
        end,
        "\tbp_patching.vec = NULL;\n#endif\n\tBUG_ON(READ_ONCE(dekker_patcher_in) && READ_ONCE(dekker_handler_in));\n}\n",
    );
    write(dir, name, &text)
}

/// `pokesim CMD` on ftrace with an armed foreign kprobe (so the handler runs from the start,
/// racing the patcher's first stores), 2 vCPUs, 1 round, with `file` and `extra`.
fn pokesim_on(cmd: &str, file: &Path, extra: &[&str]) -> (i32, String, String) {
    let mut c = pokesim();
    c.args([cmd, "--protocol", "linux-5.5", "--workload", "ftrace+kprobe", "--rounds", "1", "--no-artifact"]);
    out(c.arg("--protocol-source").arg(file).args(extra))
}

#[test]
fn a_dekker_handoff_is_correct_under_sc() {
    let dir = tempdir("memory-dekker");
    let good = dekker(&dir, "dekker.c", true);
    let (code, stdout, stderr) = pokesim_on("exhaust", &good, &["--memory", "sc"]);
    assert_eq!(code, 0, "correct under SC, by complete search: {stdout}{stderr}");
    assert!(stdout.contains("every reachable state visited"), "{stdout}");

    let broken = dekker(&dir, "broken.c", false);
    let (code, stdout, stderr) = pokesim_on("explore", &broken, &["--runs", "200"]);
    assert_eq!(code, 1, "the check fires when the handoff is broken: {stdout}{stderr}");
    assert!(stdout.contains("BUG_ON(READ_ONCE(dekker_patcher_in)"), "{stdout}");
}

#[test]
fn under_tso_the_dekker_handoff_breaks_and_smp_mb_repairs_it() {
    let dir = tempdir("memory-dekker-tso");
    let good = dekker(&dir, "dekker.c", true);
    let (code, stdout, stderr) = pokesim_on("exhaust", &good, &["--memory", "tso"]);
    assert_eq!(code, 1, "complete search under TSO finds the store-buffer reordering: {stdout}{stderr}");
    assert!(stdout.contains("BUG_ON(READ_ONCE(dekker_patcher_in)"), "{stdout}");
    assert!(stdout.contains("[memory=tso]"), "the label names the model: {stdout}");

    let fenced = dekker_with(&dir, "fenced.c", true, "smp_mb();");
    let (code, stdout, stderr) = pokesim_on("exhaust", &fenced, &["--memory", "tso"]);
    assert_eq!(code, 0, "smp_mb() after each store repairs it under TSO: {stdout}{stderr}");
    assert!(stdout.contains("every reachable state visited"), "{stdout}");
}

#[test]
fn tso_is_refused_for_the_rust_models() {
    let (code, _, stderr) = out(pokesim().args([
        "exhaust",
        "--protocol",
        "linux-5.5",
        "--rounds",
        "1",
        "--memory",
        "tso",
        "--no-artifact",
    ]));
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("--memory") && stderr.contains("compiled from C"), "{stderr}");
}
