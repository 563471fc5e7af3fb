/* audio_io.c — audio files through libsndfile (info, windowed load with sf_seek, save as WAV / FLAC /
 * OGG / AIFF), resampling through libsoxr (HQ, any ratio, planar channels) and the mono down-mix.
 * Loaded waves are float32 (channels, samples); PCM is scaled by 2^(bits-1) both ways so that a
 * PCM16 save/load round trip is exact (libsndfile's own float->short path uses 0x7FFF).
 */
#include "audio.h"

#include <errno.h>
#include <math.h>
#include <sndfile.h>
#include <soxr.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

static void fill_format_names(SNDFILE *f, int format, cc_audio_info *info) {
  (void)f;
  SF_FORMAT_INFO fi;
  info->format[0] = info->subtype[0] = 0;
  fi.format = format & SF_FORMAT_TYPEMASK;
  if (!sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi) && fi.name)
    snprintf(info->format, sizeof info->format, "%s", fi.name);
  fi.format = format & SF_FORMAT_SUBMASK;
  if (!sf_command(NULL, SFC_GET_FORMAT_INFO, &fi, sizeof fi) && fi.name)
    snprintf(info->subtype, sizeof info->subtype, "%s", fi.name);
}

static SNDFILE *open_read(const char *path, SF_INFO *si, const char *what) {
  memset(si, 0, sizeof *si);
  SNDFILE *f = sf_open(path, SFM_READ, si);
  if (!f) {
    cc_set_error("audio.%s: cannot open '%s': %s", what, path, sf_strerror(NULL));
    return NULL;
  }
  /* a header's rate sizes every window (seconds * rate frames, zero-padded): an absurd one would
     allocate gigabytes for a file of a few bytes */
  if (si->samplerate > CC_AUDIO_MAX_RATE) {
    cc_set_error("audio.%s: '%s' declares a sample rate of %d Hz (at most %d Hz is accepted)", what, path,
                 si->samplerate, CC_AUDIO_MAX_RATE);
    sf_close(f);
    return NULL;
  }
  if (si->channels < 1 || si->samplerate < 1 || si->frames < 0) {
    cc_set_error("audio.%s: '%s' has an invalid header (%d channels, rate %d)", what, path, si->channels,
                 si->samplerate);
    sf_close(f);
    return NULL;
  }
  return f;
}

int cc_audio_info_get(const char *path, cc_audio_info *info) {
  SF_INFO si;
  SNDFILE *f = open_read(path, &si, "info");
  if (!f) return -1;
  info->frames = si.frames;
  info->rate = si.samplerate;
  info->channels = si.channels;
  info->duration = (double)si.frames / si.samplerate;
  fill_format_names(f, si.format, info);
  sf_close(f);
  return 0;
}

cc_tensor *cc_audio_to_mono(cc_tensor *wave) {
  cc_tensor *c = NULL, *out = NULL;
  if (wave->ndim != 2 || wave->dtype != CC_FLOAT32) {
    cc_set_error("audio.to_mono: expected a float32 (channels, samples) tensor");
    return NULL;
  }
  CC_TRY(c = cc_contiguous(wave));
  int64_t C = c->shape[0], n = c->shape[1];
  CC_CHECK(C >= 1, "audio.to_mono: no channels");
  int64_t shape[2] = {1, n};
  CC_TRY(out = cc_empty(2, shape, CC_FLOAT32, CC_CPU));
  const float *x = cc_data_ptr(c);
  float *y = cc_data_ptr(out);
  for (int64_t i = 0; i < n; i++) {
    double s = 0;
    for (int64_t ch = 0; ch < C; ch++) s += x[ch * n + i];
    y[i] = (float)(s / (double)C);
  }
  cc_release(c);
  return out;
fail:
  cc_release(c);
  cc_release(out);
  return NULL;
}

