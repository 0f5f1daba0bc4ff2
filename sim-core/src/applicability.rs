//! Whether a mutant can act on a scenario, decided once over the validated plan from what the
//! mutant edits ([`Edits`]): an edit of the patcher's program acts iff the program with it
//! differs from the program without it; a handler edit iff the handler can claim a patching
//! INT3 whose emulation the edit changes; `kprobe-disarm-no-sync` iff a kprobe client cycles;
//! `no-text-reserved` iff `register_kprobe()`'s checks would refuse some kprobe of the
//! scenario; a batch-split edit iff some batch splits differently without the check. A mutant
//! that cannot act is refused ([`check`]): its run would be the unmutated run under another
//! name, and a surviving mutant reads as "this step is unnecessary".

use crate::batching::split_batch;
use crate::config::RunConfig;
use crate::error::Subject;
use crate::patching::PokeArray;
use crate::program::Op;
use crate::protocol::loc::{JMP32, JMP8};
use crate::protocol::{text_poke_loc_init, Edits, HandlerEdit, Mutant, SplitCheck, TextPokeLoc};
use crate::workload::GuestImage;
use crate::workload::PatchAction;
use crate::SimError;

/// What the plan knows that decides whether a mutant acts: the configuration, the guest image
/// (with its patch actions), the arrays and programs built for it, and whether
/// `register_kprobe()`'s reserved-text checks refuse (or turn ftrace-based) some kprobe of the
/// scenario. [`crate::Plan::new`] fills it in before it returns the plan.
pub struct Facts<'a> {
    /// The run's configuration (protocol, mutants, vCPUs).
    pub config: &'a RunConfig,
    /// The guest, with its patch actions.
    pub image: &'a GuestImage,
    /// One patch array per batch the patcher runs.
    pub arrays: &'a [PokeArray],
    /// One program per patching client.
    pub programs: &'a [Vec<Op>],
    /// `register_kprobe()`'s reserved-text checks refuse some kprobe of the scenario.
    pub reserved_refuses: bool,
}

/// Refuses the first mutant of the configuration that cannot act on the planned run.
pub fn check(plan: &Facts<'_>) -> Result<(), SimError> {
    for &m in &plan.config.mutants {
        if let Some(why) = vacuous(m, plan) {
            return Err(SimError::invalid(Subject::Mutants, format!("'{m}' cannot act on this scenario: {why}")));
        }
    }
    Ok(())
}

/// Why `m` cannot act on `plan` (the scenario fact and what would make it act), or `None` if
/// it acts.
pub fn vacuous(m: Mutant, plan: &Facts<'_>) -> Option<String> {
    let workload = &plan.image.name;
    match m.edits() {
        Edits::Program => program_unchanged(m, plan),
        Edits::Handler(edit) => handler_unreached(m, edit, plan),
        Edits::KprobeDisarm => (plan.programs.len() < 2).then(|| {
            format!(
                "it drops arch_disarm_kprobe()'s text_poke_sync(), and no kprobe of this scenario (workload \
                 {workload}) arms and disarms itself; a kprobe client makes it act (`--workload ftrace+kprobe-cycling`, \
                 or a [[kprobes]] entry with `cycles`)"
            )
        }),
        Edits::RegisterKprobe => (!plan.reserved_refuses).then(|| {
            format!(
                "it drops register_kprobe()'s reserved-text checks, and they refuse no kprobe of this scenario \
                 (workload {workload}: no kprobe sits on a patched site); a kprobe on a site makes it act \
                 (`--workload ftrace+kprobe-entry`, or `--kprobe-at` a site's address)"
            )
        }),
        Edits::BatchSplit(check) => split_unchanged(m, check, plan),
        Edits::SingleAdd => single_unshared(plan),
        Edits::EarlyOrder => {
            let early = plan.image.scripts().flatten().any(|a| matches!(a, PatchAction::Early { .. }));
            (plan.config.compiled.is_none() || !early).then(|| {
                format!(
                    "it edits text_poke_early() of a protocol compiled from C, and workload {} (with {}) never \
                     calls it; `--workload early --protocol-c` makes it act",
                    plan.image.name,
                    if plan.config.compiled.is_some() { "a C protocol" } else { "the Rust model" }
                )
            })
        }
        Edits::UnlockedRefs => plan.config.compiled.is_none().then(|| {
            format!(
                "it removes the LOCK prefix of the reference counts of a protocol compiled from C (the Rust models \
                 have no instructions); `--protocol-c --memory tso` makes it act (workload {workload})"
            )
        }),
    }
}

