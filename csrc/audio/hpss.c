/* hpss.c — harmonic/percussive separation as librosa.decompose.hpss: median filters (scipy
 * 'reflect' edges: d c b a | a b c d | d c b a) along time (harmonic) and frequency (percussive) of a
 * magnitude image (F bins x T frames, row-major), then soft masks (power, margin).
 * The median is a sliding sorted window updated without branches (remove the outgoing value, insert
 * the incoming one: O(size) min/max per step), run on LANES rows or columns at once so that the
 * compiler vectorises across lanes. No sort per pixel.
 */
#include "audio.h"

#include <float.h>
#include <stdlib.h>

#define LANES 16
#define MAX_KERNEL 255

static inline int64_t reflect_index(int64_t j, int64_t n) {
  int64_t p = 2 * n, m = ((j % p) + p) % p;
  return m < n ? m : p - 1 - m;
}

/* one slide of LANES sorted windows: remove o (its first occurrence), insert nv; branch-free, one pass:
   a[j] = w[j] < o ? w[j] : w[j+1] (o removed), r[j] = max(a[j-1], min(nv, a[j])) (nv inserted) */
static inline __attribute__((always_inline)) void step_window(float *restrict w, const float *restrict o, const float *restrict nv, int size) {
  float prev[LANES], cur[LANES];
  for (int l = 0; l < LANES; l++) {
    float x = w[l], y = w[LANES + l];
    prev[l] = x < o[l] ? x : y;
    w[l] = nv[l] < prev[l] ? nv[l] : prev[l];
  }
  for (int j = 1; j < size - 1; j++) {
    for (int l = 0; l < LANES; l++) {
      float x = w[j * LANES + l], y = w[(j + 1) * LANES + l];
      cur[l] = x < o[l] ? x : y;
      float m = nv[l] < cur[l] ? nv[l] : cur[l];
      w[j * LANES + l] = prev[l] > m ? prev[l] : m;
    }
    for (int l = 0; l < LANES; l++) prev[l] = cur[l];
  }
  for (int l = 0; l < LANES; l++) w[(size - 1) * LANES + l] = prev[l] > nv[l] ? prev[l] : nv[l];
}

/* lane l, position k lives at src[l * ls + k * step]; nl <= LANES live lanes (the rest copy lane 0) */
static inline __attribute__((always_inline)) void median_lanes(const float *src, float *dst, int64_t n, int64_t step, int64_t ls, int nl, int size,
                         float (*w)[LANES]) {
  int half = size / 2;
  for (int l = 0; l < LANES; l++) {
    const float *s = src + (l < nl ? l : 0) * ls;
    for (int j = 0; j < size; j++) { /* insertion sort of the first window */
      float v = s[reflect_index(j - half, n) * step];
      int i = j;
      while (i > 0 && w[i - 1][l] > v) {
        w[i][l] = w[i - 1][l];
        i--;
      }
      w[i][l] = v;
    }
  }
  for (int l = 0; l < nl; l++) dst[l * ls] = w[half][l];
  float o[LANES], nv[LANES];
  for (int64_t i = 1; i < n; i++) {
    int64_t jo = reflect_index(i - 1 - half, n) * step, jn = reflect_index(i + half, n) * step;
    for (int l = 0; l < LANES; l++) {
      const float *s = src + (l < nl ? l : 0) * ls;
      o[l] = s[jo];
      nv[l] = s[jn];
    }
    step_window(&w[0][0], o, nv, size);
    for (int l = 0; l < nl; l++) dst[l * ls + i * step] = w[half][l];
  }
}

/* the default kernel (31) compiled with a constant size: fully unrolled slides */
static void median_lanes_31(const float *src, float *dst, int64_t n, int64_t step, int64_t ls, int nl,
                            float (*w)[LANES]) {
  median_lanes(src, dst, n, step, ls, nl, 31, w);
}
static void median_lanes_any(const float *src, float *dst, int64_t n, int64_t step, int64_t ls, int nl, int size,
                             float (*w)[LANES]) {
  if (size == 31) median_lanes_31(src, dst, n, step, ls, nl, w);
  else median_lanes(src, dst, n, step, ls, nl, size, w);
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
  float(*w)[LANES] = aligned_alloc(64, sizeof(float) * LANES * MAX_KERNEL);
  if (!w) {
    free(w);
    cc_set_error("audio.median_filter: out of memory");
    return -1;
  }
  if (size == 1) memcpy(dst, src, sizeof(float) * (size_t)(rows * cols));
  else if (axis == 1) /* along each row: lanes are rows */
    for (int64_t r = 0; r < rows; r += LANES) {
      int nl = rows - r < LANES ? (int)(rows - r) : LANES;
      median_lanes_any(src + r * cols, dst + r * cols, cols, 1, cols, nl, size, w);
    }
  else /* along each column: lanes are adjacent columns (contiguous) */
    for (int64_t c = 0; c < cols; c += LANES) {
      int nl = cols - c < LANES ? (int)(cols - c) : LANES;
      median_lanes_any(src + c, dst + c, rows, cols, 1, nl, size, w);
    }
  free(w);
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
