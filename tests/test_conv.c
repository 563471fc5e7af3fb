/* test_conv.c — C unit tests of conv2d, pad and adaptive_avg_pool2d: forward against a naive
 * reference (float64 and float32, every kernel strategy: direct/depthwise, 1x1 GEMM, batched 1x1,
 * im2col), float64 central-difference gradient checks of every input, and errors instead of aborts. */
#include "testing.h"

#include <math.h>
#include <stdio.h>


typedef struct {
  const char *name;
  int64_t N, C, H, W, O, kh, kw;
  cc_conv2d_opts opt;
  bool bias, transposed; /* transposed: x is a (N,C,H,W) view of a (N,C,W,H) tensor */
} conv_case;

static const conv_case cases[] = {
    {"plain", 2, 3, 6, 7, 4, 3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}, true, false},
    {"plain nobias", 2, 3, 6, 7, 4, 3, 3, {{1, 1}, {0, 0}, {1, 1}, 1}, false, false},
    {"stride 2 pad 1", 2, 3, 7, 8, 4, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 1}, true, false},
    {"dilation 2", 1, 2, 8, 9, 3, 3, 3, {{1, 1}, {1, 2}, {2, 2}, 1}, false, false},
    {"mixed stride/pad/dil", 2, 4, 8, 9, 6, 3, 2, {{1, 2}, {1, 0}, {2, 1}, 2}, true, false},
    {"groups 2", 2, 4, 6, 6, 6, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 2}, true, false},
    {"depthwise 3x3", 2, 4, 6, 7, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 4}, false, false},
    {"depthwise 3x3 s2", 2, 4, 7, 8, 4, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 4}, true, false},
    {"depthwise 5x5 s2", 2, 3, 9, 10, 3, 5, 5, {{2, 2}, {2, 2}, {1, 1}, 3}, false, false},
    {"depthwise x2 mult", 1, 3, 6, 6, 6, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 3}, true, false},
    {"depthwise stride 3", 1, 2, 8, 10, 2, 3, 3, {{3, 3}, {1, 1}, {2, 1}, 2}, false, false},
    {"stem 1->8 s2", 2, 1, 9, 11, 8, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 1}, false, false},
    {"1x1", 2, 6, 4, 5, 5, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, true, false},
    {"1x1 nobias", 2, 6, 4, 5, 5, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, false, false},
    {"1x1 groups 2", 2, 6, 3, 4, 4, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 2}, false, false},
    {"1x1 on 1x1 spatial (SE)", 3, 6, 1, 1, 4, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, true, false},
    {"1x1 stride 2", 2, 3, 5, 6, 4, 1, 1, {{2, 2}, {0, 0}, {1, 1}, 1}, false, false},
    {"1x1 padded", 1, 3, 3, 4, 2, 1, 1, {{1, 1}, {1, 1}, {1, 1}, 1}, true, false},
    {"dense 8 ch", 2, 8, 5, 6, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, true, false},
    {"dense 8 ch s2 dil", 1, 8, 7, 7, 3, 2, 3, {{2, 1}, {0, 2}, {1, 2}, 1}, false, false},
    {"transposed input", 2, 3, 6, 5, 4, 3, 3, {{1, 1}, {1, 1}, {1, 1}, 1}, false, true},
    {"transposed depthwise", 2, 4, 6, 5, 4, 3, 3, {{2, 2}, {1, 1}, {1, 1}, 4}, true, true},
    {"transposed 1x1", 2, 6, 4, 5, 3, 1, 1, {{1, 1}, {0, 0}, {1, 1}, 1}, false, true},
    {"kernel = padded input", 1, 2, 3, 3, 2, 5, 5, {{1, 1}, {1, 1}, {1, 1}, 1}, true, false},
};
#define NCASES ((int)(sizeof cases / sizeof cases[0]))

/* naive reference in double on contiguous float64 copies */
static double ref_at(const conv_case *c, const double *x, const double *w, const double *b, int64_t n, int64_t o,
                     int64_t oh, int64_t ow) {
  int64_t G = c->opt.groups, Cg = c->C / G, Og = c->O / G, gi = o / Og;
  double s = b ? b[o] : 0;
  for (int64_t cc = 0; cc < Cg; cc++)
    for (int64_t i = 0; i < c->kh; i++)
      for (int64_t j = 0; j < c->kw; j++) {
        int64_t ih = oh * c->opt.stride[0] - c->opt.padding[0] + i * c->opt.dilation[0];
        int64_t iw = ow * c->opt.stride[1] - c->opt.padding[1] + j * c->opt.dilation[1];
        if (ih < 0 || ih >= c->H || iw < 0 || iw >= c->W) continue;
        s += x[((n * c->C + gi * Cg + cc) * c->H + ih) * c->W + iw] * w[((o * Cg + cc) * c->kh + i) * c->kw + j];
      }
  return s;
}

