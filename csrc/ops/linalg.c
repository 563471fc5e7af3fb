/* linalg.c — matmul (dot, mv, mm, batched with broadcast batch dims, as torch.matmul), bmm and
 * linear: forward, backward, and the one GEMM kernel behind them all.
 * Shapes: bmm (B,n,k) x (B,k,m) -> (B,n,m); linear x (...,in), w (out,in), b (out) -> (...,out).
 * GEMM operands are batched matrices (..., rows, cols) with the same batch shape; any strides
 * (0 for broadcast batch dims). A matrix with a unit stride along either dim goes to
 * cblas_[sd]gemm as is (lda + CblasTrans); only other layouts are copied. */
#include "internal.h"

#include <cblas.h>
#include <limits.h>
#include <stdio.h>
#include <string.h>

/* ======================================================================= op level ====== */

/* out (..., M, N) <- alpha op(a) op(b) + beta out */
static int gemm_run(cc_tensor *out, cc_tensor *a, cc_tensor *b, bool ta, bool tb, double alpha, double beta) {
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_GEMM;
  call.n_in = 2;
  call.in[0] = a;
  call.in[1] = b;
  call.n_out = 1;
  call.out[0] = out;
  call.i[0] = ta;
  call.i[1] = tb;
  call.f[0] = alpha;
  call.f[1] = beta;
  return cc_dispatch(&call);
}

/* a new contiguous op(a) op(b); a and b have the same batch shape */
static cc_tensor *gemm_new(cc_tensor *a, cc_tensor *b, bool ta, bool tb) {
  int nd = a->ndim;
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, a->shape, sizeof shape);
  shape[nd - 2] = ta ? a->shape[nd - 1] : a->shape[nd - 2];
  shape[nd - 1] = tb ? b->shape[nd - 2] : b->shape[nd - 1];
  cc_tensor *out = cc_empty(nd, shape, a->dtype, a->storage->device);
  if (out && gemm_run(out, a, b, ta, tb, 1.0, 0.0)) {
    cc_release(out);
    return NULL;
  }
  return out;
}

/* d(a b) : da = g b^T, db = a^T g (batch shapes equal; broadcast inputs are expand views whose
   own backward sums the batch back) */
static int mm_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *a = node->saved[0], *b = node->saved[1];
  if (cc_node_needs(node, 0) && !(gi[0] = gemm_new(g, b, false, true))) return -1;
  if (cc_node_needs(node, 1) && !(gi[1] = gemm_new(a, g, true, false))) return -1;
  return 0;
}

/* a (..., m, k) @ b (..., k, n), same batch shape, recorded as one node */
static cc_tensor *mm_core(cc_tensor *a, cc_tensor *b, const char *name) {
  cc_tensor *out = gemm_new(a, b, false, false);
  if (!out) return NULL;
  cc_tensor *ins[2] = {a, b};
  cc_node *node = cc_attach_node(out, name, mm_backward, 2, ins);
  if (node) {
    cc_node_save(node, cc_node_needs(node, 1) ? a : NULL);
    cc_node_save(node, cc_node_needs(node, 0) ? b : NULL);
  }
  return out;
}

static int check_operands(const char *op, cc_tensor *a, cc_tensor *b) {
  if (cc_check_same(op, a, b) || cc_check_floating(op, a)) return -1;
  if (a->ndim == 0 || b->ndim == 0) {
    cc_set_error("%s: both arguments need at least 1 dimension, got %d-d and %d-d", op, a->ndim, b->ndim);
    return -1;
  }
  return 0;
}

static void inner_mismatch(const char *op, const cc_tensor *a, const cc_tensor *b, int64_t ka, int64_t kb) {
  char s1[128], s2[128];
  cc_shape_str(a->ndim, a->shape, s1, sizeof s1);
  cc_shape_str(b->ndim, b->shape, s2, sizeof s2);
  cc_set_error("%s: shape mismatch, %s @ %s: inner sizes %lld and %lld differ", op, s1, s2, (long long)ka,
               (long long)kb);
}

