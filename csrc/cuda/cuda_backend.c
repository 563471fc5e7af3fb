/* cuda_backend.c — the CUDA backend's entry point and state: cc_cuda_backend_init (called by cc_init
 * through a weak reference) registers the CUDA device and its kernels only when a device is usable,
 * and otherwise records the CUDA error that says why, for the Lua error of t:cuda(). Device setup
 * (context, the one stream) is lazy: requiring cocola on a GPU machine costs one device query.
 * Also the queries and settings of cc_cuda.h: synchronize, memory stats, TF32, bf16 autocast, timing events.
 *
 * One device (device 0) and one stream: every kernel, copy, cuBLAS and cuDNN call is queued on it,
 * which is what makes the caching allocator's immediate reuse of freed blocks safe.
 */
#include "cuda_internal.h"

#include <cuda_profiler_api.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

static int device_count;
static char init_error[320];    /* why the backend did not register ("" when it did) */
static int registered;
static char device_name[256];

static pthread_mutex_t ready_lock = PTHREAD_MUTEX_INITIALIZER;
static volatile int ready_state; /* 0 not yet, 1 ready, -1 failed for good */
static char ready_error[512];
static cudaStream_t stream;

static int tf32_enabled;
static int autocast_bf16;

int cc_cuda_fail(cudaError_t e, const char *what) {
  cc_set_error("CUDA error %s (%s) in %s", cudaGetErrorName(e), cudaGetErrorString(e), what);
  (void)cudaGetLastError(); /* clears the error unless it is sticky */
  return -1;
}

/* ---- device setup ---- */
int cc_cuda_ready(void) {
  if (ready_state == 1) return 0;
  pthread_mutex_lock(&ready_lock);
  if (ready_state == 0) {
    struct cudaDeviceProp prop;
    if (CC_CUDA_CHECK(cudaSetDevice(0)) || CC_CUDA_CHECK(cudaStreamCreateWithFlags(&stream, cudaStreamDefault))) {
      snprintf(ready_error, sizeof ready_error, "CUDA device setup failed: %s", cc_last_error());
      ready_state = -1;
    } else {
      if (cudaGetDeviceProperties(&prop, 0) == cudaSuccess) {
        snprintf(device_name, sizeof device_name, "%s", prop.name);
      } else {
        (void)cudaGetLastError();
      }
      ready_state = 1;
    }
  }
  int rc = ready_state == 1 ? 0 : -1;
  if (rc) cc_set_error("%s", ready_error);
  pthread_mutex_unlock(&ready_lock);
  return rc;
}

cudaStream_t cc_cuda_stream(void) { return stream; }

/* ---- the device of the registry ---- */
static void *cuda_alloc(size_t nbytes) {
  if (cc_cuda_ready()) return NULL;
  return cc_cuda_malloc(nbytes);
}

static void cuda_free(void *ptr, size_t nbytes) { cc_cuda_free(ptr, nbytes); }

static int cuda_sync(void) {
  if (cc_cuda_ready()) return -1;
  return CC_CUDA_CHECK(cudaStreamSynchronize(stream));
}

static const cc_device_ops cuda_device_ops = {"cuda", cuda_alloc, cuda_free, cc_cuda_copy, cuda_sync};

int cc_cuda_backend_init(void) {
  static int done = 0;
  if (done) return registered ? 0 : -1;
  done = 1;
  const char *off = getenv("COCOLA_DISABLE_CUDA");
  if (off && off[0] && strcmp(off, "0") != 0) {
    snprintf(init_error, sizeof init_error, "the CUDA backend is disabled by COCOLA_DISABLE_CUDA=%s", off);
    return -1;
  }
  int n = 0;
  cudaError_t e = cudaGetDeviceCount(&n); /* without a driver: cudaErrorInsufficientDriver, n unwritten */
  if (e == cudaSuccess && n <= 0) e = cudaErrorNoDevice;
  if (e != cudaSuccess) {
    snprintf(init_error, sizeof init_error, "%s: %s", cudaGetErrorName(e), cudaGetErrorString(e));
    (void)cudaGetLastError();
    device_count = 0;
    return -1;
  }
  device_count = n;
  cc_register_device(CC_CUDA, &cuda_device_ops);
  cc_cuda_register_ops();
  cc_cuda_register_blas();
  cc_cuda_register_dnn();
  registered = 1;
  init_error[0] = 0;
  return 0;
}

