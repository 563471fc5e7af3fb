/* spectral.c — STFT and inverse STFT on FFTW3 (single precision), mel filterbanks (Slaney and HTK
 * scales, optional Slaney area norm) and dB scaling (librosa power_to_db / amplitude_to_db).
 * FFTW plans are made once per n_fft under a mutex and reused by every thread through the new-array
 * execute functions (buffers from fftwf_malloc, so alignment matches the plan's).
 * Shapes: STFT (..., n) -> (..., n_fft/2+1, frames, 2); iSTFT the reverse; fbank (n_mels, n_freqs).
 */
#include "audio.h"

#include <fftw3.h>
#include <pthread.h>
#include <stdlib.h>

/* ---- plan cache ---- */
#define PLAN_SLOTS 16
static struct {
  int n;
  fftwf_plan r2c, c2r;
} plans[PLAN_SLOTS];
static int n_plans = 0;
static pthread_mutex_t plan_lock = PTHREAD_MUTEX_INITIALIZER;

/* returns 0 and the two plans of size n (made on first use) */
static int get_plans(int n, fftwf_plan *r2c, fftwf_plan *c2r) {
  int rc = -1;
  pthread_mutex_lock(&plan_lock);
  for (int i = 0; i < n_plans; i++)
    if (plans[i].n == n) {
      *r2c = plans[i].r2c;
      *c2r = plans[i].c2r;
      rc = 0;
      goto done;
    }
  if (n_plans == PLAN_SLOTS) {
    cc_set_error("audio: too many distinct FFT sizes (at most %d)", PLAN_SLOTS);
    goto done;
  }
  {
    float *in = fftwf_malloc(sizeof(float) * (size_t)n);
    fftwf_complex *out = fftwf_malloc(sizeof(fftwf_complex) * (size_t)(n / 2 + 1));
    if (!in || !out) {
      fftwf_free(in);
      fftwf_free(out);
      cc_set_error("audio: out of memory planning an FFT of size %d", n);
      goto done;
    }
    fftwf_plan a = fftwf_plan_dft_r2c_1d(n, in, out, FFTW_ESTIMATE);
    fftwf_plan b = fftwf_plan_dft_c2r_1d(n, out, in, FFTW_ESTIMATE);
    fftwf_free(in);
    fftwf_free(out);
    if (!a || !b) {
      if (a) fftwf_destroy_plan(a);
      if (b) fftwf_destroy_plan(b);
      cc_set_error("audio: FFTW could not plan an FFT of size %d", n);
      goto done;
    }
    plans[n_plans].n = n;
    plans[n_plans].r2c = *r2c = a;
    plans[n_plans].c2r = *c2r = b;
    n_plans++;
    rc = 0;
  }
done:
  pthread_mutex_unlock(&plan_lock);
  return rc;
}

void cc_hann_padded(int n_fft, int win_length, float *win) {
  int left = (n_fft - win_length) / 2;
  for (int i = 0; i < n_fft; i++) win[i] = 0;
  for (int i = 0; i < win_length; i++)
    win[left + i] = (float)(0.5 - 0.5 * cos(2.0 * M_PI * (double)i / (double)win_length));
}

static int check_opts(const cc_stft_opts *o, const char *what) {
  if (o->n_fft < 2 || o->n_fft > (1 << 24) || o->hop < 1 || o->win_length < 1 || o->win_length > o->n_fft) {
    cc_set_error("audio.%s: need n_fft >= 2, hop >= 1 and 1 <= win_length <= n_fft (got %d, %d, %d)", what, o->n_fft,
                 o->hop, o->win_length);
    return -1;
  }
  return 0;
}

int64_t cc_stft_frames(int64_t n, const cc_stft_opts *o) {
  if (o->center) return 1 + n / o->hop;
  return n < o->n_fft ? 0 : 1 + (n - o->n_fft) / o->hop;
}

