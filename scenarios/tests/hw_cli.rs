//! `pokesim hw` from the command line: a kernel protocol on this machine's CPUs reported with
//! the host, its counts and a verdict (JSON and text), a mutant that tears exiting 1 against a
//! `pass` expectation (and meeting a `torn-fetch` one with the guest faults a torn fetch shows
//! as), a file's simulation-only fields named as not applying, a recorded file and
//! simulation-only flags refused with status 2 rather than ignored; a campaign that completed
//! no round is no verdict (status 4), more guest threads than CPUs and every scenario flag
//! `--matrix` cannot use are refused by name, a guest that misbehaves by itself (FS/GS use, a
//! corrupted stack pointer, leaving its text, a spin) is refused with its instruction and
//! address before any campaign, and a long campaign reports progress on stderr. A protocol
//! compiled from C runs natively: linux-5.5's file passes with every trap emulated and the
//! report naming the file and its build, 6.16's without the sync after the first byte shows
//! unclaimed INT3s as the model does (5.5's retry claims them), a `BUG()` or a NULL
//! dereference in a user's file is a fault with its line while the process lives on, and what
//! the native run cannot carry out is refused. The campaigns skip (printing `SKIPPED`) where
//! the host cannot, unless `POKESIM_REQUIRE_HW=1`.

#[path = "../../tests/support/skippable.rs"]
mod skippable;

use std::time::Duration;

use assert_cmd::Command;
use serde_json::Value;

/// Longer than any of these commands takes; what hung on the old code fails instead.
const HANG_GUARD: Duration = Duration::from_secs(60);

fn pokesim() -> Command {
    Command::cargo_bin("pokesim").expect("the pokesim binary is built")
}

/// True if this host can run hardware campaigns (else the test prints why and skips).
fn hardware() -> bool {
    match hw::probe() {
        Ok(_) => true,
        Err(r) if std::env::var_os("POKESIM_REQUIRE_HW").is_some() => panic!("POKESIM_REQUIRE_HW is set: {r}"),
        Err(r) => {
            eprintln!("SKIPPED: {r}");
            false
        }
    }
}

fn a_kernel_protocol_on_real_cpus_reports_its_host_counts_and_verdict() {
    if !hardware() {
        return;
    }
    let out = pokesim()
        .args(["hw", "--protocol", "linux-6.16", "--site", "cross16", "--stores", "byte", "--rounds", "2000", "--json"])
        .output()
        .expect("runs");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!("not JSON ({e}): {}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr))
    });
    assert_eq!(out.status.code(), Some(0), "{j}");
    assert_eq!(j["command"], "hw");
    assert_eq!(j["rounds"], 2000);
    assert_eq!(j["syncs"], 6000, "three text_poke_sync() per round: {j}");
    assert!(j["traps"].as_u64().unwrap() > 0 && j["traps"] == j["emulated"], "{j}");
    assert!(j["invariant_checks"].as_u64().unwrap() > 0, "{j}");
    assert_eq!(j["violations"].as_array().map(Vec::len), Some(0), "{j}");
    assert!(!j["host"]["cpu"].as_str().unwrap().is_empty() && j["host"]["cpus"].as_u64().unwrap() >= 2, "{j}");
    assert_eq!(j["scenario"]["protocol"], "linux-6.16");
}

fn a_tearing_mutant_exits_1_against_a_pass_expectation_with_its_events() {
    if !hardware() {
        return;
    }
    let out = pokesim()
        .args(["hw", "--mutant", "no-int3", "--protocol", "linux-6.16", "--site", "cross16", "--rounds", "5000"])
        .output()
        .expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{text}");
    assert!(text.contains("VIOLATIONS guest-fault"), "{text}");
    assert!(text.lines().any(|l| l.starts_with("event      round ")), "{text}");
    assert!(text.contains("NOT as expected (expect pass)"), "{text}");
}

