/* cuda_ops.c — the CUDA kernels of every op of the op table except GEMM (cuda_blas.c) and the
 * convolutions (cuda_dnn.c): each unpacks its cc_call exactly as the CPU kernel of csrc/ops does,
 * checks what the CPU kernel checks, and calls the launcher of kernels/ (cc_cuda_kernels.h). */
#include "cuda_internal.h"

#include <stdio.h>

/* the launchers' kind codes are the engine's */
_Static_assert((int)CCK_BIN_ADD == (int)CC_BIN_ADD && (int)CCK_BIN_POW == (int)CC_BIN_POW &&
                   (int)CCK_BIN_GE == (int)CC_BIN_GE && (int)CCK_BIN_RSUB == (int)CC_BIN_RSUB &&
                   (int)CCK_BIN_CLAMP == (int)CC_BIN_CLAMP && (int)CCK_BIN_MAXIMUM == (int)CC_BIN_MAXIMUM &&
                   (int)CCK_BIN_COUNT == (int)CC_BIN_COUNT,
               "kernels/cc_cuda_kernels.h: CCK_BIN_* differ from cc_binary_kind");
_Static_assert((int)CCK_F32 == (int)CC_FLOAT32 && (int)CCK_F64 == (int)CC_FLOAT64 && (int)CCK_I64 == (int)CC_INT64,
               "kernels/cc_cuda_kernels.h: dtype codes differ from cc_dtype");
_Static_assert(CCK_MAX_DIMS == CC_MAX_DIMS, "kernels/cc_cuda_kernels.h: CCK_MAX_DIMS differs from CC_MAX_DIMS");

#define S() cc_cuda_stream()

static int launched(cudaError_t e, const char *what) { return cc_cuda_check(e, what); }

/* returns from the op: runs `launch` (an expression that may use `scratch`) with `bytes` of scratch
   memory, then frees it; the op's status is the launch's */
#define RETURN_LAUNCHED_WITH_SCRATCH(bytes, launch, what)                                          \
  do {                                                                                             \
    size_t scratch_bytes_ = (bytes);                                                               \
    void *scratch;                                                                                 \
    if (cc_cuda_scratch(scratch_bytes_, &scratch)) return -1;                                      \
    int rc_ = launched((launch), (what));                                                          \
    cc_cuda_scratch_free(scratch, scratch_bytes_);                                                 \
    return rc_;                                                                                    \
  } while (0)

/* merges dims d-1 and d of (shape, each of the nstrides stride arrays) where every array steps over them
   as one dim, in place; returns the number of dims left */
static int coalesce_dims(int nd, int64_t *shape, int nstrides, int64_t *const *strides) {
  if (nd <= 1) return nd;
  int merged = 0;
  for (int d = 1; d < nd; d++) {
    bool ok = true;
    for (int k = 0; k < nstrides; k++)
      if (strides[k][merged] != strides[k][d] * shape[d]) ok = false;
    if (ok) {
      shape[merged] *= shape[d];
    } else {
      merged++;
      shape[merged] = shape[d];
    }
    for (int k = 0; k < nstrides; k++) strides[k][merged] = strides[k][d];
  }
  return merged + 1;
}

void cc_cuda_make_iter(int nops, cc_tensor *const *ops, cck_iter *it) {
  memset(it, 0, sizeof *it);
  const cc_tensor *t0 = ops[0];
  it->nops = nops;
  it->numel = cc_numel(t0);
  for (int k = 0; k < nops; k++) {
    it->ptr[k] = cc_data_ptr(ops[k]);
    it->dtype[k] = ops[k]->dtype;
  }
  /* drop size-1 dims */
  int nd = 0;
  for (int d = 0; d < t0->ndim; d++) {
    if (t0->shape[d] == 1) continue;
    it->shape[nd] = t0->shape[d];
    for (int k = 0; k < nops; k++) it->stride[k][nd] = ops[k]->stride[d];
    nd++;
  }
  if (nd == 0) {
    it->shape[0] = 1;
    for (int k = 0; k < nops; k++) it->stride[k][0] = 0;
    nd = 1;
  }
  int64_t *strides[CCK_MAX_OPS];
  for (int k = 0; k < nops; k++) strides[k] = it->stride[k];
  it->ndim = coalesce_dims(nd, it->shape, nops, strides);
}