static cc_tensor *to_f64(cc_tensor *t) {
  bool was = cc_set_grad_enabled(false);
  cc_tensor *d = cc_to_dtype(t, CC_FLOAT64);
  cc_tensor *c = d ? cc_contiguous(d) : NULL;
  cc_release(d);
  cc_set_grad_enabled(was);
  return c;
}

/* builds x (possibly a transposed view of base), w, b for a case */
static void make_inputs(const conv_case *c, cc_dtype dt, cc_tensor **base, cc_tensor **x, cc_tensor **w,
                        cc_tensor **b) {
  int64_t xs[4] = {c->N, c->C, c->H, c->W}, xts[4] = {c->N, c->C, c->W, c->H};
  int64_t ws[4] = {c->O, c->C / c->opt.groups, c->kh, c->kw}, bs[1] = {c->O};
  *base = cc_randn(4, c->transposed ? xts : xs, dt);
  *w = cc_randn(4, ws, dt);
  *b = c->bias ? cc_randn(1, bs, dt) : NULL;
  *x = NULL;
}

static void test_forward(const conv_case *c, cc_dtype dt) {
  cc_tensor *base, *x, *w, *b;
  make_inputs(c, dt, &base, &x, &w, &b);
  x = c->transposed ? cc_transpose(base, 2, 3) : cc_retain(base);
  EXPECT(!c->transposed || !cc_is_contiguous(x));
  cc_tensor *y = cc_conv2d(x, w, b, &c->opt);
  EXPECT(y != NULL);
  if (y) {
    cc_tensor *xd = to_f64(x), *wd = to_f64(w), *bd = b ? to_f64(b) : NULL, *yd = to_f64(y);
    const double *xp = cc_data_ptr(xd), *wp = cc_data_ptr(wd), *bp = bd ? cc_data_ptr(bd) : NULL;
    const double *yp = cc_data_ptr(yd);
    int64_t Ho = y->shape[2], Wo = y->shape[3];
    double worst = 0;
    for (int64_t n = 0; n < c->N; n++)
      for (int64_t o = 0; o < c->O; o++)
        for (int64_t oh = 0; oh < Ho; oh++)
          for (int64_t ow = 0; ow < Wo; ow++) {
            double r = ref_at(c, xp, wp, bp, n, o, oh, ow), got = yp[((n * c->O + o) * Ho + oh) * Wo + ow];
            double e = fabs(r - got) / (1 + fabs(r));
            if (e > worst) worst = e;
          }
    double tol = dt == CC_FLOAT64 ? 1e-12 : 1e-5;
    if (!(worst < tol)) fprintf(stderr, "conv forward %s (%s): error %g\n", c->name, cc_dtype_name(dt), worst);
    EXPECT(worst < tol);
    int64_t eh = (c->H + 2 * c->opt.padding[0] - c->opt.dilation[0] * (c->kh - 1) - 1) / c->opt.stride[0] + 1;
    EXPECT(y->ndim == 4 && y->shape[0] == c->N && y->shape[1] == c->O && Ho == eh);
    cc_release(xd);
    cc_release(wd);
    cc_release(bd);
    cc_release(yd);
  }
  cc_release(y);
  cc_release(x);
  cc_release(base);
  cc_release(w);
  cc_release(b);
}

/* ---- finite differences: loss = sum(f(...) * r) ---- */
typedef cc_tensor *(*loss_fn)(void *ctx);

static double eval_loss(loss_fn f, void *ctx) {
  bool was = cc_set_grad_enabled(false);
  cc_tensor *l = f(ctx);
  cc_set_grad_enabled(was);
  double v = NAN;
  if (l) cc_item(l, &v);
  cc_release(l);
  return v;
}

