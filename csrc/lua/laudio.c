/* laudio.c — the audio functions of cocola.core (names start with audio_), positional arguments;
 * lua/cocola/audio.lua wraps them with option tables and defaults. audio_prefetch queues loads on
 * the background pool (csrc/audio/prefetch.c) and returns a handle: :ready(), :wait(), :cancel(). Errors are raised only after the
 * C side has released its temporaries (the C functions clean up before returning NULL / -1). */
#include <limits.h>
#include "../audio/audio.h"
#include "lbind.h"

static int a_info(lua_State *L) {
  cc_audio_info info;
  if (cc_audio_info_get(luaL_checkstring(L, 1), &info)) return lc_error(L);
  lua_createtable(L, 0, 6);
  lua_pushinteger(L, info.frames);
  lua_setfield(L, -2, "frames");
  lua_pushinteger(L, info.rate);
  lua_setfield(L, -2, "rate");
  lua_pushinteger(L, info.channels);
  lua_setfield(L, -2, "channels");
  lua_pushnumber(L, info.duration);
  lua_setfield(L, -2, "duration");
  lua_pushstring(L, info.format);
  lua_setfield(L, -2, "format");
  lua_pushstring(L, info.subtype);
  lua_setfield(L, -2, "subtype");
  return 1;
}

/* audio_load(path, sr, mono, offset, duration) -> tensor, rate; sr 0 keeps the file's, duration < 0: all */
static int a_load(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  int sr = (int)luaL_optinteger(L, 2, 0);
  bool mono = lua_toboolean(L, 3);
  double offset = luaL_optnumber(L, 4, 0), duration = luaL_optnumber(L, 5, -1);
  int rate = 0;
  cc_tensor *t = cc_audio_load(path, offset, duration, sr, mono, &rate);
  lc_push(L, t);
  lua_pushinteger(L, rate);
  return 2;
}

static int a_save(lua_State *L) {
  const char *path = luaL_checkstring(L, 1);
  cc_tensor *t = lc_check(L, 2);
  lua_Integer sr = luaL_checkinteger(L, 3);
  if (sr < 1 || sr > 100000000) return luaL_argerror(L, 3, "the sample rate must be a positive integer");
  if (cc_audio_save(path, t, (int)sr, luaL_optstring(L, 4, NULL))) return lc_error(L);
  return 0;
}

static int a_resample(lua_State *L) {
  return lc_push(L, cc_audio_resample(lc_check(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3)));
}
static int a_to_mono(lua_State *L) { return lc_push(L, cc_audio_to_mono(lc_check(L, 1))); }

static cc_stft_opts stft_args(lua_State *L, int i) {
  cc_stft_opts o;
  o.n_fft = (int)luaL_checkinteger(L, i);
  o.hop = (int)luaL_checkinteger(L, i + 1);
  o.win_length = (int)luaL_checkinteger(L, i + 2);
  o.center = lua_toboolean(L, i + 3);
  o.reflect = lua_toboolean(L, i + 4);
  return o;
}
/* audio_stft(x, n_fft, hop, win_length, center, reflect) */
static int a_stft(lua_State *L) {
  cc_stft_opts o = stft_args(L, 2);
  return lc_push(L, cc_audio_stft(lc_check(L, 1), &o));
}
/* audio_istft(X, n_fft, hop, win_length, center, reflect, length or -1) */
static int a_istft(lua_State *L) {
  cc_stft_opts o = stft_args(L, 2);
  return lc_push(L, cc_audio_istft(lc_check(L, 1), &o, (int64_t)luaL_optinteger(L, 7, -1)));
}

/* audio_phase_vocoder(X, rate, hop) */
static int a_phase_vocoder(lua_State *L) {
  lua_Integer hop = luaL_checkinteger(L, 3);
  luaL_argcheck(L, hop >= 1 && hop <= INT_MAX, 3, "hop must be a positive integer that fits an int");
  return lc_push(L, cc_audio_phase_vocoder(lc_check(L, 1), luaL_checknumber(L, 2), (int)hop));
}

/* audio_hpss(mag, kernel_h, kernel_p, power, margin) -> harmonic, percussive magnitudes */
static int a_hpss(lua_State *L) {
  cc_tensor *p = NULL;
  cc_tensor *h = cc_audio_hpss(lc_check(L, 1), (int)luaL_checkinteger(L, 2), (int)luaL_checkinteger(L, 3),
                               luaL_checknumber(L, 4), luaL_checknumber(L, 5), &p);
  if (!h) return lc_error(L);
  lc_push(L, h);
  lc_push(L, p);
  return 2;
}

