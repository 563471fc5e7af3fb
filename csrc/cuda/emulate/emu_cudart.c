/* emu_cudart.c — a host stand-in for the part of the CUDA runtime the backend uses, for the
 * COCOLA_CUDA=EMULATE build only: "device" memory is host memory, streams and events are
 * immediate, and the kernels of kernels/ (compiled as host C++ with CCK_EMULATE) run item by item.
 * It exists to run the backend's host code and kernel bodies (spec/cuda_parity_spec.lua) on machines
 * without a GPU; it says nothing about timing or about the real driver.
 *
 * Knobs (environment): COCOLA_EMU_DEVICE_ERROR=<cudaError_t number> makes cudaGetDeviceCount fail
 * with it; COCOLA_EMU_MEMORY_LIMIT=<bytes> makes cudaMalloc fail with cudaErrorMemoryAllocation
 * beyond that many live bytes. Fresh "device" memory is filled with 0xff bytes (NaN floats), so a
 * kernel that reads what nobody wrote shows up in the comparisons.
 */
#include <cuda_runtime_api.h>

#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cudaError_t last_error = cudaSuccess;

static cudaError_t ret(cudaError_t e) {
  if (e != cudaSuccess) last_error = e;
  return e;
}

const char *cudaGetErrorName(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "cudaSuccess";
  case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
  case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
  case cudaErrorInsufficientDriver: return "cudaErrorInsufficientDriver";
  case cudaErrorNoDevice: return "cudaErrorNoDevice";
  case cudaErrorInvalidResourceHandle: return "cudaErrorInvalidResourceHandle";
  default: return "cudaErrorUnknown";
  }
}

const char *cudaGetErrorString(cudaError_t e) {
  switch (e) {
  case cudaSuccess: return "no error";
  case cudaErrorInvalidValue: return "invalid argument";
  case cudaErrorMemoryAllocation: return "out of memory";
  case cudaErrorInsufficientDriver: return "CUDA driver version is insufficient for CUDA runtime version";
  case cudaErrorNoDevice: return "no CUDA-capable device is detected";
  case cudaErrorInvalidResourceHandle: return "invalid resource handle";
  default: return "unknown error";
  }
}

cudaError_t cudaGetLastError(void) {
  cudaError_t e = last_error;
  last_error = cudaSuccess;
  return e;
}

cudaError_t cudaPeekAtLastError(void) { return last_error; }

cudaError_t cudaGetDeviceCount(int *count) {
  const char *err = getenv("COCOLA_EMU_DEVICE_ERROR");
  if (err && atoi(err) > 0) return ret((cudaError_t)atoi(err)); /* count left unwritten, as the real one */
  *count = 1;
  return cudaSuccess;
}

cudaError_t cudaSetDevice(int device) { return device == 0 ? cudaSuccess : ret(cudaErrorInvalidValue); }

cudaError_t cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
  if (device != 0) return ret(cudaErrorInvalidValue);
  memset(prop, 0, sizeof *prop);
  strncpy(prop->name, "cocola host emulation (COCOLA_CUDA=EMULATE)", sizeof prop->name - 1);
  return cudaSuccess;
}

cudaError_t cudaDeviceSynchronize(void) { return cudaSuccess; }
cudaError_t cudaProfilerStart(void) { return cudaSuccess; }
cudaError_t cudaProfilerStop(void) { return cudaSuccess; }

/* ---- memory ---- */
typedef struct {
  size_t size;
  size_t pad; /* keeps the payload 16-byte aligned */
} header;

static size_t live_bytes;

static size_t memory_limit(void) {
  const char *s = getenv("COCOLA_EMU_MEMORY_LIMIT");
  return s && *s ? (size_t)strtoull(s, NULL, 10) : SIZE_MAX;
}

cudaError_t cudaMalloc(void **ptr, size_t size) {
  if (!ptr) return ret(cudaErrorInvalidValue);
  if (live_bytes + size > memory_limit()) return ret(cudaErrorMemoryAllocation);
  header *h = malloc(sizeof(header) + (size ? size : 1));
  if (!h) return ret(cudaErrorMemoryAllocation);
  h->size = size;
  memset(h + 1, 0xff, size);
  live_bytes += size;
  *ptr = h + 1;
  return cudaSuccess;
}

cudaError_t cudaFree(void *ptr) {
  if (!ptr) return cudaSuccess;
  header *h = (header *)ptr - 1;
  live_bytes -= h->size;
  free(h);
  return cudaSuccess;
}

cudaError_t cudaHostAlloc(void **ptr, size_t size, unsigned int flags) {
  (void)flags;
  *ptr = malloc(size ? size : 1);
  return *ptr ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaFreeHost(void *ptr) {
  free(ptr);
  return cudaSuccess;
}

cudaError_t cudaMemcpyAsync(void *dst, const void *src, size_t count, enum cudaMemcpyKind kind, cudaStream_t s) {
  (void)kind;
  (void)s;
  if (count && (!dst || !src)) return ret(cudaErrorInvalidValue);
  memmove(dst, src, count);
  return cudaSuccess;
}

cudaError_t cudaMemsetAsync(void *dst, int value, size_t count, cudaStream_t s) {
  (void)s;
  if (count && !dst) return ret(cudaErrorInvalidValue);
  memset(dst, value, count);
  return cudaSuccess;
}

/* ---- streams and events: everything has already happened ---- */
struct CUstream_st {
  int dummy;
};
struct CUevent_st {
  double ms; /* host time when recorded */
  int recorded;
};

cudaError_t cudaStreamCreateWithFlags(cudaStream_t *s, unsigned int flags) {
  (void)flags;
  *s = calloc(1, sizeof(struct CUstream_st));
  return *s ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaStreamSynchronize(cudaStream_t s) {
  (void)s;
  return cudaSuccess;
}

cudaError_t cudaEventCreate(cudaEvent_t *e) {
  *e = calloc(1, sizeof(struct CUevent_st));
  return *e ? cudaSuccess : ret(cudaErrorMemoryAllocation);
}

cudaError_t cudaEventCreateWithFlags(cudaEvent_t *e, unsigned int flags) {
  (void)flags;
  return cudaEventCreate(e);
}

cudaError_t cudaEventRecord(cudaEvent_t e, cudaStream_t s) {
  (void)s;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  e->ms = (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
  e->recorded = 1;
  return cudaSuccess;
}

cudaError_t cudaEventSynchronize(cudaEvent_t e) {
  (void)e;
  return cudaSuccess;
}

cudaError_t cudaEventElapsedTime(float *ms, cudaEvent_t start, cudaEvent_t end) {
  if (!start->recorded || !end->recorded) return ret(cudaErrorInvalidResourceHandle);
  *ms = (float)(end->ms - start->ms);
  return cudaSuccess;
}

cudaError_t cudaEventDestroy(cudaEvent_t e) {
  free(e);
  return cudaSuccess;
}
