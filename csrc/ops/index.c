/* index.c — picking slices and elements by int64 indices: index_select, gather and embedding (forward,
 * backward and the CPU kernels). Indices are 0-based; one outside its dim is an error that names it.
 * Shapes: index_select x (.., S, ..), index (n) -> (.., n, ..) along dim; gather x and index of one rank,
 * index no larger than x off dim -> index's shape; embedding indices (...) int64, weight (V,D) -> (..., D).
 * Backward: index_select's is INDEX_ADD (the gradient's slices added where the index points, repeated
 * indices accumulating), gather's is SCATTER_ADD. Both write every element of their result (zeros where
 * no index points) and add in index order, one destination row at a time, so they are deterministic
 * and need no atomics on the GPU.
 *
 * The kernels work on one description (index_desc): index_select is a gather whose index is the 1-D
 * index broadcast (stride 0) over the other dims, and index_add a scatter_add of the same kind. */
#include "internal.h"

#include <stdio.h>

/* ======================================================================= op level ====== */

static int check_index_dtype(const char *op, const cc_tensor *index) {
  if (index->dtype != CC_INT64) {
    cc_set_error("%s: the index must be int64, got %s", op, cc_dtype_name(index->dtype));
    return -1;
  }
  return 0;
}

/* ---- index_select (and embedding, which is index_select of rows with an optional padding row) ---- */
/* node ints: 0 dim, 1 has a padding row, 2 the padding row; saved 0: the 1-D index */
static int index_select_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *idx = node->saved[0];
  cc_tensor *dx = cc_empty(node->ndim, node->shape, g->dtype, g->storage->device);
  if (!dx) return -1;
  cc_tensor *in[2] = {g, idx};
  if (cc_run(CC_OP_INDEX_ADD, dx, 2, in, &node->ints[0], 1, NULL, 0)) {
    cc_release(dx);
    return -1;
  }
  if (node->ints[1]) { /* the padding row gets no gradient */
    cc_tensor *row = cc_narrow(dx, (int)node->ints[0], node->ints[2], 1);
    int rc = row ? cc_fill_(row, 0) : -1;
    cc_release(row);
    if (rc) {
      cc_release(dx);
      return -1;
    }
  }
  gi[0] = dx;
  return 0;
}

static cc_tensor *index_select_impl(const char *op, cc_tensor *x, int dim, cc_tensor *index, const int64_t *pad) {
  if (check_index_dtype(op, index)) return NULL;
  if (x->ndim == 0) {
    cc_set_error("%s: expected an input with at least one dim", op);
    return NULL;
  }
  int d = cc_normalize_dim(dim, x->ndim, op);
  if (d < 0) return NULL;
  if (index->ndim > 1) {
    char s[128];
    cc_shape_str(index->ndim, index->shape, s, sizeof s);
    cc_set_error("%s: the index must be 1-D, got shape %s", op, s);
    return NULL;
  }
  int64_t n = cc_numel(index);
  cc_tensor *idx = cc_reshape(index, 1, &n); /* a 0-d index is one entry */
  if (!idx) return NULL;
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  shape[d] = n;
  cc_tensor *out = cc_empty(x->ndim, shape, x->dtype, x->storage->device);
  cc_tensor *in[2] = {x, idx};
  int64_t di = d;
  if (!out || cc_run(CC_OP_INDEX_SELECT, out, 2, in, &di, 1, NULL, 0)) {
    cc_release(out);
    cc_release(idx);
    return NULL;
  }
  cc_node *node = cc_attach_node(out, pad ? "EmbeddingBackward" : "IndexSelectBackward", index_select_backward, 1, &x);
  if (node) {
    node->ints[0] = d;
    node->ints[1] = pad != NULL;
    node->ints[2] = pad ? *pad : 0;
    node->ndim = x->ndim;
    memcpy(node->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    cc_node_save(node, idx);
  }
  cc_release(idx);
  return out;
}

cc_tensor *cc_index_select(cc_tensor *x, int dim, cc_tensor *index) {
  return index_select_impl("index_select", x, dim, index, NULL);
}

cc_tensor *cc_embedding(cc_tensor *indices, cc_tensor *weight, const int64_t *padding_idx) {
  if (weight->ndim != 2) {
    char s[128];
    cc_shape_str(weight->ndim, weight->shape, s, sizeof s);
    cc_set_error("embedding: the weight must be 2-D (num_embeddings, embedding_dim), got shape %s", s);
    return NULL;
  }
  if (indices->dtype != CC_INT64) {
    cc_set_error("embedding: the indices must be int64, got %s", cc_dtype_name(indices->dtype));
    return NULL;
  }
  if (indices->ndim >= CC_MAX_DIMS) {
    cc_set_error("embedding: the indices have %d dims; at most %d are allowed", indices->ndim, CC_MAX_DIMS - 1);
    return NULL;
  }
  if (padding_idx && (*padding_idx < 0 || *padding_idx >= weight->shape[0])) {
    cc_set_error("embedding: padding_idx %lld is out of range for %lld embeddings", (long long)*padding_idx,
                 (long long)weight->shape[0]);
    return NULL;
  }
  int64_t n = cc_numel(indices);
  cc_tensor *flat = cc_reshape(indices, 1, &n);
  cc_tensor *rows = flat ? index_select_impl("embedding", weight, 0, flat, padding_idx) : NULL;
  cc_release(flat);
  if (!rows) {
    /* the kernel's message names index_select; say embedding */
    char msg[512];
    snprintf(msg, sizeof msg, "%s", cc_last_error());
    const char *prefix = "index_select: ";
    if (strncmp(msg, prefix, strlen(prefix)) == 0) cc_set_error("embedding: %s", msg + strlen(prefix));
    return NULL;
  }
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, indices->shape, sizeof(int64_t) * (size_t)indices->ndim);
  shape[indices->ndim] = weight->shape[1];
  cc_tensor *out = cc_view(rows, indices->ndim + 1, shape);
  cc_release(rows);
  return out;
}