/* a recorded expand, skipped when t already has the shape */
static cc_tensor *expand_if(cc_tensor *t, int ndim, const int64_t *shape) {
  bool same = t->ndim == ndim;
  for (int d = 0; same && d < ndim; d++) same = t->shape[d] == shape[d];
  return same ? cc_retain(t) : cc_expand(t, ndim, shape);
}

cc_tensor *cc_matmul(cc_tensor *a, cc_tensor *b) {
  if (check_operands("matmul", a, b)) return NULL;
  int na = a->ndim, nb = b->ndim;
  int64_t ka = a->shape[na - 1], kb = nb == 1 ? b->shape[0] : b->shape[nb - 2];
  if (ka != kb) {
    inner_mismatch("matmul", a, b, ka, kb);
    return NULL;
  }
  cc_tensor *a2 = NULL, *b2 = NULL, *ae = NULL, *be = NULL, *r = NULL, *out = NULL;
  int64_t oshape[CC_MAX_DIMS];
  int on = 0;
  if (na >= 3 && nb <= 2) {
    /* fold the batch of a into its rows: one GEMM */
    int64_t rows = 1;
    for (int d = 0; d < na - 1; d++) rows *= a->shape[d];
    CC_TRY(a2 = cc_reshape(a, 2, (int64_t[]){rows, ka}));
    CC_TRY(b2 = nb == 1 ? cc_unsqueeze(b, 1) : cc_retain(b));
    CC_TRY(r = mm_core(a2, b2, "MmBackward"));
    for (int d = 0; d < na - 1; d++) oshape[on++] = a->shape[d];
    if (nb == 2) oshape[on++] = b->shape[1];
  } else {
    CC_TRY(a2 = na == 1 ? cc_unsqueeze(a, 0) : cc_retain(a));
    CC_TRY(b2 = nb == 1 ? cc_unsqueeze(b, 1) : cc_retain(b));
    int64_t m = a2->shape[a2->ndim - 2], n = b2->shape[b2->ndim - 1];
    if (a2->ndim == 2 && b2->ndim == 2) {
      CC_TRY(r = mm_core(a2, b2, na == 1 && nb == 1 ? "DotBackward" : "MmBackward"));
    } else {
      int nbs;
      int64_t bs[CC_MAX_DIMS];
      if (cc_broadcast_shapes(a2->ndim - 2, a2->shape, b2->ndim - 2, b2->shape, &nbs, bs)) {
        char s1[128], s2[128];
        cc_shape_str(na, a->shape, s1, sizeof s1);
        cc_shape_str(nb, b->shape, s2, sizeof s2);
        cc_set_error("matmul: batch dimensions of %s and %s cannot be broadcast", s1, s2);
        goto fail;
      }
      if (nbs + 2 > CC_MAX_DIMS) {
        cc_set_error("matmul: at most %d dimensions", CC_MAX_DIMS);
        goto fail;
      }
      int64_t sa[CC_MAX_DIMS], sb[CC_MAX_DIMS];
      memcpy(sa, bs, sizeof(int64_t) * (size_t)nbs);
      memcpy(sb, bs, sizeof(int64_t) * (size_t)nbs);
      sa[nbs] = m;
      sa[nbs + 1] = ka;
      sb[nbs] = ka;
      sb[nbs + 1] = n;
      CC_TRY(ae = expand_if(a2, nbs + 2, sa));
      CC_TRY(be = expand_if(b2, nbs + 2, sb));
      CC_TRY(r = mm_core(ae, be, "BmmBackward"));
      for (int d = 0; d < nbs; d++) oshape[on++] = bs[d];
    }
    if (na > 1) oshape[on++] = m;
    if (nb > 1) oshape[on++] = n;
  }
  bool same = r->ndim == on;
  for (int d = 0; same && d < on; d++) same = r->shape[d] == oshape[d];
  out = same ? cc_retain(r) : cc_reshape(r, on, oshape);
fail:
  cc_release(a2);
  cc_release(b2);
  cc_release(ae);
  cc_release(be);
  cc_release(r);
  return out;
}