cc_tensor *cc_audio_resample(cc_tensor *wave, double in_rate, double out_rate) {
  cc_tensor *c = NULL, *out = NULL;
  const float **ip = NULL;
  float **op = NULL;
  CC_CHECK(wave->dtype == CC_FLOAT32 && wave->ndim >= 1, "audio.resample: expected a float32 tensor (..., samples)");
  CC_CHECK(in_rate > 0 && out_rate > 0 && isfinite(in_rate) && isfinite(out_rate),
           "audio.resample: rates must be positive (got %g -> %g)", in_rate, out_rate);
  CC_TRY(c = cc_contiguous(wave));
  int64_t n = c->shape[c->ndim - 1], rows = 1;
  for (int d = 0; d < c->ndim - 1; d++) rows *= c->shape[d];
  int64_t m = (int64_t)ceil((double)n * out_rate / in_rate - 1e-9);
  if (m < 0) m = 0;
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, c->shape, sizeof(int64_t) * (size_t)c->ndim);
  shape[c->ndim - 1] = m;
  CC_TRY(out = cc_zeros(c->ndim, shape, CC_FLOAT32, CC_CPU));
  if (in_rate == out_rate) {
    if (n) memcpy(cc_data_ptr(out), cc_data_ptr(c), sizeof(float) * (size_t)(rows * n));
    cc_release(c);
    return out;
  }
  if (n == 0 || rows == 0) {
    cc_release(c);
    return out;
  }
  ip = malloc(sizeof(*ip) * (size_t)rows);
  op = malloc(sizeof(*op) * (size_t)rows);
  CC_CHECK(ip && op, "audio.resample: out of memory");
  for (int64_t r = 0; r < rows; r++) {
    ip[r] = (const float *)cc_data_ptr(c) + r * n;
    op[r] = (float *)cc_data_ptr(out) + r * m;
  }
  soxr_io_spec_t io = soxr_io_spec(SOXR_FLOAT32_S, SOXR_FLOAT32_S);
  soxr_quality_spec_t q = soxr_quality_spec(SOXR_HQ, 0);
  size_t idone = 0, odone = 0;
  soxr_error_t e = soxr_oneshot(in_rate, out_rate, (unsigned)rows, (const void *)ip, (size_t)n, &idone, (void *)op,
                                (size_t)m, &odone, &io, &q, NULL);
  CC_CHECK(!e, "audio.resample: soxr failed: %s", e);
  free(ip);
  free(op);
  cc_release(c);
  return out; /* a short odone leaves zeros at the end */
fail:
  free(ip);
  free(op);
  cc_release(c);
  cc_release(out);
  return NULL;
}

