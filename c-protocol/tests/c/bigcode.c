#include <pokesim.h>

const unsigned char big_table[0x100000] = { 1 };

int lookup(int i)
{
	return big_table[i];
}
