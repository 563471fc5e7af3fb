/* lfunctions.c — the module-level functions of cocola.core: creation, random, grad mode,
 * joining, the functional layer ops (cocola.nn.functional calls these), the fused optimiser step,
 * raw safetensors I/O (the JSON header is handled in Lua), and luaopen_cocola_core. */
#include "lbind.h"
/* the optional CUDA backend, bound weakly: every symbol is NULL in a build without it */
#define CC_CUDA_API __attribute__((weak))
#include "cuda/cc_cuda.h"
#include "scalar.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

/* ---- creation ---- */
static int f_full_common(lua_State *L, double value, int shape_idx, int opts_idx) {
  int64_t shape[CC_MAX_DIMS];
  int n = lc_shape(L, shape_idx, shape);
  int dt = lc_opt_dtype(L, opts_idx, "dtype", CC_FLOAT32);
  cc_tensor *t = cc_full(n, shape, value, (cc_dtype)dt, CC_CPU);
  if (t && lc_opt_bool(L, opts_idx, "requires_grad", false) && cc_set_requires_grad(t, true)) {
    cc_release(t);
    t = NULL;
  }
  return lc_push(L, t);
}
static int f_zeros(lua_State *L) { return f_full_common(L, 0, 1, 2); }
static int f_ones(lua_State *L) { return f_full_common(L, 1, 1, 2); }
static int f_full(lua_State *L) { return f_full_common(L, luaL_checknumber(L, 2), 1, 3); }

static int f_arange(lua_State *L) {
  /* arange(end) | arange(start, end[, step][, opts]) ; int64 when all bounds are integers */
  int top = lua_gettop(L), opts = 0;
  if (top > 0 && lua_istable(L, top)) opts = top--;
  double start = 0, end, step = 1;
  bool ints = true;
  for (int k = 1; k <= top; k++) ints = ints && lua_isinteger(L, k);
  if (top == 1) end = luaL_checknumber(L, 1);
  else {
    start = luaL_checknumber(L, 1);
    end = luaL_checknumber(L, 2);
    if (top >= 3) step = luaL_checknumber(L, 3);
  }
  int dt = opts ? lc_opt_dtype(L, opts, "dtype", ints ? CC_INT64 : CC_FLOAT32) : (ints ? CC_INT64 : CC_FLOAT32);
  return lc_push(L, cc_arange(start, end, step, (cc_dtype)dt));
}

static int f_rand(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  int n = lc_shape(L, 1, shape);
  return lc_push(L, cc_rand(n, shape, (cc_dtype)lc_opt_dtype(L, 2, "dtype", CC_FLOAT32)));
}
static int f_randn(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  int n = lc_shape(L, 1, shape);
  return lc_push(L, cc_randn(n, shape, (cc_dtype)lc_opt_dtype(L, 2, "dtype", CC_FLOAT32)));
}
static int f_randint(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  lua_Integer lo = luaL_checkinteger(L, 1), hi = luaL_checkinteger(L, 2);
  int n = lc_shape(L, 3, shape);
  return lc_push(L, cc_randint(lo, hi, n, shape));
}
static int f_uniform_(lua_State *L) {
  if (cc_uniform_(lc_check(L, 1), luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1))) return lc_error(L);
  lua_settop(L, 1);
  return 1;
}
static int f_normal_(lua_State *L) {
  if (cc_normal_(lc_check(L, 1), luaL_optnumber(L, 2, 0), luaL_optnumber(L, 3, 1))) return lc_error(L);
  lua_settop(L, 1);
  return 1;
}

/* from a nested table (rectangular) */
static void table_shape(lua_State *L, int idx, int d, int *ndim, int64_t *shape) {
  if (d >= CC_MAX_DIMS) luaL_error(L, "tensor: nested table deeper than %d", CC_MAX_DIMS);
  int64_t n = (int64_t)luaL_len(L, idx);
  shape[d] = n;
  *ndim = d + 1;
  if (n == 0) return;
  lua_geti(L, idx, 1);
  if (lua_istable(L, -1)) table_shape(L, lua_gettop(L), d + 1, ndim, shape);
  lua_pop(L, 1);
}

static int64_t fill_from_table(lua_State *L, int idx, int d, int ndim, const int64_t *shape, cc_tensor *t, int64_t pos) {
  int64_t n = (int64_t)luaL_len(L, idx);
  if (n != shape[d]) luaL_error(L, "tensor: ragged nested table (expected %I entries at depth %d, got %I)",
                                (lua_Integer)shape[d], d + 1, (lua_Integer)n);
  for (int64_t i = 1; i <= n; i++) {
    lua_geti(L, idx, i);
    if (d + 1 < ndim) {
      if (!lua_istable(L, -1)) luaL_error(L, "tensor: ragged nested table (a number where a table was expected at depth %d)", d + 2);
      pos = fill_from_table(L, lua_gettop(L), d + 1, ndim, shape, t, pos);
    } else {
      int isnum;
      lua_Number v = lua_tonumberx(L, -1, &isnum);
      if (!isnum) {
        if (lua_isboolean(L, -1)) v = lua_toboolean(L, -1);
        else luaL_error(L, "tensor: expected numbers, found a %s", luaL_typename(L, -1));
      }
      if (t->dtype == CC_FLOAT32) ((float *)t->storage->data)[pos] = (float)v;
      else if (t->dtype == CC_FLOAT64) ((double *)t->storage->data)[pos] = v;
      else ((int64_t *)t->storage->data)[pos] = lua_isinteger(L, -1) ? lua_tointeger(L, -1) : (int64_t)v;
      pos++;
    }
    lua_pop(L, 1);
  }
  return pos;
}

