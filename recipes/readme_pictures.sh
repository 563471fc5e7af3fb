#!/bin/sh
# recipes/readme_pictures.sh — draws the pictures of README.md's "Pictures" section into assets/pictures/
# with the recipes that make them (gnuplot-nox; the bundled model; make midi-stems cross-sound-stems for
# the evaluation). Usage: sh recipes/readme_pictures.sh   (from the repository root, after make rock)
set -e
COCOLA=${COCOLA:-"lua5.4 bin/cocola"}
OUT=assets/pictures
EVAL=${EVAL:-runs/eval_pictures}
mkdir -p "$OUT"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
# 1. the bundled model's training curves
$COCOLA plot assets/cocola_midi_chroma_onset.metrics.jsonl --out "$tmp"
cp "$tmp/metrics-loss.png" "$OUT/bundled-model-loss.png"
# 2. the HPSS mel features of a bundled example pair (the score of every window goes to pair.png)
$COCOLA score --cond assets/examples/cond/coherent_1.flac --gen assets/examples/gen/coherent_1.flac --plot "$tmp/pair.png"
cp "$tmp/pair-features.png" "$OUT/example-pair-features.png"
# 3. Table 2 on the test songs: scores of ground-truth and random pairs, the bundled model on the FluidR3 stems
[ -f "$EVAL/results.json" ] || lua5.4 recipes/eval_cocola.lua models=default,chroma-onset \
  datasets=slakh:data/midi_stems,slakh:data/midi_stems_timgm,slakh:data/midi_stems_opl3 ks=2,8 protocols=paper out="$EVAL"
cp "$EVAL/plots/scores-default-midi_stems.png" "$OUT/bundled-model-scores.png"
ls -l "$OUT"
