#!/usr/bin/env bash
# recipes/device/train.sh — trains COCOLA on a lent GPU machine in one command, within a time budget,
# using only what build-device/ (recipes/device/bundle.sh) carries: it renders the bundled MIDI
# songs into stem datasets under /tmp (recipes/device/render.lua over make_midi_stems.lua, the bundled
# soundfont, every core busy), trains on them with recipes/train_cocola.lua (device=cuda,
# threads=nproc, layout=slakh), and leaves the run's files in $OUT for fetching.
#
# Run from the repository root, with build-device/ present (carried):
#   bash recipes/device/train.sh [minutes=8] [key=value ...]
# Settings of this script (everything else goes to train_cocola.lua, e.g. batch_size=32,
# init=assets/cocola_midi_hpss.safetensors, hard_negatives=shifted, autocast=bf16, device=cpu, seed=3;
# this script's defaults for it: device=cuda, threads=nproc, valid_every=250, so that a short run
# validates and keeps best.safetensors before its first epoch ends):
#   minutes=8            the whole run's wall time: rendering, training, and copying to $OUT
#   render_minutes=      rendering's share (default 35 % of minutes): no song is started after it, and
#                        the log says how many were left; training gets the rest less a margin
#                        (10 % of minutes, 10 to 45 s) and stops through train_cocola's max_minutes
#   max_files=0          render at most this many songs (0: as many as fit); max_seconds=0 cuts songs
#   sets=                the bundled MIDI sets to render, e.g. sets=debian (default: all)
#   workers=nproc jobs=2 render processes, and fluidsynth processes per render process
#   return_optimizer=false  true: also return optimizer.safetensors (for an exact resume), leaving
#                        out best.safetensors and train.log (the files that come back are limited)
# Continuing: if runs/device/last/ exists (carried; recipes/device/unpack.sh puts a fetched run
# there), training resumes from it when it holds model, optimizer and state (resume=), else starts
# from its model.safetensors (init=, with seed= the steps done so far, unless given).
#
# Output ($OUT, default /tmp/cocola-device-out; at most 8 flat files, each at most 15 MiB: larger
# ones are cut into NAME.part00, NAME.part01 ...): model.safetensors (last step's weights),
# best.safetensors (best validation loss), state.json, metrics.jsonl, config.jsonl, train.log (or
# optimizer.safetensors instead of the last two). Put them together with
#   bash recipes/device/unpack.sh <fetched folder> runs/device
# Work files: /tmp/cocola-device-work (COCOLA_DEVICE_WORK); the bundle unpacks into
# /tmp/cocola-device (COCOLA_DEVICE_ROOT).
set -euo pipefail
T0=$(date +%s)
cd "$(dirname "${BASH_SOURCE[0]}")/../.."
DEVICE_SCRIPT=train.sh
# shellcheck source=recipes/device/common.sh
source recipes/device/common.sh

minutes=8 render_minutes="" max_files=0 max_seconds=0 sets="" workers="" jobs=2 return_optimizer=false
pass=() device=cuda user_threads="" user_seed="" user_start="" user_max_minutes="" user_valid_every=""
for a in "$@"; do
  case "$a" in
    minutes=*) minutes=${a#*=} ;;
    render_minutes=*) render_minutes=${a#*=} ;;
    max_files=*) max_files=${a#*=} ;;
    max_seconds=*) max_seconds=${a#*=} ;;
    sets=*) sets=${a#*=} ;;
    workers=*) workers=${a#*=} ;;
    jobs=*) jobs=${a#*=} ;;
    return_optimizer=*) return_optimizer=${a#*=} ;;
    layout=*|root=*|out=*) die "'${a%%=*}' is set by this script (the rendered sets, under /tmp)" ;;
    device=*) device=${a#*=} ;;
    threads=*) user_threads=${a#*=}; pass+=("$a") ;;
    seed=*) user_seed=${a#*=}; pass+=("$a") ;;
    resume=*|init=*) user_start=$a; pass+=("$a") ;;
    valid_every=*) user_valid_every=1; pass+=("$a") ;;
    max_minutes=*) user_max_minutes=${a#*=} ;;
    *=*) pass+=("$a") ;;
    *) die "arguments are key=value settings; got '$a'" ;;
  esac
done
number minutes "$minutes"
[ -z "$render_minutes" ] || number render_minutes "$render_minutes"
[ -z "$user_max_minutes" ] || number max_minutes "$user_max_minutes"
case "$return_optimizer" in true|1|yes) return_optimizer=true ;; false|0|no) return_optimizer=false ;;
  *) die "return_optimizer must be true or false" ;; esac

workers=${workers:-$(nproc)}
OUT=${OUT:-/tmp/cocola-device-out}
WORK=${COCOLA_DEVICE_WORK:-/tmp/cocola-device-work}
DATA=$WORK/data RUN=$WORK/run LOG=$WORK/train.log
mkdir -p "$OUT" "$WORK" "$DATA"
rm -rf "$RUN"
: >"$LOG"
exec > >(tee -a "$LOG") 2>&1
device_runtime "$device" "$WORK"

