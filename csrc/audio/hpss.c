/* hpss.c — harmonic/percussive separation as librosa.decompose.hpss: median filters (scipy
 * 'reflect' edges: d c b a | a b c d | d c b a) along time (harmonic) and frequency (percussive) of a
 * magnitude image (F bins x T frames, row-major), then soft masks (power, margin).
 * The median is a sliding sorted window updated without branches (remove the outgoing value, insert
 * the incoming one: O(size) min/max per step), run on VL rows or columns at once as SIMD lanes
 * (AVX-512: 16, AVX: 8, else portable scalar lanes). A strip of VL rows/columns is first copied, with
 * its reflected edges, into a lane-interleaved buffer so that every step reads one aligned vector
 * (rows along time are transposed 16 x 16 at a time with AVX-512); the window of the default kernel
 * (31) is compiled with a constant size (unrolled, kept in registers). No sort per pixel; results are
 * exact order statistics, independent of the lane width. The default masks (power 2, margin 1) share
 * max(H, P) and the squares and run branch-free (same float operations, so the same values).
 */
#include "audio.h"

#include <float.h>
#include <stdlib.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#define MAX_KERNEL 255

/* vf: VL lanes; vmin(a, b) = a < b ? a : b; vmax(a, b) = a > b ? a : b; vsel_lt(a, o, b) = a < o ? a : b */
#if defined(__AVX512F__)
#define VL 16
typedef __m512 vf;
#define vload(p) _mm512_load_ps(p)
#define vstore(p, v) _mm512_store_ps(p, v)
#define vset1(x) _mm512_set1_ps(x)
#define vmin(a, b) _mm512_min_ps(a, b)
#define vmax(a, b) _mm512_max_ps(a, b)
#define vsel_lt(a, o, b) _mm512_mask_blend_ps(_mm512_cmp_ps_mask(a, o, _CMP_LT_OQ), b, a)
#elif defined(__AVX__)
#define VL 8
typedef __m256 vf;
#define vload(p) _mm256_load_ps(p)
#define vstore(p, v) _mm256_store_ps(p, v)
#define vset1(x) _mm256_set1_ps(x)
#define vmin(a, b) _mm256_min_ps(a, b)
#define vmax(a, b) _mm256_max_ps(a, b)
#define vsel_lt(a, o, b) _mm256_blendv_ps(b, a, _mm256_cmp_ps(a, o, _CMP_LT_OQ))
#else
#define VL 4
typedef struct {
  float v[VL];
} vf;
static inline vf vload(const float *p) {
  vf r;
  for (int l = 0; l < VL; l++) r.v[l] = p[l];
  return r;
}
static inline void vstore(float *p, vf a) {
  for (int l = 0; l < VL; l++) p[l] = a.v[l];
}
static inline vf vset1(float x) {
  vf r;
  for (int l = 0; l < VL; l++) r.v[l] = x;
  return r;
}
static inline vf vmin(vf a, vf b) {
  for (int l = 0; l < VL; l++) a.v[l] = a.v[l] < b.v[l] ? a.v[l] : b.v[l];
  return a;
}
static inline vf vmax(vf a, vf b) {
  for (int l = 0; l < VL; l++) a.v[l] = a.v[l] > b.v[l] ? a.v[l] : b.v[l];
  return a;
}
static inline vf vsel_lt(vf a, vf o, vf b) {
  for (int l = 0; l < VL; l++) a.v[l] = a.v[l] < o.v[l] ? a.v[l] : b.v[l];
  return a;
}
#endif

#if VL == 16
/* in place 16 x 16 transpose: r[c][l] <- r[l][c] */
static inline void transpose16(__m512 r[16]) {
  __m512 t[16];
  for (int i = 0; i < 8; i++) {
    t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
  }
  for (int i = 0; i < 4; i++) {
    __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]), c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
    r[4 * i] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
    r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
    r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
    r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
  }
  for (int i = 0; i < 4; i++) {
    t[i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0x88);
    t[4 + i] = _mm512_shuffle_f32x4(r[i], r[4 + i], 0xdd);
    t[8 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0x88);
    t[12 + i] = _mm512_shuffle_f32x4(r[8 + i], r[12 + i], 0xdd);
  }
  for (int i = 0; i < 8; i++) {
    r[i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0x88);
    r[8 + i] = _mm512_shuffle_f32x4(t[i], t[8 + i], 0xdd);
  }
}
#endif

static inline int64_t reflect_index(int64_t j, int64_t n) {
  int64_t p = 2 * n, m = ((j % p) + p) % p;
  return m < n ? m : p - 1 - m;
}