/* ---- gather ---- */
/* node ints: 0 dim; saved 0: the index */
static int gather_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *dx = cc_empty(node->ndim, node->shape, g->dtype, g->storage->device);
  if (!dx) return -1;
  cc_tensor *in[2] = {g, node->saved[0]};
  if (cc_run(CC_OP_SCATTER_ADD, dx, 2, in, &node->ints[0], 1, NULL, 0)) {
    cc_release(dx);
    return -1;
  }
  gi[0] = dx;
  return 0;
}

cc_tensor *cc_gather(cc_tensor *x, int dim, cc_tensor *index) {
  if (check_index_dtype("gather", index)) return NULL;
  if (x->ndim == 0) {
    cc_set_error("gather: expected an input with at least one dim");
    return NULL;
  }
  int d = cc_normalize_dim(dim, x->ndim, "gather");
  if (d < 0) return NULL;
  if (index->ndim != x->ndim) {
    cc_set_error("gather: the index must have the input's number of dims (%d), got %d", x->ndim, index->ndim);
    return NULL;
  }
  for (int k = 0; k < x->ndim; k++)
    if (k != d && index->shape[k] > x->shape[k]) {
      cc_set_error("gather: the index's size %lld at dim %d exceeds the input's %lld", (long long)index->shape[k],
                   k + 1, (long long)x->shape[k]);
      return NULL;
    }
  cc_tensor *out = cc_empty(index->ndim, index->shape, x->dtype, x->storage->device);
  cc_tensor *in[2] = {x, index};
  int64_t di = d;
  if (!out || cc_run(CC_OP_GATHER, out, 2, in, &di, 1, NULL, 0)) {
    cc_release(out);
    return NULL;
  }
  cc_node *node = cc_attach_node(out, "GatherBackward", gather_backward, 1, &x);
  if (node) {
    node->ints[0] = d;
    node->ndim = x->ndim;
    memcpy(node->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
    cc_node_save(node, index);
  }
  return out;
}

/* ======================================================================= CPU kernels ===== */

/* gather: dst[c] = src[c with c[dim] replaced by idx[c]] for every c of shape;
   scatter_add: dst (shape) <- 0, then for each row c (every dim but dim) inside ishape and j < ishape[dim]:
   dst[c, idx[c, j]] += src[c, j]. idx's strides are 0 where the index is broadcast (index_select, index_add). */
typedef struct {
  int ndim, dim;
  int64_t shape[CC_MAX_DIMS], ishape[CC_MAX_DIMS];
  int64_t sstride[CC_MAX_DIMS], istride[CC_MAX_DIMS], dstride[CC_MAX_DIMS];
  int64_t size; /* the length of dim in the indexed tensor (src of gather, dst of scatter_add) */
  const void *src;
  const int64_t *idx;
  void *dst;
} index_desc;

/* the first index outside [0, size) in row-major order over (shape, stride); returns 1 and sets *bad then */
static int first_bad_index(const cc_tensor *index, int64_t size, int64_t *bad) {
  int64_t n = cc_numel(index);
  const int64_t *p = (const int64_t *)index->storage->data + index->offset;
  for (int64_t t = 0; t < n; t++) {
    int64_t rem = t, off = 0;
    for (int d = index->ndim - 1; d >= 0; d--) {
      off += (rem % index->shape[d]) * index->stride[d];
      rem /= index->shape[d];
    }
    if (p[off] < 0 || p[off] >= size) {
      *bad = p[off];
      return 1;
    }
  }
  return 0;
}

static int report_bad(const char *op, const cc_tensor *index, int dim, int64_t size) {
  int64_t bad;
  if (!first_bad_index(index, size, &bad)) return 0;
  cc_set_error("%s: index %lld is out of range for dimension %d of size %lld", op, (long long)bad, dim + 1,
               (long long)size);
  return -1;
}

#define GATHER_LOOP(T)                                                                             \
  _Pragma("omp parallel for schedule(static) if (numel > 32768)")                                  \
  for (int64_t t = 0; t < numel; t++) {                                                            \
    int64_t rem = t, so = 0, io = 0, dso = 0;                                                      \
    for (int d = a->ndim - 1; d >= 0; d--) {                                                       \
      int64_t c = rem % a->shape[d];                                                               \
      rem /= a->shape[d];                                                                          \
      io += c * a->istride[d];                                                                     \
      dso += c * a->dstride[d];                                                                    \
      if (d != a->dim) so += c * a->sstride[d];                                                    \
    }                                                                                              \
    int64_t p = a->idx[io];                                                                        \
    ((T *)a->dst)[dso] = p >= 0 && p < a->size ? ((const T *)a->src)[so + p * a->sstride[a->dim]] : (T)0; \
  }

static void gather_kernel(const index_desc *a, cc_dtype dt) {
  int64_t numel = 1;
  for (int d = 0; d < a->ndim; d++) numel *= a->shape[d];
  if (dt == CC_FLOAT32) {
    GATHER_LOOP(float)
  } else if (dt == CC_FLOAT64) {
    GATHER_LOOP(double)
  } else {
    GATHER_LOOP(int64_t)
  }
}

#define SCATTER_ADD_LOOP(T)                                                                        \
  _Pragma("omp parallel for schedule(static) if (numel > 32768 && rows > 1)")                      \
  for (int64_t r = 0; r < rows; r++) {                                                             \
    int64_t rem = r, so = 0, io = 0, dso = 0;                                                      \
    bool inside = true;                                                                            \
    for (int d = a->ndim - 1; d >= 0; d--) {                                                       \
      if (d == a->dim) continue;                                                                   \
      int64_t c = rem % a->shape[d];                                                               \
      rem /= a->shape[d];                                                                          \
      if (c >= a->ishape[d]) inside = false;                                                       \
      so += c * a->sstride[d];                                                                     \
      io += c * a->istride[d];                                                                     \
      dso += c * a->dstride[d];                                                                    \
    }                                                                                              \
    T *dst = (T *)a->dst + dso;                                                                    \
    int64_t ds = a->dstride[a->dim], ss = a->sstride[a->dim], is = a->istride[a->dim];             \
    for (int64_t k = 0; k < a->size; k++) dst[k * ds] = (T)0;                                      \
    if (!inside) continue;                                                                         \
    const T *src = (const T *)a->src + so;                                                         \
    for (int64_t j = 0; j < a->ishape[a->dim]; j++) {                                              \
      int64_t p = a->idx[io + j * is];                                                             \
      if (p >= 0 && p < a->size) dst[p * ds] += src[j * ss];                                       \
    }                                                                                              \
  }

static void scatter_add_kernel(const index_desc *a, cc_dtype dt) {
  int64_t rows = 1, numel = 1;
  for (int d = 0; d < a->ndim; d++) {
    numel *= a->shape[d];
    if (d != a->dim) rows *= a->shape[d];
  }
  if (dt == CC_FLOAT32) {
    SCATTER_ADD_LOOP(float)
  } else if (dt == CC_FLOAT64) {
    SCATTER_ADD_LOOP(double)
  } else {
    SCATTER_ADD_LOOP(int64_t)
  }
}

/* the description of a gather (src `full` indexed along dim, dst `picked`) or a scatter_add (src `picked`, dst
   `full`); idx1d: the index is 1-D along dim, broadcast over the other dims */
static void index_describe(index_desc *a, int dim, const cc_tensor *full, const cc_tensor *picked, const cc_tensor *idx,
                           bool idx1d, bool scatter) {
  memset(a, 0, sizeof *a);
  a->ndim = full->ndim;
  a->dim = dim;
  a->size = full->shape[dim];
  const cc_tensor *src = scatter ? picked : full, *dst = scatter ? full : picked;
  for (int d = 0; d < full->ndim; d++) {
    a->shape[d] = dst->shape[d];
    a->ishape[d] = picked->shape[d];
    a->sstride[d] = src->stride[d];
    a->dstride[d] = dst->stride[d];
    a->istride[d] = idx1d ? (d == dim ? idx->stride[0] : 0) : idx->stride[d];
  }
  a->src = cc_data_ptr(src);
  a->dst = cc_data_ptr(dst);
  a->idx = (const int64_t *)cc_data_ptr(idx);
}

/* in0 x, in1 1-D int64 index -> out; i0 dim */
static int index_select_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_index_select_operands_ok(c, "index_select", x, out)) return -1;
  if (report_bad("index_select", c->in[1], dim, x->shape[dim])) return -1;
  index_desc a;
  index_describe(&a, dim, x, out, c->in[1], true, false);
  gather_kernel(&a, x->dtype);
  return 0;
}

