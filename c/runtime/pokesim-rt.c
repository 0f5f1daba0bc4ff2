// SPDX-License-Identifier: MIT
/*
 * pokesim-rt.c — the freestanding runtime linked with every protocol file (issue 24): the
 * string functions clang may call even under -fno-builtin (struct copies, zeroing), the
 * kernel's bsearch() (lib/bsearch.c semantics) and text_mutex (kernel/extable.c defines it in
 * the kernel). Plain byte loops: every load and store is one the vCPU executes.
 */
#include "pokesim.h"

struct mutex text_mutex;

void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	while (n--)
		*d++ = *s++;
	return dst;
}

void *memset(void *s, int c, size_t n)
{
	unsigned char *p = s;

	while (n--)
		*p++ = (unsigned char)c;
	return s;
}

void *memmove(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;

	if (d == s || n == 0)
		return dst;
	if (d < s) {
		while (n--)
			*d++ = *s++;
	} else {
		d += n;
		s += n;
		while (n--)
			*--d = *--s;
	}
	return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
	const unsigned char *x = a, *y = b;

	for (; n; n--, x++, y++) {
		if (*x != *y)
			return *x < *y ? -1 : 1;
	}
	return 0;
}

/* lib/bsearch.c: the key is compared against the middle element, the half that cannot hold
 * it is dropped; NULL when nothing is left. */
void *bsearch(const void *key, const void *base, size_t num, size_t size, cmp_func_t cmp)
{
	return __inline_bsearch(key, base, num, size, cmp);
}
