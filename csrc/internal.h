/* internal.h — what the core's files share and what a backend implements: the op table (kernel
 * entry points per device), the kernel call record, autograd node construction, and small helpers.
 * Nothing here includes a backend header: backends register into these tables at load time.
 */
#ifndef COCOLA_INTERNAL_H
#define COCOLA_INTERNAL_H

#include "cocola.h"

#include <math.h>
#include <stdatomic.h>
#include <string.h>

/* ---- the op table: kernel entry points a backend provides ---------------------------------- */
/* X(name, "doc of the operands") — one list generates the enum and the name table. */
#define CC_OP_LIST(X)                                                                              \
  X(FILL, "out <- f0")                                                                            \
  X(COPY, "out <- in0 (any strides, any dtype)")                                                  \
  X(RANDOM, "out <- random: i0 kind (0 uniform,1 normal,2 randint), i1 counter, f0 f1 params")    \
  X(UNARY, "out <- kind i0 (in0), f0 the kind's parameter")                                      \
  X(UNARY_BACKWARD, "out <- d kind i0: in0 grad_out, in1 x, in2 y; f0 the parameter")             \
  X(BINARY, "out <- in0 (kind i0) in1, inputs expanded to out's shape")                           \
  X(SCALAR, "out <- in0 (kind i0) f0 [f1]")                                                       \
  X(WHERE, "out <- in0 != 0 ? in1 : in2")                                                         \
  X(SUM, "out <- sum of in0 over the dims where out has size 1 and in0 does not (keepdim shape)") \
  X(MAX, "out0 values, out1 int64 indices of in0 along dim i0 (keepdim shape)")                   \
  X(CUMSUM, "out <- running sum of in0 along dim i0 (in0's shape), from the last element when i1 (reverse)") \
  X(SORT, "out0 values, out1 int64 indices of in0 sorted along dim i0 (stable; NaN above every number); i1 descending") \
  X(SORT_BACKWARD, "out dx <- in0 grad placed along dim i0 at the int64 indices in1 (a permutation of each row); all one shape") \
  X(INDEX_SELECT, "out <- in0 x picked along dim i0 at the int64 indices of 1-D in1 (out: x's shape with dim resized to #in1); fails on an index outside dim") \
  X(INDEX_ADD, "out (x's shape) <- zeros, then each slice j of in0 grad (#in1 along dim i0) added at slice in1[j] of out, in index order; the kernel writes all of out") \
  X(GATHER, "out (in1's shape) <- in0 x at index in1 (int64, x's rank, no larger than x off dim i0) along dim i0; fails on an index outside dim") \
  X(SCATTER_ADD, "out (x's shape) <- zeros, then in0 grad (in1's shape) added at the int64 indices in1 along dim i0, in index order; the kernel writes all of out") \
  X(GEMM, "out[..] <- f0 op(in0[..]) op(in1[..]) + f1 out[..] over equal batch dims; i0 tA, i1 tB") \
  X(CONV2D, "out (N,O,Ho,Wo) <- conv2d(in0 x (N,C,H,W), in1 w (O,C/g,kh,kw)) + in2 bias (O) or NULL; all contiguous; i0 sh, i1 sw, i2 ph, i3 pw, i4 dh, i5 dw, i6 groups") \
  X(CONV2D_BACKWARD_INPUT, "out dx (N,C,H,W) <- from in0 grad_out (N,O,Ho,Wo), in1 w; contiguous; ints as CONV2D") \
  X(CONV2D_BACKWARD_WEIGHT, "out dw (O,C/g,kh,kw) <- from in0 grad_out, in1 x; contiguous; ints as CONV2D") \
  X(PAD, "out <- constant pad of contiguous in0; i[2k], i[2k+1] before/after of dim ndim-1-k for every dim (negative crops), f0 value") \
  X(AVG_POOL2D, "out (..,oh,ow) <- adaptive average pool of contiguous in0 (..,H,W), torch's bins") \
  X(AVG_POOL2D_BACKWARD, "out dx (..,H,W) <- of adaptive average pool from contiguous in0 grad_out (..,oh,ow)") \
  X(MAX_POOL2D, "out0 values, out1 int64 flat indices into H*W (..,oh,ow) <- max pool of contiguous in0 (..,H,W); i0 kh, i1 kw, i2 sh, i3 sw, i4 ph, i5 pw, i6 dh, i7 dw; padding is -inf, NaN wins") \
  X(MAX_POOL2D_BACKWARD, "out dx (..,H,W) <- sum of contiguous in0 grad (..,oh,ow) over the windows whose index in1 points at each element; ints as MAX_POOL2D") \
  X(BATCH_NORM, "out0 y, out1 mean, out2 invstd of in0 x; in1 rm, in2 rv, in3 w, in4 b; i0 train, f0 mom, f1 eps") \
  X(BATCH_NORM_BACKWARD, "out0 dx, out1 dw, out2 db from in0 dy, in1 x, in2 mean, in3 invstd, in4 w; i0 train") \
  X(LAYER_NORM, "out0 y, out1 mean, out2 invstd of in0 over the last i0 dims; in1 w, in2 b; f0 eps") \
  X(LAYER_NORM_BACKWARD, "out0 dx, out1 dw, out2 db from in0 dy, in1 x, in2 mean, in3 invstd, in4 w; i0 nnorm") \
  X(SOFTMAX, "out <- (log_)softmax of in0 along dim i1; i0 log")                                   \
  X(SOFTMAX_BACKWARD, "out <- dx from in0 dy, in1 y along dim i1; i0 log")                         \
  X(NLL, "out (0-d) <- -mean in0[n, in1[n]] of in0 (N,C), int64 in1 (N); fails when out of range") \
  X(NLL_BACKWARD, "out (N,C) <- -in0 / N at [n, in1[n]], else 0; in0 0-d grad, in1 targets")       \
  X(DROPOUT_MASK, "out <- (u >= p) / (1 - p) from counter i0, p f0")                              \
  X(ADAM_STEP, "in0 param, in1 grad, in2 m, in3 v updated in place; f0..: lr b1 b2 eps wd bc1 bc2; i0 AdamW")

