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
  PUBLISH_AFTER_INT3 NO_WMB NO_RMB TEXT_POKE_EARLY_SWAP"
EMULATING="DETOUR_HANDLER EMULATE_OLD"
expected() {
	case "$1" in
	linux-5.4) echo $ALL_VERSIONS ;;
	seed) echo $ALL_VERSIONS $EMULATING ;;
	linux-5.5) echo $ALL_VERSIONS $EMULATING CLEAR_VEC_BEFORE_NR NO_SYNC_BEFORE_VEC_CLEAR ;;
	linux-5.6 | linux-6.0) echo $ALL_VERSIONS $EMULATING SKIP_REFS_WAIT UNLOCKED_REFS ;;
	linux-6.16) echo $ALL_VERSIONS $EMULATING SKIP_REFS_WAIT JCC_NO_INVERT BATCH_NO_FULL_CHECK \
		BATCH_NO_ORDER_CHECK SINGLE_UNCHECKED_ADD UNLOCKED_REFS ;;
	*) echo "?" ;;
	esac | tr ' ' '\n' | grep . | sort
}

# The service page: SERVICE_BASE and the symbols in slot order (fn symbol's match arms).
base=$(sed -n 's/^pub const SERVICE_BASE: u64 = \(0x[0-9a-f_]*\);/\1/p' $IMAGE | tr -d _)
sed -n '/pub fn symbol(self)/,/^    }/s/.*Service::[A-Za-z]* => "\([a-z_]*\)",/\1/p' $IMAGE >"$tmp/services"
[ "$(wc -l <"$tmp/services")" -eq 13 ] || { echo "check.sh: expected 13 services in $IMAGE" >&2; exit 1; }
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
# Host run: each file compiled for the host and linked with stub services (text_poke a
# memcpy that logs, on_each_cpu a logged call, a small decoder) patches a CALL over a NOP5 and
# a batch of three sites given out of order, with the handler called right after the INT3 is
# written; the final bytes, the emulation and (when pokesim is built) the order of writes and
# syncs for every program mutant are checked against the Rust model's `pokesim program`.
cat >"$tmp/harness.c" <<'HARNESS'
/* Host harness: runs a protocol file natively with stub services; checks write order,
 * handler emulation mid-patch. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct pt_regs { unsigned long r15,r14,r13,r12,bp,bx,r11,r10,r9,r8,ax,cx,dx,si,di,orig_ax,ip,cs,flags,sp,ss; };
struct pokesim_poke { unsigned long addr; unsigned int len, emulate_len; unsigned long detour; unsigned char text[16], emulate[16]; };
struct pokesim_insn_info { unsigned char length, opcode_nbytes, opcode[3], immediate_nbytes, pad[2]; long long immediate; };
struct mutex { long owner; };
struct mutex text_mutex;
void pokesim_patch(const struct pokesim_poke *, unsigned int);
int poke_int3_handler(struct pt_regs *) __attribute__((weak));
int smp_text_poke_int3_handler(struct pt_regs *) __attribute__((weak));

static unsigned char text[4096] __attribute__((aligned(4096)));
static char log_[8192];
static int held;
/* handler probe: when the INT3 lands on probe_site, run the handler then */
static unsigned long probe_site; static int probed; static struct pt_regs probe_regs; static int probe_ret;
static unsigned long stack[64];

static void logf_(const char *s) { strcat(log_, s); strcat(log_, " "); }

static int handler(struct pt_regs *r) { return poke_int3_handler ? poke_int3_handler(r) : smp_text_poke_int3_handler(r); }

