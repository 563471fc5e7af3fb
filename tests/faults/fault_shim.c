/* fault_shim.c — an LD_PRELOAD library for cocola's fault-injection tests (tests/faults/driver.lua).
 *
 * Allocation failures: malloc, calloc, realloc, posix_memalign, aligned_alloc and memalign are
 * counted while the shim is armed; with FAULT_ALLOC_FAIL=N the Nth of them returns NULL (ENOMEM),
 * once. Every block allocated while armed is remembered until it is freed, so that the blocks still
 * live at exit (leaks, or caches held by libraries) can be counted.
 * The program under test talks to the shim through getenv, which Lua reaches with os.getenv:
 *   getenv("FAULT_SHIM_ARM")     starts counting (returns "1"), the Nth allocation failing for
 *                                FAULT_SHIM_ARM:N or FAULT_ALLOC_FAIL=N; "FAULT_SHIM_DISARM" stops;
 *   getenv("FAULT_SHIM_RESET")   disarms, zeroes the counters and forgets the live blocks;
 *   getenv("FAULT_SHIM_DUMP")    lists the live blocks (size, allocating function) on stderr;
 *   getenv("FAULT_SHIM_STATUS")  "allocs=A failed=F spared=S live=L live_c=C live_bytes=B io_failed=E
 *                                overflow=O" (live_c: the live blocks not allocated by Lua's core).
 * The Nth allocation is not failed when a library of FAULT_ALLOC_SPARE made it (S counts those):
 * libgomp and lua-cjson end the process on a NULL by design, out of the program's reach.
 * At exit the same line is appended to the file named by FAULT_SHIM_REPORT, if set (one line per
 * process that had the shim loaded: timeout, env and the program under test).
 *
 * Write failures: with FAULT_IO_PATH=SUBSTRING, files opened for writing whose path contains
 * SUBSTRING (fopen/fopen64 and open/open64/openat/creat, the calls of Lua's io library, of cocola's
 * C writers and of libsndfile) accept FAULT_IO_AFTER bytes (default 0) and then fail every write
 * with FAULT_IO_ERRNO (ENOSPC, the default, or EIO); FAULT_IO_CLOSE=1 makes their close fail with
 * that errno instead (after the data went through).
 *
 * The hooks themselves never allocate through malloc: the real functions come from
 * dlsym(RTLD_NEXT), with a static arena for what dlsym itself allocates, and all state is static. */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/uio.h>
#include <unistd.h>

/* ---- the real functions ---- */
static void *(*real_malloc)(size_t);
static void *(*real_calloc)(size_t, size_t);
static void *(*real_realloc)(void *, size_t);
static void (*real_free)(void *);
static int (*real_posix_memalign)(void **, size_t, size_t);
static void *(*real_aligned_alloc)(size_t, size_t);
static void *(*real_memalign)(size_t, size_t);
static char *(*real_getenv)(const char *);
static FILE *(*real_fopen)(const char *, const char *);
static FILE *(*real_fopen64)(const char *, const char *);
static int (*real_open)(const char *, int, ...);
static int (*real_open64)(const char *, int, ...);
static int (*real_openat)(int, const char *, int, ...);
static int (*real_creat)(const char *, mode_t);
static ssize_t (*real_write)(int, const void *, size_t);
static ssize_t (*real_pwrite)(int, const void *, size_t, off_t);
static ssize_t (*real_pwrite64)(int, const void *, size_t, off_t);
static ssize_t (*real_writev)(int, const struct iovec *, int);
static int (*real_close)(int);
static int (*real_fsync)(int);

/* dlsym may call calloc before the real one is known: served from here, never freed */
static _Alignas(64) unsigned char boot_arena[1 << 16];
static size_t boot_used;
static int resolving;

static void *boot_alloc(size_t n) {
  size_t at = (boot_used + 63) & ~(size_t)63;
  if (at + n > sizeof boot_arena) return NULL;
  boot_used = at + n;
  memset(boot_arena + at, 0, n);
  return boot_arena + at;
}
static int in_boot(const void *p) {
  return (const unsigned char *)p >= boot_arena && (const unsigned char *)p < boot_arena + sizeof boot_arena;
}

