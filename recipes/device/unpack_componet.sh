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
die() { echo "unpack_componet.sh: $*" >&2; exit 1; }
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

if [ -e "$DEST" ]; then
  n=1
  while [ -e "$DEST.$n" ]; do n=$((n + 1)); done
  mv "$DEST" "$DEST.$n"
  echo "unpack_componet.sh: the previous $DEST is now $DEST.$n"
fi
mkdir -p "$DEST/model"
cp "$INIT/model_index.json" "$DEST/model/"
for c in vae unet tag_encoder controlnet scheduler vocoder; do
  [ ! -d "$INIT/$c" ] || cp -rL "$INIT/$c" "$DEST/model/$c"
done

join() { # name destination: name or its parts, joined; false when absent
  local name=$1 to=$2
  if [ -f "$SRC/$name" ]; then
    cp "$SRC/$name" "$to.tmp"
  elif [ -f "$SRC/$name.part00" ]; then
    cat "$SRC/$name".part[0-9][0-9] >"$to.tmp"
  else
    return 1
  fi
  chmod u+w "$to.tmp" && mv "$to.tmp" "$to"
  echo "unpack_componet.sh: $to ($(stat -c %s "$to") bytes)"
}
for c in unet tag_encoder controlnet; do
  join "$c.safetensors" "$DEST/model/$c/diffusion_pytorch_model.safetensors" ||
    echo "unpack_componet.sh: no $c.safetensors: $c/ stays init's"
done
for f in ldm_metrics.jsonl componet_metrics.jsonl train.log; do join "$f" "$DEST/$f" || true; done
echo "unpack_componet.sh: model folder $DEST/model"
