/* emu_cudnn.c — a host stand-in for the cuDNN calls of csrc/cuda/cuda_dnn.c (COCOLA_CUDA=EMULATE
 * only): the three NCHW convolutions by definition (grouped, strided, padded, dilated; cross-correlation
 * or true convolution), descriptors that check their shapes against each other, one "algorithm" that
 * demands a workspace (so the workspace plumbing is exercised) and alpha/beta as documented.
 * Data float, double, or bfloat16 with float compute (bf16 autocast): bfloat16 operands widened, the
 * result rounded to bfloat16. */
#include <cudnn.h>

#include "scalar.h"

#include <stdlib.h>
#include <string.h>

#define EMU_WORKSPACE 4096 /* bytes the emulated algorithm insists on */

struct cudnnContext {
  int dummy;
};
struct cudnnTensorStruct {
  cudnnDataType_t dt;
  int n, c, h, w;
  int set;
};
struct cudnnFilterStruct {
  cudnnDataType_t dt;
  int k, c, h, w;
  int set;
};
struct cudnnConvolutionStruct {
  int ph, pw, sh, sw, dh, dw, groups;
  cudnnDataType_t compute;
  cudnnConvolutionMode_t mode;
  cudnnMathType_t math;
  int set;
};

const char *cudnnGetErrorString(cudnnStatus_t st) {
  switch (st) {
  case CUDNN_STATUS_SUCCESS: return "CUDNN_STATUS_SUCCESS";
  case CUDNN_STATUS_BAD_PARAM: return "CUDNN_STATUS_BAD_PARAM";
  case CUDNN_STATUS_NOT_SUPPORTED: return "CUDNN_STATUS_NOT_SUPPORTED";
  default: return "CUDNN_STATUS_INTERNAL_ERROR (emulated)";
  }
}

cudnnStatus_t cudnnCreate(cudnnHandle_t *h) {
  *h = calloc(1, sizeof(struct cudnnContext));
  return *h ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}
