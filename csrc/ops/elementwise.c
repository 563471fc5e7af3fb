/* elementwise.c — broadcasting unary, binary and scalar ops, comparisons, where/masked_fill,
 * fill and copy: forward, backward (composed of these same ops) and their CPU kernels.
 * Shapes: NumPy broadcasting; outputs are contiguous in the broadcast shape. */
#include "cpu_iter.h"
#include "scalar.h"

#include <stdio.h>

/* ======================================================================= op level ====== */

static cc_tensor *broadcast_out(const char *op, cc_tensor *a, cc_tensor *b, cc_tensor **ea, cc_tensor **eb,
                                cc_dtype out_dtype) {
  int n;
  int64_t shape[CC_MAX_DIMS];
  if (cc_check_same(op, a, b)) return NULL;
  if (cc_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &n, shape)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cc_last_error());
    cc_set_error("%s: %s", op, msg);
    return NULL;
  }
  *ea = cc_expand_to(a, n, shape);
  *eb = cc_expand_to(b, n, shape);
  cc_tensor *out = (*ea && *eb) ? cc_empty(n, shape, out_dtype, a->storage->device) : NULL;
  if (!out) {
    cc_release(*ea);
    cc_release(*eb);
    *ea = *eb = NULL;
  }
  return out;
}

static cc_tensor *binary_raw(const char *op, cc_tensor *a, cc_tensor *b, cc_binary_kind kind, cc_dtype out_dtype) {
  cc_tensor *ea, *eb;
  cc_tensor *out = broadcast_out(op, a, b, &ea, &eb, out_dtype);
  if (!out) return NULL;
  cc_tensor *in[2] = {ea, eb};
  int64_t k = kind;
  int rc = cc_run(CC_OP_BINARY, out, 2, in, &k, 1, NULL, 0);
  cc_release(ea);
  cc_release(eb);
  if (rc) {
    cc_release(out);
    return NULL;
  }
  return out;
}

/* ---- backward rules (run with grad mode off, so they build no graph) ---- */
static int reduce_to(cc_tensor *g, const cc_tensor *like, cc_tensor **slot) {
  *slot = cc_sum_to(g, like->ndim, like->shape);
  return *slot ? 0 : -1;
}

static int add_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  if (cc_node_needs(node, 0) && reduce_to(g, node->inputs[0], &gi[0])) return -1;
  if (cc_node_needs(node, 1) && reduce_to(g, node->inputs[1], &gi[1])) return -1;
  return 0;
}

static int sub_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  if (cc_node_needs(node, 0) && reduce_to(g, node->inputs[0], &gi[0])) return -1;
  if (cc_node_needs(node, 1)) {
    cc_tensor *neg = cc_unary(g, CC_UNARY_NEG);
    if (!neg) return -1;
    int rc = reduce_to(neg, node->inputs[1], &gi[1]);
    cc_release(neg);
    return rc;
  }
  return 0;
}

/* gi[k] = sum_to(g * factor) */
static int scaled_grad(cc_tensor *g, cc_tensor *factor, const cc_tensor *like, cc_tensor **slot) {
  cc_tensor *prod = factor ? cc_mul(g, factor) : NULL;
  if (!prod) return -1;
  int rc = reduce_to(prod, like, slot);
  cc_release(prod);
  return rc;
}

static int mul_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *a = node->saved[0], *b = node->saved[1];
  if (cc_node_needs(node, 0) && scaled_grad(g, b, a, &gi[0])) return -1;
  if (cc_node_needs(node, 1) && scaled_grad(g, a, b, &gi[1])) return -1;
  return 0;
}

static int div_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *a = node->saved[0], *b = node->saved[1], *out = node->saved[2];
  int rc = 0;
  if (cc_node_needs(node, 0)) {
    cc_tensor *q = cc_div(g, b);
    rc = q ? reduce_to(q, a, &gi[0]) : -1;
    cc_release(q);
    if (rc) return rc;
  }
  if (cc_node_needs(node, 1)) { /* d(a/b)/db = -out / b */
    cc_tensor *q = cc_div(out, b);
    cc_tensor *nq = q ? cc_unary(q, CC_UNARY_NEG) : NULL;
    rc = scaled_grad(g, nq, b, &gi[1]);
    cc_release(q);
    cc_release(nq);
  }
  return rc;
}

