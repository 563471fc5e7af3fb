/* test_norm.c — C unit tests of batch_norm, layer_norm, softmax/log_softmax, cross_entropy and the
 * fused Adam/AdamW step: float64 central finite-difference gradient checks, values computed with
 * torch 1.13 (the Python that produced them is quoted next to them), running-stat updates, errors
 * instead of aborts. */
#include "testing.h"
#include "scalar.h"

#include <math.h>
#include <stdio.h>

static bool has_shape(const cc_tensor *t, int ndim, const int64_t *shape) {
  if (!t || t->ndim != ndim) return false;
  for (int d = 0; d < ndim; d++)
    if (t->shape[d] != shape[d]) return false;
  return true;
}

static cc_tensor *from_values(int ndim, const int64_t *shape, const double *v, cc_dtype dt) {
  cc_tensor *t = cc_empty(ndim, shape, dt, CC_CPU);
  for (int64_t i = 0; i < cc_numel(t); i++) {
    if (dt == CC_FLOAT32) ((float *)cc_data_ptr(t))[i] = (float)v[i];
    else ((double *)cc_data_ptr(t))[i] = v[i];
  }
  return t;
}

static bool close_to(cc_tensor *t, const double *want, int n, double tol) {
  if (!t) return false;
  for (int i = 0; i < n; i++)
    if (!(fabs(cc_get_flat(t, i) - want[i]) <= tol * fmax(1.0, fabs(want[i])))) {
      fprintf(stderr, "  element %d: %.17g, expected %.17g\n", i, cc_get_flat(t, i), want[i]);
      return false;
    }
  return true;
}

/* ---- batch norm ---- */
typedef struct {
  bool training;
  cc_tensor *rm, *rv;
} bn_ctx;

static cc_tensor *f_batch_norm(cc_tensor **in, const void *vctx) {
  const bn_ctx *ctx = vctx;
  return cc_batch_norm(in[0], ctx->rm, ctx->rv, in[1], in[2], ctx->training, 0.1, 1e-5);
}

/* x[i] = ((7 i) mod 11) / 4 - 1, shape (4,3,2) */
static cc_tensor *bn_input(cc_dtype dt) {
  double v[24];
  for (int i = 0; i < 24; i++) v[i] = ((i * 7) % 11) * 0.25 - 1;
  return from_values(SHAPE(4, 3, 2), v, dt);
}

