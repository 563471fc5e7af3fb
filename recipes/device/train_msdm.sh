#!/usr/bin/env bash
# recipes/device/train_msdm.sh — trains the MSDM baseline (multi-source waveform diffusion over the bass, drums,
# guitar and piano stems) on a lent GPU machine in one command, within a time budget, using only what
# build-device/ (recipes/device/bundle.sh) carries: it renders the bundled MIDI songs (train and validation
# songs, make_midi_stems' split, so the local test songs stay unseen), then runs train_msdm.lua with
# device=cuda, from scratch or from init='s weights, and leaves the weights and logs in $OUT.
#
# Run from the repository root, with build-device/ present (carried):
#   bash recipes/device/train_msdm.sh [minutes=9] [key=value ...]
# Settings:
#   minutes=9           the whole run's wall time: rendering, training, copying to $OUT
#   render_minutes=     rendering's share (default 20 % of minutes)
#   init=               an MSDM model folder whose network and weights start the run (e.g. a carried
#                       runs/msdm/model); empty: a new network of the sizes below
#   channels=64 multipliers=1,2,4,4 factors=4,4,4 num_blocks=1,1,1 attentions=0,0,1 attention_heads=4
#   attention_features=32 patch_factor=16 resnet_groups=8   the network (train_msdm.lua's settings; MSDM's own is channels=256
#                       multipliers=1,2,4,4,4,4,4 factors=4,4,4,2,2,2 num_blocks=2,2,2,2,2,2
#                       attentions=0,0,0,1,1,1 attention_heads=8 attention_features=128)
#   batch_size=16 lr=2e-4 valid_every=500 autocast=off   training
#   sets= workers=nproc jobs=2 max_files=0 max_seconds=0   as in train.sh (rendering)
#   device=cuda         cpu trains on the CPU (a check of this script where there is no GPU)
#
# Output ($OUT, default /tmp/cocola-device-out; at most 8 flat files, each at most 15 MiB, larger ones as
# NAME.part00, NAME.part01 ...): model.safetensors (float32 weights of the last step), config.json,
# metrics.jsonl, train.log. Put them into a model folder with
#   bash recipes/device/unpack_msdm.sh <fetched folder> runs/msdm_device
# Work files: /tmp/cocola-device-work (COCOLA_DEVICE_WORK).
set -euo pipefail
T0=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEVICE_SCRIPT=train_msdm.sh
# shellcheck source=recipes/device/common.sh
source recipes/device/common.sh

minutes=9 render_minutes="" init="" sets="" workers="" jobs=2 max_files=0 max_seconds=0 device=cuda
declare -A net=([channels]=64 [multipliers]="1,2,4,4" [factors]="4,4,4" [num_blocks]="1,1,1" [attentions]="0,0,1"
  [attention_heads]=4 [attention_features]=32 [patch_factor]=16 [resnet_groups]=8 [batch_size]=16 [lr]=2e-4 [valid_every]=500 [autocast]=off)
for a in "$@"; do
  k=${a%%=*}
  case "$a" in
    minutes=*) minutes=${a#*=} ;;
    render_minutes=*) render_minutes=${a#*=} ;;
    init=*) init=${a#*=} ;;
    sets=*) sets=${a#*=} ;;
    workers=*) workers=${a#*=} ;;
    jobs=*) jobs=${a#*=} ;;
    max_files=*) max_files=${a#*=} ;;
    max_seconds=*) max_seconds=${a#*=} ;;
    device=*) device=${a#*=} ;;
    *=*) [ -n "${net[$k]+set}" ] || die "unknown setting '$k' (see the header of this script)"
      net[$k]=${a#*=} ;;
    *) die "arguments are key=value settings; got '$a'" ;;
  esac
done
for k in minutes jobs max_files max_seconds; do number "$k" "${!k}"; done
for k in channels attention_heads attention_features patch_factor resnet_groups batch_size valid_every; do number "$k" "${net[$k]}"; done
[ -z "$render_minutes" ] || number render_minutes "$render_minutes"
[ -z "$init" ] || [ -f "$init/config.json" ] || die "init=$init is not an MSDM model folder (no config.json)"

begin_run "$device" "$minutes" "$render_minutes"
rm -rf "$WORK/msdm"
echo "$DEVICE_SCRIPT: budget $budget s (rendering $render_s s, margin $margin s), device=$device, init=${init:-none}, output $OUT"

render_sets "$DATA" "$render_s" "$sets" "$workers" "$jobs" "$max_files" "$max_seconds"
root_list=$(IFS=,; echo "${ROOTS[*]}")
settings=()
for k in "${!net[@]}"; do settings+=("$k=${net[$k]}"); done
[ -z "$init" ] || settings+=("init=$init")

m=$(minutes_left 1)
echo "$DEVICE_SCRIPT: MSDM for at most $m min"
t=$(date +%s)
set +e
lua5.4 recipes/train_msdm.lua layout=slakh "root=$root_list" "out=$WORK/msdm" "device=$device" "threads=$(nproc)" \
  "loaders=$loaders" plots=false max_steps=100000000 checkpoint_every=1000 "max_minutes=$m" "${settings[@]}" 2>&1 |
  thin "^msdm [0-9]+/"
rc=${PIPESTATUS[0]}
set -e
echo "$DEVICE_SCRIPT: training took $(( $(date +%s) - t )) s (status $rc)"
put "$WORK/msdm/model/model.safetensors" model.safetensors
put "$WORK/msdm/model/config.json" config.json
put "$WORK/msdm/metrics.jsonl" metrics.jsonl
echo "$DEVICE_SCRIPT: done in $(( $(date +%s) - T0 )) s of a $budget s budget"
put "$LOG" train.log