static int f_tensor(lua_State *L) {
  int dt = lc_opt_dtype(L, 2, "dtype", CC_FLOAT32);
  bool rg = lc_opt_bool(L, 2, "requires_grad", false);
  cc_tensor *t;
  if (lua_type(L, 1) == LUA_TNUMBER) {
    t = cc_scalar(lua_tonumber(L, 1), (cc_dtype)dt, CC_CPU);
    if (t && dt == CC_INT64 && lua_isinteger(L, 1)) ((int64_t *)t->storage->data)[0] = lua_tointeger(L, 1);
  } else if (lc_is(L, 1)) {
    t = cc_to_dtype(lc_check(L, 1), (cc_dtype)dt);
    if (t && t == lc_check(L, 1)) {
      cc_release(t);
      t = cc_clone(lc_check(L, 1));
    }
  } else {
    luaL_checktype(L, 1, LUA_TTABLE);
    int ndim = 0;
    int64_t shape[CC_MAX_DIMS];
    table_shape(L, 1, 0, &ndim, shape);
    t = cc_empty(ndim, shape, (cc_dtype)dt, CC_CPU);
    if (!t) return lc_error(L);
    lc_push(L, t); /* owned by Lua now, so a ragged table's error cannot leak it */
    fill_from_table(L, 1, 0, ndim, shape, t, 0);
    if (rg && cc_set_requires_grad(t, true)) return lc_error(L);
    return 1;
  }
  if (t && rg && cc_set_requires_grad(t, true)) {
    cc_release(t);
    t = NULL;
  }
  return lc_push(L, t);
}

static int f_is_tensor(lua_State *L) {
  lua_pushboolean(L, lc_is(L, 1));
  return 1;
}

/* ---- state ---- */
static int f_manual_seed(lua_State *L) {
  cc_manual_seed((uint64_t)luaL_checkinteger(L, 1));
  return 0;
}
/* cocola.seed(): seeds the generator from the system's entropy (as torch.seed()) and returns the
   seed, a non-negative integer that cocola.manual_seed takes back */
static int f_seed(lua_State *L) {
  uint64_t seed = 0;
  FILE *f = fopen("/dev/urandom", "rb");
  bool read = f && fread(&seed, sizeof seed, 1, f) == 1;
  if (f) fclose(f);
  if (!read) { /* no /dev/urandom: the clock and an address, mixed by one Philox round trip */
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    cc_philox_out r = cc_philox((uint64_t)ts.tv_nsec ^ (uint64_t)(uintptr_t)&ts, (uint64_t)ts.tv_sec, 0);
    seed = (uint64_t)r.v[0] << 32 | r.v[1];
  }
  seed &= (uint64_t)INT64_MAX;
  cc_manual_seed(seed);
  lua_pushinteger(L, (lua_Integer)seed);
  return 1;
}
/* cocola.initial_seed(): the seed of the generator (manual_seed's, seed()'s, or the fixed default) */
static int f_initial_seed(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)cc_get_seed());
  return 1;
}
static int f_rng_state(lua_State *L) {
  uint64_t seed, offset;
  cc_rng_get_state(&seed, &offset);
  lua_pushinteger(L, (lua_Integer)seed);
  lua_pushinteger(L, (lua_Integer)offset);
  return 2;
}
static int f_set_rng_state(lua_State *L) {
  cc_rng_set_state((uint64_t)luaL_checkinteger(L, 1), (uint64_t)luaL_checkinteger(L, 2));
  return 0;
}
static int f_set_num_threads(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1) return luaL_argerror(L, 1, "the number of threads must be at least 1");
  cc_set_num_threads((int)n);
  return 0;
}
static const char *const conv_backend_names[] = {"auto", "native", "onednn", NULL};
/* cocola.set_conv_backend("auto" | "native" | "onednn"); returns the previous one */
static int f_set_conv_backend(lua_State *L) {
  int kind = luaL_checkoption(L, 1, NULL, conv_backend_names);
  cc_conv_backend_kind prev = cc_get_conv_backend();
  if (cc_set_conv_backend((cc_conv_backend_kind)kind)) return luaL_error(L, "%s", cc_last_error());
  lua_pushstring(L, conv_backend_names[prev]);
  return 1;
}
/* cocola.conv_backend() -> the setting, and whether this build has oneDNN */
static int f_conv_backend(lua_State *L) {
  lua_pushstring(L, conv_backend_names[cc_get_conv_backend()]);
  lua_pushboolean(L, cc_have_onednn());
  return 2;
}
/* cocola.blas_threading() -> how the loaded OpenBLAS threads ("openmp", "pthread", "sequential",
   "unknown"), and whether this build linked OpenBLAS's OpenMP build */
static int f_blas_threading(lua_State *L) {
  bool linked_openmp = false;
  lua_pushstring(L, cc_blas_threading(&linked_openmp));
  lua_pushboolean(L, linked_openmp);
  return 2;
}
static int f_get_num_threads(lua_State *L) {
  lua_pushinteger(L, cc_get_num_threads());
  return 1;
}
static int f_set_grad_enabled(lua_State *L) {
  lua_pushboolean(L, cc_set_grad_enabled(lua_toboolean(L, 1)));
  return 1;
}
static int f_is_grad_enabled(lua_State *L) {
  lua_pushboolean(L, cc_grad_enabled());
  return 1;
}
static int f_live_tensors(lua_State *L) {
  lua_pushinteger(L, cc_live_tensors());
  return 1;
}
static int f_live_bytes(lua_State *L) {
  const char *dev = luaL_optstring(L, 1, "cpu");
  lua_pushinteger(L, cc_live_bytes(!strcmp(dev, "cuda") ? CC_CUDA : CC_CPU));
  return 1;
}
static int f_empty_cache(lua_State *L) {
  (void)L;
  cc_empty_cache();
  return 0;
}
static int f_cached_bytes(lua_State *L) {
  lua_pushinteger(L, cc_cached_bytes());
  return 1;
}
static int f_wall_time(lua_State *L) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  lua_pushnumber(L, (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec);
  return 1;
}
static int f_device_available(lua_State *L) {
  const char *dev = luaL_checkstring(L, 1);
  lua_pushboolean(L, cc_device_available(!strcmp(dev, "cuda") ? CC_CUDA : CC_CPU));
  return 1;
}

