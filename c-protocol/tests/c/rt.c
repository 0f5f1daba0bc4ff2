/* A test stand-in for pokesim-rt.c. */
#include <pokesim.h>
struct mutex text_mutex;
void *memcpy(void *dst, const void *src, size_t n)
{
	unsigned char *d = dst;
	const unsigned char *s = src;
	while (n--)
		*d++ = *s++;
	return dst;
}
