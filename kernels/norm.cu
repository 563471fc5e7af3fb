/* norm.cu — batch_norm and layer_norm, forward and backward, as the CPU kernels of csrc/ops/norm.c:
 * statistics accumulate in double, the same roundings to the element type at the same places.
 * Batch norm reduces over N*S values per channel in two passes (partial sums, then one item per
 * channel); layer norm runs one item per row for the row statistics and one per column for dw, db. */
#include "cuda_common.cuh"

/* ======================================================================= batch norm ====== */
/* x (N,C,S): value r (0 <= r < N*S) of channel c is x[((r / S) * C + c) * S + r % S] */
__device__ __forceinline__ int64_t bn_index(int64_t r, int64_t c, int64_t C, int64_t S) {
  int64_t n = r / S;
  return (n * C + c) * S + (r - n * S);
}

/* scratch layout (doubles): partial[C * parts (* 2 in backward)], then per-channel coefficients */
static inline int64_t bn_parts(int64_t N, int64_t C, int64_t S) { return cck_parts(C, N * S); }

/* pass 1 (training): partial sums of x, or of (x - mean)^2 when mean is given */
template <typename T> struct BnPartsF {
  const T *x;
  const double *mean; /* NULL: plain sums */
  double *partial;
  int64_t C, S, count, parts;
  __device__ void operator()(int64_t t) const {
    int64_t c = t / parts, p = t - c * parts;
    double acc = 0;
    if (mean) {
      double mu = mean[c];
      for (int64_t r = p; r < count; r += parts) {
        double d = (double)x[bn_index(r, c, C, S)] - mu;
        acc += d * d;
      }
    } else {
      for (int64_t r = p; r < count; r += parts) acc += (double)x[bn_index(r, c, C, S)];
    }
    partial[t] = acc;
  }
};

struct BnMeanF {
  const double *partial;
  double *mean;
  int64_t count, parts;
  __device__ void operator()(int64_t c) const {
    double s = 0;
    for (int64_t p = 0; p < parts; p++) s += partial[c * parts + p];
    mean[c] = s / (double)count;
  }
};

/* per channel: invstd, running stats, the saved mean/invstd, and y = x * scale + shift */
template <typename T> struct BnFinishF {
  cck_bn_args a;
  const double *partial; /* training: the squared deviations */
  double *mean, *scale, *shift;
  int64_t parts;
  __device__ void operator()(int64_t c) const {
    T *rm = (T *)a.rm, *rv = (T *)a.rv;
    const T *w = (const T *)a.w, *b = (const T *)a.b;
    int64_t count = a.N * a.S;
    double mu, invstd;
    if (a.training) {
      double sq = 0;
      for (int64_t p = 0; p < parts; p++) sq += partial[c * parts + p];
      mu = mean[c];
      invstd = 1.0 / sqrt(sq / (double)count + a.eps);
      if (rm) rm[c] = (T)(a.momentum * mu + (1 - a.momentum) * (double)rm[c]);
      if (rv) rv[c] = (T)(a.momentum * sq / (double)(count - 1) + (1 - a.momentum) * (double)rv[c]);
    } else {
      mu = (double)rm[c];
      invstd = 1.0 / sqrt((double)rv[c] + a.eps);
    }
    double sc = invstd * (w ? (double)w[c] : 1.0);
    scale[c] = sc;
    shift[c] = (b ? (double)b[c] : 0.0) - mu * sc;
    ((T *)a.mean)[c] = (T)mu;
    ((T *)a.invstd)[c] = (T)invstd;
  }
};

template <typename T> struct BnApplyF {
  const T *x;
  T *y;
  const double *scale, *shift;
  int64_t C, S;
  __device__ void operator()(int64_t i) const {
    int64_t c = (i / S) % C;
    if (S == 1) y[i] = (T)((double)x[i] * scale[c] + shift[c]);
    else y[i] = x[i] * (T)scale[c] + (T)shift[c];
  }
};

extern "C" size_t cck_batch_norm_scratch(const cck_bn_args *a) {
  int64_t parts = a->training ? bn_parts(a->N, a->C, a->S) : 0;
  return (size_t)(a->C * parts + 3 * a->C) * sizeof(double);
}

