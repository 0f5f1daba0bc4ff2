// SPDX-License-Identifier: MIT
/*
 * seed: the seed patch — "x86/alternatives: Teach text_poke_bp() to emulate instructions",
 * Peter Zijlstra, v3 1/6 (2019-10-07; merged for v5.5 as c3d6324f841b) — on top of the
 * v5.3/5.4 text_poke_bp_batch() of arch/x86/kernel/alternative.c. poke_int3_handler()
 * emulates CALL/JMP32/JMP8 (NOP2/NOP5 as JMP +0) instead of jumping to a detour, and the last
 * sync became conditional on do_sync; the teardown still clears vec and nr_entries with no
 * sync in between (bug B3, fixed in v5.5 by 285a54efe386: see linux-5.5.c).
 *
 * Written for pokesim from the patch's structure (shared/seed/text_poke_bp-emulate-v3-1-6.txt):
 * each function named and ordered as the patched alternative.c has it, with comments citing
 * it; the code is pokesim's own. The Rust model this agrees with is
 * sim-core/src/protocol/seed.rs (`pokesim program --protocol seed`).
 *
 * Mutants (sim-core/src/protocol/mutant.rs), each a switch at the place the model edits:
 * POKESIM_MUTANT_NO_SYNC_AFTER_INT3, _NO_SYNC_AFTER_TAIL, _NO_SYNC_AFTER_FIRST, _NO_INT3,
 * _TAIL_BEFORE_INT3, _PUBLISH_AFTER_INT3, _DETOUR_HANDLER, _EMULATE_OLD, _NO_WMB, _NO_RMB.
 */
#include "pokesim.h"

/* ------------------------------------------------ asm/text-patching.h (with the seed) */

/* int3_emulate_jmp(): the trapping CPU resumes at `ip`. */
static __always_inline void int3_emulate_jmp(struct pt_regs *regs, unsigned long ip)
{
	regs->ip = ip;
}

/* int3_emulate_push(): the entry code leaves a gap below the interrupted stack, so the
 * handler can push onto it ("x86_64: Add gap to int3 to allow for call emulation"). */
static __always_inline void int3_emulate_push(struct pt_regs *regs, unsigned long val)
{
	regs->sp -= sizeof(unsigned long);
	*(unsigned long *)regs->sp = val;
}

/* int3_emulate_call(): push the return address (the site + CALL_INSN_SIZE), jump. */
static __always_inline void int3_emulate_call(struct pt_regs *regs, unsigned long func)
{
	int3_emulate_push(regs, regs->ip - INT3_INSN_SIZE + CALL_INSN_SIZE);
	int3_emulate_jmp(regs, func);
}

/* ------------------------------------------------ arch/x86/kernel/alternative.c (with the seed) */

/* do_sync_core(): the IPI function, nothing but sync_core() (pokesim checks that). */
static void do_sync_core(void *info)
{
	sync_core();
}

/* struct text_poke_loc as the seed has it: the site, its length, the displacement of the
 * emulated branch, the opcode the handler switches on, the new bytes. */
struct text_poke_loc {
	void *addr;
	int len;
	s32 rel32;
	u8 opcode;
	const u8 text[POKE_MAX_OPCODE_SIZE];
#ifdef POKESIM_MUTANT_EMULATE_OLD
	/* mutant emulate-old: the bytes the site held before this batch. */
	u8 pokesim_old[POKE_MAX_OPCODE_SIZE];
#endif
};

/* bp_patching: what the handler reads to find the batch being patched. */
static struct bp_patching_desc {
	struct text_poke_loc *vec;
	int nr_entries;
} bp_patching;

void text_poke_loc_init(struct text_poke_loc *tp, void *addr, const void *opcode, size_t len,
			const void *emulate);

/* patch_cmp(): bsearch()'s comparison of the trapping address with an entry's site. */
static int notrace patch_cmp(const void *key, const void *elt)
{
	struct text_poke_loc *tp = (struct text_poke_loc *)elt;

	if (key < tp->addr)
		return -1;
	if (key > tp->addr)
		return 1;
	return 0;
}
NOKPROBE_SYMBOL(patch_cmp);

#ifdef POKESIM_MUTANT_EMULATE_OLD
/* mutant emulate-old: the entry text_poke_loc_init() makes of the site's old bytes, or NULL
 * where they are an INT3 (not consumed). */
