/* optim.c — fused optimiser steps, in place and outside the graph: Adam / AdamW exactly as
 * torch.optim.Adam(W) (single-tensor path). param, grad, exp_avg, exp_avg_sq: one shape, dtype
 * and device, contiguous. The element math lives in kernels/scalar.h (cc_adam_update). */
#include "internal.h"
#include "scalar.h"

/* ======================================================================= op level ====== */

int cc_adam_step(cc_tensor *param, cc_tensor *grad, cc_tensor *exp_avg, cc_tensor *exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, int64_t step, bool decoupled) {
  const char *op = decoupled ? "adamw_step" : "adam_step";
  const char *names[4] = {"param", "grad", "exp_avg", "exp_avg_sq"};
  cc_tensor *ts[4] = {param, grad, exp_avg, exp_avg_sq};
  if (cc_check_floating(op, param)) return -1;
  for (int k = 0; k < 4; k++) {
    if (!ts[k]) {
      cc_set_error("%s: %s is missing", op, names[k]);
      return -1;
    }
    if (k && (cc_check_same(op, param, ts[k]))) return -1;
    if (k && !cc_same_shape(param, ts[k])) {
      char s1[128], s2[128];
      cc_shape_str(param->ndim, param->shape, s1, sizeof s1);
      cc_shape_str(ts[k]->ndim, ts[k]->shape, s2, sizeof s2);
      cc_set_error("%s: %s has shape %s, param has %s", op, names[k], s2, s1);
      return -1;
    }
    if (!cc_is_contiguous(ts[k])) {
      cc_set_error("%s: %s must be contiguous", op, names[k]);
      return -1;
    }
  }
  if (step < 1) {
    cc_set_error("%s: step must be at least 1 (the count after this update), got %lld", op, (long long)step);
    return -1;
  }
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_ADAM_STEP;
  call.n_in = 4;
  for (int k = 0; k < 4; k++) call.in[k] = ts[k];
  call.i[0] = decoupled;
  call.f[0] = lr;
  call.f[1] = beta1;
  call.f[2] = beta2;
  call.f[3] = eps;
  call.f[4] = weight_decay;
  call.f[5] = 1.0 - pow(beta1, (double)step);
  call.f[6] = 1.0 - pow(beta2, (double)step);
  return cc_dispatch(&call); /* param keeps its requires_grad, grad and grad_fn */
}

/* ======================================================================= CPU kernels ===== */

#define ADAM_LOOP(T, SUF)                                                                          \
  do {                                                                                             \
    T *p = cc_data_ptr(c->in[0]), *m = cc_data_ptr(c->in[2]), *v = cc_data_ptr(c->in[3]);          \
    const T *g = cc_data_ptr(c->in[1]);                                                            \
    T b1 = (T)beta1, omb1 = (T)(1 - beta1), b2 = (T)beta2, omb2 = (T)(1 - beta2), twd = (T)wd;     \
    T decay = (T)(1 - lr * wd), s2 = (T)bc2_sqrt, te = (T)eps, nss = (T)(-step_size);              \
    _Pragma("omp parallel for simd schedule(static) if (n > 65536)")                               \
    for (int64_t i = 0; i < n; i++)                                                                \
      cc_adam_update##SUF(p + i, g[i], m + i, v + i, b1, omb1, b2, omb2, twd, decay, decoupled, s2, te, nss); \
  } while (0)

static int adam_step_cpu(const cc_call *c) {
  int64_t n = cc_numel(c->in[0]);
  int decoupled = (int)c->i[0];
  double lr = c->f[0], beta1 = c->f[1], beta2 = c->f[2], eps = c->f[3], wd = c->f[4];
  double step_size = lr / c->f[5], bc2_sqrt = sqrt(c->f[6]);
  if (c->in[0]->dtype == CC_FLOAT32) ADAM_LOOP(float, _f);
  else ADAM_LOOP(double, _d);
  return 0;
}

void cc_cpu_register_optim(void) { cc_register_kernel(CC_OP_ADAM_STEP, CC_CPU, adam_step_cpu); }
