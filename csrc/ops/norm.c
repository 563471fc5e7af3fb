/* norm.c — batch_norm and layer_norm: forward, backward and CPU kernels.
 * batch_norm: x (N,C,...) normalised per channel C over N and the trailing dims; running_mean,
 *   running_var, weight, bias (C) or NULL. Training normalises with the batch's biased variance
 *   and moves the running stats toward the batch's mean and unbiased variance (in place).
 * layer_norm: x (..., D1..Dk) normalised over its last nnorm dims; weight, bias (D1..Dk) or NULL.
 * Kernels take contiguous x/dy and contiguous 1-D stats; statistics accumulate in double. */
#include "internal.h"

#include <stdio.h>

/* ======================================================================= op level ====== */

/* a contiguous alias, never recorded (NULL stays NULL) */
static cc_tensor *raw_contiguous(cc_tensor *t) {
  if (!t) return NULL;
  bool was = cc_set_grad_enabled(false);
  cc_tensor *c = cc_contiguous(t);
  cc_set_grad_enabled(was);
  return c;
}

static int check_param(const char *op, const char *what, cc_tensor *x, cc_tensor *p, int ndim, const int64_t *shape) {
  if (!p) return 0;
  if (cc_check_same(op, x, p)) return -1;
  bool ok = p->ndim == ndim;
  for (int d = 0; ok && d < ndim; d++) ok = p->shape[d] == shape[d];
  if (!ok) {
    char s1[128], s2[128];
    cc_shape_str(p->ndim, p->shape, s1, sizeof s1);
    cc_shape_str(ndim, shape, s2, sizeof s2);
    cc_set_error("%s: %s of shape %s, expected %s", op, what, s1, s2);
    return -1;
  }
  return 0;
}

/* ---- batch norm ---- */
static int batch_norm_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *x = node->saved[0], *mean = node->saved[1], *invstd = node->saved[2], *w = node->saved[3];
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  int64_t C = x->shape[1];
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_BATCH_NORM_BACKWARD;
  call.n_in = 5;
  call.in[0] = gc;
  call.in[1] = x;
  call.in[2] = mean;
  call.in[3] = invstd;
  call.in[4] = w;
  call.n_out = 3;
  call.out[0] = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  if (cc_node_needs(node, 1)) call.out[1] = cc_empty(1, &C, x->dtype, x->storage->device);
  if (cc_node_needs(node, 2)) call.out[2] = cc_empty(1, &C, x->dtype, x->storage->device);
  call.i[0] = node->ints[0];
  int rc = -1;
  if (!call.out[0] || (cc_node_needs(node, 1) && !call.out[1]) || (cc_node_needs(node, 2) && !call.out[2])) goto done;
  if (cc_dispatch(&call)) goto done;
  /* weight and bias may be any shape with C elements */
  if (call.out[1] && !(gi[1] = cc_reshape(call.out[1], node->inputs[1]->ndim, node->inputs[1]->shape))) goto done;
  if (call.out[2] && !(gi[2] = cc_reshape(call.out[2], node->inputs[2]->ndim, node->inputs[2]->shape))) goto done;
  if (cc_node_needs(node, 0)) gi[0] = cc_retain(call.out[0]);
  rc = 0;
done:
  cc_release(gc);
  cc_release_n(3, call.out);
  return rc;
}

/* The shared forward of the norms: runs op on contiguous x, weight, bias (plus `extra` inputs between
 * x and weight: batch norm's running stats) into y and per-group statistics mean, invstd (n_stats each),
 * and records node_name saving x, mean, invstd and weight for the backward. i0 = tag, f = reals. */
