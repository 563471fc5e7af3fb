/* linalg.c — placeholder until the linalg op family lands. */
#include "internal.h"

void cc_cpu_register_linalg(void) {}
