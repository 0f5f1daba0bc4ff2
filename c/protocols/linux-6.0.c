// SPDX-License-Identifier: MIT
/*
 * linux-6.0: the INT3 text-patching protocol of arch/x86/kernel/alternative.c with
 * efd608fa7403 ("x86/alternative: Fix race in try_get_desc()", Nadav Amit, 2022): bp_desc is a
 * static global {vec, nr_entries, refs} instead of a descriptor on the patcher's stack, so a
 * handler entered through a foreign INT3 can no longer touch a dead stack frame. Also RET
 * emulation (c43a43e439e0, "x86/alternatives: Teach text_poke_bp() to emulate RET") and
 * RET/JMP padded with INT3 (26c44b776dba, "x86/alternative: Relax text_poke_bp() constraint"),
 * the inlined bsearch() of the noinstr handler, and insn_decode_kernel().
 *
 * Written for pokesim from the kernel's structure: each function named and ordered as in
 * alternative.c of that release (and the int3_emulate_*() helpers of asm/text-patching.h),
 * with comments citing it; the code is pokesim's own. The Rust model this agrees with is
 * sim-core/src/protocol/linux_6_0.rs (`pokesim program --protocol linux-6.0`).
 *
 * Mutants (sim-core/src/protocol/mutant.rs), each a switch at the place the model edits:
 * POKESIM_MUTANT_NO_SYNC_AFTER_INT3, _NO_SYNC_AFTER_TAIL, _NO_SYNC_AFTER_FIRST, _NO_INT3,
 * _TAIL_BEFORE_INT3, _PUBLISH_AFTER_INT3, _DETOUR_HANDLER, _SKIP_REFS_WAIT, _EMULATE_OLD,
 * _NO_WMB, _NO_RMB, _UNLOCKED_REFS (C only: the model has no instruction to unlock).
 */
#include "pokesim.h"

/* ------------------------------------------------ asm/text-patching.h (v6.0) */

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

/* int3_emulate_pop(): the value on top of the interrupted stack. */
static __always_inline unsigned long int3_emulate_pop(struct pt_regs *regs)
{
	unsigned long val = *(unsigned long *)regs->sp;

	regs->sp += sizeof(unsigned long);
	return val;
}

/* int3_emulate_call(): push the return address (the site + CALL_INSN_SIZE), jump. */
static __always_inline void int3_emulate_call(struct pt_regs *regs, unsigned long func)
{
	int3_emulate_push(regs, regs->ip - INT3_INSN_SIZE + CALL_INSN_SIZE);
	int3_emulate_jmp(regs, func);
}

/* int3_emulate_ret() (c43a43e439e0): pop the return address, jump there. */
static __always_inline void int3_emulate_ret(struct pt_regs *regs)
{
	unsigned long ip = int3_emulate_pop(regs);

	int3_emulate_jmp(regs, ip);
}

/* ------------------------------------------------ arch/x86/kernel/alternative.c (v6.0) */

/* do_sync_core(): the IPI function, nothing but sync_core() (pokesim checks that). */
static void do_sync_core(void *info)
{
	sync_core();
}

/* text_poke_sync() (5c02ece81848): every CPU serialises; the caller waits for all. */
void text_poke_sync(void)
{
	on_each_cpu(do_sync_core, NULL, 1);
}

/* struct text_poke_loc (v6.0): the site as an offset from _stext, the displacement of the
 * emulated branch, the bytes replaced (len is back: 26c44b776dba), the opcode the handler
 * switches on, the new bytes, and the site's old first byte (for perf's text_poke event). */
struct text_poke_loc {
	s32 rel_addr; /* addr := _stext + rel_addr */
	s32 disp;
	u8 len;
	u8 opcode;
	const u8 text[POKE_MAX_OPCODE_SIZE];
	u8 old; /* see text_poke_bp_batch() */
#ifdef POKESIM_MUTANT_EMULATE_OLD
	/* mutant emulate-old: the bytes the site held before this batch. */
	u8 pokesim_old[POKE_MAX_OPCODE_SIZE];
#endif
};

