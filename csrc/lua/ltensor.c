/* ltensor.c — the Tensor userdata: lifetime (__gc/__close share one idempotent release),
 * properties (t.shape, t.grad), arithmetic metamethods, and the methods written in C (views,
 * math, reductions, autograd, conversions). More methods are added in Lua (lua/cocola/tensor.lua). */
#include "lbind.h"
/* the optional CUDA backend, bound weakly (NULL in a build without it): why t:cuda() cannot work */
#define CC_CUDA_API __attribute__((weak))
#include "cuda/cc_cuda.h"

#include <math.h>

/* ---- userdata plumbing ----
 * Lua sees a tensor as a few bytes of userdata, so its collector would let gigabytes of dead
 * tensors pile up (every new block then page-faults). After each 256 MiB allocated since the last
 * collection, a full collection runs: it costs about a millisecond per ten thousand Lua objects. */
#define GC_NUDGE_BYTES (256LL << 20)
static int64_t bytes_at_last_gc = 0;

void lc_nudge_gc(lua_State *L) {
  int64_t total = cc_total_allocated_bytes();
  if (total - bytes_at_last_gc > GC_NUDGE_BYTES) {
    bytes_at_last_gc = total;
    lua_gc(L, LUA_GCCOLLECT);
  }
}

bool lc_is(lua_State *L, int idx) { return luaL_testudata(L, idx, CC_TENSOR_MT) != NULL; }

cc_tensor *lc_check(lua_State *L, int idx) {
  lc_tensor *u = luaL_checkudata(L, idx, CC_TENSOR_MT);
  if (!u->t) luaL_argerror(L, idx, "tensor was closed");
  return u->t;
}

cc_tensor *lc_opt(lua_State *L, int idx) { return lua_isnoneornil(L, idx) ? NULL : lc_check(L, idx); }

int lc_error(lua_State *L) { return luaL_error(L, "%s", cc_last_error()); }

int lc_push(lua_State *L, cc_tensor *t) {
  if (!t) return lc_error(L);
  lc_tensor *u = lua_newuserdatauv(L, sizeof *u, 0);
  u->t = t;
  luaL_setmetatable(L, CC_TENSOR_MT);
  lc_nudge_gc(L);
  return 1;
}

cc_tensor *lc_tensor_or_number(lua_State *L, int idx, const cc_tensor *like) {
  if (lua_type(L, idx) == LUA_TNUMBER) {
    cc_tensor *s = cc_scalar(lua_tonumber(L, idx), like->dtype, like->storage->device);
    if (!s) lc_error(L);
    return s;
  }
  if (lua_type(L, idx) == LUA_TBOOLEAN) {
    cc_tensor *s = cc_scalar(lua_toboolean(L, idx) ? 1 : 0, like->dtype, like->storage->device);
    if (!s) lc_error(L);
    return s;
  }
  return cc_retain(lc_check(L, idx));
}

int lc_dim(lua_State *L, int idx, int ndim) {
  lua_Integer d = luaL_checkinteger(L, idx);
  if (d == 0) luaL_argerror(L, idx, "dims are 1-based (use 1 for the first, -1 for the last)");
  int c = d > 0 ? (int)d - 1 : (int)d;
  int n = cc_normalize_dim(c, ndim, "dim");
  if (n < 0) luaL_argerror(L, idx, cc_last_error());
  return n;
}

int lc_shape(lua_State *L, int idx, int64_t *shape) {
  int ndim = 0;
  if (lua_istable(L, idx)) {
    int n = (int)luaL_len(L, idx);
    if (n > CC_MAX_DIMS) luaL_argerror(L, idx, "too many dimensions");
    for (int k = 1; k <= n; k++) {
      lua_geti(L, idx, k);
      int isnum;
      lua_Integer v = lua_tointegerx(L, -1, &isnum);
      lua_pop(L, 1);
      if (!isnum) luaL_argerror(L, idx, "shape entries must be integers");
      shape[ndim++] = v;
    }
    return ndim;
  }
  int top = lua_gettop(L);
  for (int k = idx; k <= top; k++) {
    if (ndim >= CC_MAX_DIMS) luaL_argerror(L, k, "too many dimensions");
    shape[ndim++] = luaL_checkinteger(L, k);
  }
  return ndim;
}

