// SPDX-License-Identifier: MIT
/*
 * linux-6.16: the INT3 text-patching protocol of arch/x86/kernel/alternative.c after Ingo
 * Molnar's 2025 rewrite ("Simplify, reorganize and clean up the x86 text-patching code":
 * text_poke_queue() -> smp_text_poke_batch_add(), text_poke_finish() ->
 * smp_text_poke_batch_finish(), text_poke_bp() -> smp_text_poke_single(), poke_int3_handler()
 * -> smp_text_poke_int3_handler()) with Eric Dumazet's per-CPU reference counts
 * (text_poke_array_refs). The vector is static (text_poke_array); the handler emulates RET
 * (c43a43e439e0), CALL, JMP32/JMP8 and Jcc (ac0ee0a9560c, "x86/alternatives: Teach
 * text_poke_bp() to patch Jcc.d32"; Jcc.d32 is kept as `0x70 | cc` with len 6).
 *
 * Written for pokesim from the kernel's structure: each function named and ordered as in
 * v6.16's alternative.c (and the int3_emulate_*() helpers of asm/text-patching.h), with
 * comments citing it; the code is pokesim's own. The Rust model this agrees with is
 * sim-core/src/protocol/linux_6_16.rs (`pokesim program --protocol linux-6.16`).
 *
 * Mutants (sim-core/src/protocol/mutant.rs), each a switch at the place the model edits:
 * POKESIM_MUTANT_NO_SYNC_AFTER_INT3, _NO_SYNC_AFTER_TAIL, _NO_SYNC_AFTER_FIRST, _NO_INT3,
 * _TAIL_BEFORE_INT3, _PUBLISH_AFTER_INT3, _DETOUR_HANDLER, _SKIP_REFS_WAIT, _EMULATE_OLD,
 * _NO_WMB, _NO_RMB, _JCC_NO_INVERT, _BATCH_NO_FULL_CHECK, _BATCH_NO_ORDER_CHECK,
 * _SINGLE_UNCHECKED_ADD, _UNLOCKED_REFS.
 */
#include "pokesim.h"

/* ------------------------------------------------ asm/text-patching.h (v6.16) */

#define TEXT_POKE_MAX_OPCODE_SIZE POKE_MAX_OPCODE_SIZE

/* int3_emulate_jmp(): the trapping CPU resumes at `ip`. */
static __always_inline void int3_emulate_jmp(struct pt_regs *regs, unsigned long ip)
{
	regs->ip = ip;
}

/* int3_emulate_push(): the entry code leaves a gap below the interrupted stack, so the
 * handler can push onto it (see the X86_TRAP_BP logic of the idtentry macro). */
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

/* int3_emulate_call(): push the return address (the site + CALL_INSN_SIZE), jump. (pokesim
 * has no call-depth tracking, so no call thunk accounting.) */
static __always_inline void int3_emulate_call(struct pt_regs *regs, unsigned long func)
{
	int3_emulate_push(regs, regs->ip - INT3_INSN_SIZE + CALL_INSN_SIZE);
	int3_emulate_jmp(regs, func);
}

/* int3_emulate_ret(): pop the return address, jump there. */
static __always_inline void int3_emulate_ret(struct pt_regs *regs)
{
	unsigned long ip = int3_emulate_pop(regs);

	int3_emulate_jmp(regs, ip);
}

/*
 * __emulate_cc(): whether condition `cc` (the low nibble of a Jcc opcode) holds for `flags`.
 * Even codes test a flag (or CF|ZF), odd codes its negation; 0xc..0xf compare SF with OF
 * (and ZF for 0xe/0xf), as the SDM's Jcc table has it.
 */
static __always_inline bool __emulate_cc(unsigned long flags, u8 cc)
{
	static const unsigned long cc_mask[6] = {
		[0] = X86_EFLAGS_OF,
		[1] = X86_EFLAGS_CF,
		[2] = X86_EFLAGS_ZF,
		[3] = X86_EFLAGS_CF | X86_EFLAGS_ZF,
		[4] = X86_EFLAGS_SF,
		[5] = X86_EFLAGS_PF,
	};
	bool invert = cc & 1;
	bool match;

	if (cc < 0xc) {
		match = flags & cc_mask[cc >> 1];
	} else {
		match = ((flags & X86_EFLAGS_SF) >> X86_EFLAGS_SF_BIT) ^
			((flags & X86_EFLAGS_OF) >> X86_EFLAGS_OF_BIT);
		if (cc >= 0xe)
			match = match || (flags & X86_EFLAGS_ZF);
	}

	return (match && !invert) || (!match && invert);
}

