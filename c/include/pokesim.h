/* SPDX-License-Identifier: MIT */
/*
 * pokesim.h — the kernel names that x86 text-patching code uses, for a protocol file that
 * pokesim compiles as freestanding x86-64 and runs on its vCPUs (issue 24, docs/DESIGN.md
 * §2.15, the ABI in c/README.md).
 *
 * The goal: the functions of arch/x86/kernel/alternative.c and
 * arch/x86/include/asm/text-patching.h of a kernel release, pasted unchanged after one
 * `#include "pokesim.h"`, compile. Everything here is written for pokesim from the kernel's
 * documented interfaces (include/linux/compiler.h, asm/barrier.h, asm/atomic.h,
 * linux/percpu-defs.h, asm/insn.h, lib/bsearch.c, ...); none of it is kernel source.
 *
 * Two kinds of names:
 *  - kernel services pokesim carries out (text_poke(), on_each_cpu(), sync_core(),
 *    mutex_lock/unlock(&text_mutex), synchronize_rcu(), and the pokesim_* helpers behind
 *    smp_processor_id(), nr_cpu_ids, lockdep_assert_held(), BUG()/WARN(), the instruction
 *    decoder): extern functions the linker places on pokesim's service page
 *    (sim-core/src/kernel_image.rs, `Service`);
 *  - everything else (barriers, atomics, per-CPU variables, struct insn, ...) is ordinary
 *    inline code that runs instruction by instruction on the vCPU: atomics are real locked
 *    instructions, READ_ONCE/WRITE_ONCE real loads and stores.
 */
#ifndef POKESIM_H
#define POKESIM_H

/* ---------------------------------------------------------------- types (linux/types.h) */

typedef unsigned char u8;
typedef unsigned short u16;
typedef unsigned int u32;
typedef unsigned long long u64;
typedef signed char s8;
typedef short s16;
typedef int s32;
typedef long long s64;
typedef u8 __u8;
typedef u16 __u16;
typedef u32 __u32;
typedef u64 __u64;
typedef s32 __s32;
typedef s64 __s64;
typedef unsigned long size_t;
typedef long ssize_t;
typedef long ptrdiff_t;
typedef unsigned long uintptr_t;
typedef unsigned long phys_addr_t;
typedef _Bool bool;
typedef u8 insn_byte_t;
typedef int insn_value_t;
typedef unsigned int insn_attr_t;

#define true 1
#define false 0
#define NULL ((void *)0)

#define EINVAL 22
#define EFAULT 14
#define EBUSY 16

/* ---------------------------------------------------- compiler (linux/compiler*.h) */

#define likely(x) __builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)
#define __always_inline inline __attribute__((__always_inline__))
#define noinline __attribute__((__noinline__))
#define __noreturn __attribute__((__noreturn__))
#define __maybe_unused __attribute__((__unused__))
#define __always_unused __attribute__((__unused__))
#define __used __attribute__((__used__))
#define __aligned(x) __attribute__((__aligned__(x)))
#define __packed __attribute__((__packed__))
#define __weak __attribute__((__weak__))
#define __pure __attribute__((__pure__))
/* noinstr: the kernel also moves such code to .noinstr.text; pokesim keeps one .text. */
#define noinstr noinline
#define notrace
#define __visible
#define asmlinkage
#define __init
#define __initdata
#define __initconst
#define __ref
#define __ro_after_init
#define __read_mostly
#define __percpu
#define __rcu
#define __user
#define __iomem
#define __force
#define __must_check
#define __cold
#define __flatten
#define fallthrough __attribute__((__fallthrough__))
#define unreachable() __builtin_unreachable()
#define barrier() __asm__ __volatile__("" ::: "memory")
#define OPTIMIZER_HIDE_VAR(var) __asm__("" : "=r"(var) : "0"(var))
#define __stringify_1(x...) #x
#define __stringify(x...) __stringify_1(x)

/* static_assert(expr) or static_assert(expr, msg), as include/linux/build_bug.h allows. */
#define static_assert(expr, ...) __pokesim_static_assert(expr, ##__VA_ARGS__, #expr)
#define __pokesim_static_assert(expr, msg, ...) _Static_assert(expr, msg)
#define BUILD_BUG_ON(cond) _Static_assert(!(cond), "BUILD_BUG_ON(" #cond ")")

