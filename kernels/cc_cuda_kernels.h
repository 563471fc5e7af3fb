/* cc_cuda_kernels.h — the launchers of the CUDA kernels in kernels/ (.cu files), callable from C.
 *
 * The host side of the backend (csrc/cuda, C11) unpacks an op's cc_call, checks it, allocates
 * temporaries and calls one of these; the .cu files (C++) never see the engine's structs. Every
 * launcher enqueues work on the given stream and returns cudaSuccess or the launch error; nothing
 * here synchronises or allocates.
 *
 * Every kernel is a loop over independent items ("for item i in [0, n): body(i)", a grid-stride loop
 * on the GPU): no shared memory, no atomics, no __syncthreads. Reductions run in two passes through
 * a scratch buffer of partial sums (double) that the caller allocates, sized by the *_scratch helpers.
 * This keeps each kernel short and obviously correct, deterministic, and runnable item by item on the
 * host (COCOLA_CUDA=EMULATE) so that the same code is checked on machines without a GPU.
 */
#ifndef COCOLA_CUDA_KERNELS_H
#define COCOLA_CUDA_KERNELS_H

#include <cuda_runtime_api.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CCK_MAX_DIMS 8
#define CCK_MAX_OPS 4

/* element types: the values of cc_dtype */
enum { CCK_F32 = 0, CCK_F64 = 1, CCK_I64 = 2 };

/* the kinds of the BINARY and SCALAR ops: the values of cc_binary_kind (checked in csrc/cuda) */
enum {
  CCK_BIN_ADD, CCK_BIN_SUB, CCK_BIN_MUL, CCK_BIN_DIV, CCK_BIN_POW,
  CCK_BIN_EQ, CCK_BIN_NE, CCK_BIN_LT, CCK_BIN_LE, CCK_BIN_GT, CCK_BIN_GE,
  CCK_BIN_RSUB, CCK_BIN_RDIV, CCK_BIN_CLAMP, CCK_BIN_MAXIMUM,
  CCK_BIN_COUNT,
  CCK_SCALAR_IN_RANGE = CCK_BIN_CLAMP + 100 /* 1 where lo <= x <= hi (clamp's backward mask) */
};

/* ---- elementwise: same-shaped strided operands ----
 * item i (row-major over shape) of operand k is element ptr[k] + sum_d i_d * stride[k][d]
 * (strides in elements of that operand's dtype; 0 for broadcast dims). Operand 0 is the output. */
typedef struct {
  int nops, ndim;
  int64_t numel;
  int64_t shape[CCK_MAX_DIMS];
  int64_t stride[CCK_MAX_OPS][CCK_MAX_DIMS];
  void *ptr[CCK_MAX_OPS];
  int dtype[CCK_MAX_OPS];
} cck_iter;

cudaError_t cck_fill(const cck_iter *it, double value, cudaStream_t s);                 /* 1 op */
cudaError_t cck_copy(const cck_iter *it, cudaStream_t s);                               /* out, in: any dtypes */
cudaError_t cck_unary(const cck_iter *it, int kind, double param, cudaStream_t s);          /* out, x */
cudaError_t cck_unary_backward(const cck_iter *it, int kind, double param, cudaStream_t s); /* dx, g, x, y */
cudaError_t cck_binary(const cck_iter *it, int kind, cudaStream_t s);                   /* out, a, b */
cudaError_t cck_scalar(const cck_iter *it, int kind, double a, double b, cudaStream_t s); /* out, x */
cudaError_t cck_where(const cck_iter *it, cudaStream_t s);                              /* out, cond, a, b */

/* ---- sum over some dims: out[kept] = sum over reduced of in ----
 * kept dims (shape kshape, strides kstride_in in the input and kstride_out in the output) and
 * reduced dims (rshape, rstride in the input), both row-major. */
typedef struct {
  const void *in;
  void *out;
  int dtype;
  int nk, nr;
  int64_t kshape[CCK_MAX_DIMS], kstride_in[CCK_MAX_DIMS], kstride_out[CCK_MAX_DIMS];
  int64_t rshape[CCK_MAX_DIMS], rstride[CCK_MAX_DIMS];
  int64_t n_out, n_red;
} cck_reduce;
/* bytes of scratch cck_sum needs (0: none) */
size_t cck_sum_scratch(const cck_reduce *r);
cudaError_t cck_sum(const cck_reduce *r, void *scratch, cudaStream_t s);

/* ---- max along one dim: values and int64 indices, first maximum, NaN wins (as the CPU kernel) ---- */
typedef struct {
  const void *in;
  void *vals;
  int64_t *idx;
  int dtype;
  int ndim, dim;
  int64_t shape[CCK_MAX_DIMS]; /* the input's */
  int64_t xstride[CCK_MAX_DIMS], vstride[CCK_MAX_DIMS], istride[CCK_MAX_DIMS];
  int64_t n_out;
} cck_max_args;
cudaError_t cck_max(const cck_max_args *a, cudaStream_t s);