typedef enum {
#define CC_OP_ENUM(name, doc) CC_OP_##name,
  CC_OP_LIST(CC_OP_ENUM)
#undef CC_OP_ENUM
      CC_OP_COUNT
} cc_op;

extern const char *const cc_op_names[CC_OP_COUNT];

typedef struct cc_call {
  cc_op op;
  int n_in, n_out;
  cc_tensor *in[8];
  cc_tensor *out[4];
  int64_t i[16];
  double f[8];
} cc_call;

typedef int (*cc_kernel)(const cc_call *call);

void cc_register_kernel(cc_op op, int device, cc_kernel kernel);
bool cc_kernel_supported(cc_op op, int device);
/* runs the kernel of the device of out[0] (or in[0]); checks all operands live on that device */
int cc_dispatch(cc_call *call);

/* ---- devices ---- */
typedef struct cc_device_ops {
  const char *name;
  void *(*alloc)(size_t nbytes);
  void (*free)(void *ptr, size_t nbytes);
  int (*copy)(void *dst, int dst_device, const void *src, int src_device, size_t nbytes);
  int (*sync)(void);
} cc_device_ops;
void cc_register_device(int device, const cc_device_ops *ops);
const cc_device_ops *cc_device_get(int device);
void cc_cpu_backend_init(void); /* registers the CPU device and every CPU kernel */
void cc_init(void);             /* idempotent: CPU always, other backends when built */

/* ---- OpenBLAS's thread controls, bound weakly (NULL where the BLAS is not OpenBLAS) ---- */
extern void openblas_set_num_threads(int n) __attribute__((weak));
extern int openblas_get_num_threads(void) __attribute__((weak));
extern int openblas_get_parallel(void) __attribute__((weak)); /* 0 sequential, 1 pthreads, 2 OpenMP */

/* ---- storage ---- */
cc_storage *cc_storage_new(size_t nbytes, int device);
void cc_storage_release(cc_storage *s);
cc_tensor *cc_tensor_wrap(cc_storage *s, int64_t offset, int ndim, const int64_t *shape,
                          const int64_t *stride, cc_dtype dt); /* retains s */
void cc_contiguous_strides(int ndim, const int64_t *shape, int64_t *stride);
int cc_check_shape(int ndim, const int64_t *shape);

/* ---- autograd nodes ---- */
#define CC_NODE_MAX_INPUTS 8
#define CC_NODE_MAX_SAVED 8
typedef int (*cc_backward_fn)(cc_node *node, cc_tensor *grad_out, cc_tensor **grad_in);
struct cc_node {
  const char *name;
  cc_backward_fn backward;
  int n_inputs;
  cc_tensor *inputs[CC_NODE_MAX_INPUTS]; /* retained; grad flows to those that require it */
  int n_saved;
  cc_tensor *saved[CC_NODE_MAX_SAVED];   /* retained detached aliases */
  int64_t ints[16];
  double reals[4];
  int64_t shape[CC_MAX_DIMS]; /* e.g. an input's shape */
  int ndim;
  bool freed;
  /* a function node (cc_function_attach): its backward and what it keeps, released once with the graph */
  cc_function_backward user_backward;
  void *user;
  void (*user_free)(void *user);
};
/* the shared grad_fn of results whose autograd node could not be allocated (autograd.c) */
extern cc_node cc_lost_graph_node;

