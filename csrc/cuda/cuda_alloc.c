/* cuda_alloc.c — device memory through a caching allocator, and host <-> device transfers through
 * pinned staging buffers.
 *
 * Allocator: a request is rounded up (512 bytes below 1 MiB, then 1/8 of its power of two, so at
 * most 12.5% is lost) and served from the free list of that rounded size; only a miss calls
 * cudaMalloc. A freed block goes back on its list at once: all work of the backend is queued on one
 * stream, so whatever reuses the block runs after whatever used it. On an out-of-memory the cached
 * blocks are released and the cudaMalloc retried. Statistics: bytes allocated (in use) and cached
 * (free, kept), their peaks, cudaMalloc / cudaFree calls, requests and cache hits.
 *
 * Transfers: two pinned buffers of 8 MiB, used in turn (an event says when the DMA from or to a buffer
 * is over), so the host-side memcpy of one chunk overlaps the DMA of the other. Host -> device returns
 * once the data is staged; device -> host returns once the data is in place.
 */
#include "cuda_internal.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>

#define SMALL_LIMIT ((size_t)1 << 20)
#define NBUCKETS 4096 /* distinct rounded sizes kept (open addressing) */

typedef struct {
  size_t size; /* 0: empty slot */
  void **ptrs;
  int n, cap;
} bucket;

static bucket buckets[NBUCKETS];
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int64_t st_allocated, st_cached, st_peak_allocated, st_peak_reserved;
static int64_t st_mallocs, st_frees, st_requests, st_hits, st_pinned;

static size_t rounded(size_t n) {
  if (n < 512) return 512;
  if (n <= SMALL_LIMIT) return (n + 511) & ~(size_t)511;
  size_t p = SMALL_LIMIT;
  while (p <= n / 2) p *= 2; /* p <= n < 2p */
  size_t g = p / 8;
  return (n + g - 1) / g * g;
}

static bucket *find_bucket(size_t size, int create) {
  size_t h = (size / 512) * 2654435761u % NBUCKETS;
  for (int probe = 0; probe < NBUCKETS; probe++) {
    bucket *b = &buckets[(h + (size_t)probe) % NBUCKETS];
    if (b->size == size) return b;
    if (b->size == 0) {
      if (!create) return NULL;
      b->size = size;
      return b;
    }
  }
  return NULL;
}

static void note_peaks(void) {
  if (st_allocated > st_peak_allocated) st_peak_allocated = st_allocated;
  if (st_allocated + st_cached > st_peak_reserved) st_peak_reserved = st_allocated + st_cached;
}

/* frees every cached block; lock held */
static void release_cached(void) {
  for (int k = 0; k < NBUCKETS; k++) {
    bucket *b = &buckets[k];
    for (int i = 0; i < b->n; i++) {
      (void)cudaFree(b->ptrs[i]);
      st_frees++;
      st_cached -= (int64_t)b->size;
    }
    b->n = 0;
  }
  (void)cudaGetLastError();
}

void *cc_cuda_malloc(size_t nbytes) {
  size_t size = rounded(nbytes);
  void *p = NULL;
  pthread_mutex_lock(&lock);
  st_requests++;
  bucket *b = find_bucket(size, 0);
  if (b && b->n > 0) {
    p = b->ptrs[--b->n];
    st_cached -= (int64_t)size;
    st_hits++;
  } else {
    cudaError_t e = cudaMalloc(&p, size);
    if (e == cudaErrorMemoryAllocation) { /* give the cache back and try once more */
      (void)cudaGetLastError();
      release_cached();
      e = cudaMalloc(&p, size);
    }
    if (e != cudaSuccess) {
      char what[160];
      snprintf(what, sizeof what, "cudaMalloc of %zu bytes (%lld in use, %lld cached)", size,
               (long long)st_allocated, (long long)st_cached);
      cc_cuda_fail(e, what);
      pthread_mutex_unlock(&lock);
      return NULL;
    }
    st_mallocs++;
  }
  st_allocated += (int64_t)size;
  note_peaks();
  pthread_mutex_unlock(&lock);
  return p;
}

void cc_cuda_free(void *ptr, size_t nbytes) {
  if (!ptr) return;
  size_t size = rounded(nbytes);
  pthread_mutex_lock(&lock);
  st_allocated -= (int64_t)size;
  bucket *b = find_bucket(size, 1);
  if (b && b->n == b->cap) {
    int cap = b->cap ? 2 * b->cap : 8;
    void **grown = realloc(b->ptrs, (size_t)cap * sizeof *grown);
    if (grown) {
      b->ptrs = grown;
      b->cap = cap;
    }
  }
  if (b && b->n < b->cap) {
    b->ptrs[b->n++] = ptr;
    st_cached += (int64_t)size;
  } else { /* no room to keep it */
    (void)cudaFree(ptr);
    (void)cudaGetLastError();
    st_frees++;
  }
  pthread_mutex_unlock(&lock);
}

int cc_cuda_scratch(size_t nbytes, void **ptr) {
  *ptr = NULL;
  if (nbytes == 0) return 0;
  *ptr = cc_cuda_malloc(nbytes);
  return *ptr ? 0 : -1;
}

void cc_cuda_scratch_free(void *ptr, size_t nbytes) {
  if (ptr) cc_cuda_free(ptr, nbytes);
}

/* ---- pinned staging ---- */
#define STAGE_BYTES ((size_t)8 << 20)
static pthread_mutex_t stage_lock = PTHREAD_MUTEX_INITIALIZER;
static void *stage[2];
static cudaEvent_t stage_done[2];
static int stage_state; /* 0 not tried, 1 ready, -1 unavailable (plain copies) */

