/* reduce.c — sum/mean over dims (keepdim), sum_to (undoing broadcasting), max/argmax along a dim,
 * cumsum along a dim: forward, backward and CPU kernels. Float sums accumulate in double. */
#include "internal.h"

#include <stdio.h>

/* output shape with 1 at the reduced dims */
static int reduced_shape(const char *op, const cc_tensor *x, int ndims, const int *dims, bool *mask, int64_t *kshape) {
  for (int d = 0; d < x->ndim; d++) mask[d] = ndims == 0;
  for (int k = 0; k < ndims; k++) {
    int d = cc_normalize_dim(dims[k], x->ndim, op);
    if (d < 0) return -1;
    if (x->ndim == 0) continue;
    if (mask[d]) {
      cc_set_error("%s: dim %d appears more than once", op, d + 1);
      return -1;
    }
    mask[d] = true;
  }
  for (int d = 0; d < x->ndim; d++) kshape[d] = mask[d] ? 1 : x->shape[d];
  return 0;
}

static cc_tensor *drop_dims(cc_tensor *t, const bool *mask, int ndim) {
  int64_t shape[CC_MAX_DIMS];
  int n = 0;
  for (int d = 0; d < ndim; d++)
    if (!mask[d]) shape[n++] = t->shape[d];
  return cc_reshape(t, n, shape);
}

static int sum_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  /* g has the kept shape or the dropped one: view it with 1s, then expand */
  cc_tensor *gk = cc_reshape(g, (int)node->ints[0], node->shape + 0);
  if (!gk) return -1;
  cc_tensor *in = node->inputs[0];
  cc_tensor *e = cc_expand(gk, in->ndim, in->shape);
  cc_release(gk);
  if (!e) return -1;
  if (node->reals[0] != 1.0) {
    gi[0] = cc_mul_scalar(e, node->reals[0]);
    cc_release(e);
  } else {
    gi[0] = cc_contiguous(e);
    cc_release(e);
  }
  return gi[0] ? 0 : -1;
}

static cc_tensor *sum_impl(cc_tensor *x, int ndims, const int *dims, bool keepdim, bool mean, const char *op) {
  bool mask[CC_MAX_DIMS];
  int64_t kshape[CC_MAX_DIMS];
  if (reduced_shape(op, x, ndims, dims, mask, kshape)) return NULL;
  if (mean && cc_check_floating(op, x)) return NULL;
  cc_tensor *out = cc_empty(x->ndim, kshape, x->dtype, x->storage->device);
  if (!out) return NULL;
  int64_t count = cc_numel(x) / (cc_numel(out) ? cc_numel(out) : 1);
  if (cc_run(CC_OP_SUM, out, 1, &x, NULL, 0, NULL, 0) ||
      (mean && cc_numel(out) && cc_run(CC_OP_SCALAR, out, 1, &out, (int64_t[]){CC_BIN_MUL}, 1,
                                       (double[]){count ? 1.0 / (double)count : NAN, 0}, 2))) {
    cc_release(out);
    return NULL;
  }
  if (!keepdim) {
    cc_tensor *dropped = drop_dims(out, mask, x->ndim);
    cc_release(out);
    out = dropped;
    if (!out) return NULL;
  }
  cc_node *node = cc_attach_node(out, mean ? "MeanBackward" : "SumBackward", sum_backward, 1, &x);
  if (node) {
    node->ints[0] = x->ndim;
    memcpy(node->shape, kshape, sizeof kshape);
    node->reals[0] = mean ? 1.0 / (double)count : 1.0;
  }
  return out;
}

cc_tensor *cc_sum(cc_tensor *x, int ndims, const int *dims, bool keepdim) {
  return sum_impl(x, ndims, dims, keepdim, false, "sum");
}
cc_tensor *cc_mean(cc_tensor *x, int ndims, const int *dims, bool keepdim) {
  return sum_impl(x, ndims, dims, keepdim, true, "mean");
}

