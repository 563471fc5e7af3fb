/* sort.c — sort and topk along a dim: forward, backward and the CPU kernels.
 * sort is stable (equal values keep their order) and puts NaN above every number, as torch does;
 * its indices are int64 and 0-based. The gradient of the values goes back to the positions the
 * indices name (SORT_BACKWARD). topk is the first k of a sort, so its gradient takes the same way. */
#include "internal.h"
#include "scalar.h"

#include <stdlib.h>

/* ---- sort ---- */
/* dx[.., idx[.., j, ..], ..] = g[.., j, ..] along the sorted dim */
static int sort_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *idx = node->saved[0];
  cc_tensor *dx = cc_empty(g->ndim, g->shape, g->dtype, g->storage->device);
  if (!dx) return -1;
  cc_tensor *in[2] = {g, idx};
  if (cc_run(CC_OP_SORT_BACKWARD, dx, 2, in, &node->ints[0], 1, NULL, 0)) {
    cc_release(dx);
    return -1;
  }
  gi[0] = dx;
  return 0;
}

int cc_sort(cc_tensor *x, int dim, bool descending, cc_tensor **values, cc_tensor **indices) {
  *values = *indices = NULL;
  int d = cc_normalize_dim(dim, x->ndim, "sort");
  if (d < 0) return -1;
  if (x->ndim == 0) { /* one value: itself, at index 0 */
    *values = cc_clone(x);
    *indices = cc_zeros(0, NULL, CC_INT64, x->storage->device);
    if (*values && *indices) return 0;
    cc_release(*values);
    cc_release(*indices);
    *values = *indices = NULL;
    return -1;
  }
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_SORT;
  call.n_in = 1;
  call.in[0] = x;
  call.n_out = 2;
  call.out[0] = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  call.out[1] = cc_empty(x->ndim, x->shape, CC_INT64, x->storage->device);
  call.i[0] = d;
  call.i[1] = descending;
  if (!call.out[0] || !call.out[1] || (cc_numel(x) && cc_dispatch(&call))) {
    cc_release(call.out[0]);
    cc_release(call.out[1]);
    return -1;
  }
  cc_node *node = cc_attach_node(call.out[0], "SortBackward", sort_backward, 1, &x);
  if (node) {
    node->ints[0] = d;
    cc_node_save(node, call.out[1]);
  }
  *values = call.out[0];
  *indices = call.out[1];
  return 0;
}

/* ---- topk: the first k of the sort, made contiguous as torch returns them ---- */
int cc_topk(cc_tensor *x, int64_t k, int dim, bool largest, cc_tensor **values, cc_tensor **indices) {
  *values = *indices = NULL;
  int d = cc_normalize_dim(dim, x->ndim, "topk");
  if (d < 0) return -1;
  int64_t size = x->ndim ? x->shape[d] : 1;
  if (k < 0 || k > size || (x->ndim == 0 && k != 1)) {
    cc_set_error("topk: k (%lld) is out of range for dimension %d of size %lld", (long long)k, d + 1,
                 (long long)size);
    return -1;
  }
  cc_tensor *sv, *si;
  if (cc_sort(x, d, largest, &sv, &si)) return -1;
  if (x->ndim == 0) {
    *values = sv;
    *indices = si;
    return 0;
  }
  cc_tensor *nv = cc_narrow(sv, d, 0, k), *ni = cc_narrow(si, d, 0, k);
  *values = nv ? cc_contiguous(nv) : NULL;
  *indices = ni ? cc_contiguous(ni) : NULL;
  cc_tensor *tmp[] = {sv, si, nv, ni};
  cc_release_n(4, tmp);
  if (*values && *indices) return 0;
  cc_release(*values);
  cc_release(*indices);
  *values = *indices = NULL;
  return -1;
}

/* ======================================================================= CPU kernels ===== */

/* offsets of row r (a row: every index but the one along dim) in up to three tensors of one shape */
static void row_offsets(const cc_tensor *shape_of, int dim, int64_t r, int n, const cc_tensor *const *ts, int64_t *off) {
  for (int k = 0; k < n; k++) off[k] = ts[k]->offset;
  for (int d = shape_of->ndim - 1; d >= 0; d--) {
    if (d == dim) continue;
    int64_t i = r % shape_of->shape[d];
    r /= shape_of->shape[d];
    for (int k = 0; k < n; k++) off[k] += i * ts[k]->stride[d];
  }
}