/* int3_emulate_jcc(): continue at `ip + disp` if the condition holds, else at `ip`. */
static __always_inline void int3_emulate_jcc(struct pt_regs *regs, u8 cc, unsigned long ip,
					     unsigned long disp)
{
	if (__emulate_cc(regs->flags, cc))
		ip += disp;

	int3_emulate_jmp(regs, ip);
}

/* ------------------------------------------------ arch/x86/kernel/alternative.c (v6.16) */

/* do_sync_core(): the IPI function, nothing but sync_core() (pokesim checks that). */
static void do_sync_core(void *info)
{
	sync_core();
}

/* smp_text_poke_sync_each_cpu(): every CPU serialises; the caller waits for all. */
void smp_text_poke_sync_each_cpu(void)
{
	on_each_cpu(do_sync_core, NULL, 1);
}

/*
 * struct smp_text_poke_loc: the site as an offset from _stext, the displacement of the
 * emulated branch, the bytes replaced (6 for Jcc.d32, whose 0x0f is not kept in text[]), the
 * opcode the handler switches on, the new bytes and the site's old first byte. 16 bytes, so a
 * page holds 256.
 */
struct smp_text_poke_loc {
	s32 rel_addr; /* addr := _stext + rel_addr */
	s32 disp;
	u8 len;
	u8 opcode;
	const u8 text[TEXT_POKE_MAX_OPCODE_SIZE];
	u8 old; /* see smp_text_poke_batch_finish() */
};

#define TEXT_POKE_ARRAY_MAX (PAGE_SIZE / sizeof(struct smp_text_poke_loc))

/* The static vector every caller shares, and its length. */
static struct smp_text_poke_array {
	struct smp_text_poke_loc vec[TEXT_POKE_ARRAY_MAX];
	int nr_entries;
} text_poke_array;

/* Each CPU's reference on text_poke_array: 1 while a batch is in flight, +1 per handler. */
static DEFINE_PER_CPU(atomic_t, text_poke_array_refs);

#ifdef POKESIM_MUTANT_EMULATE_OLD
/* mutant emulate-old: the bytes each queued site held before its batch (beside the vector,
 * which keeps its kernel size). */
static u8 pokesim_old[TEXT_POKE_ARRAY_MAX + 1][TEXT_POKE_MAX_OPCODE_SIZE + 1];
#endif

/* try_get_text_poke_array(): a reference on this CPU's count, or false when no batch is in
 * flight. Inlined into the noinstr handler. */
static __always_inline bool try_get_text_poke_array(void)
{
	atomic_t *refs = this_cpu_ptr(&text_poke_array_refs);

#ifdef POKESIM_MUTANT_UNLOCKED_REFS
	/* mutant unlocked-refs: the reference counts without LOCK (a UP kernel's atomics). */
	if (!unlocked_atomic_inc_not_zero(refs))
#else
	if (!raw_atomic_inc_not_zero(refs))
#endif
		return false;

	return true;
}

/* put_text_poke_array(): drop this CPU's reference (the patcher may be waiting for it). */
static __always_inline void put_text_poke_array(void)
{
	atomic_t *refs = this_cpu_ptr(&text_poke_array_refs);

	smp_mb__before_atomic();
#ifdef POKESIM_MUTANT_UNLOCKED_REFS
	unlocked_atomic_dec(refs);
#else
	raw_atomic_dec(refs);
#endif
}

/* text_poke_addr(): an entry's site. */
static __always_inline void *text_poke_addr(const struct smp_text_poke_loc *tpl)
{
	return _stext + tpl->rel_addr;
}

/* patch_cmp(): the inlined bsearch()'s comparison of the trapping address with a site. */
static __always_inline int patch_cmp(const void *tpl_a, const void *tpl_b)
{
	if (tpl_a < text_poke_addr(tpl_b))
		return -1;
	if (tpl_a > text_poke_addr(tpl_b))
		return 1;
	return 0;
}

