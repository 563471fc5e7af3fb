/* test_prefetch.c — C unit tests of the background audio loader (csrc/audio/prefetch.c): its waves
 * are bit-identical to cc_audio_load's (resampled, down-mixed, zero-padded past the end), its RMS
 * matches, a missing file fails the wait with a message naming it, and a job released before it
 * completes is cancelled and freed without leaking a tensor. */
#include "audio/audio.h"
#include "testing.h"

#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

static char wav_path[256];

/* a stereo 44.1 kHz float WAV of 2 s: two tones */
static int write_fixture(void) {
  snprintf(wav_path, sizeof wav_path, "/tmp/cocola_test_prefetch_%d.wav", (int)getpid());
  int64_t n = 2 * 44100;
  cc_tensor *wave = cc_empty(SHAPE(2, n), CC_FLOAT32, CC_CPU);
  if (!wave) return -1;
  float *x = cc_data_ptr(wave);
  for (int64_t i = 0; i < n; i++) {
    x[i] = (float)(0.3 * sin(2 * M_PI * 220.0 * (double)i / 44100.0));
    x[n + i] = (float)(0.2 * sin(2 * M_PI * 331.0 * (double)i / 44100.0));
  }
  int rc = cc_audio_save(wav_path, wave, 44100, "float");
  cc_release(wave);
  return rc;
}

static bool same_bits(const cc_tensor *a, const cc_tensor *b) {
  if (!a || !b || a->ndim != b->ndim) return false;
  for (int d = 0; d < a->ndim; d++)
    if (a->shape[d] != b->shape[d]) return false;
  return memcmp(cc_data_ptr(a), cc_data_ptr(b), sizeof(float) * (size_t)cc_numel(a)) == 0;
}

static void test_same_as_load(void) {
  int64_t live0 = cc_live_tensors();
  cc_read_request requests[] = {
      {wav_path, 0.0, 1.0, 16000, true},  /* resampled, down-mixed */
      {wav_path, 1.5, 1.0, 16000, true},  /* half past the end: zero-padded */
      {wav_path, 0.25, 0.5, 0, false},    /* the file's rate, both channels */
      {wav_path, 0.0, -1.0, 22050, false} /* the whole file */
  };
  int n = (int)(sizeof requests / sizeof requests[0]);
  cc_prefetch_job *job = cc_prefetch_submit(requests, n);
  EXPECT(job && cc_prefetch_count(job) == n);
  EXPECT(job && cc_prefetch_wait(job) == 0);
  EXPECT(job && cc_prefetch_ready(job));
  for (int i = 0; job && i < n; i++) {
    double rms = -1;
    cc_tensor *got = cc_prefetch_take(job, i, &rms);
    cc_tensor *want = cc_audio_load(requests[i].path, requests[i].offset, requests[i].duration, requests[i].sr,
                                    requests[i].mono, NULL);
    EXPECT(same_bits(got, want));
    if (want) {
      double s = 0;
      const float *x = cc_data_ptr(want);
      for (int64_t k = 0; k < cc_numel(want); k++) s += (double)x[k] * x[k];
      EXPECT(fabs(rms - sqrt(s / (double)cc_numel(want))) < 1e-12);
    }
    EXPECT(cc_prefetch_take(job, i, NULL) == NULL); /* handed over once */
    cc_release(got);
    cc_release(want);
  }
  cc_prefetch_release(job);
  EXPECT(cc_live_tensors() == live0);
}

static void test_missing_file(void) {
  cc_read_request requests[] = {{wav_path, 0.0, 0.5, 16000, true}, {"/nonexistent/cocola_missing.wav", 0.0, 0.5, 16000, true}};
  cc_prefetch_job *job = cc_prefetch_submit(requests, 2);
  EXPECT(job && cc_prefetch_wait(job) != 0 && strstr(cc_last_error(), "cocola_missing.wav"));
  EXPECT(job && cc_prefetch_take(job, 0, NULL) == NULL); /* nothing to take after a failed wait */
  cc_prefetch_release(job);
  cc_read_request bad = {wav_path, -1.0, 0.5, 16000, true};
  EXPECT(cc_prefetch_submit(&bad, 1) == NULL && strstr(cc_last_error(), "offset"));
}

static void test_release_before_done(void) {
  int64_t live0 = cc_live_tensors();
  enum { MANY = 64 };
  cc_read_request requests[MANY];
  for (int i = 0; i < MANY; i++) requests[i] = (cc_read_request){wav_path, 0.01 * i, 1.0, 16000, true};
  for (int round = 0; round < 8; round++) {
    cc_prefetch_job *job = cc_prefetch_submit(requests, MANY);
    EXPECT(job != NULL);
    cc_prefetch_release(job); /* at once: most requests are cancelled, the running ones freed by workers */
  }
  /* a later job still runs, and after it the workers have let go of everything */
  cc_prefetch_job *last = cc_prefetch_submit(requests, 4);
  EXPECT(last && cc_prefetch_wait(last) == 0);
  cc_prefetch_release(last);
  for (int k = 0; k < 500 && cc_live_tensors() != live0; k++) nanosleep(&(struct timespec){0, 10000000}, NULL);
  EXPECT(cc_live_tensors() == live0);
  EXPECT(cc_prefetch_start(3) >= 3);
  cc_prefetch_job *empty = cc_prefetch_submit(NULL, 0);
  EXPECT(empty && cc_prefetch_ready(empty) && cc_prefetch_wait(empty) == 0);
  cc_prefetch_release(empty);
}

int main(void) {
  cc_init();
  if (write_fixture()) {
    fprintf(stderr, "cannot write the fixture: %s\n", cc_last_error());
    return 1;
  }
  test_same_as_load();
  test_missing_file();
  test_release_before_done();
  remove(wav_path);
  return test_summary();
}
