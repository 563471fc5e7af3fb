/* prefetch.c — background loading of audio windows, so that decoding runs ahead of its consumer.
 * A job is a list of read requests {path, offset, duration, sr, mono}; jobs wait in one FIFO and
 * the pool's workers take their requests one at a time, decode each with cc_audio_load (the loader
 * behind audio.load: soxr resampling and zero padding included, so the samples are the same) and
 * compute its RMS. The submitter polls (cc_prefetch_ready) or blocks (cc_prefetch_wait), then takes
 * the tensors. Tensor allocation is thread-safe (atomic counters, a locked block cache) and the
 * error message is thread-local, so a worker copies it into its job.
 * Lifetime: a job is freed by whoever finishes last of the submitter (cc_prefetch_release, which
 * also cancels requests no worker has started) and the workers. The workers are detached and idle
 * on a condition variable for the life of the process: they are never joined, the library is
 * loaded -z nodelete, and nothing they use is freed behind them (the pool is static).
 * Each worker runs OpenMP regions on one thread and blocks every signal; cc_prefetch_start returns
 * once its new workers have set that up, so that none is still calling into the OpenMP runtime
 * when a program that has just started the pool exits (libomp, shut down, aborts a late caller). */
#include "audio.h"

#include <pthread.h>
#include <signal.h>
#include <stdlib.h>
#ifdef _OPENMP
#include <omp.h>
#endif

#define PREFETCH_DEFAULT_WORKERS 2
#define PREFETCH_MAX_WORKERS 64

struct cc_prefetch_job {
  int n;
  cc_read_request *requests; /* paths owned */
  cc_tensor **waves;
  double *rms;
  char **errors;   /* per request: a malloc'd message when it failed */
  int next;        /* the next request no worker has claimed */
  int finished;    /* decoded, failed or cancelled */
  bool released;   /* the submitter has let go: the last worker frees the job */
  bool waited;     /* a wait succeeded: the tensors may be taken */
  cc_prefetch_job *queue_next;
};

static struct {
  pthread_mutex_t lock;
  pthread_cond_t work_available; /* workers wait here */
  pthread_cond_t job_finished;   /* waiters wait here */
  pthread_cond_t worker_ready;   /* grow_pool waits here for its new workers */
  cc_prefetch_job *head, *tail;  /* jobs with unclaimed requests, in submission order */
  int workers;                   /* started */
  int ready;                     /* of which past their set-up */
} pool = {PTHREAD_MUTEX_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER, PTHREAD_COND_INITIALIZER,
          NULL, NULL, 0, 0};

static char *copy_string(const char *s) {
  size_t n = strlen(s) + 1;
  char *c = malloc(n);
  if (c) memcpy(c, s, n);
  return c;
}

static void job_free(cc_prefetch_job *job) {
  if (!job) return;
  for (int i = 0; i < job->n; i++) {
    if (job->requests) free((char *)job->requests[i].path);
    if (job->waves) cc_release(job->waves[i]);
    if (job->errors) free(job->errors[i]);
  }
  free(job->requests);
  free(job->waves);
  free(job->rms);
  free(job->errors);
  free(job);
}

/* called with the lock held: takes job out of the FIFO (it may be anywhere in it) */
static void queue_remove(cc_prefetch_job *job) {
  cc_prefetch_job *prev = NULL;
  for (cc_prefetch_job *j = pool.head; j; prev = j, j = j->queue_next) {
    if (j != job) continue;
    if (prev) prev->queue_next = j->queue_next;
    else pool.head = j->queue_next;
    if (pool.tail == j) pool.tail = prev;
    j->queue_next = NULL;
    return;
  }
}

/* decodes request i of job into its slots; runs without the lock (only this worker touches slot i) */
static void decode_request(cc_prefetch_job *job, int i) {
  const cc_read_request *r = &job->requests[i];
  cc_set_error("%s", "");
  cc_tensor *wave = cc_audio_load(r->path, r->offset, r->duration, r->sr, r->mono, NULL);
  if (!wave) {
    job->errors[i] = copy_string(cc_last_error());
    if (!job->errors[i]) job->errors[i] = copy_string("audio prefetch: out of memory"); /* may stay NULL */
    return;
  }
  const float *x = cc_data_ptr(wave); /* a fresh contiguous float32 tensor */
  int64_t n = cc_numel(wave);
  double sum_sq = 0;
  for (int64_t k = 0; k < n; k++) sum_sq += (double)x[k] * (double)x[k];
  job->rms[i] = n > 0 ? sqrt(sum_sq / (double)n) : 0.0;
  job->waves[i] = wave;
}

static void *worker_main(void *unused) {
  (void)unused;
#ifdef _OPENMP
  omp_set_num_threads(1); /* a decode must not start an OpenMP team of its own */
#endif
  pthread_mutex_lock(&pool.lock);
  pool.ready++;
  pthread_cond_broadcast(&pool.worker_ready);
  for (;;) {
    while (!pool.head) pthread_cond_wait(&pool.work_available, &pool.lock);
    cc_prefetch_job *job = pool.head;
    int i = job->next++;
    if (job->next == job->n) queue_remove(job);
    pthread_mutex_unlock(&pool.lock);

    decode_request(job, i);

    pthread_mutex_lock(&pool.lock);
    job->finished++;
    bool free_now = false;
    if (job->finished == job->n) {
      if (job->released) free_now = true;
      else pthread_cond_broadcast(&pool.job_finished);
    }
    if (free_now) { /* nobody else can reach the job any more */
      pthread_mutex_unlock(&pool.lock);
      job_free(job);
      pthread_mutex_lock(&pool.lock);
    }
  }
  return NULL;
}