static int same_shapes(const char *op, int n, cc_tensor *const *ts) {
  for (int k = 1; k < n; k++)
    if (!cc_same_shape(ts[0], ts[k])) {
      cc_set_error("%s: operand shapes differ", op);
      return -1;
    }
  return 0;
}

/* ======================================================================= elementwise ===== */
static int fill_cuda(const cc_call *c) {
  cck_iter it;
  cc_cuda_make_iter(1, c->out, &it);
  return launched(cck_fill(&it, c->f[0], S()), "fill");
}

static int copy_cuda(const cc_call *c) {
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  if (!cc_same_shape(c->out[0], c->in[0])) {
    cc_set_error("copy: shapes differ");
    return -1;
  }
  cck_iter it;
  cc_cuda_make_iter(2, ops, &it);
  return launched(cck_copy(&it, S()), "copy");
}

static int unary_cuda(const cc_call *c) {
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  if (same_shapes("unary", 2, ops)) return -1;
  cck_iter it;
  cc_cuda_make_iter(2, ops, &it);
  return launched(cck_unary(&it, (int)c->i[0], c->f[0], S()), "unary");
}

static int unary_backward_cuda(const cc_call *c) {
  if (!cc_is_floating(c->out[0]->dtype)) {
    cc_set_error("unary backward: floating tensors only");
    return -1;
  }
  cc_tensor *ops[4] = {c->out[0], c->in[0], c->in[1], c->in[2]};
  if (same_shapes("unary backward", 4, ops)) return -1;
  cck_iter it;
  cc_cuda_make_iter(4, ops, &it);
  return launched(cck_unary_backward(&it, (int)c->i[0], c->f[0], S()), "unary backward");
}

static int binary_cuda(const cc_call *c) {
  cc_tensor *ops[3] = {c->out[0], c->in[0], c->in[1]};
  if (same_shapes("binary", 3, ops)) return -1;
  cck_iter it;
  cc_cuda_make_iter(3, ops, &it);
  return launched(cck_binary(&it, (int)c->i[0], S()), "binary");
}

static int scalar_cuda(const cc_call *c) {
  double a = c->f[0], b = c->f[1];
  if (c->out[0]->dtype == CC_INT64) { /* clamp bounds of +-inf do not fit an integer */
    a = a < -9.2e18 ? -9.2e18 : (a > 9.2e18 ? 9.2e18 : a);
    b = b < -9.2e18 ? -9.2e18 : (b > 9.2e18 ? 9.2e18 : b);
  }
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  if (same_shapes("scalar", 2, ops)) return -1;
  cck_iter it;
  cc_cuda_make_iter(2, ops, &it);
  return launched(cck_scalar(&it, (int)c->i[0], a, b, S()), "scalar");
}

static int where_cuda(const cc_call *c) {
  cc_tensor *ops[4] = {c->out[0], c->in[0], c->in[1], c->in[2]};
  if (same_shapes("where", 4, ops)) return -1;
  cck_iter it;
  cc_cuda_make_iter(4, ops, &it);
  return launched(cck_where(&it, S()), "where");
}

/* ======================================================================= reductions ====== */
/* out has the input's rank with 1 at reduced dims */
static int sum_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  if (x->ndim != out->ndim) {
    cc_set_error("sum: output rank %d differs from the input's %d", out->ndim, x->ndim);
    return -1;
  }
  cck_reduce r;
  memset(&r, 0, sizeof r);
  r.in = cc_data_ptr(x);
  r.out = cc_data_ptr(out);
  r.dtype = x->dtype;
  r.n_red = 1;
  for (int d = 0; d < x->ndim; d++) {
    if (out->shape[d] == 1 && x->shape[d] != 1) {
      r.rshape[r.nr] = x->shape[d];
      r.rstride[r.nr] = x->stride[d];
      r.n_red *= x->shape[d];
      r.nr++;
    } else {
      r.kshape[r.nk] = x->shape[d];
      r.kstride_in[r.nk] = x->stride[d];
      r.kstride_out[r.nk] = out->stride[d];
      r.nk++;
    }
  }
  /* neighbours in either list that step as one dim (e.g. H and W of a contiguous tensor) become one,
     so that the kernels index them without divisions */
  int64_t *rstrides[1] = {r.rstride}, *kstrides[2] = {r.kstride_in, r.kstride_out};
  r.nr = coalesce_dims(r.nr, r.rshape, 1, rstrides);
  r.nk = coalesce_dims(r.nk, r.kshape, 2, kstrides);
  r.n_out = cc_numel(out);
  if (r.n_out == 0) return 0;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_sum_scratch(&r), cck_sum(&r, scratch, S()), "sum");
}

