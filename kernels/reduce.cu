/* reduce.cu — sum over dims (floats accumulate in double, as csrc/ops/reduce.c), max/argmax along
 * one dim and the running sum (cumsum) along one dim. Sums of many values run in two passes: partial sums per (output, part), then one item per
 * output adds its parts (see cck_parts in cuda_common.cuh). */
#include "cuda_common.cuh"

/* accumulator type: double for floats, int64 for integers */
template <typename T> struct Acc { typedef double type; };
template <> struct Acc<int64_t> { typedef int64_t type; };

/* pass 1: part p of output o sums the reduced values r = p, p + parts, ... */
template <typename T> struct SumPartsF {
  cck_reduce r;
  int64_t parts;
  typename Acc<T>::type *partial;
  __device__ void operator()(int64_t t) const {
    int64_t o = t / parts, p = t - o * parts;
    const T *x = (const T *)r.in + cck_offset(o, r.nk, r.kshape, r.kstride_in);
    typename Acc<T>::type acc = 0;
    for (int64_t k = p; k < r.n_red; k += parts) acc += x[cck_offset(k, r.nr, r.rshape, r.rstride)];
    partial[t] = acc;
  }
};

/* pass 2 (or the only pass when parts == 1, partial NULL) */
template <typename T> struct SumOutF {
  cck_reduce r;
  int64_t parts;
  const typename Acc<T>::type *partial;
  __device__ void operator()(int64_t o) const {
    typename Acc<T>::type acc = 0;
    if (partial) {
      for (int64_t p = 0; p < parts; p++) acc += partial[o * parts + p];
    } else {
      const T *x = (const T *)r.in + cck_offset(o, r.nk, r.kshape, r.kstride_in);
      for (int64_t k = 0; k < r.n_red; k++) acc += x[cck_offset(k, r.nr, r.rshape, r.rstride)];
    }
    ((T *)r.out)[cck_offset(o, r.nk, r.kshape, r.kstride_out)] = (T)acc;
  }
};

extern "C" size_t cck_sum_scratch(const cck_reduce *r) {
  int64_t parts = cck_parts(r->n_out, r->n_red);
  return parts > 1 ? (size_t)(r->n_out * parts) * 8 : 0;
}

template <typename T> static cudaError_t sum_typed(const cck_reduce *r, void *scratch, cudaStream_t s) {
  typedef typename Acc<T>::type A;
  int64_t parts = cck_parts(r->n_out, r->n_red);
  if (parts > 1) {
    cudaError_t e = cck_launch(r->n_out * parts, SumPartsF<T>{*r, parts, (A *)scratch}, s);
    if (e != cudaSuccess) return e;
    return cck_launch(r->n_out, SumOutF<T>{*r, parts, (const A *)scratch}, s);
  }
  return cck_launch(r->n_out, SumOutF<T>{*r, 1, (const A *)0}, s);
}

extern "C" cudaError_t cck_sum(const cck_reduce *r, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_ALL(r->dtype, T, return sum_typed<T>(r, scratch, s));
}

/* ---- max along dim: one item per output, the CPU loop (first maximum; a NaN ends the scan) ---- */
template <typename T> struct MaxF {
  cck_max_args a;
  __device__ void operator()(int64_t o) const {
    int64_t base = 0, voff = 0, ioff = 0, rem = o;
    for (int d = a.ndim - 1; d >= 0; d--) {
      if (d == a.dim) continue;
      int64_t q = rem / a.shape[d], i = rem - q * a.shape[d];
      rem = q;
      base += i * a.xstride[d];
      voff += i * a.vstride[d];
      ioff += i * a.istride[d];
    }
    const T *p = (const T *)a.in + base;
    int64_t len = a.shape[a.dim], step = a.xstride[a.dim], best = 0;
    T m = p[0];
    for (int64_t i = 1; i < len && m == m; i++) {
      T v = p[i * step];
      if (v > m || v != v) {
        m = v;
        best = i;
      }
    }
    ((T *)a.vals)[voff] = m;
    a.idx[ioff] = best;
  }
};

extern "C" cudaError_t cck_max(const cck_max_args *a, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(a->n_out, MaxF<T>{*a}, s));
}

/* ---- cumsum along dim: one item per row, the CPU loop ---- */
template <typename T> struct CumsumF {
  cck_cumsum_args a;
  __device__ void operator()(int64_t r) const {
    int64_t xoff = 0, ooff = 0, rem = r;
    for (int d = a.ndim - 1; d >= 0; d--) {
      if (d == a.dim) continue;
      int64_t q = rem / a.shape[d], i = rem - q * a.shape[d];
      rem = q;
      xoff += i * a.xstride[d];
      ooff += i * a.ostride[d];
    }
    const T *p = (const T *)a.in + xoff;
    T *o = (T *)a.out + ooff;
    int64_t n = a.shape[a.dim], xs = a.xstride[a.dim], os = a.ostride[a.dim];
    typename Acc<T>::type acc = 0;
    for (int64_t k = 0; k < n; k++) {
      int64_t j = a.reverse ? n - 1 - k : k;
      acc += p[j * xs];
      o[j * os] = (T)acc;
    }
  }
};

extern "C" cudaError_t cck_cumsum(const cck_cumsum_args *a, cudaStream_t s) {
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(a->rows, CumsumF<T>{*a}, s));
}
