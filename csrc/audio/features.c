/* features.c — the fused front ends over a batch of mono 16 kHz waves (B, samples), OpenMP over B:
 *  - COCOLA HPSS: STFT (1024, win 400, hop 160, centred, zero padding) -> |S| -> HPSS (31, 31, power 2,
 *    margin 1) -> |H|^2, |P|^2 -> Slaney mel 64 (60-7800 Hz) -> power_to_db (ref max, amin 1e-10,
 *    top_db 80) per example and channel -> (B, 2, 64, frames);
 *  - COCOLA mel: torchaudio MelSpectrogram (same STFT, reflect padding, HTK mel, no norm) +
 *    AmplitudeToDB (10 log10 max(x, 1e-10)) -> (B, 1, 64, frames);
 *  - AudioLDM 2 (CompoNet): STFT (1024, win 1024, hop 160, reflect) magnitude -> Slaney mel 64 (0-8000)
 *    -> log(max(x, 1e-5)) -> (B, 1, frames, 64).
 * Non-finite samples are refused with an error naming the example and sample.
 */
#include "audio.h"

#include <omp.h>
#include <stdlib.h>
#if defined(__AVX512F__) || defined(__AVX__)
#include <immintrin.h>
#endif

#define SR 16000.0
#define N_MELS 64

typedef struct {
  int lo, hi; /* nonzero bins of a filter */
} band;

static void bands_of(const float *fb, int n_mels, int F, band *b) {
  for (int m = 0; m < n_mels; m++) {
    int lo = 0, hi = F;
    while (lo < F && fb[m * F + lo] == 0) lo++;
    while (hi > lo && fb[m * F + hi - 1] == 0) hi--;
    b[m].lo = lo;
    b[m].hi = hi;
  }
}

/* mel[m, t] = sum_f fb[m, f] pw[f, t] over the filter's support */
static void mel_project(const float *fb, const band *b, int F, const float *pw, int64_t T, float *mel) {
  for (int m = 0; m < N_MELS; m++) {
    float *y = mel + m * T;
    for (int64_t t = 0; t < T; t++) y[t] = 0;
    for (int f = b[m].lo; f < b[m].hi; f++) {
      float wgt = fb[m * F + f];
      const float *x = pw + (int64_t)f * T;
      for (int64_t t = 0; t < T; t++) y[t] += wgt * x[t];
    }
  }
}

/* re[i] = sqrt(re[i]^2 + im[i]^2): the sum in a loop the compiler vectorises, then the square roots with
   SIMD where available (sqrtf is correctly rounded either way; a scalar sqrtf call keeps errno and is slow) */
static void magnitude_inplace(float *re, const float *im, size_t n) {
  for (size_t i = 0; i < n; i++) re[i] = re[i] * re[i] + im[i] * im[i];
  size_t i = 0;
#if defined(__AVX512F__)
  for (; i + 16 <= n; i += 16) _mm512_storeu_ps(re + i, _mm512_sqrt_ps(_mm512_loadu_ps(re + i)));
#elif defined(__AVX__)
  for (; i + 8 <= n; i += 8) _mm256_storeu_ps(re + i, _mm256_sqrt_ps(_mm256_loadu_ps(re + i)));
#endif
  for (; i < n; i++) re[i] = sqrtf(re[i]);
}

static void power_to_db_max(float *x, int64_t n, double amin, double top_db) {
  float mx = -INFINITY;
  for (int64_t i = 0; i < n; i++) mx = x[i] > mx ? x[i] : mx;
  double off = 10.0 * log10(mx > amin ? mx : amin), top = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    x[i] = (float)(10.0 * log10(x[i] > amin ? x[i] : amin) - off);
    top = x[i] > top ? x[i] : top;
  }
  float floor_db = (float)(top - top_db);
  for (int64_t i = 0; i < n; i++) x[i] = x[i] < floor_db ? floor_db : x[i];
}