cc_tensor *cc_bmm(cc_tensor *a, cc_tensor *b) {
  if (check_operands("bmm", a, b)) return NULL;
  char s1[128], s2[128];
  cc_shape_str(a->ndim, a->shape, s1, sizeof s1);
  cc_shape_str(b->ndim, b->shape, s2, sizeof s2);
  if (a->ndim != 3 || b->ndim != 3) {
    cc_set_error("bmm: expected two 3-d tensors, got %s and %s", s1, s2);
    return NULL;
  }
  if (a->shape[0] != b->shape[0]) {
    cc_set_error("bmm: batch sizes differ, %s and %s", s1, s2);
    return NULL;
  }
  if (a->shape[2] != b->shape[1]) {
    inner_mismatch("bmm", a, b, a->shape[2], b->shape[1]);
    return NULL;
  }
  return mm_core(a, b, "BmmBackward");
}

/* ---- linear: y = x w^T + b over the flattened leading dims of x ---- */
static int linear_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *x = node->saved[0], *w = node->saved[1];
  int64_t rows = node->ints[0], in = node->ints[1], outf = node->ints[2];
  cc_tensor *g2 = cc_reshape(g, 2, (int64_t[]){rows, outf});
  if (!g2) return -1;
  int rc = -1;
  if (cc_node_needs(node, 0)) { /* dx = g w */
    cc_tensor *dx = gemm_new(g2, w, false, false);
    gi[0] = dx ? cc_reshape(dx, node->ndim, node->shape) : NULL;
    cc_release(dx);
    if (!gi[0]) goto done;
  }
  if (cc_node_needs(node, 1)) { /* dw = g^T x: one GEMM over all rows */
    cc_tensor *x2 = cc_reshape(x, 2, (int64_t[]){rows, in});
    gi[1] = x2 ? gemm_new(g2, x2, true, false) : NULL;
    cc_release(x2);
    if (!gi[1]) goto done;
  }
  if (cc_node_needs(node, 2) && !(gi[2] = cc_sum(g2, 1, (int[]){0}, false))) goto done;
  rc = 0;
done:
  cc_release(g2);
  return rc;
}

cc_tensor *cc_linear(cc_tensor *x, cc_tensor *w, cc_tensor *b) {
  if (check_operands("linear", x, w)) return NULL;
  if (b && cc_check_same("linear", x, b)) return NULL;
  char sx[128], sw[128];
  cc_shape_str(x->ndim, x->shape, sx, sizeof sx);
  cc_shape_str(w->ndim, w->shape, sw, sizeof sw);
  if (w->ndim != 2) {
    cc_set_error("linear: weight must be 2-d (out_features, in_features), got %s", sw);
    return NULL;
  }
  int64_t in = w->shape[1], outf = w->shape[0];
  if (x->shape[x->ndim - 1] != in) {
    cc_set_error("linear: shape mismatch, input %s and weight %s: in_features %lld and %lld differ", sx, sw,
                 (long long)x->shape[x->ndim - 1], (long long)in);
    return NULL;
  }
  if (b && (b->ndim != 1 || b->shape[0] != outf)) {
    char sb[128];
    cc_shape_str(b->ndim, b->shape, sb, sizeof sb);
    cc_set_error("linear: bias of shape %s does not match out_features %lld", sb, (long long)outf);
    return NULL;
  }
  int64_t rows = 1, oshape[CC_MAX_DIMS];
  for (int d = 0; d < x->ndim - 1; d++) {
    rows *= x->shape[d];
    oshape[d] = x->shape[d];
  }
  oshape[x->ndim - 1] = outf;
  bool was = cc_set_grad_enabled(false);
  cc_tensor *x2 = cc_reshape(x, 2, (int64_t[]){rows, in}), *y2 = NULL, *be = NULL, *y = NULL;
  CC_TRY(x2);
  CC_TRY(y2 = cc_empty(2, (int64_t[]){rows, outf}, x->dtype, x->storage->device));
  if (b) {
    CC_TRY(be = cc_expand_to(b, 2, y2->shape));
    if (cc_run(CC_OP_COPY, y2, 1, &be, NULL, 0, NULL, 0)) goto fail;
  }
  if (gemm_run(y2, x2, w, false, true, 1.0, b ? 1.0 : 0.0)) goto fail;
  y = cc_reshape(y2, x->ndim, oshape);
fail:
  cc_set_grad_enabled(was);
  cc_release(x2);
  cc_release(y2);
  cc_release(be);
  if (!y) return NULL;
  cc_tensor *ins[3] = {x, w, b};
  cc_node *node = cc_attach_node(y, "LinearBackward", linear_backward, 3, ins);
  if (node) {
    cc_node_save(node, cc_node_needs(node, 1) ? x : NULL);
    cc_node_save(node, cc_node_needs(node, 0) ? w : NULL);
    node->ints[0] = rows;
    node->ints[1] = in;
    node->ints[2] = outf;
    node->ndim = x->ndim;
    memcpy(node->shape, x->shape, sizeof(int64_t) * (size_t)x->ndim);
  }
  return y;
}