/// `smp_text_poke_single()`'s add: it acts iff a caller patches single sites while another
/// queues, in a protocol compiled from C (the Rust models do not share the vector).
fn single_unshared(plan: &Facts<'_>) -> Option<String> {
    let workload = &plan.image.name;
    if plan.config.compiled.is_none() {
        return Some(format!(
            "it edits smp_text_poke_single() of a protocol compiled from C (the Rust models fix each batch's \
             vector when the run is planned, so no caller shares it); `--workload shared_vector --protocol-c` \
             makes it act (workload {workload})"
        ));
    }
    let scripts: Vec<&[PatchAction]> = plan.image.scripts().collect();
    let has = |f: fn(&PatchAction) -> bool| scripts.iter().any(|s| s.iter().any(f));
    let shared = has(|a| matches!(a, PatchAction::Single(_))) && has(|a| matches!(a, PatchAction::Queue(_)));
    (!shared).then(|| {
        format!(
            "it edits smp_text_poke_single(), and no caller of workload {workload} patches a single site while \
             another queues; `--workload shared_vector` makes it act"
        )
    })
}

fn others(plan: &Facts<'_>, m: Mutant) -> Vec<Mutant> {
    plan.config.mutants.iter().copied().filter(|&o| o != m).collect()
}

fn with_others(plan: &Facts<'_>, m: Mutant) -> String {
    let others: Vec<&str> = others(plan, m).iter().map(|o| o.name()).collect();
    if others.is_empty() {
        String::new()
    } else {
        format!(" together with {}", others.join(", "))
    }
}

/// An edit of the patcher's program: it acts iff some batch's program changes.
fn program_unchanged(m: Mutant, plan: &Facts<'_>) -> Option<String> {
    let (protocol, cpus) = (plan.config.protocol, plan.config.cpus);
    if plan.arrays.is_empty() {
        return Some(format!(
            "it edits {protocol}'s text_poke_bp() program, and workload {} queues no text_poke_bp() batch; a \
             workload that patches a site makes it act",
            plan.image.name
        ));
    }
    let without = others(plan, m);
    let changes = plan.arrays.iter().enumerate().any(|(b, a)| {
        let n = a.locs.len();
        protocol.batch_program(&plan.config.mutants, b, n, cpus) != protocol.batch_program(&without, b, n, cpus)
    });
    (!changes).then(|| {
        format!(
            "{protocol}'s text_poke_bp() program is the same with and without it{}: the step it edits is not \
             there; list it alone to make it act",
            with_others(plan, m)
        )
    })
}

/// The entries the handler emulates: each batch's new instructions, or with `emulate-old`
/// the ones they replace.
fn emulated(plan: &Facts<'_>) -> Vec<TextPokeLoc> {
    let rules = plan.config.protocol.loc_rules();
    let old = plan.config.mutants.contains(&Mutant::EmulateOld);
    let mut out = Vec::new();
    for a in plan.arrays {
        for (loc, bytes) in a.locs.iter().zip(a.old.iter()) {
            if !old {
                out.push(loc.clone());
            } else if let Ok(l) = text_poke_loc_init(rules, loc.addr, bytes, None, None) {
                out.push(l);
            }
        }
    }
    out
}