cc_tensor *cc_sum_to(cc_tensor *t, int ndim, const int64_t *shape) {
  if (ndim == t->ndim) {
    bool same = true;
    for (int d = 0; d < ndim; d++) same = same && shape[d] == t->shape[d];
    if (same) return cc_retain(t);
  }
  int lead = t->ndim - ndim;
  if (lead < 0) {
    cc_set_error("sum_to: target has more dimensions than the tensor");
    return NULL;
  }
  int dims[CC_MAX_DIMS], n = 0;
  for (int d = 0; d < t->ndim; d++) {
    int k = d - lead;
    if (k < 0 || (shape[k] == 1 && t->shape[d] != 1)) dims[n++] = d;
    else if (shape[k] != t->shape[d]) {
      cc_set_error("sum_to: size %lld cannot be reduced to %lld", (long long)t->shape[d], (long long)shape[k]);
      return NULL;
    }
  }
  cc_tensor *s = n ? cc_sum(t, n, dims, true) : cc_retain(t);
  if (!s) return NULL;
  cc_tensor *out = cc_reshape(s, ndim, shape);
  cc_release(s);
  return out;
}

/* ---- max / argmax ---- */
static int max_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  /* scatter g at the argmax positions: one-hot along dim by comparing with an index ramp */
  cc_tensor *x = node->inputs[0], *idx = node->saved[0];
  int dim = (int)node->ints[0];
  cc_tensor *gk = cc_reshape(g, x->ndim, node->shape);
  cc_tensor *ik = cc_reshape(idx, x->ndim, node->shape);
  int64_t ramp_shape[CC_MAX_DIMS];
  for (int d = 0; d < x->ndim; d++) ramp_shape[d] = d == dim ? x->shape[d] : 1;
  cc_tensor *ramp = cc_arange(0, (double)x->shape[dim], 1, CC_INT64);
  cc_tensor *ramp_v = ramp ? cc_reshape(ramp, x->ndim, ramp_shape) : NULL;
  /* the index ramp goes where the indices live before the comparison */
  cc_tensor *ramp_d = ramp_v ? cc_to_device(ramp_v, g->storage->device) : NULL;
  cc_tensor *hit = ramp_d && ik ? cc_compare(ramp_d, ik, CC_CMP_EQ) : NULL;
  cc_tensor *hitf = hit ? cc_to_dtype(hit, g->dtype) : NULL;
  gi[0] = hitf && gk ? cc_mul(hitf, gk) : NULL;
  cc_tensor *tmp[] = {gk, ik, ramp, ramp_v, ramp_d, hit, hitf};
  cc_release_n(7, tmp);
  return gi[0] ? 0 : -1;
}

int cc_max(cc_tensor *x, int dim, bool keepdim, cc_tensor **values, cc_tensor **indices) {
  *values = *indices = NULL;
  int d = cc_normalize_dim(dim, x->ndim, "max");
  if (d < 0) return -1;
  if (x->ndim == 0) {
    *values = cc_clone(x);
    *indices = cc_zeros(0, NULL, CC_INT64, x->storage->device);
    return *values && *indices ? 0 : -1;
  }
  if (x->shape[d] == 0) {
    cc_set_error("max: cannot reduce an empty dimension %d", d + 1);
    return -1;
  }
  int64_t kshape[CC_MAX_DIMS];
  for (int k = 0; k < x->ndim; k++) kshape[k] = k == d ? 1 : x->shape[k];
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_MAX;
  call.n_in = 1;
  call.in[0] = x;
  call.n_out = 2;
  call.out[0] = cc_empty(x->ndim, kshape, x->dtype, x->storage->device);
  call.out[1] = cc_empty(x->ndim, kshape, CC_INT64, x->storage->device);
  call.i[0] = d;
  if (!call.out[0] || !call.out[1] || cc_dispatch(&call)) goto fail;
  cc_tensor *v = call.out[0], *ix = call.out[1];
  if (!keepdim) {
    bool mask[CC_MAX_DIMS] = {0};
    mask[d] = true;
    v = drop_dims(call.out[0], mask, x->ndim);
    ix = drop_dims(call.out[1], mask, x->ndim);
    cc_release(call.out[0]);
    cc_release(call.out[1]);
    if (!v || !ix) {
      cc_release(v);
      cc_release(ix);
      return -1;
    }
  }
  cc_node *node = cc_attach_node(v, "MaxBackward", max_backward, 1, &x);
  if (node) {
    node->ints[0] = d;
    memcpy(node->shape, kshape, sizeof kshape);
    cc_node_save(node, ix);
  }
  *values = v;
  *indices = ix;
  return 0;
fail:
  cc_release(call.out[0]);
  cc_release(call.out[1]);
  return -1;
}

