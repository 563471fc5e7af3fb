#!/usr/bin/env bash
# recipes/device/bundle.sh — assembles build-device/: everything recipes/device/train.sh needs to
# train COCOLA on a GPU machine that has an x86-64 glibc (2.36 or later), libstdc++, the NVIDIA
# driver and CUDA 13's cuBLAS and cuDNN 9, but no Lua, no FluidSynth and none of this project's
# libraries, and no network.
#
# Run from a Debian 12 checkout, as root (missing apt packages are installed), with nvcc 13, cuBLAS
# and cuDNN installed:
#   bash recipes/device/bundle.sh [--midi DIR]... [--soundfont FILE] [--no-apt]
#   make device-bundle [DEVICE_BUNDLE_FLAGS="--midi data/mma_songs"]
#   --midi DIR        also bundle the MIDI songs of DIR (e.g. data/mma_songs from make_mma_songs.lua),
#                     rendered on the machine as a dataset of their own named after DIR
#   --soundfont FILE  the General MIDI soundfont (default FluidR3Mono_GM.sf3 from Debian's
#                     fluidr3mono-gm-soundfont, 23.6 MB; /usr/share/sounds/sf2/TimGM6mb.sf2 makes the
#                     bundle about 13 MB smaller)
#   --no-apt          install nothing; fail if something is missing
#   --out DIR         make DIR instead of build-device (train.sh reads build-device)
# Relative paths are taken from the repository root. Environment: JOBS (compile jobs, default 2),
# CMAKE_FLAGS (extra settings for the core's build, e.g. -DCMAKE_C_FLAGS=-march=x86-64-v3).
#
# What it makes (build-device/ is ignored by git; carry it to the machine):
#   build-device/payload.tar.xz  bin/lua5.4, bin/fluidsynth; lib/: every shared library they, the
#                                Lua C modules (cjson, lfs, yaml) and cocola's core.so need except glibc,
#                                libstdc++, libgcc_s and the CUDA/NVIDIA libraries, each with a RUNPATH
#                                into lib/; lib/lua/cocola/core.so built here in build-device-core/ with
#                                COCOLA_CUDA=ON, COCOLA_NATIVE=OFF for sm_90; share/lua/ (lyaml,
#                                cjson.util, argparse); the soundfont; midi/<set>/ with midi/sets.txt
#                                (the Debian MIDI folders of make_midi_stems.lua's defaults, as set
#                                "debian", plus each --midi folder)
#   build-device/env.sh          `source build-device/env.sh`: unpacks the payload once, sets PATH,
#                                LUA_PATH, LUA_CPATH and LD_LIBRARY_PATH
#   build-device/tools/          xz and liblzma, to unpack where the machine has no xz
#   build-device/bundle-id, build-device/MANIFEST.txt
set -euo pipefail
SELF=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)/$(basename "${BASH_SOURCE[0]}")
cd "$(dirname "$SELF")/../.."
REPO=$(pwd)

die() { echo "bundle.sh: $*" >&2; exit 1; }
note() { echo "bundle.sh: $*"; }

OUT_DIR=build-device
CORE_BUILD=build-device-core
SOUNDFONT=/usr/share/sounds/sf3/FluidR3Mono_GM.sf3
APT=1
MIDI_DIRS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --midi) [ $# -ge 2 ] || die "--midi needs a folder"; MIDI_DIRS+=("$2"); shift 2 ;;
    --soundfont) [ $# -ge 2 ] || die "--soundfont needs a file"; SOUNDFONT=$2; shift 2 ;;
    --no-apt) APT=0; shift ;;
    --out) [ $# -ge 2 ] || die "--out needs a folder"; OUT_DIR=$2; shift 2 ;;
    -h|--help) sed -n '2,/^set -euo/p' "$SELF" | sed '$d'; exit 0 ;;
    *) die "unknown argument '$1' (see --help)" ;;
  esac
done
JOBS=${JOBS:-2}
CMAKE_FLAGS=${CMAKE_FLAGS:-}
[ "$(uname -m)" = x86_64 ] || die "the GPU machine is x86-64: build the bundle on an x86-64 machine (this is $(uname -m))"
for d in "${MIDI_DIRS[@]}"; do [ -d "$d" ] || die "--midi: no folder '$d'"; done