void *text_poke(void *addr, const void *op, size_t len) {
	char b[64];
	if (!held) { fprintf(stderr, "text_poke without text_mutex\n"); exit(1); }
	memcpy(addr, op, len);
	sprintf(b, "poke@%ld:%zu", (long)((unsigned char *)addr - text), len); logf_(b);
	if (!probed && probe_site && (unsigned long)addr == probe_site && len == 1 && *(unsigned char *)op == 0xcc) {
		probed = 1;
		memset(&probe_regs, 0, sizeof probe_regs);
		probe_regs.ip = probe_site + 1; probe_regs.cs = 0x10; probe_regs.sp = (unsigned long)&stack[32];
		probe_regs.flags = 0x246; /* ZF set */
		probe_ret = handler(&probe_regs);
	}
	return addr;
}
void on_each_cpu(void (*f)(void *), void *i, int w) { logf_("sync"); f(i); (void)w; }
void sync_core(void) {}
void pokesim_text_memcpy(void *a, const void *o, size_t l) { memcpy(a, o, l); }
void mutex_lock(struct mutex *m) { if (m != &text_mutex || held) exit(2); held = 1; }
void mutex_unlock(struct mutex *m) { if (m != &text_mutex || !held) exit(2); held = 0; }
void pokesim_lockdep_assert_held(const void *l, const char *f, int line) { if (l != &text_mutex || !held) { fprintf(stderr, "lockdep %s:%d\n", f, line); exit(3); } }
void synchronize_rcu(void) {}
int pokesim_smp_processor_id(void) { return 0; }
unsigned int pokesim_nr_cpu_ids(void) { return 2; }
void pokesim_bug(const char *f, int l, const char *c) { fprintf(stderr, "BUG %s:%d %s\n", f, l, c); exit(4); }
void pokesim_warn(const char *f, int l, const char *c) { fprintf(stderr, "WARN %s:%d %s\n", f, l, c); }
int pokesim_insn_decode(const void *k, struct pokesim_insn_info *o) {
	const unsigned char *b = k; memset(o, 0, sizeof *o);
	o->opcode[0] = b[0]; o->opcode_nbytes = 1;
	switch (b[0]) {
	case 0xe8: case 0xe9: o->length = 5; o->immediate_nbytes = 4; o->immediate = *(int *)(b + 1); break;
	case 0xeb: o->length = 2; o->immediate_nbytes = 1; o->immediate = (signed char)b[1]; break;
	case 0x70 ... 0x7f: o->length = 2; o->immediate_nbytes = 1; o->immediate = (signed char)b[1]; break;
	case 0xcc: case 0xc3: case 0x90: o->length = 1; break;
	case 0x66: if (b[1] == 0x90) { o->length = 2; o->opcode[0] = 0x90; } else return -22; break;
	case 0x0f: o->opcode[1] = b[1]; o->opcode_nbytes = 2;
		if ((b[1] & 0xf0) == 0x80) { o->length = 6; o->immediate_nbytes = 4; o->immediate = *(int *)(b + 2); }
		else if (b[1] == 0x1f && b[2] == 0x44) o->length = 5; else return -22; break;
	default: return -22;
	}
	return 0;
}

static const unsigned char NOP5[5] = {0x0f,0x1f,0x44,0,0};
static void mkpoke(struct pokesim_poke *p, unsigned off, const unsigned char *b, unsigned len) {
	memset(p, 0, sizeof *p); p->addr = (unsigned long)&text[off]; p->len = len; memcpy(p->text, b, len);
}