#define RESOLVE(name) real_##name = (__typeof__(real_##name))dlsym(RTLD_NEXT, #name)
static void resolve(void) {
  if (real_malloc || resolving) return;
  resolving = 1;
  RESOLVE(calloc);
  RESOLVE(realloc);
  RESOLVE(free);
  RESOLVE(posix_memalign);
  RESOLVE(aligned_alloc);
  RESOLVE(memalign);
  RESOLVE(getenv);
  RESOLVE(fopen);
  RESOLVE(fopen64);
  RESOLVE(open);
  RESOLVE(open64);
  RESOLVE(openat);
  RESOLVE(creat);
  RESOLVE(write);
  RESOLVE(pwrite);
  RESOLVE(pwrite64);
  RESOLVE(writev);
  RESOLVE(close);
  RESOLVE(fsync);
  RESOLVE(malloc); /* last: its presence says that all are known */
  resolving = 0;
}

/* ---- allocation counting and failure ---- */
static atomic_int armed;
static atomic_long alloc_count, alloc_failed, alloc_spared, io_failed;
static long fail_at = -1; /* FAULT_ALLOC_FAIL, read when armed */

/* live blocks allocated while armed: open addressing, a spin lock */
#define LIVE_SLOTS (1u << 20)
#define TOMB ((uintptr_t)1)
static struct {
  uintptr_t p;
  size_t n;
  void *caller;
} live[LIVE_SLOTS];
static long live_count, live_bytes, live_used;
static int live_overflow;
static atomic_flag live_lock = ATOMIC_FLAG_INIT;

static void lock(void) {
  while (atomic_flag_test_and_set_explicit(&live_lock, memory_order_acquire)) {
  }
}
static void unlock(void) { atomic_flag_clear_explicit(&live_lock, memory_order_release); }
static size_t slot_of(uintptr_t p) { return (size_t)((p >> 4) * 0x9E3779B97F4A7C15ull >> 44) & (LIVE_SLOTS - 1); }

static void live_add(void *ptr, size_t n, void *caller) {
  if (!ptr || !atomic_load(&armed)) return;
  uintptr_t p = (uintptr_t)ptr;
  lock();
  if (live_used >= (long)(LIVE_SLOTS / 4 * 3)) {
    live_overflow = 1;
  } else {
    size_t i = slot_of(p);
    while (live[i].p > TOMB) i = (i + 1) & (LIVE_SLOTS - 1);
    if (live[i].p == 0) live_used++;
    live[i].p = p;
    live[i].n = n;
    live[i].caller = caller;
    live_count++;
    live_bytes += (long)n;
  }
  unlock();
}
static void live_remove(void *ptr) {
  if (!ptr) return;
  uintptr_t p = (uintptr_t)ptr;
  lock();
  if (live_count > 0) {
    size_t i = slot_of(p);
    while (live[i].p != 0) {
      if (live[i].p == p) {
        live[i].p = TOMB;
        live_count--;
        live_bytes -= (long)live[i].n;
        break;
      }
      i = (i + 1) & (LIVE_SLOTS - 1);
    }
  }
  unlock();
}

/* 1: the object of a code address is one whose allocations are spared (FAULT_ALLOC_SPARE, a comma-
 * separated list of substrings of library paths, or LIB+0xOFFSET for one call site of a library;
 * default libgomp and lua-cjson, which end the process when malloc fails, by design: libgomp's
 * gomp_fatal, cjson's strbuf die()) */
static int spared(void *addr) {
  Dl_info info;
  if (!addr || !dladdr(addr, &info) || !info.dli_fname) return 0;
  const char *list = real_getenv("FAULT_ALLOC_SPARE");
  if (!list) list = "libgomp,cjson";
  while (*list) {
    const char *end = strchr(list, ',');
    size_t len = end ? (size_t)(end - list) : strlen(list);
    /* LIB+0xOFFSET: only the call at that offset of LIB (one known call site) */
    const char *plus = memchr(list, '+', len);
    size_t name_len = plus ? (size_t)(plus - list) : len;
    unsigned long want = plus ? strtoul(plus + 1, NULL, 16) : 0;
    int here = !plus || (unsigned long)((char *)addr - (char *)info.dli_fbase) == want;
    for (const char *f = info.dli_fname; here && name_len && *f; f++)
      if (!strncmp(f, list, name_len)) return 1;
    list += len + (end != NULL);
  }
  return 0;
}

