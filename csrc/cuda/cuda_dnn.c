/* cuda_dnn.c — conv2d forward, backward-data and backward-filter on the GPU through cuDNN (grouped and
 * depthwise included), as the CONV2D ops of csrc/ops/conv.c: contiguous NCHW operands, cross-correlation
 * like torch, the bias added by our kernel (kernels/conv_aux.cu).
 *
 * The algorithm is chosen once per (op, dtype, shape, TF32 setting): cudnnFind*AlgorithmEx times the
 * candidates on the real buffers, with a search workspace from the caching allocator, and the fastest
 * acceptable one is kept with its descriptors. Each run takes its workspace from the caching allocator.
 * With TF32 off (the default) float32 must match the CPU to 1e-5: the descriptors ask for
 * CUDNN_FMA_MATH (CUDNN_DEFAULT_MATH would allow TF32 on Ampere and later) and only the GEMM-like and
 * direct algorithms are accepted (FFT and Winograd round more). cocola.cuda.set_tf32(true) lifts both.
 * bf16 autocast: float32 operands are copied to bfloat16, cuDNN runs the bfloat16 convolution with float
 * compute on tensor cores (any algorithm), and the bfloat16 result is widened into the float32 output;
 * depthwise convolutions stay float32 (memory-bound: the copies would cost more than they save).
 */
#include "cuda_internal.h"

#include <cudnn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>

enum { CONV_FWD, CONV_BWD_DATA, CONV_BWD_FILTER };
static const char *const conv_names[] = {"conv2d", "conv2d backward (input)", "conv2d backward (weight)"};

#define SEARCH_WORKSPACE ((size_t)256 << 20)

static cudnnHandle_t handle;
static int handle_state; /* 0 not yet, 1 ready, -1 failed */

static int dnn_fail(cudnnStatus_t st, const char *what) {
  cc_set_error("cuDNN error %s in %s", cudnnGetErrorString(st), what);
  return -1;
}
#define CC_CUDNN_CHECK(expr) ((st = (expr)) == CUDNN_STATUS_SUCCESS ? 0 : dnn_fail(st, #expr))

static int dnn_handle(void) {
  cudnnStatus_t st;
  if (handle_state < 0) {
    cc_set_error("cuDNN could not be initialised earlier in this process");
    return -1;
  }
  if (handle_state == 0) {
    if (CC_CUDNN_CHECK(cudnnCreate(&handle))) {
      handle_state = -1;
      return -1;
    }
    if (CC_CUDNN_CHECK(cudnnSetStream(handle, cc_cuda_stream()))) return -1;
    handle_state = 1;
  }
  return 0;
}

/* ---- geometry and the algorithm cache ---- */
typedef struct {
  int op, dtype, tf32, bf16;
  int N, C, H, W, O, kh, kw, Ho, Wo, sh, sw, ph, pw, dh, dw, groups;
} conv_key;

typedef struct {
  conv_key key;
  cudnnTensorDescriptor_t x, y;
  cudnnFilterDescriptor_t w;
  cudnnConvolutionDescriptor_t conv;
  int algo;
  size_t workspace;
} conv_entry;

static conv_entry **cache;
static int n_cache, cap_cache;

int cc_cuda_conv_cache_size(void) { return n_cache; }

static bool fits_int(int64_t v) { return v >= 0 && v <= INT_MAX; }

/* key from the call: xs the (N,C,H,W) side, ws the weight side, ys the (N,O,Ho,Wo) side */
static int make_key(int op, const cc_call *c, const cc_tensor *xs, const cc_tensor *ws, const cc_tensor *ys,
                    conv_key *k) {
  memset(k, 0, sizeof *k);
  const int64_t v[] = {xs->shape[0], xs->shape[1], xs->shape[2], xs->shape[3], ws->shape[0], ws->shape[2],
                       ws->shape[3], ys->shape[2], ys->shape[3], c->i[0], c->i[1], c->i[2], c->i[3],
                       c->i[4], c->i[5], c->i[6]};
  for (size_t j = 0; j < sizeof v / sizeof v[0]; j++)
    if (!fits_int(v[j])) {
      cc_set_error("%s: sizes above %d are not supported on CUDA", conv_names[op], INT_MAX);
      return -1;
    }
  if (cc_numel(xs) > INT_MAX || cc_numel(ys) > INT_MAX || cc_numel(ws) > INT_MAX) {
    cc_set_error("%s: tensors of more than %d elements are not supported on CUDA", conv_names[op], INT_MAX);
    return -1;
  }
  k->op = op;
  k->dtype = xs->dtype;
  k->N = (int)v[0], k->C = (int)v[1], k->H = (int)v[2], k->W = (int)v[3];
  k->O = (int)v[4], k->kh = (int)v[5], k->kw = (int)v[6], k->Ho = (int)v[7], k->Wo = (int)v[8];
  k->sh = (int)v[9], k->sw = (int)v[10], k->ph = (int)v[11], k->pw = (int)v[12];
  k->dh = (int)v[13], k->dw = (int)v[14], k->groups = (int)v[15];
  /* depthwise convolutions (one input channel per group) stay float32 under autocast: they are bound by
     memory traffic, which the bfloat16 copies add to, not by the tensor-core math they cannot use */
  k->bf16 = cc_cuda_bf16(xs) && !(k->groups > 1 && k->groups == k->C);
  k->tf32 = !k->bf16 && xs->dtype == CC_FLOAT32 && cc_cuda_tf32();
  return 0;
}

