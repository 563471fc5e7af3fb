/* norm.cu — batch_norm and layer_norm, forward and backward, as the CPU kernels of csrc/ops/norm.c:
 * statistics accumulate in double, the same roundings to the element type at the same places.
 * Batch norm reduces over N*S values per channel in one pass of partial (sum, sum of squares) pairs,
 * folded, then one item per channel; layer norm runs one item per row for the row statistics and one per column for dw, db. */
#include "cuda_common.cuh"

/* ======================================================================= batch norm ====== */
/* x (N,C,S): the N*S values of channel c are x[(n * C + c) * S + s]. Statistics are one pass of
 * (sum, sum of squares) pairs in double, each value taken relative to the channel's first value
 * (the shifted-data form of the variance, exact where a two-pass sum is and as robust in practice);
 * item (c, p) of `parts` per channel sums every parts-th value (adjacent items read adjacent values,
 * eight loads in flight each), then one item per group of partial pairs folds them and one item per
 * channel finishes. No division per value: the position (n, s) advances by (parts / S, parts % S). */
struct BnWalk {
  int64_t n, s, dn, ds, S;
  __device__ BnWalk(int64_t p, int64_t parts, int64_t S_) : n(p / S_), s(p % S_), dn(parts / S_), ds(parts % S_), S(S_) {}
  __device__ void next() {
    n += dn;
    s += ds;
    if (s >= S) {
      s -= S;
      n++;
    }
  }
};

#define BN_UNROLL 8

/* parts per channel (each item sums at least 32 values; ~512K items in all, at most 4096 per channel) */
static inline int64_t bn_parts(int64_t N, int64_t C, int64_t S) {
  int64_t count = N * S, parts = (int64_t)524288 / (C > 0 ? C : 1);
  if (parts > 4096) parts = 4096;
  if (parts > count / 32) parts = count / 32;
  return parts < 1 ? 1 : parts;
}
/* partial pairs folded per item, and the folded pairs per channel (at most 32) */
static inline int64_t bn_group(int64_t parts) { return parts > 0 ? (parts + 31) / 32 : 1; }
static inline int64_t bn_folded(int64_t parts) { return (parts + bn_group(parts) - 1) / bn_group(parts); }

/* pass 1, training: per item, the sums of d and d^2 with d = x - x[channel's first value] */
template <typename T> struct BnPartsF {
  const T *x;
  double *partial; /* (C, parts, 2) */
  int64_t C, S, count, parts;
  __device__ void operator()(int64_t t) const {
    int64_t c = t / parts, p = t - c * parts;
    const T *xc = x + c * S;
    double shift = (double)xc[0], s1 = 0, s2 = 0;
    BnWalk w(p, parts, S);
    int64_t r = p;
    for (; r + (BN_UNROLL - 1) * parts < count; r += BN_UNROLL * parts) {
      double v[BN_UNROLL];
#pragma unroll
      for (int u = 0; u < BN_UNROLL; u++) {
        v[u] = (double)xc[w.n * C * S + w.s];
        w.next();
      }
#pragma unroll
      for (int u = 0; u < BN_UNROLL; u++) {
        double d = v[u] - shift;
        s1 += d;
        s2 += d * d;
      }
    }
    for (; r < count; r += parts) {
      double d = (double)xc[w.n * C * S + w.s] - shift;
      s1 += d;
      s2 += d * d;
      w.next();
    }
    partial[2 * t] = s1;
    partial[2 * t + 1] = s2;
  }
};

/* folds `group` consecutive partial pairs of a channel into one pair: in (C, parts, 2) -> out (C, folded, 2) */
struct BnFoldF {
  const double *in;
  double *out;
  int64_t parts, group, folded;
  __device__ void operator()(int64_t t) const {
    int64_t c = t / folded, q = t - c * folded;
    int64_t p0 = q * group, p1 = p0 + group < parts ? p0 + group : parts;
    double a[4] = {0, 0, 0, 0}, b[4] = {0, 0, 0, 0};
    const double *src = in + 2 * c * parts;
    int64_t p = p0;
    for (; p + 3 < p1; p += 4) {
#pragma unroll
      for (int u = 0; u < 4; u++) {
        a[u] += src[2 * (p + u)];
        b[u] += src[2 * (p + u) + 1];
      }
    }
    for (; p < p1; p++) {
      a[0] += src[2 * p];
      b[0] += src[2 * p + 1];
    }
    out[2 * t] = (a[0] + a[1]) + (a[2] + a[3]);
    out[2 * t + 1] = (b[0] + b[1]) + (b[2] + b[3]);
  }
};

/* the sums of the n folded (a, b) pairs of channel c */
__device__ __forceinline__ void bn_sum_folded(const double *folded_sums, int64_t c, int64_t n, double *a, double *b) {
  *a = 0, *b = 0;
  for (int64_t q = 0; q < n; q++) {
    *a += folded_sums[2 * (c * n + q)];
    *b += folded_sums[2 * (c * n + q) + 1];
  }
}