/* called with the lock held */
static int grow_pool(int workers) {
  if (workers > PREFETCH_MAX_WORKERS) workers = PREFETCH_MAX_WORKERS;
  pthread_attr_t attr;
  if (pthread_attr_init(&attr)) return pool.workers;
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  sigset_t all, old;
  sigfillset(&all);
  pthread_sigmask(SIG_SETMASK, &all, &old); /* the new thread inherits the mask: no signals */
  while (pool.workers < workers) {
    pthread_t thread;
    if (pthread_create(&thread, &attr, worker_main, NULL)) break;
    pool.workers++;
  }
  pthread_sigmask(SIG_SETMASK, &old, NULL);
  pthread_attr_destroy(&attr);
  while (pool.ready < pool.workers) pthread_cond_wait(&pool.worker_ready, &pool.lock);
  return pool.workers;
}

int cc_prefetch_start(int workers) {
  if (workers < 1) {
    cc_set_error("audio prefetch: the pool needs at least one worker (got %d)", workers);
    return -1;
  }
  pthread_mutex_lock(&pool.lock);
  int have = grow_pool(workers);
  pthread_mutex_unlock(&pool.lock);
  if (have < 1) {
    cc_set_error("audio prefetch: cannot start a worker thread");
    return -1;
  }
  return have;
}

cc_prefetch_job *cc_prefetch_submit(const cc_read_request *requests, int n) {
  cc_prefetch_job *job = NULL;
  CC_CHECK(n >= 0 && (n == 0 || requests), "audio prefetch: %d requests", n);
  for (int i = 0; i < n; i++) {
    const cc_read_request *r = &requests[i];
    CC_CHECK(r->path, "audio prefetch: request %d has no path", i + 1);
    CC_CHECK(isfinite(r->offset) && r->offset >= 0, "audio prefetch: request %d ('%s'): the offset must be a "
             "non-negative number of seconds", i + 1, r->path);
    CC_CHECK(isfinite(r->duration), "audio prefetch: request %d ('%s'): the duration must be finite", i + 1, r->path);
  }
  job = calloc(1, sizeof *job);
  CC_CHECK(job, "audio prefetch: out of memory");
  job->n = n;
  size_t slots = n > 0 ? (size_t)n : 1;
  job->requests = calloc(slots, sizeof *job->requests);
  job->waves = calloc(slots, sizeof *job->waves);
  job->rms = calloc(slots, sizeof *job->rms);
  job->errors = calloc(slots, sizeof *job->errors);
  CC_CHECK(job->requests && job->waves && job->rms && job->errors, "audio prefetch: out of memory");
  for (int i = 0; i < n; i++) {
    job->requests[i] = requests[i];
    job->requests[i].path = copy_string(requests[i].path);
    CC_CHECK(job->requests[i].path, "audio prefetch: out of memory");
  }
  if (n == 0) return job; /* done already */

  pthread_mutex_lock(&pool.lock);
  if (pool.workers == 0 && grow_pool(PREFETCH_DEFAULT_WORKERS) == 0) {
    pthread_mutex_unlock(&pool.lock);
    CC_CHECK(0, "audio prefetch: cannot start a worker thread");
  }
  if (pool.tail) pool.tail->queue_next = job;
  else pool.head = job;
  pool.tail = job;
  pthread_cond_broadcast(&pool.work_available);
  pthread_mutex_unlock(&pool.lock);
  return job;
fail:
  job_free(job);
  return NULL;
}

int cc_prefetch_count(const cc_prefetch_job *job) { return job ? job->n : 0; }

bool cc_prefetch_ready(cc_prefetch_job *job) {
  pthread_mutex_lock(&pool.lock);
  bool ready = job->finished == job->n;
  pthread_mutex_unlock(&pool.lock);
  return ready;
}

int cc_prefetch_wait(cc_prefetch_job *job) {
  pthread_mutex_lock(&pool.lock);
  while (job->finished < job->n) pthread_cond_wait(&pool.job_finished, &pool.lock);
  pthread_mutex_unlock(&pool.lock);
  for (int i = 0; i < job->n; i++)
    if (!job->waves[i]) {
      if (job->errors[i]) cc_set_error("%s", job->errors[i]);
      else cc_set_error("audio prefetch: request %d ('%s') failed (out of memory)", i + 1, job->requests[i].path);
      return -1;
    }
  job->waited = true;
  return 0;
}

cc_tensor *cc_prefetch_take(cc_prefetch_job *job, int i, double *rms) {
  if (i < 0 || i >= job->n) {
    cc_set_error("audio prefetch: request %d of %d", i + 1, job->n);
    return NULL;
  }
  if (!job->waited) {
    cc_set_error("audio prefetch: take before a successful wait");
    return NULL;
  }
  cc_tensor *wave = job->waves[i];
  if (!wave) {
    cc_set_error("audio prefetch: the wave of request %d was already taken", i + 1);
    return NULL;
  }
  job->waves[i] = NULL;
  if (rms) *rms = job->rms[i];
  return wave;
}

void cc_prefetch_release(cc_prefetch_job *job) {
  if (!job) return;
  pthread_mutex_lock(&pool.lock);
  if (job->next < job->n) { /* cancel what no worker has started */
    queue_remove(job);
    job->finished += job->n - job->next;
    job->next = job->n;
  }
  job->released = true;
  bool free_now = job->finished == job->n; /* else the last worker frees it */
  pthread_mutex_unlock(&pool.lock);
  if (free_now) job_free(job);
}