static int pow_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *a = node->saved[0], *b = node->saved[1], *out = node->saved[2];
  int rc = 0;
  if (cc_node_needs(node, 0)) { /* b * a^(b-1) */
    cc_tensor *bm1 = cc_add_scalar(b, -1.0);
    cc_tensor *p = bm1 ? cc_pow(a, bm1) : NULL;
    cc_tensor *f = p ? cc_mul(p, b) : NULL;
    rc = scaled_grad(g, f, a, &gi[0]);
    cc_release(bm1);
    cc_release(p);
    cc_release(f);
    if (rc) return rc;
  }
  if (cc_node_needs(node, 1)) { /* out * log(a) */
    cc_tensor *la = cc_unary(a, CC_UNARY_LOG);
    cc_tensor *f = la ? cc_mul(out, la) : NULL;
    rc = scaled_grad(g, f, b, &gi[1]);
    cc_release(la);
    cc_release(f);
  }
  return rc;
}

static cc_tensor *binary_op(const char *op, cc_tensor *a, cc_tensor *b, cc_binary_kind kind, const char *node_name,
                            cc_backward_fn bw, int save_mode) {
  if ((kind == CC_BIN_DIV || kind == CC_BIN_POW) && !cc_is_floating(a->dtype)) {
    cc_set_error("%s: integer tensors are not supported (convert with :float() first)", op);
    return NULL;
  }
  cc_tensor *out = binary_raw(op, a, b, kind, a->dtype);
  if (!out) return NULL;
  cc_tensor *ins[2] = {a, b};
  cc_node *node = cc_attach_node(out, node_name, bw, 2, ins);
  if (node && save_mode >= 1) {
    cc_node_save(node, a);
    cc_node_save(node, b);
    if (save_mode >= 2) cc_node_save(node, out);
  }
  return out;
}

cc_tensor *cc_add(cc_tensor *a, cc_tensor *b) { return binary_op("add", a, b, CC_BIN_ADD, "AddBackward", add_backward, 0); }
cc_tensor *cc_sub(cc_tensor *a, cc_tensor *b) { return binary_op("sub", a, b, CC_BIN_SUB, "SubBackward", sub_backward, 0); }
cc_tensor *cc_mul(cc_tensor *a, cc_tensor *b) { return binary_op("mul", a, b, CC_BIN_MUL, "MulBackward", mul_backward, 1); }
cc_tensor *cc_div(cc_tensor *a, cc_tensor *b) { return binary_op("div", a, b, CC_BIN_DIV, "DivBackward", div_backward, 2); }
cc_tensor *cc_pow(cc_tensor *a, cc_tensor *b) { return binary_op("pow", a, b, CC_BIN_POW, "PowBackward", pow_backward, 2); }

cc_tensor *cc_compare(cc_tensor *a, cc_tensor *b, cc_cmp_kind kind) {
  static const cc_binary_kind map[] = {CC_BIN_EQ, CC_BIN_NE, CC_BIN_LT, CC_BIN_LE, CC_BIN_GT, CC_BIN_GE};
  return binary_raw("compare", a, b, map[kind], a->dtype);
}

/* ---- unary ---- */
static const char *const unary_names[CC_UNARY_COUNT] = {"neg", "exp", "log", "sqrt", "abs", "relu", "sigmoid",
                                                        "silu", "tanh", "gelu", "sin", "cos", "floor", "round",
                                                        "leaky_relu", "elu", "gelu_tanh"};
static const char *const unary_nodes[CC_UNARY_COUNT] = {
    "NegBackward", "ExpBackward", "LogBackward", "SqrtBackward", "AbsBackward", "ReluBackward", "SigmoidBackward",
    "SiluBackward", "TanhBackward", "GeluBackward", "SinBackward", "CosBackward", "FloorBackward", "RoundBackward",
    "LeakyReluBackward", "EluBackward", "GeluTanhBackward"};

/* the kinds defined on int64 tensors (floor and round of an integer are the integer, as in torch) */
static bool unary_takes_int64(cc_unary_kind kind) {
  return kind == CC_UNARY_NEG || kind == CC_UNARY_ABS || kind == CC_UNARY_FLOOR || kind == CC_UNARY_ROUND;
}

static int unary_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *x = node->saved[0], *y = node->saved[1];
  cc_tensor *out = cc_empty_like(x);
  if (!out) return -1;
  cc_tensor *in[3] = {g, x, y};
  if (cc_run(CC_OP_UNARY_BACKWARD, out, 3, in, &node->ints[0], 1, &node->reals[0], 1)) {
    cc_release(out);
    return -1;
  }
  gi[0] = out;
  return 0;
}

