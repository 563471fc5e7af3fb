/* cuda_blas.c — the GEMM op on the GPU through cuBLAS: out[..] <- alpha op(a[..]) op(b[..]) + beta out[..]
 * over equal batch dims, as gemm_cpu in csrc/ops/linalg.c.
 *
 * cuBLAS is column-major. Every matrix is described by its element strides (rs, cs); a matrix with a
 * unit stride along either dim is passed as it is (as the stored matrix or its transpose); a
 * row-major output is handled by computing C^T = op(B)^T op(A)^T. Batches go to one strided-batched
 * call when each operand's batch offsets are a multiple of one stride (0 for a broadcast batch);
 * an operand that fits none of this is copied to a contiguous temporary first, and an output through
 * a temporary. TF32 tensor-core math only when cocola.cuda.set_tf32(true) (off: plain FP32).
 * bf16 autocast (cocola.cuda.set_autocast("bf16")): float32 operands are copied to bfloat16 (made
 * contiguous first) and multiplied by cublasGemmEx with FP32 accumulation into the float32 output.
 */
#include "cuda_internal.h"

#include <cublas_v2.h>
#include <limits.h>
#include <stdio.h>

#define WORKSPACE_BYTES ((size_t)32 << 20) /* what cuBLAS recommends for Hopper */

static cublasHandle_t handle;
static int handle_state; /* 0 not yet, 1 ready, -1 failed */
static void *workspace;

static int blas_fail(cublasStatus_t st, const char *what) {
  cc_set_error("cuBLAS error %s (%s) in %s", cublasGetStatusName(st), cublasGetStatusString(st), what);
  return -1;
}
#define CC_CUBLAS_CHECK(expr) ((st = (expr)) == CUBLAS_STATUS_SUCCESS ? 0 : blas_fail(st, #expr))

static int blas_handle(void) {
  cublasStatus_t st;
  if (handle_state < 0) {
    cc_set_error("cuBLAS could not be initialised earlier in this process");
    return -1;
  }
  if (handle_state == 0) {
    if (CC_CUBLAS_CHECK(cublasCreate(&handle))) {
      handle_state = -1;
      return -1;
    }
    if (CC_CUBLAS_CHECK(cublasSetStream(handle, cc_cuda_stream()))) return -1;
    workspace = cc_cuda_malloc(WORKSPACE_BYTES); /* cuBLAS's scratch from our allocator (stats) */
    if (workspace && CC_CUBLAS_CHECK(cublasSetWorkspace(handle, workspace, WORKSPACE_BYTES))) return -1;
    handle_state = 1;
  }
  return CC_CUBLAS_CHECK(
      cublasSetMathMode(handle, cc_cuda_tf32() ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH));
}

/* a rows x cols matrix with element strides (rs, cs) read column-major: as it is (N) when rs is the
   unit stride, or as the transpose of a column-major matrix (T) when cs is; ld as cuBLAS wants it */
static bool col_major(int64_t rows, int64_t cols, int64_t rs, int64_t cs, int64_t *ld) {
  int64_t mr = rows > 1 ? rows : 1;
  if ((rs == 1 || rows <= 1) && (cols <= 1 || cs >= mr)) {
    *ld = cols <= 1 ? mr : cs;
    return *ld <= INT_MAX;
  }
  return false;
}

static bool readable(int64_t rows, int64_t cols, int64_t rs, int64_t cs, cublasOperation_t *op, int64_t *ld) {
  if (col_major(rows, cols, rs, cs, ld)) {
    *op = CUBLAS_OP_N;
    return true;
  }
  if (col_major(cols, rows, cs, rs, ld)) {
    *op = CUBLAS_OP_T;
    return true;
  }
  return false;
}

/* whether the batch offsets of t (batch dims = all but the last two) are b * stride for the flat batch
   index b, and that stride */
static bool uniform_batch(const cc_tensor *t, int64_t *stride) {
  int nbd = t->ndim - 2;
  int64_t span = 1;
  bool first = true;
  *stride = 0;
  for (int d = nbd - 1; d >= 0; d--) {
    if (t->shape[d] == 1) continue;
    if (first) {
      *stride = t->stride[d];
      first = false;
    } else if (t->stride[d] != *stride * span) {
      return false;
    }
    span *= t->shape[d];
  }
  return true;
}