static void entry_free(conv_entry *e) {
  if (!e) return;
  if (e->x) cudnnDestroyTensorDescriptor(e->x);
  if (e->y) cudnnDestroyTensorDescriptor(e->y);
  if (e->w) cudnnDestroyFilterDescriptor(e->w);
  if (e->conv) cudnnDestroyConvolutionDescriptor(e->conv);
  free(e);
}

static int make_descriptors(conv_entry *e) {
  const conv_key *k = &e->key;
  cudnnStatus_t st;
  cudnnDataType_t dt = k->bf16 ? CUDNN_DATA_BFLOAT16 : k->dtype == CC_FLOAT32 ? CUDNN_DATA_FLOAT : CUDNN_DATA_DOUBLE;
  cudnnDataType_t compute = k->bf16 ? CUDNN_DATA_FLOAT : dt;
  cudnnMathType_t math = k->bf16 ? CUDNN_TENSOR_OP_MATH
                         : k->dtype == CC_FLOAT32 && !k->tf32 ? CUDNN_FMA_MATH : CUDNN_DEFAULT_MATH;
  if (CC_CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->x)) || CC_CUDNN_CHECK(cudnnCreateTensorDescriptor(&e->y)) ||
      CC_CUDNN_CHECK(cudnnCreateFilterDescriptor(&e->w)) ||
      CC_CUDNN_CHECK(cudnnCreateConvolutionDescriptor(&e->conv)))
    return -1;
  if (CC_CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->x, CUDNN_TENSOR_NCHW, dt, k->N, k->C, k->H, k->W)) ||
      CC_CUDNN_CHECK(cudnnSetTensor4dDescriptor(e->y, CUDNN_TENSOR_NCHW, dt, k->N, k->O, k->Ho, k->Wo)) ||
      CC_CUDNN_CHECK(cudnnSetFilter4dDescriptor(e->w, dt, CUDNN_TENSOR_NCHW, k->O, k->C / k->groups, k->kh, k->kw)) ||
      CC_CUDNN_CHECK(cudnnSetConvolution2dDescriptor(e->conv, k->ph, k->pw, k->sh, k->sw, k->dh, k->dw,
                                                     CUDNN_CROSS_CORRELATION, compute)) ||
      CC_CUDNN_CHECK(cudnnSetConvolutionGroupCount(e->conv, k->groups)) ||
      CC_CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, math)))
    return -1;
  return 0;
}

/* an algorithm result, whichever op it is for (the three perf structs have these fields) */
typedef struct {
  int algo;
  cudnnStatus_t status;
  size_t memory;
  cudnnMathType_t math;
} candidate;

/* With TF32 off ("exact": float32 as the CPU computes it, to 1e-5) only the direct, GEMM-like
   algorithms: no tensor-core math, no FFT or Winograd transforms (their rounding is larger). */
static bool acceptable(const conv_key *k, const candidate *c, size_t limit) {
  if (c->status != CUDNN_STATUS_SUCCESS || c->memory > limit) return false;
  if (k->tf32 || k->bf16) return true;
  if (c->math == CUDNN_TENSOR_OP_MATH || c->math == CUDNN_TENSOR_OP_MATH_ALLOW_CONVERSION) return false;
  switch (k->op) {
  case CONV_FWD:
    return c->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_GEMM || c->algo == CUDNN_CONVOLUTION_FWD_ALGO_IMPLICIT_PRECOMP_GEMM ||
           c->algo == CUDNN_CONVOLUTION_FWD_ALGO_GEMM || c->algo == CUDNN_CONVOLUTION_FWD_ALGO_DIRECT;
  case CONV_BWD_DATA:
    return c->algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_0 || c->algo == CUDNN_CONVOLUTION_BWD_DATA_ALGO_1;
  default:
    return c->algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_0 || c->algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_1 ||
           c->algo == CUDNN_CONVOLUTION_BWD_FILTER_ALGO_3;
  }
}

