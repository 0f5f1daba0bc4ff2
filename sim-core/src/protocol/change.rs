//! What a mutant changed, as a reader of a failing run needs it: each operation of the
//! unmutated patcher program it removed, moved or replaced — with the operations the
//! unmutated program runs just before and after it, so that a picture can mark the point in
//! each round where it would have run — and, for mutants that edit something other than the
//! program (the INT3 handler, a kprobe client, `register_kprobe()`, batching), the edited step
//! in words. Computed by comparing [`Protocol::batch_program`] without and with the mutant
//! (one batch, one entry, one vCPU: the shape `pokesim program` shows).

use super::kernel::{self, Statement};
use super::{Edits, Mutant, Protocol};
use crate::program::Op;

/// What happened to an operation of the unmutated program.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OpEdit {
    /// It does not run at all.
    Removed,
    /// It runs, but elsewhere in the program.
    Moved,
    /// Another operation runs in its place.
    Replaced(Op),
}

impl OpEdit {
    /// `removed`, `moved`, `replaced`: the word the legends use.
    pub fn word(self) -> &'static str {
        match self {
            OpEdit::Removed => "removed",
            OpEdit::Moved => "moved",
            OpEdit::Replaced(_) => "replaced",
        }
    }
}

/// What one mutant changed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Change {
    /// An operation of the patcher's program.
    Op {
        /// The mutant.
        mutant: Mutant,
        /// The operation of the unmutated program (batch 0, entry 0).
        op: Op,
        /// What became of it.
        edit: OpEdit,
        /// Its kernel statement in this version.
        statement: Statement,
        /// The nearest operation before it that both programs run (`None`: it was first).
        after: Option<Op>,
        /// The nearest operation after it that both programs run (`None`: it was last).
        before: Option<Op>,
    },
    /// A step outside the patcher's program.
    Elsewhere {
        /// The mutant.
        mutant: Mutant,
        /// The step it edits, as traces name it (`emulate`, `arch_disarm_kprobe()`, ...).
        step: &'static str,
        /// The edit in words.
        what: &'static str,
    },
    /// The preprocessor switch of a protocol compiled from C (`#ifdef POKESIM_MUTANT_...`).
    Switch {
        /// The mutant.
        mutant: Mutant,
        /// The file.
        file: String,
        /// The switch.
        switch: String,
        /// The file's lines that name it (1-based).
        lines: Vec<usize>,
    },
}

impl Change {
    /// The mutant that made the change.
    pub fn mutant(&self) -> Mutant {
        match self {
            Change::Op { mutant, .. } | Change::Elsewhere { mutant, .. } | Change::Switch { mutant, .. } => *mutant,
        }
    }

    /// A short name for a mark: `sync-if-do-sync removed by no-sync-after-tail`.
    pub fn marker(&self) -> String {
        match self {
            Change::Op { mutant, op, edit, .. } => format!("{} {} by {mutant}", op.name(), edit.word()),
            Change::Elsewhere { mutant, step, .. } => format!("{step} edited by {mutant}"),
            Change::Switch { mutant, switch, .. } => format!("{switch} set by {mutant}"),
        }
    }

    /// One line for a legend: `removed by no-sync-after-tail: if (do_sync) text_poke_sync();
    /// (text_poke_bp_batch(), between poke-tail and reset-do-sync)`.
    pub fn describe(&self) -> String {
        match self {
            Change::Op { mutant, op, edit, statement, after, before } => {
                let name = |o: &Option<Op>, end: &str| o.map_or(end.to_string(), |o| o.name().to_string());
                let with = match edit {
                    OpEdit::Replaced(by) => format!(" by {}", by.name()),
                    _ => String::new(),
                };
                format!(
                    "{} by {mutant}: {} [{}]{with} ({}, between {} and {})",
                    edit.word(),
                    statement.code,
                    op.name(),
                    statement.function,
                    name(after, "the start"),
                    name(before, "the end")
                )
            }
            Change::Elsewhere { mutant, step, what } => format!("edited by {mutant}: {step} — {what}"),
            Change::Switch { mutant, file, switch, lines } => {
                let lines: Vec<String> = lines.iter().map(usize::to_string).collect();
                format!("compiled with {switch} by {mutant}: {file} line {}", lines.join(", "))
            }
        }
    }
}

/// What `mutants` change in `protocol`, mutant by mutant (each compared with the unmutated
/// program alone), in the order given.
pub fn changes(protocol: Protocol, mutants: &[Mutant]) -> Vec<Change> {
    let mut out = Vec::new();
    for &m in mutants {
        match m.edits() {
            Edits::Program => out.extend(program_changes(protocol, m)),
            other => out.push(elsewhere(m, other)),
        }
    }
    out
}

