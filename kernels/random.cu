/* random.cu — the random fills and dropout masks: element k of a draw is cc_random_at(seed, counter,
 * k, kind) of kernels/scalar.h (Philox4x32-10), exactly as csrc/ops/random.c computes it, so a seed
 * gives the same numbers and the same dropout mask on the CPU and on the GPU. Contiguous outputs. */
#include "cuda_common.cuh"

enum { RAND_UNIFORM = 0, RAND_NORMAL = 1, RAND_INT = 2 };

template <typename T> struct RandomF {
  T *out;
  int kind;
  uint64_t counter, seed;
  double p0, p1;
  __device__ void operator()(int64_t k) const {
    double v = kind == RAND_UNIFORM ? p0 + (p1 - p0) * cc_random_at(seed, counter, k, 0)
                                    : p0 + p1 * cc_random_at(seed, counter, k, 1);
    out[k] = (T)v;
  }
};

struct RandIntF {
  int64_t *out;
  uint64_t counter, seed;
  double p0, p1;
  __device__ void operator()(int64_t k) const {
    double u = cc_random_at(seed, counter, k, 0);
    int64_t span = (int64_t)(p1 - p0);
    int64_t r = (int64_t)(u * (double)span);
    if (r >= span) r = span - 1;
    out[k] = (int64_t)p0 + r;
  }
};

extern "C" cudaError_t cck_random(void *out, int dtype, int64_t n, int kind, uint64_t counter, uint64_t seed,
                                  double p0, double p1, cudaStream_t s) {
  if (kind == RAND_INT) return cck_launch(n, RandIntF{(int64_t *)out, counter, seed, p0, p1}, s);
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(n, (RandomF<T>{(T *)out, kind, counter, seed, p0, p1}), s));
}

template <typename T> struct DropoutMaskF {
  T *out;
  uint64_t counter, seed;
  double p, scale;
  __device__ void operator()(int64_t k) const {
    double keep = cc_random_at(seed, counter, k, 0) >= p ? scale : 0.0;
    out[k] = (T)keep;
  }
};

extern "C" cudaError_t cck_dropout_mask(void *out, int dtype, int64_t n, uint64_t counter, uint64_t seed, double p,
                                        cudaStream_t s) {
  double scale = p < 1 ? 1.0 / (1.0 - p) : 0.0;
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(n, (DropoutMaskF<T>{(T *)out, counter, seed, p, scale}), s));
}