int lc_opt_dtype(lua_State *L, int idx, const char *field, int def) {
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, field);
  int dt = def;
  if (!lua_isnil(L, -1)) {
    const char *name = luaL_checkstring(L, -1);
    dt = cc_dtype_from_name(name);
    if (dt < 0) luaL_error(L, "unknown dtype '%s' (expected float32, float64 or int64)", name);
  }
  lua_pop(L, 1);
  return dt;
}

bool lc_opt_bool(lua_State *L, int idx, const char *field, bool def) {
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, field);
  bool v = lua_isnil(L, -1) ? def : lua_toboolean(L, -1);
  lua_pop(L, 1);
  return v;
}

double lc_opt_number(lua_State *L, int idx, const char *field, double def) {
  if (!lua_istable(L, idx)) return def;
  lua_getfield(L, idx, field);
  double v = lua_isnil(L, -1) ? def : luaL_checknumber(L, -1);
  lua_pop(L, 1);
  return v;
}

static int t_release(lua_State *L) {
  lc_tensor *u = luaL_checkudata(L, 1, CC_TENSOR_MT);
  if (u->t) {
    cc_release(u->t);
    u->t = NULL;
  }
  return 0;
}

/* ---- properties ---- */
static void push_shape(lua_State *L, const cc_tensor *t) {
  lua_createtable(L, t->ndim, 0);
  for (int d = 0; d < t->ndim; d++) {
    lua_pushinteger(L, t->shape[d]);
    lua_rawseti(L, -2, d + 1);
  }
}

/* t[i] (key at stack index 2): the view at the 1-based index i of the first dim (negative: from
   the end), without that dim, as t:select(1, i); a 1-d tensor gives a 0-d one */
static cc_tensor *first_dim_view(lua_State *L, cc_tensor *t) {
  int isint;
  lua_Integer i = lua_tointegerx(L, 2, &isint);
  if (!isint) luaL_error(L, "tensor index must be an integer, got %s", luaL_tolstring(L, 2, NULL));
  if (t->ndim == 0) luaL_error(L, "cannot index a 0-d tensor (t:item() reads its value)");
  if (i == 0) luaL_error(L, "tensor indices are 1-based (1 is the first, -1 the last)");
  if (i > t->shape[0] || i < -t->shape[0])
    luaL_error(L, "index %I is out of range for dimension 1 of size %I", i, (lua_Integer)t->shape[0]);
  cc_tensor *v = cc_select(t, 0, i > 0 ? i - 1 : i);
  if (!v) lc_error(L);
  return v;
}

static int t_index(lua_State *L) {
  /* methods first (upvalue 1), then t[i], then properties */
  lua_pushvalue(L, 2);
  lua_rawget(L, lua_upvalueindex(1));
  if (!lua_isnil(L, -1)) return 1;
  lua_pop(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) return lc_push(L, first_dim_view(L, lc_check(L, 1)));
  if (lua_type(L, 2) != LUA_TSTRING) return 0;
  const char *key = lua_tostring(L, 2);
  cc_tensor *t = lc_check(L, 1);
  if (!strcmp(key, "shape")) {
    push_shape(L, t);
    return 1;
  }
  if (!strcmp(key, "grad")) {
    if (!t->grad) return 0;
    return lc_push(L, cc_retain(t->grad));
  }
  if (!strcmp(key, "ndim")) {
    lua_pushinteger(L, t->ndim);
    return 1;
  }
  return 0;
}

