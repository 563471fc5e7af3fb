/* util.c — errors (thread-local message), dtype facts, thread count, broadcasting and shape
 * strings: the small helpers every other file of the core uses. */
#include "internal.h"

#include <stdarg.h>
#include <stdio.h>
#ifdef _OPENMP
#include <omp.h>
#endif

static _Thread_local char last_error[1024];

const char *cc_last_error(void) { return last_error[0] ? last_error : "unknown error"; }

void cc_set_error(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(last_error, sizeof last_error, fmt, ap);
  va_end(ap);
}

size_t cc_dtype_size(cc_dtype dt) { return dt == CC_FLOAT32 ? 4 : 8; }

const char *cc_dtype_name(cc_dtype dt) {
  switch (dt) {
  case CC_FLOAT32: return "float32";
  case CC_FLOAT64: return "float64";
  case CC_INT64: return "int64";
  default: return "?";
  }
}

int cc_dtype_from_name(const char *name) {
  if (!strcmp(name, "float32") || !strcmp(name, "float")) return CC_FLOAT32;
  if (!strcmp(name, "float64") || !strcmp(name, "double")) return CC_FLOAT64;
  if (!strcmp(name, "int64") || !strcmp(name, "long")) return CC_INT64;
  return -1;
}

bool cc_is_floating(cc_dtype dt) { return dt == CC_FLOAT32 || dt == CC_FLOAT64; }

/* OpenBLAS keeps its own pool; set it too when the symbol exists (internal.h binds it weakly) */

/* With OpenMP the count is the calling thread's own setting (OpenMP keeps one per thread): a
 * prefetch worker, set to 1, sizes its loops and teams for one thread whatever the main thread set,
 * and reads nothing another thread writes. Without OpenMP one count for all, atomic. */
#ifndef _OPENMP
static atomic_int num_threads;
#endif

void cc_set_num_threads(int n) {
  if (n < 1) n = 1;
#ifdef _OPENMP
  omp_set_num_threads(n);
#else
  atomic_store_explicit(&num_threads, n, memory_order_relaxed);
#endif
  if (openblas_set_num_threads) openblas_set_num_threads(n);
}

const char *cc_blas_threading(bool *linked_openmp) {
#ifdef COCOLA_OPENBLAS_OPENMP
  if (linked_openmp) *linked_openmp = true;
#else
  if (linked_openmp) *linked_openmp = false;
#endif
  if (!openblas_get_parallel) return "unknown";
  switch (openblas_get_parallel()) {
  case 0: return "sequential";
  case 1: return "pthread";
  case 2: return "openmp";
  default: return "unknown";
  }
}

int cc_get_num_threads(void) {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  int n = atomic_load_explicit(&num_threads, memory_order_relaxed);
  return n > 0 ? n : 1;
#endif
}

int cc_normalize_dim(int dim, int ndim, const char *what) {
  int lo = ndim == 0 ? -1 : -ndim, hi = ndim == 0 ? 0 : ndim - 1;
  if (dim < lo || dim > hi) {
    cc_set_error("%s: dimension out of range (got %d, expected %d..%d for a %d-d tensor)",
                 what ? what : "dim", dim >= 0 ? dim + 1 : dim, lo, hi + 1, ndim);
    return -1;
  }
  return dim < 0 ? dim + (ndim == 0 ? 1 : ndim) : dim;
}

void cc_shape_str(int ndim, const int64_t *shape, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, n - used, "{");
  for (int d = 0; d < ndim && used < n; d++)
    used += (size_t)snprintf(buf + used, n - used, d ? ",%lld" : "%lld", (long long)shape[d]);
  if (used < n) snprintf(buf + used, n - used, "}");
}

int cc_broadcast_shapes(int na, const int64_t *sa, int nb, const int64_t *sb, int *nout, int64_t *out) {
  int n = na > nb ? na : nb;
  for (int i = 0; i < n; i++) {
    int ia = na - n + i, ib = nb - n + i;
    int64_t a = ia >= 0 ? sa[ia] : 1, b = ib >= 0 ? sb[ib] : 1;
    if (a != b && a != 1 && b != 1) {
      char s1[128], s2[128];
      cc_shape_str(na, sa, s1, sizeof s1);
      cc_shape_str(nb, sb, s2, sizeof s2);
      cc_set_error("shape mismatch: %s and %s cannot be broadcast (size %lld vs %lld at dim %d)", s1,
                   s2, (long long)a, (long long)b, i + 1);
      return -1;
    }
    out[i] = a == 1 ? b : a;
  }
  *nout = n;
  return 0;
}

int cc_check_same(const char *op, const cc_tensor *a, const cc_tensor *b) {
  if (a->dtype != b->dtype) {
    cc_set_error("%s: dtype mismatch (%s vs %s)", op, cc_dtype_name(a->dtype), cc_dtype_name(b->dtype));
    return -1;
  }
  if (a->storage->device != b->storage->device) {
    cc_set_error("%s: tensors on different devices (%s vs %s)", op, cc_device_name(a->storage->device),
                 cc_device_name(b->storage->device));
    return -1;
  }
  return 0;
}

int cc_check_floating(const char *op, const cc_tensor *t) {
  if (!cc_is_floating(t->dtype)) {
    cc_set_error("%s: expected a floating tensor (float32 or float64), got %s", op, cc_dtype_name(t->dtype));
    return -1;
  }
  return 0;
}
