/* cocola.h — the public C API of the cocola tensor and autograd engine.
 *
 * Tensors are strided views (up to CC_MAX_DIMS dims, an element offset) over refcounted storage.
 * Every function that can fail returns NULL (or a negative status) and leaves a message in
 * cc_last_error(); nothing here aborts. Returned tensors are new references owned by the caller,
 * released with cc_release(). Dims are 0-based in C (the Lua binding converts from 1-based).
 */
#ifndef COCOLA_H
#define COCOLA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CC_MAX_DIMS 8

typedef enum { CC_FLOAT32 = 0, CC_FLOAT64 = 1, CC_INT64 = 2, CC_NUM_DTYPES } cc_dtype;
typedef enum { CC_CPU = 0, CC_CUDA = 1, CC_NUM_DEVICES } cc_device;

typedef struct cc_storage {
  void *data;
  size_t nbytes;
  int device;
  int refcount; /* atomic */
} cc_storage;

typedef struct cc_node cc_node;

typedef struct cc_tensor {
  cc_storage *storage;
  int64_t offset; /* in elements */
  int ndim;
  int64_t shape[CC_MAX_DIMS];
  int64_t stride[CC_MAX_DIMS]; /* in elements; 0 for broadcast dims */
  cc_dtype dtype;
  int refcount; /* atomic */
  bool requires_grad;
  struct cc_tensor *grad; /* accumulated gradient of a leaf */
  cc_node *grad_fn;       /* creator of a non-leaf (NULL for leaves) */
  /* scratch of a running backward pass */
  struct cc_tensor *bw_grad;
  int bw_state;
} cc_tensor;

/* ---- errors ---- */
const char *cc_last_error(void);
void cc_set_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* ---- dtypes ---- */
size_t cc_dtype_size(cc_dtype dt);
const char *cc_dtype_name(cc_dtype dt); /* "float32", "float64", "int64" */
int cc_dtype_from_name(const char *name); /* -1 when unknown */
bool cc_is_floating(cc_dtype dt);

/* ---- lifetime and accounting ---- */
cc_tensor *cc_retain(cc_tensor *t);
void cc_release(cc_tensor *t);
int64_t cc_live_tensors(void);
int64_t cc_live_bytes(int device);
int64_t cc_total_allocated_bytes(void); /* monotone: bytes ever allocated (for GC nudging) */
void cc_empty_cache(void);     /* returns cached free host blocks to the system */
int64_t cc_cached_bytes(void); /* bytes held by the host block cache */

/* ---- creation ---- */
cc_tensor *cc_empty(int ndim, const int64_t *shape, cc_dtype dt, int device);
cc_tensor *cc_zeros(int ndim, const int64_t *shape, cc_dtype dt, int device);
cc_tensor *cc_full(int ndim, const int64_t *shape, double value, cc_dtype dt, int device);
cc_tensor *cc_scalar(double value, cc_dtype dt, int device); /* 0-dim tensor */
cc_tensor *cc_arange(double start, double end, double step, cc_dtype dt);
cc_tensor *cc_empty_like(const cc_tensor *t);
cc_tensor *cc_zeros_like(const cc_tensor *t);

/* ---- random (counter-based Philox: same seed, same numbers on every machine and thread count) ---- */
void cc_manual_seed(uint64_t seed);
uint64_t cc_get_seed(void);
void cc_rng_get_state(uint64_t *seed, uint64_t *offset);
void cc_rng_set_state(uint64_t seed, uint64_t offset);
/* reserve n counters (each yields 4 x 32 random bits); returns the first counter */
uint64_t cc_rng_reserve(uint64_t n);
cc_tensor *cc_rand(int ndim, const int64_t *shape, cc_dtype dt);    /* U[0,1) */
cc_tensor *cc_randn(int ndim, const int64_t *shape, cc_dtype dt);   /* N(0,1) */
cc_tensor *cc_randint(int64_t low, int64_t high, int ndim, const int64_t *shape); /* int64, [low, high) */
int cc_uniform_(cc_tensor *t, double low, double high);
int cc_normal_(cc_tensor *t, double mean, double stddev);

/* ---- properties ---- */
int64_t cc_numel(const cc_tensor *t);
bool cc_is_contiguous(const cc_tensor *t);
bool cc_same_shape(const cc_tensor *a, const cc_tensor *b);
int cc_normalize_dim(int dim, int ndim, const char *what); /* accepts negatives; -1 + error when out of range */
void *cc_data_ptr(const cc_tensor *t); /* address of element 0 */
double cc_get_flat(const cc_tensor *t, int64_t linear_index); /* element in row-major order (slow) */
int cc_item(const cc_tensor *t, double *out);