/* lock held */
static int stage_ready(void) {
  if (stage_state) return stage_state > 0;
  stage_state = -1;
  for (int k = 0; k < 2; k++) {
    if (cudaHostAlloc(&stage[k], STAGE_BYTES, cudaHostAllocDefault) != cudaSuccess ||
        cudaEventCreateWithFlags(&stage_done[k], cudaEventDisableTiming) != cudaSuccess) {
      (void)cudaGetLastError();
      for (int j = 0; j <= k; j++) {
        if (stage[j]) (void)cudaFreeHost(stage[j]);
        stage[j] = NULL;
      }
      return 0;
    }
    (void)cudaEventRecord(stage_done[k], cc_cuda_stream()); /* "free" from the start */
  }
  st_pinned = 2 * (int64_t)STAGE_BYTES;
  stage_state = 1;
  return 1;
}

static int copy_h2d(char *dst, const char *src, size_t n, cudaStream_t s) {
  if (!stage_ready()) {
    if (CC_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyHostToDevice, s))) return -1;
    return CC_CUDA_CHECK(cudaStreamSynchronize(s)); /* the source may go away after we return */
  }
  for (size_t off = 0, chunk = 0; off < n; off += STAGE_BYTES, chunk++) {
    int k = (int)(chunk & 1);
    size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
    if (CC_CUDA_CHECK(cudaEventSynchronize(stage_done[k]))) return -1; /* its last DMA is over */
    memcpy(stage[k], src + off, len);
    if (CC_CUDA_CHECK(cudaMemcpyAsync(dst + off, stage[k], len, cudaMemcpyHostToDevice, s)) ||
        CC_CUDA_CHECK(cudaEventRecord(stage_done[k], s)))
      return -1;
  }
  return 0;
}

static int copy_d2h(char *dst, const char *src, size_t n, cudaStream_t s) {
  if (!stage_ready()) {
    if (CC_CUDA_CHECK(cudaMemcpyAsync(dst, src, n, cudaMemcpyDeviceToHost, s))) return -1;
    return CC_CUDA_CHECK(cudaStreamSynchronize(s));
  }
  int pending = -1;
  size_t pend_off = 0, pend_len = 0;
  for (size_t off = 0, chunk = 0; off < n; off += STAGE_BYTES, chunk++) {
    int k = (int)(chunk & 1); /* drained when it was the pending buffer one round ago */
    size_t len = n - off < STAGE_BYTES ? n - off : STAGE_BYTES;
    if (CC_CUDA_CHECK(cudaMemcpyAsync(stage[k], src + off, len, cudaMemcpyDeviceToHost, s)) ||
        CC_CUDA_CHECK(cudaEventRecord(stage_done[k], s)))
      return -1;
    if (pending >= 0) {
      if (CC_CUDA_CHECK(cudaEventSynchronize(stage_done[pending]))) return -1;
      memcpy(dst + pend_off, stage[pending], pend_len);
    }
    pending = k;
    pend_off = off;
    pend_len = len;
  }
  if (pending >= 0) {
    if (CC_CUDA_CHECK(cudaEventSynchronize(stage_done[pending]))) return -1;
    memcpy(dst + pend_off, stage[pending], pend_len);
  }
  return 0;
}

int cc_cuda_copy(void *dst, int dst_device, const void *src, int src_device, size_t nbytes) {
  if (cc_cuda_ready()) return -1;
  if (nbytes == 0) return 0;
  cudaStream_t s = cc_cuda_stream();
  if (dst_device == CC_CUDA && src_device == CC_CUDA)
    return CC_CUDA_CHECK(cudaMemcpyAsync(dst, src, nbytes, cudaMemcpyDeviceToDevice, s));
  if (dst_device != CC_CUDA && src_device != CC_CUDA) {
    cc_set_error("cuda copy: neither side is a CUDA buffer");
    return -1;
  }
  pthread_mutex_lock(&stage_lock);
  int rc = dst_device == CC_CUDA ? copy_h2d(dst, src, nbytes, s) : copy_d2h(dst, src, nbytes, s);
  pthread_mutex_unlock(&stage_lock);
  return rc;
}

void cc_cuda_alloc_empty_cache(void) {
  pthread_mutex_lock(&lock);
  release_cached();
  pthread_mutex_unlock(&lock);
}

int cc_cuda_alloc_stats(const char **names, int64_t *values, int max) {
  pthread_mutex_lock(&lock);
  const char *n[] = {"allocated_bytes", "cached_bytes", "reserved_bytes", "peak_allocated_bytes",
                     "peak_reserved_bytes", "num_cuda_malloc", "num_cuda_free", "num_alloc_requests",
                     "num_cache_hits", "pinned_bytes"};
  int64_t v[] = {st_allocated, st_cached, st_allocated + st_cached, st_peak_allocated, st_peak_reserved,
                 st_mallocs, st_frees, st_requests, st_hits, st_pinned};
  pthread_mutex_unlock(&lock);
  int count = (int)(sizeof v / sizeof v[0]);
  if (count > max) count = max;
  for (int k = 0; k < count; k++) {
    names[k] = n[k];
    values[k] = v[k];
  }
  return count;
}

void cc_cuda_alloc_reset_peak(void) {
  pthread_mutex_lock(&lock);
  st_peak_allocated = st_allocated;
  st_peak_reserved = st_allocated + st_cached;
  pthread_mutex_unlock(&lock);
}