/* pad: (n + size - 1) x VL lane-interleaved inputs (edges included); out: n x VL medians.
   The sorted window w (size vectors) slides by one per output: removing o (its first occurrence) and
   inserting nv in one branch-free pass, a[j] = w[j] < o ? w[j] : w[j+1],
   w'[j] = max(a[j-1], min(nv, a[j])) (a[-1] = -inf, a[size-1] = +inf). */
static inline __attribute__((always_inline)) void slide_median(const float *restrict pad, float *restrict out, int64_t n,
                                                               int size, vf *restrict w) {
  int half = size / 2;
  const vf inf = vset1(INFINITY);
  for (int j = 0; j < size; j++) w[j] = inf;
  for (int j = 0; j < size; j++) { /* insert the first window's values one by one (the +inf slots are free) */
    vf v = vload(pad + (int64_t)j * VL);
    for (int t = j; t > 0; t--) w[t] = vmax(w[t - 1], vmin(v, w[t]));
    w[0] = vmin(v, w[0]);
  }
  vstore(out, w[half]);
  for (int64_t i = 1; i < n; i++) {
    vf o = vload(pad + (i - 1) * VL), nv = vload(pad + (i - 1 + size) * VL);
    vf prev = vsel_lt(w[0], o, w[1]);
    w[0] = vmin(nv, prev);
#pragma GCC unroll 32
    for (int j = 1; j < size - 1; j++) {
      vf cur = vsel_lt(w[j], o, w[j + 1]);
      w[j] = vmax(prev, vmin(nv, cur));
      prev = cur;
    }
    w[size - 1] = vmax(prev, nv);
    vstore(out + i * VL, w[half]);
  }
}

static void slide_median_31(const float *restrict pad, float *restrict out, int64_t n) {
  vf w[31];
  slide_median(pad, out, n, 31, w);
}

static void slide_median_any(const float *restrict pad, float *restrict out, int64_t n, int size) {
  vf w[MAX_KERNEL];
  if (size == 31) slide_median_31(pad, out, n);
  else slide_median(pad, out, n, size, w);
}

int cc_median_filter_2d(const float *src, float *dst, int64_t rows, int64_t cols, int axis, int size) {
  if (size < 1 || size % 2 == 0 || size > MAX_KERNEL) {
    cc_set_error("audio.median_filter: the kernel size must be odd, between 1 and %d (got %d)", MAX_KERNEL, size);
    return -1;
  }
  if (rows < 1 || cols < 1) {
    cc_set_error("audio.median_filter: empty image (%lld x %lld)", (long long)rows, (long long)cols);
    return -1;
  }
  if (size == 1) {
    memcpy(dst, src, sizeof(float) * (size_t)(rows * cols));
    return 0;
  }
  int half = size / 2;
  int64_t n = axis == 1 ? cols : rows, lanes = axis == 1 ? rows : cols;
  int64_t np = n + size - 1; /* padded length */
  size_t bytes = sizeof(float) * VL * (size_t)(n + np) + sizeof(int64_t) * (size_t)np;
  float *pad = aligned_alloc(64, (bytes + 63) / 64 * 64);
  if (!pad) {
    cc_set_error("audio.median_filter: out of memory");
    return -1;
  }
  float *out = pad + np * VL;
  int64_t *at = (int64_t *)(out + n * VL); /* padded position -> source index */
  for (int64_t k = 0; k < np; k++) at[k] = reflect_index(k - half, n);
  for (int64_t l0 = 0; l0 < lanes; l0 += VL) {
    int nl = lanes - l0 < VL ? (int)(lanes - l0) : VL;
    if (axis == 1) { /* along each row: lanes are VL rows, transposed into pad */
      const float *rp[VL];
      for (int l = 0; l < VL; l++) rp[l] = src + (l0 + (l < nl ? l : 0)) * cols;
      for (int64_t k = 0; k < np; k++) /* edges */
        if (k < half || k >= half + n)
          for (int l = 0; l < VL; l++) pad[k * VL + l] = rp[l][at[k]];
      int64_t k = 0;
#if VL == 16
      for (; k + 16 <= n; k += 16) {
        __m512 r[16];
        for (int l = 0; l < 16; l++) r[l] = _mm512_loadu_ps(rp[l] + k);
        transpose16(r);
        for (int c = 0; c < 16; c++) _mm512_store_ps(pad + (half + k + c) * VL, r[c]);
      }
#endif
      for (; k < n; k++)
        for (int l = 0; l < VL; l++) pad[(half + k) * VL + l] = rp[l][k];
      slide_median_any(pad, out, n, size);
      int64_t i = 0;
#if VL == 16
      for (; i + 16 <= n; i += 16) {
        __m512 r[16];
        for (int c = 0; c < 16; c++) r[c] = _mm512_load_ps(out + (i + c) * VL);
        transpose16(r);
        for (int l = 0; l < nl; l++) _mm512_storeu_ps(dst + (l0 + l) * cols + i, r[l]);
      }
#endif
      for (; i < n; i++)
        for (int l = 0; l < nl; l++) dst[(l0 + l) * cols + i] = out[i * VL + l];
    } else { /* along each column: lanes are VL adjacent (contiguous) columns */
      for (int64_t k = 0; k < np; k++) {
        const float *s = src + at[k] * cols + l0;
        if (nl == VL) memcpy(pad + k * VL, s, sizeof(float) * VL);
        else
          for (int l = 0; l < VL; l++) pad[k * VL + l] = s[l < nl ? l : 0];
      }
      slide_median_any(pad, out, n, size);
      for (int64_t i = 0; i < n; i++) memcpy(dst + i * cols + l0, out + i * VL, sizeof(float) * (size_t)nl);
    }
  }
  free(pad);
  return 0;
}