/* ---- running sum along one dim (cumsum), one item per row: floats accumulate in double, in the
 * CPU kernel's order; reverse runs from the last element (cumsum's backward) ---- */
typedef struct {
  const void *in;
  void *out;
  int dtype;
  int ndim, dim, reverse;
  int64_t shape[CCK_MAX_DIMS]; /* of both */
  int64_t xstride[CCK_MAX_DIMS], ostride[CCK_MAX_DIMS];
  int64_t rows; /* numel / shape[dim] */
} cck_cumsum_args;
cudaError_t cck_cumsum(const cck_cumsum_args *a, cudaStream_t s);

/* ---- stable sort of every row along one dim (cc_sort_before of kernels/scalar.h): values and int64
 * positions. Bottom-up merge sort in scratch, each pass one item per element that finds its place in
 * the merged run by binary search in the other run; cck_sort_scratch bytes of scratch ---- */
typedef struct {
  const void *in;
  void *vals;
  int64_t *idx;
  int dtype;
  int ndim, dim, descending;
  int64_t shape[CCK_MAX_DIMS]; /* of all three */
  int64_t xstride[CCK_MAX_DIMS], vstride[CCK_MAX_DIMS], istride[CCK_MAX_DIMS];
  int64_t rows, n; /* rows of n values */
} cck_sort_args;
size_t cck_sort_scratch(const cck_sort_args *a);
cudaError_t cck_sort(const cck_sort_args *a, void *scratch, cudaStream_t s);
/* dx[.., idx[.., j, ..], ..] <- g[.., j, ..] along dim, one item per element (indices: a permutation
 * of each row, so no two items write one place); an index outside its row is skipped */
typedef struct {
  const void *g;
  const int64_t *idx;
  void *dx;
  int dtype;
  int ndim, dim;
  int64_t shape[CCK_MAX_DIMS];
  int64_t gstride[CCK_MAX_DIMS], istride[CCK_MAX_DIMS], dstride[CCK_MAX_DIMS];
  int64_t numel;
} cck_sort_bw_args;
cudaError_t cck_sort_backward(const cck_sort_bw_args *a, cudaStream_t s);

/* ---- indexing (kernels/index.cu): gather and scatter_add over one description; index_select and index_add
 * are the same with the 1-D index broadcast over the other dims (istride 0 off dim) ----
 * gather: one item per element c of dst (shape): dst[c] <- src[c with c[dim] = idx[c]].
 * scatter_add: one item per row of dst (every index but dim; items = numel(dst) / shape[dim], counted without
 * dividing by a zero size): the row is zeroed, then, where the row lies inside ishape, src[c, j] is added at
 * dst[c, idx[c, j]] for j = 0, 1, .. in order. An index outside [0, size) is skipped (gather writes 0). */
typedef struct {
  const void *src;
  const int64_t *idx;
  void *dst;
  int dtype, ndim, dim;
  int64_t shape[CCK_MAX_DIMS];  /* dst's */
  int64_t ishape[CCK_MAX_DIMS]; /* scatter_add: the shape of src and idx */
  int64_t sstride[CCK_MAX_DIMS], istride[CCK_MAX_DIMS], dstride[CCK_MAX_DIMS];
  int64_t size;  /* the length of dim in the indexed tensor (src of gather, dst of scatter_add) */
  int64_t items;
} cck_index_args;
cudaError_t cck_gather(const cck_index_args *a, cudaStream_t s);
cudaError_t cck_scatter_add(const cck_index_args *a, cudaStream_t s);
/* one item: bad[0] <- 1 and bad[1] <- the first index (row-major over shape, stride) outside [0, size), else
   bad[0] <- 0 */
typedef struct {
  const int64_t *idx;
  int64_t *bad;
  int ndim;
  int64_t shape[CCK_MAX_DIMS], stride[CCK_MAX_DIMS];
  int64_t numel, size;
} cck_index_check_args;
cudaError_t cck_index_check(const cck_index_check_args *a, cudaStream_t s);

/* ---- bfloat16 autocast copies: n contiguous elements, bf16 as uint16_t bit patterns ---- */
cudaError_t cck_float_to_bf16(void *dst, const void *src, int64_t n, cudaStream_t s);
cudaError_t cck_bf16_to_float(void *dst, const void *src, int64_t n, cudaStream_t s);

/* ---- conv helpers, padding, pooling (contiguous operands) ---- */
/* y (N,O,HW) += b (O) */
cudaError_t cck_bias_add(void *y, const void *b, int dtype, int64_t N, int64_t O, int64_t HW, cudaStream_t s);
/* y <- constant pad of x; lo[d]: elements added before dim d (negative crops) */
typedef struct {
  const void *x;
  void *y;
  int dtype, ndim;
  int64_t xshape[CCK_MAX_DIMS], yshape[CCK_MAX_DIMS], lo[CCK_MAX_DIMS];
  double value;
} cck_pad_args;
cudaError_t cck_pad(const cck_pad_args *a, cudaStream_t s);
/* planes of (H,W) <-> (oh,ow), torch's adaptive bins; the forward takes cck_avg_pool_scratch bytes of
   device scratch (partial sums of global pooling over large planes; 0: none needed) */