static cc_tensor *run_norm(cc_op op, const char *node_name, cc_backward_fn backward, cc_tensor *x, cc_tensor *weight,
                           cc_tensor *bias, int n_extra, cc_tensor *const *extra, int64_t n_stats, int64_t tag,
                           const double *reals, int n_reals) {
  cc_tensor *xc = raw_contiguous(x), *wc = raw_contiguous(weight), *bc = raw_contiguous(bias);
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = op;
  call.in[0] = xc;
  for (int k = 0; k < n_extra; k++) call.in[1 + k] = extra[k];
  call.in[1 + n_extra] = wc;
  call.in[2 + n_extra] = bc;
  call.n_in = 3 + n_extra;
  call.n_out = 3;
  call.i[0] = tag;
  for (int k = 0; k < n_reals; k++) call.f[k] = reals[k];
  cc_tensor *y = NULL;
  if (!xc || (weight && !wc) || (bias && !bc)) goto done;
  call.out[0] = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  call.out[1] = cc_empty(1, &n_stats, x->dtype, x->storage->device);
  call.out[2] = cc_empty(1, &n_stats, x->dtype, x->storage->device);
  if (!call.out[0] || !call.out[1] || !call.out[2] || cc_dispatch(&call)) goto done;
  y = cc_retain(call.out[0]);
  cc_tensor *ins[3] = {x, weight, bias};
  cc_node *node = cc_attach_node(y, node_name, backward, 3, ins);
  if (node) {
    node->ints[0] = tag;
    cc_node_save(node, xc);
    cc_node_save(node, call.out[1]);
    cc_node_save(node, call.out[2]);
    cc_node_save(node, wc);
  }
done:
  cc_release(xc);
  cc_release(wc);
  cc_release(bc);
  cc_release_n(3, call.out);
  return y;
}

cc_tensor *cc_batch_norm(cc_tensor *x, cc_tensor *running_mean, cc_tensor *running_var, cc_tensor *weight,
                         cc_tensor *bias, bool training, double momentum, double eps) {
  const char *op = "batch_norm";
  if (cc_check_floating(op, x)) return NULL;
  char sx[128];
  cc_shape_str(x->ndim, x->shape, sx, sizeof sx);
  if (x->ndim < 2) {
    cc_set_error("batch_norm: expected an input of at least 2 dimensions (N,C,...), got %s", sx);
    return NULL;
  }
  int64_t C = x->shape[1], per_channel = C ? cc_numel(x) / C : 0;
  if (check_param(op, "running_mean", x, running_mean, 1, &C) || check_param(op, "running_var", x, running_var, 1, &C))
    return NULL;
  if (weight && cc_numel(weight) != C) {
    cc_set_error("batch_norm: weight has %lld elements, expected %lld (the channels of %s)",
                 (long long)cc_numel(weight), (long long)C, sx);
    return NULL;
  }
  if (bias && cc_numel(bias) != C) {
    cc_set_error("batch_norm: bias has %lld elements, expected %lld (the channels of %s)", (long long)cc_numel(bias),
                 (long long)C, sx);
    return NULL;
  }
  if ((weight && cc_check_same(op, x, weight)) || (bias && cc_check_same(op, x, bias))) return NULL;
  if ((running_mean && !cc_is_contiguous(running_mean)) || (running_var && !cc_is_contiguous(running_var))) {
    cc_set_error("batch_norm: running statistics must be contiguous (they are updated in place)");
    return NULL;
  }
  if (training && per_channel <= 1) {
    cc_set_error("batch_norm: expected more than 1 value per channel when training, got input size %s", sx);
    return NULL;
  }
  if (!training && (!running_mean || !running_var)) {
    cc_set_error("batch_norm: running_mean and running_var are needed in evaluation mode");
    return NULL;
  }
  cc_tensor *extra[2] = {running_mean, running_var};
  double reals[2] = {momentum, eps};
  return run_norm(CC_OP_BATCH_NORM, "BatchNormBackward", batch_norm_backward, x, weight, bias, 2, extra, C,
                  training, reals, 2);
}

/* ---- layer norm ---- */
static int layer_norm_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *x = node->saved[0], *mean = node->saved[1], *invstd = node->saved[2], *w = node->saved[3];
  cc_tensor *gc = cc_contiguous(g);
  if (!gc) return -1;
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_LAYER_NORM_BACKWARD;
  call.n_in = 5;
  call.in[0] = gc;
  call.in[1] = x;
  call.in[2] = mean;
  call.in[3] = invstd;
  call.in[4] = w;
  call.n_out = 3;
  call.i[0] = node->ints[0];
  call.out[0] = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  for (int k = 1; k <= 2; k++)
    if (cc_node_needs(node, k))
      call.out[k] = cc_empty(node->inputs[k]->ndim, node->inputs[k]->shape, x->dtype, x->storage->device);
  int rc = -1;
  if (!call.out[0] || (cc_node_needs(node, 1) && !call.out[1]) || (cc_node_needs(node, 2) && !call.out[2])) goto done;
  if (cc_dispatch(&call)) goto done;
  for (int k = 0; k < 3; k++)
    if (cc_node_needs(node, k)) gi[k] = cc_retain(call.out[k]);
  rc = 0;