#ifdef POKESIM_MUTANT_EMULATE_OLD
static void pokesim_loc_init(struct smp_text_poke_loc *tpl, void *addr, const void *opcode,
			     size_t len);

/* mutant emulate-old: the entry __smp_text_poke_batch_add() makes of the site's old bytes,
 * or NULL where they are an INT3 (not consumed). */
static struct smp_text_poke_loc *pokesim_old_loc(struct smp_text_poke_loc *tpl,
						 struct smp_text_poke_loc *old)
{
	const u8 *bytes = pokesim_old[tpl - text_poke_array.vec];

	if (bytes[0] == INT3_INSN_OPCODE)
		return NULL;
	pokesim_loc_init(old, text_poke_addr(tpl), bytes, tpl->len);
	return old;
}
#endif

/*
 * smp_text_poke_int3_handler() (noinstr): called from do_int3() with the trap frame. With a
 * reference on this CPU's count, a trap at a queued site has its new instruction emulated
 * (returns 1); anything else is handed on (0). The reference is dropped either way.
 */
noinstr int smp_text_poke_int3_handler(struct pt_regs *regs)
{
	struct smp_text_poke_loc *tpl;
	int ret = 0;
	void *ip;
#ifdef POKESIM_MUTANT_EMULATE_OLD
	struct smp_text_poke_loc old;
#endif

	if (user_mode(regs))
		return 0;

	/*
	 * Pairs with the smp_wmb() of smp_text_poke_batch_finish(): having seen its INT3, this
	 * CPU sees the refs = 1 (and the vector) stored before the INT3 was written.
	 */
#ifndef POKESIM_MUTANT_NO_RMB
	smp_rmb();
#endif

	if (!try_get_text_poke_array())
		return 0;

	/* regs->ip is past the INT3: the site is one byte before it. */
	ip = (void *)regs->ip - INT3_INSN_SIZE;

	/* More than one entry: binary search of the sorted vector; one: compare directly. */
	if (unlikely(text_poke_array.nr_entries > 1)) {
		tpl = __inline_bsearch(ip, text_poke_array.vec, text_poke_array.nr_entries,
				       sizeof(struct smp_text_poke_loc), patch_cmp);
		if (!tpl)
			goto out_put;
	} else {
		tpl = text_poke_array.vec;
		if (text_poke_addr(tpl) != ip)
			goto out_put;
	}

#ifdef POKESIM_MUTANT_EMULATE_OLD
	/* mutant emulate-old: emulate the instruction the site held before the batch. */
	tpl = pokesim_old_loc(tpl, &old);
	if (!tpl)
		goto out_put;
#endif

	ip += tpl->len;

#ifdef POKESIM_MUTANT_DETOUR_HANDLER
	/* mutant detour-handler: jump past the instruction instead of emulating it (B1). */
	int3_emulate_jmp(regs, (long)ip);
	ret = 1;
	goto out_put;
#endif

	switch (tpl->opcode) {
	case INT3_INSN_OPCODE:
		/* An INT3 someone poked on purpose: its owner handles it; not consumed. */
		goto out_put;

	case RET_INSN_OPCODE:
		int3_emulate_ret(regs);
		break;

	case CALL_INSN_OPCODE:
		int3_emulate_call(regs, (long)ip + tpl->disp);
		break;

	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		int3_emulate_jmp(regs, (long)ip + tpl->disp);
		break;

	case 0x70 ... 0x7f: /* Jcc */
#ifdef POKESIM_MUTANT_JCC_NO_INVERT
		/* mutant jcc-no-invert: the condition's inversion bit (cc & 1) is lost. */
		int3_emulate_jcc(regs, (tpl->opcode & 0xf) & ~1, (long)ip, tpl->disp);
#else
		int3_emulate_jcc(regs, tpl->opcode & 0xf, (long)ip, tpl->disp);
#endif
		break;

	default:
		BUG();
	}

	ret = 1;

out_put:
	put_text_poke_array();
	return ret;
}

/* pokesim_whole(): the `len` bytes an entry stands for (Jcc.d32: 0x0f, then text[]). */
static const u8 *pokesim_whole(struct smp_text_poke_loc *tpl, u8 *buf)
{
	if (tpl->len != 6)
		return tpl->text;
	buf[0] = 0x0f;
	memcpy(buf + 1, tpl->text, 5);
	return buf;
}

