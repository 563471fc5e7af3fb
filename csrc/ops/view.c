/* view.c — views that share storage (view/reshape, permute/transpose, narrow, select,
 * unsqueeze/squeeze, expand) with their backward rules. */
#include "internal.h"

#include <stdio.h>

static cc_tensor *make_view(cc_tensor *t, int64_t offset, int ndim, const int64_t *shape, const int64_t *stride) {
  return cc_tensor_wrap(t->storage, offset, ndim, shape, stride, t->dtype);
}

/* resolve one -1 in a requested shape against numel */
static int infer_shape(const char *op, int64_t numel, int ndim, const int64_t *req, int64_t *shape) {
  int infer = -1;
  int64_t known = 1;
  if (ndim > CC_MAX_DIMS) {
    cc_set_error("%s: at most %d dimensions", op, CC_MAX_DIMS);
    return -1;
  }
  for (int d = 0; d < ndim; d++) {
    if (req[d] == -1) {
      if (infer >= 0) {
        cc_set_error("%s: only one dimension can be inferred (-1)", op);
        return -1;
      }
      infer = d;
    } else if (req[d] < 0) {
      cc_set_error("%s: invalid size %lld", op, (long long)req[d]);
      return -1;
    } else {
      known *= req[d];
    }
    shape[d] = req[d];
  }
  if (infer >= 0) {
    if (known == 0 || numel % known) {
      cc_set_error("%s: shape is invalid for input of size %lld", op, (long long)numel);
      return -1;
    }
    shape[infer] = numel / known;
  } else if (known != numel) {
    char s[128];
    cc_shape_str(ndim, shape, s, sizeof s);
    cc_set_error("%s: shape %s is invalid for input of size %lld", op, s, (long long)numel);
    return -1;
  }
  return 0;
}

/* strides for a view of t with the new shape, when one exists (PyTorch's computeStride) */
static bool view_strides(const cc_tensor *t, int ndim, const int64_t *shape, int64_t *stride) {
  int64_t numel = cc_numel(t);
  if (numel == 0 || t->ndim == 0) {
    cc_contiguous_strides(ndim, shape, stride);
    return true;
  }
  int view_d = ndim - 1;
  int64_t chunk_base_stride = t->stride[t->ndim - 1];
  int64_t tensor_numel = 1, view_numel = 1;
  for (int d = t->ndim - 1; d >= 0; d--) {
    tensor_numel *= t->shape[d];
    if (d == 0 || (t->shape[d - 1] != 1 && t->stride[d - 1] != tensor_numel * chunk_base_stride)) {
      while (view_d >= 0 && (view_numel < tensor_numel || shape[view_d] == 1)) {
        stride[view_d] = view_numel * chunk_base_stride;
        view_numel *= shape[view_d];
        view_d--;
      }
      if (view_numel != tensor_numel) return false;
      if (d > 0) {
        chunk_base_stride = t->stride[d - 1];
        tensor_numel = 1;
        view_numel = 1;
      }
    }
  }
  return view_d == -1;
}

static int reshape_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  gi[0] = cc_reshape(g, node->ndim, node->shape);
  return gi[0] ? 0 : -1;
}

static void remember_input_shape(cc_node *node, const cc_tensor *t) {
  if (!node) return;
  node->ndim = t->ndim;
  memcpy(node->shape, t->shape, sizeof(int64_t) * (size_t)t->ndim);
}

static cc_tensor *reshape_common(cc_tensor *t, int ndim, const int64_t *req, bool allow_copy, const char *op) {
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  if (infer_shape(op, cc_numel(t), ndim, req, shape)) return NULL;
  cc_tensor *out;
  if (view_strides(t, ndim, shape, stride)) {
    out = make_view(t, t->offset, ndim, shape, stride);
  } else if (allow_copy) {
    bool was = cc_set_grad_enabled(false);
    cc_tensor *c = cc_contiguous(t);
    cc_set_grad_enabled(was);
    if (!c) return NULL;
    cc_contiguous_strides(ndim, shape, stride);
    out = make_view(c, c->offset, ndim, shape, stride);
    cc_release(c);
  } else {
    cc_set_error("view: the size is not compatible with the input's strides; use reshape (or "
                 "contiguous():view) instead");
    return NULL;
  }
  if (!out) return NULL;
  remember_input_shape(cc_attach_node(out, "ViewBackward", reshape_backward, 1, &t), t);
  return out;
}

