/* storage.c — refcounted storage allocated through the device registry, with live counters
 * (tensors and bytes per device) that tests and the Lua GC nudging read. */
#include "internal.h"

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

/* ---- the CPU device ---- */
static void *cpu_alloc(size_t nbytes) {
  void *p = NULL;
  size_t rounded = (nbytes + 63) & ~(size_t)63;
  if (posix_memalign(&p, 64, rounded)) {
    cc_set_error("out of host memory allocating %zu bytes", nbytes);
    return NULL;
  }
  return p;
}
static void cpu_free(void *p, size_t nbytes) {
  (void)nbytes;
  free(p);
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
