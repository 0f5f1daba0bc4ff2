#include <pokesim.h>

int broken(int x)
{
	return x +;
}