cc_tensor *cc_unary(cc_tensor *x, cc_unary_kind kind) {
  return cc_unary_param(x, kind, kind == CC_UNARY_LEAKY_RELU ? 0.01 : (kind == CC_UNARY_ELU ? 1.0 : 0.0));
}

cc_tensor *cc_unary_param(cc_tensor *x, cc_unary_kind kind, double param) {
  if ((int)kind < 0 || kind >= CC_UNARY_COUNT) {
    cc_set_error("unknown unary op %d", (int)kind);
    return NULL;
  }
  if (!cc_is_floating(x->dtype) && !unary_takes_int64(kind)) {
    cc_set_error("%s: expected a floating tensor (float32 or float64), got %s", unary_names[kind],
                 cc_dtype_name(x->dtype));
    return NULL;
  }
  cc_tensor *out = cc_empty(x->ndim, x->shape, x->dtype, x->storage->device);
  if (!out) return NULL;
  if (!isfinite(param)) {
    cc_set_error("%s: the parameter must be finite, got %g", unary_names[kind], param);
    cc_release(out);
    return NULL;
  }
  int64_t k = kind;
  if (cc_run(CC_OP_UNARY, out, 1, &x, &k, 1, &param, 1)) {
    cc_release(out);
    return NULL;
  }
  cc_node *node = cc_attach_node(out, unary_nodes[kind], unary_backward, 1, &x);
  if (node) {
    node->ints[0] = kind;
    node->reals[0] = param;
    cc_node_save(node, x);
    cc_node_save(node, out);
  }
  return out;
}

/* ---- scalar right-hand sides ---- */
static int scalar_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *x = node->saved[0];
  double s = node->reals[0], hi = node->reals[1];
  switch ((cc_binary_kind)node->ints[0]) {
  case CC_BIN_ADD: gi[0] = cc_retain(g); break;
  case CC_BIN_MUL: gi[0] = cc_mul_scalar(g, s); break;
  case CC_BIN_RSUB: gi[0] = cc_unary(g, CC_UNARY_NEG); break;
  case CC_BIN_RDIV: { /* d(s/x) = -s / x^2 */
    cc_tensor *x2 = cc_pow_scalar(x, -2.0);
    cc_tensor *f = x2 ? cc_mul_scalar(x2, -s) : NULL;
    gi[0] = f ? cc_mul(g, f) : NULL;
    cc_release(x2);
    cc_release(f);
    break;
  }
  case CC_BIN_POW: { /* s * x^(s-1) */
    cc_tensor *p = cc_pow_scalar(x, s - 1.0);
    cc_tensor *f = p ? cc_mul_scalar(p, s) : NULL;
    gi[0] = f ? cc_mul(g, f) : NULL;
    cc_release(p);
    cc_release(f);
    break;
  }
  case CC_BIN_CLAMP: { /* gradient passes where lo <= x <= hi */
    double lohi[2] = {s, hi};
    cc_tensor *mask = cc_empty_like(x);
    int64_t k = CC_BIN_CLAMP + 100; /* the in-range mask kernel */
    if (mask && cc_run(CC_OP_SCALAR, mask, 1, &x, &k, 1, lohi, 2)) {
      cc_release(mask);
      mask = NULL;
    }
    gi[0] = mask ? cc_mul(g, mask) : NULL;
    cc_release(mask);
    break;
  }
  default: cc_set_error("no backward for this scalar op"); return -1;
  }
  return gi[0] ? 0 : -1;
}

static cc_tensor *scalar_op(const char *op, cc_tensor *a, cc_binary_kind kind, double s, double s2,
                            const char *node_name) {
  if (!cc_is_floating(a->dtype) && kind != CC_BIN_ADD && kind != CC_BIN_MUL && kind != CC_BIN_RSUB &&
      kind != CC_BIN_CLAMP) {
    cc_set_error("%s: expected a floating tensor, got %s", op, cc_dtype_name(a->dtype));
    return NULL;
  }
  cc_tensor *out = cc_empty(a->ndim, a->shape, a->dtype, a->storage->device);
  if (!out) return NULL;
  int64_t k = kind;
  double f[2] = {s, s2};
  if (cc_run(CC_OP_SCALAR, out, 1, &a, &k, 1, f, 2)) {
    cc_release(out);
    return NULL;
  }
  cc_node *node = cc_attach_node(out, node_name, scalar_backward, 1, &a);
  if (node) {
    node->ints[0] = kind;
    node->reals[0] = s;
    node->reals[1] = s2;
    if (kind == CC_BIN_RDIV || kind == CC_BIN_POW || kind == CC_BIN_CLAMP) cc_node_save(node, a);
  }
  return out;
}