#define ARRAY_SIZE(arr) (sizeof(arr) / sizeof((arr)[0]))
#define offsetof(type, member) __builtin_offsetof(type, member)
#define container_of(ptr, type, member) ((type *)((char *)(ptr)-offsetof(type, member)))

#define min(x, y)                                                                                  \
	({                                                                                         \
		__typeof__(x) __pokesim_x = (x);                                                   \
		__typeof__(y) __pokesim_y = (y);                                                   \
		__pokesim_x < __pokesim_y ? __pokesim_x : __pokesim_y;                             \
	})
#define max(x, y)                                                                                  \
	({                                                                                         \
		__typeof__(x) __pokesim_x = (x);                                                   \
		__typeof__(y) __pokesim_y = (y);                                                   \
		__pokesim_x > __pokesim_y ? __pokesim_x : __pokesim_y;                             \
	})
#define min_t(type, x, y) min((type)(x), (type)(y))
#define max_t(type, x, y) max((type)(x), (type)(y))

/* IS_ENABLED(CONFIG_FOO): 1 if CONFIG_FOO is defined to 1 (or empty), as linux/kconfig.h. */
#define __POKESIM_ARG_PLACEHOLDER_1 0,
#define __pokesim_take_second_arg(ignored, val, ...) val
#define __pokesim_is_defined(x) ___pokesim_is_defined(x)
#define ___pokesim_is_defined(val) ____pokesim_is_defined(__POKESIM_ARG_PLACEHOLDER_##val)
#define ____pokesim_is_defined(arg1_or_junk) __pokesim_take_second_arg(arg1_or_junk 1, 0)
#define IS_ENABLED(option) __pokesim_is_defined(option)
#define IS_BUILTIN(option) __pokesim_is_defined(option)

/* Exports and kprobe blacklisting mean nothing here; each expands to a harmless declaration
 * so that the `;` after it is legal at file scope. */
#define EXPORT_SYMBOL(sym) extern int __pokesim_export_##sym
#define EXPORT_SYMBOL_GPL(sym) extern int __pokesim_export_##sym
#define NOKPROBE_SYMBOL(fname) extern int __pokesim_nokprobe_##fname
#define STACK_FRAME_NON_STANDARD(fname) extern int __pokesim_nonstandard_##fname

/* ---------------------------------------------------------- pokesim's C ABI (c-abi) */

/* One request of a batch, as the workload's caller makes it (pokesim writes an array of
 * them at KARGS_BASE). */
struct pokesim_poke {
	unsigned long addr;        /*  0: the site */
	unsigned int len;          /*  8: bytes replaced */
	unsigned int emulate_len;  /* 12: 0 = no explicit emulate (pass NULL) */
	unsigned long detour;      /* 16: linux-5.4's detour (0: the next instruction) */
	unsigned char text[16];    /* 24: the new bytes (len of them) */
	unsigned char emulate[16]; /* 40: the instruction to emulate, if emulate_len */
};
_Static_assert(sizeof(struct pokesim_poke) == 56, "struct pokesim_poke is 56 bytes");

/* What pokesim's decoder (iced-x86) says about one instruction. */
struct pokesim_insn_info {
	unsigned char length;           /* 0: 0 = invalid */
	unsigned char opcode_nbytes;    /* 1 */
	unsigned char opcode[3];        /* 2 */
	unsigned char immediate_nbytes; /* 5: of the first immediate / branch displacement */
	unsigned char pad[2];           /* 6 */
	long long immediate;            /* 8: sign-extended (rel8/rel32 of a branch) */
};
_Static_assert(sizeof(struct pokesim_insn_info) == 16, "struct pokesim_insn_info is 16 bytes");

/* The x86-64 exception frame (arch/x86/include/asm/ptrace.h layout), built by pokesim on the
 * trapping vCPU's exception stack. */
struct pt_regs {
	unsigned long r15;
	unsigned long r14;
	unsigned long r13;
	unsigned long r12;
	unsigned long bp;
	unsigned long bx;
	unsigned long r11;
	unsigned long r10;
	unsigned long r9;
	unsigned long r8;
	unsigned long ax;
	unsigned long cx;
	unsigned long dx;
	unsigned long si;
	unsigned long di;
	unsigned long orig_ax;
	unsigned long ip;
	unsigned long cs;
	unsigned long flags;
	unsigned long sp;
	unsigned long ss;
};
_Static_assert(sizeof(struct pt_regs) == 168, "struct pt_regs is 168 bytes");
_Static_assert(__builtin_offsetof(struct pt_regs, ip) == 128, "pt_regs.ip at 128");