static void test_batch_norm(void) {
  int64_t live0 = cc_live_tensors();
  /* gradients: training (with and without running stats, spatial and (N,C) inputs), eval */
  int64_t shapes[2][4] = {{4, 3, 2, 2}, {5, 3}};
  int ndims[2] = {4, 2};
  for (int s = 0; s < 2; s++)
    for (int mode = 0; mode < 3; mode++) {
      bn_ctx ctx = {mode != 2, NULL, NULL};
      if (mode >= 1) {
        ctx.rm = filled(SHAPE(3), CC_FLOAT64, 7);
        ctx.rv = cc_full(SHAPE(3), 0.5, CC_FLOAT64, CC_CPU);
      }
      cc_tensor *in[3] = {leaf(ndims[s], shapes[s], 1), leaf(SHAPE(3), 2), leaf(SHAPE(3), 3)};
      double err = gradcheck(f_batch_norm, 3, in, &ctx);
      if (!(err < 1e-6)) fprintf(stderr, "batch_norm shape %d mode %d: gradient error %g\n", s, mode, err);
      EXPECT(err < 1e-6);
      cc_release_n(3, in);
      cc_release(ctx.rm);
      cc_release(ctx.rv);
    }
  { /* no affine parameters */
    bn_ctx ctx = {true, NULL, NULL};
    cc_tensor *in[3] = {leaf(SHAPE(3, 2, 5), 1), NULL, NULL};
    EXPECT(gradcheck(f_batch_norm, 3, in, &ctx) < 1e-6);
    cc_release(in[0]);
  }
  /* running statistics and outputs against torch:
     x = torch.tensor([((i*7) % 11)*0.25 - 1 for i in range(24)], dtype=torch.float64).reshape(4,3,2)
     rm = torch.zeros(3, dtype=torch.float64); rv = torch.ones(3, dtype=torch.float64)
     w = torch.tensor([1.5, -0.5, 2.0], dtype=torch.float64); b = torch.tensor([0.1, 0.2, -0.3], dtype=torch.float64)
     F.batch_norm(x, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
     y = F.batch_norm(x*0.5+1, rm, rv, w, b, training=True, momentum=0.1, eps=1e-5)
     rm, rv, y.flatten()[:4]; then F.batch_norm(x, rm, rv, w, b, training=False, ...).flatten()[:4] */
  static const double want_rm[3] = {0.12187500000000001, 0.17875000000000002, 0.09125};
  static const double want_rv[3] = {0.8796930803571429, 0.8895758928571429, 0.8895758928571429};
  static const double want_y[4] = {-2.281643143308222, 1.3230059384555732, 0.722075318744783, -0.4023945985516726};
  static const double want_eval[4] = {-1.6941868651129615, 1.1045447350632458, 0.42728992942206384,
                                      -0.5004240682190129};
  for (int dt = CC_FLOAT32; dt <= CC_FLOAT64; dt++) {
    double tol = dt == CC_FLOAT32 ? 1e-5 : 1e-12;
    cc_tensor *x = bn_input((cc_dtype)dt);
    cc_tensor *rm = cc_zeros(SHAPE(3), (cc_dtype)dt, CC_CPU), *rv = cc_full(SHAPE(3), 1.0, (cc_dtype)dt, CC_CPU);
    cc_tensor *w = from_values(SHAPE(3), (double[]){1.5, -0.5, 2.0}, (cc_dtype)dt);
    cc_tensor *b = from_values(SHAPE(3), (double[]){0.1, 0.2, -0.3}, (cc_dtype)dt);
    cc_tensor *y1 = cc_batch_norm(x, rm, rv, w, b, true, 0.1, 1e-5);
    cc_tensor *xs = cc_mul_scalar(x, 0.5), *x2 = cc_add_scalar(xs, 1.0);
    cc_tensor *y2 = cc_batch_norm(x2, rm, rv, w, b, true, 0.1, 1e-5);
    EXPECT(close_to(rm, want_rm, 3, tol) && close_to(rv, want_rv, 3, tol));
    EXPECT(close_to(y2, want_y, 4, tol));
    cc_tensor *ye = cc_batch_norm(x, rm, rv, w, b, false, 0.1, 1e-5);
    EXPECT(close_to(ye, want_eval, 4, tol));
    EXPECT(close_to(rm, want_rm, 3, tol)); /* eval leaves them alone */
    cc_tensor *tmp[] = {x, rm, rv, w, b, y1, xs, x2, y2, ye};
    cc_release_n(10, tmp);
  }
  /* errors */
  cc_tensor *x = bn_input(CC_FLOAT64), *rm4 = cc_zeros(SHAPE(4), CC_FLOAT64, CC_CPU);
  cc_tensor *one = filled(SHAPE(1, 3), CC_FLOAT64, 1);
  EXPECT(cc_batch_norm(x, rm4, NULL, NULL, NULL, true, 0.1, 1e-5) == NULL && strstr(cc_last_error(), "running_mean"));
  EXPECT(cc_batch_norm(one, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) == NULL &&
         strstr(cc_last_error(), "batch_norm: expected more than 1 value per channel when training"));
  EXPECT(cc_batch_norm(x, NULL, NULL, NULL, NULL, false, 0.1, 1e-5) == NULL && strstr(cc_last_error(), "evaluation"));
  EXPECT(cc_batch_norm(x, NULL, NULL, rm4, NULL, true, 0.1, 1e-5) == NULL && strstr(cc_last_error(), "weight"));
  cc_tensor *flat = filled(SHAPE(3), CC_FLOAT64, 1);
  EXPECT(cc_batch_norm(flat, NULL, NULL, NULL, NULL, true, 0.1, 1e-5) == NULL);
  cc_tensor *tmp[] = {x, rm4, one, flat};
  cc_release_n(4, tmp);
  EXPECT(cc_live_tensors() == live0);
}

/* ---- layer norm ---- */
static cc_tensor *f_layer_norm(cc_tensor **in, const void *ctx) {
  return cc_layer_norm(in[0], *(const int *)ctx, in[1], in[2], 1e-5);
}