int cc_stft_1d(const float *x, int64_t n, const cc_stft_opts *o, const float *win, float *re, float *im) {
  fftwf_plan r2c, c2r;
  if (check_opts(o, "stft") || get_plans(o->n_fft, &r2c, &c2r)) return -1;
  int N = o->n_fft, F = N / 2 + 1;
  int64_t T = cc_stft_frames(n, o), pad = o->center ? N / 2 : 0;
  if (o->center && o->reflect && n <= pad) {
    cc_set_error("audio.stft: reflect padding needs more than n_fft/2 = %lld samples (got %lld)", (long long)pad,
                 (long long)n);
    return -1;
  }
  if (T < 1) {
    cc_set_error("audio.stft: %lld samples are fewer than n_fft = %d (center = false)", (long long)n, N);
    return -1;
  }
  int lo = 0, hi = N; /* nonzero part of the window */
  while (lo < N && win[lo] == 0) lo++;
  while (hi > lo && win[hi - 1] == 0) hi--;
#define FRAME_BLOCK 16 /* frames transformed before a transposed write (whole cache lines per bin) */
  float *buf = fftwf_malloc(sizeof(float) * (size_t)N);
  const size_t Fp = ((size_t)F + 7) & ~(size_t)7; /* keeps every block row 64-byte aligned, like the plan's */
  fftwf_complex *spec = fftwf_malloc(sizeof(fftwf_complex) * Fp * FRAME_BLOCK);
  if (!buf || !spec) {
    fftwf_free(buf);
    fftwf_free(spec);
    cc_set_error("audio.stft: out of memory");
    return -1;
  }
  for (int k = 0; k < N; k++) buf[k] = 0;
  for (int64_t t = 0; t < T; t++) {
    int64_t s = t * o->hop - pad;
    if (s + lo >= 0 && s + hi <= n) {
      const float *xs = x + s;
      for (int k = lo; k < hi; k++) buf[k] = win[k] * xs[k];
    } else {
      for (int k = lo; k < hi; k++) {
        int64_t j = s + k;
        float v;
        if (j >= 0 && j < n) v = x[j];
        else if (!o->reflect) v = 0;
        else {
          int64_t period = 2 * (n - 1), m = period ? ((j % period) + period) % period : 0;
          v = x[m < n ? m : period - m];
        }
        buf[k] = win[k] * v;
      }
    }
    int64_t t0 = t - t % FRAME_BLOCK;
    fftwf_execute_dft_r2c(r2c, buf, spec + (size_t)(t - t0) * Fp);
    if (t - t0 == FRAME_BLOCK - 1 || t == T - 1) {
      int nb = (int)(t - t0 + 1);
      for (int f = 0; f < F; f++)
        for (int b = 0; b < nb; b++) {
          re[f * T + t0 + b] = spec[(size_t)b * Fp + f][0];
          im[f * T + t0 + b] = spec[(size_t)b * Fp + f][1];
        }
    }
  }
  fftwf_free(buf);
  fftwf_free(spec);
  return 0;
}

cc_tensor *cc_audio_stft(cc_tensor *x, const cc_stft_opts *o) {
  cc_tensor *c = NULL, *out = NULL;
  float *win = NULL, *re = NULL, *im = NULL;
  CC_CHECK(x->dtype == CC_FLOAT32 && x->ndim >= 1 && x->ndim < CC_MAX_DIMS - 1,
           "audio.stft: expected a float32 tensor (..., samples)");
  CC_TRY(!check_opts(o, "stft"));
  CC_TRY(c = cc_contiguous(x));
  int64_t n = c->shape[c->ndim - 1], rows = 1, F = o->n_fft / 2 + 1, T = cc_stft_frames(n, o);
  for (int d = 0; d < c->ndim - 1; d++) rows *= c->shape[d];
  CC_CHECK(T >= 1, "audio.stft: %lld samples are fewer than n_fft = %d (center = false)", (long long)n, o->n_fft);
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, c->shape, sizeof(int64_t) * (size_t)(c->ndim - 1));
  shape[c->ndim - 1] = F;
  shape[c->ndim] = T;
  shape[c->ndim + 1] = 2;
  CC_TRY(out = cc_empty(c->ndim + 2, shape, CC_FLOAT32, CC_CPU));
  win = malloc(sizeof(float) * (size_t)o->n_fft);
  re = malloc(sizeof(float) * (size_t)(F * T));
  im = malloc(sizeof(float) * (size_t)(F * T));
  CC_CHECK(win && re && im, "audio.stft: out of memory");
  cc_hann_padded(o->n_fft, o->win_length, win);
  for (int64_t r = 0; r < rows; r++) {
    CC_TRY(!cc_stft_1d((const float *)cc_data_ptr(c) + r * n, n, o, win, re, im));
    float *y = (float *)cc_data_ptr(out) + r * F * T * 2;
    for (int64_t i = 0; i < F * T; i++) {
      y[2 * i] = re[i];
      y[2 * i + 1] = im[i];
    }
  }
  free(win);
  free(re);
  free(im);
  cc_release(c);
  return out;
fail:
  free(win);
  free(re);
  free(im);
  cc_release(c);
  cc_release(out);
  return NULL;
}