template <typename T> static cudaError_t bn_typed(const cck_bn_args *a, double *scratch, cudaStream_t s) {
  int64_t C = a->C, count = a->N * a->S, parts = a->training ? bn_parts(a->N, C, a->S) : 0;
  double *partial = scratch, *mean = scratch + C * parts, *scale = mean + C, *shift = scale + C;
  cudaError_t e = cudaSuccess;
  if (a->training) {
    e = cck_launch(C * parts, BnPartsF<T>{(const T *)a->x, (const double *)0, partial, C, a->S, count, parts}, s);
    if (e == cudaSuccess) e = cck_launch(C, BnMeanF{partial, mean, count, parts}, s);
    if (e == cudaSuccess)
      e = cck_launch(C * parts, BnPartsF<T>{(const T *)a->x, mean, partial, C, a->S, count, parts}, s);
  }
  if (e == cudaSuccess) e = cck_launch(C, BnFinishF<T>{*a, partial, mean, scale, shift, parts}, s);
  if (e == cudaSuccess) e = cck_launch(a->N * C * a->S, BnApplyF<T>{(const T *)a->x, (T *)a->y, scale, shift, C, a->S}, s);
  return e;
}

extern "C" cudaError_t cck_batch_norm(const cck_bn_args *a, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, return bn_typed<T>(a, (double *)scratch, s));
}

/* ---- backward ---- */
/* pass 1: partial sums of dy and of dy * (x - mean), interleaved */
template <typename T> struct BnBwPartsF {
  const T *dy, *x, *mean;
  double *partial;
  int64_t C, S, count, parts;
  __device__ void operator()(int64_t t) const {
    int64_t c = t / parts, p = t - c * parts;
    double mu = (double)mean[c], sdy = 0, dot = 0;
    for (int64_t r = p; r < count; r += parts) {
      int64_t k = bn_index(r, c, C, S);
      sdy += (double)dy[k];
      dot += (double)dy[k] * ((double)x[k] - mu);
    }
    partial[2 * t] = sdy;
    partial[2 * t + 1] = dot;
  }
};

/* per channel: dw, db and the coefficients of dx = (dy - (x - mean) k - gm) a */
template <typename T> struct BnBwFinishF {
  cck_bn_bw_args a;
  const double *partial;
  double *coef; /* a, k, gm per channel */
  int64_t parts;
  __device__ void operator()(int64_t c) const {
    double sdy = 0, dot = 0;
    for (int64_t p = 0; p < parts; p++) {
      sdy += partial[2 * (c * parts + p)];
      dot += partial[2 * (c * parts + p) + 1];
    }
    int64_t count = a.N * a.S;
    double is = (double)((const T *)a.invstd)[c];
    if (a.dw) ((T *)a.dw)[c] = (T)(dot * is);
    if (a.db) ((T *)a.db)[c] = (T)sdy;
    coef[3 * c] = is * (a.w ? (double)((const T *)a.w)[c] : 1.0);
    coef[3 * c + 1] = a.training ? dot * is * is / (double)count : 0.0;
    coef[3 * c + 2] = a.training ? sdy / (double)count : 0.0;
  }
};

template <typename T> struct BnBwApplyF {
  const T *dy, *x, *mean;
  T *dx;
  const double *coef;
  int64_t C, S;
  __device__ void operator()(int64_t i) const {
    int64_t c = (i / S) % C;
    double mu = (double)mean[c], aa = coef[3 * c], kk = coef[3 * c + 1], gm = coef[3 * c + 2];
    if (S == 1) {
      dx[i] = (T)(((double)dy[i] - ((double)x[i] - mu) * kk - gm) * aa);
    } else {
      T tmu = (T)mu, tk = (T)kk, tg = (T)gm, ta = (T)aa;
      dx[i] = (dy[i] - (x[i] - tmu) * tk - tg) * ta;
    }
  }
};

extern "C" size_t cck_batch_norm_backward_scratch(const cck_bn_bw_args *a) {
  int64_t parts = bn_parts(a->N, a->C, a->S);
  return (size_t)(2 * a->C * parts + 3 * a->C) * sizeof(double);
}

template <typename T> static cudaError_t bn_bw_typed(const cck_bn_bw_args *a, double *scratch, cudaStream_t s) {
  int64_t C = a->C, count = a->N * a->S, parts = bn_parts(a->N, C, a->S);
  double *partial = scratch, *coef = scratch + 2 * C * parts;
  const T *dy = (const T *)a->dy, *x = (const T *)a->x, *mean = (const T *)a->mean;
  cudaError_t e = cck_launch(C * parts, BnBwPartsF<T>{dy, x, mean, partial, C, a->S, count, parts}, s);
  if (e == cudaSuccess) e = cck_launch(C, BnBwFinishF<T>{*a, partial, coef, parts}, s);
  if (e == cudaSuccess && a->dx) e = cck_launch(a->N * C * a->S, BnBwApplyF<T>{dy, x, mean, (T *)a->dx, coef, C, a->S}, s);
  return e;
}

extern "C" cudaError_t cck_batch_norm_backward(const cck_bn_bw_args *a, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, return bn_bw_typed<T>(a, (double *)scratch, s));
}