static struct text_poke_loc *pokesim_old_loc(struct text_poke_loc *tp, struct text_poke_loc *old)
{
	if (tp->pokesim_old[0] == INT3_INSN_OPCODE)
		return NULL;
	text_poke_loc_init(old, tp->addr, tp->pokesim_old, tp->len, NULL);
	return old;
}
#endif

/*
 * poke_int3_handler() (the seed's emulating handler): called from do_int3() with the trap
 * frame. Returns 1 when the trap was at a site being patched and its new instruction has been
 * emulated, 0 to hand the trap on.
 */
int notrace poke_int3_handler(struct pt_regs *regs)
{
	struct text_poke_loc *tp;
	void *ip;
#ifdef POKESIM_MUTANT_EMULATE_OLD
	struct text_poke_loc old;
#endif

	/*
	 * Pairs with the smp_wmb() of text_poke_bp_batch(): having seen its INT3, this CPU sees
	 * the nr_entries and vec published before the INT3 was written.
	 */
#ifndef POKESIM_MUTANT_NO_RMB
	smp_rmb();
#endif

	if (likely(!bp_patching.nr_entries))
		return 0;

	if (user_mode(regs))
		return 0;

	/* regs->ip is past the INT3: the site is one byte before it. */
	ip = (void *)regs->ip - INT3_INSN_SIZE;

	/* More than one entry: binary search of the sorted vector; one: compare directly. */
	if (unlikely(bp_patching.nr_entries > 1)) {
		tp = bsearch(ip, bp_patching.vec, bp_patching.nr_entries, sizeof(struct text_poke_loc),
			     patch_cmp);
		if (!tp)
			return 0;
	} else {
		tp = bp_patching.vec;
		if (tp->addr != ip)
			return 0;
	}

#ifdef POKESIM_MUTANT_EMULATE_OLD
	/* mutant emulate-old: emulate the instruction the site held before the batch. */
	tp = pokesim_old_loc(tp, &old);
	if (!tp)
		return 0;
#endif

	ip += tp->len;

#ifdef POKESIM_MUTANT_DETOUR_HANDLER
	/* mutant detour-handler: jump past the instruction instead of emulating it (B1). */
	int3_emulate_jmp(regs, (long)ip);
	return 1;
#endif

	switch (tp->opcode) {
	case INT3_INSN_OPCODE:
		/* An INT3 someone poked on purpose: its owner handles it; not consumed. */
		return 0;

	case CALL_INSN_OPCODE:
		int3_emulate_call(regs, (long)ip + tp->rel32);
		break;

	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		int3_emulate_jmp(regs, (long)ip + tp->rel32);
		break;

	default:
		BUG();
	}

	return 1;
}
NOKPROBE_SYMBOL(poke_int3_handler);

/*
 * text_poke_bp_batch() (v5.3 c0213b0ac03c, as the seed changes it): patch `nr_entries`
 * sites, sorted by address, that other CPUs may be executing, with the INT3 protocol:
 *  - publish the vector, then write an INT3 on every site, sync;
 *  - write every site's bytes after the first, sync if any;
 *  - write every site's first byte (unless it is an INT3), sync if any;
 *  - withdraw the vector: vec = NULL, nr_entries = 0 (no sync: bug B3).
 * A CPU that hits an INT3 meanwhile is sent through poke_int3_handler(), which emulates the
 * new instruction. Caller holds text_mutex.
 */
void text_poke_bp_batch(struct text_poke_loc *tp, unsigned int nr_entries)
{
	unsigned char int3 = INT3_INSN_OPCODE;
	unsigned int i;
	int do_sync;

	lockdep_assert_held(&text_mutex);

#ifndef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	bp_patching.vec = tp;
	bp_patching.nr_entries = nr_entries;

	/* Orders the publication before the INT3s; pairs with the handler's smp_rmb(). */
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifdef POKESIM_MUTANT_NO_INT3
	/* mutant no-int3: each site in one text_poke(), no INT3 step. */
	for (i = 0; i < nr_entries; i++)
		text_poke(tp[i].addr, tp[i].text, tp[i].len);
#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	bp_patching.vec = tp;
	bp_patching.nr_entries = nr_entries;
#endif
	on_each_cpu(do_sync_core, NULL, 1);
	goto teardown;
#endif

#ifdef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* mutant tail-before-int3: the second step runs before the first. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].len - INT3_INSN_SIZE > 0) {
			text_poke((char *)tp[i].addr + INT3_INSN_SIZE, (const char *)tp[i].text + INT3_INSN_SIZE,
				  tp[i].len - INT3_INSN_SIZE);
			do_sync++;
		}
	}
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		on_each_cpu(do_sync_core, NULL, 1);
#endif
#endif

	/* First step: an INT3 on every site. */
	for (i = 0; i < nr_entries; i++)
		text_poke(tp[i].addr, &int3, sizeof(int3));

