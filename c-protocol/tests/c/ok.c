/* A protocol-shaped test file: a function, an initialised and a zeroed global, a string. */
#include <pokesim.h>

int patch_count;
unsigned char new_bytes[5] = { 0xe9, 1, 2, 3, 4 };

int patch_site(unsigned long addr)
{
	mutex_lock(&text_mutex);
	text_poke((void *)addr, new_bytes, sizeof(new_bytes));
	sync_core();
	patch_count = pokesim_test_twice(patch_count + 1);
	if (patch_count < 0)
		BUG();
	mutex_unlock(&text_mutex);
	return patch_count;
}

#ifdef POKESIM_MUTANT_EXTRA
int extra_global = 7;
#endif
