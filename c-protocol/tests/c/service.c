#include <pokesim.h>

/* Defines a kernel service pokesim implements: refused. */
void sync_core(void)
{
}

int uses_it(void)
{
	sync_core();
	return 1;
}