static int max_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *vals = c->out[0], *idx = c->out[1];
  cck_max_args a;
  memset(&a, 0, sizeof a);
  a.in = cc_data_ptr(x);
  a.vals = cc_data_ptr(vals);
  a.idx = cc_data_ptr(idx);
  a.dtype = x->dtype;
  a.ndim = x->ndim;
  a.dim = (int)c->i[0];
  if (a.dim < 0 || a.dim >= x->ndim || x->shape[a.dim] == 0) {
    cc_set_error("max: bad dimension %d for a %d-d input", a.dim + 1, x->ndim);
    return -1;
  }
  for (int d = 0; d < x->ndim; d++) {
    a.shape[d] = x->shape[d];
    a.xstride[d] = x->stride[d];
    a.vstride[d] = vals->stride[d];
    a.istride[d] = idx->stride[d];
  }
  a.n_out = cc_numel(vals);
  return launched(cck_max(&a, S()), "max");
}

/* in0 x -> out (x's shape and dtype); i0 dim, i1 reverse */
static int cumsum_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_cumsum_operands_ok(c)) return -1;
  cck_cumsum_args a;
  memset(&a, 0, sizeof a);
  a.in = cc_data_ptr(x);
  a.out = cc_data_ptr(out);
  a.dtype = x->dtype;
  a.ndim = x->ndim;
  a.dim = dim;
  a.reverse = (int)c->i[1];
  for (int d = 0; d < x->ndim; d++) {
    a.shape[d] = x->shape[d];
    a.xstride[d] = x->stride[d];
    a.ostride[d] = out->stride[d];
  }
  int64_t numel = cc_numel(x);
  if (numel == 0) return 0;
  a.rows = numel / x->shape[dim];
  return launched(cck_cumsum(&a, S()), "cumsum");
}

/* ======================================================================= sort ====== */
/* in0 x -> out0 values, out1 int64 indices (x's shape); i0 dim, i1 descending */
static int sort_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *vals = c->out[0], *idx = c->out[1];
  int dim = (int)c->i[0];
  if (!cc_sort_operands_ok(c)) return -1;
  cck_sort_args a;
  memset(&a, 0, sizeof a);
  a.in = cc_data_ptr(x);
  a.vals = cc_data_ptr(vals);
  a.idx = cc_data_ptr(idx);
  a.dtype = x->dtype;
  a.ndim = x->ndim;
  a.dim = dim;
  a.descending = (int)c->i[1];
  for (int d = 0; d < x->ndim; d++) {
    a.shape[d] = x->shape[d];
    a.xstride[d] = x->stride[d];
    a.vstride[d] = vals->stride[d];
    a.istride[d] = idx->stride[d];
  }
  int64_t numel = cc_numel(x);
  if (numel == 0) return 0;
  a.n = x->shape[dim];
  a.rows = numel / a.n;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_sort_scratch(&a), cck_sort(&a, scratch, S()), "sort");
}

/* in0 grad, in1 int64 indices -> out dx, one shape; i0 dim */
static int sort_backward_cuda(const cc_call *c) {
  cc_tensor *g = c->in[0], *idx = c->in[1], *dx = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_sort_backward_operands_ok(c)) return -1;
  cck_sort_bw_args a;
  memset(&a, 0, sizeof a);
  a.g = cc_data_ptr(g);
  a.idx = cc_data_ptr(idx);
  a.dx = cc_data_ptr(dx);
  a.dtype = g->dtype;
  a.ndim = g->ndim;
  a.dim = dim;
  for (int d = 0; d < g->ndim; d++) {
    a.shape[d] = g->shape[d];
    a.gstride[d] = g->stride[d];
    a.istride[d] = idx->stride[d];
    a.dstride[d] = dx->stride[d];
  }
  a.numel = cc_numel(g);
  return launched(cck_sort_backward(&a, S()), "sort backward");
}