done:
  cc_release(gc);
  cc_release_n(3, call.out);
  return rc;
}

cc_tensor *cc_layer_norm(cc_tensor *x, int nnorm, cc_tensor *weight, cc_tensor *bias, double eps) {
  const char *op = "layer_norm";
  if (cc_check_floating(op, x)) return NULL;
  if (nnorm < 1 || nnorm > x->ndim) {
    cc_set_error("layer_norm: cannot normalise over the last %d dims of a %d-d input", nnorm, x->ndim);
    return NULL;
  }
  const int64_t *nshape = x->shape + (x->ndim - nnorm);
  if (check_param(op, "weight", x, weight, nnorm, nshape) || check_param(op, "bias", x, bias, nnorm, nshape))
    return NULL;
  int64_t rows = 1;
  for (int d = 0; d < x->ndim - nnorm; d++) rows *= x->shape[d];
  double reals[1] = {eps};
  return run_norm(CC_OP_LAYER_NORM, "LayerNormBackward", layer_norm_backward, x, weight, bias, 0, NULL, rows,
                  nnorm, reals, 1);
}

/* group_norm: x (N,C,*) split into `groups` groups of C/groups channels, each normalised over its
   channels and spatial positions (biased variance), then weight (C) and bias (C) per channel; composed
   of layer_norm over (N, groups, C/groups * S) and a per-channel affine, so it runs on every backend
   that has layer_norm and its gradient follows from theirs */
cc_tensor *cc_group_norm(cc_tensor *x, int64_t groups, cc_tensor *weight, cc_tensor *bias, double eps) {
  char s[128];
  if (cc_check_floating("group_norm", x)) return NULL;
  if (x->ndim < 2) {
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("group_norm: expected an input (N, C, ...) of at least 2 dims, got shape %s", s);
    return NULL;
  }
  int64_t N = x->shape[0], C = x->shape[1];
  if (groups <= 0 || C % groups) {
    cc_set_error("group_norm: %lld groups do not divide the %lld channels", (long long)groups, (long long)C);
    return NULL;
  }
  if (!(eps >= 0)) {
    cc_set_error("group_norm: eps must be non-negative, got %g", eps);
    return NULL;
  }
  for (int k = 0; k < 2; k++) {
    cc_tensor *p = k ? bias : weight;
    if (!p) continue;
    if (p->ndim != 1 || p->shape[0] != C) {
      cc_shape_str(p->ndim, p->shape, s, sizeof s);
      cc_set_error("group_norm: %s must have shape (%lld) for %lld channels, got %s", k ? "bias" : "weight",
                   (long long)C, (long long)C, s);
      return NULL;
    }
    if (cc_check_same("group_norm", x, p)) return NULL;
  }
  int64_t per_group = cc_numel(x) / (N ? N : 1) / groups;
  if (N * C == 0 || per_group == 0) {
    cc_shape_str(x->ndim, x->shape, s, sizeof s);
    cc_set_error("group_norm: the input %s is empty", s);
    return NULL;
  }
  int64_t gshape[3] = {N, groups, per_group};
  cc_tensor *xg = cc_reshape(x, 3, gshape);
  cc_tensor *yg = xg ? cc_layer_norm(xg, 1, NULL, NULL, eps) : NULL;
  cc_tensor *y = yg ? cc_reshape(yg, x->ndim, x->shape) : NULL;
  cc_release(xg);
  cc_release(yg);
  if (!y || (!weight && !bias)) return y;
  /* weight and bias as (C, 1, ..., 1) against (N, C, *) */
  int64_t pshape[CC_MAX_DIMS];
  pshape[0] = C;
  for (int d = 1; d < x->ndim - 1; d++) pshape[d] = 1;
  for (int k = 0; k < 2 && y; k++) {
    cc_tensor *p = k ? bias : weight;
    if (!p) continue;
    cc_tensor *pv = cc_reshape(p, x->ndim - 1, pshape);
    cc_tensor *next = pv ? (k ? cc_add(y, pv) : cc_mul(y, pv)) : NULL;
    cc_release(pv);
    cc_release(y);
    y = next;
  }
  return y;
}

/* ======================================================================= CPU kernels ===== */

#define CB 64 /* most channels (batch norm) per block; 4 CB columns (layer norm) */

/* channels per block: one when each has contiguous runs (S > 1), else enough to give every
   thread a block, a multiple of 8 for the vector loops, at most max */
