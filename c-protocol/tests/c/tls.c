#include <pokesim.h>

__thread int per_thread;

int read_it(void)
{
	return per_thread;
}
