/* lua_main.c — a Lua 5.4 interpreter for the sanitizer builds (make test-asan, make test-tsan).
 *
 * Debian's lua5.4 is not instrumented, and ThreadSanitizer's runtime cannot be preloaded into it
 * (LLVM 14's shared TSan runtime crashes in libstdc++'s start-up). This program is linked with the
 * sanitizer itself, against the same liblua5.4, so that cocola.core (built with the same sanitizer)
 * loads into an instrumented process; tests/sanitizers/run.sh puts it first on PATH as `lua5.4`, so
 * busted, the cocola command and the recipes' worker processes the specs start all run in it, while
 * the other programs they start (sh, gnuplot) stay as they are.
 *
 * It accepts what the suite passes to lua5.4: `lua5.4 [-e chunk | -l name]... [script [args]]`,
 * `--` and `-` (standard input), LUA_INIT_5_4 / LUA_INIT, and sets the global `arg` the way lua5.4
 * does (arg[0] the script, negative indices the interpreter and its options). A script's error is
 * printed with its traceback on stderr as "lua5.4: ..." and the status is 1. No interactive mode. */
#include <lauxlib.h>
#include <lua.h>
#include <lualib.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *progname = "lua5.4";

static void report(lua_State *L, int status) {
  if (status != LUA_OK) {
    const char *msg = lua_tostring(L, -1);
    if (!msg) msg = "(error object is not a string)";
    fprintf(stderr, "%s: %s\n", progname, msg);
    fflush(stderr);
    lua_pop(L, 1);
  }
}

static int msghandler(lua_State *L) {
  const char *msg = lua_tostring(L, 1);
  if (!msg) {
    if (luaL_callmeta(L, 1, "__tostring") && lua_type(L, -1) == LUA_TSTRING) return 1;
    msg = lua_pushfstring(L, "(error object is a %s value)", luaL_typename(L, 1));
  }
  luaL_traceback(L, L, msg, 1);
  return 1;
}

static int docall(lua_State *L, int narg, int nres) {
  int base = lua_gettop(L) - narg;
  lua_pushcfunction(L, msghandler);
  lua_insert(L, base);
  int status = lua_pcall(L, narg, nres, base);
  lua_remove(L, base);
  return status;
}

static int dochunk(lua_State *L, int status) {
  if (status == LUA_OK) status = docall(L, 0, 0);
  report(L, status);
  return status;
}

static int dostring(lua_State *L, const char *s, const char *name) {
  return dochunk(L, luaL_loadbuffer(L, s, strlen(s), name));
}

static int dolibrary(lua_State *L, const char *name) {
  lua_getglobal(L, "require");
  lua_pushstring(L, name);
  int status = docall(L, 1, 1);
  if (status == LUA_OK) lua_setglobal(L, name);
  report(L, status);
  return status;
}

static int doinit(lua_State *L) {
  const char *name = "=LUA_INIT_5_4";
  const char *init = getenv(name + 1);
  if (!init) {
    name = "=LUA_INIT";
    init = getenv(name + 1);
  }
  if (!init) return LUA_OK;
  if (init[0] == '@') return dochunk(L, luaL_loadfile(L, init + 1));
  return dostring(L, init, name);
}

/* the global arg: argv[script] at index 0, what precedes it negative, what follows positive */
static void createargtable(lua_State *L, char **argv, int argc, int script) {
  if (script == argc) script = 0; /* no script: the interpreter's name at index 0 */
  lua_createtable(L, argc - script - 1, script + 1);
  for (int i = 0; i < argc; i++) {
    lua_pushstring(L, argv[i]);
    lua_rawseti(L, -2, i - script);
  }
  lua_setglobal(L, "arg");
}

static int doscript(lua_State *L, char **argv, int argc, int script) {
  const char *fname = argv[script];
  if (strcmp(fname, "-") == 0 && strcmp(argv[script - 1], "--") != 0) fname = NULL; /* stdin */
  int status = luaL_loadfile(L, fname);
  if (status == LUA_OK) {
    int n = argc - script - 1;
    luaL_checkstack(L, n, "too many arguments to script");
    for (int i = script + 1; i < argc; i++) lua_pushstring(L, argv[i]);
    status = docall(L, n, LUA_MULTRET);
  }
  report(L, status);
  return status;
}

/* the index of the script in argv (argc when there is none), or -1 for an unknown option */
static int scan_options(char **argv, int argc) {
  int i = 1;
  for (; i < argc; i++) {
    const char *a = argv[i];
    if (a[0] != '-') return i;
    if (strcmp(a, "-") == 0) return i;
    if (strcmp(a, "--") == 0) return i + 1 <= argc ? i + 1 : argc;
    if (strcmp(a, "-e") == 0 || strcmp(a, "-l") == 0) {
      if (++i >= argc) return -1;
    } else if ((a[1] == 'e' || a[1] == 'l') && a[2] != '\0') {
      /* -echunk, -lname */
    } else if (strcmp(a, "-W") == 0) {
      /* warnings on: accepted, as lua5.4 does */
    } else {
      return -1;
    }
  }
  return i;
}

static int pmain(lua_State *L) {
  int argc = (int)lua_tointeger(L, 1);
  char **argv = (char **)lua_touserdata(L, 2);
  int script = scan_options(argv, argc);
  if (script < 0) {
    fprintf(stderr, "usage: %s [-e chunk] [-l name] [-W] [script [args]]\n", progname);
    return 0;
  }
  luaL_checkversion(L);
  luaL_openlibs(L);
  createargtable(L, argv, argc, script);
  lua_gc(L, LUA_GCGEN, 0, 0);
  if (doinit(L) != LUA_OK) return 0;
  int end = script;
  if (end < argc && strcmp(argv[end - 1], "--") == 0) end--;
  for (int i = 1; i < end; i++) {
    const char *a = argv[i];
    int status = LUA_OK;
    if (a[1] == 'e' || a[1] == 'l') {
      const char *extra = a[2] ? a + 2 : argv[++i];
      status = a[1] == 'e' ? dostring(L, extra, "=(command line)") : dolibrary(L, extra);
    } else if (a[1] == 'W') {
      lua_warning(L, "@on", 0);
    }
    if (status != LUA_OK) return 0;
  }
  if (script < argc) {
    if (doscript(L, argv, argc, script) != LUA_OK) return 0;
  } else if (end == 1) {
    /* no options and no script: the program on standard input */
    if (dochunk(L, luaL_loadfile(L, NULL)) != LUA_OK) return 0;
  }
  lua_pushboolean(L, 1);
  return 1;
}

int main(int argc, char **argv) {
  if (argv[0] && argv[0][0]) progname = argv[0];
  lua_State *L = luaL_newstate();
  if (!L) {
    fprintf(stderr, "%s: cannot create state: not enough memory\n", progname);
    return EXIT_FAILURE;
  }
  lua_pushcfunction(L, pmain);
  lua_pushinteger(L, argc);
  lua_pushlightuserdata(L, argv);
  int status = lua_pcall(L, 2, 1, 0);
  int ok = status == LUA_OK && lua_toboolean(L, -1);
  report(L, status);
  lua_close(L);
  return ok ? EXIT_SUCCESS : EXIT_FAILURE;
}
