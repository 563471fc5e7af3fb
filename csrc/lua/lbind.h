/* lbind.h — what the binding files share: the tensor userdata (a cc_tensor pointer), argument
 * readers that convert Lua's 1-based dims and positions, and pushing results (errors raised only
 * after C temporaries are released). */
#ifndef COCOLA_LBIND_H
#define COCOLA_LBIND_H

#include "internal.h"

#include <lauxlib.h>
#include <lua.h>

#define CC_TENSOR_MT "cocola.Tensor"

typedef struct {
  cc_tensor *t;
} lc_tensor;

cc_tensor *lc_check(lua_State *L, int idx);      /* borrowed */
cc_tensor *lc_opt(lua_State *L, int idx);        /* NULL for nil/none */
bool lc_is(lua_State *L, int idx);
int lc_push(lua_State *L, cc_tensor *t);          /* takes ownership; raises cc_last_error() on NULL */
int lc_error(lua_State *L);                       /* raises the last C error */
/* a tensor or a number as a tensor like `like` (new reference) */
cc_tensor *lc_tensor_or_number(lua_State *L, int idx, const cc_tensor *like);
/* 1-based (or negative) Lua dim -> 0-based C dim for a tensor of ndim dims (raises on 0) */
int lc_dim(lua_State *L, int idx, int ndim);
/* shape from a table at idx, or from integers idx..top; returns ndim */
int lc_shape(lua_State *L, int idx, int64_t *shape);
int lc_opt_dtype(lua_State *L, int idx, const char *field, int def); /* from an options table */
bool lc_opt_bool(lua_State *L, int idx, const char *field, bool def);
double lc_opt_number(lua_State *L, int idx, const char *field, double def);
void lc_nudge_gc(lua_State *L);
void lc_backward_begin(lua_State *L); /* the Lua thread a backward pass runs on (function nodes call into it) */

void lc_open_tensor(lua_State *L);     /* creates the metatable and leaves the methods table on the stack */
void lc_open_functions(lua_State *L);  /* fills the module table at the top of the stack */
void lc_open_audio(lua_State *L);      /* adds the audio functions (names start with audio_) */
void lc_open_torch(lua_State *L);      /* adds _torch_load (PyTorch checkpoints) and None */
void lc_open_frechet(lua_State *L);    /* adds _gauss_stats_add, _gauss_stats_merge, _frechet_distance */
void lc_open_distributed(lua_State *L); /* adds _dist_* (MPI collectives; cocola.distributed) */

#endif