cudnnStatus_t cudnnDestroy(cudnnHandle_t h) {
  free(h);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetStream(cudnnHandle_t h, cudaStream_t s) {
  (void)s;
  return h ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_BAD_PARAM;
}

cudnnStatus_t cudnnCreateTensorDescriptor(cudnnTensorDescriptor_t *d) {
  *d = calloc(1, sizeof(struct cudnnTensorStruct));
  return *d ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}
cudnnStatus_t cudnnDestroyTensorDescriptor(cudnnTensorDescriptor_t d) {
  free(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetTensor4dDescriptor(cudnnTensorDescriptor_t d, cudnnTensorFormat_t format, cudnnDataType_t dt,
                                         int n, int c, int h, int w) {
  if (format != CUDNN_TENSOR_NCHW || n <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  if (dt != CUDNN_DATA_FLOAT && dt != CUDNN_DATA_DOUBLE && dt != CUDNN_DATA_BFLOAT16) return CUDNN_STATUS_NOT_SUPPORTED;
  *d = (struct cudnnTensorStruct){dt, n, c, h, w, 1};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateFilterDescriptor(cudnnFilterDescriptor_t *d) {
  *d = calloc(1, sizeof(struct cudnnFilterStruct));
  return *d ? CUDNN_STATUS_SUCCESS : CUDNN_STATUS_ALLOC_FAILED;
}
cudnnStatus_t cudnnDestroyFilterDescriptor(cudnnFilterDescriptor_t d) {
  free(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetFilter4dDescriptor(cudnnFilterDescriptor_t d, cudnnDataType_t dt, cudnnTensorFormat_t format,
                                         int k, int c, int h, int w) {
  if (format != CUDNN_TENSOR_NCHW || k <= 0 || c <= 0 || h <= 0 || w <= 0) return CUDNN_STATUS_BAD_PARAM;
  *d = (struct cudnnFilterStruct){dt, k, c, h, w, 1};
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnCreateConvolutionDescriptor(cudnnConvolutionDescriptor_t *d) {
  *d = calloc(1, sizeof(struct cudnnConvolutionStruct));
  if (!*d) return CUDNN_STATUS_ALLOC_FAILED;
  (*d)->groups = 1;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnDestroyConvolutionDescriptor(cudnnConvolutionDescriptor_t d) {
  free(d);
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolution2dDescriptor(cudnnConvolutionDescriptor_t d, int ph, int pw, int sh, int sw, int dh,
                                              int dw, cudnnConvolutionMode_t mode, cudnnDataType_t compute) {
  if (ph < 0 || pw < 0 || sh <= 0 || sw <= 0 || dh <= 0 || dw <= 0) return CUDNN_STATUS_BAD_PARAM;
  d->ph = ph, d->pw = pw, d->sh = sh, d->sw = sw, d->dh = dh, d->dw = dw, d->mode = mode, d->compute = compute;
  d->set = 1;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionGroupCount(cudnnConvolutionDescriptor_t d, int groups) {
  if (groups <= 0) return CUDNN_STATUS_BAD_PARAM;
  d->groups = groups;
  return CUDNN_STATUS_SUCCESS;
}
cudnnStatus_t cudnnSetConvolutionMathType(cudnnConvolutionDescriptor_t d, cudnnMathType_t m) {
  d->math = m;
  return CUDNN_STATUS_SUCCESS;
}

/* the shapes must agree as cuDNN's do: filter (O, C/groups, kh, kw), y from the output-size formula */
static cudnnStatus_t check(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t cv,
                           cudnnTensorDescriptor_t y) {
  if (!x->set || !w->set || !cv->set || !y->set) return CUDNN_STATUS_BAD_PARAM;
  if (x->dt != w->dt || x->dt != y->dt) return CUDNN_STATUS_BAD_PARAM;
  /* bfloat16 data computes in float (the only configuration cuDNN offers), the others in their own type */
  if (cv->compute != (x->dt == CUDNN_DATA_BFLOAT16 ? CUDNN_DATA_FLOAT : x->dt)) return CUDNN_STATUS_NOT_SUPPORTED;
  if (w->c * cv->groups != x->c || w->k % cv->groups || y->c != w->k || y->n != x->n) return CUDNN_STATUS_BAD_PARAM;
  int ho = (x->h + 2 * cv->ph - (cv->dh * (w->h - 1) + 1)) / cv->sh + 1;
  int wo = (x->w + 2 * cv->pw - (cv->dw * (w->w - 1) + 1)) / cv->sw + 1;
  if (ho != y->h || wo != y->w) return CUDNN_STATUS_BAD_PARAM;
  return CUDNN_STATUS_SUCCESS;
}

/* visits every (output element, tap) pair: f(xi, wi, yi) with flat indices, or skips padding */
typedef void (*visit_fn)(void *ctx, long xi, long wi, long yi);
static void visit(cudnnTensorDescriptor_t x, cudnnFilterDescriptor_t w, cudnnConvolutionDescriptor_t cv,
                  cudnnTensorDescriptor_t y, visit_fn f, void *ctx) {
  int G = cv->groups, Cg = w->c, Og = w->k / G;
  for (int n = 0; n < y->n; n++)
    for (int o = 0; o < y->c; o++) {
      int g = o / Og;
      for (int i = 0; i < y->h; i++)
        for (int j = 0; j < y->w; j++) {
          long yi = (((long)n * y->c + o) * y->h + i) * y->w + j;
          for (int c = 0; c < Cg; c++)
            for (int r = 0; r < w->h; r++)
              for (int s = 0; s < w->w; s++) {
                int h = i * cv->sh - cv->ph + r * cv->dh, ww = j * cv->sw - cv->pw + s * cv->dw;
                if (h < 0 || h >= x->h || ww < 0 || ww >= x->w) continue;
                int rr = cv->mode == CUDNN_CONVOLUTION ? w->h - 1 - r : r;
                int ss = cv->mode == CUDNN_CONVOLUTION ? w->w - 1 - s : s;
                long xi = (((long)n * x->c + g * Cg + c) * x->h + h) * x->w + ww;
                long wi = (((long)o * Cg + c) * w->h + rr) * w->w + ss;
                f(ctx, xi, wi, yi);
              }
        }
    }
}

typedef struct {
  const void *a, *b;
  double *acc;
  cudnnDataType_t dt;
} mac_ctx;
static double at(const void *p, long i, cudnnDataType_t dt) {
  if (dt == CUDNN_DATA_DOUBLE) return ((const double *)p)[i];
  if (dt == CUDNN_DATA_BFLOAT16) return cc_bf16_to_float(((const uint16_t *)p)[i]);
  return ((const float *)p)[i];
}
static void mac_fwd(void *v, long xi, long wi, long yi) {
  mac_ctx *c = v;
  c->acc[yi] += at(c->a, xi, c->dt) * at(c->b, wi, c->dt);
}
static void mac_bwd_data(void *v, long xi, long wi, long yi) {
  mac_ctx *c = v; /* a = w, b = dy */
  c->acc[xi] += at(c->a, wi, c->dt) * at(c->b, yi, c->dt);
}
static void mac_bwd_filter(void *v, long xi, long wi, long yi) {
  mac_ctx *c = v; /* a = x, b = dy */
  c->acc[wi] += at(c->a, xi, c->dt) * at(c->b, yi, c->dt);
}

/* out = alpha * acc + beta * out (alpha and beta are double for double data, float otherwise) */
static void blend(void *out, const double *acc, long n, const void *alpha, const void *beta, cudnnDataType_t dt) {
  int dbl = dt == CUDNN_DATA_DOUBLE;
  double al = dbl ? *(const double *)alpha : *(const float *)alpha;
  double be = dbl ? *(const double *)beta : *(const float *)beta;
  for (long i = 0; i < n; i++) {
    double old = be == 0 ? 0 : at(out, i, dt);
    double v = al * acc[i] + be * old;
    if (dbl) ((double *)out)[i] = v;
    else if (dt == CUDNN_DATA_BFLOAT16) ((uint16_t *)out)[i] = cc_float_to_bf16((float)v);
    else ((float *)out)[i] = (float)v;
  }
}

static long tsize(cudnnTensorDescriptor_t t) { return (long)t->n * t->c * t->h * t->w; }
static long fsize(cudnnFilterDescriptor_t f) { return (long)f->k * f->c * f->h * f->w; }

static cudnnStatus_t run(int kind, const void *alpha, cudnnTensorDescriptor_t x, const void *a,
                         cudnnFilterDescriptor_t w, const void *b, cudnnConvolutionDescriptor_t cv, void *ws,
                         size_t wsbytes, const void *beta, cudnnTensorDescriptor_t y, void *out) {
  cudnnStatus_t st = check(x, w, cv, y);
  if (st != CUDNN_STATUS_SUCCESS) return st;
  if (!ws || wsbytes < EMU_WORKSPACE) return CUDNN_STATUS_BAD_PARAM; /* this algorithm needs its workspace */
  memset(ws, 0, EMU_WORKSPACE);
  long n = kind == 0 ? tsize(y) : kind == 1 ? tsize(x) : fsize(w);
  double *acc = calloc((size_t)n + 1, sizeof *acc);
  if (!acc) return CUDNN_STATUS_ALLOC_FAILED;
  mac_ctx c = {a, b, acc, x->dt};
  visit(x, w, cv, y, kind == 0 ? mac_fwd : kind == 1 ? mac_bwd_data : mac_bwd_filter, &c);
  blend(out, acc, n, alpha, beta, c.dt);
  free(acc);
  return CUDNN_STATUS_SUCCESS;
}

cudnnStatus_t cudnnConvolutionForward(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                      const void *x, const cudnnFilterDescriptor_t wd, const void *w,
                                      const cudnnConvolutionDescriptor_t cv, cudnnConvolutionFwdAlgo_t algo, void *ws,
                                      size_t wsbytes, const void *beta, const cudnnTensorDescriptor_t yd, void *y) {
  if (!h || algo != (cudnnConvolutionFwdAlgo_t)0) return CUDNN_STATUS_BAD_PARAM;
  return run(0, alpha, xd, x, wd, w, cv, ws, wsbytes, beta, yd, y);
}

cudnnStatus_t cudnnConvolutionBackwardData(cudnnHandle_t h, const void *alpha, const cudnnFilterDescriptor_t wd,
                                           const void *w, const cudnnTensorDescriptor_t dyd, const void *dy,
                                           const cudnnConvolutionDescriptor_t cv, cudnnConvolutionBwdDataAlgo_t algo,
                                           void *ws, size_t wsbytes, const void *beta,
                                           const cudnnTensorDescriptor_t dxd, void *dx) {
  if (!h || algo != (cudnnConvolutionBwdDataAlgo_t)0) return CUDNN_STATUS_BAD_PARAM;
  return run(1, alpha, dxd, w, wd, dy, cv, ws, wsbytes, beta, dyd, dx);
}

cudnnStatus_t cudnnConvolutionBackwardFilter(cudnnHandle_t h, const void *alpha, const cudnnTensorDescriptor_t xd,
                                             const void *x, const cudnnTensorDescriptor_t dyd, const void *dy,
                                             const cudnnConvolutionDescriptor_t cv,
                                             cudnnConvolutionBwdFilterAlgo_t algo, void *ws, size_t wsbytes,
                                             const void *beta, const cudnnFilterDescriptor_t dwd, void *dw) {
  if (!h || algo != (cudnnConvolutionBwdFilterAlgo_t)0) return CUDNN_STATUS_BAD_PARAM;
  return run(2, alpha, xd, x, dwd, dy, cv, ws, wsbytes, beta, dyd, dw);
}

/* ---- algorithm search: one algorithm (0), which needs EMU_WORKSPACE bytes ---- */
#define EMU_FIND(FN, PERF, ALGO)                                                                   \
  static cudnnStatus_t FN(cudnnConvolutionDescriptor_t cv, int requested, int *returned, PERF *perf) { \
    if (requested < 1) return CUDNN_STATUS_BAD_PARAM;                                              \
    memset(perf, 0, sizeof *perf);                                                                 \
    perf->algo = (ALGO)0;                                                                          \
    perf->status = CUDNN_STATUS_SUCCESS;                                                           \
    perf->memory = EMU_WORKSPACE;                                                                  \
    perf->determinism = CUDNN_DETERMINISTIC;                                                       \
    perf->mathType = cv->math;                                                                     \
    *returned = 1;                                                                                 \
    return CUDNN_STATUS_SUCCESS;                                                                   \
  }
EMU_FIND(one_fwd, cudnnConvolutionFwdAlgoPerf_t, cudnnConvolutionFwdAlgo_t)
EMU_FIND(one_bwd_data, cudnnConvolutionBwdDataAlgoPerf_t, cudnnConvolutionBwdDataAlgo_t)
EMU_FIND(one_bwd_filter, cudnnConvolutionBwdFilterAlgoPerf_t, cudnnConvolutionBwdFilterAlgo_t)

cudnnStatus_t cudnnFindConvolutionForwardAlgorithmEx(cudnnHandle_t h, const cudnnTensorDescriptor_t xd, const void *x,
                                                     const cudnnFilterDescriptor_t wd, const void *w,
                                                     const cudnnConvolutionDescriptor_t cv,
                                                     const cudnnTensorDescriptor_t yd, void *y, const int requested,
                                                     int *returned, cudnnConvolutionFwdAlgoPerf_t *perf, void *ws,
                                                     size_t wsbytes) {
  (void)ws;
  (void)wsbytes;
  if (!h || !x || !w || !y) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(xd, wd, cv, yd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_fwd(cv, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionForwardAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                     const cudnnFilterDescriptor_t wd,
                                                     const cudnnConvolutionDescriptor_t cv,
                                                     const cudnnTensorDescriptor_t yd, const int requested,
                                                     int *returned, cudnnConvolutionFwdAlgoPerf_t *perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(xd, wd, cv, yd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_fwd(cv, requested, returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardDataAlgorithmEx(cudnnHandle_t h, const cudnnFilterDescriptor_t wd,
                                                          const void *w, const cudnnTensorDescriptor_t dyd,
                                                          const void *dy, const cudnnConvolutionDescriptor_t cv,
                                                          const cudnnTensorDescriptor_t dxd, void *dx,
                                                          const int requested, int *returned,
                                                          cudnnConvolutionBwdDataAlgoPerf_t *perf, void *ws,
                                                          size_t wsbytes) {
  (void)ws;
  (void)wsbytes;
  if (!h || !w || !dy || !dx) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(dxd, wd, cv, dyd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_bwd_data(cv, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionBackwardDataAlgorithm_v7(cudnnHandle_t h, const cudnnFilterDescriptor_t wd,
                                                          const cudnnTensorDescriptor_t dyd,
                                                          const cudnnConvolutionDescriptor_t cv,
                                                          const cudnnTensorDescriptor_t dxd, const int requested,
                                                          int *returned, cudnnConvolutionBwdDataAlgoPerf_t *perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(dxd, wd, cv, dyd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_bwd_data(cv, requested, returned, perf);
}

cudnnStatus_t cudnnFindConvolutionBackwardFilterAlgorithmEx(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                            const void *x, const cudnnTensorDescriptor_t dyd,
                                                            const void *dy, const cudnnConvolutionDescriptor_t cv,
                                                            const cudnnFilterDescriptor_t dwd, void *dw,
                                                            const int requested, int *returned,
                                                            cudnnConvolutionBwdFilterAlgoPerf_t *perf, void *ws,
                                                            size_t wsbytes) {
  (void)ws;
  (void)wsbytes;
  if (!h || !x || !dy || !dw) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(xd, dwd, cv, dyd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_bwd_filter(cv, requested, returned, perf);
}

cudnnStatus_t cudnnGetConvolutionBackwardFilterAlgorithm_v7(cudnnHandle_t h, const cudnnTensorDescriptor_t xd,
                                                            const cudnnTensorDescriptor_t dyd,
                                                            const cudnnConvolutionDescriptor_t cv,
                                                            const cudnnFilterDescriptor_t dwd, const int requested,
                                                            int *returned, cudnnConvolutionBwdFilterAlgoPerf_t *perf) {
  if (!h) return CUDNN_STATUS_BAD_PARAM;
  cudnnStatus_t st = check(xd, dwd, cv, dyd);
  return st != CUDNN_STATUS_SUCCESS ? st : one_bwd_filter(cv, requested, returned, perf);
}
