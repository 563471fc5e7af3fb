# shellcheck shell=bash
# recipes/device/common.sh — what the device scripts (train.sh for COCOLA, train_componet.sh and train_msdm.sh for the
# generative models) share, sourced by them from the repository root with build-device/ present:
#   die MSG                         the script's name and MSG on stderr, status 1
#   calc EXPR                       EXPR (Lua) rounded down to an integer
#   number NAME VALUE               dies unless VALUE is a non-negative number
#   device_runtime DEVICE WORK      sources build-device/env.sh, checks lua5.4, fluidsynth, the cocola
#                                   module and, for DEVICE=cuda, a CUDA device (prints what it found)
#   render_sets DATA SECONDS SETS WORKERS JOBS MAX_FILES MAX_SECONDS
#                                   renders the bundled MIDI sets (all, or the comma list SETS) into
#                                   DATA/<set> within SECONDS (recipes/device/render.lua: train and
#                                   validation songs only, make_midi_stems' split); fills the array
#                                   ROOTS with the sets that have finished training tracks
#   begin_run DEVICE MINUTES RENDER_MINUTES
#                                   what train_componet.sh and train_msdm.sh start with: sets OUT, WORK, DATA,
#                                   LOG (all output also goes there), workers (default nproc), budget and
#                                   render_s (seconds; rendering 20 % of the budget unless RENDER_MINUTES),
#                                   margin and loaders (nproc - 2 C loader threads, 2 to 64); checks the
#                                   runtime (device_runtime)
#   minutes_left SHARE              minutes of the budget left for training, less the margin, times SHARE
#   put FILE NAME                   copies FILE into $OUT as NAME, or as NAME.part00, .part01 ... when
#                                   over 15 MiB (the files that come back are limited in size)
#   thin PATTERN                    passes a trainer's output, keeping one progress-bar line in 50
#                                   (lines matching the awk regex PATTERN)
# and what the unpack scripts share (on this side, after fetching):
#   set_aside DEST                  renames an existing DEST to DEST.1 (or .2 ...)
#   join SRC NAME TO                copies SRC/NAME, or its parts SRC/NAME.part00, .part01 ... joined, to TO
#                                   (through TO.tmp); false when SRC has neither; dies on a gap in the parts
#   whole_safetensors FILE          dies unless FILE's size is its header's and its tensors' (a part missing?)
DEVICE_SCRIPT=${DEVICE_SCRIPT:-$(basename "$0")}

die() { echo "$DEVICE_SCRIPT: $*" >&2; exit 1; }

calc() { lua5.4 -e "print(string.format('%d', math.floor($1)))"; }

number() { [[ $2 =~ ^[0-9]+([.][0-9]+)?$|^[0-9]*[.][0-9]+$ ]] || die "$1 must be a number (got '$2')"; }

device_runtime() {
  local device=$1 work=$2
  [ -f build-device/env.sh ] || die "no build-device/env.sh: make it with recipes/device/bundle.sh and carry build-device"
  # shellcheck disable=SC1091
  source build-device/env.sh || die "build-device/env.sh failed"
  command -v lua5.4 >/dev/null || die "the bundle has no lua5.4"
  echo "$DEVICE_SCRIPT: $(date -u '+%Y-%m-%d %H:%M:%S UTC') on $(uname -n), $(nproc) CPUs; bundle $(cat build-device/bundle-id)"
  command -v nvidia-smi >/dev/null && nvidia-smi -L 2>/dev/null | sed "s/^/$DEVICE_SCRIPT: /" || true
  local glibc
  glibc=$(ldd --version 2>/dev/null || echo "glibc version unknown")
  echo "$DEVICE_SCRIPT: ${glibc%%$'\n'*}; the bundle needs $(sed -n 's/^needs from the machine: //p' build-device/MANIFEST.txt)"
  fluidsynth --version >/dev/null 2>"$work/fluidsynth.err" ||
    die "the bundled fluidsynth does not run here: $(cat "$work/fluidsynth.err")"
  lua5.4 -e 'require "cocola"' || die "cocola does not load with the bundle (see the error above)"
  if [ "$device" = cuda ]; then
    lua5.4 -e 'local c = require "cocola"
      if not c.cuda.is_available() then io.stderr:write("CUDA is not available: ", tostring(c.cuda.unavailable_reason()), "\n") os.exit(1) end
      print("CUDA devices: " .. c.cuda.device_count())' || die "device=cuda, but cocola's CUDA backend cannot run here (device=cpu trains on the CPU)"
  fi
}