/* compares leaf->grad with central differences over every element of leaf (contiguous float64) */
static double grad_error(loss_fn f, void *ctx, cc_tensor *leaf) {
  if (!leaf->grad) return INFINITY;
  double *p = cc_data_ptr(leaf);
  cc_tensor *gc = to_f64(leaf->grad);
  const double *g = cc_data_ptr(gc);
  double worst = 0, eps = 1e-6;
  for (int64_t k = 0; k < cc_numel(leaf); k++) {
    double keep = p[k];
    p[k] = keep + eps;
    double lp = eval_loss(f, ctx);
    p[k] = keep - eps;
    double lm = eval_loss(f, ctx);
    p[k] = keep;
    double num = (lp - lm) / (2 * eps);
    double e = fabs(num - g[k]) / (1 + fabs(g[k]));
    if (!(e <= worst)) worst = e;
  }
  cc_release(gc);
  return worst;
}

typedef struct {
  const conv_case *c;
  cc_tensor *base, *w, *b, *r;
} conv_ctx;

/* sum(y * r); consumes y */
static cc_tensor *weighted_sum(cc_tensor *y, cc_tensor *r) {
  if (!y) return NULL;
  cc_tensor *m = cc_mul(y, r);
  cc_release(y);
  cc_tensor *s = m ? cc_sum(m, 0, NULL, false) : NULL;
  cc_release(m);
  return s;
}

static cc_tensor *conv_loss(void *vctx) {
  conv_ctx *k = vctx;
  cc_tensor *x = k->c->transposed ? cc_transpose(k->base, 2, 3) : cc_retain(k->base);
  cc_tensor *y = x ? cc_conv2d(x, k->w, k->b, &k->c->opt) : NULL;
  cc_tensor *l = weighted_sum(y, k->r);
  cc_release(x);
  return l;
}

static void test_conv_grad(const conv_case *c) {
  int64_t live0 = cc_live_tensors();
  conv_ctx k = {c, NULL, NULL, NULL, NULL};
  cc_tensor *unused;
  make_inputs(c, CC_FLOAT64, &k.base, &unused, &k.w, &k.b);
  cc_set_requires_grad(k.base, true);
  cc_set_requires_grad(k.w, true);
  if (k.b) cc_set_requires_grad(k.b, true);
  cc_tensor *y = NULL;
  {
    bool was = cc_set_grad_enabled(false);
    cc_tensor *x = c->transposed ? cc_transpose(k.base, 2, 3) : cc_retain(k.base);
    y = cc_conv2d(x, k.w, k.b, &c->opt);
    cc_release(x);
    cc_set_grad_enabled(was);
  }
  EXPECT(y != NULL);
  if (!y) return;
  k.r = cc_randn(4, y->shape, CC_FLOAT64);
  cc_release(y);
  cc_tensor *l = conv_loss(&k);
  EXPECT(l && strcmp(cc_grad_fn_name(l), "SumBackward") == 0);
  EXPECT(l && cc_backward(l, NULL, false) == 0);
  cc_release(l);
  double ex = grad_error(conv_loss, &k, k.base), ew = grad_error(conv_loss, &k, k.w);
  double eb = k.b ? grad_error(conv_loss, &k, k.b) : 0;
  if (!(ex < 1e-6 && ew < 1e-6 && eb < 1e-6))
    fprintf(stderr, "conv grad %s: dx %g dw %g db %g\n", c->name, ex, ew, eb);
  EXPECT(ex < 1e-6);
  EXPECT(ew < 1e-6);
  EXPECT(eb < 1e-6);
  cc_release(k.base);
  cc_release(k.w);
  cc_release(k.b);
  cc_release(k.r);
  EXPECT(cc_live_tensors() == live0);
}

/* only some inputs require grad: the others get none, and the rest stays right */
static void test_partial_grad(void) {
  const conv_case *c = &cases[2];
  int64_t xs[4] = {c->N, c->C, c->H, c->W}, ws[4] = {c->O, c->C, c->kh, c->kw}, bs[1] = {c->O};
  cc_tensor *x = cc_randn(4, xs, CC_FLOAT64), *w = cc_randn(4, ws, CC_FLOAT64), *b = cc_randn(1, bs, CC_FLOAT64);
  cc_set_requires_grad(w, true);
  cc_tensor *y = cc_conv2d(x, w, b, &c->opt);
  EXPECT(y && strcmp(cc_grad_fn_name(y), "Conv2dBackward") == 0);
  cc_tensor *s = y ? cc_sum(y, 0, NULL, false) : NULL;
  EXPECT(s && cc_backward(s, NULL, false) == 0);
  EXPECT(w->grad != NULL && x->grad == NULL && b->grad == NULL);
  cc_release(s);
  cc_release(y);
  /* no input requires grad: no graph */
  cc_tensor *y2 = cc_conv2d(x, b, NULL, &c->opt);
  EXPECT(y2 == NULL); /* b is no weight */
  cc_tensor *wd = cc_detach(w);
  cc_tensor *y3 = cc_conv2d(x, wd, b, &c->opt);
  EXPECT(y3 && !y3->requires_grad && y3->grad_fn == NULL);
  cc_release(y3);
  cc_release(wd);
  cc_release(x);
  cc_release(w);
  cc_release(b);
}

