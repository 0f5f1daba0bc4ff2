// SPDX-License-Identifier: MIT
/*
 * linux-5.4: the INT3 text-patching protocol of arch/x86/kernel/alternative.c in v5.3/v5.4 —
 * Daniel Bristot de Oliveira's batching, c0213b0ac03c ("x86/alternative: Batch of patch
 * operations", 2019-06-12) — before the seed. poke_int3_handler() finds the entry and only
 * sets regs->ip to the caller's detour: a plain jump, which cannot perform a CALL's push
 * (bug B1: a static_call site patched to a CALL returns to the wrong place).
 *
 * Written for pokesim from the kernel's structure: each function named and ordered as in
 * v5.4's alternative.c (and the batching caller of arch/x86/kernel/jump_label.c), with comments
 * citing it; the code is pokesim's own. The Rust model this agrees with is
 * sim-core/src/protocol/linux_5_4.rs (`pokesim program --protocol linux-5.4`).
 *
 * Mutants (sim-core/src/protocol/mutant.rs), each a switch at the place the model edits:
 * POKESIM_MUTANT_NO_SYNC_AFTER_INT3, _NO_SYNC_AFTER_TAIL, _NO_SYNC_AFTER_FIRST, _NO_INT3,
 * _TAIL_BEFORE_INT3, _PUBLISH_AFTER_INT3, _NO_WMB, _NO_RMB. (detour-handler and emulate-old
 * edit an emulating handler, which this version does not have.)
 */
#include "pokesim.h"

/* ------------------------------------------------ arch/x86/kernel/alternative.c (v5.4) */

/* do_sync_core(): the IPI function, nothing but sync_core() (pokesim checks that). */
static void do_sync_core(void *info)
{
	sync_core();
}

/* struct text_poke_loc as v5.4 has it: where the handler sends a trapping CPU (`detour`), the
 * site, its length and the new bytes. */
struct text_poke_loc {
	void *detour;
	void *addr;
	size_t len;
	const char opcode[POKE_MAX_OPCODE_SIZE];
};

/* bp_patching: what the handler reads to find the batch being patched. */
static struct bp_patching_desc {
	struct text_poke_loc *vec;
	int nr_entries;
} bp_patching;

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

/*
 * poke_int3_handler() (v5.4): called from do_int3() with the trap frame. A trap at a site
 * being patched resumes at that site's detour (returns 1); anything else is handed on (0).
 */
int poke_int3_handler(struct pt_regs *regs)
{
	struct text_poke_loc *tp;
	unsigned char int3 = 0xcc;
	void *ip;

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
	ip = (void *)regs->ip - sizeof(int3);

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

	/* The detour the caller named: a jump, whatever the new instruction is. */
	regs->ip = (unsigned long)tp->detour;

	return 1;
}
NOKPROBE_SYMBOL(poke_int3_handler);

/*
 * text_poke_bp_batch() (v5.3 c0213b0ac03c): patch `nr_entries` sites, sorted by address,
 * that other CPUs may be executing, with the INT3 protocol:
 *  - publish the vector, then write an INT3 on every site, sync;
 *  - write every site's bytes after the first, sync if any;
 *  - write every site's first byte, sync;
 *  - withdraw the vector: vec = NULL, nr_entries = 0 (no sync: bug B3).
 * A CPU that hits an INT3 meanwhile is sent by poke_int3_handler() to the entry's detour.
 * Caller holds text_mutex.
 */
void text_poke_bp_batch(struct text_poke_loc *tp, unsigned int nr_entries)
{
	int patched_all_but_first = 0;
	unsigned char int3 = 0xcc;
	unsigned int i;

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
		text_poke(tp[i].addr, tp[i].opcode, tp[i].len);
#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	bp_patching.vec = tp;
	bp_patching.nr_entries = nr_entries;
#endif
	on_each_cpu(do_sync_core, NULL, 1);
	goto teardown;
#endif

#ifdef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* mutant tail-before-int3: the second step runs before the first. */
	for (patched_all_but_first = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].len - sizeof(int3) > 0) {
			text_poke((char *)tp[i].addr + sizeof(int3), (const char *)tp[i].opcode + sizeof(int3),
				  tp[i].len - sizeof(int3));
			patched_all_but_first++;
		}
	}
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (patched_all_but_first)
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
	for (patched_all_but_first = 0, i = 0; i < nr_entries; i++) {
		if (tp[i].len - sizeof(int3) > 0) {
			text_poke((char *)tp[i].addr + sizeof(int3), (const char *)tp[i].opcode + sizeof(int3),
				  tp[i].len - sizeof(int3));
			patched_all_but_first++;
		}
	}

	/* Intel calls this sync very likely unnecessary; the kernel keeps it. */
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (patched_all_but_first)
		on_each_cpu(do_sync_core, NULL, 1);