/* ---- joining, linear algebra ---- */
static int join(lua_State *L, bool stack) {
  luaL_checktype(L, 1, LUA_TTABLE);
  int n = (int)luaL_len(L, 1);
  if (n < 1) return luaL_argerror(L, 1, "expected a non-empty list of tensors");
  bool has_dim = !lua_isnoneornil(L, 2);
  lua_Integer dim_arg = has_dim ? luaL_checkinteger(L, 2) : 1;
  cc_tensor **ts = lua_newuserdatauv(L, sizeof(cc_tensor *) * (size_t)n, 0); /* freed by the GC */
  for (int k = 0; k < n; k++) {
    lua_geti(L, 1, k + 1);
    if (!lc_is(L, -1)) return luaL_error(L, "%s: entry %d is not a tensor", stack ? "stack" : "cat", k + 1);
    ts[k] = lc_check(L, -1);
    lua_pop(L, 1);
  }
  int nd = ts[0]->ndim + (stack ? 1 : 0);
  lua_pushinteger(L, dim_arg);
  int d = lc_dim(L, lua_gettop(L), nd);
  return lc_push(L, stack ? cc_stack(n, ts, d) : cc_cat(n, ts, d));
}
static int f_cat(lua_State *L) { return join(L, false); }
static int f_stack(lua_State *L) { return join(L, true); }
static int f_matmul(lua_State *L) { return lc_push(L, cc_matmul(lc_check(L, 1), lc_check(L, 2))); }
static int f_bmm(lua_State *L) { return lc_push(L, cc_bmm(lc_check(L, 1), lc_check(L, 2))); }
static int f_where(lua_State *L) {
  cc_tensor *c = lc_check(L, 1);
  cc_tensor *like = lc_is(L, 2) ? lc_check(L, 2) : lc_check(L, 3);
  cc_tensor *a = lc_tensor_or_number(L, 2, like);
  cc_tensor *b = lc_tensor_or_number(L, 3, like);
  cc_tensor *out = cc_where(c, a, b);
  cc_release(a);
  cc_release(b);
  return lc_push(L, out);
}

/* ---- functional ---- */
static void read_pair(lua_State *L, int opts, const char *field, int64_t def, int64_t *out) {
  out[0] = out[1] = def;
  if (!lua_istable(L, opts)) return;
  lua_getfield(L, opts, field);
  if (lua_isinteger(L, -1)) {
    out[0] = out[1] = lua_tointeger(L, -1);
  } else if (lua_istable(L, -1)) {
    for (int k = 0; k < 2; k++) {
      lua_geti(L, -1, k + 1);
      if (!lua_isinteger(L, -1)) luaL_error(L, "conv2d: option '%s' must be an integer or a pair of integers", field);
      out[k] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnil(L, -1)) {
    luaL_error(L, "conv2d: option '%s' must be an integer or a pair of integers", field);
  }
  lua_pop(L, 1);
}

static int f_conv2d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1), *w = lc_check(L, 2), *b = lc_opt(L, 3);
  cc_conv2d_opts o;
  read_pair(L, 4, "stride", 1, o.stride);
  read_pair(L, 4, "padding", 0, o.padding);
  read_pair(L, 4, "dilation", 1, o.dilation);
  o.groups = (int64_t)lc_opt_number(L, 4, "groups", 1);
  return lc_push(L, cc_conv2d(x, w, b, &o));
}

/* (x, w, b, {stride, padding, output_padding, dilation, groups}): numbers or {h, w} pairs */
static int f_conv_transpose2d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1), *w = lc_check(L, 2), *b = lc_opt(L, 3);
  cc_conv_transpose2d_opts o;
  read_pair(L, 4, "stride", 1, o.stride);
  read_pair(L, 4, "padding", 0, o.padding);
  read_pair(L, 4, "output_padding", 0, o.output_padding);
  read_pair(L, 4, "dilation", 1, o.dilation);
  o.groups = (int64_t)lc_opt_number(L, 4, "groups", 1);
  return lc_push(L, cc_conv_transpose2d(x, w, b, &o));
}

/* (x, w, b, {stride, padding, dilation, groups[, output_padding]}): numbers */
static void read_conv1d_opts(lua_State *L, int idx, cc_conv1d_opts *o) {
  o->stride = (int64_t)lc_opt_number(L, idx, "stride", 1);
  o->padding = (int64_t)lc_opt_number(L, idx, "padding", 0);
  o->dilation = (int64_t)lc_opt_number(L, idx, "dilation", 1);
  o->groups = (int64_t)lc_opt_number(L, idx, "groups", 1);
  o->output_padding = (int64_t)lc_opt_number(L, idx, "output_padding", 0);
}
static int f_conv1d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1), *w = lc_check(L, 2), *b = lc_opt(L, 3);
  cc_conv1d_opts o;
  read_conv1d_opts(L, 4, &o);
  return lc_push(L, cc_conv1d(x, w, b, &o));
}
static int f_conv_transpose1d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1), *w = lc_check(L, 2), *b = lc_opt(L, 3);
  cc_conv1d_opts o;
  read_conv1d_opts(L, 4, &o);
  return lc_push(L, cc_conv_transpose1d(x, w, b, &o));
}

static int f_pad(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  int64_t pads[2 * CC_MAX_DIMS];
  int n = (int)luaL_len(L, 2);
  if (n % 2 || n == 0 || n > 2 * CC_MAX_DIMS) return luaL_argerror(L, 2, "pad: expected an even number of paddings (left, right, top, bottom, ...)");
  for (int k = 0; k < n; k++) {
    lua_geti(L, 2, k + 1);
    if (!lua_isinteger(L, -1)) return luaL_argerror(L, 2, "paddings must be integers");
    pads[k] = lua_tointeger(L, -1);
    lua_pop(L, 1);
  }
  double value = luaL_optnumber(L, 3, 0);
  if (lua_istable(L, 3)) value = lc_opt_number(L, 3, "value", 0);
  return lc_push(L, cc_pad(x, n / 2, pads, value));
}

static int f_adaptive_avg_pool2d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  int64_t oh, ow;
  if (lua_istable(L, 2)) {
    lua_geti(L, 2, 1);
    lua_geti(L, 2, 2);
    oh = luaL_checkinteger(L, -2);
    ow = luaL_checkinteger(L, -1);
    lua_pop(L, 2);
  } else {
    oh = ow = luaL_checkinteger(L, 2);
  }
  return lc_push(L, cc_adaptive_avg_pool2d(x, oh, ow));
}

