/* lfrechet.c — the Gaussian statistics and Frechet distance functions of cocola.core (names start
 * with an underscore; lua/cocola/metrics/fad.lua wraps them):
 *   _gauss_stats_add(mean, m2, n, x) -> n          mean (D), m2 (D,D) float64, updated in place
 *   _gauss_stats_merge(mean, m2, n, mean_b, m2_b, n_b) -> n
 *   _frechet_distance(mu1, cov1, mu2, cov2, eps) -> distance, used_eps */
#include "lbind.h"

static int64_t check_count(lua_State *L, int idx) {
  lua_Integer n = luaL_checkinteger(L, idx);
  if (n < 0) luaL_argerror(L, idx, "a frame count must be >= 0");
  return (int64_t)n;
}

static int l_gauss_stats_add(lua_State *L) {
  cc_tensor *mean = lc_check(L, 1), *m2 = lc_check(L, 2);
  int64_t n = check_count(L, 3);
  cc_tensor *x = lc_check(L, 4);
  if (cc_gauss_stats_add(mean, m2, &n, x)) return lc_error(L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int l_gauss_stats_merge(lua_State *L) {
  cc_tensor *mean = lc_check(L, 1), *m2 = lc_check(L, 2);
  int64_t n = check_count(L, 3);
  cc_tensor *mean_b = lc_check(L, 4), *m2_b = lc_check(L, 5);
  int64_t n_b = check_count(L, 6);
  if (cc_gauss_stats_merge(mean, m2, &n, mean_b, m2_b, n_b)) return lc_error(L);
  lua_pushinteger(L, (lua_Integer)n);
  return 1;
}

static int l_frechet_distance(lua_State *L) {
  cc_tensor *mu1 = lc_check(L, 1), *cov1 = lc_check(L, 2), *mu2 = lc_check(L, 3), *cov2 = lc_check(L, 4);
  double eps = luaL_optnumber(L, 5, 1e-6), out = 0;
  bool used_eps = false;
  if (cc_frechet_distance(mu1, cov1, mu2, cov2, eps, &out, &used_eps)) return lc_error(L);
  lua_pushnumber(L, out);
  lua_pushboolean(L, used_eps);
  return 2;
}

static const luaL_Reg frechet_functions[] = {{"_gauss_stats_add", l_gauss_stats_add},
                                             {"_gauss_stats_merge", l_gauss_stats_merge},
                                             {"_frechet_distance", l_frechet_distance},
                                             {NULL, NULL}};

void lc_open_frechet(lua_State *L) { luaL_setfuncs(L, frechet_functions, 0); }
