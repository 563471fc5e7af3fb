/* conv_aux.cu — what the convolutions need beside cuDNN (the bias), constant padding and adaptive
 * average pooling with torch's bins, as the CPU kernels of csrc/ops/conv.c. Contiguous operands. */
#include "cuda_common.cuh"

/* ---- y (N,O,HW) += b (O) ---- */
template <typename T> struct BiasAddF {
  T *y;
  const T *b;
  int64_t O, HW;
  __device__ void operator()(int64_t i) const { y[i] += b[(i / HW) % O]; }
};

extern "C" cudaError_t cck_bias_add(void *y, const void *b, int dtype, int64_t N, int64_t O, int64_t HW,
                                    cudaStream_t s) {
  if (HW <= 0 || O <= 0) return cudaSuccess;
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(N * O * HW, (BiasAddF<T>{(T *)y, (const T *)b, O, HW}), s));
}

/* ---- constant pad: one item per output element ---- */
template <typename T> struct PadF {
  cck_pad_args a;
  T value;
  __device__ void operator()(int64_t i) const {
    int64_t rem = i, xoff = 0, xstride = 1;
    bool inside = true;
    for (int d = a.ndim - 1; d >= 0; d--) {
      int64_t yi;
      rem = cck_divmod(rem, a.yshape[d], &yi);
      int64_t xi = yi - a.lo[d];
      if (xi < 0 || xi >= a.xshape[d]) inside = false;
      xoff += xi * xstride;
      xstride *= a.xshape[d];
    }
    ((T *)a.y)[i] = inside ? ((const T *)a.x)[xoff] : value;
  }
};

extern "C" cudaError_t cck_pad(const cck_pad_args *a, cudaStream_t s) {
  int64_t n = 1;
  for (int d = 0; d < a->ndim; d++) n *= a->yshape[d];
  CCK_DISPATCH_ALL(a->dtype, T, return cck_launch(n, (PadF<T>{*a, (T)a->value}), s));
}

/* ---- adaptive average pool: bin i of n over a size L spans [i*L/n, ceil((i+1)*L/n)) ---- */
__device__ __forceinline__ int64_t bin_lo(int64_t i, int64_t L, int64_t n) { return i * L / n; }
__device__ __forceinline__ int64_t bin_hi(int64_t i, int64_t L, int64_t n) { return ((i + 1) * L + n - 1) / n; }

/* forward: one item per output element (plane p, i, j), the sum in double as the CPU loop */
template <typename T> struct PoolF {
  const T *x;
  T *y;
  int64_t H, W, oh, ow;
  __device__ void operator()(int64_t t) const {
    int64_t j = t % ow, i = (t / ow) % oh, p = t / (ow * oh);
    const T *xp = x + p * H * W;
    int64_t h0 = bin_lo(i, H, oh), h1 = bin_hi(i, H, oh), w0 = bin_lo(j, W, ow), w1 = bin_hi(j, W, ow);
    double s = 0;
    for (int64_t h = h0; h < h1; h++)
      for (int64_t w = w0; w < w1; w++) s += xp[h * W + w];
    y[t] = (T)(s / (double)((h1 - h0) * (w1 - w0)));
  }
};

/* global pooling (one bin) of large planes: 32 items per plane each sum every 32nd value (eight loads
   in flight), then one item per plane adds the 32 partial sums */
#define POOL_LANES 32
static inline bool pool_by_lanes(int64_t H, int64_t W, int64_t oh, int64_t ow) {
  return oh == 1 && ow == 1 && H * W >= 16 * POOL_LANES;
}

template <typename T> struct PoolLanesF {
  const T *x;
  double *partial;
  int64_t L;
  __device__ void operator()(int64_t t) const {
    int64_t plane = t / POOL_LANES, lane = t - plane * POOL_LANES;
    const T *xp = x + plane * L;
    double acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    int64_t k = lane;
    for (; k + 7 * POOL_LANES < L; k += 8 * POOL_LANES) {
#pragma unroll
      for (int u = 0; u < 8; u++) acc[u] += (double)xp[k + u * POOL_LANES];
    }
    for (; k < L; k += POOL_LANES) acc[0] += (double)xp[k];
    partial[t] = ((acc[0] + acc[1]) + (acc[2] + acc[3])) + ((acc[4] + acc[5]) + (acc[6] + acc[7]));
  }
};