static int t_newindex(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_type(L, 2) == LUA_TNUMBER) { /* t[i] = number | tensor: fills or copies (broadcast) into t[i] */
    bool is_number = lua_type(L, 3) == LUA_TNUMBER;
    if (!is_number && !lc_is(L, 3)) return luaL_typeerror(L, 3, "number or tensor");
    cc_tensor *src = is_number ? NULL : lc_check(L, 3);
    cc_tensor *view = first_dim_view(L, t);
    int rc = is_number ? cc_fill_(view, lua_tonumber(L, 3)) : cc_copy_(view, src);
    cc_release(view);
    if (rc) return lc_error(L);
    return 0;
  }
  const char *key = luaL_checkstring(L, 2);
  if (!strcmp(key, "grad")) {
    cc_tensor *g = lc_opt(L, 3);
    if (g && (!cc_same_shape(g, t) || g->dtype != t->dtype))
      return luaL_error(L, "grad: assigned gradient must have the tensor's shape and dtype");
    cc_release(t->grad);
    t->grad = g ? cc_retain(g) : NULL;
    return 0;
  }
  return luaL_error(L, "cannot set field '%s' of a tensor", key);
}

static int t_size(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    push_shape(L, t);
    return 1;
  }
  lua_pushinteger(L, t->shape[lc_dim(L, 2, t->ndim)]);
  return 1;
}

static int t_stride(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    lua_createtable(L, t->ndim, 0);
    for (int d = 0; d < t->ndim; d++) {
      lua_pushinteger(L, t->stride[d]);
      lua_rawseti(L, -2, d + 1);
    }
    return 1;
  }
  lua_pushinteger(L, t->stride[lc_dim(L, 2, t->ndim)]);
  return 1;
}

static int t_dim(lua_State *L) {
  lua_pushinteger(L, lc_check(L, 1)->ndim);
  return 1;
}
static int t_numel(lua_State *L) {
  lua_pushinteger(L, cc_numel(lc_check(L, 1)));
  return 1;
}
static int t_len(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (t->ndim == 0) return luaL_error(L, "len() of a 0-d tensor");
  lua_pushinteger(L, t->shape[0]);
  return 1;
}
static int t_dtype(lua_State *L) {
  lua_pushstring(L, cc_dtype_name(lc_check(L, 1)->dtype));
  return 1;
}
static int t_device(lua_State *L) {
  lua_pushstring(L, cc_device_name(lc_check(L, 1)->storage->device));
  return 1;
}
static int t_is_contiguous(lua_State *L) {
  lua_pushboolean(L, cc_is_contiguous(lc_check(L, 1)));
  return 1;
}
static int t_data_ptr(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(intptr_t)cc_data_ptr(lc_check(L, 1)));
  return 1;
}
static int t_storage_ptr(lua_State *L) {
  lua_pushinteger(L, (lua_Integer)(intptr_t)lc_check(L, 1)->storage->data);
  return 1;
}
static int t_storage_offset(lua_State *L) {
  lua_pushinteger(L, lc_check(L, 1)->offset);
  return 1;
}

static int t_item(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  double v;
  if (cc_item(t, &v)) return lc_error(L);
  if (t->dtype == CC_INT64) lua_pushinteger(L, (lua_Integer)v);
  else lua_pushnumber(L, v);
  return 1;
}

/* element at 0-based indices given as 1-based Lua integers: t:_at(i1, i2, ...) */
static int t_at(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (t->storage->device != CC_CPU) return luaL_error(L, "element access needs a CPU tensor");
  if (lua_gettop(L) - 1 != t->ndim) return luaL_error(L, "_at: expected %d indices", t->ndim);
  int64_t off = t->offset;
  for (int d = 0; d < t->ndim; d++) {
    lua_Integer i = luaL_checkinteger(L, d + 2);
    if (i < 1 || i > t->shape[d]) return luaL_argerror(L, d + 2, "index out of range");
    off += (i - 1) * t->stride[d];
  }
  switch (t->dtype) {
  case CC_FLOAT32: lua_pushnumber(L, ((float *)t->storage->data)[off]); break;
  case CC_FLOAT64: lua_pushnumber(L, ((double *)t->storage->data)[off]); break;
  default: lua_pushinteger(L, ((int64_t *)t->storage->data)[off]); break;
  }
  return 1;
}

