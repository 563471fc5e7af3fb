/* sort.cu — stable sort of every row along one dim, and its backward (the gradient put back where the
 * indices point), as csrc/ops/sort.c computes them; the order is cc_sort_before of kernels/scalar.h.
 *
 * The sort is a bottom-up merge sort through two scratch buffers of (key, position) rows: a load pass
 * copies each row in, then pass w merges neighbouring runs of length w into runs of 2w, and a store
 * pass writes the result out. Every pass is one item per element: an element's place in its merged
 * run is its place in its own run plus the number of elements of the other run that go before it,
 * found by binary search. Ties go to the left run, so equal keys keep their input order (stable). */
#include "cuda_common.cuh"

/* offset of row r (every index but the one along dim) in a tensor of the given shape and strides */
__device__ __forceinline__ int64_t cck_row_offset(int64_t r, int ndim, int dim, const int64_t *shape,
                                                  const int64_t *stride) {
  int64_t off = 0;
  for (int d = ndim - 1; d >= 0; d--) {
    if (d == dim) continue;
    int64_t q = r / shape[d], i = r - q * shape[d];
    r = q;
    off += i * stride[d];
  }
  return off;
}

/* the scratch rows: keys and positions, twice (a pass reads one pair and writes the other) */
template <typename T> struct SortBuffers {
  T *keys[2];
  int64_t *pos[2];
};

template <typename T> static SortBuffers<T> sort_buffers(const cck_sort_args *a, void *scratch) {
  int64_t total = a->rows * a->n;
  SortBuffers<T> b;
  b.pos[0] = (int64_t *)scratch;
  b.pos[1] = b.pos[0] + total;
  b.keys[0] = (T *)(b.pos[1] + total);
  b.keys[1] = b.keys[0] + total;
  return b;
}

extern "C" size_t cck_sort_scratch(const cck_sort_args *a) {
  size_t elem = a->dtype == CCK_F32 ? 4 : 8;
  return (size_t)(a->rows * a->n) * 2 * (elem + 8);
}

template <typename T> struct SortLoadF {
  cck_sort_args a;
  T *keys;
  int64_t *pos;
  __device__ void operator()(int64_t t) const {
    int64_t r = t / a.n, j = t - r * a.n;
    const T *x = (const T *)a.in + cck_row_offset(r, a.ndim, a.dim, a.shape, a.xstride);
    keys[t] = x[j * a.xstride[a.dim]];
    pos[t] = j;
  }
};

/* runs [start, mid) and [mid, end) of width w merged into [start, end) */
template <typename T> struct SortMergeF {
  int64_t n, w;
  int descending;
  const T *src_keys;
  const int64_t *src_pos;
  T *dst_keys;
  int64_t *dst_pos;
  __device__ void operator()(int64_t t) const {
    int64_t r = t / n, j = t - r * n, row = r * n;
    int64_t start = j - j % (2 * w);
    int64_t mid = start + w < n ? start + w : n, end = start + 2 * w < n ? start + 2 * w : n;
    const T *k = src_keys + row;
    T v = k[j];
    int64_t lo, hi, place;
    if (j < mid) { /* left run: the right run's elements strictly before v go first */
      lo = mid;
      hi = end;
      while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (cc_sort_before(k[m], v, descending)) lo = m + 1;
        else hi = m;
      }
      place = start + (j - start) + (lo - mid);
    } else { /* right run: the left run's elements not after v go first */
      lo = start;
      hi = mid;
      while (lo < hi) {
        int64_t m = lo + (hi - lo) / 2;
        if (!cc_sort_before(v, k[m], descending)) lo = m + 1;
        else hi = m;
      }
      place = start + (j - mid) + (lo - start);
    }
    dst_keys[row + place] = v;
    dst_pos[row + place] = src_pos[row + j];
  }
};

template <typename T> struct SortStoreF {
  cck_sort_args a;
  const T *keys;
  const int64_t *pos;
  __device__ void operator()(int64_t t) const {
    int64_t r = t / a.n, j = t - r * a.n;
    T *v = (T *)a.vals + cck_row_offset(r, a.ndim, a.dim, a.shape, a.vstride);
    int64_t *ix = a.idx + cck_row_offset(r, a.ndim, a.dim, a.shape, a.istride);
    v[j * a.vstride[a.dim]] = keys[t];
    ix[j * a.istride[a.dim]] = pos[t];
  }
};

template <typename T> static cudaError_t sort_typed(const cck_sort_args *a, void *scratch, cudaStream_t s) {
  int64_t total = a->rows * a->n;
  if (total <= 0) return cudaSuccess;
  SortBuffers<T> b = sort_buffers<T>(a, scratch);
  cudaError_t e = cck_launch(total, SortLoadF<T>{*a, b.keys[0], b.pos[0]}, s);
  int cur = 0;
  for (int64_t w = 1; e == cudaSuccess && w < a->n; w *= 2) {
    e = cck_launch(total, SortMergeF<T>{a->n, w, a->descending, b.keys[cur], b.pos[cur], b.keys[1 - cur], b.pos[1 - cur]}, s);
    cur = 1 - cur;
  }
  if (e != cudaSuccess) return e;
  return cck_launch(total, SortStoreF<T>{*a, b.keys[cur], b.pos[cur]}, s);
}

extern "C" cudaError_t cck_sort(const cck_sort_args *a, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return sort_typed<T>(a, scratch, s));
}

/* ---- backward: one item per element of g ---- */
template <typename T> struct SortBackwardF {
  cck_sort_bw_args a;
  __device__ void operator()(int64_t t) const {
    int64_t goff = 0, ioff = 0, doff = 0, rem = t;
    for (int d = a.ndim - 1; d >= 0; d--) {
      int64_t q = rem / a.shape[d], i = rem - q * a.shape[d];
      rem = q;
      goff += i * a.gstride[d];
      ioff += i * a.istride[d];
      if (d != a.dim) doff += i * a.dstride[d];
    }
    int64_t p = a.idx[ioff];
    if (p < 0 || p >= a.shape[a.dim]) return;
    ((T *)a.dx)[doff + p * a.dstride[a.dim]] = ((const T *)a.g)[goff];
  }
};

extern "C" cudaError_t cck_sort_backward(const cck_sort_bw_args *a, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(a->numel, SortBackwardF<T>{*a}, s));
}