# ---- packages ---------------------------------------------------------------------------------
packages=(lua5.4 liblua5.4-dev lua-cjson lua-filesystem lua-yaml lua-argparse fluidsynth patchelf xz-utils
          cmake gcc make pkg-config libopenblas-dev libopenblas0-openmp libsndfile1-dev libsoxr-dev libfftw3-dev
          simutrans-data freedink-data planetblupi-music-midi mma)
[ "$SOUNDFONT" = /usr/share/sounds/sf3/FluidR3Mono_GM.sf3 ] && packages+=(fluidr3mono-gm-soundfont)
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  [ "$APT" = 1 ] || die "missing packages: ${missing[*]} (run without --no-apt, as root)"
  note "installing: ${missing[*]}"
  sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
fi
[ -f "$SOUNDFONT" ] || die "no soundfont '$SOUNDFONT'"
command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ] ||
  die "nvcc was not found: the GPU backend needs the CUDA toolkit (nvcc 13, cuBLAS) and cuDNN 9"

# ---- cocola's core.so: CUDA on, portable CPU code, sm_90 ---------------------------------------
note "building core.so in $CORE_BUILD/ (CUDA on, sm_90, COCOLA_NATIVE=OFF)"
mkdir -p "$CORE_BUILD"
BUILD_LOG=$CORE_BUILD/bundle-build.log
# shellcheck disable=SC2086
cmake -S . -B "$CORE_BUILD" -DCMAKE_BUILD_TYPE=Release -DCOCOLA_CUDA=ON -DCOCOLA_NATIVE=OFF \
  -DCMAKE_CUDA_ARCHITECTURES=90 $CMAKE_FLAGS >"$BUILD_LOG" 2>&1 ||
  { tail -20 "$BUILD_LOG" >&2; die "configuring $CORE_BUILD failed (log: $BUILD_LOG)"; }
cmake --build "$CORE_BUILD" -j"$JOBS" --target cocola_lua >>"$BUILD_LOG" 2>&1 ||
  { tail -20 "$BUILD_LOG" >&2; die "building $CORE_BUILD failed (log: $BUILD_LOG)"; }
CORE=$CORE_BUILD/cocola/core.so
[ "$(readelf -d "$CORE" | grep -c 'libcudnn')" -gt 0 ] || die "$CORE was built without the CUDA backend"

# ---- staging ------------------------------------------------------------------------------------
STAGE=$(mktemp -d /tmp/cocola-bundle.XXXXXX)
trap 'rm -rf "$STAGE"' EXIT
mkdir -p "$STAGE"/{bin,lib/lua/cocola,share/lua,share/soundfonts,midi}
LUA_LIBDIR=/usr/lib/x86_64-linux-gnu/lua/5.4
LUA_SHARE=/usr/share/lua/5.4
cp -L "$(command -v lua5.4)" "$STAGE/bin/lua5.4"
cp -L "$(command -v fluidsynth)" "$STAGE/bin/fluidsynth"
for m in cjson lfs yaml; do cp -L "$LUA_LIBDIR/$m.so" "$STAGE/lib/lua/$m.so"; done
cp -L "$CORE" "$STAGE/lib/lua/cocola/core.so"
cp -rL "$LUA_SHARE/lyaml" "$LUA_SHARE/cjson" "$LUA_SHARE/argparse.lua" "$STAGE/share/lua/"
cp -L "$SOUNDFONT" "$STAGE/share/soundfonts/"