/* 1: this allocation (called from `caller`) is to fail */
static int should_fail(void *caller) {
  if (!atomic_load(&armed)) return 0;
  long k = atomic_fetch_add(&alloc_count, 1) + 1;
  if (k != fail_at) return 0;
  if (spared(caller)) {
    atomic_fetch_add(&alloc_spared, 1);
    if (real_getenv("FAULT_SHIM_VERBOSE")) {
      Dl_info info;
      char line[512];
      int len = snprintf(line, sizeof line, "fault_shim: allocation %ld spared, called from %s\n", k,
                         dladdr(caller, &info) && info.dli_fname ? info.dli_fname : "?");
      if (len > 0 && real_write(2, line, (size_t)len) < 0) return 0;
    }
    return 0;
  }
  atomic_fetch_add(&alloc_failed, 1);
  if (real_getenv("FAULT_SHIM_VERBOSE")) { /* which code saw the NULL, on stderr */
    Dl_info info;
    char line[512];
    int ok = dladdr(caller, &info);
    int len = snprintf(line, sizeof line, "fault_shim: allocation %ld fails, called from %s (%s+0x%lx)\n", k,
                       ok && info.dli_fname ? info.dli_fname : "?", ok && info.dli_sname ? info.dli_sname : "?",
                       ok ? (unsigned long)((char *)caller - (char *)(info.dli_saddr ? info.dli_saddr : info.dli_fbase)) : 0ul);
    if (len > 0 && real_write(2, line, (size_t)len) < 0) return 1;
  }
  return 1;
}

void *malloc(size_t n) {
  if (!real_malloc) {
    if (resolving) return boot_alloc(n);
    resolve();
  }
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_malloc(n);
  live_add(p, n, __builtin_return_address(0));
  return p;
}

void *calloc(size_t a, size_t b) {
  if (!real_malloc) {
    if (resolving) return boot_alloc(a * b);
    resolve();
  }
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_calloc(a, b);
  live_add(p, a * b, __builtin_return_address(0));
  return p;
}

void *realloc(void *old, size_t n) {
  if (!real_malloc) resolve();
  if (in_boot(old)) { /* a block of the boot arena moved to the real heap */
    void *p = real_malloc(n);
    size_t room = sizeof boot_arena - (size_t)((unsigned char *)old - boot_arena);
    if (p) memcpy(p, old, n < room ? n : room);
    return p;
  }
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL; /* the old block stays valid, as with a real failure */
  }
  void *p = real_realloc(old, n);
  if (p || n == 0) {
    live_remove(old);
    live_add(p, n, __builtin_return_address(0));
  }
  return p;
}

void free(void *p) {
  if (!p || in_boot(p)) return;
  if (!real_malloc) resolve();
  live_remove(p);
  real_free(p);
}

int posix_memalign(void **out, size_t align, size_t n) {
  if (!real_malloc) resolve();
  if (should_fail(__builtin_return_address(0))) return ENOMEM;
  int rc = real_posix_memalign(out, align, n);
  if (rc == 0) live_add(*out, n, __builtin_return_address(0));
  return rc;
}

void *aligned_alloc(size_t align, size_t n) {
  if (!real_malloc) resolve();
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_aligned_alloc(align, n);
  live_add(p, n, __builtin_return_address(0));
  return p;
}

void *memalign(size_t align, size_t n) {
  if (!real_malloc) resolve();
  if (should_fail(__builtin_return_address(0))) {
    errno = ENOMEM;
    return NULL;
  }
  void *p = real_memalign(align, n);
  live_add(p, n, __builtin_return_address(0));
  return p;
}

/* ---- the control channel ---- */
static char status_line[256];

/* the load address of Lua's core (the interpreter, or liblua when shared): its blocks are the Lua
 * state's own, which the collector reclaims; a block of anyone else's left live is a leak */
static void *lua_base(void) {
  static void *base;
  static int looked;
  if (!looked) {
    looked = 1;
    Dl_info info;
    void *sym = dlsym(RTLD_DEFAULT, "lua_newstate");
    if (sym && dladdr(sym, &info)) base = info.dli_fbase;
  }
  return base;
}