static void test_layer_norm(void) {
  int64_t live0 = cc_live_tensors();
  int one = 1, two = 2;
  cc_tensor *in[3] = {leaf(SHAPE(2, 3, 4), 1), leaf(SHAPE(4), 2), leaf(SHAPE(4), 3)};
  EXPECT(gradcheck(f_layer_norm, 3, in, &one) < 1e-6);
  cc_release_n(3, in);
  cc_tensor *in2[3] = {leaf(SHAPE(2, 3, 4), 1), leaf(SHAPE(3, 4), 2), NULL};
  EXPECT(gradcheck(f_layer_norm, 3, in2, &two) < 1e-6);
  cc_release_n(3, in2);
  cc_tensor *in3[3] = {leaf(SHAPE(5, 6), 1), NULL, NULL};
  EXPECT(gradcheck(f_layer_norm, 3, in3, &one) < 1e-6);
  cc_release_n(3, in3);
  /* xl = torch.tensor([math.cos(0.7*i)*1.5+0.01*i for i in range(12)], dtype=torch.float64).reshape(3,4)
     wl = torch.tensor([1.0,2.0,-1.0,0.5]); bl = torch.tensor([0.0,0.1,0.2,0.3]) (float64)
     F.layer_norm(xl, (4,), wl, bl, 1e-5).flatten()[:4] */
  static const double want[4] = {1.0995087405501498, 1.5046321511808085, 0.5201832953364267, -0.4408207604020638};
  double v[12];
  for (int i = 0; i < 12; i++) v[i] = cos(0.7 * i) * 1.5 + 0.01 * i;
  for (int dt = CC_FLOAT32; dt <= CC_FLOAT64; dt++) {
    cc_tensor *x = from_values(SHAPE(3, 4), v, (cc_dtype)dt);
    cc_tensor *w = from_values(SHAPE(4), (double[]){1.0, 2.0, -1.0, 0.5}, (cc_dtype)dt);
    cc_tensor *b = from_values(SHAPE(4), (double[]){0.0, 0.1, 0.2, 0.3}, (cc_dtype)dt);
    cc_tensor *y = cc_layer_norm(x, 1, w, b, 1e-5);
    EXPECT(close_to(y, want, 4, dt == CC_FLOAT32 ? 1e-5 : 1e-12));
    cc_tensor *w3 = cc_zeros(SHAPE(3), (cc_dtype)dt, CC_CPU);
    EXPECT(cc_layer_norm(x, 1, w3, NULL, 1e-5) == NULL && strstr(cc_last_error(), "layer_norm: weight"));
    EXPECT(cc_layer_norm(x, 3, NULL, NULL, 1e-5) == NULL && strstr(cc_last_error(), "layer_norm"));
    cc_tensor *tmp[] = {x, w, b, y, w3};
    cc_release_n(5, tmp);
  }
  EXPECT(cc_live_tensors() == live0);
}

/* ---- softmax, log_softmax, cross_entropy ---- */
typedef struct {
  int dim;
  bool log;
} sm_ctx;

static cc_tensor *f_softmax(cc_tensor **in, const void *vctx) {
  const sm_ctx *ctx = vctx;
  return ctx->log ? cc_log_softmax(in[0], ctx->dim) : cc_softmax(in[0], ctx->dim);
}

static cc_tensor *f_cross_entropy(cc_tensor **in, const void *ctx) {
  cc_tensor *loss = cc_cross_entropy(in[0], (cc_tensor *)ctx);
  return loss;
}