template <typename T> struct PoolLanesFinishF {
  const double *partial;
  T *y;
  int64_t L;
  __device__ void operator()(int64_t plane) const {
    double acc[4] = {0, 0, 0, 0};
    const double *pp = partial + plane * POOL_LANES;
#pragma unroll
    for (int k = 0; k < POOL_LANES; k += 4) {
      acc[0] += pp[k];
      acc[1] += pp[k + 1];
      acc[2] += pp[k + 2];
      acc[3] += pp[k + 3];
    }
    y[plane] = (T)(((acc[0] + acc[1]) + (acc[2] + acc[3])) / (double)L);
  }
};

extern "C" size_t cck_avg_pool_scratch(int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow) {
  return pool_by_lanes(H, W, oh, ow) ? (size_t)(planes * POOL_LANES) * sizeof(double) : 0;
}

template <typename T>
static cudaError_t avg_pool_typed(const T *x, T *y, int64_t planes, int64_t H, int64_t W, int64_t oh, int64_t ow,
                                  double *scratch, cudaStream_t s) {
  if (pool_by_lanes(H, W, oh, ow)) {
    cudaError_t e = cck_launch(planes * POOL_LANES, PoolLanesF<T>{x, scratch, H * W}, s);
    if (e == cudaSuccess) e = cck_launch(planes, PoolLanesFinishF<T>{scratch, y, H * W}, s);
    return e;
  }
  return cck_launch(planes * oh * ow, PoolF<T>{x, y, H, W, oh, ow}, s);
}

extern "C" cudaError_t cck_avg_pool(const void *x, void *y, int dtype, int64_t planes, int64_t H, int64_t W,
                                    int64_t oh, int64_t ow, void *scratch, cudaStream_t s) {
  CCK_DISPATCH_FLOAT(dtype, T,
                     return avg_pool_typed<T>((const T *)x, (T *)y, planes, H, W, oh, ow, (double *)scratch, s));
}

/* backward: one item per input element (plane p, h, w), adding the share of every bin that covers
   it, bins in increasing order as the CPU loop adds them */
template <typename T> struct PoolBwF {
  const T *gy;
  T *dx;
  int64_t H, W, oh, ow;
  __device__ void operator()(int64_t t) const {
    int64_t w = t % W, h = (t / W) % H, p = t / (W * H);
    const T *gp = gy + p * oh * ow;
    /* bins i with bin_lo(i) <= h < bin_hi(i): from floor(h*oh/H) to ceil((h+1)*oh/H) - 1 */
    int64_t i0 = h * oh / H, i1 = ((h + 1) * oh + H - 1) / H;
    int64_t j0 = w * ow / W, j1 = ((w + 1) * ow + W - 1) / W;
    if (i1 > oh) i1 = oh;
    if (j1 > ow) j1 = ow;
    T acc = 0;
    for (int64_t i = i0; i < i1; i++) {
      int64_t h0 = bin_lo(i, H, oh), h1 = bin_hi(i, H, oh);
      if (h < h0 || h >= h1) continue;
      for (int64_t j = j0; j < j1; j++) {
        int64_t w0 = bin_lo(j, W, ow), w1 = bin_hi(j, W, ow);
        if (w < w0 || w >= w1) continue;
        acc += (T)((double)gp[i * ow + j] / (double)((h1 - h0) * (w1 - w0)));
      }
    }
    dx[t] = acc;
  }
};

/* backward of global pooling: every element of plane p gets gy[p] / L */
template <typename T> struct PoolBwGlobalF {
  const T *gy;
  T *dx;
  int64_t L;
  __device__ void operator()(int64_t t) const {
    int64_t r;
    dx[t] = (T)((double)gy[cck_divmod(t, L, &r)] / (double)L);
  }
};

extern "C" cudaError_t cck_avg_pool_backward(const void *gy, void *dx, int dtype, int64_t planes, int64_t H,
                                             int64_t W, int64_t oh, int64_t ow, cudaStream_t s) {
  int64_t n = planes * H * W;
  if (oh == 1 && ow == 1)
    CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(n, (PoolBwGlobalF<T>{(const T *)gy, (T *)dx, H * W}), s));
  CCK_DISPATCH_FLOAT(dtype, T, return cck_launch(n, (PoolBwF<T>{(const T *)gy, (T *)dx, H, W, oh, ow}), s));
}