cc_tensor *cc_add_scalar(cc_tensor *a, double s) { return scalar_op("add", a, CC_BIN_ADD, s, 0, "AddBackward"); }
cc_tensor *cc_mul_scalar(cc_tensor *a, double s) { return scalar_op("mul", a, CC_BIN_MUL, s, 0, "MulBackward"); }
cc_tensor *cc_rsub_scalar(cc_tensor *a, double s) { return scalar_op("rsub", a, CC_BIN_RSUB, s, 0, "RsubBackward"); }
cc_tensor *cc_rdiv_scalar(cc_tensor *a, double s) { return scalar_op("rdiv", a, CC_BIN_RDIV, s, 0, "RdivBackward"); }
cc_tensor *cc_pow_scalar(cc_tensor *a, double e) { return scalar_op("pow", a, CC_BIN_POW, e, 0, "PowBackward"); }
cc_tensor *cc_clamp(cc_tensor *x, double lo, double hi) {
  if (lo > hi) {
    cc_set_error("clamp: min (%g) is greater than max (%g)", lo, hi);
    return NULL;
  }
  return scalar_op("clamp", x, CC_BIN_CLAMP, lo, hi, "ClampBackward");
}

/* ---- where / masked_fill ---- */
static int where_backward(cc_node *node, cc_tensor *g, cc_tensor **gi) {
  cc_tensor *cond = node->saved[0];
  cc_tensor *zero = cc_scalar(0.0, g->dtype, g->storage->device);
  if (!zero) return -1;
  int rc = 0;
  for (int k = 1; k <= 2 && !rc; k++) {
    if (!cc_node_needs(node, k)) continue;
    cc_tensor *sel = k == 1 ? cc_where(cond, g, zero) : cc_where(cond, zero, g);
    rc = sel ? reduce_to(sel, node->inputs[k], &gi[k]) : -1;
    cc_release(sel);
  }
  cc_release(zero);
  return rc;
}

cc_tensor *cc_where(cc_tensor *cond, cc_tensor *a, cc_tensor *b) {
  if (cc_check_same("where", a, b)) return NULL;
  int n1, n;
  int64_t s1[CC_MAX_DIMS], shape[CC_MAX_DIMS];
  if (cc_broadcast_shapes(a->ndim, a->shape, b->ndim, b->shape, &n1, s1) ||
      cc_broadcast_shapes(cond->ndim, cond->shape, n1, s1, &n, shape)) {
    char msg[1024];
    snprintf(msg, sizeof msg, "%s", cc_last_error());
    cc_set_error("where: %s", msg);
    return NULL;
  }
  cc_tensor *c = cond->dtype == a->dtype ? cc_retain(cond) : cc_to_dtype(cond, a->dtype);
  cc_tensor *ec = c ? cc_expand_to(c, n, shape) : NULL;
  cc_tensor *ea = cc_expand_to(a, n, shape), *eb = cc_expand_to(b, n, shape);
  cc_tensor *out = ec && ea && eb ? cc_empty(n, shape, a->dtype, a->storage->device) : NULL;
  cc_tensor *in[3] = {ec, ea, eb};
  if (out && cc_run(CC_OP_WHERE, out, 3, in, NULL, 0, NULL, 0)) {
    cc_release(out);
    out = NULL;
  }
  if (out) {
    cc_tensor *ins[3] = {NULL, a, b};
    cc_node *node = cc_attach_node(out, "WhereBackward", where_backward, 3, ins);
    if (node) cc_node_save(node, c);
  }
  cc_release(c);
  cc_release(ec);
  cc_release(ea);
  cc_release(eb);
  return out;
}

cc_tensor *cc_masked_fill(cc_tensor *x, cc_tensor *mask, double value) {
  cc_tensor *v = cc_scalar(value, x->dtype, x->storage->device);
  if (!v) return NULL;
  cc_tensor *out = cc_where(mask, v, x);
  cc_release(v);
  return out;
}

