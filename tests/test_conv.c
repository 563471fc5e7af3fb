#include "internal.h"
int main(void) { cc_init(); return 0; }
