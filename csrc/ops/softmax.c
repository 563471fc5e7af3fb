/* softmax.c — softmax, log_softmax along any dim, and cross_entropy (mean NLL of log_softmax):
 * forward, backward and CPU kernels.
 * Kernels see a contiguous input as (outer, L, inner) around the softmax dim: no transposes.
 * cross_entropy: logits (N,C), targets int64 (N) with 0-based class indices -> scalar mean. */
#include "internal.h"
#include "scalar.h"

#include <stdio.h>

/* ======================================================================= op level ====== */

static cc_tensor *raw_contiguous(cc_tensor *t) {
  bool was = cc_set_grad_enabled(false);
  cc_tensor *c = cc_contiguous(t);
  cc_set_grad_enabled(was);
  return c;
}

static int softmax_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *y = node->saved[0];
  cc_tensor *gc = cc_contiguous(g);
  cc_tensor *dx = gc ? cc_empty(y->ndim, y->shape, y->dtype, y->storage->device) : NULL;
  cc_tensor *in[2] = {gc, y};
  if (dx && cc_run(CC_OP_SOFTMAX_BACKWARD, dx, 2, in, node->ints, 2, NULL, 0)) {
    cc_release(dx);
    dx = NULL;
  }
  cc_release(gc);
  gi[0] = dx;
  return dx ? 0 : -1;
}

static cc_tensor *softmax_impl(cc_tensor *x, int dim, bool log) {
  const char *op = log ? "log_softmax" : "softmax";
  if (cc_check_floating(op, x)) return NULL;
  int d = cc_normalize_dim(dim, x->ndim, op);
  if (d < 0) return NULL;
  cc_tensor *xc = raw_contiguous(x);
  if (!xc) return NULL;
  cc_tensor *out = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  int64_t ints[2] = {log, d};
  if (out && cc_run(CC_OP_SOFTMAX, out, 1, &xc, ints, 2, NULL, 0)) {
    cc_release(out);
    out = NULL;
  }
  cc_release(xc);
  if (!out) return NULL;
  cc_node *node = cc_attach_node(out, log ? "LogSoftmaxBackward" : "SoftmaxBackward", softmax_backward, 1, &x);
  if (node) {
    node->ints[0] = log;
    node->ints[1] = d;
    cc_node_save(node, out);
  }
  return out;
}

cc_tensor *cc_softmax(cc_tensor *x, int dim) { return softmax_impl(x, dim, false); }
cc_tensor *cc_log_softmax(cc_tensor *x, int dim) { return softmax_impl(x, dim, true); }

/* ---- negative log likelihood of log-probabilities, mean over the batch ---- */
static int nll_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *targets = node->saved[0];
  cc_tensor *gc = cc_contiguous(g);
  cc_tensor *dx = gc ? cc_empty(node->ndim, node->shape, g->dtype, g->storage->device) : NULL;
  cc_tensor *in[2] = {gc, targets};
  if (dx && cc_run(CC_OP_NLL_BACKWARD, dx, 2, in, NULL, 0, NULL, 0)) {
    cc_release(dx);
    dx = NULL;
  }
  cc_release(gc);
  gi[0] = dx;
  return dx ? 0 : -1;
}