bool cc_any_requires_grad(int n, cc_tensor *const *ts);
/* when grad mode is on and an input requires grad: makes out a non-leaf with a new node and
   returns it for the op to fill; otherwise returns NULL */
cc_node *cc_attach_node(cc_tensor *out, const char *name, cc_backward_fn backward, int n,
                        cc_tensor *const *inputs);
void cc_node_save(cc_node *node, cc_tensor *t); /* saves a detached alias (no reference cycles) */
static inline bool cc_node_needs(const cc_node *node, int i) {
  return node->inputs[i] && node->inputs[i]->requires_grad;
}

/* ---- shape helpers ---- */
int cc_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out);
void cc_shape_str(int ndim, const int64_t *shape, char *buf, size_t n);
/* expand t (a view) to a broadcast shape; a new reference */
cc_tensor *cc_expand_to(cc_tensor *t, int ndim, const int64_t *shape);
/* checks that two tensors share a dtype and device */
int cc_check_same(const char *op, const cc_tensor *a, const cc_tensor *b);
int cc_check_floating(const char *op, const cc_tensor *t);

/* kinds shared by the BINARY and SCALAR kernels */
typedef enum {
  CC_BIN_ADD, CC_BIN_SUB, CC_BIN_MUL, CC_BIN_DIV, CC_BIN_POW,
  CC_BIN_EQ, CC_BIN_NE, CC_BIN_LT, CC_BIN_LE, CC_BIN_GT, CC_BIN_GE,
  CC_BIN_RSUB, CC_BIN_RDIV, CC_BIN_CLAMP, CC_BIN_MAXIMUM,
  CC_BIN_COUNT
} cc_binary_kind;

/* checks a GEMM call's operands (equal rank >= 2, one floating dtype, shapes that agree, matrix
   sizes within the int range the BLAS libraries take) and gives its sizes; lib names the library
   in the error. 0, or -1 and the error */
int cc_gemm_sizes(const cc_call *c, const char *lib, int64_t *M, int64_t *N, int64_t *K, int64_t *nbatch);

/* run a kernel with up to 3 inputs and 1 output */
int cc_run(cc_op op, cc_tensor *out, int n_in, cc_tensor *const *in, const int64_t *ints, int n_ints,
           const double *reals, int n_reals);

#define CC_CHECK(cond, ...)                                                                        \
  do {                                                                                             \
    if (!(cond)) {                                                                                 \
      cc_set_error(__VA_ARGS__);                                                                   \
      goto fail;                                                                                   \
    }                                                                                              \
  } while (0)

#define CC_TRY(expr)                                                                               \
  do {                                                                                             \
    if (!(expr)) goto fail;                                                                        \
  } while (0)

/* release helper for cleanup paths */
static inline void cc_release_n(int n, cc_tensor **ts) {
  for (int i = 0; i < n; i++) {
    cc_release(ts[i]);
    ts[i] = NULL;
  }
}

/* ---- operand checks every backend's kernel of an op shares (one message, one rule) ---------- */
/* CUMSUM: in0 x, out (x's shape and dtype), i0 dim in range */
static inline bool cc_cumsum_operands_ok(const cc_call *c) {
  const cc_tensor *x = c->in[0], *out = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_same_shape(x, out) || x->dtype != out->dtype || dim < 0 || dim >= x->ndim) {
    cc_set_error("cumsum: the output must have the input's shape and dtype");
    return false;
  }
  return true;
}

/* SORT: in0 x, out0 values (x's shape and dtype), out1 int64 indices (x's shape), i0 dim in range */
static inline bool cc_sort_operands_ok(const cc_call *c) {
  const cc_tensor *x = c->in[0], *vals = c->out[0], *idx = c->out[1];
  int dim = (int)c->i[0];
  if (!cc_same_shape(x, vals) || !cc_same_shape(x, idx) || vals->dtype != x->dtype || idx->dtype != CC_INT64 ||
      dim < 0 || dim >= x->ndim) {
    cc_set_error("sort: outputs must have the input's shape (values of its dtype, int64 indices)");
    return false;
  }
  return true;
}