render_sets() {
  local data=$1 seconds=$2 sets=$3 workers=$4 jobs=$5 max_files=$6 max_seconds=$7
  local sets_file=$data/sets.txt midi_dir name dirs rc t0 d t
  midi_dir=$(dirname "$COCOLA_MIDI_SETS")
  mkdir -p "$data"
  : >"$sets_file"
  while IFS=$'\t' read -r name dirs; do
    [ -n "$name" ] || continue
    if [ -n "$sets" ] && [[ ",$sets," != *",$name,"* ]]; then continue; fi
    printf '%s\t%s\n' "$name" "$(echo "$dirs" | sed "s#^#$midi_dir/#; s#,#,$midi_dir/#g")" >>"$sets_file"
  done <"$COCOLA_MIDI_SETS"
  [ -s "$sets_file" ] || die "no bundled MIDI set matches sets=$sets (bundled: $(cut -f1 "$COCOLA_MIDI_SETS" | paste -sd, -))"
  t0=$(date +%s)
  set +e
  timeout --kill-after=10 $((seconds + 150)) lua5.4 recipes/device/render.lua out="$data" sets="$sets_file" \
    soundfont="$COCOLA_SOUNDFONT" seconds="$seconds" workers="$workers" jobs="$jobs" max_files="$max_files" \
    max_seconds="$max_seconds"
  rc=$?
  set -e
  [ "$rc" != 124 ] && [ "$rc" != 137 ] || echo "$DEVICE_SCRIPT: rendering overran its budget and was stopped (unfinished tracks are left out)"
  ROOTS=()
  for name in $(cut -f1 "$sets_file"); do
    d=$data/$name
    if [ -n "$(find "$d/train" -mindepth 2 -maxdepth 2 -name .done -print -quit 2>/dev/null)" ]; then
      # a track stopped half-way has no .done: leave it out
      for t in "$d"/train/Track* "$d"/validation/Track*; do [ ! -d "$t" ] || [ -e "$t/.done" ] || rm -rf "$t"; done
      mkdir -p "$d/validation"
      ROOTS+=("$d")
    fi
  done
  [ ${#ROOTS[@]} -gt 0 ] || die "no training track was rendered (render status $rc)"
  echo "$DEVICE_SCRIPT: rendering took $(( $(date +%s) - t0 )) s"
}

# shellcheck disable=SC2034 # the globals it sets are its callers'
begin_run() {
  local device=$1 minutes=$2 render_minutes=$3
  OUT=${OUT:-/tmp/cocola-device-out}
  WORK=${COCOLA_DEVICE_WORK:-/tmp/cocola-device-work}
  DATA=$WORK/data LOG=$WORK/train.log
  mkdir -p "$OUT" "$WORK" "$DATA"
  : >"$LOG"
  exec > >(tee -a "$LOG") 2>&1
  device_runtime "$device" "$WORK"
  workers=${workers:-$(nproc)}
  budget=$(calc "$minutes * 60")
  [ "$budget" -gt 0 ] || die "minutes must be a positive number"
  if [ -z "$render_minutes" ]; then render_s=$(calc "$budget * 0.2"); else render_s=$(calc "$render_minutes * 60"); fi
  margin=$(calc "math.max(10, math.min(40, $budget * 0.08))")
  loaders=$(( $(nproc) > 4 ? $(nproc) - 2 : 2 ))
  loaders=$(( loaders > 64 ? 64 : loaders ))
}

minutes_left() {
  lua5.4 -e "print(string.format('%.3f', math.max(($T0 + $budget - $margin - os.time()) * $1 / 60, 0.05)))"
}

PART=$((15 * 1024 * 1024))
put() {
  [ -f "$1" ] || { echo "$DEVICE_SCRIPT: (no $2)"; return 0; }
  rm -f "$OUT/$2" "$OUT/$2".part[0-9][0-9]
  if [ "$(stat -c %s "$1")" -le "$PART" ]; then cp "$1" "$OUT/$2"
  else split -b "$PART" -d -a 2 "$1" "$OUT/$2.part"; fi
}

thin() {
  if command -v awk >/dev/null; then awk -v pattern="$1" 'BEGIN { RS = "[\r\n]" } $0 ~ pattern { if (n++ % 50) next } { print; fflush() }'
  else tr '\r' '\n'; fi
}

set_aside() {
  [ -e "$1" ] || return 0
  local n=1
  while [ -e "$1.$n" ]; do n=$((n + 1)); done
  mv "$1" "$1.$n"
  echo "$DEVICE_SCRIPT: the previous $1 is now $1.$n"
}

join() {
  local src=$1 name=$2 to=$3
  if [ -f "$src/$name" ]; then
    cp "$src/$name" "$to.tmp"
  elif [ -f "$src/$name.part00" ]; then
    local parts=("$src/$name".part[0-9][0-9]) last
    last=${parts[-1]##*.part}
    [ $((10#$last + 1)) = ${#parts[@]} ] || die "$src/$name: ${#parts[@]} parts up to part$last (one is missing)"
    cat "${parts[@]}" >"$to.tmp"
  else
    return 1
  fi
  # fetched files are read-only
  chmod u+w "$to.tmp" && mv "$to.tmp" "$to"
  echo "$DEVICE_SCRIPT: $to ($(stat -c %s "$to") bytes)"
}

whole_safetensors() {
  # the first 8 bytes give the JSON header's length; the tensors' data_offsets end where the file must end
  lua5.4 - "$1" <<'LUA' || die "$1 is not a whole safetensors file (a part missing?)"
local f = assert(io.open(arg[1], "rb"))
local size = f:seek("end")
f:seek("set", 0)
local head = f:read(8)
local n = head and #head == 8 and string.unpack("<I8", head)
local json = n and n > 0 and n + 8 <= size and f:read(n)
f:close()
if not json then os.exit(1) end
local last = 0
for _, b in json:gmatch('"data_offsets"%s*:%s*%[%s*(%d+)%s*,%s*(%d+)%s*%]') do last = math.max(last, tonumber(b)) end
os.exit(size == 8 + n + last and 0 or 1)
LUA
}