/* nested Lua tables of the values */
static void push_nested(lua_State *L, const cc_tensor *t, int d, int64_t off) {
  if (d == t->ndim) {
    switch (t->dtype) {
    case CC_FLOAT32: lua_pushnumber(L, ((float *)t->storage->data)[off]); break;
    case CC_FLOAT64: lua_pushnumber(L, ((double *)t->storage->data)[off]); break;
    default: lua_pushinteger(L, ((int64_t *)t->storage->data)[off]); break;
    }
    return;
  }
  luaL_checkstack(L, 4, "tensor too deep");
  lua_createtable(L, (int)t->shape[d], 0);
  for (int64_t i = 0; i < t->shape[d]; i++) {
    push_nested(L, t, d + 1, off + i * t->stride[d]);
    lua_rawseti(L, -2, i + 1);
  }
}

static int t_totable(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  cc_tensor *h = cc_to_device(t, CC_CPU);
  if (!h) return lc_error(L);
  push_nested(L, h, 0, h->offset);
  cc_release(h);
  return 1;
}

/* ---- autograd ---- */
static int t_requires_grad(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnone(L, 2)) {
    lua_pushboolean(L, t->requires_grad);
    return 1;
  }
  if (cc_set_requires_grad(t, lua_toboolean(L, 2))) return lc_error(L);
  lua_settop(L, 1);
  return 1;
}

static int t_backward(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  cc_tensor *g = lc_is(L, 2) ? lc_check(L, 2) : NULL;
  int opts = lua_istable(L, 2) ? 2 : 3;
  bool retain = lc_opt_bool(L, opts, "retain_graph", false);
  lc_backward_begin(L);
  if (cc_backward(t, g, retain)) return lc_error(L);
  return 0;
}

static int t_detach(lua_State *L) { return lc_push(L, cc_detach(lc_check(L, 1))); }
static int t_zero_grad(lua_State *L) {
  cc_zero_grad(lc_check(L, 1));
  return 0;
}
static int t_grad_fn(lua_State *L) {
  const char *n = cc_grad_fn_name(lc_check(L, 1));
  if (!n) return 0;
  lua_pushstring(L, n);
  return 1;
}

/* ---- copies and conversions ---- */
static int t_clone(lua_State *L) { return lc_push(L, cc_clone(lc_check(L, 1))); }
static int t_contiguous(lua_State *L) { return lc_push(L, cc_contiguous(lc_check(L, 1))); }

static int t_copy_(lua_State *L) {
  cc_tensor *t = lc_check(L, 1), *src = lc_check(L, 2);
  if (cc_copy_(t, src)) return lc_error(L);
  lua_settop(L, 1);
  return 1;
}

static int t_fill_(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (cc_fill_(t, luaL_checknumber(L, 2))) return lc_error(L);
  lua_settop(L, 1);
  return 1;
}

static int t_to(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  const char *what = luaL_checkstring(L, 2);
  int dt = cc_dtype_from_name(what);
  if (dt >= 0) return lc_push(L, cc_to_dtype(t, (cc_dtype)dt));
  if (!strcmp(what, "cpu")) return lc_push(L, cc_to_device(t, CC_CPU));
  if (!strncmp(what, "cuda", 4)) {
    if (what[4] && strcmp(what + 4, ":0") != 0)
      return luaL_argerror(L, 2, "only one CUDA device is supported: use \"cuda\" or \"cuda:0\"");
    if (t->storage->device != CC_CUDA && !cc_device_available(CC_CUDA)) {
      if (!cc_cuda_init_error)
        return luaL_error(L, "cannot move a tensor to CUDA: this build of cocola has no CUDA backend "
                             "(built with COCOLA_CUDA=OFF or where nvcc was not found)");
      const char *why = cc_cuda_init_error();
      return luaL_error(L, "cannot move a tensor to CUDA: no usable CUDA device (%s)", why ? why : "unknown reason");
    }
    return lc_push(L, cc_to_device(t, CC_CUDA));
  }
  return luaL_argerror(L, 2, "expected a dtype (float32, float64, int64) or a device (cpu, cuda)");
}