cc_tensor *cc_audio_load(const char *path, double offset, double duration, int sr, bool mono, int *sr_out) {
  SF_INFO si;
  float *buf = NULL;
  cc_tensor *wave = NULL, *tmp = NULL;
  SNDFILE *f = NULL;
  CC_CHECK(isfinite(offset) && offset >= 0, "audio.load: offset must be a non-negative number of seconds");
  CC_CHECK(isfinite(duration), "audio.load: duration must be finite");
  CC_TRY(f = open_read(path, &si, "load"));
  int C = si.channels, rate = si.samplerate;
  int64_t start = llround(offset * rate);
  int64_t want = duration >= 0 ? llround(duration * rate) : si.frames - start;
  if (want < 0) want = 0;
  int64_t avail = si.frames - start;
  if (avail > want) avail = want;
  if (avail < 0) avail = 0;
  int64_t shape[2] = {C, want};
  CC_TRY(wave = cc_zeros(2, shape, CC_FLOAT32, CC_CPU));
  if (avail > 0) {
    if (start > 0) CC_CHECK(sf_seek(f, start, SEEK_SET) == start, "audio.load: cannot seek to frame %lld in '%s': %s",
                            (long long)start, path, sf_strerror(f));
    buf = malloc(sizeof(float) * (size_t)C * (size_t)avail);
    CC_CHECK(buf, "audio.load: out of memory for %lld frames", (long long)avail);
    sf_count_t got = sf_readf_float(f, buf, avail);
    CC_CHECK(got >= 0 && (got == avail || sf_error(f) == SF_ERR_NO_ERROR),
             "audio.load: decoding '%s' failed: %s", path, sf_strerror(f));
    /* a file shorter than its header says: what was decoded, then zeros (like a window past the end) */
    float *w = cc_data_ptr(wave);
    for (int64_t i = 0; i < got; i++)
      for (int ch = 0; ch < C; ch++) {
        float v = buf[i * C + ch];
        w[ch * want + i] = v;
      }
    free(buf);
    buf = NULL;
  }
  sf_close(f);
  f = NULL;
  if (mono && C > 1) {
    CC_TRY(tmp = cc_audio_to_mono(wave));
    cc_release(wave);
    wave = tmp;
    tmp = NULL;
  }
  if (sr > 0 && sr != rate) {
    CC_TRY(tmp = cc_audio_resample(wave, rate, sr));
    cc_release(wave);
    wave = tmp;
    tmp = NULL;
    if (duration >= 0) { /* exact requested length at the new rate */
      int64_t target = llround(duration * sr);
      if (wave->shape[1] != target) {
        int64_t s2[2] = {wave->shape[0], target};
        CC_TRY(tmp = cc_zeros(2, s2, CC_FLOAT32, CC_CPU));
        int64_t k = target < wave->shape[1] ? target : wave->shape[1];
        for (int64_t ch = 0; ch < s2[0]; ch++)
          memcpy((float *)cc_data_ptr(tmp) + ch * target, (float *)cc_data_ptr(wave) + ch * wave->shape[1],
                 sizeof(float) * (size_t)k);
        cc_release(wave);
        wave = tmp;
        tmp = NULL;
      }
    }
    rate = sr;
  }
  if (sr_out) *sr_out = rate;
  return wave;
fail:
  if (f) sf_close(f);
  free(buf);
  cc_release(wave);
  cc_release(tmp);
  return NULL;
}

static const char *ext_of(const char *path) {
  const char *dot = strrchr(path, '.'), *slash = strrchr(path, '/');
  return (dot && (!slash || dot > slash)) ? dot + 1 : "";
}