/* The batch being patched, one static descriptor (efd608fa7403): refs != 0 while a batch is
 * in flight. */
struct bp_patching_desc {
	struct text_poke_loc *vec;
	int nr_entries;
	atomic_t refs;
};

static struct bp_patching_desc bp_desc;

/* try_get_desc(): a reference on bp_desc, or NULL when no batch is in flight. */
static __always_inline struct bp_patching_desc *try_get_desc(void)
{
	struct bp_patching_desc *desc = &bp_desc;

#ifdef POKESIM_MUTANT_UNLOCKED_REFS
	/* mutant unlocked-refs: the reference counts without LOCK (a UP kernel's atomics). */
	if (!unlocked_atomic_inc_not_zero(&desc->refs))
#else
	if (!arch_atomic_inc_not_zero(&desc->refs))
#endif
		return NULL;

	return desc;
}

/* put_desc(): drop the handler's reference (the patcher may be waiting for it). */
static __always_inline void put_desc(void)
{
	struct bp_patching_desc *desc = &bp_desc;

	smp_mb__before_atomic();
#ifdef POKESIM_MUTANT_UNLOCKED_REFS
	unlocked_atomic_dec(&desc->refs);
#else
	arch_atomic_dec(&desc->refs);
#endif
}

/* text_poke_addr(): an entry's site. */
static __always_inline void *text_poke_addr(struct text_poke_loc *tp)
{
	return _stext + tp->rel_addr;
}

static void text_poke_loc_init(struct text_poke_loc *tp, void *addr, const void *opcode, size_t len,
			       const void *emulate);

/* patch_cmp(): bsearch()'s comparison of the trapping address with an entry's site. */
static __always_inline int patch_cmp(const void *key, const void *elt)
{
	struct text_poke_loc *tp = (struct text_poke_loc *)elt;

	if (key < text_poke_addr(tp))
		return -1;
	if (key > text_poke_addr(tp))
		return 1;
	return 0;
}

#ifdef POKESIM_MUTANT_EMULATE_OLD
/* mutant emulate-old: the entry text_poke_loc_init() makes of the site's old bytes, or NULL
 * where they are an INT3 (not consumed). */
static struct text_poke_loc *pokesim_old_loc(struct text_poke_loc *tp, struct text_poke_loc *old)
{
	if (tp->pokesim_old[0] == INT3_INSN_OPCODE)
		return NULL;
	text_poke_loc_init(old, text_poke_addr(tp), tp->pokesim_old, tp->len, NULL);
	return old;
}
#endif

/*
 * poke_int3_handler() (v6.0, noinstr): called from do_int3() with the trap frame. With a
 * reference on bp_desc, a trap at a site being patched has its new instruction emulated
 * (returns 1); anything else is handed on (0). The reference is dropped either way.
 */