/* ---- views ---- */
static int t_view(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  cc_tensor *t = lc_check(L, 1);
  int n = lc_shape(L, 2, shape);
  return lc_push(L, cc_view(t, n, shape));
}
static int t_reshape(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  cc_tensor *t = lc_check(L, 1);
  int n = lc_shape(L, 2, shape);
  return lc_push(L, cc_reshape(t, n, shape));
}
static int t_expand(lua_State *L) {
  int64_t shape[CC_MAX_DIMS];
  cc_tensor *t = lc_check(L, 1);
  int n = lc_shape(L, 2, shape);
  return lc_push(L, cc_expand(t, n, shape));
}
static int t_permute(lua_State *L) {
  int64_t dims[CC_MAX_DIMS];
  cc_tensor *t = lc_check(L, 1);
  int n = lc_shape(L, 2, dims);
  if (n != t->ndim) return luaL_error(L, "permute: expected %d dims, got %d", t->ndim, n);
  int perm[CC_MAX_DIMS];
  for (int d = 0; d < n; d++) {
    if (dims[d] == 0) return luaL_error(L, "permute: dims are 1-based");
    perm[d] = dims[d] > 0 ? (int)dims[d] - 1 : (int)dims[d] + n;
  }
  return lc_push(L, cc_permute(t, perm));
}
static int t_transpose(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_transpose(t, lc_dim(L, 2, t->ndim), lc_dim(L, 3, t->ndim)));
}
static int t_t(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (t->ndim != 2) return luaL_error(L, "t(): expects a 2-d tensor, got %d-d", t->ndim);
  return lc_push(L, cc_transpose(t, 0, 1));
}
static int t_narrow(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  int d = lc_dim(L, 2, t->ndim);
  lua_Integer start = luaL_checkinteger(L, 3), len = luaL_checkinteger(L, 4);
  if (start < 0 && t->ndim) start += t->shape[d] + 1;
  if (start < 1) return luaL_argerror(L, 3, "start is 1-based");
  return lc_push(L, cc_narrow(t, d, start - 1, len));
}
static int t_select(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  int d = lc_dim(L, 2, t->ndim);
  lua_Integer i = luaL_checkinteger(L, 3);
  if (i == 0) return luaL_argerror(L, 3, "indices are 1-based (use -1 for the last)");
  return lc_push(L, cc_select(t, d, i > 0 ? i - 1 : i));
}
static int t_unsqueeze(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_unsqueeze(t, lc_dim(L, 2, t->ndim + 1)));
}
static int t_squeeze(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_squeeze(t, lua_isnoneornil(L, 2) ? CC_ALL_DIMS : lc_dim(L, 2, t->ndim)));
}

/* ---- math ---- */
typedef cc_tensor *(*binary_fn)(cc_tensor *, cc_tensor *);

static int binary(lua_State *L, binary_fn fn) {
  /* either operand may be a number (metamethods) */
  cc_tensor *like = lc_is(L, 1) ? lc_check(L, 1) : lc_check(L, 2);
  cc_tensor *a = lc_tensor_or_number(L, 1, like);
  cc_tensor *b = lua_type(L, 2) == LUA_TNUMBER || lc_is(L, 2) ? lc_tensor_or_number(L, 2, like) : NULL;
  if (!b) {
    cc_release(a);
    return luaL_typeerror(L, 2, "tensor or number");
  }
  cc_tensor *out = fn(a, b);
  cc_release(a);
  cc_release(b);
  return lc_push(L, out);
}

