#!/usr/bin/env bash
# recipes/device/unpack_componet.sh — makes a CompoNet model folder from what recipes/device/train_componet.sh
# left in $OUT (fetched from the GPU machine): the components of init= (its model_index.json, vae/, unet/,
# tag_encoder/, controlnet/, scheduler/, vocoder/) with the fetched unet, tag_encoder and controlnet weights
# (NAME.part00, NAME.part01 ... joined) in place of init's, and the run's metrics and log beside them.
#   bash recipes/device/unpack_componet.sh FETCHED_FOLDER [DEST=runs/componet_device] [init=assets/componet]
# DEST/model is the model folder (cocola accompany model=DEST/model); DEST/ldm_metrics.jsonl,
# DEST/componet_metrics.jsonl and DEST/train.log the run's records. An existing DEST is first renamed DEST.1
# (or .2 ...).
set -euo pipefail
DEVICE_SCRIPT=unpack_componet.sh
# shellcheck source=recipes/device/common.sh
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
SRC=${1:-} DEST=runs/componet_device INIT=assets/componet
[ -n "$SRC" ] || die "usage: unpack_componet.sh FETCHED_FOLDER [DEST=runs/componet_device] [init=assets/componet]"
shift
for a in "$@"; do
  case "$a" in
    init=*) INIT=${a#*=} ;;
    *=*) die "unknown setting '${a%%=*}'" ;;
    *) DEST=$a ;;
  esac
done
[ -d "$SRC" ] || die "no folder '$SRC'"
[ -f "$INIT/model_index.json" ] || die "init=$INIT is not a model folder (no model_index.json)"

set_aside "$DEST"
mkdir -p "$DEST/model"
cp "$INIT/model_index.json" "$DEST/model/"
for c in vae unet tag_encoder controlnet scheduler vocoder; do
  [ ! -d "$INIT/$c" ] || cp -rL "$INIT/$c" "$DEST/model/$c"
done
for c in unet tag_encoder controlnet; do
  to=$DEST/model/$c/diffusion_pytorch_model.safetensors
  if join "$SRC" "$c.safetensors" "$to"; then whole_safetensors "$to"
  else echo "unpack_componet.sh: no $c.safetensors: $c/ stays init's"; fi
done
for f in ldm_metrics.jsonl componet_metrics.jsonl train.log; do join "$SRC" "$f" "$DEST/$f" || true; done
echo "unpack_componet.sh: model folder $DEST/model"