static void test_unbatched(void) {
  int64_t xs[3] = {2, 5, 5}, ws[4] = {3, 2, 3, 3};
  cc_tensor *x = cc_randn(3, xs, CC_FLOAT64), *w = cc_randn(4, ws, CC_FLOAT64);
  cc_conv2d_opts opt = {{1, 1}, {1, 1}, {1, 1}, 1};
  cc_tensor *y = cc_conv2d(x, w, NULL, &opt);
  EXPECT(y && y->ndim == 3 && y->shape[0] == 3 && y->shape[1] == 5 && y->shape[2] == 5);
  cc_tensor *y0 = cc_conv2d(x, w, NULL, NULL); /* NULL opts = defaults */
  EXPECT(y0 && y0->shape[1] == 3 && y0->shape[2] == 3);
  cc_release(y0);
  cc_release(y);
  cc_release(x);
  cc_release(w);
}

/* ---- pad ---- */
typedef struct {
  cc_tensor *x, *r;
  int npairs;
  const int64_t *pads;
} pad_ctx;

static cc_tensor *pad_loss(void *vctx) {
  pad_ctx *k = vctx;
  return weighted_sum(cc_pad(k->x, k->npairs, k->pads, 1.5), k->r);
}

static void test_pad(void) {
  int64_t xs[3] = {2, 3, 4};
  static const int64_t p1[] = {1, 2}, p2[] = {1, 0, 2, 1}, p3[] = {-1, 2, 1, -1}, p4[] = {1, 1, 0, 2, 1, 0},
                       p5[] = {-1, -2};
  const int64_t *pads[] = {p1, p2, p3, p4, p5};
  int npairs[] = {1, 2, 2, 3, 1};
  for (int t = 0; t < 5; t++) {
    pad_ctx k = {cc_randn(3, xs, CC_FLOAT64), NULL, npairs[t], pads[t]};
    cc_set_requires_grad(k.x, true);
    cc_tensor *y = cc_pad(k.x, k.npairs, k.pads, 1.5);
    EXPECT(y != NULL);
    if (!y) continue;
    /* shape and values: y[i] = x[i - before] inside, 1.5 outside */
    int64_t lo[3] = {0, 0, 0};
    for (int p = 0; p < k.npairs; p++) lo[2 - p] = k.pads[2 * p];
    for (int p = 0; p < k.npairs; p++) EXPECT(y->shape[2 - p] == xs[2 - p] + k.pads[2 * p] + k.pads[2 * p + 1]);
    bool ok = true;
    for (int64_t a = 0; a < y->shape[0]; a++)
      for (int64_t bb = 0; bb < y->shape[1]; bb++)
        for (int64_t cc = 0; cc < y->shape[2]; cc++) {
          int64_t i0 = a - lo[0], i1 = bb - lo[1], i2 = cc - lo[2];
          double want = (i0 >= 0 && i0 < xs[0] && i1 >= 0 && i1 < xs[1] && i2 >= 0 && i2 < xs[2])
                            ? cc_get_flat(k.x, (i0 * xs[1] + i1) * xs[2] + i2)
                            : 1.5;
          if (cc_get_flat(y, (a * y->shape[1] + bb) * y->shape[2] + cc) != want) ok = false;
        }
    EXPECT(ok);
    k.r = cc_randn(3, y->shape, CC_FLOAT64);
    cc_release(y);
    cc_tensor *l = pad_loss(&k);
    EXPECT(l && cc_backward(l, NULL, false) == 0);
    cc_release(l);
    double e = grad_error(pad_loss, &k, k.x);
    if (!(e < 1e-6)) fprintf(stderr, "pad grad case %d: %g\n", t, e);
    EXPECT(e < 1e-6);
    cc_release(k.x);
    cc_release(k.r);
  }
  /* float32 and int64 forward */
  int64_t s2[2] = {2, 2};
  cc_tensor *i = cc_full(2, s2, 7, CC_INT64, CC_CPU);
  int64_t pp[2] = {1, 1};
  cc_tensor *ip = cc_pad(i, 1, pp, -3);
  EXPECT(ip && ip->dtype == CC_INT64 && ip->shape[1] == 4 && cc_get_flat(ip, 0) == -3 && cc_get_flat(ip, 1) == 7);
  cc_release(ip);
  cc_release(i);
}