budget=$(calc "$minutes * 60")
[ "$budget" -gt 0 ] || die "minutes must be a positive number"
if [ -z "$render_minutes" ]; then render_s=$(calc "$budget * 0.35"); else render_s=$(calc "$render_minutes * 60"); fi
margin=$(calc "math.max(10, math.min(45, $budget * 0.1))")
echo "train.sh: budget $budget s (rendering $render_s s, margin $margin s), device=$device, output $OUT"

# continuing a previous run (runs/device/last, carried)
CONT=runs/device/last
if [ -z "$user_start" ] && [ -f "$CONT/model.safetensors" ]; then
  if [ -f "$CONT/optimizer.safetensors" ] && [ -f "$CONT/state.json" ]; then
    mkdir -p "$RUN"
    cp -r "$CONT" "$RUN/last"
    for f in metrics.jsonl config.jsonl best.safetensors; do [ ! -f "runs/device/$f" ] || cp "runs/device/$f" "$RUN/"; done
    pass+=("resume=$RUN/last")
    # the run's own seed (its sampler order), unless given
    seed=$(tail -n 1 "$CONT/config.jsonl" 2>/dev/null | sed -n 's/.*"seed":\([0-9][0-9]*\).*/\1/p' || true)
    if [ -z "$user_seed" ] && [ -n "$seed" ]; then pass+=("seed=$seed"); fi
    echo "train.sh: resuming from $CONT (model, optimizer and state${seed:+; seed=${user_seed:-$seed}})"
  else
    pass+=("init=$CONT/model.safetensors")
    steps=$(sed -n 's/.*"step":\([0-9][0-9]*\).*/\1/p' "$CONT/state.json" 2>/dev/null || true)
    if [ -z "$user_seed" ] && [ -n "$steps" ]; then pass+=("seed=$steps"); fi
    echo "train.sh: starting from the weights of $CONT/model.safetensors (fresh optimizer${steps:+, $steps steps before; seed=${user_seed:-$steps}})"
  fi
fi

# ---- rendering ----------------------------------------------------------------------------------
render_sets "$DATA" "$render_s" "$sets" "$workers" "$jobs" "$max_files" "$max_seconds"

# ---- training -----------------------------------------------------------------------------------
left=$(( T0 + budget - margin - $(date +%s) ))
train_minutes=$(lua5.4 -e "print(string.format('%.3f', math.max($left / 60, 0.05)))")
if [ -n "$user_max_minutes" ]; then
  train_minutes=$(lua5.4 -e "print(string.format('%.3f', math.min($train_minutes, $user_max_minutes)))")
fi
[ "$left" -gt 30 ] || echo "train.sh: warning: only $left s are left for training (raise minutes= or lower render_minutes=)"
root_list=$(IFS=,; echo "${ROOTS[*]}")
args=(layout=slakh "root=$root_list" "out=$RUN" "device=$device")
[ -n "$user_threads" ] || args+=("threads=$(nproc)")
[ -n "$user_valid_every" ] || args+=("valid_every=250")
args+=("${pass[@]}" "max_minutes=$train_minutes")
echo "train.sh: training for at most $train_minutes min: lua5.4 recipes/train_cocola.lua ${args[*]}"
T_TRAIN=$(date +%s)
set +e
lua5.4 recipes/train_cocola.lua "${args[@]}" 2>&1 | thin "^epoch [0-9]+ [[]"
train_rc=${PIPESTATUS[0]}
set -e
echo "train.sh: training took $(( $(date +%s) - T_TRAIN )) s (status $train_rc)"

# ---- what comes back ----------------------------------------------------------------------------
put "$RUN/last/model.safetensors" model.safetensors
if [ "$return_optimizer" = true ]; then
  put "$RUN/last/optimizer.safetensors" optimizer.safetensors
else
  put "$RUN/best.safetensors" best.safetensors
fi
put "$RUN/last/state.json" state.json
put "$RUN/metrics.jsonl" metrics.jsonl
put "$RUN/config.jsonl" config.jsonl
echo "train.sh: done in $(( $(date +%s) - T0 )) s of a $budget s budget"
[ "$return_optimizer" = true ] || put "$LOG" train.log
count=$(find "$OUT" -maxdepth 1 -type f | wc -l)
bytes=$(du -cb "$OUT"/* 2>/dev/null | tail -n 1 | cut -f1)
echo "train.sh: $OUT holds $count files, $bytes bytes:"
for f in "$OUT"/*; do [ ! -f "$f" ] || printf 'train.sh:   %12s %s\n' "$(stat -c %s "$f")" "${f##*/}"; done
[ "$count" -le 8 ] || echo "train.sh: warning: more than 8 files: not all of them come back"
[ "$bytes" -le $((64 * 1024 * 1024)) ] || echo "train.sh: warning: over 64 MiB: not all of them come back"
echo "train.sh: put them together with: bash recipes/device/unpack.sh <fetched folder> runs/device"
exit "$train_rc"
