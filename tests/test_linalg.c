/* test_linalg.c — C unit tests of matmul, bmm, linear and the GEMM kernel: result shapes of every
 * matmul case, values against a naive product (float64 and float32), strided/transposed/broadcast
 * operands, float64 central finite-difference gradient checks, and errors instead of aborts. */
#include "testing.h"

#include <math.h>
#include <stdio.h>

/* naive (..., m, k) @ (..., k, n) with identical batch shapes, row-major element order */
static double max_diff_naive(cc_tensor *a, cc_tensor *b, cc_tensor *c) {
  int nd = c->ndim;
  int64_t M = c->shape[nd - 2], N = c->shape[nd - 1], K = a->shape[nd - 1], B = cc_numel(c) / (M * N);
  double worst = 0;
  for (int64_t bi = 0; bi < B; bi++)
    for (int64_t i = 0; i < M; i++)
      for (int64_t j = 0; j < N; j++) {
        double s = 0;
        for (int64_t p = 0; p < K; p++)
          s += cc_get_flat(a, (bi * M + i) * K + p) * cc_get_flat(b, (bi * K + p) * N + j);
        double d = fabs(s - cc_get_flat(c, (bi * M + i) * N + j));
        if (d > worst) worst = d;
      }
  return worst;
}

static bool has_shape(const cc_tensor *t, int ndim, const int64_t *shape) {
  if (!t || t->ndim != ndim) return false;
  for (int d = 0; d < ndim; d++)
    if (t->shape[d] != shape[d]) return false;
  return true;
}

/* ---- tests ---- */
static void test_matmul_shapes(void) {
  struct {
    int na, nb, no;
    int64_t sa[4], sb[4], so[4];
  } cases[] = {
      {1, 1, 0, {3}, {3}, {0}},
      {1, 2, 1, {3}, {3, 4}, {4}},
      {2, 1, 1, {2, 3}, {3}, {2}},
      {2, 2, 2, {2, 3}, {3, 4}, {2, 4}},
      {3, 1, 2, {2, 5, 3}, {3}, {2, 5}},
      {3, 2, 3, {2, 5, 3}, {3, 4}, {2, 5, 4}},
      {1, 3, 2, {3}, {2, 3, 4}, {2, 4}},
      {2, 3, 3, {5, 3}, {2, 3, 4}, {2, 5, 4}},
      {4, 3, 4, {2, 1, 5, 3}, {6, 3, 4}, {2, 6, 5, 4}},
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    cc_tensor *a = filled(cases[c].na, cases[c].sa, CC_FLOAT64, 1), *b = filled(cases[c].nb, cases[c].sb, CC_FLOAT64, 2);
    cc_tensor *o = cc_matmul(a, b);
    if (!has_shape(o, cases[c].no, cases[c].so)) fprintf(stderr, "matmul shape case %zu\n", c);
    EXPECT(has_shape(o, cases[c].no, cases[c].so));
    cc_release(a);
    cc_release(b);
    cc_release(o);
  }
  /* dot and mv values */
  cc_tensor *a = filled(SHAPE(3), CC_FLOAT64, 1), *b = filled(SHAPE(3), CC_FLOAT64, 2);
  cc_tensor *d = cc_matmul(a, b);
  double want = 0;
  for (int i = 0; i < 3; i++) want += cc_get_flat(a, i) * cc_get_flat(b, i);
  EXPECT(d && fabs(cc_get_flat(d, 0) - want) < 1e-12);
  cc_release(a);
  cc_release(b);
  cc_release(d);
}

