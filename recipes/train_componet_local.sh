#!/bin/sh
# recipes/train_componet_local.sh — the whole CompoNet recipe on this project's rendered MIDI stems, each stage
# resumed where it stopped (run it again after any interruption; finished stages are skipped):
#   1. phase 1, stage vae:  runs/ldm_vae   (cocola train-ldm stage=vae)
#   2. phase 1, stage unet: runs/ldm       (cocola train-ldm stage=unet vae=runs/ldm_vae/model)
#   3. phase 2:             runs/componet  (cocola train-componet model=runs/ldm/model)
#   4. Table 3 on the test split: runs/tasks (cocola make-tasks), runs/gen_componet (cocola accompany),
#      runs/table3 (cocola eval-generation: CompoNet, Random, Ground Truth)
#   5. the bundled form: assets/componet (recipes/export_componet.lua), unless it exists
# Settings: ROOT (data/midi_stems), DEVICE (cpu), VAE_STEPS (300), UNET_STEPS (500), COMPONET_STEPS (300),
# TASKS (50), GEN_STEPS (25: DDIM steps per accompaniment). The defaults are the bundled model's (about
# two hours on 2 cores, with make midi-stems first); larger values train longer from where a run stopped.
# Usage: sh recipes/train_componet_local.sh        (in the background: setsid nohup sh ... > runs/componet_local.log 2>&1 &)
set -e
ROOT=${ROOT:-data/midi_stems}
DEVICE=${DEVICE:-cpu}
VAE_STEPS=${VAE_STEPS:-300}
UNET_STEPS=${UNET_STEPS:-500}
COMPONET_STEPS=${COMPONET_STEPS:-300}
TASKS=${TASKS:-50}
GEN_STEPS=${GEN_STEPS:-25}
COCOLA=${COCOLA:-"lua5.4 bin/cocola"}
mkdir -p runs

# stage NAME OUT STEPS ARGS...: starts or resumes a trainer until it has STEPS steps
stage() {
  cmd=$1 out=$2 steps=$3
  shift 3
  if [ -f "$out/last/state.json" ]; then
    done_steps=$(sed -n 's/.*"step":\([0-9]*\).*/\1/p' "$out/last/state.json")
    if [ "${done_steps:-0}" -ge "$steps" ] && [ -f "$out/model/model_index.json" ]; then
      echo "$out: $done_steps steps, done"
      return 0
    fi
    $COCOLA "$cmd" resume="$out/last" max_steps="$steps" device="$DEVICE"
  else
    $COCOLA "$cmd" out="$out" max_steps="$steps" device="$DEVICE" root="$ROOT" "$@"
  fi
}

stage train-ldm runs/ldm_vae "$VAE_STEPS" stage=vae batch_size=8 valid_every=100
stage train-ldm runs/ldm "$UNET_STEPS" stage=unet vae=runs/ldm_vae/model batch_size=4 valid_every=250
stage train-componet runs/componet "$COMPONET_STEPS" model=runs/ldm/model batch_size=2 valid_every=250
[ -f runs/tasks/tasks.json ] || $COCOLA make-tasks layout=slakh root="$ROOT" out=runs/tasks n="$TASKS"
$COCOLA accompany model=runs/componet/model tasks=runs/tasks out=runs/gen_componet steps="$GEN_STEPS" device="$DEVICE"
$COCOLA eval-generation tasks=runs/tasks systems=CompoNet=runs/gen_componet out=runs/table3
# the bundled form (assets/componet: float16, training logs, the demo's example) once everything above is done
[ -f assets/componet/model_index.json ] || lua5.4 recipes/export_componet.lua run=runs/componet out=assets/componet
