/* cpu_backend.c — registers every CPU kernel of every op family into the op table. */
#include "internal.h"

void cc_cpu_register_elementwise(void);
void cc_cpu_register_reduce(void);
void cc_cpu_register_sort(void);
void cc_cpu_register_index(void);
void cc_cpu_register_pool(void);
void cc_cpu_register_linalg(void);
void cc_cpu_register_conv(void);
void cc_cpu_register_norm(void);
void cc_cpu_register_softmax(void);
void cc_cpu_register_random(void);
void cc_cpu_register_optim(void);

void cc_cpu_backend_init(void) {
  cc_cpu_register_elementwise();
  cc_cpu_register_reduce();
  cc_cpu_register_sort();
  cc_cpu_register_index();
  cc_cpu_register_pool();
  cc_cpu_register_linalg();
  cc_cpu_register_conv();
  cc_cpu_register_norm();
  cc_cpu_register_softmax();
  cc_cpu_register_random();
  cc_cpu_register_optim();
}
