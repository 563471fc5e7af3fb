/* tensor.c — tensor lifetime (refcounts, iterative release of whole graphs), creation, copies,
 * dtype and device conversion, element access. Views live in ops/view.c. */
#include "internal.h"

#include <stdlib.h>
#include <string.h>

extern atomic_llong cc_live_tensor_count;

void cc_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride) {
  int64_t s = 1;
  for (int d = ndim - 1; d >= 0; d--) {
    stride[d] = s;
    s *= shape[d] > 0 ? shape[d] : 1;
  }
}

int cc_check_shape(int ndim, const int64_t *shape) {
  if (ndim < 0 || ndim > CC_MAX_DIMS) {
    cc_set_error("tensors have at most %d dimensions (got %d)", CC_MAX_DIMS, ndim);
    return -1;
  }
  int64_t n = 1;
  for (int d = 0; d < ndim; d++) {
    if (shape[d] < 0) {
      cc_set_error("negative size %lld at dimension %d", (long long)shape[d], d + 1);
      return -1;
    }
    if (shape[d] && n > INT64_MAX / 16 / shape[d]) {
      cc_set_error("tensor too large");
      return -1;
    }
    n *= shape[d];
  }
  return 0;
}

cc_tensor *cc_tensor_wrap(cc_storage *s, int64_t offset, int ndim, const int64_t *shape,
                          const int64_t *stride, cc_dtype dt) {
  cc_tensor *t = calloc(1, sizeof *t);
  if (!t) {
    cc_set_error("out of host memory");
    return NULL;
  }
  __atomic_add_fetch(&s->refcount, 1, __ATOMIC_RELAXED);
  t->storage = s;
  t->offset = offset;
  t->ndim = ndim;
  for (int d = 0; d < ndim; d++) {
    t->shape[d] = shape[d];
    t->stride[d] = stride[d];
  }
  t->dtype = dt;
  t->refcount = 1;
  atomic_fetch_add(&cc_live_tensor_count, 1);
  return t;
}

cc_tensor *cc_retain(cc_tensor *t) {
  if (t) __atomic_add_fetch(&t->refcount, 1, __ATOMIC_RELAXED);
  return t;
}

static void node_free(cc_node *n);

/* release is iterative: freeing a long graph must not recurse once per node. The stack of tensors
 * still to destroy lives in the thread (64 entries), and on the heap only while one release needs
 * more: that block is freed when the release is done, so no thread leaves it behind when it ends
 * (a prefetch worker, an OpenMP thread). */
#define PENDING_LOCAL 64
static _Thread_local cc_tensor *pending_local[PENDING_LOCAL];
static _Thread_local cc_tensor **pending_heap;
static _Thread_local int n_pending, cap_heap, releasing;

static void destroy(cc_tensor *t) {
  cc_storage_release(t->storage);
  cc_release(t->grad);
  cc_release(t->bw_grad);
  if (t->grad_fn) node_free(t->grad_fn);
  atomic_fetch_sub(&cc_live_tensor_count, 1);
  free(t);
}

/* pushes t on the thread's stack; 0 when a longer stack cannot be allocated */
static int push_pending(cc_tensor *t) {
  int cap = pending_heap ? cap_heap : PENDING_LOCAL;
  if (n_pending == cap) {
    int grown_cap = cap * 2;
    cc_tensor **grown = realloc(pending_heap, (size_t)grown_cap * sizeof *grown);
    if (!grown) return 0;
    if (!pending_heap) memcpy(grown, pending_local, sizeof pending_local);
    pending_heap = grown;
    cap_heap = grown_cap;
  }
  (pending_heap ? pending_heap : pending_local)[n_pending++] = t;
  return 1;
}