#define NREQ 16
#define TO_CANDIDATES(perf, n, out)                                                                \
  for (int j_ = 0; j_ < (n) && j_ < NREQ; j_++) {                                                  \
    (out)[j_].algo = (int)(perf)[j_].algo;                                                         \
    (out)[j_].status = (perf)[j_].status;                                                          \
    (out)[j_].memory = (perf)[j_].memory;                                                          \
    (out)[j_].math = (perf)[j_].mathType;                                                          \
  }

/* timed search (cudnnFind*Ex on the real buffers; `out` is written) or, if it fails, the heuristics;
   xp, wp, yp: the op's inputs among x, w, dy (NULL for its output) */
static int find_algo(conv_entry *e, const void *xp, const void *wp, const void *yp, void *out) {
  cudnnStatus_t st;
  const conv_key *k = &e->key;
  size_t limit = SEARCH_WORKSPACE;
  void *ws = NULL;
  while (limit >= ((size_t)1 << 20) && !(ws = cc_cuda_malloc(limit))) limit /= 4; /* take what there is */
  if (!ws) limit = 0;
  candidate cand[NREQ];
  int n = 0, rc;
  if (k->op == CONV_FWD) {
    cudnnConvolutionFwdAlgoPerf_t perf[NREQ];
    rc = CC_CUDNN_CHECK(cudnnFindConvolutionForwardAlgorithmEx(handle, e->x, xp, e->w, wp, e->conv, e->y, out, NREQ,
                                                               &n, perf, ws, limit));
    if (rc) rc = CC_CUDNN_CHECK(cudnnGetConvolutionForwardAlgorithm_v7(handle, e->x, e->w, e->conv, e->y, NREQ, &n, perf));
    if (!rc) TO_CANDIDATES(perf, n, cand);
  } else if (k->op == CONV_BWD_DATA) {
    cudnnConvolutionBwdDataAlgoPerf_t perf[NREQ];
    rc = CC_CUDNN_CHECK(cudnnFindConvolutionBackwardDataAlgorithmEx(handle, e->w, wp, e->y, yp, e->conv, e->x, out,
                                                                    NREQ, &n, perf, ws, limit));
    if (rc)
      rc = CC_CUDNN_CHECK(cudnnGetConvolutionBackwardDataAlgorithm_v7(handle, e->w, e->y, e->conv, e->x, NREQ, &n, perf));
    if (!rc) TO_CANDIDATES(perf, n, cand);
  } else {
    cudnnConvolutionBwdFilterAlgoPerf_t perf[NREQ];
    rc = CC_CUDNN_CHECK(cudnnFindConvolutionBackwardFilterAlgorithmEx(handle, e->x, xp, e->y, yp, e->conv, e->w, out,
                                                                      NREQ, &n, perf, ws, limit));
    if (rc)
      rc = CC_CUDNN_CHECK(
          cudnnGetConvolutionBackwardFilterAlgorithm_v7(handle, e->x, e->y, e->conv, e->w, NREQ, &n, perf));
    if (!rc) TO_CANDIDATES(perf, n, cand);
  }
  if (ws) cc_cuda_free(ws, limit);
  if (rc) return -1;
  /* the results come fastest first: the first acceptable one */
  for (int j = 0; j < n && j < NREQ; j++)
    if (acceptable(k, &cand[j], limit)) {
      e->algo = cand[j].algo;
      e->workspace = cand[j].memory;
      /* the math type the algorithm was timed with is the one it runs with (cuDNN may report another
         than the descriptor's, e.g. FMA for a bfloat16 algorithm without tensor cores) */
      return CC_CUDNN_CHECK(cudnnSetConvolutionMathType(e->conv, cand[j].math));
    }
  cc_set_error("%s: cuDNN offers no suitable algorithm for this shape (N=%d C=%d H=%d W=%d O=%d kernel %dx%d "
               "groups %d)",
               conv_names[k->op], k->N, k->C, k->H, k->W, k->O, k->kh, k->kw, k->groups);
  return -1;
}

