//! Patcher programs spelled out operation by operation (DESIGN.md §2.6: "Scenario files may
//! also spell out a custom patcher program, so a user can test a protocol idea without
//! writing Rust"). A template is the sequence of operations of one batch; per-entry
//! operations (`poke-int3`, `batch-add`, …) expand over the batch's entries and per-CPU ones
//! (`set-refs`, `dec-refs`) over the vCPUs. The handler is the one of the scenario's protocol
//! version.
//!
//! [`Op`] is one concrete operation of a run (which batch, entry or vCPU) and the one name
//! table; a [`Step`] of a program is an operation as it appears in batch 0 with one entry on
//! one vCPU, which expanding renumbers and repeats.

use crate::error::Subject;
use crate::footprint::{Footprint, Shared};
use crate::SimError;

/// One patcher operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
    /// A patching client compiled from C is in its code (its position is a source line, not
    /// an operation of the model: [`crate::compiled::client::CClient::location`]).
    Compiled,
    /// The batch's array (5.x: the caller's `tp[]`; 5.6: the on-stack descriptor with
    /// `refs = ATOMIC_INIT(1)`) comes into existence; the bytes each entry will replace are
    /// recorded (for the emulation oracle and `emulate-old`).
    BeginBatch(usize),
    /// `bp_patching.vec = tp`.
    SetVec(usize),
    /// `bp_patching.nr_entries = nr_entries`.
    SetNr(usize),
    /// `smp_store_release(&bp_desc, &desc)` (5.6).
    PublishDesc(usize),
    /// `text_poke_array.vec[text_poke_array.nr_entries++] = …` (6.16 `smp_text_poke_batch_add`).
    AddEntry {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// `atomic_set_release(per_cpu_ptr(&text_poke_array_refs, cpu), 1)` (6.16).
    SetRefs(usize),
    /// `atomic_set_release(&bp_desc.refs, 1)` (6.0).
    SetGlobalRefs,
    /// `if (!atomic_dec_and_test(&bp_desc.refs)) atomic_cond_read_acquire(&bp_desc.refs, !VAL)` (6.0).
    DecGlobalRefs {
        /// Whether it waits for the count to drain (false: the `-nowait` edit).
        wait: bool,
    },
    /// `smp_wmb()` — a no-op under the sequentially consistent data model, kept as a step so
    /// that reorderings around it are expressible.
    Wmb,
    /// `text_poke(addr, &int3, 1)`.
    PokeInt3 {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// `if (len > 1) { text_poke(addr + 1, text + 1, len - 1); do_sync++; }`.
    PokeTail {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// `if (text[0] != INT3) { text_poke(addr, text, 1); do_sync++; }` (seed onwards).
    PokeFirst {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// `text_poke(addr, opcode, 1)` unconditionally (linux-5.4).
    PokeFirstAlways {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// `text_poke(addr, text, len)` — the whole instruction at once (mutant `no-int3`).
    PokeWhole {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// The entry of that batch.
        entry: usize,
    },
    /// A plain `text_poke()` outside the INT3 protocol (a workload's own kprobe arm/disarm),
    /// by index into the plan's plain-poke table.
    PokePlain(usize),
    /// `mutex_lock(&text_mutex)`: disabled while another patching client holds it.
    LockTextMutex,
    /// `mutex_unlock(&text_mutex)`.
    UnlockTextMutex,
    /// `register_kprobe()`: `prepare_kprobe()` copies the probed instruction as the text holds
    /// it now (`p->opcode` is its first byte), then `hlist_add_head_rcu(&p->hlist, ...)` — from
    /// now on `get_kprobe()` finds kprobe `k`.
    RegisterKprobe(usize),
    /// `arch_arm_kprobe()`: `text_poke(p->addr, &int3, 1)`.
    ArmKprobe(usize),
    /// `arch_disarm_kprobe()`: `text_poke(p->addr, &p->opcode, 1)`.
    DisarmKprobe(usize),
    /// `__unregister_kprobe_top()`: `hlist_del_rcu(&p->hlist)`.
    UnregisterKprobe(usize),
    /// `synchronize_rcu()` (`unregister_kprobes()`): waits until every INT3 handler running
    /// when it started has returned.
    SynchronizeRcu,
    /// `do_sync = 0`.
    ResetDoSync,
    /// `on_each_cpu(do_sync_core, NULL, 1)` / `text_poke_sync()`.
    Sync,
    /// `if (do_sync) on_each_cpu(do_sync_core, NULL, 1)`.
    SyncIfDoSync,
    /// `bp_patching.vec = NULL`.
    ClearVec,
    /// `bp_patching.nr_entries = 0` / `text_poke_array.nr_entries = 0`.
    ClearNr,
    /// `WRITE_ONCE(bp_desc, NULL)` (5.6).
    ClearDesc,
    /// `if (!atomic_dec_and_test(&desc.refs)) atomic_cond_read_acquire(&desc.refs, !VAL)` (5.6);
    /// without `wait` the patcher returns at once (mutant `skip-refs-wait`).
    PutDesc {
        /// The batch (patch array) it belongs to.
        batch: usize,
        /// Whether it waits for the count to drain (false: the `-nowait` edit).
        wait: bool,
    },
    /// `if (!atomic_dec_and_test(refs)) atomic_cond_read_acquire(refs, !VAL)` for one CPU (6.16).
    DecRefs {
        /// The vCPU whose reference it drops.
        cpu: usize,
        /// Whether it waits for the count to drain (false: the `-nowait` edit).
        wait: bool,
    },
    /// The batch call returns: a caller's array or on-stack descriptor is gone.
    EndBatch(usize),
}

/// The patcher's protocol phases: the bands of a trace's timeline, each a run of operations
/// of one kind in `text_poke_bp_batch()` / `smp_text_poke_batch_finish()` (publish the
/// patch data, write the INT3s, sync, write the tails, write the first bytes, tear down).
/// "Phase" means this and nothing else in pokesim.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum OpPhase {
    /// The patch data comes into existence and is published to the INT3 handler.
    Publish,
    /// `text_poke(addr, &int3, 1)` for each entry.
    WriteInt3,
    /// `text_poke_sync()`: an IPI to every CPU and the wait for its acknowledgement.
    Sync,
    /// Each entry's bytes after the first.
    WriteTails,
    /// Each entry's first byte.
    WriteFirstBytes,
    /// A whole instruction in one store (mutant `no-int3`, or a plain `text_poke()`).
    WriteWhole,
    /// The patch data withdrawn, the references drained, the batch call returning.
    Teardown,
    /// What the other patching clients do: `text_mutex`, a kprobe's life, `synchronize_rcu()`.
    Other,
}

impl OpPhase {
    /// Every phase.
    pub const ALL: [OpPhase; 8] = [
        OpPhase::Publish,
        OpPhase::WriteInt3,
        OpPhase::Sync,
        OpPhase::WriteTails,
        OpPhase::WriteFirstBytes,
        OpPhase::WriteWhole,
        OpPhase::Teardown,
        OpPhase::Other,
    ];

    /// Its label on the timeline's bands and in Perfetto's slices.
    pub fn name(self) -> &'static str {
        match self {
            OpPhase::Publish => "publish",
            OpPhase::WriteInt3 => "write INT3",
            OpPhase::Sync => "sync",
            OpPhase::WriteTails => "write tails",
            OpPhase::WriteFirstBytes => "write first bytes",
            OpPhase::WriteWhole => "write whole",
            OpPhase::Teardown => "teardown",
            OpPhase::Other => "other",
        }
    }
}

impl std::fmt::Display for OpPhase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(self.name())
    }
}