int cc_audio_save(const char *path, cc_tensor *wave, int sr, const char *subtype) {
  cc_tensor *c = NULL;
  void *buf = NULL;
  SNDFILE *f = NULL;
  char *tmp = NULL;
  bool opened = false;
  CC_CHECK(wave->dtype == CC_FLOAT32 || wave->dtype == CC_FLOAT64, "audio.save: expected a floating tensor");
  CC_CHECK(wave->ndim == 1 || wave->ndim == 2, "audio.save: expected (samples) or (channels, samples), got %d dims",
           wave->ndim);
  CC_CHECK(sr > 0, "audio.save: the sample rate must be positive (got %d)", sr);
  CC_TRY(c = cc_to_dtype(wave, CC_FLOAT32));
  {
    cc_tensor *cc2 = cc_contiguous(c);
    cc_release(c);
    c = cc2;
    CC_TRY(c);
  }
  int C = c->ndim == 1 ? 1 : (int)c->shape[0];
  int64_t n = c->shape[c->ndim - 1];
  CC_CHECK(C >= 1 && C <= 1024, "audio.save: %d channels", C);
  const float *x = cc_data_ptr(c);
  for (int64_t i = 0; i < (int64_t)C * n; i++)
    CC_CHECK(isfinite(x[i]), "audio.save: the waveform has a NaN or infinite sample (channel %lld, sample %lld)",
             (long long)(i / n + 1), (long long)(i % n + 1));

  const char *ext = ext_of(path);
  int major;
  if (!strcasecmp(ext, "wav")) major = SF_FORMAT_WAV;
  else if (!strcasecmp(ext, "flac")) major = SF_FORMAT_FLAC;
  else if (!strcasecmp(ext, "ogg") || !strcasecmp(ext, "oga")) major = SF_FORMAT_OGG;
  else if (!strcasecmp(ext, "aiff") || !strcasecmp(ext, "aif")) major = SF_FORMAT_AIFF;
  else CC_CHECK(0, "audio.save: unknown file extension '%s' (use .wav, .flac, .ogg or .aiff)", ext);
  if (!subtype) subtype = major == SF_FORMAT_OGG ? "vorbis" : "pcm16";
  int sub = 0, bits = 0;
  if (!strcmp(subtype, "pcm16")) sub = SF_FORMAT_PCM_16, bits = 16;
  else if (!strcmp(subtype, "pcm24")) sub = SF_FORMAT_PCM_24, bits = 24;
  else if (!strcmp(subtype, "pcm32")) sub = SF_FORMAT_PCM_32, bits = 32;
  else if (!strcmp(subtype, "float")) sub = SF_FORMAT_FLOAT;
  else if (!strcmp(subtype, "double")) sub = SF_FORMAT_DOUBLE;
  else if (!strcmp(subtype, "vorbis")) sub = SF_FORMAT_VORBIS;
  else CC_CHECK(0, "audio.save: unknown subtype '%s' (pcm16, pcm24, pcm32, float, double, vorbis)", subtype);

  SF_INFO si;
  memset(&si, 0, sizeof si);
  si.samplerate = sr;
  si.channels = C;
  si.format = major | sub;
  CC_CHECK(sf_format_check(&si), "audio.save: the format .%s cannot hold subtype %s", ext, subtype);
  /* written to "<path>.tmp" and renamed over path once complete: a failed save leaves path as it was */
  size_t plen = strlen(path);
  tmp = malloc(plen + 5);
  CC_CHECK(tmp, "audio.save: out of memory");
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  opened = true; /* from here on a failure removes tmp (sf_open may fail after creating it) */
  f = sf_open(tmp, SFM_WRITE, &si);
  CC_CHECK(f, "audio.save: cannot write '%s': %s", path, sf_strerror(NULL));
  sf_count_t wrote;
  if (bits) {
    int32_t *ib = buf = malloc(sizeof(int32_t) * (size_t)C * (size_t)(n ? n : 1));
    CC_CHECK(buf, "audio.save: out of memory");
    double scale = ldexp(1.0, bits - 1), hi = scale - 1, lo = -scale, up = ldexp(1.0, 32 - bits);
    for (int64_t i = 0; i < n; i++)
      for (int ch = 0; ch < C; ch++) {
        double q = nearbyint((double)x[ch * n + i] * scale);
        q = q > hi ? hi : q < lo ? lo : q; /* clipped to the PCM range */
        ib[i * C + ch] = (int32_t)(q * up); /* left-justified: libsndfile's int range */
      }
    wrote = sf_writef_int(f, ib, n);
  } else {
    float *fb = buf = malloc(sizeof(float) * (size_t)C * (size_t)(n ? n : 1));
    CC_CHECK(buf, "audio.save: out of memory");
    for (int64_t i = 0; i < n; i++)
      for (int ch = 0; ch < C; ch++) fb[i * C + ch] = x[ch * n + i];
    wrote = sf_writef_float(f, fb, n);
  }
  CC_CHECK(wrote == n, "audio.save: cannot write '%s': %s", path, sf_strerror(f));
  int rc = sf_close(f);
  f = NULL;
  CC_CHECK(rc == 0, "audio.save: cannot write '%s': %s", path, rc > 0 ? sf_error_number(rc) : strerror(errno));
  CC_CHECK(rename(tmp, path) == 0, "audio.save: cannot write '%s': %s", path, strerror(errno));
  free(tmp);
  free(buf);
  cc_release(c);
  return 0;
fail:
  if (f) sf_close(f);
  if (opened) remove(tmp);
  free(tmp);
  free(buf);
  cc_release(c);
  return -1;
}