static void format_status(void) {
  void *lb_base = lua_base();
  long lc_c = 0;
  lock();
  long lc = live_count, lb = live_bytes;
  int ov = live_overflow;
  for (size_t i = 0; lc > 0 && i < LIVE_SLOTS; i++) {
    if (live[i].p <= TOMB) continue;
    Dl_info info;
    if (!(lb_base && dladdr(live[i].caller, &info) && info.dli_fbase == lb_base)) lc_c++;
  }
  unlock();
  snprintf(status_line, sizeof status_line,
           "allocs=%ld failed=%ld spared=%ld live=%ld live_c=%ld live_bytes=%ld io_failed=%ld overflow=%d",
           atomic_load(&alloc_count), atomic_load(&alloc_failed), atomic_load(&alloc_spared), lc, lc_c, lb,
           atomic_load(&io_failed), ov);
}

char *getenv(const char *name) {
  if (!real_malloc) resolve();
  if (!strncmp(name, "FAULT_SHIM_", 11)) {
    if (!strncmp(name, "FAULT_SHIM_ARM", 14) && (name[14] == 0 || name[14] == ':')) {
      const char *n = name[14] == ':' ? name + 15 : real_getenv("FAULT_ALLOC_FAIL");
      fail_at = n && *n ? strtol(n, NULL, 10) : -1;
      atomic_store(&armed, 1);
      return (char *)"1";
    }
    if (!strcmp(name, "FAULT_SHIM_RESET")) { /* counters to 0, the live blocks forgotten */
      atomic_store(&armed, 0);
      lock();
      memset(live, 0, sizeof live);
      live_count = live_bytes = live_used = 0;
      live_overflow = 0;
      unlock();
      atomic_store(&alloc_count, 0);
      atomic_store(&alloc_failed, 0);
      atomic_store(&alloc_spared, 0);
      return (char *)"1";
    }
    if (!strcmp(name, "FAULT_SHIM_DISARM")) {
      atomic_store(&armed, 0);
      return (char *)"1";
    }
    if (!strcmp(name, "FAULT_SHIM_DUMP")) { /* the live blocks and their callers, on stderr */
      lock();
      for (size_t i = 0; i < LIVE_SLOTS; i++) {
        if (live[i].p <= TOMB) continue;
        Dl_info info;
        char line[512];
        int ok = dladdr(live[i].caller, &info);
        int len = snprintf(line, sizeof line, "live %zu bytes from %s(%s+0x%lx)\n", live[i].n,
                           ok && info.dli_fname ? info.dli_fname : "?", ok && info.dli_sname ? info.dli_sname : "?",
                           ok ? (unsigned long)((char *)live[i].caller - (char *)(info.dli_saddr ? info.dli_saddr : info.dli_fbase)) : 0ul);
        if (len > 0 && real_write(2, line, (size_t)len) < 0) break;
      }
      unlock();
      return (char *)"1";
    }
    if (!strcmp(name, "FAULT_SHIM_STATUS")) {
      format_status();
      return status_line;
    }
  }
  return real_getenv(name);
}

__attribute__((destructor)) static void write_report(void) {
  if (!real_malloc) return;
  const char *path = real_getenv("FAULT_SHIM_REPORT");
  if (!path || !*path) return;
  format_status();
  int fd = real_open(path, O_WRONLY | O_CREAT | O_APPEND, 0644); /* one line per process */
  if (fd < 0) return;
  size_t n = strlen(status_line);
  status_line[n] = '\n';
  if (real_write(fd, status_line, n + 1) < 0) {
  }
  real_close(fd);
}

/* ---- write failures ---- */
static int io_errno(void) {
  const char *e = real_getenv("FAULT_IO_ERRNO");
  return e && !strcmp(e, "EIO") ? EIO : ENOSPC;
}
static long io_after(void) {
  const char *a = real_getenv("FAULT_IO_AFTER");
  return a && *a ? strtol(a, NULL, 10) : 0;
}
static int io_close_fails(void) {
  const char *c = real_getenv("FAULT_IO_CLOSE");
  return c && !strcmp(c, "1");
}
static int io_matches(const char *path) {
  const char *pat = real_getenv("FAULT_IO_PATH");
  return pat && *pat && path && strstr(path, pat);
}