static int check_batch(cc_tensor *wave, const char *what, cc_tensor **c) {
  *c = NULL;
  if (wave->dtype != CC_FLOAT32 || (wave->ndim != 1 && wave->ndim != 2)) {
    cc_set_error("audio.%s: expected a float32 (B, samples) or (samples) tensor", what);
    return -1;
  }
  cc_tensor *t = cc_contiguous(wave);
  if (!t) return -1;
  int64_t n = t->shape[t->ndim - 1], B = t->ndim == 2 ? t->shape[0] : 1;
  if (n <= 512 || B < 1) {
    cc_release(t);
    cc_set_error("audio.%s: need at least 513 samples per example and one example (got %lld x %lld)", what,
                 (long long)B, (long long)n);
    return -1;
  }
  const float *x = cc_data_ptr(t);
  for (int64_t i = 0; i < B * n; i++)
    if (!isfinite(x[i])) {
      cc_release(t);
      cc_set_error("audio.%s: the wave has a NaN or infinite sample (example %lld, sample %lld)", what,
                   (long long)(i / n + 1), (long long)(i % n + 1));
      return -1;
    }
  *c = t;
  return 0;
}

cc_tensor *cc_audio_cocola_features(cc_tensor *wave, bool hpss) {
  cc_tensor *c = NULL, *out = NULL;
  const char *what = "cocola_features";
  float *fb = NULL, *win = NULL;
  const int N = 1024, F = N / 2 + 1;
  band bands[N_MELS];
  cc_stft_opts o = {.n_fft = N, .hop = 160, .win_length = 400, .center = true, .reflect = !hpss};
  CC_TRY(!check_batch(wave, what, &c));
  int64_t n = c->shape[c->ndim - 1], B = c->ndim == 2 ? c->shape[0] : 1, T = cc_stft_frames(n, &o);
  int C = hpss ? 2 : 1;
  int64_t shape[4] = {B, C, N_MELS, T};
  CC_TRY(out = cc_empty(4, shape, CC_FLOAT32, CC_CPU));
  fb = malloc(sizeof(float) * (size_t)(N_MELS * F));
  win = malloc(sizeof(float) * (size_t)N);
  CC_CHECK(fb && win, "audio.%s: out of memory", what);
  CC_TRY(!cc_mel_fbank_fill(fb, F, SR, N_MELS, 60.0, 7800.0, !hpss, hpss));
  bands_of(fb, N_MELS, F, bands);
  cc_hann_padded(N, 400, win);
  int failed = 0;
  const float *x = cc_data_ptr(c);
  float *y = cc_data_ptr(out);
  /* plan once before the threads (stft_1d would, under the mutex, anyway) */
  {
    float probe_re[F], probe_im[F];
    float probe_x[1024] = {0};
    cc_stft_opts po = o;
    po.center = false;
    CC_TRY(!cc_stft_1d(probe_x, N, &po, win, probe_re, probe_im));
  }
#pragma omp parallel for schedule(dynamic, 1) num_threads(cc_get_num_threads()) if (B > 1)
  for (int64_t b = 0; b < B; b++) {
    if (failed) continue;
    size_t FT = (size_t)F * (size_t)T;
    float *re = malloc(sizeof(float) * FT * (hpss ? 4 : 2));
    if (!re) {
#pragma omp atomic write
      failed = 1;
      continue;
    }
    float *im = re + FT;
    if (cc_stft_1d(x + b * n, n, &o, win, re, im)) {
#pragma omp atomic write
      failed = 2;
      free(re);
      continue;
    }
    float *yb = y + b * C * N_MELS * T;
    if (hpss) {
      float *harm = re + 2 * FT, *perc = re + 3 * FT;
      magnitude_inplace(re, im, FT);
      if (cc_hpss_2d(re, F, T, 31, 31, 2.0, 1.0, harm, perc)) {
#pragma omp atomic write
        failed = 2;
        free(re);
        continue;
      }
      for (size_t i = 0; i < FT; i++) {
        harm[i] *= harm[i];
        perc[i] *= perc[i];
      }
      mel_project(fb, bands, F, harm, T, yb);
      mel_project(fb, bands, F, perc, T, yb + N_MELS * T);
      power_to_db_max(yb, N_MELS * T, 1e-10, 80.0);
      power_to_db_max(yb + N_MELS * T, N_MELS * T, 1e-10, 80.0);
    } else {
      for (size_t i = 0; i < FT; i++) re[i] = re[i] * re[i] + im[i] * im[i];
      mel_project(fb, bands, F, re, T, yb);
      for (int64_t i = 0; i < N_MELS * T; i++) yb[i] = 10.0f * log10f(yb[i] > 1e-10f ? yb[i] : 1e-10f);
    }
    free(re);
  }
  CC_CHECK(failed != 1, "audio.%s: out of memory", what);
  CC_CHECK(failed == 0, "audio.%s: the STFT failed", what);
  free(fb);
  free(win);
  cc_release(c);
  return out;
fail:
  free(fb);
  free(win);
  cc_release(c);
  cc_release(out);
  return NULL;
}