size_t cck_avg_pool_scratch(int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow);
cudaError_t cck_avg_pool(const void *x, void *y, int dtype, int64_t planes, int64_t H, int64_t W, int64_t oh,
                         int64_t ow, void *scratch, cudaStream_t s);
cudaError_t cck_avg_pool_backward(const void *gy, void *dx, int dtype, int64_t planes, int64_t H, int64_t W,
                                  int64_t oh, int64_t ow, cudaStream_t s);

/* max pool (kernels/pool.cu) over planes (..,H,W) -> (..,oh,ow), contiguous: the forward is one item per output
   (values y, int64 flat indices idx into H*W; padding is -inf, a NaN wins), the backward one item per input
   element (dx <- the sum of g over the windows covering it whose index is its own) */
typedef struct {
  const void *x, *g;
  void *y, *dx;
  int64_t *idx;
  int dtype;
  int64_t planes, H, W, oh, ow, kh, kw, sh, sw, ph, pw, dh, dw;
} cck_max_pool_args;
cudaError_t cck_max_pool2d(const cck_max_pool_args *a, cudaStream_t s);
cudaError_t cck_max_pool2d_backward(const cck_max_pool_args *a, cudaStream_t s);

/* ---- batch norm over x (N,C,S) contiguous; stats (C); rm, rv, w, b may be NULL ---- */
typedef struct {
  const void *x;
  void *y, *mean, *invstd, *rm, *rv;
  const void *w, *b;
  int dtype, training;
  int64_t N, C, S;
  double momentum, eps;
} cck_bn_args;
size_t cck_batch_norm_scratch(const cck_bn_args *a);
cudaError_t cck_batch_norm(const cck_bn_args *a, void *scratch, cudaStream_t s);

typedef struct {
  const void *dy, *x, *mean, *invstd, *w; /* w may be NULL */
  void *dx, *dw, *db;                     /* each may be NULL */
  int dtype, training;
  int64_t N, C, S;
} cck_bn_bw_args;
size_t cck_batch_norm_backward_scratch(const cck_bn_bw_args *a);
cudaError_t cck_batch_norm_backward(const cck_bn_bw_args *a, void *scratch, cudaStream_t s);

/* ---- layer norm over rows of x (R,D) contiguous; stats (R); w, b (D) may be NULL ---- */
typedef struct {
  const void *x, *w, *b;
  void *y, *mean, *invstd;
  int dtype;
  int64_t R, D;
  double eps;
} cck_ln_args;
cudaError_t cck_layer_norm(const cck_ln_args *a, cudaStream_t s);

typedef struct {
  const void *dy, *x, *mean, *invstd, *w;
  void *dx, *dw, *db;
  int dtype;
  int64_t R, D;
} cck_ln_bw_args;
size_t cck_layer_norm_backward_scratch(const cck_ln_bw_args *a);
cudaError_t cck_layer_norm_backward(const cck_ln_bw_args *a, void *scratch, cudaStream_t s);

/* ---- softmax along the middle of (outer, L, inner), contiguous ---- */
cudaError_t cck_softmax(const void *x, void *y, int dtype, int64_t outer, int64_t L, int64_t inner, int is_log,
                        cudaStream_t s);
cudaError_t cck_softmax_backward(const void *dy, const void *y, void *dx, int dtype, int64_t outer, int64_t L,
                                 int64_t inner, int is_log, cudaStream_t s);
/* out (0-d) <- -mean_n x[n, t[n]]; bad[0] <- 1 and bad[1] <- the target when one is out of range */
cudaError_t cck_nll(const void *x, const int64_t *t, void *out, int64_t *bad, int dtype, int64_t N, int64_t C,
                    cudaStream_t s);
/* dx (N,C) <- -g / N at [n, t[n]], 0 elsewhere; g 0-d on the device */
cudaError_t cck_nll_backward(const void *g, const int64_t *t, void *dx, int dtype, int64_t N, int64_t C,
                             cudaStream_t s);

/* ---- random (Philox, kernels/scalar.h): element k of a contiguous output, as the CPU kernels ---- */
cudaError_t cck_random(void *out, int dtype, int64_t n, int kind, uint64_t counter, uint64_t seed, double p0,
                       double p1, cudaStream_t s);
cudaError_t cck_dropout_mask(void *out, int dtype, int64_t n, uint64_t counter, uint64_t seed, double p,
                             cudaStream_t s);

/* ---- fused Adam / AdamW step over contiguous param, grad, exp_avg, exp_avg_sq ---- */
typedef struct {
  void *p, *m, *v;
  const void *g;
  int dtype, decoupled;
  int64_t n;
  /* as the CPU kernel computes them, in double; rounded to the element type in the kernel */
  double beta1, one_m_beta1, beta2, one_m_beta2, wd, decay, bc2_sqrt, eps, neg_step_size;
} cck_adam_args;
cudaError_t cck_adam(const cck_adam_args *a, cudaStream_t s);

#ifdef __cplusplus
}
#endif
#endif
