/* audio.h — the audio front end of cocola (csrc/audio/): file I/O (libsndfile), resampling
 * (libsoxr), STFT / inverse STFT (FFTW3, single precision), HPSS (sliding medians), mel filterbanks,
 * dB scaling and the fused COCOLA / AudioLDM 2 front ends. Every function returns NULL (or a negative
 * status) with cc_set_error() on failure; tensors are float32 CPU, new references.
 * Shapes: waves (channels, samples) or (B, samples); STFT (..., n_fft/2+1, frames, 2) real/imag;
 * magnitudes / power spectrograms (..., bins, frames); filterbanks (n_mels, n_fft/2+1).
 */
#ifndef COCOLA_AUDIO_H
#define COCOLA_AUDIO_H

#include "internal.h"

/* ---- files ---- */
typedef struct {
  int64_t frames;
  int rate, channels;
  double duration;
  char format[64], subtype[64];
} cc_audio_info;
/* files declaring a higher sample rate are refused (the highest PCM rates in use are 768 kHz) */
#define CC_AUDIO_MAX_RATE 1000000
int cc_audio_info_get(const char *path, cc_audio_info *info);
/* offset/duration in seconds (duration < 0: to the end); sr <= 0 keeps the file's rate.
   A window reaching past the end is zero-padded on the right to the requested duration. */
cc_tensor *cc_audio_load(const char *path, double offset, double duration, int sr, bool mono, int *sr_out);
/* subtype: "pcm16" (default), "pcm24", "pcm32", "float", "double", "vorbis"; format from the extension
   (.wav, .flac, .ogg, .aiff) */
int cc_audio_save(const char *path, cc_tensor *wave, int sr, const char *subtype);

/* ---- background loading (prefetch.c) ----
   A pool of worker threads (default 2, started by the first submit) decodes read requests with
   cc_audio_load and computes each one's RMS (sqrt of the mean square over all samples, in double).
   A job's requests are queued in order and shared among the workers. The submitter polls or waits,
   then takes the tensors; releasing a job before it completes cancels its unstarted requests and
   the last worker to finish frees it. Workers live for the whole process (never joined). */
typedef struct {
  const char *path; /* copied at submit */
  double offset;    /* seconds, >= 0 */
  double duration;  /* seconds; < 0: to the end of the file */
  int sr;           /* <= 0 keeps the file's rate */
  bool mono;
} cc_read_request;
typedef struct cc_prefetch_job cc_prefetch_job;
/* grows the pool to at least `workers` threads (1..64); returns the pool's size, or -1 */
int cc_prefetch_start(int workers);
cc_prefetch_job *cc_prefetch_submit(const cc_read_request *requests, int n); /* NULL + error */
int cc_prefetch_count(const cc_prefetch_job *job);
bool cc_prefetch_ready(cc_prefetch_job *job); /* every request decoded (or failed) */
/* blocks until the job is done; 0, or -1 with the error of the first failed request (it names the file) */
int cc_prefetch_wait(cc_prefetch_job *job);
/* after a successful wait: request i's wave (a new reference handed over once; NULL after) and RMS */
cc_tensor *cc_prefetch_take(cc_prefetch_job *job, int i, double *rms);
void cc_prefetch_release(cc_prefetch_job *job); /* the submitter lets go; safe at any time */

/* ---- resampling (soxr HQ) and mixing ---- */
cc_tensor *cc_audio_resample(cc_tensor *wave, double in_rate, double out_rate); /* (..., samples) */
cc_tensor *cc_audio_to_mono(cc_tensor *wave); /* (C, samples) -> (1, samples), the mean of the channels */

/* ---- STFT ---- */
typedef struct {
  int n_fft, hop, win_length;
  bool center;
  bool reflect; /* centre padding: reflect (torch) or zeros (librosa >= 0.10 "constant") */
} cc_stft_opts;
int64_t cc_stft_frames(int64_t n, const cc_stft_opts *o);
/* one signal x[n] -> re/im (bins x frames, row-major); win: n_fft values (the padded window) */
int cc_stft_1d(const float *x, int64_t n, const cc_stft_opts *o, const float *win, float *re, float *im);
/* periodic Hann of win_length zero-padded (centred) to n_fft */
void cc_hann_padded(int n_fft, int win_length, float *win);
cc_tensor *cc_audio_stft(cc_tensor *x, const cc_stft_opts *o);                 /* (..., n) -> (..., F, T, 2) */
cc_tensor *cc_audio_istft(cc_tensor *X, const cc_stft_opts *o, int64_t length); /* length < 0: natural */
/* phase vocoder (phase_vocoder.c): (..., F, T, 2) -> (..., F, ceil(T / rate), 2), librosa.phase_vocoder */
cc_tensor *cc_audio_phase_vocoder(cc_tensor *X, double rate, int hop);

/* ---- HPSS ---- */
/* scipy.ndimage.median_filter along one axis of a row-major (rows x cols) image, mode 'reflect';
   axis 1 runs along a row, axis 0 along a column; odd size */
int cc_median_filter_2d(const float *src, float *dst, int64_t rows, int64_t cols, int axis, int size);
/* magnitude (F x T) -> harmonic and percussive magnitudes (librosa hpss soft masks) */
int cc_hpss_2d(const float *mag, int64_t F, int64_t T, int kernel_h, int kernel_p, double power, double margin,
               float *harm, float *perc);
cc_tensor *cc_audio_hpss(cc_tensor *mag, int kernel_h, int kernel_p, double power, double margin, cc_tensor **perc);

/* ---- mel and dB ---- */
/* (n_mels x (n_fft/2+1)) float32; htk selects the HTK mel scale, slaney_norm the area normalisation */
int cc_mel_fbank_fill(float *fb, int n_freqs, double sr, int n_mels, double f_min, double f_max, bool htk,
                      bool slaney_norm);
cc_tensor *cc_audio_mel_fbank(int n_freqs, double sr, int n_mels, double f_min, double f_max, bool htk,
                              bool slaney_norm);
/* librosa power_to_db: ref <= 0 means ref = max of the tensor; top_db < 0: none */
cc_tensor *cc_audio_power_to_db(cc_tensor *S, double ref, double amin, double top_db);
cc_tensor *cc_audio_amplitude_to_db(cc_tensor *S, double ref, double amin, double top_db);

/* ---- fused front ends (OpenMP over the batch) ---- */
/* (B, samples) -> hpss: (B, 2, 64, frames); mel: (B, 1, 64, frames) */
cc_tensor *cc_audio_cocola_features(cc_tensor *wave, bool hpss);
/* (B, samples) -> (B, 1, frames, 64): log(max(mel(|STFT|), 1e-5)) */
cc_tensor *cc_audio_audioldm_mel(cc_tensor *wave);

#endif
