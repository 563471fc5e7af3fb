/* cpu_iter.c — the strided row walker behind the elementwise CPU kernels (see cpu_iter.h). */
#include "cpu_iter.h"

#ifdef _OPENMP
#include <omp.h>
#endif

int cc_cpu_foreach(int nops, cc_tensor *const *operands, cc_row_fn fn, const void *ctx) {
  const cc_tensor *t0 = operands[0];
  int ndim = 0;
  int64_t shape[CC_MAX_DIMS], stride[CC_ITER_MAX_OPS][CC_MAX_DIMS];
  char *base[CC_ITER_MAX_OPS];
  int64_t numel = cc_numel(t0);
  if (numel == 0) return 0;
  for (int k = 0; k < nops; k++) base[k] = (char *)cc_data_ptr(operands[k]);
  /* drop size-1 dims, strides in bytes */
  for (int d = 0; d < t0->ndim; d++) {
    if (t0->shape[d] == 1) continue;
    shape[ndim] = t0->shape[d];
    for (int k = 0; k < nops; k++)
      stride[k][ndim] = operands[k]->stride[d] * (int64_t)cc_dtype_size(operands[k]->dtype);
    ndim++;
  }
  if (ndim == 0) {
    shape[0] = 1;
    for (int k = 0; k < nops; k++) stride[k][0] = 0;
    ndim = 1;
  }
  /* coalesce dims d-1 and d when every operand steps over them as one */
  int merged = 0;
  for (int d = 1; d < ndim; d++) {
    bool ok = true;
    for (int k = 0; k < nops; k++)
      if (stride[k][merged] != stride[k][d] * shape[d]) ok = false;
    if (ok) {
      shape[merged] *= shape[d];
      for (int k = 0; k < nops; k++) stride[k][merged] = stride[k][d];
    } else {
      merged++;
      shape[merged] = shape[d];
      for (int k = 0; k < nops; k++) stride[k][merged] = stride[k][d];
    }
  }
  ndim = merged + 1;

  int64_t inner = shape[ndim - 1];
  int64_t rows = numel / inner;
  int64_t inner_stride[CC_ITER_MAX_OPS];
  for (int k = 0; k < nops; k++) inner_stride[k] = stride[k][ndim - 1];
  /* split long rows so that every thread gets work */
  int64_t chunk = inner;
  int threads = cc_get_num_threads();
  if (rows < 4 * threads && inner > 8192) {
    int64_t want = (4 * threads + rows - 1) / rows;
    chunk = (inner + want - 1) / want;
    chunk = (chunk + 63) & ~(int64_t)63;
  }
  int64_t pieces_per_row = (inner + chunk - 1) / chunk;
  int64_t pieces = rows * pieces_per_row;
  bool parallel = numel >= 32768 && pieces > 1;

#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t piece = 0; piece < pieces; piece++) {
    int64_t row = piece / pieces_per_row, start = (piece % pieces_per_row) * chunk;
    int64_t len = inner - start < chunk ? inner - start : chunk;
    char *ptrs[CC_ITER_MAX_OPS];
    for (int k = 0; k < nops; k++) ptrs[k] = base[k] + start * inner_stride[k];
    int64_t rem = row;
    for (int d = ndim - 2; d >= 0; d--) {
      int64_t i = rem % shape[d];
      rem /= shape[d];
      for (int k = 0; k < nops; k++) ptrs[k] += i * stride[k][d];
    }
    fn(len, ptrs, inner_stride, ctx);
  }
  return 0;
}