void cc_release(cc_tensor *t) {
  if (!t) return;
  if (__atomic_sub_fetch(&t->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
  if (!push_pending(t)) { /* fall back to recursion rather than leak */
    destroy(t);
    return;
  }
  if (releasing) return;
  releasing = 1;
  /* destroy() may push more, moving the stack to the heap: read the pointer every time */
  while (n_pending > 0) {
    cc_tensor *next = (pending_heap ? pending_heap : pending_local)[--n_pending];
    destroy(next);
  }
  free(pending_heap);
  pending_heap = NULL;
  cap_heap = 0;
  releasing = 0;
}

static void node_free(cc_node *n) {
  if (n == &cc_lost_graph_node) return; /* shared (autograd.c) */
  for (int i = 0; i < n->n_inputs; i++) cc_release(n->inputs[i]);
  for (int i = 0; i < n->n_saved; i++) cc_release(n->saved[i]);
  if (n->user_free) n->user_free(n->user);
  free(n);
}

/* ---- creation ---- */
cc_tensor *cc_empty(int ndim, const int64_t *shape, cc_dtype dt, int device) {
  if (cc_check_shape(ndim, shape)) return NULL;
  if ((int)dt < 0 || dt >= CC_NUM_DTYPES) {
    cc_set_error("unknown dtype %d", (int)dt);
    return NULL;
  }
  int64_t stride[CC_MAX_DIMS], n = 1;
  for (int d = 0; d < ndim; d++) n *= shape[d];
  cc_contiguous_strides(ndim, shape, stride);
  cc_storage *s = cc_storage_new((size_t)n * cc_dtype_size(dt), device);
  if (!s) return NULL;
  cc_tensor *t = cc_tensor_wrap(s, 0, ndim, shape, stride, dt);
  cc_storage_release(s);
  return t;
}

cc_tensor *cc_full(int ndim, const int64_t *shape, double value, cc_dtype dt, int device) {
  cc_tensor *t = cc_empty(ndim, shape, dt, device);
  if (t && cc_fill_(t, value)) {
    cc_release(t);
    return NULL;
  }
  return t;
}

cc_tensor *cc_zeros(int ndim, const int64_t *shape, cc_dtype dt, int device) {
  return cc_full(ndim, shape, 0.0, dt, device);
}

cc_tensor *cc_scalar(double value, cc_dtype dt, int device) { return cc_full(0, NULL, value, dt, device); }

cc_tensor *cc_empty_like(const cc_tensor *t) {
  return cc_empty(t->ndim, t->shape, t->dtype, t->storage->device);
}
cc_tensor *cc_zeros_like(const cc_tensor *t) {
  return cc_zeros(t->ndim, t->shape, t->dtype, t->storage->device);
}

cc_tensor *cc_arange(double start, double end, double step, cc_dtype dt) {
  if (step == 0 || isnan(start) || isnan(end) || isnan(step)) {
    cc_set_error("arange: step must be non-zero and bounds finite");
    return NULL;
  }
  double count = ceil((end - start) / step);
  int64_t n = count > 0 ? (int64_t)count : 0;
  cc_tensor *t = cc_empty(1, &n, dt, CC_CPU);
  if (!t) return NULL;
  for (int64_t k = 0; k < n; k++) {
    double v = start + (double)k * step;
    if (dt == CC_FLOAT32) ((float *)t->storage->data)[k] = (float)v;
    else if (dt == CC_FLOAT64) ((double *)t->storage->data)[k] = v;
    else ((int64_t *)t->storage->data)[k] = (int64_t)v;
  }
  return t;
}

/* ---- properties ---- */
int64_t cc_numel(const cc_tensor *t) {
  int64_t n = 1;
  for (int d = 0; d < t->ndim; d++) n *= t->shape[d];
  return n;
}

bool cc_is_contiguous(const cc_tensor *t) {
  int64_t s = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    if (t->shape[d] != 1 && t->stride[d] != s) return false;
    s *= t->shape[d];
  }
  return true;
}

bool cc_same_shape(const cc_tensor *a, const cc_tensor *b) {
  if (a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return true;
}

void *cc_data_ptr(const cc_tensor *t) {
  return (char *)t->storage->data + t->offset * (int64_t)cc_dtype_size(t->dtype);
}

double cc_get_flat(const cc_tensor *t, int64_t linear) {
  int64_t off = t->offset;
  for (int d = t->ndim - 1; d >= 0; d--) {
    int64_t i = linear % t->shape[d];
    linear /= t->shape[d];
    off += i * t->stride[d];
  }
  switch (t->dtype) {
  case CC_FLOAT32: return ((float *)t->storage->data)[off];
  case CC_FLOAT64: return ((double *)t->storage->data)[off];
  default: return (double)((int64_t *)t->storage->data)[off];
  }
}

int cc_item(const cc_tensor *t, double *out) {
  if (cc_numel(t) != 1) {
    cc_set_error("item: only a tensor with one element can be converted to a number (this one has %lld)",
                 (long long)cc_numel(t));
    return -1;
  }
  if (t->storage->device != CC_CPU) {
    cc_tensor *host = cc_to_device((cc_tensor *)t, CC_CPU);
    if (!host) return -1;
    *out = cc_get_flat(host, 0);
    cc_release(host);
    return 0;
  }
  *out = cc_get_flat(t, 0);
  return 0;
}

/* ---- copies ---- */
int cc_fill_(cc_tensor *t, double value) {
  if (cc_grad_enabled() && t->requires_grad) {
    cc_set_error("fill_: a tensor that requires grad cannot be modified in place while grad mode is on");
    return -1;
  }
  return cc_run(CC_OP_FILL, t, 0, NULL, NULL, 0, &value, 1);
}

int cc_copy_(cc_tensor *dst, cc_tensor *src) {
  if (cc_grad_enabled() && dst->requires_grad) {
    cc_set_error("copy_: a tensor that requires grad cannot be modified in place while grad mode is on");
    return -1;
  }
  cc_tensor *expanded = cc_expand_to(src, dst->ndim, dst->shape);
  if (!expanded) return -1;
  int rc;
  if (dst->storage->device != expanded->storage->device) {
    /* cross-device: stage through a contiguous buffer of the destination's dtype */
    cc_tensor *c = cc_contiguous(expanded);
    rc = c ? 0 : -1;
    if (!rc && c->dtype != dst->dtype) {
      cc_tensor *conv = cc_to_dtype(c, dst->dtype);
      cc_release(c);
      c = conv;
      rc = c ? 0 : -1;
    }
    if (!rc) {
      cc_tensor *staged = cc_is_contiguous(dst) ? cc_retain(dst) : cc_empty_like(dst);
      rc = staged ? 0 : -1;
      if (!rc) {
        const cc_device_ops *ops = cc_device_get(staged->storage->device != CC_CPU ? staged->storage->device
                                                                                  : c->storage->device);
        rc = ops->copy(cc_data_ptr(staged), staged->storage->device, cc_data_ptr(c), c->storage->device,
                       (size_t)cc_numel(c) * cc_dtype_size(c->dtype));
        if (!rc && staged != dst) rc = cc_run(CC_OP_COPY, dst, 1, &staged, NULL, 0, NULL, 0);
        cc_release(staged);
      }
    }
    cc_release(c);
  } else {
    rc = cc_run(CC_OP_COPY, dst, 1, &expanded, NULL, 0, NULL, 0);
  }
  cc_release(expanded);
  return rc;
}

static int identity_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  (void)node;
  gi[0] = cc_retain(g);
  return 0;
}

static int cast_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  gi[0] = cc_to_dtype(g, node->inputs[0]->dtype);
  return gi[0] ? 0 : -1;
}