/* ---- indexing and max pooling: dims 1-based, indices int64 and 0-based ---- */
/* index_select(x, dim, index (1-D)), gather(x, dim, index (x's rank)) */
static int f_index_select(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  return lc_push(L, cc_index_select(x, lc_dim(L, 2, x->ndim), lc_check(L, 3)));
}
static int f_gather(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  return lc_push(L, cc_gather(x, lc_dim(L, 2, x->ndim), lc_check(L, 3)));
}

/* embedding(indices int64 (...), weight (V,D)[, padding_idx | {padding_idx =}]) -> (..., D); a negative
   padding_idx counts from the end, as torch's */
static int f_embedding(lua_State *L) {
  cc_tensor *idx = lc_check(L, 1), *w = lc_check(L, 2);
  int64_t pad = 0;
  bool has_pad = false;
  if (lua_istable(L, 3)) lua_getfield(L, 3, "padding_idx");
  else if (lua_isnoneornil(L, 3)) lua_pushnil(L);
  else lua_pushvalue(L, 3);
  if (!lua_isnil(L, -1)) {
    if (!lua_isinteger(L, -1)) return luaL_argerror(L, 3, "padding_idx must be an integer");
    pad = lua_tointeger(L, -1);
    has_pad = true;
    if (pad < 0 && w->ndim == 2) pad += w->shape[0];
  }
  lua_pop(L, 1);
  return lc_push(L, cc_embedding(idx, w, has_pad ? &pad : NULL));
}

/* an integer or a pair of integers at stack index idx (none/nil: def, def) */
static void pool_pair(lua_State *L, int idx, const char *what, int64_t def, int64_t *out) {
  out[0] = out[1] = def;
  if (lua_isinteger(L, idx)) {
    out[0] = out[1] = lua_tointeger(L, idx);
  } else if (lua_istable(L, idx) && luaL_len(L, idx) == 2) {
    for (int k = 0; k < 2; k++) {
      lua_geti(L, idx, k + 1);
      if (!lua_isinteger(L, -1)) luaL_error(L, "max_pool2d: %s must be an integer or a pair of integers", what);
      out[k] = lua_tointeger(L, -1);
      lua_pop(L, 1);
    }
  } else if (!lua_isnoneornil(L, idx)) {
    luaL_error(L, "max_pool2d: %s must be an integer or a pair of integers", what);
  }
}

/* max_pool2d(x, kernel_size[, {stride = kernel_size, padding = 0, dilation = 1, ceil_mode = false,
   return_indices = false}]) -> values[, int64 indices into H*W] */
static int f_max_pool2d(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "max_pool2d needs a kernel size");
  if (!lua_isnoneornil(L, 3) && !lua_istable(L, 3)) return luaL_argerror(L, 3, "options must be a table");
  cc_max_pool2d_opts o;
  memset(&o, 0, sizeof o);
  pool_pair(L, 2, "kernel_size", 1, o.kernel);
  const char *fields[3] = {"stride", "padding", "dilation"};
  int64_t *dst[3] = {o.stride, o.padding, o.dilation};
  int64_t defs[3] = {0, 0, 1};
  for (int k = 0; k < 3; k++) {
    if (lua_istable(L, 3)) lua_getfield(L, 3, fields[k]);
    else lua_pushnil(L);
    pool_pair(L, -1, fields[k], defs[k], dst[k]);
    lua_pop(L, 1);
  }
  if (lua_istable(L, 3)) {
    lua_getfield(L, 3, "stride");
    if (lua_isnil(L, -1)) memcpy(o.stride, o.kernel, sizeof o.stride); /* stride defaults to the kernel size */
    lua_pop(L, 1);
  } else {
    memcpy(o.stride, o.kernel, sizeof o.stride);
  }
  o.ceil_mode = lc_opt_bool(L, 3, "ceil_mode", false);
  bool with_indices = lc_opt_bool(L, 3, "return_indices", false);
  cc_tensor *v, *i;
  if (cc_max_pool2d(x, &o, &v, with_indices ? &i : NULL)) return lc_error(L);
  lc_push(L, v);
  if (!with_indices) return 1;
  lc_push(L, i);
  return 2;
}

static int f_batch_norm(lua_State *L) {
  cc_tensor *x = lc_check(L, 1), *rm = lc_opt(L, 2), *rv = lc_opt(L, 3), *w = lc_opt(L, 4), *b = lc_opt(L, 5);
  bool training = lua_toboolean(L, 6);
  double momentum = luaL_optnumber(L, 7, 0.1), eps = luaL_optnumber(L, 8, 1e-5);
  return lc_push(L, cc_batch_norm(x, rm, rv, w, b, training, momentum, eps));
}

static int f_layer_norm(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  int64_t shape[CC_MAX_DIMS];
  int n;
  if (lua_isinteger(L, 2)) {
    shape[0] = lua_tointeger(L, 2);
    n = 1;
  } else {
    luaL_checktype(L, 2, LUA_TTABLE);
    n = (int)luaL_len(L, 2);
    if (n < 1 || n > x->ndim) return luaL_argerror(L, 2, "normalized_shape must name 1..ndim trailing sizes");
    for (int k = 0; k < n; k++) {
      lua_geti(L, 2, k + 1);
      shape[k] = luaL_checkinteger(L, -1);
      lua_pop(L, 1);
    }
  }
  if (n > x->ndim) return luaL_argerror(L, 2, "normalized_shape has more dims than the input");
  for (int k = 0; k < n; k++)
    if (x->shape[x->ndim - n + k] != shape[k])
      return luaL_error(L, "layer_norm: normalized_shape does not match the input's trailing dims (%I vs %I at %d)",
                        (lua_Integer)shape[k], (lua_Integer)x->shape[x->ndim - n + k], k + 1);
  return lc_push(L, cc_layer_norm(x, n, lc_opt(L, 3), lc_opt(L, 4), luaL_optnumber(L, 5, 1e-5)));
}

/* (x, num_groups, weight, bias, eps = 1e-5), as F.group_norm */
static int f_group_norm(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  lua_Integer groups = luaL_checkinteger(L, 2);
  return lc_push(L, cc_group_norm(x, (int64_t)groups, lc_opt(L, 3), lc_opt(L, 4), luaL_optnumber(L, 5, 1e-5)));
}