/* ======================================================================= CPU kernels ===== */

typedef struct {
  int kind;
  double a, b;
} scalar_ctx;

/* fill */
#define FILL_ROW(T)                                                                                \
  static void fill_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *ctx) {   \
    T v = (T)((const scalar_ctx *)ctx)->a, *o = (T *)p[0];                                          \
    int64_t so = CC_STRIDE(0, T);                                                                  \
    for (int64_t i = 0; i < n; i++) o[i * so] = v;                                                 \
  }
typedef int64_t i64;
FILL_ROW(float)
FILL_ROW(double)
FILL_ROW(i64)

static int fill_cpu(const cc_call *c) {
  scalar_ctx ctx = {0, c->f[0], 0};
  static const cc_row_fn rows[] = {fill_row_float, fill_row_double, fill_row_i64};
  return cc_cpu_foreach(1, c->out, rows[c->out[0]->dtype], &ctx);
}

/* copy with conversion: 3 x 3 dtype pairs */
#define COPY_ROW(TO, TI)                                                                           \
  static void copy_row_##TO##_##TI(int64_t n, char *const *p, const int64_t *strides, const void *ctx) { \
    (void)ctx;                                                                                     \
    TO *o = (TO *)p[0];                                                                            \
    const TI *a = (const TI *)p[1];                                                                \
    int64_t so = CC_STRIDE(0, TO), sa = CC_STRIDE(1, TI);                                          \
    if (so == 1 && sa == 1)                                                                        \
      for (int64_t i = 0; i < n; i++) o[i] = (TO)a[i];                                             \
    else                                                                                           \
      for (int64_t i = 0; i < n; i++) o[i * so] = (TO)a[i * sa];                                   \
  }
COPY_ROW(float, float)
COPY_ROW(float, double)
COPY_ROW(float, i64)
COPY_ROW(double, float)
COPY_ROW(double, double)
COPY_ROW(double, i64)
COPY_ROW(i64, float)
COPY_ROW(i64, double)
COPY_ROW(i64, i64)

static int copy_cpu(const cc_call *c) {
  static const cc_row_fn rows[3][3] = {{copy_row_float_float, copy_row_float_double, copy_row_float_i64},
                                       {copy_row_double_float, copy_row_double_double, copy_row_double_i64},
                                       {copy_row_i64_float, copy_row_i64_double, copy_row_i64_i64}};
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  if (!cc_same_shape(c->out[0], c->in[0])) {
    cc_set_error("copy: shapes differ");
    return -1;
  }
  return cc_cpu_foreach(2, ops, rows[c->out[0]->dtype][c->in[0]->dtype], NULL);
}

/* unary forward and backward, per floating type */
#define UNARY_CASE(KIND, FN, SUF)                                                                  \
  case KIND:                                                                                       \
    if (so == 1 && sa == 1)                                                                        \
      for (int64_t i = 0; i < n; i++) o[i] = FN##SUF(a[i]);                                        \
    else                                                                                           \
      for (int64_t i = 0; i < n; i++) o[i * so] = FN##SUF(a[i * sa]);                              \
    break;

#define UNARY_CASE_P(KIND, FN, SUF)                                                                \
  case KIND:                                                                                       \
    for (int64_t i = 0; i < n; i++) o[i * so] = FN##SUF(a[i * sa], param);                         \
    break;

