/* cuda_common.cuh — what every kernels/ (.cu files) shares: the item launcher (a grid-stride loop on the GPU,
 * a plain loop when emulated on the host), the strided indexer behind the elementwise kernels, and
 * dtype dispatch. Kernels are functors with `__device__ void operator()(int64_t i) const`, passed by
 * value (their fields are the kernel's arguments), so each one reads as the body of a loop.
 */
#ifndef COCOLA_CUDA_COMMON_CUH
#define COCOLA_CUDA_COMMON_CUH

#include "cc_cuda_kernels.h"
#include "scalar.h"

#include <stdint.h>

/* ---- running items ---- */
#ifdef CCK_EMULATE
/* host emulation (COCOLA_CUDA=EMULATE): the same bodies, item by item */
template <class F> static inline cudaError_t cck_launch(int64_t n, const F &f, cudaStream_t) {
  for (int64_t i = 0; i < n; i++) f(i);
  return cudaSuccess;
}
#else
template <class F> __global__ void cck_items_kernel(int64_t n, F f) {
  int64_t step = (int64_t)gridDim.x * blockDim.x;
  for (int64_t i = (int64_t)blockIdx.x * blockDim.x + threadIdx.x; i < n; i += step) f(i);
}

#define CCK_THREADS 256
#define CCK_MAX_BLOCKS (65535 * 16)

template <class F> static inline cudaError_t cck_launch(int64_t n, const F &f, cudaStream_t s) {
  if (n <= 0) return cudaSuccess;
  int64_t blocks = (n + CCK_THREADS - 1) / CCK_THREADS;
  if (blocks > CCK_MAX_BLOCKS) blocks = CCK_MAX_BLOCKS;
  cck_items_kernel<F><<<(unsigned)blocks, CCK_THREADS, 0, s>>>(n, f);
  return cudaGetLastError();
}
#endif

/* ---- strided indexing: offsets (in elements) of item i in each of N operands ---- */
/* q = i / size, r = i - q * size; in 32 bits where both fit */
__device__ __forceinline__ int64_t cck_divmod(int64_t i, int64_t size, int64_t *r) {
  if (((uint64_t)i | (uint64_t)size) <= 0xFFFFFFFFu) {
    uint32_t q = (uint32_t)i / (uint32_t)size;
    *r = (int64_t)((uint32_t)i - q * (uint32_t)size);
    return (int64_t)q;
  }
  int64_t q = i / size;
  *r = i - q * size;
  return q;
}

template <int N> __device__ __forceinline__ void cck_offsets(const cck_iter &it, int64_t i, int64_t (&off)[N]) {
  if (it.ndim == 1) { /* the common case after coalescing: no division */
#pragma unroll
    for (int k = 0; k < N; k++) off[k] = i * it.stride[k][0];
    return;
  }
#pragma unroll
  for (int k = 0; k < N; k++) off[k] = 0;
  for (int d = it.ndim - 1; d >= 0; d--) {
    int64_t r;
    i = cck_divmod(i, it.shape[d], &r);
#pragma unroll
    for (int k = 0; k < N; k++) off[k] += r * it.stride[k][d];
  }
}

/* offset of the row-major index i over (shape, stride) of n dims */
__device__ __forceinline__ int64_t cck_offset(int64_t i, int n, const int64_t *shape, const int64_t *stride) {
  if (n == 1) return i * stride[0]; /* i < shape[0]: no division */
  int64_t off = 0;
  for (int d = n - 1; d >= 0; d--) {
    int64_t r;
    i = cck_divmod(i, shape[d], &r);
    off += r * stride[d];
  }
  return off;
}

/* ---- scratch partial sums of the two-pass reductions ----
 * a reduction of n_red values per output is split over `parts` items that each sum every parts-th
 * value (adjacent items read adjacent values), then one item per output adds the parts. */
static inline int64_t cck_parts(int64_t n_out, int64_t n_red) {
  if (n_red < 1024 || n_out <= 0) return 1;
  int64_t parts = (int64_t)131072 / n_out;
  if (parts > n_red / 256) parts = n_red / 256;
  if (parts > 1024) parts = 1024;
  return parts < 1 ? 1 : parts;
}

/* the element type of a dtype code */
#define CCK_DISPATCH_FLOAT(dtype, T, ...)                                                          \
  do {                                                                                             \
    if ((dtype) == CCK_F32) {                                                                      \
      typedef float T;                                                                             \
      __VA_ARGS__;                                                                                 \
    } else {                                                                                       \
      typedef double T;                                                                            \
      __VA_ARGS__;                                                                                 \
    }                                                                                              \
  } while (0)

#define CCK_DISPATCH_ALL(dtype, T, ...)                                                            \
  do {                                                                                             \
    if ((dtype) == CCK_F32) {                                                                      \
      typedef float T;                                                                             \
      __VA_ARGS__;                                                                                 \
    } else if ((dtype) == CCK_F64) {                                                               \
      typedef double T;                                                                            \
      __VA_ARGS__;                                                                                 \
    } else {                                                                                       \
      typedef int64_t T;                                                                           \
      __VA_ARGS__;                                                                                 \
    }                                                                                              \
  } while (0)

#endif