cc_tensor *cc_view(cc_tensor *t, int ndim, const int64_t *shape) { return reshape_common(t, ndim, shape, false, "view"); }
cc_tensor *cc_reshape(cc_tensor *t, int ndim, const int64_t *shape) {
  return reshape_common(t, ndim, shape, true, "reshape");
}

static int permute_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  int inverse[CC_MAX_DIMS];
  for (int d = 0; d < node->ndim; d++) inverse[node->ints[d]] = d;
  gi[0] = cc_permute(g, inverse);
  return gi[0] ? 0 : -1;
}

cc_tensor *cc_permute(cc_tensor *t, const int *perm) {
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  bool seen[CC_MAX_DIMS] = {0};
  for (int d = 0; d < t->ndim; d++) {
    if (perm[d] < 0 || perm[d] >= t->ndim || seen[perm[d]]) {
      cc_set_error("permute: the dims must be a permutation of 1..%d", t->ndim);
      return NULL;
    }
    seen[perm[d]] = true;
    shape[d] = t->shape[perm[d]];
    stride[d] = t->stride[perm[d]];
  }
  cc_tensor *out = make_view(t, t->offset, t->ndim, shape, stride);
  if (!out) return NULL;
  cc_node *node = cc_attach_node(out, "PermuteBackward", permute_backward, 1, &t);
  if (node) {
    node->ndim = t->ndim;
    for (int d = 0; d < t->ndim; d++) node->ints[d] = perm[d];
  }
  return out;
}

cc_tensor *cc_transpose(cc_tensor *t, int d0, int d1) {
  int a = cc_normalize_dim(d0, t->ndim, "transpose"), b = cc_normalize_dim(d1, t->ndim, "transpose");
  if (a < 0 || b < 0) return NULL;
  int perm[CC_MAX_DIMS];
  for (int d = 0; d < t->ndim; d++) perm[d] = d;
  perm[a] = b;
  perm[b] = a;
  if (t->ndim == 0) return cc_permute(t, perm);
  return cc_permute(t, perm);
}

/* narrow/select backward: scatter the gradient into zeros of the input's shape */
static int narrow_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *z = cc_zeros(node->ndim, node->shape, g->dtype, g->storage->device);
  if (!z) return -1;
  cc_tensor *slot = cc_narrow(z, (int)node->ints[0], node->ints[1], node->ints[2]);
  cc_tensor *src = slot && node->ints[3] ? cc_unsqueeze(g, (int)node->ints[0]) : cc_retain(g);
  int rc = slot && src ? cc_copy_(slot, src) : -1;
  cc_release(slot);
  cc_release(src);
  if (rc) {
    cc_release(z);
    return -1;
  }
  gi[0] = z;
  return 0;
}

cc_tensor *cc_narrow(cc_tensor *t, int dim, int64_t start, int64_t length) {
  int d = cc_normalize_dim(dim, t->ndim, "narrow");
  if (d < 0) return NULL;
  if (t->ndim == 0) {
    cc_set_error("narrow: cannot be applied to a 0-dim tensor");
    return NULL;
  }
  if (start < 0 || length < 0 || start + length > t->shape[d]) {
    cc_set_error("narrow: range %lld..%lld (1-based, length %lld) is outside dimension %d of size %lld",
                 (long long)start + 1, (long long)(start + length), (long long)length, d + 1,
                 (long long)t->shape[d]);
    return NULL;
  }
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[d] = length;
  cc_tensor *out = make_view(t, t->offset + start * t->stride[d], t->ndim, shape, t->stride);
  if (!out) return NULL;
  cc_node *node = cc_attach_node(out, "NarrowBackward", narrow_backward, 1, &t);
  if (node) {
    remember_input_shape(node, t);
    node->ints[0] = d;
    node->ints[1] = start;
    node->ints[2] = length;
    node->ints[3] = 0;
  }
  return out;
}

cc_tensor *cc_select(cc_tensor *t, int dim, int64_t index) {
  int d = cc_normalize_dim(dim, t->ndim, "select");
  if (d < 0) return NULL;
  if (t->ndim == 0) {
    cc_set_error("select: cannot be applied to a 0-dim tensor");
    return NULL;
  }
  if (index < 0) index += t->shape[d];
  if (index < 0 || index >= t->shape[d]) {
    cc_set_error("select: index %lld is out of range for dimension %d of size %lld", (long long)index + 1, d + 1,
                 (long long)t->shape[d]);
    return NULL;
  }
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  int n = 0;
  for (int k = 0; k < t->ndim; k++)
    if (k != d) {
      shape[n] = t->shape[k];
      stride[n++] = t->stride[k];
    }
  cc_tensor *out = make_view(t, t->offset + index * t->stride[d], n, shape, stride);
  if (!out) return NULL;
  cc_node *node = cc_attach_node(out, "SelectBackward", narrow_backward, 1, &t);
  if (node) {
    remember_input_shape(node, t);
    node->ints[0] = d;
    node->ints[1] = index;
    node->ints[2] = 1;
    node->ints[3] = 1;
  }
  return out;
}