static void test_matmul_values(void) {
  for (int dt = CC_FLOAT32; dt <= CC_FLOAT64; dt++) {
    double tol = dt == CC_FLOAT32 ? 1e-4 : 1e-12;
    /* BLAS path (big enough) and the small-matrix path (many tiny batches) */
    int64_t sizes[2][4] = {{3, 40, 50, 30}, {16, 3, 4, 5}};
    for (int s = 0; s < 2; s++) {
      int64_t B = sizes[s][0], M = sizes[s][1], K = sizes[s][2], N = sizes[s][3];
      cc_tensor *a = filled(3, (int64_t[]){B, M, K}, (cc_dtype)dt, 1);
      cc_tensor *b = filled(3, (int64_t[]){B, K, N}, (cc_dtype)dt, 2);
      cc_tensor *c = cc_bmm(a, b);
      EXPECT(c && max_diff_naive(a, b, c) < tol);
      /* transposed views: a^T^T, computed from a (B,K,M) buffer */
      cc_tensor *at = filled(3, (int64_t[]){B, K, M}, (cc_dtype)dt, 3);
      cc_tensor *atv = cc_transpose(at, 1, 2), *atc = cc_contiguous(atv);
      cc_tensor *bt = filled(3, (int64_t[]){B, N, K}, (cc_dtype)dt, 4);
      cc_tensor *btv = cc_transpose(bt, 1, 2), *btc = cc_contiguous(btv);
      cc_tensor *c2 = cc_matmul(atv, btv);
      EXPECT(c2 && max_diff_naive(atc, btc, c2) < tol);
      cc_tensor *tmp[] = {a, b, c, at, atv, atc, bt, btv, btc, c2};
      cc_release_n(10, tmp);
    }
    /* a matrix with no unit stride (goes through a copy) */
    cc_tensor *big = filled(SHAPE(4, 5, 3), (cc_dtype)dt, 5);
    cc_tensor *sel = cc_select(big, 2, 1); /* (4,5), strides (15,3) */
    cc_tensor *selc = cc_contiguous(sel);
    cc_tensor *w = filled(SHAPE(5, 2), (cc_dtype)dt, 6);
    cc_tensor *r = cc_matmul(sel, w);
    EXPECT(r && sel && sel->stride[1] == 3 && max_diff_naive(selc, w, r) < tol);
    cc_tensor *tmp[] = {big, sel, selc, w, r};
    cc_release_n(5, tmp);
  }
  /* a column-major output and beta = 0 over NaN garbage: the kernel never reads it */
  cc_tensor *a = filled(SHAPE(4, 3), CC_FLOAT64, 1), *b = filled(SHAPE(3, 5), CC_FLOAT64, 2);
  cc_tensor *ot = cc_full(SHAPE(5, 4), NAN, CC_FLOAT64, CC_CPU);
  cc_tensor *o = cc_transpose(ot, 0, 1);
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_GEMM;
  call.n_in = 2;
  call.in[0] = a;
  call.in[1] = b;
  call.n_out = 1;
  call.out[0] = o;
  call.f[0] = 1.0;
  EXPECT(cc_dispatch(&call) == 0);
  cc_tensor *oc = cc_contiguous(o);
  EXPECT(max_diff_naive(a, b, oc) < 1e-12);
  /* beta = 1 accumulates, alpha scales, transA reads a^T */
  cc_tensor *a2 = cc_transpose(a, 0, 1), *a2c = cc_contiguous(a2); /* (3,4) whose op^T is a */
  call.in[0] = a2c;
  call.i[0] = 1;
  call.f[0] = 2.0;
  call.f[1] = 1.0;
  EXPECT(cc_dispatch(&call) == 0);
  cc_tensor *oc2 = cc_contiguous(o);
  bool ok = true;
  for (int i = 0; i < 20; i++) ok = ok && fabs(cc_get_flat(oc2, i) - 3 * cc_get_flat(oc, i)) < 1e-12;
  EXPECT(ok);
  cc_tensor *tmp[] = {a, b, ot, o, oc, a2, a2c, oc2};
  cc_release_n(8, tmp);
}