noinstr int poke_int3_handler(struct pt_regs *regs)
{
	struct bp_patching_desc *desc;
	struct text_poke_loc *tp;
	int ret = 0;
	void *ip;
#ifdef POKESIM_MUTANT_EMULATE_OLD
	struct text_poke_loc old;
#endif

	if (user_mode(regs))
		return 0;

	/*
	 * Pairs with the smp_wmb() of text_poke_bp_batch(): having seen its INT3, this CPU sees
	 * the refs = 1 (and vec, nr_entries) stored before the INT3 was written.
	 */
#ifndef POKESIM_MUTANT_NO_RMB
	smp_rmb();
#endif

	desc = try_get_desc();
	if (!desc)
		return 0;

	/* regs->ip is past the INT3: the site is one byte before it. */
	ip = (void *)regs->ip - INT3_INSN_SIZE;

	/* More than one entry: binary search of the sorted vector; one: compare directly. */
	if (unlikely(desc->nr_entries > 1)) {
		tp = __inline_bsearch(ip, desc->vec, desc->nr_entries, sizeof(struct text_poke_loc),
				      patch_cmp);
		if (!tp)
			goto out_put;
	} else {
		tp = desc->vec;
		if (text_poke_addr(tp) != ip)
			goto out_put;
	}

#ifdef POKESIM_MUTANT_EMULATE_OLD
	/* mutant emulate-old: emulate the instruction the site held before the batch. */
	tp = pokesim_old_loc(tp, &old);
	if (!tp)
		goto out_put;
#endif

	ip += tp->len;

#ifdef POKESIM_MUTANT_DETOUR_HANDLER
	/* mutant detour-handler: jump past the instruction instead of emulating it (B1). */
	int3_emulate_jmp(regs, (long)ip);
	ret = 1;
	goto out_put;
#endif

	switch (tp->opcode) {
	case INT3_INSN_OPCODE:
		/* An INT3 someone poked on purpose: its owner handles it; not consumed. */
		goto out_put;

	case RET_INSN_OPCODE:
		int3_emulate_ret(regs);
		break;

	case CALL_INSN_OPCODE:
		int3_emulate_call(regs, (long)ip + tp->disp);
		break;

	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		int3_emulate_jmp(regs, (long)ip + tp->disp);
		break;

	default:
		BUG();
	}

	ret = 1;

out_put:
	put_desc();
	return ret;
}

/*
 * TP_VEC_MAX: how many entries text_poke_queue() gathers before it flushes. v6.0 sizes it
 * PAGE_SIZE / sizeof(struct text_poke_loc); pokesim's model flushes every 256
 * (sim-core/src/patching.rs, TEXT_POKE_ARRAY_MAX), and this file agrees with the model.
 */
#define TP_VEC_MAX 256
static struct text_poke_loc tp_vec[TP_VEC_MAX];
static int tp_vec_nr;

/*
 * text_poke_bp_batch() (v6.0): patch `nr_entries` sites, sorted by address, that other CPUs
 * may be executing, with the INT3 protocol:
 *  - fill bp_desc {vec, nr_entries} and set its refs to 1 (release), then write an INT3 on
 *    every site (remembering its old first byte), sync;
 *  - write every site's bytes after the first, sync if any;
 *  - write every site's first byte (unless it is an INT3), sync if any;
 *  - drop bp_desc's first reference and wait until the handlers that took one have dropped
 *    theirs.
 * A CPU that hits an INT3 meanwhile is sent through poke_int3_handler(), which emulates the
 * new instruction. Caller holds text_mutex.
 */
static void text_poke_bp_batch(struct text_poke_loc *tp, unsigned int nr_entries)
{
	unsigned char int3 = INT3_INSN_OPCODE;
	unsigned int i;
	int do_sync;

	lockdep_assert_held(&text_mutex);

#ifndef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	bp_desc.vec = tp;
	bp_desc.nr_entries = nr_entries;

	/* A handler that reads refs != 0 (try_get_desc()) sees vec and nr_entries. */
	atomic_set_release(&bp_desc.refs, 1);

	/* Orders the publication before the INT3s; pairs with the handler's smp_rmb(). */
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifdef POKESIM_MUTANT_NO_INT3
	/* mutant no-int3: each site in one text_poke(), no INT3 step. */
	for (i = 0; i < nr_entries; i++)
		text_poke(text_poke_addr(&tp[i]), tp[i].text, tp[i].len);
#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	bp_desc.vec = tp;
	bp_desc.nr_entries = nr_entries;
	atomic_set_release(&bp_desc.refs, 1);
#endif
	text_poke_sync();
	goto teardown;
#endif

#ifdef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* mutant tail-before-int3: the second step runs before the first. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		int len = tp[i].len;

		if (len - INT3_INSN_SIZE > 0) {
			text_poke(text_poke_addr(&tp[i]) + INT3_INSN_SIZE,
				  (const char *)tp[i].text + INT3_INSN_SIZE, len - INT3_INSN_SIZE);
			do_sync++;
		}
	}
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		text_poke_sync();
#endif
#endif

	/* First step: an INT3 on every site. */
	for (i = 0; i < nr_entries; i++) {
		tp[i].old = *(u8 *)text_poke_addr(&tp[i]);
		text_poke(text_poke_addr(&tp[i]), &int3, INT3_INSN_SIZE);
	}