/// The operations outside the INT3 protocol: a plain `text_poke()`, `text_mutex`, a kprobe's
/// life and `synchronize_rcu()` — what other patching clients do (unnumbered).
const OUTSIDE_INT3_PROTOCOL: [Op; 9] = [
    Op::Compiled,
    Op::PokePlain(0),
    Op::LockTextMutex,
    Op::UnlockTextMutex,
    Op::RegisterKprobe(0),
    Op::ArmKprobe(0),
    Op::DisarmKprobe(0),
    Op::UnregisterKprobe(0),
    Op::SynchronizeRcu,
];

impl Op {
    /// The one table of patcher operations: each one's name (in traces, reports and scenario
    /// files; a program template's steps are operations too: [`Step`]) and the protocol phase
    /// it belongs to (`None`: bookkeeping — `smp_wmb()`, `do_sync = 0` — that joins the phase
    /// it prepares).
    fn facts(&self) -> (&'static str, Option<OpPhase>, Footprint) {
        use OpPhase::*;
        use Shared as S;
        let (r, w, rw) = (Footprint::reading, Footprint::writing, |s: Shared| Footprint::new(s, s));
        // A poke reads its entry and writes the text.
        let poke = Footprint::new(S::ARRAYS, S::TEXT);
        let (name, phase, footprint) = match self {
            Op::Compiled => return ("c", None, Footprint::ALL),
            Op::BeginBatch(_) => ("begin-batch", Publish, w(S::ARRAYS.or(S::REFS))),
            Op::SetVec(_) => ("set-vec", Publish, w(S::VEC)),
            Op::SetNr(_) => ("set-nr", Publish, Footprint::new(S::ARRAYS, S::NR_ENTRIES)),
            Op::PublishDesc(_) => ("publish-desc", Publish, w(S::VEC)),
            Op::AddEntry { .. } => ("batch-add", Publish, Footprint::new(S::NR_ENTRIES, S::NR_ENTRIES.or(S::ARRAYS))),
            Op::SetRefs(_) => ("set-refs", Publish, w(S::PERCPU_REFS)),
            Op::SetGlobalRefs => ("set-global-refs", Publish, w(S::REFS)),
            Op::DecGlobalRefs { wait: true } => ("dec-global-refs", Teardown, rw(S::REFS)),
            Op::DecGlobalRefs { wait: false } => ("dec-global-refs-nowait", Teardown, rw(S::REFS)),
            Op::Wmb => return ("wmb", None, Footprint::NONE),
            Op::PokeInt3 { .. } => ("poke-int3", WriteInt3, poke),
            Op::PokeTail { .. } => ("poke-tail", WriteTails, poke),
            Op::PokeFirst { .. } => ("poke-first", WriteFirstBytes, poke),
            Op::PokeFirstAlways { .. } => ("poke-first-always", WriteFirstBytes, poke),
            Op::PokeWhole { .. } => ("poke-whole", WriteWhole, poke),
            Op::PokePlain(_) => ("text-poke", WriteWhole, w(S::TEXT)),
            Op::LockTextMutex => ("lock-text-mutex", Other, rw(S::TEXT_MUTEX)),
            Op::UnlockTextMutex => ("unlock-text-mutex", Other, rw(S::TEXT_MUTEX)),
            Op::RegisterKprobe(_) => ("register-kprobe", Other, Footprint::new(S::TEXT.or(S::KPROBES), S::KPROBES)),
            Op::ArmKprobe(_) => ("arm-kprobe", Other, Footprint::new(S::KPROBES, S::KPROBES.or(S::TEXT))),
            Op::DisarmKprobe(_) => ("disarm-kprobe", Other, Footprint::new(S::KPROBES, S::KPROBES.or(S::TEXT))),
            Op::UnregisterKprobe(_) => ("unregister-kprobe", Other, w(S::KPROBES)),
            Op::SynchronizeRcu => ("synchronize-rcu", Other, r(S::RCU)),
            Op::ResetDoSync => return ("reset-do-sync", None, Footprint::NONE),
            Op::Sync => ("sync", Sync, rw(S::IPI)),
            Op::SyncIfDoSync => ("sync-if-do-sync", Sync, rw(S::IPI)),
            Op::ClearVec => ("clear-vec", Teardown, w(S::VEC)),
            Op::ClearNr => ("clear-nr", Teardown, w(S::NR_ENTRIES)),
            Op::ClearDesc => ("clear-desc", Teardown, w(S::VEC)),
            Op::PutDesc { wait: true, .. } => ("put-desc", Teardown, Footprint::new(S::ARRAYS.or(S::REFS), S::REFS)),
            Op::PutDesc { wait: false, .. } => {
                ("put-desc-nowait", Teardown, Footprint::new(S::ARRAYS.or(S::REFS), S::REFS))
            }
            Op::DecRefs { wait: true, .. } => ("dec-refs", Teardown, rw(S::PERCPU_REFS)),
            Op::DecRefs { wait: false, .. } => ("dec-refs-nowait", Teardown, rw(S::PERCPU_REFS)),
            Op::EndBatch(_) => ("end-batch", Teardown, w(S::ARRAYS)),
        };
        (name, Some(phase), footprint)
    }

