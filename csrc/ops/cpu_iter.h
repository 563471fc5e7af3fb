/* cpu_iter.h — walking up to 4 same-shaped strided operands on the CPU: dims of size 1 are
 * dropped, mergeable dims coalesced, and the work split into row chunks across OpenMP threads.
 * A row function gets n elements, one pointer per operand and the byte stride of each. */
#ifndef COCOLA_CPU_ITER_H
#define COCOLA_CPU_ITER_H

#include "internal.h"

#define CC_ITER_MAX_OPS 4

typedef void (*cc_row_fn)(int64_t n, char *const *ptrs, const int64_t *strides, const void *ctx);

/* operands[0] is usually the output; all must have the same shape */
int cc_cpu_foreach(int nops, cc_tensor *const *operands, cc_row_fn fn, const void *ctx);

/* rows with an inner index in elements: p[k] advances by s[k] elements (s from bytes) */
#define CC_STRIDE(k, T) (strides[k] / (int64_t)sizeof(T))

#endif
