/* emu_cublas.c — a host stand-in for the cuBLAS calls of csrc/cuda/cuda_blas.c (COCOLA_CUDA=EMULATE
 * only): column-major GEMM by the definition in cuBLAS's documentation, with its argument checks
 * (leading dimensions), so that the backend's row-/column-major mapping is exercised for real.
 * The Ex calls take the mixed precision of bf16 autocast only: bfloat16 A and B, float32 C, FP32 compute. */
#include <cublas_v2.h>

#include "scalar.h"

#include <stdlib.h>

struct cublasContext {
  int math;
};

cublasStatus_t cublasCreate_v2(cublasHandle_t *handle) {
  *handle = calloc(1, sizeof(struct cublasContext));
  return *handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_ALLOC_FAILED;
}

cublasStatus_t cublasDestroy_v2(cublasHandle_t handle) {
  free(handle);
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasSetStream_v2(cublasHandle_t handle, cudaStream_t s) {
  (void)s;
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetWorkspace_v2(cublasHandle_t handle, void *ws, size_t bytes) {
  (void)ws;
  (void)bytes;
  return handle ? CUBLAS_STATUS_SUCCESS : CUBLAS_STATUS_NOT_INITIALIZED;
}

cublasStatus_t cublasSetMathMode(cublasHandle_t handle, cublasMath_t mode) {
  if (!handle) return CUBLAS_STATUS_NOT_INITIALIZED;
  handle->math = (int)mode;
  return CUBLAS_STATUS_SUCCESS;
}

const char *cublasGetStatusName(cublasStatus_t st) {
  switch (st) {
  case CUBLAS_STATUS_SUCCESS: return "CUBLAS_STATUS_SUCCESS";
  case CUBLAS_STATUS_NOT_INITIALIZED: return "CUBLAS_STATUS_NOT_INITIALIZED";
  case CUBLAS_STATUS_ALLOC_FAILED: return "CUBLAS_STATUS_ALLOC_FAILED";
  case CUBLAS_STATUS_INVALID_VALUE: return "CUBLAS_STATUS_INVALID_VALUE";
  default: return "CUBLAS_STATUS_INTERNAL_ERROR";
  }
}

const char *cublasGetStatusString(cublasStatus_t st) {
  return st == CUBLAS_STATUS_INVALID_VALUE ? "an invalid value was used as an argument" : "emulated cuBLAS status";
}

/* C = alpha op(A) op(B) + beta C, column-major; beta 0 ignores C's old contents */
#define EMU_GEMM(NAME, T)                                                                          \
  static cublasStatus_t NAME(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, T alpha, \
                             const T *A, int lda, const T *B, int ldb, T beta, T *C, int ldc) {    \
    if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;                               \
    if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T))      \
      return CUBLAS_STATUS_INVALID_VALUE;                                                          \
    int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;                            \
    if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1))               \
      return CUBLAS_STATUS_INVALID_VALUE;                                                          \
    for (int j = 0; j < n; j++)                                                                    \
      for (int i = 0; i < m; i++) {                                                                \
        double acc = 0;                                                                            \
        for (int p = 0; p < k; p++) {                                                              \
          T a = ta == CUBLAS_OP_N ? A[i + (long)p * lda] : A[p + (long)i * lda];                   \
          T b = tb == CUBLAS_OP_N ? B[p + (long)j * ldb] : B[j + (long)p * ldb];                   \
          acc += (double)a * (double)b;                                                            \
        }                                                                                          \
        T *c = &C[i + (long)j * ldc];                                                              \
        *c = (T)(alpha * acc + (beta == 0 ? 0.0 : beta * *c));                                     \
      }                                                                                            \
    return CUBLAS_STATUS_SUCCESS;                                                                  \
  }
EMU_GEMM(gemm_f, float)
EMU_GEMM(gemm_d, double)