cc_tensor *cc_cross_entropy(cc_tensor *logits, cc_tensor *targets) {
  const char *op = "cross_entropy";
  if (cc_check_floating(op, logits)) return NULL;
  if (targets->dtype != CC_INT64) {
    cc_set_error("cross_entropy: targets must be int64 class indices, got %s", cc_dtype_name(targets->dtype));
    return NULL;
  }
  if (targets->storage->device != logits->storage->device) {
    cc_set_error("cross_entropy: logits and targets on different devices (%s vs %s)",
                 cc_device_name(logits->storage->device), cc_device_name(targets->storage->device));
    return NULL;
  }
  if (logits->ndim != 2 || targets->ndim != 1 || targets->shape[0] != logits->shape[0]) {
    char s1[128], s2[128];
    cc_shape_str(logits->ndim, logits->shape, s1, sizeof s1);
    cc_shape_str(targets->ndim, targets->shape, s2, sizeof s2);
    cc_set_error("cross_entropy: expected logits (N,C) and targets (N), got %s and %s", s1, s2);
    return NULL;
  }
  cc_tensor *tc = cc_contiguous(targets);
  cc_tensor *lsm = tc ? cc_log_softmax(logits, 1) : NULL;
  cc_tensor *out = lsm ? cc_empty(0, NULL, logits->dtype, logits->storage->device) : NULL;
  cc_tensor *in[2] = {lsm, tc};
  if (out && cc_run(CC_OP_NLL, out, 2, in, NULL, 0, NULL, 0)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cc_last_error());
    cc_set_error("cross_entropy: %s", msg);
    cc_release(out);
    out = NULL;
  }
  if (out) {
    cc_node *node = cc_attach_node(out, "NllLossBackward", nll_backward, 1, &lsm);
    if (node) {
      node->ndim = 2;
      memcpy(node->shape, logits->shape, 2 * sizeof(int64_t));
      cc_node_save(node, tc);
    }
  }
  cc_release(tc);
  cc_release(lsm);
  return out;
}

/* ======================================================================= CPU kernels ===== */

#define SM_CHUNK 64 /* inner positions handled together when the softmax dim is not the last */

static void sm_dims(const cc_tensor *t, int d, int64_t *outer, int64_t *L, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  *L = t->ndim ? t->shape[d] : 1;
  for (int k = 0; k < t->ndim; k++) {
    if (k < d) *outer *= t->shape[k];
    if (k > d) *inner *= t->shape[k];
  }
}