cc_tensor *cc_argmax(cc_tensor *x, int dim, bool keepdim) {
  cc_tensor *v, *i;
  bool was = cc_set_grad_enabled(false);
  int rc = cc_max(x, dim, keepdim, &v, &i);
  cc_set_grad_enabled(was);
  if (rc) return NULL;
  cc_release(v);
  return i;
}

cc_tensor *cc_max_all(cc_tensor *x) {
  int64_t n = cc_numel(x);
  if (n == 0) {
    cc_set_error("max: the tensor is empty");
    return NULL;
  }
  cc_tensor *flat = cc_reshape(x, 1, &n);
  if (!flat) return NULL;
  cc_tensor *v, *i;
  int rc = cc_max(flat, 0, false, &v, &i);
  cc_release(flat);
  if (rc) return NULL;
  cc_release(i);
  return v;
}

/* ---- cumsum: the gradient of a running sum is the running sum of the gradient from the end ---- */
static int cumsum_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *dx = cc_empty(g->ndim, g->shape, g->dtype, g->storage->device);
  if (!dx) return -1;
  int64_t ints[2] = {node->ints[0], 1};
  if (cc_run(CC_OP_CUMSUM, dx, 1, &g, ints, 2, NULL, 0)) {
    cc_release(dx);
    return -1;
  }
  gi[0] = dx;
  return 0;
}

cc_tensor *cc_cumsum(cc_tensor *x, int dim) {
  int d = cc_normalize_dim(dim, x->ndim, "cumsum");
  if (d < 0) return NULL;
  if (x->ndim == 0) return cc_clone(x);
  cc_tensor *out = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  if (!out) return NULL;
  int64_t ints[2] = {d, 0};
  if (cc_numel(x) && cc_run(CC_OP_CUMSUM, out, 1, &x, ints, 2, NULL, 0)) {
    cc_release(out);
    return NULL;
  }
  cc_node *node = cc_attach_node(out, "CumsumBackward", cumsum_backward, 1, &x);
  if (node) node->ints[0] = d;
  return out;
}

/* ======================================================================= CPU kernels ===== */

/* out has the input's rank with 1 at reduced dims */
static int sum_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int nd = x->ndim;
  int kd[CC_MAX_DIMS], rd[CC_MAX_DIMS], nk = 0, nr = 0;
  for (int d = 0; d < nd; d++) {
    if (out->shape[d] == 1 && x->shape[d] != 1) rd[nr++] = d;
    else kd[nk++] = d;
  }
  int64_t n_out = cc_numel(out), n_red = 1;
  for (int k = 0; k < nr; k++) n_red *= x->shape[rd[k]];
  const char *xb = cc_data_ptr(x);
  char *ob = cc_data_ptr(out);
  cc_dtype dt = x->dtype;
  int64_t inner_len = nr ? x->shape[rd[nr - 1]] : 1, inner_stride = nr ? x->stride[rd[nr - 1]] : 0;
  int64_t outer_red = n_red / (inner_len ? inner_len : 1);
#pragma omp parallel for schedule(static) if (n_out * n_red > 32768 && n_out > 1)
  for (int64_t o = 0; o < n_out; o++) {
    int64_t base = 0, ooff = 0, rem = o;
    for (int k = nk - 1; k >= 0; k--) {
      int d = kd[k];
      int64_t i = rem % x->shape[d];
      rem /= x->shape[d];
      base += i * x->stride[d];
      ooff += i * out->stride[d];
    }
    double acc = 0;
    int64_t iacc = 0;
    for (int64_t r = 0; r < outer_red; r++) {
      int64_t off = base, rr = r;
      for (int k = nr - 2; k >= 0; k--) {
        int d = rd[k];
        off += (rr % x->shape[d]) * x->stride[d];
        rr /= x->shape[d];
      }
      if (dt == CC_FLOAT32) {
        const float *p = (const float *)xb + off;
        float partial = 0; /* blocks of float sums, added in double */
        if (inner_stride == 1)
          for (int64_t i = 0; i < inner_len; i++) partial += p[i];
        else
          for (int64_t i = 0; i < inner_len; i++) partial += p[i * inner_stride];
        acc += partial;
      } else if (dt == CC_FLOAT64) {
        const double *p = (const double *)xb + off;
        for (int64_t i = 0; i < inner_len; i++) acc += p[i * inner_stride];
      } else {
        const int64_t *p = (const int64_t *)xb + off;
        for (int64_t i = 0; i < inner_len; i++) iacc += p[i * inner_stride];
      }
    }
    if (dt == CC_FLOAT32) ((float *)ob)[ooff] = (float)acc;
    else if (dt == CC_FLOAT64) ((double *)ob)[ooff] = acc;
    else ((int64_t *)ob)[ooff] = iacc;
  }
  return 0;
}