/* in0 grad (out's shape but #in1 along dim), in1 1-D int64 index -> out (written whole); i0 dim */
static int index_add_cpu(const cc_call *c) {
  cc_tensor *g = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_index_select_operands_ok(c, "index_add", out, g)) return -1;
  if (report_bad("index_add", c->in[1], dim, out->shape[dim])) return -1;
  index_desc a;
  index_describe(&a, dim, out, g, c->in[1], true, true);
  scatter_add_kernel(&a, out->dtype);
  return 0;
}

/* in0 x, in1 int64 index -> out (index's shape); i0 dim */
static int gather_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_gather_operands_ok(c, "gather", x, out)) return -1;
  if (report_bad("gather", c->in[1], dim, x->shape[dim])) return -1;
  index_desc a;
  index_describe(&a, dim, x, out, c->in[1], false, false);
  gather_kernel(&a, x->dtype);
  return 0;
}

/* in0 grad (index's shape), in1 int64 index -> out (written whole); i0 dim */
static int scatter_add_cpu(const cc_call *c) {
  cc_tensor *g = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_gather_operands_ok(c, "scatter_add", out, g)) return -1;
  if (report_bad("scatter_add", c->in[1], dim, out->shape[dim])) return -1;
  index_desc a;
  index_describe(&a, dim, out, g, c->in[1], false, true);
  scatter_add_kernel(&a, out->dtype);
  return 0;
}

void cc_cpu_register_index(void) {
  cc_register_kernel(CC_OP_INDEX_SELECT, CC_CPU, index_select_cpu);
  cc_register_kernel(CC_OP_INDEX_ADD, CC_CPU, index_add_cpu);
  cc_register_kernel(CC_OP_GATHER, CC_CPU, gather_cpu);
  cc_register_kernel(CC_OP_SCATTER_ADD, CC_CPU, scatter_add_cpu);
}