/* descriptors opened for writing on a matching path: bytes they may still take (-1: not tracked) */
#define MAX_FD 4096
static long fd_budget[MAX_FD];
static unsigned char fd_tracked[MAX_FD];

static void track_fd(int fd, const char *path, int flags) {
  if (fd < 0 || fd >= MAX_FD) return;
  fd_tracked[fd] = 0;
  if ((flags & (O_WRONLY | O_RDWR)) && io_matches(path)) {
    fd_tracked[fd] = 1;
    fd_budget[fd] = io_after();
  }
}

/* how many of n bytes a tracked descriptor takes now; 0 with errno set: the failure */
static size_t fd_allow(int fd, size_t n) {
  if (fd < 0 || fd >= MAX_FD || !fd_tracked[fd] || io_close_fails()) return n;
  if (n == 0) return 0;
  if (fd_budget[fd] <= 0) {
    atomic_fetch_add(&io_failed, 1);
    errno = io_errno();
    return 0;
  }
  size_t k = (size_t)fd_budget[fd] < n ? (size_t)fd_budget[fd] : n;
  fd_budget[fd] -= (long)k;
  return k;
}

/* the mode argument of open, open64 and openat, which is there only with O_CREAT or O_TMPFILE */
#define MODE_ARGUMENT(flags, mode)                                                                 \
  do {                                                                                             \
    if ((flags) & (O_CREAT | O_TMPFILE)) {                                                         \
      va_list ap;                                                                                  \
      va_start(ap, flags);                                                                         \
      (mode) = (mode_t)va_arg(ap, int);                                                            \
      va_end(ap);                                                                                  \
    }                                                                                              \
  } while (0)

int open(const char *path, int flags, ...) {
  if (!real_malloc) resolve();
  mode_t mode = 0;
  MODE_ARGUMENT(flags, mode);
  int fd = real_open(path, flags, mode);
  track_fd(fd, path, flags);
  return fd;
}
int open64(const char *path, int flags, ...) {
  if (!real_malloc) resolve();
  mode_t mode = 0;
  MODE_ARGUMENT(flags, mode);
  int fd = real_open64(path, flags, mode);
  track_fd(fd, path, flags);
  return fd;
}
int openat(int dir, const char *path, int flags, ...) {
  if (!real_malloc) resolve();
  mode_t mode = 0;
  MODE_ARGUMENT(flags, mode);
  int fd = real_openat(dir, path, flags, mode);
  track_fd(fd, path, flags);
  return fd;
}
int creat(const char *path, mode_t mode) {
  if (!real_malloc) resolve();
  int fd = real_creat(path, mode);
  track_fd(fd, path, O_WRONLY);
  return fd;
}

/* a write of n bytes to fd as `call` (whose byte count is k): all of it, the part a tracked descriptor
   still takes, or -1 with errno set once its budget is spent */
#define LIMITED_WRITE(call)                                                                        \
  do {                                                                                             \
    size_t k = n;                                                                                  \
    if (n > 0 && (k = fd_allow(fd, n)) == 0) return -1;                                            \
    return call;                                                                                   \
  } while (0)

ssize_t write(int fd, const void *buf, size_t n) {
  if (!real_malloc) resolve();
  LIMITED_WRITE(real_write(fd, buf, k));
}
ssize_t pwrite(int fd, const void *buf, size_t n, off_t at) {
  if (!real_malloc) resolve();
  LIMITED_WRITE(real_pwrite(fd, buf, k, at));
}
ssize_t pwrite64(int fd, const void *buf, size_t n, off_t at) {
  if (!real_malloc) resolve();
  LIMITED_WRITE(real_pwrite64(fd, buf, k, at));
}
ssize_t writev(int fd, const struct iovec *iov, int cnt) {
  if (!real_malloc) resolve();
  if (fd >= 0 && fd < MAX_FD && fd_tracked[fd] && cnt > 0) /* one piece at a time through write */
    return write(fd, iov[0].iov_base, iov[0].iov_len);
  return real_writev(fd, iov, cnt);
}
int fsync(int fd) {
  if (!real_malloc) resolve();
  if (fd >= 0 && fd < MAX_FD && fd_tracked[fd] && io_close_fails()) {
    atomic_fetch_add(&io_failed, 1);
    errno = io_errno();
    return -1;
  }
  return real_fsync(fd);
}
int close(int fd) {
  if (!real_malloc) resolve();
  int failing = fd >= 0 && fd < MAX_FD && fd_tracked[fd] && io_close_fails();
  if (fd >= 0 && fd < MAX_FD) fd_tracked[fd] = 0;
  int rc = real_close(fd);
  if (failing && rc == 0) {
    atomic_fetch_add(&io_failed, 1);
    errno = io_errno();
    return -1;
  }
  return rc;
}