#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	/* mutant publish-after-int3: the vector is published after the INT3s. */
	bp_patching.vec = tp;
	bp_patching.nr_entries = nr_entries;
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_INT3
	on_each_cpu(do_sync_core, NULL, 1);
#endif

#ifndef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* Second step: every byte after the first. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].len - INT3_INSN_SIZE > 0) {
			text_poke((char *)tp[i].addr + INT3_INSN_SIZE, (const char *)tp[i].text + INT3_INSN_SIZE,
				  tp[i].len - INT3_INSN_SIZE);
			do_sync++;
		}
	}

	/* Intel calls this sync very likely unnecessary; the kernel keeps it. */
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		on_each_cpu(do_sync_core, NULL, 1);
#endif
#endif

	/* Third step: the first byte, unless the new first byte is itself an INT3. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].text[0] == INT3_INSN_OPCODE)
			continue;

		text_poke(tp[i].addr, tp[i].text, INT3_INSN_SIZE);
		do_sync++;
	}

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_FIRST
	if (do_sync)
		on_each_cpu(do_sync_core, NULL, 1);
#endif

#ifdef POKESIM_MUTANT_NO_INT3
teardown:
#endif
	/*
	 * The batch is withdrawn with no sync in between: a handler that saw nr_entries != 0 may
	 * read vec after it became NULL (bug B3; 285a54efe386 fixed it in v5.5).
	 */
	bp_patching.vec = NULL;
	bp_patching.nr_entries = 0;
}

/*
 * text_poke_loc_init() (the seed): decode the instruction to emulate (`emulate`, or the new
 * bytes), BUG() unless `len` is exactly that instruction, and reduce it to {opcode, rel32}:
 * CALL, JMP32, JMP8 and INT3 as they are; the canonical NOP2/NOP5 as JMP8/JMP32 + 0; anything
 * else BUG().
 */
void text_poke_loc_init(struct text_poke_loc *tp, void *addr, const void *opcode, size_t len,
			const void *emulate)
{
	struct insn insn;

	/* NULL opcode: the caller (jump_label) already wrote the new bytes into tp->text. */
	if (!opcode)
		opcode = (void *)tp->text;
	else
		memcpy((void *)tp->text, opcode, len);
	if (!emulate)
		emulate = opcode;

	kernel_insn_init(&insn, emulate, MAX_INSN_SIZE);
	insn_get_length(&insn);

	BUG_ON(!insn_complete(&insn));
	BUG_ON(len != insn.length);

	tp->addr = addr;
	tp->len = len;
	tp->opcode = insn.opcode.bytes[0];
#ifdef POKESIM_MUTANT_EMULATE_OLD
	memcpy(tp->pokesim_old, addr, len);
#endif

	switch (tp->opcode) {
	case INT3_INSN_OPCODE:
		break;

	case CALL_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		tp->rel32 = insn.immediate.value;
		break;

	default: /* not a branch: it must be the NOP the kernel would use */
		switch (len) {
		case 2: /* NOP2, emulated as JMP8 +0 */
			BUG_ON(memcmp(emulate, ideal_nops[len], len));
			tp->opcode = JMP8_INSN_OPCODE;
			tp->rel32 = 0;
			break;

		case 5: /* NOP5, emulated as JMP32 +0 */
			BUG_ON(memcmp(emulate, ideal_nops[NOP_ATOMIC5], len));
			tp->opcode = JMP32_INSN_OPCODE;
			tp->rel32 = 0;
			break;

		default:
			BUG();
		}
		break;
	}
}

/* text_poke_bp(): patch one site, its entry on this stack. Caller holds text_mutex. */
void text_poke_bp(void *addr, const void *opcode, size_t len, const void *emulate)
{
	struct text_poke_loc tp;

	text_poke_loc_init(&tp, addr, opcode, len, emulate);
	text_poke_bp_batch(&tp, 1);
}

/* ------------------------------------------------ pokesim's entry points (c/README.md) */

