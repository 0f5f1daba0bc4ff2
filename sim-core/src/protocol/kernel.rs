//! The kernel source each patcher operation and handler micro-step mirrors, per version: the
//! function and the C statement, as `arch/x86/kernel/alternative.c` of that version writes it
//! (reference/kernel-protocol.md §1). Traces show it next to every event, and
//! `pokesim kernel --protocol P` prints the table.

use super::{HandlerKind, HandlerPc, Protocol};
use crate::program::Op;

/// A place in the kernel source.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Statement {
    /// The function.
    pub function: &'static str,
    /// The statement (abridged where the kernel's is long).
    pub code: &'static str,
}

impl std::fmt::Display for Statement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.function, self.code)
    }
}

/// What the patcher operation `op` mirrors in version `p`.
pub fn patcher(p: Protocol, op: &Op) -> Statement {
    let function = p.version().names.batch_function;
    let s = |code: &'static str| Statement { function, code };
    match op {
        Op::BeginBatch(_)
        | Op::SetVec(_)
        | Op::SetNr(_)
        | Op::PublishDesc(_)
        | Op::AddEntry { .. }
        | Op::SetRefs(_)
        | Op::SetGlobalRefs
        | Op::Wmb => publication(p, op, s),
        Op::PokeInt3 { .. }
        | Op::PokeTail { .. }
        | Op::PokeFirst { .. }
        | Op::PokeFirstAlways { .. }
        | Op::PokeWhole { .. }
        | Op::PokePlain(_) => poke(p, op, s),
        Op::ResetDoSync | Op::Sync | Op::SyncIfDoSync => sync(p, op, s),
        Op::ClearVec
        | Op::ClearNr
        | Op::ClearDesc
        | Op::PutDesc { .. }
        | Op::DecRefs { .. }
        | Op::DecGlobalRefs { .. }
        | Op::EndBatch(_) => teardown(p, op, s),
        Op::LockTextMutex
        | Op::UnlockTextMutex
        | Op::RegisterKprobe(_)
        | Op::ArmKprobe(_)
        | Op::DisarmKprobe(_)
        | Op::SynchronizeRcu
        | Op::UnregisterKprobe(_) => kprobe(op),
        Op::Compiled => s("/* compiled from C: the trace names the source line */"),
    }
}