static int t_add(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lc_is(L, 1)) return lc_push(L, cc_add_scalar(lc_check(L, 1), lua_tonumber(L, 2)));
  if (lua_type(L, 1) == LUA_TNUMBER) return lc_push(L, cc_add_scalar(lc_check(L, 2), lua_tonumber(L, 1)));
  return binary(L, cc_add);
}
static int t_sub(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lc_is(L, 1)) return lc_push(L, cc_add_scalar(lc_check(L, 1), -lua_tonumber(L, 2)));
  if (lua_type(L, 1) == LUA_TNUMBER) return lc_push(L, cc_rsub_scalar(lc_check(L, 2), lua_tonumber(L, 1)));
  return binary(L, cc_sub);
}
static int t_mul(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lc_is(L, 1)) return lc_push(L, cc_mul_scalar(lc_check(L, 1), lua_tonumber(L, 2)));
  if (lua_type(L, 1) == LUA_TNUMBER) return lc_push(L, cc_mul_scalar(lc_check(L, 2), lua_tonumber(L, 1)));
  return binary(L, cc_mul);
}
static int t_div(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lc_is(L, 1)) {
    cc_tensor *t = lc_check(L, 1);
    if (!cc_is_floating(t->dtype)) return luaL_error(L, "div: integer tensors are not supported (convert with :float() first)");
    return lc_push(L, cc_mul_scalar(t, 1.0 / lua_tonumber(L, 2)));
  }
  if (lua_type(L, 1) == LUA_TNUMBER) return lc_push(L, cc_rdiv_scalar(lc_check(L, 2), lua_tonumber(L, 1)));
  return binary(L, cc_div);
}
static int t_pow(lua_State *L) {
  if (lua_type(L, 2) == LUA_TNUMBER && lc_is(L, 1)) return lc_push(L, cc_pow_scalar(lc_check(L, 1), lua_tonumber(L, 2)));
  return binary(L, cc_pow);
}
static int t_unm(lua_State *L) { return lc_push(L, cc_unary(lc_check(L, 1), CC_UNARY_NEG)); }

#define UNARY_METHOD(name, kind)                                                                   \
  static int t_##name(lua_State *L) { return lc_push(L, cc_unary(lc_check(L, 1), kind)); }
UNARY_METHOD(neg, CC_UNARY_NEG)
UNARY_METHOD(exp, CC_UNARY_EXP)
UNARY_METHOD(log, CC_UNARY_LOG)
UNARY_METHOD(sqrt, CC_UNARY_SQRT)
UNARY_METHOD(abs, CC_UNARY_ABS)
UNARY_METHOD(relu, CC_UNARY_RELU)
UNARY_METHOD(sigmoid, CC_UNARY_SIGMOID)
UNARY_METHOD(silu, CC_UNARY_SILU)
UNARY_METHOD(tanh, CC_UNARY_TANH)
UNARY_METHOD(sin, CC_UNARY_SIN)
UNARY_METHOD(cos, CC_UNARY_COS)
UNARY_METHOD(floor, CC_UNARY_FLOOR)
UNARY_METHOD(round, CC_UNARY_ROUND)

/* x:gelu([approximate]): "none" (exact, the default) or "tanh" (GPT-2's gelu_new), as torch */
static int t_gelu(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  const char *approximate = luaL_optstring(L, 2, "none");
  if (strcmp(approximate, "none") == 0) return lc_push(L, cc_unary(x, CC_UNARY_GELU));
  if (strcmp(approximate, "tanh") == 0) return lc_push(L, cc_unary(x, CC_UNARY_GELU_TANH));
  return luaL_argerror(L, 2, lua_pushfstring(L, "approximate must be \"none\" or \"tanh\", got \"%s\"", approximate));
}
/* x:leaky_relu([negative_slope = 0.01]) */
static int t_leaky_relu(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  return lc_push(L, cc_unary_param(x, CC_UNARY_LEAKY_RELU, luaL_optnumber(L, 2, 0.01)));
}
/* x:elu([alpha = 1]) */
static int t_elu(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  return lc_push(L, cc_unary_param(x, CC_UNARY_ELU, luaL_optnumber(L, 2, 1.0)));
}

static int t_clamp(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  double lo = luaL_optnumber(L, 2, -INFINITY), hi = luaL_optnumber(L, 3, INFINITY);
  return lc_push(L, cc_clamp(t, lo, hi));
}

static int compare(lua_State *L, cc_cmp_kind kind) {
  cc_tensor *a = lc_check(L, 1);
  cc_tensor *b = lc_tensor_or_number(L, 2, a);
  cc_tensor *out = cc_compare(a, b, kind);
  cc_release(b);
  return lc_push(L, out);
}
static int t_eq(lua_State *L) { return compare(L, CC_CMP_EQ); }
static int t_ne(lua_State *L) { return compare(L, CC_CMP_NE); }
static int t_lt(lua_State *L) { return compare(L, CC_CMP_LT); }
static int t_le(lua_State *L) { return compare(L, CC_CMP_LE); }
static int t_gt(lua_State *L) { return compare(L, CC_CMP_GT); }
static int t_ge(lua_State *L) { return compare(L, CC_CMP_GE); }