/* The entry points a protocol file defines (pokesim calls them). */
void pokesim_patch(const struct pokesim_poke *pokes, unsigned int nr);
void pokesim_poke(unsigned long addr, const unsigned char *bytes, unsigned int len);
void pokesim_sync(void);
void pokesim_early(unsigned long addr, const unsigned char *bytes, unsigned int len);
int poke_int3_handler(struct pt_regs *regs);
int smp_text_poke_int3_handler(struct pt_regs *regs);

/* ------------------------------------------------- kernel services (pokesim's page) */

struct mutex {
	long owner;
};
extern struct mutex text_mutex;

void *text_poke(void *addr, const void *opcode, size_t len);
void on_each_cpu(void (*func)(void *info), void *info, int wait);
void sync_core(void);
void mutex_lock(struct mutex *lock);
void mutex_unlock(struct mutex *lock);
void pokesim_lockdep_assert_held(const void *lock, const char *file, int line);
void synchronize_rcu(void);
int pokesim_smp_processor_id(void);
unsigned int pokesim_nr_cpu_ids(void);
int pokesim_insn_decode(const void *kaddr, struct pokesim_insn_info *out);
void pokesim_bug(const char *file, int line, const char *cond) __attribute__((__noreturn__));
void pokesim_warn(const char *file, int line, const char *cond);
/* text_poke_early()'s memcpy(addr, opcode, len) to the text through its own address (pokesim's
 * text is otherwise writable only through text_poke()): not serialising. */
void pokesim_text_memcpy(void *addr, const void *opcode, size_t len);

/* ------------------------------------------- interrupt flag (arch/x86/include/asm/irqflags.h)
 * The real instructions, as native_save_fl(), native_restore_fl(), native_irq_disable() and
 * native_irq_enable() have them (v5.4: restore is push + popf). With [interrupts] on the
 * patching CPU, an interrupt can be delivered at any instruction boundary where IF = 1. */
static __always_inline unsigned long pokesim_save_fl(void)
{
	unsigned long flags;

	asm volatile("pushf ; pop %0" : "=rm"(flags) : : "memory");
	return flags;
}

static __always_inline void pokesim_restore_fl(unsigned long flags)
{
	asm volatile("push %0 ; popf" : : "g"(flags) : "memory", "cc");
}

#define local_irq_disable() asm volatile("cli" : : : "memory")
#define local_irq_enable() asm volatile("sti" : : : "memory")
#define local_irq_save(flags)                                                                      \
	do {                                                                                       \
		(flags) = pokesim_save_fl();                                                       \
		local_irq_disable();                                                               \
	} while (0)
#define local_irq_restore(flags) pokesim_restore_fl(flags)

#define DEFINE_MUTEX(name) struct mutex name = { 0 }
#define lockdep_assert_held(l) pokesim_lockdep_assert_held((l), __FILE__, __LINE__)
#define lockdep_assert_irqs_enabled() do { } while (0)
#define lockdep_assert_irqs_disabled() do { } while (0)
#define smp_processor_id() pokesim_smp_processor_id()
#define raw_smp_processor_id() pokesim_smp_processor_id()
#define nr_cpu_ids (pokesim_nr_cpu_ids())

/* ------------------------------------------------------------ BUG/WARN (asm-generic/bug.h) */

