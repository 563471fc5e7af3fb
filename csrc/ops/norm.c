/* norm.c — placeholder until the norm op family lands. */
#include "internal.h"

void cc_cpu_register_norm(void) {}