#define UNARY_ROW(T, SUF)                                                                          \
  static void unary_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *ctx) {  \
    T *o = (T *)p[0];                                                                              \
    const T *a = (const T *)p[1];                                                                  \
    int64_t so = CC_STRIDE(0, T), sa = CC_STRIDE(1, T);                                            \
    const T param = (T)((const scalar_ctx *)ctx)->a;                                               \
    switch (((const scalar_ctx *)ctx)->kind) {                                                     \
      UNARY_CASE(CC_UNARY_NEG, cc_neg, SUF)                                                        \
      UNARY_CASE(CC_UNARY_EXP, cc_exp, SUF)                                                        \
      UNARY_CASE(CC_UNARY_LOG, cc_log, SUF)                                                        \
      UNARY_CASE(CC_UNARY_SQRT, cc_sqrt, SUF)                                                      \
      UNARY_CASE(CC_UNARY_ABS, cc_abs, SUF)                                                        \
      UNARY_CASE(CC_UNARY_RELU, cc_relu, SUF)                                                      \
      UNARY_CASE(CC_UNARY_SIGMOID, cc_sigmoid, SUF)                                                \
      UNARY_CASE(CC_UNARY_SILU, cc_silu, SUF)                                                      \
      UNARY_CASE(CC_UNARY_TANH, cc_tanh, SUF)                                                      \
      UNARY_CASE(CC_UNARY_GELU, cc_gelu, SUF)                                                      \
      UNARY_CASE(CC_UNARY_SIN, cc_sin, SUF)                                                        \
      UNARY_CASE(CC_UNARY_COS, cc_cos, SUF)                                                        \
      UNARY_CASE(CC_UNARY_FLOOR, cc_floor, SUF)                                                    \
      UNARY_CASE(CC_UNARY_ROUND, cc_round, SUF)                                                    \
      UNARY_CASE_P(CC_UNARY_LEAKY_RELU, cc_leaky_relu, SUF)                                        \
      UNARY_CASE_P(CC_UNARY_ELU, cc_elu, SUF)                                                      \
      UNARY_CASE_P(CC_UNARY_GELU_TANH, cc_gelu_tanh, SUF)                                          \
    }                                                                                              \
  }
UNARY_ROW(float, _f)
UNARY_ROW(double, _d)

static void unary_row_i64(int64_t n, char *const *p, const int64_t *strides, const void *ctx) {
  int64_t *o = (int64_t *)p[0];
  const int64_t *a = (const int64_t *)p[1];
  int64_t so = CC_STRIDE(0, int64_t), sa = CC_STRIDE(1, int64_t);
  int kind = ((const scalar_ctx *)ctx)->kind;
  for (int64_t i = 0; i < n; i++) {
    int64_t v = a[i * sa];
    o[i * so] = kind == CC_UNARY_NEG ? -v : (kind == CC_UNARY_ABS ? (v < 0 ? -v : v) : v); /* floor, round: v */
  }
}

static int unary_cpu(const cc_call *c) {
  scalar_ctx ctx = {(int)c->i[0], c->f[0], 0};
  static const cc_row_fn rows[] = {unary_row_float, unary_row_double, unary_row_i64};
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  return cc_cpu_foreach(2, ops, rows[c->out[0]->dtype], &ctx);
}

#define UNARY_BW_CASE(KIND, FN, SUF)                                                               \
  case KIND:                                                                                       \
    for (int64_t i = 0; i < n; i++) o[i * so] = FN##SUF(g[i * sg], x[i * sx], y[i * sy]);          \
    break;

#define UNARY_BW_CASE_P(KIND, FN, SUF)                                                             \
  case KIND:                                                                                       \
    for (int64_t i = 0; i < n; i++) o[i * so] = FN##SUF(g[i * sg], x[i * sx], y[i * sy], param);  \
    break;

#define UNARY_BW_ROW(T, SUF)                                                                       \
  static void unary_bw_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *ctx) { \
    T *o = (T *)p[0];                                                                              \
    const T *g = (const T *)p[1], *x = (const T *)p[2], *y = (const T *)p[3];                      \
    int64_t so = CC_STRIDE(0, T), sg = CC_STRIDE(1, T), sx = CC_STRIDE(2, T), sy = CC_STRIDE(3, T); \
    const T param = (T)((const scalar_ctx *)ctx)->a;                                               \
    switch (((const scalar_ctx *)ctx)->kind) {                                                     \
      UNARY_BW_CASE(CC_UNARY_NEG, cc_neg_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_EXP, cc_exp_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_LOG, cc_log_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_SQRT, cc_sqrt_bw, SUF)                                                \
      UNARY_BW_CASE(CC_UNARY_ABS, cc_abs_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_RELU, cc_relu_bw, SUF)                                                \
      UNARY_BW_CASE(CC_UNARY_SIGMOID, cc_sigmoid_bw, SUF)                                          \
      UNARY_BW_CASE(CC_UNARY_SILU, cc_silu_bw, SUF)                                                \
      UNARY_BW_CASE(CC_UNARY_TANH, cc_tanh_bw, SUF)                                                \
      UNARY_BW_CASE(CC_UNARY_GELU, cc_gelu_bw, SUF)                                                \
      UNARY_BW_CASE(CC_UNARY_SIN, cc_sin_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_COS, cc_cos_bw, SUF)                                                  \
      UNARY_BW_CASE(CC_UNARY_FLOOR, cc_floor_bw, SUF)                                              \
      UNARY_BW_CASE(CC_UNARY_ROUND, cc_round_bw, SUF)                                              \
      UNARY_BW_CASE_P(CC_UNARY_LEAKY_RELU, cc_leaky_relu_bw, SUF)                                  \
      UNARY_BW_CASE_P(CC_UNARY_ELU, cc_elu_bw, SUF)                                                \
      UNARY_BW_CASE_P(CC_UNARY_GELU_TANH, cc_gelu_tanh_bw, SUF)                                    \
    }                                                                                              \
  }