#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	/* mutant publish-after-int3: bp_desc is filled after the INT3s. */
	bp_desc.vec = tp;
	bp_desc.nr_entries = nr_entries;
	atomic_set_release(&bp_desc.refs, 1);
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_INT3
	text_poke_sync();
#endif

#ifndef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* Second step: every byte after the first. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		int len = tp[i].len;

		if (len - INT3_INSN_SIZE > 0) {
			text_poke(text_poke_addr(&tp[i]) + INT3_INSN_SIZE,
				  (const char *)tp[i].text + INT3_INSN_SIZE, len - INT3_INSN_SIZE);
			do_sync++;
		}
	}

	/* Intel calls this sync very likely unnecessary; the kernel keeps it. */
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		text_poke_sync();
#endif
#endif

	/* Third step: the first byte, unless the new first byte is itself an INT3. */
	for (do_sync = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].text[0] == INT3_INSN_OPCODE)
			continue;

		text_poke(text_poke_addr(&tp[i]), tp[i].text, INT3_INSN_SIZE);
		do_sync++;
	}

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_FIRST
	if (do_sync)
		text_poke_sync();
#endif

#ifdef POKESIM_MUTANT_NO_INT3
teardown:
#endif
	/* Drop the first reference and wait for the handlers' to drain. */
#ifdef POKESIM_MUTANT_SKIP_REFS_WAIT
	/* mutant skip-refs-wait: return while handlers may still hold bp_desc. */
	atomic_dec_and_test(&bp_desc.refs);
#elif defined(POKESIM_MUTANT_UNLOCKED_REFS)
	if (!unlocked_atomic_dec_and_test(&bp_desc.refs))
		atomic_cond_read_acquire(&bp_desc.refs, !VAL);
#else
	if (!atomic_dec_and_test(&bp_desc.refs))
		atomic_cond_read_acquire(&bp_desc.refs, !VAL);
#endif
}

/*
 * text_poke_loc_init() (v6.0): decode the instruction to emulate (`emulate`, or the new bytes)
 * and reduce it to {opcode, disp}: INT3 and RET as they are (RET, JMP32 and JMP8 may be
 * padded with INT3 up to `len`, 26c44b776dba; anything else must be exactly `len` bytes);
 * CALL, JMP32, JMP8 with their displacement; the canonical NOP2/NOP5 as JMP8/JMP32 + 0;
 * anything else BUG().
 */
static void text_poke_loc_init(struct text_poke_loc *tp, void *addr, const void *opcode, size_t len,
			       const void *emulate)
{
	struct insn insn;
	int ret, i;

	memcpy((void *)tp->text, opcode, len);
	if (!emulate)
		emulate = opcode;

	ret = insn_decode_kernel(&insn, emulate);
	BUG_ON(ret < 0);

	tp->rel_addr = addr - (void *)_stext;
	tp->len = len;
	tp->opcode = insn.opcode.bytes[0];
#ifdef POKESIM_MUTANT_EMULATE_OLD
	memcpy(tp->pokesim_old, addr, len);
#endif

	switch (tp->opcode) {
	case RET_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		/* No fall-through into the next instruction: INT3 padding is allowed. */
		for (i = insn.length; i < len; i++)
			BUG_ON(tp->text[i] != INT3_INSN_OPCODE);
		break;

	default:
		BUG_ON(len != insn.length);
	}

	switch (tp->opcode) {
	case INT3_INSN_OPCODE:
	case RET_INSN_OPCODE:
		break;

	case CALL_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		tp->disp = insn.immediate.value;
		break;

	default: /* not a branch: it must be the NOP the kernel would use */
		switch (len) {
		case 2: /* NOP2, emulated as JMP8 +0 */
			BUG_ON(memcmp(emulate, x86_nops[len], len));
			tp->opcode = JMP8_INSN_OPCODE;
			tp->disp = 0;
			break;

		case 5: /* NOP5, emulated as JMP32 +0 */
			BUG_ON(memcmp(emulate, x86_nops[len], len));
			tp->opcode = JMP32_INSN_OPCODE;
			tp->disp = 0;
			break;

		default:
			BUG();
		}
		break;
	}
}