static int t_masked_fill(lua_State *L) {
  return lc_push(L, cc_masked_fill(lc_check(L, 1), lc_check(L, 2), luaL_checknumber(L, 3)));
}

/* ---- reductions: dim may be nil (all), an integer or a table of integers ---- */
static int read_dims(lua_State *L, int idx, const cc_tensor *t, int *dims) {
  if (lua_isnoneornil(L, idx)) return 0;
  if (lua_istable(L, idx)) {
    int n = (int)luaL_len(L, idx);
    if (n > CC_MAX_DIMS) luaL_argerror(L, idx, "too many dims");
    for (int k = 0; k < n; k++) {
      lua_geti(L, idx, k + 1);
      dims[k] = lc_dim(L, lua_gettop(L), t->ndim);
      lua_pop(L, 1);
    }
    return n;
  }
  dims[0] = lc_dim(L, idx, t->ndim);
  return 1;
}

static int reduce(lua_State *L, bool mean) {
  cc_tensor *t = lc_check(L, 1);
  int dims[CC_MAX_DIMS];
  int n = read_dims(L, 2, t, dims);
  bool keep = lua_toboolean(L, 3);
  if (n == 0 && lua_isnoneornil(L, 2)) keep = false;
  return lc_push(L, mean ? cc_mean(t, n, dims, keep) : cc_sum(t, n, dims, keep));
}
static int t_sum(lua_State *L) { return reduce(L, false); }
static int t_mean(lua_State *L) { return reduce(L, true); }

static int t_max(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) return lc_push(L, cc_max_all(t));
  if (lc_is(L, 2)) return luaL_argerror(L, 2, "expected a dim (integer); elementwise maximum is not provided");
  int d = lc_dim(L, 2, t->ndim);
  cc_tensor *v, *i;
  if (cc_max(t, d, lua_toboolean(L, 3), &v, &i)) return lc_error(L);
  lc_push(L, v);
  lc_push(L, i);
  return 2;
}

static int t_argmax(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) {
    int64_t n = cc_numel(t);
    cc_tensor *flat = cc_reshape(t, 1, &n);
    if (!flat) return lc_error(L);
    cc_tensor *out = cc_argmax(flat, 0, false);
    cc_release(flat);
    return lc_push(L, out);
  }
  return lc_push(L, cc_argmax(t, lc_dim(L, 2, t->ndim), lua_toboolean(L, 3)));
}

/* t:cumsum(dim) */
static int t_cumsum(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  if (lua_isnoneornil(L, 2)) return luaL_argerror(L, 2, "cumsum needs a dim (1-based; -1 for the last)");
  return lc_push(L, cc_cumsum(t, lc_dim(L, 2, t->ndim)));
}

/* an optional dim argument (default: the last), as sort and topk take it */
static int opt_dim_last(lua_State *L, int idx, const cc_tensor *t) {
  if (lua_isnoneornil(L, idx)) return t->ndim ? t->ndim - 1 : 0;
  return lc_dim(L, idx, t->ndim);
}

/* t:sort(dim = -1, descending = false) -> values, int64 indices (0-based) */
static int t_sort(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  int d = opt_dim_last(L, 2, t);
  cc_tensor *v, *i;
  if (cc_sort(t, d, lua_toboolean(L, 3), &v, &i)) return lc_error(L);
  lc_push(L, v);
  lc_push(L, i);
  return 2;
}

/* t:topk(k, dim = -1, largest = true, sorted = true) -> values, int64 indices (0-based); always sorted */
static int t_topk(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  lua_Integer k = luaL_checkinteger(L, 2);
  int d = opt_dim_last(L, 3, t);
  bool largest = lua_isnoneornil(L, 4) ? true : lua_toboolean(L, 4);
  cc_tensor *v, *i;
  if (cc_topk(t, k, d, largest, &v, &i)) return lc_error(L);
  lc_push(L, v);
  lc_push(L, i);
  return 2;
}