cc_tensor *cc_unsqueeze(cc_tensor *t, int dim) {
  if (t->ndim >= CC_MAX_DIMS) {
    cc_set_error("unsqueeze: tensors have at most %d dimensions", CC_MAX_DIMS);
    return NULL;
  }
  int d = cc_normalize_dim(dim, t->ndim + 1, "unsqueeze");
  if (d < 0) return NULL;
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  int n = 0;
  for (int k = 0; k <= t->ndim; k++) {
    if (k == d) {
      shape[n] = 1;
      stride[n++] = k < t->ndim ? t->stride[k] * t->shape[k] : 1;
    }
    if (k < t->ndim) {
      shape[n] = t->shape[k];
      stride[n++] = t->stride[k];
    }
  }
  cc_tensor *out = make_view(t, t->offset, n, shape, stride);
  if (out) remember_input_shape(cc_attach_node(out, "UnsqueezeBackward", reshape_backward, 1, &t), t);
  return out;
}

cc_tensor *cc_squeeze(cc_tensor *t, int dim) {
  int d = -1;
  if (dim != CC_ALL_DIMS) {
    d = cc_normalize_dim(dim, t->ndim, "squeeze");
    if (d < 0) return NULL;
  }
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  int n = 0;
  for (int k = 0; k < t->ndim; k++) {
    bool drop = t->shape[k] == 1 && (d < 0 || k == d);
    if (!drop) {
      shape[n] = t->shape[k];
      stride[n++] = t->stride[k];
    }
  }
  cc_tensor *out = make_view(t, t->offset, n, shape, stride);
  if (out) remember_input_shape(cc_attach_node(out, "SqueezeBackward", reshape_backward, 1, &t), t);
  return out;
}

static int expand_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  gi[0] = cc_sum_to(g, node->ndim, node->shape);
  return gi[0] ? 0 : -1;
}

static cc_tensor *expand_impl(cc_tensor *t, int ndim, const int64_t *req, bool record) {
  if (ndim < t->ndim || ndim > CC_MAX_DIMS) {
    char s1[128], s2[128];
    cc_shape_str(t->ndim, t->shape, s1, sizeof s1);
    cc_shape_str(ndim, req, s2, sizeof s2);
    cc_set_error("expand: cannot expand shape %s to %s (fewer dimensions)", s1, s2);
    return NULL;
  }
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  int lead = ndim - t->ndim;
  bool same = lead == 0;
  for (int d = 0; d < ndim; d++) {
    int k = d - lead;
    int64_t want = req[d];
    if (k < 0) {
      if (want < 0) {
        cc_set_error("expand: -1 is not allowed for a new leading dimension");
        return NULL;
      }
      shape[d] = want;
      stride[d] = 0;
      continue;
    }
    if (want == -1) want = t->shape[k];
    if (t->shape[k] == want) {
      shape[d] = want;
      stride[d] = t->stride[k];
    } else if (t->shape[k] == 1) {
      shape[d] = want;
      stride[d] = 0;
      same = false;
    } else {
      char s1[128], s2[128];
      cc_shape_str(t->ndim, t->shape, s1, sizeof s1);
      cc_shape_str(ndim, req, s2, sizeof s2);
      cc_set_error("expand: shape mismatch, cannot expand %s to %s (size %lld at dim %d is not 1)", s1, s2,
                   (long long)t->shape[k], d + 1);
      return NULL;
    }
  }
  if (same && !record) return cc_retain(t);
  cc_tensor *out = make_view(t, t->offset, ndim, shape, stride);
  if (out && record) remember_input_shape(cc_attach_node(out, "ExpandBackward", expand_backward, 1, &t), t);
  return out;
}

cc_tensor *cc_expand(cc_tensor *t, int ndim, const int64_t *shape) { return expand_impl(t, ndim, shape, true); }

/* internal: kernel operands only, never recorded */
cc_tensor *cc_expand_to(cc_tensor *t, int ndim, const int64_t *shape) { return expand_impl(t, ndim, shape, false); }