/// The patching state's set-up: the vector, its count, the descriptor or the refs.
fn publication(p: Protocol, op: &Op, s: impl Fn(&'static str) -> Statement) -> Statement {
    match op {
        Op::BeginBatch(_) => s(match p {
            Protocol::Linux56 => {
                "struct bp_patching_desc desc = { .vec = tp, .nr_entries = nr_entries, .refs = ATOMIC_INIT(1) };"
            }
            Protocol::Linux616 => "if (!text_poke_array.nr_entries) return;",
            _ => "/* tp[] = the caller's sorted vector */",
        }),
        Op::SetVec(_) if p == Protocol::Linux60 => s("bp_desc.vec = tp;"),
        Op::SetVec(_) => s("bp_patching.vec = tp;"),
        Op::SetNr(_) if p == Protocol::Linux60 => s("bp_desc.nr_entries = nr_entries;"),
        Op::SetNr(_) => s("bp_patching.nr_entries = nr_entries;"),
        Op::PublishDesc(_) => s("smp_store_release(&bp_desc, &desc);"),
        Op::AddEntry { .. } => Statement {
            function: "__smp_text_poke_batch_add()",
            code: "tpl = &text_poke_array.vec[text_poke_array.nr_entries++]; /* addr, len, opcode, disp */",
        },
        Op::SetRefs(_) => s("atomic_set_release(per_cpu_ptr(&text_poke_array_refs, i), 1);"),
        Op::SetGlobalRefs => s("atomic_set_release(&bp_desc.refs, 1);"),
        _ => s("smp_wmb();"),
    }
}

/// The text writes.
fn poke(p: Protocol, op: &Op, s: impl Fn(&'static str) -> Statement) -> Statement {
    match op {
        Op::PokeInt3 { .. } => s("text_poke(text_poke_addr(&tp[i]), &int3, INT3_INSN_SIZE);"),
        Op::PokeTail { .. } if p == Protocol::Linux616 => {
            s("if (len - INT3_INSN_SIZE > 0) { memcpy(old + INT3_INSN_SIZE, ...); text_poke(addr + 1, new + 1, len - 1); do_sync++; }")
        }
        Op::PokeTail { .. } => s("if (len - INT3_INSN_SIZE > 0) { text_poke(addr + INT3_INSN_SIZE, tp[i].text + INT3_INSN_SIZE, len - INT3_INSN_SIZE); do_sync++; }"),
        Op::PokeFirst { .. } => s("byte = tp[i].text[0]; if (byte == INT3_INSN_OPCODE) continue; text_poke(text_poke_addr(&tp[i]), &byte, INT3_INSN_SIZE); do_sync++;"),
        Op::PokeFirstAlways { .. } => s("text_poke((void *)tp[i].addr, tp[i].opcode, sizeof(int3));"),
        Op::PokeWhole { .. } => s("text_poke(addr, opcode, len); /* the whole instruction, no INT3 step (mutant) */"),
        _ => Statement { function: "text_poke()", code: "text_poke(addr, opcode, len); /* arm/disarm, outside the INT3 protocol */" },
    }
}

/// The syncs and their `do_sync` counter.
fn sync(p: Protocol, op: &Op, s: impl Fn(&'static str) -> Statement) -> Statement {
    match op {
        Op::ResetDoSync => s("do_sync = 0;"),
        Op::Sync => s(p.version().names.sync_code),
        _ => s(match p {
            Protocol::Linux54 => "if (patched_all_but_first) on_each_cpu(do_sync_core, NULL, 1);",
            Protocol::Seed => "if (do_sync) on_each_cpu(do_sync_core, NULL, 1);",
            Protocol::Linux616 => "if (do_sync) smp_text_poke_sync_each_cpu();",
            _ => "if (do_sync) text_poke_sync();",
        }),
    }
}

/// The patching state's tear-down: the fields cleared, the references awaited, the return.
fn teardown(p: Protocol, op: &Op, s: impl Fn(&'static str) -> Statement) -> Statement {
    match op {
        Op::ClearVec => s("bp_patching.vec = NULL;"),
        Op::ClearNr if p == Protocol::Linux616 => s("text_poke_array.nr_entries = 0;"),
        Op::ClearNr => s("bp_patching.nr_entries = 0;"),
        Op::ClearDesc => s("WRITE_ONCE(bp_desc, NULL);"),
        Op::PutDesc { .. } => s("if (!atomic_dec_and_test(&desc.refs)) atomic_cond_read_acquire(&desc.refs, !VAL);"),
        Op::DecRefs { .. } => s("if (!atomic_dec_and_test(refs)) atomic_cond_read_acquire(refs, !VAL);"),
        Op::DecGlobalRefs { .. } => {
            s("if (!atomic_dec_and_test(&bp_desc.refs)) atomic_cond_read_acquire(&bp_desc.refs, !VAL);")
        }
        _ => s("return; /* the caller's vector (5.6: the on-stack desc) is gone */"),
    }
}

/// The kprobe clients' operations (`kernel/kprobes.c`, `arch/x86/kernel/kprobes/core.c`) and
/// `text_mutex`: the same in every version.
fn kprobe(op: &Op) -> Statement {
    let (function, code) = match op {
        Op::LockTextMutex => ("mutex_lock()", "mutex_lock(&text_mutex);"),
        Op::UnlockTextMutex => ("mutex_unlock()", "mutex_unlock(&text_mutex);"),
        Op::RegisterKprobe(_) => (
            "register_kprobe()",
            "prepare_kprobe(p); /* copy the instruction, under text_mutex */ hlist_add_head_rcu(&p->hlist, ...);",
        ),
        Op::ArmKprobe(_) => ("arch_arm_kprobe()", "text_poke(p->addr, &int3, 1);"),
        Op::DisarmKprobe(_) => ("arch_disarm_kprobe()", "text_poke(p->addr, &p->opcode, 1);"),
        Op::SynchronizeRcu => (
            "unregister_kprobes()",
            "synchronize_rcu(); /* every kprobe_int3_handler() that could see p has returned */",
        ),
        _ => ("__unregister_kprobe_top()", "hlist_del_rcu(&ap->hlist); /* after disarm_kprobe() */"),
    };
    Statement { function, code }
}

/// The `text_poke_sync()` that follows a kprobe's arm or disarm text_poke() (5.6 on).
pub(crate) fn kprobe_sync(p: Protocol) -> Statement {
    Statement { function: "arch_arm_kprobe()/arch_disarm_kprobe()", code: p.version().names.sync_code }
}

/// What the handler micro-step `pc` mirrors in a handler of `kind`.
pub fn handler(kind: HandlerKind, pc: HandlerPc) -> Statement {
    let rules = kind.rules();
    let s = |code: &'static str| Statement { function: rules.function, code };
    let kprobe = |code: &'static str| Statement { function: "kprobe_int3_handler()", code };
    match pc {
        HandlerPc::Entry => s(rules.entry_code),
        HandlerPc::IncRef => s("if (!atomic_inc_not_zero(&desc->refs)) return 0; /* try_get_desc() */"),
        HandlerPc::BranchNr => s("if (unlikely(nr_entries > 1)) {"),
        HandlerPc::BsearchArgs => s("tp = bsearch(ip, vec, nr_entries, sizeof(*tp), patch_cmp);"),
        HandlerPc::Probe => s("patch_cmp(ip, &vec[mid]); /* one bsearch probe */"),
        HandlerPc::LoadVec => s("tp = vec;"),
        HandlerPc::CompareSingle => s("if (text_poke_addr(tp) != ip) goto out_put;"),
        HandlerPc::Emulate => s(rules.emulate_code),
        HandlerPc::Put => s(rules.put_code),
        HandlerPc::KprobeGet => kprobe("addr = (kprobe_opcode_t *)(regs->ip - sizeof(kprobe_opcode_t)); p = get_kprobe(addr); if (p) { ... } /* none: 6.3+ returns 0 here */"),
        HandlerPc::Owner => kprobe("if (!p->pre_handler || !p->pre_handler(p, regs)) setup_singlestep(p, regs, kcb, 0); return 1; /* out of line; a CALL/JMP/Jcc emulated (kprobe_emulate_*) */"),
        HandlerPc::KprobeVanished => kprobe("} else if (*addr != INT3_INSN_OPCODE) { /* removed right after we hit it */ regs->ip = (unsigned long)addr; return 1; }"),
        HandlerPc::Iret => s("return 1; /* exc_int3() returns: IRET, which serializes */"),
    }
}

/// The table of version `p`: every operation its program uses and every handler micro-step,
/// with what it mirrors.
pub fn table(p: Protocol) -> Vec<(String, Statement)> {
    let mut rows: Vec<(String, Statement)> = Vec::new();
    for op in p.batch_program(&[], 0, 2, 2) {
        let name = op.name().to_string();
        if !rows.iter().any(|(n, _)| *n == name) {
            rows.push((name, patcher(p, &op)));
        }
    }
    for op in p.kprobe_program(&[], 0, 1) {
        let name = op.name().to_string();
        if !rows.iter().any(|(n, _)| *n == name) {
            rows.push((name, patcher(p, &op)));
        }
    }
    if p.kprobe_arm_syncs() {
        rows.push(("kprobe sync".into(), kprobe_sync(p)));
    }
    let kind = p.handler();
    for pc in HandlerPc::ALL {
        let used = match pc {
            HandlerPc::KprobeVanished => p.kprobe_recovers_vanished_int3(),
            pc => kind.rules().has(pc),
        };
        if used {
            rows.push((format!("handler {}", pc.name()), handler(kind, pc)));
        }
    }
    rows
}