/* The second step for one entry: every byte after the first (Jcc.d32: 0x0f ‖ text[]). */
static int pokesim_poke_tail(struct smp_text_poke_loc *tpl)
{
	u8 _new[TEXT_POKE_MAX_OPCODE_SIZE + 1];
	const u8 *new = pokesim_whole(tpl, _new);
	int len = tpl->len;

	if (len - INT3_INSN_SIZE > 0) {
		text_poke(text_poke_addr(tpl) + INT3_INSN_SIZE, new + INT3_INSN_SIZE,
			  len - INT3_INSN_SIZE);
		return 1;
	}
	return 0;
}

/*
 * smp_text_poke_batch_finish(): patch the queued sites (sorted by address) that other CPUs
 * may be executing, with the INT3 protocol:
 *  - set every CPU's text_poke_array_refs to 1 (release), then write an INT3 on every site
 *    (remembering its old first byte), sync;
 *  - write every site's bytes after the first, sync if any;
 *  - write every site's first byte (0x0f for Jcc.d32) unless it is an INT3, sync if any;
 *  - drop every CPU's first reference and wait for its handlers' to drain; empty the vector.
 * Caller holds text_mutex.
 */
void smp_text_poke_batch_finish(void)
{
	unsigned char int3 = INT3_INSN_OPCODE;
	unsigned int i;
	int do_sync;

	if (!text_poke_array.nr_entries)
		return;

	lockdep_assert_held(&text_mutex);

#ifndef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	/* A handler that reads refs != 0 (try_get_text_poke_array()) sees the vector. */
	for_each_possible_cpu(i)
		atomic_set_release(per_cpu_ptr(&text_poke_array_refs, i), 1);

	/* 9350a629e839: thousands of ftrace sites must not trip the softlockup watchdog. */
	cond_resched();

	/* Orders the publication before the INT3s; pairs with the handler's smp_rmb(). */
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifdef POKESIM_MUTANT_NO_INT3
	/* mutant no-int3: each site in one text_poke(), no INT3 step. */
	for (i = 0; i < text_poke_array.nr_entries; i++) {
		u8 _new[TEXT_POKE_MAX_OPCODE_SIZE + 1];
		struct smp_text_poke_loc *tpl = &text_poke_array.vec[i];

		text_poke(text_poke_addr(tpl), pokesim_whole(tpl, _new), tpl->len);
	}
#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	for_each_possible_cpu(i)
		atomic_set_release(per_cpu_ptr(&text_poke_array_refs, i), 1);
#endif
	smp_text_poke_sync_each_cpu();
	goto teardown;
#endif

#ifdef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* mutant tail-before-int3: the second step runs before the first. */
	for (do_sync = 0, i = 0; i < text_poke_array.nr_entries; i++)
		do_sync += pokesim_poke_tail(&text_poke_array.vec[i]);
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		smp_text_poke_sync_each_cpu();
#endif
#endif

	/* First step: an INT3 on every site. */
	for (i = 0; i < text_poke_array.nr_entries; i++) {
		text_poke_array.vec[i].old = *(u8 *)text_poke_addr(&text_poke_array.vec[i]);
		text_poke(text_poke_addr(&text_poke_array.vec[i]), &int3, INT3_INSN_SIZE);
	}

#ifdef POKESIM_MUTANT_PUBLISH_AFTER_INT3
	/* mutant publish-after-int3: the references are set after the INT3s. */
	for_each_possible_cpu(i)
		atomic_set_release(per_cpu_ptr(&text_poke_array_refs, i), 1);
#ifndef POKESIM_MUTANT_NO_WMB
	smp_wmb();
#endif
#endif

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_INT3
	smp_text_poke_sync_each_cpu();
#endif

#ifndef POKESIM_MUTANT_TAIL_BEFORE_INT3
	/* Second step: every byte after the first (perf's text_poke event not modelled). */
	for (do_sync = 0, i = 0; i < text_poke_array.nr_entries; i++)
		do_sync += pokesim_poke_tail(&text_poke_array.vec[i]);

	/* Intel calls this sync very likely unnecessary; the kernel keeps it. */
#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_TAIL
	if (do_sync)
		smp_text_poke_sync_each_cpu();
#endif
#endif

	/* Third step: the first byte, unless the new first byte is itself an INT3. */
	for (do_sync = 0, i = 0; i < text_poke_array.nr_entries; i++) {
		u8 byte = text_poke_array.vec[i].text[0];

		if (text_poke_array.vec[i].len == 6)
			byte = 0x0f;

		if (byte == INT3_INSN_OPCODE)
			continue;

		text_poke(text_poke_addr(&text_poke_array.vec[i]), &byte, INT3_INSN_SIZE);
		do_sync++;
	}

#ifndef POKESIM_MUTANT_NO_SYNC_AFTER_FIRST
	if (do_sync)
		smp_text_poke_sync_each_cpu();
#endif

#ifdef POKESIM_MUTANT_NO_INT3
teardown:
#endif
	/*
	 * Drop each CPU's first reference and wait for its handlers'. Once the last sync ran,
	 * no handler is still inside, so this only waits when a new first byte is an INT3.
	 */
	for_each_possible_cpu(i) {
		atomic_t *refs = per_cpu_ptr(&text_poke_array_refs, i);

#ifdef POKESIM_MUTANT_SKIP_REFS_WAIT
		/* mutant skip-refs-wait: move on while handlers may still use the vector. */
		atomic_dec_and_test(refs);
#elif defined(POKESIM_MUTANT_UNLOCKED_REFS)
		if (unlikely(!unlocked_atomic_dec_and_test(refs)))
			atomic_cond_read_acquire(refs, !VAL);
#else
		if (unlikely(!atomic_dec_and_test(refs)))
			atomic_cond_read_acquire(refs, !VAL);
#endif
	}

	/* Every handler is done with the vector. */
	text_poke_array.nr_entries = 0;
}