/* ======================================================================= indexing ====== */
/* fails naming the first index of `index` outside [0, size) (one item on the device, then a copy back) */
static int index_check_cuda(const char *op, const cc_tensor *index, int dim, int64_t size) {
  cck_index_check_args a;
  memset(&a, 0, sizeof a);
  a.numel = cc_numel(index);
  if (a.numel == 0) return 0;
  a.idx = cc_data_ptr(index);
  a.size = size;
  a.ndim = index->ndim ? index->ndim : 1;
  a.shape[0] = 1;
  for (int d = 0; d < index->ndim; d++) {
    a.shape[d] = index->shape[d];
    a.stride[d] = index->stride[d];
  }
  int64_t bad[2] = {0, 0};
  void *flag;
  if (cc_cuda_scratch(sizeof bad, &flag)) return -1;
  a.bad = flag;
  int rc = launched(cck_index_check(&a, S()), op);
  if (!rc) rc = cc_cuda_copy(bad, CC_CPU, flag, CC_CUDA, sizeof bad);
  cc_cuda_scratch_free(flag, sizeof bad);
  if (!rc && bad[0]) {
    cc_set_error("%s: index %lld is out of range for dimension %d of size %lld", op, (long long)bad[1], dim + 1,
                 (long long)size);
    rc = -1;
  }
  return rc;
}

/* the launch arguments of a gather (src `full` indexed along dim, dst `picked`) or a scatter_add (src `picked`,
   dst `full`), as csrc/ops/index.c describes them; idx1d: the 1-D index broadcast over the other dims */
static void index_args(cck_index_args *a, int dim, const cc_tensor *full, const cc_tensor *picked,
                       const cc_tensor *idx, bool idx1d, bool scatter) {
  memset(a, 0, sizeof *a);
  const cc_tensor *src = scatter ? picked : full, *dst = scatter ? full : picked;
  a->src = cc_data_ptr(src);
  a->dst = cc_data_ptr(dst);
  a->idx = cc_data_ptr(idx);
  a->dtype = full->dtype;
  a->ndim = full->ndim;
  a->dim = dim;
  a->size = full->shape[dim];
  a->items = 1;
  for (int d = 0; d < full->ndim; d++) {
    a->shape[d] = dst->shape[d];
    a->ishape[d] = picked->shape[d];
    a->sstride[d] = src->stride[d];
    a->dstride[d] = dst->stride[d];
    a->istride[d] = idx1d ? (d == dim ? idx->stride[0] : 0) : idx->stride[d];
    if (!scatter || d != dim) a->items *= dst->shape[d];
  }
}

/* in0 x, in1 1-D int64 index -> out; i0 dim */
static int index_select_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_index_select_operands_ok(c, "index_select", x, out)) return -1;
  if (index_check_cuda("index_select", c->in[1], dim, x->shape[dim])) return -1;
  cck_index_args a;
  index_args(&a, dim, x, out, c->in[1], true, false);
  return launched(cck_gather(&a, S()), "index_select");
}

/* in0 grad, in1 1-D int64 index -> out (written whole); i0 dim */
static int index_add_cuda(const cc_call *c) {
  cc_tensor *g = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_index_select_operands_ok(c, "index_add", out, g)) return -1;
  if (index_check_cuda("index_add", c->in[1], dim, out->shape[dim])) return -1;
  cck_index_args a;
  index_args(&a, dim, out, g, c->in[1], true, true);
  return launched(cck_scatter_add(&a, S()), "index_add");
}

/* in0 x, in1 int64 index -> out (index's shape); i0 dim */
static int gather_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_gather_operands_ok(c, "gather", x, out)) return -1;
  if (index_check_cuda("gather", c->in[1], dim, x->shape[dim])) return -1;
  cck_index_args a;
  index_args(&a, dim, x, out, c->in[1], false, false);
  return launched(cck_gather(&a, S()), "gather");
}

/* in0 grad (index's shape), in1 int64 index -> out (written whole); i0 dim */
static int scatter_add_cuda(const cc_call *c) {
  cc_tensor *g = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_gather_operands_ok(c, "scatter_add", out, g)) return -1;
  if (index_check_cuda("scatter_add", c->in[1], dim, out->shape[dim])) return -1;
  cck_index_args a;
  index_args(&a, dim, out, g, c->in[1], false, true);
  return launched(cck_scatter_add(&a, S()), "scatter_add");
}

