/* test_core.c — C unit tests of the core: op table completeness on the CPU, refcounting and live
 * counters, views sharing storage, a small autograd chain, and errors instead of aborts. */
#include "testing.h"

#include <math.h>
#include <stdio.h>


static void test_op_table(void) {
  for (int op = 0; op < CC_OP_COUNT; op++) {
    if (!cc_kernel_supported((cc_op)op, CC_CPU)) fprintf(stderr, "no CPU kernel for %s\n", cc_op_names[op]);
    EXPECT(cc_kernel_supported((cc_op)op, CC_CPU));
  }
}

static void test_views_and_counters(void) {
  int64_t live0 = cc_live_tensors(), bytes0 = cc_live_bytes(CC_CPU);
  int64_t shape[2] = {3, 4};
  cc_tensor *a = cc_arange(0, 12, 1, CC_FLOAT32);
  cc_tensor *m = cc_reshape(a, 2, shape);
  EXPECT(m && m->storage == a->storage);
  cc_tensor *t = cc_transpose(m, 0, 1);
  EXPECT(t && !cc_is_contiguous(t) && t->shape[0] == 4);
  EXPECT(cc_get_flat(t, 1) == 4.0); /* t[0][1] = m[1][0] */
  cc_tensor *c = cc_contiguous(t);
  EXPECT(c && cc_is_contiguous(c) && c->storage != a->storage && cc_get_flat(c, 1) == 4.0);
  cc_tensor *n = cc_narrow(m, 1, 1, 2);
  EXPECT(n && cc_get_flat(n, 0) == 1.0 && cc_get_flat(n, 2) == 5.0);
  cc_release(a);
  cc_release(m);
  cc_release(t);
  cc_release(c);
  cc_release(n);
  EXPECT(cc_live_tensors() == live0);
  EXPECT(cc_live_bytes(CC_CPU) == bytes0);
}

static void test_autograd_chain(void) {
  int64_t live0 = cc_live_tensors();
  int64_t shape[1] = {3};
  cc_tensor *x = cc_full(1, shape, 2.0, CC_FLOAT64, CC_CPU);
  cc_set_requires_grad(x, true);
  cc_tensor *y = cc_mul(x, x);   /* x^2 */
  cc_tensor *z = cc_unary(y, CC_UNARY_EXP);
  cc_tensor *s = cc_sum(z, 0, NULL, false);
  EXPECT(s && cc_backward(s, NULL, false) == 0);
  /* d/dx sum exp(x^2) = 2x exp(x^2) */
  EXPECT(x->grad && fabs(cc_get_flat(x->grad, 0) - 4.0 * exp(4.0)) < 1e-9);
  EXPECT(cc_backward(s, NULL, false) != 0); /* graph freed */
  cc_release(s);
  cc_release(z);
  cc_release(y);
  cc_release(x);
  EXPECT(cc_live_tensors() == live0);
}

static void test_errors(void) {
  int64_t s1[1] = {3}, s2[1] = {4};
  cc_tensor *a = cc_zeros(1, s1, CC_FLOAT32, CC_CPU), *b = cc_zeros(1, s2, CC_FLOAT32, CC_CPU);
  EXPECT(cc_add(a, b) == NULL && strstr(cc_last_error(), "broadcast"));
  EXPECT(cc_narrow(a, 0, 2, 5) == NULL);
  EXPECT(cc_transpose(a, 0, 3) == NULL && strstr(cc_last_error(), "out of range"));
  cc_release(a);
  cc_release(b);
}

int main(void) {
  cc_init();
  test_op_table();
  test_views_and_counters();
  test_autograd_chain();
  test_errors();
  return test_summary();
}