/* ======================================================================= CPU kernels ===== */

/* how BLAS can read a rows x cols matrix with element strides (rs, cs): row-major as is
   (*trans false) or as the transpose of a row-major matrix (*trans true); false when neither */
static bool blas_layout(int64_t rows, int64_t cols, int64_t rs, int64_t cs, bool *trans, int64_t *ld) {
  int64_t mr = rows > 1 ? rows : 1, mc = cols > 1 ? cols : 1;
  if ((cs == 1 || cols <= 1) && (rows <= 1 || rs >= mc)) {
    *trans = false;
    *ld = rows <= 1 ? mc : rs;
    return *ld <= INT_MAX;
  }
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= mr)) {
    *trans = true;
    *ld = cols <= 1 ? mr : cs;
    return *ld <= INT_MAX;
  }
  return false;
}

/* a copy of t whose matrices are contiguous; broadcast (stride 0) batch dims stay broadcast */
static cc_tensor *compact_copy(cc_tensor *t) {
  int nd = t->ndim;
  int64_t shape[CC_MAX_DIMS], stride[CC_MAX_DIMS];
  for (int d = 0; d < nd; d++) shape[d] = d < nd - 2 && t->stride[d] == 0 ? 1 : t->shape[d];
  cc_tensor *src = cc_tensor_wrap(t->storage, t->offset, nd, shape, t->stride, t->dtype);
  cc_tensor *c = src ? cc_empty(nd, shape, t->dtype, t->storage->device) : NULL;
  cc_tensor *out = NULL;
  if (c && !cc_run(CC_OP_COPY, c, 1, &src, NULL, 0, NULL, 0)) {
    cc_contiguous_strides(nd, shape, stride);
    for (int d = 0; d < nd - 2; d++)
      if (t->stride[d] == 0) stride[d] = 0;
    out = cc_tensor_wrap(c->storage, c->offset, nd, t->shape, stride, t->dtype);
  }
  cc_release(src);
  cc_release(c);
  return out;
}

typedef struct {
  const char *base;
  int64_t rs, cs; /* element strides of op(X) */
  int64_t bstride[CC_MAX_DIMS];
} gemm_operand;