/* ---- copies (differentiable where they make sense) ---- */
cc_tensor *cc_contiguous(cc_tensor *t);  /* new reference: t itself when already contiguous */
cc_tensor *cc_clone(cc_tensor *t);
cc_tensor *cc_to_dtype(cc_tensor *t, cc_dtype dt);
cc_tensor *cc_to_device(cc_tensor *t, int device);
int cc_copy_(cc_tensor *dst, cc_tensor *src); /* broadcast src to dst; not recorded by autograd */
int cc_fill_(cc_tensor *t, double value);
cc_tensor *cc_detach(cc_tensor *t); /* shares storage, no graph */

/* ---- views (share storage; differentiable) ---- */
cc_tensor *cc_view(cc_tensor *t, int ndim, const int64_t *shape);    /* -1 allowed once; needs compatible strides */
cc_tensor *cc_reshape(cc_tensor *t, int ndim, const int64_t *shape); /* view when possible, else copy */
cc_tensor *cc_permute(cc_tensor *t, const int *perm);
cc_tensor *cc_transpose(cc_tensor *t, int d0, int d1);
cc_tensor *cc_narrow(cc_tensor *t, int dim, int64_t start, int64_t length);
cc_tensor *cc_select(cc_tensor *t, int dim, int64_t index);
cc_tensor *cc_unsqueeze(cc_tensor *t, int dim);
cc_tensor *cc_squeeze(cc_tensor *t, int dim); /* dim < 0 after normalisation impossible; use CC_ALL_DIMS */
cc_tensor *cc_expand(cc_tensor *t, int ndim, const int64_t *shape);  /* -1 keeps a size */
#define CC_ALL_DIMS (-1000)

/* ---- elementwise (broadcasting) ---- */
typedef enum {
  CC_UNARY_NEG, CC_UNARY_EXP, CC_UNARY_LOG, CC_UNARY_SQRT, CC_UNARY_ABS, CC_UNARY_RELU,
  CC_UNARY_SIGMOID, CC_UNARY_SILU, CC_UNARY_TANH, CC_UNARY_GELU, CC_UNARY_SIN, CC_UNARY_COS,
  CC_UNARY_FLOOR, CC_UNARY_ROUND, /* round: halves to even, as torch.round */
  /* with a parameter (cc_unary_param): negative slope, alpha, unused */
  CC_UNARY_LEAKY_RELU, CC_UNARY_ELU, CC_UNARY_GELU_TANH,
  CC_UNARY_COUNT
} cc_unary_kind;
cc_tensor *cc_unary(cc_tensor *x, cc_unary_kind kind); /* the parametrised kinds get their torch default */
cc_tensor *cc_unary_param(cc_tensor *x, cc_unary_kind kind, double param);
cc_tensor *cc_add(cc_tensor *a, cc_tensor *b);
cc_tensor *cc_sub(cc_tensor *a, cc_tensor *b);
cc_tensor *cc_mul(cc_tensor *a, cc_tensor *b);
cc_tensor *cc_div(cc_tensor *a, cc_tensor *b);
cc_tensor *cc_pow(cc_tensor *a, cc_tensor *b);
cc_tensor *cc_add_scalar(cc_tensor *a, double s);
cc_tensor *cc_mul_scalar(cc_tensor *a, double s);
cc_tensor *cc_pow_scalar(cc_tensor *a, double exponent);
cc_tensor *cc_rsub_scalar(cc_tensor *a, double s); /* s - a */
cc_tensor *cc_rdiv_scalar(cc_tensor *a, double s); /* s / a */
cc_tensor *cc_clamp(cc_tensor *x, double lo, double hi); /* use +-INFINITY for no bound */
typedef enum { CC_CMP_EQ, CC_CMP_NE, CC_CMP_LT, CC_CMP_LE, CC_CMP_GT, CC_CMP_GE } cc_cmp_kind;
cc_tensor *cc_compare(cc_tensor *a, cc_tensor *b, cc_cmp_kind kind); /* result in a's floating dtype (0/1), int64 for ints */
cc_tensor *cc_where(cc_tensor *cond, cc_tensor *a, cc_tensor *b);     /* cond != 0 ? a : b */
cc_tensor *cc_masked_fill(cc_tensor *x, cc_tensor *mask, double value);
cc_tensor *cc_sum_to(cc_tensor *t, int ndim, const int64_t *shape); /* reduce a broadcast result back */

/* ---- reductions ---- */
cc_tensor *cc_sum(cc_tensor *x, int ndims, const int *dims, bool keepdim); /* ndims 0: all */
cc_tensor *cc_mean(cc_tensor *x, int ndims, const int *dims, bool keepdim);
int cc_max(cc_tensor *x, int dim, bool keepdim, cc_tensor **values, cc_tensor **indices); /* indices int64 0-based */
cc_tensor *cc_max_all(cc_tensor *x);
cc_tensor *cc_argmax(cc_tensor *x, int dim, bool keepdim);
cc_tensor *cc_cumsum(cc_tensor *x, int dim); /* running sum along dim; floats accumulate in double */

