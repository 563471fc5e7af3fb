/* bf16.cu — float32 <-> bfloat16 conversion of contiguous buffers (n elements; bfloat16 as uint16_t
 * bit patterns, rounded to nearest even by cc_float_to_bf16 of scalar.h): the operand and result
 * copies of bf16 autocast around cuBLAS GEMMs and cuDNN convolutions (csrc/cuda/cuda_autocast.c). */
#include "cuda_common.cuh"

struct ToBf16F {
  uint16_t *dst;
  const float *src;
  __device__ void operator()(int64_t i) const { dst[i] = cc_float_to_bf16(src[i]); }
};

struct FromBf16F {
  float *dst;
  const uint16_t *src;
  __device__ void operator()(int64_t i) const { dst[i] = cc_bf16_to_float(src[i]); }
};

extern "C" cudaError_t cck_float_to_bf16(void *dst, const void *src, int64_t n, cudaStream_t s) {
  return cck_launch(n, ToBf16F{(uint16_t *)dst, (const float *)src}, s);
}

extern "C" cudaError_t cck_bf16_to_float(void *dst, const void *src, int64_t n, cudaStream_t s) {
  return cck_launch(n, FromBf16F{(float *)dst, (const uint16_t *)src}, s);
}