/* ======================================================================= pad, pool ====== */
/* in0 contiguous x -> out (contiguous); i[2k], i[2k+1]: before/after pads of dim ndim-1-k; f0 value */
static int pad_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0];
  if (cc_numel(y) == 0) return 0;
  if (!cc_is_contiguous(x) || !cc_is_contiguous(y) || x->ndim != y->ndim) {
    cc_set_error("pad: expected contiguous operands of one rank");
    return -1;
  }
  cck_pad_args a;
  memset(&a, 0, sizeof a);
  a.x = cc_data_ptr(x);
  a.y = cc_data_ptr(y);
  a.dtype = y->dtype;
  a.ndim = y->ndim;
  for (int d = 0; d < y->ndim; d++) {
    a.xshape[d] = x->shape[d];
    a.yshape[d] = y->shape[d];
    a.lo[d] = c->i[2 * (y->ndim - 1 - d)];
  }
  a.value = c->f[0];
  return launched(cck_pad(&a, S()), "pad");
}

static int avg_pool_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0];
  int nd = x->ndim;
  int64_t H = x->shape[nd - 2], W = x->shape[nd - 1];
  if (H * W == 0) return 0;
  int64_t planes = cc_numel(x) / (H * W), oh = y->shape[nd - 2], ow = y->shape[nd - 1];
  if (planes == 0) return 0;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_avg_pool_scratch(planes, H, W, oh, ow),
                               cck_avg_pool(cc_data_ptr(x), cc_data_ptr(y), x->dtype, planes, H, W, oh, ow, scratch, S()),
                               "adaptive_avg_pool2d");
}

/* in0 grad_out (..,oh,ow) -> out dx (..,H,W) */
static int avg_pool_backward_cuda(const cc_call *c) {
  cc_tensor *gy = c->in[0], *dx = c->out[0];
  int nd = dx->ndim;
  int64_t H = dx->shape[nd - 2], W = dx->shape[nd - 1];
  if (H * W == 0) return 0;
  int64_t planes = cc_numel(dx) / (H * W), oh = gy->shape[nd - 2], ow = gy->shape[nd - 1];
  if (planes == 0) return 0;
  return launched(cck_avg_pool_backward(cc_data_ptr(gy), cc_data_ptr(dx), dx->dtype, planes, H, W, oh, ow, S()),
                  "adaptive_avg_pool2d backward");
}

/* the max pool arguments of a call: big (..,H,W), small (..,oh,ow); ints as MAX_POOL2D */
static void max_pool_args(cck_max_pool_args *a, const cc_call *c, const cc_tensor *big, const cc_tensor *small) {
  memset(a, 0, sizeof *a);
  int nd = big->ndim;
  a->dtype = big->dtype;
  a->H = big->shape[nd - 2];
  a->W = big->shape[nd - 1];
  a->oh = small->shape[nd - 2];
  a->ow = small->shape[nd - 1];
  a->planes = a->H > 0 && a->W > 0 ? cc_numel(big) / (a->H * a->W) : 0;
  a->kh = c->i[0], a->kw = c->i[1], a->sh = c->i[2], a->sw = c->i[3];
  a->ph = c->i[4], a->pw = c->i[5], a->dh = c->i[6], a->dw = c->i[7];
}

/* in0 contiguous x (..,H,W) -> out0 values, out1 int64 indices (..,oh,ow) */
static int max_pool2d_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *y = c->out[0], *idx = c->out[1];
  if (!cc_max_pool2d_operands_ok(c, x, y, idx)) return -1;
  cck_max_pool_args a;
  max_pool_args(&a, c, x, y);
  a.x = cc_data_ptr(x);
  a.y = cc_data_ptr(y);
  a.idx = cc_data_ptr(idx);
  return launched(cck_max_pool2d(&a, S()), "max_pool2d");
}

/* in0 contiguous grad, in1 int64 indices (..,oh,ow) -> out dx (..,H,W) */
static int max_pool2d_backward_cuda(const cc_call *c) {
  cc_tensor *g = c->in[0], *idx = c->in[1], *dx = c->out[0];
  if (!cc_max_pool2d_operands_ok(c, dx, g, idx)) return -1;
  cck_max_pool_args a;
  max_pool_args(&a, c, dx, g);
  a.g = cc_data_ptr(g);
  a.idx = cc_data_ptr(idx);
  a.dx = cc_data_ptr(dx);
  return launched(cck_max_pool2d_backward(&a, S()), "max_pool2d backward");
}

/* ======================================================================= norms ====== */
#define PTR(t) ((t) ? cc_data_ptr(t) : NULL)

static void bn_dims(const cc_tensor *x, int64_t *N, int64_t *C, int64_t *Sz) {
  *N = x->shape[0];
  *C = x->shape[1];
  *Sz = 1;
  for (int d = 2; d < x->ndim; d++) *Sz *= x->shape[d];
}