/* ---- adaptive average pool ---- */
typedef struct {
  cc_tensor *x, *r;
  int64_t oh, ow;
} pool_ctx;

static cc_tensor *pool_loss(void *vctx) {
  pool_ctx *k = vctx;
  return weighted_sum(cc_adaptive_avg_pool2d(k->x, k->oh, k->ow), k->r);
}

static void test_pool(void) {
  int64_t shapes[][4] = {{2, 3, 7, 7}, {2, 2, 7, 9}, {1, 2, 5, 6}, {2, 3, 4, 5}, {3, 3, 3, 0}};
  int64_t outs[][2] = {{3, 3}, {1, 1}, {2, 4}, {6, 7}, {0, 0}};
  for (int t = 0; t < 5; t++) {
    int nd = t == 4 ? 3 : 4; /* the last: (C,H,W) input 3x3x3 -> 2x2 */
    int64_t *xs = shapes[t];
    int64_t oh = t == 4 ? 2 : outs[t][0], ow = t == 4 ? 2 : outs[t][1];
    pool_ctx k = {cc_randn(nd, xs, CC_FLOAT64), NULL, oh, ow};
    cc_set_requires_grad(k.x, true);
    cc_tensor *y = cc_adaptive_avg_pool2d(k.x, oh, ow);
    EXPECT(y && y->ndim == nd && y->shape[nd - 2] == oh && y->shape[nd - 1] == ow);
    if (!y) continue;
    /* first plane against torch's bins */
    int64_t H = xs[nd - 2], W = xs[nd - 1];
    bool ok = true;
    for (int64_t i = 0; i < oh; i++)
      for (int64_t j = 0; j < ow; j++) {
        int64_t h0 = i * H / oh, h1 = ((i + 1) * H + oh - 1) / oh, w0 = j * W / ow, w1 = ((j + 1) * W + ow - 1) / ow;
        double s = 0;
        for (int64_t h = h0; h < h1; h++)
          for (int64_t w = w0; w < w1; w++) s += cc_get_flat(k.x, h * W + w);
        if (fabs(s / (double)((h1 - h0) * (w1 - w0)) - cc_get_flat(y, i * ow + j)) > 1e-12) ok = false;
      }
    EXPECT(ok);
    k.r = cc_randn(nd, y->shape, CC_FLOAT64);
    cc_release(y);
    cc_tensor *l = pool_loss(&k);
    EXPECT(l && cc_backward(l, NULL, false) == 0);
    cc_release(l);
    double e = grad_error(pool_loss, &k, k.x);
    if (!(e < 1e-6)) fprintf(stderr, "pool grad case %d: %g\n", t, e);
    EXPECT(e < 1e-6);
    cc_release(k.x);
    cc_release(k.r);
  }
  /* float32 global pool of a large tensor */
  int64_t s[4] = {2, 3, 40, 50};
  cc_tensor *x = cc_full(4, s, 0.25, CC_FLOAT32, CC_CPU);
  cc_tensor *y = cc_adaptive_avg_pool2d(x, 1, 1);
  EXPECT(y && fabs(cc_get_flat(y, 5) - 0.25) < 1e-7);
  cc_release(y);
  cc_release(x);
}

static bool fails_with(cc_tensor *t, const char *msg) {
  bool ok = t == NULL && strstr(cc_last_error(), msg) != NULL;
  if (!ok) fprintf(stderr, "expected an error containing '%s', got '%s'\n", msg, t ? "(a result)" : cc_last_error());
  cc_release(t);
  return ok;
}