static void test_softmax(void) {
  int64_t live0 = cc_live_tensors();
  for (int lg = 0; lg < 2; lg++)
    for (int dim = -1; dim <= 2; dim++) {
      sm_ctx ctx = {dim, lg};
      cc_tensor *x = leaf(SHAPE(3, 4, 5), 1);
      double err = gradcheck(f_softmax, 1, &x, &ctx);
      if (!(err < 1e-6)) fprintf(stderr, "softmax log %d dim %d: gradient error %g\n", lg, dim, err);
      EXPECT(err < 1e-6);
      cc_release(x);
    }
  { /* a transposed input */
    cc_tensor *base = leaf(SHAPE(4, 3), 2);
    cc_tensor *t = cc_transpose(base, 0, 1);
    sm_ctx ctx = {1, true};
    cc_tensor *ys = cc_log_softmax(t, 1);
    cc_tensor *tc = cc_contiguous(t), *yc = cc_log_softmax(tc, 1);
    bool same = ys && yc;
    for (int i = 0; same && i < 12; i++) same = fabs(cc_get_flat(ys, i) - cc_get_flat(yc, i)) < 1e-14;
    EXPECT(same && has_shape(ys, SHAPE(3, 4)));
    EXPECT(gradcheck(f_softmax, 1, &base, &ctx) < 1e-6);
    cc_tensor *tmp[] = {base, t, ys, tc, yc};
    cc_release_n(5, tmp);
  }
  { /* the vectorisable float exp: within 2 ulp; masked (-inf) entries get exactly 0; NaN spreads */
    double worst = 0;
    for (double v = -87.3; v < 88.3; v += 1e-3) {
      float f = (float)v;
      double e = fabs((double)cc_expf_fast(f) - exp((double)f)) / exp((double)f);
      worst = e > worst ? e : worst;
    }
    EXPECT(worst < 2 * 5.97e-8 && cc_expf_fast(-INFINITY) == 0.0f && cc_expf_fast(NAN) != cc_expf_fast(NAN));
    cc_tensor *x = from_values(SHAPE(2, 3), (double[]){0.0, -INFINITY, 1.0, 0.5, NAN, 0.0}, CC_FLOAT32);
    cc_tensor *y = cc_softmax(x, 1);
    EXPECT(y && cc_get_flat(y, 1) == 0.0 && fabs(cc_get_flat(y, 0) + cc_get_flat(y, 2) - 1) < 1e-7);
    EXPECT(y && isnan(cc_get_flat(y, 3)) && isnan(cc_get_flat(y, 5)));
    cc_release(x);
    cc_release(y);
  }
  /* lg = torch.tensor([math.sin(0.3*i+0.2)*2 for i in range(15)], dtype=torch.float64).reshape(3,5)
     torch.softmax(lg, 0).flatten()[:3]; F.cross_entropy(lg, torch.tensor([4,0,2])) */
  static const double want_sm[3] = {0.15426919922520455, 0.28148280447400387, 0.469837673329204};
  static const double want_ce = 1.3808821399226063;
  double v[15];
  for (int i = 0; i < 15; i++) v[i] = sin(0.3 * i + 0.2) * 2;
  cc_tensor *targets = cc_empty(SHAPE(3), CC_INT64, CC_CPU);
  int64_t *tp = cc_data_ptr(targets);
  tp[0] = 4;
  tp[1] = 0;
  tp[2] = 2;
  for (int dt = CC_FLOAT32; dt <= CC_FLOAT64; dt++) {
    double tol = dt == CC_FLOAT32 ? 1e-6 : 1e-14;
    cc_tensor *l = from_values(SHAPE(3, 5), v, (cc_dtype)dt);
    cc_tensor *sm = cc_softmax(l, 0), *ce = cc_cross_entropy(l, targets);
    EXPECT(close_to(sm, want_sm, 3, tol) && close_to(ce, &want_ce, 1, tol) && ce->ndim == 0);
    cc_tensor *tmp[] = {l, sm, ce};
    cc_release_n(3, tmp);
  }
  cc_tensor *l = from_values(SHAPE(3, 5), v, CC_FLOAT64);
  cc_set_requires_grad(l, true);
  EXPECT(gradcheck(f_cross_entropy, 1, &l, targets) < 1e-6);
  /* errors */
  tp[1] = 7;
  EXPECT(cc_cross_entropy(l, targets) == NULL &&
         strcmp(cc_last_error(), "cross_entropy: target 7 is out of bounds for 5 classes") == 0);
  tp[1] = -1;
  EXPECT(cc_cross_entropy(l, targets) == NULL && strstr(cc_last_error(), "out of bounds"));
  cc_tensor *ft = cc_zeros(SHAPE(3), CC_FLOAT64, CC_CPU), *t4 = cc_zeros(SHAPE(4), CC_INT64, CC_CPU);
  EXPECT(cc_cross_entropy(l, ft) == NULL && strstr(cc_last_error(), "int64"));
  EXPECT(cc_cross_entropy(l, t4) == NULL && strstr(cc_last_error(), "expected logits (N,C) and targets (N)"));
  EXPECT(cc_softmax(t4, 0) == NULL && cc_softmax(l, 2) == NULL && strstr(cc_last_error(), "out of range"));
  cc_tensor *tmp[] = {targets, l, ft, t4};
  cc_release_n(4, tmp);
  EXPECT(cc_live_tensors() == live0);
}

