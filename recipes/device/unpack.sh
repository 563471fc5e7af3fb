#!/usr/bin/env bash
# recipes/device/unpack.sh — puts the files recipes/device/train.sh left in $OUT (fetched from the GPU
# machine) back together as a training folder: NAME.part00, NAME.part01 ... are joined into NAME.
#   bash recipes/device/unpack.sh FETCHED_FOLDER [DEST=runs/device]
# DEST gets last/{model.safetensors,optimizer.safetensors (when returned),state.json,config.jsonl},
# best.safetensors, metrics.jsonl, config.jsonl and train.log; an existing DEST is first renamed
# DEST.1 (or .2 ...). Carry DEST/last to the next run (runs/device/last) to continue from it.
set -euo pipefail
DEVICE_SCRIPT=unpack.sh
# shellcheck source=recipes/device/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: unpack.sh FETCHED_FOLDER [DEST=runs/device]"
SRC=$1 DEST=${2:-runs/device}
[ -d "$SRC" ] || die "no folder '$SRC'"
[ -e "$SRC/model.safetensors" ] || [ -e "$SRC/model.safetensors.part00" ] || die "$SRC holds no model.safetensors"

set_aside "$DEST"
mkdir -p "$DEST/last"
join "$SRC" model.safetensors "$DEST/last/model.safetensors"
join "$SRC" optimizer.safetensors "$DEST/last/optimizer.safetensors" || true
join "$SRC" state.json "$DEST/last/state.json" || echo "unpack.sh: no state.json"
for f in best.safetensors metrics.jsonl config.jsonl train.log; do join "$SRC" "$f" "$DEST/$f" || true; done
# the settings travel with last/ (a resume keeps the run's seed)
[ ! -f "$DEST/config.jsonl" ] || cp "$DEST/config.jsonl" "$DEST/last/config.jsonl"

for f in "$DEST"/last/*.safetensors "$DEST"/best.safetensors; do
  [ ! -f "$f" ] || whole_safetensors "$f"
done
if [ -f "$DEST/last/optimizer.safetensors" ]; then
  echo "unpack.sh: resume with resume=$DEST/last (here on the CPU, or carried to the GPU machine)"
else
  echo "unpack.sh: continue with init=$DEST/last/model.safetensors (a fresh optimizer)"
fi
