#!/bin/sh
# c/check.sh — compiles every protocol file of c/protocols with the flags of the C ABI, once
# plain, once with CONFIG_KPROBES and once per mutant switch it has; links each with the
# runtime and a throwaway linker script that puts every kernel service of
# sim-core/src/kernel_image.rs at its slot on the service page; fails on a compile error or
# warning, on an undefined symbol, on a switch that names no mutant of
# sim-core/src/protocol/mutant.rs, or on a file whose switches differ from the table below.
# Also compiles a piece of pasted-kernel-style code (below) against the header.
# Usage: c/check.sh [file.c ...]   (default: every c/protocols/*.c)
set -eu
cd "$(dirname "$0")/.."
CC=${CC:-clang}
CFLAGS="--target=x86_64-unknown-none -ffreestanding -fno-builtin -fno-pic -mcmodel=small
  -mno-red-zone -mgeneral-regs-only -fno-stack-protector -fcf-protection=none
  -fno-asynchronous-unwind-tables -O2 -g -std=gnu11 -I c/include -Wall -Werror"
IMAGE=sim-core/src/kernel_image.rs
MUTANTS=sim-core/src/protocol/mutant.rs
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

# Which switches each file must have: the program and handler mutants whose Versions include
# the file's version (mutant.rs), kprobe and instrumented-handler mutants excluded.
ALL_VERSIONS="NO_SYNC_AFTER_INT3 NO_SYNC_AFTER_TAIL NO_SYNC_AFTER_FIRST NO_INT3 TAIL_BEFORE_INT3
  PUBLISH_AFTER_INT3 NO_WMB NO_RMB"
EMULATING="DETOUR_HANDLER EMULATE_OLD"
expected() {
	case "$1" in
	linux-5.4) echo $ALL_VERSIONS ;;
	seed) echo $ALL_VERSIONS $EMULATING ;;
	linux-5.5) echo $ALL_VERSIONS $EMULATING CLEAR_VEC_BEFORE_NR NO_SYNC_BEFORE_VEC_CLEAR ;;
	linux-5.6 | linux-6.0) echo $ALL_VERSIONS $EMULATING SKIP_REFS_WAIT ;;
	linux-6.16) echo $ALL_VERSIONS $EMULATING SKIP_REFS_WAIT JCC_NO_INVERT BATCH_NO_FULL_CHECK \
		BATCH_NO_ORDER_CHECK ;;
	*) echo "?" ;;
	esac | tr ' ' '\n' | grep . | sort
}

# The service page: SERVICE_BASE and the symbols in slot order (fn symbol's match arms).
base=$(sed -n 's/^pub const SERVICE_BASE: u64 = \(0x[0-9a-f_]*\);/\1/p' $IMAGE | tr -d _)
sed -n '/pub fn symbol(self)/,/^    }/s/.*Service::[A-Za-z]* => "\([a-z_]*\)",/\1/p' $IMAGE >"$tmp/services"
[ "$(wc -l <"$tmp/services")" -eq 12 ] || { echo "check.sh: expected 12 services in $IMAGE" >&2; exit 1; }
{
	echo "SECTIONS {"
	echo "  . = 0x08010000; .text : { *(.text*) } .rodata : { *(.rodata*) }"
	echo "  . = 0x08100000; .data : { *(.data*) } .bss : { *(.bss*) *(COMMON) }"
	echo "  /DISCARD/ : { *(.comment) *(.note*) *(.eh_frame*) }"
	echo "}"
	i=0
	while read -r sym; do
		printf '%s = %s + %d;\n' "$sym" "$base" $((16 * i))
		i=$((i + 1))
	done <"$tmp/services"
} >"$tmp/link.ld"

# Known mutant names, upper-snaked.
sed -n 's/^ *name: "\([a-z0-9-]*\)",/\1/p' $MUTANTS | tr 'a-z-' 'A-Z_' | sort >"$tmp/known"

$CC -c $CFLAGS c/runtime/pokesim-rt.c -o "$tmp/rt.o"

build() { # file label flags...
	f=$1 label=$2
	shift 2
	if ! $CC -c $CFLAGS "$@" "$f" -o "$tmp/p.o" 2>"$tmp/err"; then
		echo "FAIL $f [$label]: compile"; cat "$tmp/err"; return 1
	fi
	if ! ld -T "$tmp/link.ld" -o "$tmp/p.elf" "$tmp/rt.o" "$tmp/p.o" 2>"$tmp/err"; then
		echo "FAIL $f [$label]: link"; cat "$tmp/err"; return 1
	fi
	undef=$(nm -u "$tmp/p.elf")
	if [ -n "$undef" ]; then echo "FAIL $f [$label]: undefined: $undef"; return 1; fi
	for entry in pokesim_patch pokesim_poke pokesim_sync; do
		nm "$tmp/p.elf" | grep -q " T $entry\$" || { echo "FAIL $f [$label]: no $entry"; return 1; }
	done
	nm "$tmp/p.elf" | grep -Eq " T (poke_int3_handler|smp_text_poke_int3_handler)\$" ||
		{ echo "FAIL $f [$label]: no INT3 handler"; return 1; }
	return 0
}