/* ---- queries and settings (cc_cuda.h) ---- */
const char *cc_cuda_init_error(void) { return registered ? NULL : (init_error[0] ? init_error : "not initialised"); }

int cc_cuda_device_count(void) { return registered ? device_count : 0; }

const char *cc_cuda_device_name(void) {
  if (registered) (void)cc_cuda_ready();
  return device_name;
}

int cc_cuda_synchronize(void) {
  if (!registered) return 0;
  return cuda_sync();
}

int cc_cuda_profiler(int start) {
  if (!registered) {
    cc_set_error("cuda profiler: CUDA is not available (%s)", cc_cuda_init_error());
    return -1;
  }
  if (cuda_sync()) return -1; /* the capture range holds exactly the work queued in between */
  return CC_CUDA_CHECK(start ? cudaProfilerStart() : cudaProfilerStop());
}

int cc_cuda_memory_stats(const char **names, int64_t *values, int max) {
  return cc_cuda_alloc_stats(names, values, max);
}

void cc_cuda_reset_peak_memory_stats(void) { cc_cuda_alloc_reset_peak(); }

void cc_cuda_empty_cache(void) {
  if (registered && ready_state == 1) cc_cuda_alloc_empty_cache();
}

void cc_cuda_set_tf32(int enabled) { tf32_enabled = enabled != 0; }
int cc_cuda_get_tf32(void) { return tf32_enabled; }
int cc_cuda_tf32(void) { return tf32_enabled; }

void cc_cuda_set_autocast_bf16(int enabled) { autocast_bf16 = enabled != 0; }
int cc_cuda_get_autocast_bf16(void) { return autocast_bf16; }
int cc_cuda_bf16(const cc_tensor *t) { return autocast_bf16 && t->dtype == CC_FLOAT32; }

int cc_cuda_bf16_copy(const cc_tensor *t, void **copy, size_t *bytes) {
  int64_t n = cc_numel(t);
  *copy = NULL;
  *bytes = (size_t)n * 2;
  if (t->dtype != CC_FLOAT32 || !cc_is_contiguous(t)) {
    cc_set_error("bf16 autocast: internal error, operand not contiguous float32");
    return -1;
  }
  if (cc_cuda_scratch(*bytes, copy)) return -1;
  if (cc_cuda_check(cck_float_to_bf16(*copy, cc_data_ptr(t), n, cc_cuda_stream()), "bf16 autocast copy")) {
    cc_cuda_scratch_free(*copy, *bytes);
    *copy = NULL;
    return -1;
  }
  return 0;
}

/* ---- events ---- */
#define MAX_EVENTS 1024
static cudaEvent_t events[MAX_EVENTS];
static unsigned char event_used[MAX_EVENTS];

int cc_cuda_event_new(void) {
  if (!registered) {
    cc_set_error("CUDA is not available (%s)", cc_cuda_init_error());
    return -1;
  }
  if (cc_cuda_ready()) return -1;
  for (int k = 0; k < MAX_EVENTS; k++)
    if (!event_used[k]) {
      if (CC_CUDA_CHECK(cudaEventCreate(&events[k]))) return -1;
      event_used[k] = 1;
      return k;
    }
  cc_set_error("too many live CUDA events (%d)", MAX_EVENTS);
  return -1;
}

static int event_ok(int k) {
  if (k < 0 || k >= MAX_EVENTS || !event_used[k]) {
    cc_set_error("not a live CUDA event: %d", k);
    return 0;
  }
  return 1;
}

int cc_cuda_event_record(int k) {
  if (!event_ok(k)) return -1;
  return CC_CUDA_CHECK(cudaEventRecord(events[k], stream));
}

int cc_cuda_event_synchronize(int k) {
  if (!event_ok(k)) return -1;
  return CC_CUDA_CHECK(cudaEventSynchronize(events[k]));
}

double cc_cuda_event_elapsed_ms(int start, int end) {
  if (!event_ok(start) || !event_ok(end)) return -1;
  float ms = 0;
  if (CC_CUDA_CHECK(cudaEventSynchronize(events[end])) ||
      CC_CUDA_CHECK(cudaEventElapsedTime(&ms, events[start], events[end])))
    return -1;
  return ms;
}

void cc_cuda_event_free(int k) {
  if (k < 0 || k >= MAX_EVENTS || !event_used[k]) return;
  (void)cudaEventDestroy(events[k]);
  event_used[k] = 0;
}