UNARY_BW_ROW(float, _f)
UNARY_BW_ROW(double, _d)

static int unary_backward_cpu(const cc_call *c) {
  if (!cc_is_floating(c->out[0]->dtype)) {
    cc_set_error("unary backward: floating tensors only");
    return -1;
  }
  scalar_ctx ctx = {(int)c->i[0], c->f[0], 0};
  static const cc_row_fn rows[] = {unary_bw_row_float, unary_bw_row_double};
  cc_tensor *ops[4] = {c->out[0], c->in[0], c->in[1], c->in[2]};
  return cc_cpu_foreach(4, ops, rows[c->out[0]->dtype], &ctx);
}

/* binary: one loop per kind so each vectorises */
#define BIN_LOOP(EXPR)                                                                             \
  if (so == 1 && sa == 1 && sb == 1)                                                               \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = a[i], y = b[i];                                                                        \
      o[i] = (EXPR);                                                                               \
    }                                                                                              \
  else if (so == 1 && sa == 1 && sb == 0) {                                                        \
    T y = b[0];                                                                                    \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = a[i];                                                                                  \
      o[i] = (EXPR);                                                                               \
    }                                                                                              \
  } else                                                                                           \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = a[i * sa], y = b[i * sb];                                                              \
      o[i * so] = (EXPR);                                                                          \
    }

#define BINARY_ROW(T, POW)                                                                         \
  static void binary_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *ctx) { \
    T *o = (T *)p[0];                                                                              \
    const T *a = (const T *)p[1], *b = (const T *)p[2];                                            \
    int64_t so = CC_STRIDE(0, T), sa = CC_STRIDE(1, T), sb = CC_STRIDE(2, T);                      \
    switch (((const scalar_ctx *)ctx)->kind) {                                                     \
    case CC_BIN_ADD: BIN_LOOP(x + y) break;                                                        \
    case CC_BIN_SUB: BIN_LOOP(x - y) break;                                                        \
    case CC_BIN_MUL: BIN_LOOP(x * y) break;                                                        \
    case CC_BIN_DIV: BIN_LOOP(x / y) break;                                                        \
    case CC_BIN_POW: BIN_LOOP(POW(x, y)) break;                                                    \
    case CC_BIN_EQ: BIN_LOOP((T)(x == y)) break;                                                   \
    case CC_BIN_NE: BIN_LOOP((T)(x != y)) break;                                                   \
    case CC_BIN_LT: BIN_LOOP((T)(x < y)) break;                                                    \
    case CC_BIN_LE: BIN_LOOP((T)(x <= y)) break;                                                   \
    case CC_BIN_GT: BIN_LOOP((T)(x > y)) break;                                                    \
    case CC_BIN_GE: BIN_LOOP((T)(x >= y)) break;                                                   \
    case CC_BIN_MAXIMUM: BIN_LOOP(x > y ? x : y) break;                                            \
    }                                                                                              \
  }
static inline int64_t ipow(int64_t x, int64_t y) {
  int64_t r = 1;
  while (y-- > 0) r *= x;
  return r;
}
#define T float
BINARY_ROW(float, cc_pow2_f)
#undef T
#define T double
BINARY_ROW(double, cc_pow2_d)
#undef T
#define T int64_t
BINARY_ROW(i64, ipow)
#undef T

static int binary_cpu(const cc_call *c) {
  scalar_ctx ctx = {(int)c->i[0], 0, 0};
  static const cc_row_fn rows[] = {binary_row_float, binary_row_double, binary_row_i64};
  cc_tensor *ops[3] = {c->out[0], c->in[0], c->in[1]};
  return cc_cpu_foreach(3, ops, rows[c->out[0]->dtype], &ctx);
}