fn simulation_flags_are_refused_on_hardware() {
    for flags in [&["--seed", "3"][..], &["--strategy", "pct"], &["--preset", "line64"], &["--runs", "5"]] {
        let out = pokesim().arg("hw").args(flags).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{flags:?}: {err}");
        assert!(err.contains(flags[0]) && err.contains("does not apply to `pokesim hw`"), "{err}");
    }
    let out = pokesim().args(["hw", "--rounds", "0"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2));
    let out = pokesim().args(["hw", "--matrix", "--mutant", "no-int3"]).output().expect("runs");
    assert_eq!(out.status.code(), Some(2), "{}", String::from_utf8_lossy(&out.stderr));
}

fn a_torn_fetch_expectation_is_met_by_what_a_torn_fetch_shows_on_hardware() {
    if !hardware() {
        return;
    }
    let args = ["hw", "--mutant", "no-int3", "--protocol", "linux-6.16", "--site", "cross16", "--stores", "byte"];
    let out = pokesim().args(args).args(["--rounds", "5000", "--expect", "torn-fetch"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}");
    assert!(text.contains("VIOLATIONS guest-fault") && text.contains("as expected (expect torn-fetch)"), "{text}");
}

fn a_scenario_file_says_what_does_not_apply_and_a_recorded_one_is_refused() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let plain = dir.join("plain.toml");
    std::fs::write(&plain, "protocol = \"linux-6.16\"\nseed = 4\n[workload]\nkind = \"ftrace\"\n").unwrap();
    let out = pokesim().arg("hw").arg(&plain).args(["--rounds", "500"]).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("n/a        the file's seed does not apply: it describes simulator runs"), "{text}");
    let recorded = dir.join("recorded.toml");
    std::fs::write(&recorded, "decisions = [[2, 1], [3, 0]]\n[workload]\nkind = \"ftrace\"\n").unwrap();
    let out = pokesim().arg("hw").arg(&recorded).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("recorded.toml") && err.contains("decision list"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_campaign_that_completed_no_round_is_no_verdict() {
    if !hardware() {
        return;
    }
    let out = pokesim().args(["hw", "--time", "1e-9"]).timeout(HANG_GUARD).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(4), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(text.contains("verdict    none: no patch round completed"), "{text}");
    assert!(!text.contains("no violation in 0 rounds"), "{text}");
    let out = pokesim().args(["hw", "--time", "1e-9", "--json"]).timeout(HANG_GUARD).output().expect("runs");
    let j: Value = serde_json::from_slice(&out.stdout).expect("JSON");
    assert_eq!(out.status.code(), Some(4), "{j}");
    assert_eq!(j["rounds"], 0, "{j}");
    assert!(j["no_verdict"].as_str().is_some_and(|w| w.contains("no patch round completed")), "{j}");
}

fn more_guest_threads_than_cpus_are_refused_naming_the_limit() {
    if !hardware() {
        return;
    }
    let cpus = hw::probe().expect("probed").cpus.len();
    let out = pokesim().args(["hw", "--threads", "256", "--time", "2"]).timeout(HANG_GUARD).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("--threads 256") && err.contains(&format!("at most {cpus} guest threads")), "{err}");
}

fn matrix_refuses_every_scenario_flag_it_would_not_use() {
    let args = ["hw", "--matrix", "--workload", "jcc", "--site", "cross-page", "--kernel", "CONFIG_KPROBES=n"];
    let more = ["--stores", "whole", "--cpus", "3", "--expect", "liveness", "--rounds", "10"];
    let out = pokesim().args(args).args(more).timeout(HANG_GUARD).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", String::from_utf8_lossy(&out.stdout));
    for flag in ["--workload", "--site", "--kernel", "--stores", "--cpus", "--expect"] {
        assert!(err.contains(flag), "{flag} not named: {err}");
    }
    let named = err.split("would not act on them").next().unwrap_or_default();
    assert!(err.contains("would not act on them") && !named.contains("--rounds"), "--rounds applies: {err}");
}

