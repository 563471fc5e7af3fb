#!/usr/bin/env bash
# recipes/device/unpack_msdm.sh — makes an MSDM model folder from what recipes/device/train_msdm.sh left in
# $OUT (fetched from the GPU machine): model.safetensors (NAME.part00, NAME.part01 ... joined) and config.json
# into DEST/model, the run's metrics and log beside it.
#   bash recipes/device/unpack_msdm.sh FETCHED_FOLDER [DEST=runs/msdm_device]
# DEST/model is the model folder (cocola msdm-generate model=DEST/model; or init=DEST/model to continue);
# an existing DEST is first renamed DEST.1 (or .2 ...).
set -euo pipefail
DEVICE_SCRIPT=unpack_msdm.sh
# shellcheck source=recipes/device/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
[ $# -ge 1 ] && [ $# -le 2 ] || die "usage: unpack_msdm.sh FETCHED_FOLDER [DEST=runs/msdm_device]"
SRC=$1 DEST=${2:-runs/msdm_device}
[ -d "$SRC" ] || die "no folder '$SRC'"
[ -f "$SRC/config.json" ] || die "$SRC holds no config.json (did the training write its model folder?)"
[ -e "$SRC/model.safetensors" ] || [ -e "$SRC/model.safetensors.part00" ] || die "$SRC holds no model.safetensors"

set_aside "$DEST"
mkdir -p "$DEST/model"
join "$SRC" model.safetensors "$DEST/model/model.safetensors"
whole_safetensors "$DEST/model/model.safetensors"
join "$SRC" config.json "$DEST/model/config.json"
for f in metrics.jsonl train.log; do join "$SRC" "$f" "$DEST/$f" || true; done
echo "unpack_msdm.sh: model folder $DEST/model"
