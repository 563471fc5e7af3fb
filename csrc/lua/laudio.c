/* laudio.c — the audio functions of cocola.core (names start with audio_), positional arguments;
 * lua/cocola/audio.lua wraps them with option tables and defaults. Errors are raised only after the
 * C side has released its temporaries (the C functions clean up before returning NULL / -1). */
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

static const luaL_Reg audio_functions[] = {
    {"audio_info", a_info}, {"audio_load", a_load}, {"audio_save", a_save}, {"audio_resample", a_resample},
    {"audio_to_mono", a_to_mono}, {"audio_stft", a_stft}, {"audio_istft", a_istft}, {"audio_hpss", a_hpss},
    {"audio_median_filter", a_median_filter}, {"audio_mel_filterbank", a_mel_filterbank},
    {"audio_power_to_db", a_power_to_db}, {"audio_amplitude_to_db", a_amplitude_to_db},
    {"audio_cocola_features", a_cocola_features}, {"audio_audioldm_mel", a_audioldm_mel}, {NULL, NULL}};

void lc_open_audio(lua_State *L) { luaL_setfuncs(L, audio_functions, 0); }
