/* cuda_internal.h — what the host files of the CUDA backend share (C11; includes CUDA headers, so it
 * is for csrc/cuda only): lazy device setup and the one stream, CUDA error reporting into the
 * engine's error message, the caching allocator, and scratch buffers for kernels.
 *
 * Error convention: every CUDA, cuBLAS and cuDNN call is checked; a failure becomes
 * cc_set_error("CUDA error cudaErrorX (text) in <call>") and a -1 (or NULL) return, never an abort.
 */
#ifndef COCOLA_CUDA_INTERNAL_H
#define COCOLA_CUDA_INTERNAL_H

#include "cc_cuda.h"
#include "cc_cuda_kernels.h"
#include "internal.h"

#include <cuda_runtime_api.h>

/* device 0 current and its stream created (first use); 0, or -1 and the error */
int cc_cuda_ready(void);
/* the stream every kernel, copy, cuBLAS and cuDNN call of the backend runs on */
cudaStream_t cc_cuda_stream(void);
/* sets the engine error for a failed CUDA call and returns -1 */
int cc_cuda_fail(cudaError_t e, const char *what);
/* 0 when e is cudaSuccess, else cc_cuda_fail */
static inline int cc_cuda_check(cudaError_t e, const char *what) { return e == cudaSuccess ? 0 : cc_cuda_fail(e, what); }
#define CC_CUDA_CHECK(expr) cc_cuda_check((expr), #expr)

/* ---- caching allocator (cuda_alloc.c): stream-ordered reuse on the one stream ---- */
void *cc_cuda_malloc(size_t nbytes);          /* NULL and the error when out of memory */
void cc_cuda_free(void *ptr, size_t nbytes);  /* nbytes as allocated */
/* scratch for a kernel: *ptr NULL when nbytes is 0; -1 on failure */
int cc_cuda_scratch(size_t nbytes, void **ptr);
void cc_cuda_scratch_free(void *ptr, size_t nbytes);
/* copies between host and device memory (pinned staging buffers) or within the device */
int cc_cuda_copy(void *dst, int dst_device, const void *src, int src_device, size_t nbytes);
void cc_cuda_alloc_empty_cache(void);
int cc_cuda_alloc_stats(const char **names, int64_t *values, int max);
void cc_cuda_alloc_reset_peak(void);

/* ---- kernel registration (cuda_ops.c, cuda_blas.c, cuda_dnn.c) ---- */
void cc_cuda_register_ops(void);
void cc_cuda_register_blas(void);
void cc_cuda_register_dnn(void);
int cc_cuda_tf32(void);

/* ---- bf16 autocast (cuda_backend.c) ---- */
/* whether a float32 GEMM or convolution runs in bfloat16 now */
int cc_cuda_bf16(const cc_tensor *t);
/* a bfloat16 copy of the contiguous float32 tensor t in scratch memory, its size in *bytes (release with
   cc_cuda_scratch_free(*copy, *bytes)); 0, or -1 and the error (*copy NULL) */
int cc_cuda_bf16_copy(const cc_tensor *t, void **copy, size_t *bytes);

/* a strided walk over same-shaped operands (size-1 dims dropped, mergeable dims coalesced) */
void cc_cuda_make_iter(int nops, cc_tensor *const *ops, cck_iter *it);

#endif