/* tiny matrices, many of them: plain loops, batches across threads (no BLAS inside) */
#define GEMM_SMALL(T)                                                                              \
  static void gemm_small_##T(int64_t nbatch, int nbd, const int64_t *bshape, const gemm_operand *A, \
                             const gemm_operand *B, const gemm_operand *C, int64_t M, int64_t N,   \
                             int64_t K, T alpha, T beta) {                                         \
    _Pragma("omp parallel for schedule(static) if (nbatch > 1)") for (int64_t bi = 0; bi < nbatch; bi++) { \
      int64_t oa = 0, ob = 0, oc = 0, rem = bi;                                                    \
      for (int d = nbd - 1; d >= 0; d--) {                                                         \
        int64_t i = rem % bshape[d];                                                               \
        rem /= bshape[d];                                                                          \
        oa += i * A->bstride[d];                                                                   \
        ob += i * B->bstride[d];                                                                   \
        oc += i * C->bstride[d];                                                                   \
      }                                                                                            \
      const T *a = (const T *)A->base + oa, *b = (const T *)B->base + ob;                          \
      T *c = (T *)C->base + oc;                                                                    \
      int64_t ars = A->rs, acs = A->cs, brs = B->rs, bcs = B->cs, crs = C->rs, ccs = C->cs;        \
      for (int64_t i = 0; i < M; i++) {                                                            \
        T *restrict crow = c + i * crs;                                                            \
        if (ccs == 1 && bcs == 1 && N <= 256) {                                                    \
          T acc[256];                                                                              \
          for (int64_t j = 0; j < N; j++) acc[j] = 0;                                              \
          for (int64_t p = 0; p < K; p++) {                                                        \
            T av = a[i * ars + p * acs];                                                           \
            const T *restrict brow = b + p * brs;                                                  \
            for (int64_t j = 0; j < N; j++) acc[j] += av * brow[j];                                \
          }                                                                                        \
          for (int64_t j = 0; j < N; j++) crow[j] = alpha * acc[j] + (beta == 0 ? (T)0 : beta * crow[j]); \
        } else                                                                                     \
          for (int64_t j = 0; j < N; j++) {                                                        \
            T acc = 0;                                                                             \
            for (int64_t p = 0; p < K; p++) acc += a[i * ars + p * acs] * b[p * brs + j * bcs];    \
            crow[j * ccs] = alpha * acc + (beta == 0 ? (T)0 : beta * crow[j * ccs]);               \
          }                                                                                        \
      }                                                                                            \
    }                                                                                              \
  }
GEMM_SMALL(float)
GEMM_SMALL(double)

int cc_gemm_sizes(const cc_call *c, const char *lib, int64_t *M_, int64_t *N_, int64_t *K_, int64_t *nbatch_) {
  const cc_tensor *a = c->in[0], *b = c->in[1], *out = c->out[0];
  bool ta = c->i[0] != 0, tb = c->i[1] != 0;
  int nd = out->ndim;
  if (nd < 2 || a->ndim != nd || b->ndim != nd || a->dtype != out->dtype || b->dtype != out->dtype ||
      !cc_is_floating(out->dtype)) {
    cc_set_error("gemm: expected floating operands of equal rank >= 2 and one dtype");
    return -1;
  }
  int64_t M = out->shape[nd - 2], N = out->shape[nd - 1];
  int64_t K = ta ? a->shape[nd - 2] : a->shape[nd - 1];
  int64_t am = ta ? a->shape[nd - 1] : a->shape[nd - 2];
  int64_t bk = tb ? b->shape[nd - 1] : b->shape[nd - 2], bn = tb ? b->shape[nd - 2] : b->shape[nd - 1];
  for (int d = 0; d < nd - 2; d++)
    if (a->shape[d] != out->shape[d] || b->shape[d] != out->shape[d]) am = -1;
  if (am != M || bk != K || bn != N) {
    cc_set_error("gemm: operand shapes do not agree");
    return -1;
  }
  if (M > INT_MAX || N > INT_MAX || K > INT_MAX) {
    cc_set_error("gemm: matrix dimensions above %d are not supported by %s", INT_MAX, lib);
    return -1;
  }
  int64_t nbatch = 1;
  for (int d = 0; d < nd - 2; d++) nbatch *= out->shape[d];
  *M_ = M, *N_ = N, *K_ = K, *nbatch_ = nbatch;
  return 0;
}

/* C (m x n, row-major, ldc) = alpha op(X) op(Y) + beta C where m == 1 or n == 1, as one gemv: X (m x K) and
   Y (K x n) in gemm_cpu's layouts (xt / yt: stored transposed, lda / ldb their leading dimensions). With
   beta 0 the output is cleared first, so that whatever the block held never reaches the result. */