cublasStatus_t cublasSgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const float *alpha, const float *A, int lda, const float *B, int ldb, const float *beta,
                              float *C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  return gemm_f(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

cublasStatus_t cublasDgemm_v2(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                              const double *alpha, const double *A, int lda, const double *B, int ldb,
                              const double *beta, double *C, int ldc) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  return gemm_d(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

cublasStatus_t cublasSgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const float *alpha, const float *A, int lda, long long int sA,
                                         const float *B, int ldb, long long int sB, const float *beta, float *C,
                                         int ldc, long long int sC, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int b = 0; b < batch; b++) {
    cublasStatus_t st = gemm_f(ta, tb, m, n, k, *alpha, A + b * sA, lda, B + b * sB, ldb, *beta, C + b * sC, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasDgemmStridedBatched(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                         int k, const double *alpha, const double *A, int lda, long long int sA,
                                         const double *B, int ldb, long long int sB, const double *beta, double *C,
                                         int ldc, long long int sC, int batch) {
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  for (int b = 0; b < batch; b++) {
    cublasStatus_t st = gemm_d(ta, tb, m, n, k, *alpha, A + b * sA, lda, B + b * sB, ldb, *beta, C + b * sC, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}

/* ---- mixed precision (cublasGemmEx): bfloat16 operands, float32 result and accumulation ---- */
static cublasStatus_t gemm_bf16(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, float alpha,
                                const uint16_t *A, int lda, const uint16_t *B, int ldb, float beta, float *C, int ldc) {
  if (m < 0 || n < 0 || k < 0) return CUBLAS_STATUS_INVALID_VALUE;
  if ((ta != CUBLAS_OP_N && ta != CUBLAS_OP_T) || (tb != CUBLAS_OP_N && tb != CUBLAS_OP_T)) return CUBLAS_STATUS_INVALID_VALUE;
  int ra = ta == CUBLAS_OP_N ? m : k, rb = tb == CUBLAS_OP_N ? k : n;
  if (lda < (ra > 1 ? ra : 1) || ldb < (rb > 1 ? rb : 1) || ldc < (m > 1 ? m : 1)) return CUBLAS_STATUS_INVALID_VALUE;
  for (int j = 0; j < n; j++)
    for (int i = 0; i < m; i++) {
      float acc = 0; /* FP32 accumulation, as the tensor cores do */
      for (int p = 0; p < k; p++) {
        float a = cc_bf16_to_float(ta == CUBLAS_OP_N ? A[i + (long)p * lda] : A[p + (long)i * lda]);
        float b = cc_bf16_to_float(tb == CUBLAS_OP_N ? B[p + (long)j * ldb] : B[j + (long)p * ldb]);
        acc += a * b;
      }
      float *c = &C[i + (long)j * ldc];
      *c = alpha * acc + (beta == 0 ? 0.0f : beta * *c);
    }
  return CUBLAS_STATUS_SUCCESS;
}

static cublasStatus_t check_ex(cudaDataType at, cudaDataType bt, cudaDataType ct, cublasComputeType_t compute) {
  if (at != CUDA_R_16BF || bt != CUDA_R_16BF || ct != CUDA_R_32F || compute != CUBLAS_COMPUTE_32F)
    return CUBLAS_STATUS_NOT_SUPPORTED; /* this stand-in knows only the autocast combination */
  return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t cublasGemmEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                            const void *alpha, const void *A, cudaDataType at, int lda, const void *B, cudaDataType bt,
                            int ldb, const void *beta, void *C, cudaDataType ct, int ldc,
                            cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  (void)algo;
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  cublasStatus_t st = check_ex(at, bt, ct, compute);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  return gemm_bf16(ta, tb, m, n, k, *(const float *)alpha, A, lda, B, ldb, *(const float *)beta, C, ldc);
}

cublasStatus_t cublasGemmStridedBatchedEx(cublasHandle_t h, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                                          int k, const void *alpha, const void *A, cudaDataType at, int lda,
                                          long long int sA, const void *B, cudaDataType bt, int ldb, long long int sB,
                                          const void *beta, void *C, cudaDataType ct, int ldc, long long int sC,
                                          int batch, cublasComputeType_t compute, cublasGemmAlgo_t algo) {
  (void)algo;
  if (!h) return CUBLAS_STATUS_NOT_INITIALIZED;
  if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
  cublasStatus_t st = check_ex(at, bt, ct, compute);
  if (st != CUBLAS_STATUS_SUCCESS) return st;
  for (int b = 0; b < batch; b++) {
    st = gemm_bf16(ta, tb, m, n, k, *(const float *)alpha, (const uint16_t *)A + b * sA, lda,
                   (const uint16_t *)B + b * sB, ldb, *(const float *)beta, (float *)C + b * sC, ldc);
    if (st != CUBLAS_STATUS_SUCCESS) return st;
  }
  return CUBLAS_STATUS_SUCCESS;
}
