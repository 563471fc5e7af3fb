/* storage.c — refcounted storage allocated through the device registry, with live counters
 * (tensors and bytes per device) that tests and the Lua GC nudging read. */
#include "internal.h"

#include <pthread.h>
#include <stdlib.h>

static atomic_llong live_bytes[CC_NUM_DEVICES];
static atomic_llong total_bytes;
atomic_llong cc_live_tensor_count;

int64_t cc_live_bytes(int device) {
  if (device < 0 || device >= CC_NUM_DEVICES) return 0;
  return (int64_t)atomic_load(&live_bytes[device]);
}
int64_t cc_total_allocated_bytes(void) { return (int64_t)atomic_load(&total_bytes); }
int64_t cc_live_tensors(void) { return (int64_t)atomic_load(&cc_live_tensor_count); }

cc_storage *cc_storage_new(size_t nbytes, int device) {
  const cc_device_ops *ops = cc_device_get(device);
  if (!ops) {
    cc_set_error("device %s is not available in this build or on this machine", cc_device_name(device));
    return NULL;
  }
  cc_storage *s = calloc(1, sizeof *s);
  if (!s) {
    cc_set_error("out of host memory");
    return NULL;
  }
  s->data = ops->alloc(nbytes ? nbytes : 1);
  if (!s->data) {
    free(s);
    if (!cc_last_error()[0]) cc_set_error("out of memory allocating %zu bytes on %s", nbytes, ops->name);
    return NULL;
  }
  s->nbytes = nbytes;
  s->device = device;
  s->refcount = 1;
  atomic_fetch_add(&live_bytes[device], (long long)nbytes);
  atomic_fetch_add(&total_bytes, (long long)nbytes);
  return s;
}

void cc_storage_release(cc_storage *s) {
  if (!s) return;
  if (__atomic_sub_fetch(&s->refcount, 1, __ATOMIC_ACQ_REL) > 0) return;
  const cc_device_ops *ops = cc_device_get(s->device);
  if (ops) ops->free(s->data, s->nbytes);
  atomic_fetch_sub(&live_bytes[s->device], (long long)s->nbytes);
  free(s);
}

/* ---- the CPU device ----
 * Large blocks (>= 1 MiB) are cached after release and reused for a request of the same rounded
 * size: fresh large allocations are mmap'ed by the C library and every page faults on first touch,
 * which costs as much as the kernels that fill them. The cache holds at most CPU_CACHE_LIMIT bytes;
 * cc_empty_cache() returns it to the system. */
#define CPU_CACHE_MIN ((size_t)1 << 20)
#define CPU_CACHE_SLOTS 256
static size_t cpu_cache_limit = (size_t)2 << 30;
static struct {
  void *ptr;
  size_t size;
} cpu_cache[CPU_CACHE_SLOTS];
static int cpu_cache_count;
static size_t cpu_cache_bytes;
static pthread_mutex_t cpu_cache_lock = PTHREAD_MUTEX_INITIALIZER;

static size_t cpu_rounded(size_t nbytes) {
  if (nbytes < CPU_CACHE_MIN) return (nbytes + 63) & ~(size_t)63;
  size_t step = nbytes >> 4; /* round up to 1/16 of the size (power-of-two granularity) */
  size_t g = CPU_CACHE_MIN >> 4;
  while (g < step) g <<= 1;
  return (nbytes + g - 1) & ~(g - 1);
}

static void *cpu_alloc(size_t nbytes) {
  size_t rounded = cpu_rounded(nbytes);
  if (rounded >= CPU_CACHE_MIN) {
    pthread_mutex_lock(&cpu_cache_lock);
    for (int k = 0; k < cpu_cache_count; k++)
      if (cpu_cache[k].size == rounded) {
        void *p = cpu_cache[k].ptr;
        cpu_cache[k] = cpu_cache[--cpu_cache_count];
        cpu_cache_bytes -= rounded;
        pthread_mutex_unlock(&cpu_cache_lock);
        return p;
      }
    pthread_mutex_unlock(&cpu_cache_lock);
  }
  void *p = NULL;
  if (posix_memalign(&p, 64, rounded)) {
    cc_empty_cache();
    if (posix_memalign(&p, 64, rounded)) {
      cc_set_error("out of host memory allocating %zu bytes", nbytes);
      return NULL;
    }
  }
  return p;
}

static void cpu_free(void *p, size_t nbytes) {
  size_t rounded = cpu_rounded(nbytes);
  if (rounded >= CPU_CACHE_MIN) {
    pthread_mutex_lock(&cpu_cache_lock);
    if (cpu_cache_count < CPU_CACHE_SLOTS && cpu_cache_bytes + rounded <= cpu_cache_limit) {
      cpu_cache[cpu_cache_count].ptr = p;
      cpu_cache[cpu_cache_count++].size = rounded;
      cpu_cache_bytes += rounded;
      p = NULL;
    }
    pthread_mutex_unlock(&cpu_cache_lock);
  }
  free(p);
}

void cc_empty_cache(void) {
  pthread_mutex_lock(&cpu_cache_lock);
  for (int k = 0; k < cpu_cache_count; k++) free(cpu_cache[k].ptr);
  cpu_cache_count = 0;
  cpu_cache_bytes = 0;
  pthread_mutex_unlock(&cpu_cache_lock);
}

int64_t cc_cached_bytes(void) {
  pthread_mutex_lock(&cpu_cache_lock);
  int64_t n = (int64_t)cpu_cache_bytes;
  pthread_mutex_unlock(&cpu_cache_lock);
  return n;
}
static int cpu_copy(void *dst, int dst_device, const void *src, int src_device, size_t nbytes) {
  if (dst_device != CC_CPU || src_device != CC_CPU) {
    cc_set_error("the CPU device cannot copy to or from another device");
    return -1;
  }
  memmove(dst, src, nbytes);
  return 0;
}
static int cpu_sync(void) { return 0; }

const cc_device_ops cc_cpu_device_ops = {"cpu", cpu_alloc, cpu_free, cpu_copy, cpu_sync};
