/* phase_vocoder.c — time-stretching of a complex STFT by a phase vocoder, as librosa.phase_vocoder
 * 0.10.1 computes it on complex64 spectra (the first step of librosa.effects.time_stretch and
 * pitch_shift). Output frame t reads the input at step s = t * rate (t = 0 .. ceil(T / rate) - 1):
 * the magnitude is interpolated linearly between input frames floor(s) and floor(s) + 1 (frames past
 * the end are zero), and each bin's phase advances by its expected advance pi * hop * f / (F - 1) plus
 * the measured deviation wrapped to [-pi, pi]. The phase accumulator is float32 and every sum is
 * rounded where librosa rounds it, so long stretches drift from librosa no more than rounding does.
 * Shapes: (..., F, T, 2) real/imag float32 -> (..., F, ceil(T / rate), 2).
 */
#include "audio.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the number of values of numpy.arange(0, T, rate) */
static int64_t stretched_frames(int64_t T, double rate) { return (int64_t)ceil((double)T / rate); }

/* one spectrum X (F x T, interleaved real/imag) -> Y (F x Tout). Work space: magnitude and angle of
   every input frame, frame-major with two zero frames after the last ((T + 2) x F each), the phase
   accumulator (F) and the output frame-major (Tout x F x 2) before it is transposed into Y. */
static void vocode_one(const float *X, int64_t F, int64_t T, double rate, int64_t Tout, const double *expected_advance,
                       float *magnitude, float *angle, float *phase_acc, float *frames, float *Y) {
  for (int64_t t = 0; t < T + 2; t++)
    for (int64_t f = 0; f < F; f++) {
      float re = t < T ? X[(f * T + t) * 2] : 0.0f, im = t < T ? X[(f * T + t) * 2 + 1] : 0.0f;
      magnitude[t * F + f] = hypotf(re, im);
      angle[t * F + f] = atan2f(im, re);
    }
  for (int64_t f = 0; f < F; f++) phase_acc[f] = angle[f];
  for (int64_t t = 0; t < Tout; t++) {
    double step = (double)t * rate;
    int64_t i0 = (int64_t)step;
    if (i0 > T) i0 = T; /* steps stay below T; a guard for the last one's rounding */
    double alpha = fmod(step, 1.0);
    const float *m0 = magnitude + i0 * F, *m1 = m0 + F, *a0 = angle + i0 * F, *a1 = a0 + F;
    float *out = frames + t * F * 2;
    for (int64_t f = 0; f < F; f++) {
      double mag = (1.0 - alpha) * (double)m0[f] + alpha * (double)m1[f];
      float phase = phase_acc[f];
      out[2 * f] = (float)((double)cosf(phase) * mag);
      out[2 * f + 1] = (float)((double)sinf(phase) * mag);
      float measured = a1[f] - a0[f];
      double deviation = (double)measured - expected_advance[f];
      deviation -= 2.0 * M_PI * nearbyint(deviation / (2.0 * M_PI));
      phase_acc[f] = (float)((double)phase + (expected_advance[f] + deviation));
    }
  }
  for (int64_t f = 0; f < F; f++)
    for (int64_t t = 0; t < Tout; t++) {
      Y[(f * Tout + t) * 2] = frames[(t * F + f) * 2];
      Y[(f * Tout + t) * 2 + 1] = frames[(t * F + f) * 2 + 1];
    }
}

cc_tensor *cc_audio_phase_vocoder(cc_tensor *X, double rate, int hop) {
  cc_tensor *c = NULL, *out = NULL, *result = NULL;
  double *expected_advance = NULL;
  float *magnitude = NULL, *angle = NULL, *phase_acc = NULL, *frames = NULL;
  CC_CHECK(X->dtype == CC_FLOAT32 && X->ndim >= 3 && X->ndim <= CC_MAX_DIMS && X->shape[X->ndim - 1] == 2,
           "audio.phase_vocoder: expected a float32 STFT (..., bins, frames, 2)");
  CC_CHECK(isfinite(rate) && rate > 0, "audio.phase_vocoder: rate must be a positive number (got %g)", rate);
  CC_CHECK(hop >= 1, "audio.phase_vocoder: hop_length must be a positive integer (got %d)", hop);
  int64_t F = X->shape[X->ndim - 3], T = X->shape[X->ndim - 2], rows = 1;
  CC_CHECK(F >= 2 && T >= 1, "audio.phase_vocoder: need at least 2 bins and 1 frame (got %lld x %lld)", (long long)F,
           (long long)T);
  /* bounded before the conversion to an integer: 2.5e8 complex values are 2 GB of output */
  CC_CHECK(ceil((double)T / rate) * (double)F <= 2.5e8,
           "audio.phase_vocoder: rate %g stretches %lld frames to too many frames", rate, (long long)T);
  int64_t Tout = stretched_frames(T, rate);
  CC_TRY(c = cc_contiguous(X));
  for (int d = 0; d < c->ndim - 3; d++) rows *= c->shape[d];
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, c->shape, sizeof(int64_t) * (size_t)c->ndim);
  shape[c->ndim - 2] = Tout;
  CC_TRY(out = cc_empty(c->ndim, shape, CC_FLOAT32, CC_CPU));
  expected_advance = malloc(sizeof(double) * (size_t)F);
  magnitude = malloc(sizeof(float) * (size_t)((T + 2) * F));
  angle = malloc(sizeof(float) * (size_t)((T + 2) * F));
  phase_acc = malloc(sizeof(float) * (size_t)F);
  frames = malloc(sizeof(float) * (size_t)(Tout * F * 2));
  CC_CHECK(expected_advance && magnitude && angle && phase_acc && frames, "audio.phase_vocoder: out of memory");
  /* numpy.linspace(0, pi * hop, F): f * step, the last value exactly pi * hop */
  double span = M_PI * (double)hop, spacing = span / (double)(F - 1);
  for (int64_t f = 0; f < F; f++) expected_advance[f] = (double)f * spacing;
  expected_advance[F - 1] = span;
  for (int64_t r = 0; r < rows; r++)
    vocode_one((const float *)cc_data_ptr(c) + r * F * T * 2, F, T, rate, Tout, expected_advance, magnitude, angle,
               phase_acc, frames, (float *)cc_data_ptr(out) + r * F * Tout * 2);
  result = out;
  out = NULL;
fail:
  free(expected_advance);
  free(magnitude);
  free(angle);
  free(phase_acc);
  free(frames);
  cc_release(c);
  cc_release(out);
  return result;
}