#endif
#endif

	/* Third step: the first byte of every site. */
	for (i = 0; i < nr_entries; i++)
		text_poke(tp[i].addr, tp[i].opcode, sizeof(int3));

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_FIRST
	on_each_cpu(do_sync_core, NULL, 1);
#endif

#ifdef POKESIM_MUTANT_NO_INT3
teardown:
#endif
	/* The last sync orders these stores after the new instructions (sync_core() implies
	 * smp_mb()); no sync separates them from each other (bug B3, fixed in v5.5). */
	bp_patching.vec = NULL;
	bp_patching.nr_entries = 0;
}

/*
 * text_poke_bp() (v5.4): patch one site, its entry on this stack; a trapping CPU is sent to
 * `handler`. More than POKE_MAX_OPCODE_SIZE bytes is refused with a warning. Caller holds
 * text_mutex.
 */
void text_poke_bp(void *addr, const void *opcode, size_t len, void *handler)
{
	struct text_poke_loc tp = {
		.detour = handler,
		.addr = addr,
		.len = len,
	};

	if (len > POKE_MAX_OPCODE_SIZE) {
		WARN_ONCE(1, "len is larger than %d\n", POKE_MAX_OPCODE_SIZE);
		return;
	}

	memcpy((void *)tp.opcode, opcode, len);

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
 * The batching caller, as arch/x86/kernel/jump_label.c is in v5.4
 * (arch_jump_label_transform_queue()/_apply()): a static vector of sorted entries, each filled
 * in by the caller (site, detour, length, bytes), handed to text_poke_bp_batch() when full and
 * at the end. The kernel
 * sizes it PAGE_SIZE / sizeof(struct text_poke_loc); pokesim's model flushes every 256
 * (sim-core/src/patching.rs, TEXT_POKE_ARRAY_MAX), and this file agrees with the model.
 */
#define TP_VEC_MAX 256
static struct text_poke_loc tp_vec[TP_VEC_MAX];
static int tp_vec_nr;

/* Where the handler sends a CPU trapping at `p`'s site: the request's detour, by default the
 * next instruction (what 5.4's jump_label passed). */
static void *pokesim_detour(const struct pokesim_poke *p)
{
	return (void *)(p->detour ? p->detour : p->addr + p->len);
}

/* One batch action: text_poke_bp() for one site, the jump_label-style vector for more, under
 * text_mutex. */
void pokesim_patch(const struct pokesim_poke *pokes, unsigned int nr)
{
	struct text_poke_loc *tp;
	unsigned int i;

	BUG_ON(nr > ARRAY_SIZE(pokesim_order));
	mutex_lock(&text_mutex);
	if (nr == 1) {
		text_poke_bp((void *)pokes[0].addr, pokes[0].text, pokes[0].len, pokesim_detour(&pokes[0]));
	} else {
		pokesim_sort(pokes, nr);
		for (i = 0; i < nr; i++) {
			const struct pokesim_poke *p = pokesim_order[i];

			if (tp_vec_nr == TP_VEC_MAX) {
				text_poke_bp_batch(tp_vec, tp_vec_nr);
				tp_vec_nr = 0;
			}
			tp = &tp_vec[tp_vec_nr++];
			BUG_ON(p->len > POKE_MAX_OPCODE_SIZE);
			tp->addr = (void *)p->addr;
			tp->detour = pokesim_detour(p);
			tp->len = p->len;
			memcpy((void *)tp->opcode, p->text, p->len);
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
 * v5.4 has the order 3ea1704a9296 ("x86/alternatives: Sync core before enabling
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