static void test_errors(void) {
  int64_t live0 = cc_live_tensors();
  int64_t xs[4] = {2, 4, 5, 5}, x2s[2] = {4, 5}, ws[4] = {6, 4, 3, 3}, w3s[4] = {6, 3, 3, 3}, w2s[4] = {6, 2, 3, 3};
  int64_t w7s[4] = {7, 2, 3, 3}, wbig[4] = {6, 4, 8, 3}, bs[1] = {5};
  cc_tensor *x = cc_randn(4, xs, CC_FLOAT32), *x2 = cc_randn(2, x2s, CC_FLOAT32);
  cc_tensor *w = cc_randn(4, ws, CC_FLOAT32), *w3 = cc_randn(4, w3s, CC_FLOAT32), *w2 = cc_randn(4, w2s, CC_FLOAT32);
  cc_tensor *w7 = cc_randn(4, w7s, CC_FLOAT32), *wb = cc_randn(4, wbig, CC_FLOAT32);
  cc_tensor *wd = cc_randn(4, ws, CC_FLOAT64), *b5 = cc_randn(1, bs, CC_FLOAT32);
  cc_tensor *xi = cc_zeros(4, xs, CC_INT64, CC_CPU);
  cc_conv2d_opts o = {{1, 1}, {0, 0}, {1, 1}, 1};
  EXPECT(fails_with(cc_conv2d(x2, w, NULL, &o), "conv2d: expected a 3-D (C,H,W) or 4-D"));
  EXPECT(fails_with(cc_conv2d(x, x2, NULL, &o), "conv2d: expected a 4-D weight"));
  EXPECT(fails_with(cc_conv2d(x, w3, NULL, &o), "expects 3 input channels"));
  EXPECT(fails_with(cc_conv2d(x, wd, NULL, &o), "dtype mismatch"));
  EXPECT(fails_with(cc_conv2d(xi, w, NULL, &o), "floating"));
  EXPECT(fails_with(cc_conv2d(x, w, b5, &o), "bias must have shape (6)"));
  EXPECT(fails_with(cc_conv2d(x, wb, NULL, &o), "larger than the padded input"));
  cc_conv2d_opts g3 = {{1, 1}, {0, 0}, {1, 1}, 3};
  EXPECT(fails_with(cc_conv2d(x, w, NULL, &g3), "conv2d: groups=3 does not divide in_channels=4"));
  cc_conv2d_opts g2 = {{1, 1}, {0, 0}, {1, 1}, 2};
  EXPECT(fails_with(cc_conv2d(x, w7, NULL, &g2), "groups=2 does not divide out_channels=7"));
  cc_tensor *ok = cc_conv2d(x, w2, NULL, &g2);
  EXPECT(ok != NULL);
  cc_release(ok);
  cc_conv2d_opts g0 = {{1, 1}, {0, 0}, {1, 1}, 0};
  EXPECT(fails_with(cc_conv2d(x, w, NULL, &g0), "groups must be positive"));
  cc_conv2d_opts s0 = {{0, 1}, {0, 0}, {1, 1}, 1};
  EXPECT(fails_with(cc_conv2d(x, w, NULL, &s0), "stride must be positive"));
  cc_conv2d_opts d0 = {{1, 1}, {0, 0}, {1, -1}, 1};
  EXPECT(fails_with(cc_conv2d(x, w, NULL, &d0), "dilation must be positive"));
  cc_conv2d_opts pn = {{1, 1}, {-1, 0}, {1, 1}, 1};
  EXPECT(fails_with(cc_conv2d(x, w, NULL, &pn), "padding must be non-negative"));
  int64_t p3[6] = {1, 1, 1, 1, 1, 1};
  EXPECT(fails_with(cc_pad(x2, 3, p3, 0), "pad: 3 (before, after) pairs"));
  int64_t pc[2] = {-3, -3};
  EXPECT(fails_with(cc_pad(x2, 1, pc, 0), "pad: dimension 2 of size 5"));
  EXPECT(fails_with(cc_adaptive_avg_pool2d(x2, 2, 2), "adaptive_avg_pool2d: expected a 3-D"));
  EXPECT(fails_with(cc_adaptive_avg_pool2d(x, 0, 2), "output size must be positive"));
  EXPECT(fails_with(cc_adaptive_avg_pool2d(xi, 2, 2), "floating"));
  cc_tensor *all[] = {x, x2, w, w3, w2, w7, wb, wd, b5, xi};
  cc_release_n(10, all);
  EXPECT(cc_live_tensors() == live0);
}

int main(void) {
  cc_init();
  cc_manual_seed(1234);
  int64_t live0 = cc_live_tensors();
  for (int k = 0; k < NCASES; k++) {
    test_forward(&cases[k], CC_FLOAT64);
    test_forward(&cases[k], CC_FLOAT32);
    test_conv_grad(&cases[k]);
  }
  test_partial_grad();
  test_unbatched();
  test_pad();
  test_pool();
  test_errors();
  EXPECT(cc_live_tensors() == live0);
  printf("test_conv: %d checks, %d failures\n", checks, failures);
  return failures ? 1 : 0;
}