#define BUG() pokesim_bug(__FILE__, __LINE__, "BUG()")
#define BUG_ON(cond)                                                                               \
	do {                                                                                       \
		if (unlikely(cond))                                                                \
			pokesim_bug(__FILE__, __LINE__, "BUG_ON(" #cond ")");                      \
	} while (0)
#define WARN_ON(cond)                                                                              \
	({                                                                                         \
		int __pokesim_ret = !!(cond);                                                      \
		if (unlikely(__pokesim_ret))                                                       \
			pokesim_warn(__FILE__, __LINE__, "WARN_ON(" #cond ")");                    \
		unlikely(__pokesim_ret);                                                           \
	})
#define WARN_ON_ONCE(cond)                                                                         \
	({                                                                                         \
		static bool __pokesim_warned;                                                      \
		int __pokesim_ret = !!(cond);                                                      \
		if (unlikely(__pokesim_ret) && !__pokesim_warned) {                                \
			__pokesim_warned = true;                                                   \
			pokesim_warn(__FILE__, __LINE__, "WARN_ON_ONCE(" #cond ")");               \
		}                                                                                  \
		unlikely(__pokesim_ret);                                                           \
	})
#define WARN(cond, fmt...)                                                                         \
	({                                                                                         \
		int __pokesim_ret = !!(cond);                                                      \
		if (unlikely(__pokesim_ret))                                                       \
			pokesim_warn(__FILE__, __LINE__, "WARN(" #cond ")");                       \
		unlikely(__pokesim_ret);                                                           \
	})
#define WARN_ONCE(cond, fmt...) WARN_ON_ONCE(cond)

/* ------------------------------------------------------ barriers (arch/x86/include/asm/barrier.h) */

/* x86-TSO: loads are not reordered with loads, stores not with stores, so smp_rmb()/smp_wmb()
 * only stop the compiler; smp_mb() is a locked operation on the stack, as x86-64 does it. */
#define mb() __asm__ __volatile__("mfence" ::: "memory")
#define rmb() __asm__ __volatile__("lfence" ::: "memory")
#define wmb() __asm__ __volatile__("sfence" ::: "memory")
#define smp_mb() __asm__ __volatile__("lock; addl $0,-4(%%rsp)" ::: "memory", "cc")
#define smp_rmb() barrier()
#define smp_wmb() barrier()
#define smp_mb__before_atomic() barrier()
#define smp_mb__after_atomic() barrier()

#define READ_ONCE(x) (*(const volatile __typeof__(x) *)&(x))
#define WRITE_ONCE(x, val)                                                                         \
	do {                                                                                       \
		*(volatile __typeof__(x) *)&(x) = (val);                                           \
	} while (0)

/* On x86 a plain MOV is a release store and an acquire load; the compiler barrier keeps the
 * compiler from moving other accesses across it. */
#define smp_store_release(p, v)                                                                    \
	do {                                                                                       \
		barrier();                                                                         \
		WRITE_ONCE(*(p), (v));                                                             \
	} while (0)
#define smp_load_acquire(p)                                                                        \
	({                                                                                         \
		__typeof__(*(p)) __pokesim_v = READ_ONCE(*(p));                                    \
		barrier();                                                                         \
		__pokesim_v;                                                                       \
	})
#define smp_store_mb(var, value)                                                                   \
	do {                                                                                       \
		WRITE_ONCE(var, value);                                                            \
		smp_mb();                                                                          \
	} while (0)

/* Spins until `cond_expr` (which may name VAL, the value loaded) holds (asm-generic/barrier.h). */
#define smp_cond_load_relaxed(ptr, cond_expr)                                                      \
	({                                                                                         \
		__typeof__(ptr) __PTR = (ptr);                                                     \
		__typeof__(*(ptr)) VAL;                                                            \
		for (;;) {                                                                         \
			VAL = READ_ONCE(*__PTR);                                                   \
			if (cond_expr)                                                             \
				break;                                                             \
			cpu_relax();                                                               \
		}                                                                                  \
		VAL;                                                                               \
	})
#define smp_cond_load_acquire(ptr, cond_expr)                                                      \
	({                                                                                         \
		__typeof__(*(ptr)) __pokesim_val = smp_cond_load_relaxed(ptr, cond_expr);          \
		barrier();                                                                         \
		__pokesim_val;                                                                     \
	})

#define rcu_assign_pointer(p, v) smp_store_release(&(p), (v))
#define RCU_INIT_POINTER(p, v) WRITE_ONCE(p, v)
#define rcu_dereference(p) READ_ONCE(p)
#define rcu_dereference_sched(p) READ_ONCE(p)
#define rcu_read_lock() barrier()
#define rcu_read_unlock() barrier()

static __always_inline void cpu_relax(void)
{
	__asm__ __volatile__("pause" ::: "memory");
}

/* Scheduling: a patching client is never preempted by anything but pokesim's scheduler, and
 * handlers run with interrupts off by construction (local_irq_save() and friends are the real
 * instructions: see "interrupt flag" above). */
#define cond_resched() do { } while (0)
#define might_sleep() do { } while (0)
#define preempt_disable() barrier()
#define preempt_enable() barrier()
#define preempt_disable_notrace() barrier()
#define preempt_enable_notrace() barrier()
#define lockdep_off() do { } while (0)
#define lockdep_on() do { } while (0)
#define instrumentation_begin() do { } while (0)
#define instrumentation_end() do { } while (0)

/* ----------------------------------------------------------------- atomics (asm/atomic.h) */

typedef struct {
	int counter;
} atomic_t;
#define ATOMIC_INIT(i) { (i) }

static __always_inline int atomic_read(const atomic_t *v)
{
	return READ_ONCE(v->counter);
}

static __always_inline int atomic_read_acquire(const atomic_t *v)
{
	return smp_load_acquire(&v->counter);
}

static __always_inline void atomic_set(atomic_t *v, int i)
{
	WRITE_ONCE(v->counter, i);
}

static __always_inline void atomic_set_release(atomic_t *v, int i)
{
	smp_store_release(&v->counter, i);
}

/* `lock incl` / `lock decl` / `lock addl`. */
static __always_inline void atomic_inc(atomic_t *v)
{
	__atomic_fetch_add(&v->counter, 1, __ATOMIC_SEQ_CST);
}

static __always_inline void atomic_dec(atomic_t *v)
{
	__atomic_fetch_sub(&v->counter, 1, __ATOMIC_SEQ_CST);
}

static __always_inline void atomic_add(int i, atomic_t *v)
{
	__atomic_fetch_add(&v->counter, i, __ATOMIC_SEQ_CST);
}

static __always_inline void atomic_sub(int i, atomic_t *v)
{
	__atomic_fetch_sub(&v->counter, i, __ATOMIC_SEQ_CST);
}

static __always_inline int atomic_add_return(int i, atomic_t *v)
{
	return __atomic_add_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}

static __always_inline int atomic_sub_return(int i, atomic_t *v)
{
	return __atomic_sub_fetch(&v->counter, i, __ATOMIC_SEQ_CST);
}

static __always_inline int atomic_inc_return(atomic_t *v)
{
	return atomic_add_return(1, v);
}

static __always_inline int atomic_dec_return(atomic_t *v)
{
	return atomic_sub_return(1, v);
}

/* `lock decl; sete`. */
static __always_inline bool atomic_dec_and_test(atomic_t *v)
{
	return __atomic_sub_fetch(&v->counter, 1, __ATOMIC_SEQ_CST) == 0;
}

static __always_inline bool atomic_inc_and_test(atomic_t *v)
{
	return __atomic_add_fetch(&v->counter, 1, __ATOMIC_SEQ_CST) == 0;
}

static __always_inline int atomic_xchg(atomic_t *v, int n)
{
	return __atomic_exchange_n(&v->counter, n, __ATOMIC_SEQ_CST);
}

static __always_inline int atomic_cmpxchg(atomic_t *v, int old, int n)
{
	__atomic_compare_exchange_n(&v->counter, &old, n, false, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
	return old;
}

/* `lock cmpxchg`; on failure *old is updated with the value seen. */
static __always_inline bool atomic_try_cmpxchg(atomic_t *v, int *old, int n)
{
	return __atomic_compare_exchange_n(&v->counter, old, n, false, __ATOMIC_SEQ_CST,
					   __ATOMIC_SEQ_CST);
}

/* Adds `a` unless the counter is `u`; returns whether it added (a cmpxchg loop, as the kernel's
 * generic fallback atomic_fetch_add_unless()). */
static __always_inline bool atomic_add_unless(atomic_t *v, int a, int u)
{
	int c = atomic_read(v);

	do {
		if (unlikely(c == u))
			return false;
	} while (!atomic_try_cmpxchg(v, &c, c + a));
	return true;
}

static __always_inline bool atomic_inc_not_zero(atomic_t *v)
{
	return atomic_add_unless(v, 1, 0);
}

/* The same three operations without the LOCK prefix: what arch/x86/include/asm/atomic.h compiles
 * to when LOCK_PREFIX is empty (asm/alternative.h: a kernel without CONFIG_SMP), and what
 * alternatives_smp_unlock() leaves in the text while one CPU is online. Only the mutant
 * unlocked-refs uses them: one instruction each, so under pokesim's SC (an instruction is one
 * step) they behave as the locked ones; under x86-TSO the store waits in the CPU's buffer
 * (DESIGN.md §2.16). */
static __always_inline bool unlocked_atomic_try_cmpxchg(atomic_t *v, int *old, int n)
{
	bool ok;

	asm volatile("cmpxchgl %3, %1" : "=@ccz"(ok), "+m"(v->counter), "+a"(*old) : "r"(n) : "memory");
	return ok;
}

static __always_inline bool unlocked_atomic_inc_not_zero(atomic_t *v)
{
	int c = atomic_read(v);

	do {
		if (unlikely(c == 0))
			return false;
	} while (!unlocked_atomic_try_cmpxchg(v, &c, c + 1));
	return true;
}

static __always_inline void unlocked_atomic_dec(atomic_t *v)
{
	asm volatile("decl %0" : "+m"(v->counter) : : "memory");
}

static __always_inline bool unlocked_atomic_dec_and_test(atomic_t *v)
{
	bool zero;

	asm volatile("decl %0" : "+m"(v->counter), "=@cce"(zero) : : "memory");
	return zero;
}

#define atomic_cond_read_acquire(v, c) smp_cond_load_acquire(&(v)->counter, (c))
#define atomic_cond_read_relaxed(v, c) smp_cond_load_relaxed(&(v)->counter, (c))

/* The arch_ and raw_ spellings of noinstr code (6.0's arch_atomic_*, 6.16's raw_atomic_*). */
#define arch_atomic_read atomic_read
#define arch_atomic_set atomic_set
#define arch_atomic_set_release atomic_set_release
#define arch_atomic_inc atomic_inc
#define arch_atomic_dec atomic_dec
#define arch_atomic_inc_not_zero atomic_inc_not_zero
#define arch_atomic_dec_and_test atomic_dec_and_test
#define arch_atomic_try_cmpxchg atomic_try_cmpxchg
#define raw_atomic_read atomic_read
#define raw_atomic_set atomic_set
#define raw_atomic_set_release atomic_set_release
#define raw_atomic_inc atomic_inc
#define raw_atomic_dec atomic_dec
#define raw_atomic_inc_not_zero atomic_inc_not_zero
#define raw_atomic_dec_and_test atomic_dec_and_test
#define raw_atomic_try_cmpxchg atomic_try_cmpxchg

/* -------------------------------------------------------- per-CPU (linux/percpu-defs.h) */

#define NR_CPUS 64

/* A per-CPU variable is an array of NR_CPUS copies in shared kernel data; `&var` (what the
 * kernel's accessors take) is a pointer to that array, and the accessors index it. */
#define DECLARE_PER_CPU(type, name) extern __typeof__(type) name[NR_CPUS]
#define DEFINE_PER_CPU(type, name) __typeof__(type) name[NR_CPUS]
#define DEFINE_PER_CPU_ALIGNED(type, name) __typeof__(type) name[NR_CPUS] __aligned(64)
#define DEFINE_PER_CPU_READ_MOSTLY(type, name) DEFINE_PER_CPU(type, name)
#define per_cpu_ptr(ptr, cpu) (&(*(ptr))[(cpu)])
#define raw_cpu_ptr(ptr) per_cpu_ptr(ptr, smp_processor_id())
#define this_cpu_ptr(ptr) per_cpu_ptr(ptr, smp_processor_id())
#define per_cpu(var, cpu) ((var)[(cpu)])
#define this_cpu_read(var) READ_ONCE((var)[smp_processor_id()])
#define __this_cpu_read(var) this_cpu_read(var)
#define this_cpu_write(var, val) WRITE_ONCE((var)[smp_processor_id()], (val))
#define __this_cpu_write(var, val) this_cpu_write(var, val)

#define for_each_possible_cpu(cpu) for ((cpu) = 0; (cpu) < (int)nr_cpu_ids; (cpu)++)
#define for_each_online_cpu(cpu) for_each_possible_cpu(cpu)

/* ------------------------------------------------------- x86 (asm/processor-flags.h, ...) */

#define X86_EFLAGS_CF_BIT 0
#define X86_EFLAGS_PF_BIT 2
#define X86_EFLAGS_ZF_BIT 6
#define X86_EFLAGS_SF_BIT 7
#define X86_EFLAGS_OF_BIT 11
#define X86_EFLAGS_CF 0x00000001UL
#define X86_EFLAGS_PF 0x00000004UL
#define X86_EFLAGS_AF 0x00000010UL
#define X86_EFLAGS_ZF 0x00000040UL
#define X86_EFLAGS_SF 0x00000080UL
#define X86_EFLAGS_TF 0x00000100UL
#define X86_EFLAGS_IF 0x00000200UL
#define X86_EFLAGS_DF 0x00000400UL
#define X86_EFLAGS_OF 0x00000800UL

/* Kernel mode: CS's RPL is 0 (pokesim's frames carry cs = 0x10). */
static __always_inline int user_mode(struct pt_regs *regs)
{
	return !!(regs->cs & 3);
}

/* The opcodes and sizes of asm/text-patching.h (spelled as the kernel spells them, so a
 * pasted text-patching.h redefines them identically). */
#define INT3_INSN_SIZE		1
#define INT3_INSN_OPCODE	0xCC
#define RET_INSN_SIZE		1
#define RET_INSN_OPCODE		0xC3
#define CALL_INSN_SIZE		5
#define CALL_INSN_OPCODE	0xE8
#define JMP32_INSN_SIZE		5
#define JMP32_INSN_OPCODE	0xE9
#define JMP8_INSN_SIZE		2
#define JMP8_INSN_OPCODE	0xEB
#define DISP32_SIZE		4
#define POKE_MAX_OPCODE_SIZE	5
#define MAX_INSN_SIZE 15
#define PAGE_SHIFT 12
#define PAGE_SIZE (1UL << PAGE_SHIFT)

/* The text's base: a site is `_stext + rel_addr` with an s32 rel_addr (5.6 on). pokesim's
 * guest text lies below 2 GiB, so a base of 0 keeps every offset in range. */
#define _stext ((char *)0)

/* ideal_nops[] (up to 5.14) and x86_nops[] (5.15 on) on x86-64: NOP2 = `66 90` (xchg
 * %ax,%ax), NOP5 = NOP_ATOMIC5 = `0f 1f 44 00 00`, as sim-core/src/protocol/loc.rs has them. */
#define ASM_NOP_MAX 8
#define NOP_ATOMIC5 (ASM_NOP_MAX + 1)
static const unsigned char *const pokesim_nops[NOP_ATOMIC5 + 1] __maybe_unused = {
	NULL,
	(const unsigned char *)"\x90",
	(const unsigned char *)"\x66\x90",
	(const unsigned char *)"\x0f\x1f\x00",
	(const unsigned char *)"\x0f\x1f\x40\x00",
	(const unsigned char *)"\x0f\x1f\x44\x00\x00",
	(const unsigned char *)"\x66\x0f\x1f\x44\x00\x00",
	(const unsigned char *)"\x0f\x1f\x80\x00\x00\x00\x00",
	(const unsigned char *)"\x0f\x1f\x84\x00\x00\x00\x00\x00",
	(const unsigned char *)"\x0f\x1f\x44\x00\x00",
};
#define ideal_nops pokesim_nops
#define x86_nops pokesim_nops

/* Nothing observes perf's text_poke events or kprobes' text reservations here. */
#define perf_event_text_poke(addr, old, old_len, new, new_len) do { } while (0)

/* ----------------------------------------------------------------- library (lib/, string) */

typedef int (*cmp_func_t)(const void *a, const void *b);

void *memcpy(void *dst, const void *src, size_t n);
void *memset(void *s, int c, size_t n);
void *memmove(void *dst, const void *src, size_t n);
int memcmp(const void *a, const void *b, size_t n);
void *bsearch(const void *key, const void *base, size_t num, size_t size, cmp_func_t cmp);

/* The binary search of lib/bsearch.c as include/linux/bsearch.h inlines it (5.7 on): halve
 * [base, base + num) around the pivot until cmp() says equal or nothing is left. */
static __always_inline void *__inline_bsearch(const void *key, const void *base, size_t num,
					      size_t size, cmp_func_t cmp)
{
	const char *pivot;
	int result;

	while (num > 0) {
		pivot = (const char *)base + (num >> 1) * size;
		result = cmp(key, pivot);
		if (result == 0)
			return (void *)pivot;
		if (result > 0) {
			base = pivot + size;
			num--;
		}
		num >>= 1;
	}
	return NULL;
}

/* ------------------------------------------------ instruction decoder (asm/insn.h) */

struct insn_field {
	union {
		insn_value_t value;
		insn_byte_t bytes[4];
	};
	unsigned char got;
	unsigned char nbytes;
};

struct insn {
	struct insn_field prefixes;
	struct insn_field rex_prefix;
	struct insn_field vex_prefix;
	struct insn_field opcode;
	struct insn_field modrm;
	struct insn_field sib;
	struct insn_field displacement;
	union {
		struct insn_field immediate;
		struct insn_field moffset1;
		struct insn_field immediate1;
	};
	union {
		struct insn_field moffset2;
		struct insn_field immediate2;
	};
	int emulate_prefix_size;
	insn_attr_t attr;
	unsigned char opnd_bytes;
	unsigned char addr_bytes;
	unsigned char length;
	unsigned char x86_64;
	const insn_byte_t *kaddr;
	const insn_byte_t *end_kaddr;
	const insn_byte_t *next_byte;
};

enum insn_mode {
	INSN_MODE_32,
	INSN_MODE_64,
	INSN_MODE_KERN,
	INSN_NUM_MODES,
};

static inline void insn_init(struct insn *insn, const void *kaddr, int buf_len, int x86_64)
{
	memset(insn, 0, sizeof(*insn));
	insn->kaddr = (const insn_byte_t *)kaddr;
	insn->end_kaddr = (const insn_byte_t *)kaddr + buf_len;
	insn->next_byte = (const insn_byte_t *)kaddr;
	insn->x86_64 = x86_64 ? 1 : 0;
	insn->opnd_bytes = 4;
	insn->addr_bytes = x86_64 ? 8 : 4;
}

#define kernel_insn_init(insn, kaddr, buf_len) insn_init(insn, kaddr, buf_len, 1)

/* Decodes the whole instruction with pokesim's decoder; every part counts as got. Returns
 * 0, or -EINVAL for bytes that are no (complete) instruction. */
static inline int insn_get_length(struct insn *insn)
{
	struct pokesim_insn_info info;
	int i;

	if (insn->length)
		return 0;
	if (pokesim_insn_decode(insn->kaddr, &info) < 0 || info.length == 0 ||
	    insn->kaddr + info.length > insn->end_kaddr)
		return -EINVAL;
	insn->opcode.nbytes = info.opcode_nbytes;
	for (i = 0; i < 3; i++)
		insn->opcode.bytes[i] = info.opcode[i];
	insn->immediate.nbytes = info.immediate_nbytes;
	insn->immediate.value = (insn_value_t)info.immediate;
	insn->length = info.length;
	insn->next_byte = insn->kaddr + info.length;
	insn->prefixes.got = insn->rex_prefix.got = insn->vex_prefix.got = 1;
	insn->opcode.got = insn->modrm.got = insn->sib.got = 1;
	insn->displacement.got = insn->immediate.got = insn->immediate2.got = 1;
	return 0;
}

#define insn_get_opcode(insn) insn_get_length(insn)
#define insn_get_immediate(insn) insn_get_length(insn)

static inline int insn_complete(struct insn *insn)
{
	return insn->opcode.got && insn->modrm.got && insn->sib.got && insn->displacement.got &&
	       insn->immediate.got && insn->length != 0;
}

static inline int insn_decode(struct insn *insn, const void *kaddr, int buf_len, enum insn_mode m)
{
	int ret;

	insn_init(insn, kaddr, buf_len, m != INSN_MODE_32);
	ret = insn_get_length(insn);
	if (ret < 0)
		return ret;
	return insn_complete(insn) ? 0 : -EINVAL;
}

#define insn_decode_kernel(insn, ptr) insn_decode((insn), (ptr), MAX_INSN_SIZE, INSN_MODE_KERN)


/* ---- include/linux/kernel.h: the system state (text_poke_queue() and text_poke_bp() of
 * 5.5-6.0 fall back to text_poke_early() while `system_state == SYSTEM_BOOTING`). A protocol
 * runs on a booted machine: the constant SYSTEM_RUNNING, so the boot branch folds away and
 * text_poke_early() is never referenced. */
enum system_states {
	SYSTEM_BOOTING,
	SYSTEM_SCHEDULING,
	SYSTEM_FREEING_INITMEM,
	SYSTEM_RUNNING,
	SYSTEM_HALT,
	SYSTEM_POWER_OFF,
	SYSTEM_RESTART,
	SYSTEM_SUSPEND,
};
#define system_state ((enum system_states)SYSTEM_RUNNING)

/* ---- asm/insn.h: is_jcc32() (6.16's __smp_text_poke_batch_add() maps Jcc.d32, 0f 80..8f
 * rel32, onto Jcc.d8): the two-byte opcode as pokesim_insn_decode() fills it. */
static inline bool is_jcc32(struct insn *insn)
{
	return insn->opcode.bytes[0] == 0x0f && (insn->opcode.bytes[1] & 0xf0) == 0x80;
}

#endif /* POKESIM_H */
