"""Installs the "cocola-lua" Jupyter kernel into the running Python's prefix (the notebooks' venv):
ILua on lua5.4 with the display hook of cocola_kernel.py, and a module path that finds the checkout's
Lua sources (lua/) and C module (build/) first (after kernel/lua/, which holds how the kernel shows
returned values), then whatever LUA_PATH / LUA_CPATH hold now (the
project's rock tree when run through `make notebooks`), then Lua's defaults (Debian's lua-cjson ...).
Usage: .venv-notebooks/bin/python notebooks/kernel/install.py [lua interpreter, default lua5.4]
"""
import json
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
root = os.path.dirname(os.path.dirname(here))
lua = sys.argv[1] if len(sys.argv) > 1 else "lua5.4"


def path_list(own, inherited):
    parts = own + [p for p in inherited.split(";") if p]
    return ";".join(parts) + ";;"


spec = {
    "argv": [sys.executable, os.path.join(here, "cocola_kernel.py"),
             "--lua-interpreter", lua, "--connection-file", "{connection_file}"],
    "display_name": "Lua 5.4 (cocola)",
    "language": "lua",
    "env": {
        "LUA_PATH": path_list([here + "/lua/?.lua", root + "/lua/?.lua", root + "/lua/?/init.lua"], os.environ.get("LUA_PATH", "")),
        "LUA_CPATH": path_list([root + "/build/?.so"], os.environ.get("LUA_CPATH", "")),
        "COCOLA_NOTEBOOK": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    },
}
dest = os.path.join(sys.prefix, "share", "jupyter", "kernels", "cocola-lua")
os.makedirs(dest, exist_ok=True)
with open(os.path.join(dest, "kernel.json"), "w") as f:
    json.dump(spec, f, indent=1)
print("kernel cocola-lua installed in " + dest)