/* t:index_select(dim, index) and t:gather(dim, index): int64 0-based indices (as sort and max return) */
static int t_index_select(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_index_select(t, lc_dim(L, 2, t->ndim), lc_check(L, 3)));
}
static int t_gather(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_gather(t, lc_dim(L, 2, t->ndim), lc_check(L, 3)));
}

static int t_softmax(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_softmax(t, lc_dim(L, 2, t->ndim)));
}
static int t_log_softmax(lua_State *L) {
  cc_tensor *t = lc_check(L, 1);
  return lc_push(L, cc_log_softmax(t, lc_dim(L, 2, t->ndim)));
}
static int t_matmul(lua_State *L) { return lc_push(L, cc_matmul(lc_check(L, 1), lc_check(L, 2))); }

static const luaL_Reg methods[] = {
    {"size", t_size}, {"stride", t_stride}, {"dim", t_dim}, {"numel", t_numel}, {"dtype", t_dtype},
    {"device", t_device}, {"is_contiguous", t_is_contiguous}, {"data_ptr", t_data_ptr},
    {"storage_ptr", t_storage_ptr}, {"storage_offset", t_storage_offset}, {"item", t_item}, {"_at", t_at},
    {"totable", t_totable}, {"requires_grad", t_requires_grad}, {"backward", t_backward}, {"detach", t_detach},
    {"zero_grad", t_zero_grad}, {"grad_fn", t_grad_fn}, {"clone", t_clone}, {"contiguous", t_contiguous},
    {"copy_", t_copy_}, {"fill_", t_fill_}, {"to", t_to}, {"view", t_view}, {"reshape", t_reshape},
    {"expand", t_expand}, {"permute", t_permute}, {"transpose", t_transpose}, {"t", t_t}, {"narrow", t_narrow},
    {"select", t_select}, {"unsqueeze", t_unsqueeze}, {"squeeze", t_squeeze}, {"add", t_add}, {"sub", t_sub},
    {"mul", t_mul}, {"div", t_div}, {"pow", t_pow}, {"neg", t_neg}, {"exp", t_exp}, {"log", t_log},
    {"sqrt", t_sqrt}, {"abs", t_abs}, {"relu", t_relu}, {"sigmoid", t_sigmoid}, {"silu", t_silu},
    {"tanh", t_tanh}, {"gelu", t_gelu}, {"leaky_relu", t_leaky_relu}, {"elu", t_elu}, {"clamp", t_clamp}, {"eq", t_eq}, {"ne", t_ne}, {"lt", t_lt},
    {"le", t_le}, {"gt", t_gt}, {"ge", t_ge}, {"masked_fill", t_masked_fill}, {"sum", t_sum}, {"mean", t_mean},
    {"max", t_max}, {"argmax", t_argmax}, {"softmax", t_softmax}, {"log_softmax", t_log_softmax},
    {"matmul", t_matmul}, {"sin", t_sin}, {"cos", t_cos}, {"floor", t_floor}, {"round", t_round},
    {"cumsum", t_cumsum}, {"sort", t_sort}, {"topk", t_topk}, {"index_select", t_index_select},
    {"gather", t_gather}, {"close", t_release}, {NULL, NULL}};

static const luaL_Reg metamethods[] = {{"__gc", t_release}, {"__close", t_release}, {"__add", t_add},
                                       {"__sub", t_sub}, {"__mul", t_mul}, {"__div", t_div},
                                       {"__pow", t_pow}, {"__unm", t_unm}, {"__len", t_len},
                                       {"__newindex", t_newindex}, {NULL, NULL}};

void lc_open_tensor(lua_State *L) {
  /* build the metatable fully before any userdata gets it */
  luaL_newmetatable(L, CC_TENSOR_MT);
  luaL_setfuncs(L, metamethods, 0);
  lua_newtable(L); /* methods */
  luaL_setfuncs(L, methods, 0);
  lua_pushvalue(L, -1);
  lua_pushcclosure(L, t_index, 1);
  lua_setfield(L, -3, "__index");
  lua_pushstring(L, "Tensor");
  lua_setfield(L, -3, "__name");
  lua_remove(L, -2); /* leave the methods table */
}
