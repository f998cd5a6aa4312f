#!/usr/bin/env bash
# The ps-split numbers of the model card and docs/RESULTS.md:
#   1. the shipped ss0 models on ps test (17 of its 25 classes are ss0 train classes: seen-class numbers);
#   2. the shipped recipe (v3: checkpoints/recipe-fconly.json, then recipe-full.json) trained on ps's own
#      train classes, evaluated zero-shot on ps test (fc-only: final step; full: val-selected);
#   3. kept for history (V2=1, V1=1): the v2 recipe (recipe-fconly-v2.json, recipe-full-v2.json) and the
#      v1 recipe (recipe-fconly-v1.json, then the earlier recipe-full-v0.json shortened to 600 steps).
# Finished runs and evaluations are skipped. N3_THREADS=1 leaves a core to another job.
set -euo pipefail
cd "$(dirname "$0")/.."
source experiments/_runs.sh
R=experiments/results
ev checkpoints/n3-effl0-minilm-ss0 ps $R/ss0-full-on-ps-test.json
ev checkpoints/n3-effl0-minilm-ss0-fconly ps $R/ss0-fconly-on-ps-test.json
tr runs/ps-v3-fconly --split ps --config checkpoints/recipe-fconly.json
ev runs/ps-v3-fconly/final ps $R/ps-v3-fconly-on-ps-test.json
tr runs/ps-v3-full --split ps --config checkpoints/recipe-full.json --init-from runs/ps-v3-fconly/final
ev runs/ps-v3-full/best ps $R/ps-v3-full-on-ps-test.json
if [ "${V2:-0}" = 1 ]; then
  tr runs/ps-v2-fconly --split ps --config checkpoints/recipe-fconly-v2.json
  ev runs/ps-v2-fconly/final ps $R/ps-v2-fconly-on-ps-test.json
  tr runs/ps-v2-full --split ps --config checkpoints/recipe-full-v2.json --init-from runs/ps-v2-fconly/final
  ev runs/ps-v2-full/best ps $R/ps-v2-full-on-ps-test.json
fi
if [ "${V1:-0}" = 1 ]; then
  tr runs/ps-fconly --split ps --config checkpoints/recipe-fconly-v1.json
  ev runs/ps-fconly/best ps $R/ps-fconly-on-ps-test.json
  tr runs/ps-full --split ps --config checkpoints/recipe-full-v0.json --init-from runs/ps-fconly/best --max-steps 600
  ev runs/ps-full/best ps $R/ps-full-on-ps-test.json
fi