/* is_jcc32() (asm/insn.h): Jcc.d32 is 0x0f 0x80..0x8f — from pokesim.h, as the kernel has it
 * in a header. */

/*
 * __smp_text_poke_batch_add(): append one site to text_poke_array — no check of room or
 * order (the caller's job) — decoding the instruction to emulate (`emulate`, or the new
 * bytes) into {opcode, disp}: INT3 and RET as they are (RET, JMP32 and JMP8 may be padded
 * with INT3 up to `len`; anything else must be exactly `len` bytes); CALL, JMP32, JMP8 and Jcc
 * with their displacement (Jcc.d32 as 0x70 | cc, len 6); the canonical NOP2/NOP5 as
 * JMP8/JMP32 + 0; anything else BUG().
 */
static void __smp_text_poke_batch_add(void *addr, const void *opcode, size_t len, const void *emulate)
{
	struct smp_text_poke_loc *tpl;
	struct insn insn;
	int ret, i = 0;

	tpl = &text_poke_array.vec[text_poke_array.nr_entries++];

#ifdef POKESIM_MUTANT_EMULATE_OLD
	memcpy(pokesim_old[tpl - text_poke_array.vec], addr, len);
#endif

	/* Jcc.d32: text[] keeps the five bytes after the 0x0f. */
	if (len == 6)
		i = 1;
	memcpy((void *)tpl->text, (const u8 *)opcode + i, len - i);
	if (!emulate)
		emulate = opcode;

	ret = insn_decode_kernel(&insn, emulate);
	BUG_ON(ret < 0);

	tpl->rel_addr = addr - (void *)_stext;
	tpl->len = len;
	tpl->opcode = insn.opcode.bytes[0];

	/* Jcc.d32 is kept as the Jcc.d8 opcode; len tells them apart. */
	if (is_jcc32(&insn))
		tpl->opcode = insn.opcode.bytes[1] - 0x10;

	switch (tpl->opcode) {
	case RET_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		/* No fall-through into the next instruction: INT3 padding is allowed. */
		for (i = insn.length; i < len; i++)
			BUG_ON(tpl->text[i] != INT3_INSN_OPCODE);
		break;

	default:
		BUG_ON(len != insn.length);
	}

	switch (tpl->opcode) {
	case INT3_INSN_OPCODE:
	case RET_INSN_OPCODE:
		break;

	case CALL_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
	case 0x70 ... 0x7f: /* Jcc */
		tpl->disp = insn.immediate.value;
		break;

	default: /* not a branch: it must be the NOP the kernel would use */
		switch (len) {
		case 2: /* NOP2, emulated as JMP8 +0 */
			BUG_ON(memcmp(emulate, x86_nops[len], len));
			tpl->opcode = JMP8_INSN_OPCODE;
			tpl->disp = 0;
			break;

		case 5: /* NOP5, emulated as JMP32 +0 */
			BUG_ON(memcmp(emulate, x86_nops[len], len));
			tpl->opcode = JMP32_INSN_OPCODE;
			tpl->disp = 0;
			break;

		default:
			BUG();
		}
		break;
	}
}