/* in0 x, in1 rm, in2 rv, in3 w, in4 b -> out0 y, out1 mean, out2 invstd; i0 train; f0 momentum, f1 eps */
static int batch_norm_cuda(const cc_call *c) {
  cck_bn_args a;
  memset(&a, 0, sizeof a);
  bn_dims(c->in[0], &a.N, &a.C, &a.S);
  a.x = cc_data_ptr(c->in[0]);
  a.rm = PTR(c->in[1]);
  a.rv = PTR(c->in[2]);
  a.w = PTR(c->in[3]);
  a.b = PTR(c->in[4]);
  a.y = cc_data_ptr(c->out[0]);
  a.mean = cc_data_ptr(c->out[1]);
  a.invstd = cc_data_ptr(c->out[2]);
  a.dtype = c->in[0]->dtype;
  a.training = (int)c->i[0];
  a.momentum = c->f[0];
  a.eps = c->f[1];
  if (!a.training && (!a.rm || !a.rv)) {
    cc_set_error("batch_norm: running statistics are needed in evaluation mode");
    return -1;
  }
  if (a.C == 0) return 0;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_batch_norm_scratch(&a), cck_batch_norm(&a, scratch, S()), "batch_norm");
}

/* in0 dy, in1 x, in2 mean, in3 invstd, in4 w -> out0 dx, out1 dw, out2 db (each may be NULL); i0 train */
static int batch_norm_backward_cuda(const cc_call *c) {
  cck_bn_bw_args a;
  memset(&a, 0, sizeof a);
  bn_dims(c->in[1], &a.N, &a.C, &a.S);
  a.dy = cc_data_ptr(c->in[0]);
  a.x = cc_data_ptr(c->in[1]);
  a.mean = cc_data_ptr(c->in[2]);
  a.invstd = cc_data_ptr(c->in[3]);
  a.w = PTR(c->in[4]);
  a.dx = PTR(c->out[0]);
  a.dw = PTR(c->out[1]);
  a.db = PTR(c->out[2]);
  a.dtype = c->in[1]->dtype;
  a.training = (int)c->i[0];
  if (a.C == 0) return 0;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_batch_norm_backward_scratch(&a), cck_batch_norm_backward(&a, scratch, S()),
                               "batch_norm backward");
}

static void ln_dims(const cc_tensor *x, int nnorm, int64_t *R, int64_t *D) {
  *R = 1;
  *D = 1;
  for (int d = 0; d < x->ndim; d++) *(d < x->ndim - nnorm ? R : D) *= x->shape[d];
}

/* in0 x, in1 w, in2 b -> out0 y, out1 mean, out2 invstd; i0 nnorm; f0 eps */
static int layer_norm_cuda(const cc_call *c) {
  cck_ln_args a;
  memset(&a, 0, sizeof a);
  ln_dims(c->in[0], (int)c->i[0], &a.R, &a.D);
  a.x = cc_data_ptr(c->in[0]);
  a.w = PTR(c->in[1]);
  a.b = PTR(c->in[2]);
  a.y = cc_data_ptr(c->out[0]);
  a.mean = cc_data_ptr(c->out[1]);
  a.invstd = cc_data_ptr(c->out[2]);
  a.dtype = c->in[0]->dtype;
  a.eps = c->f[0];
  return launched(cck_layer_norm(&a, S()), "layer_norm");
}

/* in0 dy, in1 x, in2 mean, in3 invstd, in4 w -> out0 dx, out1 dw, out2 db; i0 nnorm */
static int layer_norm_backward_cuda(const cc_call *c) {
  cck_ln_bw_args a;
  memset(&a, 0, sizeof a);
  ln_dims(c->in[1], (int)c->i[0], &a.R, &a.D);
  a.dy = cc_data_ptr(c->in[0]);
  a.x = cc_data_ptr(c->in[1]);
  a.mean = cc_data_ptr(c->in[2]);
  a.invstd = cc_data_ptr(c->in[3]);
  a.w = PTR(c->in[4]);
  a.dx = PTR(c->out[0]);
  a.dw = PTR(c->out[1]);
  a.db = PTR(c->out[2]);
  a.dtype = c->in[1]->dtype;
  RETURN_LAUNCHED_WITH_SCRATCH(cck_layer_norm_backward_scratch(&a), cck_layer_norm_backward(&a, scratch, S()),
                               "layer_norm backward");
}

