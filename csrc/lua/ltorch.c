/* ltorch.c — core._torch_load(path): reads a PyTorch zip checkpoint with the safe C reader
 * (csrc/io) into a value tree, then converts it to Lua: dicts -> tables (string keys, integer keys
 * as Lua integers), lists/tuples/sets -> 1-based arrays, tensors -> cocola tensors (views keep their
 * storage, offset and strides; tensors sharing a storage share it in Lua too), None -> core.None
 * (a light userdata sentinel, cocola.None in the module; so dicts keep their keys and arrays have no
 * holes), placeholders -> {__global = "module.name", args = {...}, state = ..., items = ...}.
 * Objects referenced twice in the pickle are the same Lua value. The C tree is freed before any
 * error is raised (and by a __gc box should Lua itself fail mid-conversion). */
#include "../io/torch_ckpt.h"
#include "lbind.h"

#include <math.h>
#include <stdlib.h>

#define DOC_MT "cocola.torch_doc"

static char none_sentinel;

typedef struct {
  ck_doc *doc;
} doc_box;

static int doc_gc(lua_State *L) {
  doc_box *b = luaL_checkudata(L, 1, DOC_MT);
  ck_doc_free(b->doc);
  b->doc = NULL;
  return 0;
}

/* pushes v; returns 0, or -1 (nothing pushed) when the tree is too deep */
static int convert(lua_State *L, ck_value *v, int memo, int depth) {
  if (depth > CK_MAX_DEPTH || !lua_checkstack(L, 8)) return -1;
  switch (v->kind) {
  case CK_NONE:
  case CK_MARK: lua_pushlightuserdata(L, &none_sentinel); return 0;
  case CK_BOOL: lua_pushboolean(L, v->u.b); return 0;
  case CK_INT: lua_pushinteger(L, (lua_Integer)v->u.i); return 0;
  case CK_FLOAT: lua_pushnumber(L, v->u.f); return 0;
  case CK_STRING:
  case CK_BYTES: lua_pushlstring(L, v->u.str.data, v->u.str.len); return 0;
  default: break;
  }
  /* objects: the same C value is the same Lua value (shared tensors, cycles) */
  lua_pushlightuserdata(L, v);
  if (lua_rawget(L, memo) != LUA_TNIL) return 0;
  lua_pop(L, 1);
  switch (v->kind) {
  case CK_TENSOR:
  case CK_STORAGE: lc_push(L, cc_retain(v->u.tensor)); break;
  case CK_LIST:
  case CK_TUPLE:
    lua_createtable(L, v->u.seq.n < 1000000 ? (int)v->u.seq.n : 0, 0);
    break;
  case CK_DICT: lua_createtable(L, 0, v->u.dict.keys.n < 1000000 ? (int)v->u.dict.keys.n : 0); break;
  default: lua_createtable(L, 0, 4); break;
  }
  lua_pushlightuserdata(L, v);
  lua_pushvalue(L, -2);
  lua_rawset(L, memo);
  if (v->kind == CK_LIST || v->kind == CK_TUPLE) {
    for (size_t k = 0; k < v->u.seq.n; k++) {
      if (convert(L, v->u.seq.items[k], memo, depth + 1)) goto fail;
      lua_rawseti(L, -2, (lua_Integer)k + 1);
    }
  } else if (v->kind == CK_DICT) {
    for (size_t k = 0; k < v->u.dict.keys.n; k++) {
      ck_value *key = v->u.dict.keys.items[k];
      if (key->kind == CK_FLOAT && isnan(key->u.f)) lua_pushliteral(L, "nan");
      else if (convert(L, key, memo, depth + 1)) goto fail;
      if (convert(L, v->u.dict.vals.items[k], memo, depth + 1)) {
        lua_pop(L, 1);
        goto fail;
      }
      lua_rawset(L, -3);
    }
  } else if (v->kind == CK_PLACEHOLDER) {
    lua_pushstring(L, v->u.ph.name);
    lua_setfield(L, -2, "__global");
    ck_value *parts[3] = {v->u.ph.args, v->u.ph.state, v->u.ph.items};
    const char *names[3] = {"args", "state", "items"};
    for (int k = 0; k < 3; k++) {
      if (!parts[k]) continue;
      if (convert(L, parts[k], memo, depth + 1)) goto fail;
      lua_setfield(L, -2, names[k]);
    }
  }
  return 0;
fail:
  lua_pop(L, 1);
  return -1;
}

/* _torch_load(path) -> the checkpoint's root value */
static int t_torch_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  doc_box *b = lua_newuserdatauv(L, sizeof *b, 0);
  b->doc = NULL;
  luaL_setmetatable(L, DOC_MT);
  b->doc = ck_load(path);
  if (!b->doc) return lc_error(L);
  lua_newtable(L);
  int memo = lua_gettop(L);
  int rc = convert(L, b->doc->root, memo, 0);
  ck_doc_free(b->doc);
  b->doc = NULL;
  if (rc)
    return luaL_error(L, "torch checkpoint '%s': the data nests deeper than %d levels", path, CK_MAX_DEPTH);
  lc_nudge_gc(L);
  return 1;
}

void lc_open_torch(lua_State *L) {
  if (luaL_newmetatable(L, DOC_MT)) {
    lua_pushcfunction(L, doc_gc);
    lua_setfield(L, -2, "__gc");
  }
  lua_pop(L, 1);
  lua_pushcfunction(L, t_torch_load);
  lua_setfield(L, -2, "_torch_load");
  lua_pushlightuserdata(L, &none_sentinel);
  lua_setfield(L, -2, "None");
}