/* per channel: mean, invstd, running stats, the saved mean/invstd, and y = x * scale + shift */
template <typename T> struct BnFinishF {
  cck_bn_args a;
  const double *folded_sums; /* training: (C, folded, 2) sums of d and d^2 */
  double *scale, *shift;
  int64_t folded;
  __device__ void operator()(int64_t c) const {
    T *rm = (T *)a.rm, *rv = (T *)a.rv;
    const T *w = (const T *)a.w, *b = (const T *)a.b;
    int64_t count = a.N * a.S;
    double mu, invstd;
    if (a.training) {
      double s1, s2;
      bn_sum_folded(folded_sums, c, folded, &s1, &s2);
      double d_mean = s1 / (double)count;
      double sq = s2 - s1 * d_mean; /* sum of (x - mean)^2 */
      if (sq < 0) sq = 0;
      mu = (double)((const T *)a.x)[c * a.S] + d_mean;
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

/* the channel of element i of (N,C,S) (32-bit divisions where the sizes allow) */
__device__ __forceinline__ int64_t bn_channel(int64_t i, int64_t C, int64_t S) {
  int64_t s, c;
  cck_divmod(cck_divmod(i, S, &s), C, &c);
  return c;
}

template <typename T> struct BnApplyF {
  const T *x;
  T *y;
  const double *scale, *shift;
  int64_t C, S;
  __device__ void operator()(int64_t i) const {
    int64_t c = bn_channel(i, C, S);
    if (S == 1) y[i] = (T)((double)x[i] * scale[c] + shift[c]);
    else y[i] = x[i] * (T)scale[c] + (T)shift[c];
  }
};

/* scratch (doubles): partial pairs (C, parts, 2), folded pairs (C, folded, 2), then 3 per channel */
static inline size_t bn_scratch_doubles(int64_t C, int64_t parts) {
  return (size_t)(2 * C * parts + 2 * C * bn_folded(parts) + 3 * C);
}

extern "C" size_t cck_batch_norm_scratch(const cck_bn_args *a) {
  return bn_scratch_doubles(a->C, a->training ? bn_parts(a->N, a->C, a->S) : 0) * sizeof(double);
}

template <typename T> static cudaError_t bn_typed(const cck_bn_args *a, double *scratch, cudaStream_t s) {
  int64_t C = a->C, count = a->N * a->S, parts = a->training ? bn_parts(a->N, C, a->S) : 0;
  int64_t group = parts ? bn_group(parts) : 1, folded = parts ? bn_folded(parts) : 0;
  double *partial = scratch, *folded_sums = partial + 2 * C * parts, *scale = folded_sums + 2 * C * folded,
         *shift = scale + C;
  cudaError_t e = cudaSuccess;
  if (a->training) {
    e = cck_launch(C * parts, BnPartsF<T>{(const T *)a->x, partial, C, a->S, count, parts}, s);
    if (e == cudaSuccess) e = cck_launch(C * folded, BnFoldF{partial, folded_sums, parts, group, folded}, s);
  }
  if (e == cudaSuccess) e = cck_launch(C, BnFinishF<T>{*a, folded_sums, scale, shift, folded}, s);
  if (e == cudaSuccess)
    e = cck_launch(a->N * C * a->S, BnApplyF<T>{(const T *)a->x, (T *)a->y, scale, shift, C, a->S}, s);
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
    const T *dyc = dy + c * S, *xc = x + c * S;
    double mu = (double)mean[c], sdy = 0, dot = 0;
    BnWalk w(p, parts, S);
    int64_t r = p;
    for (; r + (BN_UNROLL - 1) * parts < count; r += BN_UNROLL * parts) {
      double g[BN_UNROLL], v[BN_UNROLL];
#pragma unroll
      for (int u = 0; u < BN_UNROLL; u++) {
        int64_t k = w.n * C * S + w.s;
        g[u] = (double)dyc[k];
        v[u] = (double)xc[k];
        w.next();
      }
#pragma unroll
      for (int u = 0; u < BN_UNROLL; u++) {
        sdy += g[u];
        dot += g[u] * (v[u] - mu);
      }
    }
    for (; r < count; r += parts) {
      int64_t k = w.n * C * S + w.s;
      sdy += (double)dyc[k];
      dot += (double)dyc[k] * ((double)xc[k] - mu);
      w.next();
    }
    partial[2 * t] = sdy;
    partial[2 * t + 1] = dot;
  }
};

/* per channel: dw, db and the coefficients of dx = (dy - (x - mean) k - gm) a */
template <typename T> struct BnBwFinishF {
  cck_bn_bw_args a;
  const double *folded_sums; /* (C, folded, 2) */
  double *coef;              /* a, k, gm per channel */
  int64_t folded;
  __device__ void operator()(int64_t c) const {
    double sdy, dot;
    bn_sum_folded(folded_sums, c, folded, &sdy, &dot);
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
    int64_t c = bn_channel(i, C, S);
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
  return bn_scratch_doubles(a->C, bn_parts(a->N, a->C, a->S)) * sizeof(double);
}

template <typename T> static cudaError_t bn_bw_typed(const cck_bn_bw_args *a, double *scratch, cudaStream_t s) {
  int64_t C = a->C, count = a->N * a->S, parts = bn_parts(a->N, C, a->S);
  int64_t group = bn_group(parts), folded = bn_folded(parts);
  double *partial = scratch, *folded_sums = partial + 2 * C * parts, *coef = folded_sums + 2 * C * folded;
  const T *dy = (const T *)a->dy, *x = (const T *)a->x, *mean = (const T *)a->mean;
  cudaError_t e = cck_launch(C * parts, BnBwPartsF<T>{dy, x, mean, partial, C, a->S, count, parts}, s);
  if (e == cudaSuccess) e = cck_launch(C * folded, BnFoldF{partial, folded_sums, parts, group, folded}, s);
  if (e == cudaSuccess) e = cck_launch(C, BnBwFinishF<T>{*a, folded_sums, coef, folded}, s);
  if (e == cudaSuccess && a->dx)
    e = cck_launch(a->N * C * a->S, BnBwApplyF<T>{dy, x, mean, (T *)a->dx, coef, C, a->S}, s);
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