static int64_t block_size(int64_t n, int64_t S, int64_t max) {
  if (S > 1) return 1;
  int64_t threads = cc_get_num_threads(), b = (n + threads - 1) / threads;
  b = (b + 7) & ~(int64_t)7;
  return b < 8 ? 8 : (b > max ? max : b);
}

/* x (N,C,S) contiguous. Channel blocks across threads: per channel, N rows of S contiguous values;
   with S == 1 the channels of a row are contiguous instead, so the block walks rows outside. */
#define BN_KERNELS(T)                                                                              \
  static void bn_forward_##T(const T *x, T *y, T *mean_o, T *invstd_o, T *rm, T *rv, const T *w, const T *b, \
                             int64_t N, int64_t C, int64_t S, int training, double momentum, double eps) { \
    int64_t cb = block_size(C, S, CB), nblocks = (C + cb - 1) / cb, count = N * S;                 \
    _Pragma("omp parallel for schedule(dynamic, 1) if (N * C * S > 32768 && nblocks > 1)")         \
    for (int64_t blk = 0; blk < nblocks; blk++) {                                                  \
      int64_t c0 = blk * cb, nc = C - c0 < cb ? C - c0 : cb;                                       \
      double mean[CB], invstd[CB], scale[CB], shift[CB];                                           \
      if (training) {                                                                              \
        double sum[CB] = {0}, sq[CB] = {0};                                                        \
        for (int64_t n = 0; n < N; n++) {                                                          \
          const T *row = x + (n * C + c0) * S;                                                     \
          if (S == 1)                                                                              \
            for (int64_t c = 0; c < nc; c++) sum[c] += row[c];                                     \
          else                                                                                     \
            for (int64_t c = 0; c < nc; c++) {                                                     \
              double s = 0;                                                                        \
              const T *p = row + c * S;                                                            \
              _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < S; i++) s += p[i];      \
              sum[c] += s;                                                                         \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = 0; c < nc; c++) mean[c] = sum[c] / (double)count;                         \
        for (int64_t n = 0; n < N; n++) {                                                          \
          const T *row = x + (n * C + c0) * S;                                                     \
          if (S == 1)                                                                              \
            for (int64_t c = 0; c < nc; c++) {                                                     \
              double d = row[c] - mean[c];                                                         \
              sq[c] += d * d;                                                                      \
            }                                                                                      \
          else                                                                                     \
            for (int64_t c = 0; c < nc; c++) {                                                     \
              double s = 0, mu = mean[c];                                                          \
              const T *p = row + c * S;                                                            \
              _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < S; i++) {               \
                double d = p[i] - mu;                                                              \
                s += d * d;                                                                        \
              }                                                                                    \
              sq[c] += s;                                                                          \
            }                                                                                      \
        }                                                                                          \
        for (int64_t c = 0; c < nc; c++) {                                                         \
          invstd[c] = 1.0 / sqrt(sq[c] / (double)count + eps);                                     \
          if (rm) rm[c0 + c] = (T)(momentum * mean[c] + (1 - momentum) * (double)rm[c0 + c]);      \
          if (rv) rv[c0 + c] = (T)(momentum * sq[c] / (double)(count - 1) + (1 - momentum) * (double)rv[c0 + c]); \
        }                                                                                          \
      } else {                                                                                     \
        for (int64_t c = 0; c < nc; c++) {                                                         \
          mean[c] = rm[c0 + c];                                                                    \
          invstd[c] = 1.0 / sqrt((double)rv[c0 + c] + eps);                                        \
        }                                                                                          \
      }                                                                                            \
      for (int64_t c = 0; c < nc; c++) {                                                           \
        scale[c] = invstd[c] * (w ? (double)w[c0 + c] : 1.0);                                      \
        shift[c] = (b ? (double)b[c0 + c] : 0.0) - mean[c] * scale[c];                             \
        mean_o[c0 + c] = (T)mean[c];                                                               \
        invstd_o[c0 + c] = (T)invstd[c];                                                           \
      }                                                                                            \
      for (int64_t n = 0; n < N; n++) {                                                            \
        const T *row = x + (n * C + c0) * S;                                                       \
        T *out = y + (n * C + c0) * S;                                                             \
        if (S == 1) {                                                                              \
          for (int64_t c = 0; c < nc; c++) out[c] = (T)(row[c] * scale[c] + shift[c]);             \
        } else                                                                                     \
          for (int64_t c = 0; c < nc; c++) {                                                       \
            T a = (T)scale[c], s = (T)shift[c];                                                    \
            const T *p = row + c * S;                                                              \
            T *q = out + c * S;                                                                    \
            for (int64_t i = 0; i < S; i++) q[i] = p[i] * a + s;                                   \
          }                                                                                        \
      }                                                                                            \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  static void bn_backward_##T(const T *dy, const T *x, const T *mean_i, const T *invstd_i, const T *w, T *dx, \
                              T *dw, T *db, int64_t N, int64_t C, int64_t S, int training) {       \
    int64_t cb = block_size(C, S, CB), nblocks = (C + cb - 1) / cb, count = N * S;                 \
    _Pragma("omp parallel for schedule(dynamic, 1) if (N * C * S > 32768 && nblocks > 1)")         \
    for (int64_t blk = 0; blk < nblocks; blk++) {                                                  \
      int64_t c0 = blk * cb, nc = C - c0 < cb ? C - c0 : cb;                                       \
      double sdy[CB] = {0}, dot[CB] = {0}, mean[CB];                                               \
      for (int64_t c = 0; c < nc; c++) mean[c] = mean_i[c0 + c];                                   \
      for (int64_t n = 0; n < N; n++) {                                                            \
        const T *xr = x + (n * C + c0) * S, *gr = dy + (n * C + c0) * S;                           \
        if (S == 1)                                                                                \
          for (int64_t c = 0; c < nc; c++) {                                                       \
            sdy[c] += gr[c];                                                                       \
            dot[c] += gr[c] * (xr[c] - mean[c]);                                                   \
          }                                                                                        \
        else                                                                                       \
          for (int64_t c = 0; c < nc; c++) {                                                       \
            double s = 0, t = 0, mu = mean[c];                                                     \
            const T *p = xr + c * S, *g = gr + c * S;                                              \
            _Pragma("omp simd reduction(+ : s, t)") for (int64_t i = 0; i < S; i++) {              \
              s += g[i];                                                                           \
              t += g[i] * (p[i] - mu);                                                             \
            }                                                                                      \
            sdy[c] += s;                                                                           \
            dot[c] += t;                                                                           \
          }                                                                                        \
      }                                                                                            \
      double a[CB], k[CB], gm[CB];                                                                 \
      for (int64_t c = 0; c < nc; c++) {                                                           \
        double is = invstd_i[c0 + c];                                                              \
        if (dw) dw[c0 + c] = (T)(dot[c] * is);                                                     \
        if (db) db[c0 + c] = (T)sdy[c];                                                            \
        a[c] = is * (w ? (double)w[c0 + c] : 1.0);                                                 \
        k[c] = training ? dot[c] * is * is / (double)count : 0.0;                                  \
        gm[c] = training ? sdy[c] / (double)count : 0.0;                                           \
      }                                                                                            \
      if (!dx) continue;                                                                           \
      for (int64_t n = 0; n < N; n++) {                                                            \
        const T *xr = x + (n * C + c0) * S, *gr = dy + (n * C + c0) * S;                           \
        T *o = dx + (n * C + c0) * S;                                                              \
        if (S == 1)                                                                                \
          for (int64_t c = 0; c < nc; c++) o[c] = (T)((gr[c] - (xr[c] - mean[c]) * k[c] - gm[c]) * a[c]); \
        else                                                                                       \
          for (int64_t c = 0; c < nc; c++) {                                                       \
            T mu = (T)mean[c], kk = (T)k[c], g0 = (T)gm[c], aa = (T)a[c];                          \
            const T *p = xr + c * S, *g = gr + c * S;                                              \
            T *q = o + c * S;                                                                      \
            for (int64_t i = 0; i < S; i++) q[i] = (g[i] - (p[i] - mu) * kk - g0) * aa;            \
          }                                                                                        \
      }                                                                                            \
    }                                                                                              \
  }