fn elsewhere(mutant: Mutant, edits: Edits) -> Change {
    let facts = edits.facts();
    Change::Elsewhere { mutant, step: facts.step, what: facts.what }
}

/// The operations of the unmutated program that `mutant` removed, moved or replaced.
fn program_changes(protocol: Protocol, mutant: Mutant) -> Vec<Change> {
    let base = protocol.batch_program(&[], 0, 1, 1);
    let edited = protocol.batch_program(&[mutant], 0, 1, 1);
    let (kept_base, kept_edited) = common(&base, &edited);
    let added: Vec<Op> = (0..edited.len()).filter(|j| !kept_edited[*j]).map(|j| edited[j]).collect();
    let mut out = Vec::new();
    for (i, op) in base.iter().enumerate().filter(|(i, _)| !kept_base[*i]) {
        let after = (0..i).rev().find(|&k| kept_base[k]).map(|k| base[k]);
        let before = (i + 1..base.len()).find(|&k| kept_base[k]).map(|k| base[k]);
        let edit = if added.contains(op) {
            OpEdit::Moved
        } else {
            replacement(&base, &edited, &kept_base, &kept_edited, i).map_or(OpEdit::Removed, OpEdit::Replaced)
        };
        let statement = kernel::patcher(protocol, op);
        out.push(Change::Op { mutant, op: *op, edit, statement, after, before });
    }
    out
}

/// The added operation of `edited` that stands in the same gap between kept operations as the
/// dropped operation `i` of `base`, if there is one (the first of them).
fn replacement(base: &[Op], edited: &[Op], kept_base: &[bool], kept_edited: &[bool], i: usize) -> Option<Op> {
    // The gap's index: how many kept operations precede it, in either program.
    let gap = kept_base[..i].iter().filter(|k| **k).count();
    let mut seen = 0;
    for (j, op) in edited.iter().enumerate() {
        if kept_edited[j] {
            seen += 1;
        } else if seen == gap && !base.contains(op) {
            return Some(*op);
        }
    }
    None
}

/// A longest common subsequence of `a` and `b`: which operations of each it keeps.
fn common(a: &[Op], b: &[Op]) -> (Vec<bool>, Vec<bool>) {
    let (n, m) = (a.len(), b.len());
    let mut len = vec![vec![0usize; m + 1]; n + 1];
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[i][j] = if a[i] == b[j] { len[i + 1][j + 1] + 1 } else { len[i + 1][j].max(len[i][j + 1]) };
        }
    }
    let (mut ka, mut kb) = (vec![false; n], vec![false; m]);
    let (mut i, mut j) = (0, 0);
    while i < n && j < m {
        if a[i] == b[j] {
            (ka[i], kb[j]) = (true, true);
            (i, j) = (i + 1, j + 1);
        } else if len[i + 1][j] >= len[i][j + 1] {
            i += 1;
        } else {
            j += 1;
        }
    }
    (ka, kb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_sync_after_tail_removes_the_conditional_sync_between_the_tails_and_the_first_bytes() {
        for p in Protocol::ALL {
            let c = changes(p, &[Mutant::NoSyncAfterTail]);
            assert_eq!(c.len(), 1, "{p}: {c:?}");
            let Change::Op { op, edit, after, before, .. } = c[0] else { panic!("{p}: {c:?}") };
            assert_eq!((op, edit), (Op::SyncIfDoSync, OpEdit::Removed), "{p}");
            assert_eq!(after.map(|o| o.name()), Some("poke-tail"), "{p}");
            assert_eq!(before.map(|o| o.name()), Some("reset-do-sync"), "{p}");
            let text = c[0].describe();
            assert!(text.starts_with("removed by no-sync-after-tail: if ("), "{text}");
            assert!(text.contains("between poke-tail and reset-do-sync"), "{text}");
        }
    }

    #[test]
    fn every_program_mutant_changes_an_operation_and_every_other_names_its_step() {
        for p in Protocol::ALL {
            for m in Mutant::ALL.into_iter().filter(|m| m.applies_to(p)) {
                let c = changes(p, &[m]);
                assert!(!c.is_empty(), "{p} {m}");
                let program = matches!(m.edits(), Edits::Program);
                assert!(c.iter().all(|c| matches!(c, Change::Op { .. }) == program), "{p} {m}: {c:?}");
            }
        }
        let c = changes(Protocol::Linux56, &[Mutant::SkipRefsWait]);
        assert!(matches!(c[0], Change::Op { edit: OpEdit::Replaced(_), .. }), "{c:?}");
        let c = changes(Protocol::Seed, &[Mutant::TailBeforeInt3]);
        assert!(c.iter().all(|c| matches!(c, Change::Op { edit: OpEdit::Moved, .. })), "{c:?}");
    }
}