status=0
files=${*:-c/protocols/*.c}
for f in $files; do
	version=$(basename "$f" .c)
	grep -o 'POKESIM_MUTANT_[A-Z0-9_]*' "$f" | sed 's/POKESIM_MUTANT_//' | sort -u >"$tmp/switches"
	unknown=$(comm -23 "$tmp/switches" "$tmp/known")
	[ -z "$unknown" ] || { echo "FAIL $f: switches that name no mutant: $unknown"; status=1; }
	if [ "$(expected "$version")" != "?" ]; then
		want=$(expected "$version")
		have=$(cat "$tmp/switches")
		if [ "$want" != "$have" ]; then
			echo "FAIL $f: switches differ from the table:"
			echo "$want" >"$tmp/want"; diff "$tmp/want" "$tmp/switches" || true
			status=1
		fi
	fi
	n=0 bad=0
	build "$f" plain && n=$((n + 1)) || bad=1
	build "$f" CONFIG_KPROBES -DCONFIG_KPROBES && n=$((n + 1)) || bad=1
	for s in $(cat "$tmp/switches"); do
		build "$f" "$s" "-DPOKESIM_MUTANT_$s" && n=$((n + 1)) || bad=1
	done
	if [ $bad = 0 ]; then echo "ok   $f: $n builds linked ($(wc -l <"$tmp/switches") switches)"; else status=1; fi
done

# Pasted-kernel-style code: the spellings alternative.c and text-patching.h use, against the
# header alone (written for this check, not copied from the kernel).
cat >"$tmp/pasted.c" <<'PASTED'
#include "pokesim.h"
#define TEST_INSN_OPCODE	0xCC
#define INT3_INSN_SIZE		1
#define INT3_INSN_OPCODE	0xCC
struct loc { s32 rel_addr; s32 disp; u8 len; u8 opcode; const u8 text[POKE_MAX_OPCODE_SIZE]; u8 old; };
static struct { struct loc vec[PAGE_SIZE / sizeof(struct loc)]; int nr_entries; } array;
static DEFINE_PER_CPU(atomic_t, refs);
static struct desc { struct loc *vec; int nr; atomic_t refs; } *descp, gdesc;
static_assert(sizeof(struct loc) == 16);
static __always_inline void *loc_addr(struct loc *tp) { return _stext + tp->rel_addr; }
static int notrace cmp(const void *key, const void *elt)
{
	struct loc *tp = (struct loc *)elt;
	if (key < loc_addr(tp)) return -1;
	if (key > loc_addr(tp)) return 1;
	return 0;
}
NOKPROBE_SYMBOL(cmp);
static __always_inline bool get(void)
{
	atomic_t *r = this_cpu_ptr(&refs);
	if (!raw_atomic_inc_not_zero(r)) return false;
	return true;
}
noinstr int handler(struct pt_regs *regs)
{
	struct loc *tp; void *ip; struct desc *d;
	if (user_mode(regs)) return 0;
	smp_rmb();
	if (!get()) return 0;
	d = READ_ONCE(descp);
	if (d && !atomic_inc_not_zero(&d->refs)) d = NULL;
	ip = (void *)regs->ip - INT3_INSN_SIZE;
	tp = __inline_bsearch(ip, array.vec, array.nr_entries, sizeof(struct loc), cmp);
	if (tp && (regs->flags & (X86_EFLAGS_CF | X86_EFLAGS_ZF | X86_EFLAGS_OF))) regs->ip += tp->len;
	if (d) { smp_mb__before_atomic(); atomic_dec(&d->refs); }
	smp_mb__before_atomic();
	raw_atomic_dec(this_cpu_ptr(&refs));
	return tp != NULL;
}
void __ref finish(void *addr, const void *opcode, size_t len, const void *emulate)
{
	struct insn insn; int i, ret;
	lockdep_assert_held(&text_mutex);
	ret = insn_decode_kernel(&insn, emulate ?: opcode);
	BUG_ON(ret < 0);
	kernel_insn_init(&insn, opcode, MAX_INSN_SIZE);
	insn_get_length(&insn);
	BUG_ON(!insn_complete(&insn) || insn.length != len);
	if (WARN_ON_ONCE(insn.opcode.nbytes > 2)) return;
	BUG_ON(memcmp(opcode, x86_nops[5], 5) && memcmp(opcode, ideal_nops[NOP_ATOMIC5], 5));
	for_each_possible_cpu(i) atomic_set_release(per_cpu_ptr(&refs, i), 1);
	gdesc.vec = array.vec; atomic_set_release(&gdesc.refs, 1);
	smp_store_release(&descp, &gdesc);
	smp_wmb();
	text_poke(addr, opcode, min(len, (size_t)POKE_MAX_OPCODE_SIZE));
	on_each_cpu((void (*)(void *))sync_core, NULL, 1);
	WRITE_ONCE(descp, NULL);
	if (!atomic_dec_and_test(&gdesc.refs)) atomic_cond_read_acquire(&gdesc.refs, !VAL);
	for_each_possible_cpu(i) {
		atomic_t *r = per_cpu_ptr(&refs, i);
		if (unlikely(!atomic_dec_and_test(r))) atomic_cond_read_acquire(r, !VAL);
	}
	array.nr_entries = insn.immediate.value + ARRAY_SIZE(array.vec) * insn.immediate.nbytes;
	if (IS_ENABLED(CONFIG_X86_64) && array.nr_entries < 0) unreachable();
	synchronize_rcu();
}
EXPORT_SYMBOL_GPL(finish);
PASTED
if $CC -c $CFLAGS -DCONFIG_X86_64=1 "$tmp/pasted.c" -o "$tmp/t.o" 2>"$tmp/err"; then
	echo "ok   pasted-kernel-style code compiles against pokesim.h"
else
	echo "FAIL pasted-kernel-style code"; cat "$tmp/err"; status=1
fi
exit $status
