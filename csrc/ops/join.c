/* join.c — cat and stack along a dim (copies into narrowed views of the output), with backward
 * that hands each input its slice of the gradient. */
#include "internal.h"

#include <stdio.h>
#include <stdlib.h>

static int cat_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  int dim = (int)node->ints[0];
  int64_t start = 0;
  for (int k = 0; k < node->n_inputs; k++) {
    int64_t len = node->ints[1 + k];
    if (cc_node_needs(node, k)) {
      gi[k] = cc_narrow(g, dim, start, len);
      if (!gi[k]) return -1;
    }
    start += len;
  }
  return 0;
}

static cc_tensor *cat_impl(int n, cc_tensor *const *ts, int dim) {
  const char *op = "cat";
  if (n < 1) {
    cc_set_error("%s: expected a non-empty list of tensors", op);
    return NULL;
  }
  const cc_tensor *ref = ts[0];
  int d = cc_normalize_dim(dim, ref->ndim, op);
  if (d < 0) return NULL;
  if (ref->ndim == 0) {
    cc_set_error("%s: zero-dimensional tensors cannot be concatenated", op);
    return NULL;
  }
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, ref->shape, sizeof shape);
  shape[d] = 0;
  for (int k = 0; k < n; k++) {
    const cc_tensor *t = ts[k];
    if (cc_check_same(op, ref, t)) return NULL;
    bool ok = t->ndim == ref->ndim;
    for (int j = 0; ok && j < ref->ndim; j++) ok = j == d || t->shape[j] == ref->shape[j];
    if (!ok) {
      char s1[128], s2[128];
      cc_shape_str(ref->ndim, ref->shape, s1, sizeof s1);
      cc_shape_str(t->ndim, t->shape, s2, sizeof s2);
      cc_set_error("%s: sizes of tensors must match except in dimension %d (tensor 1 has shape %s, tensor %d "
                   "has shape %s)",
                   op, d + 1, s1, k + 1, s2);
      return NULL;
    }
    shape[d] += t->shape[d];
  }
  cc_tensor *out = cc_empty(ref->ndim, shape, ref->dtype, ref->storage->device);
  if (!out) return NULL;
  int64_t start = 0;
  bool was = cc_set_grad_enabled(false);
  for (int k = 0; k < n; k++) {
    cc_tensor *slot = cc_narrow(out, d, start, ts[k]->shape[d]);
    int rc = slot ? cc_copy_(slot, ts[k]) : -1;
    cc_release(slot);
    if (rc) {
      cc_set_grad_enabled(was);
      cc_release(out);
      return NULL;
    }
    start += ts[k]->shape[d];
  }
  cc_set_grad_enabled(was);
  return out;
}

/* a node holds at most CC_NODE_MAX_INPUTS inputs: longer differentiable lists are joined in
 * groups (recursively), each group a node of its own */
cc_tensor *cc_cat(int n, cc_tensor *const *ts, int dim) {
  if (n > CC_NODE_MAX_INPUTS && cc_grad_enabled() && cc_any_requires_grad(n, ts)) {
    int per = (n + CC_NODE_MAX_INPUTS - 1) / CC_NODE_MAX_INPUTS, m = 0;
    cc_tensor *parts[CC_NODE_MAX_INPUTS] = {0}, *out = NULL;
    for (int k = 0; k < n; k += per, m++)
      if (!(parts[m] = cc_cat(n - k < per ? n - k : per, ts + k, dim))) goto done;
    out = cc_cat(m, parts, dim);
  done:
    cc_release_n(CC_NODE_MAX_INPUTS, parts);
    return out;
  }
  cc_tensor *out = cat_impl(n, ts, dim);
  if (!out) return NULL;
  int d = cc_normalize_dim(dim, ts[0]->ndim, "cat");
  cc_node *node = cc_attach_node(out, "CatBackward", cat_backward, n, ts);
  if (node) {
    node->ints[0] = d;
    for (int k = 0; k < n; k++) node->ints[1 + k] = ts[k]->shape[d];
  }
  return out;
}

cc_tensor *cc_stack(int n, cc_tensor *const *ts, int dim) {
  if (n < 1) {
    cc_set_error("stack: expected a non-empty list of tensors");
    return NULL;
  }
  int d = cc_normalize_dim(dim, ts[0]->ndim + 1, "stack");
  if (d < 0) return NULL;
  for (int k = 1; k < n; k++)
    if (!cc_same_shape(ts[0], ts[k])) {
      char s1[128], s2[128];
      cc_shape_str(ts[0]->ndim, ts[0]->shape, s1, sizeof s1);
      cc_shape_str(ts[k]->ndim, ts[k]->shape, s2, sizeof s2);
      cc_set_error("stack: expects each tensor to be equal size, but got %s at entry 1 and %s at entry %d", s1, s2,
                   k + 1);
      return NULL;
    }
  cc_tensor **us = calloc((size_t)n, sizeof *us);
  if (!us) {
    cc_set_error("stack: out of memory");
    return NULL;
  }
  cc_tensor *out = NULL;
  for (int k = 0; k < n; k++)
    if (!(us[k] = cc_unsqueeze(ts[k], d))) goto done;
  out = cc_cat(n, us, d);
done:
  cc_release_n(n, us);
  free(us);
  return out;
}