/// A handler edit: it acts iff the handler claims a patching INT3 whose handling it changes.
fn handler_unreached(m: Mutant, edit: HandlerEdit, plan: &Facts<'_>) -> Option<String> {
    let (protocol, workload) = (plan.config.protocol, &plan.image.name);
    let handler = protocol.version().names.handler_function;
    if edit == HandlerEdit::Rmb {
        return Some(format!(
            "it drops {handler}'s smp_rmb(), which the model has no step for: on x86 it is only a compiler \
             barrier (x86-TSO keeps loads in order) and the model's data memory is sequentially consistent, so \
             no scenario makes it act"
        ));
    }
    if !plan.programs[0].iter().any(|op| matches!(op, Op::PokeInt3 { .. })) {
        return Some(format!(
            "it edits {handler}, and this scenario (workload {workload}{}) writes no patching INT3 for it to \
             claim; a workload that patches a site with text_poke_bp() makes it act",
            with_others(plan, m)
        ));
    }
    let emulated = emulated(plan);
    match edit {
        HandlerEdit::JumpPast => {
            // A NOP is emulated as a JMP +0: a jump past it. (An explicit INT3 is declined,
            // which the mutant's jump changes.)
            let nop = |l: &TextPokeLoc| matches!(l.opcode, JMP32 | JMP8) && l.disp == 0;
            emulated.iter().all(nop).then(|| {
                format!(
                    "every instruction {handler} emulates in workload {workload} is a NOP, which it already \
                     emulates as a jump past it; a site whose instruction is a CALL, JMP, RET or Jcc makes it act \
                     (`--workload static_call`)"
                )
            })
        }
        HandlerEdit::EmulateOld => {
            let same = plan.arrays.iter().all(|a| a.locs.iter().zip(a.old.iter()).all(|(l, o)| l.text == *o));
            same.then(|| {
                format!(
                    "every site of workload {workload} is rewritten to the bytes it already holds, so the old \
                     instruction is the new one; a site that changes makes it act"
                )
            })
        }
        HandlerEdit::JccInvert => {
            let inverted = |l: &TextPokeLoc| (0x70..=0x7f).contains(&l.opcode) && l.opcode & 1 == 1;
            (!emulated.iter().any(inverted)).then(|| {
                format!(
                    "it edits int3_emulate_jcc()'s inversion bit, and {handler} emulates no Jcc with that bit set \
                     (jno, jae, jne, ja, jns, jnp, jge, jg) in workload {workload}; `--workload jcc` makes it act"
                )
            })
        }
        HandlerEdit::FirstCall | HandlerEdit::Rmb => None,
    }
}

/// A dropped check of `smp_text_poke_batch_add()`: it acts iff some batch splits differently.
fn split_unchanged(m: Mutant, check: SplitCheck, plan: &Facts<'_>) -> Option<String> {
    let protocol = plan.config.protocol;
    let without = others(plan, m);
    let changes = plan.image.actions.iter().any(|a| match a {
        PatchAction::Batch(reqs) => {
            let split = |ms: &[Mutant]| split_batch(protocol, ms, reqs).map(|g| g.len()).ok();
            split(&plan.config.mutants) != split(&without)
        }
        _ => false,
    });
    let workload = &plan.image.name;
    (!changes).then(|| match check {
        SplitCheck::Full => format!(
            "it drops smp_text_poke_batch_add()'s flush of a full vector, and no batch of workload {workload} \
             has more than {} entries{}; `--workload batch --sites 257` makes it act",
            crate::patching::TEXT_POKE_ARRAY_MAX,
            with_others(plan, m)
        ),
        SplitCheck::Order => format!(
            "it drops smp_text_poke_batch_add()'s flush of an out-of-order address, and workload {workload} \
             queues every batch in ascending order{}; `--workload batch-interleaved` makes it act",
            with_others(plan, m)
        ),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::Protocol;

    #[test]
    fn every_mutant_has_one_row_and_the_names_are_distinct() {
        let names: std::collections::BTreeSet<&str> = Mutant::ALL.iter().map(|m| m.name()).collect();
        assert_eq!(names.len(), Mutant::ALL.len());
        for m in Mutant::ALL {
            assert!(!m.description().is_empty(), "{m}");
            assert!(Protocol::ALL.iter().any(|&p| m.applies_to(p)), "{m} applies to no version");
        }
    }

    #[test]
    fn program_edits_change_the_program_of_every_version_they_apply_to() {
        for m in Mutant::ALL.into_iter().filter(|m| m.edits() == Edits::Program) {
            for p in Protocol::ALL.into_iter().filter(|&p| m.applies_to(p)) {
                assert_ne!(p.batch_program(&[m], 0, 2, 2), p.batch_program(&[], 0, 2, 2), "{m} on {p}");
            }
        }
    }
}