    /// What it reads and writes of the memory the actors share (the one table's column; a
    /// poke's stores write the text; a sync's wait reads the acknowledgements).
    pub(crate) fn footprint(&self) -> Footprint {
        self.facts().2
    }

    /// Its name in traces, reports and scenario files (from the one table of operations, with
    /// its phase).
    pub fn name(&self) -> &'static str {
        self.facts().0
    }

    /// The protocol phase it belongs to — the bands of a trace's timeline — or `None` for
    /// bookkeeping (`smp_wmb()`, `do_sync = 0`) that joins the phase it prepares.
    pub fn phase(&self) -> Option<OpPhase> {
        self.facts().1
    }

    /// The operation as its name identifies it: batch, entry, vCPU, kprobe and plain-poke
    /// indices set to 0 (what a report's words keep of it).
    pub(crate) fn unnumbered(self) -> Op {
        match self {
            Op::BeginBatch(_) => Op::BeginBatch(0),
            Op::SetVec(_) => Op::SetVec(0),
            Op::SetNr(_) => Op::SetNr(0),
            Op::PublishDesc(_) => Op::PublishDesc(0),
            Op::AddEntry { .. } => Op::AddEntry { batch: 0, entry: 0 },
            Op::SetRefs(_) => Op::SetRefs(0),
            Op::PokeInt3 { .. } => Op::PokeInt3 { batch: 0, entry: 0 },
            Op::PokeTail { .. } => Op::PokeTail { batch: 0, entry: 0 },
            Op::PokeFirst { .. } => Op::PokeFirst { batch: 0, entry: 0 },
            Op::PokeFirstAlways { .. } => Op::PokeFirstAlways { batch: 0, entry: 0 },
            Op::PokeWhole { .. } => Op::PokeWhole { batch: 0, entry: 0 },
            Op::PokePlain(_) => Op::PokePlain(0),
            Op::RegisterKprobe(_) => Op::RegisterKprobe(0),
            Op::ArmKprobe(_) => Op::ArmKprobe(0),
            Op::DisarmKprobe(_) => Op::DisarmKprobe(0),
            Op::UnregisterKprobe(_) => Op::UnregisterKprobe(0),
            Op::PutDesc { wait, .. } => Op::PutDesc { batch: 0, wait },
            Op::DecRefs { wait, .. } => Op::DecRefs { cpu: 0, wait },
            Op::EndBatch(_) => Op::EndBatch(0),
            other => other,
        }
    }

    /// The unnumbered operation ([`Op::unnumbered`]) named `name`, if any.
    pub(crate) fn from_name(name: &str) -> Option<Op> {
        let steps = Step::ALL.into_iter().map(Step::op);
        steps.chain(OUTSIDE_INT3_PROTOCOL).find(|op| op.name() == name)
    }

    /// The template step this operation is: itself for batch 0, entry 0 and vCPU 0. `None`
    /// for the operations no template holds — a plain `text_poke()`, `text_mutex` and the
    /// kprobe operations, which belong to other patching clients.
    pub fn step(&self) -> Option<Step> {
        (!self.outside_int3_protocol()).then(|| Step(self.unnumbered()))
    }

    /// True for the operations outside the INT3 protocol: a plain `text_poke()`, `text_mutex`,
    /// a kprobe's life and `synchronize_rcu()` — what other patching clients do.
    pub(crate) fn outside_int3_protocol(&self) -> bool {
        OUTSIDE_INT3_PROTOCOL.contains(&self.unnumbered())
    }
}