static int f_linear(lua_State *L) { return lc_push(L, cc_linear(lc_check(L, 1), lc_check(L, 2), lc_opt(L, 3))); }
static int f_dropout(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  double p = luaL_optnumber(L, 2, 0.5);
  bool training = lua_isnoneornil(L, 3) ? true : lua_toboolean(L, 3);
  return lc_push(L, cc_dropout(x, p, training));
}
static int f_cross_entropy(lua_State *L) { return lc_push(L, cc_cross_entropy(lc_check(L, 1), lc_check(L, 2))); }

static int f_adam_step(lua_State *L) {
  /* adam_step(param, grad, m, v, lr, beta1, beta2, eps, weight_decay, step, decoupled) */
  int rc = cc_adam_step(lc_check(L, 1), lc_check(L, 2), lc_check(L, 3), lc_check(L, 4), luaL_checknumber(L, 5),
                        luaL_checknumber(L, 6), luaL_checknumber(L, 7), luaL_checknumber(L, 8),
                        luaL_checknumber(L, 9), luaL_checkinteger(L, 10), lua_toboolean(L, 11));
  if (rc) return lc_error(L);
  return 0;
}

/* ---- raw safetensors I/O ---- */
/* header(path) -> json string, data start offset, file size. No Lua call that can raise runs while
 * the file is open (a memory error there would leak the FILE): the header length is read first, the
 * buffer made with the file closed, then the file opened again for the header. */
static int f_st_header(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  FILE *f = fopen(path, "rb");
  if (!f) return luaL_error(L, "cannot open '%s': %s", path, strerror(errno));
  unsigned char len8[8];
  if (fread(len8, 1, 8, f) != 8) {
    fclose(f);
    return luaL_error(L, "'%s' is not a safetensors file: truncated before its header length", path);
  }
  uint64_t n = 0;
  for (int k = 7; k >= 0; k--) n = (n << 8) | len8[k];
  fseek(f, 0, SEEK_END);
  long size = ftell(f);
  fclose(f);
  if (n == 0 || n > 100000000ULL || (long)(8 + n) > size) {
    return luaL_error(L, "'%s' is not a safetensors file: header length %I does not fit the file (%I bytes)", path,
                      (lua_Integer)n, (lua_Integer)size);
  }
  luaL_Buffer b;
  char *dst = luaL_buffinitsize(L, &b, (size_t)n);
  f = fopen(path, "rb");
  if (!f) return luaL_error(L, "cannot open '%s': %s", path, strerror(errno));
  size_t got = fseek(f, 8, SEEK_SET) == 0 ? fread(dst, 1, (size_t)n, f) : 0;
  fclose(f);
  if (got != n) return luaL_error(L, "'%s': truncated header", path);
  luaL_pushresultsize(&b, (size_t)n);
  lua_pushinteger(L, (lua_Integer)(8 + n));
  lua_pushinteger(L, size);
  return 3;
}

/* read_tensor(path, dtype_name, shape, abs_begin, abs_end) */
static int f_st_read(lua_State *L) {
  const char *path = luaL_checkstring(L, 1), *dt = luaL_checkstring(L, 2);
  int64_t shape[CC_MAX_DIMS];
  luaL_checktype(L, 3, LUA_TTABLE);
  int ndim = (int)luaL_len(L, 3);
  if (ndim > CC_MAX_DIMS) return luaL_error(L, "safetensors: tensor with %d dims (at most %d)", ndim, CC_MAX_DIMS);
  for (int k = 0; k < ndim; k++) {
    lua_geti(L, 3, k + 1);
    shape[k] = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
  }
  lua_Integer begin = luaL_checkinteger(L, 4), end = luaL_checkinteger(L, 5);
  size_t src_size;
  cc_dtype out_dt;
  if (!strcmp(dt, "F32")) { src_size = 4; out_dt = CC_FLOAT32; }
  else if (!strcmp(dt, "F64")) { src_size = 8; out_dt = CC_FLOAT64; }
  else if (!strcmp(dt, "I64")) { src_size = 8; out_dt = CC_INT64; }
  else if (!strcmp(dt, "F16") || !strcmp(dt, "BF16")) { src_size = 2; out_dt = CC_FLOAT32; }
  else if (!strcmp(dt, "I32")) { src_size = 4; out_dt = CC_INT64; }
  else if (!strcmp(dt, "U8") || !strcmp(dt, "BOOL") || !strcmp(dt, "I8")) { src_size = 1; out_dt = CC_INT64; }
  else return luaL_error(L, "safetensors: unsupported dtype %s", dt);
  cc_tensor *t = cc_empty(ndim, shape, out_dt, CC_CPU);
  if (!t) return lc_error(L);
  int64_t n = cc_numel(t);
  if ((lua_Integer)((size_t)n * src_size) != end - begin) {
    cc_release(t);
    return luaL_error(L, "safetensors: byte range of %I bytes does not match %I elements of %s",
                      (lua_Integer)(end - begin), (lua_Integer)n, dt);
  }
  lc_push(L, t);
  FILE *f = fopen(path, "rb");
  if (!f) return luaL_error(L, "cannot open '%s': %s", path, strerror(errno));
  void *raw = src_size == cc_dtype_size(out_dt) ? t->storage->data : malloc((size_t)(end - begin) + 1);
  size_t got = 0;
  if (raw && fseek(f, (long)begin, SEEK_SET) == 0) got = fread(raw, 1, (size_t)(end - begin), f);
  fclose(f);
  if (!raw) return luaL_error(L, "safetensors: out of memory");
  if (got != (size_t)(end - begin)) {
    if (raw != t->storage->data) free(raw);
    return luaL_error(L, "safetensors: '%s' is truncated", path);
  }
  if (raw != t->storage->data) {
    float *o = t->storage->data;
    int64_t *oi = t->storage->data;
    const uint16_t *h = raw;
    for (int64_t k = 0; k < n; k++) {
      if (!strcmp(dt, "F16")) o[k] = cc_half_to_float(h[k]);
      else if (!strcmp(dt, "BF16")) o[k] = cc_bf16_to_float(h[k]);
      else if (!strcmp(dt, "I32")) oi[k] = ((const int32_t *)raw)[k];
      else if (!strcmp(dt, "I8")) oi[k] = ((const int8_t *)raw)[k];
      else oi[k] = ((const uint8_t *)raw)[k];
    }
    free(raw);
  }
  return 1;
}