BN_KERNELS(float)
BN_KERNELS(double)

#define PTR(t, T) ((t) ? (T *)cc_data_ptr(t) : NULL)

static void bn_dims(const cc_tensor *x, int64_t *N, int64_t *C, int64_t *S) {
  *N = x->shape[0];
  *C = x->shape[1];
  *S = 1;
  for (int d = 2; d < x->ndim; d++) *S *= x->shape[d];
}

static int batch_norm_cpu(const cc_call *c) {
  int64_t N, C, S;
  bn_dims(c->in[0], &N, &C, &S);
  if (c->in[0]->dtype == CC_FLOAT32)
    bn_forward_float(PTR(c->in[0], float), PTR(c->out[0], float), PTR(c->out[1], float), PTR(c->out[2], float),
                     PTR(c->in[1], float), PTR(c->in[2], float), PTR(c->in[3], float), PTR(c->in[4], float), N, C,
                     S, (int)c->i[0], c->f[0], c->f[1]);
  else
    bn_forward_double(PTR(c->in[0], double), PTR(c->out[0], double), PTR(c->out[1], double),
                      PTR(c->out[2], double), PTR(c->in[1], double), PTR(c->in[2], double), PTR(c->in[3], double),
                      PTR(c->in[4], double), N, C, S, (int)c->i[0], c->f[0], c->f[1]);
  return 0;
}