/// One step of a program template: an operation as it appears in batch 0 with one entry on
/// one vCPU. Expanding a template renumbers it for a batch, and repeats a per-entry step for
/// every entry and a per-CPU step for every vCPU. Its name is its operation's.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Step(Op);

impl Step {
    /// Every template step.
    pub const ALL: [Step; 26] = [
        Step(Op::BeginBatch(0)),
        Step(Op::SetVec(0)),
        Step(Op::SetNr(0)),
        Step(Op::PublishDesc(0)),
        Step(Op::AddEntry { batch: 0, entry: 0 }),
        Step(Op::SetRefs(0)),
        Step(Op::SetGlobalRefs),
        Step(Op::Wmb),
        Step(Op::PokeInt3 { batch: 0, entry: 0 }),
        Step(Op::PokeTail { batch: 0, entry: 0 }),
        Step(Op::PokeFirst { batch: 0, entry: 0 }),
        Step(Op::PokeFirstAlways { batch: 0, entry: 0 }),
        Step(Op::PokeWhole { batch: 0, entry: 0 }),
        Step(Op::ResetDoSync),
        Step(Op::Sync),
        Step(Op::SyncIfDoSync),
        Step(Op::ClearVec),
        Step(Op::ClearNr),
        Step(Op::ClearDesc),
        Step(Op::PutDesc { batch: 0, wait: true }),
        Step(Op::PutDesc { batch: 0, wait: false }),
        Step(Op::DecRefs { cpu: 0, wait: true }),
        Step(Op::DecRefs { cpu: 0, wait: false }),
        Step(Op::DecGlobalRefs { wait: true }),
        Step(Op::DecGlobalRefs { wait: false }),
        Step(Op::EndBatch(0)),
    ];

