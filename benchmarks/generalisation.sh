#!/usr/bin/env bash
# Generalisation benchmark (run by hand; about 2 hours on 2 CPU cores, ~3 GB of PNG under $DATA).
#
# Draws the training sets and the three test sets of the README's "Holding on cores we did not draw"
# section, trains the heads through the user's own path (convert on the misaligned label table, then
# `meltloc train` with its defaults) and scores every head on every test set against the drawn truth.
#
# Test sets (never seen in training; other seeds and depths than any training section):
#   classic_test  12 sections, seed 12, 274.5-294.3 m, --style classic   (the first round's test set)
#   hard_test     12 sections, seed 99, 665.5-685.3 m, --style hard      (our hard test set: mostly faint,
#                 diffuse, tilted layers, blur up to 2.5 px, brittle-zone breaks)
# Training sets:
#   train24       24 sections, seed 11, 124.3-163.9 m, --style wide      (the "defaults on 24 sections" run)
#   big           train24 plus 30 sections of seed 41 at 111, 212, 481, 761 (hard) and 954 m (mixed styles):
#                 the shipped weights
set -euo pipefail
DATA=${DATA:-/tmp/data2}
OUT=${OUT:-/tmp/runs}
M="python $(cd "$(dirname "$0")/.." && pwd)/cli.py"
mkdir -p "$DATA" "$OUT"
cd "$DATA"
export OMP_NUM_THREADS=${OMP_NUM_THREADS:-1}

# --- the data
$M synth train24 --sections 24 --px-per-cm 186 --seed 11 --first-bag 227 --style wide
$M synth hard_test --sections 12 --px-per-cm 186 --seed 99 --first-bag 1211 --style hard
$M synth classic_test --sections 12 --px-per-cm 186 --seed 12 --first-bag 500 --style classic
for spec in "w110 6 203 wide" "h760 8 1385 hard" "w480 6 875 wide" "w950 6 1736 wide" "c210 4 386 classic"; do
  set -- $spec
  $M synth "big/$1" --sections "$2" --px-per-cm 186 --seed 41 --first-bag "$3" --style "$4"
done
# one folder, manifest and label table for the big set (bags differ, so names do not collide)
python "$(dirname "$0")/merge_cores.py" big_all train24 big/w110 big/h760 big/w480 big/w950 big/c210

# --- convert through the user's path (misaligned label table), then train with defaults
$M convert --images train24/images --sections train24/sections.tab --labels train24/features.csv \
    --out conv24 --val 0.17 --test 0 --quiet
$M convert --images big_all/images --sections big_all/sections.csv --labels big_all/features.csv \
    --out conv_big --val 0.1 --test 0 --quiet
$M train --head regression --data conv24 --out "$OUT/reg24.pt"
$M train --head yolo --data conv24 --out "$OUT/yolo24.pt" --runs "$OUT/yolo24.runs"
$M train --head threshold --data conv24 --out "$OUT/thr24.pt"
$M train --head regression --data conv_big --out "$OUT/reg_big.pt"   # -> weights/regression.pt

# --- every head on every test set, against the drawn truth
for test in classic_test hard_test; do
  for w in reg24 yolo24 thr24 reg_big; do
    $M detect "$test/images" --sections "$test/sections.tab" --weights "$OUT/$w.pt" \
        --out "$OUT/det_${w}_${test}.csv" --quiet --overwrite
    $M evaluate --pred "$OUT/det_${w}_${test}.csv" --truth "$test/truth.csv" --no-per-image \
        --json "$OUT/eval_${w}_${test}.json"
  done
done