# MIDI sets: midi/<set>/... with each folder's files at their paths below the folders' common parent
# (one folder: the folder itself), which keeps make_midi_stems' file order (sorted by path): a set
# is split into train/validation/test as make_midi_stems splits the original folders
copy_midi() { # set_name dir... -> midi/sets.txt line "set<TAB>dir,dir" (relative to midi/)
  local set=$1 dirs=() rel=() n=0 d f parent
  shift
  for d in "$@"; do
    if [ -d "$d" ]; then dirs+=("$(cd "$d" && pwd)"); else note "warning: no MIDI folder $d (skipped)"; fi
  done
  [ ${#dirs[@]} -gt 0 ] || die "set $set: none of its folders exists ($*)"
  parent=${dirs[0]}
  [ ${#dirs[@]} -eq 1 ] || parent=$(dirname "$parent")
  for d in "${dirs[@]}"; do
    while [ "${d#"$parent"/}" = "$d" ] && [ "$d" != "$parent" ]; do
      parent=$(dirname "$parent")
      if [ "$parent" = / ]; then parent=""; break; fi
    done
  done
  for d in "${dirs[@]}"; do
    while IFS= read -r -d '' f; do
      mkdir -p "$STAGE/midi/$set/$(dirname "${f#"$parent"}")"
      cp -L "$f" "$STAGE/midi/$set/${f#"$parent"}"
      n=$((n + 1))
    done < <(find -L "$d" -type f \( -iname '*.mid' -o -iname '*.midi' -o -iname '*.kar' \) -print0)
    rel+=("$set${d#"$parent"}")
  done
  [ "$n" -gt 0 ] || die "set $set: no MIDI files in $*"
  (IFS=,; printf '%s\t%s\n' "$set" "${rel[*]}") >>"$STAGE/midi/sets.txt"
  note "MIDI set $set: $n files"
}
default_inputs=$(sed -n 's/^ *input = "\([^"]*\)",.*/\1/p' recipes/make_midi_stems.lua)
[ -n "$default_inputs" ] || die "cannot read the default inputs of recipes/make_midi_stems.lua"
IFS=, read -r -a debian_dirs <<<"$default_inputs"
copy_midi debian "${debian_dirs[@]}"
for d in "${MIDI_DIRS[@]}"; do
  name=$(basename "$(cd "$d" && pwd)" | tr -c 'A-Za-z0-9_\n' '_')
  [ "$name" != debian ] && ! grep -q "^$name	" "$STAGE/midi/sets.txt" || die "--midi $d: a set named $name exists already"
  copy_midi "$name" "$d"
done

# ---- shared libraries ---------------------------------------------------------------------------
# left to the machine: glibc, libstdc++, libgcc_s, and the CUDA/NVIDIA libraries (its own CUDA 13)
SYSTEM_RE='^(ld-linux-x86-64\.so\.2|lib(c|m|mvec|pthread|dl|rt|resolv|util|anl|nsl|thread_db|BrokenLocale)\.so\.[0-9]+|libstdc\+\+\.so\.6|libgcc_s\.so\.1)$'
CUDA_RE='^lib(cuda|cudart|cublas|cublasLt|cudnn[a-z_]*|nvidia-[a-z_-]*|nvrtc[a-z_-]*|nvJitLink|cufft|curand|cusolver|cusparse|nccl)\.so'
ELFS=("$STAGE/bin/lua5.4" "$STAGE/bin/fluidsynth" "$STAGE"/lib/lua/*.so "$STAGE/lib/lua/cocola/core.so")
for e in "${ELFS[@]}"; do
  ldd "$e" | awk '$2 == "=>" && $3 ~ /^\// {print $1, $3}'
done | sort -u | while read -r soname path; do
  [[ $soname =~ $SYSTEM_RE || $soname =~ $CUDA_RE ]] && continue
  [ -e "$STAGE/lib/$soname" ] || cp -L "$path" "$STAGE/lib/$soname"
done

# RUNPATHs: the bundle's own lib/ (system programs started by the recipes keep the system's libraries)
chmod u+w "$STAGE"/bin/* "$STAGE"/lib/*.so* "$STAGE"/lib/lua/*.so "$STAGE"/lib/lua/cocola/core.so
for f in "$STAGE"/bin/*; do patchelf --set-rpath '$ORIGIN/../lib' "$f"; done
for f in "$STAGE"/lib/*.so*; do patchelf --set-rpath '$ORIGIN' "$f"; done
for f in "$STAGE"/lib/lua/*.so; do patchelf --set-rpath '$ORIGIN/..' "$f"; done
# core.so keeps the CUDA folders it was linked against, after the bundle's lib/
cuda_rpath=$(readelf -d "$CORE" | sed -n 's/.*(RUNPATH).*\[\(.*\)\]/\1/p' | tr ':' '\n' | grep -v '^$' | paste -sd: -)
patchelf --set-rpath "\$ORIGIN/../..${cuda_rpath:+:$cuda_rpath}:/usr/local/cuda/lib64" "$STAGE/lib/lua/cocola/core.so"

# every bundled ELF, seen without the system's Lua and without LD_LIBRARY_PATH: outside the bundle
# only glibc, libstdc++, libgcc_s and (for core.so) CUDA libraries may resolve
bad=0
while IFS= read -r -d '' f; do
  head -c 4 "$f" | grep -q 'ELF' || continue
  while read -r soname path; do
    case "$path" in "$STAGE"/*) continue ;; esac
    [[ $soname =~ $SYSTEM_RE || $soname =~ $CUDA_RE ]] && continue
    echo "bundle.sh: ${f#"$STAGE"/} needs $soname ($path)" >&2
    bad=1
  done < <(env -i ldd "$f" 2>/dev/null | awk '$2 == "=>" {print $1, $3}')
done < <(find "$STAGE/bin" "$STAGE/lib" -type f -print0)
[ "$bad" = 0 ] || die "some libraries resolve outside the bundle"

# smoke test in a bare environment
LUA_ENV=(env -i PATH=/usr/bin:/bin HOME=/tmp SDL_AUDIODRIVER=dummy
         "LUA_PATH=$REPO/lua/?.lua;$REPO/lua/?/init.lua;$STAGE/share/lua/?.lua;$STAGE/share/lua/?/init.lua"
         "LUA_CPATH=$STAGE/lib/lua/?.so")
"${LUA_ENV[@]}" "$STAGE/bin/lua5.4" -e 'require "cocola"; require "cjson"; require "lfs"; require "lyaml"; require "argparse"' ||
  die "the bundled Lua cannot load cocola and its modules"
"${LUA_ENV[@]}" "$STAGE/bin/fluidsynth" --version >/dev/null || die "the bundled fluidsynth does not run"

# ---- the bundle ---------------------------------------------------------------------------------
id="$(date -u +%Y%m%dT%H%M%SZ)-$(git rev-parse --short HEAD 2>/dev/null || echo nogit)"
echo "$id" >"$STAGE/.bundle-id"
{
  echo "cocola device bundle $id"
  echo "core.so: COCOLA_CUDA=ON COCOLA_NATIVE=OFF CMAKE_CUDA_ARCHITECTURES=90 $CMAKE_FLAGS"
  echo "nvcc: $( (command -v nvcc >/dev/null && nvcc --version || /usr/local/cuda/bin/nvcc --version) | tail -1)"
  echo "soundfont: share/soundfonts/$(basename "$SOUNDFONT")"
  echo "MIDI sets (name, folders under midi/):"
  sed 's/^/  /' "$STAGE/midi/sets.txt"
  echo "needs from the machine: glibc >= $(ldd --version | head -1 | awk '{print $NF}'), libstdc++, libgcc_s, libcublas.so.13, libcudnn.so.9, libcuda.so.1"
  echo "files:"
  (cd "$STAGE" && find . -type f ! -path './midi/*' -printf '  %10s %P\n' | sort -k2)
  echo "  $(find "$STAGE/midi" -type f -name '*.*' ! -name sets.txt | wc -l) MIDI files, $(du -sb "$STAGE/midi" | cut -f1) bytes"
} >"$STAGE/MANIFEST.txt"

rm -rf "$OUT_DIR.new"
mkdir -p "$OUT_DIR.new/tools"
note "compressing the payload"
tar -C "$STAGE" --owner=0 --group=0 --numeric-owner -cf - . | xz -9 -T"$JOBS" >"$OUT_DIR.new/payload.tar.xz"
cp -L "$(command -v xz)" "$OUT_DIR.new/tools/xz"
cp -L "$(ldd "$(command -v xz)" | awk '$1 == "liblzma.so.5" {print $3}')" "$OUT_DIR.new/tools/liblzma.so.5"
chmod u+w "$OUT_DIR.new"/tools/*
patchelf --set-rpath '$ORIGIN' "$OUT_DIR.new/tools/xz"
patchelf --set-rpath '$ORIGIN' "$OUT_DIR.new/tools/liblzma.so.5"
echo "$id" >"$OUT_DIR.new/bundle-id"
cp "$STAGE/MANIFEST.txt" "$OUT_DIR.new/MANIFEST.txt"
cp recipes/device/env.sh.in "$OUT_DIR.new/env.sh"
rm -rf "$OUT_DIR"
mv "$OUT_DIR.new" "$OUT_DIR"

unpacked=$(du -sb "$STAGE" | cut -f1)
packed=$(du -sb "$OUT_DIR" | cut -f1)
note "done: $OUT_DIR/ is $((packed / 1048576)) MiB ($packed bytes; $((unpacked / 1048576)) MiB unpacked), bundle $id"
note "on the machine: bash recipes/device/train.sh minutes=8 [key=value ...] (carry: $OUT_DIR)"