/* the cached entry of key, or a new one (descriptors made, algorithm found on the given buffers) */
static conv_entry *lookup(const conv_key *key, const void *xp, const void *wp, const void *yp, void *out) {
  for (int j = 0; j < n_cache; j++)
    if (!memcmp(&cache[j]->key, key, sizeof *key)) return cache[j];
  if (n_cache == cap_cache) {
    int cap = cap_cache ? 2 * cap_cache : 64;
    conv_entry **grown = realloc(cache, (size_t)cap * sizeof *grown);
    if (!grown) {
      cc_set_error("out of host memory");
      return NULL;
    }
    cache = grown;
    cap_cache = cap;
  }
  conv_entry *e = calloc(1, sizeof *e);
  if (!e) {
    cc_set_error("out of host memory");
    return NULL;
  }
  e->key = *key;
  if (make_descriptors(e) || find_algo(e, xp, wp, yp, out)) {
    entry_free(e);
    return NULL;
  }
  cache[n_cache++] = e;
  return e;
}

/* alpha = 1, beta = 0 in the type cuDNN wants for the data type */
static const void *one(int dtype) {
  static const float f = 1.0f;
  static const double d = 1.0;
  return dtype == CC_FLOAT32 ? (const void *)&f : (const void *)&d;
}
static const void *zero(int dtype) {
  static const float f = 0.0f;
  static const double d = 0.0;
  return dtype == CC_FLOAT32 ? (const void *)&f : (const void *)&d;
}

static int zero_fill(cc_tensor *t) {
  return CC_CUDA_CHECK(cudaMemsetAsync(cc_data_ptr(t), 0, (size_t)cc_numel(t) * cc_dtype_size(t->dtype), cc_cuda_stream()));
}

static int check_operands(int op, const cc_call *c) {
  cc_tensor *ts[3] = {c->out[0], c->in[0], c->in[1]};
  for (int j = 0; j < 3; j++)
    if (ts[j]->ndim != 4 || !cc_is_contiguous(ts[j]) || !cc_is_floating(ts[j]->dtype) || ts[j]->dtype != ts[0]->dtype) {
      cc_set_error("%s: expected contiguous 4-d floating operands of one dtype", conv_names[op]);
      return -1;
    }
  if (c->i[6] <= 0) {
    cc_set_error("%s: groups must be positive", conv_names[op]);
    return -1;
  }
  return 0;
}

/* the memory cuDNN works on: the tensors' own, or under bf16 autocast bfloat16 copies of the two inputs
   and a bfloat16 buffer for the output, widened into it by unstage */
typedef struct {
  void *in[2], *out;
  size_t in_bytes[2], out_bytes;
  int bf16;
} staged;

static int stage(staged *s, const conv_key *k, const cc_tensor *in0, const cc_tensor *in1, const cc_tensor *out) {
  memset(s, 0, sizeof *s);
  s->bf16 = k->bf16;
  if (!s->bf16) {
    s->in[0] = cc_data_ptr(in0);
    s->in[1] = cc_data_ptr(in1);
    s->out = cc_data_ptr(out);
    return 0;
  }
  s->out_bytes = (size_t)cc_numel(out) * 2;
  if (cc_cuda_bf16_copy(in0, &s->in[0], &s->in_bytes[0]) || cc_cuda_bf16_copy(in1, &s->in[1], &s->in_bytes[1]) ||
      cc_cuda_scratch(s->out_bytes, &s->out))
    return -1;
  return 0;
}

/* widens the bfloat16 result into out when rc is 0, frees the copies; returns rc or the widening's error */
static int unstage(staged *s, cc_tensor *out, int rc) {
  if (s->bf16) {
    if (!rc && s->out)
      rc = cc_cuda_check(cck_bf16_to_float(cc_data_ptr(out), s->out, cc_numel(out), cc_cuda_stream()), "bf16 autocast result");
    for (int j = 0; j < 2; j++) cc_cuda_scratch_free(s->in[j], s->in_bytes[j]); /* NULL where not made */
    cc_cuda_scratch_free(s->out, s->out_bytes);
  }
  return rc;
}