#ifdef POKESIM_MUTANT_EMULATE_OLD
/* mutant emulate-old: __smp_text_poke_batch_add()'s decoding of `len` bytes into a local
 * entry (the handler must not append to the vector). */
static void pokesim_loc_init(struct smp_text_poke_loc *tpl, void *addr, const void *opcode, size_t len)
{
	const u8 *bytes = opcode;
	struct insn insn;
	size_t i;

	BUG_ON(insn_decode_kernel(&insn, opcode) < 0);
	tpl->rel_addr = addr - (void *)_stext;
	tpl->len = len;
	tpl->opcode = insn.opcode.bytes[0];
	tpl->disp = 0;
	if (is_jcc32(&insn))
		tpl->opcode = insn.opcode.bytes[1] - 0x10;

	switch (tpl->opcode) {
	case RET_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
		for (i = insn.length; i < len; i++)
			BUG_ON(bytes[i] != INT3_INSN_OPCODE);
		break;
	default:
		BUG_ON(len != insn.length);
	}

	switch (tpl->opcode) {
	case INT3_INSN_OPCODE:
	case RET_INSN_OPCODE:
		break;
	case CALL_INSN_OPCODE:
	case JMP32_INSN_OPCODE:
	case JMP8_INSN_OPCODE:
	case 0x70 ... 0x7f:
		tpl->disp = insn.immediate.value;
		break;
	default:
		BUG_ON((len != 2 && len != 5) || memcmp(opcode, x86_nops[len], len));
		tpl->opcode = len == 2 ? JMP8_INSN_OPCODE : JMP32_INSN_OPCODE;
		break;
	}
}
#endif

/* text_poke_addr_ordered(): whether `addr` may be appended without breaking the vector's
 * order (bsearch needs it sorted). */
static bool __maybe_unused text_poke_addr_ordered(void *addr)
{
	WARN_ON_ONCE(!addr);

	if (!text_poke_array.nr_entries)
		return true;

	/* The last queued site lies above `addr`: the queue must be flushed first. */
	if (text_poke_addr(text_poke_array.vec + text_poke_array.nr_entries - 1) > addr)
		return false;

	return true;
}

/*
 * smp_text_poke_batch_add(): queue one site, first patching what is queued if the vector is
 * full or `addr` would break its order. Caller holds text_mutex.
 */
void __ref smp_text_poke_batch_add(void *addr, const void *opcode, size_t len, const void *emulate)
{
#if defined(POKESIM_MUTANT_BATCH_NO_FULL_CHECK) && defined(POKESIM_MUTANT_BATCH_NO_ORDER_CHECK)
	/* mutants batch-no-full-check and batch-no-order-check: no flush at all. */
	if (0)
#elif defined(POKESIM_MUTANT_BATCH_NO_FULL_CHECK)
	/* mutant batch-no-full-check: a full vector is appended to (past its end). */
	if (!text_poke_addr_ordered(addr))
#elif defined(POKESIM_MUTANT_BATCH_NO_ORDER_CHECK)
	/* mutant batch-no-order-check: an out-of-order site is appended (unsorted vector). */
	if (text_poke_array.nr_entries == TEXT_POKE_ARRAY_MAX)
#else
	if (text_poke_array.nr_entries == TEXT_POKE_ARRAY_MAX || !text_poke_addr_ordered(addr))
#endif
		smp_text_poke_batch_finish();
	__smp_text_poke_batch_add(addr, opcode, len, emulate);
}

/*
 * smp_text_poke_single(): patch one site through the shared vector: add it, then finish —
 * patching with it whatever another caller queued and has not finished. It adds through
 * smp_text_poke_batch_add(), whose checks first flush a full vector or one whose last site
 * lies above `addr` (the fix of the June 2025 report, docs/reference/kprobes.md §9).
 * Caller holds text_mutex.
 */
