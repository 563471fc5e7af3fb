/* testing.h — what the C unit tests share: EXPECT with pass/fail counters, SHAPE(...) literals,
 * deterministic test tensors, and a float64 central finite-difference gradient check of
 * sum(f(inputs) * R) for a fixed R. Each test program includes it once. */
#ifndef COCOLA_TESTING_H
#define COCOLA_TESTING_H

#include "internal.h"

#include <math.h>
#include <stdio.h>

static int failures = 0, checks = 0;
#define EXPECT(cond)                                                                               \
  do {                                                                                             \
    checks++;                                                                                      \
    if (!(cond)) {                                                                                 \
      failures++;                                                                                  \
      fprintf(stderr, "%s:%d: expected %s (last error: %s)\n", __FILE__, __LINE__, #cond, cc_last_error()); \
    }                                                                                              \
  } while (0)

/* ---- helpers ---- */
#define SHAPE(...) (int)(sizeof((int64_t[]){__VA_ARGS__}) / sizeof(int64_t)), (int64_t[]){__VA_ARGS__}

/* deterministic values in about [-1.5, 1.5] */
static inline cc_tensor *filled(int ndim, const int64_t *shape, cc_dtype dt, double seed) {
  cc_tensor *t = cc_empty(ndim, shape, dt, CC_CPU);
  int64_t n = cc_numel(t);
  for (int64_t i = 0; i < n; i++) {
    double v = sin(seed * 1.7 + (double)i * 0.37 * (1 + seed * 0.1)) * 1.5;
    if (dt == CC_FLOAT32) ((float *)cc_data_ptr(t))[i] = (float)v;
    else ((double *)cc_data_ptr(t))[i] = v;
  }
  return t;
}

static inline cc_tensor *leaf(int ndim, const int64_t *shape, double seed) {
  cc_tensor *t = filled(ndim, shape, CC_FLOAT64, seed);
  cc_set_requires_grad(t, true);
  return t;
}

/* address of element i (row-major order) of a float64 tensor with any strides */
static inline double *elem(cc_tensor *t, int64_t i) {
  int64_t off = 0;
  for (int d = t->ndim - 1; d >= 0; d--) {
    off += (i % t->shape[d]) * t->stride[d];
    i /= t->shape[d];
  }
  return (double *)cc_data_ptr(t) + off;
}

typedef cc_tensor *(*test_fn)(cc_tensor **in, const void *ctx);

/* loss = sum(f(in) * R) for a fixed R; compares d loss / d in[k] from backward with central
   differences (step 1e-6) for every input that requires grad; returns the worst relative error */
static inline double gradcheck(test_fn f, int n, cc_tensor **in, const void *ctx) {
  cc_tensor *y = f(in, ctx);
  if (!y) return INFINITY;
  cc_tensor *R = filled(y->ndim, y->shape, CC_FLOAT64, 0.77);
  for (int k = 0; k < n; k++)
    if (in[k]) cc_zero_grad(in[k]);
  int rc = cc_backward(y, R, false);
  cc_release(y);
  double worst = rc ? INFINITY : 0;
  bool was = cc_set_grad_enabled(false);
  for (int k = 0; k < n && !rc; k++) {
    if (!in[k] || !in[k]->requires_grad) continue;
    if (!in[k]->grad) {
      worst = INFINITY;
      continue;
    }
    for (int64_t i = 0; i < cc_numel(in[k]); i++) {
      double *p = elem(in[k], i), save = *p, l[2];
      for (int s = 0; s < 2; s++) {
        *p = save + (s ? -1e-6 : 1e-6);
        cc_tensor *o = f(in, ctx);
        l[s] = 0;
        for (int64_t j = 0; o && j < cc_numel(o); j++) l[s] += cc_get_flat(o, j) * cc_get_flat(R, j);
        cc_release(o);
      }
      *p = save;
      double num = (l[0] - l[1]) / 2e-6, ana = cc_get_flat(in[k]->grad, i);
      double err = fabs(num - ana) / fmax(1.0, fabs(num));
      if (err > worst) worst = err;
    }
  }
  cc_set_grad_enabled(was);
  cc_release(R);
  return worst;
}

/* the summary line every test program ends with; its exit status */
static inline int test_summary(void) {
  printf("%d checks, %d failed\n", checks, failures);
  return failures ? 1 : 0;
}

#endif