/* in0 x, in1 w, in2 bias or NULL -> out y */
static int conv2d_cuda(const cc_call *c) {
  if (check_operands(CONV_FWD, c)) return -1;
  cc_tensor *x = c->in[0], *w = c->in[1], *b = c->in[2], *y = c->out[0];
  if (x->shape[0] == 0 || y->shape[2] * y->shape[3] == 0 || x->shape[2] * x->shape[3] == 0) return 0; /* as the CPU */
  conv_key key;
  staged m;
  if (make_key(CONV_FWD, c, x, w, y, &key) || dnn_handle()) return -1;
  if (stage(&m, &key, x, w, y)) return unstage(&m, y, -1);
  conv_entry *e = lookup(&key, m.in[0], m.in[1], NULL, m.out);
  void *ws;
  if (!e || cc_cuda_scratch(e->workspace, &ws)) return unstage(&m, y, -1);
  cudnnStatus_t st;
  int rc = CC_CUDNN_CHECK(cudnnConvolutionForward(handle, one(x->dtype), e->x, m.in[0], e->w, m.in[1], e->conv,
                                                  (cudnnConvolutionFwdAlgo_t)e->algo, ws, e->workspace,
                                                  zero(x->dtype), e->y, m.out));
  cc_cuda_scratch_free(ws, e->workspace);
  rc = unstage(&m, y, rc);
  if (!rc && b)
    rc = cc_cuda_check(cck_bias_add(cc_data_ptr(y), cc_data_ptr(b), y->dtype, y->shape[0], y->shape[1],
                                    y->shape[2] * y->shape[3], cc_cuda_stream()),
                       "conv2d bias");
  return rc;
}

/* in0 grad_out, in1 w -> out dx */
static int conv2d_backward_input_cuda(const cc_call *c) {
  if (check_operands(CONV_BWD_DATA, c)) return -1;
  cc_tensor *gy = c->in[0], *w = c->in[1], *dx = c->out[0];
  if (dx->shape[0] == 0 || dx->shape[2] * dx->shape[3] == 0) return 0;
  if (gy->shape[2] * gy->shape[3] == 0) return zero_fill(dx);
  conv_key key;
  staged m;
  if (make_key(CONV_BWD_DATA, c, dx, w, gy, &key) || dnn_handle()) return -1;
  if (stage(&m, &key, gy, w, dx)) return unstage(&m, dx, -1);
  conv_entry *e = lookup(&key, NULL, m.in[1], m.in[0], m.out);
  void *ws;
  if (!e || cc_cuda_scratch(e->workspace, &ws)) return unstage(&m, dx, -1);
  cudnnStatus_t st;
  int rc = CC_CUDNN_CHECK(cudnnConvolutionBackwardData(handle, one(dx->dtype), e->w, m.in[1], e->y, m.in[0], e->conv,
                                                       (cudnnConvolutionBwdDataAlgo_t)e->algo, ws, e->workspace,
                                                       zero(dx->dtype), e->x, m.out));
  cc_cuda_scratch_free(ws, e->workspace);
  return unstage(&m, dx, rc);
}

/* in0 grad_out, in1 x -> out dw */
static int conv2d_backward_weight_cuda(const cc_call *c) {
  if (check_operands(CONV_BWD_FILTER, c)) return -1;
  cc_tensor *gy = c->in[0], *x = c->in[1], *dw = c->out[0];
  if (x->shape[0] == 0 || gy->shape[2] * gy->shape[3] == 0 || x->shape[2] * x->shape[3] == 0) return zero_fill(dw);
  conv_key key;
  staged m;
  if (make_key(CONV_BWD_FILTER, c, x, dw, gy, &key) || dnn_handle()) return -1;
  if (stage(&m, &key, gy, x, dw)) return unstage(&m, dw, -1);
  conv_entry *e = lookup(&key, m.in[1], NULL, m.in[0], m.out);
  void *ws;
  if (!e || cc_cuda_scratch(e->workspace, &ws)) return unstage(&m, dw, -1);
  cudnnStatus_t st;
  int rc = CC_CUDNN_CHECK(cudnnConvolutionBackwardFilter(handle, one(dw->dtype), e->x, m.in[1], e->y, m.in[0], e->conv,
                                                         (cudnnConvolutionBwdFilterAlgo_t)e->algo, ws, e->workspace,
                                                         zero(dw->dtype), e->w, m.out));
  cc_cuda_scratch_free(ws, e->workspace);
  return unstage(&m, dw, rc);
}

void cc_cuda_register_dnn(void) {
  cc_register_kernel(CC_OP_CONV2D, CC_CUDA, conv2d_cuda);
  cc_register_kernel(CC_OP_CONV2D_BACKWARD_INPUT, CC_CUDA, conv2d_backward_input_cuda);
  cc_register_kernel(CC_OP_CONV2D_BACKWARD_WEIGHT, CC_CUDA, conv2d_backward_weight_cuda);
}
