/* softmax.cu — softmax / log_softmax along the middle dim of a contiguous (outer, L, inner), their
 * backward, and the NLL loss of cross_entropy, as the CPU kernels of csrc/ops/softmax.c (the same
 * exp for float: cc_expf_fast of kernels/scalar.h; sums in double). One item per (outer, inner) row. */
#include "cuda_common.cuh"

__device__ __forceinline__ float sm_exp(float x) { return cc_expf_fast(x); }
__device__ __forceinline__ double sm_exp(double x) { return exp(x); }

template <typename T> struct SoftmaxF {
  const T *x;
  T *y;
  int64_t L, inner;
  int is_log;
  __device__ void operator()(int64_t t) const {
    int64_t o = t / inner, j = t - o * inner;
    const T *p = x + o * L * inner + j;
    T *q = y + o * L * inner + j;
    double s = 0;
    if (inner == 1) { /* the CPU's row path */
      T m = (T)-INFINITY;
      bool has_nan = false;
      for (int64_t i = 0; i < L; i++) {
        m = p[i] > m ? p[i] : m;
        has_nan = has_nan || p[i] != p[i];
      }
      if (has_nan) m = (T)NAN;
      if (is_log) {
        for (int64_t i = 0; i < L; i++) s += (double)sm_exp(p[i] - m);
        T ls = (T)log(s);
        for (int64_t i = 0; i < L; i++) q[i] = p[i] - m - ls;
      } else {
        for (int64_t i = 0; i < L; i++) {
          T e = sm_exp(p[i] - m);
          q[i] = e;
          s += (double)e;
        }
        T r = (T)(1.0 / s);
        for (int64_t i = 0; i < L; i++) q[i] *= r;
      }
      return;
    }
    /* the CPU's strided path */
    T m = L ? p[0] : (T)0;
    for (int64_t i = 1; i < L; i++) {
      T v = p[i * inner];
      m = (v > m || v != v) ? v : m;
    }
    for (int64_t i = 0; i < L; i++) {
      T e = sm_exp(p[i * inner] - m);
      if (!is_log) q[i * inner] = e;
      s += (double)e;
    }
    T f = is_log ? (T)log(s) + m : (T)(1.0 / s);
    for (int64_t i = 0; i < L; i++) {
      if (is_log) q[i * inner] = p[i * inner] - f;
      else q[i * inner] *= f;
    }
  }
};

extern "C" cudaError_t cck_softmax(const void *x, void *y, int dtype, int64_t outer, int64_t L, int64_t inner,
                                   int is_log, cudaStream_t s) {
  if (inner <= 0) return cudaSuccess;
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(outer * inner, (SoftmaxF<T>{(const T *)x, (T *)y, L, inner, is_log}), s));
}

/* softmax: dx = y (dy - sum dy y); log_softmax: dx = dy - exp(y) sum dy */
template <typename T> struct SoftmaxBwF {
  const T *dy, *y;
  T *dx;
  int64_t L, inner;
  int is_log;
  __device__ void operator()(int64_t t) const {
    int64_t o = t / inner, j = t - o * inner, base = o * L * inner + j;
    const T *g = dy + base, *p = y + base;
    T *q = dx + base;
    double s = 0;
    for (int64_t i = 0; i < L; i++) s += is_log ? (double)g[i * inner] : (double)(g[i * inner] * p[i * inner]);
    T ts = (T)s;
    for (int64_t i = 0; i < L; i++) {
      int64_t k = i * inner;
      q[k] = is_log ? g[k] - sm_exp(p[k]) * ts : p[k] * (g[k] - ts);
    }
  }
};

extern "C" cudaError_t cck_softmax_backward(const void *dy, const void *y, void *dx, int dtype, int64_t outer,
                                            int64_t L, int64_t inner, int is_log, cudaStream_t s) {
  if (inner <= 0) return cudaSuccess;
  CCK_DISPATCH_FLOAT(dtype, T,
                     return cck_launch(outer * inner, (SoftmaxBwF<T>{(const T *)dy, (const T *)y, (T *)dx, L, inner, is_log}), s));
}

/* ---- NLL: a single item (N is a batch size); an out-of-range target is reported through bad ---- */
template <typename T> struct NllF {
  const T *x;
  const int64_t *t;
  T *out;
  int64_t *bad;
  int64_t N, C;
  __device__ void operator()(int64_t) const {
    bad[0] = 0;
    bad[1] = 0;
    for (int64_t n = 0; n < N; n++)
      if (t[n] < 0 || t[n] >= C) {
        bad[0] = 1;
        bad[1] = t[n];
        return;
      }
    double s = 0;
    for (int64_t n = 0; n < N; n++) s += (double)x[n * C + t[n]];
    *out = (T)(-s / (double)N);
  }
};

extern "C" cudaError_t cck_nll(const void *x, const int64_t *t, void *out, int64_t *bad, int dtype, int64_t N,
                               int64_t C, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(1, (NllF<T>{(const T *)x, t, (T *)out, bad, N, C}), s));
}

template <typename T> struct NllBwF {
  const T *g;
  const int64_t *t;
  T *dx;
  int64_t N, C;
  __device__ void operator()(int64_t i) const {
    int64_t n = i / C, c = i - n * C;
    double v = -(double)g[0] / (double)N;
    dx[i] = t[n] == c ? (T)v : (T)0;
  }
};

extern "C" cudaError_t cck_nll_backward(const void *g, const int64_t *t, void *dx, int dtype, int64_t N, int64_t C,
                                        cudaStream_t s) {
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(N * C, (NllBwF<T>{(const T *)g, t, (T *)dx, N, C}), s));
}