/* a row's keys with their positions, ordered by cc_sort_before and then by position (stable) */
#define SORT_PAIR_DEF(SUF, T)                                                                      \
  typedef struct {                                                                                 \
    T key;                                                                                         \
    int64_t pos;                                                                                   \
  } pair##SUF;                                                                                     \
  static int ascending##SUF(const void *pa, const void *pb) {                                      \
    const pair##SUF *a = pa, *b = pb;                                                              \
    if (cc_sort_before##SUF(a->key, b->key, 0)) return -1;                                         \
    if (cc_sort_before##SUF(b->key, a->key, 0)) return 1;                                          \
    return a->pos < b->pos ? -1 : 1;                                                               \
  }                                                                                                \
  static int descending##SUF(const void *pa, const void *pb) {                                     \
    const pair##SUF *a = pa, *b = pb;                                                              \
    if (cc_sort_before##SUF(a->key, b->key, 1)) return -1;                                         \
    if (cc_sort_before##SUF(b->key, a->key, 1)) return 1;                                          \
    return a->pos < b->pos ? -1 : 1;                                                               \
  }                                                                                                \
  static void sort_row##SUF(const T *x, int64_t xs, T *v, int64_t vs, int64_t *ix, int64_t is, int64_t n, \
                            int descending, pair##SUF *buf) {                                      \
    for (int64_t j = 0; j < n; j++) {                                                              \
      buf[j].key = x[j * xs];                                                                      \
      buf[j].pos = j;                                                                              \
    }                                                                                              \
    qsort(buf, (size_t)n, sizeof *buf, descending ? descending##SUF : ascending##SUF);             \
    for (int64_t j = 0; j < n; j++) {                                                              \
      v[j * vs] = buf[j].key;                                                                      \
      ix[j * is] = buf[j].pos;                                                                     \
    }                                                                                              \
  }
SORT_PAIR_DEF(_f, float)
SORT_PAIR_DEF(_d, double)
SORT_PAIR_DEF(_i, int64_t)

static int sort_cpu(const cc_call *c) {
  cc_tensor *x = c->in[0], *vals = c->out[0], *idx = c->out[1];
  int dim = (int)c->i[0], descending = (int)c->i[1];
  if (!cc_sort_operands_ok(c)) return -1;
  int64_t n = x->shape[dim], numel = cc_numel(x);
  if (numel == 0) return 0;
  int64_t rows = numel / n, xs = x->stride[dim], vs = vals->stride[dim], is = idx->stride[dim];
  size_t pair_size = x->dtype == CC_FLOAT32 ? sizeof(pair_f) : (x->dtype == CC_FLOAT64 ? sizeof(pair_d) : sizeof(pair_i));
  const cc_tensor *ts[3] = {x, vals, idx};
  int failed = 0;
#pragma omp parallel if (numel > 32768 && rows > 1)
  {
    void *buf = malloc((size_t)n * pair_size);
    if (!buf) {
#pragma omp atomic write
      failed = 1;
    }
#pragma omp for schedule(static)
    for (int64_t r = 0; r < rows; r++) {
      if (!buf) continue;
      int64_t off[3];
      row_offsets(x, dim, r, 3, ts, off);
      int64_t *ip = (int64_t *)idx->storage->data + off[2];
      switch (x->dtype) {
      case CC_FLOAT32:
        sort_row_f((const float *)x->storage->data + off[0], xs, (float *)vals->storage->data + off[1], vs, ip, is,
                   n, descending, buf);
        break;
      case CC_FLOAT64:
        sort_row_d((const double *)x->storage->data + off[0], xs, (double *)vals->storage->data + off[1], vs, ip,
                   is, n, descending, buf);
        break;
      default:
        sort_row_i((const int64_t *)x->storage->data + off[0], xs, (int64_t *)vals->storage->data + off[1], vs, ip,
                   is, n, descending, buf);
        break;
      }
    }
    free(buf);
  }
  if (failed) {
    cc_set_error("sort: out of host memory for a row of %lld values", (long long)n);
    return -1;
  }
  return 0;
}

/* dx[.., idx[.., j, ..], ..] = g[.., j, ..]; in0 g, in1 idx, out dx, one shape */
#define SCATTER_ROW(T)                                                                             \
  for (int64_t j = 0; j < n; j++) {                                                                \
    int64_t p = ip[j * is];                                                                        \
    if (p < 0 || p >= n) bad = 1;                                                                  \
    else ((T *)dx->storage->data)[off[2] + p * ds] = ((const T *)g->storage->data)[off[0] + j * gs]; \
  }

static int sort_backward_cpu(const cc_call *c) {
  cc_tensor *g = c->in[0], *idx = c->in[1], *dx = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_sort_backward_operands_ok(c)) return -1;
  int64_t n = g->shape[dim], numel = cc_numel(g);
  if (numel == 0) return 0;
  int64_t rows = numel / n, gs = g->stride[dim], is = idx->stride[dim], ds = dx->stride[dim];
  const cc_tensor *ts[3] = {g, idx, dx};
  int bad = 0;
#pragma omp parallel for schedule(static) reduction(| : bad) if (numel > 32768 && rows > 1)
  for (int64_t r = 0; r < rows; r++) {
    int64_t off[3];
    row_offsets(g, dim, r, 3, ts, off);
    const int64_t *ip = (const int64_t *)idx->storage->data + off[1];
    if (g->dtype == CC_FLOAT32) {
      SCATTER_ROW(float)
    } else if (g->dtype == CC_FLOAT64) {
      SCATTER_ROW(double)
    } else {
      SCATTER_ROW(int64_t)
    }
  }
  if (bad) {
    cc_set_error("sort backward: an index is outside its row of %lld", (long long)n);
    return -1;
  }
  return 0;
}

void cc_cpu_register_sort(void) {
  cc_register_kernel(CC_OP_SORT, CC_CPU, sort_cpu);
  cc_register_kernel(CC_OP_SORT_BACKWARD, CC_CPU, sort_backward_cpu);
}