/* ======================================================================= softmax, nll ====== */
static void sm_dims(const cc_tensor *t, int d, int64_t *outer, int64_t *L, int64_t *inner) {
  *outer = 1;
  *inner = 1;
  *L = t->ndim ? t->shape[d] : 1;
  for (int k = 0; k < t->ndim; k++) {
    if (k < d) *outer *= t->shape[k];
    if (k > d) *inner *= t->shape[k];
  }
}

/* in0 contiguous x -> out; i0 log, i1 dim */
static int softmax_cuda(const cc_call *c) {
  int64_t outer, L, inner;
  sm_dims(c->in[0], (int)c->i[1], &outer, &L, &inner);
  return launched(cck_softmax(cc_data_ptr(c->in[0]), cc_data_ptr(c->out[0]), c->in[0]->dtype, outer, L, inner,
                              (int)c->i[0], S()),
                  "softmax");
}

/* in0 contiguous dy, in1 y -> out dx; i0 log, i1 dim */
static int softmax_backward_cuda(const cc_call *c) {
  int64_t outer, L, inner;
  sm_dims(c->in[1], (int)c->i[1], &outer, &L, &inner);
  return launched(cck_softmax_backward(cc_data_ptr(c->in[0]), cc_data_ptr(c->in[1]), cc_data_ptr(c->out[0]),
                                       c->in[1]->dtype, outer, L, inner, (int)c->i[0], S()),
                  "softmax backward");
}

/* in0 log-probabilities (N,C) contiguous, in1 int64 targets (N) contiguous -> out 0-d */
static int nll_cuda(const cc_call *c) {
  cc_tensor *x = c->in[0], *t = c->in[1];
  int64_t N = x->shape[0], C = x->shape[1], bad[2] = {0, 0};
  void *flag;
  if (cc_cuda_scratch(sizeof bad, &flag)) return -1;
  int rc = launched(cck_nll(cc_data_ptr(x), cc_data_ptr(t), cc_data_ptr(c->out[0]), flag, x->dtype, N, C, S()), "nll");
  if (!rc) rc = cc_cuda_copy(bad, CC_CPU, flag, CC_CUDA, sizeof bad);
  cc_cuda_scratch_free(flag, sizeof bad);
  if (!rc && bad[0]) {
    cc_set_error("target %lld is out of bounds for %lld classes", (long long)bad[1], (long long)C);
    rc = -1;
  }
  return rc;
}

/* in0 0-d grad, in1 targets -> out dx (N,C) */
static int nll_backward_cuda(const cc_call *c) {
  cc_tensor *dx = c->out[0];
  return launched(cck_nll_backward(cc_data_ptr(c->in[0]), cc_data_ptr(c->in[1]), cc_data_ptr(dx), dx->dtype,
                                   dx->shape[0], dx->shape[1], S()),
                  "nll backward");
}

/* ======================================================================= random, optim ====== */
/* out; i0 kind, i1 counter, i2 seed; f0, f1 parameters */
static int random_cuda(const cc_call *c) {
  cc_tensor *t = c->out[0];
  cc_tensor *dst = cc_is_contiguous(t) ? cc_retain(t) : cc_empty_like(t);
  if (!dst) return -1;
  int rc = launched(cck_random(cc_data_ptr(dst), t->dtype, cc_numel(t), (int)c->i[0], (uint64_t)c->i[1],
                               (uint64_t)c->i[2], c->f[0], c->f[1], S()),
                    "random");
  if (!rc && dst != t) rc = cc_run(CC_OP_COPY, t, 1, &dst, NULL, 0, NULL, 0);
  cc_release(dst);
  return rc;
}

/* out (fresh, contiguous); i0 counter, i1 seed; f0 p */
static int dropout_mask_cuda(const cc_call *c) {
  cc_tensor *t = c->out[0];
  if (!cc_is_contiguous(t)) {
    cc_set_error("dropout: the mask must be contiguous");
    return -1;
  }
  return launched(cck_dropout_mask(cc_data_ptr(t), t->dtype, cc_numel(t), (uint64_t)c->i[0], (uint64_t)c->i[1],
                                   c->f[0], S()),
                  "dropout");
}

/* in0 param, in1 grad, in2 exp_avg, in3 exp_avg_sq; f0 lr, f1 beta1, f2 beta2, f3 eps, f4 wd,
   f5 1 - beta1^step, f6 1 - beta2^step; i0 AdamW */