/* write(path, header_json, {tensor, ...}, {dtype_name, ...}) ; data in the given order; atomic: the
 * bytes go to "<path>.tmp", every write, the flush and the close are checked, and only a complete
 * file is renamed over path; on any failure the temporary file is removed, path is left as it was
 * and the error names path and the cause. The arguments are checked, and everything Lua has to
 * allocate is made, before the file is opened: nothing raises while it is open. */
static int f_st_write(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  size_t hlen;
  const char *header = luaL_checklstring(L, 2, &hlen);
  luaL_checktype(L, 3, LUA_TTABLE);
  luaL_checktype(L, 4, LUA_TTABLE);
  int n = (int)luaL_len(L, 3);
  if (n < 0 || n > 10000000) return luaL_error(L, "save '%s': %d tensors", path, n);
  cc_tensor **ts = lua_newuserdatauv(L, sizeof *ts * (size_t)(n ? n : 1), 0);
  bool *half = lua_newuserdatauv(L, sizeof *half * (size_t)(n ? n : 1), 0);
  for (int k = 1; k <= n; k++) {
    lua_geti(L, 3, k);
    lua_geti(L, 4, k);
    ts[k - 1] = lc_check(L, -2);
    half[k - 1] = !strcmp(luaL_checkstring(L, -1), "F16");
    lua_pop(L, 2);
  }
  size_t plen = strlen(path);
  char *tmp = lua_newuserdatauv(L, plen + 5, 0);
  memcpy(tmp, path, plen);
  memcpy(tmp + plen, ".tmp", 5);
  FILE *f = fopen(tmp, "wb");
  if (!f) return luaL_error(L, "cannot write '%s': %s", path, strerror(errno));
  int err = 0;
  size_t padded = (hlen + 7) & ~(size_t)7;
  unsigned char len8[8];
  for (int k = 0; k < 8; k++) len8[k] = (unsigned char)(((uint64_t)padded >> (8 * k)) & 0xff);
  bool ok = fwrite(len8, 1, 8, f) == 8 && fwrite(header, 1, hlen, f) == hlen;
  for (size_t k = hlen; ok && k < padded; k++) ok = fputc(' ', f) != EOF;
  if (!ok) err = errno;
  bool oom = false;
  for (int k = 0; ok && k < n; k++) {
    cc_tensor *c = cc_to_device(ts[k], CC_CPU), *cc = c ? cc_contiguous(c) : NULL;
    cc_release(c);
    if (!cc) {
      ok = false;
      oom = true;
      break;
    }
    int64_t m = cc_numel(cc);
    if (half[k]) {
      for (int64_t i = 0; ok && i < m; i++) {
        uint16_t h = cc_float_to_half((float)cc_get_flat(cc, i));
        ok = fwrite(&h, 2, 1, f) == 1;
      }
    } else {
      ok = fwrite(cc_data_ptr(cc), cc_dtype_size(cc->dtype), (size_t)m, f) == (size_t)m || m == 0;
    }
    if (!ok) err = errno;
    cc_release(cc);
  }
  if (fflush(f) != 0 && ok) ok = false, err = errno;
  if (fclose(f) != 0 && ok) ok = false, err = errno;
  if (ok && rename(tmp, path) != 0) ok = false, err = errno;
  if (!ok) {
    remove(tmp);
    if (oom) return luaL_error(L, "cannot write '%s': %s", path, cc_last_error());
    return luaL_error(L, "cannot write '%s': %s", path, strerror(err ? err : EIO));
  }
  return 0;
}

