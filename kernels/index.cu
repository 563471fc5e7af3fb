/* index.cu — gather and scatter_add by int64 indices (index_select and index_add are the same kernels with the
 * 1-D index broadcast over the other dims), and the check that finds an index out of range, as csrc/ops/index.c
 * computes them. scatter_add runs one item per destination row and adds in index order, so repeated indices
 * accumulate without atomics and the result does not depend on the schedule. */
#include "cuda_common.cuh"

/* gather: one item per element of dst */
template <typename T> struct GatherF {
  cck_index_args a;
  __device__ void operator()(int64_t t) const {
    int64_t so = 0, io = 0, dso = 0;
    for (int d = a.ndim - 1; d >= 0; d--) {
      int64_t c;
      t = cck_divmod(t, a.shape[d], &c);
      io += c * a.istride[d];
      dso += c * a.dstride[d];
      if (d != a.dim) so += c * a.sstride[d];
    }
    int64_t p = a.idx[io];
    ((T *)a.dst)[dso] = p >= 0 && p < a.size ? ((const T *)a.src)[so + p * a.sstride[a.dim]] : (T)0;
  }
};

extern "C" cudaError_t cck_gather(const cck_index_args *a, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(a->items, GatherF<T>{*a}, s));
}

/* scatter_add: one item per row of dst (every index but dim) */
template <typename T> struct ScatterAddF {
  cck_index_args a;
  __device__ void operator()(int64_t r) const {
    int64_t so = 0, io = 0, dso = 0;
    bool inside = true;
    for (int d = a.ndim - 1; d >= 0; d--) {
      if (d == a.dim) continue;
      int64_t c;
      r = cck_divmod(r, a.shape[d], &c);
      if (c >= a.ishape[d]) inside = false;
      so += c * a.sstride[d];
      io += c * a.istride[d];
      dso += c * a.dstride[d];
    }
    T *dst = (T *)a.dst + dso;
    int64_t ds = a.dstride[a.dim], ss = a.sstride[a.dim], is = a.istride[a.dim];
    for (int64_t k = 0; k < a.size; k++) dst[k * ds] = (T)0;
    if (!inside) return;
    const T *src = (const T *)a.src + so;
    for (int64_t j = 0; j < a.ishape[a.dim]; j++) {
      int64_t p = a.idx[io + j * is];
      if (p >= 0 && p < a.size) dst[p * ds] += src[j * ss];
    }
  }
};

extern "C" cudaError_t cck_scatter_add(const cck_index_args *a, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(a->items, ScatterAddF<T>{*a}, s));
}

/* a single item: the first index out of range, in row-major order */
struct IndexCheckF {
  cck_index_check_args a;
  __device__ void operator()(int64_t) const {
    a.bad[0] = 0;
    a.bad[1] = 0;
    for (int64_t t = 0; t < a.numel; t++) {
      int64_t p = a.idx[cck_offset(t, a.ndim, a.shape, a.stride)];
      if (p < 0 || p >= a.size) {
        a.bad[0] = 1;
        a.bad[1] = p;
        return;
      }
    }
  }
};

extern "C" cudaError_t cck_index_check(const cck_index_check_args *a, cudaStream_t s) {
  return cck_launch(1, IndexCheckF{*a}, s);
}
