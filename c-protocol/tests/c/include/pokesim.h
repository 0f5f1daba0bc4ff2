/* A test stand-in for pokesim.h: a few of the C ABI's services and the runtime's names. */
#ifndef POKESIM_TEST_H
#define POKESIM_TEST_H
typedef unsigned long size_t;
struct mutex { int owner; };
extern struct mutex text_mutex;
void *text_poke(void *addr, const void *opcode, size_t len);
void sync_core(void);
void mutex_lock(struct mutex *lock);
void mutex_unlock(struct mutex *lock);
void *memcpy(void *dst, const void *src, size_t n);
void pokesim_bug(const char *file, int line, const char *cond) __attribute__((noreturn));
#define BUG() pokesim_bug(__FILE__, __LINE__, "BUG")
static inline int pokesim_test_twice(int x) { return 2 * x; }
#endif