/* ---- cocola.cuda (lua/cocola/cuda.lua wraps these): queries and settings of the CUDA backend ---- */
static int f_cuda_built(lua_State *L) {
  lua_pushboolean(L, cc_cuda_backend_init != NULL);
  return 1;
}
static int f_cuda_init_error(lua_State *L) {
  const char *why = cc_cuda_init_error ? cc_cuda_init_error()
                                       : "this build of cocola has no CUDA backend (built with COCOLA_CUDA=OFF or without nvcc)";
  if (!why) return 0;
  lua_pushstring(L, why);
  return 1;
}
static int f_cuda_device_count(lua_State *L) {
  lua_pushinteger(L, cc_cuda_device_count ? cc_cuda_device_count() : 0);
  return 1;
}
static int f_cuda_device_name(lua_State *L) {
  lua_pushstring(L, cc_cuda_device_name && cc_device_available(CC_CUDA) ? cc_cuda_device_name() : "");
  return 1;
}
static int f_cuda_synchronize(lua_State *L) {
  if (cc_cuda_synchronize && cc_cuda_synchronize()) return lc_error(L);
  return 0;
}
static int f_cuda_profiler(lua_State *L) {
  int start = lua_toboolean(L, 1);
  if (!cc_cuda_profiler) return luaL_error(L, "cuda profiler: this build has no CUDA backend");
  if (cc_cuda_profiler(start)) return lc_error(L);
  return 0;
}
static int f_cuda_memory_stats(lua_State *L) {
  const char *names[32];
  int64_t values[32];
  int n = cc_cuda_memory_stats ? cc_cuda_memory_stats(names, values, 32) : 0;
  lua_createtable(L, 0, n + 1);
  for (int k = 0; k < n; k++) {
    lua_pushinteger(L, values[k]);
    lua_setfield(L, -2, names[k]);
  }
  lua_pushinteger(L, cc_live_bytes(CC_CUDA));
  lua_setfield(L, -2, "live_bytes");
  return 1;
}
static int f_cuda_reset_peak_memory_stats(lua_State *L) {
  (void)L;
  if (cc_cuda_reset_peak_memory_stats) cc_cuda_reset_peak_memory_stats();
  return 0;
}
static int f_cuda_empty_cache(lua_State *L) {
  (void)L;
  if (cc_cuda_empty_cache) cc_cuda_empty_cache();
  return 0;
}
static int f_cuda_set_tf32(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  if (cc_cuda_set_tf32) cc_cuda_set_tf32(on);
  return 0;
}
static int f_cuda_get_tf32(lua_State *L) {
  lua_pushboolean(L, cc_cuda_get_tf32 && cc_cuda_get_tf32());
  return 1;
}
static int f_cuda_set_autocast_bf16(lua_State *L) {
  bool on = lua_toboolean(L, 1);
  if (cc_cuda_set_autocast_bf16) cc_cuda_set_autocast_bf16(on);
  return 0;
}
static int f_cuda_get_autocast_bf16(lua_State *L) {
  lua_pushboolean(L, cc_cuda_get_autocast_bf16 && cc_cuda_get_autocast_bf16());
  return 1;
}
static int f_cuda_conv_cache_size(lua_State *L) {
  lua_pushinteger(L, cc_cuda_conv_cache_size ? cc_cuda_conv_cache_size() : 0);
  return 1;
}
/* the op table: {NAME = true | false (has a CUDA kernel)} for every op (for the parity spec) */
static int f_cuda_ops(lua_State *L) {
  lua_createtable(L, 0, CC_OP_COUNT);
  for (int op = 0; op < CC_OP_COUNT; op++) {
    lua_pushboolean(L, cc_kernel_supported((cc_op)op, CC_CUDA));
    lua_setfield(L, -2, cc_op_names[op]);
  }
  return 1;
}
static int cuda_missing(lua_State *L) {
  return luaL_error(L, "CUDA is not available: %s",
                    cc_cuda_init_error && cc_cuda_init_error() ? cc_cuda_init_error() : "no CUDA backend in this build");
}
static int f_cuda_event_new(lua_State *L) {
  if (!cc_cuda_event_new || !cc_device_available(CC_CUDA)) return cuda_missing(L);
  int e = cc_cuda_event_new();
  if (e < 0) return lc_error(L);
  lua_pushinteger(L, e);
  return 1;
}
static int f_cuda_event_record(lua_State *L) {
  int e = (int)luaL_checkinteger(L, 1);
  if (!cc_cuda_event_record) return cuda_missing(L);
  if (cc_cuda_event_record(e)) return lc_error(L);
  return 0;
}
static int f_cuda_event_synchronize(lua_State *L) {
  int e = (int)luaL_checkinteger(L, 1);
  if (!cc_cuda_event_synchronize) return cuda_missing(L);
  if (cc_cuda_event_synchronize(e)) return lc_error(L);
  return 0;
}
static int f_cuda_event_elapsed(lua_State *L) {
  int a = (int)luaL_checkinteger(L, 1), b = (int)luaL_checkinteger(L, 2);
  if (!cc_cuda_event_elapsed_ms) return cuda_missing(L);
  double ms = cc_cuda_event_elapsed_ms(a, b);
  if (ms < 0) return lc_error(L);
  lua_pushnumber(L, ms);
  return 1;
}
static int f_cuda_event_free(lua_State *L) {
  int e = (int)luaL_checkinteger(L, 1);
  if (cc_cuda_event_free) cc_cuda_event_free(e);
  return 0;
}

static const luaL_Reg cuda_functions[] = {
    {"_cuda_built", f_cuda_built}, {"_cuda_init_error", f_cuda_init_error},
    {"_cuda_device_count", f_cuda_device_count}, {"_cuda_device_name", f_cuda_device_name},
    {"_cuda_synchronize", f_cuda_synchronize}, {"_cuda_profiler", f_cuda_profiler}, {"_cuda_memory_stats", f_cuda_memory_stats},
    {"_cuda_reset_peak_memory_stats", f_cuda_reset_peak_memory_stats}, {"_cuda_empty_cache", f_cuda_empty_cache},
    {"_cuda_set_tf32", f_cuda_set_tf32}, {"_cuda_get_tf32", f_cuda_get_tf32},
    {"_cuda_set_autocast_bf16", f_cuda_set_autocast_bf16}, {"_cuda_get_autocast_bf16", f_cuda_get_autocast_bf16},
    {"_cuda_conv_cache_size", f_cuda_conv_cache_size}, {"_cuda_ops", f_cuda_ops},
    {"_cuda_event_new", f_cuda_event_new},
    {"_cuda_event_record", f_cuda_event_record}, {"_cuda_event_synchronize", f_cuda_event_synchronize},
    {"_cuda_event_elapsed", f_cuda_event_elapsed}, {"_cuda_event_free", f_cuda_event_free}, {NULL, NULL}};

/* ---- function nodes: a backward written in Lua (activation checkpointing) ----
 * The Lua function is kept in the registry; it runs on the Lua thread that called backward (set by
 * lc_backward_begin). A node's registry slot is freed later, on a thread we are running on, because a
 * graph can be released from a finalizer. */
typedef struct {
  int ref;
  char name[64];
} lua_function_node;

static _Thread_local lua_State *backward_thread;
static int *stale_refs;
static int n_stale, cap_stale;

static void drain_stale_refs(lua_State *L) {
  while (n_stale > 0) luaL_unref(L, LUA_REGISTRYINDEX, stale_refs[--n_stale]);
}

void lc_backward_begin(lua_State *L) {
  backward_thread = L;
  drain_stale_refs(L);
}

static void lua_function_free(void *user) {
  lua_function_node *f = user;
  if (!f) return;
  if (n_stale == cap_stale) {
    int cap = cap_stale ? 2 * cap_stale : 64;
    int *grown = realloc(stale_refs, (size_t)cap * sizeof *grown);
    if (grown) {
      stale_refs = grown;
      cap_stale = cap;
    }
  }
  if (n_stale < cap_stale) stale_refs[n_stale++] = f->ref; /* else the slot leaks: no memory to note it */
  free(f);
}

