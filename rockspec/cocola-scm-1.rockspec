rockspec_format = "3.0"
package = "cocola"
version = "scm-1"
source = {
  url = "git+https://example.invalid/cocola.git",
}
description = {
  summary = "Tensors with autograd in C (CPU, optional CUDA) for Lua 5.4, and the COCOLA coherence model",
  detailed = [[
    A C tensor and reverse-mode autograd engine exposed to Lua 5.4 as the module `cocola`, with
    the COCOLA contrastive encoder of musical stems, its training and evaluation recipes, the
    COCOLA score and FAD. System libraries (OpenBLAS, OpenMP) come from the OS; Lua libraries
    used by recipes (lua-cjson, lua-argparse) from the OS packages too.
  ]],
  license = "MIT",
}
dependencies = {
  "lua >= 5.4, < 5.5",
}
build = {
  type = "cmake",
  variables = {
    CMAKE_BUILD_TYPE = "Release",
    CMAKE_INSTALL_PREFIX = "$(PREFIX)",
    LUA_INCDIR = "$(LUA_INCDIR)",
    LUADIR = "$(LUADIR)",
    LIBDIR = "$(LIBDIR)",
    BINDIR = "$(BINDIR)",
  },
}