/* SORT_BACKWARD: in0 gradient, in1 int64 indices, out dx, one shape, i0 dim in range */
static inline bool cc_sort_backward_operands_ok(const cc_call *c) {
  const cc_tensor *g = c->in[0], *idx = c->in[1], *dx = c->out[0];
  int dim = (int)c->i[0];
  if (!cc_same_shape(g, idx) || !cc_same_shape(g, dx) || idx->dtype != CC_INT64 || g->dtype != dx->dtype ||
      dim < 0 || dim >= g->ndim) {
    cc_set_error("sort backward: gradient, indices and result must share a shape, with int64 indices");
    return false;
  }
  return true;
}

/* INDEX_SELECT and INDEX_ADD: one operand `full` (x of INDEX_SELECT, the result of INDEX_ADD) and one `picked`
   (the result of INDEX_SELECT, the gradient of INDEX_ADD) of one rank and dtype that differ only along dim i0,
   where picked has the length of the 1-D int64 index in1 */
static inline bool cc_index_select_operands_ok(const cc_call *c, const char *op, const cc_tensor *full,
                                               const cc_tensor *picked) {
  const cc_tensor *idx = c->in[1];
  int dim = (int)c->i[0];
  bool ok = idx->dtype == CC_INT64 && idx->ndim == 1 && full->ndim == picked->ndim && full->dtype == picked->dtype &&
            dim >= 0 && dim < full->ndim && picked->shape[dim] == idx->shape[0];
  for (int d = 0; ok && d < full->ndim; d++) ok = d == dim || full->shape[d] == picked->shape[d];
  if (!ok) cc_set_error("%s: operands must share a rank and dtype and differ only along dim, with a 1-D int64 index", op);
  return ok;
}

/* GATHER and SCATTER_ADD: `full` (x of GATHER, the result of SCATTER_ADD) and `picked` (the result of GATHER,
   the gradient of SCATTER_ADD) of one dtype; the int64 index in1 has picked's shape, full's rank, and no
   larger sizes than full except along dim i0 */
static inline bool cc_gather_operands_ok(const cc_call *c, const char *op, const cc_tensor *full,
                                         const cc_tensor *picked) {
  const cc_tensor *idx = c->in[1];
  int dim = (int)c->i[0];
  bool ok = idx->dtype == CC_INT64 && cc_same_shape(idx, picked) && idx->ndim == full->ndim &&
            full->dtype == picked->dtype && dim >= 0 && dim < full->ndim;
  for (int d = 0; ok && d < full->ndim; d++) ok = d == dim || idx->shape[d] <= full->shape[d];
  if (!ok) cc_set_error("%s: the int64 index must have the result's shape and the input's rank, and no larger sizes off dim", op);
  return ok;
}

/* MAX_POOL2D: in0 x (..,H,W), out0 values and out1 int64 indices (..,oh,ow), contiguous, one rank; the window
   sizes of the call's ints positive; MAX_POOL2D_BACKWARD: in0 grad and in1 int64 indices (..,oh,ow), out dx (..,H,W) */
static inline bool cc_max_pool2d_operands_ok(const cc_call *c, const cc_tensor *big, const cc_tensor *small,
                                             const cc_tensor *idx) {
  int nd = big->ndim;
  bool ok = nd >= 2 && small->ndim == nd && cc_same_shape(small, idx) && idx->dtype == CC_INT64 &&
            big->dtype == small->dtype && cc_is_contiguous(big) && cc_is_contiguous(small) && cc_is_contiguous(idx);
  for (int d = 0; ok && d < nd - 2; d++) ok = big->shape[d] == small->shape[d];
  for (int k = 0; ok && k < 8; k++) ok = k >= 4 && k < 6 ? c->i[k] >= 0 : c->i[k] > 0;
  if (!ok) cc_set_error("max_pool2d: expected contiguous operands (..,H,W) and (..,oh,ow) with int64 indices");
  return ok;
}

/* conv_onednn.c: one float32 convolution pass through oneDNN, on contiguous buffers. Forward: a = x, b = w,
   bias (or NULL) -> out = y; backward data: a = grad y, b = w -> out = grad x; backward weights: a = grad y,
   b = x -> out = grad w. Returns 0 done, -1 error set, 1 not taken (the caller runs its own kernels). */
typedef enum { CC_CONV_FORWARD, CC_CONV_BACKWARD_DATA, CC_CONV_BACKWARD_WEIGHTS } cc_conv_pass;
typedef struct {
  int64_t N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, groups;
} cc_conv_problem;
int cc_onednn_conv(cc_conv_pass pass, const cc_conv_problem *p, const float *a, const float *b, const float *bias,
                   float *out);

#endif
