#include <pokesim.h>

void not_in_the_header(void);

int caller(void)
{
	not_in_the_header();
	return 0;
}