static cc_tensor *f_matmul(cc_tensor **in, const void *ctx) {
  (void)ctx;
  return cc_matmul(in[0], in[1]);
}
static cc_tensor *f_matmul_tt(cc_tensor **in, const void *ctx) { /* a^T @ b^T from (k,m) and (n,k) leaves */
  (void)ctx;
  cc_tensor *at = cc_transpose(in[0], 0, 1), *bt = cc_transpose(in[1], -1, -2);
  cc_tensor *o = cc_matmul(at, bt);
  cc_release(at);
  cc_release(bt);
  return o;
}
static cc_tensor *f_bmm(cc_tensor **in, const void *ctx) {
  (void)ctx;
  return cc_bmm(in[0], in[1]);
}
static cc_tensor *f_linear(cc_tensor **in, const void *ctx) {
  (void)ctx;
  return cc_linear(in[0], in[1], in[2]);
}

static void test_gradients(void) {
  int64_t live0 = cc_live_tensors();
  struct {
    int na, nb;
    int64_t sa[4], sb[4];
  } cases[] = {
      {2, 2, {3, 4}, {4, 2}},          /* mm */
      {1, 1, {4}, {4}},                /* dot */
      {1, 2, {4}, {4, 3}},             /* vm */
      {2, 1, {3, 4}, {4}},             /* mv */
      {3, 2, {2, 3, 4}, {4, 2}},       /* folded batch */
      {4, 3, {2, 1, 3, 4}, {3, 4, 2}}, /* broadcast batch dims on both sides */
      {1, 3, {4}, {2, 4, 3}},          /* vector @ batch */
      {3, 3, {8, 2, 3}, {8, 3, 2}},    /* small-matrix path */
  };
  for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
    cc_tensor *in[2] = {leaf(cases[c].na, cases[c].sa, 1), leaf(cases[c].nb, cases[c].sb, 2)};
    double err = gradcheck(f_matmul, 2, in, NULL);
    if (!(err < 1e-6)) fprintf(stderr, "matmul case %zu: gradient error %g\n", c, err);
    EXPECT(err < 1e-6);
    cc_release_n(2, in);
  }
  { /* transposed-view inputs */
    cc_tensor *in[2] = {leaf(SHAPE(4, 3), 1), leaf(SHAPE(2, 5, 4), 2)};
    EXPECT(gradcheck(f_matmul_tt, 2, in, NULL) < 1e-6);
    cc_release_n(2, in);
  }
  { /* only one side requires grad */
    cc_tensor *in[2] = {leaf(SHAPE(3, 4), 1), filled(SHAPE(4, 2), CC_FLOAT64, 2)};
    EXPECT(gradcheck(f_matmul, 2, in, NULL) < 1e-6 && in[1]->grad == NULL);
    cc_release_n(2, in);
  }
  {
    cc_tensor *in[2] = {leaf(SHAPE(3, 2, 4), 1), leaf(SHAPE(3, 4, 5), 2)};
    EXPECT(gradcheck(f_bmm, 2, in, NULL) < 1e-6);
    cc_release_n(2, in);
  }
  { /* linear: 3-d input with bias, 2-d without, 1-d */
    cc_tensor *in[3] = {leaf(SHAPE(2, 3, 4), 1), leaf(SHAPE(5, 4), 2), leaf(SHAPE(5), 3)};
    EXPECT(gradcheck(f_linear, 3, in, NULL) < 1e-6);
    cc_tensor *y = cc_linear(in[0], in[1], in[2]);
    EXPECT(has_shape(y, SHAPE(2, 3, 5)) && strcmp(cc_grad_fn_name(y), "LinearBackward") == 0);
    /* value: y[1,2,3] = x[1,2,:] . w[3,:] + b[3] */
    double want = cc_get_flat(in[2], 3);
    for (int i = 0; i < 4; i++) want += cc_get_flat(in[0], (1 * 3 + 2) * 4 + i) * cc_get_flat(in[1], 3 * 4 + i);
    EXPECT(y && fabs(cc_get_flat(y, (1 * 3 + 2) * 5 + 3) - want) < 1e-12);
    cc_release(y);
    cc_release_n(3, in);
    cc_tensor *in2[3] = {leaf(SHAPE(3, 4), 1), leaf(SHAPE(2, 4), 2), NULL};
    EXPECT(gradcheck(f_linear, 3, in2, NULL) < 1e-6);
    cc_release_n(3, in2);
    cc_tensor *in3[3] = {leaf(SHAPE(4), 1), leaf(SHAPE(2, 4), 2), leaf(SHAPE(2), 3)};
    EXPECT(gradcheck(f_linear, 3, in3, NULL) < 1e-6);
    cc_release_n(3, in3);
    /* a transposed (non-viewable) input */
    cc_tensor *base = leaf(SHAPE(4, 3, 2), 4);
    cc_tensor *xt = cc_transpose(base, 0, 2); /* (2,3,4) */
    cc_set_grad_enabled(false);
    cc_tensor *xt_leaf = cc_contiguous(xt);
    cc_set_grad_enabled(true);
    cc_tensor *w = leaf(SHAPE(3, 4), 5);
    cc_tensor *y1 = cc_linear(xt, w, NULL), *y2 = cc_linear(xt_leaf, w, NULL);
    bool same = y1 && y2;
    for (int64_t i = 0; same && i < cc_numel(y1); i++) same = fabs(cc_get_flat(y1, i) - cc_get_flat(y2, i)) < 1e-12;
    EXPECT(same);
    cc_tensor *tmp[] = {base, xt, xt_leaf, w, y1, y2};
    cc_release_n(6, tmp);
  }
  EXPECT(cc_live_tensors() == live0);
}