/* ---- sorting (indices int64, 0-based) ---- */
/* stable: equal values keep their order; NaN sorts above every number (torch's order) */
int cc_sort(cc_tensor *x, int dim, bool descending, cc_tensor **values, cc_tensor **indices);
/* the k largest (or smallest) along dim, in sorted order; 0 <= k <= the size of dim */
int cc_topk(cc_tensor *x, int64_t k, int dim, bool largest, cc_tensor **values, cc_tensor **indices);

/* ---- indexing (indices int64, 0-based; an index outside its dim is an error naming it) ---- */
/* x's slices along dim at the 1-D (or 0-D) index, in its order: x's shape with dim of size #index */
cc_tensor *cc_index_select(cc_tensor *x, int dim, cc_tensor *index);
/* out[i][j][k] = x[index[i][j][k]][j][k] for dim 0 (and so on): index of x's rank, no larger than x off dim;
   the result has index's shape */
cc_tensor *cc_gather(cc_tensor *x, int dim, cc_tensor *index);
/* rows of weight (V,D) at indices of any shape -> (..., D); the row *padding_idx (in [0, V) when given) gets
   no gradient, as torch.nn.functional.embedding */
cc_tensor *cc_embedding(cc_tensor *indices, cc_tensor *weight, const int64_t *padding_idx);

/* ---- linear algebra ---- */
cc_tensor *cc_matmul(cc_tensor *a, cc_tensor *b); /* 1-D, 2-D and batched with broadcast batch dims */
cc_tensor *cc_bmm(cc_tensor *a, cc_tensor *b);    /* (B,n,k) x (B,k,m) */
cc_tensor *cc_linear(cc_tensor *x, cc_tensor *w, cc_tensor *b); /* x (...,in), w (out,in), b (out) or NULL */

/* ---- Gaussian statistics and the Frechet distance (FAD, FID; float64 on the CPU) ---- */
/* statistics of a set of D-dim frames: count *n, mean (D) and m2 (D,D), the sum of the outer products
   of the deviations from the mean (covariance = m2 / (n - 1)), kept in contiguous float64 CPU tensors;
   start from n = 0 and zeros. add folds in the frames x (frames, D) (any floating dtype), merge folds in
   another set's statistics (Chan's update); both change mean, m2 and *n in place */
int cc_gauss_stats_add(cc_tensor *mean, cc_tensor *m2, int64_t *n, cc_tensor *x);
int cc_gauss_stats_merge(cc_tensor *mean, cc_tensor *m2, int64_t *n, cc_tensor *mean_b, cc_tensor *m2_b,
                         int64_t n_b);
/* |mu1 - mu2|^2 + Tr(cov1) + Tr(cov2) - 2 Tr(sqrtm(cov1 cov2)) of mu (D) and cov (D,D); the square root
   term again with eps on both diagonals when it is not finite (*used_eps tells, may be NULL) */
int cc_frechet_distance(cc_tensor *mu1, cc_tensor *cov1, cc_tensor *mu2, cc_tensor *cov2, double eps,
                        double *out, bool *used_eps);

/* ---- convolution, padding, pooling ---- */
typedef struct {
  int64_t stride[2], padding[2], dilation[2];
  int64_t groups;
} cc_conv2d_opts;
cc_tensor *cc_conv2d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv2d_opts *opt);
typedef struct {
  int64_t stride[2], padding[2], output_padding[2], dilation[2];
  int64_t groups;
} cc_conv_transpose2d_opts;
/* x (N,Cin,H,W) or (Cin,H,W), w (Cin,Cout/groups,kh,kw), b (Cout) or NULL; torch's F.conv_transpose2d */
cc_tensor *cc_conv_transpose2d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv_transpose2d_opts *opt);
typedef struct {
  int64_t stride, padding, dilation, groups, output_padding; /* output_padding: transposed only */
} cc_conv1d_opts;
/* x (N,C,L) or (C,L); conv1d w (O,C/groups,k); conv_transpose1d w (C,O/groups,k); b (O) or NULL */
cc_tensor *cc_conv1d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv1d_opts *opt);
cc_tensor *cc_conv_transpose1d(cc_tensor *x, cc_tensor *w, cc_tensor *b, const cc_conv1d_opts *opt);
cc_tensor *cc_pad(cc_tensor *x, int npairs, const int64_t *pads, double value); /* torch order: last dim first */
cc_tensor *cc_adaptive_avg_pool2d(cc_tensor *x, int64_t out_h, int64_t out_w);
/* max pool of (N,C,H,W) or (C,H,W) as torch's F.max_pool2d: padding counts as -inf (at most half the kernel),
   a NaN in a window is its maximum, ceil_mode must be false; indices (when asked for) are int64 flat
   positions in H*W */