/* softmax: y = exp(x - max) / sum; log_softmax: y = x - max - log(sum) */
#define SOFTMAX_KERNEL(T, EXP)                                                                     \
  static void softmax_##T(const T *x, T *y, int64_t outer, int64_t L, int64_t inner, int is_log) { \
    if (inner == 1) {                                                                              \
      _Pragma("omp parallel for schedule(static) if (outer * L > 32768 && outer > 1)")             \
      for (int64_t o = 0; o < outer; o++) {                                                        \
        const T *p = x + o * L;                                                                    \
        T *q = y + o * L;                                                                          \
        T m = -INFINITY;                                                                           \
        int has_nan = 0;                                                                           \
        _Pragma("omp simd reduction(max : m) reduction(| : has_nan)")                              \
        for (int64_t i = 0; i < L; i++) {                                                          \
          m = p[i] > m ? p[i] : m;                                                                 \
          has_nan |= p[i] != p[i];                                                                 \
        }                                                                                          \
        if (has_nan) m = NAN;                                                                      \
        double s = 0;                                                                              \
        if (is_log) {                                                                              \
          _Pragma("omp simd reduction(+ : s)")                                                     \
          for (int64_t i = 0; i < L; i++) s += EXP(p[i] - m);                                      \
          T ls = (T)log(s);                                                                        \
          for (int64_t i = 0; i < L; i++) q[i] = p[i] - m - ls;                                    \
        } else {                                                                                   \
          _Pragma("omp simd reduction(+ : s)")                                                     \
          for (int64_t i = 0; i < L; i++) {                                                        \
            T e = EXP(p[i] - m);                                                                   \
            q[i] = e;                                                                              \
            s += e;                                                                                \
          }                                                                                        \
          T r = (T)(1.0 / s);                                                                      \
          for (int64_t i = 0; i < L; i++) q[i] *= r;                                               \
        }                                                                                          \
      }                                                                                            \
      return;                                                                                      \
    }                                                                                              \
    int64_t chunks = (inner + SM_CHUNK - 1) / SM_CHUNK, pieces = outer * chunks;                   \
    _Pragma("omp parallel for schedule(static) if (outer * L * inner > 32768 && pieces > 1)")      \
    for (int64_t pc = 0; pc < pieces; pc++) {                                                      \
      int64_t o = pc / chunks, j0 = (pc % chunks) * SM_CHUNK;                                      \
      int64_t nj = inner - j0 < SM_CHUNK ? inner - j0 : SM_CHUNK;                                  \
      const T *p = x + o * L * inner + j0;                                                         \
      T *q = y + o * L * inner + j0;                                                               \
      T m[SM_CHUNK];                                                                               \
      double s[SM_CHUNK];                                                                          \
      for (int64_t j = 0; j < nj; j++) {                                                           \
        m[j] = L ? p[j] : (T)0;                                                                    \
        s[j] = 0;                                                                                  \
      }                                                                                            \
      for (int64_t i = 1; i < L; i++)                                                              \
        for (int64_t j = 0; j < nj; j++) {                                                         \
          T v = p[i * inner + j];                                                                  \
          m[j] = (v > m[j] || v != v) ? v : m[j];                                                  \
        }                                                                                          \
      for (int64_t i = 0; i < L; i++)                                                              \
        for (int64_t j = 0; j < nj; j++) {                                                         \
          T e = EXP(p[i * inner + j] - m[j]);                                                      \
          if (!is_log) q[i * inner + j] = e;                                                       \
          s[j] += e;                                                                               \
        }                                                                                          \
      T f[SM_CHUNK];                                                                               \
      for (int64_t j = 0; j < nj; j++) f[j] = is_log ? (T)log(s[j]) + m[j] : (T)(1.0 / s[j]);      \
      for (int64_t i = 0; i < L; i++)                                                              \
        for (int64_t j = 0; j < nj; j++) {                                                         \
          if (is_log) q[i * inner + j] = p[i * inner + j] - f[j];                                  \
          else q[i * inner + j] *= f[j];                                                           \
        }                                                                                          \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  /* softmax: dx = y (dy - sum dy y); log_softmax: dx = dy - exp(y) sum dy */                      \
  static void softmax_bw_##T(const T *dy, const T *y, T *dx, int64_t outer, int64_t L, int64_t inner, int is_log) { \
    int64_t chunks = (inner + SM_CHUNK - 1) / SM_CHUNK, pieces = outer * chunks;                   \
    _Pragma("omp parallel for schedule(static) if (outer * L * inner > 32768 && pieces > 1)")      \
    for (int64_t pc = 0; pc < pieces; pc++) {                                                      \
      int64_t o = pc / chunks, j0 = (pc % chunks) * SM_CHUNK;                                      \
      int64_t nj = inner - j0 < SM_CHUNK ? inner - j0 : SM_CHUNK;                                  \
      int64_t base = o * L * inner + j0;                                                           \
      const T *g = dy + base, *p = y + base;                                                       \
      T *q = dx + base;                                                                            \
      if (inner == 1) {                                                                            \
        double s = 0;                                                                              \
        if (is_log) {                                                                              \
          _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < L; i++) s += g[i];          \
          T ts = (T)s;                                                                             \
          for (int64_t i = 0; i < L; i++) q[i] = g[i] - EXP(p[i]) * ts;                            \
        } else {                                                                                   \
          _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < L; i++) s += g[i] * p[i];   \
          T ts = (T)s;                                                                             \
          for (int64_t i = 0; i < L; i++) q[i] = p[i] * (g[i] - ts);                               \
        }                                                                                          \
        continue;                                                                                  \
      }                                                                                            \
      double s[SM_CHUNK] = {0};                                                                    \
      for (int64_t i = 0; i < L; i++)                                                              \
        for (int64_t j = 0; j < nj; j++) s[j] += is_log ? g[i * inner + j] : g[i * inner + j] * p[i * inner + j]; \
      T ts[SM_CHUNK];                                                                              \
      for (int64_t j = 0; j < nj; j++) ts[j] = (T)s[j];                                            \
      for (int64_t i = 0; i < L; i++)                                                              \
        for (int64_t j = 0; j < nj; j++) {                                                         \
          int64_t k = i * inner + j;                                                               \
          q[k] = is_log ? g[k] - EXP(p[k]) * ts[j] : p[k] * (g[k] - ts[j]);                        \
        }                                                                                          \
    }                                                                                              \
  }