/* ======================================================================= layer norm ====== */
/* one item per row: mean and invstd (stored rounded to T, as the CPU kernel uses them) */
template <typename T> struct LnStatsF {
  const T *x;
  T *mean, *invstd;
  int64_t D;
  double eps;
  __device__ void operator()(int64_t r) const {
    const T *p = x + r * D;
    double s = 0, sq = 0;
    for (int64_t i = 0; i < D; i++) s += (double)p[i];
    double mu = D ? s / (double)D : (double)NAN;
    for (int64_t i = 0; i < D; i++) {
      double d = (double)p[i] - mu;
      sq += d * d;
    }
    mean[r] = (T)mu;
    invstd[r] = (T)(1.0 / sqrt(sq / (double)D + eps));
  }
};

template <typename T> struct LnApplyF {
  const T *x, *w, *b, *mean, *invstd;
  T *y;
  int64_t D;
  __device__ void operator()(int64_t i) const {
    int64_t r = i / D, j = i - r * D;
    T v = (x[i] - mean[r]) * invstd[r];
    if (w) v = v * w[j];
    if (b) v = v + b[j];
    y[i] = v;
  }
};

extern "C" cudaError_t cck_layer_norm(const cck_ln_args *a, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, {
    cudaError_t e = cck_launch(a->R, LnStatsF<T>{(const T *)a->x, (T *)a->mean, (T *)a->invstd, a->D, a->eps}, s);
    if (e == cudaSuccess)
      e = cck_launch(a->R * a->D, LnApplyF<T>{(const T *)a->x, (const T *)a->w, (const T *)a->b, (const T *)a->mean,
                                              (const T *)a->invstd, (T *)a->y, a->D}, s);
    return e;
  });
}

/* backward, one item per row: m1 = mean(wg), m2 = mean(wg * xhat), rounded to T */
template <typename T> struct LnBwRowF {
  const T *dy, *x, *mean, *invstd, *w;
  double *m; /* 2 per row */
  int64_t D;
  __device__ void operator()(int64_t r) const {
    const T *p = x + r * D, *g = dy + r * D;
    T mu = mean[r], is = invstd[r];
    double s1 = 0, s2 = 0;
    for (int64_t i = 0; i < D; i++) {
      T wg = w ? g[i] * w[i] : g[i];
      s1 += (double)wg;
      s2 += (double)(wg * ((p[i] - mu) * is));
    }
    m[2 * r] = (double)(T)(s1 / (double)D);
    m[2 * r + 1] = (double)(T)(s2 / (double)D);
  }
};

template <typename T> struct LnBwApplyF {
  const T *dy, *x, *mean, *invstd, *w;
  const double *m;
  T *dx;
  int64_t D;
  __device__ void operator()(int64_t i) const {
    int64_t r = i / D, j = i - r * D;
    T mu = mean[r], is = invstd[r], m1 = (T)m[2 * r], m2 = (T)m[2 * r + 1];
    T wg = w ? dy[i] * w[j] : dy[i];
    dx[i] = (wg - m1 - (x[i] - mu) * is * m2) * is;
  }
};

/* one item per column: dw = sum_r dy * xhat, db = sum_r dy */
template <typename T> struct LnBwColF {
  const T *dy, *x, *mean, *invstd;
  T *dw, *db;
  int64_t R, D;
  __device__ void operator()(int64_t j) const {
    double aw = 0, ab = 0;
    for (int64_t r = 0; r < R; r++) {
      T g = dy[r * D + j];
      aw += (double)(g * ((x[r * D + j] - mean[r]) * invstd[r]));
      ab += (double)g;
    }
    if (dw) dw[j] = (T)aw;
    if (db) db[j] = (T)ab;
  }
};

extern "C" size_t cck_layer_norm_backward_scratch(const cck_ln_bw_args *a) {
  return a->dx ? (size_t)(2 * a->R) * sizeof(double) : 0;
}

extern "C" cudaError_t cck_layer_norm_backward(const cck_ln_bw_args *a, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, {
    const T *dy = (const T *)a->dy, *x = (const T *)a->x, *mean = (const T *)a->mean;
    const T *invstd = (const T *)a->invstd, *w = (const T *)a->w;
    cudaError_t e = cudaSuccess;
    if (a->dx) {
      e = cck_launch(a->R, LnBwRowF<T>{dy, x, mean, invstd, w, (double *)scratch, a->D}, s);
      if (e == cudaSuccess)
        e = cck_launch(a->R * a->D, LnBwApplyF<T>{dy, x, mean, invstd, w, (const double *)scratch, (T *)a->dx, a->D}, s);
    }
    if (e == cudaSuccess && (a->dw || a->db))
      e = cck_launch(a->D, LnBwColF<T>{dy, x, mean, invstd, (T *)a->dw, (T *)a->db, a->R, a->D}, s);
    return e;
  });
}