static int batch_norm_backward_cpu(const cc_call *c) {
  int64_t N, C, S;
  bn_dims(c->in[1], &N, &C, &S);
  if (c->in[1]->dtype == CC_FLOAT32)
    bn_backward_float(PTR(c->in[0], float), PTR(c->in[1], float), PTR(c->in[2], float), PTR(c->in[3], float),
                      PTR(c->in[4], float), PTR(c->out[0], float), PTR(c->out[1], float), PTR(c->out[2], float), N,
                      C, S, (int)c->i[0]);
  else
    bn_backward_double(PTR(c->in[0], double), PTR(c->in[1], double), PTR(c->in[2], double),
                       PTR(c->in[3], double), PTR(c->in[4], double), PTR(c->out[0], double),
                       PTR(c->out[1], double), PTR(c->out[2], double), N, C, S, (int)c->i[0]);
  return 0;
}

/* x (R, D) contiguous: rows across threads for y and dx; column blocks across threads for dw, db */
#define LN_KERNELS(T)                                                                              \
  static void ln_forward_##T(const T *x, T *y, T *mean_o, T *invstd_o, const T *w, const T *b, int64_t R, \
                             int64_t D, double eps) {                                              \
    _Pragma("omp parallel for schedule(static) if (R * D > 32768 && R > 1)")                       \
    for (int64_t r = 0; r < R; r++) {                                                              \
      const T *p = x + r * D;                                                                      \
      T *q = y + r * D;                                                                            \
      double s = 0, sq = 0;                                                                        \
      _Pragma("omp simd reduction(+ : s)") for (int64_t i = 0; i < D; i++) s += p[i];              \
      double mean = D ? s / (double)D : NAN;                                                       \
      _Pragma("omp simd reduction(+ : sq)") for (int64_t i = 0; i < D; i++) {                      \
        double d = p[i] - mean;                                                                    \
        sq += d * d;                                                                               \
      }                                                                                            \
      double invstd = 1.0 / sqrt(sq / (double)D + eps);                                            \
      mean_o[r] = (T)mean;                                                                         \
      invstd_o[r] = (T)invstd;                                                                     \
      T mu = (T)mean, is = (T)invstd;                                                              \
      if (w && b)                                                                                  \
        for (int64_t i = 0; i < D; i++) q[i] = (p[i] - mu) * is * w[i] + b[i];                     \
      else if (w)                                                                                  \
        for (int64_t i = 0; i < D; i++) q[i] = (p[i] - mu) * is * w[i];                            \
      else if (b)                                                                                  \
        for (int64_t i = 0; i < D; i++) q[i] = (p[i] - mu) * is + b[i];                            \
      else                                                                                         \
        for (int64_t i = 0; i < D; i++) q[i] = (p[i] - mu) * is;                                   \
    }                                                                                              \
  }                                                                                                \
                                                                                                   \
  static void ln_backward_##T(const T *dy, const T *x, const T *mean_i, const T *invstd_i, const T *w, T *dx, \
                              T *dw, T *db, int64_t R, int64_t D) {                                \
    if (dx) {                                                                                      \
      _Pragma("omp parallel for schedule(static) if (R * D > 32768 && R > 1)")                     \
      for (int64_t r = 0; r < R; r++) {                                                            \
        const T *p = x + r * D, *g = dy + r * D;                                                   \
        T *q = dx + r * D;                                                                         \
        T mu = mean_i[r], is = invstd_i[r];                                                        \
        double s1 = 0, s2 = 0;                                                                     \
        _Pragma("omp simd reduction(+ : s1, s2)") for (int64_t i = 0; i < D; i++) {                \
          T wg = w ? g[i] * w[i] : g[i];                                                           \
          s1 += wg;                                                                                \
          s2 += wg * ((p[i] - mu) * is);                                                           \
        }                                                                                          \
        T m1 = (T)(s1 / (double)D), m2 = (T)(s2 / (double)D);                                      \
        for (int64_t i = 0; i < D; i++) {                                                          \
          T wg = w ? g[i] * w[i] : g[i];                                                           \
          q[i] = (wg - m1 - (p[i] - mu) * is * m2) * is;                                           \
        }                                                                                          \
      }                                                                                            \
    }                                                                                              \
    if (!dw && !db) return;                                                                        \
    int64_t jb = block_size(D, 1, 4 * CB), nblocks = (D + jb - 1) / jb;                            \
    _Pragma("omp parallel for schedule(static) if (R * D > 32768 && nblocks > 1)")                 \
    for (int64_t blk = 0; blk < nblocks; blk++) {                                                  \
      int64_t j0 = blk * jb, nj = D - j0 < jb ? D - j0 : jb;                                       \
      double aw[4 * CB] = {0}, ab[4 * CB] = {0};                                                   \
      for (int64_t r = 0; r < R; r++) {                                                            \
        const T *p = x + r * D + j0, *g = dy + r * D + j0;                                         \
        T mu = mean_i[r], is = invstd_i[r];                                                        \
        for (int64_t j = 0; j < nj; j++) {                                                         \
          aw[j] += g[j] * ((p[j] - mu) * is);                                                      \
          ab[j] += g[j];                                                                           \
        }                                                                                          \
      }                                                                                            \
      for (int64_t j = 0; j < nj; j++) {                                                           \
        if (dw) dw[j0 + j] = (T)aw[j];                                                             \
        if (db) db[j0 + j] = (T)ab[j];                                                             \
      }                                                                                            \
    }                                                                                              \
  }

