/* random.c — the global counter-based generator (Philox4x32-10 from kernels/scalar.h) and the
 * random ops: rand, randn, randint, uniform_/normal_, and dropout (mask from the same stream).
 * Element k of a draw depends only on (seed, first counter, k): the same numbers on any machine,
 * thread count or backend. */
#include "cpu_iter.h"
#include "scalar.h"

/* a fixed default seed: a program that never seeds draws the same numbers on every run (torch seeds
   its default generator from entropy instead; cocola.seed() does that here on request) */
#define CC_DEFAULT_SEED 0x5eed5eedULL
static uint64_t rng_seed = CC_DEFAULT_SEED, rng_offset = 0;

void cc_manual_seed(uint64_t seed) {
  rng_seed = seed;
  rng_offset = 0;
}
uint64_t cc_get_seed(void) { return rng_seed; }
void cc_rng_get_state(uint64_t *seed, uint64_t *offset) {
  *seed = rng_seed;
  *offset = rng_offset;
}
void cc_rng_set_state(uint64_t seed, uint64_t offset) {
  rng_seed = seed;
  rng_offset = offset;
}
uint64_t cc_rng_reserve(uint64_t n) {
  uint64_t first = rng_offset;
  rng_offset += n;
  return first;
}

enum { RAND_UNIFORM = 0, RAND_NORMAL = 1, RAND_INT = 2 };

static int random_fill(cc_tensor *t, int kind, double p0, double p1) {
  int64_t n = cc_numel(t);
  uint64_t counter = cc_rng_reserve((uint64_t)(n / 2 + 1));
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_RANDOM;
  call.n_out = 1;
  call.out[0] = t;
  call.i[0] = kind;
  call.i[1] = (int64_t)counter;
  call.i[2] = (int64_t)rng_seed;
  call.f[0] = p0;
  call.f[1] = p1;
  return cc_dispatch(&call);
}

static cc_tensor *random_new(int ndim, const int64_t *shape, cc_dtype dt, int kind, double p0, double p1) {
  if (kind != RAND_INT && !cc_is_floating(dt)) {
    cc_set_error("rand/randn: dtype must be float32 or float64, got %s", cc_dtype_name(dt));
    return NULL;
  }
  cc_tensor *t = cc_empty(ndim, shape, dt, CC_CPU);
  if (t && random_fill(t, kind, p0, p1)) {
    cc_release(t);
    return NULL;
  }
  return t;
}

cc_tensor *cc_rand(int ndim, const int64_t *shape, cc_dtype dt) { return random_new(ndim, shape, dt, RAND_UNIFORM, 0, 1); }
cc_tensor *cc_randn(int ndim, const int64_t *shape, cc_dtype dt) { return random_new(ndim, shape, dt, RAND_NORMAL, 0, 1); }
cc_tensor *cc_randint(int64_t low, int64_t high, int ndim, const int64_t *shape) {
  if (high <= low) {
    cc_set_error("randint: high (%lld) must be greater than low (%lld)", (long long)high, (long long)low);
    return NULL;
  }
  return random_new(ndim, shape, CC_INT64, RAND_INT, (double)low, (double)high);
}

int cc_uniform_(cc_tensor *t, double low, double high) {
  if (cc_check_floating("uniform_", t)) return -1;
  return random_fill(t, RAND_UNIFORM, low, high);
}
int cc_normal_(cc_tensor *t, double mean, double stddev) {
  if (cc_check_floating("normal_", t)) return -1;
  return random_fill(t, RAND_NORMAL, mean, stddev);
}

/* ---- dropout: y = x * mask, mask = (u >= p) / (1 - p) ---- */
static int dropout_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  gi[0] = cc_mul(g, node->saved[0]);
  return gi[0] ? 0 : -1;
}

cc_tensor *cc_dropout(cc_tensor *x, double p, bool training) {
  if (!(p >= 0 && p <= 1)) {
    cc_set_error("dropout: probability has to be between 0 and 1, but got %g", p);
    return NULL;
  }
  if (cc_check_floating("dropout", x)) return NULL;
  if (!training || p == 0) {
    return cc_retain(x); /* identity, as torch returns its input */
  }
  cc_tensor *mask = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  if (!mask) return NULL;
  int64_t n = cc_numel(x);
  cc_call call;
  memset(&call, 0, sizeof call);
  call.op = CC_OP_DROPOUT_MASK;
  call.n_out = 1;
  call.out[0] = mask;
  call.i[0] = (int64_t)cc_rng_reserve((uint64_t)(n / 4 + 1));
  call.i[1] = (int64_t)rng_seed;
  call.f[0] = p;
  if (cc_dispatch(&call)) {
    cc_release(mask);
    return NULL;
  }
  bool was = cc_set_grad_enabled(false);
  cc_tensor *out = cc_mul(x, mask);
  cc_set_grad_enabled(was);
  if (out) {
    cc_node *node = cc_attach_node(out, "DropoutBackward", dropout_backward, 1, &x);
    if (node) cc_node_save(node, mask);
  }
  cc_release(mask);
  return out;
}

/* ======================================================================= CPU kernels ===== */
static int random_cpu(const cc_call *c) {
  cc_tensor *t = c->out[0];
  int kind = (int)c->i[0];
  uint64_t counter = (uint64_t)c->i[1], seed = (uint64_t)c->i[2];
  double p0 = c->f[0], p1 = c->f[1];
  int64_t n = cc_numel(t);
  cc_tensor *dst = cc_is_contiguous(t) ? cc_retain(t) : cc_empty_like(t);
  if (!dst) return -1;
  char *base = cc_data_ptr(dst);
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t k = 0; k < n; k++) {
    double v;
    if (kind == RAND_INT) {
      double u = cc_random_at(seed, counter, k, 0);
      int64_t span = (int64_t)(p1 - p0);
      int64_t r = (int64_t)(u * (double)span);
      if (r >= span) r = span - 1;
      ((int64_t *)base)[k] = (int64_t)p0 + r;
      continue;
    }
    v = kind == RAND_UNIFORM ? p0 + (p1 - p0) * cc_random_at(seed, counter, k, 0)
                             : p0 + p1 * cc_random_at(seed, counter, k, 1);
    if (t->dtype == CC_FLOAT32) ((float *)base)[k] = (float)v;
    else ((double *)base)[k] = v;
  }
  int rc = 0;
  if (dst != t) rc = cc_run(CC_OP_COPY, t, 1, &dst, NULL, 0, NULL, 0);
  cc_release(dst);
  return rc;
}

static int dropout_mask_cpu(const cc_call *c) {
  cc_tensor *t = c->out[0];
  uint64_t counter = (uint64_t)c->i[0], seed = (uint64_t)c->i[1];
  double p = c->f[0], scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
  int64_t n = cc_numel(t);
  char *base = cc_data_ptr(t); /* freshly allocated: contiguous */
#pragma omp parallel for schedule(static) if (n > 65536)
  for (int64_t k = 0; k < n; k++) {
    double keep = cc_random_at(seed, counter, k, 0) >= p ? scale : 0.0;
    if (t->dtype == CC_FLOAT32) ((float *)base)[k] = (float)keep;
    else ((double *)base)[k] = keep;
  }
  return 0;
}

void cc_cpu_register_random(void) {
  cc_register_kernel(CC_OP_RANDOM, CC_CPU, random_cpu);
  cc_register_kernel(CC_OP_DROPOUT_MASK, CC_CPU, dropout_mask_cpu);
}