static int gemv_run(cc_dtype dt, int64_t m, int64_t n, int64_t K, double alpha, double beta, const char *X, bool xt,
                    int64_t lda, const char *Y, bool yt, int64_t ldb, char *C, int64_t ldc) {
  size_t es = cc_dtype_size(dt);
  int64_t len = m == 1 ? n : m, inc_c = m == 1 ? 1 : ldc;
  if (beta == 0)
    for (int64_t i = 0; i < len; i++) memset(C + (size_t)(i * inc_c) * es, 0, es);
  const char *mat, *vec;
  int64_t rows, cols, ld, inc_v;
  enum CBLAS_TRANSPOSE op;
  if (m == 1) { /* C^T = op(Y)^T x: the vector is X's row */
    mat = Y, ld = ldb, vec = X, inc_v = xt ? lda : 1;
    if (yt) op = CblasNoTrans, rows = n, cols = K; /* Y stored n x K */
    else op = CblasTrans, rows = K, cols = n;      /* Y stored K x n */
  } else { /* C = op(X) y: the vector is Y's column */
    mat = X, ld = lda, vec = Y, inc_v = yt ? 1 : ldb;
    if (xt) op = CblasTrans, rows = K, cols = m; /* X stored K x m */
    else op = CblasNoTrans, rows = m, cols = K;  /* X stored m x K */
  }
  if (rows > INT_MAX || cols > INT_MAX || ld > INT_MAX || inc_v > INT_MAX || inc_c > INT_MAX) {
    cc_set_error("matmul: a matrix-vector product too large for BLAS's int sizes");
    return -1;
  }
  if (dt == CC_FLOAT32)
    cblas_sgemv(CblasRowMajor, op, (int)rows, (int)cols, (float)alpha, (const float *)mat, (int)ld,
                (const float *)vec, (int)inc_v, (float)beta, (float *)C, (int)inc_c);
  else
    cblas_dgemv(CblasRowMajor, op, (int)rows, (int)cols, alpha, (const double *)mat, (int)ld, (const double *)vec,
                (int)inc_v, beta, (double *)C, (int)inc_c);
  return 0;
}