/* stdio: glibc's FILE calls its own internal write, out of an LD_PRELOAD's reach, so a matching
 * fopen returns a fopencookie stream over the real one, whose writes and close the shim decides */
#define MAX_COOKIES 64
static struct cookie {
  FILE *inner;
  long budget;
  int used;
} cookies[MAX_COOKIES];

static ssize_t ck_read(void *c, char *buf, size_t n) { return (ssize_t)fread(buf, 1, n, ((struct cookie *)c)->inner); }
static ssize_t ck_write(void *cv, const char *buf, size_t n) {
  struct cookie *c = cv;
  /* glibc takes a short count from a cookie as the stream's error (it does not write the rest again,
   * as it does for a file descriptor): the part that fits is written and the failure is reported
   * with it, errno set as the next write(2) would set it */
  int short_write = 0;
  if (!io_close_fails()) {
    if (c->budget <= 0) {
      atomic_fetch_add(&io_failed, 1);
      errno = io_errno();
      return -1;
    }
    if ((size_t)c->budget < n) n = (size_t)c->budget, short_write = 1;
    c->budget -= (long)n;
  }
  int saved = errno; /* the inner stream's calls leave errno as a real write would */
  size_t k = fwrite(buf, 1, n, c->inner);
  if (fflush(c->inner) != 0 && k == 0) return -1;
  errno = saved;
  if (short_write) {
    atomic_fetch_add(&io_failed, 1);
    errno = io_errno();
  }
  return (ssize_t)k;
}
static int ck_seek(void *c, off64_t *pos, int whence) {
  FILE *f = ((struct cookie *)c)->inner;
  if (fseeko(f, (off_t)*pos, whence) != 0) return -1;
  *pos = (off64_t)ftello(f);
  return 0;
}
static int ck_close(void *cv) {
  struct cookie *c = cv;
  int saved = errno; /* a write that failed before keeps its errno through a clean close */
  int rc = fclose(c->inner);
  if (rc == 0) errno = saved;
  c->used = 0;
  if (rc == 0 && io_close_fails()) {
    atomic_fetch_add(&io_failed, 1);
    errno = io_errno();
    return -1;
  }
  return rc;
}

static FILE *wrap_fopen(FILE *(*real)(const char *, const char *), const char *path, const char *mode) {
  if (!real_malloc) resolve();
  int writing = mode && (strchr(mode, 'w') || strchr(mode, 'a') || strchr(mode, '+'));
  if (!writing || !io_matches(path)) return real(path, mode);
  struct cookie *c = NULL;
  for (int k = 0; k < MAX_COOKIES && !c; k++)
    if (!cookies[k].used) c = &cookies[k];
  if (!c) return real(path, mode);
  FILE *inner = real(path, mode);
  if (!inner) return NULL;
  c->inner = inner;
  c->budget = io_after();
  c->used = 1;
  cookie_io_functions_t fns = {ck_read, ck_write, ck_seek, ck_close};
  FILE *f = fopencookie(c, mode, fns);
  if (!f) {
    fclose(inner);
    c->used = 0;
  }
  return f;
}
FILE *fopen(const char *path, const char *mode) {
  if (!real_malloc) resolve();
  return wrap_fopen(real_fopen, path, mode);
}
FILE *fopen64(const char *path, const char *mode) {
  if (!real_malloc) resolve();
  return wrap_fopen(real_fopen64, path, mode);
}