static int max_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *vals = c->out[0], *idx = c->out[1];
  int dim = (int)c->i[0];
  int64_t n_out = cc_numel(vals), len = x->shape[dim], step = x->stride[dim];
  const char *xb = cc_data_ptr(x);
#pragma omp parallel for schedule(static) if (n_out * len > 32768)
  for (int64_t o = 0; o < n_out; o++) {
    int64_t base = 0, voff = 0, ioff = 0, rem = o;
    for (int d = x->ndim - 1; d >= 0; d--) {
      if (d == dim) continue;
      int64_t i = rem % x->shape[d];
      rem /= x->shape[d];
      base += i * x->stride[d];
      voff += i * vals->stride[d];
      ioff += i * idx->stride[d];
    }
    int64_t best = 0;
    if (x->dtype == CC_FLOAT32) {
      const float *p = (const float *)xb + base;
      float m = p[0];
      for (int64_t i = 1; i < len && m == m; i++)
        if (p[i * step] > m || p[i * step] != p[i * step]) {
          m = p[i * step];
          best = i;
        }
      ((float *)cc_data_ptr(vals))[voff] = m;
    } else if (x->dtype == CC_FLOAT64) {
      const double *p = (const double *)xb + base;
      double m = p[0];
      for (int64_t i = 1; i < len && m == m; i++)
        if (p[i * step] > m || p[i * step] != p[i * step]) {
          m = p[i * step];
          best = i;
        }
      ((double *)cc_data_ptr(vals))[voff] = m;
    } else {
      const int64_t *p = (const int64_t *)xb + base;
      int64_t m = p[0];
      for (int64_t i = 1; i < len; i++)
        if (p[i * step] > m) {
          m = p[i * step];
          best = i;
        }
      ((int64_t *)cc_data_ptr(vals))[voff] = m;
    }
    ((int64_t *)cc_data_ptr(idx))[ioff] = best;
  }
  return 0;
}

/* one row at a time, in order (from the end when reversed); floats accumulate in double */
#define CUMSUM_ROW(T, ACC)                                                                         \
  {                                                                                                \
    const T *p = (const T *)x->storage->data + xoff;                                               \
    T *q = (T *)out->storage->data + ooff;                                                         \
    ACC acc = 0;                                                                                   \
    for (int64_t k = 0; k < n; k++) {                                                              \
      int64_t j = reverse ? n - 1 - k : k;                                                         \
      acc += p[j * xs];                                                                            \
      q[j * os] = (T)acc;                                                                          \
    }                                                                                              \
  }

static int cumsum_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0], reverse = (int)c->i[1];
  if (!cc_cumsum_operands_ok(c)) return -1;
  int64_t n = x->shape[dim], numel = cc_numel(x);
  if (numel == 0) return 0;
  int64_t rows = numel / n, xs = x->stride[dim], os = out->stride[dim];
#pragma omp parallel for schedule(static) if (numel > 32768 && rows > 1)
  for (int64_t r = 0; r < rows; r++) {
    int64_t xoff = x->offset, ooff = out->offset, rem = r;
    for (int d = x->ndim - 1; d >= 0; d--) {
      if (d == dim) continue;
      int64_t i = rem % x->shape[d];
      rem /= x->shape[d];
      xoff += i * x->stride[d];
      ooff += i * out->stride[d];
    }
    if (x->dtype == CC_FLOAT32) CUMSUM_ROW(float, double)
    else if (x->dtype == CC_FLOAT64) CUMSUM_ROW(double, double)
    else CUMSUM_ROW(int64_t, int64_t)
  }
  return 0;
}

void cc_cpu_register_reduce(void) {
  cc_register_kernel(CC_OP_CUMSUM, CC_CPU, cumsum_cpu);
  cc_register_kernel(CC_OP_SUM, CC_CPU, sum_cpu);
  cc_register_kernel(CC_OP_MAX, CC_CPU, max_cpu);
}
