//! The user's own program is checked before it is raced (issue 21): each program here is
//! broken without any patching, and was reported as a kernel violation (torn-fetch,
//! guest-fault, unclaimed-int3, workload-invariant) or as a pokesim bug (exit 3). Now the dry
//! run refuses it as bad input naming the site, the address, the instruction and the image.

mod common;

use common::*;
use scenarios::file::ScenarioFile;

const HEAD: &str =
    "name = \"user\"\nprotocol = \"linux-6.16\"\ncpus = 2\nruns = 4\n[workload]\nkind = \"custom\"\nrounds = 4\n";

/// A scenario with the generated loop and these `[[sites]]` tables.
fn generated(sites: &[(&str, &str)]) -> String {
    let mut s = HEAD.to_string();
    for (old, new) in sites {
        s.push_str(&format!("[[sites]]\nold = \"{old}\"\nnew = \"{new}\"\n"));
    }
    s
}

/// A scenario with its own code (entry `top`) and one site at `site` that becomes `new`.
fn own(asm: &str, new: &str) -> String {
    format!("{HEAD}[code]\nentry = \"top\"\nasm = \"\"\"\n{asm}\n\"\"\"\n[[sites]]\nat = \"site\"\nnew = \"{new}\"\n")
}

/// The refusal of `src`, which must be one.
fn refused(src: &str) -> String {
    match ScenarioFile::parse("user.toml", src, "user") {
        Ok(f) => panic!("accepted; a run says {:?}", f.scenario.run().map(|o| o.violation().cloned())),
        Err(e) => e.to_string(),
    }
}

fn assert_names(e: &str, parts: &[&str]) {
    for p in parts {
        assert!(e.contains(p), "`{p}` missing from: {e}");
    }
}

#[test]
fn an_invalid_byte_next_to_a_site_is_refused_not_a_torn_fetch() {
    let e = refused(&own("top:  inc qword [rbx]\nsite: nop5\n      db 17\n      jmp top", "jmp short top"));
    assert_names(
        &e,
        &["user.toml", "field `sites[0]`", "old instruction", "0x400008 (`(bad)`, after site 0)", "invalid opcode"],
    );
}

#[test]
fn a_self_modifying_store_is_refused() {
    // rbx is vCPU 0's counter block at 0x600000: 0x200000 below it is the text.
    let e = refused(&own("top:  inc qword [rbx]\nsite: nop5\n      inc qword [rbx-0x200000]\n      jmp top", "nop5"));
    assert_names(&e, &["field `sites[0]`", "0x400008", "inc qword ptr [rbx-0x200000]", "stores into the text"]);
}

#[test]
fn an_access_outside_the_data_is_refused() {
    // rax is 0 at the start: `[rax]` is unmapped.
    let e = refused(&own("top:  inc qword [rbx]\nsite: nop5\n      inc qword [rax]\n      jmp top", "nop5"));
    assert_names(&e, &["field `sites[0]`", "inc qword ptr [rax]", "reads memory outside its data"]);
}

#[test]
fn a_jump_out_of_the_text_is_refused() {
    let e = refused(&generated(&[("nop5", "jmp 0x500000")]));
    assert_names(&e, &["field `sites[0]`", "new instruction", "jmp 0x500000", "unmapped memory"]);
}

#[test]
fn a_jump_into_the_data_region_is_bad_input_not_a_pokesim_bug() {
    let src = generated(&[("nop5", "jmp 0x600000")]);
    let e = refused(&src);
    assert_names(
        &e,
        &["field `sites[0]`", "new instruction", "(`jmp 0x600000`, site 0) goes to 0x600000, the data region"],
    );
    // Through the binary: exit 2 (it was "internal error (a pokesim bug)", exit 3).
    let dir = tempdir("trust-user-code");
    let file = write(&dir, "data.toml", &src);
    let (code, stdout, stderr) = out(pokesim().arg("run").arg(&file).arg("--no-artifact"));
    assert_eq!(code, 2, "{stdout}{stderr}");
    assert!(stderr.contains("data.toml") && stderr.contains("sites[0]"), "{stderr}");
}

#[test]
fn ret_without_a_call_is_refused() {
    let e = refused(&generated(&[("ret", "nop1")]));
    assert_names(&e, &["field `sites[0]`", "old instruction", "`ret`", "outside the workload's code"]);
}

#[test]
fn a_callee_falling_into_the_int3_padding_is_refused() {
    let asm = "top:  inc qword [rbx]\nsite: call f\n      jmp top\nf:    inc qword [rbx+8]";
    let e = refused(&own(asm, "nop5"));
    assert_names(&e, &["field `sites[0]`", "old instruction", "inc qword ptr [rbx+8]", "INT3 padding"]);
}

#[test]
fn an_unbalanced_call_is_refused() {
    let asm = "top:  inc qword [rbx]\nsite: call f\n      jmp top\nf:    jmp top";
    let e = refused(&own(asm, "nop5"));
    assert_names(&e, &["field `sites[0]`", "old instruction", "breaks the workload invariant", "stack unbalanced"]);
}

#[test]
fn an_int3_of_the_program_is_refused() {
    let e = refused(&generated(&[("nop1", "int3")]));
    assert_names(&e, &["field `sites[0]`", "new instruction", "int3", "no patching owns"]);
}

#[test]
fn a_site_the_program_never_executes_is_refused() {
    let asm = "top:  inc qword [rbx]\n      jmp top\nsite: nop5";
    let e = refused(&own(asm, "jmp short top"));
    assert_names(&e, &["field `sites[0]`", "0x400008", "never executed", "establishes nothing"]);
}

#[test]
fn a_program_that_never_returns_to_its_loop_head_is_refused() {
    let asm = "top:  inc qword [rbx]\nsite: nop5\nspin: jmp spin";
    let e = refused(&own(asm, "nop5"));
    assert_names(&e, &["field `sites[0]`", "jmp 0x400008", "does not complete 3 passes"]);
}

#[test]
fn a_generated_loop_that_would_overlap_its_callee_is_refused() {
    let sites = vec![("nop5", "nop5"); 1228];
    let e = refused(&generated(&sites));
    assert_names(&e, &["field `sites[", "run into its callee at 0x401800"]);
}

#[test]
fn patch_requests_are_bounded_before_they_are_allocated() {
    let sites = vec![("nop5", "nop5"); 300];
    let e = refused(&generated(&sites).replace("rounds = 4", "rounds = 100000"));
    assert_names(&e, &["field `workload.rounds`", "30000000 patch requests", "more than 200000"]);
}

#[test]
fn a_correct_program_runs_and_its_dry_run_is_done_once() {
    let f = ScenarioFile::parse("user.toml", &own("top:  inc qword [rbx]\nsite: nop5\n      jmp top", "nop5"), "user")
        .unwrap();
    let custom = f.scenario.custom.clone().unwrap();
    assert_eq!(custom.checked.answers(), 1, "parsing checked the program for 2 vCPUs");
    for seed in 0..3 {
        let mut s = f.scenario.clone();
        s.seed = seed;
        assert_eq!(s.run().unwrap().verdict, sim_core::Verdict::Pass);
    }
    assert_eq!(custom.checked.answers(), 1, "the seeds reused the answer");
}