/* tp_order_ok(): the queued vector stays sorted (bsearch needs it). */
static bool tp_order_ok(void *addr)
{
	struct text_poke_loc *tp;

	if (!tp_vec_nr)
		return true;

	tp = &tp_vec[tp_vec_nr - 1];
	if ((unsigned long)text_poke_addr(tp) > (unsigned long)addr)
		return false;

	return true;
}

/* text_poke_flush(): patch what is queued when the vector is full, when `addr` would break
 * its order, or (addr == NULL) always. */
static void text_poke_flush(void *addr)
{
	if (tp_vec_nr == TP_VEC_MAX || (addr && !tp_order_ok(addr))) {
		text_poke_bp_batch(tp_vec, tp_vec_nr);
		tp_vec_nr = 0;
	}
}

/* text_poke_finish(): patch whatever is still queued. */
void text_poke_finish(void)
{
	if (tp_vec_nr) {
		text_poke_bp_batch(tp_vec, tp_vec_nr);
		tp_vec_nr = 0;
	}
}

/* text_poke_queue(): add one site to the batch (flushing first if needed). */
void text_poke_queue(void *addr, const void *opcode, size_t len, const void *emulate)
{
	struct text_poke_loc *tp;

	text_poke_flush(addr);

	tp = &tp_vec[tp_vec_nr++];
	text_poke_loc_init(tp, addr, opcode, len, emulate);
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

/* One batch action: text_poke_bp() for one site, text_poke_queue() + text_poke_finish() for
 * more, under text_mutex. */
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

			text_poke_queue((void *)p->addr, p->text, p->len, p->emulate_len ? p->emulate : NULL);
		}
		text_poke_finish();
	}
	mutex_unlock(&text_mutex);
}

/*
 * The callers that share tp_vec one text_mutex section at a time: jump_label's
 * arch_jump_label_transform_queue() queues each site under text_mutex and
 * arch_jump_label_transform_apply() finishes them under it again; in between, another caller
 * may take text_mutex. text_poke_bp() (a single site) builds its own one-entry batch, so it
 * never touches what is queued.
 */
void pokesim_batch_add(const struct pokesim_poke *p)
{
	mutex_lock(&text_mutex);
	text_poke_queue((void *)p->addr, p->text, p->len, p->emulate_len ? p->emulate : NULL);
	mutex_unlock(&text_mutex);
}

void pokesim_batch_finish(void)
{
	mutex_lock(&text_mutex);
	text_poke_finish();
	mutex_unlock(&text_mutex);
}

/* A caller that patches one site at once (arch_jump_label_transform(), static_call). */
void pokesim_single(const struct pokesim_poke *p)
{
	mutex_lock(&text_mutex);
	text_poke_bp((void *)p->addr, p->text, p->len, p->emulate_len ? p->emulate : NULL);
	mutex_unlock(&text_mutex);
}

/* A plain text_poke() outside the INT3 protocol, under text_mutex. */
void pokesim_poke(unsigned long addr, const unsigned char *bytes, unsigned int len)
{
	mutex_lock(&text_mutex);
	text_poke((void *)addr, bytes, len);
	mutex_unlock(&text_mutex);
}

/* The workload's explicit text_poke_sync(). */
void pokesim_sync(void)
{
	text_poke_sync();
}

/* ------------------------------------------------ text_poke_early() (boot-time alternatives)
 *
 * text_poke_early(): patch code no other CPU runs (apply_alternatives() at boot, before SMP;
 * a module's text before it is live), by a plain memcpy() through the text's own address.
 * v6.0 has the order 3ea1704a9296 ("x86/alternatives: Sync core before enabling
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