static int adam_step_cuda(const cc_call *c) {
  double lr = c->f[0], beta1 = c->f[1], beta2 = c->f[2], eps = c->f[3], wd = c->f[4];
  cck_adam_args a;
  memset(&a, 0, sizeof a);
  a.p = cc_data_ptr(c->in[0]);
  a.g = cc_data_ptr(c->in[1]);
  a.m = cc_data_ptr(c->in[2]);
  a.v = cc_data_ptr(c->in[3]);
  a.dtype = c->in[0]->dtype;
  a.decoupled = (int)c->i[0];
  a.n = cc_numel(c->in[0]);
  a.beta1 = beta1;
  a.one_m_beta1 = 1 - beta1;
  a.beta2 = beta2;
  a.one_m_beta2 = 1 - beta2;
  a.wd = wd;
  a.decay = 1 - lr * wd;
  a.bc2_sqrt = sqrt(c->f[6]);
  a.eps = eps;
  a.neg_step_size = -(lr / c->f[5]);
  return launched(cck_adam(&a, S()), "adam_step");
}

void cc_cuda_register_ops(void) {
  cc_register_kernel(CC_OP_FILL, CC_CUDA, fill_cuda);
  cc_register_kernel(CC_OP_COPY, CC_CUDA, copy_cuda);
  cc_register_kernel(CC_OP_RANDOM, CC_CUDA, random_cuda);
  cc_register_kernel(CC_OP_UNARY, CC_CUDA, unary_cuda);
  cc_register_kernel(CC_OP_UNARY_BACKWARD, CC_CUDA, unary_backward_cuda);
  cc_register_kernel(CC_OP_BINARY, CC_CUDA, binary_cuda);
  cc_register_kernel(CC_OP_SCALAR, CC_CUDA, scalar_cuda);
  cc_register_kernel(CC_OP_WHERE, CC_CUDA, where_cuda);
  cc_register_kernel(CC_OP_SUM, CC_CUDA, sum_cuda);
  cc_register_kernel(CC_OP_MAX, CC_CUDA, max_cuda);
  cc_register_kernel(CC_OP_CUMSUM, CC_CUDA, cumsum_cuda);
  cc_register_kernel(CC_OP_SORT, CC_CUDA, sort_cuda);
  cc_register_kernel(CC_OP_SORT_BACKWARD, CC_CUDA, sort_backward_cuda);
  cc_register_kernel(CC_OP_INDEX_SELECT, CC_CUDA, index_select_cuda);
  cc_register_kernel(CC_OP_INDEX_ADD, CC_CUDA, index_add_cuda);
  cc_register_kernel(CC_OP_GATHER, CC_CUDA, gather_cuda);
  cc_register_kernel(CC_OP_SCATTER_ADD, CC_CUDA, scatter_add_cuda);
  cc_register_kernel(CC_OP_PAD, CC_CUDA, pad_cuda);
  cc_register_kernel(CC_OP_MAX_POOL2D, CC_CUDA, max_pool2d_cuda);
  cc_register_kernel(CC_OP_MAX_POOL2D_BACKWARD, CC_CUDA, max_pool2d_backward_cuda);
  cc_register_kernel(CC_OP_AVG_POOL2D, CC_CUDA, avg_pool_cuda);
  cc_register_kernel(CC_OP_AVG_POOL2D_BACKWARD, CC_CUDA, avg_pool_backward_cuda);
  cc_register_kernel(CC_OP_BATCH_NORM, CC_CUDA, batch_norm_cuda);
  cc_register_kernel(CC_OP_BATCH_NORM_BACKWARD, CC_CUDA, batch_norm_backward_cuda);
  cc_register_kernel(CC_OP_LAYER_NORM, CC_CUDA, layer_norm_cuda);
  cc_register_kernel(CC_OP_LAYER_NORM_BACKWARD, CC_CUDA, layer_norm_backward_cuda);
  cc_register_kernel(CC_OP_SOFTMAX, CC_CUDA, softmax_cuda);
  cc_register_kernel(CC_OP_SOFTMAX_BACKWARD, CC_CUDA, softmax_backward_cuda);
  cc_register_kernel(CC_OP_NLL, CC_CUDA, nll_cuda);
  cc_register_kernel(CC_OP_NLL_BACKWARD, CC_CUDA, nll_backward_cuda);
  cc_register_kernel(CC_OP_DROPOUT_MASK, CC_CUDA, dropout_mask_cuda);
  cc_register_kernel(CC_OP_ADAM_STEP, CC_CUDA, adam_step_cuda);
}