cc_tensor *cc_audio_istft(cc_tensor *X, const cc_stft_opts *o, int64_t length) {
  cc_tensor *c = NULL, *out = NULL;
  float *win = NULL, *buf = NULL, *ola = NULL, *env = NULL;
  fftwf_complex *spec = NULL;
  fftwf_plan r2c, c2r;
  CC_CHECK(X->dtype == CC_FLOAT32 && X->ndim >= 3 && X->shape[X->ndim - 1] == 2,
           "audio.istft: expected a float32 tensor (..., n_fft/2+1, frames, 2)");
  CC_TRY(!check_opts(o, "istft"));
  int N = o->n_fft;
  int64_t F = X->shape[X->ndim - 3], T = X->shape[X->ndim - 2], rows = 1;
  CC_CHECK(F == N / 2 + 1, "audio.istft: %lld bins do not match n_fft = %d", (long long)F, N);
  CC_CHECK(T >= 1, "audio.istft: no frames");
  CC_TRY(!get_plans(N, &r2c, &c2r));
  CC_TRY(c = cc_contiguous(X));
  for (int d = 0; d < c->ndim - 3; d++) rows *= c->shape[d];
  int64_t full = N + o->hop * (T - 1), start = o->center ? N / 2 : 0;
  int64_t natural = full - 2 * start;
  if (length < 0) length = natural;
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, c->shape, sizeof(int64_t) * (size_t)(c->ndim - 3));
  shape[c->ndim - 3] = length;
  CC_TRY(out = cc_zeros(c->ndim - 2, shape, CC_FLOAT32, CC_CPU));
  win = malloc(sizeof(float) * (size_t)N);
  buf = fftwf_malloc(sizeof(float) * (size_t)N);
  spec = fftwf_malloc(sizeof(fftwf_complex) * (size_t)F);
  ola = malloc(sizeof(float) * (size_t)full);
  env = malloc(sizeof(float) * (size_t)full);
  CC_CHECK(win && buf && spec && ola && env, "audio.istft: out of memory");
  cc_hann_padded(N, o->win_length, win);
  for (int64_t i = 0; i < full; i++) env[i] = 0;
  for (int64_t t = 0; t < T; t++)
    for (int k = 0; k < N; k++) env[t * o->hop + k] += win[k] * win[k];
  int64_t avail = length < full - start ? length : full - start;
  for (int64_t i = 0; i < avail; i++)
    CC_CHECK(env[start + i] > 1e-11f,
             "audio.istft: the window overlap-add is zero at sample %lld (NOLA fails for these settings)",
             (long long)(i + 1));
  for (int64_t r = 0; r < rows; r++) {
    const float *Xr = (const float *)cc_data_ptr(c) + r * F * T * 2;
    for (int64_t i = 0; i < full; i++) ola[i] = 0;
    for (int64_t t = 0; t < T; t++) {
      for (int64_t f = 0; f < F; f++) {
        spec[f][0] = Xr[(f * T + t) * 2];
        spec[f][1] = (f == 0 || (f == F - 1 && N % 2 == 0)) ? 0.0f : Xr[(f * T + t) * 2 + 1];
      }
      fftwf_execute_dft_c2r(c2r, spec, buf);
      float *dst = ola + t * o->hop;
      for (int k = 0; k < N; k++) dst[k] += buf[k] * win[k] / (float)N;
    }
    float *y = (float *)cc_data_ptr(out) + r * length;
    for (int64_t i = 0; i < avail; i++) y[i] = ola[start + i] / env[start + i];
  }
  free(win);
  fftwf_free(buf);
  fftwf_free(spec);
  free(ola);
  free(env);
  cc_release(c);
  return out;
fail:
  free(win);
  fftwf_free(buf);
  fftwf_free(spec);
  free(ola);
  free(env);
  cc_release(c);
  cc_release(out);
  return NULL;
}

/* ---- mel ---- */
static double hz_to_mel(double f, bool htk) {
  if (htk) return 2595.0 * log10(1.0 + f / 700.0);
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp,
               logstep = log(6.4) / 27.0;
  return f >= min_log_hz ? min_log_mel + log(f / min_log_hz) / logstep : f / f_sp;
}
static double mel_to_hz(double m, bool htk) {
  if (htk) return 700.0 * (pow(10.0, m / 2595.0) - 1.0);
  const double f_sp = 200.0 / 3, min_log_hz = 1000.0, min_log_mel = min_log_hz / f_sp,
               logstep = log(6.4) / 27.0;
  return m >= min_log_mel ? min_log_hz * exp(logstep * (m - min_log_mel)) : f_sp * m;
}