static void test_errors(void) {
  int64_t live0 = cc_live_tensors();
  cc_tensor *a = filled(SHAPE(2, 3), CC_FLOAT32, 1), *b = filled(SHAPE(4, 5), CC_FLOAT32, 2);
  EXPECT(cc_matmul(a, b) == NULL &&
         strcmp(cc_last_error(), "matmul: shape mismatch, {2,3} @ {4,5}: inner sizes 3 and 4 differ") == 0);
  cc_tensor *d = filled(SHAPE(3, 5), CC_FLOAT64, 3);
  EXPECT(cc_matmul(a, d) == NULL && strstr(cc_last_error(), "dtype mismatch"));
  cc_tensor *s = cc_scalar(2.0, CC_FLOAT32, CC_CPU);
  EXPECT(cc_matmul(s, a) == NULL && strstr(cc_last_error(), "at least 1 dimension"));
  cc_tensor *i = cc_zeros(SHAPE(3, 3), CC_INT64, CC_CPU);
  EXPECT(cc_matmul(i, i) == NULL && strstr(cc_last_error(), "floating"));
  cc_tensor *x3 = filled(SHAPE(2, 2, 3), CC_FLOAT32, 1), *y3 = filled(SHAPE(3, 3, 4), CC_FLOAT32, 1);
  EXPECT(cc_bmm(x3, y3) == NULL && strstr(cc_last_error(), "batch sizes differ"));
  EXPECT(cc_bmm(a, a) == NULL && strstr(cc_last_error(), "3-d"));
  cc_tensor *z3 = filled(SHAPE(3, 3, 3), CC_FLOAT32, 1);
  EXPECT(cc_matmul(x3, z3) == NULL && strstr(cc_last_error(), "cannot be broadcast"));
  EXPECT(cc_linear(a, b, NULL) == NULL && strstr(cc_last_error(), "in_features 3 and 5 differ"));
  cc_tensor *w = filled(SHAPE(4, 3), CC_FLOAT32, 1), *bias = filled(SHAPE(3), CC_FLOAT32, 1);
  EXPECT(cc_linear(a, w, bias) == NULL && strstr(cc_last_error(), "bias"));
  cc_tensor *tmp[] = {a, b, d, s, i, x3, y3, z3, w, bias};
  cc_release_n(10, tmp);
  EXPECT(cc_live_tensors() == live0);
}

int main(void) {
  cc_init();
  test_matmul_shapes();
  test_matmul_values();
  test_gradients();
  test_errors();
  return test_summary();
}