static int gemm_cpu(const cc_call *c) {
  cc_tensor *a = c->in[0], *b = c->in[1], *out = c->out[0];
  bool ta = c->i[0] != 0, tb = c->i[1] != 0;
  double alpha = c->f[0], beta = c->f[1];
  int nd = out->ndim;
  int64_t M, N, K, nbatch;
  if (cc_gemm_sizes(c, "BLAS", &M, &N, &K, &nbatch)) return -1;
  if (M == 0 || N == 0 || nbatch == 0) return 0;

  cc_tensor *ac = NULL, *bc = NULL, *oc = NULL;
  int rc = -1;
  bool dummy;
  int64_t ld;
  /* operands BLAS cannot read are compacted; an unreadable output goes through a temporary */
  if (!blas_layout(a->shape[nd - 2], a->shape[nd - 1], a->stride[nd - 2], a->stride[nd - 1], &dummy, &ld)) {
    if (!(ac = compact_copy(a))) goto done;
    a = ac;
  }
  if (!blas_layout(b->shape[nd - 2], b->shape[nd - 1], b->stride[nd - 2], b->stride[nd - 1], &dummy, &ld)) {
    if (!(bc = compact_copy(b))) goto done;
    b = bc;
  }
  cc_tensor *o = out;
  if (!blas_layout(M, N, out->stride[nd - 2], out->stride[nd - 1], &dummy, &ld)) {
    if (!(oc = cc_empty(nd, out->shape, out->dtype, out->storage->device))) goto done;
    if (beta != 0 && cc_run(CC_OP_COPY, oc, 1, &out, NULL, 0, NULL, 0)) goto done;
    o = oc;
  }

  gemm_operand A, B, C;
  A.base = cc_data_ptr(a);
  A.rs = ta ? a->stride[nd - 1] : a->stride[nd - 2];
  A.cs = ta ? a->stride[nd - 2] : a->stride[nd - 1];
  B.base = cc_data_ptr(b);
  B.rs = tb ? b->stride[nd - 1] : b->stride[nd - 2];
  B.cs = tb ? b->stride[nd - 2] : b->stride[nd - 1];
  C.base = cc_data_ptr(o);
  C.rs = o->stride[nd - 2];
  C.cs = o->stride[nd - 1];
  for (int d = 0; d < nd - 2; d++) {
    A.bstride[d] = a->stride[d];
    B.bstride[d] = b->stride[d];
    C.bstride[d] = o->stride[d];
  }

  if (K == 0 || (nbatch >= 2 * cc_get_num_threads() && M * N * K <= 32 * 32 * 32)) {
    if (out->dtype == CC_FLOAT32)
      gemm_small_float(nbatch, nd - 2, out->shape, &A, &B, &C, M, N, K, (float)alpha, (float)beta);
    else
      gemm_small_double(nbatch, nd - 2, out->shape, &A, &B, &C, M, N, K, alpha, beta);
  } else {
    /* a column-major output: compute C^T = op(B)^T op(A)^T instead */
    bool ctrans = false, xt = false, yt = false;
    int64_t ldc = 1, lda = 1, ldb = 1;
    blas_layout(M, N, C.rs, C.cs, &ctrans, &ldc);
    int64_t m = M, n = N;
    gemm_operand *X = &A, *Y = &B;
    if (ctrans) {
      m = N;
      n = M;
      X = &B;
      Y = &A;
      int64_t t;
      t = A.rs, A.rs = A.cs, A.cs = t;
      t = B.rs, B.rs = B.cs, B.cs = t;
    }
    blas_layout(m, K, X->rs, X->cs, &xt, &lda);
    blas_layout(K, n, Y->rs, Y->cs, &yt, &ldb);
    enum CBLAS_TRANSPOSE tX = xt ? CblasTrans : CblasNoTrans, tY = yt ? CblasTrans : CblasNoTrans;
    /* a row or a column of output: matrix-vector products (OpenBLAS 0.3.21's gemm streams a 1 x K by
       K x N product's matrix at a third of gemv's speed: a ranking query against 10,000 keys) */
    bool gemv = m == 1 || n == 1;
    for (int64_t bi = 0; bi < nbatch; bi++) {
      int64_t ox = 0, oy = 0, oo = 0, rem = bi;
      for (int d = nd - 3; d >= 0; d--) {
        int64_t i = rem % out->shape[d];
        rem /= out->shape[d];
        ox += i * X->bstride[d];
        oy += i * Y->bstride[d];
        oo += i * C.bstride[d];
      }
      if (gemv) {
        if (gemv_run(out->dtype, m, n, K, alpha, beta, (const char *)X->base + ox * cc_dtype_size(out->dtype), xt,
                     lda, (const char *)Y->base + oy * cc_dtype_size(out->dtype), yt, ldb,
                     (char *)C.base + oo * cc_dtype_size(out->dtype), ldc))
          goto done;
      } else if (out->dtype == CC_FLOAT32)
        cblas_sgemm(CblasRowMajor, tX, tY, (int)m, (int)n, (int)K, (float)alpha, (const float *)X->base + ox,
                    (int)lda, (const float *)Y->base + oy, (int)ldb, (float)beta, (float *)C.base + oo, (int)ldc);
      else
        cblas_dgemm(CblasRowMajor, tX, tY, (int)m, (int)n, (int)K, alpha, (const double *)X->base + ox, (int)lda,
                    (const double *)Y->base + oy, (int)ldb, beta, (double *)C.base + oo, (int)ldc);
    }
  }
  rc = 0;
  if (oc) rc = cc_run(CC_OP_COPY, out, 1, &oc, NULL, 0, NULL, 0);
done:
  cc_release(ac);
  cc_release(bc);
  cc_release(oc);
  return rc;
}

void cc_cpu_register_linalg(void) { cc_register_kernel(CC_OP_GEMM, CC_CPU, gemm_cpu); }
