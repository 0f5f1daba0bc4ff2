//! The kernel source each patcher operation and handler micro-step mirrors, per version: the
//! function and the C statement, as `arch/x86/kernel/alternative.c` of that version writes it
//! (reference/kernel-protocol.md §1). Traces show it next to every event, and
//! `pokesim kernel --protocol P` prints the table.

use super::{HandlerKind, Protocol};
use crate::handler::HandlerPc;
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
    let v616 = p == Protocol::Linux616;
    match op {
        Op::BeginBatch(_) => s(match p {
            Protocol::Linux56 => "struct bp_patching_desc desc = { .vec = tp, .nr_entries = nr_entries, .refs = ATOMIC_INIT(1) };",
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
        Op::DecGlobalRefs { .. } => s("if (!atomic_dec_and_test(&bp_desc.refs)) atomic_cond_read_acquire(&bp_desc.refs, !VAL);"),
        Op::Wmb => s("smp_wmb();"),
        Op::PokeInt3 { .. } => s("text_poke(text_poke_addr(&tp[i]), &int3, INT3_INSN_SIZE);"),
        Op::PokeTail { .. } if v616 => {
            s("if (len - INT3_INSN_SIZE > 0) { memcpy(old + INT3_INSN_SIZE, ...); text_poke(addr + 1, new + 1, len - 1); do_sync++; }")
        }
        Op::PokeTail { .. } => s("if (len - INT3_INSN_SIZE > 0) { text_poke(addr + INT3_INSN_SIZE, tp[i].text + INT3_INSN_SIZE, len - INT3_INSN_SIZE); do_sync++; }"),
        Op::PokeFirst { .. } => s("byte = tp[i].text[0]; if (byte == INT3_INSN_OPCODE) continue; text_poke(text_poke_addr(&tp[i]), &byte, INT3_INSN_SIZE); do_sync++;"),
        Op::PokeFirstAlways { .. } => s("text_poke((void *)tp[i].addr, tp[i].opcode, sizeof(int3));"),
        Op::PokeWhole { .. } => s("text_poke(addr, opcode, len); /* the whole instruction, no INT3 step (mutant) */"),
        Op::PokePlain(_) => Statement { function: "text_poke()", code: "text_poke(addr, opcode, len); /* arm/disarm, outside the INT3 protocol */" },
        Op::ResetDoSync => s("do_sync = 0;"),
        Op::Sync => s(p.version().names.sync_code),
        Op::SyncIfDoSync => s(match p {
            Protocol::Linux54 => "if (patched_all_but_first) on_each_cpu(do_sync_core, NULL, 1);",
            Protocol::Seed => "if (do_sync) on_each_cpu(do_sync_core, NULL, 1);",
            Protocol::Linux616 => "if (do_sync) smp_text_poke_sync_each_cpu();",
            _ => "if (do_sync) text_poke_sync();",
        }),
        Op::ClearVec => s("bp_patching.vec = NULL;"),
        Op::ClearNr if v616 => s("text_poke_array.nr_entries = 0;"),
        Op::ClearNr => s("bp_patching.nr_entries = 0;"),
        Op::ClearDesc => s("WRITE_ONCE(bp_desc, NULL);"),
        Op::PutDesc { .. } => s("if (!atomic_dec_and_test(&desc.refs)) atomic_cond_read_acquire(&desc.refs, !VAL);"),
        Op::DecRefs { .. } => s("if (!atomic_dec_and_test(refs)) atomic_cond_read_acquire(refs, !VAL);"),
        Op::EndBatch(_) => s("return; /* the caller's vector (5.6: the on-stack desc) is gone */"),
        Op::LockTextMutex => Statement { function: "mutex_lock()", code: "mutex_lock(&text_mutex);" },
        Op::UnlockTextMutex => Statement { function: "mutex_unlock()", code: "mutex_unlock(&text_mutex);" },
        Op::RegisterKprobe(_) => Statement {
            function: "register_kprobe()",
            code: "prepare_kprobe(p); /* copy the instruction, under text_mutex */ hlist_add_head_rcu(&p->hlist, ...);",
        },
        Op::ArmKprobe(_) => Statement { function: "arch_arm_kprobe()", code: "text_poke(p->addr, &int3, 1);" },
        Op::DisarmKprobe(_) => Statement { function: "arch_disarm_kprobe()", code: "text_poke(p->addr, &p->opcode, 1);" },
        Op::SynchronizeRcu => Statement {
            function: "unregister_kprobes()",
            code: "synchronize_rcu(); /* every kprobe_int3_handler() that could see p has returned */",
        },
        Op::UnregisterKprobe(_) => Statement {
            function: "__unregister_kprobe_top()",
            code: "hlist_del_rcu(&ap->hlist); /* after disarm_kprobe() */",
        },
    }
}

/// The `text_poke_sync()` that follows a kprobe's arm or disarm text_poke() (5.6 on).
pub fn kprobe_sync(p: Protocol) -> Statement {
    Statement { function: "arch_arm_kprobe()/arch_disarm_kprobe()", code: p.version().names.sync_code }
}

fn handler_function(kind: HandlerKind) -> &'static str {
    match kind {
        HandlerKind::PerCpuRefs => "smp_text_poke_int3_handler()",
        _ => "poke_int3_handler()",
    }
}

