/* conv.c — placeholder until the conv op family lands. */
#include "internal.h"

void cc_cpu_register_conv(void) {}