/* tensor (op) scalar */
#define SC_LOOP(EXPR)                                                                              \
  if (so == 1 && sa == 1)                                                                          \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = a[i];                                                                                  \
      o[i] = (EXPR);                                                                               \
    }                                                                                              \
  else                                                                                             \
    for (int64_t i = 0; i < n; i++) {                                                              \
      T x = a[i * sa];                                                                             \
      o[i * so] = (EXPR);                                                                          \
    }

#define SCALAR_ROW(T, POW)                                                                         \
  static void scalar_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *vctx) { \
    const scalar_ctx *ctx = (const scalar_ctx *)vctx;                                              \
    T *o = (T *)p[0];                                                                              \
    const T *a = (const T *)p[1];                                                                  \
    int64_t so = CC_STRIDE(0, T), sa = CC_STRIDE(1, T);                                            \
    T s = (T)ctx->a, s2 = (T)ctx->b;                                                               \
    switch (ctx->kind) {                                                                           \
    case CC_BIN_ADD: SC_LOOP(x + s) break;                                                         \
    case CC_BIN_MUL: SC_LOOP(x * s) break;                                                         \
    case CC_BIN_RSUB: SC_LOOP(s - x) break;                                                        \
    case CC_BIN_RDIV: SC_LOOP(s / x) break;                                                        \
    case CC_BIN_POW: SC_LOOP(POW(x, s)) break;                                                     \
    case CC_BIN_CLAMP: SC_LOOP(x < s ? s : (x > s2 ? s2 : x)) break;                               \
    case CC_BIN_CLAMP + 100: SC_LOOP((T)(x >= s && x <= s2)) break;                                \
    }                                                                                              \
  }
#define T float
SCALAR_ROW(float, cc_pow2_f)
#undef T
#define T double
SCALAR_ROW(double, cc_pow2_d)
#undef T
#define T int64_t
SCALAR_ROW(i64, ipow)
#undef T

static int scalar_cpu(const cc_call *c) {
  scalar_ctx ctx = {(int)c->i[0], c->f[0], c->f[1]};
  if (c->out[0]->dtype == CC_INT64) { /* clamp bounds of +-inf do not fit an integer */
    ctx.a = ctx.a < -9.2e18 ? -9.2e18 : (ctx.a > 9.2e18 ? 9.2e18 : ctx.a);
    ctx.b = ctx.b < -9.2e18 ? -9.2e18 : (ctx.b > 9.2e18 ? 9.2e18 : ctx.b);
  }
  static const cc_row_fn rows[] = {scalar_row_float, scalar_row_double, scalar_row_i64};
  cc_tensor *ops[2] = {c->out[0], c->in[0]};
  return cc_cpu_foreach(2, ops, rows[c->out[0]->dtype], &ctx);
}

#define WHERE_ROW(T)                                                                               \
  static void where_row_##T(int64_t n, char *const *p, const int64_t *strides, const void *ctx) {  \
    (void)ctx;                                                                                     \
    T *o = (T *)p[0];                                                                              \
    const T *c = (const T *)p[1], *a = (const T *)p[2], *b = (const T *)p[3];                      \
    int64_t so = CC_STRIDE(0, T), sc = CC_STRIDE(1, T), sa = CC_STRIDE(2, T), sb = CC_STRIDE(3, T); \
    for (int64_t i = 0; i < n; i++) o[i * so] = c[i * sc] != 0 ? a[i * sa] : b[i * sb];           \
  }
WHERE_ROW(float)
WHERE_ROW(double)
WHERE_ROW(i64)

static int where_cpu(const cc_call *c) {
  static const cc_row_fn rows[] = {where_row_float, where_row_double, where_row_i64};
  cc_tensor *ops[4] = {c->out[0], c->in[0], c->in[1], c->in[2]};
  return cc_cpu_foreach(4, ops, rows[c->out[0]->dtype], NULL);
}

void cc_cpu_register_elementwise(void) {
  cc_register_kernel(CC_OP_FILL, CC_CPU, fill_cpu);
  cc_register_kernel(CC_OP_COPY, CC_CPU, copy_cpu);
  cc_register_kernel(CC_OP_UNARY, CC_CPU, unary_cpu);
  cc_register_kernel(CC_OP_UNARY_BACKWARD, CC_CPU, unary_backward_cpu);
  cc_register_kernel(CC_OP_BINARY, CC_CPU, binary_cpu);
  cc_register_kernel(CC_OP_SCALAR, CC_CPU, scalar_cpu);
  cc_register_kernel(CC_OP_WHERE, CC_CPU, where_cpu);
}