static cc_tensor *copy_as(cc_tensor *t, cc_dtype dt, const char *name, cc_backward_fn bw) {
  cc_tensor *out = cc_empty(t->ndim, t->shape, dt, t->storage->device);
  if (!out) return NULL;
  if (cc_run(CC_OP_COPY, out, 1, &t, NULL, 0, NULL, 0)) {
    cc_release(out);
    return NULL;
  }
  if (cc_is_floating(dt)) cc_attach_node(out, name, bw, 1, &t);
  return out;
}

cc_tensor *cc_contiguous(cc_tensor *t) {
  if (cc_is_contiguous(t)) return cc_retain(t);
  return copy_as(t, t->dtype, "ContiguousBackward", identity_backward);
}

cc_tensor *cc_clone(cc_tensor *t) { return copy_as(t, t->dtype, "CloneBackward", identity_backward); }

cc_tensor *cc_to_dtype(cc_tensor *t, cc_dtype dt) {
  if (t->dtype == dt) return cc_retain(t);
  if (!cc_is_floating(t->dtype)) return copy_as(t, dt, "ToCopyBackward", NULL); /* ints carry no grad */
  return copy_as(t, dt, "ToCopyBackward", cast_backward);
}

static int device_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  gi[0] = cc_to_device(g, node->inputs[0]->storage->device);
  return gi[0] ? 0 : -1;
}

cc_tensor *cc_to_device(cc_tensor *t, int device) {
  if (t->storage->device == device) return cc_retain(t);
  if (!cc_device_available(device)) {
    cc_set_error("device %s is not available", cc_device_name(device));
    return NULL;
  }
  cc_tensor *out = cc_empty(t->ndim, t->shape, t->dtype, device);
  if (!out) return NULL;
  bool was = cc_set_grad_enabled(false);
  int rc = cc_copy_(out, t);
  cc_set_grad_enabled(was);
  if (rc) {
    cc_release(out);
    return NULL;
  }
  if (cc_is_floating(t->dtype)) cc_attach_node(out, "ToDeviceBackward", device_backward, 1, &t);
  return out;
}

cc_tensor *cc_detach(cc_tensor *t) {
  return cc_tensor_wrap(t->storage, t->offset, t->ndim, t->shape, t->stride, t->dtype);
}