    /// The name used in scenario files (its operation's).
    pub fn name(self) -> &'static str {
        self.0.name()
    }

    /// The step's operation, as in batch 0.
    pub fn op(self) -> Op {
        self.0
    }

    fn expand(self, batch: usize, n: usize, cpus: usize, out: &mut Vec<Op>) {
        match self.0 {
            Op::BeginBatch(_) => out.push(Op::BeginBatch(batch)),
            Op::SetVec(_) => out.push(Op::SetVec(batch)),
            Op::SetNr(_) => out.push(Op::SetNr(batch)),
            Op::PublishDesc(_) => out.push(Op::PublishDesc(batch)),
            Op::EndBatch(_) => out.push(Op::EndBatch(batch)),
            Op::PutDesc { wait, .. } => out.push(Op::PutDesc { batch, wait }),
            Op::AddEntry { .. } => out.extend((0..n).map(|entry| Op::AddEntry { batch, entry })),
            Op::PokeInt3 { .. } => out.extend((0..n).map(|entry| Op::PokeInt3 { batch, entry })),
            Op::PokeTail { .. } => out.extend((0..n).map(|entry| Op::PokeTail { batch, entry })),
            Op::PokeFirst { .. } => out.extend((0..n).map(|entry| Op::PokeFirst { batch, entry })),
            Op::PokeFirstAlways { .. } => out.extend((0..n).map(|entry| Op::PokeFirstAlways { batch, entry })),
            Op::PokeWhole { .. } => out.extend((0..n).map(|entry| Op::PokeWhole { batch, entry })),
            Op::SetRefs(_) => out.extend((0..cpus).map(Op::SetRefs)),
            Op::DecRefs { wait, .. } => out.extend((0..cpus).map(|cpu| Op::DecRefs { cpu, wait })),
            other => out.push(other),
        }
    }
}

crate::named_set!(Step, "program operation");

/// Checks a template: it must end the batch exactly once, as its last operation, write the
/// new instruction somewhere (a program that never does patches nothing), and every reference
/// wait must have a matching set.
pub fn validate(template: &[Step]) -> Result<(), SimError> {
    let bad = |msg: String| Err(SimError::invalid(Subject::Program, msg));
    let has = |name: &str| template.iter().any(|s| s.name() == name);
    let ends = template.iter().filter(|s| s.name() == "end-batch").count();
    if ends != 1 || template.last().map(|s| s.name()) != Some("end-batch") {
        return bad("must end with 'end-batch', exactly once".into());
    }
    if !["poke-first", "poke-first-always", "poke-whole"].into_iter().any(has) {
        return bad("never writes the new instruction (no poke-first, poke-first-always or poke-whole): \
                    the program patches nothing"
            .into());
    }
    let pairs = [("put-desc", "begin-batch"), ("dec-refs", "set-refs"), ("dec-global-refs", "set-global-refs")];
    for (uses, needs) in pairs {
        if (has(uses) || has(&format!("{uses}-nowait"))) && !has(needs) {
            return bad(format!("{uses} needs {needs}"));
        }
    }
    Ok(())
}

