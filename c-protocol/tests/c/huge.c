#include <pokesim.h>

unsigned char huge_table[3UL << 30];

int touch(int i)
{
	return huge_table[i];
}