/// A custom scenario whose loop runs `line` (assembly, or `db` bytes) after its loop head.
fn own_code(dir: &std::path::Path, name: &str, line: &str) -> std::path::PathBuf {
    let path = dir.join(format!("{name}.toml"));
    let toml = format!(
        "protocol = \"linux-6.16\"\ncpus = 1\n[workload]\nkind = \"custom\"\nrounds = 2\n[code]\nentry = \"top\"\n\
         asm = \"\"\"\ntop:  inc qword [rbx]\n      {line}\nsite: jne short skip\n      inc qword [rbx+8]\n\
         skip: jmp top\n\"\"\"\n[[sites]]\nat = \"site\"\nnew = \"nop2\"\n"
    );
    std::fs::write(&path, toml).unwrap();
    path
}

fn a_guest_that_misbehaves_by_itself_is_refused_with_its_instruction_and_address() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-guest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Each line follows `inc qword [rbx]` (3 bytes) at the text base 0x400000. The
    // simulator's dry run of a custom program (scenarios::workload::dry_run) refuses each of
    // them before `hw` starts a thread; `hw`'s own native dry run (hw::dryrun) stays behind it
    // for anything the emulator runs differently from the CPU.
    let cases = [
        ("fs-store", "db 64 48 89 04 25 00 00 00 00", "0x400003 (`mov fs:[0], rax`)"),
        ("wrfsbase", "db f3 48 0f ae d0", "0x400003 (`wrfsbase rax`)"),
        ("zero-rsp", "db 48 31 e4 50", "0x400006 (`push rax`)"),
        ("jump-out", "db 48 31 c0 ff e0", "0x400006 (`jmp rax`)"),
        ("spin", "spin: jmp spin", "0x400003 (`jmp 0x400003`)"),
    ];
    for (name, line, named) in cases {
        let file = own_code(&dir, name, line);
        let out = pokesim().arg("hw").arg(&file).args(["--rounds", "200"]).timeout(HANG_GUARD).output().expect("runs");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {err}{}", String::from_utf8_lossy(&out.stdout));
        assert!(err.contains(named) && err.contains("vCPU 0"), "{name}: {err}");
        assert!(err.contains("without any patching") && err.contains("blame the kernel"), "{name}: {err}");
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

fn a_long_campaign_reports_progress_on_stderr_and_honours_its_time() {
    if !hardware() {
        return;
    }
    let out = pokesim()
        .args(["hw", "--protocol", "linux-6.16", "--rounds", "100000000", "--time", "11"])
        .timeout(HANG_GUARD)
        .output()
        .expect("runs");
    let (text, err) = (String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{text}{err}");
    assert!(err.lines().any(|l| l.contains("hw: ") && l.contains("/100000000 rounds done")), "no progress line: {err}");
}

fn a_site_no_guest_ever_executes_is_refused_before_the_campaign() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-unreached-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // The loop jumps over its own site: the INT3 would be written every round and never
    // fetched. The dry run refuses such a program before any campaign (a site never executed
    // establishes nothing); `hw`'s own "no guest ever hit an INT3" no-verdict stays behind it.
    let file = own_code(&dir, "unreached", "jmp short skip");
    let out = pokesim().arg("hw").arg(&file).args(["--rounds", "200"]).timeout(HANG_GUARD).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}{}", String::from_utf8_lossy(&out.stdout));
    assert!(err.contains("site 0 at 0x400005") && err.contains("is never executed"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `pokesim hw ARGS --json`: its exit status and its report.
fn hw_json(args: &[&str]) -> (Option<i32>, Value) {
    let out = pokesim().arg("hw").args(args).arg("--json").timeout(HANG_GUARD).output().expect("runs");
    let j: Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "{args:?}: not JSON ({e}): {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), j)
}

/// How many violations of `kind` a report counts.
fn count(j: &Value, kind: &str) -> u64 {
    let kinds = j["violations"].as_array().expect("violations");
    kinds.iter().filter(|v| v["kind"] == kind).map(|v| v["count"].as_u64().unwrap()).sum()
}

fn the_5_5_c_file_runs_natively_without_a_violation() {
    if !hardware() {
        return;
    }
    // Two vCPUs asked: on a 2-CPU host one guest thread runs beside the patcher (the report
    // says so); the C file's own patcher and handler run natively.
    let args = ["--protocol", "linux-5.5", "--protocol-c", "--workload", "ftrace", "--cpus", "2", "--rounds", "5000"];
    let (code, j) = hw_json(&args);
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(j["rounds"], 5000, "{j}");
    assert_eq!(j["syncs"], 20000, "four text_poke_sync() per round in 5.5's text_poke_bp(): {j}");
    assert!(j["traps"].as_u64().unwrap() > 0 && j["traps"] == j["emulated"], "every trap emulated by the C: {j}");
    assert_eq!(j["violations"].as_array().map(Vec::len), Some(0), "{j}");
    assert_eq!((&j["c_file"], &j["scenario"]["label"]), (&"linux-5.5.c".into(), &"ftrace/linux-5.5.c".into()), "{j}");
    let build = j["c_build"].as_str().expect("the build hash");
    assert!(build.len() >= 16 && j["scenario"]["c_source"]["hash"] == build, "{j}");
    // The text report names the file and its build.
    let out =
        pokesim().args(["hw"]).args(&args[..5]).args(["--rounds", "300"]).timeout(HANG_GUARD).output().expect("runs");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains(&format!("protocol   the C file linux-5.5.c (build {build}), its linked image run natively")),
        "{text}"
    );
}

fn no_sync_after_first_in_c_shows_unclaimed_int3s_as_the_model_does() {
    if !hardware() {
        return;
    }
    // The scenario the model's hw campaign shows it with (tests/tests/hw_campaigns.rs): 6.16,
    // ftrace, byte stores, the site across a 16-byte block. Measured with the C file: about
    // 1,000 per 20,000 rounds; up to five batches until one shows it.
    let args = ["--protocol", "linux-6.16", "--protocol-c", "--mutant", "no-sync-after-first", "--site", "cross16"];
    let mut seen = None;
    for _ in 0..5 {
        let (code, j) = hw_json(&[&args[..], &["--stores", "byte", "--rounds", "20000"]].concat());
        assert!(j["traps"].as_u64().unwrap() > 0, "{j}");
        let unclaimed = count(&j, "unclaimed-int3");
        assert_eq!(
            unclaimed,
            j["violations"].as_array().unwrap().iter().map(|v| v["count"].as_u64().unwrap()).sum::<u64>(),
            "{j}"
        );
        if unclaimed > 0 {
            assert_eq!(code, Some(1), "{j}");
            seen = Some(j);
            break;
        }
    }
    let j = seen.expect("no unclaimed INT3 in 100,000 rounds of the C file without the sync after the first byte");
    let e = &j["events"][0];
    assert!(e["message"].as_str().unwrap().contains("claimed by no handler: smp_text_poke_int3_handler()"), "{e}");
    assert!(e["round"].as_u64().is_some_and(|r| r > 0) || e["round"] == "drain", "{e}");
    // linux-5.5 keeps kprobe_int3_handler()'s retry of a vanished INT3: the C file's handler
    // declines, the retry claims it — no unclaimed INT3, as with the model.
    let five = ["--protocol", "linux-5.5", "--protocol-c", "--mutant", "no-sync-after-first", "--site", "cross16"];
    let (code, j) = hw_json(&[&five[..], &["--stores", "byte", "--rounds", "5000"]].concat());
    assert_eq!((code, count(&j, "unclaimed-int3")), (Some(0), 0), "{j}");
}

/// A protocol file of the user's: its patcher pokes the INT3, the tail and the first byte of
/// each batch's site with a sync after each; `patch_end` and `handler` are the code that ends
/// `pokesim_patch()` and the body of `poke_int3_handler()`.
fn user_c(dir: &std::path::Path, name: &str, patch_end: &str, handler: &str) -> std::path::PathBuf {
    let src = format!(
        "#include \"pokesim.h\"\n\
         static void do_sync_core(void *info) {{ sync_core(); }}\n\
         void pokesim_patch(const struct pokesim_poke *p, unsigned int nr)\n{{\n\
         \tunsigned char int3 = 0xcc;\n\
         \tmutex_lock(&text_mutex);\n\
         \ttext_poke((void *)p->addr, &int3, 1);\n\
         \ton_each_cpu(do_sync_core, NULL, 1);\n\
         \ttext_poke((void *)(p->addr + 1), p->text + 1, p->len - 1);\n\
         \ton_each_cpu(do_sync_core, NULL, 1);\n\
         \ttext_poke((void *)p->addr, p->text, 1);\n\
         \ton_each_cpu(do_sync_core, NULL, 1);\n\
         \tmutex_unlock(&text_mutex);\n\
         {patch_end}\n}}\n\
         int poke_int3_handler(struct pt_regs *regs)\n{{\n\
         \tstatic int traps;\n\
         {handler}\n}}\n"
    );
    let path = dir.join(format!("{name}.c"));
    std::fs::write(&path, src).unwrap();
    path
}

fn a_bug_or_a_fault_in_a_user_c_file_is_reported_with_its_line_and_the_process_lives() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-c-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    // Line 14 of the file: the patcher's BUG() after its first batch (its handler declines
    // every INT3: unclaimed). The session ends there.
    let bug = user_c(&dir, "patcher-bug", "\tBUG_ON(nr == 1);", "\treturn 0;");
    let (code, j) = hw_json(&["--protocol", "linux-5.5", "--protocol-source", bug.to_str().unwrap(), "--rounds", "50"]);
    assert_eq!(code, Some(1), "{j}");
    assert_eq!(count(&j, "patcher-fault"), 1, "{j}");
    let events = j["events"].as_array().unwrap();
    let m = events.iter().find(|e| e["kind"] == "patcher-fault").expect("the BUG()")["message"].as_str().unwrap();
    assert!(
        m.contains("BUG() at") && m.contains("patcher-bug.c:14: BUG_ON(nr == 1) in pokesim_patch() patcher-bug.c:14"),
        "{m}"
    );
    assert!(j["stopped"].as_str().unwrap().starts_with("the patcher faulted: BUG()"), "{j}");
    // The handler: a NULL dereference (line 20) and a BUG() (line 21), by turns. Each ends its
    // activation as a handler fault inside the guest's SIGTRAP handler, the vCPU restarts, and
    // the session runs on to its last round.
    let handler = "\tif (++traps % 2)\n\t\treturn *(volatile int *)(regs->orig_ax + 1);\n\tBUG();";
    let faulty = user_c(&dir, "handler-faults", "", handler);
    let (code, j) =
        hw_json(&["--protocol", "linux-5.5", "--protocol-source", faulty.to_str().unwrap(), "--rounds", "200"]);
    assert_eq!(code, Some(1), "{j}");
    assert_eq!(j["rounds"], 200, "the session goes on: {j}");
    assert!(count(&j, "handler-fault") > 1 && count(&j, "handler-fault") == j["traps"].as_u64().unwrap(), "{j}");
    let messages: Vec<&str> = j["events"].as_array().unwrap().iter().map(|e| e["message"].as_str().unwrap()).collect();
    assert!(
        messages.iter().any(|m| m.starts_with("SIGSEGV")
            && m.ends_with("NULL pointer dereference in poke_int3_handler() handler-faults.c:20")),
        "{messages:#?}"
    );
    assert!(messages.iter().any(|m| m.ends_with("BUG() in poke_int3_handler() handler-faults.c:21")), "{messages:#?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn what_the_native_c_cannot_carry_out_is_refused() {
    if !hardware() {
        return;
    }
    let dir = std::env::temp_dir().join(format!("pokesim-hw-c-refused-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let other =
        user_c(&dir, "other-mutex", "\tstatic struct mutex m;\n\tmutex_lock(&m);\n\tmutex_unlock(&m);", "\treturn 0;");
    let out =
        pokesim().args(["hw", "--protocol", "linux-5.5", "--protocol-source"]).arg(&other).timeout(HANG_GUARD).output();
    let out = out.expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("mutex_lock(0x") && err.contains("other-mutex.c:15: pokesim models only &text_mutex"),
        "{err}"
    );
    // Kprobes that arm and disarm themselves stay refused with a compiled protocol.
    let out =
        pokesim().args(["hw", "--protocol", "linux-5.5", "--protocol-c", "--kprobe=cycling"]).output().expect("runs");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("kprobes that arm and disarm themselves do not run with a protocol compiled from C"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

fn main() {
    skippable::main(
        skippable::real_cpus(),
        &[
            (
                "a_kernel_protocol_on_real_cpus_reports_its_host_counts_and_verdict",
                a_kernel_protocol_on_real_cpus_reports_its_host_counts_and_verdict,
            ),
            (
                "a_tearing_mutant_exits_1_against_a_pass_expectation_with_its_events",
                a_tearing_mutant_exits_1_against_a_pass_expectation_with_its_events,
            ),
            ("simulation_flags_are_refused_on_hardware", simulation_flags_are_refused_on_hardware),
            (
                "a_torn_fetch_expectation_is_met_by_what_a_torn_fetch_shows_on_hardware",
                a_torn_fetch_expectation_is_met_by_what_a_torn_fetch_shows_on_hardware,
            ),
            (
                "a_scenario_file_says_what_does_not_apply_and_a_recorded_one_is_refused",
                a_scenario_file_says_what_does_not_apply_and_a_recorded_one_is_refused,
            ),
            ("a_campaign_that_completed_no_round_is_no_verdict", a_campaign_that_completed_no_round_is_no_verdict),
            (
                "more_guest_threads_than_cpus_are_refused_naming_the_limit",
                more_guest_threads_than_cpus_are_refused_naming_the_limit,
            ),
            (
                "matrix_refuses_every_scenario_flag_it_would_not_use",
                matrix_refuses_every_scenario_flag_it_would_not_use,
            ),
            (
                "a_guest_that_misbehaves_by_itself_is_refused_with_its_instruction_and_address",
                a_guest_that_misbehaves_by_itself_is_refused_with_its_instruction_and_address,
            ),
            (
                "a_long_campaign_reports_progress_on_stderr_and_honours_its_time",
                a_long_campaign_reports_progress_on_stderr_and_honours_its_time,
            ),
            (
                "a_site_no_guest_ever_executes_is_refused_before_the_campaign",
                a_site_no_guest_ever_executes_is_refused_before_the_campaign,
            ),
            ("the_5_5_c_file_runs_natively_without_a_violation", the_5_5_c_file_runs_natively_without_a_violation),
            (
                "no_sync_after_first_in_c_shows_unclaimed_int3s_as_the_model_does",
                no_sync_after_first_in_c_shows_unclaimed_int3s_as_the_model_does,
            ),
            (
                "a_bug_or_a_fault_in_a_user_c_file_is_reported_with_its_line_and_the_process_lives",
                a_bug_or_a_fault_in_a_user_c_file_is_reported_with_its_line_and_the_process_lives,
            ),
            ("what_the_native_c_cannot_carry_out_is_refused", what_the_native_c_cannot_carry_out_is_refused),
        ],
    );
}