void __ref smp_text_poke_single(void *addr, const void *opcode, size_t len, const void *emulate)
{
#ifdef POKESIM_MUTANT_SINGLE_UNCHECKED_ADD
	/* mutant single-unchecked-add (8976ade0c1b, linux-next June 2025): appended without the
	 * checks — below a queued site, the vector is unsorted and bsearch() misses entries. */
	__smp_text_poke_batch_add(addr, opcode, len, emulate);
#else
	smp_text_poke_batch_add(addr, opcode, len, emulate);
#endif
	smp_text_poke_batch_finish();
}

/* ------------------------------------------------ pokesim's entry points (c/README.md) */

/*
 * One batch action, as a batching caller (jump_label, ftrace) makes it: every request through
 * smp_text_poke_batch_add() in the order given (it flushes on a full vector or an
 * out-of-order site), then smp_text_poke_batch_finish(), under text_mutex.
 */
void pokesim_patch(const struct pokesim_poke *pokes, unsigned int nr)
{
	unsigned int i;

	mutex_lock(&text_mutex);
	for (i = 0; i < nr; i++)
		smp_text_poke_batch_add((void *)pokes[i].addr, pokes[i].text, pokes[i].len,
					pokes[i].emulate_len ? pokes[i].emulate : NULL);
	smp_text_poke_batch_finish();
	mutex_unlock(&text_mutex);
}

/*
 * The callers that share text_poke_array one text_mutex section at a time: jump_label's
 * arch_jump_label_transform_queue() adds each site under text_mutex and
 * arch_jump_label_transform_apply() finishes them under it again; in between, a caller of
 * smp_text_poke_single() (arch_jump_label_transform(), static_call, the kprobe optimizer) may
 * take text_mutex and use the same vector.
 */
void pokesim_batch_add(const struct pokesim_poke *p)
{
	mutex_lock(&text_mutex);
	smp_text_poke_batch_add((void *)p->addr, p->text, p->len, p->emulate_len ? p->emulate : NULL);
	mutex_unlock(&text_mutex);
}

void pokesim_batch_finish(void)
{
	mutex_lock(&text_mutex);
	smp_text_poke_batch_finish();
	mutex_unlock(&text_mutex);
}

/* A caller that patches one site at once. */
void pokesim_single(const struct pokesim_poke *p)
{
	mutex_lock(&text_mutex);
	smp_text_poke_single((void *)p->addr, p->text, p->len, p->emulate_len ? p->emulate : NULL);
	mutex_unlock(&text_mutex);
}

/* A plain text_poke() outside the INT3 protocol, under text_mutex. */
void pokesim_poke(unsigned long addr, const unsigned char *bytes, unsigned int len)
{
	mutex_lock(&text_mutex);
	text_poke((void *)addr, bytes, len);
	mutex_unlock(&text_mutex);
}

/* The workload's explicit sync. */
void pokesim_sync(void)
{
	smp_text_poke_sync_each_cpu();
}

/* ------------------------------------------------ text_poke_early() (boot-time alternatives)
 *
 * text_poke_early(): patch code no other CPU runs (apply_alternatives() at boot, before SMP;
 * a module's text before it is live), by a plain memcpy() through the text's own address,
 * with sync_core() before interrupts are re-enabled — 3ea1704a9296 ("x86/alternatives: Sync
 * core before enabling interrupts", Thomas Gleixner, Dec 2023, v6.7): "the synchronization
 * should happen before interrupts are re-enabled to ensure that a pending interrupt observes
 * the complete update of the opcodes". (The NX/module-text branch is not modelled.)
 * Mutant text-poke-early-swap: the other order (the one before the fix).
 */
void text_poke_early(void *addr, const void *opcode, size_t len)
{
	unsigned long flags;

	local_irq_save(flags);
	pokesim_text_memcpy(addr, opcode, len);
#ifdef POKESIM_MUTANT_TEXT_POKE_EARLY_SWAP
	/* mutant text-poke-early-swap: the order before 3ea1704a9296 — interrupts first. */
	local_irq_restore(flags);
	sync_core();
#else
	sync_core();
	local_irq_restore(flags);
#endif
}

/* Boot-time patching of one site (apply_alternatives()): text_poke_early(). */
void pokesim_early(unsigned long addr, const unsigned char *bytes, unsigned int len)
{
	text_poke_early((void *)addr, bytes, len);
}