/* ---- Adam / AdamW ---- */
static void test_adam(void) {
  int64_t live0 = cc_live_tensors();
  /* p = torch.tensor([0.5, -1.0, 2.0, 0.0], dtype=torch.float64, requires_grad=True)
     opt = torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.999), eps=1e-8, weight_decay=0.1)  (or AdamW)
     for t in range(1, 4):
         p.grad = torch.tensor([0.1*t, -0.2, 0.3*(-1)**t, 1.0], dtype=torch.float64); opt.step()
     p, opt.state[p]['exp_avg'], opt.state[p]['exp_avg_sq'] */
  static const double want[2][3][4] = {
      {{0.4703945842442005, -0.9700032449476694, 2.0006942917961514, -0.02999903919852514},
       {0.06936168702315508, -0.0810100088520796, 0.02703013376059765, 0.27071000262328365},
       {0.00020550976345716908, 0.0002679357417604359, 0.00027064990243265137, 0.002991008051362741}},
      {{0.4692993108721331, -0.9670329904985006, 2.00681815167858, -0.02997000970029983},
       {0.05609999999999999, -0.05419999999999999, -0.02729999999999999, 0.2709999999999999},
       {0.00013994001000000017, 0.00011988004000000012, 0.0002697300900000002, 0.0029970010000000026}}};
  for (int dt = CC_FLOAT32; dt <= CC_FLOAT64; dt++)
    for (int decoupled = 0; decoupled < 2; decoupled++) {
      double tol = dt == CC_FLOAT32 ? 1e-6 : 1e-15;
      cc_tensor *p = from_values(SHAPE(4), (double[]){0.5, -1.0, 2.0, 0.0}, (cc_dtype)dt);
      cc_set_requires_grad(p, true);
      cc_tensor *m = cc_zeros(SHAPE(4), (cc_dtype)dt, CC_CPU), *v = cc_zeros(SHAPE(4), (cc_dtype)dt, CC_CPU);
      int rc = 0;
      for (int t = 1; t <= 3; t++) {
        cc_tensor *g = from_values(SHAPE(4), (double[]){0.1 * t, -0.2, 0.3 * (t % 2 ? -1 : 1), 1.0}, (cc_dtype)dt);
        rc |= cc_adam_step(p, g, m, v, 0.01, 0.9, 0.999, 1e-8, 0.1, t, decoupled);
        cc_release(g);
      }
      EXPECT(rc == 0);
      EXPECT(close_to(p, want[decoupled][0], 4, tol));
      EXPECT(close_to(m, want[decoupled][1], 4, tol) && close_to(v, want[decoupled][2], 4, tol));
      EXPECT(p->requires_grad && p->grad_fn == NULL);
      cc_tensor *tmp[] = {p, m, v};
      cc_release_n(3, tmp);
    }
  /* errors */
  cc_tensor *p = cc_zeros(SHAPE(2, 3), CC_FLOAT32, CC_CPU), *q = cc_zeros(SHAPE(3), CC_FLOAT32, CC_CPU);
  cc_tensor *d = cc_zeros(SHAPE(2, 3), CC_FLOAT64, CC_CPU), *pt = cc_transpose(p, 0, 1);
  cc_tensor *z = cc_zeros(SHAPE(3, 2), CC_FLOAT32, CC_CPU);
  EXPECT(cc_adam_step(p, q, p, p, 0.1, 0.9, 0.999, 1e-8, 0, 1, false) != 0 && strstr(cc_last_error(), "shape"));
  EXPECT(cc_adam_step(p, d, p, p, 0.1, 0.9, 0.999, 1e-8, 0, 1, false) != 0 && strstr(cc_last_error(), "dtype"));
  EXPECT(cc_adam_step(pt, z, z, z, 0.1, 0.9, 0.999, 1e-8, 0, 1, false) != 0 && strstr(cc_last_error(), "contiguous"));
  EXPECT(cc_adam_step(p, p, p, p, 0.1, 0.9, 0.999, 1e-8, 0, 0, false) != 0 && strstr(cc_last_error(), "step"));
  cc_tensor *tmp[] = {p, q, d, pt, z};
  cc_release_n(5, tmp);
  EXPECT(cc_live_tensors() == live0);
}

int main(void) {
  cc_init();
  test_batch_norm();
  test_layer_norm();
  test_softmax();
  test_adam();
  return test_summary();
}
