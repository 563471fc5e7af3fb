/* softmax.c — placeholder until the softmax op family lands. */
#include "internal.h"

void cc_cpu_register_softmax(void) {}