SOFTMAX_KERNEL(float, cc_expf_fast)
SOFTMAX_KERNEL(double, exp)

static int softmax_cpu(const cc_call *c) {
  int64_t outer, L, inner;
  sm_dims(c->in[0], (int)c->i[1], &outer, &L, &inner);
  if (c->in[0]->dtype == CC_FLOAT32)
    softmax_float(cc_data_ptr(c->in[0]), cc_data_ptr(c->out[0]), outer, L, inner, (int)c->i[0]);
  else
    softmax_double(cc_data_ptr(c->in[0]), cc_data_ptr(c->out[0]), outer, L, inner, (int)c->i[0]);
  return 0;
}

static int softmax_backward_cpu(const cc_call *c) {
  int64_t outer, L, inner;
  sm_dims(c->in[1], (int)c->i[1], &outer, &L, &inner);
  if (c->in[1]->dtype == CC_FLOAT32)
    softmax_bw_float(cc_data_ptr(c->in[0]), cc_data_ptr(c->in[1]), cc_data_ptr(c->out[0]), outer, L, inner,
                     (int)c->i[0]);
  else
    softmax_bw_double(cc_data_ptr(c->in[0]), cc_data_ptr(c->in[1]), cc_data_ptr(c->out[0]), outer, L, inner,
                      (int)c->i[0]);
  return 0;
}

static int nll_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *t = c->in[1];
  int64_t N = x->shape[0], C = x->shape[1];
  const int64_t *tgt = cc_data_ptr(t);
  for (int64_t n = 0; n < N; n++)
    if (tgt[n] < 0 || tgt[n] >= C) {
      cc_set_error("target %lld is out of bounds for %lld classes", (long long)tgt[n], (long long)C);
      return -1;
    }
  double s = 0;
  if (x->dtype == CC_FLOAT32) {
    const float *p = cc_data_ptr(x);
    for (int64_t n = 0; n < N; n++) s += p[n * C + tgt[n]];
    *(float *)cc_data_ptr(c->out[0]) = (float)(-s / (double)N);
  } else {
    const double *p = cc_data_ptr(x);
    for (int64_t n = 0; n < N; n++) s += p[n * C + tgt[n]];
    *(double *)cc_data_ptr(c->out[0]) = -s / (double)N;
  }
  return 0;
}

static int nll_backward_cpu(const cc_call *c) {
  cc_tensor *dx = c->out[0], *g = c->in[0], *t = c->in[1];
  int64_t N = dx->shape[0], C = dx->shape[1];
  const int64_t *tgt = cc_data_ptr(t);
  double v = -(dx->dtype == CC_FLOAT32 ? *(const float *)cc_data_ptr(g) : *(const double *)cc_data_ptr(g)) / (double)N;
  memset(cc_data_ptr(dx), 0, (size_t)(N * C) * cc_dtype_size(dx->dtype));
  for (int64_t n = 0; n < N; n++) {
    if (tgt[n] < 0 || tgt[n] >= C) continue;
    if (dx->dtype == CC_FLOAT32) ((float *)cc_data_ptr(dx))[n * C + tgt[n]] = (float)v;
    else ((double *)cc_data_ptr(dx))[n * C + tgt[n]] = v;
  }
  return 0;
}

void cc_cpu_register_softmax(void) {
  cc_register_kernel(CC_OP_SOFTMAX, CC_CPU, softmax_cpu);
  cc_register_kernel(CC_OP_SOFTMAX_BACKWARD, CC_CPU, softmax_backward_cpu);
  cc_register_kernel(CC_OP_NLL, CC_CPU, nll_cpu);
  cc_register_kernel(CC_OP_NLL_BACKWARD, CC_CPU, nll_backward_cpu);
}