/* a contiguous copy (broadcast dims materialised), outside autograd */
static cc_tensor *dense_copy(cc_tensor *t) {
  cc_tensor *c = cc_empty(t->ndim, t->shape, t->dtype, t->storage->device);
  if (c && cc_run(CC_OP_COPY, c, 1, &t, NULL, 0, NULL, 0)) {
    cc_release(c);
    c = NULL;
  }
  return c;
}

/* logical matrix op(X) of a batched operand: element (i, j) at base + i rs + j cs */
typedef struct {
  const char *base;
  int64_t rs, cs, bstride;
} mat;

static mat op_mat(const cc_tensor *t, bool trans, int64_t bstride) {
  int nd = t->ndim;
  mat m;
  m.base = cc_data_ptr(t);
  m.rs = trans ? t->stride[nd - 1] : t->stride[nd - 2];
  m.cs = trans ? t->stride[nd - 2] : t->stride[nd - 1];
  m.bstride = bstride;
  return m;
}

static int gemm_cuda(const cc_call *c) {
  cc_tensor *a = c->in[0], *b = c->in[1], *out = c->out[0];
  bool ta = c->i[0] != 0, tb = c->i[1] != 0;
  double alpha = c->f[0], beta = c->f[1];
  int nd = out->ndim;
  int64_t M, N, K, nbatch;
  if (cc_gemm_sizes(c, "cuBLAS", &M, &N, &K, &nbatch)) return -1;
  if (M == 0 || N == 0 || nbatch == 0) return 0;
  if (nbatch > INT_MAX) {
    cc_set_error("gemm: more than %d matrices in a batch", INT_MAX);
    return -1;
  }
  if (K == 0) { /* alpha * (empty sum) + beta * out */
    if (beta == 0) return cc_run(CC_OP_FILL, out, 0, NULL, NULL, 0, (double[]){0.0}, 1);
    return cc_run(CC_OP_SCALAR, out, 1, &out, (int64_t[]){CC_BIN_MUL}, 1, (double[]){beta, 0.0}, 2);
  }
  if (blas_handle()) return -1;

  cc_tensor *ac = NULL, *bc = NULL, *oc = NULL;
  void *a16 = NULL, *b16 = NULL; /* bf16 autocast copies of a and b */
  size_t a16_bytes = 0, b16_bytes = 0;
  bool bf16 = cc_cuda_bf16(out);
  int rc = -1;
  cublasOperation_t op;
  int64_t ld, sa, sb, so;
  /* operands cuBLAS cannot read (or, under autocast, any not contiguous) are made contiguous */
  if (bf16 && !cc_is_contiguous(a)) {
    if (!(ac = dense_copy(a))) goto done;
    a = ac;
  }
  if (bf16 && !cc_is_contiguous(b)) {
    if (!(bc = dense_copy(b))) goto done;
    b = bc;
  }
  if (!uniform_batch(a, &sa) ||
      !readable(a->shape[nd - 2], a->shape[nd - 1], a->stride[nd - 2], a->stride[nd - 1], &op, &ld)) {
    if (!(ac = dense_copy(a))) goto done;
    a = ac;
    uniform_batch(a, &sa);
  }
  if (!uniform_batch(b, &sb) ||
      !readable(b->shape[nd - 2], b->shape[nd - 1], b->stride[nd - 2], b->stride[nd - 1], &op, &ld)) {
    if (!(bc = dense_copy(b))) goto done;
    b = bc;
    uniform_batch(b, &sb);
  }
  cc_tensor *o = out;
  if (!uniform_batch(out, &so) || (nbatch > 1 && so == 0) ||
      !readable(M, N, out->stride[nd - 2], out->stride[nd - 1], &op, &ld)) {
    if (!(oc = cc_empty(nd, out->shape, out->dtype, out->storage->device))) goto done;
    if (beta != 0 && cc_run(CC_OP_COPY, oc, 1, &out, NULL, 0, NULL, 0)) goto done;
    o = oc;
    uniform_batch(o, &so);
  }

  mat A = op_mat(a, ta, sa), B = op_mat(b, tb, sb), C = op_mat(o, false, so);
  if (bf16) { /* the same layout, in bfloat16 */
    if (cc_cuda_bf16_copy(a, &a16, &a16_bytes) || cc_cuda_bf16_copy(b, &b16, &b16_bytes)) goto done;
    A.base = a16;
    B.base = b16;
  }
  /* the column-major problem Z (m x n) = X (m x k) Y (k x n) */
  int64_t m = M, n = N, ldz;
  mat X = A, Y = B, Z = C;
  if (!col_major(M, N, C.rs, C.cs, &ldz)) { /* row-major output: C^T = op(B)^T op(A)^T */
    m = N;
    n = M;
    X = (mat){B.base, B.cs, B.rs, B.bstride};
    Y = (mat){A.base, A.cs, A.rs, A.bstride};
    Z = (mat){C.base, C.cs, C.rs, C.bstride};
    if (!col_major(m, n, Z.rs, Z.cs, &ldz)) {
      cc_set_error("gemm: internal error, output layout");
      goto done;
    }
  }
  cublasOperation_t opx, opy;
  int64_t ldx, ldy;
  if (!readable(m, K, X.rs, X.cs, &opx, &ldx) || !readable(K, n, Y.rs, Y.cs, &opy, &ldy)) {
    cc_set_error("gemm: internal error, operand layout");
    goto done;
  }
  cublasStatus_t st;
  cublasHandle_t h = handle;
  if (bf16) {
    float al = (float)alpha, be = (float)beta;
    if (nbatch == 1)
      rc = CC_CUBLAS_CHECK(cublasGemmEx(h, opx, opy, (int)m, (int)n, (int)K, &al, X.base, CUDA_R_16BF, (int)ldx, Y.base,
                                        CUDA_R_16BF, (int)ldy, &be, (void *)Z.base, CUDA_R_32F, (int)ldz,
                                        CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
    else
      rc = CC_CUBLAS_CHECK(cublasGemmStridedBatchedEx(h, opx, opy, (int)m, (int)n, (int)K, &al, X.base, CUDA_R_16BF,
                                                      (int)ldx, X.bstride, Y.base, CUDA_R_16BF, (int)ldy, Y.bstride,
                                                      &be, (void *)Z.base, CUDA_R_32F, (int)ldz, Z.bstride,
                                                      (int)nbatch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT));
  } else if (o->dtype == CC_FLOAT32) {
    float al = (float)alpha, be = (float)beta;
    if (nbatch == 1)
      rc = CC_CUBLAS_CHECK(cublasSgemm(h, opx, opy, (int)m, (int)n, (int)K, &al, (const float *)X.base, (int)ldx,
                                       (const float *)Y.base, (int)ldy, &be, (float *)Z.base, (int)ldz));
    else
      rc = CC_CUBLAS_CHECK(cublasSgemmStridedBatched(h, opx, opy, (int)m, (int)n, (int)K, &al, (const float *)X.base,
                                                     (int)ldx, X.bstride, (const float *)Y.base, (int)ldy, Y.bstride,
                                                     &be, (float *)Z.base, (int)ldz, Z.bstride, (int)nbatch));
  } else {
    if (nbatch == 1)
      rc = CC_CUBLAS_CHECK(cublasDgemm(h, opx, opy, (int)m, (int)n, (int)K, &alpha, (const double *)X.base, (int)ldx,
                                       (const double *)Y.base, (int)ldy, &beta, (double *)Z.base, (int)ldz));
    else
      rc = CC_CUBLAS_CHECK(cublasDgemmStridedBatched(h, opx, opy, (int)m, (int)n, (int)K, &alpha,
                                                     (const double *)X.base, (int)ldx, X.bstride,
                                                     (const double *)Y.base, (int)ldy, Y.bstride, &beta,
                                                     (double *)Z.base, (int)ldz, Z.bstride, (int)nbatch));
  }
  if (!rc && oc) rc = cc_run(CC_OP_COPY, out, 1, &oc, NULL, 0, NULL, 0);
done:
  cc_cuda_scratch_free(a16, a16_bytes); /* both accept NULL */
  cc_cuda_scratch_free(b16, b16_bytes);
  cc_release(ac);
  cc_release(bc);
  cc_release(oc);
  return rc;
}

void cc_cuda_register_blas(void) { cc_register_kernel(CC_OP_GEMM, CC_CUDA, gemm_cuda); }