/* audio_median_filter(x (..., R, C), size, dim (-1 along rows, -2 along columns)) */
static int a_median_filter(lua_State *L) {
  cc_tensor *x = lc_check(L, 1);
  int size = (int)luaL_checkinteger(L, 2);
  if (x->ndim < 2 || x->dtype != CC_FLOAT32) return luaL_argerror(L, 1, "expected a float32 tensor (..., rows, cols)");
  int dim = lc_dim(L, 3, x->ndim);
  if (dim < x->ndim - 2) return luaL_argerror(L, 3, "the filter runs along one of the last two dims");
  cc_tensor *c = cc_contiguous(x);
  if (!c) return lc_error(L);
  cc_tensor *out = cc_empty_like(c);
  int64_t R = c->shape[c->ndim - 2], C = c->shape[c->ndim - 1], n = (R * C != 0) ? cc_numel(c) / (R * C) : 0;
  int rc = out ? 0 : -1;
  for (int64_t i = 0; !rc && i < n; i++)
    rc = cc_median_filter_2d((const float *)cc_data_ptr(c) + i * R * C, (float *)cc_data_ptr(out) + i * R * C, R, C,
                             dim == x->ndim - 1 ? 1 : 0, size);
  cc_release(c);
  if (rc) {
    cc_release(out);
    return lc_error(L);
  }
  return lc_push(L, out);
}

/* audio_mel_filterbank(n_freqs, sr, n_mels, f_min, f_max, htk, slaney_norm) */
static int a_mel_filterbank(lua_State *L) {
  return lc_push(L, cc_audio_mel_fbank((int)luaL_checkinteger(L, 1), luaL_checknumber(L, 2),
                                       (int)luaL_checkinteger(L, 3), luaL_checknumber(L, 4), luaL_checknumber(L, 5),
                                       lua_toboolean(L, 6), lua_toboolean(L, 7)));
}