typedef struct {
  int64_t kernel[2], stride[2], padding[2], dilation[2];
  bool ceil_mode;
} cc_max_pool2d_opts;
int cc_max_pool2d(cc_tensor *x, const cc_max_pool2d_opts *opt, cc_tensor **values, cc_tensor **indices);

/* ---- normalisation, activations with state ---- */
cc_tensor *cc_batch_norm(cc_tensor *x, cc_tensor *running_mean, cc_tensor *running_var, cc_tensor *weight,
                         cc_tensor *bias, bool training, double momentum, double eps);
cc_tensor *cc_layer_norm(cc_tensor *x, int nnorm, cc_tensor *weight, cc_tensor *bias, double eps);
/* x (N,C,*), weight and bias (C) or NULL; torch's F.group_norm */
cc_tensor *cc_group_norm(cc_tensor *x, int64_t groups, cc_tensor *weight, cc_tensor *bias, double eps);
cc_tensor *cc_dropout(cc_tensor *x, double p, bool training);
cc_tensor *cc_softmax(cc_tensor *x, int dim);
cc_tensor *cc_log_softmax(cc_tensor *x, int dim);
cc_tensor *cc_cross_entropy(cc_tensor *logits, cc_tensor *targets); /* (N,C) x int64 (N), mean */

/* ---- optimiser steps (in place, no graph; PyTorch semantics) ---- */
/* Adam/AdamW: step is the 1-based step count after this update; decoupled selects AdamW's decay */
int cc_adam_step(cc_tensor *param, cc_tensor *grad, cc_tensor *exp_avg, cc_tensor *exp_avg_sq, double lr,
                 double beta1, double beta2, double eps, double weight_decay, int64_t step, bool decoupled);

/* ---- joining ---- */
cc_tensor *cc_cat(int n, cc_tensor *const *ts, int dim);
cc_tensor *cc_stack(int n, cc_tensor *const *ts, int dim);

/* ---- autograd ---- */
bool cc_grad_enabled(void);
bool cc_set_grad_enabled(bool enabled); /* returns the previous mode */
int cc_set_requires_grad(cc_tensor *t, bool requires);
int cc_backward(cc_tensor *root, cc_tensor *grad, bool retain_graph);
void cc_zero_grad(cc_tensor *t); /* drops t->grad */
const char *cc_grad_fn_name(const cc_tensor *t);
/* a function node: makes out (computed without a graph, e.g. under no-grad) the output of a node over
   `inputs` whose backward calls fn(user, grad_out, n, grad_in), which fills grad_in[i] (new references or
   NULL) and returns 0, or -1 with an error set. user_free(user) runs once when the graph is released.
   Returns 0 (also when no input requires grad: then no node is made and user_free runs at once). */
/* the backward profile: with it on, every backward pass adds each node's time to its name's total
   (read entry i until it returns 0; a function node's time includes the nodes it runs itself) */
void cc_backward_profile_enable(bool on);
int cc_backward_profile_read(int i, const char **name, double *seconds, int64_t *calls);
void cc_backward_profile_reset(void);
typedef int (*cc_function_backward)(void *user, cc_tensor *grad_out, int n, cc_tensor **grad_in);
int cc_function_attach(cc_tensor *out, const char *name, int n, cc_tensor *const *inputs, cc_function_backward fn,
                       void *user, void (*user_free)(void *user));

/* ---- threads ---- */
void cc_set_num_threads(int n);
int cc_get_num_threads(void);
/* how the OpenBLAS loaded at run time threads ("openmp", "pthread", "sequential", or "unknown" when
   it cannot say); *linked_openmp: whether the build linked its OpenMP build (then it must be "openmp") */
const char *cc_blas_threading(bool *linked_openmp);

/* ---- CPU convolution backend: AUTO takes oneDNN for float32 convolutions large enough to gain from it,
   the built-in kernels otherwise; NATIVE always the built-in kernels; ONEDNN oneDNN for every float32 one ---- */
typedef enum { CC_CONV_BACKEND_AUTO, CC_CONV_BACKEND_NATIVE, CC_CONV_BACKEND_ONEDNN } cc_conv_backend_kind;
int cc_set_conv_backend(cc_conv_backend_kind kind);
cc_conv_backend_kind cc_get_conv_backend(void);
bool cc_have_onednn(void);

/* ---- backends ---- */
int cc_device_available(int device);
const char *cc_device_name(int device);

#ifdef __cplusplus
}
#endif
#endif