LN_KERNELS(float)
LN_KERNELS(double)

static void ln_dims(const cc_tensor *x, int nnorm, int64_t *R, int64_t *D) {
  *R = 1;
  *D = 1;
  for (int d = 0; d < x->ndim; d++) *(d < x->ndim - nnorm ? R : D) *= x->shape[d];
}

static int layer_norm_cpu(const cc_call *c) {
  int64_t R, D;
  ln_dims(c->in[0], (int)c->i[0], &R, &D);
  if (c->in[0]->dtype == CC_FLOAT32)
    ln_forward_float(PTR(c->in[0], float), PTR(c->out[0], float), PTR(c->out[1], float), PTR(c->out[2], float),
                     PTR(c->in[1], float), PTR(c->in[2], float), R, D, c->f[0]);
  else
    ln_forward_double(PTR(c->in[0], double), PTR(c->out[0], double), PTR(c->out[1], double),
                      PTR(c->out[2], double), PTR(c->in[1], double), PTR(c->in[2], double), R, D, c->f[0]);
  return 0;
}

static int layer_norm_backward_cpu(const cc_call *c) {
  int64_t R, D;
  ln_dims(c->in[1], (int)c->i[0], &R, &D);
  if (c->in[1]->dtype == CC_FLOAT32)
    ln_backward_float(PTR(c->in[0], float), PTR(c->in[1], float), PTR(c->in[2], float), PTR(c->in[3], float),
                      PTR(c->in[4], float), PTR(c->out[0], float), PTR(c->out[1], float), PTR(c->out[2], float), R,
                      D);
  else
    ln_backward_double(PTR(c->in[0], double), PTR(c->in[1], double), PTR(c->in[2], double),
                       PTR(c->in[3], double), PTR(c->in[4], double), PTR(c->out[0], double),
                       PTR(c->out[1], double), PTR(c->out[2], double), R, D);
  return 0;
}

void cc_cpu_register_norm(void) {
  cc_register_kernel(CC_OP_BATCH_NORM, CC_CPU, batch_norm_cpu);
  cc_register_kernel(CC_OP_BATCH_NORM_BACKWARD, CC_CPU, batch_norm_backward_cpu);
  cc_register_kernel(CC_OP_LAYER_NORM, CC_CPU, layer_norm_cpu);
  cc_register_kernel(CC_OP_LAYER_NORM_BACKWARD, CC_CPU, layer_norm_backward_cpu);
}