/// What the handler micro-step `pc` mirrors in a handler of `kind`.
pub fn handler(kind: HandlerKind, pc: HandlerPc) -> Statement {
    let function = handler_function(kind);
    let s = |code: &'static str| Statement { function, code };
    match pc {
        HandlerPc::Entry => s(match kind {
            HandlerKind::Detour | HandlerKind::Emulate => "smp_rmb(); if (likely(!bp_patching.nr_entries)) return 0;",
            HandlerKind::Desc => "smp_rmb(); desc = READ_ONCE(bp_desc); if (!desc) return 0; /* try_get_desc() */",
            HandlerKind::GlobalRefs => "smp_rmb(); if (!arch_atomic_inc_not_zero(&bp_desc.refs)) return 0; /* try_get_desc() */",
            HandlerKind::PerCpuRefs => "smp_rmb(); if (!raw_atomic_inc_not_zero(this_cpu_ptr(&text_poke_array_refs))) return 0;",
        }),
        HandlerPc::IncRef => s("if (!atomic_inc_not_zero(&desc->refs)) return 0; /* try_get_desc() */"),
        HandlerPc::BranchNr => s("if (unlikely(nr_entries > 1)) {"),
        HandlerPc::BsearchArgs => s("tp = bsearch(ip, vec, nr_entries, sizeof(*tp), patch_cmp);"),
        HandlerPc::Probe => s("patch_cmp(ip, &vec[mid]); /* one bsearch probe */"),
        HandlerPc::LoadVec => s("tp = vec;"),
        HandlerPc::CompareSingle => s("if (text_poke_addr(tp) != ip) goto out_put;"),
        HandlerPc::Emulate => s(match kind {
            HandlerKind::Detour => "regs->ip = (unsigned long) tp->detour;",
            _ => "ip += tp->len; switch (tp->opcode) { case INT3: goto out_put; case RET: int3_emulate_ret(regs); case CALL: int3_emulate_call(regs, ip + tp->disp); case JMP32/JMP8: int3_emulate_jmp(regs, ip + tp->disp); ... }",
        }),
        HandlerPc::Put => s(match kind {
            HandlerKind::PerCpuRefs => "out_put: raw_atomic_dec(this_cpu_ptr(&text_poke_array_refs));",
            _ => "out_put: put_desc(desc); /* smp_mb__before_atomic(); atomic_dec(&desc->refs) */",
        }),
        HandlerPc::KprobeGet => Statement {
            function: "kprobe_int3_handler()",
            code: "addr = (kprobe_opcode_t *)(regs->ip - sizeof(kprobe_opcode_t)); p = get_kprobe(addr); if (p) { ... } /* none: 6.3+ returns 0 here */",
        },
        HandlerPc::Owner => Statement {
            function: "kprobe_int3_handler()",
            code: "if (!p->pre_handler || !p->pre_handler(p, regs)) setup_singlestep(p, regs, kcb, 0); return 1; /* out of line; a CALL/JMP/Jcc emulated (kprobe_emulate_*) */",
        },
        HandlerPc::KprobeVanished => Statement {
            function: "kprobe_int3_handler()",
            code: "} else if (*addr != INT3_INSN_OPCODE) { /* removed right after we hit it */ regs->ip = (unsigned long)addr; return 1; }",
        },
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
    let pcs = [
        HandlerPc::Entry,
        HandlerPc::IncRef,
        HandlerPc::BranchNr,
        HandlerPc::BsearchArgs,
        HandlerPc::Probe,
        HandlerPc::LoadVec,
        HandlerPc::CompareSingle,
        HandlerPc::Emulate,
        HandlerPc::Put,
        HandlerPc::KprobeGet,
        HandlerPc::Owner,
        HandlerPc::KprobeVanished,
        HandlerPc::Iret,
    ];
    for pc in pcs {
        let used = match pc {
            HandlerPc::IncRef => kind == HandlerKind::Desc,
            HandlerPc::Put => matches!(kind, HandlerKind::Desc | HandlerKind::GlobalRefs | HandlerKind::PerCpuRefs),
            HandlerPc::KprobeVanished => p.kprobe_recovers_vanished_int3(),
            _ => true,
        };
        if used {
            rows.push((format!("handler {}", pc.name()), handler(kind, pc)));
        }
    }
    rows
}
