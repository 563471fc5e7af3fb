/* cuda_nccl.c — NCCL collectives on CUDA tensors for cocola.distributed (one GPU per process; the
 * communicator's unique id travels over MPI, see csrc/lua/ldist.c). Built with the CUDA backend when
 * nccl.h and libnccl are found (COCOLA_HAVE_NCCL); every NCCL and CUDA call is checked and becomes
 * cc_set_error + -1. Collectives run on the backend's stream and are waited for against a deadline:
 * when it passes, the communicator is aborted (ncclCommAbort: the collective returns) and the error
 * says that a rank did not join in time. */
#include "cuda_internal.h"

#ifdef COCOLA_HAVE_NCCL
#include <nccl.h>
#include <string.h>
#include <time.h>

static ncclComm_t g_comm;
static bool g_have_comm = false;
static double g_timeout = 300.0;
static int g_rank = 0;

static int nccl_fail(ncclResult_t r, const char *what) {
  cc_set_error("NCCL error %d (%s) in %s", (int)r, ncclGetErrorString(r), what);
  return -1;
}
#define NCCL_CHECK(expr)                                   \
  do {                                                     \
    ncclResult_t r_ = (expr);                              \
    if (r_ != ncclSuccess) return nccl_fail(r_, #expr);    \
  } while (0)

static double now_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

int cc_nccl_unique_id(char *out, size_t cap) {
  ncclUniqueId id;
  if (cap < sizeof id.internal) {
    cc_set_error("cc_nccl_unique_id: buffer of %zu bytes, %zu needed", cap, sizeof id.internal);
    return -1;
  }
  if (cc_cuda_ready()) return -1;
  NCCL_CHECK(ncclGetUniqueId(&id));
  memcpy(out, id.internal, sizeof id.internal);
  return (int)sizeof id.internal;
}

int cc_nccl_init(const char *id_bytes, size_t len, int rank, int size, double timeout) {
  ncclUniqueId id;
  if (len != sizeof id.internal) {
    cc_set_error("cc_nccl_init: the unique id has %zu bytes, %zu expected", len, sizeof id.internal);
    return -1;
  }
  if (cc_cuda_ready()) return -1;
  memcpy(id.internal, id_bytes, sizeof id.internal);
  if (g_have_comm) {
    NCCL_CHECK(ncclCommDestroy(g_comm));
    g_have_comm = false;
  }
  /* non-blocking communicator: init and collectives return at once and are polled with a deadline */
  ncclConfig_t config = NCCL_CONFIG_INITIALIZER;
  config.blocking = 0;
  ncclResult_t r = ncclCommInitRankConfig(&g_comm, size, id, rank, &config);
  if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, "ncclCommInitRankConfig");
  double deadline = now_s() + timeout;
  ncclResult_t state = ncclInProgress;
  while (state == ncclInProgress) {
    NCCL_CHECK(ncclCommGetAsyncError(g_comm, &state));
    if (state == ncclInProgress && now_s() > deadline) {
      (void)ncclCommAbort(g_comm); /* best effort: the error below is the one reported */
      cc_set_error("NCCL: rank %d: the communicator of %d ranks was not complete after %.0f s (a rank did not join)",
                   rank, size, timeout);
      return -1;
    }
  }
  if (state != ncclSuccess) return nccl_fail(state, "ncclCommInitRankConfig (async)");
  g_have_comm = true;
  g_timeout = timeout;
  g_rank = rank;
  return 0;
}

/* waits for the stream with the deadline; aborts the communicator when a rank does not join */
static int wait_done(const char *what) {
  double deadline = now_s() + g_timeout;
  for (;;) {
    ncclResult_t state = ncclSuccess;
    NCCL_CHECK(ncclCommGetAsyncError(g_comm, &state));
    if (state != ncclSuccess && state != ncclInProgress) {
      (void)ncclCommAbort(g_comm); /* best effort: the asynchronous error is the one reported */
      g_have_comm = false;
      return nccl_fail(state, what);
    }
    cudaError_t e = cudaStreamQuery(cc_cuda_stream());
    if (e == cudaSuccess) return 0;
    if (e != cudaErrorNotReady) return cc_cuda_fail(e, what);
    if (now_s() > deadline) {
      (void)ncclCommAbort(g_comm); /* best effort: the timeout is the error reported */
      g_have_comm = false;
      cc_set_error("NCCL: %s timed out on rank %d after %.0f s: another rank did not join", what, g_rank, g_timeout);
      return -1;
    }
    struct timespec ts = {0, 50000};
    nanosleep(&ts, NULL);
  }
}

static int check_ready(const cc_tensor *t, const char *what) {
  if (!g_have_comm) {
    cc_set_error("NCCL: %s before distributed.init{backend = \"nccl\"} (or after a failure)", what);
    return -1;
  }
  if (t->storage->device != CC_CUDA || !cc_is_contiguous(t)) {
    cc_set_error("NCCL: %s needs a contiguous CUDA tensor", what);
    return -1;
  }
  return 0;
}

static ncclDataType_t nccl_type(cc_dtype dt) {
  return dt == CC_FLOAT32 ? ncclFloat32 : dt == CC_FLOAT64 ? ncclFloat64 : ncclInt64;
}

/* op: 0 sum, 1 max, 2 min */
int cc_nccl_all_reduce(cc_tensor *t, int op) {
  if (check_ready(t, "all_reduce")) return -1;
  ncclRedOp_t o = op == 1 ? ncclMax : op == 2 ? ncclMin : ncclSum;
  void *p = cc_data_ptr(t);
  ncclResult_t r = ncclAllReduce(p, p, (size_t)cc_numel(t), nccl_type(t->dtype), o, g_comm, cc_cuda_stream());
  if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, "ncclAllReduce");
  return wait_done("all_reduce");
}

int cc_nccl_all_gather(cc_tensor *in, cc_tensor *out) {
  if (check_ready(in, "all_gather") || check_ready(out, "all_gather")) return -1;
  ncclResult_t r = ncclAllGather(cc_data_ptr(in), cc_data_ptr(out), (size_t)cc_numel(in), nccl_type(in->dtype), g_comm,
                                 cc_cuda_stream());
  if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, "ncclAllGather");
  return wait_done("all_gather");
}

int cc_nccl_broadcast(cc_tensor *t, int root) {
  if (check_ready(t, "broadcast")) return -1;
  void *p = cc_data_ptr(t);
  ncclResult_t r = ncclBroadcast(p, p, (size_t)cc_numel(t), nccl_type(t->dtype), root, g_comm, cc_cuda_stream());
  if (r != ncclSuccess && r != ncclInProgress) return nccl_fail(r, "ncclBroadcast");
  return wait_done("broadcast");
}
#endif
