#!/usr/bin/env bash
# recipes/device/unpack.sh — puts the files recipes/device/train.sh left in $OUT (fetched from the GPU
# machine) back together as a training folder: NAME.part00, NAME.part01 ... are joined into NAME.
#   bash recipes/device/unpack.sh FETCHED_FOLDER [DEST=runs/device]
# DEST gets last/{model.safetensors,optimizer.safetensors (when returned),state.json,config.jsonl},
# best.safetensors, metrics.jsonl, config.jsonl and train.log; an existing DEST is first renamed
# DEST.1 (or .2 ...). Carry DEST/last to the next run (runs/device/last) to continue from it.
set -euo pipefail
die() { echo "unpack.sh: $*" >&2; exit 1; }
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: unpack.sh FETCHED_FOLDER [DEST=runs/device]"
SRC=$1 DEST=${2:-runs/device}
[ -d "$SRC" ] || die "no folder '$SRC'"
[ -e "$SRC/model.safetensors" ] || [ -e "$SRC/model.safetensors.part00" ] || die "$SRC holds no model.safetensors"

if [ -e "$DEST" ]; then
  n=1
  while [ -e "$DEST.$n" ]; do n=$((n + 1)); done
  mv "$DEST" "$DEST.$n"
  echo "unpack.sh: the previous $DEST is now $DEST.$n"
fi
mkdir -p "$DEST/last"

join() { # name destination: name or its parts, joined; false when absent
  local name=$1 to=$2
  if [ -f "$SRC/$name" ]; then
    cp "$SRC/$name" "$to"
  elif [ -f "$SRC/$name.part00" ]; then
    cat "$SRC/$name".part[0-9][0-9] >"$to.tmp" && mv "$to.tmp" "$to"
  else
    return 1
  fi
  echo "unpack.sh: $to ($(stat -c %s "$to") bytes)"
}
join model.safetensors "$DEST/last/model.safetensors"
join optimizer.safetensors "$DEST/last/optimizer.safetensors" || true
join state.json "$DEST/last/state.json" || echo "unpack.sh: no state.json"
for f in best.safetensors metrics.jsonl config.jsonl train.log; do join "$f" "$DEST/$f" || true; done
# the settings travel with last/ (a resume keeps the run's seed)
[ ! -f "$DEST/config.jsonl" ] || cp "$DEST/config.jsonl" "$DEST/last/config.jsonl"

# a safetensors file starts with its header's length, then the header: check both against the size
for f in "$DEST"/last/*.safetensors "$DEST"/best.safetensors; do
  [ -f "$f" ] || continue
  size=$(stat -c %s "$f")
  header=$(od -An -t u8 -N 8 "$f" | tr -d ' ')
  [ -n "$header" ] && [ "$header" -gt 0 ] && [ $((header + 8)) -le "$size" ] ||
    die "$f is not a whole safetensors file (a part missing?)"
done
if [ -f "$DEST/last/optimizer.safetensors" ]; then
  echo "unpack.sh: resume with resume=$DEST/last (here on the CPU, or carried to the GPU machine)"
else
  echo "unpack.sh: continue with init=$DEST/last/model.safetensors (a fresh optimizer)"
fi
