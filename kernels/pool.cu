/* pool.cu — max pooling over planes (..,H,W) -> (..,oh,ow) and its backward, as csrc/ops/pool.c computes them.
 * Forward: one item per output, the window scanned row by row; padding is -inf, a NaN replaces the maximum
 * (so the last NaN wins, as torch's CPU kernel), the index is the flat position in H*W. Backward: one item per
 * input element, summing (kernel rows then columns in increasing order) the gradients of the windows that
 * cover it and whose index is its own: deterministic, no atomics. */
#include "cuda_common.cuh"

template <typename T> struct MaxPoolF {
  cck_max_pool_args a;
  __device__ void operator()(int64_t t) const {
    int64_t pl = t / (a.oh * a.ow), r = t - pl * (a.oh * a.ow), oy = r / a.ow, ox = r - oy * a.ow;
    const T *xp = (const T *)a.x + pl * a.H * a.W;
    T m = (T)-INFINITY;
    int64_t mi = -1;
    for (int64_t ky = 0; ky < a.kh; ky++) {
      int64_t iy = oy * a.sh - a.ph + ky * a.dh;
      if (iy < 0 || iy >= a.H) continue;
      for (int64_t kx = 0; kx < a.kw; kx++) {
        int64_t ix = ox * a.sw - a.pw + kx * a.dw;
        if (ix < 0 || ix >= a.W) continue;
        T v = xp[iy * a.W + ix];
        if (mi < 0 || v > m || v != v) {
          m = v;
          mi = iy * a.W + ix;
        }
      }
    }
    ((T *)a.y)[t] = m;
    a.idx[t] = mi;
  }
};

extern "C" cudaError_t cck_max_pool2d(const cck_max_pool_args *a, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, return cck_launch(a->planes * a->oh * a->ow, MaxPoolF<T>{*a}, s));
}

template <typename T> struct MaxPoolBwF {
  cck_max_pool_args a;
  __device__ void operator()(int64_t t) const {
    int64_t pl = t / (a.H * a.W), self = t - pl * (a.H * a.W), iy = self / a.W, ix = self - iy * a.W;
    const T *gp = (const T *)a.g + pl * a.oh * a.ow;
    const int64_t *ip = a.idx + pl * a.oh * a.ow;
    T acc = 0;
    for (int64_t ky = 0; ky < a.kh; ky++) {
      int64_t ty = iy + a.ph - ky * a.dh;
      if (ty < 0 || ty % a.sh || ty / a.sh >= a.oh) continue;
      for (int64_t kx = 0; kx < a.kw; kx++) {
        int64_t tx = ix + a.pw - kx * a.dw;
        if (tx < 0 || tx % a.sw || tx / a.sw >= a.ow) continue;
        int64_t o = (ty / a.sh) * a.ow + tx / a.sw;
        if (ip[o] == self) acc += gp[o];
      }
    }
    ((T *)a.dx)[t] = acc;
  }
};

extern "C" cudaError_t cck_max_pool2d_backward(const cck_max_pool_args *a, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(a->dtype, T, return cck_launch(a->planes * a->H * a->W, MaxPoolBwF<T>{*a}, s));
}
