//! Patcher programs spelled out operation by operation (DESIGN.md §2.6: "Scenario files may
//! also spell out a custom patcher program, so a user can test a protocol idea without
//! writing Rust"). A template is the sequence of operations of one batch; per-entry
//! operations (`poke-int3`, `batch-add`, …) expand over the batch's entries and per-CPU ones
//! (`set-refs`, `dec-refs`) over the vCPUs. The handler is the one of the scenario's protocol
//! version.
//!
//! [`Op`] is one concrete operation of a run (which batch, entry or vCPU); [`OpTemplate`] is
//! its step in a program. Every operation's name is its template step's name: one name table.

use crate::error::Subject;
use crate::SimError;

/// One patcher operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Op {
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

impl Op {
    /// Its name in traces, reports and scenario files: the name of its [`OpTemplate`] (the one
    /// name table of the INT3 protocol's steps), or, for the operations of other patching
    /// clients that no template spells out, their own.
    pub fn name(&self) -> &'static str {
        match self {
            Op::PokePlain(_) => "text-poke",
            Op::LockTextMutex => "lock-text-mutex",
            Op::UnlockTextMutex => "unlock-text-mutex",
            Op::RegisterKprobe(_) => "register-kprobe",
            Op::ArmKprobe(_) => "arm-kprobe",
            Op::DisarmKprobe(_) => "disarm-kprobe",
            Op::UnregisterKprobe(_) => "unregister-kprobe",
            Op::SynchronizeRcu => "synchronize-rcu",
            other => OpTemplate::of(other).map_or("?", OpTemplate::name),
        }
    }
}

/// One step of a program template.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpTemplate {
    /// [`Op::BeginBatch`].
    BeginBatch,
    /// [`Op::SetVec`].
    SetVec,
    /// [`Op::SetNr`].
    SetNr,
    /// [`Op::PublishDesc`].
    PublishDesc,
    /// [`Op::AddEntry`] for every entry.
    BatchAdd,
    /// [`Op::SetRefs`] for every vCPU.
    SetRefs,
    /// [`Op::SetGlobalRefs`].
    SetGlobalRefs,
    /// [`Op::Wmb`].
    Wmb,
    /// [`Op::PokeInt3`] for every entry.
    PokeInt3,
    /// [`Op::PokeTail`] for every entry.
    PokeTail,
    /// [`Op::PokeFirst`] for every entry.
    PokeFirst,
    /// [`Op::PokeFirstAlways`] for every entry.
    PokeFirstAlways,
    /// [`Op::PokeWhole`] for every entry.
    PokeWhole,
    /// [`Op::ResetDoSync`].
    ResetDoSync,
    /// [`Op::Sync`].
    Sync,
    /// [`Op::SyncIfDoSync`].
    SyncIfDoSync,
    /// [`Op::ClearVec`].
    ClearVec,
    /// [`Op::ClearNr`].
    ClearNr,
    /// [`Op::ClearDesc`].
    ClearDesc,
    /// [`Op::PutDesc`] with the wait.
    PutDesc,
    /// [`Op::PutDesc`] without the wait.
    PutDescNoWait,
    /// [`Op::DecRefs`] for every vCPU, with the wait.
    DecRefs,
    /// [`Op::DecRefs`] for every vCPU, without the wait.
    DecRefsNoWait,
    /// [`Op::DecGlobalRefs`] with the wait.
    DecGlobalRefs,
    /// [`Op::DecGlobalRefs`] without the wait.
    DecGlobalRefsNoWait,
    /// [`Op::EndBatch`].
    EndBatch,
}

impl OpTemplate {
    /// Every template operation.
    pub const ALL: [OpTemplate; 26] = [
        OpTemplate::BeginBatch,
        OpTemplate::SetVec,
        OpTemplate::SetNr,
        OpTemplate::PublishDesc,
        OpTemplate::BatchAdd,
        OpTemplate::SetRefs,
        OpTemplate::SetGlobalRefs,
        OpTemplate::Wmb,
        OpTemplate::PokeInt3,
        OpTemplate::PokeTail,
        OpTemplate::PokeFirst,
        OpTemplate::PokeFirstAlways,
        OpTemplate::PokeWhole,
        OpTemplate::ResetDoSync,
        OpTemplate::Sync,
        OpTemplate::SyncIfDoSync,
        OpTemplate::ClearVec,
        OpTemplate::ClearNr,
        OpTemplate::ClearDesc,
        OpTemplate::PutDesc,
        OpTemplate::PutDescNoWait,
        OpTemplate::DecRefs,
        OpTemplate::DecRefsNoWait,
        OpTemplate::DecGlobalRefs,
        OpTemplate::DecGlobalRefsNoWait,
        OpTemplate::EndBatch,
    ];