cc_tensor *cc_audio_audioldm_mel(cc_tensor *wave) {
  cc_tensor *c = NULL, *out = NULL;
  const char *what = "audioldm_mel";
  float *fb = NULL, *win = NULL;
  const int N = 1024, F = N / 2 + 1;
  band bands[N_MELS];
  cc_stft_opts o = {.n_fft = N, .hop = 160, .win_length = N, .center = true, .reflect = true};
  CC_TRY(!check_batch(wave, what, &c));
  int64_t n = c->shape[c->ndim - 1], B = c->ndim == 2 ? c->shape[0] : 1, T = cc_stft_frames(n, &o);
  int64_t shape[4] = {B, 1, T, N_MELS};
  CC_TRY(out = cc_empty(4, shape, CC_FLOAT32, CC_CPU));
  fb = malloc(sizeof(float) * (size_t)(N_MELS * F));
  win = malloc(sizeof(float) * (size_t)N);
  CC_CHECK(fb && win, "audio.%s: out of memory", what);
  CC_TRY(!cc_mel_fbank_fill(fb, F, SR, N_MELS, 0.0, 8000.0, false, true));
  bands_of(fb, N_MELS, F, bands);
  cc_hann_padded(N, N, win);
  int failed = 0;
  const float *x = cc_data_ptr(c);
  float *y = cc_data_ptr(out);
#pragma omp parallel for schedule(dynamic, 1) num_threads(cc_get_num_threads()) if (B > 1)
  for (int64_t b = 0; b < B; b++) {
    if (failed) continue;
    size_t FT = (size_t)F * (size_t)T;
    float *re = malloc(sizeof(float) * (FT * 2 + (size_t)(N_MELS * T)));
    if (!re) {
#pragma omp atomic write
      failed = 1;
      continue;
    }
    float *im = re + FT, *mel = re + 2 * FT;
    if (cc_stft_1d(x + b * n, n, &o, win, re, im)) {
#pragma omp atomic write
      failed = 2;
      free(re);
      continue;
    }
    for (size_t i = 0; i < FT; i++) re[i] = sqrtf(re[i] * re[i] + im[i] * im[i]);
    mel_project(fb, bands, F, re, T, mel);
    float *yb = y + b * T * N_MELS;
    for (int m = 0; m < N_MELS; m++)
      for (int64_t t = 0; t < T; t++) {
        float v = mel[m * T + t];
        yb[t * N_MELS + m] = logf(v > 1e-5f ? v : 1e-5f);
      }
    free(re);
  }
  CC_CHECK(failed != 1, "audio.%s: out of memory", what);
  CC_CHECK(failed == 0, "audio.%s: the STFT failed", what);
  free(fb);
  free(win);
  cc_release(c);
  return out;
fail:
  free(fb);
  free(win);
  cc_release(c);
  cc_release(out);
  return NULL;
}