/// The template of a built-in program: one batch of it with one entry and one vCPU, each
/// operation named by its template step. `None` if the program has a plain `text_poke()`.
pub(crate) fn template_of(one_batch: &[Op]) -> Option<Vec<Step>> {
    one_batch.iter().map(Op::step).collect()
}

/// The operations of one batch from a template.
pub fn expand(template: &[Step], batch: usize, n: usize, cpus: usize) -> Vec<Op> {
    let mut out = Vec::new();
    for t in template {
        t.expand(batch, n, cpus, &mut out);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Mutant, Protocol};

    #[test]
    fn the_seed_spelled_out_equals_the_seed() {
        let names = "begin-batch set-vec set-nr wmb poke-int3 sync reset-do-sync poke-tail sync-if-do-sync \
                     reset-do-sync poke-first sync-if-do-sync clear-vec clear-nr end-batch";
        let t: Vec<Step> = names.split_whitespace().map(|n| n.parse().unwrap()).collect();
        validate(&t).unwrap();
        assert_eq!(expand(&t, 3, 2, 4), Protocol::Seed.batch_program(&[], 3, 2, 4));
    }

    /// Every built-in program, with each mutant that edits it, is its own template expanded:
    /// `pokesim program` prints something a scenario can run as the same operations.
    #[test]
    fn every_builtin_program_is_its_template_expanded() {
        for p in Protocol::ALL {
            let mut sets = vec![vec![]];
            sets.extend(Mutant::ALL.into_iter().filter(|m| m.applies_to(p)).map(|m| vec![m]));
            for mutants in sets {
                let Ok(t) = p.program_template(&mutants) else {
                    assert_eq!(mutants.len(), 1, "{p}: the unmutated program is a template");
                    continue;
                };
                validate(&t).unwrap_or_else(|e| panic!("{p} {mutants:?}: {e}"));
                for (batch, n, cpus) in [(0, 1, 1), (0, 3, 2), (2, 2, 4), (1, 5, 3)] {
                    assert_eq!(
                        expand(&t, batch, n, cpus),
                        p.batch_program(&mutants, batch, n, cpus),
                        "{p} {mutants:?}"
                    );
                }
            }
        }
        let refused = Protocol::Linux55.program_template(&[Mutant::DetourHandler]).unwrap_err().to_string();
        assert!(refused.contains("edits the INT3 handler"), "{refused}");
    }

    /// Every operation is named once, and its name reads back as it unnumbered.
    #[test]
    fn every_operation_reads_back_from_its_name() {
        let all: Vec<Op> = Step::ALL.into_iter().map(Step::op).chain(OUTSIDE_INT3_PROTOCOL).collect();
        for op in &all {
            assert_eq!(Op::from_name(op.name()), Some(*op), "{op:?}");
            assert_eq!(all.iter().filter(|o| o.name() == op.name()).count(), 1, "{op:?}");
        }
        let plain = Op::PokeTail { batch: 3, entry: 2 };
        assert_eq!(Op::from_name(plain.name()), Some(plain.unnumbered()));
        assert_eq!(Op::ArmKprobe(2).phase(), Some(OpPhase::Other));
        assert_eq!(Op::Wmb.phase(), None);
        assert_eq!(OpPhase::WriteInt3.name(), "write INT3");
    }

    #[test]
    fn templates_are_validated() {
        assert!(validate(&[Step(Op::Sync)]).is_err());
        assert!(validate(&[Step(Op::DecRefs { cpu: 0, wait: true }), Step(Op::EndBatch(0))]).is_err());
        let e = "poke-everything".parse::<Step>().unwrap_err().to_string();
        assert!(e.contains("valid: begin-batch"), "{e}");
    }
}