int cc_mel_fbank_fill(float *fb, int n_freqs, double sr, int n_mels, double f_min, double f_max, bool htk,
                      bool slaney_norm) {
  if (n_freqs < 2 || n_mels < 1 || !(sr > 0) || !(f_min >= 0) || !(f_max > f_min)) {
    cc_set_error("audio.mel_filterbank: need n_freqs >= 2, n_mels >= 1, sr > 0, 0 <= f_min < f_max "
                 "(got %d, %d, %g, %g, %g)", n_freqs, n_mels, sr, f_min, f_max);
    return -1;
  }
  double *pts = malloc(sizeof(double) * (size_t)(n_mels + 2));
  if (!pts) {
    cc_set_error("audio.mel_filterbank: out of memory");
    return -1;
  }
  double m0 = hz_to_mel(f_min, htk), m1 = hz_to_mel(f_max, htk);
  for (int i = 0; i < n_mels + 2; i++) pts[i] = mel_to_hz(m0 + (m1 - m0) * i / (n_mels + 1), htk);
  for (int m = 0; m < n_mels; m++) {
    double dl = pts[m + 1] - pts[m], du = pts[m + 2] - pts[m + 1];
    double enorm = slaney_norm ? 2.0 / (pts[m + 2] - pts[m]) : 1.0;
    for (int k = 0; k < n_freqs; k++) {
      double f = (sr / 2) * k / (n_freqs - 1);
      double lower = (f - pts[m]) / dl, upper = (pts[m + 2] - f) / du;
      double w = lower < upper ? lower : upper;
      fb[(size_t)m * n_freqs + k] = (float)((w > 0 ? w : 0) * enorm);
    }
  }
  free(pts);
  return 0;
}

cc_tensor *cc_audio_mel_fbank(int n_freqs, double sr, int n_mels, double f_min, double f_max, bool htk,
                              bool slaney_norm) {
  if (n_freqs < 2 || n_mels < 1) {
    cc_set_error("audio.mel_filterbank: need n_freqs >= 2 and n_mels >= 1 (got %d, %d)", n_freqs, n_mels);
    return NULL;
  }
  int64_t shape[2] = {n_mels, n_freqs};
  cc_tensor *t = cc_empty(2, shape, CC_FLOAT32, CC_CPU);
  if (!t) return NULL;
  if (cc_mel_fbank_fill(cc_data_ptr(t), n_freqs, sr, n_mels, f_min, f_max, htk, slaney_norm)) {
    cc_release(t);
    return NULL;
  }
  return t;
}

/* ---- dB ---- */
cc_tensor *cc_audio_power_to_db(cc_tensor *S, double ref, double amin, double top_db) {
  cc_tensor *c = NULL, *out = NULL;
  CC_CHECK(S->dtype == CC_FLOAT32, "audio.power_to_db: expected a float32 tensor");
  CC_CHECK(amin > 0, "audio.power_to_db: amin must be positive");
  CC_TRY(c = cc_contiguous(S));
  CC_TRY(out = cc_empty_like(c));
  int64_t n = cc_numel(c);
  const float *x = cc_data_ptr(c);
  float *y = cc_data_ptr(out);
  if (ref <= 0) { /* ref = max */
    ref = -INFINITY;
    for (int64_t i = 0; i < n; i++) ref = x[i] > ref ? x[i] : ref;
    if (n == 0) ref = 1;
  }
  double off = 10.0 * log10(ref > amin ? ref : amin), top = -INFINITY;
  for (int64_t i = 0; i < n; i++) {
    double v = x[i] > amin ? x[i] : amin;
    if (x[i] != x[i]) v = x[i]; /* NaN stays NaN */
    y[i] = (float)(10.0 * log10(v) - off);
    top = y[i] > top ? y[i] : top;
  }
  if (top_db >= 0)
    for (int64_t i = 0; i < n; i++) y[i] = y[i] < top - top_db ? (float)(top - top_db) : y[i];
  cc_release(c);
  return out;
fail:
  cc_release(c);
  cc_release(out);
  return NULL;
}

cc_tensor *cc_audio_amplitude_to_db(cc_tensor *S, double ref, double amin, double top_db) {
  cc_tensor *sq = NULL, *out = NULL;
  CC_CHECK(S->dtype == CC_FLOAT32, "audio.amplitude_to_db: expected a float32 tensor");
  CC_TRY(sq = cc_contiguous(S));
  {
    cc_tensor *p = cc_empty_like(sq);
    CC_TRY(p);
    const float *x = cc_data_ptr(sq);
    float *y = cc_data_ptr(p);
    for (int64_t i = 0; i < cc_numel(sq); i++) y[i] = x[i] * x[i];
    cc_release(sq);
    sq = p;
  }
  /* ref <= 0: max of |S| -> max of |S|^2 */
  out = cc_audio_power_to_db(sq, ref > 0 ? ref * ref : ref, amin * amin, top_db);
  cc_release(sq);
  return out;
fail:
  cc_release(sq);
  return NULL;
}