    /// The name used in scenario files.
    pub fn name(self) -> &'static str {
        match self {
            OpTemplate::BeginBatch => "begin-batch",
            OpTemplate::SetVec => "set-vec",
            OpTemplate::SetNr => "set-nr",
            OpTemplate::PublishDesc => "publish-desc",
            OpTemplate::BatchAdd => "batch-add",
            OpTemplate::SetRefs => "set-refs",
            OpTemplate::SetGlobalRefs => "set-global-refs",
            OpTemplate::Wmb => "wmb",
            OpTemplate::PokeInt3 => "poke-int3",
            OpTemplate::PokeTail => "poke-tail",
            OpTemplate::PokeFirst => "poke-first",
            OpTemplate::PokeFirstAlways => "poke-first-always",
            OpTemplate::PokeWhole => "poke-whole",
            OpTemplate::ResetDoSync => "reset-do-sync",
            OpTemplate::Sync => "sync",
            OpTemplate::SyncIfDoSync => "sync-if-do-sync",
            OpTemplate::ClearVec => "clear-vec",
            OpTemplate::ClearNr => "clear-nr",
            OpTemplate::ClearDesc => "clear-desc",
            OpTemplate::PutDesc => "put-desc",
            OpTemplate::PutDescNoWait => "put-desc-nowait",
            OpTemplate::DecRefs => "dec-refs",
            OpTemplate::DecRefsNoWait => "dec-refs-nowait",
            OpTemplate::DecGlobalRefs => "dec-global-refs",
            OpTemplate::DecGlobalRefsNoWait => "dec-global-refs-nowait",
            OpTemplate::EndBatch => "end-batch",
        }
    }

    /// The template step an operation belongs to; `None` for a plain `text_poke()`
    /// ([`Op::PokePlain`]), `text_mutex` and the kprobe operations, which are not steps of
    /// the INT3 protocol.
    pub fn of(op: &Op) -> Option<OpTemplate> {
        Some(match *op {
            Op::BeginBatch(_) => OpTemplate::BeginBatch,
            Op::SetVec(_) => OpTemplate::SetVec,
            Op::SetNr(_) => OpTemplate::SetNr,
            Op::PublishDesc(_) => OpTemplate::PublishDesc,
            Op::AddEntry { .. } => OpTemplate::BatchAdd,
            Op::SetRefs(_) => OpTemplate::SetRefs,
            Op::SetGlobalRefs => OpTemplate::SetGlobalRefs,
            Op::DecGlobalRefs { wait: true } => OpTemplate::DecGlobalRefs,
            Op::DecGlobalRefs { wait: false } => OpTemplate::DecGlobalRefsNoWait,
            Op::Wmb => OpTemplate::Wmb,
            Op::PokeInt3 { .. } => OpTemplate::PokeInt3,
            Op::PokeTail { .. } => OpTemplate::PokeTail,
            Op::PokeFirst { .. } => OpTemplate::PokeFirst,
            Op::PokeFirstAlways { .. } => OpTemplate::PokeFirstAlways,
            Op::PokeWhole { .. } => OpTemplate::PokeWhole,
            Op::PokePlain(_)
            | Op::LockTextMutex
            | Op::UnlockTextMutex
            | Op::RegisterKprobe(_)
            | Op::ArmKprobe(_)
            | Op::DisarmKprobe(_)
            | Op::UnregisterKprobe(_)
            | Op::SynchronizeRcu => return None,
            Op::ResetDoSync => OpTemplate::ResetDoSync,
            Op::Sync => OpTemplate::Sync,
            Op::SyncIfDoSync => OpTemplate::SyncIfDoSync,
            Op::ClearVec => OpTemplate::ClearVec,
            Op::ClearNr => OpTemplate::ClearNr,
            Op::ClearDesc => OpTemplate::ClearDesc,
            Op::PutDesc { wait: true, .. } => OpTemplate::PutDesc,
            Op::PutDesc { wait: false, .. } => OpTemplate::PutDescNoWait,
            Op::DecRefs { wait: true, .. } => OpTemplate::DecRefs,
            Op::DecRefs { wait: false, .. } => OpTemplate::DecRefsNoWait,
            Op::EndBatch(_) => OpTemplate::EndBatch,
        })
    }

    fn expand(self, batch: usize, n: usize, cpus: usize, out: &mut Vec<Op>) {
        let per_entry = |f: fn(usize, usize) -> Op, out: &mut Vec<Op>| out.extend((0..n).map(|e| f(batch, e)));
        match self {
            OpTemplate::BeginBatch => out.push(Op::BeginBatch(batch)),
            OpTemplate::SetVec => out.push(Op::SetVec(batch)),
            OpTemplate::SetNr => out.push(Op::SetNr(batch)),
            OpTemplate::PublishDesc => out.push(Op::PublishDesc(batch)),
            OpTemplate::BatchAdd => per_entry(|batch, entry| Op::AddEntry { batch, entry }, out),
            OpTemplate::SetRefs => out.extend((0..cpus).map(Op::SetRefs)),
            OpTemplate::SetGlobalRefs => out.push(Op::SetGlobalRefs),
            OpTemplate::Wmb => out.push(Op::Wmb),
            OpTemplate::PokeInt3 => per_entry(|batch, entry| Op::PokeInt3 { batch, entry }, out),
            OpTemplate::PokeTail => per_entry(|batch, entry| Op::PokeTail { batch, entry }, out),
            OpTemplate::PokeFirst => per_entry(|batch, entry| Op::PokeFirst { batch, entry }, out),
            OpTemplate::PokeFirstAlways => per_entry(|batch, entry| Op::PokeFirstAlways { batch, entry }, out),
            OpTemplate::PokeWhole => per_entry(|batch, entry| Op::PokeWhole { batch, entry }, out),
            OpTemplate::ResetDoSync => out.push(Op::ResetDoSync),
            OpTemplate::Sync => out.push(Op::Sync),
            OpTemplate::SyncIfDoSync => out.push(Op::SyncIfDoSync),
            OpTemplate::ClearVec => out.push(Op::ClearVec),
            OpTemplate::ClearNr => out.push(Op::ClearNr),
            OpTemplate::ClearDesc => out.push(Op::ClearDesc),
            OpTemplate::PutDesc => out.push(Op::PutDesc { batch, wait: true }),
            OpTemplate::PutDescNoWait => out.push(Op::PutDesc { batch, wait: false }),
            OpTemplate::DecRefs => out.extend((0..cpus).map(|cpu| Op::DecRefs { cpu, wait: true })),
            OpTemplate::DecRefsNoWait => out.extend((0..cpus).map(|cpu| Op::DecRefs { cpu, wait: false })),
            OpTemplate::DecGlobalRefs => out.push(Op::DecGlobalRefs { wait: true }),
            OpTemplate::DecGlobalRefsNoWait => out.push(Op::DecGlobalRefs { wait: false }),
            OpTemplate::EndBatch => out.push(Op::EndBatch(batch)),
        }
    }
}