static int lua_function_backward(void *user, cc_tensor *g, int n, cc_tensor **gi) {
  lua_function_node *f = user;
  lua_State *L = backward_thread;
  if (!L) {
    cc_set_error("%s: backward must be started from Lua", f->name);
    return -1;
  }
  int top = lua_gettop(L);
  if (!lua_checkstack(L, n + 4)) {
    cc_set_error("%s: Lua stack overflow", f->name);
    return -1;
  }
  lua_rawgeti(L, LUA_REGISTRYINDEX, f->ref);
  lc_tensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->t = cc_retain(g);
  luaL_setmetatable(L, CC_TENSOR_MT);
  bool was = cc_set_grad_enabled(true);
  int rc = lua_pcall(L, 1, n, 0);
  cc_set_grad_enabled(was);
  lc_backward_begin(L); /* a nested backward may have replaced it */
  if (rc != LUA_OK) {
    cc_set_error("%s", lua_tostring(L, -1) ? lua_tostring(L, -1) : "error in a Lua backward");
    lua_settop(L, top);
    return -1;
  }
  for (int i = 0; i < n; i++) {
    int idx = top + 1 + i;
    if (lua_isnil(L, idx)) continue;
    lc_tensor *r = luaL_testudata(L, idx, CC_TENSOR_MT);
    if (!r || !r->t) {
      cc_set_error("%s: the backward returned a %s for input %d, not a tensor or nil", f->name,
                   luaL_typename(L, idx), i + 1);
      for (int k = 0; k < i; k++) {
        cc_release(gi[k]);
        gi[k] = NULL;
      }
      lua_settop(L, top);
      return -1;
    }
    gi[i] = cc_retain(r->t);
  }
  lua_settop(L, top);
  return 0;
}

/* backward_profile(true | false | nil) -> {name = {seconds =, calls =}} of the passes so far (then reset) */
static int f_backward_profile(lua_State *L) {
  if (lua_isboolean(L, 1)) cc_backward_profile_enable(lua_toboolean(L, 1));
  lua_newtable(L);
  const char *name;
  double seconds;
  int64_t calls;
  for (int i = 0; cc_backward_profile_read(i, &name, &seconds, &calls); i++) {
    lua_createtable(L, 0, 2);
    lua_pushnumber(L, seconds);
    lua_setfield(L, -2, "seconds");
    lua_pushinteger(L, (lua_Integer)calls);
    lua_setfield(L, -2, "calls");
    lua_setfield(L, -2, name);
  }
  cc_backward_profile_reset();
  return 1;
}

/* function_node(out, {inputs...}, backward(grad_out) -> grad_1, ..., grad_n[, name]) -> out */
static int f_function_node(lua_State *L) {
  cc_tensor *out = lc_check(L, 1);
  luaL_checktype(L, 2, LUA_TTABLE);
  luaL_checktype(L, 3, LUA_TFUNCTION);
  const char *name = luaL_optstring(L, 4, "FunctionBackward");
  drain_stale_refs(L);
  int n = (int)luaL_len(L, 2);
  if (n > CC_NODE_MAX_INPUTS)
    return luaL_argerror(L, 2, lua_pushfstring(L, "at most %d tensor inputs", CC_NODE_MAX_INPUTS));
  cc_tensor *inputs[CC_NODE_MAX_INPUTS];
  for (int i = 0; i < n; i++) {
    lua_geti(L, 2, i + 1);
    lc_tensor *r = luaL_testudata(L, -1, CC_TENSOR_MT);
    if (!r || !r->t) return luaL_argerror(L, 2, lua_pushfstring(L, "input %d is not a tensor", i + 1));
    inputs[i] = r->t;
    lua_pop(L, 1);
  }
  lua_function_node *f = calloc(1, sizeof *f);
  if (!f) return luaL_error(L, "function_node: out of host memory");
  snprintf(f->name, sizeof f->name, "%s", name);
  lua_pushvalue(L, 3);
  f->ref = luaL_ref(L, LUA_REGISTRYINDEX);
  if (cc_function_attach(out, f->name, n, inputs, lua_function_backward, f, lua_function_free)) return lc_error(L);
  /* attach copies the name pointer: keep f alive with the node (it is; f->name lives in f) */
  lua_settop(L, 1);
  return 1;
}

static const luaL_Reg functions[] = {
    {"zeros", f_zeros}, {"ones", f_ones}, {"full", f_full}, {"arange", f_arange}, {"rand", f_rand},
    {"randn", f_randn}, {"randint", f_randint}, {"uniform_", f_uniform_}, {"normal_", f_normal_},
    {"tensor", f_tensor}, {"is_tensor", f_is_tensor}, {"manual_seed", f_manual_seed},
    {"seed", f_seed}, {"initial_seed", f_initial_seed},
    {"function_node", f_function_node}, {"backward_profile", f_backward_profile}, {"get_rng_state", f_rng_state}, {"set_rng_state", f_set_rng_state}, {"set_num_threads", f_set_num_threads}, {"set_conv_backend", f_set_conv_backend}, {"conv_backend", f_conv_backend},
    {"get_num_threads", f_get_num_threads}, {"blas_threading", f_blas_threading}, {"set_grad_enabled", f_set_grad_enabled},
    {"is_grad_enabled", f_is_grad_enabled}, {"live_tensors", f_live_tensors}, {"live_bytes", f_live_bytes},
    {"device_available", f_device_available}, {"wall_time", f_wall_time}, {"empty_cache", f_empty_cache}, {"cached_bytes", f_cached_bytes}, {"cat", f_cat}, {"stack", f_stack}, {"matmul", f_matmul},
    {"bmm", f_bmm}, {"where", f_where}, {"conv2d", f_conv2d}, {"pad", f_pad},
    {"conv_transpose2d", f_conv_transpose2d}, {"conv1d", f_conv1d}, {"conv_transpose1d", f_conv_transpose1d},
    {"group_norm", f_group_norm},
    {"adaptive_avg_pool2d", f_adaptive_avg_pool2d}, {"index_select", f_index_select}, {"gather", f_gather},
    {"embedding", f_embedding}, {"max_pool2d", f_max_pool2d}, {"batch_norm", f_batch_norm}, {"layer_norm", f_layer_norm},
    {"linear", f_linear}, {"dropout", f_dropout}, {"cross_entropy", f_cross_entropy}, {"adam_step", f_adam_step},
    {"_st_header", f_st_header}, {"_st_read", f_st_read}, {"_st_write", f_st_write}, {NULL, NULL}};

void lc_open_functions(lua_State *L) {
  luaL_setfuncs(L, functions, 0);
  luaL_setfuncs(L, cuda_functions, 0);
}

int luaopen_cocola_core(lua_State *L) {
  cc_init();
  lua_newtable(L);
  lc_open_tensor(L); /* methods table */
  lua_setfield(L, -2, "Tensor");
  lc_open_functions(L);
  lc_open_audio(L);
  lc_open_torch(L);
  lc_open_frechet(L);
  lc_open_distributed(L);
  return 1;
}