int cc_hpss_2d(const float *mag, int64_t F, int64_t T, int kernel_h, int kernel_p, double power, double margin,
               float *harm, float *perc) {
  if (!(power > 0) || !isfinite(power) || !(margin >= 1)) {
    cc_set_error("audio.hpss: need a finite power > 0 and margin >= 1 (got %g, %g)", power, margin);
    return -1;
  }
  if (cc_median_filter_2d(mag, harm, F, T, 1, kernel_h)) return -1;
  if (cc_median_filter_2d(mag, perc, F, T, 0, kernel_p)) return -1;
  const float tiny = FLT_MIN, p = (float)power, mg = (float)margin;
  if (p == 2 && mg == 1) { /* the default: both masks share Z = max(H, P) and the squares; branch-free */
    for (int64_t i = 0; i < F * T; i++) {
      float H = harm[i], P = perc[i], Z = H > P ? H : P, x = H / Z, y = P / Z;
      x = x * x;
      y = y * y;
      float s = x + y, mh = x / s, mp = y / s, m = mag[i];
      harm[i] = Z >= tiny ? m * mh : m * 0.0f;
      perc[i] = Z >= tiny ? m * mp : m * 0.0f;
    }
    return 0;
  }
  for (int64_t i = 0; i < F * T; i++) {
    float H = harm[i], P = perc[i], mh = 0, mp = 0;
    /* mask_H = softmask(H, P * margin), mask_P = softmask(P, H * margin) (librosa, split_zeros false) */
    float Y = P * mg, Z = H > Y ? H : Y;
    if (Z >= tiny) {
      float x = H / Z, y = Y / Z;
      x = p == 2 ? x * x : powf(x, p);
      y = p == 2 ? y * y : powf(y, p);
      mh = x / (x + y);
    }
    Y = H * mg;
    Z = P > Y ? P : Y;
    if (Z >= tiny) {
      float x = P / Z, y = Y / Z;
      x = p == 2 ? x * x : powf(x, p);
      y = p == 2 ? y * y : powf(y, p);
      mp = x / (x + y);
    }
    harm[i] = mag[i] * mh;
    perc[i] = mag[i] * mp;
  }
  return 0;
}
cc_tensor *cc_audio_hpss(cc_tensor *mag, int kernel_h, int kernel_p, double power, double margin, cc_tensor **perc) {
  cc_tensor *c = NULL, *h = NULL, *p = NULL;
  *perc = NULL;
  CC_CHECK(mag->dtype == CC_FLOAT32 && mag->ndim >= 2, "audio.hpss: expected a float32 magnitude (..., bins, frames)");
  CC_TRY(c = cc_contiguous(mag));
  CC_TRY(h = cc_empty_like(c));
  CC_TRY(p = cc_empty_like(c));
  int64_t F = c->shape[c->ndim - 2], T = c->shape[c->ndim - 1], rows = (F * T != 0) ? cc_numel(c) / (F * T) : 0;
  for (int64_t r = 0; r < rows; r++)
    CC_TRY(!cc_hpss_2d((const float *)cc_data_ptr(c) + r * F * T, F, T, kernel_h, kernel_p, power, margin,
                       (float *)cc_data_ptr(h) + r * F * T, (float *)cc_data_ptr(p) + r * F * T));
  cc_release(c);
  *perc = p;
  return h;
fail:
  cc_release(c);
  cc_release(h);
  cc_release(p);
  return NULL;
}