int main(int argc, char **argv) {
	const char *want = argv[1];
	struct pokesim_poke p[3];
	unsigned char call[5] = {0xe8, 0x10, 0, 0, 0};
	unsigned char jmp[5] = {0xe9, 0x20, 0, 0, 0};
	int fails = 0;
	memset(text, 0x90, sizeof text);
	memcpy(&text[100], NOP5, 5); memcpy(&text[200], NOP5, 5); memcpy(&text[300], NOP5, 5);
	/* 1: single CALL, handler probed after its INT3 */
	mkpoke(&p[0], 100, call, 5);
	probe_site = (unsigned long)&text[100];
	pokesim_patch(p, 1);
	printf("single: %s\n", log_);
	if (memcmp(&text[100], call, 5)) { printf("FAIL final bytes\n"); fails++; }
	if (strstr(want, "detour")) {
		if (!(probe_ret == 1 && probe_regs.ip == (unsigned long)&text[105])) { printf("FAIL detour %d %lx\n", probe_ret, probe_regs.ip); fails++; }
	} else if (strstr(want, "nohandler")) {
	} else if (!(probe_ret == 1 && probe_regs.ip == (unsigned long)&text[105 + 0x10] && probe_regs.sp == (unsigned long)&stack[31] && stack[31] == (unsigned long)&text[105])) {
		printf("FAIL emulate call ret=%d ip=%lx\n", probe_ret, probe_regs.ip); fails++;
	}
	/* 2: three sites given out of order; probe the middle one (bsearch) */
	log_[0] = 0; probed = 0;
	mkpoke(&p[0], 300, jmp, 5); mkpoke(&p[1], 100, NOP5, 5); mkpoke(&p[2], 200, jmp, 5);
	probe_site = (unsigned long)&text[200];
	pokesim_patch(p, 3);
	printf("batch: %s\n", log_);
	printf("probe: ret=%d ip=+%ld\n", probe_ret, (long)(probe_regs.ip - (unsigned long)text));
	if (memcmp(&text[100], NOP5, 5) || memcmp(&text[200], jmp, 5) || memcmp(&text[300], jmp, 5)) { printf("FAIL batch bytes\n"); fails++; }
	/* 3 (jcc): a Jcc.d32 jne patched; ZF set so not taken */
	if (strstr(want, "jcc")) {
		unsigned char jne[6] = {0x0f, 0x85, 0x30, 0, 0, 0};
		memcpy(&text[400], "\x0f\x84\x30\x00\x00\x00", 6);
		log_[0] = 0; probed = 0;
		mkpoke(&p[0], 400, jne, 6); probe_site = (unsigned long)&text[400];
		pokesim_patch(p, 1);
		printf("jcc: %s ret=%d ip=+%ld\n", log_, probe_ret, (long)(probe_regs.ip - (unsigned long)text));
		if (memcmp(&text[400], jne, 6) || probe_regs.ip != (unsigned long)&text[406]) { printf("FAIL jcc\n"); fails++; }
	}
	printf(fails ? "FAILED\n" : "PASS\n");
	return fails;
}
HARNESS
HOSTCC="$CC -O2 -fno-pic -mno-red-zone -fno-builtin -std=gnu11 -I c/include"
host_run() { # file mutant-switch-or-empty -> prints the harness's output
	$HOSTCC ${2:+-DPOKESIM_MUTANT_$2} -c "$1" -o "$tmp/hp.o" && $CC -no-pie "$tmp/h.o" "$tmp/hp.o" -o "$tmp/run" &&
		"$tmp/run" "$3"
}
POKESIM=${POKESIM:-target/debug/pokesim}
if $CC -O1 -fno-pic -c "$tmp/harness.c" -o "$tmp/h.o" 2>"$tmp/err"; then
	for f in $files; do
		version=$(basename "$f" .c)
		case $version in linux-5.4) mode=detour ;; linux-6.16) mode=jcc ;; *) mode=emulate ;; esac
		if host_run "$f" "" $mode >"$tmp/out" 2>&1 && grep -q '^PASS' "$tmp/out"; then
			echo "ok   $f: host run (patch, batch, handler mid-patch)"
		else
			echo "FAIL $f: host run"; cat "$tmp/out"; status=1
		fi
		[ -x "$POKESIM" ] || continue
		same=0 diff=0
		for m in "" $(grep -o 'POKESIM_MUTANT_[A-Z0-9_]*' "$f" | sort -u | sed 's/POKESIM_MUTANT_//'); do
			name=$(echo "$m" | tr 'A-Z_' 'a-z-')
			prog=$("$POKESIM" program -q --protocol "$version" ${name:+--mutant $name} 2>/dev/null |
				sed -n 's/^program = //p')
			[ -n "$prog" ] || continue # a handler or batching mutant: no program of its own
			want=$(echo "$prog" | tr -d '[]",' | tr ' ' '\n' | awk '
				$1=="poke-int3"{printf "poke@100:1 "} $1=="poke-tail"{printf "poke@101:4 "}
				$1=="poke-first"||$1=="poke-first-always"{printf "poke@100:1 "}
				$1=="poke-whole"{printf "poke@100:5 "} $1=="sync"||$1=="sync-if-do-sync"{printf "sync "}')
			have=$(host_run "$f" "$m" nohandler 2>/dev/null | sed -n 's/^single: //p')
			if [ "$want" = "$have" ]; then same=$((same + 1)); else
				echo "FAIL $f ${m:-plain}: writes and syncs differ from the model"
				echo "     model: $want"; echo "     C:     $have"; status=1 diff=1
			fi
		done
		[ $diff = 1 ] || echo "ok   $f: $same programs write and sync in the model's order"
	done
else
	echo "FAIL host harness"; cat "$tmp/err"; status=1
fi
exit $status
