/* ldist.c — data-parallel collectives over MPI (Open MPI), bound for cocola.distributed.
 *
 * Built with MPI when CMake finds it (COCOLA_HAVE_MPI); without it every function but
 * _dist_available raises "built without MPI". Lua is the host: MPI is initialised by _dist_init
 * (MPI_Init_thread, MPI_THREAD_FUNNELED) and finalised at process exit (atexit), unless a
 * collective timed out: a timed-out collective cannot be cancelled, so MPI_Finalize would wait
 * for it forever; the process then exits without it and mpirun reports the rank's non-zero exit.
 *
 * MPI collectives have no timeout. Every collective here is the non-blocking one (MPI_Iallreduce,
 * MPI_Iallgather, MPI_Ibcast, MPI_Ibarrier) polled with MPI_Test against a deadline (the timeout of
 * _dist_init, or _dist_set_timeout); when it passes, a Lua error names the collective, the seconds
 * and the ranks that had not joined as far as this rank can tell. Before its data, every tensor
 * collective exchanges a small header (collective, dtype, shape, sequence number) with an
 * allgather, so that differing shapes are an error naming every rank's shape, not corrupt memory.
 * MPI errors are returned (MPI_ERRORS_RETURN), never fatal, and become Lua errors too. */
#include "lbind.h"
/* the optional CUDA backend's NCCL functions, bound weakly: NULL in a build without them */
#define CC_CUDA_API __attribute__((weak))
#include "cuda/cc_cuda.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* raises a Lua error with a printf-formatted message (no source position: it names the collective) */
static int dist_error(lua_State *L, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static int dist_error(lua_State *L, const char *fmt, ...) {
  char msg[2048];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  lua_pushstring(L, msg);
  return lua_error(L);
}

static int dist_available(lua_State *L) {
#ifdef COCOLA_HAVE_MPI
  lua_pushboolean(L, 1);
#else
  lua_pushboolean(L, 0);
#endif
  return 1;
}

#ifdef COCOLA_HAVE_MPI
#include <dlfcn.h>
#include <mpi.h>
#include <sched.h>
#include <time.h>

static int g_rank = 0, g_size = 1;
static double g_timeout = 300.0;
static bool g_inited_here = false, g_broken = false;
static int64_t g_seq = 0;
static char g_broken_why[256];

static void dist_atexit(void) {
  int fin = 0;
  if (!g_inited_here || g_broken) return;
  /* at exit there is no one to tell of a failed finalisation: its status is deliberately dropped */
  if (MPI_Finalized(&fin) == MPI_SUCCESS && !fin) (void)MPI_Finalize();
}

static int mpi_fail(lua_State *L, const char *what, int rc) {
  char text[MPI_MAX_ERROR_STRING];
  int len = 0;
  if (MPI_Error_string(rc, text, &len) != MPI_SUCCESS) snprintf(text, sizeof text, "MPI error %d", rc);
  return dist_error(L, "distributed: %s failed on rank %d: %s", what, g_rank, text);
}

#define MPI_CHECK(L, what, call)                     \
  do {                                               \
    int rc_ = (call);                                \
    if (rc_ != MPI_SUCCESS) return mpi_fail(L, what, rc_); \
  } while (0)

static void check_ready(lua_State *L, const char *what) {
  int inited = 0;
  if (MPI_Initialized(&inited) != MPI_SUCCESS || !inited)
    dist_error(L, "distributed: %s before distributed.init()", what);
  if (g_broken) dist_error(L, "distributed: %s after an earlier failure (%s); the process group cannot be used again", what, g_broken_why);
}

static void sleep_us(long us) {
  struct timespec ts = {0, us * 1000L};
  nanosleep(&ts, NULL);
}

/* waits for req until the deadline: 0 when complete; raises a Lua error on timeout or MPI error */
static int wait_deadline(lua_State *L, MPI_Request *req, const char *what) {
  double start = MPI_Wtime();
  long spins = 0;
  for (;;) {
    int done = 0;
    int rc = MPI_Test(req, &done, MPI_STATUS_IGNORE);
    if (rc != MPI_SUCCESS) {
      g_broken = true;
      snprintf(g_broken_why, sizeof g_broken_why, "%s failed", what);
      return mpi_fail(L, what, rc);
    }
    if (done) return 0;
    double waited = MPI_Wtime() - start;
    if (waited > g_timeout) {
      g_broken = true;
      snprintf(g_broken_why, sizeof g_broken_why, "%s timed out after %.0f s", what, g_timeout);
      return dist_error(L,
                        "distributed: %s timed out on rank %d after %.0f s: another rank of %d did not join "
                        "(it died, hangs, or runs a different collective); COCOLA_DIST_TIMEOUT or "
                        "distributed.init{timeout=} sets the limit",
                        what, g_rank, g_timeout, g_size);
    }
    /* MPI progresses a non-blocking collective inside MPI_Test: poll, yielding the core to the other
       ranks (oversubscribed machines), then sleep a little once the wait is long */
    ++spins;
    if (waited < 1.0) sched_yield();
    else sleep_us(waited > 10.0 ? 1000 : 100);
  }
}

static MPI_Datatype mpi_type(cc_dtype dt) {
  switch (dt) {
  case CC_FLOAT32: return MPI_FLOAT;
  case CC_FLOAT64: return MPI_DOUBLE;
  default: return MPI_INT64_T;
  }
}

enum { HDR_KIND, HDR_DTYPE, HDR_NDIM, HDR_SEQ, HDR_ROOT, HDR_SHAPE, HDR_LEN = HDR_SHAPE + CC_MAX_DIMS };
static const char *KIND_NAMES[] = {"all_reduce", "all_gather", "broadcast", "barrier"};

static void shape_text(const int64_t *h, char *buf, size_t n) {
  size_t used = 0;
  used += (size_t)snprintf(buf + used, n - used, "(");
  for (int64_t d = 0; d < h[HDR_NDIM] && d < CC_MAX_DIMS && used < n; d++)
    used += (size_t)snprintf(buf + used, n - used, "%s%lld", d ? ", " : "", (long long)h[HDR_SHAPE + d]);
  if (used < n) used += (size_t)snprintf(buf + used, n - used, ") %s", h[HDR_DTYPE] >= 0 && h[HDR_DTYPE] < CC_NUM_DTYPES ? cc_dtype_name((cc_dtype)h[HDR_DTYPE]) : "-");
}

/* exchanges the header of a collective; raises naming every rank's shape when they differ */
static void check_headers(lua_State *L, int kind, const cc_tensor *t, int root, const char *what) {
  int64_t mine[HDR_LEN] = {0};
  mine[HDR_KIND] = kind;
  mine[HDR_DTYPE] = t ? (int64_t)t->dtype : -1;
  mine[HDR_NDIM] = t ? t->ndim : 0;
  mine[HDR_SEQ] = g_seq++;
  mine[HDR_ROOT] = root;
  for (int d = 0; t && d < t->ndim; d++) mine[HDR_SHAPE + d] = t->shape[d];
  int64_t *all = malloc(sizeof(int64_t) * HDR_LEN * (size_t)g_size);
  if (!all) dist_error(L, "distributed: %s: out of host memory", what);
  MPI_Request req;
  int rc = MPI_Iallgather(mine, HDR_LEN, MPI_INT64_T, all, HDR_LEN, MPI_INT64_T, MPI_COMM_WORLD, &req);
  if (rc != MPI_SUCCESS) {
    free(all);
    mpi_fail(L, what, rc);
  }
  /* on timeout the buffer may still be written by MPI: it is leaked on purpose (the group is broken) */
  wait_deadline(L, &req, what);
  char msg[2048];
  size_t used = 0;
  bool differ = false;
  for (int r = 0; r < g_size; r++) {
    const int64_t *h = all + (size_t)r * HDR_LEN;
    if (h[HDR_KIND] != kind || h[HDR_SEQ] != mine[HDR_SEQ] || h[HDR_ROOT] != root) {
      free(all);
      g_broken = true;
      snprintf(g_broken_why, sizeof g_broken_why, "ranks ran different collectives");
      dist_error(L, "distributed: rank %d runs %s (collective #%lld) while rank %d runs %s (collective #%lld, root %lld)",
                 g_rank, what, (long long)mine[HDR_SEQ], r,
                 h[HDR_KIND] >= 0 && h[HDR_KIND] < 4 ? KIND_NAMES[h[HDR_KIND]] : "?", (long long)h[HDR_SEQ],
                 (long long)h[HDR_ROOT]);
    }
    bool same = h[HDR_DTYPE] == mine[HDR_DTYPE] && h[HDR_NDIM] == mine[HDR_NDIM];
    for (int d = 0; same && d < CC_MAX_DIMS; d++) same = h[HDR_SHAPE + d] == mine[HDR_SHAPE + d];
    if (!same) differ = true;
  }
  if (differ) {
    used += (size_t)snprintf(msg, sizeof msg, "distributed: %s: the tensors differ across ranks:", what);
    for (int r = 0; r < g_size && used < sizeof msg - 64; r++) {
      char s[256];
      shape_text(all + (size_t)r * HDR_LEN, s, sizeof s);
      used += (size_t)snprintf(msg + used, sizeof msg - used, "%s rank %d has %s", r ? "," : "", r, s);
    }
    free(all);
    dist_error(L, "%s", msg);
  }
  free(all);
}

static cc_tensor *check_cpu_tensor(lua_State *L, int idx, const char *what) {
  cc_tensor *t = lc_check(L, idx);
  if (t->storage->device != CC_CPU)
    dist_error(L, "distributed: %s: expected a CPU tensor (cocola.distributed stages device tensors)", what);
  if (!cc_is_contiguous(t)) dist_error(L, "distributed: %s: expected a contiguous tensor", what);
  return t;
}

/* _dist_init(timeout) -> rank, size, local_rank (MPI initialised here if it is not yet) */
static int dist_init(lua_State *L) {
  g_timeout = luaL_optnumber(L, 1, g_timeout);
  int inited = 0;
  MPI_CHECK(L, "MPI_Initialized", MPI_Initialized(&inited));
  if (!inited) {
    /* Open MPI's components resolve symbols of libmpi: make them global even though Lua loaded
     * this module with RTLD_LOCAL */
    void *h = dlopen("libmpi.so.40", RTLD_NOW | RTLD_GLOBAL | RTLD_NOLOAD);
    (void)h;
    int provided = 0;
    MPI_CHECK(L, "MPI_Init_thread", MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided));
    g_inited_here = true;
    atexit(dist_atexit);
  }
  MPI_CHECK(L, "MPI_Comm_set_errhandler", MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_RETURN));
  MPI_CHECK(L, "MPI_Comm_rank", MPI_Comm_rank(MPI_COMM_WORLD, &g_rank));
  MPI_CHECK(L, "MPI_Comm_size", MPI_Comm_size(MPI_COMM_WORLD, &g_size));
  MPI_Comm local;
  int local_rank = 0;
  MPI_CHECK(L, "MPI_Comm_split_type", MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, g_rank, MPI_INFO_NULL, &local));
  MPI_CHECK(L, "MPI_Comm_rank", MPI_Comm_rank(local, &local_rank));
  MPI_CHECK(L, "MPI_Comm_free", MPI_Comm_free(&local));
  lua_pushinteger(L, g_rank);
  lua_pushinteger(L, g_size);
  lua_pushinteger(L, local_rank);
  return 3;
}