/* audio_power_to_db(S, ref (<= 0: max), amin, top_db (< 0: none)) */
static int a_power_to_db(lua_State *L) {
  return lc_push(L, cc_audio_power_to_db(lc_check(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                                         luaL_checknumber(L, 4)));
}
static int a_amplitude_to_db(lua_State *L) {
  return lc_push(L, cc_audio_amplitude_to_db(lc_check(L, 1), luaL_checknumber(L, 2), luaL_checknumber(L, 3),
                                             luaL_checknumber(L, 4)));
}

/* audio_cocola_features(wave, hpss) */
static int a_cocola_features(lua_State *L) {
  return lc_push(L, cc_audio_cocola_features(lc_check(L, 1), lua_toboolean(L, 2)));
}
static int a_audioldm_mel(lua_State *L) { return lc_push(L, cc_audio_audioldm_mel(lc_check(L, 1))); }

/* ---- background loading: audio_prefetch(requests) -> handle with :ready(), :wait(), :cancel() ---- */
#define PREFETCH_MT "cocola.AudioPrefetch"

typedef struct {
  cc_prefetch_job *job; /* NULL once waited on or cancelled */
} lc_prefetch;

static lc_prefetch *check_prefetch(lua_State *L) { return luaL_checkudata(L, 1, PREFETCH_MT); }

static cc_prefetch_job *live_job(lua_State *L) {
  lc_prefetch *h = check_prefetch(L);
  if (!h->job) luaL_error(L, "audio prefetch: the handle was already waited on or cancelled");
  return h->job;
}

/* a number field of request table at idx (default when absent); raises naming the request */
static double request_number(lua_State *L, int idx, int i, const char *field, double def, bool *present) {
  int type = lua_getfield(L, idx, field);
  double v = def;
  if (present) *present = type != LUA_TNIL;
  if (type != LUA_TNIL) {
    if (type != LUA_TNUMBER) luaL_error(L, "audio_prefetch: request %d: '%s' must be a number", i, field);
    v = lua_tonumber(L, -1);
  }
  lua_pop(L, 1);
  return v;
}

/* audio_prefetch({{path=, offset=0, duration=(to the end), sr=0 (the file's), mono=false}, ...}) */
static int a_prefetch(lua_State *L) {
  luaL_checktype(L, 1, LUA_TTABLE);
  lua_Integer n = luaL_len(L, 1);
  if (n > 1000000) return luaL_argerror(L, 1, "too many requests");
  /* scratch owned by Lua, so that an error below leaks nothing; the paths stay alive in the table */
  cc_read_request *requests = lua_newuserdatauv(L, sizeof *requests * (size_t)(n > 0 ? n : 1), 0);
  for (lua_Integer i = 1; i <= n; i++) {
    if (lua_geti(L, 1, i) != LUA_TTABLE) return luaL_error(L, "audio_prefetch: request %d is not a table", (int)i);
    int r = lua_gettop(L);
    cc_read_request *q = &requests[i - 1];
    if (lua_getfield(L, r, "path") != LUA_TSTRING)
      return luaL_error(L, "audio_prefetch: request %d has no path (a string)", (int)i);
    q->path = lua_tostring(L, -1);
    lua_pop(L, 1);
    q->offset = request_number(L, r, (int)i, "offset", 0, NULL);
    if (!(isfinite(q->offset) && q->offset >= 0))
      return luaL_error(L, "audio_prefetch: request %d ('%s'): offset must be a non-negative number of seconds",
                        (int)i, q->path);
    bool has_duration;
    q->duration = request_number(L, r, (int)i, "duration", -1, &has_duration);
    if (has_duration && !(isfinite(q->duration) && q->duration >= 0))
      return luaL_error(L, "audio_prefetch: request %d ('%s'): duration must be a non-negative number of seconds",
                        (int)i, q->path);
    double sr = request_number(L, r, (int)i, "sr", 0, NULL);
    if (!(sr >= 0 && sr <= 100000000 && sr == floor(sr)))
      return luaL_error(L, "audio_prefetch: request %d ('%s'): sr must be a non-negative integer", (int)i, q->path);
    q->sr = (int)sr;
    lua_getfield(L, r, "mono");
    q->mono = lua_toboolean(L, -1);
    lua_pop(L, 2); /* mono, the request */
  }
  lc_prefetch *h = lua_newuserdatauv(L, sizeof *h, 0);
  h->job = NULL;
  luaL_setmetatable(L, PREFETCH_MT);
  h->job = cc_prefetch_submit(requests, (int)n);
  if (!h->job) return lc_error(L);
  return 1;
}

/* audio_prefetch_workers(n) grows the pool to at least n threads; returns its size */
static int a_prefetch_workers(lua_State *L) {
  lua_Integer n = luaL_checkinteger(L, 1);
  if (n < 1 || n > 64) return luaL_argerror(L, 1, "between 1 and 64 workers");
  int have = cc_prefetch_start((int)n);
  if (have < 0) return lc_error(L);
  lua_pushinteger(L, have);
  return 1;
}

static int prefetch_ready(lua_State *L) {
  lc_prefetch *h = check_prefetch(L);
  lua_pushboolean(L, !h->job || cc_prefetch_ready(h->job));
  return 1;
}

/* handle:wait() -> {tensors}, {rms}; the job is released after (a second wait raises) */
static int prefetch_wait(lua_State *L) {
  cc_prefetch_job *job = live_job(L);
  lc_prefetch *h = check_prefetch(L);
  if (cc_prefetch_wait(job)) {
    lua_pushstring(L, cc_last_error());
    h->job = NULL;
    cc_prefetch_release(job);
    return lua_error(L);
  }
  int n = cc_prefetch_count(job);
  lua_createtable(L, n, 0);
  lua_createtable(L, n, 0);
  for (int i = 0; i < n; i++) { /* the job keeps what is not taken yet, should a push raise */
    double rms = 0;
    lc_push(L, cc_prefetch_take(job, i, &rms));
    lua_seti(L, -3, i + 1);
    lua_pushnumber(L, rms);
    lua_seti(L, -2, i + 1);
  }
  h->job = NULL;
  cc_prefetch_release(job);
  return 2;
}

/* handle:cancel(): drops the results; requests no worker has started are not decoded */
static int prefetch_release(lua_State *L) {
  lc_prefetch *h = check_prefetch(L);
  cc_prefetch_job *job = h->job;
  h->job = NULL;
  cc_prefetch_release(job);
  return 0;
}

static int prefetch_tostring(lua_State *L) {
  lc_prefetch *h = check_prefetch(L);
  if (!h->job) lua_pushstring(L, "audio prefetch (done)");
  else
    lua_pushfstring(L, "audio prefetch (%d requests, %s)", cc_prefetch_count(h->job),
                    cc_prefetch_ready(h->job) ? "ready" : "loading");
  return 1;
}

static void open_prefetch_metatable(lua_State *L) {
  static const luaL_Reg methods[] = {
      {"ready", prefetch_ready}, {"wait", prefetch_wait}, {"cancel", prefetch_release}, {NULL, NULL}};
  luaL_newmetatable(L, PREFETCH_MT);
  luaL_newlib(L, methods);
  lua_setfield(L, -2, "__index");
  lua_pushcfunction(L, prefetch_release);
  lua_setfield(L, -2, "__gc");
  lua_pushcfunction(L, prefetch_release);
  lua_setfield(L, -2, "__close");
  lua_pushcfunction(L, prefetch_tostring);
  lua_setfield(L, -2, "__tostring");
  lua_pop(L, 1);
}

static const luaL_Reg audio_functions[] = {
    {"audio_info", a_info}, {"audio_load", a_load}, {"audio_save", a_save}, {"audio_resample", a_resample},
    {"audio_to_mono", a_to_mono}, {"audio_stft", a_stft}, {"audio_istft", a_istft},
    {"audio_phase_vocoder", a_phase_vocoder}, {"audio_hpss", a_hpss},
    {"audio_median_filter", a_median_filter}, {"audio_mel_filterbank", a_mel_filterbank},
    {"audio_power_to_db", a_power_to_db}, {"audio_amplitude_to_db", a_amplitude_to_db},
    {"audio_cocola_features", a_cocola_features}, {"audio_audioldm_mel", a_audioldm_mel},
    {"audio_prefetch", a_prefetch}, {"audio_prefetch_workers", a_prefetch_workers}, {NULL, NULL}};

void lc_open_audio(lua_State *L) {
  open_prefetch_metatable(L);
  luaL_setfuncs(L, audio_functions, 0);
}
