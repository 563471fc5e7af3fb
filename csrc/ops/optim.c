/* optim.c — placeholder until the optim op family lands. */
#include "internal.h"

void cc_cpu_register_optim(void) {}