crate::named_set!(OpTemplate, "program operation");

/// Checks a template: it must end the batch exactly once, as its last operation, write the
/// new instruction somewhere (a program that never does patches nothing), and every reference
/// wait must have a matching set.
pub fn validate(template: &[OpTemplate]) -> Result<(), SimError> {
    let bad = |msg: String| Err(SimError::invalid(Subject::Program, msg));
    let ends = template.iter().filter(|o| **o == OpTemplate::EndBatch).count();
    if ends != 1 || template.last() != Some(&OpTemplate::EndBatch) {
        return bad("must end with 'end-batch', exactly once".into());
    }
    let writes = [OpTemplate::PokeFirst, OpTemplate::PokeFirstAlways, OpTemplate::PokeWhole];
    if !template.iter().any(|o| writes.contains(o)) {
        return bad("never writes the new instruction (no poke-first, poke-first-always or poke-whole): \
                    the program patches nothing"
            .into());
    }
    let pairs = [
        (&[OpTemplate::PutDesc, OpTemplate::PutDescNoWait][..], OpTemplate::BeginBatch, "put-desc needs begin-batch"),
        (&[OpTemplate::DecRefs, OpTemplate::DecRefsNoWait][..], OpTemplate::SetRefs, "dec-refs needs set-refs"),
        (
            &[OpTemplate::DecGlobalRefs, OpTemplate::DecGlobalRefsNoWait][..],
            OpTemplate::SetGlobalRefs,
            "dec-global-refs needs set-global-refs",
        ),
    ];
    for (uses, needs, msg) in pairs {
        if template.iter().any(|o| uses.contains(o)) && !template.contains(&needs) {
            return bad(msg.into());
        }
    }
    Ok(())
}

/// The template of a built-in program: one batch of it with one entry and one vCPU, each
/// operation named by its template step. `None` if the program has a plain `text_poke()`.
pub fn template_of(one_batch: &[Op]) -> Option<Vec<OpTemplate>> {
    one_batch.iter().map(OpTemplate::of).collect()
}

/// The operations of one batch from a template.
pub fn expand(template: &[OpTemplate], batch: usize, n: usize, cpus: usize) -> Vec<Op> {
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
        let t: Vec<OpTemplate> = names.split_whitespace().map(|n| n.parse().unwrap()).collect();
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

    #[test]
    fn templates_are_validated() {
        assert!(validate(&[OpTemplate::Sync]).is_err());
        assert!(validate(&[OpTemplate::DecRefs, OpTemplate::EndBatch]).is_err());
        let e = "poke-everything".parse::<OpTemplate>().unwrap_err().to_string();
        assert!(e.contains("valid: begin-batch"), "{e}");
    }
}