/* The workload's requests in address order, as jump_label sorts its entries. */
static const struct pokesim_poke *pokesim_order[65536 / sizeof(struct pokesim_poke)];

static void pokesim_sort(const struct pokesim_poke *pokes, unsigned int nr)
{
	unsigned int i, j;

	for (i = 0; i < nr; i++) {
		const struct pokesim_poke *p = &pokes[i];

		for (j = i; j > 0 && pokesim_order[j - 1]->addr > p->addr; j--)
			pokesim_order[j] = pokesim_order[j - 1];
		pokesim_order[j] = p;
	}
}

/*
 * The batching caller, as arch/x86/kernel/jump_label.c is in the seed's time
 * (arch_jump_label_transform_queue()/_apply()): a static vector of sorted entries, each made by
 * text_poke_loc_init(), handed to text_poke_bp_batch() when full and at the end. The kernel
 * sizes it PAGE_SIZE / sizeof(struct text_poke_loc); pokesim's model flushes every 256
 * (sim-core/src/patching.rs, TEXT_POKE_ARRAY_MAX), and this file agrees with the model.
 */
#define TP_VEC_MAX 256
static struct text_poke_loc tp_vec[TP_VEC_MAX];
static int tp_vec_nr;

/* One batch action: text_poke_bp() for one site, the jump_label-style vector for more, under
 * text_mutex. */
void pokesim_patch(const struct pokesim_poke *pokes, unsigned int nr)
{
	unsigned int i;

	BUG_ON(nr > ARRAY_SIZE(pokesim_order));
	mutex_lock(&text_mutex);
	if (nr == 1) {
		text_poke_bp((void *)pokes[0].addr, pokes[0].text, pokes[0].len,
			     pokes[0].emulate_len ? pokes[0].emulate : NULL);
	} else {
		pokesim_sort(pokes, nr);
		for (i = 0; i < nr; i++) {
			const struct pokesim_poke *p = pokesim_order[i];

			if (tp_vec_nr == TP_VEC_MAX) {
				text_poke_bp_batch(tp_vec, tp_vec_nr);
				tp_vec_nr = 0;
			}
			text_poke_loc_init(&tp_vec[tp_vec_nr++], (void *)p->addr, p->text, p->len,
					   p->emulate_len ? p->emulate : NULL);
		}
		text_poke_bp_batch(tp_vec, tp_vec_nr);
		tp_vec_nr = 0;
	}
	mutex_unlock(&text_mutex);
}

/* A plain text_poke() outside the INT3 protocol, under text_mutex. */
void pokesim_poke(unsigned long addr, const unsigned char *bytes, unsigned int len)
{
	mutex_lock(&text_mutex);
	text_poke((void *)addr, bytes, len);
	mutex_unlock(&text_mutex);
}

/* The workload's explicit sync (the seed's on_each_cpu(do_sync_core, NULL, 1)). */
void pokesim_sync(void)
{
	on_each_cpu(do_sync_core, NULL, 1);
}

/* ------------------------------------------------ text_poke_early() (boot-time alternatives)
 *
 * text_poke_early(): patch code no other CPU runs (apply_alternatives() at boot, before SMP;
 * a module's text before it is live), by a plain memcpy() through the text's own address.
 * The seed (on v5.4) has the order 3ea1704a9296 ("x86/alternatives: Sync core before enabling
 * interrupts", Thomas Gleixner, Dec 2023, v6.7) fixed: interrupts are re-enabled *before*
 * sync_core(), so an interrupt taken in between runs the new code on this CPU before it
 * serialised. (The NX/module-text branch, a memcpy() alone, is not modelled.)
 * Mutant text-poke-early-swap: the other order (the fix).
 */
void text_poke_early(void *addr, const void *opcode, size_t len)
{
	unsigned long flags;

	local_irq_save(flags);
	pokesim_text_memcpy(addr, opcode, len);
#ifdef POKESIM_MUTANT_TEXT_POKE_EARLY_SWAP
	/* mutant text-poke-early-swap: 3ea1704a9296's order — sync_core() with interrupts off. */
	sync_core();
	local_irq_restore(flags);
#else
	local_irq_restore(flags);
	sync_core();
#endif
}

/* Boot-time patching of one site (apply_alternatives()): text_poke_early(). */
void pokesim_early(unsigned long addr, const unsigned char *bytes, unsigned int len)
{
	text_poke_early((void *)addr, bytes, len);
}