static int dist_set_timeout(lua_State *L) {
  double t = luaL_checknumber(L, 1);
  if (!(t > 0)) return luaL_argerror(L, 1, "timeout must be a positive number of seconds");
  g_timeout = t;
  return 0;
}

/* _dist_all_reduce(t, op) in place; op "sum" | "max" | "min" */
static int dist_all_reduce(lua_State *L) {
  check_ready(L, "all_reduce");
  cc_tensor *t = check_cpu_tensor(L, 1, "all_reduce");
  const char *opname = luaL_optstring(L, 2, "sum");
  MPI_Op op = MPI_SUM;
  if (strcmp(opname, "max") == 0) op = MPI_MAX;
  else if (strcmp(opname, "min") == 0) op = MPI_MIN;
  else if (strcmp(opname, "sum") != 0) return luaL_argerror(L, 2, "op must be sum, max or min");
  check_headers(L, 0, t, 0, "all_reduce");
  int64_t n = cc_numel(t);
  if (n > 0x7fffffff) return dist_error(L, "distributed: all_reduce: %lld elements, more than MPI's int count", (long long)n);
  MPI_Request req;
  MPI_CHECK(L, "all_reduce", MPI_Iallreduce(MPI_IN_PLACE, cc_data_ptr(t), (int)n, mpi_type(t->dtype), op, MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "all_reduce");
  return 0;
}

/* _dist_all_gather(t) -> (size * d1, d2, ...) every rank's t along the first dim, in rank order */
static int dist_all_gather(lua_State *L) {
  check_ready(L, "all_gather");
  cc_tensor *t = check_cpu_tensor(L, 1, "all_gather");
  if (t->ndim < 1) return luaL_argerror(L, 1, "all_gather needs a tensor of at least one dim");
  check_headers(L, 1, t, 0, "all_gather");
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[0] *= g_size;
  int64_t n = cc_numel(t);
  if (n * g_size > 0x7fffffff) return dist_error(L, "distributed: all_gather: too many elements for MPI's int count");
  cc_tensor *out = cc_empty(t->ndim, shape, t->dtype, CC_CPU);
  if (!out) return lc_error(L);
  lc_push(L, out); /* owned by Lua from here: an error below releases it through __gc */
  MPI_Request req;
  MPI_CHECK(L, "all_gather", MPI_Iallgather(cc_data_ptr(t), (int)n, mpi_type(t->dtype), cc_data_ptr(out), (int)n,
                                            mpi_type(t->dtype), MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "all_gather");
  return 1;
}

/* _dist_broadcast(t, root) in place */
static int dist_broadcast(lua_State *L) {
  check_ready(L, "broadcast");
  cc_tensor *t = check_cpu_tensor(L, 1, "broadcast");
  lua_Integer root = luaL_optinteger(L, 2, 0);
  if (root < 0 || root >= g_size) return luaL_argerror(L, 2, "root must be a rank");
  check_headers(L, 2, t, (int)root, "broadcast");
  int64_t n = cc_numel(t);
  if (n > 0x7fffffff) return dist_error(L, "distributed: broadcast: too many elements for MPI's int count");
  MPI_Request req;
  MPI_CHECK(L, "broadcast", MPI_Ibcast(cc_data_ptr(t), (int)n, mpi_type(t->dtype), (int)root, MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "broadcast");
  return 0;
}

/* _dist_broadcast_bytes(string or nil, root) -> the root's string on every rank (e.g. an NCCL id) */
static int dist_broadcast_bytes(lua_State *L) {
  check_ready(L, "broadcast_bytes");
  lua_Integer root = luaL_optinteger(L, 2, 0);
  if (root < 0 || root >= g_size) return luaL_argerror(L, 2, "root must be a rank");
  check_headers(L, 2, NULL, (int)root, "broadcast_bytes");
  size_t len = 0;
  const char *s = g_rank == root ? luaL_checklstring(L, 1, &len) : NULL;
  long long n = (long long)len;
  MPI_Request req;
  MPI_CHECK(L, "broadcast_bytes", MPI_Ibcast(&n, 1, MPI_LONG_LONG, (int)root, MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "broadcast_bytes");
  if (n < 0 || n > 0x7fffffff) return dist_error(L, "distributed: broadcast_bytes: bad length %lld", n);
  luaL_Buffer b;
  char *buf = luaL_buffinitsize(L, &b, (size_t)n + 1);
  if (s) memcpy(buf, s, (size_t)n);
  MPI_CHECK(L, "broadcast_bytes", MPI_Ibcast(buf, (int)n, MPI_BYTE, (int)root, MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "broadcast_bytes");
  luaL_pushresultsize(&b, (size_t)n);
  return 1;
}

static int dist_barrier(lua_State *L) {
  check_ready(L, "barrier");
  MPI_Request req;
  MPI_CHECK(L, "barrier", MPI_Ibarrier(MPI_COMM_WORLD, &req));
  wait_deadline(L, &req, "barrier");
  return 0;
}

static int dist_wtime(lua_State *L) {
  lua_pushnumber(L, MPI_Wtime());
  return 1;
}

/* ---- NCCL (CUDA tensors; the shapes are checked over MPI first) ---- */
static int nccl_available(lua_State *L) {
  lua_pushboolean(L, cc_nccl_init != NULL);
  return 1;
}
static void need_nccl(lua_State *L) {
  if (!cc_nccl_init) dist_error(L, "distributed: this build has no NCCL (the CUDA backend with nccl.h and libnccl)");
}
static int nccl_unique_id(lua_State *L) {
  need_nccl(L);
  char id[512];
  int n = cc_nccl_unique_id(id, sizeof id);
  if (n < 0) return lc_error(L);
  lua_pushlstring(L, id, (size_t)n);
  return 1;
}
static int nccl_init(lua_State *L) {
  need_nccl(L);
  size_t len = 0;
  const char *id = luaL_checklstring(L, 1, &len);
  if (cc_nccl_init(id, len, (int)luaL_checkinteger(L, 2), (int)luaL_checkinteger(L, 3), luaL_optnumber(L, 4, g_timeout)))
    return lc_error(L);
  return 0;
}
static cc_tensor *check_cuda_tensor(lua_State *L, int idx, const char *what) {
  cc_tensor *t = lc_check(L, idx);
  if (t->storage->device != CC_CUDA || !cc_is_contiguous(t))
    dist_error(L, "distributed: %s (NCCL): expected a contiguous CUDA tensor", what);
  return t;
}
static int nccl_all_reduce(lua_State *L) {
  need_nccl(L);
  check_ready(L, "all_reduce");
  cc_tensor *t = check_cuda_tensor(L, 1, "all_reduce");
  const char *opname = luaL_optstring(L, 2, "sum");
  int op = strcmp(opname, "max") == 0 ? 1 : strcmp(opname, "min") == 0 ? 2 : 0;
  check_headers(L, 0, t, 0, "all_reduce");
  if (cc_nccl_all_reduce(t, op)) return lc_error(L);
  return 0;
}
static int nccl_all_gather(lua_State *L) {
  need_nccl(L);
  check_ready(L, "all_gather");
  cc_tensor *t = check_cuda_tensor(L, 1, "all_gather");
  if (t->ndim < 1) return luaL_argerror(L, 1, "all_gather needs a tensor of at least one dim");
  check_headers(L, 1, t, 0, "all_gather");
  int64_t shape[CC_MAX_DIMS];
  memcpy(shape, t->shape, sizeof shape);
  shape[0] *= g_size;
  cc_tensor *out = cc_empty(t->ndim, shape, t->dtype, CC_CUDA);
  if (!out) return lc_error(L);
  lc_push(L, out);
  if (cc_nccl_all_gather(t, out)) return lc_error(L);
  return 1;
}
static int nccl_broadcast(lua_State *L) {
  need_nccl(L);
  check_ready(L, "broadcast");
  cc_tensor *t = check_cuda_tensor(L, 1, "broadcast");
  lua_Integer root = luaL_optinteger(L, 2, 0);
  if (root < 0 || root >= g_size) return luaL_argerror(L, 2, "root must be a rank");
  check_headers(L, 2, t, (int)root, "broadcast");
  if (cc_nccl_broadcast(t, (int)root)) return lc_error(L);
  return 0;
}

static const luaL_Reg dist_functions[] = {
    {"_nccl_available", nccl_available}, {"_nccl_unique_id", nccl_unique_id}, {"_nccl_init", nccl_init},
    {"_nccl_all_reduce", nccl_all_reduce}, {"_nccl_all_gather", nccl_all_gather}, {"_nccl_broadcast", nccl_broadcast},
    {"_dist_available", dist_available}, {"_dist_init", dist_init}, {"_dist_set_timeout", dist_set_timeout},
    {"_dist_all_reduce", dist_all_reduce}, {"_dist_all_gather", dist_all_gather},
    {"_dist_broadcast", dist_broadcast}, {"_dist_broadcast_bytes", dist_broadcast_bytes},
    {"_dist_barrier", dist_barrier}, {"_dist_wtime", dist_wtime}, {NULL, NULL}};
#else
static int dist_unavailable(lua_State *L) {
  return dist_error(L, "distributed: this build of cocola has no MPI (install libopenmpi-dev and rebuild)");
}
static int nccl_unavailable(lua_State *L) {
  lua_pushboolean(L, 0);
  return 1;
}
static const luaL_Reg dist_functions[] = {
    {"_nccl_available", nccl_unavailable},
    {"_dist_available", dist_available}, {"_dist_init", dist_unavailable}, {"_dist_set_timeout", dist_unavailable},
    {"_dist_all_reduce", dist_unavailable}, {"_dist_all_gather", dist_unavailable},
    {"_dist_broadcast", dist_unavailable}, {"_dist_broadcast_bytes", dist_unavailable},
    {"_dist_barrier", dist_unavailable}, {"_dist_wtime", dist_unavailable}, {NULL, NULL}};
#endif

void lc_open_distributed(lua_State *L) { luaL_setfuncs(L, dist_functions, 0); }
