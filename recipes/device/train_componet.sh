#!/usr/bin/env bash
# recipes/device/train_componet.sh — continues the bundled CompoNet's training on a lent GPU machine in one
# command, within a time budget, using only what build-device/ (recipes/device/bundle.sh) carries: it
# renders the bundled MIDI songs (train and validation songs, make_midi_stems' split, so the local test
# songs stay unseen), then trains phase 1's U-Net and tag encoder from the weights of init= (train_ldm.lua
# stage=unet init=, the frozen VAE of init=), then CompoNet's ControlNet on that U-Net (train_componet.lua,
# starting from init='s ControlNet), both with device=cuda, and leaves the weights and logs in $OUT.
#
# Run from the repository root, with build-device/ present (carried):
#   bash recipes/device/train_componet.sh [minutes=9] [key=value ...]
# Settings:
#   minutes=9           the whole run's wall time: rendering, both trainings, copying to $OUT
#   render_minutes=     rendering's share (default 20 % of minutes); unet_share=0.5 the U-Net's part of
#                       what is left for training (the ControlNet gets the rest; 0 skips the U-Net stage)
#   init=assets/componet  the model folder both stages start from (vae/, unet/, tag_encoder/, controlnet/)
#   unet_batch=16 componet_batch=8  examples per step;  unet_lr=2e-4 componet_lr=1e-4
#   valid_every=500     steps between validations (4 fixed batches of the validation songs)
#   sets= workers=nproc jobs=2 max_files=0 max_seconds=0   as in train.sh (rendering)
#   device=cuda         cpu trains on the CPU (a check of this script where there is no GPU)
#
# Output ($OUT, default /tmp/cocola-device-out; at most 8 flat files, each at most 15 MiB, larger ones as
# NAME.part00, NAME.part01 ...): unet.safetensors, tag_encoder.safetensors, controlnet.safetensors (float32
# weights of the last steps), ldm_metrics.jsonl, componet_metrics.jsonl, train.log. Put them into a model
# folder with
#   bash recipes/device/unpack_componet.sh <fetched folder> runs/componet_device [init=assets/componet]
# Work files: /tmp/cocola-device-work (COCOLA_DEVICE_WORK).
set -euo pipefail
T0=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEVICE_SCRIPT=train_componet.sh
# shellcheck source=recipes/device/common.sh
source recipes/device/common.sh

minutes=9 render_minutes="" unet_share=0.5 init=assets/componet unet_batch=16 componet_batch=8
unet_lr=2e-4 componet_lr=1e-4 valid_every=500 sets="" workers="" jobs=2 max_files=0 max_seconds=0 device=cuda
for a in "$@"; do
  case "$a" in
    minutes=*) minutes=${a#*=} ;;
    render_minutes=*) render_minutes=${a#*=} ;;
    unet_share=*) unet_share=${a#*=} ;;
    init=*) init=${a#*=} ;;
    unet_batch=*) unet_batch=${a#*=} ;;
    componet_batch=*) componet_batch=${a#*=} ;;
    unet_lr=*) unet_lr=${a#*=} ;;
    componet_lr=*) componet_lr=${a#*=} ;;
    valid_every=*) valid_every=${a#*=} ;;
    sets=*) sets=${a#*=} ;;
    workers=*) workers=${a#*=} ;;
    jobs=*) jobs=${a#*=} ;;
    max_files=*) max_files=${a#*=} ;;
    max_seconds=*) max_seconds=${a#*=} ;;
    device=*) device=${a#*=} ;;
    *=*) die "unknown setting '${a%%=*}' (see the header of this script)" ;;
    *) die "arguments are key=value settings; got '$a'" ;;
  esac
done
for k in minutes unet_share unet_batch componet_batch valid_every jobs max_files max_seconds; do
  number "$k" "${!k}"
done
[ -z "$render_minutes" ] || number render_minutes "$render_minutes"
for d in vae unet tag_encoder controlnet; do
  [ -d "$init/$d" ] || die "init=$init has no $d/ (a CompoNet model folder such as assets/componet is needed)"
done

begin_run "$device" "$minutes" "$render_minutes"
rm -rf "$WORK/ldm" "$WORK/componet"
echo "$DEVICE_SCRIPT: budget $budget s (rendering $render_s s, margin $margin s), device=$device, init=$init, output $OUT"

render_sets "$DATA" "$render_s" "$sets" "$workers" "$jobs" "$max_files" "$max_seconds"
root_list=$(IFS=,; echo "${ROOTS[*]}")
common=(layout=slakh "root=$root_list" "device=$device" "threads=$(nproc)" "loaders=$loaders" "valid_every=$valid_every" plots=false
  max_steps=100000000 checkpoint_every=1000)

# ---- phase 1: the U-Net and its tag encoder -----------------------------------------------------------
model=$init
if lua5.4 -e "os.exit($unet_share > 0 and 0 or 1)"; then
  m=$(minutes_left "$unet_share")
  echo "$DEVICE_SCRIPT: U-Net for at most $m min"
  t=$(date +%s)
  set +e
  lua5.4 recipes/train_ldm.lua stage=unet "vae=$init" "init=$init" "out=$WORK/ldm" "batch_size=$unet_batch" \
    "lr=$unet_lr" "max_minutes=$m" "${common[@]}" 2>&1 | thin "^unet [0-9]+/"
  rc=${PIPESTATUS[0]}
  set -e
  echo "$DEVICE_SCRIPT: U-Net stage took $(( $(date +%s) - t )) s (status $rc)"
  if [ "$rc" = 0 ] && [ -f "$WORK/ldm/model/unet/diffusion_pytorch_model.safetensors" ]; then
    model=$WORK/ldm/model
    put "$model/unet/diffusion_pytorch_model.safetensors" unet.safetensors
    put "$model/tag_encoder/diffusion_pytorch_model.safetensors" tag_encoder.safetensors
  else
    echo "$DEVICE_SCRIPT: the ControlNet trains on init='s U-Net"
  fi
  put "$WORK/ldm/metrics.jsonl" ldm_metrics.jsonl
fi

# ---- phase 2: the ControlNet ------------------------------------------------------------------------------
m=$(minutes_left 1)
echo "$DEVICE_SCRIPT: ControlNet for at most $m min on $model"
t=$(date +%s)
set +e
lua5.4 recipes/train_componet.lua "model=$model" "init=$init" "out=$WORK/componet" "batch_size=$componet_batch" \
  "lr=$componet_lr" "max_minutes=$m" "${common[@]}" 2>&1 | thin "^componet [0-9]+/"
rc=${PIPESTATUS[0]}
set -e
echo "$DEVICE_SCRIPT: ControlNet stage took $(( $(date +%s) - t )) s (status $rc)"
put "$WORK/componet/model/controlnet/diffusion_pytorch_model.safetensors" controlnet.safetensors
put "$WORK/componet/metrics.jsonl" componet_metrics.jsonl
echo "$DEVICE_SCRIPT: done in $(( $(date +%s) - T0 )) s of a $budget s budget"
put "$LOG" train.log
